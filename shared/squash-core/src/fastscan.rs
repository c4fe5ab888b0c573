//! The blocked SIMD scan ("fast scan", as in faiss's IVF-PQ FastScan and ScaNN's LUT16):
//! a coarse ADC lower bound for 32 vectors at a time from 16-entry byte tables held in
//! registers.
//!
//! * **Layout.** A list's rows are cut into blocks of [`BLOCK`] (the last one padded
//!   with code 0). In a block, each active dimension (a *column*) takes 16 bytes: byte
//!   `i` holds the column's nibble of row `i` in its low 4 bits and of row `16 + i` in
//!   its high 4 bits. A dimension with at most 4 bits stores its code; one with more
//!   stores the code's high 4 bits (the cell is then the union of the `2^(b-4)` cells
//!   sharing them).
//! * **Tables.** Per query and segment, each column's 16 squared gaps (query to cell, as
//!   in [`crate::osq::Quantizer::query_table`]) are shifted by their minimum and scaled
//!   to bytes, rounding down. Sums accumulate in saturating u16. So the coarse bound is
//!   never above the scalar ADC bound of the full codes, which is never above the true
//!   squared distance: the property tests check both.
//! * **Kernels.** AVX2 `vpshufb` on x86-64 and `tbl` on aarch64, chosen at run time,
//!   with a scalar fallback that computes the very same integers.

use crate::osq::Quantizer;

/// Rows per block.
pub const BLOCK: usize = 32;
/// Bytes of one column of one block.
pub const COLUMN_BYTES: usize = 16;

/// Number of blocks of a list of `rows` rows.
pub fn blocks_for(rows: usize) -> usize {
    rows.div_ceil(BLOCK)
}

/// Bytes of the blocked codes of a list of `rows` rows with `width` active dimensions.
pub fn list_bytes(rows: usize, width: usize) -> usize {
    blocks_for(rows) * width * COLUMN_BYTES
}

/// The nibble a code of a `bits`-bit dimension is scanned by: the code itself up to 4
/// bits, else its high 4 bits.
#[inline]
pub fn nibble(code: u8, bits: u8) -> u8 {
    if bits <= 4 {
        code
    } else {
        code >> (bits - 4)
    }
}

/// Lays out the row-major codes of one list (`codes`: `rows × width` bytes, one per
/// active dimension, whose bits are `active_bits`) as blocks; appends to `out`.
pub fn pack_list(codes: &[u8], width: usize, active_bits: &[u8], out: &mut Vec<u8>) {
    debug_assert_eq!(active_bits.len(), width);
    let rows = codes.len().checked_div(width).unwrap_or(0);
    for b in 0..blocks_for(rows) {
        for (c, &bits) in active_bits.iter().enumerate() {
            let mut col = [0u8; COLUMN_BYTES];
            for (i, slot) in col.iter_mut().enumerate() {
                for (half, shift) in [(0usize, 0u32), (16, 4)] {
                    let r = b * BLOCK + half + i;
                    if r < rows {
                        *slot |= nibble(codes[r * width + c], bits) << shift;
                    }
                }
            }
            out.extend_from_slice(&col);
        }
    }
}

/// A quantiser's cell boundaries as the blocked scan reads them, computed once per
/// segment: per coded dimension the 17 boundaries of its 16 nibble cells (a dimension
/// with fewer than 4 bits repeats its last boundary), and the range of each dimension
/// without a code.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScanBounds {
    /// Rotated dimension of each coded column.
    pub active: Vec<u32>,
    /// Boundaries of each column's 16 nibble cells.
    pub cells: Vec<[f32; 17]>,
    /// Dimensions without a code: `(dimension, min, max)`.
    pub inactive: Vec<(u32, f32, f32)>,
}

impl ScanBounds {
    /// Leading rotated coordinates the blocked scan needs: up to the last coded
    /// dimension. The KLT orders directions by variance and bits go to the largest, so
    /// the dimensions without a code are mostly a suffix that need not be rotated.
    pub fn rotated_dims(&self) -> usize {
        self.active.iter().map(|&j| j as usize + 1).max().unwrap_or(0)
    }

    /// Derives the scan boundaries of `quantizer`.
    pub fn new(quantizer: &Quantizer) -> ScanBounds {
        let mut out = ScanBounds::default();
        for (j, &b) in quantizer.bits.iter().enumerate() {
            let bounds = &quantizer.bounds[j];
            if b == 0 {
                out.inactive.push((j as u32, bounds[0], bounds[bounds.len() - 1]));
                continue;
            }
            let shift = b.saturating_sub(4);
            let cells = 1usize << (b - shift);
            let mut nb = [bounds[bounds.len() - 1]; 17];
            for (h, slot) in nb.iter_mut().enumerate().take(cells + 1) {
                *slot = bounds[h << shift];
            }
            out.active.push(j as u32);
            out.cells.push(nb);
        }
        out
    }
}

