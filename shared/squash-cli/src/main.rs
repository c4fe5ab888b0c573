//! `squash`: build an index, query it, compute exact ground truth, prepare the SQUASH
//! workload on a real dataset, and benchmark. Errors end with one line naming the
//! problem and exit code 1 (2 for usage errors).

use clap::{Args, Parser, Subcommand};
use rayon::prelude::*;
use squash_api::{SearchParams, SearchRequest};
use squash_core::distance::{prepare_vector, Metric};
use squash_core::filter::Expr;
use squash_search::bench::{format_table, run_case, BenchOptions};
use squash_search::build::{build_index, default_search_defaults, BuildParams};
use squash_search::groundtruth::{groundtruth, neighbors_to_json, read_groundtruth};
use squash_search::io::{read_attributes, read_json_lines, read_vectors, Attributes, Matrix};
use squash_search::search::Index;
use squash_search::workload::{prepare, selectivity_label, PrepareParams, Workload};
use squash_search::{Result, SearchError};
use squash_storage::open_store;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    Build(BuildArgs),
    /// Search an index: one vector, or a batch from a .npy/.fvecs file.
    Query(QueryArgs),
    /// Print an index's description as JSON.
    Info {
        /// Index: a directory or s3://bucket/prefix.
        #[arg(long)]
        index: String,
    },
    /// Exact filtered top-k by brute force (multi-threaded).
    Groundtruth(GroundtruthArgs),
    /// Prepare SQUASH's workload: held-out queries, uniform attributes, range filters.
    Prepare(PrepareArgs),
    /// Benchmark an index on a prepared workload (recall, QPS, latency, work per query).
    Bench(BenchArgs),
    /// Write a synthetic clustered workload (Gaussian mixture, streamed to disk) with
    /// range attributes and a `label` attribute correlated with the vectors.
    Synth(SynthArgs),
    /// AWS cost per million queries of benchmark points (`squash bench --cold-queries`).
    Cost(CostArgs),
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

#[derive(Args)]
struct BuildArgs {
    /// Vectors: .npy float32 [N, D] or .fvecs.
    #[arg(long)]
    vectors: PathBuf,
    /// Attributes: .npy [N, A] (numeric; name them with --attr-names) or .csv with a header.
    #[arg(long)]
    attrs: Option<PathBuf>,
    /// Comma-separated attribute names for a .npy attribute file.
    #[arg(long, value_delimiter = ',')]
    attr_names: Vec<String>,
    /// Output index: a directory or s3://bucket/prefix.
    #[arg(long)]
    out: String,
    /// Distance metric: l2 or cosine.
    #[arg(long, default_value = "l2")]
    metric: String,
    /// Number of partitions (default: about one per 10,000 vectors).
    #[arg(long)]
    partitions: Option<usize>,
    /// Average OSQ bits per dimension.
    #[arg(long, default_value_t = 4.0)]
    bits_per_dim: f32,
    /// Random seed (same seed, same index bytes).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Fraction of variance kept by the global KLT that places partitions.
    #[arg(long, default_value_t = 0.9)]
    partition_energy: f64,
    #[command(flatten)]
    knobs: Knobs,
    /// Do not draw progress bars.
    #[arg(long)]
    no_progress: bool,
}

/// Search knobs; on `build` they set the index defaults, on `query`/`bench` they
/// override them.
#[derive(Args, Clone, Default)]
struct Knobs {
    /// Fewest partitions searched.
    #[arg(long)]
    nprobe: Option<u32>,
    /// Exact re-rank budget per partition as a multiple of k.
    #[arg(long)]
    rerank_factor: Option<u32>,
    /// Fraction of candidates kept by the Hamming prune, (0, 1].
    #[arg(long)]
    hamming_keep: Option<f32>,
    /// Filter sufficiency: search until estimated matches reach safety × k.
    #[arg(long)]
    safety: Option<f32>,
}

impl Knobs {
    fn params(&self) -> SearchParams {
        SearchParams {
            nprobe: self.nprobe,
            rerank_factor: self.rerank_factor,
            hamming_keep: self.hamming_keep,
            safety: self.safety,
        }
    }
}

