//! What every detection-job test against a real node needs: its own source data streams (as
//! Fleet's sources are; emptied at the end) and alerts and state indices (deleted at the end),
//! also on panic, a configuration and a prepared built-in rule pointed at them, loading of
//! generated or hand-written events, the alert ids the ground truth implies (from the backing
//! index each event was written to), and read-back of alerts, run documents and the checkpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use seqwatch::alert::{self, SourceEvent};
use seqwatch::config::Config;
use seqwatch::es::{BulkCreate, BulkSummary, EsClient};
use seqwatch::generate::{GenerateSpec, Generator, DEFEND_INDEX, FDR_INDEX};
use seqwatch::rule::Rule;
use seqwatch::run::{PreparedRule, RunContext, RunOutcome, RunPlan};
use seqwatch::state::{checkpoint_id, CheckpointDoc, RunDoc};
use seqwatch::window::Window;

use crate::common::{is_backing_index_of, require_es, unique_name, IndexCleanup};

/// The rule uuid the tests configure (Kibana's saved-object id, hashed into alert ids).
pub const RULE_UUID: &str = "6f1c3c1e-8a4b-4f0e-9d7a-0e5b2c9a1f00";

/// Which sensor an event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sensor {
    /// Elastic Defend (`logs-endpoint.events.process-*`).
    Defend,
    /// CrowdStrike FDR (`logs-crowdstrike.fdr-*`).
    CrowdStrike,
}

/// One event of a ground-truth sequence: where it lives in the test's indices and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruthEvent {
    /// The concrete index holding it, its hit's `_index`: for a data stream, the backing index
    /// it was written to ([`Placement::place`]), which alert ids hash.
    pub index: String,
    /// `_id`.
    pub id: String,
    /// `@timestamp`, epoch ms.
    pub ts_ms: i64,
}

/// A sequence the rule must find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruthSequence {
    /// The sensor of its events.
    pub sensor: Sensor,
    /// Stage 0 then stage 1.
    pub events: Vec<TruthEvent>,
}

impl TruthSequence {
    /// True when both events lie in `[w.from, w.to]` (a run over `w` finds exactly these:
    /// see `src/run/backfill.rs` on why a window's sequences are the stream's sequences inside it).
    pub fn inside(&self, w: &Window) -> bool {
        let (from, to) = (w.from.timestamp_millis(), w.to.timestamp_millis());
        self.events.iter().all(|e| from <= e.ts_ms && e.ts_ms <= to)
    }

    /// Time of the last event, epoch ms.
    pub fn last_ms(&self) -> i64 {
        self.events.last().map_or(i64::MIN, |e| e.ts_ms)
    }

    /// The shell alert id Kibana gives this sequence under [`RULE_UUID`].
    pub fn shell_id(&self) -> String {
        alert::shell_id(RULE_UUID, &self.source_events())
    }

    /// The building-block ids, in stage order.
    pub fn block_ids(&self) -> Vec<String> {
        alert::building_block_ids(RULE_UUID, &self.source_events())
    }

    fn source_events(&self) -> Vec<SourceEvent<'_>> {
        self.events
            .iter()
            .map(|e| SourceEvent {
                index: &e.index,
                id: &e.id,
                source: &Value::Null,
            })
            .collect()
    }
}

/// Where the documents of one load went: the concrete index that took each (for a data stream,
/// its write index then), by the target and `_id` they were sent to, as the `create` answers say.
#[derive(Debug, Clone, Default)]
pub struct Placement(BTreeMap<(String, String), String>);

impl Placement {
    fn record(&mut self, docs: &[BulkCreate], items: &[seqwatch::es::BulkItem]) {
        for (doc, item) in docs.iter().zip(items) {
            let previous = self
                .0
                .insert((doc.index.clone(), doc.id.clone()), item.index.clone());
            assert!(
                previous.is_none(),
                "{}/{} loaded twice in one load",
                doc.index,
                doc.id
            );
        }
    }

    /// The concrete index that took `id`, sent to `target`; panics when this load did not.
    pub fn concrete_index(&self, target: &str, id: &str) -> &str {
        self.0
            .get(&(target.to_owned(), id.to_owned()))
            .unwrap_or_else(|| panic!("{target}/{id} was not in this load"))
    }

