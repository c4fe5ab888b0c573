//! Checking an upsert against the index it commits on: ids of the index's kind, no
//! duplicates, the index's dimension, attributes by name of the right kind (strings coded,
//! new ones appended to the dictionary, cells widened), each error naming its field as
//! `vectors[i].field`. Nothing is written when this fails.

use crate::error::{Result, WriteError};
use crate::ids::Ids;
use crate::table::{Attributes, Matrix};
use squash_core::attrs::{AttrCells, AttrKind, AttrValue, ListColumn, Schema};
use squash_core::distance::prepare_stored;
use squash_core::manifest::{string_id_key, IdKind, Manifest, MAX_ID_BYTES};
use squash_core::segment::Segment;
use std::collections::HashMap;
use std::sync::Arc;

/// Rows to insert or replace: ids (integers or strings, as the index's), vectors and
/// attributes by name (a subset of the index's; absent ones are missing values).
#[derive(Debug, Clone, Default)]
pub struct Upsert {
    /// One id per row.
    pub ids: Ids,
    /// One vector per row.
    pub vectors: Matrix,
    /// Attribute columns (none, or one value per row each).
    pub attrs: Attributes,
}

/// An upsert checked against the index: internal id keys, string ids, prepared vectors,
/// attribute values in the index's column order, and the schema and cells widened to
/// hold them.
pub(crate) struct Prepared {
    pub(crate) keys: Vec<u64>,
    pub(crate) names: Option<Vec<String>>,
    pub(crate) dim: usize,
    pub(crate) vectors: Vec<f32>,
    pub(crate) values: Vec<Vec<f64>>,
    /// Each list attribute's elements (`Some` at its column).
    pub(crate) lists: Vec<Option<ListColumn>>,
    /// Shared by every partition's merged rows: a schema with a 100,000-string
    /// dictionary is not copied per partition.
    pub(crate) schema: Arc<Schema>,
    pub(crate) cells: Arc<Vec<AttrCells>>,
}

impl Prepared {
    /// No rows, the same schema and cells.
    pub(crate) fn empty_like(&self) -> Prepared {
        Prepared {
            keys: Vec::new(),
            names: self.names.as_ref().map(|_| Vec::new()),
            dim: self.dim,
            vectors: Vec::new(),
            values: vec![Vec::new(); self.values.len()],
            lists: self
                .lists
                .iter()
                .map(|l| l.as_ref().map(|_| ListColumn::default()))
                .collect(),
            schema: self.schema.clone(),
            cells: self.cells.clone(),
        }
    }

    /// Appends row `i` of `other`.
    pub(crate) fn push_from(&mut self, other: &Prepared, i: usize) {
        self.keys.push(other.keys[i]);
        if let (Some(n), Some(o)) = (self.names.as_mut(), other.names.as_ref()) {
            n.push(o[i].clone());
        }
        self.vectors
            .extend_from_slice(&other.vectors[i * self.dim..(i + 1) * self.dim]);
        for (col, src) in self.values.iter_mut().zip(&other.values) {
            col.push(src[i]);
        }
        for (list, src) in self.lists.iter_mut().zip(&other.lists) {
            if let (Some(list), Some(src)) = (list, src) {
                list.push(src.get(i));
            }
        }
    }

    /// Appends row `row` of a segment of the index (its values are in the index's coding).
    pub(crate) fn push_row(&mut self, seg: &Segment, row: usize) {
        self.keys.push(seg.id(row));
        if let Some(n) = self.names.as_mut() {
            n.push(seg.name(row).unwrap_or_default().to_string());
        }
        self.vectors.extend_from_slice(seg.vector(row));
        for (a, col) in self.values.iter_mut().enumerate() {
            col.push(seg.attr_column(a)[row]);
        }
        for (a, list) in self.lists.iter_mut().enumerate() {
            if let Some(list) = list {
                list.push(seg.list_elements(a, row));
            }
        }
    }

