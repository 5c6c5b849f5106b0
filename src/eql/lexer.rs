//! The EQL lexer: turns query text into tokens with byte spans.
//!
//! It follows the lexer rules of Elasticsearch's grammar
//! (`x-pack/plugin/eql/src/main/antlr/EqlBase.g4`): lowercase-only keywords, `in~`/`like~`/
//! `regex~` as keywords, `name~` as a case-insensitive function name, `?` for optional
//! fields, `![` opening a missing-event stage, backtick-quoted field names, nested `/* */`
//! comments, and the string rules of `AbstractBuilder.unquoteString` (double quotes with
//! escapes, `"""raw"""`, and the single-quote / `?"…"` forms that ES rejects with a message).
//!
//! The lexer never stops at the first error: it records it, skips the bad character and goes
//! on, so the parser can still see every `|` and report "pipes are not supported" first.

use super::ast::Span;
use super::error::ParseError;

/// What a token is. Literal payloads are already decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// `and`
    And,
    /// `any`
    Any,
    /// `by`
    By,
    /// `false`
    False,
    /// `in`
    In,
    /// `in~`
    InInsensitive,
    /// `join`
    Join,
    /// `like`
    Like,
    /// `like~`
    LikeInsensitive,
    /// `maxspan`
    Maxspan,
    /// `not`
    Not,
    /// `null`
    Null,
    /// `of`
    Of,
    /// `or`
    Or,
    /// `regex`
    Regex,
    /// `regex~`
    RegexInsensitive,
    /// `sample`
    Sample,
    /// `sequence`
    Sequence,
    /// `true`
    True,
    /// `until`
    Until,
    /// `where`
    Where,
    /// `with`
    With,
    /// `:`
    Colon,
    /// `=` (only in `maxspan=` and `runs=`; ES does not accept it as a comparison)
    Assign,
    /// `==`
    EqEq,
    /// `!=`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `/`
    Slash,
    /// `%`
    Percent,
    /// `.`
    Dot,
    /// `,`
    Comma,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `|`
    Pipe,
    /// `?` (optional field)
    Question,
    /// `![` (missing-event stage)
    MissingOpen,
    /// A string literal, escapes resolved.
    Str(String),
    /// An integer literal (digits only; the parser converts it).
    Integer,
    /// A decimal literal such as `1.5`, `.5`, `1e3`.
    Decimal,
    /// A plain identifier (`process`, `@timestamp`, `_x`).
    Ident,
    /// A backtick-quoted identifier, quotes removed and doubled backticks collapsed.
    QuotedIdent(String),
    /// A function name followed by `~`, e.g. `startsWith~`.
    TildeIdent,
    /// End of input.
    Eof,
}

/// A token and where it is in the query text.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Byte range in the query text.
    pub span: Span,
}

/// The result of lexing: all tokens that could be recognised (ending with [`TokenKind::Eof`])
/// and the first error met, if any.
#[derive(Debug, Clone)]
pub struct Lexed {
    /// Recognised tokens, in order, always ending with `Eof`.
    pub tokens: Vec<Token>,
    /// The first lexical error, if there was one.
    pub error: Option<ParseError>,
}

/// Splits `source` into tokens.
pub fn lex(source: &str) -> Lexed {
    let mut lexer = Lexer {
        src: source,
        bytes: source.as_bytes(),
        pos: 0,
        tokens: Vec::new(),
        error: None,
    };
    lexer.run();
    let end = source.len();
    lexer.tokens.push(Token {
        kind: TokenKind::Eof,
        span: end..end,
    });
    Lexed {
        tokens: lexer.tokens,
        error: lexer.error,
    }
}

struct Lexer<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    tokens: Vec<Token>,
    error: Option<ParseError>,
}

fn is_letter(b: u8) -> bool {
    b.is_ascii_alphabetic()
}

