//! The fuzz targets, as plain functions of bytes, shared by the coverage-guided `fuzz/` project
//! (nightly, `scripts/fuzz`) and the stable smoke test `tests/fuzz_smoke.rs`: the EQL parser and
//! rule loader, the evaluator on arbitrary JSON, the correlator on arbitrary hit streams, the
//! alert builder, and the hot path's JSON scanner against serde_json. Pure: no I/O.
//!
//! Each target returns a [`BrokenInvariant`] instead of panicking, so library code keeps its
//! no-panic rule; the harnesses turn an `Err` into a crash. A panic inside the code
//! under test is, of course, a finding too.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use chrono::DateTime;
use serde_json::{json, Map, Number, Value};

use crate::alert::{self, RuleInfo, RunInfo, SourceEvent};
use crate::correlate::MatchError;
use crate::engine::{
    sort_for_replay, CompiledRule, CorrelateError, CorrelationStats, EngineOptions, Hit,
    BAD_EVENT_SAMPLES,
};
use crate::eql::ast::Span;
use crate::eql::eval::{CompiledFilter, EvalOptions};
use crate::eql::functions::EvalError;
use crate::eql::{self, ast, pushdown, SourceOrigin};
use crate::event::answer::{AnswerHit, AnswerShards, SearchAnswer};
use crate::event::scan::{
    first_sort_value, scan_hit_line, scan_search_page, HitDecode, HitParts, PageParts,
};
use crate::event::{
    decode_flat, event_timestamp, field_values, has_object_value, scan_hit_line_flat, Document,
    FieldPlan, FlatDecode, FlatEvent, Scalar, Stored, StoredSpan,
};
use crate::rule::Rule;

/// A fuzz target: bytes in, `Err(broken invariant)` out.
pub type Target = fn(&[u8]) -> Result<(), BrokenInvariant>;

/// What a fuzz target found wrong: the invariant, and the values that break it.
#[derive(Debug, thiserror::Error)]
pub enum BrokenInvariant {
    /// [`eql_parse`]: a parse error's span does not lie inside the query.
    #[error("error span {span:?} outside the {len}-byte query")]
    SpanOutsideQuery {
        /// The error's span.
        span: Span,
        /// The query's length in bytes.
        len: usize,
    },
    /// [`eql_parse`]: a rule error does not start with `file:line:column`.
    #[error("rule error does not name file:line:column: {message}")]
    RuleErrorWithoutPlace {
        /// The rendered error.
        message: String,
    },
    /// [`eval_json`]: `matches` and `try_matches` disagree.
    #[error("filter {filter}: matches() = {plain} but try_matches() = {tried:?}")]
    MatchesDisagree {
        /// The filter's index in the fixed list.
        filter: usize,
        /// What `matches` said.
        plain: bool,
        /// What `try_matches` said.
        tried: Result<bool, EvalError>,
    },
    /// [`eval_json`]: `is_missing` disagrees with the count of a field's values.
    #[error("field_values({path:?}).is_missing() disagrees")]
    MissingDisagrees {
        /// The field path.
        path: &'static str,
    },
    /// [`eval_json`]: the correlator refused a single hit.
    #[error("one hit out of order: {0}")]
    OneHitRefused(#[source] CorrelateError),
    /// [`eval_json`]: one hit was not counted once (as a candidate or a bad event, or neither).
    #[error("one hit, stats {stats:?}")]
    OneHitMiscounted {
        /// The correlator's counters.
        stats: CorrelationStats,
    },
    /// [`correlate_stream`]: the correlator refused hits sorted for replay.
    #[error("rule {rule:?}: sorted hits refused: {error}")]
    SortedHitsRefused {
        /// The rule's name.
        rule: String,
        /// The refusal.
        #[source]
        error: CorrelateError,
    },
    /// [`correlate_stream`]: the hit count differs from the hits pushed.
    #[error("{pushed} hits pushed, {counted} counted")]
    HitsMiscounted {
        /// Hits pushed.
        pushed: usize,
        /// Hits counted.
        counted: u64,
    },
    /// [`correlate_stream`]: the counters contradict one another (or the sample bound).
    #[error("inconsistent stats {stats:?}")]
    InconsistentStats {
        /// The correlator's counters.
        stats: CorrelationStats,
    },
    /// [`correlate_stream`]: more detections than the cap.
    #[error("{detections} detections over the cap {cap}")]
    OverCap {
        /// Detections returned.
        detections: usize,
        /// The cap.
        cap: usize,
    },
    /// [`correlate_stream`]: a detection's event count differs from the stage count.
    #[error("detection with {events} events for {stages} stages")]
    WrongEventCount {
        /// Events of the detection.
        events: usize,
        /// Stages of the rule.
        stages: usize,
    },
    /// [`correlate_stream`]: a detection's events are not in time order.
    #[error("detection events out of time order: {times:?}")]
    OutOfTimeOrder {
        /// The events' times, epoch nanoseconds.
        times: Vec<i64>,
    },
    /// [`correlate_stream`]: a detection spans more than maxspan.
    #[error("detection spans {span_ms} ms, maxspan {maxspan_ms} ms")]
    OverMaxspan {
        /// The detection's span.
        span_ms: i64,
        /// The rule's maxspan.
        maxspan_ms: u64,
    },
    /// [`alert_build`]: not one shell plus one building block per event.
    #[error("{events} events gave {alerts} alerts")]
    AlertCount {
        /// Events of the sequence.
        events: usize,
        /// Alerts built.
        alerts: usize,
    },
    /// [`alert_build`]: an alert's id is not the documented hash.
    #[error("alert {alert} has id {id}, expected {expected}")]
    WrongId {
        /// The alert's position (0 is the shell).
        alert: usize,
        /// Its id.
        id: String,
        /// The documented hash.
        expected: String,
    },
    /// [`alert_build`]: an alert id is not 64 hex digits.
    #[error("alert id {id:?} is not 64 hex digits")]
    MalformedId {
        /// The id.
        id: String,
    },
    /// [`alert_build`]: two alerts of one sequence share an id.
    #[error("alert id {id} appears twice")]
    DuplicateId {
        /// The id.
        id: String,
    },
    /// [`alert_build`]: `kibana.alert.uuid` is not the alert's id.
    #[error("alert {alert}: kibana.alert.uuid differs from its id")]
    UuidDiffers {
        /// The alert's position.
        alert: usize,
    },
    /// [`alert_build`]: the shell is flagged a building block, or a building block is not.
    #[error("alert {alert}: building-block flag is wrong")]
    BuildingBlockFlag {
        /// The alert's position.
        alert: usize,
    },
    /// [`alert_build`]: an alert cannot be written as JSON.
    #[error("alert {alert} cannot be serialized: {error}")]
    NotSerializable {
        /// The alert's position.
        alert: usize,
        /// serde_json's words.
        #[source]
        error: serde_json::Error,
    },
    /// [`alert_build`]: an alert's JSON text does not read back.
    #[error("alert {alert} does not round-trip through JSON: {error}")]
    RoundTripUnreadable {
        /// The alert's position.
        alert: usize,
        /// serde_json's words.
        #[source]
        error: serde_json::Error,
    },
    /// [`alert_build`]: an alert reads back different.
    #[error("alert {alert} changes in a JSON round trip")]
    RoundTripChanged {
        /// The alert's position.
        alert: usize,
    },
    /// [`alert_build`]: stripping an alert again drops more than its own `kibana.*` fields, so
    /// building it let through a value that does not fit ECS.
    #[error("alert {alert} still carries {path}, which stripping it again drops")]
    NotEcsCompliant {
        /// The alert's position.
        alert: usize,
        /// Where the value is.
        path: String,
    },
    /// [`scan_json`]: the scanner read a text that serde_json refuses (outside any `_source`
    /// it only delimited and that is unreadable on its own).
    #[error("the scanner read a {what} that serde_json refuses: {error}")]
    ScannerReadsRefused {
        /// What was read: a search answer, a hit line, a decoded `_source`.
        what: &'static str,
        /// serde_json's words.
        #[source]
        error: serde_json::Error,
    },
    /// [`scan_json`]: the scanner read a text other than serde_json reads it.
    #[error("the scanner read a {what} as {scanned} but serde_json as {reference}")]
    ScannerDiffers {
        /// What was read.
        what: &'static str,
        /// The scanner's reading.
        scanned: String,
        /// serde_json's reading.
        reference: String,
    },
    /// [`scan_json`]: reading with a plan (decoding each `_source`) and without one disagree
    /// on anything but the decoded values.
    #[error("the {what} reads differently with the plan of {plan} fields: {with} vs {without}")]
    PlanChangesReading {
        /// What was read.
        what: &'static str,
        /// The plan's field count.
        plan: usize,
        /// The reading with the plan.
        with: String,
        /// The reading without.
        without: String,
    },
    /// [`scan_json`]: a field decoded flat holds other values than serde_json's tree gives.
    #[error("field {path:?} decoded flat as {flat} but {reference} by serde_json ({how})")]
    FlatDiffers {
        /// The field's path.
        path: String,
        /// The flat values.
        flat: String,
        /// The reference values.
        reference: String,
        /// Which decode: while reading a page or a line, or `decode_flat` alone.
        how: &'static str,
    },
    /// [`scan_json`]: `decode_flat` and serde_json's tree decide a `_source` differently
    /// (one refuses, or they refuse in other words, or a decode the tree would need was not
    /// handed to it).
    #[error("decode_flat says {flat} but serde_json's tree {tree}")]
    FlatVerdictDiffers {
        /// `decode_flat`'s verdict.
        flat: String,
        /// The tree parse's verdict.
        tree: String,
    },
}

/// Every target by the name its `fuzz/fuzz_targets/<name>.rs` binary and its
/// `fuzz/regressions/<name>/` directory carry.
pub const TARGETS: &[(&str, Target)] = &[
    ("eql_parse", eql_parse),
    ("eval_json", eval_json),
    ("correlate_stream", correlate_stream),
    ("alert_build", alert_build),
    ("scan_json", scan_json),
];

/// Reads structured choices from fuzz bytes; past the end every read is zero, so any input
/// (the empty one too) decodes to something.
#[derive(Debug, Clone)]
pub struct ByteSource<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> ByteSource<'a> {
    /// Reads from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        ByteSource { data, pos: 0 }
    }

    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte, or 0 past the end.
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let v = u16::from_le_bytes([self.byte(), self.byte()]);
        usize::from(v) % n
    }

    /// One item of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Up to `max` raw bytes.
    pub fn take(&mut self, max: usize) -> &'a [u8] {
        let n = self.below(max + 1);
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos = start + n;
        &self.data[start..end]
    }

    /// A signed 64-bit number from eight bytes.
    pub fn i64(&mut self) -> i64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        i64::from_le_bytes(b)
    }
}

