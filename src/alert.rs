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
//! - `rule_types/utils/reason_formatters.ts` — `kibana.alert.reason`;
//! - `rule_management/logic/detection_rules_client/converters/common_params_camel_to_snake.ts` and
//!   `type_specific_camel_to_snake.ts` — `kibana.alert.rule.parameters`.
//!
//! Known differences, all deliberate: Kibana also merges the search response's `fields` into
//! `_source` (we have only `_source`), and sets `kibana.alert.url` when
//! `server.publicBaseUrl` is configured (we have no Kibana URL). What alerts say about the rule
//! differs where seqwatch cannot know Kibana's value; docs/alerts.md lists every difference.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::ecs::{strip_for_alert, RemovedField, StrippedSource};
use crate::rule::Rule;

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
    /// Licence of the rule, if it names one.
    pub license: Option<String>,
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
    /// Investigation guide (Markdown), if any.
    pub note: Option<String>,
    /// Setup guide (Markdown); Kibana's default is empty.
    pub setup: String,
    /// Kibana's `related_integrations` array.
    pub related_integrations: Value,
    /// Kibana's `required_fields` array.
    pub required_fields: Value,
    /// Kibana's `investigation_fields` object, if any.
    pub investigation_fields: Option<Value>,
    /// `default` for a building-block rule, whose shell alerts are building blocks too.
    pub building_block_type: Option<String>,
    /// Timeline template id, if any.
    pub timeline_id: Option<String>,
    /// Timeline template title, if any.
    pub timeline_title: Option<String>,
    /// Whether the rule is one of Elastic's prebuilt rules or a custom one.
    pub source: RuleSource,
    /// When the rule was created, if known.
    pub created_at: Option<DateTime<Utc>>,
    /// When the rule last changed, if known.
    pub updated_at: Option<DateTime<Utc>>,
}

/// Whether a rule is Elastic's or the user's, as Kibana records it in `immutable` and
/// `rule_source`. Kibana decides it by how the rule was installed: from Elastic's prebuilt
/// package (`applyRuleDefaults({ ...rule, immutable: true })` in
/// `rule_management/logic/detection_rules_client/methods/bulk_create_prebuilt_rules.ts`), or
/// created and imported by a user. seqwatch cannot tell from a file, so `rules.prebuilt` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSource {
    /// One of Elastic's prebuilt rules, unmodified: `immutable: true`,
    /// `rule_source: {type: "external", is_customized: false}`.
    ElasticPrebuilt,
    /// A rule of the user's own: `immutable: false`, `rule_source: {type: "internal"}`.
    Custom,
}

impl RuleSource {
    /// Kibana's `immutable`.
    pub fn immutable(self) -> bool {
        self == RuleSource::ElasticPrebuilt
    }

    /// Kibana's `rule_source`, as `convertImmutableToRuleSource` in
    /// `rule_management/logic/detection_rules_client/mergers/apply_rule_defaults.ts` makes it
    /// for a rule installed or created without one.
    pub fn to_json(self) -> Value {
        match self {
            RuleSource::ElasticPrebuilt => json!({"type": "external", "is_customized": false}),
            RuleSource::Custom => json!({"type": "internal"}),
        }
    }
}

