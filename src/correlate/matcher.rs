//! The streaming sequence matcher: candidates go in one at a time in ascending [`Ordinal`]
//! order, completed sequences come out at [`Matcher::finish`], with the results ES's batch
//! algorithm (`execution/sequence/SequenceMatcher.java` driven by `TumblingWindow.java`) gives
//! for the same hits. Pure and generic over the event payload; it neither parses nor evaluates.
//!
//! How streaming stays equal to ES's stage-by-stage batch:
//! - A stage-n hit only looks at pending sequences *strictly before* it, so an event's roles
//!   (processed in ascending stage order, as ES runs the stage queries) never see each other.
//! - An `until` marker only matters for hits after it, so keeping the latest marker per key is
//!   enough, recorded after the event's own stage roles.
//! - Pending sequences whose first event is more than maxspan before the stream are dropped:
//!   any hit that could still reach them would be rejected by maxspan, and in every group older
//!   entries start no later than newer ones, so dropping a prefix changes no outcome.
//! - Missing-event checks run on evidence the stream has already seen (leading/middle) or wait
//!   for the first trailing event, or until the stream is past the point where one could matter.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use thiserror::Error;

use super::key::{
    CandidateKeys, EntryFields, FxBuildHasher, KeyFields, KeyId, KeyInterner, KeyTarget, KeyTuple,
    KeyValue, NULL_KEY, UNSEEN_KEY,
};
use super::ordinal::{floor_millis, Ordinal};
use super::spec::{Layout, SequenceSpec, SpecError, StageRole};

/// A join key as the matcher's maps hold it: interned ids, inline for up to four fields.
type SharedKey = KeyTuple;

/// A map keyed by key tuples; their ids are the matcher's own, so a fast hash is safe.
type KeyMap<V> = HashMap<KeyTuple, V, FxBuildHasher>;

/// The interner is compacted when it holds this many values, and then whenever it has doubled.
const MIN_COMPACTION: usize = 1 << 16;

/// One stage an event is a hit of, with its key field values for that stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageMatch {
    /// Index of the stage in the sequence (0-based, query order).
    pub stage: usize,
    /// The event's join-key values for this stage, before cartesian expansion.
    pub key_fields: KeyFields,
}

/// One event of the merged, sorted stream of hits.
#[derive(Debug, Clone)]
pub struct Candidate<T> {
    /// Where the event sits in the stream; candidates must arrive strictly ascending.
    pub ordinal: Ordinal,
    /// What the caller wants back in completed sequences (e.g. an `Arc` of the hit).
    pub payload: T,
    /// Every stage whose filter the event matches (positive and missing-event stages).
    pub stages: Vec<StageMatch>,
    /// The event's key values for the `until` filter, if it matches that filter.
    pub until: Option<KeyFields>,
}

/// A sequence ES would return.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedSequence<T> {
    /// The key tuple the sequence joined on.
    pub join_keys: Vec<KeyValue>,
    /// The ordinal of the last positive event; ES orders (and de-duplicates) sequences by it.
    pub ordinal: Ordinal,
    /// One slot per stage in query order; `None` for missing-event stages, as ES's placeholders.
    pub events: Vec<Option<T>>,
}

/// Counters describing a run; the `_now` values are the live state when read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchStats {
    /// Candidates pushed.
    pub candidates: u64,
    /// In-flight sequences waiting for their next stage.
    pub pending_now: usize,
    /// The largest `pending_now` seen after any push.
    pub peak_pending: usize,
    /// Completed sequences waiting for the stream to settle a trailing missing-event check.
    pub awaiting_missing_check_now: usize,
    /// The largest `awaiting_missing_check_now` seen after any push.
    pub peak_awaiting_missing_check: usize,
    /// Missing-stage evidence timestamps kept for leading/middle checks.
    pub evidence_now: usize,
    /// The largest `evidence_now` seen after any push.
    pub peak_evidence: usize,
    /// Keys holding an `until` marker.
    pub until_markers_now: usize,
    /// Pending sequences dropped because no future hit could be within maxspan of their start.
    pub expired: u64,
    /// Older pending sequences removed when a later-stage hit advanced a newer one (`trimBefore`).
    pub discarded_by_trim: u64,
    /// Later-stage key tuples that found no pending sequence strictly before them.
    pub ignored: u64,
    /// Sequences rejected by the maxspan check at a hit (normally 0: expiry runs first).
    pub rejected_maxspan: u64,
    /// Sequences rejected because an `until` event came between their last event and the hit.
    pub rejected_until: u64,
    /// Sequences rejected by a missing-event check.
    pub rejected_missing: u64,
    /// Sequences dropped because another one already ended on the same ordinal (ES `TreeSet`).
    pub same_ordinal_collisions: u64,
    /// Sequences accepted as complete (before the tail cap).
    pub completed: u64,
    /// Completed sequences evicted by the tail cap (older than the kept ones).
    pub dropped_by_cap: u64,
}

/// What [`Matcher::finish`] returns.
#[derive(Debug, Clone)]
pub struct MatchOutcome<T> {
    /// The latest `max_sequences` completed sequences, ascending by their last event.
    pub sequences: Vec<CompletedSequence<T>>,
    /// Final counters; `dropped_by_cap` tells how many completed sequences were not kept.
    pub stats: MatchStats,
}

