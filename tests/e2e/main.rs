//! End-to-end tests: build real indexes from generated data with a known structure,
//! search them through the public API, and compare with brute force.

mod bad_input;
mod bench;
mod corruption;
mod faults;
mod golden;
mod ranges;
mod stack;
mod tenants;
mod writes;

use stack::s3_endpoint;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use squash_api::{PlanChoice, SearchParams, SearchRequest};
use squash_bench::groundtruth::{brute_force, recall_at};
use squash_build::build::{build_index, BuildParams, MANIFEST_KEY};
use squash_build::io::{Attributes, Matrix};
use squash_core::attrs::AttrSpec;
use squash_core::distance::{prepare_vector, Metric};
use squash_core::filter::Expr;
use squash_engine::search::Index;
use squash_engine::SearchError;
use squash_storage::{LocalDir, Memory, ObjectStore};
use squash_tests::{
    clustered, naive_matches, random_filter, random_list_filter, row, tag, value_of, with_lists, Dataset,
};
use std::path::PathBuf;
use std::sync::Arc;

fn params(metric: Metric, partitions: usize) -> BuildParams {
    BuildParams {
        metric,
        partitions: Some(partitions),
        ..BuildParams::default()
    }
}

fn build(ds: &Dataset, p: &BuildParams) -> (Arc<Memory>, Index) {
    let store = Arc::new(Memory::new());
    build_index(store.as_ref(), ds.base.clone(), ds.attrs.clone(), p).expect("build");
    let index = Index::open(store.clone(), "test").expect("open");
    (store, index)
}

fn prepared(m: &Matrix, metric: Metric) -> Matrix {
    let mut m = m.clone();
    let cols = m.cols;
    for row in m.data.chunks_mut(cols) {
        prepare_vector(metric, row, cols, "row").expect("valid vector");
    }
    m
}

fn request(vector: &[f32], k: usize, filter: Option<Value>) -> SearchRequest {
    SearchRequest {
        vector: vector.to_vec(),
        k,
        filter,
        include: vec![],
        params: SearchParams::default(),
        allow_partial: false,
        consistency: None,
        offset: 0,
    }
}

/// Runs every query with `filter`, checks every hit against the naive evaluator and the
/// exact distance, and returns mean recall@k against brute force.
fn check_queries(ds: &Dataset, index: &Index, metric: Metric, filter: Option<Value>, k: usize) -> f64 {
    let base = prepared(&ds.base, metric);
    let expr = filter
        .as_ref()
        .and_then(|f| Expr::parse(f, &ds.attrs.schema).expect("valid filter"));
    let mut recall = 0.0;
    for q in 0..ds.queries.rows {
        let resp = index
            .search(&request(ds.queries.row(q), k, filter.clone()))
            .expect("search");
        let mut query = ds.queries.row(q).to_vec();
        prepare_vector(metric, &mut query, base.cols, "q").expect("query");
        let truth = brute_force(&base, metric, &ds.attrs, &query, expr.as_ref(), k);
        assert!(resp.hits.len() <= k);
        assert_eq!(
            resp.hits.len(),
            truth.len().min(k),
            "query {q}: as many hits as matches (up to k)"
        );
        for h in &resp.hits {
            let row = row(&h.id) as usize;
            if let Some(f) = &filter {
                assert!(
                    naive_matches(f, &ds.attrs, row),
                    "query {q}: hit {row} violates filter {f}"
                );
            }
            if metric == Metric::Ip {
                // Reported from the transformed L2 distance: exact up to f32 rounding.
                let exact = squash_core::distance::true_distance(metric, &query, base.row(row));
                let scale =
                    squash_core::distance::norm(&query) as f64 * squash_core::distance::norm(base.row(row)) as f64;
                assert!(
                    (h.distance as f64 - exact).abs() <= 1e-5 * scale.max(1.0),
                    "query {q}: reported {} for inner product {}",
                    h.distance,
                    -exact
                );
            } else {
                let exact = squash_core::distance::exact_distance(metric, &query, base.row(row));
                assert_eq!(h.distance, exact, "reported distance is the exact one");
            }
        }
        for w in resp.hits.windows(2) {
            assert!(w[0].distance <= w[1].distance, "hits are sorted");
        }
        let ids: Vec<u64> = resp.hits.iter().map(|h| row(&h.id)).collect();
        let truth_ids: Vec<u64> = truth.iter().map(|n| n.id).collect();
        recall += recall_at(&ids, &truth_ids, k);
    }
    recall / ds.queries.rows as f64
}

