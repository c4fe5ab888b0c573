//! `squash-coordinator`: the coordinator Lambda function. Serves API Gateway HTTP API
//! (payload v2) and function-URL events on `POST /v1/indexes/{index}/search` and
//! `GET /v1/indexes/{index}`, and raw invokes (`{"index": ..., "search": {...}}`).
//! One binary takes both shapes, so it reads the event as JSON and picks the shape
//! itself instead of letting `lambda_http::run` reject raw invokes; the HTTP types are
//! lambda_http's.

use base64::Engine as _;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_http::aws_lambda_events::encodings::Body;
use lambda_http::http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use squash_lambda::{Config, Coordinator, HttpReply, LambdaInvoker};
use squash_search::invoker::WorkerInvoker;
use std::sync::Arc;
use std::time::Instant;

/// An HTTP API (v2) or function-URL event carries `requestContext.http`.
fn is_http(event: &Value) -> bool {
    event.pointer("/requestContext/http/method").is_some()
}

fn http_response(reply: HttpReply) -> ApiGatewayV2httpResponse {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = i64::from(reply.status);
    response.headers = headers;
    response.body = Some(Body::Text(reply.body.to_string()));
    response.is_base64_encoded = false;
    response
}

async fn handle(coordinator: Arc<Coordinator>, event: Value) -> Result<Value, Error> {
    let t0 = Instant::now();
    if !is_http(&event) {
        let answer = tokio::task::spawn_blocking(move || coordinator.raw(&event)).await?;
        eprintln!("squash-coordinator: raw invoke in {} ms", t0.elapsed().as_millis());
        return Ok(answer);
    }
    let reply = match serde_json::from_value::<ApiGatewayV2httpRequest>(event) {
        Err(e) => HttpReply {
            status: 400,
            body: json!({"error": {"code": "bad_request", "message": format!("unreadable HTTP event: {e}")}}),
        },
        Ok(req) => {
            let method = req.request_context.http.method.to_string();
            let path = req.raw_path.clone().unwrap_or_default();
            let body = match (req.body, req.is_base64_encoded) {
                (None, _) => Ok(Vec::new()),
                (Some(b), false) => Ok(b.into_bytes()),
                (Some(b), true) => base64::engine::general_purpose::STANDARD.decode(b),
            };
            match body {
                Err(e) => HttpReply {
                    status: 400,
                    body: json!({"error": {"code": "bad_request", "field": "body",
                        "message": format!("invalid 'body': not valid base64: {e}")}}),
                },
                Ok(body) => {
                    let (m, p) = (method.clone(), path.clone());
                    let reply = tokio::task::spawn_blocking(move || coordinator.route(&m, &p, &body)).await?;
                    eprintln!(
                        "squash-coordinator: {method} {path:?} -> {} in {} ms",
                        reply.status,
                        t0.elapsed().as_millis()
                    );
                    reply
                }
            }
        }
    };
    Ok(serde_json::to_value(http_response(reply))?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = Config::from_env()?;
    let invoker: Option<Arc<dyn WorkerInvoker>> = if config.search_in_coordinator {
        None
    } else {
        Some(Arc::new(LambdaInvoker::new(&config).await))
    };
    let coordinator = Arc::new(Coordinator::new(config, invoker));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        handle(coordinator.clone(), event.payload)
    }))
    .await
}
