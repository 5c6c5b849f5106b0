//! Field access over a hit's `_source`, the event timestamp, and join-key extraction.
//!
//! Elasticsearch indexes `{"process.name": x}`, `{"process": {"name": x}}` and every mixed
//! spelling as the same field `process.name`, flattens arrays (of scalars and of objects) and
//! does not index `null` or `[]`. This module reproduces that view of a document so the
//! evaluator and the matcher see what an ES query would see. It owns no EQL semantics and
//! never panics on input: any JSON shape is accepted.

use serde_json::Value;

pub mod answer;
pub mod scan;

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

/// Why a hit's `_source` cannot be read at all. The hit is one skipped event, never a failed
/// page; the message is the reason run documents keep for it.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The hit came without `_source` (disabled on the index, say).
    #[error("the hit has no _source")]
    Missing,
    /// The text is not JSON serde_json reads (nested beyond its depth limit, say), even with
    /// lone surrogate escapes replaced. Carries serde_json's words, with line and column.
    #[error("_source cannot be read: {0}")]
    Unparsable(#[source] serde_json::Error),
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
    document_timestamp(source, field, UNBOUND_SLOT)
}

/// [`event_timestamp`] of any [`Document`]; `slot` is the field's slot in the rule's plan.
pub fn document_timestamp<D: Document + ?Sized>(
    source: &D,
    field: &str,
    slot: usize,
) -> Result<i64, TimestampError> {
    let mut values = source.field(field, slot);
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
    parse_timestamp_scalar(&first).ok_or_else(|| TimestampError::Unparsable {
        field: field.to_owned(),
        value: truncate_for_error(&first.to_json().to_string()),
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
    parse_timestamp_scalar(&Scalar::of(value)?)
}

/// [`parse_timestamp_value`] of one [`Scalar`].
pub fn parse_timestamp_scalar(value: &Scalar<'_>) -> Option<i64> {
    match value {
        Scalar::Str(s) => parse_iso_timestamp(s).or_else(|| parse_epoch_millis_str(s)),
        Scalar::Num(n) => {
            if let Some(i) = n.as_i64() {
                i.checked_mul(1_000_000)
            } else {
                millis_f64_to_nanos(n.as_f64()?)
            }
        }
        Scalar::Bool(_) => None,
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
    if let Some(nanos) = parse_millis_utc(s.as_bytes()) {
        return Some(nanos);
    }
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
                    let frac = &p.b[start..p.i];
                    if frac.is_empty() || frac.len() > 9 {
                        return None;
                    }
                    // The digits padded with zeros to nine places, without a string.
                    nanos = frac
                        .iter()
                        .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'))
                        * 10i64.pow(9 - frac.len() as u32);
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
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// The one spelling nearly every event has, `YYYY-MM-DDTHH:MM:SS.mmmZ`, read without the
/// general parser's steps; `None` for anything else (the general parser then decides).
#[inline]
fn parse_millis_utc(b: &[u8]) -> Option<i64> {
    let b: &[u8; 24] = b.try_into().ok()?;
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let digit = |i: usize| {
        let d = b[i].wrapping_sub(b'0');
        (d < 10).then_some(u32::from(d))
    };
    let number =
        |at: usize, len: usize| (at..at + len).try_fold(0u32, |acc, i| Some(acc * 10 + digit(i)?));
    let (year, month, day) = (number(0, 4)?, number(5, 2)?, number(8, 2)?);
    let (hour, minute, second) = (number(11, 2)?, number(14, 2)?, number(17, 2)?);
    let millis = number(20, 3)?;
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(i32::try_from(year).ok()?, month, day)?;
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    secs.checked_mul(1_000_000_000)?
        .checked_add(i64::from(millis) * 1_000_000)
}

/// Days from 1970-01-01 to a proleptic Gregorian date, `None` for a date that does not exist
/// (what `chrono::NaiveDate::from_ymd_opt` refuses for four-digit years). Howard Hinnant's
/// `days_from_civil`: the hot path reads one timestamp per event, and chrono's date
/// construction cost more than the rest of the parse.
fn days_from_civil(year: i32, month: u32, day: u32) -> Option<i64> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day == 0 || day > month_days {
        return None;
    }
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some(era * 146_097 + day_of_era - 719_468)
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

// ---------------------------------------------------------------------------------------------
// The engine's event representation: only the fields a rule reads, decoded straight from the
// hit's JSON text, borrowing its strings.

/// One scalar of a field, borrowed from the document (what [`field_values`] yields, without
/// the JSON tree around it).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// A JSON boolean.
    Bool(bool),
    /// A JSON number, exactly as `serde_json` reads it into a [`Value`].
    Num(serde_json::Number),
    /// A JSON string.
    Str(&'a str),
}

impl<'a> Scalar<'a> {
    /// The scalar a JSON value holds; `None` for null, arrays and objects.
    pub fn of(value: &'a Value) -> Option<Scalar<'a>> {
        match value {
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::Number(n) => Some(Scalar::Num(n.clone())),
            Value::String(s) => Some(Scalar::Str(s)),
            _ => None,
        }
    }

    /// The scalar as a JSON value (for error messages).
    pub fn to_json(&self) -> Value {
        match self {
            Scalar::Bool(b) => Value::Bool(*b),
            Scalar::Num(n) => Value::Number(n.clone()),
            Scalar::Str(s) => Value::String((*s).to_owned()),
        }
    }
}

/// The values of one field of a [`Document`], in the order [`field_values`] gives them.
#[derive(Debug, Clone)]
pub enum Values<'a> {
    /// Looked up in a JSON tree.
    Tree(FieldValues<'a>),
    /// Read from a [`FlatEvent`].
    Flat(FlatValues<'a>),
}

/// The end of a [`FlatEvent`] chain.
const NO_ENTRY: u32 = u32::MAX;

/// One field's values in a [`FlatEvent`]: a chain through its entries.
#[derive(Debug, Clone)]
pub struct FlatValues<'a> {
    entries: &'a [(u16, Stored<'a>)],
    links: &'a [u32],
    at: u32,
}

impl<'a> Iterator for Values<'a> {
    type Item = Scalar<'a>;

    fn next(&mut self) -> Option<Scalar<'a>> {
        match self {
            Values::Tree(it) => it.find_map(Scalar::of),
            Values::Flat(it) => {
                let (_, stored) = it.entries.get(it.at as usize)?;
                it.at = it.links[it.at as usize];
                Some(stored.as_scalar())
            }
        }
    }
}

/// A document the evaluator and the engine can read fields of: a `_source` tree, or a
/// [`FlatEvent`] decoded for one rule. Both give the same values in the same order.
pub trait Document {
    /// The values of the field at dotted `path`; `slot` is the path's index in the rule's
    /// [`FieldPlan`] (or [`UNBOUND_SLOT`]), which a [`FlatEvent`] uses instead of the path.
    fn field(&self, path: &str, slot: usize) -> Values<'_>;

    /// True when the document is a JSON object (every `_source` must be).
    fn is_object(&self) -> bool;

    /// True when an object sits where a value of `path` belongs (see [`has_object_value`]).
    /// A [`FlatEvent`] never holds one: [`decode_flat`] leaves such a document to the tree.
    fn holds_object(&self, path: &str) -> bool;
}

/// The slot of a field that no [`FieldPlan`] has bound: looked up by its path.
pub const UNBOUND_SLOT: usize = usize::MAX;

impl Document for Value {
    fn field(&self, path: &str, _slot: usize) -> Values<'_> {
        Values::Tree(field_values(self, path))
    }

    fn is_object(&self) -> bool {
        Value::is_object(self)
    }

    fn holds_object(&self, path: &str) -> bool {
        has_object_value(self, path)
    }
}

/// The field paths a compiled rule reads, each with a slot number the compiled filters carry.
///
/// The paths are also kept as a tree of their dot-separated segments, so the flat decode
/// routes each JSON key with one walk (`"process.parent"` → the `process`/`parent` node)
/// instead of comparing it with every path.
#[derive(Debug, Clone)]
pub struct FieldPlan {
    paths: Vec<String>,
    /// The segment tree; node 0 is the root.
    nodes: Vec<PlanNode>,
    /// Some path has an empty segment (`"a..b"`, `".a"`); the tree cannot route those.
    irregular: bool,
}

impl Default for FieldPlan {
    fn default() -> Self {
        FieldPlan {
            paths: Vec::new(),
            nodes: vec![PlanNode::default()],
            irregular: false,
        }
    }
}

/// One node of [`FieldPlan`]'s segment tree.
#[derive(Debug, Clone, Default)]
struct PlanNode {
    /// (segment, child node).
    children: Vec<(Box<str>, u32)>,
    /// The slot of the path ending here.
    terminal: Option<u16>,
    /// One bit per slot ending here or below (for slots under 64).
    mask: u64,
}

/// At most this many fields are decoded flat (one bit each in the decoder's masks); a rule
/// reading more is evaluated on the JSON tree.
pub const MAX_FLAT_FIELDS: usize = 64;

impl FieldPlan {
    /// An empty plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// The slot of `path`, added if new.
    pub fn slot(&mut self, path: &str) -> usize {
        match self.lookup(path) {
            Some(slot) => slot,
            None => {
                self.paths.push(path.to_owned());
                let slot = self.paths.len() - 1;
                self.add_to_tree(path, slot);
                slot
            }
        }
    }

    fn add_to_tree(&mut self, path: &str, slot: usize) {
        if path.split('.').any(str::is_empty) {
            self.irregular = true;
            return;
        }
        let bit = if slot < 64 { 1u64 << slot } else { 0 };
        let mut node = 0usize;
        self.nodes[0].mask |= bit;
        for segment in path.split('.') {
            let found = self.nodes[node]
                .children
                .iter()
                .find(|(s, _)| **s == *segment)
                .map(|&(_, child)| child as usize);
            node = match found {
                Some(child) => child,
                None => {
                    self.nodes.push(PlanNode::default());
                    let child = self.nodes.len() - 1;
                    self.nodes[node]
                        .children
                        .push((segment.into(), child as u32));
                    child
                }
            };
            self.nodes[node].mask |= bit;
        }
        self.nodes[node].terminal = u16::try_from(slot).ok();
    }

    /// The node a JSON key leads to from `node`: each of its dot-separated segments must be
    /// a child in turn. An empty segment leads nowhere (no planned path has one).
    #[inline]
    fn walk(&self, node: u32, key: &str) -> Option<u32> {
        let mut node = node;
        let mut rest = key.as_bytes();
        loop {
            let (segment, tail) = match rest.iter().position(|&b| b == b'.') {
                Some(dot) => (&rest[..dot], Some(&rest[dot + 1..])),
                None => (rest, None),
            };
            if segment.is_empty() {
                return None;
            }
            node = self
                .nodes
                .get(node as usize)?
                .children
                .iter()
                .find(|(s, _)| same_bytes(s.as_bytes(), segment))
                .map(|&(_, child)| child)?;
            match tail {
                Some(tail) => rest = tail,
                None => return Some(node),
            }
        }
    }

    /// The slot of `path`, if the plan has it.
    pub fn lookup(&self, path: &str) -> Option<usize> {
        self.paths.iter().position(|p| p == path)
    }

    /// The planned paths, by slot.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    /// True when hits can be decoded flat for this plan (few enough, short enough paths).
    pub fn decodes_flat(&self) -> bool {
        self.paths.len() <= MAX_FLAT_FIELDS
            && !self.irregular
            && self.paths.iter().all(|p| p.len() < u16::MAX as usize)
    }
}

/// One decoded scalar of a [`FlatEvent`]: strings borrow from the hit's text unless they
/// contained escapes.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored<'a> {
    /// A boolean.
    Bool(bool),
    /// A number.
    Num(serde_json::Number),
    /// A string.
    Str(std::borrow::Cow<'a, str>),
}

impl Stored<'_> {
    fn as_scalar(&self) -> Scalar<'_> {
        match self {
            Stored::Bool(b) => Scalar::Bool(*b),
            Stored::Num(n) => Scalar::Num(n.clone()),
            Stored::Str(s) => Scalar::Str(s),
        }
    }
}

