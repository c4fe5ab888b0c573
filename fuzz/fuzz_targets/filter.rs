//! Any bytes as a JSON filter against the golden index's schema: parsing never panics,
//! and a filter that parses keeps its contract on every row of a golden segment: the
//! code-level verdict never rules out a row that matches exactly, and never calls a row
//! certain that does not match. The same bytes as a filter on a table with list
//! attributes (`tags`: strings, `sizes`: numbers, with empty and missing lists) keep
//! the same contract, and the exact verdict agrees with a naive evaluator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use squash_core::attrs::{AttrCells, AttrSpec, AttrValue, ListColumn, Schema};
use squash_core::filter::{Expr, Pred, MASK_CERTAIN, MASK_POSSIBLE};
use squash_core::manifest::Manifest;
use squash_core::segment::Segment;
use std::sync::OnceLock;

const MANIFEST: &[u8] = include_bytes!("../../tests/fixtures/golden-v3/index/manifest.sqm");
const SEGMENT: &[u8] =
    include_bytes!("../../tests/fixtures/golden-v3/index/segments/p00000-cc621e456761c4da341f08c81c41096f.sqs");

fn golden() -> &'static (Manifest, Segment) {
    static G: OnceLock<(Manifest, Segment)> = OnceLock::new();
    G.get_or_init(|| {
        (
            Manifest::decode("manifest.sqm", MANIFEST).expect("golden manifest"),
            Segment::decode("p00000", SEGMENT).expect("golden segment"),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let (manifest, seg) = golden();
    let Ok(Some(expr)) = Expr::parse(&json, &manifest.meta.schema) else { return };
    let codes: Vec<&[u8]> = (0..seg.meta().attrs as usize).map(|a| seg.attr_codes(a)).collect();
    let mask = expr.eval_codes(seg.attr_cells(), &codes, seg.len());
    for (row, m) in mask.iter().enumerate() {
        let exact = expr.matches(&|a| seg.attr_value(a, row));
        assert!(!exact || m & MASK_POSSIBLE != 0, "row {row} matches but the codes rule it out: {json}");
        assert!(exact || m & MASK_CERTAIN == 0, "row {row} does not match but the codes say certain: {json}");
    }
    lists_keep_the_contract(&json);
});

/// A table of 300 rows: `price` (numeric), `sizes` (numeric lists) and `tags` (string
/// lists), some lists empty, some missing.
struct Table {
    schema: Schema,
    columns: Vec<Vec<f64>>,
    lists: Vec<Option<ListColumn>>,
    cells: Vec<AttrCells>,
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let words: Vec<String> = ["blue", "green", "red", "sale", "new", "old", "x", "y", "z"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let schema = Schema {
            attrs: vec![
                AttrSpec::numeric("price"),
                AttrSpec::numeric("sizes").into_list(),
                AttrSpec::categorical("tags", words.clone()).into_list(),
            ],
        };
        let n = 300;
        let mut columns = vec![Vec::new(); 3];
        let (mut sizes, mut tags) = (ListColumn::default(), ListColumn::default());
        for r in 0..n {
            columns[0].push(if r % 11 == 0 { f64::NAN } else { (r % 37) as f64 });
            let s: Vec<f64> = (0..r % 4).map(|j| ((r * 7 + j * 13) % 23) as f64 / 2.0).collect();
            columns[1].push(if r % 13 == 0 { f64::NAN } else { s.len() as f64 });
            sizes.push(if r % 13 == 0 { &[] } else { &s });
            let t: Vec<f64> = (0..r % 5).map(|j| ((r * 3 + j * 5) % words.len()) as f64).collect();
            columns[2].push(if r % 17 == 0 { f64::NAN } else { t.len() as f64 });
            tags.push(if r % 17 == 0 { &[] } else { &t });
        }
        let cells = vec![
            AttrCells::build(&columns[0]),
            AttrCells::build_list(&sizes.values),
            AttrCells::build_list(&tags.values),
        ];
        Table {
            schema,
            columns,
            lists: vec![None, Some(sizes), Some(tags)],
            cells,
        }
    })
}

/// The meaning of a predicate on one value, written out independently of the engine.
fn naive(pred: &Pred, value: AttrValue) -> bool {
    let one = |v: f64| match pred {
        Pred::Eq(x) => v == *x,
        Pred::Ne(x) => v != *x,
        Pred::Lt(x) => v < *x,
        Pred::Lte(x) => v <= *x,
        Pred::Gt(x) => v > *x,
        Pred::Gte(x) => v >= *x,
        Pred::In(xs) => xs.contains(&v),
        Pred::Nin(xs) => !xs.contains(&v),
        Pred::Exists(e) => *e,
    };
    match value {
        AttrValue::Scalar(v) if v.is_nan() => matches!(pred, Pred::Ne(_) | Pred::Nin(_) | Pred::Exists(false)),
        AttrValue::Scalar(v) => one(v),
        AttrValue::List(None) => matches!(pred, Pred::Ne(_) | Pred::Nin(_) | Pred::Exists(false)),
        AttrValue::List(Some(es)) => match pred {
            Pred::Exists(e) => *e,
            Pred::Ne(_) | Pred::Nin(_) => es.iter().all(|&v| one(v)),
            _ => es.iter().any(|&v| one(v)),
        },
    }
}

fn naive_expr(e: &Expr, value: &dyn Fn(usize) -> AttrValue<'static>) -> bool {
    match e {
        Expr::And(c) => c.iter().all(|c| naive_expr(c, value)),
        Expr::Or(c) => c.iter().any(|c| naive_expr(c, value)),
        Expr::Leaf { attr, pred } => naive(pred, value(*attr as usize)),
    }
}

fn lists_keep_the_contract(json: &serde_json::Value) {
    let t = table();
    let Ok(Some(expr)) = Expr::parse(json, &t.schema) else { return };
    let n = t.columns[0].len();
    let codes: Vec<Vec<u8>> = (0..3)
        .map(|a| (0..n).map(|r| t.cells[a].encode_value(squash_core::attrs::attr_value(&t.columns, &t.lists, a, r))).collect())
        .collect();
    let refs: Vec<&[u8]> = codes.iter().map(Vec::as_slice).collect();
    let mask = expr.eval_codes(&t.cells, &refs, n);
    for (row, m) in mask.iter().enumerate() {
        let exact = expr.matches_row(&t.columns, &t.lists, row);
        let want = naive_expr(&expr, &|a| squash_core::attrs::attr_value(&t.columns, &t.lists, a, row));
        assert_eq!(exact, want, "row {row}: exact and naive evaluation disagree: {json}");
        assert!(!exact || m & MASK_POSSIBLE != 0, "row {row} matches but the codes rule it out: {json}");
        assert!(exact || m & MASK_CERTAIN == 0, "row {row} does not match but the codes say certain: {json}");
    }
}
