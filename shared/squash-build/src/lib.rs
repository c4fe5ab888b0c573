//! # squash-build
//!
//! Building an index: reading vectors and attributes ([`io`]: `.npy`, `.fvecs`,
//! `.bvecs`, CSV, JSON lines), balanced k-means ([`kmeans`]), then per partition the
//! KLT, OSQ quantiser, sign bits and attribute codes (the write path's
//! [`squash_write::partition`]), written as segments plus one manifest ([`build`]), the
//! default search knobs measured on the data ([`calibrate`]), compaction with the fine
//! lists clustered again ([`compact`]), with a progress bar on terminals
//! ([`progress`]). Only the CLI (and tools beside it) link this crate: the Lambda
//! functions link the query engine and the write path, never k-means or file readers.

#![warn(missing_docs)]

pub mod build;
pub mod calibrate;
pub mod compact;
pub mod error;
pub mod ids;
pub mod io;
pub mod kmeans;
pub mod progress;

pub use build::{build_index, build_index_with_ids, BuildParams};
pub use error::{BuildError, Result};
pub use ids::Ids;
