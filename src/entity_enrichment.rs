//! Asset criticality and entity risk on alerts, as Kibana's detection engine adds them when it
//! writes alerts. Pure: from the alerts about to be written, the searches to make; from what the
//! searches found, the fields to set. The run pipeline makes the searches (`src/run/entities.rs`).
//!
//! It follows the path Kibana takes without the entity store v2 (paths relative to
//! `x-pack/solutions/security/plugins/security_solution/` in elastic/kibana):
//! - `server/lib/detection_engine/rule_types/utils/enrichments/index.ts` — `enrichEvents`: the
//!   risk-score index and the asset-criticality index are each used only when they exist;
//!   host, user and service risk, then host, user and service criticality;
//! - `.../enrichments/create_single_field_match_enrichment.ts` — one search per entity kind and
//!   chunk of 1,000 distinct values (`MAX_CLAUSES`), matched back to alerts by value;
//! - `.../enrichments/utils/requests.ts` (`makeSingleFieldMatchQuery`) and
//!   `search_enrichments.ts` — the query: a `should` of `match` clauses, `fields` only;
//! - `.../enrichments/utils/events.ts` — `getEventValue` (nested path, else the dotted key; the
//!   first value of an array) and `getFieldValue` (the first value of a returned field);
//! - `.../enrichments/enrichment_by_type/{host,user,service}_risk.ts` — `<entity>.risk.*` set
//!   with lodash `set` (nested);
//! - `.../enrichments/enrichment_by_type/asset_criticality.ts` — `<entity>.asset.criticality`
//!   set as a dotted key at the top of the alert, filtered on `id_field`.
//!
//! One deliberate difference: Kibana's search sends no `size`, so Elasticsearch returns at most
//! 10 hits and entities beyond the first ten of a search are not enriched; each search here asks
//! for as many hits as it has values.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// Distinct values per search (Kibana's `MAX_CLAUSES`): one `match` clause each.
pub const MAX_VALUES_PER_SEARCH: usize = 1000;

/// The kinds of entity Kibana enriches alerts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    /// `host.name`.
    Host,
    /// `user.name`.
    User,
    /// `service.name`.
    Service,
}

impl EntityKind {
    /// In Kibana's order.
    pub const ALL: [EntityKind; 3] = [EntityKind::Host, EntityKind::User, EntityKind::Service];

    /// `host`, `user` or `service`: the field namespace.
    pub fn prefix(self) -> &'static str {
        match self {
            EntityKind::Host => "host",
            EntityKind::User => "user",
            EntityKind::Service => "service",
        }
    }

    /// The alert field that names the entity (`host.name`, …).
    pub fn name_field(self) -> &'static str {
        match self {
            EntityKind::Host => "host.name",
            EntityKind::User => "user.name",
            EntityKind::Service => "service.name",
        }
    }
}

/// Kibana's entity analytics indices that alerts are enriched from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnrichmentIndex {
    /// `risk-score.risk-score-latest-<space>`: the latest risk score of each entity
    /// (`getRiskScoreLatestIndex`).
    RiskScore,
    /// `.asset-criticality.asset-criticality-<space>`: one document per entity
    /// (`getAssetCriticalityIndex`).
    AssetCriticality,
}

impl EnrichmentIndex {
    /// In Kibana's order: the risk enrichments come before the criticality ones.
    pub const ALL: [EnrichmentIndex; 2] = [
        EnrichmentIndex::RiskScore,
        EnrichmentIndex::AssetCriticality,
    ];

    /// The index of Kibana space `space`.
    pub fn name(self, space: &str) -> String {
        match self {
            EnrichmentIndex::RiskScore => format!("risk-score.risk-score-latest-{space}"),
            EnrichmentIndex::AssetCriticality => {
                format!(".asset-criticality.asset-criticality-{space}")
            }
        }
    }

