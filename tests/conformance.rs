//! Conformance harness: Elasticsearch's EQL QA spec suites run through seqwatch's parser,
//! evaluator and sequence engine, compared with the event ids ES's own QA tests expect.
//!
//! How ES runs these specs (`x-pack/plugin/eql/qa/common/src/main/java/org/elasticsearch/test/eql/`
//! `BaseEqlSpecTestCase.java`, `EqlSpecTestCase.java`, `EqlExtraSpecTestCase.java`,
//! `EqlMissingEventsSpecTestCase.java`, `EqlSpecLoader.java`, `DataLoader.java`), reproduced here:
//! - index `endgame-140` for `test_queries.toml` + `additional_test_queries.toml` (tiebreaker
//!   `serial_event_id`), `extra` for `test_extra.toml` and `missing-events` for
//!   `test_missing_events.toml` (tiebreaker `sequence`); `event_category_field` is
//!   `event.category`, an alias of `event_type`; `timestamp_field` is `@timestamp`.
//! - `size` is 50 (no spec here sets `size`) and `result_position` is random `head` or `tail`:
//!   a query without pipes must give the expected ids in both positions, so the harness checks
//!   both. A `| head N` / `| tail N` pipe is ES's own (`LogicalPlanBuilder.visitStatement`): the
//!   first limiting pipe gets the default limit beneath it, of its own kind (`Head(size)` under a
//!   head, `Tail(size)` under a tail), then the pipes apply in order on the ascending result.
//! - The ids compared are the id field (the tiebreaker) of every event of every sequence,
//!   flattened in order, `-1` for a missing-event slot; `join_keys`, when a spec lists them, are
//!   compared as strings, flattened the same way.
//!
//! The shared copies are 2020 revisions; [`translate`] rewrites their old syntax where a current
//! spelling exists. The per-file counts are asserted, every sequence query must pass, and the
//! generated part of `docs/conformance.md` must equal what the run produces (run with
//! `SEQWATCH_BLESS=1` to rewrite it).

#[path = "conformance/data.rs"]
mod data;
mod shared_data;
#[path = "conformance/translate.rs"]
mod translate;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use seqwatch::correlate::KeyValue;
use seqwatch::engine::{CompiledRule, Detection, EngineOptions};
use seqwatch::eql::ast;
use seqwatch::replay;
use seqwatch::rule::{Rule, Severity};

use data::Dataset;
use translate::{translate, CaseMode, Limit};

/// `BaseEqlSpecTestCase.requestSize()`.
const ES_SIZE: usize = 50;
/// A cap larger than any result here: the full, uncapped ascending result.
const UNCAPPED: usize = 100_000;

const BEGIN_MARK: &str = "<!-- BEGIN GENERATED: cargo test --test conformance -->";
const END_MARK: &str = "<!-- END GENERATED -->";

/// What the run must produce, per file: (total, runnable, passed, failed). A change in these
/// numbers is a change in behaviour and must be looked at, then blessed here and in the doc.
const EXPECTED_COUNTS: &[(&str, [usize; 4])] = &[
    ("test_queries.toml", [241, 134, 134, 0]),
    ("additional_test_queries.toml", [39, 34, 34, 0]),
    ("test_extra.toml", [9, 9, 6, 3]),
    ("test_missing_events.toml", [26, 26, 26, 0]),
];

/// Why each query that fails does so. The test requires this list to match the failures
/// exactly, so a new failure (or a fixed one) cannot go unexplained. No sequence query may
/// appear here.
const KNOWN_DIVERGENCES: &[(&str, &str, &str)] = &[
    (
        "test_extra.toml",
        "optionalDefaultNullValueFieldEqualNull",
        "the mapping gives `default_null_value_field` `null_value: \"NULL\"`, so ES indexes an explicit JSON null as the term `NULL`; seqwatch evaluates `_source` and sees null (mapping `null_value` is not modelled)",
    ),
    (
        "test_extra.toml",
        "optionalDefaultNullValueFieldEqualDefaultValue",
        "same `null_value: \"NULL\"` mapping: ES matches the documents whose JSON value is null; seqwatch does not model `null_value`",
    ),
    (
        "test_extra.toml",
        "optionalMissingFieldImplicitBooleanEquality",
        "ES replaces an optional field that no mapping has with `null` (PR #79677), making `where ?inexistent_field` the condition `null`; seqwatch has no list of mapped fields and refuses a bare field as a condition",
    ),
];

