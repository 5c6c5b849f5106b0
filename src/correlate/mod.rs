//! Client-side correlation of EQL sequences with exactly Elasticsearch's semantics.
//!
//! The caller merges the hits of every stage (and of `until`) into one stream sorted by
//! [`Ordinal`], says which stages each event matches and with which join-key values, and pushes
//! the stream through a [`Matcher`]. The matcher owns the sequence state machine, `until`,
//! maxspan, missing-event checks and the tail cap; it does not parse EQL, evaluate conditions or
//! read JSON. ES sources it follows are cited where each rule is implemented.

pub mod key;
pub mod matcher;
pub mod ordinal;
pub mod spec;

pub use key::{
    expand_join_keys, CandidateKeys, EntryFields, KeyFields, KeyId, KeyInterner, KeyTarget,
    KeyTuple, KeyValue, NULL_KEY,
};
pub use matcher::{
    Candidate, CompletedSequence, MatchError, MatchOutcome, MatchStats, Matcher, StageMatch,
};
pub use ordinal::{floor_millis, Ordinal, TieBreaker, NANOS_PER_MILLI};
pub use spec::{SequenceSpec, SpecError, StageSpec};
