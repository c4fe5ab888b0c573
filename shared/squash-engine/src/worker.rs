//! The worker pipeline: for each assigned partition, fetch the segment (cache, else the
//! object store, verified against the manifest's size and checksum); in the fine lists
//! the planner chose, filter on attribute codes, prune by Hamming distance, bound by ADC;
//! then re-rank the best bounds of all segments together, exactly.

use crate::cache::SegmentCache;
use crate::invoker::WorkerInvoker;
use rayon::prelude::*;
use squash_api::{
    BatchAnswer, BatchQuery, PartitionOutcome, QueryPart, SegmentRef, StageCounts, WorkerHit, WorkerRequest,
    WorkerResponse,
};
use squash_core::binary::{encode_signs, hamming};
use squash_core::deletes::{decode_deletes, DeadRows};
use squash_core::distance::{exact_distance, l2sq, prefetch};
use squash_core::fastscan::{self, FastTable, BLOCK};
use squash_core::filter::{CodeFilter, Expr, MASK_CERTAIN, MASK_POSSIBLE};
use squash_core::segment::Segment;
use squash_core::topk::{Neighbor, TopK};
use squash_storage::{Blob, ObjectStore};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;
use xxhash_rust::xxh3::xxh3_64;

/// The Hamming prune never keeps fewer than this many times the re-rank budget: on small
/// candidate sets the ADC bounds are cheap and pruning would only cost recall.
pub const HAMMING_FLOOR_FACTOR: usize = 10;

/// The blocked scan is used when at least one row in `SPARSE_DIVISOR` of the scanned
/// lists is a candidate (a block holds 32 rows: below that, exact distances for the
/// candidates alone cost less).
const SPARSE_DIVISOR: usize = 32;

/// Rows ahead whose vectors are prefetched in random-access loops.
const PREFETCH_AHEAD: usize = 8;

/// Relative slack applied to lower bounds before the early stop, covering f32 rounding
/// in the rotations (the bound stays a bound, see the property tests).
const LB_SLACK: f32 = 1e-4;

/// Per-query knobs of the scan.
#[derive(Debug, Clone, Copy)]
pub struct PartitionParams {
    /// Results wanted.
    pub k: usize,
    /// Exact re-rank budget (per worker, over all its segments) is `k × rerank_factor`.
    pub rerank_factor: usize,
    /// Fraction kept by the Hamming prune (≥ 1 disables it).
    pub hamming_keep: f32,
}

impl PartitionParams {
    /// Candidates re-ranked exactly at most.
    pub fn budget(&self) -> usize {
        self.k.saturating_mul(self.rerank_factor.max(1))
    }
}

/// The given lists of `seg` (every list when `lists` is empty; numbers past its last
/// list are ignored) with their rows.
fn list_ranges(seg: &Segment, lists: &[u32]) -> Vec<(usize, std::ops::Range<usize>)> {
    if lists.is_empty() {
        return (0..seg.list_count()).map(|l| (l, seg.list_rows(l))).collect();
    }
    lists
        .iter()
        .map(|&l| l as usize)
        .filter(|&l| l < seg.list_count())
        .map(|l| (l, seg.list_rows(l)))
        .collect()
}

/// The row ranges of `ranges` with adjacent ones joined and empty ones left out (lists
/// asked for in order are often adjacent: one filter pass covers them).
fn merged_ranges(ranges: &[(usize, std::ops::Range<usize>)]) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::with_capacity(ranges.len());
    for (_, r) in ranges.iter().filter(|(_, r)| !r.is_empty()) {
        match out.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => out.push(r.clone()),
        }
    }
    out
}

/// Rows of one segment that passed the filter and the Hamming prune, ready for
/// [`bound_selected`]: the first two stages of [`bound_segment`], split from the third so
/// that a worker reading the segment by ranges can fetch the vectors the bounds read
/// ([`Selected::vector_rows`]) in between.
#[derive(Debug, Clone, Default)]
pub struct Selected {
    ranges: Vec<(usize, std::ops::Range<usize>)>,
    candidates: Vec<u32>,
    every_row: bool,
    /// Deleted rows, skipped where `every_row` takes rows without a candidate list.
    dead: Option<Arc<DeadRows>>,
    dense: bool,
    yq: Vec<f32>,
    counts: StageCounts,
}

impl Selected {
    /// Rows whose full vectors [`bound_selected`] reads: the reach sample of the blocked
    /// scan, or every candidate when they are few enough to get exact distances.
    pub fn vector_rows(&self) -> Vec<usize> {
        if self.counts.hamming == 0 {
            Vec::new()
        } else if self.dense {
            reach_rows(&self.ranges, &self.candidates, self.every_row)
        } else {
            self.candidates.iter().map(|&r| r as usize).collect()
        }
    }
}

