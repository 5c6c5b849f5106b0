//! The EQL parser: recursive descent over [`lexer`](super::lexer) tokens into [`ast::Query`].
//!
//! The grammar is Elasticsearch's `EqlBase.g4` (statement / sequence / sequenceTerm /
//! subquery / eventFilter / booleanExpression / valueExpression / operatorExpression /
//! predicate / primaryExpression), and the checks that ES makes while building its plan
//! (`LogicalPlanBuilder`, `ExpressionBuilder`, `AbstractBuilder`, `EqlParser`'s
//! post-processor, `EqlFunctionRegistry`, and the "comparisons against fields" verifier
//! rule) are made here too, with ES's messages where ES has one.
//!
//! Constructs ES accepts but that we do not evaluate (pipes, `join`, `sample`) are refused
//! with a clear error rather than approximated. A few ES quirks that would silently change
//! a detection are refused too (each is named where it is checked).

use super::ast::{
    ArithOp, CmpOp, EventFilter, Expr, ExprKind, FieldRef, Function, KeyField, Literal,
    PatternKind, Query, Sequence, Span, Stage,
};
use super::error::ParseError;
use super::lexer::{lex, Token, TokenKind};

/// `LogicalPlanBuilder`: "A query cannot be repeated more than 100 times".
const MAX_RUNS: u64 = 100;
/// `LogicalPlanBuilder`: "Sequence cannot contain more than 256 queries".
const MAX_SEQUENCE_QUERIES: u64 = 256;
/// Guards the recursion (parentheses, `not`, unary signs, function calls) so deep nesting
/// is an error, never a stack overflow. ES itself turns a stack overflow into an error.
const MAX_NESTING: usize = 64;
/// Longest chain of one binary operator (`a or b or …`); bounds the depth of the tree.
const MAX_CHAIN: usize = 4096;

/// Parses one EQL query. See the module documentation for what is accepted.
pub fn parse(source: &str) -> Result<Query, ParseError> {
    let lexed = lex(source);
    // Pipes come first: every query with a pipe is refused for that reason, even if it has
    // other problems, because the pipe is what changes the meaning of the whole query.
    if let Some(pipe) = lexed.tokens.iter().find(|t| t.kind == TokenKind::Pipe) {
        return Err(ParseError::new(
            pipe.span.clone(),
            "pipes are not supported",
        ));
    }
    if let Some(err) = lexed.error {
        return Err(err);
    }
    let mut parser = Parser {
        src: source,
        tokens: lexed.tokens,
        pos: 0,
        prev_end: 0,
        nesting: 0,
    };
    let query = parser.query()?;
    parser.expect_eof()?;
    Ok(query)
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// End of the last consumed token, for spans.
    prev_end: usize,
    nesting: usize,
}

/// A parsed `[…] by … with runs=N` before the sequence-level checks.
struct RawTerm {
    stage: Stage,
    /// The stage's own keys (without the sequence's).
    own_keys: usize,
    by_span: Option<Span>,
    /// `with <key> = <number>`: the key token and the number token.
    runs: Option<(Token, Token)>,
    span: Span,
}

/// Rough static type, enough for the checks ES's type resolution would fail on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Boolean,
    Numeric,
    Text,
    Null,
    /// A field (or something depending on one): unknown until run time.
    Unknown,
}

impl<'a> Parser<'a> {
    // ----- token plumbing -------------------------------------------------------------

    fn peek(&self) -> &TokenKind {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &TokenKind {
        let idx = (self.pos + ahead).min(self.tokens.len().saturating_sub(1));
        self.tokens.get(idx).map_or(&TokenKind::Eof, |t| &t.kind)
    }

    fn current(&self) -> Token {
        let idx = self.pos.min(self.tokens.len().saturating_sub(1));
        self.tokens.get(idx).cloned().unwrap_or(Token {
            kind: TokenKind::Eof,
            span: self.src.len()..self.src.len(),
        })
    }

    fn advance(&mut self) -> Token {
        let token = self.current();
        if token.kind != TokenKind::Eof {
            self.pos += 1;
            self.prev_end = token.span.end;
        }
        token
    }

    fn at(&self, kind: &TokenKind) -> bool {
        std::mem::discriminant(self.peek()) == std::mem::discriminant(kind)
    }

    fn text(&self, span: &Span) -> &'a str {
        self.src.get(span.clone()).unwrap_or("")
    }

    /// How a token is shown in "found …".
    fn describe(&self, token: &Token) -> String {
        if token.kind == TokenKind::Eof {
            return "end of input".to_string();
        }
        let text = self.text(&token.span);
        let shown: String = text.chars().take(40).collect();
        if shown.len() < text.len() {
            format!("\"{shown}…\"")
        } else {
            format!("\"{shown}\"")
        }
    }

    fn unexpected(&self, expected: &str) -> ParseError {
        let token = self.current();
        ParseError::new(
            token.span.clone(),
            format!("expected {expected} but found {}", self.describe(&token)),
        )
    }

