//! # squash-engine
//!
//! The query engine, all that a Lambda function links: the planner ([`plan`]), the
//! fan-out tree ([`tree`]), the worker pipeline ([`worker`]) with its warm segment cache
//! ([`cache`]), the [`invoker::WorkerInvoker`] trait, the in-process invoker
//! ([`in_process`]) and the coordinator ([`search::Index`]). Building indexes lives in
//! `squash-build`, benchmark tooling in `squash-bench`; neither is linked here.
//!
//! Feature `testing` adds [`testing::FaultyInvoker`], a fault-injecting invoker for
//! tests and failure drills.

#![warn(missing_docs)]

pub mod cache;
pub mod cost;
pub mod error;
pub mod in_process;
pub mod invoker;
pub mod plan;
pub mod search;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tree;
pub mod worker;

pub use error::{Result, SearchError};
