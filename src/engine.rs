//! The detection engine: a [`Rule`] compiled for evaluation, and a [`Correlator`] that turns a
//! stream of hits into detections. Pure; `replay` and the detection job share it, so an
//! offline replay and a run against a cluster decide alike.
//!
//! Per hit: read the timestamp (the ordinal), evaluate each stage's filter (and `until`'s),
//! extract the join keys of the stages it matches, and push it into the sequence
//! [`Matcher`]. A hit the engine cannot read (no timestamp, a key or a value of a shape ES
//! would refuse) is counted and skipped with its id, never a failure of the run.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::correlate::{
    CandidateKeys, KeyInterner, KeyTarget, KeyValue, MatchError, MatchStats, Matcher, Ordinal,
    SequenceSpec, SpecError, StageSpec, TieBreaker, NULL_KEY,
};
use crate::eql::ast;
use crate::eql::eval::{CompileError, CompiledFilter, EvalOptions};
use crate::eql::functions::EvalError;
use crate::eql::pushdown;
use crate::eql::value::{indexed_scalar, FieldType, FieldTypes, Val};
use crate::event::{
    decode_flat, document_timestamp, replace_lone_surrogates, Document, FieldPlan, FlatDecode,
    FlatEvent, SourceError, TimestampError,
};
use crate::rule::Rule;

/// A search hit: where the document lives and its `_source`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Concrete index the document was read from.
    pub index: Arc<str>,
    /// Document id.
    pub id: Arc<str>,
    /// The document (possibly filtered to the fields the rule needs).
    pub source: Value,
}

/// What a detection keeps of each event: enough to name it and to order it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRef {
    /// Concrete index.
    pub index: Arc<str>,
    /// Document id.
    pub id: Arc<str>,
    /// The event time used for ordering, epoch nanoseconds.
    pub timestamp_ns: i64,
}

/// A sequence (or, for an event query, a single event) the rule detected.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The join-key tuple of a sequence; empty for an event query.
    pub join_keys: Vec<KeyValue>,
    /// The events in stage order; `None` stands for a missing-event stage.
    pub events: Vec<Option<EventRef>>,
}

impl Detection {
    /// The events that exist (missing-event placeholders left out), in stage order.
    pub fn present_events(&self) -> impl Iterator<Item = &EventRef> {
        self.events.iter().flatten()
    }

    /// Time of the first and last present events, epoch nanoseconds.
    pub fn span_ns(&self) -> (i64, i64) {
        let mut it = self.present_events().map(|e| e.timestamp_ns);
        let first = it.next().unwrap_or(0);
        let last = it.last().unwrap_or(first);
        (first, last)
    }
}

/// Why a rule cannot be run by the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The evaluator refused a filter (normally caught at rule load).
    #[error("rule {rule:?}: {error}")]
    Compile {
        /// Rule name.
        rule: String,
        /// The refusal.
        error: CompileError,
    },
    /// The sequence has a shape the matcher (like ES) refuses.
    #[error("rule {rule:?}: {error}")]
    Spec {
        /// Rule name.
        rule: String,
        /// The refusal.
        error: SpecError,
    },
}

/// Why the engine cannot use a hit (see the module comment): the hit is counted and skipped
/// as a bad event, never a failure of the run, and the message is the reason its
/// [`BadEvent`] keeps.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The `_source` itself cannot be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The `_source` is JSON but not an object.
    #[error("_source is not a JSON object")]
    NotAnObject,
    /// The timestamp is missing, multi-valued or not a date.
    #[error(transparent)]
    Timestamp(#[from] TimestampError),
    /// The tiebreaker field holds more than one value.
    #[error("tiebreaker field {field} has several values")]
    TiebreakerMultiValued {
        /// The tiebreaker field.
        field: String,
    },
    /// The tiebreaker field holds a value that cannot order events (a boolean).
    #[error("tiebreaker field {field} holds a value that cannot order events")]
    TiebreakerUnordered {
        /// The tiebreaker field.
        field: String,
    },
    /// A join key holds an object (see [`crate::event::has_object_value`]).
    #[error("join key {field} holds an object; a key must be a value")]
    ObjectKey {
        /// The key field.
        field: String,
    },
    /// A filter failed where Elasticsearch's script fails the search (overflow, …).
    #[error(transparent)]
    Eval(#[from] EvalError),
}

/// A hit the engine skipped, with the reason. Displays the document it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{index}/{id}: {reason}")]
pub struct BadEvent {
    /// Index of the document.
    pub index: String,
    /// Id of the document.
    pub id: String,
    /// What is wrong with it: an [`EventError`]'s message, as run documents keep it.
    pub reason: String,
}

/// A stream the engine cannot correlate (the caller's ordering broke).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct CorrelateError(#[from] MatchError);

impl CorrelateError {
    /// The matcher's refusal.
    pub fn match_error(&self) -> &MatchError {
        &self.0
    }
}

/// How a rule's fields are typed and ordered.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Mapping types of the source indices (from the templates or `_field_caps`).
    pub field_types: FieldTypes,
    /// Keep nanosecond timestamps (a `date_nanos` timestamp field). Otherwise timestamps are
    /// truncated to milliseconds, as Elasticsearch stores a `date`, so ties fall to the
    /// implicit tiebreaker exactly as they do in ES.
    pub timestamp_nanos: bool,
}

