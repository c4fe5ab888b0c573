//! Compaction: folds each partition's delta segments and deletions back into one
//! rebuilt segment (its own KLT, quantiser and fine lists fitted again on its live
//! rows), committed as a new manifest version; then removes the objects that no
//! version younger than a grace period names.
//!
//! The partitions themselves (which rows go where) and the global KLT stay: a new row
//! was placed in its nearest list when it was written. Search defaults stay as the
//! build measured them.

use crate::build::{encode_partition, BuildParams};
use crate::error::{BuildError, Result};
use crate::ids::Ids;
use crate::io::{Attributes, Matrix};
use crate::write::{Writer, VERSIONS_PREFIX};
use squash_core::attrs::ListColumn;
use squash_core::manifest::{IdKind, Manifest, PartitionInfo, MANIFEST_KEY};
use squash_storage::{ObjectStore, Precondition, StorageError};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

/// Default grace period: objects a version younger than this names are kept (a reader
/// may still hold that version), and so is any object written within it (a writer may
/// be about to commit it).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CompactReport {
    /// The version committed (the one read when nothing needed folding).
    pub version: u64,
    /// Partitions rebuilt.
    pub partitions: u64,
    /// Delta segments folded in.
    pub deltas: u64,
    /// Deleted rows dropped.
    pub dropped: u64,
    /// Live vectors.
    pub count: u64,
    /// Objects removed (no version within the grace period names them).
    pub removed: u64,
    /// Bytes of the objects removed.
    pub removed_bytes: u64,
    /// Unreferenced objects kept because they are younger than the grace period.
    pub kept_young: u64,
}

/// Compacts the index in `store` (see the module documentation), then removes what no
/// version younger than `grace` names. Safe beside readers (they hold their version)
/// and writers (a writer that commits first makes this compaction start over; one that
/// commits after it re-applies its write on the compacted version).
pub fn compact(store: Arc<dyn ObjectStore>, grace: Duration) -> Result<CompactReport> {
    let writer = Writer::new(store.clone());
    let dirty = |p: &PartitionInfo| !p.deltas.is_empty() || p.deleted > 0;
    let mut report = fold_where(&writer, store.as_ref(), &dirty, None, Lists::Refit)?;
    collect_garbage(store.as_ref(), grace, &mut report)?;
    Ok(report)
}

/// Whether a write leaves partition `p` churned enough to fold (see
/// [`Writer::with_fold_share`]): its rows in deltas plus its deleted rows reach `share`
/// of its base rows and at least [`FOLD_MIN_ROWS`], and it has a live row left.
pub fn needs_fold(p: &PartitionInfo, share: f64) -> bool {
    let churned = churned_rows(p);
    p.live() > 0 && churned >= FOLD_MIN_ROWS && churned as f64 >= share * p.base_count() as f64
}

/// A partition's rows in deltas plus its deleted rows.
fn churned_rows(p: &PartitionInfo) -> u64 {
    p.count - p.base_count() + p.deleted
}

/// Fewest churned rows (in deltas or deleted) a write folds a partition for: below it
/// a delta costs a query less than folding costs the write.
pub const FOLD_MIN_ROWS: u64 = 1_000;

/// Share of a partition's base rows that are churned (in deltas or deleted).
fn churn_share(p: &PartitionInfo) -> f64 {
    churned_rows(p) as f64 / p.base_count().max(1) as f64
}

/// What a rebuilt partition's fine lists are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lists {
    /// Clustered again from the live rows ([`compact`]).
    Refit,
    /// As they are: every live row stays in its list and each list keeps the centroid
    /// the planner ranks it by (a fold after a write). A row a write placed in the list
    /// nearest to it is still found first by a query for it.
    Keep,
}

