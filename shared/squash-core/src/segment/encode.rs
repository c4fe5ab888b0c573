//! Writing segment objects: a partition's owned parts laid out section by section
//! (`docs/FORMAT.md`).

use super::cells::encode_cells;
use super::read::*;
use crate::attrs::{AttrCells, ListColumn};
use crate::container::{le, write_container, SectionOut};
use crate::klt::Klt;
use crate::osq::Quantizer;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// A partition as the build produces it, in owned vectors; [`SegmentParts::encode`]
/// lays it out as a segment object.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentParts {
    /// Descriptive fields.
    pub meta: SegmentMeta,
    /// Local KLT (full rotation, `dim × dim`).
    pub klt: Klt,
    /// OSQ quantiser over the rotated coordinates.
    pub quantizer: Quantizer,
    /// OSQ codes, `count × active_dims` bytes, row-major, rows grouped by list (packed
    /// into the blocked layout on encode; not stored as they are).
    pub codes: Vec<u8>,
    /// Sign bits, `count × sign_words` words, row-major.
    pub signs: Vec<u64>,
    /// Attribute cells (shared by all partitions of the index).
    pub attr_cells: Vec<AttrCells>,
    /// Attribute codes, one column of `count` bytes per attribute.
    pub attr_codes: Vec<Vec<u8>>,
    /// Vector ids: the ids themselves in an index of numeric ids, the xxh3-64 of each
    /// name in an index of string ids.
    pub ids: Vec<u64>,
    /// String ids, one per row, in an index of string ids; empty otherwise.
    pub names: Vec<String>,
    /// Exact attribute values, one column of `count` values per attribute (`NaN` = missing;
    /// a list attribute's element count).
    pub attr_values: Vec<Vec<f64>>,
    /// Each list attribute's elements (`Some` at its column; may be shorter than the
    /// attributes, or empty, when the rest are single-valued).
    pub attr_lists: Vec<Option<ListColumn>>,
    /// Full prepared vectors for re-ranking, `count × dim`, row-major.
    pub vectors: Vec<f32>,
    /// Fine lists: list `l` holds rows `lists[l]..lists[l + 1]` (first 0, last `count`).
    pub lists: Vec<u32>,
}

impl SegmentParts {
    /// Serialises the segment: small parameters first, then the sections a scan reads
    /// list by list (blocked codes, signs, attribute codes, exact attributes, ids), the
    /// full vectors last.
    pub fn encode(&self) -> Vec<u8> {
        let mut klt = Vec::new();
        le::put_f32s(&mut klt, &self.klt.mean);
        le::put_f32s(&mut klt, &self.klt.eigenvalues);
        le::put_f32s(&mut klt, &self.klt.basis);
        let mut quant = self.quantizer.bits.clone();
        for b in &self.quantizer.bounds {
            le::put_f32s(&mut quant, b);
        }
        let mut lists = Vec::new();
        le::put_u32s(&mut lists, &self.lists);
        let blocks = pack_blocks(&self.quantizer, &self.codes, &self.lists);
        let mut signs = Vec::new();
        le::put_u64s(&mut signs, &self.signs);
        let mut attrs = Vec::new();
        for col in &self.attr_values {
            le::put_f64s(&mut attrs, col);
        }
        let mut ids = Vec::new();
        le::put_u64s(&mut ids, &self.ids);
        let mut vectors = Vec::with_capacity(self.vectors.len() * 4);
        le::put_f32s(&mut vectors, &self.vectors);
        let meta = serde_json::to_vec(&self.meta).unwrap_or_default();
        let codes = self.attr_codes.concat();
        let (mut elem_offsets, mut elements) = (Vec::new(), Vec::new());
        for l in self.attr_lists.iter().flatten() {
            let off: Vec<u32> = l.offsets.iter().map(|&o| o as u32).collect();
            le::put_u32s(&mut elem_offsets, &off);
            le::put_f64s(&mut elements, &l.values);
        }
        let sums = self.sums(&blocks, &signs, &codes, &attrs, &elements, &ids, &vectors);
        let mut head = vec![
            SectionOut::zstd(META, meta),
            SectionOut::raw(KLT, klt),
            SectionOut::raw(QUANT, quant),
            SectionOut::zstd(ATTR_CELLS, encode_cells(&self.attr_cells)),
            SectionOut::raw(LISTS, lists),
        ];
        if !self.names.is_empty() {
            head.push(SectionOut::zstd(NAMES, encode_names(&self.names)));
        }
        let has_lists = self.attr_lists.iter().any(Option::is_some);
        if has_lists {
            head.push(SectionOut::raw(ELEM_OFFSETS, elem_offsets));
        }
        head.push(SectionOut::raw(SUMS, sums));
        let elements = has_lists.then(|| SectionOut::raw(ELEMENTS, elements));
        write_container(
            SEGMENT_MAGIC,
            head.into_iter()
                .chain([
                    SectionOut::raw(BLOCKS, blocks),
                    SectionOut::raw(SIGNS, signs),
                    SectionOut::raw(ATTR_CODES, codes),
                    SectionOut::raw(ATTRS, attrs),
                ])
                .chain(elements)
                .chain([SectionOut::raw(IDS, ids), SectionOut::raw(VECTORS, vectors)])
                .collect(),
        )
    }
}

