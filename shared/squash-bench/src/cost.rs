//! The AWS cost model behind `squash cost`: what a million queries cost on a deployment,
//! from a benchmark point's measured work per query. Every price and every assumption
//! lives here, in [`Prices`] and [`Deployment`]; `docs/BENCHMARKS.md` shows the formulas.
//!
//! Per query, for a point that searched with `invocations` worker invocations:
//!
//! - requests = 1 (API Gateway) ; Lambda requests = 1 (coordinator) + invocations
//! - worker ms = max(scan_ms, invocations × 1 ms) + invocations × `worker_overhead_ms`,
//!   and when cold also + fetch_ms (decode, measured) + invocations × `s3_first_byte_ms`
//!   + bytes / `s3_mb_per_s`
//! - coordinator ms = plan_ms + `invoke_rtt_ms` × tree levels used + worker ms / invocations
//!   (it waits for the slowest child; workers run in parallel)
//! - GB-s = memory GB × (coordinator ms + worker ms) / 1000
//! - $ = GB-s × `lambda_gb_s` + Lambda requests × `lambda_request` + API requests ×
//!   `api_request` + GETs × `s3_get` (cold only: warm containers serve from cache)

use serde::Serialize;

/// Prices in US dollars (us-east-1, arm64, list prices of 2026-11; first pricing tier).
#[derive(Debug, Clone, Serialize)]
pub struct Prices {
    /// Lambda arm64 compute per GB-second.
    pub lambda_gb_s: f64,
    /// Lambda per request.
    pub lambda_request: f64,
    /// API Gateway HTTP API per request.
    pub api_request: f64,
    /// S3 Standard GET per request.
    pub s3_get: f64,
}

impl Default for Prices {
    fn default() -> Prices {
        Prices {
            lambda_gb_s: 0.000_013_333_4,
            lambda_request: 0.20 / 1e6,
            api_request: 1.00 / 1e6,
            s3_get: 0.40 / 1e6,
        }
    }
}

/// Published reference points printed beside the model (per million queries).
pub mod published {
    /// SQUASH (Oakley & Ferhatosmanoglu, 2025) on SIFT1M: $0.95e-5 to $4.35e-5 per query.
    pub const SQUASH_SIFT1M: (f64, f64) = (9.5, 43.5);
    /// Amazon S3 Vectors: $2.50 per million query requests, plus a per-TB charge for
    /// the data each query processes (not modelled here).
    pub const S3_VECTORS: f64 = 2.50;
}

/// The deployment a cost is computed for, and the latency assumptions of a cold read.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    /// Memory of every function (MB); Lambda bills GB-s of it.
    pub memory_mb: f64,
    /// Time an Invoke round trip adds per tree level (ms).
    pub invoke_rtt_ms: f64,
    /// Fixed work per worker invocation: decode the request, encode the answer (ms).
    pub worker_overhead_ms: f64,
    /// Time to the first byte of an S3 GET (ms); each worker's GETs run concurrently.
    pub s3_first_byte_ms: f64,
    /// S3 throughput into one function (MB/s).
    pub s3_mb_per_s: f64,
    /// Tree levels below the coordinator that a fan-out uses (1 for a flat fan-out).
    pub levels: f64,
}

impl Default for Deployment {
    fn default() -> Deployment {
        Deployment {
            memory_mb: 2048.0,
            invoke_rtt_ms: 15.0,
            worker_overhead_ms: 1.0,
            s3_first_byte_ms: 30.0,
            s3_mb_per_s: 90.0,
            levels: 1.0,
        }
    }
}

/// What one query did, as the benchmark measured it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueryWork {
    /// Planning (ms).
    pub plan_ms: f64,
    /// Searching segments, summed over partitions, warm (ms).
    pub scan_ms: f64,
    /// Worker invocations.
    pub invocations: f64,
    /// Object-store GETs with nothing cached.
    pub gets: f64,
    /// Bytes read with nothing cached.
    pub bytes: f64,
    /// Reading and decoding segments with nothing cached, measured locally (ms).
    pub fetch_ms: f64,
}

