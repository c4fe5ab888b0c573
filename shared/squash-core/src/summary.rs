//! Per-list code counts: how many rows of each fine list carry each attribute code, so
//! that the planner counts the matches in the lists it picks instead of guessing them
//! from which codes are present.
//!
//! A categorical, list or discrete numeric attribute is counted code by code (a value of
//! an attribute with at most 255 values is one code; a list attribute's code is the set
//! of element groups a row holds). Any other numeric attribute is counted in *buckets*
//! of 16 adjacent codes (its codes are ordered by value, so a bucket is a value range),
//! with missing values in a bucket of their own: 17 counts at most, where exact counts
//! would take up to 256. Each attribute's bucket width is chosen at build time and kept
//! with the counts. Only buckets present in the list (some code of the bucket set in its
//! presence bitmap) are stored, in ascending order; the presence bitmaps say which.
//! Counts saturate at `u16::MAX`.
//!
//! Rows deleted by later writes still count, as they do in the list sizes.

use crate::attrs::{AttrCells, AttrKind, Schema, MISSING_CODE};

/// u64 words of one attribute's code-presence bitmap (256 codes).
pub const PRESENCE_WORDS: usize = 4;

/// Codes per bucket of a numeric attribute.
pub const NUMERIC_BUCKET: usize = 16;

/// Codes per count bucket of each attribute of `schema` with cells `cells`: 16 for a
/// single-valued numeric attribute whose cells are ranges, 1 for the others (a numeric
/// attribute with one value per cell is discrete: a label, a year).
pub fn bucket_widths(schema: &Schema, cells: &[AttrCells]) -> Vec<usize> {
    (0..schema.len())
        .map(|a| {
            let s = &schema.attrs[a];
            let ranges = cells
                .get(a)
                .is_none_or(|c| c.min.iter().zip(&c.max).any(|(lo, hi)| lo != hi));
            if s.kind == AttrKind::Numeric && !s.list && ranges {
                NUMERIC_BUCKET
            } else {
                1
            }
        })
        .collect()
}

/// The bucket of code `c` at `width` codes per bucket (missing values apart when the
/// width is above 1).
pub fn bucket_of(c: u8, width: usize) -> usize {
    if width <= 1 {
        c as usize
    } else if c == MISSING_CODE {
        256 / width
    } else {
        c as usize / width
    }
}

/// The buckets present in one attribute's presence bitmap (`PRESENCE_WORDS` words), as a
/// bitmap of buckets.
pub fn present_buckets(presence: &[u64], width: usize) -> [u64; PRESENCE_WORDS] {
    let mut out = [0u64; PRESENCE_WORDS];
    if width <= 1 {
        out.copy_from_slice(&presence[..PRESENCE_WORDS]);
        return out;
    }
    // Width 16: bucket `4w + j` is lane `j` (16 bits) of word `w`, the missing code
    // (bit 63 of word 3) apart in bucket 16.
    for (w, &word) in presence.iter().enumerate().take(PRESENCE_WORDS) {
        let x = if w == PRESENCE_WORDS - 1 {
            word & !(1u64 << 63)
        } else {
            word
        };
        // Bit 16j of `y` is the OR of lane j's 16 bits.
        let mut y = x | (x >> 1);
        y |= y >> 2;
        y |= y >> 4;
        y |= y >> 8;
        let lanes = (y & 1) | ((y >> 15) & 2) | ((y >> 30) & 4) | ((y >> 45) & 8);
        out[0] |= lanes << (4 * w);
    }
    if presence[PRESENCE_WORDS - 1] >> 63 != 0 {
        out[0] |= 1 << 16;
    }
    out
}

/// Position of bucket `b` among the set bits of `buckets` (the set bits below it).
pub fn rank(buckets: &[u64; PRESENCE_WORDS], b: usize) -> usize {
    let (w, bit) = (b / 64, b % 64);
    let below: u32 = buckets[..w].iter().map(|x| x.count_ones()).sum();
    (below + (buckets[w] & ((1u64 << bit) - 1)).count_ones()) as usize
}

