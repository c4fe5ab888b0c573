//! Reading a segment by byte ranges: its head first, then the lists and vector blocks
//! a query needs, each verified against the SUMS section.

use super::read::*;
use crate::error::{CoreError, Result};
use bytes::Bytes;
use std::ops::Range;
use std::sync::Arc;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// Byte ranges of a segment object to fetch so that a partially read segment holds the
/// lists and vector rows asked of [`Segment::fetch_plan`]; pass the fetched bodies to
/// [`Segment::extend`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FetchPlan {
    /// Object byte ranges, ascending and disjoint.
    pub ranges: Vec<Range<u64>>,
    lists: Vec<usize>,
    blocks: Vec<usize>,
}

impl FetchPlan {
    /// True when nothing needs fetching.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
    /// Lists the plan adds.
    pub fn lists(&self) -> &[usize] {
        &self.lists
    }
    /// Vector blocks the plan adds.
    pub fn blocks(&self) -> &[usize] {
        &self.blocks
    }
    /// Bytes the plan fetches.
    pub fn bytes(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }
}

impl Segment {
    /// Object byte ranges of list `l`'s scanned data, in checksum order.
    pub(super) fn list_ranges(&self, l: usize) -> Vec<Range<usize>> {
        let base = |kind: u32| match kind {
            BLOCKS => self.blocks.start,
            SIGNS => self.signs.start,
            ATTR_CODES => self.attr_codes.start,
            ATTRS => self.attr_values.start,
            ELEMENTS => self.elements.start,
            _ => self.ids.start,
        };
        let rows = self.list_rows(l);
        let elems = elem_ranges(
            &rows,
            self.elem_offsets
                .iter()
                .flatten()
                .map(|(base, off)| (*base, off.as_slice())),
        );
        list_parts(
            rows,
            self.block_starts[l]..self.block_starts[l + 1],
            self.len(),
            self.meta.attrs as usize,
            self.sign_words(),
            elems,
        )
        .into_iter()
        .map(|(kind, r)| base(kind) + r.start..base(kind) + r.end)
        .collect()
    }

    /// Object byte range of vector block `b`.
    pub(super) fn block_range(&self, b: usize) -> Range<usize> {
        let rows = self.sums.as_ref().map_or(1, |s| s.block_rows);
        let row_bytes = self.meta.dim as usize * 4;
        let (a, e) = (b * rows, ((b + 1) * rows).min(self.len()));
        self.vectors.start + a * row_bytes..self.vectors.start + e * row_bytes
    }

    /// What to fetch so that this (partially read) segment holds lists `lists` and the
    /// full vectors of rows `rows`: the missing parts, in ascending byte ranges, with
    /// ranges less than a few KiB apart merged. Empty for a whole segment.
    pub fn fetch_plan(&self, lists: &[usize], rows: &[usize]) -> FetchPlan {
        let (Some(p), Some(s)) = (&self.present, &self.sums) else {
            return FetchPlan::default();
        };
        let mut want_lists: Vec<usize> = lists
            .iter()
            .copied()
            .filter(|&l| l < self.list_count() && !p.lists[l])
            .collect();
        want_lists.sort_unstable();
        want_lists.dedup();
        let mut want_blocks: Vec<usize> = rows
            .iter()
            .filter(|&&r| r < self.len())
            .map(|&r| r / s.block_rows)
            .filter(|&b| !p.blocks[b])
            .collect();
        want_blocks.sort_unstable();
        want_blocks.dedup();
        let mut ranges: Vec<Range<u64>> = want_lists
            .iter()
            .flat_map(|&l| self.list_ranges(l))
            .chain(want_blocks.iter().map(|&b| self.block_range(b)))
            .filter(|r| !r.is_empty())
            .map(|r| r.start as u64..r.end as u64)
            .collect();
        ranges.sort_unstable_by_key(|r| r.start);
        let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if r.start <= last.end + COALESCE_GAP => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        FetchPlan {
            ranges: merged,
            lists: want_lists,
            blocks: want_blocks,
        }
    }

