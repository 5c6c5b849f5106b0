//! Fetch and correlate: the rule's push-down paged through a point in time, streamed into the
//! correlator. A keyed sequence is fetched in two steps in one point in time (stage 1's join
//! keys, then the query with later stages restricted to them); see `fetch_plan`.

use std::sync::Arc;
use std::time::Instant;

use tracing::warn;

use super::{iso, ms, PreparedRule, RunContext, RunError, RunLog, RunPlan};
use crate::cluster::{next_page, Cluster};
use crate::engine::{CompiledRule, Correlation, EventError};
use crate::eql::ast::Query;
use crate::eql::pushdown::FetchQuery;
use crate::es::{parse_source, EsError, FieldCapsAnswer, PitPager};
use crate::event::{FlatEvent, SourceError};
use crate::fetch_plan::{self, KeyKind, KeyTypeError, OneQueryReason, StageOneKeys};
use crate::state::SkippedEvent;
use crate::window::Window;

/// How many completed sequences a run keeps in memory before deduplication. Well above
/// `max_signals` so that duplicates from the overlap never crowd out new sequences; beyond it
/// the oldest are dropped with a warning.
const SEQUENCES_IN_MEMORY: usize = 50_000;

/// Search pages fetched ahead of the correlation (each at most `page_size` hits).
const PAGES_AHEAD: usize = 2;

/// Fetches the window's candidates and correlates them; keeps the detections the plan's
/// filter keeps.
pub(super) async fn fetch_and_correlate(
    ctx: &RunContext,
    rule: &PreparedRule,
    plan: &RunPlan,
    window: Window,
    log: &mut RunLog,
) -> Result<Correlation, RunError> {
    let phase = Instant::now();
    let fetch = rule
        .untyped()
        .fetch_query(&rule.rule, &iso(window.from), &iso(window.to))
        .map_err(RunError::Query)?;
    let caps = ctx
        .cluster
        .field_caps(&rule.rule.index, &fetch.source_includes)
        .await
        .map_err(RunError::FieldCaps)?;
    if caps.matched.is_empty() {
        // Kibana's words (`create_security_rule_type_wrapper.ts`): a warning, not a failure.
        log.warnings.push(format!(
            "This rule is attempting to query data from Elasticsearch indices listed in the \"Index patterns\" section of the rule definition, however no index matching: {} was found. This warning will continue to appear until a matching index is created or this rule is disabled.",
            serde_json::to_string(&rule.rule.index).unwrap_or_default()
        ));
    }
    // Field types decide keyword-vs-number semantics exactly as the mapping does.
    let compiled = rule.typed(&caps.types)?;
    let pager = open_pager(ctx, rule, &compiled, &fetch, &caps, log).await?;
    let mut found = correlate_pages(ctx.cluster.clone(), &compiled, pager, log).await?;
    found.detections.retain(|d| plan.filter.keeps(d));
    log.durations.search_ms = ms(phase.elapsed());
    record_stats(&found, log);
    Ok(found)
}

