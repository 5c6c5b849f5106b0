//! Several rules at once: `--rules` takes files and folders; every rule is checked and listed,
//! and two rules that would produce colliding alert ids are refused.

use std::process::Command;

const BUILTIN: &str = include_str!("../rules/nodejs-install-script.toml");

fn variant(rule_id: &str, name: &str) -> String {
    BUILTIN
        .replace("0871a5d8-6b5f-4a12-a568-fd7bc05bd8db", rule_id)
        .replace("Node.js Pre or Post-Install Script Execution", name)
}

fn validate(args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_seqwatch"))
        .arg("validate")
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("seqwatch runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_folder_and_a_file_of_rules_run_together() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), variant("rule-a", "Rule A")).unwrap();
    std::fs::write(dir.path().join("b.toml"), variant("rule-b", "Rule B")).unwrap();
    let extra = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(extra.path(), variant("rule-c", "Rule C")).unwrap();
    let (code, text) = validate(&[
        "--rules",
        dir.path().to_str().unwrap(),
        "--rules",
        extra.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{text}");
    for name in ["Rule A", "Rule B", "Rule C"] {
        assert!(
            text.contains(&format!("ok: rule \"{name}\"")),
            "{name} listed: {text}"
        );
    }
}

#[test]
fn rules_that_would_share_alert_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), variant("same-id", "Rule A")).unwrap();
    std::fs::write(dir.path().join("b.toml"), variant("same-id", "Rule B")).unwrap();
    let (code, text) = validate(&["--rules", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("two rules share the uuid \"same-id\""),
        "{text}"
    );
}

#[test]
fn every_broken_rule_in_a_folder_is_reported_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.toml"),
        variant("rule-a", "Rule A").replace("maxspan=10s", "maxspan=10x"),
    )
    .unwrap();
    std::fs::write(dir.path().join("b.toml"), "[rule]\nname = 1\n").unwrap();
    let (code, text) = validate(&["--rules", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("2 rule file(s) failed to load"), "{text}");
    assert!(
        text.contains("a.toml:") && text.contains("b.toml:2:"),
        "file:line for each: {text}"
    );
}
