//! `seqwatch backfill`: the alerts the scheduled runs over a past range would have produced,
//! apart from the per-run cap, without replaying the runs one by one. Each chunk is one
//! [`super::run`] with an explicit window, so it is checked, recorded and logged like any run.
//!
//! Why one pass per chunk equals the union of the scheduled runs: under Elasticsearch's
//! sequence semantics whether events `e1 < … < en` form a sequence depends only on the events
//! between `e1` and `en` (a later stage takes the latest earlier pending sequence; what it
//! discards, what `until` blocks and what maxspan rejects all lie in `[e1, en]`). So a sequence
//! found by a run over window `W` is exactly a sequence of the whole stream that lies inside
//! `W`. Chunks overlap by the lookback, so every run window lies inside some chunk; each
//! chunk's sequences are kept if some scheduled run's window contains them, and alert ids
//! make the union free of duplicates. Rules with missing-event stages are the exception (ES
//! checks absence only inside the run's range), so they are backfilled run by run.
//!
//! Resumable: each finished chunk is recorded at once in the state index, in one document per
//! backfill (an id derived from the rule, the range and the chunking), with a guarded write.
//! A backfill killed at any point and started again searches only the chunks not recorded; a
//! chunk that was half-written finds its written alerts by id and writes the rest.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::{iso, run, PreparedRule, RunContext, RunOutcome, RunPlan, WindowFilter};
use crate::es::{EsError, WriteOutcome};
use crate::state::{RuleRef, RunCounts};
use crate::window::{split_with_overlap, Window};

/// How a backfill is cut and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillOptions {
    /// Chunks searched at once.
    pub parallel: usize,
    /// The span of one chunk (before its lookback overlap).
    pub chunk: Duration,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            parallel: 1,
            // About a day of events per chunk keeps memory and retries small.
            chunk: Duration::from_secs(24 * 3600),
        }
    }
}

/// What a backfill did.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillReport {
    /// Rule name.
    pub rule: String,
    /// The range asked for.
    pub from: DateTime<Utc>,
    /// The range asked for.
    pub to: DateTime<Utc>,
    /// Scheduled runs the range stands for.
    pub scheduled_runs: usize,
    /// Chunks the range is cut into.
    pub chunks: usize,
    /// Chunks searched now.
    pub chunks_run: usize,
    /// Chunks skipped because an earlier backfill finished them.
    pub chunks_resumed: usize,
    /// Chunks that failed (run the same command again to retry them).
    pub failed_chunks: usize,
    /// Summed counters of the chunks run now.
    pub counts: RunCounts,
    /// Errors of failed chunks.
    pub errors: Vec<String>,
    /// Wall time.
    pub duration_ms: u64,
}

/// The state document of one backfill's progress. `rule` is an object like the `rule` of run
/// documents: the state template maps `rule` as an object, and Elasticsearch refuses a string
/// there even with `dynamic: false`, which would lose the progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProgressDoc {
    #[serde(rename = "type")]
    doc_type: String,
    rule: RuleRef,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    chunks_done: Vec<bool>,
    updated_at: DateTime<Utc>,
}

/// The chunks of a backfill over the scheduled runs `ticks`.
fn chunks_of(
    rule: &PreparedRule,
    ticks: &[DateTime<Utc>],
    options: BackfillOptions,
) -> Vec<Window> {
    let (Some(first), Some(last)) = (ticks.first().copied(), ticks.last().copied()) else {
        return Vec::new();
    };
    let lookback = chrono::Duration::from_std(rule.schedule.lookback).unwrap_or_default();
    let has_missing = matches!(&rule.rule.query, crate::eql::ast::Query::Sequence(s) if s.stages.iter().any(|st| st.missing));
    if has_missing {
        return ticks
            .iter()
            .map(|t| Window {
                from: *t - lookback,
                to: *t,
            })
            .collect();
    }
    let span = (last - (first - lookback)).to_std().unwrap_or_default();
    let chunk = options.chunk.max(Duration::from_secs(1));
    let parts = usize::try_from(span.as_millis() / chunk.as_millis() + 1)
        .unwrap_or(usize::MAX)
        .max(options.parallel)
        .max(1);
    split_with_overlap(first - lookback, last, parts, rule.schedule.lookback)
}

