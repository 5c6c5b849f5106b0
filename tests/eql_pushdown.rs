//! Push-down: the golden fetch query of the shipped rule, and the superset property
//! (`evaluator accepts ⇒ query accepts`; `exact ⇒ equal`) checked with a small interpreter
//! of the generated query-DSL subset written here, independently of the evaluator.

use proptest::prelude::*;
use serde_json::{json, Value};

use seqwatch::eql::ast::{
    CmpOp, EventFilter, Expr, ExprKind, FieldRef, Function, KeyField, Literal, PatternKind,
    Sequence, Stage,
};
use seqwatch::eql::eval::{CompiledFilter, EvalOptions};
use seqwatch::eql::pushdown::{fetch_query, filter_query, FetchOptions};
use seqwatch::event::field_values;

// ----------------------------------------------------------------------------- builders

fn ex(kind: ExprKind) -> Expr {
    Expr { kind, span: 0..0 }
}
fn fref(path: &str) -> FieldRef {
    FieldRef {
        path: path.into(),
        span: 0..0,
    }
}
fn f(path: &str) -> Expr {
    ex(ExprKind::Field(fref(path)))
}
fn s(v: &str) -> Expr {
    ex(ExprKind::Literal(Literal::Str(v.into())))
}
fn int(v: i64) -> Expr {
    ex(ExprKind::Literal(Literal::Int(v)))
}
fn null() -> Expr {
    ex(ExprKind::Literal(Literal::Null))
}
fn cmp(op: CmpOp, l: Expr, r: Expr) -> Expr {
    ex(ExprKind::Compare {
        op,
        left: Box::new(l),
        right: Box::new(r),
    })
}
fn eq(l: Expr, r: Expr) -> Expr {
    cmp(CmpOp::Eq, l, r)
}
fn and(l: Expr, r: Expr) -> Expr {
    ex(ExprKind::And(Box::new(l), Box::new(r)))
}
fn or(l: Expr, r: Expr) -> Expr {
    ex(ExprKind::Or(Box::new(l), Box::new(r)))
}
fn not(e: Expr) -> Expr {
    ex(ExprKind::Not(Box::new(e)))
}
fn in_list(v: Expr, list: Vec<Expr>, negated: bool, insensitive: bool) -> Expr {
    ex(ExprKind::In {
        value: Box::new(v),
        list,
        negated,
        insensitive,
    })
}
fn pat(v: Expr, kind: PatternKind, insensitive: bool, p: &str) -> Expr {
    ex(ExprKind::Pattern {
        value: Box::new(v),
        kind,
        insensitive,
        patterns: vec![p.to_owned()],
    })
}
fn call(func: Function, insensitive: bool, args: Vec<Expr>) -> Expr {
    ex(ExprKind::Call {
        func,
        insensitive,
        args,
    })
}
fn key(path: &str) -> KeyField {
    KeyField {
        field: fref(path),
        optional: false,
    }
}

// ----------------------------------------------------------------------------- golden

fn rule_sequence() -> Sequence {
    let common = || {
        and(
            and(
                eq(f("host.os.type"), s("linux")),
                eq(f("event.type"), s("start")),
            ),
            in_list(
                f("event.action"),
                vec![s("exec"), s("ProcessRollup2")],
                false,
                false,
            ),
        )
    };
    let stage = |condition: Expr, keys: Vec<KeyField>| Stage {
        filter: EventFilter {
            category: Some("process".into()),
            condition,
            span: 0..0,
        },
        keys,
        missing: false,
        span: 0..0,
    };
    Sequence {
        by: vec![key("host.id")],
        maxspan_ms: Some(10_000),
        stages: vec![
            stage(
                and(
                    and(common(), eq(f("process.name"), s("node"))),
                    eq(f("process.args"), s("install")),
                ),
                vec![key("host.id"), key("process.entity_id")],
            ),
            stage(
                and(common(), eq(f("process.parent.name"), s("node"))),
                vec![key("host.id"), key("process.parent.entity_id")],
            ),
        ],
        until: None,
        span: 0..0,
    }
}

