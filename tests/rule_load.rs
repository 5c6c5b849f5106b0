//! Rule loading: the built-in rule, the upstream detection-rules revisions in
//! `../shared/data/rules`, and every error class with its exact message.

use std::time::Duration;

mod shared_data;

use seqwatch::eql::ast::Query;
use seqwatch::rule::{Rule, RuleError, Severity};

fn expect_err(text: &str) -> RuleError {
    match Rule::from_toml_str(text, "x.toml") {
        Ok(rule) => panic!("expected an error, loaded {:?}", rule.name),
        Err(err) => err,
    }
}

/// A minimal valid rule with `{query}` and `{extra}` to fill in.
fn rule_text(query: &str, extra: &str) -> String {
    format!(
        "[metadata]\nmaturity = \"production\"\n\n[rule]\nname = \"r\"\nrule_id = \"id-1\"\ntype = \"eql\"\nlanguage = \"eql\"\nrisk_score = 47\nseverity = \"medium\"\nfrom = \"now-9m\"\nindex = [\"logs-*\"]\n{extra}query = '''\n{query}\n'''\n"
    )
}

#[test]
fn builtin_rule_loads_with_expected_settings() {
    let rule = Rule::builtin().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rule.name, "Node.js Pre or Post-Install Script Execution");
    assert_eq!(rule.rule_id, "0871a5d8-6b5f-4a12-a568-fd7bc05bd8db");
    assert_eq!(rule.risk_score, 47);
    assert_eq!(rule.severity, Severity::Medium);
    assert_eq!(rule.from, "now-9m");
    assert_eq!(rule.lookback, Duration::from_secs(9 * 60));
    assert_eq!(rule.interval_text, "5m");
    assert_eq!(rule.interval, Duration::from_secs(5 * 60));
    assert_eq!(rule.max_signals, 100);
    assert_eq!(rule.version, Some(2));
    assert_eq!(
        rule.index,
        vec!["logs-endpoint.events.process*", "logs-crowdstrike.fdr*"]
    );
    assert_eq!(rule.timestamp_override, None);
    assert_eq!(rule.tiebreaker_field, None);
    assert_eq!(rule.event_category_override, None);
    match &rule.query {
        Query::Sequence(seq) => {
            assert_eq!(seq.maxspan_ms, Some(10_000));
            assert_eq!(seq.stages.len(), 2);
        }
        other => panic!("expected a sequence, got {other:?}"),
    }

    let tactics: Vec<(&str, Vec<&str>)> = rule
        .threat
        .iter()
        .map(|t| {
            (
                t.tactic.id.as_str(),
                t.technique.iter().map(|x| x.id.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        tactics,
        vec![
            ("TA0003", vec!["T1543", "T1574"]),
            ("TA0002", vec!["T1059"]),
            ("TA0005", vec![]),
        ]
    );
    assert_eq!(rule.threat[0].tactic.name, "Persistence");
    assert_eq!(rule.threat[1].technique[0].subtechnique[0].id, "T1059.004");
    assert_eq!(
        rule.threat[1].technique[0].subtechnique[0].name,
        "Unix Shell"
    );
    assert_eq!(rule.threat[2].tactic.name, "Defense Evasion");
}

#[ignore = "needs ../shared/data; scripts/test runs it"]
#[test]
fn upstream_revisions_load_and_v2_matches_builtin() {
    let data = shared_data::require("upstream_revisions_load_and_v2_matches_builtin", &["rules"]);
    let rules = data.join("rules");
    let v1 =
        rules.join("v1-linux-53a2233/persistence_nodejs_pre_or_post_install_script_execution.toml");
    let v2 =
        rules.join("v2-linux-37e18af/persistence_nodejs_pre_or_post_install_script_execution.toml");
    let v4 = rules
        .join("v4-cross-platform-head/execution_nodejs_pre_or_post_install_script_execution.toml");
    let mut loaded = Vec::new();
    for path in [&v1, &v2, &v4] {
        match Rule::load(path) {
            Ok(rule) => loaded.push(rule),
            Err(err) => panic!("{err}"),
        }
    }
    let builtin = Rule::builtin().unwrap_or_else(|e| panic!("{e}"));
    let v2 = &loaded[1];
    assert_eq!(v2.query_text, builtin.query_text);
    assert_eq!(v2.query, builtin.query);
    assert_eq!(v2.index, builtin.index);
    assert_eq!(v2.from, builtin.from);
    assert_eq!(v2.lookback, builtin.lookback);
    assert_eq!(v2.interval, builtin.interval);
    assert_eq!(v2.max_signals, builtin.max_signals);
    assert_eq!(v2.severity, builtin.severity);
    assert_eq!(v2.risk_score, builtin.risk_score);
    assert_eq!(v2.rule_id, builtin.rule_id);
    assert_eq!(v2.threat, builtin.threat);
    // Upstream sets no interval (Kibana default) and keeps versions in a version lock.
    assert_eq!(v2.interval_text, "5m");
    assert_eq!(v2.version, None);
    // v1 and v4 differ from v2 in the query; v4 adds an index.
    assert_ne!(loaded[0].query, v2.query);
    assert_ne!(loaded[2].query, v2.query);
    assert_eq!(loaded[2].index.len(), 3);
}

#[test]
fn load_dir_reads_sorted_and_collects_every_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let good = rule_text("process where true", "");
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).unwrap_or_else(|e| panic!("{e}"))
    };
    write("b-good.toml", &good);
    write(
        "a-good.toml",
        &good.replace("name = \"r\"", "name = \"first\""),
    );
    write("c-bad.toml", &rule_text("process where", ""));
    write(
        "d-bad.toml",
        &good.replace("type = \"eql\"", "type = \"query\""),
    );
    write("notes.txt", "not a rule");

    match Rule::load_dir(dir.path()) {
        Ok(rules) => panic!("expected errors, loaded {}", rules.len()),
        Err(err) => {
            assert_eq!(err.errors.len(), 2);
            let text = err.to_string();
            let c = text.find("c-bad.toml").unwrap_or(usize::MAX);
            let d = text.find("d-bad.toml").unwrap_or(usize::MAX);
            assert!(
                c < d && d != usize::MAX,
                "errors not in file order:\n{text}"
            );
            assert!(
                text.starts_with("2 rule file(s) failed to load:\n"),
                "{text}"
            );
        }
    }

    std::fs::remove_file(dir.path().join("c-bad.toml")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(dir.path().join("d-bad.toml")).unwrap_or_else(|e| panic!("{e}"));
    let rules = Rule::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["first", "r"]);
}

