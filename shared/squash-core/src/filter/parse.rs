//! Parsing a JSON filter against the index schema into an [`Expr`].

use super::expr::*;
use crate::attrs::{AttrKind, Schema};
use crate::error::{CoreError, Result};
use serde_json::Value;

impl Expr {
    /// Parses a JSON filter against `schema`. `null` and `{}` mean "no filter" (`None`).
    pub fn parse(json: &Value, schema: &Schema) -> Result<Option<Expr>> {
        let mut leaves = 0usize;
        match json {
            Value::Null => Ok(None),
            Value::Object(map) if map.is_empty() => Ok(None),
            Value::Object(_) => parse_object(json, schema, "filter", 1, &mut leaves).map(Some),
            _ => Err(CoreError::filter("filter", "a filter must be a JSON object")),
        }
    }
}

fn parse_object(json: &Value, schema: &Schema, path: &str, depth: usize, leaves: &mut usize) -> Result<Expr> {
    if depth > MAX_DEPTH {
        return Err(CoreError::filter(
            path,
            format!("filter is nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    let Value::Object(map) = json else {
        return Err(CoreError::filter(path, "expected a JSON object"));
    };
    if map.is_empty() {
        return Err(CoreError::filter(path, "empty object is not a condition"));
    }
    let mut parts = Vec::with_capacity(map.len());
    for (key, value) in map {
        let here = format!("{path}.{key}");
        match key.as_str() {
            "$and" | "$or" => {
                let Value::Array(items) = value else {
                    return Err(CoreError::filter(&here, "expected an array of conditions"));
                };
                if items.is_empty() {
                    return Err(CoreError::filter(&here, "needs at least one condition"));
                }
                let mut children = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    children.push(parse_object(item, schema, &format!("{here}[{i}]"), depth + 1, leaves)?);
                }
                parts.push(if key == "$and" {
                    Expr::And(children)
                } else {
                    Expr::Or(children)
                });
            }
            k if k.starts_with('$') => {
                return Err(CoreError::filter(
                    &here,
                    format!("unknown operator '{k}' (top level accepts attribute names, $and, $or)"),
                ));
            }
            name => {
                let Some(attr) = schema.index_of(name) else {
                    let known: Vec<&str> = schema.attrs.iter().map(|a| a.name.as_str()).collect();
                    return Err(CoreError::filter(
                        &here,
                        format!("unknown attribute '{name}' (index has: {})", known.join(", ")),
                    ));
                };
                parse_field(value, schema, attr, &here, &mut parts, leaves)?;
            }
        }
    }
    Ok(if parts.len() == 1 {
        parts.pop().unwrap_or(Expr::And(Vec::new()))
    } else {
        Expr::And(parts)
    })
}

fn parse_field(
    value: &Value,
    schema: &Schema,
    attr: usize,
    path: &str,
    parts: &mut Vec<Expr>,
    leaves: &mut usize,
) -> Result<()> {
    let mut push = |pred: Pred, parts: &mut Vec<Expr>| -> Result<()> {
        *leaves += 1;
        if *leaves > MAX_LEAVES {
            return Err(CoreError::filter(
                path,
                format!("filter has more than {MAX_LEAVES} conditions"),
            ));
        }
        parts.push(Expr::Leaf {
            attr: attr as u32,
            pred,
        });
        Ok(())
    };
    let ops = match value {
        Value::Object(map) if map.keys().all(|k| k.starts_with('$')) && !map.is_empty() => map,
        Value::Object(_) => {
            return Err(CoreError::filter(
                path,
                "expected a value or an object of operators ($eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists, $contains, $containsAny, $containsAll)",
            ))
        }
        literal => {
            let x = operand(literal, schema, attr, path)?;
            return push(Pred::Eq(x), parts);
        }
    };
    let spec = &schema.attrs[attr];
    for (op, operand_json) in ops {
        let here = format!("{path}.{op}");
        let pred = match op.as_str() {
            "$eq" => Pred::Eq(operand(operand_json, schema, attr, &here)?),
            "$ne" => Pred::Ne(operand(operand_json, schema, attr, &here)?),
            "$lt" | "$lte" | "$gt" | "$gte" => {
                if spec.kind == AttrKind::Categorical {
                    return Err(CoreError::filter(
                        &here,
                        format!("'{op}' needs a numeric attribute; '{}' is categorical", spec.name),
                    ));
                }
                let x = operand(operand_json, schema, attr, &here)?;
                match op.as_str() {
                    "$lt" => Pred::Lt(x),
                    "$lte" => Pred::Lte(x),
                    "$gt" => Pred::Gt(x),
                    _ => Pred::Gte(x),
                }
            }
            "$contains" | "$containsAny" | "$containsAll" if !spec.list => {
                return Err(CoreError::filter(
                    &here,
                    format!("'{op}' needs a list attribute; '{}' holds single values", spec.name),
                ));
            }
            "$contains" => Pred::Eq(operand(operand_json, schema, attr, &here)?),
            "$in" | "$nin" | "$containsAny" | "$containsAll" => {
                let Value::Array(items) = operand_json else {
                    return Err(CoreError::filter(&here, "expected an array of values"));
                };
                if items.is_empty() {
                    return Err(CoreError::filter(&here, "list must not be empty"));
                }
                if items.len() > MAX_IN_VALUES {
                    return Err(CoreError::filter(
                        &here,
                        format!("list has more than {MAX_IN_VALUES} values"),
                    ));
                }
                let mut xs = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    xs.push(operand(item, schema, attr, &format!("{here}[{i}]"))?);
                }
                match op.as_str() {
                    "$nin" => Pred::Nin(xs),
                    "$containsAll" => {
                        // Every value an element: one `$eq` per value, joined by AND.
                        let last = xs.pop().unwrap_or(UNKNOWN_CATEGORY);
                        for x in xs {
                            push(Pred::Eq(x), parts)?;
                        }
                        Pred::Eq(last)
                    }
                    _ => Pred::In(xs),
                }
            }
            "$exists" => match operand_json {
                Value::Bool(b) => Pred::Exists(*b),
                _ => return Err(CoreError::filter(&here, "expected true or false")),
            },
            other => {
                return Err(CoreError::filter(
                    &here,
                    format!("unknown operator '{other}' (expected $eq, $ne, $gt, $gte, $lt, $lte, $in, $nin, $exists, $contains, $containsAny, $containsAll)"),
                ))
            }
        };
        push(pred, parts)?;
    }
    Ok(())
}

/// Converts a JSON operand to the stored value representation of attribute `attr`.
fn operand(json: &Value, schema: &Schema, attr: usize, path: &str) -> Result<f64> {
    let spec = &schema.attrs[attr];
    match (spec.kind, json) {
        (AttrKind::Numeric, Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() => Ok(x),
            _ => Err(CoreError::filter(path, "number is out of range")),
        },
        (_, Value::Array(_)) if spec.list => Err(CoreError::filter(
            path,
            format!(
                "attribute '{}' is a list: compare one element (use $containsAny or $containsAll for several)",
                spec.name
            ),
        )),
        (AttrKind::Numeric, other) => Err(CoreError::filter(
            path,
            format!("attribute '{}' is numeric; got {}", spec.name, type_name(other)),
        )),
        (AttrKind::Categorical, Value::String(s)) => Ok(spec.code_of(s).unwrap_or(UNKNOWN_CATEGORY)),
        (AttrKind::Categorical, other) => Err(CoreError::filter(
            path,
            format!(
                "attribute '{}' is categorical (string); got {}",
                spec.name,
                type_name(other)
            ),
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