/// A hit decoded for one rule: the values of the plan's fields only, grouped by slot, in the
/// order [`field_values`] would give them over the whole `_source`. Reused hit after hit.
#[derive(Debug, Default)]
pub struct FlatEvent<'a> {
    /// (slot, value), in document order.
    entries: Vec<(u16, Stored<'a>)>,
    /// Per slot, the index in `entries` of its first value ([`NO_ENTRY`] for none).
    heads: Vec<u32>,
    /// Per entry, the index of the next value of its slot ([`NO_ENTRY`] after the last): each
    /// field's values are a chain in document order, found without sorting the entries.
    links: Vec<u32>,
    /// The plan decoded for, to find the slot of a path no filter bound.
    plan: Option<&'a FieldPlan>,
}

impl<'a> Document for FlatEvent<'a> {
    fn field(&self, path: &str, slot: usize) -> Values<'_> {
        let slot = match (slot, self.plan) {
            (UNBOUND_SLOT, Some(plan)) => plan.lookup(path).unwrap_or(UNBOUND_SLOT),
            _ => slot,
        };
        Values::Flat(FlatValues {
            entries: &self.entries,
            links: &self.links,
            at: self.heads.get(slot).copied().unwrap_or(NO_ENTRY),
        })
    }

    fn is_object(&self) -> bool {
        true
    }

    fn holds_object(&self, _path: &str) -> bool {
        false
    }
}

