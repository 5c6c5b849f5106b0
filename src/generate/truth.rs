//! Ground truth: which generated sequences the rule must find and which near-misses it must
//! not. Trees register a plan when they are scheduled; the verdict is decided when their
//! events are emitted, from the emitted timestamps, so events cut off by the range end can
//! never leave a phantom sequence in the truth.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// The rule's maxspan, 10 s. A sequence matches when the second event is at most this much
/// after the first (inclusive; `exceedsMaxSpan` uses `>` in ES `SequenceMatcher.java`).
pub const MAXSPAN_MS: i64 = 10_000;

/// What kind of npm install tree a sequence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TreeKind {
    /// Lifecycle scripts of ordinary packages (node-gyp, esbuild, husky, core-js, ...).
    Benign,
    /// Shai-Hulud wave 1: `postinstall: node bundle.js`.
    ShaiHulud1,
    /// Shai-Hulud 2.0: `preinstall: node setup_bun.js`.
    ShaiHulud2,
}

impl TreeKind {
    /// The label used in the truth file.
    pub fn as_str(self) -> &'static str {
        match self {
            TreeKind::Benign => "benign",
            TreeKind::ShaiHulud1 => "shai-hulud-1",
            TreeKind::ShaiHulud2 => "shai-hulud-2",
        }
    }
}

/// Why a tree must not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NearMiss {
    /// `process.args` holds `Install`, and `==` is case-sensitive.
    Case,
    /// The first child starts more than 10 s after the npm process.
    Late,
    /// `npm install --ignore-scripts`: no child at all.
    IgnoreScripts,
    /// FDR reported the npm start as `SyntheticProcessRollup2`.
    SyntheticParent,
    /// FDR reported the child start as `SyntheticProcessRollup2`.
    SyntheticChild,
    /// FDR child without `ParentBaseFileName`, so no `process.parent.name`.
    NoParentName,
    /// The child only forked; `fork` is not in the rule's actions.
    ForkOnly,
    /// The host is macOS; the v2 rule wants `host.os.type == "linux"`.
    Macos,
    /// `npm ci` / `npm i`: no `install` argument.
    NoInstallArg,
}

impl NearMiss {
    /// Short code for the truth file and the summary.
    pub fn code(self) -> &'static str {
        match self {
            NearMiss::Case => "case",
            NearMiss::Late => "late",
            NearMiss::IgnoreScripts => "ignore-scripts",
            NearMiss::SyntheticParent => "synthetic-parent",
            NearMiss::SyntheticChild => "synthetic-child",
            NearMiss::NoParentName => "no-parent-name",
            NearMiss::ForkOnly => "fork-only",
            NearMiss::Macos => "macos",
            NearMiss::NoInstallArg => "no-install-arg",
        }
    }

    fn why(self) -> &'static str {
        match self {
            NearMiss::Case => "process.args has \"Install\", and == is case-sensitive",
            NearMiss::Late => {
                "the first child starts more than 10 s after the npm process (maxspan=10s)"
            }
            NearMiss::IgnoreScripts => {
                "npm install --ignore-scripts starts no child, so stage 2 never comes"
            }
            NearMiss::SyntheticParent => {
                "the npm start is a SyntheticProcessRollup2, not exec or ProcessRollup2"
            }
            NearMiss::SyntheticChild => {
                "the child start is a SyntheticProcessRollup2, not exec or ProcessRollup2"
            }
            NearMiss::NoParentName => {
                "the FDR child has no ParentBaseFileName, so process.parent.name is missing"
            }
            NearMiss::ForkOnly => "the child only forked (event.action fork) and never exec'd",
            NearMiss::Macos => "host.os.type is macos; the v2 rule matches linux only",
            NearMiss::NoInstallArg => "process.args has no \"install\" (npm ci / npm i)",
        }
    }
}

/// What a registered tree is expected to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// A match, provided the emitted first child is within maxspan.
    Expected,
    /// No match, for this reason.
    NearMiss(NearMiss),
}

/// A planned tree waiting for its events to be emitted.
#[derive(Debug)]
pub(crate) struct TreePlan {
    pub(crate) kind: TreeKind,
    pub(crate) plan: Plan,
    pub(crate) note: Option<&'static str>,
    /// The record is complete with the stage-0 event alone (no child will come).
    pub(crate) single_event: bool,
    stage0: Option<(TruthEventRef, i64, String)>,
}

/// One line of the truth file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthRecord {
    /// True for a sequence the rule must return; false for a near-miss.
    pub expected: bool,
    /// `benign`, `shai-hulud-1` or `shai-hulud-2`.
    pub kind: String,
    /// Near-miss code (absent on expected lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near_miss: Option<String>,
    /// Why a near-miss must not match (absent on expected lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// Extra context (e.g. "maxspan boundary").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `[host.id, process.entity_id of the stage-0 event]`.
    pub join_keys: Vec<String>,
    /// The stage-0 and (when present) stage-1 events.
    pub events: Vec<TruthEventRef>,
    /// `host.name`.
    pub host: String,
    /// Stage-1 `@timestamp` minus stage-0 `@timestamp`, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<i64>,
}

/// An event reference as Elasticsearch returns it in a sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthEventRef {
    /// `_index`.
    #[serde(rename = "_index")]
    pub index: String,
    /// `_id`.
    #[serde(rename = "_id")]
    pub id: String,
}

