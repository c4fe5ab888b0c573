//! # squash-api
//!
//! The request and response types shared by the HTTP front, worker invocations and the
//! CLI (API version `v1`, documented in `docs/API.md`). Public requests are JSON with
//! unknown fields rejected; internal worker payloads may also travel as bincode
//! ([`encode_wire`] / [`decode_wire`]), which is never written to disk.

#![warn(missing_docs)]

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use thiserror::Error;

/// API version served by this build.
pub const API_VERSION: &str = "v1";
/// Largest `k` a search accepts.
pub const MAX_K: usize = 10_000;
/// Most bytes of hits one response carries (JSON, under Lambda's 6 MB response limit
/// with room for the stats): a longer answer is cut there and says where the rest
/// starts (`next_offset`); a batch shares it between its queries.
pub const MAX_RESPONSE_HIT_BYTES: usize = 5 * 1024 * 1024;
/// Default `k`.
pub const DEFAULT_K: usize = 10;
/// Most queries in one batch.
pub const MAX_BATCH: usize = 100;
/// Most hits one batch may ask for (the sum of its queries' `k`): keeps every answer of
/// a batch, and every worker's, far below Lambda's 6 MB invoke limit.
pub const MAX_BATCH_HITS: usize = 10_000;

/// Where a search runs: in the coordinator's own process, or fanned out to workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanChoice {
    /// The coordinator searches the chosen segments itself, from its own cache.
    Local,
    /// The coordinator invokes workers, in a tree.
    Fanout,
}

impl PlanChoice {
    /// `"local"` or `"fanout"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PlanChoice::Local => "local",
            PlanChoice::Fanout => "fanout",
        }
    }
}

fn default_k() -> usize {
    DEFAULT_K
}

/// A vector's id as users give and get it: an unsigned integer or a string (one kind per
/// index). JSON: a number or a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum Id {
    /// An unsigned integer id (a row number of the build input when none were given).
    Num(u64),
    /// A string id (1 to 256 bytes).
    Str(String),
}

