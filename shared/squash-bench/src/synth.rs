//! A synthetic clustered dataset for benchmarks that scales to 10M vectors: a Gaussian
//! mixture written straight to `.npy` files in chunks (never held whole in memory), with
//! SQUASH's four uniform range attributes plus a `label` attribute holding each vector's
//! mixture component, so the `label` filter is correlated with the vectors.
//! `synthesize` writes the same directory layout as [`crate::workload::prepare`].

use crate::error::{BenchError, Result};
use crate::workload::{label_case, range_cases, Workload, WorkloadCase};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use squash_build::io::{npy_f32_header, write_npy_f32};
use squash_core::distance::Metric;
use std::io::Write;
use std::path::Path;

/// Rows generated (and written) per chunk.
const CHUNK: usize = 65_536;

/// Settings of a synthetic dataset.
#[derive(Debug, Clone)]
pub struct SynthParams {
    /// Base (indexed) vectors.
    pub rows: usize,
    /// Dimensions.
    pub dim: usize,
    /// Mixture components (the values of `label`).
    pub clusters: usize,
    /// Held-out query vectors drawn from the same mixture.
    pub queries: usize,
    /// Uniform [0, 1) range attributes `a0..`.
    pub attributes: usize,
    /// Target selectivities of the range-filter cases.
    pub selectivities: Vec<f64>,
    /// When positive, a `tags` list attribute over this many words (`tags.jsonl`): 0 to
    /// 4 distinct tags per vector, drawn with Zipf weights `1 / rank`, independent of the
    /// vectors; and a `tags` case: `$containsAny` of two tags, about 1 % of the rows.
    pub tags: usize,
    /// When positive, two high-cardinality key attributes over about this many values
    /// each (`tenants.jsonl`): `tenant`, spread over the rows independently of the
    /// vectors with Zipf weights `1 / rank^0.7` (the largest about 1 % of the rows), and
    /// `local_tenant`, the vector's own region (its mixture component cut into equally
    /// likely cells along two random directions); cases `tenant` (one tenant per query,
    /// log-uniformly sized between 0.001 % and 1 % of the rows) and `local-tenant` (the
    /// tenant of the query's own region).
    pub tenants: usize,
    /// Seed of every random choice: same seed, same bytes.
    pub seed: u64,
}

/// Name of tag `t` (rank `t`, 0 the most frequent).
pub fn tag_name(t: usize) -> String {
    format!("t{t:05}")
}

/// Writes `tags.jsonl` for `rows` rows (see [`SynthParams::tags`]) and returns how many
/// rows hold each tag.
fn write_tags(path: &Path, rows: usize, words: usize, seed: u64) -> Result<Vec<u64>> {
    let err = |e: std::io::Error| BenchError::input(path.display(), format!("cannot write: {e}"));
    let mut cumulative = Vec::with_capacity(words);
    let mut acc = 0.0;
    for t in 0..words {
        acc += 1.0 / (t + 1) as f64;
        cumulative.push(acc);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut counts = vec![0u64; words];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(err)?);
    let mut row: Vec<usize> = Vec::with_capacity(4);
    for _ in 0..rows {
        row.clear();
        let want = rng.gen_range(0..=4usize).min(words);
        while row.len() < want {
            let x = rng.gen::<f64>() * acc;
            let t = cumulative.partition_point(|&c| c <= x).min(words - 1);
            if !row.contains(&t) {
                row.push(t);
            }
        }
        for &t in &row {
            counts[t] += 1;
        }
        let names: Vec<String> = row.iter().map(|&t| tag_name(t)).collect();
        writeln!(out, "{}", serde_json::json!({ "tags": names })).map_err(err)?;
    }
    out.flush().map_err(err)?;
    Ok(counts)
}

