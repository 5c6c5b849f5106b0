//! One detection run of one rule: `run_once`, shared by the daemon, `once` and `backfill`.
//!
//! Plan the window → fetch candidates through a point in time, streaming pages into the
//! correlator → compute alert ids → drop sequences whose alerts all exist → keep the latest
//! `max_signals` → fetch the full events → write alerts with `create` → advance the checkpoint.
//! The checkpoint moves only when every alert of the run is written, so a failed run is
//! covered again by the next one; alert ids are deterministic, so covering it again writes
//! nothing twice.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::alert::{self, RuleInfo, RunInfo, SourceEvent};
use crate::config::{AlertTarget, Config, ConfigError};
use crate::engine::{CompiledRule, Correlation, EngineOptions};
use crate::es::{
    parse_source, BulkCreate, BulkOutcome, EsClient, EsError, FetchedSource, FieldCapsAnswer,
    IdLookup, PitPager, WriteOutcome, NO_SOURCE,
};
use crate::event::FlatEvent;
use crate::fetch_plan::{self, KeyKind, OneQueryReason, StageOneKeys};
use crate::rule::Rule;
use crate::state::{
    checkpoint_id, lease_id, select_new, status_of, CheckpointDoc, LeaseDoc, PhaseDurations,
    RuleRef, RunCounts, RunDoc, RunStatus, SequenceIds, SkippedEvent, StoredWindow,
};
use crate::window::{Schedule, Window};

/// A rule with everything a run needs that does not change between runs.
#[derive(Debug, Clone)]
pub struct PreparedRule {
    /// The rule as loaded.
    pub rule: Rule,
    /// The uuid hashed into alert ids.
    pub uuid: String,
    /// Interval, lookback, catch-up bound.
    pub schedule: Schedule,
    /// Most new sequences alerted per run.
    pub max_signals: usize,
    /// What alerts say about the rule.
    pub info: RuleInfo,
}

impl PreparedRule {
    /// Applies the configuration's overrides and checks the schedule against the rule.
    pub fn prepare(rule: Rule, config: &Config) -> Result<PreparedRule, ConfigError> {
        if !matches!(rule.query, crate::eql::ast::Query::Sequence(_)) {
            return Err(ConfigError::Invalid {
                key: "rules.paths".into(),
                message: format!(
                    "rule {:?} ({}) is an event query; the detection job runs sequence rules (use `seqwatch replay` for event queries)",
                    rule.name, rule.origin
                ),
            });
        }
        let interval = config
            .schedule
            .interval
            .map(|d| d.0)
            .unwrap_or(rule.interval);
        let lookback = config
            .schedule
            .lookback
            .map(|d| d.0)
            .unwrap_or(rule.lookback);
        let maxspan = match &rule.query {
            crate::eql::ast::Query::Sequence(s) => s.maxspan_ms.map(Duration::from_millis),
            crate::eql::ast::Query::Event(_) => None,
        };
        Config::check_schedule(&rule.name, interval, lookback, maxspan)?;
        let uuid = config
            .rules
            .uuids
            .get(&rule.rule_id)
            .cloned()
            .unwrap_or_else(|| rule.rule_id.clone());
        let max_signals = config
            .schedule
            .max_signals
            .unwrap_or(rule.max_signals as usize);
        let info = RuleInfo {
            uuid: uuid.clone(),
            rule_id: rule.rule_id.clone(),
            name: rule.name.clone(),
            description: rule.description.clone(),
            severity: rule.severity.as_str().to_owned(),
            risk_score: u32::from(rule.risk_score),
            version: rule.version.unwrap_or(1),
            from: rule.from.clone(),
            interval: crate::config::HumanDuration(interval).to_string(),
            max_signals,
            index: rule.index.clone(),
            query: rule.query_text.clone(),
            tags: rule.tags.clone(),
            references: rule.references.clone(),
            author: rule.author.clone(),
            license: rule.license.clone().unwrap_or_default(),
            threat: serde_json::to_value(&rule.threat).unwrap_or(Value::Array(Vec::new())),
            false_positives: Vec::new(),
            timestamp_override: rule.timestamp_override.clone(),
            tiebreaker_field: rule.tiebreaker_field.clone(),
            event_category_override: rule.event_category_override.clone(),
        };
        Ok(PreparedRule {
            rule,
            uuid,
            schedule: Schedule {
                interval,
                lookback,
                max_catchup: config.schedule.max_catchup.0,
            },
            max_signals,
            info,
        })
    }

    fn rule_ref(&self) -> RuleRef {
        RuleRef {
            rule_id: self.rule.rule_id.clone(),
            uuid: self.uuid.clone(),
            name: self.rule.name.clone(),
        }
    }
}

/// Where and as whom runs happen.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The cluster.
    pub es: EsClient,
    /// The configuration.
    pub config: Arc<Config>,
    /// This replica's name (lease owner).
    pub instance: String,
}

