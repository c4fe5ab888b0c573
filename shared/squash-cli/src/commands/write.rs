//! `squash upsert` and `squash delete`: writes without a rebuild, each committed as a
//! new manifest version (see `docs/ARCHITECTURE.md`, "Writes").

use super::{load_attrs, CliError, Result};
use clap::Args;
use squash_build::ids::read_ids;
use squash_build::io::read_vectors;
use squash_s3::open_store;
use squash_write::{Delete, Upsert, WriteReport, Writer};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct UpsertArgs {
    /// Index: a directory or s3://bucket/prefix.
    #[arg(long)]
    index: String,
    /// Vectors: .npy float32 [N, D] or .fvecs.
    #[arg(long)]
    vectors: PathBuf,
    /// Ids, one per vector: a text file (one per line) or a .npy of unsigned integers;
    /// of the index's kind. New ids are inserted, existing ones replaced.
    #[arg(long)]
    ids: PathBuf,
    /// Attributes: .npy [N, A] (numeric; name them with --attr-names), .csv with a header
    /// or .jsonl (one object per vector); names must be the index's (others are missing
    /// values).
    /// Give it more than once to join several files' attributes (one `.npy` at most).
    #[arg(long)]
    attrs: Vec<PathBuf>,
    /// Comma-separated attribute names for a .npy attribute file.
    #[arg(long, value_delimiter = ',')]
    attr_names: Vec<String>,
    /// Vectors per committed version (each batch is one write).
    #[arg(long, default_value_t = 100_000)]
    batch: usize,
    #[command(flatten)]
    fold: FoldArgs,
}

/// When a write folds the partitions it churned.
#[derive(Args)]
pub struct FoldArgs {
    /// Fold (rebuild, as `squash compact` does) a partition whose rows in deltas plus
    /// deleted rows reach this share of its base rows (and at least 1,000), in a
    /// version after the write's; `off`: never.
    #[arg(long, default_value = "0.1", value_parser = parse_fold_share)]
    fold_share: FoldShare,
}

/// A parsed `--fold-share`.
#[derive(Clone, Copy)]
pub struct FoldShare(Option<f64>);

fn parse_fold_share(v: &str) -> std::result::Result<FoldShare, String> {
    squash_write::write::parse_fold_share(v).map(FoldShare)
}

#[derive(Args)]
pub struct DeleteArgs {
    /// Index: a directory or s3://bucket/prefix.
    #[arg(long)]
    index: String,
    /// Ids to delete: a text file (one per line) or a .npy of unsigned integers.
    #[arg(long, conflicts_with = "filter", required_unless_present = "filter")]
    ids: Option<PathBuf>,
    /// Delete every vector matching this filter (JSON, the search filter language).
    #[arg(long)]
    filter: Option<String>,
    #[command(flatten)]
    fold: FoldArgs,
}

#[derive(Args)]
pub struct CompactArgs {
    /// Index: a directory or s3://bucket/prefix.
    #[arg(long)]
    index: String,
    /// Seconds an object stays after the last version naming it was replaced (readers
    /// may still hold that version), and after it was written (a writer may be about to
    /// commit it).
    #[arg(long, default_value_t = 3600.0)]
    grace_s: f64,
}