    /// `truth` with each event's index the concrete index it was written to (truth built
    /// before loading names the data stream).
    pub fn place(&self, mut truth: TruthSequence) -> TruthSequence {
        for event in &mut truth.events {
            event.index = self.concrete_index(&event.index, &event.id).to_owned();
        }
        truth
    }

    /// This placement and `later`'s together (a sequence loaded in parts).
    #[allow(dead_code)] // es_job.rs includes this file too and loads no sequence in parts.
    pub fn and(mut self, later: Placement) -> Placement {
        for (key, index) in later.0 {
            assert!(self.0.insert(key, index).is_none(), "loaded twice");
        }
        self
    }

    /// [`Placement::place`] for each sequence.
    pub fn place_all(&self, truth: Vec<TruthSequence>) -> Vec<TruthSequence> {
        truth.into_iter().map(|t| self.place(t)).collect()
    }
}

/// What a test-only template makes of a new name under its pattern.
#[allow(dead_code)] // es_job itself installs none
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    /// A data stream, as the source templates and Fleet's make.
    DataStream,
    /// A plain index, for documents a data stream refuses.
    PlainIndex,
}

/// One test's indices and handles.
pub struct JobFixture {
    /// The node.
    pub es: EsClient,
    /// Unique suffix of every index of this test.
    pub name: String,
    /// Elastic Defend data stream (`logs-endpoint.events.process-<name>`).
    pub defend: String,
    /// CrowdStrike FDR data stream (`logs-crowdstrike.fdr-<name>`).
    pub crowdstrike: String,
    /// Alerts index (matches the alerts template).
    pub alerts: String,
    /// State index (matches the state template).
    pub state: String,
    _cleanup: IndexCleanup,
}

impl JobFixture {
    /// Names and cleans up the test's indices and installs the templates; panics when no node
    /// answers ([`require_es`]).
    pub async fn new(test: &str) -> JobFixture {
        let es = require_es(test).await;
        es.setup(true)
            .await
            .expect("installing the index templates");
        let name = unique_name(test);
        let defend = format!("logs-endpoint.events.process-{name}");
        let crowdstrike = format!("logs-crowdstrike.fdr-{name}");
        let alerts = format!(".seqwatch-alerts-{name}");
        let state = format!(".seqwatch-state-{name}");
        let cleanup = IndexCleanup::new([
            format!("{defend}*"),
            format!("{crowdstrike}*"),
            format!("{alerts}*"),
            format!("{state}*"),
            format!("{name}*"),
        ]);
        JobFixture {
            es,
            name,
            defend,
            crowdstrike,
            alerts,
            state,
            _cleanup: cleanup,
        }
    }

    /// The rule's index patterns for this test: like the rule's own
    /// (`logs-endpoint.events.process*`), narrowed to the test's indices.
    pub fn patterns(&self) -> Vec<String> {
        vec![
            format!("{}*", self.defend),
            format!("{}*", self.crowdstrike),
        ]
    }

