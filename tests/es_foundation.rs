//! The Elasticsearch foundation against a real node (`scripts/es start`, or `scripts/test`,
//! which runs this against each pinned major version): templates install, hand-written Elastic
//! Defend and CrowdStrike documents load with `create` into data streams (each answer names the
//! backing index), duplicates come back as "already exists", the template types apply, term
//! and range queries find the documents, and a point in time pages with `_shard_doc`. The tests are ignored unless asked for (`--include-ignored`, as
//! `scripts/test` does); run without a node they fail.

mod common;

use std::collections::BTreeSet;

use seqwatch::es::templates::{self, ALL};
use seqwatch::es::{
    mapped_field_type, BulkCreate, BulkOutcome, BulkSummary, EsClient, EsError, EsSettings,
    HealthStatus,
};
use serde_json::{json, Value};

use common::{is_backing_index_of, require_es, unique_name, IndexCleanup};

/// A Defend and a CrowdStrike data stream unique to one test, made by the source templates on
/// the first write.
struct SourceIndices {
    defend: String,
    crowdstrike: String,
    _cleanup: IndexCleanup,
}

impl SourceIndices {
    fn new(test: &str) -> Self {
        let suffix = unique_name(test);
        let defend = format!("logs-endpoint.events.process-{suffix}");
        let crowdstrike = format!("logs-crowdstrike.fdr-{suffix}");
        SourceIndices {
            _cleanup: IndexCleanup::new([defend.clone(), crowdstrike.clone()]),
            defend,
            crowdstrike,
        }
    }

    /// Both streams, comma-separated, for multi-index requests.
    fn both(&self) -> String {
        format!("{},{}", self.defend, self.crowdstrike)
    }

    /// The one mapping of `stream`'s backing index among `mappings` (`_mapping` of a data
    /// stream answers by backing index).
    fn mapping<'m>(
        mappings: &'m std::collections::BTreeMap<String, Value>,
        stream: &str,
    ) -> &'m Value {
        let mut of_stream = mappings
            .iter()
            .filter(|(index, _)| is_backing_index_of(index, stream));
        let (_, mapping) = of_stream
            .next()
            .unwrap_or_else(|| panic!("no backing index of {stream} in {:?}", mappings.keys()));
        assert!(of_stream.next().is_none(), "{stream} has one backing index");
        mapping
    }
}

/// Elastic Defend Linux process events: an `exec` of `node .../npm install`, the `sh -c` it
/// spawns, and a `fork` at the same millisecond as the child (a timestamp tie).
fn defend_documents(index: &str) -> Vec<BulkCreate> {
    let npm_entity = "ZGVmZW5kLWFnZW50LTQyNDItMTMzNzAwMDAwMC4x";
    let common = |action: &str| {
        json!({
            "agent": {"id": "defend-agent-1", "type": "endpoint"},
            "data_stream": {"dataset": "endpoint.events.process", "namespace": "default", "type": "logs"},
            "ecs": {"version": "8.11.0"},
            "event": {"action": action, "category": ["process"], "type": ["start"], "kind": "event",
                      "dataset": "endpoint.events.process", "module": "endpoint",
                      "created": "2026-11-29T10:00:00.100Z", "ingested": "2026-11-29T10:00:05Z"},
            "host": {"id": "defend-host-1", "name": "build-1", "ip": ["10.0.0.5", "fe80::1"],
                     "os": {"type": "linux", "family": "debian", "name": "Debian GNU/Linux"}},
            "user": {"id": "1000", "name": "dev"}
        })
    };
    let mut npm = common("exec");
    npm["@timestamp"] = json!("2026-11-29T10:00:00.000Z");
    npm["event"]["sequence"] = json!(101);
    npm["process"] = json!({
        "name": "node", "executable": "/usr/bin/node", "pid": 4242, "args_count": 3,
        "args": ["node", "/usr/bin/npm", "install"], "command_line": "node /usr/bin/npm install",
        "entity_id": npm_entity, "start": "2026-11-29T09:59:59.900Z", "working_directory": "/src/app",
        "parent": {"name": "bash", "pid": 4100, "entity_id": "ZGVmZW5kLWJhc2g="},
        "Ext": {"unmapped_probe": "not-in-the-template"}
    });
    let mut child = common("exec");
    child["@timestamp"] = json!("2026-11-29T10:00:01.500Z");
    child["event"]["sequence"] = json!(102);
    child["process"] = json!({
        "name": "sh", "executable": "/usr/bin/dash", "pid": 4250, "args_count": 3,
        "args": ["sh", "-c", "node setup_bun.js"], "command_line": "sh -c node setup_bun.js",
        "entity_id": "ZGVmZW5kLXNo", "start": "2026-11-29T10:00:01.450Z",
        "parent": {"name": "node", "pid": 4242, "entity_id": npm_entity}
    });
    let mut fork = common("fork");
    fork["@timestamp"] = json!("2026-11-29T10:00:01.500Z");
    fork["event"]["sequence"] = json!(103);
    fork["process"] = json!({
        "name": "node", "executable": "/usr/bin/node", "pid": 4251, "args_count": 3,
        "args": ["node", "/usr/bin/npm", "install"], "entity_id": "ZGVmZW5kLWZvcms=",
        "parent": {"name": "node", "pid": 4242, "entity_id": npm_entity}
    });
    vec![
        BulkCreate::new(index, "defend-npm-install", npm),
        BulkCreate::new(index, "defend-sh-child", child),
        BulkCreate::new(index, "defend-node-fork", fork),
    ]
}

