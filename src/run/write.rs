//! Deduplicate, cap, enrich and write: the ids of every found sequence are looked up, the
//! latest `max_signals` new sequences are kept, their full events fetched, and their alerts
//! written with `create`, a batch of whole sequences at a time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use chrono::DateTime;
use serde_json::{json, Value};

use super::{iso, ms, PreparedRule, RunContext, RunError, RunLog, RunPlan};
use crate::alert::{self, AlertKind, RunInfo, SourceEvent};
use crate::cluster::BulkOptions;
use crate::config::AlertTarget;
use crate::ecs::RemovedField;
use crate::engine::{Correlation, Detection};
use crate::es::{refused_field, BulkCreate, BulkOutcome, FetchedSource, IdLookup};
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
        kibana_version: &ctx.config.alerts.kibana_version,
    };
    let target = ctx.config.alerts.write_target();
    let mut refusals = Vec::new();
    for batch in new.write.chunks(WRITE_BATCH_SEQUENCES) {
        ctx.check_cancelled()?;
        let phase = Instant::now();
        let sources = enrich(ctx, found, batch, log).await?;
        let (mut sequences, dropped) = build_alerts(
            &target,
            rule,
            &run_info,
            found,
            batch,
            &sources,
            &new.existing,
        );
        log.counts.source_values_dropped += dropped;
        drop(sources);
        let mut alerts: Vec<&mut BulkCreate> = sequences
            .iter_mut()
            .flat_map(|s| s.shell.iter_mut().chain(s.blocks.iter_mut()))
            .collect();
        super::entities::enrich_alerts(ctx, &mut alerts, log).await;
        log.durations.enrich_ms += ms(phase.elapsed());
        let phase = Instant::now();
        refusals.extend(write_batch(ctx, sequences, new.lookup, log).await?);
        log.durations.write_ms += ms(phase.elapsed());
    }
    // The other sequences are written; the run still fails, so the refused ones are tried again.
    let refused_count = refusals.len();
    match refusals.into_iter().next() {
        None => Ok(()),
        Some(first) => Err(RunError::AlertRefused {
            id: first.id,
            status: first.status,
            error_type: first.error_type,
            reason: first.reason,
            sequences: refused_count,
        }),
    }
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

/// The alerts of one new sequence still to write (those that exist already are left out).
struct SequenceWrite {
    shell: Option<BulkCreate>,
    blocks: Vec<BulkCreate>,
}

/// The alerts of the sequences `batch`, less those that exist already, and how many source
/// values the ECS check dropped. What it dropped is logged at debug level, as Kibana logs it.
fn build_alerts(
    target: &str,
    rule: &PreparedRule,
    run_info: &RunInfo<'_>,
    found: &Correlation,
    batch: &[usize],
    sources: &HashMap<(String, String), Value>,
    existing: &HashSet<String>,
) -> (Vec<SequenceWrite>, u64) {
    let mut out = Vec::with_capacity(batch.len());
    let mut dropped = 0;
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
        let mut sequence = SequenceWrite {
            shell: None,
            blocks: Vec::new(),
        };
        for a in alert::build_sequence_alerts(&rule.info, run_info, &events) {
            if !a.removed.is_empty() {
                dropped += a.removed.len() as u64;
                tracing::debug!(
                    rule = %rule.info.rule_id,
                    alert = %a.id,
                    removed = %removed_json(&a.removed),
                    "Following fields were removed from alert source as ECS non-compliant"
                );
            }
            if existing.contains(&a.id) {
                continue;
            }
            let op = BulkCreate::new(target, a.id, a.source);
            match a.kind {
                AlertKind::Shell => sequence.shell = Some(op),
                AlertKind::BuildingBlock => sequence.blocks.push(op),
            }
        }
        out.push(sequence);
    }
    (out, dropped)
}

fn removed_json(removed: &[RemovedField]) -> String {
    Value::Array(
        removed
            .iter()
            .map(|r| json!({"key": r.path, "value": r.value}))
            .collect(),
    )
    .to_string()
}

/// A sequence whose alerts could not all be written.
struct Refusal {
    id: String,
    status: u16,
    error_type: String,
    reason: String,
}

/// What became of one `create`.
enum Sent {
    /// Written now (`created`) or found there already; `index` is the concrete index.
    Written { created: bool, index: String },
    /// Refused for good.
    Refused(Refusal),
}

