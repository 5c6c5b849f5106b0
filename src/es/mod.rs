//! The one module that speaks to Elasticsearch: connection settings, a small typed client over
//! the `elasticsearch` crate, the index templates and the `_bulk` create path. Every request
//! has a timeout, every answer's HTTP status is checked (the crate returns 4xx/5xx as `Ok`), and
//! bodies are read as text and parsed here, never through the crate's `content_type()`, which
//! panics when the header is missing. Nothing here logs or returns credentials.

mod bulk;
mod detect;
mod enrichment;
mod error;
pub mod field_types;
mod mapping;
pub mod templates;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use elasticsearch::auth::Credentials;
use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, Url};
use elasticsearch::Elasticsearch;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

pub use bulk::{refused_field, BulkCreate, BulkItem, BulkOutcome, BulkSummary, MAX_ID_BYTES};
pub use detect::{
    parse_source, pit_expired, FetchedSource, FieldCapsAnswer, IdLookup, PageHitRef, PitPager,
    RawHit, SearchPage, VersionedDoc, WriteOutcome, PIT_SEARCH,
};
pub use error::EsError;
pub use mapping::mapped_field_type;

/// Where seqwatch looks for Elasticsearch when nothing is configured.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9200";
/// Request timeout when nothing is configured. The crate itself sets none.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of an error body kept in an [`EsError::Status`] reason.
const MAX_REASON_CHARS: usize = 600;

/// How to authenticate to Elasticsearch. Secrets are [`SecretString`]s: `Debug` shows
/// `[REDACTED]`.
#[derive(Debug, Clone)]
pub enum EsAuth {
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: SecretString,
    },
    /// An API key as the `id` and `api_key` that `POST _security/api_key` returns.
    ApiKey {
        /// The key's id (not secret).
        id: String,
        /// The key's secret.
        key: SecretString,
    },
    /// An API key in its `encoded` form (base64 of `id:api_key`).
    EncodedApiKey(SecretString),
}

/// Everything needed to connect to one Elasticsearch node or cluster endpoint.
#[derive(Debug, Clone)]
pub struct EsSettings {
    /// Base URL, `http` or `https`, without credentials in it.
    pub url: String,
    /// Total time allowed for one request, from sending to the last byte of the answer.
    pub request_timeout: Duration,
    /// Credentials, if the cluster needs them.
    pub auth: Option<EsAuth>,
    /// PEM of a CA to trust for `https` (added to the bundled roots). Certificates and host
    /// names are always verified; there is no switch to turn that off.
    pub ca_pem: Option<Vec<u8>>,
    /// Retries of a request that met a transient failure (429, 502, 503, 504, a refused or
    /// reset connection, a timeout), with exponential backoff and full jitter; `Retry-After`
    /// is honoured. 0 sends every request once.
    pub max_retries: u32,
    /// The first backoff; each retry doubles it, up to [`MAX_BACKOFF`].
    pub retry_base: Duration,
    /// Ask for gzip-compressed answers. Off, the client sends `Accept-Encoding: identity`:
    /// compressing costs the node CPU, which next to the node is dearer than the bytes saved
    /// (on one machine the one-query fetch of a 5M-event window took 5.8 s with gzip against
    /// 5.1 s without, for 24 MB against 121 MB on the wire). Worth it across a slow link.
    pub compress_responses: bool,
}

/// The longest wait between two attempts (a longer `Retry-After` is cut to it).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl EsSettings {
    /// Settings for `url` with the default timeout and no credentials.
    pub fn new(url: impl Into<String>) -> Self {
        EsSettings {
            url: url.into(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            auth: None,
            ca_pem: None,
            max_retries: 0,
            retry_base: Duration::from_millis(250),
            compress_responses: false,
        }
    }
}

/// Cluster health as `GET _cluster/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// All shards allocated.
    Green,
    /// All primaries allocated, some replicas not.
    Yellow,
    /// Some primaries unallocated.
    Red,
}

/// The parts of `GET _cluster/health` seqwatch uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClusterHealth {
    /// The cluster's name.
    pub cluster_name: String,
    /// Its status.
    pub status: HealthStatus,
    /// Number of nodes.
    pub number_of_nodes: u64,
}

/// One index template `seqwatch setup` installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledTemplate {
    /// Its name.
    pub name: &'static str,
    /// The field types this cluster lacks, mapped as their fallbacks in it (empty where the
    /// cluster has every type the template uses).
    pub type_fallbacks: Vec<field_types::TypeFallback>,
}

