//! Occurrences, not objects: remembers what each event looked like when last seen, so a
//! relist, a watch restart or a duplicate delivery reports nothing, while a repeat (count,
//! `series.count` or `series.lastObservedTime` advanced) is reported once. A container's
//! terminations are keyed by pod and container; a later `finishedAt` is its next
//! occurrence (the restart count is not: the kubelet shows one instance's end with two
//! different counts, before and after the restart).
//!
//! An entry is a key and a progress mark; that pair is what a checkpoint would persist.
//!
//! Bounded twice: entries expire after the event TTL plus [`EXPIRY_MARGIN`] without being
//! seen (the apiserver has deleted the event by then), and the least recently seen entry
//! is evicted when the capacity is reached. Both evictions are counted by the caller.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lru::LruCache;

use crate::event::KubeEvent;
use crate::labels::label_enum;

/// Added to the event TTL before an entry expires: the apiserver's TTL runs from the
/// event's last write, which is never after we saw it.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(600);

label_enum! {
    /// What an observation of an event means.
    pub enum Verdict {
        /// Never seen: its first occurrence.
        New = "new",
        /// Seen before, and it has happened again since.
        Repeat = "repeat",
        /// Seen before, nothing new (a relist, a resent watch event, a label change).
        Duplicate = "duplicate",
    }
}

label_enum! {
    /// Why a remembered event was forgotten.
    pub enum Eviction {
        /// Not seen for the event TTL plus [`EXPIRY_MARGIN`]: the apiserver has deleted it.
        Expired = "expired",
        /// The capacity was reached: the least recently seen was forgotten.
        Capacity = "capacity",
    }
}

/// Entries evicted during one observation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evictions {
    pub expired: usize,
    pub capacity: usize,
}

impl Evictions {
    /// Each kind of eviction with its count.
    pub fn by_reason(&self) -> [(Eviction, usize); 2] {
        [
            (Eviction::Expired, self.expired),
            (Eviction::Capacity, self.capacity),
        ]
    }
}

/// The outcome of one observation: what it means, what it evicted, how many remain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    pub verdict: Verdict,
    pub evictions: Evictions,
    pub remembered: usize,
}

#[derive(Clone, Debug)]
struct Seen {
    legacy_count: Option<i64>,
    series_count: Option<i64>,
    series_last: Option<DateTime<Utc>>,
    finished: Option<DateTime<Utc>>,
    touched: Instant,
}

impl Seen {
    fn of(event: &KubeEvent, now: Instant) -> Self {
        Self {
            legacy_count: event.legacy_count,
            series_count: event.series_count,
            series_last: event.series_last_observed,
            finished: event.finished_at(),
            touched: now,
        }
    }

    fn advanced_by(&self, event: &KubeEvent) -> bool {
        event.legacy_count > self.legacy_count
            || event.series_count > self.series_count
            || event.series_last_observed > self.series_last
            || event.finished_at() > self.finished
    }

    /// Keeps the highest progress seen, so an out-of-order older copy cannot re-trigger.
    fn absorb(&mut self, event: &KubeEvent, now: Instant) {
        self.legacy_count = self.legacy_count.max(event.legacy_count);
        self.series_count = self.series_count.max(event.series_count);
        self.series_last = self.series_last.max(event.series_last_observed);
        self.finished = self.finished.max(event.finished_at());
        self.touched = now;
    }
}

/// The seen-state, keyed by event uid.
pub struct SeenEvents {
    entries: LruCache<String, Seen>,
    lifetime: Duration,
}

