//! Errors of the search crate, with the HTTP status each maps to.

use squash_core::CoreError;
use squash_storage::StorageError;
use thiserror::Error;

/// Everything the build and the search can report.
// Variant fields are described by the variant docs and messages.
#[allow(missing_docs)]
#[derive(Debug, Error)]
pub enum SearchError {
    /// The caller's request is invalid; `field` names the offending field.
    #[error("invalid '{field}': {message}")]
    BadRequest { field: String, message: String },
    /// The index (or another named thing) does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// An input file could not be used.
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    /// A partition could not be searched.
    #[error("partition {partition} failed: {message}")]
    Worker { partition: u32, message: String },
    /// Stored data is damaged or of an unknown version.
    #[error(transparent)]
    Core(CoreError),
    /// The object store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<CoreError> for SearchError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Filter { field, message } | CoreError::Invalid { field, message } => {
                SearchError::BadRequest { field, message }
            }
            other => SearchError::Core(other),
        }
    }
}

impl SearchError {
    /// Shorthand for [`SearchError::BadRequest`].
    pub fn bad(field: &str, message: impl Into<String>) -> Self {
        SearchError::BadRequest {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// Shorthand for [`SearchError::Input`].
    pub fn input(path: impl std::fmt::Display, message: impl Into<String>) -> Self {
        SearchError::Input {
            path: path.to_string(),
            message: message.into(),
        }
    }

    /// HTTP status this error maps to.
    pub fn status(&self) -> u16 {
        match self {
            SearchError::BadRequest { .. } | SearchError::Input { .. } => 400,
            SearchError::NotFound { .. } | SearchError::Storage(StorageError::NotFound { .. }) => 404,
            SearchError::Storage(StorageError::InvalidKey { .. }) => 400,
            // An upstream (worker or store) that failed after retries, not our own bug.
            SearchError::Worker { .. } => 502,
            SearchError::Storage(StorageError::Remote { .. }) => 503,
            _ => 500,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SearchError::BadRequest { .. } => "bad_request",
            SearchError::NotFound { .. } | SearchError::Storage(StorageError::NotFound { .. }) => "not_found",
            SearchError::Input { .. } => "bad_input",
            SearchError::Worker { .. } => "worker_failed",
            SearchError::Core(CoreError::UnsupportedVersion { .. }) => "unsupported_version",
            SearchError::Core(_) => "corrupt_data",
            SearchError::Storage(StorageError::InvalidKey { .. }) => "bad_request",
            SearchError::Storage(_) => "storage_error",
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, SearchError>;
