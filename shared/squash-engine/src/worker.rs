//! The worker pipeline: for each assigned partition, fetch the segment (cache, else the
//! object store, verified against the manifest's size and checksum), filter on attribute
//! codes, prune by Hamming distance, bound by ADC, re-rank exactly, merge.

use crate::cache::SegmentCache;
use crate::invoker::WorkerInvoker;
use rayon::prelude::*;
use squash_api::{PartitionOutcome, SegmentRef, StageCounts, WorkerHit, WorkerRequest, WorkerResponse};
use squash_core::binary::{encode_signs, hamming};
use squash_core::distance::exact_distance;
use squash_core::filter::{Expr, MASK_CERTAIN, MASK_POSSIBLE};
use squash_core::segment::Segment;
use squash_core::topk::{Neighbor, TopK};
use squash_storage::ObjectStore;
use std::sync::Arc;
use std::time::Instant;
use xxhash_rust::xxh3::xxh3_64;

/// The Hamming prune never keeps fewer than this many times the re-rank budget: on small
/// candidate sets the ADC bounds are cheap and pruning would only cost recall.
pub const HAMMING_FLOOR_FACTOR: usize = 10;

/// Relative slack applied to lower bounds before the early stop, covering f32 rounding
/// in the rotations (the bound stays a bound, see the property tests).
const LB_SLACK: f32 = 1e-4;

/// Per-query knobs of the partition pipeline.
#[derive(Debug, Clone, Copy)]
pub struct PartitionParams {
    /// Results wanted.
    pub k: usize,
    /// Exact re-rank budget is `k × rerank_factor`.
    pub rerank_factor: usize,
    /// Fraction kept by the Hamming prune (≥ 1 disables it).
    pub hamming_keep: f32,
}

/// A hit inside one partition: row number and distance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowHit {
    /// Row in the segment.
    pub row: u32,
    /// Vector id.
    pub id: u64,
    /// Distance in the index metric.
    pub distance: f32,
}

