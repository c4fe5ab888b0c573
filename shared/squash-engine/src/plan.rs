//! The planner: which fine lists a query searches. Lists are ranked by the distance from
//! the (globally rotated) query to their centroids; the planner takes at least `nprobe`
//! of them and, under a filter, keeps adding lists until the estimated number of
//! matching vectors (counted from each list's attribute code counts, or estimated from
//! its code-presence bitmaps in an index without them) reaches
//! `safety × k` (the filter-sufficiency rule). The factor is either fixed or, for a
//! calibrated index, read off the index's safety curve at the filter's selectivity as
//! estimated in the `nprobe` nearest lists (a sparser filter needs more vectors scanned,
//! but far fewer than in proportion). Lists that certainly hold no match are skipped.
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
    /// `(selectivity, factor)` points measured at build time, ascending in selectivity
    /// (`SearchDefaults::safety_curve`).
    Curve(&'a [(f64, f64)]),
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
            Safety::Curve(points) => *points,
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
        Safety::Curve(_) if estimator.is_none() => {
            if k > calibrated_k {
                safety.at(1.0) * k as f64
            } else {
                0.0
            }
        }
        // Set once the nearest `nprobe` lists have given a selectivity estimate.
        Safety::Curve(_) => f64::INFINITY,
    };
    // A filter decided by a value index (`tenant = x`) names exactly the lists that can
    // hold a match and how many rows do. When those lists together are no larger than
    // what the curve scans at its sparsest point, all of them are searched (every
    // match is seen); otherwise the curve's factor is read at the exact selectivity.
    let mut exact_target = false;
    // In the exhaustive case only the lists holding a match are ranked.
    let mut only: Option<Vec<u32>> = None;
    if let (Some(rows), Safety::Curve(points)) = (estimator.as_ref().and_then(|e| e.exact_lists()), safety) {
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
        // Rows deleted by writes count out, spread evenly over the partition's lists.
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
        if i <= nprobe {
            near_rows += count;
            near_matches += est;
            if i == nprobe || i == order.len() {
                if let (Safety::Curve(_), Some(_), false) = (safety, &estimator, exact_target) {
                    let s = if near_rows > 0.0 { near_matches / near_rows } else { 0.0 };
                    target = safety.at(s) * k as f64;
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
    use super::Safety;

    #[test]
    fn a_fixed_safety_is_the_same_at_every_selectivity() {
        for s in [0.0, 1e-4, 0.01, 1.0] {
            assert_eq!(Safety::Fixed(500.0).at(s), 500.0);
        }
    }

    #[test]
    fn the_safety_curve_interpolates_vectors_to_scan_in_log_log_space() {
        let curve = [(0.001, 20.0), (0.01, 120.0), (0.08, 640.0)];
        let c = Safety::Curve(&curve);
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
        assert_eq!(Safety::Curve(&[]).at(0.5), 1.0);
    }
}
