//! The requests a detection run makes: paging a point in time with `search_after`, field
//! types from `_field_caps`, existing alert ids, full events by id, and state documents with
//! optimistic concurrency. Each answer is checked the way the run needs it checked: a shard
//! failure fails the page (as it fails a sequence query in Kibana), a timed-out search too.

use std::collections::HashSet;

use elasticsearch::http::Method;
use serde_json::{json, Value};

use super::{check_name, judge, EsClient, EsError};
use crate::eql::value::{FieldType, FieldTypes};

/// One hit of a page.
#[derive(Debug, Clone, PartialEq)]
pub struct RawHit {
    /// Concrete index.
    pub index: String,
    /// Document id.
    pub id: String,
    /// `_source` (filtered to the requested fields).
    pub source: Value,
    /// Why `_source` could not be read, if it could not (then `source` is null).
    pub source_error: Option<String>,
    /// The sort values, for `search_after`.
    pub sort: Value,
}

#[derive(serde::Deserialize)]
struct PageAnswer {
    pit_id: Option<String>,
    #[serde(default)]
    timed_out: bool,
    #[serde(rename = "_shards", default)]
    shards: PageShards,
    hits: PageHits,
}

#[derive(serde::Deserialize, Default)]
struct PageShards {
    #[serde(default)]
    failed: u64,
    #[serde(default)]
    failures: Vec<Value>,
}

#[derive(serde::Deserialize)]
struct PageHits {
    #[serde(default)]
    hits: Vec<PageHit>,
}

#[derive(serde::Deserialize)]
struct PageHit {
    #[serde(rename = "_index")]
    index: String,
    #[serde(rename = "_id")]
    id: String,
    #[serde(rename = "_source")]
    source: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    sort: Value,
}

/// One document of an `_mget`, as [`EsClient::mget`] read it.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchedSource {
    /// The full `_source`.
    Found(Value),
    /// The document exists but its `_source` cannot be parsed; why.
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
pub fn parse_source(raw: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(raw) {
        Ok(v) => Ok(v),
        Err(first) => {
            let repaired = replace_lone_surrogates(raw);
            if repaired.len() != raw.len() || repaired != raw {
                if let Ok(v) = serde_json::from_str::<Value>(&repaired) {
                    return Ok(v);
                }
            }
            Err(format!("_source cannot be read: {first}"))
        }
    }
}

/// `raw` with every `\uXXXX` escape of an unpaired surrogate replaced by `\uFFFD`.
pub fn replace_lone_surrogates(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let hex_at = |i: usize| -> Option<u32> {
        let h = bytes.get(i..i + 4)?;
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    let escape_at = |i: usize| -> Option<u32> {
        (bytes.get(i) == Some(&b'\\') && bytes.get(i + 1) == Some(&b'u'))
            .then(|| hex_at(i + 2))
            .flatten()
    };
    let mut out = String::with_capacity(raw.len());
    let mut last = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = escape_at(i) else {
            i += 2; // another escape: skip the escaped character (also a backslash)
            continue;
        };
        match unit {
            0xD800..=0xDBFF if matches!(escape_at(i + 6), Some(0xDC00..=0xDFFF)) => i += 12,
            0xD800..=0xDFFF => {
                out.push_str(&raw[last..i]);
                out.push_str("\\uFFFD");
                i += 6;
                last = i;
            }
            _ => i += 6,
        }
    }
    out.push_str(&raw[last..]);
    out
}

