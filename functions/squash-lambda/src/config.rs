//! Function configuration, read once at cold start from environment variables
//! (documented in `functions/README.md`; the infra templates set the same names).

use squash_engine::tree::Fanout;
use squash_engine::worker::RangeReads;
use std::path::PathBuf;
use std::time::Duration;

/// Every environment variable the functions read.
pub const ENV_VARS: &[&str] = &[
    "SQUASH_INDEX_ROOT",
    "SQUASH_WORKERS",
    "SQUASH_BRANCHING",
    "SQUASH_DEPTH",
    "SQUASH_WORKER_FUNCTION",
    "SQUASH_LAMBDA_ENDPOINT",
    "SQUASH_CACHE_BYTES",
    "SQUASH_TMP_CACHE_BYTES",
    "SQUASH_TMP_CACHE_DIR",
    "SQUASH_INVOKE_ATTEMPTS",
    "SQUASH_INVOKE_TIMEOUT_MS",
    "SQUASH_MANIFEST_TTL",
    "SQUASH_WRITES",
    "SQUASH_FOLD_SHARE",
    "SQUASH_RANGE_READS",
    "SQUASH_WORKER_MEMORY_MB",
    // Read by squash-storage's S3 store, not by `Config`.
    "SQUASH_S3_ENDPOINT",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
];

/// Cache budget when the memory size is unknown (outside Lambda): 1 GiB.
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;

/// What the coordinator and the workers need to know about their deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where indexes live: index `NAME` is under `{index_root}/NAME/` (`s3://bucket/prefix`
    /// or a directory). `SQUASH_INDEX_ROOT`, required.
    pub index_root: String,
    /// Fan-out shape: `SQUASH_WORKERS` (W, default 4; 0 makes the coordinator search by
    /// itself), `SQUASH_BRANCHING` (b, default 4), `SQUASH_DEPTH` (l, default 3).
    pub fanout: Fanout,
    /// True when `SQUASH_WORKERS=0`: no worker invocations at all.
    pub search_in_coordinator: bool,
    /// Worker function name; `{i}` is replaced by the worker number 0..W
    /// (`SQUASH_WORKER_FUNCTION`, default `squash-worker-{i}`). Without `{i}` every
    /// logical worker is the same function.
    pub worker_function: String,
    /// Lambda API endpoint overrides (`SQUASH_LAMBDA_ENDPOINT`, comma-separated), e.g.
    /// cargo-lambda's `http://127.0.0.1:9001`. Worker `i` is invoked at entry
    /// `i % len`: the local stack gives each logical worker an emulator of its own, so
    /// each keeps its own warm cache as a deployed `squash-worker-{i}` does. Empty: AWS.
    pub lambda_endpoints: Vec<String>,
    /// In-memory segment cache budget (`SQUASH_CACHE_BYTES`, else from the function's
    /// memory size, see [`cache_budget`]).
    pub cache_bytes: u64,
    /// Bytes of the optional `/tmp` tier; 0 turns it off (`SQUASH_TMP_CACHE_BYTES`, default 0).
    pub tmp_cache_bytes: u64,
    /// Directory of the `/tmp` tier (`SQUASH_TMP_CACHE_DIR`, default `/tmp/squash-cache`).
    pub tmp_cache_dir: PathBuf,
    /// Attempts per worker invocation, first included (`SQUASH_INVOKE_ATTEMPTS`, default 3).
    pub invoke_attempts: u32,
    /// Time limit of one worker invocation (`SQUASH_INVOKE_TIMEOUT_MS`, default 60000).
    pub invoke_timeout: Duration,
    /// How long an open index's manifest is reused before it is read again
    /// (`SQUASH_MANIFEST_TTL`, seconds, default 1; 0 reads it for every request): a
    /// write shows in searches within this time (at once with `"consistency": "strong"`).
    pub manifest_ttl: Duration,
    /// Whether the coordinator serves the upsert and delete routes (`SQUASH_WRITES`:
    /// `off`, the default, or `on`; the deployment must also let it write to S3).
    pub writes: bool,
    /// Churn share past which a write folds a partition (`SQUASH_FOLD_SHARE`: default
    /// 0.1, `off` never folds; see `squash_write::Writer::with_fold_share`).
    pub fold_share: Option<f64>,
    /// Whether workers read missed segments by byte ranges (`SQUASH_RANGE_READS`: `off`,
    /// the default, or `on`; see [`RangeReads`]).
    pub range_reads: RangeReads,
    /// This function's memory, MB (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, set by Lambda;
    /// default 2048), for the cost estimate in each response.
    pub memory_mb: u64,
    /// The workers' memory, MB (`SQUASH_WORKER_MEMORY_MB`, set by the templates; default
    /// 2048), for the cost estimate.
    pub worker_memory_mb: u64,
}

