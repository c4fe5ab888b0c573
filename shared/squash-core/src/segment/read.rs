//! Reading segment objects in place: the section layout, the checks a fetched object
//! passes, and the [`Segment`] view the scan reads.

use crate::attrs::{AttrCells, AttrValue};
use crate::container::{le, Container};
use crate::distance::Metric;
use crate::error::{CoreError, Result};
use crate::klt::Klt;
use crate::osq::{Quantizer, MAX_BITS};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

use super::cells::decode_cells;

#[cfg(target_endian = "big")]
compile_error!("squash reads its little-endian sections in place: big-endian targets are not supported");

/// Magic of segment objects.
pub const SEGMENT_MAGIC: &[u8; 8] = b"SQUASHSG";

pub(super) const META: u32 = 1;
pub(super) const KLT: u32 = 2;
pub(super) const QUANT: u32 = 3;
pub(super) const SIGNS: u32 = 5;
pub(super) const ATTR_CELLS: u32 = 6;
pub(super) const ATTR_CODES: u32 = 7;
pub(super) const IDS: u32 = 8;
pub(super) const ATTRS: u32 = 9;
pub(super) const VECTORS: u32 = 10;
pub(super) const LISTS: u32 = 11;
pub(super) const BLOCKS: u32 = 12;
pub(super) const SUMS: u32 = 13;
pub(super) const NAMES: u32 = 14;
pub(super) const ELEM_OFFSETS: u32 = 15;
pub(super) const ELEMENTS: u32 = 16;

/// Target size of one vector block of the SUMS section: the unit in which a ranged read
/// fetches full vectors for the exact re-rank (one page).
const VECTOR_BLOCK_BYTES: usize = 4096;

/// Ranges of a fetch plan closer than this are fetched as one (the gap's bytes cost less
/// than another request).
pub(super) const COALESCE_GAP: u64 = 8192;

/// Rows per vector block of a segment of dimension `dim` (see [`VECTOR_BLOCK_BYTES`]).
pub fn vector_block_rows(dim: usize) -> usize {
    (VECTOR_BLOCK_BYTES / (dim.max(1) * 4)).max(1)
}

/// Byte ranges of one list's scanned data relative to each section's start, in the order
/// its SUMS checksum covers them: blocked codes, sign bits, each attribute's codes, each
/// attribute's values, each list attribute's elements (`elems`, byte ranges in
/// ELEMENTS), ids.
pub(super) fn list_parts(
    rows: Range<usize>,
    blocks: Range<usize>,
    n: usize,
    attrs: usize,
    words: usize,
    elems: Vec<Range<usize>>,
) -> Vec<(u32, Range<usize>)> {
    let mut v = Vec::with_capacity(3 + 2 * attrs);
    v.push((BLOCKS, blocks));
    v.push((SIGNS, rows.start * words * 8..rows.end * words * 8));
    for a in 0..attrs {
        v.push((ATTR_CODES, a * n + rows.start..a * n + rows.end));
    }
    for a in 0..attrs {
        v.push((ATTRS, (a * n + rows.start) * 8..(a * n + rows.end) * 8));
    }
    v.extend(elems.into_iter().map(|r| (ELEMENTS, r)));
    v.push((IDS, rows.start * 8..rows.end * 8));
    v
}

/// Byte ranges in ELEMENTS of rows `rows` of each list attribute, given each list
/// attribute's first element (`base`, in elements) and row offsets.
pub(super) fn elem_ranges<'a>(
    rows: &Range<usize>,
    lists: impl Iterator<Item = (usize, &'a [u32])>,
) -> Vec<Range<usize>> {
    lists
        .map(|(base, off)| {
            let at = |r: usize| (base + off.get(r).copied().unwrap_or(0) as usize) * 8;
            at(rows.start)..at(rows.end)
        })
        .collect()
}

/// Offsets of each list's blocked codes within BLOCKS (one more than there are lists).
pub(super) fn block_starts(lists: &[u32], width: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(lists.len());
    let mut at = 0;
    out.push(0);
    for w in lists.windows(2) {
        at += crate::fastscan::list_bytes((w[1] - w[0]) as usize, width);
        out.push(at);
    }
    out
}

/// Small descriptive fields of a segment (stored as zstd-compressed JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Partition number.
    pub partition: u32,
    /// Number of vectors.
    pub count: u64,
    /// Vector dimension.
    pub dim: u32,
    /// Distance metric (vectors are stored prepared for it).
    pub metric: Metric,
    /// Number of attribute columns.
    pub attrs: u32,
}

/// A segment's string ids, decoded from its NAMES section.
#[derive(Debug, PartialEq)]
pub(super) struct Names {
    offsets: Vec<u32>,
    text: String,
}

