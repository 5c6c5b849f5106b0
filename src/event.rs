//! Field access over a hit's `_source`, the event timestamp, and join-key extraction.
//!
//! Elasticsearch indexes `{"process.name": x}`, `{"process": {"name": x}}` and every mixed
//! spelling as the same field `process.name`, flattens arrays (of scalars and of objects) and
//! does not index `null` or `[]`. This module reproduces that view of a document so the
//! evaluator and the matcher see what an ES query would see. It owns no EQL semantics and
//! never panics on input: any JSON shape is accepted.

use serde_json::Value;

/// The values of one field in one document, flattened the way Elasticsearch indexes them.
///
/// Yields only scalars (strings, numbers, booleans): JSON `null` counts as missing, arrays are
/// flattened, and an object found at the full path is not a value of that field.
#[derive(Debug, Clone)]
pub struct FieldValues<'a> {
    repr: Repr<'a>,
}

#[derive(Debug, Clone)]
enum Repr<'a> {
    Empty,
    One(Option<&'a Value>),
    /// A flat array of scalars and nulls, found at the only spelling present.
    Slice(std::slice::Iter<'a, Value>),
    Many(std::vec::IntoIter<&'a Value>),
}

impl<'a> Iterator for FieldValues<'a> {
    type Item = &'a Value;

    fn next(&mut self) -> Option<&'a Value> {
        match &mut self.repr {
            Repr::Empty => None,
            Repr::One(v) => v.take(),
            Repr::Slice(it) => it.by_ref().find(|v| !v.is_null()),
            Repr::Many(it) => it.next(),
        }
    }
}

impl FieldValues<'_> {
    /// True when the field has no value at all (missing, null, or only empty arrays).
    pub fn is_missing(&self) -> bool {
        self.clone().next().is_none()
    }
}

/// Collects matches while walking the document; allocates only from the second spelling on.
enum Collector<'a> {
    Empty,
    One(&'a Value),
    Slice(&'a [Value]),
    Many(Vec<&'a Value>),
}

impl<'a> Collector<'a> {
    fn make_many(&mut self) -> &mut Vec<&'a Value> {
        let prev = std::mem::replace(self, Collector::Empty);
        let mut vec = Vec::new();
        match prev {
            Collector::Empty => {}
            Collector::One(v) => vec.push(v),
            Collector::Slice(items) => vec.extend(items.iter().filter(|v| !v.is_null())),
            Collector::Many(v) => vec = v,
        }
        *self = Collector::Many(vec);
        match self {
            Collector::Many(v) => v,
            // Just assigned above.
            _ => unreachable!("collector was set to Many"),
        }
    }

    fn push_scalar(&mut self, v: &'a Value) {
        match self {
            Collector::Empty => *self = Collector::One(v),
            _ => self.make_many().push(v),
        }
    }

    /// Adds the values found at the terminal path: scalars, and arrays flattened.
    fn push_terminal(&mut self, v: &'a Value, depth: usize) {
        match v {
            Value::Null | Value::Object(_) => {}
            Value::Array(items) => {
                let flat = items
                    .iter()
                    .all(|i| !matches!(i, Value::Array(_) | Value::Object(_)));
                if flat && matches!(self, Collector::Empty) {
                    *self = Collector::Slice(items);
                } else if depth < MAX_DEPTH {
                    for item in items {
                        self.push_terminal(item, depth + 1);
                    }
                }
            }
            scalar => self.push_scalar(scalar),
        }
    }
}

/// Nesting beyond this is not followed. serde_json refuses to parse deeper documents
/// (recursion limit 128), so this only guards hand-built values.
const MAX_DEPTH: usize = 256;

/// All values of the field at dotted `path` in `source`.
///
/// Every spelling counts: `process.parent.name` is found under `{"process.parent.name": …}`,
/// `{"process": {"parent": {"name": …}}}`, `{"process.parent": {"name": …}}` and
/// `{"process": {"parent.name": …}}`, and when several are present all their values are
/// returned (ES indexes them all). No allocation unless values come from more than one place.
pub fn field_values<'a>(source: &'a Value, path: &str) -> FieldValues<'a> {
    let mut collector = Collector::Empty;
    visit(source, path, &mut collector, 0);
    let repr = match collector {
        Collector::Empty => Repr::Empty,
        Collector::One(v) => Repr::One(Some(v)),
        Collector::Slice(items) => Repr::Slice(items.iter()),
        Collector::Many(v) => Repr::Many(v.into_iter()),
    };
    FieldValues { repr }
}

