//! Reading and writing input files: `.npy` (float32/float64/int32/int64, 2-D, C order),
//! `.fvecs`, `.bvecs`, and attribute tables (`.npy` columns with names, or CSV with a header).
//! Every error names the file and what is wrong with it.

use crate::error::{BuildError, Result};
use squash_core::attrs::{AttrSpec, Schema, MAX_LIST_ELEMENTS};
use std::io::{BufReader, Read, Write};
use std::path::Path;

use squash_write::cells::{finish_column, json_cell, CellColumns, Element, Valueless};
pub use squash_write::{Attributes, Matrix};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dtype {
    F32,
    F64,
    I32,
    I64,
    U64,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
        }
    }
}

fn open(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| BuildError::input(path.display(), format!("cannot open: {e}")))
}

/// Parses an npy header; returns dtype, shape and the reader positioned at the data.
fn npy_header(path: &Path) -> Result<(Dtype, bool, Vec<usize>, BufReader<std::fs::File>)> {
    let bad = |m: &str| BuildError::input(path.display(), m.to_string());
    let mut r = BufReader::with_capacity(1 << 20, open(path)?);
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre).map_err(|_| bad("not a .npy file (too short)"))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (bad magic)"));
    }
    let header_len = match pre[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).map_err(|_| bad("truncated .npy header"))?;
            u16::from_le_bytes(b) as usize
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(|_| bad("truncated .npy header"))?;
            u32::from_le_bytes(b) as usize
        }
        v => return Err(bad(&format!("unsupported .npy version {v}"))),
    };
    if header_len > 1 << 20 {
        return Err(bad("implausible .npy header length"));
    }
    let mut h = vec![0u8; header_len];
    r.read_exact(&mut h).map_err(|_| bad("truncated .npy header"))?;
    let h = String::from_utf8_lossy(&h).to_string();
    let field = |name: &str| -> Option<String> {
        let at = h.find(&format!("'{name}'"))?;
        let rest = &h[at + name.len() + 2..];
        let colon = rest.find(':')?;
        Some(rest[colon + 1..].trim_start().to_string())
    };
    let descr = field("descr").ok_or_else(|| bad("npy header has no 'descr'"))?;
    let descr = descr.trim_start_matches(['\'', '"']);
    let descr: String = descr.chars().take_while(|&c| c != '\'' && c != '"').collect();
    let dtype = match descr.as_str() {
        "<f4" => Dtype::F32,
        "<f8" => Dtype::F64,
        "<i4" => Dtype::I32,
        "<i8" => Dtype::I64,
        "<u8" => Dtype::U64,
        other => {
            return Err(bad(&format!(
                "unsupported dtype '{other}' (expected little-endian float32 '<f4'; also read: <f8, <i4, <i8)"
            )))
        }
    };
    let fortran = field("fortran_order").ok_or_else(|| bad("npy header has no 'fortran_order'"))?;
    let fortran = fortran.starts_with("True");
    let shape = field("shape").ok_or_else(|| bad("npy header has no 'shape'"))?;
    let open_paren = shape.find('(').ok_or_else(|| bad("malformed shape"))?;
    let close = shape.find(')').ok_or_else(|| bad("malformed shape"))?;
    let dims: Vec<usize> = shape[open_paren + 1..close]
        .split(',')
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("malformed shape")))
        .collect::<Result<_>>()?;
    Ok((dtype, fortran, dims, r))
}