/// Searches one segment. `query` must be prepared (normalised for cosine). Never returns
/// a row whose exact attributes fail `filter`.
pub fn search_segment(
    seg: &Segment,
    query: &[f32],
    filter: Option<&Expr>,
    p: PartitionParams,
) -> (Vec<RowHit>, StageCounts) {
    let n = seg.len();
    let mut counts = StageCounts {
        scanned: n as u64,
        ..StageCounts::default()
    };
    if n == 0 || p.k == 0 {
        return (Vec::new(), counts);
    }
    // 1. Filter: conservative on codes, resolved exactly for the "maybe" rows.
    let candidates: Vec<u32> = match filter {
        None => (0..n as u32).collect(),
        Some(f) => {
            let code_cols: Vec<&[u8]> = seg.attr_codes.iter().map(|c| c.as_slice()).collect();
            let mask = f.eval_codes(&seg.attr_cells, &code_cols, n);
            let mut out = Vec::new();
            for (row, &m) in mask.iter().enumerate() {
                if m & MASK_POSSIBLE != 0 && (m & MASK_CERTAIN != 0 || f.matches_row(&seg.attr_values, row)) {
                    out.push(row as u32);
                }
            }
            out
        }
    };
    counts.filtered = candidates.len() as u64;
    if candidates.is_empty() {
        return (Vec::new(), counts);
    }
    let dim = seg.meta.dim as usize;
    let yq = seg.klt.transform(query);
    let budget = p.k.saturating_mul(p.rerank_factor.max(1));

    // 2. Hamming prune on sign bits: keep the closest fraction (never fewer than
    //    HAMMING_FLOOR_FACTOR re-rank budgets).
    let candidates = if p.hamming_keep < 1.0 {
        let keep = ((candidates.len() as f64 * p.hamming_keep.max(0.0) as f64).ceil() as usize)
            .max(budget.saturating_mul(HAMMING_FLOOR_FACTOR));
        if keep < candidates.len() {
            let words = seg.sign_words();
            let mut qsign = vec![0u64; words];
            encode_signs(&yq, &mut qsign);
            let dists: Vec<u32> = candidates
                .iter()
                .map(|&r| hamming(&qsign, &seg.signs[r as usize * words..(r as usize + 1) * words]))
                .collect();
            let mut hist = vec![0usize; dim + 2];
            for &h in &dists {
                hist[(h as usize).min(dim + 1)] += 1;
            }
            let mut acc = 0usize;
            let mut threshold = dim as u32 + 1;
            for (h, &c) in hist.iter().enumerate() {
                acc += c;
                if acc >= keep {
                    threshold = h as u32;
                    break;
                }
            }
            candidates
                .iter()
                .zip(&dists)
                .filter(|(_, &h)| h <= threshold)
                .map(|(&r, _)| r)
                .collect()
        } else {
            candidates
        }
    } else {
        candidates
    };
    counts.hamming = candidates.len() as u64;

    // 3. ADC lower bounds.
    let table = seg.quantizer.query_table(&yq);
    let width = seg.code_width();
    let mut bounded: Vec<(f32, u32)> = candidates
        .iter()
        .map(|&r| {
            let codes = &seg.codes[r as usize * width..(r as usize + 1) * width];
            (table.lower_bound(codes), r)
        })
        .collect();
    counts.bounded = bounded.len() as u64;

    // 4. Keep the best k·R bounds, in ascending order.
    if bounded.len() > budget {
        bounded.select_nth_unstable_by(budget, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        bounded.truncate(budget);
    }
    bounded.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));

    // 5. Exact re-rank in bound order; stop once the bound passes the k-th distance.
    let metric = seg.meta.metric;
    let mut top: TopK<u32> = TopK::with_payload(p.k);
    for &(lb, r) in &bounded {
        if top.is_full() && metric.from_l2sq(lb * (1.0 - LB_SLACK)) > top.threshold() {
            break;
        }
        let row = r as usize;
        // Exact predicate re-check: the candidate list is exact already, so this never
        // rejects; it guards the invariant in release builds too.
        if let Some(f) = filter {
            if !f.matches_row(&seg.attr_values, row) {
                debug_assert!(false, "filter let a non-matching row through");
                continue;
            }
        }
        counts.reranked += 1;
        let d = exact_distance(metric, query, &seg.vectors[row * dim..(row + 1) * dim]);
        top.offer(
            Neighbor {
                id: seg.ids[row],
                distance: d,
            },
            r,
        );
    }
    let hits = top
        .into_sorted_with()
        .into_iter()
        .map(|(nb, row)| RowHit {
            row,
            id: nb.id,
            distance: nb.distance,
        })
        .collect();
    (hits, counts)
}

/// A segment as the worker got it: the decoded segment, whether it came from the cache,
/// the bytes fetched and the microseconds spent getting it; or why it could not be had.
type Fetched = Result<(Arc<Segment>, bool, u64, u64), String>;

/// A worker: searches segments for [`WorkerRequest`]s, keeping decoded segments warm.
pub struct Worker {
    store: Arc<dyn ObjectStore>,
    cache: Arc<SegmentCache>,
}

impl Worker {
    /// A worker reading from `store` with a cache of `cache_bytes`.
    pub fn new(store: Arc<dyn ObjectStore>, cache_bytes: u64) -> Worker {
        Worker::with_cache(store, Arc::new(SegmentCache::new(cache_bytes)))
    }

    /// A worker reading from `store` that shares `cache` with other workers of the
    /// process (one per index; keys are content-hashed, so indexes never collide).
    pub fn with_cache(store: Arc<dyn ObjectStore>, cache: Arc<SegmentCache>) -> Worker {
        Worker { store, cache }
    }

    /// The segment cache (for stats and tests).
    pub fn cache(&self) -> &SegmentCache {
        &self.cache
    }

    /// Verifies fetched bytes against the manifest's size and checksum, decodes them and
    /// caches the segment.
    fn admit(&self, r: &SegmentRef, bytes: &[u8]) -> Result<Arc<Segment>, String> {
        if bytes.len() as u64 != r.bytes {
            return Err(format!(
                "segment '{}' is {} bytes, the manifest says {}",
                r.key,
                bytes.len(),
                r.bytes
            ));
        }
        let sum = format!("{:016x}", xxh3_64(bytes));
        if sum != r.checksum {
            return Err(format!(
                "segment '{}' checksum {sum} does not match the manifest's {}",
                r.key, r.checksum
            ));
        }
        let seg = Segment::decode(&r.key, bytes).map_err(|e| e.to_string())?;
        if seg.meta.partition != r.partition {
            return Err(format!(
                "segment '{}' holds partition {}, expected {}",
                r.key, seg.meta.partition, r.partition
            ));
        }
        let seg = Arc::new(seg);
        self.cache.insert(&r.key, seg.clone(), bytes.len() as u64);
        Ok(seg)
    }

