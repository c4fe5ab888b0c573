//! The worker protocol: what a coordinator (or an inner node of the fan-out tree) sends
//! a worker and what it answers. One request shape: a request carries a batch of
//! queries (a single search is a batch of one), the segments of this node with the
//! lists to fetch, and the subtrees below it; each query names the partitions and lists
//! it searches. Internal: it travels as JSON or bincode (the wire module), never to disk.

use crate::StageCounts;
use serde::{Deserialize, Serialize};
use squash_core::filter::Expr;

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
    /// Fine lists of the segment any query of the request scans (numbers inside the
    /// segment, ascending; empty: every list): what a read by ranges fetches.
    pub lists: Vec<u32>,
    /// Bytes of the segment's parameters, fetched first when it is read by ranges (0:
    /// read it whole).
    #[serde(default)]
    pub head: u64,
    /// The segment's deleted rows, when writes deleted or replaced some: never returned.
    #[serde(default)]
    pub deletes: Option<ObjectRef>,
}

/// An immutable object a worker fetches and verifies: its key, size and xxh3-64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Object key (content-hashed).
    pub key: String,
    /// Expected size in bytes.
    pub bytes: u64,
    /// Expected xxh3-64 of the object (16 hex digits).
    pub checksum: String,
}

/// A node of the fan-out tree below a worker: the worker that serves it, the segments it
/// searches itself and its own children.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeNode {
    /// Logical worker (0..W) that serves this node.
    pub worker: u32,
    /// Segments this node searches itself.
    pub segments: Vec<SegmentRef>,
    /// Nodes this node invokes and merges.
    #[serde(default)]
    pub children: Vec<TreeNode>,
}

impl TreeNode {
    /// Every segment of this subtree, this node's first.
    pub fn all_segments(&self) -> Vec<&SegmentRef> {
        let mut out: Vec<&SegmentRef> = self.segments.iter().collect();
        for c in &self.children {
            out.extend(c.all_segments());
        }
        out
    }

    /// Nodes in this subtree, this one included.
    pub fn node_count(&self) -> usize {
        1 + self.children.iter().map(TreeNode::node_count).sum::<usize>()
    }

    /// Levels in this subtree (1 for a leaf).
    pub fn depth(&self) -> usize {
        1 + self.children.iter().map(TreeNode::depth).max().unwrap_or(0)
    }
}

/// What a worker is sent: queries, the segments this node searches and the subtrees it
/// invokes. Each segment is fetched once for every query that needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerRequest {
    /// Index the segments belong to (for caches and messages).
    pub index: String,
    /// Logical worker (0..W) meant to serve this request, so its cache stays warm.
    #[serde(default)]
    pub worker: u32,
    /// Segments this node searches.
    pub segments: Vec<SegmentRef>,
    /// Subtrees this worker invokes concurrently while it searches its own segments.
    /// (No `skip_serializing_if` on wire types: bincode is not self-describing.)
    #[serde(default)]
    pub children: Vec<TreeNode>,
    /// The queries (a single search is one), each searched in its parts of `segments`
    /// and of the subtrees.
    pub queries: Vec<WorkerQuery>,
}

/// One query as a worker gets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerQuery {
    /// Its place in the request (answers carry it back).
    pub slot: u32,
    /// Prepared query vector (normalised for cosine).
    pub query: Vec<f32>,
    /// Results wanted.
    pub k: u32,
    /// Parsed filter.
    pub filter: Option<Expr>,
    /// Exact re-rank budget, as a multiple of k.
    pub rerank_factor: u32,
    /// Fraction kept by the Hamming prune.
    pub hamming_keep: f32,
    /// Return attribute values with each hit.
    pub with_attributes: bool,
    /// The partitions it searches (in this subtree) and their lists.
    pub parts: Vec<QueryPart>,
}

/// A partition one query searches, and the lists in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryPart {
    /// Partition id.
    pub partition: u32,
    /// Fine lists to scan (ascending; empty: every list).
    pub lists: Vec<u32>,
}

