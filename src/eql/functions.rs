//! The EQL scalar functions and operators as ES's scripts compute them, and the translation
//! of Lucene wildcard and regular-expression patterns into anchored Rust regexes.
//!
//! Every function mirrors its ES `*FunctionProcessor` (cited per function); Java string
//! indexes are UTF-16 code units and are reproduced as such. Runtime failures that make ES
//! fail the search (a script exception) are returned as [`EvalError`].

use std::borrow::Cow;
use std::fmt::Write as _;

use regex::Regex;

use super::value::{alt_case, ip_to_u128, parse_cidr, Val};

/// A failure while evaluating a script expression; ES would fail the whole search.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// Integer overflow in `+ - *` (`Math.addExact` and friends throw).
    #[error("integer overflow in arithmetic")]
    Overflow,
    /// Integer division or modulo by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// A function received a value of the wrong type at run time.
    #[error("{function}: {message}")]
    BadArgument {
        /// The EQL function name.
        function: &'static str,
        /// What was wrong.
        message: String,
    },
}

fn bad(function: &'static str, message: impl Into<String>) -> EvalError {
    EvalError::BadArgument {
        function,
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Patterns

/// Why a pattern cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(pub String);

fn push_literal(out: &mut String, c: char, case_insensitive: bool) {
    let alt = if case_insensitive { alt_case(c) } else { c };
    if alt == c {
        let _ = write!(out, "\\x{{{:x}}}", c as u32);
    } else {
        let _ = write!(out, "[\\x{{{:x}}}\\x{{{:x}}}]", c as u32, alt as u32);
    }
}

/// Lucene wildcard syntax (`*` any run, `?` one code point, `\` escapes the next character)
/// as an anchored Rust regex. `case_insensitive` adds each literal's alternative case, as the
/// `case_insensitive` wildcard query does.
pub fn lucene_wildcard_to_regex(pattern: &str, case_insensitive: bool) -> Regex {
    let mut out = String::from("(?s)\\A(?:");
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            // A trailing backslash is a literal backslash (Lucene `WildcardQuery.toAutomaton`).
            '\\' => push_literal(&mut out, chars.next().unwrap_or('\\'), case_insensitive),
            c => push_literal(&mut out, c, case_insensitive),
        }
    }
    out.push_str(")\\z");
    // Only escaped literals, `.`, `.*`: always a valid regex within default size limits
    // for any realistic pattern; a failure (huge pattern) falls back to a never-matching one.
    Regex::new(&out).unwrap_or_else(|_| never_regex())
}

fn never_regex() -> Regex {
    // `[a&&b]` is the empty class; a constant that always compiles.
    Regex::new("[a&&b]").unwrap_or_else(|_| unreachable!("constant regex"))
}

/// An EQL `like` pattern (`*` any run, `?` one character, everything else literal; EQL has no
/// escape for `*`/`?`: `ES: util/StringUtils.toLikePattern`) as a Lucene wildcard string, which
/// is what ES sends in the `wildcard` query (`LikePattern.asLuceneWildcard` escapes `\`).
pub fn like_to_lucene_wildcard(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

/// Escapes a literal string for a Lucene wildcard pattern.
pub fn escape_lucene_wildcard(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Translates a Lucene `RegExp` (the syntax of ES `regexp` queries, flags `ALL`) into an
/// anchored Rust regex. Constructs whose meaning depends on the Lucene version or that Rust
/// cannot express are rejected: `&` (intersection), `~` (complement), `<n-m>` (numeric
/// interval) and `\` before an ASCII letter or digit (`\d`-style classes exist only in some
/// Lucene versions). `@` (any string) and `#` (empty language) are translated.
/// `case_insensitive` is Lucene's `ASCII_CASE_INSENSITIVE`, which ES uses for
/// `case_insensitive` regexp queries: single ASCII letters match both cases, ranges do not.
pub fn lucene_regex_to_regex(pattern: &str, case_insensitive: bool) -> Result<Regex, PatternError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut p = RegexParser {
        chars: &chars,
        i: 0,
        ci: case_insensitive,
        out: String::from("(?s)\\A(?:"),
    };
    p.union()?;
    if p.i != chars.len() {
        return Err(PatternError(format!(
            "unexpected `{}` at character {}",
            chars[p.i],
            p.i + 1
        )));
    }
    p.out.push_str(")\\z");
    Regex::new(&p.out).map_err(|e| PatternError(format!("pattern too complex: {e}")))
}

struct RegexParser<'a> {
    chars: &'a [char],
    i: usize,
    ci: bool,
    out: String,
}