/// Field names that the rules below read, and a few others, to be found often.
const NAMES: &[&str] = &[
    "@timestamp",
    "process",
    "name",
    "args",
    "entity_id",
    "parent",
    "host",
    "id",
    "os",
    "type",
    "event",
    "action",
    "category",
    "sequence",
    "process.name",
    "host.id",
    "host.os.type",
    "process.parent.entity_id",
    "event.type",
    "source",
    "ip",
    "pid",
    "user",
    "start",
    "kibana",
    "data_stream",
    "n",
    "x",
    "",
    ".",
    "a.",
];

/// String values the rules below compare against, timestamps in several spellings, and
/// awkward text.
const STRINGS: &[&str] = &[
    "node",
    "install",
    "linux",
    "start",
    "exec",
    "ProcessRollup2",
    "process",
    "end",
    "sh",
    "h1",
    "h2",
    "e1",
    "e2",
    "2026-11-18T06:13:20Z",
    "2026-11-18T06:13:20.123456789+01:00",
    "2026-11-18",
    "1795000000000",
    "-1",
    "10.1.2.3",
    "::1",
    "",
    " ",
    "\u{0}",
    "é",
    "\u{FFFF}",
    "a*b?",
    "99999999999999999999",
    "1e308",
    "NaN",
];

/// A JSON value decoded from bytes (never fails); nesting up to `depth_left` levels.
pub fn value_from_bytes(src: &mut ByteSource<'_>, depth_left: usize) -> Value {
    let kind = src.byte() % if depth_left == 0 { 6 } else { 8 };
    match kind {
        0 => Value::Null,
        1 => Value::Bool(src.byte() & 1 == 1),
        2 => json!(src.i64() >> src.below(64)),
        3 => Number::from_f64(f64::from_bits(src.i64() as u64))
            .map(Value::Number)
            .unwrap_or_else(|| json!(-0.0)),
        4 => Value::String(src.pick(STRINGS).to_owned()),
        5 => Value::String(String::from_utf8_lossy(src.take(24)).into_owned()),
        6 => {
            let n = src.below(5);
            Value::Array(
                (0..n)
                    .map(|_| value_from_bytes(src, depth_left - 1))
                    .collect(),
            )
        }
        _ => {
            let n = src.below(6);
            let mut map = Map::new();
            for _ in 0..n {
                let key = if src.byte() < 224 {
                    src.pick(NAMES).to_owned()
                } else {
                    String::from_utf8_lossy(src.take(8)).into_owned()
                };
                let v = value_from_bytes(src, depth_left - 1);
                map.insert(key, v);
            }
            Value::Object(map)
        }
    }
}

/// The document a fuzz input stands for: the bytes as JSON when they are JSON, otherwise a
/// value decoded from them.
pub fn document_from_bytes(data: &[u8]) -> Value {
    serde_json::from_slice(data)
        .unwrap_or_else(|_| value_from_bytes(&mut ByteSource::new(data), 12))
}

/// Rule text around `query`, for loading through the TOML rule loader.
fn rule_toml(query: &str) -> String {
    format!(
        "[rule]\nname = \"fuzz\"\nrule_id = \"fuzz\"\ndescription = \"fuzz\"\ntype = \"eql\"\n\
         language = \"eql\"\nindex = [\"logs-*\"]\nfrom = \"now-9m\"\nrisk_score = 1\n\
         severity = \"low\"\nquery = '''\n{query}'''\n"
    )
}

