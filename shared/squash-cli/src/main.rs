//! `squash`: build an index, query it, compute exact ground truth, prepare the SQUASH
//! workload on a real dataset, benchmark and price it. One file per subcommand under
//! `commands/`. Errors end with one line naming the problem and exit code 1 (2 for
//! usage errors).

mod commands;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "squash",
    version,
    about = "Serverless filtered vector search (SQUASH): build, query, benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an index from vectors (.npy/.fvecs) and optional attributes (.npy/.csv).
    Build(commands::build::BuildArgs),
    /// Search an index: one vector, or a batch from a .npy/.fvecs file.
    Query(commands::query::QueryArgs),
    /// Insert or replace vectors by id (a new index version; no rebuild).
    Upsert(commands::write::UpsertArgs),
    /// Delete vectors by id or by filter (a new index version; no rebuild).
    Delete(commands::write::DeleteArgs),
    /// Fold writes into rebuilt partitions (a new version) and remove objects no
    /// version younger than the grace period names.
    Compact(commands::write::CompactArgs),
    /// Build the `updates` benchmark's index: a workload's base reached through writes
    /// (a share held back and upserted, as many decoys built in and deleted).
    Churn(commands::write::ChurnArgs),
    /// Print an index's description as JSON.
    Info {
        /// Index: a directory or s3://bucket/prefix.
        #[arg(long)]
        index: String,
    },
    /// Exact filtered top-k by brute force (multi-threaded).
    Groundtruth(commands::groundtruth::GroundtruthArgs),
    /// Prepare SQUASH's workload: held-out queries, uniform attributes, range filters.
    Prepare(commands::prepare::PrepareArgs),
    /// Benchmark an index on a prepared workload (recall, QPS, latency, work per query).
    Bench(commands::bench::BenchArgs),
    /// Write a synthetic clustered workload (Gaussian mixture, streamed to disk) with
    /// range attributes and a `label` attribute correlated with the vectors.
    Synth(commands::synth::SynthArgs),
    /// AWS cost per million queries of benchmark points (`squash bench --cold-queries`).
    Cost(commands::cost::CostArgs),
    /// Copy every object of an index (or any store location) to another location, e.g. a
    /// local build to s3://bucket/prefix; the manifest goes last, so readers never see
    /// a manifest whose segments are missing.
    Copy {
        /// Source: a directory or s3://bucket/prefix.
        #[arg(long)]
        from: String,
        /// Destination: a directory or s3://bucket/prefix.
        #[arg(long)]
        to: String,
    },
    /// Check that a store location takes writes: PUT and read back a small probe
    /// object (`.squash-probe`), retrying for up to --wait-s seconds.
    Ping {
        /// Store: a directory or s3://bucket/prefix.
        #[arg(long)]
        store: String,
        /// Seconds to keep trying.
        #[arg(long, default_value_t = 0.0)]
        wait_s: f64,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(a) => commands::build::run(a),
        Command::Query(a) => commands::query::run(a),
        Command::Upsert(a) => commands::write::run_upsert(a),
        Command::Delete(a) => commands::write::run_delete(a),
        Command::Compact(a) => commands::write::run_compact(a),
        Command::Churn(a) => commands::write::run_churn(a),
        Command::Info { index } => commands::info::run(&index),
        Command::Groundtruth(a) => commands::groundtruth::run(a),
        Command::Prepare(a) => commands::prepare::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Synth(a) => commands::synth::run(a),
        Command::Cost(a) => commands::cost::run(a),
        Command::Ping { store, wait_s } => commands::ping::run(&store, wait_s),
        Command::Copy { from, to } => commands::copy::run(&from, &to),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
