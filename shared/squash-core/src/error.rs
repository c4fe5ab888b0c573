//! Errors of the core crate.

use thiserror::Error;

/// Everything that can go wrong in the pure engine code.
// Variant fields are described by the variant docs and messages.
#[allow(missing_docs)]
#[derive(Debug, Error)]
pub enum CoreError {
    /// Stored bytes failed a magic, version, checksum or structure check.
    /// `object` names the object (file name or object key) that is damaged.
    #[error("corrupt object '{object}': {reason}")]
    Corrupt { object: String, reason: String },
    /// The object was written by a newer format version than this build reads.
    #[error("object '{object}' has format version {found}; this build reads versions up to {supported}")]
    UnsupportedVersion { object: String, found: u32, supported: u32 },
    /// The object was written by an older squash whose format this build no longer reads.
    #[error("object '{object}' has format version {found}: it was built by an older squash; rebuild the index with `squash build`")]
    OutdatedVersion { object: String, found: u32 },
    /// A filter could not be parsed or does not fit the index schema.
    /// `field` is a dotted path into the request, such as `filter.price.$lt`.
    #[error("invalid filter at '{field}': {message}")]
    Filter { field: String, message: String },
    /// Caller supplied data that cannot be used (wrong dimension, NaN, ...).
    #[error("invalid input '{field}': {message}")]
    Invalid { field: String, message: String },
}

impl CoreError {
    /// Shorthand for [`CoreError::Corrupt`].
    pub fn corrupt(object: &str, reason: impl Into<String>) -> Self {
        CoreError::Corrupt {
            object: object.to_string(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`CoreError::Invalid`].
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        CoreError::Invalid {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// Shorthand for [`CoreError::Filter`].
    pub fn filter(field: &str, message: impl Into<String>) -> Self {
        CoreError::Filter {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Result alias of the core crate.
pub type Result<T> = std::result::Result<T, CoreError>;