    fn expect(&mut self, kind: TokenKind, expected: &str) -> Result<Token, ParseError> {
        if self.at(&kind) {
            Ok(self.advance())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn expect_eof(&mut self) -> Result<(), ParseError> {
        if self.at(&TokenKind::Eof) {
            Ok(())
        } else {
            Err(self.unexpected("end of input"))
        }
    }

    fn enter(&mut self, span: Span) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(ParseError::new(
                span,
                format!("query is nested too deeply (more than {MAX_NESTING} levels)"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.nesting = self.nesting.saturating_sub(1);
    }

    // ----- queries --------------------------------------------------------------------

    fn query(&mut self) -> Result<Query, ParseError> {
        match self.peek() {
            TokenKind::Sequence => Ok(Query::Sequence(self.sequence()?)),
            // ES parses `join` but its Verifier refuses it ("JOIN command is not supported").
            TokenKind::Join => Err(ParseError::new(
                self.current().span,
                "JOIN command is not supported",
            )),
            // ES supports `sample`; we do not evaluate it, so it is refused.
            TokenKind::Sample => Err(ParseError::new(
                self.current().span,
                "sample queries are not supported",
            )),
            _ => Ok(Query::Event(self.event_filter()?)),
        }
    }

    /// `eventFilter: (ANY | event=eventValue) WHERE expression`, `eventValue: STRING | IDENTIFIER`.
    fn event_filter(&mut self) -> Result<EventFilter, ParseError> {
        let start = self.current().span.start;
        let category = match self.peek().clone() {
            TokenKind::Any => None,
            TokenKind::Str(value) => Some(value),
            TokenKind::Ident => Some(self.text(&self.current().span).to_string()),
            _ => return Err(self.unexpected("an event category (a name, a string or \"any\")")),
        };
        self.advance();
        self.expect(TokenKind::Where, "\"where\"")?;
        let condition = self.expression()?;
        self.check_type(
            &condition,
            &[Ty::Boolean, Ty::Null, Ty::Unknown],
            "Condition expression needs to be boolean",
        )?;
        Ok(EventFilter {
            category,
            span: start..condition.span.end,
            condition,
        })
    }

    /// `sequence: SEQUENCE (by=joinKeys sequenceParams? | sequenceParams disallowed=joinKeys?)?
    /// sequenceTerm+ (UNTIL until=sequenceTerm)?` plus `LogicalPlanBuilder.visitSequence`.
    fn sequence(&mut self) -> Result<Sequence, ParseError> {
        let start = self.advance().span.start;
        let mut by = Vec::new();
        let mut maxspan_ms = None;
        match self.peek() {
            TokenKind::By => {
                by = self.join_keys()?;
                if self.at(&TokenKind::With) {
                    maxspan_ms = Some(self.maxspan()?);
                }
            }
            TokenKind::With => {
                maxspan_ms = Some(self.maxspan()?);
                if self.at(&TokenKind::By) {
                    let by_start = self.current().span.start;
                    self.join_keys()?;
                    return Err(ParseError::new(
                        by_start..self.prev_end,
                        "Please specify sequence [by] before [with] not after",
                    ));
                }
            }
            _ => {}
        }

        let mut terms = Vec::new();
        while matches!(self.peek(), TokenKind::LBracket | TokenKind::MissingOpen) {
            terms.push(self.term(&by)?);
        }
        if self.at(&TokenKind::Minus) && *self.peek_at(1) == TokenKind::LBracket {
            let minus = self.current().span.start;
            return Err(ParseError::new(
                minus..minus + 2,
                "missing-event stages are written ![ … ]; Elasticsearch does not accept -[ … ]",
            ));
        }
        if terms.is_empty() {
            return Err(self.unexpected(if by.is_empty() && maxspan_ms.is_none() {
                "\"by\", \"with\" or \"[\""
            } else {
                "\"[\""
            }));
        }
        let until = if self.at(&TokenKind::Until) {
            self.advance();
            if !matches!(self.peek(), TokenKind::LBracket | TokenKind::MissingOpen) {
                return Err(self.unexpected("\"[\""));
            }
            Some(self.term(&by)?)
        } else {
            None
        };
        let span = start..self.prev_end;

        // LogicalPlanBuilder.visitSequence walks every sequenceTerm, the until included.
        let mut first_keys: Option<usize> = None;
        let mut queries: u64 = 0;
        let mut runs_of = Vec::with_capacity(terms.len() + 1);
        for term in terms.iter().chain(until.iter()) {
            match first_keys {
                None => first_keys = Some(term.own_keys),
                Some(expected) if expected != term.own_keys => {
                    return Err(ParseError::new(
                        term.by_span.clone().unwrap_or_else(|| term.span.clone()),
                        format!(
                            "Inconsistent number of join keys specified; expected [{expected}] but found [{}]",
                            term.own_keys
                        ),
                    ));
                }
                Some(_) => {}
            }
            let runs = self.runs(term)?;
            queries = queries.saturating_add(runs);
            if queries > MAX_SEQUENCE_QUERIES {
                return Err(ParseError::new(
                    term.span.clone(),
                    format!("Sequence cannot contain more than 256 queries; found [{queries}]"),
                ));
            }
            runs_of.push(runs);
        }
        if queries < 2 {
            return Err(ParseError::new(
                span,
                format!("A sequence requires a minimum of 2 queries, found [{queries}]"),
            ));
        }

        let until = match until {
            None => None,
            Some(term) => {
                // ES expands `until […] with runs=N` into N queries and keeps only the last as
                // the until; the others silently become stages. Refused.
                if term.runs.is_some() {
                    return Err(ParseError::new(
                        term.span,
                        "[runs] cannot be used on the until query",
                    ));
                }
                // ES ignores the `!` of `until ![…]` (elastic/elasticsearch#132787). Refused.
                if term.stage.missing {
                    return Err(ParseError::new(
                        term.span,
                        "the until query cannot be a missing-event query ![…]",
                    ));
                }
                Some(term.stage)
            }
        };

        let mut stages = Vec::new();
        for (term, runs) in terms.into_iter().zip(runs_of) {
            for _ in 0..runs {
                stages.push(term.stage.clone());
            }
        }
        if stages.len() < 2 {
            // ES lets `sequence [a] until [b]` through the parser and fails at run time.
            return Err(ParseError::new(
                span,
                format!(
                    "A sequence requires a minimum of 2 queries besides until, found [{}]",
                    stages.len()
                ),
            ));
        }
        if maxspan_ms.is_none() && stages.iter().any(|s| s.missing) {
            return Err(ParseError::new(
                span,
                "[maxspan] is required for sequences with missing events queries; found none",
            ));
        }
        if stages.iter().all(|s| s.missing) {
            return Err(ParseError::new(
                span,
                "A sequence requires at least one positive event query; found none",
            ));
        }
        Ok(Sequence {
            by,
            maxspan_ms,
            stages,
            until,
            span,
        })
    }

    /// `with runs=N` of one term, checked as `LogicalPlanBuilder.visitSequence` does.
    fn runs(&self, term: &RawTerm) -> Result<u64, ParseError> {
        let Some((key, number)) = &term.runs else {
            return Ok(1);
        };
        let key_text = self.text(&key.span);
        if key_text != "runs" {
            return Err(ParseError::new(
                key.span.clone(),
                format!("Unrecognized option [{key_text}], expecting [runs]"),
            ));
        }
        let text = self.text(&number.span);
        if number.kind == TokenKind::Decimal {
            // ES silently runs the query once for a decimal count; we refuse instead.
            return Err(ParseError::new(
                number.span.clone(),
                format!("Decimal runs value [{text}] not supported; please use a positive integer"),
            ));
        }
        let value = text.parse::<u64>().unwrap_or(u64::MAX);
        if value < 1 {
            return Err(ParseError::new(
                number.span.clone(),
                format!("A positive runs value is required; found [{value}]"),
            ));
        }
        if value > MAX_RUNS {
            return Err(ParseError::new(
                number.span.clone(),
                format!("A query cannot be repeated more than 100 times; found [{text}]"),
            ));
        }
        Ok(value)
    }

    /// `sequenceParams: WITH (MAXSPAN ASGN timeUnit)`, `timeUnit: number unit=IDENTIFIER?`,
    /// checked as `LogicalPlanBuilder.visitSequenceParams` does. Returns milliseconds.
    fn maxspan(&mut self) -> Result<u64, ParseError> {
        self.advance(); // with
        self.expect(TokenKind::Maxspan, "\"maxspan\"")?;
        self.expect(TokenKind::Assign, "\"=\"")?;
        let number = match self.peek() {
            TokenKind::Integer | TokenKind::Decimal => self.advance(),
            _ => return Err(self.unexpected("a number")),
        };
        let unit = if self.at(&TokenKind::Ident) {
            Some(self.advance())
        } else {
            None
        };
        let number_text = self.text(&number.span);
        if number.kind == TokenKind::Decimal {
            return Err(ParseError::new(
                number.span,
                format!(
                    "Decimal time interval [{number_text}] not supported; please use an positive integer"
                ),
            ));
        }
        let value = number_text.parse::<u64>().map_err(|_| {
            ParseError::new(
                number.span.clone(),
                format!("maxspan value [{number_text}] is too large"),
            )
        })?;
        if value == 0 {
            return Err(ParseError::new(
                number.span,
                "A positive maxspan value is required; found [0]",
            ));
        }
        let Some(unit) = unit else {
            return Err(ParseError::new(
                number.span,
                format!("No time unit specified, did you mean [s] as in [{number_text}s]?"),
            ));
        };
        let unit_text = self.text(&unit.span);
        let factor: u64 = match unit_text {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(ParseError::new(
                    unit.span,
                    format!(
                        "Unrecognized time unit [{unit_text}] in [{number_text}{unit_text}], please specify one of [ms, s, m, h, d]"
                    ),
                ))
            }
        };
        value.checked_mul(factor).ok_or_else(|| {
            ParseError::new(
                number.span.start..unit.span.end,
                format!("maxspan [{number_text}{unit_text}] is too large"),
            )
        })
    }

    /// `sequenceTerm: subquery (by=joinKeys)? (WITH key=IDENTIFIER ASGN value=number)?`,
    /// `subquery: (LB | MISSING_EVENT_OPEN) eventFilter RB`.
    fn term(&mut self, sequence_keys: &[KeyField]) -> Result<RawTerm, ParseError> {
        let open = self.advance();
        let missing = open.kind == TokenKind::MissingOpen;
        let filter = self.event_filter()?;
        self.expect(TokenKind::RBracket, "\"]\"")?;
        let mut own = Vec::new();
        let mut by_span = None;
        if self.at(&TokenKind::By) {
            let by_start = self.current().span.start;
            own = self.join_keys()?;
            by_span = Some(by_start..self.prev_end);
        }
        let mut runs = None;
        if self.at(&TokenKind::With) {
            self.advance();
            let key = self.expect(TokenKind::Ident, "\"runs\"")?;
            self.expect(TokenKind::Assign, "\"=\"")?;
            let number = match self.peek() {
                TokenKind::Integer | TokenKind::Decimal => self.advance(),
                _ => return Err(self.unexpected("a number")),
            };
            runs = Some((key, number));
        }
        let span = open.span.start..self.prev_end;
        let own_keys = own.len();
        // ES: CollectionUtils.combine(joinKeys, visitJoinKeys(joinCtx)) — sequence keys first.
        let keys = sequence_keys.iter().cloned().chain(own).collect();
        Ok(RawTerm {
            stage: Stage {
                filter,
                keys,
                missing,
                span: span.clone(),
            },
            own_keys,
            by_span,
            runs,
            span,
        })
    }

    /// `joinKeys: BY expression (COMMA expression)*`; each key must be a field
    /// (`ExpressionBuilder.visitJoinKeys` casts them to attributes).
    fn join_keys(&mut self) -> Result<Vec<KeyField>, ParseError> {
        self.advance(); // by
        let mut keys = Vec::new();
        loop {
            let expr = self.expression()?;
            match expr.kind {
                ExprKind::Field(field) => keys.push(KeyField {
                    // `?field`: the expression span starts at the `?`, the field's does not.
                    optional: expr.span.start != field.span.start,
                    field,
                }),
                _ => {
                    return Err(ParseError::new(
                        expr.span.clone(),
                        format!(
                            "Unsupported join key [{}]; join keys must be field names",
                            self.text(&expr.span)
                        ),
                    ))
                }
            }
            if self.at(&TokenKind::Comma) {
                self.advance();
            } else {
                return Ok(keys);
            }
        }
    }

    // ----- expressions ----------------------------------------------------------------

    fn expression(&mut self) -> Result<Expr, ParseError> {
        self.enter(self.current().span)?;
        let result = self.or_expr();
        self.leave();
        result
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        self.logical_chain(TokenKind::Or, Self::and_expr, "or", ExprKind::Or)
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        self.logical_chain(TokenKind::And, Self::not_expr, "and", ExprKind::And)
    }

    /// `operand (op operand)*`, left-associative, for `or` and `and`: both sides must be
    /// boolean (or null/unknown), and long chains are bounded by `check_chain`.
    fn logical_chain(
        &mut self,
        op_token: TokenKind,
        operand: fn(&mut Self) -> Result<Expr, ParseError>,
        name: &str,
        make: fn(Box<Expr>, Box<Expr>) -> ExprKind,
    ) -> Result<Expr, ParseError> {
        let message = format!("argument of [{name}] must be boolean");
        let mut left = operand(self)?;
        let mut chain = 0;
        while self.at(&op_token) {
            let op = self.advance();
            let right = operand(self)?;
            chain += 1;
            self.check_chain(chain, &op.span)?;
            for side in [&left, &right] {
                self.check_type(side, &[Ty::Boolean, Ty::Null, Ty::Unknown], &message)?;
            }
            let span = left.span.start..right.span.end;
            left = Expr {
                kind: make(Box::new(left), Box::new(right)),
                span,
            };
        }
        Ok(left)
    }

    fn check_chain(&self, chain: usize, span: &Span) -> Result<(), ParseError> {
        if chain > MAX_CHAIN {
            return Err(ParseError::new(
                span.clone(),
                format!("query is too large (more than {MAX_CHAIN} operands in one chain)"),
            ));
        }
        Ok(())
    }

    /// `NOT booleanExpression | relationship=IDENTIFIER OF subquery | valueExpression`.
    fn not_expr(&mut self) -> Result<Expr, ParseError> {
        if self.at(&TokenKind::Not) {
            let not = self.advance();
            self.enter(not.span.clone())?;
            let inner = self.not_expr();
            self.leave();
            let inner = inner?;
            self.check_type(
                &inner,
                &[Ty::Boolean, Ty::Null, Ty::Unknown],
                "argument of [not] must be boolean",
            )?;
            let span = not.span.start..inner.span.end;
            return Ok(Expr {
                kind: ExprKind::Not(Box::new(inner)),
                span,
            });
        }
        if self.at(&TokenKind::Ident) && *self.peek_at(1) == TokenKind::Of {
            // EqlParser.PostProcessor.exitProcessCheck
            return Err(ParseError::new(
                self.current().span,
                "Process relationships are not supported",
            ));
        }
        self.value_expr()
    }

    /// `valueExpression: operatorExpression (comparisonOperator operatorExpression)?`.
    fn value_expr(&mut self) -> Result<Expr, ParseError> {
        let left = self.additive()?;
        let op = match self.peek() {
            TokenKind::EqEq => CmpOp::Eq,
            TokenKind::NotEq => CmpOp::NotEq,
            TokenKind::Lt => CmpOp::Lt,
            TokenKind::LtEq => CmpOp::LtEq,
            TokenKind::Gt => CmpOp::Gt,
            TokenKind::GtEq => CmpOp::GtEq,
            _ => return Ok(left),
        };
        let op_token = self.advance();
        let right = self.additive()?;
        if has_field(&left) && has_field(&right) {
            return Err(ParseError::new(
                right.span.clone(),
                format!(
                    "Comparisons against fields are not (currently) supported; offender [{}] in [{}]",
                    self.text(&right.span),
                    self.text(&op_token.span)
                ),
            ));
        }
        let span = left.span.start..right.span.end;
        Ok(Expr {
            kind: ExprKind::Compare {
                op,
                left: Box::new(left),
                right: Box::new(right),
            },
            span,
        })
    }

    fn additive(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.multiplicative()?;
        let mut chain = 0;
        loop {
            let op = match self.peek() {
                TokenKind::Plus => ArithOp::Add,
                // `-[` after a key is the pre-release missing-event syntax, not a subtraction;
                // leave it to `sequence` to explain.
                TokenKind::Minus if *self.peek_at(1) == TokenKind::LBracket => return Ok(left),
                TokenKind::Minus => ArithOp::Sub,
                _ => return Ok(left),
            };
            let op_token = self.advance();
            let right = self.multiplicative()?;
            chain += 1;
            self.check_chain(chain, &op_token.span)?;
            left = self.arith(op, left, right, &op_token)?;
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        let mut chain = 0;
        loop {
            let op = match self.peek() {
                TokenKind::Star => ArithOp::Mul,
                TokenKind::Slash => ArithOp::Div,
                TokenKind::Percent => ArithOp::Mod,
                _ => return Ok(left),
            };
            let op_token = self.advance();
            let right = self.unary()?;
            chain += 1;
            self.check_chain(chain, &op_token.span)?;
            left = self.arith(op, left, right, &op_token)?;
        }
    }

    fn arith(
        &self,
        op: ArithOp,
        left: Expr,
        right: Expr,
        op_token: &Token,
    ) -> Result<Expr, ParseError> {
        let what = format!(
            "argument of [{}] must be numeric",
            self.text(&op_token.span)
        );
        self.check_type(&left, &[Ty::Numeric, Ty::Null, Ty::Unknown], &what)?;
        self.check_type(&right, &[Ty::Numeric, Ty::Null, Ty::Unknown], &what)?;
        let span = left.span.start..right.span.end;
        Ok(Expr {
            kind: ExprKind::Arith {
                op,
                left: Box::new(left),
                right: Box::new(right),
            },
            span,
        })
    }

    /// `operator=(MINUS | PLUS) operatorExpression` — binds tighter than `*` and `+`.
    fn unary(&mut self) -> Result<Expr, ParseError> {
        let sign = match self.peek() {
            TokenKind::Minus | TokenKind::Plus => self.advance(),
            _ => return self.primary_with_predicate(),
        };
        self.enter(sign.span.clone())?;
        let operand = self.unary();
        self.leave();
        let operand = operand?;
        let span = sign.span.start..operand.span.end;
        if sign.kind == TokenKind::Plus {
            // ExpressionBuilder.visitArithmeticUnary returns the operand unchanged for `+`.
            return Ok(Expr {
                kind: operand.kind,
                span,
            });
        }
        self.check_type(
            &operand,
            &[Ty::Numeric, Ty::Null, Ty::Unknown],
            "argument of [-] must be numeric",
        )?;
        // A negated number literal is folded (ES folds constants before running anything).
        let kind = match operand.kind {
            ExprKind::Literal(Literal::Int(v)) => match v.checked_neg() {
                Some(n) => ExprKind::Literal(Literal::Int(n)),
                None => ExprKind::Neg(Box::new(Expr {
                    kind: ExprKind::Literal(Literal::Int(v)),
                    span: operand.span,
                })),
            },
            ExprKind::Literal(Literal::Float(f)) => ExprKind::Literal(Literal::Float(-f)),
            other => ExprKind::Neg(Box::new(Expr {
                kind: other,
                span: operand.span,
            })),
        };
        Ok(Expr { kind, span })
    }

    /// `primaryExpression predicate?` where
    /// `predicate: NOT? (IN | IN~) LP expression (COMMA expression)* RP
    ///           | (SEQ | LIKE | LIKE~ | REGEX | REGEX~) (constant | LP constant (COMMA constant)* RP)`.
    fn primary_with_predicate(&mut self) -> Result<Expr, ParseError> {
        let value = self.primary()?;
        match self.peek() {
            TokenKind::Not
                if matches!(self.peek_at(1), TokenKind::In | TokenKind::InInsensitive) =>
            {
                self.advance();
                self.in_list(value, true)
            }
            TokenKind::In | TokenKind::InInsensitive => self.in_list(value, false),
            TokenKind::Colon
            | TokenKind::Like
            | TokenKind::LikeInsensitive
            | TokenKind::Regex
            | TokenKind::RegexInsensitive => self.pattern(value),
            _ => Ok(value),
        }
    }

    fn in_list(&mut self, value: Expr, negated: bool) -> Result<Expr, ParseError> {
        let op = self.advance();
        let insensitive = op.kind == TokenKind::InInsensitive;
        self.expect(TokenKind::LParen, "\"(\"")?;
        let mut list = vec![self.expression()?];
        while self.at(&TokenKind::Comma) {
            self.advance();
            list.push(self.expression()?);
        }
        self.expect(TokenKind::RParen, "\",\" or \")\"")?;
        let span = value.span.start..self.prev_end;
        if has_field(&value) {
            if let Some(item) = list.iter().find(|item| has_field(item)) {
                return Err(ParseError::new(
                    item.span.clone(),
                    format!(
                        "Comparisons against fields are not (currently) supported; offender [{}] in [{}]",
                        self.text(&item.span),
                        self.text(&span)
                    ),
                ));
            }
        }
        Ok(Expr {
            kind: ExprKind::In {
                value: Box::new(value),
                list,
                negated,
                insensitive,
            },
            span,
        })
    }

    fn pattern(&mut self, value: Expr) -> Result<Expr, ParseError> {
        let op = self.advance();
        let op_text = self.text(&op.span).to_string();
        let (kind, insensitive) = match op.kind {
            TokenKind::Colon => (PatternKind::Seq, true),
            TokenKind::Like => (PatternKind::Like, false),
            TokenKind::LikeInsensitive => (PatternKind::Like, true),
            TokenKind::Regex => (PatternKind::Regex, false),
            _ => (PatternKind::Regex, true),
        };
        let mut constants = Vec::new();
        if self.at(&TokenKind::LParen) {
            self.advance();
            constants.push(self.constant()?);
            while self.at(&TokenKind::Comma) {
                self.advance();
                constants.push(self.constant()?);
            }
            self.expect(TokenKind::RParen, "\",\" or \")\"")?;
        } else {
            constants.push(self.constant()?);
        }
        let span = value.span.start..self.prev_end;

        // ES builds one comparison per constant and ORs them (ExpressionBuilder
        // .combineExpressions). String constants stay one Pattern (its list is an OR); a
        // number or boolean after `:` is plain equality (InsensitiveWildcardEquals of a
        // non-string is a case-insensitive term query, i.e. equality).
        let mut patterns = Vec::new();
        let mut others = Vec::new();
        for constant in constants {
            match constant.kind {
                ExprKind::Literal(Literal::Str(s)) => patterns.push(s),
                ExprKind::Literal(Literal::Null) => {
                    return Err(ParseError::new(
                        constant.span,
                        format!("[{op_text}] cannot match null; use [== null] or [!= null]"),
                    ))
                }
                _ if kind == PatternKind::Seq => others.push(Expr {
                    span: span.clone(),
                    kind: ExprKind::Compare {
                        op: CmpOp::Eq,
                        left: Box::new(value.clone()),
                        right: Box::new(constant),
                    },
                }),
                _ => {
                    return Err(ParseError::new(
                        constant.span.clone(),
                        format!(
                            "[{op_text}] requires string patterns; found [{}]",
                            self.text(&constant.span)
                        ),
                    ))
                }
            }
        }
        let mut result: Option<Expr> = None;
        if !patterns.is_empty() {
            result = Some(Expr {
                kind: ExprKind::Pattern {
                    value: Box::new(value),
                    kind,
                    insensitive,
                    patterns,
                },
                span: span.clone(),
            });
        }
        for other in others {
            result = Some(match result {
                None => other,
                Some(acc) => Expr {
                    kind: ExprKind::Or(Box::new(acc), Box::new(other)),
                    span: span.clone(),
                },
            });
        }
        result.ok_or_else(|| ParseError::new(span, "expected at least one pattern"))
    }

    /// `constant: NULL | number | booleanValue | string` (no sign: `x : -1` is a syntax error).
    fn constant(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            TokenKind::Null
            | TokenKind::True
            | TokenKind::False
            | TokenKind::Str(_)
            | TokenKind::Integer
            | TokenKind::Decimal => self.literal(),
            _ => Err(self.unexpected("a constant (string, number, boolean or null)")),
        }
    }

    fn literal(&mut self) -> Result<Expr, ParseError> {
        let token = self.advance();
        let text = self.text(&token.span);
        let literal = match token.kind {
            TokenKind::Null => Literal::Null,
            TokenKind::True => Literal::Bool(true),
            TokenKind::False => Literal::Bool(false),
            TokenKind::Str(value) => Literal::Str(value),
            TokenKind::Integer => match text.parse::<i64>() {
                Ok(v) => Literal::Int(v),
                // ES quietly turns an integer too large for a long into a double; we refuse
                // rather than compare with a rounded value.
                Err(_) => {
                    return Err(ParseError::new(
                        token.span,
                        format!("Number [{text}] is too large for a 64-bit integer"),
                    ))
                }
            },
            TokenKind::Decimal => match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Literal::Float(v),
                _ => {
                    return Err(ParseError::new(
                        token.span,
                        format!("Number [{text}] is too large"),
                    ))
                }
            },
            _ => return Err(ParseError::new(token.span, "expected a constant")),
        };
        Ok(Expr {
            kind: ExprKind::Literal(literal),
            span: token.span,
        })
    }

    /// `primaryExpression: constant | functionExpression | qualifiedName | LP expression RP`.
    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            TokenKind::Null
            | TokenKind::True
            | TokenKind::False
            | TokenKind::Str(_)
            | TokenKind::Integer
            | TokenKind::Decimal => self.literal(),
            TokenKind::LParen => {
                let open = self.advance();
                let inner = self.expression()?;
                self.expect(TokenKind::RParen, "\")\"")?;
                Ok(Expr {
                    kind: inner.kind,
                    span: open.span.start..self.prev_end,
                })
            }
            TokenKind::TildeIdent => self.function(),
            TokenKind::Ident if *self.peek_at(1) == TokenKind::LParen => self.function(),
            TokenKind::Question => {
                let question = self.advance();
                if !matches!(self.peek(), TokenKind::Ident | TokenKind::QuotedIdent(_)) {
                    return Err(self.unexpected("a field name after \"?\""));
                }
                let field = self.qualified_name()?;
                Ok(Expr {
                    span: question.span.start..field.span.end,
                    kind: ExprKind::Field(field),
                })
            }
            TokenKind::Ident | TokenKind::QuotedIdent(_) => {
                let field = self.qualified_name()?;
                Ok(Expr {
                    span: field.span.clone(),
                    kind: ExprKind::Field(field),
                })
            }
            _ => Err(self.unexpected("an expression")),
        }
    }

