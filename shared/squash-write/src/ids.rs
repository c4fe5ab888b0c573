//! Vector ids: row numbers (the default), unsigned integers or strings of up to
//! [`MAX_ID_BYTES`] bytes given by the user, one kind per index.

use crate::error::{Result, WriteError};
use squash_core::manifest::{string_id_key, IdKind, MAX_ID_BYTES};
use std::collections::HashMap;

/// The ids of a build's (or a write's) rows.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Ids {
    /// Row numbers of the build input.
    #[default]
    Rows,
    /// Unsigned integers, one per row.
    U64(Vec<u64>),
    /// Strings, one per row.
    Strings(Vec<String>),
}

impl Ids {
    /// The kind these ids give an index.
    pub fn kind(&self) -> IdKind {
        match self {
            Ids::Rows | Ids::U64(_) => IdKind::U64,
            Ids::Strings(_) => IdKind::String,
        }
    }

    /// Number of ids (`None` for row numbers: as many as there are rows).
    pub fn len(&self) -> Option<usize> {
        match self {
            Ids::Rows => None,
            Ids::U64(v) => Some(v.len()),
            Ids::Strings(v) => Some(v.len()),
        }
    }

    /// True when the list holds no id (row numbers are never empty).
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The ids of rows `range` (row numbers stay row numbers of the whole input).
    pub fn slice(&self, range: std::ops::Range<usize>) -> Ids {
        match self {
            Ids::Rows => Ids::U64((range.start as u64..range.end as u64).collect()),
            Ids::U64(v) => Ids::U64(v[range].to_vec()),
            Ids::Strings(v) => Ids::Strings(v[range].to_vec()),
        }
    }

    /// The internal key of row `row`'s id (a segment's IDS entry).
    pub fn key(&self, row: usize) -> u64 {
        match self {
            Ids::Rows => row as u64,
            Ids::U64(v) => v[row],
            Ids::Strings(v) => string_id_key(&v[row]),
        }
    }

    /// Row `row`'s string id, for string ids.
    pub fn name(&self, row: usize) -> Option<&str> {
        match self {
            Ids::Strings(v) => Some(&v[row]),
            _ => None,
        }
    }

    /// Checks the ids of `rows` rows: one per row, strings of 1 to [`MAX_ID_BYTES`]
    /// bytes, no duplicate (the error names the first one repeated, with both rows).
    /// `field` names the input in errors.
    pub fn check(&self, rows: usize, field: &str) -> Result<()> {
        if let Some(n) = self.len() {
            if n != rows {
                return Err(WriteError::bad(field, format!("{n} ids for {rows} vectors")));
            }
        }
        match self {
            Ids::Rows => Ok(()),
            Ids::U64(v) => first_duplicate(v.iter().copied(), field),
            Ids::Strings(v) => {
                if let Some((i, s)) = v
                    .iter()
                    .enumerate()
                    .find(|(_, s)| s.is_empty() || s.len() > MAX_ID_BYTES)
                {
                    return Err(WriteError::bad(
                        field,
                        format!("id {i} is {} bytes; string ids are 1 to {MAX_ID_BYTES} bytes", s.len()),
                    ));
                }
                first_duplicate(v.iter().map(|s| s.as_str()), field)
            }
        }
    }
}

fn first_duplicate<T: std::hash::Hash + Eq + std::fmt::Debug>(ids: impl Iterator<Item = T>, field: &str) -> Result<()> {
    let mut seen: HashMap<T, usize> = HashMap::new();
    for (i, id) in ids.enumerate() {
        if let Some(first) = seen.get(&id) {
            return Err(WriteError::bad(
                field,
                format!("duplicate id {id:?} (rows {first} and {i})"),
            ));
        }
        seen.insert(id, i);
    }
    Ok(())
}

/// Ids from text: all canonical unsigned integers → integer ids, else strings.
pub fn parse_ids<'a>(items: impl Iterator<Item = &'a str> + Clone) -> Ids {
    let numeric: Option<Vec<u64>> = items.clone().map(canonical_u64).collect();
    match numeric {
        Some(v) => Ids::U64(v),
        None => Ids::Strings(items.map(str::to_string).collect()),
    }
}

/// `s` as an unsigned integer when it is one in canonical decimal.
pub fn canonical_u64(s: &str) -> Option<u64> {
    let v: u64 = s.parse().ok()?;
    (v.to_string() == s).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_ids_are_integers_only_when_every_line_is_one() {
        assert_eq!(parse_ids(["1", "42", "0"].into_iter()), Ids::U64(vec![1, 42, 0]));
        assert_eq!(
            parse_ids(["1", "007"].into_iter()),
            Ids::Strings(vec!["1".into(), "007".into()])
        );
        assert_eq!(canonical_u64("+1"), None);
        assert_eq!(canonical_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(canonical_u64("18446744073709551616"), None);
    }

    #[test]
    fn checks_name_the_first_duplicate_and_bad_lengths() {
        let e = Ids::U64(vec![3, 1, 3]).check(3, "ids").unwrap_err().to_string();
        assert!(e.contains("duplicate id 3 (rows 0 and 2)"), "{e}");
        let e = Ids::Strings(vec!["a".into(), "b".into(), "a".into()])
            .check(3, "ids")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"a\" (rows 0 and 2)"), "{e}");
        let long = "x".repeat(MAX_ID_BYTES + 1);
        let e = Ids::Strings(vec![long]).check(1, "ids").unwrap_err().to_string();
        assert!(e.contains("257 bytes"), "{e}");
        assert!(Ids::U64(vec![1])
            .check(2, "ids")
            .unwrap_err()
            .to_string()
            .contains("1 ids for 2"));
        assert!(Ids::Rows.check(5, "ids").is_ok());
        assert!(Ids::Strings(vec!["é".repeat(128)]).check(1, "ids").is_ok());
    }
}