/// What [`decode_flat`] made of a hit's `_source` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlatDecode {
    /// The event holds the fields.
    Decoded,
    /// The document needs the JSON tree: it is not an object, or one object reaches a field
    /// through two keys (`{"a.b": 1, "a": {"b": 2}}`, or a duplicate key), where the tree's
    /// sorted-map order (or its last-duplicate-wins) decides the values and their order.
    NeedsTree,
}

/// Decodes `json` (one `_source`) into `event` for `plan`: only the plan's fields are kept,
/// every other value is read and dropped (so a text `serde_json` refuses as a [`Value`] is
/// refused here too, with the same error). Strings borrow from `json` unless escaped.
pub fn decode_flat<'a>(
    json: &'a str,
    plan: &'a FieldPlan,
    event: &mut FlatEvent<'a>,
) -> Result<FlatDecode, serde_json::Error> {
    event.entries.clear();
    event.heads.clear();
    event.links.clear();
    event.plan = Some(plan);
    if !plan.decodes_flat() {
        // The segment tree cannot route this plan's paths: the caller's tree decode decides.
        return Ok(FlatDecode::NeedsTree);
    }
    match scan::decode(json, plan, &mut event.entries) {
        Ok(FlatDecode::NeedsTree) => return Ok(FlatDecode::NeedsTree),
        Ok(FlatDecode::Decoded) => {}
        Err(scan::GiveUp) => {
            event.entries.clear();
            if decode_flat_serde(json, plan, &mut event.entries)? == FlatDecode::NeedsTree {
                return Ok(FlatDecode::NeedsTree);
            }
        }
    }
    event.group_by_slot(plan);
    Ok(FlatDecode::Decoded)
}

