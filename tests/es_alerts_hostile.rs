//! Source events with hostile values against a real Elasticsearch (run by `scripts/test` on
//! each pinned version): every planted sequence must become one shell and its building blocks,
//! the runs must succeed, and a second run must write nothing. The values are those that
//! Fleet-managed indices keep in `_source` and that Kibana's alerts index would refuse or that
//! Kibana strips (`traverse_and_mutate_doc.ts`): objects at ECS leaves, leaves at ECS objects,
//! malformed numbers, dates and IPs, huge strings, deep nesting, mixed dotted and nested keys,
//! and arrays that mix objects and leaves.
//! The tests are ignored unless asked for (`--include-ignored`, as `scripts/test` does); run
//! without a node they fail.

mod common;
#[allow(dead_code)]
#[path = "es_job/fixture.rs"]
mod fixture;
#[path = "kibana/alerts_mapping.rs"]
mod kibana;
#[path = "kibana/install.rs"]
mod kibana_install;

use serde_json::{json, Value};

use seqwatch::config::{AlertTarget, Config};
use seqwatch::es::field_types::TYPE_FALLBACKS;
use seqwatch::es::BulkCreate;
use seqwatch::state::{RunDoc, RunStatus};

use common::IndexCleanup;
use kibana_install::install_kibanas_alerts_index;

use fixture::{
    at_ms, minutes, rule_fields_mapping, run_at, JobFixture, ProcessStart, Sensor, TemplateKind,
    TruthEvent, TruthSequence,
};

/// 2026-11-18T06:13:20Z plus an hour.
const T: i64 = 1_795_000_000_000 + 3_600_000;

/// One hostile shape: a name, and the patch applied to both events of its sequence.
type Hostility = (&'static str, fn(&mut Value));

/// Every hostile shape, one sequence each. Each patch keeps the rule's own fields intact (they
/// decide whether the sequence exists at all; their odd shapes are `es_bad_events`' subject).
fn hostilities() -> Vec<Hostility> {
    vec![
        ("object-at-leaf", |v| {
            v["user"] = json!({"name": {"first": "ada", "last": "l"}, "id": "1000"});
            v["host"]["hostname"] = json!({"short": "h"});
        }),
        ("leaf-at-object", |v| {
            v["user"] = json!("root");
            v["observer"] = json!("sensor-7");
            v["process"]["parent"]["code_signature"] = json!("signed");
        }),
        ("malformed-values", |v| {
            v["process"]["pid"] = json!("n/a");
            v["process"]["parent"]["pid"] = json!("-");
            v["process"]["uptime"] = json!("12 s");
            v["event"]["created"] = json!("yesterday");
            v["source"] = json!({"ip": "not-an-ip", "port": "ssh"});
            v["process"]["interactive"] = json!("maybe");
        }),
        ("huge-strings", |v| {
            v["process"]["command_line"] = json!(format!("node {}", "A".repeat(100_000)));
            v["message"] = json!("m".repeat(200_000));
            v["npm"] = json!({"script": "s".repeat(50_000)});
            v["process"]["title"] = json!("t".repeat(40_000));
        }),
        ("deep-nesting", |v| {
            let mut deep = json!("bottom");
            for _ in 0..100 {
                deep = json!({ "a": deep });
            }
            v["custom"] = deep;
            let mut ecs_deep = json!({"x": 1});
            for _ in 0..30 {
                ecs_deep = json!({ "y": ecs_deep });
            }
            v["process"]["parent"]["group_leader"] = json!({ "entity_id": ecs_deep });
        }),
        ("dotted-and-nested", |v| {
            v["user.name"] = json!("dev");
            v["user"] = json!({"id": "1000", "name.first": "ada"});
            v["process.pid"] = json!("not a pid");
            v["process.executable.path"] = json!("/usr/bin/node");
            v["host.os"] = json!({"family": "debian"});
        }),
        ("mixed-arrays", |v| {
            v["user"] = json!([{"name": "a"}, "root", {"name": {"x": 1}}]);
            v["related"] =
                json!({"ip": ["10.0.0.1", "bad", {"x": 1}], "user": [["nested"], "u", {}]});
            v["tags"] = json!(["t", {"y": 1}, [], null]);
            v["process"]["env_vars"] = json!(["A=1", {"B": 2}]);
        }),
    ]
}

/// The hostile sequences in the test's hostile index, and their truth.
fn hostile_sequences(index: &str) -> (Vec<BulkCreate>, Vec<TruthSequence>) {
    let mut docs = Vec::new();
    let mut truth = Vec::new();
    for (n, (tag, patch)) in hostilities().into_iter().enumerate() {
        let host = format!("host-{tag}");
        let parent_ms = T + n as i64 * 20_000;
        let npm_entity = format!("npm-{tag}");
        let mut events = Vec::new();
        for (ts_ms, name, args, entity, parent) in [
            (
                parent_ms,
                "node",
                &["node", "/usr/bin/npm", "install"][..],
                npm_entity.clone(),
                ("bash", "bash-entity".to_owned()),
            ),
            (
                parent_ms + 2_000,
                "sh",
                &["sh", "-c", "node setup_bun.js"][..],
                format!("sh-{tag}"),
                ("node", npm_entity.clone()),
            ),
        ] {
            let mut source = ProcessStart {
                sensor: Sensor::Defend,
                ts_ms,
                host: &host,
                name,
                args,
                entity_id: &entity,
                parent_name: Some(parent.0),
                parent_entity_id: &parent.1,
            }
            .source();
            patch(&mut source);
            let id = format!("{tag}-{name}");
            docs.push(BulkCreate::new(index, id.clone(), source));
            events.push(TruthEvent {
                index: index.to_owned(),
                id,
                ts_ms,
            });
        }
        truth.push(TruthSequence {
            sensor: Sensor::Defend,
            events,
        });
    }
    (docs, truth)
}

/// Loads the hostile sequences into a data stream that keeps them as Fleet's do: the rule's
/// fields mapped, everything else kept in `_source` (`dynamic: false`), malformed values
/// ignored. Returns their truth, placed in the backing index they went to.
async fn load_hostile(fx: &JobFixture) -> Vec<TruthSequence> {
    let index = format!("{}-hostile", fx.defend);
    fx.install_test_template(
        &format!("{}-hostile", fx.name),
        &format!("{index}*"),
        TemplateKind::DataStream,
        json!({"mapping": {"ignore_malformed": true}}),
        rule_fields_mapping(json!({
            "process": {"properties": {
                "name": {"type": "keyword"}, "args": {"type": "keyword"},
                "entity_id": {"type": "keyword"}, "pid": {"type": "long"},
                "parent": {"properties": {"name": {"type": "keyword"},
                           "entity_id": {"type": "keyword"}, "pid": {"type": "long"}}}}},
            "source": {"properties": {"ip": {"type": "ip"}}},
        })),
    )
    .await;
    let (docs, truth) = hostile_sequences(&index);
    fx.load(&docs).await.place_all(truth)
}

/// A building block of `truth`'s sequence `n`, stage `stage`, from `alerts`.
fn block<'a>(
    alerts: &'a std::collections::BTreeMap<String, Value>,
    truth: &[TruthSequence],
    n: usize,
    stage: usize,
) -> &'a Value {
    let id = &truth[n].block_ids()[stage];
    alerts
        .get(id)
        .unwrap_or_else(|| panic!("building block {id} of sequence {n} missing"))
}