/// Input the matcher cannot process the way ES would.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MatchError {
    /// Candidates must be strictly ascending; equal ordinals mean the caller lost the implicit tiebreaker.
    #[error("candidate at {got} is not after the previous candidate at {previous}; candidates must arrive strictly ascending by (timestamp, tiebreaker, implicit)")]
    OutOfOrder {
        /// The previous candidate's ordinal.
        previous: Ordinal,
        /// The offending candidate's ordinal.
        got: Ordinal,
    },
    /// A stage index beyond the spec.
    #[error("candidate at {at} names stage {stage}, but the sequence has {stages} stages")]
    UnknownStage {
        /// The offending stage index.
        stage: usize,
        /// How many stages the spec has.
        stages: usize,
        /// The candidate's ordinal.
        at: Ordinal,
    },
    /// The same stage listed twice for one event.
    #[error("candidate at {at} lists stage {stage} more than once")]
    DuplicateStage {
        /// The repeated stage index.
        stage: usize,
        /// The candidate's ordinal.
        at: Ordinal,
    },
    /// Until keys given although the spec has no `until` clause.
    #[error("candidate at {at} carries until keys, but the sequence has no until clause")]
    UntilWithoutClause {
        /// The candidate's ordinal.
        at: Ordinal,
    },
    /// ES compares tiebreakers with `Comparable.compareTo`, which fails across types.
    #[error("candidate at {at} has a tiebreaker of a different type than earlier candidates; Elasticsearch cannot compare them")]
    MixedTieBreakerTypes {
        /// The candidate's ordinal.
        at: Ordinal,
    },
    /// A key id the matcher's [`KeyInterner`] did not give (see [`Matcher::interner`]).
    #[error("candidate at {at} carries key id {id}, which this matcher's interner did not give")]
    UnknownKeyId {
        /// The offending id.
        id: u32,
        /// The candidate's ordinal.
        at: Ordinal,
    },
    /// ES builds a `term` query per key for missing-event checks and `TermQueryBuilder` rejects
    /// a null value ("value cannot be null"), so the whole ES search fails.
    #[error("sequence ending at {at} has a null (optional) join key and needs a missing-event check; Elasticsearch fails such a search")]
    NullKeyInMissingEventCheck {
        /// The ordinal of the sequence's last event.
        at: Ordinal,
    },
}

/// An in-flight sequence.
#[derive(Debug, Clone)]
struct InFlight<T> {
    /// Timestamp of the first positive event; maxspan is measured from it.
    start_ns: i64,
    /// Ordinal of the latest matched event.
    last: Ordinal,
    /// Timestamp per stage (meaningful for matched positive stages only).
    timestamps: Vec<i64>,
    /// Payload per stage.
    events: Vec<Option<T>>,
}

/// Everything pending for one key.
#[derive(Debug)]
struct KeyState<T> {
    /// `groups[s]`: sequences whose latest matched stage is `s`, ascending by last (and first) event.
    groups: Vec<VecDeque<InFlight<T>>>,
    /// Number of sequences across `groups`.
    pending: usize,
    /// The latest `until` event for this key.
    until: Option<Ordinal>,
}

/// A completed sequence whose trailing missing-event check is not decided yet.
#[derive(Debug)]
struct Awaiting<T> {
    key: SharedKey,
    sequence: InFlight<T>,
    /// ES's `biggerThanMaxSpan(base, firstTrailing)` decides: the last leading evidence if the
    /// sequence also has leading missing stages, else the first event.
    base_ns: i64,
}

/// Timestamps of events that matched leading/middle missing-event stages, per key and stage.
#[derive(Debug, Default)]
struct EvidenceLog {
    by_key: KeyMap<Vec<VecDeque<i64>>>,
    /// Every kept timestamp in arrival (= ascending) order, for expiry.
    arrival: VecDeque<(i64, usize, SharedKey)>,
}

impl EvidenceLog {
    fn record(&mut self, stages: usize, stage: usize, key: SharedKey, timestamp_ns: i64) {
        let per_stage = self
            .by_key
            .entry(key.clone())
            .or_insert_with(|| vec![VecDeque::new(); stages]);
        per_stage[stage].push_back(timestamp_ns);
        self.arrival.push_back((timestamp_ns, stage, key));
    }

    /// Drops evidence older than `horizon_ns`; per (key, stage) the oldest is at the front.
    fn expire_before(&mut self, horizon_ns: i64) {
        while self
            .arrival
            .front()
            .is_some_and(|(ts, _, _)| *ts < horizon_ns)
        {
            let Some((_, stage, key)) = self.arrival.pop_front() else {
                break;
            };
            if let Some(per_stage) = self.by_key.get_mut(&key) {
                per_stage[stage].pop_front();
                if per_stage.iter().all(VecDeque::is_empty) {
                    self.by_key.remove(&key);
                }
            }
        }
    }

    fn timestamps(&self, stage: usize, key: &KeyTuple) -> Option<&VecDeque<i64>> {
        self.by_key.get(key).map(|per_stage| &per_stage[stage])
    }