impl RuleInfo {
    /// What the alerts of `rule` say about it, with the settings the run applies: the rule's
    /// `uuid`, its `interval` (`5m` style) and `max_signals` after configuration, its `source`.
    ///
    /// Kibana's `createdAt`/`updatedAt` are when the rule's saved object was made and last
    /// changed (for a prebuilt rule: installed and last upgraded). seqwatch installs nothing; the
    /// file's `[metadata] creation_date` and `updated_date` (midnight UTC) are the nearest stable
    /// equivalent, and without them the fields are left out.
    ///
    /// Text fields are whitespace-collapsed as detection-rules packages a rule for Kibana
    /// (`nested_normalize` in `detection_rules/rule_formatter.py`): every string but the query
    /// and the Markdown guides (`note`, `setup`) becomes its trimmed lines joined by spaces.
    pub fn from_rule(
        rule: &Rule,
        uuid: &str,
        interval: &str,
        max_signals: usize,
        source: RuleSource,
    ) -> RuleInfo {
        let details = &rule.details;
        let midnight = |date: Option<NaiveDate>| {
            date.and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        };
        RuleInfo {
            uuid: uuid.to_owned(),
            rule_id: rule.rule_id.clone(),
            name: packaged_text(&rule.name),
            description: packaged_text(&rule.description),
            severity: rule.severity.as_str().to_owned(),
            risk_score: u32::from(rule.risk_score),
            // Kibana's default when a rule names no version.
            version: rule.version.unwrap_or(1),
            from: rule.from.clone(),
            interval: interval.to_owned(),
            max_signals,
            index: rule.index.clone(),
            query: rule.query_text.clone(),
            tags: packaged_texts(&rule.tags),
            references: packaged_texts(&rule.references),
            author: packaged_texts(&rule.author),
            license: rule.license.as_deref().map(packaged_text),
            threat: packaged_json(&rule.threat),
            false_positives: packaged_texts(&details.false_positives),
            timestamp_override: rule.timestamp_override.clone(),
            tiebreaker_field: rule.tiebreaker_field.clone(),
            event_category_override: rule.event_category_override.clone(),
            note: details.note.clone(),
            setup: details.setup.clone().unwrap_or_default(),
            related_integrations: packaged_json(&details.related_integrations),
            required_fields: packaged_json(&details.required_fields),
            investigation_fields: details.investigation_fields.as_ref().map(packaged_json),
            building_block_type: details.building_block_type.clone(),
            timeline_id: details.timeline_id.clone(),
            timeline_title: details.timeline_title.as_deref().map(packaged_text),
            source,
            created_at: midnight(details.creation_date),
            updated_at: midnight(details.updated_date),
        }
    }

    /// `kibana.alert.rule.parameters`: Kibana's snake-case parameters of an EQL rule
    /// (`commonParamsCamelToSnake` without `output_index`, then `typeSpecificCamelToSnake`, as
    /// `buildAlertFields` spreads them), with the defaults `applyRuleDefaults` gives a rule that
    /// leaves them out. Keys Kibana leaves undefined are absent, never `null`. Parameters
    /// seqwatch does not apply (filters, alert suppression, severity and risk-score mappings,
    /// `rule_name_override`, exception lists, response actions) are written as for a rule
    /// without them.
    pub fn parameters(&self) -> Value {
        let mut p = Map::new();
        let mut put = |k: &str, v: Value| {
            if !v.is_null() {
                p.insert(k.to_owned(), v);
            }
        };
        put("description", json!(self.description));
        put("risk_score", json!(self.risk_score));
        put("severity", json!(self.severity));
        put("building_block_type", json!(self.building_block_type));
        put("note", json!(self.note));
        put("license", json!(self.license));
        put("timeline_id", json!(self.timeline_id));
        put("timeline_title", json!(self.timeline_title));
        put("timestamp_override", json!(self.timestamp_override));
        put("investigation_fields", json!(self.investigation_fields));
        put("author", json!(self.author));
        put("false_positives", json!(self.false_positives));
        put("from", json!(self.from));
        put("rule_id", json!(self.rule_id));
        put("max_signals", json!(self.max_signals));
        put("risk_score_mapping", json!([]));
        put("severity_mapping", json!([]));
        put("threat", self.threat.clone());
        put("to", json!("now"));
        put("references", json!(self.references));
        put("version", json!(self.version));
        put("exceptions_list", json!([]));
        put("immutable", json!(self.source.immutable()));
        put("rule_source", self.source.to_json());
        put("related_integrations", self.related_integrations.clone());
        put("required_fields", self.required_fields.clone());
        put("setup", json!(self.setup));
        put("type", json!("eql"));
        put("language", json!("eql"));
        put("index", json!(self.index));
        put("query", json!(self.query));
        put(
            "event_category_override",
            json!(self.event_category_override),
        );
        put("tiebreaker_field", json!(self.tiebreaker_field));
        Value::Object(p)
    }
}

