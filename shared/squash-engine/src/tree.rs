//! The fan-out tree: how a coordinator spreads a query's worker groups over at most
//! `branching` children per node and `depth` levels, keeping each group with the worker
//! that owns it (so its warm cache is used) as long as the tree has room.

use squash_api::{SegmentRef, TreeNode};

/// Shape of the fan-out: `workers` logical workers (W), each node invoking at most
/// `branching` children (b), at most `depth` levels below the coordinator (l).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fanout {
    /// Logical workers W; partitions are assigned to them by rendezvous hashing.
    pub workers: usize,
    /// Children per node, b (SQUASH's default 4).
    pub branching: usize,
    /// Levels below the coordinator, l (SQUASH's default 3).
    pub depth: usize,
}

impl Default for Fanout {
    fn default() -> Fanout {
        Fanout {
            workers: 1,
            branching: 4,
            depth: 3,
        }
    }
}

impl Fanout {
    /// Checks the shape, naming the setting that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.workers == 0 || self.workers > 4096 {
            return Err(format!("workers must be between 1 and 4096, got {}", self.workers));
        }
        if self.branching == 0 || self.branching > 64 {
            return Err(format!("branching must be between 1 and 64, got {}", self.branching));
        }
        if self.depth == 0 || self.depth > 8 {
            return Err(format!("depth must be between 1 and 8, got {}", self.depth));
        }
        Ok(())
    }

    /// Nodes a tree of this shape can hold below the coordinator: b + b² + … + bˡ.
    pub fn capacity(&self) -> usize {
        self.branching
            .saturating_mul(subtree_capacity(self.branching, self.depth))
    }
}

/// Nodes a subtree rooted at one node with `depth` levels can hold.
fn subtree_capacity(branching: usize, depth: usize) -> usize {
    if depth == 0 {
        return 0;
    }
    1usize.saturating_add(branching.saturating_mul(subtree_capacity(branching, depth - 1)))
}

/// Builds the coordinator's children from `(worker, segments)` groups (empty groups are
/// dropped, groups are taken in worker order). When there are more groups than the tree
/// holds, a leaf takes the groups that do not fit and searches them itself.
pub fn build_tree(mut groups: Vec<(u32, Vec<SegmentRef>)>, fanout: Fanout) -> Vec<TreeNode> {
    groups.retain(|(_, segs)| !segs.is_empty());
    groups.sort_by_key(|(w, _)| *w);
    level(groups, fanout.branching.max(1), fanout.depth.max(1))
}

/// At most `branching` subtrees of at most `depth` levels holding every group.
fn level(groups: Vec<(u32, Vec<SegmentRef>)>, branching: usize, depth: usize) -> Vec<TreeNode> {
    let n = groups.len();
    if n == 0 {
        return Vec::new();
    }
    let chunks = branching.min(n);
    let mut out = Vec::with_capacity(chunks);
    let mut rest = groups.into_iter();
    for c in 0..chunks {
        // Near-equal contiguous chunks: the first n % chunks get one more.
        let size = n / chunks + usize::from(c < n % chunks);
        let mut chunk: Vec<(u32, Vec<SegmentRef>)> = rest.by_ref().take(size).collect();
        let (worker, segments) = chunk.remove(0);
        let mut node = TreeNode {
            worker,
            segments,
            children: Vec::new(),
        };
        if depth == 1 {
            for (_, segs) in chunk {
                node.segments.extend(segs);
            }
        } else {
            node.children = level(chunk, branching, depth - 1);
        }
        out.push(node);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg(p: u32) -> SegmentRef {
        SegmentRef {
            partition: p,
            key: format!("p{p}"),
            bytes: 1,
            checksum: String::new(),
            lists: Vec::new(),
            head: 0,
            deletes: None,
        }
    }

    fn groups(n: u32) -> Vec<(u32, Vec<SegmentRef>)> {
        (0..n).map(|w| (w, vec![seg(2 * w), seg(2 * w + 1)])).collect()
    }

    fn check(nodes: &[TreeNode], f: Fanout, level: usize) {
        assert!(nodes.len() <= f.branching);
        for n in nodes {
            assert!(level <= f.depth);
            check(&n.children, f, level + 1);
        }
    }

    #[test]
    fn capacity_is_the_geometric_sum() {
        let f = Fanout {
            workers: 1,
            branching: 4,
            depth: 3,
        };
        assert_eq!(f.capacity(), 4 + 16 + 64);
        assert_eq!(Fanout { branching: 1, ..f }.capacity(), 3);
    }

    #[test]
    fn few_groups_are_direct_children() {
        let f = Fanout {
            workers: 3,
            branching: 4,
            depth: 3,
        };
        let t = build_tree(groups(3), f);
        assert_eq!(t.len(), 3);
        assert!(t.iter().all(|n| n.children.is_empty() && n.segments.len() == 2));
    }

    proptest! {
        #[test]
        fn every_segment_once_within_shape_and_owned_when_room(
            n in 0u32..200, b in 1usize..6, l in 1usize..4, empty in 0u32..5,
        ) {
            let f = Fanout { workers: n as usize, branching: b, depth: l };
            let mut g = groups(n);
            for w in 0..empty.min(n) {
                g[w as usize].1.clear();
            }
            let nonempty = g.iter().filter(|(_, s)| !s.is_empty()).count();
            let tree = build_tree(g.clone(), f);
            check(&tree, f, 1);
            let mut seen: Vec<u32> = tree.iter().flat_map(|t| t.all_segments()).map(|s| s.partition).collect();
            seen.sort_unstable();
            let mut want: Vec<u32> = g.iter().flat_map(|(_, s)| s.iter().map(|s| s.partition)).collect();
            want.sort_unstable();
            prop_assert_eq!(seen, want);
            let nodes: usize = tree.iter().map(TreeNode::node_count).sum();
            if nonempty <= f.capacity() {
                // Every group has its own node, served by its owner.
                prop_assert_eq!(nodes, nonempty);
                fn owned(t: &TreeNode) -> bool {
                    t.segments.iter().all(|s| s.partition / 2 == t.worker) && t.children.iter().all(owned)
                }
                prop_assert!(tree.iter().all(owned));
            } else {
                prop_assert_eq!(nodes, f.capacity());
            }
        }
    }
}