#[derive(Args)]
struct QueryArgs {
    /// Index: a directory or s3://bucket/prefix.
    #[arg(long)]
    index: String,
    /// Query vectors file (.npy/.fvecs), one query per row.
    #[arg(long, conflicts_with = "vector")]
    queries: Option<PathBuf>,
    /// One query vector as comma-separated numbers.
    #[arg(long, allow_hyphen_values = true)]
    vector: Option<String>,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// One JSON filter per line, line i for query i (`null` or `{}` = no filter).
    #[arg(long, conflicts_with = "filter")]
    filters: Option<PathBuf>,
    /// One JSON filter applied to every query.
    #[arg(long)]
    filter: Option<String>,
    /// Print one JSON line per query.
    #[arg(long)]
    json: bool,
    /// Include attribute values in results.
    #[arg(long)]
    include_attributes: bool,
    /// Include per-query stats in JSON output.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    knobs: Knobs,
}

#[derive(Args)]
struct GroundtruthArgs {
    /// Prepared workload directory: computes every case's ground truth file.
    #[arg(long, conflicts_with_all = ["base", "queries", "out"])]
    data: Option<PathBuf>,
    /// Base vectors (.npy/.fvecs).
    #[arg(long)]
    base: Option<PathBuf>,
    /// Query vectors.
    #[arg(long)]
    queries: Option<PathBuf>,
    /// Attributes of the base vectors (.npy/.csv).
    #[arg(long)]
    attrs: Option<PathBuf>,
    /// Names of .npy attribute columns.
    #[arg(long, value_delimiter = ',')]
    attr_names: Vec<String>,
    /// One JSON filter per query line.
    #[arg(long)]
    filters: Option<PathBuf>,
    /// Output JSON lines file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Distance metric: l2 or cosine (taken from workload.json with --data).
    #[arg(long, default_value = "l2")]
    metric: String,
    /// Neighbours per query.
    #[arg(long, default_value_t = 100)]
    k: usize,
}

/// What every prepared workload has: held-out queries, range attributes, filter cases.
#[derive(Args)]
struct CaseArgs {
    /// Held-out queries (not indexed).
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Uniform [0, 1) range attributes per vector.
    #[arg(long, default_value_t = 4)]
    attributes: usize,
    /// Target selectivities (fractions), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,0.08,0.01,0.001")]
    selectivities: Vec<f64>,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(Args)]
struct PrepareArgs {
    /// Input vectors (.npy/.fvecs).
    #[arg(long)]
    input: PathBuf,
    /// Output workload directory.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    cases: CaseArgs,
    /// Distance metric of the dataset.
    #[arg(long, default_value = "cosine")]
    metric: String,
    /// Also add a `label` attribute (the Voronoi cell of this many random base vectors)
    /// and a `label` case filtering on each query's own cell; 0 = none.
    #[arg(long, default_value_t = 0)]
    label_clusters: usize,
}

#[derive(Args)]
struct SynthArgs {
    /// Output workload directory.
    #[arg(long)]
    out: PathBuf,
    /// Base (indexed) vectors.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Dimensions.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Mixture components (values of `label`).
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    #[command(flatten)]
    cases: CaseArgs,
}