/// A point in time being paged through. Close it with [`PitPager::close`] on every path.
#[derive(Debug)]
pub struct PitPager {
    pit_id: String,
    body: Value,
    after: Option<Value>,
    done: bool,
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
        let body = json!({
            "size": page_size,
            "query": query,
            "_source": {"includes": source_includes},
            "sort": sort,
            "pit": {"id": pit_id, "keep_alive": keep_alive},
            "track_total_hits": false,
        });
        Ok(PitPager {
            pit_id,
            body,
            after: None,
            done: false,
        })
    }

    /// The next page, or `None` after the last. A page with shard failures or a timeout is an
    /// error: a partial page could hide a sequence's events.
    pub async fn next_page(&self, pager: &mut PitPager) -> Result<Option<Vec<RawHit>>, EsError> {
        if pager.done {
            return Ok(None);
        }
        let mut body = pager.body.clone();
        body["pit"]["id"] = json!(pager.pit_id);
        if let Some(after) = &pager.after {
            body["search_after"] = after.clone();
        }
        let operation = "POST _search (point in time)";
        let reply = self
            .call(
                operation,
                Method::Post,
                "/_search",
                &[],
                Some(body.to_string()),
            )
            .await?;
        if !(200..300).contains(&reply.status) {
            return Err(super::status_error(operation, reply));
        }
        // Each `_source` stays raw text until parsed on its own, so one document that cannot be
        // read (nested beyond the JSON parser's depth limit, say) becomes one skipped event
        // instead of a page, and so every run, that fails.
        let answer: PageAnswer =
            serde_json::from_str(&reply.body).map_err(|err| EsError::Response {
                operation: operation.into(),
                reason: format!("the search answer is not the expected JSON: {err}"),
            })?;
        if let Some(id) = answer.pit_id {
            pager.pit_id = id;
        }
        if answer.shards.failed > 0 {
            let first = answer.shards.failures.first();
            let reason = first
                .and_then(|f| {
                    f["reason"]["reason"]
                        .as_str()
                        .or_else(|| f["reason"]["type"].as_str())
                })
                .unwrap_or("unknown");
            return Err(EsError::Response {
                operation: operation.into(),
                reason: format!(
                    "{} shard(s) failed; the first: {reason}",
                    answer.shards.failed
                ),
            });
        }
        if answer.timed_out {
            return Err(EsError::Response {
                operation: operation.into(),
                reason: "the search timed out".into(),
            });
        }
        if answer.hits.hits.is_empty() {
            pager.done = true;
            return Ok(None);
        }
        let mut out = Vec::with_capacity(answer.hits.hits.len());
        for h in answer.hits.hits {
            let (source, source_error) =
                match h.source.as_deref().map(|raw| parse_source(raw.get())) {
                    Some(Ok(v)) => (v, None),
                    Some(Err(e)) => (Value::Null, Some(e)),
                    None => (Value::Null, Some("the hit has no _source".to_owned())),
                };
            out.push(RawHit {
                index: h.index,
                id: h.id,
                source,
                source_error,
                sort: h.sort,
            });
        }
        pager.after = out.last().map(|h| h.sort.clone());
        if pager.after.as_ref().is_none_or(Value::is_null) {
            return Err(EsError::Response {
                operation: operation.into(),
                reason: "hits carry no sort values".into(),
            });
        }
        Ok(Some(out))
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
        if let Some(map) = answer["fields"].as_object() {
            for (field, caps) in map {
                let Some(caps) = caps.as_object() else {
                    continue;
                };
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
        Ok((types, matched))
    }

    /// Which of `ids` exist in `index` (an index, alias or pattern; missing is "none").
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
                    Err(e) => FetchedSource::Unreadable(e),
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
        let path = format!("/{index}/_doc/{}", encode_id(id));
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
        let path = format!("/{index}/_doc/{}", encode_id(id));
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

    /// Writes `doc` as `index/id` unconditionally (run documents: one per run id).
    pub async fn put_doc(&self, index: &str, id: &str, doc: &Value) -> Result<(), EsError> {
        check_name("index", index)?;
        let operation = format!("PUT {index}/_doc/{id}");
        let path = format!("/{index}/_doc/{}", encode_id(id));
        self.call_ok(
            &operation,
            Method::Put,
            &path,
            &[("refresh", "wait_for")],
            Some(doc.to_string()),
        )
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

/// Percent-encodes a document id for a URL path (ids are ours: hex, dashes, letters).
fn encode_id(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod surrogate_tests {
    use super::*;

    #[test]
    fn lone_surrogates_read_as_the_replacement_character() {
        assert_eq!(
            parse_source(r#"{"a":"x\ud800y","b":"\udc00","c":["\ud800"]}"#),
            Ok(json!({"a": "x\u{FFFD}y", "b": "\u{FFFD}", "c": ["\u{FFFD}"]}))
        );
        // A valid pair stays one character; an escaped backslash before `u` is no escape.
        assert_eq!(
            parse_source(r#"{"a":"\ud83d\ude00","b":"\\ud800","c":"\\\ud800"}"#),
            Ok(json!({"a": "😀", "b": "\\ud800", "c": "\\\u{FFFD}"}))
        );
        // A high surrogate followed by another high surrogate: both are lone.
        assert_eq!(
            replace_lone_surrogates(r#""\ud800\ud801""#),
            r#""\uFFFD\uFFFD""#
        );
    }

    #[test]
    fn other_unreadable_sources_keep_serde_json_s_reason() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let err = parse_source(&deep).expect_err("too deep");
        assert!(
            err.starts_with("_source cannot be read: recursion limit exceeded"),
            "{err}"
        );
        assert!(parse_source(r#"{"a":"\ud800"#).is_err(), "truncated");
    }
}
