//! The coordinator: validates a request, plans partitions, fans out to workers through
//! a [`WorkerInvoker`], merges their answers and reports statistics.

use crate::cost::{billed_ms, Billing, Route, Work};
use crate::error::{Result, SearchError};
use crate::in_process::{ColdInvoker, InProcessInvoker};
use crate::invoker::WorkerInvoker;
use crate::plan::{plan, Plan, Safety};
use crate::tree::{build_tree, Fanout};
use crate::worker::{merge_hits, Worker};
use squash_api::{
    BatchResponse, BatchStats, Id, ObjectRef, PlanChoice, QueryPart, QueryStats, SearchHit, SearchRequest,
    SearchResponse, SegmentRef, TreeNode, WorkerHit, WorkerQuery, WorkerRequest, WorkerResponse, MAX_BATCH,
    MAX_BATCH_HITS, MAX_K, MAX_RESPONSE_HIT_BYTES,
};
use squash_core::distance::{prepare_query, report_distance};
use squash_core::filter::Expr;
use squash_core::manifest::{DeletesInfo, Manifest, MANIFEST_KEY};
use squash_storage::{ObjectStore, StorageError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use xxhash_rust::xxh3::xxh3_64;

/// Default in-process segment cache budget: 4 GiB.
pub const DEFAULT_CACHE_BYTES: u64 = 4 << 30;

/// Most rows (estimated from the chosen lists' share of their partitions) a query or
/// batch may scan for the coordinator to search it alone: about 10 ms of the blocked
/// scan on one core. Beyond it, workers share the scan.
pub const LOCAL_MAX_ROWS: u64 = 4_000_000;

/// An open index: its manifest plus the way to reach workers.
pub struct Index {
    name: String,
    manifest: Manifest,
    invoker: Arc<dyn WorkerInvoker>,
    fanout: Fanout,
    local: Local,
    billing: Billing,
}

/// Whether (and how) an index's coordinator may search by itself.
#[derive(Clone)]
pub enum Local {
    /// Never: every query goes through the invoker's tree.
    None,
    /// Always, through the invoker (which runs in this process); the reason says why.
    Only(&'static str),
    /// When the plan says so ([`Index::decide`]), with this worker and its cache.
    Worker(Arc<Worker>),
}

/// How a coordinator was called, for the stats and the cost estimate.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    /// The route the request came by (its fee).
    pub route: Route,
    /// True when the coordinator's container served its first request.
    pub cold: bool,
    /// Microseconds spent before the search (opening the index).
    pub open_us: u64,
    /// GETs made before the search (the manifest).
    pub gets: u64,
}

impl Default for Call {
    fn default() -> Call {
        Call {
            route: Route::Invoke,
            cold: false,
            open_us: 0,
            gets: 0,
        }
    }
}

/// Reads and verifies the manifest of the index in `store`.
pub fn load_manifest(store: &dyn ObjectStore, name: &str) -> Result<Manifest> {
    load_manifest_reusing(store, name, None)
}

/// [`load_manifest`], taking the value indexes that `previous` (an earlier version of
/// the same index) already holds instead of reading them again.
pub fn load_manifest_reusing(store: &dyn ObjectStore, name: &str, previous: Option<&Manifest>) -> Result<Manifest> {
    let bytes = store.get(MANIFEST_KEY).map_err(|e| match e {
        StorageError::NotFound { store, .. } => SearchError::NotFound {
            what: format!("index '{name}' (no {MANIFEST_KEY} in {store})"),
        },
        other => SearchError::Storage(other),
    })?;
    let mut manifest = Manifest::decode(MANIFEST_KEY, &bytes)?;
    if let Some(old) = previous {
        for (a, spec) in old.meta.schema.attrs.iter().enumerate() {
            let (Some(r), Some(p)) = (&spec.values, old.values.get(a).and_then(|v| v.clone())) else {
                continue;
            };
            let same = manifest.meta.schema.attrs.get(a).and_then(|s| s.values.as_ref()) == Some(r);
            if same && manifest.meta.schema.attrs[a].name == spec.name {
                manifest.meta.schema.attrs[a].dictionary = spec.dictionary.clone();
                manifest.values.resize(manifest.meta.schema.len(), None);
                manifest.values[a] = Some(p);
            }
        }
    }
    attach_values(store, &mut manifest)?;
    Ok(manifest)
}

/// Reads and attaches the value-index objects `manifest` names (the dictionaries and
/// postings of its high-cardinality attributes); a missing or damaged one is an error
/// naming it.
pub fn attach_values(store: &dyn ObjectStore, manifest: &mut Manifest) -> Result<()> {
    for key in manifest.pending_values() {
        let bytes = store.get(&key).map_err(|e| match e {
            StorageError::NotFound { .. } => SearchError::from(squash_core::CoreError::corrupt(
                &key,
                "the value index the manifest names is missing",
            )),
            other => SearchError::Storage(other),
        })?;
        manifest.attach_values(&key, &bytes)?;
    }
    Ok(())
}

impl Index {
    /// Opens the index in `store` with an in-process worker (the embedded mode).
    pub fn open(store: Arc<dyn ObjectStore>, name: &str) -> Result<Index> {
        Index::open_with_fanout(store, name, Fanout::default())
    }

    /// Opens the index in `store`, running the fan-out tree of `fanout` in this process
    /// (the same tree the serverless mode invokes; all nodes share one warm cache).
    pub fn open_with_fanout(store: Arc<dyn ObjectStore>, name: &str, fanout: Fanout) -> Result<Index> {
        let manifest = load_manifest(store.as_ref(), name)?;
        let worker = Arc::new(Worker::new(store, DEFAULT_CACHE_BYTES));
        let index = Index::with_invoker(name, manifest, Arc::new(InProcessInvoker::new(worker)), fanout);
        Ok(if fanout.workers <= 1 {
            index.with_local(Local::Only("embedded: this process searches"))
        } else {
            index
        })
    }

    /// Opens the index in `store` so that every search goes through a fresh worker with
    /// an empty cache, in a tree of `fanout`'s shape: each query fetches all its
    /// segments, as it would on cold containers. For measuring, not for serving.
    pub fn open_cold(
        store: Arc<dyn ObjectStore>,
        name: &str,
        fanout: Fanout,
        ranges: crate::worker::RangeReads,
    ) -> Result<Index> {
        let manifest = load_manifest(store.as_ref(), name)?;
        Ok(Index::with_invoker(
            name,
            manifest,
            Arc::new(ColdInvoker::new(store, ranges)),
            fanout,
        ))
    }

    /// An index over an already loaded manifest whose partitions are spread over
    /// `fanout.workers` workers reached through `invoker`, in a tree of `fanout`'s shape.
    pub fn with_invoker(name: &str, manifest: Manifest, invoker: Arc<dyn WorkerInvoker>, fanout: Fanout) -> Index {
        Index {
            name: name.to_string(),
            manifest,
            invoker,
            fanout,
            local: Local::None,
            billing: Billing::default(),
        }
    }

    /// This index, searching by itself as `local` says.
    pub fn with_local(mut self, local: Local) -> Index {
        self.local = local;
        self
    }

    /// This index, pricing its queries for `billing`.
    pub fn with_billing(mut self, billing: Billing) -> Index {
        self.billing = billing;
        self
    }

    /// The fan-out shape.
    pub fn fanout(&self) -> Fanout {
        self.fanout
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The index name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A JSON description (dimension, metric, counts, schema, defaults).
    pub fn describe(&self) -> serde_json::Value {
        let m = &self.manifest.meta;
        serde_json::json!({
            "index": self.name,
            "dimension": m.dim,
            "metric": m.metric,
            "count": m.count,
            "partitions": m.partitions.len(),
            "lists": self.manifest.lists(),
            "partition_dims": m.partition_dims,
            "bits_per_dim": m.bits_per_dim,
            "attributes": m.schema.attrs.iter().map(|a| serde_json::json!({
                "name": a.name, "type": a.kind, "values": a.dictionary.len(),
            })).collect::<Vec<_>>(),
            "defaults": m.defaults,
            "created_by": m.created_by,
        })
    }

    /// Worker (of `workers`) that owns `partition`: rendezvous hashing, so adding a
    /// worker moves only the partitions it wins.
    pub fn owner(partition: u32, workers: usize) -> usize {
        (0..workers.max(1))
            .max_by_key(|&w| {
                let mut key = [0u8; 8];
                key[..4].copy_from_slice(&partition.to_le_bytes());
                key[4..].copy_from_slice(&(w as u32).to_le_bytes());
                (xxh3_64(&key), std::cmp::Reverse(w))
            })
            .unwrap_or(0)
    }

    /// Parses and checks a request against this index; returns the prepared query and filter.
    pub fn validate(&self, req: &SearchRequest) -> Result<(Vec<f32>, Option<Expr>)> {
        if req.k == 0 || req.k > MAX_K {
            return Err(SearchError::bad(
                "k",
                format!("must be between 1 and {MAX_K}, got {}", req.k),
            ));
        }
        if req.offset >= req.k {
            return Err(SearchError::bad(
                "offset",
                format!("must be below k ({}), got {}", req.k, req.offset),
            ));
        }
        let m = &self.manifest.meta;
        let mut query = req.vector.clone();
        prepare_query(m.metric, &mut query, m.dim as usize, "vector")?;
        let filter = match &req.filter {
            Some(f) => Expr::parse(f, &m.schema)?,
            None => None,
        };
        for (i, inc) in req.include.iter().enumerate() {
            if inc != "attributes" {
                return Err(SearchError::bad(
                    &format!("include[{i}]"),
                    format!("unknown value '{inc}' (supported: \"attributes\")"),
                ));
            }
        }
        let p = &req.params;
        if p.nprobe == Some(0) {
            return Err(SearchError::bad("params.nprobe", "must be at least 1"));
        }
        if let Some(r) = p.rerank_factor {
            if r == 0 || r > 10_000 {
                return Err(SearchError::bad("params.rerank_factor", "must be between 1 and 10000"));
            }
        }
        if let Some(h) = p.hamming_keep {
            if !(h > 0.0 && h <= 1.0) {
                return Err(SearchError::bad("params.hamming_keep", "must be in (0, 1]"));
            }
        }
        if let Some(s) = p.safety {
            if !(s.is_finite() && s > 0.0) {
                return Err(SearchError::bad("params.safety", "must be a positive number"));
            }
        }
        Ok((query, filter))
    }

    /// Runs one search (priced as a raw invoke of a warm coordinator).
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResponse> {
        self.search_with(req, &Call::default())
    }

    /// Runs one search for a coordinator called as `call` says.
    pub fn search_with(&self, req: &SearchRequest, call: &Call) -> Result<SearchResponse> {
        let t0 = Instant::now();
        let q = self.prepare(req)?;
        let (mut results, _) = self.run(vec![q], req.params.plan, call, t0)?;
        results
            .pop()
            .ok_or_else(|| SearchError::internal("a search answered nothing"))
    }

    /// Runs a batch of searches (priced as a raw invoke of a warm coordinator).
    pub fn search_batch(&self, reqs: &[SearchRequest]) -> Result<BatchResponse> {
        self.search_batch_with(reqs, &Call::default())
    }

    /// Runs a batch of up to [`MAX_BATCH`] searches with one plan and one fan-out: each
    /// worker is invoked at most once (plus a retry of what failed), and each segment is
    /// fetched once for all the queries that need it. A bad query rejects the batch with
    /// the field named within it (`queries[3].k`); a query whose partitions fail (without
    /// `allow_partial`) fails the batch. Answers come in the order of the queries.
    pub fn search_batch_with(&self, reqs: &[SearchRequest], call: &Call) -> Result<BatchResponse> {
        let t0 = Instant::now();
        if reqs.is_empty() || reqs.len() > MAX_BATCH {
            return Err(SearchError::bad(
                "queries",
                format!("must hold 1 to {MAX_BATCH} queries, got {}", reqs.len()),
            ));
        }
        let hits: usize = reqs.iter().map(|r| r.k).sum();
        if hits > MAX_BATCH_HITS {
            return Err(SearchError::bad(
                "queries",
                format!(
                    "ask for {hits} hits in all (the sum of their k); a batch may ask for at most {MAX_BATCH_HITS}"
                ),
            ));
        }
        let forced = reqs.iter().find_map(|r| r.params.plan);
        if let Some(i) = reqs
            .iter()
            .position(|r| r.params.plan.is_some_and(|p| Some(p) != forced))
        {
            return Err(SearchError::bad(
                &format!("queries[{i}].params.plan"),
                "differs from an earlier query's: a batch has one plan",
            ));
        }
        let prepared = reqs
            .iter()
            .enumerate()
            .map(|(i, r)| self.prepare(r).map_err(|e| e.within(&format!("queries[{i}]"))))
            .collect::<Result<Vec<_>>>()?;
        let (results, stats) = self.run(prepared, forced, call, t0)?;
        Ok(BatchResponse { results, stats })
    }

    /// Validates and plans one query.
    fn prepare(&self, req: &SearchRequest) -> Result<Prepared> {
        let (query, filter) = self.validate(req)?;
        let d = &self.manifest.meta.defaults;
        let nprobe = req.params.nprobe.unwrap_or(d.nprobe).max(1) as usize;
        let safety = match req.params.safety {
            Some(f) => Safety::Fixed(f as f64),
            None if !d.safety_curve.is_empty() => Safety::Curve {
                points: &d.safety_curve,
                far: &d.far_share,
            },
            None => Safety::Fixed(d.safety as f64),
        };
        let chosen = plan(&self.manifest, &query, filter.as_ref(), req.k, nprobe, safety);
        Ok(Prepared {
            query,
            filter,
            k: req.k,
            offset: req.offset,
            rerank_factor: req.params.rerank_factor.unwrap_or(d.rerank_factor),
            hamming_keep: req.params.hamming_keep.unwrap_or(d.hamming_keep),
            with_attributes: !req.include.is_empty(),
            allow_partial: req.allow_partial,
            chosen,
        })
    }

    /// Where a request over the segments `union` (partition → lists) runs, and why.
    pub fn decide(&self, union: &BTreeMap<u32, Vec<u32>>, forced: Option<PlanChoice>) -> (PlanChoice, String) {
        let worker = match &self.local {
            Local::None => return (PlanChoice::Fanout, "no local search: every query fans out".into()),
            Local::Only(why) => return (PlanChoice::Local, why.to_string()),
            Local::Worker(w) => w,
        };
        if let Some(choice) = forced {
            return (choice, "params.plan".into());
        }
        let parts = &self.manifest.meta.partitions;
        let rows: f64 = union
            .iter()
            .map(|(&p, lists)| {
                let info = &parts[p as usize];
                let share = if lists.is_empty() || info.lists == 0 {
                    1.0
                } else {
                    lists.len() as f64 / info.lists as f64
                };
                info.count as f64 * share
            })
            .sum();
        if rows > LOCAL_MAX_ROWS as f64 {
            return (
                PlanChoice::Fanout,
                format!("about {rows:.0} rows to scan, over the {LOCAL_MAX_ROWS} one process scans alone"),
            );
        }
        let cache = worker.cache();
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        let index_bytes: u64 = parts.iter().map(|p| p.total_bytes()).sum();
        if index_bytes <= cache.budget() {
            return (
                PlanChoice::Local,
                format!(
                    "the index ({:.0} MiB) fits the coordinator's cache ({:.0} MiB)",
                    mib(index_bytes),
                    mib(cache.budget())
                ),
            );
        }
        let missing = union
            .keys()
            .filter(|&&p| !cache.contains(&parts[p as usize].key))
            .count();
        if missing == 0 {
            return (
                PlanChoice::Local,
                format!("all {} segments are in the coordinator's cache", union.len()),
            );
        }
        (
            PlanChoice::Fanout,
            format!(
                "the index ({:.0} MiB) exceeds the coordinator's cache ({:.0} MiB) and {missing} of {} segments are not in it",
                mib(index_bytes),
                mib(cache.budget()),
                union.len()
            ),
        )
    }

    /// The segments of `partition` to scan in `lists`: its base segment, then its
    /// deltas, each with its deletion set.
    fn segment_refs(&self, partition: u32, lists: &[u32]) -> Vec<SegmentRef> {
        let info = &self.manifest.meta.partitions[partition as usize];
        let deletes = |d: &Option<DeletesInfo>| {
            d.as_ref().map(|d| ObjectRef {
                key: d.key.clone(),
                bytes: d.bytes,
                checksum: d.checksum.clone(),
            })
        };
        let mut out = Vec::with_capacity(1 + info.deltas.len());
        out.push(SegmentRef {
            partition,
            key: info.key.clone(),
            bytes: info.bytes,
            checksum: info.checksum.clone(),
            lists: lists.to_vec(),
            head: info.head,
            deletes: deletes(&info.deletes),
        });
        out.extend(info.deltas.iter().map(|d| SegmentRef {
            partition,
            key: d.key.clone(),
            bytes: d.bytes,
            checksum: d.checksum.clone(),
            lists: lists.to_vec(),
            head: d.head,
            deletes: deletes(&d.deletes),
        }));
        out
    }

    /// Searches prepared queries with one plan: the requests for the tree (or the one
    /// local request), a retry of what failed, then each query's merged answer and stats.
    fn run(
        &self,
        queries: Vec<Prepared>,
        forced: Option<PlanChoice>,
        call: &Call,
        t0: Instant,
    ) -> Result<(Vec<SearchResponse>, BatchStats)> {
        let n = queries.len();
        let m = &self.manifest.meta;
        let union = lists_of_all(&queries);
        let (choice, reason) = self.decide(&union, forced);
        let base = self.worker_request(&queries);
        let (invoker, nodes, invoked) = self.dispatch(&union, choice);
        let requests: Vec<WorkerRequest> = nodes.iter().map(|node| base.for_node(node)).collect();
        let plan_us = t0.elapsed().as_micros() as u64;
        let t1 = Instant::now();
        let mut acc = Gathered::new(n, invoked);
        let responses = invoker.invoke_all(&requests);
        let mut failed = acc.collect(responses, &requests);
        let mut retried = vec![0u32; n];
        if !failed.is_empty() {
            let workers = if invoked { self.fanout.workers.max(1) } else { 1 };
            let retry = self.retry_requests(&base, &union, &failed, workers);
            for &(slot, _, _) in &failed {
                retried[slot as usize] += 1;
            }
            let responses = invoker.invoke_all(&retry);
            failed = acc.collect(responses, &retry);
        }
        let search_us = t1.elapsed().as_micros() as u64;
        let mut missing = check_failures(&queries, &failed)?;
        // What the request cost, and each query's share.
        let work = Work {
            coordinator_ms: billed_ms(t0.elapsed().as_micros() as u64 + call.open_us),
            worker_ms: acc.worker_billed_ms as f64,
            invocations: acc.invocations as f64,
            gets: (acc.per_query.iter().map(|s| s.gets).sum::<u64>() + call.gets) as f64,
            cold_coordinator: f64::from(u8::from(call.cold)),
            cold_workers: acc.cold_workers as f64,
        };
        let cost = self.billing.cost(&work, call.route);
        let share = cost.scaled(1.0 / n as f64);
        let stats = BatchStats {
            queries: n as u32,
            plan: choice.as_str().into(),
            plan_reason: reason.clone(),
            invocations: acc.invocations,
            segments: union.len() as u32,
            gets: work.gets as u64,
            bytes_fetched: acc.per_query.iter().map(|s| s.bytes_fetched).sum(),
            plan_us: plan_us + call.open_us,
            search_us,
            billed_ms: cost.billed_ms,
            cost_usd: cost.total(),
        };
        let mut results = Vec::with_capacity(n);
        for (slot, (q, (mut s, lists))) in queries
            .into_iter()
            .zip(acc.per_query.into_iter().zip(acc.lists))
            .enumerate()
        {
            let gone = std::mem::take(&mut missing[slot]);
            s.partitions_total = m.partitions.len() as u32;
            s.partitions_searched = q.chosen.partitions.len() as u32;
            s.lists_total = self.manifest.lists() as u32;
            s.lists_searched = q.chosen.lists as u32;
            s.estimated_matches = q.chosen.estimated_matches;
            s.invocations = acc.invocations;
            s.cold = call.cold;
            s.cold_workers = acc.cold_workers;
            s.plan_us = stats.plan_us;
            s.search_us = search_us;
            s.retried_partitions = retried[slot];
            s.partial = !gone.is_empty();
            s.failed_partitions = gone.clone();
            s.plan = stats.plan.clone();
            s.plan_reason = reason.clone();
            s.batch = n as u32;
            s.billed_ms = share.billed_ms;
            s.cost_usd = share.total();
            if slot == 0 {
                s.gets += call.gets;
            }
            let (hits, next_offset) = self.answer_hits(&q, lists, MAX_RESPONSE_HIT_BYTES / n);
            results.push(SearchResponse {
                hits,
                partial: !gone.is_empty(),
                missing_partitions: gone,
                next_offset,
                stats: s,
            });
        }
        Ok((results, stats))
    }

    /// The worker request every query of a batch goes out in (its segments and children
    /// set per node of the plan).
    fn worker_request(&self, queries: &[Prepared]) -> WorkerRequest {
        let worker_queries: Vec<WorkerQuery> = queries
            .iter()
            .enumerate()
            .map(|(slot, q)| WorkerQuery {
                slot: slot as u32,
                query: q.query.clone(),
                k: q.k as u32,
                filter: q.filter.clone(),
                rerank_factor: q.rerank_factor,
                hamming_keep: q.hamming_keep,
                with_attributes: q.with_attributes,
                parts: q
                    .chosen
                    .partitions
                    .iter()
                    .map(|(p, lists)| QueryPart {
                        partition: *p,
                        lists: lists.clone(),
                    })
                    .collect(),
            })
            .collect();
        WorkerRequest {
            index: self.name.clone(),
            worker: 0,
            segments: Vec::new(),
            children: Vec::new(),
            queries: worker_queries,
        }
    }

    /// Who answers the plan `choice` over the lists `union`: the invoker, the tree of
    /// requests it gets and whether functions are invoked (the coordinator's own worker
    /// is not one).
    fn dispatch(
        &self,
        union: &BTreeMap<u32, Vec<u32>>,
        choice: PlanChoice,
    ) -> (Arc<dyn WorkerInvoker>, Vec<TreeNode>, bool) {
        // Local: one request to the coordinator's own worker (its invocation is not
        // counted: no function is invoked). Fan-out: the tree over the owners.
        match (&self.local, choice) {
            // Local: one request to the coordinator's own worker (its invocation is not
            // counted: no function is invoked). Fan-out: the tree over the owners.
            (Local::Worker(w), PlanChoice::Local) => {
                let node = TreeNode {
                    worker: 0,
                    segments: union.iter().flat_map(|(&p, l)| self.segment_refs(p, l)).collect(),
                    children: Vec::new(),
                };
                (Arc::new(InProcessInvoker::new(w.clone())), vec![node], false)
            }
            _ => {
                let workers = self.fanout.workers.max(1);
                let mut groups: Vec<Vec<SegmentRef>> = vec![Vec::new(); workers];
                for (&p, lists) in union {
                    groups[Self::owner(p, workers)].extend(self.segment_refs(p, lists));
                }
                let tree = build_tree(
                    groups.into_iter().enumerate().map(|(w, g)| (w as u32, g)).collect(),
                    self.fanout,
                );
                (self.invoker.clone(), tree, !matches!(self.local, Local::Only(_)))
            }
        }
    }

    /// One more round for what `failed` (slot, partition, message), each partition to
    /// its owner among `workers` (or here), flat: a retry repeats only what failed (the
    /// Lambda invoker has already retried throttling and timeouts of whole invocations).
    fn retry_requests(
        &self,
        base: &WorkerRequest,
        union: &BTreeMap<u32, Vec<u32>>,
        failed: &[(u32, u32, String)],
        workers: usize,
    ) -> Vec<WorkerRequest> {
        let mut again: BTreeMap<usize, BTreeMap<u32, Vec<u32>>> = BTreeMap::new();
        for &(slot, partition, _) in failed {
            again
                .entry(Self::owner(partition, workers))
                .or_default()
                .entry(partition)
                .or_default()
                .push(slot);
        }
        again
            .into_iter()
            .map(|(owner, parts)| {
                let queries = base
                    .queries
                    .iter()
                    .filter_map(|q| {
                        let parts: Vec<QueryPart> = q
                            .parts
                            .iter()
                            .filter(|p| parts.get(&p.partition).is_some_and(|slots| slots.contains(&q.slot)))
                            .cloned()
                            .collect();
                        (!parts.is_empty()).then(|| WorkerQuery { parts, ..q.clone() })
                    })
                    .collect();
                WorkerRequest {
                    worker: owner as u32,
                    segments: parts.keys().flat_map(|&p| self.segment_refs(p, &union[&p])).collect(),
                    queries,
                    ..base.clone()
                }
            })
            .collect()
    }

    /// A query's answer from what the workers returned: merged, from its offset, with
    /// distances as the metric reports them and attributes when asked, cut to `budget`
    /// bytes (with the offset where the rest starts).
    fn answer_hits(&self, q: &Prepared, lists: Vec<Vec<WorkerHit>>, budget: usize) -> (Vec<SearchHit>, Option<usize>) {
        let m = &self.manifest.meta;
        let schema = &m.schema;
        let with_attributes = q.with_attributes;
        let (metric, norm_bound) = (m.metric, m.norm_bound());
        let hits: Vec<SearchHit> = merge_hits(lists, q.k)
            .into_iter()
            .skip(q.offset)
            .map(|h| SearchHit {
                id: match h.name {
                    Some(name) => Id::Str(name),
                    None => Id::Num(h.id),
                },
                distance: report_distance(metric, h.distance, &q.query, norm_bound),
                attributes: with_attributes.then(|| {
                    let mut lists = h.elements.iter();
                    schema
                        .attrs
                        .iter()
                        .zip(&h.attrs)
                        .map(|(spec, &v)| {
                            let elements = if spec.list { lists.next() } else { None };
                            let elements = elements.map_or(&[][..], Vec::as_slice);
                            (spec.name.clone(), spec.render(v, elements))
                        })
                        .collect()
                }),
            })
            .collect();
        fit_response(hits, q.offset, budget)
    }
}

/// The lists of every partition some query of a batch searches (each partition's lists
/// sorted, once each).
fn lists_of_all(queries: &[Prepared]) -> BTreeMap<u32, Vec<u32>> {
    let mut union: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for q in queries {
        for (p, lists) in &q.chosen.partitions {
            union.entry(*p).or_default().extend(lists);
        }
    }
    for lists in union.values_mut() {
        lists.sort_unstable();
        lists.dedup();
    }
    union
}

/// Each query's partitions that failed for good (sorted, once each); an error when a
/// query with failed partitions does not allow a partial answer (or has none).
fn check_failures(queries: &[Prepared], failed: &[(u32, u32, String)]) -> Result<Vec<Vec<u32>>> {
    let n = queries.len();
    // A query with partitions still failing fails the request unless it allows a
    // partial answer (and has one).
    let mut missing: Vec<Vec<u32>> = vec![Vec::new(); n];
    for &(slot, partition, _) in failed {
        missing[slot as usize].push(partition);
    }
    for (slot, q) in queries.iter().enumerate() {
        let gone = &mut missing[slot];
        gone.sort_unstable();
        gone.dedup();
        if gone.is_empty() || (q.allow_partial && gone.len() < q.chosen.partitions.len()) {
            continue;
        }
        let (_, partition, message) =
            failed
                .iter()
                .find(|f| f.0 as usize == slot)
                .cloned()
                .unwrap_or((0, gone[0], String::new()));
        let hint = if q.allow_partial {
            "no partition could be searched"
        } else {
            "set \"allow_partial\": true for the answer from the other partitions"
        };
        let which = if n > 1 {
            format!("query {slot}: ")
        } else {
            String::new()
        };
        return Err(SearchError::Worker {
            partition,
            message: format!("{which}{message} (partitions {gone:?} failed, retried once; {hint})"),
        });
    }
    Ok(missing)
}

/// Cuts `hits` (the answer from `offset` on) to at most `budget` bytes of JSON; returns
/// what fits (at least one hit) and, when some were cut, the offset they start at.
fn fit_response(mut hits: Vec<SearchHit>, offset: usize, budget: usize) -> (Vec<SearchHit>, Option<usize>) {
    let mut used = 0usize;
    for (i, h) in hits.iter().enumerate() {
        used += serde_json::to_vec(h).map_or(0, |b| b.len()) + 1;
        if used > budget && i > 0 {
            hits.truncate(i);
            return (hits, Some(offset + i));
        }
    }
    (hits, None)
}

/// One query, validated and planned.
struct Prepared {
    query: Vec<f32>,
    filter: Option<Expr>,
    k: usize,
    offset: usize,
    rerank_factor: u32,
    hamming_keep: f32,
    with_attributes: bool,
    allow_partial: bool,
    chosen: Plan,
}

/// What the workers answered so far, per query.
struct Gathered {
    per_query: Vec<QueryStats>,
    lists: Vec<Vec<Vec<WorkerHit>>>,
    /// Whether the requests invoked functions (fan-out) or ran here (local).
    invoked: bool,
    invocations: u32,
    cold_workers: u32,
    worker_billed_ms: u64,
}

impl Gathered {
    fn new(n: usize, invoked: bool) -> Gathered {
        Gathered {
            per_query: vec![QueryStats::default(); n],
            lists: vec![Vec::new(); n],
            invoked,
            invocations: 0,
            cold_workers: 0,
            worker_billed_ms: 0,
        }
    }

    /// Adds the responses to each query's stats and hit lists; returns the `(query,
    /// partition, why)` that failed (a failed invocation fails every part of its subtree;
    /// a part the answer says nothing about was not searched, and never passes as searched).
    fn collect(
        &mut self,
        responses: Vec<std::result::Result<WorkerResponse, String>>,
        sent: &[WorkerRequest],
    ) -> Vec<(u32, u32, String)> {
        let mut failed = Vec::new();
        for (resp, req) in responses.into_iter().zip(sent) {
            if self.invoked {
                self.invocations += 1;
            }
            let r = match resp {
                Ok(r) => r,
                Err(e) => {
                    for q in &req.queries {
                        failed.extend(q.parts.iter().map(|p| (q.slot, p.partition, e.clone())));
                    }
                    continue;
                }
            };
            if self.invoked {
                self.invocations += r.invocations;
                self.cold_workers += r.cold_workers;
                self.worker_billed_ms += r.billed_ms;
            }
            let mut seen = std::collections::HashSet::new();
            for a in r.answers {
                let Some(stats) = self.per_query.get_mut(a.slot as usize) else {
                    continue;
                };
                for o in &a.outcomes {
                    seen.insert((a.slot, o.partition));
                    stats.candidates.add(&o.counts);
                    stats.bytes_fetched += o.bytes_fetched;
                    stats.gets += o.gets;
                    stats.fetch_us += o.fetch_us;
                    stats.scan_us += o.scan_us;
                    if let Some(error) = &o.error {
                        failed.push((a.slot, o.partition, error.clone()));
                    } else if o.cache_hit {
                        stats.cache_hits += 1;
                    } else {
                        stats.cache_misses += 1;
                    }
                }
                self.lists[a.slot as usize].push(a.hits);
            }
            for q in &req.queries {
                for p in &q.parts {
                    if !seen.contains(&(q.slot, p.partition)) {
                        failed.push((
                            q.slot,
                            p.partition,
                            format!("worker {} reported no outcome for it", req.worker),
                        ));
                    }
                }
            }
        }
        failed
    }
}