fn is_ident_continue(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn keyword(text: &str) -> Option<TokenKind> {
    Some(match text {
        "and" => TokenKind::And,
        "any" => TokenKind::Any,
        "by" => TokenKind::By,
        "false" => TokenKind::False,
        "in" => TokenKind::In,
        "join" => TokenKind::Join,
        "like" => TokenKind::Like,
        "maxspan" => TokenKind::Maxspan,
        "not" => TokenKind::Not,
        "null" => TokenKind::Null,
        "of" => TokenKind::Of,
        "or" => TokenKind::Or,
        "regex" => TokenKind::Regex,
        "sample" => TokenKind::Sample,
        "sequence" => TokenKind::Sequence,
        "true" => TokenKind::True,
        "until" => TokenKind::Until,
        "where" => TokenKind::Where,
        "with" => TokenKind::With,
        _ => return None,
    })
}

impl Lexer<'_> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    fn push(&mut self, kind: TokenKind, start: usize) {
        self.tokens.push(Token {
            kind,
            span: start..self.pos,
        });
    }

    fn fail(&mut self, span: Span, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(ParseError::new(span, message));
        }
    }

    /// Length in bytes of the (possibly multi-byte) character at `pos`.
    fn char_len_at(&self, pos: usize) -> usize {
        self.src[pos..].chars().next().map_or(1, char::len_utf8)
    }

    fn run(&mut self) {
        while let Some(b) = self.peek(0) {
            let start = self.pos;
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'/' if self.peek(1) == Some(b'/') => {
                    while let Some(c) = self.peek(0) {
                        if c == b'\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                b'/' if self.peek(1) == Some(b'*') => {
                    if !self.block_comment() {
                        // ANTLR falls back to `/` when a bracketed comment is not closed.
                        self.pos = start + 1;
                        self.push(TokenKind::Slash, start);
                    }
                }
                b'"' => self.double_quoted(),
                b'\'' => self.single_quoted(),
                b'?' if matches!(self.peek(1), Some(b'"') | Some(b'\'')) => {
                    if !self.question_quoted() {
                        self.pos = start + 1;
                        self.push(TokenKind::Question, start);
                    }
                }
                b'`' => self.backtick(),
                b'0'..=b'9' => self.number(),
                b'.' if self.peek(1).is_some_and(|c| c.is_ascii_digit()) => self.number(),
                b if is_letter(b) || b == b'_' || b == b'@' => self.identifier(),
                _ => self.operator(),
            }
        }
    }

    /// Consumes a (nested) `/* … */` comment starting at `pos`; false if it is not closed.
    fn block_comment(&mut self) -> bool {
        let mut depth = 0usize;
        let mut i = self.pos;
        while i < self.bytes.len() {
            if self.bytes[i] == b'/' && self.bytes.get(i + 1) == Some(&b'*') {
                depth += 1;
                i += 2;
            } else if self.bytes[i] == b'*' && self.bytes.get(i + 1) == Some(&b'/') {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    self.pos = i;
                    return true;
                }
            } else {
                i += 1;
            }
        }
        false
    }

    fn operator(&mut self) {
        let start = self.pos;
        let two = (self.peek(0), self.peek(1));
        let (kind, len) = match two {
            (Some(b'='), Some(b'=')) => (TokenKind::EqEq, 2),
            (Some(b'!'), Some(b'=')) => (TokenKind::NotEq, 2),
            (Some(b'!'), Some(b'[')) => (TokenKind::MissingOpen, 2),
            (Some(b'<'), Some(b'=')) => (TokenKind::LtEq, 2),
            (Some(b'>'), Some(b'=')) => (TokenKind::GtEq, 2),
            (Some(b'='), _) => (TokenKind::Assign, 1),
            (Some(b'<'), _) => (TokenKind::Lt, 1),
            (Some(b'>'), _) => (TokenKind::Gt, 1),
            (Some(b':'), _) => (TokenKind::Colon, 1),
            (Some(b'+'), _) => (TokenKind::Plus, 1),
            (Some(b'-'), _) => (TokenKind::Minus, 1),
            (Some(b'*'), _) => (TokenKind::Star, 1),
            (Some(b'/'), _) => (TokenKind::Slash, 1),
            (Some(b'%'), _) => (TokenKind::Percent, 1),
            (Some(b'.'), _) => (TokenKind::Dot, 1),
            (Some(b','), _) => (TokenKind::Comma, 1),
            (Some(b'['), _) => (TokenKind::LBracket, 1),
            (Some(b']'), _) => (TokenKind::RBracket, 1),
            (Some(b'('), _) => (TokenKind::LParen, 1),
            (Some(b')'), _) => (TokenKind::RParen, 1),
            (Some(b'|'), _) => (TokenKind::Pipe, 1),
            (Some(b'?'), _) => (TokenKind::Question, 1),
            (Some(b'!'), Some(b':')) => {
                self.fail(
                    start..start + 2,
                    "Elasticsearch EQL has no [!:] operator; write [not field : \"pattern\"]",
                );
                self.pos += 2;
                return;
            }
            _ => {
                let len = self.char_len_at(start);
                let ch = &self.src[start..start + len];
                self.fail(
                    start..start + len,
                    format!("unexpected character {}", quote_char(ch)),
                );
                self.pos += len;
                return;
            }
        };
        self.pos += len;
        self.push(kind, start);
    }

    fn identifier(&mut self) {
        let start = self.pos;
        self.pos += 1;
        while self.peek(0).is_some_and(is_ident_continue) {
            self.pos += 1;
        }
        let text = &self.src[start..self.pos];
        // `in~`, `like~`, `regex~` are keywords (they come before TILDE_IDENTIFIER in the
        // grammar, so ANTLR prefers them at equal length); any other `letter…~` is a
        // case-insensitive function name.
        if self.peek(0) == Some(b'~') && is_letter(self.bytes[start]) {
            let kind = match text {
                "in" => TokenKind::InInsensitive,
                "like" => TokenKind::LikeInsensitive,
                "regex" => TokenKind::RegexInsensitive,
                _ => TokenKind::TildeIdent,
            };
            self.pos += 1;
            self.push(kind, start);
            return;
        }
        let kind = keyword(text).unwrap_or(TokenKind::Ident);
        self.push(kind, start);
    }

    fn number(&mut self) {
        let start = self.pos;
        let mut decimal = false;
        while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.peek(0) == Some(b'.') {
            decimal = true;
            self.pos += 1;
            while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
        }
        // EXPONENT: [Ee] [+-]? DIGIT+, only taken when digits follow.
        if matches!(self.peek(0), Some(b'e') | Some(b'E')) {
            let sign = usize::from(matches!(self.peek(1), Some(b'+') | Some(b'-')));
            if self.peek(1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                decimal = true;
                self.pos += 1 + sign;
                while self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
            }
        }
        let kind = if decimal {
            TokenKind::Decimal
        } else {
            TokenKind::Integer
        };
        self.push(kind, start);
    }

    fn backtick(&mut self) {
        let start = self.pos;
        let mut i = start + 1;
        let mut value = String::new();
        loop {
            match self.bytes.get(i) {
                None => {
                    self.fail(start..self.src.len(), "unterminated quoted identifier");
                    self.pos = self.src.len();
                    return;
                }
                Some(b'`') if self.bytes.get(i + 1) == Some(&b'`') => {
                    value.push('`');
                    i += 2;
                }
                Some(b'`') => {
                    i += 1;
                    break;
                }
                Some(_) => {
                    let len = self.char_len_at(i);
                    value.push_str(&self.src[i..i + len]);
                    i += len;
                }
            }
        }
        self.pos = i;
        self.push(TokenKind::QuotedIdent(value), start);
    }

    /// `'…'`: ES lexes it but rejects it in `AbstractBuilder.checkForSingleQuotedString`.
    fn single_quoted(&mut self) {
        let start = self.pos;
        let mut i = start + 1;
        loop {
            match self.bytes.get(i) {
                Some(b'\\')
                    if matches!(
                        self.bytes.get(i + 1),
                        Some(b'b' | b't' | b'n' | b'f' | b'r' | b'"' | b'\'' | b'\\')
                    ) =>
                {
                    i += 2
                }
                Some(b'\'') => {
                    i += 1;
                    break;
                }
                None | Some(b'\r' | b'\n' | b'\\') => {
                    self.fail(start..start + 1, "unterminated string literal");
                    self.pos = start + 1;
                    return;
                }
                Some(_) => i += self.char_len_at(i),
            }
        }
        self.fail(
            start..i,
            "Use double quotes [\"] to define string literals, not single quotes [']",
        );
        self.pos = i;
        self.push(TokenKind::Str(String::new()), start);
    }

    /// `?"…"` / `?'…'`: the old raw-string syntax, rejected by ES with a hint to use `"""`.
    /// Returns false when the form is not closed (then `?` is an ordinary token).
    fn question_quoted(&mut self) -> bool {
        let start = self.pos;
        let quote = self.bytes[start + 1];
        let mut i = start + 2;
        loop {
            match self.bytes.get(i) {
                Some(b'\\') if self.bytes.get(i + 1) == Some(&quote) => i += 2,
                Some(&c) if c == quote => {
                    i += 1;
                    break;
                }
                None | Some(b'\r' | b'\n') => return false,
                Some(_) => i += self.char_len_at(i),
            }
        }
        self.fail(
            start..i,
            format!(
                "Use triple double quotes [\"\"\"] to define unescaped string literals, not [?{}]",
                quote as char
            ),
        );
        self.pos = i;
        self.push(TokenKind::Str(String::new()), start);
        true
    }

    fn double_quoted(&mut self) {
        let start = self.pos;
        if self.src[start..].starts_with("\"\"\"") && self.triple_quoted() {
            return;
        }
        let mut i = start + 1;
        let mut value = String::new();
        loop {
            match self.bytes.get(i) {
                None | Some(b'\r' | b'\n') => {
                    self.fail(start..i, "unterminated string literal");
                    self.pos = i;
                    return;
                }
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(b'\\') => match self.bytes.get(i + 1) {
                    Some(b't') => push_escape(&mut value, &mut i, '\t'),
                    Some(b'b') => push_escape(&mut value, &mut i, '\u{8}'),
                    Some(b'f') => push_escape(&mut value, &mut i, '\u{c}'),
                    Some(b'n') => push_escape(&mut value, &mut i, '\n'),
                    Some(b'r') => push_escape(&mut value, &mut i, '\r'),
                    Some(b'"') => push_escape(&mut value, &mut i, '"'),
                    Some(b'\'') => push_escape(&mut value, &mut i, '\''),
                    Some(b'\\') => push_escape(&mut value, &mut i, '\\'),
                    Some(b'u') => match self.unicode_escape(i, start) {
                        Ok((ch, next)) => {
                            value.push(ch);
                            i = next;
                        }
                        Err(err) => {
                            let resume = err.span.end.max(i + 1);
                            if self.error.is_none() {
                                self.error = Some(err);
                            }
                            self.pos = resume;
                            return;
                        }
                    },
                    _ => {
                        let len = self
                            .bytes
                            .get(i + 1)
                            .map_or(1, |_| 1 + self.char_len_at(i + 1));
                        self.fail(
                            i..(i + len).min(self.src.len()),
                            format!(
                                "invalid escape sequence [{}] in string literal; valid escapes are \\t \\b \\f \\n \\r \\\" \\' \\\\ and \\u{{hex}}",
                                &self.src[i..(i + len).min(self.src.len())]
                            ),
                        );
                        self.pos = (i + len).min(self.src.len());
                        return;
                    }
                },
                Some(_) => {
                    let len = self.char_len_at(i);
                    value.push_str(&self.src[i..i + len]);
                    i += len;
                }
            }
        }
        self.pos = i;
        self.push(TokenKind::Str(value), start);
    }

    /// `\u{HEX+}` at byte `i` (the backslash). ES: 2–8 hex digits, no surrogates, a valid
    /// code point (`AbstractBuilder.handleUnicodePoints` / `hexToUnicode`).
    fn unicode_escape(&self, i: usize, string_start: usize) -> Result<(char, usize), ParseError> {
        let open = i + 2;
        if self.bytes.get(open) != Some(&b'{') {
            return Err(ParseError::new(
                i..open,
                "invalid unicode escape; use \\u{hex} with 2 to 8 hex digits",
            ));
        }
        let digits_start = open + 1;
        let mut j = digits_start;
        while self.bytes.get(j).is_some_and(u8::is_ascii_hexdigit) {
            j += 1;
        }
        if self.bytes.get(j) != Some(&b'}') || j == digits_start {
            return Err(ParseError::new(
                i..j.min(self.src.len()),
                "invalid unicode escape; use \\u{hex} with 2 to 8 hex digits",
            ));
        }
        let hex = &self.src[digits_start..j];
        let escape_span = i..j + 1;
        let string_span = string_start..j + 1;
        if !(2..=8).contains(&hex.len()) {
            return Err(ParseError::new(
                escape_span,
                format!(
                    "Unicode sequence should use [2-8] hex digits, [{}] has [{}]",
                    &self.src[i..j + 1],
                    hex.len()
                ),
            ));
        }
        let code = u32::from_str_radix(hex, 16).ok();
        match code {
            Some(code) if (0xD800..=0xDFFF).contains(&code) => Err(ParseError::new(
                escape_span,
                format!("Invalid unicode character code, [{hex}] is a surrogate code"),
            )),
            Some(code) => match char::from_u32(code) {
                Some(ch) => Ok((ch, j + 1)),
                None => Err(ParseError::new(
                    escape_span,
                    format!("Invalid unicode character code [{hex}]"),
                )),
            },
            None => Err(ParseError::new(
                string_span,
                format!("Invalid unicode character code [{hex}]"),
            )),
        }
    }

    /// `"""…"""` on one line, raw, plus up to two extra closing quotes
    /// (grammar: `'"""' (~[\r\n])*? '"""' '"'? '"'?`). False if not closed on the line.
    fn triple_quoted(&mut self) -> bool {
        let start = self.pos;
        let mut i = start + 3;
        loop {
            match self.bytes.get(i) {
                None | Some(b'\r' | b'\n') => return false,
                Some(b'"') if self.src[i..].starts_with("\"\"\"") => break,
                Some(_) => i += self.char_len_at(i),
            }
        }
        let mut end = i + 3;
        for _ in 0..2 {
            if self.bytes.get(end) == Some(&b'"') {
                end += 1;
            }
        }
        // ES: text.substring(3, text.length() - 3), so extra quotes belong to the value.
        let value = self.src[start + 3..end - 3].to_string();
        self.pos = end;
        self.push(TokenKind::Str(value), start);
        true
    }
}