/// The `tags` case: each query asks for `$containsAny` of two tags that each hold
/// 0.3–0.7 % of the rows (the rarest ones when none do), so that about 1 % match.
fn tags_case(out: &Path, counts: &[u64], rows: usize, queries: usize, rng: &mut impl Rng) -> Result<WorkloadCase> {
    let share = |t: usize| counts[t] as f64 / rows.max(1) as f64;
    let mut pool: Vec<usize> = (0..counts.len())
        .filter(|&t| (0.003..=0.007).contains(&share(t)))
        .collect();
    if pool.len() < 2 {
        pool = (counts.len().saturating_sub(2)..counts.len()).collect();
    }
    let mut total = 0.0;
    let lines: Vec<serde_json::Value> = (0..queries)
        .map(|_| {
            let a = pool[rng.gen_range(0..pool.len())];
            let mut b = pool[rng.gen_range(0..pool.len())];
            if b == a && pool.len() > 1 {
                b = pool[(pool.iter().position(|&x| x == a).unwrap_or(0) + 1) % pool.len()];
            }
            total += share(a) + share(b);
            serde_json::json!({"tags": {"$containsAny": [tag_name(a), tag_name(b)]}})
        })
        .collect();
    crate::workload::write_case(out, "tags".into(), total / queries.max(1) as f64, "tags", &lines)
}

/// Name of uniform tenant `t` (rank `t`, 0 the largest).
pub fn tenant_name(t: usize) -> String {
    format!("u{t:06}")
}

/// Zipf exponent of the uniform tenants' sizes.
const TENANT_ZIPF: f64 = 0.7;

/// Cells per direction of a component for about `tenants` local tenants.
fn local_grid(tenants: usize, clusters: usize) -> usize {
    ((tenants as f64 / clusters.max(1) as f64).sqrt().ceil() as usize).max(1)
}

impl Mixture {
    /// The local tenant of vector `x` of component `c`: its cell along two fixed
    /// random directions, in units of the component's spread (cells equally likely).
    fn local_tenant(&self, x: &[f32], c: usize, dirs: &[f32], grid: usize) -> usize {
        let center = &self.centers[c * self.dim..(c + 1) * self.dim];
        let mut cell = [0usize; 2];
        for (i, out) in cell.iter_mut().enumerate() {
            let u = &dirs[i * self.dim..(i + 1) * self.dim];
            let z: f32 = x.iter().zip(center).zip(u).map(|((x, m), u)| (x - m) * u).sum::<f32>() / self.sigma[c];
            // Logistic approximation of the normal CDF (error under 0.01).
            let p = 1.0 / (1.0 + (-1.702 * z as f64).exp());
            *out = ((p * grid as f64) as usize).min(grid - 1);
        }
        (c * grid + cell[0]) * grid + cell[1]
    }
}

/// Writes `tenants.jsonl` (see [`SynthParams::tenants`]) and returns the rows of each
/// uniform tenant.
fn write_tenants(
    path: &Path,
    p: &SynthParams,
    mix: &Mixture,
    dirs: &[f32],
    chunk_rng: &(dyn Fn(u64, usize) -> ChaCha8Rng + Sync),
) -> Result<Vec<u64>> {
    let err = |e: std::io::Error| BenchError::input(path.display(), format!("cannot write: {e}"));
    let n = p.tenants;
    let mut cumulative = Vec::with_capacity(n);
    let mut acc = 0.0;
    for t in 0..n {
        acc += 1.0 / ((t + 1) as f64).powf(TENANT_ZIPF);
        cumulative.push(acc);
    }
    let grid = local_grid(n, p.clusters);
    let mut counts = vec![0u64; n];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(err)?);
    let chunks: Vec<usize> = (0..p.rows.div_ceil(CHUNK)).collect();
    for batch in chunks.chunks(rayon::current_num_threads().max(1) * 2) {
        let done: Vec<(String, Vec<usize>)> = batch
            .par_iter()
            .map(|&c| {
                let rows = CHUNK.min(p.rows - c * CHUNK);
                // The base chunk's stream again: the same vectors, one at a time.
                let mut base_rng = chunk_rng(1, c);
                let mut rng = chunk_rng(6, c);
                let mut x = vec![0f32; p.dim];
                let mut text = String::with_capacity(rows * 44);
                let mut drawn = Vec::with_capacity(rows);
                for _ in 0..rows {
                    let comp = mix.draw(&mut base_rng, &mut x);
                    let local = mix.local_tenant(&x, comp, dirs, grid);
                    let u = rng.gen::<f64>() * acc;
                    let t = cumulative.partition_point(|&c| c <= u).min(n - 1);
                    drawn.push(t);
                    text.push_str(&format!(
                        "{{\"local_tenant\":\"l{local:06}\",\"tenant\":\"{}\"}}\n",
                        tenant_name(t)
                    ));
                }
                (text, drawn)
            })
            .collect();
        for (text, drawn) in done {
            out.write_all(text.as_bytes()).map_err(err)?;
            for t in drawn {
                counts[t] += 1;
            }
        }
    }
    out.flush().map_err(err)?;
    Ok(counts)
}

