//! Compiles EQL stages into Elasticsearch query DSL for the `_search` that fetches candidate
//! events, plus the `_source` includes the matcher needs.
//!
//! The DSL is produced from the evaluator's compiled [`Pred`] tree, i.e. from the same
//! query/script split ES's own translator makes (`ES: planner/QueryTranslator.java`), so every
//! exact leaf is the query ES would run. Scripts (functions, arithmetic) are not pushed down:
//! they become "match all" and the evaluator re-checks every hit. The invariant is
//! **superset**: whatever the evaluator accepts, the query accepts. Exactness is tracked, and a
//! `not` over an inexact sub-query becomes "match all" too (negating a superset would lose
//! events).

use serde_json::{json, Map, Value};

use super::ast;
use super::eval::{CompileError, CompiledFilter, EvalOptions, LeafTest, Lit, Pred};
use super::value::Val;

/// A query for one filter, and whether it selects exactly what the evaluator accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct PushedQuery {
    /// The query DSL (`{"match_all": {}}` when nothing could be pushed down).
    pub query: Value,
    /// True when the query accepts exactly the evaluator's documents (no scripts involved).
    pub exact: bool,
}

/// Options for the rule's fetch query.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The event time field (`timestamp_field`, default `@timestamp`).
    pub timestamp_field: String,
    /// The optional `tiebreaker_field`.
    pub tiebreaker_field: Option<String>,
    /// Category field and field types, as for the evaluator.
    pub eval: EvalOptions,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            timestamp_field: "@timestamp".to_owned(),
            tiebreaker_field: None,
            eval: EvalOptions::default(),
        }
    }
}

/// The single `_search` body parts that fetch every event a sequence rule needs.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchQuery {
    /// `bool.filter: [time range, bool.should(stages…)]`.
    pub query: Value,
    /// Exactly the fields the rule reads: conditions, category, join keys, timestamp,
    /// tiebreaker; sorted.
    pub source_includes: Vec<String>,
    /// Per stage (then the `until` stage, if any): whether its query is exact.
    pub stages_exact: Vec<bool>,
    /// The time-range filter of the window.
    pub time_range: Value,
    /// Per stage (then the `until` stage, if any): its query, the branches of `query`.
    pub stage_queries: Vec<Value>,
}

impl FetchQuery {
    /// The window's events that match stage `stage` only: what the two-step fetch's key scan
    /// reads. `None` for a stage the rule does not have.
    pub fn stage_only(&self, stage: usize) -> Option<Value> {
        let stage_query = self.stage_queries.get(stage)?;
        Some(json!({"bool": {"filter": [self.time_range.clone(), stage_query.clone()]}}))
    }

    /// [`FetchQuery::query`] with `extra[k]` ANDed into stage `k`'s branch (a stage without an
    /// entry, or with an empty one, is unchanged). Adding filters only narrows a branch.
    pub fn with_stage_filters(&self, extra: &[Vec<Value>]) -> Value {
        let should: Vec<Value> = self
            .stage_queries
            .iter()
            .enumerate()
            .map(|(k, q)| match extra.get(k) {
                Some(clauses) if !clauses.is_empty() => {
                    let mut all = match filter_clauses(q) {
                        Some(inner) => inner.clone(),
                        None => vec![q.clone()],
                    };
                    all.extend(clauses.iter().cloned());
                    json!({"bool": {"filter": all}})
                }
                _ => q.clone(),
            })
            .collect();
        json!({"bool": {"filter": [
            self.time_range.clone(),
            {"bool": {"should": should, "minimum_should_match": 1}}
        ]}})
    }
}

struct Dsl {
    query: Option<Value>,
    exact: bool,
}

fn match_all() -> Value {
    json!({"match_all": {}})
}

fn lit_json(lit: &Lit) -> Value {
    match lit {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Int(i) => json!(i),
        Val::Long(i) => json!(i),
        Val::Double(d) => serde_json::Number::from_f64(*d)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(super::value::java_double_to_string(*d))),
        Val::Str(s) => Value::String(s.to_string()),
        Val::Date(n) => json!(n),
    }
}

fn with_ci(mut body: Map<String, Value>, ci: bool) -> Value {
    if ci {
        body.insert("case_insensitive".into(), Value::Bool(true));
    }
    Value::Object(body)
}

fn leaf_dsl(field: &str, test: &LeafTest) -> Value {
    let value_body = |v: Value| {
        let mut m = Map::new();
        m.insert("value".into(), v);
        m
    };
    match test {
        LeafTest::Exists => json!({"exists": {"field": field}}),
        LeafTest::Term {
            value,
            case_insensitive,
        } => json!({"term": {field: with_ci(value_body(lit_json(value)), *case_insensitive)}}),
        LeafTest::Terms(values) => {
            json!({"terms": {field: values.iter().map(lit_json).collect::<Vec<_>>()}})
        }
        LeafTest::Range { lower, upper } => {
            let mut m = Map::new();
            if let Some((v, inclusive)) = lower {
                m.insert(if *inclusive { "gte" } else { "gt" }.into(), lit_json(v));
            }
            if let Some((v, inclusive)) = upper {
                m.insert(if *inclusive { "lte" } else { "lt" }.into(), lit_json(v));
            }
            json!({"range": {field: m}})
        }
        LeafTest::Prefix {
            prefix,
            case_insensitive,
        } => json!({"prefix": {field: with_ci(value_body(json!(prefix)), *case_insensitive)}}),
        LeafTest::Wildcard {
            pattern,
            case_insensitive,
            ..
        } => json!({"wildcard": {field: with_ci(value_body(json!(pattern)), *case_insensitive)}}),
        LeafTest::Regexp {
            pattern,
            case_insensitive,
            ..
        } => json!({"regexp": {field: with_ci(value_body(json!(pattern)), *case_insensitive)}}),
    }
}

