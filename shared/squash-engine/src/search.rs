//! The coordinator: validates a request, plans partitions, fans out to workers through
//! a [`WorkerInvoker`], merges their answers and reports statistics.

use crate::error::{Result, SearchError};
use crate::in_process::{ColdInvoker, InProcessInvoker};
use crate::invoker::WorkerInvoker;
use crate::plan::{plan, Safety};
use crate::tree::{build_tree, Fanout};
use crate::worker::{merge_hits, Worker};
use squash_api::{
    QueryStats, SearchHit, SearchRequest, SearchResponse, SegmentRef, TreeNode, WorkerHit, WorkerRequest,
    WorkerResponse, MAX_K,
};
use squash_core::distance::prepare_vector;
use squash_core::filter::Expr;
use squash_core::manifest::{Manifest, MANIFEST_KEY};
use squash_storage::{ObjectStore, StorageError};
use std::sync::Arc;
use std::time::Instant;
use xxhash_rust::xxh3::xxh3_64;

/// Default in-process segment cache budget: 4 GiB.
pub const DEFAULT_CACHE_BYTES: u64 = 4 << 30;

/// An open index: its manifest plus the way to reach workers.
pub struct Index {
    name: String,
    manifest: Manifest,
    invoker: Arc<dyn WorkerInvoker>,
    fanout: Fanout,
}

/// Reads and verifies the manifest of the index in `store`.
pub fn load_manifest(store: &dyn ObjectStore, name: &str) -> Result<Manifest> {
    let bytes = store.get(MANIFEST_KEY).map_err(|e| match e {
        StorageError::NotFound { store, .. } => SearchError::NotFound {
            what: format!("index '{name}' (no {MANIFEST_KEY} in {store})"),
        },
        other => SearchError::Storage(other),
    })?;
    Ok(Manifest::decode(MANIFEST_KEY, &bytes)?)
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
        Ok(Index::with_invoker(
            name,
            manifest,
            Arc::new(InProcessInvoker::new(worker)),
            fanout,
        ))
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
        }
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
        let m = &self.manifest.meta;
        let mut query = req.vector.clone();
        prepare_vector(m.metric, &mut query, m.dim as usize, "vector")?;
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

    /// Runs one search.
    pub fn search(&self, req: &SearchRequest) -> Result<SearchResponse> {
        let t0 = Instant::now();
        let (query, filter) = self.validate(req)?;
        let m = &self.manifest.meta;
        let d = &m.defaults;
        let nprobe = req.params.nprobe.unwrap_or(d.nprobe).max(1) as usize;
        let safety = match req.params.safety {
            Some(f) => Safety::Fixed(f as f64),
            None if !d.safety_curve.is_empty() => Safety::Curve(&d.safety_curve),
            None => Safety::Fixed(d.safety as f64),
        };
        let chosen = plan(&self.manifest, &query, filter.as_ref(), req.k, nprobe, safety);
        let workers = self.fanout.workers.max(1);
        let mut groups: Vec<Vec<SegmentRef>> = vec![Vec::new(); workers];
        for (p, lists) in &chosen.partitions {
            let info = &m.partitions[*p as usize];
            groups[Self::owner(*p, workers)].push(SegmentRef {
                partition: *p,
                key: info.key.clone(),
                bytes: info.bytes,
                checksum: info.checksum.clone(),
                lists: lists.clone(),
                head: info.head,
            });
        }
        let with_attributes = !req.include.is_empty();
        let tree = build_tree(
            groups.into_iter().enumerate().map(|(w, g)| (w as u32, g)).collect(),
            self.fanout,
        );
        let base = WorkerRequest {
            index: self.name.clone(),
            worker: 0,
            query,
            k: req.k as u32,
            filter,
            segments: Vec::new(),
            rerank_factor: req.params.rerank_factor.unwrap_or(d.rerank_factor),
            hamming_keep: req.params.hamming_keep.unwrap_or(d.hamming_keep),
            with_attributes,
            children: Vec::new(),
        };
        let requests: Vec<WorkerRequest> = tree.iter().map(|node| base.for_node(node)).collect();
        let plan_us = t0.elapsed().as_micros() as u64;
        let t1 = Instant::now();
        let mut stats = QueryStats {
            partitions_total: m.partitions.len() as u32,
            partitions_searched: chosen.partitions.len() as u32,
            lists_total: self.manifest.lists() as u32,
            lists_searched: chosen.lists as u32,
            estimated_matches: chosen.estimated_matches,
            invocations: requests.len() as u32,
            plan_us,
            ..QueryStats::default()
        };
        let responses = self.invoker.invoke_all(&requests);
        let mut lists = Vec::with_capacity(responses.len());
        let mut failed = collect(responses, &requests, &mut stats, &mut lists);
        // One more round for what failed, each partition to its owner, flat: a retry
        // repeats only what failed (the Lambda invoker has already retried throttling
        // and timeouts of whole invocations).
        if !failed.is_empty() {
            let mut again: Vec<TreeNode> = Vec::new();
            for (segment, _) in failed.drain(..) {
                let owner = Self::owner(segment.partition, workers) as u32;
                match again.iter_mut().find(|n| n.worker == owner) {
                    Some(node) => node.segments.push(segment),
                    None => again.push(TreeNode {
                        worker: owner,
                        segments: vec![segment],
                        children: Vec::new(),
                    }),
                }
            }
            let retry: Vec<WorkerRequest> = again.iter().map(|node| base.for_node(node)).collect();
            stats.invocations += retry.len() as u32;
            stats.retried_partitions = retry.iter().map(|r| r.segments.len() as u32).sum();
            let responses = self.invoker.invoke_all(&retry);
            failed = collect(responses, &retry, &mut stats, &mut lists);
        }
        failed.sort_by_key(|(s, _)| s.partition);
        stats.failed_partitions = failed.iter().map(|(s, _)| s.partition).collect();
        stats.search_us = t1.elapsed().as_micros() as u64;
        let missing_partitions = stats.failed_partitions.clone();
        stats.partial = !missing_partitions.is_empty();
        if let Some((segment, message)) = failed.first() {
            if !req.allow_partial || missing_partitions.len() == chosen.partitions.len() {
                let hint = if req.allow_partial {
                    "no partition could be searched"
                } else {
                    "set \"allow_partial\": true for the answer from the other partitions"
                };
                return Err(SearchError::Worker {
                    partition: segment.partition,
                    message: format!("{message} (partitions {missing_partitions:?} failed, retried once; {hint})"),
                });
            }
        }
        let schema = &m.schema;
        let hits = merge_hits(lists, req.k)
            .into_iter()
            .map(|h| SearchHit {
                id: h.id,
                distance: h.distance,
                attributes: with_attributes.then(|| {
                    schema
                        .attrs
                        .iter()
                        .zip(&h.attrs)
                        .map(|(spec, &v)| (spec.name.clone(), spec.value_to_json(v)))
                        .collect()
                }),
            })
            .collect();
        Ok(SearchResponse {
            hits,
            partial: !missing_partitions.is_empty(),
            missing_partitions,
            stats,
        })
    }
}