    /// The field of this index that holds the entity's name.
    fn lookup_field(self, entity: EntityKind) -> &'static str {
        match self {
            EnrichmentIndex::RiskScore => entity.name_field(),
            EnrichmentIndex::AssetCriticality => "id_value",
        }
    }

    /// The fields a search reads (Kibana's `enrichmentResponseFields`).
    fn response_fields(self, entity: EntityKind) -> Vec<String> {
        match self {
            EnrichmentIndex::RiskScore => vec![
                entity.name_field().to_owned(),
                risk_level_field(entity),
                risk_score_field(entity),
            ],
            EnrichmentIndex::AssetCriticality => {
                vec!["id_value".to_owned(), "criticality_level".to_owned()]
            }
        }
    }
}

fn risk_level_field(entity: EntityKind) -> String {
    format!("{}.risk.calculated_level", entity.prefix())
}

fn risk_score_field(entity: EntityKind) -> String {
    format!("{}.risk.calculated_score_norm", entity.prefix())
}

fn criticality_field(entity: EntityKind) -> String {
    format!("{}.asset.criticality", entity.prefix())
}

/// One search of one enrichment index for one kind of entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitySearch {
    /// The index searched.
    pub index: EnrichmentIndex,
    /// The kind of entity looked up.
    pub entity: EntityKind,
    /// The entities' names, distinct, at most [`MAX_VALUES_PER_SEARCH`].
    pub values: Vec<String>,
}

impl EntitySearch {
    /// The search body: Kibana's `makeSingleFieldMatchQuery` inside the filter that
    /// `getQueryFilter` wraps it in (less its empty clauses), reading `fields` only.
    pub fn body(&self) -> Value {
        let field = self.index.lookup_field(self.entity);
        let should: Vec<Value> = self
            .values
            .iter()
            .map(|v| json!({"match": {field: {"query": v, "minimum_should_match": 1}}}))
            .collect();
        // The criticality index holds every kind of entity; `id_field` says which.
        let filter = match self.index {
            EnrichmentIndex::RiskScore => json!([]),
            EnrichmentIndex::AssetCriticality => {
                json!([{"match": {"id_field": {"query": self.entity.name_field()}}}])
            }
        };
        json!({
            "size": self.values.len(),
            "_source": false,
            "fields": self.index.response_fields(self.entity),
            "track_total_hits": false,
            "query": {"bool": {"filter": [
                {"bool": {"should": should, "filter": filter, "minimum_should_match": 1}}
            ]}},
        })
    }
}

/// The searches that enrich `alerts`: per index, per kind of entity, the distinct names the
/// alerts carry, in chunks of [`MAX_VALUES_PER_SEARCH`]; ordered by index, then entity kind.
/// No search for a kind no alert names.
pub fn plan_searches<'a>(alerts: impl IntoIterator<Item = &'a Value>) -> Vec<EntitySearch> {
    let mut names: [Vec<String>; 3] = Default::default();
    for alert in alerts {
        for (entity, seen) in EntityKind::ALL.iter().zip(names.iter_mut()) {
            if let Some(name) = entity_name(alert, *entity) {
                if !seen.contains(&name) {
                    seen.push(name);
                }
            }
        }
    }
    let mut searches = Vec::new();
    for index in EnrichmentIndex::ALL {
        for (entity, values) in EntityKind::ALL.iter().zip(&names) {
            for chunk in values.chunks(MAX_VALUES_PER_SEARCH) {
                searches.push(EntitySearch {
                    index,
                    entity: *entity,
                    values: chunk.to_vec(),
                });
            }
        }
    }
    searches
}

/// What the searches found: per index and kind of entity, each entity's `fields` by its name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    by_name: HashMap<(EnrichmentIndex, EntityKind), HashMap<String, Map<String, Value>>>,
}

