//! Sign-bit (binary) codes: one bit per rotated dimension, set when the centred,
//! rotated coordinate is positive. The Hamming distance between a query's bits and a
//! vector's bits is a cheap angular proxy used to prune before the ADC bounds.

/// Number of u64 words for `dims` bits.
pub fn words_for(dims: usize) -> usize {
    dims.div_ceil(64)
}

/// Writes the sign bits of `y` into `out` (`words_for(y.len())` words).
pub fn encode_signs(y: &[f32], out: &mut [u64]) {
    out.iter_mut().for_each(|w| *w = 0);
    for (j, &v) in y.iter().enumerate() {
        if v > 0.0 {
            out[j / 64] |= 1u64 << (j % 64);
        }
    }
}

/// Hamming distance between two codes of equal length.
#[inline]
pub fn hamming(a: &[u64], b: &[u64]) -> u32 {
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_hamming() {
        let y: Vec<f32> = (0..70).map(|i| if i % 3 == 0 { 1.0 } else { -1.0 }).collect();
        let mut a = vec![0u64; words_for(70)];
        encode_signs(&y, &mut a);
        let neg: Vec<f32> = y.iter().map(|v| -v).collect();
        let mut b = vec![0u64; words_for(70)];
        encode_signs(&neg, &mut b);
        assert_eq!(hamming(&a, &a), 0);
        assert_eq!(hamming(&a, &b), 70);
    }
}
