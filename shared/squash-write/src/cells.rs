//! Attribute values as users write them (JSON values, text fields) into attribute
//! columns: one rule for what a JSON value means as an attribute ([`json_cell`]) and one
//! for how a column's kind and shape follow from its values ([`CellColumns`],
//! [`finish_column`]), shared by the HTTP write path and the build's file readers.
//!
//! A number is numeric and a string categorical; an array is a list (of numbers or of
//! strings; `[]` is an empty list); `null` is a missing value. An attribute holds one
//! kind and one shape: numbers and strings, or lists and single values, in one
//! attribute are errors. The columns carry the kinds their values have; whether those
//! suit the index is checked against the manifest a write commits on, once.

use crate::table::Attributes;
use serde_json::Value;
use squash_core::attrs::{AttrSpec, ListColumn, Schema, MAX_LIST_ELEMENTS};
use std::collections::HashMap;

/// One element (or single value) of an attribute as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Element {
    /// A finite number.
    Number(f64),
    /// A string (categorical).
    Text(String),
}

/// One attribute value of one row, as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// `null`: a missing value.
    Missing,
    /// A single value.
    One(Element),
    /// A list of values (`[]` is an empty list, which is present).
    List(Vec<Element>),
}

/// Why a value is not an attribute value: the message (the caller names the field or
/// line) and, when one element of a list is at fault, its position.
#[derive(Debug, Clone, PartialEq)]
pub struct CellError {
    /// Position of the offending element in its list.
    pub element: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl CellError {
    fn whole(message: String) -> CellError {
        CellError { element: None, message }
    }

    /// The field it names: `field`, or `field[j]` for element `j`.
    pub fn field(&self, field: &str) -> String {
        match self.element {
            Some(j) => format!("{field}[{j}]"),
            None => field.to_string(),
        }
    }
}

impl std::fmt::Display for CellError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.element {
            Some(j) => write!(f, "element {j}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// What a JSON value means as an attribute value; the error says why not. The elements
/// of one list are of one kind.
pub fn json_cell(v: &Value) -> Result<Cell, CellError> {
    fn element(v: &Value, inside: &str) -> Result<Element, String> {
        match v {
            Value::Number(n) => match n.as_f64().filter(|x| x.is_finite()) {
                Some(x) => Ok(Element::Number(x)),
                None => Err(format!("{n} is not a finite number")),
            },
            Value::String(t) => Ok(Element::Text(t.clone())),
            Value::Bool(_) => Err("booleans are not supported (use 0/1 or strings)".into()),
            Value::Null => Err(format!("null is not allowed {inside}").trim_end().to_string()),
            _ => Err(format!("nested objects and arrays are not supported {inside}")
                .trim_end()
                .to_string()),
        }
    }
    match v {
        Value::Null => Ok(Cell::Missing),
        Value::Array(items) => {
            if items.len() > MAX_LIST_ELEMENTS {
                return Err(CellError::whole(format!(
                    "has {} elements; a list holds at most {MAX_LIST_ELEMENTS}",
                    items.len()
                )));
            }
            let mut es: Vec<Element> = Vec::with_capacity(items.len());
            for (j, item) in items.iter().enumerate() {
                let e = element(item, "inside a list").map_err(|message| CellError {
                    element: Some(j),
                    message,
                })?;
                if let Some(first) = es.first() {
                    if std::mem::discriminant(first) != std::mem::discriminant(&e) {
                        let (is, was) = match e {
                            Element::Number(_) => ("a number", "strings"),
                            Element::Text(_) => ("a string", "numbers"),
                        };
                        return Err(CellError {
                            element: Some(j),
                            message: format!("is {is} in a list of {was} (one kind per list)"),
                        });
                    }
                }
                es.push(e);
            }
            Ok(Cell::List(es))
        }
        other => Ok(Cell::One(element(other, "").map_err(CellError::whole)?)),
    }
}

/// An attribute column from text: its values row by row (`None` = missing; a single
/// value is a one-element vector), as one kind (`text`: categorical, coded in a
/// dictionary of its strings), single-valued or lists. Returns the attribute, its exact
/// column and a list attribute's elements.
pub fn finish_column(
    name: String,
    list: bool,
    text: bool,
    rows: Vec<Option<Vec<Element>>>,
) -> (AttrSpec, Vec<f64>, Option<ListColumn>) {
    let spec = if text {
        let words = rows
            .iter()
            .flatten()
            .flatten()
            .filter_map(|e| match e {
                Element::Text(t) => Some(t.clone()),
                Element::Number(_) => None,
            })
            .collect();
        AttrSpec::categorical(name, words)
    } else {
        AttrSpec::numeric(name)
    };
    let value = |e: &Element| match e {
        Element::Number(x) => *x,
        Element::Text(t) => spec.code_of(t).unwrap_or(f64::NAN),
    };
    if !list {
        let column = rows
            .iter()
            .map(|r| r.as_ref().and_then(|es| es.first()).map_or(f64::NAN, value))
            .collect();
        return (spec, column, None);
    }
    let mut elements = ListColumn::default();
    let mut column = Vec::with_capacity(rows.len());
    let mut scratch = Vec::new();
    for r in &rows {
        scratch.clear();
        if let Some(es) = r {
            scratch.extend(es.iter().map(value));
        }
        column.push(if r.is_some() { scratch.len() as f64 } else { f64::NAN });
        elements.push(&scratch);
    }
    (spec.into_list(), column, Some(elements))
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Unknown,
    Number,
    Text,
}

struct Column {
    name: String,
    kind: Kind,
    list: Option<bool>,
    first_row: usize,
    rows: Vec<Option<Vec<Element>>>,
}

/// Attribute columns gathered row by row from named cells, each column's kind and
/// shape taken from its values.
#[derive(Default)]
pub struct CellColumns {
    columns: Vec<Column>,
    index: HashMap<String, usize>,
    rows: usize,
}

/// What [`CellColumns::finish`] does with a column that has no value (only `null`s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Valueless {
    /// An error: the column has no kind (a file naming an attribute it never fills).
    Refuse,
    /// Left out: every row misses it, as if it were not named (a write).
    Drop,
}

impl CellColumns {
    /// No rows yet.
    pub fn new() -> CellColumns {
        CellColumns::default()
    }