/// Runs `squash compact`.
pub fn run_compact(a: CompactArgs) -> Result<()> {
    let t0 = Instant::now();
    if !(a.grace_s.is_finite() && a.grace_s >= 0.0) {
        return Err(CliError::bad("grace-s", "must be a number of seconds, 0 or more"));
    }
    let report = squash_build::compact::compact(open_store(&a.index)?, std::time::Duration::from_secs_f64(a.grace_s))?;
    let mut v = serde_json::to_value(&report).map_err(|e| CliError::bad("report", e.to_string()))?;
    v["seconds"] = serde_json::json!((t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
    println!("{v}");
    Ok(())
}

#[derive(Args)]
pub struct ChurnArgs {
    /// Prepared workload directory (with ground truth).
    #[arg(long)]
    data: PathBuf,
    /// Output index: a directory or s3://bucket/prefix.
    #[arg(long)]
    out: String,
    /// Share of the base held back from the build and upserted (as many decoys are
    /// built in and deleted).
    #[arg(long, default_value_t = 0.1)]
    share: f64,
    /// Vectors per upsert call.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// Runs `squash churn`.
pub fn run_churn(a: ChurnArgs) -> Result<()> {
    let report = squash_bench::churn::churn(&a.data, open_store(&a.out)?, a.share, a.batch, a.seed)?;
    println!(
        "{}",
        serde_json::to_string(&report).map_err(|e| CliError::bad("report", e.to_string()))?
    );
    Ok(())
}

fn print(report: &WriteReport, t0: Instant) -> Result<()> {
    let mut v = serde_json::to_value(report).map_err(|e| CliError::bad("report", e.to_string()))?;
    v["seconds"] = serde_json::json!((t0.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
    println!("{v}");
    Ok(())
}

/// Runs `squash upsert`.
pub fn run_upsert(a: UpsertArgs) -> Result<()> {
    let t0 = Instant::now();
    let vectors = read_vectors(&a.vectors)?;
    let ids = read_ids(&a.ids)?;
    let attrs = load_attrs(&a.attrs, &a.attr_names)?;
    let n = vectors.rows;
    if ids.len() != Some(n) {
        return Err(CliError::input(
            a.ids.display(),
            format!("holds {} ids for {n} vectors", ids.len().unwrap_or(0)),
        ));
    }
    if !attrs.columns.is_empty() && attrs.rows() != n {
        return Err(CliError::input(
            a.attrs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" + "),
            format!("has {} rows for {n} vectors", attrs.rows()),
        ));
    }
    if a.batch == 0 {
        return Err(CliError::bad("batch", "must be at least 1"));
    }
    let writer = Writer::new(open_store(&a.index)?).with_fold_share(a.fold.fold_share.0);
    let mut total = WriteReport::default();
    for start in (0..n).step_by(a.batch) {
        let end = (start + a.batch).min(n);
        let part = Upsert {
            ids: ids.slice(start..end),
            vectors: squash_write::Matrix {
                rows: end - start,
                cols: vectors.cols,
                data: vectors.data[start * vectors.cols..end * vectors.cols].to_vec(),
            },
            attrs: attrs.select(&(start..end).collect::<Vec<usize>>()),
        };
        let r = writer.upsert(&part).map_err(|e| match e {
            // Name rows of the whole input, not of the batch.
            squash_write::WriteError::Invalid { field, message } => CliError::bad(&shift_row(&field, start), message),
            other => other.into(),
        })?;
        total.add(&r);
        eprintln!(
            "upserted {end} of {n} vectors (version {}, {:.1} s)",
            r.version,
            t0.elapsed().as_secs_f64()
        );
    }
    print(&total, t0)
}

/// `vectors[i].field` with `i` shifted by `by` (rows of earlier batches).
fn shift_row(field: &str, by: usize) -> String {
    let Some(rest) = field.strip_prefix("vectors[") else {
        return field.to_string();
    };
    match rest.split_once(']') {
        Some((i, tail)) => match i.parse::<usize>() {
            Ok(i) => format!("vectors[{}]{tail}", i + by),
            Err(_) => field.to_string(),
        },
        None => field.to_string(),
    }
}

/// Runs `squash delete`.
pub fn run_delete(a: DeleteArgs) -> Result<()> {
    let t0 = Instant::now();
    let what = match (&a.ids, &a.filter) {
        (Some(path), _) => Delete::Ids(read_ids(path)?),
        (None, Some(f)) => Delete::Filter(
            serde_json::from_str(f).map_err(|e| CliError::bad("filter", format!("not valid JSON: {e}")))?,
        ),
        (None, None) => return Err(CliError::bad("ids", "give --ids or --filter")),
    };
    let report = Writer::new(open_store(&a.index)?)
        .with_fold_share(a.fold.fold_share.0)
        .delete(&what)?;
    print(&report, t0)
}
