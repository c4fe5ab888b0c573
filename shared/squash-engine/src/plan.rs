//! The planner: which fine lists a query searches. Lists are ranked by the distance from
//! the (globally rotated) query to their centroids; the planner takes at least `nprobe`
//! of them and, under a filter, keeps adding lists until the estimated number of
//! matching vectors (from each list's attribute code-presence bitmaps) reaches
//! `safety × k` (the filter-sufficiency rule). Lists that certainly hold no match are
//! skipped. The chosen lists are grouped by partition: a segment is fetched and cached
//! whole, and scanned only in the lists chosen from it.

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

/// Chooses lists for a prepared `query`.
pub fn plan(manifest: &Manifest, query: &[f32], filter: Option<&Expr>, k: usize, nprobe: usize, safety: f64) -> Plan {
    let yq = manifest.global.transform(query);
    let total = manifest.lists();
    let mut order: Vec<(f32, u32)> = (0..total)
        .map(|l| (l2sq(&yq, manifest.list_centroid(l)), l as u32))
        .collect();
    let cmp = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    // Sort only a prefix first: most queries stop within it.
    let prefix = nprobe.saturating_mul(2).max(64).min(order.len());
    if prefix < order.len() {
        order.select_nth_unstable_by(prefix, cmp);
    }
    order[..prefix].sort_unstable_by(cmp);
    let estimator = filter.map(|f| f.presence_estimator(&manifest.attr_cells));
    let target = safety * k as f64;
    let mut chosen: Vec<u32> = Vec::new();
    let mut estimated = 0.0;
    let mut i = 0;
    while i < order.len() {
        if i == prefix {
            order[prefix..].sort_unstable_by(cmp);
        }
        let l = order[i].1 as usize;
        i += 1;
        let count = manifest.list_counts[l] as f64;
        let est = match &estimator {
            None => count,
            Some(e) => count * e.fraction(manifest.presence(l)),
        };
        if est <= 0.0 {
            continue;
        }
        chosen.push(l as u32);
        estimated += est;
        if chosen.len() >= nprobe && estimated >= target {
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
