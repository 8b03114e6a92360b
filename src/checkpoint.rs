//! How far delivery has got, in a form that outlives the process: for each watch scope
//! (`events/<namespace>`, `events/*`), a resourceVersion at or below which every occurrence
//! has been decided — delivered, dropped on purpose, or not reported by the rules — and the
//! decided resourceVersions above it.
//!
//! Why resourceVersions and not event times: every write to an event (a new one, or a
//! repeat bumping `count` or `series`) gives the object a new resourceVersion from the
//! apiserver's one counter, while event times come from many clocks with one-second
//! resolution. A fresh list therefore tells exactly which occurrences are news: an object
//! whose resourceVersion is above the checkpoint and not listed as decided changed after it.
//!
//! The [`Ledger`] keeps the live bookkeeping: an occurrence to be reported holds a
//! [`Ticket`] until delivery decides its fate; everything else is decided when processed.
//! During a list the watermark stays where it was (a list comes in no particular order).
//! Bounded: at most [`MAX_ABOVE`] versions are kept above the watermarks, all scopes
//! together (they share one Lease annotation); past that the oldest pending occurrence of
//! the largest scope is given up on (counted) so its watermark can move.
//!
//! Container crashes need more than versions. A pod changes for many reasons after a crash
//! (the kubelet restarting the container, a probe, a label) and its old termination stays
//! visible in `lastState` on every update, so a pod's resourceVersion says nothing about
//! one termination: a resumed list judges a crash also by when it finished, against when
//! the checkpoint was written (see the pipeline's resume rule). That time rule alone loses
//! a crash still waiting for delivery that ended long before the write, or whose pod
//! changed after it (its new version is decided); and it repeats one delivered shortly
//! before the write whose pod changed while no agent watched. So the checkpoint also names
//! recent crashes ([`CrashId`]: the pod's container, hashed, and when it finished) with
//! their state ([`CrashState`]):
//!
//! - pending: reported, delivery undecided. Kept whatever its age; a resumed list reports
//!   it again (once), whatever the mark and the time rule say.
//! - done: decided (delivered, dropped on purpose, or not reported by the rules). Kept
//!   while the time rule could still take it for news: finished within [`CLOCK_SKEW`] plus
//!   [`CRASH_MARGIN`] before the checkpoint; a resumed list never reports it.
//!
//! A crash the checkpoint does not name follows the time rule and the mark. A ticket for a
//! crash turns it from pending to done when decided. At most [`MAX_CRASHES`] are kept: past
//! that the oldest done crash is dropped first, then the oldest pending one is given up on
//! (counted like an occurrence given up on above).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::KubeEvent;

/// Versions kept above the watermarks, all scopes together (live, and in the checkpoint):
/// about 60 KiB of annotation when full.
pub const MAX_ABOVE: usize = 10_000;

/// Crashes named in the checkpoint, pending and done together: about 31 KiB when full.
pub const MAX_CRASHES: usize = 1_000;

/// How far a node's clock may be behind the agent's, when a crash's finish time is compared
/// with when the checkpoint was written.
pub const CLOCK_SKEW: chrono::Duration = chrono::Duration::seconds(60);

/// How much longer than [`CLOCK_SKEW`] a done crash is kept: the checkpoint is stamped a
/// moment after its snapshot is taken.
pub const CRASH_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// The scope key of a watch: `events/<namespace>`, or `events/*` for all namespaces.
pub fn scope_key(resource: &str, namespace: Option<&str>) -> String {
    format!("{resource}/{}", namespace.unwrap_or("*"))
}

/// One scope's mark: everything at or below `base` decided, and `done` above it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    pub base: u64,
    pub done: BTreeSet<u64>,
}

impl Mark {
    /// Whether the occurrence a list shows at `rv` was already decided.
    pub fn decided(&self, rv: u64) -> bool {
        rv <= self.base || self.done.contains(&rv)
    }
}

/// One container termination, as the checkpoint names it: when it finished (seconds, as
/// the kubelet writes it), then which container of which pod (a hash of the deduplication
/// key, [`crate::pods::PodView::termination_key`], to stay small). Ordered oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CrashId {
    pub finished: i64,
    pub container: u64,
}

