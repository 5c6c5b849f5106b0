//! Reading field types out of a mapping (`{"properties": ...}` as templates and `GET _mapping`
//! have it), by dotted field path, including multi-fields such as `process.name.caseless`.

use serde_json::Value;

/// The mapped type of `path` in `mappings`: `keyword`, `date`, ..., `object` for an object
/// field without an explicit type, or `None` when the field is not mapped.
pub fn mapped_field_type<'a>(mappings: &'a Value, path: &str) -> Option<&'a str> {
    let segments: Vec<&str> = path.split('.').collect();
    if segments.iter().any(|segment| segment.is_empty()) {
        return None;
    }
    find(mappings, &segments)
}

/// Walks `segments` below `node`, trying every split of the path so that dotted property names
/// (`"event.ingested": {...}`) resolve as well as nested objects do.
fn find<'a>(node: &'a Value, segments: &[&str]) -> Option<&'a str> {
    if segments.is_empty() {
        return match node.get("type") {
            Some(Value::String(ty)) => Some(ty.as_str()),
            Some(_) => None,
            None if node.get("properties").is_some() => Some("object"),
            None => None,
        };
    }
    for children_key in ["properties", "fields"] {
        let Some(children) = node.get(children_key).and_then(Value::as_object) else {
            continue;
        };
        for take in 1..=segments.len() {
            let key = segments[..take].join(".");
            if let Some(child) = children.get(&key) {
                if let Some(found) = find(child, &segments[take..]) {
                    return Some(found);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "dynamic": false,
            "properties": {
                "@timestamp": {"type": "date"},
                "event.ingested": {"type": "date"},
                "process": {"properties": {
                    "pid": {"type": "long"},
                    "name": {"type": "keyword", "fields": {"text": {"type": "text"}}},
                    "parent": {"properties": {"name": {"type": "keyword"}}}
                }}
            }
        })
    }

    #[test]
    fn finds_nested_dotted_and_multi_fields() {
        let mappings = sample();
        assert_eq!(mapped_field_type(&mappings, "@timestamp"), Some("date"));
        assert_eq!(mapped_field_type(&mappings, "event.ingested"), Some("date"));
        assert_eq!(mapped_field_type(&mappings, "process.pid"), Some("long"));
        assert_eq!(
            mapped_field_type(&mappings, "process.name"),
            Some("keyword")
        );
        assert_eq!(
            mapped_field_type(&mappings, "process.name.text"),
            Some("text")
        );
        assert_eq!(
            mapped_field_type(&mappings, "process.parent.name"),
            Some("keyword")
        );
        assert_eq!(mapped_field_type(&mappings, "process"), Some("object"));
    }

    #[test]
    fn unmapped_and_malformed_paths_are_none() {
        let mappings = sample();
        assert_eq!(mapped_field_type(&mappings, "process.args"), None);
        assert_eq!(mapped_field_type(&mappings, "event"), None);
        assert_eq!(mapped_field_type(&mappings, "process..pid"), None);
        assert_eq!(mapped_field_type(&mappings, ""), None);
        assert_eq!(mapped_field_type(&json!({}), "x"), None);
    }
}
