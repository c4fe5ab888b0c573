//! The in-process invokers: workers run on this process's rayon pool. The embedded mode
//! and a coordinator that searches by itself use [`InProcessInvoker`]; benchmarks of cold
//! containers use [`ColdInvoker`].

use crate::invoker::WorkerInvoker;
use crate::worker::{RangeReads, Worker};
use rayon::prelude::*;
use squash_api::{WorkerRequest, WorkerResponse};
use squash_storage::ObjectStore;
use std::sync::Arc;

/// Runs workers inside this process on the rayon pool, sharing one warm cache.
pub struct InProcessInvoker {
    worker: Arc<Worker>,
}

impl InProcessInvoker {
    /// An invoker over one in-process worker.
    pub fn new(worker: Arc<Worker>) -> InProcessInvoker {
        InProcessInvoker { worker }
    }

    /// The worker (for cache stats).
    pub fn worker(&self) -> &Arc<Worker> {
        &self.worker
    }
}

impl WorkerInvoker for InProcessInvoker {
    fn invoke_all(&self, requests: &[WorkerRequest]) -> Vec<Result<WorkerResponse, String>> {
        requests
            .par_iter()
            .map(|r| Ok(self.worker.handle_node(r, self)))
            .collect()
    }
}

/// Invokes a new in-process worker with an empty cache for every batch of requests, as
/// if every container were cold (see [`crate::search::Index::open_cold`]). For
/// measuring, not for serving.
pub struct ColdInvoker {
    store: Arc<dyn ObjectStore>,
    ranges: RangeReads,
}

impl ColdInvoker {
    /// Cold workers reading from `store`, by ranges or whole.
    pub fn new(store: Arc<dyn ObjectStore>, ranges: RangeReads) -> ColdInvoker {
        ColdInvoker { store, ranges }
    }
}

impl WorkerInvoker for ColdInvoker {
    fn invoke_all(&self, requests: &[WorkerRequest]) -> Vec<Result<WorkerResponse, String>> {
        let worker = Arc::new(Worker::new(self.store.clone(), 0).with_range_reads(self.ranges));
        InProcessInvoker::new(worker).invoke_all(requests)
    }
}
