//! `_bulk` with `create` operations: the NDJSON request body and the per-item reading of the
//! answer. HTTP 200 with `errors: true` is normal for `_bulk`, so every item is judged on its
//! own status: 2xx created, 409 `version_conflict_engine_exception` already there (a `create`
//! of an existing id), anything else failed.

use serde::Deserialize;
use serde_json::Value;

use super::EsError;

/// The most bytes Elasticsearch accepts in a document `_id`.
pub const MAX_ID_BYTES: usize = 512;

/// One `create` operation: write `document` as `index`/`id` unless that id already exists.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkCreate {
    /// Target index (or alias or data stream).
    pub index: String,
    /// Document id; deterministic ids make repeated writes idempotent.
    pub id: String,
    /// The document; must be a JSON object.
    pub document: Value,
}

impl BulkCreate {
    /// A `create` of `document` as `index`/`id`.
    pub fn new(index: impl Into<String>, id: impl Into<String>, document: Value) -> Self {
        BulkCreate {
            index: index.into(),
            id: id.into(),
            document,
        }
    }
}

/// What happened to one `create` operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkOutcome {
    /// The document was written (2xx).
    Created,
    /// A document with this id already existed (409 `version_conflict_engine_exception`);
    /// nothing was written.
    AlreadyExists,
    /// Elasticsearch refused this item.
    Failed {
        /// The item's HTTP status.
        status: u16,
        /// `error.type`, e.g. `document_parsing_exception`.
        error_type: String,
        /// `error.reason`.
        reason: String,
    },
}

impl BulkOutcome {
    /// True for failures worth sending again later: 429 (rejected, node busy) and 5xx.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BulkOutcome::Failed { status, .. } if *status == 429 || *status >= 500)
    }
}

/// The outcome of one operation, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkItem {
    /// The index Elasticsearch wrote to (or tried to).
    pub index: String,
    /// The document id.
    pub id: String,
    /// What happened.
    pub outcome: BulkOutcome,
}

/// Counts of a bulk request's outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkSummary {
    /// Documents written.
    pub created: usize,
    /// Documents whose id already existed.
    pub already_existed: usize,
    /// Documents refused.
    pub failed: usize,
}

impl BulkSummary {
    /// Counts the outcomes of `items`.
    pub fn of(items: &[BulkItem]) -> Self {
        items.iter().fold(BulkSummary::default(), |mut sum, item| {
            match item.outcome {
                BulkOutcome::Created => sum.created += 1,
                BulkOutcome::AlreadyExists => sum.already_existed += 1,
                BulkOutcome::Failed { .. } => sum.failed += 1,
            }
            sum
        })
    }
}

/// `filter_path` for `_bulk`: enough to tell created from duplicate from failed, per item.
/// (Keeping only `items.*.error` would drop the successful items and with them the counts.)
pub(crate) const FILTER_PATH: &str =
    "errors,items.*._index,items.*._id,items.*.status,items.*.error.type,items.*.error.reason";

/// The NDJSON body for `ops`: an action line and a source line per operation.
pub(crate) fn encode(ops: &[BulkCreate]) -> Result<String, EsError> {
    let mut body = String::new();
    for (position, op) in ops.iter().enumerate() {
        let what = |field: &str| format!("bulk operation {position}: {field}");
        if op.index.is_empty() {
            return Err(EsError::InvalidArgument {
                what: what("index"),
                reason: "is empty".into(),
            });
        }
        if op.id.is_empty() || op.id.len() > MAX_ID_BYTES {
            return Err(EsError::InvalidArgument {
                what: what("document id"),
                reason: format!("must have 1 to {MAX_ID_BYTES} bytes, has {}", op.id.len()),
            });
        }
        if !op.document.is_object() {
            return Err(EsError::InvalidArgument {
                what: what("document"),
                reason: format!("must be a JSON object (id `{}`)", op.id),
            });
        }
        let action = serde_json::json!({ "create": { "_index": op.index, "_id": op.id } });
        body.push_str(&action.to_string());
        body.push('\n');
        // Serialising a serde_json::Value cannot fail; to_string escapes newlines in strings.
        body.push_str(&op.document.to_string());
        body.push('\n');
    }
    Ok(body)
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<std::collections::BTreeMap<String, ItemResponse>>,
}