/// True when `message` starts with `origin:line:column`.
fn names_place(message: &str, origin: &str) -> bool {
    let Some(rest) = message
        .strip_prefix(origin)
        .and_then(|r| r.strip_prefix(':'))
    else {
        return false;
    };
    let mut parts = rest.splitn(3, ':');
    let line = parts.next().unwrap_or("");
    let column = parts.next().unwrap_or("");
    !line.is_empty()
        && line.bytes().all(|b| b.is_ascii_digit())
        && !column.is_empty()
        && column.bytes().all(|b| b.is_ascii_digit())
}

/// EQL text (or, when it looks like one, a whole rule TOML file) → parse → compile → push
/// down. Invariants: error spans lie inside the text and render; every rule error names
/// `file:line:column`; a rule that loads compiles in the engine and yields a fetch query.
pub fn eql_parse(data: &[u8]) -> Result<(), BrokenInvariant> {
    let text = String::from_utf8_lossy(data);
    if text.contains("[rule]") {
        return load_rule(&text);
    }
    match eql::parse(&text) {
        Err(err) => {
            if err.span.start > err.span.end || err.span.end > text.len() {
                return Err(BrokenInvariant::SpanOutsideQuery {
                    span: err.span,
                    len: text.len(),
                });
            }
            let _ = err.render(&text, &SourceOrigin::default());
        }
        Ok(query) => compile_everywhere(&query)?,
    }
    // The same query inside a rule file: errors must point into the file.
    if !text.contains("'''") && !text.contains('\r') {
        load_rule(&rule_toml(&text))?;
    }
    Ok(())
}

fn load_rule(text: &str) -> Result<(), BrokenInvariant> {
    const ORIGIN: &str = "fuzz.toml";
    match Rule::from_toml_str(text, ORIGIN) {
        Err(err) => {
            let message = err.to_string();
            if !names_place(&message, ORIGIN) {
                return Err(BrokenInvariant::RuleErrorWithoutPlace { message });
            }
            Ok(())
        }
        Ok(rule) => {
            compile_everywhere(&rule.query)?;
            // The engine may refuse a type error under ECS typing; it must not panic.
            if let Ok(compiled) = CompiledRule::compile(&rule, EngineOptions::ecs_process()) {
                let _ = compiled.fetch_query(&rule, "2026-11-18T06:13:20Z", "now");
                let _ = compiled.sort();
                let _ = compiled.correlator(1).finish();
            }
            Ok(())
        }
    }
}

fn compile_everywhere(query: &ast::Query) -> Result<(), BrokenInvariant> {
    let filters: Vec<&ast::EventFilter> = match query {
        ast::Query::Event(f) => vec![f],
        ast::Query::Sequence(s) => s
            .stages
            .iter()
            .chain(s.until.iter())
            .map(|st| &st.filter)
            .collect(),
    };
    let ecs = EvalOptions {
        field_types: EngineOptions::ecs_process().field_types,
        ..EvalOptions::default()
    };
    for opts in [EvalOptions::default(), ecs] {
        for f in &filters {
            if let Ok(compiled) = CompiledFilter::compile(f, &opts) {
                let _ = pushdown::filter_query(&compiled);
                let _ = compiled.referenced_fields();
                let _ = compiled.try_matches(&json!({}));
            }
        }
        if let ast::Query::Sequence(s) = query {
            let fetch = pushdown::FetchOptions {
                eval: opts.clone(),
                ..pushdown::FetchOptions::default()
            };
            let _ = pushdown::fetch_query(s, &fetch, "2026-11-18T06:13:20Z", "now");
        }
    }
    Ok(())
}

/// Conditions in the style of the conformance suites: every function, operator and literal
/// kind the evaluator knows, over fields [`value_from_bytes`] produces often.
const EVAL_CONDITIONS: &[&str] = &[
    "process.name == \"node\" and process.args == \"install\"",
    "process.name : \"NODE\" or process.name like~ (\"no*\", \"?ode\")",
    "process.name regex \"n.*e\" or process.name regex~ \"N[O]DE\"",
    "startsWith(process.name, \"no\") and endsWith~(process.name, \"DE\")",
    "stringContains(host.id, \"h\") or indexOf(host.id, \"1\", 0) == 1",
    "length(process.name) > 2 and substring(process.name, 1, -1) == \"od\"",
    "between(process.name, \"n\", \"e\") == \"od\"",
    "cidrMatch(source.ip, \"10.0.0.0/8\", \"::1/128\")",
    "string(n) == \"1\" and number(x) > 0",
    "number(x, 16) == 255 or number(n) < -1.5",
    "n + 1 > 2 or n * 2 / 3 % 4 == 1 or -n < 0",
    "add(n, 1) == 2 or subtract(n, 1) == 0 or multiply(n, 2) == 4 or divide(n, 2) == 1 or modulo(n, 2) == 1",
    "x in (\"a\", \"b\") or n in (1, 2.5) or x not in (\"c\")",
    "x != null and not n == null",
    "?missing.field == null",
    "concat(x, n, \"z\") : \"*z\"",
    "host.os.type == \"linux\" and event.type == \"start\" and event.action in (\"exec\", \"ProcessRollup2\")",
    "`@timestamp` > 0 or @timestamp == \"2026-11-18T06:13:20Z\"",
    "true",
];

fn eval_filters() -> &'static Vec<CompiledFilter> {
    static FILTERS: OnceLock<Vec<CompiledFilter>> = OnceLock::new();
    FILTERS.get_or_init(|| {
        let ecs = EvalOptions {
            field_types: EngineOptions::ecs_process().field_types,
            ..EvalOptions::default()
        };
        let mut out = Vec::new();
        for text in EVAL_CONDITIONS {
            let query = format!("any where {text}");
            if let Ok(ast::Query::Event(f)) = eql::parse(&query) {
                for opts in [&EvalOptions::default(), &ecs] {
                    if let Ok(c) = CompiledFilter::compile(&f, opts) {
                        out.push(c);
                    }
                }
            }
        }
        if let Ok(rule) = Rule::builtin() {
            if let ast::Query::Sequence(s) = &rule.query {
                for stage in &s.stages {
                    if let Ok(c) = CompiledFilter::compile(&stage.filter, &ecs) {
                        out.push(c);
                    }
                }
            }
        }
        out
    })
}

/// How many filters [`eval_json`] runs (two typings of each condition, plus the built-in
/// rule's two stages), for the smoke test to check that none was refused.
pub fn eval_filter_count() -> usize {
    eval_filters().len()
}

/// How many conditions [`eval_json`] is built from.
pub fn eval_condition_count() -> usize {
    EVAL_CONDITIONS.len()
}

