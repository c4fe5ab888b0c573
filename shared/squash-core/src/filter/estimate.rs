//! Estimating how many rows of a fine list match a filter, from the list's code-presence
//! bitmaps and the build's element statistics (what the planner ranks lists by).

use super::*;

/// Per-query estimator of how many rows of a fine list match a filter, from the list's
/// code-presence bitmaps (see [`Expr::presence_estimator`]).
#[derive(Debug, Clone)]
pub struct PresenceEstimator {
    node: PresenceNode,
}

#[derive(Debug, Clone)]
enum PresenceNode {
    Leaf {
        attr: usize,
        yes: [u64; 4],
        maybe: [u64; 4],
    },
    /// A list attribute's leaf: the build-time share of rows that match, where some
    /// present code can match at all.
    ListLeaf {
        attr: usize,
        possible: [u64; 4],
        share: f64,
    },
    /// `$eq` / `$in` on a value-indexed attribute: the rows of the named values in each
    /// list holding some (lists ascending), exact from the postings.
    Postings(Vec<(u32, u32)>),
    And(Vec<PresenceNode>),
    Or(Vec<PresenceNode>),
}

impl PresenceNode {
    fn fraction(&self, list: usize, list_rows: f64, presence: &[u64]) -> f64 {
        match self {
            PresenceNode::Postings(rows) => match rows.binary_search_by_key(&(list as u32), |r| r.0) {
                Ok(i) if list_rows > 0.0 => (rows[i].1 as f64 / list_rows).min(1.0),
                _ => 0.0,
            },
            PresenceNode::Leaf { attr, yes, maybe } => {
                let Some(present) = presence.get(attr * 4..attr * 4 + 4) else {
                    return 1.0;
                };
                let (mut total, mut y, mut m) = (0u32, 0u32, 0u32);
                for w in 0..4 {
                    total += present[w].count_ones();
                    y += (present[w] & yes[w]).count_ones();
                    m += (present[w] & maybe[w] & !yes[w]).count_ones();
                }
                if total == 0 {
                    return 0.0;
                }
                (y as f64 + 0.5 * m as f64) / total as f64
            }
            PresenceNode::ListLeaf { attr, possible, share } => {
                let Some(present) = presence.get(attr * 4..attr * 4 + 4) else {
                    return 1.0;
                };
                if (0..4).any(|w| present[w] & possible[w] != 0) {
                    *share
                } else {
                    0.0
                }
            }
            PresenceNode::And(children) => children.iter().map(|c| c.fraction(list, list_rows, presence)).product(),
            PresenceNode::Or(children) => {
                1.0 - children
                    .iter()
                    .map(|c| 1.0 - c.fraction(list, list_rows, presence))
                    .product::<f64>()
            }
        }
    }
}

impl PresenceEstimator {
    /// Estimated fraction of a list's rows that match, from its presence bitmaps
    /// (`presence[a * 4..a * 4 + 4]`: bit `c` set when some row has code `c` for
    /// attribute `a`), counting each present code as equally frequent and a "maybe" code
    /// as half a match. Exactly 0 only when no present code can match: such a list
    /// certainly holds no match.
    pub fn fraction(&self, presence: &[u64]) -> f64 {
        self.node.fraction(0, 0.0, presence)
    }

    /// Where the matches can be, exactly, when the filter is decided by postings: the
    /// `(list, rows)` of a value-indexed `$eq` / `$in` that is the whole filter or one
    /// of its top-level `$and` conditions (the one with the fewest rows), lists
    /// ascending; `None` otherwise.
    pub fn exact_lists(&self) -> Option<&[(u32, u32)]> {
        let rows = |v: &[(u32, u32)]| v.iter().map(|r| u64::from(r.1)).sum::<u64>();
        match &self.node {
            PresenceNode::Postings(v) => Some(v),
            PresenceNode::And(children) => children
                .iter()
                .filter_map(|c| match c {
                    PresenceNode::Postings(v) => Some(v.as_slice()),
                    _ => None,
                })
                .min_by_key(|v| rows(v)),
            _ => None,
        }
    }

    /// [`PresenceEstimator::fraction`] of global list `list` holding `list_rows` rows:
    /// a leaf on a value-indexed attribute counts the list's rows of the named values
    /// exactly from the attribute's postings (0 where it holds none).
    pub fn fraction_of_list(&self, list: usize, list_rows: f64, presence: &[u64]) -> f64 {
        self.node.fraction(list, list_rows, presence)
    }
}

impl Expr {
    /// The estimator of [`PresenceEstimator::fraction`] for this filter over `cells`
    /// (code verdicts are computed once per query, not once per list). A leaf on a list
    /// attribute with element statistics in `schema` is estimated at the share of rows
    /// that matched at build time (at least one row's), in every list where some
    /// present code can match.
    pub fn presence_estimator(&self, cells: &[AttrCells], schema: &Schema) -> PresenceEstimator {
        self.presence_estimator_with(cells, schema, &[])
    }

