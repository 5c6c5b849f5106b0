//! Secrets never show: not in `--help`, not in validation output, not in the logs or the run
//! document of a run that fails against an unreachable cluster.

use std::process::Command;

const PASSWORD: &str = "pw-0123-must-not-leak";
const API_KEY: &str = "key-id:key-0456-must-not-leak";

fn seqwatch(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seqwatch"));
    cmd.args(args)
        .current_dir(dir.path())
        .env_remove("RUST_LOG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("seqwatch runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn assert_clean(what: &str, text: &str) {
    for secret in [PASSWORD, API_KEY, "key-0456"] {
        assert!(!text.contains(secret), "{what} shows a secret:\n{text}");
    }
}

#[test]
fn help_shows_no_secret() {
    let env = [
        ("SEQWATCH_ES_PASSWORD", PASSWORD),
        ("SEQWATCH_ES_API_KEY", API_KEY),
    ];
    for args in [
        &["--help"][..],
        &["once", "--help"],
        &["run", "--help"],
        &["backfill", "--help"],
    ] {
        let (code, text) = seqwatch(args, &env);
        assert_eq!(code, 0, "{args:?}: {text}");
        assert!(text.contains("Usage"), "{text}");
        assert_clean(&format!("{args:?}"), &text);
    }
}

#[test]
fn failed_runs_and_validation_show_no_secret() {
    let basic = [
        ("SEQWATCH_ELASTICSEARCH__URL", "http://127.0.0.1:1"),
        ("SEQWATCH_ELASTICSEARCH__USERNAME", "seqwatch"),
        ("SEQWATCH_ELASTICSEARCH__REQUEST_TIMEOUT", "2s"),
        ("SEQWATCH_ELASTICSEARCH__MAX_RETRIES", "0"),
        ("SEQWATCH_ES_PASSWORD", PASSWORD),
    ];
    let (code, text) = seqwatch(&["--log-format", "json", "once"], &basic);
    assert_eq!(code, 1, "an unreachable cluster fails the run: {text}");
    assert!(
        text.contains("\"status\": \"failed\""),
        "the run document is printed: {text}"
    );
    assert!(
        text.contains("127.0.0.1:1"),
        "the error names the node: {text}"
    );
    assert_clean("once (basic auth)", &text);

    let (code, text) = seqwatch(&["validate", "--check-es"], &basic);
    assert_eq!(code, 1, "{text}");
    assert_clean("validate --check-es", &text);

    let key = [
        ("SEQWATCH_ELASTICSEARCH__URL", "http://127.0.0.1:1"),
        ("SEQWATCH_ELASTICSEARCH__REQUEST_TIMEOUT", "2s"),
        ("SEQWATCH_ELASTICSEARCH__MAX_RETRIES", "0"),
        ("SEQWATCH_ES_API_KEY", API_KEY),
    ];
    let (code, text) = seqwatch(&["once"], &key);
    assert_eq!(code, 1, "{text}");
    assert_clean("once (API key)", &text);
}

#[test]
fn credentials_in_the_url_are_refused_without_echoing_them() {
    let (code, text) = seqwatch(
        &["validate"],
        &[(
            "SEQWATCH_ELASTICSEARCH__URL",
            "http://elastic:hunter2-xyz@127.0.0.1:9200",
        )],
    );
    assert_ne!(code, 0);
    assert!(
        text.contains("elasticsearch.url"),
        "the key is named: {text}"
    );
    assert!(!text.contains("hunter2-xyz"), "{text}");
}