/// First stages of the scan of one segment, over the rows of `lists` (all rows when
/// empty): filter on attribute codes (resolved exactly for "maybe" rows) and Hamming
/// prune on sign bits; rows in `dead` (deleted by writes) are never selected. See
/// [`bound_segment`] for the other arguments.
pub fn select_rows(
    seg: &Segment,
    query: &[f32],
    filter: Option<&Expr>,
    compiled: Option<&CodeFilter>,
    lists: &[u32],
    p: PartitionParams,
    dead: Option<&Arc<DeadRows>>,
) -> Selected {
    let dead = dead.filter(|d| !d.is_empty());
    let live = |row: usize| dead.is_none_or(|d| !d.contains(row));
    let ranges = list_ranges(seg, lists);
    let mut counts = StageCounts {
        scanned: ranges.iter().map(|(_, r)| r.len() as u64).sum(),
        ..StageCounts::default()
    };
    if counts.scanned == 0 || p.k == 0 {
        return Selected {
            counts,
            ..Selected::default()
        };
    }
    // 1. Filter: conservative on codes, resolved exactly for the "maybe" rows.
    // Without a filter or a Hamming prune every row of the lists is a candidate, and the
    // row numbers are never materialised.
    let mut every_row = filter.is_none() && p.hamming_keep >= 1.0;
    let mut candidates: Vec<u32> = Vec::new();
    if let Some(f) = filter {
        let own;
        let compiled = match compiled {
            Some(c) => c,
            None => {
                own = f.compile(seg.attr_cells());
                &own
            }
        };
        let mut mask = Vec::new();
        let columns = seg.attr_columns();
        let has_lists = seg.attr_cells().iter().any(|c| c.list);
        let exact = |row: usize| {
            if has_lists {
                f.matches(&|a| seg.attr_value(a, row))
            } else {
                f.matches_scalars(&|a| columns[a][row])
            }
        };
        let attrs = seg.meta().attrs as usize;
        let full_cols: Vec<&[u8]> = (0..attrs).map(|a| seg.attr_codes(a)).collect();
        let mut code_cols: Vec<&[u8]> = Vec::with_capacity(attrs);
        for range in merged_ranges(&ranges) {
            code_cols.clear();
            code_cols.extend(full_cols.iter().map(|c| &c[range.clone()]));
            mask.resize(range.len(), 0);
            compiled.eval_into(&code_cols, &mut mask);
            for (i, &m) in mask.iter().enumerate() {
                let row = range.start + i;
                if m & MASK_POSSIBLE != 0 && (m & MASK_CERTAIN != 0 || exact(row)) && live(row) {
                    candidates.push(row as u32);
                }
            }
        }
    } else if !every_row {
        for (_, range) in &ranges {
            candidates.extend((range.start as u32..range.end as u32).filter(|&r| live(r as usize)));
        }
    }
    counts.filtered = if every_row {
        counts.scanned
    } else {
        candidates.len() as u64
    };
    counts.hamming = counts.filtered;
    if counts.filtered == 0 {
        return Selected {
            counts,
            ..Selected::default()
        };
    }
    let dim = seg.meta().dim as usize;
    let budget = p.budget();
    // A few candidates (a small delta segment, a sparse filter) get their exact distance
    // as their bound: with no sample to set the scan's reach, the blocked scan's bounds
    // would be loose enough to crowd the pooled re-rank with them.
    let few = counts.filtered as usize <= REACH_SAMPLE;
    if few && every_row {
        every_row = false;
        for (_, range) in &ranges {
            candidates.extend((range.start as u32..range.end as u32).filter(|&r| live(r as usize)));
        }
        counts.filtered = candidates.len() as u64;
        counts.hamming = counts.filtered;
        if candidates.is_empty() {
            return Selected {
                counts,
                ..Selected::default()
            };
        }
    }
    let dense = !few && counts.filtered as usize * SPARSE_DIVISOR >= counts.scanned as usize;
    let yq = if p.hamming_keep < 1.0 {
        seg.klt().transform(query)
    } else if dense {
        // Only the coordinates the scan reads (at 784 dimensions the rotation is most
        // of a query's cost).
        let mut scratch = vec![0f32; dim];
        let mut yq = vec![0f32; seg.scan_bounds().rotated_dims().min(seg.klt().out_dims())];
        seg.klt().apply(query, &mut scratch, &mut yq);
        yq
    } else {
        Vec::new()
    };

    // 2. Hamming prune on sign bits: keep the closest fraction (never fewer than
    //    HAMMING_FLOOR_FACTOR re-rank budgets).
    if p.hamming_keep < 1.0 {
        let keep = ((candidates.len() as f64 * p.hamming_keep.max(0.0) as f64).ceil() as usize)
            .max(budget.saturating_mul(HAMMING_FLOOR_FACTOR));
        if keep < candidates.len() {
            let words = seg.sign_words();
            let mut qsign = vec![0u64; words];
            encode_signs(&yq, &mut qsign);
            let dists: Vec<u32> = candidates
                .iter()
                .map(|&r| hamming(&qsign, seg.signs(r as usize)))
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
            candidates = candidates
                .iter()
                .zip(&dists)
                .filter(|(_, &h)| h <= threshold)
                .map(|(&r, _)| r)
                .collect();
        }
        counts.hamming = candidates.len() as u64;
    }

    Selected {
        ranges,
        candidates,
        every_row,
        dead: dead.cloned(),
        dense,
        yq,
        counts,
    }
}

/// Whether two segments have equal attribute cells (a filter compiled for one serves the
/// other), by their 128-bit tags.
fn same_cells(a: &Segment, b: &Segment) -> bool {
    a.cells_tag() == b.cells_tag()
}

/// Scans one segment: [`select_rows`], then [`bound_selected`]. Returns the best
/// `p.budget()` candidates as `(lower bound on the squared L2 distance, row)`, ascending,
/// and the stage counts. `query` must be prepared (normalised for cosine). Never returns
/// a row whose exact attributes fail `filter`.
/// `compiled`, when given, must be `filter` compiled against cells equal to the
/// segment's (it saves recompiling per segment); otherwise it is compiled here.
/// `shared` holds (as f32 bits) the smallest `p.budget()`-th best bound any segment of
/// the request has found so far: rows above it are dropped early, since the pooled
/// re-rank could never take them. Start it at `f32::INFINITY`.
pub fn bound_segment(
    seg: &Segment,
    query: &[f32],
    filter: Option<&Expr>,
    compiled: Option<&CodeFilter>,
    lists: &[u32],
    p: PartitionParams,
    shared: &AtomicU32,
) -> (Vec<(f32, u32)>, StageCounts) {
    let selected = select_rows(seg, query, filter, compiled, lists, p, None);
    bound_selected(seg, query, selected, p, shared)
}

