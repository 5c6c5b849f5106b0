//! What a run needs of a cluster, and nothing more: the [`Cluster`] trait. [`EsClient`]
//! implements it over HTTP; the run pipeline's tests implement it in memory, with faults on
//! demand, so the job's invariants are checked in milliseconds without a node.
//!
//! The trait speaks in Elasticsearch's own shapes (a search answer is its JSON text, a bulk
//! item its outcome), so the code that reads answers is the same whichever cluster answered.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::es::{
    index_privilege_item, BulkCreate, BulkItem, EsClient, EsError, FetchedSource, FieldCapsAnswer,
    IdLookup, MissingPrivileges, PitPager, SearchPage, VersionedDoc, WriteOutcome,
};
use crate::event::FieldPlan;

/// How a bulk write is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkOptions {
    /// Wait until the next search sees the documents (`refresh=wait_for`).
    pub refresh_wait_for: bool,
    /// Fail an item whose target is not an alias instead of creating an index.
    pub require_alias: bool,
}

/// The privileges a run asks about: cluster privileges, and per entry the index privileges on
/// those names or patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivilegeRequest {
    /// Cluster privileges (`monitor`).
    pub cluster: Vec<&'static str>,
    /// Index names or patterns, and the privileges wanted on them.
    pub indices: Vec<(Vec<String>, Vec<&'static str>)>,
    /// Index privileges whose absence only turns off what they serve (alert enrichment): asked
    /// in the same request, never a reason to stop a run.
    pub optional_indices: Vec<(Vec<String>, Vec<&'static str>)>,
}

impl PrivilegeRequest {
    /// The optional privileges as the missing ones are reported ("`read` on `name`").
    pub fn optional_items(&self) -> Vec<String> {
        self.optional_indices
            .iter()
            .flat_map(|(names, privileges)| {
                names.iter().flat_map(move |name| {
                    privileges
                        .iter()
                        .map(move |privilege| index_privilege_item(privilege, name))
                })
            })
            .collect()
    }
}

/// The cluster operations of a detection run.
#[async_trait]
pub trait Cluster: Send + Sync + std::fmt::Debug {
    /// Whether the cluster answers at all (`/readyz`).
    async fn reachable(&self) -> Result<(), EsError>;

    /// What the credential lacks of `request`; `None` when the cluster has no security to ask.
    async fn missing_privileges(
        &self,
        request: &PrivilegeRequest,
    ) -> Result<Option<MissingPrivileges>, EsError>;

    /// `_field_caps` of `fields` over `indices` (missing indices ignored).
    async fn field_caps(
        &self,
        indices: &[String],
        fields: &[String],
    ) -> Result<FieldCapsAnswer, EsError>;

    /// Opens a point in time over `indices` (missing ones ignored); its id.
    async fn open_point_in_time(
        &self,
        indices: &[String],
        keep_alive: &str,
    ) -> Result<String, EsError>;

    /// One search in a point in time (`body` names it): the 2xx answer's text.
    async fn search_point_in_time(&self, body: &Value) -> Result<String, EsError>;

    /// Closes a point in time.
    async fn close_point_in_time(&self, pit_id: &str) -> Result<(), EsError>;

    /// Which of `ids` exist in `target`, read in real time where the target allows it.
    async fn existing_ids(
        &self,
        target: &str,
        ids: &[String],
    ) -> Result<(HashSet<String>, IdLookup), EsError>;

    /// Full `_source`s by (`_index`, `_id`), in the order asked.
    async fn mget(&self, docs: &[(String, String)]) -> Result<Vec<FetchedSource>, EsError>;

    /// A search of one of Kibana's entity analytics indices (`body` from
    /// [`crate::entity_enrichment::EntitySearch::body`]): each hit's `fields`, or `None` when
    /// the index does not exist.
    async fn search_entities(
        &self,
        index: &str,
        body: &Value,
    ) -> Result<Option<Vec<Map<String, Value>>>, EsError>;

    /// `create` operations in one bulk request; one item per operation, in order.
    async fn bulk_create(
        &self,
        ops: &[BulkCreate],
        options: BulkOptions,
    ) -> Result<Vec<BulkItem>, EsError>;

    /// Deletes documents `(concrete index, id)`; one already gone counts as deleted.
    async fn delete_docs(&self, docs: &[(String, String)]) -> Result<(), EsError>;

    /// A state document with the guard its next write must hold; `None` when missing.
    async fn get_state(&self, index: &str, id: &str) -> Result<Option<VersionedDoc>, EsError>;

    /// Writes a state document if it is still the version `guard` read, or, without a guard,
    /// if it does not exist yet.
    async fn put_state(
        &self,
        index: &str,
        id: &str,
        doc: &Value,
        guard: Option<(u64, u64)>,
    ) -> Result<WriteOutcome, EsError>;

    /// Writes a document unconditionally (run documents: one per run id).
    async fn put_doc(&self, index: &str, id: &str, doc: &Value) -> Result<(), EsError>;

    /// The wait before retry `attempt` (1-based) of bulk items this cluster refused as
    /// overloaded.
    fn retry_backoff(&self, attempt: u32) -> Duration;
}

/// The next page of `pager` from `cluster`, decoded for `plan` as it is read; `None` after
/// the last.
pub async fn next_page(
    cluster: &dyn Cluster,
    pager: &mut PitPager,
    plan: Option<&FieldPlan>,
) -> Result<Option<SearchPage>, EsError> {
    let Some(body) = pager.next_request() else {
        return Ok(None);
    };
    let text = cluster.search_point_in_time(&body).await?;
    pager.read_answer(text, plan)
}

#[async_trait]
impl Cluster for EsClient {
    async fn reachable(&self) -> Result<(), EsError> {
        self.health().await.map(drop)
    }

    async fn missing_privileges(
        &self,
        request: &PrivilegeRequest,
    ) -> Result<Option<MissingPrivileges>, EsError> {
        let indices: Vec<(Vec<String>, Vec<&str>)> = request
            .indices
            .iter()
            .chain(&request.optional_indices)
            .map(|(names, privileges)| (names.clone(), privileges.clone()))
            .collect();
        EsClient::missing_privileges(self, &request.cluster, &indices).await
    }

    async fn field_caps(
        &self,
        indices: &[String],
        fields: &[String],
    ) -> Result<FieldCapsAnswer, EsError> {
        self.field_caps_detail(indices, fields).await
    }

    async fn open_point_in_time(
        &self,
        indices: &[String],
        keep_alive: &str,
    ) -> Result<String, EsError> {
        EsClient::open_point_in_time(self, &indices.join(","), keep_alive).await
    }

    async fn search_point_in_time(&self, body: &Value) -> Result<String, EsError> {
        self.search_point_in_time_text(body).await
    }

    async fn close_point_in_time(&self, pit_id: &str) -> Result<(), EsError> {
        EsClient::close_point_in_time(self, pit_id).await.map(drop)
    }

    async fn existing_ids(
        &self,
        target: &str,
        ids: &[String],
    ) -> Result<(HashSet<String>, IdLookup), EsError> {
        self.existing_ids_realtime(target, ids).await
    }

    async fn mget(&self, docs: &[(String, String)]) -> Result<Vec<FetchedSource>, EsError> {
        EsClient::mget(self, docs).await
    }

    async fn search_entities(
        &self,
        index: &str,
        body: &Value,
    ) -> Result<Option<Vec<Map<String, Value>>>, EsError> {
        self.search_fields(index, body).await
    }

    async fn bulk_create(
        &self,
        ops: &[BulkCreate],
        options: BulkOptions,
    ) -> Result<Vec<BulkItem>, EsError> {
        self.bulk_create_with(ops, options.refresh_wait_for, options.require_alias)
            .await
    }

    async fn delete_docs(&self, docs: &[(String, String)]) -> Result<(), EsError> {
        EsClient::delete_docs(self, docs).await
    }

    async fn get_state(&self, index: &str, id: &str) -> Result<Option<VersionedDoc>, EsError> {
        self.get_versioned(index, id).await
    }

    async fn put_state(
        &self,
        index: &str,
        id: &str,
        doc: &Value,
        guard: Option<(u64, u64)>,
    ) -> Result<WriteOutcome, EsError> {
        self.put_guarded(index, id, doc, guard).await
    }

    async fn put_doc(&self, index: &str, id: &str, doc: &Value) -> Result<(), EsError> {
        EsClient::put_doc(self, index, id, doc).await
    }

    fn retry_backoff(&self, attempt: u32) -> Duration {
        EsClient::retry_backoff(self, attempt)
    }
}