#[test]
fn golden_fetch_query_of_the_rule() {
    let q = fetch_query(
        &rule_sequence(),
        &FetchOptions::default(),
        "2026-11-29T10:00:00.000Z",
        "2026-11-29T10:09:00.000Z",
    )
    .expect("rule compiles");
    let common = [
        json!({"term": {"event.category": {"value": "process"}}}),
        json!({"term": {"host.os.type": {"value": "linux"}}}),
        json!({"term": {"event.type": {"value": "start"}}}),
        json!({"terms": {"event.action": ["exec", "ProcessRollup2"]}}),
    ];
    let mut stage0: Vec<Value> = common.to_vec();
    stage0.extend([
        json!({"term": {"process.name": {"value": "node"}}}),
        json!({"term": {"process.args": {"value": "install"}}}),
        json!({"exists": {"field": "host.id"}}),
        json!({"exists": {"field": "process.entity_id"}}),
    ]);
    let mut stage1: Vec<Value> = common.to_vec();
    stage1.extend([
        json!({"term": {"process.parent.name": {"value": "node"}}}),
        json!({"exists": {"field": "host.id"}}),
        json!({"exists": {"field": "process.parent.entity_id"}}),
    ]);
    let expected = json!({"bool": {"filter": [
        {"range": {"@timestamp": {
            "gte": "2026-11-29T10:00:00.000Z",
            "lte": "2026-11-29T10:09:00.000Z",
            "format": "strict_date_optional_time"
        }}},
        {"bool": {
            "should": [{"bool": {"filter": stage0}}, {"bool": {"filter": stage1}}],
            "minimum_should_match": 1
        }}
    ]}});
    assert_eq!(
        q.query,
        expected,
        "got {}",
        serde_json::to_string_pretty(&q.query).unwrap_or_default()
    );
    assert_eq!(
        q.source_includes,
        vec![
            "@timestamp",
            "event.action",
            "event.category",
            "event.type",
            "host.id",
            "host.os.type",
            "process.args",
            "process.entity_id",
            "process.name",
            "process.parent.entity_id",
            "process.parent.name",
        ]
    );
    assert_eq!(q.stages_exact, vec![true, true]);
}

#[test]
fn translations_follow_es_translator() {
    let opts = EvalOptions::default();
    let dsl = |e: Expr| {
        let c = CompiledFilter::compile_condition(&e, &opts).expect("compiles");
        filter_query(&c)
    };
    // QL: planner/ExpressionTranslators.java — NotEquals → NotQuery(TermQuery).
    assert_eq!(
        dsl(cmp(CmpOp::NotEq, f("a"), s("x"))).query,
        json!({"bool": {"must_not": [{"term": {"a": {"value": "x"}}}]}})
    );
    // ES: planner/QueryTranslator.java InsensitiveBinaryComparisons → case-insensitive term.
    assert_eq!(
        dsl(in_list(f("a"), vec![s("x"), s("y")], false, true)).query,
        json!({"bool": {"should": [
            {"term": {"a": {"value": "x", "case_insensitive": true}}},
            {"term": {"a": {"value": "y", "case_insensitive": true}}}
        ], "minimum_should_match": 1}})
    );
    assert_eq!(
        dsl(pat(f("a"), PatternKind::Seq, true, "x*\\y")).query,
        json!({"wildcard": {"a": {"value": "x*\\\\y", "case_insensitive": true}}})
    );
    assert_eq!(
        dsl(pat(f("a"), PatternKind::Regex, false, "[ab]+")).query,
        json!({"regexp": {"a": {"value": "[ab]+"}}})
    );
    assert_eq!(
        dsl(cmp(CmpOp::GtEq, f("n"), int(3))).query,
        json!({"range": {"n": {"gte": 3}}})
    );
    assert_eq!(
        dsl(eq(f("a"), null())).query,
        json!({"bool": {"must_not": [{"exists": {"field": "a"}}]}})
    );
    assert_eq!(
        dsl(call(Function::StartsWith, true, vec![f("a"), s("x")])).query,
        json!({"prefix": {"a": {"value": "x", "case_insensitive": true}}})
    );
    // A script is not pushed down, and neither is a `not` over it.
    let script = || {
        cmp(
            CmpOp::Gt,
            call(Function::Length, false, vec![f("a")]),
            int(2),
        )
    };
    let q = dsl(and(eq(f("a"), s("x")), script()));
    assert_eq!(
        q.query,
        json!({"bool": {"filter": [{"term": {"a": {"value": "x"}}}]}})
    );
    assert!(!q.exact);
    let q = dsl(not(and(eq(f("a"), s("x")), script())));
    assert_eq!(q.query, json!({"match_all": {}}));
    assert!(!q.exact);
    let q = dsl(or(eq(f("a"), s("x")), script()));
    assert_eq!(q.query, json!({"match_all": {}}));
}

