//! How a coordinator (or an inner tree node) reaches workers: one trait, free of any
//! worker or transport. The in-process invoker ([`crate::in_process`]) runs workers on
//! rayon; the Lambda invoker (squash-lambda) implements it with `Invoke` calls.

use squash_api::{WorkerRequest, WorkerResponse};

/// Sends worker requests and collects their responses, concurrently.
pub trait WorkerInvoker: Send + Sync {
    /// Runs every request (request `i` goes to worker `requests[i].worker`) and returns
    /// the responses in the same order; a failed invocation is an `Err` naming what went
    /// wrong.
    fn invoke_all(&self, requests: &[WorkerRequest]) -> Vec<Result<WorkerResponse, String>>;
}
