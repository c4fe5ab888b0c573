//! Attribute schema and 8-bit attribute codes.
//!
//! Every attribute value is held as an `f64`: numbers as themselves, categorical
//! strings as their index in a sorted dictionary. `NaN` means "missing".
//! Codes are one byte per value: codes `0..cells` name value cells that are shared by
//! all partitions (built from every value at build time), code [`MISSING_CODE`] marks a
//! missing value. Each cell records the smallest and largest value it holds, so a
//! predicate can be decided per cell as "no", "maybe" or "yes".

use serde::{Deserialize, Serialize};

/// Code of a missing value.
pub const MISSING_CODE: u8 = 255;
/// Most value cells an attribute can have (codes 0..=254).
pub const MAX_VALUE_CELLS: usize = 255;
/// Number of distinct codes (histogram length).
pub const CODES: usize = 256;

/// Type of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttrKind {
    /// A number (integers and floats alike).
    Numeric,
    /// A string, stored as its index in the attribute's dictionary.
    Categorical,
}

/// One attribute of the schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttrSpec {
    /// Name used in filters and results.
    pub name: String,
    /// Numeric or categorical.
    pub kind: AttrKind,
    /// Distinct strings of a categorical attribute (empty for numeric ones): sorted,
    /// then the last `appended` ones in the order writes added them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dictionary: Vec<String>,
    /// Strings added to the dictionary by writes after the build (at its end).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub appended: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl AttrSpec {
    /// A numeric attribute.
    pub fn numeric(name: impl Into<String>) -> AttrSpec {
        AttrSpec {
            name: name.into(),
            kind: AttrKind::Numeric,
            dictionary: Vec::new(),
            appended: 0,
        }
    }

    /// A categorical attribute with its dictionary (sorted and de-duplicated here).
    pub fn categorical(name: impl Into<String>, mut dictionary: Vec<String>) -> AttrSpec {
        dictionary.sort();
        dictionary.dedup();
        AttrSpec {
            name: name.into(),
            kind: AttrKind::Categorical,
            dictionary,
            appended: 0,
        }
    }

    /// Dictionary code of `text`, if the attribute is categorical and knows it.
    pub fn code_of(&self, text: &str) -> Option<f64> {
        let sorted = self.dictionary.len().saturating_sub(self.appended as usize);
        self.dictionary[..sorted]
            .binary_search_by(|s| s.as_str().cmp(text))
            .ok()
            .or_else(|| {
                self.dictionary[sorted..]
                    .iter()
                    .position(|s| s == text)
                    .map(|i| sorted + i)
            })
            .map(|i| i as f64)
    }

    /// Dictionary code of `text`, adding it at the end of the dictionary when new.
    pub fn code_or_add(&mut self, text: &str) -> f64 {
        match self.code_of(text) {
            Some(c) => c,
            None => {
                self.dictionary.push(text.to_string());
                self.appended += 1;
                (self.dictionary.len() - 1) as f64
            }
        }
    }

    /// Renders a stored value as JSON (string for categorical, number, or null if missing).
    pub fn value_to_json(&self, value: f64) -> serde_json::Value {
        if value.is_nan() {
            return serde_json::Value::Null;
        }
        match self.kind {
            AttrKind::Numeric => serde_json::Number::from_f64(value)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            AttrKind::Categorical => self
                .dictionary
                .get(value as usize)
                .map(|s| serde_json::Value::String(s.clone()))
                .unwrap_or(serde_json::Value::Null),
        }
    }
}

/// The attributes of an index, in column order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    /// Attributes in column order.
    pub attrs: Vec<AttrSpec>,
}

impl Schema {
    /// Column index of the attribute called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.attrs.iter().position(|a| a.name == name)
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.attrs.len()
    }

    /// True when the index has no attributes.
    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }
}

/// Value cells of one attribute: cell `c` holds values in `[min[c], max[c]]`; cells are
/// ascending and do not overlap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttrCells {
    /// Smallest value of each cell.
    pub min: Vec<f64>,
    /// Largest value of each cell.
    pub max: Vec<f64>,
}

