//! Conformance harness: Elasticsearch's EQL QA spec suites run through seqwatch. This first
//! part pins the engine fixes the suites showed, without needing the shared data.

use seqwatch::eql::ast;

// ----- engine fixes the suite found, pinned without the shared data -------------------------

fn filter_matches(condition: &str, doc: serde_json::Value) -> Result<bool, String> {
    let query = seqwatch::eql::parse(&format!("any where {condition}")).map_err(|e| e.message)?;
    let ast::Query::Event(filter) = query else {
        return Err("not an event query".into());
    };
    let opts = seqwatch::eql::eval::EvalOptions::default();
    let compiled =
        seqwatch::eql::eval::CompiledFilter::compile(&filter, &opts).map_err(|e| e.to_string())?;
    compiled.try_matches(&doc).map_err(|e| e.to_string())
}

#[test]
fn constant_expressions_are_folded_before_the_field_comparison_check() {
    // ES runs ConstantFolding before LiteralsOnTheRight and before the translator's check that
    // the right side of a comparison is foldable (ES: optimizer/Optimizer.java operator batch;
    // QL: optimizer/OptimizerRules.java ConstantFolding, LiteralsOnTheRight; ES:
    // planner/QueryTranslator.java checkBinaryComparison "Comparisons against fields are not
    // (currently) supported"). ES's own modernised spec keeps these queries
    // (qa/common/src/main/resources/test_queries.toml @ 7165bf94e927: twoAdds,
    // stringNumberConversion1-3).
    let doc = serde_json::json!({"serial_event_id": 5, "name": "a"});
    assert_eq!(
        filter_matches(r#"serial_event_id == number("5")"#, doc.clone()),
        Ok(true)
    );
    assert_eq!(
        filter_matches("add(0, 5) == serial_event_id", doc.clone()),
        Ok(true)
    );
    assert_eq!(
        filter_matches("modulo(11, 10) == serial_event_id", doc.clone()),
        Ok(false)
    );
    assert_eq!(
        filter_matches(r#"number("0x32", 16) > serial_event_id"#, doc.clone()),
        Ok(true)
    );
    // Inside a script (here under a function) the same folding applies.
    assert_eq!(
        filter_matches(r#"add(serial_event_id, 0) == number("5")"#, doc.clone()),
        Ok(true)
    );
    // A folded null is a null check, as a written null is (ReplaceNullChecks).
    assert_eq!(
        filter_matches(r#"name == concat(null)"#, doc.clone()),
        Ok(false)
    );
    // Two sides that read fields stay refused, as in ES.
    let refused = filter_matches("serial_event_id == add(serial_event_id, 0)", doc);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("Comparisons against fields")),
        "{refused:?}"
    );
}

