//! The owner lookup cache: what is known of an object's metadata, by object key. Bounded
//! by count (least recently used evicted), refreshed after a TTL so annotation changes are
//! seen, failures remembered briefly so a forbidden kind is not asked for on every event.
//! Pure: the caller passes the time, so the rules are unit-tested without a clock.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::event::ObjectRef;
use crate::labels::label_enum;

/// How long a failed lookup is remembered before it is tried again.
pub const FAILURE_TTL: Duration = Duration::from_secs(60);

/// What the agent keeps of an object's metadata: only what enrichment and routing need.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Meta {
    pub object: ObjectRef,
    /// The owner the chain follows: the controller ownerReference, else the first one.
    pub controller: Option<ObjectRef>,
    /// Its labels and annotations, bounded ([`kept`]); the agent's own annotations
    /// (`k8s.sentry.io/…`) always kept first.
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
}

/// Labels (or annotations) kept per object.
pub const MAX_KEPT: usize = 32;
/// Characters kept of each label or annotation value.
pub const MAX_KEPT_VALUE: usize = 256;
/// Bytes of labels (or annotations) kept per object, keys and values: the cache holds
/// `SENTRY_K8S_OWNER_CACHE_SIZE` objects, so this bounds its memory.
pub const MAX_KEPT_BYTES: usize = 1024;
/// Annotations never kept: a copy of the whole object, or too big to be useful.
const SKIPPED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision-history",
];

/// A bounded copy of labels or annotations: the agent's own keys first, then the others in
/// key order; at most [`MAX_KEPT`], values cut to [`MAX_KEPT_VALUE`] characters (the
/// agent's own never cut: a DSN must stay whole).
pub fn kept(all: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let (mut own, mut others): (Vec<_>, Vec<_>) = all
        .into_iter()
        .filter(|(k, _)| !SKIPPED.contains(&k.as_str()))
        .partition(|(k, _)| k.starts_with("k8s.sentry.io/"));
    own.sort();
    others.sort();
    for (_, value) in &mut others {
        if let std::borrow::Cow::Owned(cut) = crate::limits::truncate(value, MAX_KEPT_VALUE) {
            *value = cut;
        }
    }
    let mut budget = MAX_KEPT_BYTES;
    let others = others.into_iter().take_while(|(k, v)| {
        let size = k.len() + v.len();
        let fits = size <= budget;
        budget = budget.saturating_sub(size);
        fits
    });
    own.into_iter().chain(others).take(MAX_KEPT).collect()
}

impl Meta {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a lookup gave no metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupFailure {
    /// The kind is not one the agent knows how to read (custom resources).
    Unreadable,
    Forbidden,
    NotFound,
    /// Timeouts, 5xx, connection errors: not cached, tried again next time.
    Error,
}

label_enum! {
    /// How one lookup was answered.
    pub enum LookupOutcome {
        Cached = "cached",
        Fetched = "fetched",
        /// Joined a request already in flight for the same object.
        Coalesced = "coalesced",
        Forbidden = "forbidden",
        NotFound = "not_found",
        Unreadable = "unreadable",
        Error = "error",
    }
}

impl LookupFailure {
    pub fn outcome(self) -> LookupOutcome {
        match self {
            LookupFailure::Unreadable => LookupOutcome::Unreadable,
            LookupFailure::Forbidden => LookupOutcome::Forbidden,
            LookupFailure::NotFound => LookupOutcome::NotFound,
            LookupFailure::Error => LookupOutcome::Error,
        }
    }
}

/// A lookup's answer.
pub type Lookup = Result<Arc<Meta>, LookupFailure>;

/// The bounds of the lookup cache.
#[derive(Clone, Copy, Debug)]
pub struct CacheLimits {
    pub capacity: NonZeroUsize,
    /// When a successful lookup is read again.
    pub ttl: Duration,
}

struct Cached {
    lookup: Lookup,
    at: Instant,
}

pub struct OwnerCache {
    entries: LruCache<String, Cached>,
    ttl: Duration,
}

impl OwnerCache {
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            entries: crate::bounded::lru(limits.capacity),
            ttl: limits.ttl,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The answer for `key` if it is still fresh at `now`; a stale one is forgotten.
    pub fn get(&mut self, key: &str, now: Instant) -> Option<Lookup> {
        let ttl = self.ttl;
        let fresh = self.entries.get(key).and_then(|cached| {
            let ttl = if cached.lookup.is_ok() {
                ttl
            } else {
                FAILURE_TTL
            };
            (now.saturating_duration_since(cached.at) < ttl).then(|| cached.lookup.clone())
        });
        if fresh.is_none() {
            self.entries.pop(key);
        }
        fresh
    }