impl AttrCells {
    /// Builds cells from every value of the attribute (`NaN`s are ignored). With at most
    /// [`MAX_VALUE_CELLS`] distinct values each value gets its own cell (codes are exact);
    /// otherwise cells are equi-depth and never split a run of equal values.
    pub fn build(values: &[f64]) -> AttrCells {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let mut cells = AttrCells::default();
        if sorted.is_empty() {
            return cells;
        }
        let mut distinct = sorted.clone();
        distinct.dedup();
        if distinct.len() <= MAX_VALUE_CELLS {
            cells.min = distinct.clone();
            cells.max = distinct;
            return cells;
        }
        let n = sorted.len();
        let mut start = 0usize;
        for c in 0..MAX_VALUE_CELLS {
            if start >= n {
                break;
            }
            let mut end = if c + 1 == MAX_VALUE_CELLS {
                n
            } else {
                ((c + 1) * n / MAX_VALUE_CELLS).max(start + 1)
            };
            while end < n && sorted[end] == sorted[end - 1] {
                end += 1;
            }
            cells.min.push(sorted[start]);
            cells.max.push(sorted[end - 1]);
            start = end;
        }
        cells
    }

    /// Number of value cells.
    pub fn len(&self) -> usize {
        self.min.len()
    }

    /// True when the attribute had no values at all.
    pub fn is_empty(&self) -> bool {
        self.min.is_empty()
    }

    /// Widens the cell `value` encodes to so that it holds `value` (writes add values
    /// the build never saw): cells stay ascending and disjoint, since the cell a value
    /// encodes to is the first whose maximum is not below it. With no cell yet, `value`
    /// gets one of its own.
    pub fn widen(&mut self, value: f64) {
        if value.is_nan() {
            return;
        }
        if self.min.is_empty() {
            self.min.push(value);
            self.max.push(value);
            return;
        }
        let c = self.encode(value) as usize;
        self.min[c] = self.min[c].min(value);
        self.max[c] = self.max[c].max(value);
    }

    /// Code of a value. Values must come from the data the cells were built on (or
    /// have been [`AttrCells::widen`]ed into them); a value outside every cell maps to
    /// the nearest cell and is caught by the exact check.
    pub fn encode(&self, value: f64) -> u8 {
        if value.is_nan() || self.min.is_empty() {
            return MISSING_CODE;
        }
        let c = self.max.partition_point(|&m| m < value);
        c.min(self.min.len() - 1) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_distinct_values_get_exact_cells() {
        let values = vec![3.0, 1.0, 2.0, 3.0, f64::NAN];
        let cells = AttrCells::build(&values);
        assert_eq!(cells.min, vec![1.0, 2.0, 3.0]);
        assert_eq!(cells.encode(2.0), 1);
        assert_eq!(cells.encode(f64::NAN), MISSING_CODE);
    }

    #[test]
    fn widening_keeps_cells_disjoint_and_holding_their_values() {
        let mut cells = AttrCells::build(&[1.0, 2.0, 5.0]);
        for v in [0.5, 3.0, 9.0, 4.0, 2.5] {
            cells.widen(v);
            let c = cells.encode(v) as usize;
            assert!(cells.min[c] <= v && v <= cells.max[c], "{v} in cell {c}: {cells:?}");
        }
        assert!(cells.min.windows(2).all(|w| w[0] < w[1]));
        assert!(
            (0..cells.len() - 1).all(|c| cells.max[c] < cells.min[c + 1]),
            "{cells:?}"
        );
        let mut empty = AttrCells::default();
        empty.widen(7.0);
        assert_eq!(empty.encode(7.0), 0);
    }

    #[test]
    fn appended_dictionary_values_are_found() {
        let mut spec = AttrSpec::categorical("c", vec!["b".into(), "a".into()]);
        assert_eq!(spec.code_or_add("b"), 1.0);
        assert_eq!(spec.code_or_add("zz"), 2.0);
        assert_eq!(spec.code_or_add("0"), 3.0);
        assert_eq!(spec.code_of("0"), Some(3.0));
        assert_eq!(spec.code_of("a"), Some(0.0));
        assert_eq!(spec.code_of("q"), None);
        assert_eq!(spec.value_to_json(3.0), serde_json::json!("0"));
    }

    #[test]
    fn many_values_get_equi_depth_cells_containing_them() {
        let values: Vec<f64> = (0..10_000).map(|i| ((i * 7919) % 10_000) as f64 / 3.0).collect();
        let cells = AttrCells::build(&values);
        assert!(cells.len() <= MAX_VALUE_CELLS && cells.len() > 200);
        for &v in &values {
            let c = cells.encode(v) as usize;
            assert!(cells.min[c] <= v && v <= cells.max[c]);
        }
    }
}
