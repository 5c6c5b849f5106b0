//! The EQL event-filter evaluator: compiles an [`ast::EventFilter`] once, then answers
//! "would Elasticsearch return this `_source` for this filter?" per event.
//!
//! ES runs an EQL filter as a query: every sub-expression its translator can express becomes
//! a term/terms/range/prefix/wildcard/regexp/exists query, everything else a script
//! (`ES: planner/QueryTranslator.java`, `ES:/x-pack/plugin/ql/.../planner/ExpressionTranslators.java`).
//! The compiled [`Pred`] tree keeps exactly that split, so the semantics follow:
//! - a query leaf matches when **any** indexed value of the field satisfies it; a missing field
//!   satisfies nothing (not even `!=`);
//! - `not` is Lucene `must_not`: `x != "a"`, `not x == "a"` and `x not in (…)` match documents
//!   where `x` is missing, and do not match `["a","b"]`;
//! - a script leaf is evaluated once per value of each field it reads (all combinations), and
//!   matches when any combination gives `true`; a missing field is evaluated once as `null`,
//!   and a `null` result counts as false (`multiValueDocValues` in
//!   `ES: expression/function/scalar/whitelist/InternalEqlScriptUtils.java`, `nullSafeFilter`);
//! - `not` over a script negates that whole "any combination" answer
//!   (`Scripts.multiValueDocValuesRewrite` hoists the `not` outside the value loop).
//!
//! This module owns the compile step (with ES's verifier errors) and evaluation; it never
//! panics on input. The push-down (`super::pushdown`) reads the same [`Pred`] tree.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::net::IpAddr;

use regex::Regex;
use serde_json::Value;

use super::ast::{self, CmpOp, ExprKind, Function, Literal, PatternKind, Span};
use super::functions::{self, Arith, EvalError};
use super::value::{
    compare_numbers, eq_ci, indexed_scalar, ip_to_u128, parse_cidr, script_compare, starts_with_ci,
    utf16_len, FieldType, FieldTypes, Val,
};
use crate::event::{parse_iso_timestamp, Document, FieldPlan, UNBOUND_SLOT};

/// Options for compiling filters.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The field `process where` tests (`event_category_field`, default `event.category`).
    pub event_category_field: String,
    /// Mapping types of fields; fields not listed are typed from their JSON values.
    pub field_types: FieldTypes,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            event_category_field: "event.category".to_owned(),
            field_types: FieldTypes::new(),
        }
    }
}

/// A filter that ES would reject at verification or planning time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (query bytes {}..{})", span.start, span.end)]
pub struct CompileError {
    /// What is wrong, in ES's words where possible.
    pub message: String,
    /// Where in the query text.
    pub span: Span,
}

fn err<T>(span: &Span, message: impl Into<String>) -> Result<T, CompileError> {
    Err(CompileError {
        message: message.into(),
        span: span.clone(),
    })
}

/// A literal operand, detached from the query text.
pub(crate) type Lit = Val<'static>;

/// The compiled form of a condition: ES's query/script split.
#[derive(Debug, Clone)]
pub(crate) enum Pred {
    /// A folded constant.
    Const(bool),
    /// `bool.filter`.
    And(Vec<Pred>),
    /// `bool.should`.
    Or(Vec<Pred>),
    /// `bool.must_not` (or a negated script).
    Not(Box<Pred>),
    /// A query on one field.
    Leaf(Leaf),
    /// A script predicate.
    Script(Script),
}

/// A query on one field.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub field: String,
    /// The field's slot in the rule's [`FieldPlan`] (see [`CompiledFilter::bind_slots`]).
    pub slot: usize,
    pub ty: Option<FieldType>,
    pub test: LeafTest,
    /// Set on the evaluated copy of a case-sensitive `term`/`terms` leaf on a keyword (or
    /// untyped) field: see [`keyword_terms`].
    pub fast: Option<KeywordTerms>,
}

/// The string terms of a leaf (see [`keyword_terms`]) and the field's `ignore_above`.
#[derive(Debug, Clone)]
pub(crate) struct KeywordTerms {
    terms: Vec<String>,
    ignore_above: Option<u32>,
}

/// What a field query tests on each indexed value.
#[derive(Debug, Clone)]
pub(crate) enum LeafTest {
    Exists,
    Term {
        value: Lit,
        case_insensitive: bool,
    },
    Terms(Vec<Lit>),
    Range {
        lower: Option<(Lit, bool)>,
        upper: Option<(Lit, bool)>,
    },
    Prefix {
        prefix: String,
        case_insensitive: bool,
    },
    Wildcard {
        /// Lucene wildcard syntax, as sent to ES.
        pattern: String,
        case_insensitive: bool,
        regex: Regex,
    },
    Regexp {
        /// Lucene regexp syntax, as sent to ES.
        pattern: String,
        case_insensitive: bool,
        regex: Regex,
    },
}

/// A script predicate: an expression over the values of `fields` (one slot per occurrence).
#[derive(Debug, Clone)]
pub(crate) struct Script {
    expr: SExpr,
    pub fields: Vec<(String, Option<FieldType>)>,
    /// Each field's slot in the rule's [`FieldPlan`] (see [`CompiledFilter::bind_slots`]).
    slots: Vec<usize>,
}

#[derive(Debug, Clone)]
enum SExpr {
    Lit(Lit),
    Slot(usize),
    Arith(Arith, Box<SExpr>, Box<SExpr>),
    Neg(Box<SExpr>),
    Cmp(CmpOp, Box<SExpr>, Box<SExpr>),
    InsensitiveEq(Box<SExpr>, Box<SExpr>),
    In(Box<SExpr>, Vec<Lit>),
    IsNull(Box<SExpr>),
    Matches(Box<SExpr>, Regex),
    Not(Box<SExpr>),
    And(Box<SExpr>, Box<SExpr>),
    Or(Box<SExpr>, Box<SExpr>),
    Call(Call, Vec<SExpr>),
}

#[derive(Debug, Clone)]
enum Call {
    Between { greedy: bool, ci: bool },
    CidrMatch(Vec<(u128, u128)>),
    Concat,
    EndsWith { ci: bool },
    IndexOf { ci: bool },
    Length,
    Number,
    StartsWith { ci: bool },
    String,
    StringContains { ci: bool },
    Substring,
}

/// A compiled EQL event filter. Cheap to share; `matches` allocates nothing for query-only
/// filters such as the shipped detection rules.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    pred: Pred,
    /// `pred` with nested `and`s and `or`s spliced into their parents (`a and b and c`
    /// parses as `(a and b) and c`): the same operands in the same order, so the same
    /// short-circuits and the same script errors, with less recursion per event.
    flat: Pred,
}

/// What a leaf tests, as text: equal for leaves that test the same field the same way.
fn leaf_identity(leaf: &Leaf) -> String {
    format!("{:?} {:?} {:?}", leaf.field, leaf.ty, leaf.test)
}

/// `pred` with every `And` inside an `And` (and `Or` inside an `Or`) spliced into its parent,
/// keeping operand order.
fn flattened(pred: &Pred) -> Pred {
    fn splice(ps: &[Pred], and: bool, out: &mut Vec<Pred>) {
        for p in ps {
            match p {
                Pred::And(inner) if and => splice(inner, and, out),
                Pred::Or(inner) if !and => splice(inner, and, out),
                other => out.push(flattened(other)),
            }
        }
    }
    match pred {
        Pred::And(ps) => {
            let mut out = Vec::with_capacity(ps.len());
            splice(ps, true, &mut out);
            Pred::And(out)
        }
        Pred::Or(ps) => {
            let mut out = Vec::with_capacity(ps.len());
            splice(ps, false, &mut out);
            Pred::Or(out)
        }
        Pred::Not(p) => Pred::Not(Box::new(flattened(p))),
        Pred::Leaf(leaf) => Pred::Leaf(Leaf {
            fast: keyword_terms(leaf),
            ..leaf.clone()
        }),
        other => other.clone(),
    }
}

