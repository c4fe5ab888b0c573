//! Everything the coordinator decides about an incoming event, so that its binary only
//! hands events over: whether it is an HTTP event (API Gateway HTTP API payload 2.0, or
//! a function URL, which uses the same shape) or a raw invoke, how an HTTP body is read
//! (plain or base64), and the HTTP response it answers. Tested with the samples in
//! `events/`.

use crate::service::{json_reply, Coordinator, HttpReply, WorkerService};
use base64::Engine as _;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_http::aws_lambda_events::encodings::Body;
use lambda_http::aws_lambda_events::http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use serde_json::{json, Value};
use squash_engine::cost::Route;
use squash_engine::SearchError;

/// The two shapes of event the coordinator takes.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// API Gateway HTTP API (payload 2.0) or function URL: it has `requestContext.http`.
    Http,
    /// A raw invoke: `{"index": ..., "search": {...}}` or `{"index": ..., "describe": true}`.
    Raw,
}

/// Which shape `event` has.
pub fn kind(event: &Value) -> EventKind {
    if event.pointer("/requestContext/http/method").is_some() {
        EventKind::Http
    } else {
        EventKind::Raw
    }
}

/// An HTTP request as the routes see it.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// Whether it came through API Gateway or the function URL (for the cost estimate).
    pub via: Route,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The raw path (`/v1/indexes/glove/search`).
    pub path: String,
    /// The body, base64-decoded when the event says it is encoded.
    pub body: Vec<u8>,
}

/// Reads an HTTP event; an event that is not one, or a body that is not valid base64,
/// is the 400 reply to send back.
pub fn parse_http(event: Value) -> Result<HttpRequest, HttpReply> {
    let req: ApiGatewayV2httpRequest = serde_json::from_value(event).map_err(|e| HttpReply {
        status: 400,
        body: json!({"error": {"code": "bad_request", "message": format!("unreadable HTTP event: {e}")}}),
    })?;
    let body = match (req.body, req.is_base64_encoded) {
        (None, _) => Vec::new(),
        (Some(b), false) => b.into_bytes(),
        (Some(b), true) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| json_reply::<Value>(Err(SearchError::bad("body", format!("not valid base64: {e}")))))?,
    };
    // A function URL's domain is `<id>.lambda-url.<region>.on.aws`, and its route key is
    // always `$default`, which the HTTP API of our stacks never uses (it routes the keys
    // in ROUTES).
    let url_domain = req
        .request_context
        .domain_name
        .as_deref()
        .is_some_and(|d| d.contains(".lambda-url."));
    let via = if url_domain || req.route_key.as_deref() == Some("$default") {
        Route::FunctionUrl
    } else {
        Route::HttpApi
    };
    Ok(HttpRequest {
        via,
        method: req.request_context.http.method.to_string(),
        path: req.raw_path.unwrap_or_default(),
        body,
    })
}

/// The HTTP API / function URL response for `reply`: JSON, not base64-encoded.
pub fn http_response(reply: &HttpReply) -> ApiGatewayV2httpResponse {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = i64::from(reply.status);
    response.headers = headers;
    response.body = Some(Body::Text(reply.body.to_string()));
    response.is_base64_encoded = false;
    response
}

/// What one event was, for the log line (never the query or the filter).
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// The answer to return to the Lambda runtime.
    pub answer: Value,
    /// `raw invoke` or `POST "/v1/indexes/x/search" -> 200`.
    pub summary: String,
    /// The HTTP status of the answer (a raw invoke's and a worker's too: 200, or the
    /// error's).
    pub status: u16,
}

impl Handled {
    /// The log level of this event: `ERROR` for a 5xx, `WARN` for a 4xx, `INFO` otherwise.
    pub fn level(&self) -> &'static str {
        match self.status {
            500.. => "ERROR",
            400.. => "WARN",
            _ => "INFO",
        }
    }

    /// The one log line of this event, as JSON with a `level` (so Lambda's log-level
    /// filter can drop it: the stacks keep WARN and above by default) and never the
    /// query or the filter: `{"level":"INFO","function":"squash-worker","msg":"ok","ms":3}`.
    pub fn log_line(&self, function: &str, ms: u128) -> String {
        json!({"level": self.level(), "function": function, "msg": self.summary, "ms": ms as u64}).to_string()
    }
}

/// Serves one worker invocation and says, for the log line, how it went (never the
/// query or the filter).
pub fn handle_worker_event(worker: &WorkerService, event: Value) -> Handled {
    let answer = worker.handle_json(event);
    let (summary, status) = match answer.get("error") {
        Some(e) => (format!("error: {e}"), 500),
        None => ("ok".to_string(), 200),
    };
    Handled {
        answer,
        summary,
        status,
    }
}

/// Serves one coordinator event of either shape; blocking (run it off the async
/// runtime's threads).
pub fn handle_event(coordinator: &Coordinator, event: Value) -> Handled {
    if kind(&event) == EventKind::Raw {
        let answer = coordinator.raw(&event);
        let status = answer.get("status").and_then(Value::as_u64).map_or(200, |s| s as u16);
        return Handled {
            answer,
            summary: format!("raw invoke -> {status}"),
            status,
        };
    }
    let (reply, summary) = match parse_http(event) {
        Err(reply) => {
            let summary = format!("unreadable HTTP event -> {}", reply.status);
            (reply, summary)
        }
        Ok(req) => {
            let reply = coordinator.route_via(&req.method, &req.path, &req.body, req.via);
            let summary = format!("{} {:?} -> {}", req.method, req.path, reply.status);
            (reply, summary)
        }
    };
    // The response type is plain data (strings, numbers, a header map): it serialises.
    let answer = serde_json::to_value(http_response(&reply)).unwrap_or_else(|e| {
        json!({"statusCode": 500, "headers": {"content-type": "application/json"},
            "body": json!({"error": {"code": "internal", "message": e.to_string()}}).to_string()})
    });
    Handled {
        answer,
        summary,
        status: reply.status,
    }
}
