//! Why a run failed, by stage. The run document keeps the message and [`RunError::kind`], the
//! metrics count failures by kind, and the daemon and `once` decide by variant.

use crate::engine::{CorrelateError, EngineError};
use crate::eql::eval::CompileError;
use crate::es::EsError;

/// A run that failed, and where.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `_has_privileges` could not be asked or did not answer.
    #[error("checking privileges: {0}")]
    PrivilegeCheck(#[source] EsError),
    /// The credential lacks privileges the run needs; nothing was read or written.
    #[error("checking privileges: user {username:?} lacks {} (see docs/least-privilege.md)", missing.join(", "))]
    MissingPrivileges {
        /// The authenticated user.
        username: String,
        /// Each privilege it lacks.
        missing: Vec<String>,
    },
    /// The rule's lease could not be read or written.
    #[error("acquiring the lease: {0}")]
    Lease(#[source] EsError),
    /// The checkpoint could not be read.
    #[error("reading the checkpoint: {0}")]
    Checkpoint(#[source] EsError),
    /// The rule does not compile against the cluster's field types (a rule the loader took
    /// but the typed compile refuses).
    #[error("compiling the rule: {0}")]
    Compile(#[source] EngineError),
    /// The push-down query could not be built.
    #[error("building the query: {0}")]
    Query(#[source] CompileError),
    /// `_field_caps` failed.
    #[error("{0}")]
    FieldCaps(#[source] EsError),
    /// The point in time could not be opened.
    #[error("opening a point in time over {indices}: {source}")]
    OpenPointInTime {
        /// The rule's index patterns, comma-separated.
        indices: String,
        /// Why.
        #[source]
        source: EsError,
    },
    /// A page (of the key scan or the main query) failed: a shard failure, a timeout, a lost
    /// point in time, a refusal.
    #[error("paging: {0}")]
    Paging(#[source] EsError),
    /// The task that fetches pages ended without an answer (it panicked).
    #[error("paging: the page fetcher stopped: {0}")]
    Fetcher(String),
    /// The correlator refused the stream (out-of-order events).
    #[error("correlating: {0}")]
    Correlate(#[source] CorrelateError),
    /// The existing alert ids could not be looked up; deduplication must never go blind.
    #[error("looking up existing alerts: {0}")]
    Dedup(#[source] EsError),
    /// The full events of new sequences could not be fetched.
    #[error("fetching the events of new sequences: {0}")]
    Enrich(#[source] EsError),
    /// An event found by the search was gone when its full document was fetched.
    #[error("event {index}/{id} vanished between search and fetch")]
    EventGone {
        /// Its index.
        index: String,
        /// Its id.
        id: String,
    },
    /// The bulk request failed as a whole.
    #[error("writing alerts: {0}")]
    Write(#[source] EsError),
    /// Elasticsearch refused an alert for good (or after every retry); every other sequence
    /// was written.
    #[error("alert {id} refused: HTTP {status} {error_type}: {reason} ({sequences} sequence(s) not written; all others were)")]
    AlertRefused {
        /// The alert's id.
        id: String,
        /// The item's HTTP status.
        status: u16,
        /// Elasticsearch's error type.
        error_type: String,
        /// Its reason.
        reason: String,
        /// How many sequences of the run could not be written whole.
        sequences: usize,
    },
    /// The run stopped at a safe point because the process is shutting down.
    #[error("cancelled at a safe point: seqwatch is shutting down")]
    Cancelled,
}

impl RunError {
    /// A stable label for the cause: the run document's `error_kind` and the metrics' `error`.
    pub fn kind(&self) -> &'static str {
        match self {
            RunError::PrivilegeCheck(_) => "privilege_check",
            RunError::MissingPrivileges { .. } => "missing_privileges",
            RunError::Lease(_) => "lease",
            RunError::Checkpoint(_) => "checkpoint",
            RunError::Compile(_) => "compile",
            RunError::Query(_) => "query",
            RunError::FieldCaps(_) => "field_caps",
            RunError::OpenPointInTime { .. } => "open_point_in_time",
            RunError::Paging(_) | RunError::Fetcher(_) => "paging",
            RunError::Correlate(_) => "correlate",
            RunError::Dedup(_) => "dedup",
            RunError::Enrich(_) | RunError::EventGone { .. } => "enrich",
            RunError::Write(_) => "write",
            RunError::AlertRefused { .. } => "alert_refused",
            RunError::Cancelled => "cancelled",
        }
    }

    /// True when the cluster could not be reached at all (the daemon reports it as not ready,
    /// not as a broken rule).
    pub fn is_unreachable(&self) -> bool {
        match self {
            RunError::PrivilegeCheck(e)
            | RunError::Lease(e)
            | RunError::Checkpoint(e)
            | RunError::FieldCaps(e)
            | RunError::Paging(e)
            | RunError::Dedup(e)
            | RunError::Enrich(e)
            | RunError::Write(e)
            | RunError::OpenPointInTime { source: e, .. } => e.is_unreachable(),
            _ => false,
        }
    }
}
