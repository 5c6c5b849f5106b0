//! A byte scanner for the JSON of hits, for the hot path: the fast path of
//! [`super::decode_flat`] (one pass over a `_source`, routing keys through the plan's segment
//! tree as the serde path does, without serde's visitor machinery), and the reading of a hit
//! line or a search answer around the `_source` texts ([`scan_hit_line`],
//! [`scan_search_page`]).
//!
//! It decides only what it is sure of. Whenever serde_json might refuse the text, or the text
//! takes a rare spelling (a number out of the common range, a UTF-16 surrogate escape, nesting
//! deeper than [`MAX_DEPTH`], a `_source` that is not an object), it gives up and the caller's
//! serde path decides from the start, with serde_json's own error. So a text it accepts is one
//! the serde path accepts, with the same values in the same order; the tests below (and
//! `es::detect`'s for whole search answers) hold it to that, and so does the `scan_json` fuzz
//! target (`crate::fuzzing`) on arbitrary bytes.

use std::borrow::Cow;
use std::ops::Range;

use super::{FieldPlan, FlatDecode, Stored};

/// Deeper nesting than this goes to the serde path (serde_json refuses beyond 128).
const MAX_DEPTH: u32 = 100;

/// The scanner gave up: the serde path decides.
#[derive(Debug)]
pub struct GiveUp;

type Scan<T> = Result<T, GiveUp>;

/// Decodes `json` into `entries` (in document order, unsorted) for `plan`, or gives up.
pub(super) fn decode<'a>(
    json: &'a str,
    plan: &'a FieldPlan,
    entries: &mut Vec<(u16, Stored<'a>)>,
) -> Scan<FlatDecode> {
    read_whole(json, |cursor| {
        if cursor.peek() != Some(b'{') {
            return Err(GiveUp);
        }
        decode_object(cursor, plan, entries)
    })
}

/// `read` over the whole of `text`: whitespace may stand around what it reads, nothing else.
fn read_whole<'a, T>(text: &'a str, read: impl FnOnce(&mut Cursor<'a>) -> Scan<T>) -> Scan<T> {
    let mut cursor = Cursor::new(text);
    cursor.whitespace();
    let value = read(&mut cursor)?;
    cursor.end()?;
    Ok(value)
}

/// Decodes the object at the cursor for `plan` into `entries` (document order).
fn decode_object<'a>(
    cursor: &mut Cursor<'a>,
    plan: &'a FieldPlan,
    entries: &mut Vec<(u16, Stored<'a>)>,
) -> Scan<FlatDecode> {
    let mut decoder = Decoder {
        cursor,
        plan,
        entries,
        tangled: false,
    };
    decoder.object(0)?;
    Ok(if decoder.tangled {
        FlatDecode::NeedsTree
    } else {
        FlatDecode::Decoded
    })
}

/// A string of a hit: where it sits in the scanned text, or its copy when escapes changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextPart {
    /// The bytes between its quotes.
    Span(Range<usize>),
    /// Unescaped.
    Owned(String),
}

impl TextPart {
    /// The string, given the text it was scanned from.
    pub fn get<'t>(&'t self, text: &'t str) -> &'t str {
        match self {
            TextPart::Span(r) => &text[r.clone()],
            TextPart::Owned(s) => s,
        }
    }
}

/// Where the parts of one hit sit in the scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitParts {
    /// `_index`.
    pub index: TextPart,
    /// `_id`.
    pub id: TextPart,
    /// The `_source` object's text; `None` for a hit without one (or `null`).
    pub source: Option<Range<usize>>,
    /// The `sort` array's text.
    pub sort: Option<Range<usize>>,
    /// The first sort value, when it is an integer that fits an `i64`.
    pub sorted_at: Option<i64>,
    /// Where the `_source`'s values went in [`HitDecode::entries`], when it was decoded
    /// flat as it was read (`None`: the caller decodes it on its own, and then decides).
    pub flat: Option<Range<usize>>,
}

