//! The planner: which fine lists a query searches. Lists are ranked by the distance from
//! the (globally rotated) query to their centroids; the planner takes at least `nprobe`
//! of them and, under a filter, keeps adding lists until the estimated number of
//! matching vectors (counted from each list's attribute code counts, or estimated from
//! its code-presence bitmaps in an index without them) reaches
//! `safety × k` (the filter-sufficiency rule). The factor is either fixed or, for a
//! calibrated index, read off the index's safety curve at the filter's selectivity as
//! estimated in the `nprobe` nearest lists (a sparser filter needs more vectors scanned,
//! but far fewer than in proportion). A clustered filter (its matches fill some lists
//! and miss the rest: a region, not a property rows share evenly) that is sparser in
//! those nearest lists than in the index has its answers on the near face of a region
//! away from the query, where list order ranks rows poorly: for it the planner collects
//! at least the share of all its matches that the build measured for such filters
//! (`SearchDefaults::far_share`). Lists that certainly hold no match are skipped.
//! The chosen lists are grouped by partition: a segment is fetched and cached whole, and
//! scanned only in the lists chosen from it.

use squash_core::distance::l2sq;
use squash_core::filter::Expr;
use squash_core::manifest::Manifest;

/// The lists chosen for one query, grouped by partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Partitions to search (in the order their first list was chosen), each with the
    /// numbers of its chosen lists inside its segment, ascending.
    pub partitions: Vec<(u32, Vec<u32>)>,
    /// Lists chosen in all.
    pub lists: usize,
    /// Estimated matching vectors in them.
    pub estimated_matches: f64,
}

/// The factor of the filter-sufficiency rule.
#[derive(Debug, Clone, Copy)]
pub enum Safety<'a> {
    /// The same factor at every selectivity.
    Fixed(f64),
    /// `points`: `(selectivity, factor)` measured at build time, ascending in
    /// selectivity (`SearchDefaults::safety_curve`); `far`: the share of a clustered
    /// filter's matches to collect, by how much sparser it is near the query than in
    /// the index (`SearchDefaults::far_share`, may be empty; see [`far_share_at`]).
    Curve {
        /// The safety curve.
        points: &'a [(f64, f64)],
        /// The far-filter shares, `(edge, share)`.
        far: &'a [(f64, f64)],
    },
}

impl Safety<'_> {
    /// The factor for a filter of estimated selectivity `s`. Between two points of a
    /// curve, the vectors to scan (`factor / s`) are interpolated linearly in log-log
    /// space; below the first point the first segment's slope goes on; above the last
    /// point the vectors to scan stay at the last point's (a denser filter never needs
    /// more). A selectivity under a tenth of the first point counts as that tenth.
    pub fn at(&self, s: f64) -> f64 {
        let points = match self {
            Safety::Fixed(f) => return *f,
            Safety::Curve { points, .. } => *points,
        };
        let Some(&(s0, f0)) = points.first() else {
            return 1.0;
        };
        let s = if s.is_finite() { s.clamp(s0 / 10.0, 1.0) } else { s0 };
        // Work in (ln s, ln(vectors to scan)).
        let at = |i: usize| (points[i].0.ln(), (points[i].1 / points[i].0).ln());
        let x = s.ln();
        let n = points.len();
        let g = if n == 1 {
            (f0 / s0).ln()
        } else if s >= points[n - 1].0 {
            at(n - 1).1
        } else {
            let i = points.partition_point(|p| p.0 <= s).clamp(1, n - 1);
            let (x0, y0) = at(i - 1);
            let (x1, y1) = at(i);
            y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        };
        g.exp() * s
    }
}

/// The share of a clustered filter's matches to collect when its matches are `sparser`
/// times as dense in the nearest lists as in the index: the share of the first point of
/// `far` (`(upper edge, share)`, edges ascending) whose edge is above `sparser`; 0 past
/// the last edge.
pub fn far_share_at(far: &[(f64, f64)], sparser: f64) -> f64 {
    far.iter().find(|p| sparser < p.0).map_or(0.0, |p| p.1)
}

