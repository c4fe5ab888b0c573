//! Any bytes as a JSON filter against the golden index's schema: parsing never panics,
//! and a filter that parses keeps its contract on every row of a golden segment: the
//! code-level verdict never rules out a row that matches exactly, and never calls a row
//! certain that does not match.
#![no_main]

use libfuzzer_sys::fuzz_target;
use squash_core::filter::{Expr, MASK_CERTAIN, MASK_POSSIBLE};
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
    let columns = seg.attr_columns();
    for (row, m) in mask.iter().enumerate() {
        let exact = expr.matches_row(&columns, row);
        assert!(!exact || m & MASK_POSSIBLE != 0, "row {row} matches but the codes rule it out: {json}");
        assert!(exact || m & MASK_CERTAIN == 0, "row {row} does not match but the codes say certain: {json}");
    }
});