/// Rebuilds the partitions `select` accepts (at most `limit` of them, the most churned
/// first) from their live rows (the KLT and quantiser fitted again, the fine lists as
/// `list_mode` says), committed as one version with the writer's conditional commit
/// (starting over on a newer version when another writer commits first); no garbage
/// is collected. Reports the version it read when no partition was selected.
pub(crate) fn fold_where(
    writer: &Writer,
    store: &dyn ObjectStore,
    select: &dyn Fn(&PartitionInfo) -> bool,
    limit: Option<usize>,
    list_mode: Lists,
) -> Result<CompactReport> {
    for _attempt in 0..crate::write::MAX_COMMIT_ATTEMPTS {
        let (bytes, tag) = store.get_tagged(MANIFEST_KEY)?;
        let manifest = crate::write::read_manifest(store, &bytes)?;
        let mut dirty: Vec<usize> = manifest
            .meta
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| select(p))
            .map(|(i, _)| i)
            .collect();
        if let Some(limit) = limit.filter(|&l| l < dirty.len()) {
            let share = |i: usize| churn_share(&manifest.meta.partitions[i]);
            dirty.sort_by(|&a, &b| share(b).total_cmp(&share(a)).then(a.cmp(&b)));
            dirty.truncate(limit);
            dirty.sort_unstable();
        }
        let mut report = CompactReport {
            version: manifest.meta.version,
            count: manifest.meta.count,
            ..CompactReport::default()
        };
        if dirty.is_empty() {
            return Ok(report);
        }
        let wanted: HashSet<u32> = dirty.iter().map(|&p| p as u32).collect();
        let held = writer.held_segments_of(&manifest, &|p| wanted.contains(&p))?;
        let mut m = manifest.clone();
        let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
        // Per partition: its lists' slices of the manifest arrays, replaced where rebuilt.
        let pd = manifest.meta.partition_dims as usize;
        let attrs = manifest.meta.schema.len();
        let words = attrs * squash_core::manifest::PRESENCE_WORDS;
        let mut centroids: Vec<Vec<f32>> = Vec::with_capacity(manifest.partitions());
        let mut counts: Vec<Vec<u32>> = Vec::with_capacity(manifest.partitions());
        let mut presence: Vec<Vec<u64>> = Vec::with_capacity(manifest.partitions());
        for p in 0..manifest.partitions() {
            let lists = manifest.list_start[p] as usize..manifest.list_start[p + 1] as usize;
            centroids.push(manifest.list_centroids[lists.start * pd..lists.end * pd].to_vec());
            counts.push(manifest.list_counts[lists.clone()].to_vec());
            presence.push(manifest.list_presence[lists.start * words..lists.end * words].to_vec());
        }
        let total_lists = manifest.lists().max(1);
        let list_vectors = ((manifest.meta.partitions.iter().map(|p| p.base_count()).sum::<u64>() as f64
            / total_lists as f64)
            .round() as usize)
            .max(1);
        let params = BuildParams {
            metric: manifest.meta.metric,
            list_vectors,
            bits_per_dim: manifest.meta.bits_per_dim,
            seed: manifest.meta.seed,
            ..BuildParams::default()
        };
        // Value-indexed attributes: `(code, partition, local list, rows)` of the
        // rebuilt partitions, numbered globally once every partition's lists are known.
        let mut fresh: Vec<Vec<(u32, u32, u32, u32)>> = vec![Vec::new(); attrs];
        for &pid in &dirty {
            // The partition's live rows, base first, then each delta in order.
            let dim = manifest.meta.stored_dim();
            let mut data = Vec::new();
            let mut keys = Vec::new();
            let mut names = Vec::new();
            let mut columns = vec![Vec::new(); attrs];
            let mut row_lists: Vec<u32> = Vec::new();
            let mut lists: Vec<Option<ListColumn>> = manifest
                .attr_cells
                .iter()
                .map(|c| c.list.then(ListColumn::default))
                .collect();
            for h in held.iter().filter(|h| h.partition == pid as u32) {
                let dead: HashSet<u32> = h.dead.iter().copied().collect();
                let seg = &h.segment;
                let mut list_of = vec![0u32; seg.len()];
                for l in 0..seg.list_count() {
                    list_of[seg.list_rows(l)].fill(l as u32);
                }
                for row in (0..seg.len()).filter(|r| !dead.contains(&(*r as u32))) {
                    row_lists.push(list_of[row]);
                    data.extend_from_slice(seg.vector(row));
                    keys.push(seg.id(row));
                    if let Some(n) = seg.name(row) {
                        names.push(n.to_string());
                    }
                    for (a, col) in columns.iter_mut().enumerate() {
                        col.push(seg.attr_column(a)[row]);
                    }
                    for (a, list) in lists.iter_mut().enumerate() {
                        if let Some(list) = list {
                            list.push(seg.list_elements(a, row));
                        }
                    }
                }
            }
            let info = &manifest.meta.partitions[pid];
            report.partitions += 1;
            report.deltas += info.deltas.len() as u64;
            report.dropped += info.deleted;
            let n = keys.len();
            if n == 0 {
                return Err(BuildError::bad(
                    "partitions",
                    format!("partition {pid} has no live vector left; rebuild the index with `squash build`"),
                ));
            }
            let ids = match manifest.meta.ids {
                IdKind::String => Ids::Strings(names),
                IdKind::U64 => Ids::U64(keys),
            };
            let vectors = Matrix {
                rows: n,
                cols: dim,
                data,
            };
            let table = Attributes {
                schema: manifest.meta.schema.clone(),
                columns,
                lists,
            };
            let rows: Vec<usize> = (0..n).collect();
            let enc = encode_partition(
                pid as u32,
                &rows,
                &vectors,
                &table,
                &ids,
                &manifest.attr_cells,
                &manifest.global,
                manifest.meta.metric,
                &params,
                (list_mode == Lists::Keep).then_some((info.lists as usize, row_lists.as_slice())),
            );
            for (a, out) in fresh.iter_mut().enumerate() {
                if manifest.postings(a).is_none() {
                    continue;
                }
                for (l, w) in enc.segment.lists.windows(2).enumerate() {
                    for &r in &enc.rows[w[0] as usize..w[1] as usize] {
                        if let Some(c) = squash_core::values::code_of_value(table.columns[a][r as usize]) {
                            out.push((c, pid as u32, l as u32, 1));
                        }
                    }
                }
            }
            let bytes = enc.segment.encode();
            let key = format!("segments/p{pid:05}-{:032x}.sqs", xxh3_128(&bytes));
            let head = squash_core::segment::head_len_of(&key, &bytes)?;
            m.meta.partitions[pid] = PartitionInfo {
                id: pid as u32,
                count: n as u64,
                key: key.clone(),
                bytes: bytes.len() as u64,
                checksum: format!("{:016x}", xxh3_64(&bytes)),
                lists: (enc.segment.lists.len() - 1) as u32,
                head,
                deltas: Vec::new(),
                deletes: None,
                deleted: 0,
            };
            counts[pid] = enc.segment.lists.windows(2).map(|w| w[1] - w[0]).collect();
            if list_mode == Lists::Refit {
                centroids[pid] = enc.list_centroids;
            }
            presence[pid] = enc.presence;
            objects.push((key, bytes));
        }
        m.list_centroids = centroids.concat();
        m.list_counts = counts.concat();
        m.list_presence = presence.concat();
        m.list_start = Manifest::list_starts(&m.meta.partitions);
        let rebuilt: HashSet<u32> = dirty.iter().map(|&p| p as u32).collect();
        for (a, fresh) in fresh.into_iter().enumerate() {
            if let Some(old) = manifest.postings(a) {
                let map = |l: u32| {
                    let (p, local) = manifest.list_home(l as usize);
                    (!rebuilt.contains(&p)).then(|| m.list_start[p as usize] + local)
                };
                let fresh = fresh
                    .into_iter()
                    .map(|(c, p, local, n)| (c, m.list_start[p as usize] + local, n))
                    .collect();
                let codes = m.meta.schema.attrs[a].dictionary.len();
                let new = old.rebuilt(codes, map, fresh);
                m.values[a] = Some(std::sync::Arc::new(new));
            }
        }
        objects.extend(m.value_objects(Some(&manifest)));
        m.meta.count = m.meta.partitions.iter().map(|p| p.live()).sum();
        m.meta.version = manifest.meta.version + 1;
        m.meta.committed_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        {
            use rayon::prelude::*;
            objects
                .par_iter()
                .try_for_each(|(k, b)| store.put(k, b).map_err(BuildError::from))?;
        }
        let encoded = m.encode();
        match store.put_if(MANIFEST_KEY, &encoded, &Precondition::Matches(tag)) {
            Ok(_) => {
                let _ = store.put(&format!("{VERSIONS_PREFIX}{:020}.sqm", m.meta.version), &encoded);
                report.version = m.meta.version;
                report.count = m.meta.count;
                return Ok(report);
            }
            // A writer committed meanwhile: fold again from its version.
            Err(StorageError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(BuildError::bad(
        "manifest",
        format!(
            "gave up folding after {} conflicting commits: other writers kept committing first",
            crate::write::MAX_COMMIT_ATTEMPTS
        ),
    ))
}

/// Every object key a manifest names.
fn named(m: &Manifest) -> impl Iterator<Item = String> + '_ {
    let values = m
        .meta
        .schema
        .attrs
        .iter()
        .filter_map(|s| s.values.as_ref().map(|r| r.key.clone()));
    values.chain(m.meta.partitions.iter().flat_map(|p| {
        std::iter::once(p.key.clone())
            .chain(p.deletes.iter().map(|d| d.key.clone()))
            .chain(
                p.deltas
                    .iter()
                    .flat_map(|d| std::iter::once(d.key.clone()).chain(d.deletes.iter().map(|x| x.key.clone()))),
            )
    }))
}

/// Removes segment, deletion-set and value-index objects named by no version younger than `grace`
/// (a version's age counts from when the next one was committed) and not written
/// within it, and the copies of versions older than it.
fn collect_garbage(store: &dyn ObjectStore, grace: Duration, report: &mut CompactReport) -> Result<()> {
    let now = SystemTime::now();
    let unix = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
    let current = Manifest::decode(MANIFEST_KEY, &store.get(MANIFEST_KEY)?)?;
    let mut keep: HashSet<String> = named(&current).collect();
    // Version copies, oldest first; version v stays live until v + 1 was committed.
    let copies = store.list_modified(VERSIONS_PREFIX)?;
    let mut versions: Vec<(u64, String, Manifest)> = Vec::new();
    for (key, _) in &copies {
        let Some(v) = key
            .strip_prefix(VERSIONS_PREFIX)
            .and_then(|s| s.strip_suffix(".sqm"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if v >= current.meta.version {
            continue;
        }
        // An unreadable copy keeps nothing alive: the objects it named are protected by
        // their own age instead.
        if let Ok(m) = store
            .get(key)
            .map_err(BuildError::from)
            .and_then(|b| Ok(Manifest::decode(key, &b)?))
        {
            versions.push((v, key.clone(), m));
        }
    }
    versions.sort_by_key(|v| v.0);
    let superseded_at = |v: u64| -> SystemTime {
        versions
            .iter()
            .find(|(w, ..)| *w > v)
            .map(|(_, _, m)| unix(m.meta.committed_at))
            .unwrap_or_else(|| unix(current.meta.committed_at))
    };
    let mut old_copies = Vec::new();
    for (v, key, m) in &versions {
        let age = now.duration_since(superseded_at(*v)).unwrap_or_default();
        if age < grace {
            keep.extend(named(m));
        } else {
            old_copies.push(key.clone());
        }
    }
    for (key, modified) in store.list_modified("segments/")? {
        if keep.contains(&key) {
            continue;
        }
        let young = modified.is_none_or(|t| now.duration_since(t).unwrap_or_default() < grace);
        if young {
            report.kept_young += 1;
            continue;
        }
        report.removed_bytes += store.head(&key)?.unwrap_or(0);
        store.delete(&key)?;
        report.removed += 1;
    }
    for key in old_copies {
        store.delete(&key)?;
    }
    Ok(())
}