/// The flat decode [`scan_hit_line`] and [`scan_search_page`] make of each `_source` as they
/// read it, when given a plan: one pass over the text instead of one to delimit `_source` and
/// one to decode it.
pub struct HitDecode<'p, 'e, 'a> {
    /// The plan to decode for.
    pub plan: &'p FieldPlan,
    /// Where the values go, hit after hit (document order per hit, unsorted).
    pub entries: &'e mut Vec<(u16, Stored<'a>)>,
}

/// The first value of a `sort` array as an `i64`, as `serde_json` reads it (`None` when it is
/// not an integer in range, or `sort` is not an array).
pub fn first_sort_value(sort: &str) -> Option<i64> {
    let values: Vec<&serde_json::value::RawValue> = serde_json::from_str(sort).ok()?;
    serde_json::from_str::<i64>(values.first()?.get()).ok()
}

/// One hit line of an export (`{"_index", "_id", "_source", ...}`), or `None` when the line is
/// not plainly a hit. With `decode`, `_source` is decoded for its plan as it is read (see
/// [`HitParts::flat`]); otherwise, or where that decode gives up, its text is only delimited,
/// not checked: the caller decodes it with [`super::decode_flat`], which refuses what a tree
/// parse refuses. Everything else is checked here.
pub fn scan_hit_line<'a>(line: &'a str, decode: Option<HitDecode<'a, '_, 'a>>) -> Option<HitParts> {
    let mut decode = decode;
    read_whole(line, |cursor| cursor.hit(decode.as_mut())).ok()
}

/// What a point-in-time search answer holds, as [`scan_search_page`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageParts {
    /// `pit_id`.
    pub pit_id: Option<String>,
    /// `timed_out`.
    pub timed_out: bool,
    /// The `_shards` object's text.
    pub shards: Option<Range<usize>>,
    /// `hits.hits`, in order.
    pub hits: Vec<HitParts>,
}

/// A search answer read in one pass, each hit's `_source` decoded or delimited as in
/// [`scan_hit_line`]; `None` when anything is unusual, for the caller's serde parse, which
/// then decides (and words any error). Accepts only what a serde parse into the answer's
/// fields would accept, with the same values.
pub fn scan_search_page<'a>(
    body: &'a str,
    decode: Option<HitDecode<'a, '_, 'a>>,
) -> Option<PageParts> {
    let mut decode = decode;
    read_whole(body, |cursor| cursor.page(decode.as_mut())).ok()
}

/// A position in a JSON text, and the checks every reader of it shares.
struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: u32,
}

