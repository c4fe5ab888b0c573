//! # squash-storage
//!
//! Object storage behind one trait, so the build and the search never care where an
//! index lives: a local directory, memory, or S3 (the `squash-s3` crate, which also opens stores by location). Keys are
//! `/`-separated relative paths (`manifest.sqm`, `segments/p00001-….sqs`). Decorators
//! add retries with capped backoff ([`Retrying`]) and request counting ([`Counting`]);
//! [`testing::conformance`] is the behaviour every store must show.

#![warn(missing_docs)]

use bytes::Bytes;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;

pub mod counting;
pub mod disk;
pub mod faults;
pub mod local;
pub mod memory;
pub mod retry;
pub mod testing;

pub use counting::{Counting, Counts};
pub use disk::DiskTier;
pub use faults::{Fault, Faulty};
pub use local::LocalDir;
pub use memory::Memory;
pub use retry::Retrying;

/// Errors of object stores.
// Variant fields are described by the variant docs and messages.
#[allow(missing_docs)]
#[derive(Debug, Error)]
pub enum StorageError {
    /// The object does not exist.
    #[error("object '{key}' not found in {store}")]
    NotFound { store: String, key: String },
    /// The key is not a safe relative path.
    #[error("invalid object key '{key}': {reason}")]
    InvalidKey { key: String, reason: String },
    /// The remote store answered with an error (`transient` ones may succeed on retry).
    #[error("{store} failed on '{key}': {message}")]
    Remote {
        store: String,
        key: String,
        message: String,
        transient: bool,
    },
    /// A conditional write found the object not as the writer last saw it (another
    /// writer got there first): re-read it and try again.
    #[error("conditional write of '{key}' in {store} failed: the object changed (or exists) since it was read")]
    Conflict { store: String, key: String },
    /// The store cannot do what was asked (a conditional write or a delete).
    #[error("{store} does not support {what}")]
    Unsupported { store: String, what: String },
    /// An I/O error reading or writing the object.
    #[error("I/O error on '{key}' in {store}: {source}")]
    Io {
        store: String,
        key: String,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// True for errors that may go away on retry (timeouts, throttling, 5xx).
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Remote { transient, .. } => *transient,
            StorageError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, StorageError>;

/// An object's bytes in a shared buffer, read in place by whoever holds it.
#[derive(Debug, Clone)]
pub struct Blob {
    /// The bytes.
    pub bytes: Bytes,
    /// True when the buffer maps a local file: its pages belong to the operating
    /// system's page cache (shared, evictable), not to this process's heap.
    pub mapped: bool,
}

impl Blob {
    /// A blob over bytes read into memory.
    pub fn owned(bytes: Vec<u8>) -> Blob {
        Blob {
            bytes: Bytes::from(bytes),
            mapped: false,
        }
    }
}

/// Reads bytes `start..end` of a file (clamped to its length).
pub(crate) fn read_file_range(path: &Path, start: u64, end: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let (s, e) = (start.min(len), end.min(len).max(start.min(len)));
    f.seek(SeekFrom::Start(s))?;
    let mut buf = vec![0u8; (e - s) as usize];
    f.read_exact(&mut buf)?;
    Ok(buf)
}

/// The error for a key a batch read returned nothing for.
pub(crate) fn not_fetched(key: &str) -> StorageError {
    StorageError::InvalidKey {
        key: key.to_string(),
        reason: "not fetched".into(),
    }
}

/// What a conditional write ([`ObjectStore::put_if`]) requires of the object's current
/// state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// The object must not exist (S3's `If-None-Match: *`).
    Absent,
    /// The object must still carry this tag (S3's `If-Match: ETag`), as read by
    /// [`ObjectStore::get_tagged`].
    Matches(String),
}

/// The tag of an object in the stores that have no ETag of their own: the xxh3-128 of
/// its bytes in 32 hex digits.
pub fn content_tag(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// A flat namespace of immutable byte objects.
pub trait ObjectStore: Send + Sync {
    /// Reads a whole object.
    fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// Reads bytes `start..end` of an object (clamped to its length).
    fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        let all = self.get(key)?;
        let len = all.len() as u64;
        let (s, e) = (start.min(len) as usize, end.min(len) as usize);
        Ok(all[s..e.max(s)].to_vec())
    }
    /// Reads several objects; stores with network latency fetch them concurrently.
    fn get_many(&self, keys: &[&str]) -> Vec<Result<Vec<u8>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }
    /// Reads several objects as shared buffers (see [`Blob`]); local directories map
    /// their files instead of reading them.
    fn get_many_shared(&self, keys: &[&str]) -> Vec<Result<Blob>> {
        self.get_many(keys).into_iter().map(|r| r.map(Blob::owned)).collect()
    }
    /// Reads several byte ranges `(key, start, end)`, results in input order; stores with
    /// network latency fetch them concurrently.
    fn get_ranges(&self, ranges: &[(&str, u64, u64)]) -> Vec<Result<Vec<u8>>> {
        ranges.iter().map(|&(k, s, e)| self.get_range(k, s, e)).collect()
    }
    /// Size of an object, or `None` when it does not exist.
    fn head(&self, key: &str) -> Result<Option<u64>> {
        match self.get(key) {
            Ok(b) => Ok(Some(b.len() as u64)),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
    /// Writes a whole object; readers never see a partial object.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// Keys under `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// A short description for messages (`dir:/data/index`).
    fn describe(&self) -> String;
    /// Reads a whole object with its tag (S3's ETag; a content hash elsewhere), for a
    /// later [`ObjectStore::put_if`].
    fn get_tagged(&self, key: &str) -> Result<(Vec<u8>, String)> {
        let bytes = self.get(key)?;
        let tag = content_tag(&bytes);
        Ok((bytes, tag))
    }
    /// Writes a whole object only if its current state is what `when` says, atomically
    /// with respect to every other `put_if` on the key: of two writers that read the
    /// same tag, one succeeds and the other gets [`StorageError::Conflict`]. Returns the
    /// new tag.
    fn put_if(&self, key: &str, _bytes: &[u8], _when: &Precondition) -> Result<String> {
        Err(StorageError::Unsupported {
            store: self.describe(),
            what: format!("conditional writes (writing '{key}')"),
        })
    }
    /// Keys under `prefix` with when each was last written (`None` where the store
    /// cannot tell), sorted by key.
    fn list_modified(&self, prefix: &str) -> Result<Vec<(String, Option<std::time::SystemTime>)>> {
        Ok(self.list(prefix)?.into_iter().map(|k| (k, None)).collect())
    }
    /// Removes an object (absent objects are not an error).
    fn delete(&self, key: &str) -> Result<()> {
        Err(StorageError::Unsupported {
            store: self.describe(),
            what: format!("deletes (removing '{key}')"),
        })
    }
}

impl<T: ObjectStore + ?Sized> ObjectStore for Arc<T> {
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        (**self).get(key)
    }
    fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        (**self).get_range(key, start, end)
    }
    fn get_many(&self, keys: &[&str]) -> Vec<Result<Vec<u8>>> {
        (**self).get_many(keys)
    }
    fn get_many_shared(&self, keys: &[&str]) -> Vec<Result<Blob>> {
        (**self).get_many_shared(keys)
    }
    fn get_ranges(&self, ranges: &[(&str, u64, u64)]) -> Vec<Result<Vec<u8>>> {
        (**self).get_ranges(ranges)
    }
    fn head(&self, key: &str) -> Result<Option<u64>> {
        (**self).head(key)
    }
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        (**self).put(key, bytes)
    }
    fn get_tagged(&self, key: &str) -> Result<(Vec<u8>, String)> {
        (**self).get_tagged(key)
    }
    fn put_if(&self, key: &str, bytes: &[u8], when: &Precondition) -> Result<String> {
        (**self).put_if(key, bytes, when)
    }
    fn delete(&self, key: &str) -> Result<()> {
        (**self).delete(key)
    }
    fn list_modified(&self, prefix: &str) -> Result<Vec<(String, Option<std::time::SystemTime>)>> {
        (**self).list_modified(prefix)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        (**self).list(prefix)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// Checks that a key is a relative path without `..`, empty or control characters.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(StorageError::InvalidKey {
            key: key.escape_default().to_string(),
            reason: reason.to_string(),
        })
    };
    if key.is_empty() {
        return bad("empty key");
    }
    if key.starts_with('/') || key.contains('\\') {
        return bad("keys are relative and use '/'");
    }
    if key.chars().any(|c| c.is_control()) {
        return bad("control characters are not allowed");
    }
    if key.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return bad("empty, '.' and '..' path segments are not allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[test]
    fn memory_conforms() {
        testing::conformance(&Memory::new(), 3 << 20);
    }

    #[test]
    fn local_dir_conforms() {
        let dir = std::env::temp_dir().join(format!("squash-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        testing::conformance(&LocalDir::new(&dir), 3 << 20);
        let _ = std::fs::remove_dir_all(&dir);
    }

    struct Flaky {
        inner: Memory,
        failures: AtomicU64,
    }

    impl ObjectStore for Flaky {
        fn get(&self, key: &str) -> Result<Vec<u8>> {
            if self.failures.load(Ordering::Relaxed) > 0 {
                self.failures.fetch_sub(1, Ordering::Relaxed);
                return Err(StorageError::Remote {
                    store: "flaky".into(),
                    key: key.into(),
                    message: "HTTP 503, SlowDown".into(),
                    transient: true,
                });
            }
            self.inner.get(key)
        }
        fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
            self.inner.put(key, bytes)
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>> {
            self.inner.list(prefix)
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    #[test]
    fn retrying_recovers_from_transient_errors_and_counting_counts() {
        let flaky = Flaky {
            inner: Memory::new(),
            failures: AtomicU64::new(2),
        };
        flaky.put("k", b"value").unwrap();
        let store = Counting::new(Retrying::with_policy(
            flaky,
            3,
            Duration::from_millis(1),
            Duration::from_millis(2),
        ));
        assert_eq!(store.get("k").unwrap(), b"value");
        assert_eq!(store.counts().gets, 1);
        assert_eq!(store.counts().bytes_read, 5);
        let flaky = Flaky {
            inner: Memory::new(),
            failures: AtomicU64::new(5),
        };
        let store = Retrying::with_policy(flaky, 3, Duration::from_millis(1), Duration::from_millis(2));
        assert!(store.get("k").unwrap_err().is_transient(), "gives up after 3 attempts");
    }
}
