//! Encoding one partition from its rows: its own KLT, the OSQ quantiser (greedy bit
//! allocation, Lloyd-Max boundaries), sign bits and attribute codes, rows grouped by
//! fine list; then the segment object, its key and its manifest entry. The build and
//! folding both come through here; how the rows split into fine lists is the caller's
//! (the build clusters them, a fold keeps the lists they are in).

use crate::error::Result;
use crate::ids::Ids;
use crate::table::{Attributes, Matrix};
use squash_core::attrs::AttrCells;
use squash_core::binary::{encode_signs, words_for};
use squash_core::distance::Metric;
use squash_core::klt::Klt;
use squash_core::manifest::{PartitionInfo, PRESENCE_WORDS};
use squash_core::naming::Naming;
use squash_core::osq::{allocate_bits, Quantizer, MAX_BITS};
use squash_core::segment::{SegmentMeta, SegmentParts};

/// How a partition's quantiser is fitted.
#[derive(Debug, Clone, Copy)]
pub struct Quantisation {
    /// Average OSQ bits per dimension (greedy allocation, 1..=8).
    pub bits_per_dim: f32,
    /// Values per dimension used to fit Lloyd-Max boundaries.
    pub lloyd_sample: usize,
}

/// Default values per dimension used to fit Lloyd-Max boundaries.
pub const DEFAULT_LLOYD_SAMPLE: usize = 20_000;

/// Splits a partition's rows into fine lists: given its rows rotated by the
/// partition's KLT (`n × dim`) and the KLT's eigenvalues, returns the number of lists
/// and each row's list.
pub type Clusterer<'a> = &'a (dyn Fn(&[f32], usize, &[f32]) -> (usize, Vec<u32>) + Sync);

/// Which fine list each row of a partition goes to.
#[derive(Clone, Copy)]
pub enum ListsOf<'a> {
    /// Clustered from the rotated rows by this function (a build, a compaction).
    Cluster(Clusterer<'a>),
    /// As given: `lists` lists and each member row's list (a fold keeps them).
    Given {
        /// Number of lists.
        lists: usize,
        /// List of each member row, in the order of the rows.
        assignment: &'a [u32],
    },
}

/// One encoded partition: its segment, and per fine list its centroid in the global KLT
/// space and its attribute code-presence bitmaps.
pub struct Encoded {
    /// The segment.
    pub segment: SegmentParts,
    /// Input row of each segment row.
    pub rows: Vec<u32>,
    /// Each list's centroid in the global KLT space (`lists × global.out_dims()`).
    pub list_centroids: Vec<f32>,
    /// Each list's attribute code-presence bitmaps (`lists × attrs × PRESENCE_WORDS`).
    pub presence: Vec<u64>,
    /// Each list's code counts (see [`squash_core::summary`]).
    pub code_counts: Vec<Vec<u16>>,
}

/// A partition ready to store: the segment object and its key, and what the manifest
/// records of it.
pub struct PartitionObject {
    /// The partition's manifest entry (no deltas, no deletions).
    pub info: PartitionInfo,
    /// The segment object's bytes (stored under `info.key`).
    pub bytes: Vec<u8>,
    /// List offsets into the segment's rows (`lists + 1`).
    pub lists: Vec<u32>,
    /// Input row of each segment row.
    pub rows: Vec<u32>,
    /// As [`Encoded::list_centroids`].
    pub list_centroids: Vec<f32>,
    /// As [`Encoded::presence`].
    pub presence: Vec<u64>,
    /// As [`Encoded::code_counts`].
    pub code_counts: Vec<Vec<u16>>,
}

