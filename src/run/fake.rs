//! An in-memory [`Cluster`] for the run pipeline's tests: indices as ordered maps, points in
//! time as snapshots paged with `search_after`, guarded state writes, and faults on demand.
//!
//! Its search evaluates the query DSL in three values (yes, no, can't tell) and keeps every
//! document that is not a plain "no": the push-down only has to select a superset of what the
//! evaluator accepts, so an unknown clause must never drop an event.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::cluster::{BulkOptions, Cluster, PrivilegeRequest};
use crate::eql::value::{FieldType, FieldTypes};
use crate::es::{
    BulkCreate, BulkItem, BulkOutcome, EsError, FetchedSource, FieldCapsAnswer, IdLookup,
    MissingPrivileges, VersionedDoc, WriteOutcome,
};

/// A cluster operation, to aim faults at and to read the call log by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Privileges,
    FieldCaps,
    OpenPit,
    Search,
    ClosePit,
    ExistingIds,
    Mget,
    EntitySearch,
    Bulk,
    Delete,
    GetState,
    PutState,
    PutDoc,
}

/// What a faulty operation does instead of answering.
#[derive(Debug, Clone)]
pub enum Fault {
    /// An HTTP error status for the whole request.
    Status(u16),
    /// No answer in time.
    Timeout,
    /// A bulk request whose items from the `n`th on are refused with `status`.
    PartialBulk { from_item: usize, status: u16 },
    /// A guarded write that loses the race (409).
    Conflict,
    /// Waits this long, then answers normally.
    Delay(Duration),
}

#[derive(Debug, Clone)]
struct Doc {
    source: Arc<Value>,
    /// `source` as JSON text, as a search answer carries it.
    text: Arc<str>,
    seq_no: u64,
    /// Insertion order: the `_shard_doc` tie-breaker.
    order: u64,
}

/// A hit of a search: its sort key (timestamp in ns, insertion order) and its place in the
/// snapshot.
type SortedHit = ((i64, u64), usize);

/// A document of a point-in-time snapshot.
#[derive(Debug)]
struct Snapshot {
    index: String,
    id: String,
    doc: Doc,
}

#[derive(Debug, Default)]
struct State {
    indices: BTreeMap<String, BTreeMap<String, Doc>>,
    next_seq: u64,
    pits: HashMap<String, Vec<Snapshot>>,
    /// Per point in time and query: the matching documents of its snapshot, sorted.
    searches: HashMap<(String, String), Vec<SortedHit>>,
    next_pit: u64,
    faults: HashMap<Op, VecDeque<Fault>>,
    calls: Vec<Op>,
    missing: Option<MissingPrivileges>,
    /// Fields the alerts index maps as `long`: a written value that is not a number is refused
    /// as Elasticsearch refuses it.
    long_fields: Vec<String>,
    /// Alert ids refused with a reason that names no field.
    unparseable_ids: HashSet<String>,
}

/// The in-memory cluster.
#[derive(Debug, Default)]
pub struct FakeCluster {
    state: Mutex<State>,
}

fn status(op: Op, code: u16) -> EsError {
    EsError::Status {
        operation: format!("{op:?}"),
        status: code,
        error_type: Some("fake_exception".into()),
        reason: format!("injected HTTP {code}"),
    }
}

