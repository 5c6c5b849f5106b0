//! One detection run of one rule: [`run`], the single entry point of the daemon's ticks,
//! `seqwatch once` and every backfill chunk, so that the privilege check, the run document,
//! the metrics and the logs are the same for all of them.
//!
//! plan → fetch → correlate → dedup → fetch events → build and enrich alerts → write → record.
//! What differs between the modes is data, in the [`RunPlan`]: where the window comes from, the
//! lease, the cap, which detections count, and whether the checkpoint moves. The checkpoint
//! moves only when every alert of the run is written, so a failed run is covered again by the
//! next one; alert ids are deterministic, so covering it again writes nothing twice.

mod backfill;
mod entities;
mod error;
mod fetch;
mod prepare;
mod record;
mod write;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use backfill::{backfill, BackfillOptions, BackfillReport};
pub use error::RunError;
pub use prepare::{check_privileges, required_privileges, PreparedRule};
pub use record::{release_lease, LeaseHolder, Recorder};

use crate::cluster::Cluster;
use crate::config::Config;
use crate::engine::Detection;
use crate::state::{status_of, PhaseDurations, RunCounts, RunDoc, RunStatus, SkippedEvent};
use crate::window::{PlannedWindow, Schedule, Window};

/// Where and as whom runs happen. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The cluster.
    pub cluster: Arc<dyn Cluster>,
    /// The configuration.
    pub config: Arc<Config>,
    /// This replica's name (lease owner).
    pub instance: String,
    /// Run documents waiting to be written.
    pub recorder: Arc<Recorder>,
    /// Cancelled when the process shuts down; runs stop at their next safe point.
    pub cancel: CancellationToken,
}

impl RunContext {
    /// A context for `cluster` with nothing kept and no cancellation yet.
    pub fn new(cluster: Arc<dyn Cluster>, config: Arc<Config>, instance: String) -> RunContext {
        RunContext {
            cluster,
            config,
            instance,
            recorder: Arc::new(Recorder::new()),
            cancel: CancellationToken::new(),
        }
    }

    /// A safe point: `Err(Cancelled)` once shutdown has begun.
    fn check_cancelled(&self) -> Result<(), RunError> {
        if self.cancel.is_cancelled() {
            Err(RunError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Why a run happens; named in its run document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// A daemon tick.
    Scheduled,
    /// `seqwatch once`.
    Once,
    /// One chunk of `seqwatch backfill`.
    Backfill,
}

impl RunMode {
    /// The name run documents and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Scheduled => "scheduled",
            RunMode::Once => "once",
            RunMode::Backfill => "backfill",
        }
    }
}

/// Where a run's window comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSource {
    /// `[now - lookback, now]`, widened back to the checkpoint after downtime.
    Checkpoint,
    /// Exactly this window.
    Explicit(Window),
}

/// What a run does with the rule's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeasePolicy {
    /// Neither takes nor checks it (a backfill: alert ids keep it free of duplicates).
    None,
    /// Takes or renews it and keeps it (the daemon holds its rules across runs).
    Hold,
    /// Takes it for the run and gives it back at the end.
    Release,
}

/// How many new sequences a run may alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// The rule's `max_signals` (after the configuration's override).
    Rule,
    /// No cap (a backfill chunk stands for many runs).
    Unlimited,
}

impl Cap {
    fn limit(self, max_signals: usize) -> usize {
        match self {
            Cap::Rule => max_signals,
            Cap::Unlimited => usize::MAX,
        }
    }
}

/// Which detections of a window count.
#[derive(Debug, Clone)]
pub enum WindowFilter {
    /// All of them.
    All,
    /// Those inside the window of one of the scheduled runs ending at `ticks` (backfill).
    CoveredBy {
        /// The rule's schedule.
        schedule: Schedule,
        /// Ascending run instants.
        ticks: Arc<Vec<DateTime<Utc>>>,
    },
}

impl WindowFilter {
    fn keeps(&self, d: &Detection) -> bool {
        match self {
            WindowFilter::All => true,
            WindowFilter::CoveredBy { schedule, ticks } => {
                let (first, last) = d.span_ns();
                schedule.covered_by_some_run(
                    ticks,
                    DateTime::from_timestamp_nanos(first),
                    DateTime::from_timestamp_nanos(last),
                )
            }
        }
    }
}

