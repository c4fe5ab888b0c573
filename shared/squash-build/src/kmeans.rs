//! Balanced k-means: Lloyd iterations on a sample, then a capacity-constrained
//! assignment of every point so each partition holds within ±10% of `n / k` points.
//! Points come through [`Points`], so a large build can hold them compactly
//! ([`Bf16Points`]: half the bytes of f32).

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use squash_core::distance::l2sq;

/// Result of [`balanced_kmeans`].
#[derive(Debug, Clone)]
pub struct Partitioning {
    /// Partition of each point.
    pub assignment: Vec<u32>,
}

/// Size bounds for `n` points in `k` partitions: within ±10% of `n / k`, widened to the
/// nearest feasible integers.
pub fn size_bounds(n: usize, k: usize) -> (usize, usize) {
    let mean = n as f64 / k as f64;
    let lo = ((0.9 * mean).ceil() as usize).min(mean.floor() as usize);
    let hi = ((1.1 * mean).floor() as usize).max(mean.ceil() as usize);
    (lo, hi)
}

/// `n` points of dimension `d`, loaded one at a time as f32.
pub trait Points: Sync {
    /// Number of points.
    fn count(&self) -> usize;
    /// Dimension.
    fn dim(&self) -> usize;
    /// Writes point `i` into `out` (`dim` values).
    fn load(&self, i: usize, out: &mut [f32]);
}

/// Points stored as f32, row-major.
pub struct F32Points<'a> {
    /// `n × d` values.
    pub data: &'a [f32],
    /// Dimension.
    pub d: usize,
}

impl Points for F32Points<'_> {
    fn count(&self) -> usize {
        self.data.len() / self.d.max(1)
    }
    fn dim(&self) -> usize {
        self.d
    }
    fn load(&self, i: usize, out: &mut [f32]) {
        out.copy_from_slice(&self.data[i * self.d..(i + 1) * self.d]);
    }
}

/// Points stored as bfloat16 (the top 16 bits of an f32, rounded to nearest even):
/// a relative error below 2^-8 per coordinate, which moves only points already on a
/// partition boundary, for half the memory of f32 (1.6 GB less at 10M × 81).
pub struct Bf16Points {
    data: Vec<u16>,
    d: usize,
}

impl Bf16Points {
    /// Packs rows of `d` f32 values produced by `rows` (in parallel, in order).
    pub fn from_rows<I>(rows: I, d: usize) -> Bf16Points
    where
        I: IndexedParallelIterator<Item = Vec<f32>>,
    {
        let data: Vec<u16> = rows.flat_map_iter(|row| row.into_iter().map(to_bf16)).collect();
        Bf16Points { data, d }
    }
}

impl Points for Bf16Points {
    fn count(&self) -> usize {
        self.data.len() / self.d.max(1)
    }
    fn dim(&self) -> usize {
        self.d
    }
    fn load(&self, i: usize, out: &mut [f32]) {
        for (o, &b) in out.iter_mut().zip(&self.data[i * self.d..(i + 1) * self.d]) {
            *o = f32::from_bits(u32::from(b) << 16);
        }
    }
}

/// Rounds an f32 to bfloat16 bits (nearest, ties to even; NaN stays NaN).
fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

fn nearest(point: &[f32], centroids: &[f32], d: usize) -> (usize, f32) {
    let mut best = (0usize, f32::INFINITY);
    for (c, centroid) in centroids.chunks_exact(d).enumerate() {
        let dist = l2sq(point, centroid);
        if dist < best.1 {
            best = (c, dist);
        }
    }
    best
}

fn means(points: &dyn Points, k: usize, assignment: &[u32], fallback: &[f32]) -> Vec<f32> {
    let d = points.dim();
    let mut sums = vec![0f64; k * d];
    let mut counts = vec![0usize; k];
    let mut p = vec![0f32; d];
    for (i, &c) in assignment.iter().enumerate() {
        points.load(i, &mut p);
        let c = c as usize;
        counts[c] += 1;
        for (s, &x) in sums[c * d..(c + 1) * d].iter_mut().zip(&p) {
            *s += x as f64;
        }
    }
    let mut out = fallback.to_vec();
    for c in 0..k {
        if counts[c] > 0 {
            for j in 0..d {
                out[c * d + j] = (sums[c * d + j] / counts[c] as f64) as f32;
            }
        }
    }
    out
}

