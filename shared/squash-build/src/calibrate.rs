//! Build-time calibration of the default search knobs from the data itself.
//!
//! One `nprobe`, `safety` or `rerank_factor` cannot serve every dataset: on GloVe-50 the ten nearest
//! neighbours of a query are spread over many lists, on Fashion-MNIST they sit in one or
//! two. So the build measures it. It draws sample queries from the base vectors (each
//! query's own row excluded from its answers), finds their exact neighbours by brute
//! force, ranks the fine lists for each query exactly as the planner does, and then picks:
//!
//! - `nprobe`: the fewest lists whose union holds at least `target` of the sample's
//!   top-`k` neighbours, on average (the *coverage*: which lists hold the answers);
//! - `safety`, per selectivity (8 %, 1 %, 0.1 %: the safety curve): the smallest
//!   sufficiency factor whose lists hold at least `target` of the top-`k` *matching*
//!   neighbours under a random filter of that selectivity (a filter independent of the
//!   vectors is the hard case: a filter correlated with them, like a cluster label, puts
//!   its matches in fewer lists). A selectivity with matches too rare to measure on this
//!   many vectors is left out;
//! - `far_share`, by how much sparser a region's matches are in the query's `nprobe`
//!   nearest lists than in the index: the share of them the planner must collect when
//!   the region lies away from the query. Its nearest rows sit on the region's near
//!   face, spread over lists at much the same distance, which list order ranks poorly,
//!   so counting `safety × k` matches, which serves a filter spread evenly around the
//!   query, finds too few of them (on GloVe-50, recall 0.88 for a far cluster label).
//!   Measured on balls of 1 % and 0.1 % of the rows around base rows beyond the query's
//!   `nprobe` nearest lists (see [`FAR_COVERAGE`]).
//!
//! Coverage is an upper bound on recall: the search also loses the true neighbours whose
//! quantised bounds fall behind `k × rerank_factor` others, so `target` sits above the
//! recall the defaults promise, and [`calibrate_rerank`] then picks `rerank_factor` by
//! running the real search over the built segments. Everything is seeded: the same data
//! and seed give the same knobs.

use crate::io::Matrix;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use squash_core::distance::{l2sq, Metric};
use squash_core::klt::Klt;
use squash_core::manifest::{Calibration, Manifest};
use squash_core::segment::Segment;
use squash_engine::plan::{plan, Safety};
use squash_engine::worker::{bound_segment, rerank, PartitionParams};
use std::borrow::Cow;
use std::sync::atomic::AtomicU32;

/// Coverage the defaults are calibrated to.
pub const TARGET_COVERAGE: f64 = 0.98;
/// Neighbours per sample query the knobs are calibrated for.
pub const CALIBRATION_K: usize = 10;
/// Selectivities of the random filters `safety` is calibrated on.
pub const CALIBRATION_SELECTIVITIES: [f64; 3] = [0.08, 0.01, 0.001];
/// Random filters each sample query is measured under, per selectivity. The factor a
/// selectivity needs is set by the few neighbours furthest out in list order (the
/// target's last 2 %); one filter per query left that tail to a few dozen neighbours,
/// and builds of the same data with different seeds disagreed by a fifth at 0.1 %.
/// More filters cost no brute force (the same neighbours, filtered again).
pub const FILTERS_PER_QUERY: usize = 8;
/// Selectivities of the far filters `far_share` is calibrated on.
pub const FAR_SELECTIVITIES: [f64; 2] = [0.01, 0.001];
/// Coverage `far_share` is calibrated to: above [`TARGET_COVERAGE`], because balls
/// stand in for the regions real filters are (cluster labels, topics) and those spread
/// their nearest rows over more lists (on GloVe-50 a share covering 98 % of the balls'
/// top-10 gave a far cluster label recall 0.955, one covering 99 % 0.976).
pub const FAR_COVERAGE: f64 = 0.99;
/// Far filters' centres drawn per sample query.
pub const FAR_CENTRES: usize = 2;
/// Upper edges of the buckets of `near / global` selectivity `far_share` is measured in.
pub const FAR_BUCKETS: [f64; 4] = [0.125, 0.25, 0.5, 1.0];
/// Fewest far filters a bucket of `far_share` is measured on.
pub const MIN_FAR_FILTERS: usize = 20;
/// Fewest lists (and vectors) an index needs before calibrating pays off; smaller
/// indexes keep the static defaults.
pub const MIN_LISTS: usize = 16;
/// Smallest index (vectors) that is calibrated.
pub const MIN_VECTORS: usize = 4_000;