/// A filter whose matches pair up in lists this many times as often as they would if
/// spread evenly is clustered (a region of the space, not a property every region has).
pub const CLUSTERED: f64 = 4.0;

/// Lists the planner reads to estimate a filter's global selectivity and clustering
/// (evenly spaced when the index has more).
pub const SAMPLED_LISTS: usize = 1024;

/// A filter's matches over the index, from up to [`SAMPLED_LISTS`] lists' `estimate`s
/// (`(rows, matches)` of list `l`): `(rows, matches, clustering)`, where clustering is
/// how much more often two matches share a list than if they were spread evenly (1
/// for an even spread, whatever the selectivity; the share of a list its matches fill
/// over the global selectivity for a region).
fn spread(lists: usize, estimate: impl Fn(usize) -> (f64, f64)) -> (f64, f64, f64) {
    let step = lists.div_ceil(SAMPLED_LISTS).max(1);
    let (mut rows, mut matches, mut pairs) = (0.0, 0.0, 0.0);
    for l in (0..lists).step_by(step) {
        let (n, m) = estimate(l);
        rows += n;
        matches += m;
        if n > 0.0 && m > 1.0 {
            pairs += m * (m - 1.0) / n;
        }
    }
    let scale = lists as f64 / lists.div_ceil(step).max(1) as f64;
    let clustering = if matches > 0.0 && rows > 0.0 {
        pairs / (matches * matches / rows)
    } else {
        1.0
    };
    (rows * scale, matches * scale, clustering)
}

