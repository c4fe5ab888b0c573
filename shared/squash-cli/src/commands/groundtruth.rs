//! `squash groundtruth`: exact filtered top-k by brute force.

use super::{load_attrs, metric, CliError, Result};
use clap::Args;
use squash_bench::groundtruth::{groundtruth, neighbors_to_json};
use squash_bench::workload::Workload;
use squash_build::io::{read_json_lines, read_vectors, Attributes, Matrix};
use squash_core::distance::{prepare_vector, Metric};
use squash_core::filter::Expr;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args)]
pub struct GroundtruthArgs {
    /// Prepared workload directory: computes every case's ground truth file.
    #[arg(long, conflicts_with_all = ["base", "queries", "out"])]
    data: Option<PathBuf>,
    /// Base vectors (.npy/.fvecs).
    #[arg(long)]
    base: Option<PathBuf>,
    /// Query vectors.
    #[arg(long)]
    queries: Option<PathBuf>,
    /// Attributes of the base vectors (.npy/.csv/.jsonl).
    /// Give it more than once to join several files' attributes (one `.npy` at most).
    #[arg(long)]
    attrs: Vec<PathBuf>,
    /// Names of .npy attribute columns.
    #[arg(long, value_delimiter = ',')]
    attr_names: Vec<String>,
    /// One JSON filter per query line.
    #[arg(long)]
    filters: Option<PathBuf>,
    /// Output JSON lines file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Distance metric: l2, cosine or ip (taken from workload.json with --data).
    #[arg(long, default_value = "l2")]
    metric: String,
    /// Neighbours per query.
    #[arg(long, default_value_t = 100)]
    k: usize,
}

/// Runs `squash groundtruth`.
pub fn run(a: GroundtruthArgs) -> Result<()> {
    let progress = std::io::stderr().is_terminal();
    if let Some(dir) = &a.data {
        let w = Workload::load(dir)?;
        let base = prepared(&read_vectors(&dir.join(&w.base))?, w.metric, "base")?;
        let queries = prepared(&read_vectors(&dir.join(&w.queries))?, w.metric, "queries")?;
        let attrs = w.attributes(dir)?;
        for case in &w.cases {
            let t0 = Instant::now();
            let fpath = dir.join(&case.filters);
            let filters = parse_filters(&read_json_lines(&fpath)?, &attrs, &fpath)?;
            let gt = groundtruth(&base, w.metric, &attrs, &queries, &filters, w.groundtruth_k, progress);
            write_lines(&dir.join(&case.groundtruth), &gt)?;
            eprintln!(
                "ground truth {} ({} queries) in {:.1} s",
                case.label,
                queries.rows,
                t0.elapsed().as_secs_f64()
            );
        }
        return Ok(());
    }
    let (Some(base), Some(queries), Some(out)) = (&a.base, &a.queries, &a.out) else {
        return Err(CliError::bad(
            "groundtruth",
            "give --data DIR, or --base, --queries and --out",
        ));
    };
    let metric = metric(&a.metric)?;
    let base_m = prepared(&read_vectors(base)?, metric, "base")?;
    let queries_m = prepared(&read_vectors(queries)?, metric, "queries")?;
    if base_m.cols != queries_m.cols {
        return Err(CliError::input(
            queries.display(),
            format!("queries have {} dimensions, base has {}", queries_m.cols, base_m.cols),
        ));
    }
    let attrs = load_attrs(&a.attrs, &a.attr_names)?;
    let filters = match &a.filters {
        Some(p) => parse_filters(&read_json_lines(p)?, &attrs, p)?,
        None => Vec::new(),
    };
    let gt = groundtruth(&base_m, metric, &attrs, &queries_m, &filters, a.k, progress);
    write_lines(out, &gt)
}

fn prepared(m: &Matrix, metric: Metric, what: &str) -> Result<Matrix> {
    let mut m = m.clone();
    let cols = m.cols;
    for (i, row) in m.data.chunks_mut(cols).enumerate() {
        prepare_vector(metric, row, cols, &format!("{what}[{i}]"))?;
    }
    Ok(m)
}

fn parse_filters(lines: &[serde_json::Value], attrs: &Attributes, path: &Path) -> Result<Vec<Option<Expr>>> {
    lines
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Expr::parse(v, &attrs.schema).map_err(|e| CliError::input(path.display(), format!("line {}: {e}", i + 1)))
        })
        .collect()
}

fn write_lines(path: &Path, results: &[Vec<squash_core::topk::Neighbor>]) -> Result<()> {
    let mut text = String::new();
    for r in results {
        text.push_str(&neighbors_to_json(r).to_string());
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| CliError::input(path.display(), format!("cannot write: {e}")))
}
