//! The build pipeline: vectors and attributes in, a manifest and one segment per
//! partition out (see `docs/ARCHITECTURE.md` for the steps, `docs/FORMAT.md` for bytes).

use crate::calibrate::{calibrate, calibrate_rerank, CalibrationInput};
use crate::error::{BuildError, Result};
use crate::ids::Ids;
use crate::io::{Attributes, Matrix};
use crate::kmeans::{balanced_kmeans, Bf16Points, F32Points};
use crate::progress::Progress;
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use squash_core::attrs::{AttrCells, AttrKind};
use squash_core::distance::{prepare_vector, Metric};
use squash_core::klt::Klt;
use squash_core::manifest::{Manifest, ManifestMeta, PartitionInfo, SearchDefaults, PRESENCE_WORDS};
use squash_core::osq::MAX_BITS;
use squash_core::segment::Segment;
use squash_core::summary::ListCodeCounts;
use squash_core::values::{ValuePostings, MANY_VALUES};
use squash_storage::ObjectStore;
use squash_write::partition::{encode_partition, ListsOf, PartitionInput, PartitionObject, Quantisation};
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

pub use squash_core::manifest::MANIFEST_KEY;

/// Build settings. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct BuildParams {
    /// Distance metric.
    pub metric: Metric,
    /// Number of partitions; `None` derives it from `target_partition_vectors`.
    pub partitions: Option<usize>,
    /// Wanted vectors per partition when `partitions` is not set.
    pub target_partition_vectors: usize,
    /// Wanted vectors per fine list inside a partition (the unit of pruning).
    pub list_vectors: usize,
    /// Average OSQ bits per dimension (greedy allocation, 1..=8).
    pub bits_per_dim: f32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Fraction of variance the global KLT keeps for placing partitions.
    pub partition_energy: f64,
    /// Lloyd iterations of k-means.
    pub kmeans_iterations: usize,
    /// Values per dimension used to fit Lloyd-Max boundaries.
    pub lloyd_sample: usize,
    /// Search defaults written to the manifest; `nprobe`, `safety` or `rerank_factor` 0
    /// means "measure it on the data" ([`crate::calibrate`]; the static fallbacks for an
    /// index too small to calibrate, or with `calibrate` off, are 8 % of the lists,
    /// [`FALLBACK_SAFETY`] and [`FALLBACK_RERANK_FACTOR`]).
    pub defaults: SearchDefaults,
    /// Calibrate the knobs left at 0 on sample queries drawn from the data.
    pub calibrate: bool,
    /// Show progress bars on stderr.
    pub progress: bool,
    /// Inner product only: the largest vector norm the index will hold (the
    /// transformation's `M`); `None` takes the data's largest. Writes may add vectors up
    /// to this norm, so a margin above the data's leaves room for them.
    pub max_norm: Option<f32>,
}

impl BuildParams {
    /// How each partition's quantiser is fitted.
    pub fn quantisation(&self) -> Quantisation {
        Quantisation {
            bits_per_dim: self.bits_per_dim,
            lloyd_sample: self.lloyd_sample,
        }
    }
}

impl Default for BuildParams {
    fn default() -> Self {
        BuildParams {
            metric: Metric::L2,
            partitions: None,
            target_partition_vectors: 10_000,
            list_vectors: DEFAULT_LIST_VECTORS,
            bits_per_dim: 4.0,
            seed: 42,
            partition_energy: 0.9,
            kmeans_iterations: 12,
            lloyd_sample: squash_write::partition::DEFAULT_LLOYD_SAMPLE,
            defaults: default_search_defaults(),
            calibrate: true,
            progress: false,
            max_norm: None,
        }
    }
}

/// Default vectors per fine list.
pub const DEFAULT_LIST_VECTORS: usize = 256;

/// Filter-sufficiency factor of an index whose `safety` was not calibrated.
pub const FALLBACK_SAFETY: f32 = 500.0;

/// Re-rank factor of an index whose `rerank_factor` was not calibrated.
pub const FALLBACK_RERANK_FACTOR: u32 = 10;

