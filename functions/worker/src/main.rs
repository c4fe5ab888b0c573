//! `squash-worker`: the worker Lambda function. Built once per container: the
//! configuration, the Lambda client for its children, the object-store client and the
//! warm segment cache; each invocation searches its share of partitions while its
//! children search theirs.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use squash_lambda::{Config, LambdaInvoker, WorkerService};
use std::sync::Arc;
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::from_env()?;
    let invoker = Arc::new(LambdaInvoker::new(&config).await);
    let service = Arc::new(WorkerService::new(config, invoker)?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let service = service.clone();
        async move {
            let t0 = Instant::now();
            let handled = tokio::task::spawn_blocking(move || {
                squash_lambda::events::handle_worker_event(&service, event.payload)
            })
            .await?;
            // One log line per invocation; never the query or the filter.
            eprintln!("{}", handled.log_line("squash-worker", t0.elapsed().as_millis()));
            Ok::<Value, Error>(handled.answer)
        }
    }))
    .await
}
