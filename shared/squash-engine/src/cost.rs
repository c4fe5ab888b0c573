//! The AWS cost model: list prices and Lambda's billing rules, in one place. Each
//! response's `stats.cost_usd` is computed here from what that query (or batch) did, and
//! `squash cost` (squash-bench) prices benchmark points with the same [`Prices`] and rules;
//! `docs/BENCHMARKS.md` shows the formulas.
//!
//! For one request (a single query or a batch) that made `invocations` worker invocations:
//!
//! - billed ms = the coordinator's duration + every worker invocation's duration (inner
//!   tree nodes wait for their children and are billed for it), each rounded up to a
//!   whole millisecond, plus [`Billing::init_ms`] for each cold container;
//! - compute = billed ms × memory GB / 1000 × [`Prices::lambda_gb_s`], each function at
//!   its own memory;
//! - requests = (1 + invocations) × [`Prices::lambda_request`], plus the route's fee
//!   ([`Route::fee`]: API Gateway's per request; nothing for a function URL or a raw invoke);
//! - GETs × [`Prices::s3_get`] (same-region transfer is free);
//! - logs = (1 + invocations) × [`Billing::log_bytes`] × [`Prices::log_gb`] / 1e9 (zero
//!   at the stacks' default log level, WARN).

use serde::Serialize;

/// Prices in US dollars (us-east-1, arm64, list prices of 2026-11; first pricing tier).
#[derive(Debug, Clone, Serialize)]
pub struct Prices {
    /// Lambda arm64 compute per GB-second.
    pub lambda_gb_s: f64,
    /// Lambda per request (invocation).
    pub lambda_request: f64,
    /// API Gateway HTTP API per request.
    pub api_request: f64,
    /// S3 Standard GET per request.
    pub s3_get: f64,
    /// CloudWatch Logs ingestion per GB.
    pub log_gb: f64,
}

impl Default for Prices {
    fn default() -> Prices {
        Prices {
            lambda_gb_s: 0.000_013_333_4,
            lambda_request: 0.20 / 1e6,
            api_request: 1.00 / 1e6,
            s3_get: 0.40 / 1e6,
            log_gb: 0.50,
        }
    }
}

/// How a request reached the coordinator: decides the front door's fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    /// API Gateway HTTP API: $1.00 per million requests on top of Lambda's.
    HttpApi,
    /// The coordinator's function URL: Lambda's request fee only.
    FunctionUrl,
    /// A raw `Invoke` of the coordinator (or the embedded mode, priced as one).
    Invoke,
}

impl Route {
    /// Every route, in the order `squash cost` prints them.
    pub const ALL: [Route; 3] = [Route::FunctionUrl, Route::Invoke, Route::HttpApi];

    /// The front door's fee per request.
    pub fn fee(&self, p: &Prices) -> f64 {
        match self {
            Route::HttpApi => p.api_request,
            Route::FunctionUrl | Route::Invoke => 0.0,
        }
    }

    /// `http-api`, `function-url` or `invoke`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Route::HttpApi => "http-api",
            Route::FunctionUrl => "function-url",
            Route::Invoke => "invoke",
        }
    }
}

/// Bytes a successful invocation writes to CloudWatch Logs at the stacks' default log
/// level, WARN: none (the functions log failed requests only, and Lambda's START, END
/// and REPORT lines are INFO).
pub const LOG_BYTES_WARN: f64 = 0.0;

/// Bytes a successful invocation writes at log level INFO: the function's JSON line
/// (`{"level":"INFO","function":"squash-coordinator","msg":"POST \"/v1/indexes/synth-1m/search\" -> 200","ms":1}`,
/// 60–110 bytes, measured on the local stack, plus about 90 that Lambda adds: timestamp
/// and request id) and Lambda's START, END and REPORT records (about 330 bytes in AWS's
/// documented format: an assumption, the local emulator does not print them).
pub const LOG_BYTES_INFO: f64 = 520.0;

/// Milliseconds of a cold container's billed init: process start to the first poll of
/// the runtime API, measured by `scripts/init-time.py` (median 9.8 ms for the coordinator,
/// 8.1 ms for a worker, on the development machine); assumed the same on AWS.
pub const INIT_MS: f64 = 10.0;

/// The deployment a request is priced for.
#[derive(Debug, Clone, Serialize)]
pub struct Billing {
    /// Coordinator memory, MB.
    pub coordinator_mb: f64,
    /// Worker memory, MB.
    pub worker_mb: f64,
    /// Billed init of a cold container, ms.
    pub init_ms: f64,
    /// Log bytes per successful invocation ([`LOG_BYTES_WARN`] or [`LOG_BYTES_INFO`]).
    pub log_bytes: f64,
    /// Prices.
    pub prices: Prices,
}

impl Default for Billing {
    /// The stacks' defaults: 2048 MB for the coordinator and the workers, log level WARN.
    fn default() -> Billing {
        Billing {
            coordinator_mb: 2048.0,
            worker_mb: 2048.0,
            init_ms: INIT_MS,
            log_bytes: LOG_BYTES_WARN,
            prices: Prices::default(),
        }
    }
}

