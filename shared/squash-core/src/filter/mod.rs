//! Filters: a JSON predicate language in the style of MongoDB and Amazon S3 Vectors,
//! parsed once against the index schema into a typed [`Expr`].
//!
//! ```json
//! {"price": {"$lt": 20}, "category": {"$in": ["books", "toys"]},
//!  "$or": [{"year": {"$gte": 2020}}, {"stock": {"$exists": false}}]}
//! ```
//! Operators: `$eq $ne $gt $gte $lt $lte $in $nin $exists $and $or`, and on list
//! attributes `$contains $containsAny $containsAll`. A bare value means `$eq`; several
//! keys in one object are joined by AND. Missing values match `$ne`, `$nin` and
//! `$exists: false` and nothing else (MongoDB semantics).
//!
//! On a list attribute a comparison asks whether some element matches (`$eq` = some
//! element equals, `$in` = some element is in the list, `$gt` = some element is
//! greater, as Amazon S3 Vectors and MongoDB do); `$ne` and `$nin` are their negations
//! (no element equals / is in the list). `$contains x` is `$eq x`, `$containsAny` is
//! `$in`, `$containsAll [x, y]` is `$eq x` and `$eq y`. An empty list is present and
//! has no element.
//!
//! Evaluation is three-valued on attribute codes (no / maybe / yes per code cell, which
//! never says "no" to a matching value) and exact on the stored values.

mod estimate;
mod expr;
mod parse;

pub use estimate::PresenceEstimator;
pub use expr::*;