impl CrashId {
    /// The termination's identity; `None` for an event, or a termination with no finish
    /// time (left to the mark alone).
    pub fn of(event: &KubeEvent) -> Option<Self> {
        event.termination.as_ref()?;
        Some(Self {
            finished: event.finished_at()?.timestamp(),
            container: fnv1a(event.uid.as_bytes()),
        })
    }

    /// Done, it may still be taken for news by a checkpoint written at `at` (or later).
    fn recent(&self, at: DateTime<Utc>) -> bool {
        self.finished > (at - CLOCK_SKEW - CRASH_MARGIN).timestamp()
    }
}

/// FNV-1a, 64 bits: stable across builds and versions, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where a crash named in the checkpoint stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashState {
    /// Reported; delivery had not decided its fate.
    Pending,
    /// Decided: delivered, dropped on purpose, or not reported by the rules.
    Done,
}

/// What is written to the Lease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub scopes: BTreeMap<String, Mark>,
    /// The mark of a scope the checkpoint does not name (never written): `Some(empty)`
    /// makes everything stored news.
    pub otherwise: Option<Mark>,
    /// When it was written (the agent's clock): a crash is judged by its finish time too,
    /// as a pod changes for many reasons after one.
    pub at: Option<DateTime<Utc>>,
    /// Recent crashes, all scopes together (a pod's uid names it wherever it is watched).
    pub crashes: BTreeMap<CrashId, CrashState>,
}

/// The annotation's JSON: `{"v":1,"scopes":{"events/default":{"base":"123","done":[4,9]}}}`,
/// `done` as increasing deltas from `base` to stay small; with crashes, also
/// `"crashes":{"pending":[["9f3c…",1763704920]],"done":[…]}` (container hash in hex, finish
/// time in Unix seconds). A checkpoint without `crashes` (an older agent's) reads as naming
/// none; an older agent ignores the section.
#[derive(Serialize, Deserialize)]
struct Wire {
    v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<DateTime<Utc>>,
    scopes: BTreeMap<String, WireMark>,
    #[serde(default, skip_serializing_if = "WireCrashes::is_empty")]
    crashes: WireCrashes,
}

#[derive(Default, Serialize, Deserialize)]
struct WireCrashes {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pending: Vec<(String, i64)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    done: Vec<(String, i64)>,
}

impl WireCrashes {
    fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.done.is_empty()
    }
}

#[derive(Serialize, Deserialize)]
struct WireMark {
    base: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    done: Vec<u64>,
}

impl Checkpoint {
    /// A checkpoint under which everything stored is news: what a new leader resumes from
    /// when its predecessor left none (it ran, so what it reported is unknown; reporting
    /// again is a repeat Sentry discards by event id, not reporting could be a loss).
    pub fn everything_new() -> Self {
        Self {
            scopes: BTreeMap::new(),
            otherwise: Some(Mark::default()),
            at: None,
            crashes: BTreeMap::new(),
        }
    }

    /// Where a crash stands, if the checkpoint names it.
    pub fn crash(&self, id: &CrashId) -> Option<CrashState> {
        self.crashes.get(id).copied()
    }

    /// The mark for a watch scope: its own, else (for a namespace) the all-namespaces one.
    pub fn mark(&self, scope: &str) -> Option<&Mark> {
        self.scopes
            .get(scope)
            .or_else(|| {
                let (resource, _) = scope.split_once('/')?;
                self.scopes.get(&format!("{resource}/*"))
            })
            .or(self.otherwise.as_ref())
    }

    pub fn encode(&self) -> String {
        let scopes = self
            .scopes
            .iter()
            .map(|(scope, mark)| {
                let mut previous = mark.base;
                let done = mark
                    .done
                    .iter()
                    .map(|rv| {
                        let delta = rv - previous;
                        previous = *rv;
                        delta
                    })
                    .collect();
                (
                    scope.clone(),
                    WireMark {
                        base: mark.base.to_string(),
                        done,
                    },
                )
            })
            .collect();
        let mut crashes = WireCrashes::default();
        for (id, state) in &self.crashes {
            let list = match state {
                CrashState::Pending => &mut crashes.pending,
                CrashState::Done => &mut crashes.done,
            };
            list.push((format!("{:016x}", id.container), id.finished));
        }
        serde_json::to_string(&Wire {
            v: 1,
            at: self.at,
            scopes,
            crashes,
        })
        .expect("plain data serialises")
    }

