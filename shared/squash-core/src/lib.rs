//! # squash-core
//!
//! The pure, synchronous heart of squash: the KLT rotation, the OSQ quantiser, sign-bit
//! codes, exact distances (simsimd), the filter language, the on-disk container with
//! its segment and manifest codecs, and top-k merging. No I/O, no async, no cloud.

#![warn(missing_docs)]

pub mod attrs;
pub mod binary;
pub mod container;
pub mod deletes;
pub mod distance;
pub mod error;
pub mod fastscan;
pub mod filter;
pub mod klt;
pub mod manifest;
pub mod naming;
pub mod osq;
pub mod segment;
pub mod summary;
pub mod topk;
pub mod values;

pub use error::{CoreError, Result};
