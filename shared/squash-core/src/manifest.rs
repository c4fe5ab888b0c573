//! The manifest: the single source of truth of an index. It names every segment (by a
//! content-hashed key, with size and checksum) and carries what the planner needs:
//! the global KLT, and for every fine list inside a partition its
//! centroid, its size and which attribute codes it holds.
//! Byte layout in `docs/FORMAT.md`.

use crate::attrs::{AttrCells, Schema};
use crate::container::{le, write_container, Container, SectionOut};
use crate::distance::Metric;
use crate::error::{CoreError, Result};
use crate::klt::Klt;
use crate::segment::{decode_cells, encode_cells};
use crate::summary::ListCodeCounts;
use crate::values::{decode_values, encode_values, ValuePostings};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Key of the manifest object under an index's root.
pub use crate::naming::MANIFEST_KEY;

/// Magic of manifest objects.
pub const MANIFEST_MAGIC: &[u8; 8] = b"SQUASHMF";

const META: u32 = 1;
const GLOBAL: u32 = 2;
const ATTR_CELLS: u32 = 4;
const LIST_CENTROIDS: u32 = 6;
const LIST_COUNTS: u32 = 7;
const LIST_PRESENCE: u32 = 8;
const LIST_CODE_COUNTS: u32 = 9;

/// u64 words of one attribute's code-presence bitmap (256 codes).
pub use crate::summary::PRESENCE_WORDS;

/// The kind of an index's vector ids: one kind per index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdKind {
    /// Unsigned 64-bit integers (row numbers of the build input when none were given).
    #[default]
    U64,
    /// UTF-8 strings of 1 to [`MAX_ID_BYTES`] bytes.
    String,
}

impl IdKind {
    /// The name used in messages and the API (`"u64"`, `"string"`).
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::U64 => "u64",
            IdKind::String => "string",
        }
    }
}

/// Longest string id, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// The internal 64-bit key of a string id (what a segment's IDS section holds for it).
pub fn string_id_key(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

/// A deletion set (see [`crate::deletes`]) as the manifest names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletesInfo {
    /// Object key, relative to the index root (content-hashed).
    pub key: String,
    /// Size of the object in bytes.
    pub bytes: u64,
    /// xxh3-64 of the whole object, 16 lowercase hex digits.
    pub checksum: String,
    /// Rows it deletes.
    pub rows: u64,
}

/// A delta segment: rows a write added to a partition, in the partition's lists,
/// rotated and quantised with the partition's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaInfo {
    /// Object key of the segment, relative to the index root.
    pub key: String,
    /// Size of the segment object in bytes.
    pub bytes: u64,
    /// xxh3-64 of the whole segment object, 16 lowercase hex digits.
    pub checksum: String,
    /// Rows in the segment (deleted ones included).
    pub count: u64,
    /// Bytes before the segment's first scanned section.
    pub head: u64,
    /// The manifest version that added it.
    pub version: u64,
    /// Its rows deleted or replaced by later writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes: Option<DeletesInfo>,
}

/// One partition as the manifest knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// Partition number (index into centroids and histograms).
    pub id: u32,
    /// Rows of the partition: its base segment's plus its deltas' (deleted rows
    /// included; the live ones are `count − deleted`).
    pub count: u64,
    /// Object key of the segment, relative to the index root.
    pub key: String,
    /// Size of the segment object in bytes.
    pub bytes: u64,
    /// xxh3-64 of the whole segment object, 16 lowercase hex digits.
    pub checksum: String,
    /// Number of fine lists in the segment (lists are numbered partition by partition).
    pub lists: u32,
    /// Bytes before the segment's first scanned section (its parameters): what a worker
    /// reading it by ranges fetches first. 0 for segments written before ranged reads,
    /// which are read whole.
    #[serde(default)]
    pub head: u64,
    /// Delta segments written since the partition was built, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deltas: Vec<DeltaInfo>,
    /// Rows of the base segment deleted or replaced by writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes: Option<DeletesInfo>,
    /// Rows of the partition (base and deltas) deleted or replaced.
    #[serde(default)]
    pub deleted: u64,
}

impl PartitionInfo {
    /// Rows of the base segment.
    pub fn base_count(&self) -> u64 {
        self.count - self.deltas.iter().map(|d| d.count).sum::<u64>().min(self.count)
    }