#[derive(Deserialize)]
struct ItemResponse {
    #[serde(rename = "_index", default)]
    index: String,
    #[serde(rename = "_id", default)]
    id: Option<String>,
    status: u16,
    error: Option<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    #[serde(rename = "type", default)]
    error_type: String,
    #[serde(default)]
    reason: String,
}

/// Reads a 2xx `_bulk` answer to `ops` into one item per operation, in request order.
pub(crate) fn decode(
    operation: &str,
    ops: &[BulkCreate],
    body: &str,
) -> Result<Vec<BulkItem>, EsError> {
    let bad = |reason: String| EsError::Response {
        operation: operation.to_owned(),
        reason,
    };
    let response: BulkResponse = serde_json::from_str(body)
        .map_err(|err| bad(format!("bulk answer is not the expected JSON: {err}")))?;
    if response.items.len() != ops.len() {
        return Err(bad(format!(
            "{} operations sent but {} items answered",
            ops.len(),
            response.items.len()
        )));
    }
    ops.iter()
        .zip(response.items)
        .enumerate()
        .map(|(position, (op, mut item))| {
            let answer = item
                .remove("create")
                .ok_or_else(|| bad(format!("item {position} is not an answer to a `create`")))?;
            if let Some(id) = &answer.id {
                if id != &op.id {
                    return Err(bad(format!(
                        "item {position} answers id `{id}` but `{}` was sent there",
                        op.id
                    )));
                }
            }
            let outcome = match (answer.status, answer.error) {
                (200..=299, _) => BulkOutcome::Created,
                (409, Some(error)) if error.error_type == "version_conflict_engine_exception" => {
                    BulkOutcome::AlreadyExists
                }
                (status, Some(error)) => BulkOutcome::Failed {
                    status,
                    error_type: error.error_type,
                    reason: error.reason,
                },
                (status, None) => BulkOutcome::Failed {
                    status,
                    error_type: String::new(),
                    reason: "no error detail in the answer".into(),
                },
            };
            Ok(BulkItem {
                index: if answer.index.is_empty() {
                    op.index.clone()
                } else {
                    answer.index
                },
                id: op.id.clone(),
                outcome,
            })
        })
        .collect()
}

/// The source field a per-item mapping refusal names, when it names one: Elasticsearch says
/// which field it could not parse (`failed to parse field [process.pid] of type [long] …`),
/// which object met a concrete value (`object mapping for [user] tried to parse field …`),
/// where it could not add a sub-field, or which field held a term too long to index.
pub fn refused_field(error_type: &str, reason: &str) -> Option<String> {
    const MAPPING_REFUSALS: [&str; 3] = [
        "document_parsing_exception",
        "mapper_parsing_exception",
        "illegal_argument_exception",
    ];
    if !MAPPING_REFUSALS.contains(&error_type) {
        return None;
    }
    const BRACKETED: [&str; 3] = [
        "failed to parse field [",
        "object mapping for [",
        "Could not dynamically add mapping for field [",
    ];
    let between = |start: &str, end: char| {
        let from = reason.find(start)? + start.len();
        let len = reason[from..].find(end)?;
        let field = &reason[from..from + len];
        (!field.is_empty()).then(|| field.to_owned())
    };
    BRACKETED
        .iter()
        .find_map(|start| between(start, ']'))
        .or_else(|| between("immense term in field=\"", '"'))
}

