//! A brute-force reference matcher written literally after Elasticsearch's batch algorithm, and
//! property tests asserting the streaming `Matcher` returns exactly what it returns.
//!
//! The reference follows `x-pack/plugin/eql/src/main/java/org/elasticsearch/xpack/eql/execution/`:
//! - `sequence/TumblingWindow.java` as one window holding every hit: the first positive stage's
//!   hits are matched, then the until hits are loaded (`untilCriterion`, "until check for HEAD
//!   queries"), then each later positive stage's hits in turn (`secondaryCriterion`), each in
//!   ascending order and each hit expanded by `extractJoinKeys`;
//! - `sequence/SequenceMatcher.java` (`match`, `tryComplete`), `sequence/KeyToSequences.java`
//!   (`until` ignores keys without an entry; entries are not removed inside one window),
//!   `sequence/OrdinalGroup.java` (`findBefore`/`trimBefore` as linear scans);
//! - `TumblingWindow.prepareQueryForMissingEvents`/`doCheckMissingEvents` as brute-force queries
//!   over all events (key `term` filters per field, epoch-millisecond `gt`/`lt` ranges);
//! - `search/Limit.java` `view` with a negative (tail) limit, then reversed back to ascending.
//!
//! Nothing here streams, expires state or emits early; that is the point of the comparison.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use seqwatch::correlate::{
    Candidate, KeyValue, Matcher, Ordinal, SequenceSpec, StageMatch, StageSpec, TieBreaker,
};

/// `(join keys, payload per stage, last ordinal)` of one returned sequence.
type Returned = (Vec<KeyValue>, Vec<Option<usize>>, Ordinal);

#[derive(Debug, Clone)]
struct RefSequence {
    key: Vec<KeyValue>,
    first_stage: usize,
    current_stage: usize,
    matches: Vec<Option<(Ordinal, usize)>>,
}

impl RefSequence {
    fn ordinal(&self) -> &Ordinal {
        &self.matches[self.current_stage]
            .as_ref()
            .expect("current stage is matched")
            .0
    }
    fn start_ordinal(&self) -> &Ordinal {
        &self.matches[self.first_stage]
            .as_ref()
            .expect("first stage is matched")
            .0
    }
    fn match_at(&self, stage: usize) -> &Ordinal {
        &self.matches[stage]
            .as_ref()
            .expect("positive stage is matched")
            .0
    }
}

/// `TumblingWindow.extractJoinKeys`, transcribed: nulls filled position by position.
fn extract_join_keys(original: &[Vec<KeyValue>]) -> Vec<Vec<KeyValue>> {
    let size = original.len();
    let mut partial: Vec<Vec<Option<KeyValue>>> = vec![vec![None; size]];
    for i in 0..size {
        if original[i].len() != 1 {
            let mut new_partial = Vec::new();
            for possible in &original[i] {
                for partial_key in &partial {
                    let mut new_key = vec![None; size];
                    new_key[..i].clone_from_slice(&partial_key[..i]);
                    new_key[i] = Some(possible.clone());
                    new_partial.push(new_key);
                }
            }
            partial = new_partial;
        } else {
            for key in &mut partial {
                key[i] = Some(original[i][0].clone());
            }
        }
    }
    partial
        .into_iter()
        .map(|k| k.into_iter().map(|v| v.expect("filled")).collect())
        .collect()
}

fn find_before<'a>(
    ordinals: impl Iterator<Item = &'a Ordinal>,
    ordinal: &Ordinal,
) -> Option<usize> {
    let mut found = None;
    for (position, o) in ordinals.enumerate() {
        if o < ordinal {
            found = Some(position);
        } else {
            break;
        }
    }
    found
}

fn between(o: &Ordinal, left: &Ordinal, right: &Ordinal) -> bool {
    (o <= left && o >= right) || (o <= right && o >= left)
}

fn floor_ms(ns: i64) -> i64 {
    ns.div_euclid(1_000_000)
}

struct Reference<'a> {
    spec: &'a SequenceSpec,
    events: &'a [Candidate<usize>],
    missing: Vec<bool>,
    last: usize,
    groups: HashMap<(usize, Vec<KeyValue>), Vec<RefSequence>>,
    entries: HashSet<Vec<KeyValue>>,
    untils: HashMap<Vec<KeyValue>, Vec<Ordinal>>,
    completed: BTreeMap<Ordinal, RefSequence>,
    to_check: BTreeMap<Ordinal, RefSequence>,
}

