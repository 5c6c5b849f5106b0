//! The EQL parser against fixtures, the project rule, the Elasticsearch EQL QA suites in
//! `../shared/data/es-eql-suite`, and random input.
//!
//! Fixtures: `tests/fixtures/eql/ok/*.eql` must parse into the tree in the matching `.ast`
//! (printed by [`show`]); `tests/fixtures/eql/err/*.eql` must fail with exactly the rendered
//! error in the matching `.err`. A missing or different expectation fails the test;
//! `UPDATE_EXPECT=1` rewrites the expectation files instead (review the diff).

mod shared_data;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use seqwatch::eql::ast::{
    ArithOp, CmpOp, Expr, ExprKind, KeyField, Literal, PatternKind, Query, Stage,
};
use seqwatch::eql::{parse, SourceOrigin};

// ----- a compact printer for expected trees ---------------------------------------------

fn show(query: &Query) -> String {
    match query {
        Query::Event(filter) => format!(
            "(event {} {})",
            category(&filter.category),
            expr(&filter.condition)
        ),
        Query::Sequence(seq) => {
            let mut out = format!("(sequence by=[{}]", keys(&seq.by));
            if let Some(ms) = seq.maxspan_ms {
                let _ = write!(out, " maxspan={ms}ms");
            }
            for stage in &seq.stages {
                let _ = write!(out, "\n  {}", show_stage(stage, "stage"));
            }
            if let Some(until) = &seq.until {
                let _ = write!(out, "\n  {}", show_stage(until, "until"));
            }
            out.push(')');
            out
        }
    }
}

fn show_stage(stage: &Stage, label: &str) -> String {
    let label = if stage.missing {
        format!("missing-{label}")
    } else {
        label.to_string()
    };
    format!(
        "({label} {} keys=[{}] {})",
        category(&stage.filter.category),
        keys(&stage.keys),
        expr(&stage.filter.condition)
    )
}

fn category(category: &Option<String>) -> String {
    match category {
        None => "any".to_string(),
        Some(name) => format!("{name:?}"),
    }
}

fn keys(keys: &[KeyField]) -> String {
    keys.iter()
        .map(|k| format!("{}{}", if k.optional { "?" } else { "" }, k.field.path))
        .collect::<Vec<_>>()
        .join(" ")
}

fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Literal(Literal::Null) => "null".to_string(),
        ExprKind::Literal(Literal::Bool(b)) => b.to_string(),
        ExprKind::Literal(Literal::Int(i)) => i.to_string(),
        ExprKind::Literal(Literal::Float(f)) => format!("{f:?}"),
        ExprKind::Literal(Literal::Str(s)) => format!("{s:?}"),
        ExprKind::Field(f) => format!("${}", f.path),
        ExprKind::Not(inner) => format!("(not {})", expr(inner)),
        ExprKind::And(a, b) => format!("(and {} {})", expr(a), expr(b)),
        ExprKind::Or(a, b) => format!("(or {} {})", expr(a), expr(b)),
        ExprKind::Compare { op, left, right } => {
            let op = match op {
                CmpOp::Eq => "==",
                CmpOp::NotEq => "!=",
                CmpOp::Lt => "<",
                CmpOp::LtEq => "<=",
                CmpOp::Gt => ">",
                CmpOp::GtEq => ">=",
            };
            format!("({op} {} {})", expr(left), expr(right))
        }
        ExprKind::In {
            value,
            list,
            negated,
            insensitive,
        } => format!(
            "({}in{} {} [{}])",
            if *negated { "not-" } else { "" },
            if *insensitive { "~" } else { "" },
            expr(value),
            list.iter().map(expr).collect::<Vec<_>>().join(" ")
        ),
        ExprKind::Pattern {
            value,
            kind,
            insensitive,
            patterns,
        } => {
            let op = match kind {
                PatternKind::Seq => ":",
                PatternKind::Like => "like",
                PatternKind::Regex => "regex",
            };
            let tilde = if *insensitive && *kind != PatternKind::Seq {
                "~"
            } else {
                ""
            };
            format!("({op}{tilde} {} {:?})", expr(value), patterns)
        }
        ExprKind::Arith { op, left, right } => {
            let op = match op {
                ArithOp::Add => "+",
                ArithOp::Sub => "-",
                ArithOp::Mul => "*",
                ArithOp::Div => "/",
                ArithOp::Mod => "%",
            };
            format!("({op} {} {})", expr(left), expr(right))
        }
        ExprKind::Neg(inner) => format!("(neg {})", expr(inner)),
        ExprKind::Call {
            func,
            insensitive,
            args,
        } => format!(
            "({func:?}{} {})",
            if *insensitive { "~" } else { "" },
            args.iter().map(expr).collect::<Vec<_>>().join(" ")
        ),
    }
}

