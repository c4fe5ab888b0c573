//! Distances. Every exact distance in squash goes through [`exact_distance`], so the
//! engine and the brute-force ground truth agree to the last bit.

use crate::error::{CoreError, Result};
use serde::{Deserialize, Serialize};
use simsimd::SpatialSimilarity;

/// How vectors are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// Cosine distance `1 - cos(a, b)`. Vectors are unit-normalised at build and query
    /// time, so it equals half the squared Euclidean distance of the normalised vectors.
    Cosine,
    /// Inner product (higher is nearer), reported as the distance `-(q · x)`. Searched as
    /// squared L2 after a transformation: each stored vector `x` gets one more
    /// coordinate, `sqrt(M² - |x|²)` with `M` the index's largest norm, and each query
    /// a 0 there, so that `|q' - x'|² = |q|² + M² - 2 q·x`: the nearest in L2 are the
    /// largest inner products, and every L2 lower bound stays sound.
    Ip,
}

impl Metric {
    /// Parses `l2`, `cosine` or `ip` (case-insensitive; also `euclidean`, `angular`,
    /// `inner_product`, `dot`).
    pub fn parse(text: &str) -> Result<Metric> {
        match text.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Ok(Metric::L2),
            "cosine" | "angular" => Ok(Metric::Cosine),
            "ip" | "inner_product" | "dot" => Ok(Metric::Ip),
            other => Err(CoreError::invalid(
                "metric",
                format!("unknown metric '{other}' (expected 'l2', 'cosine' or 'ip')"),
            )),
        }
    }

    /// Converts a squared Euclidean distance (of prepared vectors) to this metric's
    /// internal distance: the engine's unit for ordering and pruning. For inner product
    /// the internal distance is the squared L2 distance of the transformed vectors
    /// ([`Metric::Ip`]); [`report_distance`] turns it into `-(q · x)`.
    #[inline]
    pub fn from_l2sq(self, l2sq: f32) -> f32 {
        match self {
            Metric::L2 | Metric::Ip => l2sq,
            Metric::Cosine => 0.5 * l2sq,
        }
    }

    /// Converts this metric's internal distance back to squared Euclidean units.
    #[inline]
    pub fn to_l2sq(self, distance: f32) -> f32 {
        match self {
            Metric::L2 | Metric::Ip => distance,
            Metric::Cosine => 2.0 * distance,
        }
    }

    /// Name used in files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
            Metric::Ip => "ip",
        }
    }

    /// Dimension of the stored (prepared) vectors of an index of `dim`-dimensional
    /// inputs: one more for inner product (the transformation's coordinate).
    pub fn stored_dim(self, dim: usize) -> usize {
        match self {
            Metric::Ip => dim + 1,
            _ => dim,
        }
    }
}

/// Largest Euclidean norm of the rows of a row-major `data` of `dim` columns.
pub fn max_norm(data: &[f32], dim: usize) -> f32 {
    data.chunks_exact(dim.max(1)).map(norm).fold(0.0, f32::max)
}

/// Euclidean norm, accumulated in f64.
pub fn norm(v: &[f32]) -> f32 {
    v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt() as f32
}

/// Prepares a vector to be stored in an index: [`prepare_vector`], then for inner
/// product the transformation's coordinate `sqrt(M² - |v|²)` appended (`max_norm` is
/// the index's `M`; a vector longer than it is an error naming `field`).
pub fn prepare_stored(metric: Metric, v: &mut Vec<f32>, dim: usize, max_norm: f32, field: &str) -> Result<()> {
    prepare_vector(metric, v, dim, field)?;
    if metric == Metric::Ip {
        let n = norm(v) as f64;
        let m = max_norm as f64;
        // The norm is accumulated in f64 but both sides were rounded to f32.
        if n > m * (1.0 + 1e-6) {
            return Err(CoreError::invalid(
                field,
                format!(
                    "vector norm {n} exceeds the index's largest norm {m} (an inner-product index fixes it at build: `squash build --max-norm`)"
                ),
            ));
        }
        v.push((m * m - n * n).max(0.0).sqrt() as f32);
    }
    Ok(())
}

/// Prepares a query: [`prepare_vector`], then for inner product a 0 appended (the
/// transformation's coordinate).
pub fn prepare_query(metric: Metric, v: &mut Vec<f32>, dim: usize, field: &str) -> Result<()> {
    prepare_vector(metric, v, dim, field)?;
    if metric == Metric::Ip {
        v.push(0.0);
    }
    Ok(())
}

/// The distance a hit reports, from the engine's internal one: for inner product
/// `-(q · x) = (|q' - x'|² - |q|² - M²) / 2` (`query` prepared, `max_norm` the index's
/// `M`); the internal distance itself for the other metrics.
pub fn report_distance(metric: Metric, internal: f32, query: &[f32], max_norm: f32) -> f32 {
    match metric {
        Metric::Ip => {
            let q2: f64 = query.iter().map(|&x| (x as f64) * (x as f64)).sum();
            let m2 = (max_norm as f64) * (max_norm as f64);
            ((internal as f64 - q2 - m2) / 2.0) as f32
        }
        _ => internal,
    }
}

