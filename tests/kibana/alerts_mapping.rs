//! Kibana's security alerts index (`.alerts-security.alerts-<space>`) built from the fixtures in
//! `mappings/kibana/` the way Kibana's alerting framework builds it: each field map becomes a
//! component template through `mappingFromFieldMap`
//! (`x-pack/platform/plugins/shared/alerting/common/alert_schema/field_maps/mapping_from_field_map.ts`
//! and `component_template_from_field_map.ts` in elastic/kibana), and the index template composes
//! them in `composed_of` order (`alerts_service/alerts_service.ts`,
//! `alerts_service/lib/create_or_update_index_template.ts`). `alerts-index-template.json` names
//! the exact sources and commits.
//!
//! What this computes is what Elasticsearch composes from those templates: mappings merged in
//! `composed_of` order, then the index template's own, a later definition of a field replacing an
//! earlier one whole, objects merged property by property; settings likewise, the index
//! template's last. `tests/es_kibana_alias.rs` checks that against a node.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// The fixtures' directory.
pub const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/mappings/kibana");

/// seqwatch's alerts template, as the repository has it.
pub const SEQWATCH_TEMPLATE_FILE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/mappings/seqwatch-alerts.json");

/// Settings Kibana's index carries that seqwatch's deliberately does not: the ILM policy and
/// its rollover alias (seqwatch writes one plain index per space, never rolled over).
pub const SETTINGS_NOT_TAKEN: [&str; 2] =
    ["index.lifecycle.name", "index.lifecycle.rollover_alias"];

/// The one setting seqwatch may set to another value than Kibana's index template: Kibana's
/// limit (2800, the default of `xpack.alerting.alertsService.totalFieldsLimit` since 9.4.3,
/// elastic/kibana#274024) when the composed mapping fits under it, else a limit that admits the
/// whole mapping from the start ([`limit_for_mapping`]): Elasticsearch refuses a template whose
/// mapping exceeds its own limit, where Kibana raises the limit on the live index when a
/// mapping update hits it (`alerts_service/lib/create_concrete_write_index.ts`,
/// `increaseFieldsLimit`).
pub const TOTAL_FIELDS_LIMIT_SETTING: &str = "index.mapping.total_fields.limit";

/// The total fields limit seqwatch's template carries for a mapping of `fields` fields, where
/// Kibana's index template says `kibana_limit`.
pub fn limit_for_mapping(kibana_limit: usize, fields: usize) -> usize {
    if fields <= kibana_limit {
        kibana_limit
    } else {
        total_fields_limit_for(fields)
    }
}

/// Kibana's index template's total fields limit.
pub fn kibana_total_fields_limit() -> usize {
    composed_settings()
        .get(TOTAL_FIELDS_LIMIT_SETTING)
        .and_then(Value::as_u64)
        .expect("Kibana's index template sets a total fields limit") as usize
}

/// Kibana's rule for the limit of a mapping of `fields` fields
/// (`getComponentTemplateFromFieldMap`: the next thousand, plus 500), applied to the whole
/// composed mapping.
pub fn total_fields_limit_for(fields: usize) -> usize {
    fields.div_ceil(1000) * 1000 + 500
}

/// The fields of `mappings` as Elasticsearch counts them against
/// `index.mapping.total_fields.limit`: every field, multi-field, alias and object.
pub fn total_fields(mappings: &Value) -> usize {
    flat_fields(mappings).len()
}

/// One fixture file, parsed.
pub fn fixture(name: &str) -> Value {
    let path = format!("{FIXTURE_DIR}/{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {path}: {err}"));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{path} is not JSON: {err}"))
}

/// The description of Kibana's templates: `alerts-index-template.json`.
pub fn layout() -> Value {
    fixture("alerts-index-template.json")
}

/// A field map's `fields`, by dotted name.
pub fn field_map(file: &str) -> Map<String, Value> {
    match fixture(file).get("fields") {
        Some(Value::Object(fields)) => fields.clone(),
        _ => panic!("{file} has no `fields` object"),
    }
}

