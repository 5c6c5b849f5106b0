//! Hand-built cases pinning down Elasticsearch's EQL sequence semantics in the streaming matcher.
//! Each test cites the ES source it follows; paths are relative to
//! `elastic/elasticsearch` `x-pack/plugin/eql/src/main/java/org/elasticsearch/xpack/eql/`.

use seqwatch::correlate::{
    expand_join_keys, Candidate, KeyValue, MatchError, MatchOutcome, Matcher, Ordinal,
    SequenceSpec, SpecError, StageMatch, StageSpec, TieBreaker,
};

const MS: i64 = 1_000_000;
const SEC: i64 = 1_000 * MS;

fn spec(missing: &[bool], maxspan_ns: Option<i64>, has_until: bool) -> SequenceSpec {
    SequenceSpec {
        stages: missing
            .iter()
            .map(|&missing| StageSpec { missing })
            .collect(),
        maxspan_ns,
        has_until,
    }
}

/// Two positive stages, like the Node.js rule.
fn two_stages(maxspan_ns: Option<i64>) -> SequenceSpec {
    spec(&[false, false], maxspan_ns, false)
}

/// A single-valued key field.
fn f(value: &str) -> Vec<KeyValue> {
    vec![KeyValue::str(value)]
}

/// The rule's key for one event: `[host.id, <entity id>]`.
fn key(host: &str, entity: &str) -> Vec<Vec<KeyValue>> {
    vec![f(host), f(entity)]
}

/// Builds a stream; the implicit tiebreaker is the push order, standing in for `_shard_doc`.
#[derive(Default)]
struct Stream {
    events: Vec<Candidate<&'static str>>,
}

impl Stream {
    fn event(
        &mut self,
        ts: i64,
        name: &'static str,
        stages: &[(usize, Vec<Vec<KeyValue>>)],
    ) -> &mut Self {
        self.event_with(
            Ordinal::new(ts, self.events.len() as u64),
            name,
            stages,
            None,
        )
    }

    fn until(&mut self, ts: i64, name: &'static str, until: Vec<Vec<KeyValue>>) -> &mut Self {
        self.event_with(
            Ordinal::new(ts, self.events.len() as u64),
            name,
            &[],
            Some(until),
        )
    }

    fn event_with(
        &mut self,
        ordinal: Ordinal,
        name: &'static str,
        stages: &[(usize, Vec<Vec<KeyValue>>)],
        until: Option<Vec<Vec<KeyValue>>>,
    ) -> &mut Self {
        self.events.push(Candidate {
            ordinal,
            payload: name,
            stages: stages
                .iter()
                .map(|(stage, key_fields)| StageMatch {
                    stage: *stage,
                    key_fields: key_fields.clone(),
                })
                .collect(),
            until,
        });
        self
    }

    fn run(&self, spec: SequenceSpec, cap: usize) -> MatchOutcome<&'static str> {
        let mut matcher = Matcher::new(spec, cap).expect("valid spec");
        for event in self.events.iter().cloned() {
            matcher.push(event).expect("valid stream");
        }
        matcher.finish()
    }
}

