//! # squash-build
//!
//! Building an index: reading vectors and attributes ([`io`]: `.npy`, `.fvecs`,
//! `.bvecs`, CSV), balanced k-means ([`kmeans`]), then per partition the KLT, OSQ
//! quantiser, sign bits and attribute codes, written as segments plus one manifest
//! ([`build`]), the default search knobs measured on the data ([`calibrate`]), with a progress bar on terminals ([`progress`]). The query engine never
//! links this crate.

#![warn(missing_docs)]

pub mod build;
pub mod calibrate;
pub mod compact;
pub mod error;
pub mod ids;
pub mod io;
pub mod kmeans;
pub mod progress;
pub mod write;

pub use build::{build_index, build_index_with_ids, BuildParams};
pub use error::{BuildError, Result};
pub use ids::Ids;
pub use write::{Delete, Upsert, WriteReport, Writer};