impl RegexParser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn literal(&mut self, c: char) {
        let ci = self.ci && c.is_ascii_alphabetic();
        push_literal(&mut self.out, c, ci);
    }

    fn union(&mut self) -> Result<(), PatternError> {
        self.concat()?;
        while self.peek() == Some('|') {
            self.i += 1;
            self.out.push('|');
            self.concat()?;
        }
        Ok(())
    }

    fn concat(&mut self) -> Result<(), PatternError> {
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            self.repeat()?;
        }
        Ok(())
    }

    fn repeat(&mut self) -> Result<(), PatternError> {
        let start = self.out.len();
        self.atom()?;
        loop {
            let quantifier = match self.peek() {
                Some('*') => "*".to_owned(),
                Some('+') => "+".to_owned(),
                Some('?') => "?".to_owned(),
                Some('{') => self.braces()?,
                _ => break,
            };
            if quantifier.len() == 1 {
                self.i += 1;
            }
            // Group what came before so quantifiers stack the way Lucene stacks them.
            let atom = self.out.split_off(start);
            let _ = write!(self.out, "(?:{atom}){quantifier}");
        }
        Ok(())
    }

    fn number(&mut self) -> Option<u32> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits: String = self.chars[start..self.i].iter().collect();
        digits.parse().ok()
    }

    fn braces(&mut self) -> Result<String, PatternError> {
        self.i += 1; // '{'
        let min = self
            .number()
            .ok_or_else(|| PatternError("expected a number after `{`".into()))?;
        let q = if self.peek() == Some(',') {
            self.i += 1;
            match self.number() {
                Some(max) if max < min => {
                    return Err(PatternError(format!("bad repetition {{{min},{max}}}")))
                }
                Some(max) => format!("{{{min},{max}}}"),
                None => format!("{{{min},}}"),
            }
        } else {
            format!("{{{min}}}")
        };
        if self.peek() != Some('}') {
            return Err(PatternError("expected `}`".into()));
        }
        self.i += 1;
        Ok(q)
    }

    fn escaped(&mut self) -> Result<char, PatternError> {
        self.i += 1; // '\'
        let c = self
            .peek()
            .ok_or_else(|| PatternError("trailing `\\`".into()))?;
        if c.is_ascii_alphanumeric() {
            return Err(PatternError(format!(
                "`\\{c}` has a version-dependent meaning in Lucene regular expressions"
            )));
        }
        self.i += 1;
        Ok(c)
    }

    fn atom(&mut self) -> Result<(), PatternError> {
        let Some(c) = self.peek() else {
            return Ok(());
        };
        match c {
            '(' => {
                self.i += 1;
                self.out.push_str("(?:");
                self.union()?;
                if self.peek() != Some(')') {
                    return Err(PatternError("unclosed `(`".into()));
                }
                self.i += 1;
                self.out.push(')');
            }
            '[' => self.class()?,
            '.' => {
                self.i += 1;
                self.out.push('.');
            }
            '@' => {
                self.i += 1;
                self.out.push_str(".*");
            }
            '#' => {
                self.i += 1;
                self.out.push_str("[a&&b]");
            }
            '"' => {
                self.i += 1;
                loop {
                    match self.peek() {
                        None => return Err(PatternError("unclosed `\"`".into())),
                        Some('"') => {
                            self.i += 1;
                            break;
                        }
                        Some(ch) => {
                            self.i += 1;
                            self.literal(ch);
                        }
                    }
                }
            }
            '\\' => {
                let ch = self.escaped()?;
                self.literal(ch);
            }
            '&' | '~' | '<' => {
                return Err(PatternError(format!(
                    "the Lucene operator `{c}` is not supported"
                )))
            }
            '*' | '+' | '?' | '{' => {
                return Err(PatternError(format!("`{c}` has nothing to repeat")))
            }
            ch => {
                self.i += 1;
                self.literal(ch);
            }
        }
        Ok(())
    }

    fn class(&mut self) -> Result<(), PatternError> {
        self.i += 1; // '['
        self.out.push('[');
        if self.peek() == Some('^') {
            self.i += 1;
            self.out.push('^');
        }
        let mut empty = true;
        loop {
            let c = match self.peek() {
                None => return Err(PatternError("unclosed `[`".into())),
                Some(']') if !empty => {
                    self.i += 1;
                    break;
                }
                Some('\\') => self.escaped()?,
                Some(c) => {
                    self.i += 1;
                    c
                }
            };
            empty = false;
            if self.peek() == Some('-') && self.chars.get(self.i + 1).is_some_and(|n| *n != ']') {
                self.i += 1;
                let hi = match self.peek() {
                    Some('\\') => self.escaped()?,
                    Some(h) => {
                        self.i += 1;
                        h
                    }
                    None => return Err(PatternError("unclosed `[`".into())),
                };
                if hi < c {
                    return Err(PatternError(format!("bad range {c}-{hi}")));
                }
                let _ = write!(self.out, "\\x{{{:x}}}-\\x{{{:x}}}", c as u32, hi as u32);
            } else {
                let _ = write!(self.out, "\\x{{{:x}}}", c as u32);
                if self.ci && c.is_ascii_alphabetic() {
                    let _ = write!(self.out, "\\x{{{:x}}}", alt_case(c) as u32);
                }
            }
        }
        self.out.push(']');
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Strings (Java semantics: UTF-16 indexes, `toLowerCase(Locale.ROOT)`)

fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

fn from_utf16(units: &[u16]) -> String {
    String::from_utf16_lossy(units)
}

/// Java `String.indexOf(target, from)` over UTF-16 units.
fn java_index_of(hay: &[u16], needle: &[u16], from: i64) -> Option<usize> {
    let from = from.max(0) as usize;
    if from >= hay.len() {
        return needle.is_empty().then_some(hay.len());
    }
    if needle.is_empty() {
        return Some(from);
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn java_last_index_of(hay: &[u16], needle: &[u16]) -> Option<usize> {
    if needle.is_empty() {
        return Some(hay.len());
    }
    hay.windows(needle.len()).rposition(|w| w == needle)
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

fn need_str<'v, 'a>(function: &'static str, v: &'v Val<'a>) -> Result<&'v str, EvalError> {
    match v {
        Val::Str(s) => Ok(s),
        other => Err(bad(
            function,
            format!("a string is required; received [{other:?}]"),
        )),
    }
}

fn need_int(function: &'static str, v: &Val) -> Result<Option<i64>, EvalError> {
    match v {
        Val::Null => Ok(None),
        Val::Int(i) => Ok(Some(i64::from(*i))),
        Val::Long(i) => Ok(Some(*i)),
        // Java `Number.intValue()` truncates doubles.
        Val::Double(d) => Ok(Some(*d as i64)),
        other => Err(bad(
            function,
            format!("a number is required; received [{other:?}]"),
        )),
    }
}

/// `between(source, left, right, greedy)` (`BetweenFunctionProcessor`, `StringUtils.between`):
/// null source → null; empty source/left/right → source; left not found → ""; greedy takes
/// the **last** `right` in the whole string; a `right` before `left`'s end makes Java's
/// `substring` throw, which fails the search.
pub fn between<'a>(
    source: &Val<'a>,
    left: &Val,
    right: &Val,
    greedy: bool,
    case_insensitive: bool,
) -> Result<Val<'a>, EvalError> {
    if matches!(source, Val::Null) {
        return Ok(Val::Null);
    }
    let s = need_str("between", source)?;
    let l = need_str("between", left)?;
    let r = need_str("between", right)?;
    if s.is_empty() || l.is_empty() || r.is_empty() {
        return Ok(source.clone());
    }
    let (hay, ln, rn) = if case_insensitive {
        (utf16(&lower(s)), utf16(&lower(l)), utf16(&lower(r)))
    } else {
        (utf16(s), utf16(l), utf16(r))
    };
    let Some(idx) = java_index_of(&hay, &ln, 0) else {
        return Ok(Val::Str(Cow::Borrowed("")));
    };
    let start = idx + ln.len();
    let end = if greedy {
        java_last_index_of(&hay, &rn)
    } else {
        java_index_of(&hay, &rn, start as i64)
    };
    let Some(end) = end else {
        return Ok(Val::Str(Cow::Borrowed("")));
    };
    let original = utf16(s);
    if start > end || end > original.len() {
        return Err(bad(
            "between",
            format!("substring({start}, {end}) out of range"),
        ));
    }
    Ok(Val::Str(Cow::Owned(from_utf16(&original[start..end]))))
}

/// `cidrMatch(ip, cidr…)` as a script (`CIDRMatchFunctionProcessor` → `CIDRUtils.isInRange`):
/// null → null; IPv4 and IPv6; an unparsable address fails the search.
pub fn cidr_match<'a>(ip: &Val, cidrs: &[(u128, u128)]) -> Result<Val<'a>, EvalError> {
    let s = match ip {
        Val::Null => return Ok(Val::Null),
        v => need_str("cidrMatch", v)?,
    };
    let addr: std::net::IpAddr = s
        .parse()
        .map_err(|_| bad("cidrMatch", format!("'{s}' is not an IP string literal.")))?;
    let n = ip_to_u128(addr);
    Ok(Val::Bool(cidrs.iter().any(|(net, mask)| n & mask == *net)))
}

/// Parses the CIDR arguments of `cidrMatch` at compile time.
pub fn parse_cidr_arg(s: &str) -> Option<(u128, u128)> {
    parse_cidr(s)
}

/// `concat(…)` (`ConcatFunctionProcessor`): any null argument makes the result null; other
/// values are appended with Java `toString()`.
pub fn concat<'a>(args: &[Val<'a>]) -> Val<'a> {
    let mut out = String::new();
    for a in args {
        match a.java_string() {
            Some(s) => out.push_str(&s),
            None => return Val::Null,
        }
    }
    Val::Str(Cow::Owned(out))
}

