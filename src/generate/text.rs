//! Text helpers for the generator: millisecond timestamps, base64, Windows-style command-line
//! splitting (as the CrowdStrike FDR pipeline does), and a small streaming JSON writer that
//! renders documents without building `serde_json::Value` trees (the hot path).

use std::fmt::Write as _;

/// Seconds between 1601-01-01 and 1970-01-01 (Windows FILETIME epoch to Unix epoch).
pub(crate) const SECS_1601_TO_1970: i64 = 11_644_473_600;

/// Formats epoch milliseconds as RFC 3339 UTC with millisecond precision: `2025-01-02T03:04:05.678Z`.
pub(crate) fn rfc3339_ms(ms: i64, out: &mut String) {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        // Hot path: push digits directly (format machinery is slow for ~10 fields per event).
        push_digits(out, y as u32, 4);
        out.push('-');
        push_digits(out, m, 2);
        out.push('-');
        push_digits(out, d, 2);
        out.push('T');
        push_digits(out, (sod / 3600) as u32, 2);
        out.push(':');
        push_digits(out, ((sod / 60) % 60) as u32, 2);
        out.push(':');
        push_digits(out, (sod % 60) as u32, 2);
        out.push('.');
        push_digits(out, milli as u32, 3);
        out.push('Z');
    } else {
        let _ = write!(
            out,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
            sod / 3600,
            (sod / 60) % 60,
            sod % 60
        );
    }
}

/// Appends `v` as exactly `width` decimal digits (zero-padded; `v` must fit).
fn push_digits(out: &mut String, v: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        out.push(char::from(b'0' + ((v / div) % 10) as u8));
        div /= 10;
    }
}

/// Appends a signed integer in decimal without going through `fmt`.
pub(crate) fn push_int(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    let mut n = v.unsigned_abs();
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for b in &buf[i..] {
        out.push(char::from(*b));
    }
}

/// Same as [`rfc3339_ms`], returning a new string.
#[cfg(test)]
pub(crate) fn rfc3339_ms_string(ms: i64) -> String {
    let mut s = String::with_capacity(24);
    rfc3339_ms(ms, &mut s);
    s
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); H. Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Standard base64 with padding (how Elastic Defend encodes `process.entity_id`).
pub(crate) fn base64_std(bytes: &[u8]) -> String {
    use base64::prelude::{Engine as _, BASE64_STANDARD};
    BASE64_STANDARD.encode(bytes)
}

/// URL-safe base64 without padding (how Elasticsearch auto-generated `_id`s look).
pub(crate) fn base64_url(bytes: &[u8]) -> String {
    use base64::prelude::{Engine as _, BASE64_URL_SAFE_NO_PAD};
    BASE64_URL_SAFE_NO_PAD.encode(bytes)
}

/// Splits a command line the way Windows' `CommandLineToArgvW` does (post-2008 rules), which is
/// what the CrowdStrike FDR ingest pipeline applies to `CommandLine` even on Linux: spaces and
/// tabs separate outside double quotes; `2n` backslashes before `"` give `n` backslashes and
/// toggle quoting; `2n+1` give `n` backslashes and a literal `"`; `""` inside quotes is a
/// literal `"`; other backslashes are literal; single quotes are ordinary characters.
pub(crate) fn split_windows_command_line(line: &str) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        let mut arg = String::new();
        let mut quoted = false;
        while i < chars.len() {
            let c = chars[i];
            if !quoted && (c == ' ' || c == '\t') {
                break;
            }
            if c == '\\' {
                let start = i;
                while i < chars.len() && chars[i] == '\\' {
                    i += 1;
                }
                let n = i - start;
                if i < chars.len() && chars[i] == '"' {
                    arg.extend(std::iter::repeat_n('\\', n / 2));
                    if n % 2 == 1 {
                        arg.push('"');
                        i += 1;
                    }
                    // Even count: the quote is handled by the next iteration.
                } else {
                    arg.extend(std::iter::repeat_n('\\', n));
                }
                continue;
            }
            if c == '"' {
                if quoted && i + 1 < chars.len() && chars[i + 1] == '"' {
                    arg.push('"');
                    i += 2;
                    continue;
                }
                quoted = !quoted;
                i += 1;
                continue;
            }
            arg.push(c);
            i += 1;
        }
        args.push(arg);
    }
    args
}

