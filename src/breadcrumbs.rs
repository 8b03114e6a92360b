//! The trail of what came before: every occurrence (Normal and Warning) is remembered under
//! its workload (root owner), so a reported event carries the earlier events of the same
//! object and of its workload's other objects — never of unrelated ones.
//!
//! Only a reported occurrence's owners are looked up. One that is only remembered goes
//! under the deepest owner already known (cached); when a reported occurrence resolves its
//! chain, what waits under any object of that chain joins the workload ([`Trail::absorb`]).
//! So the pod's own events, its ReplicaSet's and its Deployment's are always there; a
//! sibling pod's are once that pod's owners were known when it was remembered.
//!
//! Bounded twice: a cap on workloads tracked (least recently touched evicted) and on
//! entries per workload (oldest dropped); both evictions are counted by the caller.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use lru::LruCache;

use crate::event::KubeEvent;
use crate::labels::label_enum;
use crate::limits::{MAX_CRUMB_MESSAGE_CHARS, MAX_TAG_VALUE_CHARS, truncate};

/// One earlier occurrence. Shared (an [`Arc`]) between the trail and every event that
/// lists it: built once, never copied. Its texts are packed into one allocation: a trail
/// holds thousands of crumbs (5,000 workloads × 50 by default), and five strings apiece
/// cost more than the texts themselves.
#[derive(Clone, Debug, PartialEq)]
pub struct Crumb {
    pub at: DateTime<Utc>,
    pub warning: bool,
    pub count: i64,
    /// `<reason>: <message>`, then the kind, the name and the event's uid.
    packed: Box<str>,
    /// Where the reason, the text, the kind and the name end in `packed`.
    ends: [u32; 4],
}

/// What a breadcrumb says, as it is packed.
#[derive(Clone, Copy, Debug)]
pub struct CrumbText<'a> {
    pub reason: &'a str,
    pub message: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    /// Which event this is an occurrence of, so an event never lists itself.
    pub event_uid: &'a str,
}

impl Crumb {
    pub fn new(at: DateTime<Utc>, warning: bool, count: i64, text: CrumbText<'_>) -> Self {
        let mut packed = String::with_capacity(
            text.reason.len()
                + 2
                + text.message.len()
                + text.kind.len()
                + text.name.len()
                + text.event_uid.len(),
        );
        let mut ends = [0; 4];
        let mut push = |part: &str| {
            packed.push_str(part);
            u32::try_from(packed.len()).expect("a crumb's texts are cut to a few KiB")
        };
        ends[0] = push(text.reason);
        push(": ");
        ends[1] = push(text.message);
        ends[2] = push(text.kind);
        ends[3] = push(text.name);
        push(text.event_uid);
        Self {
            at,
            warning,
            count,
            packed: packed.into_boxed_str(),
            ends,
        }
    }

    pub fn of(event: &KubeEvent, at: DateTime<Utc>) -> Self {
        Self::new(
            at,
            !event.is_normal(),
            event.count(),
            CrumbText {
                reason: &truncate(&event.reason, MAX_TAG_VALUE_CHARS),
                message: &truncate(&event.message, MAX_CRUMB_MESSAGE_CHARS),
                kind: &truncate(&event.involved.kind, MAX_TAG_VALUE_CHARS),
                name: &truncate(&event.involved.name, MAX_TAG_VALUE_CHARS),
                event_uid: &event.uid,
            },
        )
    }

    fn part(&self, from: u32, to: u32) -> &str {
        &self.packed[from as usize..to as usize]
    }

    pub fn reason(&self) -> &str {
        self.part(0, self.ends[0])
    }

    /// What the breadcrumb says: `<reason>: <message>`, the message cut.
    pub fn text(&self) -> &str {
        self.part(0, self.ends[1])
    }

    pub fn kind(&self) -> &str {
        self.part(self.ends[1], self.ends[2])
    }

    pub fn name(&self) -> &str {
        self.part(self.ends[2], self.ends[3])
    }

    pub fn event_uid(&self) -> &str {
        &self.packed[self.ends[3] as usize..]
    }
}

/// The bounds of the trail.
#[derive(Clone, Copy, Debug)]
pub struct TrailLimits {
    /// Workloads tracked.
    pub workloads: NonZeroUsize,
    /// Entries kept per workload.
    pub per_workload: NonZeroUsize,
}

