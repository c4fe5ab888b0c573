//! What a worker holds: its store, its segment cache, how it reads missed segments and
//! the deletion sets it keeps decoded.

use crate::cache::SegmentCache;
use squash_core::deletes::DeadRows;
use squash_storage::ObjectStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A worker: searches segments for [`WorkerRequest`]s, keeping decoded segments warm.
pub struct Worker {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) cache: Arc<SegmentCache>,
    pub(super) ranges: RangeReads,
    /// Decoded deletion sets by object key (immutable, content-hashed).
    pub(super) deletes: Mutex<HashMap<String, Arc<DeadRows>>>,
}

impl Worker {
    /// A worker reading from `store` with a cache of `cache_bytes`.
    pub fn new(store: Arc<dyn ObjectStore>, cache_bytes: u64) -> Worker {
        Worker::with_cache(store, Arc::new(SegmentCache::new(cache_bytes)))
    }

    /// A worker reading from `store` that shares `cache` with other workers of the
    /// process (one per index; keys are content-hashed, so indexes never collide).
    pub fn with_cache(store: Arc<dyn ObjectStore>, cache: Arc<SegmentCache>) -> Worker {
        Worker {
            store,
            cache,
            ranges: RangeReads::Off,
            deletes: Mutex::new(HashMap::new()),
        }
    }

    /// This worker with range reads set to `ranges`.
    pub fn with_range_reads(mut self, ranges: RangeReads) -> Worker {
        self.ranges = ranges;
        self
    }

    /// The segment cache (for stats and tests).
    pub fn cache(&self) -> &SegmentCache {
        &self.cache
    }
}

/// Whether a worker reads a missed segment by byte ranges (its parameters, then the
/// lists a query scans and the vector blocks it re-ranks) or whole.
///
/// Off by default: at today's segment sizes (a few MB) a whole-object GET costs less.
/// Read by ranges, a cold query on synth-1m fetches 5–21 % of the bytes but makes 30–40
/// times the requests (3 + 2 per attribute ranges per list, a range per vector block);
/// at S3's request fee those cost more than the bytes saved (docs/BENCHMARKS.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RangeReads {
    /// Every segment is fetched whole.
    #[default]
    Off,
    /// Segments that carry range checksums are read by ranges.
    On,
}

impl std::str::FromStr for RangeReads {
    type Err = String;
    fn from_str(s: &str) -> Result<RangeReads, String> {
        match s {
            "on" => Ok(RangeReads::On),
            "off" => Ok(RangeReads::Off),
            other => Err(format!("expected on or off, got '{other}'")),
        }
    }
}
