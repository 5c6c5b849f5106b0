//! seqwatch's alerts index and Kibana's, side by side on a real node (`scripts/test` runs this
//! against 9.5.0 and 8.19.21): Kibana's security alerts index is installed the way Kibana's
//! alerting framework installs it (its four component templates, the index template composing
//! them, the concrete write index `.internal.alerts-security.alerts-<space>-000001` behind the
//! alias `.alerts-security.alerts-<space>` as write index: `mappings/kibana/`), seqwatch's with
//! `seqwatch setup`, and the job writes the same alerts into both. One alias over both indices
//! (as a data view over both would be) must then show no field with two types, and sorting and
//! terms aggregations on the fields whose types used to differ must work across both.
//!
//! The test node is the integ-test distribution: it lacks some of Kibana's field types, and
//! both sides get the same fallbacks (`seqwatch::es::field_types`), as `seqwatch setup` gives
//! them; it has no ILM, so Kibana's index template goes in without its `index.lifecycle`
//! (which bears on no field). Its total fields limit is Kibana's, or, should the composed mapping
//! outgrow it, the limit the mapping needs, as Kibana raises it on the index and template when a
//! mapping update hits it (`alerts_service/lib/create_concrete_write_index.ts`).

mod common;
// The job tests' fixture: only its indices, configuration and runs are used here.
#[path = "es_job/fixture.rs"]
#[allow(dead_code)]
mod fixture;
#[path = "kibana/alerts_mapping.rs"]
mod kibana;
#[path = "kibana/install.rs"]
mod kibana_install;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use seqwatch::config::AlertTarget;
use seqwatch::es::field_types::TYPE_FALLBACKS;
use seqwatch::generate::GenerateSpec;
use seqwatch::state::RunStatus;

use common::{es_request, es_request_ok, IndexCleanup};
use fixture::{at_ms, minutes, run_at, JobFixture};
use kibana_install::install_kibanas_alerts_index;

/// 2026-11-18T06:13:20Z: the start of the generated range.
const T0: i64 = 1_795_000_000_000;

/// The fields whose seqwatch types conflicted with Kibana's before the template followed
/// Kibana's, with what the two indices write into them.
const FORMERLY_CONFLICTING: [&str; 6] = [
    "kibana.alert.rule.enabled",
    "kibana.alert.rule.immutable",
    "kibana.alert.reason",
    "kibana.alert.rule.description",
    "kibana.version",
    "process.command_line",
];

/// Every field of the answer of `_field_caps` over `target` that has more than one type, or
/// Elasticsearch's `conflict` type, with its types.
async fn conflicting_fields(
    es: &seqwatch::es::EsClient,
    target: &str,
) -> (
    BTreeMap<String, Vec<String>>,
    Vec<String>,
    BTreeMap<String, Vec<String>>,
) {
    let caps = es
        .field_caps_detail(&[target.to_owned()], &["*".to_owned()])
        .await
        .expect("field caps");
    let all: BTreeMap<String, Vec<String>> = caps.mapping_types.into_iter().collect();
    let conflicts = all
        .iter()
        .filter(|(_, types)| types.len() != 1 || types.iter().any(|t| t == "conflict"))
        .map(|(field, types)| (field.clone(), types.clone()))
        .collect();
    let mut matched = caps.matched;
    matched.sort();
    (conflicts, matched, all)
}

