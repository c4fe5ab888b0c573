//! Folding and compaction: a partition's delta segments and deletions folded back
//! into one rebuilt segment (its own KLT and quantiser fitted again on its live rows),
//! committed as a new manifest version through the [commit protocol](crate::commit).
//! A fold after a write keeps the partition's fine lists; compaction clusters them
//! again (with a clusterer the caller gives: k-means lives in the build crate) and then
//! collects garbage ([`crate::gc`]).
//!
//! The partitions themselves (which rows go where) and the global KLT stay: a new row
//! was placed in its nearest list when it was written. Search defaults stay as the
//! build measured them.

use crate::commit::{commit, Staged};
use crate::error::{Result, WriteError};
use crate::held::{Held, SegmentReader};
use crate::ids::Ids;
use crate::partition::{encode_partition, ListsOf, PartitionInput, Quantisation, DEFAULT_LLOYD_SAMPLE};
use crate::table::{Attributes, Matrix};
use squash_core::attrs::ListColumn;
use squash_core::manifest::{IdKind, Manifest, PartitionInfo};
use squash_storage::ObjectStore;
use std::collections::HashSet;
use std::sync::Arc;

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

/// Whether a write leaves partition `p` churned enough to fold (see
/// [`crate::Writer::with_fold_share`]): its rows in deltas plus its deleted rows reach `share`
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

/// Splits partition `pid`'s live rows into fine lists: given the rows rotated by the
/// partition's KLT (`n × dim`) and its eigenvalues, the number of lists and each row's.
pub type PartitionClusterer<'a> = &'a (dyn Fn(u32, &[f32], usize, &[f32]) -> (usize, Vec<u32>) + Sync);

/// What a rebuilt partition's fine lists are.
#[derive(Clone, Copy)]
pub enum Lists<'a> {
    /// Clustered again from the live rows ([`compact`]).
    Cluster(PartitionClusterer<'a>),
    /// As they are: every live row stays in its list and each list keeps the centroid
    /// the planner ranks it by (a fold after a write). A row a write placed in the list
    /// nearest to it is still found first by a query for it.
    Keep,
}

/// Rebuilds the partitions `select` accepts (at most `limit` of them, the most churned
/// first) from their live rows (the KLT and quantiser fitted again, the fine lists as
/// `lists` says), committed as one version (staged again on a newer version when
/// another writer commits first); no garbage is collected. Reports the version it read
/// when no partition was selected.
pub(crate) fn fold_where(
    reader: &SegmentReader,
    store: &dyn ObjectStore,
    select: &dyn Fn(&PartitionInfo) -> bool,
    limit: Option<usize>,
    lists: Lists,
) -> Result<CompactReport> {
    let committed = commit(store, "folding", &|_| Ok(()), |manifest| {
        let mut dirty: Vec<usize> = (manifest.meta.partitions.iter().enumerate())
            .filter(|(_, p)| select(p))
            .map(|(i, _)| i)
            .collect();
        if let Some(limit) = limit.filter(|&l| l < dirty.len()) {
            let share = |i: usize| churn_share(&manifest.meta.partitions[i]);
            dirty.sort_by(|&a, &b| share(b).total_cmp(&share(a)).then(a.cmp(&b)));
            dirty.truncate(limit);
            dirty.sort_unstable();
        }
        stage_fold(reader, manifest, &dirty, lists)
    })?;
    let mut report = committed.outcome;
    report.version = committed.manifest.meta.version;
    report.count = committed.manifest.meta.count;
    Ok(report)
}

/// The partition `pid`'s live rows as a table: base first, then each delta in order,
/// with each row's list inside the partition.
struct LiveRows {
    vectors: Matrix,
    attrs: Attributes,
    ids: Ids,
    row_lists: Vec<u32>,
}

