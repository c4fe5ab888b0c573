//! The `squash` binary end to end: a happy path, and bad input that must end with a
//! one-line error naming the problem (exit code 1), never a panic.

use std::path::Path;
use std::process::{Command, Output};

fn squash(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_squash"))
        .args(args)
        .output()
        .expect("run squash")
}

fn write_npy(path: &Path, descr: &str, rows: usize, cols: usize, data: &[f32]) {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for x in data {
        out.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, out).unwrap();
}

fn vectors(rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| ((i * 7919 % 1000) as f32 / 100.0).sin())
        .collect()
}

/// Asserts a failed run with exactly one stderr line containing every `needle`.
fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "'{n}' missing from: {stderr}");
    }
}

#[test]
fn build_and_query_from_npy_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_npy(&d.join("v.npy"), "<f4", 300, 8, &vectors(300, 8));
    let mut csv = String::from("price,color\n");
    for i in 0..300 {
        csv.push_str(&format!("{},{}\n", i % 50, ["red", "green", "blue"][i % 3]));
    }
    std::fs::write(d.join("a.csv"), csv).unwrap();
    let idx = d.join("idx");
    let out = squash(&[
        "build",
        "--vectors",
        d.join("v.npy").to_str().unwrap(),
        "--attrs",
        d.join("a.csv").to_str().unwrap(),
        "--out",
        idx.to_str().unwrap(),
        "--partitions",
        "3",
        "--no-progress",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    write_npy(&d.join("q.npy"), "<f4", 4, 8, &vectors(4, 8));
    std::fs::write(
        d.join("f.jsonl"),
        "null\n{\"color\": \"red\"}\n{\"price\": {\"$lt\": 10}}\n{\"$or\": [{\"color\": \"blue\"}, {\"price\": 3}]}\n",
    )
    .unwrap();
    let out = squash(&[
        "query",
        "--index",
        idx.to_str().unwrap(),
        "--queries",
        d.join("q.npy").to_str().unwrap(),
        "--filters",
        d.join("f.jsonl").to_str().unwrap(),
        "--k",
        "5",
        "--json",
        "--include-attributes",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["query"], i);
        assert_eq!(l["ids"].as_array().unwrap().len(), 5);
    }
    for a in lines[1]["attributes"].as_array().unwrap() {
        assert_eq!(a["color"], "red");
    }
    for a in lines[2]["attributes"].as_array().unwrap() {
        assert!(a["price"].as_f64().unwrap() < 10.0);
    }
    let info = squash(&["info", "--index", idx.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("\"partitions\": 3"));
}

#[test]
fn bad_input_gives_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();

    // Missing file.
    let out = squash(&["build", "--vectors", &p("missing.npy"), "--out", &p("i")]);
    assert_one_line_error(&out, &["missing.npy", "cannot open"]);

    // Wrong dtype.
    write_npy(&d.join("i16.npy"), "<i2", 2, 2, &[]);
    let out = squash(&["build", "--vectors", &p("i16.npy"), "--out", &p("i")]);
    assert_one_line_error(&out, &["i16.npy", "unsupported dtype '<i2'"]);

    // Not an npy at all, and an unknown extension.
    std::fs::write(d.join("junk.npy"), b"hello world, not numpy").unwrap();
    assert_one_line_error(
        &squash(&["build", "--vectors", &p("junk.npy"), "--out", &p("i")]),
        &["not a .npy file"],
    );
    std::fs::write(d.join("v.txt"), b"1 2 3").unwrap();
    assert_one_line_error(
        &squash(&["build", "--vectors", &p("v.txt"), "--out", &p("i")]),
        &["unknown vector file type"],
    );

    // NaN in vectors.
    let mut v = vectors(50, 4);
    v[4 * 7 + 2] = f32::NAN;
    write_npy(&d.join("nan.npy"), "<f4", 50, 4, &v);
    let out = squash(&["build", "--vectors", &p("nan.npy"), "--out", &p("i")]);
    assert_one_line_error(&out, &["vectors[7]", "NaN"]);

    // Attribute rows do not match vector rows.
    write_npy(&d.join("v.npy"), "<f4", 50, 4, &vectors(50, 4));
    write_npy(&d.join("a.npy"), "<f4", 49, 1, &[0.5; 49]);
    let (v, a) = (p("v.npy"), p("a.npy"));
    let build = |out: &str, more: &[&str]| {
        let out = p(out);
        let mut args = vec![
            "build",
            "--vectors",
            &v,
            "--attrs",
            &a,
            "--attr-names",
            "price",
            "--out",
            &out,
        ];
        args.extend_from_slice(more);
        squash(&args)
    };
    let out = build("i", &[]);
    assert_one_line_error(&out, &["49 rows", "50 vectors"]);

    // A good index for the query errors.
    write_npy(&d.join("a.npy"), "<f4", 50, 1, &[0.5; 50]);
    let out = build("idx", &["--partitions", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Dimension mismatch.
    write_npy(&d.join("q3.npy"), "<f4", 2, 3, &vectors(2, 3));
    let out = squash(&["query", "--index", &p("idx"), "--queries", &p("q3.npy")]);
    assert_one_line_error(&out, &["queries[0].vector", "3 dimensions, index has 4"]);

    // A bad query in the second batch is named by its place in the file.
    write_npy(&d.join("q4.npy"), "<f4", 3, 4, &vectors(3, 4));
    std::fs::write(d.join("f3.jsonl"), "null\n{}\n{\"colour\": 1}\n").unwrap();
    let out = squash(&[
        "query",
        "--index",
        &p("idx"),
        "--queries",
        &p("q4.npy"),
        "--filters",
        &p("f3.jsonl"),
        "--batch",
        "2",
    ]);
    assert_one_line_error(&out, &["queries[2].filter.colour", "unknown attribute"]);

    // Unknown attribute and bad JSON in a filter.
    let idx = p("idx");
    let filtered = |filter: &str| squash(&["query", "--index", &idx, "--vector", "1,2,3,4", "--filter", filter]);
    let out = filtered("{\"colour\": \"red\"}");
    assert_one_line_error(&out, &["filter.colour", "unknown attribute 'colour'", "price"]);
    let out = filtered("{price");
    assert_one_line_error(&out, &["filter", "invalid JSON"]);

    // k out of range, NaN in a query, missing index.
    let out = squash(&["query", "--index", &p("idx"), "--vector", "1,2,3,4", "--k", "0"]);
    assert_one_line_error(&out, &["queries[0].k", "between 1 and 1000"]);
    let out = squash(&["query", "--index", &p("idx"), "--vector", "1,NaN,3,4"]);
    assert_one_line_error(&out, &["vector", "NaN"]);
    let out = squash(&["query", "--index", &p("nope"), "--vector", "1,2,3,4"]);
    assert_one_line_error(&out, &["not found"]);

    // Filters file with the wrong number of lines.
    std::fs::write(d.join("f.jsonl"), "null\nnull\nnull\n").unwrap();
    let out = squash(&[
        "query",
        "--index",
        &p("idx"),
        "--queries",
        &p("q3.npy"),
        "--filters",
        &p("f.jsonl"),
    ]);
    assert_one_line_error(&out, &["f.jsonl", "3 filter lines for 2 queries"]);
}

#[test]
fn string_and_integer_ids_round_trip_through_build_upsert_delete_and_query() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();
    let base = vectors(400, 8);
    write_npy(&d.join("v.npy"), "<f4", 400, 8, &base);
    for (kind, id_of) in [
        ("string", (|i| format!("doc-{i}")) as fn(usize) -> String),
        ("u64", |i| format!("{}", 10_000 + i * 3)),
    ] {
        let ids: String = (0..400).map(|i| id_of(i) + "\n").collect();
        std::fs::write(d.join("ids.txt"), ids).unwrap();
        let idx = p(&format!("idx-{kind}"));
        let out = squash(&[
            "build",
            "--vectors",
            &p("v.npy"),
            "--ids",
            &p("ids.txt"),
            "--out",
            &idx,
            "--partitions",
            "2",
            "--no-progress",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{kind} ids")));
        // Upsert: replace id 5 and add a new one, each with a vector far from the rest.
        let new: Vec<f32> = (0..16).map(|i| 50.0 + i as f32).collect();
        write_npy(&d.join("n.npy"), "<f4", 2, 8, &new);
        let new_id = if kind == "string" {
            "fresh".to_string()
        } else {
            "7".to_string()
        };
        std::fs::write(d.join("up.txt"), format!("{}\n{new_id}\n", id_of(5))).unwrap();
        let out = squash(&[
            "upsert",
            "--index",
            &idx,
            "--vectors",
            &p("n.npy"),
            "--ids",
            &p("up.txt"),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (report["inserted"].as_u64(), report["replaced"].as_u64()),
            (Some(1), Some(1)),
            "{report}"
        );
        let query = |v: &[f32]| {
            let v: Vec<String> = v.iter().map(|x| x.to_string()).collect();
            let out = squash(&["query", "--index", &idx, "--vector", &v.join(","), "--k", "3", "--json"]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["ids"].clone()
        };
        let want = |s: &str| {
            if kind == "string" {
                serde_json::json!(s)
            } else {
                serde_json::json!(s.parse::<u64>().unwrap())
            }
        };
        assert_eq!(query(&new[..8])[0], want(&id_of(5)));
        assert_eq!(query(&new[8..])[0], want(&new_id));
        // The replaced row's old vector no longer answers with its id.
        assert!(!query(&base[5 * 8..6 * 8])
            .as_array()
            .unwrap()
            .contains(&want(&id_of(5))));
        // Delete both; the old vector of id 6 still answers first.
        let out = squash(&["delete", "--index", &idx, "--ids", &p("up.txt")]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let hits = query(&new[..8]);
        assert!(
            !hits
                .as_array()
                .unwrap()
                .iter()
                .any(|h| *h == want(&id_of(5)) || *h == want(&new_id)),
            "{hits}"
        );
        assert_eq!(query(&base[6 * 8..7 * 8])[0], want(&id_of(6)));
        // Ids of the wrong kind are refused, naming the field.
        let wrong = if kind == "string" { "12\n" } else { "abc\n" };
        std::fs::write(d.join("wrong.txt"), wrong).unwrap();
        write_npy(&d.join("one.npy"), "<f4", 1, 8, &new[..8]);
        let out = squash(&[
            "upsert",
            "--index",
            &idx,
            "--vectors",
            &p("one.npy"),
            "--ids",
            &p("wrong.txt"),
        ]);
        assert_one_line_error(&out, &["vectors[0].id"]);
    }
    // Duplicate ids in a build name the first duplicate.
    std::fs::write(
        d.join("dup.txt"),
        (0..400).map(|i| format!("{}\n", i % 399)).collect::<String>(),
    )
    .unwrap();
    let out = squash(&[
        "build",
        "--vectors",
        &p("v.npy"),
        "--ids",
        &p("dup.txt"),
        "--out",
        &p("dup"),
        "--no-progress",
    ]);
    assert_one_line_error(&out, &["duplicate id 0 (rows 0 and 399)"]);
}
