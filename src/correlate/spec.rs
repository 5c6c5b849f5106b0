//! The shape of a sequence as the matcher needs it ([`SequenceSpec`]): how many stages, which are
//! missing-event stages `![…]`, the maxspan and whether an `until` exists. Validates the shape the
//! way ES's parser and `SequenceMatcher` constructor do, and precomputes stage roles.

use thiserror::Error;

/// One stage (`[…]` or `![…]`) of a sequence; `with runs=N` arrives already repeated N times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageSpec {
    /// True for a missing-event stage `![…]`: the sequence holds only if no such event exists.
    pub missing: bool,
}

/// What the matcher needs to know about a `sequence` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceSpec {
    /// The stages in query order.
    pub stages: Vec<StageSpec>,
    /// `with maxspan=…` in nanoseconds; `None` when the query has none.
    pub maxspan_ns: Option<i64>,
    /// True when the query has an `until […]` clause.
    pub has_until: bool,
}

/// A sequence shape ES would refuse, or a tail cap of zero.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    /// ES's parser: "A sequence requires a minimum of 2 queries".
    #[error("a sequence needs at least 2 stages, found {found}")]
    TooFewStages {
        /// How many stages the spec has.
        found: usize,
    },
    /// Every stage is a missing-event stage; ES needs at least one positive stage.
    #[error("a sequence needs at least one stage that is not a missing-event stage")]
    NoPositiveStage,
    /// ES requires `maxspan` for sequences with missing-event stages.
    #[error("missing-event stages (stage {stage}) require a maxspan")]
    MissingStageWithoutMaxspan {
        /// The first missing-event stage.
        stage: usize,
    },
    /// ES's parser: "A positive maxspan value is required".
    #[error("maxspan must be positive, found {maxspan_ns} ns")]
    NonPositiveMaxspan {
        /// The offending value.
        maxspan_ns: i64,
    },
    /// ES's `size` must be greater than 0.
    #[error("max_sequences must be greater than 0")]
    ZeroCap,
}

/// What part a stage plays, derived once from the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StageRole {
    /// A stage whose events are matched.
    Positive,
    /// A missing-event stage before the first positive stage.
    LeadingMissing,
    /// A missing-event stage between the two positive stages given.
    MiddleMissing { previous: usize, next: usize },
    /// A missing-event stage after the last positive stage.
    TrailingMissing,
}

/// The validated spec with stage roles precomputed.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub roles: Vec<StageRole>,
    pub first_positive: usize,
    pub last_positive: usize,
    /// `previous_positive[s]`: the positive stage before `s` (`SequenceMatcher.previousPositiveStage`).
    pub previous_positive: Vec<Option<usize>>,
    pub has_missing: bool,
    pub leading_missing: bool,
    pub trailing_missing: bool,
    pub maxspan_ns: Option<i64>,
    pub has_until: bool,
}

impl Layout {
    pub(crate) fn new(spec: &SequenceSpec) -> Result<Self, SpecError> {
        let count = spec.stages.len();
        if count < 2 {
            return Err(SpecError::TooFewStages { found: count });
        }
        let positive: Vec<usize> = (0..count).filter(|&s| !spec.stages[s].missing).collect();
        let (Some(&first_positive), Some(&last_positive)) = (positive.first(), positive.last())
        else {
            return Err(SpecError::NoPositiveStage);
        };
        if let Some(maxspan_ns) = spec.maxspan_ns {
            if maxspan_ns <= 0 {
                return Err(SpecError::NonPositiveMaxspan { maxspan_ns });
            }
        }
        let first_missing = spec.stages.iter().position(|s| s.missing);
        if let (Some(stage), None) = (first_missing, spec.maxspan_ns) {
            return Err(SpecError::MissingStageWithoutMaxspan { stage });
        }

        let mut roles = Vec::with_capacity(count);
        let mut previous_positive = Vec::with_capacity(count);
        let mut last_seen: Option<usize> = None;
        for stage in 0..count {
            previous_positive.push(last_seen);
            let role = if !spec.stages[stage].missing {
                StageRole::Positive
            } else if stage < first_positive {
                StageRole::LeadingMissing
            } else if stage > last_positive {
                StageRole::TrailingMissing
            } else {
                let next = positive
                    .iter()
                    .copied()
                    .find(|&p| p > stage)
                    .unwrap_or(last_positive);
                StageRole::MiddleMissing {
                    previous: last_seen.unwrap_or(first_positive),
                    next,
                }
            };
            roles.push(role);
            if !spec.stages[stage].missing {
                last_seen = Some(stage);
            }
        }
        Ok(Layout {
            roles,
            first_positive,
            last_positive,
            previous_positive,
            has_missing: first_missing.is_some(),
            leading_missing: spec.stages[0].missing,
            trailing_missing: spec.stages[count - 1].missing,
            maxspan_ns: spec.maxspan_ns,
            has_until: spec.has_until,
        })
    }

    pub(crate) fn stage_count(&self) -> usize {
        self.roles.len()
    }
}
