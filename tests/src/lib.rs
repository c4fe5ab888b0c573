//! Helpers shared by the end-to-end tests: a clustered dataset generator with known
//! structure, and a naive filter evaluator written independently of the engine's.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use squash_build::io::{Attributes, Matrix};
use squash_core::attrs::{AttrKind, AttrSpec, Schema};

/// Category names used by the generated datasets.
pub const COLORS: [&str; 6] = ["amber", "blue", "cyan", "green", "red", "violet"];

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    // Box-Muller.
    let u1: f64 = rng.gen::<f64>().max(1e-12);
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// A generated dataset: base vectors with attributes, and held-out queries drawn from
/// the same clusters.
pub struct Dataset {
    /// Indexed vectors.
    pub base: Matrix,
    /// Query vectors (not in `base`).
    pub queries: Matrix,
    /// Attributes of `base`: `price` (numeric, [0, 100)), `color` (categorical),
    /// `stock` (integer 0..50 with ~5% missing).
    pub attrs: Attributes,
}

/// `n` vectors of dimension `dim` around `clusters` Gaussian centres, plus `q` queries.
pub fn clustered(n: usize, q: usize, dim: usize, clusters: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| (0..dim).map(|_| normal(&mut rng) * 3.0).collect())
        .collect();
    let draw = |rng: &mut ChaCha8Rng, rows: usize| -> Matrix {
        let mut data = Vec::with_capacity(rows * dim);
        for _ in 0..rows {
            let c = &centres[rng.gen_range(0..clusters)];
            for &x in c.iter() {
                data.push(x + normal(rng));
            }
        }
        Matrix { rows, cols: dim, data }
    };
    let base = draw(&mut rng, n);
    let queries = draw(&mut rng, q);
    let price: Vec<f64> = (0..n).map(|_| (rng.gen::<f64>() * 10_000.0).floor() / 100.0).collect();
    let color: Vec<f64> = (0..n).map(|_| rng.gen_range(0..COLORS.len()) as f64).collect();
    let stock: Vec<f64> = (0..n)
        .map(|_| {
            if rng.gen::<f64>() < 0.05 {
                f64::NAN
            } else {
                rng.gen_range(0..50) as f64
            }
        })
        .collect();
    let attrs = Attributes {
        schema: Schema {
            attrs: vec![
                AttrSpec::numeric("price"),
                AttrSpec::categorical("color", COLORS.iter().map(|s| s.to_string()).collect()),
                AttrSpec::numeric("stock"),
            ],
        },
        columns: vec![price, color, stock],
        lists: Vec::new(),
    };
    Dataset { base, queries, attrs }
}

/// The JSON value of attribute `name` of row `row` (`None` when missing).
pub fn value_of(attrs: &Attributes, name: &str, row: usize) -> Option<Value> {
    let a = attrs.schema.index_of(name)?;
    let v = attrs.columns[a][row];
    if v.is_nan() {
        return None;
    }
    match attrs.schema.attrs[a].kind {
        AttrKind::Numeric => Some(serde_json::json!(v)),
        AttrKind::Categorical => Some(Value::String(attrs.schema.attrs[a].dictionary[v as usize].clone())),
    }
}

fn cmp(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn same(a: &Value, b: &Value) -> bool {
    cmp(a, b) == Some(std::cmp::Ordering::Equal)
}

/// Naive interpretation of a JSON filter on one row, straight from the documented
/// semantics (MongoDB style; missing values match only `$ne`, `$nin`, `$exists: false`).
pub fn naive_matches(filter: &Value, attrs: &Attributes, row: usize) -> bool {
    let Value::Object(map) = filter else { return true };
    map.iter().all(|(key, cond)| match key.as_str() {
        "$and" => cond
            .as_array()
            .is_some_and(|a| a.iter().all(|c| naive_matches(c, attrs, row))),
        "$or" => cond
            .as_array()
            .is_some_and(|a| a.iter().any(|c| naive_matches(c, attrs, row))),
        name => {
            let value = value_of(attrs, name, row);
            let ops: Vec<(String, Value)> = match cond {
                Value::Object(o) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                literal => vec![("$eq".into(), literal.clone())],
            };
            ops.iter().all(|(op, operand)| match (op.as_str(), &value) {
                ("$exists", v) => operand.as_bool() == Some(v.is_some()),
                ("$ne", None) | ("$nin", None) => true,
                (_, None) => false,
                ("$eq", Some(v)) => same(v, operand),
                ("$ne", Some(v)) => !same(v, operand),
                ("$lt", Some(v)) => cmp(v, operand) == Some(std::cmp::Ordering::Less),
                ("$lte", Some(v)) => matches!(
                    cmp(v, operand),
                    Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                ),
                ("$gt", Some(v)) => cmp(v, operand) == Some(std::cmp::Ordering::Greater),
                ("$gte", Some(v)) => {
                    matches!(
                        cmp(v, operand),
                        Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
                    )
                }
                ("$in", Some(v)) => operand.as_array().is_some_and(|a| a.iter().any(|x| same(v, x))),
                ("$nin", Some(v)) => operand.as_array().is_some_and(|a| !a.iter().any(|x| same(v, x))),
                _ => false,
            })
        }
    })
}

/// A random filter over the generated schema, from simple ranges to nested `$or`s.
pub fn random_filter(rng: &mut ChaCha8Rng, depth: usize) -> Value {
    let leaf = |rng: &mut ChaCha8Rng| -> Value {
        match rng.gen_range(0..9) {
            0 => serde_json::json!({"price": {"$lt": rng.gen_range(0..100)}}),
            1 => {
                let lo = rng.gen_range(0..90) as f64;
                serde_json::json!({"price": {"$gte": lo, "$lte": lo + rng.gen_range(1..30) as f64}})
            }
            2 => serde_json::json!({"color": COLORS[rng.gen_range(0..COLORS.len())]}),
            3 => serde_json::json!({"color": {"$in": [COLORS[rng.gen_range(0..6)], COLORS[rng.gen_range(0..6)]]}}),
            4 => serde_json::json!({"color": {"$nin": [COLORS[rng.gen_range(0..6)], "nonexistent"]}}),
            5 => serde_json::json!({"stock": {"$gt": rng.gen_range(0..50)}}),
            6 => serde_json::json!({"stock": {"$exists": rng.gen_bool(0.5)}}),
            7 => serde_json::json!({"stock": {"$ne": rng.gen_range(0..50)}}),
            _ => {
                serde_json::json!({"price": {"$gt": rng.gen_range(0..100) as f64 + 0.5}, "stock": {"$lte": rng.gen_range(0..50)}})
            }
        }
    };
    if depth == 0 || rng.gen_bool(0.5) {
        return leaf(rng);
    }
    let n = rng.gen_range(1..4);
    let children: Vec<Value> = (0..n).map(|_| random_filter(rng, depth - 1)).collect();
    if rng.gen_bool(0.5) {
        serde_json::json!({ "$and": children })
    } else {
        serde_json::json!({ "$or": children })
    }
}

/// The integer of a hit's id (test indexes use row numbers); panics on a string id.
pub fn row(id: &squash_api::Id) -> u64 {
    id.as_u64()
        .unwrap_or_else(|| panic!("expected an integer id, got {id}"))
}
