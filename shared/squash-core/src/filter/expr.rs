//! The typed filter: predicates, their exact and three-valued evaluation, and the
//! code filters the scan runs.

use crate::attrs::{AttrCells, AttrValue, CODES, MISSING_CODE};
use serde::{Deserialize, Serialize};

/// Deepest nesting of `$and` / `$or` accepted.
pub const MAX_DEPTH: usize = 32;
/// Most values accepted in one `$in` / `$nin` list.
pub const MAX_IN_VALUES: usize = 10_000;
/// Most leaf predicates in one filter.
pub const MAX_LEAVES: usize = 1_000;

/// Value of a categorical string the dictionary does not know: equal to nothing.
pub(super) const UNKNOWN_CATEGORY: f64 = -1.0;

/// A predicate on one attribute value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Pred {
    /// value == x
    Eq(f64),
    /// value != x (also true when missing)
    Ne(f64),
    /// value < x
    Lt(f64),
    /// value <= x
    Lte(f64),
    /// value > x
    Gt(f64),
    /// value >= x
    Gte(f64),
    /// value is one of the list
    In(Vec<f64>),
    /// value is none of the list (also true when missing)
    Nin(Vec<f64>),
    /// value is present (true) or missing (false)
    Exists(bool),
}

impl Pred {
    /// Exact evaluation on a stored value (`NaN` = missing).
    pub fn matches(&self, v: f64) -> bool {
        if v.is_nan() {
            return matches!(self, Pred::Ne(_) | Pred::Nin(_) | Pred::Exists(false));
        }
        match self {
            Pred::Eq(x) => v == *x,
            Pred::Ne(x) => v != *x,
            Pred::Lt(x) => v < *x,
            Pred::Lte(x) => v <= *x,
            Pred::Gt(x) => v > *x,
            Pred::Gte(x) => v >= *x,
            Pred::In(xs) => xs.contains(&v),
            Pred::Nin(xs) => !xs.contains(&v),
            Pred::Exists(e) => *e,
        }
    }

    /// Verdict for every value in `[lo, hi]`: `Yes` if all match, `No` if none can.
    pub(super) fn verdict_on_range(&self, lo: f64, hi: f64) -> Verdict {
        let eq = |x: f64| {
            if x < lo || x > hi {
                Verdict::No
            } else if lo == hi {
                Verdict::Yes
            } else {
                Verdict::Maybe
            }
        };
        match self {
            Pred::Eq(x) => eq(*x),
            Pred::Ne(x) => eq(*x).not(),
            Pred::Lt(x) => Verdict::range(hi < *x, lo >= *x),
            Pred::Lte(x) => Verdict::range(hi <= *x, lo > *x),
            Pred::Gt(x) => Verdict::range(lo > *x, hi <= *x),
            Pred::Gte(x) => Verdict::range(lo >= *x, hi < *x),
            Pred::In(xs) => xs.iter().fold(Verdict::No, |acc, &x| acc.or(eq(x))),
            Pred::Nin(xs) => xs.iter().fold(Verdict::No, |acc, &x| acc.or(eq(x))).not(),
            Pred::Exists(e) => {
                if *e {
                    Verdict::Yes
                } else {
                    Verdict::No
                }
            }
        }
    }

    /// Exact evaluation on a list value (`None` = missing): some element matches, or for
    /// `$ne` / `$nin` no element is excluded.
    pub fn matches_list(&self, elements: Option<&[f64]>) -> bool {
        let Some(es) = elements else {
            return self.matches(f64::NAN);
        };
        match self {
            Pred::Ne(x) => !es.contains(x),
            Pred::Nin(xs) => !es.iter().any(|e| xs.contains(e)),
            Pred::Exists(e) => *e,
            positive => es.iter().any(|&e| positive.matches(e)),
        }
    }

    /// Exact evaluation on an attribute value.
    pub fn matches_value(&self, value: AttrValue) -> bool {
        match value {
            AttrValue::Scalar(v) => self.matches(v),
            AttrValue::List(es) => self.matches_list(es),
        }
    }

    /// The positive predicate a negation on a list negates (`$ne x` = not `$eq x`).
    pub(super) fn list_positive(&self) -> Option<Pred> {
        match self {
            Pred::Ne(x) => Some(Pred::Eq(*x)),
            Pred::Nin(xs) => Some(Pred::In(xs.clone())),
            _ => None,
        }
    }

