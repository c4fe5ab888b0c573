//! Compaction: every partition with deltas or deleted rows folded with its fine lists
//! clustered again ([`crate::fold`]), then garbage collected ([`crate::gc`]).

use crate::error::Result;
use crate::fold::{fold_where, CompactReport, Lists, PartitionClusterer};
use crate::gc::collect_garbage;
use crate::held::SegmentReader;
use squash_core::manifest::PartitionInfo;
use squash_engine::cache::SegmentCache;
use squash_storage::ObjectStore;
use std::sync::Arc;
use std::time::Duration;

/// Default grace period: objects a version younger than this names are kept (a reader
/// may still hold that version), and so is any object written within it (a writer may
/// be about to commit it).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// Compacts the index in `store`: every partition with deltas or deleted rows rebuilt
/// from its live rows, its fine lists clustered again by `cluster`, then what no version
/// younger than `grace` names removed. Safe beside readers (they hold their version)
/// and writers (a writer that commits first makes this compaction stage again; one
/// that commits after it re-applies its write on the compacted version).
pub fn compact(store: Arc<dyn ObjectStore>, grace: Duration, cluster: PartitionClusterer) -> Result<CompactReport> {
    let reader = SegmentReader::new(store.clone(), Arc::new(SegmentCache::new(1 << 30)));
    let dirty = |p: &PartitionInfo| !p.deltas.is_empty() || p.deleted > 0;
    let mut report = fold_where(&reader, store.as_ref(), &dirty, None, Lists::Cluster(cluster))?;
    collect_garbage(store.as_ref(), grace, &mut report)?;
    Ok(report)
}