// ----- locating the shared suite -------------------------------------------------------------

/// Every file the harness reads, relative to the shared data folder.
const SUITE_FILES: &[&str] = &[
    "es-eql-suite/test_queries.toml",
    "es-eql-suite/additional_test_queries.toml",
    "es-eql-suite/test_extra.toml",
    "es-eql-suite/test_missing_events.toml",
    "es-eql-suite/data/endgame-140.mapping",
    "es-eql-suite/data/extra.data",
    "es-eql-suite/data/extra.mapping",
    "es-eql-suite/data/missing-events.data",
    "es-eql-suite/data/missing-events.mapping",
    "eql-suite/test_data.json",
];

// ----- one spec query -----------------------------------------------------------------------

/// How one spec query fared.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Passed,
    Failed(String),
    NotRunnable { category: String, detail: String },
}

struct QueryReport {
    file: &'static str,
    name: String,
    sequence: bool,
    rewrites: Vec<&'static str>,
    outcome: Outcome,
}

struct Suite {
    file: &'static str,
    tiebreaker: &'static str,
}

fn not_runnable(category: &str, detail: impl Into<String>) -> Outcome {
    Outcome::NotRunnable {
        category: category.to_string(),
        detail: detail.into(),
    }
}

/// The short class of a parser refusal, for the per-reason counts.
fn rejection_category(message: &str) -> String {
    let short = message
        .split(';')
        .next()
        .unwrap_or(message)
        .split(" [")
        .next()
        .unwrap_or(message)
        .trim();
    format!("rejected as current ES rejects it: {short}")
}

fn rule_for(query: ast::Query, text: &str, name: &str, suite: &Suite, data: &Dataset) -> Rule {
    Rule {
        origin: format!("{}#{name}", suite.file),
        name: name.to_string(),
        rule_id: String::new(),
        description: String::new(),
        query_text: text.to_string(),
        query,
        index: Vec::new(),
        from: "now-9m".into(),
        lookback: Duration::from_secs(540),
        interval_text: "5m".into(),
        interval: Duration::from_secs(300),
        max_signals: 100,
        risk_score: 0,
        severity: Severity::Low,
        threat: Vec::new(),
        tags: Vec::new(),
        references: Vec::new(),
        author: Vec::new(),
        license: None,
        version: None,
        timestamp_override: None,
        tiebreaker_field: Some(suite.tiebreaker.to_string()),
        event_category_override: Some(data.event_category_field.clone()),
        details: Default::default(),
    }
}

/// The first non-optional field the query names that no mapping of `data` has.
fn first_unknown_field(query: &ast::Query, data: &Dataset) -> Option<String> {
    fn walk(e: &ast::Expr, out: &mut Vec<(String, bool)>) {
        use ast::ExprKind as K;
        match &e.kind {
            // `?field`: the expression's span starts at the `?`, the field's does not.
            K::Field(f) => out.push((f.path.clone(), e.span.start != f.span.start)),
            K::Literal(_) => {}
            K::Not(x) | K::Neg(x) => walk(x, out),
            K::And(a, b) | K::Or(a, b) => {
                walk(a, out);
                walk(b, out);
            }
            K::Compare { left, right, .. } | K::Arith { left, right, .. } => {
                walk(left, out);
                walk(right, out);
            }
            K::In { value, list, .. } => {
                walk(value, out);
                list.iter().for_each(|x| walk(x, out));
            }
            K::Pattern { value, .. } => walk(value, out),
            K::Call { args, .. } => args.iter().for_each(|x| walk(x, out)),
        }
    }
    let mut fields = Vec::new();
    let stage = |s: &ast::Stage, fields: &mut Vec<(String, bool)>| {
        walk(&s.filter.condition, fields);
        for k in &s.keys {
            fields.push((k.field.path.clone(), k.optional));
        }
    };
    match query {
        ast::Query::Event(f) => walk(&f.condition, &mut fields),
        ast::Query::Sequence(seq) => {
            for s in seq.stages.iter().chain(seq.until.iter()) {
                stage(s, &mut fields);
            }
        }
    }
    fields
        .into_iter()
        .find(|(path, optional)| !optional && !data.known_fields.contains(path))
        .map(|(path, _)| path)
}