/// The payload names per sequence, `-` for a missing-event slot.
fn names(outcome: &MatchOutcome<&'static str>) -> Vec<String> {
    outcome
        .sequences
        .iter()
        .map(|s| {
            s.events
                .iter()
                .map(|e| e.unwrap_or("-"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

// --- ordering and the state machine -------------------------------------------------------

/// `sequence/OrdinalGroup.java` `trimBefore`/`findBefore` via `SequenceMatcher.match`: a child
/// advances only the latest pending parent strictly before it and removes every older one.
#[test]
fn later_parent_overwrites_earlier_one() {
    let mut s = Stream::default();
    s.event(0, "P1", &[(0, key("h", "p"))])
        .event(SEC, "P2", &[(0, key("h", "p"))])
        .event(2 * SEC, "C1", &[(1, key("h", "p"))])
        .event(3 * SEC, "C2", &[(1, key("h", "p"))]);
    let out = s.run(two_stages(Some(10 * SEC)), 100);
    assert_eq!(names(&out), ["P2,C1"]);
    assert_eq!(
        out.stats.discarded_by_trim, 1,
        "P1 was trimmed, so C2 finds nothing"
    );
    assert_eq!(out.stats.ignored, 1);
}

/// `SequenceMatcher.match` removes the advanced sequence from its group: one alert per parent.
#[test]
fn one_sequence_per_parent_however_many_children() {
    let mut s = Stream::default();
    s.event(0, "P", &[(0, key("h", "p"))]);
    for (i, name) in ["C1", "C2", "C3"].into_iter().enumerate() {
        s.event((i as i64 + 1) * MS, name, &[(1, key("h", "p"))]);
    }
    let out = s.run(two_stages(Some(10 * SEC)), 100);
    assert_eq!(names(&out), ["P,C1"]);
    assert_eq!(out.stats.ignored, 2);
}

/// `search/Ordinal.java` `compareTo` falls back to the implicit tiebreaker (`_shard_doc`) on equal
/// timestamps, and `OrdinalGroup.findBefore` needs `compareTo < 0`: strict order.
#[test]
fn equal_timestamps_follow_the_implicit_tiebreaker() {
    // Child ordered before the parent within the same millisecond: no match.
    let mut s = Stream::default();
    s.event(5 * MS, "C", &[(1, key("h", "p"))])
        .event(5 * MS, "P", &[(0, key("h", "p"))]);
    assert!(s.run(two_stages(Some(10 * SEC)), 100).sequences.is_empty());

    // Parent first: match.
    let mut s = Stream::default();
    s.event(5 * MS, "P", &[(0, key("h", "p"))])
        .event(5 * MS, "C", &[(1, key("h", "p"))]);
    assert_eq!(names(&s.run(two_stages(Some(10 * SEC)), 100)), ["P,C"]);
}

/// `search/Ordinal.java` `compareTo`: on equal timestamps the explicit tiebreaker decides before
/// the implicit one, and "if the other tiebreaker is null, it is higher (nulls are last)".
#[test]
fn explicit_tiebreaker_orders_before_implicit_and_nulls_sort_last() {
    let with = |tb: i64, implicit: u64| Ordinal::with_tiebreaker(7, TieBreaker::Int(tb), implicit);
    let without = |implicit: u64| Ordinal::new(7, implicit);
    assert!(with(1, 9) < with(2, 0), "tiebreaker before implicit");
    assert!(
        with(1, 0) < with(1, 1),
        "implicit when tiebreakers are equal"
    );
    assert!(
        with(9, 9) < without(0),
        "a present tiebreaker sorts before a null one"
    );
    assert!(without(0) < without(1));
    assert!(Ordinal::new(6, 99) < with(0, 0), "timestamp first");

    // A child without a tiebreaker comes after a parent with one, whatever the implicit order.
    let mut s = Stream::default();
    s.event_with(with(3, 5), "P", &[(0, key("h", "p"))], None)
        .event_with(without(1), "C", &[(1, key("h", "p"))], None);
    assert_eq!(names(&s.run(two_stages(None), 100)), ["P,C"]);

    // The other way round is out of order for the stream.
    let mut matcher = Matcher::new(two_stages(None), 100).expect("valid");
    let candidate = |ordinal: Ordinal, stage: usize| Candidate {
        ordinal,
        payload: "x",
        stages: vec![StageMatch {
            stage,
            key_fields: key("h", "p"),
        }],
        until: None,
    };
    matcher.push(candidate(without(1), 0)).expect("first");
    let error = matcher
        .push(candidate(with(3, 5), 1))
        .expect_err("null tiebreaker is last");
    assert!(matches!(error, MatchError::OutOfOrder { .. }), "{error}");
}

/// `SequenceMatcher.exceedsMaxSpan`: `maxSpanNanos > 0 && to.delta(from) > maxSpanNanos`, from the
/// sequence's *first* event (`startOrdinal`): exactly maxspan matches, one millisecond more does not.
#[test]
fn maxspan_is_inclusive_and_measured_from_the_first_event() {
    let mut s = Stream::default();
    s.event(0, "P", &[(0, key("h", "p"))])
        .event(10 * SEC, "C", &[(1, key("h", "p"))]);
    assert_eq!(names(&s.run(two_stages(Some(10 * SEC)), 100)), ["P,C"]);

    let mut s = Stream::default();
    s.event(0, "P", &[(0, key("h", "p"))])
        .event(10 * SEC + MS, "C", &[(1, key("h", "p"))]);
    assert!(s.run(two_stages(Some(10 * SEC)), 100).sequences.is_empty());

    // Three stages: B→C is only 5 s, but A→C is 11 s.
    let mut s = Stream::default();
    let k = key("h", "p");
    s.event(0, "A", &[(0, k.clone())])
        .event(6 * SEC, "B", &[(1, k.clone())])
        .event(11 * SEC, "C", &[(2, k)]);
    assert!(s
        .run(spec(&[false, false, false], Some(10 * SEC), false), 100)
        .sequences
        .is_empty());
}

/// `SequenceMatcher.match` removes the pending sequence (`trimBefore`) *before* the maxspan
/// check, so a too-late child consumes it; the streaming matcher drops it as soon as no hit can
/// be within maxspan, which leaves the same nothing behind.
#[test]
fn a_late_child_leaves_no_pending_parent() {
    let mut s = Stream::default();
    s.event(0, "P", &[(0, key("h", "p"))])
        .event(10 * SEC + MS, "C1", &[(1, key("h", "p"))])
        .event(10 * SEC + 2 * MS, "C2", &[(1, key("h", "p"))]);
    let out = s.run(two_stages(Some(10 * SEC)), 100);
    assert!(out.sequences.is_empty());
    assert_eq!(out.stats.pending_now, 0);
    assert_eq!(out.stats.expired + out.stats.rejected_maxspan, 1);
    assert_eq!(out.stats.ignored, 2);
}

/// ES runs one query per stage (`sequence/TumblingWindow.java` `baseCriterion` then
/// `secondaryCriterion`), so one document can be a hit of several stages, each with its own keys.
#[test]
fn one_event_plays_two_stages() {
    // E2 is `node install` (stage 0, its own entity) whose parent E1 is `node` (stage 1).
    let mut s = Stream::default();
    s.event(0, "E1", &[(0, key("h", "e1"))])
        .event(MS, "E2", &[(0, key("h", "e2")), (1, key("h", "e1"))])
        .event(2 * MS, "E3", &[(1, key("h", "e2"))]);
    assert_eq!(
        names(&s.run(two_stages(Some(10 * SEC)), 100)),
        ["E1,E2", "E2,E3"]
    );

    // With the same key in both stages an event never pairs with itself (strictly before).
    let mut s = Stream::default();
    s.event(0, "A", &[(0, key("h", "k")), (1, key("h", "k"))]);
    assert!(s.run(two_stages(None), 100).sequences.is_empty());
    s.event(MS, "B", &[(0, key("h", "k")), (1, key("h", "k"))]);
    assert_eq!(names(&s.run(two_stages(None), 100)), ["A,B"]);
}

/// `SequenceMatcher.match`: stage n looks only at stage n-1's group (`previousPositiveStage`).
#[test]
fn three_stage_sequences_advance_stage_by_stage() {
    let three = || spec(&[false, false, false], Some(10 * SEC), false);
    let k = || key("h", "k");
    let mut s = Stream::default();
    s.event(0, "A", &[(0, k())])
        .event(MS, "B", &[(1, k())])
        .event(2 * MS, "C", &[(2, k())]);
    assert_eq!(names(&s.run(three(), 100)), ["A,B,C"]);

    let mut s = Stream::default();
    s.event(0, "A", &[(0, k())])
        .event(MS, "C", &[(2, k())])
        .event(2 * MS, "B", &[(1, k())]);
    assert!(s.run(three(), 100).sequences.is_empty());

    // Two partial sequences at stage 1: C advances the latest, the other is trimmed.
    let mut s = Stream::default();
    s.event(0, "A1", &[(0, k())])
        .event(MS, "B1", &[(1, k())])
        .event(2 * MS, "A2", &[(0, k())])
        .event(3 * MS, "B2", &[(1, k())])
        .event(4 * MS, "C", &[(2, k())]);
    let out = s.run(three(), 100);
    assert_eq!(names(&out), ["A2,B2,C"]);
    assert_eq!(out.stats.discarded_by_trim, 1);
}

/// `with runs=N` is syntactic repetition (docs, "with runs statement"); the state machine then
/// gives sliding windows: each event is stage 0, 1 and 2 of different sequences.
#[test]
fn runs_are_repeated_stages() {
    let k = || key("h", "k");
    let all = || vec![(0, k()), (1, k()), (2, k())];
    let mut s = Stream::default();
    for (i, name) in ["A1", "A2", "A3", "A4"].into_iter().enumerate() {
        s.event(i as i64 * MS, name, &all());
    }
    let out = s.run(spec(&[false, false, false], Some(10 * SEC), false), 100);
    assert_eq!(names(&out), ["A1,A2,A3", "A2,A3,A4"]);
}

// --- until ---------------------------------------------------------------------------------

/// `SequenceMatcher.match`: `until.before(hit)` finds the nearest until marker strictly before
/// the hit, and `search/Ordinal.java` `between(sequence.ordinal(), hit)` is inclusive.
#[test]
fn until_between_the_last_event_and_the_hit_expires_the_sequence() {
    let with_until = spec(&[false, false], Some(10 * SEC), true);
    let mut s = Stream::default();
    s.event(0, "P", &[(0, key("h", "p"))])
        .until(MS, "U", key("h", "p"))
        .event(2 * MS, "C", &[(1, key("h", "p"))]);
    let out = s.run(with_until.clone(), 100);
    assert!(out.sequences.is_empty());
    assert_eq!(out.stats.rejected_until, 1);

    // Until for another key changes nothing.
    let mut s = Stream::default();
    s.event(0, "P", &[(0, key("h", "p"))])
        .until(MS, "U", key("h", "other"))
        .event(2 * MS, "C", &[(1, key("h", "p"))]);
    assert_eq!(names(&s.run(with_until.clone(), 100)), ["P,C"]);

    // Until after the sequence completed changes nothing.
    let mut s = Stream::default();
    s.event(0, "P", &[(0, key("h", "p"))])
        .event(MS, "C", &[(1, key("h", "p"))])
        .until(2 * MS, "U", key("h", "p"));
    assert_eq!(names(&s.run(with_until.clone(), 100)), ["P,C"]);

    // Between stage 1 and stage 2 of a three-stage sequence.
    let k = || key("h", "k");
    let mut s = Stream::default();
    s.event(0, "A", &[(0, k())])
        .event(MS, "B", &[(1, k())])
        .until(2 * MS, "U", k())
        .event(3 * MS, "C", &[(2, k())]);
    assert!(s
        .run(spec(&[false, false, false], Some(10 * SEC), true), 100)
        .sequences
        .is_empty());
}

/// `Ordinal.between` is inclusive on the sequence's last event, exclusive on the hit (the marker
/// must be strictly before the hit: `OrdinalGroup.before`).
#[test]
fn until_on_the_sequences_own_event_expires_it_but_not_on_the_hit() {
    let with_until = spec(&[false, false], Some(10 * SEC), true);
    // P is itself an until event: the marker equals the sequence's last ordinal.
    let mut s = Stream::default();
    s.event_with(
        Ordinal::new(0, 0),
        "P",
        &[(0, key("h", "p"))],
        Some(key("h", "p")),
    )
    .event(MS, "C", &[(1, key("h", "p"))]);
    assert!(s.run(with_until.clone(), 100).sequences.is_empty());

    // C is itself an until event: not before the hit, so it does not expire its own match.
    let mut s = Stream::default();
    s.event(0, "P", &[(0, key("h", "p"))]).event_with(
        Ordinal::new(MS, 1),
        "C",
        &[(1, key("h", "p"))],
        Some(key("h", "p")),
    );
    assert_eq!(names(&s.run(with_until, 100)), ["P,C"]);
}

// --- missing events ------------------------------------------------------------------------

/// `TumblingWindow.prepareQueryForMissingEvents`: a middle missing stage searches
/// `gt(previous ms)` and `lt(next ms)` with the sequence's keys; any hit discards the sequence.
#[test]
fn missing_middle_stage() {
    let missing_middle = || spec(&[false, true, false], Some(10 * SEC), false);
    let k = || key("h", "k");
    let mut s = Stream::default();
    s.event(0, "A", &[(0, k())])
        .event(SEC, "B", &[(1, k())])
        .event(2 * SEC, "C", &[(2, k())]);
    let out = s.run(missing_middle(), 100);
    assert!(out.sequences.is_empty());
    assert_eq!(out.stats.rejected_missing, 1);

    // Same millisecond as A (after it in order): outside the exclusive millisecond range.
    let mut s = Stream::default();
    s.event(5 * MS, "A", &[(0, k())])
        .event(5 * MS + 400_000, "B", &[(1, k())])
        .event(2 * SEC, "C", &[(2, k())]);
    assert_eq!(names(&s.run(missing_middle(), 100)), ["A,-,C"]);

    // Another key does not count.
    let mut s = Stream::default();
    s.event(0, "A", &[(0, k())])
        .event(SEC, "B", &[(1, key("h", "x"))])
        .event(2 * SEC, "C", &[(2, k())]);
    assert_eq!(names(&s.run(missing_middle(), 100)), ["A,-,C"]);
}

/// `TumblingWindow.doCheckMissingEvents`: leading missing stages search `lt(first event ms)`
/// (latest hit, DESC) and the sequence completes when none exists or
/// `biggerThanMaxSpan(lastLeading, last event)`.
#[test]
fn missing_leading_stage_is_judged_against_maxspan() {
    let leading = || spec(&[true, false, false], Some(10 * SEC), false);
    let k = || key("h", "k");
    let mut s = Stream::default();
    s.event(0, "X", &[(0, k())])
        .event(5 * SEC, "B", &[(1, k())])
        .event(6 * SEC, "C", &[(2, k())]);
    assert!(
        s.run(leading(), 100).sequences.is_empty(),
        "X is 6 s before C: within maxspan"
    );

    let mut s = Stream::default();
    s.event(0, "X", &[(0, k())])
        .event(5 * SEC, "B", &[(1, k())])
        .event(10 * SEC + MS, "C", &[(2, k())]);
    assert_eq!(
        names(&s.run(leading(), 100)),
        ["-,B,C"],
        "X is more than maxspan before C"
    );

    // In the same millisecond as B: not `lt(B ms)`, so not found.
    let mut s = Stream::default();
    s.event(5 * SEC, "X", &[(0, k())])
        .event(5 * SEC, "B", &[(1, k())])
        .event(6 * SEC, "C", &[(2, k())]);
    assert_eq!(names(&s.run(leading(), 100)), ["-,B,C"]);
}

/// Trailing missing stages search `gt(last event ms)` (earliest hit, ASC) and complete when none
/// exists or `biggerThanMaxSpan(first event, firstTrailing)`. Streaming can only decide once the
/// stream is past first event + maxspan, or at `finish`.
#[test]
fn missing_trailing_stage_waits_for_the_stream() {
    let trailing = || spec(&[false, false, true], Some(10 * SEC), false);
    let k = || key("h", "k");
    let mut s = Stream::default();
    s.event(0, "A", &[(0, k())])
        .event(SEC, "B", &[(1, k())])
        .event(5 * SEC, "X", &[(2, k())]);
    assert!(s.run(trailing(), 100).sequences.is_empty());

    let mut s = Stream::default();
    s.event(0, "A", &[(0, k())])
        .event(SEC, "B", &[(1, k())])
        .event(10 * SEC + MS, "X", &[(2, k())]);
    assert_eq!(names(&s.run(trailing(), 100)), ["A,B,-"]);

    // Same millisecond as B: not `gt(B ms)`.
    let mut s = Stream::default();
    s.event(0, "A", &[(0, k())])
        .event(SEC, "B", &[(1, k())])
        .event(SEC + 400_000, "X", &[(2, k())]);
    assert_eq!(names(&s.run(trailing(), 100)), ["A,B,-"]);

    // Streaming: undecided until the stream passes A + 10 s.
    let mut matcher = Matcher::new(trailing(), 100).expect("valid");
    let push = |m: &mut Matcher<&'static str>,
                ts: i64,
                implicit: u64,
                stage: usize,
                kf: Vec<Vec<KeyValue>>| {
        m.push(Candidate {
            ordinal: Ordinal::new(ts, implicit),
            payload: "e",
            stages: vec![StageMatch {
                stage,
                key_fields: kf,
            }],
            until: None,
        })
        .expect("ascending");
    };
    push(&mut matcher, 0, 0, 0, k());
    push(&mut matcher, SEC, 1, 1, k());
    assert_eq!(matcher.stats().awaiting_missing_check_now, 1);
    push(&mut matcher, 10 * SEC, 2, 0, key("h", "other"));
    assert_eq!(
        matcher.stats().awaiting_missing_check_now,
        1,
        "exactly maxspan: a trailing event could still reject"
    );
    push(&mut matcher, 10 * SEC + 1, 3, 0, key("h", "other"));
    assert_eq!(matcher.stats().awaiting_missing_check_now, 0);
    assert_eq!(matcher.stats().completed, 1);
}

/// `doCheckMissingEvents` with both leading and trailing missing stages:
/// `lastLeading == null && isMissingEvent(0)` completes whatever trails; otherwise the window
/// from the last leading to the first trailing hit must exceed maxspan.
#[test]
fn missing_leading_and_trailing_stages() {
    let both = || spec(&[true, false, true], Some(10 * SEC), false);
    let k = || key("h", "k");
    let mut s = Stream::default();
    s.event(5 * SEC, "B", &[(1, k())])
        .event(6 * SEC, "Y", &[(2, k())]);
    assert_eq!(names(&s.run(both(), 100)), ["-,B,-"]);

    let mut s = Stream::default();
    s.event(0, "X", &[(0, k())])
        .event(5 * SEC, "B", &[(1, k())])
        .event(9 * SEC, "Y", &[(2, k())]);
    assert!(s.run(both(), 100).sequences.is_empty(), "X..Y is 9 s");

    let mut s = Stream::default();
    s.event(0, "X", &[(0, k())])
        .event(5 * SEC, "B", &[(1, k())])
        .event(11 * SEC, "Y", &[(2, k())]);
    assert_eq!(names(&s.run(both(), 100)), ["-,B,-"], "X..Y is 11 s");
}

/// `TermQueryBuilder` rejects null values ("value cannot be null"), and
/// `TumblingWindow.addKeyFilter` builds one per key: ES fails the search.
#[test]
fn null_key_needing_a_missing_event_check_is_an_error() {
    let mut matcher =
        Matcher::new(spec(&[false, true, false], Some(10 * SEC), false), 100).expect("valid");
    let kf = vec![f("h"), vec![KeyValue::Null]];
    for (i, stage) in [0usize, 2].into_iter().enumerate() {
        let result = matcher.push(Candidate {
            ordinal: Ordinal::new(i as i64 * MS, i as u64),
            payload: "e",
            stages: vec![StageMatch {
                stage,
                key_fields: kf.clone(),
            }],
            until: None,
        });
        if stage == 2 {
            assert!(
                matches!(result, Err(MatchError::NullKeyInMissingEventCheck { .. })),
                "{result:?}"
            );
        }
    }
}

// --- keys ------------------------------------------------------------------------------------

/// `TumblingWindow.extractJoinKeys`: cartesian product, each value of a field looping outside the
/// partial keys built so far.
#[test]
fn multi_valued_keys_expand_in_es_order() {
    let (a, b) = (KeyValue::str("a"), KeyValue::str("b"));
    let (x, y) = (KeyValue::Int(1), KeyValue::Int(2));
    let expanded = expand_join_keys(&[vec![a.clone(), b.clone()], vec![x.clone(), y.clone()]]);
    assert_eq!(
        expanded,
        vec![
            vec![a.clone(), x.clone()],
            vec![b.clone(), x.clone()],
            vec![a.clone(), y.clone()],
            vec![b, y]
        ]
    );
    assert!(
        expand_join_keys(&[vec![a.clone()], vec![]]).is_empty(),
        "a field without values joins nothing"
    );
    assert_eq!(
        expand_join_keys(&[]),
        vec![Vec::<KeyValue>::new()],
        "no keys: SequenceKey.NONE"
    );

    // A parent with two entity ids matches a child of either.
    let mut s = Stream::default();
    s.event(
        0,
        "P",
        &[(
            0,
            vec![f("h"), vec![KeyValue::str("e1"), KeyValue::str("e2")]],
        )],
    )
    .event(MS, "C", &[(1, key("h", "e2"))]);
    let out = s.run(two_stages(None), 100);
    assert_eq!(names(&out), ["P,C"]);
    assert_eq!(
        out.sequences[0].join_keys,
        vec![KeyValue::str("h"), KeyValue::str("e2")]
    );
}

/// `sequence/SequenceKey.java` `equals` is `Arrays.deepEquals`: type-sensitive, null equals null.
#[test]
fn optional_null_keys_join_each_other_and_nothing_else() {
    let null_key = || vec![f("h"), vec![KeyValue::Null]];
    let mut s = Stream::default();
    s.event(0, "P", &[(0, null_key())])
        .event(MS, "C", &[(1, null_key())]);
    assert_eq!(names(&s.run(two_stages(None), 100)), ["P,C"]);

    for other in [KeyValue::str(""), KeyValue::str("null"), KeyValue::Int(0)] {
        let mut s = Stream::default();
        s.event(0, "P", &[(0, null_key())])
            .event(MS, "C", &[(1, vec![f("h"), vec![other]])]);
        assert!(s.run(two_stages(None), 100).sequences.is_empty());
    }
    assert_ne!(
        KeyValue::Int(1),
        KeyValue::float(1.0),
        "Long(1) does not equal Double(1.0)"
    );
    assert_ne!(
        KeyValue::float(0.0),
        KeyValue::float(-0.0),
        "Double.equals compares bits"
    );
    assert_eq!(
        KeyValue::float(f64::NAN),
        KeyValue::float(-f64::NAN),
        "NaN is canonical"
    );
}

// --- results ---------------------------------------------------------------------------------

fn five_sequences() -> Stream {
    let mut s = Stream::default();
    for i in 0..5i64 {
        let entity: &'static str = ["p0", "p1", "p2", "p3", "p4"][i as usize];
        s.event(
            i * SEC,
            ["P0", "P1", "P2", "P3", "P4"][i as usize],
            &[(0, key("h", entity))],
        );
    }
    // Children complete in reverse order of their parents.
    for i in (0..5i64).rev() {
        let entity: &'static str = ["p0", "p1", "p2", "p3", "p4"][i as usize];
        s.event(
            6 * SEC + (4 - i) * MS,
            ["C0", "C1", "C2", "C3", "C4"][i as usize],
            &[(1, key("h", entity))],
        );
    }
    s
}

/// `search/Limit.java` `view` with a negative (tail) limit keeps the sequences with the latest
/// last events, and `TumblingWindow.doPayload` reverses them back to ascending.
#[test]
fn tail_cap_keeps_the_latest_in_ascending_order() {
    let out = five_sequences().run(two_stages(Some(10 * SEC)), 3);
    assert_eq!(
        names(&out),
        ["P2,C2", "P1,C1", "P0,C0"],
        "ordered by last event, not first"
    );
    assert_eq!(out.stats.completed, 5);
    assert_eq!(out.stats.dropped_by_cap, 2);

    let exact = five_sequences().run(two_stages(Some(10 * SEC)), 5);
    assert_eq!(exact.sequences.len(), 5);
    assert_eq!(exact.stats.dropped_by_cap, 0);
    let ordinals: Vec<&Ordinal> = exact.sequences.iter().map(|s| &s.ordinal).collect();
    assert!(ordinals.windows(2).all(|w| w[0] < w[1]));
}

/// `SequenceMatcher.completed` is a `TreeSet<Sequence>` and `Sequence.compareTo` compares the last
/// ordinals: a second sequence ending on the same event compares equal and is not added; the
/// first tuple in `extractJoinKeys` order wins.
#[test]
fn sequences_ending_on_the_same_event_keep_the_first_key_tuple() {
    for (values, kept) in [(["a", "b"], "a"), (["b", "a"], "b")] {
        let mut s = Stream::default();
        s.event(0, "Pa", &[(0, key("h", "a"))])
            .event(MS, "Pb", &[(0, key("h", "b"))])
            .event(
                2 * MS,
                "C",
                &[(
                    1,
                    vec![f("h"), values.iter().map(|v| KeyValue::str(v)).collect()],
                )],
            );
        let out = s.run(two_stages(None), 100);
        assert_eq!(out.sequences.len(), 1);
        assert_eq!(
            out.sequences[0].join_keys,
            vec![KeyValue::str("h"), KeyValue::str(kept)]
        );
        assert_eq!(out.stats.same_ordinal_collisions, 1);
    }
}

// --- input errors ----------------------------------------------------------------------------

#[test]
fn out_of_order_or_repeated_ordinals_are_rejected() {
    let candidate = |ts: i64, implicit: u64| Candidate {
        ordinal: Ordinal::new(ts, implicit),
        payload: "e",
        stages: vec![StageMatch {
            stage: 0,
            key_fields: key("h", "p"),
        }],
        until: None,
    };
    let mut matcher = Matcher::new(two_stages(None), 10).expect("valid");
    matcher.push(candidate(5, 1)).expect("first");
    let error = matcher
        .push(candidate(4, 2))
        .expect_err("earlier timestamp");
    assert!(error.to_string().contains("strictly ascending"), "{error}");
    assert!(
        matches!(
            matcher.push(candidate(5, 1)),
            Err(MatchError::OutOfOrder { .. })
        ),
        "equal ordinal"
    );
    assert!(matcher.push(candidate(5, 2)).is_ok());
}

#[test]
fn malformed_candidates_and_specs_are_rejected() {
    let mut matcher = Matcher::new(two_stages(None), 10).expect("valid");
    let mut candidate = Candidate {
        ordinal: Ordinal::new(0, 0),
        payload: "e",
        stages: vec![StageMatch {
            stage: 2,
            key_fields: vec![],
        }],
        until: None,
    };
    assert!(matches!(
        matcher.push(candidate.clone()),
        Err(MatchError::UnknownStage { stage: 2, .. })
    ));
    candidate.stages = vec![
        StageMatch {
            stage: 0,
            key_fields: vec![],
        },
        StageMatch {
            stage: 0,
            key_fields: vec![],
        },
    ];
    assert!(matches!(
        matcher.push(candidate.clone()),
        Err(MatchError::DuplicateStage { stage: 0, .. })
    ));
    candidate.stages.pop();
    candidate.until = Some(vec![]);
    assert!(matches!(
        matcher.push(candidate.clone()),
        Err(MatchError::UntilWithoutClause { .. })
    ));

    let mut matcher = Matcher::new(two_stages(None), 10).expect("valid");
    let tb = |ts: i64, tiebreaker: TieBreaker| Candidate {
        ordinal: Ordinal::with_tiebreaker(ts, tiebreaker, ts as u64),
        payload: "e",
        stages: vec![],
        until: None,
    };
    matcher.push(tb(0, TieBreaker::Int(1))).expect("first");
    assert!(matches!(
        matcher.push(tb(1, TieBreaker::Str("x".into()))),
        Err(MatchError::MixedTieBreakerTypes { .. })
    ));

    assert_eq!(
        Matcher::<()>::new(spec(&[false], None, false), 1).err(),
        Some(SpecError::TooFewStages { found: 1 })
    );
    assert_eq!(
        Matcher::<()>::new(spec(&[true, true], Some(SEC), false), 1).err(),
        Some(SpecError::NoPositiveStage)
    );
    assert_eq!(
        Matcher::<()>::new(spec(&[false, true], None, false), 1).err(),
        Some(SpecError::MissingStageWithoutMaxspan { stage: 1 })
    );
    assert_eq!(
        Matcher::<()>::new(spec(&[false, false], Some(0), false), 1).err(),
        Some(SpecError::NonPositiveMaxspan { maxspan_ns: 0 })
    );
    assert_eq!(
        Matcher::<()>::new(two_stages(None), 0).err(),
        Some(SpecError::ZeroCap)
    );
}
