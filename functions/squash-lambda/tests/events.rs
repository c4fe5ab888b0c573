//! The sample events in `events/` through the coordinator's routes and the worker's
//! handler, and the whole fan-out over the real wire format (JSON envelope of base64
//! bincode) with each logical worker a service of its own, all without Lambda.

use serde_json::{json, Value};
use squash_api::{BatchRequest, PlanChoice, SearchRequest, WireReply, WorkerPayload, WorkerRequest, WorkerResponse};
use squash_engine::cost::Route;
use squash_engine::invoker::WorkerInvoker;
use squash_engine::search::Index;
use squash_lambda::events::{handle_event, kind, parse_http, EventKind};
use squash_lambda::service::{json_reply, ROUTES};
use squash_lambda::{Config, Coordinator, WorkerService};
use squash_storage::{LocalDir, ObjectStore};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

const SEARCH: &str = include_str!("../../../events/apigw-search.json");
const SEARCH_BASE64: &str = include_str!("../../../events/apigw-search-base64.json");
const FUNCTION_URL: &str = include_str!("../../../events/function-url-search.json");
const DESCRIBE: &str = include_str!("../../../events/apigw-describe.json");
const BAD: &str = include_str!("../../../events/apigw-bad-request.json");
const MISSING: &str = include_str!("../../../events/apigw-missing-index.json");
const RAW: &str = include_str!("../../../events/raw-search.json");
const RAW_DESCRIBE: &str = include_str!("../../../events/raw-describe.json");
const WORKER: &str = include_str!("../../../events/worker-request.json");
const URL_BATCH: &str = include_str!("../../../events/function-url-batch.json");
const RAW_BATCH: &str = include_str!("../../../events/raw-batch.json");
pub const UPSERT: &str = include_str!("../../../events/apigw-upsert.json");
pub const DELETE: &str = include_str!("../../../events/apigw-delete.json");
pub const RAW_UPSERT: &str = include_str!("../../../events/raw-upsert.json");
pub const RAW_DELETE: &str = include_str!("../../../events/raw-delete.json");

/// Every sample in `events/` with the test that covers it: a new sample fails
/// `every_sample_in_events_is_tested` until it is added here (and tested).
const SAMPLES: &[(&str, &str)] = &[
    ("apigw-search.json", SEARCH),
    ("apigw-search-base64.json", SEARCH_BASE64),
    ("function-url-search.json", FUNCTION_URL),
    ("apigw-describe.json", DESCRIBE),
    ("apigw-bad-request.json", BAD),
    ("apigw-missing-index.json", MISSING),
    ("raw-search.json", RAW),
    ("raw-describe.json", RAW_DESCRIBE),
    ("worker-request.json", WORKER),
    ("function-url-batch.json", URL_BATCH),
    ("raw-batch.json", RAW_BATCH),
    // Tested in `writes.rs`.
    ("apigw-upsert.json", UPSERT),
    ("apigw-delete.json", DELETE),
    ("raw-upsert.json", RAW_UPSERT),
    ("raw-delete.json", RAW_DELETE),
];

/// A root holding the golden fixture as index `golden`.
fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("squash-lambda-events-{}", std::process::id()));
        let src = LocalDir::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/golden-v3/index"
        ));
        let dst = LocalDir::new(root.join("golden"));
        for key in src.list("").unwrap() {
            dst.put(&key, &src.get(&key).unwrap()).unwrap();
        }
        root
    })
}

fn config(workers: &str, branching: &str, depth: &str) -> Config {
    let vars: HashMap<&str, String> = HashMap::from([
        ("SQUASH_INDEX_ROOT", root().display().to_string()),
        ("SQUASH_WORKERS", workers.to_string()),
        ("SQUASH_BRANCHING", branching.to_string()),
        ("SQUASH_DEPTH", depth.to_string()),
    ]);
    Config::from_lookup(&|k| vars.get(k).cloned()).unwrap()
}

fn embedded() -> Index {
    Index::open(Arc::new(LocalDir::new(root().join("golden"))), "golden").unwrap()
}

/// A coordinator searching by itself over the golden index.
fn coordinator() -> Coordinator {
    Coordinator::new(config("0", "4", "3"), None).unwrap()
}

