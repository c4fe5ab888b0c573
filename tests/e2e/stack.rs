//! The S3 store and the serverless stack (coordinator and workers as real processes
//! against the local S3 server) answer as the embedded mode does.

use super::*;

/// The local S3 endpoint that `scripts/with-s3.sh` starts (`make test` runs the suite
/// through it). Without one the test fails, naming what is missing: it never passes
/// without having run.
pub(crate) fn s3_endpoint() -> String {
    match std::env::var("SQUASH_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => e,
        _ => panic!(
            "this test needs an S3-compatible server: SQUASH_TEST_S3_ENDPOINT is not set; \
             run the suite with `make test`, or `scripts/with-s3.sh cargo test --release --workspace`"
        ),
    }
}

#[test]
fn s3_store_conforms_and_serves_the_same_answers() {
    use squash_s3::S3Store;
    let endpoint = s3_endpoint();
    let run = format!(
        "s3://squash-test/run-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let open = |suffix: &str| {
        S3Store::open_with_endpoint(&format!("{run}/{suffix}"), Some(&endpoint))
            .unwrap()
            .with_multipart(5 << 20, 5 << 20)
    };
    // The server is ready when a real PUT succeeds.
    let probe = open("probe");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while let Err(e) = probe.put("ready", b"x") {
        assert!(
            std::time::Instant::now() < deadline,
            "S3 server at {endpoint} not ready: {e}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    // 12 MiB: three 5 MiB parts through the multipart path.
    squash_storage::testing::conformance(&open("conformance"), 12 << 20);

    let ds = clustered(4_000, 10, 16, 6, 41);
    let p = params(Metric::Cosine, 3);
    let s3 = Arc::new(squash_storage::Counting::new(open("index")));
    build_index(s3.as_ref(), ds.base.clone(), ds.attrs.clone(), &p).unwrap();
    let (_, local) = build(&ds, &p);
    let remote = Index::open(s3.clone(), "index").unwrap();
    for q in 0..ds.queries.rows {
        let req = request(ds.queries.row(q), 10, Some(json!({"price": {"$lt": 50}})));
        assert_eq!(remote.search(&req).unwrap().hits, local.search(&req).unwrap().hits);
    }
    let gets = s3.counts().gets;
    let warm = remote.search(&request(ds.queries.row(0), 10, None)).unwrap();
    assert_eq!(warm.stats.bytes_fetched, 0);
    assert_eq!(s3.counts().gets, gets, "warm queries make no GETs");
    let missing = Index::open(Arc::new(open("nothing-here")), "nothing")
        .err()
        .expect("no index");
    assert_eq!(missing.status(), 404);
}

#[test]
fn the_fan_out_tree_gives_the_single_worker_answer() {
    use squash_engine::tree::Fanout;
    let ds = clustered(8_000, 12, 16, 8, 53);
    let p = params(Metric::L2, 24);
    let (store, single) = build(&ds, &p);
    let shapes = [(24, 4, 3), (7, 2, 2), (30, 2, 1), (5, 1, 3), (24, 4, 1)];
    for (workers, branching, depth) in shapes {
        let fanout = Fanout {
            workers,
            branching,
            depth,
        };
        let tree = Index::open_with_fanout(store.clone(), "test", fanout).unwrap();
        for q in 0..ds.queries.rows {
            let filter = (q % 2 == 1).then(|| json!({"price": {"$lt": 30}}));
            let mut req = request(ds.queries.row(q), 10, filter);
            req.params.nprobe = Some(10_000);
            let a = single.search(&req).unwrap();
            let b = tree.search(&req).unwrap();
            assert_eq!(a.hits, b.hits, "{fanout:?} query {q}");
            assert_eq!(b.stats.partitions_searched, 24);
            assert_eq!(
                b.stats.cache_hits + b.stats.cache_misses,
                24,
                "every partition reported once"
            );
            // Invocations: one per distinct non-empty worker group, capped by the tree.
            let groups: std::collections::BTreeSet<usize> = (0..24).map(|p| Index::owner(p, workers)).collect();
            assert_eq!(
                b.stats.invocations as usize,
                groups.len().min(fanout.capacity()),
                "{fanout:?}"
            );
        }
    }
}

/// The local serverless stack (`scripts/local-stack.sh`) for one test: stopped on drop,
/// whether the test passed or not.
struct Stack {
    env: Vec<(String, String)>,
}

impl Stack {
    fn script(&self, cmd: &str) -> std::process::Output {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        std::process::Command::new(format!("{root}/scripts/local-stack.sh"))
            .arg(cmd)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run scripts/local-stack.sh")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let out = self.script("down");
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

/// A base port with `n` free ports above it (the emulators').
fn free_ports(n: u16) -> u16 {
    let start = 20_000 + (std::process::id() % 20_000) as u16;
    (0..200)
        .map(|i| start.wrapping_add(i * 16) % 40_000 + 20_000)
        .find(|&base| (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()))
        .expect("free ports")
}

fn http(method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    let req = ureq::request(method, url).timeout(std::time::Duration::from_secs(60));
    let resp = match body {
        Some(b) => req.send_json(b.clone()),
        None => req.call(),
    };
    let resp = match resp {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    (status, resp.into_json().expect("a JSON body"))
}

#[test]
fn the_serverless_stack_answers_like_the_embedded_mode() {
    let endpoint = s3_endpoint();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let bin = std::env::var("SQUASH_BIN_DIR").unwrap_or_else(|_| format!("{root}/target/release"));
    let missing: Vec<&str> = ["squash", "squash-coordinator", "squash-worker"]
        .into_iter()
        .filter(|b| !std::path::Path::new(&format!("{bin}/{b}")).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "this test runs the release binaries, and {missing:?} are not in {bin}: \
         run `cargo build --release --bins` first (`make test` does)"
    );
    let run = format!("s3://squash-test/stack-{}/indexes", std::process::id());
    let ds = clustered(6_000, 12, 16, 8, 61);
    let p = params(Metric::L2, 9);
    let s3 = squash_s3::S3Store::open_with_endpoint(&format!("{run}/idx"), Some(&endpoint)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while s3.put(".probe", b"x").is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "S3 server at {endpoint} not ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    build_index(&s3, ds.base.clone(), ds.attrs.clone(), &p).unwrap();
    let (_, embedded) = build(&ds, &p);

    let port = free_ports(5);
    let stack = Stack {
        env: vec![
            (
                "STACK_DIR".into(),
                format!("{root}/target/test-stack-{}", std::process::id()),
            ),
            ("STACK_PORT".into(), port.to_string()),
            ("STACK_S3_ENDPOINT".into(), endpoint.clone()),
            ("STACK_INDEX_ROOT".into(), run.clone()),
            ("SQUASH_BIN_DIR".into(), bin.clone()),
            // W = 4 workers, b = 2, l = 2: a real tree (an inner worker invokes another).
            ("SQUASH_WORKERS".into(), "4".into()),
            ("SQUASH_BRANCHING".into(), "2".into()),
            ("SQUASH_DEPTH".into(), "2".into()),
        ],
    };
    let up = stack.script("up");
    assert!(
        up.status.success(),
        "local stack did not start: {}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let url = |path: &str| format!("http://127.0.0.1:{port}/lambda-url/squash-coordinator{path}");

    // Fanned out through the real tree first (the index fits the coordinator's cache, so
    // by itself it would search alone), then searched by the coordinator itself.
    let mut first = true;
    let mut batch = Vec::new();
    for plan in [PlanChoice::Fanout, PlanChoice::Local] {
        for q in 0..ds.queries.rows {
            for filter in [None, Some(json!({"price": {"$lt": 40}, "color": {"$ne": "red"}}))] {
                let mut req = request(ds.queries.row(q), 10, filter);
                req.params.nprobe = Some(10_000);
                req.include = vec!["attributes".into()];
                let forced = squash_api::SearchRequest {
                    params: squash_api::SearchParams {
                        plan: Some(plan),
                        ..req.params.clone()
                    },
                    ..req.clone()
                };
                let (status, body) = http(
                    "POST",
                    &url("/v1/indexes/idx/search"),
                    Some(&serde_json::to_value(&forced).unwrap()),
                );
                assert_eq!(status, 200, "{body}");
                let got: squash_api::SearchResponse = serde_json::from_value(body).unwrap();
                let want = embedded.search(&req).unwrap();
                assert_eq!(got.hits, want.hits, "query {q} {plan:?}");
                assert_eq!(got.stats.partitions_searched, 9);
                assert_eq!(got.stats.plan, plan.as_str());
                assert_eq!(got.stats.cold, first, "{:?}", got.stats);
                assert!(got.stats.cost_usd > 0.0, "{:?}", got.stats);
                if first {
                    assert!(got.stats.gets > 0 && got.stats.cold_workers > 0, "{:?}", got.stats);
                    // Four owners of nine partitions in a tree of b = 2, l = 2.
                    assert!(got.stats.invocations >= 2, "{:?}", got.stats);
                }
                if plan == PlanChoice::Local {
                    assert_eq!(got.stats.invocations, 0, "{:?}", got.stats);
                    batch.push((req, want.hits));
                }
                first = false;
            }
        }
    }
    // Every partition has been read once by its owner and by the coordinator: the same
    // query again is served entirely from warm caches, on either plan.
    for plan in [PlanChoice::Fanout, PlanChoice::Local] {
        let mut req = request(ds.queries.row(0), 10, None);
        req.params.nprobe = Some(10_000);
        req.params.plan = Some(plan);
        let (_, body) = http(
            "POST",
            &url("/v1/indexes/idx/search"),
            Some(&serde_json::to_value(&req).unwrap()),
        );
        let warm: squash_api::SearchResponse = serde_json::from_value(body).unwrap();
        assert_eq!(
            (
                warm.stats.gets,
                warm.stats.bytes_fetched,
                warm.stats.cache_hits,
                warm.stats.cold_workers
            ),
            (0, 0, 9, 0),
            "{:?}",
            warm.stats
        );
    }
    // Every query at once through the batch route: the coordinator's own plan (local:
    // the index fits its cache), then fanned out, each worker invoked at most once.
    for plan in [None, Some(PlanChoice::Fanout)] {
        let queries: Vec<serde_json::Value> = batch
            .iter()
            .map(|(req, _)| {
                let mut req = req.clone();
                req.params.plan = plan;
                serde_json::to_value(req).unwrap()
            })
            .collect();
        let (status, body) = http(
            "POST",
            &url("/v1/indexes/idx/search/batch"),
            Some(&json!({ "queries": queries })),
        );
        assert_eq!(status, 200, "{body}");
        let got: squash_api::BatchResponse = serde_json::from_value(body).unwrap();
        assert_eq!(got.results.len(), batch.len());
        for (i, (r, (_, want))) in got.results.iter().zip(&batch).enumerate() {
            assert_eq!(&r.hits, want, "batch query {i} {plan:?}");
        }
        match plan {
            None => assert_eq!((got.stats.plan.as_str(), got.stats.invocations), ("local", 0)),
            Some(_) => assert!(
                got.stats.plan == "fanout" && (2..=4).contains(&got.stats.invocations),
                "{:?}",
                got.stats
            ),
        }
    }

    let (status, body) = http("GET", &url("/v1/indexes/idx"), None);
    assert_eq!((status, body["count"].as_u64()), (200, Some(6_000)), "{body}");
    let (status, body) = http(
        "POST",
        &url("/v1/indexes/nope/search"),
        Some(&json!({"vector": vec![0.0; 16]})),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    let (status, body) = http(
        "POST",
        &url("/v1/indexes/idx/search"),
        Some(&json!({"vector": vec![0.0; 16], "k": 0})),
    );
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("k")), "{body}");
    let (status, body) = http(
        "POST",
        &url("/v1/indexes/idx/search"),
        Some(&json!({"vector": vec![1.0; 3]})),
    );
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("vector")),
        "{body}"
    );
    drop(stack);
}
