//! Event order: the [`Ordinal`] every candidate carries, compared exactly like Elasticsearch's
//! `execution/search/Ordinal.java` (timestamp, then the explicit tiebreaker with nulls last, then
//! the implicit `_shard_doc` tiebreaker). Owns nothing else.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// Nanoseconds per millisecond; ES builds missing-event ranges on epoch milliseconds.
pub const NANOS_PER_MILLI: i64 = 1_000_000;

/// Whole epoch milliseconds of a nanosecond timestamp, rounded towards negative infinity the way
/// `Instant.toEpochMilli` does (ES passes that to the missing-event range queries).
pub fn floor_millis(timestamp_ns: i64) -> i64 {
    timestamp_ns.div_euclid(NANOS_PER_MILLI)
}

/// A value of the rule's `tiebreaker_field`.
///
/// Values of one variant compare like their Java counterparts (`Long`, `Double`, `String`).
/// ES cannot compare values of different types (a `ClassCastException`); the matcher rejects a
/// stream that mixes them, and the cross-variant order here exists only to make `Ord` total.
#[derive(Debug, Clone)]
pub enum TieBreaker {
    /// An integral value (`long`, `integer`, … fields).
    Int(i64),
    /// A floating-point value.
    Float(f64),
    /// A string value (`keyword`).
    Str(Arc<str>),
}

impl TieBreaker {
    /// A small number naming the variant, used to detect streams that mix tiebreaker types.
    pub fn kind(&self) -> u8 {
        match self {
            TieBreaker::Int(_) => 0,
            TieBreaker::Float(_) => 1,
            TieBreaker::Str(_) => 2,
        }
    }
}

impl Ord for TieBreaker {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (TieBreaker::Int(a), TieBreaker::Int(b)) => a.cmp(b),
            // Java's Double.compareTo: all NaNs are equal and above +inf; -0.0 < 0.0.
            (TieBreaker::Float(a), TieBreaker::Float(b)) => match (a.is_nan(), b.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => a.total_cmp(b),
            },
            // Java's String.compareTo compares UTF-16 code units, not code points.
            (TieBreaker::Str(a), TieBreaker::Str(b)) => a.encode_utf16().cmp(b.encode_utf16()),
            _ => self.kind().cmp(&other.kind()),
        }
    }
}

impl PartialOrd for TieBreaker {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for TieBreaker {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for TieBreaker {}

impl fmt::Display for TieBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TieBreaker::Int(v) => write!(f, "{v}"),
            TieBreaker::Float(v) => write!(f, "{v}"),
            TieBreaker::Str(v) => write!(f, "{v:?}"),
        }
    }
}

/// The position of an event in the stream, as ES orders hits of a sequence query.
///
/// Order: `timestamp_ns`; on a tie, the explicit tiebreakers when both are present, a present one
/// before an absent one (nulls last), and then `implicit` (ES's `_shard_doc`, which the caller
/// stands in for with the input order).
#[derive(Debug, Clone)]
pub struct Ordinal {
    /// The event timestamp in nanoseconds since the epoch.
    pub timestamp_ns: i64,
    /// The explicit tiebreaker value, if the rule has a tiebreaker field and the event a value.
    pub tiebreaker: Option<TieBreaker>,
    /// The implicit tiebreaker (ES: the PIT `_shard_doc`); unique per event.
    pub implicit: u64,
}

impl Ordinal {
    /// An ordinal without an explicit tiebreaker.
    pub fn new(timestamp_ns: i64, implicit: u64) -> Self {
        Ordinal {
            timestamp_ns,
            tiebreaker: None,
            implicit,
        }
    }

    /// An ordinal with an explicit tiebreaker value.
    pub fn with_tiebreaker(timestamp_ns: i64, tiebreaker: TieBreaker, implicit: u64) -> Self {
        Ordinal {
            timestamp_ns,
            tiebreaker: Some(tiebreaker),
            implicit,
        }
    }
}

impl Ord for Ordinal {
    fn cmp(&self, other: &Self) -> Ordering {
        self.timestamp_ns.cmp(&other.timestamp_ns).then_with(|| {
            match (&self.tiebreaker, &other.tiebreaker) {
                (Some(a), Some(b)) => a.cmp(b).then(self.implicit.cmp(&other.implicit)),
                // Ordinal.compareTo: "if the other tiebreaker is null, it is higher (nulls are last)".
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => self.implicit.cmp(&other.implicit),
            }
        })
    }
}

impl PartialOrd for Ordinal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ordinal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ordinal {}

impl fmt::Display for Ordinal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[timestamp_ns={}", self.timestamp_ns)?;
        if let Some(tb) = &self.tiebreaker {
            write!(f, ", tiebreaker={tb}")?;
        }
        write!(f, ", implicit={}]", self.implicit)
    }
}
