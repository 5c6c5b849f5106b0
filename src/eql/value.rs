//! Runtime values of the EQL evaluator, field types, and the conversions Elasticsearch applies
//! between a `_source` JSON value and what it indexes (term/range view) or hands a script
//! (doc-values view). Comparison and string-form rules follow Java, because ES evaluates
//! scripts in Java (`ES:/x-pack/plugin/ql/.../predicate/operator/comparison/Comparisons.java`).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::IpAddr;

use serde_json::Value;

use crate::event::Scalar;

/// The Elasticsearch mapping type of a field, as far as EQL semantics depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// `keyword`; values longer than `ignore_above` (UTF-16 units) are not indexed.
    Keyword {
        /// The mapping's `ignore_above`, if any.
        ignore_above: Option<u32>,
    },
    /// `long` (and the other integer types).
    Long,
    /// `double` (and the other floating-point types).
    Double,
    /// `date` / `date_nanos`.
    Date,
    /// `ip`.
    Ip,
    /// `boolean`.
    Boolean,
}

/// Field path → mapping type. Fields not listed are typed from their JSON values (see
/// [`indexed_value`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldTypes {
    types: HashMap<String, FieldType>,
}

impl FieldTypes {
    /// No type information: every field is typed from its JSON values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder-style [`FieldTypes::insert`].
    pub fn with(mut self, path: impl Into<String>, ty: FieldType) -> Self {
        self.insert(path, ty);
        self
    }

    /// Declares the type of `path`.
    pub fn insert(&mut self, path: impl Into<String>, ty: FieldType) {
        self.types.insert(path.into(), ty);
    }

    /// The declared type of `path`, if any.
    pub fn get(&self, path: &str) -> Option<FieldType> {
        self.types.get(path).copied()
    }
}

/// A scalar value during evaluation, with Java's boxed-type distinctions that matter for
/// arithmetic (`Integer` overflows differently from `Long`).
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    /// Java `null`.
    Null,
    /// `Boolean`.
    Bool(bool),
    /// `Integer`: integer literals that fit 32 bits.
    Int(i32),
    /// `Long`: long fields and large literals.
    Long(i64),
    /// `Double`.
    Double(f64),
    /// `String` (keyword and ip doc values are strings).
    Str(Cow<'a, str>),
    /// A date doc value, epoch nanoseconds; comparable only with other dates.
    Date(i64),
}

impl<'a> Val<'a> {
    /// True for `Int`, `Long`, `Double`.
    pub fn is_number(&self) -> bool {
        matches!(self, Val::Int(_) | Val::Long(_) | Val::Double(_))
    }

    /// Java `Object.toString()` of the value; `None` for null.
    pub fn java_string(&self) -> Option<Cow<'a, str>> {
        Some(match self {
            Val::Null => return None,
            Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Val::Int(i) => Cow::Owned(i.to_string()),
            Val::Long(i) => Cow::Owned(i.to_string()),
            Val::Double(d) => Cow::Owned(java_double_to_string(*d)),
            Val::Str(s) => s.clone(),
            Val::Date(n) => Cow::Owned(format_date_nanos(*n)),
        })
    }

    /// Detaches the value from the document it borrows from.
    pub fn into_owned(self) -> Val<'static> {
        match self {
            Val::Null => Val::Null,
            Val::Bool(b) => Val::Bool(b),
            Val::Int(i) => Val::Int(i),
            Val::Long(i) => Val::Long(i),
            Val::Double(d) => Val::Double(d),
            Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
            Val::Date(n) => Val::Date(n),
        }
    }
}

fn format_date_nanos(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let sub = nanos.rem_euclid(1_000_000_000) as u32;
    chrono::DateTime::from_timestamp(secs, sub)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| nanos.to_string())
}

