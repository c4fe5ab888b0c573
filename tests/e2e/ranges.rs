//! Segments read by byte ranges answer as whole reads do, and corruption in what a
//! ranged read fetches is caught.

use super::*;

/// An index over `store`'s "test" index served by one in-process worker reading
/// segments by ranges or whole.
fn index_reading(store: Arc<Memory>, ranges: squash_engine::worker::RangeReads, cache: u64) -> Index {
    use squash_engine::in_process::InProcessInvoker;
    use squash_engine::worker::Worker;
    let manifest = squash_engine::search::load_manifest(store.as_ref(), "test").expect("manifest");
    let worker = Arc::new(Worker::new(store, cache).with_range_reads(ranges));
    Index::with_invoker(
        "test",
        manifest,
        Arc::new(InProcessInvoker::new(worker)),
        squash_engine::tree::Fanout::default(),
    )
}

#[test]
fn range_reads_answer_as_whole_reads_do_with_fewer_bytes() {
    use squash_engine::worker::RangeReads;
    let ds = clustered(24_000, 12, 32, 16, 77);
    let (store, _) = build(&ds, &params(Metric::L2, 6));
    let filters = [
        None,
        Some(json!({"price": {"$lt": 30}})),
        Some(json!({"price": {"$lt": 0.5}})),
        Some(json!({"color": "red"})),
    ];
    let (mut whole_bytes, mut ranged_bytes) = (0u64, 0u64);
    let warm = index_reading(store.clone(), RangeReads::On, 1 << 30);
    for round in 0..2 {
        for q in 0..ds.queries.rows {
            for f in &filters {
                let mut req = request(ds.queries.row(q), 10, f.clone());
                req.include = vec!["attributes".into()];
                // Cold workers, one per query, as a new container has.
                let whole = index_reading(store.clone(), RangeReads::Off, 0)
                    .search(&req)
                    .expect("whole");
                let ranged = index_reading(store.clone(), RangeReads::On, 0)
                    .search(&req)
                    .expect("ranged");
                assert_eq!(ranged.hits, whole.hits, "query {q} filter {f:?}");
                assert!(!whole.hits.is_empty());
                whole_bytes += whole.stats.bytes_fetched;
                ranged_bytes += ranged.stats.bytes_fetched;
                // A warm worker keeps what it read by ranges and fetches only what a
                // later query adds (the second round finds most of it cached).
                let warm_hits = warm.search(&req).expect("warm").hits;
                assert_eq!(warm_hits, whole.hits, "round {round} query {q} filter {f:?}");
            }
        }
    }
    assert!(
        ranged_bytes * 3 < whole_bytes,
        "ranged reads fetched {ranged_bytes} bytes, whole reads {whole_bytes}"
    );
}

#[test]
fn corruption_read_by_ranges_is_caught_or_never_read() {
    use squash_engine::worker::RangeReads;
    let ds = clustered(6_000, 3, 16, 4, 78);
    let (store, _) = build(&ds, &params(Metric::L2, 2));
    let seg_key = store.list("segments/").unwrap()[0].clone();
    let good = store.get(&seg_key).unwrap();
    let req = SearchRequest {
        params: SearchParams {
            nprobe: Some(10_000),
            ..SearchParams::default()
        },
        ..request(ds.queries.row(0), 10, Some(json!({"price": {"$lt": 60}})))
    };
    let intact = index_reading(store.clone(), RangeReads::On, 0).search(&req).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut caught = 0;
    for _ in 0..40 {
        let mut bad = good.clone();
        let at = rng.gen_range(0..bad.len());
        bad[at] ^= 1 << rng.gen_range(0..8);
        store.put(&seg_key, &bad).unwrap();
        match index_reading(store.clone(), RangeReads::On, 0).search(&req) {
            Err(e) => {
                assert!(e.to_string().contains(&seg_key), "error names the object: {e}");
                caught += 1;
            }
            // A byte the query never read (an unscanned vector block) changes nothing.
            Ok(r) => assert_eq!(r.hits, intact.hits, "flipped byte {at} changed the answer unnoticed"),
        }
    }
    assert!(caught >= 5, "flips in what the query reads are caught: {caught} of 40");
    store.put(&seg_key, &good).unwrap();
}
