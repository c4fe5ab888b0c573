//! # squash-api
//!
//! The request and response types shared by the HTTP front, worker invocations and the
//! CLI (API version `v1`, documented in `docs/API.md`). Public requests are JSON with
//! unknown fields rejected; internal worker payloads may also travel as bincode
//! ([`encode_wire`] / [`decode_wire`]), which is never written to disk.

#![warn(missing_docs)]

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use squash_core::filter::Expr;
use thiserror::Error;

/// API version served by this build.
pub const API_VERSION: &str = "v1";
/// Largest `k` a search accepts.
pub const MAX_K: usize = 1000;
/// Default `k`.
pub const DEFAULT_K: usize = 10;

fn default_k() -> usize {
    DEFAULT_K
}

/// Optional recall/speed knobs of one search; unset knobs take the index defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Fewest partitions searched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nprobe: Option<u32>,
    /// Exact re-rank budget per partition, as a multiple of k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerank_factor: Option<u32>,
    /// Fraction of candidates kept by the Hamming prune, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hamming_keep: Option<f32>,
    /// Filter sufficiency multiple of k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<f32>,
}

/// `POST /v1/indexes/{index}/search` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query vector.
    pub vector: Vec<f32>,
    /// Number of neighbours wanted (1..=1000, default 10).
    #[serde(default = "default_k")]
    pub k: usize,
    /// Optional filter in the JSON predicate language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
    /// Extra fields per hit; `"attributes"` adds the attribute values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Recall knobs.
    #[serde(default)]
    pub params: SearchParams,
}

/// One result of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Vector id (row number in the build input).
    pub id: u64,
    /// Distance in the index metric (squared L2, or 1 − cosine similarity).
    pub distance: f32,
    /// Attribute values by name, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Candidate counts through the stages of the partition pipeline (summed over partitions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageCounts {
    /// Vectors in the searched partitions.
    pub scanned: u64,
    /// Vectors that pass the filter (all of them without a filter).
    pub filtered: u64,
    /// Vectors kept by the Hamming prune.
    pub hamming: u64,
    /// Vectors whose ADC lower bound was computed.
    pub bounded: u64,
    /// Vectors whose exact distance was computed.
    pub reranked: u64,
}

impl StageCounts {
    /// Adds another set of counts.
    pub fn add(&mut self, o: &StageCounts) {
        self.scanned += o.scanned;
        self.filtered += o.filtered;
        self.hamming += o.hamming;
        self.bounded += o.bounded;
        self.reranked += o.reranked;
    }
}

/// Per-query statistics returned with every response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryStats {
    /// Partitions in the index.
    pub partitions_total: u32,
    /// Partitions searched.
    pub partitions_searched: u32,
    /// Planner's estimate of matching vectors in the searched partitions.
    pub estimated_matches: f64,
    /// Candidate counts per stage.
    pub candidates: StageCounts,
    /// Segments served from the in-memory cache.
    pub cache_hits: u32,
    /// Segments loaded from the object store.
    pub cache_misses: u32,
    /// Bytes read from the object store.
    pub bytes_fetched: u64,
    /// Worker invocations made.
    pub invocations: u32,
    /// Microseconds spent planning.
    pub plan_us: u64,
    /// Microseconds spent in workers (wall clock of the fan-out).
    pub search_us: u64,
    /// True when some partitions failed and the answer covers only the rest.
    pub partial: bool,
    /// Partitions that failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_partitions: Vec<u32>,
}

/// Response of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// Results, nearest first.
    pub hits: Vec<SearchHit>,
    /// What the search did.
    pub stats: QueryStats,
}

/// A segment a worker must search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRef {
    /// Partition id.
    pub partition: u32,
    /// Object key (immutable, content-hashed).
    pub key: String,
    /// Expected size in bytes.
    pub bytes: u64,
    /// Expected xxh3-64 of the object (16 hex digits).
    pub checksum: String,
}

/// What a coordinator sends a worker: one query, its filter and the segments to search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRequest {
    /// Index the segments belong to (for caches and messages).
    pub index: String,
    /// Prepared query vector (normalised for cosine).
    pub query: Vec<f32>,
    /// Results wanted.
    pub k: u32,
    /// Parsed filter.
    pub filter: Option<Expr>,
    /// Segments to search.
    pub segments: Vec<SegmentRef>,
    /// Exact re-rank budget per partition, as a multiple of k.
    pub rerank_factor: u32,
    /// Fraction kept by the Hamming prune.
    pub hamming_keep: f32,
    /// Return attribute values with each hit.
    pub with_attributes: bool,
}

/// One hit as a worker returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerHit {
    /// Vector id.
    pub id: u64,
    /// Distance in the index metric.
    pub distance: f32,
    /// Attribute values in schema order (`NaN` = missing) when asked for.
    pub attrs: Vec<f64>,
}

/// How one partition went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionOutcome {
    /// Partition id.
    pub partition: u32,
    /// Error message when the partition could not be searched.
    pub error: Option<String>,
    /// Candidate counts.
    pub counts: StageCounts,
    /// Served from the cache.
    pub cache_hit: bool,
    /// Bytes fetched from the store.
    pub bytes_fetched: u64,
}

/// What a worker answers: its merged top-k and the outcome of each partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerResponse {
    /// Best hits over the worker's partitions, nearest first.
    pub hits: Vec<WorkerHit>,
    /// One outcome per requested segment.
    pub outcomes: Vec<PartitionOutcome>,
}

/// Errors of the wire codec.
#[derive(Debug, Error)]
#[error("wire payload error: {0}")]
pub struct WireError(String);

/// Encodes an internal payload with bincode 2 (standard config).
pub fn encode_wire<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| WireError(e.to_string()))
}

/// Decodes an internal payload written by [`encode_wire`]; trailing bytes are an error.
pub fn decode_wire<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, bincode::config::standard().with_limit::<{ 64 << 20 }>())
            .map_err(|e| WireError(e.to_string()))?;
    if used != bytes.len() {
        return Err(WireError(format!("{} trailing bytes", bytes.len() - used)));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use squash_core::filter::Pred;

    #[test]
    fn search_request_defaults_and_rejects_unknown_fields() {
        let r: SearchRequest = serde_json::from_str(r#"{"vector":[1,2]}"#).unwrap();
        assert_eq!(r.k, DEFAULT_K);
        assert!(serde_json::from_str::<SearchRequest>(r#"{"vector":[1],"kk":3}"#).is_err());
        assert!(serde_json::from_str::<SearchRequest>(r#"{"k":3}"#).is_err());
    }

    #[test]
    fn worker_request_round_trips_on_the_wire() {
        let req = WorkerRequest {
            index: "glove".into(),
            query: vec![0.5; 50],
            k: 1000,
            filter: Some(Expr::Leaf {
                attr: 2,
                pred: Pred::In(vec![1.0, 2.0]),
            }),
            segments: vec![SegmentRef {
                partition: 3,
                key: "segments/p3".into(),
                bytes: 10,
                checksum: "00".into(),
            }],
            rerank_factor: 10,
            hamming_keep: 0.5,
            with_attributes: true,
        };
        let bytes = encode_wire(&req).unwrap();
        assert_eq!(decode_wire::<WorkerRequest>(&bytes).unwrap(), req);
        assert!(decode_wire::<WorkerRequest>(&bytes[..bytes.len() - 1]).is_err());
        let json = serde_json::to_vec(&req).unwrap();
        assert!(
            json.len() < 64 * 1024,
            "a worker request stays far below the 6 MB invoke limit"
        );
    }
}
