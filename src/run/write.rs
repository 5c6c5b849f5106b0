//! Deduplicate, cap, enrich and write: the ids of every found sequence are looked up, the
//! latest `max_signals` new sequences are kept, their full events fetched, and their alerts
//! written with `create`, a batch of whole sequences at a time.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use chrono::DateTime;
use serde_json::{json, Value};

use super::{iso, ms, PreparedRule, RunContext, RunError, RunLog, RunPlan};
use crate::alert::{self, AlertKind, RunInfo, SourceEvent};
use crate::cluster::BulkOptions;
use crate::config::AlertTarget;
use crate::engine::{Correlation, Detection};
use crate::es::{BulkCreate, BulkOutcome, FetchedSource, IdLookup};
use crate::state::{select_new, SequenceIds};

/// Attempts of a bulk item refused with 429/5xx.
const WRITE_ATTEMPTS: u32 = 4;
/// New sequences enriched and written per `_bulk`: 500 sequences of two events are 1,500 alerts,
/// a few MB of request, far below Elasticsearch's 100mb `http.max_content_length`.
const WRITE_BATCH_SEQUENCES: usize = 500;

/// What deduplication decided: the sequences to write (indices into the detections, oldest
/// first) and what exists already.
pub(super) struct NewSequences {
    pub write: Vec<usize>,
    pub existing: HashSet<String>,
    pub lookup: IdLookup,
}

/// The shell and building-block ids of a detection.
fn sequence_ids(rule_uuid: &str, d: &Detection) -> SequenceIds {
    let events: Vec<SourceEvent<'_>> = d
        .present_events()
        .map(|e| SourceEvent {
            index: &e.index,
            id: &e.id,
            source: &Value::Null,
        })
        .collect();
    SequenceIds {
        shell: alert::shell_id(rule_uuid, &events),
        blocks: alert::building_block_ids(rule_uuid, &events),
    }
}

/// Drops the sequences whose alerts all exist, then keeps the latest of the rest up to the
/// plan's cap: deduplication comes first, so old sequences never use up the cap.
pub(super) async fn dedup_and_cap(
    ctx: &RunContext,
    rule: &PreparedRule,
    plan: &RunPlan,
    found: &Correlation,
    log: &mut RunLog,
) -> Result<NewSequences, RunError> {
    let phase = Instant::now();
    let ids: Vec<SequenceIds> = found
        .detections
        .iter()
        .map(|d| sequence_ids(&rule.uuid, d))
        .collect();
    let all_ids: Vec<String> = ids
        .iter()
        .flat_map(|s| std::iter::once(s.shell.clone()).chain(s.blocks.iter().cloned()))
        .collect();
    // Looked up in real time (`_mget`), so the alert writes need no refresh for the next run
    // to see them; only an alias over several indices is searched, and then the writes wait
    // for a refresh.
    let (existing, lookup) = if all_ids.is_empty() {
        (HashSet::new(), IdLookup::Realtime)
    } else {
        ctx.cluster
            .existing_ids(&ctx.config.alerts.write_target(), &all_ids)
            .await
            .map_err(RunError::Dedup)?
    };
    let selection = select_new(&ids, &existing, plan.cap.limit(rule.max_signals));
    log.counts.duplicates_skipped = selection.duplicates as u64;
    log.counts.alerts_truncated = selection.truncated as u64;
    if selection.truncated > 0 {
        log.warnings.push(format!(
            "This rule reached the maximum alert limit for the rule execution. Some alerts were not created. ({} newer sequences kept, {} older left out)",
            selection.write.len(),
            selection.truncated
        ));
    }
    log.durations.dedup_ms = ms(phase.elapsed());
    Ok(NewSequences {
        write: selection.write,
        existing,
        lookup,
    })
}

/// Enriches and writes the new sequences a batch at a time: a backfill chunk can hold tens of
/// thousands, and one `_bulk` of all their alerts would be refused above
/// `http.max_content_length` after holding every event in memory at once. Between batches is a
/// safe point: every written sequence is whole, so a cancelled run leaves nothing half-written.
pub(super) async fn write_alerts(
    ctx: &RunContext,
    rule: &PreparedRule,
    plan: &RunPlan,
    found: &Correlation,
    new: &NewSequences,
    log: &mut RunLog,
) -> Result<(), RunError> {
    // The log is written below while the alerts borrow the run's id.
    let execution_uuid = log.run_id.clone();
    let run_info = RunInfo {
        now: plan.now,
        space_id: &ctx.config.alerts.kibana_space,
        execution_uuid: &execution_uuid,
        producer_version: env!("CARGO_PKG_VERSION"),
    };
    let target = ctx.config.alerts.write_target();
    for batch in new.write.chunks(WRITE_BATCH_SEQUENCES) {
        ctx.check_cancelled()?;
        let phase = Instant::now();
        let sources = enrich(ctx, found, batch, log).await?;
        let mut ops = build_alerts(
            &target,
            rule,
            &run_info,
            found,
            batch,
            &sources,
            &new.existing,
        );
        drop(sources);
        super::entities::enrich_alerts(ctx, &mut ops.ops, log).await;
        log.durations.enrich_ms += ms(phase.elapsed());
        let phase = Instant::now();
        write_batch(ctx, ops, new.lookup, log).await?;
        log.durations.write_ms += ms(phase.elapsed());
    }
    Ok(())
}