fn push_escape(value: &mut String, i: &mut usize, ch: char) {
    value.push(ch);
    *i += 2;
}

fn quote_char(ch: &str) -> String {
    if ch.chars().all(|c| c.is_control()) {
        format!("{:?}", ch)
    } else {
        format!("\"{ch}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        let lexed = lex(src);
        assert_eq!(lexed.error, None, "unexpected lex error for {src:?}");
        lexed.tokens.into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn keywords_are_lowercase_only() {
        use TokenKind::*;
        assert_eq!(kinds("and AND Sequence"), vec![And, Ident, Ident, Eof]);
    }

    #[test]
    fn tilde_forms() {
        use TokenKind::*;
        assert_eq!(
            kinds("in~ like~ regex~ startsWith~"),
            vec![
                InInsensitive,
                LikeInsensitive,
                RegexInsensitive,
                TildeIdent,
                Eof
            ]
        );
    }

    #[test]
    fn numbers_and_units() {
        use TokenKind::*;
        assert_eq!(kinds("10s"), vec![Integer, Ident, Eof]);
        assert_eq!(
            kinds("1.5 .5 1e3 1.e-2 2e"),
            vec![Decimal, Decimal, Decimal, Decimal, Integer, Ident, Eof]
        );
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(
            kinds(r#""a\tb\"c\u{41}""#)[0],
            TokenKind::Str("a\tb\"cA".to_string())
        );
        assert_eq!(
            kinds(r#""""raw \d"""""#)[0],
            TokenKind::Str("raw \\d\"".to_string())
        );
        assert_eq!(kinds(r#""""#)[0], TokenKind::Str(String::new()));
    }

    #[test]
    fn nested_block_comment_and_line_comment() {
        use TokenKind::*;
        assert_eq!(
            kinds("a /* x /* y */ z */ b // c\nd"),
            vec![Ident, Ident, Ident, Eof]
        );
    }

    #[test]
    fn single_quotes_are_rejected_with_es_message() {
        let lexed = lex("'abc'");
        assert_eq!(
            lexed.error.map(|e| e.message),
            Some(
                "Use double quotes [\"] to define string literals, not single quotes [']"
                    .to_string()
            )
        );
    }

    #[test]
    fn lexing_continues_after_an_error_so_pipes_are_seen() {
        let lexed = lex("a ! b | head");
        assert!(lexed.error.is_some());
        assert!(lexed.tokens.iter().any(|t| t.kind == TokenKind::Pipe));
    }
}
