//! The planner: which partitions a query searches. Partitions are ranked by the
//! distance from the (globally rotated) query to their centroids; the planner takes
//! at least `nprobe` of them and, under a filter, keeps adding partitions until the
//! estimated number of matching vectors (from per-partition attribute histograms)
//! reaches `safety × k` (the filter-sufficiency rule). Partitions that certainly hold no
//! match are skipped.

use squash_core::distance::l2sq;
use squash_core::filter::Expr;
use squash_core::manifest::Manifest;

/// The partitions chosen for one query.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Partition ids, closest centroid first.
    pub partitions: Vec<u32>,
    /// Estimated matching vectors in them.
    pub estimated_matches: f64,
}

/// Chooses partitions for a prepared `query`.
pub fn plan(manifest: &Manifest, query: &[f32], filter: Option<&Expr>, k: usize, nprobe: usize, safety: f64) -> Plan {
    let yq = manifest.global.transform(query);
    let parts = manifest.partitions();
    let mut order: Vec<(f32, u32)> = (0..parts)
        .map(|p| (l2sq(&yq, manifest.centroid(p)), p as u32))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let attrs = manifest.meta.schema.len();
    let target = safety * k as f64;
    let mut chosen = Vec::new();
    let mut estimated = 0.0;
    for (_, p) in order {
        let count = manifest.meta.partitions[p as usize].count;
        let est = match filter {
            None => count as f64,
            Some(f) => {
                let hist: Vec<&[u32]> = (0..attrs).map(|a| manifest.histogram(p as usize, a)).collect();
                count as f64 * f.estimate_fraction(&manifest.attr_cells, &hist, count)
            }
        };
        if est <= 0.0 {
            continue;
        }
        chosen.push(p);
        estimated += est;
        if chosen.len() >= nprobe && estimated >= target {
            break;
        }
    }
    Plan {
        partitions: chosen,
        estimated_matches: estimated,
    }
}
