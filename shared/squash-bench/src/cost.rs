//! The AWS cost model behind `squash cost`: what a million queries cost on a deployment,
//! from a benchmark point's measured work per query, per route (API Gateway, function
//! URL, raw invoke), plan (local or fan-out) and batch size. Prices and Lambda's billing
//! rules (rounding, init, logs, the route's fee) are squash-engine's [`squash_engine::cost`],
//! the same that price each response's `stats.cost_usd`; the assumptions about time on
//! AWS are in [`Deployment`]. `docs/BENCHMARKS.md` shows the formulas.
//!
//! For one request of `B` queries (B = 1: a single search):
//!
//! - **local plan**: the coordinator runs `request_overhead_ms + B × (plan_ms + scan_ms)`
//!   (one core: a 2 GB function has about 1.2 vCPU), billed rounded up; no worker;
//! - **fan-out plan**: the tree of `n` worker nodes (`n` = the measured invocations per
//!   query, `min(W, n × B)` for a batch) in the deployment's shape; a leaf runs
//!   `worker_overhead_ms + skew × B × scan_ms / n` (the slowest child: `skew` over an even
//!   share); an inner node runs its own share, then waits `invoke_rtt_ms` plus its slowest
//!   child; the coordinator runs `request_overhead_ms + B × plan_ms + invoke_rtt_ms` plus
//!   its slowest child. Every node is billed on its own, rounded up;
//! - **cold** (one query, nothing cached, every container new): each function also pays
//!   `init_ms` and reads its segments: the measured decode time, `s3_first_byte_ms` and
//!   its share of the bytes at `s3_mb_per_s`; GETs are billed;
//! - then [`Billing::cost`]: compute at each function's memory, (1 + n) Lambda requests,
//!   the route's fee, GETs, log bytes; divided by `B` and multiplied by a million.

use serde::Serialize;
pub use squash_engine::cost::{Billing, Cost, Prices, Route, Work, INIT_MS, LOG_BYTES_INFO, LOG_BYTES_WARN};
use squash_engine::search::LOCAL_MAX_ROWS;
use squash_engine::tree::{build_tree, Fanout};

/// Published reference points printed beside the model (per million queries).
pub mod published {
    /// SQUASH (Oakley & Ferhatosmanoglu, 2025) on SIFT1M: $0.95e-5 to $4.35e-5 per query.
    pub const SQUASH_SIFT1M: (f64, f64) = (9.5, 43.5);
    /// Amazon S3 Vectors: $2.50 per million query requests, plus a per-TB charge for
    /// the data each query processes (not modelled here).
    pub const S3_VECTORS: f64 = 2.50;
}

/// The deployment a cost is computed for, and the time assumptions on AWS.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    /// Functions' memory and the billing rules.
    pub billing: Billing,
    /// The fan-out shape (W, b, l).
    #[serde(skip)]
    pub fanout: Fanout,
    /// Time an Invoke round trip adds per tree level (ms).
    pub invoke_rtt_ms: f64,
    /// Fixed work of the coordinator per request: read the event, parse, answer (ms).
    pub request_overhead_ms: f64,
    /// Fixed work per worker invocation: decode the request, encode the answer (ms).
    pub worker_overhead_ms: f64,
    /// The slowest child's work over an even share.
    pub skew: f64,
    /// Time to the first byte of an S3 GET (ms); each function's GETs run concurrently.
    pub s3_first_byte_ms: f64,
    /// S3 throughput into one function (MB/s).
    pub s3_mb_per_s: f64,
}

impl Default for Deployment {
    fn default() -> Deployment {
        Deployment {
            billing: Billing::default(),
            fanout: Fanout {
                workers: 8,
                branching: 4,
                depth: 3,
            },
            invoke_rtt_ms: 15.0,
            request_overhead_ms: 0.3,
            worker_overhead_ms: 1.0,
            skew: 1.25,
            s3_first_byte_ms: 30.0,
            s3_mb_per_s: 90.0,
        }
    }
}

impl Deployment {
    /// The coordinator's segment cache at its memory (squash-lambda's `cache_budget`:
    /// 60 % less 64 MiB).
    pub fn coordinator_cache_bytes(&self) -> f64 {
        (self.billing.coordinator_mb * (1u64 << 20) as f64 * 0.6 - (64u64 << 20) as f64).max((32u64 << 20) as f64)
    }
}