/// Every evaluator filter over an arbitrary document. Invariants: `matches` agrees with
/// `try_matches`; field access and timestamp parsing return; the built-in rule's correlator
/// takes the document as a hit.
pub fn eval_json(data: &[u8]) -> Result<(), BrokenInvariant> {
    let doc = document_from_bytes(data);
    for (i, filter) in eval_filters().iter().enumerate() {
        let tried = filter.try_matches(&doc);
        let plain = filter.matches(&doc);
        if plain != tried.as_ref().is_ok_and(|b| *b) {
            return Err(BrokenInvariant::MatchesDisagree {
                filter: i,
                plain,
                tried,
            });
        }
    }
    let _ = event_timestamp(&doc, "@timestamp");
    for path in ["process.name", "host.id", "@timestamp", "a", ""] {
        let values = field_values(&doc, path);
        let missing = values.is_missing();
        if missing != (values.count() == 0) {
            return Err(BrokenInvariant::MissingDisagrees { path });
        }
    }
    if let Some((_, rule)) = fuzz_rules().first() {
        let mut c = rule.correlator(4);
        let hit = Hit {
            index: Arc::from("fuzz"),
            id: Arc::from("1"),
            source: doc,
        };
        c.push(&hit).map_err(BrokenInvariant::OneHitRefused)?;
        let stats = c.finish().stats;
        if stats.hits != 1 || stats.bad_events + stats.candidates > 1 {
            return Err(BrokenInvariant::OneHitMiscounted { stats });
        }
    }
    Ok(())
}

/// Sequence rules the correlator target runs: the built-in one, and shapes with `until`,
/// a missing-event stage, `runs`, a tiebreaker and optional keys.
const CORRELATE_RULES: &[(&str, Option<&str>)] = &[
    (
        "sequence by host.id with maxspan=2s \
         [process where event.action == \"exec\" and process.name == \"node\"] by process.entity_id \
         [process where process.parent.name == \"node\"] by process.parent.entity_id \
         until [process where event.type == \"end\"] by process.entity_id",
        None,
    ),
    (
        "sequence by host.id with maxspan=3s \
         [process where process.name == \"node\"] \
         ![process where process.name == \"sh\"] \
         [process where process.name == \"end\"]",
        None,
    ),
    (
        "sequence by ?host.id [process where process.name == \"node\"] by ?process.entity_id with runs=2 \
         [process where true] by ?process.parent.entity_id",
        Some("event.sequence"),
    ),
];

fn fuzz_rules() -> &'static Vec<(Rule, CompiledRule)> {
    static RULES: OnceLock<Vec<(Rule, CompiledRule)>> = OnceLock::new();
    RULES.get_or_init(|| {
        let mut out = Vec::new();
        let mut rules: Vec<Rule> = Rule::builtin().into_iter().collect();
        for (query, tiebreaker) in CORRELATE_RULES {
            let mut text = rule_toml(query);
            if let Some(t) = tiebreaker {
                text.push_str(&format!("tiebreaker_field = \"{t}\"\n"));
            }
            if let Ok(rule) = Rule::from_toml_str(&text, "fuzz.toml") {
                rules.push(rule);
            }
        }
        for rule in rules {
            for opts in [EngineOptions::ecs_process(), EngineOptions::default()] {
                if let Ok(c) = CompiledRule::compile(&rule, opts) {
                    out.push((rule.clone(), c));
                }
            }
        }
        out
    })
}

/// How many compiled rules [`correlate_stream`] runs (the built-in and [`CORRELATE_RULES`],
/// each typed two ways).
pub fn correlate_rule_count() -> usize {
    fuzz_rules().len()
}

/// One process event decoded from bytes: mostly well-formed and joinable (few hosts and
/// entity ids, small time steps), sometimes with a field of the wrong shape.
fn process_event(src: &mut ByteSource<'_>, ts_ms: i64) -> Value {
    let hosts = ["h1", "h2"];
    let entities = ["e1", "e2", "e3"];
    let names = ["node", "sh", "end"];
    let mut doc = json!({
        "@timestamp": DateTime::from_timestamp_millis(ts_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default(),
        "event": {"category": ["process"], "type": [src.pick(&["start", "end"])],
                  "action": src.pick(&["exec", "ProcessRollup2", "fork"]), "sequence": src.below(4)},
        "host": {"id": src.pick(&hosts), "os": {"type": "linux"}},
        "process": {"name": src.pick(&names), "args": ["node", src.pick(&["install", "ci"])],
                    "entity_id": src.pick(&entities),
                    "parent": {"name": src.pick(&names), "entity_id": src.pick(&entities)}},
    });
    // One byte in eight replaces a field with an arbitrary value (wrong type, array, object).
    if src.byte() < 32 {
        let path = src.pick(&[
            "@timestamp",
            "host.id",
            "process.name",
            "process.entity_id",
            "process.parent.entity_id",
            "event.sequence",
        ]);
        let v = value_from_bytes(src, 3);
        let mut node = &mut doc;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, p) in parts.iter().enumerate() {
            if i + 1 == parts.len() {
                node[*p] = v;
                break;
            }
            node = &mut node[*p];
        }
    }
    doc
}

/// A stream of process events through every correlation rule, sorted as a replay sorts them.
/// Invariants: sorted hits never arrive out of order; every hit is counted once; detections
/// respect the cap, the stage count, event order and `maxspan`; the bad-event sample list is
/// bounded and never exceeds the count.
pub fn correlate_stream(data: &[u8]) -> Result<(), BrokenInvariant> {
    let mut src = ByteSource::new(data);
    let cap = 1 + src.below(6);
    let mut ts = 1_795_000_000_000i64;
    let mut hits = Vec::new();
    while !src.is_empty() && hits.len() < 256 {
        ts += match src.byte() % 8 {
            0 => 0,
            1..=5 => i64::from(src.byte()) * 10,
            6 => 1_999 + i64::from(src.byte() % 3),
            _ => 3_000,
        };
        let source = process_event(&mut src, ts);
        hits.push(Hit {
            index: Arc::from(if src.byte() & 1 == 0 { "a" } else { "b" }),
            id: Arc::from(hits.len().to_string()),
            source,
        });
    }
    'rules: for (rule, compiled) in fuzz_rules() {
        let mut sorted = hits.clone();
        sort_for_replay(compiled, &mut sorted);
        let mut c = compiled.correlator(cap);
        for h in &sorted {
            match c.push(h) {
                Ok(()) => {}
                // Refused as ES refuses it (`Comparable.compareTo` across types): not a bug.
                Err(e) if matches!(e.match_error(), MatchError::MixedTieBreakerTypes { .. }) => {
                    continue 'rules
                }
                Err(error) => {
                    return Err(BrokenInvariant::SortedHitsRefused {
                        rule: rule.name.clone(),
                        error,
                    })
                }
            }
        }
        let found = c.finish();
        let s = &found.stats;
        if s.hits != hits.len() as u64 {
            return Err(BrokenInvariant::HitsMiscounted {
                pushed: hits.len(),
                counted: s.hits,
            });
        }
        if s.bad_event_samples.len() > BAD_EVENT_SAMPLES
            || s.bad_event_samples.len() as u64 > s.bad_events
            || s.candidates + s.bad_events > s.hits
        {
            return Err(BrokenInvariant::InconsistentStats { stats: s.clone() });
        }
        if found.detections.len() > cap {
            return Err(BrokenInvariant::OverCap {
                detections: found.detections.len(),
                cap,
            });
        }
        let ast::Query::Sequence(seq) = &rule.query else {
            continue;
        };
        let stages = seq.stages.len();
        for d in &found.detections {
            if d.events.len() != stages {
                return Err(BrokenInvariant::WrongEventCount {
                    events: d.events.len(),
                    stages,
                });
            }
            let times: Vec<i64> = d.present_events().map(|e| e.timestamp_ns).collect();
            if times.windows(2).any(|w| w[0] > w[1]) {
                return Err(BrokenInvariant::OutOfTimeOrder { times });
            }
            if let (Some(max), Some(first), Some(last)) =
                (seq.maxspan_ms, times.first(), times.last())
            {
                if (last - first) / 1_000_000 > max as i64 {
                    return Err(BrokenInvariant::OverMaxspan {
                        span_ms: (last - first) / 1_000_000,
                        maxspan_ms: max,
                    });
                }
            }
        }
    }
    Ok(())
}

