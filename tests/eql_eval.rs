//! Evaluator semantics, each pinned to the Elasticsearch source that decides it.
//!
//! Citation shorthand: `ES:` = elastic/elasticsearch `x-pack/plugin/eql/src/main/java/org/elasticsearch/xpack/eql/`,
//! `QL:` = `x-pack/plugin/ql/src/main/java/org/elasticsearch/xpack/ql/`.
//! ASTs are built by hand (the parser lands separately).

mod shared_data;

use proptest::prelude::*;
use serde_json::{json, Value};

use seqwatch::eql::ast::{
    ArithOp, CmpOp, EventFilter, Expr, ExprKind, FieldRef, Function, Literal, PatternKind,
};
use seqwatch::eql::eval::{CompiledFilter, EvalOptions};
use seqwatch::eql::functions::EvalError;
use seqwatch::eql::value::{FieldType, FieldTypes};
use seqwatch::event::{event_timestamp, extract_keys, field_values, KeySpec, TimestampError};

// ----------------------------------------------------------------------------- builders

fn ex(kind: ExprKind) -> Expr {
    Expr { kind, span: 0..0 }
}
fn f(path: &str) -> Expr {
    ex(ExprKind::Field(FieldRef {
        path: path.into(),
        span: 0..0,
    }))
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
fn tru() -> Expr {
    ex(ExprKind::Literal(Literal::Bool(true)))
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
fn ne(l: Expr, r: Expr) -> Expr {
    cmp(CmpOp::NotEq, l, r)
}
fn gt(l: Expr, r: Expr) -> Expr {
    cmp(CmpOp::Gt, l, r)
}
fn and(l: Expr, r: Expr) -> Expr {
    ex(ExprKind::And(Box::new(l), Box::new(r)))
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
fn pat(v: Expr, kind: PatternKind, insensitive: bool, patterns: &[&str]) -> Expr {
    ex(ExprKind::Pattern {
        value: Box::new(v),
        kind,
        insensitive,
        patterns: patterns.iter().map(|p| p.to_string()).collect(),
    })
}
fn call(func: Function, insensitive: bool, args: Vec<Expr>) -> Expr {
    ex(ExprKind::Call {
        func,
        insensitive,
        args,
    })
}
fn arith(op: ArithOp, l: Expr, r: Expr) -> Expr {
    ex(ExprKind::Arith {
        op,
        left: Box::new(l),
        right: Box::new(r),
    })
}

fn compile_with(cond: Expr, opts: &EvalOptions) -> CompiledFilter {
    CompiledFilter::compile_condition(&cond, opts).expect("filter compiles")
}
fn compile(cond: Expr) -> CompiledFilter {
    compile_with(cond, &EvalOptions::default())
}
fn typed(types: FieldTypes) -> EvalOptions {
    EvalOptions {
        field_types: types,
        ..EvalOptions::default()
    }
}
fn compile_err(cond: Expr) -> String {
    CompiledFilter::compile_condition(&cond, &EvalOptions::default())
        .expect_err("ES rejects this filter")
        .message
}
fn check(cond: Expr, doc: Value) -> bool {
    compile(cond).matches(&doc)
}

// ----------------------------------------------------------------------------- field access

#[test]
fn dotted_and_nested_spellings_are_one_field() {
    let x = json!("x");
    for doc in [
        json!({"process.parent.name": "x"}),
        json!({"process": {"parent": {"name": "x"}}}),
        json!({"process.parent": {"name": "x"}}),
        json!({"process": {"parent.name": "x"}}),
    ] {
        let got: Vec<&Value> = field_values(&doc, "process.parent.name").collect();
        assert_eq!(got, vec![&x], "doc {doc}");
    }
    // Several spellings present: ES indexes them all.
    let doc = json!({"process.name": "a", "process": {"name": ["b", "c"]}});
    let mut got: Vec<&Value> = field_values(&doc, "process.name").collect();
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, vec![&json!("a"), &json!("b"), &json!("c")]);
}

#[test]
fn arrays_flatten_and_null_or_empty_is_missing() {
    let doc = json!({"process": [{"args": ["a", null, ["b"]]}, {"args": "c"}], "n": null, "e": []});
    let got: Vec<&Value> = field_values(&doc, "process.args").collect();
    assert_eq!(got, vec![&json!("a"), &json!("b"), &json!("c")]);
    assert!(field_values(&doc, "n").is_missing());
    assert!(field_values(&doc, "e").is_missing());
    // An object at the full path is not a value of that field.
    assert!(field_values(&json!({"process": {"name": {"x": 1}}}), "process.name").is_missing());
}

#[test]
fn timestamps_parse_like_es_date_fields() {
    let ts = |v: Value| event_timestamp(&json!({"@timestamp": v}), "@timestamp");
    assert_eq!(ts(json!("1970-01-01T00:00:01Z")), Ok(1_000_000_000));
    assert_eq!(ts(json!("1970-01-01T00:00:00.123456789Z")), Ok(123_456_789));
    assert_eq!(ts(json!("1970-01-01T01:00:00+01:00")), Ok(0));
    assert_eq!(ts(json!("1970-01-02")), Ok(86_400_000_000_000));
    assert_eq!(ts(json!("1970-01-01T00:00:00,5")), Ok(500_000_000));
    assert_eq!(ts(json!(1500)), Ok(1_500_000_000));
    assert_eq!(ts(json!("1500")), Ok(1_500_000_000));
    assert!(matches!(
        ts(json!("yesterday")),
        Err(TimestampError::Unparsable { .. })
    ));
    assert!(matches!(
        ts(json!("2020-13-01")),
        Err(TimestampError::Unparsable { .. })
    ));
    // ES: execution/search/Timestamp.java — missing and multi-valued timestamps are errors.
    assert!(matches!(
        event_timestamp(&json!({}), "@timestamp"),
        Err(TimestampError::Missing { .. })
    ));
    assert!(matches!(
        ts(json!(["1970-01-01", "1970-01-02"])),
        Err(TimestampError::MultiValued { count: 2, .. })
    ));
}

#[test]
fn key_extraction_drops_missing_mandatory_keys_and_nulls_optional_ones() {
    let key = |p: &str, optional| KeySpec {
        path: p.into(),
        optional,
    };
    let doc = json!({"host": {"id": "h"}, "k": ["a", "b", "a"]});
    // ES: optimizer/Optimizer.java AddMandatoryJoinKeyFilter — exists on non-optional keys.
    assert_eq!(
        extract_keys(&doc, &[key("host.id", false), key("missing", false)]),
        None
    );
    let got = extract_keys(
        &doc,
        &[key("host.id", false), key("missing", true), key("k", false)],
    )
    .expect("not dropped");
    assert_eq!(got[0], vec![Some(&json!("h"))]);
    assert_eq!(got[1], vec![None]);
    assert_eq!(got[2], vec![Some(&json!("a")), Some(&json!("b"))]);
}

// ----------------------------------------------------------------------------- category

fn filter(category: Option<&str>, condition: Expr) -> EventFilter {
    EventFilter {
        category: category.map(str::to_owned),
        condition,
        span: 0..0,
    }
}

#[test]
fn category_is_a_case_sensitive_term_on_event_category() {
    // ES: parser/LogicalPlanBuilder.java visitEventFilter adds Equals(event.category, "process").
    let c = CompiledFilter::compile(&filter(Some("process"), tru()), &EvalOptions::default())
        .expect("compiles");
    assert!(c.matches(&json!({"event": {"category": "process"}})));
    assert!(c.matches(&json!({"event": {"category": ["network", "process"]}})));
    assert!(!c.matches(&json!({"event": {"category": "Process"}})));
    assert!(!c.matches(&json!({})));
    let any =
        CompiledFilter::compile(&filter(None, tru()), &EvalOptions::default()).expect("compiles");
    assert!(any.matches(&json!({})));
    let opts = EvalOptions {
        event_category_field: "event_type".into(),
        ..EvalOptions::default()
    };
    let c = CompiledFilter::compile(&filter(Some("process"), tru()), &opts).expect("compiles");
    assert!(c.matches(&json!({"event_type": "process"})));
    assert!(!c.matches(&json!({"event": {"category": "process"}})));
}

// ----------------------------------------------------------------------------- not / != / missing

#[test]
fn equality_on_multi_valued_fields_matches_any_value() {
    // QL: planner/ExpressionTranslators.java BinaryComparisons → TermQuery (any indexed value).
    assert!(check(
        eq(f("process.args"), s("install")),
        json!({"process": {"args": ["npm", "install"]}})
    ));
    assert!(!check(
        eq(f("process.args"), s("Install")),
        json!({"process": {"args": ["install"]}})
    ));
}

#[test]
fn not_equals_is_must_not_term_and_matches_missing_fields() {
    // QL: ExpressionTranslators.java BinaryComparisons: NotEquals → NotQuery(TermQuery), and
    // Nots → NotQuery: Lucene must_not, not three-valued logic. The EQL optimizer's
    // EqlBooleanSimplification leaves negations alone (ES: optimizer/Optimizer.java).
    let ne_a = || ne(f("x"), s("a"));
    assert!(check(ne_a(), json!({})), "missing field matches !=");
    assert!(check(ne_a(), json!({"x": null})));
    assert!(check(ne_a(), json!({"x": "b"})));
    assert!(
        !check(ne_a(), json!({"x": ["a", "b"]})),
        "any value equal excludes the doc"
    );
    assert!(check(not(eq(f("x"), s("a"))), json!({})));
    assert!(!check(not(eq(f("x"), s("a"))), json!({"x": ["b", "a"]})));
    // `not in` is must_not terms.
    let not_in = || in_list(f("x"), vec![s("a"), s("b")], true, false);
    assert!(check(not_in(), json!({})));
    assert!(check(not_in(), json!({"x": "c"})));
    assert!(!check(not_in(), json!({"x": ["c", "b"]})));
    // Comparisons on missing fields match nothing; their negation matches.
    assert!(!check(gt(f("n"), int(1)), json!({})));
    assert!(check(not(gt(f("n"), int(1))), json!({})));
}

#[test]
fn null_checks_are_exists_queries() {
    // ES: optimizer/Optimizer.java ReplaceNullChecks: x == null → IsNull, x != null → Not(IsNull);
    // QL: ExpressionTranslators.java IsNulls → must_not exists, IsNotNulls → exists.
    for (doc, is_null) in [
        (json!({}), true),
        (json!({"x": null}), true),
        (json!({"x": []}), true),
        (json!({"x": ""}), false),
        (json!({"x": [null, "a"]}), false),
    ] {
        assert_eq!(check(eq(f("x"), null()), doc.clone()), is_null, "{doc}");
        assert_eq!(check(ne(f("x"), null()), doc.clone()), !is_null, "{doc}");
        assert_eq!(
            check(eq(null(), f("x")), doc.clone()),
            is_null,
            "literal on the left: {doc}"
        );
    }
    // A null condition filters everything out.
    assert!(!check(null(), json!({})));
}

#[test]
fn function_of_missing_field_is_evaluated_once_with_null() {
    // ES: expression/function/scalar/whitelist/InternalEqlScriptUtils.java multiValueDocValues:
    // a missing field calls the predicate with null; nullSafeFilter turns null into false.
    let long = || gt(call(Function::Length, false, vec![f("x")]), int(3));
    assert!(!check(long(), json!({})));
    // QL: Scripts.multiValueDocValuesRewrite hoists `not(` outside the value loop, so the
    // negation of a script over a missing field is true (not null).
    assert!(check(not(long()), json!({})));
    // Any value decides; the negation is "no value satisfies it".
    assert!(check(long(), json!({"x": ["ab", "abcd"]})));
    assert!(!check(not(long()), json!({"x": ["ab", "abcd"]})));
    assert!(check(not(long()), json!({"x": ["ab", "abc"]})));
    // `x == null` on a function result: null propagation makes length(missing) null.
    assert!(check(
        eq(call(Function::Length, false, vec![f("x")]), null()),
        json!({})
    ));
    assert!(!check(
        eq(call(Function::Length, false, vec![f("x")]), null()),
        json!({"x": "a"})
    ));
}

// ----------------------------------------------------------------------------- case and patterns

#[test]
fn operators_case_sensitivity() {
    let doc = json!({"p": "Node.EXE"});
    assert!(
        !check(eq(f("p"), s("node.exe")), doc.clone()),
        "== is case-sensitive"
    );
    assert!(!check(
        in_list(f("p"), vec![s("node.exe")], false, false),
        doc.clone()
    ));
    assert!(
        check(
            in_list(f("p"), vec![s("x"), s("node.exe")], false, true),
            doc.clone()
        ),
        "in~"
    );
    assert!(
        check(
            pat(f("p"), PatternKind::Seq, true, &["node.exe"]),
            doc.clone()
        ),
        ":"
    );
    // ES: optimizer/Optimizer.java ReplaceWildcards: `:` with * or ? becomes like~.
    assert!(check(
        pat(f("p"), PatternKind::Seq, true, &["node.*"]),
        doc.clone()
    ));
    assert!(
        check(
            pat(f("p"), PatternKind::Like, true, &["*.exe"]),
            doc.clone()
        ),
        "like~"
    );
    assert!(
        !check(
            pat(f("p"), PatternKind::Like, false, &["*.exe"]),
            doc.clone()
        ),
        "like"
    );
    // `==` treats * literally (only `:` is rewritten).
    assert!(!check(eq(f("p"), s("Node*")), doc.clone()));
    assert!(check(eq(f("p"), s("Node*")), json!({"p": "Node*"})));
    assert!(
        check(
            call(Function::StartsWith, true, vec![f("p"), s("node")]),
            doc.clone()
        ),
        "fn~"
    );
    assert!(!check(
        call(Function::StartsWith, false, vec![f("p"), s("node")]),
        doc
    ));
}

#[test]
fn like_wildcards_and_escaping() {
    // ES: util/StringUtils.java toLikePattern: * → any run, ? → one char, nothing escapes them;
    // a backslash is a literal (LikePattern.asLuceneWildcard escapes it for Lucene).
    let like =
        |p: &str, v: &str| check(pat(f("x"), PatternKind::Like, false, &[p]), json!({"x": v}));
    assert!(like("a*c", "abbbc"));
    assert!(like("a*c", "ac"));
    assert!(like("a?c", "abc"));
    assert!(!like("a?c", "ac"));
    assert!(like("a?c", "aéc"), "? is one code point");
    assert!(
        like("a\\*", "a\\xyz"),
        "backslash is literal, * still a wildcard"
    );
    assert!(!like("a.c", "abc"), ". is literal");
    assert!(like("", ""));
    assert!(!like("abc", "xabcx"), "anchored at both ends");
}

#[test]
fn regex_is_lucene_syntax_anchored_and_rejects_untranslatable_constructs() {
    let re = |p: &str, v: &str, ci: bool| {
        check(pat(f("x"), PatternKind::Regex, ci, &[p]), json!({"x": v}))
    };
    assert!(re("ab+c", "abbc", false));
    assert!(!re("b+", "abbc", false), "anchored");
    assert!(re("[a-c]{2,3}x", "abcx", false));
    assert!(
        re("^a$", "^a$", false),
        "^ and $ are literals in Lucene RegExp"
    );
    assert!(re("a@", "anything", false), "@ is any string (flags ALL)");
    assert!(!re("#", "", false), "# is the empty language");
    assert!(
        re("\"a.b\"", "a.b", false) && !re("\"a.b\"", "axb", false),
        "quoted literal"
    );
    // regex~ is Lucene ASCII_CASE_INSENSITIVE: single ASCII letters only, not ranges.
    assert!(re("abc", "ABC", true));
    assert!(!re("[a-c]", "B", true));
    assert!(!re("é", "É", true));
    for bad in ["a&b", "~a", "<1-5>", "\\d+", "(ab", "[ab", "*a"] {
        let cond = pat(f("x"), PatternKind::Regex, false, &[bad]);
        assert!(
            CompiledFilter::compile_condition(&cond, &EvalOptions::default()).is_err(),
            "{bad} must be rejected at compile time"
        );
    }
}

// ----------------------------------------------------------------------------- types

#[test]
fn mapping_types_decide_comparisons() {
    let types = FieldTypes::new()
        .with("pid", FieldType::Long)
        .with(
            "kw",
            FieldType::Keyword {
                ignore_above: Some(5),
            },
        )
        .with("ip", FieldType::Ip);
    let opts = typed(types);
    let m = |cond: Expr, doc: Value| compile_with(cond, &opts).matches(&doc);
    // A long field indexes "7" as 7: numeric comparison.
    assert!(m(gt(f("pid"), int(5)), json!({"pid": "7"})));
    assert!(
        m(eq(f("pid"), int(7)), json!({"pid": 7.9})),
        "long coerces by truncation"
    );
    // A keyword field indexes 10 as "10": lexicographic against "9".
    assert!(!m(gt(f("kw"), int(9)), json!({"kw": 10})));
    assert!(m(eq(f("kw"), int(10)), json!({"kw": 10})));
    // ignore_above: longer values are not indexed — no term match, not even exists.
    assert!(!m(eq(f("kw"), s("abcdef")), json!({"kw": "abcdef"})));
    assert!(m(eq(f("kw"), null()), json!({"kw": "abcdef"})));
    // ip: a term accepts CIDR; IPv4 and mapped IPv6 are the same address.
    assert!(m(eq(f("ip"), s("10.0.0.0/8")), json!({"ip": "10.1.2.3"})));
    assert!(m(
        eq(f("ip"), s("::ffff:10.1.2.3")),
        json!({"ip": "10.1.2.3"})
    ));
}

#[test]
fn untyped_fields_take_their_type_from_the_json_value() {
    // Documented rule: strings are keywords, numbers numeric, the literal converts to the
    // value's type as ES converts a query term to the field's type.
    assert!(check(gt(f("n"), int(5)), json!({"n": 7})));
    assert!(check(gt(f("n"), int(5)), json!({"n": 7.5})));
    assert!(
        !check(gt(f("n"), int(9)), json!({"n": "10"})),
        "keyword order: \"10\" < \"9\""
    );
    assert!(check(eq(f("n"), int(10)), json!({"n": "10"})));
    assert!(check(eq(f("n"), s("10")), json!({"n": 10})));
    assert!(check(eq(f("b"), tru()), json!({"b": true})));
}

// ----------------------------------------------------------------------------- functions

fn eval_fn(func: Function, ci: bool, args: Vec<Expr>, expected: Expr, doc: Value) -> bool {
    check(eq(call(func, ci, args), expected), doc)
}

#[test]
fn between_greedy_and_case() {
    // ES: expression/function/scalar/string/BetweenFunctionProcessor.java, util/StringUtils.between.
    let doc = json!({"x": "a[b]c[d]e"});
    let b = |greedy: bool, want: &str| {
        let args = vec![
            f("x"),
            s("["),
            s("]"),
            ex(ExprKind::Literal(Literal::Bool(greedy))),
        ];
        eval_fn(Function::Between, false, args, s(want), doc.clone())
    };
    assert!(b(false, "b"));
    assert!(b(true, "b]c[d"));
    assert!(eval_fn(
        Function::Between,
        true,
        vec![f("x"), s("A"), s("Z")],
        s("yaB"),
        json!({"x": "xAyaBz"})
    ));
    assert!(
        eval_fn(
            Function::Between,
            false,
            vec![f("x"), s("q"), s("]")],
            s(""),
            doc.clone()
        ),
        "left not found"
    );
    // Greedy takes the last `right` anywhere; before `left` Java's substring throws.
    let c = compile(eq(
        call(
            Function::Between,
            false,
            vec![
                f("x"),
                s("b"),
                s("a"),
                ex(ExprKind::Literal(Literal::Bool(true))),
            ],
        ),
        s("x"),
    ));
    assert!(matches!(
        c.try_matches(&json!({"x": "abc"})),
        Err(EvalError::BadArgument { .. })
    ));
}

#[test]
fn cidr_match_ipv4_ipv6_and_keyword_quirk() {
    // As a script (ES: CIDRMatchFunctionProcessor → CIDRUtils.isInRange) on an expression:
    let on_concat = |ip: &str| {
        check(
            call(
                Function::CidrMatch,
                false,
                vec![
                    call(Function::Concat, false, vec![f("x")]),
                    s("10.0.0.0/8"),
                    s("fe80::/10"),
                ],
            ),
            json!({"x": ip}),
        )
    };
    assert!(on_concat("10.9.8.7"));
    assert!(on_concat("fe80::1"));
    assert!(!on_concat("11.0.0.1"));
    // On a field it is a terms query (ES: planner/QueryTranslator.java Scalars): CIDR on an
    // ip field, but a literal string match on a keyword field.
    let ip = typed(FieldTypes::new().with("a", FieldType::Ip));
    let kw = typed(FieldTypes::new().with("a", FieldType::Keyword { ignore_above: None }));
    let cond = || call(Function::CidrMatch, false, vec![f("a"), s("10.0.0.0/8")]);
    assert!(compile_with(cond(), &ip).matches(&json!({"a": "10.1.1.1"})));
    assert!(!compile_with(cond(), &kw).matches(&json!({"a": "10.1.1.1"})));
}

#[test]
fn cidr_match_takes_plain_addresses_as_elasticsearch_does() {
    // ES: CIDRUtils.isInRange: an argument without "/" is its own lower and upper bound; an
    // IPv4 address equals its IPv4-mapped IPv6 form (isBetween pads with the rfc4291 prefix).
    let on_concat = |ip: &str| {
        check(
            call(
                Function::CidrMatch,
                false,
                vec![
                    call(Function::Concat, false, vec![f("x")]),
                    s("127.0.0.1"),
                    s("::1"),
                ],
            ),
            json!({"x": ip}),
        )
    };
    assert!(on_concat("127.0.0.1"));
    assert!(on_concat("::ffff:127.0.0.1"));
    assert!(on_concat("::1"));
    assert!(!on_concat("127.0.0.2"));
    assert!(!on_concat("::2"));
    let ip = typed(FieldTypes::new().with("a", FieldType::Ip));
    let cond = || {
        call(
            Function::CidrMatch,
            false,
            vec![f("a"), s("::1"), s("127.0.0.1")],
        )
    };
    assert!(compile_with(cond(), &ip).matches(&json!({"a": "::1"})));
    assert!(compile_with(cond(), &ip).matches(&json!({"a": "127.0.0.1"})));
    assert!(!compile_with(cond(), &ip).matches(&json!({"a": "10.0.0.1"})));
}

#[test]
fn number_string_substring_index_of_length_concat() {
    let d = json!({"x": "0x1F", "y": "ff", "z": "3.5", "w": "hello", "e": "😀ab", "n": 5});
    // ES: expression/function/scalar/math/ToNumberFunctionProcessor.java: 0x → base 16.
    assert!(eval_fn(
        Function::Number,
        false,
        vec![f("x")],
        int(31),
        d.clone()
    ));
    assert!(eval_fn(
        Function::Number,
        false,
        vec![f("y"), int(16)],
        int(255),
        d.clone()
    ));
    assert!(eval_fn(
        Function::Number,
        false,
        vec![f("z")],
        ex(ExprKind::Literal(Literal::Float(3.5))),
        d.clone()
    ));
    let bad = compile(eq(call(Function::Number, false, vec![f("w")]), int(1)));
    assert!(
        bad.try_matches(&d).is_err(),
        "unparsable number fails the search"
    );
    // ES: StringUtils.substringSlice: Python slices.
    assert!(eval_fn(
        Function::Substring,
        false,
        vec![f("w"), int(-3)],
        s("llo"),
        d.clone()
    ));
    assert!(eval_fn(
        Function::Substring,
        false,
        vec![f("w"), int(1), int(-1)],
        s("ell"),
        d.clone()
    ));
    assert!(eval_fn(
        Function::Substring,
        false,
        vec![f("w"), int(4), int(2)],
        s(""),
        d.clone()
    ));
    // indexOf: not found → null; start offset; UTF-16 indexes (an emoji is 2 units).
    assert!(eval_fn(
        Function::IndexOf,
        false,
        vec![f("w"), s("l"), int(3)],
        int(3),
        d.clone()
    ));
    assert!(check(
        eq(call(Function::IndexOf, false, vec![f("w"), s("q")]), null()),
        d.clone()
    ));
    assert!(eval_fn(
        Function::IndexOf,
        false,
        vec![f("e"), s("a")],
        int(2),
        d.clone()
    ));
    assert!(eval_fn(
        Function::Length,
        false,
        vec![f("e")],
        int(4),
        d.clone()
    ));
    // string(): Java toString; concat: any null → null.
    assert!(eval_fn(
        Function::String,
        false,
        vec![f("n")],
        s("5"),
        d.clone()
    ));
    assert!(eval_fn(
        Function::Concat,
        false,
        vec![f("w"), s("-"), f("n")],
        s("hello-5"),
        d.clone()
    ));
    assert!(check(
        eq(
            call(Function::Concat, false, vec![f("w"), f("missing")]),
            null()
        ),
        d.clone()
    ));
    // wildcard() is like over each pattern.
    assert!(check(
        call(Function::Wildcard, false, vec![f("w"), s("x*"), s("h*o")]),
        d.clone()
    ));
    // stringContains as a script: empty substring is false.
    assert!(!check(
        call(
            Function::StringContains,
            false,
            vec![call(Function::Concat, false, vec![f("w")]), s("")]
        ),
        d.clone()
    ));
}

#[test]
fn field_function_forms_are_the_queries_es_pushes_down() {
    // ES: planner/QueryTranslator.java CaseInsensitiveScalarFunctions: endsWith/stringContains on
    // a field become wildcard queries built from the raw constant, so * in it is a wildcard and
    // an empty substring matches every value.
    assert!(check(
        call(Function::EndsWith, false, vec![f("x"), s("a*c")]),
        json!({"x": "zabbc"})
    ));
    assert!(check(
        call(Function::StringContains, false, vec![f("x"), s("")]),
        json!({"x": "q"})
    ));
    assert!(!check(
        call(Function::StringContains, false, vec![f("x"), s("")]),
        json!({})
    ));
    assert!(check(
        call(Function::StartsWith, false, vec![f("x"), s("")]),
        json!({"x": "q"})
    ));
}

#[test]
fn arithmetic_follows_java() {
    let types = typed(FieldTypes::new().with("n", FieldType::Long));
    let m = |cond: Expr, doc: Value| compile_with(cond, &types).try_matches(&doc);
    // QL: expression/predicate/operator/arithmetic/Arithmetics.java: Math.addExact overflows.
    let overflow = gt(arith(ArithOp::Add, f("n"), int(1)), int(0));
    assert_eq!(
        m(overflow, json!({"n": i64::MAX})),
        Err(EvalError::Overflow)
    );
    let div0 = gt(arith(ArithOp::Div, f("n"), int(0)), int(0));
    assert_eq!(m(div0, json!({"n": 1})), Err(EvalError::DivisionByZero));
    // Integer division truncates toward zero.
    assert_eq!(
        m(
            eq(arith(ArithOp::Div, f("n"), int(2)), int(-3)),
            json!({"n": -7})
        ),
        Ok(true)
    );
    assert_eq!(
        m(
            eq(arith(ArithOp::Mod, f("n"), int(2)), int(-1)),
            json!({"n": -7})
        ),
        Ok(true)
    );
    // Null propagates.
    assert_eq!(
        m(eq(arith(ArithOp::Add, f("n"), int(1)), null()), json!({})),
        Ok(true)
    );
    // Constant overflow is a compile-time error (ConstantFolding).
    assert!(compile_err(gt(arith(ArithOp::Mul, int(i64::MAX), int(2)), int(0))).contains("fails"));
}

// ----------------------------------------------------------------------------- verifier

#[test]
fn verifier_errors_are_compile_errors_with_spans() {
    assert!(
        compile_err(gt(call(Function::Length, false, vec![int(5)]), int(1)))
            .contains("must be [string]")
    );
    assert!(compile_err(gt(call(Function::Length, true, vec![f("x")]), int(1))).contains("~"));
    assert!(compile_err(eq(f("x"), f("y"))).contains("against fields"));
    assert!(compile_err(f("x")).contains("boolean"));
    assert!(compile_err(call(Function::Length, false, vec![f("x")])).contains("boolean"));
    assert!(
        compile_err(call(Function::CidrMatch, false, vec![f("x"), s("nope")])).contains("CIDR")
    );
    assert!(
        compile_err(eq(call(Function::Substring, false, vec![f("x")]), s("a")))
            .contains("arguments")
    );
    let mut bad = pat(f("x"), PatternKind::Regex, false, &["a&b"]);
    bad.span = 7..19;
    let e = CompiledFilter::compile_condition(&bad, &EvalOptions::default()).expect_err("rejected");
    assert_eq!(e.span, 7..19);
}

// ----------------------------------------------------------------------------- the rule

fn rule_stage0() -> Expr {
    let start_exec = and(
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
    );
    and(
        and(start_exec, eq(f("process.name"), s("node"))),
        eq(f("process.args"), s("install")),
    )
}

fn rule_stage1() -> Expr {
    let start_exec = and(
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
    );
    and(start_exec, eq(f("process.parent.name"), s("node")))
}

fn rule_filters() -> (CompiledFilter, CompiledFilter) {
    let opts = EvalOptions::default();
    (
        CompiledFilter::compile(&filter(Some("process"), rule_stage0()), &opts).expect("stage 0"),
        CompiledFilter::compile(&filter(Some("process"), rule_stage1()), &opts).expect("stage 1"),
    )
}

#[test]
fn rule_filters_on_synthetic_events() {
    let (s0, s1) = rule_filters();
    let npm = json!({
        "event": {"category": ["process"], "type": ["start"], "action": "exec"},
        "host": {"os": {"type": "linux"}, "id": "h1"},
        "process": {"name": "node", "args": ["node", "/usr/bin/npm", "install"], "entity_id": "p1",
                    "parent": {"name": "bash"}}
    });
    assert!(s0.matches(&npm));
    assert!(!s1.matches(&npm));
    let mut child = npm.clone();
    child["process"] =
        json!({"name": "sh", "args": ["sh", "-c", "node x.js"], "parent": {"name": "node"}});
    assert!(s1.matches(&child));
    let mut fork = npm.clone();
    fork["event"]["action"] = json!("fork");
    assert!(!s0.matches(&fork), "fork events are excluded");
    let mut mac = npm.clone();
    mac["host"]["os"]["type"] = json!("macos");
    assert!(!s0.matches(&mac), "v2 is Linux-only");
}

#[ignore = "needs ../shared/data; scripts/test runs it"]
#[test]
fn rule_filters_on_crowdstrike_sample() {
    const SAMPLE: &str = "ecs-samples/crowdstrike-fdr/test-linux.log-expected.json";
    let path = shared_data::require("rule_filters_on_crowdstrike_sample", &[SAMPLE]).join(SAMPLE);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    let doc: Value = serde_json::from_str(&text).expect("sample is JSON");
    let events = doc["expected"].as_array().expect("expected[]");
    let rollup = events
        .iter()
        .find(|e| e["event"]["action"] == json!("ProcessRollup2"))
        .expect("a ProcessRollup2 event");
    let (s0, s1) = rule_filters();
    // runc started by runc: neither stage.
    assert!(!s0.matches(rollup));
    assert!(!s1.matches(rollup));
    // The same event as node install / as a child of node.
    let mut as_npm = rollup.clone();
    as_npm["process"]["name"] = json!("node");
    as_npm["process"]["args"] = json!(["node", "/usr/bin/npm", "install"]);
    assert!(s0.matches(&as_npm));
    let mut as_child = rollup.clone();
    as_child["process"]["parent"]["name"] = json!("node");
    assert!(s1.matches(&as_child));
    // SyntheticProcessRollup2 never matches (event.action differs).
    for e in events
        .iter()
        .filter(|e| e["event"]["action"] != json!("ProcessRollup2"))
    {
        assert!(!s0.matches(e) && !s1.matches(e));
    }
}

// ----------------------------------------------------------------------------- robustness

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-zA-Z0-9 .*?\\\\é😀]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "node", "install", "10.0.0.1", "fe80::1", "0x1F", "7", "", "a.b"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(6, 200, 40, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..40).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "x",
                    "y",
                    "n",
                    "process",
                    "name",
                    "x.y",
                    "process.name",
                    "args"
                ])
                .prop_map(str::to_owned),
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn robustness_filters() -> Vec<CompiledFilter> {
    let fx = || f("x");
    let conds = vec![
        eq(fx(), s("a")),
        ne(f("process.name"), s("node")),
        gt(f("n"), int(3)),
        pat(fx(), PatternKind::Like, true, &["*a?"]),
        pat(fx(), PatternKind::Regex, false, &["[a-z]+\\.b"]),
        eq(call(Function::Length, false, vec![fx()]), int(2)),
        gt(arith(ArithOp::Mul, f("n"), f("x.y")), int(0)),
        eq(call(Function::Number, false, vec![fx()]), int(31)),
        eq(
            call(Function::Substring, false, vec![fx(), int(-2)]),
            s("ab"),
        ),
        eq(
            call(Function::Between, true, vec![fx(), s("a"), s("b")]),
            s(""),
        ),
        call(
            Function::CidrMatch,
            false,
            vec![call(Function::String, false, vec![fx()]), s("10.0.0.0/8")],
        ),
        eq(
            call(Function::Concat, false, vec![fx(), f("n"), f("y")]),
            s("x"),
        ),
        not(in_list(
            call(Function::String, false, vec![f("n")]),
            vec![s("1"), null()],
            false,
            true,
        )),
        eq(
            call(Function::IndexOf, true, vec![fx(), s("A"), f("n")]),
            int(0),
        ),
    ];
    let types = typed(
        FieldTypes::new()
            .with("n", FieldType::Long)
            .with("y", FieldType::Ip)
            .with("x.y", FieldType::Double),
    );
    let mut out: Vec<CompiledFilter> = conds.iter().cloned().map(compile).collect();
    out.extend(conds.into_iter().map(|c| compile_with(c, &types)));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn never_panics_on_arbitrary_json(doc in arb_json()) {
        for filter in robustness_filters() {
            let _ = filter.try_matches(&doc);
            let _ = event_timestamp(&doc, "x");
        }
    }
}

#[test]
fn huge_and_deep_documents_do_not_panic() {
    let mut deep = json!("leaf");
    for _ in 0..120 {
        deep = json!({"x": [deep]});
    }
    let wide = json!({"x": (0..100_000).map(|i| json!(i.to_string())).collect::<Vec<_>>()});
    for filter in robustness_filters() {
        let _ = filter.try_matches(&deep);
        let _ = filter.try_matches(&wide);
    }
    assert!(check(eq(f("x"), s("99999")), wide));
}
