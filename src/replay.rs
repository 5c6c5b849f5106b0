//! `seqwatch replay`: a rule over exported hits, offline. Reads NDJSON hits in any order,
//! sorts them the way Elasticsearch orders events (timestamp, tiebreaker, then input order
//! standing in for `_shard_doc`), correlates them and writes one JSON line per detection.
//!
//! A line that is not a hit is counted and reported with its `file:line:column`, never fatal:
//! one bad export line must not hide the detections in the rest.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::correlate::KeyValue;
use crate::engine::{sort_for_replay, CompiledRule, Correlation, Detection, Hit, ReplayOrder};
use crate::event::scan::{scan_hit_line, TextPart};
use crate::event::{decode_flat, scan_hit_line_flat, FlatDecode, FlatEvent, Skip};

/// A line of the input that is not a usable hit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}:{column}: {message}")]
pub struct BadLine {
    /// Input name.
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (1 when the problem is the line's shape, not a JSON syntax error).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Hits read from NDJSON, and the lines that were not hits.
#[derive(Debug, Default)]
pub struct ReadHits {
    /// The hits, in input order.
    pub hits: Vec<Hit>,
    /// Unusable lines.
    pub bad_lines: Vec<BadLine>,
    /// Total unusable lines (`bad_lines` keeps the first 100).
    pub bad_line_count: usize,
}

/// Reads `{"_index","_id","_source"}` lines. Blank lines are ignored.
pub fn read_hits(reader: impl BufRead, origin: &str) -> std::io::Result<ReadHits> {
    let mut out = ReadHits::default();
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match hit_from_tree(&line) {
            Ok(hit) => out.hits.push(hit),
            Err(e) => note_bad_line(
                &mut out.bad_lines,
                &mut out.bad_line_count,
                origin,
                n,
                e.column(),
                e.to_string(),
            ),
        }
    }
    Ok(out)
}

fn note_bad_line(
    bad_lines: &mut Vec<BadLine>,
    bad_line_count: &mut usize,
    origin: &str,
    n: usize,
    column: usize,
    message: String,
) {
    *bad_line_count += 1;
    if bad_lines.len() < 100 {
        bad_lines.push(BadLine {
            origin: origin.to_owned(),
            line: n + 1,
            column,
            message,
        });
    }
}

/// Why a line is no hit; its message is the [`BadLine`]'s.
#[derive(Debug, thiserror::Error)]
enum NotAHit {
    /// The line is not JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// `_index` or `_id` is missing or not a string.
    #[error("not a hit: needs string fields _index and _id")]
    NoIndexOrId,
    /// `_source` is missing or not an object.
    #[error("hit {index}/{id} has no _source object")]
    NoSource {
        /// The hit's index.
        index: Arc<str>,
        /// The hit's id.
        id: Arc<str>,
    },
}

impl NotAHit {
    /// The 1-based column of the problem: the JSON syntax error's, else 1 (the line's shape).
    fn column(&self) -> usize {
        match self {
            NotAHit::InvalidJson(e) => e.column().max(1),
            NotAHit::NoIndexOrId | NotAHit::NoSource { .. } => 1,
        }
    }
}

/// One line parsed whole into a tree: the hit's index, id and `_source`, or what makes it no
/// hit. The reference for [`scan_hits`], which takes this path for every line its text path
/// does not decide.
fn hit_from_tree(line: &str) -> Result<Hit, NotAHit> {
    let value: Value = serde_json::from_str(line).map_err(NotAHit::InvalidJson)?;
    let field = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .map(Arc::<str>::from)
    };
    let (Some(index), Some(id)) = (field("_index"), field("_id")) else {
        return Err(NotAHit::NoIndexOrId);
    };
    let Some(source) = value.get("_source").filter(|s| s.is_object()).cloned() else {
        return Err(NotAHit::NoSource { index, id });
    };
    Ok(Hit { index, id, source })
}

/// A hit of an export, its `_source` kept as text until it is correlated.
#[derive(Debug)]
pub struct ScannedHit<'t> {
    /// Concrete index (one shared copy per distinct index).
    pub index: Arc<str>,
    /// Document id, borrowed from the line unless it had escapes.
    pub id: Cow<'t, str>,
    /// The document.
    pub source: ScannedSource<'t>,
    /// Its place in the replay.
    pub order: ReplayOrder,
}

