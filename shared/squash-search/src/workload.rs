//! SQUASH's filtered workload on a real dataset: hold out query vectors that are not
//! indexed, add uniform attributes, and draw range filters sized for target
//! selectivities. `prepare` writes everything a benchmark needs into one directory,
//! described by `workload.json`.

use crate::error::{Result, SearchError};
use crate::io::{write_npy_f32, Matrix};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use squash_core::distance::Metric;
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
    /// Attribute names.
    pub attr_names: Vec<String>,
    /// Neighbours per ground-truth line.
    pub groundtruth_k: usize,
    /// Selectivity cases.
    pub cases: Vec<WorkloadCase>,
}

impl Workload {
    /// Reads `dir/workload.json`.
    pub fn load(dir: &Path) -> Result<Workload> {
        let path = dir.join("workload.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            SearchError::input(path.display(), format!("cannot read ({e}); run `squash prepare` first"))
        })?;
        serde_json::from_str(&text).map_err(|e| SearchError::input(path.display(), format!("invalid: {e}")))
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

/// Prepares a workload from `input` vectors into `out`: holds out `n_queries` random
/// rows as queries (the rest is the base), adds `n_attrs` uniform [0, 1) attributes and
/// writes one filters file per selectivity. Ground truth is computed separately.
pub fn prepare(
    input: &Matrix,
    out: &Path,
    n_queries: usize,
    n_attrs: usize,
    selectivities: &[f64],
    metric: Metric,
    seed: u64,
) -> Result<Workload> {
    if n_queries == 0 || n_queries >= input.rows {
        return Err(SearchError::bad(
            "queries",
            format!("need between 1 and {} held-out queries", input.rows.saturating_sub(1)),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| SearchError::input(out.display(), format!("cannot create: {e}")))?;
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
    let attrs: Vec<f32> = (0..n_base * n_attrs).map(|_| rng.gen::<f32>()).collect();
    write_npy_f32(&out.join("attrs.npy"), n_base, n_attrs, &attrs)?;
    let names: Vec<String> = (0..n_attrs).map(|i| format!("a{i}")).collect();
    let mut cases = Vec::new();
    for &s in selectivities {
        let label = selectivity_label(s);
        let stem = label.trim_end_matches('%').to_string();
        let filters = format!("filters-{stem}.jsonl");
        let mut text = String::new();
        for _ in 0..n_queries {
            text.push_str(&range_filter(&mut rng, &names, s).to_string());
            text.push('\n');
        }
        std::fs::write(out.join(&filters), text)
            .map_err(|e| SearchError::input(out.join(&filters).display(), e.to_string()))?;
        cases.push(WorkloadCase {
            label,
            selectivity: s,
            filters,
            groundtruth: format!("gt-{stem}.jsonl"),
        });
    }
    let workload = Workload {
        metric,
        base: "base.npy".into(),
        queries: "queries.npy".into(),
        attrs: "attrs.npy".into(),
        attr_names: names,
        groundtruth_k: 100,
        cases,
    };
    let json = serde_json::to_string_pretty(&workload).unwrap_or_default();
    std::fs::write(out.join("workload.json"), json).map_err(|e| SearchError::input(out.display(), e.to_string()))?;
    Ok(workload)
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
            total += rows.iter().filter(|r| e.matches(&|a| r[a])).count() as f64 / rows.len() as f64;
        }
        let mean = total / 50.0;
        assert!((mean - 0.08).abs() < 0.01, "mean selectivity {mean}");
    }
}
