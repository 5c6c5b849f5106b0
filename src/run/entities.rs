//! Alert enrichment in the write stage: the asset criticality and entity risk of the hosts,
//! users and services that a batch's alerts name, looked up once for the batch and set on its
//! alerts (`crate::entity_enrichment` decides what), before they are written. Kibana enriches
//! the same way, every alert of each bulk create after deduplication, shells and building
//! blocks alike (`bulk_create_factory.ts`, and `create_persistence_rule_type_wrapper.ts` in
//! x-pack/platform/plugins/shared/rule_registry/server/utils/).
//!
//! Enrichment is optional: an index that does not exist is skipped, as Kibana skips it; an index
//! the credential may not read is skipped with one warning per run; a search that fails leaves
//! the batch's alerts without that index's fields, with a warning and a count. No alert is held
//! back and no run fails for it (Kibana likewise writes the alerts unenriched).

use tracing::warn;

use super::{RunContext, RunLog};
use crate::entity_enrichment::{apply, plan_searches, EnrichmentIndex, EntitySearch, Found};
use crate::es::{index_privilege_item, BulkCreate};

/// What the run's privilege check said about the enrichment indices.
#[derive(Debug, Default)]
pub(super) struct EnrichmentGate {
    /// The optional privileges the credential lacks ("`read` on `name`").
    lacking: Vec<String>,
    /// The indices the run has warned about (once each per run).
    reported: Vec<String>,
}

impl EnrichmentGate {
    /// A gate for a credential that lacks `lacking` of the optional privileges.
    pub(super) fn lacking(lacking: Vec<String>) -> EnrichmentGate {
        EnrichmentGate {
            lacking,
            reported: Vec::new(),
        }
    }

    fn may_read(&self, index: &str) -> bool {
        !self.lacking.contains(&index_privilege_item("read", index))
    }
}

/// Sets asset criticality and entity risk on `alerts` (one batch, about to be written).
pub(super) async fn enrich_alerts(
    ctx: &RunContext,
    alerts: &mut [&mut BulkCreate],
    log: &mut RunLog,
) {
    if !ctx.config.alerts.enrichment {
        return;
    }
    let searches = plan_searches(alerts.iter().map(|a| &a.document));
    let mut found = Found::default();
    for index in EnrichmentIndex::ALL {
        let name = index.name(&ctx.config.alerts.kibana_space);
        // Collected: an iterator with a closure held across the awaits below would make the
        // future not `Send`.
        let of_index: Vec<&EntitySearch> = searches.iter().filter(|s| s.index == index).collect();
        if of_index.is_empty() {
            continue;
        }
        if !log.enrichment.may_read(&name) {
            if !log.enrichment.reported.contains(&name) {
                log.enrichment.reported.push(name.clone());
                log.warnings.push(format!(
                    "alerts are written without enrichment from {name}: the credential lacks `read` on it (grant it, or set alerts.enrichment = false; see docs/enrichment.md)"
                ));
            }
            continue;
        }
        for search in of_index {
            match ctx.cluster.search_entities(&name, &search.body()).await {
                Ok(Some(hits)) => found.record(search, hits),
                // Kibana checks that the index exists before it searches it.
                Ok(None) => break,
                Err(e) => {
                    log.counts.enrichment_failures += 1;
                    warn!(index = %name, error = %e, "alert enrichment lookup failed; the batch's alerts are written without it");
                    log.warnings.push(format!(
                        "enrichment lookup in {name} failed; the {} alerts of this batch are written without it: {e}",
                        alerts.len()
                    ));
                    // The other kinds of entity go to the same index: spare them the same fate.
                    break;
                }
            }
        }
    }
    if found.is_empty() {
        return;
    }
    for alert in alerts.iter_mut() {
        if apply(&mut alert.document, &found) {
            log.counts.alerts_enriched += 1;
        }
    }
}
