//! Alerts in Kibana's shape: for each sequence, one building-block alert per event and one
//! shell alert that ties them together, with the ids Kibana would give them.
//!
//! Pure code: documents in, documents out. Each function cites the Kibana source it follows
//! (paths relative to `x-pack/solutions/security/plugins/security_solution/server/lib/detection_engine/`
//! in elastic/kibana):
//! - `rule_types/eql/build_alert_group_from_sequence.ts` — the group, the shell, the intersection;
//! - `rule_types/factories/utils/build_alert.ts` — `buildAlertFields`, `generateAlertId`;
//! - `rule_types/factories/utils/generate_building_block_ids.ts` — building-block ids;
//! - `rule_types/factories/utils/transform_hit_to_alert.ts` and `traverse_and_mutate_doc.ts` —
//!   what of the event's `_source` is kept and copied (the traversal is in [`crate::ecs`]);
//! - `rule_types/utils/reason_formatters.ts` — `kibana.alert.reason`.
//!
//! Known differences, all deliberate: Kibana also merges the search response's `fields` into
//! `_source` (we have only `_source`), and sets `kibana.alert.url` when
//! `server.publicBaseUrl` is configured (we have no Kibana URL).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::ecs::{strip_for_alert, RemovedField, StrippedSource};

/// What an alert says about the rule that raised it (Kibana's `kibana.alert.rule.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleInfo {
    /// Kibana's rule saved-object id; hashed into every alert id.
    pub uuid: String,
    /// The detection-rules `rule_id` (stable across installs).
    pub rule_id: String,
    /// Rule name.
    pub name: String,
    /// Description.
    pub description: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// 0–100.
    pub risk_score: u32,
    /// Rule version.
    pub version: u32,
    /// `now-9m` style.
    pub from: String,
    /// `5m` style.
    pub interval: String,
    /// Most sequences per run.
    pub max_signals: usize,
    /// Index patterns the rule reads.
    pub index: Vec<String>,
    /// The EQL query text.
    pub query: String,
    /// Tags.
    pub tags: Vec<String>,
    /// References.
    pub references: Vec<String>,
    /// Authors.
    pub author: Vec<String>,
    /// Licence of the rule.
    pub license: String,
    /// MITRE ATT&CK mapping, in Kibana's `threat` array shape.
    pub threat: Value,
    /// False positives noted by the rule.
    pub false_positives: Vec<String>,
    /// Timestamp override field, if any.
    pub timestamp_override: Option<String>,
    /// Tiebreaker field, if any.
    pub tiebreaker_field: Option<String>,
    /// Event category override field, if any.
    pub event_category_override: Option<String>,
}

/// Per-run facts stamped on every alert of the run.
#[derive(Debug, Clone)]
pub struct RunInfo<'a> {
    /// Alert creation time (`@timestamp` of every alert of the run).
    pub now: DateTime<Utc>,
    /// Kibana space the alerts belong to.
    pub space_id: &'a str,
    /// Unique id of this run (`kibana.alert.rule.execution.uuid`).
    pub execution_uuid: &'a str,
    /// seqwatch version, written as `kibana.version` would be.
    pub producer_version: &'a str,
}

/// One event of a sequence as Elasticsearch returned it.
#[derive(Debug, Clone, Copy)]
pub struct SourceEvent<'a> {
    /// The concrete index (for a data stream, the backing index) — Kibana hashes this one.
    pub index: &'a str,
    /// Document id.
    pub id: &'a str,
    /// The full `_source`.
    pub source: &'a Value,
}

/// A document to write into the alerts index.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertDoc {
    /// `_id`, equal to `kibana.alert.uuid`.
    pub id: String,
    /// The sequence's shell, or one of its building blocks.
    pub kind: AlertKind,
    /// The alert.
    pub source: Value,
    /// What of the event's `_source` was left out as not fitting ECS (building blocks only;
    /// the shell is their intersection).
    pub removed: Vec<RemovedField>,
}