    /// Rows ended so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Sets the current row's value of attribute `name` (once per row and name). The
    /// error says how the value disagrees with the same attribute's earlier values (the
    /// caller names the row).
    pub fn push(&mut self, name: &str, cell: Cell) -> Result<(), CellError> {
        let c = match self.index.get(name) {
            Some(&c) => c,
            None => {
                self.index.insert(name.to_string(), self.columns.len());
                self.columns.push(Column {
                    name: name.to_string(),
                    kind: Kind::Unknown,
                    list: None,
                    first_row: self.rows,
                    rows: Vec::new(),
                });
                self.columns.len() - 1
            }
        };
        let col = &mut self.columns[c];
        // Rows before this one (or since this column's last value) are missing.
        col.rows.resize(self.rows, None);
        let (is_list, value) = match cell {
            Cell::Missing => (None, None),
            Cell::One(e) => (Some(false), Some(vec![e])),
            Cell::List(es) => (Some(true), Some(es)),
        };
        match (col.list, is_list) {
            (Some(was), Some(is)) if was != is => {
                let (here, before) = if is {
                    ("a list", "single values")
                } else {
                    ("a single value", "lists")
                };
                return Err(CellError::whole(format!(
                    "attribute '{name}' is {here} here but {before} before (one shape per attribute)"
                )));
            }
            (None, Some(is)) => col.list = Some(is),
            _ => {}
        }
        for (j, e) in value.iter().flatten().enumerate() {
            let got = match e {
                Element::Number(_) => Kind::Number,
                Element::Text(_) => Kind::Text,
            };
            match col.kind {
                Kind::Unknown => col.kind = got,
                k if k == got => {}
                k => {
                    let (was, is) = if k == Kind::Number {
                        ("numbers", "a string")
                    } else {
                        ("strings", "a number")
                    };
                    return Err(CellError {
                        element: is_list.unwrap_or(false).then_some(j),
                        message: format!("attribute '{name}' is {is} here but {was} before (one kind per attribute)"),
                    });
                }
            }
        }
        col.rows.push(value);
        Ok(())
    }

    /// Ends the current row (attributes it did not name are missing in it).
    pub fn end_row(&mut self) {
        self.rows += 1;
    }

