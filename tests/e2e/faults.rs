//! Faults: a fault-injecting object store (errors, throttling, timeouts, slow answers,
//! permanent refusals) and a fault-injecting invoker (worker errors, timeouts, crashes
//! mid-response). Transient faults are ridden out (store retries with capped backoff, one
//! more round for failed partitions) with the intact answer; what still fails fails the
//! query by default, or gives `"partial": true` with the missing partitions and the exact
//! answer over the rest when the caller allows it.

use serde_json::json;
use squash_api::{SearchRequest, SearchResponse};
use squash_core::distance::{exact_distance, prepare_vector, Metric};
use squash_core::segment::Segment;
use squash_engine::in_process::InProcessInvoker;
use squash_engine::invoker::WorkerInvoker;
use squash_engine::search::{load_manifest, Index};
use squash_engine::testing::{FaultyInvoker, InvokeFault, InvokeRule};
use squash_engine::tree::Fanout;
use squash_engine::worker::Worker;
use squash_engine::SearchError;
use squash_storage::{Fault, Faulty, LocalDir, Memory, ObjectStore, Retrying};
use squash_tests::row;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

const FANOUT: Fanout = Fanout {
    workers: 3,
    branching: 3,
    depth: 1,
};

fn golden() -> Memory {
    let src = LocalDir::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden-v3/index"));
    let mem = Memory::new();
    for key in src.list("").expect("fixture") {
        mem.put(&key, &src.get(&key).expect("fixture object")).expect("put");
    }
    mem
}

fn request(allow_partial: bool) -> SearchRequest {
    let raw: serde_json::Value = serde_json::from_str(include_str!("../../events/raw-search.json")).expect("event");
    SearchRequest::from_value(json!({
        "vector": raw["search"]["vector"], "k": 10, "params": {"nprobe": 3}, "allow_partial": allow_partial
    }))
    .expect("request")
}

/// An index over `store`, its workers reached through `invoker` (or in process).
fn index(store: Arc<dyn ObjectStore>, rule: Option<Box<InvokeRule>>) -> Index {
    let manifest = load_manifest(store.as_ref(), "golden").expect("manifest");
    let inner = Arc::new(InProcessInvoker::new(Arc::new(Worker::new(store, 64 << 20))));
    let invoker: Arc<dyn WorkerInvoker> = match rule {
        Some(rule) => Arc::new(FaultyInvoker::new(inner, rule)),
        None => inner,
    };
    Index::with_invoker("golden", manifest, invoker, FANOUT)
}

fn ids(r: &SearchResponse) -> Vec<(u64, String)> {
    r.hits
        .iter()
        .map(|h| (row(&h.id), format!("{:.6}", h.distance)))
        .collect()
}

fn segment_keys(store: &Memory) -> Vec<String> {
    store.list("segments/").expect("list")
}

/// Checks a partial answer: no hit from the missing partitions, each distance exact,
/// nearest first, and at least 8 of the exact top 10 over the partitions left.
fn check_partial(store: &Memory, resp: &SearchResponse, missing_keys: &[String]) {
    let mut query = request(true).vector;
    prepare_vector(Metric::Cosine, &mut query, 12, "vector").expect("query");
    let mut exact: Vec<(f32, u64)> = Vec::new();
    let mut missing_ids = Vec::new();
    for key in segment_keys(store) {
        let seg = Segment::decode(&key, store.get(&key).expect("segment")).expect("decode");
        for (i, &id) in seg.ids().iter().enumerate() {
            if missing_keys.contains(&key) {
                missing_ids.push(id);
            } else {
                exact.push((exact_distance(Metric::Cosine, &query, seg.vector(i)), id));
            }
        }
    }
    exact.sort_by(|a, b| a.0.total_cmp(&b.0));
    let truth: HashMap<u64, f32> = exact.iter().map(|&(d, id)| (id, d)).collect();
    assert!(!resp.hits.is_empty());
    for w in resp.hits.windows(2) {
        assert!(w[0].distance <= w[1].distance, "hits nearest first");
    }
    for h in &resp.hits {
        assert!(
            !missing_ids.contains(&row(&h.id)),
            "hit {} comes from a missing partition",
            h.id
        );
        let d = truth.get(&row(&h.id)).copied().unwrap_or(f32::NAN);
        assert!(
            (d - h.distance).abs() < 1e-4,
            "hit {}: distance {} but exactly {d}",
            h.id,
            h.distance
        );
    }
    let top: Vec<u64> = exact.iter().take(10).map(|&(_, id)| id).collect();
    let found = resp.hits.iter().filter(|h| top.contains(&row(&h.id))).count();
    assert!(found >= 8, "recall@10 over the partitions left: {found}/10");
}

#[test]
fn transient_store_faults_are_ridden_out_with_the_intact_answer() {
    let intact = index(Arc::new(golden()), None).search(&request(false)).expect("intact");
    let faults = [
        Fault::Transient,
        Fault::Throttled,
        Fault::Timeout(Duration::from_millis(5)),
        Fault::Slow(Duration::from_millis(10)),
    ];
    for fault in faults {
        // Every segment fails its first two reads; the manifest its first one.
        let f = fault.clone();
        let faulty = Faulty::new(golden(), move |key, attempt| {
            let limit = if key.starts_with("segments/") { 2 } else { 1 };
            (attempt <= limit).then(|| f.clone())
        });
        let store = Arc::new(Retrying::with_policy(
            faulty,
            4,
            Duration::from_millis(1),
            Duration::from_millis(8),
        ));
        let got = index(store, None)
            .search(&request(false))
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(ids(&got), ids(&intact), "{fault:?}");
        assert!(!got.partial && got.stats.failed_partitions.is_empty(), "{fault:?}");
    }
}