/// What one query did, as the benchmark measured it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueryWork {
    /// Planning (ms).
    pub plan_ms: f64,
    /// Searching segments, summed over partitions, warm (ms).
    pub scan_ms: f64,
    /// Rows in the lists searched.
    pub rows: f64,
    /// Worker invocations of the fan-out (tree nodes).
    pub invocations: f64,
    /// Object-store GETs with nothing cached.
    pub gets: f64,
    /// Bytes read with nothing cached.
    pub bytes: f64,
    /// Reading and decoding segments with nothing cached, measured locally (ms).
    pub fetch_ms: f64,
    /// Bytes of the whole index (0: unknown).
    pub index_bytes: f64,
}

/// Where a request runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    /// The coordinator alone.
    Local,
    /// The workers' tree.
    Fanout,
}

/// The plan the coordinator chooses for a batch of `batch` such queries, by its rule: local
/// when the index fits its cache and the rows to scan stay under
/// [`LOCAL_MAX_ROWS`] (an unknown index size counts as not fitting).
pub fn choose_plan(w: &QueryWork, d: &Deployment, batch: usize) -> Plan {
    let fits = w.index_bytes > 0.0 && w.index_bytes <= d.coordinator_cache_bytes();
    if fits && w.rows * batch as f64 <= LOCAL_MAX_ROWS as f64 {
        Plan::Local
    } else {
        Plan::Fanout
    }
}

/// Milliseconds rounded up as Lambda bills them.
fn billed(ms: f64) -> f64 {
    squash_engine::cost::billed_ms((ms.max(0.0) * 1000.0).ceil() as u64)
}

