//! The query benchmark behind `squash bench` and `make demo`: runs held-out queries one
//! at a time on a fixed-size thread pool, compares with exact ground truth, and reports
//! recall, throughput, latency percentiles and work per query.

use crate::error::{BenchError, Result};
use crate::groundtruth::recall_at;
use serde::{Deserialize, Serialize};
use squash_api::{SearchParams, SearchRequest, StageCounts};
use squash_build::io::Matrix;
use squash_engine::search::Index;
use std::time::Instant;

/// How to run a benchmark.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Neighbours per query (recall is recall@k).
    pub k: usize,
    /// Threads in the pool queries run on.
    pub threads: usize,
    /// Timed passes over the queries (the median pass is reported).
    pub repeats: usize,
    /// Search knobs.
    pub params: SearchParams,
    /// Queries of the cold pass that measures what a query costs when no segment is
    /// cached (see [`run_case`]); 0 skips it.
    pub cold_queries: usize,
}

/// What one query costs when nothing is cached: measured by searching each query
/// through a fresh worker with an empty cache, in the deployment's fan-out shape.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColdCost {
    /// Queries measured.
    pub queries: usize,
    /// Mean bytes read from the object store per query.
    pub bytes: f64,
    /// Mean object-store GETs per query.
    pub gets: f64,
    /// Mean worker invocations per query (nodes of the fan-out tree).
    pub invocations: f64,
    /// Mean milliseconds the workers spent getting segments (here: from local disk).
    pub fetch_ms: f64,
}

/// Result of one benchmark case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// Case label (selectivity).
    pub label: String,
    /// Queries run.
    pub queries: usize,
    /// Mean recall@k.
    pub recall: f64,
    /// Median over passes of queries per second.
    pub qps: f64,
    /// Median latency (ms).
    pub p50_ms: f64,
    /// 99th percentile latency (ms).
    pub p99_ms: f64,
    /// Mean partitions searched per query.
    pub partitions: f64,
    /// Mean candidates per stage per query.
    pub candidates: MeanCounts,
    /// Threads used.
    pub threads: usize,
    /// The knobs of this point.
    pub params: SearchParams,
    /// Mean milliseconds per query the workers spent searching segments (warm cache).
    pub scan_ms: f64,
    /// Mean milliseconds per query spent planning.
    pub plan_ms: f64,
    /// Cost of a query with nothing cached, when measured.
    pub cold: Option<ColdCost>,
    /// Bytes of the index's segments (what a coordinator caches to search it alone).
    #[serde(default)]
    pub index_bytes: u64,
}

/// Mean per-query stage counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeanCounts {
    /// Vectors in searched partitions.
    pub scanned: f64,
    /// After the filter.
    pub filtered: f64,
    /// After the Hamming prune.
    pub hamming: f64,
    /// ADC bounds computed.
    pub bounded: f64,
    /// Exact distances computed.
    pub reranked: f64,
}

/// One JSON line of `squash bench --json-out` (and of `make bench`'s results): which
/// system on which dataset, then the case result's fields. `squash cost` reads these
/// lines back with the same type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchLine {
    /// `squash` (the peers' harness writes its own systems' names).
    pub system: String,
    /// Dataset name.
    pub dataset: String,
    /// The measured point.
    #[serde(flatten)]
    pub result: CaseResult,
}

