//! Kibana's value checks for ECS leaf types, from
//! `rule_types/factories/utils/ecs_types_validators/` (paths relative to the detection engine,
//! see the module above). Kibana runs them in JavaScript, so "numeric" means what `Number()`
//! accepts and "date" what moment's strict ISO 8601 parser accepts; both are restated here,
//! and pinned by Kibana's own test cases below.

use std::net::Ipv6Addr;
use std::sync::LazyLock;

use chrono::{Datelike, NaiveDate};
use regex::Regex;
use serde_json::Value;

/// `isValidNumericType`: a number, or a string `Number()` does not turn into `NaN`.
pub fn is_numeric(v: &Value) -> bool {
    match v {
        Value::Number(_) => true,
        Value::String(s) => js_number_is_not_nan(s),
        _ => false,
    }
}

/// `isValidLongType`: numeric, and a string holds no space.
pub fn is_long(v: &Value) -> bool {
    !matches!(v, Value::String(s) if s.contains(' ')) && is_numeric(v)
}

/// `isValidBooleanType`: `true`, `false`, or the strings `"true"`, `"false"` and `""`.
pub fn is_boolean(v: &Value) -> bool {
    match v {
        Value::Bool(_) => true,
        Value::String(s) => matches!(s.as_str(), "true" | "false" | ""),
        _ => false,
    }
}

/// `isValidIpType`: a string that ipaddr.js reads as an IPv4 or IPv6 address, or as a CIDR
/// block of either.
pub fn is_ip(v: &Value) -> bool {
    let Value::String(s) = v else { return false };
    is_ipaddr_js_address(s) || is_cidr(s)
}

/// `isValidDateType`: numeric (epoch milliseconds), or a string moment parses strictly as
/// ISO 8601 or as `yyyy-MM-DDT`.
pub fn is_date(v: &Value) -> bool {
    if is_numeric(v) {
        return true;
    }
    let Value::String(s) = v else { return false };
    is_moment_iso_8601(s) || is_date_then_t(s)
}

/// JavaScript's `StringToNumber` yields a number (not `NaN`): surrounding white space is
/// trimmed, an empty string is 0, then a signed decimal (with `Infinity`) or an unsigned
/// `0x`/`0o`/`0b` integer.
fn js_number_is_not_nan(s: &str) -> bool {
    let t = s.trim_matches(is_js_white_space);
    if t.is_empty() {
        return true;
    }
    let bytes = t.as_bytes();
    if bytes.len() > 2 && bytes[0] == b'0' {
        let radix = match bytes[1] {
            b'x' | b'X' => Some(16),
            b'o' | b'O' => Some(8),
            b'b' | b'B' => Some(2),
            _ => None,
        };
        // Only after an ASCII radix letter is byte 2 a character boundary.
        if let Some(radix) = radix {
            return t[2..].chars().all(|c| c.is_digit(radix));
        }
    }
    let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
    if unsigned == "Infinity" {
        return true;
    }
    static DECIMAL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$").expect("valid")
    });
    DECIMAL.is_match(unsigned)
}

/// ECMAScript `WhiteSpace` and `LineTerminator`, which `Number()` trims.
fn is_js_white_space(c: char) -> bool {
    matches!(
        c,
        '\u{9}' | '\u{a}' | '\u{b}' | '\u{c}' | '\u{d}' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

/// ipaddr.js `isValid`: IPv6 (with an optional `%zone`), or IPv4 in any of the forms its
/// parser takes: four, three or two parts or one 32-bit value, each part decimal, octal
/// (leading 0) or hexadecimal (`0x`).
fn is_ipaddr_js_address(s: &str) -> bool {
    let v6 = s.split_once('%').map_or(s, |(addr, _zone)| addr);
    if v6.contains(':') {
        return v6.parse::<Ipv6Addr>().is_ok();
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return false;
    }
    let Some(values) = parts
        .iter()
        .map(|p| parse_int_auto(p))
        .collect::<Option<Vec<u64>>>()
    else {
        return false;
    };
    let (last, init) = values.split_last().expect("at least one part");
    let last_bits = 8 * (5 - values.len() as u32);
    init.iter().all(|&v| v <= 0xff) && *last < (1u64 << last_bits)
}

/// ipaddr.js `parseIntAuto`: `0x…` hexadecimal, `0…` octal, otherwise decimal.
fn parse_int_auto(p: &str) -> Option<u64> {
    if p.is_empty() || p.len() > 12 {
        return None;
    }
    if let Some(hex) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok();
    }
    if p.len() > 1 && p.starts_with('0') {
        return u64::from_str_radix(&p[1..], 8).ok();
    }
    p.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| p.parse().ok())
        .flatten()
}

