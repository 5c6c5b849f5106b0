//! seqwatch's alerts template against Kibana's security alerts index, without a node: the
//! template in `mappings/seqwatch-alerts.json` must be exactly what the fixtures in
//! `mappings/kibana/` generate (every field Kibana maps, with its type and parameters, and
//! Kibana's index settings but the ones seqwatch deliberately leaves out), so editing either
//! without the other fails here. The fixtures' own facts are pinned too, so a fixture
//! regenerated from a newer Kibana shows what moved.
//!
//! Regenerate the template after changing a fixture (or raising the template's `version`):
//! `scripts/kibana-alerts-template`, then review the diff.

#[path = "kibana/alerts_mapping.rs"]
mod kibana;

use std::collections::BTreeMap;

use serde_json::{json, Value};

use seqwatch::es::templates::{self, ALERTS_TEMPLATE};

fn seqwatch_template() -> Value {
    templates::ALL
        .iter()
        .find(|t| t.name == ALERTS_TEMPLATE)
        .expect("the alerts template")
        .body()
        .expect("the alerts template parses")
}

fn template_version(template: &Value) -> u64 {
    template["version"]
        .as_u64()
        .expect("the alerts template has a version")
}

/// Every setting that differs from Kibana's, but for the deliberate differences: the settings
/// seqwatch does not take, and the total fields limit, which must be the one the mapping needs.
fn setting_differences(
    kibana: &BTreeMap<String, Value>,
    ours: &BTreeMap<String, Value>,
    field_count: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for (key, theirs) in kibana {
        if kibana::SETTINGS_NOT_TAKEN.contains(&key.as_str()) {
            if let Some(mine) = ours.get(key) {
                out.push(format!(
                    "{key}: seqwatch {mine}, but it does not take this setting"
                ));
            }
            continue;
        }
        let expected = if key == kibana::TOTAL_FIELDS_LIMIT_SETTING {
            json!(kibana::limit_for_mapping(
                theirs.as_u64().unwrap_or_default() as usize,
                field_count
            ))
        } else {
            theirs.clone()
        };
        match ours.get(key) {
            Some(mine) if *mine == expected => {}
            Some(mine) => out.push(format!("{key}: expected {expected}, seqwatch {mine}")),
            None => out.push(format!("{key}: expected {expected}, seqwatch unset")),
        }
    }
    for (key, mine) in ours {
        if !kibana.contains_key(key) {
            out.push(format!("{key}: seqwatch {mine}, Kibana unset"));
        }
    }
    out
}

/// With `SEQWATCH_BLESS=1`, writes the generated `template` section into the template file
/// (its `index_patterns`, `priority`, `version` and `_meta` stay as they are) and passes.
fn bless_if_asked(generated: &Value) -> bool {
    if std::env::var("SEQWATCH_BLESS").as_deref() != Ok("1") {
        return false;
    }
    let mut file = seqwatch_template();
    file["template"] = generated.clone();
    let text = serde_json::to_string_pretty(&file).expect("JSON") + "\n";
    std::fs::write(kibana::SEQWATCH_TEMPLATE_FILE, text).expect("writing the template");
    eprintln!("wrote {}", kibana::SEQWATCH_TEMPLATE_FILE);
    true
}

