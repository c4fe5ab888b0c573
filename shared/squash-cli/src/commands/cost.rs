//! `squash cost`: AWS cost per million queries of the cheapest benchmark point per case.

use super::{CliError, Result};
use clap::Args;
use squash_bench::bench::read_bench_lines;
use std::path::PathBuf;

#[derive(Args)]
pub struct CostArgs {
    /// Bench JSON lines files (`squash bench --json-out --cold-queries N`).
    #[arg(required = true)]
    bench: Vec<PathBuf>,
    /// Cheapest point per dataset and case whose recall@k reaches this.
    #[arg(long, default_value_t = 0.95)]
    target_recall: f64,
    /// Memory of every function (MB).
    #[arg(long, default_value_t = 2048.0)]
    memory_mb: f64,
    /// Write the table here as well (Markdown).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `squash cost`.
pub fn run(a: CostArgs) -> Result<()> {
    use squash_bench::cost::{per_million, published, Deployment, Prices, QueryWork};
    let prices = Prices::default();
    let deployment = Deployment {
        memory_mb: a.memory_mb,
        ..Deployment::default()
    };
    if !(128.0..=10240.0).contains(&a.memory_mb) {
        return Err(CliError::bad("memory-mb", "Lambda memory is between 128 and 10240 MB"));
    }
    // (dataset, case) -> cheapest point reaching the target recall.
    let mut best: Vec<(String, String, serde_json::Value, QueryWork, f64)> = Vec::new();
    for path in &a.bench {
        for line in read_bench_lines(path, "squash")? {
            let r = &line.result;
            let Some(cold) = &r.cold else {
                return Err(CliError::input(
                    path.display(),
                    format!(
                        "point {} of {} ({}) has no cold measurement; run squash bench with --cold-queries",
                        r.label,
                        line.dataset,
                        serde_json::to_string(&r.params).unwrap_or_default()
                    ),
                ));
            };
            let recall = r.recall;
            if recall < a.target_recall {
                continue;
            }
            let work = QueryWork {
                plan_ms: r.plan_ms,
                scan_ms: r.scan_ms,
                invocations: cold.invocations,
                gets: cold.gets,
                bytes: cold.bytes,
                fetch_ms: cold.fetch_ms,
            };
            let total = per_million(&work, &deployment, &prices, false).total();
            let params = serde_json::to_value(&r.params).unwrap_or_default();
            let entry = (line.dataset.clone(), r.label.clone(), params, work, recall);
            match best.iter_mut().find(|b| b.0 == entry.0 && b.1 == entry.1) {
                Some(b) if per_million(&b.3, &deployment, &prices, false).total() > total => *b = entry,
                Some(_) => {}
                None => best.push(entry),
            }
        }
    }
    if best.is_empty() {
        return Err(CliError::bad(
            "target-recall",
            format!("no squash point reaches recall {} in the given files", a.target_recall),
        ));
    }
    let mut text = format!(
        "AWS cost per million queries: cheapest point with recall@10 >= {} per dataset and case; {} MB functions, arm64 ${}/GB-s, ${:.2}/M Lambda requests, ${:.2}/M API requests, ${:.2}/M S3 GETs\n\n",
        a.target_recall,
        deployment.memory_mb,
        prices.lambda_gb_s,
        prices.lambda_request * 1e6,
        prices.api_request * 1e6,
        prices.s3_get * 1e6
    );
    text.push_str("| dataset | case | knobs | recall@10 | invocations | GETs (cold) | MB (cold) | billed ms warm / cold | $/M warm | $/M cold |\n");
    text.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (dataset, case, params, w, recall) in &best {
        let warm = per_million(w, &deployment, &prices, false);
        let cold = per_million(w, &deployment, &prices, true);
        text.push_str(&format!(
            "| {dataset} | {case} | {} | {recall:.3} | {:.1} | {:.1} | {:.1} | {:.1} / {:.1} | {:.2} | {:.2} |\n",
            params,
            w.invocations,
            w.gets,
            w.bytes / 1e6,
            warm.billed_ms,
            cold.billed_ms,
            warm.total(),
            cold.total()
        ));
    }
    text.push_str(&format!(
        "\nPublished: SQUASH on SIFT1M ${:.2}-${:.2} per million queries; S3 Vectors ${:.2} per million queries plus data processed.\n",
        published::SQUASH_SIFT1M.0,
        published::SQUASH_SIFT1M.1,
        published::S3_VECTORS
    ));
    print!("{text}");
    if let Some(out) = &a.out {
        std::fs::write(out, &text).map_err(|e| CliError::input(out.display(), format!("cannot write: {e}")))?;
    }
    Ok(())
}