/// `mappingFromFieldMap(fieldMap, dynamic)`: every entry without `required`, `array` and
/// `multi_fields` is set at its dotted path (`a.properties.b`), multi-fields become `fields`
/// with their type only, `@timestamp` gets `ignore_malformed: false`, and entries of type
/// `unmapped` are left out (Elasticsearch has no such type; Kibana keeps them in `_source`).
///
/// Kibana sets entries in the map's order with lodash `set`, so an entry set after one of its
/// children would drop them; the fixtures list no parent after a child
/// (`fixtures_list_no_parent_after_its_children`), so setting them in any order gives the same
/// mapping.
pub fn mapping_from_field_map(fields: &Map<String, Value>, dynamic: Value) -> Value {
    let mut properties = Map::new();
    let mut names: Vec<&String> = fields.keys().collect();
    // Parents before children, as the fixtures list them.
    names.sort_by_key(|name| name.matches('.').count());
    for name in names {
        let Value::Object(entry) = &fields[name] else {
            panic!("field map entry {name} is not an object");
        };
        if entry.get("type") == Some(&json!("unmapped")) {
            continue;
        }
        let mut mapped: Map<String, Value> = entry
            .iter()
            .filter(|(key, _)| !matches!(key.as_str(), "required" | "array" | "multi_fields"))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if let Some(Value::Array(multi)) = entry.get("multi_fields") {
            let sub: Map<String, Value> = multi
                .iter()
                .map(|field| {
                    let name = field["name"].as_str().expect("a multi-field has a name");
                    (name.to_owned(), json!({"type": field["type"]}))
                })
                .collect();
            mapped.insert("fields".into(), Value::Object(sub));
        }
        if name == "@timestamp" {
            mapped.insert("ignore_malformed".into(), Value::Bool(false));
        }
        set_at_path(&mut properties, name, mapped);
    }
    json!({"dynamic": dynamic, "properties": properties})
}