impl PartitionObject {
    /// Rows in each fine list.
    pub fn list_counts(&self) -> Vec<u32> {
        self.lists.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

impl Encoded {
    /// Encodes the segment and names it ([`Naming::segment_key`]).
    pub fn into_object(self) -> Result<PartitionObject> {
        let pid = self.segment.meta.partition;
        let count = self.segment.meta.count;
        let bytes = self.segment.encode();
        let key = Naming::segment_key(pid, &bytes);
        let head = squash_core::segment::head_len_of(&key, &bytes)?;
        let info = PartitionInfo {
            id: pid,
            count,
            key,
            bytes: bytes.len() as u64,
            checksum: Naming::checksum(&bytes),
            lists: (self.segment.lists.len() - 1) as u32,
            head,
            deltas: Vec::new(),
            deletes: None,
            deleted: 0,
        };
        Ok(PartitionObject {
            info,
            bytes,
            lists: self.segment.lists,
            rows: self.rows,
            list_centroids: self.list_centroids,
            presence: self.presence,
            code_counts: self.code_counts,
        })
    }
}

/// The rows, attributes and shared state a partition is encoded from.
pub struct PartitionInput<'a> {
    /// The vectors (prepared as stored).
    pub vectors: &'a Matrix,
    /// Their attributes (the index's columns).
    pub attrs: &'a Attributes,
    /// Their ids.
    pub ids: &'a Ids,
    /// The index's attribute cells.
    pub attr_cells: &'a [AttrCells],
    /// The global KLT the planner ranks lists in.
    pub global: &'a Klt,
    /// The metric.
    pub metric: Metric,
    /// How to fit the quantiser.
    pub quantisation: Quantisation,
    /// Codes per bucket of each attribute's per-list counts (the index's; see
    /// [`squash_core::summary::bucket_widths`]).
    pub count_widths: &'a [usize],
}

/// Builds the segment of partition `pid` from its member `rows` of `input`, grouped by
/// fine list as `lists` says.
pub fn encode_partition(pid: u32, rows: &[usize], input: &PartitionInput, lists: ListsOf) -> Encoded {
    let PartitionInput {
        vectors,
        attrs,
        ids,
        attr_cells,
        global,
        metric,
        quantisation,
        count_widths,
    } = *input;
    let dim = vectors.cols;
    let n = rows.len();
    let klt = Klt::fit(rows.iter().map(|&r| vectors.row(r)), dim, dim);
    let mut rotated = vec![0f32; n * dim];
    let mut scratch = vec![0f32; dim];
    for (&r, out) in rows.iter().zip(rotated.chunks_exact_mut(dim)) {
        klt.apply(vectors.row(r), &mut scratch, out);
    }
    // Order the rows list by list (stable inside a list).
    let (lists, assignment) = match lists {
        ListsOf::Given { lists, assignment } => (lists, assignment.to_vec()),
        ListsOf::Cluster(cluster) => cluster(&rotated, dim, &klt.eigenvalues),
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| assignment[i]);
    let mut offsets = vec![0u32; lists + 1];
    for &l in &assignment {
        offsets[l as usize + 1] += 1;
    }
    for l in 0..lists {
        offsets[l + 1] += offsets[l];
    }
    let rotated: Vec<f32> = order
        .iter()
        .flat_map(|&i| rotated[i * dim..(i + 1) * dim].iter().copied())
        .collect();
    let rows: Vec<usize> = order.iter().map(|&i| rows[i]).collect();

    let mut data = Vec::with_capacity(n * dim);
    for &r in &rows {
        data.extend_from_slice(vectors.row(r));
    }
    let total_bits = (quantisation.bits_per_dim as f64 * dim as f64).round() as usize;
    let bits = allocate_bits(&klt.eigenvalues, total_bits, MAX_BITS);
    let quantizer = Quantizer::train(&rotated, dim, &bits, quantisation.lloyd_sample);
    let width = bits.iter().filter(|&&b| b > 0).count();
    let mut codes = vec![0u8; n * width];
    let words = words_for(dim);
    let mut signs = vec![0u64; n * words];
    for i in 0..n {
        let y = &rotated[i * dim..(i + 1) * dim];
        quantizer.encode(y, &mut codes[i * width..(i + 1) * width]);
        encode_signs(y, &mut signs[i * words..(i + 1) * words]);
    }
    let attr_codes: Vec<Vec<u8>> = attr_cells
        .iter()
        .enumerate()
        .map(|(a, cells)| rows.iter().map(|&r| cells.encode_value(attrs.value(a, r))).collect())
        .collect();
    let Attributes {
        columns: attr_values,
        lists: attr_lists,
        ..
    } = attrs.select(&rows);
    // Per list: the centroid of its vectors, in the global KLT space the planner ranks
    // in, and which attribute codes occur.
    let mut list_centroids = Vec::with_capacity(lists * global.out_dims());
    let mut presence = vec![0u64; lists * attr_codes.len() * PRESENCE_WORDS];
    let mut code_counts = Vec::with_capacity(lists);
    for l in 0..lists {
        let range = offsets[l] as usize..offsets[l + 1] as usize;
        let mut mean = vec![0f64; dim];
        for r in range.clone() {
            for (m, &x) in mean.iter_mut().zip(&data[r * dim..(r + 1) * dim]) {
                *m += x as f64;
            }
        }
        let count = range.len().max(1) as f64;
        let mean: Vec<f32> = mean.iter().map(|&m| (m / count) as f32).collect();
        list_centroids.extend(global.transform(&mean));
        for (a, col) in attr_codes.iter().enumerate() {
            let bits = &mut presence[(l * attr_codes.len() + a) * PRESENCE_WORDS..][..PRESENCE_WORDS];
            for &c in &col[range.clone()] {
                bits[c as usize / 64] |= 1 << (c % 64);
            }
        }
        let w = attr_codes.len() * PRESENCE_WORDS;
        code_counts.push(squash_core::summary::list_counts(
            count_widths,
            |a| &attr_codes[a][range.clone()],
            &presence[l * w..(l + 1) * w],
        ));
    }
    let segment = SegmentParts {
        meta: SegmentMeta {
            partition: pid,
            count: n as u64,
            dim: dim as u32,
            metric,
            attrs: attrs.columns.len() as u32,
        },
        klt,
        quantizer,
        codes,
        signs,
        attr_cells: attr_cells.to_vec(),
        attr_codes,
        ids: rows.iter().map(|&r| ids.key(r)).collect(),
        names: rows.iter().filter_map(|&r| ids.name(r).map(str::to_string)).collect(),
        attr_values,
        attr_lists,
        vectors: data,
        lists: offsets,
    };
    Encoded {
        segment,
        rows: rows.iter().map(|&r| r as u32).collect(),
        list_centroids,
        presence,
        code_counts,
    }
}
