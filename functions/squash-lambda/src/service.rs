//! The two services behind the functions, callable without Lambda: the coordinator's
//! HTTP routes and raw invokes, and the worker's handler. Each keeps its clients, open
//! indexes and warm segment cache for the life of the container.

use crate::config::Config;
use serde::Serialize;
use serde_json::{json, Value};
use squash_api::{
    parse_body, parse_value, BatchRequest, BatchResponse, Consistency, DeleteRequest, Id, SearchRequest,
    SearchResponse, UpsertRequest, WireReply, WorkerPayload, WorkerResponse, MAX_DELETE_IDS, MAX_UPSERT_VECTORS,
};
use squash_core::attrs::{AttrKind, AttrSpec, ListColumn, Schema, MAX_LIST_ELEMENTS};
use squash_engine::cache::SegmentCache;
use squash_engine::cost::Route;
use squash_engine::in_process::InProcessInvoker;
use squash_engine::invoker::WorkerInvoker;
use squash_engine::search::{load_manifest_reusing, Call, Index, Local};
use squash_engine::worker::Worker;
use squash_engine::SearchError;
use squash_s3::Connector;
use squash_storage::{DiskTier, ObjectStore};
use squash_write::{Attributes, Delete, Ids, Matrix, Upsert, WriteError, WriteReport, Writer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Largest search request body the coordinator reads (API Gateway's own limit is 10 MB).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Largest batch body the coordinator reads: 100 queries of 1,536 dimensions in JSON fit,
/// and the event that carries it stays under Lambda's 6 MB invoke payload limit.
pub const MAX_BATCH_BODY_BYTES: usize = 5 << 20;

/// Longest index name.
pub const MAX_INDEX_NAME: usize = 128;

/// Checks an index name: 1 to 128 of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-`
/// (so never `..`, a path separator or a control character).
pub fn check_index_name(name: &str) -> Result<(), SearchError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > MAX_INDEX_NAME {
        return Err(SearchError::bad(
            "index",
            format!("must be 1 to {MAX_INDEX_NAME} characters"),
        ));
    }
    if !name.chars().all(ok_char) || name.starts_with(['.', '-']) {
        return Err(SearchError::bad(
            "index",
            "may hold only letters, digits, '.', '_' and '-', and may not start with '.' or '-'",
        ));
    }
    Ok(())
}

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

/// The reply for a route's outcome: 200 with the answer as JSON, or the error's status
/// with its JSON body. An answer that does not serialise is our bug: 500, `internal`.
pub fn json_reply<T: Serialize>(result: Result<T, SearchError>) -> HttpReply {
    let body = result.and_then(|answer| serde_json::to_value(answer).map_err(SearchError::internal));
    match body {
        Ok(body) => HttpReply { status: 200, body },
        Err(e) => HttpReply {
            status: e.status(),
            body: error_body(&e),
        },
    }
}

/// What a function container builds once and every request shares: its
/// configuration, the object-store clients, the warm segment cache, and a count of the
/// requests it has served (the first one is the cold start).
struct ContainerState {
    config: Config,
    connector: Connector,
    cache: Arc<SegmentCache>,
    served: AtomicU64,
}

impl ContainerState {
    /// Builds the object-store clients for `config.index_root` (one S3 client for every
    /// index it opens) and an empty cache of `config.cache_bytes`.
    fn new(config: Config) -> Result<ContainerState, String> {
        Ok(ContainerState {
            connector: Connector::for_root(&config.index_root).map_err(|e| e.to_string())?,
            cache: Arc::new(SegmentCache::new(config.cache_bytes)),
            config,
            served: AtomicU64::new(0),
        })
    }

    /// True for the first request this container serves.
    fn first_request(&self) -> bool {
        self.served.fetch_add(1, Ordering::Relaxed) == 0
    }

    /// Opens the store of one index: the configured root plus the index name, with the
    /// optional `/tmp` tier in front of it.
    fn index_store(&self, name: &str) -> Result<Arc<dyn ObjectStore>, SearchError> {
        check_index_name(name)?;
        let store = self.connector.open(&self.config.index_location(name))?;
        if self.config.tmp_cache_bytes == 0 {
            return Ok(store);
        }
        let dir = self.config.tmp_cache_dir.join(name);
        Ok(Arc::new(DiskTier::new(store, dir, self.config.tmp_cache_bytes)?))
    }
}

struct OpenIndex {
    index: Arc<Index>,
    opened: Instant,
}

/// The HTTP routes the coordinator serves, as API Gateway route keys. The infra templates
/// route exactly these (`make infra-check` compares them) and a test routes each one.
pub const ROUTES: &[&str] = &[
    "POST /v1/indexes/{index}/search",
    "POST /v1/indexes/{index}/search/batch",
    "POST /v1/indexes/{index}/upsert",
    "POST /v1/indexes/{index}/delete",
    "GET /v1/indexes/{index}",
];

/// Largest upsert or delete body the coordinator reads (1,000 vectors of 1,536
/// dimensions in JSON fit; the event stays under Lambda's 6 MB invoke payload limit).
pub const MAX_WRITE_BODY_BYTES: usize = 5 << 20;

/// Most partitions one write call through the coordinator folds (the most churned
/// first; the rest after later writes): about 2 s of rebuilding for 10,000-row
/// partitions, well inside API Gateway's 30 s limit.
pub const COORDINATOR_FOLD_LIMIT: usize = 8;

/// A write's error as the API reports it.
fn write_error(e: WriteError) -> SearchError {
    match e {
        WriteError::Invalid { field, message } => SearchError::bad(&field, message),
        WriteError::Core(e) => e.into(),
        WriteError::Storage(e) => SearchError::Storage(e),
    }
}

/// An upsert request as the writer takes it, checked against the index's schema:
/// one id kind, equal vector lengths, known attributes of the right type (each error
/// names `vectors[i].field`).
pub fn to_upsert(req: UpsertRequest, schema: &Schema) -> Result<Upsert, SearchError> {
    let n = req.vectors.len();
    if n == 0 || n > MAX_UPSERT_VECTORS {
        return Err(SearchError::bad(
            "vectors",
            format!("must hold 1 to {MAX_UPSERT_VECTORS} vectors, got {n}"),
        ));
    }
    let dim = req.vectors[0].vector.len();
    let mut data = Vec::with_capacity(n * dim);
    let mut numbers = Vec::new();
    let mut strings = Vec::new();
    let mut columns = vec![vec![f64::NAN; n]; schema.len()];
    let mut lists: Vec<Option<ListColumn>> = schema.attrs.iter().map(|a| a.list.then(ListColumn::default)).collect();
    let mut dictionaries: Vec<AttrSpec> = schema
        .attrs
        .iter()
        .map(|a| AttrSpec::categorical(a.name.clone(), Vec::new()))
        .collect();
    let known = || {
        schema
            .attrs
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (i, v) in req.vectors.into_iter().enumerate() {
        match v.id {
            Id::Num(x) if strings.is_empty() => numbers.push(x),
            Id::Str(s) if numbers.is_empty() => strings.push(s),
            _ => {
                return Err(SearchError::bad(
                    &format!("vectors[{i}].id"),
                    "mixes integer and string ids in one request",
                ))
            }
        }
        if v.vector.len() != dim {
            return Err(SearchError::bad(
                &format!("vectors[{i}].vector"),
                format!("has {} values, vectors[0] has {dim}", v.vector.len()),
            ));
        }
        if let Some(j) = v.vector.iter().position(|x| !x.is_finite()) {
            return Err(SearchError::bad(
                &format!("vectors[{i}].vector[{j}]"),
                "is not a finite 32-bit number",
            ));
        }
        data.extend_from_slice(&v.vector);
        let mut row_elements: Vec<Vec<f64>> = vec![Vec::new(); schema.len()];
        for (name, value) in v.attributes {
            let field = format!("vectors[{i}].attributes.{name}");
            let a = schema
                .index_of(&name)
                .ok_or_else(|| SearchError::bad(&field, format!("unknown attribute (this index has: {})", known())))?;
            if schema.attrs[a].list {
                let items = match value {
                    serde_json::Value::Null => continue,
                    serde_json::Value::Array(items) => items,
                    _ => {
                        return Err(SearchError::bad(
                            &field,
                            "the attribute is a list: give an array of values (or null)",
                        ))
                    }
                };
                if items.len() > MAX_LIST_ELEMENTS {
                    return Err(SearchError::bad(
                        &field,
                        format!("has {} elements; a list holds at most {MAX_LIST_ELEMENTS}", items.len()),
                    ));
                }
                for (j, item) in items.iter().enumerate() {
                    let here = format!("{field}[{j}]");
                    let x = match (schema.attrs[a].kind, item) {
                        (AttrKind::Numeric, serde_json::Value::Number(x)) => x
                            .as_f64()
                            .filter(|x| x.is_finite())
                            .ok_or_else(|| SearchError::bad(&here, "is not a finite number"))?,
                        (AttrKind::Categorical, serde_json::Value::String(s)) => dictionaries[a].code_or_add(s),
                        (AttrKind::Numeric, _) => {
                            return Err(SearchError::bad(&here, "the list holds numbers: give a number"))
                        }
                        (AttrKind::Categorical, _) => {
                            return Err(SearchError::bad(&here, "the list holds strings: give a string"))
                        }
                    };
                    row_elements[a].push(x);
                }
                columns[a][i] = row_elements[a].len() as f64;
                continue;
            }
            columns[a][i] = match (schema.attrs[a].kind, &value) {
                (_, serde_json::Value::Null) => f64::NAN,
                (AttrKind::Numeric, serde_json::Value::Number(x)) => x
                    .as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| SearchError::bad(&field, "is not a finite number"))?,
                (AttrKind::Categorical, serde_json::Value::String(s)) => dictionaries[a].code_or_add(s),
                (AttrKind::Categorical, serde_json::Value::Number(x)) => dictionaries[a].code_or_add(&x.to_string()),
                (kind, serde_json::Value::Array(_)) => {
                    return Err(SearchError::bad(
                        &field,
                        match kind {
                            AttrKind::Numeric => {
                                "the attribute is numeric and holds one value: give a number, not an array"
                            }
                            AttrKind::Categorical => {
                                "the attribute is categorical and holds one value: give a string, not an array"
                            }
                        },
                    ))
                }
                (AttrKind::Numeric, _) => {
                    return Err(SearchError::bad(
                        &field,
                        "the attribute is numeric: give a number or null",
                    ))
                }
                (AttrKind::Categorical, _) => {
                    return Err(SearchError::bad(
                        &field,
                        "the attribute is categorical: give a string or null",
                    ))
                }
            };
        }
        for (list, es) in lists.iter_mut().zip(&row_elements) {
            if let Some(list) = list {
                list.push(es);
            }
        }
    }
    let specs = schema
        .attrs
        .iter()
        .zip(dictionaries)
        .map(|(a, dict)| {
            let spec = match a.kind {
                AttrKind::Numeric => AttrSpec::numeric(a.name.clone()),
                AttrKind::Categorical => dict,
            };
            if a.list {
                spec.into_list()
            } else {
                spec
            }
        })
        .collect();
    Ok(Upsert {
        ids: if strings.is_empty() {
            Ids::U64(numbers)
        } else {
            Ids::Strings(strings)
        },
        vectors: Matrix {
            rows: n,
            cols: dim,
            data,
        },
        attrs: Attributes {
            schema: Schema { attrs: specs },
            columns,
            lists,
        },
    })
}

/// A delete request as the writer takes it.
pub fn to_delete(req: DeleteRequest) -> Result<Delete, SearchError> {
    match (req.ids, req.filter) {
        (Some(_), Some(_)) => Err(SearchError::bad("filter", "give ids or a filter, not both")),
        (None, None) => Err(SearchError::bad("ids", "give ids or a filter")),
        (None, Some(f)) => Ok(Delete::Filter(f)),
        (Some(ids), None) => {
            if ids.is_empty() || ids.len() > MAX_DELETE_IDS {
                return Err(SearchError::bad(
                    "ids",
                    format!("must hold 1 to {MAX_DELETE_IDS} ids, got {}", ids.len()),
                ));
            }
            let mut numbers = Vec::new();
            let mut strings = Vec::new();
            for (i, id) in ids.into_iter().enumerate() {
                match id {
                    Id::Num(x) if strings.is_empty() => numbers.push(x),
                    Id::Str(s) if numbers.is_empty() => strings.push(s),
                    _ => {
                        return Err(SearchError::bad(
                            &format!("ids[{i}]"),
                            "mixes integer and string ids in one request",
                        ))
                    }
                }
            }
            Ok(Delete::Ids(if strings.is_empty() {
                Ids::U64(numbers)
            } else {
                Ids::Strings(strings)
            }))
        }
    }
}

/// The coordinator: routes, plans, fans out (or searches itself when `SQUASH_WORKERS=0`).
pub struct Coordinator {
    container: ContainerState,
    /// `None`: search in this process.
    invoker: Option<Arc<dyn WorkerInvoker>>,
    indexes: Mutex<HashMap<String, OpenIndex>>,
    writers: Mutex<HashMap<String, Arc<Writer>>>,
}

impl Coordinator {
    /// What a coordinator container builds once, at cold start: the object-store
    /// clients and, unless it searches by itself, the Lambda invoker of its workers.
    pub async fn from_config(config: Config) -> Result<Coordinator, String> {
        let invoker: Option<Arc<dyn WorkerInvoker>> = if config.search_in_coordinator {
            None
        } else {
            Some(Arc::new(crate::LambdaInvoker::new(&config).await))
        };
        Coordinator::new(config, invoker)
    }

    /// A coordinator invoking workers through `invoker`, or searching in this process
    /// when `config.search_in_coordinator` or `invoker` is `None`. Builds the object-store
    /// clients for `config.index_root` (one S3 client for every index it opens).
    pub fn new(config: Config, invoker: Option<Arc<dyn WorkerInvoker>>) -> Result<Coordinator, String> {
        let invoker = if config.search_in_coordinator { None } else { invoker };
        Ok(Coordinator {
            container: ContainerState::new(config)?,
            invoker,
            indexes: Mutex::new(HashMap::new()),
            writers: Mutex::new(HashMap::new()),
        })
    }

    /// The open index `name` (its manifest re-read once older than the TTL) and whether
    /// it was read now.
    pub fn index(&self, name: &str) -> Result<(Arc<Index>, bool), SearchError> {
        self.index_fresh(name, false)
    }

    /// As [`Coordinator::index`]; `fresh` re-reads the manifest whatever its age (a
    /// search with `"consistency": "strong"`).
    pub fn index_fresh(&self, name: &str, fresh: bool) -> Result<(Arc<Index>, bool), SearchError> {
        check_index_name(name)?;
        if !fresh {
            let open = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(o) = open.get(name) {
                if o.opened.elapsed() < self.container.config.manifest_ttl {
                    return Ok((o.index.clone(), false));
                }
            }
        }
        // Read without holding the lock: two requests may both read an expired
        // manifest, and the later one wins; neither waits on the other's I/O.
        let store = self.container.index_store(name)?;
        let previous = {
            let open = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
            open.get(name).map(|o| o.index.clone())
        };
        let manifest = load_manifest_reusing(store.as_ref(), name, previous.as_ref().map(|i| i.manifest()))?;
        let config = &self.container.config;
        let worker =
            Arc::new(Worker::with_cache(store, self.container.cache.clone()).with_range_reads(config.range_reads));
        let index = match &self.invoker {
            // Fans out, or searches by itself when the plan says so, with this
            // container's cache.
            Some(invoker) => {
                Index::with_invoker(name, manifest, invoker.clone(), config.fanout).with_local(Local::Worker(worker))
            }
            None => {
                let fanout = squash_engine::tree::Fanout {
                    workers: 1,
                    ..config.fanout
                };
                Index::with_invoker(name, manifest, Arc::new(InProcessInvoker::new(worker)), fanout)
                    .with_local(Local::Only("SQUASH_WORKERS=0: the coordinator searches by itself"))
            }
        };
        let index = Arc::new(index.with_billing(config.billing()));
        let mut open = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        open.insert(
            name.to_string(),
            OpenIndex {
                index: index.clone(),
                opened: Instant::now(),
            },
        );
        Ok((index, true))
    }

    /// Runs one search on index `name` (priced as a raw invoke).
    pub fn search(&self, name: &str, req: &SearchRequest) -> Result<SearchResponse, SearchError> {
        self.search_via(name, req, Route::Invoke)
    }

    /// The index and how this call went so far (cold, time to open, manifest GET).
    fn open_for_call(&self, name: &str, route: Route, fresh: bool) -> Result<(Arc<Index>, Call), SearchError> {
        let cold = self.container.first_request();
        let t0 = Instant::now();
        let (index, loaded) = self.index_fresh(name, fresh)?;
        Ok((
            index,
            Call {
                route,
                cold,
                open_us: t0.elapsed().as_micros() as u64,
                gets: u64::from(loaded),
            },
        ))
    }

    /// Runs one search on index `name` that came by `route`.
    pub fn search_via(&self, name: &str, req: &SearchRequest, route: Route) -> Result<SearchResponse, SearchError> {
        let strong = req.consistency == Some(Consistency::Strong);
        let (index, call) = self.open_for_call(name, route, strong)?;
        index.search_with(req, &call)
    }

    /// Runs a batch of searches on index `name` that came by `route`.
    pub fn batch_via(&self, name: &str, req: &BatchRequest, route: Route) -> Result<BatchResponse, SearchError> {
        let strong = req.queries.iter().any(|q| q.consistency == Some(Consistency::Strong));
        let (index, call) = self.open_for_call(name, route, strong)?;
        index.search_batch_with(&req.queries, &call)
    }

    /// The writer of index `name` (sharing this container's segment cache), when this
    /// deployment takes writes.
    fn writer(&self, name: &str) -> Result<Arc<Writer>, SearchError> {
        if !self.container.config.writes {
            return Err(SearchError::Forbidden {
                message: "writes are off in this deployment: turn them on with the stack's writes setting (Terraform `writes = true`, SAM `Writes=on`), which also lets the coordinator write to the index prefix".into(),
            });
        }
        check_index_name(name)?;
        if let Some(w) = self.writers.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Ok(w.clone());
        }
        let writer = Arc::new(
            Writer::with_cache(self.container.index_store(name)?, self.container.cache.clone())
                .with_fold_share(self.container.config.fold_share)
                .with_fold_limit(Some(COORDINATOR_FOLD_LIMIT)),
        );
        let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        Ok(writers.entry(name.to_string()).or_insert(writer).clone())
    }

    /// After a write: this container's next search reads the new manifest.
    fn forget(&self, name: &str) {
        self.indexes.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }

    /// Inserts or replaces vectors of index `name`; returns when the new version is
    /// committed (a search with `"consistency": "strong"` then sees it).
    pub fn upsert(&self, name: &str, req: UpsertRequest) -> Result<WriteReport, SearchError> {
        self.container.first_request();
        let writer = self.writer(name)?;
        let (index, _) = self.index_fresh(name, true)?;
        let rows = to_upsert(req, &index.manifest().meta.schema)?;
        let report = writer.upsert(&rows).map_err(write_error);
        self.forget(name);
        report
    }

    /// Deletes vectors of index `name` by id or by filter.
    pub fn delete(&self, name: &str, req: DeleteRequest) -> Result<WriteReport, SearchError> {
        self.container.first_request();
        let writer = self.writer(name)?;
        let what = to_delete(req)?;
        let report = writer.delete(&what).map_err(write_error);
        self.forget(name);
        report
    }

    fn parse_write<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, SearchError> {
        if body.len() > MAX_WRITE_BODY_BYTES {
            return Err(SearchError::bad(
                "body",
                format!(
                    "is {} bytes, the limit of a write is {MAX_WRITE_BODY_BYTES}",
                    body.len()
                ),
            ));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(SearchError::bad("body", format!("is empty; send {shape}")));
        }
        parse_body(body).map_err(|e| SearchError::bad(&e.field, e.message))
    }

    /// Describes index `name`.
    pub fn describe(&self, name: &str) -> Result<Value, SearchError> {
        self.container.first_request();
        Ok(self.index(name)?.0.describe())
    }

    /// Serves an HTTP request: one of [`ROUTES`] (priced as through the HTTP API).
    pub fn route(&self, method: &str, path: &str, body: &[u8]) -> HttpReply {
        self.route_via(method, path, body, Route::HttpApi)
    }

    /// Serves an HTTP request that came by `via` (the HTTP API or the function URL).
    pub fn route_via(&self, method: &str, path: &str, body: &[u8], via: Route) -> HttpReply {
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            ("POST", ["", "v1", "indexes", index, "search"]) => json_reply(
                self.parse_search(body)
                    .and_then(|req| self.search_via(index, &req, via)),
            ),
            ("POST", ["", "v1", "indexes", index, "search", "batch"]) => {
                json_reply(Self::parse_batch(body).and_then(|req| self.batch_via(index, &req, via)))
            }
            ("POST", ["", "v1", "indexes", index, "upsert"]) => json_reply(
                Self::parse_write(body, "{\"vectors\": [{\"id\": ..., \"vector\": [...]}, ...]}")
                    .and_then(|req| self.upsert(index, req)),
            ),
            ("POST", ["", "v1", "indexes", index, "delete"]) => json_reply(
                Self::parse_write(body, "{\"ids\": [...]} or {\"filter\": {...}}")
                    .and_then(|req| self.delete(index, req)),
            ),
            ("GET", ["", "v1", "indexes", index]) => json_reply(self.describe(index)),
            (_, ["", "v1", "indexes", _, "search"])
            | (_, ["", "v1", "indexes", _, "upsert"])
            | (_, ["", "v1", "indexes", _, "delete"])
            | (_, ["", "v1", "indexes", _, "search", "batch"])
            | (_, ["", "v1", "indexes", _]) => HttpReply {
                status: 405,
                body: json!({"error": {"code": "method_not_allowed",
                    "message": format!("{method} is not allowed on {path}")}}),
            },
            _ => HttpReply {
                status: 404,
                body: json!({"error": {"code": "not_found",
                    "message": format!("no route {method} {path} (routes: {})", ROUTES.join(", "))}}),
            },
        }
    }

    fn parse_search(&self, body: &[u8]) -> Result<SearchRequest, SearchError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(SearchError::bad(
                "body",
                format!("is {} bytes, the limit is {MAX_BODY_BYTES}", body.len()),
            ));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(SearchError::bad("body", "is empty; send a JSON search request"));
        }
        SearchRequest::from_json(body).map_err(|e| SearchError::bad(&e.field, e.message))
    }

    fn parse_batch(body: &[u8]) -> Result<BatchRequest, SearchError> {
        if body.len() > MAX_BATCH_BODY_BYTES {
            return Err(SearchError::bad(
                "body",
                format!(
                    "is {} bytes, the limit of a batch is {MAX_BATCH_BODY_BYTES}",
                    body.len()
                ),
            ));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(SearchError::bad(
                "body",
                "is empty; send {\"queries\": [<search request>, ...]}",
            ));
        }
        BatchRequest::from_json(body).map_err(|e| SearchError::bad(&e.field, e.message))
    }

    /// Serves a raw invoke: `{"index": NAME, "search": {...}}`,
    /// `{"index": NAME, "batch": [{...}, ...]}` or `{"index": NAME, "describe": true}`;
    /// answers the response body, or `{"error": ...}` with `"status"` beside it.
    pub fn raw(&self, event: &Value) -> Value {
        let Some(index) = event.get("index").and_then(Value::as_str) else {
            let e = SearchError::bad(
                "index",
                "a raw invoke needs \"index\" and \"search\", \"batch\" or \"describe\"",
            );
            return json!({"status": 400, "error": error_body(&e)["error"]});
        };
        let result = if let Some(batch) = event.get("batch") {
            BatchRequest::from_queries(batch.clone())
                .map_err(|e| SearchError::bad(&e.field, e.message))
                .and_then(|req| self.batch_via(index, &req, Route::Invoke))
                .and_then(|r| serde_json::to_value(r).map_err(SearchError::internal))
        } else if let Some(search) = event.get("search") {
            SearchRequest::from_value(search.clone())
                .map_err(|e| {
                    // Fields are named within the request, as over HTTP; "search" when it is not an object.
                    let field = if e.field == "body" { "search" } else { e.field.as_str() };
                    SearchError::bad(field, e.message)
                })
                .and_then(|req| self.search(index, &req))
                .and_then(|r| serde_json::to_value(r).map_err(SearchError::internal))
        } else if let Some(up) = event.get("upsert") {
            parse_value::<UpsertRequest>(up.clone())
                .map_err(|e| SearchError::bad(if e.field == "body" { "upsert" } else { &e.field }, e.message))
                .and_then(|req| self.upsert(index, req))
                .and_then(|r| serde_json::to_value(r).map_err(SearchError::internal))
        } else if let Some(del) = event.get("delete") {
            parse_value::<DeleteRequest>(del.clone())
                .map_err(|e| SearchError::bad(if e.field == "body" { "delete" } else { &e.field }, e.message))
                .and_then(|req| self.delete(index, req))
                .and_then(|r| serde_json::to_value(r).map_err(SearchError::internal))
        } else if event.get("describe").is_some() {
            self.describe(index)
        } else {
            Err(SearchError::bad(
                "search",
                "a raw invoke needs \"search\", \"batch\" or \"describe\"",
            ))
        };
        match result {
            Ok(v) => v,
            Err(e) => json!({"status": e.status(), "error": error_body(&e)["error"]}),
        }
    }
}

