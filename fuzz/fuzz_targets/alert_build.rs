//! cargo-fuzz target `alert_build`: `seqwatch::fuzzing::alert_build` (see that module for its invariants).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = seqwatch::fuzzing::alert_build(data) {
        panic!("alert_build: {broken}");
    }
});