/// Reads a 2-D `.npy` array as f32 (float64 and integers are converted; Fortran-ordered
/// arrays are transposed to row-major).
pub fn read_npy_matrix(path: &Path) -> Result<Matrix> {
    let (dtype, fortran, shape, mut r) = npy_header(path)?;
    let (rows, cols) = match shape.as_slice() {
        [r, c] => (*r, *c),
        [r] => (*r, 1),
        other => {
            return Err(BuildError::input(
                path.display(),
                format!("expected a 2-D array [rows, columns], got shape {other:?}"),
            ))
        }
    };
    let count = rows
        .checked_mul(cols)
        .ok_or_else(|| BuildError::input(path.display(), "shape overflows"))?;
    let mut data = Vec::with_capacity(count);
    let mut buf = vec![0u8; (1 << 20) / dtype.size() * dtype.size()];
    let mut left = count * dtype.size();
    while left > 0 {
        let take = left.min(buf.len());
        r.read_exact(&mut buf[..take]).map_err(|_| {
            BuildError::input(
                path.display(),
                format!("file is truncated: header says {rows} × {cols} values"),
            )
        })?;
        match dtype {
            Dtype::F32 => data.extend(
                buf[..take]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            Dtype::F64 => data.extend(
                buf[..take]
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32),
            ),
            Dtype::I32 => data.extend(
                buf[..take]
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32),
            ),
            Dtype::I64 => data.extend(
                buf[..take]
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32),
            ),
            Dtype::U64 => data.extend(
                buf[..take]
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32),
            ),
        }
        left -= take;
    }
    if fortran && rows > 1 && cols > 1 {
        let mut row_major = vec![0f32; count];
        for (j, column) in data.chunks_exact(rows).enumerate() {
            for (i, &v) in column.iter().enumerate() {
                row_major[i * cols + j] = v;
            }
        }
        data = row_major;
    }
    Ok(Matrix { rows, cols, data })
}

/// Reads an `.fvecs` file: per vector a little-endian `i32` dimension, then that many
/// little-endian `f32` values.
pub fn read_fvecs(path: &Path) -> Result<Matrix> {
    read_xvecs(path, "fvecs", 4, |c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// Reads a `.bvecs` file (the BIGANN format of SIFT1B): per vector a little-endian
/// `i32` dimension, then that many unsigned bytes, read as floats 0 to 255.
pub fn read_bvecs(path: &Path) -> Result<Matrix> {
    read_xvecs(path, "bvecs", 1, |c| c[0] as f32)
}

/// Reads a TEXMEX `.?vecs` file whose values are `width` bytes each, decoded by `value`.
fn read_xvecs(path: &Path, ext: &str, width: usize, value: fn(&[u8]) -> f32) -> Result<Matrix> {
    let bytes = std::fs::read(path).map_err(|e| BuildError::input(path.display(), format!("cannot read: {e}")))?;
    if bytes.len() < 4 {
        return Err(BuildError::input(
            path.display(),
            format!("empty or truncated .{ext} file"),
        ));
    }
    let dim = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if dim <= 0 || dim > 65_536 {
        return Err(BuildError::input(
            path.display(),
            format!("implausible dimension {dim} in first row"),
        ));
    }
    let dim = dim as usize;
    let record = 4 + width * dim;
    if bytes.len() % record != 0 {
        return Err(BuildError::input(
            path.display(),
            format!(
                "file length {} is not a multiple of the {record}-byte row size",
                bytes.len()
            ),
        ));
    }
    let rows = bytes.len() / record;
    let mut data = Vec::with_capacity(rows * dim);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let d = i32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
        if d as usize != dim {
            return Err(BuildError::input(
                path.display(),
                format!("row {i} has dimension {d}, first row has {dim}"),
            ));
        }
        data.extend(rec[4..].chunks_exact(width).map(value));
    }
    Ok(Matrix { rows, cols: dim, data })
}

/// Reads vectors from `.npy`, `.fvecs` or `.bvecs` (chosen by extension).
pub fn read_vectors(path: &Path) -> Result<Matrix> {
    let m = match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => read_npy_matrix(path)?,
        Some("fvecs") => read_fvecs(path)?,
        Some("bvecs") => read_bvecs(path)?,
        _ => {
            return Err(BuildError::input(
                path.display(),
                "unknown vector file type (expected .npy, .fvecs or .bvecs)",
            ))
        }
    };
    if m.rows == 0 || m.cols == 0 {
        return Err(BuildError::input(path.display(), "file holds no vectors"));
    }
    Ok(m)
}