/// What one run is to do.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// Why it runs.
    pub mode: RunMode,
    /// The run's instant.
    pub now: DateTime<Utc>,
    /// Where its window comes from.
    pub window: WindowSource,
    /// What it does with the lease.
    pub lease: LeasePolicy,
    /// How many new sequences it may alert.
    pub cap: Cap,
    /// Which detections count.
    pub filter: WindowFilter,
    /// Move the checkpoint when every alert is written.
    pub advance_checkpoint: bool,
}

impl RunPlan {
    /// A daemon tick at `now`.
    pub fn scheduled(now: DateTime<Utc>) -> RunPlan {
        RunPlan {
            mode: RunMode::Scheduled,
            now,
            window: WindowSource::Checkpoint,
            lease: LeasePolicy::Hold,
            cap: Cap::Rule,
            filter: WindowFilter::All,
            advance_checkpoint: true,
        }
    }

    /// `seqwatch once` at `now`: a tick that gives the lease back at the end.
    pub fn once(now: DateTime<Utc>) -> RunPlan {
        RunPlan {
            mode: RunMode::Once,
            lease: LeasePolicy::Release,
            ..RunPlan::scheduled(now)
        }
    }

    /// One backfill chunk: exactly `window`, no lease, no cap, the detections `filter` keeps,
    /// and the checkpoint left alone.
    pub fn backfill_chunk(now: DateTime<Utc>, window: Window, filter: WindowFilter) -> RunPlan {
        RunPlan {
            mode: RunMode::Backfill,
            now,
            window: WindowSource::Explicit(window),
            lease: LeasePolicy::None,
            cap: Cap::Unlimited,
            filter,
            advance_checkpoint: false,
        }
    }
}

/// A run that happened: its document, and its error when it failed.
#[derive(Debug)]
pub struct RunReport {
    /// The run document (also written to the state index when the cluster takes it).
    pub doc: RunDoc,
    /// Why it failed, when it did.
    pub error: Option<RunError>,
}

/// What became of a request to run.
#[derive(Debug)]
pub enum RunOutcome {
    /// The run happened.
    Ran(Box<RunReport>),
    /// Another replica holds the rule's lease; nothing was done.
    Skipped(LeaseHolder),
}