/// Cost per million queries of `w` in requests of `batch` queries through `route`, on
/// `plan`; `cold` makes every container new and every segment read from S3 (batch 1).
pub fn per_million(w: &QueryWork, d: &Deployment, route: Route, plan: Plan, batch: usize, cold: bool) -> Cost {
    let b = batch.max(1) as f64;
    let read_ms = |share: f64| {
        if cold {
            w.fetch_ms * share + d.s3_first_byte_ms + w.bytes * share / 1e6 / d.s3_mb_per_s * 1e3
        } else {
            0.0
        }
    };
    let mut work = Work {
        gets: if cold { w.gets * b } else { 0.0 },
        cold_coordinator: f64::from(u8::from(cold)),
        ..Work::default()
    };
    match plan {
        Plan::Local => {
            work.coordinator_ms = billed(d.request_overhead_ms + b * (w.plan_ms + w.scan_ms) + read_ms(1.0));
        }
        Plan::Fanout => {
            let n = (w.invocations.max(1.0) * b)
                .min(d.fanout.workers as f64)
                .round()
                .max(1.0) as usize;
            // The tree the coordinator builds for n worker groups.
            let groups = (0..n as u32)
                .map(|g| {
                    let seg = squash_api::SegmentRef {
                        partition: g,
                        key: String::new(),
                        bytes: 0,
                        checksum: String::new(),
                        lists: Vec::new(),
                        head: 0,
                        deletes: None,
                    };
                    (g, vec![seg])
                })
                .collect();
            let tree = build_tree(groups, d.fanout);
            let nodes: usize = tree.iter().map(squash_api::TreeNode::node_count).sum();
            let own = d.worker_overhead_ms + d.skew * b * w.scan_ms / nodes as f64 + read_ms(1.0 / nodes as f64);
            // (duration of the subtree's root, billed ms of the whole subtree)
            fn subtree(node: &squash_api::TreeNode, own: f64, rtt: f64) -> (f64, f64) {
                let (mut wait, mut billed_children) = (0.0f64, 0.0);
                for c in &node.children {
                    let (dur, bill) = subtree(c, own, rtt);
                    wait = wait.max(rtt + dur);
                    billed_children += bill;
                }
                let dur = own.max(wait);
                (dur, billed(dur) + billed_children)
            }
            let (mut slowest, mut workers_ms) = (0.0f64, 0.0);
            for root in &tree {
                let (dur, bill) = subtree(root, own, d.invoke_rtt_ms);
                slowest = slowest.max(dur);
                workers_ms += bill;
            }
            work.coordinator_ms = billed(d.request_overhead_ms + b * w.plan_ms + d.invoke_rtt_ms + slowest);
            work.worker_ms = workers_ms;
            work.invocations = nodes as f64;
            work.cold_workers = if cold { nodes as f64 } else { 0.0 };
        }
    }
    d.billing.cost(&work, route).scaled(1e6 / b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work() -> QueryWork {
        QueryWork {
            plan_ms: 0.2,
            scan_ms: 0.5,
            rows: 40_000.0,
            invocations: 2.0,
            gets: 3.0,
            bytes: 9e6,
            fetch_ms: 2.0,
            index_bytes: 600e6,
        }
    }

    #[test]
    fn a_warm_local_query_is_one_billed_millisecond_and_one_request() {
        let d = Deployment::default();
        let w = work();
        assert_eq!(choose_plan(&w, &d, 1), Plan::Local);
        let c = per_million(&w, &d, Route::FunctionUrl, Plan::Local, 1, false);
        // 0.3 + 0.7 ms = 1.0 ms, billed 1 ms at 2 GB.
        assert_eq!(c.billed_ms, 1e6);
        assert!((c.compute - 2.0 * 1e-3 * 0.000_013_333_4 * 1e6).abs() < 1e-9);
        assert!((c.lambda_requests - 0.20).abs() < 1e-9);
        assert_eq!(c.front_door, 0.0);
        let api = per_million(&w, &d, Route::HttpApi, Plan::Local, 1, false);
        assert!((api.total() - c.total() - 1.0).abs() < 1e-9);
        // A batch of 16: one request, 0.3 + 16 × 0.7 = 11.5 → 12 ms, shared by 16.
        let b16 = per_million(&w, &d, Route::FunctionUrl, Plan::Local, 16, false);
        assert!((b16.billed_ms - 12.0 / 16.0 * 1e6).abs() < 1e-6);
        assert!((b16.lambda_requests - 0.20 / 16.0).abs() < 1e-9);
        assert!(b16.total() < c.total() / 4.0);
    }

    #[test]
    fn a_fan_out_bills_every_node_and_waits_for_the_slowest() {
        let d = Deployment::default();
        let w = work();
        let c = per_million(&w, &d, Route::Invoke, Plan::Fanout, 1, false);
        // Two leaves of 1 + 1.25 × 0.5 / 2 = 1.31 ms → 2 ms each; the coordinator
        // 0.3 + 0.2 + 15 + 1.31 = 16.8 → 17 ms.
        assert!((c.billed_ms - (17.0 + 2.0 + 2.0) * 1e6).abs() < 1e-3, "{}", c.billed_ms);
        assert!((c.lambda_requests - 3.0 * 0.20).abs() < 1e-9);
        // Deeper trees bill the inner nodes' waiting.
        let deep = Deployment {
            fanout: Fanout {
                workers: 64,
                branching: 2,
                depth: 3,
            },
            ..Deployment::default()
        };
        let wide = QueryWork {
            invocations: 6.0,
            ..work()
        };
        let c = per_million(&wide, &deep, Route::Invoke, Plan::Fanout, 1, false);
        // 6 nodes as 2 roots with 2 children each (and one more level below one): an
        // inner node waits 15 ms plus its child.
        assert!(c.billed_ms > (15.0 + 2.0 * 16.0) * 1e6, "{}", c.billed_ms);
        // Cold: every container's init and the reads are billed, GETs too.
        let cold = per_million(&w, &d, Route::Invoke, Plan::Fanout, 1, true);
        assert!(cold.billed_ms > c.billed_ms + 3.0 * INIT_MS * 1e6 * 0.99);
        assert!((cold.s3_gets - 3.0 * 0.4).abs() < 1e-9);
    }

    #[test]
    fn an_index_too_big_for_the_coordinator_fans_out() {
        let d = Deployment::default();
        let big = QueryWork {
            index_bytes: 6e9,
            ..work()
        };
        assert_eq!(choose_plan(&big, &d, 1), Plan::Fanout);
        let unknown = QueryWork {
            index_bytes: 0.0,
            ..work()
        };
        assert_eq!(choose_plan(&unknown, &d, 1), Plan::Fanout);
        let many_rows = QueryWork { rows: 1e6, ..work() };
        assert_eq!(choose_plan(&many_rows, &d, 1), Plan::Local);
        assert_eq!(choose_plan(&many_rows, &d, 16), Plan::Fanout);
    }
}
