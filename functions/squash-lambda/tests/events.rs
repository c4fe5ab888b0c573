//! The sample events in `events/` through the coordinator's routes and the worker's
//! handler, and the whole fan-out over the real wire format (JSON envelope of base64
//! bincode) with each logical worker a service of its own, all without Lambda.

use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use serde_json::{json, Value};
use squash_api::{SearchRequest, WireReply, WorkerPayload, WorkerRequest, WorkerResponse};
use squash_lambda::service::ROUTES;
use squash_lambda::{Config, Coordinator, WorkerService};
use squash_search::invoker::WorkerInvoker;
use squash_search::search::Index;
use squash_storage::{LocalDir, ObjectStore};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

const SEARCH: &str = include_str!("../../../events/apigw-search.json");
const DESCRIBE: &str = include_str!("../../../events/apigw-describe.json");
const BAD: &str = include_str!("../../../events/apigw-bad-request.json");
const MISSING: &str = include_str!("../../../events/apigw-missing-index.json");
const RAW: &str = include_str!("../../../events/raw-search.json");
const WORKER: &str = include_str!("../../../events/worker-request.json");

/// A root holding the golden fixture as index `golden`.
fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("squash-lambda-events-{}", std::process::id()));
        let src = LocalDir::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/golden-v1/index"
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

/// Routes an API Gateway v2 event the way the coordinator binary does.
fn route(c: &Coordinator, event: &str) -> (u16, Value) {
    let ev: ApiGatewayV2httpRequest = serde_json::from_str(event).expect("a valid API Gateway v2 event");
    let body = ev.body.unwrap_or_default();
    let path = ev.raw_path.unwrap_or_default();
    let reply = c.route(ev.request_context.http.method.as_str(), &path, body.as_bytes());
    (reply.status, reply.body)
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
    serde_json::from_str(ev["body"].as_str().unwrap()).unwrap()
}

#[test]
fn sample_http_events_get_the_embedded_answers() {
    let c = Coordinator::new(config("0", "4", "3"), None);
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
    let c = Coordinator::new(config("0", "4", "3"), None);
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
    let c = Coordinator::new(config("0", "4", "3"), None);
    let good = serde_json::to_vec(&json!({ "vector": body_of(SEARCH).vector })).unwrap();
    assert_eq!(ROUTES.len(), 2);
    for route in ROUTES {
        let (method, template) = route.split_once(' ').expect("METHOD /path");
        let path = template.replace("{index}", "golden");
        let body = if method == "POST" { good.clone() } else { vec![] };
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
    let c = Coordinator::new(config("0", "4", "3"), None);
    let raw: Value = serde_json::from_str(RAW).unwrap();
    let got = c.raw(&raw);
    let req: SearchRequest = serde_json::from_value(raw["search"].clone()).unwrap();
    let want = embedded().search(&req).unwrap();
    assert_eq!(got["hits"], serde_json::to_value(&want.hits).unwrap());
    assert_eq!(
        c.raw(&json!({"index": "golden", "describe": true}))["count"],
        json!(600)
    );
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
}

impl WorkerInvoker for Loopback {
    fn invoke_all(&self, requests: Vec<WorkerRequest>) -> Vec<Result<WorkerResponse, String>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = requests
                .into_iter()
                .map(|r| {
                    s.spawn(move || {
                        self.calls.fetch_add(1, Ordering::Relaxed);
                        if *self.fail.lock().unwrap() == Some(r.worker) {
                            return Err(format!("worker {} is down", r.worker));
                        }
                        let sent = serde_json::to_value(WorkerPayload::wire(&r).unwrap()).unwrap();
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

#[test]
fn the_wire_fan_out_matches_the_embedded_mode_and_reports_failures() {
    // Five workers, b = 2, l = 2: the golden index's three partitions go to at most three
    // workers; force a tree by searching all of them.
    let cfg = config("5", "2", "2");
    let loopback = Arc::new(Loopback {
        services: OnceLock::new(),
        calls: AtomicU32::new(0),
        fail: Mutex::new(None),
    });
    let services = (0..5)
        .map(|_| WorkerService::new(cfg.clone(), loopback.clone()))
        .collect();
    assert!(loopback.services.set(services).is_ok());
    let c = Coordinator::new(cfg, Some(loopback.clone()));
    let index = embedded();
    let mut req = body_of(SEARCH);
    req.params.nprobe = Some(3);
    req.params.safety = Some(1e6);
    let got = c.search("golden", &req).unwrap();
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
        fn invoke_all(&self, _: Vec<WorkerRequest>) -> Vec<Result<WorkerResponse, String>> {
            panic!("the sample has no children")
        }
    }
    let w = WorkerService::new(config("1", "4", "3"), Arc::new(NoChildren));
    let reply: WireReply = serde_json::from_value(w.handle_json(serde_json::from_str(WORKER).unwrap())).unwrap();
    let resp = reply.into_response().unwrap();
    assert_eq!(resp.outcomes.len(), 3);
    assert!(resp.outcomes.iter().all(|o| o.error.is_none()), "{:?}", resp.outcomes);
    let req: WorkerRequest = serde_json::from_str(WORKER).unwrap();
    let mut search = body_of(SEARCH);
    search.vector = req.query.clone();
    search.filter = None;
    search.include.clear();
    search.params.nprobe = Some(3);
    search.params.safety = Some(1e6);
    let want = embedded().search(&search).unwrap();
    // The sample's query is the coordinator's prepared (unit-length) vector, rounded.
    assert_eq!(
        resp.hits.iter().map(|h| h.id).collect::<Vec<_>>(),
        want.hits.iter().map(|h| h.id).collect::<Vec<_>>()
    );
    for (g, w) in resp.hits.iter().zip(&want.hits) {
        assert!((g.distance - w.distance).abs() < 1e-5, "{g:?} {w:?}");
    }
    // Garbage in: an error reply, never a panic.
    for bad in [json!({"wire": "%%%"}), json!({"index": 3}), json!([1, 2]), json!(null)] {
        let r = w.handle_json(bad.clone());
        assert!(r["error"].is_string(), "{bad} -> {r}");
    }
    let escape = json!({"index": "../etc", "query": [1.0], "k": 1, "filter": null, "segments": [],
        "rerank_factor": 1, "hamming_keep": 1.0, "with_attributes": false});
    assert!(w.handle_json(escape)["error"].as_str().unwrap().contains("index"));
}
