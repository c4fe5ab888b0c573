//! The write routes: the `events/` write samples, upserts and deletes over HTTP and raw
//! invokes seen at once by a strong search and within the manifest TTL otherwise,
//! string ids in answers, bad writes named by field, and writes refused when the
//! deployment has them off.

use crate::events::{DELETE, RAW_DELETE, RAW_UPSERT, UPSERT};
use serde_json::{json, Value};
use squash_build::build::{build_index_with_ids, BuildParams};
use squash_lambda::events::handle_event;
use squash_lambda::{Config, Coordinator};
use squash_storage::{LocalDir, ObjectStore};
use squash_write::Ids;
use squash_write::Matrix;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A fresh root holding a copy of the golden fixture as index `golden`.
fn golden_root(tag: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("squash-lambda-writes-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let src = LocalDir::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/golden-v3/index"
    ));
    let dst = LocalDir::new(root.join("golden"));
    for key in src.list("").unwrap() {
        dst.put(&key, &src.get(&key).unwrap()).unwrap();
    }
    root
}

fn coordinator(root: &Path, vars: &[(&str, &str)]) -> Coordinator {
    let mut map: HashMap<String, String> = HashMap::from([
        ("SQUASH_INDEX_ROOT".to_string(), root.display().to_string()),
        ("SQUASH_WORKERS".to_string(), "0".to_string()),
    ]);
    map.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Coordinator::new(Config::from_lookup(&|k| map.get(k).cloned()).unwrap(), None).unwrap()
}

/// An HTTP event through the coordinator: status and JSON body.
fn send(c: &Coordinator, event: &Value) -> (u16, Value) {
    let answer = handle_event(c, event.clone()).answer;
    let status = answer["statusCode"].as_u64().expect("statusCode") as u16;
    (status, serde_json::from_str(answer["body"].as_str().unwrap()).unwrap())
}

/// The sample `event` with another path and body.
fn post(sample: &str, index: &str, route: &str, body: &Value) -> Value {
    let mut e: Value = serde_json::from_str(sample).unwrap();
    let path = format!("/v1/indexes/{index}/{route}");
    e["rawPath"] = json!(path);
    e["requestContext"]["http"]["path"] = json!(path);
    e["pathParameters"]["index"] = json!(index);
    e["body"] = json!(body.to_string());
    e
}

fn search(c: &Coordinator, index: &str, v: &Value, extra: Value) -> Value {
    let mut body = json!({"vector": v, "k": 3, "include": ["attributes"]});
    for (k, x) in extra.as_object().unwrap() {
        body[k] = x.clone();
    }
    let (status, body) = send(c, &post(UPSERT, index, "search", &body));
    assert_eq!(status, 200, "{body}");
    body
}

fn sample_vectors() -> (Value, Value) {
    let up: Value = serde_json::from_str(RAW_UPSERT).unwrap();
    (
        up["upsert"]["vectors"][0]["vector"].clone(),
        up["upsert"]["vectors"][1]["vector"].clone(),
    )
}