/// `endsWith(s, suffix)` as a script: null → null.
pub fn ends_with<'a>(s: &Val, suffix: &Val, ci: bool) -> Result<Val<'a>, EvalError> {
    if matches!(s, Val::Null) || matches!(suffix, Val::Null) {
        return Ok(Val::Null);
    }
    let (s, p) = (need_str("endsWith", s)?, need_str("endsWith", suffix)?);
    Ok(Val::Bool(if ci {
        lower(s).ends_with(&lower(p))
    } else {
        s.ends_with(p)
    }))
}

/// `startsWith(s, prefix)` as a script: null → null.
pub fn starts_with<'a>(s: &Val, prefix: &Val, ci: bool) -> Result<Val<'a>, EvalError> {
    if matches!(s, Val::Null) || matches!(prefix, Val::Null) {
        return Ok(Val::Null);
    }
    let (s, p) = (need_str("startsWith", s)?, need_str("startsWith", prefix)?);
    Ok(Val::Bool(if ci {
        lower(s).starts_with(&lower(p))
    } else {
        s.starts_with(p)
    }))
}

/// `stringContains(s, sub)` as a script (`StringUtils.stringContains`): null → null; an empty
/// `s` or `sub` gives **false**.
pub fn string_contains<'a>(s: &Val, sub: &Val, ci: bool) -> Result<Val<'a>, EvalError> {
    if matches!(s, Val::Null) || matches!(sub, Val::Null) {
        return Ok(Val::Null);
    }
    let (s, p) = (
        need_str("stringContains", s)?,
        need_str("stringContains", sub)?,
    );
    if s.is_empty() || p.is_empty() {
        return Ok(Val::Bool(false));
    }
    Ok(Val::Bool(if ci {
        lower(s).contains(&lower(p))
    } else {
        s.contains(p)
    }))
}