/// `a == b` for the short strings of the hot path (keys, keyword terms) without a `memcmp`
/// call: up to 16 bytes compare as two overlapping words.
#[inline]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    match n {
        0..8 => a.iter().zip(b).all(|(x, y)| x == y),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// A [`Stored`] value kept apart from the text it borrows: a string as its byte range.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredSpan {
    /// A boolean.
    Bool(bool),
    /// A number.
    Num(serde_json::Number),
    /// A string borrowed from the text.
    Str(std::ops::Range<usize>),
    /// A string that had escapes.
    Owned(Box<str>),
}

impl StoredSpan {
    /// `value` as a span of `text`, which it borrows from (unless it owns its string).
    pub fn of(text: &str, value: &Stored<'_>) -> StoredSpan {
        match value {
            Stored::Bool(b) => StoredSpan::Bool(*b),
            Stored::Num(n) => StoredSpan::Num(n.clone()),
            Stored::Str(std::borrow::Cow::Borrowed(s)) => {
                let start = s.as_ptr() as usize - text.as_ptr() as usize;
                StoredSpan::Str(start..start + s.len())
            }
            Stored::Str(std::borrow::Cow::Owned(s)) => StoredSpan::Owned(s.as_str().into()),
        }
    }
}

impl<'a> FlatEvent<'a> {
    /// Chains each slot's entries (in document order).
    fn group_by_slot(&mut self, plan: &'a FieldPlan) {
        self.plan = Some(plan);
        let count = u32::try_from(self.entries.len()).expect("fewer than 2^32 values in a hit");
        self.heads.clear();
        self.heads.resize(plan.paths.len(), NO_ENTRY);
        self.links.clear();
        self.links.resize(self.entries.len(), NO_ENTRY);
        // Backwards, so each chain runs in document order.
        for i in (0..count).rev() {
            let slot = usize::from(self.entries[i as usize].0);
            self.links[i as usize] = self.heads[slot];
            self.heads[slot] = i;
        }
    }