impl<'a> Reference<'a> {
    fn previous_positive(&self, stage: usize) -> Option<usize> {
        (0..stage).rev().find(|&s| !self.missing[s])
    }
    fn next_positive(&self, stage: usize) -> Option<usize> {
        (stage + 1..self.missing.len()).find(|&s| !self.missing[s])
    }
    fn exceeds_max_span(&self, from: i64, to: i64) -> bool {
        let maxspan = self.spec.maxspan_ns.unwrap_or(-1);
        maxspan > 0 && to - from > maxspan
    }

    fn try_complete(&mut self, sequence: RefSequence) {
        let target = if self.missing.iter().any(|&m| m) {
            &mut self.to_check
        } else {
            &mut self.completed
        };
        // TreeSet.add keeps the element already there.
        target.entry(sequence.ordinal().clone()).or_insert(sequence);
    }

    fn match_hit(&mut self, stage: usize, key: Vec<KeyValue>, ordinal: &Ordinal, hit: usize) {
        let Some(previous) = self.previous_positive(stage) else {
            return;
        };
        let Some(group) = self.groups.get_mut(&(previous, key.clone())) else {
            return;
        };
        if group.is_empty() {
            return;
        }
        let Some(position) = find_before(group.iter().map(|s| s.ordinal()), ordinal) else {
            return;
        };
        let mut sequence = group
            .drain(..=position)
            .next_back()
            .expect("position is in range");
        if self.exceeds_max_span(sequence.start_ordinal().timestamp_ns, ordinal.timestamp_ns) {
            return;
        }
        if let Some(until) = self.untils.get(&key) {
            if let Some(nearest) = find_before(until.iter(), ordinal) {
                if between(&until[nearest], sequence.ordinal(), ordinal) {
                    return;
                }
            }
        }
        sequence.current_stage = stage;
        sequence.matches[stage] = Some((ordinal.clone(), hit));
        if stage == self.last {
            self.try_complete(sequence);
        } else {
            self.groups
                .entry((stage, key.clone()))
                .or_default()
                .push(sequence);
            self.entries.insert(key);
        }
    }

    /// The events a `size:1` missing-event query for `stage` and `key` would search.
    fn missing_hits(&self, stage: usize, key: &[KeyValue]) -> Vec<i64> {
        self.events
            .iter()
            .filter(|e| {
                e.stages.iter().any(|m| {
                    m.stage == stage
                        && m.key_fields.len() == key.len()
                        && m.key_fields
                            .iter()
                            .zip(key)
                            .all(|(values, k)| values.contains(k))
                })
            })
            .map(|e| e.ordinal.timestamp_ns)
            .collect()
    }

    fn check_missing(&mut self) -> Result<(), String> {
        let to_check: Vec<RefSequence> = std::mem::take(&mut self.to_check).into_values().collect();
        let n = self.missing.len();
        for sequence in to_check {
            let mut leading = true;
            let mut discarded = false;
            let mut last_leading: Option<i64> = None;
            let mut first_trailing: Option<i64> = None;
            for i in 0..n {
                if !self.missing[i] {
                    leading = false;
                    continue;
                }
                if sequence.key.contains(&KeyValue::Null) {
                    return Err("TermQueryBuilder: value cannot be null".into());
                }
                let hits = self.missing_hits(i, &sequence.key);
                if leading {
                    let bound = floor_ms(sequence.start_ordinal().timestamp_ns);
                    let hit = hits.iter().copied().filter(|&t| floor_ms(t) < bound).max();
                    if let Some(t) = hit {
                        last_leading = Some(last_leading.map_or(t, |l| l.max(t)));
                    }
                } else if self.next_positive(i).is_none() {
                    let bound = floor_ms(sequence.ordinal().timestamp_ns);
                    let hit = hits.iter().copied().filter(|&t| floor_ms(t) > bound).min();
                    if let Some(t) = hit {
                        first_trailing = Some(first_trailing.map_or(t, |f| f.min(t)));
                    }
                } else {
                    let low = floor_ms(
                        sequence
                            .match_at(self.previous_positive(i).expect("middle"))
                            .timestamp_ns,
                    );
                    let high = floor_ms(
                        sequence
                            .match_at(self.next_positive(i).expect("middle"))
                            .timestamp_ns,
                    );
                    if hits
                        .iter()
                        .any(|&t| low < floor_ms(t) && floor_ms(t) < high)
                    {
                        discarded = true;
                    }
                }
            }
            if discarded {
                continue;
            }
            let bigger = |from: Option<i64>, to: Option<i64>| match (from, to) {
                (Some(f), Some(t)) => self.exceeds_max_span(f, t),
                _ => true,
            };
            let lead = self.missing[0];
            let trail = self.missing[n - 1];
            let start = Some(sequence.start_ordinal().timestamp_ns);
            let end = Some(sequence.ordinal().timestamp_ns);
            if (first_trailing.is_none() && last_leading.is_none())
                || (last_leading.is_none() && lead)
                || (first_trailing.is_none() && trail)
                || (lead && trail && bigger(last_leading, first_trailing))
                || (lead && !trail && bigger(last_leading, end))
                || (!lead && trail && bigger(start, first_trailing))
            {
                self.completed
                    .entry(sequence.ordinal().clone())
                    .or_insert(sequence);
            }
        }
        Ok(())
    }
}