/// The `tenant` case: each query asks for one uniform tenant, its size drawn
/// log-uniformly between 0.001 % and 1 % of the rows (at least one row).
fn tenant_case(out: &Path, counts: &[u64], rows: usize, queries: usize, rng: &mut impl Rng) -> Result<WorkloadCase> {
    let mut by_size: Vec<(u64, usize)> = counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(t, &c)| (c, t))
        .collect();
    by_size.sort_unstable();
    let lo = (rows as f64 * 1e-5).max(1.0);
    let hi = (rows as f64 * 1e-2).max(lo);
    let mut total = 0.0;
    let lines: Vec<serde_json::Value> = (0..queries)
        .map(|_| {
            let want = (lo.ln() + rng.gen::<f64>() * (hi.ln() - lo.ln())).exp();
            let i = by_size
                .partition_point(|&(c, _)| (c as f64) < want)
                .min(by_size.len().saturating_sub(1));
            let (c, t) = by_size.get(i).copied().unwrap_or((0, 0));
            total += c as f64 / rows.max(1) as f64;
            serde_json::json!({ "tenant": tenant_name(t) })
        })
        .collect();
    crate::workload::write_case(out, "tenant".into(), total / queries.max(1) as f64, "tenant", &lines)
}

/// One standard normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f32 {
    let u1: f64 = rng.gen::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// The mixture: component centres (N(0, 1) per coordinate), spreads and weights.
struct Mixture {
    dim: usize,
    centers: Vec<f32>,
    sigma: Vec<f32>,
    /// Cumulative weights, for drawing a component.
    cumulative: Vec<f64>,
}