impl FakeCluster {
    pub fn new() -> FakeCluster {
        FakeCluster::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores `source` as `index`/`id` (a source event, or anything else).
    pub fn put(&self, index: &str, id: &str, source: Value) {
        let text = Arc::from(source.to_string());
        self.put_shared(index, id, Arc::new(source), text);
    }

    /// [`FakeCluster::put`] of a source shared with the caller, with its JSON `text`.
    pub fn put_shared(&self, index: &str, id: &str, source: Arc<Value>, text: Arc<str>) {
        let mut s = self.lock();
        s.next_seq += 1;
        let seq = s.next_seq;
        s.indices.entry(index.into()).or_default().insert(
            id.into(),
            Doc {
                source,
                text,
                seq_no: seq,
                order: seq,
            },
        );
    }

    /// The next call of `op` fails with `fault`.
    pub fn fail_next(&self, op: Op, fault: Fault) {
        self.lock().faults.entry(op).or_default().push_back(fault);
    }

    /// Written documents whose `path` holds anything but a number are refused, as a `long`
    /// field refuses them.
    pub fn map_long(&self, path: &str) {
        self.lock().long_fields.push(path.to_owned());
    }

    /// Writing the document `id` is refused for a reason that names no field.
    pub fn refuse_unparseable(&self, id: &str) {
        self.lock().unparseable_ids.insert(id.to_owned());
    }

    /// Elasticsearch's per-item refusal of `op`, if its mapping refuses it.
    fn mapping_refusal(s: &State, op: &BulkCreate) -> Option<BulkOutcome> {
        if s.unparseable_ids.contains(&op.id) {
            return Some(BulkOutcome::Failed {
                status: 400,
                error_type: "document_parsing_exception".into(),
                reason: "[1:1] unexpected character".into(),
            });
        }
        s.long_fields.iter().find_map(|path| {
            let mut values = Vec::new();
            values_at(&op.document, path, &mut values);
            let bad = values.into_iter().find(|v| !v.is_number())?;
            Some(BulkOutcome::Failed {
                status: 400,
                error_type: "document_parsing_exception".into(),
                reason: format!(
                    "[1:2] failed to parse field [{path}] of type [long] in document with id '{}'. Preview of field's value: '{bad}'",
                    op.id
                ),
            })
        })
    }

    /// The credential lacks these privileges.
    pub fn lack_privileges(&self, missing: Vec<String>) {
        self.lock().missing = Some(MissingPrivileges {
            username: "fake".into(),
            missing,
        });
    }

    /// The operations called so far, in order.
    pub fn calls(&self) -> Vec<Op> {
        self.lock().calls.clone()
    }

    /// The documents of `index`, by id.
    pub fn docs(&self, index: &str) -> BTreeMap<String, Value> {
        self.lock()
            .indices
            .get(index)
            .map(|docs| {
                docs.iter()
                    .map(|(id, d)| (id.clone(), Value::clone(&d.source)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One document.
    pub fn doc(&self, index: &str, id: &str) -> Option<Value> {
        self.lock()
            .indices
            .get(index)
            .and_then(|d| d.get(id))
            .map(|d| Value::clone(&d.source))
    }

    /// Logs the call, then plays its next fault, if any.
    async fn enter(&self, op: Op) -> Result<Option<Fault>, EsError> {
        let fault = {
            let mut s = self.lock();
            s.calls.push(op);
            s.faults.get_mut(&op).and_then(VecDeque::pop_front)
        };
        match fault {
            None => Ok(None),
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(None)
            }
            Some(Fault::Status(code)) => Err(status(op, code)),
            Some(Fault::Timeout) => Err(EsError::Timeout {
                operation: format!("{op:?}"),
                url: "fake://".into(),
                timeout: Duration::from_secs(30),
            }),
            Some(f) => Ok(Some(f)),
        }
    }

    fn matching_indices(s: &State, patterns: &[String]) -> Vec<String> {
        s.indices
            .keys()
            .filter(|name| {
                patterns
                    .iter()
                    .flat_map(|p| p.split(','))
                    .any(|p| glob(p, name))
            })
            .cloned()
            .collect()
    }
}

fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len()).any(|k| glob(rest, &name[head.len() + k..]))
        }
    }
}

/// The values at a dotted path, dotted keys and nested objects alike, arrays flattened.
fn values_at<'v>(v: &'v Value, path: &str, out: &mut Vec<&'v Value>) {
    if path.is_empty() {
        match v {
            Value::Array(items) => items.iter().for_each(|i| values_at(i, "", out)),
            Value::Null => {}
            other => out.push(other),
        }
        return;
    }
    match v {
        Value::Object(map) => {
            for (key, child) in map {
                if path == key {
                    values_at(child, "", out);
                } else if let Some(rest) = path
                    .strip_prefix(key.as_str())
                    .and_then(|r| r.strip_prefix('.'))
                {
                    values_at(child, rest, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| values_at(i, path, out)),
        _ => {}
    }
}

/// Three-valued truth: `Some(true)`, `Some(false)`, or `None` for "can't tell".
type Truth = Option<bool>;

fn and(items: impl Iterator<Item = Truth>) -> Truth {
    let mut out = Some(true);
    for t in items {
        match t {
            Some(false) => return Some(false),
            None => out = None,
            Some(true) => {}
        }
    }
    out
}

fn scalar_eq(doc: &Value, query: &Value) -> bool {
    match (doc, query) {
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Number(a), Value::String(b)) | (Value::String(b), Value::Number(a)) => {
            b.parse::<f64>().ok() == a.as_f64()
        }
        (a, b) => a == b,
    }
}

fn as_millis(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis() as f64)
            .ok()
            .or_else(|| s.parse().ok()),
        _ => None,
    }
}