// ----- fixtures ---------------------------------------------------------------------------

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/eql")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "eql"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// Compares `actual` with the expectation file, or rewrites it under `UPDATE_EXPECT=1`.
fn check_expectation(expected_path: &Path, actual: &str) -> Result<(), String> {
    if std::env::var("UPDATE_EXPECT").as_deref() == Ok("1") {
        std::fs::write(expected_path, format!("{actual}\n"))
            .map_err(|e| format!("{}: {e}", expected_path.display()))?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(expected_path).map_err(|e| {
        format!(
            "{}: {e} (run with UPDATE_EXPECT=1 to write it)",
            expected_path.display()
        )
    })?;
    if expected.trim_end_matches('\n') == actual {
        Ok(())
    } else {
        Err(format!(
            "{} differs\n--- expected\n{}\n--- actual\n{actual}",
            expected_path.display(),
            expected.trim_end_matches('\n')
        ))
    }
}

#[test]
fn ok_fixtures_parse_into_expected_trees() {
    let mut failures = Vec::new();
    let files = fixtures("ok");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{e}"));
        let name = format!(
            "ok/{}",
            file.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        );
        match parse(&text) {
            Ok(query) => {
                if let Err(msg) = check_expectation(&file.with_extension("ast"), &show(&query)) {
                    failures.push(msg);
                }
            }
            Err(err) => failures.push(err.render(
                &text,
                &SourceOrigin {
                    name: Some(&name),
                    ..Default::default()
                },
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    println!("{} ok fixtures parsed as expected", files.len());
}

#[test]
fn err_fixtures_fail_with_expected_rendered_errors() {
    let mut failures = Vec::new();
    let files = fixtures("err");
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{e}"));
        let name = format!(
            "err/{}",
            file.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        );
        match parse(&text) {
            Ok(query) => {
                failures.push(format!("{name}: parsed but should fail:\n{}", show(&query)))
            }
            Err(err) => {
                let rendered = err.render(
                    &text,
                    &SourceOrigin {
                        name: Some(&name),
                        ..Default::default()
                    },
                );
                if let Err(msg) = check_expectation(&file.with_extension("err"), &rendered) {
                    failures.push(msg);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    println!("{} err fixtures failed as expected", files.len());
}

// ----- the project rule -----------------------------------------------------------------

const RULE_QUERY: &str = r#"sequence by host.id with maxspan=10s
  [process where host.os.type == "linux" and event.type == "start" and event.action in ("exec", "ProcessRollup2") and process.name == "node" and process.args == "install"] by process.entity_id
  [process where host.os.type == "linux" and event.type == "start" and event.action in ("exec", "ProcessRollup2") and process.parent.name == "node"] by process.parent.entity_id
"#;

#[test]
fn rule_query_parses_into_the_expected_sequence() {
    let seq = match parse(RULE_QUERY) {
        Ok(Query::Sequence(seq)) => seq,
        other => panic!("expected a sequence, got {other:?}"),
    };
    assert_eq!(seq.maxspan_ms, Some(10_000));
    assert_eq!(seq.until, None);
    let by: Vec<&str> = seq.by.iter().map(|k| k.field.path.as_str()).collect();
    assert_eq!(by, vec!["host.id"]);
    assert_eq!(seq.stages.len(), 2);

    // Stage keys are the sequence keys first, then the stage's own
    // (ES LogicalPlanBuilder.keyedFilter: CollectionUtils.combine(joinKeys, visitJoinKeys(..))).
    let stage_keys: Vec<Vec<&str>> = seq
        .stages
        .iter()
        .map(|s| s.keys.iter().map(|k| k.field.path.as_str()).collect())
        .collect();
    assert_eq!(
        stage_keys,
        vec![
            vec!["host.id", "process.entity_id"],
            vec!["host.id", "process.parent.entity_id"]
        ]
    );
    for stage in &seq.stages {
        assert_eq!(stage.filter.category.as_deref(), Some("process"));
        assert!(!stage.missing);
        assert!(stage.keys.iter().all(|k| !k.optional));
        assert!(RULE_QUERY[stage.span.clone()].starts_with("[process where"));
    }
    assert!(RULE_QUERY[seq.stages[0].span.clone()].ends_with("by process.entity_id"));

    assert_eq!(
        expr(&seq.stages[0].filter.condition),
        r#"(and (and (and (and (== $host.os.type "linux") (== $event.type "start")) (in $event.action ["exec" "ProcessRollup2"])) (== $process.name "node")) (== $process.args "install"))"#
    );
    assert_eq!(
        expr(&seq.stages[1].filter.condition),
        r#"(and (and (and (== $host.os.type "linux") (== $event.type "start")) (in $event.action ["exec" "ProcessRollup2"])) (== $process.parent.name "node"))"#
    );
    // The `in` list, exactly: two case-sensitive string candidates, not negated.
    let mut cond = &seq.stages[1].filter.condition;
    while let ExprKind::And(left, right) = &cond.kind {
        if matches!(right.kind, ExprKind::In { .. }) {
            cond = right;
            break;
        }
        cond = left;
    }
    match &cond.kind {
        ExprKind::In {
            value,
            list,
            negated,
            insensitive,
        } => {
            assert!(!negated && !insensitive);
            assert!(matches!(&value.kind, ExprKind::Field(f) if f.path == "event.action"));
            assert_eq!(
                list.iter().map(|e| e.kind.clone()).collect::<Vec<_>>(),
                vec![
                    ExprKind::Literal(Literal::Str("exec".into())),
                    ExprKind::Literal(Literal::Str("ProcessRollup2".into()))
                ]
            );
        }
        other => panic!("no in-list found: {other:?}"),
    }
}

#[test]
fn maxspan_units_and_limits() {
    // ES LogicalPlanBuilder.visitSequenceParams: ms, s, m, h, d; positive integers only.
    for (unit, ms) in [
        ("ms", 7u64),
        ("s", 7_000),
        ("m", 420_000),
        ("h", 25_200_000),
        ("d", 604_800_000),
    ] {
        let q = format!("sequence with maxspan=7{unit} [a where true] [b where true]");
        match parse(&q) {
            Ok(Query::Sequence(seq)) => assert_eq!(seq.maxspan_ms, Some(ms), "{q}"),
            other => panic!("{q}: {other:?}"),
        }
    }
    // `7 s` with a space is the same tokens.
    assert!(parse("sequence with maxspan=7 s [a where true] [b where true]").is_ok());
    for (q, msg) in [
        (
            "sequence with maxspan=1.5s [a where true] [b where true]",
            "Decimal time interval [1.5] not supported; please use an positive integer",
        ),
        (
            "sequence with maxspan=0s [a where true] [b where true]",
            "A positive maxspan value is required; found [0]",
        ),
        (
            "sequence with maxspan=10 [a where true] [b where true]",
            "No time unit specified, did you mean [s] as in [10s]?",
        ),
        (
            "sequence with maxspan=10w [a where true] [b where true]",
            "Unrecognized time unit [w] in [10w], please specify one of [ms, s, m, h, d]",
        ),
        (
            "sequence with maxspan=9999999999999999d [a where true] [b where true]",
            "maxspan [9999999999999999d] is too large",
        ),
    ] {
        match parse(q) {
            Err(err) => assert_eq!(err.message, msg, "{q}"),
            Ok(_) => panic!("{q} parsed"),
        }
    }
}

#[test]
fn runs_expands_stages_and_checks_bounds() {
    // ES LogicalPlanBuilder.visitSequence: runs in 1..=100, at most 256 queries in all.
    let q = "sequence by k [a where true] by j with runs=3 [b where x == 1] by j";
    match parse(q) {
        Ok(Query::Sequence(seq)) => {
            assert_eq!(seq.stages.len(), 4);
            assert_eq!(seq.stages[0], seq.stages[1]);
            assert_eq!(seq.stages[1], seq.stages[2]);
            assert_eq!(seq.stages[3].filter.category.as_deref(), Some("b"));
        }
        other => panic!("{other:?}"),
    }
    let hundred = "sequence [a where true] with runs=100";
    assert!(matches!(parse(hundred), Ok(Query::Sequence(s)) if s.stages.len() == 100));
    for (q, msg) in [
        ("sequence [a where true] with runs=101", "A query cannot be repeated more than 100 times; found [101]"),
        ("sequence [a where true] with runs=0 [b where true]", "A positive runs value is required; found [0]"),
        ("sequence [a where true] with count=2 [b where true]", "Unrecognized option [count], expecting [runs]"),
        ("sequence [a where true] with runs=2.0 [b where true]", "Decimal runs value [2.0] not supported; please use a positive integer"),
        ("sequence [a where true] with runs=100 [b where true] with runs=100 [c where true] with runs=57", "Sequence cannot contain more than 256 queries; found [257]"),
        ("sequence [a where true] with runs=1", "A sequence requires a minimum of 2 queries, found [1]"),
    ] {
        match parse(q) {
            Err(err) => assert_eq!(err.message, msg, "{q}"),
            Ok(_) => panic!("{q} parsed"),
        }
    }
}

#[test]
fn missing_events_rules() {
    // ES LogicalPlanBuilder.visitSequence: maxspan required; at least one positive query;
    // leading and trailing missing events allowed.
    let q = "sequence with maxspan=1m ![a where true] [b where true] ![c where true]";
    match parse(q) {
        Ok(Query::Sequence(seq)) => {
            let missing: Vec<bool> = seq.stages.iter().map(|s| s.missing).collect();
            assert_eq!(missing, vec![true, false, true]);
            assert_eq!(&q[seq.stages[0].span.clone()], "![a where true]");
        }
        other => panic!("{other:?}"),
    }
    for (q, msg) in [
        (
            "sequence [a where true] ![b where true]",
            "[maxspan] is required for sequences with missing events queries; found none",
        ),
        (
            "sequence with maxspan=1s ![a where true] ![b where true]",
            "A sequence requires at least one positive event query; found none",
        ),
        (
            "sequence with maxspan=1s [a where true] [b where true] until ![c where true]",
            "the until query cannot be a missing-event query ![…]",
        ),
        (
            "sequence with maxspan=1s [a where true] -[b where true]",
            "missing-event stages are written ![ … ]; Elasticsearch does not accept -[ … ]",
        ),
        (
            "sequence with maxspan=1s [a where true] ! [b where true]",
            "unexpected character \"!\"",
        ),
    ] {
        match parse(q) {
            Err(err) => assert_eq!(err.message, msg, "{q}"),
            Ok(_) => panic!("{q} parsed"),
        }
    }
}

#[test]
fn until_and_optional_keys() {
    let q =
        "sequence by ?user.id [a where true] by x [b where true] by ?y until [c where true] by z";
    match parse(q) {
        Ok(Query::Sequence(seq)) => {
            assert_eq!(keys(&seq.by), "?user.id");
            assert_eq!(keys(&seq.stages[0].keys), "?user.id x");
            assert_eq!(keys(&seq.stages[1].keys), "?user.id ?y");
            let until = seq.until.as_ref().map(|u| keys(&u.keys));
            assert_eq!(until.as_deref(), Some("?user.id z"));
        }
        other => panic!("{other:?}"),
    }
    for (q, msg) in [
        (
            "sequence [a where true] by x [b where true] by x, y",
            "Inconsistent number of join keys specified; expected [1] but found [2]",
        ),
        (
            "sequence [a where true] by x [b where true] by x until [c where true]",
            "Inconsistent number of join keys specified; expected [1] but found [0]",
        ),
        (
            "sequence [a where true] [b where true] until [c where true] with runs=2",
            "[runs] cannot be used on the until query",
        ),
        (
            "sequence [a where true] until [c where true]",
            "A sequence requires a minimum of 2 queries besides until, found [1]",
        ),
        (
            "sequence with maxspan=1s by x [a where true] [b where true]",
            "Please specify sequence [by] before [with] not after",
        ),
    ] {
        match parse(q) {
            Err(err) => assert_eq!(err.message, msg, "{q}"),
            Ok(_) => panic!("{q} parsed"),
        }
    }
}

#[test]
fn conditions_operators_and_functions() {
    let cases = [
        // precedence: or < and < not < comparison < + - < * / % < unary
        (
            "any where a == 1 or not b == 2 and c < 3",
            "(or (== $a 1) (and (not (== $b 2)) (< $c 3)))",
        ),
        (
            "any where a + b * -c % 2 >= 1.5",
            "(>= (+ $a (% (* $b (neg $c)) 2)) 1.5)",
        ),
        ("any where a - -1 <= -2.5e1", "(<= (- $a -1) -25.0)"),
        ("any where +a > 1", "(> $a 1)"),
        (
            "any where x not in (1, 2) and y in~ (\"A\") and z not in~ (\"b\")",
            "(and (and (not-in $x [1 2]) (in~ $y [\"A\"])) (not-in~ $z [\"b\"]))",
        ),
        // `:` `like` `regex` with one constant or a list; a number after `:` is equality
        (
            "any where a : \"x*\" and b : (\"p\", \"q\") and c : 5",
            "(and (and (: $a [\"x*\"]) (: $b [\"p\", \"q\"])) (== $c 5))",
        ),
        (
            "any where a like \"x?\" and b like~ (\"p\", \"q\")",
            "(and (like $a [\"x?\"]) (like~ $b [\"p\", \"q\"]))",
        ),
        (
            "any where a regex \"x.*\" or b regex~ (\"p\")",
            "(or (regex $a [\"x.*\"]) (regex~ $b [\"p\"]))",
        ),
        (
            "any where a == null and b != null",
            "(and (== $a null) (!= $b null))",
        ),
        // ES binds a predicate to the primary expression: `a - 1 in (1)` is `a - (1 in (1))`.
        // Function names match case-insensitively (EqlFunctionRegistry.normalize).
        (
            "any where startsWith~(a, \"X\") and LENGTH(b) > 3",
            "(and (StartsWith~ $a \"X\") (> (Length $b) 3))",
        ),
        (
            "any where between(a, \"x\", \"y\", true, false) == \"z\"",
            "",
        ),
        (
            "any where cidrMatch(ip, \"10.0.0.0/8\", \"192.168.0.0/16\")",
            "(CidrMatch $ip \"10.0.0.0/8\" \"192.168.0.0/16\")",
        ),
        (
            "any where `my-field`.sub == 1 and @timestamp > 0 and `a``b` == 2",
            "(and (and (== $my-field.sub 1) (> $@timestamp 0)) (== $a`b 2))",
        ),
        ("any where ?maybe.there == null", "(== $maybe.there null)"),
        ("any where true", "true"),
        ("\"my category\" where a", "$a"),
        (
            "any where a == \"\"\"raw \\d \"q\" \"\"\" and b == \"t\\tq\\\"\\u{41}\"",
            "(and (== $a \"raw \\\\d \\\"q\\\" \") (== $b \"t\\tq\\\"A\"))",
        ),
    ];
    for (q, expected) in cases {
        let parsed = parse(q);
        if expected.is_empty() {
            let err = parsed.err().map(|e| e.message);
            assert_eq!(
                err.as_deref(),
                Some("error building [between]: expects three or four arguments"),
                "{q}"
            );
            continue;
        }
        match parsed {
            Ok(Query::Event(filter)) => assert_eq!(expr(&filter.condition), expected, "{q}"),
            other => panic!("{q}: {other:?}"),
        }
    }
    match parse("\"my category\" where a") {
        Ok(Query::Event(filter)) => assert_eq!(filter.category.as_deref(), Some("my category")),
        other => panic!("{other:?}"),
    }
    match parse("any where a") {
        Ok(Query::Event(filter)) => assert_eq!(filter.category, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn integers_are_i64_and_overflow_is_an_error() {
    match parse("any where a == 9223372036854775807 and b == -9223372036854775807") {
        Ok(Query::Event(f)) => assert_eq!(
            expr(&f.condition),
            "(and (== $a 9223372036854775807) (== $b -9223372036854775807))"
        ),
        other => panic!("{other:?}"),
    }
    let err = parse("any where a == 9223372036854775808")
        .err()
        .map(|e| e.message);
    assert_eq!(
        err.as_deref(),
        Some("Number [9223372036854775808] is too large for a 64-bit integer")
    );
}

// ----- the Elasticsearch EQL QA suites ------------------------------------------------------

fn suite_queries(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: toml::Value =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let Some(queries) = value.get("queries").and_then(|q| q.as_array()) else {
        panic!("{}: no [[queries]]", path.display());
    };
    queries
        .iter()
        .map(|q| {
            let name = q
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("?")
                .to_string();
            let query = q
                .get("query")
                .and_then(|n| n.as_str())
                .unwrap_or_else(|| panic!("{name}: no query"));
            (name, query.to_string())
        })
        .collect()
}

#[ignore = "needs ../shared/data; scripts/test runs it"]
#[test]
fn es_suite_queries_parse_or_are_rejected_as_elasticsearch_does() {
    let data = shared_data::require(
        "es_suite_queries_parse_or_are_rejected_as_elasticsearch_does",
        &["es-eql-suite"],
    );
    let table_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eql/es_suite_rejections.toml");
    let table: toml::Value =
        toml::from_str(&std::fs::read_to_string(&table_path).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e}"));
    let mut rejections = std::collections::BTreeMap::new();
    for entry in table
        .get("reject")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        let get = |k: &str| {
            entry
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        rejections.insert((get("file"), get("name")), get("message"));
    }

    let mut failures = Vec::new();
    let mut used = 0;
    for file in [
        "test_queries.toml",
        "additional_test_queries.toml",
        "test_extra.toml",
        "test_missing_events.toml",
    ] {
        let (mut parsed, mut piped, mut rejected) = (0, 0, 0);
        let queries = suite_queries(&data.join("es-eql-suite").join(file));
        for (name, query) in &queries {
            let result = parse(query);
            if let Some(pipe_at) = query.find('|') {
                piped += 1;
                match result {
                    Err(err)
                        if err.message == "pipes are not supported"
                            && err.span == (pipe_at..pipe_at + 1) => {}
                    other => failures.push(format!(
                        "{file} {name}: expected the pipe error at byte {pipe_at}, got {other:?}"
                    )),
                }
            } else if let Some(message) = rejections.get(&(file.to_string(), name.clone())) {
                rejected += 1;
                used += 1;
                match result {
                    Err(err) if err.message.starts_with(message.as_str()) => {}
                    other => failures.push(format!(
                        "{file} {name}: expected an error starting {message:?}, got {other:?}"
                    )),
                }
            } else {
                parsed += 1;
                if let Err(err) = result {
                    failures.push(format!(
                        "{file} {name}:\n{}",
                        err.render(query, &SourceOrigin::default())
                    ));
                }
            }
        }
        println!(
            "{file}: {} queries: {parsed} parse, {piped} rejected for pipes, {rejected} rejected as ES rejects them",
            queries.len()
        );
    }
    assert_eq!(
        used,
        rejections.len(),
        "stale entries in {}",
        table_path.display()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[ignore = "needs ../shared/data; scripts/test runs it"]
#[test]
fn es_missing_event_queries_parse_in_the_current_syntax() {
    let data = shared_data::require(
        "es_missing_event_queries_parse_in_the_current_syntax",
        &["es-eql-suite"],
    );
    // The shared copy (ES 12d865a) writes missing events as `-[`; ES now writes `![`
    // (x-pack/plugin/eql/qa/common/src/main/resources/test_missing_events.toml @ 6373470,
    // EqlBase.g4 MISSING_EVENT_OPEN). Rewritten, every query without a pipe must parse and
    // keep the missing stages.
    let queries = suite_queries(&data.join("es-eql-suite/test_missing_events.toml"));
    let mut checked = 0;
    for (name, query) in &queries {
        if query.contains('|') {
            continue;
        }
        let current = query.replace("-[", "![");
        match parse(&current) {
            Ok(Query::Sequence(seq)) => {
                // `with runs=2` on a missing stage repeats it, so there can be more.
                let written = current.matches("![").count();
                let missing = seq.stages.iter().filter(|s| s.missing).count();
                assert!(
                    written > 0 && missing >= written,
                    "{name}: {missing} missing stages"
                );
                assert!(seq.maxspan_ms.is_some(), "{name}");
                checked += 1;
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(checked, 22);
}

// ----- never panic ------------------------------------------------------------------------

const TOKENS: &[&str] = &[
    "sequence",
    "by",
    "with",
    "maxspan",
    "=",
    "10s",
    "runs",
    "until",
    "where",
    "any",
    "process",
    "[",
    "]",
    "![",
    "(",
    ")",
    "and",
    "or",
    "not",
    "in",
    "in~",
    ":",
    "like",
    "like~",
    "regex",
    "regex~",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "%",
    ",",
    ".",
    "?",
    "|",
    "\"s\"",
    "\"\"\"r\"\"\"",
    "'x'",
    "?\"y\"",
    "1",
    "1.5",
    "99999999999999999999",
    "null",
    "true",
    "false",
    "a",
    "b.c",
    "`q`",
    "@timestamp",
    "startsWith~",
    "length",
    "join",
    "sample",
    "of",
    "descendant",
    "\\",
    "\"\\u{12}\"",
    "\"\\u{D800}\"",
    "/*",
    "*/",
    "//",
    "\n",
    "é",
    "-[",
];

fn check_no_panic(input: &str) -> Result<(), TestCaseError> {
    match parse(input) {
        Ok(_) => Ok(()),
        Err(err) => {
            prop_assert!(
                err.span.start <= err.span.end,
                "span {:?} reversed",
                err.span
            );
            prop_assert!(
                err.span.end <= input.len(),
                "span {:?} beyond {}",
                err.span,
                input.len()
            );
            // Rendering must not panic either.
            let _ = err.render(input, &SourceOrigin::default());
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_strings_never_panic(input in any::<String>()) {
        check_no_panic(&input)?;
    }

    #[test]
    fn random_token_soups_never_panic(
        picks in proptest::collection::vec((0..TOKENS.len(), any::<bool>()), 0..40)
    ) {
        let mut input = String::new();
        for (i, space) in picks {
            input.push_str(TOKENS[i]);
            if space {
                input.push(' ');
            }
        }
        check_no_panic(&input)?;
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("any where {}a{}", "(".repeat(5000), ")".repeat(5000));
    assert!(parse(&deep).is_err());
    let nots = format!("any where {}a", "not ".repeat(5000));
    assert!(parse(&nots).is_err());
    let minus = format!("any where {}a > 1", "- ".repeat(5000));
    assert!(parse(&minus).is_err());
    let long_chain = format!("any where a == 1{}", " or a == 1".repeat(3000));
    assert!(parse(&long_chain).is_ok());
}