    /// Opens a segment from its first [`Segment::head_len`] bytes (or more) and its
    /// total size, for reading the rest by ranges: parameters are decoded and their
    /// section checksums verified; no list or vector is held yet ([`Segment::fetch_plan`]).
    /// Fails for a segment without the SUMS section (read it whole instead).
    pub fn open_head(object: &str, head: &[u8], total: u64) -> Result<Segment> {
        let bad = |reason: String| CoreError::corrupt(object, reason);
        let total = usize::try_from(total).map_err(|_| bad("object too large".into()))?;
        if head.len() > total {
            return Err(bad(format!(
                "head of {} bytes exceeds the object's {total}",
                head.len()
            )));
        }
        // Zeroed pages are allocated lazily: only what is copied in becomes resident.
        let mut words = vec![0u64; total.div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..head.len()].copy_from_slice(head);
        let buf = Bytes::from_owner(Aligned { words, len: total });
        let mut seg = Segment::open(object, buf, Open::Head)?;
        if seg.sums.is_none() {
            return Err(bad("segment has no SUMS section: it can only be read whole".into()));
        }
        if head.len() < seg.head_len() {
            return Err(bad(format!(
                "head of {} bytes is shorter than the segment's parameters ({} bytes)",
                head.len(),
                seg.head_len()
            )));
        }
        seg.present = Some(Arc::new(Present {
            lists: vec![false; seg.list_count()],
            blocks: vec![false; seg.sums.as_ref().map_or(0, |s| s.blocks.len())],
        }));
        Ok(seg)
    }

    /// This partially read segment with `plan`'s ranges added (`bodies[i]` holds
    /// `plan.ranges[i]`): a new buffer holding what this one held plus the new lists and
    /// vector blocks, each verified against its SUMS checksum.
    /// `object` names the segment in errors.
    pub fn extend(&self, object: &str, plan: &FetchPlan, bodies: &[impl AsRef<[u8]>]) -> Result<Segment> {
        let (Some(p), Some(s)) = (&self.present, &self.sums) else {
            return Ok(self.clone());
        };
        let bad = |reason: String| CoreError::corrupt(object, reason);
        if bodies.len() != plan.ranges.len() {
            return Err(bad("fetched ranges do not match the plan".into()));
        }
        let total = self.buf.len();
        let mut words = vec![0u64; total.div_ceil(8)];
        let out = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..total];
        let head = self.head_len();
        out[..head].copy_from_slice(&self.buf[..head]);
        let mut copy = |r: Range<usize>, from: &[u8]| out[r].copy_from_slice(from);
        for l in (0..self.list_count()).filter(|&l| p.lists[l]) {
            for r in self.list_ranges(l) {
                copy(r.clone(), &self.buf[r]);
            }
        }
        for b in (0..p.blocks.len()).filter(|&b| p.blocks[b]) {
            let r = self.block_range(b);
            copy(r.clone(), &self.buf[r]);
        }
        for (r, body) in plan.ranges.iter().zip(bodies) {
            let body = body.as_ref();
            let (a, e) = (r.start as usize, r.end as usize);
            if body.len() != e - a || e > total {
                return Err(bad(format!("range {a}..{e} came back with {} bytes", body.len())));
            }
            copy(a..e, body);
        }
        let mut present = (**p).clone();
        let n = self.len();
        for &l in &plan.lists {
            let mut h = Xxh3::new();
            for r in self.list_ranges(l) {
                h.update(&out[r]);
            }
            if h.digest() != s.lists[l] {
                return Err(bad(format!("list {l} checksum mismatch")));
            }
            let rows = self.list_rows(l);
            for a in 0..self.meta.attrs as usize {
                let cells = &self.attr_cells[a];
                let at = self.attr_codes.start + a * n;
                if !out[at + rows.start..at + rows.end]
                    .iter()
                    .all(|&c| cells.code_is_valid(c))
                {
                    return Err(bad(format!(
                        "attribute {a} has a code beyond its {} cells",
                        cells.len()
                    )));
                }
            }
            present.lists[l] = true;
        }
        for &b in &plan.blocks {
            if xxh3_64(&out[self.block_range(b)]) != s.blocks[b] {
                return Err(bad(format!("vector block {b} checksum mismatch")));
            }
            present.blocks[b] = true;
        }
        let mut seg = self.clone();
        seg.buf = Bytes::from_owner(Aligned { words, len: total });
        seg.present = Some(Arc::new(present));
        Ok(seg)
    }
}