/// Last scan stage of one segment: lower bounds for the selected rows (the blocked scan,
/// or exact distances when candidates are sparse), the best `p.budget()` kept, ascending.
/// The vectors of [`Selected::vector_rows`] must be held.
pub fn bound_selected(
    seg: &Segment,
    query: &[f32],
    selected: Selected,
    p: PartitionParams,
    shared: &AtomicU32,
) -> (Vec<(f32, u32)>, StageCounts) {
    let Selected {
        ranges,
        candidates,
        every_row,
        dead,
        dense,
        yq,
        mut counts,
    } = selected;
    if counts.hamming == 0 {
        return (Vec::new(), counts);
    }
    let budget = p.budget();
    // 3. Lower bounds. Where at least one row in SPARSE_DIVISOR of the lists is a
    //    candidate, the blocked SIMD scan bounds whole blocks at once (ADC on the codes'
    //    leading nibbles) and a reservoir keeps the best `budget`; below that, each
    //    candidate's exact squared distance (cheaper than a table walk per row) is its bound.
    let mut bounded: Vec<(f32, u32)> = if dense {
        let fast = FastTable::new(
            seg.scan_bounds(),
            &yq,
            reach(seg, query, &ranges, &candidates, every_row),
        );
        let keep = budget.max(1);
        let mut coarse: Vec<(u16, u32)> = Vec::with_capacity(keep * 2 + BLOCK);
        // A row whose bound exceeds the `keep`-th best bound already found, in this
        // segment or another of the request (`shared`), can never reach the re-rank.
        let global = || fast.sum_below(f32::from_bits(shared.load(Ordering::Relaxed)));
        let mut threshold = global();
        let mut sums: Vec<u16> = Vec::new();
        let mut next = candidates.iter().copied().peekable();
        for (l, range) in &ranges {
            threshold = threshold.min(global());
            sums.resize(fastscan::blocks_for(range.len()) * BLOCK, 0);
            fastscan::scan(&fast, seg.list_blocks(*l), &mut sums);
            if every_row {
                for (c, chunk) in sums[..range.len()].chunks(16).enumerate() {
                    // Most chunks hold nothing under the threshold once it has settled:
                    // one vectorised minimum rejects them.
                    if chunk.iter().copied().min().unwrap_or(u16::MAX) > threshold {
                        continue;
                    }
                    for (i, &sum) in chunk.iter().enumerate() {
                        let row = range.start + c * 16 + i;
                        if sum <= threshold && dead.as_ref().is_none_or(|d| !d.contains(row)) {
                            coarse.push((sum, row as u32));
                        }
                    }
                }
            } else {
                while let Some(r) = next.next_if(|&r| (r as usize) < range.end) {
                    let sum = sums[r as usize - range.start];
                    if sum <= threshold {
                        coarse.push((sum, r));
                    }
                }
            }
            if coarse.len() >= keep * 2 {
                coarse.select_nth_unstable(keep - 1);
                coarse.truncate(keep);
                threshold = coarse.iter().map(|c| c.0).max().unwrap_or(u16::MAX);
                shared.fetch_min(fast.bound(threshold).to_bits(), Ordering::Relaxed);
            }
        }
        if coarse.len() >= keep {
            coarse.select_nth_unstable(keep - 1);
            coarse.truncate(keep);
            let kth = coarse.iter().map(|c| c.0).max().unwrap_or(u16::MAX);
            shared.fetch_min(fast.bound(kth).to_bits(), Ordering::Relaxed);
        }
        counts.bounded = counts.hamming;
        coarse.into_iter().map(|(sum, r)| (fast.bound(sum), r)).collect()
    } else {
        candidates
            .iter()
            .enumerate()
            .map(|(i, &r)| {
                if let Some(&ahead) = candidates.get(i + PREFETCH_AHEAD) {
                    prefetch(seg.vector(ahead as usize));
                }
                (l2sq(query, seg.vector(r as usize)), r)
            })
            .collect()
    };

    // 4. Keep the best k·R bounds, in ascending order.
    best_sorted(&mut bounded, budget, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    (bounded, counts)
}

/// Candidate rows sampled to set a query's reach (see [`reach`]).
const REACH_SAMPLE: usize = 64;
/// The reach is the nearest sampled row's squared distance over this.
const REACH_DIVISOR: f32 = 4.0;

/// The squared distance one dimension's entry of the blocked scan's tables must resolve
/// (see [`FastTable::new`]): the nearest of the first [`REACH_SAMPLE`] candidate rows,
/// divided by [`REACH_DIVISOR`]. A true neighbour is nearer than that row and spreads
/// its distance over many dimensions, so its per-dimension gaps stay below the reach
/// and are resolved in full; only rows already far on one dimension saturate, which
/// keeps their bound a lower bound. Measured with the re-rank factor at 10: recall@10 on
/// synth-1m 0.60 → 0.98 unfiltered, Fashion-MNIST 0.98 → 0.98–0.99, GloVe-50 0.975 →
/// 0.986 (the widest gap as the scale, as before, vs this reach; divisors 1, 2, 8 and 16
/// were worse on one of them). The rows are the first candidates, contiguous in memory:
/// rows spread over all the lists ranked synth-1m a little better (0.990) but read up to
/// a page per row (64 per segment and query, against 8 for 64 contiguous rows at 128
/// dimensions). With too few candidates to sample, the widest gap sets the scale.
fn reach(
    seg: &Segment,
    query: &[f32],
    ranges: &[(usize, std::ops::Range<usize>)],
    candidates: &[u32],
    every_row: bool,
) -> f32 {
    let rows = reach_rows(ranges, candidates, every_row);
    if rows.is_empty() {
        return f32::INFINITY;
    }
    let nearest = rows
        .iter()
        .map(|&row| l2sq(query, seg.vector(row)))
        .fold(f32::INFINITY, f32::min);
    nearest / REACH_DIVISOR
}

/// The rows [`reach`] samples: the first [`REACH_SAMPLE`] candidates, none when there
/// are no more than that.
fn reach_rows(ranges: &[(usize, std::ops::Range<usize>)], candidates: &[u32], every_row: bool) -> Vec<usize> {
    let total = if every_row {
        ranges.iter().map(|(_, r)| r.len()).sum()
    } else {
        candidates.len()
    };
    if total <= REACH_SAMPLE {
        return Vec::new();
    }
    if every_row {
        ranges.iter().flat_map(|(_, r)| r.clone()).take(REACH_SAMPLE).collect()
    } else {
        candidates.iter().take(REACH_SAMPLE).map(|&r| r as usize).collect()
    }
}

/// Truncates `v` to its `n` smallest elements under `cmp`, sorted ascending.
fn best_sorted<T>(v: &mut Vec<T>, n: usize, cmp: impl Fn(&T, &T) -> std::cmp::Ordering) {
    if v.len() > n {
        v.select_nth_unstable_by(n, &cmp);
        v.truncate(n);
    }
    v.sort_unstable_by(cmp);
}

/// A hit: the segment (an index into the caller's list), its row, the vector id and the
/// exact distance in the index metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowHit {
    /// Segment, as an index into the list given to [`rerank`].
    pub segment: u32,
    /// Row in the segment.
    pub row: u32,
    /// Vector id.
    pub id: u64,
    /// Distance in the index metric.
    pub distance: f32,
}