/// The drift test proper: a field whose type or parameters differ, a Kibana field missing, a
/// field Kibana does not map, a setting that differs: each is named.
#[test]
fn every_field_and_setting_is_kibanas() {
    let template = seqwatch_template();
    let fields = kibana::field_differences(
        &kibana::flat_fields(&kibana::composed_mappings()),
        &kibana::flat_fields(&template["template"]["mappings"]),
    );
    let settings = setting_differences(
        &kibana::composed_settings(),
        &kibana::flat_settings(&template["template"]["settings"]),
        kibana::total_fields(&template["template"]["mappings"]),
    );
    assert!(
        fields.is_empty() && settings.is_empty(),
        "mappings/seqwatch-alerts.json differs from Kibana's alerts index ({} fields, {} \
         settings); regenerate it with scripts/kibana-alerts-template:\n{}",
        fields.len(),
        settings.len(),
        fields
            .iter()
            .chain(&settings)
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Byte for byte what the fixtures generate (the field test above ignores `_meta` and JSON
/// layout): a fixture changed without the template regenerated, or the template edited by
/// hand, fails here.
#[test]
fn the_template_is_generated_from_the_fixtures() {
    let template = seqwatch_template();
    let generated = kibana::seqwatch_template_section(template_version(&template));
    if bless_if_asked(&generated) {
        return;
    }
    assert!(
        template["template"] == generated,
        "mappings/seqwatch-alerts.json is not what mappings/kibana/ generates: run \
         scripts/kibana-alerts-template and review the diff"
    );
    let mut expected = template.clone();
    expected["template"] = generated;
    let text = serde_json::to_string_pretty(&expected).expect("JSON") + "\n";
    let file = std::fs::read_to_string(kibana::SEQWATCH_TEMPLATE_FILE).expect("the template file");
    assert!(
        file == text,
        "mappings/seqwatch-alerts.json is not laid out as scripts/kibana-alerts-template writes it"
    );
}

/// The drift test itself fails on each kind of drift (a check that cannot fail checks nothing).
#[test]
fn the_drift_check_names_each_kind_of_difference() {
    let kibana_fields = kibana::flat_fields(&kibana::composed_mappings());
    let mut ours = kibana_fields.clone();
    assert!(kibana::field_differences(&kibana_fields, &ours).is_empty());
    ours.insert(
        "kibana.alert.rule.enabled".into(),
        json!({"type": "boolean"}),
    );
    ours.remove("kibana.alert.reason.text");
    ours.insert("seqwatch.extra".into(), json!({"type": "keyword"}));
    let found = kibana::field_differences(&kibana_fields, &ours);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with("kibana.alert.reason.text: Kibana maps"));
    assert!(found[1].starts_with("kibana.alert.rule.enabled: Kibana maps {\"type\":\"keyword\"}"));
    assert!(found[2].starts_with("seqwatch.extra: seqwatch maps"));

    let kibana_settings = kibana::composed_settings();
    let count = kibana_fields.len();
    let mut ours = kibana_settings.clone();
    ours.remove("index.lifecycle.name");
    ours.remove("index.lifecycle.rollover_alias");
    ours.insert(
        kibana::TOTAL_FIELDS_LIMIT_SETTING.into(),
        json!(kibana::limit_for_mapping(
            kibana::kibana_total_fields_limit(),
            count
        )),
    );
    assert!(setting_differences(&kibana_settings, &ours, count).is_empty());
    ours.insert("index.mapping.ignore_malformed".into(), json!(false));
    ours.insert(kibana::TOTAL_FIELDS_LIMIT_SETTING.into(), json!(2500));
    ours.insert("index.lifecycle.name".into(), json!("x"));
    ours.insert("index.seqwatch_only".into(), json!(1));
    let found = setting_differences(&kibana_settings, &ours, count);
    assert_eq!(found.len(), 4, "{found:#?}");
}

/// The types Kibana gives the fields whose seqwatch types used to conflict with Kibana's in
/// one data view, and the settings that matter for writing alerts.
#[test]
fn kibanas_alerts_index_as_the_fixtures_give_it() {
    let fields = kibana::flat_fields(&kibana::composed_mappings());
    for (path, expected) in [
        ("kibana.alert.rule.enabled", json!({"type": "keyword"})),
        ("kibana.alert.rule.immutable", json!({"type": "keyword"})),
        ("kibana.alert.reason", json!({"type": "keyword"})),
        (
            "kibana.alert.reason.text",
            json!({"type": "match_only_text"}),
        ),
        ("kibana.alert.rule.description", json!({"type": "keyword"})),
        ("kibana.version", json!({"type": "version"})),
        ("process.command_line", json!({"type": "wildcard"})),
        (
            "process.command_line.text",
            json!({"type": "match_only_text"}),
        ),
        (
            "@timestamp",
            json!({"type": "date", "ignore_malformed": false}),
        ),
        (
            "kibana.alert.rule.parameters",
            json!({"type": "flattened", "ignore_above": 4096}),
        ),
        ("kibana.alert.group.index", json!({"type": "integer"})),
        ("kibana.alert.ancestors", json!({"type": "object"})),
        ("threat.enrichments", json!({"type": "nested"})),
        (
            "signal.rule.id",
            json!({"type": "alias", "path": "kibana.alert.rule.uuid"}),
        ),
        // The framework's definition wins over the security context's (later in composed_of).
        (
            "event.original",
            json!({"type": "keyword", "ignore_above": 32766}),
        ),
        ("data_stream.dataset", json!({"type": "keyword"})),
    ] {
        assert_eq!(fields.get(path), Some(&expected), "{path}");
    }
    for absent in [
        "kibana.alert.scheduled_action.throttling",
        "kibana.alert.state",
        "kibana.alert.rule.indices",
    ] {
        assert!(!fields.contains_key(absent), "{absent} is not mapped");
    }
    let mappings = kibana::composed_mappings();
    assert_eq!(mappings["dynamic"], json!(false));
    let settings = kibana::composed_settings();
    for (key, value) in [
        ("index.hidden", json!(true)),
        ("index.auto_expand_replicas", json!("0-1")),
        ("index.number_of_shards", json!(1)),
        ("index.mapping.ignore_malformed", json!(true)),
        ("index.mapping.total_fields.limit", json!(2800)),
        (
            "index.mapping.total_fields.ignore_dynamic_beyond_limit",
            json!(true),
        ),
        ("index.lifecycle.name", json!(".alerts-ilm-policy")),
    ] {
        assert_eq!(settings.get(key), Some(&value), "{key}");
    }
}

/// `mappingFromFieldMap` as Kibana's own test pins it (`mapping_from_field_map.test.ts`):
/// dotted names nest, multi-fields keep their type only, `@timestamp` refuses malformed values.
#[test]
fn mapping_from_field_map_nests_dotted_names_like_kibana() {
    let fields = json!({
        "@timestamp": {"type": "date", "array": false, "required": true},
        "parent_field.child1": {"type": "keyword", "array": false, "required": false, "ignore_above": 1024},
        "multifield_field": {"type": "keyword", "array": false, "required": false, "ignore_above": 1024,
            "multi_fields": [{"flat_name": "multifield_field.text", "name": "text", "type": "match_only_text"}]},
        "nested_array_field": {"type": "nested", "array": false, "required": false},
        "nested_array_field.field1": {"type": "keyword", "array": false, "required": false},
        "scaled_float_field": {"type": "scaled_float", "array": false, "required": false, "scaling_factor": 1000},
        "formatted_field": {"type": "date_range", "required": false, "format": "epoch_millis||strict_date_optional_time"},
        "gone": {"type": "unmapped", "required": false},
    });
    let mapped = kibana::mapping_from_field_map(fields.as_object().unwrap(), json!("strict"));
    assert_eq!(
        mapped,
        json!({"dynamic": "strict", "properties": {
            "@timestamp": {"type": "date", "ignore_malformed": false},
            "parent_field": {"properties": {"child1": {"type": "keyword", "ignore_above": 1024}}},
            "multifield_field": {"type": "keyword", "ignore_above": 1024, "fields": {"text": {"type": "match_only_text"}}},
            "nested_array_field": {"type": "nested", "properties": {"field1": {"type": "keyword"}}},
            "scaled_float_field": {"type": "scaled_float", "scaling_factor": 1000},
            "formatted_field": {"type": "date_range", "format": "epoch_millis||strict_date_optional_time"},
        }})
    );
}

/// Kibana sets field map entries in order with lodash `set`, which would drop the children of
/// a parent set after them; `mapping_from_field_map` sets parents first, which is the same
/// only while no fixture lists a parent after one of its children.
#[test]
fn fixtures_list_no_parent_after_its_children() {
    for file in [
        "ecs-field-map.json",
        "alert-field-map.json",
        "legacy-alert-field-map.json",
        "security-alert-field-map.json",
    ] {
        let text = std::fs::read_to_string(format!("{}/{file}", kibana::FIXTURE_DIR))
            .expect("the fixture");
        let fields_at = text.find("\"fields\"").expect("a fields object");
        let position = |name: &str| {
            text[fields_at..]
                .find(&format!("\"{name}\": {{"))
                .unwrap_or_else(|| panic!("{file}: {name} is not a key"))
        };
        let names: Vec<String> = kibana::field_map(file).keys().cloned().collect();
        let mut late = Vec::new();
        for parent in &names {
            let prefix = format!("{parent}.");
            for child in names.iter().filter(|n| n.starts_with(&prefix)) {
                if position(parent) > position(child) {
                    late.push(format!("{parent} after {child}"));
                }
            }
        }
        assert!(late.is_empty(), "{file}: {late:?}");
    }
}

/// How many fields of each field map and of each type the fixtures give: a fixture replaced by
/// a newer Kibana's shows here what changed.
#[test]
fn the_fixtures_field_counts() {
    let counts: Vec<(&str, usize)> = [
        "ecs-field-map.json",
        "alert-field-map.json",
        "legacy-alert-field-map.json",
        "security-alert-field-map.json",
    ]
    .into_iter()
    .map(|file| (file, kibana::field_map(file).len()))
    .collect();
    assert_eq!(
        counts,
        [
            ("ecs-field-map.json", 1626),
            ("alert-field-map.json", 59),
            ("legacy-alert-field-map.json", 29),
            ("security-alert-field-map.json", 254),
        ]
    );
    let mappings = kibana::composed_mappings();
    let types: Vec<(String, usize)> = kibana::type_counts(&mappings).into_iter().collect();
    let expected: Vec<(String, usize)> = [
        ("alias", 76),
        ("boolean", 47),
        ("date", 88),
        ("date_range", 1),
        ("double", 5),
        ("flattened", 2),
        ("float", 33),
        ("geo_point", 8),
        ("integer", 6),
        ("ip", 17),
        ("keyword", 1285),
        ("long", 185),
        ("match_only_text", 118),
        ("nested", 1),
        ("object", 448),
        ("scaled_float", 4),
        ("version", 1),
        ("wildcard", 18),
    ]
    .into_iter()
    .map(|(ty, n)| (ty.to_owned(), n))
    .collect();
    assert_eq!(types, expected);
    // What Elasticsearch counts against the limit: under Kibana's 2800, so seqwatch's template
    // takes Kibana's limit as it is; a mapping past it would get the next thousand plus 500.
    assert_eq!(kibana::total_fields(&mappings), 2343);
    assert_eq!(kibana::limit_for_mapping(2800, 2343), 2800);
    assert_eq!(kibana::limit_for_mapping(2800, 3303), 4500);
}
