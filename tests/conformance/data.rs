//! Loads the ES QA data sets the way ES's `DataLoader` (`x-pack/plugin/eql/qa/common/src/main/
//! java/org/elasticsearch/test/eql/DataLoader.java`) indexes them, as seqwatch hits, and the
//! mapping types seqwatch needs to read them as ES does.
//!
//! - `endgame-140`: the Python suite's `test_data.json` (ES's `endgame-140.data` has the same
//!   events); `DataLoader.timestampToUnixMillis` adds `@timestamp` = FILETIME / 10⁴ −
//!   11644473600000 ms. One shard, bulk-loaded in file order, so `_shard_doc` order is file order,
//!   which is the input order the replay sort keeps for ties.
//! - `extra`, `missing-events`: loaded as they are; the `.data` files may hold `//` comment lines,
//!   which ES's JSON parser accepts.
//! - Mappings: `#` lines dropped and `[runtime_random_keyword_type]` replaced (ES picks keyword or
//!   wildcard at random; both are exact, case-sensitive string fields to EQL, so keyword stands for
//!   both). A `text` field is queried through its keyword sub-field (EQL uses the exact
//!   attribute). Fields the mapping does not name get ES's dynamic mapping: strings `text` with a
//!   `keyword` sub-field (`ignore_above: 256`), integers `long`, decimals `float`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use seqwatch::engine::Hit;
use seqwatch::eql::value::{FieldType, FieldTypes};
use serde_json::{Map, Value};

/// Milliseconds from 1601-01-01 to 1970-01-01 (`DataLoader.FILETIME_EPOCH_DIFF`).
const FILETIME_EPOCH_DIFF_MS: i64 = 11_644_473_600_000;
/// FILETIME ticks (100 ns) per millisecond (`DataLoader.FILETIME_ONE_MILLISECOND`).
const FILETIME_ONE_MILLISECOND: i64 = 10_000;

/// An index of the QA suites, as seqwatch sees it.
pub struct Dataset {
    /// Documents in bulk order.
    pub hits: Vec<Hit>,
    /// Mapping types (explicit and dynamic).
    pub field_types: FieldTypes,
    /// The target of the `event.category` alias, which the test's `event_category_field` names.
    pub event_category_field: String,
    /// Every field with an explicit or dynamic mapping: a query naming another field is an
    /// error in ES ("Unknown column"), unless it is written `?field`.
    pub known_fields: HashSet<String>,
}

/// Reads a file of the shared suite; a missing or broken file is a test failure naming it.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Loads `data_file` with `mapping_file`; `id_field` names each hit (ES's test reads the id
/// from that field of `_source`); `filetime` applies `timestampToUnixMillis`.
pub fn load(data_file: &Path, mapping_file: &Path, id_field: &str, filetime: bool) -> Dataset {
    let raw = read(data_file);
    let json: String = raw
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let docs: Vec<Value> = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("{}: not a JSON array: {e}", data_file.display()));

    let mapping_text: String = read(mapping_file)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("[runtime_random_keyword_type]", "keyword");
    let mapping: Value = serde_json::from_str(&mapping_text)
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", mapping_file.display()));
    let mut field_types = FieldTypes::new();
    let mut aliases = Vec::new();
    let mut mapped = HashSet::new();
    if let Some(props) = mapping.get("properties").and_then(Value::as_object) {
        walk_mapping(props, "", &mut field_types, &mut aliases, &mut mapped);
    }

    let mut hits = Vec::with_capacity(docs.len());
    for (n, mut doc) in docs.into_iter().enumerate() {
        let Some(obj) = doc.as_object_mut() else {
            panic!("{}: document {n} is not an object", data_file.display());
        };
        if filetime {
            let ticks = obj
                .get("timestamp")
                .and_then(Value::as_i64)
                .unwrap_or_else(|| {
                    panic!(
                        "{}: document {n} has no integer timestamp",
                        data_file.display()
                    )
                });
            let millis = ticks / FILETIME_ONE_MILLISECOND - FILETIME_EPOCH_DIFF_MS;
            obj.insert("@timestamp".into(), Value::from(millis));
        }
        dynamic_types(obj, "", &mut field_types, &mut mapped);
        let id = obj
            .get(id_field)
            .and_then(Value::as_i64)
            .unwrap_or_else(|| {
                panic!(
                    "{}: document {n} has no integer {id_field}",
                    data_file.display()
                )
            });
        hits.push(Hit {
            index: Arc::from(
                data_file
                    .file_name()
                    .and_then(|f| f.to_str())
                    .unwrap_or("data"),
            ),
            id: Arc::from(id.to_string()),
            source: doc,
        });
    }
    let event_category_field = aliases
        .iter()
        .find(|(alias, _)| alias == "event.category")
        .map(|(_, target)| target.clone())
        .unwrap_or_else(|| "event.category".into());
    Dataset {
        hits,
        field_types,
        event_category_field,
        known_fields: mapped,
    }
}

