//! Formats over time: a checked-in index of an older format version still reads and
//! answers the same, and versions we no longer read are refused with a rebuild hint.

use super::*;

/// The partition number in a segment key (`segments/p00002-….sqs`).
fn seg_partition(key: &str) -> usize {
    squash_core::naming::Naming::partition_of(key).expect("segment key") as usize
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden-v3")
}

fn golden_dataset() -> (Dataset, Attributes) {
    let ds = clustered(600, 5, 12, 4, 2024);
    let attrs = ds.attrs.clone();
    (ds, attrs)
}

fn golden_queries(ds: &Dataset) -> Vec<(Vec<f32>, Option<Value>)> {
    (0..ds.queries.rows)
        .map(|q| {
            let f = match q % 3 {
                0 => None,
                1 => Some(json!({"price": {"$lt": 40}})),
                _ => Some(json!({"$or": [{"color": "red"}, {"stock": {"$exists": false}}]})),
            };
            (ds.queries.row(q).to_vec(), f)
        })
        .collect()
}

/// Rewrites the golden fixture. Run only when the format changes on purpose:
/// `cargo test -p squash-tests --test e2e -- --ignored regenerate_golden`.
#[test]
#[ignore]
fn regenerate_golden() {
    let (ds, _) = golden_dataset();
    let dir = golden_dir();
    let _ = std::fs::remove_dir_all(&dir);
    let store = LocalDir::new(dir.join("index"));
    build_index(&store, ds.base.clone(), ds.attrs.clone(), &params(Metric::Cosine, 3)).unwrap();
    let index = Index::open(Arc::new(store), "golden").unwrap();
    let mut expected = Vec::new();
    for (v, f) in golden_queries(&ds) {
        let mut req = request(&v, 10, f.clone());
        req.params.nprobe = Some(3);
        let resp = index.search(&req).unwrap();
        expected.push(
            json!({"vector": v, "filter": f, "ids": resp.hits.iter().map(|h| row(&h.id)).collect::<Vec<_>>(),
            "distances": resp.hits.iter().map(|h| h.distance).collect::<Vec<_>>()}),
        );
    }
    std::fs::write(
        dir.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap(),
    )
    .unwrap();
}

#[test]
fn golden_v3_index_still_reads_and_answers() {
    let dir = golden_dir();
    let store = Arc::new(LocalDir::new(dir.join("index")));
    let index = Index::open(store.clone(), "golden").expect("golden manifest reads");
    let m = index.manifest();
    assert_eq!(m.meta.metric, Metric::Cosine);
    assert_eq!((m.meta.count, m.meta.dim, m.partitions()), (600, 12, 3));
    let expected: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert_eq!(expected.len(), 5);
    // Stored vectors are exactly the (normalised) generated ones: brute force over the
    // fixture's own segments must agree with the recorded answers.
    let (ds, attrs) = golden_dataset();
    let base = prepared(&ds.base, Metric::Cosine);
    for e in &expected {
        let v: Vec<f32> = serde_json::from_value(e["vector"].clone()).unwrap();
        let f = if e["filter"].is_null() {
            None
        } else {
            Some(e["filter"].clone())
        };
        let mut req = request(&v, 10, f.clone());
        req.params.nprobe = Some(3);
        let resp = index.search(&req).unwrap();
        let ids: Vec<u64> = resp.hits.iter().map(|h| row(&h.id)).collect();
        let want: Vec<u64> = serde_json::from_value(e["ids"].clone()).unwrap();
        assert_eq!(ids, want, "golden answer changed for filter {f:?}");
        // Distances too: same vectors, same metric, so the same numbers up to the
        // rounding of whichever SIMD kernel this CPU runs.
        let want_distances: Vec<f32> = serde_json::from_value(e["distances"].clone()).unwrap();
        assert_eq!(resp.hits.len(), want_distances.len());
        for (hit, want) in resp.hits.iter().zip(&want_distances) {
            assert!(
                (hit.distance - want).abs() <= 1e-5 * want.abs().max(1.0),
                "golden distance changed for id {} (filter {f:?}): {} vs {want}",
                hit.id,
                hit.distance
            );
        }
        let mut q = v.clone();
        prepare_vector(Metric::Cosine, &mut q, 12, "q").unwrap();
        let expr = f.as_ref().and_then(|f| Expr::parse(f, &attrs.schema).unwrap());
        let truth: Vec<u64> = brute_force(&base, Metric::Cosine, &attrs, &q, expr.as_ref(), 10)
            .iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(ids, truth, "searching every partition is exact");
    }
    for key in store.list("segments/").unwrap() {
        let bytes = store.get(&key).unwrap();
        let seg = squash_core::segment::Segment::decode(&key, bytes.clone()).unwrap();
        assert_eq!(
            seg.meta().partition as usize,
            seg_partition(&key),
            "segment {key} reads"
        );
    }
}

#[test]
fn indexes_of_older_format_versions_are_refused_with_a_rebuild_hint() {
    let old: [(u32, &[u8]); 2] = [
        (1, include_bytes!("../fixtures/v1-manifest.sqm")),
        (2, include_bytes!("../fixtures/v2-manifest.sqm")),
    ];
    for (version, manifest) in old {
        let store = Memory::new();
        store.put(MANIFEST_KEY, manifest).unwrap();
        let err = Index::open(Arc::new(store), "old")
            .err()
            .expect("an old manifest is refused");
        assert_eq!(err.code(), "unsupported_version");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("format version {version}")) && msg.contains("rebuild the index with `squash build`"),
            "{msg}"
        );
    }
}