    /// Live rows (not deleted).
    pub fn live(&self) -> u64 {
        self.count.saturating_sub(self.deleted)
    }

    /// Bytes of the partition's segments and deletion sets.
    pub fn total_bytes(&self) -> u64 {
        let del = |d: &Option<DeletesInfo>| d.as_ref().map_or(0, |d| d.bytes);
        self.bytes + del(&self.deletes) + self.deltas.iter().map(|d| d.bytes + del(&d.deletes)).sum::<u64>()
    }
}

/// Default search knobs, chosen at build time and overridable per query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchDefaults {
    /// Fewest fine lists searched (closest list centroids first).
    pub nprobe: u32,
    /// Each worker re-ranks at most `k × rerank_factor` candidates exactly.
    pub rerank_factor: u32,
    /// Fraction of filtered candidates kept by the Hamming prune (1 = no prune).
    pub hamming_keep: f32,
    /// Filter sufficiency: keep adding lists until the estimated matching vectors
    /// reach `safety × k` (and at least `nprobe` lists). With a `safety_curve`, the
    /// largest factor on it (what a client that ignores the curve should use).
    pub safety: f32,
    /// `(selectivity, safety)` points measured at build time, ascending in selectivity:
    /// the factor a random filter of that selectivity needed. The planner reads the
    /// factor off this curve at each filter's estimated selectivity; empty: `safety`
    /// everywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safety_curve: Vec<(f64, f64)>,
    /// `(edge, share)` points measured at build time, edges ascending (at most 1): for
    /// a clustered filter less than `edge` times as dense in the `nprobe` nearest lists
    /// as in the index (a region away from the query, whose nearest rows list order
    /// ranks poorly), the share of all its matches the planner collects; the first
    /// point whose edge is above decides. Empty: the safety curve alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub far_share: Vec<(f64, f64)>,
    /// How the build measured `nprobe` and `safety` on the data; absent when they were
    /// set by hand or the index was too small to calibrate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

/// The measurement behind calibrated search defaults: sample queries drawn from the
/// base vectors, their exact neighbours, and the share of those held by the lists the
/// planner would search (the coverage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Sample queries.
    pub queries: u32,
    /// Neighbours per query.
    pub k: u32,
    /// Coverage the knobs were chosen to reach.
    pub target_coverage: f64,
    /// Coverage of the unfiltered top-k at the chosen `nprobe`.
    pub nprobe_coverage: f64,
    /// Recall@k of the sample queries searched at the chosen `nprobe` and
    /// `rerank_factor` (when the factor was calibrated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerank_recall: Option<f64>,
}

/// Descriptive fields of a manifest (stored as zstd-compressed JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestMeta {
    /// Vector dimension (of the vectors users give; see [`ManifestMeta::stored_dim`]).
    pub dim: u32,
    /// Distance metric.
    pub metric: Metric,
    /// For inner product: the largest vector norm the index holds (the transformation's
    /// `M`, see [`Metric::Ip`]); stored vectors have `dim + 1` coordinates. `None` for
    /// the other metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_norm: Option<f32>,
    /// Total number of live vectors.
    pub count: u64,
    /// Kind of the vector ids.
    #[serde(default)]
    pub ids: IdKind,
    /// Version: 0 when built, one more with every committed write.
    #[serde(default)]
    pub version: u64,
    /// When this version was committed, in Unix seconds (0 when built).
    #[serde(default)]
    pub committed_at: u64,
    /// Number of leading global KLT directions used to place partitions.
    pub partition_dims: u32,
    /// Average OSQ bits per dimension.
    pub bits_per_dim: f32,
    /// Seed the build used.
    pub seed: u64,
    /// Attribute schema.
    pub schema: Schema,
    /// Default search knobs.
    pub defaults: SearchDefaults,
    /// Partitions in id order.
    pub partitions: Vec<PartitionInfo>,
    /// Program and version that wrote the index.
    pub created_by: String,
}

impl ManifestMeta {
    /// Dimension of the stored vectors (and of prepared queries): `dim`, plus one for
    /// inner product.
    pub fn stored_dim(&self) -> usize {
        self.metric.stored_dim(self.dim as usize)
    }