/// ECS keyword fields of process events, as Elastic Defend's `logs-endpoint.events.process-*`
/// maps them (`keyword`, `ignore_above: 1024`, from the package's `fields.yml`); the CrowdStrike
/// FDR package declares the same names as `external: ecs`, which gives the same ECS type.
const ECS_PROCESS_KEYWORDS: &[&str] = &[
    "agent.id",
    "event.action",
    "event.category",
    "event.code",
    "event.dataset",
    "event.id",
    "event.kind",
    "event.module",
    "event.outcome",
    "event.provider",
    "event.type",
    "host.hostname",
    "host.id",
    "host.name",
    "host.os.family",
    "host.os.full",
    "host.os.kernel",
    "host.os.name",
    "host.os.platform",
    "host.os.type",
    "host.os.version",
    "process.args",
    "process.entity_id",
    "process.executable",
    "process.name",
    "process.parent.args",
    "process.parent.entity_id",
    "process.parent.executable",
    "process.parent.name",
    "process.working_directory",
    "user.id",
    "user.name",
];

/// ECS `long` fields of process events (same sources as [`ECS_PROCESS_KEYWORDS`]).
const ECS_PROCESS_LONGS: &[&str] = &[
    "event.sequence",
    "event.severity",
    "process.args_count",
    "process.parent.args_count",
    "process.parent.pid",
    "process.pid",
];

/// ECS's `ignore_above` for keyword fields.
const ECS_KEYWORD_IGNORE_ABOVE: u32 = 1024;

impl EngineOptions {
    /// The typing Elastic's ECS process data streams give the fields process rules use, for
    /// correlating exported hits without a cluster to ask for the mapping.
    ///
    /// Typing decides what ES sees: a `host.id` of `4242` in one `_source` and `"4242"` in
    /// another are the same keyword term, so they join, and ES returns the key as the string
    /// `"4242"` (the keyword value fetcher's `value.toString()`). Typed from JSON alone they
    /// would be a long and a string and would not join. Fields not listed stay typed from
    /// their JSON values.
    pub fn ecs_process() -> Self {
        let mut field_types = FieldTypes::new();
        for field in ECS_PROCESS_KEYWORDS {
            field_types.insert(
                *field,
                FieldType::Keyword {
                    ignore_above: Some(ECS_KEYWORD_IGNORE_ABOVE),
                },
            );
        }
        for field in ECS_PROCESS_LONGS {
            field_types.insert(*field, FieldType::Long);
        }
        EngineOptions {
            field_types,
            timestamp_nanos: false,
        }
    }
}

struct StageFilter {
    filter: CompiledFilter,
    keys: Vec<ast::KeyField>,
    /// Each key field's slot in the rule's [`FieldPlan`].
    key_slots: Vec<usize>,
    /// Each key field's mapping type, looked up once.
    key_types: Vec<Option<FieldType>>,
}

impl StageFilter {
    fn bind_slots(&mut self, plan: &mut FieldPlan) {
        self.filter.bind_slots(plan);
        self.key_slots = self.keys.iter().map(|k| plan.slot(&k.field.path)).collect();
    }
}

enum Shape {
    Event(StageFilter),
    Sequence {
        stages: Vec<StageFilter>,
        until: Option<StageFilter>,
        spec: SequenceSpec,
    },
}

/// A rule ready to evaluate hits.
pub struct CompiledRule {
    name: String,
    shape: Shape,
    opts: EngineOptions,
    eval: EvalOptions,
    timestamp_field: String,
    tiebreaker_field: Option<String>,
    /// Every field the engine reads of a hit, with the slots the filters are bound to.
    plan: FieldPlan,
    timestamp_slot: usize,
    tiebreaker_slot: usize,
    /// The sequence has a missing-event stage (`![...]`).
    has_missing_stage: bool,
}

