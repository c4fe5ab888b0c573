//! Segment objects: everything one partition needs to answer a query on its own.
//! Section kinds and their byte layouts are documented in `docs/FORMAT.md`.
//!
//! A [`Segment`] is a view over its object's bytes: the scanned sections (blocked codes,
//! sign bits, attribute codes, exact attributes, ids, vectors) are read where they lie
//! in one buffer (a memory map for local indexes, the fetched body otherwise), and only
//! the small per-segment parameters (KLT, quantiser, cells, list offsets) are decoded.

mod cells;
mod encode;
mod ranges;
mod read;

pub use cells::{decode_cells, encode_cells};
pub use encode::{pack_blocks, SegmentParts};
pub use ranges::FetchPlan;
pub use read::*;
