//! Exact (brute-force) filtered top-k, multi-threaded over queries. It uses the same
//! distance function and tie-break as the engine, so answers are comparable bit for bit
//! (for inner product it ranks by `-(q · x)` in f64 on the vectors as given).

use rayon::prelude::*;
use squash_build::io::{Attributes, Matrix};
use squash_build::progress::Progress;
use squash_core::distance::{exact_distance, true_distance, Metric};
use squash_core::filter::Expr;
use squash_core::topk::{Neighbor, TopK};
use std::sync::atomic::{AtomicU64, Ordering};

/// Exact top-k of one prepared query over prepared `base` vectors.
pub fn brute_force(
    base: &Matrix,
    metric: Metric,
    attrs: &Attributes,
    query: &[f32],
    filter: Option<&Expr>,
    k: usize,
) -> Vec<Neighbor> {
    let mut top = TopK::new(k);
    for i in 0..base.rows {
        if let Some(f) = filter {
            if !f.matches_row(&attrs.columns, &attrs.lists, i) {
                continue;
            }
        }
        top.push(Neighbor {
            id: i as u64,
            distance: match metric {
                // Vectors as given (not transformed): the inner product itself.
                Metric::Ip => true_distance(metric, query, base.row(i)) as f32,
                _ => exact_distance(metric, query, base.row(i)),
            },
        });
    }
    top.into_sorted()
}

/// Exact top-k for every query (`filters[i]` applies to query `i`; empty = no filters).
pub fn groundtruth(
    base: &Matrix,
    metric: Metric,
    attrs: &Attributes,
    queries: &Matrix,
    filters: &[Option<Expr>],
    k: usize,
    progress: bool,
) -> Vec<Vec<Neighbor>> {
    let bar = Progress::new(progress, "ground truth", queries.rows as u64);
    let done = AtomicU64::new(0);
    let out = (0..queries.rows)
        .into_par_iter()
        .map(|q| {
            let f = filters.get(q).and_then(|f| f.as_ref());
            let r = brute_force(base, metric, attrs, queries.row(q), f, k);
            done.fetch_add(1, Ordering::Relaxed);
            bar.inc(1);
            r
        })
        .collect();
    bar.finish();
    out
}

/// One JSON line of a ground-truth (or query) file: `{"ids": [...], "distances": [...]}`.
pub fn neighbors_to_json(list: &[Neighbor]) -> serde_json::Value {
    serde_json::json!({
        "ids": list.iter().map(|n| n.id).collect::<Vec<_>>(),
        "distances": list.iter().map(|n| n.distance).collect::<Vec<_>>(),
    })
}

/// Reads the `ids` of every line of a ground-truth file.
pub fn read_groundtruth(path: &std::path::Path) -> crate::error::Result<Vec<Vec<u64>>> {
    let lines = squash_build::io::read_json_lines(path)?;
    lines
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.get("ids")
                .and_then(|ids| ids.as_array())
                .map(|ids| ids.iter().filter_map(|x| x.as_u64()).collect())
                .ok_or_else(|| {
                    crate::error::BenchError::input(path.display(), format!("line {}: no \"ids\" array", i + 1))
                })
        })
        .collect()
}

/// recall@k of `found` against the exact answer `truth`: the share of the first
/// `min(k, |truth|)` true neighbours that were found (1 when there are none).
pub fn recall_at(found: &[u64], truth: &[u64], k: usize) -> f64 {
    let want = k.min(truth.len());
    if want == 0 {
        return 1.0;
    }
    let truth: std::collections::HashSet<u64> = truth[..want].iter().copied().collect();
    let hit = found.iter().take(k).filter(|id| truth.contains(id)).count();
    hit as f64 / want as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_counts_overlap() {
        assert_eq!(recall_at(&[1, 2, 3], &[3, 2, 9], 3), 2.0 / 3.0);
        assert_eq!(recall_at(&[], &[], 10), 1.0);
        assert_eq!(recall_at(&[5], &[5], 10), 1.0);
        assert_eq!(recall_at(&[1, 2], &[3, 4, 5], 2), 0.0);
    }
}
