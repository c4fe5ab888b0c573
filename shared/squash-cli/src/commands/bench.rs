//! `squash bench`: recall, QPS, latency and work per query on a prepared workload,
//! optionally over a sweep of knobs, written as typed JSON lines.

use super::{open_index, CliError, FanoutArgs, Knobs, Result};
use clap::Args;
use squash_api::SearchParams;
use squash_bench::bench::{format_table, run_case, BenchLine, BenchOptions};
use squash_bench::groundtruth::read_groundtruth;
use squash_bench::workload::{selectivity_label, Workload};
use squash_build::io::{read_json_lines, read_vectors};
use squash_engine::search::Index;
use squash_s3::open_store;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct BenchArgs {
    /// Index: a directory or s3://bucket/prefix.
    #[arg(long)]
    index: String,
    /// Prepared workload directory (with ground truth).
    #[arg(long)]
    data: PathBuf,
    /// Neighbours per query (recall@k).
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Threads queries run on (1 = single-thread QPS).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timed passes per case (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Only the first N queries of each case.
    #[arg(long)]
    limit: Option<usize>,
    /// Also write results as JSON lines here.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Exit with an error when any case's recall is below this (a check for CI); with
    /// a sweep, when a case's best point is below it.
    #[arg(long)]
    min_recall: Option<f64>,
    /// Cases measured and shown but not held to --min-recall (each is reported as a
    /// known shortfall when below it).
    #[arg(long, value_delimiter = ',')]
    min_recall_except: Vec<String>,
    /// Only these cases (labels from workload.json, e.g. `100%,label`).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Sweep: run every case once per value of nprobe (with each --rerank-sweep value);
    /// 0 in any sweep stands for the index's default.
    #[arg(long, value_delimiter = ',')]
    nprobe_sweep: Vec<u32>,
    /// Sweep: re-rank factors to combine with each --nprobe-sweep value.
    #[arg(long, value_delimiter = ',')]
    rerank_sweep: Vec<u32>,
    /// Sweep: filter-sufficiency factors to combine with the other sweeps.
    #[arg(long, value_delimiter = ',')]
    safety_sweep: Vec<f32>,
    /// Dataset name written into each JSON line (default: the --data directory's name).
    #[arg(long)]
    dataset: Option<String>,
    /// Also measure the first N queries of each point with nothing cached (bytes, GETs
    /// and invocations per query, for `squash cost`), in the --workers/--branching/--depth
    /// fan-out of a deployment.
    #[arg(long, default_value_t = 0)]
    cold_queries: usize,
    /// How the cold pass's workers read segments: `off` (whole objects, the deployed
    /// default) or `on` (by byte ranges, as `SQUASH_RANGE_READS=on`).
    #[arg(long, default_value = "off", value_parser = parse_range_reads)]
    cold_range_reads: squash_engine::worker::RangeReads,
    /// The deployment the cold pass models.
    #[command(flatten)]
    deployment: FanoutArgs,
    #[command(flatten)]
    knobs: Knobs,
}

fn parse_range_reads(s: &str) -> std::result::Result<squash_engine::worker::RangeReads, String> {
    s.parse()
}

/// Runs `squash bench`.
pub fn run(a: BenchArgs) -> Result<()> {
    let index = open_index(&a.index)?;
    let fanout = a.deployment.fanout()?;
    let cold = if a.cold_queries > 0 {
        Some(Index::open_cold(
            open_store(&a.index)?,
            index.name(),
            fanout,
            a.cold_range_reads,
        )?)
    } else {
        None
    };
    let w = Workload::load(&a.data)?;
    let mut queries = read_vectors(&a.data.join(&w.queries))?;
    if let Some(limit) = a.limit {
        queries.rows = queries.rows.min(limit);
        queries.data.truncate(queries.rows * queries.cols);
    }
    for c in &a.cases {
        if !w.cases.iter().any(|case| &case.label == c) {
            return Err(CliError::bad(
                "cases",
                format!(
                    "no case '{c}' in {}; it has {}",
                    a.data.join("workload.json").display(),
                    w.cases.iter().map(|c| c.label.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let dataset = a.dataset.clone().unwrap_or_else(|| {
        a.data
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let points = sweep_points(&a);
    let m = index.manifest();
    println!(
        "index {}: {} vectors × {}, {}, {} partitions, {} bits/dim; {} queries per case, k = {}, {} thread(s), median of {} passes, {} knob setting(s)",
        a.index,
        m.meta.count,
        m.meta.dim,
        m.meta.metric.name(),
        m.partitions(),
        m.meta.bits_per_dim,
        queries.rows,
        a.k,
        a.threads,
        a.repeats,
        points.len()
    );
    let mut json_out = match &a.json_out {
        Some(path) => {
            Some(std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| {
                CliError::input(path.display(), format!("cannot write: {e}"))
            })?))
        }
        None => None,
    };
    let mut results = Vec::new();
    for case in w
        .cases
        .iter()
        .filter(|c| a.cases.is_empty() || a.cases.contains(&c.label))
    {
        let mut filters = read_json_lines(&a.data.join(&case.filters))?;
        filters.truncate(queries.rows);
        let gt_path = a.data.join(&case.groundtruth);
        let mut truth = read_groundtruth(&gt_path).map_err(|e| {
            CliError::input(
                gt_path.display(),
                format!("{e}; run `squash groundtruth --data {}`", a.data.display()),
            )
        })?;
        truth.truncate(queries.rows);
        let label = if case.label.is_empty() {
            selectivity_label(case.selectivity)
        } else {
            case.label.clone()
        };
        for params in &points {
            let opts = BenchOptions {
                k: a.k,
                threads: a.threads,
                repeats: a.repeats,
                params: params.clone(),
                cold_queries: a.cold_queries,
            };
            let r = run_case(&index, cold.as_ref(), &label, &queries, &filters, &truth, &opts)?;
            eprintln!(
                "  {label} {}: recall@{} {:.4}, {:.0} QPS",
                knobs_text(params),
                a.k,
                r.recall,
                r.qps
            );
            if let Some(out) = json_out.as_mut() {
                let line = BenchLine {
                    system: "squash".into(),
                    dataset: dataset.clone(),
                    result: r.clone(),
                };
                let text = line.to_json();
                writeln!(out, "{text}").map_err(|e| CliError::input("--json-out", e.to_string()))?;
                out.flush().map_err(|e| CliError::input("--json-out", e.to_string()))?;
            }
            results.push(r);
        }
    }
    println!("{}", format_table(&results, a.k));
    if let Some(min) = a.min_recall {
        let mut low: Vec<String> = Vec::new();
        let mut reported: Vec<String> = Vec::new();
        for r in &results {
            let best = results
                .iter()
                .filter(|o| o.label == r.label)
                .map(|o| o.recall)
                .fold(0.0, f64::max);
            if best < min && !low.iter().any(|l| l.starts_with(&format!("{} ", r.label))) {
                if a.min_recall_except.contains(&r.label) {
                    if !reported.contains(&r.label) {
                        println!(
                            "known shortfall: {} recall@{} {best:.4} is below {min} (not held to --min-recall)",
                            r.label, a.k
                        );
                        reported.push(r.label.clone());
                    }
                    continue;
                }
                low.push(format!("{} ({best:.4})", r.label));
            }
        }
        if !low.is_empty() {
            return Err(CliError::bad(
                "min-recall",
                format!("recall@{} below {min} for {}", a.k, low.join(", ")),
            ));
        }
    }
    Ok(())
}

/// The knob settings a bench run visits: the cartesian product of the sweeps (a missing
/// sweep keeps the --nprobe/--rerank-factor given, or the index default; a 0 in a sweep
/// is the index default).
fn sweep_points(a: &BenchArgs) -> Vec<SearchParams> {
    let base = a.knobs.params();
    let nprobes: Vec<Option<u32>> = if a.nprobe_sweep.is_empty() {
        vec![base.nprobe]
    } else {
        a.nprobe_sweep.iter().map(|&v| (v > 0).then_some(v)).collect()
    };
    let reranks: Vec<Option<u32>> = if a.rerank_sweep.is_empty() {
        vec![base.rerank_factor]
    } else {
        a.rerank_sweep.iter().map(|&v| (v > 0).then_some(v)).collect()
    };
    let safeties: Vec<Option<f32>> = if a.safety_sweep.is_empty() {
        vec![base.safety]
    } else {
        a.safety_sweep.iter().map(|&v| (v > 0.0).then_some(v)).collect()
    };
    let mut out = Vec::new();
    for &nprobe in &nprobes {
        for &rerank_factor in &reranks {
            for &safety in &safeties {
                out.push(SearchParams {
                    nprobe,
                    rerank_factor,
                    safety,
                    ..base.clone()
                });
            }
        }
    }
    out
}

/// `nprobe=8 rerank=10 safety=100` (unset knobs: `default`).
fn knobs_text(p: &SearchParams) -> String {
    let show = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_else(|| "default".into());
    let safety = p.safety.map(|v| v.to_string()).unwrap_or_else(|| "default".into());
    format!(
        "nprobe={} rerank={} safety={safety}",
        show(p.nprobe),
        show(p.rerank_factor)
    )
}