#[derive(Args)]
struct CostArgs {
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

#[derive(Args)]
struct BenchArgs {
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
    /// Only these cases (labels from workload.json, e.g. `100%,label`).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Sweep: run every case once per value of nprobe (with each --rerank-sweep value).
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
    /// Logical workers W of the deployment the cold pass models.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Children per tree node b of that deployment.
    #[arg(long, default_value_t = 4)]
    branching: usize,
    /// Tree levels l of that deployment.
    #[arg(long, default_value_t = 3)]
    depth: usize,
    #[command(flatten)]
    knobs: Knobs,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(a) => cmd_build(a),
        Command::Query(a) => cmd_query(a),
        Command::Info { index } => open_index(&index).map(|ix| println!("{:#}", ix.describe())),
        Command::Groundtruth(a) => cmd_groundtruth(a),
        Command::Prepare(a) => cmd_prepare(a),
        Command::Bench(a) => cmd_bench(a),
        Command::Synth(a) => cmd_synth(a),
        Command::Cost(a) => cmd_cost(a),
        Command::Ping { store, wait_s } => cmd_ping(&store, wait_s),
        Command::Copy { from, to } => cmd_copy(&from, &to),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn cmd_copy(from: &str, to: &str) -> Result<()> {
    let (src, dst) = (open_store(from)?, open_store(to)?);
    let mut keys = src.list("")?;
    if keys.is_empty() {
        return Err(SearchError::NotFound {
            what: format!("any object in {}", src.describe()),
        });
    }
    // The manifest last: it is what makes the copied segments visible.
    keys.sort_by_key(|k| k == squash_search::build::MANIFEST_KEY);
    let mut bytes = 0u64;
    for key in &keys {
        let data = src.get(key)?;
        bytes += data.len() as u64;
        dst.put(key, &data)?;
    }
    println!(
        "copied {} objects, {} bytes, {} -> {}",
        keys.len(),
        bytes,
        src.describe(),
        dst.describe()
    );
    Ok(())
}

fn cmd_ping(location: &str, wait_s: f64) -> Result<()> {
    let store = squash_storage::open_store(location)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(wait_s.max(0.0));
    let probe = b"squash probe";
    loop {
        let tried = store
            .put(".squash-probe", probe)
            .and_then(|_| store.get(".squash-probe"));
        match tried {
            Ok(back) if back == probe => {
                println!("{} takes writes", store.describe());
                return Ok(());
            }
            Ok(_) => return Err(SearchError::input(location, "probe object read back differently")),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e.into()),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    }
}

fn metric(text: &str) -> Result<Metric> {
    Ok(Metric::parse(text)?)
}

/// Opens an index at a directory or `s3://bucket/prefix`; its name is the last path part.
fn open_index(location: &str) -> Result<Index> {
    let remote = location.contains("://");
    if !remote && !Path::new(location).is_dir() {
        return Err(SearchError::NotFound {
            what: format!("index directory '{location}'"),
        });
    }
    let name = location
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(location)
        .to_string();
    Index::open(open_store(location)?, &name)
}

fn load_attrs(path: Option<&Path>, names: &[String]) -> Result<Attributes> {
    match path {
        Some(p) => read_attributes(p, names),
        None if !names.is_empty() => Err(SearchError::bad("attr-names", "given without --attrs")),
        None => Ok(Attributes::default()),
    }
}

fn cmd_build(a: BuildArgs) -> Result<()> {
    let t0 = Instant::now();
    let vectors = read_vectors(&a.vectors)?;
    let attrs = load_attrs(a.attrs.as_deref(), &a.attr_names)?;
    if !attrs.columns.is_empty() && attrs.rows() != vectors.rows {
        return Err(SearchError::input(
            a.attrs.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            format!(
                "has {} rows but {} has {} vectors",
                attrs.rows(),
                a.vectors.display(),
                vectors.rows
            ),
        ));
    }
    let mut defaults = default_search_defaults();
    let k = &a.knobs;
    if let Some(v) = k.nprobe {
        defaults.nprobe = v;
    }
    if let Some(v) = k.rerank_factor {
        defaults.rerank_factor = v;
    }
    if let Some(v) = k.hamming_keep {
        defaults.hamming_keep = v;
    }
    if let Some(v) = k.safety {
        defaults.safety = v;
    }
    let params = BuildParams {
        metric: metric(&a.metric)?,
        partitions: a.partitions,
        bits_per_dim: a.bits_per_dim,
        seed: a.seed,
        partition_energy: a.partition_energy,
        defaults,
        progress: !a.no_progress && std::io::stderr().is_terminal(),
        ..BuildParams::default()
    };
    let (n, d) = (vectors.rows, vectors.cols);
    let store = open_store(&a.out)?;
    let report = build_index(store.as_ref(), vectors, attrs, &params)?;
    eprintln!(
        "built {} vectors × {d} ({}) into {} partitions, {:.1} MiB, in {:.1} s, peak RSS {} -> {}",
        n,
        params.metric.name(),
        report.manifest.partitions(),
        report.bytes_written as f64 / (1 << 20) as f64,
        t0.elapsed().as_secs_f64(),
        peak_rss()
            .map(|b| format!("{:.0} MiB", b as f64 / (1 << 20) as f64))
            .unwrap_or_else(|| "unknown".into()),
        a.out
    );
    Ok(())
}

fn parse_vector(text: &str) -> Result<Vec<f32>> {
    text.split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, s)| {
            s.parse::<f32>()
                .map_err(|_| SearchError::bad("vector", format!("component {i} ('{s}') is not a number")))
        })
        .collect()
}