label_enum! {
    /// Why a breadcrumb was forgotten.
    pub enum Eviction {
        /// The workload had its per-workload number of entries: the oldest went.
        Entries = "entries",
        /// The number of workloads tracked was reached: the least recently active went.
        Workloads = "workloads",
    }
}

/// Entries evicted by one record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrailEvictions {
    pub entries: usize,
    pub workloads: usize,
}

impl std::ops::AddAssign for TrailEvictions {
    fn add_assign(&mut self, more: Self) {
        self.entries += more.entries;
        self.workloads += more.workloads;
    }
}

impl TrailEvictions {
    /// Each kind of eviction with its count.
    pub fn by_reason(&self) -> [(Eviction, usize); 2] {
        [
            (Eviction::Entries, self.entries),
            (Eviction::Workloads, self.workloads),
        ]
    }
}

pub struct Trail {
    workloads: LruCache<String, VecDeque<Arc<Crumb>>>,
    per_workload: NonZeroUsize,
}

impl Trail {
    pub fn new(limits: TrailLimits) -> Self {
        Self {
            workloads: crate::bounded::lru(limits.workloads),
            per_workload: limits.per_workload,
        }
    }

    pub fn workloads(&self) -> usize {
        self.workloads.len()
    }

    /// Remembers an occurrence under its workload, in time order.
    pub fn record(&mut self, workload: &str, crumb: Crumb) -> TrailEvictions {
        self.insert(workload, Arc::new(crumb))
    }

    /// Moves what was remembered under `from` (an object whose workload was not known yet)
    /// to the workload `into`, in time order, within the bounds.
    pub fn absorb(&mut self, from: &str, into: &str) -> TrailEvictions {
        let mut evictions = TrailEvictions::default();
        if from == into {
            return evictions;
        }
        for crumb in self.workloads.pop(from).into_iter().flatten() {
            evictions += self.insert(into, crumb);
        }
        evictions
    }

    fn insert(&mut self, workload: &str, crumb: Arc<Crumb>) -> TrailEvictions {
        let mut evictions = TrailEvictions::default();
        if !self.workloads.contains(workload) {
            if self.workloads.len() == self.workloads.cap().get() {
                evictions.workloads = 1;
            }
            self.workloads.put(workload.to_string(), VecDeque::new());
        }
        let entries = self.workloads.get_mut(workload).expect("just ensured");
        // Seen already (a relist after a takeover replays what a follower recorded).
        if entries.iter().rev().any(|c| {
            c.event_uid() == crumb.event_uid() && c.count == crumb.count && c.at == crumb.at
        }) {
            return evictions;
        }
        // Usually the newest: insert from the back.
        let at = entries
            .iter()
            .rposition(|c| c.at <= crumb.at)
            .map_or(0, |i| i + 1);
        entries.insert(at, crumb);
        while entries.len() > self.per_workload.get() {
            entries.pop_front();
            evictions.entries += 1;
        }
        evictions
    }