impl Id {
    /// The integer, for an integer id.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Id::Num(n) => Some(*n),
            Id::Str(_) => None,
        }
    }

    /// The string, for a string id.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Id::Num(_) => None,
            Id::Str(s) => Some(s),
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Id, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an unsigned integer or a string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id::Num(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Id, E> {
                u64::try_from(v)
                    .map(Id::Num)
                    .map_err(|_| E::custom(format!("{v} is negative; ids are unsigned integers or strings")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Id, E> {
                Err(E::custom(format!(
                    "{v} is not an integer; ids are unsigned integers or strings"
                )))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id::Str(v.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Id, E> {
                Ok(Id::Str(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl From<u64> for Id {
    fn from(n: u64) -> Id {
        Id::Num(n)
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Id {
        Id::Str(s.to_string())
    }
}

impl PartialEq<u64> for Id {
    fn eq(&self, other: &u64) -> bool {
        self.as_u64() == Some(*other)
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Num(n) => write!(f, "{n}"),
            Id::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// How fresh a search's view of the index must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// The coordinator's copy of the manifest, re-read when older than
    /// `SQUASH_MANIFEST_TTL` (default 1 s): a write shows within that time.
    #[default]
    Eventual,
    /// The manifest is re-read before the search: every write that returned is seen.
    Strong,
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
    /// Force the plan (`"local"` or `"fanout"`); by default the coordinator chooses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanChoice>,
}

/// `POST /v1/indexes/{index}/search` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query vector.
    pub vector: Vec<f32>,
    /// Number of neighbours wanted (1..=10000, default 10).
    #[serde(default = "default_k")]
    pub k: usize,
    /// Skip the first `offset` hits of the top `k` (0..k): the next page of an answer
    /// cut to fit one response (see `next_offset`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: usize,
    /// Optional filter in the JSON predicate language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
    /// Extra fields per hit; `"attributes"` adds the attribute values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Recall knobs.
    #[serde(default)]
    pub params: SearchParams,
    /// Answer from the partitions that could be searched when some could not (the
    /// response then says `"partial": true` and lists them); by default such a query fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_partial: bool,
    /// `"strong"`: see every write that has returned; by default (`"eventual"`) a write
    /// shows within `SQUASH_MANIFEST_TTL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
}

/// Most vectors one upsert call carries.
pub const MAX_UPSERT_VECTORS: usize = 1_000;
/// Most ids one delete call names.
pub const MAX_DELETE_IDS: usize = 10_000;

/// `POST /v1/indexes/{index}/upsert` body: vectors to insert (new ids) or replace
/// (existing ids), at most [`MAX_UPSERT_VECTORS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsertRequest {
    /// The vectors, each with its id and attributes.
    pub vectors: Vec<UpsertVector>,
}

/// One vector of an upsert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpsertVector {
    /// Its id: an unsigned integer or a string, as the index's ids are.
    pub id: Id,
    /// The vector.
    pub vector: Vec<f32>,
    /// Attribute values by name (numbers, strings or null); absent ones are missing.
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// `POST /v1/indexes/{index}/delete` body: ids (at most [`MAX_DELETE_IDS`]) or a filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    /// Ids to delete (ids the index does not hold are counted as missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<Id>>,
    /// Delete every vector matching this filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<serde_json::Value>,
}

/// Parses a JSON object body into `T`, naming the field at fault.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(RequestError {
            field: "body".into(),
            message: "is not a JSON object".into(),
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let req: T =
        serde_path_to_error::deserialize(&mut *de).map_err(|e| RequestError::from_path(e.path(), e.inner()))?;
    de.end().map_err(|e| RequestError {
        field: "body".into(),
        message: e.to_string(),
    })?;
    Ok(req)
}

/// Parses a JSON value (a raw invoke's part) into `T`, naming the field at fault.
pub fn parse_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, RequestError> {
    if !value.is_object() {
        return Err(RequestError {
            field: "body".into(),
            message: "is not a JSON object".into(),
        });
    }
    serde_path_to_error::deserialize(value).map_err(|e| RequestError::from_path(e.path(), e.inner()))
}

/// A request that could not be parsed: the field at fault (`k`, `params.nprobe`,
/// `vector[3]`, a missing or unknown field's name, or `body` when the JSON itself is
/// malformed) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid '{field}': {message}")]
pub struct RequestError {
    /// Path of the offending field.
    pub field: String,
    /// What is wrong, in serde's words.
    pub message: String,
}

impl RequestError {
    fn from_path(path: &serde_path_to_error::Path, inner: &serde_json::Error) -> RequestError {
        use serde_json::error::Category;
        let message = inner.to_string();
        let at = path.to_string();
        // "." is the root; "?" a map key not read yet (e.g. `{not json`).
        let at = if at == "." || at.contains('?') {
            String::new()
        } else {
            at
        };
        // A cut-off body is the body's fault; a syntax error (or a number out of range,
        // 1e999: JSON has no NaN or infinity) is the field's where there is one.
        if matches!(inner.classify(), Category::Eof | Category::Io)
            || (inner.classify() == Category::Syntax && at.is_empty())
        {
            return RequestError {
                field: "body".into(),
                message,
            };
        }
        // "missing field `vector`" / "unknown field `kk`, expected ...": name that field.
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|p| message.strip_prefix(p))
            .and_then(|rest| rest.split('`').next())
            .filter(|name| !name.is_empty());
        let field = match (named, at.is_empty()) {
            (Some(name), true) => name.to_string(),
            (Some(name), false) if !at.ends_with(name) => format!("{at}.{name}"),
            (_, false) => at,
            (None, true) => "body".to_string(),
        };
        RequestError { field, message }
    }
}

fn not_an_object() -> RequestError {
    RequestError {
        field: "body".into(),
        message: "a search request is a JSON object, e.g. {\"vector\": [...], \"k\": 10}".into(),
    }
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl SearchRequest {
    /// Parses a JSON search request body; the error names the field at fault.
    pub fn from_json(body: &[u8]) -> Result<SearchRequest, RequestError> {
        // serde would also take a struct as a positional array: only objects are requests.
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(not_an_object());
        }
        let de = &mut serde_json::Deserializer::from_slice(body);
        let req: SearchRequest =
            serde_path_to_error::deserialize(&mut *de).map_err(|e| RequestError::from_path(e.path(), e.inner()))?;
        de.end().map_err(|e| RequestError {
            field: "body".into(),
            message: e.to_string(),
        })?;
        req.check_finite()
    }

    /// Numbers beyond f32's range parse as infinities: refuse them here, by field.
    fn check_finite(self) -> Result<SearchRequest, RequestError> {
        let bad = |field: String| RequestError {
            field,
            message: "is not a finite 32-bit number".into(),
        };
        if let Some(i) = self.vector.iter().position(|x| !x.is_finite()) {
            return Err(bad(format!("vector[{i}]")));
        }
        for (name, v) in [
            ("hamming_keep", self.params.hamming_keep),
            ("safety", self.params.safety),
        ] {
            if v.is_some_and(|x| !x.is_finite()) {
                return Err(bad(format!("params.{name}")));
            }
        }
        Ok(self)
    }

    /// Parses a search request already read as JSON (a raw invoke's `"search"`).
    pub fn from_value(value: serde_json::Value) -> Result<SearchRequest, RequestError> {
        if !value.is_object() {
            return Err(not_an_object());
        }
        let req: SearchRequest =
            serde_path_to_error::deserialize(value).map_err(|e| RequestError::from_path(e.path(), e.inner()))?;
        req.check_finite()
    }
}

/// One result of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Vector id: the user's own, or the row number in the build input.
    pub id: Id,
    /// Distance in the index metric: squared L2, 1 − cosine similarity, or for inner
    /// product −(q · x) (nearest first in every metric).
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
    /// Fine lists in the index.
    #[serde(default)]
    pub lists_total: u32,
    /// Fine lists searched.
    #[serde(default)]
    pub lists_searched: u32,
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
    /// Object-store GETs made for this query (manifest and segments; retries not counted).
    #[serde(default)]
    pub gets: u64,
    /// Worker invocations made (every node of the fan-out tree).
    pub invocations: u32,
    /// True when the coordinator's container served its first request with this query.
    #[serde(default)]
    pub cold: bool,
    /// Worker containers that were cold (first request) for this query.
    #[serde(default)]
    pub cold_workers: u32,
    /// Microseconds the workers spent getting segments (store or cache), summed over partitions.
    #[serde(default)]
    pub fetch_us: u64,
    /// Microseconds the workers spent searching segments, summed over partitions.
    #[serde(default)]
    pub scan_us: u64,
    /// Microseconds spent planning.
    pub plan_us: u64,
    /// Microseconds spent in workers (wall clock of the fan-out).
    pub search_us: u64,
    /// True when some partitions failed and the answer covers only the rest.
    pub partial: bool,
    /// Partitions that failed the first round and were tried once more.
    #[serde(default)]
    pub retried_partitions: u32,
    /// Partitions that still failed after the retry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_partitions: Vec<u32>,
    /// `"local"` (the coordinator searched by itself) or `"fanout"` (workers did).
    #[serde(default)]
    pub plan: String,
    /// Why the coordinator chose that plan.
    #[serde(default)]
    pub plan_reason: String,
    /// Queries answered together with this one (1 for a single search; a query of a
    /// batch shares the batch's invocations, time and cost).
    #[serde(default)]
    pub batch: u32,
    /// Milliseconds AWS would bill for this query: every invocation's duration rounded
    /// up to a whole millisecond, init included for cold containers (a batch's share).
    #[serde(default)]
    pub billed_ms: f64,
    /// The cost model's estimate of what this query cost on AWS, in US dollars: its
    /// invocations, billed milliseconds at each function's memory, GETs, log bytes and
    /// the route's request fee (a batch's share; docs/BENCHMARKS.md has the formulas).
    #[serde(default)]
    pub cost_usd: f64,
}

/// Response of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// Results, nearest first.
    pub hits: Vec<SearchHit>,
    /// True when some partitions could not be searched (only with `allow_partial`): the
    /// hits are the exact answer over the other partitions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// The partitions that could not be searched, when `partial`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_partitions: Vec<u32>,
    /// Set when the hits were cut to fit one response ([`MAX_RESPONSE_HIT_BYTES`]): the
    /// same request with `"offset"` set to this returns the rest (the index version
    /// must not change between the calls for the pages to join exactly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
    /// What the search did.
    pub stats: QueryStats,
}

/// `POST /v1/indexes/{index}/search/batch` body: up to [`MAX_BATCH`] search requests,
/// answered in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The searches, each as `POST .../search` takes it.
    pub queries: Vec<SearchRequest>,
}

impl BatchRequest {
    /// Parses a JSON batch body; the error names the field at fault (`queries[3].k`).
    pub fn from_json(body: &[u8]) -> Result<BatchRequest, RequestError> {
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(RequestError {
                field: "body".into(),
                message: "a batch is a JSON object, e.g. {\"queries\": [{\"vector\": [...]}]}".into(),
            });
        }
        let de = &mut serde_json::Deserializer::from_slice(body);
        let req: BatchRequest =
            serde_path_to_error::deserialize(&mut *de).map_err(|e| RequestError::from_path(e.path(), e.inner()))?;
        de.end().map_err(|e| RequestError {
            field: "body".into(),
            message: e.to_string(),
        })?;
        req.check_finite()
    }

    /// Parses a batch already read as JSON (a raw invoke's `"batch"`: the list of queries).
    pub fn from_queries(value: serde_json::Value) -> Result<BatchRequest, RequestError> {
        if !value.is_array() {
            return Err(RequestError {
                field: "batch".into(),
                message: "is a list of search requests".into(),
            });
        }
        let queries: Vec<SearchRequest> = serde_path_to_error::deserialize(value).map_err(|e| {
            let mut err = RequestError::from_path(e.path(), e.inner());
            err.field = if err.field == "body" {
                "batch".into()
            } else {
                format!("queries{}", err.field)
            };
            err
        })?;
        BatchRequest { queries }.check_finite()
    }

    fn check_finite(self) -> Result<BatchRequest, RequestError> {
        let mut queries = Vec::with_capacity(self.queries.len());
        for (i, q) in self.queries.into_iter().enumerate() {
            queries.push(q.check_finite().map_err(|mut e| {
                e.field = format!("queries[{i}].{}", e.field);
                e
            })?);
        }
        Ok(BatchRequest { queries })
    }
}

/// What a whole batch did, beside each query's own stats.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchStats {
    /// Queries in the batch.
    pub queries: u32,
    /// `"local"` or `"fanout"`: one plan for the whole batch.
    pub plan: String,
    /// Why.
    pub plan_reason: String,
    /// Worker invocations made for the whole batch (each worker at most once, plus
    /// retries).
    pub invocations: u32,
    /// Segments fetched or read from cache, each once for every query that needed it.
    pub segments: u32,
    /// Object-store GETs.
    pub gets: u64,
    /// Bytes read from the object store.
    pub bytes_fetched: u64,
    /// Microseconds planning every query.
    pub plan_us: u64,
    /// Microseconds of the search (wall clock).
    pub search_us: u64,
    /// Milliseconds AWS would bill for the batch (every invocation rounded up).
    pub billed_ms: f64,
    /// The cost model's estimate for the whole batch, US dollars.
    pub cost_usd: f64,
}

/// Response of a batch: one search response per query, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchResponse {
    /// Answers, in the order of the queries.
    pub results: Vec<SearchResponse>,
    /// What the batch did.
    pub stats: BatchStats,
}

