//! `seqwatch replay`: a rule over exported hits, offline. Reads NDJSON hits in any order,
//! sorts them the way Elasticsearch orders events (timestamp, tiebreaker, then input order
//! standing in for `_shard_doc`), correlates them and writes one JSON line per detection.
//!
//! A line that is not a hit is counted and reported with its `file:line:column`, never fatal:
//! one bad export line must not hide the detections in the rest.

use std::io::{BufRead, Write};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::correlate::KeyValue;
use crate::engine::{sort_for_replay, CompiledRule, Correlation, Detection, Hit};

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
        let mut bad = |column: usize, message: String| {
            out.bad_line_count += 1;
            if out.bad_lines.len() < 100 {
                out.bad_lines.push(BadLine {
                    origin: origin.to_owned(),
                    line: n + 1,
                    column,
                    message,
                });
            }
        };
        let value: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                bad(e.column().max(1), format!("invalid JSON: {e}"));
                continue;
            }
        };
        let field = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .map(Arc::<str>::from)
        };
        let (Some(index), Some(id)) = (field("_index"), field("_id")) else {
            bad(1, "not a hit: needs string fields _index and _id".into());
            continue;
        };
        let Some(source) = value.get("_source").filter(|s| s.is_object()).cloned() else {
            bad(1, format!("hit {index}/{id} has no _source object"));
            continue;
        };
        out.hits.push(Hit { index, id, source });
    }
    Ok(out)
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