fn walk_mapping(
    props: &Map<String, Value>,
    prefix: &str,
    types: &mut FieldTypes,
    aliases: &mut Vec<(String, String)>,
    mapped: &mut HashSet<String>,
) {
    for (name, def) in props {
        let path = format!("{prefix}{name}");
        if let Some(sub) = def.get("properties").and_then(Value::as_object) {
            walk_mapping(sub, &format!("{path}."), types, aliases, mapped);
            continue;
        }
        mapped.insert(path.clone());
        let ty = def.get("type").and_then(Value::as_str).unwrap_or("object");
        let ignore_above = |d: &Value| {
            d.get("ignore_above")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
        };
        let field_type = match ty {
            "keyword" | "wildcard" | "constant_keyword" => Some(FieldType::Keyword {
                ignore_above: ignore_above(def),
            }),
            "text" => def
                .get("fields")
                .and_then(Value::as_object)
                .and_then(|f| {
                    f.values().find(|s| {
                        matches!(
                            s.get("type").and_then(Value::as_str),
                            Some("keyword" | "wildcard")
                        )
                    })
                })
                .map(|s| FieldType::Keyword {
                    ignore_above: ignore_above(s),
                }),
            "long" | "integer" | "short" | "byte" | "unsigned_long" => Some(FieldType::Long),
            "double" | "float" | "half_float" | "scaled_float" => Some(FieldType::Double),
            "date" | "date_nanos" => Some(FieldType::Date),
            "ip" => Some(FieldType::Ip),
            "boolean" => Some(FieldType::Boolean),
            "alias" => {
                if let Some(target) = def.get("path").and_then(Value::as_str) {
                    aliases.push((path.clone(), target.to_string()));
                }
                None
            }
            _ => None,
        };
        if let Some(t) = field_type {
            types.insert(path, t);
        }
    }
}

/// ES's default dynamic mapping for fields the explicit mapping does not name.
fn dynamic_types(
    obj: &Map<String, Value>,
    prefix: &str,
    types: &mut FieldTypes,
    mapped: &mut HashSet<String>,
) {
    for (name, value) in obj {
        let path = format!("{prefix}{name}");
        if mapped.contains(&path) {
            continue;
        }
        let scalar = match value {
            Value::Array(items) => items.iter().find(|v| !v.is_null()),
            other => Some(other),
        };
        match scalar {
            Some(Value::Object(inner)) => {
                dynamic_types(inner, &format!("{path}."), types, mapped);
                continue;
            }
            Some(Value::String(_)) => types.insert(
                path.clone(),
                FieldType::Keyword {
                    ignore_above: Some(256),
                },
            ),
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
                types.insert(path.clone(), FieldType::Long)
            }
            Some(Value::Number(_)) => types.insert(path.clone(), FieldType::Double),
            Some(Value::Bool(_)) => types.insert(path.clone(), FieldType::Boolean),
            // `null` and `[]` map nothing.
            _ => continue,
        }
        mapped.insert(path);
    }
}