    /// Gets every requested segment: cache hits first, then all misses fetched together
    /// (concurrently on stores with latency) and decoded in parallel.
    fn segments(&self, refs: &[SegmentRef]) -> Vec<Fetched> {
        let mut out: Vec<Option<Fetched>> = refs
            .iter()
            .map(|r| self.cache.get(&r.key).map(|s| Ok((s, true, 0, 0))))
            .collect();
        let missing: Vec<usize> = (0..refs.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let keys: Vec<&str> = missing.iter().map(|&i| refs[i].key.as_str()).collect();
            let t0 = Instant::now();
            let fetched = self.store.get_many(&keys);
            // The misses are fetched together: each gets an equal share of the wall time.
            let share_us = t0.elapsed().as_micros() as u64 / missing.len() as u64;
            let decoded: Vec<Fetched> = missing
                .par_iter()
                .zip(fetched.into_par_iter())
                .map(|(&i, bytes)| {
                    let t1 = Instant::now();
                    let bytes = bytes.map_err(|e| e.to_string())?;
                    self.admit(&refs[i], &bytes).map(|seg| {
                        let us = share_us + t1.elapsed().as_micros() as u64;
                        (seg, false, bytes.len() as u64, us)
                    })
                })
                .collect();
            for (&i, d) in missing.iter().zip(decoded) {
                out[i] = Some(d);
            }
        }
        out.into_iter()
            .map(|o| o.unwrap_or_else(|| Err("segment was not fetched".to_string())))
            .collect()
    }

    /// Searches every segment of the request (in parallel) and merges the results.
    pub fn handle(&self, req: &WorkerRequest) -> WorkerResponse {
        let params = PartitionParams {
            k: req.k as usize,
            rerank_factor: req.rerank_factor as usize,
            hamming_keep: req.hamming_keep,
        };
        let fetched = self.segments(&req.segments);
        let per_segment: Vec<(Vec<WorkerHit>, PartitionOutcome)> = req
            .segments
            .par_iter()
            .zip(fetched.into_par_iter())
            .map(|(r, fetched)| {
                let mut outcome = PartitionOutcome {
                    partition: r.partition,
                    error: None,
                    counts: StageCounts::default(),
                    cache_hit: false,
                    bytes_fetched: 0,
                    fetch_us: 0,
                    scan_us: 0,
                };
                let seg = match fetched {
                    Ok((seg, hit, fetched, us)) => {
                        outcome.cache_hit = hit;
                        outcome.bytes_fetched = fetched;
                        outcome.fetch_us = us;
                        seg
                    }
                    Err(e) => {
                        outcome.error = Some(e);
                        return (Vec::new(), outcome);
                    }
                };
                if seg.meta.dim as usize != req.query.len() {
                    outcome.error = Some(format!(
                        "segment '{}' has dimension {}, query has {}",
                        r.key,
                        seg.meta.dim,
                        req.query.len()
                    ));
                    return (Vec::new(), outcome);
                }
                let t0 = Instant::now();
                let (hits, counts) = search_segment(&seg, &req.query, req.filter.as_ref(), params);
                outcome.counts = counts;
                outcome.scan_us = t0.elapsed().as_micros() as u64;
                let hits = hits
                    .into_iter()
                    .map(|h| WorkerHit {
                        id: h.id,
                        distance: h.distance,
                        attrs: if req.with_attributes {
                            seg.attr_values.iter().map(|c| c[h.row as usize]).collect()
                        } else {
                            Vec::new()
                        },
                    })
                    .collect();
                (hits, outcome)
            })
            .collect();
        let mut outcomes = Vec::with_capacity(per_segment.len());
        let mut lists = Vec::with_capacity(per_segment.len());
        for (hits, outcome) in per_segment {
            lists.push(hits);
            outcomes.push(outcome);
        }
        WorkerResponse {
            hits: merge_hits(lists, req.k as usize),
            outcomes,
            invocations: 0,
            cold_workers: 0,
        }
    }