/// The NDJSON body deleting `docs` (concrete index, id).
pub(crate) fn encode_deletes(docs: &[(String, String)]) -> String {
    let mut body = String::new();
    for (index, id) in docs {
        let action = serde_json::json!({ "delete": { "_index": index, "_id": id } });
        body.push_str(&action.to_string());
        body.push('\n');
    }
    body
}

/// Reads a 2xx `_bulk` answer to deletes: each item gone (200) or never there (404), else
/// the first refusal as an error.
pub(crate) fn decode_deletes(operation: &str, body: &str) -> Result<(), EsError> {
    let bad = |reason: String| EsError::Response {
        operation: operation.to_owned(),
        reason,
    };
    let response: BulkResponse = serde_json::from_str(body)
        .map_err(|err| bad(format!("bulk answer is not the expected JSON: {err}")))?;
    for (position, mut item) in response.items.into_iter().enumerate() {
        let answer = item
            .remove("delete")
            .ok_or_else(|| bad(format!("item {position} is not an answer to a `delete`")))?;
        if !(200..300).contains(&answer.status) && answer.status != 404 {
            let (error_type, reason) = answer
                .error
                .map(|e| (e.error_type, e.reason))
                .unwrap_or_default();
            return Err(bad(format!(
                "item {position} (id `{}`) not deleted: HTTP {} {error_type}: {reason}",
                answer.id.unwrap_or_default(),
                answer.status
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod refusal_tests {
    use super::*;

    #[test]
    fn the_refused_field_is_read_from_elasticsearchs_reasons() {
        let cases = [
            (
                "document_parsing_exception",
                "[1:342] failed to parse field [process.pid] of type [long] in document with id 'abc'. Preview of field's value: 'n/a'",
                Some("process.pid"),
            ),
            (
                "document_parsing_exception",
                "[1:40] object mapping for [user] tried to parse field [user] as object, but found a concrete value",
                Some("user"),
            ),
            (
                "mapper_parsing_exception",
                "failed to parse field [source.ip] of type [ip] in document with id 'x'. Preview of field's value: 'nope'",
                Some("source.ip"),
            ),
            (
                "document_parsing_exception",
                "[1:9] Could not dynamically add mapping for field [user.name.first]. Existing mapping for [user.name] must be of type object but found [keyword].",
                Some("user.name.first"),
            ),
            (
                "illegal_argument_exception",
                "Document contains at least one immense term in field=\"process.command_line\" (whose UTF8 encoding is longer than the max length 32766), all of which were skipped.",
                Some("process.command_line"),
            ),
            ("document_parsing_exception", "[1:1] unexpected end of input", None),
            (
                "version_conflict_engine_exception",
                "failed to parse field [x] of type [long]",
                None,
            ),
            ("illegal_argument_exception", "failed to parse field [] of type", None),
        ];
        for (error_type, reason, want) in cases {
            assert_eq!(
                refused_field(error_type, reason).as_deref(),
                want,
                "{error_type}: {reason}"
            );
        }
    }

    #[test]
    fn deletes_accept_gone_and_missing_items_only() {
        let body = encode_deletes(&[("i".into(), "a".into()), ("i".into(), "b".into())]);
        assert_eq!(
            body,
            "{\"delete\":{\"_id\":\"a\",\"_index\":\"i\"}}\n{\"delete\":{\"_id\":\"b\",\"_index\":\"i\"}}\n"
        );
        let ok = r#"{"errors":false,"items":[{"delete":{"_index":"i","_id":"a","status":200}},{"delete":{"_index":"i","_id":"b","status":404}}]}"#;
        assert!(decode_deletes("op", ok).is_ok());
        let refused = r#"{"errors":true,"items":[{"delete":{"_index":"i","_id":"a","status":403,"error":{"type":"security_exception","reason":"no"}}}]}"#;
        let err = decode_deletes("op", refused).unwrap_err().to_string();
        assert!(err.contains("`a`") && err.contains("403"), "{err}");
    }
}