impl Found {
    /// Records the hits (each hit's `fields`) of `search`. A hit names its entity by the first
    /// value of the lookup field; of two hits for one entity the later wins, as in Kibana.
    pub fn record(&mut self, search: &EntitySearch, hits: Vec<Map<String, Value>>) {
        let field = search.index.lookup_field(search.entity);
        let by_name = self
            .by_name
            .entry((search.index, search.entity))
            .or_default();
        for fields in hits {
            let Some(name) = first_value(&fields, field).filter(|v| truthy(v)) else {
                continue;
            };
            by_name.insert(js_string(name), fields);
        }
    }

    /// True when nothing was recorded for any entity.
    pub fn is_empty(&self) -> bool {
        self.by_name.values().all(HashMap::is_empty)
    }

    fn get(
        &self,
        index: EnrichmentIndex,
        entity: EntityKind,
        name: &str,
    ) -> Option<&Map<String, Value>> {
        self.by_name.get(&(index, entity))?.get(name)
    }
}

/// Sets on `alert` what `found` holds for the entities it names, as Kibana's enrichment
/// functions do, in Kibana's order. Returns whether any field was set.
pub fn apply(alert: &mut Value, found: &Found) -> bool {
    let names: Vec<Option<String>> = EntityKind::ALL
        .iter()
        .map(|e| entity_name(alert, *e))
        .collect();
    let Value::Object(doc) = alert else {
        return false;
    };
    let mut changed = false;
    for index in EnrichmentIndex::ALL {
        for (entity, name) in EntityKind::ALL.iter().zip(&names) {
            let Some(fields) = name.as_deref().and_then(|n| found.get(index, *entity, n)) else {
                continue;
            };
            changed |= match index {
                EnrichmentIndex::RiskScore => set_risk(doc, *entity, fields),
                EnrichmentIndex::AssetCriticality => set_criticality(doc, *entity, fields),
            };
        }
    }
    changed
}

/// `createHostRiskEnrichments` and its user and service twins: the level when truthy, the
/// normalised score when not null, each through lodash `set`. Returns whether either is set.
fn set_risk(doc: &mut Map<String, Value>, entity: EntityKind, fields: &Map<String, Value>) -> bool {
    let level_field = risk_level_field(entity);
    let score_field = risk_score_field(entity);
    let level = first_value(fields, &level_field).filter(|v| truthy(v));
    let score = first_value(fields, &score_field).filter(|v| !v.is_null());
    let mut set = false;
    if let Some(level) = level {
        set |= lodash_set(doc, &level_field, level.clone());
    }
    if let Some(score) = score {
        set |= lodash_set(doc, &score_field, score.clone());
    }
    set
}

/// `createEnrichmentFactoryFunction` of `asset_criticality.ts`: a truthy `criticality_level`
/// (`deleted` included, which Kibana's alert enrichment does not filter) under the dotted key.
fn set_criticality(
    doc: &mut Map<String, Value>,
    entity: EntityKind,
    fields: &Map<String, Value>,
) -> bool {
    match first_value(fields, "criticality_level").filter(|v| truthy(v)) {
        Some(level) => {
            doc.insert(criticality_field(entity), level.clone());
            true
        }
        None => false,
    }
}

/// `getEventValue`: the nested path, or, when that is falsy, the dotted key; of an array its
/// first value. Only a truthy value names an entity, as a JavaScript object key (`String(v)`).
fn entity_name(alert: &Value, entity: EntityKind) -> Option<String> {
    let path = entity.name_field();
    let nested = path
        .split('.')
        .try_fold(alert, |cur, key| cur.as_object()?.get(key));
    let value = match nested {
        Some(v) if truthy(v) => v,
        _ => alert.get(path)?,
    };
    let value = match value {
        Value::Array(items) => items.first()?,
        other => other,
    };
    truthy(value).then(|| js_string(value))
}

/// `getFieldValue`: the first value of a field of a hit's `fields`.
fn first_value<'f>(fields: &'f Map<String, Value>, field: &str) -> Option<&'f Value> {
    match fields.get(field)? {
        Value::Array(values) => values.first(),
        other => Some(other),
    }
}