    /// The inner-product transformation's `M` (0 for the other metrics).
    pub fn norm_bound(&self) -> f32 {
        self.max_norm.unwrap_or(0.0)
    }
}

/// A decoded manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Descriptive fields.
    pub meta: ManifestMeta,
    /// Global KLT truncated to `partition_dims` directions.
    pub global: Klt,
    /// Attribute cells, one per attribute.
    pub attr_cells: Vec<AttrCells>,
    /// Fine-list centroids in the global KLT space, `lists × partition_dims`; the lists
    /// of partition 0 first, then those of partition 1, and so on.
    pub list_centroids: Vec<f32>,
    /// Vectors in each list.
    pub list_counts: Vec<u32>,
    /// Code-presence bitmaps, `lists × attrs × PRESENCE_WORDS` words: bit `c` of list
    /// `l`, attribute `a` is set when some vector of the list has attribute code `c`.
    pub list_presence: Vec<u64>,
    /// Rows of each list by attribute code (bucketed for numeric attributes; see
    /// [`crate::summary`]), what the planner counts matches from; `None` in manifests
    /// written before they were kept.
    pub list_code_counts: Option<ListCodeCounts>,
    /// First global list number of each partition, plus the total (derived, not stored).
    pub list_start: Vec<u32>,
    /// Per attribute: the postings of a high-cardinality categorical attribute (see
    /// [`crate::values`]), `None` for the others. Stored in the value-index objects the
    /// schema names, not in the manifest; empty or shorter than the schema when none.
    pub values: Vec<Option<Arc<ValuePostings>>>,
}

