//! Running a request's queries over the segments of this node: each segment fetched (or
//! found in the cache) once for every query that needs it, then the queries in
//! parallel, each filtered, pruned and bounded per segment and re-ranked over all its
//! segments together.

use super::fetch::{check_dims, Dead, Got, Need};
use super::scan::{
    bound_again, keep_best, rerank, same_cells, select_rows, Bounds, PartitionParams, ScanMemo, Selected, LB_SLACK,
};
use super::state::Worker;
use rayon::prelude::*;
use squash_api::{PartitionOutcome, QueryAnswer, SegmentRef, WorkerHit, WorkerQuery, WorkerRequest};
use squash_core::deletes::DeadRows;
use squash_core::filter::CodeFilter;
use squash_core::segment::Segment;
use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Instant;

/// How much larger each round's re-rank budget is than the last when the re-rank used
/// every kept bound without its stop rule firing.
const EXPANSION: usize = 8;

/// Most rounds of a larger budget after the first (a safety limit: 8³ = 512 times the
/// re-rank factor's budget).
const MAX_EXPANSIONS: u32 = 3;

/// One segment as one query searches it: the reference (with the query's lists), the
/// segment as got (its fetch counted for the first query that used it) and its
/// deleted rows.
struct Part {
    segment: SegmentRef,
    got: Got,
    dead: Option<Arc<DeadRows>>,
}

impl Worker {
    /// Answers every query of `req` in its parts of the request's own segments (the
    /// subtrees are [`Worker::handle_node`]'s). A segment's fetch is counted for the
    /// first query (in slot order) that needs it; the others count a cache hit.
    pub fn handle(&self, req: &WorkerRequest) -> Vec<QueryAnswer> {
        // A partition's segments: its base segment and its deltas.
        let mut at: HashMap<u32, Vec<usize>> = HashMap::new();
        for (i, s) in req.segments.iter().enumerate() {
            at.entry(s.partition).or_default().push(i);
        }
        let every_row = req.queries.iter().all(|q| q.filter.is_none() && q.hamming_keep >= 1.0);
        let mut fetched = self.segments(&req.segments, every_row);
        let dead: Dead = self.dead_rows(&req.segments, &mut fetched);
        let mut first_use = vec![u32::MAX; req.segments.len()];
        for q in &req.queries {
            for part in &q.parts {
                for &i in at.get(&part.partition).into_iter().flatten() {
                    first_use[i] = first_use[i].min(q.slot);
                }
            }
        }
        req.queries
            .par_iter()
            .filter_map(|q| {
                let parts: Vec<Part> = q
                    .parts
                    .iter()
                    .flat_map(|part| at.get(&part.partition).into_iter().flatten().map(move |&i| (i, part)))
                    .map(|(i, part)| Part {
                        segment: SegmentRef {
                            lists: part.lists.clone(),
                            ..req.segments[i].clone()
                        },
                        got: match &fetched[i] {
                            Ok(f) if first_use[i] == q.slot => Ok(f.clone()),
                            Ok(f) => Ok(f.reused()),
                            Err(e) => Err(e.clone()),
                        },
                        dead: dead[i].clone(),
                    })
                    .collect();
                (!parts.is_empty()).then(|| self.search_query(q, parts))
            })
            .collect()
    }