/// What calibration sees of a built index.
pub struct CalibrationInput<'a> {
    /// The prepared vectors (normalised for cosine), row `i` = vector `i`.
    pub vectors: &'a Matrix,
    /// The global KLT the list centroids live in.
    pub global: &'a Klt,
    /// List centroids, `lists × global.out_dims()`.
    pub list_centroids: &'a [f32],
    /// Vectors per list.
    pub list_counts: &'a [u32],
    /// Global list number of each vector.
    pub row_list: &'a [u32],
    /// Seed of the query sample and of the random filters.
    pub seed: u64,
    /// The index metric (an inner-product sample query zeroes the transformation's
    /// coordinate, see [`sample_query`]).
    pub metric: Metric,
}

/// Sample query `row` of the prepared `vectors`, as a query is prepared: the row itself,
/// or for inner product the row with the transformation's coordinate set to 0.
pub fn sample_query(vectors: &Matrix, row: usize, metric: Metric) -> Cow<'_, [f32]> {
    let v = vectors.row(row);
    match metric {
        Metric::Ip => {
            let mut q = v.to_vec();
            if let Some(last) = q.last_mut() {
                *last = 0.0;
            }
            Cow::Owned(q)
        }
        _ => Cow::Borrowed(v),
    }
}

/// The knobs calibration chose.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibrated {
    /// Fewest lists searched.
    pub nprobe: u32,
    /// Filter-sufficiency factor: the largest any measured filter needed.
    pub safety: f32,
    /// `(selectivity, safety)` measured, ascending in selectivity, ending with
    /// `(1, vectors in nprobe lists / k)`.
    pub safety_curve: Vec<(f64, f64)>,
    /// `(edge, share of the matches collected)` measured on far filters, by how much
    /// sparser they are near the query than in the index, edges ascending (see the
    /// module documentation); empty when none could be measured.
    pub far_share: Vec<(f64, f64)>,
    /// How they were measured (recorded in the manifest).
    pub report: Calibration,
    /// The sample queries (base rows) and the rows of their `CALIBRATION_K` exact
    /// nearest neighbours, nearest first, for [`calibrate_rerank`].
    pub samples: Vec<(usize, Vec<u32>)>,
}

/// One sample query's view of the index: the list rank of each of its nearest
/// neighbours (nearest first) and the rows held by its first `i + 1` ranked lists.
struct QueryView {
    /// Rows of the nearest neighbours, nearest first.
    rows: Vec<u32>,
    /// Rank (in the query's list order) of each neighbour's list.
    ranks: Vec<u32>,
    /// `cum[i]`: vectors in the query's `i + 1` nearest lists.
    cum: Vec<u64>,
}

