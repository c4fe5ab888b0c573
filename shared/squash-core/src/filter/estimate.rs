//! Estimating how many rows of a fine list match a filter, from the list's code-presence
//! bitmaps and the build's element statistics (what the planner ranks lists by).

use super::expr::*;
use crate::attrs::{AttrCells, Schema};
use crate::summary::ListCodeCounts;
use crate::values::ValuePostings;

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
        /// With per-list code counts: the share of the rows holding a possible code
        /// that match (the build-time share over the share of all rows whose code is
        /// possible), applied to each list's rows holding a possible code.
        given_possible: Option<f64>,
    },
    /// `$eq` / `$in` on a value-indexed attribute: the rows of the named values in each
    /// list holding some (lists ascending), exact from the postings.
    Postings(Vec<(u32, u32)>),
    And(Vec<PresenceNode>),
    Or(Vec<PresenceNode>),
}

impl PresenceNode {
    fn fraction(&self, list: usize, list_rows: f64, presence: &[u64], counts: Option<&Counted>) -> f64 {
        match self {
            PresenceNode::Postings(rows) => match rows.binary_search_by_key(&(list as u32), |r| r.0) {
                Ok(i) if list_rows > 0.0 => (rows[i].1 as f64 / list_rows).min(1.0),
                _ => 0.0,
            },
            PresenceNode::Leaf { attr, yes, maybe } => {
                let Some(present) = presence.get(attr * 4..attr * 4 + 4) else {
                    return 1.0;
                };
                // Code by code where codes are values; in buckets of value ranges only
                // where the list misses some values (elsewhere the present codes
                // already say as much, at a fraction of the cost).
                if let Some(c) = counts {
                    let width = c.counts.width(*attr);
                    if width <= 1 || present[3] >> 63 != 0 {
                        return counted_fraction(present, yes, maybe, list_rows, width, || {
                            c.counts.attr_counts(c.list, presence, *attr)
                        });
                    }
                }
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
            PresenceNode::ListLeaf {
                attr,
                possible,
                share,
                given_possible,
            } => {
                let Some(present) = presence.get(attr * 4..attr * 4 + 4) else {
                    return 1.0;
                };
                if let (Some(c), Some(g)) = (counts, given_possible) {
                    // List attributes are counted code by code.
                    return g * counted_fraction(present, possible, &[0; 4], list_rows, 1, || {
                        c.counts.attr_counts(c.list, presence, *attr)
                    });
                }
                if (0..4).any(|w| present[w] & possible[w] != 0) {
                    *share
                } else {
                    0.0
                }
            }
            PresenceNode::And(children) => {
                let mut product = 1.0;
                for c in children {
                    product *= c.fraction(list, list_rows, presence, counts);
                    if product <= 0.0 {
                        break;
                    }
                }
                product
            }
            PresenceNode::Or(children) => {
                1.0 - children
                    .iter()
                    .map(|c| 1.0 - c.fraction(list, list_rows, presence, counts))
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
        self.node.fraction(0, 0.0, presence, None)
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
        self.node.fraction(list, list_rows, presence, None)
    }

    /// [`PresenceEstimator::fraction_of_list`] counted from the list's code counts
    /// `counts` (of the index the estimator was made for): a code's rows are its
    /// bucket's rows spread evenly over the bucket's present codes, a code the filter
    /// may or may not match counts half. Without counts, as `fraction_of_list`.
    pub fn fraction_counted(
        &self,
        list: usize,
        list_rows: f64,
        presence: &[u64],
        counts: Option<&ListCodeCounts>,
    ) -> f64 {
        let counted = counts
            .filter(|c| c.lists() > list)
            .map(|counts| Counted { counts, list });
        self.node.fraction(list, list_rows, presence, counted.as_ref())
    }
}

/// The index's code counts and the list being estimated.
struct Counted<'a> {
    counts: &'a ListCodeCounts,
    list: usize,
}

/// The matching share of one attribute's rows in a list of `rows` rows: `present` its
/// presence bitmap, `yes` / `maybe` the codes a filter certainly / possibly matches,
/// `counts` the counts of its present `buckets` of `width` codes (fetched only when
/// the presence bitmap does not decide).
fn counted_fraction<'c>(
    present: &[u64],
    yes: &[u64; 4],
    maybe: &[u64; 4],
    rows: f64,
    width: usize,
    counts: impl FnOnce() -> (&'c [u16], [u64; 4]),
) -> f64 {
    let hit: [u64; 4] = std::array::from_fn(|w| present[w] & (yes[w] | maybe[w]));
    if hit.iter().all(|&w| w == 0) {
        return 0.0;
    }
    if (0..4).all(|w| present[w] & !yes[w] == 0) {
        return 1.0;
    }
    let (counts, buckets) = counts();
    let total = if rows > 0.0 {
        rows
    } else {
        counts.iter().map(|&x| f64::from(x)).sum()
    };
    if total <= 0.0 {
        return 0.0;
    }
    let count = |b: usize| {
        counts
            .get(crate::summary::rank(&buckets, b))
            .map_or(0.0, |&x| f64::from(x))
    };
    let mut sum = 0.0;
    if width <= 1 {
        for (w, &word) in hit.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                let weight = if yes[w] & (1 << bit) != 0 { 1.0 } else { 0.5 };
                sum += weight * count(w * 64 + bit);
                bits &= bits - 1;
            }
        }
    } else {
        // Only the buckets holding a code that may match; bucket `b < 16` is lane
        // `b % 4` of word `b / 4`, bucket 16 the missing code (bit 63 of word 3).
        let present_b = buckets[0];
        let mut bits = crate::summary::present_buckets(&hit, width)[0];
        while bits != 0 {
            let b = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let c = counts
                .get((present_b & ((1u64 << b) - 1)).count_ones() as usize)
                .map_or(0.0, |&x| f64::from(x));
            let (p, y, m) = if b >= 16 {
                (present[3] >> 63, yes[3] >> 63, maybe[3] >> 63)
            } else {
                let (w, sh) = (b / 4, 16 * (b % 4));
                let mut p = (present[w] >> sh) & 0xFFFF;
                if b == 15 {
                    p &= 0x7FFF;
                }
                (p, (yes[w] >> sh) & p, (maybe[w] >> sh) & p)
            };
            let (n, yes_n) = (p.count_ones(), y.count_ones());
            if yes_n == n {
                sum += c;
            } else if n > 0 {
                let maybe_n = (m & !y).count_ones();
                sum += c * (f64::from(yes_n) + 0.5 * f64::from(maybe_n)) / f64::from(n);
            }
        }
    }
    (sum / total).min(1.0)
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
        self.presence_estimator_counted(cells, schema, values, None)
    }

    /// [`Expr::presence_estimator_with`] for an index with per-list code counts
    /// `counts` (pass the same to [`PresenceEstimator::fraction_counted`]).
    pub fn presence_estimator_counted(
        &self,
        cells: &[AttrCells],
        schema: &Schema,
        values: &[Option<std::sync::Arc<ValuePostings>>],
        counts: Option<&ListCodeCounts>,
    ) -> PresenceEstimator {
        fn node(
            e: &Expr,
            cells: &[AttrCells],
            schema: &Schema,
            values: &[Option<std::sync::Arc<ValuePostings>>],
            counts: Option<&ListCodeCounts>,
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
                        let share = list_share(pred, stats).max(floor);
                        // Rows over the whole index whose code is possible.
                        let given_possible = counts.filter(|c| c.rows() > 0).map(|c| {
                            let possible_rows: u64 = (0..256)
                                .filter(|&b| possible[b / 64] & (1 << (b % 64)) != 0)
                                .map(|b| c.total(a, b))
                                .sum();
                            if possible_rows == 0 {
                                0.0
                            } else {
                                (share * c.rows() as f64 / possible_rows as f64).min(1.0)
                            }
                        });
                        return PresenceNode::ListLeaf {
                            attr: a,
                            possible,
                            share,
                            given_possible,
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
                Expr::And(children) => PresenceNode::And(merge(
                    children.iter().map(|c| node(c, cells, schema, values, counts)),
                    true,
                )),
                Expr::Or(children) => PresenceNode::Or(merge(
                    children.iter().map(|c| node(c, cells, schema, values, counts)),
                    false,
                )),
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
            node: node(self, cells, schema, values, counts),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::AttrSpec;
    use crate::summary::PRESENCE_WORDS;
    use crate::summary::{bucket_widths, list_counts};
    use serde_json::json;

    /// Lists of skewed rows: a numeric `pop` that most rows miss and a list holds in one
    /// narrow range, a discrete numeric `label` concentrated in a few lists, a
    /// categorical `color`, and a continuous `price`.
    #[allow(clippy::type_complexity)]
    fn skewed() -> (Schema, Vec<AttrCells>, Vec<Vec<Vec<f64>>>) {
        let schema = Schema {
            attrs: vec![
                AttrSpec::numeric("pop"),
                AttrSpec::numeric("label"),
                AttrSpec::categorical("color", vec!["blue".into(), "green".into(), "red".into()]),
                AttrSpec::numeric("price"),
            ],
        };
        let mut lists = Vec::new();
        let mut seed = 7u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % 1000
        };
        for l in 0..12u64 {
            let rows = 200 + 50 * l as usize;
            let mut cols = vec![Vec::new(); 4];
            for i in 0..rows {
                let r = next();
                // Popular in lists 0-2 (most rows), rare elsewhere.
                let popular = if l < 3 { r < 800 } else { r < 20 };
                cols[0].push(if popular {
                    (l * 80) as f64 + next() as f64 / 20.0
                } else {
                    f64::NAN
                });
                cols[1].push(if r < 700 { (l % 4) as f64 } else { (next() % 40) as f64 });
                cols[2].push([0.0, 1.0, 2.0][(if l % 3 == 0 { r % 10 / 9 } else { r % 3 }) as usize]);
                cols[3].push((i as f64) * (l + 1) as f64 + next() as f64 / 1000.0);
            }
            lists.push(cols);
        }
        let cells = (0..4)
            .map(|a| {
                let all: Vec<f64> = lists.iter().flat_map(|l: &Vec<Vec<f64>>| l[a].clone()).collect();
                AttrCells::build(&all)
            })
            .collect();
        (schema, cells, lists)
    }

    #[test]
    fn counted_estimates_are_exact_where_codes_decide_and_close_elsewhere() {
        let (schema, cells, lists) = skewed();
        let widths = bucket_widths(&schema, &cells);
        assert_eq!(widths, [16, 1, 1, 16]);
        let codes: Vec<Vec<Vec<u8>>> = lists
            .iter()
            .map(|l| {
                (0..4)
                    .map(|a| l[a].iter().map(|&v| cells[a].encode(v)).collect())
                    .collect()
            })
            .collect();
        let presence: Vec<Vec<u64>> = codes
            .iter()
            .map(|l| {
                let mut p = vec![0u64; 4 * PRESENCE_WORDS];
                for (a, col) in l.iter().enumerate() {
                    for &c in col {
                        p[a * PRESENCE_WORDS + c as usize / 64] |= 1 << (c % 64);
                    }
                }
                p
            })
            .collect();
        let per_list: Vec<Vec<u16>> = (0..lists.len())
            .map(|l| list_counts(&widths, |a| &codes[l][a], &presence[l]))
            .collect();
        let counts = ListCodeCounts::from_counts(widths, per_list, |l| &presence[l]);
        let filters = [
            (json!({"pop": {"$exists": true}}), true),
            (json!({"pop": {"$exists": false}}), true),
            (json!({"label": 2}), true),
            (json!({"label": {"$in": [1, 3]}}), true),
            (json!({"color": "red"}), true),
            (json!({"color": {"$ne": "blue"}}), true),
            (json!({"price": {"$lt": 300}}), false),
        ];
        for (filter, exact) in filters {
            let f = Expr::parse(&filter, &schema).unwrap().unwrap();
            let counted = f.presence_estimator_counted(&cells, &schema, &[], Some(&counts));
            let guessed = f.presence_estimator(&cells, &schema);
            let (mut err_counted, mut err_guessed) = (0.0, 0.0);
            for (l, cols) in lists.iter().enumerate() {
                let rows = cols[0].len();
                let truth = (0..rows).filter(|&i| f.matches_scalars(&|a| cols[a][i])).count() as f64;
                let est = counted.fraction_counted(l, rows as f64, &presence[l], Some(&counts)) * rows as f64;
                let old = guessed.fraction_of_list(l, rows as f64, &presence[l]) * rows as f64;
                if exact {
                    assert!(
                        (est - truth).abs() < 1e-6,
                        "{filter} list {l}: counted {est}, true {truth}"
                    );
                }
                assert_eq!(est == 0.0, truth == 0.0, "{filter} list {l}: zero only without matches");
                err_counted += (est - truth).abs();
                err_guessed += (old - truth).abs();
            }
            assert!(
                err_counted <= err_guessed + 1e-6,
                "{filter}: counted off by {err_counted} rows, presence alone by {err_guessed}"
            );
        }
    }
}
