//! `seqwatch replay` through the binary: output lines, exit codes, what goes to stderr.
//!
//! The cases and their expectations are the fixtures of `tests/replay_default_rule.rs`
//! (`tests/fixtures/replay`); here they only prove the binary prints what the library decides,
//! and that its edges behave: malformed lines are named `file:line:column` and skipped, a bad
//! rule or a missing input exits 2, `--rule` and `--max-alerts` take effect.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/replay")
        .join(name)
}

/// Runs `seqwatch replay ARGS` from an empty directory, so no `config.toml` is picked up.
fn replay(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("a temporary directory");
    Command::new(env!("CARGO_BIN_EXE_seqwatch"))
        .arg("replay")
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("the binary runs")
}

fn stdout_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .expect("stdout is UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8")
}

/// The sequence lines of an `.expected` file (its `#` lines are comments and directives).
fn expected(name: &str) -> Vec<Value> {
    std::fs::read_to_string(fixture(name))
        .expect("readable fixture")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("expected lines are JSON"))
        .collect()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("fixture paths are UTF-8")
}

#[test]
fn prints_one_line_per_sequence_and_exits_zero() {
    for case in [
        "shai_hulud_wave1",
        "shai_hulud_wave2",
        "one_event_two_stages",
    ] {
        let events = fixture(&format!("{case}.ndjson"));
        let out = replay(&[path_str(&events)]);
        assert_eq!(out.status.code(), Some(0), "{case}: {}", stderr(&out));
        assert_eq!(
            stdout_lines(&out),
            expected(&format!("{case}.expected")),
            "{case}"
        );
        let summary = stderr(&out);
        assert!(
            summary.contains("detections, 0 dropped by the cap of 100"),
            "{case}: {summary}"
        );
    }
}

#[test]
fn no_sequences_prints_nothing_and_exits_zero() {
    let events = fixture("chaindrop_persistence.ndjson");
    let out = replay(&[path_str(&events)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr(&out).contains("4 candidates, 0 bad events, 0 detections"),
        "{}",
        stderr(&out)
    );
}

/// Bad lines are reported with the path as given, line and column, and the rest still runs.
#[test]
fn malformed_lines_are_named_file_line_column_and_skipped() {
    let events = fixture("malformed_line.ndjson");
    let given = path_str(&events);
    let out = replay(&[given]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_lines(&out), expected("malformed_line.expected"));
    let err = stderr(&out);
    for (at, what) in [
        ("2:120", "invalid JSON: EOF while parsing a string"),
        ("4:1", "not a hit: needs string fields _index and _id"),
        ("5:1", "has no _source object"),
    ] {
        let line = err
            .lines()
            .find(|l| l.starts_with(&format!("skipped {given}:{at}: ")))
            .unwrap_or_else(|| panic!("no report for {given}:{at} in:\n{err}"));
        assert!(line.contains(what), "{line}");
    }
    assert!(
        err.contains("3 lines skipped"),
        "the summary counts the skipped lines:\n{err}"
    );
}

#[test]
fn another_rule_file_replaces_the_built_in_rule() {
    let events = fixture("v2_scope.ndjson");
    let builtin = replay(&[path_str(&events)]);
    assert_eq!(builtin.status.code(), Some(0), "{}", stderr(&builtin));
    assert_eq!(stdout_lines(&builtin), expected("v2_scope.expected"));

    let rule = fixture("rules/v4_cross_platform.toml");
    let v4 = replay(&["--rule", path_str(&rule), path_str(&events)]);
    assert_eq!(v4.status.code(), Some(0), "{}", stderr(&v4));
    assert_eq!(stdout_lines(&v4), expected("v2_scope.v4.expected"));
}

#[test]
fn max_alerts_keeps_the_latest_sequences_in_ascending_order() {
    let events = fixture("tail_cap.ndjson");
    let out = replay(&["--max-alerts", "2", path_str(&events)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_lines(&out), expected("tail_cap.max2.expected"));
    assert!(
        stderr(&out).contains("5 detections, 3 dropped by the cap of 2"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn max_alerts_zero_is_refused_like_max_signals_zero() {
    let events = fixture("tail_cap.ndjson");
    let out = replay(&["--max-alerts", "0", path_str(&events)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("--max-alerts must be at least 1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_rule_that_does_not_parse_exits_2_naming_file_line_column() {
    let events = fixture("tail_cap.ndjson");
    let rule = fixture("rules/broken_query.toml");
    let out = replay(&["--rule", path_str(&rule), path_str(&events)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    // Line 15 of the rule file is the stage missing its `]`; `by` is at column 41.
    assert!(
        err.contains(&format!("{}:15:41: expected \"]\"", path_str(&rule))),
        "{err}"
    );
}

#[test]
fn a_missing_input_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("no-such-export.ndjson");
    let out = replay(&[path_str(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains(&format!("cannot open {}", path_str(&missing))),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let events = fixture("tail_cap.ndjson");
    let out = replay(&["--max-alert", "2", path_str(&events)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("--max-alert"), "{}", stderr(&out));
}

#[test]
fn an_empty_export_has_no_sequences() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let empty = dir.path().join("empty.ndjson");
    std::fs::write(&empty, "\n\n").expect("writable temp dir");
    let out = replay(&[path_str(&empty)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("replay: 0 hits, 0 lines skipped"),
        "{}",
        stderr(&out)
    );
}
