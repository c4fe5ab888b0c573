//! Attribute schema and 8-bit attribute codes.
//!
//! Every attribute value is held as an `f64`: numbers as themselves, categorical
//! strings as their index in a sorted dictionary. `NaN` means "missing".
//! Codes are one byte per value: codes `0..cells` name value cells that are shared by
//! all partitions (built from every value at build time), code [`MISSING_CODE`] marks a
//! missing value. Each cell records the smallest and largest value it holds, so a
//! predicate can be decided per cell as "no", "maybe" or "yes".
//!
//! A list attribute (`tags: ["red", "sale"]`) holds any number of elements per row
//! (numbers, or strings coded as above); its exact column holds the element count
//! (`NaN` = missing, 0 = an empty list) and the elements lie beside it
//! ([`ListColumn`]). Its code is a bit set: at most [`LIST_GROUPS`] element groups (cells
//! built over every element), bit `g` set when some element falls in group `g`.

use serde::{Deserialize, Serialize};

/// Code of a missing value.
pub const MISSING_CODE: u8 = 255;
/// Most value cells an attribute can have (codes 0..=254).
pub const MAX_VALUE_CELLS: usize = 255;
/// Number of distinct codes (histogram length).
pub const CODES: usize = 256;
/// Most element groups of a list attribute (its codes are bit sets below `1 << LIST_GROUPS`).
pub const LIST_GROUPS: usize = 7;
/// Most elements one list value may hold.
pub const MAX_LIST_ELEMENTS: usize = 100;

/// One attribute value of a row, as filters evaluate it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttrValue<'a> {
    /// A single value (`NaN` = missing).
    Scalar(f64),
    /// A list attribute's elements (`None` = missing; an empty slice is an empty list).
    List(Option<&'a [f64]>),
}

/// The elements of one list attribute, row after row: row `r` holds
/// `values[offsets[r]..offsets[r + 1]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListColumn {
    /// `rows + 1` ascending offsets into `values`, from 0.
    pub offsets: Vec<u64>,
    /// Every row's elements, concatenated.
    pub values: Vec<f64>,
}

impl Default for ListColumn {
    fn default() -> ListColumn {
        ListColumn {
            offsets: vec![0],
            values: Vec::new(),
        }
    }
}

impl ListColumn {
    /// Elements of row `row` (empty past the end).
    pub fn get(&self, row: usize) -> &[f64] {
        match (self.offsets.get(row), self.offsets.get(row + 1)) {
            (Some(&a), Some(&b)) => &self.values[a as usize..b as usize],
            _ => &[],
        }
    }
    /// Appends a row.
    pub fn push(&mut self, elements: &[f64]) {
        self.values.extend_from_slice(elements);
        self.offsets.push(self.values.len() as u64);
    }
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
    /// The rows `rows`, in that order.
    pub fn select(&self, rows: impl IntoIterator<Item = usize>) -> ListColumn {
        let mut out = ListColumn::default();
        for r in rows {
            out.push(self.get(r));
        }
        out
    }
}

/// Value of attribute `a` at `row` of column-major attribute data: `columns[a]` exact
/// values (a list attribute's hold element counts), `lists[a]` a list attribute's
/// elements (`lists` may be shorter than `columns` when later attributes are scalar).
pub fn attr_value<'a, C: AsRef<[f64]>>(
    columns: &'a [C],
    lists: &'a [Option<ListColumn>],
    a: usize,
    row: usize,
) -> AttrValue<'a> {
    let v = columns[a].as_ref()[row];
    match lists.get(a).and_then(Option::as_ref) {
        None => AttrValue::Scalar(v),
        Some(_) if v.is_nan() => AttrValue::List(None),
        Some(l) => AttrValue::List(Some(l.get(row))),
    }
}

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
    /// True for a list attribute (each row holds a list of values of `kind`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub list: bool,
    /// How a list attribute's elements were spread over the rows at build time (for the
    /// planner's estimate of a filter's selectivity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elements: Option<ElementStats>,
    /// A high-cardinality categorical attribute's value index (its whole dictionary and
    /// its postings, see [`crate::values`]): the manifest names the object and stores
    /// no dictionary of its own for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<ValuesRef>,
}

/// The value-index object of a high-cardinality categorical attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValuesRef {
    /// Object key, relative to the index root (content-hashed).
    pub key: String,
    /// Size of the object in bytes.
    pub bytes: u64,
    /// xxh3-64 of the whole object, 16 lowercase hex digits.
    pub checksum: String,
    /// Strings in its dictionary.
    pub strings: u64,
    /// (value, list) pairs in its postings.
    pub pairs: u64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Element statistics of a list attribute: its elements in up to [`MAX_VALUE_CELLS`]
/// equi-depth cells, with the number of rows holding an element in each cell and the
/// number of distinct elements in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ElementStats {
    /// Rows counted.
    pub rows: u64,
    /// Rows with a list (possibly empty).
    pub present: u64,
    /// The cells.
    pub cells: AttrCells,
    /// Rows with at least one element in each cell.
    pub rows_with: Vec<u64>,
    /// Distinct elements in each cell.
    pub distinct: Vec<u32>,
}