    pub fn decode(text: &str) -> Result<Self, String> {
        let wire: Wire = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if wire.v != 1 {
            return Err(format!("unknown checkpoint version {}", wire.v));
        }
        let mut scopes = BTreeMap::new();
        for (scope, mark) in wire.scopes {
            let base: u64 = mark
                .base
                .parse()
                .map_err(|_| format!("{scope}: base {:?} is not a number", mark.base))?;
            let mut done = BTreeSet::new();
            let mut rv = base;
            for delta in mark.done {
                rv = rv
                    .checked_add(delta)
                    .ok_or_else(|| format!("{scope}: done list overflows"))?;
                done.insert(rv);
            }
            scopes.insert(scope, Mark { base, done });
        }
        let mut crashes = BTreeMap::new();
        for (list, state) in [
            (wire.crashes.pending, CrashState::Pending),
            (wire.crashes.done, CrashState::Done),
        ] {
            for (container, finished) in list {
                let container = u64::from_str_radix(&container, 16)
                    .map_err(|_| format!("crash {container:?} is not a hex number"))?;
                crashes.insert(
                    CrashId {
                        finished,
                        container,
                    },
                    state,
                );
            }
        }
        Ok(Self {
            scopes,
            otherwise: None,
            at: wire.at,
            crashes,
        })
    }
}

/// A scope's live bookkeeping.
#[derive(Default)]
struct Scope {
    /// A list completed at least once: before that, nothing is written for the scope (a
    /// first start decides by `SENTRY_K8S_WATCH_HISTORICAL`, not by a checkpoint).
    synced: bool,
    /// Everything at or below it is decided.
    base: u64,
    /// The highest version processed.
    high: u64,
    /// Reported occurrences whose delivery is not decided yet.
    pending: BTreeMap<u64, usize>,
    /// Decided versions above the lowest pending one.
    done: BTreeSet<u64>,
    /// Inside a list: the watermark stays at `frozen`.
    frozen: Option<u64>,
}

impl Scope {
    /// Versions it keeps above its watermark.
    fn above(&self) -> usize {
        self.done.len() + self.pending.len()
    }

    /// Giving up on its oldest pending occurrence would let its watermark move (not during
    /// a list, which holds the watermark where it was).
    fn can_give_up(&self) -> bool {
        !self.pending.is_empty() && self.frozen.is_none()
    }

    fn watermark(&self) -> u64 {
        if let Some(frozen) = self.frozen {
            return frozen;
        }
        match self.pending.keys().next() {
            Some(lowest) => self.base.max(lowest.saturating_sub(1)),
            None => self.base.max(self.high),
        }
    }

    fn prune(&mut self) {
        let mark = self.watermark();
        if self.frozen.is_none() {
            self.base = mark;
        }
        self.done = self.done.split_off(&(mark + 1));
    }

    fn decided(&mut self, rv: u64) {
        self.high = self.high.max(rv);
        // Recorded only where the watermark cannot speak for it: above a pending occurrence,
        // or above the watermark frozen by a relist (a first list writes nothing).
        let above_pending = self
            .pending
            .keys()
            .next()
            .is_some_and(|lowest| rv > *lowest);
        let above_frozen = self.synced && self.frozen.is_some_and(|frozen| rv > frozen);
        if above_pending || above_frozen {
            self.done.insert(rv);
        }
    }
}

/// What the ledger had to give up on to stay bounded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GaveUp {
    pub pending: usize,
}

/// The live bookkeeping of every scope; shared by the pipeline (which records) and the
/// Lease keeper (which writes snapshots).
#[derive(Default)]
pub struct Ledger {
    scopes: HashMap<String, Scope>,
    gave_up: usize,
    /// Crashes reported and not decided (whatever their age), and recent decided ones.
    crashes: BTreeMap<CrashId, CrashState>,
}