    /// The event of a `_source` decoded flat for `plan` while its text was read (by
    /// [`scan::scan_search_page`]), from the values it kept as spans of `text`.
    pub fn fill(&mut self, text: &'a str, values: &[(u16, StoredSpan)], plan: &'a FieldPlan) {
        self.entries.clear();
        self.entries.extend(values.iter().map(|(slot, v)| {
            let stored = match v {
                StoredSpan::Bool(b) => Stored::Bool(*b),
                StoredSpan::Num(n) => Stored::Num(n.clone()),
                StoredSpan::Str(r) => Stored::Str(std::borrow::Cow::Borrowed(&text[r.clone()])),
                StoredSpan::Owned(s) => Stored::Str(std::borrow::Cow::Owned(s.to_string())),
            };
            (*slot, stored)
        }));
        self.group_by_slot(plan);
    }
}

/// [`scan::scan_hit_line`] with each `_source` decoded flat into `event` as it is read: one
/// pass over the line. The second value is `true` when `event` holds the decoded `_source`
/// (exactly what [`decode_flat`] would make of it); `false` leaves the decode to the caller.
pub fn scan_hit_line_flat<'a>(
    line: &'a str,
    plan: &'a FieldPlan,
    event: &mut FlatEvent<'a>,
) -> Option<(scan::HitParts, bool)> {
    event.entries.clear();
    let hit = scan::scan_hit_line(
        line,
        Some(scan::HitDecode {
            plan,
            entries: &mut event.entries,
        }),
    )?;
    let decoded = hit.flat.is_some();
    if decoded {
        event.group_by_slot(plan);
    }
    Some((hit, decoded))
}

/// The serde path of [`decode_flat`]: every text the scanner gives up on, with serde_json's
/// own errors. Fills `entries` in document order.
fn decode_flat_serde<'a>(
    json: &'a str,
    plan: &'a FieldPlan,
    entries: &mut Vec<(u16, Stored<'a>)>,
) -> Result<FlatDecode, serde_json::Error> {
    use serde::de::DeserializeSeed;

    let mut state = DecodeState {
        plan,
        entries,
        tangled: false,
        object: false,
    };
    let mut de = serde_json::Deserializer::from_str(json);
    TopSeed { state: &mut state }.deserialize(&mut de)?;
    de.end()?;
    Ok(if !state.object || state.tangled {
        FlatDecode::NeedsTree
    } else {
        FlatDecode::Decoded
    })
}

struct DecodeState<'s, 'a> {
    plan: &'s FieldPlan,
    entries: &'s mut Vec<(u16, Stored<'a>)>,
    /// Some object reached one field through two keys, or an object sits where a field's
    /// value belongs: either way the tree decides (see [`Document::holds_object`]).
    tangled: bool,
    /// The top-level value was an object.
    object: bool,
}

/// The top-level value: must be an object; its keys are matched against every planned path.
struct TopSeed<'r, 's, 'a> {
    state: &'r mut DecodeState<'s, 'a>,
}

impl<'de: 'a, 'a> serde::de::DeserializeSeed<'de> for TopSeed<'_, '_, 'a> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> serde::de::Visitor<'de> for TopSeed<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<(), M::Error> {
        self.state.object = true;
        visit_object(map, 0, self.state)
    }

    fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Routes each key of an object through the plan's segment tree from `node` (the same test