/// Last stage: exact distances for the pooled candidates of several segments
/// (`(bound, segment, row)`), the best `p.budget()` bounds first, stopping once a bound
/// passes the k-th exact distance. Returns the top `p.k`, best first, and how many rows
/// of each segment were re-ranked.
pub fn rerank(
    segs: &[&Segment],
    mut pool: Vec<(f32, u32, u32)>,
    query: &[f32],
    filter: Option<&Expr>,
    p: PartitionParams,
) -> (Vec<RowHit>, Vec<u64>) {
    let mut reranked = vec![0u64; segs.len()];
    best_sorted(&mut pool, p.budget(), |a, b| {
        a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
    });
    let mut top: TopK<(u32, u32)> = TopK::with_payload(p.k);
    for &(lb, s, r) in &pool {
        let seg = segs[s as usize];
        let metric = seg.meta().metric;
        if top.is_full() && metric.from_l2sq(lb * (1.0 - LB_SLACK)) > top.threshold() {
            break;
        }
        let row = r as usize;
        // Exact predicate re-check: the candidates are exact already, so this never
        // rejects; it guards the invariant in release builds too.
        if let Some(f) = filter {
            if !f.matches(&|a| seg.attr_value(a, row)) {
                debug_assert!(false, "filter let a non-matching row through");
                continue;
            }
        }
        reranked[s as usize] += 1;
        let d = exact_distance(metric, query, seg.vector(row));
        top.offer(
            Neighbor {
                id: seg.id(row),
                distance: d,
            },
            (s, r),
        );
    }
    let hits = top
        .into_sorted_with()
        .into_iter()
        .map(|(nb, (segment, row))| RowHit {
            segment,
            row,
            id: nb.id,
            distance: nb.distance,
        })
        .collect();
    (hits, reranked)
}

/// Searches the given lists of one segment (all lists when empty): [`bound_segment`]
/// then [`rerank`].
pub fn search_segment(
    seg: &Segment,
    query: &[f32],
    filter: Option<&Expr>,
    lists: &[u32],
    p: PartitionParams,
) -> (Vec<RowHit>, StageCounts) {
    let shared = AtomicU32::new(f32::INFINITY.to_bits());
    let (bounded, mut counts) = bound_segment(seg, query, filter, None, lists, p, &shared);
    let pool = bounded.into_iter().map(|(lb, r)| (lb, 0, r)).collect();
    let (hits, reranked) = rerank(&[seg], pool, query, filter, p);
    counts.reranked = reranked[0];
    (hits, counts)
}

/// A segment as the worker got it: the segment, whether it came from the cache, the
/// bytes fetched, the microseconds spent getting it and the GET requests made; or why
/// it could not be had.
type Fetched = Result<(Arc<Segment>, bool, u64, u64, u64), String>;

/// Whether a worker reads a missed segment by byte ranges (its parameters, then the
/// lists a query scans and the vector blocks it re-ranks) or whole.
///
/// Off by default: at today's segment sizes (a few MB) a whole-object GET costs less.
/// Read by ranges, a cold query on synth-1m fetches 5–21 % of the bytes but makes 30–40
/// times the requests (3 + 2 per attribute ranges per list, a range per vector block);
/// at S3's request fee those cost more than the bytes saved (docs/BENCHMARKS.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RangeReads {
    /// Every segment is fetched whole.
    #[default]
    Off,
    /// Segments that carry range checksums are read by ranges.
    On,
}

impl std::str::FromStr for RangeReads {
    type Err = String;
    fn from_str(s: &str) -> Result<RangeReads, String> {
        match s {
            "on" => Ok(RangeReads::On),
            "off" => Ok(RangeReads::Off),
            other => Err(format!("expected on or off, got '{other}'")),
        }
    }
}

/// A segment read by ranges is fetched whole instead once what it would hold after a
/// fetch passes this fraction of the object: the rest costs little more than the ranges,
/// in one request, and later queries find it all.
const WHOLE_FRACTION: f64 = 0.5;

/// What a segment still needs for one stage of a query: lists to scan, rows whose
/// vectors are read.
struct Need {
    segment: usize,
    lists: Vec<usize>,
    rows: Vec<usize>,
}

/// A worker: searches segments for [`WorkerRequest`]s, keeping decoded segments warm.
pub struct Worker {
    store: Arc<dyn ObjectStore>,
    cache: Arc<SegmentCache>,
    ranges: RangeReads,
    /// Decoded deletion sets by object key (immutable, content-hashed).
    deletes: Mutex<HashMap<String, Arc<DeadRows>>>,
}

/// Deletion sets a worker keeps decoded (a bitmap of a segment's rows each; the
/// oldest are dropped all at once beyond this).
const DELETES_KEPT: usize = 4096;

/// Each segment's deleted rows, as [`Worker::dead_rows`] found them.
type Dead = Vec<Option<Arc<DeadRows>>>;

impl Worker {
    /// A worker reading from `store` with a cache of `cache_bytes`.
    pub fn new(store: Arc<dyn ObjectStore>, cache_bytes: u64) -> Worker {
        Worker::with_cache(store, Arc::new(SegmentCache::new(cache_bytes)))
    }

    /// A worker reading from `store` that shares `cache` with other workers of the
    /// process (one per index; keys are content-hashed, so indexes never collide).
    pub fn with_cache(store: Arc<dyn ObjectStore>, cache: Arc<SegmentCache>) -> Worker {
        Worker {
            store,
            cache,
            ranges: RangeReads::Off,
            deletes: Mutex::new(HashMap::new()),
        }
    }

    /// This worker with range reads set to `ranges`.
    pub fn with_range_reads(mut self, ranges: RangeReads) -> Worker {
        self.ranges = ranges;
        self
    }

    /// The segment cache (for stats and tests).
    pub fn cache(&self) -> &SegmentCache {
        &self.cache
    }

    fn reads_ranges(&self) -> bool {
        self.ranges == RangeReads::On
    }

    /// Verifies fetched bytes against the manifest's size and checksum, opens the segment
    /// over them and caches it. A mapped file is charged to the cache only for what the
    /// segment decodes onto the heap: its pages are the operating system's to keep or drop.
    fn admit(&self, r: &SegmentRef, blob: Blob) -> Result<Arc<Segment>, String> {
        let bytes = &blob.bytes[..];
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
        let seg = Segment::decode_verified(&r.key, blob.bytes.clone()).map_err(|e| e.to_string())?;
        check_partition(r, &seg)?;
        let seg = Arc::new(seg);
        let charge = seg.decoded_bytes() + if blob.mapped { 0 } else { r.bytes };
        self.cache.insert(&r.key, seg.clone(), charge);
        Ok(seg)
    }

