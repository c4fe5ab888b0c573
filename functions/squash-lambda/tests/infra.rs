//! The deployment templates (infra/terraform, infra/sam) against the code: they may set
//! only environment variables the functions read, must set the ones a deployment needs,
//! must route exactly the coordinator's routes and must name the workers the way
//! SQUASH_WORKER_FUNCTION does. `make infra-check` checks the same and more with real
//! parsers; this test keeps `make test` honest without Python.

use squash_lambda::config::ENV_VARS;
use squash_lambda::service::ROUTES;
use std::collections::BTreeSet;
use std::path::Path;

/// Variables every deployment sets (the rest have defaults).
const DEPLOYED: &[&str] = &[
    "SQUASH_INDEX_ROOT",
    "SQUASH_WORKERS",
    "SQUASH_BRANCHING",
    "SQUASH_DEPTH",
    "SQUASH_WORKER_FUNCTION",
];

fn templates() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra");
    let mut files = vec![root.join("sam/template.yaml")];
    let mut tf: Vec<_> = std::fs::read_dir(root.join("terraform"))
        .expect("infra/terraform")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "tf"))
        .collect();
    tf.sort();
    assert!(tf.len() >= 5, "infra/terraform has {} .tf files", tf.len());
    files.extend(tf);
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.display().to_string(), text)
        })
        .collect()
}

/// Every `SQUASH_[A-Z0-9_]+` word in `text` (a bare `SQUASH_*` in prose is not one).
fn squash_vars(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("SQUASH_") {
        let word: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        rest = &rest[i + word.len()..];
        if word.len() > "SQUASH_".len() {
            out.insert(word);
        }
    }
    out
}

/// Every quoted `"METHOD /path"` route key in `text`.
fn route_keys(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"] {
        let needle = format!("\"{method} /");
        let mut rest = text;
        while let Some(i) = rest.find(&needle) {
            let key: String = rest[i + 1..].chars().take_while(|c| *c != '"').collect();
            rest = &rest[i + needle.len()..];
            out.insert(key);
        }
    }
    out
}

#[test]
fn templates_set_only_variables_the_functions_read() {
    let known: BTreeSet<&str> = ENV_VARS.iter().copied().collect();
    let mut sam_vars = BTreeSet::new();
    let mut tf_vars = BTreeSet::new();
    for (path, text) in templates() {
        let vars = squash_vars(&text);
        for v in &vars {
            assert!(known.contains(v.as_str()), "{path} sets {v}, which no function reads");
        }
        if path.ends_with(".yaml") {
            &mut sam_vars
        } else {
            &mut tf_vars
        }
        .extend(vars);
    }
    for v in DEPLOYED {
        assert!(sam_vars.contains(*v), "infra/sam/template.yaml does not set {v}");
        assert!(tf_vars.contains(*v), "infra/terraform does not set {v}");
    }
}

#[test]
fn the_documented_variables_are_the_ones_read() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .expect("functions/README.md");
    let table: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|v| v.starts_with("SQUASH_"))
        .map(str::to_string)
        .collect();
    let read: BTreeSet<String> = ENV_VARS
        .iter()
        .filter(|v| v.starts_with("SQUASH_"))
        .map(|v| v.to_string())
        .collect();
    assert_eq!(
        table, read,
        "functions/README.md's table vs squash_lambda::config::ENV_VARS"
    );
}

#[test]
fn templates_route_exactly_the_coordinator_routes() {
    let expected: BTreeSet<String> = ROUTES.iter().map(|r| r.to_string()).collect();
    let (mut sam, mut tf) = (BTreeSet::new(), BTreeSet::new());
    for (path, text) in templates() {
        if path.ends_with(".yaml") { &mut sam } else { &mut tf }.extend(route_keys(&text));
    }
    assert_eq!(sam, expected, "routes in infra/sam/template.yaml");
    assert_eq!(tf, expected, "routes in infra/terraform");
}

#[test]
fn templates_name_workers_the_way_the_coordinator_calls_them() {
    for (path, text) in templates() {
        let binaries = ["squash-coordinator", "squash-worker"];
        if path.ends_with(".yaml") {
            // SQUASH_WORKER_FUNCTION with {i} = n must be worker slot n's FunctionName.
            assert!(
                text.contains("SQUASH_WORKER_FUNCTION: !Sub \"${Name}-worker-{i}\""),
                "{path}"
            );
            for n in 0..8 {
                let name = format!("  Worker{n}:\n");
                let function = format!("FunctionName: !Sub \"${{Name}}-worker-{n}\"");
                assert!(
                    text.contains(&name) && text.contains(&function),
                    "{path}: worker slot {n}"
                );
            }
            for b in binaries {
                assert!(text.contains(&format!("Binary: {b}")), "{path} does not build {b}");
            }
        } else if path.ends_with("lambda.tf") {
            assert!(
                text.contains("SQUASH_WORKER_FUNCTION   = local.worker_pattern"),
                "{path}"
            );
            assert!(text.contains("worker_pattern   = \"${var.name}-worker-{i}\""), "{path}");
            assert!(
                text.contains("replace(local.worker_pattern, \"{i}\", tostring(i))"),
                "{path}: worker names must come from the pattern"
            );
            for b in binaries {
                assert!(
                    text.contains(&format!("target/lambda/{b}/bootstrap.zip")),
                    "{path} does not deploy {b}"
                );
            }
        }
    }
}

#[test]
fn the_binaries_the_templates_deploy_exist() {
    let functions = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (dir, bin) in [("coordinator", "squash-coordinator"), ("worker", "squash-worker")] {
        let manifest = std::fs::read_to_string(functions.join(dir).join("Cargo.toml")).expect("Cargo.toml");
        assert!(
            manifest.contains(&format!("[[bin]]\nname = \"{bin}\"")),
            "functions/{dir}/Cargo.toml has no [[bin]] {bin}"
        );
    }
}

#[test]
fn the_scanners_find_what_they_look_for() {
    let text = r#"x = "SQUASH_A_1" y: SQUASH_B, the SQUASH_* variables, "POST /v1/a" 'GET /no' "GET /v1/{index}""#;
    assert_eq!(
        squash_vars(text),
        BTreeSet::from(["SQUASH_A_1".to_string(), "SQUASH_B".to_string()])
    );
    assert_eq!(
        route_keys(text),
        BTreeSet::from(["POST /v1/a".to_string(), "GET /v1/{index}".to_string()])
    );
}