/// Java `Double.toString(d)`: shortest round-trip digits, plain notation for
/// `1e-3 <= |d| < 1e7`, otherwise `d.dddE±n`; always at least one fractional digit.
pub fn java_double_to_string(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let abs = d.abs();
    if (1e-3..1e7).contains(&abs) {
        let s = format!("{d}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        // Rust's `{:e}` gives the same shortest digits: "1.5e10" / "1e-5".
        let s = format!("{d:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_owned()
        } else {
            format!("{mantissa}.0")
        };
        format!("{mantissa}E{exp}")
    }
}

/// The keyword form of a JSON scalar: strings as is, numbers as their JSON text, booleans as
/// `true`/`false` (ES indexes a number in a keyword field as its string).
pub fn keyword_form(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// Length of a string in UTF-16 code units (Java `String.length()`).
pub fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// What ES indexes (and a script reads from doc values) for one `_source` scalar of a field
/// of type `ty`, or `None` when nothing is indexed for it.
///
/// Without a declared type the JSON value decides: a string is a keyword, an integral number
/// a long, another number a double, a boolean a boolean. With a type, ES's coercions apply:
/// `"7"` in a long field is 7, `7.9` is 7; a number in a keyword field is its string; a
/// keyword longer than `ignore_above` is not indexed; a value the type cannot take is not
/// indexed (ES would have rejected the document or ignored the value).
pub fn indexed_value(v: &Value, ty: Option<FieldType>) -> Option<Val<'_>> {
    indexed_scalar(Scalar::of(v)?, ty)
}

/// [`indexed_value`] of one [`Scalar`] (what a [`crate::event::Document`] yields).
pub fn indexed_scalar(v: Scalar<'_>, ty: Option<FieldType>) -> Option<Val<'_>> {
    match ty {
        None => match v {
            Scalar::Str(s) => Some(Val::Str(Cow::Borrowed(s))),
            Scalar::Num(n) => match n.as_i64() {
                Some(i) => Some(Val::Long(i)),
                None => n.as_f64().map(Val::Double),
            },
            Scalar::Bool(b) => Some(Val::Bool(b)),
        },
        Some(FieldType::Keyword { ignore_above }) => {
            let s = match v {
                Scalar::Str(s) => Cow::Borrowed(s),
                Scalar::Num(n) => Cow::Owned(n.to_string()),
                Scalar::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
            };
            match ignore_above {
                // UTF-16 units never outnumber UTF-8 bytes: short strings skip the count.
                Some(limit) if s.len() > limit as usize && utf16_len(&s) > limit as usize => None,
                _ => Some(Val::Str(s)),
            }
        }
        Some(FieldType::Long) => match v {
            Scalar::Num(n) => match n.as_i64() {
                Some(i) => Some(Val::Long(i)),
                None => f64_to_long(n.as_f64()?).map(Val::Long),
            },
            Scalar::Str(s) => parse_long_coerce(s).map(Val::Long),
            Scalar::Bool(_) => None,
        },
        Some(FieldType::Double) => match v {
            Scalar::Num(n) => n.as_f64().map(Val::Double),
            Scalar::Str(s) => s.trim().parse::<f64>().ok().map(Val::Double),
            Scalar::Bool(_) => None,
        },
        Some(FieldType::Boolean) => match v {
            Scalar::Bool(b) => Some(Val::Bool(b)),
            Scalar::Str("true") => Some(Val::Bool(true)),
            Scalar::Str(s) if s == "false" || s.is_empty() => Some(Val::Bool(false)),
            _ => None,
        },
        Some(FieldType::Date) => crate::event::parse_timestamp_scalar(&v).map(Val::Date),
        Some(FieldType::Ip) => match v {
            Scalar::Str(s) if s.parse::<IpAddr>().is_ok() => Some(Val::Str(Cow::Borrowed(s))),
            _ => None,
        },
    }
}

fn f64_to_long(f: f64) -> Option<i64> {
    let t = f.trunc();
    if t.is_finite() && t >= i64::MIN as f64 && t < i64::MAX as f64 {
        Some(t as i64)
    } else {
        None
    }
}

fn parse_long_coerce(s: &str) -> Option<i64> {
    let t = s.trim();
    t.parse::<i64>()
        .ok()
        .or_else(|| f64_to_long(t.parse::<f64>().ok()?))
}

/// An IP as a 128-bit number, IPv4 mapped into IPv6 the way ES stores it.
pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Parses `addr/prefix` into (network, mask) over the 128-bit mapped space. A plain address is
/// the block of that one address, as Elasticsearch's `CIDRUtils.isInRange` takes it (a value
/// without `/` is both the lower and the upper bound), so `cidrMatch(ip, "127.0.0.1")` is valid.
pub fn parse_cidr(s: &str) -> Option<(u128, u128)> {
    let Some((addr, prefix)) = s.split_once('/') else {
        let ip: IpAddr = s.parse().ok()?;
        return Some((ip_to_u128(ip), u128::MAX));
    };
    let ip: IpAddr = addr.parse().ok()?;
    let prefix: u32 = prefix.parse().ok()?;
    let bits = match ip {
        IpAddr::V4(_) if prefix <= 32 => prefix + 96,
        IpAddr::V6(_) if prefix <= 128 => prefix,
        _ => return None,
    };
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    };
    Some((ip_to_u128(ip) & mask, mask))
}

/// Compares two numbers as ES's range/term queries do: as real numbers.
pub fn compare_numbers(a: &Val, b: &Val) -> Option<Ordering> {
    match (a, b) {
        (Val::Double(x), _) => b_as_f64(b).and_then(|y| x.partial_cmp(&y)),
        (_, Val::Double(y)) => b_as_f64(a).and_then(|x| x.partial_cmp(y)),
        _ => Some(as_i64(a)?.cmp(&as_i64(b)?)),
    }
}

fn b_as_f64(v: &Val) -> Option<f64> {
    match v {
        Val::Int(i) => Some(f64::from(*i)),
        Val::Long(i) => Some(*i as f64),
        Val::Double(d) => Some(*d),
        _ => None,
    }
}

fn as_i64(v: &Val) -> Option<i64> {
    match v {
        Val::Int(i) => Some(i64::from(*i)),
        Val::Long(i) => Some(*i),
        _ => None,
    }
}

/// Java `String.compareTo`: lexicographic over UTF-16 code units.
pub fn compare_utf16(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// `Comparisons.compare` of QL scripts: numbers numerically (`Double.compare` when either is a
/// double), strings by UTF-16 units, booleans and dates among themselves; `None` for a null or
/// for incomparable types (Java's `ClassCastException` is caught and turned into null).
pub fn script_compare(a: &Val, b: &Val) -> Option<Ordering> {
    match (a, b) {
        (Val::Null, _) | (_, Val::Null) => None,
        (Val::Double(_), _) | (_, Val::Double(_)) if a.is_number() && b.is_number() => {
            let (x, y) = (b_as_f64(a)?, b_as_f64(b)?);
            Some(x.total_cmp(&y))
        }
        _ if a.is_number() && b.is_number() => Some(as_i64(a)?.cmp(&as_i64(b)?)),
        (Val::Str(x), Val::Str(y)) => Some(compare_utf16(x, y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Date(x), Val::Date(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// The alternative case of one code point, as ES's case-insensitive term, prefix and
/// wildcard automata build it (`AutomatonQueries.toCaseInsensitiveChar`): upper case for a
/// lower-case letter, else lower case; only 1:1 (simple) mappings.
pub fn alt_case(c: char) -> char {
    fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
        match (it.next(), it.next()) {
            (Some(m), None) => Some(m),
            _ => None,
        }
    }
    let mapped = if c.is_lowercase() {
        single(c.to_uppercase())
    } else {
        single(c.to_lowercase())
    };
    mapped.unwrap_or(c)
}

/// Whether `pattern_char` (or its alternative case) equals `c`.
pub fn char_matches_ci(pattern_char: char, c: char) -> bool {
    c == pattern_char || c == alt_case(pattern_char)
}

/// Case-insensitive equality as a `case_insensitive` term query tests it.
pub fn eq_ci(pattern: &str, value: &str) -> bool {
    let mut p = pattern.chars();
    let mut v = value.chars();
    loop {
        match (p.next(), v.next()) {
            (None, None) => return true,
            (Some(pc), Some(vc)) if char_matches_ci(pc, vc) => {}
            _ => return false,
        }
    }
}

/// Case-insensitive prefix test as a `case_insensitive` prefix query does it.
pub fn starts_with_ci(value: &str, prefix: &str) -> bool {
    let mut v = value.chars();
    prefix
        .chars()
        .all(|pc| v.next().is_some_and(|vc| char_matches_ci(pc, vc)))
}