#[test]
fn the_write_samples_are_seen_by_strong_searches_at_once_and_by_others_within_the_ttl() {
    let root = golden_root("samples");
    let writer = coordinator(&root, &[("SQUASH_WRITES", "on")]);
    // Two readers that opened the index before the write: one trusting its manifest for
    // 60 s, one for 0.2 s.
    let slow = coordinator(&root, &[("SQUASH_MANIFEST_TTL", "60")]);
    let quick = coordinator(&root, &[("SQUASH_MANIFEST_TTL", "0.2")]);
    let (v1, v2) = sample_vectors();
    for r in [&slow, &quick] {
        assert_ne!(search(r, "golden", &v1, json!({}))["hits"][0]["id"], json!(100001));
    }
    let (status, report) = send(&writer, &serde_json::from_str(UPSERT).unwrap());
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["version"].as_u64(), report["inserted"].as_u64()),
        (Some(1), Some(2)),
        "{report}"
    );
    // The writer's own next search sees it; the slow reader only when it asks for a
    // strong read; the quick one once its TTL has passed.
    let hit = &search(&writer, "golden", &v1, json!({}))["hits"][0];
    assert_eq!(
        (hit["id"].clone(), hit["attributes"]["color"].clone()),
        (json!(100001), json!("red"))
    );
    assert_ne!(
        search(&slow, "golden", &v1, json!({}))["hits"][0]["id"],
        json!(100001),
        "TTL 60 s"
    );
    let strong = search(&slow, "golden", &v2, json!({"consistency": "strong"}));
    assert_eq!(strong["hits"][0]["id"], json!(100002));
    assert_eq!(
        strong["hits"][0]["attributes"]["color"],
        json!("teal"),
        "a new category"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(search(&quick, "golden", &v1, json!({}))["hits"][0]["id"], json!(100001));
    // A filter on the new category finds it.
    let f = search(&writer, "golden", &v2, json!({"filter": {"color": "teal"}}));
    assert_eq!(f["hits"].as_array().unwrap().len(), 1, "{f}");
    // Delete 100001 and 5 over HTTP; the raw delete removes the teal one by filter.
    let (status, report) = send(&writer, &serde_json::from_str(DELETE).unwrap());
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["deleted"].as_u64(), report["missing"].as_u64()),
        (Some(2), Some(0)),
        "{report}"
    );
    let raw = writer.raw(&serde_json::from_str(RAW_DELETE).unwrap());
    assert_eq!(raw["deleted"], json!(1), "{raw}");
    for v in [&v1, &v2] {
        let hits = search(&slow, "golden", v, json!({"consistency": "strong", "k": 50}));
        for h in hits["hits"].as_array().unwrap() {
            assert!(![json!(100001), json!(100002), json!(5)].contains(&h["id"]), "{h}");
        }
    }
    // The raw upsert puts both back (version 4).
    let raw = writer.raw(&serde_json::from_str(RAW_UPSERT).unwrap());
    assert_eq!(
        (raw["version"].as_u64(), raw["inserted"].as_u64()),
        (Some(4), Some(2)),
        "{raw}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn writes_are_refused_when_the_deployment_has_them_off_and_nothing_changes() {
    let root = golden_root("off");
    let before = LocalDir::new(root.join("golden")).list("").unwrap();
    let c = coordinator(&root, &[]);
    for sample in [UPSERT, DELETE] {
        let (status, body) = send(&c, &serde_json::from_str(sample).unwrap());
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{body}"
        );
        assert!(
            body["error"]["message"].as_str().unwrap().contains("writes are off"),
            "{body}"
        );
    }
    let raw = c.raw(&serde_json::from_str(RAW_UPSERT).unwrap());
    assert_eq!(raw["status"], json!(403), "{raw}");
    assert_eq!(LocalDir::new(root.join("golden")).list("").unwrap(), before);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_writes_get_a_400_naming_the_field_and_write_nothing() {
    let root = golden_root("bad");
    let before = LocalDir::new(root.join("golden")).list("").unwrap();
    let c = coordinator(&root, &[("SQUASH_WRITES", "on")]);
    let (v1, _) = sample_vectors();
    let vec = |id: Value| json!({"id": id, "vector": v1});
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"vectors": [vec(json!(1)), vec(json!(1))]}),
            "vectors[1].id",
            "duplicate id 1",
        ),
        (
            json!({"vectors": [vec(json!(1)), vec(json!("a"))]}),
            "vectors[1].id",
            "mixes",
        ),
        (
            json!({"vectors": [vec(json!("doc-1"))]}),
            "vectors[0].id",
            "integer ids",
        ),
        (json!({"vectors": [vec(json!(-3))]}), "vectors[0].id", "negative"),
        (json!({"vectors": [vec(json!(1.5))]}), "vectors[0].id", "not an integer"),
        (
            json!({"vectors": [{"id": 1, "vector": [1.0, 2.0]}]}),
            "vectors[0].vector",
            "dimension 12",
        ),
        (
            json!({"vectors": [vec(json!(1)), {"id": 2, "vector": [1.0]}]}),
            "vectors[1].vector",
            "has 1 values",
        ),
        (
            json!({"vectors": [{"id": 1, "vector": v1, "attributes": {"weight": 3}}]}),
            "vectors[0].attributes.weight",
            "unknown attribute",
        ),
        (
            json!({"vectors": [{"id": 1, "vector": v1, "attributes": {"price": "cheap"}}]}),
            "vectors[0].attributes.price",
            "numeric",
        ),
        (
            json!({"vectors": [{"id": 1, "vector": v1, "attributes": {"color": [1]}}]}),
            "vectors[0].attributes.color",
            "categorical",
        ),
        (
            json!({"vectors": [{"id": 1, "vector": v1, "colour": 3}]}),
            "vectors[0].colour",
            "unknown field",
        ),
        (json!({"vectors": []}), "vectors", "1 to 1000"),
        (json!({"vector": []}), "vector", "unknown field"),
    ];
    for (body, field, words) in cases {
        let (status, reply) = send(&c, &post(UPSERT, "golden", "upsert", &body));
        assert_eq!(status, 400, "{body}: {reply}");
        assert_eq!(reply["error"]["field"], json!(field), "{body}: {reply}");
        let msg = reply["error"]["message"].as_str().unwrap();
        assert!(msg.contains(words), "{field}: {msg}");
    }
    let long = "x".repeat(6 << 20);
    let (status, reply) = send(
        &c,
        &post(UPSERT, "golden", "upsert", &json!({"vectors": [], "pad": long})),
    );
    assert_eq!(
        (status, reply["error"]["field"].as_str()),
        (400, Some("body")),
        "oversized"
    );
    for (body, field) in [
        (json!({}), "ids"),
        (json!({"ids": [1], "filter": {"price": 3}}), "filter"),
        (json!({"ids": [1, "a"]}), "ids[1]"),
        (json!({"filter": {"weight": 3}}), "filter.weight"),
        (json!({"ids": []}), "ids"),
    ] {
        let (status, reply) = send(&c, &post(DELETE, "golden", "delete", &body));
        assert_eq!(
            (status, reply["error"]["field"].clone()),
            (400, json!(field)),
            "{body}: {reply}"
        );
    }
    assert_eq!(
        LocalDir::new(root.join("golden")).list("").unwrap(),
        before,
        "nothing written"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn string_ids_round_trip_through_http_and_batch_answers() {
    let root = std::env::temp_dir().join(format!("squash-lambda-writes-strings-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let store = LocalDir::new(root.join("docs"));
    let dim = 6;
    let data: Vec<f32> = (0..300 * dim)
        .map(|i| ((i * 7919 % 1000) as f32 / 50.0).sin())
        .collect();
    let names: Vec<String> = (0..300).map(|i| format!("doc-{i}")).collect();
    let params = BuildParams {
        partitions: Some(2),
        ..BuildParams::default()
    };
    build_index_with_ids(
        &store,
        Matrix {
            rows: 300,
            cols: dim,
            data: data.clone(),
        },
        Default::default(),
        &Ids::Strings(names),
        &params,
    )
    .unwrap();
    let c = coordinator(&root, &[("SQUASH_WRITES", "on")]);
    let far = json!([9.0, 9.0, 9.0, 9.0, 9.0, 9.0]);
    let (status, report) = send(
        &c,
        &post(
            UPSERT,
            "docs",
            "upsert",
            &json!({"vectors": [{"id": "späť-1", "vector": far}]}),
        ),
    );
    assert_eq!((status, report["inserted"].clone()), (200, json!(1)), "{report}");
    let hits = search(&c, "docs", &far, json!({}));
    assert_eq!(hits["hits"][0]["id"], json!("späť-1"), "{hits}");
    let row7: Vec<f32> = data[7 * dim..8 * dim].to_vec();
    let batch = json!({"queries": [{"vector": far, "k": 1}, {"vector": row7, "k": 1}]});
    let (status, reply) = send(&c, &post(UPSERT, "docs", "search/batch", &batch));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["results"][0]["hits"][0]["id"], json!("späť-1"));
    assert_eq!(reply["results"][1]["hits"][0]["id"], json!("doc-7"));
    let (status, report) = send(&c, &post(DELETE, "docs", "delete", &json!({"ids": ["doc-7", "nope"]})));
    assert_eq!(
        (status, report["deleted"].clone(), report["missing"].clone()),
        (200, json!(1), json!(1)),
        "{report}"
    );
    let hits = search(&c, "docs", &json!(row7), json!({"k": 10}));
    assert!(
        hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["id"] != json!("doc-7")),
        "{hits}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// List attributes over HTTP: an upsert gives `tags` as an array (a tag the build never
/// saw, an empty list), a strong search finds it by `$contains` and answers with the
/// array; a single value, an element of the wrong kind or too many elements is a 400
/// naming the field.
#[test]
fn list_attributes_travel_through_http_upserts_and_searches() {
    use squash_core::attrs::{AttrSpec, ListColumn, Schema};
    use squash_write::Attributes;
    let root = std::env::temp_dir().join(format!("squash-lambda-lists-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let store = LocalDir::new(root.join("tagged"));
    let dim = 6;
    let data: Vec<f32> = (0..300 * dim).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    let spec = AttrSpec::categorical("tags", vec!["a".into(), "b".into(), "c".into()]).into_list();
    let mut list = ListColumn::default();
    let mut counts = Vec::new();
    for r in 0..300 {
        let es: Vec<f64> = (0..r % 3).map(|j| ((r + j) % 3) as f64).collect();
        counts.push(es.len() as f64);
        list.push(&es);
    }
    let attrs = Attributes {
        schema: Schema { attrs: vec![spec] },
        columns: vec![counts],
        lists: vec![Some(list)],
    };
    let params = BuildParams {
        partitions: Some(2),
        ..BuildParams::default()
    };
    let base = Matrix {
        rows: 300,
        cols: dim,
        data,
    };
    build_index_with_ids(&store, base, attrs, &Ids::U64((0..300).collect()), &params).unwrap();
    let c = coordinator(&root, &[("SQUASH_WRITES", "on")]);
    let far = json!([9.0, 9.0, 9.0, 9.0, 9.0, 9.0]);
    let near = json!([8.0, 9.0, 9.0, 9.0, 9.0, 9.0]);
    let body = json!({"vectors": [
        {"id": 1000, "vector": far, "attributes": {"tags": ["new", "a"]}},
        {"id": 1001, "vector": near, "attributes": {"tags": []}},
    ]});
    let (status, report) = send(&c, &post(UPSERT, "tagged", "upsert", &body));
    assert_eq!(status, 200, "{report}");
    let strong = |filter: Value| {
        search(
            &c,
            "tagged",
            &far,
            json!({"k": 1, "filter": filter, "consistency": "strong"}),
        )
    };
    let found = strong(json!({"tags": {"$contains": "new"}}));
    assert_eq!(found["hits"][0]["id"], json!(1000), "{found}");
    assert_eq!(found["hits"][0]["attributes"]["tags"], json!(["new", "a"]));
    let found = strong(json!({"tags": {"$containsAll": ["new", "a"]}}));
    assert_eq!(found["hits"][0]["id"], json!(1000), "{found}");
    let found = strong(json!({"tags": {"$nin": ["new", "a", "b", "c"]}}));
    assert_eq!(
        found["hits"][0]["id"],
        json!(1001),
        "the empty list holds none: {found}"
    );
    assert_eq!(found["hits"][0]["attributes"]["tags"], json!([]));
    let found = strong(json!({"tags": {"$contains": "nothing-has-this"}}));
    assert_eq!(found["hits"], json!([]), "{found}");
    let many: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
    for (attrs, field) in [
        (json!({"tags": "a"}), "vectors[0].attributes.tags"),
        (json!({"tags": ["a", 3]}), "vectors[0].attributes.tags[1]"),
        (json!({"tags": many}), "vectors[0].attributes.tags"),
    ] {
        let body = json!({"vectors": [{"id": 5, "vector": far, "attributes": attrs}]});
        let (status, reply) = send(&c, &post(UPSERT, "tagged", "upsert", &body));
        assert_eq!(
            (status, &reply["error"]["field"]),
            (400, &json!(field)),
            "{body}: {reply}"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// A key with many values (600 rows, 300 tenants: a value index beside the manifest)
/// through the coordinator: searched by tenant, rendered in hits, extended by an HTTP
/// upsert with a tenant the build never saw (strongly consistent), a damaged value index
/// reported by name.
#[test]
fn tenant_keys_travel_through_http_upserts_and_searches() {
    use squash_core::attrs::{AttrSpec, Schema};
    use squash_write::Attributes;
    let root = std::env::temp_dir().join(format!("squash-lambda-tenants-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let store = LocalDir::new(root.join("keyed"));
    let dim = 4;
    let rows = 600;
    let data: Vec<f32> = (0..rows * dim).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    let name = |r: usize| format!("tenant-{:03}", r / 2);
    let spec = AttrSpec::categorical("tenant", (0..rows).map(name).collect());
    let column: Vec<f64> = (0..rows).map(|r| spec.code_of(&name(r)).unwrap()).collect();
    let attrs = Attributes {
        schema: Schema { attrs: vec![spec] },
        columns: vec![column],
        lists: Vec::new(),
    };
    let params = BuildParams {
        partitions: Some(2),
        ..BuildParams::default()
    };
    let base = Matrix { rows, cols: dim, data };
    let report = build_index_with_ids(
        &store,
        base.clone(),
        attrs,
        &Ids::U64((0..rows as u64).collect()),
        &params,
    )
    .unwrap();
    let key = report.manifest.meta.schema.attrs[0]
        .values
        .clone()
        .expect("a value index")
        .key;
    let c = coordinator(&root, &[("SQUASH_WRITES", "on")]);
    // Rows 84 and 85 are tenant-042's: from anywhere, those two and nothing else.
    let v = json!(base.data[10 * dim..11 * dim].to_vec());
    let found = search(&c, "keyed", &v, json!({"k": 5, "filter": {"tenant": "tenant-042"}}));
    let ids: Vec<u64> = found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids.iter().copied().collect::<std::collections::BTreeSet<_>>(),
        [84, 85].into(),
        "{found}"
    );
    assert_eq!(found["hits"][0]["attributes"]["tenant"], json!("tenant-042"));
    let found = search(
        &c,
        "keyed",
        &v,
        json!({"k": 5, "filter": {"tenant": {"$in": ["tenant-001", "nobody"]}}}),
    );
    assert_eq!(found["hits"].as_array().unwrap().len(), 2, "{found}");
    // A new tenant by HTTP upsert, seen by a strong read.
    let far = json!([9.0, 9.0, 9.0, 9.0]);
    let body = json!({"vectors": [{"id": 5000, "vector": far, "attributes": {"tenant": "newcomer"}}]});
    let (status, reply) = send(&c, &post(UPSERT, "keyed", "upsert", &body));
    assert_eq!(status, 200, "{reply}");
    let found = search(
        &c,
        "keyed",
        &json!([0.0, 0.0, 0.0, 0.0]),
        json!({"k": 3, "filter": {"tenant": "newcomer"}, "consistency": "strong"}),
    );
    assert_eq!(found["hits"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["hits"][0]["id"], json!(5000));
    assert_eq!(found["hits"][0]["attributes"]["tenant"], json!("newcomer"));
    // The write replaced the value index; a damaged current one is named in the error.
    let current = squash_engine::search::load_manifest(&store, "keyed").unwrap();
    let now = current.meta.schema.attrs[0].values.clone().unwrap().key;
    assert_ne!(now, key, "the write wrote a new value index");
    store.put(&now, b"not a value index").unwrap();
    let body = json!({"vector": far, "k": 1, "consistency": "strong"});
    // This coordinator re-reads the manifest but keeps the value index it holds under
    // the same (content-addressed) key: no second read of megabytes per manifest read.
    let (status, reply) = send(&c, &post(UPSERT, "keyed", "search", &body));
    assert_eq!(status, 200, "{reply}");
    // A new container reads it and reports it by name.
    let fresh = coordinator(&root, &[("SQUASH_WRITES", "on")]);
    let (status, reply) = send(&fresh, &post(UPSERT, "keyed", "search", &body));
    assert_eq!(status, 500, "{reply}");
    assert!(reply.to_string().contains(&now), "{reply}");
    let _ = std::fs::remove_dir_all(&root);
}
