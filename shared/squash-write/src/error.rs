//! Errors of the write path.

use squash_core::CoreError;
use squash_storage::StorageError;
use thiserror::Error;

/// Everything a write, a fold or a garbage collection can report.
// Variant fields are described by the variant docs and messages.
#[allow(missing_docs)]
#[derive(Debug, Error)]
pub enum WriteError {
    /// The write is invalid; `field` names what is wrong (`vectors[3].id`, `filter`).
    #[error("invalid '{field}': {message}")]
    Invalid { field: String, message: String },
    /// The core rejected the data (a bad vector, a corrupt object).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The object store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl WriteError {
    /// Shorthand for [`WriteError::Invalid`].
    pub fn bad(field: &str, message: impl Into<String>) -> Self {
        WriteError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, WriteError>;