    fn len(&self) -> usize {
        self.arrival.len()
    }
}

/// The streaming matcher for one sequence query over one sorted stream of candidates.
#[derive(Debug)]
pub struct Matcher<T> {
    layout: Layout,
    cap: usize,
    keys: KeyMap<KeyState<T>>,
    /// Ids of the key values; the maps above hold ids only.
    interner: KeyInterner,
    /// Interner size that triggers the next compaction.
    next_compaction: usize,
    /// Scratch for [`Matcher::push`]'s conversion and for tuple expansion, reused.
    scratch_keys: CandidateKeys,
    scratch_tuples: Vec<KeyTuple>,
    scratch_order: Vec<(usize, usize)>,
    /// (first-event timestamp, key) per pending sequence, ascending, for maxspan expiry.
    expiry: VecDeque<(i64, SharedKey)>,
    evidence: EvidenceLog,
    awaiting: BTreeMap<u64, Awaiting<T>>,
    awaiting_by_key: KeyMap<Vec<u64>>,
    awaiting_due: BinaryHeap<Reverse<(i64, u64)>>,
    next_awaiting_id: u64,
    /// Kept completed sequences by last ordinal: ES's `TreeSet<Sequence>`, bounded by the cap.
    completed: BTreeMap<Ordinal, CompletedSequence<T>>,
    /// The last ordinal a sequence completed on (first come keeps it, as `TreeSet.add`).
    last_claimed: Option<Ordinal>,
    last_ordinal: Option<Ordinal>,
    tiebreaker_kind: Option<u8>,
    stats: MatchStats,
}

/// ES's `exceedsMaxSpan`: `to - from > maxspan`, so a span of exactly maxspan still matches.
fn exceeds_maxspan(maxspan_ns: Option<i64>, from_ns: i64, to_ns: i64) -> bool {
    maxspan_ns.is_some_and(|maxspan| i128::from(to_ns) - i128::from(from_ns) > i128::from(maxspan))
}

/// `map` with every key's ids mapped through `remap`.
fn remap_map<V>(map: KeyMap<V>, remap: &[Option<u32>]) -> KeyMap<V> {
    map.into_iter()
        .map(|(key, v)| (key.remapped(remap), v))
        .collect()
}

/// What happened when a later-stage hit looked for a pending sequence.
enum Advance<T> {
    Nothing,
    Complete(InFlight<T>),
}

