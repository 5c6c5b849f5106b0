//! Translates the 2020 EQL of the shared spec copies into the syntax current Elasticsearch
//! accepts, and splits off the `| head N` / `| tail N` pipes the harness emulates.
//!
//! Every rewrite here has one meaning in the old grammar and exactly one current spelling. The
//! model is Elasticsearch's own modernisation of the same file
//! (`x-pack/plugin/eql/qa/common/src/main/resources/test_queries.toml` @ `7165bf94e927`), which
//! rewrote `opcode:0` to `opcode==0`, `indexOf(…) !: null` to `indexOf(…) != null`,
//! `serial_event_id - 1 : 81` to `serial_event_id - 1 == 81`, and the case-insensitive specs'
//! `startsWith(` / `endsWith(` / `indexOf(` / `between(` to their `~` forms. What has no current
//! spelling is reported as not runnable, with the reason.

use seqwatch::eql::lexer::{lex, Token, TokenKind};

/// How a spec asks to be run: ES's 2020 `EqlSpecLoader` read `case_sensitive` /
/// `case_insensitive` and ran the query under the matching `case_sensitive` request flag (both
/// flags absent: under both, expecting the same ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseMode {
    /// Neither flag: ran in both modes.
    Both,
    /// `case_sensitive = true` only.
    Sensitive,
    /// `case_insensitive = true`.
    Insensitive,
}

impl CaseMode {
    /// The 2020 loader's rule (`EqlSpecLoader.readFromStream`): sensitive-only when
    /// `case_sensitive` is true and `case_insensitive` is not; insensitive-only when
    /// `case_insensitive` is true (and `case_sensitive` is not); otherwise both.
    pub fn from_flags(case_sensitive: Option<bool>, case_insensitive: Option<bool>) -> CaseMode {
        if case_sensitive == Some(true) {
            if case_insensitive != Some(true) {
                return CaseMode::Sensitive;
            }
            CaseMode::Both
        } else if case_insensitive == Some(true) {
            CaseMode::Insensitive
        } else {
            CaseMode::Both
        }
    }
}

/// A limiting pipe, applied by the harness in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `| head N`: the first N.
    Head(usize),
    /// `| tail N`: the last N.
    Tail(usize),
}

/// A query ready to run: current syntax without pipes, the pipes, and what was rewritten.
#[derive(Debug, Clone)]
pub struct Translated {
    /// The query in current syntax, pipes removed.
    pub text: String,
    /// `| head` / `| tail` pipes in order.
    pub limits: Vec<Limit>,
    /// Short names of the rewrites applied (for the report).
    pub rewrites: Vec<&'static str>,
}

/// Why a spec query cannot be run.
pub type NotRunnable = String;

/// Functions that have a `~` (case-insensitive) form in current ES (`EqlFunctionRegistry`
/// registers these as `CaseInsensitiveScalarFunction`s).
const TILDE_FUNCTIONS: &[&str] = &[
    "between",
    "endsWith",
    "indexOf",
    "startsWith",
    "stringContains",
];