    /// Caches a segment read by ranges, charged for what it holds.
    fn admit_partial(&self, r: &SegmentRef, seg: Segment) -> Arc<Segment> {
        let seg = Arc::new(seg);
        self.cache
            .insert(&r.key, seg.clone(), seg.decoded_bytes() + seg.resident_bytes());
        seg
    }

    /// Gets every requested segment: cache hits first, then all misses fetched together
    /// (concurrently on stores with latency) and decoded in parallel. Read by ranges
    /// (see [`RangeReads`]), a missed segment's parameters are fetched first, then the
    /// lists the request scans (and, without a filter, the vectors of the scan's reach
    /// sample), all segments' ranges together.
    fn segments(&self, refs: &[SegmentRef], every_row: bool) -> Vec<Fetched> {
        let mut out: Vec<Option<Fetched>> = refs
            .iter()
            .map(|r| self.cache.get(&r.key).map(|s| Ok((s, true, 0, 0, 0))))
            .collect();
        let ranged = self.reads_ranges();
        let missing: Vec<usize> = (0..refs.len()).filter(|&i| out[i].is_none()).collect();
        let (heads, whole): (Vec<usize>, Vec<usize>) = missing.into_iter().partition(|&i| ranged && refs[i].head > 0);
        if !whole.is_empty() {
            let keys: Vec<&str> = whole.iter().map(|&i| refs[i].key.as_str()).collect();
            let t0 = Instant::now();
            let fetched = self.store.get_many_shared(&keys);
            // The misses are fetched together: each gets an equal share of the wall time.
            let share_us = t0.elapsed().as_micros() as u64 / whole.len() as u64;
            let decoded: Vec<Fetched> = whole
                .par_iter()
                .zip(fetched.into_par_iter())
                .map(|(&i, bytes)| {
                    let t1 = Instant::now();
                    let blob = bytes.map_err(|e| e.to_string())?;
                    let len = blob.bytes.len() as u64;
                    self.admit(&refs[i], blob).map(|seg| {
                        let us = share_us + t1.elapsed().as_micros() as u64;
                        (seg, false, len, us, 1)
                    })
                })
                .collect();
            for (&i, d) in whole.iter().zip(decoded) {
                out[i] = Some(d);
            }
        }
        if !heads.is_empty() {
            let asked: Vec<(&str, u64, u64)> = heads
                .iter()
                .map(|&i| (refs[i].key.as_str(), 0, refs[i].head.min(refs[i].bytes)))
                .collect();
            let t0 = Instant::now();
            let fetched = self.store.get_ranges(&asked);
            let share_us = t0.elapsed().as_micros() as u64 / heads.len() as u64;
            for (&i, got) in heads.iter().zip(fetched) {
                let r = &refs[i];
                out[i] = Some(got.map_err(|e| e.to_string()).and_then(|head| {
                    let len = head.len() as u64;
                    let seg = Segment::open_head(&r.key, &head, r.bytes).map_err(|e| e.to_string())?;
                    check_partition(r, &seg)?;
                    Ok((Arc::new(seg), false, len, share_us, 1))
                }));
            }
        }
        let mut out: Vec<Fetched> = out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err("segment was not fetched".to_string())))
            .collect();
        let needs: Vec<Need> = out
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let seg = &f.as_ref().ok()?.0;
                if !seg.is_partial() {
                    return None;
                }
                let r = &refs[i];
                let lists: Vec<usize> = if r.lists.is_empty() {
                    (0..seg.list_count()).collect()
                } else {
                    r.lists.iter().map(|&l| l as usize).collect()
                };
                let rows = if every_row {
                    reach_rows(&list_ranges(seg, &r.lists), &[], true)
                } else {
                    Vec::new()
                };
                Some(Need {
                    segment: i,
                    lists,
                    rows,
                })
            })
            .collect();
        self.complete(refs, &mut out, needs);
        out
    }

    /// Fetches what segments read by ranges still lack for a stage of the query (all
    /// segments' ranges in one batch), or the whole object where that is nearly as
    /// cheap ([`WHOLE_FRACTION`]); replaces them in `fetched` and in the cache, adding the
    /// bytes and time to their counts. A segment whose fetch fails becomes an error.
    fn complete(&self, refs: &[SegmentRef], fetched: &mut [Fetched], needs: Vec<Need>) {
        let mut plans = Vec::new();
        let mut whole = Vec::new();
        for need in needs {
            let Ok((seg, ..)) = &fetched[need.segment] else {
                continue;
            };
            let plan = seg.fetch_plan(&need.lists, &need.rows);
            if plan.is_empty() {
                continue;
            }
            let after = (seg.resident_bytes() + plan.bytes()) as f64;
            if after > WHOLE_FRACTION * refs[need.segment].bytes as f64 {
                whole.push(need.segment);
            } else {
                plans.push((need.segment, plan));
            }
        }
        if plans.is_empty() && whole.is_empty() {
            return;
        }
        let t0 = Instant::now();
        let asked: Vec<(&str, u64, u64)> = plans
            .iter()
            .flat_map(|(i, plan)| plan.ranges.iter().map(|r| (refs[*i].key.as_str(), r.start, r.end)))
            .collect();
        let mut bodies = self.store.get_ranges(&asked).into_iter();
        let keys: Vec<&str> = whole.iter().map(|&i| refs[i].key.as_str()).collect();
        let blobs = if keys.is_empty() {
            Vec::new()
        } else {
            self.store.get_many_shared(&keys)
        };
        let share_us = t0.elapsed().as_micros() as u64 / (plans.len() + whole.len()) as u64;
        for (i, plan) in &plans {
            let got: Result<Vec<Vec<u8>>, String> = bodies
                .by_ref()
                .take(plan.ranges.len())
                .map(|b| b.map_err(|e| e.to_string()))
                .collect();
            let r = &refs[*i];
            let slot = &mut fetched[*i];
            let Ok((seg, hit, bytes, us, gets)) = slot else {
                continue;
            };
            let result = got.and_then(|bodies| {
                let fetched_bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
                let extended = seg.extend(&r.key, plan, &bodies).map_err(|e| e.to_string())?;
                Ok((self.admit_partial(r, extended), fetched_bytes))
            });
            let requests = plan.ranges.len() as u64;
            *slot = result.map(|(new, got)| (new, *hit, *bytes + got, *us + share_us, *gets + requests));
        }
        for (&i, blob) in whole.iter().zip(blobs) {
            let r = &refs[i];
            let slot = &mut fetched[i];
            let Ok((_, hit, bytes, us, gets)) = slot else { continue };
            let (hit, bytes, us, gets) = (*hit, *bytes, *us, *gets);
            *slot = blob.map_err(|e| e.to_string()).and_then(|blob| {
                let len = blob.bytes.len() as u64;
                self.admit(r, blob)
                    .map(|seg| (seg, hit, bytes + len, us + share_us, gets + 1))
            });
        }
    }

    /// The deleted rows of each fetched segment that has a deletion set (from this
    /// worker's map, else fetched, verified against the reference's size and checksum
    /// and decoded); a segment whose set cannot be had fails, since searching it would
    /// return deleted rows.
    fn dead_rows(&self, refs: &[SegmentRef], fetched: &mut [Fetched]) -> Dead {
        let mut out: Dead = vec![None; refs.len()];
        let mut missing: Vec<usize> = Vec::new();
        {
            let map = self.deletes.lock().unwrap_or_else(|p| p.into_inner());
            for (i, r) in refs.iter().enumerate() {
                if let (Some(d), Ok(_)) = (&r.deletes, &fetched[i]) {
                    match map.get(&d.key) {
                        Some(rows) => out[i] = Some(rows.clone()),
                        None => missing.push(i),
                    }
                }
            }
        }
        if missing.is_empty() {
            return out;
        }
        let keys: Vec<&str> = missing
            .iter()
            .filter_map(|&i| refs[i].deletes.as_ref().map(|d| d.key.as_str()))
            .collect();
        let got = self.store.get_many(&keys);
        let mut map = self.deletes.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() + missing.len() > DELETES_KEPT {
            map.clear();
        }
        for (&i, bytes) in missing.iter().zip(got) {
            let (Some(d), Ok((seg, ..))) = (&refs[i].deletes, &fetched[i]) else {
                continue;
            };
            let total = seg.len();
            let decoded = bytes.map_err(|e| e.to_string()).and_then(|b| {
                let sum = format!("{:016x}", xxh3_64(&b));
                if b.len() as u64 != d.bytes || sum != d.checksum {
                    return Err(format!(
                        "deletion set '{}' is {} bytes with checksum {sum}, the manifest says {} bytes, {}",
                        d.key,
                        b.len(),
                        d.bytes,
                        d.checksum
                    ));
                }
                decode_deletes(&d.key, &b, total as u64).map_err(|e| e.to_string())
            });
            match decoded {
                Ok(rows) => {
                    let dead = Arc::new(DeadRows::new(&rows, total));
                    map.insert(d.key.clone(), dead.clone());
                    out[i] = Some(dead);
                }
                Err(e) => fetched[i] = Err(e),
            }
        }
        out
    }

    /// Searches every segment of the request: filters and bounds them in parallel, then
    /// re-ranks the best candidates of all of them together.
    pub fn handle(&self, req: &WorkerRequest) -> WorkerResponse {
        let every_row = req.filter.is_none() && req.hamming_keep >= 1.0;
        let mut fetched = self.segments(&req.segments, every_row);
        let dead = self.dead_rows(&req.segments, &mut fetched);
        self.search_fetched(req, fetched, dead)
    }

    /// Searches every query of a batch request in its parts of the request's own
    /// segments: each segment is fetched (or found in the cache) once, then the queries
    /// run in parallel, each as [`Worker::handle`] runs one. A segment's fetch is counted
    /// for the first query (in batch order) that needs it; the others count a cache hit.
    pub fn handle_batch(&self, req: &WorkerRequest) -> WorkerResponse {
        // A partition's segments: its base segment and its deltas.
        let mut at: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, s) in req.segments.iter().enumerate() {
            at.entry(s.partition).or_default().push(i);
        }
        let every_row = req.batch.iter().all(|q| q.filter.is_none() && q.hamming_keep >= 1.0);
        let mut fetched = self.segments(&req.segments, every_row);
        let dead = self.dead_rows(&req.segments, &mut fetched);
        let mut first_use = vec![u32::MAX; req.segments.len()];
        for q in &req.batch {
            for part in &q.parts {
                for &i in at.get(&part.partition).into_iter().flatten() {
                    first_use[i] = first_use[i].min(q.slot);
                }
            }
        }
        let batch: Vec<BatchAnswer> = req
            .batch
            .par_iter()
            .filter_map(|q| {
                let mine: Vec<(usize, &QueryPart)> = q
                    .parts
                    .iter()
                    .flat_map(|part| at.get(&part.partition).into_iter().flatten().map(move |&i| (i, part)))
                    .collect();
                if mine.is_empty() {
                    return None;
                }
                let one = WorkerRequest {
                    index: req.index.clone(),
                    worker: req.worker,
                    query: q.query.clone(),
                    k: q.k,
                    filter: q.filter.clone(),
                    segments: mine
                        .iter()
                        .map(|(i, part)| SegmentRef {
                            lists: part.lists.clone(),
                            ..req.segments[*i].clone()
                        })
                        .collect(),
                    rerank_factor: q.rerank_factor,
                    hamming_keep: q.hamming_keep,
                    with_attributes: q.with_attributes,
                    children: Vec::new(),
                    batch: Vec::new(),
                };
                let got: Vec<Fetched> = mine
                    .iter()
                    .map(|&(i, _)| match &fetched[i] {
                        Ok((seg, hit, bytes, us, gets)) if first_use[i] == q.slot => {
                            Ok((seg.clone(), *hit, *bytes, *us, *gets))
                        }
                        Ok((seg, ..)) => Ok((seg.clone(), true, 0, 0, 0)),
                        Err(e) => Err(e.clone()),
                    })
                    .collect();
                let dead_here = mine.iter().map(|&(i, _)| dead[i].clone()).collect();
                let resp = self.search_fetched(&one, got, dead_here);
                Some(BatchAnswer {
                    slot: q.slot,
                    hits: resp.hits,
                    outcomes: resp.outcomes,
                })
            })
            .collect();
        WorkerResponse {
            hits: Vec::new(),
            outcomes: Vec::new(),
            invocations: 0,
            cold_workers: 0,
            batch,
            billed_ms: 0,
        }
    }

    /// [`Worker::handle`] over segments already got.
    fn search_fetched(&self, req: &WorkerRequest, mut fetched: Vec<Fetched>, dead: Dead) -> WorkerResponse {
        let params = PartitionParams {
            k: req.k as usize,
            rerank_factor: req.rerank_factor as usize,
            hamming_keep: req.hamming_keep,
        };
        for (r, f) in req.segments.iter().zip(fetched.iter_mut()) {
            let problem = match f {
                Ok((seg, ..)) if seg.meta().dim as usize != req.query.len() => Some(format!(
                    "segment '{}' has dimension {}, query has {}",
                    r.key,
                    seg.meta().dim,
                    req.query.len()
                )),
                Ok((seg, ..)) => r.lists.iter().find(|&&l| l as usize >= seg.list_count()).map(|l| {
                    format!(
                        "segment '{}' has {} lists, list {l} was asked for",
                        r.key,
                        seg.list_count()
                    )
                }),
                Err(_) => None,
            };
            if let Some(p) = problem {
                *f = Err(p);
            }
        }
        // Segments of one index share their attribute cells, except delta segments whose
        // writes widened them: compile the filter once per distinct set of cells.
        let mut compiled_for: Vec<(Arc<Segment>, CodeFilter)> = Vec::new();
        if let Some(filter) = &req.filter {
            for (seg, ..) in fetched.iter().flatten() {
                if !compiled_for.iter().any(|(s, _)| same_cells(s, seg)) {
                    compiled_for.push((seg.clone(), filter.compile(seg.attr_cells())));
                }
            }
        }
        let mut scan_us = vec![0u64; req.segments.len()];
        // 1. Filter and Hamming prune, every segment in parallel.
        let selected: Vec<(Option<Selected>, u64)> = req
            .segments
            .par_iter()
            .zip(fetched.par_iter())
            .zip(dead.par_iter())
            .map(|((r, f), dead)| {
                let Ok((seg, ..)) = f else { return (None, 0) };
                let t0 = Instant::now();
                let compiled = compiled_for.iter().find(|(s, _)| same_cells(s, seg)).map(|(_, c)| c);
                let sel = select_rows(
                    seg,
                    &req.query,
                    req.filter.as_ref(),
                    compiled,
                    &r.lists,
                    params,
                    dead.as_ref(),
                );
                (Some(sel), t0.elapsed().as_micros() as u64)
            })
            .collect();
        // Segments read by ranges fetch the vectors the bounds read.
        let needs: Vec<Need> = selected
            .iter()
            .enumerate()
            .filter(|(i, _)| fetched[*i].as_ref().is_ok_and(|(seg, ..)| seg.is_partial()))
            .filter_map(|(i, (sel, _))| {
                sel.as_ref().map(|sel| Need {
                    segment: i,
                    lists: Vec::new(),
                    rows: sel.vector_rows(),
                })
            })
            .collect();
        self.complete(&req.segments, &mut fetched, needs);
        // 2. Bounds, every segment in parallel.
        let shared_bound = AtomicU32::new(f32::INFINITY.to_bits());
        type Bounded = (Vec<(f32, u32)>, StageCounts, u64);
        let bounded: Vec<Bounded> = fetched
            .par_iter()
            .zip(selected.into_par_iter())
            .map(|(f, (sel, us))| match (f, sel) {
                (Ok((seg, ..)), Some(sel)) => {
                    let t0 = Instant::now();
                    let (b, counts) = bound_selected(seg, &req.query, sel, params, &shared_bound);
                    (b, counts, us + t0.elapsed().as_micros() as u64)
                }
                _ => (Vec::new(), StageCounts::default(), us),
            })
            .collect();
        let mut counts = Vec::with_capacity(bounded.len());
        let mut pool = Vec::new();
        for (i, (b, c, us)) in bounded.into_iter().enumerate() {
            scan_us[i] = us;
            counts.push(c);
            pool.extend(b.into_iter().map(|(lb, r)| (lb, i as u32, r)));
        }
        // 3. The pooled re-rank reads the best `budget` candidates' vectors.
        best_sorted(&mut pool, params.budget(), |a, b| {
            a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
        });
        let mut rows: Vec<Vec<usize>> = vec![Vec::new(); req.segments.len()];
        for &(_, s, r) in &pool {
            rows[s as usize].push(r as usize);
        }
        let needs: Vec<Need> = rows
            .into_iter()
            .enumerate()
            .filter(|(i, rows)| !rows.is_empty() && fetched[*i].as_ref().is_ok_and(|(seg, ..)| seg.is_partial()))
            .map(|(segment, rows)| Need {
                segment,
                lists: Vec::new(),
                rows,
            })
            .collect();
        self.complete(&req.segments, &mut fetched, needs);
        let t0 = Instant::now();
        let mut segs: Vec<&Segment> = Vec::new();
        let mut slots: Vec<usize> = Vec::new();
        let mut slot_of = vec![u32::MAX; req.segments.len()];
        for (i, f) in fetched.iter().enumerate() {
            if let Ok((seg, ..)) = f {
                slot_of[i] = segs.len() as u32;
                segs.push(seg);
                slots.push(i);
            }
        }
        let pool: Vec<(f32, u32, u32)> = pool
            .into_iter()
            .filter(|&(_, s, _)| slot_of[s as usize] != u32::MAX)
            .map(|(lb, s, r)| (lb, slot_of[s as usize], r))
            .collect();
        let (hits, reranked) = rerank(&segs, pool, &req.query, req.filter.as_ref(), params);
        let hits: Vec<WorkerHit> = hits
            .into_iter()
            .map(|h| {
                let (seg, row) = (segs[h.segment as usize], h.row as usize);
                let columns = if req.with_attributes {
                    0..seg.meta().attrs as usize
                } else {
                    0..0
                };
                WorkerHit {
                    id: h.id,
                    name: seg.name(row).map(str::to_string),
                    distance: h.distance,
                    attrs: columns.clone().map(|a| seg.attr_column(a)[row]).collect(),
                    elements: columns
                        .filter(|&a| seg.attr_cells()[a].list)
                        .map(|a| seg.list_elements(a, row).to_vec())
                        .collect(),
                }
            })
            .collect();
        let mut outcomes: Vec<PartitionOutcome> = req
            .segments
            .iter()
            .zip(&fetched)
            .zip(counts)
            .enumerate()
            .map(|(i, ((r, f), counts))| {
                let mut o = PartitionOutcome {
                    partition: r.partition,
                    error: None,
                    counts: StageCounts::default(),
                    cache_hit: false,
                    bytes_fetched: 0,
                    fetch_us: 0,
                    scan_us: scan_us[i],
                    gets: 0,
                };
                match f {
                    Ok((_, hit, bytes, us, gets)) => {
                        o.gets = *gets;
                        o.counts = counts;
                        o.cache_hit = *hit;
                        o.bytes_fetched = *bytes;
                        o.fetch_us = *us;
                    }
                    Err(e) => o.error = Some(e.clone()),
                }
                o
            })
            .collect();
        // The pooled re-rank's time is shared out over the segments it covered.
        let share = t0.elapsed().as_micros() as u64 / slots.len().max(1) as u64;
        for (s, &i) in slots.iter().enumerate() {
            outcomes[i].counts.reranked = reranked[s];
            outcomes[i].scan_us += share;
        }
        WorkerResponse {
            hits,
            outcomes,
            invocations: 0,
            cold_workers: 0,
            batch: Vec::new(),
            billed_ms: 0,
        }
    }

    /// Serves one node of the fan-out tree: invokes the request's children through
    /// `invoker` (concurrently) while searching its own segments, then merges. A child
    /// that fails shows up as an error outcome for every partition of its subtree.
    pub fn handle_node(&self, req: &WorkerRequest, invoker: &dyn WorkerInvoker) -> WorkerResponse {
        let t0 = Instant::now();
        let mut resp = self.handle_subtree(req, invoker);
        // This node's own duration, rounded up as Lambda bills it, plus its subtree's.
        resp.billed_ms += crate::cost::billed_ms(t0.elapsed().as_micros() as u64) as u64;
        resp
    }

    fn handle_own(&self, req: &WorkerRequest) -> WorkerResponse {
        if req.batch.is_empty() {
            self.handle(req)
        } else {
            self.handle_batch(req)
        }
    }

    fn handle_subtree(&self, req: &WorkerRequest, invoker: &dyn WorkerInvoker) -> WorkerResponse {
        if req.children.is_empty() {
            return self.handle_own(req);
        }
        let child_requests: Vec<WorkerRequest> = req.children.iter().map(|c| req.for_node(c)).collect();
        let (own, children) = if rayon::current_thread_index().is_some() {
            // Inside the rayon pool (the in-process invoker): join cooperatively, so a
            // waiting thread keeps stealing work instead of blocking the pool.
            rayon::join(|| self.handle_own(req), || invoker.invoke_all(&child_requests))
        } else {
            // A plain thread (a function handler): the children wait on the network in a
            // thread of their own while this one searches.
            std::thread::scope(|s| {
                let pending = s.spawn(|| invoker.invoke_all(&child_requests));
                let own = self.handle_own(req);
                let children = pending
                    .join()
                    .unwrap_or_else(|_| vec![Err("child invocation panicked".to_string()); child_requests.len()]);
                (own, children)
            })
        };
        let mut lists = vec![own.hits];
        let mut outcomes = own.outcomes;
        let mut answers = own.batch;
        let mut invocations = child_requests.len() as u32;
        let mut cold_workers = own.cold_workers;
        let mut billed = 0;
        for (sent, got) in child_requests.iter().zip(children) {
            match got {
                Ok(r) => {
                    lists.push(r.hits);
                    outcomes.extend(r.outcomes);
                    answers.extend(r.batch);
                    invocations += r.invocations;
                    cold_workers += r.cold_workers;
                    billed += r.billed_ms;
                }
                Err(e) if sent.batch.is_empty() => outcomes.extend(
                    sent.all_segments()
                        .into_iter()
                        .map(|s| failed_outcome(s.partition, format!("worker {}: {e}", sent.worker))),
                ),
                Err(e) => answers.extend(sent.batch.iter().map(|q| {
                    BatchAnswer {
                        slot: q.slot,
                        hits: Vec::new(),
                        outcomes: q
                            .parts
                            .iter()
                            .map(|p| failed_outcome(p.partition, format!("worker {}: {e}", sent.worker)))
                            .collect(),
                    }
                })),
            }
        }
        WorkerResponse {
            hits: merge_hits(lists, req.k as usize),
            outcomes,
            invocations,
            cold_workers,
            batch: merge_answers(answers, &req.batch),
            billed_ms: billed,
        }
    }
}