impl CompiledRule {
    /// Compiles every filter of the rule.
    pub fn compile(rule: &Rule, opts: EngineOptions) -> Result<CompiledRule, EngineError> {
        let eval = EvalOptions {
            event_category_field: rule
                .event_category_override
                .clone()
                .unwrap_or_else(|| "event.category".into()),
            field_types: opts.field_types.clone(),
        };
        let compile = |f: &ast::EventFilter, keys: &[ast::KeyField]| {
            CompiledFilter::compile(f, &eval)
                .map(|filter| StageFilter {
                    filter,
                    keys: keys.to_vec(),
                    key_slots: Vec::new(),
                    key_types: keys
                        .iter()
                        .map(|k| opts.field_types.get(&k.field.path))
                        .collect(),
                })
                .map_err(|error| EngineError::Compile {
                    rule: rule.name.clone(),
                    error,
                })
        };
        let mut shape = match &rule.query {
            ast::Query::Event(f) => Shape::Event(compile(f, &[])?),
            ast::Query::Sequence(seq) => {
                let stages = seq
                    .stages
                    .iter()
                    .map(|s| compile(&s.filter, &s.keys))
                    .collect::<Result<Vec<_>, _>>()?;
                let until = seq
                    .until
                    .as_ref()
                    .map(|s| compile(&s.filter, &s.keys))
                    .transpose()?;
                let spec = SequenceSpec {
                    stages: seq
                        .stages
                        .iter()
                        .map(|s| StageSpec { missing: s.missing })
                        .collect(),
                    maxspan_ns: seq
                        .maxspan_ms
                        .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX / 1_000_000) * 1_000_000),
                    has_until: seq.until.is_some(),
                };
                // Validate the shape now, not at the first hit.
                Matcher::<()>::new(spec.clone(), 1).map_err(|error| EngineError::Spec {
                    rule: rule.name.clone(),
                    error,
                })?;
                Shape::Sequence {
                    stages,
                    until,
                    spec,
                }
            }
        };
        let timestamp_field = rule
            .timestamp_override
            .clone()
            .unwrap_or_else(|| "@timestamp".into());
        if let Shape::Sequence { stages, .. } = &mut shape {
            // The push-down fetches events that pass some stage, so a test every stage has is
            // nearly always true on them: each stage tests what is its own first, and an event
            // of another stage is refused sooner. No result changes (`test_first`).
            let identities: Vec<Vec<String>> = stages
                .iter()
                .map(|s| s.filter.top_leaf_identities())
                .collect();
            let shared = |id: &str| identities.iter().all(|ids| ids.iter().any(|i| i == id));
            if stages.len() > 1 {
                for stage in stages.iter_mut() {
                    stage.filter.test_first(|id| !shared(id));
                }
            }
        }
        let mut plan = FieldPlan::new();
        match &mut shape {
            Shape::Event(f) => f.bind_slots(&mut plan),
            Shape::Sequence { stages, until, .. } => {
                stages.iter_mut().for_each(|s| s.bind_slots(&mut plan));
                if let Some(u) = until {
                    u.bind_slots(&mut plan);
                }
            }
        }
        let timestamp_slot = plan.slot(&timestamp_field);
        let tiebreaker_slot = rule
            .tiebreaker_field
            .as_deref()
            .map_or(crate::event::UNBOUND_SLOT, |t| plan.slot(t));
        let has_missing_stage = matches!(
            &shape,
            Shape::Sequence { spec, .. } if spec.stages.iter().any(|s| s.missing)
        );
        Ok(CompiledRule {
            name: rule.name.clone(),
            has_missing_stage,
            shape,
            opts,
            eval,
            timestamp_field,
            tiebreaker_field: rule.tiebreaker_field.clone(),
            plan,
            timestamp_slot,
            tiebreaker_slot,
        })
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The field events are ordered and windowed by.
    pub fn timestamp_field(&self) -> &str {
        &self.timestamp_field
    }

    /// The explicit tiebreaker field, if the rule has one.
    pub fn tiebreaker_field(&self) -> Option<&str> {
        self.tiebreaker_field.as_deref()
    }

    /// Every field the engine reads of a hit: decode hits for it with
    /// [`crate::event::decode_flat`].
    pub fn plan(&self) -> &FieldPlan {
        &self.plan
    }

    /// True for a sequence rule.
    pub fn is_sequence(&self) -> bool {
        matches!(self.shape, Shape::Sequence { .. })
    }

    /// The search body parts that fetch every event the rule needs over `[from, to]` (ISO
    /// timestamps, both inclusive): the query and the `_source` includes.
    pub fn fetch_query(
        &self,
        rule: &Rule,
        from: &str,
        to: &str,
    ) -> Result<pushdown::FetchQuery, CompileError> {
        let opts = pushdown::FetchOptions {
            timestamp_field: self.timestamp_field.clone(),
            tiebreaker_field: self.tiebreaker_field.clone(),
            eval: self.eval.clone(),
        };
        match &rule.query {
            ast::Query::Sequence(seq) => pushdown::fetch_query(seq, &opts, from, to),
            ast::Query::Event(f) => {
                let compiled = CompiledFilter::compile(f, &self.eval)?;
                let pushed = pushdown::filter_query(&compiled);
                let mut includes = compiled.referenced_fields();
                includes.push(self.timestamp_field.clone());
                includes.push(self.eval.event_category_field.clone());
                includes.extend(self.tiebreaker_field.iter().cloned());
                includes.sort();
                includes.dedup();
                let range = json!({"range": {self.timestamp_field.as_str(): {
                    "gte": from, "lte": to, "format": "strict_date_optional_time"}}});
                Ok(pushdown::FetchQuery {
                    query: json!({"bool": {"filter": [range.clone(), pushed.query.clone()]}}),
                    source_includes: includes,
                    stages_exact: vec![pushed.exact],
                    time_range: range,
                    stage_queries: vec![pushed.query],
                })
            }
        }
    }

    /// The join-key values of `doc` for sequence stage `stage` (0-based), read by the same code
    /// the correlator uses (so typing, de-duplication and nulls agree): one list per key field,
    /// `Ok(None)` when a mandatory key has no indexed value (the correlator then does not
    /// count the event as a hit of that stage), `Err` when a key cannot be read. The stage's
    /// filter is not evaluated. `Ok(None)` too for an event query or an unknown stage.
    pub fn stage_key_fields<D: Document + ?Sized>(
        &self,
        doc: &D,
        stage: usize,
    ) -> Result<Option<Vec<Vec<KeyValue>>>, EventError> {
        let Shape::Sequence { stages, .. } = &self.shape else {
            return Ok(None);
        };
        let Some(filter) = stages.get(stage) else {
            return Ok(None);
        };
        let mut interner = KeyInterner::new();
        let mut keys = CandidateKeys::default();
        if !self.push_key_fields(
            doc,
            filter,
            KeyTarget::Stage(stage),
            &mut interner,
            false,
            &mut keys,
        )? {
            return Ok(None);
        }
        let Some((_, fields)) = keys.entries().next() else {
            return Ok(None);
        };
        Ok(Some(
            (0..fields.len())
                .map(|i| {
                    fields
                        .field(i)
                        .iter()
                        .map(|&id| interner.value(id).cloned().unwrap_or(KeyValue::Null))
                        .collect()
                })
                .collect(),
        ))
    }

    /// Whether `doc` matches sequence stage `stage`'s filter, as the correlator evaluates it
    /// (`false` for an event query or an unknown stage).
    pub fn matches_stage<D: Document + ?Sized>(
        &self,
        doc: &D,
        stage: usize,
    ) -> Result<bool, EvalError> {
        let Shape::Sequence { stages, .. } = &self.shape else {
            return Ok(false);
        };
        match stages.get(stage) {
            Some(s) => s.filter.try_matches(doc),
            None => Ok(false),
        }
    }

    /// The sort that gives Elasticsearch EQL's event order: timestamp, tiebreaker (missing
    /// last), then `_shard_doc` (the implicit tiebreaker of a point in time).
    pub fn sort(&self) -> Value {
        let mut sort = vec![
            json!({self.timestamp_field.as_str(): {"order": "asc", "numeric_type": "date_nanos", "format": "strict_date_optional_time_nanos"}}),
        ];
        if let Some(t) = &self.tiebreaker_field {
            sort.push(json!({t.as_str(): {"order": "asc", "missing": "_last"}}));
        }
        sort.push(json!({"_shard_doc": "asc"}));
        Value::Array(sort)
    }

    /// A correlator keeping at most `max_detections` (the latest).
    pub fn correlator(&self, max_detections: usize) -> Correlator<'_> {
        let state = match &self.shape {
            Shape::Event(_) => State::Events(VecDeque::new()),
            Shape::Sequence { spec, .. } => State::Sequence(Box::new(
                // The spec was validated at compile time; a zero cap is the only other refusal.
                Matcher::new(spec.clone(), max_detections.max(1)).expect("validated at compile"),
            )),
        };
        Correlator {
            rule: self,
            state,
            max: max_detections.max(1),
            implicit: 0,
            stats: CorrelationStats::default(),
            keys: CandidateKeys::default(),
        }
    }

    /// The fields [`CompiledRule::replay_order`] reads (timestamp, then tiebreaker) as a plan
    /// of their own, so an offline replay can decode a hit for sorting without the rule's
    /// other fields.
    pub fn replay_order_plan(&self) -> FieldPlan {
        let mut plan = FieldPlan::new();
        plan.slot(&self.timestamp_field);
        if let Some(field) = &self.tiebreaker_field {
            plan.slot(field);
        }
        plan
    }

    /// Where `doc` goes in an offline replay (see [`sort_for_replay`]): a `_source` tree, or a
    /// [`FlatEvent`] decoded for [`CompiledRule::plan`] or [`CompiledRule::replay_order_plan`]
    /// (fields are looked up by path, so either plan serves).
    pub fn replay_order<D: Document + ?Sized>(&self, doc: &D) -> ReplayOrder {
        let tiebreaker = self
            .tiebreaker_in(doc, crate::event::UNBOUND_SLOT)
            .ok()
            .flatten();
        ReplayOrder {
            timestamp_ns: self
                .timestamp_ns_in(doc, crate::event::UNBOUND_SLOT)
                .unwrap_or(i64::MIN),
            no_tiebreaker: tiebreaker.is_none(),
            tiebreaker,
        }
    }

    fn timestamp_ns<D: Document + ?Sized>(&self, doc: &D) -> Result<i64, TimestampError> {
        self.timestamp_ns_in(doc, self.timestamp_slot)
    }

    fn timestamp_ns_in<D: Document + ?Sized>(
        &self,
        doc: &D,
        slot: usize,
    ) -> Result<i64, TimestampError> {
        let ns = document_timestamp(doc, &self.timestamp_field, slot)?;
        Ok(if self.opts.timestamp_nanos {
            ns
        } else {
            ns.div_euclid(1_000_000) * 1_000_000
        })
    }

    fn tiebreaker<D: Document + ?Sized>(&self, doc: &D) -> Result<Option<TieBreaker>, EventError> {
        self.tiebreaker_in(doc, self.tiebreaker_slot)
    }

    fn tiebreaker_in<D: Document + ?Sized>(
        &self,
        doc: &D,
        slot: usize,
    ) -> Result<Option<TieBreaker>, EventError> {
        let Some(field) = &self.tiebreaker_field else {
            return Ok(None);
        };
        let mut values = doc.field(field, slot);
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(EventError::TiebreakerMultiValued {
                field: field.clone(),
            });
        }
        match indexed_scalar(first, self.opts.field_types.get(field)) {
            Some(Val::Int(i)) => Ok(Some(TieBreaker::Int(i64::from(i)))),
            Some(Val::Long(i)) | Some(Val::Date(i)) => Ok(Some(TieBreaker::Int(i))),
            Some(Val::Double(d)) => Ok(Some(TieBreaker::Float(d))),
            Some(Val::Str(s)) => Ok(Some(TieBreaker::Str(Arc::from(s.as_ref())))),
            Some(Val::Bool(_)) | Some(Val::Null) | None => Err(EventError::TiebreakerUnordered {
                field: field.clone(),
            }),
        }
    }

    /// Adds the join-key values of `doc` for `stage`'s keys to `keys` (as `target`), one
    /// field after another, and says whether it did: `false` when a mandatory key has no value
    /// (ES's `exists` filter on join keys drops such events). A key holding an object is an
    /// error: see [`crate::event::has_object_value`].
    fn push_key_fields<D: Document + ?Sized>(
        &self,
        doc: &D,
        stage: &StageFilter,
        target: KeyTarget,
        interner: &mut KeyInterner,
        known_only: bool,
        keys: &mut CandidateKeys,
    ) -> Result<bool, EventError> {
        keys.begin(target);
        for ((key, &slot), &ty) in stage
            .keys
            .iter()
            .zip(&stage.key_slots)
            .zip(&stage.key_types)
        {
            if doc.holds_object(&key.field.path) {
                keys.abandon();
                return Err(EventError::ObjectKey {
                    field: key.field.path.clone(),
                });
            }
            for v in doc.field(&key.field.path, slot) {
                let id = match indexed_scalar(v, ty) {
                    Some(Val::Str(s)) if known_only => interner.find_str(&s),
                    Some(Val::Str(s)) => interner.str_id(&s),
                    Some(Val::Int(i)) => interner.int_id(i64::from(i)),
                    Some(Val::Long(i)) | Some(Val::Date(i)) => interner.int_id(i),
                    Some(Val::Double(d)) => interner.float_id(d),
                    Some(Val::Bool(b)) => interner.bool_id(b),
                    Some(Val::Null) | None => continue,
                };
                // Keyword doc values are a set: one value once (ES reads keys from doc
                // values); `push_value` keeps the first occurrence only.
                keys.push_value(id);
            }
            if keys.field_len() == 0 {
                if !key.optional {
                    keys.abandon();
                    return Ok(false);
                }
                keys.push_value(NULL_KEY);
            }
            keys.end_field();
        }
        keys.commit();
        Ok(true)
    }
}