fn ones(buckets: &[u64; PRESENCE_WORDS]) -> usize {
    buckets.iter().map(|x| x.count_ones() as usize).sum()
}

/// The code counts of every fine list of an index, and their totals per attribute.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListCodeCounts {
    /// Codes per bucket of each attribute.
    widths: Vec<usize>,
    /// Per list: each attribute's present buckets' row counts, attribute after attribute.
    lists: Vec<Vec<u16>>,
    /// Per list, per attribute: where the attribute's counts start in the list's
    /// (derived from the presence bitmaps, kept for the planner's lookups).
    starts: Vec<u32>,
    /// Per attribute, per bucket: rows over all lists.
    totals: Vec<Vec<u64>>,
}

impl ListCodeCounts {
    /// Counts from each list's rows' codes: `codes(l, a)` gives list `l`'s codes of
    /// attribute `a`, and `presence(l)` its presence bitmaps (all attributes).
    pub fn from_lists<'a>(
        widths: Vec<usize>,
        lists: usize,
        codes: impl Fn(usize, usize) -> &'a [u8],
        presence: impl Fn(usize) -> &'a [u64],
    ) -> ListCodeCounts {
        let mut out = ListCodeCounts::empty(widths);
        for l in 0..lists {
            let counts = list_counts(&out.widths, |a| codes(l, a), presence(l));
            out.add_totals(presence(l), &counts, 1);
            let starts = out.starts_of(presence(l));
            out.starts.extend(starts);
            out.lists.push(counts);
        }
        out
    }

    /// Where each attribute's counts start in a list with presence bitmaps `presence`.
    fn starts_of(&self, presence: &[u64]) -> Vec<u32> {
        let mut at = 0u32;
        (0..self.widths.len())
            .map(|a| {
                let start = at;
                at += ones(&present_buckets(&presence[a * PRESENCE_WORDS..], self.widths[a])) as u32;
                start
            })
            .collect()
    }

    /// The counts of lists laid out as [`ListCodeCounts::of_list`] (e.g. by
    /// [`list_counts`]), with the presence bitmaps `presence(l)` they go with.
    pub fn from_counts<'a>(
        widths: Vec<usize>,
        lists: Vec<Vec<u16>>,
        presence: impl Fn(usize) -> &'a [u64],
    ) -> ListCodeCounts {
        let mut out = ListCodeCounts::empty(widths);
        out.splice(0..0, |_| &[], lists, presence);
        out
    }

    /// No lists yet, with bucket widths `widths` (one per attribute, 1 or 16; see
    /// [`bucket_widths`]).
    pub fn empty(widths: Vec<usize>) -> ListCodeCounts {
        let widths: Vec<usize> = widths
            .into_iter()
            .map(|w| if w <= 1 { 1 } else { NUMERIC_BUCKET })
            .collect();
        let totals = widths
            .iter()
            .map(|&w| vec![0u64; bucket_of(MISSING_CODE, w) + 1])
            .collect();
        ListCodeCounts {
            widths,
            lists: Vec::new(),
            starts: Vec::new(),
            totals,
        }
    }

    /// Codes per bucket of each attribute.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// Codes per bucket of attribute `a`.
    pub fn width(&self, a: usize) -> usize {
        self.widths.get(a).copied().unwrap_or(1)
    }

    /// Number of lists.
    pub fn lists(&self) -> usize {
        self.lists.len()
    }

    /// List `l`'s counts (all attributes).
    pub fn of_list(&self, l: usize) -> &[u16] {
        self.lists.get(l).map_or(&[], Vec::as_slice)
    }

    /// Rows over all lists in bucket `b` of attribute `a`.
    pub fn total(&self, a: usize, b: usize) -> u64 {
        self.totals.get(a).and_then(|t| t.get(b)).copied().unwrap_or(0)
    }

    /// Rows over all lists (as attribute 0 counts them; 0 without attributes).
    pub fn rows(&self) -> u64 {
        self.totals.first().map_or(0, |t| t.iter().sum())
    }

    /// List `l`'s counts of attribute `a` and its present buckets, given the list's
    /// presence bitmaps.
    pub fn attr_counts(&self, l: usize, presence: &[u64], a: usize) -> (&[u16], [u64; 4]) {
        let buckets = present_buckets(&presence[a * PRESENCE_WORDS..], self.width(a));
        let attrs = self.widths.len();
        let start = self.starts.get(l * attrs + a).map_or(0, |&s| s as usize);
        let n = ones(&buckets);
        (self.of_list(l).get(start..start + n).unwrap_or(&[]), buckets)
    }

    fn add_totals(&mut self, presence: &[u64], counts: &[u16], sign: i64) {
        let mut at = 0;
        for a in 0..self.widths.len() {
            let buckets = present_buckets(&presence[a * PRESENCE_WORDS..], self.widths[a]);
            for (w, &word) in buckets.iter().enumerate() {
                let mut bits = word;
                while bits != 0 {
                    let b = w * 64 + bits.trailing_zeros() as usize;
                    let n = counts.get(at).copied().unwrap_or(0) as i64;
                    if let Some(t) = self.totals[a].get_mut(b) {
                        *t = (*t as i64 + sign * n).max(0) as u64;
                    }
                    at += 1;
                    bits &= bits - 1;
                }
            }
        }
    }

    /// Records one more row in list `l` with code `codes[a]` for each attribute, where
    /// `presence` is the list's presence bitmaps *before* the row.
    pub fn add_row(&mut self, l: usize, presence: &[u64], codes: &[u8]) {
        let attrs = self.widths.len();
        let Some(counts) = self.lists.get_mut(l) else { return };
        let mut start = 0;
        for (a, &c) in codes.iter().enumerate().take(self.widths.len()) {
            let width = self.widths[a];
            let buckets = present_buckets(&presence[a * PRESENCE_WORDS..], width);
            let b = bucket_of(c, width);
            let at = start + rank(&buckets, b);
            if buckets[b / 64] & (1 << (b % 64)) != 0 {
                counts[at] = counts[at].saturating_add(1);
                start += ones(&buckets);
            } else {
                counts.insert(at, 1);
                start += ones(&buckets) + 1;
                for s in &mut self.starts[l * attrs + a + 1..(l + 1) * attrs] {
                    *s += 1;
                }
            }
            self.totals[a][b] += 1;
        }
    }

    /// Replaces lists `old` with `new` (each a list's counts, laid out as
    /// [`ListCodeCounts::of_list`]); `old_presence(l)` and `new_presence(i)` give the
    /// presence bitmaps the counts go with.
    pub fn splice<'a>(
        &mut self,
        old: std::ops::Range<usize>,
        old_presence: impl Fn(usize) -> &'a [u64],
        new: Vec<Vec<u16>>,
        new_presence: impl Fn(usize) -> &'a [u64],
    ) {
        for l in old.clone() {
            let counts = std::mem::take(&mut self.lists[l]);
            self.add_totals(old_presence(l), &counts, -1);
        }
        let mut starts = Vec::with_capacity(new.len() * self.widths.len());
        for (i, counts) in new.iter().enumerate() {
            self.add_totals(new_presence(i), counts, 1);
            starts.extend(self.starts_of(new_presence(i)));
        }
        let attrs = self.widths.len();
        self.starts.splice(old.start * attrs..old.end * attrs, starts);
        self.lists.splice(old, new);
    }

    /// The manifest's LIST_CODE_COUNTS section before compression: one byte per
    /// attribute (its bucket width), then every list's counts, list after list (`u16`
    /// little-endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.widths.len() + self.lists.iter().map(|l| l.len() * 2).sum::<usize>());
        out.extend(self.widths.iter().map(|&w| w as u8));
        for l in &self.lists {
            for &n in l {
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        out
    }

    /// Decodes [`ListCodeCounts::encode`]'s bytes for `attrs` attributes and `lists`
    /// lists with the presence bitmaps `presence(l)`; `None` when the widths or the
    /// lengths are wrong.
    pub fn decode<'a>(
        bytes: &[u8],
        attrs: usize,
        lists: usize,
        presence: impl Fn(usize) -> &'a [u64],
    ) -> Option<ListCodeCounts> {
        let widths = bytes.get(..attrs)?;
        if widths.iter().any(|&w| w != 1 && w as usize != NUMERIC_BUCKET) {
            return None;
        }
        let mut out = ListCodeCounts::empty(widths.iter().map(|&w| w as usize).collect());
        let bytes = &bytes[attrs..];
        let mut at = 0usize;
        for l in 0..lists {
            let p = presence(l);
            let n: usize = (0..out.widths.len())
                .map(|a| ones(&present_buckets(&p[a * PRESENCE_WORDS..], out.widths[a])))
                .sum();
            let raw = bytes.get(at * 2..(at + n) * 2)?;
            let counts: Vec<u16> = raw.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
            at += n;
            out.add_totals(p, &counts, 1);
            let starts = out.starts_of(p);
            out.starts.extend(starts);
            out.lists.push(counts);
        }
        (at * 2 == bytes.len()).then_some(out)
    }
}

