//! Generated data against a real node: it loads into data streams through the source templates
//! with the mapped types applied, and it is searchable the way the rule's push-down searches it.

mod common;

use std::collections::BTreeMap;

use seqwatch::es::{BulkCreate, BulkSummary};
use seqwatch::generate::{GenerateSpec, Generator};
use serde_json::{json, Value};

fn mapped_type<'a>(mapping: &'a Value, path: &str) -> Option<&'a str> {
    let mut cur = &mapping["properties"];
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let node = &cur[*p];
        if i + 1 == parts.len() {
            return node["type"].as_str();
        }
        cur = &node["properties"];
    }
    None
}

#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test]
async fn generated_events_load_with_mapped_types_and_are_searchable() {
    let es = common::require_es("generated_events_load").await;
    es.setup(true).await.expect("templates install");
    let suffix = common::unique_name("gen");
    let defend = format!("logs-endpoint.events.process-{suffix}");
    let crowdstrike = format!("logs-crowdstrike.fdr-{suffix}");
    let _cleanup = common::IndexCleanup::new([defend.clone(), crowdstrike.clone()]);

    let spec = GenerateSpec {
        hosts: 12,
        rate: 20.0,
        from_ms: 1_795_000_000_000,
        to_ms: 1_795_000_000_000 + 15 * 60 * 1000,
        seed: 11,
        installs_per_host_hour: 30.0,
        script_rate: 0.7,
        malicious_rate: 0.3,
    };
    let mut gen = Generator::new(spec).unwrap();
    let mut per_index: BTreeMap<String, u64> = BTreeMap::new();
    let mut ops = Vec::new();
    for hit in gen.by_ref() {
        let index = if hit.index.starts_with("logs-endpoint") {
            &defend
        } else {
            &crowdstrike
        };
        *per_index.entry(index.clone()).or_default() += 1;
        ops.push(BulkCreate::new(
            index.clone(),
            hit.id.clone(),
            hit.source_value().unwrap(),
        ));
    }
    let planted = gen.drain_truth().into_iter().filter(|t| t.expected).count();
    assert!(
        planted > 5,
        "the range should hold planted sequences, has {planted}"
    );
    let mut total = BulkSummary::default();
    for chunk in ops.chunks(2000) {
        let s = BulkSummary::of(&es.bulk_create(chunk).await.unwrap());
        total.created += s.created;
        total.failed += s.failed;
    }
    assert_eq!(total.failed, 0);
    assert_eq!(total.created, ops.len());
    for index in [&defend, &crowdstrike] {
        es.refresh(index).await.unwrap();
        let n = es.count(index, &json!({"match_all": {}})).await.unwrap();
        assert_eq!(
            n, per_index[index],
            "{index}: every generated event is searchable"
        );
    }

    // The mapped types, as the source templates declare them.
    for (index, fields) in [
        (
            &defend,
            &[
                ("@timestamp", "date"),
                ("process.pid", "long"),
                ("event.sequence", "long"),
                ("process.name", "keyword"),
                ("process.args", "keyword"),
                ("process.entity_id", "keyword"),
                ("process.parent.entity_id", "keyword"),
                ("host.id", "keyword"),
                ("event.action", "keyword"),
            ][..],
        ),
        (
            &crowdstrike,
            &[
                ("@timestamp", "date"),
                ("process.pid", "long"),
                ("process.name", "keyword"),
                ("process.parent.name", "keyword"),
                ("host.id", "keyword"),
                ("event.action", "keyword"),
            ][..],
        ),
    ] {
        // A data stream's mapping is its backing index's, and there is one.
        let mappings = es.get_mapping(index).await.unwrap();
        assert_eq!(mappings.len(), 1, "{:?}", mappings.keys());
        let (backing, mapping) = mappings.iter().next().expect("one backing index");
        assert!(common::is_backing_index_of(backing, index), "{backing}");
        for (field, ty) in fields {
            assert_eq!(mapped_type(mapping, field), Some(*ty), "{index}: {field}");
        }
    }

    // Searchable as the rule searches: exact, case-sensitive terms on arrays, and time ranges.
    let both = format!("{defend},{crowdstrike}");
    let install = es
        .count(&both, &json!({"term": {"process.args": "install"}}))
        .await
        .unwrap();
    let install_upper = es
        .count(&both, &json!({"term": {"process.args": "Install"}}))
        .await
        .unwrap();
    assert!(install > 0);
    assert!(
        install > install_upper,
        "case matters: 'Install' is a planted near-miss, rarer than 'install'"
    );
    let children = es
        .count(
            &both,
            &json!({"bool": {"filter": [{"term": {"process.parent.name": "node"}},
            {"terms": {"event.action": ["exec", "ProcessRollup2"]}}]}}),
        )
        .await
        .unwrap();
    assert!(
        children as usize >= planted,
        "every planted sequence has a child of node"
    );
    let first_five_minutes = es
        .count(&both, &json!({"range": {"@timestamp": {"gte": "2026-11-18T11:06:40.000Z", "lt": "2026-11-18T11:11:40.000Z"}}}))
        .await
        .unwrap();
    let all: u64 = per_index.values().sum();
    assert!(
        first_five_minutes > all / 5 && first_five_minutes < all / 2,
        "{first_five_minutes} of {all} in a third of the range"
    );
}
