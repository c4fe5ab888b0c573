//! `squash build`: vectors and attributes in, an index (segments + manifest) out.

use super::{load_attrs, metric, CliError, Knobs, Result};
use clap::Args;
use squash_build::build::{build_index_with_ids, default_search_defaults, BuildParams, DEFAULT_LIST_VECTORS};
use squash_build::ids::{read_ids, Ids};
use squash_build::io::read_vectors;
use squash_s3::open_store;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct BuildArgs {
    /// Vectors: .npy float32 [N, D] or .fvecs.
    #[arg(long)]
    vectors: PathBuf,
    /// Attributes: .npy [N, A] (numeric; name them with --attr-names), .csv with a header, or
    /// .jsonl (one JSON object per vector: numbers, strings and lists of either, null or
    /// absent = missing). Give it more than once to join several files' attributes (one `.npy` at most).
    #[arg(long)]
    attrs: Vec<PathBuf>,
    /// Comma-separated attribute names for a .npy attribute file.
    #[arg(long, value_delimiter = ',')]
    attr_names: Vec<String>,
    /// Vector ids: a text file with one id per line (unsigned integers, or strings of
    /// up to 256 bytes) or a .npy of unsigned integers. Default: row numbers.
    #[arg(long)]
    ids: Option<PathBuf>,
    /// Output index: a directory or s3://bucket/prefix.
    #[arg(long)]
    out: String,
    /// Distance metric: l2, cosine or ip (inner product: higher is nearer; hits report
    /// the distance -(q · x)).
    #[arg(long, default_value = "l2")]
    metric: String,
    /// Inner product only: the largest vector norm the index will hold (default: the
    /// data's largest). Upserts of longer vectors are refused, so leave a margin when
    /// writes may bring longer ones.
    #[arg(long)]
    max_norm: Option<f32>,
    /// Number of partitions (default: about one per 10,000 vectors).
    #[arg(long)]
    partitions: Option<usize>,
    /// Vectors per fine list inside a partition (the unit the planner prunes by).
    #[arg(long, default_value_t = DEFAULT_LIST_VECTORS)]
    list_size: usize,
    /// Average OSQ bits per dimension.
    #[arg(long, default_value_t = 4.0)]
    bits_per_dim: f32,
    /// Random seed (same seed, same index bytes).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Fraction of variance kept by the global KLT that places partitions.
    #[arg(long, default_value_t = 0.9)]
    partition_energy: f64,
    #[command(flatten)]
    knobs: Knobs,
    /// Do not draw progress bars.
    #[arg(long)]
    no_progress: bool,
}

/// Runs `squash build`.
pub fn run(a: BuildArgs) -> Result<()> {
    let t0 = Instant::now();
    let vectors = read_vectors(&a.vectors)?;
    let attrs = load_attrs(&a.attrs, &a.attr_names)?;
    if !attrs.columns.is_empty() && attrs.rows() != vectors.rows {
        return Err(CliError::input(
            a.attrs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" + "),
            format!(
                "has {} rows but {} has {} vectors",
                attrs.rows(),
                a.vectors.display(),
                vectors.rows
            ),
        ));
    }
    let mut defaults = default_search_defaults();
    let k = &a.knobs;
    if let Some(v) = k.nprobe {
        defaults.nprobe = v;
    }
    if let Some(v) = k.rerank_factor {
        defaults.rerank_factor = v;
    }
    if let Some(v) = k.hamming_keep {
        defaults.hamming_keep = v;
    }
    if let Some(v) = k.safety {
        defaults.safety = v;
    }
    let params = BuildParams {
        metric: metric(&a.metric)?,
        partitions: a.partitions,
        list_vectors: a.list_size,
        bits_per_dim: a.bits_per_dim,
        seed: a.seed,
        partition_energy: a.partition_energy,
        defaults,
        progress: !a.no_progress && std::io::stderr().is_terminal(),
        max_norm: a.max_norm,
        ..BuildParams::default()
    };
    let (n, d) = (vectors.rows, vectors.cols);
    let store = open_store(&a.out)?;
    let ids = match &a.ids {
        Some(path) => read_ids(path)?,
        None => Ids::Rows,
    };
    let report = build_index_with_ids(store.as_ref(), vectors, attrs, &ids, &params)?;
    eprintln!(
        "built {} vectors × {d} ({}, {} ids) into {} partitions of {} lists, {:.1} MiB, in {:.1} s, peak RSS {} -> {}",
        n,
        params.metric.name(),
        report.manifest.meta.ids.as_str(),
        report.manifest.partitions(),
        report.manifest.lists(),
        report.bytes_written as f64 / (1 << 20) as f64,
        t0.elapsed().as_secs_f64(),
        peak_rss()
            .map(|b| format!("{:.0} MiB", b as f64 / (1 << 20) as f64))
            .unwrap_or_else(|| "unknown".into()),
        a.out
    );
    let d = &report.manifest.meta.defaults;
    match &d.calibration {
        Some(c) => eprintln!(
            "search defaults measured on {} sample queries: nprobe {} (its lists hold {:.1} % of their {} nearest neighbours), safety {}, rerank factor {}{}",
            c.queries,
            d.nprobe,
            c.nprobe_coverage * 100.0,
            c.k,
            d.safety,
            d.rerank_factor,
            c.rerank_recall
                .map(|r| format!(" (recall@{} {r:.3})", c.k))
                .unwrap_or_default()
        ),
        None => eprintln!(
            "search defaults: nprobe {}, safety {}, rerank factor {}",
            d.nprobe, d.safety, d.rerank_factor
        ),
    }
    Ok(())
}

/// Peak resident memory of this process (Linux `VmHWM`), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