/// The index pattern of the field type probes: no index is ever created from it.
const FIELD_TYPE_PROBE_PATTERN: &str = "seqwatch-field-type-probe-never-created";
/// The probes' template priority.
const FIELD_TYPE_PROBE_PRIORITY: u64 = 1_700_424_011;

/// Whether a refusal names `field_type` as a mapping type the cluster does not know.
fn names_unknown_type(body: &str, field_type: &str) -> bool {
    [
        format!("The mapper type [{field_type}] declared on field"),
        format!("No handler for type [{field_type}] declared on field"),
    ]
    .iter()
    .any(|phrase| body.contains(phrase.as_str()))
}

/// A client for one Elasticsearch endpoint. Cheap to clone.
#[derive(Clone)]
pub struct EsClient {
    client: Elasticsearch,
    url: String,
    timeout: Duration,
    max_retries: u32,
    retry_base: Duration,
}

impl fmt::Debug for EsClient {
    // By hand: the crate's transport holds the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EsClient")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// An answer whose status has not been judged yet.
struct Reply {
    status: u16,
    body: String,
}

impl EsClient {
    /// Builds a client for `settings`. Does not contact the node; see [`EsClient::health`].
    pub fn connect(settings: &EsSettings) -> Result<Self, EsError> {
        let url = parse_url(&settings.url)?;
        if settings.request_timeout.is_zero() {
            return Err(EsError::InvalidArgument {
                what: "request timeout".into(),
                reason: "must be more than zero".into(),
            });
        }
        let display_url = url.as_str().trim_end_matches('/').to_owned();
        let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(settings.request_timeout);
        if !settings.compress_responses {
            // The HTTP stack adds `Accept-Encoding: gzip` only where the header is not set.
            builder = builder.header(
                elasticsearch::http::headers::ACCEPT_ENCODING,
                elasticsearch::http::headers::HeaderValue::from_static("identity"),
            );
        }
        if let Some(auth) = &settings.auth {
            builder = builder.auth(credentials(auth)?);
        }
        if let Some(pem) = &settings.ca_pem {
            let cert =
                elasticsearch::cert::Certificate::from_pem(pem).map_err(|err| EsError::Client {
                    reason: format!("the CA file is not a PEM certificate: {err}"),
                })?;
            builder =
                builder.cert_validation(elasticsearch::cert::CertificateValidation::Full(cert));
        }
        let transport = builder.build().map_err(|err| EsError::Client {
            reason: err.to_string(),
        })?;
        Ok(EsClient {
            client: Elasticsearch::new(transport),
            url: display_url,
            timeout: settings.request_timeout,
            max_retries: settings.max_retries,
            retry_base: settings.retry_base,
        })
    }

    /// The wait before retry `attempt` (1-based) of something this client does not retry
    /// itself (such as `_bulk` items refused with 429): exponential from
    /// [`EsSettings::retry_base`] with full jitter, at most [`MAX_BACKOFF`].
    pub fn retry_backoff(&self, attempt: u32) -> Duration {
        backoff(self.retry_base, attempt)
    }

    /// The node's base URL (never with credentials).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `GET _cluster/health`.
    pub async fn health(&self) -> Result<ClusterHealth, EsError> {
        let operation = "GET _cluster/health";
        let body = self
            .call_ok(operation, Method::Get, "/_cluster/health", &[], None)
            .await?;
        serde_json::from_value(body).map_err(|err| EsError::Response {
            operation: operation.into(),
            reason: format!("cluster health is not the expected JSON: {err}"),
        })
    }

    /// `PUT _index_template/<name>` with `body`.
    pub async fn put_index_template(&self, name: &str, body: &Value) -> Result<(), EsError> {
        check_name("index template name", name)?;
        let operation = format!("PUT _index_template/{name}");
        let path = format!("/_index_template/{name}");
        let answer = self
            .call_ok(&operation, Method::Put, &path, &[], Some(body.to_string()))
            .await?;
        expect_acknowledged(&operation, &answer)
    }

    /// `GET _index_template/<name>`: the template body, or `None` if there is no such template.
    pub async fn get_index_template(&self, name: &str) -> Result<Option<Value>, EsError> {
        check_name("index template name", name)?;
        let operation = format!("GET _index_template/{name}");
        let path = format!("/_index_template/{name}");
        let reply = self.call(&operation, Method::Get, &path, &[], None).await?;
        if reply.status == 404 {
            return Ok(None);
        }
        let answer = judge(&operation, reply)?;
        let found = answer["index_templates"]
            .as_array()
            .and_then(|list| list.iter().find(|entry| entry["name"] == name))
            .map(|entry| entry["index_template"].clone());
        Ok(found)
    }