impl ElementStats {
    /// Statistics of a list column (`counts` = the exact column: element count or `NaN`).
    pub fn build(counts: &[f64], list: &ListColumn) -> ElementStats {
        let cells = AttrCells::build(&list.values);
        let c = cells.len();
        let (mut rows_with, mut distinct) = (vec![0u64; c], vec![0u32; c]);
        let mut seen = vec![usize::MAX; c];
        for row in 0..counts.len() {
            for &e in list.get(row) {
                let cell = cells.encode(e) as usize;
                if cell < c && seen[cell] != row {
                    seen[cell] = row;
                    rows_with[cell] += 1;
                }
            }
        }
        let mut sorted = list.values.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        sorted.dedup();
        for &e in &sorted {
            let cell = cells.encode(e) as usize;
            if cell < c {
                distinct[cell] += 1;
            }
        }
        ElementStats {
            rows: counts.len() as u64,
            present: counts.iter().filter(|v| !v.is_nan()).count() as u64,
            cells,
            rows_with,
            distinct,
        }
    }
}

impl AttrSpec {
    /// A numeric attribute.
    pub fn numeric(name: impl Into<String>) -> AttrSpec {
        AttrSpec {
            name: name.into(),
            kind: AttrKind::Numeric,
            dictionary: Vec::new(),
            appended: 0,
            list: false,
            elements: None,
            values: None,
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
            list: false,
            elements: None,
            values: None,
        }
    }

    /// This attribute as a list attribute (of its kind).
    pub fn into_list(mut self) -> AttrSpec {
        self.list = true;
        self
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

    /// Renders a stored value as JSON: a list attribute's elements (`elements`) as an
    /// array, else as [`AttrSpec::value_to_json`]; null if missing.
    pub fn render(&self, value: f64, elements: &[f64]) -> serde_json::Value {
        if self.list && !value.is_nan() {
            return serde_json::Value::Array(elements.iter().map(|&e| self.value_to_json(e)).collect());
        }
        self.value_to_json(value)
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
/// ascending and do not overlap. A list attribute's cells are its element groups (at
/// most [`LIST_GROUPS`]) and its codes bit sets of them ([`AttrCells::encode_list`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttrCells {
    /// Smallest value of each cell.
    pub min: Vec<f64>,
    /// Largest value of each cell.
    pub max: Vec<f64>,
    /// True for a list attribute's element groups.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub list: bool,
}

impl AttrCells {
    /// Builds cells from every value of the attribute (`NaN`s are ignored). With at most
    /// [`MAX_VALUE_CELLS`] distinct values each value gets its own cell (codes are exact);
    /// otherwise cells are equi-depth and never split a run of equal values.
    pub fn build(values: &[f64]) -> AttrCells {
        AttrCells::build_at_most(values, MAX_VALUE_CELLS)
    }

    /// The element groups of a list attribute from all its elements (as
    /// [`AttrCells::build`], with at most [`LIST_GROUPS`] cells).
    pub fn build_list(elements: &[f64]) -> AttrCells {
        let mut cells = AttrCells::build_at_most(elements, LIST_GROUPS);
        cells.list = true;
        cells
    }

    fn build_at_most(values: &[f64], most: usize) -> AttrCells {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let mut cells = AttrCells::default();
        if sorted.is_empty() {
            return cells;
        }
        let mut distinct = sorted.clone();
        distinct.dedup();
        if distinct.len() <= most {
            cells.min = distinct.clone();
            cells.max = distinct;
            return cells;
        }
        let n = sorted.len();
        let mut start = 0usize;
        for c in 0..most {
            if start >= n {
                break;
            }
            let mut end = if c + 1 == most {
                n
            } else {
                ((c + 1) * n / most).max(start + 1)
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

    /// Code of a list value (`None` = missing): the bit set of the groups its elements
    /// fall in (0 for an empty list).
    pub fn encode_list(&self, elements: Option<&[f64]>) -> u8 {
        match elements {
            None => MISSING_CODE,
            Some(es) => es
                .iter()
                .filter(|e| !e.is_nan() && !self.min.is_empty())
                .fold(0u8, |acc, &e| acc | (1u8 << self.encode(e))),
        }
    }

    /// Code of row `row`'s value of this attribute (see [`attr_value`]).
    pub fn encode_value(&self, value: AttrValue) -> u8 {
        match value {
            AttrValue::Scalar(v) => self.encode(v),
            AttrValue::List(es) => self.encode_list(es),
        }
    }

    /// True when `code` is a code these cells can produce.
    pub fn code_is_valid(&self, code: u8) -> bool {
        code == MISSING_CODE
            || if self.list {
                (code as usize) < (1usize << self.len())
            } else {
                (code as usize) < self.len()
            }
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