    /// The default configuration with this test's alerts and state indices and rule uuid.
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        config.alerts.index = self.alerts.clone();
        config.state.index = self.state.clone();
        config.rules.uuids.insert(
            "0871a5d8-6b5f-4a12-a568-fd7bc05bd8db".into(),
            RULE_UUID.into(),
        );
        config
    }

    /// A configuration file for the `seqwatch` binary in `dir`: this node (with its credentials
    /// and CA), the built-in rule narrowed to this test's indices, this test's uuid, alerts
    /// into `alerts`, state into this test's state index, and `extra` (more TOML sections).
    pub fn binary_config(
        &self,
        dir: &std::path::Path,
        alerts: &str,
        extra: &str,
    ) -> std::path::PathBuf {
        let builtin = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("rules/nodejs-install-script.toml"),
        )
        .expect("the built-in rule file");
        let patterns = self.patterns();
        let narrowed = builtin.replace(
            r#"index = ["logs-endpoint.events.process*", "logs-crowdstrike.fdr*"]"#,
            &format!("index = [{:?}, {:?}]", patterns[0], patterns[1]),
        );
        assert_ne!(narrowed, builtin, "the rule's index line was narrowed");
        let rule_file = dir.join("rule.toml");
        std::fs::write(&rule_file, narrowed).expect("writing the rule");
        let mut es_section = format!("[elasticsearch]\nurl = {:?}\n", crate::common::es_url());
        if let Ok(file) = std::env::var("SEQWATCH_TEST_ES_PASSWORD_FILE") {
            let user = std::env::var("SEQWATCH_TEST_ES_USER").unwrap_or_else(|_| "elastic".into());
            es_section.push_str(&format!("username = {user:?}\npassword_file = {file:?}\n"));
        }
        if let Some(ca) = crate::common::es_ca_file() {
            es_section.push_str(&format!("ca_file = {ca:?}\n"));
        }
        let config = format!(
            "{es_section}[rules]\npaths = [{rule_file:?}]\n[rules.uuids]\n\"0871a5d8-6b5f-4a12-a568-fd7bc05bd8db\" = {RULE_UUID:?}\n\
             [alerts]\nindex = {alerts:?}\n[state]\nindex = {:?}\n{extra}",
            self.state,
        );
        let config_file = dir.join("seqwatch.toml");
        std::fs::write(&config_file, &config).expect("writing the configuration");
        config_file
    }

    /// The built-in rule reading this test's indices, prepared under `config`.
    pub fn rule(&self, config: &Config) -> PreparedRule {
        let mut rule = Rule::builtin().expect("the built-in rule loads");
        rule.index = self.patterns();
        PreparedRule::prepare(rule, config).expect("the built-in rule prepares")
    }

    /// A job context on this node as replica `instance`.
    pub fn ctx(&self, config: &Config, instance: &str) -> RunContext {
        RunContext::new(
            Arc::new(self.es.clone()),
            Arc::new(config.clone()),
            instance.into(),
        )
    }

    /// The data stream of `sensor`.
    pub fn index_of(&self, sensor: Sensor) -> &str {
        match sensor {
            Sensor::Defend => &self.defend,
            Sensor::CrowdStrike => &self.crowdstrike,
        }
    }

    /// Rolls the data stream of `sensor` over: what is written from now on goes to a new
    /// backing index. Returns its name.
    #[allow(dead_code)] // es_job.rs includes this file too and rolls nothing over.
    pub async fn rollover(&self, sensor: Sensor) -> String {
        let stream = self.index_of(sensor);
        let rollover = self.es.rollover(stream).await.expect("rollover");
        assert!(
            is_backing_index_of(&rollover.new_index, stream),
            "{rollover:?}"
        );
        rollover.new_index
    }

    /// Generates `spec`, bulk-loads every event into the test's data streams (the generator's
    /// `logs-endpoint.events.process-default` / `logs-crowdstrike.fdr-default` mapped to them),
    /// refreshes, and returns the expected sequences of the ground truth, placed in the backing
    /// indices their events went to.
    pub async fn load_generated(&self, spec: GenerateSpec) -> Vec<TruthSequence> {
        let mut generator = Generator::new(spec).expect("valid generator spec");
        let mut times: BTreeMap<String, i64> = BTreeMap::new();
        let mut batch = Vec::new();
        let mut created = 0usize;
        let mut placement = Placement::default();
        let mut truth = Vec::new();
        while let Some(hit) = generator.next() {
            truth.extend(generator.drain_truth());
            let index = self.map_generated_index(hit.index);
            times.insert(hit.id.clone(), hit.timestamp_ms);
            let source = hit.source_value().expect("generated JSON parses");
            batch.push(BulkCreate::new(index, hit.id, source));
            if batch.len() == 2_000 {
                created += self.bulk(&batch, &mut placement).await;
                batch.clear();
            }
        }
        truth.extend(generator.drain_truth());
        created += self.bulk(&batch, &mut placement).await;
        assert_eq!(created, times.len(), "every generated event is loaded");
        self.refresh().await;
        truth
            .into_iter()
            .filter(|t| t.expected)
            .map(|t| {
                let sensor = match t.events.first().map(|e| e.index.as_str()) {
                    Some(DEFEND_INDEX) => Sensor::Defend,
                    Some(FDR_INDEX) => Sensor::CrowdStrike,
                    other => panic!("truth names an unknown index {other:?}"),
                };
                let events = t
                    .events
                    .iter()
                    .map(|e| TruthEvent {
                        index: placement
                            .concrete_index(self.map_generated_index(&e.index), &e.id)
                            .to_owned(),
                        id: e.id.clone(),
                        ts_ms: times[&e.id],
                    })
                    .collect();
                TruthSequence { sensor, events }
            })
            .collect()
    }

    fn map_generated_index(&self, generated: &str) -> &str {
        match generated {
            DEFEND_INDEX => &self.defend,
            FDR_INDEX => &self.crowdstrike,
            other => panic!("the generator wrote to an unknown index {other:?}"),
        }
    }

    /// Loads hand-written documents (`create`, 5,000 a request), asserting all are new, and
    /// refreshes. Returns where each went, to place truth built before loading.
    pub async fn load(&self, docs: &[BulkCreate]) -> Placement {
        let mut placement = Placement::default();
        let mut created = 0;
        for batch in docs.chunks(5_000) {
            created += self.bulk(batch, &mut placement).await;
        }
        assert_eq!(created, docs.len(), "every document is new");
        self.refresh().await;
        placement
    }

    async fn bulk(&self, docs: &[BulkCreate], placement: &mut Placement) -> usize {
        let items = self.es.bulk_create(docs).await.expect("bulk load");
        let summary = BulkSummary::of(&items);
        assert_eq!(summary.failed, 0, "bulk refused documents: {items:?}");
        placement.record(docs, &items);
        summary.created
    }

    async fn refresh(&self) {
        self.es
            .refresh(&format!("{}*,{}*", self.defend, self.crowdstrike))
            .await
            .expect("refresh");
    }

    /// Installs a test-only index template (priority above the source templates' 150) so the
    /// node stores, for `pattern`, what the normal mapping would refuse or index differently,
    /// in data streams as the sources are or, for what a data stream refuses, in plain
    /// indices; `settings` are index settings merged over one shard and `0-1` replicas.
    #[allow(dead_code)] // es_job itself installs none
    pub async fn install_test_template(
        &self,
        name: &str,
        pattern: &str,
        kind: TemplateKind,
        settings: Value,
        mappings: Value,
    ) {
        let mut index_settings = json!({"number_of_shards": 1, "auto_expand_replicas": "0-1"});
        if let (Some(base), Some(extra)) = (index_settings.as_object_mut(), settings.as_object()) {
            base.extend(extra.clone());
        }
        let mut body = json!({
            "index_patterns": [pattern],
            "priority": 500,
            "template": {"settings": {"index": index_settings}, "mappings": mappings}
        });
        if kind == TemplateKind::DataStream {
            body["data_stream"] = json!({});
        }
        self.es
            .put_index_template(name, &body)
            .await
            .expect("installing a test template");
    }

    /// Every alert in `index`, by `_id` (= `kibana.alert.uuid`).
    pub async fn alerts_in(&self, index: &str) -> BTreeMap<String, Value> {
        // Runs write alerts without waiting for a refresh (deduplication reads them in real
        // time); a search needs one. A missing index is left to the search to report.
        let _ = self.es.refresh(index).await;
        let docs = self
            .es
            .search_docs(index, json!({"match_all": {}}), "@timestamp", 10_000)
            .await
            .expect("reading the alerts");
        assert!(docs.len() < 10_000, "too many alerts to read in one page");
        let mut out = BTreeMap::new();
        for d in docs {
            let id = d["kibana.alert.uuid"]
                .as_str()
                .expect("alerts carry kibana.alert.uuid")
                .to_owned();
            assert!(
                out.insert(id.clone(), d).is_none(),
                "alert {id} stored twice"
            );
        }
        out
    }

    /// The shell alerts of `index` (no `kibana.alert.group.index`), by id.
    pub async fn shells_in(&self, index: &str) -> BTreeSet<String> {
        self.alerts_in(index)
            .await
            .into_iter()
            .filter(|(_, d)| d.get("kibana.alert.group.index").is_none())
            .map(|(id, _)| id)
            .collect()
    }

    /// Every run document of state index `state`, oldest first.
    pub async fn run_docs(&self, state: &str) -> Vec<RunDoc> {
        // Run documents are written without a refresh wait; a missing index has none.
        let _ = self.es.refresh(state).await;
        let mut docs: Vec<RunDoc> = self
            .es
            .search_docs(state, json!({"term": {"type": "run"}}), "started_at", 5_000)
            .await
            .expect("reading run documents")
            .into_iter()
            .map(|d| serde_json::from_value(d).expect("a run document"))
            .collect();
        docs.sort_by_key(|d| (d.started_at, d.finished_at));
        docs
    }

    /// The rule's checkpoint in state index `state`, if any.
    pub async fn checkpoint(&self, state: &str) -> Option<CheckpointDoc> {
        self.es
            .get_versioned(state, &checkpoint_id(RULE_UUID))
            .await
            .expect("reading the checkpoint")
            .map(|d| serde_json::from_value(d.source).expect("a checkpoint document"))
    }
}