#[test]
fn recall_at_10_without_and_with_filters() {
    let ds = clustered(20_000, 100, 32, 24, 11);
    let (_, index) = build(&ds, &params(Metric::L2, 8));
    let cases: Vec<(&str, Option<Value>)> = vec![
        ("none", None),
        ("price<10 (10%)", Some(json!({"price": {"$lt": 10}}))),
        (
            "red & price<30 (5%)",
            Some(json!({"color": "red", "price": {"$lt": 30}})),
        ),
        (
            "blue or stock>45 (~25%)",
            Some(json!({"$or": [{"color": "blue"}, {"stock": {"$gt": 45}}]})),
        ),
        ("price in [50,51) (1%)", Some(json!({"price": {"$gte": 50, "$lt": 51}}))),
        ("stock missing (5%)", Some(json!({"stock": {"$exists": false}}))),
        ("color nin (67%)", Some(json!({"color": {"$nin": ["red", "blue"]}}))),
    ];
    for (name, filter) in cases {
        let recall = check_queries(&ds, &index, Metric::L2, filter, 10);
        eprintln!("{name}: recall@10 = {recall:.4}");
        assert!(recall >= 0.95, "{name}: recall@10 {recall} < 0.95");
    }
}

#[test]
fn the_build_measures_the_search_defaults_and_keeps_given_knobs() {
    let ds = clustered(20_000, 1, 32, 24, 11);
    let (_, index) = build(&ds, &params(Metric::L2, 8));
    let m = index.manifest();
    let d = &m.meta.defaults;
    let cal = d.calibration.as_ref().expect("a 20,000-vector index is calibrated");
    assert!(cal.queries >= 50 && cal.k == 10, "{cal:?}");
    assert!(cal.nprobe_coverage >= cal.target_coverage, "{cal:?}");
    assert!(d.nprobe >= 1 && (d.nprobe as usize) < m.lists(), "{d:?}");
    // The re-rank factor was searched for with the real pipeline.
    assert!(
        squash_build::calibrate::RERANK_FACTORS.contains(&d.rerank_factor),
        "{d:?}"
    );
    let rerank_recall = cal.rerank_recall.expect("re-rank factor calibrated");
    assert!(rerank_recall > 0.9 && rerank_recall <= 1.0, "{cal:?}");
    // The curve: ascending selectivities ending at 1, positive factors; `safety` is the
    // largest factor a filter needed.
    let curve = &d.safety_curve;
    assert!(curve.len() >= 2 && curve.last().map(|p| p.0) == Some(1.0), "{curve:?}");
    assert!(curve.windows(2).all(|w| w[0].0 < w[1].0), "{curve:?}");
    assert!(curve.iter().all(|p| p.1 > 0.0), "{curve:?}");
    let widest = curve[..curve.len() - 1].iter().map(|p| p.1).fold(0.0, f64::max);
    assert!((d.safety as f64 - widest).abs() <= 1e-6 * widest, "{d:?}");
    // Vectors to scan (factor / selectivity) never grow with the selectivity.
    assert!(
        curve.windows(2).all(|w| w[0].1 / w[0].0 >= w[1].1 / w[1].0),
        "{curve:?}"
    );
    // Without a filter the curve does not widen the search: a smaller nprobe asked for
    // is what is searched.
    let mut few = request(ds.queries.row(0), 10, None);
    few.params.nprobe = Some(3);
    assert_eq!(index.search(&few).unwrap().stats.lists_searched, 3);
    // Measured the same way twice.
    let (_, again) = build(&ds, &params(Metric::L2, 8));
    assert_eq!(&again.manifest().meta.defaults, d);
    // Knobs given to the build are kept as given, and a given safety has no curve.
    let mut given = params(Metric::L2, 8);
    given.defaults.nprobe = 9;
    given.defaults.safety = 300.0;
    given.defaults.rerank_factor = 7;
    let (_, fixed) = build(&ds, &given);
    let d = &fixed.manifest().meta.defaults;
    assert_eq!((d.nprobe, d.safety, d.rerank_factor), (9, 300.0, 7));
    assert!(d.safety_curve.is_empty() && d.calibration.is_none(), "{d:?}");
    // Without calibration, the static defaults.
    let (_, off) = build(
        &ds,
        &BuildParams {
            calibrate: false,
            ..params(Metric::L2, 8)
        },
    );
    let d = &off.manifest().meta.defaults;
    let lists = off.manifest().lists();
    assert_eq!(d.nprobe, squash_build::build::default_nprobe(lists));
    assert_eq!(d.safety, squash_build::build::FALLBACK_SAFETY);
    assert_eq!(d.rerank_factor, squash_build::build::FALLBACK_RERANK_FACTOR);
    assert!(d.safety_curve.is_empty() && d.calibration.is_none(), "{d:?}");
}

#[test]
fn cosine_recall_and_random_filters_never_leak() {
    let ds = clustered(8_000, 40, 24, 12, 5);
    let (_, index) = build(&ds, &params(Metric::Cosine, 4));
    let recall = check_queries(&ds, &index, Metric::Cosine, None, 10);
    assert!(recall >= 0.95, "cosine recall {recall}");
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    for _ in 0..25 {
        let f = random_filter(&mut rng, 2);
        // check_queries asserts that no hit violates the filter and the count is right.
        check_queries(&ds, &index, Metric::Cosine, Some(f), 10);
    }
}