pub mod wire;
pub mod worker;

pub use wire::{decode_wire, encode_wire, WireError, WireReply, WorkerPayload, MAX_REPLY_BYTES};
pub use worker::{
    ObjectRef, PartitionOutcome, QueryAnswer, QueryPart, SegmentRef, TreeNode, WorkerHit, WorkerQuery, WorkerRequest,
    WorkerResponse,
};

#[cfg(test)]
mod tests {
    use super::*;
    use squash_core::filter::{Expr, Pred};

    /// A filter of 50 `$in` leaves of 20 values each, over 8 attributes: a large request.
    fn wide_filter() -> Expr {
        Expr::Or(
            (0..50)
                .map(|i| Expr::Leaf {
                    attr: i % 8,
                    pred: Pred::In((0..20).map(f64::from).collect()),
                })
                .collect(),
        )
    }

    /// `n` hits with the largest ids and 8 attributes each: a large answer.
    fn big_hits(n: u64) -> Vec<WorkerHit> {
        (0..n)
            .map(|i| WorkerHit {
                id: u64::MAX - i,
                name: None,
                distance: 1.0 / (i as f32 + 3.0),
                attrs: vec![f64::MAX / 3.0; 8],
                elements: Vec::new(),
            })
            .collect()
    }

    /// 100 outcomes with the largest counters, each with `error`.
    fn big_outcomes(error: Option<String>) -> Vec<PartitionOutcome> {
        (0..100)
            .map(|p| PartitionOutcome {
                partition: p,
                error: error.clone(),
                counts: StageCounts::default(),
                cache_hit: false,
                bytes_fetched: u64::MAX,
                fetch_us: u64::MAX,
                scan_us: u64::MAX,
                gets: u64::MAX,
            })
            .collect()
    }