/// A scanned hit's `_source`.
#[derive(Debug)]
pub enum ScannedSource<'t> {
    /// The `_source` object's text, a slice of its line.
    Text(&'t str),
    /// The tree, for the rare line the text path hands to the tree parse.
    Tree(Value),
}

/// Hits scanned from an NDJSON export, and the lines that were not hits.
#[derive(Debug, Default)]
pub struct ScannedHits<'t> {
    /// The hits, in input order.
    pub hits: Vec<ScannedHit<'t>>,
    /// Unusable lines (the first 100).
    pub bad_lines: Vec<BadLine>,
    /// Total unusable lines.
    pub bad_line_count: usize,
}

/// [`read_hits`] over a whole export held as text, for `rule`: each `_source` stays a slice of
/// its line and only the fields [`CompiledRule::replay_order`] sorts by are decoded. Hits,
/// bad lines and their words are exactly [`read_hits`]'; a line whose text is unusual in any
/// way (not a hit, bad JSON, a duplicate `_source`, a `_source` the flat decode hands to the
/// tree, nesting near the parser's depth limit) is read through [`read_hits`]' tree path.
pub fn scan_hits<'t>(text: &'t str, origin: &str, rule: &CompiledRule) -> ScannedHits<'t> {
    let plan = rule.replay_order_plan();
    let mut order_event = FlatEvent::default();
    let mut indices: HashMap<&'t str, Arc<str>> = HashMap::new();
    let mut out = ScannedHits::default();
    for (n, line) in ndjson_lines(text).enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(parts) = scan_line(line) {
            let order = match decode_flat(parts.source, &plan, &mut order_event) {
                Ok(FlatDecode::Decoded) => Some(rule.replay_order(&order_event)),
                _ => None,
            };
            if let Some(order) = order {
                let index = shared_index(&mut indices, parts.index);
                out.hits.push(ScannedHit {
                    index,
                    id: parts.id,
                    source: ScannedSource::Text(parts.source),
                    order,
                });
                continue;
            }
        }
        match hit_from_tree(line) {
            Ok(Hit { index, id, source }) => {
                let order = rule.replay_order(&source);
                out.hits.push(ScannedHit {
                    index,
                    id: Cow::Owned(id.as_ref().to_owned()),
                    source: ScannedSource::Tree(source),
                    order,
                });
            }
            Err(e) => note_bad_line(
                &mut out.bad_lines,
                &mut out.bad_line_count,
                origin,
                n,
                e.column(),
                e.to_string(),
            ),
        }
    }
    out
}

/// One shared copy of each index name borrowed from the text (index names repeat hit after
/// hit); a name that had to be unescaped is copied on its own.
fn shared_index<'t>(indices: &mut HashMap<&'t str, Arc<str>>, name: Cow<'t, str>) -> Arc<str> {
    match name {
        Cow::Borrowed(key) => indices
            .entry(key)
            .or_insert_with(|| Arc::<str>::from(key))
            .clone(),
        Cow::Owned(owned) => Arc::<str>::from(owned),
    }
}

/// The lines of `text` exactly as [`BufRead::lines`] splits them: on `\n`, a `\r` before it
/// dropped, no empty last line after a final `\n`.
fn ndjson_lines(text: &str) -> impl Iterator<Item = &str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let ends_in_newline = body.len() != text.len();
    let mut lines = if text.is_empty() {
        None
    } else {
        Some(body.split('\n'))
    };
    let mut pending = lines.as_mut().and_then(Iterator::next);
    std::iter::from_fn(move || {
        let line = pending.take()?;
        pending = lines.as_mut().and_then(Iterator::next);
        // Every line but the last ended in `\n`; the last one did if the text did.
        let terminated = pending.is_some() || ends_in_newline;
        Some(if terminated {
            line.strip_suffix('\r').unwrap_or(line)
        } else {
            line
        })
    })
}

