//! `seqwatch backfill`: the alerts the scheduled runs over a past range would have produced,
//! apart from the per-run cap, without replaying the runs one by one.
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
//! Resumable: finished chunks are recorded in the state index under an id derived from the
//! rule and the range; running the same backfill again skips them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};

use crate::job::{run_window, JobContext, PreparedRule, WindowFilter};
use crate::state::{RuleRef, RunCounts};
use crate::window::{split_with_overlap, Window};

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

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Backfills `[from, to]` for `rule` with `parallel` chunks searched at once.
pub async fn backfill(
    ctx: &JobContext,
    rule: &PreparedRule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    parallel: usize,
) -> anyhow::Result<BackfillReport> {
    let started = std::time::Instant::now();
    let schedule = rule.schedule;
    let ticks = Arc::new(schedule.ticks(from, to));
    let mut report = BackfillReport {
        rule: rule.rule.name.clone(),
        from,
        to,
        scheduled_runs: ticks.len(),
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
    let lookback = chrono::Duration::from_std(schedule.lookback)?;
    let has_missing = matches!(&rule.rule.query, crate::eql::ast::Query::Sequence(s) if s.stages.iter().any(|st| st.missing));
    let chunks: Vec<Window> = if has_missing {
        ticks
            .iter()
            .map(|t| Window {
                from: *t - lookback,
                to: *t,
            })
            .collect()
    } else {
        // About a day of events per chunk keeps memory and retries small; at least `parallel`.
        let span = last - (first - lookback);
        let parts = (span.num_hours() as usize / 24 + 1).max(parallel).max(1);
        split_with_overlap(first - lookback, last, parts, schedule.lookback)
    };

    let done_id = format!(
        "backfill-{}-{}-{}",
        rule.uuid,
        first.timestamp_millis(),
        last.timestamp_millis()
    );
    let state_index = ctx.config.state.index.clone();
    let mut finished: Vec<bool> = match ctx.es.get_versioned(&state_index, &done_id).await {
        Ok(Some(d)) => serde_json::from_value(d.source["chunks_done"].clone()).unwrap_or_default(),
        _ => Vec::new(),
    };
    finished.resize(chunks.len(), false);
    report.chunks_resumed = finished.iter().filter(|d| **d).count();

    let progress = progress_bar(chunks.len(), report.chunks_resumed);
    let next = Arc::new(AtomicUsize::new(0));
    let todo: Arc<Vec<usize>> = Arc::new((0..chunks.len()).filter(|i| !finished[*i]).collect());
    let chunks = Arc::new(chunks);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..parallel.min(todo.len()).max(1) {
        let (ctx, rule, ticks, chunks, todo, next) = (
            ctx.clone(),
            rule.clone(),
            ticks.clone(),
            chunks.clone(),
            todo.clone(),
            next.clone(),
        );
        workers.spawn(async move {
            let mut results = Vec::new();
            loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(&i) = todo.get(k) else { break };
                let filter = WindowFilter::CoveredBy {
                    schedule: rule.schedule,
                    ticks: ticks.clone(),
                };
                let outcome = run_window(&ctx, &rule, chunks[i], Utc::now(), filter).await;
                results.push((i, outcome));
            }
            results
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = workers.join_next().await {
        for (i, outcome) in joined? {
            progress(1);
            results.push((i, outcome));
        }
    }
    results.sort_by_key(|(i, _)| *i);
    for (i, outcome) in results {
        report.chunks_run += 1;
        match outcome {
            Ok(c) => {
                finished[i] = true;
                add(&mut report.counts, &c);
            }
            Err(e) => {
                report.failed_chunks += 1;
                let w = chunks[i];
                warn!(rule = %rule.rule.name, from = %iso(w.from), to = %iso(w.to), error = %e, "backfill chunk failed");
                report
                    .errors
                    .push(format!("{} .. {}: {e}", iso(w.from), iso(w.to)));
            }
        }
    }
    let record = progress_record(rule, first, last, &finished, Utc::now());
    if let Err(e) = ctx.es.put_doc(&state_index, &done_id, &record).await {
        warn!(error = %e, "backfill progress not recorded; a rerun searches every chunk again");
    }
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    info!(rule = %rule.rule.name, chunks = report.chunks_run, failed = report.failed_chunks,
        alerts_created = report.counts.alerts_created, "backfill finished");
    Ok(report)
}

/// The state document recording which chunks of a backfill are finished. `rule` is an object
/// like the `rule` of run documents: the state template maps `rule` as an object, and
/// Elasticsearch refuses a string there even with `dynamic: false`, which would lose the
/// progress and make every rerun search every chunk again.
fn progress_record(
    rule: &PreparedRule,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    finished: &[bool],
    now: DateTime<Utc>,
) -> serde_json::Value {
    let rule_ref = RuleRef {
        rule_id: rule.rule.rule_id.clone(),
        uuid: rule.uuid.clone(),
        name: rule.rule.name.clone(),
    };
    json!({"type": "backfill", "rule": rule_ref, "from": iso(first), "to": iso(last),
        "chunks_done": finished, "updated_at": iso(now)})
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
}

/// A progress bar on a terminal; log lines otherwise (containers).
fn progress_bar(total: usize, already: usize) -> impl Fn(u64) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_position(already as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} chunks  {elapsed} elapsed, {eta} left",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let done = AtomicUsize::new(already);
    move |n| {
        let now = done.fetch_add(n as usize, Ordering::SeqCst) + n as usize;
        match &bar {
            Some(b) => {
                b.inc(n);
                if now >= total {
                    b.finish();
                }
            }
            None => info!(done = now, total, "backfill progress"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::es::templates::{ALL, STATE_TEMPLATE};

    /// Every field of the progress record that the state template maps as an object must be
    /// an object: Elasticsearch rejects a concrete value for an object field whatever
    /// `dynamic` says (`DocumentParser`'s "tried to parse field [rule] as object, but found a
    /// concrete value"), and then the progress is lost.
    #[test]
    fn progress_record_fits_the_state_template() {
        let config = crate::config::Config::default();
        let rule = PreparedRule::prepare(crate::rule::Rule::builtin().unwrap(), &config).unwrap();
        let t = DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let record = progress_record(&rule, t, t, &[true, false], t);
        let template = ALL
            .iter()
            .find(|t| t.name == STATE_TEMPLATE)
            .unwrap()
            .body()
            .unwrap();
        let properties = template["template"]["mappings"]["properties"]
            .as_object()
            .unwrap();
        let mut checked = 0;
        for (field, value) in record.as_object().unwrap() {
            if let Some(mapping) = properties.get(field) {
                checked += 1;
                let is_object = mapping.get("properties").is_some();
                assert_eq!(value.is_object(), is_object, "{field}: {value}");
            }
        }
        assert!(checked >= 3, "type, rule and updated_at are mapped");
        assert_eq!(record["rule"]["uuid"], json!(rule.uuid));
        assert_eq!(record["chunks_done"], json!([true, false]));
    }
}