    /// The columns in alphabetical order of their names. A column without a value is
    /// refused (the error carries the row that first named it) or dropped, as
    /// `valueless` says; a column of empty lists only is a list of numbers.
    pub fn finish(self, valueless: Valueless) -> Result<Attributes, (usize, String)> {
        let rows = self.rows;
        let mut columns = self.columns;
        columns.sort_by(|a, b| a.name.cmp(&b.name));
        let mut attrs = Vec::with_capacity(columns.len());
        let mut out = Vec::with_capacity(columns.len());
        let mut lists = Vec::with_capacity(columns.len());
        for mut col in columns {
            col.rows.resize(rows, None);
            if col.kind == Kind::Unknown && (valueless == Valueless::Refuse || col.list.is_none()) {
                if valueless == Valueless::Drop {
                    continue;
                }
                return Err((
                    col.first_row,
                    format!(
                        "attribute '{}' has no value on any line (null or empty lists only: no kind to give it)",
                        col.name
                    ),
                ));
            }
            let (spec, column, elements) =
                finish_column(col.name, col.list == Some(true), col.kind == Kind::Text, col.rows);
            attrs.push(spec);
            out.push(column);
            lists.push(elements);
        }
        Ok(Attributes {
            schema: Schema { attrs },
            columns: out,
            lists,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use squash_core::attrs::AttrValue;

    #[test]
    fn json_values_become_cells_or_say_why_not() {
        assert_eq!(json_cell(&json!(null)), Ok(Cell::Missing));
        assert_eq!(json_cell(&json!(2.5)), Ok(Cell::One(Element::Number(2.5))));
        assert_eq!(json_cell(&json!("red")), Ok(Cell::One(Element::Text("red".into()))));
        assert_eq!(
            json_cell(&json!(["a", "b"])),
            Ok(Cell::List(vec![Element::Text("a".into()), Element::Text("b".into())]))
        );
        assert_eq!(json_cell(&json!([])), Ok(Cell::List(Vec::new())));
        let message = |v: Value| json_cell(&v).unwrap_err().to_string();
        assert!(message(json!(true)).contains("booleans"));
        assert!(message(json!({"a": 1})).contains("nested"));
        assert!(message(json!([[1]])).contains("inside a list"));
        assert!(message(json!([null])).contains("null is not allowed inside a list"));
        let long = Value::Array(vec![json!(1); MAX_LIST_ELEMENTS + 1]);
        assert!(message(long).contains("at most"));
        let mixed = json_cell(&json!(["a", "b", 3])).unwrap_err();
        assert_eq!(mixed.field("tags"), "tags[2]");
        assert!(mixed.message.contains("a number in a list of strings"), "{mixed}");
    }

    #[test]
    fn columns_take_kind_and_shape_from_their_values() {
        let mut c = CellColumns::new();
        for row in [
            json!({"price": 3, "color": "red", "tags": ["a", "b"]}),
            json!({"price": null, "tags": []}),
            json!({"color": "blue", "none": null}),
        ] {
            for (k, v) in row.as_object().unwrap() {
                c.push(k, json_cell(v).unwrap()).unwrap();
            }
            c.end_row();
        }
        let a = c.finish(Valueless::Drop).unwrap();
        let names: Vec<&str> = a.schema.attrs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["color", "price", "tags"], "the valueless column is dropped");
        assert_eq!(a.value(1, 0), AttrValue::Scalar(3.0));
        assert!(a.columns[1][1].is_nan() && a.columns[1][2].is_nan());
        let blue = a.schema.attrs[0].code_of("blue").unwrap();
        assert_eq!(a.value(0, 2), AttrValue::Scalar(blue));
        assert_eq!(a.value(2, 1), AttrValue::List(Some(&[][..])));
        assert_eq!(a.value(2, 2), AttrValue::List(None));
    }

    #[test]
    fn mixed_kinds_or_shapes_are_refused_and_valueless_columns_when_asked() {
        let mut c = CellColumns::new();
        c.push("x", Cell::One(Element::Number(1.0))).unwrap();
        c.end_row();
        let e = c.push("x", Cell::One(Element::Text("a".into()))).unwrap_err();
        assert!(e.message.contains("a string here but numbers before"), "{e}");
        let e = c.push("x", Cell::List(vec![])).unwrap_err();
        assert!(e.message.contains("a list here but single values before"), "{e}");
        c.push("l", Cell::List(vec![Element::Number(1.0)])).unwrap();
        c.end_row();
        let e = c.push("l", Cell::List(vec![Element::Text("a".into())])).unwrap_err();
        assert_eq!(e.field("l"), "l[0]");
        let mut c = CellColumns::new();
        c.end_row();
        c.push("y", Cell::Missing).unwrap();
        c.end_row();
        assert_eq!(c.finish(Valueless::Refuse).unwrap_err().0, 1);
    }
}