    /// A worker answer too large for one Lambda reply (10,000 hits with 100-element
    /// lists as attributes) is refused with a message saying what to ask instead; the
    /// same hits with 4-element lists fit.
    #[test]
    fn a_worker_reply_over_the_limit_is_refused_clearly() {
        let reply = |elements: usize| WorkerResponse {
            answers: vec![QueryAnswer {
                slot: 0,
                hits: (0..MAX_BATCH_HITS as u64)
                    .map(|i| WorkerHit {
                        id: i,
                        name: None,
                        distance: i as f32,
                        attrs: vec![elements as f64, 0.5],
                        elements: vec![(0..elements).map(|e| e as f64 + 0.123_456_789).collect()],
                    })
                    .collect(),
                outcomes: Vec::new(),
            }],
            invocations: 0,
            cold_workers: 0,
            billed_ms: 0,
        };
        let fits = WireReply::within_limit(&reply(4)).expect("small lists fit");
        assert!(fits.wire.len() <= MAX_REPLY_BYTES);
        let e = WireReply::within_limit(&reply(100)).unwrap_err().to_string();
        assert!(e.contains("6 MB") && e.contains("k") && e.contains("attributes"), "{e}");
    }

    #[test]
    fn request_errors_name_the_field() {
        let cases = [
            (r#"{"vector": [1, 2"#, "body"),
            (r#"{not json"#, "body"),
            (r#"{"": 1}"#, "body"),
            (r#"{"""#, "body"),
            (r#"{"vector": [1]} trailing"#, "body"),
            (r#"[1, 2]"#, "body"),
            (r#"[[1, 2], 3]"#, "body"),
            ("", "body"),
            (r#"{"k": 3}"#, "vector"),
            (r#"{"vector": [1], "kk": 3}"#, "kk"),
            (r#"{"vector": [1, "x"]}"#, "vector[1]"),
            (r#"{"vector": [1], "k": -1}"#, "k"),
            (r#"{"vector": [1], "k": "ten"}"#, "k"),
            (r#"{"vector": [1], "params": {"nprobe": 1.5}}"#, "params.nprobe"),
            (r#"{"vector": [1], "params": {"nprob": 1}}"#, "params.nprob"),
            (r#"{"vector": [1], "include": "attributes"}"#, "include"),
            (r#"{"vector": [1], "allow_partial": "yes"}"#, "allow_partial"),
            (r#"{"vector": [1e999]}"#, "vector[0]"),
            (r#"{"vector": [1, -1e300]}"#, "vector[1]"),
            (r#"{"vector": [1], "params": {"safety": 1e39}}"#, "params.safety"),
        ];
        for (body, field) in cases {
            let e = SearchRequest::from_json(body.as_bytes()).expect_err(body);
            assert_eq!(e.field, field, "{body}: {e}");
            let v: Result<serde_json::Value, _> = serde_json::from_str(body);
            if let Ok(v) = v {
                if field != "body" {
                    assert_eq!(
                        SearchRequest::from_value(v).expect_err(body).field,
                        field,
                        "{body} as a value"
                    );
                }
            }
        }
        assert_eq!(SearchRequest::from_json(br#"{"vector": [1, 2]}"#).unwrap().k, DEFAULT_K);
    }

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
            queries: vec![WorkerQuery {
                slot: 0,
                query: vec![0.5; 50],
                k: 1000,
                filter: Some(Expr::Leaf {
                    attr: 2,
                    pred: Pred::In(vec![1.0, 2.0]),
                }),
                rerank_factor: 10,
                hamming_keep: 0.5,
                with_attributes: true,
                parts: vec![QueryPart {
                    partition: 3,
                    lists: Vec::new(),
                }],
            }],
            segments: vec![SegmentRef {
                partition: 3,
                key: "segments/p3".into(),
                bytes: 10,
                checksum: "00".into(),
                lists: Vec::new(),
                head: 0,
                deletes: None,
            }],
            worker: 0,
            children: vec![],
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

    /// Synchronous Lambda invokes carry at most 6 MB each way: a k = 1000 request to a
    /// tree root with 84 nodes below it, and a k = 1000 answer with 8 attributes per hit,
    /// must stay far below that in the form they travel (JSON with base64 bincode).
    #[test]
    fn payloads_at_k_1000_stay_far_below_the_invoke_limit() {
        const LIMIT: usize = 6 * 1024 * 1024;
        let seg = |p: u32| SegmentRef {
            partition: p,
            key: format!("segments/p{p:05}-0123456789abcdef0123456789abcdef.sqs"),
            bytes: 12_345_678,
            checksum: "0123456789abcdef".into(),
            lists: Vec::new(),
            head: 0,
            deletes: None,
        };
        let leaf = |w: u32| TreeNode {
            worker: w,
            segments: (0..4).map(|i| seg(w * 4 + i)).collect(),
            children: vec![],
        };
        let mid = |w: u32| TreeNode {
            worker: w,
            segments: vec![seg(1000 + w)],
            children: (0..4).map(|i| leaf(w * 4 + i)).collect(),
        };
        let req = WorkerRequest {
            index: "an-index-with-a-long-name-0123456789".into(),
            worker: 0,
            queries: vec![WorkerQuery {
                slot: 0,
                query: vec![-0.123_456_79; 1536],
                k: 1000,
                filter: Some(wide_filter()),
                rerank_factor: 10,
                hamming_keep: 0.5,
                with_attributes: true,
                parts: (0..100)
                    .map(|p| QueryPart {
                        partition: p,
                        lists: Vec::new(),
                    })
                    .collect(),
            }],
            segments: vec![seg(0)],
            children: (0..4)
                .map(|i| TreeNode {
                    worker: i,
                    segments: vec![seg(2000 + i)],
                    children: (0..4).map(|j| mid(i * 4 + j)).collect(),
                })
                .collect(),
        };
        assert_eq!(req.children.iter().map(TreeNode::node_count).sum::<usize>(), 84);
        let sent = serde_json::to_vec(&WorkerPayload::wire(&req).unwrap()).unwrap();
        assert!(sent.len() < LIMIT / 20, "request payload is {} bytes", sent.len());
        let back: WorkerPayload = serde_json::from_slice(&sent).unwrap();
        assert_eq!(back.into_request().unwrap(), req);

        let resp = WorkerResponse {
            answers: vec![QueryAnswer {
                slot: 0,
                hits: big_hits(1000),
                outcomes: big_outcomes(Some("x".repeat(200))),
            }],
            invocations: 84,
            cold_workers: 84,
            billed_ms: u64::MAX,
        };
        let reply = serde_json::to_vec(&WireReply::new(&resp).unwrap()).unwrap();
        assert!(reply.len() < LIMIT / 20, "reply payload is {} bytes", reply.len());
        let back: WireReply = serde_json::from_slice(&reply).unwrap();
        assert_eq!(back.into_response().unwrap(), resp);
        // The readable JSON form the samples use stays below the limit too.
        assert!(serde_json::to_vec(&resp).unwrap().len() < LIMIT / 10);
    }

    /// A batch at the limits: 100 queries of 1,536 dimensions, each scanning 4,000 lists
    /// over 200 partitions with a 50-leaf filter, to a root with the whole tree below it;
    /// and the answer of [`MAX_BATCH_HITS`] hits with 8 attributes each, 100 outcomes per
    /// query. Both stay under the 6 MB invoke limit as they travel.
    #[test]
    fn batch_payloads_at_the_limits_stay_under_the_invoke_limit() {
        const LIMIT: usize = 6 * 1024 * 1024;
        let queries: Vec<WorkerQuery> = (0..MAX_BATCH as u32)
            .map(|slot| WorkerQuery {
                slot,
                query: vec![-0.123_456_79; 1536],
                k: (MAX_BATCH_HITS / MAX_BATCH) as u32,
                filter: Some(wide_filter()),
                rerank_factor: 10,
                hamming_keep: 1.0,
                with_attributes: true,
                parts: (0..200)
                    .map(|p| QueryPart {
                        partition: p * 50 + slot,
                        lists: (0..20).map(|l| l * 7 + slot).collect(),
                    })
                    .collect(),
            })
            .collect();
        assert_eq!(queries[0].parts.iter().map(|p| p.lists.len()).sum::<usize>(), 4000);
        let req = WorkerRequest {
            index: "an-index-with-a-long-name-0123456789".into(),
            worker: 0,
            segments: (0..5000)
                .map(|p| SegmentRef {
                    partition: p,
                    key: format!("segments/p{p:05}-0123456789abcdef0123456789abcdef.sqs"),
                    bytes: 12_345_678,
                    checksum: "0123456789abcdef".into(),
                    lists: (0..20).collect(),
                    head: 123_456,
                    deletes: None,
                })
                .collect(),
            children: vec![],
            queries,
        };
        let sent = serde_json::to_vec(&WorkerPayload::wire(&req).unwrap()).unwrap();
        assert!(sent.len() < LIMIT, "batch request payload is {} bytes", sent.len());
        let back: WorkerPayload = serde_json::from_slice(&sent).unwrap();
        assert_eq!(back.into_request().unwrap(), req);
        let per_query = MAX_BATCH_HITS / MAX_BATCH;
        let resp = WorkerResponse {
            invocations: 84,
            cold_workers: 84,
            answers: (0..MAX_BATCH as u32)
                .map(|slot| QueryAnswer {
                    slot,
                    hits: big_hits(per_query as u64),
                    outcomes: big_outcomes(None),
                })
                .collect(),
            billed_ms: u64::MAX,
        };
        let reply = serde_json::to_vec(&WireReply::new(&resp).unwrap()).unwrap();
        assert!(reply.len() < LIMIT, "batch reply payload is {} bytes", reply.len());
        println!(
            "batch at the limits: request {} bytes, reply {} bytes",
            sent.len(),
            reply.len()
        );
    }

    #[test]
    fn batch_errors_name_the_query_and_field() {
        let cases = [
            (
                r#"{"queries": [{"vector": [1]}, {"vector": [1], "k": "x"}]}"#,
                "queries[1].k",
            ),
            (r#"{"queries": [{"vector": [1]}, {"k": 3}]}"#, "queries[1].vector"),
            (r#"{"queries": [{"vector": [1e999]}]}"#, "queries[0].vector[0]"),
            (
                r#"{"queries": [{"vector": [1], "params": {"plan": "maybe"}}]}"#,
                "queries[0].params.plan",
            ),
            (r#"{"query": []}"#, "query"),
            (r#"{"queries": 3}"#, "queries"),
            (r#"[1]"#, "body"),
        ];
        for (body, field) in cases {
            let e = BatchRequest::from_json(body.as_bytes()).expect_err(body);
            assert_eq!(e.field, field, "{body}: {e}");
        }
        let e = BatchRequest::from_queries(serde_json::json!([{"vector": [1]}, {"vector": "x"}])).unwrap_err();
        assert_eq!(e.field, "queries[1].vector");
        let ok = BatchRequest::from_json(br#"{"queries": [{"vector": [1], "params": {"plan": "local"}}]}"#).unwrap();
        assert_eq!(ok.queries[0].params.plan, Some(PlanChoice::Local));
    }

    #[test]
    fn worker_payload_accepts_plain_json_and_rejects_bad_wire() {
        let json = r#"{"index":"i","segments":[],"queries":[{"slot":0,"query":[1.0],"k":1,
            "filter":null,"rerank_factor":10,"hamming_keep":0.5,"with_attributes":false,"parts":[]}]}"#;
        let p: WorkerPayload = serde_json::from_str(json).unwrap();
        assert_eq!(p.into_request().unwrap().worker, 0);
        let bad: WorkerPayload = serde_json::from_str(r#"{"wire":"!!!"}"#).unwrap();
        assert!(bad.into_request().is_err());
        let short: WorkerPayload = serde_json::from_str(r#"{"wire":"AAAA"}"#).unwrap();
        assert!(short.into_request().is_err());
    }
}
