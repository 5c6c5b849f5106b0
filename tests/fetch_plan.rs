//! The two-step fetch gives the one-query fetch's detections (ids and order), proven without a
//! cluster: correlating stage-1 hits plus the later-stage hits the restriction admits must give
//! exactly what correlating every candidate gives, on generated streams bent to hold null,
//! missing and multi-valued keys and same-millisecond ties, and on random small streams.
//!
//! Stage 1's key set is taken from the hits the evaluator accepts for stage 1 (the narrowest
//! set the key scan can collect: it reads the push-down's superset), and later stages are
//! admitted by the evaluator plus [`StageRestriction::admits`], the predicate the query is built
//! from. Equality for the narrowest admission implies it for any wider one, because an event the
//! narrow admission leaves out finds no pending sequence and changes nothing.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value};

use seqwatch::engine::{CompiledRule, EngineOptions, Hit};
use seqwatch::fetch_plan::{self, KeyKind, StageOneKeys};
use seqwatch::generate::GenerateSpec;
use seqwatch::rule::Rule;

mod common;
use common::bent::bent_events;

type Found = Vec<(Vec<String>, Vec<Option<(String, String)>>)>;

fn rule_with(query: &str) -> Rule {
    let mut rule = Rule::builtin().expect("the built-in rule loads");
    rule.query = seqwatch::eql::parse(query).expect("test query parses");
    rule.query_text = query.to_owned();
    rule
}

fn found(compiled: &CompiledRule, hits: Vec<Hit>) -> Found {
    let c = seqwatch::replay::correlate(compiled, hits, usize::MAX).expect("sorted stream");
    c.detections
        .iter()
        .map(|d| {
            (
                d.join_keys.iter().map(|k| k.to_string()).collect(),
                d.events
                    .iter()
                    .map(|e| e.as_ref().map(|e| (e.index.to_string(), e.id.to_string())))
                    .collect(),
            )
        })
        .collect()
}

/// Correlates all hits and the two-step selection; returns (all, admitted, detections).
fn compare(rule: &Rule, opts: EngineOptions, hits: &[Hit]) -> (usize, usize, usize) {
    assert_eq!(fetch_plan::shape_refusal(&rule.query), None);
    let compiled = CompiledRule::compile(rule, opts).expect("rule compiles");
    let seqwatch::eql::ast::Query::Sequence(seq) = &rule.query else {
        unreachable!("a sequence rule")
    };
    let key_fields = fetch_plan::stage_key_fields(seq);
    let mut keys = StageOneKeys::new(key_fields[0].len());
    for h in hits {
        if compiled.matches_stage(&h.source, 0) == Ok(true) {
            if let Ok(Some(k)) = compiled.stage_key_fields(&h.source, 0) {
                keys.add(&k);
            }
        }
    }
    // Generated and random keys are keyword strings.
    let restrictions = keys
        .restrictions(&key_fields, |_| Ok(KeyKind::Keyword))
        .expect("no refusal on these streams");
    let admitted: Vec<Hit> = hits
        .iter()
        .filter(|h| {
            if compiled.matches_stage(&h.source, 0) != Ok(false) {
                return true;
            }
            restrictions.iter().enumerate().any(|(i, r)| {
                let stage = i + 1;
                match compiled.matches_stage(&h.source, stage) {
                    Ok(false) => false,
                    Ok(true) => match compiled.stage_key_fields(&h.source, stage) {
                        Ok(Some(k)) => r.admits(&k),
                        Ok(None) => false,
                        // The correlator counts it as bad; the restriction may not hide that.
                        Err(_) => true,
                    },
                    Err(_) => true,
                }
            })
        })
        .cloned()
        .collect();
    let all = found(&compiled, hits.to_vec());
    let restricted = found(&compiled, admitted.clone());
    assert_eq!(restricted, all, "two-step detections differ from one-query");
    (hits.len(), admitted.len(), all.len())
}

/// A generated stream with null, missing and multi-valued keys and timestamps floored to
/// 50 ms (many ties, decided by arrival order as by `_shard_doc`).
fn bent_stream(seed: u64) -> Vec<Hit> {
    let spec = GenerateSpec {
        hosts: 6,
        rate: 20.0,
        from_ms: 1_795_000_000_000,
        to_ms: 1_795_000_000_000 + 10 * 60 * 1000,
        seed,
        installs_per_host_hour: 30.0,
        script_rate: 0.7,
        malicious_rate: 0.3,
    };
    bent_events(spec)
        .into_iter()
        .map(|(index, id, source)| Hit {
            index: Arc::from(index),
            id: Arc::from(id.as_str()),
            source,
        })
        .collect()
}

const BUILTIN_OPTIONAL: &str = r#"sequence by host.id with maxspan=10s
  [process where host.os.type == "linux" and event.type == "start" and event.action in ("exec", "ProcessRollup2") and process.name == "node" and process.args == "install"] by ?process.entity_id
  [process where host.os.type == "linux" and event.type == "start" and event.action in ("exec", "ProcessRollup2") and process.parent.name == "node"] by ?process.parent.entity_id"#;

const THREE_STAGES: &str = r#"sequence by host.id with maxspan=30s
  [process where process.name == "node" and process.args == "install"] by process.entity_id
  [process where process.parent.name == "node"] by process.parent.entity_id
  [process where event.type == "start"] by process.parent.entity_id"#;

