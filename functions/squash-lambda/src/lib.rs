//! # squash-lambda
//!
//! What the `squash-coordinator` and `squash-worker` functions run, without any Lambda
//! type: configuration from the environment ([`config`]), the coordinator's routes and
//! the worker's handler ([`service`]), and the aws-sdk-lambda invoker that walks the
//! fan-out tree ([`invoke`]). The binaries in `functions/coordinator` and
//! `functions/worker` only adapt Lambda events to these.

#![warn(missing_docs)]

pub mod config;
pub mod invoke;
pub mod service;

pub use config::Config;
pub use invoke::LambdaInvoker;
pub use service::{Coordinator, HttpReply, WorkerService};