/// Why a run happens, which decides its window and its bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// A daemon tick: window from the checkpoint; holds the rule's lease across runs.
    Scheduled,
    /// `seqwatch once`: like a tick, but gives the lease back at the end.
    Once,
    /// One step of `seqwatch backfill`: an explicit window, no lease, no checkpoint.
    Backfill(Window),
}

impl RunMode {
    fn name(self) -> &'static str {
        match self {
            RunMode::Scheduled => "scheduled",
            RunMode::Once => "once",
            RunMode::Backfill(_) => "backfill",
        }
    }
}

/// What became of a request to run.
#[derive(Debug, Clone)]
pub enum RunResult {
    /// The run happened; its document says how it went.
    Ran(Box<RunDoc>),
    /// Another replica holds the rule's lease; nothing was done.
    Skipped {
        /// The holder.
        owner: String,
        /// Until when it holds it.
        until: DateTime<Utc>,
    },
}

/// How many completed sequences a run keeps in memory before deduplication. Well above
/// `max_signals` so that duplicates from the overlap never crowd out new sequences; beyond it
/// the oldest are dropped with a warning.
const SEQUENCES_IN_MEMORY: usize = 50_000;
/// Attempts of a bulk item refused with 429/5xx.
const WRITE_ATTEMPTS: u32 = 4;
/// New sequences enriched and written per `_bulk`: 500 sequences of two events are 1,500 alerts,
/// a few MB of request, far below Elasticsearch's 100mb `http.max_content_length`.
const WRITE_BATCH_SEQUENCES: usize = 500;

/// Search pages fetched ahead of the correlation (each at most `page_size` hits).
const PAGES_AHEAD: usize = 2;

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs `rule` once at `now`. Never panics on data; every failure ends in a `failed` run
/// document (which is also written to the state index when the cluster takes it).
pub async fn run_once(
    ctx: &JobContext,
    rule: &PreparedRule,
    now: DateTime<Utc>,
    mode: RunMode,
) -> RunResult {
    let started = Instant::now();
    let run_id = uuid::Uuid::new_v4().to_string();
    let state_index = ctx.config.state.index.clone();

    // A role short of a privilege fails here, naming it, instead of half-running: without
    // `read` on the sources Elasticsearch would silently skip them (issue 5, item 8).
    if let Err(e) = check_privileges(ctx, rule).await {
        let doc = failed_before_start(ctx, rule, &run_id, now, mode, started, e);
        return RunResult::Ran(Box::new(doc));
    }

    if !matches!(mode, RunMode::Backfill(_)) {
        match acquire_lease(ctx, rule, now).await {
            Ok(None) => {}
            Ok(Some((owner, until))) => {
                info!(rule = %rule.rule.name, %owner, until = %iso(until), "lease held by another replica; run skipped");
                return RunResult::Skipped { owner, until };
            }
            Err(e) => {
                let doc = failed_before_start(
                    ctx,
                    rule,
                    &run_id,
                    now,
                    mode,
                    started,
                    format!("acquiring the lease: {e}"),
                );
                return RunResult::Ran(Box::new(doc));
            }
        }
    }

    let mut run = Run {
        fetch_strategy: String::new(),
        counts: RunCounts::default(),
        durations: PhaseDurations::default(),
        warnings: Vec::new(),
        bad_events: Vec::new(),
    };
    let planned = match mode {
        RunMode::Backfill(w) => Ok((w, None)),
        _ => read_checkpoint(ctx, rule).await.map(|last| {
            let p = rule.schedule.plan(now, last);
            (p.window, p.gap)
        }),
    };
    run.durations.plan_ms = ms(started.elapsed());
    let outcome = match planned {
        Ok((window, gap)) => {
            if let Some(g) = gap {
                run.warnings.push(format!(
                    "{} ({} ms) between {} and {} were not queried: downtime exceeded schedule.max_catchup, so signals may have been missed",
                    crate::config::HumanDuration(g.len()),
                    g.len().as_millis(),
                    iso(g.from),
                    iso(g.to)
                ));
            }
            let result = detect(
                ctx,
                rule,
                window,
                now,
                &run_id,
                &mut run,
                &WindowFilter::All,
                rule.max_signals,
            )
            .await;
            (window, gap, result)
        }
        Err(e) => {
            let w = Window {
                from: now - chrono::Duration::from_std(rule.schedule.lookback).unwrap_or_default(),
                to: now,
            };
            (w, None, Err(format!("reading the checkpoint: {e}")))
        }
    };
    let (window, gap, result) = outcome;
    run.durations.total_ms = ms(started.elapsed());
    let error = result.err();
    let status = status_of(error.is_some(), gap.is_some(), &run.warnings);
    let doc = RunDoc {
        doc_type: "run".into(),
        run_id: run_id.clone(),
        rule: rule.rule_ref(),
        mode: mode.name().into(),
        instance: ctx.instance.clone(),
        started_at: now,
        finished_at: now + chrono::Duration::milliseconds(run.durations.total_ms as i64),
        window: window.into(),
        gap: gap.map(Into::into),
        status,
        warnings: run.warnings,
        error: error.clone(),
        fetch_strategy: run.fetch_strategy,
        counts: run.counts,
        bad_events: run.bad_events,
        durations: run.durations,
        version: env!("CARGO_PKG_VERSION").into(),
    };

    // Bookkeeping. Every alert is written when we get here without an error; only then may the
    // checkpoint move. A gap still advances it: the gap is recorded, and waiting would not
    // bring the skipped time back.
    if error.is_none() && !matches!(mode, RunMode::Backfill(_)) {
        if let Err(e) = write_checkpoint(ctx, rule, window, &run_id, now).await {
            warn!(rule = %rule.rule.name, error = %e, "checkpoint not written; the next run covers this window again");
        }
    }
    let body = serde_json::to_value(&doc).unwrap_or(Value::Null);
    match ctx.es.put_doc(&state_index, &run_id, &body).await {
        Ok(()) => write_kept_run_docs(ctx, &state_index).await,
        Err(e) => {
            warn!(rule = %rule.rule.name, error = %e, "run document not written; kept in memory for the next run to write");
            keep_run_doc(&state_index, &run_id, body);
        }
    }
    if mode == RunMode::Once {
        release_lease(ctx, rule, now).await;
    }
    log_run(&doc);
    RunResult::Ran(Box::new(doc))
}