/// Opens the point in time and, for the two-step fetch, scans stage 1's keys in it; returns
/// the pager pointed at the query the correlator reads.
async fn open_pager(
    ctx: &RunContext,
    rule: &PreparedRule,
    compiled: &CompiledRule,
    fetch: &FetchQuery,
    caps: &FieldCapsAnswer,
    log: &mut RunLog,
) -> Result<PitPager, RunError> {
    let cfg = &ctx.config.elasticsearch;
    let indices = &rule.rule.index;
    let key_fields = match &rule.rule.query {
        Query::Sequence(seq) => fetch_plan::stage_key_fields(seq),
        Query::Event(_) => Vec::new(),
    };
    let refusal = one_query_reason(ctx, rule, &key_fields, caps);
    // The key scan (if any) pages stage 1 alone with `_source` cut to its join keys; the
    // pager is then pointed at the main query, in the same point in time.
    let first = match (&refusal, fetch.stage_only(0), key_fields.first()) {
        (None, Some(scan), Some(stage_one)) => (scan, stage_one.clone()),
        _ => (fetch.query.clone(), fetch.source_includes.clone()),
    };
    let keep_alive = format!("{}s", cfg.pit_keep_alive.0.as_secs().max(1));
    let pit_id = ctx
        .cluster
        .open_point_in_time(indices, &keep_alive)
        .await
        .map_err(|source| RunError::OpenPointInTime {
            indices: indices.join(","),
            source,
        })?;
    let mut pager = PitPager::new(
        pit_id,
        &keep_alive,
        cfg.page_size,
        first.0,
        &first.1,
        compiled.sort(),
    );
    let Some(reason) = refusal else {
        let scanned = scan_stage_one_keys(
            ctx.cluster.as_ref(),
            &mut pager,
            compiled,
            first.1.len(),
            log,
        )
        .await;
        let keys = match scanned {
            Ok(keys) => keys,
            Err(e) => {
                close(ctx.cluster.as_ref(), pager, log).await;
                return Err(RunError::Paging(e));
            }
        };
        let restricted = keys
            .and_then(|keys| keys.restrictions(&key_fields, |field| key_kind(caps, field)))
            .map(|restrictions| {
                // Stage 1 stays whole; every later stage is ANDed with its restriction.
                let mut extra = vec![Vec::new()];
                extra.extend(restrictions.iter().map(|r| r.query()));
                fetch.with_stage_filters(&extra)
            });
        match restricted {
            Ok(query) => {
                log.fetch_strategy = "two-step".into();
                log.counts.two_step_fetches += 1;
                pager.requery(query, &fetch.source_includes);
            }
            Err(reason) => {
                log.fetch_strategy = format!("one query ({reason})");
                pager.requery(fetch.query.clone(), &fetch.source_includes);
            }
        }
        return Ok(pager);
    };
    log.fetch_strategy = format!("one query ({reason})");
    Ok(pager)
}

/// Why the rule is fetched with one query, decided before any scan; `None` for two steps.
fn one_query_reason(
    ctx: &RunContext,
    rule: &PreparedRule,
    key_fields: &[Vec<String>],
    caps: &FieldCapsAnswer,
) -> Option<OneQueryReason> {
    if !ctx.config.elasticsearch.two_step_fetch {
        return Some(OneQueryReason::Disabled);
    }
    fetch_plan::shape_refusal(&rule.rule.query).or_else(|| {
        // A later stage's key field of a type `terms` cannot match exactly.
        key_fields.iter().skip(1).flatten().find_map(|field| {
            key_kind(caps, field)
                .err()
                .map(|found| OneQueryReason::KeyFieldType {
                    field: field.clone(),
                    found,
                })
        })
    })
}

