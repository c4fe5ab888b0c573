//! Segment objects: everything one partition needs to answer a query on its own.
//! Section kinds and their byte layouts are documented in `docs/FORMAT.md`.

use crate::attrs::AttrCells;
use crate::container::{le, write_container, Container, SectionOut};
use crate::distance::Metric;
use crate::error::{CoreError, Result};
use crate::klt::Klt;
use crate::osq::{Quantizer, MAX_BITS};
use serde::{Deserialize, Serialize};

/// Magic of segment objects.
pub const SEGMENT_MAGIC: &[u8; 8] = b"SQUASHSG";

const META: u32 = 1;
const KLT: u32 = 2;
const QUANT: u32 = 3;
const CODES: u32 = 4;
const SIGNS: u32 = 5;
const ATTR_CELLS: u32 = 6;
const ATTR_CODES: u32 = 7;
const IDS: u32 = 8;
const ATTRS: u32 = 9;
const VECTORS: u32 = 10;
const LISTS: u32 = 11;
const BLOCKS: u32 = 12;

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

/// A decoded partition segment, held in memory by workers.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Descriptive fields.
    pub meta: SegmentMeta,
    /// Local KLT (full rotation, `dim × dim`).
    pub klt: Klt,
    /// OSQ quantiser over the rotated coordinates.
    pub quantizer: Quantizer,
    /// OSQ codes, `count × active_dims` bytes, row-major (one row per vector).
    pub codes: Vec<u8>,
    /// Sign bits, `count × sign_words` words, row-major.
    pub signs: Vec<u64>,
    /// Attribute cells (shared by all partitions of the index).
    pub attr_cells: Vec<AttrCells>,
    /// Attribute codes, one column of `count` bytes per attribute.
    pub attr_codes: Vec<Vec<u8>>,
    /// Vector ids.
    pub ids: Vec<u64>,
    /// Exact attribute values, one column of `count` values per attribute (`NaN` = missing).
    pub attr_values: Vec<Vec<f64>>,
    /// Full prepared vectors for re-ranking, `count × dim`, row-major.
    pub vectors: Vec<f32>,
    /// Fine lists: rows are grouped by list, list `l` holds rows
    /// `lists[l]..lists[l + 1]` (`lists.len()` = lists + 1, first 0, last `count`).
    pub lists: Vec<u32>,
    /// The OSQ codes again, list by list in the blocked nibble layout of the SIMD scan
    /// (see [`crate::fastscan`]).
    pub blocks: Vec<u8>,
    /// The quantiser's boundaries as the blocked scan reads them (derived, not stored).
    pub scan_bounds: crate::fastscan::ScanBounds,
}

impl Segment {
    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// True when the segment holds no vectors.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
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
    pub fn list_rows(&self, l: usize) -> std::ops::Range<usize> {
        match (self.lists.get(l), self.lists.get(l + 1)) {
            (Some(&a), Some(&b)) => a as usize..b as usize,
            _ => 0..0,
        }
    }
    /// Where each list's blocked codes start in [`Segment::blocks`], plus the end:
    /// list `l` is `blocks[starts[l]..starts[l + 1]]`.
    pub fn block_starts(&self) -> Vec<usize> {
        let width = self.code_width();
        let mut out = Vec::with_capacity(self.lists.len());
        let mut at = 0;
        out.push(0);
        for w in self.lists.windows(2) {
            at += crate::fastscan::list_bytes((w[1] - w[0]) as usize, width);
            out.push(at);
        }
        out
    }
    /// Lays out `codes` (row-major, grouped by `lists`) in the blocked layout.
    pub fn pack_blocks(quantizer: &Quantizer, codes: &[u8], lists: &[u32]) -> Vec<u8> {
        let active: Vec<u8> = quantizer.bits.iter().copied().filter(|&b| b > 0).collect();
        let width = active.len();
        let mut out = Vec::new();
        for w in lists.windows(2) {
            let (a, b) = (w[0] as usize * width, w[1] as usize * width);
            crate::fastscan::pack_list(&codes[a..b], width, &active, &mut out);
        }
        out
    }
    /// Full vector of row `i`.
    pub fn vector(&self, i: usize) -> &[f32] {
        let d = self.meta.dim as usize;
        &self.vectors[i * d..(i + 1) * d]
    }

    /// Serialises the segment.
    pub fn encode(&self) -> Vec<u8> {
        let dim = self.meta.dim as usize;
        let mut klt = Vec::new();
        le::put_f32s(&mut klt, &self.klt.mean);
        le::put_f32s(&mut klt, &self.klt.eigenvalues);
        le::put_f32s(&mut klt, &self.klt.basis);
        let mut quant = self.quantizer.bits.clone();
        for b in &self.quantizer.bounds {
            le::put_f32s(&mut quant, b);
        }
        let mut signs = Vec::new();
        le::put_u64s(&mut signs, &self.signs);
        let cells = encode_cells(&self.attr_cells);
        let mut ids = Vec::new();
        le::put_u64s(&mut ids, &self.ids);
        let mut attrs = Vec::new();
        for col in &self.attr_values {
            le::put_f64s(&mut attrs, col);
        }
        let mut vectors = Vec::with_capacity(self.vectors.len() * 4);
        le::put_f32s(&mut vectors, &self.vectors);
        debug_assert_eq!(self.klt.basis.len(), dim * dim);
        let mut lists = Vec::new();
        le::put_u32s(&mut lists, &self.lists);
        let meta = serde_json::to_vec(&self.meta).unwrap_or_default();
        write_container(
            SEGMENT_MAGIC,
            vec![
                SectionOut::zstd(META, meta),
                SectionOut::raw(KLT, klt),
                SectionOut::raw(QUANT, quant),
                SectionOut::raw(CODES, self.codes.clone()),
                SectionOut::raw(SIGNS, signs),
                SectionOut::zstd(ATTR_CELLS, cells),
                SectionOut::raw(ATTR_CODES, self.attr_codes.concat()),
                SectionOut::zstd(IDS, ids),
                SectionOut::zstd(ATTRS, attrs),
                SectionOut::raw(VECTORS, vectors),
                SectionOut::zstd(LISTS, lists),
                SectionOut::raw(BLOCKS, self.blocks.clone()),
            ],
        )
    }

