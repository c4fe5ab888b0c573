//! The value index of a high-cardinality categorical attribute (a `tenant` or `user`
//! key with thousands to millions of distinct strings).
//!
//! Such an attribute's 255 shared code cells each hold many values, so a code cannot
//! say which lists hold one tenant, and its dictionary would make the manifest grow
//! with every new value. Instead, an attribute with more than
//! [`MANY_VALUES`] distinct strings at build time keeps its dictionary and its
//! *postings* in one object of its own, named by the manifest: for every value, the
//! fine lists (global numbers) that hold it and how many of their rows do. The
//! planner then knows exactly which lists to search for `tenant = x` and how many
//! matches each holds; codes still decide all but one cell's rows in the scan.
//! Writes and compaction keep the postings exact (rows deleted later still count, as
//! they do in the list sizes). Byte layout in `docs/FORMAT.md`.

use crate::container::{le, write_container, Container, SectionOut};
use crate::error::{CoreError, Result};

/// Magic of value-index objects.
pub const VALUES_MAGIC: &[u8; 8] = b"SQUASHVI";
/// A categorical (single-valued) attribute with more distinct strings than this at
/// build time gets a value index.
pub const MANY_VALUES: usize = crate::attrs::MAX_VALUE_CELLS;

const STRINGS: u32 = 1;
const POSTINGS: u32 = 2;

/// The dictionary code a stored value names (`None` for a missing value).
pub fn code_of_value(v: f64) -> Option<u32> {
    (v.is_finite() && v >= 0.0).then_some(v as u32)
}

/// For each value (dictionary code) of an attribute, the fine lists holding it and its
/// row count in each, lists ascending.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValuePostings {
    /// `codes + 1` ascending offsets into `lists` / `counts`.
    offsets: Vec<u32>,
    /// Global list numbers.
    lists: Vec<u32>,
    /// Rows of the value in each of `lists`.
    counts: Vec<u32>,
}

impl ValuePostings {
    /// Postings of `codes` values from `(code, list, rows)` triples in any order
    /// (triples naming the same value and list are added up; codes at or past `codes`
    /// and zero counts are dropped).
    pub fn from_triples(codes: usize, mut triples: Vec<(u32, u32, u32)>) -> ValuePostings {
        triples.retain(|t| (t.0 as usize) < codes && t.2 > 0);
        triples.sort_unstable_by_key(|t| (t.0, t.1));
        let mut out = ValuePostings {
            offsets: vec![0; codes + 1],
            lists: Vec::with_capacity(triples.len()),
            counts: Vec::with_capacity(triples.len()),
        };
        let mut last: Option<(u32, u32)> = None;
        for (code, list, n) in triples {
            if last == Some((code, list)) {
                if let Some(c) = out.counts.last_mut() {
                    *c = c.saturating_add(n);
                }
                continue;
            }
            last = Some((code, list));
            out.offsets[code as usize + 1] += 1;
            out.lists.push(list);
            out.counts.push(n);
        }
        for c in 0..codes {
            out.offsets[c + 1] += out.offsets[c];
        }
        out
    }

    /// Postings of the rows `values` (dictionary codes as `f64`, `NaN` = missing), row
    /// `r` in global list `row_list[r]`.
    pub fn from_rows(codes: usize, values: &[f64], row_list: &[u32]) -> ValuePostings {
        let triples: Vec<(u32, u32, u32)> = values
            .iter()
            .zip(row_list)
            .filter_map(|(&v, &l)| code_of_value(v).map(|c| (c, l, 1)))
            .collect();
        ValuePostings::from_triples(codes, triples)
    }

    /// Number of values.
    pub fn codes(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Number of (value, list) pairs.
    pub fn pairs(&self) -> usize {
        self.lists.len()
    }

    /// The lists holding value `code` and its rows in each (nothing for an unknown code).
    pub fn get(&self, code: f64) -> impl Iterator<Item = (u32, u32)> + '_ {
        let range = if code.is_finite() && code >= 0.0 && (code as usize) < self.codes() {
            let c = code as usize;
            self.offsets[c] as usize..self.offsets[c + 1] as usize
        } else {
            0..0
        };
        self.lists[range.clone()]
            .iter()
            .copied()
            .zip(self.counts[range].iter().copied())
    }

