//! `squash cost`: AWS cost per million queries of the cheapest benchmark point per case,
//! for each route (function URL, raw invoke, HTTP API), plan and batch size.

use super::{CliError, FanoutArgs, Result};
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
    /// Coordinator memory (MB): its cache decides whether it searches alone.
    #[arg(long, default_value_t = 2048.0)]
    coordinator_mb: f64,
    /// Worker memory (MB).
    #[arg(long, default_value_t = 2048.0)]
    worker_mb: f64,
    /// The deployment's fan-out.
    #[command(flatten)]
    deployment: FanoutArgs,
    /// The functions' log level: `warn` (the stacks' default: nothing logged for a
    /// successful invocation) or `info` (a line per invocation and Lambda's own).
    #[arg(long, default_value = "warn", value_parser = ["warn", "info"])]
    log_level: String,
    /// Write the table here as well (Markdown).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `squash cost`.
pub fn run(a: CostArgs) -> Result<()> {
    use squash_bench::cost::{choose_plan, per_million, published, Deployment, Plan, QueryWork, Route};
    for (name, mb) in [("coordinator-mb", a.coordinator_mb), ("worker-mb", a.worker_mb)] {
        if !(128.0..=10240.0).contains(&mb) {
            return Err(CliError::bad(name, "Lambda memory is between 128 and 10240 MB"));
        }
    }
    let mut d = Deployment::default();
    d.billing.coordinator_mb = a.coordinator_mb;
    d.billing.worker_mb = a.worker_mb;
    d.billing.log_bytes = if a.log_level == "info" {
        squash_bench::cost::LOG_BYTES_INFO
    } else {
        squash_bench::cost::LOG_BYTES_WARN
    };
    d.fanout = a.deployment.fanout()?;
    let single = |w: &QueryWork, route: Route| per_million(w, &d, route, choose_plan(w, &d, 1), 1, false);
    // (dataset, case) -> cheapest point (single query, function URL) reaching the target.
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
                rows: r.candidates.scanned,
                invocations: cold.invocations,
                gets: cold.gets,
                bytes: cold.bytes,
                fetch_ms: cold.fetch_ms,
                index_bytes: r.index_bytes as f64,
            };
            let total = single(&work, Route::FunctionUrl).total();
            let params = serde_json::to_value(&r.params).unwrap_or_default();
            let entry = (line.dataset.clone(), r.label.clone(), params, work, recall);
            match best.iter_mut().find(|b| b.0 == entry.0 && b.1 == entry.1) {
                Some(b) if single(&b.3, Route::FunctionUrl).total() > total => *b = entry,
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
    let p = &d.billing.prices;
    let mut text = format!(
        "AWS cost per million queries (US$): the cheapest point with recall@10 >= {} per dataset and case. \
         Coordinator {} MB, workers {} MB, W = {}, b = {}, l = {}; arm64 ${}/GB-s billed per invocation in whole ms, \
         ${:.2}/M Lambda requests, ${:.2}/M API Gateway requests, ${:.2}/M S3 GETs, ${:.2}/GB logs ({} bytes per invocation at log level {}), \
         {} ms init per cold container. Plan: the coordinator's rule (local when the index fits its cache). \
         Warm unless marked; batches go through the function URL.\n\n",
        a.target_recall,
        d.billing.coordinator_mb,
        d.billing.worker_mb,
        d.fanout.workers,
        d.fanout.branching,
        d.fanout.depth,
        p.lambda_gb_s,
        p.lambda_request * 1e6,
        p.api_request * 1e6,
        p.s3_get * 1e6,
        p.log_gb,
        d.billing.log_bytes,
        a.log_level.to_uppercase(),
        d.billing.init_ms,
    );
    text.push_str(
        "| dataset | case | knobs | recall@10 | plan | billed ms | function URL | raw invoke | HTTP API | batch 16 | batch 100 | fan-out, function URL | fan-out, HTTP API | cold, function URL |\n",
    );
    text.push_str("|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (dataset, case, params, w, recall) in &best {
        let plan = choose_plan(w, &d, 1);
        let url = single(w, Route::FunctionUrl);
        let batch = |n: usize| per_million(w, &d, Route::FunctionUrl, choose_plan(w, &d, n), n, false).total();
        let fanout = |route: Route| per_million(w, &d, route, Plan::Fanout, 1, false).total();
        let cold = per_million(w, &d, Route::FunctionUrl, plan, 1, true);
        text.push_str(&format!(
            "| {dataset} | {case} | {params} | {recall:.3} | {} | {:.1} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} |\n",
            match plan {
                Plan::Local => "local",
                Plan::Fanout => "fan-out",
            },
            url.billed_ms / 1e6,
            url.total(),
            single(w, Route::Invoke).total(),
            single(w, Route::HttpApi).total(),
            batch(16),
            batch(100),
            fanout(Route::FunctionUrl),
            fanout(Route::HttpApi),
            cold.total(),
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