/// Counts of what the correlator saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorrelationStats {
    /// Hits pushed.
    pub hits: u64,
    /// Hits that matched at least one stage (or the event query, or `until`).
    pub candidates: u64,
    /// Hits skipped as unreadable.
    pub bad_events: u64,
    /// The first few of those, naming each document.
    pub bad_event_samples: Vec<BadEvent>,
    /// Detections found before the cap.
    pub detections: u64,
    /// Detections dropped by the cap (the oldest).
    pub dropped_by_cap: u64,
}

/// How many bad events are named individually in the stats.
pub const BAD_EVENT_SAMPLES: usize = 20;

/// A hit's id: already shared (a [`Hit`]), or borrowed from the page until it is needed.
enum EventId<'a> {
    Shared(&'a Arc<str>),
    Borrowed(&'a str),
}

enum State {
    Events(VecDeque<EventRef>),
    Sequence(Box<Matcher<EventRef>>),
}

/// Correlates one stream of hits, sorted the way [`CompiledRule::sort`] sorts them.
pub struct Correlator<'r> {
    rule: &'r CompiledRule,
    state: State,
    max: usize,
    implicit: u64,
    stats: CorrelationStats,
    /// The current hit's join-key ids, rebuilt hit after hit.
    keys: CandidateKeys,
}