impl Mixture {
    fn new(dim: usize, clusters: usize, seed: u64) -> Mixture {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centers = (0..clusters * dim).map(|_| normal(&mut rng)).collect();
        // Spreads vary by component so some neighbourhoods are tight and some overlap.
        let sigma = (0..clusters).map(|_| rng.gen_range(0.35f32..0.75)).collect();
        let weights: Vec<f64> = (0..clusters).map(|_| rng.gen_range(0.5..1.5)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Mixture {
            dim,
            centers,
            sigma,
            cumulative,
        }
    }

    /// The components ranked by the distance from `q` to their centres, nearest first.
    fn ranked(&self, q: &[f32]) -> Vec<usize> {
        let d = |c: usize| -> f32 {
            q.iter()
                .zip(&self.centers[c * self.dim..(c + 1) * self.dim])
                .map(|(a, b)| (a - b) * (a - b))
                .sum()
        };
        let mut order: Vec<usize> = (0..self.cumulative.len()).collect();
        order.sort_by(|&x, &y| d(x).total_cmp(&d(y)).then(x.cmp(&y)));
        order
    }

    /// Draws one vector into `out`; returns its component.
    fn draw(&self, rng: &mut impl Rng, out: &mut [f32]) -> usize {
        let u: f64 = rng.gen();
        let c = self
            .cumulative
            .partition_point(|&x| x < u)
            .min(self.cumulative.len() - 1);
        let center = &self.centers[c * self.dim..(c + 1) * self.dim];
        for (o, m) in out.iter_mut().zip(center) {
            *o = m + self.sigma[c] * normal(rng);
        }
        c
    }
}

/// Streams a 2-D float32 `.npy` of `rows × cols`: `fill(chunk, first_row, data)` fills
/// each chunk (generated in parallel, written in order).
fn write_npy_streamed(
    path: &Path,
    rows: usize,
    cols: usize,
    fill: impl Fn(usize, &mut [f32]) + Sync,
    progress: &squash_build::progress::Progress,
) -> Result<()> {
    let err = |e: std::io::Error| BenchError::input(path.display(), format!("cannot write: {e}"));
    let file = std::fs::File::create(path).map_err(err)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 22, file);
    out.write_all(&npy_f32_header(rows, cols)).map_err(err)?;
    // A few chunks at a time in parallel: memory stays at a few chunks whatever `rows` is.
    let chunks: Vec<usize> = (0..rows.div_ceil(CHUNK)).collect();
    for batch in chunks.chunks(rayon::current_num_threads().max(1) * 2) {
        let filled: Vec<Vec<f32>> = batch
            .par_iter()
            .map(|&c| {
                let n = CHUNK.min(rows - c * CHUNK);
                let mut data = vec![0f32; n * cols];
                fill(c, &mut data);
                data
            })
            .collect();
        for data in filled {
            let mut bytes = Vec::with_capacity(data.len() * 4);
            for x in &data {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
            out.write_all(&bytes).map_err(err)?;
            progress.inc((data.len() / cols.max(1)) as u64);
        }
    }
    out.flush().map_err(err)
}

/// Writes a synthetic workload into `out`: `base.npy`, `queries.npy`, `attrs.npy`
/// (`a0..` uniform, then `label`), one filters file per selectivity and a `label` case
/// whose filter for each query is `label == the query's own component` (selectivity
/// about 1/clusters, correlated with the vectors). Ground truth is computed separately.
pub fn synthesize(out: &Path, p: &SynthParams, progress: bool) -> Result<Workload> {
    if p.rows == 0 || p.dim == 0 || p.clusters == 0 || p.queries == 0 {
        return Err(BenchError::bad(
            "synth",
            "rows, dim, clusters and queries must all be positive",
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| BenchError::input(out.display(), format!("cannot create: {e}")))?;
    let mix = Mixture::new(p.dim, p.clusters, p.seed);
    // Each chunk has its own stream, so chunks can be drawn in any order and in parallel.
    let chunk_rng = |stream: u64, c: usize| ChaCha8Rng::seed_from_u64(p.seed ^ (stream << 40) ^ (c as u64 + 1));
    let bar = squash_build::progress::Progress::new(progress, "synthesize", p.rows as u64 * 2);
    let dim = p.dim;
    write_npy_streamed(
        &out.join("base.npy"),
        p.rows,
        dim,
        |c, data| {
            let mut rng = chunk_rng(1, c);
            for row in data.chunks_mut(dim) {
                mix.draw(&mut rng, row);
            }
        },
        &bar,
    )?;
    // Attributes use their own streams; `label` replays the base chunk's stream to get
    // each row's component without keeping it.
    let a = p.attributes;
    let cols = a + 1;
    write_npy_streamed(
        &out.join("attrs.npy"),
        p.rows,
        cols,
        |c, data| {
            let mut base_rng = chunk_rng(1, c);
            let mut rng = chunk_rng(2, c);
            let mut row_vec = vec![0f32; dim];
            for row in data.chunks_mut(cols) {
                for v in row[..a].iter_mut() {
                    *v = rng.gen::<f32>();
                }
                row[a] = mix.draw(&mut base_rng, &mut row_vec) as f32;
            }
        },
        &bar,
    )?;
    bar.finish();
    let mut rng = chunk_rng(3, 0);
    let mut queries = vec![0f32; p.queries * dim];
    let mut labels = Vec::with_capacity(p.queries);
    for row in queries.chunks_mut(dim) {
        labels.push(mix.draw(&mut rng, row));
    }
    write_npy_f32(&out.join("queries.npy"), p.queries, dim, &queries)?;
    let mut names: Vec<String> = (0..a).map(|i| format!("a{i}")).collect();
    let mut cases = range_cases(out, &mut chunk_rng(4, 0), &names, &p.selectivities, p.queries)?;
    cases.push(label_case(out, &labels, p.clusters)?);
    // A component far from the query: three quarters down the components ranked by
    // distance from it (a filter whose matches are a region away from the query).
    let far: Vec<usize> = queries.chunks(dim).map(|q| mix.ranked(q)[p.clusters * 3 / 4]).collect();
    cases.push(crate::workload::label_case_named(out, "label-far", &far, p.clusters)?);
    names.push("label".into());
    let mut extra = Vec::new();
    let _ = std::fs::remove_file(out.join("tags.jsonl"));
    let _ = std::fs::remove_file(out.join("tenants.jsonl"));
    if p.tags > 0 {
        let counts = write_tags(&out.join("tags.jsonl"), p.rows, p.tags, p.seed ^ 0x7a95)?;
        cases.push(tags_case(out, &counts, p.rows, p.queries, &mut chunk_rng(5, 0))?);
        extra.push("tags.jsonl".to_string());
    }
    if p.tenants > 0 {
        let mut rng = chunk_rng(7, 0);
        let mut dirs: Vec<f32> = (0..2 * dim).map(|_| normal(&mut rng)).collect();
        for u in dirs.chunks_mut(dim) {
            let norm = u.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            u.iter_mut().for_each(|x| *x /= norm);
        }
        let counts = write_tenants(&out.join("tenants.jsonl"), p, &mix, &dirs, &chunk_rng)?;
        cases.push(tenant_case(out, &counts, p.rows, p.queries, &mut rng)?);
        let grid = local_grid(p.tenants, p.clusters);
        let lines: Vec<serde_json::Value> = queries
            .chunks(dim)
            .zip(&labels)
            .map(
                |(q, &c)| serde_json::json!({ "local_tenant": format!("l{:06}", mix.local_tenant(q, c, &dirs, grid)) }),
            )
            .collect();
        let share = 1.0 / (p.clusters * grid * grid) as f64;
        cases.push(crate::workload::write_case(
            out,
            "local-tenant".into(),
            share,
            "local-tenant",
            &lines,
        )?);
        extra.push("tenants.jsonl".to_string());
    }
    let mut w = Workload::write(out, Metric::L2, names, cases)?;
    if !extra.is_empty() {
        w.extra_attrs = extra;
        w.save(out)?;
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use squash_build::io::{read_npy_attributes, read_vectors};

    #[test]
    fn streamed_files_hold_the_mixture_and_labels_match_it() {
        let dir = std::env::temp_dir().join(format!("squash-synth-{}", std::process::id()));
        let p = SynthParams {
            rows: CHUNK + 1000,
            dim: 8,
            clusters: 5,
            queries: 20,
            attributes: 4,
            selectivities: vec![1.0, 0.08],
            tags: 0,
            tenants: 0,
            seed: 7,
        };
        let w = synthesize(&dir, &p, false).unwrap();
        let base = read_vectors(&dir.join("base.npy")).unwrap();
        assert_eq!((base.rows, base.cols), (p.rows, 8));
        let names: Vec<String> = w.attr_names.clone();
        assert_eq!(names.last().map(|s| s.as_str()), Some("label"));
        let attrs = read_npy_attributes(&dir.join("attrs.npy"), &names).unwrap();
        assert_eq!(attrs.rows(), p.rows);
        // Each row's label is the component nearest to it (spreads are small next to
        // the distance between N(0, 1) centres in 8 dimensions, so nearly always).
        let mix = Mixture::new(8, 5, 7);
        let nearest = |row: &[f32]| {
            (0..5)
                .min_by(|&x, &y| {
                    let d = |c: usize| -> f32 {
                        row.iter()
                            .zip(&mix.centers[c * 8..(c + 1) * 8])
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum()
                    };
                    d(x).total_cmp(&d(y))
                })
                .unwrap()
        };
        let agree = (0..base.rows)
            .filter(|&i| nearest(base.row(i)) as f64 == attrs.columns[4][i])
            .count();
        assert!(agree as f64 > 0.9 * base.rows as f64, "{agree} of {}", base.rows);
        // Uniform attributes, and the same seed gives the same bytes.
        let mean: f64 = attrs.columns[0].iter().sum::<f64>() / p.rows as f64;
        assert!((mean - 0.5).abs() < 0.01);
        let first = std::fs::read(dir.join("base.npy")).unwrap();
        synthesize(&dir, &p, false).unwrap();
        assert_eq!(first, std::fs::read(dir.join("base.npy")).unwrap());
        assert_eq!(w.cases.len(), 4);
        assert_eq!(w.cases[2].label, "label");
        // label-far asks for a component other than the query's own, far from it.
        assert_eq!(w.cases[3].label, "label-far");
        let far = std::fs::read_to_string(dir.join("filters-label-far.jsonl")).unwrap();
        let own = std::fs::read_to_string(dir.join("filters-label.jsonl")).unwrap();
        assert_eq!(far.lines().count(), p.queries);
        let queries = read_vectors(&dir.join("queries.npy")).unwrap();
        for (i, (f, o)) in far.lines().zip(own.lines()).enumerate() {
            assert_ne!(f, o, "query {i}");
            let want = mix.ranked(queries.row(i))[3];
            assert_eq!(f, serde_json::json!({"label": {"$eq": want}}).to_string(), "query {i}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tags_follow_zipf_and_their_case_selects_about_one_percent() {
        let dir = std::env::temp_dir().join(format!("squash-synth-tags-{}", std::process::id()));
        let p = SynthParams {
            rows: 40_000,
            dim: 4,
            clusters: 3,
            queries: 50,
            attributes: 1,
            selectivities: vec![1.0],
            tags: 200,
            tenants: 0,
            seed: 9,
        };
        let w = synthesize(&dir, &p, false).unwrap();
        assert_eq!(w.extra_attrs, vec!["tags.jsonl".to_string()]);
        let attrs = w.attributes(&dir).unwrap();
        assert_eq!(
            attrs.schema.attrs.last().map(|a| (a.name.as_str(), a.list)),
            Some(("tags", true))
        );
        let a = attrs.schema.index_of("tags").unwrap();
        let spec = &attrs.schema.attrs[a];
        let rows_with = |t: usize| {
            let code = spec.code_of(&tag_name(t)).unwrap();
            (0..p.rows)
                .filter(|&r| attrs.list(a).unwrap().get(r).contains(&code))
                .count()
        };
        // Zipf: rank 0 about twice rank 1 and ten times rank 9.
        let (r0, r1, r9) = (rows_with(0), rows_with(1), rows_with(9));
        assert!(r0 > r1 && (1.6..2.4).contains(&(r0 as f64 / r1 as f64)), "{r0} {r1}");
        assert!((7.0..13.0).contains(&(r0 as f64 / r9 as f64)), "{r0} {r9}");
        let case = w.cases.iter().find(|c| c.label == "tags").expect("tags case");
        let filters = squash_build::io::read_json_lines(&dir.join(&case.filters)).unwrap();
        assert_eq!(filters.len(), 50);
        let mut matched = 0.0;
        for f in &filters {
            let e = squash_core::filter::Expr::parse(f, &attrs.schema).unwrap().unwrap();
            matched += (0..p.rows)
                .filter(|&r| e.matches_row(&attrs.columns, &attrs.lists, r))
                .count() as f64;
        }
        let mean = matched / (50.0 * p.rows as f64);
        assert!((0.005..0.015).contains(&mean), "tags case matches {mean}");
        assert!(
            (case.selectivity - mean).abs() < 0.003,
            "{} vs {mean}",
            case.selectivity
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