// ----------------------------------------------------------------------------- interpreter

/// Evaluates the DSL subset the push-down emits over `_source`, with untyped-field rules:
/// strings compare as keywords (numbers in terms by their JSON text), numbers numerically.
fn interp(q: &Value, doc: &Value) -> bool {
    let (kind, body) = match q.as_object().and_then(|o| o.iter().next()) {
        Some(kv) => kv,
        None => panic!("bad query {q}"),
    };
    let field_body = || -> (String, &Value) {
        let (field, spec) = body
            .as_object()
            .and_then(|o| o.iter().next())
            .expect("field");
        (field.clone(), spec)
    };
    match kind.as_str() {
        "match_all" => true,
        "match_none" => false,
        "bool" => {
            let list = |k: &str| {
                body.get(k)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            list("filter").iter().all(|c| interp(c, doc))
                && list("must_not").iter().all(|c| !interp(c, doc))
                && (body.get("should").is_none() || list("should").iter().any(|c| interp(c, doc)))
        }
        "exists" => {
            let field = body["field"].as_str().expect("field");
            !field_values(doc, field).is_missing()
        }
        "term" => {
            let (field, spec) = field_body();
            let ci = spec.get("case_insensitive") == Some(&json!(true));
            field_values(doc, &field).any(|v| term_eq(v, &spec["value"], ci))
        }
        "terms" => {
            let (field, spec) = field_body();
            let terms = spec.as_array().expect("terms");
            field_values(doc, &field).any(|v| terms.iter().any(|t| term_eq(v, t, false)))
        }
        "range" => {
            let (field, spec) = field_body();
            field_values(doc, &field).any(|v| {
                spec.as_object().expect("range").iter().all(|(op, bound)| {
                    let Some(o) = order(v, bound) else {
                        return false;
                    };
                    match op.as_str() {
                        "gt" => o.is_gt(),
                        "gte" => o.is_ge(),
                        "lt" => o.is_lt(),
                        "lte" => o.is_le(),
                        _ => panic!("range op {op}"),
                    }
                })
            })
        }
        "prefix" | "wildcard" | "regexp" => {
            let (field, spec) = field_body();
            let ci = spec.get("case_insensitive") == Some(&json!(true));
            let p = spec["value"].as_str().expect("pattern").to_owned();
            field_values(doc, &field).any(|v| {
                let Some(text) = v.as_str() else { return false };
                match kind.as_str() {
                    "prefix" => fold(text, ci).starts_with(&fold(&p, ci)),
                    "wildcard" => wildcard(
                        &fold(&p, ci).chars().collect::<Vec<_>>(),
                        &fold(text, ci).chars().collect::<Vec<_>>(),
                    ),
                    // The generated regexps use only syntax Lucene and Rust share.
                    _ => regex::Regex::new(&format!(
                        "^(?:{})$",
                        if ci { format!("(?i){p}") } else { p.clone() }
                    ))
                    .expect("shared regex syntax")
                    .is_match(text),
                }
            })
        }
        other => panic!("unexpected query kind {other}"),
    }
}

fn fold(s: &str, ci: bool) -> String {
    if ci {
        s.to_ascii_lowercase()
    } else {
        s.to_owned()
    }
}

/// Lucene wildcard by backtracking: `*`, `?`, `\` escapes.
fn wildcard(p: &[char], t: &[char]) -> bool {
    match p.first() {
        None => t.is_empty(),
        Some('*') => (0..=t.len()).any(|i| wildcard(&p[1..], &t[i..])),
        Some('?') => !t.is_empty() && wildcard(&p[1..], &t[1..]),
        Some('\\') if p.len() > 1 => t.first() == Some(&p[1]) && wildcard(&p[2..], &t[1..]),
        Some(c) => t.first() == Some(c) && wildcard(&p[1..], &t[1..]),
    }
}

fn term_text(t: &Value) -> String {
    match t {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn term_eq(v: &Value, t: &Value, ci: bool) -> bool {
    match v {
        Value::String(s) => fold(s, ci) == fold(&term_text(t), ci),
        Value::Number(_) => order(v, t) == Some(std::cmp::Ordering::Equal),
        Value::Bool(b) => t == &json!(b) || term_text(t) == b.to_string(),
        _ => false,
    }
}

fn order(v: &Value, t: &Value) -> Option<std::cmp::Ordering> {
    match v {
        Value::String(s) => Some(s.as_bytes().cmp(term_text(t).as_bytes())),
        Value::Number(n) => {
            let x = n.as_f64()?;
            let y = match t {
                Value::Number(m) => m.as_f64()?,
                Value::String(s) => s.parse().ok()?,
                _ => return None,
            };
            x.partial_cmp(&y)
        }
        _ => None,
    }
}

// ----------------------------------------------------------------------------- property

fn arb_str() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "ab", "abc", "A", "Ab", "", "a*", "ba"])
        .prop_map(str::to_owned)
}

