//! What seqwatch remembers between runs, as documents of the state index, and the pure
//! decisions made from them: which sequences are new, which to keep under the cap, the run's
//! status. The documents are written by `job`; their shapes live here so tests and the
//! troubleshooting guide can name every field.
//!
//! Three kinds of document share the state index, told apart by `type`:
//! - `run` — one per run (`_id` = run id): rule, window, status, warnings, counts, durations;
//! - `checkpoint` — one per rule (`_id` = `checkpoint-<rule uuid>`): the last successful window;
//! - `lease` — one per rule (`_id` = `lease-<rule uuid>`): which replica may run the rule now.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::window::Window;

/// How a run ended, in Kibana's words (`create_security_rule_type_wrapper.ts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    /// Everything worked and nothing needs attention.
    #[serde(rename = "succeeded")]
    Succeeded,
    /// The run completed, with warnings (truncation, missing indices, skipped events).
    #[serde(rename = "partial failure")]
    PartialFailure,
    /// The run did not complete, or a gap was left; state did not advance.
    #[serde(rename = "failed")]
    Failed,
}

impl RunStatus {
    /// The wire form, e.g. `partial failure`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::PartialFailure => "partial failure",
            RunStatus::Failed => "failed",
        }
    }
}

/// A window as stored: RFC 3339 with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredWindow {
    /// Start, inclusive.
    pub from: DateTime<Utc>,
    /// End, inclusive.
    pub to: DateTime<Utc>,
}

impl From<Window> for StoredWindow {
    fn from(w: Window) -> Self {
        StoredWindow {
            from: w.from,
            to: w.to,
        }
    }
}

/// The counters of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Search pages read.
    pub pages: u64,
    /// Hits read from Elasticsearch (the two-step fetch's key scan included).
    pub events_fetched: u64,
    /// Hits read by the two-step fetch's key scan (stage 1's join keys).
    #[serde(default)]
    pub key_scan_events: u64,
    /// Fetches made in two steps (a run makes one fetch; backfill one per chunk).
    #[serde(default)]
    pub two_step_fetches: u64,
    /// Hits that matched at least one stage.
    pub candidates: u64,
    /// Hits skipped as unreadable (ids in `bad_events`).
    pub bad_events: u64,
    /// Sequences the matcher completed (before dedup and cap).
    pub sequences: u64,
    /// Sequences dropped by the matcher's memory cap (the oldest; see `warnings`).
    pub sequences_dropped: u64,
    /// Sequences whose alerts all existed already.
    pub duplicates_skipped: u64,
    /// New sequences left out by `max_signals` (the oldest).
    pub alerts_truncated: u64,
    /// Shell alerts created (Kibana's "alerts created": building blocks excluded).
    pub alerts_created: u64,
    /// Building-block alerts created.
    pub building_blocks_created: u64,
    /// Alert documents that already existed when written (409).
    pub write_conflicts: u64,
    /// Source values left out of alerts as not fitting ECS, as Kibana leaves them out.
    #[serde(default)]
    pub source_values_dropped: u64,
    /// Source fields removed from alerts the alerts index refused, which were then written
    /// without them.
    #[serde(default)]
    pub alert_fields_removed: u64,
    /// Alert documents given asset criticality or entity risk (shells and building blocks).
    #[serde(default)]
    pub alerts_enriched: u64,
    /// Enrichment searches that failed (their batch's alerts were written without them).
    #[serde(default)]
    pub enrichment_failures: u64,
}

/// Milliseconds spent in each phase.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseDurations {
    /// Reading state and planning the window.
    pub plan_ms: u64,
    /// Opening the point in time, paging and correlating (they overlap: pages stream).
    pub search_ms: u64,
    /// Looking up existing alerts.
    pub dedup_ms: u64,
    /// Fetching the full events of new sequences, building alerts and enriching them.
    pub enrich_ms: u64,
    /// Writing alerts.
    pub write_ms: u64,
    /// The whole run.
    pub total_ms: u64,
}

/// One skipped event, named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedEvent {
    /// Index.
    pub index: String,
    /// Document id.
    pub id: String,
    /// Why.
    pub reason: String,
}

/// The rule a document is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRef {
    /// Static `rule_id`.
    pub rule_id: String,
    /// The uuid hashed into alert ids.
    pub uuid: String,
    /// Name.
    pub name: String,
}

/// The `run` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDoc {
    /// Always `run`.
    #[serde(rename = "type")]
    pub doc_type: String,
    /// Unique id of the run (also the alerts' `kibana.alert.rule.execution.uuid`).
    pub run_id: String,
    /// Which rule.
    pub rule: RuleRef,
    /// `scheduled`, `once` or `backfill`.
    pub mode: String,
    /// The replica that ran it.
    pub instance: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// The window queried.
    pub window: StoredWindow,
    /// Time nobody covered (beyond `max_catchup`), if any.
    pub gap: Option<StoredWindow>,
    /// Outcome.
    pub status: RunStatus,
    /// Warnings, in the order they arose.
    pub warnings: Vec<String>,
    /// The error that failed the run, if it failed.
    pub error: Option<String>,
    /// The kind of that error (`paging`, `write`, `missing_privileges`, …), for dashboards
    /// and alerting on run failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// How the events were fetched: `two-step`, or `one query (<why>)`; empty if the run
    /// failed before fetching.
    #[serde(default)]
    pub fetch_strategy: String,
    /// Counters.
    pub counts: RunCounts,
    /// The first skipped events, named.
    pub bad_events: Vec<SkippedEvent>,
    /// Phase durations.
    pub durations: PhaseDurations,
    /// seqwatch version.
    pub version: String,
}

