//! Where the shared reference data lives, for the tests that read it: `$SEQWATCH_SHARED_DATA`,
//! else `../shared/data` beside the repository (a git worktree sits one level deeper, so
//! `../../shared/data` is tried too). The data is read in place, never copied into the repo.
//!
//! A test that needs it and cannot find it fails when `CI=true` (CI always has it), and
//! otherwise says plainly on stderr that it skipped.

#![allow(dead_code)] // Each test binary uses what it needs.

use std::io::Write as _;
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

/// [`find`], or `None` after saying that `test` skipped; with `CI=true` a miss fails the test.
pub fn or_skip(test: &str, required: &[&str]) -> Option<PathBuf> {
    let found = find(required);
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{test}: CI=true but the shared data ({required:?} under ../shared/data or $SEQWATCH_SHARED_DATA) is missing");
        }
        // Straight to stderr: libtest captures print!/eprint! of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: shared data {required:?} not found (set SEQWATCH_SHARED_DATA to the shared data folder)"
        );
    }
    found
}