/// Calibrates `nprobe` and `safety`, or `None` for an index too small to need it.
pub fn calibrate(input: &CalibrationInput) -> Option<Calibrated> {
    let n = input.vectors.rows;
    let dim = input.vectors.cols;
    let lists = input.list_counts.len();
    if lists < MIN_LISTS || n < MIN_VECTORS || dim == 0 {
        return None;
    }
    let k = CALIBRATION_K;
    // About 2·10^11 multiply-adds of brute force at most (seconds on two cores): 200
    // queries up to 10^9 values. Fewer samples misjudged the re-rank factor at 10M
    // vectors (50 samples measured recall 0.970 where 100 held-out queries got 0.939).
    let queries = ((2e11 / (n as f64 * dim as f64)) as usize).clamp(50, 200).min(n / 20);
    let mut rng = ChaCha8Rng::seed_from_u64(input.seed ^ 0xca11_b8a7e);
    let mut picks = sample(&mut rng, n, queries).into_vec();
    picks.sort_unstable();
    let smallest = CALIBRATION_SELECTIVITIES.iter().copied().fold(1.0, f64::min);
    // Deep enough to hold k matches of the sparsest random filter four times over.
    let depth = ((4.0 * k as f64 / smallest) as usize).min(n - 1);
    let views: Vec<QueryView> = picks
        .par_iter()
        .map(|&qi| {
            let q = sample_query(input.vectors, qi, input.metric);
            let q: &[f32] = &q;
            let mut d: Vec<(f32, u32)> = (0..n)
                .filter(|&i| i != qi)
                .map(|i| (l2sq(q, input.vectors.row(i)), i as u32))
                .collect();
            let cmp = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            if depth < d.len() {
                d.select_nth_unstable_by(depth, cmp);
                d.truncate(depth);
            }
            d.sort_unstable_by(cmp);
            let (order, rank) = list_order(input, q);
            let mut cum = Vec::with_capacity(lists);
            let mut acc = 0u64;
            for &l in &order {
                acc += u64::from(input.list_counts[l as usize]);
                cum.push(acc);
            }
            QueryView {
                rows: d.iter().map(|&(_, i)| i).collect(),
                ranks: d
                    .iter()
                    .map(|&(_, i)| rank[input.row_list[i as usize] as usize])
                    .collect(),
                cum,
            }
        })
        .collect();

    // nprobe: the smallest p with mean coverage ≥ target over the unfiltered top-k.
    let mut hits: Vec<u32> = views.iter().flat_map(|v| v.ranks.iter().take(k).copied()).collect();
    hits.sort_unstable();
    let need = ((TARGET_COVERAGE * hits.len() as f64).ceil() as usize).clamp(1, hits.len());
    let nprobe = (hits[need - 1] + 1).min(lists as u32);
    let unfiltered = hits.iter().filter(|&&r| r < nprobe).count() as f64 / hits.len() as f64;

    // safety: per selectivity, the smallest factor reaching the target; the largest wins.
    let mut by_selectivity = Vec::new();
    for (si, &s) in CALIBRATION_SELECTIVITIES.iter().enumerate() {
        // Each query's top-k matching neighbours under each of FILTERS_PER_QUERY random
        // filters, as list ranks.
        let filtered: Vec<(&QueryView, Vec<u32>)> = (0..FILTERS_PER_QUERY as u64)
            .flat_map(|fi| {
                let salt = input.seed ^ (0x5e1ec7 + si as u64) ^ fi.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                views.iter().filter_map(move |v| {
                    let ranks: Vec<u32> = v
                        .rows
                        .iter()
                        .zip(&v.ranks)
                        .filter(|(&row, _)| passes(row, salt, s))
                        .map(|(_, &r)| r)
                        .take(k)
                        .collect();
                    (ranks.len() == k).then_some((v, ranks))
                })
            })
            .collect();
        // Too few vectors for this selectivity: the queries left would be a biased few.
        if filtered.len() < views.len() * FILTERS_PER_QUERY / 2 {
            continue;
        }
        let coverage = |f: f64| -> f64 {
            let rows_needed = f * k as f64 / s;
            let mut covered = 0usize;
            for (v, ranks) in &filtered {
                // Lists the planner takes: at least nprobe, then until s·rows ≥ f·k.
                let by_rows = v.cum.partition_point(|&c| (c as f64) < rows_needed) + 1;
                let taken = by_rows.max(nprobe as usize) as u32;
                covered += ranks.iter().filter(|&&r| r < taken).count();
            }
            covered as f64 / (filtered.len() * k) as f64
        };
        // Coverage grows with the factor; bisect in log space between "k estimated
        // matches" and "every list".
        let (mut lo, mut hi) = (1.0f64, (n as f64 * s / k as f64).max(1.0));
        let needed = if coverage(hi) < TARGET_COVERAGE {
            hi
        } else if coverage(lo) >= TARGET_COVERAGE {
            lo
        } else {
            for _ in 0..40 {
                let mid = (lo * hi).sqrt();
                if coverage(mid) >= TARGET_COVERAGE {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            hi
        };
        by_selectivity.push((s, round_up_3(needed)));
    }
    // A filter that matches (almost) everything needs no more than the unfiltered search:
    // the `nprobe` lists, about `nprobe × n / lists` vectors.
    by_selectivity.push((1.0, round_up_3(nprobe as f64 * n as f64 / lists as f64 / k as f64)));
    by_selectivity.sort_by(|a: &(f64, f64), b| a.0.total_cmp(&b.0));
    // A sparser filter never scans fewer vectors (`safety / s`) than a denser one: where
    // the measured points disagree (the `nprobe` floor decided a dense one), the sparser
    // point takes the denser one's vectors.
    for i in (0..by_selectivity.len().saturating_sub(1)).rev() {
        let (s0, f0) = by_selectivity[i];
        let (s1, f1) = by_selectivity[i + 1];
        if f0 / s0 < f1 / s1 {
            by_selectivity[i].1 = round_up_3(f1 / s1 * s0);
        }
    }
    // The fixed factor that serves every measured filter: the largest (1, k matches, if
    // none could be measured).
    let safety = by_selectivity[..by_selectivity.len() - 1]
        .iter()
        .map(|p| p.1)
        .fold(1.0, f64::max) as f32;
    debug_assert!(by_selectivity.iter().all(|p| p.1 >= 1.0 || p.0 == 1.0));
    let far_share = far_shares(input, &picks, nprobe as usize);
    Some(Calibrated {
        nprobe,
        safety,
        safety_curve: by_selectivity,
        far_share,
        samples: picks
            .iter()
            .zip(&views)
            .map(|(&q, v)| (q, v.rows.iter().take(k).copied().collect()))
            .collect(),
        report: Calibration {
            queries: queries as u32,
            k: k as u32,
            target_coverage: TARGET_COVERAGE,
            nprobe_coverage: (unfiltered * 1e4).round() / 1e4,
            rerank_recall: None,
        },
    })
}

/// The lists in the order the planner ranks them for query `q` (nearest centroid
/// first) and each list's rank in that order.
fn list_order(input: &CalibrationInput, q: &[f32]) -> (Vec<u32>, Vec<u32>) {
    let lists = input.list_counts.len();
    let pd = input.global.out_dims();
    let yq = input.global.transform(q);
    let mut order: Vec<(f32, u32)> = (0..lists)
        .map(|l| (l2sq(&yq, &input.list_centroids[l * pd..(l + 1) * pd]), l as u32))
        .collect();
    order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut rank = vec![0u32; lists];
    for (r, &(_, l)) in order.iter().enumerate() {
        rank[l as usize] = r as u32;
    }
    (order.into_iter().map(|(_, l)| l).collect(), rank)
}

/// One sample query under one far filter: the filter's matches per list (in the
/// query's list order) and the list ranks of the query's top-`k` matches.
struct FarView {
    /// How much sparser the matches are in the query's `nprobe` nearest lists than in
    /// the index (the planner's measure: near selectivity / global selectivity).
    sparser: f64,
    /// `(matches, rank)` of every list holding a match, in the query's list order.
    lists: Vec<(u32, u32)>,
    /// Matches in all.
    matches: u32,
    /// List rank of each of the query's `k` nearest matches.
    ranks: Vec<u32>,
}

/// Measures [`Calibrated::far_share`]: for each sample query [`FAR_CENTRES`] centres drawn among the
/// rows beyond its `nprobe` nearest lists, and at each of [`FAR_SELECTIVITIES`] the ball
/// of that many rows nearest the centre as the filter, kept when its matches are sparser
/// in those lists than in the index. By how much sparser (`near / global` selectivity,
/// in the buckets of [`FAR_BUCKETS`]), the smallest share of the matches which,
/// collected in list order as the planner does (lists holding a match, at least
/// `nprobe` of them), covers [`FAR_COVERAGE`] of the queries' top-`k` matches. A
/// bucket with too few filters is left out; a sparser bucket never needs a smaller share
/// than a denser one.
fn far_shares(input: &CalibrationInput, picks: &[usize], nprobe: usize) -> Vec<(f64, f64)> {
    let n = input.vectors.rows;
    let lists = input.list_counts.len();
    let k = CALIBRATION_K;
    let cmp = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    let views: Vec<FarView> = picks
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, &qi)| {
            let q = sample_query(input.vectors, qi, input.metric);
            let q: &[f32] = &q;
            let (order, rank) = list_order(input, q);
            let near_rows: u64 = order
                .iter()
                .take(nprobe)
                .map(|&l| u64::from(input.list_counts[l as usize]))
                .sum();
            let row_rank = |row: usize| rank[input.row_list[row] as usize];
            // The centre: a seeded draw among the rows beyond the nearest lists (most
            // rows are: a few draws find one).
            let mut rng = ChaCha8Rng::seed_from_u64(input.seed ^ 0xfa2_f11e ^ (i as u64).wrapping_mul(0x9e37_79b9));
            let mut views = Vec::new();
            for _ in 0..FAR_CENTRES {
                let centre = (0..1000)
                    .map(|_| rng.gen_range(0..n))
                    .find(|&r| row_rank(r) as usize >= nprobe)
                    .map(|r| input.vectors.row(r));
                let mut by_centre: Vec<(f32, u32)> = match centre {
                    Some(c) => (0..n)
                        .filter(|&r| r != qi)
                        .map(|r| (l2sq(c, input.vectors.row(r)), r as u32))
                        .collect(),
                    None => Vec::new(),
                };
                let widest = FAR_SELECTIVITIES
                    .iter()
                    .map(|&s| (s * n as f64) as usize)
                    .max()
                    .unwrap_or(0);
                if widest < by_centre.len() {
                    by_centre.select_nth_unstable_by(widest, cmp);
                    by_centre.truncate(widest);
                }
                by_centre.sort_unstable_by(cmp);
                views.extend(FAR_SELECTIVITIES.iter().filter_map(|&s| {
                    let ball = &by_centre[..((s * n as f64) as usize).min(by_centre.len())];
                    if ball.len() < 4 * k || near_rows == 0 {
                        return None;
                    }
                    let near = ball
                        .iter()
                        .filter(|&&(_, r)| (row_rank(r as usize) as usize) < nprobe)
                        .count();
                    let sparser = (near as f64 / near_rows as f64) / (ball.len() as f64 / n as f64);
                    if sparser >= 1.0 {
                        return None;
                    }
                    let mut per_rank = vec![0u32; lists];
                    for &(_, r) in ball {
                        per_rank[row_rank(r as usize) as usize] += 1;
                    }
                    let mut nearest: Vec<(f32, u32)> = ball
                        .iter()
                        .map(|&(_, r)| (l2sq(q, input.vectors.row(r as usize)), r))
                        .collect();
                    nearest.sort_unstable_by(cmp);
                    Some(FarView {
                        sparser,
                        lists: per_rank
                            .iter()
                            .enumerate()
                            .filter(|(_, &c)| c > 0)
                            .map(|(r, &c)| (c, r as u32))
                            .collect(),
                        matches: ball.len() as u32,
                        ranks: nearest.iter().take(k).map(|&(_, r)| row_rank(r as usize)).collect(),
                    })
                }));
            }
            views
        })
        .collect();
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut below = 0.0;
    for &edge in &FAR_BUCKETS {
        let measured: Vec<&FarView> = views
            .iter()
            .filter(|v| v.sparser >= below && v.sparser < edge)
            .collect();
        below = edge;
        if measured.len() < MIN_FAR_FILTERS {
            continue;
        }
        let coverage = |share: f64| -> f64 {
            let mut covered = 0usize;
            for v in &measured {
                let want = share * v.matches as f64;
                let (mut got, mut taken, mut last) = (0.0, 0usize, 0u32);
                for &(c, r) in &v.lists {
                    if taken >= nprobe && got >= want {
                        break;
                    }
                    got += c as f64;
                    taken += 1;
                    last = r;
                }
                covered += v.ranks.iter().filter(|&&r| r <= last).count();
            }
            covered as f64 / (measured.len() * k) as f64
        };
        // Coverage grows with the share; bisect between none and all of the matches.
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        if coverage(0.0) >= FAR_COVERAGE {
            hi = 0.0;
        } else {
            for _ in 0..30 {
                let mid = (lo + hi) / 2.0;
                if coverage(mid) >= FAR_COVERAGE {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
        }
        out.push((edge, round_up_3(hi).min(1.0)));
    }
    // A sparser bucket never collects a smaller share than a denser one.
    for i in (0..out.len().saturating_sub(1)).rev() {
        out[i].1 = out[i].1.max(out[i + 1].1);
    }
    out
}

/// The random filter of selectivity `s`: a hash of the row, independent of the vector.
fn passes(row: u32, salt: u64, s: f64) -> bool {
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(&row.to_le_bytes(), salt);
    (h >> 11) as f64 / (1u64 << 53) as f64 <= s
}

/// Rounds up to three significant digits (37.21 → 37.3, 1234.5 → 1240): readable
/// knobs, at most 1 % above the measured need (two digits added up to 10 %, and made
/// two builds of the same data differ by that much where one measured 1,199 and the
/// other 1,203).
fn round_up_3(x: f64) -> f64 {
    if x <= 0.0 {
        return x;
    }
    let e = x.log10().floor() as i32 - 2;
    // Digits as an integer (a hair under it still counts as it), then scaled back by
    // an exact power of ten, so 12.1 is stored as 12.1, not 12.100000000000001.
    let digits = (x / 10f64.powi(e) - 1e-9).ceil();
    if e < 0 {
        digits / 10f64.powi(-e)
    } else {
        digits * 10f64.powi(e)
    }
}

/// Re-rank factors tried by [`calibrate_rerank`], ascending. None below 10: filtered
/// queries pool fewer, less even candidates than the unfiltered samples measure (on
/// GloVe-50 a factor of 5 served the samples but left the `label` case at recall 0.951).
pub const RERANK_FACTORS: [u32; 11] = [10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500];

/// Re-rank loss tolerated: the factor chosen loses at most this much recall@k against
/// the largest factor tried, or reaches [`RERANK_RECALL`].
pub const RERANK_LOSS: f64 = 0.005;

/// Recall@k of the sample queries that is enough for the re-rank factor.
pub const RERANK_RECALL: f64 = 0.97;

/// Calibrates `rerank_factor` by searching: up to 200 of the sample queries run through
/// the real planner and worker pipeline (`manifest`'s `nprobe`, no filter) over the
/// built `segments` (by partition id; `input_rows[p][r]` is the input row of partition
/// `p`'s segment row `r`), at each of [`RERANK_FACTORS`]; the smallest
/// factor whose recall@k is within [`RERANK_LOSS`] of the largest's, or at least
/// [`RERANK_RECALL`], wins. The bounds'
/// quality decides it: tight on GloVe-50 (the bound order finds the neighbours early),
/// loose on a Gaussian mixture in 128 dimensions, where distances concentrate. Returns
/// the factor and its recall, or `None` without samples.
pub fn calibrate_rerank(
    manifest: &Manifest,
    segments: &[&Segment],
    input_rows: &[Vec<u32>],
    vectors: &Matrix,
    samples: &[(usize, Vec<u32>)],
) -> Option<(u32, f64)> {
    let samples = &samples[..samples.len().min(200)];
    if samples.is_empty() {
        return None;
    }
    let k = samples[0].1.len();
    let nprobe = manifest.meta.defaults.nprobe.max(1) as usize;
    let metric = manifest.meta.metric;
    // Each query's lists, planned once.
    let plans: Vec<Vec<(u32, Vec<u32>)>> = samples
        .par_iter()
        .map(|(q, _)| {
            let query = sample_query(vectors, *q, metric);
            plan(manifest, &query, None, k + 1, nprobe, Safety::Fixed(1.0)).partitions
        })
        .collect();
    let recall_at = |factor: u32| -> f64 {
        let found: usize = samples
            .par_iter()
            .zip(&plans)
            .map(|((q, truth), chosen)| {
                let query = sample_query(vectors, *q, metric);
                let query: &[f32] = &query;
                // k + 1: the query's own row is in the index and is not an answer.
                let p = PartitionParams {
                    k: k + 1,
                    rerank_factor: factor as usize,
                    hamming_keep: 1.0,
                };
                let shared = AtomicU32::new(f32::INFINITY.to_bits());
                let mut segs: Vec<&Segment> = Vec::new();
                let mut pids: Vec<usize> = Vec::new();
                let mut pool = Vec::new();
                for (pid, lists) in chosen {
                    let seg = segments[*pid as usize];
                    pids.push(*pid as usize);
                    let bounds = bound_segment(seg, query, None, None, lists, p, &shared);
                    let s = segs.len() as u32;
                    segs.push(seg);
                    pool.extend(bounds.rows.into_iter().map(|(lb, r)| (lb, s, r)));
                }
                // The budget alone, as the factor's first round has it (no floor).
                let hits = rerank(&segs, pool, query, None, p, f32::INFINITY).hits;
                // Hits name rows by segment and row (ids may be the user's own).
                hits.iter()
                    .map(|h| input_rows[pids[h.segment as usize]][h.row as usize])
                    .filter(|&row| row as usize != *q)
                    .take(k)
                    .filter(|row| truth.contains(row))
                    .count()
            })
            .sum();
        found as f64 / (samples.len() * k) as f64
    };
    let ceiling = recall_at(RERANK_FACTORS[RERANK_FACTORS.len() - 1]);
    for &f in &RERANK_FACTORS {
        let r = recall_at(f);
        if r >= (ceiling - RERANK_LOSS).min(RERANK_RECALL) {
            return Some((f, (r * 1e4).round() / 1e4));
        }
    }
    Some((RERANK_FACTORS[RERANK_FACTORS.len() - 1], ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up_to_three_significant_digits() {
        assert_eq!(round_up_3(37.21), 37.3);
        assert_eq!(round_up_3(1234.5), 1240.0);
        assert_eq!(round_up_3(0.5121), 0.513);
        assert_eq!(round_up_3(50.0), 50.0);
        assert_eq!(round_up_3(1203.6), 1210.0);
        // Exact decimals, not 12.100000000000001.
        assert_eq!(round_up_3(12.01), 12.1);
        assert_eq!(round_up_3(8.751), 8.76);
    }

    #[test]
    fn the_random_filter_has_its_selectivity() {
        let s = 0.08;
        let hits = (0..100_000u32).filter(|&r| passes(r, 7, s)).count();
        assert!((hits as f64 / 100_000.0 - s).abs() < 0.005, "{hits}");
    }
}