/// A reported occurrence awaiting delivery; [`Ticket::decided`] when its fate is known.
/// Dropped without that (abandoned at shutdown), it keeps the watermark below it (and a
/// crash pending): the occurrence is reported again after a restart.
pub struct Ticket {
    ledger: Arc<Mutex<Ledger>>,
    scope: Arc<str>,
    rv: u64,
    crash: Option<CrashId>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ticket({}@{})", self.scope, self.rv)
    }
}

impl Ticket {
    pub fn decided(self) {
        let mut ledger = self.ledger.lock().unwrap();
        ledger.complete(&self.scope, self.rv);
        if let Some(crash) = self.crash {
            ledger.settled(crash);
        }
    }
}

impl Ledger {
    pub fn shared() -> Arc<Mutex<Ledger>> {
        Arc::new(Mutex::new(Ledger::default()))
    }

    /// Starts over from a checkpoint (or from nothing): after a takeover the previous
    /// leader's mark is where this process stands.
    pub fn reset(&mut self, from: Option<&Checkpoint>) {
        self.scopes.clear();
        self.crashes = from.map(|c| c.crashes.clone()).unwrap_or_default();
        if let Some(checkpoint) = from {
            for (key, mark) in &checkpoint.scopes {
                self.scopes.insert(
                    key.clone(),
                    Scope {
                        synced: true,
                        base: mark.base,
                        high: mark.base,
                        done: mark.done.clone(),
                        ..Scope::default()
                    },
                );
            }
        }
    }

    fn scope(&mut self, key: &str) -> &mut Scope {
        self.scopes.entry(key.to_string()).or_default()
    }

    pub fn list_started(&mut self, key: &str) {
        let scope = self.scope(key);
        scope.frozen = Some(scope.watermark());
    }

    pub fn list_done(&mut self, key: &str) {
        let scope = self.scope(key);
        scope.frozen = None;
        scope.synced = true;
        scope.prune();
    }

    /// An occurrence (or an observation that is none) decided without delivery.
    pub fn decided(&mut self, key: &str, rv: u64) -> GaveUp {
        let scope = self.scope(key);
        scope.decided(rv);
        scope.prune();
        self.bound(key)
    }

    /// An occurrence to be reported (a crash, when `crash` names it): its ticket.
    pub fn pending(
        ledger: &Arc<Mutex<Ledger>>,
        key: &str,
        rv: u64,
        crash: Option<CrashId>,
    ) -> (Ticket, GaveUp) {
        let mut this = ledger.lock().unwrap();
        let scope = this.scope(key);
        scope.high = scope.high.max(rv);
        *scope.pending.entry(rv).or_default() += 1;
        let mut gave_up = this.bound(key);
        if let Some(crash) = crash {
            this.crashes.insert(crash, CrashState::Pending);
            gave_up.pending += this.bound_crashes(Utc::now());
        }
        (
            Ticket {
                ledger: ledger.clone(),
                scope: Arc::from(key),
                rv,
                crash,
            },
            gave_up,
        )
    }

    /// A crash decided — delivered, dropped on purpose, or not reported by the rules: done,
    /// remembered while a resumed list could take it for news. (Never gives up on a pending
    /// one to stay bounded: the oldest done crash goes first, at worst this one.)
    pub fn settled(&mut self, crash: CrashId) {
        let now = Utc::now();
        if crash.recent(now) {
            self.crashes.insert(crash, CrashState::Done);
            self.bound_crashes(now);
        } else {
            self.crashes.remove(&crash);
        }
    }

    /// Keeps at most [`MAX_CRASHES`]: drops done crashes too old to matter, then the oldest
    /// done ones, then gives up on the oldest pending ones. Returns how many it gave up on.
    fn bound_crashes(&mut self, now: DateTime<Utc>) -> usize {
        if self.crashes.len() <= MAX_CRASHES {
            return 0;
        }
        self.crashes
            .retain(|id, state| *state == CrashState::Pending || id.recent(now));
        let mut gave_up = 0;
        while self.crashes.len() > MAX_CRASHES {
            let oldest = self
                .crashes
                .iter()
                .find(|(_, state)| **state == CrashState::Done)
                .or_else(|| self.crashes.iter().next())
                .map(|(id, state)| (*id, *state))
                .expect("not empty");
            self.crashes.remove(&oldest.0);
            if oldest.1 == CrashState::Pending {
                gave_up += 1;
            }
        }
        self.gave_up += gave_up;
        gave_up
    }