/// What a run has done so far, for its document.
#[derive(Debug)]
struct RunLog {
    run_id: String,
    started: Instant,
    planned: Option<PlannedWindow>,
    fetch_strategy: String,
    counts: RunCounts,
    durations: PhaseDurations,
    warnings: Vec<String>,
    bad_events: Vec<SkippedEvent>,
    /// The run took the rule's lease (and gives it back at the end if the plan says so).
    lease_taken: bool,
    /// Which enrichment indices the run may read.
    enrichment: entities::EnrichmentGate,
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs `rule` once as `plan` says. Never panics on data; every failure ends in a `failed` run
/// document.
pub async fn run(ctx: &RunContext, rule: &PreparedRule, plan: &RunPlan) -> RunOutcome {
    let mut log = RunLog {
        run_id: uuid::Uuid::new_v4().to_string(),
        started: Instant::now(),
        planned: None,
        fetch_strategy: String::new(),
        counts: RunCounts::default(),
        durations: PhaseDurations::default(),
        warnings: Vec::new(),
        bad_events: Vec::new(),
        lease_taken: false,
        enrichment: entities::EnrichmentGate::default(),
    };
    // A role short of a privilege fails here, naming it, before anything is read or written.
    let result = match prepare::check_privileges(ctx, rule).await {
        Ok(lacking) => match record::acquire_lease(ctx, rule, plan).await {
            Ok(Some(holder)) => {
                crate::metrics::record_skip(&rule.rule.name, "lease");
                return RunOutcome::Skipped(holder);
            }
            Ok(None) => {
                log.lease_taken = plan.lease != LeasePolicy::None;
                log.enrichment = entities::EnrichmentGate::lacking(lacking);
                stages(ctx, rule, plan, &mut log).await
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let report = finish(ctx, rule, plan, log, result).await;
    RunOutcome::Ran(Box::new(report))
}

/// The stages after the lease: plan the window, fetch and correlate, dedup and cap, enrich and
/// write. The checkpoint moves in [`finish`], and only when this returned `Ok`.
async fn stages(
    ctx: &RunContext,
    rule: &PreparedRule,
    plan: &RunPlan,
    log: &mut RunLog,
) -> Result<(), RunError> {
    let planned = record::plan_window(ctx, rule, plan).await?;
    log.planned = Some(planned);
    log.durations.plan_ms = ms(log.started.elapsed());
    if let Some(g) = planned.gap {
        log.warnings.push(format!(
            "{} ({} ms) between {} and {} were not queried: downtime exceeded schedule.max_catchup, so signals may have been missed",
            crate::config::HumanDuration(g.len()),
            g.len().as_millis(),
            iso(g.from),
            iso(g.to)
        ));
    }
    ctx.check_cancelled()?;
    let found = fetch::fetch_and_correlate(ctx, rule, plan, planned.window, log).await?;
    ctx.check_cancelled()?;
    let new = write::dedup_and_cap(ctx, rule, plan, &found, log).await?;
    write::write_alerts(ctx, rule, plan, &found, &new, log).await
}

/// Records the run: the checkpoint (only after a run that wrote everything), the run
/// document, the metrics and the log line.
async fn finish(
    ctx: &RunContext,
    rule: &PreparedRule,
    plan: &RunPlan,
    mut log: RunLog,
    result: Result<(), RunError>,
) -> RunReport {
    log.durations.total_ms = ms(log.started.elapsed());
    let error = result.err();
    // A run that failed before planning its window reports the window it would have had.
    let (window, gap) = match log.planned {
        Some(p) => (p.window, p.gap),
        None => (
            match plan.window {
                WindowSource::Explicit(w) => w,
                WindowSource::Checkpoint => Window {
                    from: plan.now
                        - chrono::Duration::from_std(rule.schedule.lookback).unwrap_or_default(),
                    to: plan.now,
                },
            },
            None,
        ),
    };
    // A gap still advances the checkpoint: the gap is recorded, and waiting would not bring
    // the skipped time back.
    if error.is_none() && plan.advance_checkpoint {
        if let Err(e) = record::advance_checkpoint(ctx, rule, window, &log.run_id, plan.now).await {
            warn!(rule = %rule.rule.name, error = %e, "checkpoint not written; the next run covers this window again");
        }
    }
    let doc = RunDoc {
        doc_type: "run".into(),
        run_id: log.run_id,
        rule: rule.rule_ref(),
        mode: plan.mode.as_str().into(),
        instance: ctx.instance.clone(),
        started_at: plan.now,
        finished_at: plan.now + chrono::Duration::milliseconds(log.durations.total_ms as i64),
        window: window.into(),
        gap: gap.map(Into::into),
        status: status_of(error.is_some(), gap.is_some(), &log.warnings),
        warnings: log.warnings,
        error: error.as_ref().map(ToString::to_string),
        error_kind: error.as_ref().map(|e| e.kind().to_owned()),
        fetch_strategy: log.fetch_strategy,
        counts: log.counts,
        bad_events: log.bad_events,
        durations: log.durations,
        version: env!("CARGO_PKG_VERSION").into(),
    };
    record::write_run_doc(ctx, &doc).await;
    // Given back last: this run writes nothing more.
    if log.lease_taken && plan.lease == LeasePolicy::Release {
        record::release_lease(ctx, rule, plan.now).await;
    }
    crate::metrics::record_run(&doc);
    log_run(&doc);
    RunReport { doc, error }
}

fn log_run(doc: &RunDoc) {
    let c = &doc.counts;
    let msg = "run finished";
    match doc.status {
        RunStatus::Failed => {
            warn!(rule = %doc.rule.name, mode = %doc.mode, status = doc.status.as_str(), error = doc.error.as_deref().unwrap_or(""),
            error_kind = doc.error_kind.as_deref().unwrap_or(""),
            window.from = %iso(doc.window.from), window.to = %iso(doc.window.to), "{msg}")
        }
        _ => {
            info!(rule = %doc.rule.name, mode = %doc.mode, status = doc.status.as_str(), window.from = %iso(doc.window.from), window.to = %iso(doc.window.to),
            events = c.events_fetched, sequences = c.sequences, alerts_created = c.alerts_created,
            duplicates = c.duplicates_skipped, truncated = c.alerts_truncated, "{msg}")
        }
    }
}