#[test]
fn a_segment_that_cannot_be_read_fails_the_query_or_gives_a_partial_answer() {
    let mem = golden();
    let keys = segment_keys(&mem);
    let bad = keys[1].clone();
    let bad_for_rule = bad.clone();
    let faulty = Arc::new(Faulty::new(golden(), move |key, _| {
        (key == bad_for_rule).then_some(Fault::Permanent)
    }));
    let idx = index(faulty.clone(), None);
    // By default: an error naming the partition and the object, after one retry round.
    match idx.search(&request(false)) {
        Err(SearchError::Worker { partition, message }) => {
            assert_eq!(partition, 1);
            assert!(message.contains(&bad) && message.contains("allow_partial"), "{message}");
        }
        other => panic!("expected a worker error, got {other:?}"),
    }
    assert_eq!(faulty.attempts(&bad), 2, "read once, retried once");
    // Allowed: the answer from the other partitions, marked partial.
    let resp = idx.search(&request(true)).expect("partial answer");
    assert!(resp.partial && resp.stats.partial);
    assert_eq!(resp.missing_partitions, vec![1]);
    assert_eq!(resp.stats.failed_partitions, vec![1]);
    assert_eq!(resp.stats.retried_partitions, 1);
    check_partial(&mem, &resp, &[bad]);
    let body = serde_json::to_value(&resp).expect("json");
    assert_eq!(
        (body["partial"].clone(), body["missing_partitions"].clone()),
        (json!(true), json!([1]))
    );
}

#[test]
fn worker_errors_timeouts_and_crashes_are_retried_once_then_reported() {
    let mem = golden();
    let intact = index(Arc::new(golden()), None).search(&request(false)).expect("intact");
    assert!(intact.stats.invocations >= 2, "the fan-out uses several workers");
    let kinds = [
        InvokeFault::Error("Unhandled: the function panicked".into()),
        InvokeFault::Timeout(Duration::from_millis(10)),
        InvokeFault::Crash,
    ];
    for kind in kinds {
        // Every worker fails its first invocation: the retry round repairs them.
        let k = kind.clone();
        let idx = index(
            Arc::new(golden()),
            Some(Box::new(move |_, attempt| (attempt == 1).then(|| k.clone()))),
        );
        let got = idx.search(&request(false)).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(ids(&got), ids(&intact), "{kind:?}");
        assert!(
            got.stats.retried_partitions >= 1 && got.stats.failed_partitions.is_empty(),
            "{kind:?}"
        );
        assert!(!got.partial);

        // The first worker invoked always fails: an error by default, a partial answer
        // when allowed.
        let k = kind.clone();
        let target = Arc::new(AtomicU32::new(u32::MAX));
        let idx = index(
            Arc::new(golden()),
            Some(Box::new(move |w, _| {
                let _ = target.compare_exchange(u32::MAX, w, Ordering::SeqCst, Ordering::SeqCst);
                (target.load(Ordering::SeqCst) == w).then(|| k.clone())
            })),
        );
        let err = idx.search(&request(false)).expect_err("a worker is down");
        assert!(matches!(err, SearchError::Worker { .. }), "{kind:?}: {err}");
        let resp = idx.search(&request(true)).expect("partial answer");
        assert!(resp.partial && !resp.missing_partitions.is_empty(), "{kind:?}");
        let keys = segment_keys(&mem);
        let missing: Vec<String> = resp
            .missing_partitions
            .iter()
            .map(|&p| keys[p as usize].clone())
            .collect();
        check_partial(&mem, &resp, &missing);
    }
}

#[test]
fn when_every_partition_fails_even_allow_partial_gets_an_error() {
    let idx = index(
        Arc::new(golden()),
        Some(Box::new(|_, _| Some(InvokeFault::Error("down".into())))),
    );
    assert!(matches!(idx.search(&request(true)), Err(SearchError::Worker { .. })));
}

/// Passes requests through but drops every worker's report on its first segment.
struct Forgetful(Arc<dyn WorkerInvoker>);

impl WorkerInvoker for Forgetful {
    fn invoke_all(&self, requests: &[squash_api::WorkerRequest]) -> Vec<Result<squash_api::WorkerResponse, String>> {
        let firsts: Vec<Option<u32>> = requests
            .iter()
            .map(|r| r.segments.first().map(|s| s.partition))
            .collect();
        self.0
            .invoke_all(requests)
            .into_iter()
            .zip(firsts)
            .map(|(r, first)| {
                r.map(|mut resp| {
                    for answer in &mut resp.answers {
                        answer.outcomes.retain(|o| Some(o.partition) != first);
                    }
                    resp
                })
            })
            .collect()
    }
}

#[test]
fn a_partition_without_an_outcome_never_passes_as_searched() {
    let store: Arc<dyn ObjectStore> = Arc::new(golden());
    let manifest = load_manifest(store.as_ref(), "golden").expect("manifest");
    let inner = Arc::new(InProcessInvoker::new(Arc::new(Worker::new(store, 64 << 20))));
    let idx = Index::with_invoker("golden", manifest, Arc::new(Forgetful(inner)), FANOUT);
    let err = idx
        .search(&request(false))
        .expect_err("unreported partitions must fail the query");
    assert!(err.to_string().contains("reported no outcome"), "{err}");
    let resp = idx.search(&request(true)).expect("partial");
    assert!(resp.partial && !resp.missing_partitions.is_empty());
}