/// The full events of the sequences `batch` (indices into `found.detections`): the search read
/// only the rule's fields.
async fn enrich(
    ctx: &RunContext,
    found: &Correlation,
    batch: &[usize],
    log: &mut RunLog,
) -> Result<HashMap<(String, String), Value>, RunError> {
    let events = || {
        batch
            .iter()
            .flat_map(|&i| found.detections[i].present_events())
    };
    let wanted: Vec<(String, String)> = events()
        .map(|e| (e.index.to_string(), e.id.to_string()))
        .collect();
    let sources = ctx.cluster.mget(&wanted).await.map_err(RunError::Enrich)?;
    let times: HashMap<(String, String), i64> = events()
        .map(|e| ((e.index.to_string(), e.id.to_string()), e.timestamp_ns))
        .collect();
    let mut by_ref = HashMap::with_capacity(wanted.len());
    for (key, src) in wanted.into_iter().zip(sources) {
        match src {
            FetchedSource::Found(s) => {
                by_ref.insert(key, s);
            }
            // The search read this event's rule fields, so the sequence stands; only the rest
            // of the document is unreadable. Failing here would fail every later run too.
            FetchedSource::Unreadable(reason) => {
                log.warnings.push(format!(
                    "event {}/{} of a new sequence could not be read in full ({reason}); its alert carries only the event time",
                    key.0, key.1
                ));
                let at =
                    DateTime::from_timestamp_nanos(times.get(&key).copied().unwrap_or_default());
                by_ref.insert(key, json!({"@timestamp": iso(at)}));
            }
            FetchedSource::Gone => {
                return Err(RunError::EventGone {
                    index: key.0,
                    id: key.1,
                })
            }
        }
    }
    Ok(by_ref)
}

/// Bulk `create`s and which alert of its sequence each one is, side by side.
#[derive(Default)]
struct AlertOps {
    ops: Vec<BulkCreate>,
    kinds: Vec<AlertKind>,
}

/// The alerts of the sequences `batch`, less those that exist already.
fn build_alerts(
    target: &str,
    rule: &PreparedRule,
    run_info: &RunInfo<'_>,
    found: &Correlation,
    batch: &[usize],
    sources: &HashMap<(String, String), Value>,
    existing: &HashSet<String>,
) -> AlertOps {
    let mut out = AlertOps::default();
    for &i in batch {
        let keys: Vec<(String, String)> = found.detections[i]
            .present_events()
            .map(|e| (e.index.to_string(), e.id.to_string()))
            .collect();
        let events: Vec<SourceEvent<'_>> = keys
            .iter()
            .map(|k| SourceEvent {
                index: &k.0,
                id: &k.1,
                source: &sources[k],
            })
            .collect();
        for a in alert::build_sequence_alerts(&rule.info, run_info, &events) {
            if existing.contains(&a.id) {
                continue;
            }
            out.ops.push(BulkCreate::new(target, a.id, a.source));
            out.kinds.push(a.kind);
        }
    }
    out
}

/// Writes `ops`, retrying only the items refused with 429/5xx, with exponential backoff and
/// full jitter (a fixed schedule would make replicas throttled together retry together).
async fn write_batch(
    ctx: &RunContext,
    mut pending: AlertOps,
    lookup: IdLookup,
    log: &mut RunLog,
) -> Result<(), RunError> {
    let options = BulkOptions {
        refresh_wait_for: lookup == IdLookup::Searched,
        require_alias: ctx.config.alerts.target == AlertTarget::Kibana,
    };
    let mut attempt = 0;
    while !pending.ops.is_empty() {
        attempt += 1;
        let items = ctx
            .cluster
            .bulk_create(&pending.ops, options)
            .await
            .map_err(RunError::Write)?;
        let mut retry = AlertOps::default();
        let sent = pending.ops.into_iter().zip(pending.kinds);
        for ((op, kind), item) in sent.zip(items) {
            match item.outcome {
                BulkOutcome::Created => match kind {
                    AlertKind::Shell => log.counts.alerts_created += 1,
                    AlertKind::BuildingBlock => log.counts.building_blocks_created += 1,
                },
                BulkOutcome::AlreadyExists => log.counts.write_conflicts += 1,
                ref o if o.is_retryable() && attempt < WRITE_ATTEMPTS => {
                    retry.ops.push(op);
                    retry.kinds.push(kind);
                }
                BulkOutcome::Failed {
                    status,
                    error_type,
                    reason,
                } => {
                    return Err(RunError::AlertRefused {
                        id: item.id,
                        status,
                        error_type,
                        reason,
                    })
                }
            }
        }
        if !retry.ops.is_empty() {
            tokio::time::sleep(ctx.cluster.retry_backoff(attempt)).await;
        }
        pending = retry;
    }
    Ok(())
}
