//! cargo-fuzz target `scan_json`: `seqwatch::fuzzing::scan_json` (see that module for its invariants).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = seqwatch::fuzzing::scan_json(data) {
        panic!("scan_json: {broken}");
    }
});