/// CrowdStrike FDR events as the integration's pipeline writes them: a `ProcessRollup2` of
/// `node ... install`, its child, and a `SyntheticProcessRollup2` with `Install` capitalised.
fn crowdstrike_documents(index: &str) -> Vec<BulkCreate> {
    let doc = |ts: &str, action: &str, name: &str, args: Value, entity: &str, parent: Value| {
        json!({
            "@timestamp": ts,
            "event": {"action": action, "category": ["process"], "type": ["start"], "kind": "event",
                      "dataset": "crowdstrike.fdr", "module": "crowdstrike", "created": ts},
            "host": {"id": "cs-aid-0001", "hostname": "ci-runner", "os": {"type": "linux"}},
            "observer": {"vendor": "crowdstrike", "type": "agent"},
            "process": {"name": name, "args": args, "entity_id": entity, "pid": 777,
                        "start": "2026-11-29T10:00:01Z", "parent": parent},
            "crowdstrike": {"event_simpleName": action, "ParentBaseFileName": "bash", "RawProcessId": "777"}
        })
    };
    vec![
        BulkCreate::new(
            index,
            "cs-npm-install",
            doc(
                "2026-11-29T10:00:02.000Z",
                "ProcessRollup2",
                "node",
                json!([
                    "node",
                    "/usr/lib/node_modules/npm/bin/npm-cli.js",
                    "install"
                ]),
                "12347783237538",
                json!({"name": "bash", "entity_id": "12347783200000"}),
            ),
        ),
        BulkCreate::new(
            index,
            "cs-sh-child",
            doc(
                "2026-11-29T10:00:03.000Z",
                "ProcessRollup2",
                "sh",
                json!(["sh", "-c", "node bundle.js"]),
                "12347783239999",
                json!({"name": "node", "entity_id": "12347783237538"}),
            ),
        ),
        BulkCreate::new(
            index,
            "cs-synthetic-capital-install",
            doc(
                "2026-11-29T10:00:04.000Z",
                "SyntheticProcessRollup2",
                "node",
                json!(["node", "npm", "Install"]),
                "12347783240000",
                json!({"entity_id": "12347783200000"}),
            ),
        ),
    ]
}

fn all_documents(indices: &SourceIndices) -> Vec<BulkCreate> {
    let mut ops = defend_documents(&indices.defend);
    ops.extend(crowdstrike_documents(&indices.crowdstrike));
    ops
}

/// Installs the templates, loads the six documents and refreshes.
async fn load(es: &EsClient, indices: &SourceIndices) -> Vec<BulkCreate> {
    es.setup(true).await.expect("setup");
    let ops = all_documents(indices);
    let items = es.bulk_create(&ops).await.expect("bulk");
    assert_eq!(BulkSummary::of(&items).created, ops.len(), "{items:?}");
    es.refresh(&indices.both()).await.expect("refresh");
    ops
}