#[test]
fn generated_streams_give_the_same_detections_with_fewer_events() {
    let rules = [
        Rule::builtin().expect("built-in"),
        rule_with(BUILTIN_OPTIONAL),
        rule_with(THREE_STAGES),
    ];
    for seed in [1, 2, 3] {
        let hits = bent_stream(seed);
        for (r, rule) in rules.iter().enumerate() {
            for opts in [EngineOptions::ecs_process(), EngineOptions::default()] {
                let (all, admitted, detections) = compare(rule, opts, &hits);
                assert!(
                    detections > 0,
                    "seed {seed} rule {r}: no detections, the comparison would prove nothing"
                );
                assert!(
                    admitted < all,
                    "seed {seed} rule {r}: the restriction admitted every event"
                );
            }
        }
    }
}

#[test]
fn the_restriction_leaves_out_most_later_stage_events_of_the_default_rule() {
    let hits = bent_stream(7);
    let rule = Rule::builtin().expect("built-in");
    let compiled = CompiledRule::compile(&rule, EngineOptions::ecs_process()).expect("compiles");
    let later = hits
        .iter()
        .filter(|h| compiled.matches_stage(&h.source, 1) == Ok(true))
        .count();
    let (_, admitted, _) = compare(&rule, EngineOptions::ecs_process(), &hits);
    let first = hits
        .iter()
        .filter(|h| compiled.matches_stage(&h.source, 0) == Ok(true))
        .count();
    assert!(
        admitted - first < later,
        "admitted {admitted} (stage 1: {first}) of {later} stage-2 events"
    );
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// One random key value: a few strings, null, missing, or several values.
fn key() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => (0..4u8).prop_map(|i| Some(json!(format!("k{i}")))),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        2 => proptest::collection::vec(0..4u8, 0..3)
            .prop_map(|v| Some(json!(v.iter().map(|i| format!("k{i}")).collect::<Vec<_>>()))),
    ]
}

fn event() -> impl Strategy<Value = (u8, u8, Option<Value>, Option<Value>, Option<Value>)> {
    // (timestamp slot: few, so ties are common; stage tag; host; a; b)
    (0..12u8, 0..4u8, key(), key(), key())
}

fn source(ts: u8, tag: u8, host: Option<Value>, a: Option<Value>, b: Option<Value>) -> Value {
    // tag 0: stage 1 only, 1: stage 2 only, 2: both, 3: neither.
    let tag = ["s1", "s2", "both", "none"][tag as usize];
    let mut s = json!({
        "@timestamp": format!("2026-01-01T00:00:{:02}.000Z", ts),
        "event": {"category": "process"},
        "tag": tag,
    });
    for (name, v) in [("host", host), ("a", a), ("b", b)] {
        if let Some(v) = v {
            s[name] = v;
        }
    }
    s
}

const RANDOM_MANDATORY: &str = r#"sequence by host with maxspan=5s
  [process where tag in ("s1", "both")] by a
  [process where tag in ("s2", "both")] by b"#;
const RANDOM_OPTIONAL: &str = r#"sequence by ?host with maxspan=5s
  [process where tag in ("s1", "both")] by ?a
  [process where tag in ("s2", "both")] by ?b
  [process where tag in ("s2", "both", "none")] by ?a"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_streams_give_the_same_detections(events in proptest::collection::vec(event(), 0..60)) {
        let hits: Vec<Hit> = events
            .into_iter()
            .enumerate()
            .map(|(i, (ts, tag, host, a, b))| Hit {
                index: Arc::from("idx"),
                id: Arc::from(format!("e{i}").as_str()),
                source: source(ts, tag, host, a, b),
            })
            .collect();
        for query in [RANDOM_MANDATORY, RANDOM_OPTIONAL] {
            compare(&rule_with(query), EngineOptions::default(), &hits);
        }
    }
}

#[test]
fn the_restricted_query_is_the_one_query_with_later_stages_narrowed() {
    let rule = Rule::builtin().expect("built-in");
    let compiled = CompiledRule::compile(&rule, EngineOptions::ecs_process()).expect("compiles");
    let fetch = compiled
        .fetch_query(&rule, "2026-01-01T00:00:00Z", "2026-01-01T00:09:00Z")
        .expect("the push-down compiles");
    // Nothing added: exactly the one query.
    assert_eq!(fetch.with_stage_filters(&[]), fetch.query);
    assert_eq!(fetch.with_stage_filters(&[vec![], vec![]]), fetch.query);
    // The key scan reads the window's stage-1 events only.
    assert_eq!(
        fetch.stage_only(0),
        Some(
            json!({"bool": {"filter": [fetch.time_range.clone(), fetch.stage_queries[0].clone()]}})
        )
    );
    assert_eq!(fetch.stage_only(2), None);
    // A restriction is ANDed into stage 2's own filter list; stage 1 stays whole.
    let terms = json!({"terms": {"process.parent.entity_id": ["p1"]}});
    let restricted = fetch.with_stage_filters(&[vec![], vec![terms.clone()]]);
    let should = &restricted["bool"]["filter"][1]["bool"]["should"];
    assert_eq!(should[0], fetch.stage_queries[0]);
    let stage_two = should[1]["bool"]["filter"]
        .as_array()
        .expect("a filter list");
    let original = fetch.stage_queries[1]["bool"]["filter"]
        .as_array()
        .expect("a filter list");
    assert_eq!(&stage_two[..original.len()], &original[..]);
    assert_eq!(stage_two[original.len()..], [terms]);
    assert_eq!(restricted["bool"]["filter"][0], fetch.time_range);
}
