//! Rows in memory: a dense matrix of vectors and attribute columns with their schema,
//! as the build reads them from files and a write receives them.

use squash_core::attrs::{AttrValue, ListColumn, Schema};

/// A dense row-major matrix of f32.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matrix {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// `rows × cols` values.
    pub data: Vec<f32>,
}

impl Matrix {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

/// Attribute columns with their schema.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    /// Names, kinds and dictionaries.
    pub schema: Schema,
    /// One column of values per attribute (`NaN` = missing; a list attribute's element
    /// counts).
    pub columns: Vec<Vec<f64>>,
    /// Each list attribute's elements (`Some` at its column; shorter than `columns`, or
    /// empty, when the rest are single-valued).
    pub lists: Vec<Option<ListColumn>>,
}

impl Attributes {
    /// Number of rows (0 when there are no attributes).
    pub fn rows(&self) -> usize {
        self.columns.first().map(|c| c.len()).unwrap_or(0)
    }

    /// Value of attribute `a` at `row`, as filters evaluate it.
    pub fn value(&self, a: usize, row: usize) -> AttrValue<'_> {
        squash_core::attrs::attr_value(&self.columns, &self.lists, a, row)
    }

    /// List attribute `a`'s elements (`None` for a single-valued attribute).
    pub fn list(&self, a: usize) -> Option<&ListColumn> {
        self.lists.get(a).and_then(Option::as_ref)
    }

    /// These attributes and `other`'s side by side (the same rows). Names must differ;
    /// the error says what does not fit.
    pub fn join(mut self, other: Attributes) -> Result<Attributes, String> {
        if self.columns.is_empty() {
            return Ok(other);
        }
        if other.columns.is_empty() {
            return Ok(self);
        }
        if other.rows() != self.rows() {
            return Err(format!(
                "has {} rows; the other attributes have {}",
                other.rows(),
                self.rows()
            ));
        }
        if let Some(dup) = other
            .schema
            .attrs
            .iter()
            .find(|a| self.schema.index_of(&a.name).is_some())
        {
            return Err(format!("attribute '{}' is given twice", dup.name));
        }
        self.lists.resize(self.columns.len(), None);
        let mut lists = other.lists;
        lists.resize(other.columns.len(), None);
        self.schema.attrs.extend(other.schema.attrs);
        self.columns.extend(other.columns);
        self.lists.extend(lists);
        Ok(self)
    }

    /// These attributes restricted to rows `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> Attributes {
        Attributes {
            schema: self.schema.clone(),
            columns: self
                .columns
                .iter()
                .map(|c| rows.iter().map(|&r| c[r]).collect())
                .collect(),
            lists: self
                .lists
                .iter()
                .map(|l| l.as_ref().map(|l| l.select(rows.iter().copied())))
                .collect(),
        }
    }
}
