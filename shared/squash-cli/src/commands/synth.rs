//! `squash synth`: a synthetic clustered workload, streamed to disk.

use super::{CaseArgs, Result};
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct SynthArgs {
    /// Output workload directory.
    #[arg(long)]
    out: PathBuf,
    /// Base (indexed) vectors.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Dimensions.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Mixture components (values of `label`).
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// Words of a `tags` list attribute (Zipf-distributed, 0 to 4 per vector) and its
    /// `tags` case; 0 for none.
    #[arg(long, default_value_t = 0)]
    tags: usize,
    /// Values of two high-cardinality key attributes (`tenant`, spread uniformly, and
    /// `local_tenant`, by region) and their `tenant` / `local-tenant` cases; 0 for none.
    #[arg(long, default_value_t = 0)]
    tenants: usize,
    #[command(flatten)]
    cases: CaseArgs,
}

/// Runs `squash synth`.
pub fn run(a: SynthArgs) -> Result<()> {
    let t0 = Instant::now();
    let p = squash_bench::synth::SynthParams {
        rows: a.rows,
        dim: a.dim,
        clusters: a.clusters,
        queries: a.cases.queries,
        attributes: a.cases.attributes,
        selectivities: a.cases.selectivities.clone(),
        tags: a.tags,
        tenants: a.tenants,
        seed: a.cases.seed,
    };
    let w = squash_bench::synth::synthesize(&a.out, &p, std::io::stderr().is_terminal())?;
    eprintln!(
        "synthesized {} vectors × {} ({} clusters), {} queries, cases {} in {} in {:.1} s",
        a.rows,
        a.dim,
        a.clusters,
        a.cases.queries,
        w.cases.iter().map(|c| c.label.as_str()).collect::<Vec<_>>().join(" "),
        a.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
