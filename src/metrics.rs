//! Every metric seqwatch exports, named in one place (`seqwatch_<what>_<unit>`), and the one
//! function per event that records them. Served in Prometheus text format on `/metrics`.

use metrics::{counter, gauge, histogram};

use crate::state::RunDoc;

/// Records a finished run.
pub fn record_run(doc: &RunDoc) {
    let rule = doc.rule.name.clone();
    let c = &doc.counts;
    counter!("seqwatch_runs_total", "rule" => rule.clone(), "status" => doc.status.as_str())
        .increment(1);
    histogram!("seqwatch_run_duration_seconds", "rule" => rule.clone())
        .record(doc.durations.total_ms as f64 / 1000.0);
    counter!("seqwatch_events_fetched_total", "rule" => rule.clone()).increment(c.events_fetched);
    counter!("seqwatch_bad_events_total", "rule" => rule.clone()).increment(c.bad_events);
    counter!("seqwatch_sequences_total", "rule" => rule.clone()).increment(c.sequences);
    counter!("seqwatch_alerts_created_total", "rule" => rule.clone()).increment(c.alerts_created);
    counter!("seqwatch_duplicates_skipped_total", "rule" => rule.clone())
        .increment(c.duplicates_skipped);
    counter!("seqwatch_alert_fields_removed_total", "rule" => rule.clone())
        .increment(c.alert_fields_removed);
    counter!("seqwatch_source_values_dropped_total", "rule" => rule.clone())
        .increment(c.source_values_dropped);
    counter!("seqwatch_alerts_truncated_total", "rule" => rule.clone())
        .increment(c.alerts_truncated);
    counter!("seqwatch_alerts_enriched_total", "rule" => rule.clone()).increment(c.alerts_enriched);
    counter!("seqwatch_enrichment_failures_total", "rule" => rule.clone())
        .increment(c.enrichment_failures);
    if let Some(kind) = &doc.error_kind {
        counter!("seqwatch_run_failures_total", "rule" => rule.clone(), "error" => kind.clone())
            .increment(1);
    }
    if let Some(g) = &doc.gap {
        let secs = (g.to - g.from).num_milliseconds().max(0) as f64 / 1000.0;
        counter!("seqwatch_gap_seconds_total", "rule" => rule.clone()).increment(secs as u64);
    }
    if doc.status != crate::state::RunStatus::Failed {
        gauge!("seqwatch_last_success_timestamp_seconds", "rule" => rule.clone())
            .set(doc.window.to.timestamp_millis() as f64 / 1000.0);
    }
}

/// Records a run that did not happen: `reason` is `overlap` (the previous run of the rule is
/// still going) or `lease` (another replica holds the rule).
pub fn record_skip(rule: &str, reason: &'static str) {
    counter!("seqwatch_runs_skipped_total", "rule" => rule.to_owned(), "reason" => reason)
        .increment(1);
}

/// How far behind now the last successful window of a rule ends.
pub fn record_lag(rule: &str, seconds: f64) {
    gauge!("seqwatch_lag_seconds", "rule" => rule.to_owned()).set(seconds);
}

/// Whether the last health check reached Elasticsearch.
pub fn record_es_up(up: bool) {
    gauge!("seqwatch_elasticsearch_up").set(if up { 1.0 } else { 0.0 });
}