fn eval(query: &Value, id: &str, source: &Value) -> Truth {
    let (kind, body) = query.as_object().and_then(|m| m.iter().next())?;
    let field_values = |field: &str| {
        let mut out = Vec::new();
        values_at(source, field, &mut out);
        out
    };
    match kind.as_str() {
        "match_all" => Some(true),
        "match_none" => Some(false),
        "bool" => {
            let list = |k: &str| -> &[Value] {
                match &body[k] {
                    Value::Array(a) => a.as_slice(),
                    Value::Null => &[],
                    one => std::slice::from_ref(one),
                }
            };
            let must = list("filter").iter().chain(list("must"));
            let must = and(must.map(|q| eval(q, id, source)));
            let not = and(list("must_not")
                .iter()
                .map(|q| eval(q, id, source).map(|t| !t)));
            let should = list("should");
            let required = body["minimum_should_match"].as_u64().unwrap_or(
                if body["filter"].is_null() && body["must"].is_null() && !should.is_empty() {
                    1
                } else {
                    0
                },
            ) as usize;
            let truths: Vec<Truth> = should.iter().map(|q| eval(q, id, source)).collect();
            let yes = truths.iter().filter(|t| **t == Some(true)).count();
            let maybe = truths.iter().filter(|t| t.is_none()).count();
            let enough = if yes >= required {
                Some(true)
            } else if yes + maybe >= required {
                None
            } else {
                Some(false)
            };
            and([must, not, enough].into_iter())
        }
        "term" | "terms" => {
            let (field, wanted) = body.as_object()?.iter().find(|(k, _)| *k != "boost")?;
            if wanted.get("case_insensitive").is_some() {
                return None;
            }
            let wanted: &[Value] = match wanted {
                Value::Array(a) => a.as_slice(),
                Value::Object(o) => std::slice::from_ref(o.get("value")?),
                one => std::slice::from_ref(one),
            };
            let have = field_values(field);
            Some(have.iter().any(|h| wanted.iter().any(|w| scalar_eq(h, w))))
        }
        "match" => {
            // Exact, as `match` is on the keyword fields the enrichment searches.
            let (field, wanted) = body.as_object()?.iter().next()?;
            let wanted = match wanted {
                Value::Object(o) => o.get("query")?,
                one => one,
            };
            Some(field_values(field).iter().any(|h| scalar_eq(h, wanted)))
        }
        "exists" => Some(!field_values(body["field"].as_str()?).is_empty()),
        "ids" => Some(body["values"].as_array()?.iter().any(|v| v == id)),
        "range" => {
            let (field, bounds) = body.as_object()?.iter().next()?;
            let have: Vec<f64> = field_values(field)
                .into_iter()
                .filter_map(as_millis)
                .collect();
            let check = |op: &str, f: fn(f64, f64) -> bool| -> Truth {
                match bounds.get(op) {
                    None => Some(true),
                    Some(b) => {
                        let b = as_millis(b)?;
                        Some(have.iter().any(|h| f(*h, b)))
                    }
                }
            };
            if have.is_empty() {
                return Some(false);
            }
            and([
                check("gte", |h, b| h >= b),
                check("gt", |h, b| h > b),
                check("lte", |h, b| h <= b),
                check("lt", |h, b| h < b),
            ]
            .into_iter())
        }
        _ => None,
    }
}