/// A scanned string: the text between its quotes, and whether it holds escapes.
struct Str {
    start: usize,
    end: usize,
    escaped: bool,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// One high bit per byte of `word` equal to `byte`; bits above the lowest may be false alarms
/// (borrows), the lowest is exact.
#[inline]
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// `"`, `\` or a control character in `word` (see [`bytes_equal`]).
#[inline]
fn string_stops(word: u64) -> u64 {
    bytes_equal(word, b'"')
        | bytes_equal(word, b'\\')
        | (word.wrapping_sub(ONES * 0x20) & !word & HIGHS)
}

/// `"` or `\` in `word` (see [`bytes_equal`]).
#[inline]
fn quote_or_backslash(word: u64) -> u64 {
    bytes_equal(word, b'"') | bytes_equal(word, b'\\')
}

/// `"`, `{`, `}`, `[` or `]` in `word` (see [`bytes_equal`]).
#[inline]
fn structure(word: u64) -> u64 {
    // `[`/`{` and `]`/`}` differ only in bit 0x20: fold it away, then look for `[` and `]`.
    let folded = word & !(ONES * 0x20);
    bytes_equal(word, b'"') | bytes_equal(folded, b'[') | bytes_equal(folded, b']')
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            depth: 0,
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline]
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Only whitespace is left.
    fn end(&mut self) -> Scan<()> {
        self.whitespace();
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    #[inline]
    fn expect(&mut self, byte: u8) -> Scan<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// Moves eight bytes at a time while `stops` finds nothing, then to the first stop (or to
    /// the last eight bytes, which the caller reads one by one).
    #[inline]
    fn run_to(&mut self, stops: impl Fn(u64) -> u64) {
        while let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let found = stops(u64::from_le_bytes(word));
            if found != 0 {
                self.pos += (found.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
    }

    /// A string, the cursor at its opening quote. Refuses what serde_json's `parse_str`
    /// refuses (control characters, unknown escapes, bad hex) and gives up on every
    /// surrogate escape, which serde_json refuses unpaired.
    #[inline(always)]
    fn string(&mut self) -> Scan<Str> {
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            self.run_to(string_stops);
            match self.peek().ok_or(GiveUp)? {
                b'"' => {
                    let end = self.pos;
                    self.pos += 1;
                    return Ok(Str {
                        start,
                        end,
                        escaped,
                    });
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                byte if byte < 0x20 => return Err(GiveUp),
                _ => self.pos += 1,
            }
        }
    }

    /// One escape, the cursor at its backslash.
    fn escape(&mut self) -> Scan<()> {
        let kind = *self.bytes.get(self.pos + 1).ok_or(GiveUp)?;
        match kind {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.pos += 2,
            b'u' => {
                let hex = self.bytes.get(self.pos + 2..self.pos + 6).ok_or(GiveUp)?;
                let mut unit = 0u32;
                for &h in hex {
                    let digit = char::from(h).to_digit(16).ok_or(GiveUp)?;
                    unit = unit * 16 + digit;
                }
                if (0xD800..=0xDFFF).contains(&unit) {
                    return Err(GiveUp);
                }
                self.pos += 6;
            }
            _ => return Err(GiveUp),
        }
        Ok(())
    }

    /// A string's value as serde_json gives it: borrowed when it had no escapes.
    #[inline(always)]
    fn string_value(&self, s: &Str) -> Scan<Cow<'a, str>> {
        if !s.escaped {
            return Ok(Cow::Borrowed(&self.text[s.start..s.end]));
        }
        // Rare: let serde_json unescape it (the quotes are the bytes around it).
        serde_json::from_str::<String>(&self.text[s.start - 1..s.end + 1])
            .map(Cow::Owned)
            .map_err(|_| GiveUp)
    }

    /// A string as a [`TextPart`] of the scanned text.
    fn text_part(&mut self) -> Scan<TextPart> {
        if self.peek() != Some(b'"') {
            return Err(GiveUp);
        }
        let s = self.string()?;
        Ok(match self.string_value(&s)? {
            Cow::Borrowed(_) => TextPart::Span(s.start..s.end),
            Cow::Owned(owned) => TextPart::Owned(owned),
        })
    }

    /// A number, the cursor at its first byte: `true` when it is a plain unsigned integer
    /// (no sign, fraction or exponent). An exponent, or more than 18 integer digits, can put
    /// the value out of serde_json's range (which it refuses): those must read as a finite
    /// float well inside the range, or the scanner gives up.
    fn number(&mut self) -> Scan<bool> {
        let start = self.pos;
        let mut plain = true;
        if self.peek() == Some(b'-') {
            self.pos += 1;
            plain = false;
        }
        let digits_start = self.pos;
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(GiveUp);
                }
            }
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = self.peek() {
                    self.pos += 1;
                }
            }
            _ => return Err(GiveUp),
        }
        let mut rare = self.pos - digits_start > 18;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            plain = false;
            let fraction_start = self.pos;
            while let Some(b'0'..=b'9') = self.peek() {
                self.pos += 1;
            }
            if self.pos == fraction_start {
                return Err(GiveUp);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            plain = false;
            rare = true;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            let exponent_start = self.pos;
            while let Some(b'0'..=b'9') = self.peek() {
                self.pos += 1;
            }
            if self.pos == exponent_start {
                return Err(GiveUp);
            }
        }
        if rare {
            let value: f64 = self.text[start..self.pos].parse().map_err(|_| GiveUp)?;
            // NaN cannot come from digits; `is_finite` covers the infinities.
            if !value.is_finite() || value.abs() >= 1e300 {
                return Err(GiveUp);
            }
        }
        Ok(plain && !rare)
    }

    /// `true`, `false` or `null`, the cursor at its first byte.
    fn literal(&mut self, word: &[u8]) -> Scan<()> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    fn enter(&mut self) -> Scan<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        Ok(())
    }

    /// After an item of an object or array: `true` at its closing `close` (eaten), `false`
    /// after a comma (eaten, and the whitespace after it).
    #[inline]
    fn next_item(&mut self, close: u8) -> Scan<bool> {
        self.whitespace();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.whitespace();
                Ok(false)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(GiveUp),
        }
    }

    /// Opens an object or array (the cursor at `{` or `[`): `true` when it is empty (and
    /// closed again).
    fn open(&mut self, close: u8) -> Scan<bool> {
        self.enter()?;
        self.pos += 1;
        self.whitespace();
        if self.peek() == Some(close) {
            self.pos += 1;
            self.depth -= 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// An object key and its colon, the cursor at the key's quote; the cursor ends at the value.
    #[inline(always)]
    fn key(&mut self) -> Scan<Str> {
        if self.peek() != Some(b'"') {
            return Err(GiveUp);
        }
        let key = self.string()?;
        self.whitespace();
        self.expect(b':')?;
        self.whitespace();
        Ok(key)
    }

    /// Whether an unescaped key is `name`.
    fn key_is(&self, key: &Str, name: &str) -> bool {
        !key.escaped && &self.bytes[key.start..key.end] == name.as_bytes()
    }

    /// A value read, checked and dropped.
    fn skip(&mut self) -> Scan<()> {
        match self.peek().ok_or(GiveUp)? {
            b'"' => {
                self.string()?;
            }
            b'{' => {
                if !self.open(b'}')? {
                    loop {
                        self.key()?;
                        self.skip()?;
                        if self.next_item(b'}')? {
                            break;
                        }
                    }
                    self.depth -= 1;
                }
            }
            b'[' => {
                if !self.open(b']')? {
                    loop {
                        self.skip()?;
                        if self.next_item(b']')? {
                            break;
                        }
                    }
                    self.depth -= 1;
                }
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => {
                self.number()?;
            }
            _ => return Err(GiveUp),
        }
        Ok(())
    }

    /// An object only delimited, the cursor at its `{`: strings are found whole (escapes
    /// stepped over), brackets counted, nothing else checked. Only for a `_source` that a
    /// checking decode reads afterwards.
    fn delimit_object(&mut self) -> Scan<Range<usize>> {
        let start = self.pos;
        let mut open = 0usize;
        loop {
            self.run_to(structure);
            match self.peek().ok_or(GiveUp)? {
                b'"' => {
                    self.pos += 1;
                    loop {
                        self.run_to(quote_or_backslash);
                        match self.peek().ok_or(GiveUp)? {
                            b'"' => break,
                            b'\\' => self.pos += 2,
                            _ => self.pos += 1,
                        }
                    }
                }
                b'{' | b'[' => open += 1,
                b'}' | b']' => {
                    open = open.checked_sub(1).ok_or(GiveUp)?;
                    if open == 0 {
                        self.pos += 1;
                        return Ok(start..self.pos);
                    }
                }
                _ => {}
            }
            self.pos += 1;
        }
    }

    /// The entries of an object, the cursor at its `{`: `read` reads the value of each key it
    /// knows and says so (`Ok(true)`); other values are checked and dropped. An escaped key
    /// gives up unless `read` took it: it might spell a known one.
    fn entries(&mut self, mut read: impl FnMut(&mut Self, &Str) -> Scan<bool>) -> Scan<()> {
        if self.peek() != Some(b'{') {
            return Err(GiveUp);
        }
        if self.open(b'}')? {
            return Ok(());
        }
        loop {
            let key = self.key()?;
            if !read(self, &key)? {
                if key.escaped {
                    return Err(GiveUp);
                }
                self.skip()?;
            }
            if self.next_item(b'}')? {
                break;
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// One hit object, the cursor at its `{`: string `_index` and `_id`, an object (or null)
    /// `_source`, an array (or null) `sort`, other keys checked and dropped. Gives up on a
    /// repeated key of these four.
    fn hit(&mut self, mut decode: Option<&mut HitDecode<'a, '_, 'a>>) -> Scan<HitParts> {
        let mut index = None;
        let mut id = None;
        let mut source: Option<Option<Range<usize>>> = None;
        let mut sort: Option<Option<Range<usize>>> = None;
        let mut flat = None;
        self.entries(|c, key| {
            if c.key_is(key, "_index") {
                once(&mut index, c.text_part()?)?;
            } else if c.key_is(key, "_id") {
                once(&mut id, c.text_part()?)?;
            } else if c.key_is(key, "_source") {
                let value = match c.peek() {
                    Some(b'{') => {
                        let (range, values) = c.source(decode.as_deref_mut())?;
                        flat = values;
                        Some(range)
                    }
                    Some(b'n') => c.literal(b"null").map(|()| None)?,
                    _ => return Err(GiveUp),
                };
                once(&mut source, value)?;
            } else if c.key_is(key, "sort") {
                let value = match c.peek() {
                    Some(b'[') => {
                        let start = c.pos;
                        c.skip()?;
                        Some(start..c.pos)
                    }
                    Some(b'n') => c.literal(b"null").map(|()| None)?,
                    _ => return Err(GiveUp),
                };
                once(&mut sort, value)?;
            } else {
                return Ok(false);
            }
            Ok(true)
        })?;
        let sort = sort.flatten();
        let sorted_at = sort.as_ref().and_then(|r| self.first_integer(r.clone()));
        Ok(HitParts {
            index: index.ok_or(GiveUp)?,
            id: id.ok_or(GiveUp)?,
            source: source.flatten(),
            sort,
            sorted_at,
            flat,
        })
    }

    /// A hit's `_source` object, the cursor at its `{`: decoded as it is read when `decode`
    /// is given (with where its values went), else only delimited. A `_source` the decode
    /// gives up on, or hands to the tree, is delimited again from its start and its values
    /// dropped: the caller decodes that one on its own.
    fn source(
        &mut self,
        decode: Option<&mut HitDecode<'a, '_, 'a>>,
    ) -> Scan<(Range<usize>, Option<Range<usize>>)> {
        let start = self.pos;
        // A plan the segment tree cannot route is never decoded here (see `decode_flat`).
        if let Some(decode) = decode.filter(|d| d.plan.decodes_flat()) {
            let (depth, kept) = (self.depth, decode.entries.len());
            match decode_object(self, decode.plan, decode.entries) {
                Ok(FlatDecode::Decoded) => {
                    return Ok((start..self.pos, Some(kept..decode.entries.len())))
                }
                Ok(FlatDecode::NeedsTree) | Err(GiveUp) => {
                    decode.entries.truncate(kept);
                    self.pos = start;
                    self.depth = depth;
                }
            }
        }
        Ok((self.delimit_object()?, None))
    }

    /// [`first_sort_value`] of the array at `range`, without serde for the common plain
    /// unsigned integer.
    fn first_integer(&self, range: Range<usize>) -> Option<i64> {
        let mut cursor = Cursor::new(&self.text[..range.end]);
        cursor.pos = range.start + 1;
        cursor.whitespace();
        let start = cursor.pos;
        if let Ok(true) = cursor.number() {
            return i64::try_from(cursor.text[start..cursor.pos].parse::<u64>().ok()?).ok();
        }
        first_sort_value(&self.text[range])
    }

    /// A search answer: `pit_id`, `timed_out`, `_shards` (delimited) and `hits.hits`; other
    /// keys checked and dropped.
    fn page(&mut self, mut decode: Option<&mut HitDecode<'a, '_, 'a>>) -> Scan<PageParts> {
        let mut pit_id: Option<Option<String>> = None;
        let mut timed_out = None;
        let mut shards = None;
        let mut hits = None;
        self.entries(|c, key| {
            if c.key_is(key, "pit_id") {
                let value = match c.peek() {
                    Some(b'n') => c.literal(b"null").map(|()| None)?,
                    _ => Some(c.text_part()?.get(c.text).to_owned()),
                };
                once(&mut pit_id, value)?;
            } else if c.key_is(key, "timed_out") {
                let value = match c.peek() {
                    Some(b't') => c.literal(b"true").map(|()| true)?,
                    _ => c.literal(b"false").map(|()| false)?,
                };
                once(&mut timed_out, value)?;
            } else if c.key_is(key, "_shards") {
                let start = c.pos;
                if c.peek() != Some(b'{') {
                    return Err(GiveUp);
                }
                c.skip()?;
                once(&mut shards, start..c.pos)?;
            } else if c.key_is(key, "hits") {
                let value = c.page_hits(decode.as_deref_mut())?;
                once(&mut hits, value)?;
            } else {
                return Ok(false);
            }
            Ok(true)
        })?;
        Ok(PageParts {
            pit_id: pit_id.flatten(),
            timed_out: timed_out.unwrap_or(false),
            shards,
            hits: hits.ok_or(GiveUp)?,
        })
    }

    /// The answer's `hits` object: its `hits` array of hits (empty when absent).
    fn page_hits(&mut self, mut decode: Option<&mut HitDecode<'a, '_, 'a>>) -> Scan<Vec<HitParts>> {
        let mut hits = None;
        self.entries(|c, key| {
            if !c.key_is(key, "hits") {
                return Ok(false);
            }
            if c.peek() != Some(b'[') {
                return Err(GiveUp);
            }
            let mut list = Vec::new();
            if !c.open(b']')? {
                loop {
                    list.push(c.hit(decode.as_deref_mut())?);
                    if c.next_item(b']')? {
                        break;
                    }
                }
                c.depth -= 1;
            }
            once(&mut hits, list)?;
            Ok(true)
        })?;
        Ok(hits.unwrap_or_default())
    }
}

/// Sets a field read once; a repeated key gives up (serde refuses a duplicate field).
fn once<T>(slot: &mut Option<T>, value: T) -> Scan<()> {
    if slot.is_some() {
        return Err(GiveUp);
    }
    *slot = Some(value);
    Ok(())
}

/// `entries.push((slot, value))`, inlined into the decoder: called out of line, `Vec::push`
/// read the value back from the stack right after it was written there, a store-forwarding
/// stall worth 6 % of the hot path.
#[inline(always)]
fn push_entry<'a>(entries: &mut Vec<(u16, Stored<'a>)>, slot: u16, value: Stored<'a>) {
    entries.push((slot, value));
}

/// The flat decode: a [`Cursor`] routing keys through a [`FieldPlan`].
struct Decoder<'c, 's, 'a> {
    cursor: &'c mut Cursor<'a>,
    plan: &'a FieldPlan,
    entries: &'s mut Vec<(u16, Stored<'a>)>,
    /// As in the serde path's `DecodeState`: two keys of one object reach one field, or an
    /// object sits where a field's value belongs.
    tangled: bool,
}

impl<'a> Decoder<'_, '_, 'a> {
    /// An object, the cursor at its `{`: each key routed from plan node `node`.
    fn object(&mut self, node: u32) -> Scan<()> {
        if self.cursor.open(b'}')? {
            return Ok(());
        }
        // Slots some key of this object already reached (as in the serde path).
        let mut routed: u64 = 0;
        loop {
            let key = self.cursor.key()?;
            let plan = self.plan;
            let target = if key.escaped {
                let key = self.cursor.string_value(&key)?;
                plan.walk(node, &key)
            } else {
                plan.walk(node, &self.cursor.text[key.start..key.end])
            };
            match target {
                None => self.cursor.skip()?,
                Some(target) => {
                    let target_node = &plan.nodes[target as usize];
                    if routed & target_node.mask != 0 {
                        self.tangled = true;
                    }
                    routed |= target_node.mask;
                    self.value(target_node.terminal, target)?;
                }
            }
            if self.cursor.next_item(b'}')? {
                self.cursor.depth -= 1;
                return Ok(());
            }
        }
    }

    /// The value under a planned key: scalars go to `terminal` (arrays flattened, objects and
    /// nulls kept out, as the serde path's `ValueSeed` does); objects are walked from `node`.
    fn value(&mut self, terminal: Option<u16>, node: u32) -> Scan<()> {
        match self.cursor.peek().ok_or(GiveUp)? {
            b'"' => {
                let s = self.cursor.string()?;
                if let Some(slot) = terminal {
                    let value = self.cursor.string_value(&s)?;
                    push_entry(self.entries, slot, Stored::Str(value));
                }
            }
            b'{' => {
                if terminal.is_some() {
                    self.tangled = true;
                }
                self.object(node)?;
            }
            b'[' => {
                if !self.cursor.open(b']')? {
                    loop {
                        self.value(terminal, node)?;
                        if self.cursor.next_item(b']')? {
                            break;
                        }
                    }
                    self.cursor.depth -= 1;
                }
            }
            b't' => {
                self.cursor.literal(b"true")?;
                self.push(terminal, Stored::Bool(true));
            }
            b'f' => {
                self.cursor.literal(b"false")?;
                self.push(terminal, Stored::Bool(false));
            }
            b'n' => self.cursor.literal(b"null")?,
            b'-' | b'0'..=b'9' => {
                let start = self.cursor.pos;
                let plain = self.cursor.number()?;
                if let Some(slot) = terminal {
                    let text = &self.cursor.text[start..self.cursor.pos];
                    let number = match text.parse::<u64>() {
                        Ok(n) if plain => serde_json::Number::from(n),
                        // Signs, fractions, exponents, `-0`: exactly as serde_json reads them.
                        _ => serde_json::from_str(text).map_err(|_| GiveUp)?,
                    };
                    push_entry(self.entries, slot, Stored::Num(number));
                }
            }
            _ => return Err(GiveUp),
        }
        Ok(())
    }

    #[inline]
    fn push(&mut self, terminal: Option<u16>, value: Stored<'a>) {
        if let Some(slot) = terminal {
            push_entry(self.entries, slot, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::plan;
    use super::super::{decode_flat_serde, FlatDecode, Stored};
    use super::{decode, GiveUp};
    use proptest::prelude::*;

    /// What the scanner decides must be what the serde path decides, value for value.
    /// Returns whether the scanner decided.
    fn scanner_agrees(text: &str) -> bool {
        let plan = plan();
        let mut fast: Vec<(u16, Stored<'_>)> = Vec::new();
        let mut slow: Vec<(u16, Stored<'_>)> = Vec::new();
        let scanned = decode(text, &plan, &mut fast);
        let reference = decode_flat_serde(text, &plan, &mut slow);
        match scanned {
            Err(GiveUp) => false,
            Ok(decided) => {
                match &reference {
                    Ok(r) => assert_eq!(*r, decided, "{text}"),
                    Err(e) => panic!("the scanner accepted what serde_json refuses ({e}): {text}"),
                }
                if decided == FlatDecode::Decoded {
                    assert_eq!(fast, slow, "{text}");
                }
                true
            }
        }
    }

    #[test]
    fn everyday_documents_are_decided_by_the_scanner() {
        for text in [
            r#"{"@timestamp":"2026-05-28T20:26:40.163Z","a":{"b":{"c":"deep"}},"b.c":["x","y"],"c":true,"x":-7}"#,
            r#" { "a" : [ { "b" : "one" } , { "b" : [ "two" , null ] } ] , "x" : 1.25 , "z" : { "q" : [1, 2.5, false] } } "#,
            r#"{"c": "esc\"aped \u00e9 \\ \/ \n", "ignored": "caf\u00e9", "x": 0}"#,
            r#"{"a\u002eb": "escaped dot key", "x": 18, "a.b.c": -0.5}"#,
            "{}",
            r#"{"a": {"b": {}}, "x": []}"#,
            r#"{"c": 1E2, "x": 1234567890123456789, "a": [2.5e-3, -0, -0.0, 18446744073709551616]}"#,
            r#"{"ignored": [1e-400, 12345678901234567890123, -4E+7]}"#,
        ] {
            assert!(scanner_agrees(text), "the scanner gave up on {text}");
        }
    }

    #[test]
    fn the_scanner_gives_up_where_serde_json_may_refuse() {
        let deep = format!(r#"{{"ignored": {}1{}}}"#, "[".repeat(101), "]".repeat(101));
        for text in [
            deep.as_str(),
            r#"{"ignored": 1e400}"#,
            r#"{"c": -1E300}"#,
            r#"{"x": 1234567890123456789012345678901234567890e270}"#,
            r#"{"c": "lone \ud800"}"#,
            r#"{"ignored": "pair \ud83d\ude00"}"#,
            r#"{"c": "bad \q escape"}"#,
            r#"{"c": "bad \u00zz hex"}"#,
            "{\"c\": \"control \u{1} char\"}",
            r#"{"c": 1} trailing"#,
            r#"{"c": 1"#,
            r#"{"c": 1,}"#,
            r#"{"c": [1,]}"#,
            r#"{"c": 01}"#,
            r#"{"c": 1.}"#,
            r#"{"c": -}"#,
            r#"{"c": tru}"#,
            r#"{"c" 1}"#,
            r#"{c: 1}"#,
            r#"[1]"#,
            r#""text""#,
            "",
        ] {
            let plan = plan();
            let mut entries = Vec::new();
            assert!(decode(text, &plan, &mut entries).is_err(), "decided {text}");
        }
    }

    /// Bytes that break JSON, or spell its rare cases, spliced into valid texts.
    fn splice() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "\\", "\"", "\\u", "\\ud800", "\\u0041", "e5", "E-3", ".", "-", "0", "00", "1e400",
            "}", "]", "{", "[", ",", ":", " ", "\t", "\u{1}", "\u{7f}", "é", "true", "nul", "null",
            "\\n", "\\x",
        ])
    }

    fn json_value() -> impl Strategy<Value = String> {
        super::super::tests::json_text(
            &[
                "null",
                "true",
                "false",
                "0",
                "-2",
                "-0",
                "1.5",
                "-0.0",
                "123456789012345678",
                "18446744073709551615",
                "2.5e3",
                r#""s""#,
                r#""long string of more than eight bytes""#,
                r#""e\u0041\"x\\y\/z""#,
            ],
            &[
                "a",
                "b",
                "c",
                "x",
                "a.b",
                "b.c",
                "a.b.c",
                "",
                r"a\u002eb",
                "unplanned key",
            ],
            " , ",
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_scanner_decides_as_the_serde_path(text in json_value()) {
            scanner_agrees(&format!("{{\"a\": {text}, \"x\": {text}}}"));
            scanner_agrees(&text);
        }

        #[test]
        fn broken_texts_are_never_accepted_by_the_scanner_alone(
            text in json_value(),
            at in any::<prop::sample::Index>(),
            piece in splice(),
            cut in any::<bool>(),
        ) {
            let text = format!("{{\"c\": {text}, \"z\": {text}}}");
            // Splice at a character boundary, or cut there.
            let boundaries: Vec<usize> =
                (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
            let i = boundaries[at.index(boundaries.len())];
            let broken = if cut {
                format!("{}{}", &text[..i], &text[(i + 1).min(text.len())..])
            } else {
                format!("{}{piece}{}", &text[..i], &text[i..])
            };
            if broken.is_char_boundary(broken.len()) {
                scanner_agrees(&broken);
            }
        }
    }
}