/// Which alert of a sequence a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// The shell alert that stands for the whole sequence.
    Shell,
    /// One event's building block (Kibana excludes these from "alerts created").
    BuildingBlock,
}

impl AlertDoc {
    /// True for a building-block alert (Kibana excludes these from "alerts created").
    pub fn is_building_block(&self) -> bool {
        self.kind == AlertKind::BuildingBlock
    }
}

/// Kibana's building-block ids: `sha256(Σ_i(ev_i._id ‖ ev_i._index ‖ R) ‖ i)`.
pub fn building_block_ids(rule_uuid: &str, events: &[SourceEvent<'_>]) -> Vec<String> {
    let mut base = String::new();
    for e in events {
        base.push_str(e.id);
        base.push_str(e.index);
        base.push_str(rule_uuid);
    }
    (0..events.len())
        .map(|i| {
            let mut h = Sha256::new();
            h.update(base.as_bytes());
            h.update(i.to_string().as_bytes());
            hex::encode(h.finalize())
        })
        .collect()
}

/// Kibana's shell id (`generateAlertId` over the shell's ancestors):
/// `sha256(Σ_i(ev_i._id ‖ ev_i._index ‖ bb_i ‖ "") ‖ R)`.
pub fn shell_id(rule_uuid: &str, events: &[SourceEvent<'_>]) -> String {
    let bb = building_block_ids(rule_uuid, events);
    let mut h = Sha256::new();
    for (e, b) in events.iter().zip(&bb) {
        h.update(e.id.as_bytes());
        h.update(e.index.as_bytes());
        h.update(b.as_bytes());
    }
    h.update(rule_uuid.as_bytes());
    hex::encode(h.finalize())
}

/// Builds the alerts of one sequence, in Kibana's order: `[shell, bb0, bb1, …]`.
/// Returns nothing for an empty sequence, or when an event is itself an alert of this rule
/// (Kibana's loop guard in `buildAlertGroupFromSequence`).
pub fn build_sequence_alerts(
    rule: &RuleInfo,
    run: &RunInfo<'_>,
    events: &[SourceEvent<'_>],
) -> Vec<AlertDoc> {
    if events.is_empty() || events.iter().any(|e| is_alert_of(e.source, &rule.uuid)) {
        return Vec::new();
    }
    let bb_ids = building_block_ids(&rule.uuid, events);
    let shell_uuid = shell_id(&rule.uuid, events);
    let now = iso_millis(run.now);

    let mut blocks: Vec<Map<String, Value>> = Vec::with_capacity(events.len());
    let mut stripped: Vec<Vec<RemovedField>> = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let (mut doc, removed) = sanitize_source(e.source);
        stripped.push(removed);
        let reason = reason(rule, e.source);
        let ancestors = vec![event_ancestor(e)];
        let original_time = timestamp_of(e.source);
        let fields = alert_fields(
            rule,
            run,
            &now,
            ancestors,
            1,
            reason,
            original_time,
            &bb_ids[i],
        );
        merge_into(&mut doc, fields);
        doc.insert("kibana.alert.building_block_type".into(), json!("default"));
        doc.insert("kibana.alert.group.id".into(), json!(shell_uuid));
        doc.insert("kibana.alert.group.index".into(), json!(i));
        blocks.push(doc);
    }

    // The shell: the intersection of the building blocks, then its own alert fields.
    let mut shell = intersect_all(&blocks);
    let reason = reason(rule, &Value::Object(shell.clone()));
    let mut ancestors = Vec::with_capacity(events.len() * 2);
    for (e, bb) in events.iter().zip(&bb_ids) {
        ancestors.push(event_ancestor(e));
        ancestors
            .push(json!({"id": bb, "type": "signal", "index": "", "depth": 1, "rule": rule.uuid}));
    }
    // Kibana reads the shell's original time from building block 0, whose `@timestamp` is the
    // alert creation time (`buildAlertFields` + `getValidDateFromDoc`), so it is `now`, not the
    // event time. Reproduced as is.
    let fields = alert_fields(
        rule,
        run,
        &now,
        ancestors,
        2,
        reason,
        Some(now.clone()),
        &shell_uuid,
    );
    for (k, v) in fields {
        shell.insert(k, v);
    }
    shell.remove("kibana.alert.building_block_type");
    shell.remove("kibana.alert.group.index");
    shell.insert("kibana.alert.group.id".into(), json!(shell_uuid));

    let mut out = Vec::with_capacity(events.len() + 1);
    out.push(AlertDoc {
        id: shell_uuid,
        kind: AlertKind::Shell,
        source: Value::Object(shell),
        removed: Vec::new(),
    });
    for ((doc, id), removed) in blocks.into_iter().zip(bb_ids).zip(stripped) {
        out.push(AlertDoc {
            id,
            kind: AlertKind::BuildingBlock,
            source: Value::Object(doc),
            removed,
        });
    }
    out
}

/// True for a field copied from the event, false for one seqwatch writes as the alert's own
/// (`@timestamp`, `event.kind`, `kibana.*` apart from the copies of `event.*` and
/// `data_stream.*`): only the first kind can be dropped to mend a refused alert.
pub fn is_source_field(path: &str) -> bool {
    const COPIES: [&str; 2] = [
        "kibana.alert.original_event.",
        "kibana.alert.original_data_stream.",
    ];
    COPIES.iter().any(|c| path.starts_with(c))
        || !(path == "@timestamp"
            || path == "event.kind"
            || path == "kibana"
            || path.starts_with("kibana."))
}

/// Removes every value at dotted `path` from `doc`, whichever of its keys are dotted
/// (`process.pid`, `{"process": {"pid"}}`, `{"process": {"parent.pid"}}`, through arrays of
/// objects); returns how many were removed.
pub fn remove_field(doc: &mut Map<String, Value>, path: &str) -> usize {
    let mut removed = usize::from(doc.remove(path).is_some());
    for (key, value) in doc.iter_mut() {
        let Some(rest) = path
            .strip_prefix(key.as_str())
            .and_then(|r| r.strip_prefix('.'))
        else {
            continue;
        };
        removed += match value {
            Value::Object(inner) => remove_field(inner, rest),
            Value::Array(items) => items
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .map(|inner| remove_field(inner, rest))
                .sum(),
            _ => 0,
        };
    }
    removed
}

fn is_alert_of(source: &Value, rule_uuid: &str) -> bool {
    lodash_get(source, "kibana.alert.rule.uuid").and_then(Value::as_str) == Some(rule_uuid)
}

fn event_ancestor(e: &SourceEvent<'_>) -> Value {
    json!({"id": e.id, "type": "event", "index": e.index, "depth": 0})
}

/// `Date.prototype.toISOString`: always milliseconds, always `Z`.
fn iso_millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The event time as Kibana renders it (`moment(@timestamp).toDate().toISOString()`).
fn timestamp_of(source: &Value) -> Option<String> {
    match source.get("@timestamp")? {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| iso_millis(t.with_timezone(&Utc)))
            .or_else(|| {
                s.parse::<i64>()
                    .ok()
                    .and_then(DateTime::from_timestamp_millis)
                    .map(iso_millis)
            }),
        Value::Number(n) => n
            .as_i64()
            .and_then(DateTime::from_timestamp_millis)
            .map(iso_millis),
        _ => None,
    }
}

/// `buildAlertFields` plus the fields `augmentAlerts`/`getCommonAlertFields` add at write time.
#[allow(clippy::too_many_arguments)]
fn alert_fields(
    rule: &RuleInfo,
    run: &RunInfo<'_>,
    now: &str,
    ancestors: Vec<Value>,
    depth: u32,
    reason: String,
    original_time: Option<String>,
    uuid: &str,
) -> Map<String, Value> {
    let parameters = json!({
        "description": rule.description,
        "risk_score": rule.risk_score,
        "severity": rule.severity,
        "rule_id": rule.rule_id,
        "version": rule.version,
        "from": rule.from,
        "to": "now",
        "max_signals": rule.max_signals,
        "index": rule.index,
        "query": rule.query,
        "language": "eql",
        "type": "eql",
        "threat": rule.threat,
        "references": rule.references,
        "author": rule.author,
        "license": rule.license,
        "false_positives": rule.false_positives,
        "timestamp_override": rule.timestamp_override,
        "tiebreaker_field": rule.tiebreaker_field,
        "event_category_override": rule.event_category_override,
        "immutable": false,
        "exceptions_list": [],
        "risk_score_mapping": [],
        "severity_mapping": [],
    });
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            m.insert(k.to_owned(), v);
        }
    };
    put("@timestamp", json!(now));
    put("event.kind", json!("signal"));
    put("kibana.space_ids", json!([run.space_id]));
    put("kibana.version", json!(run.producer_version));
    put("kibana.alert.original_time", json!(original_time));
    put("kibana.alert.ancestors", Value::Array(ancestors));
    put("kibana.alert.depth", json!(depth));
    put("kibana.alert.status", json!("active"));
    put("kibana.alert.workflow_status", json!("open"));
    put("kibana.alert.workflow_tags", json!([]));
    put("kibana.alert.workflow_assignee_ids", json!([]));
    put("kibana.alert.reason", json!(reason));
    put("kibana.alert.severity", json!(rule.severity));
    put("kibana.alert.risk_score", json!(rule.risk_score));
    put("kibana.alert.uuid", json!(uuid));
    put("kibana.alert.start", json!(now));
    put("kibana.alert.last_detected", json!(now));
    put("kibana.alert.intended_timestamp", json!(now));
    put("kibana.alert.rule.execution.type", json!("scheduled"));
    put(
        "kibana.alert.rule.execution.uuid",
        json!(run.execution_uuid),
    );
    put("kibana.alert.rule.execution.timestamp", json!(now));
    put("kibana.alert.rule.uuid", json!(rule.uuid));
    put("kibana.alert.rule.rule_id", json!(rule.rule_id));
    put("kibana.alert.rule.name", json!(rule.name));
    put("kibana.alert.rule.description", json!(rule.description));
    put("kibana.alert.rule.type", json!("eql"));
    put("kibana.alert.rule.version", json!(rule.version));
    put("kibana.alert.rule.revision", json!(0));
    put("kibana.alert.rule.from", json!(rule.from));
    put("kibana.alert.rule.to", json!("now"));
    put("kibana.alert.rule.interval", json!(rule.interval));
    put("kibana.alert.rule.max_signals", json!(rule.max_signals));
    put("kibana.alert.rule.indices", json!(rule.index));
    put("kibana.alert.rule.author", json!(rule.author));
    put("kibana.alert.rule.license", json!(rule.license));
    put("kibana.alert.rule.immutable", json!(false));
    put("kibana.alert.rule.enabled", json!(true));
    put("kibana.alert.rule.created_by", json!("seqwatch"));
    put("kibana.alert.rule.updated_by", json!("seqwatch"));
    put("kibana.alert.rule.threat", rule.threat.clone());
    put("kibana.alert.rule.references", json!(rule.references));
    put(
        "kibana.alert.rule.false_positives",
        json!(rule.false_positives),
    );
    put("kibana.alert.rule.tags", json!(rule.tags));
    put("kibana.alert.rule.risk_score_mapping", json!([]));
    put("kibana.alert.rule.severity_mapping", json!([]));
    put("kibana.alert.rule.exceptions_list", json!([]));
    put("kibana.alert.rule.actions", json!([]));
    put(
        "kibana.alert.rule.timestamp_override",
        json!(rule.timestamp_override),
    );
    put("kibana.alert.rule.parameters", parameters);
    put("kibana.alert.rule.consumer", json!("siem"));
    put("kibana.alert.rule.producer", json!("siem"));
    put(
        "kibana.alert.rule.category",
        json!("Event Correlation Rule"),
    );
    put("kibana.alert.rule.rule_type_id", json!("siem.eqlRule"));
    put("kibana.alert.rule.risk_score", json!(rule.risk_score));
    put("kibana.alert.rule.severity", json!(rule.severity));
    m
}