    /// Installs seqwatch's index templates (see [`templates`]): the alerts and state templates,
    /// and with `with_source_templates` the test-cluster templates for the source indices.
    /// Each field type the cluster lacks is mapped as its fallback ([`field_types`]). Returns
    /// what was installed, in order. A template already there is replaced (the templates carry
    /// a `version`; docs/upgrading.md).
    pub async fn setup(
        &self,
        with_source_templates: bool,
    ) -> Result<Vec<InstalledTemplate>, EsError> {
        let mut known: BTreeMap<&'static str, bool> = BTreeMap::new();
        let mut installed = Vec::new();
        for template in templates::for_setup(with_source_templates) {
            let mut body = template.body()?;
            let candidates: Vec<&'static str> = field_types::types_with_fallbacks(&body)
                .into_iter()
                .filter(|ty| !known.contains_key(ty))
                .collect();
            let unsupported_now = self.unsupported_field_types(&candidates).await?;
            for ty in candidates {
                known.insert(ty, !unsupported_now.contains(ty));
            }
            let unsupported: BTreeSet<String> = known
                .iter()
                .filter(|(_, supported)| !**supported)
                .map(|(ty, _)| (*ty).to_owned())
                .collect();
            let type_fallbacks = field_types::apply_type_fallbacks(&mut body, &unsupported);
            self.put_index_template(template.name, &body).await?;
            installed.push(InstalledTemplate {
                name: template.name,
                type_fallbacks,
            });
        }
        Ok(installed)
    }

    /// Which of `types` this cluster cannot map. Each is tried alone in a template that
    /// `POST _index_template/_simulate` composes without installing anything; a cluster
    /// without the type refuses it naming the type ("The mapper type [t] declared on field
    /// [...] does not exist", "No handler for type [t]" before 8.x). Any other refusal is an
    /// error: a type is never given up for a reason that is not its absence.
    pub async fn unsupported_field_types(
        &self,
        types: &[&str],
    ) -> Result<BTreeSet<String>, EsError> {
        let mut unsupported = BTreeSet::new();
        for ty in types {
            let Some(fallback) = field_types::fallback_of(ty) else {
                return Err(EsError::InvalidArgument {
                    what: format!("field type `{ty}`"),
                    reason: "has no fallback to probe for".into(),
                });
            };
            let operation = format!("POST _index_template/_simulate (is `{ty}` mapped here?)");
            let body = json!({
                "index_patterns": [FIELD_TYPE_PROBE_PATTERN],
                // Unlike any template a cluster has, so no overlap of equal priority is refused.
                "priority": FIELD_TYPE_PROBE_PRIORITY,
                "template": {"mappings": {"properties": {"probe": fallback.probe_mapping()}}},
            });
            let reply = self
                .call(
                    &operation,
                    Method::Post,
                    "/_index_template/_simulate",
                    &[],
                    Some(body.to_string()),
                )
                .await?;
            match reply.status {
                200..=299 => {}
                400 if names_unknown_type(&reply.body, ty) => {
                    unsupported.insert((*ty).to_owned());
                }
                _ => return Err(status_error(&operation, reply)),
            }
        }
        Ok(unsupported)
    }

    /// Sends `ops` as one `_bulk` request of `create` operations and returns one item per
    /// operation, in order. `Ok` means Elasticsearch answered the request; whether each document
    /// was written is in its [`BulkOutcome`]. An empty `ops` sends nothing.
    pub async fn bulk_create(&self, ops: &[BulkCreate]) -> Result<Vec<BulkItem>, EsError> {
        self.bulk_create_with(ops, false, false).await
    }

    /// [`EsClient::bulk_create`] with `refresh=wait_for` (the next search sees the documents)
    /// and `require_alias` (a missing alias fails the item instead of creating an index).
    pub async fn bulk_create_with(
        &self,
        ops: &[BulkCreate],
        refresh_wait_for: bool,
        require_alias: bool,
    ) -> Result<Vec<BulkItem>, EsError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let body = bulk::encode(ops)?;
        let operation = format!("POST _bulk ({} create operations)", ops.len());
        let mut query = vec![("filter_path", bulk::FILTER_PATH)];
        if refresh_wait_for {
            query.push(("refresh", "wait_for"));
        }
        if require_alias {
            query.push(("require_alias", "true"));
        }
        let reply = self
            .call(&operation, Method::Post, "/_bulk", &query, Some(body))
            .await?;
        if !(200..300).contains(&reply.status) {
            return Err(status_error(&operation, reply));
        }
        bulk::decode(&operation, ops, &reply.body)
    }

