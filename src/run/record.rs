//! What a run remembers in the state index: its run document, the rule's checkpoint and lease,
//! all through guarded writes so that replicas never overwrite each other's newer state.

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tracing::{info, warn};

use super::{iso, LeasePolicy, PreparedRule, RunContext, RunError, RunPlan, WindowSource};
use crate::es::{EsError, WriteOutcome};
use crate::state::{checkpoint_id, lease_id, CheckpointDoc, LeaseDoc, RunDoc};
use crate::window::{PlannedWindow, Window};

/// How many run documents the cluster did not take are kept for a later run to write.
const UNWRITTEN_RUN_DOCS_KEPT: usize = 100;

/// Run documents the cluster did not take (typically the failed runs of an outage), kept by the
/// process that runs them: the next run document written to the same state index brings them
/// along, so the history shows the outage. Bounded: the oldest go first.
#[derive(Debug, Default)]
pub struct Recorder {
    unwritten: Mutex<VecDeque<(String, String, Value)>>,
}

impl Recorder {
    /// A recorder with nothing kept.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// How many run documents are waiting to be written.
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(String, String, Value)>> {
        self.unwritten
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn keep(&self, index: &str, run_id: &str, doc: Value) {
        let mut kept = self.lock();
        if kept.len() >= UNWRITTEN_RUN_DOCS_KEPT {
            kept.pop_front();
        }
        kept.push_back((index.to_owned(), run_id.to_owned(), doc));
    }

    fn take(&self, index: &str) -> Vec<(String, String, Value)> {
        let mut kept = self.lock();
        let (mine, others): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut *kept)
            .into_iter()
            .partition(|(i, _, _)| i == index);
        *kept = others;
        mine.into()
    }
}

/// Writes the run document; when that works, also those kept from earlier runs. A document the
/// cluster refuses is kept for the next run.
pub(super) async fn write_run_doc(ctx: &RunContext, doc: &RunDoc) {
    let index = &ctx.config.state.index;
    let body = serde_json::to_value(doc).unwrap_or(Value::Null);
    match ctx.cluster.put_doc(index, &doc.run_id, &body).await {
        Ok(()) => {
            for (index, run_id, kept) in ctx.recorder.take(index) {
                if ctx.cluster.put_doc(&index, &run_id, &kept).await.is_err() {
                    ctx.recorder.keep(&index, &run_id, kept);
                }
            }
        }
        Err(e) => {
            warn!(rule = %doc.rule.name, error = %e, "run document not written; kept in memory for the next run to write");
            ctx.recorder.keep(index, &doc.run_id, body);
        }
    }
}

/// A state document and the guard (`_seq_no`, `_primary_term`) its next write must hold.
type Guarded<T> = Option<(T, (u64, u64))>;

/// Reads state document `id`; a missing document, or one of another shape, is `None`.
async fn read_state<T: serde::de::DeserializeOwned>(
    ctx: &RunContext,
    id: &str,
) -> Result<Guarded<T>, EsError> {
    let doc = ctx.cluster.get_state(&ctx.config.state.index, id).await?;
    Ok(doc.and_then(|d| {
        Some((
            serde_json::from_value(d.source).ok()?,
            (d.seq_no, d.primary_term),
        ))
    }))
}

/// Writes state document `id` if it is still the version read (`guard`), or, without a
/// guard, if it does not exist yet.
async fn write_state<T: serde::Serialize>(
    ctx: &RunContext,
    id: &str,
    doc: &T,
    guard: Option<(u64, u64)>,
) -> Result<WriteOutcome, EsError> {
    let body = serde_json::to_value(doc).unwrap_or(Value::Null);
    ctx.cluster
        .put_state(&ctx.config.state.index, id, &body, guard)
        .await
}

/// The window of the run: the plan's own, or `[now - lookback, now]` widened back to the
/// checkpoint (bounded by `max_catchup`, beyond which is a gap).
pub(super) async fn plan_window(
    ctx: &RunContext,
    rule: &PreparedRule,
    plan: &RunPlan,
) -> Result<PlannedWindow, RunError> {
    match plan.window {
        WindowSource::Explicit(window) => Ok(PlannedWindow { window, gap: None }),
        WindowSource::Checkpoint => {
            let current: Guarded<CheckpointDoc> = read_state(ctx, &checkpoint_id(&rule.uuid))
                .await
                .map_err(RunError::Checkpoint)?;
            let last = current.map(|(c, _)| c.last_success.to);
            Ok(rule.schedule.plan(plan.now, last))
        }
    }
}

