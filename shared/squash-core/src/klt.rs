//! The Karhunen-Loève transform (PCA rotation): centre on the mean, rotate onto the
//! eigenvectors of the covariance, strongest direction first. A full rotation keeps
//! Euclidean distances, so bounds computed in the rotated space hold for the originals.

use nalgebra::{DMatrix, SymmetricEigen};
use simsimd::SpatialSimilarity;

/// A fitted KLT: `y = basis · (x − mean)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Klt {
    /// Input dimension.
    pub dim: usize,
    /// Mean of the fitted data, `dim` values.
    pub mean: Vec<f32>,
    /// `out_dims × dim` row-major; row `i` is the `i`-th principal direction (unit length).
    pub basis: Vec<f32>,
    /// Variance along each kept direction, descending.
    pub eigenvalues: Vec<f32>,
}

impl Klt {
    /// Fits a KLT on `rows` (each `dim` long) and keeps the `out_dims` strongest
    /// directions (`out_dims == dim` for a full rotation). Accumulates in f64.
    pub fn fit<'a>(rows: impl Iterator<Item = &'a [f32]> + Clone, dim: usize, out_dims: usize) -> Klt {
        let out_dims = out_dims.clamp(1, dim.max(1));
        let mut mean = vec![0f64; dim];
        let mut count = 0usize;
        for row in rows.clone() {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += x as f64;
            }
            count += 1;
        }
        if count == 0 {
            return Klt::identity(dim);
        }
        for m in &mut mean {
            *m /= count as f64;
        }
        let mut cov = vec![0f64; dim * dim];
        let mut centred = vec![0f64; dim];
        for row in rows {
            for ((c, &x), &m) in centred.iter_mut().zip(row).zip(&mean) {
                *c = x as f64 - m;
            }
            for i in 0..dim {
                let ci = centred[i];
                if ci == 0.0 {
                    continue;
                }
                let out = &mut cov[i * dim..i * dim + dim];
                for j in i..dim {
                    out[j] += ci * centred[j];
                }
            }
        }
        let norm = 1.0 / count as f64;
        let matrix = DMatrix::from_fn(dim, dim, |i, j| {
            let (a, b) = if i <= j { (i, j) } else { (j, i) };
            cov[a * dim + b] * norm
        });
        let eig = SymmetricEigen::new(matrix);
        let mut order: Vec<usize> = (0..dim).collect();
        order.sort_by(|&a, &b| {
            eig.eigenvalues[b]
                .partial_cmp(&eig.eigenvalues[a])
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.cmp(&b))
        });
        let mut basis = Vec::with_capacity(out_dims * dim);
        let mut eigenvalues = Vec::with_capacity(out_dims);
        for &col in order.iter().take(out_dims) {
            let v = eig.eigenvectors.column(col);
            // Fix the sign so the largest component is positive: the same data always
            // gives the same basis.
            let mut largest = 0usize;
            for j in 0..dim {
                if v[j].abs() > v[largest].abs() {
                    largest = j;
                }
            }
            let sign = if v[largest] < 0.0 { -1.0 } else { 1.0 };
            basis.extend((0..dim).map(|j| (sign * v[j]) as f32));
            eigenvalues.push(eig.eigenvalues[col].max(0.0) as f32);
        }
        Klt {
            dim,
            mean: mean.iter().map(|&m| m as f32).collect(),
            basis,
            eigenvalues,
        }
    }

    /// The identity rotation around the origin.
    pub fn identity(dim: usize) -> Klt {
        let mut basis = vec![0f32; dim * dim];
        for i in 0..dim {
            basis[i * dim + i] = 1.0;
        }
        Klt {
            dim,
            mean: vec![0.0; dim],
            basis,
            eigenvalues: vec![0.0; dim],
        }
    }

    /// Number of output dimensions.
    pub fn out_dims(&self) -> usize {
        self.eigenvalues.len()
    }

    /// Applies the transform to `x` (length `dim`), writing the leading `out.len()` (at
    /// most `out_dims`) coordinates to `out`.
    /// `scratch` must be `dim` long; it holds the centred input.
    pub fn apply(&self, x: &[f32], scratch: &mut [f32], out: &mut [f32]) {
        debug_assert_eq!(x.len(), self.dim);
        for ((s, &v), &m) in scratch.iter_mut().zip(x).zip(&self.mean) {
            *s = v - m;
        }
        for (i, o) in out.iter_mut().enumerate() {
            let row = &self.basis[i * self.dim..(i + 1) * self.dim];
            *o = match f32::dot(row, scratch) {
                Some(d) => d as f32,
                None => row.iter().zip(scratch.iter()).map(|(a, b)| a * b).sum(),
            };
        }
    }

    /// Convenience wrapper around [`Klt::apply`] that allocates.
    pub fn transform(&self, x: &[f32]) -> Vec<f32> {
        let mut scratch = vec![0f32; self.dim];
        let mut out = vec![0f32; self.out_dims()];
        self.apply(x, &mut scratch, &mut out);
        out
    }

    /// Smallest number of leading directions whose variance reaches `fraction` of the total.
    pub fn dims_for_energy(&self, fraction: f64) -> usize {
        let total: f64 = self.eigenvalues.iter().map(|&e| e as f64).sum();
        if total <= 0.0 {
            return self.out_dims();
        }
        let mut acc = 0.0;
        for (i, &e) in self.eigenvalues.iter().enumerate() {
            acc += e as f64;
            if acc >= fraction * total {
                return i + 1;
            }
        }
        self.out_dims()
    }

    /// Keeps only the first `dims` directions.
    pub fn truncated(&self, dims: usize) -> Klt {
        let dims = dims.clamp(1, self.out_dims());
        Klt {
            dim: self.dim,
            mean: self.mean.clone(),
            basis: self.basis[..dims * self.dim].to_vec(),
            eigenvalues: self.eigenvalues[..dims].to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn full_rotation_preserves_distances_and_orders_variance() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let dim = 12;
        let rows: Vec<Vec<f32>> = (0..2000)
            .map(|_| (0..dim).map(|j| rng.gen::<f32>() * (j as f32 + 1.0)).collect())
            .collect();
        let klt = Klt::fit(rows.iter().map(|r| r.as_slice()), dim, dim);
        for w in klt.eigenvalues.windows(2) {
            assert!(w[0] >= w[1]);
        }
        let a = klt.transform(&rows[0]);
        let b = klt.transform(&rows[1]);
        let d_orig: f32 = rows[0].iter().zip(&rows[1]).map(|(x, y)| (x - y) * (x - y)).sum();
        let d_rot: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!((d_orig - d_rot).abs() < 1e-3 * d_orig.max(1.0));
        assert!(klt.dims_for_energy(0.5) < dim);
    }
}