/// ipaddr.js `IPv4.parseCIDR` / `IPv6.parseCIDR`.
fn is_cidr(s: &str) -> bool {
    let Some((addr, len)) = s.rsplit_once('/') else {
        return false;
    };
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let len: u32 = len.parse().unwrap_or(u32::MAX);
    if addr.contains(':') {
        addr.parse::<Ipv6Addr>().is_ok() && len <= 128
    } else {
        is_ipaddr_js_address(addr) && len <= 32
    }
}

/// moment's strict ISO 8601 (`moment(s, ISO_8601, true)`): its extended and basic patterns,
/// the date and time shapes of its `isoDates`/`isoTimes` tables (week dates, ordinal dates and
/// year-month forms take no time), and its overflow checks (month, day of month, day of year,
/// week, hour 24 only as 24:00:00).
fn is_moment_iso_8601(s: &str) -> bool {
    static EXTENDED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^\s*((?:[+-]\d{6}|\d{4})-(?:\d\d-\d\d|W\d\d-\d|W\d\d|\d\d\d|\d\d))(?:(T| )(\d\d(?::\d\d(?::\d\d(?:[.,]\d+)?)?)?)([+-]\d\d(?::?\d\d)?|\s*Z)?)?$",
        )
        .expect("valid")
    });
    static BASIC: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^\s*((?:[+-]\d{6}|\d{4})(?:\d\d\d\d|W\d\d\d|W\d\d|\d\d\d|\d\d|))(?:(T| )(\d\d(?:\d\d(?:\d\d(?:[.,]\d+)?)?)?)([+-]\d\d(?::?\d\d)?|\s*Z)?)?$",
        )
        .expect("valid")
    });
    let Some(caps) = EXTENDED.captures(s).or_else(|| BASIC.captures(s)) else {
        return false;
    };
    let date = caps.get(1).map_or("", |m| m.as_str());
    let time = caps.get(3).map(|m| m.as_str());
    iso_date_is_valid(date, time.is_some()) && time.is_none_or(iso_time_is_valid)
}

/// The date part, by the first of moment's `isoDates` shapes it matches.
fn iso_date_is_valid(date: &str, has_time: bool) -> bool {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let num = |s: &str| s.parse::<i32>().ok();
    let (sign, rest) = match date.as_bytes().first() {
        Some(b'+') | Some(b'-') => (date[..1].to_owned(), &date[1..]),
        _ => (String::new(), date),
    };
    let year_len = if sign.is_empty() { 4 } else { 6 };
    if rest.len() < year_len || !digits(&rest[..year_len]) {
        return false;
    }
    let Some(mut year) = num(&rest[..year_len]) else {
        return false;
    };
    if sign == "-" {
        year = -year;
    }
    let tail = rest[year_len..].trim_start_matches('-');
    let extended = rest[year_len..].starts_with('-');
    // A six-digit year only takes a full calendar date.
    if !(sign.is_empty() || tail.len() == 4 && digits(tail) || extended && tail.len() == 5) {
        return false;
    }
    let tail_compact: String = tail.chars().filter(|&c| c != '-').collect();
    if let Some(week) = tail_compact.strip_prefix('W') {
        let (w, day) = week.split_at(2);
        let Some(w) = num(w) else { return false };
        let weeks = weeks_in_iso_year(year);
        if day.is_empty() {
            return !has_time && (1..=weeks).contains(&w);
        }
        return num(day).is_some_and(|d| (1..=7).contains(&d)) && (1..=weeks).contains(&w);
    }
    if !digits(&tail_compact) {
        return false;
    }
    match tail_compact.len() {
        0 => !has_time,
        2 => !has_time && num(&tail_compact).is_some_and(|m| (1..=12).contains(&m)),
        3 => num(&tail_compact).is_some_and(|d| d >= 1 && d <= days_in_year(year)),
        4 => {
            let (m, d) = tail_compact.split_at(2);
            matches!((num(m), num(d)), (Some(m), Some(d))
                if NaiveDate::from_ymd_opt(year, m as u32, d as u32).is_some())
        }
        _ => false,
    }
}