/// detection-rules' `cleanup_whitespace`: `" ".join(line.strip() for line in
/// val.strip().splitlines())`, with Python's whitespace and line breaks.
fn packaged_text(text: &str) -> String {
    // Python's `str.isspace` also counts the separators U+001C..U+001F.
    let is_space = |c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
    let is_break = |c: char| {
        matches!(
            c,
            '\n' | '\r'
                | '\u{0b}'
                | '\u{0c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        )
    };
    let trimmed = text.trim_matches(is_space);
    if trimmed.is_empty() {
        return String::new();
    }
    let mut lines = Vec::new();
    let mut rest = trimmed;
    while let Some(at) = rest.find(is_break) {
        lines.push(rest[..at].trim_matches(is_space));
        // `splitlines` takes `\r\n` as one break.
        let width = if rest[at..].starts_with("\r\n") {
            2
        } else {
            rest[at..].chars().next().map_or(1, char::len_utf8)
        };
        rest = &rest[at + width..];
    }
    lines.push(rest.trim_matches(is_space));
    lines.join(" ")
}

/// [`packaged_text`] of each string.
fn packaged_texts(texts: &[String]) -> Vec<String> {
    texts.iter().map(|t| packaged_text(t)).collect()
}

/// `value` as JSON with [`packaged_text`] applied to every string in it (the structures it is
/// used on hold no query and no guide).
fn packaged_json<T: serde::Serialize + ?Sized>(value: &T) -> Value {
    fn walk(v: Value) -> Value {
        match v {
            Value::String(s) => Value::String(packaged_text(&s)),
            Value::Array(a) => Value::Array(a.into_iter().map(walk).collect()),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, walk(v))).collect()),
            other => other,
        }
    }
    // Only the rule's own types come here, and they always serialise.
    serde_json::to_value(value).map(walk).unwrap_or(Value::Null)
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
    /// The Kibana version the alerts are written for (`alerts.kibana_version`): every alert's
    /// `kibana.version`, where Kibana writes its own (`ruleDataClient.kibanaVersion`).
    pub kibana_version: &'a str,
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
    // Kibana's shell takes `kibana.alert.building_block_type` from the rule (`buildAlertRoot`
    // spreads `buildAlertFields` over the intersection): set only for a building-block rule.
    if rule.building_block_type.is_none() {
        shell.remove("kibana.alert.building_block_type");
    }
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

