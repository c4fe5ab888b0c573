//! The two services behind the functions, callable without Lambda: the coordinator's
//! HTTP routes and raw invokes, and the worker's handler. Each keeps its clients, open
//! indexes and warm segment cache for the life of the container.

use crate::config::Config;
pub use crate::operation::{
    error_body, HttpReply, Operation, MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES, MAX_WRITE_BODY_BYTES, ROUTES,
};
use serde::Serialize;
use serde_json::{json, Value};
use squash_api::{
    BatchRequest, BatchResponse, Consistency, DeleteRequest, Id, SearchRequest, SearchResponse, UpsertRequest,
    WireReply, WorkerPayload, WorkerResponse, MAX_DELETE_IDS, MAX_UPSERT_VECTORS,
};
use squash_engine::cache::SegmentCache;
use squash_engine::cost::Route;
use squash_engine::in_process::InProcessInvoker;
use squash_engine::invoker::WorkerInvoker;
use squash_engine::search::{load_manifest_reusing, Call, Index, Local};
use squash_engine::worker::Worker;
use squash_engine::SearchError;
use squash_s3::Connector;
use squash_storage::{DiskTier, ObjectStore};
use squash_write::cells::{json_cell, CellColumns, Valueless};
use squash_write::{Delete, Ids, Matrix, Upsert, WriteError, WriteReport, Writer};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

/// An upsert request as the writer takes it: one id kind, equal vector lengths of
/// finite numbers, each attribute's values of one kind and shape (each error names
/// `vectors[i].field`). Whether the ids, dimension and attributes suit the index is
/// checked by the writer, once, against the manifest it commits on.
pub fn to_upsert(req: UpsertRequest) -> Result<Upsert, SearchError> {
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
    let mut columns = CellColumns::new();
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
        for (name, value) in v.attributes {
            let field = format!("vectors[{i}].attributes.{name}");
            let cell = json_cell(&value).map_err(|e| SearchError::bad(&e.field(&field), e.message))?;
            columns
                .push(&name, cell)
                .map_err(|e| SearchError::bad(&e.field(&field), e.message))?;
        }
        columns.end_row();
    }
    let attrs = columns
        .finish(Valueless::Drop)
        .map_err(|(i, e)| SearchError::bad(&format!("vectors[{i}].attributes"), e))?;
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
        attrs,
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
        let rows = to_upsert(req)?;
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
        match Operation::from_http(method, path, body) {
            Ok(op) => json_reply(self.execute(op, via)),
            Err(reply) => reply,
        }
    }

    /// Serves a raw invoke (see [`Operation::from_raw`]); answers the response body, or
    /// `{"error": ...}` with `"status"` beside it.
    pub fn raw(&self, event: &Value) -> Value {
        match Operation::from_raw(event).and_then(|op| self.execute(op, Route::Invoke)) {
            Ok(v) => v,
            Err(e) => json!({"status": e.status(), "error": error_body(&e)["error"]}),
        }
    }

    /// Runs one operation, however it came: its answer as the response body.
    pub fn execute(&self, op: Operation, via: Route) -> Result<Value, SearchError> {
        fn json<T: Serialize>(v: Result<T, SearchError>) -> Result<Value, SearchError> {
            v.and_then(|r| serde_json::to_value(r).map_err(SearchError::internal))
        }
        match op {
            Operation::Search { index, request } => json(self.search_via(&index, &request, via)),
            Operation::Batch { index, request } => json(self.batch_via(&index, &request, via)),
            Operation::Upsert { index, request } => json(self.upsert(&index, request)),
            Operation::Delete { index, request } => json(self.delete(&index, request)),
            Operation::Describe { index } => self.describe(&index),
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
