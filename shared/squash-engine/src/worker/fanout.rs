//! A node of the fan-out tree: its children invoked concurrently while it searches its
//! own segments, then every query's answers merged.

use super::state::Worker;
use crate::invoker::WorkerInvoker;
use squash_api::{PartitionOutcome, QueryAnswer, WorkerHit, WorkerQuery, WorkerRequest, WorkerResponse};
use squash_core::topk::Neighbor;
use std::time::Instant;

impl Worker {
    /// Serves one node of the fan-out tree: invokes the request's children through
    /// `invoker` (concurrently) while searching its own segments, then merges. A child
    /// that fails shows up as an error outcome for every part of its subtree.
    pub fn handle_node(&self, req: &WorkerRequest, invoker: &dyn WorkerInvoker) -> WorkerResponse {
        let t0 = Instant::now();
        let mut resp = self.handle_subtree(req, invoker);
        // This node's own duration, rounded up as Lambda bills it, plus its subtree's.
        resp.billed_ms += crate::cost::billed_ms(t0.elapsed().as_micros() as u64) as u64;
        resp
    }

    fn handle_subtree(&self, req: &WorkerRequest, invoker: &dyn WorkerInvoker) -> WorkerResponse {
        if req.children.is_empty() {
            return WorkerResponse {
                answers: self.handle(req),
                invocations: 0,
                cold_workers: 0,
                billed_ms: 0,
            };
        }
        let child_requests: Vec<WorkerRequest> = req.children.iter().map(|c| req.for_node(c)).collect();
        let (own, children) = if rayon::current_thread_index().is_some() {
            // Inside the rayon pool (the in-process invoker): join cooperatively, so a
            // waiting thread keeps stealing work instead of blocking the pool.
            rayon::join(|| self.handle(req), || invoker.invoke_all(&child_requests))
        } else {
            // A plain thread (a function handler): the children wait on the network in a
            // thread of their own while this one searches.
            std::thread::scope(|s| {
                let pending = s.spawn(|| invoker.invoke_all(&child_requests));
                let own = self.handle(req);
                let children = pending
                    .join()
                    .unwrap_or_else(|_| vec![Err("child invocation panicked".to_string()); child_requests.len()]);
                (own, children)
            })
        };
        let mut answers = own;
        let mut invocations = child_requests.len() as u32;
        let mut cold_workers = 0;
        let mut billed = 0;
        for (sent, got) in child_requests.iter().zip(children) {
            match got {
                Ok(r) => {
                    answers.extend(r.answers);
                    invocations += r.invocations;
                    cold_workers += r.cold_workers;
                    billed += r.billed_ms;
                }
                Err(e) => answers.extend(sent.queries.iter().map(|q| {
                    QueryAnswer {
                        slot: q.slot,
                        hits: Vec::new(),
                        outcomes: q
                            .parts
                            .iter()
                            .map(|p| PartitionOutcome::failed(p.partition, format!("worker {}: {e}", sent.worker)))
                            .collect(),
                    }
                })),
            }
        }
        WorkerResponse {
            answers: merge_answers(answers, &req.queries),
            invocations,
            cold_workers,
            billed_ms: billed,
        }
    }
}

/// Merges the answers of a node and its children per query: each query's best `k` hits
/// (its own `k`, from `queries`), all its outcomes.
pub fn merge_answers(answers: Vec<QueryAnswer>, queries: &[WorkerQuery]) -> Vec<QueryAnswer> {
    let mut by_slot: std::collections::BTreeMap<u32, (Vec<Vec<WorkerHit>>, Vec<PartitionOutcome>)> =
        std::collections::BTreeMap::new();
    for a in answers {
        let e = by_slot.entry(a.slot).or_default();
        e.0.push(a.hits);
        e.1.extend(a.outcomes);
    }
    by_slot
        .into_iter()
        .map(|(slot, (lists, outcomes))| {
            let k = queries.iter().find(|q| q.slot == slot).map_or(0, |q| q.k as usize);
            QueryAnswer {
                slot,
                hits: merge_hits(lists, k),
                outcomes,
            }
        })
        .collect()
}

/// Merges worker hit lists into the best `k`, best first (ties by the smaller id, as
/// [`squash_core::topk::merge_topk`] orders them); a vector reported twice is kept once,
/// with its attributes.
pub fn merge_hits(lists: Vec<Vec<WorkerHit>>, k: usize) -> Vec<WorkerHit> {
    let mut all: Vec<WorkerHit> = lists.into_iter().flatten().collect();
    let key = |h: &WorkerHit| Neighbor {
        id: h.id,
        distance: h.distance,
    };
    all.sort_by(|a, b| key(a).cmp_key(&key(b)));
    let mut seen = std::collections::HashSet::with_capacity(all.len());
    all.retain(|h| seen.insert(h.id));
    all.truncate(k);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: u64, distance: f32, attr: f64) -> WorkerHit {
        WorkerHit {
            id,
            name: None,
            distance,
            attrs: vec![attr],
            elements: Vec::new(),
        }
    }

    #[test]
    fn merge_hits_orders_by_distance_then_id_and_keeps_each_vector_once() {
        let lists = vec![
            vec![hit(7, 0.5, 7.0), hit(3, 0.9, 3.0)],
            vec![hit(2, 0.5, 2.0), hit(7, 0.5, 7.0), hit(9, 0.1, 9.0)],
            vec![],
        ];
        let merged = merge_hits(lists, 3);
        let got: Vec<(u64, f32)> = merged.iter().map(|h| (h.id, h.distance)).collect();
        assert_eq!(got, vec![(9, 0.1), (2, 0.5), (7, 0.5)]);
        // Attributes travel with their own hit.
        assert!(merged.iter().all(|h| h.attrs == vec![h.id as f64]));
        assert_eq!(merge_hits(vec![vec![hit(1, 1.0, 1.0)]], 5).len(), 1);
        assert!(merge_hits(Vec::new(), 5).is_empty());
    }
}