/// Two runs of the job at the same instant with `config`: the first alerts every hostile
/// sequence whole and succeeds, the second writes nothing. Returns the alerts of `target`.
async fn alert_twice(
    fx: &JobFixture,
    config: &Config,
    target: &str,
    truth: &[TruthSequence],
) -> std::collections::BTreeMap<String, Value> {
    let rule = fx.rule(config);
    let ctx = fx.ctx(config, "replica-a");
    let now = at_ms(T + minutes(5));
    let first: RunDoc = run_at(&ctx, &rule, now).await;
    assert_eq!(
        first.status,
        RunStatus::Succeeded,
        "{target}: {:?} {:?}",
        first.error,
        first.warnings
    );
    assert_eq!(first.counts.alerts_created, truth.len() as u64, "{target}");
    assert_eq!(
        first.counts.building_blocks_created,
        2 * truth.len() as u64,
        "{target}"
    );
    assert!(first.counts.source_values_dropped > 0, "{target}");
    let alerts = fx.alerts_in(target).await;
    assert_eq!(
        alerts.len(),
        3 * truth.len(),
        "{target}: a shell and two blocks each"
    );
    for t in truth {
        assert!(alerts.contains_key(&t.shell_id()), "{target}");
    }
    let second = run_at(&ctx, &rule, now).await;
    assert_eq!(
        second.status,
        RunStatus::Succeeded,
        "{target}: {:?}",
        second.error
    );
    assert_eq!(second.counts.alerts_created, 0, "{target}");
    assert_eq!(second.counts.building_blocks_created, 0, "{target}");
    assert_eq!(
        second.counts.duplicates_skipped,
        truth.len() as u64,
        "{target}"
    );
    assert_eq!(fx.alerts_in(target).await.len(), alerts.len(), "{target}");
    alerts
}