/// Per-query byte tables of one segment for the blocked scan.
#[derive(Debug, Clone)]
pub struct FastTable {
    /// One 16-entry table per active dimension.
    pub luts: Vec<[u8; 16]>,
    /// Table units per squared distance unit.
    scale: f64,
    /// Squared distance of a zero sum: the dimensions without codes plus every column's
    /// minimum.
    offset: f64,
}

impl FastTable {
    /// Builds the tables for rotated query coordinates `yq` from a segment's
    /// [`ScanBounds`]. `yq` needs at least [`ScanBounds::rotated_dims`] coordinates;
    /// uncoded dimensions past its end count 0 towards the bound (still a lower bound,
    /// a little looser).
    ///
    /// `reach`, when positive and finite, is the squared distance the scan must resolve:
    /// byte entries are scaled so that `reach` maps to 255 and larger gaps saturate
    /// there. A saturated entry is still at or below its gap, so the bound stays a lower
    /// bound; it only stops telling apart rows that are already farther than `reach` on
    /// one dimension alone. Without it the widest gap sets the scale, and at 100+
    /// dimensions the one far cell of the leading dimension leaves the others a byte
    /// unit or two, so the sums no longer rank near neighbours.
    pub fn new(bounds: &ScanBounds, yq: &[f32], reach: f32) -> FastTable {
        // Squared distance from `q` to the interval [lo, hi].
        let gap = |q: f32, lo: f32, hi: f32| -> f32 {
            let d = (lo - q).max(q - hi).max(0.0);
            d * d
        };
        let mut offset: f64 = bounds
            .inactive
            .iter()
            .filter_map(|&(j, lo, hi)| yq.get(j as usize).map(|&q| gap(q, lo, hi) as f64))
            .sum();
        let mut gaps: Vec<[f32; 16]> = Vec::with_capacity(bounds.cells.len());
        let mut widest = 0f32;
        for (&j, nb) in bounds.active.iter().zip(&bounds.cells) {
            let q = yq[j as usize];
            let mut g = [0f32; 16];
            for (h, slot) in g.iter_mut().enumerate() {
                *slot = gap(q, nb[h], nb[h + 1]);
            }
            let min = g.iter().copied().fold(f32::INFINITY, f32::min);
            offset += min as f64;
            for v in g.iter_mut() {
                *v -= min;
                widest = widest.max(*v);
            }
            gaps.push(g);
        }
        // Entries are rounded down after shrinking the scale by a relative 2^-16, far more
        // than the f32 rounding of the subtraction and the product: every byte times
        // 1/scale stays at or below its gap.
        if reach > 0.0 && reach.is_finite() {
            widest = widest.min(reach);
        }
        let scale = if widest > 0.0 { 255.0 / widest } else { 1.0 };
        let down = scale * (1.0 - 1.0 / 65_536.0);
        let luts = gaps
            .iter()
            .map(|g| {
                let mut lut = [0u8; 16];
                for (slot, &v) in lut.iter_mut().zip(g) {
                    *slot = (v * down).clamp(0.0, 255.0) as u8;
                }
                lut
            })
            .collect();
        // The offset sums f32 minima in f64: shave a relative 2^-20 so the bound stays
        // below the exact sum.
        FastTable {
            luts,
            scale: scale as f64,
            offset: offset * (1.0 - 1.0 / 1_048_576.0),
        }
    }

    /// The coarse lower bound on the squared L2 distance for a scanned sum.
    #[inline]
    pub fn bound(&self, sum: u16) -> f32 {
        let v = self.offset + sum as f64 / self.scale;
        // Round towards zero so the f32 never exceeds the f64 value.
        let f = v as f32;
        if f as f64 > v {
            f32::from_bits(f.to_bits().saturating_sub(1)).max(0.0)
        } else {
            f
        }
    }

    /// The largest scanned sum whose bound is at most `lb` (for thresholds), saturating.
    pub fn sum_below(&self, lb: f32) -> u16 {
        let s = ((lb as f64 - self.offset) * self.scale).floor();
        s.clamp(0.0, u16::MAX as f64) as u16
    }

    /// Number of columns.
    pub fn width(&self) -> usize {
        self.luts.len()
    }
}