    /// `qualifiedName: OPTIONAL? identifier (DOT identifier | LB INTEGER_VALUE+ RB)*`.
    fn qualified_name(&mut self) -> Result<FieldRef, ParseError> {
        let start = self.current().span.start;
        let mut segments = vec![self.identifier()?];
        loop {
            if self.at(&TokenKind::Dot) {
                self.advance();
                if !matches!(self.peek(), TokenKind::Ident | TokenKind::QuotedIdent(_)) {
                    return Err(self.unexpected("a field name after \".\""));
                }
                segments.push(self.identifier()?);
            } else if self.at(&TokenKind::LBracket) && *self.peek_at(1) == TokenKind::Integer {
                // EqlParser.PostProcessor.exitQualifiedName
                self.advance();
                return Err(ParseError::new(
                    self.current().span,
                    "Array indexes are not supported",
                ));
            } else {
                break;
            }
        }
        Ok(FieldRef {
            path: segments.join("."),
            span: start..self.prev_end,
        })
    }

    fn identifier(&mut self) -> Result<String, ParseError> {
        let token = self.advance();
        match token.kind {
            TokenKind::Ident => Ok(self.text(&token.span).to_string()),
            TokenKind::QuotedIdent(value) => Ok(value),
            _ => Err(ParseError::new(token.span, "expected a field name")),
        }
    }

