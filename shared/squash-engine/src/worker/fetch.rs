//! Getting segments: from the warm cache, else from the object store (whole objects
//! verified against the manifest's size and checksum, or by byte ranges), with their
//! deletion sets.

use super::scan::{list_ranges, reach_rows};
use super::state::{RangeReads, Worker};
use rayon::prelude::*;
use squash_api::SegmentRef;
use squash_core::deletes::{decode_deletes, DeadRows};
use squash_core::naming::Naming;
use squash_core::segment::Segment;
use squash_storage::Blob;
use std::sync::Arc;
use std::time::Instant;

/// A segment as the worker got it, and what getting it cost.
#[derive(Clone)]
pub(crate) struct FetchedSegment {
    /// The segment (partial when read by ranges).
    pub(crate) segment: Arc<Segment>,
    /// Found in the cache.
    pub(crate) cache_hit: bool,
    /// Bytes fetched from the store.
    pub(crate) bytes: u64,
    /// Microseconds spent getting it.
    pub(crate) fetch_us: u64,
    /// GET requests made.
    pub(crate) gets: u64,
}

impl FetchedSegment {
    /// A segment found in the cache.
    fn cached(segment: Arc<Segment>) -> FetchedSegment {
        FetchedSegment {
            segment,
            cache_hit: true,
            bytes: 0,
            fetch_us: 0,
            gets: 0,
        }
    }

    /// The same segment for a second query of a request: its fetch was counted for the
    /// first, so this one counts a cache hit.
    pub(crate) fn reused(&self) -> FetchedSegment {
        FetchedSegment::cached(self.segment.clone())
    }
}

/// A segment as the worker got it, or why it could not be had.
pub(crate) type Got = Result<FetchedSegment, String>;

/// A segment read by ranges is fetched whole instead once what it would hold after a
/// fetch passes this fraction of the object: the rest costs little more than the ranges,
/// in one request, and later queries find it all.
const WHOLE_FRACTION: f64 = 0.5;

/// What a segment still needs for one stage of a query: lists to scan, rows whose
/// vectors are read.
pub(crate) struct Need {
    pub(crate) segment: usize,
    pub(crate) lists: Vec<usize>,
    pub(crate) rows: Vec<usize>,
}

/// Deletion sets a worker keeps decoded (a bitmap of a segment's rows each; the
/// oldest are dropped all at once beyond this).
const DELETES_KEPT: usize = 4096;

/// Each segment's deleted rows, as [`Worker::dead_rows`] found them.
pub(crate) type Dead = Vec<Option<Arc<DeadRows>>>;

impl Worker {
    fn reads_ranges(&self) -> bool {
        self.ranges == RangeReads::On
    }

    /// Verifies fetched bytes against the manifest's size and checksum, opens the segment
    /// over them and caches it. A mapped file is charged to the cache only for what the
    /// segment decodes onto the heap: its pages are the operating system's to keep or drop.
    fn admit(&self, r: &SegmentRef, blob: Blob) -> Result<Arc<Segment>, String> {
        let bytes = &blob.bytes[..];
        if bytes.len() as u64 != r.bytes {
            return Err(format!(
                "segment '{}' is {} bytes, the manifest says {}",
                r.key,
                bytes.len(),
                r.bytes
            ));
        }
        let sum = Naming::checksum(bytes);
        if sum != r.checksum {
            return Err(format!(
                "segment '{}' checksum {sum} does not match the manifest's {}",
                r.key, r.checksum
            ));
        }
        let seg = Segment::decode_verified(&r.key, blob.bytes.clone()).map_err(|e| e.to_string())?;
        check_partition(r, &seg)?;
        let seg = Arc::new(seg);
        let charge = seg.decoded_bytes() + if blob.mapped { 0 } else { r.bytes };
        self.cache.insert(&r.key, seg.clone(), charge);
        Ok(seg)
    }

    /// Caches a segment read by ranges, charged for what it holds.
    fn admit_partial(&self, r: &SegmentRef, seg: Segment) -> Arc<Segment> {
        let seg = Arc::new(seg);
        self.cache
            .insert(&r.key, seg.clone(), seg.decoded_bytes() + seg.resident_bytes());
        seg
    }