/// Scans `blocks` (whole blocks laid out as [`pack_list`] does, for `table.width()`
/// columns) and writes one saturating u16 sum per row into `out` (`blocks × 32`
/// entries, row order). Picks the fastest kernel this CPU has.
pub fn scan(table: &FastTable, blocks: &[u8], out: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { x86::scan_avx2(table, blocks, out) };
            return;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            // SAFETY: the CPU has NEON (checked just above).
            unsafe { arm::scan_neon(table, blocks, out) };
            return;
        }
    }
    scan_scalar(table, blocks, out);
}

/// The portable kernel: the same sums as [`scan`], one lookup at a time.
pub fn scan_scalar(table: &FastTable, blocks: &[u8], out: &mut [u16]) {
    let width = table.width();
    let block_bytes = width * COLUMN_BYTES;
    if block_bytes == 0 {
        out.fill(0);
        return;
    }
    for (block, sums) in blocks.chunks_exact(block_bytes).zip(out.chunks_exact_mut(BLOCK)) {
        sums.fill(0);
        for (col, lut) in block.chunks_exact(COLUMN_BYTES).zip(&table.luts) {
            for (i, &byte) in col.iter().enumerate() {
                sums[i] = sums[i].saturating_add(lut[(byte & 0x0f) as usize] as u16);
                sums[16 + i] = sums[16 + i].saturating_add(lut[(byte >> 4) as usize] as u16);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{FastTable, BLOCK, COLUMN_BYTES};
    use std::arch::x86_64::*;

    /// AVX2 kernel of [`super::scan`].
    #[target_feature(enable = "avx2")]
    pub unsafe fn scan_avx2(table: &FastTable, blocks: &[u8], out: &mut [u16]) {
        let width = table.width();
        let block_bytes = width * COLUMN_BYTES;
        if block_bytes == 0 {
            out.fill(0);
            return;
        }
        let luts: Vec<__m256i> = table
            .luts
            .iter()
            .map(|l| {
                let v = _mm_loadu_si128(l.as_ptr() as *const __m128i);
                _mm256_broadcastsi128_si256(v)
            })
            .collect();
        let low = _mm_set1_epi8(0x0f);
        let zero = _mm256_setzero_si256();
        for (block, sums) in blocks.chunks_exact(block_bytes).zip(out.chunks_exact_mut(BLOCK)) {
            // acc_a: rows 0..8 and 16..24; acc_b: rows 8..16 and 24..32.
            let mut acc_a = zero;
            let mut acc_b = zero;
            for (c, lut) in luts.iter().enumerate() {
                let bytes = _mm_loadu_si128(block.as_ptr().add(c * COLUMN_BYTES) as *const __m128i);
                let lo = _mm_and_si128(bytes, low);
                let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), low);
                let idx = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
                let v = _mm256_shuffle_epi8(*lut, idx);
                acc_a = _mm256_adds_epu16(acc_a, _mm256_unpacklo_epi8(v, zero));
                acc_b = _mm256_adds_epu16(acc_b, _mm256_unpackhi_epi8(v, zero));
            }
            let mut a = [0u16; 16];
            let mut b = [0u16; 16];
            _mm256_storeu_si256(a.as_mut_ptr() as *mut __m256i, acc_a);
            _mm256_storeu_si256(b.as_mut_ptr() as *mut __m256i, acc_b);
            sums[0..8].copy_from_slice(&a[0..8]);
            sums[8..16].copy_from_slice(&b[0..8]);
            sums[16..24].copy_from_slice(&a[8..16]);
            sums[24..32].copy_from_slice(&b[8..16]);
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::{FastTable, BLOCK, COLUMN_BYTES};
    use std::arch::aarch64::*;

    /// NEON (`tbl`) kernel of [`super::scan`].
    #[target_feature(enable = "neon")]
    pub unsafe fn scan_neon(table: &FastTable, blocks: &[u8], out: &mut [u16]) {
        let width = table.width();
        let block_bytes = width * COLUMN_BYTES;
        if block_bytes == 0 {
            out.fill(0);
            return;
        }
        let luts: Vec<uint8x16_t> = table.luts.iter().map(|l| vld1q_u8(l.as_ptr())).collect();
        let low = vdupq_n_u8(0x0f);
        for (block, sums) in blocks.chunks_exact(block_bytes).zip(out.chunks_exact_mut(BLOCK)) {
            let mut acc = [vdupq_n_u16(0); 4];
            for (c, lut) in luts.iter().enumerate() {
                let bytes = vld1q_u8(block.as_ptr().add(c * COLUMN_BYTES));
                let lo = vqtbl1q_u8(*lut, vandq_u8(bytes, low));
                let hi = vqtbl1q_u8(*lut, vshrq_n_u8(bytes, 4));
                acc[0] = vqaddq_u16(acc[0], vmovl_u8(vget_low_u8(lo)));
                acc[1] = vqaddq_u16(acc[1], vmovl_high_u8(lo));
                acc[2] = vqaddq_u16(acc[2], vmovl_u8(vget_low_u8(hi)));
                acc[3] = vqaddq_u16(acc[3], vmovl_high_u8(hi));
            }
            for (q, a) in acc.iter().enumerate() {
                vst1q_u16(sums.as_mut_ptr().add(q * 8), *a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osq::tests::random_partition;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// SIMD sums equal the scalar kernel's; the coarse bound never exceeds the scalar
        /// ADC bound of the full codes, which never exceeds the true squared distance.
        #[test]
        fn coarse_bound_is_below_the_scalar_bound_and_kernels_agree(
            seed in 0u64..1000,
            dim in 1usize..40,
            n in 1usize..200,
            bits_per_dim in 1u32..8,
            scale in 0.01f32..100.0,
            reach_frac in 0.0f32..2.0,
        ) {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let (rows, klt, rotated, q) = random_partition(&mut rng, dim, n, bits_per_dim, scale);
            let active: Vec<u8> = q.bits.iter().copied().filter(|&b| b > 0).collect();
            let width = active.len();
            let mut codes = vec![0u8; n * width];
            for (y, out) in rotated.chunks_exact(dim).zip(codes.chunks_exact_mut(width.max(1))) {
                if width > 0 {
                    q.encode(y, out);
                }
            }
            let mut blocks = Vec::new();
            pack_list(&codes, width, &active, &mut blocks);
            prop_assert_eq!(blocks.len(), list_bytes(n, width));
            let query: Vec<f32> = (0..dim).map(|_| (rng.gen::<f32>() - 0.5) * scale * 3.0).collect();
            let yq = klt.transform(&query);
            let table = q.query_table(&yq);
            let fast = FastTable::new(&ScanBounds::new(&q), &yq, 0.0);
            let mut simd = vec![0u16; blocks_for(n) * BLOCK];
            let mut plain = vec![0u16; blocks_for(n) * BLOCK];
            scan(&fast, &blocks, &mut simd);
            scan_scalar(&fast, &blocks, &mut plain);
            prop_assert_eq!(&simd, &plain);
            // Rotating only up to the last coded dimension gives the same sums and a bound
            // no higher (the uncoded dimensions past it count 0).
            let sb = ScanBounds::new(&q);
            let short = FastTable::new(&sb, &yq[..sb.rotated_dims()], 0.0);
            let mut short_sums = vec![0u16; blocks_for(n) * BLOCK];
            scan(&short, &blocks, &mut short_sums);
            prop_assert_eq!(&short_sums, &simd);
            for &sum in &simd[..n] {
                prop_assert!(short.bound(sum) <= fast.bound(sum) * (1.0 + 1e-6) + 1e-9);
            }
            for (r, row) in rows.chunks_exact(dim).enumerate() {
                let fine = table.lower_bound(&codes[r * width..(r + 1) * width]);
                let coarse = fast.bound(simd[r]);
                prop_assert!(coarse <= fine * (1.0 + 1e-6) + 1e-9, "coarse {} > fine {}", coarse, fine);
                let exact: f32 = row.iter().zip(&query).map(|(a, b)| (a - b) * (a - b)).sum();
                prop_assert!(fine * (1.0 - 1e-4) <= exact + 1e-6 * scale * scale, "fine {} > exact {}", fine, exact);
            }
            // A table scaled to a reach (entries saturating past it) still bounds from
            // below, whatever the reach.
            let reach = reach_frac * (scale * scale * dim as f32);
            let reached = FastTable::new(&sb, &yq, reach);
            let mut reached_sums = vec![0u16; blocks_for(n) * BLOCK];
            scan(&reached, &blocks, &mut reached_sums);
            for r in 0..n {
                let fine = table.lower_bound(&codes[r * width..(r + 1) * width]);
                let coarse = reached.bound(reached_sums[r]);
                prop_assert!(coarse <= fine * (1.0 + 1e-6) + 1e-9, "reach {}: coarse {} > fine {}", reach, coarse, fine);
            }
        }
    }

    #[test]
    fn nibbles_keep_the_high_bits_of_wide_codes() {
        assert_eq!(nibble(0b1011, 4), 0b1011);
        assert_eq!(nibble(0b1011_0110, 8), 0b1011);
        assert_eq!(nibble(0b10_1101, 6), 0b1011);
        assert_eq!(nibble(1, 1), 1);
    }
}
