//! Compaction with the fine lists clustered again: the write path's
//! [`squash_write::compact`] with the build's balanced k-means as its clusterer.

use crate::build::{fine_lists, BuildParams};
use crate::error::Result;
use squash_core::manifest::{Manifest, MANIFEST_KEY};
use squash_storage::ObjectStore;
use std::sync::Arc;
use std::time::Duration;

pub use squash_write::compact::DEFAULT_GRACE;
pub use squash_write::fold::CompactReport;

/// Compacts the index in `store` (every partition with deltas or deleted rows rebuilt
/// from its live rows, its fine lists clustered again at the index's average list size),
/// then removes what no version younger than `grace` names.
pub fn compact(store: Arc<dyn ObjectStore>, grace: Duration) -> Result<CompactReport> {
    let manifest = Manifest::decode(MANIFEST_KEY, &store.get(MANIFEST_KEY)?)?;
    let total_lists = manifest.lists().max(1);
    let base_rows: u64 = manifest.meta.partitions.iter().map(|p| p.base_count()).sum();
    let params = BuildParams {
        metric: manifest.meta.metric,
        list_vectors: ((base_rows as f64 / total_lists as f64).round() as usize).max(1),
        bits_per_dim: manifest.meta.bits_per_dim,
        seed: manifest.meta.seed,
        ..BuildParams::default()
    };
    let cluster =
        |pid: u32, rotated: &[f32], dim: usize, energies: &[f32]| fine_lists(rotated, dim, energies, pid, &params);
    Ok(squash_write::compact(store, grace, &cluster)?)
}