/// JavaScript truthiness.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// JavaScript's `String(v)`, as a value becomes an object key.
fn js_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Object(_) => "[object Object]".into(),
        Value::Array(items) => items.iter().map(js_string).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// lodash `set(doc, path, value)` on a JSON document: an object on the way is entered, any other
/// value is replaced by an object. An array on the way gets a named property in JavaScript,
/// which JSON does not carry, so the value is lost, as it is in Kibana's written alert.
/// Returns whether the value is in the document.
fn lodash_set(doc: &mut Map<String, Value>, path: &str, value: Value) -> bool {
    let mut keys: Vec<&str> = path.split('.').collect();
    let Some(last) = keys.pop() else {
        return false;
    };
    let mut current = doc;
    for key in keys {
        let slot = current
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()));
        if slot.is_array() {
            return false;
        }
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else {
            return false;
        };
        current = next;
    }
    current.insert(last.to_owned(), value);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: Value) -> Map<String, Value> {
        pairs.as_object().cloned().expect("an object")
    }

    fn search(index: EnrichmentIndex, entity: EntityKind, values: &[&str]) -> EntitySearch {
        EntitySearch {
            index,
            entity,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    /// Every enrichment index holding an entry for host `h1`, user `alice` and service `api`.
    fn found_for_all() -> Found {
        let mut found = Found::default();
        found.record(
            &search(EnrichmentIndex::RiskScore, EntityKind::Host, &["h1"]),
            vec![fields(json!({
                "host.name": ["h1"],
                "host.risk.calculated_level": ["High"],
                "host.risk.calculated_score_norm": [72.5]
            }))],
        );
        found.record(
            &search(EnrichmentIndex::RiskScore, EntityKind::User, &["alice"]),
            vec![fields(json!({
                "user.name": ["alice"],
                "user.risk.calculated_level": ["Critical"],
                "user.risk.calculated_score_norm": [95]
            }))],
        );
        found.record(
            &search(EnrichmentIndex::RiskScore, EntityKind::Service, &["api"]),
            vec![fields(json!({
                "service.name": ["api"],
                "service.risk.calculated_level": ["Low"],
                "service.risk.calculated_score_norm": [12.25]
            }))],
        );
        for (entity, name, level) in [
            (EntityKind::Host, "h1", "high_impact"),
            (EntityKind::User, "alice", "extreme_impact"),
            (EntityKind::Service, "api", "low_impact"),
        ] {
            found.record(
                &search(EnrichmentIndex::AssetCriticality, entity, &[name]),
                vec![fields(
                    json!({"id_value": [name], "criticality_level": [level]}),
                )],
            );
        }
        found
    }

    /// Every field Kibana writes, with its shape: risk nested (lodash `set`), criticality as a
    /// dotted key at the top (`newEvent._source[ALERT_HOST_CRITICALITY] = …`); the values as
    /// the index's `fields` gave them.
    #[test]
    fn every_field_is_set_in_kibanas_shape() {
        let mut alert = json!({
            "host": {"name": "h1", "os": {"type": "linux"}},
            "user": {"name": "alice"},
            "service": {"name": "api"},
            "kibana.alert.uuid": "a1"
        });
        assert!(apply(&mut alert, &found_for_all()));
        assert_eq!(
            alert,
            json!({
                "host": {"name": "h1", "os": {"type": "linux"},
                         "risk": {"calculated_level": "High", "calculated_score_norm": 72.5}},
                "user": {"name": "alice",
                         "risk": {"calculated_level": "Critical", "calculated_score_norm": 95}},
                "service": {"name": "api",
                            "risk": {"calculated_level": "Low", "calculated_score_norm": 12.25}},
                "host.asset.criticality": "high_impact",
                "user.asset.criticality": "extreme_impact",
                "service.asset.criticality": "low_impact",
                "kibana.alert.uuid": "a1"
            })
        );
    }

    #[test]
    fn entities_without_entries_are_left_alone() {
        let found = found_for_all();
        let mut alert = json!({"host": {"name": "h2"}, "user": {"name": "bob"}});
        let before = alert.clone();
        assert!(!apply(&mut alert, &found));
        assert_eq!(alert, before);
        // No names at all, and an alert that is not an object.
        let mut empty = json!({"process": {"name": "sh"}});
        assert!(!apply(&mut empty, &found));
        assert_eq!(empty, json!({"process": {"name": "sh"}}));
        let mut odd = json!("not an alert");
        assert!(!apply(&mut odd, &found));
        // One entity known, the other not: only the known one is enriched.
        let mut mixed = json!({"host": {"name": "h2"}, "user": {"name": "alice"}});
        assert!(apply(&mut mixed, &found));
        assert!(mixed["host"].get("risk").is_none());
        assert!(mixed.get("host.asset.criticality").is_none());
        assert_eq!(mixed["user"]["risk"]["calculated_level"], json!("Critical"));
        assert_eq!(mixed["user.asset.criticality"], json!("extreme_impact"));
    }

    /// `getEventValue`: an array's first value names the entity, and only that one; the
    /// dotted key stands in when the nested path is missing or falsy.
    #[test]
    fn the_first_of_several_values_names_the_entity() {
        let found = found_for_all();
        let mut first_known = json!({"host": {"name": ["h1", "h2"]}});
        assert!(apply(&mut first_known, &found));
        assert_eq!(first_known["host.asset.criticality"], json!("high_impact"));
        let mut second_known = json!({"host": {"name": ["h2", "h1"]}});
        assert!(
            !apply(&mut second_known, &found),
            "only the first is looked at"
        );

        let mut dotted = json!({"host.name": "h1"});
        assert!(apply(&mut dotted, &found));
        assert_eq!(
            dotted["host"]["risk"]["calculated_level"],
            json!("High"),
            "the nested set creates `host` beside the dotted key"
        );
        assert_eq!(dotted["host.name"], json!("h1"));
        let mut empty_nested = json!({"host": {"name": ""}, "host.name": "h1"});
        assert!(apply(&mut empty_nested, &found), "an empty name falls back");
        let mut falsy = json!({"host": {"name": ["", "h1"]}});
        assert!(
            !apply(&mut falsy, &found),
            "a falsy first value names nothing"
        );

        let alerts = [
            json!({"host": {"name": ["h1", "h2"]}, "user.name": "alice"}),
            json!({"host": {"name": "h3"}, "user": {"name": ["alice"]}}),
            json!({"host": {"name": "h1"}, "service": {"name": 7}}),
        ];
        let searches = plan_searches(&alerts);
        let values = |index, entity| -> Vec<&str> {
            searches
                .iter()
                .filter(|s| s.index == index && s.entity == entity)
                .flat_map(|s| s.values.iter().map(String::as_str))
                .collect()
        };
        assert_eq!(
            values(EnrichmentIndex::RiskScore, EntityKind::Host),
            vec!["h1", "h3"]
        );
        assert_eq!(
            values(EnrichmentIndex::AssetCriticality, EntityKind::User),
            vec!["alice"]
        );
        assert_eq!(
            values(EnrichmentIndex::RiskScore, EntityKind::Service),
            vec!["7"],
            "a number is looked up as JavaScript's String(7)"
        );
    }

    /// The risk functions' guards: the level only when truthy, the score whenever not null (0
    /// is a score); nothing when neither.
    #[test]
    fn risk_level_and_score_are_set_independently() {
        let mut found = Found::default();
        let hit = |name: &str, level: Value, score: Value| {
            let mut f = Map::new();
            f.insert("host.name".into(), json!([name]));
            if !level.is_null() {
                f.insert("host.risk.calculated_level".into(), json!([level]));
            }
            if !score.is_null() {
                f.insert("host.risk.calculated_score_norm".into(), json!([score]));
            }
            f
        };
        found.record(
            &search(
                EnrichmentIndex::RiskScore,
                EntityKind::Host,
                &["a", "b", "c"],
            ),
            vec![
                hit("a", json!(""), json!(0)),
                hit("b", json!("Moderate"), Value::Null),
                hit("c", Value::Null, Value::Null),
            ],
        );
        let mut a = json!({"host": {"name": "a"}});
        assert!(apply(&mut a, &found));
        assert_eq!(a["host"]["risk"], json!({"calculated_score_norm": 0}));
        let mut b = json!({"host": {"name": "b"}});
        assert!(apply(&mut b, &found));
        assert_eq!(b["host"]["risk"], json!({"calculated_level": "Moderate"}));
        let mut c = json!({"host": {"name": "c"}});
        assert!(!apply(&mut c, &found));
        assert_eq!(c, json!({"host": {"name": "c"}}));
    }

    /// lodash `set` through what is on the way: objects are entered, scalars replaced, and an
    /// array keeps the value as a named property that JSON drops.
    #[test]
    fn the_nested_set_follows_lodash() {
        let mut found = Found::default();
        found.record(
            &search(EnrichmentIndex::RiskScore, EntityKind::Host, &["h1"]),
            vec![fields(
                json!({"host.name": ["h1"], "host.risk.calculated_level": ["High"]}),
            )],
        );
        let mut scalar_risk = json!({"host": {"name": "h1", "risk": "old"}});
        apply(&mut scalar_risk, &found);
        assert_eq!(
            scalar_risk["host"]["risk"],
            json!({"calculated_level": "High"})
        );
        let mut existing = json!({"host": {"name": "h1", "risk": {"calculated_level": "Low", "static_level": "x"}}});
        apply(&mut existing, &found);
        assert_eq!(
            existing["host"]["risk"],
            json!({"calculated_level": "High", "static_level": "x"})
        );
        let mut array_host = json!({"host": [{"name": "a"}], "host.name": "h1"});
        let before = array_host.clone();
        assert!(!apply(&mut array_host, &found));
        assert_eq!(array_host, before, "set into an array is lost in JSON");
    }

    /// A deleted criticality is a document whose level is `deleted`; Kibana's alert
    /// enrichment does not filter it, so neither do we. An empty level sets nothing.
    #[test]
    fn criticality_levels_are_copied_as_they_are() {
        let mut found = Found::default();
        found.record(
            &search(
                EnrichmentIndex::AssetCriticality,
                EntityKind::User,
                &["gone", "blank"],
            ),
            vec![
                fields(json!({"id_value": ["gone"], "criticality_level": ["deleted"]})),
                fields(json!({"id_value": ["blank"], "criticality_level": [""]})),
            ],
        );
        let mut gone = json!({"user": {"name": "gone"}});
        assert!(apply(&mut gone, &found));
        assert_eq!(gone["user.asset.criticality"], json!("deleted"));
        let mut blank = json!({"user": {"name": "blank"}});
        assert!(!apply(&mut blank, &found));
        assert!(blank.get("user.asset.criticality").is_none());
    }

    /// A hit is matched back by its lookup field; of two hits for one entity the later wins
    /// (Kibana's reduce overwrites), and a hit without the field is ignored.
    #[test]
    fn hits_are_matched_back_by_name() {
        let mut found = Found::default();
        assert!(found.is_empty());
        found.record(
            &search(EnrichmentIndex::AssetCriticality, EntityKind::Host, &["h1"]),
            vec![
                fields(json!({"id_value": ["h1"], "criticality_level": ["low_impact"]})),
                fields(json!({"criticality_level": ["medium_impact"]})),
                fields(json!({"id_value": ["h1"], "criticality_level": ["high_impact"]})),
            ],
        );
        assert!(!found.is_empty());
        let mut alert = json!({"host": {"name": "h1"}});
        apply(&mut alert, &found);
        assert_eq!(alert["host.asset.criticality"], json!("high_impact"));
        // Found for hosts, not users: a user of the same name is not enriched.
        let mut user = json!({"user": {"name": "h1"}});
        assert!(!apply(&mut user, &found));
    }

    /// Kibana's query: a `should` of `match` on the lookup field, `id_field` filtered on the
    /// criticality index, only `fields` read; and a `size` (Kibana's has none: see the module).
    #[test]
    fn search_bodies_are_kibanas_query() {
        let risk = search(
            EnrichmentIndex::RiskScore,
            EntityKind::User,
            &["alice", "bob"],
        );
        assert_eq!(
            risk.body(),
            json!({
                "size": 2,
                "_source": false,
                "fields": ["user.name", "user.risk.calculated_level", "user.risk.calculated_score_norm"],
                "track_total_hits": false,
                "query": {"bool": {"filter": [{"bool": {
                    "should": [
                        {"match": {"user.name": {"query": "alice", "minimum_should_match": 1}}},
                        {"match": {"user.name": {"query": "bob", "minimum_should_match": 1}}}
                    ],
                    "filter": [],
                    "minimum_should_match": 1
                }}]}}
            })
        );
        let criticality = search(
            EnrichmentIndex::AssetCriticality,
            EntityKind::Service,
            &["api"],
        );
        assert_eq!(
            criticality.body()["query"]["bool"]["filter"][0]["bool"],
            json!({
                "should": [{"match": {"id_value": {"query": "api", "minimum_should_match": 1}}}],
                "filter": [{"match": {"id_field": {"query": "service.name"}}}],
                "minimum_should_match": 1
            })
        );
        assert_eq!(
            criticality.body()["fields"],
            json!(["id_value", "criticality_level"])
        );
        assert_eq!(
            EnrichmentIndex::RiskScore.name("default"),
            "risk-score.risk-score-latest-default"
        );
        assert_eq!(
            EnrichmentIndex::AssetCriticality.name("sec"),
            ".asset-criticality.asset-criticality-sec"
        );
    }

    /// Searches go per index, then kind, in chunks of 1,000 distinct names; kinds no alert
    /// names get none.
    #[test]
    fn searches_are_planned_per_index_and_kind_in_chunks() {
        assert!(plan_searches(&[json!({"process": {"name": "sh"}})]).is_empty());
        let alerts: Vec<Value> = (0..2_500)
            .map(|i| json!({"host": {"name": format!("h{}", i % 2_001)}}))
            .collect();
        let searches = plan_searches(&alerts);
        let shape: Vec<(EnrichmentIndex, EntityKind, usize)> = searches
            .iter()
            .map(|s| (s.index, s.entity, s.values.len()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (EnrichmentIndex::RiskScore, EntityKind::Host, 1000),
                (EnrichmentIndex::RiskScore, EntityKind::Host, 1000),
                (EnrichmentIndex::RiskScore, EntityKind::Host, 1),
                (EnrichmentIndex::AssetCriticality, EntityKind::Host, 1000),
                (EnrichmentIndex::AssetCriticality, EntityKind::Host, 1000),
                (EnrichmentIndex::AssetCriticality, EntityKind::Host, 1),
            ]
        );
        assert_eq!(searches[0].values[0], "h0");
        assert_eq!(searches[2].values, vec!["h2000"]);
        let users = plan_searches(&[json!({"user": {"name": "u"}, "service": {"name": "s"}})]);
        assert_eq!(
            users
                .iter()
                .map(|s| (s.index, s.entity))
                .collect::<Vec<_>>(),
            vec![
                (EnrichmentIndex::RiskScore, EntityKind::User),
                (EnrichmentIndex::RiskScore, EntityKind::Service),
                (EnrichmentIndex::AssetCriticality, EntityKind::User),
                (EnrichmentIndex::AssetCriticality, EntityKind::Service),
            ]
        );
    }
}
