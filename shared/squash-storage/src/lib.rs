//! # squash-storage
//!
//! Object storage behind one trait, so the build and the search never care where an
//! index lives. This crate has a local-directory store and an in-memory store; keys
//! are `/`-separated relative paths (`manifest.sqm`, `segments/p00001-….sqs`).

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use thiserror::Error;

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
    /// An I/O error reading or writing the object.
    #[error("I/O error on '{key}' in {store}: {source}")]
    Io {
        store: String,
        key: String,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, StorageError>;

/// A flat namespace of immutable byte objects.
pub trait ObjectStore: Send + Sync {
    /// Reads a whole object.
    fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// Writes a whole object; readers never see a partial object.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()>;
    /// Keys under `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// A short description for messages (`dir:/data/index`).
    fn describe(&self) -> String;
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

/// Objects as files under a root directory.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> LocalDir {
        LocalDir { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn io(&self, key: &str, source: std::io::Error) -> StorageError {
        if source.kind() == std::io::ErrorKind::NotFound {
            StorageError::NotFound {
                store: self.describe(),
                key: key.to_string(),
            }
        } else {
            StorageError::Io {
                store: self.describe(),
                key: key.to_string(),
                source,
            }
        }
    }
}

impl ObjectStore for LocalDir {
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        std::fs::read(&path).map_err(|e| self.io(key, e))
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.io(key, e))?;
        }
        // Write to a temporary name, then rename: readers see all or nothing.
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io(key, e)
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io(prefix, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| self.io(prefix, e))?;
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let key = rel.to_string_lossy().replace('\\', "/");
                    if key.starts_with(prefix) {
                        out.push(key);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }
}

/// Objects in memory (tests, and a staging area).
#[derive(Debug, Default)]
pub struct Memory {
    objects: RwLock<BTreeMap<String, Vec<u8>>>,
}

impl Memory {
    /// An empty store.
    pub fn new() -> Memory {
        Memory::default()
    }
}

impl ObjectStore for Memory {
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        validate_key(key)?;
        let map = self.objects.read().unwrap_or_else(|p| p.into_inner());
        map.get(key).cloned().ok_or_else(|| StorageError::NotFound {
            store: self.describe(),
            key: key.to_string(),
        })
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        validate_key(key)?;
        let mut map = self.objects.write().unwrap_or_else(|p| p.into_inner());
        map.insert(key.to_string(), bytes.to_vec());
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let map = self.objects.read().unwrap_or_else(|p| p.into_inner());
        Ok(map.keys().filter(|k| k.starts_with(prefix)).cloned().collect())
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conformance(store: &dyn ObjectStore) {
        assert!(matches!(store.get("a/b"), Err(StorageError::NotFound { .. })));
        store.put("a/b", b"one").unwrap();
        store.put("a/c", b"two").unwrap();
        store.put("z", b"three").unwrap();
        assert_eq!(store.get("a/b").unwrap(), b"one");
        store.put("a/b", b"uno").unwrap();
        assert_eq!(store.get("a/b").unwrap(), b"uno");
        assert_eq!(store.list("a/").unwrap(), vec!["a/b".to_string(), "a/c".to_string()]);
        for bad in ["", "/etc/passwd", "a/../b", "a//b", "a\nb", "./a"] {
            assert!(
                matches!(store.get(bad), Err(StorageError::InvalidKey { .. })),
                "{bad:?}"
            );
            assert!(store.put(bad, b"x").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn memory_conforms() {
        conformance(&Memory::new());
    }

    #[test]
    fn local_dir_conforms() {
        let dir = std::env::temp_dir().join(format!("squash-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        conformance(&LocalDir::new(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