/// Joins an argv for display the way a shell user would type it: arguments containing
/// whitespace or double quotes are wrapped in double quotes (inner `"` and `\` escaped).
pub(crate) fn join_command_line(args: &[String]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if a.is_empty() || a.contains([' ', '\t', '"']) {
            out.push('"');
            for c in a.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        } else {
            out.push_str(a);
        }
    }
    out
}

/// Appends `s` as a JSON string literal (with quotes). Copies unescaped runs whole: every
/// byte that needs escaping is ASCII, so splitting at those bytes keeps UTF-8 intact.
pub(crate) fn json_string(s: &str, out: &mut String) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[run_start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        run_start = i + 1;
    }
    out.push_str(&s[run_start..]);
    out.push('"');
}

/// A minimal streaming JSON writer; commas are placed automatically.
pub(crate) struct JsonWriter {
    buf: String,
    need_comma: bool,
    after_key: bool,
}

impl JsonWriter {
    /// A writer with room for a typical document.
    pub(crate) fn new() -> Self {
        JsonWriter {
            buf: String::with_capacity(2048),
            need_comma: false,
            after_key: false,
        }
    }

    /// The finished text.
    pub(crate) fn finish(self) -> String {
        self.buf
    }

    fn before_value(&mut self) {
        if self.after_key {
            self.after_key = false;
        } else if self.need_comma {
            self.buf.push(',');
        }
    }