fn arb_field_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        arb_str().prop_map(|s| Some(json!(s))),
        prop::collection::vec(arb_str(), 0..3).prop_map(|v| Some(json!(v))),
        (-3i64..6).prop_map(|n| Some(json!(n))),
        (-3i64..6).prop_map(|n| Some(json!(n.to_string()))),
    ]
}

fn arb_doc() -> impl Strategy<Value = Value> {
    (arb_field_value(), arb_field_value(), arb_field_value(), any::<bool>()).prop_map(|(a, b, n, nested)| {
        let mut doc = serde_json::Map::new();
        for (k, v) in [("a", a), ("b", b), ("n", n)] {
            if let Some(v) = v {
                doc.insert(k.to_owned(), v);
            }
        }
        let doc = Value::Object(doc);
        // Same data under a nested spelling: `{"o": {"a": …}}` is field `o.a`.
        if nested {
            json!({"o": doc})
        } else {
            json!({"o.a": doc.get("a").cloned().unwrap_or(Value::Null), "a": doc.get("a"), "b": doc.get("b"), "n": doc.get("n")})
        }
    })
}

fn arb_leaf() -> impl Strategy<Value = Expr> {
    let field = prop::sample::select(vec!["a", "b", "o.a", "o.b"]);
    let num_field = prop::sample::select(vec!["n", "o.n"]);
    prop_oneof![
        (field.clone(), arb_str()).prop_map(|(f_, v)| eq(f(f_), s(&v))),
        (field.clone(), arb_str()).prop_map(|(f_, v)| cmp(CmpOp::NotEq, f(f_), s(&v))),
        (field.clone(), arb_str(), arb_str(), any::<bool>()).prop_map(|(f_, x, y, ci)| in_list(
            f(f_),
            vec![s(&x), s(&y)],
            false,
            ci
        )),
        (field.clone(), arb_str()).prop_map(|(f_, v)| pat(f(f_), PatternKind::Seq, true, &v)),
        (
            field.clone(),
            prop::sample::select(vec!["a*", "?b", "*", "a?c", "*b*"]),
            any::<bool>()
        )
            .prop_map(|(f_, p, ci)| pat(f(f_), PatternKind::Like, ci, p)),
        (
            field.clone(),
            prop::sample::select(vec!["[ab]+", "a.*", "ab|b", "a?b?c?"])
        )
            .prop_map(|(f_, p)| pat(f(f_), PatternKind::Regex, false, p)),
        (
            num_field.clone(),
            -2i64..5,
            prop::sample::select(vec![
                CmpOp::Lt,
                CmpOp::LtEq,
                CmpOp::Gt,
                CmpOp::GtEq,
                CmpOp::Eq
            ])
        )
            .prop_map(|(f_, k, op)| cmp(op, f(f_), int(k))),
        field.clone().prop_map(|f_| eq(f(f_), null())),
        field
            .clone()
            .prop_map(|f_| cmp(CmpOp::NotEq, f(f_), null())),
        (field.clone(), arb_str(), any::<bool>()).prop_map(|(f_, v, ci)| call(
            Function::StartsWith,
            ci,
            vec![f(f_), s(&v)]
        )),
        (field.clone(), arb_str()).prop_map(|(f_, v)| call(
            Function::EndsWith,
            false,
            vec![f(f_), s(&v)]
        )),
        (field.clone(), -1i64..4).prop_map(|(f_, k)| cmp(
            CmpOp::Gt,
            call(Function::Length, false, vec![f(f_)]),
            int(k)
        )),
        (field, arb_str()).prop_map(|(f_, v)| eq(
            call(Function::Concat, false, vec![f(f_), s("x")]),
            s(&format!("{v}x"))
        )),
    ]
}