/// Chooses lists for a prepared `query`.
pub fn plan(
    manifest: &Manifest,
    query: &[f32],
    filter: Option<&Expr>,
    k: usize,
    nprobe: usize,
    safety: Safety,
) -> Plan {
    let yq = manifest.global.transform(query);
    let calibrated_k = manifest.meta.defaults.calibration.as_ref().map_or(10, |c| c.k as usize);
    let estimator = filter.map(|f| {
        f.presence_estimator_counted(
            &manifest.attr_cells,
            &manifest.meta.schema,
            &manifest.values,
            manifest.list_code_counts.as_ref(),
        )
    });
    let mut target = match safety {
        Safety::Fixed(f) => f * k as f64,
        // Without a filter `nprobe` alone decides (the curve's point at selectivity 1 is
        // the calibrated `nprobe`; a smaller one asked for is honoured), with at least k
        // vectors, up to the k calibrated for. A larger k searches that many more
        // vectors: the top k spread over as many more lists.
        Safety::Curve { .. } if estimator.is_none() => {
            if k > calibrated_k {
                safety.at(1.0) * k as f64
            } else {
                0.0
            }
        }
        // Set once the nearest `nprobe` lists have given a selectivity estimate.
        Safety::Curve { .. } => f64::INFINITY,
    };
    // A filter decided by a value index (`tenant = x`) names exactly the lists that can
    // hold a match and how many rows do. When those lists together are no larger than
    // what the curve scans at its sparsest point, all of them are searched (every
    // match is seen); otherwise the curve's factor is read at the exact selectivity.
    let mut exact_target = false;
    // In the exhaustive case only the lists holding a match are ranked.
    let mut only: Option<Vec<u32>> = None;
    if let (Some(rows), Safety::Curve { points, .. }) = (estimator.as_ref().and_then(|e| e.exact_lists()), safety) {
        let in_lists: f64 = rows.iter().map(|&(l, _)| manifest.list_counts[l as usize] as f64).sum();
        let matches: f64 = rows.iter().map(|&(_, n)| n as f64).sum();
        let budget = points.first().map_or(0.0, |&(s0, f0)| f0 / s0 * k as f64);
        exact_target = true;
        target = if in_lists <= budget {
            only = Some(rows.iter().map(|&(l, _)| l).collect());
            f64::INFINITY
        } else {
            safety.at(matches / (manifest.meta.count.max(1) as f64)) * k as f64
        };
    }
    let mut order: Vec<(f32, u32)> = match only {
        Some(lists) => lists
            .into_iter()
            .map(|l| (l2sq(&yq, manifest.list_centroid(l as usize)), l))
            .collect(),
        None => (0..manifest.lists())
            .map(|l| (l2sq(&yq, manifest.list_centroid(l)), l as u32))
            .collect(),
    };
    let cmp = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    // Sort only a prefix first: most queries stop within it.
    let prefix = nprobe.saturating_mul(2).max(64).min(order.len());
    if prefix < order.len() {
        order.select_nth_unstable_by(prefix, cmp);
    }
    order[..prefix].sort_unstable_by(cmp);
    let live_share: Vec<f64> = manifest
        .meta
        .partitions
        .iter()
        .map(|p| {
            if p.count == 0 {
                0.0
            } else {
                p.live() as f64 / p.count as f64
            }
        })
        .collect();
    // A list's live rows (rows deleted by writes count out, spread evenly over the
    // partition's lists) and its estimated matches.
    let estimate = |l: usize| -> (f64, f64) {
        let count = manifest.list_counts[l] as f64 * live_share[manifest.list_home(l).0 as usize];
        let est = match &estimator {
            None => count,
            Some(e) => {
                count
                    * e.fraction_counted(
                        l,
                        manifest.list_counts[l] as f64,
                        manifest.presence(l),
                        manifest.list_code_counts.as_ref(),
                    )
            }
        };
        (count, est)
    };
    let (mut near_rows, mut near_matches) = (0.0, 0.0);
    let mut chosen: Vec<u32> = Vec::new();
    let mut estimated = 0.0;
    let mut i = 0;
    while i < order.len() {
        if i == prefix {
            order[prefix..].sort_unstable_by(cmp);
        }
        let l = order[i].1 as usize;
        i += 1;
        let (count, est) = estimate(l);
        if i <= nprobe {
            near_rows += count;
            near_matches += est;
            if i == nprobe || i == order.len() {
                if let (Safety::Curve { far, .. }, Some(_), false) = (safety, &estimator, exact_target) {
                    let s = if near_rows > 0.0 { near_matches / near_rows } else { 0.0 };
                    target = safety.at(s) * k as f64;
                    // A clustered filter whose matches are sparser near the query than in
                    // the index: its answers lie on the near face of a region away from
                    // the query, where list order ranks rows poorly; collect the share of
                    // its matches calibrated for such filters.
                    if !far.is_empty() {
                        let (rows, matches, clustering) = spread(manifest.lists(), estimate);
                        if rows > 0.0 && matches > 0.0 && clustering >= CLUSTERED {
                            let sparser = s / (matches / rows);
                            target = target.max(far_share_at(far, sparser) * matches);
                        }
                    }
                }
            }
        }
        if est <= 0.0 {
            continue;
        }
        chosen.push(l as u32);
        estimated += est;
        // Never stop before k estimated matches: a query may ask for more than the
        // nprobe lists hold.
        if chosen.len() >= nprobe && estimated >= target.max(k as f64) {
            break;
        }
    }
    let mut partitions: Vec<(u32, Vec<u32>)> = Vec::new();
    let mut slot = vec![usize::MAX; manifest.partitions()];
    for &l in &chosen {
        let (p, local) = manifest.list_home(l as usize);
        let s = &mut slot[p as usize];
        if *s == usize::MAX {
            *s = partitions.len();
            partitions.push((p, Vec::new()));
        }
        partitions[*s].1.push(local);
    }
    for (_, lists) in &mut partitions {
        lists.sort_unstable();
    }
    Plan {
        partitions,
        lists: chosen.len(),
        estimated_matches: estimated,
    }
}

#[cfg(test)]
mod tests {
    use super::{far_share_at, spread, Safety, SAMPLED_LISTS};

