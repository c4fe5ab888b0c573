//! OSQ: optimised (non-uniform) scalar quantisation of KLT-rotated coordinates.
//!
//! * Bits per dimension come from a greedy allocation over the energy spectrum: the
//!   dimension with the most remaining energy gets one more bit (doubling its cells,
//!   quartering its remaining energy), capped at [`MAX_BITS`].
//! * Each dimension's cell boundaries start equi-depth and are refined by 1-D
//!   Lloyd-Max iterations. The outer boundaries are the exact minimum and maximum of
//!   the encoded data, so every encoded value lies inside its cell.
//! * A query builds one lookup table per dimension holding the squared distance from
//!   the query coordinate to each cell; the sum over dimensions is a lower bound on
//!   the squared Euclidean distance (ADC lower bound).

/// Largest number of bits a dimension may get.
pub const MAX_BITS: u8 = 8;

/// Greedy bit allocation: `total_bits` bits over dimensions with the given energies
/// (variances). Returns bits per dimension, each at most `max_bits`.
pub fn allocate_bits(energies: &[f32], total_bits: usize, max_bits: u8) -> Vec<u8> {
    let mut bits = vec![0u8; energies.len()];
    let mut remaining: Vec<f64> = energies.iter().map(|&e| e.max(0.0) as f64).collect();
    for _ in 0..total_bits {
        let mut best: Option<usize> = None;
        for (j, &e) in remaining.iter().enumerate() {
            if bits[j] >= max_bits || e <= 0.0 {
                continue;
            }
            if best.is_none_or(|b| e > remaining[b]) {
                best = Some(j);
            }
        }
        let Some(j) = best else { break };
        bits[j] += 1;
        remaining[j] /= 4.0;
    }
    bits
}

/// Lloyd-Max boundaries for `cells` cells over `sorted` values (ascending, non-empty),
/// initialised equi-depth. Returns `cells + 1` ascending boundaries; the first and last
/// are `lo` and `hi`, which must enclose every value that will be encoded.
pub fn lloyd_max_boundaries(sorted: &[f32], cells: usize, lo: f32, hi: f32, iterations: usize) -> Vec<f32> {
    debug_assert!(!sorted.is_empty());
    let n = sorted.len();
    let mut bounds = Vec::with_capacity(cells + 1);
    bounds.push(lo);
    for c in 1..cells {
        let idx = (c * n / cells).min(n - 1);
        bounds.push(sorted[idx].clamp(lo, hi));
    }
    bounds.push(hi);
    if cells <= 1 {
        return bounds;
    }
    // Prefix sums (f64) make each cell mean O(log n).
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0f64);
    let mut acc = 0f64;
    for &v in sorted {
        acc += v as f64;
        prefix.push(acc);
    }
    let mut recon = vec![0f32; cells];
    for _ in 0..iterations {
        for c in 0..cells {
            let (a, b) = (bounds[c], bounds[c + 1]);
            let start = sorted.partition_point(|&v| v < a);
            let end = if c + 1 == cells {
                n
            } else {
                sorted.partition_point(|&v| v < b)
            };
            recon[c] = if end > start {
                ((prefix[end] - prefix[start]) / (end - start) as f64) as f32
            } else {
                0.5 * (a + b)
            };
        }
        let mut changed = false;
        for c in 1..cells {
            let mid = (0.5 * (recon[c - 1] as f64 + recon[c] as f64)) as f32;
            let mid = mid.clamp(bounds[c - 1], hi);
            if mid != bounds[c] {
                changed = true;
                bounds[c] = mid;
            }
        }
        if !changed {
            break;
        }
    }
    // Guarantee monotonicity whatever the floating point did.
    for c in 1..bounds.len() {
        if bounds[c] < bounds[c - 1] {
            bounds[c] = bounds[c - 1];
        }
    }
    bounds
}

/// A trained per-partition scalar quantiser over `dims` rotated dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantizer {
    /// Bits per dimension (0 means the dimension has no code, one cell `[min, max]`).
    pub bits: Vec<u8>,
    /// Per dimension, `2^bits + 1` ascending boundaries; first = min, last = max of the data.
    pub bounds: Vec<Vec<f32>>,
}

