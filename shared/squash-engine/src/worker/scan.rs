//! The scan kernel of one segment: filter on attribute codes, Hamming prune on sign
//! bits, lower bounds from the blocked ADC tables, exact re-rank in bound order. Pure
//! functions over a decoded segment (the build's calibration runs them too).

use squash_api::StageCounts;
use squash_core::binary::{encode_signs, hamming};
use squash_core::deletes::DeadRows;
use squash_core::distance::{exact_distance, l2sq, prefetch};
use squash_core::fastscan::{self, FastTable, BLOCK};
use squash_core::filter::{CodeFilter, Expr, MASK_CERTAIN, MASK_POSSIBLE};
use squash_core::segment::Segment;
use squash_core::topk::{Neighbor, TopK};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

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
pub(crate) const LB_SLACK: f32 = 1e-4;

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
pub(crate) fn list_ranges(seg: &Segment, lists: &[u32]) -> Vec<(usize, std::ops::Range<usize>)> {
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
pub(crate) fn merged_ranges(ranges: &[(usize, std::ops::Range<usize>)]) -> Vec<std::ops::Range<usize>> {
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
pub(crate) fn same_cells(a: &Segment, b: &Segment) -> bool {
    a.cells_tag() == b.cells_tag()
}

/// One segment's lower bounds: the best `budget` candidates, the stage counts, and a
/// floor under every candidate left out.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    /// The best `p.budget()` candidates as `(lower bound on the squared L2 distance,
    /// row)`, in no particular order.
    pub rows: Vec<(f32, u32)>,
    /// Stage counts.
    pub counts: StageCounts,
    /// No candidate left out of `rows` has a lower bound below this (`INFINITY`: none
    /// was left out). The re-rank is exact only once its k-th distance is below it.
    pub floor: f32,
}

/// Scans one segment: [`select_rows`], then [`bound_selected`]. Returns the best
/// `p.budget()` candidates with their lower bounds, the stage counts and the floor under
/// the candidates left out ([`Bounds`]). `query` must be prepared (normalised for cosine). Never returns
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
) -> Bounds {
    let selected = select_rows(seg, query, filter, compiled, lists, p, None);
    bound_selected(seg, query, selected, p, shared)
}

/// Last scan stage of one segment: lower bounds for the selected rows (the blocked scan,
/// or exact distances when candidates are sparse), the best `p.budget()` kept, with the
/// floor under those left out ([`Bounds`]). The vectors of [`Selected::vector_rows`]
/// must be held.
pub fn bound_selected(
    seg: &Segment,
    query: &[f32],
    selected: Selected,
    p: PartitionParams,
    shared: &AtomicU32,
) -> Bounds {
    bound_again(seg, query, &selected, p, shared, &mut None)
}

/// What the first scan of a segment for a query computed, kept so that taking its
/// bounds again (with a larger budget, or under a cutoff) costs no second scan: the
/// blocked scan's tables and every scanned row's coarse sum, or the candidates' exact
/// distances.
pub enum ScanMemo {
    /// The blocked scan: its tables and one sum per row of the scanned lists, list by
    /// list as [`Selected`] ranges them.
    Dense {
        /// The byte tables (they turn a sum into a bound).
        fast: FastTable,
        /// Sums of every row of the scanned lists.
        sums: Vec<u16>,
    },
    /// The candidates' exact squared distances, as `(distance, row)`.
    Exact(Vec<(f32, u32)>),
}