    #[test]
    fn a_fixed_safety_is_the_same_at_every_selectivity() {
        for s in [0.0, 1e-4, 0.01, 1.0] {
            assert_eq!(Safety::Fixed(500.0).at(s), 500.0);
        }
    }

    #[test]
    fn the_safety_curve_interpolates_vectors_to_scan_in_log_log_space() {
        let curve = [(0.001, 20.0), (0.01, 120.0), (0.08, 640.0)];
        let c = Safety::Curve {
            points: &curve,
            far: &[],
        };
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        for &(s, f) in &curve {
            assert!(close(c.at(s), f), "{s}: {} != {f}", c.at(s));
        }
        // Vectors to scan (factor / s) are monotone: more for sparser filters.
        let scan = |s: f64| c.at(s) / s;
        let mut last = f64::INFINITY;
        for s in [0.0005, 0.001, 0.003, 0.01, 0.03, 0.08, 0.2, 1.0] {
            assert!(scan(s) <= last * (1.0 + 1e-12), "{s}");
            last = scan(s);
        }
        // Geometric midpoint between two points: the geometric mean of their scans.
        let mid = (0.01f64 * 0.08).sqrt();
        assert!(close(scan(mid), (12_000.0f64 * 8_000.0).sqrt()));
        // Above the last point the scan stays at the last point's.
        assert!(close(scan(0.5), 8_000.0));
        // Zero, NaN and tiny estimates are clamped, never 0 or NaN.
        for s in [0.0, f64::NAN, 1e-9] {
            assert!(c.at(s).is_finite() && c.at(s) > 0.0);
        }
        assert_eq!(Safety::Curve { points: &[], far: &[] }.at(0.5), 1.0);
    }

    #[test]
    fn the_far_share_is_read_off_the_bucket_holding_the_ratio() {
        let far = [(0.125, 0.6), (0.5, 0.4), (1.0, 0.2)];
        assert_eq!(far_share_at(&far, 0.0), 0.6);
        assert_eq!(far_share_at(&far, 0.124), 0.6);
        assert_eq!(far_share_at(&far, 0.125), 0.4);
        assert_eq!(far_share_at(&far, 0.9), 0.2);
        // As dense near the query as in the index, or denser: no far rule.
        assert_eq!(far_share_at(&far, 1.0), 0.0);
        assert_eq!(far_share_at(&far, 7.0), 0.0);
        assert_eq!(far_share_at(&[], 0.0), 0.0);
    }

    #[test]
    fn an_even_spread_is_not_clustered_and_a_region_is() {
        // 1,000 lists of 250 rows. Evenly spread matches: 1 % of every list (2.5 rows),
        // and a sparse 0.1 % (a row in every fourth list): clustering about 1 however
        // sparse. A region: 2,500 matches filling 10 lists.
        let even = |l: usize| (250.0, if l.is_multiple_of(2) { 2.0 } else { 3.0 });
        let (rows, matches, c) = spread(1000, even);
        assert_eq!((rows, matches), (250_000.0, 2_500.0));
        assert!((0.5..1.5).contains(&c), "{c}");
        let sparse = |l: usize| (250.0, if l.is_multiple_of(4) { 1.0 } else { 0.0 });
        assert!(spread(1000, sparse).2 < 1.0);
        let region = |l: usize| (250.0, if l < 10 { 250.0 } else { 0.0 });
        let (_, matches, c) = spread(1000, region);
        assert_eq!(matches, 2_500.0);
        assert!(c > 50.0, "{c}");
        // Beyond SAMPLED_LISTS lists, a sample scaled to the whole.
        let lists = SAMPLED_LISTS * 3;
        let (rows, matches, c) = spread(lists, even);
        assert!((rows - 250.0 * lists as f64).abs() < 1.0, "{rows}");
        assert!((matches / rows - 0.01).abs() < 0.002, "{matches}");
        assert!((0.5..1.5).contains(&c), "{c}");
    }
}
