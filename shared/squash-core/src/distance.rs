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
}

impl Metric {
    /// Parses `l2` or `cosine` (case-insensitive).
    pub fn parse(text: &str) -> Result<Metric> {
        match text.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Ok(Metric::L2),
            "cosine" | "angular" => Ok(Metric::Cosine),
            other => Err(CoreError::invalid(
                "metric",
                format!("unknown metric '{other}' (expected 'l2' or 'cosine')"),
            )),
        }
    }

    /// Converts a squared Euclidean distance (of prepared vectors) to this metric's distance.
    #[inline]
    pub fn from_l2sq(self, l2sq: f32) -> f32 {
        match self {
            Metric::L2 => l2sq,
            Metric::Cosine => 0.5 * l2sq,
        }
    }

    /// Converts this metric's distance back to squared Euclidean units.
    #[inline]
    pub fn to_l2sq(self, distance: f32) -> f32 {
        match self {
            Metric::L2 => distance,
            Metric::Cosine => 2.0 * distance,
        }
    }

    /// Name used in files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Cosine => "cosine",
        }
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
/// in place when the metric is cosine. `field` names the vector in error messages.
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
    fn cosine_is_half_l2sq_of_unit_vectors() {
        let mut a = vec![1.0, 0.0];
        let mut b = vec![0.0, 2.0];
        prepare_vector(Metric::Cosine, &mut a, 2, "a").unwrap();
        prepare_vector(Metric::Cosine, &mut b, 2, "b").unwrap();
        assert!((exact_distance(Metric::Cosine, &a, &b) - 1.0).abs() < 1e-6);
    }
}