    /// Verdict per code (value cells, then the missing code); for a list attribute per
    /// bit set of element groups.
    pub fn code_verdicts(&self, cells: &AttrCells) -> [Verdict; CODES] {
        if cells.list {
            return self.list_code_verdicts(cells);
        }
        let mut out = [Verdict::No; CODES];
        for (slot, (&lo, &hi)) in out.iter_mut().zip(cells.min.iter().zip(&cells.max)) {
            *slot = self.verdict_on_range(lo, hi);
        }
        out[MISSING_CODE as usize] = if self.matches(f64::NAN) {
            Verdict::Yes
        } else {
            Verdict::No
        };
        out
    }
}

impl Pred {
    fn list_code_verdicts(&self, cells: &AttrCells) -> [Verdict; CODES] {
        let mut out = [Verdict::No; CODES];
        let codes = 1usize << cells.len();
        if let Pred::Exists(e) = self {
            let present = if *e { Verdict::Yes } else { Verdict::No };
            out[..codes].fill(present);
            out[MISSING_CODE as usize] = present.not();
            return out;
        }
        let negated = self.list_positive();
        let positive = negated.as_ref().unwrap_or(self);
        // Some element of group g matches: per group, then OR over a code's groups.
        let groups: Vec<Verdict> = cells
            .min
            .iter()
            .zip(&cells.max)
            .map(|(&lo, &hi)| positive.verdict_on_range(lo, hi))
            .collect();
        for (code, slot) in out[..codes].iter_mut().enumerate() {
            let v = groups
                .iter()
                .enumerate()
                .filter(|(g, _)| code & (1 << g) != 0)
                .fold(Verdict::No, |acc, (_, &v)| acc.or(v));
            *slot = if negated.is_some() { v.not() } else { v };
        }
        out[MISSING_CODE as usize] = if negated.is_some() { Verdict::Yes } else { Verdict::No };
        out
    }
}

/// Three-valued result of a predicate on a code cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No value in the cell matches.
    No,
    /// Some values may match: check exactly.
    Maybe,
    /// Every value in the cell matches.
    Yes,
}

impl Verdict {
    fn range(all: bool, none: bool) -> Verdict {
        if all {
            Verdict::Yes
        } else if none {
            Verdict::No
        } else {
            Verdict::Maybe
        }
    }
    fn not(self) -> Verdict {
        match self {
            Verdict::No => Verdict::Yes,
            Verdict::Yes => Verdict::No,
            Verdict::Maybe => Verdict::Maybe,
        }
    }
    fn or(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Yes, _) | (_, Verdict::Yes) => Verdict::Yes,
            (Verdict::Maybe, _) | (_, Verdict::Maybe) => Verdict::Maybe,
            _ => Verdict::No,
        }
    }
}

/// A parsed, schema-bound filter expression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    /// All children match.
    And(Vec<Expr>),
    /// At least one child matches.
    Or(Vec<Expr>),
    /// A predicate on attribute column `attr`.
    Leaf {
        /// Attribute column.
        attr: u32,
        /// The predicate.
        pred: Pred,
    },
}

/// Per-row filter verdicts of a partition, one byte per row: bit [`MASK_POSSIBLE`] set
/// when the row may match, bit [`MASK_CERTAIN`] set when it surely matches. Rows without
/// the possible bit cannot match. (Bytes rather than bits: AND/OR of whole columns
/// vectorise, and Kleene logic on (possible, certain) pairs is plain bitwise AND/OR.)
pub type CodeMask = Vec<u8>;
/// Row may match.
pub const MASK_POSSIBLE: u8 = 1;
/// Row surely matches.
pub const MASK_CERTAIN: u8 = 2;