/// `indexOf(s, sub[, start])` (`IndexOfFunctionProcessor`): null s or sub → null; a negative
/// start counts as 0; not found → null; indexes are UTF-16 units.
pub fn index_of<'a>(s: &Val, sub: &Val, start: &Val, ci: bool) -> Result<Val<'a>, EvalError> {
    if matches!(s, Val::Null) || matches!(sub, Val::Null) {
        return Ok(Val::Null);
    }
    let (s, p) = (need_str("indexOf", s)?, need_str("indexOf", sub)?);
    let from = need_int("indexOf", start)?.unwrap_or(0);
    let (hay, needle) = if ci {
        (utf16(&lower(s)), utf16(&lower(p)))
    } else {
        (utf16(s), utf16(p))
    };
    Ok(
        match java_index_of(
            &hay,
            &needle,
            from.clamp(i64::from(i32::MIN), i64::from(i32::MAX)),
        ) {
            Some(i) => Val::Int(i as i32),
            None => Val::Null,
        },
    )
}

/// `length(s)` (`LengthFunctionProcessor`): UTF-16 length; null → null.
pub fn length<'a>(s: &Val) -> Result<Val<'a>, EvalError> {
    match s {
        Val::Null => Ok(Val::Null),
        v => Ok(Val::Int(
            super::value::utf16_len(need_str("length", v)?) as i32
        )),
    }
}

