//! High-cardinality categorical attributes (tenant keys): value indexes beside the
//! manifest, per-tenant searches against brute force (tenants spread uniformly and by
//! region), writes and compaction keeping the postings exact, damaged value indexes.

use crate::{build, check_queries, params, request};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use squash_build::build::{build_index_with_ids, MANIFEST_KEY};
use squash_build::io::{Attributes, Matrix};
use squash_core::attrs::{AttrSpec, Schema};
use squash_core::distance::Metric;
use squash_core::manifest::Manifest;
use squash_engine::search::Index;
use squash_storage::{LocalDir, Memory, ObjectStore};
use squash_tests::{clustered, naive_matches, region_of, row, tenant, with_tenants, Dataset};
use squash_write::{Ids, Upsert, Writer};
use std::collections::HashMap;
use std::sync::Arc;

const TENANTS: usize = 3_000;

fn dataset() -> Dataset {
    with_tenants(clustered(12_000, 30, 16, 12, 41), TENANTS, 42)
}

/// Rows holding each value of attribute `a` (codes), from the data.
fn rows_per_value(attrs: &Attributes, a: usize) -> HashMap<u32, u32> {
    let mut out = HashMap::new();
    for &v in &attrs.columns[a] {
        if !v.is_nan() {
            *out.entry(v as u32).or_insert(0) += 1;
        }
    }
    out
}

/// Every value's postings add up to its rows, and only values with rows have any.
fn assert_postings_count(m: &Manifest, a: usize, want: &HashMap<u32, u32>, stage: &str) {
    let postings = m.postings(a).expect("value-indexed");
    let mut got: HashMap<u32, u32> = HashMap::new();
    for (code, list, n) in postings.triples() {
        assert!((list as usize) < m.lists(), "{stage}: list {list}");
        *got.entry(code).or_insert(0) += n;
    }
    assert_eq!(&got, want, "{stage}: postings of attribute {a}");
}