/// A worker's answer to one query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryAnswer {
    /// The query's place in the request.
    pub slot: u32,
    /// Best hits over the parts searched, nearest first.
    pub hits: Vec<WorkerHit>,
    /// One outcome per segment searched.
    pub outcomes: Vec<PartitionOutcome>,
}

impl WorkerRequest {
    /// The request for `node`: its segments and children, and the queries, with their
    /// parts, that fall in the node's subtree.
    pub fn for_node(&self, node: &TreeNode) -> WorkerRequest {
        let mine: std::collections::HashSet<u32> = node.all_segments().iter().map(|s| s.partition).collect();
        WorkerRequest {
            index: self.index.clone(),
            worker: node.worker,
            segments: node.segments.clone(),
            children: node.children.clone(),
            queries: self.queries_in(&|p| mine.contains(&p)),
        }
    }

    /// The queries with only their parts in the partitions `wanted` accepts (queries
    /// left with none are dropped).
    pub fn queries_in(&self, wanted: &dyn Fn(u32) -> bool) -> Vec<WorkerQuery> {
        self.queries
            .iter()
            .filter_map(|q| {
                let parts: Vec<QueryPart> = q.parts.iter().filter(|p| wanted(p.partition)).cloned().collect();
                (!parts.is_empty()).then(|| WorkerQuery { parts, ..q.clone() })
            })
            .collect()
    }

    /// Every segment this request covers (its own and its subtrees').
    pub fn all_segments(&self) -> Vec<&SegmentRef> {
        let mut out: Vec<&SegmentRef> = self.segments.iter().collect();
        for c in &self.children {
            out.extend(c.all_segments());
        }
        out
    }
}

/// One hit as a worker returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerHit {
    /// Vector id (for string ids, the xxh3-64 of the string: `name` holds it).
    pub id: u64,
    /// The string id, in an index of string ids.
    pub name: Option<String>,
    /// Distance in the index metric.
    pub distance: f32,
    /// Attribute values in schema order (`NaN` = missing; a list attribute's element
    /// count) when asked for.
    pub attrs: Vec<f64>,
    /// Each list attribute's elements, in schema order, when attributes are asked for.
    #[serde(default)]
    pub elements: Vec<Vec<f64>>,
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
    /// Microseconds getting the segment (0 on a cache hit).
    #[serde(default)]
    pub fetch_us: u64,
    /// Microseconds searching the segment.
    #[serde(default)]
    pub scan_us: u64,
    /// GET requests made for it (1 for a whole object; its head and ranges when read by
    /// ranges; 0 on a cache hit that needed nothing more).
    #[serde(default)]
    pub gets: u64,
}

impl PartitionOutcome {
    /// The outcome of a partition that could not be searched.
    pub fn failed(partition: u32, error: String) -> PartitionOutcome {
        PartitionOutcome {
            partition,
            error: Some(error),
            counts: StageCounts::default(),
            cache_hit: false,
            bytes_fetched: 0,
            fetch_us: 0,
            scan_us: 0,
            gets: 0,
        }
    }
}

/// What a worker answers: one answer per query it searched, and its subtree's costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerResponse {
    /// Answers per query (by slot), the subtree's merged in.
    pub answers: Vec<QueryAnswer>,
    /// Invocations made below this worker (its subtree, not itself).
    #[serde(default)]
    pub invocations: u32,
    /// Containers in this subtree (this one included) that served their first request.
    #[serde(default)]
    pub cold_workers: u32,
    /// Milliseconds billed in this subtree: each node's duration rounded up to a whole
    /// millisecond (inner nodes wait for their children and are billed for it).
    #[serde(default)]
    pub billed_ms: u64,
}

impl WorkerResponse {
    /// Hits over every answer.
    pub fn hit_count(&self) -> usize {
        self.answers.iter().map(|a| a.hits.len()).sum()
    }
}