fn key_string(k: &KeyValue) -> String {
    match k {
        KeyValue::Null => "null".into(),
        KeyValue::Str(s) => s.to_string(),
        other => other.to_string(),
    }
}

/// Flattened ids (`-1` for a missing slot) and join keys, as `BaseEqlSpecTestCase` reads them.
fn flatten(detections: &[Detection]) -> (Vec<i64>, Vec<String>) {
    let ids = detections
        .iter()
        .flat_map(|d| {
            d.events
                .iter()
                .map(|e| e.as_ref().map_or(-1, |e| e.id.parse().unwrap_or(i64::MIN)))
        })
        .collect();
    let keys = detections
        .iter()
        .flat_map(|d| d.join_keys.iter().map(key_string))
        .collect();
    (ids, keys)
}

fn head<T: Clone>(v: &[T], n: usize) -> Vec<T> {
    v[..n.min(v.len())].to_vec()
}

fn tail<T: Clone>(v: &[T], n: usize) -> Vec<T> {
    v[v.len().saturating_sub(n)..].to_vec()
}

fn apply(v: &[Detection], limit: Limit) -> Vec<Detection> {
    match limit {
        Limit::Head(n) => head(v, n),
        Limit::Tail(n) => tail(v, n),
    }
}

fn run_one(
    suite: &Suite,
    data: &Dataset,
    entry: &toml::Value,
) -> (String, bool, Vec<&'static str>, Outcome) {
    let get_str = |k: &str| entry.get(k).and_then(toml::Value::as_str);
    let name = get_str("name").unwrap_or("?").to_string();
    let original = get_str("query").unwrap_or("").trim().to_string();
    let sequence = original
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("//"))
        .is_some_and(|l| l.starts_with("sequence"));
    let flag = |k: &str| entry.get(k).and_then(toml::Value::as_bool);
    let mode = CaseMode::from_flags(flag("case_sensitive"), flag("case_insensitive"));
    let expected_ids: Vec<i64> = entry
        .get("expected_event_ids")
        .and_then(toml::Value::as_array)
        .map(|a| a.iter().filter_map(toml::Value::as_integer).collect())
        .unwrap_or_default();
    let expected_keys: Vec<String> = entry
        .get("join_keys")
        .and_then(toml::Value::as_array)
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect()
        })
        .unwrap_or_default();

    let translated = match translate(&original, mode) {
        Ok(t) => t,
        Err(reason) => {
            let category = if reason.starts_with("pipe `") {
                "pipe other than head/tail"
            } else {
                "no current spelling of the 2020 syntax"
            };
            return (name, sequence, Vec::new(), not_runnable(category, reason));
        }
    };
    let rewrites = translated.rewrites.clone();
    let query = match seqwatch::eql::parse(&translated.text) {
        Ok(q) => q,
        Err(e) => {
            return (
                name,
                sequence,
                rewrites,
                not_runnable(&rejection_category(&e.message), e.message.clone()),
            )
        }
    };
    if let Some(field) = first_unknown_field(&query, data) {
        // ES's analyzer refuses a field no index maps (docs: eql-syntax.md "Optional fields":
        // "If an EQL query contains a field that doesn't exist, it returns an error"; PR
        // elastic/elasticsearch#79677 added `?field` for this). seqwatch reads `_source` and
        // has no mapping to check against, so the harness plays that part.
        return (
            name,
            sequence,
            rewrites,
            not_runnable(
                "rejected as current ES rejects it: Unknown column (no mapping has the field)",
                format!("Unknown column [{field}]"),
            ),
        );
    }
    let rule = rule_for(query, &translated.text, &name, suite, data);
    let opts = EngineOptions {
        field_types: data.field_types.clone(),
        timestamp_nanos: false,
    };
    let compiled = match CompiledRule::compile(&rule, opts) {
        Ok(c) => c,
        Err(e) => {
            return (
                name,
                sequence,
                rewrites,
                Outcome::Failed(format!("seqwatch refuses a query ES accepts: {e}")),
            )
        }
    };
    let correlate = |cap: usize| replay::correlate(&compiled, data.hits.clone(), cap);
    let full = match correlate(UNCAPPED) {
        Ok(c) => c,
        Err(e) => return (name, sequence, rewrites, Outcome::Failed(e.to_string())),
    };
    if full.stats.bad_events > 0 {
        let samples: Vec<String> = full
            .stats
            .bad_event_samples
            .iter()
            .map(ToString::to_string)
            .collect();
        return (
            name,
            sequence,
            rewrites,
            Outcome::Failed(format!(
                "events skipped as unreadable: {}",
                samples.join("; ")
            )),
        );
    }
    let all = full.detections;

    // The engine's own tail cap must keep exactly the last `size` of the full result.
    let engine_tail = match correlate(ES_SIZE) {
        Ok(c) => c.detections,
        Err(e) => return (name, sequence, rewrites, Outcome::Failed(e.to_string())),
    };
    if flatten(&engine_tail) != flatten(&tail(&all, ES_SIZE)) {
        return (
            name,
            sequence,
            rewrites,
            Outcome::Failed(
                "the engine's tail cap differs from the last 50 of the full result".into(),
            ),
        );
    }

    // (position, result) pairs the spec must satisfy.
    let runs: Vec<(&str, Vec<Detection>)> = match translated.limits.first() {
        None => vec![
            ("result_position=head", head(&all, ES_SIZE)),
            ("result_position=tail", tail(&all, ES_SIZE)),
        ],
        Some(first) => {
            let mut v = match first {
                Limit::Head(_) => head(&all, ES_SIZE),
                Limit::Tail(_) => tail(&all, ES_SIZE),
            };
            for limit in &translated.limits {
                v = apply(&v, *limit);
            }
            vec![("pipes", v)]
        }
    };
    for (how, result) in runs {
        let (ids, keys) = flatten(&result);
        if ids != expected_ids {
            return (
                name,
                sequence,
                rewrites,
                Outcome::Failed(format!("{how}: expected ids {expected_ids:?}, got {ids:?}")),
            );
        }
        if !expected_keys.is_empty() && keys != expected_keys {
            return (
                name,
                sequence,
                rewrites,
                Outcome::Failed(format!(
                    "{how}: expected join keys {expected_keys:?}, got {keys:?}"
                )),
            );
        }
    }
    (name, sequence, rewrites, Outcome::Passed)
}

