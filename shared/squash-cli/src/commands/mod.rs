//! The subcommands, one file each, and what several of them share: search knobs, the
//! workload's case flags, opening an index, reading attributes, and the CLI's error.

pub mod bench;
pub mod build;
pub mod copy;
pub mod cost;
pub mod groundtruth;
pub mod info;
pub mod ping;
pub mod prepare;
pub mod query;
pub mod synth;
pub mod write;

use clap::Args;
use squash_api::SearchParams;
use squash_bench::BenchError;
use squash_build::io::{read_attributes, Attributes};
use squash_build::BuildError;
use squash_core::distance::Metric;
use squash_core::CoreError;
use squash_engine::search::Index;
use squash_engine::SearchError;
use squash_s3::open_store;
use squash_storage::StorageError;
use std::path::Path;

/// Everything a subcommand can report; printed as one line, exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag's value is invalid; `field` names the flag (without `--`).
    #[error("invalid '{field}': {message}")]
    Invalid {
        /// The flag.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Input {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Something named does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// A search failed.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// A build, or reading its inputs, failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The benchmark tooling failed.
    #[error(transparent)]
    Bench(#[from] BenchError),
    /// The object store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The core rejected a value.
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl From<squash_write::WriteError> for CliError {
    fn from(e: squash_write::WriteError) -> Self {
        CliError::Build(e.into())
    }
}

impl CliError {
    /// An invalid flag value.
    pub fn bad(field: &str, message: impl Into<String>) -> Self {
        CliError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// A file that could not be used.
    pub fn input(path: impl std::fmt::Display, message: impl Into<String>) -> Self {
        CliError::Input {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// Result of a subcommand.
pub type Result<T> = std::result::Result<T, CliError>;

/// Search knobs; on `build` they set the index defaults, on `query`/`bench` they
/// override them.
#[derive(Args, Clone, Default)]
pub struct Knobs {
    /// Fewest fine lists searched (default: measured on the data at build time).
    #[arg(long)]
    nprobe: Option<u32>,
    /// Exact re-rank budget per worker as a multiple of k.
    #[arg(long)]
    rerank_factor: Option<u32>,
    /// Fraction of candidates kept by the Hamming prune, (0, 1].
    #[arg(long)]
    hamming_keep: Option<f32>,
    /// Filter sufficiency: search until estimated matches reach safety × k, at every
    /// selectivity (default: a curve measured on the data at build time).
    #[arg(long)]
    safety: Option<f32>,
}

/// The fan-out shape of a deployment: W workers, b children per node, l levels.
#[derive(Args)]
pub struct FanoutArgs {
    /// Logical workers W of the deployment.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Children per tree node b.
    #[arg(long, default_value_t = 4)]
    branching: usize,
    /// Tree levels l.
    #[arg(long, default_value_t = 3)]
    depth: usize,
}

impl FanoutArgs {
    /// The shape, checked.
    pub fn fanout(&self) -> Result<squash_engine::tree::Fanout> {
        let fanout = squash_engine::tree::Fanout {
            workers: self.workers,
            branching: self.branching,
            depth: self.depth,
        };
        fanout.validate().map_err(|e| CliError::bad("workers", e))?;
        Ok(fanout)
    }
}

impl Knobs {
    /// The knobs as per-query search parameters (unset ones: the index default).
    pub fn params(&self) -> SearchParams {
        SearchParams {
            nprobe: self.nprobe,
            rerank_factor: self.rerank_factor,
            hamming_keep: self.hamming_keep,
            safety: self.safety,
            plan: None,
        }
    }
}

/// What every prepared workload has: held-out queries, range attributes, filter cases.
#[derive(Args)]
pub struct CaseArgs {
    /// Held-out queries (not indexed).
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Uniform [0, 1) range attributes per vector.
    #[arg(long, default_value_t = 4)]
    pub attributes: usize,
    /// Target selectivities (fractions), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,0.08,0.01,0.001")]
    pub selectivities: Vec<f64>,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Parses a metric name (`l2`, `cosine`).
pub fn metric(text: &str) -> Result<Metric> {
    Ok(Metric::parse(text)?)
}

/// Opens an index at a directory or `s3://bucket/prefix`; its name is the last path part.
pub fn open_index(location: &str) -> Result<Index> {
    let remote = location.contains("://");
    if !remote && !Path::new(location).is_dir() {
        return Err(CliError::NotFound {
            what: format!("index directory '{location}'"),
        });
    }
    let name = location
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(location)
        .to_string();
    Ok(Index::open(open_store(location)?, &name)?)
}

/// Reads the attribute files, if any, side by side (`names` name the columns of the one
/// `.npy` among them).
pub fn load_attrs(paths: &[std::path::PathBuf], names: &[String]) -> Result<Attributes> {
    if paths.is_empty() && !names.is_empty() {
        return Err(CliError::bad("attr-names", "given without --attrs"));
    }
    let npy = paths
        .iter()
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("npy"))
        .count();
    if npy > 1 {
        return Err(CliError::bad(
            "attrs",
            "at most one .npy attribute file (named by --attr-names)",
        ));
    }
    let mut out = Attributes::default();
    for p in paths {
        let is_npy = p.extension().and_then(|e| e.to_str()) == Some("npy");
        let table = read_attributes(p, if is_npy { names } else { &[] })?;
        out = out.join(table).map_err(|m| BuildError::input(p.display(), m))?;
    }
    if npy == 0 && !names.is_empty() {
        return Err(CliError::bad(
            "attr-names",
            "names a .npy attribute file; none was given",
        ));
    }
    Ok(out)
}