    /// Decodes and verifies a segment; `object` names it in errors.
    pub fn decode(object: &str, bytes: &[u8]) -> Result<Segment> {
        let c = Container::parse(object, SEGMENT_MAGIC, bytes)?;
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
        // before they reach an allocation.
        if n.checked_mul(dim.max(a).max(1) * 8)
            .is_none_or(|total| total > bytes.len().saturating_mul(64))
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

        let codes = c.section(CODES)?.into_owned();
        if codes.len() != n * width {
            return Err(bad(format!(
                "codes section holds {} bytes, expected {}",
                codes.len(),
                n * width
            )));
        }
        for (row, chunk) in codes
            .chunks_exact(width.max(1))
            .enumerate()
            .take(if width == 0 { 0 } else { n })
        {
            for (k, (&code, &b)) in chunk.iter().zip(quantizer.bits.iter().filter(|&&b| b > 0)).enumerate() {
                if (code as usize) >= (1usize << b) {
                    return Err(bad(format!(
                        "code {code} of row {row} dimension {k} exceeds its {b} bits"
                    )));
                }
            }
        }
        let words = crate::binary::words_for(dim);
        let sign_bytes = c.section(SIGNS)?;
        let mut r = le::Reader::new(&sign_bytes, object, "SIGNS");
        let signs = r.u64s(n * words)?;
        r.finish()?;

        let attr_cells = decode_cells(&c.section(ATTR_CELLS)?, object, a)?;
        let codes_all = c.section(ATTR_CODES)?;
        if codes_all.len() != n * a {
            return Err(bad("attribute codes section has the wrong length".into()));
        }
        let attr_codes: Vec<Vec<u8>> = (0..a).map(|i| codes_all[i * n..(i + 1) * n].to_vec()).collect();
        for (i, col) in attr_codes.iter().enumerate() {
            let cells = attr_cells[i].len();
            if col
                .iter()
                .any(|&c| c != crate::attrs::MISSING_CODE && c as usize >= cells)
            {
                return Err(bad(format!("attribute {i} has a code beyond its {cells} cells")));
            }
        }
        let id_bytes = c.section(IDS)?;
        let mut r = le::Reader::new(&id_bytes, object, "IDS");
        let ids = r.u64s(n)?;
        r.finish()?;
        let attr_bytes = c.section(ATTRS)?;
        let mut r = le::Reader::new(&attr_bytes, object, "ATTRS");
        let mut attr_values = Vec::with_capacity(a);
        for _ in 0..a {
            attr_values.push(r.f64s(n)?);
        }
        r.finish()?;
        let vec_bytes = c.section(VECTORS)?;
        let mut r = le::Reader::new(&vec_bytes, object, "VECTORS");
        let vectors = r.f32s(n * dim)?;
        r.finish()?;
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
        let blocks = c.section(BLOCKS)?.into_owned();
        if blocks != Segment::pack_blocks(&quantizer, &codes, &lists) {
            return Err(bad("blocked codes do not match the codes".into()));
        }
        Ok(Segment {
            meta,
            klt,
            codes,
            signs,
            attr_cells,
            attr_codes,
            ids,
            attr_values,
            vectors,
            lists,
            blocks,
            scan_bounds: crate::fastscan::ScanBounds::new(&quantizer),
            quantizer,
        })
    }
}

/// Encodes attribute cells: per attribute `u32 count`, `count` f64 minima, `count` f64 maxima.
pub fn encode_cells(cells: &[AttrCells]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in cells {
        le::put_u32s(&mut out, &[c.len() as u32]);
        le::put_f64s(&mut out, &c.min);
        le::put_f64s(&mut out, &c.max);
    }
    out
}

/// Decodes `attrs` attribute cell tables (see [`encode_cells`]).
pub fn decode_cells(bytes: &[u8], object: &str, attrs: usize) -> Result<Vec<AttrCells>> {
    let mut r = le::Reader::new(bytes, object, "ATTR_CELLS");
    let mut out = Vec::with_capacity(attrs);
    for i in 0..attrs {
        let n = r.u32()? as usize;
        if n > crate::attrs::MAX_VALUE_CELLS {
            return Err(CoreError::corrupt(
                object,
                format!("attribute {i} has {n} cells (max 255)"),
            ));
        }
        let min = r.f64s(n)?;
        let max = r.f64s(n)?;
        out.push(AttrCells { min, max });
    }
    r.finish()?;
    Ok(out)
}
