//! Memory stays bounded by the pending state a maxspan allows, not by the stream length: the
//! matcher drops pending sequences, until markers and missing-stage evidence that no future
//! event can use, and keeps at most `max_sequences` completed sequences.

use seqwatch::correlate::{
    Candidate, KeyValue, Matcher, Ordinal, SequenceSpec, StageMatch, StageSpec,
};

const MS: i64 = 1_000_000;
const SEC: i64 = 1_000 * MS;

fn key(host: &KeyValue, entity: String) -> Vec<Vec<KeyValue>> {
    vec![vec![host.clone()], vec![KeyValue::Str(entity.into())]]
}

/// The Node.js rule's shape over 1,000,000 `node install` events, one every 10 ms (10,000 s of
/// stream), each with its own entity id; every 10,000th is followed by a child.
#[test]
fn a_million_events_keep_pending_state_within_one_maxspan() {
    let spec = SequenceSpec {
        stages: vec![StageSpec { missing: false }, StageSpec { missing: false }],
        maxspan_ns: Some(10 * SEC),
        has_until: false,
    };
    let mut matcher = Matcher::new(spec, 100).expect("valid spec");
    let host = KeyValue::str("host-1");
    let mut implicit = 0u64;
    let mut next = |ts: i64, stage: usize, entity: String, matcher: &mut Matcher<u64>| {
        implicit += 1;
        matcher
            .push(Candidate {
                ordinal: Ordinal::new(ts, implicit),
                payload: implicit,
                stages: vec![StageMatch {
                    stage,
                    key_fields: key(&host, entity),
                }],
                until: None,
            })
            .expect("ascending stream");
    };
    const EVENTS: i64 = 1_000_000;
    for i in 0..EVENTS {
        let ts = i * 10 * MS;
        next(ts, 0, format!("e{i}"), &mut matcher);
        if i % 10_000 == 0 {
            next(ts + MS, 1, format!("e{i}"), &mut matcher);
        }
    }
    let outcome = matcher.finish();
    let stats = outcome.stats;
    assert_eq!(stats.completed, 100);
    assert_eq!(outcome.sequences.len(), 100);
    // 10 s of parents at one per 10 ms is 1,001 sequences; allow a little slack, far below 1e6.
    assert!(
        stats.peak_pending <= 1_100,
        "peak pending {}",
        stats.peak_pending
    );
    assert!(
        stats.pending_now <= 1_100,
        "pending at the end {}",
        stats.pending_now
    );
    assert_eq!(
        stats.expired as usize + stats.pending_now + 100,
        EVENTS as usize
    );
}

/// Missing-stage evidence and until markers are bounded the same way, and completed sequences
/// by the cap: `[A] ![B] [C] until [U]` over 200,000 events of a few rotating keys.
#[test]
fn evidence_until_markers_and_completed_sequences_stay_bounded() {
    let spec = SequenceSpec {
        stages: vec![
            StageSpec { missing: false },
            StageSpec { missing: true },
            StageSpec { missing: false },
        ],
        maxspan_ns: Some(SEC),
        has_until: true,
    };
    let mut matcher = Matcher::new(spec, 10).expect("valid spec");
    let host = KeyValue::str("h");
    for i in 0..200_000i64 {
        let entity = format!("k{}", i % 50);
        let stage = match i % 4 {
            0 => 0,
            1 => 1,
            _ => 2,
        };
        matcher
            .push(Candidate {
                ordinal: Ordinal::new(i * MS, i as u64),
                payload: i,
                stages: vec![StageMatch {
                    stage,
                    key_fields: key(&host, entity.clone()),
                }],
                until: (i % 7 == 0).then(|| key(&host, entity)),
            })
            .expect("ascending stream");
    }
    let stats = matcher.stats().clone();
    assert!(
        stats.completed > 1_000,
        "the workload completes sequences: {}",
        stats.completed
    );
    // One maxspan (1 s) holds 1,000 events; a quarter are evidence.
    assert!(
        stats.peak_evidence <= 300,
        "peak evidence {}",
        stats.peak_evidence
    );
    assert!(stats.until_markers_now <= 50);
    assert!(
        stats.peak_pending <= 1_000,
        "peak pending {}",
        stats.peak_pending
    );
    let outcome = matcher.finish();
    assert_eq!(outcome.sequences.len(), 10);
    assert_eq!(outcome.stats.dropped_by_cap, outcome.stats.completed - 10);
}