#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test]
async fn setup_installs_the_templates_and_get_shows_them() {
    let es = require_es("setup_installs_the_templates_and_get_shows_them").await;
    let names = |installed: Vec<seqwatch::es::InstalledTemplate>| -> Vec<&'static str> {
        installed.into_iter().map(|t| t.name).collect()
    };
    assert_eq!(
        names(es.setup(false).await.expect("setup")),
        [templates::ALERTS_TEMPLATE, templates::STATE_TEMPLATE]
    );
    let installed = es.setup(true).await.expect("setup with source templates");
    // The integ-test distribution lacks four of Kibana's types the alerts template uses.
    let fallbacks: Vec<(&str, &str)> = installed[0]
        .type_fallbacks
        .iter()
        .map(|f| (f.kibana_type, f.fallback))
        .collect();
    assert_eq!(
        fallbacks,
        [
            ("wildcard", "keyword"),
            ("match_only_text", "text"),
            ("version", "keyword"),
            ("scaled_float", "double")
        ]
    );
    assert!(installed[1..].iter().all(|t| t.type_fallbacks.is_empty()));
    assert_eq!(names(installed), ALL.map(|t| t.name));
    for template in &ALL {
        let got = es
            .get_index_template(template.name)
            .await
            .expect("get template")
            .unwrap_or_else(|| panic!("{} not installed", template.name));
        assert_eq!(got["index_patterns"], json!([template.index_pattern]));
        assert_eq!(got["_meta"]["managed_by"], "seqwatch");
        let ours = template.body().expect("body");
        assert_eq!(got["priority"], ours["priority"]);
        assert_eq!(
            got.get("data_stream").is_some(),
            template.source_indices,
            "{}: the sources are data streams",
            template.name
        );
        assert_eq!(
            got["template"]["mappings"]["dynamic"],
            ours["template"]["mappings"]["dynamic"]
        );
    }
    // An older alerts template (as an earlier release installed it) is named by validate,
    // and setup replaces it.
    let config = seqwatch::config::Config::default();
    let mut older = ALL[0].body().expect("body");
    older["version"] = json!(3);
    let kibana_types: Vec<&str> = seqwatch::es::field_types::types_with_fallbacks(&older)
        .into_iter()
        .collect();
    let missing_types = es
        .unsupported_field_types(&kibana_types)
        .await
        .expect("probing field types");
    seqwatch::es::field_types::apply_type_fallbacks(&mut older, &missing_types);
    es.put_index_template(templates::ALERTS_TEMPLATE, &older)
        .await
        .expect("installing an older template");
    let problems = seqwatch::validate::check_cluster(&es, &config, &[]).await;
    assert!(
        problems.contains(
            &"index template seqwatch-alerts (alerts) is version 3, this seqwatch installs version 4: run `seqwatch setup` (docs/upgrading.md)".to_owned()
        ),
        "{problems:?}"
    );
    es.setup(false).await.expect("setup again");
    let installed = es
        .get_index_template(templates::ALERTS_TEMPLATE)
        .await
        .expect("get template")
        .expect("installed");
    assert_eq!(installed["version"], 4);
    let problems = seqwatch::validate::check_cluster(&es, &config, &[]).await;
    assert!(
        problems.iter().all(|p| !p.contains("index template")),
        "{problems:?}"
    );

    let missing = es
        .get_index_template("seqwatch-no-such-template")
        .await
        .expect("get");
    assert_eq!(missing, None);
}