    /// One query over its parts: filter and Hamming prune, then bounds, every segment in
    /// parallel; then the best bounds of all of them re-ranked together.
    fn search_query(&self, q: &WorkerQuery, parts: Vec<Part>) -> QueryAnswer {
        let params = PartitionParams {
            k: q.k as usize,
            rerank_factor: q.rerank_factor as usize,
            hamming_keep: q.hamming_keep,
        };
        let refs: Vec<SegmentRef> = parts.iter().map(|p| p.segment.clone()).collect();
        let mut dead = Vec::with_capacity(parts.len());
        let mut fetched: Vec<Got> = Vec::with_capacity(parts.len());
        for p in parts {
            fetched.push(p.got.and_then(|f| check_dims(&p.segment, f, q.query.len())));
            dead.push(p.dead);
        }
        // Segments of one index share their attribute cells, except delta segments whose
        // writes widened them: compile the filter once per distinct set of cells.
        let mut compiled_for: Vec<(Arc<Segment>, CodeFilter)> = Vec::new();
        if let Some(filter) = &q.filter {
            for f in fetched.iter().flatten() {
                if !compiled_for.iter().any(|(s, _)| same_cells(s, &f.segment)) {
                    compiled_for.push((f.segment.clone(), filter.compile(f.segment.attr_cells())));
                }
            }
        }
        // 1. Filter and Hamming prune, every segment in parallel.
        let selected: Vec<(Option<Selected>, u64)> = refs
            .par_iter()
            .zip(fetched.par_iter())
            .zip(dead.par_iter())
            .map(|((r, f), dead)| {
                let Ok(f) = f else { return (None, 0) };
                let t0 = Instant::now();
                let compiled = compiled_for
                    .iter()
                    .find(|(s, _)| same_cells(s, &f.segment))
                    .map(|(_, c)| c);
                let sel = select_rows(
                    &f.segment,
                    &q.query,
                    q.filter.as_ref(),
                    compiled,
                    &r.lists,
                    params,
                    dead.as_ref(),
                );
                (Some(sel), t0.elapsed().as_micros() as u64)
            })
            .collect();
        // Segments read by ranges fetch the vectors the bounds read.
        let needs: Vec<Need> = selected
            .iter()
            .enumerate()
            .filter(|(i, _)| fetched[*i].as_ref().is_ok_and(|f| f.segment.is_partial()))
            .filter_map(|(i, (sel, _))| {
                sel.as_ref().map(|sel| Need {
                    segment: i,
                    lists: Vec::new(),
                    rows: sel.vector_rows(),
                })
            })
            .collect();
        self.complete(&refs, &mut fetched, needs);
        // 2.–3. Bounds, every segment in parallel, then the pooled re-rank in bound order,
        // which stops once the next bound exceeds the k-th exact distance. Each segment
        // keeps only its best `budget` bounds and reports a floor under the rows it left
        // out: when the k-th distance is not below that floor a left-out row could still
        // beat it, so the bounds are taken again from the first round's sums (no second
        // scan), keeping every row whose bound is under the k-th distance found so far
        // (an upper bound of the true one) with a budget EXPANSION times larger, until
        // the answer is exact over the lists searched or MAX_EXPANSIONS rounds (the
        // re-rank factor is where the work starts, not what recall rests on).
        let mut scan_us = vec![0u64; refs.len()];
        for (i, (_, us)) in selected.iter().enumerate() {
            scan_us[i] = *us;
        }
        let mut params = params;
        let mut expansions = 0;
        // Rows bounded above this (squared L2) cannot enter the answer.
        let mut cutoff = f32::INFINITY;
        let metric = fetched.iter().flatten().next().map(|f| f.segment.meta().metric);
        // Each segment's first scan, kept: a later round re-reads its sums, never rescans.
        let mut memos: Vec<Option<ScanMemo>> = (0..refs.len()).map(|_| None).collect();
        let (counts, row_hits, reranked, slots, rerank_us) = loop {
            let shared_bound = AtomicU32::new(cutoff.to_bits());
            let bounded: Vec<(Bounds, u64)> = fetched
                .par_iter()
                .zip(selected.par_iter())
                .zip(memos.par_iter_mut())
                .map(|((f, (sel, _)), memo)| match (f, sel) {
                    (Ok(f), Some(sel)) => {
                        let t0 = Instant::now();
                        let b = bound_again(&f.segment, &q.query, sel, params, &shared_bound, memo);
                        (b, t0.elapsed().as_micros() as u64)
                    }
                    _ => (
                        Bounds {
                            floor: f32::INFINITY,
                            ..Bounds::default()
                        },
                        0,
                    ),
                })
                .collect();
            let mut counts = Vec::with_capacity(bounded.len());
            let mut pool = Vec::new();
            let mut floor = f32::INFINITY;
            for (i, (b, us)) in bounded.into_iter().enumerate() {
                scan_us[i] += us;
                counts.push(b.counts);
                floor = floor.min(b.floor);
                pool.extend(b.rows.into_iter().map(|(lb, r)| (lb, i as u32, r)));
            }
            // The pooled re-rank reads the best `budget` candidates' vectors.
            let cut = keep_best(&mut pool, params.budget(), |a, b| {
                a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))
            });
            floor = cut.iter().fold(floor, |f, c| f.min(c.0));
            let mut rows: Vec<Vec<usize>> = vec![Vec::new(); refs.len()];
            for &(_, s, r) in &pool {
                rows[s as usize].push(r as usize);
            }
            let needs: Vec<Need> = rows
                .into_iter()
                .enumerate()
                .filter(|(i, rows)| !rows.is_empty() && fetched[*i].as_ref().is_ok_and(|f| f.segment.is_partial()))
                .map(|(segment, rows)| Need {
                    segment,
                    lists: Vec::new(),
                    rows,
                })
                .collect();
            self.complete(&refs, &mut fetched, needs);
            let t0 = Instant::now();
            let mut segs: Vec<&Segment> = Vec::new();
            let mut slots: Vec<usize> = Vec::new();
            let mut slot_of = vec![u32::MAX; refs.len()];
            for (i, f) in fetched.iter().enumerate() {
                if let Ok(f) = f {
                    slot_of[i] = segs.len() as u32;
                    segs.push(&f.segment);
                    slots.push(i);
                }
            }
            let pool: Vec<(f32, u32, u32)> = pool
                .into_iter()
                .filter(|&(_, s, _)| slot_of[s as usize] != u32::MAX)
                .map(|(lb, s, r)| (lb, slot_of[s as usize], r))
                .collect();
            let r = rerank(&segs, pool, &q.query, q.filter.as_ref(), params, floor);
            let rerank_us = t0.elapsed().as_micros() as u64;
            if r.exact || expansions == MAX_EXPANSIONS {
                break (counts, r.hits, r.reranked, slots, rerank_us);
            }
            expansions += 1;
            params.rerank_factor = params.rerank_factor.max(1).saturating_mul(EXPANSION);
            if let (Some(metric), true) = (metric, r.kth.is_finite()) {
                cutoff = cutoff.min(metric.to_l2sq(r.kth) / (1.0 - 2.0 * LB_SLACK));
            }
        };
        let segs: Vec<&Segment> = slots
            .iter()
            .filter_map(|&i| fetched[i].as_ref().ok().map(|f| &*f.segment))
            .collect();
        let hits = row_hits;
        let hits: Vec<WorkerHit> = hits
            .into_iter()
            .map(|h| {
                let (seg, row) = (segs[h.segment as usize], h.row as usize);
                let columns = if q.with_attributes {
                    0..seg.meta().attrs as usize
                } else {
                    0..0
                };
                WorkerHit {
                    id: h.id,
                    name: seg.name(row).map(str::to_string),
                    distance: h.distance,
                    attrs: columns.clone().map(|a| seg.attr_column(a)[row]).collect(),
                    elements: columns
                        .filter(|&a| seg.attr_cells()[a].list)
                        .map(|a| seg.list_elements(a, row).to_vec())
                        .collect(),
                }
            })
            .collect();
        let mut outcomes: Vec<PartitionOutcome> = refs
            .iter()
            .zip(&fetched)
            .zip(counts)
            .enumerate()
            .map(|(i, ((r, f), counts))| match f {
                Ok(f) => PartitionOutcome {
                    partition: r.partition,
                    error: None,
                    counts,
                    cache_hit: f.cache_hit,
                    bytes_fetched: f.bytes,
                    fetch_us: f.fetch_us,
                    scan_us: scan_us[i],
                    gets: f.gets,
                },
                Err(e) => PartitionOutcome {
                    scan_us: scan_us[i],
                    ..PartitionOutcome::failed(r.partition, e.clone())
                },
            })
            .collect();
        // The pooled re-rank's time is shared out over the segments it covered.
        let share = rerank_us / slots.len().max(1) as u64;
        for (s, &i) in slots.iter().enumerate() {
            outcomes[i].counts.reranked = reranked[s];
            outcomes[i].scan_us += share;
        }
        QueryAnswer {
            slot: q.slot,
            hits,
            outcomes,
        }
    }
}