/// The run document of a run that happened (a skipped run fails the test).
pub fn ran(result: RunOutcome) -> RunDoc {
    match result {
        RunOutcome::Ran(report) => report.doc,
        RunOutcome::Skipped(holder) => {
            panic!(
                "run skipped: lease held by {} until {}",
                holder.owner, holder.until
            )
        }
    }
}

/// Runs the rule once at `now` (as `seqwatch once`).
pub async fn run_at(ctx: &RunContext, rule: &PreparedRule, now: DateTime<Utc>) -> RunDoc {
    ran(seqwatch::run::run(ctx, rule, &RunPlan::once(now)).await)
}

/// Epoch ms to an instant.
pub fn at_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("a representable instant")
}

/// Minutes as milliseconds.
pub const fn minutes(n: i64) -> i64 {
    n * 60_000
}

/// Every alert id of `truth`'s sequences: shells and building blocks.
pub fn all_ids(truth: &[&TruthSequence]) -> BTreeSet<String> {
    truth
        .iter()
        .flat_map(|t| std::iter::once(t.shell_id()).chain(t.block_ids()))
        .collect()
}

/// The shell ids of the sequences of `truth` that lie inside `window`.
pub fn expected_shells(truth: &[TruthSequence], window: &Window) -> BTreeSet<String> {
    truth
        .iter()
        .filter(|t| t.inside(window))
        .map(TruthSequence::shell_id)
        .collect()
}