impl Expr {
    /// Exact evaluation; `value(attr)` returns the value of column `attr`.
    pub fn matches<'a>(&self, value: &dyn Fn(usize) -> AttrValue<'a>) -> bool {
        match self {
            Expr::And(children) => children.iter().all(|c| c.matches(value)),
            Expr::Or(children) => children.iter().any(|c| c.matches(value)),
            Expr::Leaf { attr, pred } => pred.matches_value(value(*attr as usize)),
        }
    }

    /// Exact evaluation on single values only (an index without list attributes):
    /// `value(attr)` returns the stored value of column `attr`.
    pub fn matches_scalars(&self, value: &dyn Fn(usize) -> f64) -> bool {
        self.matches(&|a| AttrValue::Scalar(value(a)))
    }

    /// Exact evaluation on row `row` of column-major attribute values (`columns[a][row]`;
    /// `lists[a]` a list attribute's elements, see [`crate::attrs::attr_value`]).
    pub fn matches_row<C: AsRef<[f64]>>(
        &self,
        columns: &[C],
        lists: &[Option<crate::attrs::ListColumn>],
        row: usize,
    ) -> bool {
        self.matches(&|a| crate::attrs::attr_value(columns, lists, a, row))
    }

    /// Conservative evaluation on attribute codes: `codes[a]` is the code column of
    /// attribute `a` (`n` rows), `cells[a]` its cells. See [`CodeMask`].
    pub fn eval_codes(&self, cells: &[AttrCells], codes: &[&[u8]], n: usize) -> CodeMask {
        let mut out = vec![0u8; n];
        self.compile(cells).eval_into(codes, &mut out);
        out
    }

    /// Computes every leaf's code verdicts once, for evaluating many row ranges.
    pub fn compile(&self, cells: &[AttrCells]) -> CodeFilter {
        match self {
            Expr::Leaf { attr, pred } => {
                let a = *attr as usize;
                let verdicts = pred.code_verdicts(&cells[a]);
                let mut lut = [0u8; CODES];
                for (l, v) in lut.iter_mut().zip(verdicts.iter()) {
                    *l = match v {
                        Verdict::No => 0,
                        Verdict::Maybe => MASK_POSSIBLE,
                        Verdict::Yes => MASK_POSSIBLE | MASK_CERTAIN,
                    };
                }
                let ranges = match (code_range(&lut, MASK_POSSIBLE), code_range(&lut, MASK_CERTAIN)) {
                    (Some(possible), Some(certain)) => Some((
                        possible.map_or((0, 0, 0), |(lo, hi)| (lo, hi - lo, MASK_POSSIBLE)),
                        certain.map_or((0, 0, 0), |(lo, hi)| (lo, hi - lo, MASK_CERTAIN)),
                    )),
                    _ => None,
                };
                CodeFilter::Leaf {
                    attr: a,
                    lut: Box::new(lut),
                    ranges,
                }
            }
            Expr::And(children) => CodeFilter::And(children.iter().map(|c| c.compile(cells)).collect()),
            Expr::Or(children) => CodeFilter::Or(children.iter().map(|c| c.compile(cells)).collect()),
        }
    }
}

/// A filter compiled against an index's attribute cells (see [`Expr::compile`]): each
/// leaf's verdict per code, ready to evaluate any number of row ranges.
#[derive(Debug, Clone)]
pub enum CodeFilter {
    /// All children.
    And(Vec<CodeFilter>),
    /// Any child.
    Or(Vec<CodeFilter>),
    /// One attribute's verdict table, and its `(lo, span, bit)` code ranges when the
    /// possible and certain codes are each contiguous.
    Leaf {
        /// Attribute column.
        attr: usize,
        /// Mask bits per code.
        lut: Box<[u8; CODES]>,
        /// Contiguous code ranges of the possible and the certain bit.
        ranges: Option<(CodeRange, CodeRange)>,
    },
}

/// A contiguous run of codes that sets one mask bit: `(first code, last − first, bit)`;
/// `bit` 0 for an empty run.
pub type CodeRange = (u8, u8, u8);

impl CodeFilter {
    /// Writes the [`CodeMask`] of the rows whose codes are `codes[a]` (one slice per
    /// attribute, all at least `out.len()` long) into `out`.
    pub fn eval_into(&self, codes: &[&[u8]], out: &mut [u8]) {
        self.eval(codes, out, Combine::Set);
    }