/// The worker: searches its share and invokes its subtree.
pub struct WorkerService {
    container: ContainerState,
    invoker: Arc<dyn WorkerInvoker>,
    workers: Mutex<HashMap<String, Arc<Worker>>>,
}

impl WorkerService {
    /// A worker service that reaches its children through `invoker`. Builds the
    /// object-store clients for `config.index_root` (one S3 client for every index).
    pub fn new(config: Config, invoker: Arc<dyn WorkerInvoker>) -> Result<WorkerService, String> {
        Ok(WorkerService {
            container: ContainerState::new(config)?,
            invoker,
            workers: Mutex::new(HashMap::new()),
        })
    }

    /// The segment cache (for tests).
    pub fn cache(&self) -> &SegmentCache {
        &self.container.cache
    }

    fn worker(&self, index: &str) -> Result<Arc<Worker>, SearchError> {
        if let Some(w) = self.workers.lock().unwrap_or_else(|p| p.into_inner()).get(index) {
            return Ok(w.clone());
        }
        // Opened without holding the lock; if two requests race, the first one stored
        // wins and both use it (they share the cache either way).
        let opened = Arc::new(
            Worker::with_cache(self.container.index_store(index)?, self.container.cache.clone())
                .with_range_reads(self.container.config.range_reads),
        );
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        Ok(workers.entry(index.to_string()).or_insert(opened).clone())
    }

    /// Serves one worker invocation.
    pub fn handle(&self, payload: WorkerPayload) -> Result<WorkerResponse, String> {
        let cold = self.container.first_request();
        let req = payload.into_request().map_err(|e| e.to_string())?;
        let worker = self.worker(&req.index).map_err(|e| e.to_string())?;
        let mut resp = worker.handle_node(&req, self.invoker.as_ref());
        resp.cold_workers += u32::from(cold);
        Ok(resp)
    }

    /// Serves one invocation as it arrives (JSON) and answers the wire reply, or
    /// `{"error": message}` for a request that no retry can fix.
    pub fn handle_json(&self, event: Value) -> Value {
        let answer = serde_json::from_value::<WorkerPayload>(event)
            .map_err(|e| format!("not a worker request: {e}"))
            .and_then(|payload| self.handle(payload))
            .and_then(|resp| WireReply::within_limit(&resp).map_err(|e| e.to_string()))
            .and_then(|reply| serde_json::to_value(reply).map_err(|e| e.to_string()));
        answer.unwrap_or_else(|message| json!({ "error": message }))
    }
}