/// `HH[:mm[:ss[.S…]]]` or `HH[mm[ss[.S…]]]`: hour 0–24 (24 only on the hour), minute and
/// second 0–59.
fn iso_time_is_valid(time: &str) -> bool {
    let (clock, fraction) = match time.find(['.', ',']) {
        Some(at) => (&time[..at], &time[at + 1..]),
        None => (time, ""),
    };
    let compact: String = clock.chars().filter(|&c| c != ':').collect();
    let field = |i: usize| -> u32 {
        compact
            .get(i..i + 2)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let (h, m, sec) = (field(0), field(2), field(4));
    let fraction_zero = fraction.bytes().all(|b| b == b'0');
    m <= 59 && sec <= 59 && (h <= 23 || h == 24 && m == 0 && sec == 0 && fraction_zero)
}

/// moment's `yyyy-MM-DDT`, which Kibana adds because Elasticsearch takes it and moment's
/// ISO 8601 does not.
fn is_date_then_t(s: &str) -> bool {
    static SHAPE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^(\d{4})-(\d\d)-(\d\d)T$").expect("valid"));
    SHAPE.captures(s).is_some_and(|c| {
        let n = |i: usize| c[i].parse::<u32>().unwrap_or(0);
        NaiveDate::from_ymd_opt(n(1) as i32, n(2), n(3)).is_some()
    })
}

fn days_in_year(year: i32) -> i32 {
    if NaiveDate::from_ymd_opt(year, 2, 29).is_some() {
        366
    } else {
        365
    }
}

fn weeks_in_iso_year(year: i32) -> i32 {
    NaiveDate::from_ymd_opt(year, 12, 28).map_or(52, |d| d.iso_week().week() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Kibana's `is_valid_date_type.test.ts`, case for case.
    #[test]
    fn dates_as_kibana_tests_them() {
        for ok in [
            "2015-01-01T12:10:30.666Z",
            "2015-01-01T12:10:30.666",
            "2015-01-01T12:10:30Z",
            "2015-01-01T12:10:30",
            "2015-01-01T12:10Z",
            "2015-01-01T12:10",
            "2015-01-01T12Z",
            "2015-01-01T12",
            "2015-01-01T",
            "2015-01-01",
            "2015-01",
            "2015",
        ] {
            assert!(is_date(&json!(ok)), "{ok} should be a date");
        }
        assert!(is_date(&json!(387497835948u64)));
        for bad in [
            json!("non-valid"),
            json!(true),
            json!([]),
            json!("2022/12/12"),
            json!("2015Z"),
            json!("2015-01-"),
            json!("2015-01-01T12: 10Z"),
            json!("2015-20-20"),
        ] {
            assert!(!is_date(&bad), "{bad} should not be a date");
        }
    }

    #[test]
    fn dates_beyond_kibanas_cases_follow_moment() {
        for ok in [
            "2015-01-01T24:00",
            "2016-02-29",
            "2015-W53-7",
            "2015-365",
            "20150101T1210",
            "+002015-01-01",
            " 2015-01-01T00:00:00+01:00",
            "2015-01-01 10:00:00,5",
        ] {
            assert!(is_date(&json!(ok)), "{ok} should be a date");
        }
        for bad in [
            "2015-02-29",
            "2015-01-01T24:01",
            "2015-01-01T12:60",
            "2015-W54",
            "2015-366",
            "2015-01T12",
            "n/a",
        ] {
            assert!(!is_date(&json!(bad)), "{bad} should not be a date");
        }
    }

    /// Kibana's `is_valid_numeric_type.test.ts`, and `Number()`'s other forms.
    #[test]
    fn numbers_as_javascript_reads_them() {
        for ok in [
            json!(6376723),
            json!(-6376723),
            json!(0),
            json!(6.3e22),
            json!("6376723"),
            json!("-637672363767236376723637672363767236376723"),
            json!("63767236376723637672363.7672363767236376723"),
            json!("24 "),
            json!(""),
            json!("0x1F"),
            json!("-Infinity"),
            json!(".5e3"),
            json!("1."),
        ] {
            assert!(is_numeric(&ok), "{ok} should be numeric");
        }
        for bad in [
            json!("non-valid"),
            json!(true),
            json!([]),
            json!({}),
            json!("2015x"),
            json!("-2015x"),
            json!("201.2s"),
            json!(null),
            json!("-0x1F"),
            json!("."),
            json!("1e"),
            json!("0é1"),
            json!("0\u{fffd}"),
        ] {
            assert!(!is_numeric(&bad), "{bad} should not be numeric");
        }
        assert!(!is_long(&json!("24 ")), "a long refuses any space");
        assert!(is_long(&json!("24")));
    }

    /// Kibana's `is_valid_ip_type.test.ts`, and ipaddr.js's other IPv4 forms.
    #[test]
    fn ips_as_ipaddr_js_reads_them() {
        for ok in [
            "127.0.0.1",
            "2001:db8::",
            "fe80::1%eth0",
            "::ffff:10.0.0.1",
            "127.1",
            "0x7f.0.0.1",
            "2130706433",
            "10.0.0.0/8",
            "2001:db8::/32",
        ] {
            assert!(is_ip(&json!(ok)), "{ok} should be an ip");
        }
        for bad in [
            json!("2001:db8:://12"),
            json!("localhost"),
            json!("127.0.0."),
            json!("256.0.0.1"),
            json!("10.0.0.0/33"),
            json!(2130706433),
        ] {
            assert!(!is_ip(&bad), "{bad} should not be an ip");
        }
    }

    #[test]
    fn booleans_as_kibana_lists_them() {
        for ok in [
            json!(true),
            json!(false),
            json!("true"),
            json!("false"),
            json!(""),
        ] {
            assert!(is_boolean(&ok));
        }
        for bad in [json!("yes"), json!(1), json!(null), json!("TRUE")] {
            assert!(!is_boolean(&bad));
        }
    }
}
