//! The EQL syntax tree: what the parser produces and what the evaluator, the push-down and
//! the rule loader consume.
//!
//! Spans are byte ranges into the query text so that any later stage (a rule validator, the
//! push-down refusing a construct) can point at the place with line, column and a caret.

use std::ops::Range;

/// Byte range into the query text.
pub type Span = Range<usize>;

/// A whole EQL query, as a detection rule holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// `process where …` or `any where …`.
    Event(EventFilter),
    /// `sequence [by …] [with maxspan=…] […] […] [until […]]`.
    Sequence(Sequence),
}

/// `<category> where <condition>`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFilter {
    /// `None` for `any`; otherwise the category name as written (case preserved: ES compares
    /// `event.category` case-sensitively).
    pub category: Option<String>,
    /// The condition after `where`.
    pub condition: Expr,
    /// Span of the whole filter, from the category to the end of the condition.
    pub span: Span,
}

/// A sequence query. `with runs=N` is already expanded into N copies of the stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// Keys from `sequence by …`; every stage's `keys` starts with these.
    pub by: Vec<KeyField>,
    /// `with maxspan=…`, in milliseconds.
    pub maxspan_ms: Option<u64>,
    /// The stages in order, missing-event stages included.
    pub stages: Vec<Stage>,
    /// `until […] by …`, if present. Its `keys` follow the same rule as a stage's.
    pub until: Option<Stage>,
    /// Span of the whole query.
    pub span: Span,
}

/// One bracketed stage of a sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The event filter inside the brackets.
    pub filter: EventFilter,
    /// All join keys of the stage: the sequence-level keys first, then the stage's own
    /// (`ES: CollectionUtils.combine(joinKeys, visitJoinKeys(...))`).
    pub keys: Vec<KeyField>,
    /// `![…]`: a missing-event stage.
    pub missing: bool,
    /// Span of the stage, from `[` (or `![`) to the end of its `by` clause.
    pub span: Span,
}

/// A join key field; `?field` marks it optional (null values join).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyField {
    /// The field.
    pub field: FieldRef,
    /// True for `?field`.
    pub optional: bool,
}

/// A reference to a document field by its dotted path.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldRef {
    /// Dotted path, backticks removed: `process.parent.name`.
    pub path: String,
    /// Where it was written.
    pub span: Span,
}

/// An expression with the span it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What the expression is.
    pub kind: ExprKind,
    /// Where it was written.
    pub span: Span,
}

/// The kinds of expression EQL conditions are built from.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A constant.
    Literal(Literal),
    /// A field of the event.
    Field(FieldRef),
    /// `not x`.
    Not(Box<Expr>),
    /// `a and b`.
    And(Box<Expr>, Box<Expr>),
    /// `a or b`.
    Or(Box<Expr>, Box<Expr>),
    /// `a == b`, `a != b`, `a < b` …; `x == null` / `x != null` are null checks.
    Compare {
        /// The operator.
        op: CmpOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// `x in (…)`, `x not in (…)`, `x in~ (…)`.
    In {
        /// The tested value.
        value: Box<Expr>,
        /// The candidates.
        list: Vec<Expr>,
        /// `not in`.
        negated: bool,
        /// `in~`.
        insensitive: bool,
    },
    /// `x : "p"`, `x like "p"`, `x like~ ("p", "q")`, `x regex "r"`, `x regex~ "r"`.
    Pattern {
        /// The tested value.
        value: Box<Expr>,
        /// Which operator.
        kind: PatternKind,
        /// `like~`, `regex~`; always true for `:`.
        insensitive: bool,
        /// The patterns (string constants).
        patterns: Vec<String>,
    },
    /// `a + b`, `a - b`, `a * b`, `a / b`, `a % b`.
    Arith {
        /// The operator.
        op: ArithOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// `-x`.
    Neg(Box<Expr>),
    /// `startsWith(x, "p")`, `endsWith~(x, "p")`, …
    Call {
        /// Which function.
        func: Function,
        /// Written with `~`.
        insensitive: bool,
        /// The arguments.
        args: Vec<Expr>,
    },
}

/// A constant.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer constant.
    Int(i64),
    /// A decimal constant.
    Float(f64),
    /// A string constant, escapes resolved.
    Str(String),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
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
}

/// Pattern-matching operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternKind {
    /// `:` — case-insensitive equality, or `like~` when the pattern has `*` or `?`.
    Seq,
    /// `like` / `like~`: `*` is any run of characters, `?` exactly one.
    Like,
    /// `regex` / `regex~`: Lucene regular-expression syntax.
    Regex,
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
}

/// The functions of the EQL reference (ES `EqlFunctionRegistry`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `add(a, b)`
    Add,
    /// `between(source, left, right[, greedy])`
    Between,
    /// `cidrMatch(ip, cidr, …)`
    CidrMatch,
    /// `concat(…)`
    Concat,
    /// `divide(a, b)`
    Divide,
    /// `endsWith(s, suffix)`
    EndsWith,
    /// `indexOf(s, sub[, start])`
    IndexOf,
    /// `length(s)`
    Length,
    /// `modulo(a, b)`
    Modulo,
    /// `multiply(a, b)`
    Multiply,
    /// `number(s[, base])`
    Number,
    /// `startsWith(s, prefix)`
    StartsWith,
    /// `string(x)`
    String,
    /// `stringContains(s, sub)`
    StringContains,
    /// `substring(s, start[, end])`
    Substring,
    /// `subtract(a, b)`
    Subtract,
    /// `wildcard(s, pattern, …)`
    Wildcard,
}