    /// Serves one node of the fan-out tree: invokes the request's children through
    /// `invoker` (concurrently) while searching its own segments, then merges. A child
    /// that fails shows up as an error outcome for every partition of its subtree.
    pub fn handle_node(&self, req: &WorkerRequest, invoker: &dyn WorkerInvoker) -> WorkerResponse {
        if req.children.is_empty() {
            return self.handle(req);
        }
        let child_requests: Vec<WorkerRequest> = req.children.iter().map(|c| req.for_node(c)).collect();
        let (own, children) = if rayon::current_thread_index().is_some() {
            // Inside the rayon pool (the in-process invoker): join cooperatively, so a
            // waiting thread keeps stealing work instead of blocking the pool.
            rayon::join(|| self.handle(req), || invoker.invoke_all(&child_requests))
        } else {
            // A plain thread (a function handler): the children wait on the network in a
            // thread of their own while this one searches.
            std::thread::scope(|s| {
                let pending = s.spawn(|| invoker.invoke_all(&child_requests));
                let own = self.handle(req);
                let children = pending
                    .join()
                    .unwrap_or_else(|_| vec![Err("child invocation panicked".to_string()); child_requests.len()]);
                (own, children)
            })
        };
        let mut lists = vec![own.hits];
        let mut outcomes = own.outcomes;
        let mut invocations = child_requests.len() as u32;
        let mut cold_workers = own.cold_workers;
        for (sent, got) in child_requests.iter().zip(children) {
            match got {
                Ok(r) => {
                    lists.push(r.hits);
                    outcomes.extend(r.outcomes);
                    invocations += r.invocations;
                    cold_workers += r.cold_workers;
                }
                Err(e) => outcomes.extend(sent.all_segments().into_iter().map(|s| PartitionOutcome {
                    partition: s.partition,
                    error: Some(format!("worker {}: {e}", sent.worker)),
                    counts: StageCounts::default(),
                    cache_hit: false,
                    bytes_fetched: 0,
                    fetch_us: 0,
                    scan_us: 0,
                })),
            }
        }
        WorkerResponse {
            hits: merge_hits(lists, req.k as usize),
            outcomes,
            invocations,
            cold_workers,
        }
    }
}

/// Merges worker hit lists into the best `k`, best first (ties by the smaller id, as
/// [`squash_core::topk::merge_topk`] orders them); a vector reported twice is kept once,
/// with its attributes.
pub fn merge_hits(lists: Vec<Vec<WorkerHit>>, k: usize) -> Vec<WorkerHit> {
    let mut all: Vec<WorkerHit> = lists.into_iter().flatten().collect();
    let key = |h: &WorkerHit| Neighbor {
        id: h.id,
        distance: h.distance,
    };
    all.sort_by(|a, b| key(a).cmp_key(&key(b)));
    let mut seen = std::collections::HashSet::with_capacity(all.len());
    all.retain(|h| seen.insert(h.id));
    all.truncate(k);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: u64, distance: f32, attr: f64) -> WorkerHit {
        WorkerHit {
            id,
            distance,
            attrs: vec![attr],
        }
    }

    #[test]
    fn merge_hits_orders_by_distance_then_id_and_keeps_each_vector_once() {
        let lists = vec![
            vec![hit(7, 0.5, 7.0), hit(3, 0.9, 3.0)],
            vec![hit(2, 0.5, 2.0), hit(7, 0.5, 7.0), hit(9, 0.1, 9.0)],
            vec![],
        ];
        let merged = merge_hits(lists, 3);
        let got: Vec<(u64, f32)> = merged.iter().map(|h| (h.id, h.distance)).collect();
        assert_eq!(got, vec![(9, 0.1), (2, 0.5), (7, 0.5)]);
        // Attributes travel with their own hit.
        assert!(merged.iter().all(|h| h.attrs == vec![h.id as f64]));
        assert_eq!(merge_hits(vec![vec![hit(1, 1.0, 1.0)]], 5).len(), 1);
        assert!(merge_hits(Vec::new(), 5).is_empty());
    }
}