// ----- the report ---------------------------------------------------------------------------

#[derive(Default)]
struct Counts {
    total: usize,
    runnable: usize,
    passed: usize,
    failed: usize,
    not_runnable: BTreeMap<String, usize>,
}

fn counts(reports: &[QueryReport], file: &str) -> Counts {
    let mut c = Counts::default();
    for r in reports.iter().filter(|r| r.file == file) {
        c.total += 1;
        match &r.outcome {
            Outcome::Passed => {
                c.runnable += 1;
                c.passed += 1;
            }
            Outcome::Failed(_) => {
                c.runnable += 1;
                c.failed += 1;
            }
            Outcome::NotRunnable { category, .. } => {
                *c.not_runnable.entry(category.clone()).or_default() += 1;
            }
        }
    }
    c
}

fn render(reports: &[QueryReport], files: &[&'static str]) -> String {
    let mut out = String::new();
    out.push_str("| file | total | runnable | passed | failed | not runnable |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|\n");
    for f in files {
        let c = counts(reports, f);
        let nr: usize = c.not_runnable.values().sum();
        let _ = writeln!(
            out,
            "| `{f}` | {} | {} | {} | {} | {nr} |",
            c.total, c.runnable, c.passed, c.failed
        );
    }
    let seq: Vec<&QueryReport> = reports.iter().filter(|r| r.sequence).collect();
    let seq_run = seq
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::NotRunnable { .. }))
        .count();
    let seq_pass = seq.iter().filter(|r| r.outcome == Outcome::Passed).count();
    let _ = writeln!(
        out,
        "\nSequence queries: {} in all, {seq_run} runnable, {seq_pass} passed.",
        seq.len()
    );

    out.push_str("\n### Not runnable, by reason\n\n");
    for f in files {
        let c = counts(reports, f);
        if c.not_runnable.is_empty() {
            continue;
        }
        let _ = writeln!(out, "`{f}`:\n");
        for (reason, n) in &c.not_runnable {
            let _ = writeln!(out, "- {n} × {reason}");
        }
        out.push('\n');
    }

    out.push_str("### Failing queries\n\n");
    let failing: Vec<&QueryReport> = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
        .collect();
    if failing.is_empty() {
        out.push_str("None.\n");
    }
    for r in failing {
        if let Outcome::Failed(why) = &r.outcome {
            let _ = writeln!(
                out,
                "- `{}` {}: {}",
                r.file,
                r.name,
                why.replace('|', "\\|")
            );
            if let Some((_, _, reason)) = KNOWN_DIVERGENCES
                .iter()
                .find(|(f, n, _)| *f == r.file && *n == r.name)
            {
                let _ = writeln!(out, "  - why: {reason}");
            }
        }
    }

    out.push_str("\n### Every query that is not runnable\n\n");
    out.push_str("| file | query | reason |\n|---|---|---|\n");
    for r in reports {
        if let Outcome::NotRunnable { detail, .. } = &r.outcome {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                r.file,
                r.name,
                detail.replace('|', "\\|").replace('\n', " ")
            );
        }
    }

    out.push_str("\n### Rewrites applied to the queries that ran\n\n");
    let mut by_rewrite: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reports
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::NotRunnable { .. }))
    {
        for w in &r.rewrites {
            *by_rewrite.entry(w).or_default() += 1;
        }
    }
    for (w, n) in by_rewrite {
        let _ = writeln!(out, "- {n} × `{w}`");
    }
    out
}