    /// Gets every requested segment: cache hits first, then all misses fetched together
    /// (concurrently on stores with latency) and decoded in parallel. Read by ranges
    /// (see [`RangeReads`]), a missed segment's parameters are fetched first, then the
    /// lists the request scans (and, without a filter, the vectors of the scan's reach
    /// sample), all segments' ranges together.
    pub(crate) fn segments(&self, refs: &[SegmentRef], every_row: bool) -> Vec<Got> {
        let mut out: Vec<Option<Got>> = refs
            .iter()
            .map(|r| self.cache.get(&r.key).map(|s| Ok(FetchedSegment::cached(s))))
            .collect();
        let ranged = self.reads_ranges();
        let missing: Vec<usize> = (0..refs.len()).filter(|&i| out[i].is_none()).collect();
        let (heads, whole): (Vec<usize>, Vec<usize>) = missing.into_iter().partition(|&i| ranged && refs[i].head > 0);
        if !whole.is_empty() {
            let keys: Vec<&str> = whole.iter().map(|&i| refs[i].key.as_str()).collect();
            let t0 = Instant::now();
            let fetched = self.store.get_many_shared(&keys);
            // The misses are fetched together: each gets an equal share of the wall time.
            let share_us = t0.elapsed().as_micros() as u64 / whole.len() as u64;
            let decoded: Vec<Got> = whole
                .par_iter()
                .zip(fetched.into_par_iter())
                .map(|(&i, bytes)| {
                    let t1 = Instant::now();
                    let blob = bytes.map_err(|e| e.to_string())?;
                    let len = blob.bytes.len() as u64;
                    self.admit(&refs[i], blob).map(|seg| {
                        let us = share_us + t1.elapsed().as_micros() as u64;
                        FetchedSegment {
                            segment: seg,
                            cache_hit: false,
                            bytes: len,
                            fetch_us: us,
                            gets: 1,
                        }
                    })
                })
                .collect();
            for (&i, d) in whole.iter().zip(decoded) {
                out[i] = Some(d);
            }
        }
        if !heads.is_empty() {
            let asked: Vec<(&str, u64, u64)> = heads
                .iter()
                .map(|&i| (refs[i].key.as_str(), 0, refs[i].head.min(refs[i].bytes)))
                .collect();
            let t0 = Instant::now();
            let fetched = self.store.get_ranges(&asked);
            let share_us = t0.elapsed().as_micros() as u64 / heads.len() as u64;
            for (&i, got) in heads.iter().zip(fetched) {
                let r = &refs[i];
                out[i] = Some(got.map_err(|e| e.to_string()).and_then(|head| {
                    let len = head.len() as u64;
                    let seg = Segment::open_head(&r.key, &head, r.bytes).map_err(|e| e.to_string())?;
                    check_partition(r, &seg)?;
                    Ok(FetchedSegment {
                        segment: Arc::new(seg),
                        cache_hit: false,
                        bytes: len,
                        fetch_us: share_us,
                        gets: 1,
                    })
                }));
            }
        }
        let mut out: Vec<Got> = out
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err("segment was not fetched".to_string())))
            .collect();
        let needs: Vec<Need> = out
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let seg = &f.as_ref().ok()?.segment;
                if !seg.is_partial() {
                    return None;
                }
                let r = &refs[i];
                let lists: Vec<usize> = if r.lists.is_empty() {
                    (0..seg.list_count()).collect()
                } else {
                    r.lists.iter().map(|&l| l as usize).collect()
                };
                let rows = if every_row {
                    reach_rows(&list_ranges(seg, &r.lists), &[], true)
                } else {
                    Vec::new()
                };
                Some(Need {
                    segment: i,
                    lists,
                    rows,
                })
            })
            .collect();
        self.complete(refs, &mut out, needs);
        out
    }

    /// Fetches what segments read by ranges still lack for a stage of the query (all
    /// segments' ranges in one batch), or the whole object where that is nearly as
    /// cheap ([`WHOLE_FRACTION`]); replaces them in `fetched` and in the cache, adding the
    /// bytes and time to their counts. A segment whose fetch fails becomes an error.
    pub(crate) fn complete(&self, refs: &[SegmentRef], fetched: &mut [Got], needs: Vec<Need>) {
        let mut plans = Vec::new();
        let mut whole = Vec::new();
        for need in needs {
            let Ok(FetchedSegment { segment: seg, .. }) = &fetched[need.segment] else {
                continue;
            };
            let plan = seg.fetch_plan(&need.lists, &need.rows);
            if plan.is_empty() {
                continue;
            }
            let after = (seg.resident_bytes() + plan.bytes()) as f64;
            if after > WHOLE_FRACTION * refs[need.segment].bytes as f64 {
                whole.push(need.segment);
            } else {
                plans.push((need.segment, plan));
            }
        }
        if plans.is_empty() && whole.is_empty() {
            return;
        }
        let t0 = Instant::now();
        let asked: Vec<(&str, u64, u64)> = plans
            .iter()
            .flat_map(|(i, plan)| plan.ranges.iter().map(|r| (refs[*i].key.as_str(), r.start, r.end)))
            .collect();
        let mut bodies = self.store.get_ranges(&asked).into_iter();
        let keys: Vec<&str> = whole.iter().map(|&i| refs[i].key.as_str()).collect();
        let blobs = if keys.is_empty() {
            Vec::new()
        } else {
            self.store.get_many_shared(&keys)
        };
        let share_us = t0.elapsed().as_micros() as u64 / (plans.len() + whole.len()) as u64;
        for (i, plan) in &plans {
            let got: Result<Vec<Vec<u8>>, String> = bodies
                .by_ref()
                .take(plan.ranges.len())
                .map(|b| b.map_err(|e| e.to_string()))
                .collect();
            let r = &refs[*i];
            let slot = &mut fetched[*i];
            let Ok(got_so_far) = slot else {
                continue;
            };
            let seg = &got_so_far.segment;
            let result = got.and_then(|bodies| {
                let fetched_bytes: u64 = bodies.iter().map(|b| b.len() as u64).sum();
                let extended = seg.extend(&r.key, plan, &bodies).map_err(|e| e.to_string())?;
                Ok((self.admit_partial(r, extended), fetched_bytes))
            });
            let requests = plan.ranges.len() as u64;
            let before = got_so_far.clone();
            *slot = result.map(|(segment, got)| FetchedSegment {
                segment,
                bytes: before.bytes + got,
                fetch_us: before.fetch_us + share_us,
                gets: before.gets + requests,
                ..before
            });
        }
        for (&i, blob) in whole.iter().zip(blobs) {
            let r = &refs[i];
            let slot = &mut fetched[i];
            let Ok(before) = slot.clone() else { continue };
            *slot = blob.map_err(|e| e.to_string()).and_then(|blob| {
                let len = blob.bytes.len() as u64;
                self.admit(r, blob).map(|segment| FetchedSegment {
                    segment,
                    bytes: before.bytes + len,
                    fetch_us: before.fetch_us + share_us,
                    gets: before.gets + 1,
                    ..before
                })
            });
        }
    }

    /// The deleted rows of each fetched segment that has a deletion set (from this
    /// worker's map, else fetched, verified against the reference's size and checksum
    /// and decoded); a segment whose set cannot be had fails, since searching it would
    /// return deleted rows.
    pub(crate) fn dead_rows(&self, refs: &[SegmentRef], fetched: &mut [Got]) -> Dead {
        let mut out: Dead = vec![None; refs.len()];
        let mut missing: Vec<usize> = Vec::new();
        {
            let map = self.deletes.lock().unwrap_or_else(|p| p.into_inner());
            for (i, r) in refs.iter().enumerate() {
                if let (Some(d), Ok(_)) = (&r.deletes, &fetched[i]) {
                    match map.get(&d.key) {
                        Some(rows) => out[i] = Some(rows.clone()),
                        None => missing.push(i),
                    }
                }
            }
        }
        if missing.is_empty() {
            return out;
        }
        let keys: Vec<&str> = missing
            .iter()
            .filter_map(|&i| refs[i].deletes.as_ref().map(|d| d.key.as_str()))
            .collect();
        let got = self.store.get_many(&keys);
        let mut map = self.deletes.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() + missing.len() > DELETES_KEPT {
            map.clear();
        }
        for (&i, bytes) in missing.iter().zip(got) {
            let (Some(d), Ok(FetchedSegment { segment: seg, .. })) = (&refs[i].deletes, &fetched[i]) else {
                continue;
            };
            let total = seg.len();
            let decoded = bytes.map_err(|e| e.to_string()).and_then(|b| {
                let sum = Naming::checksum(&b);
                if b.len() as u64 != d.bytes || sum != d.checksum {
                    return Err(format!(
                        "deletion set '{}' is {} bytes with checksum {sum}, the manifest says {} bytes, {}",
                        d.key,
                        b.len(),
                        d.bytes,
                        d.checksum
                    ));
                }
                decode_deletes(&d.key, &b, total as u64).map_err(|e| e.to_string())
            });
            match decoded {
                Ok(rows) => {
                    let dead = Arc::new(DeadRows::new(&rows, total));
                    map.insert(d.key.clone(), dead.clone());
                    out[i] = Some(dead);
                }
                Err(e) => fetched[i] = Err(e),
            }
        }
        out
    }
}

/// Checks that a segment holds the partition the manifest says it does.
pub(crate) fn check_partition(r: &SegmentRef, seg: &Segment) -> Result<(), String> {
    if seg.meta().partition != r.partition {
        return Err(format!(
            "segment '{}' holds partition {}, expected {}",
            r.key,
            seg.meta().partition,
            r.partition
        ));
    }
    Ok(())
}

/// `got` when the segment fits the query (its dimension, the lists asked for), else why not.
pub(crate) fn check_dims(r: &SegmentRef, got: FetchedSegment, dim: usize) -> Got {
    let seg = &got.segment;
    if seg.meta().dim as usize != dim {
        return Err(format!(
            "segment '{}' has dimension {}, query has {dim}",
            r.key,
            seg.meta().dim
        ));
    }
    if let Some(l) = r.lists.iter().find(|&&l| l as usize >= seg.list_count()) {
        return Err(format!(
            "segment '{}' has {} lists, list {l} was asked for",
            r.key,
            seg.list_count()
        ));
    }
    Ok(got)
}