/// as [`field_values`]' walk: the key equals the rest of a path, or is a dot-separated prefix
/// of it), and reads or skips its value accordingly.
fn visit_object<'de: 'a, 'a, M: serde::de::MapAccess<'de>>(
    mut map: M,
    node: u32,
    state: &mut DecodeState<'_, 'a>,
) -> Result<(), M::Error> {
    // Slots some key of this object already reached: a second key reaching one of them means
    // the tree's sorted-map order (or last-duplicate-wins) decides, so the tree must decode.
    let mut routed: u64 = 0;
    while let Some(key) = map.next_key_seed(KeySeed)? {
        let plan = state.plan;
        let Some(target) = plan.walk(node, &key) else {
            map.next_value_seed(Skip)?;
            continue;
        };
        let target_node = &plan.nodes[target as usize];
        if routed & target_node.mask != 0 {
            state.tangled = true;
        }
        routed |= target_node.mask;
        map.next_value_seed(ValueSeed {
            terminal: target_node.terminal,
            node: target,
            state,
        })?;
    }
    Ok(())
}

/// An object key, borrowed unless it had escapes.
struct KeySeed;

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed {
    type Value = std::borrow::Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeySeed {
    type Value = std::borrow::Cow<'de, str>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v))
    }
}

/// The value under a key: scalars go to the `terminal` slot (arrays flattened, objects and
/// nulls ignored, as [`field_values`] does), objects are walked from the plan's `node`.
struct ValueSeed<'r, 's, 'a> {
    terminal: Option<u16>,
    node: u32,
    state: &'r mut DecodeState<'s, 'a>,
}

impl ValueSeed<'_, '_, '_> {
    fn push<'a>(entries: &mut Vec<(u16, Stored<'a>)>, terminal: Option<u16>, value: Stored<'a>) {
        if let Some(slot) = terminal {
            entries.push((slot, value));
        }
    }
}

