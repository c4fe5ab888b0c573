//! The manifest: the single source of truth of an index. It names every segment (by a
//! content-hashed key, with size and checksum) and carries what the planner needs:
//! the global KLT, partition centroids, per-partition attribute histograms.
//! Byte layout in `docs/FORMAT.md`.

use crate::attrs::{AttrCells, Schema, CODES};
use crate::container::{le, write_container, Container, SectionOut};
use crate::distance::Metric;
use crate::error::{CoreError, Result};
use crate::klt::Klt;
use crate::segment::{decode_cells, encode_cells};
use serde::{Deserialize, Serialize};

/// Key of the manifest object under an index's root.
pub const MANIFEST_KEY: &str = "manifest.sqm";

/// Magic of manifest objects.
pub const MANIFEST_MAGIC: &[u8; 8] = b"SQUASHMF";

const META: u32 = 1;
const GLOBAL: u32 = 2;
const CENTROIDS: u32 = 3;
const ATTR_CELLS: u32 = 4;
const HISTOGRAMS: u32 = 5;

/// One partition as the manifest knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionInfo {
    /// Partition number (index into centroids and histograms).
    pub id: u32,
    /// Number of vectors.
    pub count: u64,
    /// Object key of the segment, relative to the index root.
    pub key: String,
    /// Size of the segment object in bytes.
    pub bytes: u64,
    /// xxh3-64 of the whole segment object, 16 lowercase hex digits.
    pub checksum: String,
}

/// Default search knobs, chosen at build time and overridable per query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchDefaults {
    /// Fewest partitions searched (closest centroids first).
    pub nprobe: u32,
    /// Each searched partition re-ranks at most `k × rerank_factor` candidates exactly.
    pub rerank_factor: u32,
    /// Fraction of filtered candidates kept by the Hamming prune (1 = no prune).
    pub hamming_keep: f32,
    /// Filter sufficiency: keep adding partitions until the estimated matching vectors
    /// reach `safety × k` (and at least `nprobe` partitions).
    pub safety: f32,
}

/// Descriptive fields of a manifest (stored as zstd-compressed JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestMeta {
    /// Vector dimension.
    pub dim: u32,
    /// Distance metric.
    pub metric: Metric,
    /// Total number of vectors.
    pub count: u64,
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

/// A decoded manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Descriptive fields.
    pub meta: ManifestMeta,
    /// Global KLT truncated to `partition_dims` directions.
    pub global: Klt,
    /// Partition centroids in the global KLT space, `partitions × partition_dims`.
    pub centroids: Vec<f32>,
    /// Attribute cells, one per attribute.
    pub attr_cells: Vec<AttrCells>,
    /// Code histograms, `partitions × attrs × 256` counts.
    pub histograms: Vec<u32>,
}

impl Manifest {
    /// Number of partitions.
    pub fn partitions(&self) -> usize {
        self.meta.partitions.len()
    }

    /// Centroid of partition `p`.
    pub fn centroid(&self, p: usize) -> &[f32] {
        let d = self.meta.partition_dims as usize;
        &self.centroids[p * d..(p + 1) * d]
    }

    /// Histogram of attribute `a` in partition `p` (256 counts).
    pub fn histogram(&self, p: usize, a: usize) -> &[u32] {
        let attrs = self.meta.schema.len();
        let at = (p * attrs + a) * CODES;
        &self.histograms[at..at + CODES]
    }

    /// Serialises the manifest.
    pub fn encode(&self) -> Vec<u8> {
        let mut global = Vec::new();
        le::put_f32s(&mut global, &self.global.mean);
        le::put_f32s(&mut global, &self.global.eigenvalues);
        le::put_f32s(&mut global, &self.global.basis);
        let mut centroids = Vec::new();
        le::put_f32s(&mut centroids, &self.centroids);
        let mut hist = Vec::new();
        le::put_u32s(&mut hist, &self.histograms);
        let meta = serde_json::to_vec(&self.meta).unwrap_or_default();
        write_container(
            MANIFEST_MAGIC,
            vec![
                SectionOut::zstd(META, meta),
                SectionOut::raw(GLOBAL, global),
                SectionOut::raw(CENTROIDS, centroids),
                SectionOut::zstd(ATTR_CELLS, encode_cells(&self.attr_cells)),
                SectionOut::zstd(HISTOGRAMS, hist),
            ],
        )
    }

    /// Decodes and verifies a manifest; `object` names it in errors.
    pub fn decode(object: &str, bytes: &[u8]) -> Result<Manifest> {
        let c = Container::parse(object, MANIFEST_MAGIC, bytes)?;
        let bad = |reason: String| CoreError::corrupt(object, reason);
        let meta: ManifestMeta = serde_json::from_slice(&c.section(META)?)
            .map_err(|e| bad(format!("manifest metadata is not valid: {e}")))?;
        let dim = meta.dim as usize;
        let pd = meta.partition_dims as usize;
        let parts = meta.partitions.len();
        let attrs = meta.schema.len();
        if dim == 0 || dim > 65_536 || pd == 0 || pd > dim {
            return Err(bad(format!("implausible dimensions {dim} / {pd}")));
        }
        for (i, p) in meta.partitions.iter().enumerate() {
            if p.id as usize != i {
                return Err(bad(format!("partition {i} is listed with id {}", p.id)));
            }
            if p.key.is_empty() || p.key.starts_with('/') || p.key.split('/').any(|s| s == "..") {
                return Err(bad(format!("partition {i} has an unsafe key '{}'", p.key)));
            }
        }
        if meta.partitions.iter().map(|p| p.count).sum::<u64>() != meta.count {
            return Err(bad("partition counts do not add up to the vector count".into()));
        }
        let g = c.section(GLOBAL)?;
        let mut r = le::Reader::new(&g, object, "GLOBAL");
        let mean = r.f32s(dim)?;
        let eigenvalues = r.f32s(pd)?;
        let basis = r.f32s(pd * dim)?;
        r.finish()?;
        let cbytes = c.section(CENTROIDS)?;
        let mut r = le::Reader::new(&cbytes, object, "CENTROIDS");
        let centroids = r.f32s(parts * pd)?;
        r.finish()?;
        let attr_cells = decode_cells(&c.section(ATTR_CELLS)?, object, attrs)?;
        let hbytes = c.section(HISTOGRAMS)?;
        let mut r = le::Reader::new(&hbytes, object, "HISTOGRAMS");
        let histograms = r.u32s(parts * attrs * CODES)?;
        r.finish()?;
        Ok(Manifest {
            meta,
            global: Klt {
                dim,
                mean,
                basis,
                eigenvalues,
            },
            centroids,
            attr_cells,
            histograms,
        })
    }
}
