//! Test doubles of the engine (feature `testing`): a fault-injecting invoker. The
//! fault-injecting store is `squash_storage::Faulty`.

use crate::invoker::WorkerInvoker;
use squash_api::{WorkerRequest, WorkerResponse};
use std::sync::Arc;

/// What one invocation suffers under [`FaultyInvoker`].
#[derive(Debug, Clone, PartialEq)]
pub enum InvokeFault {
    /// The worker answers with an error (a function error, a refused request).
    Error(String),
    /// No answer within the given time.
    Timeout(std::time::Duration),
    /// The container dies mid-response: the caller gets half a reply that does not decode.
    Crash,
}

/// The rule: given the worker number and the attempt on that worker (1, 2, ...), the
/// fault to inject, if any.
pub type InvokeRule = dyn Fn(u32, u32) -> Option<InvokeFault> + Send + Sync;

/// A fault-injecting decorator over another invoker, for tests and failure drills:
/// invocations of the workers a rule picks fail, time out or crash mid-response; the
/// others go through. Faults apply to the requests it is given (the tree's top level).
pub struct FaultyInvoker {
    inner: Arc<dyn WorkerInvoker>,
    rule: Box<InvokeRule>,
    attempts: std::sync::Mutex<std::collections::HashMap<u32, u32>>,
}

impl FaultyInvoker {
    /// Invokes through `inner`, suffering what `rule` says.
    pub fn new(
        inner: Arc<dyn WorkerInvoker>,
        rule: impl Fn(u32, u32) -> Option<InvokeFault> + Send + Sync + 'static,
    ) -> FaultyInvoker {
        FaultyInvoker {
            inner,
            rule: Box::new(rule),
            attempts: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn next_attempt(&self, worker: u32) -> u32 {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let n = attempts.entry(worker).or_insert(0);
        *n += 1;
        *n
    }
}

impl WorkerInvoker for FaultyInvoker {
    fn invoke_all(&self, requests: &[WorkerRequest]) -> Vec<Result<WorkerResponse, String>> {
        let faults: Vec<Option<InvokeFault>> = requests
            .iter()
            .map(|r| (self.rule)(r.worker, self.next_attempt(r.worker)))
            .collect();
        let passed: Vec<WorkerRequest> = requests
            .iter()
            .zip(&faults)
            .filter(|(_, f)| !matches!(f, Some(InvokeFault::Error(_)) | Some(InvokeFault::Timeout(_))))
            .map(|(r, _)| r.clone())
            .collect();
        let mut answers = self.inner.invoke_all(&passed).into_iter();
        requests
            .iter()
            .zip(faults)
            .map(|(r, fault)| match fault {
                None => answers.next().unwrap_or_else(|| Err("no answer".into())),
                Some(InvokeFault::Error(message)) => Err(format!("worker {} failed: {message}", r.worker)),
                Some(InvokeFault::Timeout(after)) => {
                    std::thread::sleep(after);
                    Err(format!("worker {} timed out after {} ms", r.worker, after.as_millis()))
                }
                Some(InvokeFault::Crash) => {
                    // The real reply, cut in half on the wire.
                    let reply = answers.next().unwrap_or_else(|| Err("no answer".into()))?;
                    let wire = squash_api::WireReply::new(&reply).map_err(|e| e.to_string())?;
                    let cut = squash_api::WireReply {
                        wire: wire.wire[..wire.wire.len() / 2].to_string(),
                    };
                    cut.into_response()
                        .map_err(|e| format!("worker {} crashed mid-response: {e}", r.worker))
                }
            })
            .collect()
    }
}