/// The header of a 2-D float32 `.npy` file (version 1.0, padded to 64 bytes), ready for
/// `rows × cols` little-endian values to follow.
pub fn npy_f32_header(rows: usize, cols: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// Writes a 2-D float32 `.npy` file.
pub fn write_npy_f32(path: &Path, rows: usize, cols: usize, data: &[f32]) -> Result<()> {
    debug_assert_eq!(rows * cols, data.len());
    let mut out = npy_f32_header(rows, cols);
    out.reserve(data.len() * 4);
    for x in data {
        out.extend_from_slice(&x.to_le_bytes());
    }
    let mut f =
        std::fs::File::create(path).map_err(|e| BuildError::input(path.display(), format!("cannot create: {e}")))?;
    f.write_all(&out)
        .map_err(|e| BuildError::input(path.display(), format!("cannot write: {e}")))
}

/// Reads numeric attributes from a 2-D `.npy` (`[rows, A]`) with the given names
/// (`attr0..` when `names` is empty).
pub fn read_npy_attributes(path: &Path, names: &[String]) -> Result<Attributes> {
    let m = read_npy_matrix(path)?;
    let names: Vec<String> = if names.is_empty() {
        (0..m.cols).map(|i| format!("attr{i}")).collect()
    } else {
        names.to_vec()
    };
    if names.len() != m.cols {
        return Err(BuildError::input(
            path.display(),
            format!(
                "file has {} attribute columns but {} names were given",
                m.cols,
                names.len()
            ),
        ));
    }
    check_names(&names, path)?;
    let columns = (0..m.cols)
        .map(|c| {
            (0..m.rows)
                .map(|r| {
                    let v = m.data[r * m.cols + c];
                    if v.is_finite() {
                        v as f64
                    } else {
                        f64::NAN
                    }
                })
                .collect()
        })
        .collect();
    Ok(Attributes {
        schema: Schema {
            attrs: names.into_iter().map(AttrSpec::numeric).collect(),
        },
        columns,
        lists: Vec::new(),
    })
}

fn check_names(names: &[String], path: &Path) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for n in names {
        if n.is_empty() || n.starts_with('$') || n.chars().any(|c| c.is_control()) {
            return Err(BuildError::input(
                path.display(),
                format!(
                    "invalid attribute name '{}' (non-empty, no leading '$')",
                    n.escape_default()
                ),
            ));
        }
        if !seen.insert(n) {
            return Err(BuildError::input(
                path.display(),
                format!("attribute '{n}' appears twice"),
            ));
        }
    }
    Ok(())
}

