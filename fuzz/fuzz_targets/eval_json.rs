//! cargo-fuzz target `eval_json`: `seqwatch::fuzzing::eval_json` (see that module for its invariants).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = seqwatch::fuzzing::eval_json(data) {
        panic!("eval_json: {broken}");
    }
});
