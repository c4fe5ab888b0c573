//! `squash prepare`: SQUASH's workload from a real dataset.

use super::{metric, CaseArgs, Result};
use clap::Args;
use squash_bench::workload::{prepare, PrepareParams};
use squash_build::io::read_vectors;
use std::path::PathBuf;

#[derive(Args)]
pub struct PrepareArgs {
    /// Input vectors (.npy/.fvecs).
    #[arg(long)]
    input: PathBuf,
    /// Output workload directory.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    cases: CaseArgs,
    /// Distance metric of the dataset.
    #[arg(long, default_value = "cosine")]
    metric: String,
    /// Also add a `label` attribute (the Voronoi cell of this many random base vectors)
    /// and a `label` case filtering on each query's own cell; 0 = none.
    #[arg(long, default_value_t = 0)]
    label_clusters: usize,
}

/// Runs `squash prepare`.
pub fn run(a: PrepareArgs) -> Result<()> {
    let input = read_vectors(&a.input)?;
    let w = prepare(
        &input,
        &a.out,
        &PrepareParams {
            queries: a.cases.queries,
            attributes: a.cases.attributes,
            selectivities: a.cases.selectivities.clone(),
            metric: metric(&a.metric)?,
            label_clusters: a.label_clusters,
            seed: a.cases.seed,
        },
    )?;
    eprintln!(
        "prepared {} base vectors, {} queries, {} attributes, cases {} in {}",
        input.rows - a.cases.queries,
        a.cases.queries,
        a.cases.attributes,
        w.cases.iter().map(|c| c.label.as_str()).collect::<Vec<_>>().join(" "),
        a.out.display()
    );
    Ok(())
}