    /// Every `(code, list, rows)` triple.
    pub fn triples(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        (0..self.codes()).flat_map(move |c| {
            let range = self.offsets[c] as usize..self.offsets[c + 1] as usize;
            self.lists[range.clone()]
                .iter()
                .zip(&self.counts[range])
                .map(move |(&l, &n)| (c as u32, l, n))
        })
    }

    /// These postings with lists renumbered by `map` (lists it maps to `None` are
    /// dropped: their rows are in `fresh`), `fresh`'s triples added, over `codes` values.
    ///
    /// `map` must keep the order of the lists it keeps (as renumbering partitions does):
    /// the postings are then merged value by value, not sorted all over again.
    pub fn rebuilt(
        &self,
        codes: usize,
        map: impl Fn(u32) -> Option<u32>,
        fresh: Vec<(u32, u32, u32)>,
    ) -> ValuePostings {
        let fresh = ValuePostings::from_triples(codes, fresh);
        let mut out = ValuePostings {
            offsets: Vec::with_capacity(codes + 1),
            lists: Vec::with_capacity(self.pairs() + fresh.pairs()),
            counts: Vec::with_capacity(self.pairs() + fresh.pairs()),
        };
        out.offsets.push(0);
        let mut kept: Vec<(u32, u32)> = Vec::new();
        for c in 0..codes {
            kept.clear();
            if c < self.codes() {
                let range = self.offsets[c] as usize..self.offsets[c + 1] as usize;
                kept.extend(
                    self.lists[range.clone()]
                        .iter()
                        .zip(&self.counts[range])
                        .filter_map(|(&l, &n)| map(l).map(|l| (l, n))),
                );
            }
            let range = fresh.offsets[c] as usize..fresh.offsets[c + 1] as usize;
            let (fl, fc) = (&fresh.lists[range.clone()], &fresh.counts[range]);
            let start = out.lists.len();
            let (mut i, mut j) = (0, 0);
            while i < kept.len() || j < fl.len() {
                let (l, n) = if j == fl.len() || (i < kept.len() && kept[i].0 <= fl[j]) {
                    i += 1;
                    kept[i - 1]
                } else {
                    j += 1;
                    (fl[j - 1], fc[j - 1])
                };
                if out.lists.len() > start && out.lists.last() == Some(&l) {
                    if let Some(x) = out.counts.last_mut() {
                        *x = x.saturating_add(n);
                    }
                } else {
                    out.lists.push(l);
                    out.counts.push(n);
                }
            }
            out.offsets.push(out.lists.len() as u32);
        }
        out
    }

    /// Largest list number named, if any.
    pub fn max_list(&self) -> Option<u32> {
        self.lists.iter().copied().max()
    }
}

/// Serialises a value index: the attribute's whole dictionary and its postings.
pub fn encode_values(strings: &[String], postings: &ValuePostings) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&(strings.len() as u32).to_le_bytes());
    let lens: Vec<u32> = strings.iter().map(|t| t.len() as u32).collect();
    le::put_u32s(&mut s, &lens);
    for t in strings {
        s.extend_from_slice(t.as_bytes());
    }
    let mut p = Vec::new();
    p.extend_from_slice(&(postings.codes() as u32).to_le_bytes());
    p.extend_from_slice(&(postings.pairs() as u32).to_le_bytes());
    le::put_u32s(&mut p, &postings.offsets);
    // Lists as differences inside each value (small numbers compress well).
    let mut deltas = Vec::with_capacity(postings.pairs());
    for c in 0..postings.codes() {
        let mut prev = 0u32;
        for &l in &postings.lists[postings.offsets[c] as usize..postings.offsets[c + 1] as usize] {
            deltas.push(l - prev);
            prev = l;
        }
    }
    le::put_u32s(&mut p, &deltas);
    le::put_u32s(&mut p, &postings.counts);
    write_container(
        VALUES_MAGIC,
        vec![SectionOut::zstd(STRINGS, s), SectionOut::zstd(POSTINGS, p)],
    )
}