    /// Remembers an answer (transient errors are not remembered); true when another entry
    /// was evicted to make room.
    pub fn put(&mut self, key: String, lookup: Lookup, now: Instant) -> bool {
        if lookup == Err(LookupFailure::Error) {
            return false;
        }
        let evicts = self.entries.len() == self.entries.cap().get() && !self.entries.contains(&key);
        self.entries.put(key, Cached { lookup, at: now });
        evicts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str) -> Lookup {
        Ok(Arc::new(Meta {
            object: ObjectRef {
                kind: "Pod".into(),
                name: name.into(),
                ..Default::default()
            },
            ..Meta::default()
        }))
    }

    fn cache(capacity: usize, ttl_secs: u64) -> OwnerCache {
        OwnerCache::new(CacheLimits {
            capacity: NonZeroUsize::new(capacity).unwrap(),
            ttl: Duration::from_secs(ttl_secs),
        })
    }

    #[test]
    fn kept_metadata_is_bounded_and_never_loses_the_agents_own() {
        let mut all: Vec<(String, String)> = (0..100)
            .map(|i| (format!("a{i:03}"), "v".repeat(10)))
            .collect();
        all.push(("z-long".into(), "v".repeat(1000)));
        all.push((
            "k8s.sentry.io/dsn".into(),
            format!("https://{}@s/1", "k".repeat(300)),
        ));
        all.push((
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            "{}".into(),
        ));
        let kept = kept(all);
        assert_eq!(kept.len(), MAX_KEPT);
        assert_eq!(kept[0].0, "k8s.sentry.io/dsn");
        assert!(kept[0].1.len() > MAX_KEPT_VALUE, "the DSN is whole");
        assert!(!kept.iter().any(|(k, _)| k.contains("last-applied")));
        let bytes: usize = kept[1..].iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(bytes <= MAX_KEPT_BYTES);
        let long = super::kept([("k".to_string(), "v".repeat(1000))]);
        assert_eq!(long[0].1.chars().count(), MAX_KEPT_VALUE, "values are cut");
    }

    #[test]
    fn answers_expire_after_the_ttl_and_are_then_forgotten() {
        let start = Instant::now();
        let mut c = cache(10, 300);
        c.put("a".into(), meta("a"), start);
        assert_eq!(
            c.get("a", start + Duration::from_secs(299)),
            Some(meta("a"))
        );
        assert_eq!(c.get("a", start + Duration::from_secs(300)), None);
        assert!(c.is_empty(), "a stale entry is dropped, not kept");
    }

    #[test]
    fn capacity_evicts_the_least_recently_used_and_says_so() {
        let now = Instant::now();
        let mut c = cache(2, 300);
        assert!(!c.put("a".into(), meta("a"), now));
        assert!(!c.put("b".into(), meta("b"), now));
        assert!(c.get("a", now).is_some(), "a is now the most recently used");
        assert!(
            !c.put("b".into(), meta("b2"), now),
            "replacing evicts nothing"
        );
        assert!(c.put("c".into(), meta("c"), now));
        assert_eq!(c.len(), 2);
        assert!(c.get("a", now).is_none(), "a was the least recently used");
        assert!(c.get("b", now).is_some() && c.get("c", now).is_some());
    }

    #[test]
    fn failures_are_remembered_briefly_and_transient_errors_not_at_all() {
        let start = Instant::now();
        let mut c = cache(10, 3600);
        c.put("denied".into(), Err(LookupFailure::Forbidden), start);
        c.put("gone".into(), Err(LookupFailure::NotFound), start);
        assert!(!c.put("flaky".into(), Err(LookupFailure::Error), start));
        assert_eq!(
            c.get("denied", start + FAILURE_TTL - Duration::from_secs(1)),
            Some(Err(LookupFailure::Forbidden))
        );
        assert_eq!(c.get("denied", start + FAILURE_TTL), None);
        assert_eq!(c.get("gone", start + FAILURE_TTL), None);
        assert_eq!(c.get("flaky", start), None);
    }
}
