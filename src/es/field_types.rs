//! Mapping types that not every Elasticsearch distribution has, and what seqwatch maps in their
//! place where a cluster lacks one. The alerts template uses Kibana's own types (`wildcard`,
//! `match_only_text`, `version`, `scaled_float`, as Kibana's alerts index does); they live in
//! modules and plugins that the default distribution ships but the integ-test distribution
//! (and some hand-built clusters) leave out, and a template using an unknown type is refused
//! whole. `seqwatch setup` asks the cluster which of the template's types it knows
//! ([`super::EsClient::unsupported_field_types`]) and maps each unknown one as its fallback
//! here, saying so in the installed template's `_meta`. The table is pinned by its tests and
//! listed in `mappings/README.md`.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

/// A mapping type some distributions lack, and seqwatch's stand-in for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TypeFallback {
    /// The type Kibana maps, and seqwatch where the cluster has it.
    pub kibana_type: &'static str,
    /// The core type mapped instead where the cluster lacks `kibana_type`.
    pub fallback: &'static str,
    /// Parameters of `kibana_type` that the fallback does not accept, dropped with the type.
    pub dropped_parameters: &'static [&'static str],
    /// Parameters the fallback gets unless the field sets them.
    pub added_parameters: &'static [(&'static str, u32)],
}

/// `ignore_above` of the keyword fallbacks: the types they stand in for index values of any
/// length, but a keyword term cannot exceed Lucene's 32766 bytes (the whole document is refused
/// then, `ignore_malformed` or not), and 8191 characters of at most 4 bytes each stay below it.
/// Longer values stay in `_source`, unindexed.
pub const KEYWORD_FALLBACK_IGNORE_ABOVE: u32 = 8191;

impl TypeFallback {
    /// The smallest valid mapping of the Kibana type, to ask the cluster about it.
    pub fn probe_mapping(&self) -> Value {
        match self.kibana_type {
            // scaled_float refuses a mapping without its factor.
            "scaled_float" => json!({"type": "scaled_float", "scaling_factor": 100}),
            other => json!({ "type": other }),
        }
    }
}

/// Every fallback: the closest core type, which takes the same values and the same queries
/// (`wildcard` and `constant_keyword` values are keyword terms, up to
/// [`KEYWORD_FALLBACK_IGNORE_ABOVE`] characters; `match_only_text` is text without positions;
/// `version` strings compare as keywords, not by precedence; `scaled_float` values are
/// doubles, unscaled; `unsigned_long` values above `i64::MAX` are malformed for `long`, ignored
/// under the index's `ignore_malformed`).
pub const TYPE_FALLBACKS: [TypeFallback; 6] = [
    TypeFallback {
        kibana_type: "wildcard",
        fallback: "keyword",
        dropped_parameters: &[],
        added_parameters: &[("ignore_above", KEYWORD_FALLBACK_IGNORE_ABOVE)],
    },
    TypeFallback {
        kibana_type: "match_only_text",
        fallback: "text",
        dropped_parameters: &[],
        added_parameters: &[],
    },
    TypeFallback {
        kibana_type: "version",
        fallback: "keyword",
        dropped_parameters: &[],
        added_parameters: &[("ignore_above", KEYWORD_FALLBACK_IGNORE_ABOVE)],
    },
    TypeFallback {
        kibana_type: "scaled_float",
        fallback: "double",
        dropped_parameters: &["scaling_factor"],
        added_parameters: &[],
    },
    TypeFallback {
        kibana_type: "constant_keyword",
        fallback: "keyword",
        dropped_parameters: &["value"],
        added_parameters: &[("ignore_above", KEYWORD_FALLBACK_IGNORE_ABOVE)],
    },
    TypeFallback {
        kibana_type: "unsigned_long",
        fallback: "long",
        dropped_parameters: &[],
        added_parameters: &[],
    },
];

/// The fallback of `kibana_type`, if it has one.
pub fn fallback_of(kibana_type: &str) -> Option<&'static TypeFallback> {
    TYPE_FALLBACKS.iter().find(|f| f.kibana_type == kibana_type)
}

/// The types of [`TYPE_FALLBACKS`] that a template body's mappings use.
pub fn types_with_fallbacks(template: &Value) -> BTreeSet<&'static str> {
    let mut used = BTreeSet::new();
    visit_fields(template, &mut |field| {
        if let Some(fallback) = field
            .get("type")
            .and_then(Value::as_str)
            .and_then(fallback_of)
        {
            used.insert(fallback.kibana_type);
        }
    });
    used
}

