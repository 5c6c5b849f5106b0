//! Alert enrichment against a real Elasticsearch: Kibana's asset criticality and risk score
//! indices, created with Kibana's own mappings, hold entries for a host and a user; a run
//! writes two sequences' alerts, and those naming that host or user carry the fields Kibana's
//! alert enrichment sets, in its shapes, with the values the indices' `fields` give. Without
//! the indices the alerts are written as they are. Kibana paths are relative to
//! `x-pack/solutions/security/plugins/security_solution/server/lib/` in elastic/kibana. The
//! tests are ignored unless asked for (`--include-ignored`, as `scripts/test` does); run
//! without a node they fail.

mod common;
#[allow(dead_code)] // es_job's fixture; this file uses part of it.
#[path = "es_job/fixture.rs"]
mod fixture;

use std::collections::BTreeMap;

use serde_json::{json, Value};

use seqwatch::entity_enrichment::EnrichmentIndex;
use seqwatch::es::BulkCreate;
use seqwatch::state::RunStatus;

use common::IndexCleanup;
use fixture::{at_ms, install_sequence, minutes, run_at, JobFixture, Sensor, TruthSequence};

/// 2026-11-18T06:13:20Z, as in es_job.
const T0: i64 = 1_795_000_000_000;

fn keyword() -> Value {
    json!({"type": "keyword"})
}

/// `mappingFromFieldMap(assetCriticalityFieldMap, 'strict')`, the mapping Kibana's
/// `AssetCriticalityDataClient.createOrUpdateIndex` gives the index
/// (`entity_analytics/asset_criticality/constants.ts`, mappings version 4).
fn asset_criticality_mappings() -> Value {
    let criticality = json!({"properties": {"criticality": keyword()}});
    let entity = json!({"properties": {"name": keyword(), "asset": criticality}});
    json!({
        "dynamic": "strict",
        "properties": {
            "@timestamp": {"type": "date"},
            "id_field": keyword(),
            "id_value": keyword(),
            "criticality_level": keyword(),
            "updated_at": {"type": "date"},
            "asset": criticality,
            "host": entity,
            "user": entity,
            "event": {"properties": {"ingested": {"type": "date"}}},
            "service": entity,
            "entity": {"properties": {"id": keyword(), "asset": criticality}}
        }
    })
}

/// `mappingFromFieldMap(riskScoreFieldMap, false)`, the mapping the risk engine gives the
/// latest index (`entity_analytics/risk_score/configurations.ts`; `createOrUpdateIndex` in
/// `risk_score_data_client.ts`). Every type, `flattened` included, exists on both pinned
/// integ-test distributions: no fallback.
fn risk_score_mappings() -> Value {
    let float = json!({"type": "float"});
    let risk = json!({
        "type": "object",
        "properties": {
            "id_field": keyword(),
            "id_value": keyword(),
            "calculated_level": keyword(),
            "calculated_score": float,
            "calculated_score_norm": float,
            "category_1_score": float,
            "category_1_count": {"type": "long"},
            "modifiers": {"type": "object", "properties": {
                "type": keyword(),
                "subtype": keyword(),
                "modifier_value": float,
                "contribution": float,
                "metadata": {"type": "flattened"}
            }},
            "inputs": {"type": "object", "properties": {
                "id": keyword(),
                "index": keyword(),
                "category": keyword(),
                "description": keyword(),
                "risk_score": float,
                "timestamp": {"type": "date"}
            }},
            "notes": keyword()
        }
    });
    let entity = json!({"properties": {"name": keyword(), "risk": risk}});
    json!({
        "dynamic": false,
        "properties": {
            "@timestamp": {"type": "date"},
            "event": {"properties": {"ingested": {"type": "date"}}},
            "host": entity,
            "user": entity,
            "service": entity
        }
    })
}

fn create_index(name: &str, mappings: Value) {
    let (status, body) = common::es_request(
        "PUT",
        &format!("/{name}"),
        Some(&json!({"mappings": mappings})),
    );
    assert_eq!(status, 200, "creating {name}: {body}");
}

