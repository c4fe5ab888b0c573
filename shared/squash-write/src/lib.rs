//! # squash-write
//!
//! The write path, all that a coordinator links to change an index: upserts and
//! deletes by id or by filter as delta segments and deletion sets ([`write`]), one
//! commit protocol for every change ([`commit`]), folding churned partitions ([`fold`])
//! and compaction ([`compact`]), garbage collection ([`gc`]), encoding a partition from its
//! rows ([`partition`], shared with the build), ids ([`ids`]), rows in memory ([`table`]) and
//! attribute values as users write them ([`cells`]). No input readers, no k-means, no progress bars: those are the build
//! crate's, which only the CLI links.

#![warn(missing_docs)]

pub mod cells;
pub mod commit;
pub mod compact;
mod delta;
pub mod error;
pub mod fold;
pub mod gc;
mod held;
pub mod ids;
pub mod partition;
pub mod table;
mod upsert;
pub mod write;

pub use compact::compact;
pub use error::{Result, WriteError};
pub use fold::CompactReport;
pub use ids::Ids;
pub use table::{Attributes, Matrix};
pub use write::{Delete, Upsert, WriteReport, Writer};
