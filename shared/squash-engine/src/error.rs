//! Errors of the query engine, with the HTTP status and code each maps to.

use squash_core::CoreError;
use squash_storage::StorageError;
use thiserror::Error;

/// Everything a search can report.
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
    /// A partition could not be searched.
    #[error("partition {partition} failed: {message}")]
    Worker { partition: u32, message: String },
    /// Stored data is damaged or of an unknown version.
    #[error(transparent)]
    Core(CoreError),
    /// The object store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The deployment does not allow this (writes turned off).
    #[error("{message}")]
    Forbidden { message: String },
    /// Our own bug or an unexpected state (e.g. an answer that does not serialise):
    /// never the caller's fault.
    #[error("internal error: {message}")]
    Internal { message: String },
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
    /// This error with a bad request's field placed under `prefix` (`k` within
    /// `queries[3]` becomes `queries[3].k`); other errors are unchanged.
    pub fn within(self, prefix: &str) -> Self {
        match self {
            SearchError::BadRequest { field, message } => SearchError::BadRequest {
                field: format!("{prefix}.{field}"),
                message,
            },
            other => other,
        }
    }

    /// Shorthand for [`SearchError::BadRequest`].
    pub fn bad(field: &str, message: impl Into<String>) -> Self {
        SearchError::BadRequest {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// Shorthand for [`SearchError::Internal`].
    pub fn internal(message: impl std::fmt::Display) -> Self {
        SearchError::Internal {
            message: message.to_string(),
        }
    }

    /// HTTP status this error maps to.
    pub fn status(&self) -> u16 {
        match self {
            SearchError::BadRequest { .. } => 400,
            SearchError::NotFound { .. } | SearchError::Storage(StorageError::NotFound { .. }) => 404,
            SearchError::Storage(StorageError::InvalidKey { .. }) => 400,
            SearchError::Forbidden { .. } => 403,
            // Other writers kept committing first.
            SearchError::Storage(StorageError::Conflict { .. }) => 409,
            SearchError::Storage(StorageError::Unsupported { .. }) => 501,
            // An upstream (worker or store) that failed after retries, not our own bug.
            SearchError::Worker { .. } => 502,
            SearchError::Storage(StorageError::Remote { .. }) => 503,
            SearchError::Internal { .. } | SearchError::Core(_) | SearchError::Storage(_) => 500,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SearchError::BadRequest { .. } => "bad_request",
            SearchError::NotFound { .. } | SearchError::Storage(StorageError::NotFound { .. }) => "not_found",
            SearchError::Worker { .. } => "worker_failed",
            SearchError::Core(CoreError::UnsupportedVersion { .. } | CoreError::OutdatedVersion { .. }) => {
                "unsupported_version"
            }
            SearchError::Core(_) => "corrupt_data",
            SearchError::Storage(StorageError::InvalidKey { .. }) => "bad_request",
            SearchError::Forbidden { .. } => "forbidden",
            SearchError::Storage(StorageError::Conflict { .. }) => "conflict",
            SearchError::Storage(StorageError::Unsupported { .. }) => "unsupported",
            SearchError::Storage(_) => "storage_error",
            SearchError::Internal { .. } => "internal",
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, SearchError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_status_and_code() {
        let cases: Vec<(SearchError, u16, &str)> = vec![
            (SearchError::bad("k", "must be at least 1"), 400, "bad_request"),
            (
                SearchError::NotFound {
                    what: "index 'x'".into(),
                },
                404,
                "not_found",
            ),
            (
                SearchError::Worker {
                    partition: 3,
                    message: "down".into(),
                },
                502,
                "worker_failed",
            ),
            (
                SearchError::Storage(StorageError::Remote {
                    store: "s3://b".into(),
                    key: "k".into(),
                    message: "503".into(),
                    transient: true,
                }),
                503,
                "storage_error",
            ),
            (SearchError::internal("key must be a string"), 500, "internal"),
            (
                SearchError::Forbidden {
                    message: "writes are off".into(),
                },
                403,
                "forbidden",
            ),
            (
                SearchError::Storage(StorageError::Conflict {
                    store: "s3://b".into(),
                    key: "manifest.sqm".into(),
                }),
                409,
                "conflict",
            ),
            (
                SearchError::Core(CoreError::corrupt("manifest.sqm", "bad checksum".to_string())),
                500,
                "corrupt_data",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status(), e.code()), (status, code), "{e}");
        }
        // A filter the core rejects is the caller's mistake, named by its field.
        let e: SearchError = CoreError::Filter {
            field: "filter.price".into(),
            message: "unknown".into(),
        }
        .into();
        assert_eq!((e.status(), e.code()), (400, "bad_request"));
    }
}
