//! The warm segment cache: decoded segments keyed by their immutable, content-hashed
//! object key, evicted least-recently-used first when over a byte budget.

use squash_core::segment::Segment;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

struct Entry {
    segment: Arc<Segment>,
    bytes: u64,
    last_used: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    used: u64,
    tick: u64,
}

/// LRU cache of decoded segments bounded by bytes.
pub struct SegmentCache {
    budget: u64,
    inner: Mutex<Inner>,
}

impl SegmentCache {
    /// A cache holding at most `budget` bytes of segments (one oversized segment is
    /// still kept, alone).
    pub fn new(budget: u64) -> SegmentCache {
        SegmentCache {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The cached segment under `key`, if any.
    pub fn get(&self, key: &str) -> Option<Arc<Segment>> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        inner.entries.get_mut(key).map(|e| {
            e.last_used = tick;
            e.segment.clone()
        })
    }

    /// Inserts a segment of `bytes` bytes, evicting the least recently used ones.
    pub fn insert(&self, key: &str, segment: Arc<Segment>, bytes: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(old) = inner.entries.insert(
            key.to_string(),
            Entry {
                segment,
                bytes,
                last_used: tick,
            },
        ) {
            inner.used -= old.bytes;
        }
        inner.used += bytes;
        while inner.used > self.budget && inner.entries.len() > 1 {
            let victim = inner
                .entries
                .iter()
                .filter(|(k, _)| k.as_str() != key)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            if let Some(e) = inner.entries.remove(&victim) {
                inner.used -= e.bytes;
            }
        }
    }

    /// Whether a segment is cached under `key` (without counting as a use).
    pub fn contains(&self, key: &str) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .contains_key(key)
    }

    /// The byte budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Bytes currently held.
    pub fn used_bytes(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).used
    }

    /// Number of cached segments.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty segment: the cache never looks inside, it counts the bytes it is told.
    fn segment() -> Arc<Segment> {
        use squash_core::distance::Metric;
        use squash_core::klt::Klt;
        use squash_core::osq::Quantizer;
        use squash_core::segment::{SegmentMeta, SegmentParts};
        let parts = SegmentParts {
            meta: SegmentMeta {
                partition: 0,
                count: 0,
                dim: 1,
                metric: Metric::L2,
                attrs: 0,
            },
            klt: Klt {
                dim: 1,
                mean: vec![0.0],
                basis: vec![1.0],
                eigenvalues: vec![0.0],
            },
            quantizer: Quantizer {
                bits: vec![0],
                bounds: vec![vec![0.0, 0.0]],
            },
            codes: Vec::new(),
            signs: Vec::new(),
            attr_cells: Vec::new(),
            attr_codes: Vec::new(),
            ids: Vec::new(),
            names: Vec::new(),
            attr_values: Vec::new(),
            attr_lists: Vec::new(),
            vectors: Vec::new(),
            lists: vec![0, 0],
        };
        Arc::new(Segment::decode("empty", parts.encode()).expect("an empty segment decodes"))
    }

    #[test]
    fn evicts_least_recently_used_first_and_keeps_within_budget() {
        let cache = SegmentCache::new(100);
        cache.insert("a", segment(), 40);
        cache.insert("b", segment(), 40);
        assert!(cache.get("a").is_some(), "touch a: b is now the oldest");
        cache.insert("c", segment(), 40);
        assert!(cache.get("b").is_none(), "b was least recently used");
        assert!(cache.get("a").is_some() && cache.get("c").is_some());
        assert_eq!((cache.len(), cache.used_bytes()), (2, 80));
        // Re-inserting a key replaces it and counts its bytes once.
        cache.insert("c", segment(), 50);
        assert_eq!((cache.len(), cache.used_bytes()), (2, 90));
    }

    #[test]
    fn an_oversized_segment_is_kept_alone() {
        let cache = SegmentCache::new(100);
        cache.insert("a", segment(), 60);
        cache.insert("big", segment(), 500);
        assert_eq!((cache.len(), cache.used_bytes()), (1, 500));
        assert!(cache.get("big").is_some() && cache.get("a").is_none());
        let none = SegmentCache::new(0);
        none.insert("x", segment(), 1);
        assert_eq!(none.len(), 1, "even a zero budget holds the segment in use");
        assert!(!none.is_empty());
    }
}