/// The outcome of a partition that could not be searched.
fn failed_outcome(partition: u32, error: String) -> PartitionOutcome {
    PartitionOutcome {
        partition,
        error: Some(error),
        counts: StageCounts::default(),
        cache_hit: false,
        bytes_fetched: 0,
        fetch_us: 0,
        scan_us: 0,
        gets: 0,
    }
}

/// Merges the answers of a node and its children per query: each query's best `k` hits
/// (its own `k`, from `batch`), all its outcomes.
pub fn merge_answers(answers: Vec<BatchAnswer>, batch: &[BatchQuery]) -> Vec<BatchAnswer> {
    let mut by_slot: std::collections::BTreeMap<u32, (Vec<Vec<WorkerHit>>, Vec<PartitionOutcome>)> =
        std::collections::BTreeMap::new();
    for a in answers {
        let e = by_slot.entry(a.slot).or_default();
        e.0.push(a.hits);
        e.1.extend(a.outcomes);
    }
    by_slot
        .into_iter()
        .map(|(slot, (lists, outcomes))| {
            let k = batch.iter().find(|q| q.slot == slot).map_or(0, |q| q.k as usize);
            BatchAnswer {
                slot,
                hits: merge_hits(lists, k),
                outcomes,
            }
        })
        .collect()
}

/// Checks that a segment holds the partition the manifest says it does.
fn check_partition(r: &SegmentRef, seg: &Segment) -> Result<(), String> {
    if seg.meta().partition != r.partition {
        return Err(format!(
            "segment '{}' holds partition {}, expected {}",
            r.key,
            seg.meta().partition,
            r.partition
        ));
    }
    Ok(())
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
            name: None,
            distance,
            attrs: vec![attr],
            elements: Vec::new(),
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
