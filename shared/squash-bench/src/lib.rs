//! # squash-bench
//!
//! Benchmark and evaluation tooling, linked only by the `squash` CLI: SQUASH-style
//! workloads from a dataset ([`workload`]), synthetic Gaussian-mixture datasets
//! ([`synth`]), exact filtered ground truth ([`groundtruth`]), the query benchmark
//! ([`bench`]) with its typed result lines, the AWS cost model ([`cost`]), and the
//! `updates` benchmark's index reached through writes ([`churn`]).

#![warn(missing_docs)]

pub mod bench;
pub mod churn;
pub mod cost;
pub mod error;
pub mod groundtruth;
pub mod synth;
pub mod workload;

pub use error::{BenchError, Result};