    fn eval(&self, codes: &[&[u8]], out: &mut [u8], how: Combine) {
        let n = out.len();
        match self {
            CodeFilter::Leaf { attr, lut, ranges } => {
                let col = &codes[*attr][..n];
                if let Some(((plo, pspan, pbit), (clo, cspan, cbit))) = *ranges {
                    // Range predicates select contiguous codes: two unsigned compares per
                    // row, which the compiler turns into SIMD.
                    let verdict = |c: u8| -> u8 {
                        (((c.wrapping_sub(plo) <= pspan) as u8) * pbit)
                            | (((c.wrapping_sub(clo) <= cspan) as u8) * cbit)
                    };
                    match how {
                        Combine::Set => out.iter_mut().zip(col).for_each(|(o, &c)| *o = verdict(c)),
                        Combine::And => out.iter_mut().zip(col).for_each(|(o, &c)| *o &= verdict(c)),
                        Combine::Or => out.iter_mut().zip(col).for_each(|(o, &c)| *o |= verdict(c)),
                    }
                    return;
                }
                match how {
                    Combine::Set => out.iter_mut().zip(col).for_each(|(o, &c)| *o = lut[c as usize]),
                    Combine::And => out.iter_mut().zip(col).for_each(|(o, &c)| *o &= lut[c as usize]),
                    Combine::Or => out.iter_mut().zip(col).for_each(|(o, &c)| *o |= lut[c as usize]),
                }
            }
            CodeFilter::And(children) | CodeFilter::Or(children) => {
                let is_and = matches!(self, CodeFilter::And(_));
                // An AND into a fresh or AND-combined output needs no scratch column.
                if is_and && matches!(how, Combine::Set | Combine::And) {
                    if matches!(how, Combine::Set) {
                        out.fill(MASK_POSSIBLE | MASK_CERTAIN);
                    }
                    for child in children {
                        child.eval(codes, out, Combine::And);
                    }
                    return;
                }
                let mut scratch = vec![if is_and { MASK_POSSIBLE | MASK_CERTAIN } else { 0 }; n];
                for child in children {
                    child.eval(codes, &mut scratch, if is_and { Combine::And } else { Combine::Or });
                }
                match how {
                    Combine::Set => out.copy_from_slice(&scratch),
                    Combine::And => out.iter_mut().zip(&scratch).for_each(|(o, &s)| *o &= s),
                    Combine::Or => out.iter_mut().zip(&scratch).for_each(|(o, &s)| *o |= s),
                }
            }
        }
    }
}

/// The codes whose verdict has `bit` set, when they form one contiguous range:
/// `Some(None)` for no code, `Some(Some((lo, hi)))` for `lo..=hi`, `None` otherwise.
fn code_range(lut: &[u8; CODES], bit: u8) -> Option<Option<(u8, u8)>> {
    let first = lut.iter().position(|&v| v & bit != 0);
    let Some(first) = first else { return Some(None) };
    let last = CODES - 1 - lut.iter().rev().position(|&v| v & bit != 0).unwrap_or(0);
    if lut[first..=last].iter().all(|&v| v & bit != 0) {
        Some(Some((first as u8, last as u8)))
    } else {
        None
    }
}

#[derive(Clone, Copy)]
enum Combine {
    Set,
    And,
    Or,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::{AttrSpec, ListColumn, Schema};
    use crate::error::CoreError;
    use proptest::prelude::*;
    use serde_json::json;
    use serde_json::Value;

    fn arb_pred() -> impl Strategy<Value = Pred> {
        let v = -5i32..25;
        prop_oneof![
            v.clone().prop_map(|x| Pred::Eq(x as f64 / 2.0)),
            v.clone().prop_map(|x| Pred::Ne(x as f64 / 2.0)),
            v.clone().prop_map(|x| Pred::Lt(x as f64 / 2.0)),
            v.clone().prop_map(|x| Pred::Lte(x as f64 / 2.0)),
            v.clone().prop_map(|x| Pred::Gt(x as f64 / 2.0)),
            v.clone().prop_map(|x| Pred::Gte(x as f64 / 2.0)),
            proptest::collection::vec(v.clone(), 1..4)
                .prop_map(|xs| Pred::In(xs.iter().map(|&x| x as f64 / 2.0).collect())),
            proptest::collection::vec(v, 1..4).prop_map(|xs| Pred::Nin(xs.iter().map(|&x| x as f64 / 2.0).collect())),
            any::<bool>().prop_map(Pred::Exists),
        ]
    }

