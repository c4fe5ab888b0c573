//! How a coordinator reaches workers. The in-process invoker runs them on rayon; the
//! Lambda invoker (serverless mode) implements the same trait with `Invoke` calls.

use crate::worker::Worker;
use rayon::prelude::*;
use squash_api::{WorkerRequest, WorkerResponse};
use std::sync::Arc;

/// Sends worker requests and collects their responses, concurrently.
pub trait WorkerInvoker: Send + Sync {
    /// Runs every request (request `i` goes to worker `i`'s share of partitions) and
    /// returns the responses in the same order; a failed invocation is an `Err`
    /// naming what went wrong.
    fn invoke_all(&self, requests: Vec<WorkerRequest>) -> Vec<Result<WorkerResponse, String>>;
}

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
    fn invoke_all(&self, requests: Vec<WorkerRequest>) -> Vec<Result<WorkerResponse, String>> {
        requests
            .par_iter()
            .map(|r| Ok(self.worker.handle_node(r, self)))
            .collect()
    }
}
