//! Helpers shared by the end-to-end tests: a clustered dataset generator with known
//! structure, and a naive filter evaluator written independently of the engine's.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use squash_build::io::{Attributes, Matrix};
use squash_core::attrs::{AttrKind, AttrSpec, ListColumn, Schema};

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

/// Tag words of [`with_lists`], most frequent first.
pub const TAGS: usize = 30;

/// The name of tag `t`.
pub fn tag(t: usize) -> String {
    format!("tag{t:02}")
}

/// `ds` with two list attributes more: `sizes` (0 to 3 integers in 0..40, ~5 % missing)
/// and `tags` (0 to 4 of [`TAGS`] words drawn with Zipf-like weights 1/(t+1), ~5 %
/// missing; empty lists included).
pub fn with_lists(mut ds: Dataset, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = ds.base.rows;
    let weights: Vec<f64> = (0..TAGS).map(|t| 1.0 / (t + 1) as f64).collect();
    let total: f64 = weights.iter().sum();
    let draw_tag = |rng: &mut ChaCha8Rng| -> usize {
        let mut x = rng.gen::<f64>() * total;
        for (t, w) in weights.iter().enumerate() {
            if x < *w {
                return t;
            }
            x -= w;
        }
        TAGS - 1
    };
    let (mut sizes, mut tags) = (ListColumn::default(), ListColumn::default());
    let (mut size_counts, mut tag_counts) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let spec = AttrSpec::categorical("tags", (0..TAGS).map(tag).collect()).into_list();
    for _ in 0..n {
        if rng.gen_bool(0.05) {
            size_counts.push(f64::NAN);
            sizes.push(&[]);
        } else {
            let s: Vec<f64> = (0..rng.gen_range(0..4)).map(|_| rng.gen_range(0..40) as f64).collect();
            size_counts.push(s.len() as f64);
            sizes.push(&s);
        }
        if rng.gen_bool(0.05) {
            tag_counts.push(f64::NAN);
            tags.push(&[]);
        } else {
            let t: Vec<f64> = (0..rng.gen_range(0..5))
                .map(|_| spec.code_of(&tag(draw_tag(&mut rng))).unwrap_or(f64::NAN))
                .collect();
            tag_counts.push(t.len() as f64);
            tags.push(&t);
        }
    }
    let a = &mut ds.attrs;
    a.lists.resize(a.columns.len(), None);
    a.schema.attrs.push(AttrSpec::numeric("sizes").into_list());
    a.columns.push(size_counts);
    a.lists.push(Some(sizes));
    a.schema.attrs.push(spec);
    a.columns.push(tag_counts);
    a.lists.push(Some(tags));
    ds
}

/// The name of tenant `t` of [`with_tenants`] (rank `t`, 0 the largest).
pub fn tenant(t: usize) -> String {
    format!("tenant-{t:05}")
}

/// `ds` with two high-cardinality categorical attributes more: `tenant`, one of
/// `tenants` names spread over the rows independently of the vectors with Zipf weights
/// `1 / (t + 1)^0.7` (~3 % missing), and `region`, the vector's cell on a grid over
/// its first two coordinates (so each region's rows lie close together).
pub fn with_tenants(mut ds: Dataset, tenants: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = ds.base.rows;
    let mut cumulative = Vec::with_capacity(tenants);
    let mut acc = 0.0;
    for t in 0..tenants {
        acc += 1.0 / ((t + 1) as f64).powf(0.7);
        cumulative.push(acc);
    }
    let spec = AttrSpec::categorical("tenant", (0..tenants).map(tenant).collect());
    let column: Vec<f64> = (0..n)
        .map(|_| {
            if rng.gen_bool(0.03) {
                return f64::NAN;
            }
            let x = rng.gen::<f64>() * acc;
            let t = cumulative.partition_point(|&c| c <= x).min(tenants - 1);
            spec.code_of(&tenant(t)).unwrap_or(f64::NAN)
        })
        .collect();
    let names: Vec<String> = (0..n).map(|r| region_of(ds.base.row(r))).collect();
    let region = AttrSpec::categorical("region", names.clone());
    let region_column: Vec<f64> = names.iter().map(|t| region.code_of(t).unwrap_or(f64::NAN)).collect();
    let a = &mut ds.attrs;
    a.lists.resize(a.columns.len(), None);
    a.schema.attrs.push(spec);
    a.columns.push(column);
    a.schema.attrs.push(region);
    a.columns.push(region_column);
    a.lists.resize(a.columns.len(), None);
    ds
}

