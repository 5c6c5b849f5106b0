//! Micro benchmarks of the detection hot path for issue 6: the built-in rule (Node.js
//! install-script sequence) over a generated stream, in events per second on one core.
//!
//! The stream is `seqwatch::generate` with a fixed seed, rendered to NDJSON hit lines in
//! memory (about 200,000 lines over a 9-minute range, as the detection job's window holds).
//! The variants split the cost the first target counts:
//! - `full_stream::decode_evaluate_match`: what the detection job does per hit: the hit line
//!   read borrowed (`_index`, `_id`, `_source` text), then `Correlator::push_source` (the
//!   rule's fields decoded flat, evaluated, matched) and `finish` (the target: 1M
//!   events/s/core, decoding included);
//! - `full_stream::tree_decode_evaluate_match`: the previous path, for comparison: line →
//!   `serde_json::Value` → [`Hit`] → `Correlator::push` → `finish`;
//! - `full_stream::decode_only`: the flat decoding of hits alone;
//! - `full_stream::evaluate_only`: every stage filter on every hit decoded as a tree, no matching;
//! - `full_stream::evaluate_match`: `push` + `finish` on hits decoded as trees;
//! - `candidates::*`: the same over only the hits the push-down query lets through (what the
//!   correlator really sees in a run against Elasticsearch), with `_source` cut to the
//!   fields the query's `_source.includes` names.
//!
//! Run with `cargo bench --bench correlate` (divan prints items/s per variant; one thread).

use std::sync::{Arc, OnceLock};

use divan::counter::ItemsCount;
use divan::Bencher;
use serde::Deserialize;
use serde_json::Value;

use seqwatch::engine::{CompiledRule, EngineOptions, Hit};
use seqwatch::eql::ast;
use seqwatch::eql::eval::{CompiledFilter, EvalOptions};
use seqwatch::event::{decode_flat, Document, FlatEvent};
use seqwatch::generate::{GenerateSpec, Generator};
use seqwatch::rule::Rule;

fn main() {
    divan::main();
}

/// The generated range: 9 minutes, the rule's lookback.
const FROM_MS: i64 = 1_780_000_000_000;
const RANGE_MS: i64 = 9 * 60 * 1000;
/// Background events per second: 370/s over 540 s ≈ 200,000 events.
const RATE: f64 = 370.0;

/// A hit as the `_search` response carries it (the fields the job reads).
#[derive(Deserialize)]
struct RawHit {
    #[serde(rename = "_index")]
    index: String,
    #[serde(rename = "_id")]
    id: String,
    #[serde(rename = "_source")]
    source: Value,
}

/// A hit line read as the job reads a search page: strings borrowed, `_source` left as text.
#[derive(Deserialize)]
struct BorrowedHit<'a> {
    #[serde(rename = "_index", borrow)]
    index: &'a str,
    #[serde(rename = "_id", borrow)]
    id: &'a str,
    #[serde(rename = "_source", borrow)]
    source: &'a serde_json::value::RawValue,
}

fn decode(line: &str) -> Hit {
    let raw: RawHit = serde_json::from_str(line).expect("generated lines are hits");
    Hit {
        index: Arc::from(raw.index),
        id: Arc::from(raw.id),
        source: raw.source,
    }
}

struct Fixture {
    rule: Rule,
    compiled: CompiledRule,
    /// Every generated hit, as NDJSON lines.
    lines: Vec<String>,
    /// `lines`, decoded.
    hits: Vec<Hit>,
    /// Hits at least one stage filter accepts, `_source` cut to the fetched fields, as lines.
    candidate_lines: Vec<String>,
    /// `candidate_lines`, decoded.
    candidate_hits: Vec<Hit>,
    /// The stage filters, for the evaluate-only variant.
    stage_filters: Vec<CompiledFilter>,
}

/// Keeps only the dotted paths in `includes` (object paths and flattened keys alike).
fn cut_source(source: &Value, includes: &[String], prefix: &str) -> Option<Value> {
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

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
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
        let lines: Vec<String> = Generator::new(spec)
            .expect("valid spec")
            .map(|h| h.to_ndjson())
            .collect();
        let rule = Rule::builtin().expect("the built-in rule loads");
        // As `seqwatch replay` types exported hits: ECS keyword/long fields.
        let compiled =
            CompiledRule::compile(&rule, EngineOptions::ecs_process()).expect("rule compiles");
        let eval = EvalOptions {
            event_category_field: "event.category".into(),
            field_types: EngineOptions::ecs_process().field_types,
        };
        let stage_filters: Vec<CompiledFilter> = match &rule.query {
            ast::Query::Sequence(seq) => seq
                .stages
                .iter()
                .map(|s| CompiledFilter::compile(&s.filter, &eval).expect("stage compiles"))
                .collect(),
            ast::Query::Event(f) => vec![CompiledFilter::compile(f, &eval).expect("compiles")],
        };
        let hits: Vec<Hit> = lines.iter().map(|l| decode(l)).collect();
        let fetch = compiled
            .fetch_query(&rule, "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z")
            .expect("push-down builds");
        let mut candidate_lines = Vec::new();
        for h in &hits {
            if stage_filters.iter().any(|f| f.matches(&h.source)) {
                let source = cut_source(&h.source, &fetch.source_includes, "")
                    .unwrap_or(Value::Object(Default::default()));
                candidate_lines.push(
                    serde_json::json!({"_index": &*h.index, "_id": &*h.id, "_source": source})
                        .to_string(),
                );
            }
        }
        let candidate_hits = candidate_lines.iter().map(|l| decode(l)).collect();
        // The figures must not be the speed of doing nothing: the stream plants detections,
        // and cutting it to the candidates changes none of them.
        let max_signals = rule.max_signals as usize;
        let full = correlate_lines(&compiled, max_signals, &lines);
        let cut = correlate_lines(&compiled, max_signals, &candidate_lines);
        assert!(full > 0, "the generated stream must plant detections");
        assert_eq!(full, cut, "cutting to candidates changed the detections");
        assert_eq!(
            full,
            correlate_lines_tree(&compiled, max_signals, &lines),
            "the flat and the tree decode disagree"
        );
        eprintln!(
            "fixture: {} hits ({} MB of NDJSON), {} candidates ({:.2} %)",
            lines.len(),
            lines.iter().map(String::len).sum::<usize>() / 1_000_000,
            candidate_lines.len(),
            100.0 * candidate_lines.len() as f64 / lines.len() as f64
        );
        eprintln!("fixture: {full} detections (max_signals {max_signals})");
        Fixture {
            rule,
            compiled,
            lines,
            hits,
            candidate_lines,
            candidate_hits,
            stage_filters,
        }
    })
}

