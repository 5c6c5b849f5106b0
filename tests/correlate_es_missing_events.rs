//! Runs Elasticsearch's own QA spec for missing-event sequences through the matcher and compares
//! with the results ES's test suite expects.
//!
//! Spec and data: `elastic/elasticsearch` `x-pack/plugin/eql/qa/common/src/main/resources/`
//! `test_missing_events.toml` and `data/missing-events.data`, read (not copied) from the shared
//! reference directory (`../shared/data/es-eql-suite` from the repository root, or
//! `$SEQWATCH_SHARED_DATA/es-eql-suite`). The ES harness
//! (`qa/common/.../EqlMissingEventsSpecTestCase.java`, `BaseEqlSpecTestCase.java`) uses the
//! tiebreaker field `sequence`, `size` 50, and reports each event by its `sequence` value, `-1` for
//! a missing-event slot.
//!
//! The queries use one shape only, which this test interprets itself (no EQL parser is involved):
//! `sequence [by K] with maxspan=N<unit>` then stages `[!|-][ CAT where tag == "V" [and
//! `sequence` > N] ] [by K] [with runs=N]`, then an optional `| head N` / `| tail N`. A query outside that shape
//! fails the test rather than being skipped. The matcher implements ES's default tail mode;
//! `| head N` is checked as the first N of the full result, which equals ES's answer when, as
//! here, fewer than `size` sequences exist.

use regex::Regex;
use seqwatch::correlate::{
    Candidate, KeyValue, Matcher, Ordinal, SequenceSpec, StageMatch, StageSpec, TieBreaker,
};
use serde_json::Value;

mod shared_data;

const ES_SIZE: usize = 50;

struct Stage {
    missing: bool,
    category: String,
    tag: String,
    sequence_above: Option<i64>,
    by: Option<String>,
}

struct Query {
    sequence_by: Option<String>,
    maxspan_ns: i64,
    stages: Vec<Stage>,
    pipe: Option<(String, usize)>,
}

fn parse_query(text: &str) -> Result<Query, String> {
    let header = Regex::new(r"^\s*sequence(?:\s+by\s+(\w+))?\s+with\s+maxspan=(\d+)(ms|s|m|h|d)")
        .expect("regex");
    let stage = Regex::new(
        r#"^\s*([!-])?\[\s*(\w+)\s+where\s+tag\s*==\s*"([^"]*)"(?:\s+and\s+`sequence`\s*>\s*(\d+))?\s*\](?:\s*by\s+(\w+))?(?:\s+with\s+runs=(\d+))?"#,
    )
    .expect("regex");
    let pipe = Regex::new(r"^\s*\|\s*(head|tail)\s+(\d+)").expect("regex");

    let caps = header.captures(text).ok_or("no sequence header")?;
    let unit_ns: i64 = match &caps[3] {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => 86_400_000_000_000,
    };
    let maxspan_ns = caps[2].parse::<i64>().map_err(|e| e.to_string())? * unit_ns;
    let sequence_by = caps.get(1).map(|m| m.as_str().to_string());
    let mut rest = &text[caps.get(0).map_or(0, |m| m.end())..];
    let mut stages = Vec::new();
    while let Some(c) = stage.captures(rest) {
        // `with runs=N` is the stage repeated N times.
        let runs: usize = c.get(6).map_or(1, |m| m.as_str().parse().expect("digits"));
        for _ in 0..runs {
            stages.push(Stage {
                missing: c.get(1).is_some(),
                category: c[2].to_string(),
                tag: c[3].to_string(),
                sequence_above: c.get(4).map(|m| m.as_str().parse().expect("digits")),
                by: c.get(5).map(|m| m.as_str().to_string()),
            });
        }
        rest = &rest[c.get(0).map_or(0, |m| m.end())..];
    }
    let mut pipe_found = None;
    if let Some(c) = pipe.captures(rest) {
        pipe_found = Some((
            c[1].to_string(),
            c[2].parse()
                .map_err(|e: std::num::ParseIntError| e.to_string())?,
        ));
        rest = &rest[c.get(0).map_or(0, |m| m.end())..];
    }
    if !rest.trim().is_empty() {
        return Err(format!("unsupported query text: {rest:?}"));
    }
    Ok(Query {
        sequence_by,
        maxspan_ns,
        stages,
        pipe: pipe_found,
    })
}

fn parse_timestamp(raw: &str) -> i64 {
    if let Ok(millis) = raw.parse::<i64>() {
        return millis * 1_000_000;
    }
    chrono::DateTime::parse_from_rfc3339(raw)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or_else(|| panic!("unparseable @timestamp {raw:?}"))
}

fn load_events(dir: &std::path::Path) -> Vec<Value> {
    let raw = std::fs::read_to_string(dir.join("data/missing-events.data")).expect("readable data");
    // The ES loader accepts `//` comment lines; strict JSON does not.
    let json: String = raw
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str::<Vec<Value>>(&json).expect("data is a JSON array")
}