/// The rule description alerts are built for: the built-in rule's, as the job prepares it.
fn alert_rule_info() -> RuleInfo {
    RuleInfo {
        uuid: "6f1c3c1e-8a4b-4f0e-9d7a-0e5b2c9a1f00".into(),
        rule_id: "0871a5d8-6b5f-4a12-a568-fd7bc05bd8db".into(),
        name: "Node.js Pre or Post-Install Script Execution".into(),
        description: "fuzz".into(),
        severity: "medium".into(),
        risk_score: 47,
        version: 2,
        from: "now-9m".into(),
        interval: "5m".into(),
        max_signals: 100,
        index: vec!["logs-endpoint.events.process*".into()],
        query: "sequence".into(),
        tags: vec!["a".into()],
        references: Vec::new(),
        author: vec!["Elastic".into()],
        license: Some("Elastic License v2".into()),
        threat: json!([]),
        false_positives: Vec::new(),
        timestamp_override: None,
        tiebreaker_field: None,
        event_category_override: None,
        note: None,
        setup: String::new(),
        related_integrations: json!([]),
        required_fields: json!([]),
        investigation_fields: None,
        building_block_type: None,
        timeline_id: None,
        timeline_title: None,
        source: alert::RuleSource::Custom,
        created_at: None,
        updated_at: None,
    }
}

/// `alert::build_sequence_alerts` on arbitrary sources, ids and index names. Invariants:
/// nothing, or one shell plus one building block per event; ids are the documented hashes,
/// 64 hex digits, unique, equal to `kibana.alert.uuid`; every document survives a JSON round
/// trip.
pub fn alert_build(data: &[u8]) -> Result<(), BrokenInvariant> {
    let mut src = ByteSource::new(data);
    let n = src.below(5);
    let mut owned = Vec::with_capacity(n);
    for _ in 0..n {
        let index = String::from_utf8_lossy(src.take(12)).into_owned();
        let id = String::from_utf8_lossy(src.take(12)).into_owned();
        let source = value_from_bytes(&mut src, 6);
        owned.push((index, id, source));
    }
    let events: Vec<SourceEvent<'_>> = owned
        .iter()
        .map(|(index, id, source)| SourceEvent { index, id, source })
        .collect();
    let rule = alert_rule_info();
    let now = DateTime::from_timestamp_millis(1_795_000_000_000 + src.i64() % 1_000_000_000)
        .unwrap_or_default();
    let run = RunInfo {
        now,
        space_id: "default",
        execution_uuid: "run",
        kibana_version: "9.5.0",
    };
    let docs = alert::build_sequence_alerts(&rule, &run, &events);
    if docs.is_empty() {
        return Ok(());
    }
    if docs.len() != events.len() + 1 {
        return Err(BrokenInvariant::AlertCount {
            events: events.len(),
            alerts: docs.len(),
        });
    }
    let mut expected = vec![alert::shell_id(&rule.uuid, &events)];
    expected.extend(alert::building_block_ids(&rule.uuid, &events));
    let mut seen = HashSet::new();
    for (i, (doc, want)) in docs.iter().zip(&expected).enumerate() {
        if &doc.id != want {
            return Err(BrokenInvariant::WrongId {
                alert: i,
                id: doc.id.clone(),
                expected: want.clone(),
            });
        }
        if doc.id.len() != 64 || !doc.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BrokenInvariant::MalformedId { id: doc.id.clone() });
        }
        if !seen.insert(doc.id.clone()) {
            return Err(BrokenInvariant::DuplicateId { id: doc.id.clone() });
        }
        if doc.source.get("kibana.alert.uuid") != Some(&json!(doc.id)) {
            return Err(BrokenInvariant::UuidDiffers { alert: i });
        }
        if doc.is_building_block() != (i > 0) {
            return Err(BrokenInvariant::BuildingBlockFlag { alert: i });
        }
        let text = serde_json::to_string(&doc.source)
            .map_err(|error| BrokenInvariant::NotSerializable { alert: i, error })?;
        let back: Value = serde_json::from_str(&text)
            .map_err(|error| BrokenInvariant::RoundTripUnreadable { alert: i, error })?;
        if back != doc.source {
            return Err(BrokenInvariant::RoundTripChanged { alert: i });
        }
        // Stripping an alert again may only drop the alert's own `kibana.*` namespace.
        let again = crate::ecs::strip_for_alert(&doc.source);
        if let Some(r) = again.removed.iter().find(|r| !r.path.starts_with("kibana")) {
            return Err(BrokenInvariant::NotEcsCompliant {
                alert: i,
                path: r.path.clone(),
            });
        }
    }
    Ok(())
}

/// A hit as read, by the scanner or by serde_json: what the paging and the replay use of it.
#[derive(Debug, PartialEq)]
struct HitReading {
    index: String,
    id: String,
    source: Option<String>,
    sort: Option<String>,
    sorted_at: Option<i64>,
}

impl HitReading {
    fn scanned(text: &str, hit: &HitParts) -> Self {
        HitReading {
            index: hit.index.get(text).to_owned(),
            id: hit.id.get(text).to_owned(),
            source: hit.source.clone().map(|r| text[r].to_owned()),
            sort: hit.sort.clone().map(|r| text[r].to_owned()),
            sorted_at: hit.sorted_at,
        }
    }

    fn reference(hit: &AnswerHit<'_>) -> Self {
        HitReading {
            index: hit.index.to_string(),
            id: hit.id.to_string(),
            source: hit.source.map(|r| r.get().to_owned()),
            sort: hit.sort.map(|r| r.get().to_owned()),
            sorted_at: hit.sort.and_then(|r| first_sort_value(r.get())),
        }
    }
}

/// A search answer as read: what the paging uses of it.
#[derive(Debug, PartialEq)]
struct PageReading {
    pit_id: Option<String>,
    timed_out: bool,
    shards: AnswerShards,
    hits: Vec<HitReading>,
}

impl PageReading {
    /// The scanner's reading, as the paging completes it: `_shards` is only delimited by the
    /// scanner and read by serde (an answer whose `_shards` does not read goes to serde whole,
    /// so `None`: the scanner did not decide).
    fn scanned(text: &str, page: &PageParts) -> Option<Self> {
        let shards = match &page.shards {
            Some(r) => serde_json::from_str::<AnswerShards>(&text[r.clone()]).ok()?,
            None => AnswerShards::default(),
        };
        Some(PageReading {
            pit_id: page.pit_id.clone(),
            timed_out: page.timed_out,
            shards,
            hits: page
                .hits
                .iter()
                .map(|h| HitReading::scanned(text, h))
                .collect(),
        })
    }