impl Names {
    fn decode(bytes: &[u8], object: &str, n: usize) -> Result<Names> {
        let bad = |reason: &str| CoreError::corrupt(object, format!("NAMES section: {reason}"));
        let mut r = le::Reader::new(bytes, object, "NAMES");
        let offsets = r.u32s(n + 1)?;
        let rest = &bytes[(n + 1) * 4..];
        if offsets[0] != 0 || offsets.windows(2).any(|w| w[0] > w[1]) || offsets[n] as usize != rest.len() {
            return Err(bad("offsets are not ascending to the text's length"));
        }
        let text = String::from_utf8(rest.to_vec()).map_err(|_| bad("a name is not UTF-8"))?;
        if offsets.iter().any(|&o| !text.is_char_boundary(o as usize)) {
            return Err(bad("an offset splits a character"));
        }
        Ok(Names { offsets, text })
    }

    fn get(&self, row: usize) -> &str {
        &self.text[self.offsets[row] as usize..self.offsets[row + 1] as usize]
    }
}

/// Bytes before the first scanned section of an encoded segment (what
/// [`Segment::open_head`] needs), read from its container header; `object` names it in errors.
pub fn head_len_of(object: &str, bytes: &[u8]) -> Result<u64> {
    let c = Container::parse(object, SEGMENT_MAGIC, bytes)?;
    Ok(c.raw_range_unverified(BLOCKS)?.start as u64)
}

/// An 8-byte aligned copy of bytes whose buffer was not aligned.
pub(super) struct Aligned {
    pub(super) words: Vec<u64>,
    pub(super) len: usize,
}

impl AsRef<[u8]> for Aligned {
    fn as_ref(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[..self.len]
    }
}

/// A segment read in place from its object's bytes (see the module documentation).
/// Cheap to share behind an `Arc`; every accessor is a slice into the one buffer.
#[derive(Debug, Clone)]
pub struct Segment {
    pub(super) buf: Bytes,
    pub(super) meta: SegmentMeta,
    pub(super) klt: Klt,
    pub(super) quantizer: Quantizer,
    pub(super) scan_bounds: crate::fastscan::ScanBounds,
    pub(super) attr_cells: Vec<AttrCells>,
    /// 128-bit hash of the ATTR_CELLS section: segments with equal tags have equal
    /// cells (a filter compiled for one serves the other).
    pub(super) cells_tag: u128,
    pub(super) lists: Vec<u32>,
    pub(super) block_starts: Vec<usize>,
    pub(super) blocks: Range<usize>,
    pub(super) signs: Range<usize>,
    pub(super) attr_codes: Range<usize>,
    pub(super) attr_values: Range<usize>,
    /// Per attribute: a list attribute's first element in ELEMENTS and its row offsets.
    pub(super) elem_offsets: Arc<Vec<Option<ElemOffsets>>>,
    pub(super) elements: Range<usize>,
    pub(super) ids: Range<usize>,
    pub(super) vectors: Range<usize>,
    /// String ids (the NAMES section), in an index of string ids.
    pub(super) names: Option<Arc<Names>>,
    /// Decoded SUMS section (absent in segments written before it existed: those are
    /// only ever read whole).
    pub(super) sums: Option<Arc<Sums>>,
    /// For a segment read by ranges: which lists and vector blocks its buffer holds (the
    /// rest of the buffer is zeros, never read). `None` for a whole segment.
    pub(super) present: Option<Arc<Present>>,
}

/// A list attribute's first element in ELEMENTS and its `N + 1` row offsets.
pub(super) type ElemOffsets = (usize, Vec<u32>);

/// The SUMS section, decoded.
#[derive(Debug)]
pub(super) struct Sums {
    pub(super) block_rows: usize,
    pub(super) lists: Vec<u64>,
    pub(super) blocks: Vec<u64>,
}

/// What a segment read by ranges holds.
#[derive(Debug, Clone)]
pub(super) struct Present {
    pub(super) lists: Vec<bool>,
    pub(super) blocks: Vec<bool>,
}

impl PartialEq for Segment {
    fn eq(&self, other: &Segment) -> bool {
        self.buf == other.buf
    }
}