/// Open trees and the records decided so far.
#[derive(Debug, Default)]
pub(crate) struct Trees {
    next_id: u64,
    open: HashMap<u64, TreePlan>,
    decided: Vec<TruthRecord>,
}

/// Host identity needed for a record.
pub(crate) struct HostLabel<'a> {
    pub(crate) id: &'a str,
    pub(crate) name: &'a str,
}

impl Trees {
    /// Registers a tree and returns its id for `Mark`s.
    pub(crate) fn register(
        &mut self,
        kind: TreeKind,
        plan: Plan,
        note: Option<&'static str>,
        single_event: bool,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(
            id,
            TreePlan {
                kind,
                plan,
                note,
                single_event,
                stage0: None,
            },
        );
        id
    }

    /// Number of trees still waiting for events.
    pub(crate) fn open_len(&self) -> usize {
        self.open.len()
    }

    /// Records that tree `tree`'s stage-0 candidate was emitted.
    pub(crate) fn on_stage0(
        &mut self,
        tree: u64,
        at: TruthEventRef,
        ts: i64,
        entity_id: &str,
        host: HostLabel<'_>,
    ) {
        let Some(plan) = self.open.get_mut(&tree) else {
            return;
        };
        plan.stage0 = Some((at, ts, entity_id.to_string()));
        if plan.single_event {
            if let Some(plan) = self.open.remove(&tree) {
                self.decide(plan, None, host);
            }
        }
    }

    /// Records that a first-child candidate of tree `tree` was emitted; the first one decides.
    pub(crate) fn on_child(&mut self, tree: u64, at: TruthEventRef, ts: i64, host: HostLabel<'_>) {
        let ready = self.open.get(&tree).is_some_and(|p| p.stage0.is_some());
        if !ready {
            return;
        }
        if let Some(plan) = self.open.remove(&tree) {
            self.decide(plan, Some((at, ts)), host);
        }
    }

    fn decide(&mut self, plan: TreePlan, child: Option<(TruthEventRef, i64)>, host: HostLabel<'_>) {
        let Some((s0, s0_ts, entity_id)) = plan.stage0 else {
            return;
        };
        let delay = child.as_ref().map(|(_, ts)| ts - s0_ts);
        let verdict = match (plan.plan, delay) {
            (Plan::Expected, Some(d)) if d > 0 && d <= MAXSPAN_MS => None,
            (Plan::Expected, _) => Some(NearMiss::Late),
            (Plan::NearMiss(n), _) => Some(n),
        };
        let mut events = vec![s0];
        if let Some((c, _)) = child {
            events.push(c);
        }
        self.decided.push(TruthRecord {
            expected: verdict.is_none(),
            kind: plan.kind.as_str().to_string(),
            near_miss: verdict.map(|n| n.code().to_string()),
            why: verdict.map(|n| n.why().to_string()),
            note: plan.note.map(str::to_string),
            join_keys: vec![host.id.to_string(), entity_id],
            events,
            host: host.name.to_string(),
            delay_ms: delay,
        });
    }

    /// The records decided since the last call, in emission order of their last event.
    pub(crate) fn drain(&mut self) -> std::vec::Drain<'_, TruthRecord> {
        self.decided.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: &str) -> TruthEventRef {
        TruthEventRef {
            index: "i".into(),
            id: id.into(),
        }
    }
    fn host() -> HostLabel<'static> {
        HostLabel { id: "h", name: "n" }
    }

    #[test]
    fn maxspan_is_inclusive_and_first_child_decides() {
        // ES SequenceMatcher.exceedsMaxSpan: reject only when delta > maxspan, so 10 000 ms matches.
        let mut t = Trees::default();
        let a = t.register(TreeKind::Benign, Plan::Expected, None, false);
        t.on_stage0(a, at("s0"), 1_000, "E", host());
        t.on_child(a, at("c1"), 11_000, host());
        t.on_child(a, at("c2"), 11_500, host());
        let b = t.register(TreeKind::Benign, Plan::Expected, None, false);
        t.on_stage0(b, at("s0b"), 1_000, "F", host());
        t.on_child(b, at("late"), 11_001, host());
        let got: Vec<TruthRecord> = t.drain().collect();
        assert_eq!(
            got.len(),
            2,
            "the second child of a decided tree adds nothing"
        );
        assert!(got[0].expected);
        assert_eq!(got[0].events, vec![at("s0"), at("c1")]);
        assert_eq!(got[0].join_keys, vec!["h".to_string(), "E".to_string()]);
        assert!(!got[1].expected);
        assert_eq!(got[1].near_miss.as_deref(), Some("late"));
        assert_eq!(t.open_len(), 0);
    }

    #[test]
    fn single_event_near_miss_is_decided_at_stage0() {
        let mut t = Trees::default();
        let a = t.register(
            TreeKind::Benign,
            Plan::NearMiss(NearMiss::IgnoreScripts),
            None,
            true,
        );
        t.on_stage0(a, at("s0"), 5, "E", host());
        let got: Vec<TruthRecord> = t.drain().collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].events.len(), 1);
        assert_eq!(got[0].near_miss.as_deref(), Some("ignore-scripts"));
        assert!(got[0].why.is_some());
    }
}
