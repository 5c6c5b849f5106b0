//! The requests a detection run makes: paging a point in time with `search_after`, field
//! types from `_field_caps`, existing alert ids, full events by id, and state documents with
//! optimistic concurrency. Each answer is checked the way the run needs it checked: a shard
//! failure fails the page (as it fails a sequence query in Kibana), a timed-out search too.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::{check_name, judge, EsClient, EsError};
use crate::eql::value::{FieldType, FieldTypes};
use crate::event::answer::{AnswerShards, SearchAnswer};
use crate::event::scan::{first_sort_value, scan_search_page, HitDecode, HitParts, TextPart};
use crate::event::{FieldPlan, SourceError, StoredSpan};

/// One hit of a page.
#[derive(Debug, Clone, PartialEq)]
pub struct RawHit {
    /// Concrete index.
    pub index: String,
    /// Document id.
    pub id: String,
    /// `_source` (filtered to the requested fields).
    pub source: Value,
    /// Why `_source` could not be read (a [`SourceError`]'s message), if it could not (then
    /// `source` is null).
    pub source_error: Option<String>,
    /// The sort values, for `search_after`.
    pub sort: Value,
}

/// One page of a point-in-time search, kept as the response text: each hit's `_source`
/// stays unparsed until the caller decodes it (for the rule's fields only, borrowing the text).
#[derive(Debug)]
pub struct SearchPage {
    body: String,
    hits: Vec<HitParts>,
    /// The values of the `_source`s decoded as the page was read (see [`HitParts::flat`]).
    values: Vec<(u16, StoredSpan)>,
}

/// One hit of a [`SearchPage`], borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct PageHitRef<'a> {
    /// Concrete index.
    pub index: &'a str,
    /// Document id.
    pub id: &'a str,
    /// The `_source` JSON text (filtered to the requested fields); `None` when the hit has none.
    pub source: Option<&'a str>,
    /// The sort values' JSON text.
    pub sort: Option<&'a str>,
    /// The first sort value as epoch nanoseconds, when Elasticsearch gave it as an integer.
    pub sorted_at: Option<i64>,
    /// The `_source` decoded flat for the plan the page was read with (fill a
    /// [`crate::event::FlatEvent`] with it); `None` when the caller must decode `source`.
    pub flat: Option<&'a [(u16, StoredSpan)]>,
}

impl SearchPage {
    /// How many hits the page holds.
    pub fn len(&self) -> usize {
        self.hits.len()
    }

    /// True for a page without hits.
    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }

    /// The hits, in the order Elasticsearch sorted them.
    pub fn hits(&self) -> impl Iterator<Item = PageHitRef<'_>> {
        self.hits.iter().map(|h| PageHitRef {
            index: h.index.get(&self.body),
            id: h.id.get(&self.body),
            source: h.source.clone().map(|r| &self.body[r]),
            sort: h.sort.clone().map(|r| &self.body[r]),
            sorted_at: h.sorted_at,
            flat: h.flat.clone().map(|r| &self.values[r]),
        })
    }

    /// The answer's text, which every hit's parts borrow from.
    pub fn text(&self) -> &str {
        &self.body
    }
}

/// The byte range of `part` inside `body` (`part` borrows from `body`).
fn span_in(body: &str, part: &str) -> Range<usize> {
    let start = part.as_ptr() as usize - body.as_ptr() as usize;
    start..start + part.len()
}

fn text_part(body: &str, part: Cow<'_, str>) -> TextPart {
    match part {
        Cow::Borrowed(s) => TextPart::Span(span_in(body, s)),
        Cow::Owned(s) => TextPart::Owned(s),
    }
}

/// What the paging needs from a search answer: the point in time, the failure signs and the
/// hits. Read by the one-pass scanner ([`scan_search_page`]); any answer it gives up on (or
/// whose `_shards` does not read) is parsed by serde, which decides and words the error.
///
/// The scanner only delimits each `_source`, where the serde parse checked its JSON as well;
/// the correlator's decode checks it. So a `_source` that is not JSON (which Elasticsearch does
/// not send) counts as one bad event instead of failing the page. An answer that does not read
/// is refused with serde's words.
fn read_page(text: &str, plan: Option<&FieldPlan>) -> Result<ReadPage, serde_json::Error> {
    let mut decoded = Vec::new();
    let decode = plan.map(|plan| HitDecode {
        plan,
        entries: &mut decoded,
    });
    if let Some(page) = scan_search_page(text, decode) {
        let shards = match &page.shards {
            Some(r) => serde_json::from_str::<AnswerShards>(&text[r.clone()]).ok(),
            None => Some(AnswerShards::default()),
        };
        if let Some(shards) = shards {
            let values = decoded
                .iter()
                .map(|(slot, v)| (*slot, StoredSpan::of(text, v)))
                .collect();
            return Ok(ReadPage {
                pit_id: page.pit_id,
                timed_out: page.timed_out,
                shards,
                hits: page.hits,
                values,
            });
        }
    }
    read_page_serde(text)
}