/// Partitions the points into `k` balanced groups. Deterministic for a given seed.
/// `on_iteration` is called after each of the `iterations + 2` steps.
pub fn balanced_kmeans(
    points: &dyn Points,
    k: usize,
    iterations: usize,
    seed: u64,
    on_iteration: &(dyn Fn() + Sync),
) -> Partitioning {
    let (n, d) = (points.count(), points.dim());
    assert!(k >= 1 && k <= n, "need 1 <= k <= n");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Train on a sample: enough points per centroid, bounded total.
    let sample_size = n.min((k * 256).max(20_000)).min(200_000);
    let mut sample_idx: Vec<usize> = sample(&mut rng, n, sample_size).into_vec();
    sample_idx.sort_unstable();
    let mut train = vec![0f32; sample_size * d];
    for (row, &i) in train.chunks_exact_mut(d).zip(&sample_idx) {
        points.load(i, row);
    }

    // k-means++ seeding on the sample.
    let mut centroids = Vec::with_capacity(k * d);
    let first = rng.gen_range(0..sample_size);
    centroids.extend_from_slice(&train[first * d..(first + 1) * d]);
    let mut best: Vec<f32> = train.par_chunks_exact(d).map(|p| l2sq(p, &centroids[..d])).collect();
    for c in 1..k {
        let total: f64 = best.iter().map(|&x| x as f64).sum();
        let pick = if total > 0.0 {
            let mut target = rng.gen::<f64>() * total;
            let mut chosen = sample_size - 1;
            for (i, &b) in best.iter().enumerate() {
                target -= b as f64;
                if target <= 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        } else {
            rng.gen_range(0..sample_size)
        };
        centroids.extend_from_slice(&train[pick * d..(pick + 1) * d]);
        let newest = centroids[c * d..(c + 1) * d].to_vec();
        best.par_iter_mut().zip(train.par_chunks_exact(d)).for_each(|(b, p)| {
            let dist = l2sq(p, &newest);
            if dist < *b {
                *b = dist;
            }
        });
    }

    // Lloyd iterations on the sample.
    for _ in 0..iterations {
        let assign: Vec<u32> = train
            .par_chunks_exact(d)
            .map(|p| nearest(p, &centroids, d).0 as u32)
            .collect();
        centroids = means(&F32Points { data: &train, d }, k, &assign, &centroids);
        on_iteration();
    }

    // Two rounds of capacity-constrained assignment of every point, re-centring between.
    let (lo, hi) = size_bounds(n, k);
    let mut assignment = vec![0u32; n];
    for round in 0..2 {
        assignment = constrained_assign(points, &centroids, lo, hi);
        // Only the assignment is returned: the last round needs no new centres.
        if round == 0 {
            centroids = means(points, k, &assignment, &centroids);
        }
        on_iteration();
    }
    Partitioning { assignment }
}

/// Assigns each point to its nearest centroid with room (at most `hi` per centroid),
/// points with the most to lose first; then tops up centroids below `lo` with the
/// cheapest points from centroids above `lo`.
fn constrained_assign(points: &dyn Points, centroids: &[f32], lo: usize, hi: usize) -> Vec<u32> {
    let (n, d) = (points.count(), points.dim());
    let k = centroids.len() / d;
    let top = k.min(8);
    // Nearest `top` centroids of each point, flat: `top` (centroid, distance) pairs per point.
    let mut candidates: Vec<(u32, f32)> = vec![(0, 0.0); n * top];
    candidates.par_chunks_mut(top).enumerate().for_each_init(
        || (vec![0f32; d], Vec::with_capacity(k)),
        |(p, all), (i, out)| {
            points.load(i, p);
            all.clear();
            all.extend(
                centroids
                    .chunks_exact(d)
                    .enumerate()
                    .map(|(c, cen)| (c as u32, l2sq(p, cen))),
            );
            // The `top` nearest in (distance, id) order: a selection, then a sort of just
            // those (a full sort of k candidates per point dominated 10M-vector builds).
            let order = |a: &(u32, f32), b: &(u32, f32)| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0));
            if all.len() > top {
                all.select_nth_unstable_by(top - 1, order);
            }
            all[..top].sort_by(order);
            out.copy_from_slice(&all[..top]);
        },
    );
    let nearest_of = |i: usize| &candidates[i * top..(i + 1) * top];
    let regret = |i: usize| -> f32 {
        let c = nearest_of(i);
        if c.len() > 1 {
            c[1].1 - c[0].1
        } else {
            0.0
        }
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.par_sort_by(|&a, &b| regret(b).total_cmp(&regret(a)).then(a.cmp(&b)));
    let mut sizes = vec![0usize; k];
    let mut assignment = vec![u32::MAX; n];
    for &i in &order {
        let slot = nearest_of(i)
            .iter()
            .find(|(c, _)| sizes[*c as usize] < hi)
            .map(|(c, _)| *c);
        let c = match slot {
            Some(c) => c,
            None => {
                // All nearby centroids are full: nearest centroid with room.
                let mut p = vec![0f32; d];
                points.load(i, &mut p);
                let mut best = (u32::MAX, f32::INFINITY);
                for (c, cen) in centroids.chunks_exact(d).enumerate() {
                    if sizes[c] < hi {
                        let dist = l2sq(&p, cen);
                        if dist < best.1 {
                            best = (c as u32, dist);
                        }
                    }
                }
                best.0
            }
        };
        assignment[i] = c;
        sizes[c as usize] += 1;
    }
    // Top up small partitions.
    for c in 0..k {
        if sizes[c] >= lo {
            continue;
        }
        let cen = &centroids[c * d..(c + 1) * d];
        let mut movable: Vec<(f32, usize)> = (0..n)
            .into_par_iter()
            .filter(|&i| assignment[i] as usize != c && sizes[assignment[i] as usize] > lo)
            .map_init(
                || vec![0f32; d],
                |p, i| {
                    points.load(i, p);
                    let own = &centroids[assignment[i] as usize * d..(assignment[i] as usize + 1) * d];
                    (l2sq(p, cen) - l2sq(p, own), i)
                },
            )
            .collect();
        // Cheapest moves first, in (cost, index) order. Only a few times the shortfall
        // is usually looked at, so sort that prefix (a selection first) and sort the
        // rest only if the prefix runs out: the same order as sorting everything, which
        // took minutes per small partition at 10M vectors.
        let order = |a: &(f32, usize), b: &(f32, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        let mut sorted = 0;
        let mut next = 0;
        while sizes[c] < lo && next < movable.len() {
            if next == sorted {
                let want = ((lo - sizes[c]) * 4).max(64);
                let end = (sorted + want).min(movable.len());
                let rest = &mut movable[sorted..];
                if end - sorted < rest.len() {
                    rest.select_nth_unstable_by(end - sorted - 1, order);
                }
                rest[..end - sorted].sort_by(order);
                sorted = end;
            }
            let i = movable[next].1;
            next += 1;
            let from = assignment[i] as usize;
            if sizes[from] <= lo {
                continue;
            }
            sizes[from] -= 1;
            sizes[c] += 1;
            assignment[i] = c as u32;
        }
    }
    debug_assert!(assignment.iter().all(|&a| (a as usize) < k));
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_balanced_even_on_skewed_data() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let d = 4;
        // 80% of the points in one tight blob.
        let points: Vec<f32> = (0..5000)
            .flat_map(|i| {
                let centre = if i % 5 == 0 { 10.0 } else { 0.0 };
                (0..d).map(|_| centre + rng.gen::<f32>()).collect::<Vec<_>>()
            })
            .collect();
        let part = balanced_kmeans(&F32Points { data: &points, d }, 7, 5, 3, &|| {});
        let (lo, hi) = size_bounds(5000, 7);
        let mut sizes = vec![0usize; 7];
        for &a in &part.assignment {
            sizes[a as usize] += 1;
        }
        for s in sizes {
            assert!(s >= lo && s <= hi, "size {s} outside [{lo}, {hi}]");
        }
        let again = balanced_kmeans(&F32Points { data: &points, d }, 7, 5, 3, &|| {});
        assert_eq!(again.assignment, part.assignment, "deterministic for a seed");
        // The same points in bfloat16: as balanced, and as tight as f32 partitions are
        // from one seed to another (the sum of squared distances to the partitions'
        // means, on the f32 points, no worse than the worst of 6 f32 seeds).
        let rows: Vec<Vec<f32>> = points.chunks(d).map(|r| r.to_vec()).collect();
        let half = Bf16Points::from_rows(rows.into_par_iter(), d);
        let f32_points = F32Points { data: &points, d };
        let cost = |assignment: &[u32]| -> f64 {
            let m = means(&f32_points, 7, assignment, &vec![0.0; 7 * d]);
            points
                .chunks(d)
                .zip(assignment)
                .map(|(p, &a)| l2sq(p, &m[a as usize * d..(a as usize + 1) * d]) as f64)
                .sum()
        };
        let worst = (1..=6)
            .map(|seed| cost(&balanced_kmeans(&f32_points, 7, 5, seed, &|| {}).assignment))
            .fold(0.0, f64::max);
        for seed in 1..=3 {
            let b = balanced_kmeans(&half, 7, 5, seed, &|| {});
            let mut sizes = vec![0usize; 7];
            b.assignment.iter().for_each(|&a| sizes[a as usize] += 1);
            assert!(sizes.iter().all(|&s| s >= lo && s <= hi), "bf16 sizes {sizes:?}");
            let c = cost(&b.assignment);
            assert!(
                c <= worst * 1.001,
                "bf16 partitions (seed {seed}) cost {c}, f32 ones up to {worst}"
            );
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_and_keeps_specials() {
        for x in [0.0f32, -0.0, 1.0, -2.5, 3.3333333, 1e-30, 6.0e37, f32::INFINITY] {
            let mut out = [0f32];
            Bf16Points {
                data: vec![to_bf16(x)],
                d: 1,
            }
            .load(0, &mut out);
            assert!(
                out[0] == x || (out[0] - x).abs() <= x.abs() / 256.0,
                "{x} -> {}",
                out[0]
            );
        }
        assert!(f32::from_bits(u32::from(to_bf16(f32::NAN)) << 16).is_nan());
        // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: rounds to even (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), to_bf16(1.0));
    }
}