/// What a finished correlation found.
#[derive(Debug, Clone)]
pub struct Correlation {
    /// The latest detections (at most the cap), ascending by their last event.
    pub detections: Vec<Detection>,
    /// Counters.
    pub stats: CorrelationStats,
    /// The matcher's own counters (sequence rules).
    pub matcher: Option<MatchStats>,
}

impl<'r> Correlator<'r> {
    /// Pushes the next hit. Hits must come in the rule's order; ties on timestamp (and
    /// tiebreaker) keep their arrival order, which stands in for `_shard_doc`.
    pub fn push(&mut self, hit: &Hit) -> Result<(), CorrelateError> {
        self.push_at(hit, None)
    }

    /// Counts a hit that could not even be read (its `_source` did not parse) as a bad event.
    pub fn skip(&mut self, index: &str, id: &str, reason: EventError) {
        self.stats.hits += 1;
        self.implicit += 1;
        self.record_bad(index, id, reason);
    }

    fn record_bad(&mut self, index: &str, id: &str, reason: EventError) {
        self.stats.bad_events += 1;
        if self.stats.bad_event_samples.len() < BAD_EVENT_SAMPLES {
            self.stats.bad_event_samples.push(BadEvent {
                index: index.to_owned(),
                id: id.to_owned(),
                reason: reason.to_string(),
            });
        }
    }

    /// [`Correlator::push`] with the event time Elasticsearch sorted the hit by (epoch
    /// nanoseconds, the first sort value), so the order the matcher sees is exactly the order
    /// the hits came in, whatever the `_source` spelling of the timestamp.
    pub fn push_at(&mut self, hit: &Hit, sorted_at_ns: Option<i64>) -> Result<(), CorrelateError> {
        self.push_document(
            &hit.index,
            EventId::Shared(&hit.id),
            &hit.source,
            sorted_at_ns,
        )
    }

    /// [`Correlator::push_at`] of any [`Document`] (a [`crate::event::FlatEvent`] decoded
    /// for [`CompiledRule::plan`], say). The id is copied only if the event is a candidate.
    pub fn push_event<D: Document + ?Sized>(
        &mut self,
        index: &Arc<str>,
        id: &str,
        doc: &D,
        sorted_at_ns: Option<i64>,
    ) -> Result<(), CorrelateError> {
        self.push_document(index, EventId::Borrowed(id), doc, sorted_at_ns)
    }