/// Default search knobs (see `docs/ARCHITECTURE.md` for how they were chosen); `nprobe`,
/// `safety` and `rerank_factor` 0: measured at build time.
pub fn default_search_defaults() -> SearchDefaults {
    SearchDefaults {
        nprobe: 0,
        rerank_factor: 0,
        hamming_keep: 1.0,
        safety: 0.0,
        safety_curve: Vec::new(),
        far_share: Vec::new(),
        calibration: None,
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The manifest written.
    pub manifest: Manifest,
    /// Total bytes written.
    pub bytes_written: u64,
}

/// Builds an index from `vectors` and `attrs` into `store` (manifest written last, so a
/// reader never sees a half-built index); vectors are known by their row numbers.
pub fn build_index(
    store: &dyn ObjectStore,
    vectors: Matrix,
    attrs: Attributes,
    params: &BuildParams,
) -> Result<BuildReport> {
    build_index_with_ids(store, vectors, attrs, &Ids::Rows, params)
}

/// As [`build_index`], with the vectors' own ids (one per row, no duplicates).
pub fn build_index_with_ids(
    store: &dyn ObjectStore,
    mut vectors: Matrix,
    attrs: Attributes,
    ids: &Ids,
    params: &BuildParams,
) -> Result<BuildReport> {
    let n = vectors.rows;
    let dim = vectors.cols;
    if n == 0 || dim == 0 {
        return Err(BuildError::bad("vectors", "no vectors to index"));
    }
    ids.check(n, "ids")?;
    if !attrs.columns.is_empty() && attrs.rows() != n {
        return Err(BuildError::bad(
            "attributes",
            format!("attribute table has {} rows but there are {n} vectors", attrs.rows()),
        ));
    }
    if !(params.partition_energy > 0.0 && params.partition_energy <= 1.0) {
        return Err(BuildError::bad("partition_energy", "must be in (0, 1]"));
    }
    if params.list_vectors == 0 {
        return Err(BuildError::bad("list_vectors", "must be at least 1"));
    }
    if !(1.0..=MAX_BITS as f32).contains(&params.bits_per_dim) {
        return Err(BuildError::bad("bits_per_dim", "must be between 1 and 8"));
    }
    let metric = params.metric;
    // Validate and prepare (normalise for cosine) every vector; report the first bad row.
    vectors
        .data
        .par_chunks_mut(dim)
        .enumerate()
        .try_for_each(|(i, row)| prepare_vector(metric, row, dim, &format!("vectors[{i}]")))?;
    // Inner product: every vector gets the transformation's coordinate (`Metric::Ip`).
    let max_norm = match metric {
        Metric::Ip => {
            let m = ip_max_norm(&vectors, params.max_norm)?;
            vectors = augment(&vectors, m)?;
            Some(m)
        }
        _ => {
            if params.max_norm.is_some() {
                return Err(BuildError::bad("max_norm", "applies to the inner-product metric only"));
            }
            None
        }
    };
    let dim = vectors.cols;

    let p_count = params
        .partitions
        .unwrap_or_else(|| ((n as f64 / params.target_partition_vectors.max(1) as f64).round() as usize).max(1))
        .clamp(1, n);

    // Global KLT on a sample, truncated to the directions holding `partition_energy`.
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut sample_rows: Vec<usize> = sample(&mut rng, n, n.min(100_000)).into_vec();
    sample_rows.sort_unstable();
    let full = Klt::fit(sample_rows.iter().map(|&i| vectors.row(i)), dim, dim);
    let pd = full.dims_for_energy(params.partition_energy).max(dim.min(8));
    let global = full.truncated(pd);
    // Partitioning runs on the leading global KLT coordinates, held in bfloat16: at
    // 10M × 81 that is 1.6 GB instead of 3.2 GB next to the vectors themselves.
    let projected = Bf16Points::from_rows(vectors.data.par_chunks(dim).map(|row| global.transform(row)), pd);

    let bar = Progress::new(params.progress, "partitioning", (params.kmeans_iterations + 2) as u64);
    let part = balanced_kmeans(
        &projected,
        p_count,
        params.kmeans_iterations,
        params.seed ^ 0x5eed,
        &|| bar.inc(1),
    );
    bar.finish();
    drop(projected);

    // Shared attribute cells (a list attribute's element groups).
    let attr_cells: Vec<AttrCells> = attrs
        .columns
        .par_iter()
        .enumerate()
        .map(|(a, c)| match attrs.list(a) {
            Some(l) => AttrCells::build_list(&l.values),
            None => AttrCells::build(c),
        })
        .collect();

    let mut members: Vec<Vec<usize>> = vec![Vec::new(); p_count];
    for (i, &p) in part.assignment.iter().enumerate() {
        members[p as usize].push(i);
    }
    let bar = Progress::new(params.progress, "encoding partitions", p_count as u64);
    // Encoded segments are kept for the re-rank calibration while they fit
    // RETAIN_SEGMENT_BYTES; the rest are read back from the store when it runs (mapped,
    // for a local index), so a large build never holds its whole index in memory.
    let retained_bytes = AtomicU64::new(0);
    let count_widths = squash_core::summary::bucket_widths(&attrs.schema, &attr_cells);
    let input = PartitionInput {
        vectors: &vectors,
        attrs: &attrs,
        ids,
        attr_cells: &attr_cells,
        global: &global,
        metric,
        quantisation: params.quantisation(),
        count_widths: &count_widths,
    };
    let results: Vec<Result<(PartitionInfo, Written, u64)>> = members
        .par_iter()
        .enumerate()
        .map(|(pid, rows)| {
            let cluster =
                |rotated: &[f32], dim: usize, energies: &[f32]| fine_lists(rotated, dim, energies, pid as u32, params);
            let obj = encode_partition(pid as u32, rows, &input, ListsOf::Cluster(&cluster)).into_object()?;
            store.put(&obj.info.key, &obj.bytes)?;
            bar.inc(1);
            let PartitionObject {
                info,
                bytes,
                lists,
                rows,
                list_centroids,
                presence,
                code_counts,
            } = obj;
            let len = bytes.len() as u64;
            let keep = retained_bytes.fetch_add(len, AtomicOrdering::Relaxed) + len <= RETAIN_SEGMENT_BYTES;
            // Bytes encoded just above: structure checked, sections not re-hashed.
            let kept = if keep {
                Some(Segment::decode_verified(&info.key, bytes)?)
            } else {
                None
            };
            // Only what the manifest and the calibration need survives the partition.
            let written = Written {
                lists,
                rows,
                list_centroids,
                presence,
                code_counts,
                kept,
            };
            Ok((info, written, len))
        })
        .collect();
    bar.finish();
    let mut partitions = Vec::with_capacity(p_count);
    let mut list_centroids = Vec::new();
    let mut list_counts = Vec::new();
    let mut list_presence = Vec::new();
    let mut code_counts: Vec<Vec<u16>> = Vec::new();
    let mut bytes_written = 0u64;
    let mut row_list = vec![0u32; n];
    let mut segments: Vec<Option<Segment>> = Vec::with_capacity(p_count);
    let mut input_rows: Vec<Vec<u32>> = Vec::with_capacity(p_count);
    for r in results {
        let (info, written, bytes) = r?;
        let first = list_counts.len() as u32;
        for (l, w) in written.lists.windows(2).enumerate() {
            for &row in &written.rows[w[0] as usize..w[1] as usize] {
                row_list[row as usize] = first + l as u32;
            }
        }
        partitions.push(info);
        input_rows.push(written.rows);
        list_centroids.extend(written.list_centroids);
        list_counts.extend(written.lists.windows(2).map(|w| w[1] - w[0]));
        list_presence.extend(written.presence);
        code_counts.extend(written.code_counts);
        segments.push(written.kept);
        bytes_written += bytes;
    }
    // High-cardinality categorical attributes get a value index (their dictionary and
    // which lists hold each value), stored beside the manifest.
    let values: Vec<Option<std::sync::Arc<ValuePostings>>> = attrs
        .schema
        .attrs
        .iter()
        .enumerate()
        .map(|(a, spec)| {
            (spec.kind == AttrKind::Categorical && !spec.list && spec.dictionary.len() > MANY_VALUES).then(|| {
                std::sync::Arc::new(ValuePostings::from_rows(
                    spec.dictionary.len(),
                    &attrs.columns[a],
                    &row_list,
                ))
            })
        })
        .collect();
    let mut defaults = params.defaults.clone();
    defaults.calibration = None;
    if defaults.safety > 0.0 {
        defaults.safety_curve.clear();
        defaults.far_share.clear();
    }
    let mut samples = Vec::new();
    if params.calibrate && (defaults.nprobe == 0 || defaults.safety <= 0.0 || defaults.rerank_factor == 0) {
        let bar = Progress::new(params.progress, "calibrating", 1);
        let calibrated = calibrate(&CalibrationInput {
            vectors: &vectors,
            global: &global,
            list_centroids: &list_centroids,
            list_counts: &list_counts,
            row_list: &row_list,
            seed: params.seed,
            metric,
        });
        bar.finish();
        if let Some(c) = calibrated {
            if defaults.nprobe == 0 {
                defaults.nprobe = c.nprobe;
            }
            if defaults.safety <= 0.0 {
                defaults.safety = c.safety;
                defaults.safety_curve = c.safety_curve;
                defaults.far_share = c.far_share;
            }
            defaults.calibration = Some(c.report);
            samples = c.samples;
        }
    }
    drop(row_list);
    let calibrate_rerank_factor = defaults.rerank_factor == 0 && !samples.is_empty();
    if defaults.rerank_factor == 0 {
        defaults.rerank_factor = FALLBACK_RERANK_FACTOR;
    }
    if defaults.nprobe == 0 {
        defaults.nprobe = default_nprobe(list_counts.len());
    }
    if defaults.safety <= 0.0 {
        defaults.safety = FALLBACK_SAFETY;
    }
    let list_start = Manifest::list_starts(&partitions);
    let w = attrs.schema.len() * PRESENCE_WORDS;
    let list_code_counts = Some(ListCodeCounts::from_counts(count_widths, code_counts, |l| {
        &list_presence[l * w..(l + 1) * w]
    }));
    let mut manifest = Manifest {
        meta: ManifestMeta {
            dim: (dim - usize::from(max_norm.is_some())) as u32,
            metric,
            max_norm,
            count: n as u64,
            ids: ids.kind(),
            version: 0,
            committed_at: 0,
            partition_dims: pd as u32,
            bits_per_dim: params.bits_per_dim,
            seed: params.seed,
            schema: schema_with_stats(&attrs),
            defaults,
            partitions,
            created_by: format!("squash {}", env!("CARGO_PKG_VERSION")),
        },
        global,
        attr_cells,
        list_start,
        list_centroids,
        list_counts,
        list_presence,
        list_code_counts,
        values,
    };
    if calibrate_rerank_factor {
        let bar = Progress::new(params.progress, "calibrating re-rank", 1);
        let segments = read_back(store, &manifest.meta.partitions, segments)?;
        let refs: Vec<&Segment> = segments.iter().collect();
        if let Some((factor, recall)) = calibrate_rerank(&manifest, &refs, &input_rows, &vectors, &samples) {
            let d = &mut manifest.meta.defaults;
            d.rerank_factor = factor;
            if let Some(c) = d.calibration.as_mut() {
                c.rerank_recall = Some(recall);
            }
        }
        bar.finish();
    } else {
        drop(segments);
    }
    for (key, bytes) in manifest.value_objects(None) {
        store.put(&key, &bytes)?;
        bytes_written += bytes.len() as u64;
    }
    let bytes = manifest.encode();
    store.put(MANIFEST_KEY, &bytes)?;
    bytes_written += bytes.len() as u64;
    Ok(BuildReport {
        manifest,
        bytes_written,
    })
}

/// Encoded segments a build keeps in memory for the re-rank calibration; beyond this
/// they are read back from the store.
const RETAIN_SEGMENT_BYTES: u64 = 1 << 30;

/// The segments of `partitions`: those kept (`kept[i]`), the others read from `store`.
fn read_back(
    store: &dyn ObjectStore,
    partitions: &[PartitionInfo],
    kept: Vec<Option<Segment>>,
) -> Result<Vec<Segment>> {
    let missing: Vec<&str> = partitions
        .iter()
        .zip(&kept)
        .filter(|(_, k)| k.is_none())
        .map(|(p, _)| p.key.as_str())
        .collect();
    let mut fetched = store.get_many_shared(&missing).into_iter();
    let mut out = Vec::with_capacity(kept.len());
    for (p, k) in partitions.iter().zip(kept) {
        match k {
            Some(seg) => out.push(seg),
            None => {
                let blob = fetched
                    .next()
                    .ok_or_else(|| BuildError::bad("segments", "a segment was not read back"))??;
                // Bytes this build wrote moments ago: structure checked, not re-hashed
                // (hashing would read every page of a mapped 10M-vector index).
                out.push(Segment::decode_verified(&p.key, blob.bytes)?);
            }
        }
    }
    Ok(out)
}

/// Default number of fine lists probed: 8 % of them, at least one.
pub fn default_nprobe(lists: usize) -> u32 {
    ((lists as f64 * 0.08).ceil() as u32).max(1)
}

/// What the rest of the build needs of a partition once its segment is written: its
/// list offsets and ids, the lists' centroids and presence bitmaps, and the segment
/// itself when kept for the re-rank calibration.
struct Written {
    lists: Vec<u32>,
    rows: Vec<u32>,
    list_centroids: Vec<f32>,
    presence: Vec<u64>,
    code_counts: Vec<Vec<u16>>,
    kept: Option<Segment>,
}

/// Splits a partition's rows into balanced fine lists by k-means on the leading
/// coordinates of the partition's own KLT (`rotated`, `n × dim`); returns each row's list.
pub(crate) fn fine_lists(
    rotated: &[f32],
    dim: usize,
    energies: &[f32],
    pid: u32,
    params: &BuildParams,
) -> (usize, Vec<u32>) {
    let n = rotated.len() / dim.max(1);
    let lists = ((n as f64 / params.list_vectors as f64).round() as usize).clamp(1, n.max(1));
    if lists == 1 || n == 0 {
        return (1, vec![0; n]);
    }
    // The leading directions holding 90 % of the partition's variance (at most 64).
    let total: f64 = energies.iter().map(|&e| e.max(0.0) as f64).sum();
    let mut acc = 0.0;
    let mut m = dim;
    for (j, &e) in energies.iter().enumerate() {
        acc += e.max(0.0) as f64;
        if acc >= 0.9 * total {
            m = j + 1;
            break;
        }
    }
    let m = m.clamp(dim.min(8), 64.min(dim));
    let lead: Vec<f32> = rotated.chunks_exact(dim).flat_map(|r| r[..m].iter().copied()).collect();
    let part = balanced_kmeans(
        &F32Points { data: &lead, d: m },
        lists,
        params.kmeans_iterations,
        params.seed ^ (u64::from(pid) << 20),
        &|| {},
    );
    (lists, part.assignment)
}

/// The inner-product transformation's `M` for `vectors` (prepared): `given` when it holds
/// every vector's norm, else the largest norm (an error when `given` is too small).
/// The schema of `attrs` with each list attribute's element statistics (for the
/// planner's selectivity estimates).
fn schema_with_stats(attrs: &Attributes) -> squash_core::attrs::Schema {
    let mut schema = attrs.schema.clone();
    for (a, spec) in schema.attrs.iter_mut().enumerate() {
        if let Some(l) = attrs.list(a) {
            spec.list = true;
            spec.elements = Some(squash_core::attrs::ElementStats::build(&attrs.columns[a], l));
        }
    }
    schema
}

fn ip_max_norm(vectors: &Matrix, given: Option<f32>) -> Result<f32> {
    let largest = squash_core::distance::max_norm(&vectors.data, vectors.cols);
    match given {
        Some(m) if !(m.is_finite() && m > 0.0) => Err(BuildError::bad("max_norm", "must be a positive number")),
        Some(m) if m < largest => {
            let row = vectors
                .data
                .chunks_exact(vectors.cols)
                .position(|r| squash_core::distance::norm(r) > m)
                .unwrap_or(0);
            Err(BuildError::bad(
                "max_norm",
                format!("{m} is below the norm of vectors[{row}] ({largest} is the largest)"),
            ))
        }
        Some(m) => Ok(m),
        None if largest > 0.0 => Ok(largest),
        None => Err(BuildError::bad(
            "vectors",
            "every vector is zero: inner product has nothing to rank",
        )),
    }
}

/// `vectors` with the inner-product transformation's coordinate appended to each row.
fn augment(vectors: &Matrix, max_norm: f32) -> Result<Matrix> {
    let dim = vectors.cols;
    let mut data = Vec::with_capacity(vectors.rows * (dim + 1));
    for (i, row) in vectors.data.chunks_exact(dim).enumerate() {
        let mut v = row.to_vec();
        squash_core::distance::prepare_stored(Metric::Ip, &mut v, dim, max_norm, &format!("vectors[{i}]"))?;
        data.extend_from_slice(&v);
    }
    Ok(Matrix {
        rows: vectors.rows,
        cols: dim + 1,
        data,
    })
}