/// Backfills `[from, to]` for `rule`.
pub async fn backfill(
    ctx: &RunContext,
    rule: &PreparedRule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    options: BackfillOptions,
) -> Result<BackfillReport, EsError> {
    let started = std::time::Instant::now();
    let ticks = Arc::new(rule.schedule.ticks(from, to));
    let chunks = chunks_of(rule, &ticks, options);
    let mut report = BackfillReport {
        rule: rule.rule.name.clone(),
        from,
        to,
        scheduled_runs: ticks.len(),
        chunks: chunks.len(),
        chunks_run: 0,
        chunks_resumed: 0,
        failed_chunks: 0,
        counts: RunCounts::default(),
        errors: Vec::new(),
        duration_ms: 0,
    };
    let (Some(first), Some(last)) = (ticks.first().copied(), ticks.last().copied()) else {
        return Ok(report);
    };
    let progress = Progress::load(ctx, rule, first, last, chunks.len(), options.chunk).await?;
    let todo: Vec<usize> = (0..chunks.len()).filter(|i| !progress.done(*i)).collect();
    report.chunks_resumed = chunks.len() - todo.len();
    let shown = ProgressDisplay::new(rule, chunks.len(), report.chunks_resumed);
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        rule: rule.clone(),
        filter: WindowFilter::CoveredBy {
            schedule: rule.schedule,
            ticks,
        },
        chunks,
        todo: Mutex::new(todo.into_iter()),
        progress: Mutex::new(progress),
        shown,
        report: Mutex::new(report),
    });
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.parallel.max(1) {
        let shared = shared.clone();
        workers.spawn(async move { shared.work().await });
    }
    while let Some(joined) = workers.join_next().await {
        if let Err(e) = joined {
            warn!(error = %e, "a backfill worker stopped");
        }
    }
    shared.shown.finish();
    let mut report = shared.report.lock().await.clone();
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    info!(rule = %rule.rule.name, chunks = report.chunks_run, failed = report.failed_chunks,
        alerts_created = report.counts.alerts_created, "backfill finished");
    Ok(report)
}

/// What the workers of one backfill share.
struct Shared {
    ctx: RunContext,
    rule: PreparedRule,
    filter: WindowFilter,
    chunks: Vec<Window>,
    todo: Mutex<std::vec::IntoIter<usize>>,
    progress: Mutex<Progress>,
    shown: ProgressDisplay,
    report: Mutex<BackfillReport>,
}

impl Shared {
    /// Runs chunks until none is left or shutdown begins.
    async fn work(&self) {
        loop {
            if self.ctx.cancel.is_cancelled() {
                return;
            }
            let Some(i) = self.todo.lock().await.next() else {
                return;
            };
            let window = self.chunks[i];
            let plan = RunPlan::backfill_chunk(Utc::now(), window, self.filter.clone());
            let outcome = run(&self.ctx, &self.rule, &plan).await;
            let RunOutcome::Ran(ran) = outcome else {
                continue;
            };
            let error = match &ran.error {
                // Recorded before it counts as done: a kill after this line loses nothing.
                None => self
                    .progress
                    .lock()
                    .await
                    .finish(&self.ctx, i)
                    .await
                    .err()
                    .map(|e| e.to_string()),
                Some(e) => Some(e.to_string()),
            };
            let mut report = self.report.lock().await;
            report.chunks_run += 1;
            add(&mut report.counts, &ran.doc.counts);
            if let Some(e) = error {
                report.failed_chunks += 1;
                warn!(rule = %self.rule.rule.name, from = %iso(window.from), to = %iso(window.to), error = %e, "backfill chunk failed");
                report
                    .errors
                    .push(format!("{} .. {}: {e}", iso(window.from), iso(window.to)));
            }
            let counts = report.counts.clone();
            drop(report);
            self.shown.chunk_done(i, window, &ran.doc.counts, &counts);
        }
    }
}

/// Why a finished chunk could not be recorded in its backfill's progress document. The chunk
/// then counts as failed: the next backfill of the same range searches it again.
#[derive(Debug, thiserror::Error)]
enum ProgressError {
    /// The document could not be turned into JSON.
    #[error("recording the chunk's progress: the progress document cannot be serialized: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The state index could not be read or written.
    #[error("recording the chunk's progress: {0}")]
    State(#[source] EsError),
    /// Every guarded write met a newer version (other backfills of the range writing too).
    #[error("recording the chunk's progress: the progress document kept changing")]
    KeptChanging,
}

/// Which chunks of one backfill are finished, and the guard of its state document.
struct Progress {
    id: String,
    doc: ProgressDoc,
    guard: Option<(u64, u64)>,
}

impl Progress {
    /// Reads the backfill's progress document, or starts one. Its id names the rule, the range
    /// and the chunking, so another chunking of the same range starts afresh.
    async fn load(
        ctx: &RunContext,
        rule: &PreparedRule,
        first: DateTime<Utc>,
        last: DateTime<Utc>,
        chunks: usize,
        chunk: Duration,
    ) -> Result<Progress, EsError> {
        let id = format!(
            "backfill-{}-{}-{}-{}",
            rule.uuid,
            first.timestamp_millis(),
            last.timestamp_millis(),
            chunk.as_millis()
        );
        let stored = ctx.cluster.get_state(&ctx.config.state.index, &id).await?;
        let (mut doc, guard) = match stored {
            Some(d) => match serde_json::from_value::<ProgressDoc>(d.source) {
                Ok(doc) => (doc, Some((d.seq_no, d.primary_term))),
                Err(_) => (
                    ProgressDoc::new(rule, first, last),
                    Some((d.seq_no, d.primary_term)),
                ),
            },
            None => (ProgressDoc::new(rule, first, last), None),
        };
        doc.chunks_done.resize(chunks, false);
        Ok(Progress { id, doc, guard })
    }

