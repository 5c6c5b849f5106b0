//! cargo-fuzz target `eql_parse`: `seqwatch::fuzzing::eql_parse` (see that module for its invariants).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(broken) = seqwatch::fuzzing::eql_parse(data) {
        panic!("eql_parse: {broken}");
    }
});