/// A search answer as the paging reads it.
#[derive(Debug, PartialEq)]
struct ReadPage {
    pit_id: Option<String>,
    timed_out: bool,
    shards: AnswerShards,
    hits: Vec<HitParts>,
    values: Vec<(u16, StoredSpan)>,
}

/// [`read_page`] by serde alone: the reference the scanner is held to.
fn read_page_serde(text: &str) -> Result<ReadPage, serde_json::Error> {
    let answer: SearchAnswer<'_> = serde_json::from_str(text)?;
    let hits = answer
        .hits
        .hits
        .into_iter()
        .map(|h| HitParts {
            index: text_part(text, h.index),
            id: text_part(text, h.id),
            source: h.source.map(|r| span_in(text, r.get())),
            sort: h.sort.map(|r| span_in(text, r.get())),
            sorted_at: h.sort.and_then(|r| first_sort_value(r.get())),
            flat: None,
        })
        .collect();
    Ok(ReadPage {
        pit_id: answer.pit_id,
        timed_out: answer.timed_out,
        shards: answer.shards,
        hits,
        values: Vec::new(),
    })
}

/// How often [`EsClient::existing_ids_realtime`] asks again while the alerts index has no
/// started primary (waits of 0.2, 0.4, 0.8 and 1.6 s).
const SHARD_WAIT_ATTEMPTS: u32 = 4;

/// How [`EsClient::existing_ids_realtime`] read the ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdLookup {
    /// By `_mget`, in real time: later writes need no refresh to be seen by the next lookup.
    Realtime,
    /// By a search (the target is an alias over several indices): later writes must wait for
    /// a refresh, or the next lookup may miss them.
    Searched,
}

/// One document of an `_mget`, as [`EsClient::mget`] read it.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchedSource {
    /// The full `_source`.
    Found(Value),
    /// The document exists but its `_source` cannot be parsed; why (a [`SourceError`]'s
    /// message).
    Unreadable(String),
    /// The document (or its index) is gone.
    Gone,
}

#[derive(serde::Deserialize)]
struct MgetAnswer {
    #[serde(default)]
    docs: Vec<MgetDoc>,
}

#[derive(serde::Deserialize)]
struct MgetDoc {
    #[serde(default)]
    found: bool,
    #[serde(rename = "_source")]
    source: Option<Box<serde_json::value::RawValue>>,
}

/// Parses one `_source`. Elasticsearch stores and returns a lone UTF-16 surrogate escape
/// (`"\ud800"`) that serde_json refuses; Lucene indexes it as U+FFFD (its UTF-16 to UTF-8
/// conversion replaces unpaired surrogates), so the text is read with U+FFFD in its place:
/// the value a keyword query and ES EQL's doc-value keys see.
pub fn parse_source(raw: &str) -> Result<Value, SourceError> {
    match serde_json::from_str::<Value>(raw) {
        Ok(v) => Ok(v),
        Err(first) => {
            let repaired = crate::event::replace_lone_surrogates(raw);
            if repaired.len() != raw.len() || repaired != raw {
                if let Ok(v) = serde_json::from_str::<Value>(&repaired) {
                    return Ok(v);
                }
            }
            Err(SourceError::Unparsable(first))
        }
    }
}

/// A point in time being paged through. Close it with [`PitPager::close`] on every path.
#[derive(Debug)]
pub struct PitPager {
    pit_id: String,
    body: Value,
    after: Option<Value>,
    done: bool,
}

/// The operation name of a point-in-time search, in errors.
pub const PIT_SEARCH: &str = "POST _search (point in time)";

/// The error of a point in time that expired or was closed before paging finished.
pub fn pit_expired(cause: &str) -> EsError {
    EsError::Response {
        operation: PIT_SEARCH.into(),
        reason: format!(
            "the point in time expired or was closed before paging finished (HTTP 404 search_context_missing_exception: {cause}); elasticsearch.pit_keep_alive must outlast the time between two pages"
        ),
    }
}

impl PitPager {
    /// Paging over the point in time `pit_id`: `page_size` hits of `query` at a time, with
    /// `source_includes` and `sort`. Its requests name their indices through the point in time.
    pub fn new(
        pit_id: String,
        keep_alive: &str,
        page_size: u32,
        query: Value,
        source_includes: &[String],
        sort: Value,
    ) -> PitPager {
        let body = json!({
            "size": page_size,
            "query": query,
            "_source": {"includes": source_includes},
            "sort": sort,
            "pit": {"id": pit_id, "keep_alive": keep_alive},
            "track_total_hits": false,
        });
        PitPager {
            pit_id,
            body,
            after: None,
            done: false,
        }
    }

    /// The point in time's current id (Elasticsearch may hand out a new one with each page).
    pub fn pit_id(&self) -> &str {
        &self.pit_id
    }