impl<T: Clone> Matcher<T> {
    /// A matcher for `spec` keeping the latest `max_sequences` completed sequences (ES tail `size`).
    pub fn new(spec: SequenceSpec, max_sequences: usize) -> Result<Self, SpecError> {
        if max_sequences == 0 {
            return Err(SpecError::ZeroCap);
        }
        Ok(Matcher {
            layout: Layout::new(&spec)?,
            cap: max_sequences,
            keys: KeyMap::default(),
            interner: KeyInterner::new(),
            next_compaction: MIN_COMPACTION,
            scratch_keys: CandidateKeys::default(),
            scratch_tuples: Vec::new(),
            scratch_order: Vec::new(),
            expiry: VecDeque::new(),
            evidence: EvidenceLog::default(),
            awaiting: BTreeMap::new(),
            awaiting_by_key: KeyMap::default(),
            awaiting_due: BinaryHeap::new(),
            next_awaiting_id: 0,
            completed: BTreeMap::new(),
            last_claimed: None,
            last_ordinal: None,
            tiebreaker_kind: None,
            stats: MatchStats::default(),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> &MatchStats {
        &self.stats
    }

    /// Feeds the next candidate. On `Err` the stream cannot be matched as ES would; the matcher
    /// should be dropped (input errors are detected before any state changes, except
    /// [`MatchError::NullKeyInMissingEventCheck`], which ES also raises mid-search).
    pub fn push(&mut self, candidate: Candidate<T>) -> Result<(), MatchError> {
        let mut keys = std::mem::take(&mut self.scratch_keys);
        keys.clear();
        for membership in &candidate.stages {
            Self::intern_fields(
                &mut self.interner,
                &mut keys,
                KeyTarget::Stage(membership.stage),
                &membership.key_fields,
            );
        }
        if let Some(fields) = &candidate.until {
            Self::intern_fields(&mut self.interner, &mut keys, KeyTarget::Until, fields);
        }
        let result = self.push_keys(candidate.ordinal, candidate.payload, &keys);
        self.scratch_keys = keys;
        result
    }

    fn intern_fields(
        interner: &mut KeyInterner,
        keys: &mut CandidateKeys,
        target: KeyTarget,
        fields: &KeyFields,
    ) {
        keys.begin(target);
        for values in fields {
            for value in values {
                // Values are kept as given (a repeated value is expanded twice, as ES would).
                keys.push_value_unchecked(interner.id(value));
            }
            keys.end_field();
        }
        keys.commit();
    }

    /// The interner whose ids [`Matcher::push_keys`] takes.
    pub fn interner(&mut self) -> &mut KeyInterner {
        &mut self.interner
    }

    /// [`Matcher::push`] with the event's key values as ids from [`Matcher::interner`]:
    /// the same matching without allocating per event. `keys` lists every stage the event
    /// is a hit of (in any order) and its `until` keys, if it is an `until` hit.
    pub fn push_keys(
        &mut self,
        ordinal: Ordinal,
        payload: T,
        keys: &CandidateKeys,
    ) -> Result<(), MatchError> {
        self.check_input(&ordinal, keys)?;
        let now_ns = ordinal.timestamp_ns;
        self.advance_clock(now_ns);
        self.stats.candidates += 1;

        // ES runs one query per stage and matches stage 0's hits before stage 1's, and so on.
        let mut order = std::mem::take(&mut self.scratch_order);
        order.clear();
        order.extend(
            keys.entries()
                .enumerate()
                .filter_map(|(i, (target, _))| match target {
                    KeyTarget::Stage(stage) => Some((stage, i)),
                    KeyTarget::Until => None,
                }),
        );
        if order.windows(2).any(|w| w[0].0 > w[1].0) {
            order.sort_by_key(|&(stage, _)| stage);
        }
        let mut tuples = std::mem::take(&mut self.scratch_tuples);
        let mut result = Ok(());
        for &(stage, i) in &order {
            let fields = keys.entry_fields(i);
            tuples.clear();
            fields.expand_into(&mut tuples);
            for key in tuples.drain(..) {
                let step = match self.layout.roles[stage] {
                    StageRole::Positive if stage == self.layout.first_positive => {
                        self.start_sequence(key, &ordinal, &payload)
                    }
                    StageRole::Positive => self.advance_sequence(stage, key, &ordinal, &payload),
                    StageRole::LeadingMissing | StageRole::MiddleMissing { .. } => {
                        let stages = self.layout.stage_count();
                        self.evidence.record(stages, stage, key, now_ns);
                        Ok(())
                    }
                    StageRole::TrailingMissing => {
                        self.trailing_evidence(&key, now_ns);
                        Ok(())
                    }
                };
                if let Err(e) = step {
                    result = Err(e);
                    break;
                }
            }
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            for (target, fields) in keys.entries() {
                if target != KeyTarget::Until {
                    continue;
                }
                tuples.clear();
                fields.expand_into(&mut tuples);
                for key in tuples.drain(..) {
                    // KeyToSequences.until ignores keys without in-flight state; a key without
                    // pending sequences here can only get sequences that start after this marker.
                    if let Some(state) = self.keys.get_mut(&key) {
                        if state.until.is_none() {
                            self.stats.until_markers_now += 1;
                        }
                        state.until = Some(ordinal.clone());
                    }
                }
            }
        }
        tuples.clear();
        self.scratch_tuples = tuples;
        self.scratch_order = order;
        result?;

        self.last_ordinal = Some(ordinal);
        self.refresh_gauges();
        if self.interner.len() >= self.next_compaction {
            self.compact_interner();
        }
        Ok(())
    }

    /// Ends the stream: settles pending missing-event checks and returns the kept sequences.
    pub fn finish(mut self) -> MatchOutcome<T> {
        // No trailing missing event can follow the end of the stream.
        let due: Vec<u64> = self.awaiting.keys().copied().collect();
        for id in due {
            if let Some(awaiting) = self.awaiting.remove(&id) {
                self.accept(&awaiting.key, awaiting.sequence);
            }
        }
        self.awaiting_by_key.clear();
        self.awaiting_due.clear();
        self.refresh_gauges();
        MatchOutcome {
            sequences: self.completed.into_values().collect(),
            stats: self.stats,
        }
    }

    fn check_input(&mut self, at: &Ordinal, keys: &CandidateKeys) -> Result<(), MatchError> {
        if let Some(previous) = &self.last_ordinal {
            if at <= previous {
                return Err(MatchError::OutOfOrder {
                    previous: previous.clone(),
                    got: at.clone(),
                });
            }
        }
        let tiebreaker_kind = at.tiebreaker.as_ref().map(|t| t.kind());
        if let (Some(seen), Some(kind)) = (self.tiebreaker_kind, tiebreaker_kind) {
            if seen != kind {
                return Err(MatchError::MixedTieBreakerTypes { at: at.clone() });
            }
        }
        let stages = self.layout.stage_count();
        // One bit per stage seen; sequences longer than 128 stages fall back to a list.
        let mut seen_bits: u128 = 0;
        let mut seen_list: Vec<usize> = Vec::new();
        let mut has_until = false;
        for (target, fields) in keys.entries() {
            let stage = match target {
                KeyTarget::Stage(stage) => stage,
                KeyTarget::Until => {
                    has_until = true;
                    continue;
                }
            };
            if stage >= stages {
                return Err(MatchError::UnknownStage {
                    stage,
                    stages,
                    at: at.clone(),
                });
            }
            let repeated = if stage < 128 {
                let bit = 1u128 << stage;
                let repeated = seen_bits & bit != 0;
                seen_bits |= bit;
                repeated
            } else if seen_list.contains(&stage) {
                true
            } else {
                seen_list.push(stage);
                false
            };
            if repeated {
                return Err(MatchError::DuplicateStage {
                    stage,
                    at: at.clone(),
                });
            }
            // A later positive stage may carry `UNSEEN_KEY` (`KeyInterner::find_str`): it can
            // only join sequences, never start one or be kept as evidence.
            let unseen_allowed = matches!(self.layout.roles[stage], StageRole::Positive)
                && stage != self.layout.first_positive;
            self.check_ids(at, fields, unseen_allowed)?;
        }
        if has_until {
            if !self.layout.has_until {
                return Err(MatchError::UntilWithoutClause { at: at.clone() });
            }
            for (target, fields) in keys.entries() {
                if target == KeyTarget::Until {
                    self.check_ids(at, fields, false)?;
                }
            }
        }
        if tiebreaker_kind.is_some() {
            self.tiebreaker_kind = tiebreaker_kind;
        }
        Ok(())
    }

    fn check_ids(
        &self,
        at: &Ordinal,
        fields: EntryFields<'_>,
        unseen_allowed: bool,
    ) -> Result<(), MatchError> {
        let known = self.interner.len();
        let unknown = |id: KeyId| id as usize >= known && !(unseen_allowed && id == UNSEEN_KEY);
        for i in 0..fields.len() {
            if let Some(&id) = fields.field(i).iter().find(|&&id| unknown(id)) {
                return Err(MatchError::UnknownKeyId { id, at: at.clone() });
            }
        }
        Ok(())
    }

    /// ES's `biggerThanMaxSpan`: an absent side counts as "bigger".
    fn bigger_than_maxspan(&self, from_ns: Option<i64>, to_ns: Option<i64>) -> bool {
        match (from_ns, to_ns) {
            (Some(from), Some(to)) => exceeds_maxspan(self.layout.maxspan_ns, from, to),
            _ => true,
        }
    }

    /// Drops state no candidate at or after `now_ns` can use, and settles trailing checks that
    /// no future event can reject.
    fn advance_clock(&mut self, now_ns: i64) {
        let Some(maxspan) = self.layout.maxspan_ns else {
            return;
        };
        // Anything that started before the horizon is more than maxspan before every future hit.
        let horizon_ns = now_ns.saturating_sub(maxspan);

        while self
            .expiry
            .front()
            .is_some_and(|(start, _)| *start < horizon_ns)
        {
            let Some((_, key)) = self.expiry.pop_front() else {
                break;
            };
            let Some(state) = self.keys.get_mut(&key) else {
                continue;
            };
            for group in &mut state.groups {
                while group.front().is_some_and(|s| s.start_ns < horizon_ns) {
                    group.pop_front();
                    state.pending -= 1;
                    self.stats.pending_now -= 1;
                    self.stats.expired += 1;
                }
            }
            if state.pending == 0 {
                self.remove_key(&key);
            }
        }

        // Leading evidence older than maxspan before a completing hit is as good as none, and
        // middle intervals lie after the sequence's first event.
        self.evidence.expire_before(horizon_ns);

        // A trailing event after base + maxspan no longer rejects (biggerThanMaxSpan).
        while let Some(Reverse((base_ns, id))) = self.awaiting_due.peek().copied() {
            if base_ns >= horizon_ns {
                break;
            }
            self.awaiting_due.pop();
            if let Some(awaiting) = self.awaiting.remove(&id) {
                self.forget_awaiting_id(&awaiting.key, id);
                self.accept(&awaiting.key, awaiting.sequence);
            }
        }
    }

    fn remove_key(&mut self, key: &KeyTuple) {
        if let Some(state) = self.keys.remove(key) {
            if state.until.is_some() {
                self.stats.until_markers_now -= 1;
            }
        }
    }

    /// A hit of the first positive stage: `SequenceMatcher.match` → `trackSequence` or, with a
    /// single positive stage, `tryComplete`.
    fn start_sequence(
        &mut self,
        key: KeyTuple,
        ordinal: &Ordinal,
        payload: &T,
    ) -> Result<(), MatchError> {
        let stages = self.layout.stage_count();
        let first = self.layout.first_positive;
        let timestamp_ns = ordinal.timestamp_ns;
        let mut sequence = InFlight {
            start_ns: timestamp_ns,
            last: ordinal.clone(),
            timestamps: vec![0; stages],
            events: vec![None; stages],
        };
        sequence.timestamps[first] = timestamp_ns;
        sequence.events[first] = Some(payload.clone());
        if first == self.layout.last_positive {
            return self.try_complete(key, sequence);
        }
        let state = self.keys.entry(key.clone()).or_insert_with(|| KeyState {
            groups: (0..stages).map(|_| VecDeque::new()).collect(),
            pending: 0,
            until: None,
        });
        state.groups[first].push_back(sequence);
        state.pending += 1;
        self.stats.pending_now += 1;
        if self.layout.maxspan_ns.is_some() {
            self.expiry.push_back((timestamp_ns, key));
        }
        Ok(())
    }

    /// A hit of a later positive stage: `SequenceMatcher.match(stage, key, ordinal, hit)`.
    fn advance_sequence(
        &mut self,
        stage: usize,
        key: KeyTuple,
        hit: &Ordinal,
        payload: &T,
    ) -> Result<(), MatchError> {
        let Some(previous) = self.layout.previous_positive[stage] else {
            return Ok(());
        };
        let maxspan_ns = self.layout.maxspan_ns;
        let exceeds = |start_ns: i64| exceeds_maxspan(maxspan_ns, start_ns, hit.timestamp_ns);
        let is_last = stage == self.layout.last_positive;

        let Some(state) = self.keys.get_mut(&key) else {
            self.stats.ignored += 1;
            return Ok(());
        };
        // OrdinalGroup.trimBefore: the latest sequence strictly before the hit, and everything
        // older, leave the group.
        let group = &mut state.groups[previous];
        let before = group.partition_point(|s| s.last < *hit);
        if before == 0 {
            self.stats.ignored += 1;
            return Ok(());
        }
        let taken = group.drain(..before).next_back();
        state.pending -= before;
        self.stats.pending_now -= before;
        self.stats.discarded_by_trim += (before - 1) as u64;

        let outcome = match taken {
            None => Advance::Nothing,
            // Checked after the removal: a too-late hit still consumes the sequence.
            Some(sequence) if exceeds(sequence.start_ns) => {
                self.stats.rejected_maxspan += 1;
                Advance::Nothing
            }
            // Ordinal.between(last, hit) on the nearest until before the hit, both ends inclusive.
            Some(sequence) if state.until.as_ref().is_some_and(|u| *u >= sequence.last) => {
                self.stats.rejected_until += 1;
                Advance::Nothing
            }
            Some(mut sequence) => {
                sequence.last = hit.clone();
                sequence.timestamps[stage] = hit.timestamp_ns;
                sequence.events[stage] = Some(payload.clone());
                if is_last {
                    Advance::Complete(sequence)
                } else {
                    state.groups[stage].push_back(sequence);
                    state.pending += 1;
                    self.stats.pending_now += 1;
                    Advance::Nothing
                }
            }
        };
        if state.pending == 0 {
            self.remove_key(&key);
        }
        match outcome {
            Advance::Nothing => Ok(()),
            Advance::Complete(sequence) => self.try_complete(key, sequence),
        }
    }

    /// `SequenceMatcher.tryComplete` plus, for sequences with missing-event stages,
    /// `TumblingWindow.checkMissingEvents`.
    fn try_complete(&mut self, key: KeyTuple, sequence: InFlight<T>) -> Result<(), MatchError> {
        // `completed` (and `toCheckForMissing`) are TreeSets ordered by the last ordinal: a second
        // sequence ending on the same event compares equal and is not added.
        if self.last_claimed.as_ref() == Some(&sequence.last) {
            self.stats.same_ordinal_collisions += 1;
            return Ok(());
        }
        self.last_claimed = Some(sequence.last.clone());
        if !self.layout.has_missing {
            self.accept(&key, sequence);
            return Ok(());
        }
        if key.ids().contains(&NULL_KEY) {
            return Err(MatchError::NullKeyInMissingEventCheck { at: sequence.last });
        }

        // Middle stages: any event strictly between the neighbours, on whole milliseconds
        // (`range.gt(prev ms).lt(next ms)`), discards the sequence.
        for (stage, role) in self.layout.roles.iter().enumerate() {
            if let StageRole::MiddleMissing { previous, next } = *role {
                let low_ms = floor_millis(sequence.timestamps[previous]);
                let high_ms = floor_millis(sequence.timestamps[next]);
                let found = self.evidence.timestamps(stage, &key).is_some_and(|times| {
                    times
                        .iter()
                        .any(|&ts| low_ms < floor_millis(ts) && floor_millis(ts) < high_ms)
                });
                if found {
                    self.stats.rejected_missing += 1;
                    return Ok(());
                }
            }
        }

        // Leading stages: the latest event before the first event's millisecond (`range.lt`).
        let start_ms = floor_millis(sequence.start_ns);
        let mut last_leading: Option<i64> = None;
        for (stage, role) in self.layout.roles.iter().enumerate() {
            if *role == StageRole::LeadingMissing {
                let latest = self.evidence.timestamps(stage, &key).and_then(|times| {
                    times
                        .iter()
                        .rev()
                        .copied()
                        .find(|&ts| floor_millis(ts) < start_ms)
                });
                last_leading = last_leading.max(latest);
            }
        }

        let leading = self.layout.leading_missing;
        if !self.layout.trailing_missing {
            // doCheckMissingEvents with firstTrailing == null.
            let complete = !leading
                || last_leading.is_none()
                || self.bigger_than_maxspan(last_leading, Some(sequence.last.timestamp_ns));
            if complete {
                self.accept(&key, sequence);
            } else {
                self.stats.rejected_missing += 1;
            }
            return Ok(());
        }
        let base_ns = match (leading, last_leading) {
            // "lastLeading == null && isMissingEvent(0)" completes whatever trails.
            (true, None) => {
                self.accept(&key, sequence);
                return Ok(());
            }
            (true, Some(last_leading)) => last_leading,
            (false, _) => sequence.start_ns,
        };
        let id = self.next_awaiting_id;
        self.next_awaiting_id += 1;
        self.awaiting_by_key
            .entry(key.clone())
            .or_default()
            .push(id);
        self.awaiting_due.push(Reverse((base_ns, id)));
        self.awaiting.insert(
            id,
            Awaiting {
                key,
                sequence,
                base_ns,
            },
        );
        Ok(())
    }

    /// An event of a trailing missing-event stage: for every waiting sequence of the key that
    /// ended in an earlier millisecond (`range.gt(last ms)`), this is the first trailing event.
    fn trailing_evidence(&mut self, key: &KeyTuple, timestamp_ns: i64) {
        let Some(ids) = self.awaiting_by_key.get_mut(key) else {
            return;
        };
        let event_ms = floor_millis(timestamp_ns);
        let awaiting = &self.awaiting;
        let mut settled = Vec::new();
        ids.retain(|id| match awaiting.get(id) {
            None => false,
            Some(a) if floor_millis(a.sequence.last.timestamp_ns) < event_ms => {
                settled.push(*id);
                false
            }
            Some(_) => true,
        });
        if ids.is_empty() {
            self.awaiting_by_key.remove(key);
        }
        for id in settled {
            let Some(a) = self.awaiting.remove(&id) else {
                continue;
            };
            if self.bigger_than_maxspan(Some(a.base_ns), Some(timestamp_ns)) {
                self.accept(&a.key, a.sequence);
            } else {
                self.stats.rejected_missing += 1;
            }
        }
    }

    fn forget_awaiting_id(&mut self, key: &KeyTuple, id: u64) {
        if let Some(ids) = self.awaiting_by_key.get_mut(key) {
            ids.retain(|other| *other != id);
            if ids.is_empty() {
                self.awaiting_by_key.remove(key);
            }
        }
    }

    /// Adds a sequence to the kept set, evicting the oldest beyond the cap (ES tail `Limit.view`).
    fn accept(&mut self, key: &KeyTuple, sequence: InFlight<T>) {
        self.stats.completed += 1;
        let join_keys = key
            .ids()
            .iter()
            .map(|&id| self.interner.value(id).cloned().unwrap_or(KeyValue::Null))
            .collect();
        let completed = CompletedSequence {
            join_keys,
            ordinal: sequence.last.clone(),
            events: sequence.events,
        };
        self.completed.insert(sequence.last, completed);
        if self.completed.len() > self.cap {
            self.completed.pop_first();
            self.stats.dropped_by_cap += 1;
        }
    }

    /// Forgets key values no state refers to any more, so the interner stays as bounded as
    /// the pending state (maxspan expiry drops keys; their values would otherwise stay).
    fn compact_interner(&mut self) {
        let mut keep = vec![false; self.interner.len()];
        let mut mark = |key: &KeyTuple| {
            for &id in key.ids() {
                if let Some(k) = keep.get_mut(id as usize) {
                    *k = true;
                }
            }
        };
        self.keys.keys().for_each(&mut mark);
        self.expiry.iter().for_each(|(_, key)| mark(key));
        self.evidence.by_key.keys().for_each(&mut mark);
        self.evidence
            .arrival
            .iter()
            .for_each(|(_, _, key)| mark(key));
        self.awaiting.values().for_each(|a| mark(&a.key));
        self.awaiting_by_key.keys().for_each(&mut mark);
        let (fresh, remap) = self.interner.compacted(&keep);
        self.keys = remap_map(std::mem::take(&mut self.keys), &remap);
        self.evidence.by_key = remap_map(std::mem::take(&mut self.evidence.by_key), &remap);
        self.awaiting_by_key = remap_map(std::mem::take(&mut self.awaiting_by_key), &remap);
        for (_, key) in &mut self.expiry {
            *key = key.remapped(&remap);
        }
        for (_, _, key) in &mut self.evidence.arrival {
            *key = key.remapped(&remap);
        }
        for awaiting in self.awaiting.values_mut() {
            awaiting.key = awaiting.key.remapped(&remap);
        }
        self.interner = fresh;
        self.next_compaction = (self.interner.len() * 2).max(MIN_COMPACTION);
    }

    fn refresh_gauges(&mut self) {
        let stats = &mut self.stats;
        stats.awaiting_missing_check_now = self.awaiting.len();
        stats.evidence_now = self.evidence.len();
        stats.peak_pending = stats.peak_pending.max(stats.pending_now);
        stats.peak_awaiting_missing_check = stats
            .peak_awaiting_missing_check
            .max(stats.awaiting_missing_check_now);
        stats.peak_evidence = stats.peak_evidence.max(stats.evidence_now);
    }
}

#[cfg(test)]
mod compaction_tests {
    use super::*;
    use crate::correlate::StageSpec;

    /// A stream over rotating keys with every kind of keyed state (pending sequences, until
    /// markers, leading/middle evidence, sequences awaiting a trailing check); returns the
    /// outcome and how many values the interner held at the end.
    fn run(spec: &SequenceSpec, compact_every: Option<usize>) -> (MatchOutcome<u64>, usize) {
        let mut matcher = Matcher::new(spec.clone(), 50).expect("valid spec");
        if let Some(every) = compact_every {
            matcher.next_compaction = every;
        }
        const MS: i64 = 1_000_000;
        for i in 0..4_000u64 {
            let key = |shift: u64| {
                vec![
                    vec![KeyValue::str(&format!("h{}", (i / 30 + shift) % 3))],
                    vec![KeyValue::str(&format!("e{}", i / 10 + shift))],
                ]
            };
            let stages = (0..spec.stages.len())
                .filter(|s| (i + *s as u64 * 3) % 4 == 0 || (i * 7 + *s as u64) % 5 == 1)
                .map(|stage| StageMatch {
                    stage,
                    key_fields: key(0),
                })
                .collect();
            let until = (spec.has_until && i % 11 == 0).then(|| key(2));
            matcher
                .push(Candidate {
                    ordinal: Ordinal::new(i as i64 * 300 * MS, i),
                    payload: i,
                    stages,
                    until,
                })
                .expect("ascending stream");
            if let Some(every) = compact_every {
                // Compact far more often than the production threshold would.
                matcher.next_compaction =
                    matcher.next_compaction.min(matcher.interner.len() + every);
            }
        }
        let interned = matcher.interner.len();
        (matcher.finish(), interned)
    }

    /// Forgetting unreferenced key values and renumbering the rest changes no outcome.
    #[test]
    fn compacting_the_interner_changes_no_outcome() {
        for stages in [
            vec![false, false, false],
            vec![true, false, true, false],
            vec![false, true, false, true],
        ] {
            let spec = SequenceSpec {
                stages: stages
                    .iter()
                    .map(|&missing| StageSpec { missing })
                    .collect(),
                maxspan_ns: Some(5_000_000_000),
                has_until: true,
            };
            let (plain, plain_interned) = run(&spec, None);
            let (compacted, compacted_interned) = run(&spec, Some(8));
            assert!(
                plain.stats.completed + plain.stats.rejected_missing > 0,
                "{stages:?}: {:?}",
                plain.stats
            );
            assert!(
                compacted_interned < plain_interned / 10,
                "{stages:?}: no compaction ({compacted_interned} of {plain_interned} values kept)"
            );
            assert_eq!(plain.sequences, compacted.sequences, "{stages:?}");
            assert_eq!(plain.stats, compacted.stats, "{stages:?}");
        }
    }
}

#[cfg(test)]
mod unseen_key_tests {
    use super::*;
    use crate::correlate::StageSpec;

    fn spec(missing: &[bool]) -> SequenceSpec {
        SequenceSpec {
            stages: missing
                .iter()
                .map(|&missing| StageSpec { missing })
                .collect(),
            maxspan_ns: Some(10_000_000_000),
            has_until: false,
        }
    }

    fn keys(interner: &mut KeyInterner, stage: usize, host: &str, entity: KeyId) -> CandidateKeys {
        let mut keys = CandidateKeys::default();
        keys.begin(KeyTarget::Stage(stage));
        keys.push_value(interner.str_id(host));
        keys.end_field();
        keys.push_value(entity);
        keys.end_field();
        keys.commit();
        keys
    }

    /// A later stage's key value never seen (`KeyInterner::find_str`) joins nothing and is
    /// kept nowhere, exactly as the interned value would: the detections and counts match.
    #[test]
    fn an_unseen_later_stage_key_joins_nothing_like_an_interned_one() {
        let run = |lookup_only: bool| {
            let mut matcher = Matcher::<u64>::new(spec(&[false, false]), 10).expect("valid");
            let mut at = 0i64;
            let mut push = |matcher: &mut Matcher<u64>, stage: usize, entity: &str| {
                at += 1_000_000;
                let interner = matcher.interner();
                let id = if lookup_only && stage > 0 {
                    interner.find_str(entity)
                } else {
                    interner.str_id(entity)
                };
                let keys = keys(interner, stage, "h", id);
                matcher
                    .push_keys(Ordinal::new(at, at as u64), at as u64, &keys)
                    .expect("accepted");
            };
            push(&mut matcher, 0, "npm");
            push(&mut matcher, 1, "never-started");
            push(&mut matcher, 1, "npm");
            push(&mut matcher, 1, "another-stranger");
            let interned = matcher.interner.len();
            (matcher.finish(), interned)
        };
        let (interned_all, grown) = run(false);
        let (looked_up, kept) = run(true);
        assert_eq!(looked_up.sequences, interned_all.sequences);
        assert_eq!(looked_up.stats, interned_all.stats);
        assert_eq!(looked_up.stats.completed, 1);
        assert_eq!(looked_up.stats.ignored, 2);
        assert_eq!(grown - kept, 2, "the two strangers were not interned");
    }

    /// Only a later positive stage may carry it: stage 0 and missing-event stages keep state
    /// for the key, which needs a real id.
    #[test]
    fn an_unseen_key_is_refused_where_state_would_be_kept() {
        for (missing, stage) in [(vec![false, false], 0), (vec![false, true, false], 1)] {
            let mut matcher = Matcher::<u64>::new(spec(&missing), 10).expect("valid");
            let keys = keys(matcher.interner(), stage, "h", UNSEEN_KEY);
            let pushed = matcher.push_keys(Ordinal::new(1, 1), 1, &keys);
            assert!(
                matches!(pushed, Err(MatchError::UnknownKeyId { id: UNSEEN_KEY, .. })),
                "{missing:?} stage {stage}: {pushed:?}"
            );
        }
    }
}
