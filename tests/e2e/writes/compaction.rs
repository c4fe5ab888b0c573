//! Compaction and folding: writes folded into rebuilt partitions match brute force,
//! list attributes and inner product included, and what no version names is removed.

use super::*;

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
