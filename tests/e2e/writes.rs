//! Writes: upserts and deletes committed as new manifest versions, checked against a
//! model of the live rows (brute force), on the local S3 server; two writers racing;
//! a writer dying at each step; bad input rejected with nothing written.

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
    use squash_storage::s3::S3Store;
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

#[test]
fn compaction_folds_writes_into_rebuilt_partitions_and_removes_what_no_version_names() {
    use squash_build::compact::compact;
    let dir = std::env::temp_dir().join(format!("squash-compact-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let local: Arc<dyn ObjectStore> = Arc::new(LocalDir::new(&dir));
    let ds = clustered(3_000, 0, 16, 6, 121);
    build_index_with_ids(
        local.as_ref(),
        ds.base.clone(),
        ds.attrs.clone(),
        &Ids::U64((0..3_000).collect()),
        &params(Metric::L2, 3),
    )
    .unwrap();
    let fresh = clustered(300, 0, 16, 6, 122);
    let writer = Writer::new(local.clone());
    let mut model: HashMap<u64, Row> = (0..3_000u64).map(|r| (r, Row::of(&ds, r as usize))).collect();
    // 300 upserts (100 replacing), in three writes, then 400 deletes.
    for w in 0..3 {
        let ids: Vec<u64> = (0..100)
            .map(|i| if w == 0 { i * 7 } else { 10_000 + w * 100 + i })
            .collect();
        let rows = w as usize * 100..(w as usize + 1) * 100;
        let values: Vec<[f64; 3]> = rows
            .clone()
            .map(|i| {
                [
                    fresh.attrs.columns[0][i],
                    fresh.attrs.columns[1][i],
                    fresh.attrs.columns[2][i],
                ]
            })
            .collect();
        let data: Vec<f32> = rows.clone().flat_map(|i| fresh.base.row(i).to_vec()).collect();
        writer
            .upsert(&Upsert {
                ids: Ids::U64(ids.clone()),
                vectors: Matrix {
                    rows: 100,
                    cols: 16,
                    data,
                },
                attrs: attrs_of(&values),
            })
            .unwrap();
        for (j, id) in ids.into_iter().enumerate() {
            model.insert(
                id,
                Row {
                    vector: fresh.base.row(rows.start + j).to_vec(),
                    values: values[j],
                },
            );
        }
    }
    let gone: Vec<u64> = (0..400).map(|i| 1 + i * 7).collect();
    writer.delete(&Delete::Ids(Ids::U64(gone.clone()))).unwrap();
    for id in &gone {
        model.remove(id);
    }
    // An orphan of a writer that died before its commit.
    local
        .put("segments/p00000-00000000000000000000000000000000.sqs", b"orphan")
        .unwrap();
    let before = Index::open(local.clone(), "c").unwrap();
    let schema = before.manifest().meta.schema.clone();
    let queries = clustered(200, 0, 16, 6, 123);
    let recall = |index: &Index| -> f64 {
        let (mut found, mut wanted) = (0, 0);
        for q in 0..200 {
            let v = queries.base.row(q);
            let truth = brute(&model, &schema, v, 10, None);
            let resp = search(index, v, 10, None);
            wanted += truth.len();
            found += resp
                .hits
                .iter()
                .filter(|h| truth.contains(&h.id.as_u64().unwrap()))
                .count();
            assert!(resp.hits.iter().all(|h| model.contains_key(&h.id.as_u64().unwrap())));
        }
        found as f64 / wanted as f64
    };
    let r_before = recall(&before);
    // Within the grace period nothing goes: old versions may still be read.
    let report = compact(local.clone(), std::time::Duration::from_secs(3600)).unwrap();
    assert_eq!(
        (report.partitions, report.deltas, report.dropped),
        (3, 3, 500),
        "{report:?}"
    );
    assert_eq!(
        report.kept_young, 1,
        "the orphan is young: a writer may be about to commit it"
    );
    assert_eq!(report.removed, 0, "{report:?}");
    assert_eq!(report.count, model.len() as u64);
    let after = Index::open(local.clone(), "c").unwrap();
    let m = after.manifest();
    assert_eq!(m.meta.version, 5);
    assert!(m
        .meta
        .partitions
        .iter()
        .all(|p| p.deltas.is_empty() && p.deletes.is_none() && p.deleted == 0));
    assert_eq!(m.meta.count, model.len() as u64);
    let r_after = recall(&after);
    assert!(
        r_after >= 0.9 && r_after + 0.02 >= r_before,
        "recall {r_before:.3} -> {r_after:.3}"
    );
    // The replaced rows answer with their new vectors, the deleted never.
    for id in [0u64, 7, 693] {
        let v = &model[&id].vector;
        assert_eq!(search(&after, v, 1, None).hits[0].id, Id::Num(id));
    }
    for id in &gone[..50] {
        let v = ds.base.row(*id as usize);
        assert!(search(&after, v, 10, None).hits.iter().all(|h| h.id != Id::Num(*id)));
    }
    // With no grace, everything the current version does not name goes, the orphan too.
    let report = compact(local.clone(), std::time::Duration::ZERO).unwrap();
    assert_eq!(report.partitions, 0, "nothing left to fold");
    // The three old bases, nine deltas, at least a deletion set per partition, the orphan.
    let at_least = 3 + 9 + 3 + 1;
    assert!(report.removed >= at_least, "{report:?}");
    let named: HashSet<String> = m.meta.partitions.iter().map(|p| p.key.clone()).collect();
    for key in local.list("segments/").unwrap() {
        assert!(named.contains(&key), "{key} is left over");
    }
    let again = Index::open(local.clone(), "c").unwrap();
    assert!((recall(&again) - r_after).abs() < 1e-9, "removal changed no answer");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes on an inner-product index: new and replaced vectors (within the index's norm
/// bound) answer by inner product over the live rows, as brute force does, before and
/// after compaction; a vector longer than the bound is a bad request naming it, and
/// nothing is written.
#[test]
fn inner_product_writes_and_compaction_match_brute_force() {
    let store: Arc<dyn ObjectStore> = Arc::new(Memory::new());
    let mut ds = clustered(6_000, 40, 8, 6, 83);
    let mut rng = ChaCha8Rng::seed_from_u64(84);
    for row in ds.base.data.chunks_mut(8) {
        let s: f32 = rng.gen_range(0.3..2.0);
        row.iter_mut().for_each(|x| *x *= s);
    }
    let bound = squash_core::distance::max_norm(&ds.base.data, 8) * 1.2;
    squash_build::build::build_index(
        store.as_ref(),
        ds.base.clone(),
        ds.attrs.clone(),
        &squash_build::build::BuildParams {
            max_norm: Some(bound),
            ..params(Metric::Ip, 3)
        },
    )
    .unwrap();
    // The model: row id → vector as given.
    let mut live: HashMap<u64, Vec<f32>> = (0..6_000u64).map(|i| (i, ds.base.row(i as usize).to_vec())).collect();
    let writer = Writer::new(store.clone());
    // 200 new ids and 100 replaced ones, some longer than any built vector.
    let ids: Vec<u64> = (6_000..6_200).chain(0..100).collect();
    let rows: Vec<Vec<f32>> = ids
        .iter()
        .map(|_| {
            let base = ds.base.row(rng.gen_range(0..6_000));
            let s: f32 = rng.gen_range(0.5..1.1);
            base.iter().map(|x| x * s + rng.gen_range(-0.1..0.1)).collect()
        })
        .collect();
    let upsert = Upsert {
        ids: Ids::U64(ids.clone()),
        vectors: Matrix {
            rows: ids.len(),
            cols: 8,
            data: rows.iter().flatten().copied().collect(),
        },
        attrs: Attributes::default(),
    };
    let check = |index: &Index, live: &HashMap<u64, Vec<f32>>, what: &str| {
        let mut found = 0;
        for q in 0..ds.queries.rows {
            let query = ds.queries.row(q);
            let mut truth: Vec<(f64, u64)> = live
                .iter()
                .map(|(&id, v)| (squash_core::distance::true_distance(Metric::Ip, query, v), id))
                .collect();
            truth.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let want: HashSet<u64> = truth.iter().take(10).map(|t| t.1).collect();
            let hits = search(index, query, 10, None).hits;
            assert_eq!(hits.len(), 10);
            for h in &hits {
                let id = h.id.as_u64().unwrap();
                let exact = squash_core::distance::true_distance(Metric::Ip, query, &live[&id]);
                assert!((h.distance as f64 - exact).abs() < 1e-3, "{what}: {h:?} vs {exact}");
            }
            found += hits.iter().filter(|h| want.contains(&h.id.as_u64().unwrap())).count();
        }
        let recall = found as f64 / (10 * ds.queries.rows) as f64;
        eprintln!("{what}: recall {recall}");
        assert!(recall >= 0.95, "{what}: recall {recall}");
    };
    check(&Index::open(store.clone(), "ip").unwrap(), &live, "as built");
    writer.upsert(&upsert).unwrap();
    for (id, v) in ids.iter().zip(&rows) {
        live.insert(*id, v.clone());
    }
    check(&Index::open(store.clone(), "ip").unwrap(), &live, "after writes");
    // Longer than the bound: refused, naming the vector; the version stays.
    let before = Index::open(store.clone(), "ip").unwrap().manifest().meta.version;
    let too_long = Upsert {
        ids: Ids::U64(vec![9_000, 9_001]),
        vectors: Matrix {
            rows: 2,
            cols: 8,
            data: [ds.base.row(0).to_vec(), vec![bound; 8]].concat(),
        },
        attrs: Attributes::default(),
    };
    let e = writer.upsert(&too_long).unwrap_err().to_string();
    assert!(e.contains("vectors[1].vector") && e.contains("norm"), "{e}");
    assert_eq!(
        Index::open(store.clone(), "ip").unwrap().manifest().meta.version,
        before
    );
    squash_build::compact::compact(store.clone(), std::time::Duration::ZERO).unwrap();
    check(&Index::open(store.clone(), "ip").unwrap(), &live, "after compaction");
}

/// List attributes through writes and compaction: upserted rows carry lists (a tag no
/// build saw, an empty list, a missing one), self-queries find them by `$contains`, a
/// replaced row answers with its new list and never its old one, and compaction keeps
/// every answer. Giving a single value to a list attribute (or a list to a single-valued
/// one) is refused naming the field, with nothing written.
#[test]
fn list_attributes_survive_upserts_and_compaction() {
    use squash_core::attrs::ListColumn;
    use squash_tests::{tag, with_lists};
    let store: Arc<dyn ObjectStore> = Arc::new(Memory::new());
    let ds = with_lists(clustered(3_000, 0, 12, 6, 95), 96);
    build_index_with_ids(
        store.as_ref(),
        ds.base.clone(),
        ds.attrs.clone(),
        &Ids::U64((0..3_000).collect()),
        &params(Metric::L2, 2),
    )
    .unwrap();
    // Rows 0..40 are new (ids 10,000..), row 40 replaces id 7: vectors beside the data's.
    let n = 41;
    let data: Vec<f32> = (0..n)
        .flat_map(|i| ds.base.row(i * 70 + 11).iter().map(|x| x + 0.5).collect::<Vec<f32>>())
        .collect();
    let mut ids: Vec<u64> = (10_000..10_040).collect();
    ids.push(7);
    let tags_spec = AttrSpec::categorical("tags", vec!["fresh".into(), tag(0)]).into_list();
    let (fresh, t0) = (tags_spec.code_of("fresh").unwrap(), tags_spec.code_of(&tag(0)).unwrap());
    let mut list = ListColumn::default();
    let mut counts = Vec::new();
    for i in 0..n {
        let es: Vec<f64> = match i % 4 {
            0 => vec![fresh, t0],
            1 => vec![fresh],
            2 => vec![],
            _ => vec![t0],
        };
        counts.push(if i % 8 == 7 { f64::NAN } else { es.len() as f64 });
        list.push(if i % 8 == 7 { &[] } else { &es });
    }
    let rows = Upsert {
        ids: Ids::U64(ids.clone()),
        vectors: Matrix {
            rows: n,
            cols: 12,
            data: data.clone(),
        },
        attrs: Attributes {
            schema: Schema {
                attrs: vec![tags_spec.clone()],
            },
            columns: vec![counts.clone()],
            lists: vec![Some(list.clone())],
        },
    };
    // Shapes that do not fit are refused, nothing written.
    let before = store.list("").unwrap();
    let scalar = Upsert {
        attrs: Attributes {
            schema: Schema {
                attrs: vec![AttrSpec::categorical("tags", vec!["x".into()])],
            },
            columns: vec![vec![0.0; n]],
            lists: Vec::new(),
        },
        ..rows.clone()
    };
    let e = Writer::new(store.clone()).upsert(&scalar).unwrap_err().to_string();
    assert!(e.contains("vectors[0].attributes.tags") && e.contains("list"), "{e}");
    let list_for_price = Upsert {
        attrs: Attributes {
            schema: Schema {
                attrs: vec![AttrSpec::numeric("price").into_list()],
            },
            columns: vec![vec![1.0; n]],
            lists: vec![Some({
                let mut l = ListColumn::default();
                (0..n).for_each(|_| l.push(&[3.0]));
                l
            })],
        },
        ..rows.clone()
    };
    let e = Writer::new(store.clone())
        .upsert(&list_for_price)
        .unwrap_err()
        .to_string();
    assert!(e.contains("vectors[0].attributes.price"), "{e}");
    assert_eq!(store.list("").unwrap(), before, "nothing written");

    let report = Writer::new(store.clone()).upsert(&rows).unwrap();
    assert_eq!((report.inserted, report.replaced), (40, 1));
    let expect = |index: &Index, stage: &str| {
        for i in 0..n {
            let v = &data[i * 12..(i + 1) * 12];
            let want_tags: Option<Vec<&str>> = (i % 8 != 7).then(|| match i % 4 {
                0 => vec!["fresh", "tag00"],
                1 => vec!["fresh"],
                2 => vec![],
                _ => vec!["tag00"],
            });
            // Among the 10 nearest (a k = 1 search may miss it after compaction, as any
            // vector a balanced partitioning put in a list whose centroid is not its nearest).
            let find = |filter: Option<Value>| {
                search(index, v, 10, filter)
                    .hits
                    .into_iter()
                    .find(|h| h.id == Id::Num(ids[i]) && h.distance < 1e-3)
            };
            let hit = find(None).unwrap_or_else(|| panic!("{stage}: row {i} not found"));
            let got = &hit.attributes.as_ref().unwrap()["tags"];
            assert_eq!(
                got,
                &want_tags.as_ref().map_or(Value::Null, |t| json!(t)),
                "{stage}: row {i}"
            );
            assert_eq!(hit.attributes.as_ref().unwrap()["price"], Value::Null);
            for (filter, matches) in [
                (
                    json!({"tags": {"$contains": "fresh"}}),
                    want_tags.as_ref().is_some_and(|t| t.contains(&"fresh")),
                ),
                (
                    json!({"tags": {"$containsAll": ["fresh", tag(0)]}}),
                    i % 4 == 0 && i % 8 != 7,
                ),
                (json!({"tags": {"$exists": false}}), want_tags.is_none()),
                (
                    json!({"tags": {"$nin": ["fresh"]}}),
                    !want_tags.as_ref().is_some_and(|t| t.contains(&"fresh")),
                ),
            ] {
                let found = find(Some(filter.clone())).is_some();
                assert_eq!(found, matches, "{stage}: row {i} with {filter}");
            }
        }
        // The replaced id never answers with its old row (old vector, old tags).
        let old = ds.base.row(7);
        for h in search(index, old, 5, None).hits {
            if h.id == Id::Num(7) {
                assert!(h.distance > 1.0, "{stage}: id 7 answered at its old vector");
            }
        }
    };
    let index = Index::open(store.clone(), "l").unwrap();
    expect(&index, "after the upsert");
    squash_build::compact::compact(store.clone(), std::time::Duration::ZERO).unwrap();
    let index = Index::open(store.clone(), "l").unwrap();
    assert_eq!(
        index
            .manifest()
            .meta
            .partitions
            .iter()
            .map(|p| p.deltas.len())
            .sum::<usize>(),
        0
    );
    expect(&index, "after compaction");
}

/// Writes that churn a partition past the fold share fold it (rebuild it from its live
/// rows) in a version right after the write's: no committed version is left with a
/// churned partition, answers match brute force over the live rows throughout, and a
/// writer with folding off leaves the deltas. A fold that fails leaves the write
/// committed and says why; the next write folds.
#[test]
fn writes_fold_the_partitions_they_churn() {
    use squash_write::fold::{needs_fold, FOLD_MIN_ROWS};
    use squash_write::write::DEFAULT_FOLD_SHARE;
    let store = s3("fold");
    let off = s3("nofold");
    let n = 4_000usize;
    // One mixture: the first n rows built, the next 2,400 upserted, and its queries.
    let ds = clustered(n + 2_400, 100, 16, 6, 131);
    let built = Matrix {
        rows: n,
        cols: 16,
        data: ds.base.data[..n * 16].to_vec(),
    };
    let built_attrs = ds.attrs.select(&(0..n).collect::<Vec<_>>());
    for s in [&store, &off] {
        build_index_with_ids(
            s.as_ref(),
            built.clone(),
            built_attrs.clone(),
            &Ids::U64((0..n as u64).collect()),
            &params(Metric::L2, 2),
        )
        .unwrap();
    }
    let churned = |s: &Arc<dyn ObjectStore>| -> usize {
        let m = Index::open(s.clone(), "w").unwrap().manifest().clone();
        (m.meta.partitions.iter())
            .filter(|p| needs_fold(p, DEFAULT_FOLD_SHARE))
            .count()
    };
    // The first fold fails (as a dying store would make it): the write stands.
    let failed_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = failed_once.clone();
    let writer = Writer::new(store.clone()).with_hook(move |step| {
        if step == "fold" && !flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(squash_write::WriteError::bad("fold", "drill: the fold dies"));
        }
        Ok(())
    });
    let plain = Writer::new(off.clone()).with_fold_share(None);
    let mut model: HashMap<u64, Row> = (0..n as u64).map(|r| (r, Row::of(&ds, r as usize))).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(133);
    let (mut folded, mut fold_errors, mut last_fold_failed) = (0u64, 0usize, false);
    // Six writes of 400 rows (new ids and replacements), each followed by 300 deletes.
    for w in 0..6usize {
        let rows = w * 400..(w + 1) * 400;
        let mut live: Vec<u64> = model.keys().copied().collect();
        live.sort_unstable();
        let ids: Vec<u64> = rows
            .clone()
            .map(|i| {
                if i % 4 == 0 {
                    live[rng.gen_range(0..live.len())]
                } else {
                    100_000 + i as u64
                }
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        // Id j gets the dataset's row n + rows.start + j.
        let new: Vec<Row> = (0..ids.len()).map(|j| Row::of(&ds, n + rows.start + j)).collect();
        let values: Vec<[f64; 3]> = new.iter().map(|r| r.values).collect();
        let up = Upsert {
            ids: Ids::U64(ids.clone()),
            vectors: Matrix {
                rows: ids.len(),
                cols: 16,
                data: new.iter().flat_map(|r| r.vector.iter().copied()).collect(),
            },
            attrs: attrs_of(&values),
        };
        model.extend(ids.iter().copied().zip(new));
        let mut live: Vec<u64> = model.keys().copied().collect();
        live.sort_unstable();
        live.shuffle(&mut rng);
        let gone: Vec<u64> = live[..300].to_vec();
        for id in &gone {
            model.remove(id);
        }
        let del = Delete::Ids(Ids::U64(gone.clone()));
        for write in [&|| writer.upsert(&up), &|| writer.delete(&del)] as [&dyn Fn() -> _; 2] {
            let r: squash_write::WriteReport = write().unwrap();
            folded += r.folded;
            if let Some(e) = &r.fold_error {
                assert!(e.contains("drill"), "{e}");
                fold_errors += 1;
            }
            last_fold_failed = r.fold_error.is_some();
            // A fold that succeeded leaves no churned partition behind.
            if !last_fold_failed {
                assert_eq!(churned(&store), 0, "write {w} left a churned partition");
            }
        }
        for r in [
            plain.upsert(&up).unwrap(),
            plain.delete(&Delete::Ids(Ids::U64(gone.clone()))).unwrap(),
        ] {
            assert_eq!((r.folded, &r.fold_error), (0, &None), "folding is off");
        }
        for s in [&store, &off] {
            assert_eq!(
                Index::open(s.clone(), "w").unwrap().manifest().meta.count,
                model.len() as u64
            );
        }
    }
    assert_eq!(fold_errors, 1, "the drill's fold failed, and only it");
    assert!(!last_fold_failed);
    assert!(folded >= 2, "{folded} partitions folded");
    let before = churned(&off);
    assert!(
        before > 0,
        "without folding the deltas stay (churn ≥ {FOLD_MIN_ROWS} rows)"
    );
    // A writer limited to one fold per write folds the most churned partition only.
    let limited = Writer::new(off.clone()).with_fold_limit(Some(1));
    let victim = *model.keys().min().unwrap();
    model.remove(&victim);
    let r = limited.delete(&Delete::Ids(Ids::U64(vec![victim]))).unwrap();
    assert_eq!((r.deleted, r.folded), (1, 1), "{r:?}");
    assert_eq!(churned(&off), before - 1);
    // Both indexes answer as brute force over the live rows does; the folded one with
    // fewer segments.
    let schema = Index::open(store.clone(), "w").unwrap().manifest().meta.schema.clone();
    for s in [&store, &off] {
        let index = Index::open(s.clone(), "w").unwrap();
        let (mut found, mut wanted) = (0, 0);
        for q in 0..100 {
            let v = ds.queries.row(q);
            let filter = (q % 2 == 1).then(|| random_filter(&mut rng, 1));
            let truth = brute(&model, &schema, v, 10, filter.as_ref());
            let resp = search(&index, v, 10, filter);
            wanted += truth.len();
            for h in &resp.hits {
                let id = h.id.as_u64().unwrap();
                assert!(model.contains_key(&id), "deleted id {id} answered");
                found += truth.contains(&id) as usize;
            }
        }
        let recall = found as f64 / wanted.max(1) as f64;
        assert!(
            recall >= 0.9,
            "recall {recall:.3} (folding {})",
            std::ptr::eq(s, &store)
        );
        // Every live upserted row finds itself.
        for id in model.keys().filter(|&&id| id >= 100_000) {
            let hit = &search(&index, &model[id].vector, 1, None).hits[0];
            let m = index.manifest();
            assert!(
                hit.distance < 1e-3,
                "{id} (folding {}): {hit:?}; partitions {:?}",
                std::ptr::eq(s, &store),
                m.meta
                    .partitions
                    .iter()
                    .map(|p| (p.count, p.deltas.len(), p.deleted))
                    .collect::<Vec<_>>()
            );
        }
    }
    let deltas = |s: &Arc<dyn ObjectStore>| -> usize {
        let m = Index::open(s.clone(), "w").unwrap().manifest().clone();
        m.meta.partitions.iter().map(|p| p.deltas.len()).sum()
    };
    let _ = deltas;
}