/// Moves the checkpoint to `window`, never backwards (a slow replica finishing after a
/// faster one keeps the newer checkpoint).
pub(super) async fn advance_checkpoint(
    ctx: &RunContext,
    rule: &PreparedRule,
    window: Window,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<(), EsError> {
    let id = checkpoint_id(&rule.uuid);
    let current: Guarded<CheckpointDoc> = read_state(ctx, &id).await?;
    if current
        .as_ref()
        .is_some_and(|(c, _)| c.last_success.to >= window.to)
    {
        return Ok(());
    }
    let doc = CheckpointDoc {
        doc_type: "checkpoint".into(),
        rule: rule.rule_ref(),
        last_success: window.into(),
        run_id: run_id.into(),
        updated_at: now,
    };
    if write_state(ctx, &id, &doc, current.map(|(_, g)| g)).await? == WriteOutcome::Conflict {
        warn!(rule = %rule.rule.name, "checkpoint changed under us; keeping the other writer's");
    }
    Ok(())
}

/// Who holds a rule's lease, when it is not this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holder's instance name.
    pub owner: String,
    /// Until when it holds the lease.
    pub until: DateTime<Utc>,
}

/// Takes or renews the rule's lease as the plan says. `Ok(Some(holder))` when another replica
/// holds it.
pub(super) async fn acquire_lease(
    ctx: &RunContext,
    rule: &PreparedRule,
    plan: &RunPlan,
) -> Result<Option<LeaseHolder>, RunError> {
    if plan.lease == LeasePolicy::None {
        return Ok(None);
    }
    let held = take_lease(ctx, rule, plan.now)
        .await
        .map_err(RunError::Lease)?;
    if let Some(h) = &held {
        info!(rule = %rule.rule.name, owner = %h.owner, until = %iso(h.until), "lease held by another replica; run skipped");
    }
    Ok(held)
}

async fn take_lease(
    ctx: &RunContext,
    rule: &PreparedRule,
    now: DateTime<Utc>,
) -> Result<Option<LeaseHolder>, EsError> {
    let id = lease_id(&rule.uuid);
    let current: Guarded<LeaseDoc> = read_state(ctx, &id).await?;
    if let Some((lease, _)) = &current {
        if lease.owner != ctx.instance && lease.expires_at > now {
            return Ok(Some(LeaseHolder {
                owner: lease.owner.clone(),
                until: lease.expires_at,
            }));
        }
    }
    let ttl = chrono::Duration::from_std(ctx.config.state.lease_ttl.0)
        .unwrap_or(chrono::Duration::minutes(10));
    let doc = LeaseDoc {
        doc_type: "lease".into(),
        rule: rule.rule_ref(),
        owner: ctx.instance.clone(),
        expires_at: now + ttl,
    };
    match write_state(ctx, &id, &doc, current.map(|(_, g)| g)).await? {
        WriteOutcome::Written => Ok(None),
        // Another replica wrote between our read and our write: it holds the lease now.
        WriteOutcome::Conflict => {
            let holder: Guarded<LeaseDoc> = read_state(ctx, &id).await?;
            Ok(Some(
                holder
                    .map(|(l, _)| LeaseHolder {
                        owner: l.owner,
                        until: l.expires_at,
                    })
                    .unwrap_or_else(|| LeaseHolder {
                        owner: "unknown".into(),
                        until: now + ttl,
                    }),
            ))
        }
    }
}

/// Gives the lease back (expires it now) if this replica holds it. Best effort: it expires
/// anyway. Call it only when no run of the rule can still write.
pub async fn release_lease(ctx: &RunContext, rule: &PreparedRule, now: DateTime<Utc>) {
    let id = lease_id(&rule.uuid);
    if let Ok(Some((mut lease, guard))) = read_state::<LeaseDoc>(ctx, &id).await {
        if lease.owner == ctx.instance {
            lease.expires_at = now;
            let _ = write_state(ctx, &id, &lease, Some(guard)).await;
        }
    }
}