/// The clauses of a pure `bool.filter` query, for flattening nested conjunctions.
fn filter_clauses(q: &Value) -> Option<&Vec<Value>> {
    let bool_q = q.get("bool")?.as_object()?;
    if bool_q.len() != 1 {
        return None;
    }
    bool_q.get("filter")?.as_array()
}

fn translate(pred: &Pred) -> Dsl {
    match pred {
        Pred::Const(true) => Dsl {
            query: None,
            exact: true,
        },
        Pred::Const(false) => Dsl {
            query: Some(json!({"match_none": {}})),
            exact: true,
        },
        Pred::Leaf(leaf) => Dsl {
            query: Some(leaf_dsl(&leaf.field, &leaf.test)),
            exact: true,
        },
        Pred::Script(_) => Dsl {
            query: None,
            exact: false,
        },
        Pred::And(parts) => {
            let mut clauses = Vec::new();
            let mut exact = true;
            for p in parts {
                let d = translate(p);
                exact &= d.exact;
                if let Some(q) = d.query {
                    match filter_clauses(&q) {
                        Some(inner) => clauses.extend(inner.iter().cloned()),
                        None => clauses.push(q),
                    }
                }
            }
            Dsl {
                query: (!clauses.is_empty()).then(|| json!({"bool": {"filter": clauses}})),
                exact,
            }
        }
        Pred::Or(parts) => {
            let mut clauses = Vec::new();
            let mut exact = true;
            let mut matches_all = false;
            for p in parts {
                let d = translate(p);
                exact &= d.exact;
                match d.query {
                    Some(q) => clauses.push(q),
                    None => matches_all = true,
                }
            }
            let query = if matches_all || clauses.is_empty() {
                // An empty disjunction matches nothing; one match-all branch matches all.
                (!matches_all).then(|| json!({"match_none": {}}))
            } else {
                Some(json!({"bool": {"should": clauses, "minimum_should_match": 1}}))
            };
            Dsl { query, exact }
        }
        Pred::Not(inner) => {
            let d = translate(inner);
            if !d.exact {
                // The complement of a superset is a subset: push nothing.
                return Dsl {
                    query: None,
                    exact: false,
                };
            }
            Dsl {
                query: Some(match d.query {
                    None => json!({"match_none": {}}),
                    Some(q) => json!({"bool": {"must_not": [q]}}),
                }),
                exact: true,
            }
        }
    }
}

/// The query for one compiled filter (category test included when compiled with one).
pub fn filter_query(filter: &CompiledFilter) -> PushedQuery {
    let d = translate(filter.pred());
    PushedQuery {
        query: d.query.unwrap_or_else(match_all),
        exact: d.exact,
    }
}

/// The query for one stage: its category term, its condition and `exists` on each
/// non-optional join key (`AddMandatoryJoinKeyFilter`, `ES: optimizer/Optimizer.java`).
pub fn stage_query(stage: &ast::Stage, opts: &EvalOptions) -> Result<PushedQuery, CompileError> {
    let filter = CompiledFilter::compile(&stage.filter, opts)?;
    Ok(stage_query_compiled(&filter, &stage.keys))
}

fn stage_query_compiled(filter: &CompiledFilter, keys: &[ast::KeyField]) -> PushedQuery {
    let d = translate(filter.pred());
    let mut clauses = Vec::new();
    if let Some(q) = d.query {
        match filter_clauses(&q) {
            Some(inner) => clauses.extend(inner.iter().cloned()),
            None => clauses.push(q),
        }
    }
    for key in keys.iter().filter(|k| !k.optional) {
        clauses.push(json!({"exists": {"field": key.field.path}}));
    }
    let query = match clauses.len() {
        0 => match_all(),
        _ => json!({"bool": {"filter": clauses}}),
    };
    PushedQuery {
        query,
        exact: d.exact,
    }
}

/// The fetch query of a sequence rule over the window `[from, to]` (absolute ISO timestamps,
/// both inclusive, as Kibana's `buildTimeRangeFilter` does): the union of every stage
/// (missing-event stages and `until` included, since the matcher must see their events).
pub fn fetch_query(
    sequence: &ast::Sequence,
    opts: &FetchOptions,
    from: &str,
    to: &str,
) -> Result<FetchQuery, CompileError> {
    let mut includes = vec![
        opts.timestamp_field.clone(),
        opts.eval.event_category_field.clone(),
    ];
    includes.extend(opts.tiebreaker_field.iter().cloned());
    let mut should = Vec::new();
    let mut stages_exact = Vec::new();
    for stage in sequence.stages.iter().chain(sequence.until.iter()) {
        let filter = CompiledFilter::compile(&stage.filter, &opts.eval)?;
        includes.extend(filter.referenced_fields());
        includes.extend(stage.keys.iter().map(|k| k.field.path.clone()));
        let pushed = stage_query_compiled(&filter, &stage.keys);
        stages_exact.push(pushed.exact);
        should.push(pushed.query);
    }
    includes.sort();
    includes.dedup();
    let range = json!({"range": {opts.timestamp_field.as_str(): {
        "gte": from,
        "lte": to,
        "format": "strict_date_optional_time"
    }}});
    let query = json!({"bool": {"filter": [
        range.clone(),
        {"bool": {"should": should.clone(), "minimum_should_match": 1}}
    ]}});
    Ok(FetchQuery {
        query,
        source_includes: includes,
        stages_exact,
        time_range: range,
        stage_queries: should,
    })
}