    /// Value of attribute `a` at row `i`, as filters and codes see it.
    pub(crate) fn value(&self, a: usize, i: usize) -> AttrValue<'_> {
        squash_core::attrs::attr_value(&self.values, &self.lists, a, i)
    }
}

/// Internal keys (and names, for string ids) of ids given to a write on `manifest`'s index.
/// `field_of(i)` names id `i` in errors.
pub(crate) fn id_keys(
    manifest: &Manifest,
    ids: &Ids,
    field_of: &dyn Fn(usize) -> String,
) -> Result<(Vec<u64>, Option<Vec<String>>)> {
    let kind = manifest.meta.ids;
    match (ids, kind) {
        (Ids::Rows, _) => Err(WriteError::bad("ids", "writes need ids")),
        (Ids::U64(v), IdKind::U64) => Ok((v.clone(), None)),
        (Ids::Strings(v), IdKind::String) => {
            if let Some((i, s)) = v
                .iter()
                .enumerate()
                .find(|(_, s)| s.is_empty() || s.len() > MAX_ID_BYTES)
            {
                return Err(WriteError::bad(
                    &field_of(i),
                    format!("is {} bytes; string ids are 1 to {MAX_ID_BYTES} bytes", s.len()),
                ));
            }
            Ok((v.iter().map(|s| string_id_key(s)).collect(), Some(v.clone())))
        }
        (Ids::U64(_), IdKind::String) => Err(WriteError::bad(
            &field_of(0),
            "this index has string ids; an integer was given",
        )),
        (Ids::Strings(v), IdKind::U64) => Err(WriteError::bad(
            &field_of(0),
            format!(
                "this index has unsigned integer ids; got the string {:?}",
                v.first().map(String::as_str).unwrap_or("")
            ),
        )),
    }
}