/// Dollars per million queries, by item.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cost {
    /// Billed milliseconds of every function together, per query.
    pub billed_ms: f64,
    /// Lambda compute.
    pub compute: f64,
    /// Lambda requests.
    pub lambda_requests: f64,
    /// API Gateway requests.
    pub api_requests: f64,
    /// S3 GETs.
    pub s3_gets: f64,
}

impl Cost {
    /// Dollars per million queries in all.
    pub fn total(&self) -> f64 {
        self.compute + self.lambda_requests + self.api_requests + self.s3_gets
    }
}

/// Cost per million queries of `w` on deployment `d` at prices `p`; `cold` adds the
/// S3 reads of a query whose segments no container has cached.
pub fn per_million(w: &QueryWork, d: &Deployment, p: &Prices, cold: bool) -> Cost {
    let inv = w.invocations.max(0.0);
    let mut worker_ms = 0.0;
    if inv > 0.0 {
        worker_ms = w.scan_ms.max(inv) + inv * d.worker_overhead_ms;
        if cold {
            worker_ms += w.fetch_ms + inv * d.s3_first_byte_ms + w.bytes / 1e6 / d.s3_mb_per_s * 1e3;
        }
    }
    let mut coordinator_ms = w.plan_ms;
    if inv > 0.0 {
        coordinator_ms += d.invoke_rtt_ms * d.levels + worker_ms / inv;
    } else {
        // The coordinator searched by itself.
        coordinator_ms += w.scan_ms;
        if cold {
            coordinator_ms += w.fetch_ms + d.s3_first_byte_ms + w.bytes / 1e6 / d.s3_mb_per_s * 1e3;
        }
    }
    let coordinator_ms = coordinator_ms.max(1.0);
    let billed_ms = coordinator_ms + worker_ms;
    let gb_s = d.memory_mb / 1024.0 * billed_ms / 1e3;
    Cost {
        billed_ms,
        compute: gb_s * p.lambda_gb_s * 1e6,
        lambda_requests: (1.0 + inv) * p.lambda_request * 1e6,
        api_requests: p.api_request * 1e6,
        s3_gets: if cold { w.gets * p.s3_get * 1e6 } else { 0.0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_query() {
        // 1 invocation, 4 ms of scan, 2 GB: worker 4 + 1 = 5 ms, coordinator
        // 1 + 15 + 5 = 21 ms, 26 ms × 2 GB = 0.052 GB-s.
        let w = QueryWork {
            plan_ms: 1.0,
            scan_ms: 4.0,
            invocations: 1.0,
            gets: 3.0,
            bytes: 9e6,
            fetch_ms: 2.0,
        };
        let d = Deployment::default();
        let p = Prices::default();
        let warm = per_million(&w, &d, &p, false);
        assert!((warm.billed_ms - 26.0).abs() < 1e-9);
        assert!((warm.compute - 0.052 * 0.000_013_333_4 * 1e6).abs() < 1e-9);
        assert!((warm.lambda_requests - 0.40).abs() < 1e-12);
        assert!((warm.api_requests - 1.00).abs() < 1e-12);
        assert_eq!(warm.s3_gets, 0.0);
        // Cold: + 2 ms decode + 30 ms first byte + 9 MB / 90 MB/s = 100 ms on the worker,
        // and the coordinator waits as long.
        let cold = per_million(&w, &d, &p, true);
        assert!((cold.billed_ms - (26.0 + 2.0 * 132.0)).abs() < 1e-9);
        assert!((cold.s3_gets - 1.2).abs() < 1e-12);
        assert!(cold.total() > warm.total());
    }

    #[test]
    fn more_memory_costs_more_compute_only() {
        let w = QueryWork {
            plan_ms: 0.5,
            scan_ms: 10.0,
            invocations: 4.0,
            ..QueryWork::default()
        };
        let p = Prices::default();
        let small = per_million(&w, &Deployment::default(), &p, false);
        let big = per_million(
            &w,
            &Deployment {
                memory_mb: 4096.0,
                ..Deployment::default()
            },
            &p,
            false,
        );
        assert!((big.compute - 2.0 * small.compute).abs() < 1e-9);
        assert_eq!(big.lambda_requests, small.lambda_requests);
    }
}