    fn reference(text: &str) -> Result<Self, serde_json::Error> {
        let answer: SearchAnswer<'_> = serde_json::from_str(text)?;
        Ok(PageReading {
            pit_id: answer.pit_id,
            timed_out: answer.timed_out,
            shards: answer.shards,
            hits: answer.hits.hits.iter().map(HitReading::reference).collect(),
        })
    }
}

/// serde_json's tree refuses nesting deeper than this (its recursion limit, with a margin).
const TREE_DEPTH: usize = 126;

/// The deepest nesting of brackets in `text`, strings skipped.
fn nesting(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The `_source`s the scanner only delimits and the caller's decode refuses as one bad event
/// (not JSON on their own), or that nest so deep, `levels` down in their text, that a tree
/// parse of the whole text would refuse them: the one place the scanner may read a text
/// serde_json refuses.
fn unreadable_sources(text: &str, hits: &[HitParts], levels: usize) -> Vec<Range<usize>> {
    hits.iter()
        .filter_map(|h| h.source.clone())
        .filter(|r| {
            let source = &text[r.clone()];
            serde_json::from_str::<serde::de::IgnoredAny>(source).is_err()
                || serde_json::from_str::<Value>(source).is_err()
                || nesting(source) + levels >= TREE_DEPTH
        })
        .collect()
}

/// `text` with each of `ranges` (ascending, disjoint) replaced by `{}`.
fn patched(text: &str, ranges: &[Range<usize>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for r in ranges {
        out.push_str(&text[last..r.start]);
        out.push_str("{}");
        last = r.end;
    }
    out.push_str(&text[last..]);
    out
}

/// `hit` as the scanner would read it with each unreadable `_source` replaced by `{}`.
fn hit_patched(hit: &HitParts, unreadable: &[Range<usize>], mut reading: HitReading) -> HitReading {
    if hit.source.as_ref().is_some_and(|r| unreadable.contains(r)) {
        reading.source = Some("{}".to_owned());
    }
    reading
}

/// A hit of serde_json's tree (`None`: absent) agrees with a reading: `_source` and `sort`
/// hold the values of the read texts (null where the reading has none).
fn tree_hit_agrees(tree: Option<&Value>, reading: &HitReading) -> bool {
    let Some(hit) = tree.and_then(Value::as_object) else {
        return false;
    };
    let text_value = |text: &Option<String>| {
        text.as_deref()
            .map_or(Some(Value::Null), |t| serde_json::from_str::<Value>(t).ok())
    };
    let or_null = |key: &str| hit.get(key).cloned().unwrap_or(Value::Null);
    hit.get("_index").and_then(Value::as_str) == Some(reading.index.as_str())
        && hit.get("_id").and_then(Value::as_str) == Some(reading.id.as_str())
        && text_value(&reading.source) == Some(or_null("_source"))
        && text_value(&reading.sort) == Some(or_null("sort"))
}

/// The field plans the scanner decodes for: the built-in rule's (ECS typing), one of
/// overlapping paths and names the hit around `_source` also uses, and one the segment tree
/// cannot route (so the scanner only delimits).
fn scan_plans() -> &'static Vec<FieldPlan> {
    static PLANS: OnceLock<Vec<FieldPlan>> = OnceLock::new();
    PLANS.get_or_init(|| {
        let mut plans: Vec<FieldPlan> = fuzz_rules()
            .first()
            .map(|(_, rule)| rule.plan().clone())
            .into_iter()
            .collect();
        for paths in [
            &[
                "a",
                "a.b",
                "a.b.c",
                "b.c",
                "c",
                "x",
                "_id",
                "_source",
                "sort",
                "process.name",
                "@timestamp",
            ][..],
            &["a..b", "c", "process.name"][..],
        ] {
            let mut plan = FieldPlan::new();
            for p in paths {
                plan.slot(p);
            }
            plans.push(plan);
        }
        plans
    })
}

/// How many plans [`scan_json`] decodes for, and how many of them the scanner can route.
pub fn scan_plan_counts() -> (usize, usize) {
    let plans = scan_plans();
    (
        plans.len(),
        plans.iter().filter(|p| p.decodes_flat()).count(),
    )
}

/// A scalar as a comparable key: kind and spelling (so `1`, `1.0` and `-0.0` stay apart).
fn scalar_key(s: Scalar<'_>) -> (u8, String) {
    match s {
        Scalar::Bool(b) => (0, b.to_string()),
        Scalar::Num(n) if n.is_u64() => (1, n.to_string()),
        Scalar::Num(n) if n.is_i64() => (2, n.to_string()),
        Scalar::Num(n) => (3, n.to_string()),
        Scalar::Str(s) => (4, s.to_owned()),
    }
}

fn tree_scalars(tree: &Value, path: &str) -> Vec<(u8, String)> {
    field_values(tree, path)
        .filter_map(Scalar::of)
        .map(scalar_key)
        .collect()
}

fn doc_scalars<D: Document>(doc: &D, path: &str, slot: usize) -> Vec<(u8, String)> {
    doc.field(path, slot).map(scalar_key).collect()
}

/// `decode_flat` of `source` against serde_json's tree: the same refusals (in the same
/// words), and, where it decodes, every planned field's values, in order.
fn check_decode_flat(source: &str) -> Result<(), BrokenInvariant> {
    let tree = serde_json::from_str::<Value>(source);
    for plan in scan_plans().iter().filter(|p| p.decodes_flat()) {
        let mut event = FlatEvent::default();
        let flat = decode_flat(source, plan, &mut event);
        match (&flat, &tree) {
            (Ok(FlatDecode::Decoded), Ok(tree)) => {
                for (slot, path) in plan.paths().iter().enumerate() {
                    let got = doc_scalars(&event, path, slot);
                    let want = tree_scalars(tree, path);
                    if got != want || has_object_value(tree, path) {
                        return Err(BrokenInvariant::FlatDiffers {
                            path: path.clone(),
                            flat: format!("{got:?}"),
                            reference: format!("{want:?}"),
                            how: "decode_flat",
                        });
                    }
                }
            }
            (Ok(FlatDecode::NeedsTree), Ok(_)) => {}
            (Err(f), Err(t)) if f.to_string() == t.to_string() => {}
            _ => {
                return Err(BrokenInvariant::FlatVerdictDiffers {
                    flat: format!("{flat:?}"),
                    tree: format!("{tree:?}"),
                })
            }
        }
    }
    Ok(())
}

/// The values a `_source` was decoded to while its page or line was read, against
/// `decode_flat` of its text alone and serde_json's tree of it.
fn check_decoded_while_reading(
    source: &str,
    event: &FlatEvent<'_>,
    plan: &FieldPlan,
    how: &'static str,
) -> Result<(), BrokenInvariant> {
    let tree = serde_json::from_str::<Value>(source).map_err(|error| {
        BrokenInvariant::ScannerReadsRefused {
            what: "decoded _source",
            error,
        }
    })?;
    let mut alone = FlatEvent::default();
    let verdict = decode_flat(source, plan, &mut alone);
    if !matches!(verdict, Ok(FlatDecode::Decoded)) {
        return Err(BrokenInvariant::FlatVerdictDiffers {
            flat: format!("decoded while reading, {verdict:?} alone"),
            tree: "readable".into(),
        });
    }
    for (slot, path) in plan.paths().iter().enumerate() {
        let got = doc_scalars(event, path, slot);
        let want = tree_scalars(&tree, path);
        if got != want || doc_scalars(&alone, path, slot) != want || has_object_value(&tree, path) {
            return Err(BrokenInvariant::FlatDiffers {
                path: path.clone(),
                flat: format!("{got:?}"),
                reference: format!("{want:?}"),
                how,
            });
        }
    }
    Ok(())
}

/// A hit's parts without the decoded values' place (which only a plan gives).
fn without_flat(hit: &HitParts) -> HitParts {
    HitParts {
        flat: None,
        ..hit.clone()
    }
}

/// A search answer: the scanner with and without each plan, against serde_json.
fn check_page(text: &str) -> Result<(), BrokenInvariant> {
    const WHAT: &str = "search answer";
    let plain = scan_search_page(text, None);
    for plan in scan_plans() {
        let mut entries: Vec<(u16, Stored<'_>)> = Vec::new();
        let with = scan_search_page(
            text,
            Some(HitDecode {
                plan,
                entries: &mut entries,
            }),
        );
        let same = match (&plain, &with) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.pit_id == b.pit_id
                    && a.timed_out == b.timed_out
                    && a.shards == b.shards
                    && a.hits
                        .iter()
                        .map(without_flat)
                        .eq(b.hits.iter().map(without_flat))
            }
            _ => false,
        };
        if !same {
            return Err(BrokenInvariant::PlanChangesReading {
                what: WHAT,
                plan: plan.paths().len(),
                with: format!("{with:?}"),
                without: format!("{plain:?}"),
            });
        }
        for hit in with.iter().flat_map(|p| &p.hits) {
            let (Some(flat), Some(source)) = (hit.flat.clone(), hit.source.clone()) else {
                continue;
            };
            let spans: Vec<(u16, StoredSpan)> = entries[flat]
                .iter()
                .map(|(slot, v)| (*slot, StoredSpan::of(text, v)))
                .collect();
            let mut event = FlatEvent::default();
            event.fill(text, &spans, plan);
            check_decoded_while_reading(&text[source], &event, plan, "read with its page")?;
        }
    }
    let Some(page) = plain else {
        return Ok(());
    };
    let Some(scanned) = PageReading::scanned(text, &page) else {
        return Ok(());
    };
    // Four levels down: the answer, `hits`, its array, the hit.
    let unreadable = unreadable_sources(text, &page.hits, 4);
    let text_patched = patched(text, &unreadable);
    match PageReading::reference(text) {
        Ok(reference) => {
            if scanned != reference {
                return Err(BrokenInvariant::ScannerDiffers {
                    what: WHAT,
                    scanned: format!("{scanned:?}"),
                    reference: format!("{reference:?}"),
                });
            }
        }
        // Refused: only for a `_source` the scanner delimited and the decode then refuses.
        Err(error) => {
            if unreadable.is_empty() {
                return Err(BrokenInvariant::ScannerReadsRefused { what: WHAT, error });
            }
            let reference = PageReading::reference(&text_patched)
                .map_err(|error| BrokenInvariant::ScannerReadsRefused { what: WHAT, error })?;
            let scanned = PageReading {
                hits: scanned
                    .hits
                    .into_iter()
                    .zip(&page.hits)
                    .map(|(r, h)| hit_patched(h, &unreadable, r))
                    .collect(),
                ..scanned
            };
            if scanned != reference {
                return Err(BrokenInvariant::ScannerDiffers {
                    what: WHAT,
                    scanned: format!("{scanned:?}"),
                    reference: format!("{reference:?}"),
                });
            }
        }
    }
    // What it skips it reads as strictly as a tree parse would.
    serde_json::from_str::<Value>(&text_patched)
        .map_err(|error| BrokenInvariant::ScannerReadsRefused { what: WHAT, error })?;
    for h in page.hits.iter().filter_map(|h| h.source.clone()) {
        check_decode_flat(&text[h])?;
    }
    Ok(())
}