/// Decodes and verifies a value index; `object` names it in errors.
pub fn decode_values(object: &str, bytes: &[u8]) -> Result<(Vec<String>, ValuePostings)> {
    let c = Container::parse(object, VALUES_MAGIC, bytes)?;
    let bad = |reason: String| CoreError::corrupt(object, reason);
    let s = c.section(STRINGS)?;
    let mut r = le::Reader::new(&s, object, "STRINGS");
    let n = r.u32()? as usize;
    if n > s.len() {
        return Err(bad(format!("implausible dictionary size {n}")));
    }
    let lens = r.u32s(n)?;
    let mut strings = Vec::with_capacity(n);
    for len in lens {
        let raw = r.take(len as usize)?;
        let text = std::str::from_utf8(raw).map_err(|_| bad("a dictionary string is not UTF-8".into()))?;
        strings.push(text.to_string());
    }
    r.finish()?;
    let p = c.section(POSTINGS)?;
    let mut r = le::Reader::new(&p, object, "POSTINGS");
    let codes = r.u32()? as usize;
    let pairs = r.u32()? as usize;
    if codes != strings.len() || pairs > p.len() {
        return Err(bad(format!(
            "postings for {codes} values ({pairs} pairs) do not fit a dictionary of {}",
            strings.len()
        )));
    }
    let offsets = r.u32s(codes + 1)?;
    let deltas = r.u32s(pairs)?;
    let counts = r.u32s(pairs)?;
    r.finish()?;
    if offsets.first() != Some(&0)
        || offsets.last().map(|&o| o as usize) != Some(pairs)
        || offsets.windows(2).any(|w| w[0] > w[1])
    {
        return Err(bad("postings offsets are not ascending from 0 to the pair count".into()));
    }
    let mut lists = Vec::with_capacity(pairs);
    for c in 0..codes {
        let mut prev: Option<u32> = None;
        for &d in &deltas[offsets[c] as usize..offsets[c + 1] as usize] {
            let l = match prev {
                None => d,
                Some(p) if d > 0 => p.checked_add(d).ok_or_else(|| bad("a list number overflows".into()))?,
                Some(_) => return Err(bad(format!("value {c} names a list twice"))),
            };
            lists.push(l);
            prev = Some(l);
        }
    }
    if counts.contains(&0) {
        return Err(bad("a posting counts no row".into()));
    }
    Ok((strings, ValuePostings { offsets, lists, counts }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postings_round_trip_and_add_up() {
        let values = [0.0, 2.0, 2.0, f64::NAN, 1.0, 2.0, 0.0, 7.0];
        let row_list = [3, 1, 1, 0, 3, 4, 3, 2];
        let p = ValuePostings::from_rows(3, &values, &row_list);
        assert_eq!(p.get(0.0).collect::<Vec<_>>(), [(3, 2)]);
        assert_eq!(p.get(2.0).collect::<Vec<_>>(), [(1, 2), (4, 1)]);
        assert_eq!(p.get(1.0).collect::<Vec<_>>(), [(3, 1)]);
        // Unknown codes (and the dropped code 7) have no postings.
        assert_eq!(p.get(7.0).count() + p.get(-1.0).count() + p.get(f64::NAN).count(), 0);
        let strings: Vec<String> = ["a", "b", "ç"].iter().map(|s| s.to_string()).collect();
        let bytes = encode_values(&strings, &p);
        let (s2, p2) = decode_values("v.sqv", &bytes).unwrap();
        assert_eq!((s2, &p2), (strings, &p));
        // Renumbering: list 1 dropped (rebuilt), the others shifted by 10, one fresh pair.
        let r = p.rebuilt(4, |l| (l != 1).then_some(l + 10), vec![(3, 0, 5), (2, 1, 1)]);
        assert_eq!(r.get(2.0).collect::<Vec<_>>(), [(1, 1), (14, 1)]);
        assert_eq!(r.get(3.0).collect::<Vec<_>>(), [(0, 5)]);
        assert_eq!(r.triples().count(), 5);
        // The merge equals sorting everything again.
        let naive = |map: &dyn Fn(u32) -> Option<u32>, fresh: Vec<(u32, u32, u32)>| {
            let mut t: Vec<_> = p.triples().filter_map(|(c, l, n)| map(l).map(|l| (c, l, n))).collect();
            t.extend(fresh);
            ValuePostings::from_triples(4, t)
        };
        let fresh = vec![(0, 13, 2), (2, 11, 1), (2, 14, 3), (0, 13, 1), (1, 0, 1)];
        let map = |l: u32| (l != 4).then_some(l + 10);
        assert_eq!(p.rebuilt(4, map, fresh.clone()), naive(&map, fresh));
        // A flipped byte is caught and the object named.
        let mut bad = bytes.clone();
        let at = bad.len() - 3;
        bad[at] ^= 0x40;
        let e = decode_values("v.sqv", &bad).unwrap_err().to_string();
        assert!(e.contains("v.sqv"), "{e}");
    }
}
