//! The serverless [`WorkerInvoker`]: one synchronous Lambda `Invoke` (RequestResponse)
//! per worker request, all of a node's children at once on the function's tokio
//! runtime, each retried with capped exponential backoff when the failure is transient
//! (throttling, timeouts, 5xx, a crashed container).

use crate::config::Config;
use aws_sdk_lambda::error::{DisplayErrorContext, SdkError};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use squash_api::{WireReply, WorkerPayload, WorkerRequest, WorkerResponse};
use squash_engine::invoker::WorkerInvoker;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;

/// First retry delay; doubled per attempt up to [`MAX_BACKOFF`].
pub const BASE_BACKOFF: Duration = Duration::from_millis(50);
/// Longest delay between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

struct Inner {
    /// One client per configured endpoint (one in total on AWS).
    clients: Vec<aws_sdk_lambda::Client>,
    config: Config,
}

/// Invokes worker functions with aws-sdk-lambda.
pub struct LambdaInvoker {
    inner: Arc<Inner>,
    handle: Handle,
}

/// Why one attempt failed, and whether another attempt may succeed.
struct Failure {
    message: String,
    transient: bool,
}

impl LambdaInvoker {
    /// Builds the Lambda clients (credentials and region from the usual AWS chain; the
    /// endpoints from `SQUASH_LAMBDA_ENDPOINT` when set). Call once, at cold start, on
    /// the runtime the invocations will run on.
    pub async fn new(config: &Config) -> LambdaInvoker {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            // Our own retry loop decides what to repeat, and reports each failure.
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await;
        let client = |endpoint: Option<&String>| {
            let mut builder = aws_sdk_lambda::config::Builder::from(&shared);
            if shared.region().is_none() {
                builder = builder.region(aws_config::Region::new("us-east-1"));
            }
            if let Some(e) = endpoint {
                builder = builder.endpoint_url(e);
            }
            aws_sdk_lambda::Client::from_conf(builder.build())
        };
        let clients = if config.lambda_endpoints.is_empty() {
            vec![client(None)]
        } else {
            config.lambda_endpoints.iter().map(|e| client(Some(e))).collect()
        };
        LambdaInvoker {
            inner: Arc::new(Inner {
                clients,
                config: config.clone(),
            }),
            handle: Handle::current(),
        }
    }
}

impl Inner {
    async fn attempt(&self, worker: u32, function: &str, payload: &[u8]) -> Result<WorkerResponse, Failure> {
        let client = &self.clients[worker as usize % self.clients.len()];
        let call = client
            .invoke()
            .function_name(function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(payload))
            .send();
        let out = match tokio::time::timeout(self.config.invoke_timeout, call).await {
            Err(_) => {
                return Err(Failure {
                    message: format!("no answer within {:?}", self.config.invoke_timeout),
                    transient: true,
                })
            }
            Ok(Err(e)) => {
                let transient = match &e {
                    SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
                    SdkError::ServiceError(se) => {
                        let status = se.raw().status().as_u16();
                        status == 429 || status >= 500
                    }
                    _ => false,
                };
                return Err(Failure {
                    message: DisplayErrorContext(&e).to_string(),
                    transient,
                });
            }
            Ok(Ok(out)) => out,
        };
        let body = out.payload().map(|b| b.as_ref()).unwrap_or_default();
        if let Some(kind) = out.function_error() {
            // "Unhandled": the container crashed or timed out, a new one may succeed.
            return Err(Failure {
                message: format!("function error ({kind}): {}", String::from_utf8_lossy(body)),
                transient: kind == "Unhandled",
            });
        }
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Answer {
            Reply(WireReply),
            Refused { error: String },
        }
        let reply = match serde_json::from_slice::<Answer>(body) {
            Ok(Answer::Reply(r)) => r,
            Ok(Answer::Refused { error }) => {
                return Err(Failure {
                    message: format!("worker refused the request: {error}"),
                    transient: false,
                })
            }
            Err(e) => {
                return Err(Failure {
                    message: format!("unreadable worker reply: {e}"),
                    transient: false,
                })
            }
        };
        reply.into_response().map_err(|e| Failure {
            message: e.to_string(),
            transient: false,
        })
    }

    async fn invoke(self: Arc<Self>, req: WorkerRequest) -> Result<WorkerResponse, String> {
        let function = self.config.worker_function_name(req.worker);
        let payload = WorkerPayload::wire(&req)
            .map_err(|e| e.to_string())
            .and_then(|p| serde_json::to_vec(&p).map_err(|e| e.to_string()))?;
        let attempts = self.config.invoke_attempts.max(1);
        let mut delay = BASE_BACKOFF;
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.attempt(req.worker, &function, &payload).await {
                Ok(resp) => return Ok(resp),
                Err(f) => {
                    last = f.message;
                    if !f.transient || attempt == attempts {
                        return Err(format!("invoking {function} (attempt {attempt} of {attempts}): {last}"));
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_BACKOFF);
        }
        Err(format!("invoking {function}: {last}"))
    }
}

impl WorkerInvoker for LambdaInvoker {
    fn invoke_all(&self, requests: &[WorkerRequest]) -> Vec<Result<WorkerResponse, String>> {
        let tasks: Vec<_> = requests
            .iter()
            .map(|r| self.handle.spawn(self.inner.clone().invoke(r.clone())))
            .collect();
        // Called from a blocking thread (the handler's spawn_blocking, or a tree node's
        // scoped thread), never from a runtime worker, so blocking on the handle is allowed.
        self.handle.block_on(async move {
            let mut out = Vec::with_capacity(tasks.len());
            for t in tasks {
                out.push(t.await.unwrap_or_else(|e| Err(format!("invocation task failed: {e}"))));
            }
            out
        })
    }
}