fn visit<'a>(node: &'a Value, path: &str, out: &mut Collector<'a>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match node {
        Value::Object(map) => {
            for (key, child) in map {
                if key == path {
                    out.push_terminal(child, depth);
                } else if let Some(rest) = path
                    .strip_prefix(key.as_str())
                    .and_then(|r| r.strip_prefix('.'))
                {
                    if !key.is_empty() {
                        visit(child, rest, out, depth + 1);
                    }
                }
            }
        }
        // Arrays of objects: `{"process": [{"name": "a"}, {"name": "b"}]}` gives both names.
        Value::Array(items) => {
            for item in items {
                visit(item, path, out, depth + 1);
            }
        }
        _ => {}
    }
}

/// True when an object (or an array holding one) sits at the full `path` in `source`: a value
/// [`field_values`] leaves out, because ES cannot index an object as a field's value. A join key
/// of that shape is a bad event, not a missing key: ES refuses such a document in an index
/// that maps the field, and refuses the whole query when another index maps it as an object
/// (`handleSpecialFields` in `ES: x-pack/plugin/ql/.../analyzer/AnalyzerRules.java`).
pub fn has_object_value(source: &Value, path: &str) -> bool {
    fn terminal(v: &Value, depth: usize) -> bool {
        match v {
            Value::Object(_) => true,
            Value::Array(items) if depth < MAX_DEPTH => {
                items.iter().any(|i| terminal(i, depth + 1))
            }
            _ => false,
        }
    }
    fn walk(node: &Value, path: &str, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match node {
            Value::Object(map) => map.iter().any(|(key, child)| {
                if key == path {
                    terminal(child, depth)
                } else {
                    !key.is_empty()
                        && path
                            .strip_prefix(key.as_str())
                            .and_then(|r| r.strip_prefix('.'))
                            .is_some_and(|rest| walk(child, rest, depth + 1))
                }
            }),
            Value::Array(items) => items.iter().any(|i| walk(i, path, depth + 1)),
            _ => false,
        }
    }
    walk(source, path, 0)
}

/// Why a timestamp could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// The document has no value for the timestamp field.
    #[error("timestamp field `{field}` is missing")]
    Missing {
        /// The timestamp field.
        field: String,
    },
    /// The field holds more than one value (ES refuses multi-valued timestamps).
    #[error("timestamp field `{field}` has {count} values; exactly one is required")]
    MultiValued {
        /// The timestamp field.
        field: String,
        /// How many values were found.
        count: usize,
    },
    /// The value is not a date ES would accept.
    #[error("timestamp field `{field}` has unparsable value {value}")]
    Unparsable {
        /// The timestamp field.
        field: String,
        /// The offending value, as JSON (truncated to 100 characters).
        value: String,
    },
}

/// The event time of `source`, read from `field` (usually `@timestamp`), in epoch nanoseconds.
///
/// Missing and multi-valued timestamps are errors, as in ES (`ES: execution/search/Timestamp.java`).
pub fn event_timestamp(source: &Value, field: &str) -> Result<i64, TimestampError> {
    let mut values = field_values(source, field);
    let first = values.next().ok_or_else(|| TimestampError::Missing {
        field: field.to_owned(),
    })?;
    let rest = values.count();
    if rest > 0 {
        return Err(TimestampError::MultiValued {
            field: field.to_owned(),
            count: rest + 1,
        });
    }
    parse_timestamp_value(first).ok_or_else(|| TimestampError::Unparsable {
        field: field.to_owned(),
        value: truncate_for_error(&first.to_string()),
    })
}

fn truncate_for_error(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Parses one JSON value as an ES `date` field with the default format
/// `strict_date_optional_time||epoch_millis`: an ISO string first, then epoch millis (number
/// or numeric string). Returns epoch nanoseconds, or `None` when ES would reject the value.
pub fn parse_timestamp_value(value: &Value) -> Option<i64> {
    match value {
        Value::String(s) => parse_iso_timestamp(s).or_else(|| parse_epoch_millis_str(s)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.checked_mul(1_000_000)
            } else {
                millis_f64_to_nanos(n.as_f64()?)
            }
        }
        _ => None,
    }
}

fn millis_f64_to_nanos(ms: f64) -> Option<i64> {
    let nanos = (ms * 1_000_000.0).round();
    if nanos.is_finite() && nanos >= i64::MIN as f64 && nanos <= i64::MAX as f64 {
        Some(nanos as i64)
    } else {
        None
    }
}

fn parse_epoch_millis_str(s: &str) -> Option<i64> {
    let bytes = s.as_bytes();
    let body = bytes.strip_prefix(b"-").unwrap_or(bytes);
    if body.is_empty() || !body.iter().all(|b| b.is_ascii_digit() || *b == b'.') {
        return None;
    }
    if let Ok(i) = s.parse::<i64>() {
        return i.checked_mul(1_000_000);
    }
    millis_f64_to_nanos(s.parse::<f64>().ok()?)
}

