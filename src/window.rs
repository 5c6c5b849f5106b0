//! Which time window a run covers. Pure arithmetic over instants, so the daemon, `once` and
//! `backfill` agree on it and tests can pin it down without a clock.
//!
//! A scheduled run at `t` covers `[t - lookback, t]`, both ends inclusive, like Kibana's
//! `now-9m`..`now` range filter (`build_events_query.ts`, `gte`/`lte`). Consecutive runs overlap by
//! `lookback - interval` (4 minutes for the default rule), so a sequence no longer than that
//! overlap is always wholly inside some run's window.
//!
//! After downtime the window widens back to the last successful run, keeping the same overlap,
//! so nothing falls between runs. Widening is bounded by `max_catchup`; what lies beyond is a
//! gap, reported, never silently skipped.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::time::Duration;

/// An inclusive time range `[from, to]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start, inclusive.
    pub from: DateTime<Utc>,
    /// End, inclusive.
    pub to: DateTime<Utc>,
}

impl Window {
    /// Length of the window.
    pub fn len(&self) -> Duration {
        (self.to - self.from).to_std().unwrap_or_default()
    }

    /// True when `from == to`.
    pub fn is_empty(&self) -> bool {
        self.from >= self.to
    }

    /// True when `[a, b]` lies inside this window.
    pub fn contains_span(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
        self.from <= a && b <= self.to
    }
}

/// The schedule of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Time between runs.
    pub interval: Duration,
    /// How far back each run looks.
    pub lookback: Duration,
    /// How far back a run may widen after downtime.
    pub max_catchup: Duration,
}

/// What one run should cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedWindow {
    /// The window to query.
    pub window: Window,
    /// Time that no run covered and this one cannot reach (beyond `max_catchup`).
    pub gap: Option<Window>,
}

fn chrono(d: Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}

impl Schedule {
    /// The overlap two consecutive scheduled windows share.
    pub fn overlap(&self) -> Duration {
        self.lookback.saturating_sub(self.interval)
    }

    /// The window of a run at `now`, given the end of the last successful window.
    pub fn plan(
        &self,
        now: DateTime<Utc>,
        last_success_to: Option<DateTime<Utc>>,
    ) -> PlannedWindow {
        let normal_from = now - chrono(self.lookback);
        let Some(last) = last_success_to.filter(|l| *l <= now) else {
            return PlannedWindow {
                window: Window {
                    from: normal_from,
                    to: now,
                },
                gap: None,
            };
        };
        let wanted_from = (last - chrono(self.overlap())).min(normal_from);
        let earliest = now - chrono(self.max_catchup.max(self.lookback));
        if wanted_from >= earliest {
            return PlannedWindow {
                window: Window {
                    from: wanted_from,
                    to: now,
                },
                gap: None,
            };
        }
        // Everything after `last` that the widened run cannot reach was seen by nobody.
        let gap = (earliest > last).then_some(Window {
            from: last,
            to: earliest,
        });
        PlannedWindow {
            window: Window {
                from: earliest,
                to: now,
            },
            gap,
        }
    }

    /// The instants of the scheduled runs whose windows end within `[from, to]`, on the grid
    /// `to, to - interval, …` (the last run ends exactly at `to`).
    pub fn ticks(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let step = chrono(self.interval.max(Duration::from_millis(1)));
        let mut out = Vec::new();
        let mut t = to;
        while t >= from {
            out.push(t);
            t -= step;
        }
        out.reverse();
        out
    }

    /// True when a sequence spanning `[first, last]` lies wholly inside the window of some
    /// scheduled run ending at one of `ticks` (which must be ascending).
    pub fn covered_by_some_run(
        &self,
        ticks: &[DateTime<Utc>],
        first: DateTime<Utc>,
        last: DateTime<Utc>,
    ) -> bool {
        // The first tick at or after `last` is the run whose window starts latest while still
        // containing `last`; if it doesn't reach back to `first`, no other run does either.
        let i = ticks.partition_point(|t| *t < last);
        ticks
            .get(i)
            .is_some_and(|t| *t - chrono(self.lookback) <= first)
    }
}

