//! Top-k collection and merging. Ties in distance are broken by the smaller id, so
//! every path (partition scan, tree merge, brute force) orders results identically.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One result: a vector id and its distance to the query.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Neighbor {
    /// Vector id (row number in the build input).
    pub id: u64,
    /// Distance in the index metric.
    pub distance: f32,
}

impl Neighbor {
    /// Total order: distance, then id.
    pub fn cmp_key(&self, other: &Neighbor) -> Ordering {
        self.distance.total_cmp(&other.distance).then(self.id.cmp(&other.id))
    }
}

/// A heap entry: the neighbour (which alone decides the order) and what travels with it.
#[derive(Debug, Clone)]
struct HeapItem<P>(Neighbor, P);

impl<P> PartialEq for HeapItem<P> {
    fn eq(&self, other: &Self) -> bool {
        self.0.cmp_key(&other.0) == Ordering::Equal
    }
}
impl<P> Eq for HeapItem<P> {}
impl<P> PartialOrd for HeapItem<P> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<P> Ord for HeapItem<P> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp_key(&other.0)
    }
}

/// Keeps the `k` best neighbours seen so far, each with a payload `P` that travels with
/// it (a worker keeps the segment row of each hit, so it never maps ids back to rows).
#[derive(Debug, Clone)]
pub struct TopK<P = ()> {
    k: usize,
    heap: BinaryHeap<HeapItem<P>>,
}

impl TopK<()> {
    /// An empty collector for `k` results without payload.
    pub fn new(k: usize) -> TopK<()> {
        TopK::with_payload(k)
    }

    /// Offers a neighbour; returns true if it was kept.
    pub fn push(&mut self, n: Neighbor) -> bool {
        self.offer(n, ())
    }

    /// The results, best first.
    pub fn into_sorted(self) -> Vec<Neighbor> {
        self.into_sorted_with().into_iter().map(|(n, ())| n).collect()
    }
}

impl<P> TopK<P> {
    /// An empty collector for `k` results, each with a payload.
    pub fn with_payload(k: usize) -> TopK<P> {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    /// Offers a neighbour with its payload; returns true if it was kept.
    pub fn offer(&mut self, n: Neighbor, payload: P) -> bool {
        if self.k == 0 {
            return false;
        }
        if self.heap.len() < self.k {
            self.heap.push(HeapItem(n, payload));
            return true;
        }
        let better = matches!(self.heap.peek(), Some(worst) if n.cmp_key(&worst.0) == Ordering::Less);
        if better {
            self.heap.pop();
            self.heap.push(HeapItem(n, payload));
        }
        better
    }

    /// True once `k` results are held.
    pub fn is_full(&self) -> bool {
        self.heap.len() >= self.k
    }

    /// Distance of the k-th best so far, or +inf while fewer than k are held.
    pub fn threshold(&self) -> f32 {
        if self.is_full() {
            self.heap.peek().map(|h| h.0.distance).unwrap_or(f32::INFINITY)
        } else {
            f32::INFINITY
        }
    }

    /// Number of results held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The results with their payloads, best first.
    pub fn into_sorted_with(self) -> Vec<(Neighbor, P)> {
        let mut v: Vec<(Neighbor, P)> = self.heap.into_iter().map(|h| (h.0, h.1)).collect();
        v.sort_by(|a, b| a.0.cmp_key(&b.0));
        v
    }
}

/// Merges result lists into the best `k`, best first. Duplicated ids (the same vector
/// reported twice) are kept once.
pub fn merge_topk(lists: impl IntoIterator<Item = Vec<Neighbor>>, k: usize) -> Vec<Neighbor> {
    let mut all: Vec<Neighbor> = lists.into_iter().flatten().collect();
    all.sort_by(|a, b| a.cmp_key(b));
    let mut seen = std::collections::HashSet::with_capacity(all.len());
    let mut out = Vec::with_capacity(k.min(all.len()));
    for n in all {
        if out.len() >= k {
            break;
        }
        if seen.insert(n.id) {
            out.push(n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn topk_and_merge_equal_sorting(
            dists in proptest::collection::vec(0u32..50, 0..300),
            k in 0usize..40,
            splits in 1usize..6,
        ) {
            let all: Vec<Neighbor> = dists.iter().enumerate()
                .map(|(i, &d)| Neighbor { id: i as u64, distance: d as f32 }).collect();
            let mut expected = all.clone();
            expected.sort_by(|a, b| a.cmp_key(b));
            expected.truncate(k);

            let mut top = TopK::new(k);
            for n in &all { top.push(*n); }
            prop_assert_eq!(top.into_sorted(), expected.clone());

            // The payload travels with its neighbour.
            let mut with_rows = TopK::with_payload(k);
            for (row, n) in all.iter().enumerate() { with_rows.offer(*n, row); }
            for (n, row) in with_rows.into_sorted_with() {
                prop_assert_eq!(n, all[row]);
            }

            let mut lists = vec![Vec::new(); splits];
            for (i, n) in all.iter().enumerate() { lists[i % splits].push(*n); }
            let partials: Vec<Vec<Neighbor>> = lists.into_iter().map(|l| {
                let mut t = TopK::new(k);
                for n in l { t.push(n); }
                t.into_sorted()
            }).collect();
            prop_assert_eq!(merge_topk(partials, k), expected);
        }
    }
}