    /// The body of the next page's search, or `None` after the last page.
    pub fn next_request(&self) -> Option<Value> {
        if self.done {
            return None;
        }
        let mut body = self.body.clone();
        body["pit"]["id"] = json!(self.pit_id);
        if let Some(after) = &self.after {
            body["search_after"] = after.clone();
        }
        Some(body)
    }

    /// Reads the answer `text` to [`PitPager::next_request`]: the page, or `None` when it was
    /// empty (the last). A page with shard failures or a timeout is an error: a partial page
    /// could hide a sequence's events. The hits' `_source` texts are not parsed here: a
    /// document that cannot be read is the caller's one skipped event, never a failed page.
    /// With a `plan`, each `_source` is decoded flat for it as the answer is read.
    pub fn read_answer(
        &mut self,
        text: String,
        plan: Option<&FieldPlan>,
    ) -> Result<Option<SearchPage>, EsError> {
        let ReadPage {
            pit_id,
            timed_out,
            shards,
            hits,
            values,
        } = read_page(&text, plan).map_err(|err| EsError::Response {
            operation: PIT_SEARCH.into(),
            reason: format!("the search answer is not the expected JSON: {err}"),
        })?;
        if let Some(id) = &pit_id {
            self.pit_id.clone_from(id);
        }
        if shards.failed > 0 {
            let first = shards.failures.first();
            let reason = first
                .and_then(|f| {
                    f["reason"]["reason"]
                        .as_str()
                        .or_else(|| f["reason"]["type"].as_str())
                })
                .unwrap_or("unknown");
            return Err(EsError::Response {
                operation: PIT_SEARCH.into(),
                reason: format!("{} shard(s) failed; the first: {reason}", shards.failed),
            });
        }
        if timed_out {
            return Err(EsError::Response {
                operation: PIT_SEARCH.into(),
                reason: "the search timed out".into(),
            });
        }
        if hits.is_empty() {
            self.done = true;
            return Ok(None);
        }
        self.after = hits
            .last()
            .and_then(|h| h.sort.clone())
            .and_then(|r| serde_json::from_str::<Value>(&text[r]).ok());
        if self.after.as_ref().is_none_or(Value::is_null) {
            return Err(EsError::Response {
                operation: PIT_SEARCH.into(),
                reason: "hits carry no sort values".into(),
            });
        }
        Ok(Some(SearchPage {
            body: text,
            hits,
            values,
        }))
    }

    /// Pages through `query` next, in the same point in time, with the same page size and
    /// sort, from the start: the two-step fetch reads its key scan and then the restricted
    /// query in one snapshot, so both see the same documents.
    pub fn requery(&mut self, query: Value, source_includes: &[String]) {
        self.body["query"] = query;
        self.body["_source"] = json!({"includes": source_includes});
        self.after = None;
        self.done = false;
    }

    /// The search body of the next page (the point in time id is the current one), for
    /// tools that replay exactly what a run asked.
    pub fn body(&self) -> &Value {
        &self.body
    }
}

/// What [`EsClient::field_caps_detail`] read.
#[derive(Debug, Clone, Default)]
pub struct FieldCapsAnswer {
    /// The typing the evaluator and correlator use (fields typed alike in every index).
    pub types: FieldTypes,
    /// Concrete indices the patterns matched.
    pub matched: Vec<String>,
    /// Field path → its mapping type names across the indices (`keyword`, `text`, …).
    pub mapping_types: HashMap<String, Vec<String>>,
}

/// A document with the sequence number and primary term that guard its next write.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedDoc {
    /// `_source`.
    pub source: Value,
    /// `_seq_no`.
    pub seq_no: u64,
    /// `_primary_term`.
    pub primary_term: u64,
}

/// How a guarded write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written.
    Written,
    /// Someone else wrote first (409): the guard did not hold.
    Conflict,
}

impl EsClient {
    /// Opens a point in time over `indices` (missing ones ignored) and prepares paging with
    /// `query`, `_source` includes and `sort`.
    pub async fn open_pager(
        &self,
        indices: &[String],
        keep_alive: &str,
        page_size: u32,
        query: Value,
        source_includes: &[String],
        sort: Value,
    ) -> Result<PitPager, EsError> {
        let pit_id = self
            .open_point_in_time(&indices.join(","), keep_alive)
            .await?;
        Ok(PitPager::new(
            pit_id,
            keep_alive,
            page_size,
            query,
            source_includes,
            sort,
        ))
    }