/// Sends an HTTP event through what the coordinator binary runs, and reads the HTTP
/// response it answers: status and JSON body.
fn route(c: &Coordinator, event: &str) -> (u16, Value) {
    let event: Value = serde_json::from_str(event).expect("a JSON event");
    assert_eq!(kind(&event), EventKind::Http);
    let answer = handle_event(c, event).answer;
    assert_eq!(answer["headers"]["content-type"], json!("application/json"), "{answer}");
    assert_eq!(answer["isBase64Encoded"], json!(false), "{answer}");
    let status = answer["statusCode"].as_u64().expect("statusCode") as u16;
    let body = serde_json::from_str(answer["body"].as_str().expect("a text body")).expect("a JSON body");
    (status, body)
}

fn hits(v: &Value) -> Vec<(u64, f32)> {
    v["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| (h["id"].as_u64().unwrap(), h["distance"].as_f64().unwrap() as f32))
        .collect()
}

fn body_of(event: &str) -> SearchRequest {
    let ev: Value = serde_json::from_str(event).unwrap();
    serde_json::from_slice(&parse_http(ev).unwrap().body).unwrap()
}

#[test]
fn every_sample_in_events_is_tested() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = SAMPLES.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "events/ and this test's SAMPLES differ");
    for (name, text) in SAMPLES {
        let event: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = if name.starts_with("raw-") || *name == "worker-request.json" {
            EventKind::Raw
        } else {
            EventKind::Http
        };
        assert_eq!(kind(&event), want, "{name}");
    }
}

#[test]
fn plain_base64_and_function_url_events_get_the_same_answer() {
    let c = coordinator();
    let (status, plain) = route(&c, SEARCH);
    assert_eq!(status, 200, "{plain}");
    assert_eq!(body_of(SEARCH_BASE64), body_of(SEARCH));
    assert_eq!(body_of(FUNCTION_URL), body_of(SEARCH));
    for event in [SEARCH_BASE64, FUNCTION_URL] {
        let (status, body) = route(&c, event);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["hits"], plain["hits"]);
    }
    // API Gateway's $1.00 per million is in the HTTP API's price, not the function URL's.
    let cost = |event: &str| route(&c, event).1["stats"]["cost_usd"].as_f64().expect("cost_usd");
    let fee = cost(SEARCH) - cost(FUNCTION_URL);
    assert!((fee - 1e-6).abs() < 2e-7, "API Gateway's fee: {fee}");
    // A body that claims base64 but is not: 400 naming the body.
    let mut broken: Value = serde_json::from_str(SEARCH_BASE64).unwrap();
    broken["body"] = json!("not base64 at all!");
    let (status, body) = route(&c, &broken.to_string());
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("body")), "{body}");
    // Something with requestContext.http that is not an HTTP event: 400, never a panic.
    let (status, body) = route(&c, r#"{"requestContext": {"http": {"method": 7}}}"#);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
}

#[test]
fn an_answer_that_does_not_serialise_is_a_500_with_a_json_body() {
    // JSON object keys must be strings: serde_json refuses a map keyed by pairs.
    let unserialisable: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
    let reply = json_reply(Ok(unserialisable));
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], json!("internal"), "{}", reply.body);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("internal error"),
        "{}",
        reply.body
    );
    assert_eq!(json_reply(Ok(json!({"a": 1}))).status, 200);
}

#[test]
fn sample_http_events_get_the_embedded_answers() {
    let c = coordinator();
    let (status, body) = route(&c, SEARCH);
    assert_eq!(status, 200, "{body}");
    let want = embedded().search(&body_of(SEARCH)).unwrap();
    assert_eq!(hits(&body).len(), 5);
    assert_eq!(serde_json::to_value(&want.hits).unwrap(), body["hits"]);
    assert_eq!(body["stats"]["cold"], json!(true));
    for h in body["hits"].as_array().unwrap() {
        let a = &h["attributes"];
        assert!(a["price"].as_f64().unwrap() < 60.0, "{h}");
        assert!(["red", "blue"].contains(&a["color"].as_str().unwrap()), "{h}");
    }
    // Warm: nothing fetched the second time.
    let (_, again) = route(&c, SEARCH);
    assert_eq!(
        (again["stats"]["gets"].as_u64(), again["stats"]["cold"].as_bool()),
        (Some(0), Some(false))
    );

    let (status, body) = route(&c, DESCRIBE);
    assert_eq!((status, body["dimension"].as_u64()), (200, Some(12)), "{body}");
    let (status, body) = route(&c, BAD);
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("k")), "{body}");
    let (status, body) = route(&c, MISSING);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
}

