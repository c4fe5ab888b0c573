//! What a caller asks the coordinator, parsed once from whichever event carried it: an
//! HTTP request (API Gateway or a function URL) or a raw invoke. The coordinator runs
//! every [`Operation`] through one `execute`, so both ways in answer alike.

use serde_json::{json, Value};
use squash_api::{parse_body, parse_value, BatchRequest, DeleteRequest, SearchRequest, UpsertRequest};
use squash_engine::SearchError;

/// The HTTP routes the coordinator serves, as API Gateway route keys. The infra templates
/// route exactly these (`make infra-check` compares them) and a test routes each one.
pub const ROUTES: &[&str] = &[
    "POST /v1/indexes/{index}/search",
    "POST /v1/indexes/{index}/search/batch",
    "POST /v1/indexes/{index}/upsert",
    "POST /v1/indexes/{index}/delete",
    "GET /v1/indexes/{index}",
];

/// An HTTP answer: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpReply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

/// The error body of every failed request: `{"error": {"code", "message", "field"?}}`.
pub fn error_body(e: &SearchError) -> Value {
    let mut err = json!({"code": e.code(), "message": e.to_string()});
    if let SearchError::BadRequest { field, .. } = e {
        err["field"] = json!(field);
    }
    json!({ "error": err })
}

/// Largest search request body the coordinator reads (API Gateway's own limit is 10 MB).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Largest batch body the coordinator reads: 100 queries of 1,536 dimensions in JSON fit,
/// and the event that carries it stays under Lambda's 6 MB invoke payload limit.
pub const MAX_BATCH_BODY_BYTES: usize = 5 << 20;

/// Largest upsert or delete body the coordinator reads (1,000 vectors of 1,536
/// dimensions in JSON fit; the event stays under Lambda's 6 MB invoke payload limit).
pub const MAX_WRITE_BODY_BYTES: usize = 5 << 20;

/// One request to the coordinator, on the index it names.
#[derive(Debug, Clone)]
pub enum Operation {
    /// One search.
    Search {
        /// Index name.
        index: String,
        /// The search.
        request: SearchRequest,
    },
    /// Several searches answered together.
    Batch {
        /// Index name.
        index: String,
        /// The searches.
        request: BatchRequest,
    },
    /// Insert or replace vectors.
    Upsert {
        /// Index name.
        index: String,
        /// The rows.
        request: UpsertRequest,
    },
    /// Delete vectors by id or by filter.
    Delete {
        /// Index name.
        index: String,
        /// What to delete.
        request: DeleteRequest,
    },
    /// Describe the index.
    Describe {
        /// Index name.
        index: String,
    },
}

impl Operation {
    /// The index the operation is on.
    pub fn index(&self) -> &str {
        match self {
            Operation::Search { index, .. }
            | Operation::Batch { index, .. }
            | Operation::Upsert { index, .. }
            | Operation::Delete { index, .. }
            | Operation::Describe { index } => index,
        }
    }

    /// Parses an HTTP request on one of [`ROUTES`]; otherwise the reply to send: 404 for
    /// an unknown path, 405 for a known path with another method, 400 naming the field
    /// of a body that does not parse.
    pub fn from_http(method: &str, path: &str, body: &[u8]) -> Result<Operation, HttpReply> {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let bad = |e: SearchError| HttpReply {
            status: e.status(),
            body: error_body(&e),
        };
        let index = |i: &str| i.to_string();
        match (method, parts.as_slice()) {
            ("POST", ["", "v1", "indexes", i, "search"]) => Ok(Operation::Search {
                index: index(i),
                request: parse_search(body).map_err(bad)?,
            }),
            ("POST", ["", "v1", "indexes", i, "search", "batch"]) => Ok(Operation::Batch {
                index: index(i),
                request: parse_batch(body).map_err(bad)?,
            }),
            ("POST", ["", "v1", "indexes", i, "upsert"]) => Ok(Operation::Upsert {
                index: index(i),
                request: parse_write(body, "{\"vectors\": [{\"id\": ..., \"vector\": [...]}, ...]}").map_err(bad)?,
            }),
            ("POST", ["", "v1", "indexes", i, "delete"]) => Ok(Operation::Delete {
                index: index(i),
                request: parse_write(body, "{\"ids\": [...]} or {\"filter\": {...}}").map_err(bad)?,
            }),
            ("GET", ["", "v1", "indexes", i]) => Ok(Operation::Describe { index: index(i) }),
            (_, ["", "v1", "indexes", _, "search"])
            | (_, ["", "v1", "indexes", _, "upsert"])
            | (_, ["", "v1", "indexes", _, "delete"])
            | (_, ["", "v1", "indexes", _, "search", "batch"])
            | (_, ["", "v1", "indexes", _]) => Err(HttpReply {
                status: 405,
                body: json!({"error": {"code": "method_not_allowed",
                    "message": format!("{method} is not allowed on {path}")}}),
            }),
            _ => Err(HttpReply {
                status: 404,
                body: json!({"error": {"code": "not_found",
                    "message": format!("no route {method} {path} (routes: {})", ROUTES.join(", "))}}),
            }),
        }
    }

