//! ns per code of the ADC lower bound: the blocked SIMD scan (the kernel this CPU picks),
//! the same blocks through the scalar kernel, and the row-by-row f32 table walk, on one
//! list-sized batch of 4-bit-average OSQ codes. `cargo bench -p squash-core --bench scan`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use squash_core::fastscan::{blocks_for, pack_list, scan, scan_scalar, FastTable, ScanBounds, BLOCK};
use squash_core::klt::Klt;
use squash_core::osq::{allocate_bits, Quantizer, MAX_BITS};

fn bench_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("adc_bound");
    for dim in [50usize, 128, 784] {
        let n = 4096;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let rows: Vec<f32> = (0..n * dim)
            .map(|i| (rng.gen::<f32>() - 0.5) * (1.0 + (i % dim) as f32 / dim as f32))
            .collect();
        let klt = Klt::fit(rows.chunks_exact(dim), dim, dim);
        let rotated: Vec<f32> = rows.chunks_exact(dim).flat_map(|r| klt.transform(r)).collect();
        let bits = allocate_bits(&klt.eigenvalues, 4 * dim, MAX_BITS);
        let q = Quantizer::train(&rotated, dim, &bits, 20_000);
        let active: Vec<u8> = bits.iter().copied().filter(|&b| b > 0).collect();
        let width = active.len();
        let mut codes = vec![0u8; n * width];
        for (y, out) in rotated.chunks_exact(dim).zip(codes.chunks_exact_mut(width)) {
            q.encode(y, out);
        }
        let mut blocks = Vec::new();
        pack_list(&codes, width, &active, &mut blocks);
        let yq = klt.transform(&rows[..dim]);
        let sb = ScanBounds::new(&q);
        let fast = FastTable::new(&sb, &yq, 0.0);
        let table = q.query_table(&yq);
        let mut sums = vec![0u16; blocks_for(n) * BLOCK];
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("blocked_simd", dim), &dim, |b, _| {
            b.iter(|| scan(&fast, black_box(&blocks), &mut sums))
        });
        group.bench_with_input(BenchmarkId::new("blocked_scalar", dim), &dim, |b, _| {
            b.iter(|| scan_scalar(&fast, black_box(&blocks), &mut sums))
        });
        group.bench_with_input(BenchmarkId::new("row_f32_tables", dim), &dim, |b, _| {
            b.iter(|| {
                let mut acc = 0f32;
                for row in black_box(&codes).chunks_exact(width) {
                    acc += table.lower_bound(row);
                }
                acc
            })
        });
        group.bench_with_input(BenchmarkId::new("query_tables", dim), &dim, |b, _| {
            b.iter(|| FastTable::new(&sb, black_box(&yq), 0.0))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_scan);
criterion_main!(benches);