#[test]
fn routes_answer_bad_paths_methods_and_names_with_json_errors() {
    let c = coordinator();
    let vector = body_of(SEARCH).vector;
    let good = serde_json::to_vec(&json!({ "vector": vector })).unwrap();
    /// Method, path, body, expected status, expected field.
    type Case<'a> = (&'a str, &'a str, Vec<u8>, u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("GET", "/v1/nothing", vec![], 404, None),
        ("DELETE", "/v1/indexes/golden", vec![], 405, None),
        ("GET", "/v1/indexes/golden/search", vec![], 405, None),
        ("POST", "/v1/indexes/golden/search", vec![], 400, Some("body")),
        (
            "POST",
            "/v1/indexes/golden/search",
            b"{not json".to_vec(),
            400,
            Some("body"),
        ),
        (
            "POST",
            "/v1/indexes/golden/search",
            br#"{"vector":[1],"kk":1}"#.to_vec(),
            400,
            Some("kk"),
        ),
        (
            "POST",
            "/v1/indexes/golden/search",
            vec![b' '; 2 << 20],
            400,
            Some("body"),
        ),
        ("POST", "/v1/indexes/..%2Fx/search", good.clone(), 400, Some("index")),
        ("POST", "/v1/indexes/.hidden/search", good.clone(), 400, Some("index")),
        ("POST", "/v1/indexes/a\u{1}b/search", good.clone(), 400, Some("index")),
        ("GET", "/v1/indexes/..", vec![], 400, Some("index")),
        ("POST", "/v1/indexes/golden/search/", good, 200, None),
    ];
    for (method, path, body, status, field) in cases {
        let r = c.route(method, path, &body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.body);
        if status != 200 {
            assert!(r.body["error"]["message"].is_string(), "{method} {path}: {}", r.body);
        }
        if let Some(f) = field {
            assert_eq!(
                r.body["error"]["field"].as_str(),
                Some(f),
                "{method} {path}: {}",
                r.body
            );
        }
    }
}

#[test]
fn every_declared_route_is_served() {
    let c = coordinator();
    let good = serde_json::to_vec(&json!({ "vector": body_of(SEARCH).vector })).unwrap();
    let batch = serde_json::to_vec(&json!({ "queries": [{ "vector": body_of(SEARCH).vector }] })).unwrap();
    let upsert =
        serde_json::to_vec(&json!({ "vectors": [{"id": 99_999, "vector": body_of(SEARCH).vector }] })).unwrap();
    let delete = serde_json::to_vec(&json!({ "ids": [99_999] })).unwrap();
    // The write routes write: they go to a copy of the index, through a coordinator
    // that takes writes.
    let copy = root().with_extension("routes");
    let dst = LocalDir::new(copy.join("golden"));
    let src = LocalDir::new(root().join("golden"));
    for key in src.list("").unwrap() {
        dst.put(&key, &src.get(&key).unwrap()).unwrap();
    }
    let vars: HashMap<&str, String> = HashMap::from([
        ("SQUASH_INDEX_ROOT", copy.display().to_string()),
        ("SQUASH_WORKERS", "0".to_string()),
        ("SQUASH_WRITES", "on".to_string()),
    ]);
    let writable = Coordinator::new(Config::from_lookup(&|k| vars.get(k).cloned()).unwrap(), None).unwrap();
    assert_eq!(ROUTES.len(), 5);
    for route in ROUTES {
        let (method, template) = route.split_once(' ').expect("METHOD /path");
        let path = template.replace("{index}", "golden");
        let (body, c) = match (method, path.rsplit('/').next()) {
            ("POST", Some("batch")) => (batch.clone(), &c),
            ("POST", Some("upsert")) => (upsert.clone(), &writable),
            ("POST", Some("delete")) => (delete.clone(), &writable),
            ("POST", _) => (good.clone(), &c),
            _ => (vec![], &c),
        };
        let r = c.route(method, &path, &body);
        assert_eq!(r.status, 200, "{route}: {}", r.body);
        let other = if method == "POST" { "PUT" } else { "DELETE" };
        assert_eq!(c.route(other, &path, &body).status, 405, "{other} {path}");
    }
    let r = c.route("GET", "/v2/indexes/golden", &[]);
    assert!(
        r.body["error"]["message"].as_str().unwrap().contains(ROUTES[0]),
        "{}",
        r.body
    );
}