/// Segment cache budget for a function of `memory_mb` MB: 60 % of it, less 64 MiB for
/// the runtime and the request in flight, never under 32 MiB.
pub fn cache_budget(memory_mb: u64) -> u64 {
    let bytes = memory_mb.saturating_mul(1 << 20);
    (bytes / 10 * 6).saturating_sub(64 << 20).max(32 << 20)
}

fn number<T: std::str::FromStr>(get: &dyn Fn(&str) -> Option<String>, name: &str, default: T) -> Result<T, String> {
    match get(name) {
        None => Ok(default),
        Some(v) if v.trim().is_empty() => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a valid non-negative number")),
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, String> {
        Config::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads configuration through `get` (a variable's value, if set).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
        let index_root = get("SQUASH_INDEX_ROOT")
            .filter(|v| !v.trim().is_empty())
            .ok_or("SQUASH_INDEX_ROOT is not set (e.g. s3://my-bucket/indexes)")?
            .trim()
            .trim_end_matches('/')
            .to_string();
        let workers: usize = number(get, "SQUASH_WORKERS", 4)?;
        let fanout = Fanout {
            workers: workers.max(1),
            branching: number(get, "SQUASH_BRANCHING", 4)?,
            depth: number(get, "SQUASH_DEPTH", 3)?,
        };
        fanout.validate()?;
        let memory_mb: Option<u64> = get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").and_then(|v| v.trim().parse().ok());
        let cache_default = memory_mb.map(cache_budget).unwrap_or(DEFAULT_CACHE_BYTES);
        let invoke_attempts: u32 = number(get, "SQUASH_INVOKE_ATTEMPTS", 3)?;
        if !(1..=10).contains(&invoke_attempts) {
            return Err(format!("SQUASH_INVOKE_ATTEMPTS must be 1..=10, got {invoke_attempts}"));
        }
        let worker_function = get("SQUASH_WORKER_FUNCTION")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "squash-worker-{i}".to_string());
        Ok(Config {
            index_root,
            fanout,
            search_in_coordinator: workers == 0,
            worker_function,
            lambda_endpoints: get("SQUASH_LAMBDA_ENDPOINT")
                .unwrap_or_default()
                .split(',')
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect(),
            cache_bytes: number(get, "SQUASH_CACHE_BYTES", cache_default)?,
            tmp_cache_bytes: number(get, "SQUASH_TMP_CACHE_BYTES", 0)?,
            tmp_cache_dir: get("SQUASH_TMP_CACHE_DIR")
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| "/tmp/squash-cache".to_string())
                .into(),
            invoke_attempts,
            invoke_timeout: Duration::from_millis(number(get, "SQUASH_INVOKE_TIMEOUT_MS", 60_000)?),
            manifest_ttl: {
                let s: f64 = number(get, "SQUASH_MANIFEST_TTL", 1.0)?;
                if !(s.is_finite() && (0.0..=86_400.0).contains(&s)) {
                    return Err(format!("SQUASH_MANIFEST_TTL must be 0 to 86400 seconds, got {s}"));
                }
                Duration::from_secs_f64(s)
            },
            writes: match get("SQUASH_WRITES").as_deref().map(str::trim) {
                None | Some("") | Some("off") => false,
                Some("on") => true,
                Some(v) => return Err(format!("SQUASH_WRITES={v:?}: expected on or off")),
            },
            fold_share: match get("SQUASH_FOLD_SHARE").filter(|v| !v.trim().is_empty()) {
                None => Some(squash_write::write::DEFAULT_FOLD_SHARE),
                Some(v) => squash_write::write::parse_fold_share(&v).map_err(|e| format!("SQUASH_FOLD_SHARE={e}"))?,
            },
            memory_mb: memory_mb.unwrap_or(2048),
            worker_memory_mb: number(get, "SQUASH_WORKER_MEMORY_MB", 2048)?,
            range_reads: match get("SQUASH_RANGE_READS") {
                Some(v) if !v.trim().is_empty() => {
                    v.trim().parse().map_err(|e| format!("SQUASH_RANGE_READS={v:?}: {e}"))?
                }
                _ => RangeReads::Off,
            },
        })
    }

    /// The cost model for this deployment: this function's and the workers' memory.
    pub fn billing(&self) -> squash_engine::cost::Billing {
        squash_engine::cost::Billing {
            coordinator_mb: self.memory_mb as f64,
            worker_mb: self.worker_memory_mb as f64,
            ..squash_engine::cost::Billing::default()
        }
    }

    /// The function name of logical worker `worker`.
    pub fn worker_function_name(&self, worker: u32) -> String {
        self.worker_function.replace("{i}", &worker.to_string())
    }

    /// Where index `name` lives.
    pub fn index_location(&self, name: &str) -> String {
        format!("{}/{name}", self.index_root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(&|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_and_overrides() {
        let c = config(&[("SQUASH_INDEX_ROOT", "s3://b/p/")]).unwrap();
        assert_eq!(c.index_location("glove"), "s3://b/p/glove");
        assert_eq!(
            (c.fanout.workers, c.fanout.branching, c.fanout.depth),
            (4, 4, 3),
            "SQUASH's b = 4, l = 3"
        );
        assert_eq!(c.worker_function_name(3), "squash-worker-3");
        assert_eq!(c.cache_bytes, DEFAULT_CACHE_BYTES);
        assert!(!c.search_in_coordinator);
        assert!(!c.writes, "writes are off unless turned on");
        assert_eq!(c.manifest_ttl, Duration::from_secs(1));
        let c = config(&[
            ("SQUASH_INDEX_ROOT", "/data"),
            ("SQUASH_WORKERS", "0"),
            ("SQUASH_WORKER_FUNCTION", "w"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048"),
        ])
        .unwrap();
        assert!(c.search_in_coordinator);
        assert_eq!(c.worker_function_name(7), "w");
        assert!(c.lambda_endpoints.is_empty());
        assert_eq!(c.cache_bytes, cache_budget(2048));
        let c = config(&[
            ("SQUASH_INDEX_ROOT", "/d"),
            ("SQUASH_LAMBDA_ENDPOINT", "http://a:1, http://b:2"),
        ])
        .unwrap();
        assert_eq!(c.lambda_endpoints, ["http://a:1", "http://b:2"]);
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(config(&[]).unwrap_err().contains("SQUASH_INDEX_ROOT"));
        let e = config(&[("SQUASH_INDEX_ROOT", "/d"), ("SQUASH_BRANCHING", "x")]).unwrap_err();
        assert!(e.contains("SQUASH_BRANCHING"), "{e}");
        let e = config(&[("SQUASH_INDEX_ROOT", "/d"), ("SQUASH_RANGE_READS", "maybe")]).unwrap_err();
        assert!(e.contains("SQUASH_RANGE_READS") && e.contains("on or off"), "{e}");
        let c = config(&[("SQUASH_INDEX_ROOT", "/d"), ("SQUASH_RANGE_READS", "on")]).unwrap();
        assert_eq!(c.range_reads, RangeReads::On);
        let e = config(&[("SQUASH_INDEX_ROOT", "/d"), ("SQUASH_WRITES", "yes")]).unwrap_err();
        assert!(e.contains("SQUASH_WRITES"), "{e}");
        for bad in ["0", "-0.1", "NaN", "some"] {
            let e = config(&[("SQUASH_INDEX_ROOT", "/d"), ("SQUASH_FOLD_SHARE", bad)]).unwrap_err();
            assert!(e.contains("SQUASH_FOLD_SHARE"), "{e}");
        }
        let share = |v: &str| {
            config(&[("SQUASH_INDEX_ROOT", "/d"), ("SQUASH_FOLD_SHARE", v)])
                .unwrap()
                .fold_share
        };
        assert_eq!((share("off"), share("0.25")), (None, Some(0.25)));
        assert_eq!(config(&[("SQUASH_INDEX_ROOT", "/d")]).unwrap().fold_share, Some(0.1));
        let e = config(&[("SQUASH_INDEX_ROOT", "/d"), ("SQUASH_MANIFEST_TTL", "-1")]).unwrap_err();
        assert!(e.contains("SQUASH_MANIFEST_TTL"), "{e}");
        let c = config(&[
            ("SQUASH_INDEX_ROOT", "/d"),
            ("SQUASH_WRITES", "on"),
            ("SQUASH_MANIFEST_TTL", "0.25"),
        ])
        .unwrap();
        assert!(c.writes);
        assert_eq!(c.manifest_ttl, Duration::from_millis(250));
        let e = config(&[("SQUASH_INDEX_ROOT", "/d"), ("SQUASH_DEPTH", "0")]).unwrap_err();
        assert!(e.contains("depth"), "{e}");
    }

    #[test]
    fn cache_budget_leaves_headroom() {
        assert_eq!(cache_budget(128), 32 << 20);
        let b = cache_budget(1769);
        assert!(b < 1769 << 20 && b > 900 << 20, "{b}");
    }
}