    /// The next page, or `None` after the last, each `_source` parsed into a [`Value`] on its
    /// own (see [`PitPager::read_answer`] for the checks).
    pub async fn next_page(&self, pager: &mut PitPager) -> Result<Option<Vec<RawHit>>, EsError> {
        let Some(body) = pager.next_request() else {
            return Ok(None);
        };
        let text = self.search_point_in_time_text(&body).await?;
        let Some(page) = pager.read_answer(text, None)? else {
            return Ok(None);
        };
        Ok(Some(
            page.hits()
                .map(|h| {
                    // Each `_source` is parsed on its own, so one document that cannot be read
                    // (nested beyond the JSON parser's depth limit, say) is one skipped event.
                    let (source, source_error) = match h.source.map(parse_source) {
                        Some(Ok(v)) => (v, None),
                        Some(Err(e)) => (Value::Null, Some(e.to_string())),
                        None => (Value::Null, Some(SourceError::Missing.to_string())),
                    };
                    RawHit {
                        index: h.index.to_owned(),
                        id: h.id.to_owned(),
                        source,
                        source_error,
                        sort: h
                            .sort
                            .and_then(|s| serde_json::from_str(s).ok())
                            .unwrap_or(Value::Null),
                    }
                })
                .collect(),
        ))
    }

    /// `POST _search` with a point-in-time `body`: the answer's text when it is 2xx. A point in
    /// time that expired (or was closed) between two pages comes back as 404
    /// `search_phase_execution_exception` "all shards failed", which names nothing; the cause
    /// is in `root_cause` (`search_context_missing_exception`), and the error says so.
    pub async fn search_point_in_time_text(&self, body: &Value) -> Result<String, EsError> {
        let reply = self
            .call(
                PIT_SEARCH,
                Method::Post,
                "/_search",
                &[],
                Some(body.to_string()),
            )
            .await?;
        if !(200..300).contains(&reply.status) {
            if reply.status == 404 && reply.body.contains("search_context_missing_exception") {
                return Err(pit_expired(
                    &super::root_cause(&reply.body)
                        .unwrap_or_else(|| "no search context found".into()),
                ));
            }
            return Err(super::status_error(PIT_SEARCH, reply));
        }
        Ok(reply.body)
    }

    /// Closes the pager's point in time. Errors are returned, but a run that already failed
    /// should not fail again because of them: the point in time expires on its own.
    pub async fn close_pager(&self, pager: PitPager) -> Result<(), EsError> {
        self.close_point_in_time(&pager.pit_id).await.map(drop)
    }

    /// Mapping types of `fields` across `indices`, from `_field_caps`. A field mapped with
    /// different types in different indices is left untyped (the evaluator then goes by the
    /// JSON value).
    pub async fn field_types(
        &self,
        indices: &[String],
        fields: &[String],
    ) -> Result<FieldTypes, EsError> {
        self.field_caps(indices, fields)
            .await
            .map(|(types, _)| types)
    }

    /// [`EsClient::field_types`], and the concrete indices the patterns matched.
    pub async fn field_caps(
        &self,
        indices: &[String],
        fields: &[String],
    ) -> Result<(FieldTypes, Vec<String>), EsError> {
        self.field_caps_detail(indices, fields)
            .await
            .map(|caps| (caps.types, caps.matched))
    }