    /// `POST _bulk` of `delete`s: removes the documents `(concrete index, id)`; a document
    /// already gone counts as removed.
    pub async fn delete_docs(&self, docs: &[(String, String)]) -> Result<(), EsError> {
        if docs.is_empty() {
            return Ok(());
        }
        for (index, _) in docs {
            check_name("index", index)?;
        }
        let operation = format!("POST _bulk ({} delete operations)", docs.len());
        let query = [("filter_path", bulk::FILTER_PATH)];
        let reply = self
            .call(
                &operation,
                Method::Post,
                "/_bulk",
                &query,
                Some(bulk::encode_deletes(docs)),
            )
            .await?;
        if !(200..300).contains(&reply.status) {
            return Err(status_error(&operation, reply));
        }
        bulk::decode_deletes(&operation, &reply.body)
    }

    /// `POST <index>/_refresh`: makes everything written so far searchable.
    pub async fn refresh(&self, index: &str) -> Result<(), EsError> {
        check_name("index", index)?;
        let operation = format!("POST {index}/_refresh");
        let path = format!("/{index}/_refresh");
        let answer = self
            .call_ok(&operation, Method::Post, &path, &[], None)
            .await?;
        match answer["_shards"]["failed"].as_u64() {
            Some(0) | None => Ok(()),
            Some(failed) => Err(EsError::Response {
                operation,
                reason: format!("{failed} shards failed to refresh"),
            }),
        }
    }

    /// `POST <index>/_count` with `{"query": query}`: how many documents match.
    pub async fn count(&self, index: &str, query: &Value) -> Result<u64, EsError> {
        check_name("index", index)?;
        let operation = format!("POST {index}/_count");
        let path = format!("/{index}/_count");
        let body = json!({ "query": query }).to_string();
        let answer = self
            .call_ok(&operation, Method::Post, &path, &[], Some(body))
            .await?;
        answer["count"].as_u64().ok_or_else(|| EsError::Response {
            operation,
            reason: "no `count` in the answer".into(),
        })
    }

    /// `GET <index>/_mapping`: the `mappings` of every index that `index` names, by index name.
    pub async fn get_mapping(&self, index: &str) -> Result<BTreeMap<String, Value>, EsError> {
        check_name("index", index)?;
        let operation = format!("GET {index}/_mapping");
        let path = format!("/{index}/_mapping");
        let answer = self
            .call_ok(&operation, Method::Get, &path, &[], None)
            .await?;
        let Value::Object(by_index) = answer else {
            return Err(EsError::Response {
                operation,
                reason: "the answer is not a JSON object".into(),
            });
        };
        Ok(by_index
            .into_iter()
            .map(|(name, mut entry)| (name, entry["mappings"].take()))
            .collect())
    }

