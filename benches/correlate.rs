//! Micro benchmarks of the detection hot path: the built-in rule (Node.js
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

use seqwatch::engine::{CompiledRule, Hit};
use seqwatch::eql::eval::CompiledFilter;
use seqwatch::event::{scan_hit_line_flat, Document, FlatEvent};
use seqwatch::rule::Rule;

mod support;

fn main() {
    divan::main();
}

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

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let lines = support::generated_lines();
        let (rule, compiled) = support::rule();
        let stage_filters = support::stage_filters(&rule);
        let hits: Vec<Hit> = lines.iter().map(|l| decode(l)).collect();
        let fetch = compiled
            .fetch_query(&rule, "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z")
            .expect("push-down builds");
        let mut candidate_lines = Vec::new();
        for h in &hits {
            if stage_filters.iter().any(|f| f.matches(&h.source)) {
                candidate_lines.push(support::candidate_line(
                    &h.index,
                    &h.id,
                    &h.source,
                    &fetch.source_includes,
                ));
            }
        }
        let candidate_hits = candidate_lines.iter().map(|l| decode(l)).collect();
        // The figures must not be the speed of doing nothing: the stream plants detections,
        // and cutting it to the candidates changes none of them.
        let max_signals = rule.max_signals as usize;
        let full = support::correlate_lines(&compiled, max_signals, &lines);
        let cut = support::correlate_lines(&compiled, max_signals, &candidate_lines);
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
        let (_, decoded) = scan_hit_line_flat(line, compiled.plan(), &mut event)
            .expect("generated lines are hits");
        assert!(decoded, "generated sources decode in the one pass");
        values += event.field("", 0).count();
    }
    values
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
            .bench(|| support::correlate_lines(&f.compiled, f.rule.max_signals as usize, &f.lines));
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
                support::correlate_lines(
                    &f.compiled,
                    f.rule.max_signals as usize,
                    &f.candidate_lines,
                )
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
