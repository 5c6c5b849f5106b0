//! Two independent implementations must agree: the generator's ground truth (written from the
//! scenario it planted, checked by its own brute force) and the engine's replay of the
//! generated stream with the built-in rule. Same sequences, same order.

use std::sync::Arc;

use seqwatch::engine::{CompiledRule, EngineOptions, Hit};
use seqwatch::generate::{GenerateSpec, Generator};
use seqwatch::rule::Rule;

type Seq = (Vec<String>, Vec<(String, String)>);

fn run(seed: u64) -> (Vec<Seq>, Vec<Seq>, usize) {
    let spec = GenerateSpec {
        hosts: 12,
        rate: 15.0,
        from_ms: 1_795_000_000_000,
        to_ms: 1_795_000_000_000 + 40 * 60 * 1000,
        seed,
        installs_per_host_hour: 12.0,
        script_rate: 0.6,
        malicious_rate: 0.3,
    };
    let mut gen = Generator::new(spec).expect("valid spec");
    let mut hits = Vec::new();
    for h in gen.by_ref() {
        let source = h.source_value().expect("generator writes valid JSON");
        hits.push(Hit {
            index: Arc::from(h.index),
            id: Arc::from(h.id.as_str()),
            source,
        });
    }
    let truth: Vec<Seq> = gen
        .drain_truth()
        .into_iter()
        .filter(|t| t.expected)
        .map(|t| {
            (
                t.join_keys,
                t.events.into_iter().map(|e| (e.index, e.id)).collect(),
            )
        })
        .collect();

    let rule = Rule::builtin().unwrap();
    let compiled = CompiledRule::compile(&rule, EngineOptions::default()).unwrap();
    let n = hits.len();
    let found = seqwatch::replay::correlate(&compiled, hits, usize::MAX).unwrap();
    assert_eq!(
        found.stats.bad_events, 0,
        "{:?}",
        found.stats.bad_event_samples
    );
    let detected: Vec<Seq> = found
        .detections
        .iter()
        .map(|d| {
            let keys = d.join_keys.iter().map(|k| match k {
                seqwatch::correlate::KeyValue::Str(s) => s.to_string(),
                other => panic!("the rule's keys are keywords, got {other}"),
            });
            let events = d
                .present_events()
                .map(|e| (e.index.to_string(), e.id.to_string()));
            (keys.collect(), events.collect())
        })
        .collect();
    (truth, detected, n)
}

#[test]
fn replay_of_generated_stream_equals_its_ground_truth() {
    for seed in [1, 2] {
        let (truth, detected, events) = run(seed);
        assert!(
            truth.len() >= 20,
            "seed {seed}: too few planted sequences ({}) to mean much",
            truth.len()
        );
        assert!(events > 20_000, "seed {seed}: {events} events");
        assert_eq!(
            detected, truth,
            "seed {seed}: replay and ground truth disagree"
        );
    }
}
