//! Writes without a rebuild: upsert and delete by id (or by filter), committed as a new
//! manifest version.
//!
//! A write never changes an object: it adds small *delta segments* (the new rows of a
//! partition, in the partition's own fine lists, rotated and quantised with the
//! partition's KLT and boundaries, the outer boundaries widened to hold them) and new
//! *deletion sets* (a segment's deleted or replaced rows, all of them so far), then
//! commits a manifest naming them with a conditional write on `manifest.sqm`
//! (`If-Match` on the tag it read). Of two writers racing, one commits and the other
//! re-reads the new version and applies its write again on top of it: no update is
//! ever lost. A writer that dies before the commit leaves the index at the version it
//! read (its objects are orphans, removed by `squash compact`); readers hold one
//! manifest version from the start to the end of a query, so they never see half a write.

use crate::commit::{commit, Hook, Staged};
use crate::delta::{assign_lists, delta_parts};
use crate::error::{Result, WriteError};
use crate::held::{Held, SegmentReader};
use crate::ids::Ids;
pub use crate::upsert::Upsert;
use crate::upsert::{id_keys, prepare_upsert, Prepared};
use squash_core::attrs::AttrValue;
use squash_core::deletes::encode_deletes;
use squash_core::filter::Expr;
use squash_core::manifest::{DeletesInfo, DeltaInfo, Manifest};
use squash_core::naming::Naming;
use squash_core::values::code_of_value;
use squash_engine::cache::SegmentCache;
use squash_storage::ObjectStore;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// What to delete.
#[derive(Debug, Clone)]
pub enum Delete {
    /// These ids (ids the index does not hold are counted as missing, not an error).
    Ids(Ids),
    /// Every live row whose attributes match this filter (the search filter language).
    Filter(serde_json::Value),
}

/// What a committed write did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct WriteReport {
    /// The manifest version committed (unchanged when the write changed nothing).
    pub version: u64,
    /// Rows added under new ids.
    pub inserted: u64,
    /// Rows that replaced a live row with the same id.
    pub replaced: u64,
    /// Live rows deleted.
    pub deleted: u64,
    /// Ids asked to be deleted that the index did not hold.
    pub missing: u64,
    /// Commits refused because another writer committed first (each was retried).
    pub retries: u32,
    /// Objects written (delta segments, deletion sets, the manifest).
    pub objects_written: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Live vectors after the write.
    pub count: u64,
    /// Partitions the write left churned past the fold share and that were folded
    /// (rebuilt, as `squash compact` does, in a version of their own).
    pub folded: u64,
    /// Why folding failed, when it did: the write itself is committed all the same
    /// (the partitions stay as the write left them until a later write or
    /// `squash compact` folds them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fold_error: Option<String>,
}

impl WriteReport {
    /// Adds another write's counts (the version and count become the later one's).
    pub fn add(&mut self, other: &WriteReport) {
        self.version = other.version;
        self.count = other.count;
        self.inserted += other.inserted;
        self.replaced += other.replaced;
        self.deleted += other.deleted;
        self.missing += other.missing;
        self.retries += other.retries;
        self.objects_written += other.objects_written;
        self.bytes_written += other.bytes_written;
        self.folded += other.folded;
        if other.fold_error.is_some() {
            self.fold_error.clone_from(&other.fold_error);
        }
    }
}

/// Applies writes to the index in a store. Keeps the segments it has read (by their
/// immutable keys) for the next write; a coordinator shares its search cache with it.
pub struct Writer {
    store: Arc<dyn ObjectStore>,
    reader: SegmentReader,
    /// Called between the steps of a write (for fault drills): `before("commit")`…
    hook: Option<Box<Hook>>,
    /// Churn share past which a write folds a partition (`None`: never).
    fold_share: Option<f64>,
    /// Most partitions one write folds (`None`: every churned one).
    fold_limit: Option<usize>,
}

