//! The worker pipeline: for each assigned partition, fetch the segment (cache, else the
//! object store, verified against the manifest's size and checksum); in the fine lists
//! the planner chose, filter on attribute codes, prune by Hamming distance, bound by ADC;
//! then re-rank the best bounds of all segments together, exactly. The scan kernel
//! ([`scan`]), getting segments (`fetch`), running a request's queries (`batch`) and the
//! fan-out tree (`fanout`) each have a file.

mod batch;
mod fanout;
mod fetch;
pub mod scan;

pub use fanout::{merge_answers, merge_hits};
pub use fetch::RangeReads;
pub use scan::{
    bound_again, bound_segment, bound_selected, rerank, search_segment, select_rows, Bounds, PartitionParams, Reranked,
    RowHit, ScanMemo, Selected, HAMMING_FLOOR_FACTOR,
};

use crate::cache::SegmentCache;
use squash_core::deletes::DeadRows;
use squash_storage::ObjectStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A worker: searches segments for [`WorkerRequest`]s, keeping decoded segments warm.
pub struct Worker {
    store: Arc<dyn ObjectStore>,
    cache: Arc<SegmentCache>,
    ranges: RangeReads,
    /// Decoded deletion sets by object key (immutable, content-hashed).
    deletes: Mutex<HashMap<String, Arc<DeadRows>>>,
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