/// Runs the reference; `Err` where ES's search would fail. Returns the kept sequences and the
/// number of completed sequences before the tail limit.
fn reference(
    spec: &SequenceSpec,
    events: &[Candidate<usize>],
    cap: usize,
) -> Result<(Vec<Returned>, usize), String> {
    let missing: Vec<bool> = spec.stages.iter().map(|s| s.missing).collect();
    let first = missing.iter().position(|m| !m).expect("a positive stage");
    let last = missing.iter().rposition(|m| !m).expect("a positive stage");
    let mut r = Reference {
        spec,
        events,
        missing,
        last,
        groups: HashMap::new(),
        entries: HashSet::new(),
        untils: HashMap::new(),
        completed: BTreeMap::new(),
        to_check: BTreeMap::new(),
    };
    for stage in 0..spec.stages.len() {
        if r.missing[stage] {
            continue;
        }
        for event in events {
            for membership in event.stages.iter().filter(|m| m.stage == stage) {
                for key in extract_join_keys(&membership.key_fields) {
                    if stage == first {
                        let mut matches = vec![None; spec.stages.len()];
                        matches[stage] = Some((event.ordinal.clone(), event.payload));
                        let sequence = RefSequence {
                            key: key.clone(),
                            first_stage: stage,
                            current_stage: stage,
                            matches,
                        };
                        if first == last {
                            r.try_complete(sequence);
                        } else {
                            r.groups
                                .entry((stage, key.clone()))
                                .or_default()
                                .push(sequence);
                            r.entries.insert(key);
                        }
                    } else {
                        r.match_hit(stage, key, &event.ordinal, event.payload);
                    }
                }
            }
        }
        if stage == first && spec.has_until {
            for event in events {
                if let Some(fields) = &event.until {
                    for key in extract_join_keys(fields) {
                        if r.entries.contains(&key) {
                            r.untils.entry(key).or_default().push(event.ordinal.clone());
                        }
                    }
                }
            }
        }
    }
    r.check_missing()?;

    // Limit.view(-cap): reverse, keep the first `cap`, then the payload is reversed back.
    let total = r.completed.len();
    let mut view: Vec<RefSequence> = r.completed.into_values().rev().collect();
    if view.len() >= cap {
        view.truncate(cap);
    }
    view.reverse();
    let returned = view
        .into_iter()
        .map(|s| {
            let ordinal = s.ordinal().clone();
            let payloads = s
                .matches
                .iter()
                .map(|m| m.as_ref().map(|(_, payload)| *payload))
                .collect();
            (s.key, payloads, ordinal)
        })
        .collect();
    Ok((returned, total))
}

#[derive(Debug, Clone)]
struct Case {
    spec: SequenceSpec,
    cap: usize,
    events: Vec<Candidate<usize>>,
}

#[derive(Debug, Clone)]
struct RawEvent {
    millis: i64,
    sub_milli_ns: i64,
    tiebreaker: Option<i64>,
    memberships: Vec<Option<Vec<Vec<KeyValue>>>>,
    until: Option<Vec<Vec<KeyValue>>>,
}