/// The NAMES section: `u32[N + 1]` ascending byte offsets into the UTF-8 bytes that
/// follow (name `i` is bytes `offsets[i]..offsets[i + 1]`).
fn encode_names(names: &[String]) -> Vec<u8> {
    let mut offsets = Vec::with_capacity(names.len() + 1);
    let mut at = 0u32;
    offsets.push(0);
    for n in names {
        at = at.saturating_add(n.len() as u32);
        offsets.push(at);
    }
    let mut out = Vec::with_capacity(offsets.len() * 4 + at as usize);
    le::put_u32s(&mut out, &offsets);
    for n in names {
        out.extend_from_slice(n.as_bytes());
    }
    out
}

impl SegmentParts {
    /// The SUMS section: `u32` rows per vector block, `u32` list count, one xxh3-64 per
    /// list over its scanned data ([`list_parts`]) and one per vector block, so that a
    /// reader fetching byte ranges can verify exactly what it fetched.
    #[allow(clippy::too_many_arguments)]
    fn sums(
        &self,
        blocks: &[u8],
        signs: &[u8],
        codes: &[u8],
        attrs: &[u8],
        elements: &[u8],
        ids: &[u8],
        vectors: &[u8],
    ) -> Vec<u8> {
        let n = self.meta.count as usize;
        let dim = self.meta.dim as usize;
        let width = self.quantizer.bits.iter().filter(|&&b| b > 0).count();
        let starts = block_starts(&self.lists, width);
        let words = crate::binary::words_for(dim);
        let rows_per_block = vector_block_rows(dim);
        let lists = self.lists.len().saturating_sub(1);
        let mut out = Vec::new();
        le::put_u32s(&mut out, &[rows_per_block as u32, lists as u32]);
        let mut hashes = Vec::with_capacity(lists + n.div_ceil(rows_per_block));
        let offsets: Vec<Vec<u32>> = self
            .attr_lists
            .iter()
            .flatten()
            .map(|l| l.offsets.iter().map(|&o| o as u32).collect())
            .collect();
        let mut bases = Vec::with_capacity(offsets.len());
        let mut base = 0usize;
        for l in self.attr_lists.iter().flatten() {
            bases.push(base);
            base += l.values.len();
        }
        for l in 0..lists {
            let rows = self.lists[l] as usize..self.lists[l + 1] as usize;
            let elems = elem_ranges(&rows, bases.iter().copied().zip(offsets.iter().map(Vec::as_slice)));
            let mut h = Xxh3::new();
            for (kind, r) in list_parts(rows, starts[l]..starts[l + 1], n, self.attr_codes.len(), words, elems) {
                let section = match kind {
                    BLOCKS => blocks,
                    SIGNS => signs,
                    ATTR_CODES => codes,
                    ATTRS => attrs,
                    ELEMENTS => elements,
                    _ => ids,
                };
                // (Parts whose columns are shorter than `count` hash what they have:
                // their segment fails to open anyway.)
                h.update(section.get(r).unwrap_or(&[]));
            }
            hashes.push(h.digest());
        }
        let row_bytes = dim * 4;
        for b in 0..n.div_ceil(rows_per_block) {
            let (a, e) = (b * rows_per_block, ((b + 1) * rows_per_block).min(n));
            hashes.push(xxh3_64(vectors.get(a * row_bytes..e * row_bytes).unwrap_or(&[])));
        }
        le::put_u64s(&mut out, &hashes);
        out
    }
}

/// Lays out `codes` (row-major, grouped by `lists`) in the blocked layout of
/// [`crate::fastscan`], list after list.
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