// ----- engine fixes the suite found, pinned without the shared data -------------------------

fn filter_matches(condition: &str, doc: serde_json::Value) -> Result<bool, String> {
    let query = seqwatch::eql::parse(&format!("any where {condition}")).map_err(|e| e.message)?;
    let ast::Query::Event(filter) = query else {
        return Err("not an event query".into());
    };
    let opts = seqwatch::eql::eval::EvalOptions::default();
    let compiled =
        seqwatch::eql::eval::CompiledFilter::compile(&filter, &opts).map_err(|e| e.to_string())?;
    compiled.try_matches(&doc).map_err(|e| e.to_string())
}

#[test]
fn constant_expressions_are_folded_before_the_field_comparison_check() {
    // ES runs ConstantFolding before LiteralsOnTheRight and before the translator's check that
    // the right side of a comparison is foldable (ES: optimizer/Optimizer.java operator batch;
    // QL: optimizer/OptimizerRules.java ConstantFolding, LiteralsOnTheRight; ES:
    // planner/QueryTranslator.java checkBinaryComparison "Comparisons against fields are not
    // (currently) supported"). ES's own modernised spec keeps these queries
    // (qa/common/src/main/resources/test_queries.toml @ 7165bf94e927: twoAdds,
    // stringNumberConversion1-3).
    let doc = serde_json::json!({"serial_event_id": 5, "name": "a"});
    assert_eq!(
        filter_matches(r#"serial_event_id == number("5")"#, doc.clone()),
        Ok(true)
    );
    assert_eq!(
        filter_matches("add(0, 5) == serial_event_id", doc.clone()),
        Ok(true)
    );
    assert_eq!(
        filter_matches("modulo(11, 10) == serial_event_id", doc.clone()),
        Ok(false)
    );
    assert_eq!(
        filter_matches(r#"number("0x32", 16) > serial_event_id"#, doc.clone()),
        Ok(true)
    );
    // Inside a script (here under a function) the same folding applies.
    assert_eq!(
        filter_matches(r#"add(serial_event_id, 0) == number("5")"#, doc.clone()),
        Ok(true)
    );
    // A folded null is a null check, as a written null is (ReplaceNullChecks).
    assert_eq!(
        filter_matches(r#"name == concat(null)"#, doc.clone()),
        Ok(false)
    );
    // Two sides that read fields stay refused, as in ES.
    let refused = filter_matches("serial_event_id == add(serial_event_id, 0)", doc);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("Comparisons against fields")),
        "{refused:?}"
    );
}

// ----- the test -----------------------------------------------------------------------------

#[ignore = "needs ../shared/data; scripts/test runs it"]
#[test]
fn es_eql_qa_suites_conform() {
    let shared = shared_data::require("es_eql_qa_suites_conform", SUITE_FILES);
    let es = shared.join("es-eql-suite");
    let endgame = data::load(
        &shared.join("eql-suite/test_data.json"),
        &es.join("data/endgame-140.mapping"),
        "serial_event_id",
        true,
    );
    let extra = data::load(
        &es.join("data/extra.data"),
        &es.join("data/extra.mapping"),
        "sequence",
        false,
    );
    let missing = data::load(
        &es.join("data/missing-events.data"),
        &es.join("data/missing-events.mapping"),
        "sequence",
        false,
    );
    let suites: [(Suite, &Dataset); 4] = [
        (
            Suite {
                file: "test_queries.toml",
                tiebreaker: "serial_event_id",
            },
            &endgame,
        ),
        (
            Suite {
                file: "additional_test_queries.toml",
                tiebreaker: "serial_event_id",
            },
            &endgame,
        ),
        (
            Suite {
                file: "test_extra.toml",
                tiebreaker: "sequence",
            },
            &extra,
        ),
        (
            Suite {
                file: "test_missing_events.toml",
                tiebreaker: "sequence",
            },
            &missing,
        ),
    ];

    let mut reports = Vec::new();
    for (suite, dataset) in &suites {
        let text = data::read(&es.join(suite.file));
        let spec: toml::Value =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", suite.file));
        let queries = spec
            .get("queries")
            .and_then(toml::Value::as_array)
            .unwrap_or_else(|| panic!("{}: no [[queries]]", suite.file));
        for entry in queries {
            let (name, sequence, rewrites, outcome) = run_one(suite, dataset, entry);
            reports.push(QueryReport {
                file: suite.file,
                name,
                sequence,
                rewrites,
                outcome,
            });
        }
    }

    let files: Vec<&'static str> = suites.iter().map(|(s, _)| s.file).collect();
    let report = render(&reports, &files);
    println!("{report}");

    let mut problems = Vec::new();
    for r in &reports {
        if r.sequence {
            if let Outcome::Failed(why) = &r.outcome {
                problems.push(format!("sequence query {} {} fails: {why}", r.file, r.name));
            }
        }
    }
    for r in &reports {
        let explained = KNOWN_DIVERGENCES
            .iter()
            .any(|(f, n, _)| *f == r.file && *n == r.name);
        match (&r.outcome, explained) {
            (Outcome::Failed(why), false) => problems.push(format!(
                "{} {} fails without an explanation: {why}",
                r.file, r.name
            )),
            (Outcome::Passed | Outcome::NotRunnable { .. }, true) => problems.push(format!(
                "{} {} is listed in KNOWN_DIVERGENCES but does not fail",
                r.file, r.name
            )),
            _ => {}
        }
    }
    for (file, [total, runnable, passed, failed]) in EXPECTED_COUNTS {
        let c = counts(&reports, file);
        let got = [c.total, c.runnable, c.passed, c.failed];
        if got != [*total, *runnable, *passed, *failed] {
            problems.push(format!(
                "{file}: (total, runnable, passed, failed) = {got:?}, expected {:?}",
                [total, runnable, passed, failed]
            ));
        }
    }

    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/conformance.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_default();
    let generated = format!("{BEGIN_MARK}\n\n{report}\n{END_MARK}");
    let current = match (doc.find(BEGIN_MARK), doc.find(END_MARK)) {
        (Some(b), Some(e)) if b < e => Some(&doc[b..e + END_MARK.len()]),
        _ => None,
    };
    if std::env::var("SEQWATCH_BLESS").as_deref() == Ok("1") {
        let updated = match current {
            Some(old) => doc.replacen(old, &generated, 1),
            None => format!("{doc}\n{generated}\n"),
        };
        std::fs::write(&doc_path, updated)
            .unwrap_or_else(|e| panic!("{}: {e}", doc_path.display()));
    } else if current != Some(generated.as_str()) {
        problems.push(format!(
            "{} is out of date with this run; rerun with SEQWATCH_BLESS=1 and review the diff",
            doc_path.display()
        ));
    }

    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