    /// `functionExpression: name=functionName LP (expression (COMMA expression)*)? RP`,
    /// resolved against `EqlFunctionRegistry` (names match case-insensitively:
    /// `normalize` lowercases them).
    fn function(&mut self) -> Result<Expr, ParseError> {
        let name_token = self.advance();
        let raw = self.text(&name_token.span);
        let insensitive = name_token.kind == TokenKind::TildeIdent;
        let name = raw.trim_end_matches('~');
        let Some((func, min, max, case_aware)) = function_signature(name) else {
            return Err(ParseError::new(
                name_token.span,
                format!("Unknown function [{name}]"),
            ));
        };
        self.expect(TokenKind::LParen, "\"(\"")?;
        self.enter(name_token.span.clone())?;
        let args = self.arguments();
        self.leave();
        let args = args?;
        let span = name_token.span.start..self.prev_end;
        if insensitive && !case_aware {
            return Err(ParseError::new(
                name_token.span,
                format!("Function [{name}] does not support case-insensitive matching [~]"),
            ));
        }
        if args.len() < min || args.len() > max {
            return Err(ParseError::new(
                span,
                format!(
                    "error building [{}]: {}",
                    name.to_ascii_lowercase(),
                    arity_message(min, max)
                ),
            ));
        }
        Ok(Expr {
            kind: ExprKind::Call {
                func,
                insensitive,
                args,
            },
            span,
        })
    }

