//! The generated stream both benches measure: the built-in rule's 9-minute window rendered
//! as NDJSON hit lines, and the candidate hits cut to the fields the push-down fetches.
//! Shared by `correlate.rs` (divan figures) and `hot_path.rs` (a loop for profilers).

#![allow(dead_code)]

use serde_json::Value;

use seqwatch::engine::{CompiledRule, EngineOptions};
use seqwatch::eql::ast;
use seqwatch::eql::eval::{CompiledFilter, EvalOptions};
use seqwatch::event::scan_hit_line_flat;
use seqwatch::generate::{GenerateSpec, Generator};
use seqwatch::rule::Rule;

/// The generated range: 9 minutes, the rule's lookback.
pub const FROM_MS: i64 = 1_780_000_000_000;
/// The range's length.
pub const RANGE_MS: i64 = 9 * 60 * 1000;
/// Background events per second: 370/s over 540 s ≈ 200,000 events.
pub const RATE: f64 = 370.0;

/// The built-in rule, and compiled as `seqwatch replay` types exported hits (ECS
/// keyword/long fields).
pub fn rule() -> (Rule, CompiledRule) {
    let rule = Rule::builtin().expect("the built-in rule loads");
    let compiled =
        CompiledRule::compile(&rule, EngineOptions::ecs_process()).expect("rule compiles");
    (rule, compiled)
}

/// Every stage filter of the rule, compiled on their own (for the evaluate-only variants).
pub fn stage_filters(rule: &Rule) -> Vec<CompiledFilter> {
    let eval = EvalOptions {
        event_category_field: "event.category".into(),
        field_types: EngineOptions::ecs_process().field_types,
    };
    match &rule.query {
        ast::Query::Sequence(seq) => seq
            .stages
            .iter()
            .map(|s| CompiledFilter::compile(&s.filter, &eval).expect("stage compiles"))
            .collect(),
        ast::Query::Event(f) => vec![CompiledFilter::compile(f, &eval).expect("compiles")],
    }
}

/// The whole generated stream as NDJSON hit lines (fixed seed).
pub fn generated_lines() -> Vec<String> {
    let spec = GenerateSpec {
        hosts: 200,
        rate: RATE,
        from_ms: FROM_MS,
        to_ms: FROM_MS + RANGE_MS,
        seed: 6,
        installs_per_host_hour: 6.0,
        script_rate: 0.5,
        malicious_rate: 0.3,
    };
    Generator::new(spec)
        .expect("valid spec")
        .map(|h| h.to_ndjson())
        .collect()
}

/// Keeps only the dotted paths in `includes` (object paths and flattened keys alike).
pub fn cut_source(source: &Value, includes: &[String], prefix: &str) -> Option<Value> {
    match source {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if includes.contains(&path) {
                    out.insert(k.clone(), v.clone());
                } else if includes.iter().any(|i| i.starts_with(&format!("{path}."))) {
                    if let Some(inner) = cut_source(v, includes, &path) {
                        out.insert(k.clone(), inner);
                    }
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        _ => None,
    }
}

/// The hit line of a candidate: `_index`, `_id` and `_source` cut to `includes`.
pub fn candidate_line(index: &str, id: &str, source: &Value, includes: &[String]) -> String {
    let source = cut_source(source, includes, "").unwrap_or(Value::Object(Default::default()));
    serde_json::json!({"_index": index, "_id": id, "_source": source}).to_string()
}

/// The detection job's path: each hit read in one pass by the scanner that reads the job's
/// search pages, its `_source` decoded flat for the rule as it is read; then evaluate and
/// match. Returns the detection count.
pub fn correlate_lines(compiled: &CompiledRule, max_signals: usize, lines: &[String]) -> usize {
    let mut correlator = compiled.correlator(max_signals);
    let mut event = seqwatch::event::FlatEvent::default();
    let mut index: std::sync::Arc<str> = std::sync::Arc::from("");
    for line in lines {
        let (hit, decoded) = scan_hit_line_flat(line, compiled.plan(), &mut event)
            .expect("generated lines are hits");
        assert!(decoded, "generated sources decode in the one pass");
        let (hit_index, id) = (hit.index.get(line), hit.id.get(line));
        if *index != *hit_index {
            index = std::sync::Arc::from(hit_index);
        }
        correlator
            .push_event(&index, id, &event, hit.sorted_at)
            .expect("generated stream is in order");
    }
    correlator.finish().stats.detections as usize
}
