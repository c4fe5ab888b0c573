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