/// Default share of a partition's base rows that its deltas and deletions may reach
/// before a write folds it ([`Writer::with_fold_share`]).
pub const DEFAULT_FOLD_SHARE: f64 = 0.1;

/// Reads a fold share as a user gives it (`--fold-share`, `SQUASH_FOLD_SHARE`): a number
/// above 0, or `off` (never fold).
pub fn parse_fold_share(v: &str) -> std::result::Result<Option<f64>, String> {
    match v.trim() {
        "off" => Ok(None),
        t => match t.parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 => Ok(Some(s)),
            _ => Err(format!("{v:?}: expected a share above 0 or off")),
        },
    }
}

impl Writer {
    /// A writer for the index in `store`, with a segment cache of its own (1 GiB).
    pub fn new(store: Arc<dyn ObjectStore>) -> Writer {
        Writer::with_cache(store, Arc::new(SegmentCache::new(1 << 30)))
    }

    /// A writer sharing `cache` (a coordinator's search cache).
    pub fn with_cache(store: Arc<dyn ObjectStore>, cache: Arc<SegmentCache>) -> Writer {
        Writer {
            reader: SegmentReader::new(store.clone(), cache),
            store,
            hook: None,
            fold_share: Some(DEFAULT_FOLD_SHARE),
            fold_limit: None,
        }
    }

    /// This writer, calling `hook` with the name of each step before it runs
    /// (`"segments"`, `"deletes"`, `"commit"`, `"history"`): an error stops the write there.
    pub fn with_hook(mut self, hook: impl Fn(&str) -> Result<()> + Send + Sync + 'static) -> Writer {
        self.hook = Some(Box::new(hook));
        self
    }

    /// This writer, folding after each write the partitions whose rows in deltas plus
    /// deleted rows reach `share` of their base rows (and at least
    /// [`crate::fold::FOLD_MIN_ROWS`]); `None` never folds. A query scans a delta's
    /// rows and skips deleted ones at a cost a rebuilt partition does not have, so
    /// folding bounds what writes cost searches between compactions; the fold is its
    /// own version, committed after the write's. Default [`DEFAULT_FOLD_SHARE`].
    pub fn with_fold_share(mut self, share: Option<f64>) -> Writer {
        self.fold_share = share.filter(|s| s.is_finite() && *s >= 0.0);
        self
    }

    /// This writer, folding at most `limit` partitions after a write (the most churned
    /// first; the others fold after later writes): bounds how long a write call takes
    /// (a partition of 10,000 rows takes about 0.2 s), as a coordinator behind an HTTP
    /// gateway's time limit needs.
    pub fn with_fold_limit(mut self, limit: Option<usize>) -> Writer {
        self.fold_limit = limit;
        self
    }

    /// Folds what the write just committed left churned (see
    /// [`Writer::with_fold_share`]), adding the fold to `report`. The write is
    /// committed already: a failed fold is reported in `fold_error`, not as an error.
    fn fold_after(&self, mut report: WriteReport, churned: bool) -> WriteReport {
        let Some(share) = self.fold_share.filter(|_| churned) else {
            return report;
        };
        let folded = self.step("fold").and_then(|()| {
            let churned = |p: &squash_core::manifest::PartitionInfo| crate::fold::needs_fold(p, share);
            let keep = crate::fold::Lists::Keep;
            crate::fold::fold_where(&self.reader, self.store.as_ref(), &churned, self.fold_limit, keep)
        });
        match folded {
            Ok(f) => {
                report.folded = f.partitions;
                report.version = f.version;
                report.count = f.count;
            }
            Err(e) => report.fold_error = Some(e.to_string()),
        }
        report
    }

    fn step(&self, name: &str) -> Result<()> {
        match &self.hook {
            Some(h) => h(name),
            None => Ok(()),
        }
    }