fn live_rows(manifest: &Manifest, held: &[Held], pid: u32) -> LiveRows {
    let dim = manifest.meta.stored_dim();
    let attrs = manifest.meta.schema.len();
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
    for h in held.iter().filter(|h| h.partition == pid) {
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
    LiveRows {
        vectors: Matrix {
            rows: keys.len(),
            cols: dim,
            data,
        },
        attrs: Attributes {
            schema: manifest.meta.schema.clone(),
            columns,
            lists,
        },
        ids: match manifest.meta.ids {
            IdKind::String => Ids::Strings(names),
            IdKind::U64 => Ids::U64(keys),
        },
        row_lists,
    }
}

/// Stages the rebuild of partitions `dirty` on `manifest`.
fn stage_fold(
    reader: &SegmentReader,
    manifest: &Manifest,
    dirty: &[usize],
    lists: Lists,
) -> Result<Staged<CompactReport>> {
    let mut report = CompactReport::default();
    if dirty.is_empty() {
        return Ok(Staged {
            manifest: manifest.clone(),
            objects: Vec::new(),
            outcome: report,
        });
    }
    let wanted: HashSet<u32> = dirty.iter().map(|&p| p as u32).collect();
    let held = reader.held_segments_of(manifest, &|p| wanted.contains(&p))?;
    let mut m = manifest.clone();
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    let attrs = manifest.meta.schema.len();
    let quantisation = Quantisation {
        bits_per_dim: manifest.meta.bits_per_dim,
        lloyd_sample: DEFAULT_LLOYD_SAMPLE,
    };
    // Value-indexed attributes: `(code, partition, local list, rows)` of the
    // rebuilt partitions, numbered globally once every partition's lists are known.
    let mut fresh: Vec<Vec<(u32, u32, u32, u32)>> = vec![Vec::new(); attrs];
    for &pid in dirty {
        let info = &manifest.meta.partitions[pid];
        report.partitions += 1;
        report.deltas += info.deltas.len() as u64;
        report.dropped += info.deleted;
        let live = live_rows(manifest, &held, pid as u32);
        let n = live.vectors.rows;
        if n == 0 {
            return Err(WriteError::bad(
                "partitions",
                format!("partition {pid} has no live vector left; rebuild the index with `squash build`"),
            ));
        }
        let count_widths = match &manifest.list_code_counts {
            Some(c) => c.widths().to_vec(),
            None => squash_core::summary::bucket_widths(&manifest.meta.schema, &manifest.attr_cells),
        };
        let input = PartitionInput {
            vectors: &live.vectors,
            attrs: &live.attrs,
            ids: &live.ids,
            attr_cells: &manifest.attr_cells,
            global: &manifest.global,
            metric: manifest.meta.metric,
            quantisation,
            count_widths: &count_widths,
        };
        let cluster;
        let how = match lists {
            Lists::Keep => ListsOf::Given {
                lists: info.lists as usize,
                assignment: &live.row_lists,
            },
            Lists::Cluster(c) => {
                cluster = move |rotated: &[f32], dim: usize, energies: &[f32]| c(pid as u32, rotated, dim, energies);
                ListsOf::Cluster(&cluster)
            }
        };
        let rows: Vec<usize> = (0..n).collect();
        let obj = encode_partition(pid as u32, &rows, &input, how).into_object()?;
        for (a, out) in fresh.iter_mut().enumerate() {
            if manifest.postings(a).is_none() {
                continue;
            }
            for (l, w) in obj.lists.windows(2).enumerate() {
                for &r in &obj.rows[w[0] as usize..w[1] as usize] {
                    if let Some(c) = squash_core::values::code_of_value(live.attrs.columns[a][r as usize]) {
                        out.push((c, pid as u32, l as u32, 1));
                    }
                }
            }
        }
        let centroids = matches!(lists, Lists::Cluster(_)).then_some(obj.list_centroids.as_slice());
        m.replace_partition(
            pid,
            obj.info.clone(),
            &obj.list_counts(),
            &obj.presence,
            obj.code_counts.clone(),
            centroids,
        );
        objects.push((obj.info.key, obj.bytes));
    }
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
            m.values[a] = Some(Arc::new(new));
        }
    }
    Ok(Staged {
        manifest: m,
        objects,
        outcome: report,
    })
}