/// What the text path takes from a line that is plainly a hit.
struct LineParts<'t> {
    index: Cow<'t, str>,
    id: Cow<'t, str>,
    source: &'t str,
}

/// The index, id and `_source` text of a line that is plainly a hit: one JSON object with
/// string `_index` and `_id` and one `_source` object. `None` sends the line to the tree path,
/// which decides it as [`read_hits`] does. Every value but `_source` is read through the
/// parser paths a tree takes (same checks); `_source` is only delimited here, then checked by
/// [`decode_flat`], which refuses what a tree parse refuses.
fn scan_line(line: &str) -> Option<LineParts<'_>> {
    use serde::de::DeserializeSeed;

    // The one-pass scanner first; it gives up on anything unusual (a repeated key among
    // others), which the serde reading below then decides.
    if let Some(hit) = scan_hit_line(line, None) {
        let source = &line[hit.source?];
        if may_reach_depth_limit(source) {
            return None;
        }
        return Some(LineParts {
            index: line_text(line, hit.index),
            id: line_text(line, hit.id),
            source,
        });
    }
    let mut de = serde_json::Deserializer::from_str(line);
    let top = LineSeed.deserialize(&mut de).ok()?;
    de.end().ok()?;
    let top = top?;
    if top.duplicate_source {
        return None;
    }
    let source = top.source?.get();
    if !source.starts_with('{') || may_reach_depth_limit(source) {
        return None;
    }
    Some(LineParts {
        index: top.index?,
        id: top.id?,
        source,
    })
}

/// A string the scanner found in `line`, borrowed unless escapes changed it.
fn line_text(line: &str, part: TextPart) -> Cow<'_, str> {
    match part {
        TextPart::Span(r) => Cow::Borrowed(&line[r]),
        TextPart::Owned(s) => Cow::Owned(s),
    }
}

/// serde_json refuses a value nested more than 127 levels deep. `_source` sits one level
/// down in its line, so the line's tree parse refuses a `_source` of exactly 127 levels
/// that parses alone; any `_source` with that many brackets goes to the tree path.
fn may_reach_depth_limit(source: &str) -> bool {
    const LINE_DEPTH_FOR_SOURCE: usize = 127;
    source.len() >= 2 * LINE_DEPTH_FOR_SOURCE
        && source.bytes().filter(|&b| b == b'{' || b == b'[').count() >= LINE_DEPTH_FOR_SOURCE
}

/// The top-level keys [`scan_line`] reads (the last of a repeated key wins, as in a tree).
struct LineTop<'t> {
    index: Option<Cow<'t, str>>,
    id: Option<Cow<'t, str>>,
    source: Option<&'t RawValue>,
    duplicate_source: bool,
}

/// The line's top-level value; `None` when it is not an object.
struct LineSeed;

impl<'de> serde::de::DeserializeSeed<'de> for LineSeed {
    type Value = Option<LineTop<'de>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for LineSeed {
    type Value = Option<LineTop<'de>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut top = LineTop {
            index: None,
            id: None,
            source: None,
            duplicate_source: false,
        };
        // Keys are strings, so `StringOrSkip` always gives one (borrowed unless escaped).
        while let Some(key) = map.next_key_seed(StringOrSkip)? {
            match key.as_deref().unwrap_or_default() {
                "_index" => top.index = map.next_value_seed(StringOrSkip)?,
                "_id" => top.id = map.next_value_seed(StringOrSkip)?,
                "_source" => {
                    // A repeated `_source` goes to the tree path, where each copy is checked.
                    top.duplicate_source |= top.source.is_some();
                    top.source = Some(map.next_value::<&'de RawValue>()?);
                }
                _ => map.next_value_seed(Skip)?,
            }
        }
        Ok(Some(top))
    }

    fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A value that counts only if it is a string (borrowed unless escaped); any other is read
/// and dropped.
struct StringOrSkip;

impl<'de> serde::de::DeserializeSeed<'de> for StringOrSkip {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StringOrSkip {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(None)
    }
    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(None)
    }
}