    fn done(&self, i: usize) -> bool {
        self.doc.chunks_done.get(i).copied().unwrap_or(false)
    }

    /// Records chunk `i` as finished, in one guarded write. Another process backfilling the
    /// same range at once (a conflict) has its finished chunks merged in and the write retried.
    async fn finish(&mut self, ctx: &RunContext, i: usize) -> Result<(), ProgressError> {
        let index = &ctx.config.state.index;
        for _ in 0..5 {
            self.doc.chunks_done[i] = true;
            self.doc.updated_at = Utc::now();
            let body = serde_json::to_value(&self.doc).map_err(ProgressError::Serialize)?;
            match ctx
                .cluster
                .put_state(index, &self.id, &body, self.guard)
                .await
            {
                Ok(WriteOutcome::Written) => {
                    // The next write's guard: read back the new version.
                    let stored = ctx.cluster.get_state(index, &self.id).await;
                    self.guard = stored.ok().flatten().map(|d| (d.seq_no, d.primary_term));
                    return Ok(());
                }
                Ok(WriteOutcome::Conflict) => {
                    let stored = ctx
                        .cluster
                        .get_state(index, &self.id)
                        .await
                        .map_err(ProgressError::State)?;
                    if let Some(d) = stored {
                        self.guard = Some((d.seq_no, d.primary_term));
                        if let Ok(theirs) = serde_json::from_value::<ProgressDoc>(d.source) {
                            for (mine, done) in
                                self.doc.chunks_done.iter_mut().zip(theirs.chunks_done)
                            {
                                *mine |= done;
                            }
                        }
                    }
                }
                Err(e) => return Err(ProgressError::State(e)),
            }
        }
        Err(ProgressError::KeptChanging)
    }
}

impl ProgressDoc {
    fn new(rule: &PreparedRule, from: DateTime<Utc>, to: DateTime<Utc>) -> ProgressDoc {
        ProgressDoc {
            doc_type: "backfill".into(),
            rule: rule.rule_ref(),
            from,
            to,
            chunks_done: Vec::new(),
            updated_at: Utc::now(),
        }
    }
}

fn add(total: &mut RunCounts, c: &RunCounts) {
    total.pages += c.pages;
    total.events_fetched += c.events_fetched;
    total.key_scan_events += c.key_scan_events;
    total.two_step_fetches += c.two_step_fetches;
    total.candidates += c.candidates;
    total.bad_events += c.bad_events;
    total.sequences += c.sequences;
    total.sequences_dropped += c.sequences_dropped;
    total.duplicates_skipped += c.duplicates_skipped;
    total.alerts_truncated += c.alerts_truncated;
    total.alerts_created += c.alerts_created;
    total.building_blocks_created += c.building_blocks_created;
    total.write_conflicts += c.write_conflicts;
    total.source_values_dropped += c.source_values_dropped;
    total.alert_fields_removed += c.alert_fields_removed;
}

/// Progress as a bar on a terminal, and as one JSON line per finished chunk on stderr
/// otherwise (containers and scripts read those).
struct ProgressDisplay {
    rule: String,
    total: usize,
    bar: Option<indicatif::ProgressBar>,
    done: std::sync::atomic::AtomicUsize,
}

impl ProgressDisplay {
    fn new(rule: &PreparedRule, total: usize, already: usize) -> ProgressDisplay {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_position(already as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} chunks  {elapsed} elapsed, {eta} left  {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        ProgressDisplay {
            rule: rule.rule.name.clone(),
            total,
            bar,
            done: std::sync::atomic::AtomicUsize::new(already),
        }
    }

    fn chunk_done(&self, i: usize, window: Window, chunk: &RunCounts, total: &RunCounts) {
        let done = self.done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        match &self.bar {
            Some(b) => {
                b.set_message(format!("{} alerts", total.alerts_created));
                b.inc(1);
            }
            None => {
                let line = serde_json::json!({
                    "backfill": "chunk",
                    "rule": self.rule,
                    "chunk": i,
                    "from": iso(window.from),
                    "to": iso(window.to),
                    "done": done,
                    "chunks": self.total,
                    "alerts_created": chunk.alerts_created,
                    "alerts_created_total": total.alerts_created,
                });
                eprintln!("{line}");
            }
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}