impl CompiledFilter {
    /// Compiles `<category> where <condition>`: the category becomes a case-sensitive term on
    /// the event-category field (`ES: parser/LogicalPlanBuilder.java`, visitEventFilter);
    /// `any` adds no category test.
    pub fn compile(filter: &ast::EventFilter, opts: &EvalOptions) -> Result<Self, CompileError> {
        let condition = Compiler { opts }.pred(&filter.condition)?;
        let pred = match &filter.category {
            None => condition,
            Some(category) => Pred::And(vec![
                Pred::Leaf(Leaf {
                    field: opts.event_category_field.clone(),
                    slot: UNBOUND_SLOT,
                    ty: opts.field_types.get(&opts.event_category_field),
                    fast: None,
                    test: LeafTest::Term {
                        value: Val::Str(Cow::Owned(category.clone())),
                        case_insensitive: false,
                    },
                }),
                condition,
            ]),
        };
        Ok(Self::new(pred))
    }

    fn new(pred: Pred) -> Self {
        let flat = flattened(&pred);
        Self { pred, flat }
    }

    /// Compiles a bare condition (no category test).
    pub fn compile_condition(expr: &ast::Expr, opts: &EvalOptions) -> Result<Self, CompileError> {
        Ok(Self::new(Compiler { opts }.pred(expr)?))
    }

    /// Whether ES would return `source` for this filter. A script failure (which would fail
    /// the ES search) counts as no match; use [`CompiledFilter::try_matches`] to see it.
    pub fn matches<D: Document + ?Sized>(&self, source: &D) -> bool {
        self.try_matches(source).unwrap_or(false)
    }

    /// Like [`CompiledFilter::matches`] but reports script failures (overflow, division by
    /// zero, a bad `number()` input …), on which ES fails the whole search.
    pub fn try_matches<D: Document + ?Sized>(&self, source: &D) -> Result<bool, EvalError> {
        eval_pred(&self.flat, source)
    }

    /// Identities of the leaves of the evaluated top-level `and` (field, type and test), for
    /// [`CompiledFilter::test_first`]: equal identities test the same thing.
    pub fn top_leaf_identities(&self) -> Vec<String> {
        match &self.flat {
            Pred::And(ps) => ps
                .iter()
                .filter_map(|p| match p {
                    Pred::Leaf(leaf) => Some(leaf_identity(leaf)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Moves the leaves of the evaluated top-level `and` whose identity `first` holds for
    /// ahead of the others, otherwise keeping the order. Only when every operand is a leaf or a
    /// constant: those cannot fail, so no result changes, only how soon an event that fails
    /// is refused. (ES runs the filter as one Lucene query, where order means nothing.)
    pub fn test_first(&mut self, first: impl Fn(&str) -> bool) {
        let Pred::And(ps) = &mut self.flat else {
            return;
        };
        if !ps
            .iter()
            .all(|p| matches!(p, Pred::Leaf(_) | Pred::Const(_)))
        {
            return;
        }
        let early = |p: &Pred| matches!(p, Pred::Leaf(leaf) if first(&leaf_identity(leaf)));
        let (mut ahead, behind): (Vec<Pred>, Vec<Pred>) = ps.drain(..).partition(early);
        ahead.extend(behind);
        *ps = ahead;
    }

    /// Gives every field the filter reads its slot in `plan` (adding the field if new), so a
    /// [`crate::event::FlatEvent`] decoded for that plan finds it without comparing paths.
    pub fn bind_slots(&mut self, plan: &mut FieldPlan) {
        bind_pred(&mut self.pred, plan);
        bind_pred(&mut self.flat, plan);
    }

    /// Every field the filter reads, sorted and de-duplicated.
    pub fn referenced_fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect_fields(&self.pred, &mut out);
        out.sort();
        out.dedup();
        out
    }

    pub(crate) fn pred(&self) -> &Pred {
        &self.pred
    }
}

fn bind_pred(pred: &mut Pred, plan: &mut FieldPlan) {
    match pred {
        Pred::Const(_) => {}
        Pred::And(ps) | Pred::Or(ps) => ps.iter_mut().for_each(|p| bind_pred(p, plan)),
        Pred::Not(p) => bind_pred(p, plan),
        Pred::Leaf(l) => l.slot = plan.slot(&l.field),
        Pred::Script(s) => {
            s.slots = s.fields.iter().map(|(f, _)| plan.slot(f)).collect();
        }
    }
}

fn collect_fields(pred: &Pred, out: &mut Vec<String>) {
    match pred {
        Pred::Const(_) => {}
        Pred::And(ps) | Pred::Or(ps) => ps.iter().for_each(|p| collect_fields(p, out)),
        Pred::Not(p) => collect_fields(p, out),
        Pred::Leaf(l) => out.push(l.field.clone()),
        Pred::Script(s) => out.extend(s.fields.iter().map(|(f, _)| f.clone())),
    }
}

// ---------------------------------------------------------------------------------------------
// Compilation

fn literal_val(lit: &Literal) -> Lit {
    match lit {
        Literal::Null => Val::Null,
        Literal::Bool(b) => Val::Bool(*b),
        Literal::Int(i) => match i32::try_from(*i) {
            Ok(small) => Val::Int(small),
            Err(_) => Val::Long(*i),
        },
        Literal::Float(f) => Val::Double(*f),
        Literal::Str(s) => Val::Str(Cow::Owned(s.clone())),
    }
}

/// Static type of an expression, for ES's verifier checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Num,
    Bool,
    Null,
    Unknown,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Str => "string",
            Kind::Num => "number",
            Kind::Bool => "boolean",
            Kind::Null => "null",
            Kind::Unknown => "unknown",
        }
    }
}

fn reversed(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::LtEq => CmpOp::GtEq,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::GtEq => CmpOp::LtEq,
        other => other,
    }
}

fn fn_name(f: Function) -> &'static str {
    match f {
        Function::Add => "add",
        Function::Between => "between",
        Function::CidrMatch => "cidrMatch",
        Function::Concat => "concat",
        Function::Divide => "divide",
        Function::EndsWith => "endsWith",
        Function::IndexOf => "indexOf",
        Function::Length => "length",
        Function::Modulo => "modulo",
        Function::Multiply => "multiply",
        Function::Number => "number",
        Function::StartsWith => "startsWith",
        Function::String => "string",
        Function::StringContains => "stringContains",
        Function::Substring => "substring",
        Function::Subtract => "subtract",
        Function::Wildcard => "wildcard",
    }
}

fn is_boolean_function(f: Function) -> bool {
    matches!(
        f,
        Function::StartsWith
            | Function::EndsWith
            | Function::StringContains
            | Function::CidrMatch
            | Function::Wildcard
    )
}

fn as_literal(e: &ast::Expr) -> Option<&Literal> {
    match &e.kind {
        ExprKind::Literal(l) => Some(l),
        _ => None,
    }
}

fn as_field(e: &ast::Expr) -> Option<&ast::FieldRef> {
    match &e.kind {
        ExprKind::Field(f) => Some(f),
        _ => None,
    }
}

struct Compiler<'o> {
    opts: &'o EvalOptions,
}