#[test]
fn bad_query_on_third_line_points_into_the_toml_file() {
    let text = rule_text(
        "sequence by host.id\n  [process where true]\n  [process where a == 1 where] by x",
        "",
    );
    let err = expect_err(&text);
    // The query's first line is line 14 of the file, so its third line is line 16.
    assert_eq!(
        err.to_string(),
        "x.toml:16:25: expected \"]\" but found \"where\"\n   |   [process where a == 1 where] by x\n   |                         ^^^^^"
    );
}

#[test]
fn bad_query_in_basic_string_with_escapes_uses_offsets() {
    let text = "[rule]\nname = \"r\"\nrule_id = \"i\"\ntype = \"eql\"\nrisk_score = 1\nseverity = \"low\"\nfrom = \"now-1m\"\nquery = \"process where a == \\\"x\\\" or\"\n";
    let err = expect_err(text);
    assert_eq!(
        err.to_string(),
        "x.toml:8:35: expected an expression but found end of input\n   | process where a == \"x\" or\n   |                          ^"
    );
}

#[test]
fn non_eql_rules_are_rejected() {
    let text = rule_text("process where true", "").replace("type = \"eql\"", "type = \"query\"");
    assert_eq!(
        expect_err(&text).to_string(),
        "x.toml:7:8: [rule].type: rule type is \"query\"; only \"eql\" rules are supported"
    );
    let text =
        rule_text("process where true", "").replace("language = \"eql\"", "language = \"kuery\"");
    assert_eq!(
        expect_err(&text).to_string(),
        "x.toml:8:12: [rule].language: query language is \"kuery\"; only \"eql\" rules are supported"
    );
}