    fn complete(&mut self, key: &str, rv: u64) {
        let scope = self.scope(key);
        if let Some(count) = scope.pending.get_mut(&rv) {
            *count -= 1;
            if *count == 0 {
                scope.pending.remove(&rv);
            }
        }
        scope.decided(rv);
        scope.prune();
    }

    /// Keeps the whole ledger — every scope together, as they share one Lease annotation —
    /// within [`MAX_ABOVE`] versions above the watermarks: gives up on the oldest pending
    /// occurrence of the largest scope until it fits. `key`'s scope is the one that grew.
    fn bound(&mut self, key: &str) -> GaveUp {
        let mut gave_up = 0;
        let mut total: usize = self.scopes.values().map(Scope::above).sum();
        while total > MAX_ABOVE {
            // The scope that grew first, then the largest with something to give up.
            let scope = match self.scopes.get(key).filter(|s| s.can_give_up()) {
                Some(_) => self.scopes.get_mut(key),
                None => self
                    .scopes
                    .values_mut()
                    .filter(|s| s.can_give_up())
                    .max_by_key(|s| s.above()),
            };
            let Some(scope) = scope else {
                break;
            };
            let before = scope.above();
            let lowest = *scope.pending.keys().next().expect("not empty");
            scope.pending.remove(&lowest);
            scope.done.insert(lowest);
            scope.prune();
            gave_up += 1;
            total = total + scope.above() - before;
        }
        self.gave_up += gave_up;
        GaveUp { pending: gave_up }
    }

    /// Reported occurrences not decided yet, all scopes.
    pub fn outstanding(&self) -> usize {
        self.scopes.values().map(|s| s.pending.len()).sum()
    }