/// `traverseAndMutateDoc` (see [`crate::ecs`]) and the `event.kind` removal of
/// `transformHitToAlert`.
fn sanitize_source(source: &Value) -> (Map<String, Value>, Vec<RemovedField>) {
    let StrippedSource {
        mut fields,
        removed,
    } = strip_for_alert(source);
    remove_event_kind(&mut fields);
    (fields, removed)
}

/// `robustSet(event.kind, undefined)`: the flat key and the nested one.
fn remove_event_kind(doc: &mut Map<String, Value>) {
    doc.remove("event.kind");
    if let Some(Value::Object(event)) = doc.get_mut("event") {
        event.remove("kind");
    }
}

/// lodash `merge(validatedSource, alertFields)` with flat dotted keys: a key of the alert
/// fields replaces the same literal key of the source.
fn merge_into(doc: &mut Map<String, Value>, fields: Map<String, Value>) {
    for (k, v) in fields {
        doc.insert(k, v);
    }
}

/// `objectArrayIntersection` over the building blocks.
fn intersect_all(blocks: &[Map<String, Value>]) -> Map<String, Value> {
    let mut acc = match blocks.first() {
        Some(b) => Some(b.clone()),
        None => return Map::new(),
    };
    for b in &blocks[1..] {
        acc = acc.and_then(|a| intersect_pair(&a, b));
    }
    acc.unwrap_or_default()
}