    /// `_field_caps` of `fields` over `indices`: the typing the evaluator uses, the matched
    /// indices, and each field's mapping type names as listed (one name when every index maps
    /// the field alike).
    pub async fn field_caps_detail(
        &self,
        indices: &[String],
        fields: &[String],
    ) -> Result<FieldCapsAnswer, EsError> {
        let joined = indices.join(",");
        check_name("index", &joined)?;
        let operation = format!("GET {joined}/_field_caps");
        let path = format!("/{joined}/_field_caps");
        let list = fields.join(",");
        let query = [
            ("fields", list.as_str()),
            ("ignore_unavailable", "true"),
            ("allow_no_indices", "true"),
        ];
        let answer = self
            .call_ok(&operation, Method::Get, &path, &query, None)
            .await?;
        let mut types = FieldTypes::new();
        let mut mapping_types = HashMap::new();
        if let Some(map) = answer["fields"].as_object() {
            for (field, caps) in map {
                let Some(caps) = caps.as_object() else {
                    continue;
                };
                mapping_types.insert(field.clone(), caps.keys().cloned().collect::<Vec<_>>());
                let mapped: Vec<FieldType> = caps.keys().filter_map(|t| field_type(t)).collect();
                if caps.len() == 1 && mapped.len() == 1 {
                    types.insert(field.clone(), mapped[0]);
                }
            }
        }
        let matched = answer["indices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        Ok(FieldCapsAnswer {
            types,
            matched,
            mapping_types,
        })
    }

    /// Which of `ids` exist in `index` (an index or alias; missing is "none"), read in real
    /// time with `_mget`, so documents written without a refresh are seen. When `_mget` cannot
    /// address `index` as one index (an alias over several indices, after a rollover), this
    /// falls back to [`EsClient::existing_ids`] (a search) and says so:
    /// [`IdLookup::Searched`] tells the caller its writes need `refresh=wait_for` to be seen.
    pub async fn existing_ids_realtime(
        &self,
        index: &str,
        ids: &[String],
    ) -> Result<(HashSet<String>, IdLookup), EsError> {
        let mut found = HashSet::new();
        for chunk in ids.chunks(10_000) {
            check_name("index", index)?;
            let operation = format!("POST {index}/_mget ({} ids)", chunk.len());
            let path = format!("/{index}/_mget");
            let body = json!({"ids": chunk}).to_string();
            let query = [("_source", "false"), ("realtime", "true")];
            let mut attempt = 0;
            let answer = loop {
                let reply = self
                    .call(&operation, Method::Post, &path, &query, Some(body.clone()))
                    .await?;
                // A refusal (403) fails the run: deduplication must never quietly see nothing.
                let answer = judge(&operation, reply)?;
                // An index another run has just created may not have its primary started yet;
                // its items fail with a shard error for a moment. Ask again, a few times.
                let unavailable = answer["docs"].as_array().is_some_and(|docs| {
                    docs.iter().any(|d| {
                        matches!(
                            d["error"]["type"].as_str(),
                            Some("no_shard_available_action_exception")
                                | Some("unavailable_shards_exception")
                        )
                    })
                });
                if !unavailable || attempt >= SHARD_WAIT_ATTEMPTS {
                    break answer;
                }
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;
            };
            let docs = answer["docs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            if docs.len() != chunk.len() {
                return Err(EsError::Response {
                    operation,
                    reason: format!("{} ids asked, {} answered", chunk.len(), docs.len()),
                });
            }
            for doc in docs {
                let error = &doc["error"];
                if error.is_null() {
                    if doc["found"] == json!(true) {
                        if let Some(id) = doc["_id"].as_str() {
                            found.insert(id.to_owned());
                        }
                    }
                    continue;
                }
                match error["type"].as_str() {
                    // No alerts index yet: no alert exists.
                    Some("index_not_found_exception") => return Ok((found, IdLookup::Realtime)),
                    // "alias [...] has more than one index associated with it": search instead.
                    Some("illegal_argument_exception")
                        if error["reason"]
                            .as_str()
                            .is_some_and(|r| r.contains("more than one index")) =>
                    {
                        let searched = self.existing_ids(index, ids).await?;
                        return Ok((searched, IdLookup::Searched));
                    }
                    _ => {
                        let reason = error["reason"]
                            .as_str()
                            .or_else(|| error["type"].as_str())
                            .unwrap_or("unknown");
                        return Err(EsError::Response {
                            operation,
                            reason: format!("looking up {}: {reason}", doc["_id"]),
                        });
                    }
                }
            }
        }
        Ok((found, IdLookup::Realtime))
    }

    /// Which of `ids` exist in `index` (an index, alias or pattern; missing is "none"), by a
    /// search: it sees only documents a refresh has made searchable.
    pub async fn existing_ids(
        &self,
        index: &str,
        ids: &[String],
    ) -> Result<HashSet<String>, EsError> {
        let mut found = HashSet::new();
        for chunk in ids.chunks(10_000) {
            check_name("index", index)?;
            let operation = format!("POST {index}/_search (ids)");
            let path = format!("/{index}/_search");
            let body =
                json!({"query": {"ids": {"values": chunk}}, "size": chunk.len(), "_source": false});
            // Not `ignore_unavailable`: with security on, that would silently skip an alerts
            // index we may not read, and deduplication would quietly see nothing. A missing
            // index (404) means no alert exists yet; a refusal (403) fails the run.
            let query = [("expand_wildcards", "all")];
            let reply = self
                .call(
                    &operation,
                    Method::Post,
                    &path,
                    &query,
                    Some(body.to_string()),
                )
                .await?;
            if reply.status == 404 && reply.body.contains("index_not_found_exception") {
                return Ok(found);
            }
            let answer = judge(&operation, reply)?;
            let failed = answer["_shards"]["failed"].as_u64().unwrap_or(0);
            if failed > 0 {
                return Err(EsError::Response {
                    operation,
                    reason: format!("{failed} shard(s) failed"),
                });
            }
            for h in answer["hits"]["hits"].as_array().into_iter().flatten() {
                if let Some(id) = h["_id"].as_str() {
                    found.insert(id.to_owned());
                }
            }
        }
        Ok(found)
    }

    /// Full `_source`s by (`_index`, `_id`), in the order asked. Each `_source` is parsed on
    /// its own, like a page's, so one document that cannot be read (nested beyond the JSON
    /// parser's depth limit outside the fields the search read, say) is reported for that
    /// document instead of failing the answer, and so every later run.
    pub async fn mget(&self, docs: &[(String, String)]) -> Result<Vec<FetchedSource>, EsError> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let operation = format!("POST _mget ({} documents)", docs.len());
        let body = json!({"docs": docs.iter().map(|(i, id)| json!({"_index": i, "_id": id})).collect::<Vec<_>>()});
        let reply = self
            .call(
                &operation,
                Method::Post,
                "/_mget",
                &[],
                Some(body.to_string()),
            )
            .await?;
        if !(200..300).contains(&reply.status) {
            return Err(super::status_error(&operation, reply));
        }
        let answer: MgetAnswer =
            serde_json::from_str(&reply.body).map_err(|err| EsError::Response {
                operation: operation.clone(),
                reason: format!("the answer is not the expected JSON: {err}"),
            })?;
        if answer.docs.len() != docs.len() {
            return Err(EsError::Response {
                operation,
                reason: format!(
                    "{} documents asked, {} answered",
                    docs.len(),
                    answer.docs.len()
                ),
            });
        }
        Ok(answer
            .docs
            .into_iter()
            .map(|d| match (d.found, d.source) {
                (true, Some(raw)) => match parse_source(raw.get()) {
                    Ok(v) => FetchedSource::Found(v),
                    Err(e) => FetchedSource::Unreadable(e.to_string()),
                },
                _ => FetchedSource::Gone,
            })
            .collect())
    }

    /// A document with its concurrency guard, or `None` when it (or its index) does not exist.
    pub async fn get_versioned(
        &self,
        index: &str,
        id: &str,
    ) -> Result<Option<VersionedDoc>, EsError> {
        check_name("index", index)?;
        let operation = format!("GET {index}/_doc/{id}");
        let path = format!("/{index}/_doc/{}", super::encode_path_segment(id));
        let reply = self.call(&operation, Method::Get, &path, &[], None).await?;
        if reply.status == 404 {
            return Ok(None);
        }
        let answer = judge(&operation, reply)?;
        if answer["found"] != json!(true) {
            return Ok(None);
        }
        let seq_no = answer["_seq_no"].as_u64();
        let primary_term = answer["_primary_term"].as_u64();
        match (seq_no, primary_term) {
            (Some(seq_no), Some(primary_term)) => Ok(Some(VersionedDoc {
                source: answer["_source"].clone(),
                seq_no,
                primary_term,
            })),
            _ => Err(EsError::Response {
                operation,
                reason: "no _seq_no/_primary_term in the answer".into(),
            }),
        }
    }

    /// Writes `doc` as `index/id`: with `guard` only if the stored document is still that
    /// version, without it only if no document has that id. No refresh: these documents
    /// (leases, checkpoints) are only read back by id, and a GET by id is realtime.
    pub async fn put_guarded(
        &self,
        index: &str,
        id: &str,
        doc: &Value,
        guard: Option<(u64, u64)>,
    ) -> Result<WriteOutcome, EsError> {
        check_name("index", index)?;
        let operation = format!("PUT {index}/_doc/{id}");
        let path = format!("/{index}/_doc/{}", super::encode_path_segment(id));
        let (seq, term);
        let mut query: Vec<(&str, &str)> = Vec::new();
        match guard {
            Some((s, t)) => {
                seq = s.to_string();
                term = t.to_string();
                query.push(("if_seq_no", &seq));
                query.push(("if_primary_term", &term));
            }
            None => query.push(("op_type", "create")),
        }
        let reply = self
            .call(
                &operation,
                Method::Put,
                &path,
                &query,
                Some(doc.to_string()),
            )
            .await?;
        if reply.status == 409 {
            return Ok(WriteOutcome::Conflict);
        }
        judge(&operation, reply).map(|_| WriteOutcome::Written)
    }

    /// Writes `doc` as `index/id` unconditionally (run documents: one per run id). No refresh
    /// wait: seqwatch reads these back by id only (realtime), and a search sees them after the
    /// index's next refresh; waiting for it cost `once` up to a second.
    pub async fn put_doc(&self, index: &str, id: &str, doc: &Value) -> Result<(), EsError> {
        check_name("index", index)?;
        let operation = format!("PUT {index}/_doc/{id}");
        let path = format!("/{index}/_doc/{}", super::encode_path_segment(id));
        self.call_ok(&operation, Method::Put, &path, &[], Some(doc.to_string()))
            .await
            .map(drop)
    }

    /// Documents of `index` matching `query`, newest first by `sort_field`, at most `size`.
    pub async fn search_docs(
        &self,
        index: &str,
        query: Value,
        sort_field: &str,
        size: u32,
    ) -> Result<Vec<Value>, EsError> {
        check_name("index", index)?;
        let operation = format!("POST {index}/_search");
        let path = format!("/{index}/_search");
        let body = json!({"query": query, "size": size, "sort": [{sort_field: {"order": "desc", "unmapped_type": "date"}}]});
        let params = [
            ("ignore_unavailable", "true"),
            ("allow_no_indices", "true"),
            ("expand_wildcards", "all"),
        ];
        let reply = self
            .call(
                &operation,
                Method::Post,
                &path,
                &params,
                Some(body.to_string()),
            )
            .await?;
        let answer = judge(&operation, reply)?;
        Ok(answer["hits"]["hits"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| h["_source"].clone())
            .collect())
    }
}