/// The `region` of [`with_tenants`] for a vector.
pub fn region_of(v: &[f32]) -> String {
    format!("r{}:{}", (v[0] * 2.0).floor() as i64, (v[1] * 2.0).floor() as i64)
}

/// A random filter on the list attributes of [`with_lists`] (mixed with the scalar ones).
pub fn random_list_filter(rng: &mut ChaCha8Rng, depth: usize) -> Value {
    let leaf = |rng: &mut ChaCha8Rng| -> Value {
        let t = |rng: &mut ChaCha8Rng| tag(rng.gen_range(0..TAGS + 2));
        match rng.gen_range(0..11) {
            0 => serde_json::json!({"tags": {"$contains": t(rng)}}),
            1 => serde_json::json!({"tags": {"$containsAny": [t(rng), t(rng)]}}),
            2 => serde_json::json!({"tags": {"$containsAll": [t(rng), t(rng)]}}),
            3 => serde_json::json!({"tags": t(rng)}),
            4 => serde_json::json!({"tags": {"$nin": [t(rng), t(rng)]}}),
            5 => serde_json::json!({"tags": {"$ne": t(rng)}}),
            6 => serde_json::json!({"tags": {"$exists": rng.gen_bool(0.5)}}),
            7 => serde_json::json!({"sizes": {"$lt": rng.gen_range(0..40)}}),
            8 => serde_json::json!({"sizes": {"$in": [rng.gen_range(0..40), rng.gen_range(0..40)]}}),
            9 => serde_json::json!({"sizes": {"$gte": rng.gen_range(0..40), "$lt": rng.gen_range(0..40)}}),
            _ => random_filter(rng, 0),
        }
    };
    if depth == 0 || rng.gen_bool(0.5) {
        return leaf(rng);
    }
    let n = rng.gen_range(1..4);
    let children: Vec<Value> = (0..n).map(|_| random_list_filter(rng, depth - 1)).collect();
    if rng.gen_bool(0.5) {
        serde_json::json!({ "$and": children })
    } else {
        serde_json::json!({ "$or": children })
    }
}

/// The JSON value of attribute `name` of row `row` (`None` when missing; an array for a
/// list attribute).
pub fn value_of(attrs: &Attributes, name: &str, row: usize) -> Option<Value> {
    let a = attrs.schema.index_of(name)?;
    let v = attrs.columns[a][row];
    if v.is_nan() {
        return None;
    }
    let spec = &attrs.schema.attrs[a];
    let one = |v: f64| match spec.kind {
        AttrKind::Numeric => serde_json::json!(v),
        AttrKind::Categorical => Value::String(spec.dictionary[v as usize].clone()),
    };
    match attrs.list(a) {
        Some(l) => Some(Value::Array(l.get(row).iter().map(|&e| one(e)).collect())),
        None => Some(one(v)),
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
/// semantics (MongoDB style; missing values match only `$ne`, `$nin`, `$exists: false`;
/// on a list, a comparison asks whether some element matches and `$ne` / `$nin` whether
/// no element is excluded).
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
            if let Some(Value::Array(elements)) = &value {
                return ops.iter().all(|(op, operand)| {
                    let some = |op: &str, x: &Value| elements.iter().any(|e| scalar_matches(op, x, &Some(e.clone())));
                    match op.as_str() {
                        "$exists" => operand.as_bool() == Some(true),
                        "$contains" => some("$eq", operand),
                        "$containsAny" => operand.as_array().is_some_and(|a| a.iter().any(|x| some("$eq", x))),
                        "$containsAll" => operand.as_array().is_some_and(|a| a.iter().all(|x| some("$eq", x))),
                        "$ne" => !some("$eq", operand),
                        "$nin" => operand.as_array().is_some_and(|a| !a.iter().any(|x| some("$eq", x))),
                        other => some(other, operand),
                    }
                });
            }
            ops.iter().all(|(op, operand)| scalar_matches(op, operand, &value))
        }
    })
}

/// One operator on one (possibly missing) value.
fn scalar_matches(op: &str, operand: &Value, value: &Option<Value>) -> bool {
    match (op, value) {
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
    }
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