/// `create` of an existing id is a 409 `version_conflict_engine_exception` item inside an HTTP
/// 200 answer: ES's `VersionType.explainConflictForWrites` ("document already exists") in
/// `server/src/main/java/org/elasticsearch/index/VersionType.java`, status CONFLICT from
/// `server/src/main/java/org/elasticsearch/index/engine/VersionConflictEngineException.java`.
#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test]
async fn bulk_create_loads_documents_and_reports_duplicates_and_failures() {
    let es = require_es("bulk_create_loads_documents").await;
    let indices = SourceIndices::new("bulk");
    es.setup(true).await.expect("setup");
    let ops = all_documents(&indices);

    let first = es.bulk_create(&ops).await.expect("first load");
    assert_eq!(
        BulkSummary::of(&first),
        BulkSummary {
            created: 6,
            already_existed: 0,
            failed: 0
        }
    );
    // Each answer names the backing index the data stream put the document in.
    for (item, op) in first.iter().zip(&ops) {
        assert_eq!(item.id, op.id);
        assert!(is_backing_index_of(&item.index, &op.index), "{item:?}");
    }

    let second = es.bulk_create(&ops).await.expect("second load");
    assert!(
        second
            .iter()
            .all(|item| item.outcome == BulkOutcome::AlreadyExists),
        "{second:?}"
    );

    // One new, one duplicate, one the mapping refuses (process.pid is a long): HTTP 200 with
    // errors:true, judged per item.
    let mut bad = defend_documents(&indices.defend).remove(0);
    bad.id = "defend-bad-pid".into();
    bad.document["process"]["pid"] = json!("not-a-number");
    let mut fresh = crowdstrike_documents(&indices.crowdstrike).remove(0);
    fresh.id = "cs-fresh".into();
    let mixed = es
        .bulk_create(&[fresh, ops[1].clone(), bad])
        .await
        .expect("mixed load");
    assert_eq!(mixed[0].outcome, BulkOutcome::Created);
    assert_eq!(mixed[1].outcome, BulkOutcome::AlreadyExists);
    match &mixed[2].outcome {
        BulkOutcome::Failed {
            status,
            error_type,
            reason,
        } => {
            assert_eq!(*status, 400, "{reason}");
            assert!(
                error_type.ends_with("parsing_exception"),
                "{error_type}: {reason}"
            );
        }
        other => panic!("a string pid must be refused, got {other:?}"),
    }
    es.refresh(&indices.both()).await.expect("refresh");
    assert_eq!(
        es.count(&indices.both(), &json!({"match_all": {}}))
            .await
            .expect("count"),
        7
    );
}

#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test]
async fn source_templates_apply_their_ecs_types() {
    let es = require_es("source_templates_apply_their_ecs_types").await;
    let indices = SourceIndices::new("types");
    load(&es, &indices).await;
    let mappings = es.get_mapping(&indices.both()).await.expect("mapping");
    assert_eq!(mappings.len(), 2, "{:?}", mappings.keys());
    for index in [&indices.defend, &indices.crowdstrike] {
        let mapping = SourceIndices::mapping(&mappings, index);
        for (field, ty) in [
            ("@timestamp", "date"),
            ("event.created", "date"),
            ("event.ingested", "date"),
            ("process.start", "date"),
            ("process.pid", "long"),
            ("process.args_count", "long"),
            ("process.name", "keyword"),
            ("process.args", "keyword"),
            ("process.entity_id", "keyword"),
            ("process.parent.name", "keyword"),
            ("process.parent.entity_id", "keyword"),
            ("host.id", "keyword"),
            ("host.os.type", "keyword"),
            ("host.ip", "ip"),
            ("event.action", "keyword"),
            ("event.type", "keyword"),
            ("event.category", "keyword"),
            ("process.command_line", "keyword"),
        ] {
            assert_eq!(
                mapped_field_type(mapping, field),
                Some(ty),
                "{index} {field}"
            );
        }
    }
    let defend = SourceIndices::mapping(&mappings, &indices.defend);
    assert_eq!(mapped_field_type(defend, "event.sequence"), Some("long"));
    // dynamic: false (as in production): the unknown field is kept in _source, not mapped.
    assert_eq!(
        mapped_field_type(defend, "process.Ext.unmapped_probe"),
        None
    );
    let crowdstrike = SourceIndices::mapping(&mappings, &indices.crowdstrike);
    // Dynamic strings become keyword, like ecs@mappings in production.
    assert_eq!(
        mapped_field_type(crowdstrike, "crowdstrike.ParentBaseFileName"),
        Some("keyword")
    );
    assert_eq!(
        mapped_field_type(crowdstrike, "crowdstrike.RawProcessId"),
        Some("keyword")
    );
}