/// A Linux process `exec`/`ProcessRollup2` start event, in the shape each sensor's integration
/// writes it. `args` are the process arguments; `parent` is `(name, entity_id)`, the name
/// optional.
pub struct ProcessStart<'a> {
    /// Which sensor.
    pub sensor: Sensor,
    /// `@timestamp`, epoch ms.
    pub ts_ms: i64,
    /// `host.id`.
    pub host: &'a str,
    /// `process.name`.
    pub name: &'a str,
    /// `process.args`.
    pub args: &'a [&'a str],
    /// `process.entity_id`.
    pub entity_id: &'a str,
    /// `process.parent.name`, if reported.
    pub parent_name: Option<&'a str>,
    /// `process.parent.entity_id`.
    pub parent_entity_id: &'a str,
}

impl ProcessStart<'_> {
    /// The `_source`.
    pub fn source(&self) -> Value {
        let ts = at_ms(self.ts_ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut parent = json!({"entity_id": self.parent_entity_id, "pid": 4100});
        if let Some(n) = self.parent_name {
            parent["name"] = json!(n);
        }
        let command_line = self.args.join(" ");
        match self.sensor {
            Sensor::Defend => json!({
                "@timestamp": ts,
                "agent": {"id": format!("agent-{}", self.host), "type": "endpoint"},
                "data_stream": {"dataset": "endpoint.events.process", "namespace": "default", "type": "logs"},
                "ecs": {"version": "8.11.0"},
                "event": {"action": "exec", "category": ["process"], "type": ["start"], "kind": "event",
                          "dataset": "endpoint.events.process", "module": "endpoint", "created": ts},
                "host": {"id": self.host, "name": format!("{}.build", self.host),
                         "os": {"type": "linux", "family": "debian", "name": "Debian GNU/Linux"}},
                "process": {"name": self.name, "executable": format!("/usr/bin/{}", self.name), "pid": 4242,
                            "args": self.args, "args_count": self.args.len(), "command_line": command_line,
                            "entity_id": self.entity_id, "parent": parent},
                "user": {"id": "1000", "name": "dev"}
            }),
            Sensor::CrowdStrike => json!({
                "@timestamp": ts,
                "event": {"action": "ProcessRollup2", "category": ["process"], "type": ["start"], "kind": "event",
                          "dataset": "crowdstrike.fdr", "module": "crowdstrike", "created": ts},
                "host": {"id": self.host, "hostname": format!("{}-ci", self.host), "name": format!("{}-ci", self.host),
                         "os": {"type": "linux"}},
                "observer": {"vendor": "crowdstrike", "type": "agent"},
                "process": {"name": self.name, "args": self.args, "command_line": command_line,
                            "entity_id": self.entity_id, "pid": 777, "parent": parent},
                "user": {"name": "runner"},
                "crowdstrike": {"event_simpleName": "ProcessRollup2", "RawProcessId": "777"}
            }),
        }
    }
}