/// Reads attributes from a CSV file with a header row. A column whose non-empty values
/// all parse as numbers is numeric; any other column is categorical (strings, dictionary
/// coded). Empty fields are missing values. A column with a `;` in some field is a list
/// attribute: each field's `;`-separated elements (empty ones dropped, so a lone `;` is
/// an empty list), numeric when every element is a number.
pub fn read_csv_attributes(path: &Path) -> Result<Attributes> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(open(path)?);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| BuildError::input(path.display(), format!("cannot read CSV header: {e}")))?
        .iter()
        .map(|s| s.trim().to_string())
        .collect();
    check_names(&headers, path)?;
    let mut raw: Vec<Vec<String>> = vec![Vec::new(); headers.len()];
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| BuildError::input(path.display(), format!("row {}: {e}", i + 1)))?;
        if record.len() != headers.len() {
            return Err(BuildError::input(
                path.display(),
                format!(
                    "row {} has {} fields, header has {}",
                    i + 1,
                    record.len(),
                    headers.len()
                ),
            ));
        }
        for (c, field) in record.iter().enumerate() {
            raw[c].push(field.trim().to_string());
        }
    }
    let mut attrs = Vec::with_capacity(headers.len());
    let mut columns = Vec::with_capacity(headers.len());
    let mut lists = Vec::with_capacity(headers.len());
    for (name, values) in headers.into_iter().zip(raw) {
        let list = values.iter().any(|v| v.contains(';'));
        // An empty field is a missing value in either kind of column.
        let split: Vec<Option<Vec<&str>>> = values
            .iter()
            .map(|v| {
                (!v.is_empty()).then(|| {
                    if list {
                        v.split(';').map(str::trim).filter(|e| !e.is_empty()).collect()
                    } else {
                        vec![v.as_str()]
                    }
                })
            })
            .collect();
        if let Some(row) = split
            .iter()
            .position(|r| r.as_ref().is_some_and(|es| es.len() > MAX_LIST_ELEMENTS))
        {
            return Err(BuildError::input(
                path.display(),
                format!(
                    "row {}, column '{name}': more than {MAX_LIST_ELEMENTS} elements",
                    row + 1
                ),
            ));
        }
        let numeric = split
            .iter()
            .flatten()
            .flatten()
            .all(|v| v.parse::<f64>().map(|x| x.is_finite()).unwrap_or(false));
        let rows = split
            .into_iter()
            .map(|r| {
                r.map(|es| {
                    es.into_iter()
                        .map(|e| match e.parse::<f64>() {
                            Ok(x) if numeric => Element::Number(x),
                            _ => Element::Text(e.to_string()),
                        })
                        .collect()
                })
            })
            .collect();
        let (spec, column, elements) = finish_column(name, list, !numeric, rows);
        attrs.push(spec);
        columns.push(column);
        lists.push(elements);
    }
    Ok(Attributes {
        schema: Schema { attrs },
        columns,
        lists,
    })
}

/// Reads attributes from JSON lines: one object per row (`{"price": 12.5, "color":
/// "red", "tags": ["new", "sale"]}`), attributes in alphabetical order of their names. An
/// attribute whose values are numbers is numeric, one whose values are strings is
/// categorical; an attribute whose values are arrays is a list attribute of numbers or
/// of strings (`[]` is an empty list); a missing key or `null` is a missing value.
/// Mixing numbers and strings (or lists and single values) in one attribute, booleans
/// and nested objects or arrays are errors naming the attribute and the line.
pub fn read_jsonl_attributes(path: &Path) -> Result<Attributes> {
    use std::io::BufRead;
    let bad = |line: usize, msg: String| BuildError::input(path.display(), format!("line {line}: {msg}"));
    let mut columns = CellColumns::new();
    for (i, line) in BufReader::new(open(path)?).lines().enumerate() {
        let line_no = i + 1;
        let line = line.map_err(|e| BuildError::input(path.display(), format!("cannot read: {e}")))?;
        if line.trim().is_empty() {
            return Err(bad(
                line_no,
                "empty line (each line is the attributes of one vector: `{}` for none)".into(),
            ));
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(line_no, format!("invalid JSON: {e}")))?;
        let serde_json::Value::Object(object) = value else {
            return Err(bad(line_no, "not a JSON object".into()));
        };
        for (key, v) in object {
            let cell = json_cell(&v).map_err(|e| bad(line_no, format!("attribute '{key}': {e}")))?;
            columns.push(&key, cell).map_err(|e| bad(line_no, e.to_string()))?;
        }
        columns.end_row();
    }
    let attrs = columns.finish(Valueless::Refuse).map_err(|(row, e)| bad(row + 1, e))?;
    let names: Vec<String> = attrs.schema.attrs.iter().map(|a| a.name.clone()).collect();
    check_names(&names, path)?;
    Ok(attrs)
}

/// Reads attributes from `.npy` (numeric, named by `names`), `.csv` (named by its
/// header) or `.jsonl` (one JSON object per row).
pub fn read_attributes(path: &Path, names: &[String]) -> Result<Attributes> {
    let ext = path.extension().and_then(|e| e.to_str());
    if matches!(ext, Some("csv") | Some("jsonl")) && !names.is_empty() {
        return Err(BuildError::input(
            path.display(),
            "CSV and JSON-lines attributes carry their own names; drop --attr-names",
        ));
    }
    match ext {
        Some("npy") => read_npy_attributes(path, names),
        Some("csv") => read_csv_attributes(path),
        Some("jsonl") => read_jsonl_attributes(path),
        _ => Err(BuildError::input(
            path.display(),
            "unknown attribute file type (expected .npy, .csv or .jsonl)",
        )),
    }
}