/// Maps a `_field_caps` type to the evaluator's.
fn field_type(t: &str) -> Option<FieldType> {
    Some(match t {
        "keyword" | "constant_keyword" | "wildcard" => FieldType::Keyword { ignore_above: None },
        "long" | "integer" | "short" | "byte" | "unsigned_long" => FieldType::Long,
        "double" | "float" | "half_float" | "scaled_float" => FieldType::Double,
        "date" | "date_nanos" => FieldType::Date,
        "ip" => FieldType::Ip,
        "boolean" => FieldType::Boolean,
        _ => return None,
    })
}

#[cfg(test)]
mod surrogate_tests {
    use super::*;

    #[test]
    fn lone_surrogates_read_as_the_replacement_character() {
        assert_eq!(
            parse_source(r#"{"a":"x\ud800y","b":"\udc00","c":["\ud800"]}"#).ok(),
            Some(json!({"a": "x\u{FFFD}y", "b": "\u{FFFD}", "c": ["\u{FFFD}"]}))
        );
        // A valid pair stays one character; an escaped backslash before `u` is no escape.
        assert_eq!(
            parse_source(r#"{"a":"\ud83d\ude00","b":"\\ud800","c":"\\\ud800"}"#).ok(),
            Some(json!({"a": "😀", "b": "\\ud800", "c": "\\\u{FFFD}"}))
        );
        // A high surrogate followed by another high surrogate: both are lone.
        assert_eq!(
            crate::event::replace_lone_surrogates(r#""\ud800\ud801""#),
            r#""\uFFFD\uFFFD""#
        );
    }

    #[test]
    fn other_unreadable_sources_keep_serde_json_s_reason() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let err = parse_source(&deep).expect_err("too deep").to_string();
        assert!(
            err.starts_with("_source cannot be read: recursion limit exceeded"),
            "{err}"
        );
        assert!(parse_source(r#"{"a":"\ud800"#).is_err(), "truncated");
    }
}

#[cfg(test)]
mod page_tests {
    use super::*;
    use proptest::prelude::*;

    /// An answer as Elasticsearch writes one (9.x, a point-in-time search with `_shard_doc`).
    const PAGE: &str = r#"{"pit_id":"gcSHBAEhbG9ncy1lbmRwb2ludC5ldmVudHMucHJvY2Vzcy1kZWZhdWx0FmVyd0p3==","took":12,"timed_out":false,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0},"hits":{"total":{"value":10000,"relation":"gte"},"max_score":null,"hits":[{"_index":"logs-endpoint.events.process-default","_id":"_JXO_iAKzfv-wGk9m6Cc","_score":null,"_source":{"process":{"parent":{"name":"node","entity_id":"YTgy=="},"args":["sh","-c","echo \"}{\" \\"],"name":"dash"},"@timestamp":"2026-05-28T20:26:40.163Z","host":{"id":"417b"}},"sort":[1780000000163000000,17]},{"_index":"logs-crowdstrike.fdr-default","_id":"esc\"aped\u00e9","_score":null,"_ignored":["x"],"fields":{"a":[1]},"_source":{"event.action":"ProcessRollup2"},"sort":[-5,18]},{"_index":"i","_id":"no-source","sort":[1.5,19]}]}}"#;

    fn same_as_serde(text: &str) -> bool {
        let Some(_) = scan_search_page(text, None) else {
            return false;
        };
        // A `_shards` the scanner delimited but serde does not read (`"failed":-0`, which
        // serde_json reads as a float) sends the whole answer to serde, which refuses it.
        let Ok(scanned) = read_page(text, None) else {
            assert!(read_page_serde(text).is_err(), "{text}");
            return true;
        };
        match read_page_serde(text) {
            Ok(reference) => assert_eq!(scanned, reference, "{text}"),
            // The scanner only delimits `_source`: serde may refuse a page whose `_source` is
            // no JSON, which the correlator's decode then refuses as one bad event.
            Err(_) => assert!(
                scanned.hits.iter().any(|h| h
                    .source
                    .clone()
                    .is_some_and(|r| serde_json::from_str::<Value>(&text[r]).is_err())),
                "the scanner read a page serde refuses, outside any _source: {text}"
            ),
        }
        true
    }

    #[test]
    fn a_shards_object_serde_refuses_fails_the_page_as_serde_fails_it() {
        let broken = PAGE.replace("\"failed\":0", "\"failed\":-0");
        assert!(same_as_serde(&broken));
        assert!(read_page(&broken, None).is_err());
    }

    #[test]
    fn answers_elasticsearch_writes_are_read_by_the_scanner_as_serde_reads_them() {
        assert!(same_as_serde(PAGE));
        let read = read_page(PAGE, None).expect("reads");
        assert!(read.pit_id.is_some_and(|p| p.starts_with("gcSHBA")));
        assert!(!read.timed_out);
        assert_eq!(read.shards.failed, 0);
        let page = SearchPage {
            body: PAGE.to_owned(),
            hits: read.hits,
            values: read.values,
        };
        let hits: Vec<PageHitRef<'_>> = page.hits().collect();
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[0].id, "_JXO_iAKzfv-wGk9m6Cc");
        assert_eq!(hits[0].sorted_at, Some(1_780_000_000_163_000_000));
        assert!(hits[0]
            .source
            .is_some_and(|s| s.ends_with(r#""host":{"id":"417b"}}"#)));
        assert_eq!(hits[1].id, "esc\"aped\u{e9}");
        assert_eq!(hits[1].sorted_at, Some(-5));
        assert_eq!(hits[2].source, None);
        assert_eq!(hits[2].sorted_at, None);
        for other in [
            r#"{"hits":{"hits":[]}}"#,
            r#"{"pit_id":null,"timed_out":true,"_shards":{"failed":1,"failures":[{"reason":{"type":"x"}}]},"hits":{}}"#,
            r#" { "hits" : { "hits" : [ { "_id" : "a" , "_index" : "b" , "_source" : null , "sort" : [ 0 ] } ] } } "#,
        ] {
            assert!(same_as_serde(other), "{other}");
        }
    }

    #[test]
    fn answers_the_scanner_does_not_read_go_to_serde() {
        for text in [
            r#"{"hits":{"hits":[{"_id":"a","_index":"b","_id":"c"}]}}"#,
            r#"{"hits":{"hits":[{"_index":"b"}]}}"#,
            r#"{"hits":{"hits":[{"_id":"a","_index":"b","_source":"text"}]}}"#,
            r#"{"hits":{"hits":[{"_id":"a","_index":"b","\u005fsource":{}}]}}"#,
            r#"{"took":1}"#,
            r#"{"hits":{"hits":[]}} trailing"#,
            r#"{"hits":{"hits":[]},"x":"\ud800"}"#,
        ] {
            assert_eq!(scan_search_page(text, None), None, "{text}");
        }
        // Refused by both, with serde's words.
        let err = read_page(r#"{"hits":{"hits":[{"_index":"b"}]}}"#, None)
            .expect_err("no _id")
            .to_string();
        assert!(err.contains("missing field `_id`"), "{err}");
    }

    /// With a plan, each `_source` is decoded as the page is read, to exactly what
    /// `decode_flat` makes of its text; the rest of the page reads the same.
    #[test]
    fn sources_decoded_while_reading_equal_decode_flat_of_their_text() {
        use crate::event::{decode_flat, Document, FlatDecode, FlatEvent};
        let mut plan = FieldPlan::new();
        for path in [
            "process.name",
            "process.args",
            "process.parent.name",
            "event.action",
            "host.id",
        ] {
            plan.slot(path);
        }
        let lone = PAGE.replace("\"dash\"", "\"\\ud800\"");
        assert_ne!(lone, PAGE);
        for body in [PAGE, lone.as_str()] {
            let plain = read_page(body, None).expect("reads");
            let read = read_page(body, Some(&plan)).expect("reads");
            assert_eq!(read.hits.len(), plain.hits.len());
            let page = SearchPage {
                body: body.to_owned(),
                hits: read.hits,
                values: read.values,
            };
            let mut decoded = 0;
            for (h, p) in page.hits().zip(&plain.hits) {
                assert_eq!(h.source.map(|_| ()), p.source.as_ref().map(|_| ()));
                let Some(source) = h.source else {
                    assert!(h.flat.is_none());
                    continue;
                };
                let mut reference = FlatEvent::default();
                let verdict = decode_flat(source, &plan, &mut reference);
                match h.flat {
                    Some(values) => {
                        decoded += 1;
                        assert_eq!(verdict.ok(), Some(FlatDecode::Decoded));
                        let mut event = FlatEvent::default();
                        event.fill(page.text(), values, &plan);
                        for (slot, path) in plan.paths().iter().enumerate() {
                            let got: Vec<Value> =
                                event.field(path, slot).map(|v| v.to_json()).collect();
                            let want: Vec<Value> =
                                reference.field(path, slot).map(|v| v.to_json()).collect();
                            assert_eq!(got, want, "{path}");
                        }
                    }
                    // Only a `_source` the scanner gave up on (the lone surrogate) is left.
                    None => assert!(source.contains("\\ud800"), "{source}"),
                }
            }
            assert_eq!(decoded, if body == PAGE { 2 } else { 1 });
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn a_broken_answer_is_never_read_other_than_serde_reads_it(
            at in any::<prop::sample::Index>(),
            piece in prop::sample::select(vec![
                "\\", "\"", "{", "}", "[", "]", ",", ":", "\\u", "\\ud800", "1e400", "null",
                "\"_id\":\"x\",", "\"sort\":[1],", "\"_source\":{},", " ", "-", "0", "é",
            ]),
            cut in any::<bool>(),
        ) {
            let boundaries: Vec<usize> =
                (0..=PAGE.len()).filter(|&i| PAGE.is_char_boundary(i)).collect();
            let i = boundaries[at.index(boundaries.len())];
            let broken = if cut {
                let next = boundaries.iter().copied().find(|&b| b > i).unwrap_or(i);
                format!("{}{}", &PAGE[..i], &PAGE[next..])
            } else {
                format!("{}{piece}{}", &PAGE[..i], &PAGE[i..])
            };
            same_as_serde(&broken);
        }
    }
}