/// Translates one spec query. See the module documentation.
pub fn translate(original: &str, mode: CaseMode) -> Result<Translated, NotRunnable> {
    let mut rewrites = Vec::new();

    // Missing-event stages: `-[` became `![` (EqlBase.g4 MISSING_EVENT_OPEN).
    let mut text = String::with_capacity(original.len());
    let bytes = original.as_bytes();
    for (i, c) in original.char_indices() {
        let stage_start = c == '-'
            && bytes.get(i + 1) == Some(&b'[')
            && (i == 0 || bytes[i - 1].is_ascii_whitespace());
        if stage_start {
            text.push('!');
            if !rewrites.contains(&"-[ → ![") {
                rewrites.push("-[ → ![");
            }
        } else {
            text.push(c);
        }
    }

    // `?"…"` raw strings became `"""…"""` (ES: "Use triple double quotes [\"\"\"] to define
    // unescaped string literals, not [?\"]", AbstractBuilder.unquoteString).
    let mut search_from = 0;
    while let Some(found) = find_outside_strings(&text, "?\"", search_from) {
        let body_start = found + 2;
        let Some(len) = text[body_start..].find('"') else {
            return Err("unterminated ?\"…\" string".into());
        };
        let body = text[body_start..body_start + len].to_string();
        if body.contains("\"\"\"") {
            return Err("raw string holding three double quotes".into());
        }
        let replacement = format!("\"\"\"{body}\"\"\"");
        text.replace_range(found..body_start + len + 1, &replacement);
        push_once(&mut rewrites, "?\"raw\" → \"\"\"raw\"\"\"");
        search_from = found + replacement.len();
    }

    // `!:` (2020 "not insensitive-equal") does not lex today. Mark each site by turning it into
    // `!=`, remember where, and decide per site below.
    let mut not_colon_sites = Vec::new();
    let mut search_from = 0;
    while let Some(found) = find_outside_strings(&text, "!:", search_from) {
        text.replace_range(found..found + 2, "!=");
        not_colon_sites.push(found);
        search_from = found + 2;
    }

    let lexed = lex(&text);
    if let Some(err) = &lexed.error {
        return Err(format!("not expressible today: {}", err.message));
    }
    let tokens = &lexed.tokens;

    // Pipes: split them off; only head and tail are emulated.
    let pipe_at = tokens.iter().position(|t| t.kind == TokenKind::Pipe);
    let (body_end, limits) = match pipe_at {
        None => (tokens.len() - 1, Vec::new()),
        Some(first) => (first, parse_pipes(&text, &tokens[first..])?),
    };
    let body = &tokens[..body_end];

    // `[…] fork=true`: the 2020 grammar parsed it only to refuse it ("sequence fork is
    // unsupported", LogicalPlanBuilder.visitSequenceTerm); today it is a syntax error.
    let fork = body.windows(2).any(|w| {
        w[0].kind == TokenKind::Ident
            && &text[w[0].span.clone()] == "fork"
            && w[1].kind == TokenKind::Assign
    });
    if fork {
        return Err("`fork=true` on a stage: ES never ran it (\"sequence fork is unsupported\") and the current grammar has no `fork`".into());
    }

    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for (i, tok) in body.iter().enumerate() {
        match &tok.kind {
            TokenKind::NotEq if not_colon_sites.contains(&tok.span.start) => {
                let right = body.get(i + 1).map(|t| &t.kind);
                match right {
                    // `x !: null` is the null check `x != null` (ReplaceNullChecks).
                    Some(TokenKind::Null) => push_once(&mut rewrites, "!: null → != null"),
                    // `x !: "s"` is `not (x : "s")`.
                    Some(TokenKind::Str(_)) => {
                        let start = operand_start(body, i)
                            .ok_or("`!:` after an operand the harness cannot delimit")?;
                        edits.push((tok.span.clone(), ":".into()));
                        edits.push((
                            body[start].span.start..body[start].span.start,
                            "not (".into(),
                        ));
                        let after = &body[i + 1].span;
                        edits.push((after.end..after.end, ")".into()));
                        push_once(&mut rewrites, "a !: \"s\" → not (a : \"s\")");
                    }
                    // Anything else was a comparison with a field or expression: `!=` keeps
                    // the meaning for numbers; current ES refuses field operands anyway.
                    _ => push_once(&mut rewrites, "!: → !="),
                }
            }
            TokenKind::Colon => {
                let left = i.checked_sub(1).map(|j| &body[j].kind);
                let right = body.get(i + 1).map(|t| &t.kind);
                match right {
                    Some(TokenKind::Str(_)) => {}
                    _ if matches!(left, Some(TokenKind::Str(_))) => {
                        return Err(
                            "2020 `:` with the string constant on the left; no current spelling keeps its case-insensitivity".into(),
                        );
                    }
                    // The 2020 `:` was equality for every type; today it is a string-only
                    // predicate and equality is `==` (null: the `== null` null check).
                    _ => {
                        edits.push((tok.span.clone(), "==".into()));
                        push_once(&mut rewrites, "non-string `:` → ==");
                    }
                }
            }
            TokenKind::Ident if mode == CaseMode::Insensitive => {
                let name = &text[tok.span.clone()];
                let is_call = matches!(body.get(i + 1).map(|t| &t.kind), Some(TokenKind::LParen));
                if is_call && TILDE_FUNCTIONS.contains(&name) {
                    edits.push((tok.span.end..tok.span.end, "~".into()));
                    push_once(&mut rewrites, "case-insensitive spec: f( → f~(");
                }
            }
            TokenKind::In if mode == CaseMode::Insensitive && list_has_string(body, i + 1) => {
                edits.push((tok.span.clone(), "in~".into()));
                push_once(&mut rewrites, "case-insensitive spec: in → in~");
            }
            TokenKind::Like if mode == CaseMode::Insensitive => {
                edits.push((tok.span.clone(), "like~".into()));
                push_once(&mut rewrites, "case-insensitive spec: like → like~");
            }
            TokenKind::EqEq | TokenKind::NotEq
                if mode == CaseMode::Insensitive && touches_string(body, i) =>
            {
                return Err(
                    "case-insensitive `==`/`!=` on strings: the harness does not rewrite it".into(),
                );
            }
            TokenKind::Lt | TokenKind::LtEq | TokenKind::Gt | TokenKind::GtEq
                if mode == CaseMode::Insensitive && touches_string(body, i) =>
            {
                return Err(
                    "case-insensitive string ordering (`<`, `>=` …): current ES has no such comparison".into(),
                );
            }
            _ => {}
        }
    }

    let end = body.last().map_or(0, |t| t.span.end);
    let mut out = text[..end].to_string();
    edits.sort_by(|a, b| b.0.start.cmp(&a.0.start).then(b.0.end.cmp(&a.0.end)));
    for (range, replacement) in edits {
        out.replace_range(range, &replacement);
    }
    Ok(Translated {
        text: out,
        limits,
        rewrites,
    })
}

fn push_once(rewrites: &mut Vec<&'static str>, what: &'static str) {
    if !rewrites.contains(&what) {
        rewrites.push(what);
    }
}