fn cmd_query(a: QueryArgs) -> Result<()> {
    let index = open_index(&a.index)?;
    let queries: Vec<Vec<f32>> = match (&a.queries, &a.vector) {
        (Some(p), _) => {
            let m = read_vectors(p)?;
            (0..m.rows).map(|i| m.row(i).to_vec()).collect()
        }
        (None, Some(v)) => vec![parse_vector(v)?],
        (None, None) => return Err(SearchError::bad("queries", "give --queries FILE or --vector 1,2,3")),
    };
    let filters: Vec<Option<serde_json::Value>> = match (&a.filters, &a.filter) {
        (Some(p), _) => {
            let lines = read_json_lines(p)?;
            if lines.len() != queries.len() {
                return Err(SearchError::input(
                    p.display(),
                    format!("has {} filter lines for {} queries", lines.len(), queries.len()),
                ));
            }
            lines.into_iter().map(|v| (!v.is_null()).then_some(v)).collect()
        }
        (None, Some(f)) => {
            let v: serde_json::Value =
                serde_json::from_str(f).map_err(|e| SearchError::bad("filter", format!("invalid JSON: {e}")))?;
            vec![Some(v); queries.len()]
        }
        (None, None) => vec![None; queries.len()],
    };
    // Queries run in parallel (each one also fans out over partitions); answers are
    // printed in query order, and the first failing query (in order) is reported.
    let requests: Vec<SearchRequest> = queries
        .into_iter()
        .zip(filters)
        .map(|(vector, filter)| SearchRequest {
            vector,
            k: a.k,
            filter,
            include: if a.include_attributes {
                vec!["attributes".into()]
            } else {
                vec![]
            },
            params: a.knobs.params(),
            allow_partial: false,
        })
        .collect();
    let responses: Vec<Result<squash_api::SearchResponse>> = requests.par_iter().map(|r| index.search(r)).collect();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (i, resp) in responses.into_iter().enumerate() {
        let resp = resp.map_err(|e| match e {
            SearchError::BadRequest { field, message } => SearchError::BadRequest {
                field: format!("queries[{i}].{field}"),
                message,
            },
            other => other,
        })?;
        let write = if a.json {
            let mut line = serde_json::json!({
                "query": i,
                "ids": resp.hits.iter().map(|h| h.id).collect::<Vec<_>>(),
                "distances": resp.hits.iter().map(|h| h.distance).collect::<Vec<_>>(),
            });
            if a.include_attributes {
                line["attributes"] = resp
                    .hits
                    .iter()
                    .map(|h| h.attributes.clone())
                    .collect::<serde_json::Value>();
            }
            if a.stats {
                line["stats"] = serde_json::to_value(&resp.stats).unwrap_or_default();
            }
            writeln!(out, "{line}")
        } else {
            let mut text = format!("query {i}:");
            for h in &resp.hits {
                text.push_str(&format!(" {}({:.4})", h.id, h.distance));
            }
            writeln!(out, "{text}")
        };
        if write.is_err() {
            break; // stdout closed (e.g. piped into head): stop quietly.
        }
    }
    let _ = out.flush();
    Ok(())
}

fn prepared(m: &Matrix, metric: Metric, what: &str) -> Result<Matrix> {
    let mut m = m.clone();
    let cols = m.cols;
    for (i, row) in m.data.chunks_mut(cols).enumerate() {
        prepare_vector(metric, row, cols, &format!("{what}[{i}]"))?;
    }
    Ok(m)
}

fn parse_filters(lines: &[serde_json::Value], attrs: &Attributes, path: &Path) -> Result<Vec<Option<Expr>>> {
    lines
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Expr::parse(v, &attrs.schema)
                .map_err(|e| SearchError::input(path.display(), format!("line {}: {e}", i + 1)))
        })
        .collect()
}

fn write_lines(path: &Path, results: &[Vec<squash_core::topk::Neighbor>]) -> Result<()> {
    let mut text = String::new();
    for r in results {
        text.push_str(&neighbors_to_json(r).to_string());
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| SearchError::input(path.display(), format!("cannot write: {e}")))
}