/// The sort key of a document: its timestamp in nanoseconds, then its insertion order.
fn sort_key(source: &Value, timestamp_field: &str, order: u64) -> (i64, u64) {
    let mut values = Vec::new();
    values_at(source, timestamp_field, &mut values);
    let nanos = values
        .first()
        .and_then(|v| v.as_str())
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or(i64::MAX);
    (nanos, order)
}

fn type_of(v: &Value, field: &str) -> Option<&'static str> {
    if field == "@timestamp" || field == "event.ingested" {
        return Some("date");
    }
    match v {
        Value::String(_) => Some("keyword"),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some("long"),
        Value::Number(_) => Some("double"),
        Value::Bool(_) => Some("boolean"),
        _ => None,
    }
}

#[async_trait]
impl Cluster for FakeCluster {
    async fn reachable(&self) -> Result<(), EsError> {
        Ok(())
    }

    async fn missing_privileges(
        &self,
        _request: &PrivilegeRequest,
    ) -> Result<Option<MissingPrivileges>, EsError> {
        self.enter(Op::Privileges).await?;
        Ok(self.lock().missing.clone())
    }

    async fn field_caps(
        &self,
        indices: &[String],
        fields: &[String],
    ) -> Result<FieldCapsAnswer, EsError> {
        self.enter(Op::FieldCaps).await?;
        let s = self.lock();
        let matched = FakeCluster::matching_indices(&s, indices);
        let mut mapping_types: HashMap<String, Vec<String>> = HashMap::new();
        for index in &matched {
            for doc in s.indices[index].values() {
                for field in fields {
                    let mut values = Vec::new();
                    values_at(&doc.source, field, &mut values);
                    for t in values.iter().filter_map(|v| type_of(v, field)) {
                        let seen = mapping_types.entry(field.clone()).or_default();
                        if !seen.iter().any(|s| s == t) {
                            seen.push(t.to_owned());
                        }
                    }
                }
            }
        }
        let mut types = FieldTypes::new();
        for (field, seen) in &mapping_types {
            if let [one] = seen.as_slice() {
                let ty = match one.as_str() {
                    "keyword" => FieldType::Keyword { ignore_above: None },
                    "long" => FieldType::Long,
                    "double" => FieldType::Double,
                    "date" => FieldType::Date,
                    "boolean" => FieldType::Boolean,
                    _ => continue,
                };
                types.insert(field.clone(), ty);
            }
        }
        Ok(FieldCapsAnswer {
            types,
            matched,
            mapping_types,
        })
    }

    async fn open_point_in_time(
        &self,
        indices: &[String],
        _keep_alive: &str,
    ) -> Result<String, EsError> {
        self.enter(Op::OpenPit).await?;
        let mut s = self.lock();
        let snapshot: Vec<Snapshot> = FakeCluster::matching_indices(&s, indices)
            .iter()
            .flat_map(|index| {
                s.indices[index].iter().map(|(id, d)| Snapshot {
                    index: index.clone(),
                    id: id.clone(),
                    doc: d.clone(),
                })
            })
            .collect();
        s.next_pit += 1;
        let id = format!("pit-{}", s.next_pit);
        s.pits.insert(id.clone(), snapshot);
        Ok(id)
    }