impl BenchLine {
    /// The line as written (one JSON object, no newline).
    pub fn to_json(&self) -> String {
        // A struct of numbers and strings always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Reads a JSON lines file of bench results, keeping the lines of `system` (other
/// systems' lines may carry other fields); a line that is not a result of `system` is
/// an error naming the file and line.
pub fn read_bench_lines(path: &std::path::Path, system: &str) -> Result<Vec<BenchLine>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| BenchError::input(path.display(), format!("cannot read: {e}")))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| BenchError::input(path.display(), format!("line {}: not JSON: {e}", i + 1)))?;
        if value.get("system").and_then(|s| s.as_str()) != Some(system) {
            continue;
        }
        let parsed: BenchLine = serde_json::from_value(value)
            .map_err(|e| BenchError::input(path.display(), format!("line {}: not a bench result: {e}", i + 1)))?;
        out.push(parsed);
    }
    Ok(out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs `queries` (with `filters[i]` and exact answers `truth[i]`) against `index`:
/// one untimed pass for recall and work, then `repeats` timed passes. With `cold` (an
/// index whose each search goes through a fresh, empty cache: see
/// [`Index::open_cold`]) the first `opts.cold_queries` queries are also run there to
/// measure bytes, GETs and invocations of a query with nothing cached.
pub fn run_case(
    index: &Index,
    cold: Option<&Index>,
    label: &str,
    queries: &Matrix,
    filters: &[serde_json::Value],
    truth: &[Vec<u64>],
    opts: &BenchOptions,
) -> Result<CaseResult> {
    if filters.len() != queries.rows || truth.len() != queries.rows {
        return Err(BenchError::bad(
            "workload",
            format!(
                "case {label}: {} queries but {} filters and {} ground-truth lines",
                queries.rows,
                filters.len(),
                truth.len()
            ),
        ));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.max(1))
        .build()
        .map_err(|e| BenchError::bad("threads", e.to_string()))?;
    let requests: Vec<SearchRequest> = (0..queries.rows)
        .map(|i| SearchRequest {
            vector: queries.row(i).to_vec(),
            k: opts.k,
            offset: 0,
            filter: if filters[i].is_null() {
                None
            } else {
                Some(filters[i].clone())
            },
            include: vec![],
            params: opts.params.clone(),
            allow_partial: false,
            consistency: None,
        })
        .collect();
    pool.install(|| -> Result<CaseResult> {
        // Untimed pass: warms the segment cache and measures recall and work.
        let mut recall = 0.0;
        let mut counts = StageCounts::default();
        let mut partitions = 0u64;
        for (i, req) in requests.iter().enumerate() {
            let resp = index.search(req)?;
            // Ground truth names rows; the bench's indexes are built with row ids.
            let ids: Vec<u64> = resp.hits.iter().map(|h| h.id.as_u64().unwrap_or(u64::MAX)).collect();
            recall += recall_at(&ids, &truth[i], opts.k);
            counts.add(&resp.stats.candidates);
            partitions += resp.stats.partitions_searched as u64;
        }
        // A second untimed pass, now that every segment is cached, for the search time.
        let (mut scan_us, mut plan_us) = (0u64, 0u64);
        for req in &requests {
            let resp = index.search(req)?;
            scan_us += resp.stats.scan_us;
            plan_us += resp.stats.plan_us;
        }
        let cold = match cold {
            Some(cold) if opts.cold_queries > 0 => {
                let n = opts.cold_queries.min(requests.len());
                let mut c = ColdCost {
                    queries: n,
                    ..ColdCost::default()
                };
                for req in &requests[..n] {
                    let s = cold.search(req)?.stats;
                    c.bytes += s.bytes_fetched as f64;
                    c.gets += s.gets as f64;
                    c.invocations += s.invocations as f64;
                    c.fetch_ms += s.fetch_us as f64 / 1e3;
                }
                let n = n.max(1) as f64;
                c.bytes /= n;
                c.gets /= n;
                c.invocations /= n;
                c.fetch_ms /= n;
                Some(c)
            }
            _ => None,
        };
        let mut qps_runs = Vec::new();
        let mut latencies = Vec::with_capacity(requests.len() * opts.repeats.max(1));
        for _ in 0..opts.repeats.max(1) {
            let start = Instant::now();
            for req in &requests {
                let t = Instant::now();
                let resp = index.search(req)?;
                std::hint::black_box(&resp);
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
            }
            qps_runs.push(requests.len() as f64 / start.elapsed().as_secs_f64());
        }
        qps_runs.sort_by(|a, b| a.total_cmp(b));
        latencies.sort_by(|a, b| a.total_cmp(b));
        let n = requests.len().max(1) as f64;
        Ok(CaseResult {
            label: label.to_string(),
            queries: requests.len(),
            recall: recall / n,
            qps: qps_runs[qps_runs.len() / 2],
            p50_ms: percentile(&latencies, 0.5),
            p99_ms: percentile(&latencies, 0.99),
            partitions: partitions as f64 / n,
            candidates: MeanCounts {
                scanned: counts.scanned as f64 / n,
                filtered: counts.filtered as f64 / n,
                hamming: counts.hamming as f64 / n,
                bounded: counts.bounded as f64 / n,
                reranked: counts.reranked as f64 / n,
            },
            threads: opts.threads,
            params: opts.params.clone(),
            scan_ms: scan_us as f64 / 1e3 / n,
            plan_ms: plan_us as f64 / 1e3 / n,
            cold,
            index_bytes: index.manifest().meta.partitions.iter().map(|p| p.bytes).sum(),
        })
    })
}

/// Renders results as a Markdown table.
pub fn format_table(results: &[CaseResult], k: usize) -> String {
    let mut out = format!(
        "| case | nprobe | rerank | safety | recall@{k} | QPS | p50 ms | p99 ms | partitions | scanned | after filter | after Hamming | bounded | re-ranked |\n"
    );
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let show = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_else(|| "default".into());
    for r in results {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.4} | {:.0} | {:.3} | {:.3} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
            r.label,
            show(r.params.nprobe),
            show(r.params.rerank_factor),
            r.params
                .safety
                .map(|v| v.to_string())
                .unwrap_or_else(|| "default".into()),
            r.recall,
            r.qps,
            r.p50_ms,
            r.p99_ms,
            r.partitions,
            r.candidates.scanned,
            r.candidates.filtered,
            r.candidates.hamming,
            r.candidates.bounded,
            r.candidates.reranked,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(system: &str, recall: f64, cold: Option<ColdCost>) -> BenchLine {
        BenchLine {
            system: system.into(),
            dataset: "glove-50".into(),
            result: CaseResult {
                label: "1%".into(),
                queries: 200,
                recall,
                qps: 812.5,
                p50_ms: 1.25,
                p99_ms: 3.5,
                partitions: 7.0,
                candidates: MeanCounts {
                    scanned: 70_000.0,
                    filtered: 700.0,
                    hamming: 690.0,
                    bounded: 690.0,
                    reranked: 41.0,
                },
                threads: 1,
                params: SearchParams {
                    nprobe: Some(8),
                    safety: Some(100.0),
                    ..SearchParams::default()
                },
                scan_ms: 0.9,
                plan_ms: 0.1,
                cold,
                index_bytes: 660_189_576,
            },
        }
    }

    #[test]
    fn bench_lines_read_back_as_written_and_other_systems_are_skipped() {
        let cold = ColdCost {
            queries: 5,
            bytes: 2.5e6,
            gets: 7.0,
            invocations: 3.0,
            fetch_ms: 12.0,
        };
        let written = [line("squash", 0.97, Some(cold)), line("squash", 0.91, None)];
        let dir = std::env::temp_dir().join(format!("squash-bench-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("points.jsonl");
        let mut text: String = written.iter().map(|l| l.to_json() + "\n").collect();
        // A peer's line has fields of its own; it is skipped, not misread.
        text.push_str("{\"system\": \"faiss-ivf\", \"dataset\": \"glove-50\", \"nlist\": 1024}\n");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read_bench_lines(&path, "squash").unwrap(), written);
        let peer = read_bench_lines(&path, "faiss-ivf").unwrap_err().to_string();
        assert!(peer.contains("line 3"), "{peer}");
        std::fs::write(&path, "{\"system\": \"squash\", \"dataset\": \"x\"}\n").unwrap();
        let err = read_bench_lines(&path, "squash").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("points.jsonl"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
