//! Writes: upserts and deletes committed as new manifest versions, checked against a
//! model of the live rows (brute force), on the local S3 server; two writers racing;
//! a writer dying at each step; bad input rejected with nothing written.

mod compaction;

use crate::{params, s3_endpoint};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use squash_api::{Id, SearchParams, SearchRequest};
use squash_build::build::build_index_with_ids;
use squash_build::io::{Attributes, Matrix};
use squash_core::attrs::{AttrSpec, Schema};
use squash_core::distance::{exact_distance, prepare_vector, Metric};
use squash_core::filter::Expr;
use squash_engine::search::Index;
use squash_storage::{Fault, Faulty, LocalDir, Memory, ObjectStore};
use squash_tests::{clustered, random_filter, COLORS};
use squash_write::{Delete, Ids, Upsert, Writer};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A live row of the model: vector (prepared) and attribute values (price, color code
/// in the index's dictionary, stock).
#[derive(Clone)]
struct Row {
    vector: Vec<f32>,
    values: [f64; 3],
}

impl Row {
    /// Row `i` of a test dataset: its vector and its price, color and stock.
    fn of(ds: &squash_tests::Dataset, i: usize) -> Row {
        let c = &ds.attrs.columns;
        Row {
            vector: ds.base.row(i).to_vec(),
            values: [c[0][i], c[1][i], c[2][i]],
        }
    }
}

fn s3(suffix: &str) -> Arc<dyn ObjectStore> {
    use squash_s3::S3Store;
    let endpoint = s3_endpoint();
    let uri = format!(
        "s3://squash-test/writes-{}-{}-{suffix}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let store = S3Store::open_with_endpoint(&uri, Some(&endpoint)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while let Err(e) = store.put("ready", b"x") {
        assert!(std::time::Instant::now() < deadline, "S3 server not ready: {e}");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    Arc::new(store)
}

fn search(index: &Index, v: &[f32], k: usize, filter: Option<Value>) -> squash_api::SearchResponse {
    index
        .search(&SearchRequest {
            vector: v.to_vec(),
            k,
            filter,
            include: vec!["attributes".into()],
            params: SearchParams::default(),
            allow_partial: false,
            consistency: None,
            offset: 0,
        })
        .expect("search")
}

/// Attributes of `rows` rows as an upsert gives them: price, color (as strings) and stock.
fn attrs_of(values: &[[f64; 3]]) -> Attributes {
    let names: Vec<String> = COLORS
        .iter()
        .map(|s| s.to_string())
        .chain(["ultraviolet".to_string()])
        .collect();
    let spec = AttrSpec::categorical("color", names.clone());
    Attributes {
        schema: Schema {
            attrs: vec![AttrSpec::numeric("price"), spec.clone(), AttrSpec::numeric("stock")],
        },
        columns: vec![
            values.iter().map(|v| v[0]).collect(),
            values
                .iter()
                .map(|v| {
                    if v[1].is_nan() {
                        f64::NAN
                    } else {
                        spec.code_of(&names[v[1] as usize]).unwrap()
                    }
                })
                .collect(),
            values.iter().map(|v| v[2]).collect(),
        ],
        lists: Vec::new(),
    }
}

/// The model's answer: the ids of the `k` nearest live rows matching `filter`.
fn brute(model: &HashMap<u64, Row>, schema: &Schema, q: &[f32], k: usize, filter: Option<&Value>) -> Vec<u64> {
    let expr = filter.and_then(|f| Expr::parse(f, schema).unwrap());
    let mut all: Vec<(f32, u64)> = model
        .iter()
        .filter(|(_, r)| expr.as_ref().is_none_or(|e| e.matches_scalars(&|a| r.values[a])))
        .map(|(&id, r)| (exact_distance(Metric::L2, q, &r.vector), id))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|x| x.1).collect()
}

#[test]
fn upserts_are_found_replaced_rows_show_new_values_and_deleted_ids_never_return() {
    let store = s3("main");
    let ds = clustered(4_000, 0, 16, 8, 71);
    let ids: Vec<u64> = (0..4_000u64).map(|i| 1_000_000 + i * 7).collect();
    let p = params(Metric::L2, 4);
    build_index_with_ids(
        store.as_ref(),
        ds.base.clone(),
        ds.attrs.clone(),
        &Ids::U64(ids.clone()),
        &p,
    )
    .unwrap();
    let mut model: HashMap<u64, Row> = ids.iter().enumerate().map(|(r, &id)| (id, Row::of(&ds, r))).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    // 300 new rows (from the same clusters, some far outside them) and 100 replaced
    // ones, whose new values widen the cells (price 150+) and the dictionary.
    let fresh = clustered(400, 0, 16, 8, 72);
    let mut up_ids = Vec::new();
    let mut values = Vec::new();
    let mut data = Vec::new();
    for i in 0..400 {
        let id = if i < 300 {
            9_000_000 + i as u64
        } else {
            ids[(i - 300) * 37]
        };
        let mut v = fresh.base.row(i).to_vec();
        if i % 50 == 0 {
            v.iter_mut().for_each(|x| *x *= 4.0);
        }
        let vals = if i >= 300 {
            [150.0 + i as f64, 6.0, rng.gen_range(0..50) as f64]
        } else {
            [
                fresh.attrs.columns[0][i],
                fresh.attrs.columns[1][i],
                fresh.attrs.columns[2][i],
            ]
        };
        up_ids.push(id);
        values.push(vals);
        data.extend_from_slice(&v);
        model.insert(
            id,
            Row {
                vector: v,
                values: vals,
            },
        );
    }
    let writer = Writer::new(store.clone());
    let report = writer
        .upsert(&Upsert {
            ids: Ids::U64(up_ids.clone()),
            vectors: Matrix {
                rows: 400,
                cols: 16,
                data: data.clone(),
            },
            attrs: attrs_of(&values),
        })
        .unwrap();
    assert_eq!(
        (report.inserted, report.replaced, report.version),
        (300, 100, 1),
        "{report:?}"
    );
    assert_eq!(report.count, 4_300);
    let index = Index::open(store.clone(), "w").unwrap();
    assert_eq!(index.manifest().meta.count, 4_300);
    let schema = index.manifest().meta.schema.clone();
    assert_eq!(
        schema.attrs[1].dictionary.last().map(String::as_str),
        Some("ultraviolet")
    );
    for (i, &id) in up_ids.iter().enumerate() {
        let v = &data[i * 16..(i + 1) * 16];
        let color = schema.attrs[1].value_to_json(
            schema.attrs[1]
                .code_of(if values[i][1] == 6.0 {
                    "ultraviolet"
                } else {
                    COLORS[values[i][1] as usize]
                })
                .unwrap(),
        );
        for filter in [
            None,
            Some(json!({"price": values[i][0]})),
            Some(json!({"color": color.clone()})),
        ] {
            let resp = search(&index, v, 5, filter.clone());
            let top = &resp.hits[0];
            assert_eq!(top.id, Id::Num(id), "upserted row {i} ({filter:?}): {:?}", resp.hits);
            assert!(top.distance < 1e-3, "self distance {}", top.distance);
            let a = top.attributes.as_ref().unwrap();
            assert_eq!(a["price"], json!(values[i][0]), "new attributes of {id}");
            assert_eq!(a["color"], color);
        }
    }
    // A replaced id never comes back with its old row.
    for &id in &up_ids[300..] {
        let old_row = ids.iter().position(|&x| x == id).unwrap();
        for h in search(&index, ds.base.row(old_row), 10, None).hits {
            if h.id == Id::Num(id) {
                let d = exact_distance(Metric::L2, ds.base.row(old_row), &model[&id].vector);
                assert!((h.distance - d).abs() < 1e-3, "id {id} answered with its replaced row");
            }
        }
    }
    // Delete 1,000 random ids (old, new and replaced alike), then 1,000 filtered
    // queries: none of them ever comes back, and answers match brute force.
    let mut live: Vec<u64> = model.keys().copied().collect();
    live.sort_unstable();
    live.shuffle(&mut rng);
    let gone: Vec<u64> = live[..1_000].to_vec();
    let mut asked = gone.clone();
    asked.push(77); // never existed
    let report = writer.delete(&Delete::Ids(Ids::U64(asked))).unwrap();
    assert_eq!(
        (report.deleted, report.missing, report.version),
        (1_000, 1, 2),
        "{report:?}"
    );
    for id in &gone {
        model.remove(id);
    }
    let gone: HashSet<u64> = gone.into_iter().collect();
    let index = Index::open(store.clone(), "w").unwrap();
    assert_eq!(index.manifest().meta.count, 3_300);
    let queries = clustered(1_000, 0, 16, 8, 73);
    let (mut found, mut wanted) = (0usize, 0usize);
    for q in 0..1_000 {
        let filter = if q % 4 == 0 {
            None
        } else {
            Some(random_filter(&mut rng, 1))
        };
        let v = queries.base.row(q);
        let resp = search(&index, v, 10, filter.clone());
        for h in &resp.hits {
            let id = h.id.as_u64().unwrap();
            assert!(!gone.contains(&id), "deleted id {id} returned for filter {filter:?}");
            assert!(model.contains_key(&id));
        }
        let truth = brute(&model, &schema, v, 10, filter.as_ref());
        wanted += truth.len();
        found += resp
            .hits
            .iter()
            .filter(|h| truth.contains(&h.id.as_u64().unwrap()))
            .count();
    }
    let recall = found as f64 / wanted.max(1) as f64;
    assert!(recall >= 0.9, "recall@10 after writes: {recall:.3}");
    // A delete by filter removes exactly the live rows it matches.
    let f = json!({"price": {"$gte": 150}});
    let matching: Vec<u64> = model
        .iter()
        .filter(|(_, r)| r.values[0] >= 150.0)
        .map(|(&id, _)| id)
        .collect();
    let report = writer.delete(&Delete::Filter(f.clone())).unwrap();
    assert_eq!(report.deleted, matching.len() as u64);
    let index = Index::open(store.clone(), "w").unwrap();
    for id in matching {
        let v = model.remove(&id).unwrap().vector;
        assert!(search(&index, &v, 10, None).hits.iter().all(|h| h.id != Id::Num(id)));
    }
    assert_eq!(index.manifest().meta.count, model.len() as u64);
}

#[test]
fn string_ids_round_trip_through_build_upsert_delete_and_search() {
    let store: Arc<dyn ObjectStore> = Arc::new(Memory::new());
    let ds = clustered(1_500, 0, 8, 4, 81);
    let names: Vec<String> = (0..1_500).map(|i| format!("doc-{i}")).collect();
    build_index_with_ids(
        store.as_ref(),
        ds.base.clone(),
        ds.attrs.clone(),
        &Ids::Strings(names.clone()),
        &params(Metric::Cosine, 2),
    )
    .unwrap();
    let index = Index::open(store.clone(), "s").unwrap();
    let mut v = ds.base.row(17).to_vec();
    prepare_vector(Metric::Cosine, &mut v, 8, "v").unwrap();
    assert_eq!(search(&index, &v, 1, None).hits[0].id, Id::from("doc-17"));
    let writer = Writer::new(store.clone());
    let long = "é".repeat(128); // 256 bytes: the longest id allowed
    let report = writer
        .upsert(&Upsert {
            ids: Ids::Strings(vec!["doc-17".into(), long.clone()]),
            vectors: Matrix {
                rows: 2,
                cols: 8,
                data: ds.base.row(3).iter().chain(ds.base.row(4)).map(|x| x + 0.5).collect(),
            },
            attrs: Attributes::default(),
        })
        .unwrap();
    assert_eq!((report.inserted, report.replaced), (1, 1));
    let index = Index::open(store.clone(), "s").unwrap();
    let mut w: Vec<f32> = ds.base.row(4).iter().map(|x| x + 0.5).collect();
    prepare_vector(Metric::Cosine, &mut w, 8, "w").unwrap();
    let hit = &search(&index, &w, 1, None).hits[0];
    assert_eq!(hit.id, Id::Str(long.clone()));
    // The replaced row's attributes are missing now (the upsert gave none).
    let mut u: Vec<f32> = ds.base.row(3).iter().map(|x| x + 0.5).collect();
    prepare_vector(Metric::Cosine, &mut u, 8, "u").unwrap();
    let hit = &search(&index, &u, 1, None).hits[0];
    assert_eq!(hit.id, Id::from("doc-17"));
    assert_eq!(hit.attributes.as_ref().unwrap()["price"], Value::Null);
    let report = writer
        .delete(&Delete::Ids(Ids::Strings(vec!["doc-17".into(), long])))
        .unwrap();
    assert_eq!(report.deleted, 2);
    let index = Index::open(store.clone(), "s").unwrap();
    for q in [&u, &w, &v] {
        for h in search(&index, q, 20, None).hits {
            assert!(
                h.id != Id::from("doc-17") && h.id.as_str().is_some_and(|s| s.starts_with("doc-")),
                "{h:?}"
            );
        }
    }
    assert_eq!(index.manifest().meta.count, 1_499);
}

#[test]
fn bad_writes_name_the_field_and_write_nothing() {
    let mem = Arc::new(Memory::new());
    let store: Arc<dyn ObjectStore> = mem.clone();
    let ds = clustered(600, 0, 8, 3, 91);
    build_index_with_ids(
        store.as_ref(),
        ds.base.clone(),
        ds.attrs.clone(),
        &Ids::U64((0..600).collect()),
        &params(Metric::L2, 1),
    )
    .unwrap();
    let before = store.list("").unwrap();
    let writer = Writer::new(store.clone());
    let rows = |ids: Ids, cols: usize, attrs: Attributes| Upsert {
        vectors: Matrix {
            rows: ids.len().unwrap_or(0),
            cols,
            data: vec![0.5; ids.len().unwrap_or(0) * cols],
        },
        ids,
        attrs,
    };
    let unknown = Attributes {
        schema: Schema {
            attrs: vec![AttrSpec::numeric("weight")],
        },
        columns: vec![vec![f64::NAN, 3.0]],
        lists: Vec::new(),
    };
    let numeric_as_text = Attributes {
        schema: Schema {
            attrs: vec![AttrSpec::categorical("price", vec!["cheap".into()])],
        },
        columns: vec![vec![0.0, f64::NAN]],
        lists: Vec::new(),
    };
    let mut nan = rows(Ids::U64(vec![1, 2]), 8, Attributes::default());
    nan.vectors.data[9] = f32::NAN;
    let cases: Vec<(Upsert, &str, &str)> = vec![
        (
            rows(Ids::U64(vec![1, 2, 1]), 8, Attributes::default()),
            "vectors[2].id",
            "duplicate id 1",
        ),
        (
            rows(Ids::U64(vec![1, 2]), 7, Attributes::default()),
            "vectors[0].vector",
            "dimension 8",
        ),
        (
            rows(Ids::U64(vec![1, 2]), 8, unknown),
            "vectors[1].attributes.weight",
            "unknown attribute",
        ),
        (
            rows(Ids::U64(vec![1, 2]), 8, numeric_as_text),
            "vectors[0].attributes.price",
            "numeric",
        ),
        (
            rows(Ids::Strings(vec!["a".into()]), 8, Attributes::default()),
            "vectors[0].id",
            "integer ids",
        ),
        (rows(Ids::Rows, 8, Attributes::default()), "vectors", "no vectors"),
        (nan, "vectors[1].vector", ""),
    ];
    for (upsert, field, words) in cases {
        let e = writer.upsert(&upsert).unwrap_err().to_string();
        assert!(e.contains(&format!("'{field}'")) && e.contains(words), "{field}: {e}");
    }
    let e = writer
        .delete(&Delete::Ids(Ids::Strings(vec!["x".into()])))
        .unwrap_err()
        .to_string();
    assert!(e.contains("'ids[0]'"), "{e}");
    let e = writer
        .delete(&Delete::Filter(json!({"weight": 3})))
        .unwrap_err()
        .to_string();
    assert!(e.contains("weight"), "{e}");
    assert_eq!(store.list("").unwrap(), before, "a refused write wrote nothing");
    // String ids: too long, and the wrong kind.
    let store: Arc<dyn ObjectStore> = Arc::new(Memory::new());
    build_index_with_ids(
        store.as_ref(),
        ds.base.clone(),
        ds.attrs.clone(),
        &Ids::Strings((0..600).map(|i| format!("{i}x")).collect()),
        &params(Metric::L2, 1),
    )
    .unwrap();
    let writer = Writer::new(store.clone());
    let e = writer
        .upsert(&rows(
            Ids::Strings(vec!["ok".into(), "x".repeat(257)]),
            8,
            Attributes::default(),
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("'vectors[1].id'") && e.contains("257 bytes"), "{e}");
    let e = writer
        .upsert(&rows(Ids::U64(vec![4]), 8, Attributes::default()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("'vectors[0].id'") && e.contains("string ids"), "{e}");
    // A build with duplicate ids names the first duplicate.
    let e = build_index_with_ids(
        &Memory::new(),
        ds.base.clone(),
        ds.attrs.clone(),
        &Ids::U64((0..600).map(|i| i % 500).collect()),
        &params(Metric::L2, 1),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("duplicate id 0 (rows 0 and 500)"), "{e}");
}

/// One upsert of a single row with id `id` near `seed`'s vector.
fn one(id: u64, v: &[f32]) -> Upsert {
    Upsert {
        ids: Ids::U64(vec![id]),
        vectors: Matrix {
            rows: 1,
            cols: v.len(),
            data: v.to_vec(),
        },
        attrs: Attributes::default(),
    }
}

#[test]
fn two_writers_racing_lose_no_update() {
    let store = s3("race");
    let ds = clustered(1_000, 0, 8, 4, 101);
    build_index_with_ids(
        store.as_ref(),
        ds.base.clone(),
        ds.attrs.clone(),
        &Ids::U64((0..1_000).collect()),
        &params(Metric::L2, 2),
    )
    .unwrap();
    let fresh = clustered(100, 0, 8, 4, 102);
    let retries: Vec<u32> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|w| {
                let store = store.clone();
                let fresh = &fresh;
                s.spawn(move || {
                    // Each writer its own store handle and cache, as two processes would.
                    let writer = Writer::new(store);
                    let mut retries = 0;
                    for i in 0..50 {
                        let n = w * 50 + i;
                        retries += writer
                            .upsert(&one(10_000 + n as u64, fresh.base.row(n)))
                            .unwrap()
                            .retries;
                    }
                    retries
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!("retries per writer: {retries:?}");
    let index = Index::open(store.clone(), "race").unwrap();
    assert_eq!(
        index.manifest().meta.version,
        100,
        "every upsert committed its own version"
    );
    assert_eq!(index.manifest().meta.count, 1_100);
    for n in 0..100 {
        let hit = &search(&index, fresh.base.row(n), 1, None).hits[0];
        assert_eq!(hit.id, Id::Num(10_000 + n as u64), "upsert {n} lost");
    }
}

#[test]
fn a_writer_dying_at_any_step_leaves_the_previous_version_answering() {
    let dir = std::env::temp_dir().join(format!("squash-write-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let local = Arc::new(LocalDir::new(&dir));
    let ds = clustered(800, 5, 8, 4, 111);
    build_index_with_ids(
        local.as_ref(),
        ds.base.clone(),
        ds.attrs.clone(),
        &Ids::U64((0..800).collect()),
        &params(Metric::L2, 2),
    )
    .unwrap();
    let writer = Writer::new(local.clone());
    writer.upsert(&one(5_000, ds.base.row(0))).unwrap();
    writer.delete(&Delete::Ids(Ids::U64(vec![1, 2, 3]))).unwrap();
    let answers = |store: Arc<dyn ObjectStore>| -> Vec<Vec<(Id, String)>> {
        let index = Index::open(store, "f").unwrap();
        (0..5)
            .map(|q| {
                search(&index, ds.queries.row(q), 10, None)
                    .hits
                    .into_iter()
                    .map(|h| (h.id, format!("{:.5}", h.distance)))
                    .collect()
            })
            .collect()
    };
    let before = answers(local.clone());
    let version = Index::open(local.clone(), "f").unwrap().manifest().meta.version;
    // Kill the write at each step: writing the delta segment, writing the deletion
    // set, committing the manifest (the second access to manifest.sqm: the first is
    // the read).
    type Rule = Box<dyn Fn(&str, u32) -> Option<Fault> + Send + Sync>;
    let steps: Vec<(&str, Rule)> = vec![
        (
            "segments",
            Box::new(|k: &str, _| k.ends_with(".sqs").then_some(Fault::Permanent)),
        ),
        (
            "deletes",
            Box::new(|k: &str, _| k.ends_with(".sqd").then_some(Fault::Permanent)),
        ),
        (
            "commit",
            Box::new(|k: &str, a| (k == "manifest.sqm" && a == 2).then_some(Fault::Permanent)),
        ),
    ];
    for (step, rule) in steps {
        let faulty: Arc<dyn ObjectStore> = Arc::new(Faulty::new(LocalDir::new(&dir), rule));
        // An upsert replacing id 0 (a new delta, a deletion set and a commit).
        let e = Writer::new(faulty).upsert(&one(0, ds.base.row(5))).unwrap_err();
        assert!(e.to_string().contains("403"), "{step}: {e}");
        assert_eq!(
            answers(local.clone()),
            before,
            "a write dead at '{step}' changed the answers"
        );
        assert_eq!(
            Index::open(local.clone(), "f").unwrap().manifest().meta.version,
            version
        );
    }
    // The hook stops a write between its steps the same way.
    for step in ["segments", "deletes", "commit"] {
        let w = Writer::new(local.clone()).with_hook(move |s| {
            if s == step {
                Err(squash_write::WriteError::bad("test", format!("killed before {s}")))
            } else {
                Ok(())
            }
        });
        assert!(w.upsert(&one(0, ds.base.row(5))).is_err());
        assert_eq!(answers(local.clone()), before, "killed before '{step}'");
    }
    // And the next write goes through.
    assert_eq!(
        Writer::new(local.clone())
            .upsert(&one(0, ds.base.row(5)))
            .unwrap()
            .version,
        version + 1
    );
    let _ = std::fs::remove_dir_all(&dir);
}
