//! A point-in-time search answer (and an export line's hit) as serde_json reads it: the
//! paging's fallback when the one-pass scanner gives up, and the reference the scanner is held
//! to by the fuzz targets. One definition, so the two cannot drift apart.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// The parts of a search answer the paging uses.
#[derive(Deserialize)]
pub struct SearchAnswer<'a> {
    /// The point in time to send with the next page.
    pub pit_id: Option<String>,
    /// True when the search ran out of time (the page is partial).
    #[serde(default)]
    pub timed_out: bool,
    /// Shard failures.
    #[serde(rename = "_shards", default)]
    pub shards: AnswerShards,
    /// The hits.
    #[serde(borrow)]
    pub hits: AnswerHits<'a>,
}

/// `_shards`: how many failed, and why.
#[derive(Deserialize, Default, Debug, PartialEq)]
pub struct AnswerShards {
    /// Failed shards.
    #[serde(default)]
    pub failed: u64,
    /// Their failures, as Elasticsearch words them.
    #[serde(default)]
    pub failures: Vec<Value>,
}

/// `hits`.
#[derive(Deserialize)]
pub struct AnswerHits<'a> {
    /// `hits.hits`.
    #[serde(default, borrow)]
    pub hits: Vec<AnswerHit<'a>>,
}

/// One hit of an answer, or one line of an export.
#[derive(Deserialize)]
pub struct AnswerHit<'a> {
    /// `_index`.
    #[serde(rename = "_index", borrow)]
    pub index: Cow<'a, str>,
    /// `_id`.
    #[serde(rename = "_id", borrow)]
    pub id: Cow<'a, str>,
    /// `_source`, unparsed.
    #[serde(rename = "_source", borrow)]
    pub source: Option<&'a RawValue>,
    /// `sort`, unparsed.
    #[serde(default, borrow)]
    pub sort: Option<&'a RawValue>,
}