/// `strict_date_optional_time` (and its `_nanos` variant): `yyyy[-MM[-dd[Thh[:mm[:ss[.f…]]]]]]`
/// with an optional `Z` or `±hh[:mm]` zone (UTC when absent); fraction up to 9 digits.
pub fn parse_iso_timestamp(s: &str) -> Option<i64> {
    let mut p = Cursor {
        b: s.as_bytes(),
        i: 0,
    };
    let year = p.digits(4)? as i32;
    let (mut month, mut day, mut hour, mut minute, mut second, mut nanos) = (1, 1, 0, 0, 0, 0i64);
    let mut offset_secs = 0i64;
    'parse: {
        if !p.eat(b'-') {
            break 'parse;
        }
        month = p.digits(2)?;
        if !p.eat(b'-') {
            break 'parse;
        }
        day = p.digits(2)?;
        if !p.eat(b'T') {
            break 'parse;
        }
        hour = p.digits(2)?;
        if p.eat(b':') {
            minute = p.digits(2)?;
            if p.eat(b':') {
                second = p.digits(2)?;
                if p.eat(b'.') || p.eat(b',') {
                    let start = p.i;
                    while p.i < p.b.len() && p.b[p.i].is_ascii_digit() {
                        p.i += 1;
                    }
                    let frac = &s[start..p.i];
                    if frac.is_empty() || frac.len() > 9 {
                        return None;
                    }
                    let scaled = format!("{frac:0<9}");
                    nanos = scaled.parse().ok()?;
                }
            }
        }
        if p.eat(b'Z') {
            break 'parse;
        }
        let sign = if p.eat(b'+') {
            1
        } else if p.eat(b'-') {
            -1
        } else {
            break 'parse;
        };
        let oh = i64::from(p.digits(2)?);
        // `+hh:mm`, `+hhmm` or `+hh`.
        let om = if p.eat(b':') || p.i < p.b.len() {
            i64::from(p.digits(2)?)
        } else {
            0
        };
        if oh > 18 || om > 59 {
            return None;
        }
        offset_secs = sign * (oh * 3600 + om * 60);
    }
    if p.i != p.b.len() {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(year, month, day)?;
    let time = chrono::NaiveTime::from_hms_opt(hour, minute, second)?;
    let secs = date.and_time(time).and_utc().timestamp() - offset_secs;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn eat(&mut self, c: u8) -> bool {
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn digits(&mut self, n: usize) -> Option<u32> {
        let chunk = self.b.get(self.i..self.i + n)?;
        if !chunk.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(
            chunk
                .iter()
                .fold(0, |acc, d| acc * 10 + u32::from(d - b'0')),
        )
    }
}

/// A join key field to extract: its dotted path and whether it is optional (`?field`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    /// Dotted field path.
    pub path: String,
    /// `?field`: a missing value joins as null instead of dropping the event.
    pub optional: bool,
}

/// One key field's values for one event: `None` stands for the null of an optional key.
pub type KeyFieldValues<'a> = Vec<Option<&'a Value>>;

/// The values of each key field of an event, in key order, for the matcher's cartesian
/// expansion (`ES: execution/sequence/TumblingWindow.java`, `extractJoinKeys`).
///
/// Returns `None` ("dropped") when a non-optional key has no value: ES adds `exists` on every
/// non-optional key (`AddMandatoryJoinKeyFilter` in `ES: optimizer/Optimizer.java`), so such
/// an event never reaches the sequence matcher. An optional key with no value gives one null.
/// Values are de-duplicated (first occurrence kept) so one combination is not matched twice.
pub fn extract_keys<'a>(source: &'a Value, keys: &[KeySpec]) -> Option<Vec<KeyFieldValues<'a>>> {
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let mut values: KeyFieldValues<'a> = Vec::new();
        for v in field_values(source, &key.path) {
            if !values.contains(&Some(v)) {
                values.push(Some(v));
            }
        }
        if values.is_empty() {
            if key.optional {
                values.push(None);
            } else {
                return None;
            }
        }
        out.push(values);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_values_are_found_under_every_spelling() {
        for doc in [
            json!({"host": {"id": {"x": 1}}}),
            json!({"host.id": {"x": 1}}),
            json!({"host": [{"id": "a"}, {"id": [{"x": 1}]}]}),
        ] {
            assert!(has_object_value(&doc, "host.id"), "{doc}");
            assert!(!has_object_value(&doc, "host.name"), "{doc}");
        }
        for doc in [
            json!({"host": {"id": "a"}}),
            json!({"host": {"id": ["a", 1, null]}}),
            json!({"host": {"id": {}}, "x": 1})
                .get("x")
                .cloned()
                .unwrap_or_default(),
        ] {
            assert!(!has_object_value(&doc, "host.id"), "{doc}");
        }
    }
}