impl Compiler<'_> {
    fn leaf(&self, field: &ast::FieldRef, test: LeafTest) -> Pred {
        Pred::Leaf(Leaf {
            field: field.path.clone(),
            slot: UNBOUND_SLOT,
            ty: self.opts.field_types.get(&field.path),
            test,
            fast: None,
        })
    }

    /// Compiles an expression used as a condition.
    fn pred(&self, e: &ast::Expr) -> Result<Pred, CompileError> {
        match &e.kind {
            ExprKind::Literal(Literal::Bool(b)) => Ok(Pred::Const(*b)),
            // A null condition filters everything out (`nullSafeFilter`).
            ExprKind::Literal(Literal::Null) => Ok(Pred::Const(false)),
            ExprKind::Literal(_) | ExprKind::Arith { .. } | ExprKind::Neg(_) => err(
                &e.span,
                "Condition expression needs to be boolean, found a non-boolean value",
            ),
            ExprKind::Field(f) => err(
                &e.span,
                format!(
                    "Condition expression needs to be boolean; compare field [{}] with a value",
                    f.path
                ),
            ),
            ExprKind::Not(inner) => Ok(Pred::Not(Box::new(self.pred(inner)?))),
            ExprKind::And(l, r) => Ok(Pred::And(vec![self.pred(l)?, self.pred(r)?])),
            ExprKind::Or(l, r) => Ok(Pred::Or(vec![self.pred(l)?, self.pred(r)?])),
            ExprKind::Compare { op, left, right } => self.compare(e, *op, left, right),
            ExprKind::In {
                value,
                list,
                negated,
                insensitive,
            } => {
                let p = self.in_list(e, value, list, *insensitive)?;
                Ok(if *negated { Pred::Not(Box::new(p)) } else { p })
            }
            ExprKind::Pattern {
                value,
                kind,
                insensitive,
                patterns,
            } => self.pattern(e, value, *kind, *insensitive, patterns),
            ExprKind::Call {
                func,
                insensitive,
                args,
            } => self.call_pred(e, *func, *insensitive, args),
        }
    }

    fn compare(
        &self,
        e: &ast::Expr,
        op: CmpOp,
        left: &ast::Expr,
        right: &ast::Expr,
    ) -> Result<Pred, CompileError> {
        // A side that reads no field is a constant: ES's `ConstantFolding` turns it into a
        // literal before `LiteralsOnTheRight`, `ReplaceNullChecks` and the translator's
        // "right side must be foldable" check run (`ES: optimizer/Optimizer.java`,
        // `ES:/x-pack/plugin/ql/.../optimizer/OptimizerRules.java`), so
        // `serial_event_id == number("5")` and `add(0, 1) == serial_event_id` are accepted.
        let left_const = self.constant(left)?;
        let right_const = self.constant(right)?;
        // `x == null` / `x != null` are null checks (`ReplaceNullChecks`, `ES: optimizer/Optimizer.java`).
        let null_side = match (&left_const, &right_const) {
            (_, Some(Val::Null)) => Some(left),
            (Some(Val::Null), _) => Some(right),
            _ => None,
        };
        if let Some(other) = null_side {
            let is_null = match op {
                CmpOp::Eq | CmpOp::NotEq => self.is_null(other)?,
                _ => return err(
                    &e.span,
                    "null can only be compared with == and != (a range over null has no meaning)",
                ),
            };
            return Ok(if op == CmpOp::NotEq {
                Pred::Not(Box::new(is_null))
            } else {
                is_null
            });
        }
        // `LiteralsOnTheRight`.
        let (op, left, right, value) = match (left_const, right_const) {
            (Some(l), None) => (reversed(op), right, left, Some(l)),
            (_, r) => (op, left, right, r),
        };
        let Some(value) = value else {
            return err(
                &right.span,
                "Comparisons against fields are not (currently) supported",
            );
        };
        self.check_comparable(left, right)?;
        if let Some(field) = as_field(left) {
            return Ok(match op {
                CmpOp::Eq => self.leaf(
                    field,
                    LeafTest::Term {
                        value,
                        case_insensitive: false,
                    },
                ),
                CmpOp::NotEq => Pred::Not(Box::new(self.leaf(
                    field,
                    LeafTest::Term {
                        value,
                        case_insensitive: false,
                    },
                ))),
                CmpOp::Lt => self.range(field, None, Some((value, false))),
                CmpOp::LtEq => self.range(field, None, Some((value, true))),
                CmpOp::Gt => self.range(field, Some((value, false)), None),
                CmpOp::GtEq => self.range(field, Some((value, true)), None),
            });
        }
        let mut fields = Vec::new();
        let l = self.sexpr(left, &mut fields)?;
        self.script(
            SExpr::Cmp(op, Box::new(l), Box::new(SExpr::Lit(value))),
            fields,
            &e.span,
        )
    }

    /// The value of `e` when it reads no field (a literal, or a constant expression folded the
    /// way ES's `ConstantFolding` folds it); `None` when it reads a field.
    fn constant(&self, e: &ast::Expr) -> Result<Option<Lit>, CompileError> {
        if let Some(l) = as_literal(e) {
            return Ok(Some(literal_val(l)));
        }
        let mut fields = Vec::new();
        let s = self.sexpr(e, &mut fields)?;
        if !fields.is_empty() {
            return Ok(None);
        }
        match s.eval(&[]) {
            Ok(v) => Ok(Some(v.into_owned())),
            Err(error) => err(&e.span, format!("constant expression fails: {error}")),
        }
    }

    fn check_comparable(&self, left: &ast::Expr, right: &ast::Expr) -> Result<(), CompileError> {
        let (lk, rk) = (self.kind(left), self.kind(right));
        let clash = matches!(
            (lk, rk),
            (Kind::Str, Kind::Num) | (Kind::Num, Kind::Str) | (Kind::Bool, Kind::Num | Kind::Str)
        );
        // A keyword field compared with a number is allowed: ES turns the number into its
        // string; only expressions (not fields) are strictly typed by the verifier.
        if clash && as_field(left).is_none() {
            return err(
                &right.span,
                format!(
                    "cannot compare a [{}] expression with a [{}] value",
                    lk.name(),
                    rk.name()
                ),
            );
        }
        Ok(())
    }

    fn range(
        &self,
        field: &ast::FieldRef,
        lower: Option<(Lit, bool)>,
        upper: Option<(Lit, bool)>,
    ) -> Pred {
        self.leaf(field, LeafTest::Range { lower, upper })
    }

    fn is_null(&self, e: &ast::Expr) -> Result<Pred, CompileError> {
        if let Some(field) = as_field(e) {
            return Ok(Pred::Not(Box::new(self.leaf(field, LeafTest::Exists))));
        }
        let mut fields = Vec::new();
        let s = self.sexpr(e, &mut fields)?;
        self.script(SExpr::IsNull(Box::new(s)), fields, &e.span)
    }

    fn in_list(
        &self,
        e: &ast::Expr,
        value: &ast::Expr,
        list: &[ast::Expr],
        insensitive: bool,
    ) -> Result<Pred, CompileError> {
        let mut lits = Vec::with_capacity(list.len());
        for item in list {
            match as_literal(item) {
                Some(l) => lits.push(literal_val(l)),
                None => {
                    return err(
                        &item.span,
                        "Comparisons against fields are not (currently) supported",
                    )
                }
            }
            self.check_comparable(value, item)?;
        }
        if insensitive {
            // `in~` is a disjunction of case-insensitive equalities.
            let mut alternatives = Vec::with_capacity(lits.len());
            for lit in lits {
                alternatives.push(self.insensitive_eq(e, value, lit)?);
            }
            return Ok(Pred::Or(alternatives));
        }
        if let Some(field) = as_field(value) {
            // Nulls are dropped from the terms (`InComparisons`, `ExpressionTranslators.java`).
            let terms: Vec<Lit> = lits.into_iter().filter(|l| *l != Val::Null).collect();
            if terms.is_empty() {
                return Ok(Pred::Const(false));
            }
            return Ok(self.leaf(field, LeafTest::Terms(terms)));
        }
        let mut fields = Vec::new();
        let s = self.sexpr(value, &mut fields)?;
        self.script(SExpr::In(Box::new(s), lits), fields, &e.span)
    }

    fn insensitive_eq(
        &self,
        e: &ast::Expr,
        value: &ast::Expr,
        lit: Lit,
    ) -> Result<Pred, CompileError> {
        if lit == Val::Null {
            return self.is_null(value);
        }
        if let Some(field) = as_field(value) {
            return Ok(self.leaf(
                field,
                LeafTest::Term {
                    value: lit,
                    case_insensitive: true,
                },
            ));
        }
        let mut fields = Vec::new();
        let s = self.sexpr(value, &mut fields)?;
        self.script(
            SExpr::InsensitiveEq(Box::new(s), Box::new(SExpr::Lit(lit))),
            fields,
            &e.span,
        )
    }

    fn pattern(
        &self,
        e: &ast::Expr,
        value: &ast::Expr,
        kind: PatternKind,
        insensitive: bool,
        patterns: &[String],
    ) -> Result<Pred, CompileError> {
        if self.kind(value) == Kind::Num || self.kind(value) == Kind::Bool {
            return err(&value.span, "pattern operators need a string operand");
        }
        let mut alternatives = Vec::with_capacity(patterns.len());
        for p in patterns {
            let alt = match kind {
                // `:` without wildcards is case-insensitive equality, with them `like~`
                // (`ReplaceWildcards`, `ES: optimizer/Optimizer.java`).
                PatternKind::Seq if !p.contains(['*', '?']) => {
                    self.insensitive_eq(e, value, Val::Str(Cow::Owned(p.clone())))?
                }
                PatternKind::Seq => self.like(e, value, p, true)?,
                PatternKind::Like => self.like(e, value, p, insensitive)?,
                PatternKind::Regex => self.regex(e, value, p, insensitive)?,
            };
            alternatives.push(alt);
        }
        Ok(match alternatives.len() {
            1 => alternatives.pop().unwrap_or(Pred::Const(false)),
            _ => Pred::Or(alternatives),
        })
    }

    fn like(
        &self,
        e: &ast::Expr,
        value: &ast::Expr,
        pattern: &str,
        ci: bool,
    ) -> Result<Pred, CompileError> {
        let lucene = functions::like_to_lucene_wildcard(pattern);
        let regex = functions::lucene_wildcard_to_regex(&lucene, ci);
        if let Some(field) = as_field(value) {
            return Ok(self.leaf(
                field,
                LeafTest::Wildcard {
                    pattern: lucene,
                    case_insensitive: ci,
                    regex,
                },
            ));
        }
        let mut fields = Vec::new();
        let s = self.sexpr(value, &mut fields)?;
        self.script(SExpr::Matches(Box::new(s), regex), fields, &e.span)
    }

    fn regex(
        &self,
        e: &ast::Expr,
        value: &ast::Expr,
        pattern: &str,
        ci: bool,
    ) -> Result<Pred, CompileError> {
        let regex = functions::lucene_regex_to_regex(pattern, ci).map_err(|pe| CompileError {
            message: format!("invalid or unsupported regex [{pattern}]: {}", pe.0),
            span: e.span.clone(),
        })?;
        if let Some(field) = as_field(value) {
            return Ok(self.leaf(
                field,
                LeafTest::Regexp {
                    pattern: pattern.to_owned(),
                    case_insensitive: ci,
                    regex,
                },
            ));
        }
        let mut fields = Vec::new();
        let s = self.sexpr(value, &mut fields)?;
        self.script(SExpr::Matches(Box::new(s), regex), fields, &e.span)
    }

    /// A boolean function used as a condition. Field-plus-constant forms become queries as
    /// ES translates them (`QueryTranslator.java`: startsWith → prefix, endsWith and
    /// stringContains → wildcard built from the **unescaped** constant, cidrMatch → terms,
    /// wildcard → like); everything else is a script.
    fn call_pred(
        &self,
        e: &ast::Expr,
        func: Function,
        ci: bool,
        args: &[ast::Expr],
    ) -> Result<Pred, CompileError> {
        if !is_boolean_function(func) {
            return err(
                &e.span,
                format!(
                    "Condition expression needs to be boolean, found [{}] which returns a non-boolean value",
                    fn_name(func)
                ),
            );
        }
        self.check_call(e, func, ci, args)?;
        let field = args.first().and_then(as_field);
        let const_str = |i: usize| match args.get(i).and_then(as_literal) {
            Some(Literal::Str(s)) => Some(s.clone()),
            _ => None,
        };
        if let Some(field) = field {
            match func {
                Function::StartsWith => {
                    if let Some(prefix) = const_str(1) {
                        return Ok(self.leaf(
                            field,
                            LeafTest::Prefix {
                                prefix,
                                case_insensitive: ci,
                            },
                        ));
                    }
                }
                Function::EndsWith | Function::StringContains => {
                    if let Some(s) = const_str(1) {
                        let pattern = if func == Function::EndsWith {
                            format!("*{s}")
                        } else {
                            format!("*{s}*")
                        };
                        let regex = functions::lucene_wildcard_to_regex(&pattern, ci);
                        return Ok(self.leaf(
                            field,
                            LeafTest::Wildcard {
                                pattern,
                                case_insensitive: ci,
                                regex,
                            },
                        ));
                    }
                }
                Function::CidrMatch => {
                    let cidrs: Option<Vec<Lit>> = (1..args.len())
                        .map(|i| const_str(i).map(|s| Val::Str(Cow::Owned(s))))
                        .collect();
                    if let Some(terms) = cidrs {
                        return Ok(self.leaf(field, LeafTest::Terms(terms)));
                    }
                }
                _ => {}
            }
        }
        if func == Function::Wildcard {
            // A surrogate for `like` over each pattern (`ReplaceSurrogateFunction`).
            let mut alternatives = Vec::new();
            for i in 1..args.len() {
                let Some(p) = const_str(i) else {
                    return err(&args[i].span, "wildcard patterns must be string constants");
                };
                alternatives.push(self.like(e, &args[0], &p, ci)?);
            }
            return Ok(Pred::Or(alternatives));
        }
        let mut fields = Vec::new();
        let s = self.sexpr(e, &mut fields)?;
        self.script(s, fields, &e.span)
    }

    /// Wraps a script expression; a script without fields is folded at compile time, as
    /// ES's `ConstantFolding` does (a failure there is a query error).
    fn script(
        &self,
        expr: SExpr,
        fields: Vec<(String, Option<FieldType>)>,
        span: &Span,
    ) -> Result<Pred, CompileError> {
        if fields.is_empty() {
            return match expr.eval(&[]) {
                Ok(v) => Ok(Pred::Const(v == Val::Bool(true))),
                Err(e) => err(span, format!("constant expression fails: {e}")),
            };
        }
        let slots = vec![UNBOUND_SLOT; fields.len()];
        Ok(Pred::Script(Script {
            expr,
            fields,
            slots,
        }))
    }

    fn kind(&self, e: &ast::Expr) -> Kind {
        match &e.kind {
            ExprKind::Literal(Literal::Null) => Kind::Null,
            ExprKind::Literal(Literal::Bool(_)) => Kind::Bool,
            ExprKind::Literal(Literal::Int(_) | Literal::Float(_)) => Kind::Num,
            ExprKind::Literal(Literal::Str(_)) => Kind::Str,
            ExprKind::Field(f) => match self.opts.field_types.get(&f.path) {
                Some(FieldType::Keyword { .. } | FieldType::Ip) => Kind::Str,
                Some(FieldType::Long | FieldType::Double) => Kind::Num,
                Some(FieldType::Boolean) => Kind::Bool,
                Some(FieldType::Date) | None => Kind::Unknown,
            },
            ExprKind::Arith { .. } | ExprKind::Neg(_) => Kind::Num,
            ExprKind::Not(_)
            | ExprKind::And(..)
            | ExprKind::Or(..)
            | ExprKind::Compare { .. }
            | ExprKind::In { .. }
            | ExprKind::Pattern { .. } => Kind::Bool,
            ExprKind::Call { func, .. } => match func {
                Function::Add
                | Function::Subtract
                | Function::Multiply
                | Function::Divide
                | Function::Modulo
                | Function::IndexOf
                | Function::Length
                | Function::Number => Kind::Num,
                Function::Between | Function::Concat | Function::String | Function::Substring => {
                    Kind::Str
                }
                _ => Kind::Bool,
            },
        }
    }

    fn expect(
        &self,
        func: Function,
        idx: usize,
        arg: &ast::Expr,
        want: Kind,
    ) -> Result<(), CompileError> {
        let got = self.kind(arg);
        if got == want || got == Kind::Null || got == Kind::Unknown {
            return Ok(());
        }
        err(
            &arg.span,
            format!(
                "argument {} of [{}] must be [{}], found [{}]",
                idx + 1,
                fn_name(func),
                want.name(),
                got.name()
            ),
        )
    }

    /// ES's verifier checks for a function call: arity, `~` support, argument types, and
    /// which arguments must be constants.
    fn check_call(
        &self,
        e: &ast::Expr,
        func: Function,
        ci: bool,
        args: &[ast::Expr],
    ) -> Result<(), CompileError> {
        let (min, max): (usize, usize) = match func {
            Function::Length | Function::String => (1, 1),
            Function::Number => (1, 2),
            Function::Add
            | Function::Subtract
            | Function::Multiply
            | Function::Divide
            | Function::Modulo
            | Function::EndsWith
            | Function::StartsWith
            | Function::StringContains => (2, 2),
            Function::IndexOf | Function::Substring => (2, 3),
            Function::Between => (3, 4),
            Function::CidrMatch | Function::Wildcard => (2, usize::MAX),
            Function::Concat => (1, usize::MAX),
        };
        let name = fn_name(func);
        if args.len() < min || args.len() > max {
            return err(
                &e.span,
                format!(
                    "function [{name}] takes {min}..{max} arguments, got {}",
                    args.len()
                ),
            );
        }
        let ci_ok = matches!(
            func,
            Function::Between
                | Function::EndsWith
                | Function::IndexOf
                | Function::StartsWith
                | Function::StringContains
                | Function::Wildcard
        );
        if ci && !ci_ok {
            return err(
                &e.span,
                format!("function [{name}] does not support the `~` modifier"),
            );
        }
        for (i, arg) in args.iter().enumerate() {
            let want = match (func, i) {
                (Function::Concat | Function::String, _) => continue,
                (
                    Function::Add
                    | Function::Subtract
                    | Function::Multiply
                    | Function::Divide
                    | Function::Modulo,
                    _,
                ) => Kind::Num,
                (Function::Between, 3) => Kind::Bool,
                (Function::IndexOf, 2) | (Function::Substring, 1 | 2) | (Function::Number, 1) => {
                    Kind::Num
                }
                _ => Kind::Str,
            };
            self.expect(func, i, arg, want)?;
        }
        let must_be_const = |i: usize| -> Result<(), CompileError> {
            match args.get(i) {
                Some(a) if as_literal(a).is_none() => err(
                    &a.span,
                    format!("argument {} of [{name}] must be a constant", i + 1),
                ),
                _ => Ok(()),
            }
        };
        match func {
            Function::Between => must_be_const(3)?,
            Function::Number => must_be_const(1)?,
            Function::CidrMatch | Function::Wildcard => {
                for i in 1..args.len() {
                    must_be_const(i)?;
                }
            }
            _ => {}
        }
        if func == Function::CidrMatch {
            for a in &args[1..] {
                if let Some(Literal::Str(s)) = as_literal(a) {
                    if parse_cidr(s).is_none() {
                        return err(&a.span, format!("[{s}] is not a valid CIDR block"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Compiles an expression evaluated inside a script.
    fn sexpr(
        &self,
        e: &ast::Expr,
        fields: &mut Vec<(String, Option<FieldType>)>,
    ) -> Result<SExpr, CompileError> {
        Ok(match &e.kind {
            ExprKind::Literal(l) => SExpr::Lit(literal_val(l)),
            ExprKind::Field(f) => {
                // One slot per occurrence: `multiValueDocValuesRewrite` iterates each
                // `docValue` call separately, even for the same field.
                fields.push((f.path.clone(), self.opts.field_types.get(&f.path)));
                SExpr::Slot(fields.len() - 1)
            }
            ExprKind::Not(inner) => SExpr::Not(Box::new(self.sexpr(inner, fields)?)),
            ExprKind::And(l, r) => SExpr::And(
                Box::new(self.sexpr(l, fields)?),
                Box::new(self.sexpr(r, fields)?),
            ),
            ExprKind::Or(l, r) => SExpr::Or(
                Box::new(self.sexpr(l, fields)?),
                Box::new(self.sexpr(r, fields)?),
            ),
            ExprKind::Compare { op, left, right } => {
                // Constant sides are folded first, as in `compare`.
                let left_const = self.constant(left)?;
                let right_const = self.constant(right)?;
                let null_side = match (&left_const, &right_const) {
                    (_, Some(Val::Null)) => Some(left),
                    (Some(Val::Null), _) => Some(right),
                    _ => None,
                };
                if let Some(other) = null_side {
                    let is_null = SExpr::IsNull(Box::new(self.sexpr(other, fields)?));
                    return Ok(match op {
                        CmpOp::Eq => is_null,
                        CmpOp::NotEq => SExpr::Not(Box::new(is_null)),
                        _ => return err(&e.span, "null can only be compared with == and !="),
                    });
                }
                if right_const.is_none() && left_const.is_none() {
                    return err(
                        &right.span,
                        "Comparisons against fields are not (currently) supported",
                    );
                }
                let mut side = |c: Option<Lit>, x: &ast::Expr| match c {
                    Some(v) => Ok(SExpr::Lit(v)),
                    None => self.sexpr(x, fields),
                };
                let l = side(left_const, left)?;
                let r = side(right_const, right)?;
                SExpr::Cmp(*op, Box::new(l), Box::new(r))
            }
            ExprKind::In {
                value,
                list,
                negated,
                insensitive,
            } => {
                let v = self.sexpr(value, fields)?;
                let mut lits = Vec::new();
                for item in list {
                    match as_literal(item) {
                        Some(l) => lits.push(literal_val(l)),
                        None => {
                            return err(
                                &item.span,
                                "Comparisons against fields are not (currently) supported",
                            )
                        }
                    }
                }
                let test = if *insensitive {
                    let mut acc: Option<SExpr> = None;
                    for lit in lits {
                        let eq =
                            SExpr::InsensitiveEq(Box::new(v.clone()), Box::new(SExpr::Lit(lit)));
                        acc = Some(match acc {
                            None => eq,
                            Some(prev) => SExpr::Or(Box::new(prev), Box::new(eq)),
                        });
                    }
                    acc.unwrap_or(SExpr::Lit(Val::Bool(false)))
                } else {
                    SExpr::In(Box::new(v), lits)
                };
                if *negated {
                    SExpr::Not(Box::new(test))
                } else {
                    test
                }
            }
            ExprKind::Pattern {
                value,
                kind,
                insensitive,
                patterns,
            } => {
                let v = self.sexpr(value, fields)?;
                let mut acc: Option<SExpr> = None;
                for p in patterns {
                    let one = match kind {
                        PatternKind::Seq if !p.contains(['*', '?']) => SExpr::InsensitiveEq(
                            Box::new(v.clone()),
                            Box::new(SExpr::Lit(Val::Str(Cow::Owned(p.clone())))),
                        ),
                        PatternKind::Seq | PatternKind::Like => {
                            let ci = *insensitive || *kind == PatternKind::Seq;
                            let lucene = functions::like_to_lucene_wildcard(p);
                            SExpr::Matches(
                                Box::new(v.clone()),
                                functions::lucene_wildcard_to_regex(&lucene, ci),
                            )
                        }
                        PatternKind::Regex => {
                            let re = functions::lucene_regex_to_regex(p, *insensitive).map_err(
                                |pe| CompileError {
                                    message: format!(
                                        "invalid or unsupported regex [{p}]: {}",
                                        pe.0
                                    ),
                                    span: e.span.clone(),
                                },
                            )?;
                            SExpr::Matches(Box::new(v.clone()), re)
                        }
                    };
                    acc = Some(match acc {
                        None => one,
                        Some(prev) => SExpr::Or(Box::new(prev), Box::new(one)),
                    });
                }
                acc.unwrap_or(SExpr::Lit(Val::Bool(false)))
            }
            ExprKind::Arith { op, left, right } => {
                for side in [left, right] {
                    let k = self.kind(side);
                    if matches!(k, Kind::Str | Kind::Bool) {
                        return err(
                            &side.span,
                            format!("arithmetic needs numbers, found [{}]", k.name()),
                        );
                    }
                }
                SExpr::Arith(
                    arith_of(*op),
                    Box::new(self.sexpr(left, fields)?),
                    Box::new(self.sexpr(right, fields)?),
                )
            }
            ExprKind::Neg(inner) => {
                if matches!(self.kind(inner), Kind::Str | Kind::Bool) {
                    return err(&inner.span, "unary minus needs a number");
                }
                SExpr::Neg(Box::new(self.sexpr(inner, fields)?))
            }
            ExprKind::Call {
                func,
                insensitive,
                args,
            } => self.call_sexpr(e, *func, *insensitive, args, fields)?,
        })
    }

    fn call_sexpr(
        &self,
        e: &ast::Expr,
        func: Function,
        ci: bool,
        args: &[ast::Expr],
        fields: &mut Vec<(String, Option<FieldType>)>,
    ) -> Result<SExpr, CompileError> {
        self.check_call(e, func, ci, args)?;
        let arith = |op: Arith, fields: &mut Vec<_>| -> Result<SExpr, CompileError> {
            Ok(SExpr::Arith(
                op,
                Box::new(self.sexpr(&args[0], fields)?),
                Box::new(self.sexpr(&args[1], fields)?),
            ))
        };
        let call = match func {
            Function::Add => return arith(Arith::Add, fields),
            Function::Subtract => return arith(Arith::Sub, fields),
            Function::Multiply => return arith(Arith::Mul, fields),
            Function::Divide => return arith(Arith::Div, fields),
            Function::Modulo => return arith(Arith::Mod, fields),
            Function::Wildcard => {
                let v = self.sexpr(&args[0], fields)?;
                let mut acc: Option<SExpr> = None;
                for a in &args[1..] {
                    let Some(Literal::Str(p)) = as_literal(a) else {
                        return err(&a.span, "wildcard patterns must be string constants");
                    };
                    let lucene = functions::like_to_lucene_wildcard(p);
                    let one = SExpr::Matches(
                        Box::new(v.clone()),
                        functions::lucene_wildcard_to_regex(&lucene, ci),
                    );
                    acc = Some(match acc {
                        None => one,
                        Some(prev) => SExpr::Or(Box::new(prev), Box::new(one)),
                    });
                }
                return Ok(acc.unwrap_or(SExpr::Lit(Val::Bool(false))));
            }
            Function::Between => Call::Between {
                greedy: matches!(args.get(3).and_then(as_literal), Some(Literal::Bool(true))),
                ci,
            },
            Function::CidrMatch => {
                let mut cidrs = Vec::new();
                for a in &args[1..] {
                    match as_literal(a) {
                        Some(Literal::Str(s)) => cidrs.extend(parse_cidr(s)),
                        _ => return err(&a.span, "cidrMatch addresses must be string constants"),
                    }
                }
                let v = self.sexpr(&args[0], fields)?;
                return Ok(SExpr::Call(Call::CidrMatch(cidrs), vec![v]));
            }
            Function::Concat => Call::Concat,
            Function::EndsWith => Call::EndsWith { ci },
            Function::IndexOf => Call::IndexOf { ci },
            Function::Length => Call::Length,
            Function::Number => Call::Number,
            Function::StartsWith => Call::StartsWith { ci },
            Function::String => Call::String,
            Function::StringContains => Call::StringContains { ci },
            Function::Substring => Call::Substring,
        };
        let n = if matches!(call, Call::Between { .. }) {
            3
        } else {
            args.len()
        };
        let mut compiled = Vec::with_capacity(n);
        for a in &args[..n] {
            compiled.push(self.sexpr(a, fields)?);
        }
        Ok(SExpr::Call(call, compiled))
    }
}

fn arith_of(op: ast::ArithOp) -> Arith {
    match op {
        ast::ArithOp::Add => Arith::Add,
        ast::ArithOp::Sub => Arith::Sub,
        ast::ArithOp::Mul => Arith::Mul,
        ast::ArithOp::Div => Arith::Div,
        ast::ArithOp::Mod => Arith::Mod,
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

fn eval_pred<D: Document + ?Sized>(pred: &Pred, source: &D) -> Result<bool, EvalError> {
    match pred {
        Pred::Const(b) => Ok(*b),
        Pred::And(ps) => {
            for p in ps {
                if !eval_pred(p, source)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Pred::Or(ps) => {
            for p in ps {
                if eval_pred(p, source)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Pred::Not(p) => Ok(!eval_pred(p, source)?),
        Pred::Leaf(leaf) => Ok(leaf_matches(leaf, source)),
        Pred::Script(s) => s.matches(source),
    }
}

/// The string terms a case-sensitive `term`/`terms` leaf on a keyword (or untyped) field
/// compares a `_source` string with: for such a string the general path ends in a byte
/// comparison with the literal's string form, so this answers the same without converting.
fn keyword_terms(leaf: &Leaf) -> Option<KeywordTerms> {
    let ignore_above = match leaf.ty {
        None => None,
        Some(FieldType::Keyword { ignore_above }) => ignore_above,
        Some(_) => return None,
    };
    fn as_str(lit: &Lit) -> Option<String> {
        match lit {
            Val::Str(s) => Some(s.to_string()),
            _ => None,
        }
    }
    let terms = match &leaf.test {
        LeafTest::Term {
            value,
            case_insensitive: false,
        } => vec![as_str(value)?],
        LeafTest::Terms(values) => values.iter().map(as_str).collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    Some(KeywordTerms {
        terms,
        ignore_above,
    })
}

fn leaf_matches<D: Document + ?Sized>(leaf: &Leaf, source: &D) -> bool {
    if let Some(fast) = &leaf.fast {
        return source.field(&leaf.field, leaf.slot).any(|raw| match raw {
            crate::event::Scalar::Str(s) => {
                // `indexed_scalar`: a keyword over `ignore_above` UTF-16 units is not indexed.
                let indexed = fast.ignore_above.is_none_or(|limit| {
                    s.len() <= limit as usize || utf16_len(s) <= limit as usize
                });
                indexed
                    && fast
                        .terms
                        .iter()
                        .any(|t| crate::event::same_bytes(t.as_bytes(), s.as_bytes()))
            }
            other => leaf_value_matches(leaf, other),
        });
    }
    source
        .field(&leaf.field, leaf.slot)
        .any(|raw| leaf_value_matches(leaf, raw))
}

fn leaf_value_matches(leaf: &Leaf, raw: crate::event::Scalar<'_>) -> bool {
    {
        let Some(v) = indexed_scalar(raw, leaf.ty) else {
            return false;
        };
        let is_ip = leaf.ty == Some(FieldType::Ip);
        match &leaf.test {
            LeafTest::Exists => true,
            LeafTest::Term {
                value,
                case_insensitive,
            } => term_matches(&v, value, *case_insensitive, is_ip),
            LeafTest::Terms(values) => values.iter().any(|t| term_matches(&v, t, false, is_ip)),
            LeafTest::Range { lower, upper } => {
                let lower_ok = lower.as_ref().is_none_or(|(lit, inclusive)| {
                    matches!(leaf_order(&v, lit, is_ip), Some(Ordering::Greater))
                        || (*inclusive && leaf_order(&v, lit, is_ip) == Some(Ordering::Equal))
                });
                let upper_ok = upper.as_ref().is_none_or(|(lit, inclusive)| {
                    matches!(leaf_order(&v, lit, is_ip), Some(Ordering::Less))
                        || (*inclusive && leaf_order(&v, lit, is_ip) == Some(Ordering::Equal))
                });
                lower_ok && upper_ok
            }
            LeafTest::Prefix {
                prefix,
                case_insensitive,
            } => match &v {
                Val::Str(s) if !is_ip => {
                    if *case_insensitive {
                        starts_with_ci(s, prefix)
                    } else {
                        s.starts_with(prefix.as_str())
                    }
                }
                _ => false,
            },
            LeafTest::Wildcard { regex, .. } | LeafTest::Regexp { regex, .. } => match &v {
                Val::Str(s) if !is_ip => regex.is_match(s),
                _ => false,
            },
        }
    }
}

/// A literal converted to a number for a numeric field (ES parses `"7"` for a long field).
fn lit_as_number(lit: &Lit) -> Option<Val<'static>> {
    match lit {
        Val::Int(_) | Val::Long(_) | Val::Double(_) => Some(lit.clone()),
        Val::Str(s) => {
            let t = s.trim();
            t.parse::<i64>().map(Val::Long).ok().or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Val::Double)
            })
        }
        _ => None,
    }
}

fn lit_as_date(lit: &Lit) -> Option<i64> {
    match lit {
        Val::Str(s) => parse_iso_timestamp(s)
            .or_else(|| crate::event::parse_timestamp_value(&Value::String(s.to_string()))),
        Val::Int(i) => i64::from(*i).checked_mul(1_000_000),
        Val::Long(i) => i.checked_mul(1_000_000),
        _ => None,
    }
}

fn term_matches(v: &Val, lit: &Lit, ci: bool, is_ip: bool) -> bool {
    if is_ip {
        let (Val::Str(value), Val::Str(term)) = (v, lit) else {
            return false;
        };
        let Ok(addr) = value.parse::<IpAddr>() else {
            return false;
        };
        let n = ip_to_u128(addr);
        // A term on an ip field accepts a CIDR block.
        return match parse_cidr(term) {
            Some((net, mask)) => n & mask == net,
            None => term.parse::<IpAddr>().is_ok_and(|t| ip_to_u128(t) == n),
        };
    }
    leaf_order_ci(v, lit, ci) == Some(Ordering::Equal)
}

fn leaf_order(v: &Val, lit: &Lit, is_ip: bool) -> Option<Ordering> {
    if is_ip {
        let (Val::Str(value), Val::Str(term)) = (v, lit) else {
            return None;
        };
        let a = ip_to_u128(value.parse().ok()?);
        let b = ip_to_u128(term.parse().ok()?);
        return Some(a.cmp(&b));
    }
    leaf_order_ci(v, lit, false)
}

/// How an indexed value orders against a query literal, after ES converts the literal to
/// the field's type: keyword → the literal's string form, compared by UTF-8 bytes (Lucene
/// term order); numbers → real-number order; booleans; dates (literal parsed as a date).
fn leaf_order_ci(v: &Val, lit: &Lit, ci: bool) -> Option<Ordering> {
    match v {
        Val::Str(s) => {
            let term = match lit {
                Val::Str(t) => Cow::Borrowed(t.as_ref()),
                other => other.java_string()?,
            };
            if ci {
                return eq_ci(&term, s).then_some(Ordering::Equal);
            }
            Some(s.as_bytes().cmp(term.as_bytes()))
        }
        Val::Int(_) | Val::Long(_) | Val::Double(_) => compare_numbers(v, &lit_as_number(lit)?),
        Val::Bool(b) => {
            let t = match lit {
                Val::Bool(t) => *t,
                Val::Str(s) if s == "true" => true,
                Val::Str(s) if s == "false" => false,
                _ => return None,
            };
            Some(b.cmp(&t))
        }
        Val::Date(n) => Some(n.cmp(&lit_as_date(lit)?)),
        Val::Null => None,
    }
}

impl Script {
    fn slot(&self, i: usize) -> usize {
        self.slots.get(i).copied().unwrap_or(UNBOUND_SLOT)
    }

    fn matches<D: Document + ?Sized>(&self, source: &D) -> Result<bool, EvalError> {
        let is_true = |v: Val| v == Val::Bool(true);
        if self.fields.len() == 1 {
            // The common case, without allocation.
            let (path, ty) = &self.fields[0];
            let mut any_value = false;
            for raw in source.field(path, self.slot(0)) {
                if let Some(v) = indexed_scalar(raw, *ty) {
                    any_value = true;
                    if is_true(self.expr.eval(std::slice::from_ref(&v))?) {
                        return Ok(true);
                    }
                }
            }
            if any_value {
                return Ok(false);
            }
            return Ok(is_true(self.expr.eval(&[Val::Null])?));
        }
        let columns: Vec<Vec<Val>> = self
            .fields
            .iter()
            .enumerate()
            .map(|(i, (path, ty))| {
                let vals: Vec<Val> = source
                    .field(path, self.slot(i))
                    .filter_map(|raw| indexed_scalar(raw, *ty))
                    .collect();
                if vals.is_empty() {
                    vec![Val::Null]
                } else {
                    vals
                }
            })
            .collect();
        let mut env = Vec::with_capacity(columns.len());
        self.any_combination(&columns, &mut env)
    }

    fn any_combination<'a>(
        &self,
        columns: &[Vec<Val<'a>>],
        env: &mut Vec<Val<'a>>,
    ) -> Result<bool, EvalError> {
        let depth = env.len();
        if depth == columns.len() {
            return Ok(self.expr.eval(env)? == Val::Bool(true));
        }
        for v in &columns[depth] {
            env.push(v.clone());
            let hit = self.any_combination(columns, env);
            env.pop();
            if hit? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn three_and(a: Val, b: Val) -> Val<'static> {
    match (a, b) {
        (Val::Bool(false), _) | (_, Val::Bool(false)) => Val::Bool(false),
        (Val::Bool(true), Val::Bool(true)) => Val::Bool(true),
        _ => Val::Null,
    }
}

fn three_or(a: Val, b: Val) -> Val<'static> {
    match (a, b) {
        (Val::Bool(true), _) | (_, Val::Bool(true)) => Val::Bool(true),
        (Val::Bool(false), Val::Bool(false)) => Val::Bool(false),
        _ => Val::Null,
    }
}

fn bool_or_null(b: Option<bool>) -> Val<'static> {
    b.map_or(Val::Null, Val::Bool)
}

impl SExpr {
    fn eval<'a>(&self, env: &[Val<'a>]) -> Result<Val<'a>, EvalError> {
        Ok(match self {
            SExpr::Lit(v) => v.clone(),
            SExpr::Slot(i) => env.get(*i).cloned().unwrap_or(Val::Null),
            SExpr::Arith(op, l, r) => functions::arith(*op, &l.eval(env)?, &r.eval(env)?)?,
            SExpr::Neg(v) => functions::negate(&v.eval(env)?)?,
            SExpr::Cmp(op, l, r) => {
                let ord = script_compare(&l.eval(env)?, &r.eval(env)?);
                bool_or_null(ord.map(|o| match op {
                    CmpOp::Eq => o == Ordering::Equal,
                    CmpOp::NotEq => o != Ordering::Equal,
                    CmpOp::Lt => o == Ordering::Less,
                    CmpOp::LtEq => o != Ordering::Greater,
                    CmpOp::Gt => o == Ordering::Greater,
                    CmpOp::GtEq => o != Ordering::Less,
                }))
            }
            SExpr::InsensitiveEq(l, r) => match (l.eval(env)?, r.eval(env)?) {
                (Val::Null, _) | (_, Val::Null) => Val::Null,
                (Val::Str(a), Val::Str(b)) => Val::Bool(eq_ci(&b, &a)),
                (a, b) => bool_or_null(script_compare(&a, &b).map(|o| o == Ordering::Equal)),
            },
            SExpr::In(v, list) => {
                // QL `InProcessor`: true if any equal, null if any comparison was null.
                let v = v.eval(env)?;
                let mut result = Val::Bool(false);
                for item in list {
                    match script_compare(&v, item) {
                        Some(Ordering::Equal) => return Ok(Val::Bool(true)),
                        Some(_) => {}
                        None => result = Val::Null,
                    }
                }
                result
            }
            SExpr::IsNull(v) => Val::Bool(v.eval(env)? == Val::Null),
            SExpr::Matches(v, re) => match v.eval(env)? {
                Val::Null => Val::Null,
                Val::Str(s) => Val::Bool(re.is_match(&s)),
                other => Val::Bool(other.java_string().is_some_and(|s| re.is_match(&s))),
            },
            SExpr::Not(v) => match v.eval(env)? {
                Val::Bool(b) => Val::Bool(!b),
                _ => Val::Null,
            },
            SExpr::And(l, r) => three_and(l.eval(env)?, r.eval(env)?),
            SExpr::Or(l, r) => three_or(l.eval(env)?, r.eval(env)?),
            SExpr::Call(call, args) => {
                let mut vals: [Val<'a>; 3] = [Val::Null, Val::Null, Val::Null];
                if !matches!(call, Call::Concat) {
                    for (slot, a) in vals.iter_mut().zip(args) {
                        *slot = a.eval(env)?;
                    }
                }
                match call {
                    Call::Between { greedy, ci } => {
                        functions::between(&vals[0], &vals[1], &vals[2], *greedy, *ci)?
                    }
                    Call::CidrMatch(cidrs) => functions::cidr_match(&vals[0], cidrs)?,
                    Call::Concat => {
                        let mut all = Vec::with_capacity(args.len());
                        for a in args {
                            all.push(a.eval(env)?);
                        }
                        functions::concat(&all)
                    }
                    Call::EndsWith { ci } => functions::ends_with(&vals[0], &vals[1], *ci)?,
                    Call::IndexOf { ci } => functions::index_of(&vals[0], &vals[1], &vals[2], *ci)?,
                    Call::Length => functions::length(&vals[0])?,
                    Call::Number => functions::number(&vals[0], &vals[1])?,
                    Call::StartsWith { ci } => functions::starts_with(&vals[0], &vals[1], *ci)?,
                    Call::String => functions::to_string(&vals[0]),
                    Call::StringContains { ci } => {
                        functions::string_contains(&vals[0], &vals[1], *ci)?
                    }
                    Call::Substring => functions::substring(&vals[0], &vals[1], &vals[2])?,
                }
            }
        })
    }
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;
    use crate::eql::parser::parse;
    use proptest::prelude::*;

    fn filter(query: &str, types: &FieldTypes) -> CompiledFilter {
        let ast::Query::Event(f) = parse(query).expect("query parses") else {
            panic!("an event query");
        };
        let opts = EvalOptions {
            event_category_field: "event.category".into(),
            field_types: types.clone(),
        };
        CompiledFilter::compile(&f, &opts).expect("query compiles")
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::from("node")),
            Just(Value::from("install")),
            Just(Value::from("Node")),
            Just(Value::from("exec")),
            Just(Value::from("7")),
            Just(Value::from(7)),
            Just(Value::from(true)),
            Just(Value::from("true")),
            Just(Value::Null),
            // Over an ignore_above of 4 in bytes, and in UTF-16 units or not.
            Just(Value::from("nodes")),
            Just(Value::from("nöd")),
            Just(Value::from("ñöñöñ")),
        ]
    }

    fn field() -> impl Strategy<Value = Value> {
        prop_oneof![
            scalar(),
            prop::collection::vec(scalar(), 0..4).prop_map(Value::Array),
        ]
    }

    proptest! {
        /// The evaluated copy (nested `and`/`or` spliced, keyword terms compared as bytes)
        /// answers exactly as the compiled tree evaluated as it is.
        #[test]
        fn the_evaluated_copy_answers_as_the_compiled_tree(
            a in field(), b in field(), c in field(), category in field(), keyword in any::<bool>()
        ) {
            let mut types = FieldTypes::new();
            if keyword {
                types.insert("a", FieldType::Keyword { ignore_above: Some(4) });
                types.insert("b", FieldType::Keyword { ignore_above: None });
            }
            let doc = serde_json::json!({"event": {"category": category}, "a": a, "b": b, "c": c});
            for query in [
                r#"process where a == "node" and b in ("install", "7", "true") and c == "exec""#,
                r#"any where a == "node" or b == "nöd" or (c in ("exec", "ñöñöñ") and a != "x")"#,
                r#"any where not (a == "nodes" and b == "install") or c : "NODE""#,
                r#"any where a == 7 and b == true or c == "7""#,
            ] {
                let f = filter(query, &types);
                prop_assert_eq!(
                    eval_pred(&f.flat, &doc).ok(),
                    eval_pred(&f.pred, &doc).ok(),
                    "{} on {}", query, doc
                );
            }
        }
    }
}

#[cfg(test)]
mod test_order_tests {
    use super::*;
    use crate::eql::parser::parse;
    use serde_json::json;

    fn filter(query: &str) -> CompiledFilter {
        let ast::Query::Event(f) = parse(query).expect("query parses") else {
            panic!("an event query");
        };
        let opts = EvalOptions {
            event_category_field: "event.category".into(),
            field_types: FieldTypes::default(),
        };
        CompiledFilter::compile(&f, &opts).expect("query compiles")
    }

    /// Leaves moved ahead change no result, only the order they are tested in.
    #[test]
    fn testing_some_leaves_first_changes_no_result() {
        let query = r#"process where a == "x" and (b == "y" and c : "z*") and d in ("1", "2")"#;
        let plain = filter(query);
        let mut ordered = filter(query);
        ordered.test_first(|id| id.contains("\"c\"") || id.contains("\"d\""));
        let ids = ordered.top_leaf_identities();
        assert_eq!(ids.len(), 5, "{ids:?}");
        assert!(
            ids[0].contains("\"c\"") && ids[1].contains("\"d\""),
            "{ids:?}"
        );
        assert_eq!(
            ids[2..]
                .iter()
                .map(|i| i.split(' ').next().unwrap_or_default())
                .collect::<Vec<_>>(),
            ["\"event.category\"", "\"a\"", "\"b\""]
        );
        let values = [
            json!("x"),
            json!("y"),
            json!("zz"),
            json!("2"),
            json!(null),
            json!(["q", "x"]),
        ];
        let mut docs = 0;
        for a in &values {
            for b in &values {
                for c in &values {
                    for d in &values {
                        for category in ["process", "file"] {
                            let doc = json!({"event": {"category": category}, "a": a, "b": b, "c": c, "d": d});
                            assert_eq!(plain.try_matches(&doc), ordered.try_matches(&doc), "{doc}");
                            docs += usize::from(plain.matches(&doc));
                        }
                    }
                }
            }
        }
        assert!(docs > 0, "some documents match");
    }

    /// With a script among the operands the order stays: a script can fail, and which
    /// operand runs first then decides whether the failure is seen.
    #[test]
    fn an_and_with_a_script_keeps_its_order() {
        let query = r#"process where a == "x" and length(b) > 1 and c == "z""#;
        let mut ordered = filter(query);
        let before = ordered.top_leaf_identities();
        ordered.test_first(|id| id.contains("\"c\""));
        assert_eq!(ordered.top_leaf_identities(), before);
    }
}