    /// [`Expr::presence_estimator`] that also counts `$eq` / `$in` on an attribute with
    /// postings in `values` (indexed by attribute) exactly, list by list.
    pub fn presence_estimator_with(
        &self,
        cells: &[AttrCells],
        schema: &Schema,
        values: &[Option<std::sync::Arc<ValuePostings>>],
    ) -> PresenceEstimator {
        fn node(
            e: &Expr,
            cells: &[AttrCells],
            schema: &Schema,
            values: &[Option<std::sync::Arc<ValuePostings>>],
        ) -> PresenceNode {
            match e {
                Expr::Leaf { attr, pred } => {
                    let a = *attr as usize;
                    let named: Option<&[f64]> = match pred {
                        Pred::Eq(x) => Some(std::slice::from_ref(x)),
                        Pred::In(xs) => Some(xs),
                        _ => None,
                    };
                    if let (Some(postings), Some(named)) = (values.get(a).and_then(|v| v.as_deref()), named) {
                        // Each named value once (an `$in` may name up to 10,000).
                        let mut codes = named.to_vec();
                        codes.sort_by(f64::total_cmp);
                        codes.dedup();
                        let mut rows: Vec<(u32, u32)> = codes.iter().flat_map(|&x| postings.get(x)).collect();
                        rows.sort_unstable();
                        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(rows.len());
                        for (l, n) in rows {
                            match merged.last_mut() {
                                Some(last) if last.0 == l => last.1 += n,
                                _ => merged.push((l, n)),
                            }
                        }
                        return PresenceNode::Postings(merged);
                    }
                    let verdicts = pred.code_verdicts(&cells[a]);
                    if let Some(stats) = schema.attrs.get(a).and_then(|s| s.elements.as_ref()) {
                        let mut possible = [0u64; 4];
                        for (c, v) in verdicts.iter().enumerate() {
                            if *v != Verdict::No {
                                possible[c / 64] |= 1 << (c % 64);
                            }
                        }
                        let floor = 1.0 / (stats.rows as f64 + 1.0);
                        return PresenceNode::ListLeaf {
                            attr: a,
                            possible,
                            share: list_share(pred, stats).max(floor),
                        };
                    }
                    let (mut yes, mut maybe) = ([0u64; 4], [0u64; 4]);
                    for (c, v) in verdicts.iter().enumerate() {
                        match v {
                            Verdict::Yes => yes[c / 64] |= 1 << (c % 64),
                            Verdict::Maybe => maybe[c / 64] |= 1 << (c % 64),
                            Verdict::No => {}
                        }
                    }
                    PresenceNode::Leaf { attr: a, yes, maybe }
                }
                Expr::And(children) => {
                    PresenceNode::And(merge(children.iter().map(|c| node(c, cells, schema, values)), true))
                }
                Expr::Or(children) => {
                    PresenceNode::Or(merge(children.iter().map(|c| node(c, cells, schema, values)), false))
                }
            }
        }
        // Leaves on the same attribute under one And (or Or) become one leaf whose code
        // verdicts are combined first: `{"price": {"$gte": 10, "$lt": 20}}` is one range,
        // not two independent conditions whose fractions multiply (which overestimates).
        fn merge(children: impl Iterator<Item = PresenceNode>, and: bool) -> Vec<PresenceNode> {
            let mut out: Vec<PresenceNode> = Vec::new();
            for child in children {
                if let PresenceNode::Leaf { attr, yes, maybe } = &child {
                    let same = out
                        .iter_mut()
                        .find(|n| matches!(n, PresenceNode::Leaf { attr: a, .. } if a == attr));
                    if let Some(PresenceNode::Leaf { yes: y0, maybe: m0, .. }) = same {
                        for w in 0..4 {
                            let (y, m) = if and {
                                let y = y0[w] & yes[w];
                                (y, (y0[w] | m0[w]) & (yes[w] | maybe[w]) & !y)
                            } else {
                                let y = y0[w] | yes[w];
                                (y, (m0[w] | maybe[w]) & !y)
                            };
                            y0[w] = y;
                            m0[w] = m;
                        }
                        continue;
                    }
                }
                out.push(child);
            }
            out
        }
        PresenceEstimator {
            node: node(self, cells, schema, values),
        }
    }
}

/// Share of rows a predicate on a list attribute matched at build time, from its
/// element statistics: rows with an element in each cell the predicate accepts (a
/// cell it accepts in part counts as the share of its distinct elements named, or half
/// for a range), summed over cells; negations are the rest.
fn list_share(pred: &Pred, stats: &crate::attrs::ElementStats) -> f64 {
    if stats.rows == 0 {
        return 1.0;
    }
    let rows = stats.rows as f64;
    let present = stats.present as f64 / rows;
    if let Pred::Exists(e) = pred {
        return if *e { present } else { 1.0 - present };
    }
    let negated = pred.list_positive();
    let positive = negated.as_ref().unwrap_or(pred);
    let cells = &stats.cells;
    let mut sum = 0.0;
    for c in 0..cells.len() {
        let (lo, hi) = (cells.min[c], cells.max[c]);
        let part = match positive.verdict_on_range(lo, hi) {
            Verdict::No => 0.0,
            Verdict::Yes => 1.0,
            Verdict::Maybe => {
                let named = match positive {
                    Pred::Eq(_) => Some(1usize),
                    Pred::In(xs) => Some(xs.iter().filter(|&&x| lo <= x && x <= hi).count()),
                    _ => None,
                };
                match (named, stats.distinct.get(c)) {
                    (Some(k), Some(&d)) if d > 0 => (k as f64 / d as f64).min(1.0),
                    _ => 0.5,
                }
            }
        };
        sum += part * stats.rows_with.get(c).copied().unwrap_or(0) as f64;
    }
    let share = (sum / rows).min(present);
    if negated.is_some() {
        1.0 - share
    } else {
        share
    }
}
