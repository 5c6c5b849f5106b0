//! Where the shared reference data lives, for the tests that read it: `$SEQWATCH_SHARED_DATA`,
//! else `../shared/data` beside the repository (a git worktree sits one level deeper, so
//! `../../shared/data` is tried too). The data is read in place, never copied into the repo.
//!
//! Every test that reads it is `#[ignore = "needs ../shared/data; scripts/test runs it"]`, so a
//! plain `cargo test` reports it as ignored; run explicitly (`--include-ignored`, as
//! `scripts/test` does) it fails when the data is missing, never passes without it.

#![allow(dead_code)] // Each test binary uses what it needs.

use std::path::PathBuf;

/// The data folder, if it holds every path in `required` (relative to it).
pub fn find(required: &[&str]) -> Option<PathBuf> {
    let complete = |dir: &PathBuf| required.iter().all(|r| dir.join(r).exists());
    if let Some(dir) = std::env::var_os("SEQWATCH_SHARED_DATA") {
        let dir = PathBuf::from(dir);
        return complete(&dir).then_some(dir);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [root.join("../shared/data"), root.join("../../shared/data")]
        .into_iter()
        .find(complete)
}

/// [`find`], or a panic naming what is missing and where it was looked for.
pub fn require(test: &str, required: &[&str]) -> PathBuf {
    find(required).unwrap_or_else(|| {
        panic!(
            "{test}: the shared data {required:?} was not found under ../shared/data or \
             $SEQWATCH_SHARED_DATA; this test needs it (set SEQWATCH_SHARED_DATA to the shared \
             data folder)"
        )
    })
}