    /// Decodes one hit's `_source` text for the rule ([`CompiledRule::plan`]'s fields only,
    /// borrowing the text) and pushes it. A text that does not parse is one bad event, named
    /// with the parser's words, never an error of the stream. `event` is scratch space, reused
    /// from hit to hit.
    pub fn push_source<'t>(
        &mut self,
        index: &Arc<str>,
        id: &str,
        source: &'t str,
        sorted_at_ns: Option<i64>,
        event: &mut FlatEvent<'t>,
    ) -> Result<(), CorrelateError>
    where
        'r: 't,
    {
        let plan: &'r FieldPlan = &self.rule.plan;
        if plan.decodes_flat() {
            // Anything unusual (a parse error, a field spelled two ways in one object) is left
            // to the tree decode below, which decides exactly as the `Value` path always has.
            if let Ok(FlatDecode::Decoded) = decode_flat(source, plan, event) {
                return self.push_event(index, id, &*event, sorted_at_ns);
            }
        }
        match serde_json::from_str::<Value>(source) {
            Ok(tree) => self.push_event(index, id, &tree, sorted_at_ns),
            Err(e) => {
                // ES stores a lone UTF-16 surrogate escape (`"\ud800"`) that serde_json
                // refuses; Lucene indexes U+FFFD in its place, so that is the value read.
                let repaired = replace_lone_surrogates(source);
                if repaired != source {
                    if let Ok(tree) = serde_json::from_str::<Value>(&repaired) {
                        return self.push_event(index, id, &tree, sorted_at_ns);
                    }
                }
                self.skip(index, id, SourceError::Unparsable(e).into());
                Ok(())
            }
        }
    }

    fn push_document<D: Document + ?Sized>(
        &mut self,
        index: &Arc<str>,
        id: EventId<'_>,
        doc: &D,
        sorted_at_ns: Option<i64>,
    ) -> Result<(), CorrelateError> {
        self.stats.hits += 1;
        let implicit = self.implicit;
        self.implicit += 1;
        match self.candidate(doc, implicit, sorted_at_ns) {
            Ok(None) => Ok(()),
            Ok(Some(ordinal)) => {
                self.stats.candidates += 1;
                let event = EventRef {
                    index: index.clone(),
                    id: match id {
                        EventId::Shared(id) => id.clone(),
                        EventId::Borrowed(id) => Arc::from(id),
                    },
                    timestamp_ns: ordinal.timestamp_ns,
                };
                match &mut self.state {
                    State::Events(kept) => {
                        self.stats.detections += 1;
                        if kept.len() == self.max {
                            kept.pop_front();
                            self.stats.dropped_by_cap += 1;
                        }
                        kept.push_back(event);
                        Ok(())
                    }
                    State::Sequence(m) => {
                        m.push_keys(ordinal, event, &self.keys)?;
                        Ok(())
                    }
                }
            }
            Err(reason) => {
                let id = match id {
                    EventId::Shared(id) => id,
                    EventId::Borrowed(id) => id,
                };
                self.record_bad(index, id, reason);
                Ok(())
            }
        }
    }

    /// Evaluates a hit: `None` when it is no candidate. For a sequence, the stages (and
    /// `until`) it is a hit of are left in `self.keys` with their join-key ids.
    fn candidate<D: Document + ?Sized>(
        &mut self,
        doc: &D,
        implicit: u64,
        sorted_at_ns: Option<i64>,
    ) -> Result<Option<Ordinal>, EventError> {
        if !doc.is_object() {
            return Err(EventError::NotAnObject);
        }
        let rule = self.rule;
        let keys = &mut self.keys;
        keys.clear();
        let eval = |f: &CompiledFilter| f.try_matches(doc);
        match (&rule.shape, &mut self.state) {
            (Shape::Event(f), _) => {
                if !eval(&f.filter)? {
                    return Ok(None);
                }
            }
            (Shape::Sequence { stages, until, .. }, State::Sequence(matcher)) => {
                let interner = matcher.interner();
                for (i, s) in stages.iter().enumerate() {
                    if eval(&s.filter)? {
                        // A later stage can only join sequences whose keys have ids already:
                        // its strings are looked up, not interned (`KeyInterner::find_str`).
                        // Stage 0 starts sequences, and missing-event stages keep evidence for
                        // sequences that may start later: those intern.
                        let known_only = i > 0 && !rule.has_missing_stage;
                        let target = KeyTarget::Stage(i);
                        rule.push_key_fields(doc, s, target, interner, known_only, keys)?;
                    }
                }
                if let Some(u) = until {
                    if eval(&u.filter)? {
                        rule.push_key_fields(doc, u, KeyTarget::Until, interner, false, keys)?;
                    }
                }
                if keys.is_empty() {
                    return Ok(None);
                }
            }
            // `correlator` builds the state from the shape: a sequence always has a matcher.
            (Shape::Sequence { .. }, State::Events(_)) => return Ok(None),
        }
        if sorted_at_ns.is_some() {
            // ES sorted the hit by its smallest value, but ES EQL refuses a multi-valued
            // timestamp ("Arrays (returned by [@timestamp]) are not supported":
            // `unwrapMultiValue` in `ES: x-pack/plugin/ql/.../extractor/AbstractFieldHitExtractor.java`).
            let count = doc
                .field(&rule.timestamp_field, rule.timestamp_slot)
                .count();
            if count > 1 {
                return Err(TimestampError::MultiValued {
                    field: rule.timestamp_field.clone(),
                    count,
                }
                .into());
            }
        }
        let ts = match sorted_at_ns {
            Some(ns) if rule.opts.timestamp_nanos => ns,
            Some(ns) => ns.div_euclid(1_000_000) * 1_000_000,
            None => rule.timestamp_ns(doc)?,
        };
        let ordinal = match rule.tiebreaker(doc)? {
            Some(t) => Ordinal::with_tiebreaker(ts, t, implicit),
            None => Ordinal::new(ts, implicit),
        };
        Ok(Some(ordinal))
    }

    /// Ends the stream and returns the detections.
    pub fn finish(self) -> Correlation {
        let mut stats = self.stats;
        match self.state {
            State::Events(kept) => Correlation {
                detections: kept
                    .into_iter()
                    .map(|e| Detection {
                        join_keys: Vec::new(),
                        events: vec![Some(e)],
                    })
                    .collect(),
                stats,
                matcher: None,
            },
            State::Sequence(m) => {
                let outcome = m.finish();
                stats.detections = outcome.stats.completed;
                stats.dropped_by_cap = outcome.stats.dropped_by_cap;
                Correlation {
                    detections: outcome
                        .sequences
                        .into_iter()
                        .map(|s| Detection {
                            join_keys: s.join_keys,
                            events: s.events,
                        })
                        .collect(),
                    stats,
                    matcher: Some(outcome.stats),
                }
            }
        }
    }
}