#[test]
fn raw_invokes_search_and_describe() {
    let c = coordinator();
    let raw: Value = serde_json::from_str(RAW).unwrap();
    assert_eq!(kind(&raw), EventKind::Raw);
    let got = handle_event(&c, raw.clone()).answer;
    let req: SearchRequest = serde_json::from_value(raw["search"].clone()).unwrap();
    let want = embedded().search(&req).unwrap();
    assert_eq!(got["hits"], serde_json::to_value(&want.hits).unwrap());
    let described = handle_event(&c, serde_json::from_str(RAW_DESCRIBE).unwrap()).answer;
    assert_eq!(described["count"], json!(600), "{described}");
    let bad = c.raw(&json!({"search": {"vector": [1]}}));
    assert_eq!(
        (bad["status"].as_u64(), bad["error"]["field"].as_str()),
        (Some(400), Some("index"))
    );
}

/// Sends worker requests to per-worker services through the exact bytes a Lambda
/// invoke carries, counting invocations; `fail` makes one worker's invocations fail.
struct Loopback {
    services: OnceLock<Vec<WorkerService>>,
    calls: AtomicU32,
    fail: Mutex<Option<u32>>,
    /// Invocations per worker.
    per_worker: Mutex<HashMap<u32, u32>>,
}

impl WorkerInvoker for Loopback {
    fn invoke_all(&self, requests: &[WorkerRequest]) -> Vec<Result<WorkerResponse, String>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = requests
                .iter()
                .map(|r| {
                    s.spawn(move || {
                        self.calls.fetch_add(1, Ordering::Relaxed);
                        *self.per_worker.lock().unwrap().entry(r.worker).or_default() += 1;
                        if *self.fail.lock().unwrap() == Some(r.worker) {
                            return Err(format!("worker {} is down", r.worker));
                        }
                        let sent = serde_json::to_value(WorkerPayload::wire(r).unwrap()).unwrap();
                        let services = self.services.get().unwrap();
                        let reply = services[r.worker as usize].handle_json(sent);
                        let reply: WireReply = serde_json::from_value(reply).map_err(|e| e.to_string())?;
                        reply.into_response().map_err(|e| e.to_string())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }
}

/// A coordinator whose five workers (b = 2, l = 2) are services of their own, reached
/// through a [`Loopback`].
fn loopback_fan_out() -> (Arc<Loopback>, Coordinator) {
    let cfg = config("5", "2", "2");
    let loopback = Arc::new(Loopback {
        services: OnceLock::new(),
        calls: AtomicU32::new(0),
        fail: Mutex::new(None),
        per_worker: Mutex::new(HashMap::new()),
    });
    let services = (0..5)
        .map(|_| WorkerService::new(cfg.clone(), loopback.clone()).unwrap())
        .collect();
    assert!(loopback.services.set(services).is_ok());
    let c = Coordinator::new(cfg, Some(loopback.clone())).unwrap();
    (loopback, c)
}

#[test]
fn the_wire_fan_out_matches_the_embedded_mode_and_reports_failures() {
    // Five workers, b = 2, l = 2: the golden index's three partitions go to at most three
    // workers; force a tree by searching all of them.
    let (loopback, c) = loopback_fan_out();
    let index = embedded();
    let mut req = body_of(SEARCH);
    req.params.nprobe = Some(3);
    req.params.safety = Some(1e6);
    // The golden index fits the coordinator's cache: it would search by itself.
    req.params.plan = Some(PlanChoice::Fanout);
    let got = c.search("golden", &req).unwrap();
    assert_eq!(got.stats.plan, "fanout");
    let want = index.search(&req).unwrap();
    assert_eq!(got.hits, want.hits);
    assert_eq!(got.stats.partitions_searched, 3);
    let owners: std::collections::BTreeSet<usize> = (0..3).map(|p| Index::owner(p, 5)).collect();
    assert_eq!(got.stats.invocations as usize, owners.len());
    assert_eq!(loopback.calls.load(Ordering::Relaxed) as usize, owners.len());
    assert_eq!(
        got.stats.cold_workers as usize,
        owners.len(),
        "first request of each service"
    );
    let again = c.search("golden", &req).unwrap();
    assert_eq!(
        (again.stats.gets, again.stats.cold_workers, again.stats.cache_hits),
        (0, 0, 3)
    );

    // A worker that stays down: the search fails and names a partition it owned.
    let down = *owners.iter().next().unwrap() as u32;
    *loopback.fail.lock().unwrap() = Some(down);
    let err = c.search("golden", &req).unwrap_err();
    assert_eq!(err.code(), "worker_failed");
    assert!(err.to_string().contains("is down"), "{err}");
}

#[test]
fn the_sample_worker_request_is_served() {
    struct NoChildren;
    impl WorkerInvoker for NoChildren {
        fn invoke_all(&self, _: &[WorkerRequest]) -> Vec<Result<WorkerResponse, String>> {
            panic!("the sample has no children")
        }
    }
    let w = WorkerService::new(config("1", "4", "3"), Arc::new(NoChildren)).unwrap();
    let handled = squash_lambda::events::handle_worker_event(&w, serde_json::from_str(WORKER).unwrap());
    assert_eq!(handled.summary, "ok");
    let reply: WireReply = serde_json::from_value(handled.answer).unwrap();
    let resp = reply.into_response().unwrap();
    assert_eq!(resp.answers.len(), 1, "one query, one answer");
    let answer = &resp.answers[0];
    assert_eq!(answer.outcomes.len(), 3);
    assert!(
        answer.outcomes.iter().all(|o| o.error.is_none()),
        "{:?}",
        answer.outcomes
    );
    let req: WorkerRequest = serde_json::from_str(WORKER).unwrap();
    let mut search = body_of(SEARCH);
    search.vector = req.queries[0].query.clone();
    search.filter = None;
    search.include.clear();
    search.params.nprobe = Some(3);
    search.params.safety = Some(1e6);
    let want = embedded().search(&search).unwrap();
    // The sample's query is the coordinator's prepared (unit-length) vector, rounded.
    assert_eq!(
        answer.hits.iter().map(|h| h.id).collect::<Vec<_>>(),
        want.hits.iter().map(|h| h.id.as_u64().unwrap()).collect::<Vec<_>>()
    );
    for (g, w) in answer.hits.iter().zip(&want.hits) {
        assert!((g.distance - w.distance).abs() < 1e-5, "{g:?} {w:?}");
    }
    // Garbage in: an error reply, never a panic.
    for bad in [json!({"wire": "%%%"}), json!({"index": 3}), json!([1, 2]), json!(null)] {
        let r = w.handle_json(bad.clone());
        assert!(r["error"].is_string(), "{bad} -> {r}");
    }
    let escape = json!({"index": "../etc", "segments": [], "queries": [{"slot": 0, "query": [1.0], "k": 1,
        "filter": null, "rerank_factor": 1, "hamming_keep": 1.0, "with_attributes": false, "parts": []}]});
    assert!(w.handle_json(escape)["error"].as_str().unwrap().contains("index"));
}

/// 100 queries (random vectors, every third with the sample's filter, k from 1 to 40),
/// as one batch and one at a time, through the whole wire fan-out (W = 5, b = 2, l = 2)
/// and locally: the same answers, each worker invoked at most once per batch.
#[test]
fn the_batch_route_answers_as_single_queries_do_on_both_plans() {
    let (loopback, c) = loopback_fan_out();
    let sample = body_of(SEARCH);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let queries: Vec<SearchRequest> = (0..100)
        .map(|i| SearchRequest {
            vector: (0..12).map(|_| (next() * 8.0 - 4.0) as f32).collect(),
            k: 1 + i % 40,
            offset: 0,
            filter: (i % 3 == 0).then(|| sample.filter.clone()).flatten(),
            include: if i % 2 == 0 { vec!["attributes".into()] } else { vec![] },
            params: squash_api::SearchParams {
                nprobe: Some(1 + (i % 3) as u32),
                ..Default::default()
            },
            allow_partial: false,
            consistency: None,
        })
        .collect();
    let index = embedded();
    for plan in [PlanChoice::Fanout, PlanChoice::Local] {
        let forced: Vec<SearchRequest> = queries
            .iter()
            .map(|q| {
                let mut q = q.clone();
                q.params.plan = Some(plan);
                q
            })
            .collect();
        loopback.per_worker.lock().unwrap().clear();
        let before = loopback.calls.load(Ordering::Relaxed);
        let batch = c
            .batch_via(
                "golden",
                &BatchRequest {
                    queries: forced.clone(),
                },
                Route::FunctionUrl,
            )
            .unwrap();
        let calls = loopback.calls.load(Ordering::Relaxed) - before;
        assert_eq!(batch.results.len(), 100);
        assert_eq!(batch.stats.plan, plan.as_str());
        assert_eq!(batch.stats.invocations, calls, "{plan:?}");
        let per_worker = loopback.per_worker.lock().unwrap().clone();
        assert!(per_worker.values().all(|&n| n == 1), "{plan:?}: {per_worker:?}");
        match plan {
            PlanChoice::Fanout => assert!((2..=5).contains(&calls), "{calls} invocations"),
            PlanChoice::Local => assert_eq!(calls, 0),
        }
        assert!(
            batch.stats.cost_usd > 0.0 && batch.stats.billed_ms >= 1.0,
            "{:?}",
            batch.stats
        );
        for (i, (got, q)) in batch.results.iter().zip(&forced).enumerate() {
            let single = c.search_via("golden", q, Route::FunctionUrl).unwrap();
            assert_eq!(got.hits, single.hits, "{plan:?} query {i}");
            assert_eq!(
                got.hits,
                index.search(q).unwrap().hits,
                "{plan:?} query {i} vs embedded"
            );
            assert_eq!(got.hits.len(), q.k.min(single.hits.len()));
            assert_eq!(got.stats.batch, 100);
            assert_eq!(got.stats.partitions_searched, single.stats.partitions_searched);
            assert_eq!(got.stats.candidates, single.stats.candidates, "{plan:?} query {i}");
            assert!((got.stats.cost_usd * 100.0 - batch.stats.cost_usd).abs() < 1e-12);
        }
    }
    // A bad query rejects the whole batch, naming it.
    let mut bad = queries.clone();
    bad[7].k = 0;
    let e = c
        .batch_via("golden", &BatchRequest { queries: bad }, Route::Invoke)
        .unwrap_err();
    assert_eq!((e.status(), e.to_string().contains("queries[7].k")), (400, true), "{e}");
    let mut mixed = queries.clone();
    mixed[1].params.plan = Some(PlanChoice::Local);
    mixed[2].params.plan = Some(PlanChoice::Fanout);
    let e = c
        .batch_via("golden", &BatchRequest { queries: mixed }, Route::Invoke)
        .unwrap_err();
    assert!(e.to_string().contains("queries[2].params.plan"), "{e}");
    let e = c
        .batch_via(
            "golden",
            &BatchRequest {
                queries: vec![queries[0].clone(); 101],
            },
            Route::Invoke,
        )
        .unwrap_err();
    assert!(e.to_string().contains("'queries'"), "{e}");
}

#[test]
fn batch_samples_answer_in_order() {
    let c = coordinator();
    let (status, body) = route(&c, URL_BATCH);
    assert_eq!(status, 200, "{body}");
    let ev: Value = serde_json::from_str(URL_BATCH).unwrap();
    let req: BatchRequest = serde_json::from_slice(&parse_http(ev).unwrap().body).unwrap();
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), req.queries.len());
    for (got, q) in results.iter().zip(&req.queries) {
        let want = embedded().search(q).unwrap();
        assert_eq!(got["hits"], serde_json::to_value(&want.hits).unwrap());
        assert_eq!(got["stats"]["plan"], json!("local"));
    }
    assert_eq!(body["stats"]["queries"], json!(3));
    let raw = handle_event(&c, serde_json::from_str(RAW_BATCH).unwrap()).answer;
    let raw_results = raw["results"].as_array().expect("raw results");
    let sent: Value = serde_json::from_str(RAW_BATCH).unwrap();
    let req = BatchRequest::from_queries(sent["batch"].clone()).unwrap();
    assert_eq!(raw_results.len(), req.queries.len());
    for (got, q) in raw_results.iter().zip(&req.queries) {
        assert_eq!(
            got["hits"],
            serde_json::to_value(&embedded().search(q).unwrap().hits).unwrap()
        );
    }
    let bad = c.raw(&json!({"index": "golden", "batch": [{"vector": [1.0]}, {"k": 3}]}));
    assert_eq!(
        (bad["status"].as_u64(), bad["error"]["field"].as_str()),
        (Some(400), Some("queries[1].vector")),
        "{bad}"
    );
    let bad = c.raw(&json!({"index": "golden", "batch": {"vector": [1.0]}}));
    assert_eq!(bad["error"]["field"].as_str(), Some("batch"), "{bad}");
}
