//! Generated events bent to hold null, missing and multi-valued join keys, with timestamps
//! floored to 50 ms so that many tie: the streams the two-step fetch is proven on, offline
//! (`tests/fetch_plan.rs`) and against a node (`tests/es_fetch.rs`).

use seqwatch::generate::{GenerateSpec, Generator};
use serde_json::{json, Value};

/// A small deterministic generator for bending events.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The value at dotted `path` of nested objects, if there is one.
pub fn at<'v>(source: &'v mut Value, path: &str) -> Option<&'v mut Value> {
    let mut v = source;
    for part in path.split('.') {
        v = v.get_mut(part)?;
    }
    Some(v)
}

/// The events `spec` generates, bent with `spec.seed`, in generation order: (index, id, source).
/// Ties are then decided by arrival order, as Elasticsearch decides them by `_shard_doc`.
pub fn bent_events(spec: GenerateSpec) -> Vec<(&'static str, String, Value)> {
    let seed = spec.seed;
    let mut rng = Lcg(seed);
    let mut recent_entities: Vec<Value> = Vec::new();
    let mut events = Vec::new();
    for h in Generator::new(spec).expect("valid spec") {
        let mut source = h.source_value().expect("generator writes valid JSON");
        if let Some(Value::String(ts)) = at(&mut source, "@timestamp") {
            let parsed = chrono::DateTime::parse_from_rfc3339(ts).expect("rfc3339");
            let ms = parsed.timestamp_millis() / 50 * 50;
            *ts = chrono::DateTime::from_timestamp_millis(ms)
                .expect("in range")
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        }
        if let Some(e) = at(&mut source, "process.entity_id").cloned() {
            recent_entities.push(e);
            if recent_entities.len() > 50 {
                recent_entities.remove(0);
            }
        }
        let other = |rng: &mut Lcg, pool: &[Value]| -> Value {
            if pool.is_empty() {
                json!("none")
            } else {
                pool[(rng.next() as usize) % pool.len()].clone()
            }
        };
        for path in ["process.entity_id", "process.parent.entity_id"] {
            let pick = other(&mut rng, &recent_entities);
            if let Some(v) = at(&mut source, path) {
                if rng.chance(6) {
                    *v = json!([v.clone(), pick]);
                } else if rng.chance(2) {
                    *v = Value::Null;
                } else if rng.chance(2) {
                    *v = json!([]);
                }
            }
        }
        if let Some(host) = at(&mut source, "host") {
            if rng.chance(2) {
                if let Some(m) = host.as_object_mut() {
                    m.remove("id");
                }
            } else if rng.chance(2) {
                host["id"] = Value::Null;
            } else if rng.chance(2) {
                let id = host["id"].clone();
                host["id"] = json!([id, "shared-host"]);
            }
        }
        events.push((h.index, h.id, source));
    }
    events
}