    async fn search_point_in_time(&self, body: &Value) -> Result<String, EsError> {
        self.enter(Op::Search).await?;
        let mut s = self.lock();
        let pit = body["pit"]["id"].as_str().unwrap_or_default();
        let Some(snapshot) = s.pits.get(pit) else {
            return Err(crate::es::pit_expired("no search context found"));
        };
        let timestamp_field = body["sort"][0]
            .as_object()
            .and_then(|m| m.keys().next().cloned())
            .unwrap_or_else(|| "@timestamp".into());
        let after = body["search_after"].as_array().map(|a| {
            let nanos = a[0]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .and_then(|t| t.timestamp_nanos_opt())
                .unwrap_or(i64::MIN);
            (nanos, a.last().and_then(Value::as_u64).unwrap_or(0))
        });
        let key = (pit.to_owned(), body["query"].to_string());
        if !s.searches.contains_key(&key) {
            let mut sorted: Vec<SortedHit> = snapshot
                .iter()
                .enumerate()
                .filter(|(_, d)| eval(&body["query"], &d.id, &d.doc.source) != Some(false))
                .map(|(n, d)| (sort_key(&d.doc.source, &timestamp_field, d.doc.order), n))
                .collect();
            sorted.sort_by_key(|(key, _)| *key);
            s.searches.insert(key.clone(), sorted);
        }
        let snapshot = &s.pits[pit];
        let sorted = &s.searches[&key];
        let start = sorted.partition_point(|(k, _)| after.is_some_and(|a| *k <= a));
        let size = body["size"].as_u64().unwrap_or(10) as usize;
        let hits: Vec<String> = sorted[start..]
            .iter()
            .take(size)
            .map(|((nanos, order), n)| {
                let d = &snapshot[*n];
                let at = DateTime::<Utc>::from_timestamp_nanos(*nanos)
                    .to_rfc3339_opts(SecondsFormat::Nanos, true);
                format!(
                    r#"{{"_index":{},"_id":{},"_source":{},"sort":["{at}",{order}]}}"#,
                    json!(d.index),
                    json!(d.id),
                    d.doc.text
                )
            })
            .collect();
        Ok(format!(
            r#"{{"pit_id":{},"timed_out":false,"_shards":{{"total":1,"successful":1,"skipped":0,"failed":0}},"hits":{{"hits":[{}]}}}}"#,
            json!(pit),
            hits.join(",")
        ))
    }

    async fn close_point_in_time(&self, pit_id: &str) -> Result<(), EsError> {
        self.enter(Op::ClosePit).await?;
        let mut s = self.lock();
        s.pits.remove(pit_id);
        s.searches.retain(|(pit, _), _| pit != pit_id);
        Ok(())
    }

    async fn existing_ids(
        &self,
        target: &str,
        ids: &[String],
    ) -> Result<(HashSet<String>, IdLookup), EsError> {
        self.enter(Op::ExistingIds).await?;
        let s = self.lock();
        let found = match s.indices.get(target) {
            Some(docs) => ids
                .iter()
                .filter(|id| docs.contains_key(*id))
                .cloned()
                .collect(),
            None => HashSet::new(),
        };
        Ok((found, IdLookup::Realtime))
    }

    async fn mget(&self, docs: &[(String, String)]) -> Result<Vec<FetchedSource>, EsError> {
        self.enter(Op::Mget).await?;
        let s = self.lock();
        Ok(docs
            .iter()
            .map(
                |(index, id)| match s.indices.get(index).and_then(|d| d.get(id)) {
                    Some(d) => FetchedSource::Found(Value::clone(&d.source)),
                    None => FetchedSource::Gone,
                },
            )
            .collect())
    }