/// Maps every field of a template body whose type is in `unsupported` as that type's fallback,
/// dropping the parameters the fallback does not take, and records what was replaced under
/// `type_fallbacks` in the template's `_meta` and its mappings' `_meta` (so the index's own
/// mapping says so too). Returns the fallbacks applied, in table order.
pub fn apply_type_fallbacks(
    template: &mut Value,
    unsupported: &BTreeSet<String>,
) -> Vec<TypeFallback> {
    let mut applied = BTreeSet::new();
    visit_fields_mut(template, &mut |field| {
        let Some(fallback) = field
            .get("type")
            .and_then(Value::as_str)
            .filter(|ty| unsupported.contains(*ty))
            .and_then(fallback_of)
        else {
            return;
        };
        field.insert("type".into(), Value::String(fallback.fallback.into()));
        for parameter in fallback.dropped_parameters {
            field.remove(*parameter);
        }
        for (parameter, value) in fallback.added_parameters {
            field
                .entry(parameter.to_string())
                .or_insert_with(|| json!(value));
        }
        applied.insert(*fallback);
    });
    let applied: Vec<TypeFallback> = TYPE_FALLBACKS
        .into_iter()
        .filter(|f| applied.contains(f))
        .collect();
    if !applied.is_empty() {
        let record: Map<String, Value> = applied
            .iter()
            .map(|f| (f.kibana_type.to_owned(), Value::String(f.fallback.into())))
            .collect();
        record_in_meta(&mut template["_meta"], &record);
        record_in_meta(&mut template["template"]["mappings"]["_meta"], &record);
    }
    applied
}

/// Sets `type_fallbacks` in a `_meta` object, creating it if absent.
fn record_in_meta(meta: &mut Value, record: &Map<String, Value>) {
    if !meta.is_object() {
        *meta = json!({});
    }
    meta["type_fallbacks"] = Value::Object(record.clone());
}

/// Calls `visit` on every field mapping of a template body: `properties` at any depth, the
/// multi-fields under `fields`, and the `mapping` of each dynamic template.
fn visit_fields(template: &Value, visit: &mut dyn FnMut(&Map<String, Value>)) {
    fn walk_properties(properties: &Value, visit: &mut dyn FnMut(&Map<String, Value>)) {
        let Some(properties) = properties.as_object() else {
            return;
        };
        for field in properties.values().filter_map(Value::as_object) {
            visit(field);
            if let Some(multi) = field.get("fields").and_then(Value::as_object) {
                multi
                    .values()
                    .filter_map(Value::as_object)
                    .for_each(&mut *visit);
            }
            if let Some(children) = field.get("properties") {
                walk_properties(children, visit);
            }
        }
    }
    let mappings = &template["template"]["mappings"];
    walk_properties(&mappings["properties"], visit);
    for dynamic in mappings["dynamic_templates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for spec in dynamic.as_object().into_iter().flat_map(Map::values) {
            if let Some(mapping) = spec["mapping"].as_object() {
                visit(mapping);
            }
        }
    }
}