/// The privileges a run needs (docs/least-privilege.md): `monitor`; `read` on the rule's
/// indices; on the alerts target `create_doc` and `read`, plus `create_index` on seqwatch's own
/// index or `view_index_metadata` on Kibana's alias; `read`, `index`, `create_index` on the
/// state index. Passes when the node has no security to ask.
pub async fn check_privileges(ctx: &JobContext, rule: &PreparedRule) -> Result<(), String> {
    let alerts = match ctx.config.alerts.target {
        AlertTarget::Seqwatch => vec!["create_doc", "create_index", "read"],
        AlertTarget::Kibana => vec!["create_doc", "read", "view_index_metadata"],
    };
    let indices = [
        (rule.rule.index.clone(), vec!["read"]),
        (vec![ctx.config.alerts.write_target()], alerts),
        (
            vec![ctx.config.state.index.clone()],
            vec!["read", "index", "create_index"],
        ),
    ];
    match ctx.es.missing_privileges(&["monitor"], &indices).await {
        Ok(Some(found)) if !found.missing.is_empty() => Err(format!(
            "checking privileges: user {:?} lacks {} (see docs/least-privilege.md)",
            found.username,
            found.missing.join(", ")
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("checking privileges: {e}")),
    }
}

/// Run documents the cluster did not take (typically: the failed run of an outage), as
/// (state index, run id, document). The next run that writes its own document to that index
/// writes these too, so the history shows the outage's failed runs. Bounded: the oldest go
/// first.
static UNWRITTEN_RUN_DOCS: std::sync::Mutex<Vec<(String, String, Value)>> =
    std::sync::Mutex::new(Vec::new());
/// How many unwritten run documents are kept.
const UNWRITTEN_RUN_DOCS_KEPT: usize = 100;

fn keep_run_doc(state_index: &str, run_id: &str, doc: Value) {
    if let Ok(mut kept) = UNWRITTEN_RUN_DOCS.lock() {
        if kept.len() >= UNWRITTEN_RUN_DOCS_KEPT {
            kept.remove(0);
        }
        kept.push((state_index.to_owned(), run_id.to_owned(), doc));
    }
}

/// Writes the kept run documents of `state_index`; those that fail again stay kept.
async fn write_kept_run_docs(ctx: &JobContext, state_index: &str) {
    let mine: Vec<(String, String, Value)> = match UNWRITTEN_RUN_DOCS.lock() {
        Ok(mut kept) => {
            let (mine, others) = std::mem::take(&mut *kept)
                .into_iter()
                .partition(|(index, _, _)| index == state_index);
            *kept = others;
            mine
        }
        Err(_) => return,
    };
    for (index, run_id, doc) in mine {
        if ctx.es.put_doc(&index, &run_id, &doc).await.is_err() {
            keep_run_doc(&index, &run_id, doc);
        }
    }
}

struct Run {
    fetch_strategy: String,
    counts: RunCounts,
    durations: PhaseDurations,
    warnings: Vec<String>,
    bad_events: Vec<SkippedEvent>,
}

fn log_run(doc: &RunDoc) {
    let c = &doc.counts;
    let msg = "run finished";
    match doc.status {
        RunStatus::Failed => {
            warn!(rule = %doc.rule.name, status = doc.status.as_str(), error = doc.error.as_deref().unwrap_or(""),
            window.from = %iso(doc.window.from), window.to = %iso(doc.window.to), "{msg}")
        }
        _ => {
            info!(rule = %doc.rule.name, status = doc.status.as_str(), window.from = %iso(doc.window.from), window.to = %iso(doc.window.to),
            events = c.events_fetched, sequences = c.sequences, alerts_created = c.alerts_created,
            duplicates = c.duplicates_skipped, truncated = c.alerts_truncated, "{msg}")
        }
    }
}

fn failed_before_start(
    ctx: &JobContext,
    rule: &PreparedRule,
    run_id: &str,
    now: DateTime<Utc>,
    mode: RunMode,
    started: Instant,
    error: String,
) -> RunDoc {
    let window = Window { from: now, to: now };
    let doc = RunDoc {
        doc_type: "run".into(),
        run_id: run_id.into(),
        rule: rule.rule_ref(),
        mode: mode.name().into(),
        instance: ctx.instance.clone(),
        started_at: now,
        finished_at: now,
        window: StoredWindow::from(window),
        gap: None,
        status: RunStatus::Failed,
        warnings: Vec::new(),
        error: Some(error),
        fetch_strategy: String::new(),
        counts: RunCounts::default(),
        bad_events: Vec::new(),
        durations: PhaseDurations {
            total_ms: ms(started.elapsed()),
            ..Default::default()
        },
        version: env!("CARGO_PKG_VERSION").into(),
    };
    log_run(&doc);
    // The cluster just failed us; the next run that reaches it writes this document.
    keep_run_doc(
        &ctx.config.state.index,
        run_id,
        serde_json::to_value(&doc).unwrap_or(Value::Null),
    );
    doc
}

/// Which detections of a window count.
#[derive(Debug, Clone)]
pub enum WindowFilter {
    /// All of them (a scheduled run).
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
    fn keeps(&self, d: &crate::engine::Detection) -> bool {
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

/// One backfill chunk: search `window`, keep what `filter` keeps, write every new sequence
/// (no cap), touch neither lease nor checkpoint.
pub async fn run_window(
    ctx: &JobContext,
    rule: &PreparedRule,
    window: Window,
    now: DateTime<Utc>,
    filter: WindowFilter,
) -> Result<RunCounts, String> {
    let run_id = uuid::Uuid::new_v4().to_string();
    let mut run = Run {
        fetch_strategy: String::new(),
        counts: RunCounts::default(),
        durations: PhaseDurations::default(),
        warnings: Vec::new(),
        bad_events: Vec::new(),
    };
    detect(
        ctx,
        rule,
        window,
        now,
        &run_id,
        &mut run,
        &filter,
        usize::MAX,
    )
    .await?;
    Ok(run.counts)
}

/// The two-step fetch's first step: pages stage 1's push-down query (the pager was opened
/// on it) and collects the join keys of its hits exactly as the correlator reads them. `Ok(Err)`
/// when a hit's keys cannot be read: then the key set may be incomplete and the run must fetch
/// with one query. Hits read are counted as fetched.
async fn scan_stage_one_keys(
    es: &EsClient,
    pager: &mut PitPager,
    compiled: &CompiledRule,
    positions: usize,
    run: &mut Run,
) -> Result<Result<StageOneKeys, OneQueryReason>, EsError> {
    let mut keys = StageOneKeys::new(positions);
    while let Some(page) = es.next_search_page(pager, None).await? {
        run.counts.pages += 1;
        run.counts.events_fetched += page.len() as u64;
        run.counts.key_scan_events += page.len() as u64;
        for h in page.hits() {
            let unreadable = |reason: String| OneQueryReason::UnreadableKey {
                event: format!("{}/{}: {reason}", h.index, h.id),
            };
            let Some(text) = h.source else {
                return Ok(Err(unreadable(NO_SOURCE.to_owned())));
            };
            let source = match parse_source(text) {
                Ok(v) => v,
                Err(e) => return Ok(Err(unreadable(e))),
            };
            match compiled.stage_key_fields(&source, 0) {
                Ok(Some(k)) => keys.add(&k),
                // No indexed value of a mandatory key: the correlator does not take it as a
                // stage-1 hit either.
                Ok(None) => {}
                Err(reason) => return Ok(Err(unreadable(reason))),
            }
        }
    }
    Ok(Ok(keys))
}

/// The restriction kind of a later stage's key field: one mapping type in every index, and one
/// whose `terms` query matches what the correlator joins (see [`KeyKind`]).
fn key_kind(caps: &FieldCapsAnswer, field: &str) -> Result<KeyKind, String> {
    match caps.mapping_types.get(field).map(Vec::as_slice) {
        Some([one]) => KeyKind::from_mapping_type(one).ok_or_else(|| one.clone()),
        Some(many) if !many.is_empty() => Err(many.join(" and ")),
        _ => Err("unmapped".into()),
    }
}

/// Fetch, correlate, deduplicate, cap, enrich, write. An `Err` fails the run.
#[allow(clippy::too_many_arguments)]
async fn detect(
    ctx: &JobContext,
    rule: &PreparedRule,
    window: Window,
    now: DateTime<Utc>,
    run_id: &str,
    run: &mut Run,
    filter: &WindowFilter,
    cap: usize,
) -> Result<(), String> {
    let phase = Instant::now();
    let es = &ctx.es;
    let cfg = &ctx.config.elasticsearch;
    let indices = &rule.rule.index;

    // Field types decide keyword-vs-number semantics exactly as the mapping does.
    let probe =
        CompiledRule::compile(&rule.rule, EngineOptions::default()).map_err(|e| e.to_string())?;
    let fetch = probe
        .fetch_query(&rule.rule, &iso(window.from), &iso(window.to))
        .map_err(|e| format!("building the query: {e}"))?;
    let caps = es
        .field_caps_detail(indices, &fetch.source_includes)
        .await
        .map_err(|e| e.to_string())?;
    let (field_types, matched) = (caps.types.clone(), caps.matched.clone());
    if matched.is_empty() {
        // Kibana's words (`create_security_rule_type_wrapper.ts`): a warning, not a failure.
        run.warnings.push(format!(
            "This rule is attempting to query data from Elasticsearch indices listed in the \"Index patterns\" section of the rule definition, however no index matching: {} was found. This warning will continue to appear until a matching index is created or this rule is disabled.",
            serde_json::to_string(indices).unwrap_or_default()
        ));
    }
    // Timestamps are compared in milliseconds, as ES stores a `date` (a `date_nanos` timestamp
    // would order ties within a millisecond by nanoseconds in ES; not distinguished here).
    let compiled = CompiledRule::compile(
        &rule.rule,
        EngineOptions {
            field_types,
            timestamp_nanos: false,
        },
    )
    .map_err(|e| e.to_string())?;

    let mut correlator = compiled.correlator(SEQUENCES_IN_MEMORY);
    let keep_alive = format!(
        "{}s",
        ctx.config.elasticsearch.pit_keep_alive.0.as_secs().max(1)
    );
    let refusal = if cfg.two_step_fetch {
        fetch_plan::shape_refusal(&rule.rule.query)
    } else {
        Some(OneQueryReason::Disabled)
    };
    // The key scan (if any) pages stage 1 alone with `_source` cut to its join keys; the
    // pager is then pointed at the main query, in the same point in time.
    let key_fields = match &rule.rule.query {
        crate::eql::ast::Query::Sequence(seq) => fetch_plan::stage_key_fields(seq),
        crate::eql::ast::Query::Event(_) => Vec::new(),
    };
    // A later stage's key field of a type `terms` cannot match exactly: decided before any scan.
    let refusal = refusal.or_else(|| {
        key_fields.iter().skip(1).flatten().find_map(|field| {
            key_kind(&caps, field)
                .err()
                .map(|found| OneQueryReason::KeyFieldType {
                    field: field.clone(),
                    found,
                })
        })
    });
    let first = match (&refusal, fetch.stage_only(0), key_fields.first()) {
        (None, Some(scan), Some(stage_one)) => (scan, stage_one.clone()),
        _ => (fetch.query.clone(), fetch.source_includes.clone()),
    };
    let scanned = refusal.is_none();
    let mut pager = es
        .open_pager(
            indices,
            &keep_alive,
            cfg.page_size,
            first.0,
            &first.1,
            compiled.sort(),
        )
        .await
        .map_err(|e| format!("opening a point in time over {}: {e}", indices.join(",")))?;
    let strategy = match refusal {
        Some(reason) => Err(reason),
        None => match scan_stage_one_keys(es, &mut pager, &compiled, first.1.len(), run).await {
            Ok(keys) => keys
                .and_then(|keys| keys.restrictions(&key_fields, |field| key_kind(&caps, field)))
                .map(|restrictions| {
                    // Stage 1 stays whole; every later stage is ANDed with its restriction.
                    let mut extra = vec![Vec::new()];
                    extra.extend(restrictions.iter().map(|r| r.query()));
                    fetch.with_stage_filters(&extra)
                }),
            Err(e) => {
                if let Err(close) = es.close_pager(pager).await {
                    warn!(error = %close, "closing the point in time failed (it expires on its own)");
                }
                // The key scan is paging too: the same failures, the same words.
                return Err(format!("paging: {e}"));
            }
        },
    };
    match strategy {
        Ok(query) => {
            run.fetch_strategy = "two-step".into();
            run.counts.two_step_fetches += 1;
            pager.requery(query, &fetch.source_includes);
        }
        Err(reason) => {
            run.fetch_strategy = format!("one query ({reason})");
            if scanned {
                pager.requery(fetch.query.clone(), &fetch.source_includes);
            }
        }
    }
    // Pages are fetched by their own task, up to PAGES_AHEAD pages ahead of the correlation,
    // so Elasticsearch serves page n + 1 while page n is correlated.
    let (pages_tx, mut pages_rx) = tokio::sync::mpsc::channel(PAGES_AHEAD);
    let fetcher = {
        let es = es.clone();
        // The fetcher decodes each `_source` for the rule as it reads the page (one pass).
        let plan = compiled.plan().clone();
        tokio::spawn(async move {
            loop {
                let page = es.next_search_page(&mut pager, Some(&plan)).await;
                let last = !matches!(page, Ok(Some(_)));
                if pages_tx.send(page).await.is_err() || last {
                    return pager;
                }
            }
        })
    };
    let paged: Result<(), String> = async {
        // Index names repeat hit after hit: one shared copy each.
        let mut index_names: Vec<Arc<str>> = Vec::new();
        while let Some(page) = pages_rx.recv().await {
            let Some(page) = page.map_err(|e| format!("paging: {e}"))? else {
                break;
            };
            run.counts.pages += 1;
            run.counts.events_fetched += page.len() as u64;
            let mut event = FlatEvent::default();
            for h in page.hits() {
                let index = match index_names.iter().find(|n| ***n == *h.index) {
                    Some(name) => name.clone(),
                    None => {
                        let name: Arc<str> = Arc::from(h.index);
                        index_names.push(name.clone());
                        name
                    }
                };
                let pushed = match (h.flat, h.source) {
                    (Some(values), _) => {
                        event.fill(page.text(), values, compiled.plan());
                        correlator.push_event(&index, h.id, &event, h.sorted_at)
                    }
                    (None, Some(source)) => {
                        correlator.push_source(&index, h.id, source, h.sorted_at, &mut event)
                    }
                    (None, None) => {
                        correlator.skip(h.index, h.id, NO_SOURCE.to_owned());
                        continue;
                    }
                };
                pushed.map_err(|e| format!("correlating: {e}"))?;
            }
        }
        Ok(())
    }
    .await;
    // Stop the fetcher (if the correlation failed) and take the pager back to close it.
    drop(pages_rx);
    let pager = fetcher.await;
    // Close on every path; a close failure only matters when the run otherwise worked.
    let closed = match pager {
        Ok(pager) => es.close_pager(pager).await,
        // The fetcher panicked: the point in time expires on its own.
        Err(e) => {
            paged?;
            return Err(format!("paging: {e}"));
        }
    };
    paged?;
    if let Err(e) = closed {
        run.warnings.push(format!(
            "closing the point in time failed (it expires on its own): {e}"
        ));
    }
    let mut found: Correlation = correlator.finish();
    found.detections.retain(|d| filter.keeps(d));
    run.durations.search_ms = ms(phase.elapsed());
    run.counts.candidates = found.stats.candidates;
    run.counts.bad_events = found.stats.bad_events;
    run.counts.sequences = found.stats.detections;
    run.counts.sequences_dropped = found.stats.dropped_by_cap;
    run.bad_events = found
        .stats
        .bad_event_samples
        .iter()
        .map(|b| SkippedEvent {
            index: b.index.clone(),
            id: b.id.clone(),
            reason: b.reason.clone(),
        })
        .collect();
    if found.stats.bad_events > 0 {
        run.warnings.push(format!(
            "{} events could not be read and were skipped (see bad_events)",
            found.stats.bad_events
        ));
    }
    if found.stats.dropped_by_cap > 0 {
        run.warnings.push(format!(
            "{} older sequences were dropped in memory (more than {SEQUENCES_IN_MEMORY} in one window)",
            found.stats.dropped_by_cap
        ));
    }

    // Dedup, then cap.
    let phase = Instant::now();
    let ids: Vec<SequenceIds> = found
        .detections
        .iter()
        .map(|d| {
            let events: Vec<SourceEvent<'_>> = d
                .present_events()
                .map(|e| SourceEvent {
                    index: &e.index,
                    id: &e.id,
                    source: &Value::Null,
                })
                .collect();
            SequenceIds {
                shell: alert::shell_id(&rule.uuid, &events),
                blocks: alert::building_block_ids(&rule.uuid, &events),
            }
        })
        .collect();
    let all_ids: Vec<String> = ids
        .iter()
        .flat_map(|s| std::iter::once(s.shell.clone()).chain(s.blocks.iter().cloned()))
        .collect();
    let target = ctx.config.alerts.write_target();
    // Looked up in real time (`_mget`), so the alert writes below need no refresh for the
    // next run to see them; only an alias over several indices is searched, and then the
    // writes wait for a refresh as before.
    let (existing, lookup): (HashSet<String>, IdLookup) = if all_ids.is_empty() {
        (HashSet::new(), IdLookup::Realtime)
    } else {
        es.existing_ids_realtime(&target, &all_ids)
            .await
            .map_err(|e| format!("looking up existing alerts: {e}"))?
    };
    let selection = select_new(&ids, &existing, cap);
    run.counts.duplicates_skipped = selection.duplicates as u64;
    run.counts.alerts_truncated = selection.truncated as u64;
    if selection.truncated > 0 {
        run.warnings.push(format!(
            "This rule reached the maximum alert limit for the rule execution. Some alerts were not created. ({} newer sequences kept, {} older left out)",
            selection.write.len(),
            selection.truncated
        ));
    }
    run.durations.dedup_ms = ms(phase.elapsed());
    if selection.write.is_empty() {
        return Ok(());
    }

    // Enrich and write a batch of sequences at a time: a backfill chunk can hold tens of
    // thousands of new sequences, and one `_bulk` of all their alerts is refused (HTTP 413 above
    // `http.max_content_length`, 100mb by default) after holding every event and alert in memory
    // at once (2 GB for 10,000 sequences; scripts/load).
    let exec = run_id.to_owned();
    let run_info = RunInfo {
        now,
        space_id: &ctx.config.alerts.kibana_space,
        execution_uuid: &exec,
        producer_version: env!("CARGO_PKG_VERSION"),
    };
    for batch in selection.write.chunks(WRITE_BATCH_SEQUENCES) {
        write_batch(
            ctx,
            run,
            &found,
            batch,
            (&existing, lookup),
            &target,
            rule,
            &run_info,
        )
        .await?;
    }
    Ok(())
}

/// Fetches the full events of the sequences `batch` (indices into `found.detections`), builds
/// their alerts and writes them, retrying only the items refused with 429/5xx. `existing` is
/// what deduplication found and how it looked (a searched lookup needs writes made visible).
#[allow(clippy::too_many_arguments)]
async fn write_batch(
    ctx: &JobContext,
    run: &mut Run,
    found: &Correlation,
    batch: &[usize],
    (existing, lookup): (&HashSet<String>, IdLookup),
    target: &str,
    rule: &PreparedRule,
    run_info: &RunInfo<'_>,
) -> Result<(), String> {
    let es = &ctx.es;
    // Enrich: the full events of the sequences to write (the search read only rule fields).
    let phase = Instant::now();
    let wanted: Vec<(String, String)> = batch
        .iter()
        .flat_map(|&i| {
            found.detections[i]
                .present_events()
                .map(|e| (e.index.to_string(), e.id.to_string()))
        })
        .collect();
    let sources = es
        .mget(&wanted)
        .await
        .map_err(|e| format!("fetching the events of new sequences: {e}"))?;
    let mut by_ref = std::collections::HashMap::new();
    let times: std::collections::HashMap<(String, String), i64> = batch
        .iter()
        .flat_map(|&i| found.detections[i].present_events())
        .map(|e| ((e.index.to_string(), e.id.to_string()), e.timestamp_ns))
        .collect();
    for (key, src) in wanted.into_iter().zip(sources) {
        match src {
            FetchedSource::Found(s) => {
                by_ref.insert(key, s);
            }
            // The search read this event's rule fields, so the sequence stands; only the rest
            // of the document is unreadable. Failing here would fail every later run too.
            FetchedSource::Unreadable(reason) => {
                run.warnings.push(format!(
                    "event {}/{} of a new sequence could not be read in full ({reason}); its alert carries only the event time",
                    key.0, key.1
                ));
                let ts = times.get(&key).copied().unwrap_or_default();
                let at = DateTime::from_timestamp_nanos(ts);
                by_ref.insert(key, json!({"@timestamp": iso(at)}));
            }
            FetchedSource::Gone => {
                return Err(format!(
                    "event {}/{} vanished between search and fetch",
                    key.0, key.1
                ))
            }
        }
    }
    let mut ops = Vec::new();
    for &i in batch {
        let d = &found.detections[i];
        let keys: Vec<(String, String)> = d
            .present_events()
            .map(|e| (e.index.to_string(), e.id.to_string()))
            .collect();
        let events: Vec<SourceEvent<'_>> = keys
            .iter()
            .map(|k| SourceEvent {
                index: &k.0,
                id: &k.1,
                source: &by_ref[k],
            })
            .collect();
        for a in alert::build_sequence_alerts(&rule.info, run_info, &events) {
            if existing.contains(&a.id) {
                continue;
            }
            ops.push(BulkCreate::new(target, a.id, a.source));
        }
    }
    drop(by_ref);
    run.durations.enrich_ms += ms(phase.elapsed());

    // Write, retrying only the items refused with 429/5xx.
    let phase = Instant::now();
    let require_alias = ctx.config.alerts.target == AlertTarget::Kibana;
    let mut pending = ops;
    let mut attempt = 0;
    while !pending.is_empty() {
        attempt += 1;
        let items = es
            .bulk_create_with(&pending, lookup == IdLookup::Searched, require_alias)
            .await
            .map_err(|e| format!("writing alerts: {e}"))?;
        let mut retry = Vec::new();
        let mut fatal = None;
        for (op, item) in pending.into_iter().zip(items) {
            let shell = op.document.get("kibana.alert.group.index").is_none();
            match &item.outcome {
                BulkOutcome::Created if shell => run.counts.alerts_created += 1,
                BulkOutcome::Created => run.counts.building_blocks_created += 1,
                BulkOutcome::AlreadyExists => run.counts.write_conflicts += 1,
                o if o.is_retryable() && attempt < WRITE_ATTEMPTS => retry.push(op),
                BulkOutcome::Failed {
                    status,
                    error_type,
                    reason,
                } => {
                    fatal.get_or_insert_with(|| {
                        format!(
                            "alert {} refused: HTTP {status} {error_type}: {reason}",
                            item.id
                        )
                    });
                }
            }
        }
        if let Some(f) = fatal {
            return Err(f);
        }
        if !retry.is_empty() {
            // Exponential with full jitter, as every other retry (a fixed schedule would
            // make replicas throttled together retry together).
            tokio::time::sleep(es.retry_backoff(attempt)).await;
        }
        pending = retry;
    }
    run.durations.write_ms += ms(phase.elapsed());
    Ok(())
}

/// A state document and the guard (`_seq_no`, `_primary_term`) its next write must hold.
type Guarded<T> = Option<(T, (u64, u64))>;

/// Reads state document `id`; a missing document, or one of another shape, is `None`.
async fn read_state<T: serde::de::DeserializeOwned>(
    ctx: &JobContext,
    id: &str,
) -> Result<Guarded<T>, EsError> {
    let doc = ctx.es.get_versioned(&ctx.config.state.index, id).await?;
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
    ctx: &JobContext,
    id: &str,
    doc: &T,
    guard: Option<(u64, u64)>,
) -> Result<WriteOutcome, EsError> {
    let body = serde_json::to_value(doc).unwrap_or(Value::Null);
    ctx.es
        .put_guarded(&ctx.config.state.index, id, &body, guard)
        .await
}

async fn read_checkpoint(
    ctx: &JobContext,
    rule: &PreparedRule,
) -> Result<Option<DateTime<Utc>>, EsError> {
    let current: Guarded<CheckpointDoc> = read_state(ctx, &checkpoint_id(&rule.uuid)).await?;
    Ok(current.map(|(c, _)| c.last_success.to))
}

async fn write_checkpoint(
    ctx: &JobContext,
    rule: &PreparedRule,
    window: Window,
    run_id: &str,
    now: DateTime<Utc>,
) -> Result<(), EsError> {
    let id = checkpoint_id(&rule.uuid);
    let current: Guarded<CheckpointDoc> = read_state(ctx, &id).await?;
    // Never move the checkpoint backwards (a slow replica finishing after a faster one).
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

/// Takes or renews the rule's lease. `Ok(Some(owner, until))` when another replica holds it.
async fn acquire_lease(
    ctx: &JobContext,
    rule: &PreparedRule,
    now: DateTime<Utc>,
) -> Result<Option<(String, DateTime<Utc>)>, EsError> {
    let id = lease_id(&rule.uuid);
    let current: Guarded<LeaseDoc> = read_state(ctx, &id).await?;
    if let Some((lease, _)) = &current {
        if lease.owner != ctx.instance && lease.expires_at > now {
            return Ok(Some((lease.owner.clone(), lease.expires_at)));
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
                    .map(|(l, _)| (l.owner, l.expires_at))
                    .unwrap_or_else(|| ("unknown".into(), now + ttl)),
            ))
        }
    }
}

/// Gives the lease back (expires it now) if we hold it. Best effort: it expires anyway.
pub async fn release_lease(ctx: &JobContext, rule: &PreparedRule, now: DateTime<Utc>) {
    let id = lease_id(&rule.uuid);
    if let Ok(Some((mut lease, guard))) = read_state::<LeaseDoc>(ctx, &id).await {
        if lease.owner == ctx.instance {
            lease.expires_at = now;
            let _ = write_state(ctx, &id, &lease, Some(guard)).await;
        }
    }
}

/// `validate --check-es`: what stops the job from working on this cluster, one line each.
pub async fn check_cluster(es: &EsClient, config: &Config, rules: &[PreparedRule]) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(e) = es.health().await {
        problems.push(format!("cluster: {e}"));
        return problems;
    }
    for (name, label) in [
        (crate::es::templates::ALERTS_TEMPLATE, "alerts"),
        (crate::es::templates::STATE_TEMPLATE, "run state"),
    ] {
        match es.get_index_template(name).await {
            Ok(Some(_)) => {}
            Ok(None) => problems.push(format!(
                "index template {name} ({label}) is not installed: run `seqwatch setup`"
            )),
            Err(e) => problems.push(format!("index template {name}: {e}")),
        }
    }
    if config.alerts.target == AlertTarget::Kibana {
        let alias = config.alerts.write_target();
        if let Err(e) = es.get_mapping(&alias).await {
            problems.push(format!(
                "alerts alias {alias}: {e} (Kibana creates it when its Security app is first opened in space {:?})",
                config.alerts.kibana_space
            ));
        }
    }
    for rule in rules {
        match es
            .count(&rule.rule.index.join(","), &json!({"match_all": {}}))
            .await
        {
            Ok(0) => problems.push(format!(
                "rule {:?}: no documents in {} (no index matches yet, or no data)",
                rule.rule.name,
                rule.rule.index.join(", ")
            )),
            Ok(_) => {}
            Err(e) => problems.push(format!(
                "rule {:?}: cannot read {}: {e}",
                rule.rule.name,
                rule.rule.index.join(", ")
            )),
        }
    }
    problems
}