    /// Inserts new ids and replaces existing ones (vector and attributes), committed as
    /// one new version. Bad input (a wrong dimension, a duplicate id, an unknown
    /// attribute, an id of the wrong kind or too long) is rejected before anything is
    /// written, with the field named as `vectors[i].field`.
    pub fn upsert(&self, rows: &Upsert) -> Result<WriteReport> {
        let (report, churned) = self.commit_loop(|manifest| {
            let prepared = prepare_upsert(manifest, rows)?;
            self.stage_upsert(manifest, prepared)
        })?;
        Ok(self.fold_after(report, churned))
    }

    /// Deletes the rows of the given ids, or those matching a filter, committed as one
    /// new version (none when nothing matched).
    pub fn delete(&self, what: &Delete) -> Result<WriteReport> {
        let (report, churned) = self.commit_loop(|manifest| self.stage_delete(manifest, what))?;
        Ok(self.fold_after(report, churned))
    }

    /// Commits the write `stage` makes (see [`crate::commit`]); also says whether the
    /// version committed has a partition to fold.
    fn commit_loop(&self, stage: impl FnMut(&Manifest) -> Result<Staged<WriteReport>>) -> Result<(WriteReport, bool)> {
        let no_hook = |_: &str| Ok(());
        let hook: &Hook = self.hook.as_deref().unwrap_or(&no_hook);
        let committed = commit(self.store.as_ref(), "writing", hook, stage)?;
        let mut report = committed.outcome;
        report.retries = committed.retries;
        report.objects_written = committed.objects_written;
        report.bytes_written = committed.bytes_written;
        report.version = committed.manifest.meta.version;
        report.count = committed.manifest.meta.count;
        let churned = committed.changed
            && self.fold_share.is_some_and(|share| {
                (committed.manifest.meta.partitions.iter()).any(|p| crate::fold::needs_fold(p, share))
            });
        Ok((report, churned))
    }

    /// Live rows holding one of `keys` (string ids compared in full): `(held index, row)`.
    fn locate(held: &[Held], keys: &HashMap<u64, Vec<usize>>, names: Option<&[String]>) -> Vec<(usize, usize, usize)> {
        let mut found = Vec::new();
        for (h, seg) in held.iter().enumerate() {
            let dead: HashSet<u32> = seg.dead.iter().copied().collect();
            for (row, id) in seg.segment.ids().iter().enumerate() {
                let Some(requests) = keys.get(id) else { continue };
                if dead.contains(&(row as u32)) {
                    continue;
                }
                for &i in requests {
                    let same = match names {
                        Some(n) => seg.segment.name(row) == Some(n[i].as_str()),
                        None => true,
                    };
                    if same {
                        found.push((h, row, i));
                    }
                }
            }
        }
        found
    }