#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test]
async fn hostile_source_values_never_stop_a_rule_and_every_sequence_is_alerted_whole() {
    let fx = JobFixture::new("alerts-hostile").await;
    let truth = load_hostile(&fx).await;

    // Into seqwatch's own index, and through Kibana's alias onto Kibana's own alerts index
    // (with this node's fallbacks for the types it lacks), in a space of this test's own.
    let space = fx.name.clone();
    let (kibana_index, _) = kibana::write_index_for_space(&space);
    let _cleanup = IndexCleanup::new([kibana_index]);
    let probed: Vec<&str> = TYPE_FALLBACKS.iter().map(|f| f.kibana_type).collect();
    let unsupported = fx
        .es
        .unsupported_field_types(&probed)
        .await
        .expect("probing field types");
    let (_, kibana_alias) = install_kibanas_alerts_index(&space, &unsupported);
    let mut kibana_config = fx.config();
    kibana_config.alerts.target = AlertTarget::Kibana;
    kibana_config.alerts.kibana_space = space;
    kibana_config.state.index = format!("{}-kibana", fx.state);

    let alerts = alert_twice(&fx, &fx.config(), &fx.alerts, &truth).await;
    let in_kibana = alert_twice(&fx, &kibana_config, &kibana_alias, &truth).await;
    assert_eq!(
        alerts.keys().collect::<Vec<_>>(),
        in_kibana.keys().collect::<Vec<_>>(),
        "the same alerts in both"
    );
    for written in [&alerts, &in_kibana] {
        hostile_values_were_handled_as_kibana_handles_them(written, &truth);
    }
}

/// What Kibana's traversal drops is gone from the building blocks; what it keeps is there.
fn hostile_values_were_handled_as_kibana_handles_them(
    alerts: &std::collections::BTreeMap<String, Value>,
    truth: &[TruthSequence],
) {
    let names: Vec<&str> = hostilities().iter().map(|(n, _)| *n).collect();
    let at = |tag: &str| names.iter().position(|n| *n == tag).unwrap();
    // What Kibana's traversal drops is gone; what it keeps is there.
    let b = block(alerts, truth, at("object-at-leaf"), 0);
    assert_eq!(b["user"], json!({"id": "1000"}));
    assert!(b["host"].get("hostname").is_none());
    let b = block(alerts, truth, at("leaf-at-object"), 1);
    assert!(b.get("user").is_none() && b.get("observer").is_none());
    assert!(b["process"]["parent"].get("code_signature").is_none());
    let b = block(alerts, truth, at("malformed-values"), 0);
    for gone in ["pid", "uptime", "interactive"] {
        assert!(b["process"].get(gone).is_none(), "process.{gone} kept");
    }
    assert!(
        b.get("source").is_none(),
        "source.ip and source.port (a long) go, and the emptied source with them"
    );
    assert!(b["event"].get("created").is_none());
    assert!(b.get("kibana.alert.original_event.created").is_none());
    let b = block(alerts, truth, at("huge-strings"), 0);
    assert_eq!(
        b["process"]["command_line"].as_str().map(str::len),
        Some(100_005)
    );
    assert_eq!(b["message"].as_str().map(str::len), Some(200_000));
    let b = block(alerts, truth, at("deep-nesting"), 0);
    assert_eq!(
        b["custom"].pointer(&"/a".repeat(100)),
        Some(&json!("bottom"))
    );
    assert!(
        b["process"]["parent"].get("group_leader").is_none(),
        "an object at process.parent.group_leader.entity_id (a keyword) goes, and the emptied group_leader with it"
    );
    let b = block(alerts, truth, at("dotted-and-nested"), 0);
    assert_eq!(b["user.name"], json!("dev"));
    assert_eq!(
        b["user"],
        json!({"id": "1000"}),
        "user.name is a keyword, so user.name.first goes"
    );
    assert!(b.get("process.pid").is_none());
    assert!(b.get("process.executable.path").is_none());
    assert_eq!(b["host.os"], json!({"family": "debian"}));
    let b = block(alerts, truth, at("mixed-arrays"), 0);
    assert_eq!(b["user"], json!([{"name": "a"}]));
    assert_eq!(
        b["related"],
        json!({"ip": ["10.0.0.1"], "user": [["nested"], "u"]})
    );
    assert_eq!(b["tags"], json!(["t", null]));
    assert_eq!(b["process"]["env_vars"], json!(["A=1"]));
}