impl Quantizer {
    /// Trains on `rows` (`n × dims` row-major rotated coordinates) with the given bit
    /// allocation. `sample_limit` caps the values used for Lloyd-Max per dimension;
    /// min/max always come from every row.
    pub fn train(rows: &[f32], dims: usize, bits: &[u8], sample_limit: usize) -> Quantizer {
        assert_eq!(bits.len(), dims);
        let n = rows.len().checked_div(dims).unwrap_or(0);
        let step = n.div_ceil(sample_limit.max(1)).max(1);
        let mut bounds = Vec::with_capacity(dims);
        let mut column = Vec::with_capacity(n / step + 1);
        for (j, &b) in bits.iter().enumerate() {
            let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
            for i in 0..n {
                let v = rows[i * dims + j];
                lo = lo.min(v);
                hi = hi.max(v);
            }
            if n == 0 {
                lo = 0.0;
                hi = 0.0;
            }
            column.clear();
            column.extend((0..n).step_by(step).map(|i| rows[i * dims + j]));
            column.sort_by(|a, b| a.total_cmp(b));
            let cells = 1usize << b;
            if column.is_empty() {
                bounds.push(vec![lo; cells + 1]);
            } else {
                bounds.push(lloyd_max_boundaries(&column, cells, lo, hi, 16));
            }
        }
        Quantizer {
            bits: bits.to_vec(),
            bounds,
        }
    }

    /// Number of dimensions.
    pub fn dims(&self) -> usize {
        self.bits.len()
    }

    /// Indices of dimensions that carry a code (bits > 0), ascending.
    pub fn active_dims(&self) -> Vec<usize> {
        (0..self.bits.len()).filter(|&j| self.bits[j] > 0).collect()
    }

    /// Encodes rotated coordinates `y` into one byte per active dimension.
    pub fn encode(&self, y: &[f32], out: &mut [u8]) {
        let mut k = 0;
        for (j, &b) in self.bits.iter().enumerate() {
            if b == 0 {
                continue;
            }
            let bounds = &self.bounds[j];
            debug_assert!(y[j] >= bounds[0] && y[j] <= bounds[bounds.len() - 1]);
            let inner = &bounds[1..bounds.len() - 1];
            out[k] = inner.partition_point(|&t| t <= y[j]) as u8;
            k += 1;
        }
    }

    /// Builds the per-query ADC lookup table for rotated query coordinates `yq`.
    pub fn query_table(&self, yq: &[f32]) -> QueryTable {
        let mut tables = Vec::with_capacity(self.bits.len());
        let mut constant = 0f32;
        for (j, &b) in self.bits.iter().enumerate() {
            let bounds = &self.bounds[j];
            let q = yq[j];
            let gap = |lo: f32, hi: f32| -> f32 {
                let d = if q < lo {
                    lo - q
                } else if q > hi {
                    q - hi
                } else {
                    0.0
                };
                d * d
            };
            if b == 0 {
                constant += gap(bounds[0], bounds[bounds.len() - 1]);
                continue;
            }
            let mut t = [0f32; 256];
            for (c, slot) in t.iter_mut().enumerate().take(1usize << b) {
                *slot = gap(bounds[c], bounds[c + 1]);
            }
            tables.push(t);
        }
        QueryTable { tables, constant }
    }
}

/// Per-query ADC table of one partition (see [`Quantizer::query_table`]): for each
/// active dimension, the squared gap from the query to each of its cells (256 slots,
/// so a byte code indexes it without a bounds check).
#[derive(Debug, Clone)]
pub struct QueryTable {
    /// One table per active dimension.
    pub tables: Vec<[f32; 256]>,
    /// Contribution of the dimensions without codes.
    pub constant: f32,
}