impl SeenEvents {
    pub fn new(capacity: NonZeroUsize, event_ttl: Duration) -> Self {
        Self {
            entries: crate::bounded::lru(capacity),
            lifetime: event_ttl + EXPIRY_MARGIN,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.entries.cap().get()
    }

    /// Records an observation and says whether it is a new occurrence.
    pub fn observe(&mut self, event: &KubeEvent, now: Instant) -> Observation {
        let mut evictions = Evictions {
            expired: self.expire(now),
            capacity: 0,
        };
        let verdict = if let Some(seen) = self.entries.get_mut(&event.uid) {
            let verdict = if seen.advanced_by(event) {
                Verdict::Repeat
            } else {
                Verdict::Duplicate
            };
            seen.absorb(event, now);
            verdict
        } else {
            if self
                .entries
                .push(event.uid.clone(), Seen::of(event, now))
                .is_some()
            {
                evictions.capacity = 1;
            }
            Verdict::New
        };
        Observation {
            verdict,
            evictions,
            remembered: self.entries.len(),
        }
    }

    /// Forgets a deleted event.
    pub fn forget(&mut self, uid: &str) {
        self.entries.pop(uid);
    }

    /// Drops entries not seen for longer than the lifetime; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some((_, oldest)) = self.entries.peek_lru() {
            if now.saturating_duration_since(oldest.touched) <= self.lifetime {
                break;
            }
            self.entries.pop_lru();
            expired += 1;
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(uid: &str, count: Option<i64>) -> KubeEvent {
        KubeEvent {
            uid: uid.into(),
            name: uid.into(),
            namespace: "n".into(),
            event_type: "Warning".into(),
            reason: "BackOff".into(),
            legacy_count: count,
            ..Default::default()
        }
    }

    fn seen(cap: usize) -> SeenEvents {
        SeenEvents::new(NonZeroUsize::new(cap).unwrap(), Duration::from_secs(3600))
    }

    #[test]
    fn counts_and_series_advance_make_repeats_and_nothing_else_does() {
        let now = Instant::now();
        let mut s = seen(10);
        assert_eq!(s.observe(&event("a", Some(1)), now).verdict, Verdict::New);
        assert_eq!(
            s.observe(&event("a", Some(1)), now).verdict,
            Verdict::Duplicate
        );
        assert_eq!(
            s.observe(&event("a", Some(2)), now).verdict,
            Verdict::Repeat
        );
        // An older copy (a stale relist) is not a repeat, and does not lower the mark.
        assert_eq!(
            s.observe(&event("a", Some(1)), now).verdict,
            Verdict::Duplicate
        );
        assert_eq!(
            s.observe(&event("a", Some(2)), now).verdict,
            Verdict::Duplicate
        );

        let mut series = event("b", None);
        series.series_count = Some(2);
        assert_eq!(s.observe(&series, now).verdict, Verdict::New);
        series.series_last_observed = Some(Utc::now());
        assert_eq!(s.observe(&series, now).verdict, Verdict::Repeat);
        series.series_count = Some(3);
        assert_eq!(s.observe(&series, now).verdict, Verdict::Repeat);
    }

    #[test]
    fn a_later_finish_is_a_new_termination_and_nothing_else_is() {
        use crate::event::Termination;
        let now = Instant::now();
        let mut s = seen(10);
        let at = |secs: i64| DateTime::from_timestamp(1_800_000_000 + secs, 0);
        let ended = |finished, restarts, previous| KubeEvent {
            termination: Some(Box::new(Termination {
                finished_at: finished,
                restart_count: restarts,
                previous,
                ..Default::default()
            })),
            ..event("pod-uid/app", None)
        };
        assert_eq!(
            s.observe(&ended(at(0), 0, false), now).verdict,
            Verdict::New
        );
        // The same instance after the restart: lastState, one more restart counted.
        assert_eq!(
            s.observe(&ended(at(0), 1, true), now).verdict,
            Verdict::Duplicate
        );
        assert_eq!(
            s.observe(&ended(at(60), 1, true), now).verdict,
            Verdict::Repeat
        );
        assert_eq!(
            s.observe(&ended(at(0), 1, true), now).verdict,
            Verdict::Duplicate,
            "an older instance seen late is not news"
        );
    }

    #[test]
    fn capacity_evicts_the_least_recently_seen() {
        let now = Instant::now();
        let mut s = seen(2);
        s.observe(&event("a", Some(1)), now);
        s.observe(&event("b", Some(1)), now);
        s.observe(&event("a", Some(1)), now);
        let seen = s.observe(&event("c", Some(1)), now);
        assert_eq!((seen.verdict, seen.evictions.capacity), (Verdict::New, 1));
        assert_eq!(seen.remembered, 2);
        assert_eq!(
            s.observe(&event("a", Some(1)), now).verdict,
            Verdict::Duplicate
        );
        assert_eq!(
            s.observe(&event("b", Some(1)), now).verdict,
            Verdict::New,
            "b was evicted"
        );
    }

    #[test]
    fn entries_expire_after_ttl_plus_margin() {
        let start = Instant::now();
        let mut s = seen(10);
        s.observe(&event("a", Some(1)), start);
        s.observe(&event("b", Some(1)), start + Duration::from_secs(3000));
        let later = start + Duration::from_secs(3600) + EXPIRY_MARGIN + Duration::from_secs(1);
        assert_eq!(s.expire(later), 1);
        assert_eq!(s.len(), 1);
        s.forget("b");
        assert!(s.is_empty());
    }
}