/// The two-step fetch's first step: pages stage 1's push-down query (the pager was opened
/// on it) and collects the join keys of its hits exactly as the correlator reads them. `Ok(Err)`
/// when a hit's keys cannot be read: then the key set may be incomplete and the run must fetch
/// with one query. Hits read are counted as fetched.
async fn scan_stage_one_keys(
    cluster: &dyn Cluster,
    pager: &mut PitPager,
    compiled: &CompiledRule,
    positions: usize,
    log: &mut RunLog,
) -> Result<Result<StageOneKeys, OneQueryReason>, EsError> {
    let mut keys = StageOneKeys::new(positions);
    while let Some(page) = next_page(cluster, pager, None).await? {
        log.counts.pages += 1;
        log.counts.events_fetched += page.len() as u64;
        log.counts.key_scan_events += page.len() as u64;
        for h in page.hits() {
            let unreadable = |reason: EventError| OneQueryReason::UnreadableKey {
                event: format!("{}/{}: {reason}", h.index, h.id),
            };
            let Some(text) = h.source else {
                return Ok(Err(unreadable(SourceError::Missing.into())));
            };
            let source = match parse_source(text) {
                Ok(v) => v,
                Err(e) => return Ok(Err(unreadable(e.into()))),
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
fn key_kind(caps: &FieldCapsAnswer, field: &str) -> Result<KeyKind, KeyTypeError> {
    KeyKind::from_mapping_types(caps.mapping_types.get(field).map_or(&[], Vec::as_slice))
}

/// Closes the point in time; a failure is only a warning (it expires on its own).
async fn close(cluster: &dyn Cluster, pager: PitPager, log: &mut RunLog) {
    if let Err(e) = cluster.close_point_in_time(pager.pit_id()).await {
        warn!(error = %e, "closing the point in time failed (it expires on its own)");
        log.warnings.push(format!(
            "closing the point in time failed (it expires on its own): {e}"
        ));
    }
}

/// Pages the pager into the correlator. Pages are fetched by their own task, up to
/// [`PAGES_AHEAD`] pages ahead, so the cluster serves page n + 1 while page n is correlated;
/// each `_source` is decoded for the rule as its page is read (one pass). The point in time is
/// closed on every path.
async fn correlate_pages(
    cluster: Arc<dyn Cluster>,
    compiled: &CompiledRule,
    mut pager: PitPager,
    log: &mut RunLog,
) -> Result<Correlation, RunError> {
    let (pages_tx, mut pages_rx) = tokio::sync::mpsc::channel(PAGES_AHEAD);
    let fetcher = {
        let cluster = cluster.clone();
        let plan = compiled.plan().clone();
        tokio::spawn(async move {
            loop {
                let page = next_page(cluster.as_ref(), &mut pager, Some(&plan)).await;
                let last = !matches!(page, Ok(Some(_)));
                if pages_tx.send(page).await.is_err() || last {
                    return pager;
                }
            }
        })
    };
    let mut correlator = compiled.correlator(SEQUENCES_IN_MEMORY);
    let paged: Result<(), RunError> = async {
        // Index names repeat hit after hit: one shared copy each.
        let mut index_names: Vec<Arc<str>> = Vec::new();
        while let Some(page) = pages_rx.recv().await {
            let Some(page) = page.map_err(RunError::Paging)? else {
                break;
            };
            log.counts.pages += 1;
            log.counts.events_fetched += page.len() as u64;
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
                        correlator.skip(h.index, h.id, SourceError::Missing.into());
                        continue;
                    }
                };
                pushed.map_err(RunError::Correlate)?;
            }
        }
        Ok(())
    }
    .await;
    // Stop the fetcher (if the correlation failed) and take the pager back to close it.
    drop(pages_rx);
    match fetcher.await {
        Ok(pager) => close(cluster.as_ref(), pager, log).await,
        // The fetcher panicked: the point in time expires on its own.
        Err(e) => {
            paged?;
            return Err(RunError::Fetcher(e.to_string()));
        }
    }
    paged?;
    Ok(correlator.finish())
}

/// The correlation's counters, skipped events and warnings into the run's log.
fn record_stats(found: &Correlation, log: &mut RunLog) {
    let stats = &found.stats;
    log.counts.candidates = stats.candidates;
    log.counts.bad_events = stats.bad_events;
    log.counts.sequences = stats.detections;
    log.counts.sequences_dropped = stats.dropped_by_cap;
    log.bad_events = stats
        .bad_event_samples
        .iter()
        .map(|b| SkippedEvent {
            index: b.index.clone(),
            id: b.id.clone(),
            reason: b.reason.clone(),
        })
        .collect();
    if stats.bad_events > 0 {
        log.warnings.push(format!(
            "{} events could not be read and were skipped (see bad_events)",
            stats.bad_events
        ));
    }
    if stats.dropped_by_cap > 0 {
        log.warnings.push(format!(
            "{} older sequences were dropped in memory (more than {SEQUENCES_IN_MEMORY} in one window)",
            stats.dropped_by_cap
        ));
    }
}