/// The true distance between two vectors as given (not prepared): squared L2, cosine
/// distance, or `-(a · b)` for inner product, in f64 (for ground truth and tests).
pub fn true_distance(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
    let dot = |a: &[f32], b: &[f32]| -> f64 { a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum() };
    match metric {
        Metric::L2 => a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).powi(2)).sum(),
        Metric::Cosine => {
            let na = dot(a, a).sqrt();
            let nb = dot(b, b).sqrt();
            if na == 0.0 || nb == 0.0 {
                1.0
            } else {
                1.0 - dot(a, b) / (na * nb)
            }
        }
        Metric::Ip => -dot(a, b),
    }
}

/// Squared Euclidean distance with simsimd's SIMD kernels (scalar fallback if the
/// slices differ in length, which callers never do).
#[inline]
pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    match f32::sqeuclidean(a, b) {
        Some(d) => d as f32,
        None => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
    }
}

/// Asks the CPU to start loading `data` into cache (a hint: no effect on results, and a
/// no-op where no prefetch instruction is available). Random-access loops call it a few
/// rows ahead so the memory latency overlaps the arithmetic.
#[inline]
pub fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let bytes = std::mem::size_of_val(data);
        let base = data.as_ptr() as *const i8;
        let mut at = 0;
        while at < bytes {
            // SAFETY: prefetch never faults and `base + at` lies inside `data`.
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(base.add(at)) };
            at += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Exact distance in `metric` between two *prepared* vectors (see [`prepare_vector`]).
#[inline]
pub fn exact_distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    metric.from_l2sq(l2sq(a, b))
}

/// Checks that a vector is finite and has the expected dimension, then normalises it
/// in place when the metric is cosine. `field` names the vector in error messages. (For
/// inner product it only checks: [`prepare_stored`] and [`prepare_query`] add the
/// transformation's coordinate.)
pub fn prepare_vector(metric: Metric, v: &mut [f32], dim: usize, field: &str) -> Result<()> {
    if v.is_empty() {
        return Err(CoreError::invalid(field, "vector is empty"));
    }
    if v.len() != dim {
        return Err(CoreError::invalid(
            field,
            format!("vector has {} dimensions, index has {dim}", v.len()),
        ));
    }
    if let Some(pos) = v.iter().position(|x| !x.is_finite()) {
        return Err(CoreError::invalid(
            field,
            format!("component {pos} is {} (NaN and Inf are not allowed)", v[pos]),
        ));
    }
    if metric == Metric::Cosine {
        let norm: f64 = v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return Err(CoreError::invalid(
                field,
                "vector has zero length; cosine distance needs a non-zero vector",
            ));
        }
        for x in v.iter_mut() {
            *x = (*x as f64 / norm) as f32;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2sq_matches_scalar() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32).sin()).collect();
        let scalar: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!((l2sq(&a, &b) - scalar).abs() <= 1e-3 * scalar.max(1.0));
    }

    #[test]
    fn prepare_rejects_bad_vectors() {
        let mut v = vec![1.0, f32::NAN];
        assert!(prepare_vector(Metric::L2, &mut v, 2, "q").is_err());
        let mut v = vec![1.0, 2.0];
        assert!(prepare_vector(Metric::L2, &mut v, 3, "q").is_err());
        let mut v = vec![0.0, 0.0];
        assert!(prepare_vector(Metric::Cosine, &mut v, 2, "q").is_err());
        let mut v = vec![3.0, 4.0];
        prepare_vector(Metric::Cosine, &mut v, 2, "q").unwrap();
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn inner_product_transformation_orders_by_inner_product() {
        let rows = [
            vec![1.0f32, 2.0, 0.5],
            vec![-1.0, 0.3, 2.0],
            vec![3.0, 0.0, -1.0],
            vec![0.1, 0.1, 0.1],
        ];
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let m = max_norm(&flat, 3);
        let stored: Vec<Vec<f32>> = rows
            .iter()
            .map(|r| {
                let mut v = r.clone();
                prepare_stored(Metric::Ip, &mut v, 3, m, "x").unwrap();
                v
            })
            .collect();
        let q0 = vec![0.4f32, -1.0, 2.0];
        let mut q = q0.clone();
        prepare_query(Metric::Ip, &mut q, 3, "q").unwrap();
        assert_eq!(q.len(), 4);
        for (r, s) in rows.iter().zip(&stored) {
            assert!((norm(s) - m).abs() < 1e-5, "every stored vector has norm M");
            let reported = report_distance(Metric::Ip, exact_distance(Metric::Ip, &q, s), &q, m);
            let truth = true_distance(Metric::Ip, &q0, r);
            assert!((reported as f64 - truth).abs() < 1e-4, "{reported} vs {truth}");
        }
        // A vector longer than M is refused, naming the field.
        let mut long = vec![10.0f32, 0.0, 0.0];
        let e = prepare_stored(Metric::Ip, &mut long, 3, m, "vectors[3].vector").unwrap_err();
        assert!(e.to_string().contains("vectors[3].vector"), "{e}");
        assert_eq!(Metric::parse("IP").unwrap(), Metric::Ip);
        assert_eq!(Metric::Ip.stored_dim(3), 4);
    }

    #[test]
    fn cosine_is_half_l2sq_of_unit_vectors() {
        let mut a = vec![1.0, 0.0];
        let mut b = vec![0.0, 2.0];
        prepare_vector(Metric::Cosine, &mut a, 2, "a").unwrap();
        prepare_vector(Metric::Cosine, &mut b, 2, "b").unwrap();
        assert!((exact_distance(Metric::Cosine, &a, &b) - 1.0).abs() < 1e-6);
    }
}
