//! The `updates` benchmark's index: a workload's base vectors reached through writes.
//!
//! From a prepared workload, build an index of the base minus a held-back share (`held`)
//! plus as many decoys (copies of other base rows with a little noise, ids past the
//! base), then upsert the held-back rows (ids = their row numbers, with their
//! attributes) and delete the decoys. The live vectors are then exactly the workload's
//! base, so its ground truth holds, and the fresh build of the same data is the
//! workload's own index: recall and QPS compare one to one.

use crate::error::{BenchError, Result};
use crate::workload::Workload;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use squash_build::build::{build_index_with_ids, BuildParams};
use squash_build::io::{read_vectors, Attributes, Matrix};
use squash_storage::ObjectStore;
use squash_write::{Delete, Ids, Upsert, Writer};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// What building and writing the `updates` index took.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnReport {
    /// Base vectors of the workload.
    pub base: usize,
    /// Rows held back from the build and upserted.
    pub upserted: usize,
    /// Decoys built in and deleted.
    pub deleted: usize,
    /// Vectors per upsert call (one version each).
    pub batch: usize,
    /// Seconds of the initial build.
    pub build_s: f64,
    /// Upserted vectors per second (in-process writer, as `squash upsert`).
    pub upsert_per_s: f64,
    /// Deleted ids per second (one call).
    pub delete_per_s: f64,
    /// Commits refused and retried.
    pub retries: u32,
    /// Partitions folded by the upserts (a partition may fold more than once).
    pub folded_by_upserts: u64,
    /// Partitions folded by the delete.
    pub folded_by_delete: u64,
    /// Manifest version at the end.
    pub version: u64,
    /// Live vectors at the end (the workload's base).
    pub count: u64,
}

fn rows_of(m: &Matrix, rows: &[usize]) -> Matrix {
    let mut data = Vec::with_capacity(rows.len() * m.cols);
    for &r in rows {
        data.extend_from_slice(m.row(r));
    }
    Matrix {
        rows: rows.len(),
        cols: m.cols,
        data,
    }
}

fn attrs_of(a: &Attributes, rows: &[usize]) -> Attributes {
    a.select(rows)
}

/// Builds the `updates` index of the workload in `data` into `store` (see the module
/// documentation): `share` of the base held back and upserted in calls of `batch`, as
/// many decoys built in and deleted.
pub fn churn(data: &Path, store: Arc<dyn ObjectStore>, share: f64, batch: usize, seed: u64) -> Result<ChurnReport> {
    if !(share > 0.0 && share < 0.5) || batch == 0 {
        return Err(BenchError::bad(
            "share",
            "must be in (0, 0.5), with a batch of at least 1",
        ));
    }
    let w = Workload::load(data)?;
    let base = read_vectors(&data.join(&w.base))?;
    let attrs = w.attributes(data)?;
    let n = base.rows;
    let m = ((n as f64 * share).round() as usize).max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut held = sample(&mut rng, n, m).into_vec();
    held.sort_unstable();
    let is_held = {
        let mut v = vec![false; n];
        held.iter().for_each(|&r| v[r] = true);
        v
    };
    let kept: Vec<usize> = (0..n).filter(|&r| !is_held[r]).collect();
    // Decoys: copies of kept rows, each coordinate moved by a tenth of the dimension's spread.
    let sources: Vec<usize> = (0..m).map(|_| kept[rng.gen_range(0..kept.len())]).collect();
    let dim = base.cols;
    let mut spread = vec![0f64; dim];
    for r in (0..n).step_by((n / 10_000).max(1)) {
        for (s, &x) in spread.iter_mut().zip(base.row(r)) {
            *s += (x as f64).powi(2);
        }
    }
    let samples = n.div_ceil((n / 10_000).max(1)) as f64;
    let spread: Vec<f32> = spread.iter().map(|&s| ((s / samples).sqrt() * 0.1) as f32).collect();
    let mut decoys = rows_of(&base, &sources);
    for row in decoys.data.chunks_exact_mut(dim) {
        for (x, &s) in row.iter_mut().zip(&spread) {
            *x += s * (rng.gen::<f32>() * 2.0 - 1.0);
        }
    }
    let mut built = rows_of(&base, &kept);
    built.data.extend_from_slice(&decoys.data);
    built.rows += m;
    let mut built_attrs = attrs_of(&attrs, &kept);
    for (col, src) in built_attrs.columns.iter_mut().zip(&attrs.columns) {
        col.extend(sources.iter().map(|&r| src[r]));
    }
    let ids: Vec<u64> = kept
        .iter()
        .map(|&r| r as u64)
        .chain((0..m).map(|j| (n + j) as u64))
        .collect();
    let params = BuildParams {
        metric: w.metric,
        ..BuildParams::default()
    };
    let t0 = Instant::now();
    build_index_with_ids(store.as_ref(), built, built_attrs, &Ids::U64(ids), &params)?;
    let build_s = t0.elapsed().as_secs_f64();
    let writer = Writer::new(store.clone());
    let t0 = Instant::now();
    let mut retries = 0;
    let mut folded_by_upserts = 0;
    for chunk in held.chunks(batch) {
        let r = writer.upsert(&Upsert {
            ids: Ids::U64(chunk.iter().map(|&r| r as u64).collect()),
            vectors: rows_of(&base, chunk),
            attrs: attrs_of(&attrs, chunk),
        })?;
        retries += r.retries;
        folded_by_upserts += r.folded;
        if let Some(e) = r.fold_error {
            return Err(BenchError::bad("fold", e));
        }
    }
    let upsert_s = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let r = writer.delete(&Delete::Ids(Ids::U64((0..m).map(|j| (n + j) as u64).collect())))?;
    let delete_s = t0.elapsed().as_secs_f64();
    if let Some(e) = &r.fold_error {
        return Err(BenchError::bad("fold", e.clone()));
    }
    Ok(ChurnReport {
        base: n,
        upserted: m,
        deleted: r.deleted as usize,
        batch,
        build_s,
        upsert_per_s: m as f64 / upsert_s.max(1e-9),
        delete_per_s: m as f64 / delete_s.max(1e-9),
        retries: retries + r.retries,
        folded_by_upserts,
        folded_by_delete: r.folded,
        version: r.version,
        count: r.count,
    })
}