/// Inner product: vectors of varied norms (each row scaled by 0.2–3), so the largest
/// inner product is often not the nearest in L2; recall against brute force on inner
/// product, filters never leak, and a build or write with a norm past the bound is
/// refused.
#[test]
fn inner_product_recall_and_random_filters_never_leak() {
    let mut ds = clustered(8_000, 40, 24, 12, 6);
    let mut rng = ChaCha8Rng::seed_from_u64(61);
    let cols = ds.base.cols;
    for row in ds.base.data.chunks_mut(cols) {
        let s: f32 = rng.gen_range(0.2..3.0);
        row.iter_mut().for_each(|x| *x *= s);
    }
    let (_, index) = build(&ds, &params(Metric::Ip, 4));
    let m = &index.manifest().meta;
    assert_eq!(m.metric, Metric::Ip);
    assert_eq!(m.dim as usize, cols, "users see their own dimension");
    assert!(m.max_norm.is_some_and(|n| n > 0.0));
    // The ranking differs from L2's: the test is not L2 in disguise.
    let q = ds.queries.row(0);
    let l2 = brute_force(&ds.base, Metric::L2, &ds.attrs, q, None, 10);
    let ip = brute_force(&ds.base, Metric::Ip, &ds.attrs, q, None, 10);
    assert_ne!(
        l2.iter().map(|n| n.id).collect::<Vec<_>>(),
        ip.iter().map(|n| n.id).collect::<Vec<_>>()
    );
    let recall = check_queries(&ds, &index, Metric::Ip, None, 10);
    assert!(recall >= 0.95, "inner-product recall {recall}");
    let recall = check_queries(&ds, &index, Metric::Ip, Some(json!({"price": {"$lt": 10}})), 10);
    assert!(recall >= 0.95, "inner-product recall at 10 % {recall}");
    for _ in 0..15 {
        let f = random_filter(&mut rng, 2);
        check_queries(&ds, &index, Metric::Ip, Some(f), 10);
    }
    // A bound below the data's largest norm is refused, naming a row past it.
    let e = build_index(
        &Memory::new(),
        ds.base.clone(),
        ds.attrs.clone(),
        &BuildParams {
            max_norm: Some(0.5),
            ..params(Metric::Ip, 4)
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("max_norm") && e.contains("vectors["), "{e}");
}

/// List attributes (`tags`: 0–4 of 30 Zipf-weighted words, `sizes`: 0–3 integers; empty
/// and missing lists) against brute force: recall ≥ 0.95 for every operator from a
/// frequent tag to a rare pair, 40 random filters mixing list and single-valued
/// attributes never let a non-matching row out (each hit checked by the naive
/// evaluator), and hits carry their lists, on both plans.
#[test]
fn list_attributes_match_brute_force_and_never_leak() {
    let ds = with_lists(clustered(8_000, 30, 16, 12, 31), 32);
    let (_, index) = build(&ds, &params(Metric::L2, 4));
    let tags = &index.manifest().meta.schema.attrs[4];
    assert!(tags.list && tags.elements.is_some(), "{tags:?}");
    for filter in [
        json!({"tags": {"$contains": tag(0)}}),
        json!({"tags": tag(3)}),
        json!({"tags": {"$containsAny": [tag(17), tag(25)]}}),
        json!({"tags": {"$containsAll": [tag(0), tag(1)]}}),
        json!({"tags": {"$in": [tag(8), "no-such-tag"]}}),
        json!({"tags": {"$nin": [tag(0), tag(1)]}}),
        json!({"tags": {"$ne": tag(2)}, "price": {"$lt": 30}}),
        json!({"tags": {"$exists": false}}),
        json!({"sizes": {"$gte": 10, "$lt": 12}}),
        json!({"sizes": {"$contains": 7}}),
        json!({"sizes": {"$containsAny": [1, 2, 3]}, "color": "red"}),
    ] {
        let matching = (0..ds.base.rows)
            .filter(|&r| naive_matches(&filter, &ds.attrs, r))
            .count();
        let recall = check_queries(&ds, &index, Metric::L2, Some(filter.clone()), 10);
        assert!(recall >= 0.95, "{filter} ({matching} rows match): recall {recall}");
    }
    // Empty lists are present and hold nothing.
    let empty = (0..ds.base.rows)
        .find(|&r| value_of(&ds.attrs, "tags", r) == Some(json!([])))
        .expect("some row has an empty tag list");
    let exact = |f: Value| {
        let e = Expr::parse(&f, &ds.attrs.schema).unwrap().unwrap();
        e.matches(&|a| ds.attrs.value(a, empty))
    };
    assert!(exact(json!({"tags": {"$exists": true}})) && exact(json!({"tags": {"$nin": [tag(0)]}})));
    assert!(!exact(json!({"tags": {"$containsAny": [tag(0), tag(1)]}})) && !exact(json!({"tags": {"$exists": false}})));
    let mut rng = ChaCha8Rng::seed_from_u64(34);
    for _ in 0..40 {
        check_queries(&ds, &index, Metric::L2, Some(random_list_filter(&mut rng, 2)), 10);
    }
    // Hits carry their rows' lists (local and fan-out plans).
    let mut checked = 0;
    for plan in [PlanChoice::Local, PlanChoice::Fanout] {
        for q in 0..5 {
            let mut req = request(ds.queries.row(q), 20, Some(json!({"tags": {"$exists": true}})));
            req.include = vec!["attributes".into()];
            req.params.plan = Some(plan);
            for hit in index.search(&req).unwrap().hits {
                let got = hit.attributes.as_ref().expect("attributes");
                for name in ["tags", "sizes"] {
                    let want = value_of(&ds.attrs, name, row(&hit.id) as usize).unwrap_or(Value::Null);
                    let want = serde_json::to_string(&want).unwrap().replace(".0", "");
                    let got = serde_json::to_string(&got[name]).unwrap().replace(".0", "");
                    assert_eq!(got, want, "hit {} attribute {name}", hit.id);
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 200);
}

#[test]
fn fewer_matches_than_k_and_large_k() {
    let ds = clustered(5_000, 3, 16, 8, 3);
    let (_, index) = build(&ds, &params(Metric::L2, 4));
    // Exactly the rows with price in a narrow band: fewer than k.
    let filter = json!({"price": {"$gte": 12.0, "$lt": 12.2}});
    let matching = (0..ds.base.rows)
        .filter(|&r| naive_matches(&filter, &ds.attrs, r))
        .count();
    assert!(matching < 100 && matching > 0, "{matching}");
    let resp = index.search(&request(ds.queries.row(0), 100, Some(filter))).unwrap();
    assert_eq!(resp.hits.len(), matching);
    let resp = index.search(&request(ds.queries.row(1), 1000, None)).unwrap();
    assert_eq!(resp.hits.len(), 1000);
    let nothing = index
        .search(&request(ds.queries.row(2), 10, Some(json!({"color": "no-such-color"}))))
        .unwrap();
    assert!(nothing.hits.is_empty());
    assert_eq!(
        nothing.stats.partitions_searched, 0,
        "partitions without possible matches are skipped"
    );
}

/// k at its limit (10,000) on a 20,000-vector index: the answer is brute force's, hit
/// for hit, without a filter and with one, on both plans.
#[test]
fn k_ten_thousand_equals_brute_force() {
    let ds = clustered(20_000, 4, 16, 20, 21);
    let (_, index) = build(&ds, &params(Metric::L2, 4));
    let base = prepared(&ds.base, Metric::L2);
    for (q, filter) in [(0, None), (1, Some(json!({"price": {"$lt": 60}}))), (2, None)] {
        let expr = filter.as_ref().and_then(|f| Expr::parse(f, &ds.attrs.schema).unwrap());
        let truth = brute_force(&base, Metric::L2, &ds.attrs, ds.queries.row(q), expr.as_ref(), 10_000);
        for plan in [PlanChoice::Local, PlanChoice::Fanout] {
            let mut req = request(ds.queries.row(q), 10_000, filter.clone());
            req.params.plan = Some(plan);
            let resp = index.search(&req).unwrap();
            assert_eq!(resp.hits.len(), truth.len(), "query {q} {plan:?}");
            for (i, (h, t)) in resp.hits.iter().zip(&truth).enumerate() {
                assert_eq!(
                    (row(&h.id), h.distance),
                    (t.id, t.distance),
                    "query {q} {plan:?} hit {i}"
                );
            }
        }
    }
}

/// An answer too long for one response (k = 10,000 hits with 256-byte string ids and
/// 3 × 300-byte attribute strings: about 12 MB of JSON) comes in pages: each response's
/// JSON stays under Lambda's 6 MB, `next_offset` says where the next page starts, and
/// the pages joined are brute force's answer, hit for hit.
#[test]
fn a_long_answer_comes_in_pages_under_the_response_limit() {
    use squash_build::ids::Ids;
    use squash_core::attrs::{AttrSpec, Schema};
    let ds = clustered(12_000, 4, 8, 10, 23);
    let n = ds.base.rows;
    let names: Vec<String> = (0..n).map(|i| format!("{i:0>256}")).collect();
    let notes: Vec<String> = (0..40).map(|i| format!("{i:x>300}")).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let columns: Vec<Vec<f64>> = (0..3)
        .map(|_| (0..n).map(|_| rng.gen_range(0..40) as f64).collect())
        .collect();
    let attrs = Attributes {
        schema: Schema {
            attrs: (0..3)
                .map(|a| AttrSpec::categorical(format!("note{a}"), notes.clone()))
                .collect(),
        },
        columns,
        lists: Vec::new(),
    };
    let store = Arc::new(Memory::new());
    squash_build::build::build_index_with_ids(
        store.as_ref(),
        ds.base.clone(),
        attrs.clone(),
        &Ids::Strings(names.clone()),
        &params(Metric::L2, 3),
    )
    .unwrap();
    let index = Index::open(store, "pages").unwrap();
    let base = prepared(&ds.base, Metric::L2);
    let truth = brute_force(&base, Metric::L2, &attrs, ds.queries.row(0), None, 10_000);
    let mut joined = Vec::new();
    let mut offset = 0;
    let mut pages = 0;
    loop {
        let mut req = request(ds.queries.row(0), 10_000, None);
        req.include = vec!["attributes".into()];
        req.offset = offset;
        let resp = index.search(&req).unwrap();
        let bytes = serde_json::to_vec(&resp).unwrap().len();
        assert!(bytes < 6_000_000, "page {pages} is {bytes} bytes");
        pages += 1;
        joined.extend(
            resp.hits
                .iter()
                .map(|h| (h.id.as_str().expect("a string id").to_string(), h.distance)),
        );
        match resp.next_offset {
            Some(next) => {
                assert_eq!(next, offset + resp.hits.len());
                offset = next;
            }
            None => break,
        }
    }
    assert!(pages >= 2, "12 MB of hits came in {pages} page(s)");
    let want: Vec<(String, f32)> = truth
        .iter()
        .map(|t| (names[t.id as usize].clone(), t.distance))
        .collect();
    assert_eq!(joined.len(), want.len());
    if let Some(i) = (0..want.len()).find(|&i| joined[i] != want[i]) {
        panic!("hit {i}: {:?} != {:?}", joined[i], want[i]);
    }
    // An offset past the answer is a bad request naming the field.
    let mut req = request(ds.queries.row(0), 10, None);
    req.offset = 10;
    match index.search(&req) {
        Err(SearchError::BadRequest { field, .. }) => assert_eq!(field, "offset"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn filter_semantics_match_a_naive_evaluator() {
    let ds = clustered(3_000, 1, 8, 4, 17);
    let mut rng = ChaCha8Rng::seed_from_u64(1234);
    for _ in 0..300 {
        let f = random_filter(&mut rng, 3);
        let expr = Expr::parse(&f, &ds.attrs.schema).expect("parses").expect("non-empty");
        for row in 0..ds.base.rows {
            assert_eq!(
                expr.matches_row(&ds.attrs.columns, &ds.attrs.lists, row),
                naive_matches(&f, &ds.attrs, row),
                "filter {f} row {row}"
            );
        }
    }
}

fn objects(store: &Memory) -> Vec<(String, Vec<u8>)> {
    store
        .list("")
        .unwrap()
        .into_iter()
        .map(|k| (k.clone(), store.get(&k).unwrap()))
        .collect()
}

#[test]
fn builds_are_deterministic_and_round_trip() {
    let ds = clustered(4_000, 1, 16, 6, 8);
    let p = params(Metric::Cosine, 3);
    let (a, _) = build(&ds, &p);
    let (b, _) = build(&ds, &p);
    let oa = objects(&a);
    assert_eq!(oa, objects(&b), "same seed, same bytes");
    assert_eq!(oa.len(), 4, "manifest + 3 segments");
    for (key, bytes) in &oa {
        if key == MANIFEST_KEY {
            let m = squash_core::manifest::Manifest::decode(key, bytes).unwrap();
            assert_eq!(&m.encode(), bytes, "manifest re-encodes to the same bytes");
        } else {
            let s = squash_core::segment::Segment::decode(key, bytes.clone()).unwrap();
            assert_eq!(s.as_bytes(), &bytes[..]);
            let hash = format!("{:032x}", xxhash_rust_hash(bytes));
            assert!(key.contains(&hash), "segment key {key} embeds its content hash");
        }
    }
    let other = build(&ds, &BuildParams { seed: 7, ..p }).0;
    assert_ne!(oa, objects(&other), "another seed gives another index");
}

fn xxhash_rust_hash(bytes: &[u8]) -> u128 {
    squash_tests_hash::xxh3_128(bytes)
}

mod squash_tests_hash {
    /// xxh3-128 as the build uses it for segment keys (re-exported through the core
    /// crate's dependency to avoid a second copy).
    pub fn xxh3_128(bytes: &[u8]) -> u128 {
        xxhash_rust::xxh3::xxh3_128(bytes)
    }
}

#[test]
fn corrupt_segments_are_reported_with_their_key() {
    let ds = clustered(3_000, 2, 16, 4, 21);
    let p = params(Metric::L2, 2);
    let (store, _) = build(&ds, &p);
    let seg_key = store.list("segments/").unwrap()[0].clone();
    let good = store.get(&seg_key).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for _ in 0..20 {
        let mut bad = good.clone();
        let at = rng.gen_range(0..bad.len());
        bad[at] ^= 1 << rng.gen_range(0..8);
        store.put(&seg_key, &bad).unwrap();
        let index = Index::open(store.clone(), "t").unwrap();
        let req = SearchRequest {
            params: SearchParams {
                nprobe: Some(10_000),
                ..SearchParams::default()
            },
            ..request(ds.queries.row(0), 10, None)
        };
        match index.search(&req) {
            Err(e) => assert!(e.to_string().contains(&seg_key), "error names the object: {e}"),
            Ok(_) => panic!("flipped byte {at} went unnoticed"),
        }
    }
    // Truncated manifest.
    let m = store.get(MANIFEST_KEY).unwrap();
    store.put(MANIFEST_KEY, &m[..m.len() / 2]).unwrap();
    let err = Index::open(store.clone(), "t")
        .err()
        .expect("truncated manifest is rejected");
    assert!(err.to_string().contains(MANIFEST_KEY), "{err}");
}

#[test]
fn bad_requests_name_the_field() {
    let ds = clustered(2_000, 1, 8, 4, 2);
    let (store, index) = build(&ds, &params(Metric::L2, 2));
    let q = ds.queries.row(0).to_vec();
    let cases: Vec<(SearchRequest, &str)> = vec![
        (request(&q, 0, None), "k"),
        (request(&q, 10_001, None), "k"),
        (request(&q[..7], 10, None), "vector"),
        (request(&[], 10, None), "vector"),
        (request(&[f32::NAN; 8], 10, None), "vector"),
        (request(&[f32::INFINITY; 8], 10, None), "vector"),
        (request(&q, 10, Some(json!({"weight": 3}))), "filter.weight"),
        (request(&q, 10, Some(json!({"price": "cheap"}))), "filter.price"),
        (request(&q, 10, Some(json!({"color": {"$in": []}}))), "filter.color.$in"),
        (
            request(&q, 10, Some(json!({"color": {"$gt": "red"}}))),
            "filter.color.$gt",
        ),
        (request(&q, 10, Some(json!("price"))), "filter"),
        (
            SearchRequest {
                params: SearchParams {
                    hamming_keep: Some(0.0),
                    ..SearchParams::default()
                },
                ..request(&q, 10, None)
            },
            "params.hamming_keep",
        ),
        (
            SearchRequest {
                include: vec!["vectors".into()],
                ..request(&q, 10, None)
            },
            "include[0]",
        ),
    ];
    for (req, field) in cases {
        match index.search(&req) {
            Err(SearchError::BadRequest { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected a bad request on {field}, got {other:?}"),
        }
    }
    let missing = Index::open(Arc::new(Memory::new()), "nope").err().expect("no index");
    assert_eq!(missing.status(), 404);
    // Attributes come back by name when asked for.
    let resp = index
        .search(&SearchRequest {
            include: vec!["attributes".into()],
            ..request(&q, 3, None)
        })
        .unwrap();
    let attrs = resp.hits[0].attributes.as_ref().unwrap();
    assert!(attrs.contains_key("price") && attrs["color"].is_string());
    drop(store);
}

#[test]
fn every_hit_carries_its_own_rows_attributes() {
    let ds = clustered(3_000, 12, 16, 6, 77);
    let (_store, index) = build(&ds, &params(Metric::L2, 4));
    let names: Vec<String> = ds.attrs.schema.attrs.iter().map(|a| a.name.clone()).collect();
    let mut checked = 0;
    for q in 0..ds.queries.rows {
        for filter in [None, Some(json!({"price": {"$lt": 50}})), Some(json!({"color": "red"}))] {
            let req = SearchRequest {
                include: vec!["attributes".into()],
                ..request(ds.queries.row(q), 25, filter)
            };
            for hit in index.search(&req).unwrap().hits {
                let got = hit.attributes.as_ref().expect("attributes were asked for");
                for name in &names {
                    let want = value_of(&ds.attrs, name, row(&hit.id) as usize).unwrap_or(Value::Null);
                    let same = match (&got[name], &want) {
                        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
                        (a, b) => a == b,
                    };
                    assert!(
                        same,
                        "hit {} attribute {name}: {} but its row has {want}",
                        hit.id, got[name]
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "only {checked} hits checked");
}

#[test]
fn searching_everything_without_pruning_is_exact() {
    // With every partition searched and no Hamming prune, the only remaining step is
    // the ADC bound order with its early stop: the answer must equal brute force.
    let ds = clustered(6_000, 30, 16, 10, 31);
    let (_, index) = build(&ds, &params(Metric::L2, 5));
    let base = prepared(&ds.base, Metric::L2);
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    for q in 0..ds.queries.rows {
        let filter = if q % 2 == 0 {
            None
        } else {
            Some(random_filter(&mut rng, 2))
        };
        let expr = filter.as_ref().and_then(|f| Expr::parse(f, &ds.attrs.schema).unwrap());
        let req = SearchRequest {
            params: SearchParams {
                nprobe: Some(10_000),
                hamming_keep: Some(1.0),
                rerank_factor: Some(10_000),
                safety: None,
                plan: None,
            },
            ..request(ds.queries.row(q), 25, filter)
        };
        let resp = index.search(&req).unwrap();
        assert!(resp.stats.partitions_searched <= 5);
        let truth = brute_force(&base, Metric::L2, &ds.attrs, ds.queries.row(q), expr.as_ref(), 25);
        let got: Vec<(u64, f32)> = resp.hits.iter().map(|h| (row(&h.id), h.distance)).collect();
        let want: Vec<(u64, f32)> = truth.iter().map(|n| (n.id, n.distance)).collect();
        assert_eq!(got, want, "query {q}");
    }
}

/// More lists never lower recall, whatever the filter and however small the re-rank
/// factor: the re-rank stops on a bound (and takes more bounds when it used them all
/// without stopping), so the answer is the exact top-k of the lists searched. Random
/// clustered data, several seeds; filters independent of the vectors, correlated with
/// them (the query's own region) and anti-correlated (the region farthest from it);
/// `nprobe` growing up to every list, where the answer is brute force's.
#[test]
fn recall_never_falls_as_more_lists_are_searched() {
    // A region: which of the first four coordinates is largest.
    let region = |v: &[f32]| (0..4).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap_or(0) as f64;
    let farthest = |v: &[f32]| (0..4).min_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap_or(0) as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    for seed in 0..3u64 {
        let mut ds = clustered(4_000, 10, 16, 8, 500 + seed);
        let column: Vec<f64> = (0..ds.base.rows).map(|i| region(ds.base.row(i))).collect();
        ds.attrs.schema.attrs.push(AttrSpec::numeric("region"));
        ds.attrs.columns.push(column);
        let (_, index) = build(&ds, &params(Metric::L2, 4));
        let lists = index.manifest().lists() as u32;
        let base = prepared(&ds.base, Metric::L2);
        for q in 0..ds.queries.rows {
            let v = ds.queries.row(q);
            let filters = [
                None,
                Some(random_filter(&mut rng, 1)),
                Some(json!({"region": {"$eq": region(v)}})),
                Some(json!({"region": {"$eq": farthest(v)}})),
            ];
            for filter in filters {
                let expr = filter.as_ref().and_then(|f| Expr::parse(f, &ds.attrs.schema).unwrap());
                let truth = brute_force(&base, Metric::L2, &ds.attrs, v, expr.as_ref(), 10);
                let truth_ids: Vec<u64> = truth.iter().map(|n| n.id).collect();
                for rerank_factor in [Some(1), None] {
                    let mut found = 0;
                    for nprobe in [1, 2, 4, 8, 16, lists] {
                        let req = SearchRequest {
                            params: SearchParams {
                                nprobe: Some(nprobe),
                                safety: Some(1.0),
                                rerank_factor,
                                ..SearchParams::default()
                            },
                            ..request(v, 10, filter.clone())
                        };
                        let resp = index.search(&req).unwrap();
                        let now = resp.hits.iter().filter(|h| truth_ids.contains(&row(&h.id))).count();
                        assert!(
                            now >= found,
                            "seed {seed} query {q} filter {filter:?} factor {rerank_factor:?}: \
                             {found} true neighbours at a smaller nprobe, {now} at {nprobe}"
                        );
                        found = now;
                        if nprobe == lists {
                            let got: Vec<(u64, f32)> = resp.hits.iter().map(|h| (row(&h.id), h.distance)).collect();
                            let want: Vec<(u64, f32)> = truth.iter().map(|n| (n.id, n.distance)).collect();
                            assert_eq!(
                                got, want,
                                "seed {seed} query {q} filter {filter:?}: every list is exact"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// A filter whose matches are a region of the data away from the query (a Voronoi
/// cell of the base vectors, three quarters down the cells ranked by distance from the
/// query, ~2 % of the rows) keeps recall@10 at the calibrated defaults: the planner
/// sees the matches clustered and sparser near the query than in the index, and
/// collects the share of them the build measured for such filters.
#[test]
fn a_region_far_from_the_query_keeps_its_recall_at_the_defaults() {
    let mut ds = clustered(20_000, 60, 32, 24, 41);
    let centres: Vec<Vec<f32>> = (0..48).map(|i| ds.base.row(i * 401).to_vec()).collect();
    let by_distance = |v: &[f32]| {
        let mut cells: Vec<(f32, usize)> = centres
            .iter()
            .enumerate()
            .map(|(c, x)| (squash_core::distance::l2sq(v, x), c))
            .collect();
        cells.sort_by(|a, b| a.0.total_cmp(&b.0));
        cells.into_iter().map(|(_, c)| c).collect::<Vec<usize>>()
    };
    let column: Vec<f64> = (0..ds.base.rows)
        .map(|i| by_distance(ds.base.row(i))[0] as f64)
        .collect();
    ds.attrs.schema.attrs.push(AttrSpec::numeric("cell"));
    ds.attrs.columns.push(column);
    let (_, index) = build(&ds, &params(Metric::L2, 8));
    let d = &index.manifest().meta.defaults;
    // Measured by the build: (near / global selectivity edge, share), edges ascending,
    // shares in [0, 1] and never smaller for a sparser bucket.
    let far = &d.far_share;
    assert!(!far.is_empty(), "{d:?}");
    assert!(far.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 >= w[1].1), "{far:?}");
    assert!(far.iter().all(|p| p.0 <= 1.0 && (0.0..=1.0).contains(&p.1)), "{far:?}");
    let base = prepared(&ds.base, Metric::L2);
    let mut recall = 0.0;
    for q in 0..ds.queries.rows {
        let v = ds.queries.row(q);
        let cells = by_distance(v);
        let filter = json!({"cell": {"$eq": cells[cells.len() * 3 / 4] as f64}});
        let expr = Expr::parse(&filter, &ds.attrs.schema).unwrap();
        let truth = brute_force(&base, Metric::L2, &ds.attrs, v, expr.as_ref(), 10);
        let truth_ids: Vec<u64> = truth.iter().map(|n| n.id).collect();
        let resp = index.search(&request(v, 10, Some(filter.clone()))).unwrap();
        for h in &resp.hits {
            assert!(
                naive_matches(&filter, &ds.attrs, row(&h.id) as usize),
                "query {q}: {filter}"
            );
        }
        let ids: Vec<u64> = resp.hits.iter().map(|h| row(&h.id)).collect();
        recall += recall_at(&ids, &truth_ids, 10);
    }
    let recall = recall / ds.queries.rows as f64;
    eprintln!("far cell recall@10 at the defaults: {recall:.4}");
    assert!(recall >= 0.95, "far cell recall@10 {recall:.4}");
}

#[test]
fn every_pipeline_stage_does_its_share() {
    let ds = clustered(20_000, 10, 32, 24, 13);
    let (_, index) = build(&ds, &params(Metric::L2, 8));
    let mut req = request(ds.queries.row(0), 10, None);
    req.params.hamming_keep = Some(0.5);
    // The knobs as given, not as calibrated, so the counts below are known.
    req.params.nprobe = Some(7);
    req.params.safety = Some(500.0);
    let resp = index.search(&req).unwrap();
    let c = resp.stats.candidates;
    assert_eq!(resp.stats.partitions_total, 8);
    // About ten fine lists of ~250 vectors per partition of 2,500. nprobe is 7, but the
    // sufficiency rule wants safety × k = 5,000 candidates: the planner stops at the
    // first list that reaches them, wherever its partition.
    assert!((75..=85).contains(&resp.stats.lists_total), "{:?}", resp.stats);
    assert!(resp.stats.lists_searched > 7, "{:?}", resp.stats);
    let searched = resp.stats.partitions_searched;
    assert!(searched >= 2, "{:?}", resp.stats);
    assert!(c.scanned >= 5_000 && c.scanned < 5_000 + 400, "{c:?}");
    assert_eq!(c.filtered, c.scanned, "no filter keeps everything");
    assert!(c.hamming < c.filtered, "the Hamming prune removes candidates: {c:?}");
    assert_eq!(c.bounded, c.hamming, "the blocked scan bounds every survivor");
    assert!(
        c.reranked * 10 < c.bounded,
        "the bound-order early stop re-ranks few: {c:?}"
    );
    assert_eq!(resp.stats.cache_misses, searched);
    assert!(resp.stats.bytes_fetched > 0);
    let again = index.search(&req).unwrap();
    assert_eq!(
        (
            again.stats.cache_hits,
            again.stats.cache_misses,
            again.stats.bytes_fetched
        ),
        (searched, 0, 0),
        "warm cache"
    );
    assert_eq!(again.hits, resp.hits);
    // A selective filter widens the search (sufficiency rule) but scans few candidates.
    let mut selective = request(ds.queries.row(0), 10, Some(json!({"price": {"$lt": 5}})));
    selective.params.nprobe = Some(7);
    selective.params.safety = Some(500.0);
    let f = index.search(&selective).unwrap();
    assert_eq!(f.stats.partitions_searched, 8, "{:?}", f.stats);
    assert!(f.stats.candidates.filtered * 10 < f.stats.candidates.scanned);
}