fn field_str<'a>(doc: &'a Value, name: &str) -> Option<&'a str> {
    doc.get(name).and_then(Value::as_str)
}

/// Returns (ids per sequence, flattened join keys) as the ES harness reports them.
fn run(query: &Query, docs: &[Value]) -> (Vec<i64>, Vec<String>) {
    let spec = SequenceSpec {
        stages: query
            .stages
            .iter()
            .map(|s| StageSpec { missing: s.missing })
            .collect(),
        maxspan_ns: Some(query.maxspan_ns),
        has_until: false,
    };
    let cap = match &query.pipe {
        Some((kind, n)) if kind == "tail" => *n,
        _ => ES_SIZE,
    };
    let mut candidates: Vec<Candidate<i64>> = docs
        .iter()
        .enumerate()
        .map(|(position, doc)| {
            let sequence = doc
                .get("sequence")
                .and_then(Value::as_i64)
                .expect("sequence field");
            let timestamp = parse_timestamp(field_str(doc, "@timestamp").expect("@timestamp"));
            let stages = query
                .stages
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    field_str(doc, "event_type") == Some(s.category.as_str())
                        && field_str(doc, "tag") == Some(s.tag.as_str())
                        && s.sequence_above.is_none_or(|n| sequence > n)
                })
                .filter_map(|(index, s)| {
                    // Join keys: `sequence by` first, then the stage's own `by`; a doc without a
                    // key field is not a hit (AddMandatoryJoinKeyFilter's `exists`).
                    let names = query.sequence_by.iter().chain(s.by.iter());
                    let key_fields: Option<Vec<Vec<KeyValue>>> = names
                        .map(|n| field_str(doc, n).map(|v| vec![KeyValue::str(v)]))
                        .collect();
                    key_fields.map(|key_fields| StageMatch {
                        stage: index,
                        key_fields,
                    })
                })
                .collect();
            Candidate {
                ordinal: Ordinal::with_tiebreaker(
                    timestamp,
                    TieBreaker::Int(sequence),
                    position as u64,
                ),
                payload: sequence,
                stages,
                until: None,
            }
        })
        .collect();
    candidates.sort_by(|a, b| a.ordinal.cmp(&b.ordinal));

    let mut matcher = Matcher::new(spec, cap).expect("valid spec");
    for candidate in candidates {
        matcher.push(candidate).expect("sorted stream");
    }
    let mut sequences = matcher.finish().sequences;
    if let Some(("head", n)) = query.pipe.as_ref().map(|(k, n)| (k.as_str(), *n)) {
        sequences.truncate(n);
    }
    let ids = sequences
        .iter()
        .flat_map(|s| s.events.iter().map(|e| e.unwrap_or(-1)))
        .collect();
    let keys = sequences
        .iter()
        .flat_map(|s| {
            s.join_keys.iter().map(|k| match k {
                KeyValue::Str(v) => v.to_string(),
                other => other.to_string(),
            })
        })
        .collect();
    (ids, keys)
}

#[ignore = "needs ../shared/data; scripts/test runs it"]
#[test]
fn es_missing_events_spec_matches() {
    let data = shared_data::require(
        "es_missing_events_spec",
        &[
            "es-eql-suite/test_missing_events.toml",
            "es-eql-suite/data/missing-events.data",
        ],
    );
    let dir = data.join("es-eql-suite");
    let docs = load_events(&dir);
    let spec_text =
        std::fs::read_to_string(dir.join("test_missing_events.toml")).expect("readable spec");
    let spec: toml::Value = toml::from_str(&spec_text).expect("spec is TOML");
    let queries = spec
        .get("queries")
        .and_then(toml::Value::as_array)
        .expect("[[queries]]");
    assert!(
        queries.len() >= 20,
        "expected the full ES suite, found {} queries",
        queries.len()
    );

    let mut failures = Vec::new();
    for entry in queries {
        let name = entry
            .get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or("?");
        let text = entry
            .get("query")
            .and_then(toml::Value::as_str)
            .expect("query");
        let expected: Vec<i64> = entry
            .get("expected_event_ids")
            .and_then(toml::Value::as_array)
            .expect("expected_event_ids")
            .iter()
            .map(|v| v.as_integer().expect("integer id"))
            .collect();
        let query = parse_query(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (ids, keys) = run(&query, &docs);
        if ids != expected {
            failures.push(format!("{name}: expected ids {expected:?}, got {ids:?}"));
        }
        if let Some(join_keys) = entry.get("join_keys").and_then(toml::Value::as_array) {
            let expected_keys: Vec<String> = join_keys
                .iter()
                .map(|v| v.as_str().expect("string key").to_string())
                .collect();
            if keys != expected_keys {
                failures.push(format!(
                    "{name}: expected join keys {expected_keys:?}, got {keys:?}"
                ));
            }
        }
    }
    println!("ran {} ES missing-event queries", queries.len());
    assert!(
        failures.is_empty(),
        "{} of {} queries differ:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );
}