/// An asset criticality record as `AssetCriticalityDataClient.upsert` writes it (id
/// `<id_field>:<id_value>`, the implicit entity fields of `getImplicitEntityFields`).
fn criticality_record(index: &str, kind: &str, name: &str, level: &str) -> BulkCreate {
    BulkCreate::new(
        index,
        format!("{kind}.name:{name}"),
        json!({
            "@timestamp": "2026-11-18T00:00:00.000Z",
            "id_field": format!("{kind}.name"),
            "id_value": name,
            "criticality_level": level,
            "asset": {"criticality": level},
            kind: {"name": name, "asset": {"criticality": level}}
        }),
    )
}

/// A latest risk score as the risk engine writes it.
fn risk_record(index: &str, kind: &str, name: &str, level: &str, score: f64) -> BulkCreate {
    BulkCreate::new(
        index,
        format!("{kind}:{name}"),
        json!({
            "@timestamp": "2026-11-18T00:00:00.000Z",
            kind: {"name": name, "risk": {
                "id_field": format!("{kind}.name"),
                "id_value": name,
                "calculated_level": level,
                "calculated_score": score * 2.5,
                "calculated_score_norm": score,
                "category_1_score": score * 2.5,
                "category_1_count": 3,
                "inputs": [],
                "notes": []
            }}
        }),
    )
}

/// The alerts of `truth` (shell and building blocks), by id.
fn alerts_of<'a>(alerts: &'a BTreeMap<String, Value>, truth: &TruthSequence) -> Vec<&'a Value> {
    let ids: Vec<String> = std::iter::once(truth.shell_id())
        .chain(truth.block_ids())
        .collect();
    let found: Vec<&Value> = ids.iter().filter_map(|id| alerts.get(id)).collect();
    assert_eq!(found.len(), ids.len(), "every alert of the sequence exists");
    found
}