    /// `POST <index>/_pit?keep_alive=<keep_alive>`: opens a point in time and returns its id.
    /// Missing indices are ignored, as the detection engine does.
    pub async fn open_point_in_time(
        &self,
        index: &str,
        keep_alive: &str,
    ) -> Result<String, EsError> {
        check_name("index", index)?;
        let operation = format!("POST {index}/_pit");
        let path = format!("/{index}/_pit");
        let query = [("keep_alive", keep_alive), ("ignore_unavailable", "true")];
        let answer = self
            .call_ok(&operation, Method::Post, &path, &query, None)
            .await?;
        answer["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| EsError::Response {
                operation,
                reason: "no point-in-time `id` in the answer".into(),
            })
    }

    /// `POST _search` with `body`, which names its indices through a `pit` (a search that
    /// carries a point in time must not name indices in the path). Returns the raw answer; the
    /// caller keeps the newest `pit_id` from it.
    pub async fn search_point_in_time(&self, body: &Value) -> Result<Value, EsError> {
        let operation = "POST _search (point in time)";
        if body["pit"]["id"].as_str().is_none() {
            return Err(EsError::InvalidArgument {
                what: "point-in-time search body".into(),
                reason: "has no `pit.id`".into(),
            });
        }
        self.call_ok(
            operation,
            Method::Post,
            "/_search",
            &[],
            Some(body.to_string()),
        )
        .await
    }

    /// `DELETE _pit`: closes a point in time. Returns whether Elasticsearch closed it (false
    /// when it had already expired).
    pub async fn close_point_in_time(&self, id: &str) -> Result<bool, EsError> {
        let operation = "DELETE _pit";
        let body = json!({ "id": id }).to_string();
        let reply = self
            .call(operation, Method::Delete, "/_pit", &[], Some(body))
            .await?;
        // 404 with `succeeded: true, num_freed: 0` is how an expired context is reported.
        let answer = if reply.status == 404 {
            parse_json(operation, &reply.body)?
        } else {
            judge(operation, reply)?
        };
        Ok(answer["num_freed"].as_u64().unwrap_or(0) > 0)
    }

    /// `DELETE <pattern>`, hidden indices included and missing ones ignored. For tests and
    /// tooling; the node must allow wildcard deletes (`action.destructive_requires_name: false`)
    /// when `pattern` has wildcards.
    pub async fn delete_indices(&self, pattern: &str) -> Result<(), EsError> {
        check_name("index pattern", pattern)?;
        let operation = format!("DELETE {pattern}");
        let path = format!("/{pattern}");
        let query = [("expand_wildcards", "all"), ("ignore_unavailable", "true")];
        self.call_ok(&operation, Method::Delete, &path, &query, None)
            .await
            .map(drop)
    }

    /// `GET _resolve/index/<pattern>`: the data streams that `pattern` (names or wildcards,
    /// comma-separated) names, each with its backing indices, hidden ones included and missing
    /// names ignored. For tests and tooling: the integ-test distribution has no `_data_stream`
    /// API, and `_resolve/index` (in server) answers on every version.
    pub async fn data_streams(&self, pattern: &str) -> Result<Vec<DataStream>, EsError> {
        check_name("index pattern", pattern)?;
        let operation = format!("GET _resolve/index/{pattern}");
        let path = format!("/_resolve/index/{pattern}");
        let query = [("expand_wildcards", "all"), ("ignore_unavailable", "true")];
        let answer = self
            .call_ok(&operation, Method::Get, &path, &query, None)
            .await?;
        #[derive(Deserialize)]
        struct Resolved {
            #[serde(default)]
            data_streams: Vec<DataStream>,
        }
        serde_json::from_value::<Resolved>(answer)
            .map(|resolved| resolved.data_streams)
            .map_err(|err| EsError::Response {
                operation,
                reason: format!("the answer is not the expected JSON: {err}"),
            })
    }

    /// `POST <stream>/_rollover`: the data stream (or alias) `stream` gets a new write index
    /// now, whatever its rollover conditions. For tests and tooling.
    pub async fn rollover(&self, stream: &str) -> Result<Rollover, EsError> {
        check_name("data stream", stream)?;
        let operation = format!("POST {stream}/_rollover");
        let path = format!("/{stream}/_rollover");
        let answer = self
            .call_ok(&operation, Method::Post, &path, &[], None)
            .await?;
        match serde_json::from_value::<Rollover>(answer) {
            Ok(rollover) if rollover.rolled_over => Ok(rollover),
            Ok(_) => Err(EsError::Response {
                operation,
                reason: "the answer says it did not roll over".into(),
            }),
            Err(err) => Err(EsError::Response {
                operation,
                reason: format!("the answer is not the expected JSON: {err}"),
            }),
        }
    }

    /// Sends one request and reads the whole answer as text, whatever its status. Transient
    /// failures are retried (see [`EsSettings::max_retries`]); what is still failing after the
    /// last attempt is returned as it came.
    async fn call(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Reply, EsError> {
        let mut attempt = 0;
        loop {
            let (result, retry_after) = self
                .call_once(operation, method, path, query, body.clone())
                .await;
            let transient = match &result {
                Ok(reply) => matches!(reply.status, 429 | 502 | 503 | 504),
                Err(err) => err.is_unreachable(),
            };
            if !transient || attempt >= self.max_retries {
                return result;
            }
            attempt += 1;
            let wait = retry_after
                .unwrap_or_else(|| backoff(self.retry_base, attempt))
                .min(MAX_BACKOFF);
            tracing::warn!(operation, attempt, wait_ms = wait.as_millis() as u64,
                outcome = %match &result { Ok(r) => format!("HTTP {}", r.status), Err(e) => e.to_string() },
                "transient failure; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt, and the `Retry-After` the answer asked for.
    async fn call_once(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<String>,
    ) -> (Result<Reply, EsError>, Option<Duration>) {
        let query = (!query.is_empty()).then_some(query);
        let response = match self
            .client
            .send(method, path, HeaderMap::new(), query, body, None)
            .await
        {
            Ok(r) => r,
            Err(err) => return (Err(self.transport_error(operation, &err)), None),
        };
        let status = response.status_code().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        match response.text().await {
            Ok(body) => (Ok(Reply { status, body }), retry_after),
            Err(err) => (Err(self.transport_error(operation, &err)), retry_after),
        }
    }

    /// [`EsClient::call`], then a non-2xx status becomes an error and the body is parsed as JSON.
    async fn call_ok(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Value, EsError> {
        let reply = self.call(operation, method, path, query, body).await?;
        judge(operation, reply)
    }

    fn transport_error(&self, operation: &str, err: &elasticsearch::Error) -> EsError {
        if err.is_timeout() {
            return EsError::Timeout {
                operation: operation.into(),
                url: self.url.clone(),
                timeout: self.timeout,
            };
        }
        let reason = error_chain(err);
        if let Some(at) = CERTIFICATE_FAILURES
            .iter()
            .find_map(|marker| reason.find(marker))
        {
            return EsError::Certificate {
                operation: operation.into(),
                url: self.url.clone(),
                reason: reason[at..].to_owned(),
            };
        }
        // A node that serves HTTPS closes a plain-HTTP connection without an answer.
        let hint = if self.url.starts_with("http://")
            && PLAINTEXT_TO_TLS
                .iter()
                .any(|marker| reason.contains(marker))
        {
            " (if the cluster serves HTTPS, the URL must start with https://)"
        } else {
            ""
        };
        EsError::Transport {
            operation: operation.into(),
            url: self.url.clone(),
            reason: format!("{reason}{hint}"),
        }
    }

    /// Asks the node (`POST _security/user/_has_privileges`) whether the authenticated user
    /// holds `cluster` privileges and, per entry of `indices`, the privileges on those index
    /// names or patterns. Returns what is missing, as "`read` on `logs-*`" or "cluster
    /// `monitor`", with the user's name; `None` only when the node gives Elasticsearch's own
    /// answer of a node with security off (nothing is refused there). Any other refusal or
    /// failure, a 401, 403, 404 or 5xx, or a 400 for another reason, is an error.
    pub async fn missing_privileges(
        &self,
        cluster: &[&str],
        indices: &[(Vec<String>, Vec<&str>)],
    ) -> Result<Option<MissingPrivileges>, EsError> {
        let operation = "POST _security/user/_has_privileges";
        let body = json!({
            "cluster": cluster,
            "index": indices
                .iter()
                .map(|(names, privileges)| json!({"names": names, "privileges": privileges}))
                .collect::<Vec<_>>(),
        });
        let reply = self
            .call(
                operation,
                Method::Post,
                HAS_PRIVILEGES_PATH,
                &[],
                Some(body.to_string()),
            )
            .await?;
        if is_security_off_answer(&reply) {
            return Ok(None);
        }
        let answer = judge(operation, reply)?;
        let mut missing = Vec::new();
        for privilege in cluster {
            if answer["cluster"][*privilege] != Value::Bool(true) {
                missing.push(format!("cluster `{privilege}`"));
            }
        }
        for (names, privileges) in indices {
            for name in names {
                for privilege in privileges {
                    if answer["index"][name.as_str()][*privilege] != Value::Bool(true) {
                        missing.push(index_privilege_item(privilege, name));
                    }
                }
            }
        }
        Ok(Some(MissingPrivileges {
            username: answer["username"].as_str().unwrap_or("?").to_owned(),
            missing,
        }))
    }
}

/// How [`EsClient::missing_privileges`] names a missing index privilege: "`read` on `name`".
pub fn index_privilege_item(privilege: &str, name: &str) -> String {
    format!("`{privilege}` on `{name}`")
}

/// A data stream as `_resolve/index` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DataStream {
    /// The stream's name, e.g. `logs-endpoint.events.process-default`.
    pub name: String,
    /// Its backing indices, oldest first; the last is the write index.
    pub backing_indices: Vec<String>,
}

/// What [`EsClient::rollover`] did.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Rollover {
    /// The write index before.
    pub old_index: String,
    /// The new write index.
    pub new_index: String,
    /// Whether a new write index was made.
    pub rolled_over: bool,
}

/// What [`EsClient::missing_privileges`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPrivileges {
    /// The authenticated user (an API key reports its owner).
    pub username: String,
    /// Each privilege the user lacks, e.g. "`read` on `logs-*`"; empty when it has them all.
    pub missing: Vec<String>,
}

/// The path of the privileges check.
const HAS_PRIVILEGES_PATH: &str = "/_security/user/_has_privileges";

/// Whether `reply` is Elasticsearch's own answer to `POST _security/user/_has_privileges` on a
/// node with `xpack.security.enabled: false`, the one answer that means "nothing is refused".
///
/// With security off the security plugin registers no REST handler at all
/// (`Security.getRestHandlers` returns an empty list when `enabled == false`, in
/// `x-pack/plugin/security/src/main/java/org/elasticsearch/xpack/security/Security.java`), so
/// the request reaches no handler and `RestController.tryAllHandlers` falls back to
/// `handleBadRequest` (`server/src/main/java/org/elasticsearch/rest/RestController.java`):
/// HTTP 400 with the body `{"error":"no handler found for uri [URI] and method [POST]"}`, a
/// plain string, with no `type` and no `status`. 9.0.0, 9.5.0 and 8.19.21 answer exactly that.
/// The URI is the request's, with its query string; this request has none.
///
/// Nothing else counts. Not a 404: `RestController` never answers 404 for a missing handler,
/// so one comes from something in front of the node. Not a 405: that needs a handler on the
/// path for another method, and there is none. Not the `illegal_state_exception` "Security is
/// not enabled but a security rest handler is registered" of `SecurityBaseRestHandler`: it
/// can only come from a handler that was registered, which a security-off node does not do.
/// A structured error (`{"error": {"type", "reason"}}`) is always a real refusal or a failure
/// (a malformed request, a 401, a 403), and a run must fail on it rather than go on unchecked.
fn is_security_off_answer(reply: &Reply) -> bool {
    if reply.status != 400 {
        return false;
    }
    let Ok(Value::Object(answer)) = serde_json::from_str::<Value>(&reply.body) else {
        return false;
    };
    let expected = format!("no handler found for uri [{HAS_PRIVILEGES_PATH}] and method [POST]");
    answer.len() == 1 && answer.get("error").and_then(Value::as_str) == Some(expected.as_str())
}

/// Texts by which the TLS stack says that the peer's certificate did not verify (rustls, then
/// native TLS stacks).
const CERTIFICATE_FAILURES: &[&str] = &[
    "invalid peer certificate",
    "certificate verify failed",
    "InvalidCertificate",
];

/// Texts by which hyper reports a connection closed before any answer.
const PLAINTEXT_TO_TLS: &[&str] = &[
    "connection closed before message completed",
    "Connection reset by peer",
    "unexpected end of file",
];

/// Exponential backoff with full jitter: a random wait in `[0, base · 2^(attempt-1)]`.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    // Full jitter spreads replicas that failed together apart.
    ceiling.mul_f64(rand::random_range(0.0..=1.0))
}