    /// The checkpoint of every scope that completed a list, with at most [`MAX_ABOVE`]
    /// decided versions in all (more only during a list; a version left out is news to a
    /// successor: sent again with the same event id, never lost), and the crashes still
    /// worth naming: every pending one, and done ones recent enough to be taken for news.
    pub fn snapshot(&self) -> Checkpoint {
        let now = Utc::now();
        let crashes = self
            .crashes
            .iter()
            .filter(|(id, state)| **state == CrashState::Pending || id.recent(now))
            .map(|(id, state)| (*id, *state))
            .collect();
        let mut budget = MAX_ABOVE;
        let scopes = self
            .scopes
            .iter()
            .filter(|(_, s)| s.synced)
            .map(|(key, scope)| {
                let base = scope.watermark();
                let done: BTreeSet<u64> =
                    scope.done.range(base + 1..).copied().take(budget).collect();
                budget -= done.len();
                (key.clone(), Mark { base, done })
            })
            .collect();
        Checkpoint {
            scopes,
            otherwise: None,
            at: None,
            crashes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "events/default";

    fn mark(ledger: &Arc<Mutex<Ledger>>) -> Mark {
        ledger.lock().unwrap().snapshot().scopes[S].clone()
    }

    #[test]
    fn nothing_is_written_for_a_scope_before_its_first_list_completes() {
        let ledger = Ledger::shared();
        ledger.lock().unwrap().list_started(S);
        ledger.lock().unwrap().decided(S, 10);
        assert!(ledger.lock().unwrap().snapshot().scopes.is_empty());
        ledger.lock().unwrap().list_done(S);
        assert_eq!(
            mark(&ledger),
            Mark {
                base: 10,
                done: BTreeSet::new()
            }
        );
    }

    #[test]
    fn the_watermark_stops_below_an_undelivered_occurrence_and_lists_what_came_after() {
        let ledger = Ledger::shared();
        {
            let mut l = ledger.lock().unwrap();
            l.list_started(S);
            l.list_done(S);
        }
        let (t20, _) = Ledger::pending(&ledger, S, 20, None);
        ledger.lock().unwrap().decided(S, 25);
        let (t30, _) = Ledger::pending(&ledger, S, 30, None);
        assert_eq!(mark(&ledger).base, 19);
        t30.decided();
        assert_eq!(
            mark(&ledger),
            Mark {
                base: 19,
                done: [25, 30].into()
            }
        );
        t20.decided();
        assert_eq!(
            mark(&ledger),
            Mark {
                base: 30,
                done: BTreeSet::new()
            }
        );
        let (abandoned, _) = Ledger::pending(&ledger, S, 40, None);
        drop(abandoned);
        assert_eq!(
            mark(&ledger).base,
            39,
            "an abandoned ticket is reported again"
        );
    }

    #[test]
    fn a_list_freezes_the_watermark_until_it_is_complete() {
        let ledger = Ledger::shared();
        {
            let mut l = ledger.lock().unwrap();
            l.list_started(S);
            l.decided(S, 50);
            l.list_done(S);
            // A relist: its items come in any order; one not yet seen may sit below.
            l.list_started(S);
            l.decided(S, 90);
        }
        assert_eq!(mark(&ledger).base, 50, "frozen while listing");
        assert!(mark(&ledger).decided(90));
        assert!(
            !mark(&ledger).decided(70),
            "an item not seen yet is news after a crash"
        );
        ledger.lock().unwrap().decided(S, 70);
        ledger.lock().unwrap().list_done(S);
        assert_eq!(
            mark(&ledger),
            Mark {
                base: 90,
                done: BTreeSet::new()
            }
        );
    }

    #[test]
    fn pending_work_is_bounded_by_giving_up_on_the_oldest() {
        let ledger = Ledger::shared();
        {
            let mut l = ledger.lock().unwrap();
            l.list_started(S);
            l.list_done(S);
        }
        let (_stuck, _) = Ledger::pending(&ledger, S, 1, None);
        let mut gave_up = 0;
        for rv in 2..=(MAX_ABOVE as u64 + 10) {
            gave_up += ledger.lock().unwrap().decided(S, rv).pending;
        }
        assert_eq!(gave_up, 1, "the stuck occurrence was given up on");
        assert_eq!(mark(&ledger).base, MAX_ABOVE as u64 + 10);
        assert!(mark(&ledger).done.is_empty());
    }

    #[test]
    fn checkpoints_round_trip_compactly_and_fall_back_to_all_namespaces() {
        let checkpoint = Checkpoint {
            scopes: [
                (
                    "events/default".to_string(),
                    Mark {
                        base: 1_000_000,
                        done: [1_000_004, 1_000_009].into(),
                    },
                ),
                (
                    "events/*".to_string(),
                    Mark {
                        base: 7,
                        done: BTreeSet::new(),
                    },
                ),
            ]
            .into(),
            otherwise: None,
            at: None,
            crashes: BTreeMap::new(),
        };
        let text = checkpoint.encode();
        assert_eq!(
            text,
            r#"{"v":1,"scopes":{"events/*":{"base":"7"},"events/default":{"base":"1000000","done":[4,5]}}}"#
        );
        assert_eq!(Checkpoint::decode(&text).unwrap(), checkpoint);
        assert_eq!(checkpoint.mark("events/shop").unwrap().base, 7);
        assert!(Checkpoint::decode("{\"v\":2,\"scopes\":{}}").is_err());
        assert!(Checkpoint::decode("not json").is_err());
    }

    #[test]
    fn many_busy_scopes_share_one_bound() {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let mut stuck = Vec::new();
        let mut gave_up = 0;
        for n in 0..20 {
            let key = format!("events/namespace-{n}");
            let mut book = ledger.lock().unwrap();
            book.list_started(&key);
            book.list_done(&key);
            drop(book);
            // One occurrence that is never delivered holds the watermark; 2,000 decided
            // after it pile up above.
            let (ticket, more) = Ledger::pending(&ledger, &key, 1_000_000, None);
            gave_up += more.pending;
            stuck.push(ticket);
            for rv in 1_000_001..1_002_000 {
                gave_up += ledger.lock().unwrap().decided(&key, rv).pending;
            }
        }
        let checkpoint = ledger.lock().unwrap().snapshot();
        let kept: usize = checkpoint.scopes.values().map(|m| m.done.len()).sum();
        assert!(kept <= MAX_ABOVE, "{kept} versions kept");
        assert!(
            gave_up >= 10,
            "the oldest stuck occurrences given up: {gave_up}"
        );
        assert!(
            checkpoint.encode().len() < 100 * 1024,
            "{} bytes",
            checkpoint.encode().len()
        );
        drop(stuck);
    }

    /// A crash of container `n` that finished `ago` seconds before now.
    fn crash(n: u64, ago: i64) -> CrashId {
        CrashId {
            finished: (Utc::now() - chrono::Duration::seconds(ago)).timestamp(),
            container: n,
        }
    }

    fn synced() -> Arc<Mutex<Ledger>> {
        let ledger = Ledger::shared();
        {
            let mut l = ledger.lock().unwrap();
            l.list_started(S);
            l.list_done(S);
        }
        ledger
    }

    #[test]
    fn crashes_round_trip_and_a_checkpoint_without_them_still_reads() {
        let checkpoint = Checkpoint {
            scopes: [(
                "pods/default".to_string(),
                Mark {
                    base: 40,
                    done: BTreeSet::new(),
                },
            )]
            .into(),
            otherwise: None,
            at: None,
            crashes: [
                (
                    CrashId {
                        finished: 1_763_704_920,
                        container: 0x9f3c_0000_0000_00ab,
                    },
                    CrashState::Pending,
                ),
                (
                    CrashId {
                        finished: 1_763_704_800,
                        container: 7,
                    },
                    CrashState::Done,
                ),
            ]
            .into(),
        };
        let text = checkpoint.encode();
        assert_eq!(
            text,
            r#"{"v":1,"scopes":{"pods/default":{"base":"40"}},"crashes":{"pending":[["9f3c0000000000ab",1763704920]],"done":[["0000000000000007",1763704800]]}}"#
        );
        assert_eq!(Checkpoint::decode(&text).unwrap(), checkpoint);
        // As an agent without the section wrote it: names no crash.
        let old = Checkpoint::decode(
            r#"{"v":1,"at":"2026-11-21T06:00:00Z","scopes":{"pods/default":{"base":"40","done":[2]}}}"#,
        )
        .unwrap();
        assert!(old.crashes.is_empty());
        assert!(old.mark("pods/default").unwrap().decided(42));
        assert!(
            Checkpoint::decode(r#"{"v":1,"scopes":{},"crashes":{"done":[["xyz",1]]}}"#).is_err()
        );
    }

    #[test]
    fn a_crash_is_named_by_its_pod_container_and_finish_time() {
        use crate::event::Termination;
        let at = |second: &str| {
            Some(
                DateTime::parse_from_rfc3339(&format!("2026-11-21T06:02:{second}Z"))
                    .unwrap()
                    .to_utc(),
            )
        };
        let termination = |uid: &str, finished| KubeEvent {
            uid: uid.into(),
            termination: Some(Box::new(Termination {
                finished_at: finished,
                ..Default::default()
            })),
            ..Default::default()
        };
        let id = CrashId::of(&termination("p1/app", at("00"))).unwrap();
        assert_eq!(id.finished, at("00").unwrap().timestamp());
        assert_eq!(CrashId::of(&termination("p1/app", at("00"))), Some(id));
        assert_ne!(CrashId::of(&termination("p1/web", at("00"))), Some(id));
        assert_ne!(CrashId::of(&termination("p1/app", at("01"))), Some(id));
        assert_eq!(CrashId::of(&termination("p1/app", None)), None);
        let event = KubeEvent {
            uid: "p1/app".into(),
            ..Default::default()
        };
        assert_eq!(CrashId::of(&event), None, "an event is no crash");
    }

    #[test]
    fn a_crash_is_pending_until_its_ticket_is_decided_and_done_while_it_could_be_news() {
        let ledger = synced();
        let (old, recent, delivered) = (crash(1, 3_600), crash(2, 10), crash(3, 10));
        let (t_old, _) = Ledger::pending(&ledger, S, 10, Some(old));
        let (t_recent, _) = Ledger::pending(&ledger, S, 11, Some(recent));
        let (t_delivered, _) = Ledger::pending(&ledger, S, 12, Some(delivered));
        t_delivered.decided();
        let crashes = |l: &Arc<Mutex<Ledger>>| l.lock().unwrap().snapshot().crashes;
        assert_eq!(
            crashes(&ledger),
            [
                (old, CrashState::Pending),
                (recent, CrashState::Pending),
                (delivered, CrashState::Done),
            ]
            .into(),
            "pending whatever its age"
        );
        drop(t_recent);
        t_old.decided();
        assert_eq!(
            crashes(&ledger),
            [(recent, CrashState::Pending), (delivered, CrashState::Done)].into(),
            "an abandoned ticket leaves its crash pending; an old one decided is forgotten"
        );
        // Decided without a ticket (not reported by the rules): done while recent.
        let history = crash(4, 5);
        ledger.lock().unwrap().settled(history);
        ledger.lock().unwrap().settled(crash(5, 600));
        assert_eq!(crashes(&ledger).get(&history), Some(&CrashState::Done));
        assert_eq!(crashes(&ledger).len(), 3);
        // A restart (or a new leader) carries them on.
        let snapshot = ledger.lock().unwrap().snapshot();
        let next = Ledger::shared();
        next.lock()
            .unwrap()
            .reset(Some(&Checkpoint::decode(&snapshot.encode()).unwrap()));
        assert_eq!(crashes(&next), snapshot.crashes);
    }

    #[test]
    fn crashes_are_bounded_dropping_done_ones_first_then_giving_up_the_oldest_pending() {
        let ledger = synced();
        let mut tickets = Vec::new();
        for n in 0..10 {
            let (ticket, _) = Ledger::pending(&ledger, S, 1 + n, Some(crash(n, 50 - n as i64)));
            ticket.decided();
        }
        let pending: Vec<CrashId> = (0..MAX_CRASHES as u64 + 5)
            .map(|n| crash(100 + n, 40_000 - n as i64))
            .collect();
        let mut gave_up = 0;
        for (n, id) in pending.iter().enumerate() {
            let (ticket, more) = Ledger::pending(&ledger, S, 100 + n as u64, Some(*id));
            gave_up += more.pending;
            tickets.push(ticket);
        }
        let crashes = ledger.lock().unwrap().snapshot().crashes;
        assert_eq!(crashes.len(), MAX_CRASHES);
        assert!(
            crashes.values().all(|s| *s == CrashState::Pending),
            "the done ones went first"
        );
        assert_eq!(gave_up, 5, "then the oldest pending ones, counted");
        assert!(crashes.keys().eq(&pending[5..]), "the oldest five given up");
    }

    #[test]
    fn a_full_checkpoint_with_crashes_stays_under_100_kib() {
        // Versions 5 digits apart (about 60 KiB), and every crash pending.
        let done: BTreeSet<u64> = (0..MAX_ABOVE as u64)
            .map(|i| 5_000_000 + i * 99_991)
            .collect();
        let checkpoint = Checkpoint {
            scopes: [(
                "events/busy".to_string(),
                Mark {
                    base: 4_999_999,
                    done,
                },
            )]
            .into(),
            otherwise: None,
            at: Some(Utc::now()),
            crashes: (0..MAX_CRASHES as u64)
                .map(|n| {
                    let id = CrashId {
                        finished: 1_763_704_920 + n as i64,
                        container: u64::MAX - n,
                    };
                    (id, CrashState::Pending)
                })
                .collect(),
        };
        let size = checkpoint.encode().len();
        assert!(size < 100 * 1024, "{size} bytes");
    }

    #[test]
    fn a_full_checkpoint_stays_under_100_kib() {
        let done: BTreeSet<u64> = (0..MAX_ABOVE as u64).map(|i| 5_000_000 + i * 97).collect();
        let checkpoint = Checkpoint {
            scopes: (0..50)
                .map(|i| {
                    (
                        format!("events/namespace-{i}"),
                        Mark {
                            base: 4_999_999,
                            done: BTreeSet::new(),
                        },
                    )
                })
                .chain([(
                    "events/busy".to_string(),
                    Mark {
                        base: 4_999_999,
                        done,
                    },
                )])
                .collect(),
            otherwise: None,
            at: None,
            crashes: BTreeMap::new(),
        };
        assert!(
            checkpoint.encode().len() < 100 * 1024,
            "{}",
            checkpoint.encode().len()
        );
    }
}