impl Manifest {
    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        self.meta.partitions.len()
    }

    /// Total number of fine lists.
    pub fn lists(&self) -> usize {
        self.list_counts.len()
    }

    /// Centroid of global list `l`.
    pub fn list_centroid(&self, l: usize) -> &[f32] {
        let d = self.meta.partition_dims as usize;
        &self.list_centroids[l * d..(l + 1) * d]
    }

    /// Code-presence bitmaps of global list `l`, [`PRESENCE_WORDS`] words per attribute.
    pub fn presence(&self, l: usize) -> &[u64] {
        let w = self.meta.schema.len() * PRESENCE_WORDS;
        &self.list_presence[l * w..(l + 1) * w]
    }

    /// Partition of global list `l` and its number inside the partition's segment.
    pub fn list_home(&self, l: usize) -> (u32, u32) {
        let p = self.list_start.partition_point(|&s| s as usize <= l).saturating_sub(1);
        (p as u32, (l - self.list_start[p] as usize) as u32)
    }

    /// Global numbers of partition `p`'s lists.
    pub fn lists_of(&self, p: usize) -> std::ops::Range<usize> {
        self.list_start[p] as usize..self.list_start[p + 1] as usize
    }

    /// Sets the number of rows global list `l` holds.
    pub fn set_list_count(&mut self, l: usize, rows: u32) {
        self.list_counts[l] = rows;
    }

    /// Records one more row in global list `l`, with attribute codes `codes` (one per
    /// attribute) now present in it.
    pub fn add_row_to_list(&mut self, l: usize, codes: impl IntoIterator<Item = u8>) {
        self.list_counts[l] += 1;
        let attrs = self.meta.schema.len();
        let codes: Vec<u8> = codes.into_iter().take(attrs).collect();
        if let Some(counts) = &mut self.list_code_counts {
            let w = attrs * PRESENCE_WORDS;
            counts.add_row(l, &self.list_presence[l * w..(l + 1) * w], &codes);
        }
        for (a, c) in codes.into_iter().enumerate() {
            self.list_presence[(l * attrs + a) * PRESENCE_WORDS + c as usize / 64] |= 1 << (c % 64);
        }
    }

    /// Replaces partition `p` with `info` and its lists with `counts` rows each, code
    /// presence `presence` ([`PRESENCE_WORDS`] words per attribute per list), code
    /// counts `code_counts` (one per list, as [`ListCodeCounts::of_list`]) and, when
    /// given, centroids `centroids` (`partition_dims` per list; `None` keeps the
    /// lists' centroids, so the number of lists must not change). The lists of the
    /// partitions after `p` are renumbered.
    pub fn replace_partition(
        &mut self,
        p: usize,
        info: PartitionInfo,
        counts: &[u32],
        presence: &[u64],
        code_counts: Vec<Vec<u16>>,
        centroids: Option<&[f32]>,
    ) {
        let old = self.lists_of(p);
        let pd = self.meta.partition_dims as usize;
        let w = self.meta.schema.len() * PRESENCE_WORDS;
        if let Some(cc) = &mut self.list_code_counts {
            let before = &self.list_presence;
            cc.splice(
                old.clone(),
                |l| &before[l * w..(l + 1) * w],
                code_counts,
                |i| &presence[i * w..(i + 1) * w],
            );
        }
        debug_assert_eq!(info.lists as usize, counts.len());
        debug_assert_eq!(presence.len(), counts.len() * w);
        debug_assert!(centroids.is_some() || counts.len() == old.len());
        if let Some(c) = centroids {
            debug_assert_eq!(c.len(), counts.len() * pd);
            self.list_centroids
                .splice(old.start * pd..old.end * pd, c.iter().copied());
        }
        self.list_counts.splice(old.clone(), counts.iter().copied());
        self.list_presence
            .splice(old.start * w..old.end * w, presence.iter().copied());
        self.meta.partitions[p] = info;
        self.list_start = Manifest::list_starts(&self.meta.partitions);
    }

    /// Prefix sums of the partitions' list counts (see [`Manifest::list_start`]).
    pub fn list_starts(partitions: &[PartitionInfo]) -> Vec<u32> {
        let mut out = Vec::with_capacity(partitions.len() + 1);
        let mut acc = 0u32;
        out.push(0);
        for p in partitions {
            acc = acc.saturating_add(p.lists);
            out.push(acc);
        }
        out
    }

    /// Serialises the manifest.
    pub fn encode(&self) -> Vec<u8> {
        let mut global = Vec::new();
        le::put_f32s(&mut global, &self.global.mean);
        le::put_f32s(&mut global, &self.global.eigenvalues);
        le::put_f32s(&mut global, &self.global.basis);
        let mut list_centroids = Vec::new();
        le::put_f32s(&mut list_centroids, &self.list_centroids);
        let mut list_counts = Vec::new();
        le::put_u32s(&mut list_counts, &self.list_counts);
        let mut presence = Vec::new();
        le::put_u64s(&mut presence, &self.list_presence);
        // A value-indexed attribute's dictionary lives in its value-index object.
        let mut meta = self.meta.clone();
        for spec in &mut meta.schema.attrs {
            if spec.values.is_some() {
                spec.dictionary = Vec::new();
            }
        }
        let meta = serde_json::to_vec(&meta).unwrap_or_default();
        write_container(
            MANIFEST_MAGIC,
            vec![
                SectionOut::zstd(META, meta),
                SectionOut::raw(GLOBAL, global),
                SectionOut::zstd(ATTR_CELLS, encode_cells(&self.attr_cells)),
                SectionOut::raw(LIST_CENTROIDS, list_centroids),
                SectionOut::zstd(LIST_COUNTS, list_counts),
                SectionOut::zstd(LIST_PRESENCE, presence),
            ]
            .into_iter()
            .chain(
                self.list_code_counts
                    .as_ref()
                    .map(|c| SectionOut::zstd(LIST_CODE_COUNTS, c.encode())),
            )
            .collect(),
        )
    }

    /// Postings of attribute `a`, if it is value-indexed.
    pub fn postings(&self, a: usize) -> Option<&ValuePostings> {
        self.values.get(a).and_then(|v| v.as_deref())
    }

    /// Encodes the value index of every attribute that has postings, points the schema
    /// at it and returns the objects to store (`(key, bytes)`), leaving out those whose
    /// key `previous` already names (unchanged content, already stored). Call before
    /// [`Manifest::encode`] whenever a dictionary or the postings changed.
    pub fn value_objects(&mut self, previous: Option<&Manifest>) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for a in 0..self.meta.schema.len() {
            let Some(postings) = self.values.get(a).and_then(|v| v.clone()) else {
                continue;
            };
            let spec = &mut self.meta.schema.attrs[a];
            // Unchanged since `previous` (the same postings, no string appended): its
            // object stands, nothing to encode.
            let same = previous.and_then(|m| {
                let old = m.meta.schema.attrs.get(a)?;
                let unchanged = m.values.get(a)?.as_ref().is_some_and(|p| Arc::ptr_eq(p, &postings))
                    && old.dictionary.len() == spec.dictionary.len();
                unchanged.then(|| old.values.clone()).flatten()
            });
            if let Some(r) = same {
                spec.values = Some(r);
                continue;
            }
            let bytes = encode_values(&spec.dictionary, &postings);
            let key = crate::naming::Naming::values_key(a, &bytes);
            let stored = previous
                .and_then(|m| m.meta.schema.attrs.get(a))
                .and_then(|s| s.values.as_ref())
                .is_some_and(|r| r.key == key);
            spec.values = Some(crate::attrs::ValuesRef {
                key: key.clone(),
                bytes: bytes.len() as u64,
                checksum: crate::naming::Naming::checksum(&bytes),
                strings: spec.dictionary.len() as u64,
                pairs: postings.pairs() as u64,
            });
            if !stored {
                out.push((key, bytes));
            }
        }
        out
    }

    /// Keys of the value-index objects the schema names and that are not attached yet
    /// (see [`Manifest::attach_values`]).
    pub fn pending_values(&self) -> Vec<String> {
        self.meta
            .schema
            .attrs
            .iter()
            .enumerate()
            .filter(|(a, s)| s.values.is_some() && self.postings(*a).is_none())
            .filter_map(|(_, s)| s.values.as_ref().map(|r| r.key.clone()))
            .collect()
    }

    /// Verifies the value-index object `key` (size, checksum, structure, fit with the
    /// manifest) and attaches its dictionary and postings to the attribute naming it.
    pub fn attach_values(&mut self, key: &str, bytes: &[u8]) -> Result<()> {
        let Some(a) = self
            .meta
            .schema
            .attrs
            .iter()
            .position(|s| s.values.as_ref().is_some_and(|r| r.key == key))
        else {
            return Err(CoreError::corrupt(
                key,
                "no attribute of the manifest names this value index",
            ));
        };
        let bad = |reason: String| CoreError::corrupt(key, reason);
        let r = self.meta.schema.attrs[a]
            .values
            .clone()
            .ok_or_else(|| bad("no reference".into()))?;
        if bytes.len() as u64 != r.bytes || crate::naming::Naming::checksum(bytes) != r.checksum {
            return Err(bad(format!(
                "size or checksum differs from the manifest's ({} bytes, expected {})",
                bytes.len(),
                r.bytes
            )));
        }
        let (strings, postings) = decode_values(key, bytes)?;
        if strings.len() as u64 != r.strings || postings.pairs() as u64 != r.pairs {
            return Err(bad("dictionary or postings size differs from the manifest's".into()));
        }
        if postings.max_list().is_some_and(|l| l as usize >= self.lists()) {
            return Err(bad(format!("postings name a list past the index's {}", self.lists())));
        }
        let spec = &mut self.meta.schema.attrs[a];
        if (spec.appended as usize) > strings.len() {
            return Err(bad("fewer strings than the manifest says writes appended".into()));
        }
        spec.dictionary = strings;
        self.values.resize(self.meta.schema.len(), None);
        self.values[a] = Some(Arc::new(postings));
        Ok(())
    }

    /// Decodes and verifies a manifest; `object` names it in errors. The dictionaries
    /// and postings of value-indexed attributes are left out: attach them with
    /// [`Manifest::attach_values`] for each key of [`Manifest::pending_values`] before
    /// searching or writing (reading object keys does not need them).
    pub fn decode(object: &str, bytes: &[u8]) -> Result<Manifest> {
        let c = Container::parse(object, MANIFEST_MAGIC, bytes)?;
        let bad = |reason: String| CoreError::corrupt(object, reason);
        let meta: ManifestMeta = serde_json::from_slice(&c.section(META)?)
            .map_err(|e| bad(format!("manifest metadata is not valid: {e}")))?;
        let dim = meta.stored_dim();
        let pd = meta.partition_dims as usize;
        let attrs = meta.schema.len();
        if dim == 0 || dim > 65_536 || pd == 0 || pd > dim {
            return Err(bad(format!("implausible dimensions {dim} / {pd}")));
        }
        let unsafe_key = |k: &str| k.is_empty() || k.starts_with('/') || k.split('/').any(|s| s == "..");
        for (i, p) in meta.partitions.iter().enumerate() {
            if p.id as usize != i {
                return Err(bad(format!("partition {i} is listed with id {}", p.id)));
            }
            let keys = std::iter::once(p.key.as_str())
                .chain(p.deletes.iter().map(|d| d.key.as_str()))
                .chain(
                    p.deltas
                        .iter()
                        .flat_map(|d| std::iter::once(d.key.as_str()).chain(d.deletes.iter().map(|x| x.key.as_str()))),
                );
            for k in keys {
                if unsafe_key(k) {
                    return Err(bad(format!("partition {i} has an unsafe key '{k}'")));
                }
            }
            let delta_rows: u64 = p.deltas.iter().map(|d| d.count).sum();
            let dead: u64 = p.deletes.as_ref().map_or(0, |d| d.rows)
                + p.deltas
                    .iter()
                    .map(|d| d.deletes.as_ref().map_or(0, |x| x.rows))
                    .sum::<u64>();
            if delta_rows > p.count || p.deleted > p.count || dead != p.deleted {
                return Err(bad(format!(
                    "partition {i}: deltas ({delta_rows} rows) and deletions ({dead} rows, {} counted) do not fit its {} rows",
                    p.deleted, p.count
                )));
            }
        }
        for spec in &meta.schema.attrs {
            if let Some(r) = &spec.values {
                if unsafe_key(&r.key) {
                    return Err(bad(format!("attribute '{}' has an unsafe key '{}'", spec.name, r.key)));
                }
            }
        }
        if meta.partitions.iter().map(|p| p.live()).sum::<u64>() != meta.count {
            return Err(bad("partition counts do not add up to the vector count".into()));
        }
        let g = c.section(GLOBAL)?;
        let mut r = le::Reader::new(&g, object, "GLOBAL");
        let mean = r.f32s(dim)?;
        let eigenvalues = r.f32s(pd)?;
        let basis = r.f32s(pd * dim)?;
        r.finish()?;
        let attr_cells = decode_cells(&c.section(ATTR_CELLS)?, object, attrs)?;
        let list_start = Manifest::list_starts(&meta.partitions);
        let lists = *list_start.last().unwrap_or(&0) as usize;
        if meta
            .partitions
            .iter()
            .any(|p| p.lists == 0 || u64::from(p.lists) > p.count.max(1))
        {
            return Err(bad("a partition has no lists or more lists than vectors".into()));
        }
        let lbytes = c.section(LIST_CENTROIDS)?;
        let mut r = le::Reader::new(&lbytes, object, "LIST_CENTROIDS");
        let list_centroids = r.f32s(lists * pd)?;
        r.finish()?;
        let cbytes = c.section(LIST_COUNTS)?;
        let mut r = le::Reader::new(&cbytes, object, "LIST_COUNTS");
        let list_counts = r.u32s(lists)?;
        r.finish()?;
        for (p, info) in meta.partitions.iter().enumerate() {
            let range = list_start[p] as usize..list_start[p + 1] as usize;
            if list_counts[range].iter().map(|&c| u64::from(c)).sum::<u64>() != info.count {
                return Err(bad(format!("list sizes of partition {p} do not add up to its count")));
            }
        }
        let pbytes = c.section(LIST_PRESENCE)?;
        let mut r = le::Reader::new(&pbytes, object, "LIST_PRESENCE");
        let list_presence = r.u64s(lists * attrs * PRESENCE_WORDS)?;
        r.finish()?;
        let list_code_counts = if c.has_section(LIST_CODE_COUNTS) {
            let bytes = c.section(LIST_CODE_COUNTS)?;
            let w = attrs * PRESENCE_WORDS;
            Some(
                ListCodeCounts::decode(&bytes, attrs, lists, |l| &list_presence[l * w..(l + 1) * w])
                    .ok_or_else(|| bad("LIST_CODE_COUNTS disagrees with the presence bitmaps".into()))?,
            )
        } else {
            None
        };
        Ok(Manifest {
            meta,
            global: Klt {
                dim,
                mean,
                basis,
                eigenvalues,
            },
            attr_cells,
            list_centroids,
            list_counts,
            list_presence,
            list_code_counts,
            list_start,
            values: Vec::new(),
        })
    }
}