/// `objectPairIntersection`: keys present in both with equal values (objects recursively,
/// arrays as lodash `intersection`). lodash compares array elements with SameValueZero, so
/// objects inside arrays (distinct references in Kibana) never survive; we reproduce that.
/// Returns `None` when nothing survives, as Kibana returns `undefined`.
fn intersect_pair(a: &Map<String, Value>, b: &Map<String, Value>) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    for (key, av) in a {
        let Some(bv) = b.get(key) else { continue };
        let merged = match (av, bv) {
            (Value::Object(ao), Value::Object(bo)) => intersect_pair(ao, bo).map(Value::Object),
            (Value::Array(aa), Value::Array(ba)) => Some(Value::Array(array_intersection(aa, ba))),
            (Value::Array(aa), other) => Some(Value::Array(array_intersection(
                aa,
                std::slice::from_ref(other),
            ))),
            (other, Value::Array(ba)) => Some(Value::Array(array_intersection(
                std::slice::from_ref(other),
                ba,
            ))),
            (x, y) if x == y && !x.is_object() => Some(x.clone()),
            _ => None,
        };
        if let Some(v) = merged {
            out.insert(key.clone(), v);
        }
    }
    (!out.is_empty()).then_some(out)
}

fn array_intersection(a: &[Value], b: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for x in a {
        let primitive = !x.is_object() && !x.is_array();
        if primitive && b.contains(x) && !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

/// lodash `getOr(null, path, doc)`: a literal top-level key wins, otherwise the nested path.
fn lodash_get<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = doc.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(doc, |cur, part| cur.get(part))
}

/// `getFieldTemplateValue`: strings and arrays (joined with ", "); empty, `"-"` and `["-"]`
/// count as absent; numbers and booleans are dropped, as `field.length` is undefined for them.
fn template_value(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if s.is_empty() || s == "-" => None,
        Value::String(s) => Some(s.clone()),
        Value::Array(a) if a.is_empty() => None,
        Value::Array(a) if a.len() == 1 && a[0] == json!("-") => None,
        Value::Array(a) => Some(a.iter().map(js_string).collect::<Vec<_>>().join(", ")),
        _ => None,
    }
}