fn arb_expr() -> impl Strategy<Value = Expr> {
    arb_leaf().prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| and(l, r)),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| or(l, r)),
            inner.prop_map(not),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn pushed_down_query_is_a_superset_of_the_evaluator(cond in arb_expr(), docs in prop::collection::vec(arb_doc(), 1..6)) {
        let compiled = CompiledFilter::compile_condition(&cond, &EvalOptions::default()).expect("generated filters compile");
        let pushed = filter_query(&compiled);
        for doc in &docs {
            let accepted = compiled.matches(doc);
            let selected = interp(&pushed.query, doc);
            prop_assert!(!accepted || selected, "evaluator accepts but query misses: {doc} / {}", pushed.query);
            if pushed.exact {
                prop_assert_eq!(accepted, selected, "exact query differs on {} / {}", doc, pushed.query);
            }
        }
    }
}

#[test]
fn golden_query_from_the_rule_text_matches_the_hand_built_one() {
    let text = r#"sequence by host.id with maxspan=10s
  [process where host.os.type == "linux" and event.type == "start" and event.action in ("exec", "ProcessRollup2") and process.name == "node" and process.args == "install"] by process.entity_id
  [process where host.os.type == "linux" and event.type == "start" and event.action in ("exec", "ProcessRollup2") and process.parent.name == "node"] by process.parent.entity_id"#;
    let seqwatch::eql::ast::Query::Sequence(parsed) =
        seqwatch::eql::parse(text).expect("rule parses")
    else {
        panic!("the rule is a sequence");
    };
    let (from, to) = ("2026-11-29T10:00:00.000Z", "2026-11-29T10:09:00.000Z");
    let opts = FetchOptions::default();
    let from_text = fetch_query(&parsed, &opts, from, to).expect("compiles");
    let by_hand = fetch_query(&rule_sequence(), &opts, from, to).expect("compiles");
    assert_eq!(from_text, by_hand);
}
