//! The error type of everything that talks to Elasticsearch. Messages name the operation and the
//! node's URL but never carry credentials: URLs with user info are refused at connect time, and
//! no variant holds a password, an API key or an `Authorization` header.

use std::time::Duration;

/// What can go wrong when talking to Elasticsearch.
#[derive(Debug, thiserror::Error)]
pub enum EsError {
    /// The configured URL cannot be used (shown with any user info removed).
    #[error("invalid Elasticsearch URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as configured, user info replaced by `***`.
        url: String,
        /// Why it was refused.
        reason: String,
    },

    /// The configured credentials cannot be used; the message never repeats them.
    #[error("invalid Elasticsearch credentials: {reason}")]
    InvalidCredentials {
        /// Why they were refused.
        reason: String,
    },

    /// A caller passed something Elasticsearch would refuse (an index name, a document id, ...).
    #[error("{what} is invalid: {reason}")]
    InvalidArgument {
        /// Which argument, e.g. "bulk operation 3: document id".
        what: String,
        /// Why.
        reason: String,
    },

    /// The HTTP client could not be built.
    #[error("could not build the Elasticsearch client: {reason}")]
    Client {
        /// The client library's message.
        reason: String,
    },

    /// No complete answer arrived within the request timeout.
    #[error("{operation}: no answer from Elasticsearch at {url} within {timeout:?}")]
    Timeout {
        /// The request, e.g. `GET _cluster/health`.
        operation: String,
        /// The node's URL.
        url: String,
        /// The configured request timeout.
        timeout: Duration,
    },

    /// The request did not get an HTTP answer (refused connection, DNS, TLS, reset, ...).
    #[error("{operation}: could not reach Elasticsearch at {url}: {reason}")]
    Transport {
        /// The request.
        operation: String,
        /// The node's URL.
        url: String,
        /// The error chain of the HTTP client.
        reason: String,
    },

    /// The TLS handshake failed because the node's certificate did not verify against the
    /// trusted roots (the bundled ones plus `elasticsearch.ca_file`) or does not name the host.
    /// Not retried: waiting does not make a certificate valid.
    #[error("{operation}: TLS certificate verification failed for Elasticsearch at {url}: {reason} (pin the CA that signed the cluster's HTTP certificate with elasticsearch.ca_file; verification cannot be turned off)")]
    Certificate {
        /// The request.
        operation: String,
        /// The node's URL.
        url: String,
        /// The TLS library's reason, e.g. `invalid peer certificate: UnknownIssuer`.
        reason: String,
    },

    /// Elasticsearch answered with a status other than 2xx.
    #[error("{operation}: Elasticsearch answered HTTP {status}{}: {reason}",
        .error_type.as_deref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Status {
        /// The request.
        operation: String,
        /// The HTTP status code.
        status: u16,
        /// `error.type` of Elasticsearch's error body, when it has one.
        error_type: Option<String>,
        /// `error.reason`, or the start of the body when it is not an Elasticsearch error.
        reason: String,
    },

    /// A 2xx answer that is not what the API promises (not JSON, missing fields, wrong counts).
    #[error("{operation}: unexpected answer from Elasticsearch: {reason}")]
    Response {
        /// The request.
        operation: String,
        /// What was wrong with it.
        reason: String,
    },

    /// One of the index templates embedded from `mappings/` is not valid JSON.
    #[error("index template `{name}` (mappings/{file}) is invalid: {reason}")]
    Template {
        /// The template's name.
        name: String,
        /// Its file under `mappings/`.
        file: String,
        /// The JSON parser's message, with line and column.
        reason: String,
    },
}

impl EsError {
    /// True when the node could not be reached or did not answer in time, as opposed to an
    /// answer that says no.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, EsError::Timeout { .. } | EsError::Transport { .. })
    }

    /// The HTTP status, for errors that are answers from Elasticsearch.
    pub fn status(&self) -> Option<u16> {
        match self {
            EsError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Elasticsearch's `error.type`, for errors that are answers from Elasticsearch.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            EsError::Status { error_type, .. } => error_type.as_deref(),
            _ => None,
        }
    }
}