/// One list's counts from its rows' codes (`codes(a)`: attribute `a`'s codes) and its
/// presence bitmaps, laid out as [`ListCodeCounts::of_list`].
pub fn list_counts<'a>(widths: &[usize], codes: impl Fn(usize) -> &'a [u8], presence: &[u64]) -> Vec<u16> {
    let mut out = Vec::new();
    for (a, &width) in widths.iter().enumerate() {
        let mut hist = [0u32; 256];
        for &c in codes(a) {
            hist[bucket_of(c, width)] += 1;
        }
        let buckets = present_buckets(&presence[a * PRESENCE_WORDS..], width);
        for (w, &word) in buckets.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let b = w * 64 + bits.trailing_zeros() as usize;
                out.push(hist[b].min(u16::MAX as u32) as u16);
                bits &= bits - 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::AttrSpec;

    fn schema() -> Schema {
        Schema {
            attrs: vec![
                AttrSpec::numeric("price".to_string()),
                AttrSpec::categorical("color".to_string(), vec!["red".into(), "blue".into()]),
            ],
        }
    }

    /// The codes of bucket `b` at `width` codes per bucket (1 or 16), as a 256-bit set.
    fn bucket_codes(b: usize, width: usize) -> [u64; PRESENCE_WORDS] {
        let mut out = [0u64; PRESENCE_WORDS];
        if width <= 1 {
            out[b / 64] |= 1 << (b % 64);
        } else if b >= 16 {
            out[PRESENCE_WORDS - 1] = 1 << 63;
        } else {
            out[b / 4] = 0xFFFFu64 << (16 * (b % 4));
            if b == 15 {
                out[PRESENCE_WORDS - 1] &= !(1u64 << 63);
            }
        }
        out
    }

    #[test]
    fn buckets_and_their_codes_agree_with_bucket_of() {
        for width in [1usize, 16] {
            for c in 0..256usize {
                let mut presence = [0u64; 4];
                presence[c / 64] |= 1 << (c % 64);
                let b = bucket_of(c as u8, width);
                let buckets = present_buckets(&presence, width);
                assert_eq!(ones(&buckets), 1);
                assert_ne!(buckets[b / 64] & (1 << (b % 64)), 0, "code {c} width {width}");
                let codes = bucket_codes(b, width);
                assert_ne!(codes[c / 64] & (1 << (c % 64)), 0, "code {c} width {width}");
                let n: u32 = codes.iter().map(|w| w.count_ones()).sum();
                let expect = if width == 1 || c == 255 {
                    1
                } else if b == 15 {
                    15
                } else {
                    16
                };
                assert_eq!(n, expect, "code {c} width {width}");
            }
        }
    }

    fn widths() -> Vec<usize> {
        let ranges = AttrCells {
            min: vec![0.0, 1.0],
            max: vec![0.5, 2.0],
            list: false,
        };
        let points = AttrCells {
            min: vec![0.0, 1.0],
            max: vec![0.0, 1.0],
            list: false,
        };
        let w = bucket_widths(&schema(), &[ranges, points.clone()]);
        assert_eq!(w, [16, 1]);
        assert_eq!(
            bucket_widths(&schema(), &[points.clone(), points])[0],
            1,
            "discrete numbers count exactly"
        );
        w
    }

    fn presence_of(codes: &[Vec<u8>]) -> Vec<u64> {
        let mut p = vec![0u64; codes.len() * PRESENCE_WORDS];
        for (a, col) in codes.iter().enumerate() {
            for &c in col {
                p[a * PRESENCE_WORDS + c as usize / 64] |= 1 << (c % 64);
            }
        }
        p
    }

    #[test]
    fn numeric_codes_count_in_buckets_with_missing_apart_and_categorical_code_by_code() {
        let lists = [
            vec![vec![0u8, 3, 17, 254, 255, 255], vec![0u8, 0, 1, 255, 0, 0]],
            vec![vec![200u8, 201], vec![1u8, 1]],
        ];
        let presence: Vec<Vec<u64>> = lists.iter().map(|l| presence_of(l)).collect();
        let c = ListCodeCounts::from_lists(widths(), 2, |l, a| &lists[l][a], |l| &presence[l]);
        // price: buckets 0 (codes 0, 3), 1 (17), 15 (254), 16 (missing); color: 0, 1, 255.
        assert_eq!(c.of_list(0), &[2, 1, 1, 2, 4, 1, 1]);
        let (price, buckets) = c.attr_counts(0, &presence[0], 0);
        assert_eq!(price, &[2, 1, 1, 2]);
        assert_eq!(rank(&buckets, 16), 3);
        let (color, _) = c.attr_counts(1, &presence[1], 1);
        assert_eq!(color, &[2]);
        assert_eq!((c.total(0, 12), c.total(1, 0), c.total(1, 1), c.rows()), (2, 4, 3, 8));
        let bytes = c.encode();
        assert_eq!(ListCodeCounts::decode(&bytes, 2, 2, |l| &presence[l]), Some(c.clone()));
        assert_eq!(
            ListCodeCounts::decode(&bytes[..bytes.len() - 2], 2, 2, |l| &presence[l]),
            None
        );
    }

    #[test]
    fn rows_added_and_lists_replaced_keep_counts_and_totals_exact() {
        let mut lists = [vec![vec![0u8, 40], vec![0u8, 1]], vec![vec![255u8], vec![255u8]]];
        let presence: Vec<Vec<u64>> = lists.iter().map(|l| presence_of(l)).collect();
        let mut c = ListCodeCounts::from_lists(widths(), 2, |l, a| &lists[l][a], |l| &presence[l]);
        // A row with a new price bucket and a known color, then one with both known.
        for row in [[100u8, 1], [101u8, 0]] {
            let before = presence_of(&lists[0]);
            c.add_row(0, &before, &row);
            lists[0][0].push(row[0]);
            lists[0][1].push(row[1]);
        }
        let presence: Vec<Vec<u64>> = lists.iter().map(|l| presence_of(l)).collect();
        let fresh = ListCodeCounts::from_lists(widths(), 2, |l, a| &lists[l][a], |l| &presence[l]);
        assert_eq!(c, fresh);
        // Replace list 1 by two lists.
        let new = [vec![vec![5u8], vec![1u8]], vec![vec![6u8, 7], vec![255u8, 0]]];
        let new_presence: Vec<Vec<u64>> = new.iter().map(|l| presence_of(l)).collect();
        let new_counts: Vec<Vec<u16>> = (0..2)
            .map(|i| list_counts(&[16, 1], |a| &new[i][a], &new_presence[i]))
            .collect();
        c.splice(1..2, |l| &presence[l], new_counts, |i| &new_presence[i]);
        let all = [lists[0].clone(), new[0].clone(), new[1].clone()];
        let all_presence: Vec<Vec<u64>> = all.iter().map(|l| presence_of(l)).collect();
        assert_eq!(
            c,
            ListCodeCounts::from_lists(widths(), 3, |l, a| &all[l][a], |l| &all_presence[l])
        );
    }
}
