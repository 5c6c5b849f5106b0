//! The search behind alert enrichment: one of Kibana's entity analytics indices, read through
//! the `fields` of its hits.

use elasticsearch::http::Method;
use serde_json::{Map, Value};

use super::{check_name, judge, EsClient, EsError};

impl EsClient {
    /// `POST <index>/_search` with `body`: each hit's `fields` (an empty map for a hit without
    /// any), or `None` when the index does not exist (404 `index_not_found_exception`). Not
    /// `ignore_unavailable`: with security on, that would read an index the credential may not
    /// read as empty; a refusal is an error. An answer with a failed shard or a timeout is an
    /// error too: a half-read answer would enrich some alerts and silently not others.
    pub async fn search_fields(
        &self,
        index: &str,
        body: &Value,
    ) -> Result<Option<Vec<Map<String, Value>>>, EsError> {
        check_name("index", index)?;
        let operation = format!("POST {index}/_search (enrichment)");
        let path = format!("/{index}/_search");
        let reply = self
            .call(&operation, Method::Post, &path, &[], Some(body.to_string()))
            .await?;
        if reply.status == 404 && reply.body.contains("index_not_found_exception") {
            return Ok(None);
        }
        let answer = judge(&operation, reply)?;
        let failed = answer["_shards"]["failed"].as_u64().unwrap_or(0);
        if failed > 0 || answer["timed_out"] == Value::Bool(true) {
            return Err(EsError::Response {
                operation,
                reason: format!(
                    "{failed} shard(s) failed, timed out: {}",
                    answer["timed_out"]
                ),
            });
        }
        let Some(hits) = answer["hits"]["hits"].as_array() else {
            return Err(EsError::Response {
                operation,
                reason: "no `hits.hits` in the answer".into(),
            });
        };
        Ok(Some(
            hits.iter()
                .map(|hit| hit["fields"].as_object().cloned().unwrap_or_default())
                .collect(),
        ))
    }
}
