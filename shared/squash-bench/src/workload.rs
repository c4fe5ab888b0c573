//! SQUASH's filtered workload on a real dataset: hold out query vectors that are not
//! indexed, add uniform attributes, and draw range filters sized for target
//! selectivities. `prepare` writes everything a benchmark needs into one directory,
//! described by `workload.json`.

use crate::error::{BenchError, Result};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use squash_build::io::{write_npy_f32, Matrix};
use squash_core::distance::{exact_distance, prepare_vector, Metric};
use std::path::Path;

/// One selectivity case of a workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadCase {
    /// Label such as `8%`.
    pub label: String,
    /// Target fraction of vectors a filter matches (1 = no filter).
    pub selectivity: f64,
    /// Filters file (one JSON filter per query line), relative to the workload directory.
    pub filters: String,
    /// Ground-truth file, relative to the workload directory.
    pub groundtruth: String,
}

/// `workload.json`: the files of a prepared workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Workload {
    /// Metric of the dataset.
    pub metric: Metric,
    /// Indexed vectors file.
    pub base: String,
    /// Held-out query vectors file.
    pub queries: String,
    /// Attribute file (`.npy`, `[rows, A]`).
    pub attrs: String,
    /// Attribute names (of `attrs`).
    pub attr_names: Vec<String>,
    /// More attribute files (`.jsonl`, named by their own keys, e.g. list attributes),
    /// joined after `attrs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_attrs: Vec<String>,
    /// Neighbours per ground-truth line.
    pub groundtruth_k: usize,
    /// Selectivity cases.
    pub cases: Vec<WorkloadCase>,
}

impl Workload {
    /// Reads `dir/workload.json`.
    pub fn load(dir: &Path) -> Result<Workload> {
        let path = dir.join("workload.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| BenchError::input(path.display(), format!("cannot read ({e}); run `squash prepare` first")))?;
        serde_json::from_str(&text).map_err(|e| BenchError::input(path.display(), format!("invalid: {e}")))
    }

    /// Writes `dir/workload.json` for the standard file names (`base.npy`,
    /// `queries.npy`, `attrs.npy`, top-100 ground truth) and returns the workload.
    pub fn write(dir: &Path, metric: Metric, attr_names: Vec<String>, cases: Vec<WorkloadCase>) -> Result<Workload> {
        let w = Workload {
            metric,
            base: "base.npy".into(),
            queries: "queries.npy".into(),
            attrs: "attrs.npy".into(),
            attr_names,
            extra_attrs: Vec::new(),
            groundtruth_k: 100,
            cases,
        };
        w.save(dir)?;
        Ok(w)
    }

    /// Writes this workload as `dir/workload.json`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join("workload.json");
        let json = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(&path, json).map_err(|e| BenchError::input(path.display(), format!("cannot write: {e}")))
    }

    /// Every attribute of the base vectors: `attrs` named by `attr_names`, then each of
    /// `extra_attrs`.
    pub fn attributes(&self, dir: &Path) -> Result<squash_build::io::Attributes> {
        let mut out = squash_build::io::read_attributes(&dir.join(&self.attrs), &self.attr_names)?;
        for extra in &self.extra_attrs {
            let path = dir.join(extra);
            out = out
                .join(squash_build::io::read_attributes(&path, &[])?)
                .map_err(|m| BenchError::input(path.display(), m))?;
        }
        Ok(out)
    }
}