/// What [`encode_path_segment`] leaves as it is: RFC 3986's unreserved characters.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// One segment of a URL path, such as a document id in `/{index}/_doc/{id}`, percent-encoded:
/// letters, digits and `-_.~` stay, every other byte (of the UTF-8) becomes `%XX`.
pub fn encode_path_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, PATH_SEGMENT).to_string()
}

/// Parses and checks the configured URL. Credentials in it are refused: they would end up in
/// error messages and logs.
fn parse_url(raw: &str) -> Result<Url, EsError> {
    let invalid = |reason: &str| EsError::InvalidUrl {
        url: redact_url(raw),
        reason: reason.into(),
    };
    let url = Url::parse(raw.trim()).map_err(|err| invalid(&err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials do not belong in the URL; configure them as basic auth or an API key",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment"));
    }
    Ok(url)
}

/// `raw` with anything between `://` and `@` replaced, so a URL with a password can be shown.
fn redact_url(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://") else {
        return if raw.contains('@') {
            "***".into()
        } else {
            raw.into()
        };
    };
    let rest = &raw[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &raw[..scheme_end + 3], &rest[at..]),
        None => raw.into(),
    }
}

fn credentials(auth: &EsAuth) -> Result<Credentials, EsError> {
    let invalid = |reason: &str| EsError::InvalidCredentials {
        reason: reason.into(),
    };
    match auth {
        EsAuth::Basic { username, password } => {
            if username.is_empty() || username.contains(':') {
                return Err(invalid(
                    "the basic-auth user name must be non-empty and contain no ':'",
                ));
            }
            Ok(Credentials::Basic(
                username.clone(),
                password.expose_secret().to_owned(),
            ))
        }
        EsAuth::ApiKey { id, key } => {
            if id.is_empty() || key.expose_secret().is_empty() {
                return Err(invalid("the API key id and secret must be non-empty"));
            }
            Ok(Credentials::ApiKey(
                id.clone(),
                key.expose_secret().to_owned(),
            ))
        }
        EsAuth::EncodedApiKey(encoded) => {
            // The crate puts this into a header with `unwrap()`: anything but base64 (say, a
            // trailing newline from a key file) would panic there.
            let encoded = encoded.expose_secret().trim();
            let is_base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
            if encoded.is_empty() || !encoded.chars().all(is_base64) {
                return Err(invalid("the encoded API key must be non-empty base64"));
            }
            Ok(Credentials::EncodedApiKey(encoded.to_owned()))
        }
    }
}

