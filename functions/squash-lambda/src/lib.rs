//! # squash-lambda
//!
//! What the `squash-coordinator` and `squash-worker` functions run: configuration from
//! the environment ([`config`]), what an event is and what it answers ([`events`]: API
//! Gateway HTTP API payload 2.0, function URLs, raw invokes), what a request asks ([`operation`]: one
//! typed operation parsed from HTTP or a raw invoke), the coordinator and the worker's
//! handler ([`service`]), and the aws-sdk-lambda invoker that walks the
//! fan-out tree ([`invoke`]). The binaries in `functions/coordinator` and
//! `functions/worker` only hand events to these; everything here runs and is tested
//! without the Lambda runtime.

#![warn(missing_docs)]

pub mod config;
pub mod events;
pub mod invoke;
pub mod operation;
pub mod service;

pub use config::Config;
pub use invoke::LambdaInvoker;
pub use operation::Operation;
pub use service::{Coordinator, HttpReply, WorkerService};