/// Entries for the Defend sequence's host and both sequences' users; the alerts naming them
/// carry Kibana's fields: criticality as a dotted key, risk nested, the score as the float the
/// index's `fields` give (`host_risk.ts`, `user_risk.ts`, `asset_criticality.ts` under
/// `detection_engine/rule_types/utils/enrichments/enrichment_by_type/`). Shells and building
/// blocks alike. The alerts index maps the fields, so they can be searched.
#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test]
async fn alerts_carry_the_criticality_and_risk_of_their_host_and_user() {
    let fx = JobFixture::new("enrichment").await;
    let mut config = fx.config();
    config.alerts.kibana_space = fx.name.clone();
    let criticality = EnrichmentIndex::AssetCriticality.name(&fx.name);
    let risk = EnrichmentIndex::RiskScore.name(&fx.name);
    let _cleanup = IndexCleanup::new([criticality.clone(), risk.clone()]);
    create_index(&criticality, asset_criticality_mappings());
    create_index(&risk, risk_score_mappings());

    // Defend: host `h-crit.build`, user `dev`; CrowdStrike: host `h-plain-ci`, user `runner`.
    let now = T0 + minutes(10);
    let (mut docs, defend) = install_sequence(
        &fx,
        Sensor::Defend,
        "e1",
        "h-crit",
        T0 + minutes(4),
        T0 + minutes(4) + 2_000,
    );
    let (more, crowdstrike) = install_sequence(
        &fx,
        Sensor::CrowdStrike,
        "e2",
        "h-plain",
        T0 + minutes(6),
        T0 + minutes(6) + 2_000,
    );
    docs.extend(more);
    let placed = fx.load(&docs).await;
    let (defend, crowdstrike) = (placed.place(defend), placed.place(crowdstrike));
    let entries = [
        criticality_record(&criticality, "host", "h-crit.build", "high_impact"),
        criticality_record(&criticality, "user", "runner", "medium_impact"),
        // A host entry named like the Defend sequence's user is not the user's.
        criticality_record(&criticality, "host", "dev", "low_impact"),
        // More digits than a float holds: the alert gets what `fields` returns.
        risk_record(&risk, "host", "h-crit.build", "High", 71.234567891),
        risk_record(&risk, "user", "dev", "Critical", 93.5),
    ];
    let items = fx.es.bulk_create(&entries).await.expect("loading entries");
    assert_eq!(
        seqwatch::es::BulkSummary::of(&items).created,
        entries.len(),
        "{items:?}"
    );
    fx.es
        .refresh(&format!("{criticality},{risk}"))
        .await
        .expect("refresh");

    let rule = fx.rule(&config);
    let ctx = fx.ctx(&config, "enrichment-test");
    let run = run_at(&ctx, &rule, at_ms(now)).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert_eq!(run.counts.alerts_created, 2, "{run:#?}");
    assert_eq!(run.counts.alerts_enriched, 6, "every alert names an entry");
    assert_eq!(run.counts.enrichment_failures, 0);

    let alerts = fx.alerts_in(&fx.alerts).await;
    for alert in alerts_of(&alerts, &defend) {
        assert_eq!(alert["host"]["name"], json!("h-crit.build"));
        assert_eq!(alert["host.asset.criticality"], json!("high_impact"));
        assert_eq!(
            alert["host"]["risk"],
            // The float nearest 71.234567891, as the `fields` API writes it; not the source.
            json!({"calculated_level": "High", "calculated_score_norm": 71.234566}),
            "{alert:#}"
        );
        assert_eq!(
            alert["user"]["risk"],
            json!({"calculated_level": "Critical", "calculated_score_norm": 93.5})
        );
        assert!(alert.get("user.asset.criticality").is_none(), "{alert:#}");
    }
    for alert in alerts_of(&alerts, &crowdstrike) {
        assert!(alert.get("host.asset.criticality").is_none(), "{alert:#}");
        assert!(alert["host"].get("risk").is_none(), "{alert:#}");
        assert_eq!(alert["user.asset.criticality"], json!("medium_impact"));
        assert!(alert["user"].get("risk").is_none(), "{alert:#}");
    }
    // Searchable, as in Kibana's alerts index: the template maps the fields.
    let count = |query: Value| {
        let es = fx.es.clone();
        let index = fx.alerts.clone();
        async move { es.count(&index, &query).await.expect("count") }
    };
    assert_eq!(
        count(json!({"term": {"host.asset.criticality": "high_impact"}})).await,
        3
    );
    assert_eq!(
        count(json!({"term": {"user.risk.calculated_level": "Critical"}})).await,
        3
    );
    assert_eq!(
        count(json!({"range": {"host.risk.calculated_score_norm": {"gt": 71, "lt": 72}}})).await,
        3
    );
}

/// Kibana enriches from an index only when it exists; without them the run is clean and the
/// alerts are as built.
#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test]
async fn without_the_enrichment_indices_alerts_are_written_as_they_are() {
    let fx = JobFixture::new("enrichment-absent").await;
    let mut config = fx.config();
    config.alerts.kibana_space = fx.name.clone();
    let (docs, defend) = install_sequence(
        &fx,
        Sensor::Defend,
        "a1",
        "h-any",
        T0 + minutes(4),
        T0 + minutes(4) + 2_000,
    );
    let defend = fx.load(&docs).await.place(defend);
    let rule = fx.rule(&config);
    let ctx = fx.ctx(&config, "enrichment-test");
    let run = run_at(&ctx, &rule, at_ms(T0 + minutes(10))).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    assert_eq!(run.counts.alerts_created, 1);
    assert_eq!(run.counts.alerts_enriched, 0);
    assert_eq!(run.counts.enrichment_failures, 0);
    let alerts = fx.alerts_in(&fx.alerts).await;
    for alert in alerts_of(&alerts, &defend) {
        assert!(alert.get("host.asset.criticality").is_none(), "{alert:#}");
        assert!(alert["host"].get("risk").is_none(), "{alert:#}");
        assert_eq!(alert["host"]["name"], json!("h-any.build"));
    }
}