/// Checks an upsert against the index (nothing is written when this fails).
pub(crate) fn prepare_upsert(manifest: &Manifest, rows: &Upsert) -> Result<Prepared> {
    let meta = &manifest.meta;
    let dim = meta.dim as usize;
    let n = rows.ids.len().unwrap_or(0);
    if n == 0 {
        return Err(WriteError::bad("vectors", "no vectors to upsert"));
    }
    let (keys, names) = id_keys(manifest, &rows.ids, &|i| format!("vectors[{i}].id"))?;
    // Duplicates within the request.
    let mut first: HashMap<u64, usize> = HashMap::new();
    for (i, &k) in keys.iter().enumerate() {
        if let Some(&j) = first.get(&k) {
            if names.as_ref().is_none_or(|n| n[i] == n[j]) {
                let id = names.as_ref().map_or(k.to_string(), |n| format!("{:?}", n[i]));
                return Err(WriteError::bad(
                    &format!("vectors[{i}].id"),
                    format!("duplicate id {id} (also vectors[{j}]); an upsert names each id once"),
                ));
            }
        }
        first.insert(k, i);
    }
    if rows.vectors.rows != n {
        return Err(WriteError::bad(
            "vectors",
            format!("{} vectors for {n} ids", rows.vectors.rows),
        ));
    }
    if rows.vectors.cols != dim {
        return Err(WriteError::bad(
            "vectors[0].vector",
            format!("has {} values; the index has dimension {dim}", rows.vectors.cols),
        ));
    }
    // Prepared as stored (normalised for cosine; for inner product with the
    // transformation's coordinate, so one more dimension).
    let mut vectors = Vec::with_capacity(n * meta.stored_dim());
    for (i, v) in rows.vectors.data.chunks_exact(dim).enumerate() {
        let mut v = v.to_vec();
        prepare_stored(
            meta.metric,
            &mut v,
            dim,
            meta.norm_bound(),
            &format!("vectors[{i}].vector"),
        )?;
        vectors.extend_from_slice(&v);
    }
    let dim = meta.stored_dim();
    // Attributes: by name onto the index's columns; categorical strings coded (new
    // ones appended to the dictionary); cells widened to hold every new value.
    let mut schema = meta.schema.clone();
    let mut cells = manifest.attr_cells.clone();
    let mut values = vec![vec![f64::NAN; n]; schema.len()];
    // A list attribute's elements per row (`None` = missing).
    let mut elements: Vec<Option<Vec<Vec<f64>>>> = schema
        .attrs
        .iter()
        .map(|s| s.list.then(|| vec![Vec::new(); n]))
        .collect();
    if !rows.attrs.columns.is_empty() && rows.attrs.rows() != n {
        return Err(WriteError::bad(
            "attributes",
            format!("{} attribute rows for {n} vectors", rows.attrs.rows()),
        ));
    }
    for (j, (spec, col)) in rows.attrs.schema.attrs.iter().zip(&rows.attrs.columns).enumerate() {
        let at_row = || col.iter().position(|v| !v.is_nan()).unwrap_or(0);
        let field = |i: usize| format!("vectors[{i}].attributes.{}", spec.name);
        let Some(a) = schema.index_of(&spec.name) else {
            let known: Vec<&str> = schema.attrs.iter().map(|a| a.name.as_str()).collect();
            return Err(WriteError::bad(
                &field(at_row()),
                format!("unknown attribute (this index has: {})", known.join(", ")),
            ));
        };
        let target = &mut schema.attrs[a];
        let given = rows.attrs.list(j);
        if target.list != given.is_some() {
            let i = at_row();
            return Err(WriteError::bad(
                &field(i),
                match (target.list, target.kind) {
                    (true, _) => "the attribute is a list: give an array of values",
                    (false, AttrKind::Numeric) => {
                        "the attribute is numeric and holds one value: give a number, not an array"
                    }
                    (false, AttrKind::Categorical) => {
                        "the attribute is categorical and holds one value: give a string, not an array"
                    }
                },
            ));
        }
        for (i, &count) in col.iter().enumerate() {
            if count.is_nan() {
                continue;
            }
            let given_elements: Vec<f64> = match given {
                Some(l) => l.get(i).to_vec(),
                None => vec![count],
            };
            let mut coded = Vec::with_capacity(given_elements.len());
            for v in given_elements {
                let value = match (target.kind, spec.kind) {
                    (AttrKind::Numeric, AttrKind::Numeric) => v,
                    (AttrKind::Numeric, AttrKind::Categorical) => {
                        let text = spec.dictionary.get(v as usize).map(String::as_str).unwrap_or("");
                        return Err(WriteError::bad(
                            &field(i),
                            format!("the attribute is numeric; got the string {text:?}"),
                        ));
                    }
                    (AttrKind::Categorical, AttrKind::Categorical) => {
                        let text = spec.dictionary.get(v as usize).cloned().unwrap_or_default();
                        target.code_or_add(&text)
                    }
                    (AttrKind::Categorical, AttrKind::Numeric) => {
                        let text = if v.fract() == 0.0 && v.abs() < 1e15 {
                            format!("{}", v as i64)
                        } else {
                            v.to_string()
                        };
                        target.code_or_add(&text)
                    }
                };
                cells[a].widen(value);
                coded.push(value);
            }
            match elements[a].as_mut() {
                Some(rows_elements) => {
                    values[a][i] = coded.len() as f64;
                    rows_elements[i] = coded;
                }
                None => values[a][i] = coded.first().copied().unwrap_or(f64::NAN),
            }
        }
    }
    let lists = elements
        .into_iter()
        .map(|e| {
            e.map(|rows_elements| {
                let mut l = ListColumn::default();
                for es in &rows_elements {
                    l.push(es);
                }
                l
            })
        })
        .collect();
    Ok(Prepared {
        keys,
        names,
        dim,
        vectors,
        values,
        lists,
        schema: Arc::new(schema),
        cells: Arc::new(cells),
    })
}