    fn arguments(&mut self) -> Result<Vec<Expr>, ParseError> {
        let mut args = Vec::new();
        if self.at(&TokenKind::RParen) {
            self.advance();
            return Ok(args);
        }
        args.push(self.expression()?);
        while self.at(&TokenKind::Comma) {
            self.advance();
            args.push(self.expression()?);
        }
        self.expect(TokenKind::RParen, "\",\" or \")\"")?;
        Ok(args)
    }

    // ----- checks ---------------------------------------------------------------------

    /// Fails when `expr` certainly has none of the `allowed` types (a field is always allowed).
    fn check_type(&self, expr: &Expr, allowed: &[Ty], what: &str) -> Result<(), ParseError> {
        let ty = static_type(expr);
        if ty == Ty::Unknown || allowed.contains(&ty) {
            return Ok(());
        }
        let found = match ty {
            Ty::Boolean => "BOOLEAN",
            Ty::Numeric => "NUMERIC",
            Ty::Text => "KEYWORD",
            Ty::Null => "NULL",
            Ty::Unknown => "UNKNOWN",
        };
        Err(ParseError::new(
            expr.span.clone(),
            format!(
                "{what}, found [{}] of type [{found}]",
                self.text(&expr.span)
            ),
        ))
    }
}

/// `EqlFunctionRegistry`: the function, its argument count range, and whether it is a
/// `CaseInsensitiveScalarFunction` (the only ones that take `~`).
fn function_signature(name: &str) -> Option<(Function, usize, usize, bool)> {
    Some(match name.to_ascii_lowercase().as_str() {
        "add" => (Function::Add, 2, 2, false),
        "between" => (Function::Between, 3, 4, true),
        "cidrmatch" => (Function::CidrMatch, 2, usize::MAX, false),
        "concat" => (Function::Concat, 1, usize::MAX, false),
        "divide" => (Function::Divide, 2, 2, false),
        "endswith" => (Function::EndsWith, 2, 2, true),
        "indexof" => (Function::IndexOf, 2, 3, true),
        "length" => (Function::Length, 1, 1, false),
        "modulo" => (Function::Modulo, 2, 2, false),
        "multiply" => (Function::Multiply, 2, 2, false),
        "number" => (Function::Number, 1, 2, false),
        "startswith" => (Function::StartsWith, 2, 2, true),
        "string" => (Function::String, 1, 1, false),
        "stringcontains" => (Function::StringContains, 2, 2, true),
        "substring" => (Function::Substring, 2, 3, false),
        "subtract" => (Function::Subtract, 2, 2, false),
        // `wildcard` is no longer in EqlFunctionRegistry; ES answers "Unknown function".
        _ => return None,
    })
}

