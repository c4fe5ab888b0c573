//! Corrupt data: every stored object of the golden index (manifest and segments), with
//! bytes flipped across the whole object, truncated, extended, or carrying another format
//! version, must give an error that names the object, or (where a flip changes nothing the
//! reader uses) exactly the intact answer. Never a different answer.

use rayon::prelude::*;
use serde_json::json;
use squash_api::SearchRequest;
use squash_engine::search::Index;
use squash_storage::{LocalDir, Memory, ObjectStore};
use std::path::PathBuf;
use std::sync::Arc;

fn golden() -> Vec<(String, Vec<u8>)> {
    let src = LocalDir::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden-v3/index"));
    let mut objects: Vec<(String, Vec<u8>)> = src
        .list("")
        .expect("fixture")
        .into_iter()
        .map(|k| {
            let bytes = src.get(&k).expect("fixture object");
            (k, bytes)
        })
        .collect();
    objects.sort();
    objects
}

fn requests() -> Vec<SearchRequest> {
    let raw: serde_json::Value = serde_json::from_str(include_str!("../../events/raw-search.json")).expect("event");
    let vector = raw["search"]["vector"].clone();
    // Every partition searched, with and without a filter, attributes returned.
    [
        json!({"vector": vector, "k": 10, "include": ["attributes"], "params": {"nprobe": 3}}),
        json!({"vector": vector, "k": 5, "filter": {"color": {"$in": ["red", "blue"]}, "price": {"$lt": 60}},
               "include": ["attributes"], "params": {"nprobe": 3}}),
    ]
    .into_iter()
    .map(|v| SearchRequest::from_value(v).expect("request"))
    .collect()
}

/// The answers over the objects, with `key` replaced by `bytes`; Err(message) on failure.
fn answers(objects: &[(String, Vec<u8>)], key: &str, bytes: &[u8], reqs: &[SearchRequest]) -> Result<String, String> {
    let store = Arc::new(Memory::new());
    for (k, v) in objects {
        store
            .put(k, if k == key { bytes } else { v })
            .map_err(|e| e.to_string())?;
    }
    let index = Index::open(store, "golden").map_err(|e| e.to_string())?;
    let mut out = String::new();
    for r in reqs {
        let resp = index.search(r).map_err(|e| e.to_string())?;
        out.push_str(&serde_json::to_string(&resp.hits).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[test]
fn corrupt_objects_give_an_error_naming_them_never_a_wrong_answer() {
    let objects = golden();
    assert!(objects.len() >= 4, "the golden index has a manifest and 3 segments");
    let reqs = requests();
    let intact = answers(&objects, "", &[], &reqs).expect("the intact index answers");
    assert!(intact.len() > 100, "the intact answers hold hits: {intact}");

    let mut tried = 0usize;
    let mut unchanged = 0usize;
    for (key, original) in &objects {
        // Every byte of the manifest and of each segment's first 512 bytes (headers,
        // tables), every 3rd byte after that; each flipped in its lowest and highest bit.
        let positions: Vec<usize> = (0..original.len())
            .filter(|&i| i < 512 || key.ends_with(".sqm") || i % 3 == 0)
            .collect();
        let mut variants: Vec<(String, Vec<u8>)> = Vec::new();
        for &i in &positions {
            for bit in [0x01u8, 0x80] {
                let mut b = original.clone();
                b[i] ^= bit;
                variants.push((format!("flip {bit:#04x} at byte {i}"), b));
            }
        }
        for len in [0, 1, 7, 8, 16, original.len() / 2, original.len() - 1] {
            variants.push((format!("truncated to {len} bytes"), original[..len].to_vec()));
        }
        // A newer format version with a valid header checksum (FORMAT.md: xxh3-64 of
        // bytes [0, 24 + 40C)): only the version check can catch it.
        let mut newer = original.clone();
        newer[8..12].copy_from_slice(&(squash_core::container::FORMAT_VERSION + 1).to_le_bytes());
        let sections = u32::from_le_bytes(newer[12..16].try_into().expect("4 bytes")) as usize;
        let end = 24 + 40 * sections;
        let sum = xxhash_rust::xxh3::xxh3_64(&newer[..end]);
        newer[end..end + 8].copy_from_slice(&sum.to_le_bytes());
        variants.push(("a newer format version".into(), newer));
        let mut longer = original.clone();
        longer.extend_from_slice(&[0u8; 16]);
        variants.push(("16 bytes appended".into(), longer));
        let results: Vec<(String, Result<String, String>)> = variants
            .into_par_iter()
            .map(|(what, bytes)| {
                let r = answers(&objects, key, &bytes, &reqs);
                (what, r)
            })
            .collect();
        for (what, r) in results {
            tried += 1;
            if what == "a newer format version" {
                let message = r.as_ref().expect_err("a newer version must be refused");
                // (A segment is first checked against the manifest's whole-object checksum.)
                let named = message.contains(key.as_str());
                assert!(
                    named && (message.contains("version") || !key.ends_with(".sqm")),
                    "{key}: {message}"
                );
            }
            match r {
                Err(message) => assert!(
                    message.contains(key.as_str()),
                    "{key}, {what}: the error does not name the object: {message}"
                ),
                Ok(answer) => {
                    assert_eq!(
                        answer, intact,
                        "{key}, {what}: a corrupt object gave a different answer"
                    );
                    unchanged += 1;
                }
            }
        }
    }
    eprintln!(
        "corruption: {tried} corrupt objects tried, {} detected by name, {unchanged} harmless",
        tried - unchanged
    );
}
