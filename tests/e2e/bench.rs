//! The benchmark harness cannot lie: on a small synthetic workload with a known answer,
//! `run_case` reports recall 1 for an exact search, exactly the share of true ids a
//! doctored ground truth keeps, and cold-pass bytes and GETs equal to the segments of
//! the partitions searched; the `label` case's exact answers all carry the query's label.

use squash_api::SearchParams;
use squash_bench::bench::{run_case, BenchOptions};
use squash_bench::groundtruth::groundtruth;
use squash_bench::synth::{synthesize, SynthParams};
use squash_build::build::{build_index, BuildParams};
use squash_build::io::{read_attributes, read_json_lines, read_vectors};
use squash_core::filter::Expr;
use squash_engine::search::Index;
use squash_engine::tree::Fanout;
use squash_storage::Memory;
use std::sync::Arc;

#[test]
fn bench_recall_and_cold_costs_match_a_known_answer() {
    let dir = std::env::temp_dir().join(format!("squash-bench-test-{}", std::process::id()));
    let w = synthesize(
        &dir,
        &SynthParams {
            rows: 6_000,
            dim: 16,
            clusters: 8,
            queries: 12,
            attributes: 4,
            selectivities: vec![1.0, 0.08],
            tags: 0,
            tenants: 0,
            seed: 3,
        },
        false,
    )
    .expect("synthesize");
    let base = read_vectors(&dir.join(&w.base)).unwrap();
    let queries = read_vectors(&dir.join(&w.queries)).unwrap();
    let attrs = read_attributes(&dir.join(&w.attrs), &w.attr_names).unwrap();
    let store = Arc::new(Memory::new());
    let report = build_index(
        store.as_ref(),
        base.clone(),
        attrs.clone(),
        &BuildParams {
            partitions: Some(4),
            ..BuildParams::default()
        },
    )
    .expect("build");
    let index = Index::open(store.clone(), "bench").unwrap();
    let cold = Index::open_cold(
        store.clone(),
        "bench",
        Fanout {
            workers: 2,
            branching: 4,
            depth: 1,
        },
        squash_engine::worker::RangeReads::Off,
    )
    .unwrap();
    let exhaustive = SearchParams {
        nprobe: Some(10_000),
        rerank_factor: Some(10_000),
        hamming_keep: Some(1.0),
        safety: None,
        plan: None,
    };
    let opts = BenchOptions {
        k: 10,
        threads: 1,
        repeats: 1,
        params: exhaustive,
        cold_queries: 12,
    };
    let segment_bytes: u64 = report.manifest.meta.partitions.iter().map(|p| p.bytes).sum();
    for case in &w.cases {
        let filters = read_json_lines(&dir.join(&case.filters)).unwrap();
        let exprs: Vec<Option<Expr>> = filters.iter().map(|f| Expr::parse(f, &attrs.schema).unwrap()).collect();
        let truth: Vec<Vec<u64>> = groundtruth(&base, w.metric, &attrs, &queries, &exprs, 10, false)
            .into_iter()
            .map(|l| l.into_iter().map(|n| n.id).collect())
            .collect();
        assert!(
            truth.iter().all(|t| t.len() == 10),
            "case {}: every query has 10 answers",
            case.label
        );
        let exact = run_case(&index, Some(&cold), &case.label, &queries, &filters, &truth, &opts).unwrap();
        assert_eq!(exact.recall, 1.0, "case {}: exhaustive search is exact", case.label);
        // Keep 3 of each query's 10 true ids, replace the rest by ids that do not exist:
        // recall must be exactly 0.3.
        let doctored: Vec<Vec<u64>> = truth
            .iter()
            .map(|t| {
                t.iter()
                    .enumerate()
                    .map(|(i, &id)| if i < 3 { id } else { u64::MAX - i as u64 })
                    .collect()
            })
            .collect();
        let r = run_case(&index, None, &case.label, &queries, &filters, &doctored, &opts).unwrap();
        assert!(
            (r.recall - 0.3).abs() < 1e-12,
            "case {}: recall {}",
            case.label,
            r.recall
        );
        assert!(r.cold.is_none());
        // Cold: every searched partition is one GET of its whole segment.
        let c = exact.cold.expect("cold pass ran");
        assert_eq!(c.queries, 12);
        assert!(
            (c.gets - exact.partitions).abs() < 1e-9,
            "{} GETs for {} partitions",
            c.gets,
            exact.partitions
        );
        assert!(c.bytes > 0.0 && c.bytes <= segment_bytes as f64);
        assert!(c.invocations >= 1.0 && c.invocations <= 2.0);
        assert!(exact.qps > 0.0 && exact.scan_ms > 0.0);
    }
    // The label case: the exact answers of each query all carry the query's own label.
    let label = w.cases.iter().find(|c| c.label == "label").expect("label case");
    let filters = read_json_lines(&dir.join(&label.filters)).unwrap();
    let exprs: Vec<Option<Expr>> = filters.iter().map(|f| Expr::parse(f, &attrs.schema).unwrap()).collect();
    let col = attrs.columns.len() - 1;
    for (q, list) in groundtruth(&base, w.metric, &attrs, &queries, &exprs, 10, false)
        .iter()
        .enumerate()
    {
        let want = filters[q]["label"]["$eq"].as_f64().unwrap();
        assert!(list.iter().all(|n| attrs.columns[col][n.id as usize] == want));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_updates_index_holds_exactly_the_workload_base_through_writes() {
    use squash_bench::churn::churn;
    let dir = std::env::temp_dir().join(format!("squash-churn-test-{}", std::process::id()));
    let w = synthesize(
        &dir,
        &SynthParams {
            rows: 5_000,
            dim: 16,
            clusters: 8,
            queries: 30,
            attributes: 4,
            selectivities: vec![1.0],
            tags: 0,
            tenants: 0,
            seed: 9,
        },
        false,
    )
    .expect("synthesize");
    let base = read_vectors(&dir.join(&w.base)).unwrap();
    let queries = read_vectors(&dir.join(&w.queries)).unwrap();
    let attrs = read_attributes(&dir.join(&w.attrs), &w.attr_names).unwrap();
    let store = Arc::new(Memory::new());
    let report = churn(&dir, store.clone(), 0.1, 200, 5).expect("churn");
    assert_eq!(
        (report.base, report.upserted, report.deleted),
        (5_000, 500, 500),
        "{report:?}"
    );
    // Three upserts and a delete, and a version for each write that folded partitions.
    let folds = report.folded_by_upserts + report.folded_by_delete;
    let extra = report.version.checked_sub(4);
    assert!(
        extra.is_some_and(|e| e <= folds.min(4) && (e > 0) == (folds > 0)),
        "three upserts and a delete: {report:?}"
    );
    assert_eq!(report.count, 5_000, "{report:?}");
    let index = Index::open(store.clone(), "updates").unwrap();
    let truth: Vec<Vec<u64>> = groundtruth(&base, w.metric, &attrs, &queries, &vec![None; queries.rows], 10, false)
        .into_iter()
        .map(|l| l.into_iter().map(|n| n.id).collect())
        .collect();
    let r = run_case(
        &index,
        None,
        "100%",
        &queries,
        &vec![serde_json::Value::Null; queries.rows],
        &truth,
        &BenchOptions {
            k: 10,
            threads: 1,
            repeats: 1,
            params: SearchParams::default(),
            cold_queries: 0,
        },
    )
    .expect("bench");
    assert!(r.recall >= 0.9, "recall@10 through writes: {}", r.recall);
    let _ = std::fs::remove_dir_all(&dir);
}