impl Segment {
    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.meta.count as usize
    }
    /// True when the segment holds no vectors.
    pub fn is_empty(&self) -> bool {
        self.meta.count == 0
    }
    /// Descriptive fields.
    pub fn meta(&self) -> &SegmentMeta {
        &self.meta
    }
    /// The partition's KLT.
    pub fn klt(&self) -> &Klt {
        &self.klt
    }
    /// The partition's OSQ quantiser.
    pub fn quantizer(&self) -> &Quantizer {
        &self.quantizer
    }
    /// The quantiser's boundaries as the blocked scan reads them (derived at load).
    pub fn scan_bounds(&self) -> &crate::fastscan::ScanBounds {
        &self.scan_bounds
    }
    /// Attribute cells (shared by all partitions of the index).
    pub fn attr_cells(&self) -> &[AttrCells] {
        &self.attr_cells
    }
    /// A 128-bit hash of the attribute cells: equal tags mean equal cells (comparing
    /// tags is cheaper than comparing the cells, which queries do per segment).
    pub fn cells_tag(&self) -> u128 {
        self.cells_tag
    }
    /// List offsets: list `l` holds rows `lists()[l]..lists()[l + 1]`.
    pub fn lists(&self) -> &[u32] {
        &self.lists
    }
    /// Number of dimensions that carry OSQ codes.
    pub fn code_width(&self) -> usize {
        self.quantizer.bits.iter().filter(|&&b| b > 0).count()
    }
    /// Number of u64 words of sign bits per vector.
    pub fn sign_words(&self) -> usize {
        crate::binary::words_for(self.meta.dim as usize)
    }
    /// Number of fine lists.
    pub fn list_count(&self) -> usize {
        self.lists.len().saturating_sub(1)
    }
    /// Rows of list `l` (empty for a list the segment does not have).
    pub fn list_rows(&self, l: usize) -> Range<usize> {
        match (self.lists.get(l), self.lists.get(l + 1)) {
            (Some(&a), Some(&b)) => a as usize..b as usize,
            _ => 0..0,
        }
    }
    /// List `l`'s codes in the blocked layout of [`crate::fastscan`] (empty for a list
    /// the segment does not have).
    pub fn list_blocks(&self, l: usize) -> &[u8] {
        match (self.block_starts.get(l), self.block_starts.get(l + 1)) {
            (Some(&a), Some(&b)) => &self.buf[self.blocks.start + a..self.blocks.start + b],
            _ => &[],
        }
    }
    /// Sign bits of row `row` ([`Segment::sign_words`] words).
    pub fn signs(&self, row: usize) -> &[u64] {
        let w = self.sign_words();
        &self.words_u64(&self.signs)[row * w..(row + 1) * w]
    }
    /// Attribute codes of attribute `a`, one byte per row.
    pub fn attr_codes(&self, a: usize) -> &[u8] {
        let n = self.len();
        &self.buf[self.attr_codes.start + a * n..self.attr_codes.start + (a + 1) * n]
    }
    /// Exact values of attribute `a`, one per row (`NaN` = missing).
    pub fn attr_column(&self, a: usize) -> &[f64] {
        let n = self.len();
        &bytemuck::cast_slice::<u8, f64>(&self.buf[self.attr_values.clone()])[a * n..(a + 1) * n]
    }
    /// Every attribute's exact values, column by column.
    pub fn attr_columns(&self) -> Vec<&[f64]> {
        (0..self.meta.attrs as usize).map(|a| self.attr_column(a)).collect()
    }
    /// Elements of list attribute `a` at `row` (empty for a single-valued attribute).
    pub fn list_elements(&self, a: usize, row: usize) -> &[f64] {
        match self.elem_offsets.get(a) {
            Some(Some((base, off))) => {
                let all = bytemuck::cast_slice::<u8, f64>(&self.buf[self.elements.clone()]);
                let (s, e) = (off[row] as usize, off[row + 1] as usize);
                &all[base + s..base + e]
            }
            _ => &[],
        }
    }
    /// Value of attribute `a` at `row`, as filters evaluate it.
    pub fn attr_value(&self, a: usize, row: usize) -> AttrValue<'_> {
        let v = self.attr_column(a)[row];
        match self.elem_offsets.get(a) {
            Some(Some(_)) if v.is_nan() => AttrValue::List(None),
            Some(Some(_)) => AttrValue::List(Some(self.list_elements(a, row))),
            _ => AttrValue::Scalar(v),
        }
    }
    /// Vector ids, one per row.
    pub fn ids(&self) -> &[u64] {
        self.words_u64(&self.ids)
    }
    /// String id of row `row`, in an index of string ids.
    pub fn name(&self, row: usize) -> Option<&str> {
        self.names.as_ref().map(|n| n.get(row))
    }

    /// True when the rows carry string ids ([`Segment::name`]).
    pub fn has_names(&self) -> bool {
        self.names.is_some()
    }

    /// Byte range of the IDS section in the object (to read the ids alone by range).
    pub fn ids_range(&self) -> Range<u64> {
        self.ids.start as u64..self.ids.end as u64
    }

    /// Byte range of the ATTRS section in the object (every attribute's exact values).
    pub fn attrs_range(&self) -> Range<u64> {
        self.attr_values.start as u64..self.attr_values.end as u64
    }

    /// Id of `row` (for string ids, the xxh3-64 of its name).
    pub fn id(&self, row: usize) -> u64 {
        self.ids()[row]
    }
    /// Full prepared vector of row `row`.
    pub fn vector(&self, row: usize) -> &[f32] {
        let d = self.meta.dim as usize;
        &bytemuck::cast_slice::<u8, f32>(&self.buf[self.vectors.clone()])[row * d..(row + 1) * d]
    }
    /// The encoded object this segment reads from.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
    /// Bytes this segment holds on the heap besides its object buffer (decoded
    /// parameters and tables), for cache accounting.
    pub fn decoded_bytes(&self) -> u64 {
        let f = std::mem::size_of::<f32>();
        let klt = (self.klt.mean.len() + self.klt.eigenvalues.len() + self.klt.basis.len()) * f;
        let quant: usize = self.quantizer.bounds.iter().map(|b| b.len() * f + 1).sum();
        let cells: usize = self.attr_cells.iter().map(|c| c.len() * 16).sum();
        let scan = self.scan_bounds.cells.len() * 17 * f;
        let elems: usize = self.elem_offsets.iter().flatten().map(|(_, o)| o.len() * 4).sum();
        (klt + quant + cells + scan + elems + self.lists.len() * 4 + self.block_starts.len() * 8) as u64
            + std::mem::size_of::<Segment>() as u64
    }

    /// Bytes before the first scanned section: the parameters a ranged read fetches first.
    pub fn head_len(&self) -> usize {
        self.blocks.start
    }
    /// True when the segment carries the per-list and per-block checksums that reading
    /// it by ranges needs.
    pub fn supports_ranges(&self) -> bool {
        self.sums.is_some()
    }
    /// True when the segment was read by ranges and holds only some lists and vectors.
    pub fn is_partial(&self) -> bool {
        self.present.is_some()
    }
    /// True when list `l`'s scanned data is held (always, for a whole segment).
    pub fn has_list(&self, l: usize) -> bool {
        self.present
            .as_ref()
            .is_none_or(|p| p.lists.get(l).copied().unwrap_or(false))
    }
    /// True when row `row`'s full vector is held (always, for a whole segment).
    pub fn has_vector(&self, row: usize) -> bool {
        match (&self.present, &self.sums) {
            (Some(p), Some(s)) => p.blocks.get(row / s.block_rows).copied().unwrap_or(false),
            _ => true,
        }
    }
    /// Bytes of the object this segment holds: all of it when whole, the head and the
    /// fetched parts when read by ranges.
    pub fn resident_bytes(&self) -> u64 {
        match &self.present {
            None => self.buf.len() as u64,
            Some(p) => {
                let lists: usize = (0..self.list_count())
                    .filter(|&l| p.lists[l])
                    .map(|l| self.list_ranges(l).iter().map(|r| r.len()).sum::<usize>())
                    .sum();
                let blocks: usize = (0..p.blocks.len())
                    .filter(|&b| p.blocks[b])
                    .map(|b| self.block_range(b).len())
                    .sum();
                (self.head_len() + lists + blocks) as u64
            }
        }
    }

    fn words_u64(&self, r: &Range<usize>) -> &[u64] {
        bytemuck::cast_slice::<u8, u64>(&self.buf[r.clone()])
    }

    /// Decodes and verifies a segment, checking every section's checksum; `object`
    /// names it in errors.
    pub fn decode(object: &str, bytes: impl Into<Bytes>) -> Result<Segment> {
        Segment::open(object, bytes.into(), Open::Verify)
    }

    /// As [`Segment::decode`], for bytes whose whole-object checksum the caller has
    /// already checked against the manifest: section checksums are not recomputed
    /// (the structure is still validated).
    pub fn decode_verified(object: &str, bytes: impl Into<Bytes>) -> Result<Segment> {
        Segment::open(object, bytes.into(), Open::Trusted)
    }

    pub(super) fn open(object: &str, buf: Bytes, mode: Open) -> Result<Segment> {
        // Sections are 8-byte aligned within the object: read them in place once the
        // buffer itself is aligned (copy it once when it is not).
        let buf = if (buf.as_ptr() as usize).is_multiple_of(8) {
            buf
        } else {
            let mut words = vec![0u64; buf.len().div_ceil(8)];
            bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..buf.len()].copy_from_slice(&buf);
            Bytes::from_owner(Aligned { words, len: buf.len() })
        };
        let mut c = Container::parse(object, SEGMENT_MAGIC, &buf)?;
        if mode == Open::Trusted {
            c.trust_section_checksums();
        }
        let bad = |reason: String| CoreError::corrupt(object, reason);
        let meta: SegmentMeta = serde_json::from_slice(&c.section(META)?)
            .map_err(|e| bad(format!("segment metadata is not valid: {e}")))?;
        let dim = meta.dim as usize;
        let n = usize::try_from(meta.count).map_err(|_| bad("count too large".into()))?;
        let a = meta.attrs as usize;
        if dim == 0 || dim > 65_536 {
            return Err(bad(format!("implausible dimension {dim}")));
        }
        // Every section length below is n × something: reject counts that could overflow
        // before they reach a multiplication.
        if n.checked_mul(dim.max(a).max(1) * 8)
            .is_none_or(|total| total > buf.len().saturating_mul(64))
        {
            return Err(bad(format!("implausible vector count {n}")));
        }
        let klt_bytes = c.section(KLT)?;
        let mut r = le::Reader::new(&klt_bytes, object, "KLT");
        let mean = r.f32s(dim)?;
        let eigenvalues = r.f32s(dim)?;
        let basis = r.f32s(dim * dim)?;
        r.finish()?;
        let klt = Klt {
            dim,
            mean,
            basis,
            eigenvalues,
        };

        let quant_bytes = c.section(QUANT)?;
        let mut r = le::Reader::new(&quant_bytes, object, "QUANT");
        let bits = r.take(dim)?.to_vec();
        if bits.iter().any(|&b| b > MAX_BITS) {
            return Err(bad("a dimension has more than 8 bits".into()));
        }
        let mut bounds = Vec::with_capacity(dim);
        for &b in &bits {
            let v = r.f32s((1usize << b) + 1)?;
            if v.windows(2)
                .any(|w| w[0].partial_cmp(&w[1]) == Some(std::cmp::Ordering::Greater) || w[0].is_nan())
            {
                return Err(bad("quantiser boundaries are not ascending".into()));
            }
            bounds.push(v);
        }
        r.finish()?;
        let quantizer = Quantizer { bits, bounds };
        let width = quantizer.bits.iter().filter(|&&b| b > 0).count();

        let cell_bytes = c.section(ATTR_CELLS)?;
        let cells_tag = xxhash_rust::xxh3::xxh3_128(&cell_bytes);
        let attr_cells = decode_cells(&cell_bytes, object, a)?;
        let list_bytes = c.section(LISTS)?;
        if list_bytes.len() % 4 != 0 || list_bytes.len() < 8 {
            return Err(bad("list offsets section has the wrong length".into()));
        }
        let mut r = le::Reader::new(&list_bytes, object, "LISTS");
        let lists = r.u32s(list_bytes.len() / 4)?;
        r.finish()?;
        if lists.first() != Some(&0)
            || lists.last().map(|&l| l as usize) != Some(n)
            || lists.windows(2).any(|w| w[0] > w[1])
        {
            return Err(bad("list offsets are not ascending from 0 to the row count".into()));
        }
        let block_starts = block_starts(&lists, width);
        let at = block_starts.last().copied().unwrap_or(0);
        let names = match c.has_section(NAMES) {
            false => None,
            true => Some(Arc::new(Names::decode(&c.section(NAMES)?, object, n)?)),
        };
        let sums = match c.has_section(SUMS) {
            false => None,
            true => {
                let bytes = c.section(SUMS)?;
                let mut r = le::Reader::new(&bytes, object, "SUMS");
                let block_rows = r.u32()? as usize;
                let list_count = r.u32()? as usize;
                if block_rows == 0 || list_count + 1 != lists.len() {
                    return Err(bad("SUMS section does not match the lists".into()));
                }
                let lists = r.u64s(list_count)?;
                let blocks = r.u64s(n.div_ceil(block_rows))?;
                r.finish()?;
                Some(Arc::new(Sums {
                    block_rows,
                    lists,
                    blocks,
                }))
            }
        };

        // The scanned sections, read in place: each must be raw, 8-byte aligned and
        // exactly as long as the counts say.
        let words = crate::binary::words_for(dim);
        let placed = |kind: u32, name: &str, len: usize| -> Result<Range<usize>> {
            // Read by ranges, the scanned sections are not in the buffer yet: their
            // lists and blocks are verified as they arrive (SUMS).
            let r = match mode {
                Open::Head => c.raw_range_unverified(kind)?,
                _ => c.raw_range(kind)?,
            };
            if r.len() != len {
                return Err(bad(format!("{name} section holds {} bytes, expected {len}", r.len())));
            }
            if !r.start.is_multiple_of(8) {
                return Err(bad(format!("{name} section is not 8-byte aligned")));
            }
            Ok(r)
        };
        let blocks = placed(BLOCKS, "BLOCKS", at)?;
        let signs = placed(SIGNS, "SIGNS", n * words * 8)?;
        let attr_codes = placed(ATTR_CODES, "ATTR_CODES", n * a)?;
        for i in (0..a).filter(|_| mode != Open::Head) {
            let cells = &attr_cells[i];
            let col = &buf[attr_codes.start + i * n..attr_codes.start + (i + 1) * n];
            if !col.iter().all(|&c| cells.code_is_valid(c)) {
                return Err(bad(format!(
                    "attribute {i} has a code beyond its {} cells",
                    cells.len()
                )));
            }
        }
        let attr_values = placed(ATTRS, "ATTRS", n * a * 8)?;
        // List attributes: row offsets in the head, elements scanned like the values.
        let list_attrs = attr_cells.iter().filter(|c| c.list).count();
        let mut elem_offsets: Vec<Option<ElemOffsets>> = vec![None; a];
        let mut total_elements = 0usize;
        if list_attrs > 0 {
            let bytes = c.section(ELEM_OFFSETS)?;
            let mut r = le::Reader::new(&bytes, object, "ELEM_OFFSETS");
            for (i, cells) in attr_cells.iter().enumerate() {
                if !cells.list {
                    continue;
                }
                let off = r.u32s(n + 1)?;
                if off[0] != 0 || off.windows(2).any(|w| w[0] > w[1]) {
                    return Err(bad(format!("attribute {i}'s element offsets are not ascending from 0")));
                }
                let count = off[n] as usize;
                elem_offsets[i] = Some((total_elements, off));
                total_elements += count;
            }
            r.finish()?;
        } else if c.has_section(ELEM_OFFSETS) {
            return Err(bad("element offsets without a list attribute".into()));
        }
        let elements = if list_attrs > 0 {
            placed(ELEMENTS, "ELEMENTS", total_elements * 8)?
        } else {
            attr_values.end..attr_values.end
        };
        let ids = placed(IDS, "IDS", n * 8)?;
        let vectors = placed(VECTORS, "VECTORS", n * dim * 4)?;
        drop(c);
        Ok(Segment {
            meta,
            klt,
            scan_bounds: crate::fastscan::ScanBounds::new(&quantizer),
            quantizer,
            attr_cells,
            cells_tag,
            lists,
            block_starts,
            blocks,
            signs,
            attr_codes,
            attr_values,
            elem_offsets: Arc::new(elem_offsets),
            elements,
            ids,
            vectors,
            sums,
            names,
            present: None,
            buf,
        })
    }
}