/// Refuses names that would change the request path (or that Elasticsearch refuses anyway).
fn check_name(what: &str, name: &str) -> Result<(), EsError> {
    let bad = name.is_empty()
        || name.chars().any(|c| {
            matches!(c, '/' | '\\' | '?' | '#' | '"' | ' ' | '<' | '>' | '|') || c.is_control()
        });
    if bad {
        return Err(EsError::InvalidArgument {
            what: format!("{what} `{name}`"),
            reason: "must be non-empty without /, \\, ?, #, \", space, <, > or |".into(),
        });
    }
    Ok(())
}

/// A 2xx answer parsed as JSON, or the error that the status means.
fn judge(operation: &str, reply: Reply) -> Result<Value, EsError> {
    if !(200..300).contains(&reply.status) {
        return Err(status_error(operation, reply));
    }
    parse_json(operation, &reply.body)
}

fn parse_json(operation: &str, body: &str) -> Result<Value, EsError> {
    serde_json::from_str(body).map_err(|err| EsError::Response {
        operation: operation.into(),
        reason: format!("the answer is not JSON ({err}): {}", truncate(body)),
    })
}

fn expect_acknowledged(operation: &str, answer: &Value) -> Result<(), EsError> {
    if answer["acknowledged"] == Value::Bool(true) {
        Ok(())
    } else {
        Err(EsError::Response {
            operation: operation.into(),
            reason: format!("not acknowledged: {}", truncate(&answer.to_string())),
        })
    }
}