/// [`visit_fields`], mutably.
fn visit_fields_mut(template: &mut Value, visit: &mut dyn FnMut(&mut Map<String, Value>)) {
    fn walk_properties(properties: &mut Value, visit: &mut dyn FnMut(&mut Map<String, Value>)) {
        let Some(properties) = properties.as_object_mut() else {
            return;
        };
        for field in properties.values_mut().filter_map(Value::as_object_mut) {
            visit(field);
            if let Some(multi) = field.get_mut("fields").and_then(Value::as_object_mut) {
                multi
                    .values_mut()
                    .filter_map(Value::as_object_mut)
                    .for_each(&mut *visit);
            }
            if let Some(children) = field.get_mut("properties") {
                walk_properties(children, visit);
            }
        }
    }
    let mappings = &mut template["template"]["mappings"];
    walk_properties(&mut mappings["properties"], visit);
    if let Some(dynamic) = mappings
        .get_mut("dynamic_templates")
        .and_then(Value::as_array_mut)
    {
        for entry in dynamic.iter_mut().filter_map(Value::as_object_mut) {
            for spec in entry.values_mut() {
                if let Some(mapping) = spec.get_mut("mapping").and_then(Value::as_object_mut) {
                    visit(mapping);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table as mappings/README.md lists it: a change here is a change of what seqwatch
    /// maps on clusters without Kibana's types.
    #[test]
    fn the_fallback_table() {
        type Row = (
            &'static str,
            &'static str,
            &'static [&'static str],
            &'static [(&'static str, u32)],
        );
        let table: Vec<Row> = TYPE_FALLBACKS
            .iter()
            .map(|f| {
                (
                    f.kibana_type,
                    f.fallback,
                    f.dropped_parameters,
                    f.added_parameters,
                )
            })
            .collect();
        let ignore_above: &[(&str, u32)] = &[("ignore_above", 8191)];
        assert_eq!(
            table,
            [
                ("wildcard", "keyword", &[][..], ignore_above),
                ("match_only_text", "text", &[][..], &[][..]),
                ("version", "keyword", &[][..], ignore_above),
                ("scaled_float", "double", &["scaling_factor"][..], &[][..]),
                ("constant_keyword", "keyword", &["value"][..], ignore_above),
                ("unsigned_long", "long", &[][..], &[][..]),
            ]
        );
        // 8191 characters of at most 4 UTF-8 bytes each fit in Lucene's largest term.
        const { assert!(4 * KEYWORD_FALLBACK_IGNORE_ABOVE <= 32766) };
        for fallback in &TYPE_FALLBACKS {
            assert!(
                TYPE_FALLBACKS
                    .iter()
                    .all(|f| f.kibana_type != fallback.fallback),
                "{} falls back to a type that may be missing too",
                fallback.kibana_type
            );
            assert_eq!(fallback.probe_mapping()["type"], fallback.kibana_type);
        }
    }

    fn sample() -> Value {
        json!({
            "_meta": {"managed_by": "seqwatch"},
            "template": {"mappings": {
                "properties": {
                    "process": {"properties": {
                        "command_line": {"type": "wildcard", "fields": {"text": {"type": "match_only_text"}}},
                        "title": {"type": "wildcard", "ignore_above": 1024},
                        "name": {"type": "keyword", "ignore_above": 1024, "fields": {"text": {"type": "match_only_text"}}},
                    }},
                    "host": {"properties": {"cpu": {"properties": {"usage": {"type": "scaled_float", "scaling_factor": 1000}}}}},
                    "kibana": {"properties": {"version": {"type": "version"}}},
                    "data_stream": {"properties": {"type": {"type": "constant_keyword", "value": "logs"}}},
                },
                "dynamic_templates": [{"strings": {"match_mapping_type": "string", "mapping": {"type": "wildcard"}}}],
            }},
        })
    }

    #[test]
    fn unsupported_types_become_their_fallbacks_and_the_template_says_so() {
        let mut template = sample();
        assert_eq!(
            types_with_fallbacks(&template)
                .into_iter()
                .collect::<Vec<_>>(),
            [
                "constant_keyword",
                "match_only_text",
                "scaled_float",
                "version",
                "wildcard"
            ]
        );
        let unsupported: BTreeSet<String> = ["wildcard", "match_only_text", "scaled_float"]
            .map(String::from)
            .into();
        let applied = apply_type_fallbacks(&mut template, &unsupported);
        assert_eq!(
            applied.iter().map(|f| f.kibana_type).collect::<Vec<_>>(),
            ["wildcard", "match_only_text", "scaled_float"]
        );
        let mappings = &template["template"]["mappings"];
        let process = &mappings["properties"]["process"]["properties"];
        assert_eq!(
            process["command_line"],
            json!({"type": "keyword", "ignore_above": 8191, "fields": {"text": {"type": "text"}}})
        );
        // A field's own ignore_above stays.
        assert_eq!(
            process["title"],
            json!({"type": "keyword", "ignore_above": 1024})
        );
        assert_eq!(process["name"]["fields"]["text"], json!({"type": "text"}));
        assert_eq!(process["name"]["ignore_above"], 1024);
        assert_eq!(
            mappings["properties"]["host"]["properties"]["cpu"]["properties"]["usage"],
            json!({"type": "double"})
        );
        // What the cluster has stays Kibana's.
        assert_eq!(
            mappings["properties"]["kibana"]["properties"]["version"],
            json!({"type": "version"})
        );
        assert_eq!(
            mappings["properties"]["data_stream"]["properties"]["type"]["type"],
            "constant_keyword"
        );
        assert_eq!(
            mappings["dynamic_templates"][0]["strings"]["mapping"],
            json!({"type": "keyword", "ignore_above": 8191})
        );
        let record =
            json!({"wildcard": "keyword", "match_only_text": "text", "scaled_float": "double"});
        assert_eq!(template["_meta"]["type_fallbacks"], record);
        assert_eq!(template["_meta"]["managed_by"], "seqwatch");
        assert_eq!(mappings["_meta"]["type_fallbacks"], record);
        assert!(types_with_fallbacks(&template)
            .iter()
            .all(|t| !unsupported.contains(*t)));
    }

    #[test]
    fn a_cluster_with_every_type_gets_the_template_unchanged() {
        let mut template = sample();
        assert!(apply_type_fallbacks(&mut template, &BTreeSet::new()).is_empty());
        assert_eq!(template, sample());
    }
}
