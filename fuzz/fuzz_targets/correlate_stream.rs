//! cargo-fuzz target `correlate_stream`: `seqwatch::fuzzing::correlate_stream` (see that module for its invariants).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = seqwatch::fuzzing::correlate_stream(data) {
        panic!("correlate_stream: {broken}");
    }
});