fn cmd_groundtruth(a: GroundtruthArgs) -> Result<()> {
    let progress = std::io::stderr().is_terminal();
    if let Some(dir) = &a.data {
        let w = Workload::load(dir)?;
        let base = prepared(&read_vectors(&dir.join(&w.base))?, w.metric, "base")?;
        let queries = prepared(&read_vectors(&dir.join(&w.queries))?, w.metric, "queries")?;
        let attrs = read_attributes(&dir.join(&w.attrs), &w.attr_names)?;
        for case in &w.cases {
            let t0 = Instant::now();
            let fpath = dir.join(&case.filters);
            let filters = parse_filters(&read_json_lines(&fpath)?, &attrs, &fpath)?;
            let gt = groundtruth(&base, w.metric, &attrs, &queries, &filters, w.groundtruth_k, progress);
            write_lines(&dir.join(&case.groundtruth), &gt)?;
            eprintln!(
                "ground truth {} ({} queries) in {:.1} s",
                case.label,
                queries.rows,
                t0.elapsed().as_secs_f64()
            );
        }
        return Ok(());
    }
    let (Some(base), Some(queries), Some(out)) = (&a.base, &a.queries, &a.out) else {
        return Err(SearchError::bad(
            "groundtruth",
            "give --data DIR, or --base, --queries and --out",
        ));
    };
    let metric = metric(&a.metric)?;
    let base_m = prepared(&read_vectors(base)?, metric, "base")?;
    let queries_m = prepared(&read_vectors(queries)?, metric, "queries")?;
    if base_m.cols != queries_m.cols {
        return Err(SearchError::input(
            queries.display(),
            format!("queries have {} dimensions, base has {}", queries_m.cols, base_m.cols),
        ));
    }
    let attrs = load_attrs(a.attrs.as_deref(), &a.attr_names)?;
    let filters = match &a.filters {
        Some(p) => parse_filters(&read_json_lines(p)?, &attrs, p)?,
        None => Vec::new(),
    };
    let gt = groundtruth(&base_m, metric, &attrs, &queries_m, &filters, a.k, progress);
    write_lines(out, &gt)
}

fn cmd_prepare(a: PrepareArgs) -> Result<()> {
    let input = read_vectors(&a.input)?;
    let w = prepare(
        &input,
        &a.out,
        &PrepareParams {
            queries: a.cases.queries,
            attributes: a.cases.attributes,
            selectivities: a.cases.selectivities.clone(),
            metric: metric(&a.metric)?,
            label_clusters: a.label_clusters,
            seed: a.cases.seed,
        },
    )?;
    eprintln!(
        "prepared {} base vectors, {} queries, {} attributes, cases {} in {}",
        input.rows - a.cases.queries,
        a.cases.queries,
        a.cases.attributes,
        w.cases.iter().map(|c| c.label.as_str()).collect::<Vec<_>>().join(" "),
        a.out.display()
    );
    Ok(())
}

/// One JSON line of `squash bench --json-out`: a sweep point of one case.
#[derive(serde::Serialize)]
struct BenchLine<'a> {
    system: &'a str,
    dataset: &'a str,
    #[serde(flatten)]
    result: &'a squash_search::bench::CaseResult,
}