#[test]
fn tenant_keys_live_beside_the_manifest_and_match_brute_force() {
    let ds = dataset();
    let (store, index) = build(&ds, &params(Metric::L2, 6));
    let m = index.manifest();
    let (t, r) = (3, 4);
    assert!(
        ds.attrs.schema.attrs[r].dictionary.len() > 255,
        "regions: {}",
        ds.attrs.schema.attrs[r].dictionary.len()
    );
    for a in [t, r] {
        let spec = &m.meta.schema.attrs[a];
        assert!(spec.values.is_some(), "{} has a value index", spec.name);
        assert_eq!(spec.dictionary, ds.attrs.schema.attrs[a].dictionary);
        assert_postings_count(m, a, &rows_per_value(&ds.attrs, a), "built");
    }
    assert!(m.meta.schema.attrs[1].values.is_none(), "6 colours need no value index");
    // The manifest holds neither dictionary: it is about as large as without them.
    let raw = store.get(MANIFEST_KEY).unwrap();
    let bare = Manifest::decode(MANIFEST_KEY, &raw).unwrap();
    assert_eq!(bare.pending_values().len(), 2);
    assert!(bare.meta.schema.attrs[t].dictionary.is_empty());
    let plain = Memory::new();
    let mut without = ds.attrs.clone();
    without.schema.attrs.truncate(3);
    without.columns.truncate(3);
    without.lists.truncate(3);
    squash_build::build::build_index(&plain, ds.base.clone(), without, &params(Metric::L2, 6)).unwrap();
    let plain_bytes = plain.get(MANIFEST_KEY).unwrap().len();
    assert!(
        raw.len() < plain_bytes + 16 * 1024,
        "manifest {} bytes, {plain_bytes} without the tenant attributes",
        raw.len()
    );

    let counts = rows_per_value(&ds.attrs, t);
    let code = |name: &str| ds.attrs.schema.attrs[t].code_of(name).unwrap() as u32;
    let size = |i: usize| counts.get(&code(&tenant(i))).copied().unwrap_or(0);
    let small: Vec<usize> = (TENANTS / 2..TENANTS)
        .filter(|&i| (2..=4).contains(&size(i)))
        .take(3)
        .collect();
    assert_eq!(small.len(), 3);
    for filter in [
        json!({"tenant": tenant(0)}),
        json!({"tenant": tenant(40)}),
        json!({"tenant": tenant(small[0])}),
        json!({"tenant": {"$in": [tenant(small[1]), tenant(small[2]), "nobody"]}}),
        json!({"tenant": tenant(3), "price": {"$lt": 50}}),
        json!({"$or": [{"tenant": tenant(small[0])}, {"color": "red", "price": {"$lt": 2}}]}),
        json!({"tenant": {"$ne": tenant(0)}}),
        json!({"tenant": {"$exists": false}}),
    ] {
        let matching = (0..ds.base.rows)
            .filter(|&r| naive_matches(&filter, &ds.attrs, r))
            .count();
        let recall = check_queries(&ds, &index, Metric::L2, Some(filter.clone()), 10);
        assert!(recall >= 0.95, "{filter} ({matching} rows match): recall {recall}");
    }
    // Each query in its own region (rows close together): the lists holding it, exactly.
    let mut recall = 0.0;
    for q in 0..ds.queries.rows {
        let f = json!({"region": region_of(ds.queries.row(q))});
        let one = Dataset {
            base: ds.base.clone(),
            queries: Matrix {
                rows: 1,
                cols: 16,
                data: ds.queries.row(q).to_vec(),
            },
            attrs: ds.attrs.clone(),
        };
        recall += check_queries(&one, &index, Metric::L2, Some(f), 10);
    }
    assert!(recall / ds.queries.rows as f64 >= 0.95, "region recall {recall}");
    // A tenant nobody has: no list can hold it, nothing is searched.
    let none = index
        .search(&request(ds.queries.row(0), 10, Some(json!({"tenant": "nobody"}))))
        .unwrap();
    assert!(none.hits.is_empty());
    assert_eq!(none.stats.partitions_searched, 0);
    // A small tenant's search reads only the lists holding it.
    let resp = index
        .search(&request(
            ds.queries.row(1),
            10,
            Some(json!({"tenant": tenant(small[0])})),
        ))
        .unwrap();
    assert_eq!(resp.hits.len(), size(small[0]) as usize);
    assert!(
        resp.stats.partitions_searched as u32 <= size(small[0]),
        "{:?}",
        resp.stats
    );

    // A damaged or missing value index is reported with its name.
    let key = m.meta.schema.attrs[t].values.as_ref().unwrap().key.clone();
    let good = store.get(&key).unwrap();
    let mut bad = good.to_vec();
    let at = bad.len() / 2;
    bad[at] ^= 0x10;
    store.put(&key, &bad).unwrap();
    let e = Index::open(store.clone(), "test")
        .err()
        .expect("damaged value index")
        .to_string();
    assert!(e.contains(&key), "{e}");
    store.delete(&key).unwrap();
    let e = Index::open(store.clone(), "test")
        .err()
        .expect("missing value index")
        .to_string();
    assert!(e.contains(&key) && e.contains("missing"), "{e}");
    store.put(&key, &good).unwrap();
    Index::open(store.clone(), "test").expect("restored");
}