/// `number(s[, base])` (`ToNumberFunctionProcessor`): null → null; a `0x` prefix means base
/// 16 when no base is given; base 10 parses a long, else a double; an unparsable string fails
/// the search.
pub fn number<'a>(s: &Val, base: &Val) -> Result<Val<'a>, EvalError> {
    let text = match s {
        Val::Null => return Ok(Val::Null),
        v => need_str("number", v)?,
    };
    let hex = text.starts_with("0x");
    let radix = match base {
        Val::Null => {
            if hex {
                16
            } else {
                10
            }
        }
        Val::Int(b) => *b,
        other => {
            return Err(bad(
                "number",
                format!("an integer base is required; received [{other:?}]"),
            ))
        }
    };
    let digits = if hex && radix == 16 { &text[2..] } else { text };
    let fail = || {
        bad(
            "number",
            format!("unable to convert [{digits}] to number of base [{radix}]"),
        )
    };
    if radix == 10 {
        if let Some(l) = java_parse_long(digits, 10) {
            return Ok(Val::Long(l));
        }
        return java_parse_double(digits).map(Val::Double).ok_or_else(fail);
    }
    if !(2..=36).contains(&radix) {
        return Err(fail());
    }
    java_parse_long(digits, radix as u32)
        .map(Val::Long)
        .ok_or_else(fail)
}

/// Java `Long.parseLong(s, radix)`: optional sign, then digits only.
fn java_parse_long(s: &str, radix: u32) -> Option<i64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    i64::from_str_radix(s, radix).ok()
}

/// Java `Double.valueOf`: trims ASCII whitespace, accepts a trailing `d`/`f` type suffix,
/// `NaN` and `Infinity`.
fn java_parse_double(s: &str) -> Option<f64> {
    let t = s.trim_matches(|c: char| c <= ' ');
    let t = t.strip_suffix(['d', 'D', 'f', 'F']).unwrap_or(t);
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    if body == "NaN" || body == "Infinity" {
        return t.replace("Infinity", "inf").parse().ok();
    }
    if body.is_empty()
        || !body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
    {
        return None;
    }
    t.parse().ok()
}

/// `string(x)` (`ToStringFunctionProcessor`): Java `toString()`, null → null.
pub fn to_string<'a>(v: &Val<'a>) -> Val<'a> {
    match v.java_string() {
        Some(s) => Val::Str(s),
        None => Val::Null,
    }
}

/// `substring(s, start[, end])` (`SubstringFunctionProcessor`, `StringUtils.substringSlice`):
/// Python slice semantics, negative indexes count from the end; UTF-16 units.
pub fn substring<'a>(s: &Val<'a>, start: &Val, end: &Val) -> Result<Val<'a>, EvalError> {
    let text = match s {
        Val::Null => return Ok(Val::Null),
        v => need_str("substring", v)?,
    };
    if text.is_empty() {
        return Ok(s.clone());
    }
    let units = utf16(text);
    let len = units.len() as i64;
    let mut from = need_int("substring", start)?.unwrap_or(0);
    let mut to = need_int("substring", end)?.unwrap_or(len);
    if from < 0 {
        from += len;
    }
    from = from.max(0);
    if to < 0 {
        to += len;
    }
    to = to.clamp(0, len);
    if from >= to {
        return Ok(Val::Str(Cow::Borrowed("")));
    }
    Ok(Val::Str(Cow::Owned(from_utf16(
        &units[from as usize..to as usize],
    ))))
}

// ---------------------------------------------------------------------------------------------
// Arithmetic (`ES:/x-pack/plugin/ql/.../predicate/operator/arithmetic/Arithmetics.java`)

/// The arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    /// `+`, `add`
    Add,
    /// `-`, `subtract`
    Sub,
    /// `*`, `multiply`
    Mul,
    /// `/`, `divide`
    Div,
    /// `%`, `modulo`
    Mod,
}