    /// Parses a raw invoke: `{"index": NAME}` with one of `"search": {...}`,
    /// `"batch": [{...}, ...]`, `"upsert": {...}`, `"delete": {...}` or
    /// `"describe": true`. Fields are named within the request, as over HTTP (the
    /// operation's key when it is not an object).
    pub fn from_raw(event: &Value) -> Result<Operation, SearchError> {
        let Some(index) = event.get("index").and_then(Value::as_str) else {
            return Err(SearchError::bad(
                "index",
                "a raw invoke needs \"index\" and \"search\", \"batch\" or \"describe\"",
            ));
        };
        let index = index.to_string();
        let within = |key: &'static str| {
            move |e: squash_api::RequestError| {
                SearchError::bad(if e.field == "body" { key } else { &e.field }, e.message)
            }
        };
        if let Some(batch) = event.get("batch") {
            let request =
                BatchRequest::from_queries(batch.clone()).map_err(|e| SearchError::bad(&e.field, e.message))?;
            Ok(Operation::Batch { index, request })
        } else if let Some(search) = event.get("search") {
            let request = SearchRequest::from_value(search.clone()).map_err(within("search"))?;
            Ok(Operation::Search { index, request })
        } else if let Some(up) = event.get("upsert") {
            let request = parse_value::<UpsertRequest>(up.clone()).map_err(within("upsert"))?;
            Ok(Operation::Upsert { index, request })
        } else if let Some(del) = event.get("delete") {
            let request = parse_value::<DeleteRequest>(del.clone()).map_err(within("delete"))?;
            Ok(Operation::Delete { index, request })
        } else if event.get("describe").is_some() {
            Ok(Operation::Describe { index })
        } else {
            Err(SearchError::bad(
                "search",
                "a raw invoke needs \"search\", \"batch\" or \"describe\"",
            ))
        }
    }
}

/// A body of at most `limit` bytes that is not blank (`shape` says what to send).
fn check_body(body: &[u8], limit: usize, what: &str, shape: &str) -> Result<(), SearchError> {
    if body.len() > limit {
        return Err(SearchError::bad(
            "body",
            format!("is {} bytes, the limit{what} is {limit}", body.len()),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(SearchError::bad("body", format!("is empty; send {shape}")));
    }
    Ok(())
}

fn parse_search(body: &[u8]) -> Result<SearchRequest, SearchError> {
    check_body(body, MAX_BODY_BYTES, "", "a JSON search request")?;
    SearchRequest::from_json(body).map_err(|e| SearchError::bad(&e.field, e.message))
}

fn parse_batch(body: &[u8]) -> Result<BatchRequest, SearchError> {
    check_body(
        body,
        MAX_BATCH_BODY_BYTES,
        " of a batch",
        "{\"queries\": [<search request>, ...]}",
    )?;
    BatchRequest::from_json(body).map_err(|e| SearchError::bad(&e.field, e.message))
}

fn parse_write<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, SearchError> {
    check_body(body, MAX_WRITE_BODY_BYTES, " of a write", shape)?;
    parse_body(body).map_err(|e| SearchError::bad(&e.field, e.message))
}