/// A hit's place in an offline replay, compared field by field: timestamp (an unreadable one
/// counts as `i64::MIN`, so such hits sort first and the correlator then counts them as bad),
/// then hits with a tiebreaker before those without, then the tiebreaker.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReplayOrder {
    timestamp_ns: i64,
    no_tiebreaker: bool,
    tiebreaker: Option<TieBreaker>,
}

/// Sorts hits for offline correlation: by timestamp (and tiebreaker), ties in input order.
/// Hits whose timestamp cannot be read sort first; the correlator then counts them as bad.
pub fn sort_for_replay(rule: &CompiledRule, hits: &mut [Hit]) {
    // A stable sort keeps input order among equal keys; `None` tiebreakers sort last.
    hits.sort_by_cached_key(|h| rule.replay_order(&h.source));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hit(id: &str, source: Value) -> Hit {
        Hit {
            index: Arc::from("logs-endpoint.events.process-default"),
            id: Arc::from(id),
            source,
        }
    }

    fn process(
        host_id: Value,
        ts: &str,
        name: &str,
        args: &[&str],
        entity: &str,
        parent: &str,
    ) -> Value {
        json!({
            "@timestamp": ts,
            "event": {"category": ["process"], "type": ["start"], "action": "exec"},
            "host": {"id": host_id, "os": {"type": "linux"}},
            "process": {"name": name, "args": args, "entity_id": entity,
                        "parent": {"name": "node", "entity_id": parent}},
        })
    }

    fn detections(opts: EngineOptions) -> Vec<Detection> {
        let rule = Rule::builtin().expect("the built-in rule loads");
        let compiled = CompiledRule::compile(&rule, opts).expect("the built-in rule compiles");
        let mut c = compiled.correlator(100);
        let npm = process(
            json!(4242),
            "2026-11-29T10:00:01Z",
            "node",
            &["npm", "install"],
            "e1",
            "e0",
        );
        let sh = process(
            json!("4242"),
            "2026-11-29T10:00:02Z",
            "sh",
            &["sh"],
            "e2",
            "e1",
        );
        c.push(&hit("npm", npm)).expect("ordered");
        c.push(&hit("sh", sh)).expect("ordered");
        c.finish().detections
    }

    /// KeywordFieldMapper indexes a JSON number as its text and its value fetcher returns
    /// `value.toString()`, so ES joins `4242` with `"4242"` and reports the key `"4242"`.
    #[test]
    fn ecs_typing_joins_numbers_and_strings_of_keyword_fields() {
        let typed = detections(EngineOptions::ecs_process());
        assert_eq!(typed.len(), 1);
        assert_eq!(typed[0].join_keys[0], KeyValue::str("4242"));
        assert!(
            detections(EngineOptions::default()).is_empty(),
            "typed from JSON alone, a long and a string are different keys"
        );
    }

    /// Decoding each `_source` text flat for the rule and decoding it into a `Value` tree
    /// must correlate alike: same detections, same counts, same bad events with the same words.
    #[test]
    fn flat_decoding_correlates_exactly_like_the_json_tree() {
        use crate::generate::{GenerateSpec, Generator};
        let spec = GenerateSpec {
            hosts: 40,
            rate: 60.0,
            from_ms: 1_780_000_000_000,
            to_ms: 1_780_000_000_000 + 120_000,
            seed: 11,
            installs_per_host_hour: 300.0,
            script_rate: 0.6,
            malicious_rate: 0.3,
        };
        let mut hits: Vec<(String, String)> = Generator::new(spec)
            .expect("valid spec")
            .map(|h| (h.id, h.source))
            .collect();
        // Unreadable and unusual documents in between: not an object, not JSON, a field
        // spelled two ways in one object (decoded by the tree), no timestamp.
        let extra = [
            "[1, 2]".to_owned(),
            "{\"process\": ".to_owned(),
            r#"{"@timestamp": "2026-06-01T00:00:00Z", "process.name": "node", "process": {"name": "x"}}"#.to_owned(),
            r#"{"event": {"category": "process", "type": "start", "action": "exec"},
                "host": {"id": "h", "os": {"type": "linux"}},
                "process": {"name": "node", "args": ["install"], "entity_id": "e"}}"#
                .to_owned(),
        ];
        for (i, text) in extra.into_iter().enumerate() {
            hits.insert(10 + i * 7, (format!("extra-{i}"), text));
        }
        let rule = Rule::builtin().expect("the built-in rule loads");
        let compiled =
            CompiledRule::compile(&rule, EngineOptions::ecs_process()).expect("compiles");
        let index: Arc<str> = Arc::from("logs-endpoint.events.process-default");

        let mut flat = compiled.correlator(usize::MAX);
        let mut event = FlatEvent::default();
        for (id, text) in &hits {
            flat.push_source(&index, id, text, None, &mut event)
                .expect("ordered");
        }
        let mut tree = compiled.correlator(usize::MAX);
        for (id, text) in &hits {
            match serde_json::from_str::<Value>(text) {
                Ok(source) => tree
                    .push(&Hit {
                        index: index.clone(),
                        id: Arc::from(id.as_str()),
                        source,
                    })
                    .expect("ordered"),
                Err(e) => tree.skip(&index, id, SourceError::Unparsable(e).into()),
            }
        }
        let (flat, tree) = (flat.finish(), tree.finish());
        assert!(flat.stats.detections > 5, "{:?}", flat.stats);
        assert_eq!(
            flat.stats.bad_events, 3,
            "{:?}",
            flat.stats.bad_event_samples
        );
        assert_eq!(flat.stats, tree.stats);
        assert_eq!(flat.detections, tree.detections);
        assert_eq!(flat.matcher, tree.matcher);
    }

    fn run_builtin(hits: &[(Hit, Option<i64>)]) -> Correlation {
        let rule = Rule::builtin().expect("the built-in rule loads");
        let compiled = CompiledRule::compile(&rule, EngineOptions::ecs_process())
            .expect("the built-in rule compiles");
        let mut c = compiled.correlator(100);
        for (h, at) in hits {
            c.push_at(h, *at).expect("ordered");
        }
        c.finish()
    }

    /// A join key holding an object is named as a bad event, not dropped as "key missing":
    /// ES cannot index an object as a keyword value, and where another index maps the field
    /// as an object ES EQL refuses the whole query ("Cannot use field [host.id] due to
    /// ambiguities being mapped as [2] incompatible types", `handleSpecialFields` in
    /// `x-pack/plugin/ql/src/main/java/org/elasticsearch/xpack/ql/analyzer/AnalyzerRules.java`).
    /// seqwatch skips the one event instead of failing every run.
    #[test]
    fn an_object_join_key_is_a_bad_event_with_its_name() {
        let mut npm = process(
            json!("h1"),
            "2026-11-29T10:00:01Z",
            "node",
            &["npm", "install"],
            "e1",
            "e0",
        );
        npm["host"]["id"] = json!({"name": "h1"});
        let mut wrapped = npm.clone();
        wrapped["host"]["id"] = json!([{"name": "h1"}]);
        let missing = {
            let mut m = npm.clone();
            m["host"].as_object_mut().expect("object").remove("id");
            m
        };
        let found = run_builtin(&[
            (hit("object", npm), None),
            (hit("array-of-object", wrapped), None),
            (hit("missing", missing), None),
        ]);
        assert_eq!(found.stats.bad_events, 2, "{:?}", found.stats);
        let named: Vec<_> = found
            .stats
            .bad_event_samples
            .iter()
            .map(|b| (b.id.as_str(), b.reason.as_str()))
            .collect();
        assert_eq!(
            named,
            vec![
                (
                    "object",
                    "join key host.id holds an object; a key must be a value"
                ),
                (
                    "array-of-object",
                    "join key host.id holds an object; a key must be a value"
                ),
            ]
        );
        // A missing key is ES's `exists` filter at work: not a candidate, not bad.
        assert_eq!(found.stats.candidates, 0);
    }

    /// ES sorts a multi-valued date by its smallest value, but ES EQL refuses the hit:
    /// `unwrapMultiValue` throws "Arrays (returned by [@timestamp]) are not supported"
    /// (`x-pack/plugin/ql/src/main/java/org/elasticsearch/xpack/ql/execution/search/extractor/AbstractFieldHitExtractor.java`;
    /// EQL's `FieldHitExtractor.isPrimitive` is false). ES fails the query; seqwatch counts
    /// the event, also when the sort value would have let it through.
    #[test]
    fn a_multi_valued_timestamp_is_bad_even_with_a_sort_value() {
        let mut npm = process(
            json!("h1"),
            "2026-11-29T10:00:01Z",
            "node",
            &["npm", "install"],
            "e1",
            "e0",
        );
        npm["@timestamp"] = json!(["2026-11-29T10:00:01Z", "2026-11-29T10:00:02Z"]);
        let sorted_at = Some(1_795_000_000_000_000_000);
        let found = run_builtin(&[(hit("two-times", npm), sorted_at)]);
        assert_eq!(found.stats.bad_events, 1);
        assert_eq!(
            found.stats.bad_event_samples[0].reason,
            "timestamp field `@timestamp` has 2 values; exactly one is required"
        );
        // With the sort value and no timestamp in `_source` at all (a `copy_to` field), the
        // hit is fine: ES EQL reads the timestamp from doc values, as the sort did.
        let mut copied = process(
            json!("h1"),
            "2026-11-29T10:00:01Z",
            "node",
            &["npm", "install"],
            "e1",
            "e0",
        );
        copied.as_object_mut().expect("object").remove("@timestamp");
        let found = run_builtin(&[(hit("copied", copied), sorted_at)]);
        assert_eq!((found.stats.bad_events, found.stats.candidates), (0, 1));
    }

    #[test]
    fn ecs_typing_covers_every_field_of_the_built_in_rule() {
        let types = EngineOptions::ecs_process().field_types;
        for field in [
            "host.id",
            "host.os.type",
            "event.type",
            "event.action",
            "event.category",
            "process.name",
            "process.args",
            "process.entity_id",
            "process.parent.name",
            "process.parent.entity_id",
        ] {
            assert_eq!(
                types.get(field),
                Some(FieldType::Keyword {
                    ignore_above: Some(1024)
                }),
                "{field}"
            );
        }
        assert_eq!(types.get("process.pid"), Some(FieldType::Long));
        assert_eq!(
            types.get("process.command_line"),
            None,
            "wildcard in Defend: left untyped"
        );
    }
}