/// One export line: the scanner with and without each plan (as `replay` reads it), against
/// serde_json.
fn check_line(text: &str) -> Result<(), BrokenInvariant> {
    const WHAT: &str = "hit line";
    let plain = scan_hit_line(text, None);
    for plan in scan_plans() {
        let mut event = FlatEvent::default();
        let with = scan_hit_line_flat(text, plan, &mut event);
        let same = match (&plain, &with) {
            (None, None) => true,
            (Some(a), Some((b, decoded))) => {
                without_flat(a) == without_flat(b) && *decoded == b.flat.is_some()
            }
            _ => false,
        };
        if !same {
            return Err(BrokenInvariant::PlanChangesReading {
                what: WHAT,
                plan: plan.paths().len(),
                with: format!("{with:?}"),
                without: format!("{plain:?}"),
            });
        }
        if let Some((hit, true)) = &with {
            if let Some(source) = hit.source.clone() {
                check_decoded_while_reading(&text[source], &event, plan, "read with its line")?;
            }
        }
    }
    let Some(hit) = plain else {
        return Ok(());
    };
    let scanned = HitReading::scanned(text, &hit);
    // One level down: the line's object.
    let unreadable = unreadable_sources(text, std::slice::from_ref(&hit), 1);
    let text_patched = patched(text, &unreadable);
    match serde_json::from_str::<AnswerHit<'_>>(text) {
        Ok(reference) => {
            let reference = HitReading::reference(&reference);
            if scanned != reference {
                return Err(BrokenInvariant::ScannerDiffers {
                    what: WHAT,
                    scanned: format!("{scanned:?}"),
                    reference: format!("{reference:?}"),
                });
            }
        }
        Err(error) => {
            if unreadable.is_empty() {
                return Err(BrokenInvariant::ScannerReadsRefused { what: WHAT, error });
            }
            let reference = serde_json::from_str::<AnswerHit<'_>>(&text_patched)
                .map_err(|error| BrokenInvariant::ScannerReadsRefused { what: WHAT, error })?;
            let reference = HitReading::reference(&reference);
            let scanned = hit_patched(&hit, &unreadable, HitReading::scanned(text, &hit));
            if scanned != reference {
                return Err(BrokenInvariant::ScannerDiffers {
                    what: WHAT,
                    scanned: format!("{scanned:?}"),
                    reference: format!("{reference:?}"),
                });
            }
        }
    }
    // The tree path of `replay` reads the line as a tree: it must take it, with the same parts.
    let tree = serde_json::from_str::<Value>(&text_patched)
        .map_err(|error| BrokenInvariant::ScannerReadsRefused { what: WHAT, error })?;
    let scanned = hit_patched(&hit, &unreadable, scanned);
    if !tree_hit_agrees(Some(&tree), &scanned) {
        return Err(BrokenInvariant::ScannerDiffers {
            what: WHAT,
            scanned: format!("{scanned:?}"),
            reference: format!("{tree}"),
        });
    }
    if let Some(r) = hit.source {
        check_decode_flat(&text[r])?;
    }
    Ok(())
}

