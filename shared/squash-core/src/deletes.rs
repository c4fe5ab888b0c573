//! Deletion sets: which rows of one segment were deleted or replaced by writes. A
//! segment is immutable; a write that deletes some of its rows writes a new deletion
//! set (all its deleted rows so far) and the manifest version it commits points to it.
//! Byte layout in `docs/FORMAT.md`.

use crate::container::{le, write_container, Container, SectionOut};
use crate::error::{CoreError, Result};

/// Magic of deletion-set objects.
pub const DELETES_MAGIC: &[u8; 8] = b"SQUASHDL";

const ROWS: u32 = 1;

/// Encodes the deleted `rows` (ascending, distinct) of a segment of `total` rows.
pub fn encode_deletes(rows: &[u32], total: u64) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8 + rows.len() * 4);
    le::put_u64s(&mut payload, &[total]);
    le::put_u32s(&mut payload, rows);
    write_container(DELETES_MAGIC, vec![SectionOut::zstd(ROWS, payload)])
}

/// Decodes and verifies a deletion set of a segment of `total` rows: the rows, ascending
/// and distinct. `object` names it in errors.
pub fn decode_deletes(object: &str, bytes: &[u8], total: u64) -> Result<Vec<u32>> {
    let c = Container::parse(object, DELETES_MAGIC, bytes)?;
    let payload = c.section(ROWS)?;
    let bad = |reason: String| CoreError::corrupt(object, reason);
    if payload.len() < 8 || payload.len() % 4 != 0 {
        return Err(bad("deletion set has the wrong length".into()));
    }
    let mut r = le::Reader::new(&payload, object, "ROWS");
    let of = r.u64s(1)?[0];
    let rows = r.u32s((payload.len() - 8) / 4)?;
    r.finish()?;
    if of != total {
        return Err(bad(format!("deletion set is for a segment of {of} rows, not {total}")));
    }
    if rows.windows(2).any(|w| w[0] >= w[1]) || rows.last().is_some_and(|&l| u64::from(l) >= total) {
        return Err(bad(
            "deleted rows are not ascending, distinct and inside the segment".into()
        ));
    }
    Ok(rows)
}

/// A segment's deleted rows as a bitmap (bit `r % 64` of word `r / 64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadRows {
    words: Vec<u64>,
    count: usize,
}

impl DeadRows {
    /// The bitmap of `rows` in a segment of `total` rows (rows past it are ignored).
    pub fn new(rows: &[u32], total: usize) -> DeadRows {
        let mut words = vec![0u64; total.div_ceil(64)];
        let mut count = 0;
        for &r in rows {
            let r = r as usize;
            if r < total && words[r / 64] & (1 << (r % 64)) == 0 {
                words[r / 64] |= 1 << (r % 64);
                count += 1;
            }
        }
        DeadRows { words, count }
    }

    /// True when `row` is deleted.
    #[inline]
    pub fn contains(&self, row: usize) -> bool {
        self.words.get(row / 64).is_some_and(|w| w & (1 << (row % 64)) != 0)
    }

    /// Deleted rows.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no row is deleted.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.words.len() as u64 * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletion_sets_round_trip_and_reject_bad_rows() {
        let bytes = encode_deletes(&[0, 5, 63, 64, 99], 100);
        assert_eq!(decode_deletes("d", &bytes, 100).unwrap(), vec![0, 5, 63, 64, 99]);
        assert!(decode_deletes("d", &bytes, 101)
            .unwrap_err()
            .to_string()
            .contains("100 rows"));
        let out_of_range = encode_deletes(&[3, 100], 100);
        assert!(decode_deletes("d", &out_of_range, 100).is_err());
        let unsorted = encode_deletes(&[5, 3], 100);
        assert!(decode_deletes("d", &unsorted, 100).is_err());
        let mut corrupt = bytes.clone();
        let last = corrupt.len() - 9;
        corrupt[last] ^= 1;
        assert!(decode_deletes("d", &corrupt, 100).is_err());
        let dead = DeadRows::new(&[0, 5, 63, 64, 99, 5], 100);
        assert_eq!(dead.len(), 5);
        assert!(dead.contains(63) && dead.contains(64) && !dead.contains(62) && !dead.contains(100));
    }
}