/// Writes the batch's alerts so that no shell is ever without its building blocks: building
/// blocks first, then the shells of the sequences whose blocks were all written; the blocks of
/// a sequence whose shell or any block was refused for good are deleted again. Sequences
/// refused for good are returned; every other alert is written.
async fn write_batch(
    ctx: &RunContext,
    sequences: Vec<SequenceWrite>,
    lookup: IdLookup,
    log: &mut RunLog,
) -> Result<Vec<Refusal>, RunError> {
    let options = BulkOptions {
        refresh_wait_for: lookup == IdLookup::Searched,
        require_alias: ctx.config.alerts.target == AlertTarget::Kibana,
    };
    let mut blocks = Vec::new();
    let mut owner = Vec::new();
    let mut shells = Vec::with_capacity(sequences.len());
    for (n, s) in sequences.into_iter().enumerate() {
        owner.extend(std::iter::repeat_n(n, s.blocks.len()));
        blocks.extend(s.blocks);
        shells.push(s.shell);
    }
    let block_ids: Vec<String> = blocks.iter().map(|op| op.id.clone()).collect();
    let block_results = send(ctx, blocks, options, log).await?;

    let mut refused: Vec<Option<Refusal>> = shells.iter().map(|_| None).collect();
    let mut written: Vec<Vec<(String, String)>> = shells.iter().map(|_| Vec::new()).collect();
    let mut created_blocks = vec![0u64; shells.len()];
    let mut conflicts = vec![0u64; shells.len()];
    for ((n, id), result) in owner.iter().zip(block_ids).zip(block_results) {
        match result {
            Sent::Written { created, index } => {
                written[*n].push((index, id));
                if created {
                    created_blocks[*n] += 1;
                } else {
                    conflicts[*n] += 1;
                }
            }
            Sent::Refused(r) => {
                refused[*n].get_or_insert(r);
            }
        }
    }

    let mut shell_owner = Vec::new();
    let mut shell_ops = Vec::new();
    for (n, shell) in shells.into_iter().enumerate() {
        if let (Some(op), None) = (shell, &refused[n]) {
            shell_owner.push(n);
            shell_ops.push(op);
        }
    }
    for (n, result) in shell_owner
        .into_iter()
        .zip(send(ctx, shell_ops, options, log).await?)
    {
        match result {
            Sent::Written { created: true, .. } => log.counts.alerts_created += 1,
            Sent::Written { created: false, .. } => conflicts[n] += 1,
            Sent::Refused(r) => refused[n] = Some(r),
        }
    }

    let mut orphans = Vec::new();
    let mut refusals = Vec::new();
    for (n, refusal) in refused.into_iter().enumerate() {
        match refusal {
            Some(r) => {
                orphans.append(&mut written[n]);
                refusals.push(r);
            }
            None => {
                log.counts.building_blocks_created += created_blocks[n];
                log.counts.write_conflicts += conflicts[n];
            }
        }
    }
    if !orphans.is_empty() {
        ctx.cluster
            .delete_docs(&orphans)
            .await
            .map_err(RunError::Write)?;
    }
    Ok(refusals)
}

/// Most fields dropped from one alert to mend mapping refusals before it counts as refused
/// for good.
const MAX_FIELDS_DROPPED: u32 = 32;

/// `create`s `ops` and returns what became of each, in order. Items refused with 429/5xx are
/// sent again with exponential backoff and full jitter (a fixed schedule would make replicas
/// throttled together retry together). An item refused by the index's mapping is sent again
/// without the source field the refusal names, as Kibana would have stripped it, with a
/// warning and a count.
async fn send(
    ctx: &RunContext,
    ops: Vec<BulkCreate>,
    options: BulkOptions,
    log: &mut RunLog,
) -> Result<Vec<Sent>, RunError> {
    let mut slots: Vec<Option<BulkCreate>> = ops.into_iter().map(Some).collect();
    let mut results: Vec<Option<Sent>> = slots.iter().map(|_| None).collect();
    let mut attempts = vec![0u32; slots.len()];
    let mut dropped = vec![0u32; slots.len()];
    let mut removals: BTreeMap<String, (u64, String, String)> = BTreeMap::new();
    let mut pending: Vec<usize> = (0..slots.len()).collect();
    while !pending.is_empty() {
        let round: Vec<BulkCreate> = pending
            .iter()
            .map(|&i| slots[i].take().expect("a pending op is in its slot"))
            .collect();
        let items = ctx
            .cluster
            .bulk_create(&round, options)
            .await
            .map_err(RunError::Write)?;
        let mut next = Vec::new();
        let mut backoff = 0;
        for ((i, mut op), item) in pending.iter().copied().zip(round).zip(items) {
            attempts[i] += 1;
            let outcome = item.outcome;
            let field = match &outcome {
                BulkOutcome::Failed {
                    error_type, reason, ..
                } => refused_field(error_type, reason).filter(|f| alert::is_source_field(f)),
                _ => None,
            };
            match outcome {
                BulkOutcome::Created | BulkOutcome::AlreadyExists => {
                    results[i] = Some(Sent::Written {
                        created: outcome == BulkOutcome::Created,
                        index: item.index,
                    });
                    continue;
                }
                ref o if o.is_retryable() && attempts[i] < WRITE_ATTEMPTS => {
                    backoff = backoff.max(attempts[i]);
                }
                BulkOutcome::Failed {
                    status,
                    error_type,
                    reason,
                } => {
                    let mended = field
                        .filter(|_| dropped[i] < MAX_FIELDS_DROPPED)
                        .filter(|f| {
                            op.document
                                .as_object_mut()
                                .is_some_and(|doc| alert::remove_field(doc, f) > 0)
                        });
                    let Some(field) = mended else {
                        results[i] = Some(Sent::Refused(Refusal {
                            id: item.id,
                            status,
                            error_type,
                            reason,
                        }));
                        continue;
                    };
                    dropped[i] += 1;
                    log.counts.alert_fields_removed += 1;
                    let entry = removals
                        .entry(field)
                        .or_insert_with(|| (0, op.id.clone(), error_type.clone() + ": " + &reason));
                    entry.0 += 1;
                }
            }
            slots[i] = Some(op);
            next.push(i);
        }
        if backoff > 0 {
            tokio::time::sleep(ctx.cluster.retry_backoff(backoff)).await;
        }
        pending = next;
    }
    for (field, (count, example, why)) in removals {
        let why: String = why.chars().take(300).collect();
        tracing::warn!(%field, alerts = count, %example, "source field removed from alerts the alerts index refused");
        log.warnings.push(format!(
            "field {field} was removed from {count} alert(s) (e.g. {example}) and they were written without it: the alerts index refused it ({why})"
        ));
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every op ends written or refused"))
        .collect())
}