/// JavaScript's `String(x)` for what can appear in an array joined by Kibana.
fn js_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Object(_) => "[object Object]".into(),
        Value::Array(a) => a.iter().map(js_string).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// `kibana.alert.reason`, as `buildReasonMessageUtil` words it.
pub fn reason(rule: &RuleInfo, doc: &Value) -> String {
    let get = |p: &str| template_value(lodash_get(doc, p));
    let category = get("event.category");
    let process = get("process.name");
    let parent = get("process.parent.name");
    let file = get("file.name");
    let source_ip = get("source.ip");
    let source_port = get("source.port");
    let dest_ip = get("destination.ip");
    let dest_port = get("destination.port");
    let user = get("user.name");
    let host = get("host.name");
    let of_interest = [
        &process,
        &parent,
        &file,
        &source_ip,
        &source_port,
        &dest_ip,
        &dest_port,
    ]
    .iter()
    .any(|v| v.is_some());

    let mut s = String::new();
    if let Some(c) = category {
        s.push_str(&c);
        s.push(' ');
    }
    s.push_str("event");
    if of_interest {
        s.push_str(" with");
    }
    if let Some(v) = process {
        s.push_str(&format!(" process {v},"));
    }
    if let Some(v) = parent {
        s.push_str(&format!(" parent process {v},"));
    }
    if let Some(v) = file {
        s.push_str(&format!(" file {v},"));
    }
    if let Some(v) = source_ip {
        s.push_str(&format!(" source {v}"));
    }
    if let Some(v) = source_port {
        s.push_str(&format!(":{v},"));
    }
    if let Some(v) = dest_ip {
        s.push_str(&format!(" destination {v}"));
    }
    if let Some(v) = dest_port {
        s.push_str(&format!(":{v},"));
    }
    if let Some(v) = user {
        s.push_str(&format!(" by {v}"));
    }
    if let Some(v) = host {
        s.push_str(&format!(" on {v}"));
    }
    s.push_str(&format!(" created {} alert {}.", rule.severity, rule.name));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> RuleInfo {
        RuleInfo {
            uuid: "rule-uuid-1".into(),
            rule_id: "0871a5d8-6b5f-4a12-a568-fd7bc05bd8db".into(),
            name: "Node.js Pre or Post-Install Script Execution".into(),
            description: "d".into(),
            severity: "medium".into(),
            risk_score: 47,
            version: 2,
            from: "now-9m".into(),
            interval: "5m".into(),
            max_signals: 100,
            index: vec![
                "logs-endpoint.events.process*".into(),
                "logs-crowdstrike.fdr*".into(),
            ],
            query: "sequence …".into(),
            tags: vec!["OS: Linux".into()],
            references: vec![],
            author: vec!["Elastic".into()],
            license: "Elastic License v2".into(),
            threat: json!([{"framework": "MITRE ATT&CK", "tactic": {"id": "TA0002", "name": "Execution", "reference": "https://attack.mitre.org/tactics/TA0002/"}}]),
            false_positives: vec![],
            timestamp_override: None,
            tiebreaker_field: None,
            event_category_override: None,
        }
    }

    fn run() -> RunInfo<'static> {
        RunInfo {
            now: DateTime::parse_from_rfc3339("2026-11-29T12:00:00.5Z")
                .unwrap()
                .with_timezone(&Utc),
            space_id: "default",
            execution_uuid: "exec-1",
            producer_version: "0.1.0",
        }
    }

    fn parent() -> Value {
        json!({
            "@timestamp": "2026-11-29T11:58:00.123456789Z",
            "event": {"kind": "event", "category": ["process"], "type": ["start"], "action": "exec"},
            "host": {"id": "h1", "name": "dev-1", "os": {"type": "linux"}},
            "process": {"name": "node", "args": ["node", "/usr/bin/npm", "install"], "entity_id": "P",
                        "parent": {"name": "bash", "entity_id": "B"}},
            "user": {"name": "alice"},
            "data_stream": {"type": "logs", "dataset": "endpoint.events.process", "namespace": "default"},
            "kibana": {"alert": {"uuid": "should be dropped"}},
            "tags": []
        })
    }

    fn child() -> Value {
        json!({
            "@timestamp": "2026-11-29T11:58:01Z",
            "event": {"kind": "event", "category": ["process"], "type": ["start"], "action": "exec"},
            "host": {"id": "h1", "name": "dev-1", "os": {"type": "linux"}},
            "process": {"name": "sh", "args": ["sh", "-c", "node setup_bun.js"], "entity_id": "C",
                        "parent": {"name": "node", "entity_id": "P"}},
            "user": {"name": "alice"},
            "data_stream": {"type": "logs", "dataset": "endpoint.events.process", "namespace": "default"}
        })
    }

    /// The ids are recomputed here from the formulas in Kibana's TypeScript, independently of
    /// the code above: `generate_building_block_ids.ts` and `build_alert.ts#generateAlertId`.
    #[test]
    fn ids_follow_kibana_formulas() {
        let (p, c) = (parent(), child());
        let ev = [
            SourceEvent {
                index: ".ds-logs-endpoint.events.process-default-2026.11.29-000001",
                id: "ev0",
                source: &p,
            },
            SourceEvent {
                index: ".ds-logs-endpoint.events.process-default-2026.11.29-000001",
                id: "ev1",
                source: &c,
            },
        ];
        let r = "rule-uuid-1";
        let base = format!("ev0{}{r}ev1{}{r}", ev[0].index, ev[1].index);
        let bb0 = hex::encode(Sha256::digest(format!("{base}0")));
        let bb1 = hex::encode(Sha256::digest(format!("{base}1")));
        assert_eq!(building_block_ids(r, &ev), vec![bb0.clone(), bb1.clone()]);
        let shell = hex::encode(Sha256::digest(format!(
            "ev0{}{bb0}ev1{}{bb1}{r}",
            ev[0].index, ev[1].index
        )));
        assert_eq!(shell_id(r, &ev), shell);
        // A different concrete index or rule uuid gives other ids (dedup depends on both).
        let other = [
            SourceEvent {
                index: "logs-endpoint.events.process-default",
                ..ev[0]
            },
            ev[1],
        ];
        assert_ne!(shell_id(r, &other), shell);
        assert_ne!(shell_id("rule-uuid-2", &ev), shell);
    }

    #[test]
    fn sequence_gives_shell_then_building_blocks() {
        let (p, c) = (parent(), child());
        let ev = [
            SourceEvent {
                index: "i",
                id: "ev0",
                source: &p,
            },
            SourceEvent {
                index: "i",
                id: "ev1",
                source: &c,
            },
        ];
        let docs = build_sequence_alerts(&rule(), &run(), &ev);
        assert_eq!(docs.len(), 3);
        let (shell, bb0, bb1) = (&docs[0].source, &docs[1].source, &docs[2].source);
        assert_eq!(docs[0].id, shell_id("rule-uuid-1", &ev));
        assert!(
            !docs[0].is_building_block()
                && docs[1].is_building_block()
                && docs[2].is_building_block()
        );

        // Building blocks: the event, plus the alert fields.
        assert_eq!(bb0["kibana.alert.uuid"], json!(docs[1].id));
        assert_eq!(bb0["kibana.alert.group.id"], json!(docs[0].id));
        assert_eq!(bb1["kibana.alert.group.index"], json!(1));
        assert_eq!(bb0["kibana.alert.building_block_type"], json!("default"));
        assert_eq!(bb0["kibana.alert.depth"], json!(1));
        assert_eq!(
            bb0["kibana.alert.ancestors"],
            json!([{"id": "ev0", "type": "event", "index": "i", "depth": 0}])
        );
        assert_eq!(
            bb0["kibana.alert.original_time"],
            json!("2026-11-29T11:58:00.123Z")
        );
        assert_eq!(bb0["@timestamp"], json!("2026-11-29T12:00:00.500Z"));
        assert_eq!(bb0["event.kind"], json!("signal"));
        assert_eq!(
            bb0["event"].get("kind"),
            None,
            "the source event.kind is removed"
        );
        assert_eq!(bb0["kibana.alert.original_event.kind"], json!("event"));
        assert_eq!(bb0["kibana.alert.original_event.action"], json!("exec"));
        assert_eq!(
            bb0["kibana.alert.original_data_stream.dataset"],
            json!("endpoint.events.process")
        );
        assert_eq!(
            bb0["process"]["args"],
            json!(["node", "/usr/bin/npm", "install"])
        );
        assert!(bb0.get("kibana").is_none(), "source kibana.* is stripped");
        assert!(bb0.get("tags").is_none(), "empty arrays are dropped");
        assert_eq!(
            bb1["kibana.alert.reason"],
            json!("process event with process sh, parent process node, by alice on dev-1 created medium alert Node.js Pre or Post-Install Script Execution.")
        );

        // Shell: intersection of the blocks, no building-block fields, depth 2, 4 ancestors.
        assert_eq!(shell["kibana.alert.uuid"], json!(docs[0].id));
        assert_eq!(shell["kibana.alert.group.id"], json!(docs[0].id));
        assert!(shell.get("kibana.alert.group.index").is_none());
        assert!(shell.get("kibana.alert.building_block_type").is_none());
        assert_eq!(shell["kibana.alert.depth"], json!(2));
        let anc = shell["kibana.alert.ancestors"].as_array().unwrap();
        assert_eq!(anc.len(), 4);
        assert_eq!(
            anc[1],
            json!({"id": docs[1].id, "type": "signal", "index": "", "depth": 1, "rule": "rule-uuid-1"})
        );
        assert_eq!(
            shell["host"],
            json!({"id": "h1", "name": "dev-1", "os": {"type": "linux"}})
        );
        assert!(
            shell["process"].get("name").is_none(),
            "node vs sh: not common, absent"
        );
        assert_eq!(
            shell["process"]["args"],
            json!([]),
            "arrays intersect and may end empty"
        );
        assert_eq!(
            shell["kibana.alert.original_time"],
            json!("2026-11-29T12:00:00.500Z")
        );
        assert_eq!(
            shell["kibana.alert.reason"],
            json!("process event by alice on dev-1 created medium alert Node.js Pre or Post-Install Script Execution.")
        );
        assert_eq!(shell["kibana.alert.rule.threat"], rule().threat);
        assert_eq!(shell["kibana.alert.workflow_status"], json!("open"));
        assert_eq!(shell["kibana.alert.risk_score"], json!(47));
        assert_eq!(shell["event.kind"], json!("signal"));
    }

    #[test]
    fn loop_guard_skips_sequences_of_own_alerts() {
        let mut p = parent();
        p["kibana.alert.rule.uuid"] = json!("rule-uuid-1");
        let c = child();
        let ev = [
            SourceEvent {
                index: "i",
                id: "a",
                source: &p,
            },
            SourceEvent {
                index: "i",
                id: "b",
                source: &c,
            },
        ];
        assert!(build_sequence_alerts(&rule(), &run(), &ev).is_empty());
    }

    #[test]
    fn reason_follows_kibana_template() {
        let r = rule();
        let msg = |d: Value| reason(&r, &d);
        assert_eq!(
            msg(json!({})),
            "event created medium alert Node.js Pre or Post-Install Script Execution."
        );
        assert_eq!(
            msg(json!({"source": {"ip": "10.0.0.1", "port": 443}, "host.name": "h"})),
            "event with source 10.0.0.1 on h created medium alert Node.js Pre or Post-Install Script Execution.",
            "numeric ports are dropped, as in Kibana (`field.length` is undefined for numbers)"
        );
        assert_eq!(
            msg(json!({"process": {"name": ["-"]}, "user": {"name": ["a", "b"]}})),
            "event by a, b created medium alert Node.js Pre or Post-Install Script Execution."
        );
    }
}