/// Decodes every line flat for the rule and uses the result (the values of its first
/// field), so nothing is elided.
fn decoded_fields(compiled: &CompiledRule, lines: &[String]) -> usize {
    let mut event = FlatEvent::default();
    let mut values = 0;
    for line in lines {
        let hit: BorrowedHit<'_> = serde_json::from_str(line).expect("generated lines are hits");
        decode_flat(hit.source.get(), compiled.plan(), &mut event).expect("generated JSON");
        values += event.field("", 0).count();
    }
    values
}

/// The detection job's path: borrowed hit, flat decode, evaluate, match.
fn correlate_lines(compiled: &CompiledRule, max_signals: usize, lines: &[String]) -> usize {
    let mut correlator = compiled.correlator(max_signals);
    let mut event = FlatEvent::default();
    let mut index: Arc<str> = Arc::from("");
    for line in lines {
        let hit: BorrowedHit<'_> = serde_json::from_str(line).expect("generated lines are hits");
        if *index != *hit.index {
            index = Arc::from(hit.index);
        }
        correlator
            .push_source(&index, hit.id, hit.source.get(), None, &mut event)
            .expect("generated stream is in order");
    }
    correlator.finish().stats.detections as usize
}

/// The previous path: every line into a `Value` tree, then `push`.
fn correlate_lines_tree(compiled: &CompiledRule, max_signals: usize, lines: &[String]) -> usize {
    let mut correlator = compiled.correlator(max_signals);
    for line in lines {
        correlator
            .push(&decode(line))
            .expect("generated stream is in order");
    }
    correlator.finish().stats.detections as usize
}

fn correlate_hits(compiled: &CompiledRule, max_signals: usize, hits: &[Hit]) -> usize {
    let mut correlator = compiled.correlator(max_signals);
    for hit in hits {
        correlator.push(hit).expect("generated stream is in order");
    }
    correlator.finish().stats.detections as usize
}

#[divan::bench_group(sample_count = 5, sample_size = 1)]
mod full_stream {
    use super::*;

    #[divan::bench]
    fn decode_evaluate_match(bencher: Bencher) {
        let f = fixture();
        bencher
            .counter(ItemsCount::new(f.lines.len()))
            .bench(|| correlate_lines(&f.compiled, f.rule.max_signals as usize, &f.lines));
    }

    #[divan::bench]
    fn tree_decode_evaluate_match(bencher: Bencher) {
        let f = fixture();
        bencher
            .counter(ItemsCount::new(f.lines.len()))
            .bench(|| correlate_lines_tree(&f.compiled, f.rule.max_signals as usize, &f.lines));
    }

    #[divan::bench]
    fn decode_only(bencher: Bencher) {
        let f = fixture();
        bencher
            .counter(ItemsCount::new(f.lines.len()))
            .bench(|| decoded_fields(&f.compiled, &f.lines));
    }

    #[divan::bench]
    fn evaluate_only(bencher: Bencher) {
        let f = fixture();
        bencher.counter(ItemsCount::new(f.hits.len())).bench(|| {
            f.hits
                .iter()
                .filter(|h| f.stage_filters.iter().any(|s| s.matches(&h.source)))
                .count()
        });
    }

    #[divan::bench]
    fn evaluate_match(bencher: Bencher) {
        let f = fixture();
        bencher
            .counter(ItemsCount::new(f.hits.len()))
            .bench(|| correlate_hits(&f.compiled, f.rule.max_signals as usize, &f.hits));
    }
}

#[divan::bench_group(sample_count = 20, sample_size = 1)]
mod candidates {
    use super::*;

    #[divan::bench]
    fn decode_evaluate_match(bencher: Bencher) {
        let f = fixture();
        bencher
            .counter(ItemsCount::new(f.candidate_lines.len()))
            .bench(|| {
                correlate_lines(&f.compiled, f.rule.max_signals as usize, &f.candidate_lines)
            });
    }

    #[divan::bench]
    fn tree_decode_evaluate_match(bencher: Bencher) {
        let f = fixture();
        bencher
            .counter(ItemsCount::new(f.candidate_lines.len()))
            .bench(|| {
                correlate_lines_tree(&f.compiled, f.rule.max_signals as usize, &f.candidate_lines)
            });
    }

    #[divan::bench]
    fn decode_only(bencher: Bencher) {
        let f = fixture();
        bencher
            .counter(ItemsCount::new(f.candidate_lines.len()))
            .bench(|| decoded_fields(&f.compiled, &f.candidate_lines));
    }

    #[divan::bench]
    fn evaluate_match(bencher: Bencher) {
        let f = fixture();
        bencher
            .counter(ItemsCount::new(f.candidate_hits.len()))
            .bench(|| correlate_hits(&f.compiled, f.rule.max_signals as usize, &f.candidate_hits));
    }
}
