//! Bad requests, through the HTTP route and the raw invoke path alike: every one gets a
//! 4xx JSON error naming the field (or a 404 for an index that does not exist), none
//! panics, and the same request gets the same verdict on both paths.

use serde_json::{json, Value};
use squash_lambda::{Config, Coordinator};
use squash_storage::{LocalDir, ObjectStore};
use std::collections::HashMap;
use std::path::PathBuf;

const RAW: &str = include_str!("../../events/raw-search.json");

/// A coordinator over the golden fixture (index `golden`: 12 dims, cosine; attributes
/// price and stock numeric, color categorical), searching by itself.
fn coordinator() -> Coordinator {
    let root = std::env::temp_dir().join(format!("squash-bad-input-{}", std::process::id()));
    let src = LocalDir::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden-v3/index"));
    let dst = LocalDir::new(root.join("golden"));
    for key in src.list("").expect("fixture") {
        dst.put(&key, &src.get(&key).expect("fixture object")).expect("copy");
    }
    let vars = HashMap::from([
        ("SQUASH_INDEX_ROOT", root.display().to_string()),
        ("SQUASH_WORKERS", "0".to_string()),
    ]);
    Coordinator::new(Config::from_lookup(&|k| vars.get(k).cloned()).expect("config"), None).expect("coordinator")
}

fn good_vector() -> Value {
    let raw: Value = serde_json::from_str(RAW).expect("events/raw-search.json");
    raw["search"]["vector"].clone()
}

/// A request with `vector` set to the good vector, then `extra` merged over it.
fn request(extra: Value) -> Value {
    let mut r = json!({ "vector": good_vector() });
    if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            r.insert(k.clone(), v.clone());
        }
    }
    r
}

fn nested(depth: usize) -> Value {
    let mut f = json!({"price": {"$lt": 5}});
    for _ in 0..depth {
        f = json!({ "$and": [f] });
    }
    f
}

/// What a case must get: status, error code and the field named (a trailing `*` matches
/// any rest).
struct Want(u16, &'static str, Option<&'static str>);

fn field_matches(got: Option<&str>, want: Option<&str>) -> bool {
    match (got, want) {
        (Some(g), Some(w)) if w.ends_with('*') => g.starts_with(w.trim_end_matches('*')),
        _ => got == want,
    }
}

