//! Errors of the benchmark tooling: reading and writing its files (the build's input
//! errors) and the searches it runs.

use squash_build::BuildError;
use squash_engine::SearchError;
use thiserror::Error;

/// Everything the benchmark tooling can report.
#[derive(Debug, Error)]
pub enum BenchError {
    /// A file could not be read or written, or a setting is invalid.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A search failed.
    #[error(transparent)]
    Search(#[from] SearchError),
}

impl From<squash_write::WriteError> for BenchError {
    fn from(e: squash_write::WriteError) -> Self {
        BenchError::Build(e.into())
    }
}

impl BenchError {
    /// An invalid setting `field` (see [`BuildError::bad`]).
    pub fn bad(field: &str, message: impl Into<String>) -> Self {
        BenchError::Build(BuildError::bad(field, message))
    }

    /// A file that could not be used (see [`BuildError::input`]).
    pub fn input(path: impl std::fmt::Display, message: impl Into<String>) -> Self {
        BenchError::Build(BuildError::input(path, message))
    }
}

impl From<squash_core::CoreError> for BenchError {
    fn from(e: squash_core::CoreError) -> Self {
        BenchError::Build(e.into())
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, BenchError>;