/// Reads Elasticsearch's error body (`{"error": {"type", "reason"}, "status"}`, or a plain
/// string `error`, or no JSON at all) into [`EsError::Status`].
fn status_error(operation: &str, reply: Reply) -> EsError {
    let parsed: Option<Value> = serde_json::from_str(&reply.body).ok();
    let error = parsed.as_ref().map(|v| &v["error"]);
    let (error_type, reason) = match error {
        Some(Value::Object(map)) => (
            map.get("type").and_then(Value::as_str).map(str::to_owned),
            map.get("reason")
                .and_then(Value::as_str)
                .map(truncate)
                .unwrap_or_else(|| truncate(&reply.body)),
        ),
        Some(Value::String(text)) => (None, truncate(text)),
        _ if reply.body.trim().is_empty() => (None, "(empty body)".to_owned()),
        _ => (None, truncate(&reply.body)),
    };
    // An umbrella type ("search_phase_execution_exception: all shards failed") hides the cause;
    // the first root cause names it.
    let reason = match root_cause(&reply.body) {
        Some(cause) if !reason.contains(&cause) => format!("{reason} (root cause: {cause})"),
        _ => reason,
    };
    EsError::Status {
        operation: operation.into(),
        status: reply.status,
        error_type,
        reason,
    }
}

/// `type: reason` of the first `error.root_cause` of an Elasticsearch error body, when it
/// differs from the top-level error.
fn root_cause(body: &str) -> Option<String> {
    let parsed: Value = serde_json::from_str(body).ok()?;
    let first = parsed["error"]["root_cause"].as_array()?.first()?;
    let cause_type = first["type"].as_str()?;
    if parsed["error"]["type"].as_str() == Some(cause_type) {
        return None;
    }
    let cause_reason = first["reason"].as_str().unwrap_or("");
    Some(truncate(&format!("{cause_type}: {cause_reason}")))
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|seen| seen.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}
