//! `squash-coordinator`: the coordinator Lambda function. Takes API Gateway HTTP API
//! (payload 2.0) and function-URL events on `POST /v1/indexes/{index}/search` and
//! `GET /v1/indexes/{index}`, and raw invokes; `squash_lambda::events` decides what each
//! event is and answers it. Built once per container: configuration, clients, cache.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use squash_lambda::{events, Config, Coordinator};
use std::sync::Arc;
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::from_env()?;
    let coordinator = Arc::new(Coordinator::from_config(config).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let coordinator = coordinator.clone();
        async move {
            let t0 = Instant::now();
            let handled =
                tokio::task::spawn_blocking(move || events::handle_event(&coordinator, event.payload)).await?;
            eprintln!("{}", handled.log_line("squash-coordinator", t0.elapsed().as_millis()));
            Ok::<Value, Error>(handled.answer)
        }
    }))
    .await
}