/// Two documents forming one sequence of the rule: `node /usr/bin/npm install` on `host` at
/// `parent_ms`, and `sh -c node setup_bun.js` started by it at `child_ms`. Ids and entity ids
/// derive from `tag`. Returns the documents and the truth, which names the data stream until
/// the [`Placement`] of their load places it.
pub fn install_sequence(
    fixture: &JobFixture,
    sensor: Sensor,
    tag: &str,
    host: &str,
    parent_ms: i64,
    child_ms: i64,
) -> (Vec<BulkCreate>, TruthSequence) {
    let index = fixture.index_of(sensor).to_owned();
    let npm_entity = format!("npm-{tag}");
    let child_entity = format!("sh-{tag}");
    let npm = ProcessStart {
        sensor,
        ts_ms: parent_ms,
        host,
        name: "node",
        args: &["node", "/usr/bin/npm", "install"],
        entity_id: &npm_entity,
        parent_name: Some("bash"),
        parent_entity_id: "bash-entity",
    };
    let child = ProcessStart {
        sensor,
        ts_ms: child_ms,
        host,
        name: "sh",
        args: &["sh", "-c", "node setup_bun.js"],
        entity_id: &child_entity,
        parent_name: Some("node"),
        parent_entity_id: &npm_entity,
    };
    let (npm_id, child_id) = (format!("{tag}-npm"), format!("{tag}-sh"));
    let docs = vec![
        BulkCreate::new(index.clone(), npm_id.clone(), npm.source()),
        BulkCreate::new(index.clone(), child_id.clone(), child.source()),
    ];
    let truth = TruthSequence {
        sensor,
        events: vec![
            TruthEvent {
                index: index.clone(),
                id: npm_id,
                ts_ms: parent_ms,
            },
            TruthEvent {
                index,
                id: child_id,
                ts_ms: child_ms,
            },
        ],
    };
    (docs, truth)
}

/// The mapping of the rule's fields as Elastic Defend maps them (`dynamic: false`, so anything
/// else stays in `_source` unindexed), with `overrides` merged in.
#[allow(dead_code)] // es_job itself installs none
pub fn rule_fields_mapping(overrides: Value) -> Value {
    let kw = json!({"type": "keyword", "ignore_above": 1024});
    let mut m = json!({
        "dynamic": false,
        "properties": {
            "@timestamp": {"type": "date"},
            "event": {"properties": {"action": kw, "type": kw, "category": kw}},
            "host": {"properties": {"id": kw, "os": {"properties": {"type": kw}}}},
            "process": {"properties": {"name": kw, "args": kw, "entity_id": kw,
                        "parent": {"properties": {"name": kw, "entity_id": kw}}}},
        }
    });
    if let (Some(base), Some(extra)) = (m["properties"].as_object_mut(), overrides.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    m
}
