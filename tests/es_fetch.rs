//! The two-step fetch against a real Elasticsearch (run by `scripts/test` on each pinned
//! major): the same window is run once with the two-step fetch and once with the one query
//! forced (`elasticsearch.two_step_fetch = false`), into two alerts indices, and the alerts must
//! be the same while fewer events are read. The window holds null, missing and multi-valued
//! join keys, same-millisecond ties and background noise. A rule whose key field is mapped
//! as `text` in one index falls back to the one query and says so. The tests are ignored unless
//! asked for (`--include-ignored`, as `scripts/test` does); run without a node they fail.

mod common;
// The shared fixture has helpers only es_job.rs uses.
#[allow(dead_code)]
#[path = "es_job/fixture.rs"]
mod fixture;

use serde_json::{json, Value};

use seqwatch::config::Config;
use seqwatch::es::BulkCreate;
use seqwatch::generate::{GenerateSpec, DEFEND_INDEX};
use seqwatch::state::{RunDoc, RunStatus};

use common::bent::bent_events;
use fixture::{at_ms, run_at, JobFixture};

/// 2026-11-18T06:13:20Z, as in `es_job.rs`.
const T0: i64 = 1_795_000_000_000;
const SPAN_MS: i64 = 12 * 60 * 1000;

/// A generated window bent to hold null, missing and multi-valued keys, with timestamps
/// floored to 50 ms so many events tie (ES then orders them by `_shard_doc`).
fn bent_window(fx: &JobFixture, seed: u64) -> Vec<BulkCreate> {
    let spec = GenerateSpec {
        hosts: 6,
        rate: 8.0,
        from_ms: T0,
        to_ms: T0 + SPAN_MS,
        seed,
        installs_per_host_hour: 40.0,
        script_rate: 0.7,
        malicious_rate: 0.3,
    };
    bent_events(spec)
        .into_iter()
        .map(|(index, id, source)| {
            let index = if index == DEFEND_INDEX {
                fx.defend.clone()
            } else {
                fx.crowdstrike.clone()
            };
            BulkCreate::new(index, id, source)
        })
        .collect()
}

/// Runs the rule over the window's last 9 minutes with `two_step` into alerts/state indices
/// named with `suffix`; returns the run document and the alerts by id (without the fields
/// that name the run).
async fn run_into(
    fx: &JobFixture,
    extra_indices: &[String],
    two_step: bool,
    suffix: &str,
) -> (RunDoc, std::collections::BTreeMap<String, Value>) {
    let mut config: Config = fx.config();
    config.alerts.index = format!("{}{suffix}", fx.alerts);
    config.state.index = format!("{}{suffix}", fx.state);
    config.elasticsearch.two_step_fetch = two_step;
    let mut rule = fx.rule(&config);
    rule.rule.index.extend(extra_indices.iter().cloned());
    let ctx = fx.ctx(&config, "fetch-test");
    let run = run_at(&ctx, &rule, at_ms(T0 + SPAN_MS)).await;
    let mut alerts = fx.alerts_in(&config.alerts.index).await;
    for alert in alerts.values_mut() {
        if let Some(m) = alert.as_object_mut() {
            m.retain(|k, _| {
                !matches!(
                    k.as_str(),
                    "kibana.alert.rule.execution.uuid"
                        | "@timestamp"
                        | "kibana.alert.original_time"
                        | "kibana.alert.start"
                        | "kibana.alert.last_detected"
                        | "kibana.alert.rule.execution.timestamp"
                        | "event.ingested"
                )
            });
        }
    }
    (run, alerts)
}

#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test]
async fn two_step_fetch_gives_the_one_query_alerts_from_fewer_events() {
    let fx = JobFixture::new("two_step_fetch_gives_the_one_query_alerts").await;
    fx.load(&bent_window(&fx, 11)).await;

    let (two, two_alerts) = run_into(&fx, &[], true, "").await;
    let (one, one_alerts) = run_into(&fx, &[], false, "-one").await;

    assert_eq!(two.error, None);
    assert_eq!(one.error, None);
    assert_ne!(two.status, RunStatus::Failed);
    assert_eq!(two.fetch_strategy, "two-step");
    assert_eq!(
        one.fetch_strategy,
        "one query (elasticsearch.two_step_fetch is false)"
    );
    assert!(
        two.counts.alerts_created >= 5,
        "too few alerts ({}) for the comparison to mean much",
        two.counts.alerts_created
    );
    assert_eq!(two.counts.sequences, one.counts.sequences);
    assert_eq!(two.counts.alerts_created, one.counts.alerts_created);
    assert_eq!(
        two_alerts.keys().collect::<Vec<_>>(),
        one_alerts.keys().collect::<Vec<_>>(),
        "the two fetches wrote different alerts"
    );
    assert_eq!(two_alerts, one_alerts, "same alert ids, different contents");

    eprintln!(
        "two-step: {} events read ({} by the key scan), {} candidates; one query: {} read, {} candidates; {} alerts",
        two.counts.events_fetched,
        two.counts.key_scan_events,
        two.counts.candidates,
        one.counts.events_fetched,
        one.counts.candidates,
        two.counts.alerts_created
    );
    assert_eq!(two.counts.two_step_fetches, 1);
    assert_eq!(one.counts.two_step_fetches, 0);
    assert_eq!(one.counts.key_scan_events, 0);
    assert!(two.counts.key_scan_events > 0);
    assert!(
        two.counts.events_fetched < one.counts.events_fetched,
        "two-step read {} events, one query {}",
        two.counts.events_fetched,
        one.counts.events_fetched
    );
}

#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test]
async fn a_text_mapped_key_falls_back_to_the_one_query() {
    let fx = JobFixture::new("a_text_mapped_key_falls_back").await;
    let mut docs = bent_window(&fx, 12);
    // An index no template maps: dynamic mapping makes every string `text` (+ `.keyword`),
    // so the join keys are keyword in two indices and text in this one.
    let odd = format!("{}-odd", fx.name);
    docs.push(BulkCreate::new(
        odd.clone(),
        "odd-1",
        json!({
            "@timestamp": at_ms(T0 + SPAN_MS - 1000).to_rfc3339(),
            "event": {"category": ["process"], "type": ["start"], "action": "exec"},
            "host": {"id": "odd-host", "os": {"type": "linux"}},
            "process": {"name": "node", "args": ["npm", "install"], "entity_id": "odd-e",
                        "parent": {"entity_id": "odd-p", "name": "bash"}}
        }),
    ));
    fx.load(&docs).await;
    fx.es.refresh(&odd).await.expect("refresh");

    let (two, two_alerts) = run_into(&fx, std::slice::from_ref(&odd), true, "").await;
    let (one, one_alerts) = run_into(&fx, &[odd], false, "-one").await;
    assert_eq!(two.error, None);
    assert!(
        two.fetch_strategy
            .starts_with("one query (join key host.id is mapped as "),
        "{}",
        two.fetch_strategy
    );
    assert!(
        two.fetch_strategy.contains("text"),
        "{}",
        two.fetch_strategy
    );
    assert_eq!(two.counts.two_step_fetches, 0);
    // The mapping is judged before any key scan.
    assert_eq!(two.counts.key_scan_events, 0);
    assert_eq!(two.counts.events_fetched, one.counts.events_fetched);
    assert!(two.counts.alerts_created > 0);
    assert_eq!(two_alerts, one_alerts);
}