/// [`scan_hits`] then [`correlate_scanned`] in one pass, for an export already in replay order
/// (as Elasticsearch returns hits: by time). Each `_source` is decoded once, for the rule, and
/// its place in the order read from that decode, instead of once for the sort and again for
/// the rule. `None` as soon as the pass meets anything the two-pass path must decide: a hit
/// that sorts before the one above it, a line that is not plainly a hit, a `_source` the flat
/// decode hands to the tree, an error. The caller then runs the two-pass path from the start.
/// When it returns `Some`, the hits went to the correlator in the order the stable sort would
/// have left them, so the detections, counts and bad events are the two-pass path's.
pub fn correlate_sorted_text(
    rule: &CompiledRule,
    text: &str,
    max: usize,
) -> Option<(Correlation, usize)> {
    let plan = rule.plan();
    if !plan.decodes_flat() {
        return None;
    }
    let mut correlator = rule.correlator(max);
    let mut event = FlatEvent::default();
    let mut indices: HashMap<&str, Arc<str>> = HashMap::new();
    let mut previous: Option<ReplayOrder> = None;
    let mut hits = 0;
    for line in ndjson_lines(text) {
        if line.trim().is_empty() {
            continue;
        }
        // One pass over the line: `_source` decoded as it is read. A line the scanner leaves
        // undecided takes the delimit-then-decode path, which decides as before.
        let (index, id) = match scan_hit_line_flat(line, plan, &mut event) {
            Some((hit, true)) => (line_text(line, hit.index), line_text(line, hit.id)),
            _ => {
                let parts = scan_line(line)?;
                if !matches!(
                    decode_flat(parts.source, plan, &mut event),
                    Ok(FlatDecode::Decoded)
                ) {
                    return None;
                }
                (parts.index, parts.id)
            }
        };
        let order = rule.replay_order(&event);
        if previous.as_ref().is_some_and(|p| order < *p) {
            return None;
        }
        previous = Some(order);
        let index = shared_index(&mut indices, index);
        correlator.push_event(&index, &id, &event, None).ok()?;
        hits += 1;
    }
    Some((correlator.finish(), hits))
}

/// [`correlate`] of scanned hits: sorted by [`ScannedHit::order`] (stable, so ties keep input
/// order), each `_source` text decoded flat for the rule into one reused [`FlatEvent`].
pub fn correlate_scanned(
    rule: &CompiledRule,
    mut hits: Vec<ScannedHit<'_>>,
    max: usize,
) -> Result<Correlation, crate::engine::CorrelateError> {
    hits.sort_by(|a, b| a.order.cmp(&b.order));
    let mut c = rule.correlator(max);
    let mut event = FlatEvent::default();
    for h in &hits {
        match &h.source {
            ScannedSource::Text(text) => c.push_source(&h.index, &h.id, text, None, &mut event)?,
            ScannedSource::Tree(tree) => c.push_event(&h.index, &h.id, tree, None)?,
        }
    }
    Ok(c.finish())
}

/// Sorts and correlates hits; keeps the latest `max` detections.
pub fn correlate(
    rule: &CompiledRule,
    mut hits: Vec<Hit>,
    max: usize,
) -> Result<Correlation, crate::engine::CorrelateError> {
    sort_for_replay(rule, &mut hits);
    let mut c = rule.correlator(max);
    for h in &hits {
        c.push(h)?;
    }
    Ok(c.finish())
}

fn key_json(k: &KeyValue) -> Value {
    match k {
        KeyValue::Null => Value::Null,
        KeyValue::Bool(b) => json!(b),
        KeyValue::Int(i) => json!(i),
        KeyValue::Float(bits) => json!(f64::from_bits(*bits)),
        KeyValue::Str(s) => json!(s.as_ref()),
    }
}

/// The output line of one detection: `{"join_keys": […], "events": [{"_index","_id"}, …]}`
/// for a sequence (a missing-event stage is `null`), `{"_index","_id"}` for an event query.
pub fn detection_json(d: &Detection, sequence: bool) -> Value {
    let ev = |e: &crate::engine::EventRef| {
        let mut m = Map::new();
        m.insert("_index".into(), json!(e.index.as_ref()));
        m.insert("_id".into(), json!(e.id.as_ref()));
        Value::Object(m)
    };
    if !sequence {
        return d.present_events().next().map(ev).unwrap_or(Value::Null);
    }
    json!({
        "join_keys": d.join_keys.iter().map(key_json).collect::<Vec<_>>(),
        "events": d.events.iter().map(|e| e.as_ref().map(ev).unwrap_or(Value::Null)).collect::<Vec<_>>(),
    })
}

