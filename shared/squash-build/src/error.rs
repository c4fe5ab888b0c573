//! Errors of the index build and its input readers.

use squash_core::CoreError;
use squash_storage::StorageError;
use thiserror::Error;

/// Everything a build (or reading its inputs) can report.
// Variant fields are described by the variant docs and messages.
#[allow(missing_docs)]
#[derive(Debug, Error)]
pub enum BuildError {
    /// A build setting is invalid; `field` names it (`partitions`, `attr-names`).
    #[error("invalid '{field}': {message}")]
    Invalid { field: String, message: String },
    /// An input file could not be used.
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    /// The core rejected the data (a bad vector, an unknown metric).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The object store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl BuildError {
    /// Shorthand for [`BuildError::Invalid`].
    pub fn bad(field: &str, message: impl Into<String>) -> Self {
        BuildError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// Shorthand for [`BuildError::Input`].
    pub fn input(path: impl std::fmt::Display, message: impl Into<String>) -> Self {
        BuildError::Input {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

impl From<squash_write::WriteError> for BuildError {
    fn from(e: squash_write::WriteError) -> Self {
        match e {
            squash_write::WriteError::Invalid { field, message } => BuildError::Invalid { field, message },
            squash_write::WriteError::Core(e) => BuildError::Core(e),
            squash_write::WriteError::Storage(e) => BuildError::Storage(e),
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, BuildError>;
