//! Parse errors of the EQL front end and their rendering.
//!
//! A [`ParseError`] is a byte span into the query text plus a message. It knows nothing of
//! where the text came from; [`ParseError::render`] turns it into the `file:line:column:
//! message` form with the offending line and a caret line, given the text and an optional
//! [`SourceOrigin`] (file name and the line/column at which the query starts in that file).

use super::ast::Span;

/// A query that could not be parsed, or that uses a construct we refuse to evaluate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// Byte range of the offending text in the query (empty at the end of input).
    pub span: Span,
    /// What is wrong, in one sentence without a trailing period.
    pub message: String,
}

/// Where a query's text lives, so rendered errors point into the right file and line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceOrigin<'a> {
    /// File (or other origin) name printed before the position, e.g. `rules/x.toml`.
    pub name: Option<&'a str>,
    /// Number of lines in the origin before the query's first line.
    pub line_offset: usize,
    /// Number of characters on the query's first line that precede the query in the origin.
    /// Applies to the first line only: later lines start at column 1 of the origin too.
    pub column_offset: usize,
}

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCol {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl ParseError {
    /// Creates an error for `span` with `message`.
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        ParseError {
            span,
            message: message.into(),
        }
    }

    /// Renders the error against the query text it was produced from:
    ///
    /// ```text
    /// rules/x.toml:12:41: expected "]" but found "where"
    ///    |   [process where host.os.type == "linux" where
    ///    |                                          ^^^^^
    /// ```
    pub fn render(&self, source: &str, origin: &SourceOrigin<'_>) -> String {
        let start = clamp_to_char_boundary(source, self.span.start);
        let end = clamp_to_char_boundary(source, self.span.end.max(start));
        let local = line_col(source, start);
        let line = local.line + origin.line_offset;
        let column = if local.line == 1 {
            local.column + origin.column_offset
        } else {
            local.column
        };

        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line_text = source[line_start..line_end].trim_end_matches('\r');

        // Keep tabs in the padding so the carets line up under the text however tabs render.
        let padding: String = source[line_start..start]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let caret_end = end.min(line_end).max(start);
        let width = source[start..caret_end].chars().count().max(1);

        let mut out = String::new();
        if let Some(name) = origin.name {
            out.push_str(name);
            out.push(':');
        }
        out.push_str(&format!("{line}:{column}: {}\n", self.message));
        out.push_str("   | ");
        out.push_str(line_text);
        out.push('\n');
        out.push_str("   | ");
        out.push_str(&padding);
        out.push_str(&"^".repeat(width));
        out
    }
}

/// The 1-based line and column of byte offset `offset` in `source` (clamped to the text).
pub fn line_col(source: &str, offset: usize) -> LineCol {
    let offset = clamp_to_char_boundary(source, offset);
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    LineCol { line, column }
}

/// Largest char boundary of `source` that is `<= offset`.
fn clamp_to_char_boundary(source: &str, offset: usize) -> usize {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_span_with_origin_and_offsets() {
        let source = "sequence\n  [process where a == 1 where";
        let at = source.rfind("where").unwrap_or(0);
        let err = ParseError::new(at..at + 5, "expected \"]\" but found \"where\"");
        let origin = SourceOrigin {
            name: Some("rules/x.toml"),
            line_offset: 10,
            column_offset: 4,
        };
        let rendered = err.render(source, &origin);
        assert_eq!(
            rendered,
            "rules/x.toml:12:25: expected \"]\" but found \"where\"\n   |   [process where a == 1 where\n   |                         ^^^^^"
        );
    }

    #[test]
    fn column_offset_applies_to_first_line_only() {
        let err = ParseError::new(2..3, "bad");
        let origin = SourceOrigin {
            name: None,
            line_offset: 0,
            column_offset: 7,
        };
        assert!(err.render("abcd", &origin).starts_with("1:10: bad\n"));
    }

    #[test]
    fn empty_span_at_end_gets_one_caret() {
        let err = ParseError::new(3..3, "unexpected end of input");
        let rendered = err.render("abc", &SourceOrigin::default());
        assert_eq!(
            rendered,
            "1:4: unexpected end of input\n   | abc\n   |    ^"
        );
    }

    #[test]
    fn line_col_counts_characters_not_bytes() {
        assert_eq!(line_col("é\nxé y", 6), LineCol { line: 2, column: 3 });
    }
}