/// Writes one line per detection.
pub fn write_detections(
    out: &mut impl Write,
    c: &Correlation,
    sequence: bool,
) -> std::io::Result<()> {
    for d in &c.detections {
        serde_json::to_writer(&mut *out, &detection_json(d, sequence))?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineOptions;
    use crate::generate::{GenerateSpec, Generator};
    use crate::rule::Rule;
    use proptest::prelude::*;

    fn hit_line(index: &str, id: &str, source: &str) -> String {
        format!(
            r#"{{"_index":{},"_id":{},"_source":{source}}}"#,
            json!(index),
            json!(id)
        )
    }

    fn nested(depth: usize) -> String {
        format!(
            r#"{{"@timestamp":"2026-06-01T00:00:00Z","deep":{}1{}}}"#,
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    }

    /// The `_source` of a stage-1 candidate of the built-in rule, after `prefix`.
    fn npm_install(prefix: &str) -> String {
        format!(
            r#"{{{prefix}"event":{{"category":["process"],"type":["start"],"action":"exec"}},"host":{{"id":"h","os":{{"type":"linux"}}}},"process":{{"name":"node","args":["npm","install"],"entity_id":"n"}}}}"#
        )
    }

    /// A generated stream, shuffled, with every odd line we could think of in between.
    fn export() -> (String, usize) {
        let spec = GenerateSpec {
            hosts: 30,
            rate: 40.0,
            from_ms: 1_780_000_000_000,
            to_ms: 1_780_000_000_000 + 90_000,
            seed: 5,
            installs_per_host_hour: 400.0,
            script_rate: 0.6,
            malicious_rate: 0.3,
        };
        let mut lines: Vec<String> = Generator::new(spec)
            .expect("valid spec")
            .map(|h| hit_line(h.index, &h.id, &h.source))
            .collect();
        // Any input order: reverse, then interleave halves, so timestamps are out of order.
        lines.reverse();
        let (a, b) = lines.split_at(lines.len() / 2);
        let mut mixed: Vec<String> = a
            .iter()
            .zip(b)
            .flat_map(|(x, y)| [y.clone(), x.clone()])
            .collect();
        let generated = mixed.len();
        let ts = r#""@timestamp":"2026-06-01T00:00:00Z""#;
        let odd = [
            "{\"_index\": \"i\", \"_id\": ".to_owned(),
            "[1, 2]".to_owned(),
            "\"hit\"".to_owned(),
            r#"{"_index": "i", "_source": {}}"#.to_owned(),
            r#"{"_index": 7, "_id": "x", "_source": {}}"#.to_owned(),
            r#"{"_index": "i", "_id": "x", "_index": 7, "_source": {}}"#.to_owned(),
            r#"{"_index": "i", "_id": "x"}"#.to_owned(),
            r#"{"_index": "i", "_id": "x", "_source": null}"#.to_owned(),
            r#"{"_index": "i", "_id": "x", "_source": [1e400]}"#.to_owned(),
            r#"{"_index": "i", "_id": "x", "_source": {"a": 1e400}}"#.to_owned(),
            r#"{"_index": "i", "_id": "x", "_source": {"a": "\ud800"}}"#.to_owned(),
            r#"{"_index": "i", "_id": "x", "other": 1e400, "_source": {}}"#.to_owned(),
            format!(
                r#"{{"_index": "i", "_id": "dup", "_source": {{"a": 1e400}}, "_source": {{{ts}}}}}"#
            ),
            format!(r#"{{"_index": "i", "_id": "dup2", "_source": [], "_source": {{{ts}}}}}"#),
            format!(
                r#"{{"_index": "i", "_id": "tangled", "_source": {{{ts}, "process.name": "node", "process": {{"name": "x"}}}}}}"#
            ),
            format!(r#"{{"_ind\u0065x": "esc", "_id": "a\"b", "_source": {{{ts}}}}}"#),
            hit_line("i", "no-time", &npm_install("")),
            hit_line(
                "i",
                "bad-time",
                &npm_install(r#""@timestamp":"yesterday","#),
            ),
            format!("{{\"_index\": \"i\", \"_id\": \"crlf\", \"_source\": {{{ts}}}}}\r"),
            "   ".to_owned(),
            String::new(),
            hit_line("i", "deep-126", &nested(126)),
            hit_line("i", "deep-127", &nested(127)),
            hit_line("i", "deep-128", &nested(128)),
            "{\"_index\": \"i\", \"_id\": \"ctl\", \"_source\": {\"a\": \"\u{1}\"}}".to_owned(),
        ];
        for (i, line) in odd.into_iter().enumerate() {
            mixed.insert((i * 37) % generated, line);
        }
        (mixed.join("\n") + "\n", generated)
    }

    /// The text path must read, sort and correlate exactly as the tree path (`read_hits`,
    /// `correlate`) does: same hits, same bad lines with the same words, same detections.
    /// One pass over an export already in replay order gives exactly the two-pass result
    /// (detections, counts, matcher state); disorder or an odd line leaves it to the two passes.
    #[test]
    fn a_sorted_export_is_correlated_in_one_pass_exactly_like_two() {
        let spec = GenerateSpec {
            hosts: 30,
            rate: 40.0,
            from_ms: 1_780_000_000_000,
            to_ms: 1_780_000_000_000 + 90_000,
            seed: 11,
            installs_per_host_hour: 400.0,
            script_rate: 0.6,
            malicious_rate: 0.3,
        };
        let lines: Vec<String> = Generator::new(spec)
            .expect("valid spec")
            .map(|h| hit_line(h.index, &h.id, &h.source))
            .collect();
        let rule = Rule::builtin().expect("the built-in rule loads");
        let compiled =
            CompiledRule::compile(&rule, EngineOptions::ecs_process()).expect("compiles");
        let text = lines.join("\n") + "\n";
        for max in [usize::MAX, 3] {
            let (one, hits) =
                correlate_sorted_text(&compiled, &text, max).expect("generated in time order");
            let scanned = scan_hits(&text, "export.ndjson", &compiled);
            assert_eq!(scanned.bad_line_count, 0);
            assert_eq!(hits, scanned.hits.len());
            let two = correlate_scanned(&compiled, scanned.hits, max).expect("sorted");
            assert!(two.stats.detections > 5, "{:?}", two.stats);
            assert_eq!(one.stats, two.stats);
            assert_eq!(one.detections, two.detections);
            assert_eq!(one.matcher, two.matcher);
        }

        let reversed = lines.iter().rev().cloned().collect::<Vec<_>>().join("\n");
        assert!(correlate_sorted_text(&compiled, &reversed, 100).is_none());
        let with_odd_line = format!("{}\n[1, 2]\n{}", lines[0], lines[1..].join("\n"));
        assert!(correlate_sorted_text(&compiled, &with_odd_line, 100).is_none());
        let (mixed, _) = export();
        assert!(correlate_sorted_text(&compiled, &mixed, 100).is_none());
    }

    #[test]
    fn scanning_text_replays_exactly_like_reading_trees() {
        let (text, generated) = export();
        let rule = Rule::builtin().expect("the built-in rule loads");
        let compiled =
            CompiledRule::compile(&rule, EngineOptions::ecs_process()).expect("compiles");

        let read = read_hits(text.as_bytes(), "export.ndjson").expect("in memory");
        let scanned = scan_hits(&text, "export.ndjson", &compiled);
        assert_eq!(scanned.bad_lines, read.bad_lines);
        assert_eq!(scanned.bad_line_count, read.bad_line_count);
        assert_eq!(read.bad_line_count, 16, "{:#?}", read.bad_lines);
        assert!(read
            .bad_lines
            .iter()
            .any(|b| b.message.contains("recursion limit")));
        assert_eq!(scanned.hits.len(), read.hits.len());
        assert_eq!(scanned.hits.len(), generated + 7);
        let trees = scanned
            .hits
            .iter()
            .filter(|h| matches!(h.source, ScannedSource::Tree(_)))
            .count();
        // The tangled one is tangled only for the rule's plan: `push_source` hands it to the tree.
        assert_eq!(trees, 1, "the duplicate `_source`");
        for (s, r) in scanned.hits.iter().zip(&read.hits) {
            assert_eq!((&s.index, s.id.as_ref()), (&r.index, r.id.as_ref()));
        }

        let tree = correlate(&compiled, read.hits, usize::MAX).expect("sorted");
        let text_result = correlate_scanned(&compiled, scanned.hits, usize::MAX).expect("sorted");
        assert!(tree.stats.detections > 5, "{:?}", tree.stats);
        assert_eq!(
            tree.stats.bad_events, 2,
            "{:?}",
            tree.stats.bad_event_samples
        );
        assert_eq!(text_result.stats, tree.stats);
        assert_eq!(text_result.detections, tree.detections);
        assert_eq!(text_result.matcher, tree.matcher);
    }

    /// With a tiebreaker, equal timestamps order by it (hits without one last), then by input
    /// order, on both paths alike; a tiebreaker of two values orders as none.
    #[test]
    fn tiebreakers_order_the_text_path_like_the_tree_path() {
        let mut rule = Rule::builtin().expect("the built-in rule loads");
        rule.tiebreaker_field = Some("event.sequence".into());
        let compiled =
            CompiledRule::compile(&rule, EngineOptions::ecs_process()).expect("compiles");
        let event = |seq: &str, name: &str, args: &str, entity: &str, parent: &str| {
            format!(
                r#"{{"@timestamp":"2026-06-01T00:00:01Z","event":{{"category":["process"],{seq}"type":["start"],"action":"exec"}},"host":{{"id":"h","os":{{"type":"linux"}}}},"process":{{"name":"{name}","args":[{args}],"entity_id":"{entity}","parent":{{"name":"node","entity_id":"{parent}"}}}}}}"#
            )
        };
        let lines = [
            hit_line("i", "child-none", &event("", "sh", r#""sh""#, "c0", "n1")),
            hit_line(
                "i",
                "child-2",
                &event(r#""sequence":2,"#, "sh", r#""sh""#, "c2", "n1"),
            ),
            hit_line(
                "i",
                "npm-1",
                &event(r#""sequence":1,"#, "node", r#""npm","install""#, "n1", "x"),
            ),
            hit_line(
                "i",
                "child-multi",
                &event(r#""sequence":[0,5],"#, "sh", r#""sh""#, "c3", "n1"),
            ),
            hit_line(
                "i",
                "child-3",
                &event(r#""sequence":3,"#, "sh", r#""sh""#, "c4", "n1"),
            ),
        ];
        let text = lines.join("\n");
        let read = read_hits(text.as_bytes(), "t").expect("in memory");
        let scanned = scan_hits(&text, "t", &compiled);
        assert_eq!(scanned.bad_line_count, 0);
        let tree = correlate(&compiled, read.hits, 100).expect("sorted");
        let flat = correlate_scanned(&compiled, scanned.hits, 100).expect("sorted");
        assert_eq!(flat.detections, tree.detections);
        assert_eq!(flat.stats, tree.stats);
        assert_eq!(tree.detections.len(), 1, "{:?}", tree.detections);
        assert_eq!(tree.stats.bad_events, 1, "child-multi: {:?}", tree.stats);
        assert_eq!(
            tree.detections[0].events[1].as_ref().map(|e| e.id.as_ref()),
            Some("child-2"),
            "npm-1 then child-2 (the next tiebreaker) completes the one sequence"
        );
    }

    proptest! {
        /// `ndjson_lines` splits like `BufRead::lines`, so line numbers and columns agree.
        #[test]
        fn ndjson_lines_split_like_bufread_lines(text in "[a\r\n ]{0,12}") {
            let expected: Vec<String> = text.as_bytes().lines().map(|l| l.expect("utf-8")).collect();
            let got: Vec<&str> = ndjson_lines(&text).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
