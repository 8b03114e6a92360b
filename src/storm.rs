//! Storm control: at most `SENTRY_K8S_MAX_EVENTS_PER_ISSUE` occurrences reported per Sentry
//! issue (fingerprint) in each `SENTRY_K8S_ISSUE_WINDOW`. The rest are counted, not sent;
//! the next occurrence reported for the issue says how many were held back since the one
//! before it. A suppressed occurrence is decided like a delivered one: never sent later.
//!
//! Bounded: `SENTRY_K8S_STORM_ISSUES` issues tracked (least recently seen forgotten first,
//! which only forgets a window's count).

use std::hash::{BuildHasher, Hash};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::labels::label_enum;

label_enum! {
    /// The reason of a suppressed occurrence, for `sentry_k8s_occurrences_suppressed_total`:
    /// the common ones by name, anything else as `other` (reasons are free text).
    pub enum StormReason {
        BackOff = "BackOff",
        Failed = "Failed",
        FailedScheduling = "FailedScheduling",
        Unhealthy = "Unhealthy",
        FailedMount = "FailedMount",
        FailedCreate = "FailedCreate",
        Evicted = "Evicted",
        OomKilled = "OOMKilled",
        Error = "Error",
        Other = "other",
    }
}

impl StormReason {
    pub fn of(reason: &str) -> Self {
        Self::ALL
            .iter()
            .copied()
            .find(|r| *r != Self::Other && r.as_str() == reason)
            .unwrap_or(Self::Other)
    }
}

/// What to do with one occurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Report it; `suppressed` were held back for its issue since the last one reported.
    Report { suppressed: u64 },
    /// Over the limit: count it, do not send it. `first`: the first held back for this
    /// issue since its last report (worth one log line; the rest are counted).
    Suppress { first: bool },
}

struct Window {
    started: Instant,
    reported: u64,
    /// Held back since the last occurrence reported.
    suppressed: u64,
}

pub struct StormControl {
    limit: u64,
    window: Duration,
    issues: LruCache<u64, Window>,
    hasher: std::hash::RandomState,
}

impl StormControl {
    /// `limit` 0: off.
    pub fn new(limit: usize, window: Duration, issues: NonZeroUsize) -> Self {
        Self {
            limit: limit as u64,
            window,
            issues: crate::bounded::lru(issues),
            hasher: std::hash::RandomState::new(),
        }
    }

    pub fn tracked(&self) -> usize {
        self.issues.len()
    }

    /// The decision for an occurrence of the issue `fingerprint` at `now`.
    pub fn admit<S: Hash>(&mut self, fingerprint: &[S], now: Instant) -> Admit {
        if self.limit == 0 {
            return Admit::Report { suppressed: 0 };
        }
        let key = self.hasher.hash_one(fingerprint);
        let window = self.window;
        let entry = self.issues.get_or_insert_mut(key, || Window {
            started: now,
            reported: 0,
            suppressed: 0,
        });
        if now.saturating_duration_since(entry.started) >= window {
            entry.started = now;
            entry.reported = 0;
        }
        if entry.reported >= self.limit {
            entry.suppressed += 1;
            return Admit::Suppress {
                first: entry.suppressed == 1,
            };
        }
        entry.reported += 1;
        Admit::Report {
            suppressed: std::mem::take(&mut entry.suppressed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(name: &str) -> Vec<String> {
        vec![
            "shop".into(),
            "Deployment".into(),
            name.into(),
            "BackOff".into(),
        ]
    }

    #[test]
    fn at_most_the_limit_per_window_and_the_next_report_carries_what_was_held_back() {
        let start = Instant::now();
        let mut storm =
            StormControl::new(3, Duration::from_secs(3600), NonZeroUsize::new(10).unwrap());
        let web = issue("web");
        let decisions: Vec<Admit> = (0..10).map(|_| storm.admit(&web, start)).collect();
        assert_eq!(&decisions[..3], &[Admit::Report { suppressed: 0 }; 3]);
        assert_eq!(decisions[3], Admit::Suppress { first: true });
        assert!(
            decisions[4..]
                .iter()
                .all(|d| *d == Admit::Suppress { first: false })
        );
        // Another issue has its own budget.
        assert_eq!(
            storm.admit(&issue("api"), start),
            Admit::Report { suppressed: 0 }
        );
        // A new window: the first report says 7 were held back.
        let later = start + Duration::from_secs(3600);
        assert_eq!(storm.admit(&web, later), Admit::Report { suppressed: 7 });
        assert_eq!(storm.admit(&web, later), Admit::Report { suppressed: 0 });
    }

    #[test]
    fn a_limit_of_zero_is_off_and_tracking_is_bounded() {
        let now = Instant::now();
        let mut off = StormControl::new(0, Duration::from_secs(1), NonZeroUsize::new(1).unwrap());
        for _ in 0..100 {
            assert_eq!(
                off.admit(&issue("web"), now),
                Admit::Report { suppressed: 0 }
            );
        }
        let mut storm =
            StormControl::new(1, Duration::from_secs(60), NonZeroUsize::new(2).unwrap());
        for name in ["a", "b", "c", "d"] {
            storm.admit(&issue(name), now);
        }
        assert_eq!(storm.tracked(), 2);
        assert_eq!(StormReason::of("BackOff"), StormReason::BackOff);
        assert_eq!(StormReason::of("SomethingNew"), StormReason::Other);
        assert_eq!(StormReason::of("other"), StormReason::Other);
    }
}
