use serde_json::{json, Value};

use super::*;

fn strip(source: Value) -> (Value, Vec<(String, Value)>) {
    let out = strip_for_alert(&source);
    // Objects iterate in key order, so compare the removals as a sorted list.
    let mut removed: Vec<(String, Value)> =
        out.removed.into_iter().map(|r| (r.path, r.value)).collect();
    removed.sort_by_key(|(p, v)| (p.clone(), v.to_string()));
    (Value::Object(out.fields), removed)
}

#[test]
fn the_shipped_map_is_kibanas_ecs_map() {
    let ecs = EcsFieldMap::get();
    assert!(ecs.len() > 1500, "{} fields", ecs.len());
    assert_eq!(ecs.field_type("process.pid"), Some("long"));
    assert_eq!(ecs.field_type("process.command_line"), Some("wildcard"));
    assert_eq!(ecs.field_type("source.ip"), Some("ip"));
    // nested and flattened fields are left out of the map, as Kibana leaves them out
    assert_eq!(ecs.field_type("process.pe.sections"), None);
    assert!(ecs.nested.contains("process.pe.sections"));
    assert!(ecs.objects.contains("process.parent"));
}

#[test]
fn an_object_where_ecs_has_a_leaf_is_dropped() {
    let (doc, removed) = strip(json!({"user": {"name": {"first": "a"}, "id": "1"}}));
    assert_eq!(doc, json!({"user": {"id": "1"}}));
    assert_eq!(removed, vec![("user.name".into(), json!({"first": "a"}))]);
}

#[test]
fn a_leaf_where_ecs_has_an_object_is_dropped() {
    let (doc, removed) = strip(json!({"user": "root", "host": {"name": "h"}}));
    assert_eq!(doc, json!({"host": {"name": "h"}}));
    assert_eq!(removed, vec![("user".into(), json!("root"))]);
}

#[test]
fn malformed_numbers_dates_ips_and_booleans_are_dropped() {
    let (doc, removed) = strip(json!({
        "process": {"pid": "n/a", "ppid": "42", "start": "yesterday", "interactive": "yes"},
        "source": {"ip": "not-an-ip", "port": 22},
        "destination": {"ip": "10.0.0.1"},
        "event": {"duration": null},
    }));
    assert_eq!(
        doc,
        json!({
            "process": {"ppid": "42"},
            "source": {"port": 22},
            "destination": {"ip": "10.0.0.1"},
        })
    );
    let paths: Vec<&str> = removed.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "event.duration",
            "process.interactive",
            "process.pid",
            "process.start",
            "source.ip",
        ]
    );
}

#[test]
fn dotted_keys_are_judged_by_their_full_path_and_parents() {
    let (doc, removed) = strip(json!({
        "process.pid": "n/a",
        "process.name": "node",
        "agent.name.conflict": "x",
        "process": {"parent.pid": 7, "parent.name": {"odd": 1}},
    }));
    assert_eq!(
        doc,
        json!({"process.name": "node", "process": {"parent.pid": 7}})
    );
    let paths: Vec<&str> = removed.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["agent.name.conflict", "process.parent.name", "process.pid"]
    );
}

#[test]
fn arrays_are_judged_item_by_item_and_emptied_ones_go() {
    let (doc, removed) = strip(json!({
        "user": [{"name": "a"}, "root", {"name": {"x": 1}}],
        "process": {"args": ["npm", {"x": 1}, ["install", {"y": 2}]], "pid": [1, "two"]},
        "related": {"ip": [[], ["bad"]]},
        "tags": [],
        "labels": {},
    }));
    assert_eq!(
        doc,
        json!({
            "user": [{"name": "a"}],
            "process": {"args": ["npm", ["install"]], "pid": [1]},
        })
    );
    assert_eq!(
        removed,
        vec![
            ("process.args".into(), json!({"x": 1})),
            ("process.args".into(), json!({"y": 2})),
            ("process.pid".into(), json!("two")),
            ("related.ip".into(), json!("bad")),
            ("user".into(), json!("root")),
            ("user.name".into(), json!({"x": 1})),
        ]
    );
}

#[test]
fn nested_fields_take_only_objects() {
    let (doc, removed) = strip(json!({
        "process": {"pe": {"sections": [{"name": ".text"}, "raw"]}},
        "file": {"pe": {"sections": "raw"}},
    }));
    assert_eq!(
        doc,
        json!({"process": {"pe": {"sections": [{"name": ".text"}]}}})
    );
    assert_eq!(
        removed,
        vec![
            ("file.pe.sections".into(), json!("raw")),
            ("process.pe.sections".into(), json!("raw")),
        ]
    );
}

#[test]
fn fields_outside_ecs_keep_any_shape() {
    let source = json!({
        "custom": {"deep": {"deeper": [1, {"x": "y"}, null]}},
        "Endpoint": {"policy": {"applied": {"id": "p"}}},
        "npm": "odd",
    });
    let (doc, removed) = strip(source.clone());
    assert_eq!(doc, source);
    assert!(removed.is_empty());
}

#[test]
fn banned_namespaces_go_and_event_fields_are_copied_after_stripping() {
    let (doc, removed) = strip(json!({
        "kibana": {"alert": {"rule": {"uuid": "x"}}},
        "kibana.space_ids": ["default"],
        "signal": {"rule": {}},
        "event": {"category": ["process"], "kind": "event", "duration": "slow"},
        "event.action": "exec",
        "data_stream": {"dataset": "endpoint.events.process"},
    }));
    assert_eq!(
        doc,
        json!({
            "event": {"category": ["process"], "kind": "event"},
            "event.action": "exec",
            "data_stream": {"dataset": "endpoint.events.process"},
            "kibana.alert.original_event.category": ["process"],
            "kibana.alert.original_event.kind": "event",
            "kibana.alert.original_event.action": "exec",
            "kibana.alert.original_data_stream.dataset": "endpoint.events.process",
        })
    );
    let paths: Vec<&str> = removed.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["event.duration", "kibana", "kibana.space_ids", "signal"]
    );
}