#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test]
async fn seqwatch_and_kibana_alerts_share_one_view_without_conflicting_field_types() {
    let fx = JobFixture::new("kibana-alias").await;
    // A space of this test's own, so Kibana's names are too.
    let space = fx.name.clone();
    let (kibana_template, _) = kibana::index_template_for_space(&space);
    let (kibana_index, _) = kibana::write_index_for_space(&space);
    let conflicting_index = format!("{}-old-mapping", fx.name);
    let _cleanup = IndexCleanup::new([kibana_index.clone(), conflicting_index.clone()]);

    let probed: Vec<&str> = TYPE_FALLBACKS.iter().map(|f| f.kibana_type).collect();
    let unsupported = fx
        .es
        .unsupported_field_types(&probed)
        .await
        .expect("probing field types");
    let (kibana_index, kibana_alias) = install_kibanas_alerts_index(&space, &unsupported);

    // The job writes the same alerts into seqwatch's index and through Kibana's alias.
    fx.load_generated(GenerateSpec {
        hosts: 8,
        rate: 1.0,
        from_ms: T0,
        to_ms: T0 + minutes(10),
        seed: 11,
        installs_per_host_hour: 24.0,
        script_rate: 0.7,
        malicious_rate: 0.3,
    })
    .await;
    let seqwatch_config = fx.config();
    let mut kibana_config = fx.config();
    kibana_config.alerts.target = AlertTarget::Kibana;
    kibana_config.alerts.kibana_space = space.clone();
    kibana_config.state.index = format!("{}-kibana", fx.state);
    assert_eq!(kibana_config.alerts.write_target(), kibana_alias);
    for config in [&seqwatch_config, &kibana_config] {
        let run = run_at(
            &fx.ctx(config, "kibana-alias"),
            &fx.rule(config),
            at_ms(T0 + minutes(10)),
        )
        .await;
        assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
        assert!(run.counts.alerts_created > 0, "{run:#?}");
    }
    let ours = fx.alerts_in(&fx.alerts).await;
    let theirs = fx.alerts_in(&kibana_alias).await;
    assert!(!ours.is_empty());
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "the same alerts in both"
    );

    // The two indices' mappings, as the node made them from the two sets of templates, are
    // one mapping (the composition in tests/kibana/alerts_mapping.rs is Elasticsearch's).
    let both = format!("{},{kibana_index}", fx.alerts);
    let mappings = fx.es.get_mapping(&both).await.expect("the mappings");
    let differences = kibana::field_differences(
        &kibana::flat_fields(&mappings[&kibana_index]),
        &kibana::flat_fields(&mappings[&fx.alerts]),
    );
    assert!(differences.is_empty(), "{differences:#?}");
    assert_eq!(
        mappings[&fx.alerts]["dynamic"],
        mappings[&kibana_index]["dynamic"]
    );

    // One alias over both, as a data view over both would see them.
    let view = format!("{}-view", fx.name);
    es_request_ok(
        "POST",
        "/_aliases",
        Some(&json!({"actions": [{"add": {"indices": [fx.alerts, kibana_index], "alias": view}}]})),
    );
    let mut expected_indices = vec![fx.alerts.clone(), kibana_index.clone()];
    expected_indices.sort();
    for target in [view.as_str(), both.as_str()] {
        let (conflicts, matched, all) = conflicting_fields(&fx.es, target).await;
        assert_eq!(matched, expected_indices, "{target}");
        assert!(conflicts.is_empty(), "{target}: {conflicts:#?}");
        assert!(all.len() > 2000, "{target}: {} fields", all.len());
        let kibana_type = |ty: &str| {
            if unsupported.contains(ty) {
                seqwatch::es::field_types::fallback_of(ty)
                    .expect("a fallback")
                    .fallback
                    .to_owned()
            } else {
                ty.to_owned()
            }
        };
        for (field, ty) in [
            ("kibana.alert.rule.enabled", "keyword".to_owned()),
            ("kibana.alert.rule.immutable", "keyword".to_owned()),
            ("kibana.alert.reason", "keyword".to_owned()),
            ("kibana.alert.reason.text", kibana_type("match_only_text")),
            ("kibana.alert.rule.description", "keyword".to_owned()),
            ("kibana.version", kibana_type("version")),
            ("process.command_line", kibana_type("wildcard")),
        ] {
            assert_eq!(all.get(field), Some(&vec![ty.clone()]), "{target}: {field}");
        }
    }

    // The check sees a conflict where there is one: seqwatch's former mapping of
    // kibana.alert.rule.enabled (boolean) next to Kibana's.
    es_request_ok(
        "PUT",
        &format!("/{conflicting_index}"),
        Some(
            &json!({"mappings": {"properties": {"kibana": {"properties": {"alert": {"properties": {
            "rule": {"properties": {"enabled": {"type": "boolean"}}}}}}}}}}),
        ),
    );
    let (conflicts, _, _) =
        conflicting_fields(&fx.es, &format!("{kibana_index},{conflicting_index}")).await;
    assert_eq!(
        conflicts.get("kibana.alert.rule.enabled"),
        Some(&vec!["boolean".to_owned(), "keyword".to_owned()]),
        "{conflicts:#?}"
    );

    // Sorting and terms aggregations on the formerly conflicting fields, across both indices.
    for field in FORMERLY_CONFLICTING {
        let with_field = json!({"exists": {"field": field}});
        let in_ours = fx.es.count(&fx.alerts, &with_field).await.expect("count");
        let in_theirs = fx
            .es
            .count(&kibana_index, &with_field)
            .await
            .expect("count");
        assert!(
            in_ours > 0 && in_ours == in_theirs,
            "{field}: {in_ours} vs {in_theirs}"
        );
        let (status, answer) = es_request(
            "POST",
            &format!("/{view}/_search"),
            Some(&json!({
                "size": 10_000,
                "query": with_field,
                "sort": [{field: {"order": "asc"}}, {"kibana.alert.uuid": {"order": "asc"}}],
                "aggs": {"values": {"terms": {"field": field, "size": 1000}}},
            })),
        );
        assert_eq!(status, 200, "{field}: {answer}");
        assert_eq!(answer["_shards"]["failed"], 0, "{field}: {answer}");
        let hits = answer["hits"]["hits"].as_array().expect("hits");
        assert_eq!(hits.len() as u64, in_ours + in_theirs, "{field}");
        let indices: BTreeSet<&str> = hits.iter().filter_map(|h| h["_index"].as_str()).collect();
        assert_eq!(indices.len(), 2, "{field}: hits from both indices");
        let keys: Vec<&Value> = hits.iter().map(|h| &h["sort"][0]).collect();
        assert!(
            keys.windows(2).all(|w| w[0].as_str() <= w[1].as_str()),
            "{field}: sorted"
        );
        let buckets = answer["aggregations"]["values"]["buckets"]
            .as_array()
            .expect("buckets");
        assert!(!buckets.is_empty(), "{field}");
        assert_eq!(answer["aggregations"]["values"]["sum_other_doc_count"], 0);
        // Every value is in both indices the same number of times (the same alerts).
        for bucket in buckets {
            assert_eq!(
                bucket["doc_count"].as_u64().expect("a count") % 2,
                0,
                "{field}: {bucket}"
            );
        }
    }

    // Kibana's templates go too (the component templates only if no other index template of
    // this node uses them).
    es_request(
        "DELETE",
        &format!("/_index_template/{kibana_template}"),
        None,
    );
    let components: Vec<String> = kibana::component_templates()
        .into_iter()
        .map(|c| c.name)
        .collect();
    es_request(
        "DELETE",
        &format!("/_component_template/{}", components.join(",")),
        None,
    );
}