fn key_value(allow_null: bool) -> BoxedStrategy<KeyValue> {
    let plain = prop_oneof![
        4 => Just(KeyValue::str("a")),
        3 => Just(KeyValue::str("b")),
        1 => Just(KeyValue::Int(1)),
    ];
    if allow_null {
        prop_oneof![4 => plain, 1 => Just(KeyValue::Null)].boxed()
    } else {
        plain.boxed()
    }
}

fn key_fields(key_count: usize, allow_null: bool) -> impl Strategy<Value = Vec<Vec<KeyValue>>> {
    let field = prop_oneof![
        5 => key_value(allow_null).prop_map(|v| vec![v]),
        1 => prop::collection::vec(key_value(allow_null), 2..=2),
    ];
    prop::collection::vec(field, key_count..=key_count)
}

fn raw_event(
    stages: usize,
    key_count: usize,
    allow_null: bool,
    has_until: bool,
) -> impl Strategy<Value = RawEvent> {
    let membership = prop_oneof![
        3 => Just(None),
        2 => key_fields(key_count, allow_null).prop_map(Some),
    ];
    let until = if has_until {
        prop_oneof![4 => Just(None), 1 => key_fields(key_count, allow_null).prop_map(Some)].boxed()
    } else {
        Just(None).boxed()
    };
    (
        0i64..30,
        prop_oneof![3 => Just(0i64), 1 => Just(400_000i64)],
        prop_oneof![3 => Just(None), 1 => (0i64..3).prop_map(Some)],
        prop::collection::vec(membership, stages..=stages),
        until,
    )
        .prop_map(
            |(millis, sub_milli_ns, tiebreaker, memberships, until)| RawEvent {
                millis,
                sub_milli_ns,
                tiebreaker,
                memberships,
                until,
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    (
        2usize..=4,
        prop::collection::vec(prop::bool::weighted(0.3), 4),
        prop::option::weighted(
            0.75,
            (
                1i64..=12,
                prop_oneof![3 => Just(0i64), 1 => Just(400_000i64)],
            ),
        ),
        prop::bool::weighted(0.4),
        0usize..=2,
        prop::bool::weighted(0.25),
        prop_oneof![1 => 1usize..=4, 1 => Just(1000usize)],
    )
        .prop_flat_map(
            |(stage_count, missing_flags, maxspan, has_until, key_count, allow_null, cap)| {
                let mut missing: Vec<bool> = missing_flags[..stage_count].to_vec();
                if missing.iter().all(|&m| m) {
                    missing[stage_count - 1] = false;
                }
                let any_missing = missing.iter().any(|&m| m);
                let maxspan_ns = match maxspan {
                    Some((ms, extra)) => Some(ms * 1_000_000 + extra),
                    None if any_missing => Some(5_000_000),
                    None => None,
                };
                let spec = SequenceSpec {
                    stages: missing.iter().map(|&m| StageSpec { missing: m }).collect(),
                    maxspan_ns,
                    has_until,
                };
                (
                    Just(spec),
                    Just(cap),
                    prop::collection::vec(
                        raw_event(stage_count, key_count, allow_null, has_until),
                        0..40,
                    ),
                )
            },
        )
        .prop_map(|(spec, cap, raw)| {
            let mut events: Vec<Candidate<usize>> = raw
                .into_iter()
                .enumerate()
                .map(|(index, r)| Candidate {
                    ordinal: Ordinal {
                        timestamp_ns: r.millis * 1_000_000 + r.sub_milli_ns,
                        tiebreaker: r.tiebreaker.map(TieBreaker::Int),
                        implicit: index as u64,
                    },
                    payload: index,
                    stages: r
                        .memberships
                        .into_iter()
                        .enumerate()
                        .filter_map(|(stage, m)| {
                            m.map(|key_fields| StageMatch { stage, key_fields })
                        })
                        .collect(),
                    until: r.until,
                })
                .collect();
            events.sort_by(|a, b| a.ordinal.cmp(&b.ordinal));
            Case { spec, cap, events }
        })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn run_streaming(case: &Case) -> Result<(Vec<Returned>, u64, u64), String> {
    let mut matcher = Matcher::new(case.spec.clone(), case.cap).map_err(|e| e.to_string())?;
    for event in case.events.iter().cloned() {
        matcher.push(event).map_err(|e| e.to_string())?;
    }
    let outcome = matcher.finish();
    let returned = outcome
        .sequences
        .into_iter()
        .map(|s| (s.join_keys, s.events, s.ordinal))
        .collect();
    Ok((
        returned,
        outcome.stats.completed,
        outcome.stats.dropped_by_cap,
    ))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn streaming_matcher_equals_es_batch_reference(case in case()) {
        let expected = reference(&case.spec, &case.events, case.cap);
        let actual = run_streaming(&case);
        match (expected, actual) {
            (Ok((expected, total)), Ok((actual, completed, dropped))) => {
                prop_assert_eq!(&actual, &expected);
                prop_assert_eq!(completed as usize, total);
                prop_assert_eq!(dropped as usize, total - expected.len());
            }
            (Err(_), Err(error)) => prop_assert!(error.contains("null"), "unexpected error: {}", error),
            (expected, actual) => prop_assert!(false, "reference {:?} but streaming {:?}", expected, actual),
        }
    }
}

/// The reference must itself be able to fail: a pinned case where the answer is known.
#[test]
fn reference_pins_a_known_answer() {
    let spec = SequenceSpec {
        stages: vec![StageSpec { missing: false }, StageSpec { missing: false }],
        maxspan_ns: None,
        has_until: false,
    };
    let key = vec![vec![KeyValue::str("h")]];
    let events: Vec<Candidate<usize>> = (0..3)
        .map(|i| Candidate {
            ordinal: Ordinal::new(i as i64, i as u64),
            payload: i,
            stages: vec![StageMatch {
                stage: if i < 2 { 0 } else { 1 },
                key_fields: key.clone(),
            }],
            until: None,
        })
        .collect();
    let (returned, total) = reference(&spec, &events, 10).expect("no missing stages");
    assert_eq!(total, 1);
    // The later parent (payload 1) overwrote the earlier one.
    assert_eq!(returned[0].1, vec![Some(1), Some(2)]);
}

/// The generator must reach every feature, or the equality above proves little.
#[test]
fn generated_cases_exercise_every_feature() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};

    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = case();
    let mut totals = seqwatch::correlate::MatchStats::default();
    let (mut with_sequences, mut missing_with_sequences, mut null_errors, mut multi_stage_events) =
        (0, 0, 0, 0);
    for _ in 0..500 {
        let case = strategy.new_tree(&mut runner).expect("case").current();
        multi_stage_events += case.events.iter().filter(|e| e.stages.len() > 1).count();
        let mut matcher = Matcher::new(case.spec.clone(), case.cap).expect("valid spec");
        let mut failed = false;
        for event in case.events.iter().cloned() {
            if matcher.push(event).is_err() {
                failed = true;
                break;
            }
        }
        if failed {
            null_errors += 1;
            continue;
        }
        let outcome = matcher.finish();
        if !outcome.sequences.is_empty() {
            with_sequences += 1;
            if case.spec.stages.iter().any(|s| s.missing) {
                missing_with_sequences += 1;
            }
        }
        let s = outcome.stats;
        totals.rejected_until += s.rejected_until;
        totals.rejected_missing += s.rejected_missing;
        totals.same_ordinal_collisions += s.same_ordinal_collisions;
        totals.dropped_by_cap += s.dropped_by_cap;
        totals.discarded_by_trim += s.discarded_by_trim;
        totals.expired += s.expired;
        totals.ignored += s.ignored;
    }
    println!(
        "with sequences {with_sequences}, missing-stage cases with sequences {missing_with_sequences}, \
         null-key errors {null_errors}, multi-stage events {multi_stage_events}, totals {totals:?}"
    );
    assert!(with_sequences > 150, "{with_sequences}");
    assert!(missing_with_sequences > 30, "{missing_with_sequences}");
    assert!(null_errors > 5, "{null_errors}");
    assert!(multi_stage_events > 500, "{multi_stage_events}");
    assert!(totals.rejected_until > 20, "{totals:?}");
    assert!(totals.rejected_missing > 20, "{totals:?}");
    assert!(totals.same_ordinal_collisions > 5, "{totals:?}");
    assert!(totals.dropped_by_cap > 50, "{totals:?}");
    assert!(totals.discarded_by_trim > 50, "{totals:?}");
    assert!(totals.expired > 50, "{totals:?}");
}