/// Adds the responses to the stats and hit lists; returns the segments that failed, with
/// why (a failed invocation fails every segment of its subtree).
fn collect(
    responses: Vec<std::result::Result<WorkerResponse, String>>,
    sent: &[WorkerRequest],
    stats: &mut QueryStats,
    lists: &mut Vec<Vec<WorkerHit>>,
) -> Vec<(SegmentRef, String)> {
    let mut failed = Vec::new();
    for (resp, req) in responses.into_iter().zip(sent) {
        match resp {
            Ok(r) => {
                stats.invocations += r.invocations;
                stats.cold_workers += r.cold_workers;
                for o in &r.outcomes {
                    stats.candidates.add(&o.counts);
                    stats.bytes_fetched += o.bytes_fetched;
                    stats.gets += o.gets;
                    stats.fetch_us += o.fetch_us;
                    stats.scan_us += o.scan_us;
                    if let Some(error) = &o.error {
                        if let Some(s) = req.all_segments().into_iter().find(|s| s.partition == o.partition) {
                            failed.push((s.clone(), error.clone()));
                        }
                    } else if o.cache_hit {
                        stats.cache_hits += 1;
                    } else {
                        stats.cache_misses += 1;
                    }
                }
                // A segment the answer says nothing about was not searched: never let it
                // pass as searched.
                for s in req.all_segments() {
                    if !r.outcomes.iter().any(|o| o.partition == s.partition) {
                        failed.push((s.clone(), format!("worker {} reported no outcome for it", req.worker)));
                    }
                }
                lists.push(r.hits);
            }
            Err(e) => failed.extend(req.all_segments().into_iter().map(|s| (s.clone(), e.clone()))),
        }
    }
    failed
}