    /// The last `n` occurrences of the workload up to `until`, oldest first, leaving out
    /// the event being reported (`event_uid`).
    pub fn before(
        &mut self,
        workload: &str,
        until: DateTime<Utc>,
        event_uid: &str,
        n: usize,
    ) -> Vec<Arc<Crumb>> {
        let Some(entries) = self.workloads.get(workload) else {
            return Vec::new();
        };
        let mut earlier: Vec<Arc<Crumb>> = entries
            .iter()
            .rev()
            .filter(|c| c.at <= until && c.event_uid() != event_uid)
            .take(n)
            .cloned()
            .collect();
        earlier.reverse();
        earlier
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crumb(at: i64, reason: &str, uid: &str) -> Crumb {
        Crumb::new(
            DateTime::from_timestamp(at, 0).unwrap(),
            reason == "BackOff",
            1,
            CrumbText {
                reason,
                message: "",
                kind: "Pod",
                name: "p",
                event_uid: uid,
            },
        )
    }

    #[test]
    fn a_crumb_gives_back_each_of_its_texts() {
        let c = Crumb::new(
            DateTime::from_timestamp(1, 0).unwrap(),
            true,
            3,
            CrumbText {
                reason: "BackOff",
                message: "Back-off restarting failed container é",
                kind: "Pod",
                name: "web-1",
                event_uid: "e1",
            },
        );
        assert_eq!(c.reason(), "BackOff");
        assert_eq!(c.text(), "BackOff: Back-off restarting failed container é");
        assert_eq!((c.kind(), c.name(), c.event_uid()), ("Pod", "web-1", "e1"));
        let empty = Crumb::new(
            c.at,
            false,
            1,
            CrumbText {
                reason: "",
                message: "",
                kind: "",
                name: "",
                event_uid: "",
            },
        );
        assert_eq!(
            (
                empty.reason(),
                empty.text(),
                empty.kind(),
                empty.name(),
                empty.event_uid()
            ),
            ("", ": ", "", "", "")
        );
    }

    fn limits(workloads: usize, per: usize) -> TrailLimits {
        TrailLimits {
            workloads: NonZeroUsize::new(workloads).unwrap(),
            per_workload: NonZeroUsize::new(per).unwrap(),
        }
    }

    #[test]
    fn keeps_time_order_and_leaves_out_the_event_itself() {
        let mut t = Trail::new(limits(10, 10));
        t.record("w", crumb(20, "Started", "e2"));
        t.record("w", crumb(10, "Scheduled", "e1"));
        t.record("w", crumb(30, "BackOff", "e3"));
        t.record("w", crumb(40, "Killing", "e4"));
        let reasons: Vec<_> = t
            .before("w", DateTime::from_timestamp(30, 0).unwrap(), "e3", 10)
            .into_iter()
            .map(|c| c.reason().to_string())
            .collect();
        assert_eq!(reasons, ["Scheduled", "Started"]);
        let last_one: Vec<_> = t
            .before("w", DateTime::from_timestamp(40, 0).unwrap(), "e4", 1)
            .into_iter()
            .map(|c| c.reason().to_string())
            .collect();
        assert_eq!(last_one, ["BackOff"]);
        assert!(
            t.before("other", DateTime::from_timestamp(40, 0).unwrap(), "x", 10)
                .is_empty()
        );
    }

    #[test]
    fn recording_the_same_occurrence_twice_keeps_one() {
        let mut t = Trail::new(limits(10, 10));
        t.record("w", crumb(10, "BackOff", "e1"));
        t.record("w", crumb(10, "BackOff", "e1"));
        let all = t.before("w", DateTime::from_timestamp(20, 0).unwrap(), "x", 10);
        assert_eq!(all.len(), 1);
    }

    #[test]
    fn what_waited_under_an_object_joins_its_workload_in_order() {
        let mut t = Trail::new(limits(10, 3));
        t.record("pod-uid", crumb(10, "Scheduled", "e1"));
        t.record("pod-uid", crumb(30, "Started", "e3"));
        t.record("deploy-uid", crumb(20, "ScalingReplicaSet", "e2"));
        t.record("deploy-uid", crumb(5, "ScalingReplicaSet", "e0"));
        let evicted = t.absorb("pod-uid", "deploy-uid");
        assert_eq!(evicted.entries, 1, "the oldest goes, as if recorded there");
        let reasons: Vec<_> = t
            .before(
                "deploy-uid",
                DateTime::from_timestamp(40, 0).unwrap(),
                "x",
                10,
            )
            .into_iter()
            .map(|c| c.reason().to_string())
            .collect();
        assert_eq!(reasons, ["Scheduled", "ScalingReplicaSet", "Started"]);
        assert_eq!(t.workloads(), 1, "nothing left under the pod");
        assert_eq!(
            t.absorb("deploy-uid", "deploy-uid"),
            TrailEvictions::default()
        );
        assert_eq!(t.absorb("gone", "deploy-uid"), TrailEvictions::default());
    }

    #[test]
    fn bounds_entries_and_workloads() {
        let mut t = Trail::new(limits(2, 3));
        let mut evicted = TrailEvictions::default();
        for i in 0..5 {
            evicted.entries += t.record("a", crumb(i, "Pulled", &format!("e{i}"))).entries;
        }
        assert_eq!(evicted.entries, 2);
        t.record("b", crumb(1, "Pulled", "x"));
        assert_eq!(t.record("c", crumb(1, "Pulled", "y")).workloads, 1);
        assert_eq!(t.workloads(), 2);
    }
}
