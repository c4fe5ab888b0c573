//! # squash-search
//!
//! Everything above the pure core: the build pipeline (`build`), input readers (`io`),
//! balanced k-means (`kmeans`), the planner (`plan`), the worker pipeline (`worker`), the
//! [`invoker::WorkerInvoker`] trait with its in-process implementation, the coordinator
//! ([`search::Index`]), exact ground truth, the SQUASH workload generator and the
//! query benchmark, the synthetic dataset generator (`synth`) and the cost model (`cost`).

#![warn(missing_docs)]

pub mod bench;
pub mod build;
pub mod cache;
pub mod cost;
pub mod error;
pub mod groundtruth;
pub mod invoker;
pub mod io;
pub mod kmeans;
pub mod plan;
pub mod progress;
pub mod search;
pub mod synth;
pub mod tree;
pub mod worker;
pub mod workload;

pub use error::{Result, SearchError};