    fn arb_expr() -> impl Strategy<Value = Expr> {
        let leaf = (0u32..2, arb_pred()).prop_map(|(attr, pred)| Expr::Leaf { attr, pred });
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 1..3).prop_map(Expr::And),
                proptest::collection::vec(inner, 1..3).prop_map(Expr::Or),
            ]
        })
    }

    /// Checks a code mask against exact evaluation (`exact(row)`): a matching row is
    /// never dropped, a non-matching one never called certain. Returns the matches.
    fn check_mask(
        mask: &[u8],
        exact: impl Fn(usize) -> std::result::Result<bool, TestCaseError>,
    ) -> std::result::Result<usize, TestCaseError> {
        let mut matches = 0;
        for (row, &m) in mask.iter().enumerate() {
            let exact = exact(row)?;
            if exact {
                matches += 1;
                prop_assert!(m & MASK_POSSIBLE != 0, "row {} matches but was dropped", row);
            }
            if m & MASK_CERTAIN != 0 {
                prop_assert!(exact, "row {} called certain but does not match", row);
            }
        }
        Ok(matches)
    }

    /// Code-presence bitmaps of code columns, all rows as one list.
    fn presence_of(codes: &[Vec<u8>]) -> Vec<u64> {
        let mut presence = vec![0u64; codes.len() * 4];
        for (a, col) in codes.iter().enumerate() {
            for &c in col {
                presence[a * 4 + c as usize / 64] |= 1 << (c % 64);
            }
        }
        presence
    }

    proptest! {
        /// Code-level evaluation never drops a matching row and never calls a
        /// non-matching row certain; the presence estimate is zero only without matches.
        #[test]
        fn codes_are_conservative(
            expr in arb_expr(),
            a in proptest::collection::vec(proptest::option::weighted(0.9, 0i32..40), 1..400),
            many_cells in any::<bool>(),
        ) {
            let n = a.len();
            // Column 0: few distinct values (exact cells) or many (shared cells);
            // column 1: derived, with its own missing values.
            let col0: Vec<f64> = a.iter().enumerate().map(|(i, v)| match v {
                Some(x) if many_cells => (*x as f64) / 2.0 + (i % 300) as f64 * 0.001,
                Some(x) => *x as f64 / 2.0,
                None => f64::NAN,
            }).collect();
            let col1: Vec<f64> = (0..n).map(|i| if i % 7 == 0 { f64::NAN } else { ((i * 13) % 31) as f64 / 2.0 - 2.0 }).collect();
            let columns = vec![col0, col1];
            let cells: Vec<AttrCells> = columns.iter().map(|c| AttrCells::build(c)).collect();
            let codes: Vec<Vec<u8>> = columns.iter().zip(&cells).map(|(c, cl)| c.iter().map(|&v| cl.encode(v)).collect()).collect();
            let code_refs: Vec<&[u8]> = codes.iter().map(|c| c.as_slice()).collect();
            let mask = expr.eval_codes(&cells, &code_refs, n);
            let matches = check_mask(&mask, |row| Ok(expr.matches_row(&columns, &[], row)))?;
            // The planner's estimate, with all rows as one list.
            let presence = presence_of(&codes);
            let est = expr.presence_estimator(&cells, &Schema::default()).fraction(&presence);
            if matches > 0 {
                prop_assert!(est > 0.0, "estimate 0 but {} rows match", matches);
            }
        }
    }

    proptest! {
        /// On list attributes too: codes never drop a matching row nor call a
        /// non-matching one certain; exact evaluation means "some element matches" (and
        /// "no element is excluded" for `$ne` / `$nin`, true on a missing list); the
        /// presence estimate is zero only without matches.
        #[test]
        fn list_codes_are_conservative(
            expr in arb_expr(),
            rows in proptest::collection::vec(
                proptest::option::weighted(0.85, proptest::collection::vec(-4i32..24, 0..5)),
                1..300,
            ),
        ) {
            // Column 0: a list attribute; column 1: single values.
            let n = rows.len();
            let mut list = ListColumn::default();
            let mut counts = Vec::with_capacity(n);
            for r in &rows {
                let es: Vec<f64> = r.iter().flatten().map(|&x| x as f64 / 2.0).collect();
                counts.push(if r.is_some() { es.len() as f64 } else { f64::NAN });
                list.push(&es);
            }
            let col1: Vec<f64> = (0..n).map(|i| if i % 7 == 0 { f64::NAN } else { ((i * 13) % 31) as f64 / 2.0 - 2.0 }).collect();
            let columns = vec![counts.clone(), col1];
            let lists = vec![Some(list.clone()), None];
            let cells = vec![AttrCells::build_list(&list.values), AttrCells::build(&columns[1])];
            let codes: Vec<Vec<u8>> = (0..2)
                .map(|a| (0..n).map(|r| cells[a].encode_value(crate::attrs::attr_value(&columns, &lists, a, r))).collect())
                .collect();
            let code_refs: Vec<&[u8]> = codes.iter().map(|c| c.as_slice()).collect();
            let mask = expr.eval_codes(&cells, &code_refs, n);
            let naive = |e: &Expr, row: usize| -> bool {
                fn go(e: &Expr, es: Option<&[f64]>, v1: f64) -> bool {
                    match e {
                        Expr::And(c) => c.iter().all(|c| go(c, es, v1)),
                        Expr::Or(c) => c.iter().any(|c| go(c, es, v1)),
                        Expr::Leaf { attr: 1, pred } => pred.matches(v1),
                        Expr::Leaf { pred, .. } => match (pred, es) {
                            (Pred::Exists(b), es) => *b == es.is_some(),
                            (Pred::Ne(_) | Pred::Nin(_), None) => true,
                            (_, None) => false,
                            (Pred::Ne(x), Some(es)) => es.iter().all(|e| e != x),
                            (Pred::Nin(xs), Some(es)) => es.iter().all(|e| !xs.contains(e)),
                            (p, Some(es)) => es.iter().any(|&e| p.matches(e)),
                        },
                    }
                }
                let es = rows[row].as_ref().map(|_| list.get(row));
                go(e, es, columns[1][row])
            };
            let matches = check_mask(&mask, |row| {
                let exact = expr.matches_row(&columns, &lists, row);
                prop_assert_eq!(exact, naive(&expr, row), "row {}", row);
                Ok(exact)
            })?;
            let presence = presence_of(&codes);
            let mut schema = Schema {
                attrs: vec![AttrSpec::numeric("l").into_list(), AttrSpec::numeric("v")],
            };
            schema.attrs[0].elements = Some(crate::attrs::ElementStats::build(&counts, &list));
            let est = expr.presence_estimator(&cells, &schema).fraction(&presence);
            if matches > 0 {
                prop_assert!(est > 0.0, "estimate 0 but {} rows match", matches);
            }
        }
    }

    #[test]
    fn list_operators_parse_and_evaluate() {
        let schema = Schema {
            attrs: vec![
                AttrSpec::categorical("tags", vec!["new".into(), "red".into(), "sale".into()]).into_list(),
                AttrSpec::numeric("price"),
            ],
        };
        let code = |t: &str| schema.attrs[0].code_of(t).unwrap();
        let (new, red, sale) = (code("new"), code("red"), code("sale"));
        let row = |tags: Option<&'static [f64]>| {
            move |a: usize| match a {
                0 => AttrValue::List(tags),
                _ => AttrValue::Scalar(5.0),
            }
        };
        let both: &'static [f64] = Box::leak(vec![red, sale].into_boxed_slice());
        let just_new: &'static [f64] = Box::leak(vec![new].into_boxed_slice());
        let cases = [
            (json!({"tags": {"$contains": "red"}}), [true, false, false, false]),
            (json!({"tags": "red"}), [true, false, false, false]),
            (
                json!({"tags": {"$containsAny": ["new", "sale"]}}),
                [true, true, false, false],
            ),
            (
                json!({"tags": {"$containsAll": ["red", "sale"]}}),
                [true, false, false, false],
            ),
            (
                json!({"tags": {"$containsAll": ["red", "new"]}}),
                [false, false, false, false],
            ),
            (json!({"tags": {"$in": ["new"]}}), [false, true, false, false]),
            (json!({"tags": {"$ne": "red"}}), [false, true, true, true]),
            (json!({"tags": {"$nin": ["red", "new"]}}), [false, false, true, true]),
            (json!({"tags": {"$exists": true}}), [true, true, true, false]),
            (json!({"tags": {"$exists": false}}), [false, false, false, true]),
            (json!({"tags": {"$contains": "unknown"}}), [false, false, false, false]),
        ];
        for (filter, want) in cases {
            let f = Expr::parse(&filter, &schema).unwrap().unwrap();
            let got = [
                f.matches(&row(Some(both))),
                f.matches(&row(Some(just_new))),
                f.matches(&row(Some(&[]))),
                f.matches(&row(None)),
            ];
            assert_eq!(got, want, "{filter}");
        }
        for (filter, field) in [
            (json!({"price": {"$contains": 3}}), "filter.price.$contains"),
            (json!({"tags": {"$containsAny": "red"}}), "filter.tags.$containsAny"),
            (json!({"tags": {"$containsAll": []}}), "filter.tags.$containsAll"),
            (json!({"tags": {"$contains": 3}}), "filter.tags.$contains"),
            (json!({"tags": ["red"]}), "filter.tags"),
            (json!({"tags": {"$contains": ["red"]}}), "filter.tags.$contains"),
            (json!({"tags": {"$lt": "red"}}), "filter.tags.$lt"),
        ] {
            let err = Expr::parse(&filter, &schema).expect_err(&filter.to_string());
            assert_eq!(field_of(err), field, "{filter}");
        }
    }

    fn schema() -> Schema {
        Schema {
            attrs: vec![
                AttrSpec::numeric("price"),
                AttrSpec::categorical("color", vec!["blue".into(), "green".into(), "red".into()]),
            ],
        }
    }

    fn field_of(err: CoreError) -> String {
        match err {
            CoreError::Filter { field, .. } => field,
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn parses_and_evaluates() {
        let s = schema();
        let f = Expr::parse(
            &json!({"price": {"$lt": 20, "$gte": 5}, "color": {"$in": ["red", "blue"]}}),
            &s,
        )
        .unwrap()
        .unwrap();
        assert!(f.matches_scalars(&|a| [10.0, 2.0][a]));
        assert!(!f.matches_scalars(&|a| [10.0, 1.0][a]));
        assert!(!f.matches_scalars(&|a| [20.0, 2.0][a]));
        assert!(!f.matches_scalars(&|a| [f64::NAN, 2.0][a]));
        let f = Expr::parse(&json!({"color": {"$ne": "red"}}), &s).unwrap().unwrap();
        assert!(f.matches_scalars(&|a| [0.0, f64::NAN][a]), "missing matches $ne");
        let f = Expr::parse(&json!({"color": "purple"}), &s).unwrap().unwrap();
        assert!(!f.matches_scalars(&|a| [0.0, 0.0][a]));
        assert_eq!(Expr::parse(&json!({}), &s).unwrap(), None);
        assert_eq!(Expr::parse(&Value::Null, &s).unwrap(), None);
    }

    #[test]
    fn a_range_on_one_attribute_is_estimated_as_one_range() {
        // 10,000 distinct prices in 255 equi-depth cells, every code present in the list.
        let prices: Vec<f64> = (0..10_000).map(|i| i as f64).collect();
        let cells = vec![AttrCells::build(&prices), AttrCells::build(&[0.0, 1.0, 2.0])];
        let mut presence = vec![0u64; 2 * 4];
        for &p in &prices {
            let c = cells[0].encode(p);
            presence[c as usize / 64] |= 1 << (c % 64);
        }
        presence[4] = 0b111;
        let s = schema();
        let f = Expr::parse(&json!({"price": {"$gte": 4_000, "$lt": 5_000}}), &s)
            .unwrap()
            .unwrap();
        let est = f.presence_estimator(&cells, &Schema::default()).fraction(&presence);
        // 10 % of the rows; two independent halves would say 0.6 × 0.5 = 30 %.
        assert!((est - 0.1).abs() < 0.01, "{est}");
        let f = Expr::parse(
            &json!({"$or": [{"price": {"$lt": 1_000}}, {"price": {"$gte": 9_000}}]}),
            &s,
        )
        .unwrap()
        .unwrap();
        let est = f.presence_estimator(&cells, &Schema::default()).fraction(&presence);
        assert!((est - 0.2).abs() < 0.01, "{est}");
    }

    #[test]
    fn errors_name_the_field() {
        let s = schema();
        let cases = [
            (json!({"size": 3}), "filter.size"),
            (json!({"price": "cheap"}), "filter.price"),
            (json!({"price": {"$in": []}}), "filter.price.$in"),
            (json!({"color": {"$lt": "red"}}), "filter.color.$lt"),
            (json!({"price": {"$foo": 1}}), "filter.price.$foo"),
            (json!({"$or": [{"price": 1}, {"nope": 2}]}), "filter.$or[1].nope"),
            (json!({"$xor": []}), "filter.$xor"),
            (json!({"price": {"$exists": 1}}), "filter.price.$exists"),
            (json!([1]), "filter"),
        ];
        for (json, field) in cases {
            let err = Expr::parse(&json, &s).expect_err(&json.to_string());
            assert_eq!(field_of(err), field, "{json}");
        }
        let mut deep = json!({"price": 1});
        for _ in 0..40 {
            deep = json!({ "$and": [deep] });
        }
        assert!(Expr::parse(&deep, &s).is_err());
    }
}