/// [`bound_selected`] over a selection kept by the caller, reusing (or filling) `memo`
/// so that a second call scans nothing.
pub fn bound_again(
    seg: &Segment,
    query: &[f32],
    selected: &Selected,
    p: PartitionParams,
    shared: &AtomicU32,
    memo: &mut Option<ScanMemo>,
) -> Bounds {
    let Selected {
        ranges,
        candidates,
        every_row,
        dead,
        dense,
        yq,
        counts,
    } = selected;
    let (every_row, dense, mut counts) = (*every_row, *dense, *counts);
    if counts.hamming == 0 {
        return Bounds {
            rows: Vec::new(),
            counts,
            floor: f32::INFINITY,
        };
    }
    let budget = p.budget();
    // The smallest coarse sum of a candidate left out (`u16::MAX + 1`: none).
    let mut dropped: u32 = u32::from(u16::MAX) + 1;
    // 3. Lower bounds. Where at least one row in SPARSE_DIVISOR of the lists is a
    //    candidate, the blocked SIMD scan bounds whole blocks at once (ADC on the codes'
    //    leading nibbles) and a reservoir keeps the best `budget`; below that, each
    //    candidate's exact squared distance (cheaper than a table walk per row) is its bound.
    let (mut bounded, floor): (Vec<(f32, u32)>, f32) = if dense {
        if memo.is_none() {
            let fast = FastTable::new(seg.scan_bounds(), yq, reach(seg, query, ranges, candidates, every_row));
            let total: usize = ranges.iter().map(|(_, r)| r.len()).sum();
            let mut all: Vec<u16> = Vec::with_capacity(total + BLOCK);
            for (l, range) in ranges {
                // Scanned in place: a list's padding is cut before the next list's sums.
                let at = all.len();
                all.resize(at + fastscan::blocks_for(range.len()) * BLOCK, 0);
                fastscan::scan(&fast, seg.list_blocks(*l), &mut all[at..]);
                all.truncate(at + range.len());
            }
            *memo = Some(ScanMemo::Dense { fast, sums: all });
        }
        let Some(ScanMemo::Dense { fast, sums: all }) = memo.as_ref() else {
            unreachable!("a dense scan's memo is dense")
        };
        let keep = budget.max(1);
        let mut coarse: Vec<(u16, u32)> = Vec::with_capacity(keep * 2 + BLOCK);
        // A row whose bound exceeds the `keep`-th best bound already found, in this
        // segment or another of the request (`shared`), can never reach the re-rank.
        let global = || fast.sum_below(f32::from_bits(shared.load(Ordering::Relaxed)));
        let mut threshold = global();
        let mut next = candidates.iter().copied().peekable();
        let mut at = 0;
        for (_, range) in ranges {
            threshold = threshold.min(global());
            let sums = &all[at..at + range.len()];
            at += range.len();
            if every_row {
                for (c, chunk) in sums.chunks(16).enumerate() {
                    // Most chunks hold nothing under the threshold once it has settled:
                    // one vectorised minimum rejects them.
                    let least = chunk.iter().copied().min().unwrap_or(u16::MAX);
                    if least > threshold {
                        // (A deleted row can lower this floor: only ever a lower floor.)
                        dropped = dropped.min(u32::from(least));
                        continue;
                    }
                    for (i, &sum) in chunk.iter().enumerate() {
                        let row = range.start + c * 16 + i;
                        if dead.as_ref().is_some_and(|d| d.contains(row)) {
                            continue;
                        }
                        if sum <= threshold {
                            coarse.push((sum, row as u32));
                        } else {
                            dropped = dropped.min(u32::from(sum));
                        }
                    }
                }
            } else {
                while let Some(r) = next.next_if(|&r| (r as usize) < range.end) {
                    let sum = sums[r as usize - range.start];
                    if sum <= threshold {
                        coarse.push((sum, r));
                    } else {
                        dropped = dropped.min(u32::from(sum));
                    }
                }
            }
            if coarse.len() >= keep * 2 {
                coarse.select_nth_unstable(keep - 1);
                dropped = dropped.min(coarse[keep..].iter().map(|c| u32::from(c.0)).min().unwrap_or(u32::MAX));
                coarse.truncate(keep);
                threshold = coarse.iter().map(|c| c.0).max().unwrap_or(u16::MAX);
                shared.fetch_min(fast.bound(threshold).to_bits(), Ordering::Relaxed);
            }
        }
        if coarse.len() >= keep {
            coarse.select_nth_unstable(keep - 1);
            dropped = dropped.min(coarse[keep..].iter().map(|c| u32::from(c.0)).min().unwrap_or(u32::MAX));
            coarse.truncate(keep);
            let kth = coarse.iter().map(|c| c.0).max().unwrap_or(u16::MAX);
            shared.fetch_min(fast.bound(kth).to_bits(), Ordering::Relaxed);
        }
        counts.bounded = counts.hamming;
        // A bound only grows with its sum: every row left out is bounded by the least.
        let floor = u16::try_from(dropped).map_or(f32::INFINITY, |d| fast.bound(d));
        let rows: Vec<(f32, u32)> = coarse.into_iter().map(|(sum, r)| (fast.bound(sum), r)).collect();
        (rows, floor)
    } else {
        if memo.is_none() {
            let rows = candidates
                .iter()
                .enumerate()
                .map(|(i, &r)| {
                    if let Some(&ahead) = candidates.get(i + PREFETCH_AHEAD) {
                        prefetch(seg.vector(ahead as usize));
                    }
                    (l2sq(query, seg.vector(r as usize)), r)
                })
                .collect();
            *memo = Some(ScanMemo::Exact(rows));
        }
        let Some(ScanMemo::Exact(rows)) = memo.as_ref() else {
            unreachable!("a sparse scan's memo holds exact distances")
        };
        // Under the cutoff only: a row above it can never reach the answer.
        let cutoff = f32::from_bits(shared.load(Ordering::Relaxed));
        let mut floor = f32::INFINITY;
        let mut kept = Vec::with_capacity(rows.len().min(budget * 2));
        for &(d, r) in rows {
            if d <= cutoff {
                kept.push((d, r));
            } else {
                floor = floor.min(d);
            }
        }
        (kept, floor)
    };

    // 4. Keep the best k·R bounds (the re-rank orders them).
    let cut = keep_best(&mut bounded, budget, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    Bounds {
        floor: cut.iter().fold(floor, |f, c| f.min(c.0)),
        rows: bounded,
        counts,
    }
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
pub(crate) fn reach(
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
pub(crate) fn reach_rows(
    ranges: &[(usize, std::ops::Range<usize>)],
    candidates: &[u32],
    every_row: bool,
) -> Vec<usize> {
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

/// Keeps the `n` smallest elements of `v` under `cmp` (in no particular order) and
/// returns the others.
pub(crate) fn keep_best<T>(v: &mut Vec<T>, n: usize, cmp: impl Fn(&T, &T) -> std::cmp::Ordering) -> Vec<T> {
    if v.len() <= n {
        return Vec::new();
    }
    if n == 0 {
        return std::mem::take(v);
    }
    v.select_nth_unstable_by(n - 1, &cmp);
    v.split_off(n)
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

/// What the re-rank found.
#[derive(Debug, Clone, Default)]
pub struct Reranked {
    /// The top `p.k`, best first.
    pub hits: Vec<RowHit>,
    /// Rows of each segment re-ranked.
    pub reranked: Vec<u64>,
    /// Whether the hits are the exact top `p.k` of every candidate, those left out of
    /// the pool included: the k-th distance is below the next bound and the floor.
    pub exact: bool,
    /// The k-th distance found (in the index metric; `INFINITY` with fewer than `p.k`
    /// hits): no row beyond it can enter the answer.
    pub kth: f32,
}

/// A pooled candidate ordered by bound (then segment, then row), for the re-rank's heap.
#[derive(Clone, Copy, PartialEq)]
struct ByBound((f32, u32, u32));

impl Eq for ByBound {}

impl PartialOrd for ByBound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByBound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (self.0, other.0);
        a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
    }
}

/// Last stage: exact distances for the pooled candidates of several segments
/// (`(bound, segment, row)`), the best `p.budget()` of them in bound order, stopping
/// once a bound passes the k-th exact distance (the rows past the budget join the
/// floor). `floor` bounds every candidate not in the pool from below (`INFINITY`: none
/// was left out); the re-rank stops at it too, and the answer is exact when the k-th
/// distance is below both the next bound and the floor ([`Reranked::exact`]).
pub fn rerank(
    segs: &[&Segment],
    mut pool: Vec<(f32, u32, u32)>,
    query: &[f32],
    filter: Option<&Expr>,
    p: PartitionParams,
    floor: f32,
) -> Reranked {
    let mut reranked = vec![0u64; segs.len()];
    let cut = keep_best(&mut pool, p.budget(), |a, b| {
        a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
    });
    let floor = cut.iter().fold(floor, |f, c| f.min(c.0));
    // A heap: most queries stop long before the pool's end, so it is never sorted whole.
    let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<ByBound>> =
        pool.into_iter().map(|c| std::cmp::Reverse(ByBound(c))).collect();
    let mut top: TopK<(u32, u32)> = TopK::with_payload(p.k);
    let past = |top: &TopK<(u32, u32)>, metric: squash_core::distance::Metric, bound: f32| {
        top.is_full() && metric.from_l2sq(bound * (1.0 - LB_SLACK)) > top.threshold()
    };
    // The least bound not re-ranked: the next in the pool, else the floor.
    let mut next = floor;
    while let Some(std::cmp::Reverse(ByBound((lb, s, r)))) = heap.pop() {
        let seg = segs[s as usize];
        let metric = seg.meta().metric;
        if lb > floor || past(&top, metric, lb) {
            next = lb.min(floor);
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
    let exact = next == f32::INFINITY || segs.first().is_some_and(|seg| past(&top, seg.meta().metric, next));
    let kth = if top.is_full() { top.threshold() } else { f32::INFINITY };
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
    Reranked {
        hits,
        reranked,
        exact,
        kth,
    }
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
    let Bounds {
        rows,
        mut counts,
        floor,
    } = bound_segment(seg, query, filter, None, lists, p, &shared);
    let pool = rows.into_iter().map(|(lb, r)| (lb, 0, r)).collect();
    let r = rerank(&[seg], pool, query, filter, p, floor);
    counts.reranked = r.reranked[0];
    (r.hits, counts)
}
