//! Bounded caches that cost memory only as they fill. `LruCache::new` sizes its table for
//! the whole capacity up front (2 MiB for the dedup state's 20,000 entries before the first
//! event); these grow with use and stop at the same bound.

use std::hash::Hash;
use std::num::NonZeroUsize;

use lru::LruCache;

/// A least-recently-used cache of at most `cap` entries, allocated as it fills.
pub fn lru<K: Hash + Eq, V>(cap: NonZeroUsize) -> LruCache<K, V> {
    let mut cache = LruCache::unbounded();
    cache.resize(cap);
    cache
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_capacity_and_starts_empty() {
        let mut cache = lru(NonZeroUsize::new(3).unwrap());
        assert_eq!(cache.cap().get(), 3);
        for i in 0..10 {
            cache.put(i, i);
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.contains(&9) && !cache.contains(&6));
    }
}