#[test]
fn every_bad_request_gets_a_4xx_naming_the_field_on_both_paths() {
    let c = coordinator();
    let vector_of = |n: usize| json!(vec![0.5; n]);
    let strings = json!(vec!["x"; 12]);
    let mut cases: Vec<(&str, Vec<u8>, Want)> = vec![
        (
            "malformed JSON",
            br#"{"vector": [1, 2"#.to_vec(),
            Want(400, "bad_request", Some("body")),
        ),
        (
            "not JSON at all",
            b"{not json".to_vec(),
            Want(400, "bad_request", Some("body")),
        ),
        ("empty body", b"".to_vec(), Want(400, "bad_request", Some("body"))),
        (
            "an array, not an object",
            b"[[1, 2], 10]".to_vec(),
            Want(400, "bad_request", Some("body")),
        ),
        (
            "trailing garbage",
            br#"{"vector": [1]} {}"#.to_vec(),
            Want(400, "bad_request", Some("body")),
        ),
        (
            "NaN literal",
            br#"{"vector": [NaN, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]}"#.to_vec(),
            Want(400, "bad_request", Some("vector[0]")),
        ),
        (
            "infinite number",
            br#"{"vector": [1e999, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]}"#.to_vec(),
            Want(400, "bad_request", Some("vector[0]")),
        ),
        (
            "oversized body",
            vec![b' '; 2 << 20],
            Want(400, "bad_request", Some("body")),
        ),
    ];
    let json_cases: Vec<(&str, Value, Want)> = vec![
        (
            "missing vector",
            json!({"k": 3}),
            Want(400, "bad_request", Some("vector")),
        ),
        (
            "extra field",
            request(json!({"limit": 3})),
            Want(400, "bad_request", Some("limit")),
        ),
        (
            "extra field in params",
            request(json!({"params": {"probes": 3}})),
            Want(400, "bad_request", Some("params.probes")),
        ),
        (
            "wrong vector length",
            json!({"vector": vector_of(3)}),
            Want(400, "bad_request", Some("vector")),
        ),
        (
            "empty vector",
            json!({"vector": []}),
            Want(400, "bad_request", Some("vector")),
        ),
        (
            "zero vector under cosine",
            json!({"vector": vector_of(12).as_array().map(|v| vec![0.0; v.len()])}),
            Want(400, "bad_request", Some("vector")),
        ),
        (
            "vector of strings",
            json!({"vector": strings}),
            Want(400, "bad_request", Some("vector[0]")),
        ),
        (
            "vector not a list",
            json!({"vector": "0.1,0.2"}),
            Want(400, "bad_request", Some("vector")),
        ),
        ("k = 0", request(json!({"k": 0})), Want(400, "bad_request", Some("k"))),
        (
            "k above the maximum",
            request(json!({"k": 10001})),
            Want(400, "bad_request", Some("k")),
        ),
        (
            "offset not below k",
            request(json!({"k": 5, "offset": 5})),
            Want(400, "bad_request", Some("offset")),
        ),
        (
            "negative offset",
            request(json!({"offset": -1})),
            Want(400, "bad_request", Some("offset")),
        ),
        (
            "negative k",
            request(json!({"k": -1})),
            Want(400, "bad_request", Some("k")),
        ),
        (
            "k as a string",
            request(json!({"k": "10"})),
            Want(400, "bad_request", Some("k")),
        ),
        (
            "unknown attribute",
            request(json!({"filter": {"weight": {"$lt": 3}}})),
            Want(400, "bad_request", Some("filter.weight")),
        ),
        (
            "unknown operator",
            request(json!({"filter": {"price": {"$near": 3}}})),
            Want(400, "bad_request", Some("filter.price.$near")),
        ),
        (
            "wrong operand type",
            request(json!({"filter": {"price": {"$lt": "cheap"}}})),
            Want(400, "bad_request", Some("filter.price.$lt")),
        ),
        (
            "category as a number",
            request(json!({"filter": {"color": {"$eq": 3}}})),
            Want(400, "bad_request", Some("filter.color.$eq")),
        ),
        (
            "$contains on a single-valued attribute",
            request(json!({"filter": {"color": {"$contains": "red"}}})),
            Want(400, "bad_request", Some("filter.color.$contains")),
        ),
        (
            "$containsAny on a single-valued attribute",
            request(json!({"filter": {"price": {"$containsAny": [1, 2]}}})),
            Want(400, "bad_request", Some("filter.price.$containsAny")),
        ),
        (
            "an array compared to a single value",
            request(json!({"filter": {"color": {"$eq": ["red"]}}})),
            Want(400, "bad_request", Some("filter.color.$eq")),
        ),
        (
            "empty $in",
            request(json!({"filter": {"color": {"$in": []}}})),
            Want(400, "bad_request", Some("filter.color.$in")),
        ),
        (
            "empty $and",
            request(json!({"filter": {"$and": []}})),
            Want(400, "bad_request", Some("filter.$and")),
        ),
        (
            "filter not an object",
            request(json!({"filter": [1]})),
            Want(400, "bad_request", Some("filter")),
        ),
        (
            "filter nested too deep",
            request(json!({"filter": nested(40)})),
            Want(400, "bad_request", Some("filter.$and[0].$and[0]*")),
        ),
        (
            "unknown include",
            request(json!({"include": ["everything"]})),
            Want(400, "bad_request", Some("include[0]")),
        ),
        (
            "hamming_keep out of range",
            request(json!({"params": {"hamming_keep": 1.5}})),
            Want(400, "bad_request", Some("params.hamming_keep")),
        ),
        (
            "nprobe as a fraction",
            request(json!({"params": {"nprobe": 0.5}})),
            Want(400, "bad_request", Some("params.nprobe")),
        ),
    ];
    for (name, body, want) in json_cases {
        cases.push((name, serde_json::to_vec(&body).expect("json"), want));
    }
    // JSON nested far beyond any limit: serde_json's recursion limit, not a stack overflow.
    let deep = format!(
        r#"{{"vector": [1], "filter": {}{}}}"#,
        r#"{"$and": ["#.repeat(5000),
        "]}".repeat(5000)
    );
    cases.push((
        "JSON nested 5000 deep",
        deep.into_bytes(),
        Want(400, "bad_request", Some("filter.$and[0]*")),
    ));

    let mut tried = 0;
    for (name, body, Want(status, code, field)) in &cases {
        // The HTTP route.
        let r = c.route("POST", "/v1/indexes/golden/search", body);
        let e = &r.body["error"];
        assert_eq!(r.status, *status, "{name} over HTTP: {}", r.body);
        assert_eq!(e["code"], *code, "{name} over HTTP: {}", r.body);
        assert!(
            field_matches(e["field"].as_str(), *field),
            "{name} over HTTP: {}",
            r.body
        );
        assert!(!e["message"].as_str().unwrap_or("").is_empty(), "{name}: no message");
        tried += 1;
        // The raw invoke path, when the body is JSON at all (a raw invoke always is).
        let Ok(search) = serde_json::from_slice::<Value>(body) else {
            continue;
        };
        if body.len() > 1 << 20 {
            continue; // the HTTP body limit; Lambda caps invoke payloads at 6 MB itself
        }
        let raw = c.raw(&json!({"index": "golden", "search": search}));
        let raw_field = match field {
            Some("body") => Some("search"),
            f => *f,
        };
        assert_eq!(raw["status"], *status, "{name} as a raw invoke: {raw}");
        assert_eq!(raw["error"]["code"], *code, "{name} as a raw invoke: {raw}");
        assert!(
            field_matches(raw["error"]["field"].as_str(), raw_field),
            "{name} as a raw invoke: {raw}"
        );
        tried += 1;
    }

    // Index names, on both paths.
    let good = serde_json::to_vec(&request(json!({}))).expect("json");
    let names: [(&str, u16, Option<&str>); 7] = [
        ("nosuchindex", 404, None),
        ("..", 400, Some("index")),
        (".hidden", 400, Some("index")),
        ("a\u{1}b", 400, Some("index")),
        ("-dash", 400, Some("index")),
        ("%2e%2e", 400, Some("index")),
        ("x".repeat(200).leak(), 400, Some("index")),
    ];
    for (index, status, field) in names {
        let r = c.route("POST", &format!("/v1/indexes/{index}/search"), &good);
        assert_eq!(r.status, status, "index {index:?} over HTTP: {}", r.body);
        assert_eq!(
            r.body["error"]["field"].as_str(),
            field,
            "index {index:?} over HTTP: {}",
            r.body
        );
        let raw = c.raw(&json!({"index": index, "search": request(json!({}))}));
        assert_eq!(raw["status"], status, "index {index:?} as a raw invoke: {raw}");
        tried += 2;
    }
    for index in ["a/b", "../x", "a/../b"] {
        let raw = c.raw(&json!({"index": index, "search": request(json!({}))}));
        assert_eq!(
            (raw["status"].as_u64(), raw["error"]["field"].as_str()),
            (Some(400), Some("index")),
            "index {index:?}: {raw}"
        );
        let r = c.route("POST", &format!("/v1/indexes/{index}/search"), &good);
        assert!(
            r.status == 400 || r.status == 404,
            "index {index:?} over HTTP: {}",
            r.body
        );
        tried += 2;
    }
    // Malformed raw invokes.
    for event in [
        json!({}),
        json!({"index": 3, "search": {}}),
        json!({"index": "golden"}),
        json!("search"),
        json!(null),
    ] {
        let raw = c.raw(&event);
        assert_eq!(raw["status"], 400, "{event}: {raw}");
        tried += 1;
    }
    // And a good request still works after all that.
    assert_eq!(c.route("POST", "/v1/indexes/golden/search", &good).status, 200);
    eprintln!("bad input: {tried} bad requests answered with the right 4xx and field");
}