/// How [`Segment::open`] treats its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Open {
    /// A whole object: every section's checksum verified.
    Verify,
    /// A whole object whose checksum the caller verified.
    Trusted,
    /// Only the head is in the buffer (the rest zeros): head sections verified.
    Head,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::ListColumn;
    use crate::segment::{FetchPlan, SegmentParts};

    /// A small segment with every section populated: 70 rows in lists of 0, 33 and 37
    /// rows, 5 dimensions (one without bits, one with 6), two attributes.
    fn parts() -> SegmentParts {
        let (n, dim) = (70usize, 5usize);
        let bits = vec![4u8, 6, 0, 2, 1];
        let bounds: Vec<Vec<f32>> = bits
            .iter()
            .map(|&b| (0..=(1usize << b)).map(|i| i as f32).collect())
            .collect();
        let quantizer = Quantizer { bits, bounds };
        let width = 4;
        let codes: Vec<u8> = (0..n * width)
            .map(|i| (i * 7 % 64) as u8 & [15u8, 63, 3, 1][i % width])
            .collect();
        SegmentParts {
            meta: SegmentMeta {
                partition: 3,
                count: n as u64,
                dim: dim as u32,
                metric: Metric::L2,
                attrs: 2,
            },
            klt: Klt {
                dim,
                mean: vec![0.5; dim],
                basis: (0..dim * dim)
                    .map(|i| if i % (dim + 1) == 0 { 1.0 } else { 0.0 })
                    .collect(),
                eigenvalues: vec![1.0; dim],
            },
            quantizer,
            codes,
            signs: (0..n as u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect(),
            attr_cells: vec![
                AttrCells {
                    min: vec![0.0, 10.0],
                    max: vec![9.0, 99.0],
                    list: false,
                },
                AttrCells {
                    min: vec![1.0],
                    max: vec![1.0],
                    list: false,
                },
            ],
            attr_codes: vec![
                (0..n).map(|i| (i % 2) as u8).collect(),
                (0..n)
                    .map(|i| if i % 5 == 0 { crate::attrs::MISSING_CODE } else { 0 })
                    .collect(),
            ],
            ids: (0..n as u64).map(|i| 1000 + i).collect(),
            names: Vec::new(),
            attr_lists: Vec::new(),
            attr_values: vec![
                (0..n).map(|i| (i % 2) as f64 * 50.0).collect(),
                (0..n).map(|i| if i % 5 == 0 { f64::NAN } else { 1.0 }).collect(),
            ],
            vectors: (0..n * dim).map(|i| i as f32 * 0.25).collect(),
            lists: vec![0, 0, 33, 70],
        }
    }

    fn check(seg: &Segment, p: &SegmentParts) {
        assert_eq!(seg.meta(), &p.meta);
        assert_eq!(seg.klt(), &p.klt);
        assert_eq!(seg.quantizer(), &p.quantizer);
        assert_eq!(seg.lists(), &p.lists[..]);
        assert_eq!(seg.ids(), &p.ids[..]);
        assert_eq!(seg.list_count(), 3);
        let width = seg.code_width();
        for l in 0..3 {
            let rows = seg.list_rows(l);
            let mut want = Vec::new();
            let active: Vec<u8> = p.quantizer.bits.iter().copied().filter(|&b| b > 0).collect();
            crate::fastscan::pack_list(
                &p.codes[rows.start * width..rows.end * width],
                width,
                &active,
                &mut want,
            );
            assert_eq!(seg.list_blocks(l), &want[..], "list {l}");
        }
        assert!(seg.list_blocks(3).is_empty() && seg.list_rows(3).is_empty());
        for row in 0..seg.len() {
            assert_eq!(seg.signs(row), &p.signs[row..row + 1]);
            assert_eq!(seg.vector(row), &p.vectors[row * 5..(row + 1) * 5]);
            assert_eq!(seg.id(row), p.ids[row]);
        }
        for a in 0..2 {
            assert_eq!(seg.attr_codes(a), &p.attr_codes[a][..]);
            let got: Vec<u64> = seg.attr_column(a).iter().map(|v| v.to_bits()).collect();
            let want: Vec<u64> = p.attr_values[a].iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want);
        }
        assert_eq!(seg.attr_columns().len(), 2);
    }

    #[test]
    fn a_segment_reads_its_sections_in_place_from_aligned_and_unaligned_buffers() {
        let p = parts();
        let bytes = p.encode();
        let seg = Segment::decode("s", bytes.clone()).expect("decodes");
        check(&seg, &p);
        assert_eq!(seg.as_bytes(), &bytes[..]);
        // The same object one byte into a buffer: copied once to an aligned one.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes);
        let unaligned = Bytes::from(shifted).slice(1..);
        let seg2 = Segment::decode_verified("s", unaligned).expect("decodes unaligned");
        check(&seg2, &p);
        assert_eq!(seg, seg2);
        assert!(seg.decoded_bytes() > 0 && seg.decoded_bytes() < bytes.len() as u64);
    }

    #[test]
    fn a_flipped_byte_or_a_bad_attribute_code_is_reported_with_the_object_name() {
        let p = parts();
        let bytes = p.encode();
        let mut flipped = bytes.clone();
        let at = flipped.len() - 9;
        flipped[at] ^= 1;
        let err = Segment::decode("segments/p3.sqs", flipped).expect_err("checksum");
        assert!(err.to_string().contains("segments/p3.sqs"), "{err}");
        let mut bad = p.clone();
        bad.attr_codes[1][4] = 7;
        let err = Segment::decode("p3", bad.encode()).expect_err("code beyond cells");
        assert!(err.to_string().contains("beyond its 1 cells"), "{err}");
        let mut short = p;
        short.ids.pop();
        let err = Segment::decode("p3", short.encode()).expect_err("short ids");
        assert!(err.to_string().contains("IDS section holds"), "{err}");
    }

    /// The bytes of `object` a fetch plan asks for, range by range.
    fn bodies_of<'a>(object: &'a [u8], plan: &FetchPlan) -> Vec<&'a [u8]> {
        plan.ranges
            .iter()
            .map(|r| &object[r.start as usize..r.end as usize])
            .collect()
    }

    /// `parts()` with a third attribute: lists of 0 to 3 elements (missing every 9th
    /// row), coded as bit sets of 3 element groups.
    fn parts_with_lists() -> SegmentParts {
        let mut p = parts();
        let n = p.meta.count as usize;
        let mut list = ListColumn::default();
        let mut counts = Vec::new();
        for r in 0..n {
            let es: Vec<f64> = (0..r % 4).map(|j| ((r + j * 5) % 6) as f64).collect();
            counts.push(if r % 9 == 0 { f64::NAN } else { es.len() as f64 });
            list.push(if r % 9 == 0 { &[] } else { &es });
        }
        let cells = AttrCells::build_list(&list.values);
        assert!(cells.list && cells.len() <= crate::attrs::LIST_GROUPS);
        let codes = (0..n)
            .map(|r| cells.encode_value(crate::attrs::attr_value(&[&counts[..]], &[Some(list.clone())], 0, r)))
            .collect();
        p.meta.attrs = 3;
        p.attr_cells.push(cells);
        p.attr_codes.push(codes);
        p.attr_values.push(counts);
        p.attr_lists = vec![None, None, Some(list)];
        p
    }

    #[test]
    fn list_attributes_round_trip_whole_and_by_ranges() {
        let p = parts_with_lists();
        let list = p.attr_lists[2].clone().unwrap();
        let bytes = p.encode();
        let whole = Segment::decode("s", bytes.clone()).expect("decodes");
        assert!(whole.attr_cells()[2].list);
        for row in 0..whole.len() {
            let want = if row % 9 == 0 {
                AttrValue::List(None)
            } else {
                AttrValue::List(Some(list.get(row)))
            };
            assert_eq!(whole.attr_value(2, row), want, "row {row}");
            assert_eq!(whole.attr_value(0, row), AttrValue::Scalar(p.attr_values[0][row]));
            assert_eq!(whole.attr_codes(2)[row], p.attr_codes[2][row]);
        }
        // By ranges: list 2's elements arrive with it, verified.
        let head = &bytes[..whole.head_len()];
        let seg = Segment::open_head("s", head, bytes.len() as u64).expect("head opens");
        let plan = seg.fetch_plan(&[2], &[]);
        let bodies = bodies_of(&bytes, &plan);
        let got = seg.extend("s", &plan, &bodies).expect("extends");
        for row in got.list_rows(2) {
            assert_eq!(got.attr_value(2, row), whole.attr_value(2, row), "row {row}");
        }
        let elements = whole.elements.clone();
        let flip_at = whole
            .list_ranges(2)
            .into_iter()
            .find(|r| r.start >= elements.start && r.end <= elements.end && !r.is_empty())
            .expect("list 2 has elements")
            .start;
        let mut bad = bytes.clone();
        bad[flip_at] ^= 1;
        let bodies = bodies_of(&bad, &plan);
        let err = seg
            .extend("s", &plan, &bodies)
            .expect_err("a flipped element is caught");
        assert!(err.to_string().contains("checksum"), "{err}");
        // A list code naming a group the cells do not have is corrupt.
        let mut wrong = p.clone();
        wrong.attr_codes[2][5] = 1 << 6;
        let groups = wrong.attr_cells[2].len();
        if groups < 7 {
            let err = Segment::decode("p3", wrong.encode()).expect_err("code beyond groups");
            assert!(err.to_string().contains("beyond its"), "{err}");
        }
    }

    #[test]
    fn a_segment_read_by_ranges_holds_exactly_what_it_fetched_verified() {
        let p = parts();
        let bytes = p.encode();
        let whole = Segment::decode("s", bytes.clone()).expect("decodes");
        assert!(whole.supports_ranges() && !whole.is_partial());
        assert!(whole.fetch_plan(&[1], &[3]).is_empty(), "a whole segment needs nothing");
        let head = &bytes[..whole.head_len()];
        let seg = Segment::open_head("s", head, bytes.len() as u64).expect("head opens");
        assert!(seg.is_partial() && !seg.has_list(1) && !seg.has_vector(40));
        assert_eq!(seg.meta(), whole.meta());
        assert_eq!(seg.klt(), whole.klt());
        // List 2 and the vectors of rows 40 and 41.
        let plan = seg.fetch_plan(&[2, 2], &[41, 40]);
        assert!(!plan.is_empty() && plan.bytes() < (bytes.len() - head.len()) as u64);
        let bodies = bodies_of(&bytes, &plan);
        let got = seg.extend("s", &plan, &bodies).expect("extends");
        assert!(got.has_list(2) && !got.has_list(1) && got.has_vector(40) && got.has_vector(41));
        for row in got.list_rows(2) {
            assert_eq!(got.signs(row), whole.signs(row));
            assert_eq!(got.id(row), whole.id(row));
            for a in 0..2 {
                assert_eq!(got.attr_codes(a)[row], whole.attr_codes(a)[row]);
                assert_eq!(got.attr_column(a)[row].to_bits(), whole.attr_column(a)[row].to_bits());
            }
        }
        assert_eq!(got.list_blocks(2), whole.list_blocks(2));
        assert_eq!(got.vector(40), whole.vector(40));
        assert!(got.resident_bytes() < bytes.len() as u64);
        // Extending again keeps what was held and adds the rest; nothing is fetched twice.
        let plan2 = got.fetch_plan(&[1, 2], &[40, 0]);
        assert_eq!((plan2.lists(), plan2.blocks()), (&[1usize][..], &[][..]));
        let bodies2 = bodies_of(&bytes, &plan2);
        let more = got.extend("s", &plan2, &bodies2).expect("extends again");
        assert!(more.has_list(1) && more.has_list(2) && more.has_vector(0) && more.has_vector(40));
        assert_eq!(more.list_blocks(1), whole.list_blocks(1));
        assert_eq!(more.vector(40), whole.vector(40));
        // A flipped byte in any fetched part (list 2's codes, signs, attributes, ids;
        // the vector block) is caught by its checksum.
        let targets: Vec<usize> = whole
            .list_ranges(2)
            .into_iter()
            .chain([whole.block_range(0)])
            .flat_map(|r| [r.start, r.end - 1])
            .collect();
        for at in targets {
            let i = plan
                .ranges
                .iter()
                .position(|r| (r.start as usize..r.end as usize).contains(&at))
                .expect("a planned part is fetched");
            let mut bad: Vec<Vec<u8>> = bodies.iter().map(|b| b.to_vec()).collect();
            bad[i][at - plan.ranges[i].start as usize] ^= 0x10;
            let Err(err) = seg.extend("segments/p3.sqs", &plan, &bad) else {
                panic!("a flipped byte at {at} went unnoticed");
            };
            let msg = err.to_string();
            assert!(msg.contains("segments/p3.sqs") && msg.contains("checksum"), "{msg}");
        }
        // A head cut short, or a segment written without sums, is refused.
        assert!(Segment::open_head("s", &bytes[..head.len() - 8], bytes.len() as u64).is_err());
    }
}
