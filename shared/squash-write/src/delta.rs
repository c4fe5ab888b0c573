//! Delta segments: the new rows of one partition placed in its nearest fine lists and
//! coded with the partition's own KLT and quantiser (outer boundaries widened to hold
//! them, so every bound stays a lower bound).

use crate::upsert::Prepared;
use squash_core::attrs::ListColumn;
use squash_core::binary::{encode_signs, words_for};
use squash_core::distance::l2sq;
use squash_core::manifest::Manifest;
use squash_core::segment::{Segment, SegmentMeta, SegmentParts};

/// The nearest fine list of each vector, in the global KLT space the planner ranks
/// lists in (so that a query near the vector searches its list first).
pub(crate) fn assign_lists(manifest: &Manifest, vectors: &[f32], dim: usize) -> Vec<u32> {
    use rayon::prelude::*;
    vectors
        .par_chunks_exact(dim)
        .map(|v| {
            let y = manifest.global.transform(v);
            (0..manifest.lists())
                .map(|l| (l2sq(&y, manifest.list_centroid(l)), l as u32))
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
                .map_or(0, |x| x.1)
        })
        .collect()
}

/// The delta segment of partition `pid` holding `members` (`(row of the upsert, list
/// inside the partition)`), coded with the base segment's KLT and quantiser (the outer
/// boundaries widened so every bound stays a lower bound) and the index's cells.
pub(crate) fn delta_parts(
    base: &Segment,
    pid: u32,
    members: &[(usize, u32)],
    rows: &Prepared,
    metric: squash_core::distance::Metric,
) -> SegmentParts {
    let dim = rows.dim;
    let lists = base.list_count();
    let mut order: Vec<(usize, u32)> = members.to_vec();
    order.sort_by_key(|&(i, l)| (l, i));
    let m = order.len();
    let klt = base.klt().clone();
    let mut rotated = vec![0f32; m * dim];
    let mut scratch = vec![0f32; dim];
    for (&(i, _), out) in order.iter().zip(rotated.chunks_exact_mut(dim)) {
        klt.apply(&rows.vectors[i * dim..(i + 1) * dim], &mut scratch, out);
    }
    let mut quantizer = base.quantizer().clone();
    for (j, b) in quantizer.bounds.iter_mut().enumerate() {
        let last = b.len() - 1;
        for y in rotated.chunks_exact(dim) {
            b[0] = b[0].min(y[j]);
            b[last] = b[last].max(y[j]);
        }
    }
    let width = quantizer.bits.iter().filter(|&&b| b > 0).count();
    let words = words_for(dim);
    let mut codes = vec![0u8; m * width];
    let mut signs = vec![0u64; m * words];
    for (r, y) in rotated.chunks_exact(dim).enumerate() {
        quantizer.encode(y, &mut codes[r * width..(r + 1) * width]);
        encode_signs(y, &mut signs[r * words..(r + 1) * words]);
    }
    let mut offsets = vec![0u32; lists + 1];
    for &(_, l) in &order {
        offsets[l as usize + 1] += 1;
    }
    for l in 0..lists {
        offsets[l + 1] += offsets[l];
    }
    let attr_values: Vec<Vec<f64>> = rows
        .values
        .iter()
        .map(|col| order.iter().map(|&(i, _)| col[i]).collect())
        .collect();
    let attr_lists: Vec<Option<ListColumn>> = rows
        .lists
        .iter()
        .map(|l| l.as_ref().map(|l| l.select(order.iter().map(|&(i, _)| i))))
        .collect();
    let attr_codes = rows
        .cells
        .iter()
        .enumerate()
        .map(|(a, cells)| {
            order
                .iter()
                .map(|&(i, _)| cells.encode_value(rows.value(a, i)))
                .collect()
        })
        .collect();
    let mut vectors = Vec::with_capacity(m * dim);
    for &(i, _) in &order {
        vectors.extend_from_slice(&rows.vectors[i * dim..(i + 1) * dim]);
    }
    SegmentParts {
        meta: SegmentMeta {
            partition: pid,
            count: m as u64,
            dim: dim as u32,
            metric,
            attrs: rows.values.len() as u32,
        },
        klt,
        quantizer,
        codes,
        signs,
        attr_cells: (*rows.cells).clone(),
        attr_codes,
        ids: order.iter().map(|&(i, _)| rows.keys[i]).collect(),
        names: match &rows.names {
            Some(n) => order.iter().map(|&(i, _)| n[i].clone()).collect(),
            None => Vec::new(),
        },
        attr_values,
        attr_lists,
        vectors,
        lists: offsets,
    }
}