/// The knob settings a bench run visits: the cartesian product of the sweeps (a missing
/// sweep keeps the --nprobe/--rerank-factor given, or the index default).
fn sweep_points(a: &BenchArgs) -> Vec<SearchParams> {
    let base = a.knobs.params();
    let nprobes: Vec<Option<u32>> = if a.nprobe_sweep.is_empty() {
        vec![base.nprobe]
    } else {
        a.nprobe_sweep.iter().map(|&v| Some(v)).collect()
    };
    let reranks: Vec<Option<u32>> = if a.rerank_sweep.is_empty() {
        vec![base.rerank_factor]
    } else {
        a.rerank_sweep.iter().map(|&v| Some(v)).collect()
    };
    let safeties: Vec<Option<f32>> = if a.safety_sweep.is_empty() {
        vec![base.safety]
    } else {
        a.safety_sweep.iter().map(|&v| Some(v)).collect()
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

fn cmd_bench(a: BenchArgs) -> Result<()> {
    let index = open_index(&a.index)?;
    let fanout = squash_search::tree::Fanout {
        workers: a.workers,
        branching: a.branching,
        depth: a.depth,
    };
    fanout.validate().map_err(|e| SearchError::bad("workers", e))?;
    let cold = if a.cold_queries > 0 {
        Some(Index::open_cold(open_store(&a.index)?, index.name(), fanout)?)
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
            return Err(SearchError::bad(
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
                SearchError::input(path.display(), format!("cannot write: {e}"))
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
            SearchError::input(
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
                    system: "squash",
                    dataset: &dataset,
                    result: &r,
                };
                let text = serde_json::to_string(&line).unwrap_or_default();
                writeln!(out, "{text}").map_err(|e| SearchError::input("--json-out", e.to_string()))?;
                out.flush()
                    .map_err(|e| SearchError::input("--json-out", e.to_string()))?;
            }
            results.push(r);
        }
    }
    println!("{}", format_table(&results, a.k));
    if let Some(min) = a.min_recall {
        let mut low: Vec<String> = Vec::new();
        for r in &results {
            let best = results
                .iter()
                .filter(|o| o.label == r.label)
                .map(|o| o.recall)
                .fold(0.0, f64::max);
            if best < min && !low.iter().any(|l| l.starts_with(&format!("{} ", r.label))) {
                low.push(format!("{} ({best:.4})", r.label));
            }
        }
        if !low.is_empty() {
            return Err(SearchError::bad(
                "min-recall",
                format!("recall@{} below {min} for {}", a.k, low.join(", ")),
            ));
        }
    }
    Ok(())
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

/// Peak resident memory of this process (Linux `VmHWM`), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn cmd_synth(a: SynthArgs) -> Result<()> {
    let t0 = Instant::now();
    let p = squash_search::synth::SynthParams {
        rows: a.rows,
        dim: a.dim,
        clusters: a.clusters,
        queries: a.cases.queries,
        attributes: a.cases.attributes,
        selectivities: a.cases.selectivities.clone(),
        seed: a.cases.seed,
    };
    let w = squash_search::synth::synthesize(&a.out, &p, std::io::stderr().is_terminal())?;
    eprintln!(
        "synthesized {} vectors × {} ({} clusters), {} queries, cases {} in {} in {:.1} s",
        a.rows,
        a.dim,
        a.clusters,
        a.cases.queries,
        w.cases.iter().map(|c| c.label.as_str()).collect::<Vec<_>>().join(" "),
        a.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn cmd_cost(a: CostArgs) -> Result<()> {
    use squash_search::cost::{per_million, published, Deployment, Prices, QueryWork};
    let prices = Prices::default();
    let deployment = Deployment {
        memory_mb: a.memory_mb,
        ..Deployment::default()
    };
    if !(128.0..=10240.0).contains(&a.memory_mb) {
        return Err(SearchError::bad(
            "memory-mb",
            "Lambda memory is between 128 and 10240 MB",
        ));
    }
    // (dataset, case) -> cheapest point reaching the target recall.
    let mut best: Vec<(String, String, serde_json::Value, QueryWork, f64)> = Vec::new();
    for path in &a.bench {
        for (i, line) in read_json_lines(path)?.into_iter().enumerate() {
            if line["system"] != "squash" {
                continue;
            }
            let num = |v: &serde_json::Value| v.as_f64();
            let (Some(recall), Some(cold)) = (num(&line["recall"]), line.get("cold").filter(|c| !c.is_null())) else {
                return Err(SearchError::input(
                    path.display(),
                    format!(
                        "line {}: no recall or no cold measurement; run squash bench with --cold-queries",
                        i + 1
                    ),
                ));
            };
            if recall < a.target_recall {
                continue;
            }
            let work = QueryWork {
                plan_ms: num(&line["plan_ms"]).unwrap_or(0.0),
                scan_ms: num(&line["scan_ms"]).unwrap_or(0.0),
                invocations: num(&cold["invocations"]).unwrap_or(0.0),
                gets: num(&cold["gets"]).unwrap_or(0.0),
                bytes: num(&cold["bytes"]).unwrap_or(0.0),
                fetch_ms: num(&cold["fetch_ms"]).unwrap_or(0.0),
            };
            let total = per_million(&work, &deployment, &prices, false).total();
            let dataset = line["dataset"].as_str().unwrap_or("").to_string();
            let case = line["label"].as_str().unwrap_or("").to_string();
            let entry = (dataset, case, line["params"].clone(), work, recall);
            match best.iter_mut().find(|b| b.0 == entry.0 && b.1 == entry.1) {
                Some(b) if per_million(&b.3, &deployment, &prices, false).total() > total => *b = entry,
                Some(_) => {}
                None => best.push(entry),
            }
        }
    }
    if best.is_empty() {
        return Err(SearchError::bad(
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
        std::fs::write(out, &text).map_err(|e| SearchError::input(out.display(), format!("cannot write: {e}")))?;
    }
    Ok(())
}