/// Byte offset of `needle` at or after `from`, skipping double-quoted strings.
fn find_outside_strings(text: &str, needle: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if b == b'\\' {
                i += 2;
                continue;
            }
            if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if i >= from && text[i..].starts_with(needle) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The first token of the operand that ends just before `body[op]`: a (dotted) field or a
/// function call.
fn operand_start(body: &[Token], op: usize) -> Option<usize> {
    let mut j = op.checked_sub(1)?;
    if body[j].kind == TokenKind::RParen {
        let mut depth = 0usize;
        loop {
            match body[j].kind {
                TokenKind::RParen => depth += 1,
                TokenKind::LParen => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            j = j.checked_sub(1)?;
        }
        if j > 0 && matches!(body[j - 1].kind, TokenKind::Ident | TokenKind::TildeIdent) {
            return Some(j - 1);
        }
        return Some(j);
    }
    if !matches!(body[j].kind, TokenKind::Ident | TokenKind::QuotedIdent(_)) {
        return None;
    }
    while j >= 2 && body[j - 1].kind == TokenKind::Dot {
        j -= 2;
    }
    Some(j)
}

/// True when the parenthesised list starting at `body[at]` holds a string literal.
fn list_has_string(body: &[Token], at: usize) -> bool {
    let mut depth = 0usize;
    for t in &body[at..] {
        match t.kind {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return false;
                }
            }
            TokenKind::Str(_) => return true,
            _ => {}
        }
    }
    false
}

/// True when a string literal stands directly on either side of `body[op]`.
fn touches_string(body: &[Token], op: usize) -> bool {
    let is_str = |j: Option<usize>| {
        j.and_then(|j| body.get(j))
            .is_some_and(|t| matches!(t.kind, TokenKind::Str(_)))
    };
    is_str(op.checked_sub(1)) || is_str(Some(op + 1))
}

/// Reads `| name args` segments: `head N` and `tail N` become limits; any other pipe makes the
/// query not runnable (seqwatch, like a detection rule, has no pipes).
fn parse_pipes(text: &str, tokens: &[Token]) -> Result<Vec<Limit>, NotRunnable> {
    let mut limits = Vec::new();
    let mut i = 0;
    while i < tokens.len() && tokens[i].kind != TokenKind::Eof {
        if tokens[i].kind != TokenKind::Pipe {
            return Err("pipe arguments the harness cannot read".into());
        }
        let name_tok = tokens.get(i + 1).ok_or("empty pipe")?;
        let name = &text[name_tok.span.clone()];
        let arg = tokens.get(i + 2);
        let after = tokens.get(i + 3).map(|t| &t.kind);
        let is_limit = matches!(name, "head" | "tail")
            && arg.is_some_and(|t| t.kind == TokenKind::Integer)
            && matches!(after, Some(TokenKind::Pipe) | Some(TokenKind::Eof) | None);
        if !is_limit {
            return Err(format!("pipe `{name}` (only head and tail are emulated)"));
        }
        let n: usize = arg
            .map(|t| &text[t.span.clone()])
            .unwrap_or("")
            .parse()
            .map_err(|e| format!("pipe `{name}` argument: {e}"))?;
        limits.push(if name == "head" {
            Limit::Head(n)
        } else {
            Limit::Tail(n)
        });
        i += 3;
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(q: &str, mode: CaseMode) -> Translated {
        translate(q, mode).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    #[test]
    fn rewrites_follow_es_modernisation() {
        assert_eq!(
            run("process where serial_event_id : 1", CaseMode::Both).text,
            "process where serial_event_id == 1"
        );
        assert_eq!(
            run("file where serial_event_id - 1 : 81", CaseMode::Both).text,
            "file where serial_event_id - 1 == 81"
        );
        assert_eq!(
            run(
                "file where indexOf(file_name, \"x\", 2) !: null",
                CaseMode::Both
            )
            .text,
            "file where indexOf(file_name, \"x\", 2) != null"
        );
        assert_eq!(
            run(
                "process where a.b !: \"* /add*\" and c : \"x\"",
                CaseMode::Both
            )
            .text,
            "process where not (a.b : \"* /add*\") and c : \"x\""
        );
        assert_eq!(
            run(
                "file where opcode:0 and startsWith(file_name, \"e\") and n in (\"a\", 1)",
                CaseMode::Insensitive
            )
            .text,
            "file where opcode==0 and startsWith~(file_name, \"e\") and n in~ (\"a\", 1)"
        );
        assert_eq!(
            run(
                "sequence with maxspan=1s\n [a where true]\n -[b where true]",
                CaseMode::Both
            )
            .text,
            "sequence with maxspan=1s\n [a where true]\n ![b where true]"
        );
    }

    #[test]
    fn limits_are_split_off_and_other_pipes_refused() {
        let t = run("process where true\n| head 4\n| tail 2", CaseMode::Both);
        assert_eq!(t.text, "process where true");
        assert_eq!(t.limits, vec![Limit::Head(4), Limit::Tail(2)]);
        assert!(translate("process where true | unique a", CaseMode::Both)
            .unwrap_err()
            .contains("pipe `unique`"));
        assert!(translate("process where a >= \"x\"", CaseMode::Insensitive).is_err());
    }
}