    /// Writes an object key (the value must follow). Keys are field names written in this
    /// module, never data, so they are copied without escaping.
    pub(crate) fn key(&mut self, k: &'static str) -> &mut Self {
        debug_assert!(!k.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20));
        if self.need_comma {
            self.buf.push(',');
        }
        self.buf.push('"');
        self.buf.push_str(k);
        self.buf.push_str("\":");
        self.after_key = true;
        self
    }

    /// Opens an object.
    pub(crate) fn begin_obj(&mut self) -> &mut Self {
        self.before_value();
        self.buf.push('{');
        self.need_comma = false;
        self
    }

    /// Closes an object.
    pub(crate) fn end_obj(&mut self) -> &mut Self {
        self.buf.push('}');
        self.need_comma = true;
        self
    }

    /// Opens an array.
    pub(crate) fn begin_arr(&mut self) -> &mut Self {
        self.before_value();
        self.buf.push('[');
        self.need_comma = false;
        self
    }

    /// Closes an array.
    pub(crate) fn end_arr(&mut self) -> &mut Self {
        self.buf.push(']');
        self.need_comma = true;
        self
    }

    /// Writes an integer as a JSON string (ECS keeps ids such as `user.id` as keywords).
    pub(crate) fn int_str(&mut self, v: i64) -> &mut Self {
        self.before_value();
        self.buf.push('"');
        push_int(&mut self.buf, v);
        self.buf.push('"');
        self.need_comma = true;
        self
    }

    /// Writes a string value.
    pub(crate) fn str(&mut self, v: &str) -> &mut Self {
        self.before_value();
        json_string(v, &mut self.buf);
        self.need_comma = true;
        self
    }

    /// Writes an integer value.
    pub(crate) fn int(&mut self, v: i64) -> &mut Self {
        self.before_value();
        push_int(&mut self.buf, v);
        self.need_comma = true;
        self
    }

    /// Writes a boolean value.
    pub(crate) fn bool(&mut self, v: bool) -> &mut Self {
        self.before_value();
        self.buf.push_str(if v { "true" } else { "false" });
        self.need_comma = true;
        self
    }

    /// Writes an RFC 3339 millisecond timestamp string.
    pub(crate) fn time(&mut self, ms: i64) -> &mut Self {
        self.before_value();
        self.buf.push('"');
        rfc3339_ms(ms, &mut self.buf);
        self.buf.push('"');
        self.need_comma = true;
        self
    }

    /// Writes an array of strings.
    pub(crate) fn strs<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Self {
        self.begin_arr();
        for s in items {
            self.str(s.as_ref());
        }
        self.end_arr()
    }

    /// `"k": "v"`.
    pub(crate) fn kv(&mut self, k: &'static str, v: &str) -> &mut Self {
        self.key(k).str(v)
    }

    /// `"k": n`.
    pub(crate) fn ki(&mut self, k: &'static str, v: i64) -> &mut Self {
        self.key(k).int(v)
    }

    /// `"k": {` — pair with [`JsonWriter::end_obj`].
    pub(crate) fn obj(&mut self, k: &'static str) -> &mut Self {
        self.key(k).begin_obj()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_rfc3339_millis() {
        assert_eq!(rfc3339_ms_string(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_ms_string(1_760_406_074_201),
            "2025-10-14T01:41:14.201Z"
        );
        assert_eq!(
            rfc3339_ms_string(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(rfc3339_ms_string(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            rfc3339_ms_string(253_402_300_800_000),
            "10000-01-01T00:00:00.000Z"
        );
        let mut s = String::new();
        push_int(&mut s, i64::MIN);
        push_int(&mut s, 0);
        assert_eq!(s, "-92233720368547758080");
    }

    #[test]
    fn entity_id_sample_round_trips_through_base64() {
        // From ecs-samples/endpoint/sample_event.json: process.entity_id decodes to this text.
        let text = "4c9c9cb3-f80f-44d8-9c89-6168243b7f21-2772-13293571988.657898600";
        assert_eq!(
            base64_std(text.as_bytes()),
            "NGM5YzljYjMtZjgwZi00NGQ4LTljODktNjE2ODI0M2I3ZjIxLTI3NzItMTMyOTM1NzE5ODguNjU3ODk4NjAw"
        );
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
        // RFC 4648 section 10, padded and (URL-safe) unpadded: every length modulo 3.
        for (text, padded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_std(text.as_bytes()), padded);
            assert_eq!(base64_url(text.as_bytes()), padded.trim_end_matches('='));
        }
    }

    #[test]
    fn windows_split_follows_command_line_to_argv_rules() {
        let s = |l: &str| split_windows_command_line(l);
        assert_eq!(s("runc init"), ["runc", "init"]);
        assert_eq!(
            s(r#"sh -c "node setup_bun.js""#),
            ["sh", "-c", "node setup_bun.js"]
        );
        // Single quotes are not quote characters on Windows: `CommandLineToArgvW` leaves them
        // in the words, and the CrowdStrike integration splits `CommandLine` that way.
        assert_eq!(s("sh -c 'node x.js'"), ["sh", "-c", "'node", "x.js'"]);
        assert_eq!(s(r#"a\\\"b "c d""#), [r#"a\"b"#, "c d"]);
        assert_eq!(s(r#"a\\b "x""y""#), [r#"a\\b"#, r#"x"y"#]);
        assert_eq!(s("  a\t b  "), ["a", "b"]);
        assert!(s("   ").is_empty());
    }

    #[test]
    fn join_then_split_is_identity_for_plain_argv() {
        let argv: Vec<String> = ["sh", "-c", "curl -fsSL https://bun.sh/install | bash"]
            .map(String::from)
            .to_vec();
        let line = join_command_line(&argv);
        assert_eq!(line, r#"sh -c "curl -fsSL https://bun.sh/install | bash""#);
        assert_eq!(split_windows_command_line(&line), argv);
    }

    #[test]
    fn json_writer_places_commas_and_escapes() {
        let mut w = JsonWriter::new();
        w.begin_obj();
        w.kv("a", "x\"y\n")
            .ki("b", -3)
            .kv("u", "é\u{1}\\")
            .kv("x", "plain");
        w.obj("c")
            .key("d")
            .strs(&["1", "2"])
            .key("e")
            .bool(true)
            .end_obj();
        w.key("t").time(0);
        w.end_obj();
        let text = w.finish();
        let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(v["a"], "x\"y\n");
        assert_eq!(v["u"], "é\u{1}\\");
        assert_eq!(v["x"], "plain");
        assert_eq!(v["c"]["d"][1], "2");
        assert_eq!(v["t"], "1970-01-01T00:00:00.000Z");
    }
}
