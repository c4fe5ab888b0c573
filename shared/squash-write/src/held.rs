//! The segments of an index as a write or a fold reads them: every base and delta
//! segment of the partitions wanted, verified against the manifest and kept in a cache by
//! key, with their deleted rows (decoded deletion sets, kept by key too).

use crate::error::{Result, WriteError};
use squash_core::deletes::decode_deletes;
use squash_core::manifest::{DeletesInfo, Manifest};
use squash_core::naming::Naming;
use squash_core::segment::Segment;
use squash_engine::cache::SegmentCache;
use squash_storage::ObjectStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A segment of the manifest to hold: partition, place, key, size, checksum, deletions.
type Wanted<'a> = (u32, usize, &'a str, u64, &'a str, Option<&'a DeletesInfo>);

/// A segment of the index as a write sees it: which partition, its place (0 = base,
/// `1 + i` = delta `i`), the segment and its deleted rows.
pub(crate) struct Held {
    pub(crate) partition: u32,
    pub(crate) place: usize,
    pub(crate) segment: Arc<Segment>,
    pub(crate) dead: Arc<Vec<u32>>,
}

/// Reads the segments of an index for writes and folds, keeping them by their immutable
/// keys for the next one.
pub(crate) struct SegmentReader {
    store: Arc<dyn ObjectStore>,
    cache: Arc<SegmentCache>,
    deletes: Mutex<HashMap<String, Arc<Vec<u32>>>>,
}

impl SegmentReader {
    /// A reader of the index in `store` keeping segments in `cache`.
    pub(crate) fn new(store: Arc<dyn ObjectStore>, cache: Arc<SegmentCache>) -> SegmentReader {
        SegmentReader {
            store,
            cache,
            deletes: Mutex::new(HashMap::new()),
        }
    }

    /// Every segment of the index (base and deltas) with its deleted rows.
    pub(crate) fn held_segments(&self, manifest: &Manifest) -> Result<Vec<Held>> {
        self.held_segments_of(manifest, &|_| true)
    }

    /// The segments (base and deltas) of the partitions `wanted_partition` accepts, with
    /// their deleted rows.
    pub(crate) fn held_segments_of(
        &self,
        manifest: &Manifest,
        wanted_partition: &dyn Fn(u32) -> bool,
    ) -> Result<Vec<Held>> {
        let mut wanted: Vec<Wanted> = Vec::new();
        for p in manifest.meta.partitions.iter().filter(|p| wanted_partition(p.id)) {
            wanted.push((p.id, 0, &p.key, p.bytes, &p.checksum, p.deletes.as_ref()));
            for (i, d) in p.deltas.iter().enumerate() {
                wanted.push((p.id, i + 1, &d.key, d.bytes, &d.checksum, d.deletes.as_ref()));
            }
        }
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|w| self.cache.get(w.2).is_none_or(|s| s.is_partial()))
            .map(|w| w.2)
            .collect();
        let fetched: HashMap<&str, _> = missing
            .iter()
            .copied()
            .zip(self.store.get_many_shared(&missing))
            .collect();
        let mut out = Vec::with_capacity(wanted.len());
        let mut fetched = fetched;
        for (partition, place, key, bytes, checksum, deletes) in wanted {
            let segment = match fetched.remove(key) {
                None => self
                    .cache
                    .get(key)
                    .ok_or_else(|| WriteError::bad("segments", format!("segment '{key}' was not read")))?,
                Some(blob) => {
                    let blob = blob?;
                    Naming::verify(key, &blob.bytes, bytes, checksum)?;
                    let seg = Arc::new(Segment::decode_verified(key, blob.bytes.clone())?);
                    let charge = seg.decoded_bytes() + if blob.mapped { 0 } else { bytes };
                    self.cache.insert(key, seg.clone(), charge);
                    seg
                }
            };
            let dead = match deletes {
                None => Arc::new(Vec::new()),
                Some(d) => self.deletion_set(d, segment.len() as u64)?,
            };
            out.push(Held {
                partition,
                place,
                segment,
                dead,
            });
        }
        Ok(out)
    }

    fn deletion_set(&self, d: &DeletesInfo, total: u64) -> Result<Arc<Vec<u32>>> {
        if let Some(rows) = self.deletes.lock().unwrap_or_else(|p| p.into_inner()).get(&d.key) {
            return Ok(rows.clone());
        }
        let bytes = self.store.get(&d.key)?;
        Naming::verify(&d.key, &bytes, d.bytes, &d.checksum)?;
        let rows = Arc::new(decode_deletes(&d.key, &bytes, total)?);
        self.deletes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(d.key.clone(), rows.clone());
        Ok(rows)
    }
}