/// Reads a 1-D `.npy` array of unsigned 64-bit integers (`<u8`, or `<i8` / `<i4` without
/// negative values): ids.
pub fn read_npy_u64(path: &Path) -> Result<Vec<u64>> {
    let (dtype, _, shape, mut r) = npy_header(path)?;
    let n = match shape.as_slice() {
        [n] | [n, 1] => *n,
        other => {
            return Err(BuildError::input(
                path.display(),
                format!("expected a 1-D array of ids, got shape {other:?}"),
            ))
        }
    };
    let size = dtype.size();
    let mut bytes = vec![
        0u8;
        n.checked_mul(size)
            .ok_or_else(|| BuildError::input(path.display(), "shape overflows"))?
    ];
    r.read_exact(&mut bytes)
        .map_err(|_| BuildError::input(path.display(), format!("file is truncated: header says {n} ids")))?;
    let negative = |i: usize| BuildError::input(path.display(), format!("id {i} is negative"));
    match dtype {
        Dtype::U64 => Ok(bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect()),
        Dtype::I64 => bytes
            .chunks_exact(8)
            .enumerate()
            .map(|(i, c)| u64::try_from(i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).map_err(|_| negative(i)))
            .collect(),
        Dtype::I32 => bytes
            .chunks_exact(4)
            .enumerate()
            .map(|(i, c)| u64::try_from(i32::from_le_bytes(c.try_into().unwrap_or([0; 4]))).map_err(|_| negative(i)))
            .collect(),
        _ => Err(BuildError::input(
            path.display(),
            "ids must be unsigned integers ('<u8'; '<i8' and '<i4' without negative values are read too)",
        )),
    }
}