/// Splits `[from, to]` into `parts` contiguous chunks, each extended backwards by `overlap` so a
/// sequence no longer than `overlap` lies wholly inside at least one chunk.
pub fn split_with_overlap(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    parts: usize,
    overlap: Duration,
) -> Vec<Window> {
    let parts = parts.max(1) as i64;
    let total = (to - from).num_milliseconds().max(0);
    let mut out = Vec::new();
    for i in 0..parts {
        let start = from + ChronoDuration::milliseconds(total * i / parts);
        let end = if i + 1 == parts {
            to
        } else {
            from + ChronoDuration::milliseconds(total * (i + 1) / parts)
        };
        let start = if i == 0 {
            start
        } else {
            (start - chrono(overlap)).max(from)
        };
        out.push(Window {
            from: start,
            to: end,
        });
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    const M: Duration = Duration::from_secs(60);
    fn sched() -> Schedule {
        Schedule {
            interval: 5 * M,
            lookback: 9 * M,
            max_catchup: 60 * M,
        }
    }

    #[test]
    fn first_run_is_now_minus_lookback() {
        let p = sched().plan(t("2026-11-29T12:00:00Z"), None);
        assert_eq!(
            p.window,
            Window {
                from: t("2026-11-29T11:51:00Z"),
                to: t("2026-11-29T12:00:00Z")
            }
        );
        assert_eq!(p.gap, None);
    }

    #[test]
    fn on_time_run_keeps_the_normal_window() {
        let p = sched().plan(t("2026-11-29T12:05:00Z"), Some(t("2026-11-29T12:00:00Z")));
        assert_eq!(p.window.from, t("2026-11-29T11:56:00Z"));
        assert_eq!(p.gap, None);
    }

    #[test]
    fn downtime_widens_back_to_last_success_with_overlap() {
        // Last success ended 12:00; 30 minutes down; the next run reaches back to 11:56.
        let p = sched().plan(t("2026-11-29T12:30:00Z"), Some(t("2026-11-29T12:00:00Z")));
        assert_eq!(
            p.window,
            Window {
                from: t("2026-11-29T11:56:00Z"),
                to: t("2026-11-29T12:30:00Z")
            }
        );
        assert_eq!(p.gap, None);
    }

    #[test]
    fn widening_is_bounded_and_the_rest_is_a_gap() {
        let p = sched().plan(t("2026-11-29T15:00:00Z"), Some(t("2026-11-29T12:00:00Z")));
        assert_eq!(p.window.from, t("2026-11-29T14:00:00Z"));
        assert_eq!(
            p.gap,
            Some(Window {
                from: t("2026-11-29T12:00:00Z"),
                to: t("2026-11-29T14:00:00Z")
            })
        );
    }

    #[test]
    fn last_success_in_the_future_is_ignored() {
        let p = sched().plan(t("2026-11-29T12:00:00Z"), Some(t("2026-11-29T13:00:00Z")));
        assert_eq!(p.window.from, t("2026-11-29T11:51:00Z"));
    }

    #[test]
    fn ticks_end_at_to_and_step_back_by_interval() {
        let ticks = sched().ticks(t("2026-11-29T12:00:00Z"), t("2026-11-29T12:12:00Z"));
        assert_eq!(
            ticks,
            vec![
                t("2026-11-29T12:02:00Z"),
                t("2026-11-29T12:07:00Z"),
                t("2026-11-29T12:12:00Z")
            ]
        );
    }

    #[test]
    fn coverage_by_scheduled_windows() {
        let s = sched();
        let ticks = s.ticks(t("2026-11-29T12:00:00Z"), t("2026-11-29T13:00:00Z"));
        // A 10-second sequence anywhere in the range is inside some 9-minute window.
        assert!(s.covered_by_some_run(
            &ticks,
            t("2026-11-29T12:04:55Z"),
            t("2026-11-29T12:05:05Z")
        ));
        // A 5-minute one straddling a tick at 12:05 is not (the overlap is 4 minutes).
        assert!(!s.covered_by_some_run(
            &ticks,
            t("2026-11-29T12:00:30Z"),
            t("2026-11-29T12:05:30Z")
        ));
        // After the last tick nothing covers it.
        assert!(!s.covered_by_some_run(
            &ticks,
            t("2026-11-29T13:00:01Z"),
            t("2026-11-29T13:00:02Z")
        ));
    }

    #[test]
    fn chunks_cover_the_range_with_overlap() {
        let w = split_with_overlap(
            t("2026-11-29T00:00:00Z"),
            t("2026-11-30T00:00:00Z"),
            4,
            Duration::from_secs(10),
        );
        assert_eq!(w.len(), 4);
        assert_eq!(w[0].from, t("2026-11-29T00:00:00Z"));
        assert_eq!(w[1].from, t("2026-11-29T05:59:50Z"));
        assert_eq!(w[3].to, t("2026-11-30T00:00:00Z"));
        for pair in w.windows(2) {
            assert!(pair[1].from < pair[0].to, "chunks overlap");
        }
    }
}