impl<'de: 'a, 'a> serde::de::DeserializeSeed<'de> for ValueSeed<'_, '_, 'a> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> serde::de::Visitor<'de> for ValueSeed<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        Self::push(self.state.entries, self.terminal, Stored::Bool(v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        Self::push(self.state.entries, self.terminal, Stored::Num(v.into()));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        Self::push(self.state.entries, self.terminal, Stored::Num(v.into()));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        // As `Value` does: a non-finite float (which JSON text cannot spell) would be null.
        if let Some(n) = serde_json::Number::from_f64(v) {
            Self::push(self.state.entries, self.terminal, Stored::Num(n));
        }
        Ok(())
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        let s: &'a str = v;
        Self::push(
            self.state.entries,
            self.terminal,
            Stored::Str(std::borrow::Cow::Borrowed(s)),
        );
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        if self.terminal.is_some() {
            Self::push(
                self.state.entries,
                self.terminal,
                Stored::Str(std::borrow::Cow::Owned(v.to_owned())),
            );
        }
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        // Arrays: each item gets the same treatment (`push_terminal` and `visit` both recurse).
        while seq
            .next_element_seed(ValueSeed {
                terminal: self.terminal,
                node: self.node,
                state: &mut *self.state,
            })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<(), M::Error> {
        if self.terminal.is_some() {
            self.state.tangled = true;
        }
        visit_object(map, self.node, self.state)
    }
}

/// Reads a value and drops it, through the same parser paths a [`Value`] takes (so the same
/// depth limit and number checks apply), without allocating. (`IgnoredAny` would skip those
/// checks.) Also used by `replay` to check the parts of a hit line it does not keep.
pub(crate) struct Skip;

impl<'de> serde::de::DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<S: serde::de::SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }
    fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

/// `raw` with every `\uXXXX` escape of an unpaired surrogate replaced by `\uFFFD`.
pub fn replace_lone_surrogates(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let hex_at = |i: usize| -> Option<u32> {
        let h = bytes.get(i..i + 4)?;
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    let escape_at = |i: usize| -> Option<u32> {
        (bytes.get(i) == Some(&b'\\') && bytes.get(i + 1) == Some(&b'u'))
            .then(|| hex_at(i + 2))
            .flatten()
    };
    let mut out = String::with_capacity(raw.len());
    let mut last = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = escape_at(i) else {
            i += 2; // another escape: skip the escaped character (also a backslash)
            continue;
        };
        match unit {
            0xD800..=0xDBFF if matches!(escape_at(i + 6), Some(0xDC00..=0xDFFF)) => i += 12,
            0xD800..=0xDFFF => {
                out.push_str(&raw[last..i]);
                out.push_str("\\uFFFD");
                i += 6;
                last = i;
            }
            _ => i += 6,
        }
    }
    out.push_str(&raw[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PATHS: &[&str] = &["a", "a.b", "a.b.c", "b.c", "c", "x"];

    /// A plan over [`PATHS`]. Shared with the scanner's tests.
    pub(super) fn plan() -> FieldPlan {
        let mut plan = FieldPlan::new();
        for p in PATHS {
            plan.slot(p);
        }
        plan
    }

    /// What the tree lookup gives, as JSON values.
    fn tree_values(tree: &Value, path: &str) -> Vec<Value> {
        field_values(tree, path).cloned().collect()
    }

    fn flat_values(event: &FlatEvent<'_>, path: &str, slot: usize) -> Vec<Value> {
        event.field(path, slot).map(|s| s.to_json()).collect()
    }

    /// The flat decode must give exactly the tree lookup's values, in its order, or hand the
    /// document to the tree; and it must refuse exactly the texts the tree parse refuses.
    fn assert_same(text: &str) -> Option<FlatDecode> {
        let plan = plan();
        let mut event = FlatEvent::default();
        let flat = decode_flat(text, &plan, &mut event);
        let tree = serde_json::from_str::<Value>(text);
        match (&flat, &tree) {
            (Ok(FlatDecode::Decoded), Ok(tree)) => {
                for (slot, path) in PATHS.iter().enumerate() {
                    // Only the tree can say "an object sits here" (`holds_object`).
                    assert!(!has_object_value(tree, path), "{path} in {text}");
                    assert_eq!(
                        flat_values(&event, path, slot),
                        tree_values(tree, path),
                        "{path} in {text}"
                    );
                    assert_eq!(
                        flat_values(&event, path, UNBOUND_SLOT),
                        tree_values(tree, path),
                        "{path} (unbound) in {text}"
                    );
                }
            }
            (Ok(FlatDecode::NeedsTree), Ok(_)) => {}
            (Err(f), Err(t)) => assert_eq!(f.to_string(), t.to_string(), "{text}"),
            _ => panic!("flat {flat:?} but tree {tree:?} for {text}"),
        }
        flat.ok()
    }

    #[test]
    fn every_spelling_alone_decodes_flat_with_the_tree_values() {
        for text in [
            r#"{"a": {"b": {"c": "deep"}}, "b.c": [1, [2, null, [3.5]], {"c": 9}], "c": true}"#,
            r#"{"a.b": {"c": "mixed"}, "x": -7}"#,
            r#"{"a": [{"b": "one"}, {"b": ["two", null]}, "scalar ignored", [{"b": "three"}]]}"#,
            r#"{"a": {"b.c": "x", "z": {"deep": [1, 2]}}, "c": {"object": "not a value"}}"#,
            r#"{"c": "esc\"aped\u00e9", "x": 18446744073709551615, "a": {"b": 1e3}}"#,
            r#"{"a\u002eb": "escaped dot key", "other": {"a": {"b": 1}}}"#,
            r#"{"": {"a": 1}, "a.": 2, ".a": 3, "a..b": 4}"#,
            "{}",
        ] {
            // A document with an object where a planned field's value belongs goes to the
            // tree, which names it (a join key holding an object is a bad event).
            let tree: Value = serde_json::from_str(text).expect("valid JSON");
            let expected = if PATHS.iter().any(|p| has_object_value(&tree, p)) {
                FlatDecode::NeedsTree
            } else {
                FlatDecode::Decoded
            };
            assert_eq!(assert_same(text), Some(expected), "{text}");
        }
    }

    /// `Value` keeps object keys in a sorted map (last duplicate wins), so two keys reaching
    /// one field order its values by key, not by the text; those documents go to the tree.
    #[test]
    fn a_field_reached_by_two_keys_of_one_object_goes_to_the_tree() {
        for text in [
            r#"{"a.b": "first in text", "a": {"b": "first in the sorted map"}}"#,
            r#"{"c": 1, "c": 2}"#,
            r#"{"a": {"b": 1}, "a": {"b": 2}}"#,
        ] {
            assert_eq!(assert_same(text), Some(FlatDecode::NeedsTree), "{text}");
        }
        assert_eq!(assert_same("[1, 2]"), Some(FlatDecode::NeedsTree));
        assert_eq!(assert_same(r#""text""#), Some(FlatDecode::NeedsTree));
    }

    #[test]
    fn texts_the_tree_parse_refuses_are_refused_alike() {
        let deep = format!(r#"{{"ignored": {}1{}}}"#, "[".repeat(300), "]".repeat(300));
        let deep_kept = format!(r#"{{"c": {}1{}}}"#, "[".repeat(300), "]".repeat(300));
        for text in [
            deep.as_str(),
            deep_kept.as_str(),
            r#"{"ignored": 1e400}"#,
            r#"{"c": "bad \q escape"}"#,
            r#"{"c": 1} trailing"#,
            r#"{"c": 1"#,
        ] {
            assert_eq!(assert_same(text), None, "{text}");
        }
    }

    /// JSON texts nested up to four levels, from the given leaves and object keys, items
    /// joined by `separator`. Shared with the scanner's tests (`event::scan`).
    pub(super) fn json_text(
        leaves: &'static [&'static str],
        keys: &'static [&'static str],
        separator: &'static str,
    ) -> impl Strategy<Value = String> {
        let leaf = prop::sample::select(leaves).prop_map(str::to_owned);
        let key = prop::sample::select(keys);
        leaf.prop_recursive(4, 40, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(move |items| format!("[{}]", items.join(separator))),
                prop::collection::vec((key.clone(), inner), 0..5).prop_map(|entries| {
                    let body: Vec<String> = entries
                        .into_iter()
                        .map(|(k, v)| format!("\"{k}\":{v}"))
                        .collect();
                    format!("{{{}}}", body.join(","))
                }),
            ]
        })
    }

    fn json_value() -> impl Strategy<Value = String> {
        json_text(
            &[
                "null",
                "true",
                "0",
                "-2",
                "1.5",
                "18446744073709551615",
                r#""s""#,
                r#""e\u0041\"x""#,
            ],
            &["a", "b", "c", "x", "a.b", "b.c", "a.b.c", "", r"a\u002eb"],
            ",",
        )
    }

    proptest! {
        #[test]
        fn flat_decode_equals_the_tree_lookup(text in json_value()) {
            assert_same(&text);
        }
    }
}

#[cfg(test)]
mod timestamp_tests {
    use super::*;

    /// Days of four-digit years (every seventh year, and the century cases), and the days that
    /// do not exist, as chrono has them.
    #[test]
    fn days_from_civil_agrees_with_chrono_on_every_date() {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
        for year in (0..=9999)
            .step_by(7)
            .chain([1600, 1700, 1900, 2000, 2024, 2100, 9999])
        {
            for month in 0..=13 {
                for day in 0..=32 {
                    let want = chrono::NaiveDate::from_ymd_opt(year, month, day)
                        .map(|d| (d - epoch).num_days());
                    assert_eq!(
                        days_from_civil(year, month, day),
                        want,
                        "{year}-{month}-{day}"
                    );
                }
            }
        }
        for text in [
            "2026-05-28T20:26:40.163Z",
            "0000-01-01T00:00:00.000Z",
            "1969-12-31T23:59:59.999Z",
            "9999-12-31T23:59:59.999Z",
            "1969-12-31T23:59:59.5-01:30",
            "2000-02-29T12:00:00+14:00",
        ] {
            let want = chrono::DateTime::parse_from_rfc3339(text)
                .expect("valid")
                .timestamp_nanos_opt();
            assert_eq!(parse_iso_timestamp(text), want, "{text}");
        }
        for bad in [
            "2026-05-28T24:00:00Z",
            "2026-05-28T23:60:00Z",
            "2026-05-28T23:59:60Z",
            "2026-02-29T00:00:00Z",
            "2026-02-29T00:00:00.000Z",
            "2026-13-01T00:00:00.000Z",
            "2026-05-28T20:26:4x.163Z",
            "2026-05-28T20:26:40.1a3Z",
        ] {
            assert_eq!(parse_iso_timestamp(bad), None, "{bad}");
        }
    }
}

#[cfg(test)]
mod object_value_tests {
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