/// Label of a selectivity: `100%`, `8%`, `0.1%`.
pub fn selectivity_label(s: f64) -> String {
    let pct = s * 100.0;
    let text = format!("{pct:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// A random range filter over attributes `names` (uniform in [0, 1)) matching about
/// `selectivity` of the vectors: each attribute gets `<`, `>` or a between range of
/// width `selectivity^(1/A)`. Returns `null` for selectivity ≥ 1.
pub fn range_filter(rng: &mut impl Rng, names: &[String], selectivity: f64) -> serde_json::Value {
    if selectivity >= 1.0 || names.is_empty() {
        return serde_json::Value::Null;
    }
    let width = selectivity.powf(1.0 / names.len() as f64);
    let mut map = serde_json::Map::new();
    for name in names {
        let cond = match rng.gen_range(0..3) {
            0 => serde_json::json!({ "$lt": width }),
            1 => serde_json::json!({ "$gt": 1.0 - width }),
            _ => {
                let lo = rng.gen::<f64>() * (1.0 - width);
                serde_json::json!({ "$gte": lo, "$lt": lo + width })
            }
        };
        map.insert(name.clone(), cond);
    }
    serde_json::Value::Object(map)
}

/// Settings of [`prepare`].
#[derive(Debug, Clone)]
pub struct PrepareParams {
    /// Held-out query rows (not indexed).
    pub queries: usize,
    /// Uniform [0, 1) attributes `a0..`.
    pub attributes: usize,
    /// Target selectivities of the range-filter cases.
    pub selectivities: Vec<f64>,
    /// Distance metric of the dataset.
    pub metric: Metric,
    /// When positive, a `label` attribute: the nearest of this many random base vectors
    /// (Voronoi cells, so it is correlated with the vectors), a `label` case whose filter
    /// is `label == the query's own cell`, a `label-far` case asking for a cell far from
    /// the query (the one three quarters down the cells ranked by distance: its matches
    /// lie far from the query), and a skewed `popular` subset (an attribute `pop` that
    /// most rows of a few cells have and almost no other row: filter `pop` exists).
    pub label_clusters: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

/// Prepares a workload from `input` vectors into `out`: holds out `p.queries` random
/// rows as queries (the rest is the base), adds uniform attributes (and `label`, see
/// [`PrepareParams::label_clusters`]) and writes one filters file per case. Ground
/// truth is computed separately.
pub fn prepare(input: &Matrix, out: &Path, p: &PrepareParams) -> Result<Workload> {
    let (n_queries, n_attrs, metric, seed) = (p.queries, p.attributes, p.metric, p.seed);
    if n_queries == 0 || n_queries >= input.rows {
        return Err(BenchError::bad(
            "queries",
            format!("need between 1 and {} held-out queries", input.rows.saturating_sub(1)),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| BenchError::input(out.display(), format!("cannot create: {e}")))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut held: Vec<usize> = sample(&mut rng, input.rows, n_queries).into_vec();
    held.sort_unstable();
    let mut is_query = vec![false; input.rows];
    for &h in &held {
        is_query[h] = true;
    }
    let dim = input.cols;
    let mut base = Vec::with_capacity((input.rows - n_queries) * dim);
    let mut queries = Vec::with_capacity(n_queries * dim);
    for (i, &query) in is_query.iter().enumerate() {
        if query {
            queries.extend_from_slice(input.row(i));
        } else {
            base.extend_from_slice(input.row(i));
        }
    }
    let n_base = input.rows - n_queries;
    write_npy_f32(&out.join("base.npy"), n_base, dim, &base)?;
    write_npy_f32(&out.join("queries.npy"), n_queries, dim, &queries)?;
    let labels = p.label_clusters.min(n_base);
    let cols = n_attrs + if labels > 0 { 2 } else { 0 };
    let mut attrs: Vec<f32> = Vec::with_capacity(n_base * cols);
    for _ in 0..n_base {
        attrs.extend((0..n_attrs).map(|_| rng.gen::<f32>()));
        if labels > 0 {
            attrs.extend([0.0, f32::NAN]);
        }
    }
    let mut names: Vec<String> = (0..n_attrs).map(|i| format!("a{i}")).collect();
    let mut query_labels = Vec::new();
    let mut far_labels = Vec::new();
    if labels > 0 {
        let cells = Cells::new(&base, dim, labels, metric, &mut rng);
        let own: Vec<usize> = (0..n_base)
            .into_par_iter()
            .map(|i| cells.nearest(&base[i * dim..(i + 1) * dim]))
            .collect();
        // The popular subset: POPULAR_SHARE of the rows of a few cells (topics), and a
        // sprinkle of every other cell's, about 2 % of the rows in all.
        let topics = (labels / 30).max(1);
        let mut popular_cells = sample(&mut rng, labels, topics).into_vec();
        popular_cells.sort_unstable();
        for (i, &l) in own.iter().enumerate() {
            attrs[i * cols + n_attrs] = l as f32;
            let share = if popular_cells.binary_search(&l).is_ok() {
                POPULAR_SHARE
            } else {
                POPULAR_ELSEWHERE
            };
            if rng.gen::<f64>() < share {
                // A popularity rank, as a real field would carry.
                attrs[i * cols + n_attrs + 1] = rng.gen_range(1..=1000) as f32;
            }
        }
        query_labels = queries.chunks(dim).map(|q| cells.nearest(q)).collect();
        far_labels = queries.chunks(dim).map(|q| cells.ranked(q)[labels * 3 / 4]).collect();
    }
    write_npy_f32(&out.join("attrs.npy"), n_base, cols, &attrs)?;
    let mut cases = range_cases(out, &mut rng, &names, &p.selectivities, n_queries)?;
    if labels > 0 {
        cases.push(label_case(out, &query_labels, labels)?);
        cases.push(label_case_named(out, "label-far", &far_labels, labels)?);
        let popular = attrs.chunks(cols).filter(|r| !r[n_attrs + 1].is_nan()).count() as f64 / n_base as f64;
        let lines = vec![serde_json::json!({ "pop": { "$exists": true } }); n_queries];
        cases.push(write_case(out, "popular".into(), popular, "popular", &lines)?);
        names.extend(["label".into(), "pop".into()]);
    }
    Workload::write(out, metric, names, cases)
}

/// Writes one range-filter case per selectivity over attributes `names` (`n` filters
/// each) and returns them.
pub(crate) fn range_cases(
    out: &Path,
    rng: &mut impl Rng,
    names: &[String],
    selectivities: &[f64],
    n: usize,
) -> Result<Vec<WorkloadCase>> {
    selectivities
        .iter()
        .map(|&s| {
            let label = selectivity_label(s);
            let stem = label.trim_end_matches('%').to_string();
            let lines: Vec<serde_json::Value> = (0..n).map(|_| range_filter(rng, names, s)).collect();
            write_case(out, label, s, &stem, &lines)
        })
        .collect()
}

/// Writes the `label` case: query `i` asks for `label == labels[i]` (`count` labels in all).
pub(crate) fn label_case(out: &Path, labels: &[usize], count: usize) -> Result<WorkloadCase> {
    label_case_named(out, "label", labels, count)
}

/// Writes a case named `name` in which query `i` asks for `label == labels[i]` (`count`
/// labels in all): `label` (the query's own cell) or `label-far` (a cell far from it).
pub(crate) fn label_case_named(out: &Path, name: &str, labels: &[usize], count: usize) -> Result<WorkloadCase> {
    let lines: Vec<serde_json::Value> = labels
        .iter()
        .map(|&c| serde_json::json!({ "label": { "$eq": c } }))
        .collect();
    write_case(out, name.into(), 1.0 / count.max(1) as f64, name, &lines)
}

/// Share of a popular cell's rows in the `popular` subset.
const POPULAR_SHARE: f64 = 0.4;
/// Share of any other cell's rows in it.
const POPULAR_ELSEWHERE: f64 = 0.005;

/// Writes one case's filters file (`filters-STEM.jsonl`) and returns the case.
pub(crate) fn write_case(
    out: &Path,
    label: String,
    selectivity: f64,
    stem: &str,
    lines: &[serde_json::Value],
) -> Result<WorkloadCase> {
    let filters = format!("filters-{stem}.jsonl");
    let text: String = lines.iter().map(|v| v.to_string() + "\n").collect();
    std::fs::write(out.join(&filters), text)
        .map_err(|e| BenchError::input(out.join(&filters).display(), e.to_string()))?;
    Ok(WorkloadCase {
        label,
        selectivity,
        filters,
        groundtruth: format!("gt-{stem}.jsonl"),
    })
}

/// Voronoi cells of `count` random base vectors, compared under the dataset's metric.
struct Cells {
    dim: usize,
    metric: Metric,
    centers: Vec<f32>,
}

impl Cells {
    fn new(base: &[f32], dim: usize, count: usize, metric: Metric, rng: &mut impl Rng) -> Cells {
        let rows = base.len() / dim;
        let mut picked = sample(rng, rows, count).into_vec();
        picked.sort_unstable();
        let mut centers = Vec::with_capacity(count * dim);
        for i in picked {
            centers.extend_from_slice(&Self::prepared(metric, &base[i * dim..(i + 1) * dim]));
        }
        Cells { dim, metric, centers }
    }

    fn prepared(metric: Metric, v: &[f32]) -> Vec<f32> {
        let mut v = v.to_vec();
        let dim = v.len();
        // A zero vector under cosine has no cell of its own; it keeps its raw values.
        let _ = prepare_vector(metric, &mut v, dim, "label");
        v
    }

    fn nearest(&self, v: &[f32]) -> usize {
        let v = Self::prepared(self.metric, v);
        self.centers
            .chunks(self.dim)
            .enumerate()
            .min_by(|(_, a), (_, b)| exact_distance(self.metric, &v, a).total_cmp(&exact_distance(self.metric, &v, b)))
            .map(|(i, _)| i)
            .unwrap_or(0)
    }

    /// Every cell, nearest to `v` first.
    fn ranked(&self, v: &[f32]) -> Vec<usize> {
        let v = Self::prepared(self.metric, v);
        let mut d: Vec<(f32, usize)> = self
            .centers
            .chunks(self.dim)
            .enumerate()
            .map(|(i, c)| (exact_distance(self.metric, &v, c), i))
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        d.into_iter().map(|(_, i)| i).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert_eq!(selectivity_label(1.0), "100%");
        assert_eq!(selectivity_label(0.08), "8%");
        assert_eq!(selectivity_label(0.001), "0.1%");
    }

    #[test]
    fn range_filters_hit_their_selectivity() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let names: Vec<String> = (0..4).map(|i| format!("a{i}")).collect();
        let schema = squash_core::attrs::Schema {
            attrs: names
                .iter()
                .map(|n| squash_core::attrs::AttrSpec::numeric(n.clone()))
                .collect(),
        };
        let rows: Vec<Vec<f64>> = (0..20_000)
            .map(|_| (0..4).map(|_| rng.gen::<f64>()).collect())
            .collect();
        let mut total = 0.0;
        for _ in 0..50 {
            let f = range_filter(&mut rng, &names, 0.08);
            let e = squash_core::filter::Expr::parse(&f, &schema).unwrap().unwrap();
            total += rows.iter().filter(|r| e.matches_scalars(&|a| r[a])).count() as f64 / rows.len() as f64;
        }
        let mean = total / 50.0;
        assert!((mean - 0.08).abs() < 0.01, "mean selectivity {mean}");
    }
}