/// One text as a search answer, as an export line and as a `_source` alone, with the
/// invariants of [`scan_json`] (which runs this on a dozen texts made from its bytes).
pub fn scan_json_text(text: &str) -> Result<(), BrokenInvariant> {
    check_text(text)
}

/// Pieces that break JSON or spell its rare cases, for mutating valid texts (the smoke test's
/// stand-in for coverage guidance).
pub const JSON_PIECES: &[&str] = &[
    "\\",
    "\"",
    "\\u",
    "\\ud800",
    "\\udc00\\ud800",
    "\\u0041",
    "\\x",
    "\\n",
    "e5",
    "E-3",
    ".",
    "-",
    "0",
    "00",
    "1e400",
    "-0",
    "1e300",
    "123456789012345678901",
    "}",
    "]",
    "{",
    "[",
    ",",
    ":",
    " ",
    "\t",
    "\r\n",
    "\u{1}",
    "\u{7f}",
    "é",
    "true",
    "nul",
    "null",
    "\"_id\":\"x\",",
    "\"sort\":[1],",
    "\"_source\":{},",
    "\"hits\":{},",
    "\"_shards\":{\"failed\":1},",
    "\"\\u005fsource\":{},",
    "\"a.b\":1,",
    "\"process\":{\"name\":[\"node\",{}]},",
];

/// A text as a search answer, as an export line and as a `_source` alone.
fn check_text(text: &str) -> Result<(), BrokenInvariant> {
    check_page(text)?;
    check_line(text)?;
    check_decode_flat(text)
}

/// The first hit's `_id` of [`page_text`] and [`line_text`] unless replaced.
const ID: &str = "_JXO_iAKzfv-wGk9m6Cc";

/// A process event as Elastic Defend writes one, for the built-in rule's fields.
const SOURCE: &str = r#"{"process":{"parent":{"name":"node","entity_id":"YTgy=="},"args":["sh","-c","echo \"}{\" \\"],"name":"dash","entity_id":"Zjk0"},"@timestamp":"2026-05-28T20:26:40.163Z","host":{"id":"417b","os":{"type":"linux"}},"event":{"action":"exec","type":["start"],"category":["process"]}}"#;

/// The same event in dotted keys, with an escaped name and numbers.
const DOTTED_SOURCE: &str = r#"{"@timestamp":"2026-11-29T10:00:03.000Z","event.action":"exec","event.type":["start"],"host.id":"5f0e","host.os.type":"linux","process.name":"n\u006fde","process.args":["node","npm","install"],"process.pid":2100,"process.parent.entity_id":"YzhkMm","x":-0.0,"a":[1.5e3,18446744073709551615,-7]}"#;

/// The sort values of [`page_text`]'s first hit unless replaced (between the brackets).
const SORT: &str = "1780000000163000000,17";

/// A point-in-time answer as Elasticsearch 9 writes one, around a first hit with `id`,
/// `source` and `sort` (the text between the sort array's brackets), and two more hits.
fn page_text(id: &str, source: &str, sort: &str) -> String {
    format!(
        r#"{{"pit_id":"gcSHBAEhbG9ncy1lbmRwb2ludC5ldmVudHMucHJvY2Vzcy1kZWZhdWx0FmVyd0p3==","took":12,"timed_out":false,"_shards":{{"total":1,"successful":1,"skipped":0,"failed":0}},"hits":{{"total":{{"value":10000,"relation":"gte"}},"max_score":null,"hits":[{{"_index":"logs-endpoint.events.process-default","_id":"{id}","_score":null,"_source":{source},"sort":[{sort}]}},{{"_index":"logs-crowdstrike.fdr-default","_id":"esc\"aped\u00e9","_score":null,"_ignored":["x"],"fields":{{"a":[1]}},"_source":{{"event.action":"ProcessRollup2"}},"sort":[-5,18]}},{{"_index":"i","_id":"no-source","sort":[1.5,19]}}]}}}}"#
    )
}

/// An export line (a hit as `seqwatch replay` reads it) with `id` and `source`.
fn line_text(id: &str, source: &str) -> String {
    format!(
        r#"{{"_index":".ds-logs-endpoint.events.process-default-2026.11.29-000001","_id":"{id}","_source":{source}}}"#
    )
}

/// The valid texts the fuzz bytes are cut into and spliced with.
fn templates() -> &'static Vec<String> {
    static TEMPLATES: OnceLock<Vec<String>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        vec![
            page_text(ID, SOURCE, SORT),
            page_text("dotted", DOTTED_SOURCE, "-5"),
            r#"{"pit_id":"p","took":1,"timed_out":false,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0},"hits":{"total":{"value":0,"relation":"eq"},"max_score":null,"hits":[]}}"#.to_owned(),
            line_text(ID, SOURCE),
            line_text("dotted", DOTTED_SOURCE),
        ]
    })
}

/// The character boundary at or before `at` (clamped to the text).
fn boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The hot path's JSON scanner (`event::scan`) against serde_json. The bytes are read as a
/// search answer, as an export line and as a `_source`; then put into valid ones as a hit's
/// `_source`, `_id` and sort values; then inserted into a valid answer or line, or spliced
/// with one, at places the last bytes choose. Each text goes through `scan_search_page` and
/// `scan_hit_line`, without a plan and with each of three plans (the built-in rule's among
/// them). Invariants: where the scanner reads a text, serde_json reads it too (a `_source`
/// the scanner only delimited excepted, when it is unreadable on its own: the caller's decode
/// refuses that one as a bad event) and to the same index, id, `_source` text, sort values,
/// `pit_id`, `timed_out` and `_shards`; a plan changes nothing but the decoded values; those
/// equal `decode_flat` of the `_source` alone and serde_json's tree of it, value for value; and
/// `decode_flat` refuses exactly what the tree refuses, in the same words.
pub fn scan_json(data: &[u8]) -> Result<(), BrokenInvariant> {
    let text = String::from_utf8_lossy(data);
    check_text(&text)?;
    check_text(&page_text(ID, &text, SORT))?;
    check_text(&page_text(&text, SOURCE, SORT))?;
    check_text(&page_text(ID, SOURCE, &text))?;
    check_text(&line_text(ID, &text))?;
    check_text(&line_text(&text, DOTTED_SOURCE))?;
    // Places and a template from the last bytes, so that mutations move them one by one.
    let from_end = |i: usize| {
        data.len()
            .checked_sub(i + 1)
            .map_or(0, |k| usize::from(data[k]))
    };
    let templates = templates();
    let template = templates[from_end(0) % templates.len()].as_str();
    let i = boundary(template, from_end(1) | from_end(2) << 8);
    let j = boundary(template, from_end(3) | from_end(4) << 8);
    let cut = boundary(&text, from_end(5) | from_end(6) << 8);
    check_text(&format!("{}{text}{}", &template[..i], &template[i..]))?;
    if i < j {
        check_text(&format!("{}{}", &template[..i], &template[j..]))?;
    }
    check_text(&format!("{}{}", &text[..cut], &template[j..]))?;
    check_text(&format!("{}{}", &template[..i], &text[cut..]))?;
    Ok(())
}