/// Reads one JSON value per non-empty line (`null` or `{}` for "no filter").
pub fn read_json_lines(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| BuildError::input(path.display(), format!("cannot read: {e}")))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| BuildError::input(path.display(), format!("line {}: invalid JSON: {e}", i + 1)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use squash_core::attrs::AttrValue;

    /// A fresh scratch directory for one test.
    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("squash-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn npy_round_trip_and_errors() {
        let dir = scratch("io");
        let p = dir.join("m.npy");
        write_npy_f32(&p, 3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let m = read_vectors(&p).unwrap();
        assert_eq!((m.rows, m.cols), (3, 2));
        assert_eq!(m.row(2), &[5.0, 6.0]);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        assert!(read_vectors(&p).unwrap_err().to_string().contains("truncated"));
        let csv = dir.join("a.csv");
        std::fs::write(&csv, "price,color\n1.5,red\n,blue\n3,red\n").unwrap();
        let a = read_attributes(&csv, &[]).unwrap();
        assert_eq!(
            a.schema.attrs[1].dictionary,
            vec!["blue".to_string(), "red".to_string()]
        );
        assert!(a.columns[0][1].is_nan());
        assert_eq!(a.columns[1], vec![1.0, 0.0, 1.0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn jsonl_attributes_read_kinds_and_missing_values_and_name_bad_lines() {
        let dir = scratch("jsonl");
        let p = dir.join("a.jsonl");
        std::fs::write(
            &p,
            "{\"price\": 12.5, \"color\": \"red\"}\n{\"color\": \"blue\", \"stock\": 3}\n{}\n{\"price\": null, \"color\": \"red\"}\n",
        )
        .unwrap();
        let a = read_attributes(&p, &[]).unwrap();
        let names: Vec<&str> = a.schema.attrs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["color", "price", "stock"]);
        assert_eq!(a.rows(), 4);
        assert_eq!(a.columns[1][0], 12.5);
        assert!(a.columns[1][1..].iter().all(|v| v.is_nan()));
        let color = &a.schema.attrs[0];
        assert_eq!(color.dictionary, ["blue", "red"]);
        let code = |t: &str| color.code_of(t).unwrap();
        assert_eq!(a.columns[0][0], code("red"));
        assert_eq!(a.columns[0][1], code("blue"));
        assert!(a.columns[0][2].is_nan());
        assert_eq!(a.columns[0][3], code("red"));
        assert_eq!(a.columns[2][1], 3.0);
        assert!(a.columns[2][0].is_nan() && a.columns[2][3].is_nan());
        // Mixed kinds or shapes, booleans, nested lists, non-objects, blank lines: the
        // line and the attribute are named.
        for (text, want) in [
            (
                "{\"price\": 1}\n{\"price\": \"cheap\"}\n",
                "line 2: attribute 'price' is a string here but numbers before",
            ),
            (
                "{\"tag\": \"a\"}\n{\"tag\": 7}\n",
                "line 2: attribute 'tag' is a number here but strings before",
            ),
            ("{\"ok\": true}\n", "line 1: attribute 'ok': booleans"),
            (
                "{\"tags\": [[\"a\"]]}\n",
                "line 1: attribute 'tags': element 0: nested objects and arrays",
            ),
            (
                "{\"tags\": [\"a\"]}\n{\"tags\": \"b\"}\n",
                "line 2: attribute 'tags' is a single value here but lists before",
            ),
            (
                "{\"tags\": [\"a\", 3]}\n",
                "line 1: attribute 'tags': element 1: is a number in a list of strings",
            ),
            (
                "{\"tags\": [null]}\n",
                "line 1: attribute 'tags': element 0: null is not allowed inside a list",
            ),
            ("[1, 2]\n", "line 1: not a JSON object"),
            ("{\"a\": 1}\n\n{\"a\": 2}\n", "line 2: empty line"),
            ("{\"a\": null}\n", "attribute 'a' has no value on any line"),
            ("{\"a\": []}\n", "attribute 'a' has no value on any line"),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = read_attributes(&p, &[]).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        assert!(read_attributes(&p, &["x".into()]).is_err(), "names come from the file");
    }

    #[test]
    fn list_attributes_read_from_json_lines_and_csv() {
        let dir = scratch("lists");
        let p = dir.join("a.jsonl");
        std::fs::write(
            &p,
            "{\"tags\": [\"red\", \"sale\"], \"sizes\": [1, 2.5]}\n{\"tags\": []}\n{\"sizes\": null}\n{\"tags\": [\"blue\", \"red\", \"red\"], \"sizes\": [7]}\n",
        )
        .unwrap();
        let a = read_attributes(&p, &[]).unwrap();
        let (sizes, tags) = (&a.schema.attrs[0], &a.schema.attrs[1]);
        assert!(sizes.list && tags.list);
        assert_eq!(sizes.kind, squash_core::attrs::AttrKind::Numeric);
        assert_eq!(tags.dictionary, ["blue", "red", "sale"]);
        let code = |t: &str| tags.code_of(t).unwrap();
        assert_eq!(a.value(1, 0), AttrValue::List(Some(&[code("red"), code("sale")][..])));
        assert_eq!(
            a.value(1, 1),
            AttrValue::List(Some(&[][..])),
            "an empty list is present"
        );
        assert_eq!(a.value(1, 2), AttrValue::List(None));
        assert_eq!(
            a.value(1, 3),
            AttrValue::List(Some(&[code("blue"), code("red"), code("red")][..]))
        );
        assert_eq!(a.value(0, 0), AttrValue::List(Some(&[1.0, 2.5][..])));
        assert_eq!(a.value(0, 1), AttrValue::List(None));
        assert_eq!(a.columns[1][..2], [2.0, 0.0], "list columns hold element counts");
        assert!(a.columns[1][2].is_nan() && a.columns[1][3] == 3.0);
        let sub = a.select(&[3, 0]);
        assert_eq!(sub.value(0, 0), AttrValue::List(Some(&[7.0][..])));
        assert_eq!(sub.value(1, 1), a.value(1, 0));

        let csv = dir.join("a.csv");
        std::fs::write(&csv, "price,tags,codes\n1,red;sale,3;4\n2,,5\n3,;,\n4,blue,6;\n").unwrap();
        let a = read_attributes(&csv, &[]).unwrap();
        assert!(!a.schema.attrs[0].list && a.schema.attrs[1].list && a.schema.attrs[2].list);
        assert_eq!(a.schema.attrs[2].kind, squash_core::attrs::AttrKind::Numeric);
        let tags = &a.schema.attrs[1];
        let code = |t: &str| tags.code_of(t).unwrap();
        assert_eq!(a.value(1, 0), AttrValue::List(Some(&[code("red"), code("sale")][..])));
        assert_eq!(a.value(1, 1), AttrValue::List(None), "an empty field is missing");
        assert_eq!(
            a.value(1, 2),
            AttrValue::List(Some(&[][..])),
            "a lone ; is an empty list"
        );
        assert_eq!(a.value(1, 3), AttrValue::List(Some(&[code("blue")][..])));
        assert_eq!(a.value(2, 1), AttrValue::List(Some(&[5.0][..])));
        assert_eq!(a.value(2, 3), AttrValue::List(Some(&[6.0][..])));
        assert_eq!(a.value(0, 3), AttrValue::Scalar(4.0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fvecs_reads_and_rejects_ragged_rows() {
        let dir = scratch("fvecs");
        let p = dir.join("v.fvecs");
        let mut bytes = Vec::new();
        for row in [[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]] {
            bytes.extend_from_slice(&3i32.to_le_bytes());
            for x in row {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
        std::fs::write(&p, &bytes).unwrap();
        let m = read_vectors(&p).unwrap();
        assert_eq!((m.rows, m.cols), (2, 3));
        assert_eq!(m.row(1), &[4.0, 5.0, 6.0]);
        bytes[16..20].copy_from_slice(&2i32.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        assert!(read_vectors(&p)
            .unwrap_err()
            .to_string()
            .contains("row 1 has dimension 2"));
        std::fs::write(&p, &bytes[..bytes.len() - 2]).unwrap();
        assert!(read_vectors(&p).unwrap_err().to_string().contains("not a multiple"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bvecs_reads_bytes_as_floats_and_rejects_ragged_rows() {
        let dir = scratch("bvecs");
        let p = dir.join("v.bvecs");
        let mut bytes = Vec::new();
        for row in [[0u8, 7, 255, 1], [9, 8, 7, 6]] {
            bytes.extend_from_slice(&4i32.to_le_bytes());
            bytes.extend_from_slice(&row);
        }
        std::fs::write(&p, &bytes).unwrap();
        let m = read_vectors(&p).unwrap();
        assert_eq!((m.rows, m.cols), (2, 4));
        assert_eq!(m.row(0), &[0.0, 7.0, 255.0, 1.0]);
        assert_eq!(m.row(1), &[9.0, 8.0, 7.0, 6.0]);
        bytes[8..12].copy_from_slice(&3i32.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let e = read_vectors(&p).unwrap_err().to_string();
        assert!(e.contains("row 1 has dimension 3"), "{e}");
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        assert!(read_vectors(&p).unwrap_err().to_string().contains("not a multiple"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fortran_order_npy_is_transposed() {
        let dir = scratch("fortran");
        let p = dir.join("f.npy");
        let header = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }";
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16 + 1).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.push(b'\n');
        // Column-major [[1, 2, 3], [4, 5, 6]].
        for x in [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0] {
            out.extend_from_slice(&x.to_le_bytes());
        }
        std::fs::write(&p, out).unwrap();
        let m = read_vectors(&p).unwrap();
        assert_eq!(m.data, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