/// lodash `set(properties, 'a.properties.b', value)`: intermediate objects are created with
/// only `properties`, and whatever was at the path is replaced.
fn set_at_path(properties: &mut Map<String, Value>, dotted: &str, value: Map<String, Value>) {
    let mut segments = dotted.split('.').peekable();
    let mut node = properties;
    while let Some(segment) = segments.next() {
        if segments.peek().is_none() {
            node.insert(segment.to_owned(), Value::Object(value));
            return;
        }
        let child = node
            .entry(segment.to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a mapping node is an object");
        node = child
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("properties is an object");
    }
}

/// One of Kibana's component templates, as `getComponentTemplateFromFieldMap` builds it.
pub struct ComponentTemplate {
    /// Its name, e.g. `.alerts-framework-mappings`.
    pub name: String,
    /// The `PUT _component_template/<name>` body.
    pub body: Value,
}

/// The four component templates, in `composed_of` order.
pub fn component_templates() -> Vec<ComponentTemplate> {
    let layout = layout();
    layout["component_templates"]
        .as_array()
        .expect("component_templates is a list")
        .iter()
        .map(|spec| {
            let name = spec["name"].as_str().expect("a name").to_owned();
            let fields = field_map(spec["field_map"].as_str().expect("a field_map file"));
            let settings = if spec["include_settings"] == json!(true) {
                let limit = fields.len().div_ceil(1000) * 1000 + 500;
                json!({
                    "number_of_shards": 1,
                    "index.mapping.total_fields.ignore_dynamic_beyond_limit": true,
                    "index.mapping.total_fields.limit": limit,
                })
            } else {
                json!({})
            };
            let mappings = mapping_from_field_map(&fields, spec["dynamic"].clone());
            ComponentTemplate {
                name,
                body: json!({
                    "_meta": {"managed": true},
                    "template": {"settings": settings, "mappings": mappings},
                }),
            }
        })
        .collect()
}

/// Kibana's index template for space `default`: its name and `PUT _index_template/<name>`
/// body, as the fixture has it.
pub fn index_template() -> (String, Value) {
    let layout = layout();
    let template = &layout["index_template"];
    (
        template["name"].as_str().expect("a name").to_owned(),
        template["body"].clone(),
    )
}

/// Kibana's index template for another space (`getIndexTemplateAndPattern` with that
/// namespace): the space in every name, pattern and alias, in `_meta.namespace`, and as the
/// priority (the namespace's length).
pub fn index_template_for_space(space: &str) -> (String, Value) {
    let (name, body) = index_template();
    let renamed = |text: &str| {
        text.replace("alerts-default", &format!("alerts-{space}"))
            .replace(".siem-signals-default", &format!(".siem-signals-{space}"))
    };
    let mut body: Value =
        serde_json::from_str(&renamed(&body.to_string())).expect("the renamed template");
    body["_meta"]["namespace"] = json!(space);
    body["template"]["mappings"]["_meta"]["namespace"] = json!(space);
    body["priority"] = json!(space.len());
    (renamed(&name), body)
}

/// The concrete write index Kibana creates and the alias it writes through, for space
/// `default`.
pub fn write_index() -> (String, String) {
    let layout = layout();
    let write = &layout["write_index"];
    (
        write["name"].as_str().expect("a name").to_owned(),
        write["alias"].as_str().expect("an alias").to_owned(),
    )
}

/// [`write_index`] for another space.
pub fn write_index_for_space(space: &str) -> (String, String) {
    let (index, alias) = write_index();
    let renamed = |text: &str| text.replace("alerts-default", &format!("alerts-{space}"));
    (renamed(&index), renamed(&alias))
}

/// The mappings Elasticsearch composes for Kibana's index: the component templates' in
/// `composed_of` order, then the index template's own.
pub fn composed_mappings() -> Value {
    let (_, index_template) = index_template();
    let mut composed = json!({});
    for component in component_templates() {
        merge_mapping(&mut composed, &component.body["template"]["mappings"]);
    }
    merge_mapping(&mut composed, &index_template["template"]["mappings"]);
    composed
}

/// Elasticsearch's composition of one template's mappings into the ones before: root
/// parameters are replaced, `properties` merged.
fn merge_mapping(into: &mut Value, from: &Value) {
    let (Value::Object(into), Value::Object(from)) = (into, from) else {
        panic!("mappings are objects");
    };
    for (key, value) in from {
        if key == "properties" {
            let target = into
                .entry("properties")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("properties is an object");
            merge_properties(target, value.as_object().expect("properties is an object"));
        } else {
            into.insert(key.clone(), value.clone());
        }
    }
}

/// An object field (no type, or `object`/`nested`) merges with an object field of the same
/// name property by property, its other parameters replaced; anything else replaces what was
/// there whole.
fn merge_properties(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    fn is_object(node: &Value) -> bool {
        matches!(
            node.get("type").and_then(Value::as_str),
            None | Some("object" | "nested")
        ) && node.get("fields").is_none()
    }
    for (name, node) in from {
        match into.get_mut(name) {
            Some(existing) if is_object(existing) && is_object(node) => {
                let existing = existing.as_object_mut().expect("a field is an object");
                for (key, value) in node.as_object().expect("a field is an object") {
                    if key == "properties" {
                        let target = existing
                            .entry("properties")
                            .or_insert_with(|| json!({}))
                            .as_object_mut()
                            .expect("properties is an object");
                        merge_properties(target, value.as_object().expect("properties"));
                    } else {
                        existing.insert(key.clone(), value.clone());
                    }
                }
            }
            _ => {
                into.insert(name.clone(), node.clone());
            }
        }
    }
}

/// Settings as flat `index.*` keys with JSON values, the way they compare: `hidden` and
/// `index.hidden` and `{"index": {"hidden": ...}}` are one setting.
pub fn flat_settings(settings: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, child, out);
                }
            }
            leaf => {
                let key = if prefix.starts_with("index.") {
                    prefix.to_owned()
                } else {
                    format!("index.{prefix}")
                };
                out.insert(key, leaf.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", settings, &mut out);
    out
}

/// The settings Elasticsearch composes for Kibana's index.
pub fn composed_settings() -> BTreeMap<String, Value> {
    let (_, index_template) = index_template();
    let mut composed = BTreeMap::new();
    for component in component_templates() {
        composed.extend(flat_settings(&component.body["template"]["settings"]));
    }
    composed.extend(flat_settings(&index_template["template"]["settings"]));
    composed
}

/// Flat settings as the nested object a template file shows.
pub fn nested_settings(flat: &BTreeMap<String, Value>) -> Value {
    let mut root = Map::new();
    for (key, value) in flat {
        let mut segments: Vec<&str> = key.split('.').collect();
        let leaf = segments.pop().expect("a setting has a name");
        let mut node = &mut root;
        for segment in segments {
            node = node
                .entry(segment.to_owned())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("a settings group is an object");
        }
        node.insert(leaf.to_owned(), value.clone());
    }
    Value::Object(root)
}

/// The `template` section of seqwatch's alerts template, generated from the fixtures: Kibana's
/// composed mappings and settings, without the settings in [`SETTINGS_NOT_TAKEN`], with the
/// total fields limit the mapping needs ([`TOTAL_FIELDS_LIMIT_SETTING`]), and with seqwatch's
/// own `_meta` in the mappings (the template `version` the index was created from).
pub fn seqwatch_template_section(template_version: u64) -> Value {
    let mut mappings = composed_mappings();
    mappings["_meta"] = json!({
        "managed_by": "seqwatch",
        "template_version": template_version,
        "generated_from": "mappings/kibana/ (see mappings/README.md)",
    });
    let mut settings = composed_settings();
    for key in SETTINGS_NOT_TAKEN {
        assert!(
            settings.remove(key).is_some(),
            "Kibana's index no longer sets {key}: update SETTINGS_NOT_TAKEN and the docs"
        );
    }
    let limit = limit_for_mapping(kibana_total_fields_limit(), total_fields(&mappings));
    settings.insert(TOTAL_FIELDS_LIMIT_SETTING.into(), json!(limit));
    json!({"settings": nested_settings(&settings), "mappings": mappings})
}

/// Every field of a mapping by dotted path (multi-fields as `field.sub`), with its parameters
/// but its children; an object field shows as `{"type": "object"}` plus its own parameters.
pub fn flat_fields(mappings: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, properties: &Map<String, Value>, out: &mut BTreeMap<String, Value>) {
        for (name, node) in properties {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            let node = node.as_object().expect("a field is an object");
            let mut params: Map<String, Value> = node
                .iter()
                .filter(|(key, _)| !matches!(key.as_str(), "properties" | "fields"))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            params
                .entry("type")
                .or_insert_with(|| Value::String("object".into()));
            out.insert(path.clone(), Value::Object(params));
            if let Some(Value::Object(children)) = node.get("properties") {
                walk(&path, children, out);
            }
            if let Some(Value::Object(multi)) = node.get("fields") {
                for (sub, sub_node) in multi {
                    out.insert(format!("{path}.{sub}"), sub_node.clone());
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Some(Value::Object(properties)) = mappings.get("properties") {
        walk("", properties, &mut out);
    }
    out
}

/// Every difference between two flat field lists ([`flat_fields`]), one line each: a field
/// Kibana maps that seqwatch does not, one mapped differently, one only seqwatch maps.
pub fn field_differences(
    kibana: &BTreeMap<String, Value>,
    ours: &BTreeMap<String, Value>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, theirs) in kibana {
        match ours.get(path) {
            None => out.push(format!("{path}: Kibana maps {theirs}, seqwatch does not")),
            Some(mine) if mine != theirs => {
                out.push(format!("{path}: Kibana maps {theirs}, seqwatch {mine}"))
            }
            Some(_) => {}
        }
    }
    for (path, mine) in ours {
        if !kibana.contains_key(path) {
            out.push(format!("{path}: seqwatch maps {mine}, Kibana does not"));
        }
    }
    out
}

/// Every mapping type used in `mappings`, with how many fields use it.
pub fn type_counts(mappings: &Value) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for params in flat_fields(mappings).values() {
        if let Some(ty) = params["type"].as_str() {
            *counts.entry(ty.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}