#[test]
fn tenant_postings_follow_writes_and_compaction() {
    let ds = dataset();
    let n0 = ds.base.rows;
    // On disk: garbage collection sees how old each object is.
    let dir = std::env::temp_dir().join(format!("squash-tenants-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store: Arc<dyn ObjectStore> = Arc::new(LocalDir::new(&dir));
    build_index_with_ids(
        store.as_ref(),
        ds.base.clone(),
        ds.attrs.clone(),
        &Ids::U64((0..n0 as u64).collect()),
        &params(Metric::L2, 4),
    )
    .unwrap();
    let t = 3;
    // 60 rows: 40 new ids (half of them a tenant the build never saw), 20 replacing
    // existing ids (moving them to tenant 0); vectors beside the data's.
    let mut rng = ChaCha8Rng::seed_from_u64(43);
    let n = 60;
    let mut ids: Vec<u64> = (100_000..100_040).collect();
    let replaced: Vec<u64> = (0..20)
        .map(|_| rng.gen_range(0..n0 as u64))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    ids.extend(&replaced);
    let n = n.min(ids.len());
    let data: Vec<f32> = (0..n)
        .flat_map(|i| ds.base.row(i * 150 + 7).iter().map(|x| x + 0.3).collect::<Vec<f32>>())
        .collect();
    let spec = AttrSpec::categorical("tenant", vec!["newcomer".into(), tenant(0)]);
    let column: Vec<f64> = (0..n)
        .map(|i| {
            spec.code_of(&if i < 20 { "newcomer".to_string() } else { tenant(0) })
                .unwrap()
        })
        .collect();
    let rows = Upsert {
        ids: Ids::U64(ids[..n].to_vec()),
        vectors: Matrix {
            rows: n,
            cols: 16,
            data: data.clone(),
        },
        attrs: Attributes {
            schema: Schema { attrs: vec![spec] },
            columns: vec![column],
            lists: Vec::new(),
        },
    };
    let report = Writer::new(store.clone()).upsert(&rows).unwrap();
    assert_eq!(report.replaced as usize, n - 40);
    let check = |index: &Index, stage: &str| {
        let m = index.manifest();
        let dict = &m.meta.schema.attrs[t].dictionary;
        assert_eq!(dict.len(), TENANTS + 1, "{stage}: one string appended");
        let newcomer = m.meta.schema.attrs[t].code_of("newcomer").unwrap();
        let total: u32 = m.postings(t).unwrap().get(newcomer).map(|(_, c)| c).sum();
        assert_eq!(total, 20, "{stage}: postings of the new tenant");
        for i in 0..n {
            let v = &data[i * 16..(i + 1) * 16];
            let want = if i < 20 { "newcomer".to_string() } else { tenant(0) };
            let resp = index.search(&request(v, 1, Some(json!({"tenant": want})))).unwrap();
            let hit = resp
                .hits
                .first()
                .unwrap_or_else(|| panic!("{stage}: row {i} not found"));
            assert_eq!(row(&hit.id), ids[i], "{stage}: row {i}");
            assert!(hit.distance < 1e-3, "{stage}: row {i} at {}", hit.distance);
        }
        // A replaced row no longer answers for its old tenant at its old vector.
        for &id in &replaced {
            let old = ds.attrs.columns[t][id as usize];
            if old.is_nan() || old == m.meta.schema.attrs[t].code_of(&tenant(0)).unwrap() {
                continue;
            }
            let f = json!({"tenant": dict[old as usize]});
            let resp = index.search(&request(ds.base.row(id as usize), 1, Some(f))).unwrap();
            assert!(
                resp.hits.iter().all(|h| row(&h.id) != id),
                "{stage}: replaced id {id} answered"
            );
        }
    };
    let index = Index::open(store.clone(), "test").unwrap();
    check(&index, "after the upsert");
    // The live rows' postings: every value counted once per live row after compaction.
    squash_build::compact::compact(store.clone(), std::time::Duration::ZERO).unwrap();
    let index = Index::open(store.clone(), "test").expect("the value index survives garbage collection");
    check(&index, "after compaction");
    let m = index.manifest();
    let mut want = rows_per_value(&ds.attrs, t);
    for &id in &replaced {
        let old = ds.attrs.columns[t][id as usize];
        if !old.is_nan() {
            *want.get_mut(&(old as u32)).unwrap() -= 1;
        }
    }
    want.retain(|_, c| *c > 0);
    let newcomer = m.meta.schema.attrs[t].code_of("newcomer").unwrap() as u32;
    let zero = m.meta.schema.attrs[t].code_of(&tenant(0)).unwrap() as u32;
    *want.entry(newcomer).or_insert(0) += 20;
    *want.entry(zero).or_insert(0) += (n - 20) as u32;
    assert_postings_count(m, t, &want, "compacted");
    let objects = store.list("segments/").unwrap();
    assert_eq!(
        objects.iter().filter(|k| k.ends_with(".sqv")).count(),
        2,
        "old value indexes collected, current ones kept: {objects:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