/// The `checkpoint` document of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointDoc {
    /// Always `checkpoint`.
    #[serde(rename = "type")]
    pub doc_type: String,
    /// Which rule.
    pub rule: RuleRef,
    /// The last window whose alerts were all written.
    pub last_success: StoredWindow,
    /// The run that wrote it.
    pub run_id: String,
    /// When.
    pub updated_at: DateTime<Utc>,
}

/// The `lease` document of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseDoc {
    /// Always `lease`.
    #[serde(rename = "type")]
    pub doc_type: String,
    /// Which rule.
    pub rule: RuleRef,
    /// The replica holding it.
    pub owner: String,
    /// Until when; after it, another replica may take it.
    pub expires_at: DateTime<Utc>,
}

/// `_id` of a rule's checkpoint.
pub fn checkpoint_id(rule_uuid: &str) -> String {
    format!("checkpoint-{rule_uuid}")
}

/// `_id` of a rule's lease.
pub fn lease_id(rule_uuid: &str) -> String {
    format!("lease-{rule_uuid}")
}

/// The status from the run's outcome: an error or a gap fails it, warnings make it partial.
pub fn status_of(error: bool, gap: bool, warnings: &[String]) -> RunStatus {
    if error || gap {
        RunStatus::Failed
    } else if !warnings.is_empty() {
        RunStatus::PartialFailure
    } else {
        RunStatus::Succeeded
    }
}

/// The alert ids of one sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceIds {
    /// The shell alert.
    pub shell: String,
    /// The building blocks, in stage order.
    pub blocks: Vec<String>,
}

/// Which sequences to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Indices (into the input, ascending) of the sequences to write.
    pub write: Vec<usize>,
    /// Sequences whose every alert exists already.
    pub duplicates: usize,
    /// New sequences left out by the cap (the oldest ones).
    pub truncated: usize,
}

/// Deduplicate, then cap: a sequence is a duplicate only when all its alerts exist (a
/// half-written one is written again; the existing documents answer 409); of the rest, the
/// latest `cap` are kept. `sequences` must be ascending by last event.
pub fn select_new(sequences: &[SequenceIds], existing: &HashSet<String>, cap: usize) -> Selection {
    let mut fresh = Vec::new();
    let mut duplicates = 0;
    for (i, s) in sequences.iter().enumerate() {
        let complete = existing.contains(&s.shell) && s.blocks.iter().all(|b| existing.contains(b));
        if complete {
            duplicates += 1;
        } else {
            fresh.push(i);
        }
    }
    let truncated = fresh.len().saturating_sub(cap);
    Selection {
        write: fresh.split_off(truncated),
        duplicates,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<SequenceIds> {
        (0..n)
            .map(|i| SequenceIds {
                shell: format!("s{i}"),
                blocks: vec![format!("b{i}a"), format!("b{i}b")],
            })
            .collect()
    }

    #[test]
    fn dedup_before_cap_keeps_latest_new() {
        let seqs = ids(6);
        // s4 and s5 (the latest) exist in full: they must not use up the cap.
        let existing: HashSet<String> = ["s4", "b4a", "b4b", "s5", "b5a", "b5b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let sel = select_new(&seqs, &existing, 2);
        assert_eq!(sel.write, vec![2, 3]);
        assert_eq!(sel.duplicates, 2);
        assert_eq!(sel.truncated, 2);
    }

    #[test]
    fn half_written_sequence_is_written_again() {
        let seqs = ids(1);
        let existing: HashSet<String> = ["s0", "b0a"].iter().map(|s| s.to_string()).collect();
        let sel = select_new(&seqs, &existing, 100);
        assert_eq!(
            sel.write,
            vec![0],
            "a missing building block makes the sequence incomplete"
        );
        assert_eq!(sel.duplicates, 0);
    }

    #[test]
    fn exactly_cap_is_not_truncated() {
        let sel = select_new(&ids(3), &HashSet::new(), 3);
        assert_eq!((sel.write.len(), sel.truncated), (3, 0));
    }

    #[test]
    fn status_follows_kibana_precedence() {
        assert_eq!(status_of(false, false, &[]), RunStatus::Succeeded);
        assert_eq!(
            status_of(false, false, &["w".into()]),
            RunStatus::PartialFailure
        );
        assert_eq!(status_of(false, true, &["w".into()]), RunStatus::Failed);
        assert_eq!(status_of(true, false, &[]), RunStatus::Failed);
        assert_eq!(
            serde_json::to_value(RunStatus::PartialFailure).unwrap(),
            "partial failure"
        );
    }
}