/// QL `Arithmetics`: null → null; a double operand makes a double; `Long` if either is long,
/// else `Integer`; `+ - *` throw on overflow (`Math.*Exact`); integer `/` and `%` truncate
/// toward zero and throw on a zero divisor (`Long.MIN_VALUE / -1` wraps, as in Java).
pub fn arith<'a>(op: Arith, l: &Val, r: &Val) -> Result<Val<'a>, EvalError> {
    if matches!(l, Val::Null) || matches!(r, Val::Null) {
        return Ok(Val::Null);
    }
    if !l.is_number() || !r.is_number() {
        return Err(bad(
            "arithmetic",
            format!("a number is required; received [{l:?}] and [{r:?}]"),
        ));
    }
    let as_f = |v: &Val| match v {
        Val::Int(i) => f64::from(*i),
        Val::Long(i) => *i as f64,
        Val::Double(d) => *d,
        _ => 0.0,
    };
    if matches!(l, Val::Double(_)) || matches!(r, Val::Double(_)) {
        let (a, b) = (as_f(l), as_f(r));
        return Ok(Val::Double(match op {
            Arith::Add => a + b,
            Arith::Sub => a - b,
            Arith::Mul => a * b,
            Arith::Div => a / b,
            Arith::Mod => a % b,
        }));
    }
    let as_i = |v: &Val| match v {
        Val::Int(i) => i64::from(*i),
        Val::Long(i) => *i,
        _ => 0,
    };
    if matches!(l, Val::Long(_)) || matches!(r, Val::Long(_)) {
        let (a, b) = (as_i(l), as_i(r));
        return int_op(op, a, b).map(Val::Long);
    }
    let (a, b) = (as_i(l) as i32, as_i(r) as i32);
    int_op(op, a, b).map(Val::Int)
}

trait JavaInt: Copy {
    fn checked_add(self, o: Self) -> Option<Self>;
    fn checked_sub(self, o: Self) -> Option<Self>;
    fn checked_mul(self, o: Self) -> Option<Self>;
    fn wrapping_div(self, o: Self) -> Self;
    fn wrapping_rem(self, o: Self) -> Self;
    fn is_zero(self) -> bool;
}

macro_rules! java_int {
    ($t:ty) => {
        impl JavaInt for $t {
            fn checked_add(self, o: Self) -> Option<Self> {
                <$t>::checked_add(self, o)
            }
            fn checked_sub(self, o: Self) -> Option<Self> {
                <$t>::checked_sub(self, o)
            }
            fn checked_mul(self, o: Self) -> Option<Self> {
                <$t>::checked_mul(self, o)
            }
            fn wrapping_div(self, o: Self) -> Self {
                <$t>::wrapping_div(self, o)
            }
            fn wrapping_rem(self, o: Self) -> Self {
                <$t>::wrapping_rem(self, o)
            }
            fn is_zero(self) -> bool {
                self == 0
            }
        }
    };
}
java_int!(i32);
java_int!(i64);

fn int_op<T: JavaInt>(op: Arith, a: T, b: T) -> Result<T, EvalError> {
    match op {
        Arith::Add => a.checked_add(b).ok_or(EvalError::Overflow),
        Arith::Sub => a.checked_sub(b).ok_or(EvalError::Overflow),
        Arith::Mul => a.checked_mul(b).ok_or(EvalError::Overflow),
        Arith::Div if b.is_zero() => Err(EvalError::DivisionByZero),
        Arith::Mod if b.is_zero() => Err(EvalError::DivisionByZero),
        Arith::Div => Ok(a.wrapping_div(b)),
        Arith::Mod => Ok(a.wrapping_rem(b)),
    }
}

/// Unary minus (`Neg`): `Math.negateExact` for integers.
pub fn negate<'a>(v: &Val) -> Result<Val<'a>, EvalError> {
    match v {
        Val::Null => Ok(Val::Null),
        Val::Int(i) => i.checked_neg().map(Val::Int).ok_or(EvalError::Overflow),
        Val::Long(i) => i.checked_neg().map(Val::Long).ok_or(EvalError::Overflow),
        Val::Double(d) => Ok(Val::Double(-d)),
        other => Err(bad(
            "negate",
            format!("a number is required; received [{other:?}]"),
        )),
    }
}