    async fn search_entities(
        &self,
        index: &str,
        body: &Value,
    ) -> Result<Option<Vec<Map<String, Value>>>, EsError> {
        self.enter(Op::EntitySearch).await?;
        let s = self.lock();
        let Some(docs) = s.indices.get(index) else {
            return Ok(None);
        };
        let size = body["size"].as_u64().unwrap_or(10) as usize;
        let wanted: Vec<&str> = body["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        Ok(Some(
            docs.iter()
                .filter(|(id, d)| eval(&body["query"], id, &d.source) == Some(true))
                .take(size)
                .map(|(_, d)| {
                    let mut fields = Map::new();
                    for field in &wanted {
                        let mut values = Vec::new();
                        values_at(&d.source, field, &mut values);
                        if !values.is_empty() {
                            let values = values.into_iter().cloned().collect();
                            fields.insert((*field).to_owned(), Value::Array(values));
                        }
                    }
                    fields
                })
                .collect(),
        ))
    }

    async fn bulk_create(
        &self,
        ops: &[BulkCreate],
        _options: BulkOptions,
    ) -> Result<Vec<BulkItem>, EsError> {
        let fault = self.enter(Op::Bulk).await?;
        let refuse_from = match fault {
            Some(Fault::PartialBulk { from_item, status }) => Some((from_item, status)),
            _ => None,
        };
        let mut items = Vec::with_capacity(ops.len());
        for (n, op) in ops.iter().enumerate() {
            let outcome = match refuse_from {
                Some((from, code)) if n >= from => BulkOutcome::Failed {
                    status: code,
                    error_type: if code == 429 {
                        "es_rejected_execution_exception".into()
                    } else {
                        "document_parsing_exception".into()
                    },
                    reason: "injected".into(),
                },
                _ => {
                    let refusal = Self::mapping_refusal(&self.lock(), op);
                    let exists = self
                        .lock()
                        .indices
                        .get(&op.index)
                        .is_some_and(|d| d.contains_key(&op.id));
                    if let Some(refused) = refusal {
                        refused
                    } else if exists {
                        BulkOutcome::AlreadyExists
                    } else {
                        self.put(&op.index, &op.id, op.document.clone());
                        BulkOutcome::Created
                    }
                }
            };
            items.push(BulkItem {
                index: op.index.clone(),
                id: op.id.clone(),
                outcome,
            });
        }
        Ok(items)
    }

    async fn delete_docs(&self, docs: &[(String, String)]) -> Result<(), EsError> {
        self.enter(Op::Delete).await?;
        let mut s = self.lock();
        for (index, id) in docs {
            if let Some(d) = s.indices.get_mut(index) {
                d.remove(id);
            }
        }
        Ok(())
    }

    async fn get_state(&self, index: &str, id: &str) -> Result<Option<VersionedDoc>, EsError> {
        self.enter(Op::GetState).await?;
        let s = self.lock();
        Ok(s.indices
            .get(index)
            .and_then(|d| d.get(id))
            .map(|d| VersionedDoc {
                source: Value::clone(&d.source),
                seq_no: d.seq_no,
                primary_term: 1,
            }))
    }

    async fn put_state(
        &self,
        index: &str,
        id: &str,
        doc: &Value,
        guard: Option<(u64, u64)>,
    ) -> Result<WriteOutcome, EsError> {
        if let Some(Fault::Conflict) = self.enter(Op::PutState).await? {
            return Ok(WriteOutcome::Conflict);
        }
        let current = {
            let s = self.lock();
            s.indices
                .get(index)
                .and_then(|d| d.get(id))
                .map(|d| d.seq_no)
        };
        let holds = match (guard, current) {
            (None, None) => true,
            (Some((seq, 1)), Some(now)) => seq == now,
            _ => false,
        };
        if !holds {
            return Ok(WriteOutcome::Conflict);
        }
        self.put(index, id, doc.clone());
        Ok(WriteOutcome::Written)
    }

    async fn put_doc(&self, index: &str, id: &str, doc: &Value) -> Result<(), EsError> {
        self.enter(Op::PutDoc).await?;
        self.put(index, id, doc.clone());
        Ok(())
    }

    fn retry_backoff(&self, _attempt: u32) -> Duration {
        Duration::ZERO
    }
}