impl QueryTable {
    /// Lower bound on the squared Euclidean distance of the vector with these codes.
    /// Four independent accumulators keep the adds from serialising.
    #[inline]
    pub fn lower_bound(&self, codes: &[u8]) -> f32 {
        debug_assert_eq!(codes.len(), self.tables.len());
        let mut acc = [0f32; 4];
        let mut code_chunks = codes.chunks_exact(4);
        let mut table_chunks = self.tables.chunks_exact(4);
        for (c, t) in (&mut code_chunks).zip(&mut table_chunks) {
            acc[0] += t[0][c[0] as usize];
            acc[1] += t[1][c[1] as usize];
            acc[2] += t[2][c[2] as usize];
            acc[3] += t[3][c[3] as usize];
        }
        for (&c, t) in code_chunks.remainder().iter().zip(table_chunks.remainder()) {
            acc[0] += t[c as usize];
        }
        self.constant + (acc[0] + acc[1]) + (acc[2] + acc[3])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::klt::Klt;
    use proptest::prelude::*;

    /// A random partition for the bound property tests: `n × dim` rows (varied scales per
    /// dimension), their KLT, the rotated rows and a quantiser with `bits_per_dim` bits
    /// per dimension on average.
    pub(crate) fn random_partition(
        rng: &mut rand_chacha::ChaCha8Rng,
        dim: usize,
        n: usize,
        bits_per_dim: u32,
        scale: f32,
    ) -> (Vec<f32>, Klt, Vec<f32>, Quantizer) {
        use rand::Rng;
        let rows: Vec<f32> = (0..n * dim)
            .map(|i| (rng.gen::<f32>() - 0.5) * scale * (1 + i % 5) as f32)
            .collect();
        let klt = Klt::fit(rows.chunks_exact(dim), dim, dim);
        let rotated: Vec<f32> = rows.chunks_exact(dim).flat_map(|r| klt.transform(r)).collect();
        let bits = allocate_bits(&klt.eigenvalues, bits_per_dim as usize * dim, MAX_BITS);
        let q = Quantizer::train(&rotated, dim, &bits, 1000);
        (rows, klt, rotated, q)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The ADC lower bound, computed in the partition's KLT space, never exceeds the
        /// true squared distance in the original space (up to f32 rounding).
        #[test]
        fn lower_bound_never_exceeds_true_distance(
            seed in 0u64..1000,
            dim in 1usize..24,
            n in 2usize..300,
            bits_per_dim in 1u32..8,
            scale in 0.01f32..100.0,
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let (rows, klt, rotated, q) = random_partition(&mut rng, dim, n, bits_per_dim, scale);
            let width = q.active_dims().len();
            let query: Vec<f32> = (0..dim).map(|_| (rng.gen::<f32>() - 0.5) * scale * 3.0).collect();
            let table = q.query_table(&klt.transform(&query));
            let mut codes = vec![0u8; width];
            for (row, y) in rows.chunks_exact(dim).zip(rotated.chunks_exact(dim)) {
                q.encode(y, &mut codes);
                let lb = table.lower_bound(&codes);
                let exact: f32 = row.iter().zip(&query).map(|(a, b)| (a - b) * (a - b)).sum();
                prop_assert!(lb * (1.0 - 1e-4) <= exact + 1e-6 * scale * scale,
                    "lb {} > exact {}", lb, exact);
            }
        }
    }

    #[test]
    fn allocation_follows_energy_and_respects_cap() {
        let bits = allocate_bits(&[100.0, 10.0, 1.0, 0.0], 12, 8);
        assert_eq!(bits.iter().map(|&b| b as usize).sum::<usize>(), 12);
        assert!(bits[0] >= bits[1] && bits[1] >= bits[2]);
        assert_eq!(bits[3], 0);
        let bits = allocate_bits(&[1.0], 20, 8);
        assert_eq!(bits, vec![8]);
    }

    #[test]
    fn lloyd_max_reduces_error_on_skewed_data() {
        let mut values: Vec<f32> = (0..2_000).map(|i| ((i as f32) / 2_000.0).powi(3)).collect();
        values.sort_by(|a, b| a.total_cmp(b));
        let lo = values[0];
        let hi = values[values.len() - 1];
        let init = lloyd_max_boundaries(&values, 8, lo, hi, 0);
        let refined = lloyd_max_boundaries(&values, 8, lo, hi, 30);
        let mse = |b: &[f32]| -> f64 {
            values
                .iter()
                .map(|&v| {
                    let c = b[1..b.len() - 1].partition_point(|&t| t <= v);
                    let (l, h) = (b[c], b[c + 1]);
                    let in_cell: Vec<f32> = values.iter().copied().filter(|&x| x >= l && x <= h).collect();
                    let m = in_cell.iter().map(|&x| x as f64).sum::<f64>() / in_cell.len().max(1) as f64;
                    (v as f64 - m).powi(2)
                })
                .sum::<f64>()
        };
        assert!(mse(&refined) <= mse(&init) * 1.0001);
        assert_eq!(refined.len(), 9);
        assert_eq!(refined[0], lo);
        assert_eq!(refined[8], hi);
    }
}