fn arity_message(min: usize, max: usize) -> String {
    fn word(n: usize) -> &'static str {
        match n {
            1 => "one",
            2 => "two",
            3 => "three",
            4 => "four",
            _ => "several",
        }
    }
    if max == usize::MAX {
        format!(
            "expects at least {} argument{}",
            word(min),
            if min == 1 { "" } else { "s" }
        )
    } else if min == max {
        format!(
            "expects exactly {} argument{}",
            word(min),
            if min == 1 { "" } else { "s" }
        )
    } else {
        format!("expects {} or {} arguments", word(min), word(max))
    }
}

fn has_field(expr: &Expr) -> bool {
    match &expr.kind {
        ExprKind::Literal(_) => false,
        ExprKind::Field(_) => true,
        ExprKind::Not(e) | ExprKind::Neg(e) => has_field(e),
        ExprKind::And(a, b) | ExprKind::Or(a, b) => has_field(a) || has_field(b),
        ExprKind::Compare { left, right, .. } | ExprKind::Arith { left, right, .. } => {
            has_field(left) || has_field(right)
        }
        ExprKind::In { value, list, .. } => has_field(value) || list.iter().any(has_field),
        ExprKind::Pattern { value, .. } => has_field(value),
        ExprKind::Call { args, .. } => args.iter().any(has_field),
    }
}