#[test]
fn bad_schedule_and_scoring_fields_are_named() {
    let base = rule_text("process where true", "");
    let cases = [
        (
            base.replace("from = \"now-9m\"", "from = \"9m\""),
            "x.toml:11:8: [rule].from: expected date math of the form now-<number><unit> (e.g. now-9m), found \"9m\"",
        ),
        (
            rule_text("process where true", "interval = \"5 minutes\"\n"),
            "x.toml:13:12: [rule].interval: unknown unit \" minutes\" (use s, m, h or d) in \"5 minutes\" (expected e.g. 5m)",
        ),
        (
            base.replace("risk_score = 47", "risk_score = 470"),
            "x.toml:9:14: [rule].risk_score: must be an integer from 0 to 100, found 470",
        ),
        (
            base.replace("severity = \"medium\"", "severity = \"urgent\""),
            "x.toml:10:12: [rule].severity: must be one of low, medium, high, critical; found \"urgent\"",
        ),
        (
            rule_text("process where true", "max_signals = 0\n"),
            "x.toml:13:15: [rule].max_signals: must be a positive integer, found 0",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(expect_err(&text).to_string(), expected);
    }
}

#[test]
fn toml_errors_name_file_line_and_column() {
    let text = rule_text("process where true", "").replace("risk_score = 47", "risk_score = 47 47");
    let err = expect_err(&text);
    assert!(matches!(err, RuleError::Toml { line: 9, .. }), "{err:?}");
    assert!(err.to_string().starts_with("x.toml:9:"), "{err}");

    let text = rule_text("process where true", "").replace("severity = \"medium\"\n", "");
    let err = expect_err(&text);
    assert!(
        err.to_string().contains("missing field `severity`"),
        "{err}"
    );
    assert!(err.to_string().starts_with("x.toml:"), "{err}");

    let text =
        rule_text("process where true", "").replace("risk_score = 47", "risk_score = \"high\"");
    let err = expect_err(&text);
    assert!(err.to_string().starts_with("x.toml:9:14: "), "{err}");
}

#[test]
fn defaults_and_optional_fields() {
    let text = rule_text(
        "process where true",
        "version = 3\ntimestamp_override = \"event.ingested\"\ntiebreaker_field = \"event.sequence\"\nevent_category_override = \"event.type\"\n",
    );
    let rule = Rule::from_toml_str(&text, "x.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rule.version, Some(3));
    assert_eq!(rule.timestamp_override.as_deref(), Some("event.ingested"));
    assert_eq!(rule.tiebreaker_field.as_deref(), Some("event.sequence"));
    assert_eq!(rule.event_category_override.as_deref(), Some("event.type"));
    assert_eq!(rule.interval, Duration::from_secs(300));
    assert_eq!(rule.max_signals, 100);
    assert!(rule.threat.is_empty());
}

#[test]
fn missing_file_is_a_read_error() {
    let err = match Rule::load(std::path::Path::new("/nonexistent/rule.toml")) {
        Ok(_) => panic!("loaded a missing file"),
        Err(err) => err,
    };
    assert!(matches!(err, RuleError::Read { .. }));
    assert!(
        err.to_string()
            .starts_with("/nonexistent/rule.toml: cannot read rule file: "),
        "{err}"
    );
}

#[test]
fn evaluator_refusals_are_reported_at_load_with_their_place() {
    // A Lucene regex intersection (`&`) cannot be translated faithfully; the evaluator refuses
    // it, and the rule loader reports that at the query's place in the file.
    let text = rule_text("process where\n  process.name regex \"a&b\"", "");
    let err = expect_err(&text).to_string();
    assert!(
        err.starts_with("x.toml:15:3: invalid or unsupported regex [a&b]"),
        "{err}"
    );
    assert!(
        err.contains("process.name regex"),
        "the offending line is shown: {err}"
    );
}

/// Every class of EQL error in a rule file is reported as
/// `file:line:column`, with the line and a caret under the place.
#[test]
fn every_class_of_eql_error_names_file_line_column_with_a_caret() {
    let cases = [
        // Syntax.
        (
            "process where a == )",
            "x.toml:14:20: expected an expression but found \")\"\n   | process where a == )\n   |                    ^",
        ),
        // An unknown function.
        (
            "process where foo(a)",
            "x.toml:14:15: Unknown function [foo]\n   | process where foo(a)\n   |               ^^^",
        ),
        // A type error.
        (
            "process where length(1) > 0",
            "x.toml:14:22: argument 1 of [length] must be [string], found [number]\n   | process where length(1) > 0\n   |                      ^",
        ),
        // Unsupported features.
        (
            "process where a == 1 | head 5",
            "x.toml:14:22: pipes are not supported\n   | process where a == 1 | head 5\n   |                      ^",
        ),
        (
            "join [process where true] [file where true]",
            "x.toml:14:1: JOIN command is not supported\n   | join [process where true] [file where true]\n   | ^^^^",
        ),
        (
            "sample by host.id [process where true] [process where true]",
            "x.toml:14:1: sample queries are not supported\n   | sample by host.id [process where true] [process where true]\n   | ^^^^^^",
        ),
        // A bad maxspan.
        (
            "sequence with maxspan=10x [process where true] [process where true]",
            "x.toml:14:25: Unrecognized time unit [x] in [10x], please specify one of [ms, s, m, h, d]\n   | sequence with maxspan=10x [process where true] [process where true]\n   |                         ^",
        ),
        (
            "sequence with maxspan=-1s [process where true] [process where true]",
            "x.toml:14:23: expected a number but found \"-\"\n   | sequence with maxspan=-1s [process where true] [process where true]\n   |                       ^",
        ),
    ];
    for (query, expected) in cases {
        assert_eq!(
            expect_err(&rule_text(query, "")).to_string(),
            expected,
            "{query}"
        );
    }
}

/// An empty, blank or missing `index` is refused at its place: Kibana would fall back to the
/// space's default index patterns, which seqwatch does not have, and an empty pattern list
/// would search every index of the cluster.
#[test]
fn index_must_name_at_least_one_pattern() {
    let base = rule_text("process where true", "");
    let cases = [
        (
            base.replace("index = [\"logs-*\"]", "index = []"),
            "x.toml:12:9: [rule].index: lists no index pattern; list the index patterns to search",
        ),
        (
            base.replace("index = [\"logs-*\"]", "index = [\" \"]"),
            "x.toml:12:9: [rule].index: lists no index pattern; list the index patterns to search",
        ),
        (
            base.replace("index = [\"logs-*\"]", "index = [\"logs-*\", \"\"]"),
            "x.toml:12:9: [rule].index: has an empty index pattern",
        ),
        (
            base.replace("index = [\"logs-*\"]\n", ""),
            "x.toml:4:1: [rule].index: is missing; list the index patterns to search (e.g. index = [\"logs-endpoint.events.process*\"])",
        ),
        (
            base.replace("index = [\"logs-*\"]", "index = \"logs-*\""),
            "x.toml:12:9: invalid type: string \"logs-*\", expected a sequence",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(expect_err(&text).to_string(), expected);
    }
}