/// `buildAlertFields` plus the fields `augmentAlerts`/`getCommonAlertFields` add at write time
/// (`x-pack/platform/plugins/shared/rule_registry/server/utils/create_persistence_rule_type_wrapper.ts`
/// and `get_common_alert_fields.ts` in elastic/kibana). Fields Kibana leaves undefined are absent.
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
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            m.insert(k.to_owned(), v);
        }
    };
    put("@timestamp", json!(now));
    put("event.kind", json!("signal"));
    put("kibana.space_ids", json!([run.space_id]));
    put("kibana.version", json!(run.kibana_version));
    put("kibana.alert.original_time", json!(original_time));
    put("kibana.alert.ancestors", Value::Array(ancestors));
    put("kibana.alert.depth", json!(depth));
    put("kibana.alert.status", json!("active"));
    put("kibana.alert.workflow_status", json!("open"));
    put("kibana.alert.workflow_tags", json!([]));
    put("kibana.alert.workflow_assignee_ids", json!([]));
    put("kibana.alert.reason", json!(reason));
    put(
        "kibana.alert.building_block_type",
        json!(rule.building_block_type),
    );
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
    put("kibana.alert.rule.note", json!(rule.note));
    // Booleans, as Kibana writes them, though its field map types both fields `keyword`.
    put(
        "kibana.alert.rule.immutable",
        json!(rule.source.immutable()),
    );
    put("kibana.alert.rule.enabled", json!(true));
    put(
        "kibana.alert.rule.created_at",
        json!(rule.created_at.map(iso_millis)),
    );
    put(
        "kibana.alert.rule.updated_at",
        json!(rule.updated_at.map(iso_millis)),
    );
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
    put("kibana.alert.rule.timeline_id", json!(rule.timeline_id));
    put(
        "kibana.alert.rule.timeline_title",
        json!(rule.timeline_title),
    );
    put("kibana.alert.rule.parameters", rule.parameters());
    put("kibana.alert.rule.consumer", json!("siem"));
    put("kibana.alert.rule.producer", json!("siem"));
    put(
        "kibana.alert.rule.category",
        json!("Event Correlation Rule"),
    );
    put("kibana.alert.rule.rule_type_id", json!("siem.eqlRule"));
    put("kibana.alert.rule.risk_score", json!(rule.risk_score));
    put("kibana.alert.rule.severity", json!(rule.severity));
    put(
        "kibana.alert.rule.building_block_type",
        json!(rule.building_block_type),
    );
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

    /// The built-in rule, as the job prepares it with the default configuration.
    fn rule() -> RuleInfo {
        let builtin = Rule::builtin().unwrap();
        RuleInfo::from_rule(&builtin, "rule-uuid-1", "5m", 100, RuleSource::Custom)
    }

    fn run() -> RunInfo<'static> {
        RunInfo {
            now: DateTime::parse_from_rfc3339("2026-11-29T12:00:00.5Z")
                .unwrap()
                .with_timezone(&Utc),
            space_id: "default",
            execution_uuid: "exec-1",
            kibana_version: "9.5.0",
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

    /// The path of the first `null` in `v`, if any: Kibana serialises undefined keys away.
    fn first_null(v: &Value, path: &str) -> Option<String> {
        match v {
            Value::Null => Some(path.to_owned()),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .find_map(|(i, x)| first_null(x, &format!("{path}[{i}]"))),
            Value::Object(o) => o
                .iter()
                .find_map(|(k, x)| first_null(x, &format!("{path}.{k}"))),
            _ => None,
        }
    }

    /// The alerts of one two-event sequence of `rule`: `[shell, bb0, bb1]`.
    fn alerts_of(rule: &RuleInfo) -> Vec<AlertDoc> {
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
        build_sequence_alerts(rule, &run(), &ev)
    }

    /// `kibana.alert.rule.parameters` of the built-in rule, key for key what
    /// `commonParamsCamelToSnake` + `typeSpecificCamelToSnake` give for it once
    /// `applyRuleDefaults` has filled in what it leaves out; no `license`, `note` or
    /// `timestamp_override`, which the rule does not set.
    #[test]
    fn builtin_rule_parameters_are_kibanas() {
        let builtin = Rule::builtin().unwrap();
        let info = rule();
        let threat = json!([
            {"framework": "MITRE ATT&CK",
             "tactic": {"id": "TA0003", "name": "Persistence", "reference": "https://attack.mitre.org/tactics/TA0003/"},
             "technique": [
                {"id": "T1543", "name": "Create or Modify System Process", "reference": "https://attack.mitre.org/techniques/T1543/"},
                {"id": "T1574", "name": "Hijack Execution Flow", "reference": "https://attack.mitre.org/techniques/T1574/"}]},
            {"framework": "MITRE ATT&CK",
             "tactic": {"id": "TA0002", "name": "Execution", "reference": "https://attack.mitre.org/tactics/TA0002/"},
             "technique": [
                {"id": "T1059", "name": "Command and Scripting Interpreter", "reference": "https://attack.mitre.org/techniques/T1059/",
                 "subtechnique": [{"id": "T1059.004", "name": "Unix Shell", "reference": "https://attack.mitre.org/techniques/T1059/004/"}]}]},
            {"framework": "MITRE ATT&CK",
             "tactic": {"id": "TA0005", "name": "Defense Evasion", "reference": "https://attack.mitre.org/tactics/TA0005/"},
             "technique": []}
        ]);
        let keyword = |name: &str| json!({"name": name, "type": "keyword", "ecs": true});
        let want = json!({
            "description": "Flags a Node.js \"install\" process that starts a child process within ten seconds on the same Linux host. Package managers run a package's preinstall/postinstall scripts this way, and malicious packages use those scripts to run code on developer and build machines.",
            "risk_score": 47,
            "severity": "medium",
            "author": ["seqwatch"],
            "false_positives": [],
            "from": "now-9m",
            "rule_id": "0871a5d8-6b5f-4a12-a568-fd7bc05bd8db",
            "max_signals": 100,
            "risk_score_mapping": [],
            "severity_mapping": [],
            "threat": threat,
            "to": "now",
            "references": [],
            "version": 2,
            "exceptions_list": [],
            "immutable": false,
            "rule_source": {"type": "internal"},
            "related_integrations": [],
            "required_fields": [
                keyword("event.action"), keyword("event.type"), keyword("host.id"),
                keyword("host.os.type"), keyword("process.args"), keyword("process.entity_id"),
                keyword("process.name"), keyword("process.parent.entity_id"),
                keyword("process.parent.name"),
            ],
            "setup": "",
            "type": "eql",
            "language": "eql",
            "index": ["logs-endpoint.events.process*", "logs-crowdstrike.fdr*"],
            "query": builtin.query_text,
        });
        assert_eq!(info.parameters(), want);
        for doc in alerts_of(&info) {
            let params = &doc.source["kibana.alert.rule.parameters"];
            assert_eq!(params, &want, "{}", doc.id);
            assert_eq!(first_null(params, "parameters"), None);
        }
    }

    /// What Python's `" ".join(line.strip() for line in s.strip().splitlines())` gives.
    #[test]
    fn text_is_collapsed_as_detection_rules_packages_it() {
        for (text, want) in [
            ("", ""),
            ("\n \n", ""),
            ("one line", "one line"),
            ("\n  Flags a\n  process.\n", "Flags a process."),
            ("a\n\nb", "a  b"),
            ("a\r\nb\rc", "a b c"),
            ("a \t\u{0b}b\u{0c}c\u{1c}d", "a b c d"),
            ("a\u{85}b\u{2028}c\u{2029}d", "a b c d"),
            ("  keep  inner  spaces ", "keep  inner  spaces"),
            ("\u{1f}x\u{a0}", "x"),
        ] {
            assert_eq!(packaged_text(text), want, "{text:?}");
        }
    }

    /// The rule fields of `buildAlertFields` for the built-in rule: the file's values, Kibana's
    /// value shapes, nothing `null`, and `kibana.version` from the run.
    #[test]
    fn builtin_rule_fields_are_the_files() {
        let info = rule();
        let docs = alerts_of(&info);
        assert_eq!(docs.len(), 3);
        for doc in &docs {
            let a = &doc.source;
            assert_eq!(a["kibana.version"], json!("9.5.0"));
            assert_eq!(a["kibana.alert.rule.author"], json!(["seqwatch"]));
            assert_eq!(a["kibana.alert.rule.immutable"], json!(false));
            assert_eq!(a["kibana.alert.rule.enabled"], json!(true));
            assert_eq!(a["kibana.alert.rule.version"], json!(2));
            assert_eq!(a["kibana.alert.rule.false_positives"], json!([]));
            assert_eq!(a["kibana.alert.rule.threat"], info.threat);
            assert_eq!(
                a["kibana.alert.rule.created_at"],
                json!("2026-11-29T00:00:00.000Z")
            );
            assert_eq!(
                a["kibana.alert.rule.updated_at"],
                json!("2026-12-08T00:00:00.000Z")
            );
            for absent in [
                "kibana.alert.rule.license",
                "kibana.alert.rule.note",
                "kibana.alert.rule.timestamp_override",
                "kibana.alert.rule.timeline_id",
                "kibana.alert.rule.building_block_type",
            ] {
                assert!(a.get(absent).is_none(), "{}: {absent}", doc.id);
            }
            assert_eq!(first_null(a, "alert"), None);
        }
        assert!(docs[0]
            .source
            .get("kibana.alert.building_block_type")
            .is_none());
        assert_eq!(
            docs[1].source["kibana.alert.building_block_type"],
            json!("default")
        );
    }

    /// `rules.prebuilt`: Kibana's `immutable` and `rule_source` of an installed prebuilt rule.
    #[test]
    fn a_prebuilt_rule_is_immutable_and_external() {
        let builtin = Rule::builtin().unwrap();
        let info = RuleInfo::from_rule(&builtin, "u", "5m", 100, RuleSource::ElasticPrebuilt);
        let params = info.parameters();
        assert_eq!(params["immutable"], json!(true));
        assert_eq!(
            params["rule_source"],
            json!({"type": "external", "is_customized": false})
        );
        let shell = &alerts_of(&info)[0].source;
        assert_eq!(shell["kibana.alert.rule.immutable"], json!(true));
        assert_eq!(shell["kibana.alert.rule.parameters"], params);
    }

    /// A rule that sets every descriptive field: each lands where Kibana writes it, a
    /// building-block rule's shell is a building block too, and `ecs` is Kibana's, not the
    /// file's.
    #[test]
    fn every_descriptive_field_lands_where_kibana_writes_it() {
        let text = r###"
[metadata]
creation_date = "2020/03/25"
maturity = "production"
updated_date = "2026/04/22"

[rule]
author = ["Elastic", "Someone Else"]
building_block_type = "default"
description = "d"
false_positives = ["Admins at work."]
from = "now-119m"
interval = "60m"
index = ["logs-endpoint.events.*"]
language = "eql"
license = "Elastic License v2"
max_signals = 1000
name = "Every field"
note = "## Triage and analysis\nLook."
references = ["https://example.com/a"]
risk_score = 21
rule_id = "every-field"
setup = "## Setup\nInstall Defend."
severity = "low"
tags = ["Rule Type: BBR"]
tiebreaker_field = "event.sequence"
timeline_id = "4d4c0b59-ea83-483f-b8c1-8c360ee53c5c"
timeline_title = "Comprehensive File Timeline"
timestamp_override = "event.ingested"
type = "eql"
version = 7
query = '''
sequence by host.id with maxspan=1m
  [process where process.name == "a"]
  [process where process.name == "b"]
'''

[rule.investigation_fields]
field_names = ["host.name", "user.name"]

[[rule.related_integrations]]
package = "endpoint"
version = "^8.2.0"

[[rule.related_integrations]]
package = "windows"
integration = "sysmon"
version = "^2.0.0"

[[rule.required_fields]]
name = "process.name"
type = "keyword"
ecs = false

[[rule.required_fields]]
name = "process.pid"
type = "keyword"

[[rule.required_fields]]
name = "custom.thing"
type = "keyword"
ecs = true
"###;
        let loaded = Rule::from_toml_str(text, "every.toml").unwrap();
        let info = RuleInfo::from_rule(&loaded, "u", "60m", 1000, RuleSource::Custom);
        let params = info.parameters();
        assert_eq!(first_null(&params, "parameters"), None);
        let keys: Vec<&str> = params
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut want_keys = vec![
            "author",
            "building_block_type",
            "description",
            "exceptions_list",
            "false_positives",
            "from",
            "immutable",
            "index",
            "investigation_fields",
            "language",
            "license",
            "max_signals",
            "note",
            "query",
            "references",
            "related_integrations",
            "required_fields",
            "risk_score",
            "risk_score_mapping",
            "rule_id",
            "rule_source",
            "setup",
            "severity",
            "severity_mapping",
            "threat",
            "tiebreaker_field",
            "timeline_id",
            "timeline_title",
            "timestamp_override",
            "to",
            "type",
            "version",
        ];
        want_keys.sort_unstable();
        assert_eq!(keys, want_keys);
        assert_eq!(params["note"], json!("## Triage and analysis\nLook."));
        assert_eq!(params["setup"], json!("## Setup\nInstall Defend."));
        assert_eq!(params["license"], json!("Elastic License v2"));
        assert_eq!(params["building_block_type"], json!("default"));
        assert_eq!(params["version"], json!(7));
        assert_eq!(params["from"], json!("now-119m"));
        assert_eq!(
            params["investigation_fields"],
            json!({"field_names": ["host.name", "user.name"]})
        );
        assert_eq!(
            params["related_integrations"],
            json!([
                {"package": "endpoint", "version": "^8.2.0"},
                {"package": "windows", "integration": "sysmon", "version": "^2.0.0"}
            ])
        );
        assert_eq!(
            params["required_fields"],
            json!([
                {"name": "process.name", "type": "keyword", "ecs": true},
                {"name": "process.pid", "type": "keyword", "ecs": false},
                {"name": "custom.thing", "type": "keyword", "ecs": false}
            ]),
            "ECS types process.pid `long`; custom.thing is no ECS field"
        );

        let docs = alerts_of(&info);
        let (shell, bb0) = (&docs[0].source, &docs[1].source);
        for a in [shell, bb0] {
            assert_eq!(a["kibana.alert.rule.note"], params["note"]);
            assert_eq!(a["kibana.alert.rule.license"], json!("Elastic License v2"));
            assert_eq!(
                a["kibana.alert.rule.author"],
                json!(["Elastic", "Someone Else"])
            );
            assert_eq!(
                a["kibana.alert.rule.false_positives"],
                json!(["Admins at work."])
            );
            assert_eq!(
                a["kibana.alert.rule.references"],
                json!(["https://example.com/a"])
            );
            assert_eq!(
                a["kibana.alert.rule.timeline_id"],
                json!("4d4c0b59-ea83-483f-b8c1-8c360ee53c5c")
            );
            assert_eq!(
                a["kibana.alert.rule.timeline_title"],
                json!("Comprehensive File Timeline")
            );
            assert_eq!(
                a["kibana.alert.rule.timestamp_override"],
                json!("event.ingested")
            );
            assert_eq!(a["kibana.alert.rule.interval"], json!("60m"));
            assert_eq!(a["kibana.alert.rule.max_signals"], json!(1000));
            assert_eq!(
                a["kibana.alert.rule.created_at"],
                json!("2020-03-25T00:00:00.000Z")
            );
            assert_eq!(
                a["kibana.alert.rule.updated_at"],
                json!("2026-04-22T00:00:00.000Z")
            );
            assert_eq!(a["kibana.alert.rule.building_block_type"], json!("default"));
            assert_eq!(a["kibana.alert.building_block_type"], json!("default"));
            assert_eq!(a["kibana.alert.rule.parameters"], params);
            assert_eq!(first_null(a, "alert"), None);
        }
    }
}