fn static_type(expr: &Expr) -> Ty {
    match &expr.kind {
        ExprKind::Literal(Literal::Null) => Ty::Null,
        ExprKind::Literal(Literal::Bool(_)) => Ty::Boolean,
        ExprKind::Literal(Literal::Int(_) | Literal::Float(_)) => Ty::Numeric,
        ExprKind::Literal(Literal::Str(_)) => Ty::Text,
        ExprKind::Field(_) => Ty::Unknown,
        ExprKind::Not(_)
        | ExprKind::And(..)
        | ExprKind::Or(..)
        | ExprKind::Compare { .. }
        | ExprKind::In { .. }
        | ExprKind::Pattern { .. } => Ty::Boolean,
        ExprKind::Arith { .. } | ExprKind::Neg(_) => Ty::Numeric,
        ExprKind::Call { func, .. } => match func {
            Function::StartsWith
            | Function::EndsWith
            | Function::StringContains
            | Function::CidrMatch => Ty::Boolean,
            Function::Between | Function::Concat | Function::String | Function::Substring => {
                Ty::Text
            }
            Function::Wildcard => Ty::Boolean,
            Function::Add
            | Function::Divide
            | Function::IndexOf
            | Function::Length
            | Function::Modulo
            | Function::Multiply
            | Function::Number
            | Function::Subtract => Ty::Numeric,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(src: &str) -> ExprKind {
        match parse(src) {
            Ok(Query::Event(filter)) => filter.condition.kind,
            other => panic!("expected an event query, got {other:?}"),
        }
    }

    #[test]
    fn not_binds_tighter_than_and() {
        match condition("any where not a == 1 and b == 2") {
            ExprKind::And(left, _) => assert!(matches!(left.kind, ExprKind::Not(_))),
            other => panic!("unexpected tree {other:?}"),
        }
    }

    #[test]
    fn and_binds_tighter_than_or() {
        match condition("any where a == 1 or b == 2 and c == 3") {
            ExprKind::Or(_, right) => assert!(matches!(right.kind, ExprKind::And(..))),
            other => panic!("unexpected tree {other:?}"),
        }
    }

    #[test]
    fn unary_minus_binds_tighter_than_multiplication() {
        // ES: arithmeticUnary's operand is operatorExpression at precedence 3.
        match condition("any where -a * 2 == 4") {
            ExprKind::Compare { left, .. } => match left.kind {
                ExprKind::Arith {
                    op: ArithOp::Mul,
                    left,
                    ..
                } => {
                    assert!(matches!(left.kind, ExprKind::Neg(_)))
                }
                other => panic!("unexpected tree {other:?}"),
            },
            other => panic!("unexpected tree {other:?}"),
        }
    }

    #[test]
    fn negative_literal_is_folded() {
        match condition("any where a > -5") {
            ExprKind::Compare { right, .. } => {
                assert_eq!(right.kind, ExprKind::Literal(Literal::Int(-5)))
            }
            other => panic!("unexpected tree {other:?}"),
        }
    }
}