/// What one request (a query or a batch) did, as billed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Work {
    /// The coordinator's billed milliseconds (its duration rounded up).
    pub coordinator_ms: f64,
    /// Every worker invocation's billed milliseconds, summed.
    pub worker_ms: f64,
    /// Worker invocations.
    pub invocations: f64,
    /// Object-store GETs.
    pub gets: f64,
    /// 1 when the coordinator's container was cold.
    pub cold_coordinator: f64,
    /// Cold worker containers.
    pub cold_workers: f64,
}

/// Dollars of one request, by item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Cost {
    /// Billed milliseconds of every function together (init included).
    pub billed_ms: f64,
    /// Lambda compute.
    pub compute: f64,
    /// Lambda requests.
    pub lambda_requests: f64,
    /// The route's request fee (API Gateway).
    pub front_door: f64,
    /// S3 GETs.
    pub s3_gets: f64,
    /// CloudWatch Logs ingestion.
    pub logs: f64,
}

impl Cost {
    /// Dollars in all.
    pub fn total(&self) -> f64 {
        self.compute + self.lambda_requests + self.front_door + self.s3_gets + self.logs
    }

    /// This cost times `f` (per million: `f` = 1e6; a batch's share: 1 / n).
    pub fn scaled(&self, f: f64) -> Cost {
        Cost {
            billed_ms: self.billed_ms * f,
            compute: self.compute * f,
            lambda_requests: self.lambda_requests * f,
            front_door: self.front_door * f,
            s3_gets: self.s3_gets * f,
            logs: self.logs * f,
        }
    }
}

impl Billing {
    /// What `w` costs through `route`.
    pub fn cost(&self, w: &Work, route: Route) -> Cost {
        let p = &self.prices;
        let coordinator_ms = w.coordinator_ms + w.cold_coordinator * self.init_ms;
        let worker_ms = w.worker_ms + w.cold_workers * self.init_ms;
        let gb_s = (coordinator_ms * self.coordinator_mb + worker_ms * self.worker_mb) / 1024.0 / 1e3;
        let invocations = 1.0 + w.invocations.max(0.0);
        Cost {
            billed_ms: coordinator_ms + worker_ms,
            compute: gb_s * p.lambda_gb_s,
            lambda_requests: invocations * p.lambda_request,
            front_door: route.fee(p),
            s3_gets: w.gets * p.s3_get,
            logs: invocations * self.log_bytes * p.log_gb / 1e9,
        }
    }
}

/// Milliseconds Lambda bills for `us` microseconds of duration: rounded up, at least 1.
pub fn billed_ms(us: u64) -> f64 {
    us.div_ceil(1000).max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_request() {
        // Coordinator 3 ms, workers 4 + 5 ms at 2 GB, 2 invocations, 10 GETs, one cold worker.
        let b = Billing::default();
        let w = Work {
            coordinator_ms: 3.0,
            worker_ms: 9.0,
            invocations: 2.0,
            gets: 10.0,
            cold_coordinator: 0.0,
            cold_workers: 1.0,
        };
        let b = Billing {
            log_bytes: LOG_BYTES_INFO,
            ..b
        };
        let c = b.cost(&w, Route::HttpApi);
        assert_eq!(c.billed_ms, 3.0 + 9.0 + INIT_MS);
        let gb_s = (3.0 + 9.0 + INIT_MS) * 2.0 / 1e3;
        assert!((c.compute - gb_s * 0.000_013_333_4).abs() < 1e-15);
        assert!((c.lambda_requests - 3.0 * 0.2e-6).abs() < 1e-15);
        assert_eq!(c.front_door, 1e-6);
        assert!((c.s3_gets - 4e-6).abs() < 1e-15);
        assert!((c.logs - 3.0 * LOG_BYTES_INFO * 0.5 / 1e9).abs() < 1e-18);
        assert_eq!(Billing::default().cost(&w, Route::HttpApi).logs, 0.0);
        let url = b.cost(&w, Route::FunctionUrl);
        assert_eq!(url.front_door, 0.0);
        assert!((c.total() - url.total() - 1e-6).abs() < 1e-15);
        // A bigger coordinator pays more compute only.
        let big = Billing {
            coordinator_mb: 4096.0,
            ..b.clone()
        };
        assert!(big.cost(&w, Route::Invoke).compute > b.cost(&w, Route::Invoke).compute);
        assert_eq!(big.cost(&w, Route::Invoke).lambda_requests, c.lambda_requests);
    }

    #[test]
    fn milliseconds_round_up() {
        assert_eq!(billed_ms(0), 1.0);
        assert_eq!(billed_ms(1), 1.0);
        assert_eq!(billed_ms(1000), 1.0);
        assert_eq!(billed_ms(1001), 2.0);
    }
}