/// A term query on a keyword field matches a document when any value of the array equals the
/// term exactly, case included (`KeywordFieldMapper` indexes each value as one untokenised
/// term: `server/src/main/java/org/elasticsearch/index/mapper/KeywordFieldMapper.java`), which
/// is how EQL's `process.args == "install"` is pushed down.
#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test]
async fn loaded_documents_are_searchable_by_term_and_range() {
    let es = require_es("loaded_documents_are_searchable").await;
    let indices = SourceIndices::new("search");
    load(&es, &indices).await;
    let both = indices.both();
    let count = |query: Value| {
        let es = es.clone();
        let both = both.clone();
        async move { es.count(&both, &query).await.expect("count") }
    };
    assert_eq!(count(json!({"term": {"process.args": "install"}})).await, 3);
    assert_eq!(count(json!({"term": {"process.args": "Install"}})).await, 1);
    assert_eq!(count(json!({"term": {"process.args": "instal"}})).await, 0);
    assert_eq!(
        count(json!({"terms": {"event.action": ["exec", "ProcessRollup2"]}})).await,
        4
    );
    assert_eq!(
        count(json!({"range": {"@timestamp": {"gte": "2026-11-29T10:00:01.500Z", "lte": "2026-11-29T10:00:03.000Z"}}})).await,
        4
    );
    assert_eq!(
        count(json!({"range": {"@timestamp": {"gt": "2026-11-29T10:00:01.500Z", "lt": "2026-11-29T10:00:03.000Z"}}})).await,
        1
    );
    assert_eq!(count(json!({"term": {"host.ip": "10.0.0.5"}})).await, 3);
    assert_eq!(
        count(json!({"exists": {"field": "process.parent.name"}})).await,
        5
    );
    // Not mapped (dynamic: false): in _source but not searchable.
    assert_eq!(
        count(json!({"term": {"process.Ext.unmapped_probe": "not-in-the-template"}})).await,
        0
    );
}

/// Pages through both indices with a point in time, sorted `@timestamp` then `_shard_doc`
/// (the implicit tiebreaker that ES EQL's `Ordinal` uses:
/// `server/src/main/java/org/elasticsearch/search/sort/ShardDocSortField.java`), so that ties
/// within a millisecond still have a total, repeatable order.
#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test]
async fn point_in_time_pages_with_shard_doc_and_closes() {
    let es = require_es("point_in_time_pages_with_shard_doc").await;
    let indices = SourceIndices::new("pit");
    let ops = load(&es, &indices).await;
    let mut pit = es
        .open_point_in_time(&indices.both(), "1m")
        .await
        .expect("open pit");
    let first_pit = pit.clone();

    let mut after: Option<Value> = None;
    let mut seen: Vec<(i64, i64, String)> = Vec::new();
    loop {
        let mut body = json!({
            "size": 2,
            "query": {"match_all": {}},
            "pit": {"id": pit, "keep_alive": "1m"},
            "sort": [{"@timestamp": {"order": "asc", "format": "epoch_millis"}}, {"_shard_doc": "asc"}],
            "track_total_hits": false
        });
        if let Some(after) = &after {
            body["search_after"] = after.clone();
        }
        let answer = es.search_point_in_time(&body).await.expect("search");
        pit = answer["pit_id"].as_str().map(str::to_owned).unwrap_or(pit);
        let hits = answer["hits"]["hits"].as_array().expect("hits").clone();
        if hits.is_empty() {
            break;
        }
        for hit in &hits {
            let sort = hit["sort"].as_array().expect("sort values");
            assert_eq!(sort.len(), 2, "{hit}");
            let millis = match &sort[0] {
                Value::String(text) => text.parse::<i64>().expect("epoch millis"),
                other => other.as_i64().expect("epoch millis"),
            };
            let shard_doc = sort[1].as_i64().expect("_shard_doc is a long");
            seen.push((
                millis,
                shard_doc,
                hit["_id"].as_str().expect("id").to_owned(),
            ));
        }
        after = hits.last().map(|hit| hit["sort"].clone());
        assert!(seen.len() <= ops.len(), "paging does not end");
    }

    let ids: BTreeSet<_> = seen.iter().map(|(_, _, id)| id.as_str()).collect();
    let expected: BTreeSet<_> = ops.iter().map(|op| op.id.as_str()).collect();
    assert_eq!(ids, expected);
    assert!(
        seen.windows(2)
            .all(|pair| (pair[0].0, pair[0].1) < (pair[1].0, pair[1].1)),
        "(timestamp, _shard_doc) must be strictly increasing: {seen:?}"
    );
    let tied: Vec<_> = seen
        .iter()
        .filter(|(millis, _, _)| *millis == 1_795_946_401_500)
        .collect();
    assert_eq!(
        tied.len(),
        2,
        "the two Defend events at 10:00:01.500: {seen:?}"
    );

    assert!(es.close_point_in_time(&pit).await.expect("close"));
    let reuse = json!({"size": 1, "pit": {"id": first_pit}, "sort": [{"_shard_doc": "asc"}]});
    let err = es
        .search_point_in_time(&reuse)
        .await
        .expect_err("closed pit");
    assert_eq!(err.status(), Some(404), "{err}");
    assert!(!es.close_point_in_time(&pit).await.expect("second close"));
}