    fn stage_upsert(&self, manifest: &Manifest, rows: Prepared) -> Result<Staged<WriteReport>> {
        let held = self.reader.held_segments(manifest)?;
        let mut keys: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, &k) in rows.keys.iter().enumerate() {
            keys.entry(k).or_default().push(i);
        }
        let found = Writer::locate(&held, &keys, rows.names.as_deref());
        let mut dead_new: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
        for &(h, row, _) in &found {
            dead_new.entry(h).or_default().push(row as u32);
        }
        let replaced = found.len() as u64;
        let mut m = manifest.clone();
        m.meta.schema = (*rows.schema).clone();
        m.attr_cells = (*rows.cells).clone();
        let mut objects = Vec::new();
        // Each new row to the nearest list (in the planner's space), grouped by partition.
        let assign = assign_lists(manifest, &rows.vectors, rows.dim);
        let mut by_partition: BTreeMap<u32, Vec<(usize, u32)>> = BTreeMap::new();
        for (i, &l) in assign.iter().enumerate() {
            let (p, local) = manifest.list_home(l as usize);
            by_partition.entry(p).or_default().push((i, local));
        }
        let base_of: HashMap<u32, &Held> = held.iter().filter(|h| h.place == 0).map(|h| (h.partition, h)).collect();
        let attrs = m.meta.schema.len();
        let mut replaced_in_deltas = 0u64;
        // Postings of value-indexed attributes: the touched partitions' lists are
        // counted again from their base rows and their new delta.
        let mut touched = vec![false; m.lists()];
        let mut fresh: Vec<Vec<(u32, u32, u32)>> = vec![Vec::new(); attrs];
        let code_at = |v: f64, list: usize| code_of_value(v).map(|c| (c, list as u32, 1u32));
        for (&pid, members) in &by_partition {
            let base = base_of
                .get(&pid)
                .ok_or_else(|| WriteError::bad("manifest", format!("partition {pid} has no base segment")))?;
            // One delta per partition: its earlier deltas' live rows (less those this
            // write replaces) move into the new one with the new rows, and the old
            // deltas, with their deletion sets, leave the manifest. A query then scans
            // at most two segments of a partition however many writes reached it.
            let mut merged = rows.empty_like();
            let mut merged_members: Vec<(usize, u32)> = Vec::new();
            for (h, old) in held
                .iter()
                .enumerate()
                .filter(|(_, h)| h.partition == pid && h.place > 0)
            {
                let mut gone: HashSet<u32> = old.dead.iter().copied().collect();
                if let Some(now) = dead_new.remove(&h) {
                    replaced_in_deltas += now.len() as u64;
                    gone.extend(now);
                }
                let seg = &old.segment;
                for l in 0..seg.list_count() {
                    for row in seg.list_rows(l).filter(|r| !gone.contains(&(*r as u32))) {
                        merged_members.push((merged.keys.len(), l as u32));
                        merged.push_row(seg, row);
                    }
                }
            }
            for &(i, local) in members {
                merged_members.push((merged.keys.len(), local));
                merged.push_from(&rows, i);
            }
            let parts = delta_parts(&base.segment, pid, &merged_members, &merged, manifest.meta.metric);
            let bytes = parts.encode();
            let key = Naming::segment_key(pid, &bytes);
            let head = squash_core::segment::head_len_of(&key, &bytes)?;
            let first = m.lists_of(pid as usize).start;
            // The partition's list sizes: the base segment's plus the merged delta's.
            for l in 0..base.segment.list_count() {
                m.set_list_count(first + l, base.segment.list_rows(l).len() as u32);
            }
            for (a, out) in fresh.iter_mut().enumerate() {
                if m.postings(a).is_none() {
                    continue;
                }
                let column = base.segment.attr_column(a);
                for l in 0..base.segment.list_count() {
                    touched[first + l] = true;
                    out.extend(base.segment.list_rows(l).filter_map(|r| code_at(column[r], first + l)));
                }
                for &(i, local) in &merged_members {
                    if let AttrValue::Scalar(v) = merged.value(a, i) {
                        out.extend(code_at(v, first + local as usize));
                    }
                }
            }
            for &(i, local) in &merged_members {
                let codes: Vec<u8> = (0..attrs)
                    .map(|a| m.attr_cells[a].encode_value(merged.value(a, i)))
                    .collect();
                m.add_row_to_list(first + local as usize, codes);
            }
            let p = &mut m.meta.partitions[pid as usize];
            let base_rows = base.segment.len() as u64;
            let base_dead = p.deletes.as_ref().map_or(0, |d| d.rows);
            p.count = base_rows + merged_members.len() as u64;
            p.deleted = base_dead;
            p.deltas = vec![DeltaInfo {
                key: key.clone(),
                bytes: bytes.len() as u64,
                checksum: Naming::checksum(&bytes),
                count: merged_members.len() as u64,
                head,
                version: manifest.meta.version + 1,
                deletes: None,
            }];
            objects.push((key, bytes));
        }
        for (a, fresh) in fresh.into_iter().enumerate() {
            if let Some(old) = m.postings(a) {
                let codes = m.meta.schema.attrs[a].dictionary.len();
                let new = old.rebuilt(codes, |l| (!touched[l as usize]).then_some(l), fresh);
                m.values[a] = Some(Arc::new(new));
            }
        }
        let deleted = self.apply_deletes(&mut m, &held, dead_new, &mut objects);
        debug_assert_eq!(deleted + replaced_in_deltas, replaced);
        Ok(Staged {
            manifest: m,
            objects,
            outcome: WriteReport {
                inserted: rows.keys.len() as u64 - replaced,
                replaced,
                ..WriteReport::default()
            },
        })
    }

    /// Adds the new deleted rows to each segment's deletion set (a new object per
    /// segment touched) and to the partitions' counts; returns how many rows died.
    fn apply_deletes(
        &self,
        m: &mut Manifest,
        held: &[Held],
        dead_new: BTreeMap<usize, Vec<u32>>,
        objects: &mut Vec<(String, Vec<u8>)>,
    ) -> u64 {
        let mut total = 0;
        for (h, mut rows) in dead_new {
            let seg = &held[h];
            rows.extend(seg.dead.iter().copied());
            rows.sort_unstable();
            rows.dedup();
            let added = rows.len() - seg.dead.len();
            total += added as u64;
            let bytes = encode_deletes(&rows, seg.segment.len() as u64);
            let key = Naming::deletes_key(seg.partition, &bytes);
            let info = DeletesInfo {
                key: key.clone(),
                bytes: bytes.len() as u64,
                checksum: Naming::checksum(&bytes),
                rows: rows.len() as u64,
            };
            let p = &mut m.meta.partitions[seg.partition as usize];
            p.deleted += added as u64;
            match seg.place {
                0 => p.deletes = Some(info),
                i => p.deltas[i - 1].deletes = Some(info),
            }
            objects.push((key, bytes));
        }
        total
    }

    fn stage_delete(&self, manifest: &Manifest, what: &Delete) -> Result<Staged<WriteReport>> {
        let held = self.reader.held_segments(manifest)?;
        let mut dead_new: BTreeMap<usize, Vec<u32>> = BTreeMap::new();
        let mut missing = 0;
        match what {
            Delete::Ids(ids) => {
                let (keys, names) = id_keys(manifest, ids, &|i| format!("ids[{i}]"))?;
                let mut by_key: HashMap<u64, Vec<usize>> = HashMap::new();
                for (i, &k) in keys.iter().enumerate() {
                    by_key.entry(k).or_default().push(i);
                }
                let found = Writer::locate(&held, &by_key, names.as_deref());
                let hit: HashSet<usize> = found.iter().map(|f| f.2).collect();
                missing = (keys.len() - hit.len()) as u64;
                for (h, row, _) in found {
                    dead_new.entry(h).or_default().push(row as u32);
                }
            }
            Delete::Filter(json) => {
                let filter = Expr::parse(json, &manifest.meta.schema)?.ok_or_else(|| {
                    WriteError::bad("filter", "an empty filter would delete everything; rebuild instead")
                })?;
                for (h, seg) in held.iter().enumerate() {
                    let dead: HashSet<u32> = seg.dead.iter().copied().collect();
                    let rows: Vec<u32> = (0..seg.segment.len())
                        .filter(|&r| !dead.contains(&(r as u32)) && filter.matches(&|a| seg.segment.attr_value(a, r)))
                        .map(|r| r as u32)
                        .collect();
                    if !rows.is_empty() {
                        dead_new.insert(h, rows);
                    }
                }
            }
        }
        let mut m = manifest.clone();
        let mut objects = Vec::new();
        let deleted = self.apply_deletes(&mut m, &held, dead_new, &mut objects);
        Ok(Staged {
            manifest: m,
            objects,
            outcome: WriteReport {
                deleted,
                missing,
                ..WriteReport::default()
            },
        })
    }
}