#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test]
async fn health_and_refusals_from_a_real_node_are_typed() {
    let es = require_es("health_and_refusals_are_typed").await;
    let health = es.health().await.expect("health");
    assert_ne!(health.status, HealthStatus::Red);
    assert_eq!(health.number_of_nodes, 1);

    let missing = unique_name("missing");
    let err = es
        .count(&missing, &json!({"match_all": {}}))
        .await
        .expect_err("missing index");
    assert_eq!(err.status(), Some(404), "{err}");
    assert_eq!(err.error_type(), Some("index_not_found_exception"), "{err}");
    assert!(err.to_string().contains(&missing), "{err}");

    let err = es
        .count("*", &json!({"no_such_query": {}}))
        .await
        .expect_err("bad query");
    assert_eq!(err.status(), Some(400), "{err}");

    let err = es
        .put_index_template("seqwatch-test-invalid", &json!({"index_patterns": ["x-*"], "template": {"mappings": {"properties": {"a": {"type": "no_such_type"}}}}}))
        .await
        .expect_err("bad template");
    assert!(matches!(err, EsError::Status { status: 400, .. }), "{err}");
}

/// Basic auth as the node is configured: with security on (`scripts/es --security`, password
/// file in SEQWATCH_TEST_ES_PASSWORD_FILE) a request without or with wrong credentials gets a
/// 401 `security_exception`; with security off the node ignores the Authorization header.
#[ignore = "needs Elasticsearch; scripts/test runs it"]
#[tokio::test]
async fn authentication_follows_the_nodes_security_setting() {
    let es = require_es("authentication_follows_security").await;
    let url = es.url().to_owned();
    // Over HTTPS (scripts/es --tls) both pin the node's CA: only the credentials differ.
    let mut anonymous = EsSettings::new(url.clone());
    anonymous.ca_pem = common::es_ca_pem();
    let anonymous = EsClient::connect(&anonymous).expect("connect");
    let mut wrong = EsSettings::new(url);
    wrong.ca_pem = common::es_ca_pem();
    wrong.auth = Some(seqwatch::es::EsAuth::Basic {
        username: "elastic".into(),
        password: "definitely-not-the-password".to_owned().into(),
    });
    let wrong = EsClient::connect(&wrong).expect("connect");
    if common::es_auth().is_some() {
        for client in [&anonymous, &wrong] {
            let err = client.health().await.expect_err("security is on");
            assert_eq!(err.status(), Some(401), "{err}");
            assert_eq!(err.error_type(), Some("security_exception"), "{err}");
            assert!(!err.to_string().contains("definitely-not-the-password"));
        }
    } else {
        assert!(anonymous.health().await.is_ok());
        assert!(wrong.health().await.is_ok());
    }
}
