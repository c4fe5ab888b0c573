//! Objects as files under a root directory (atomic temp-then-rename writes, an advisory
//! lock for conditional writes).

use crate::{content_tag, read_file_range, validate_key, Blob, ObjectStore, Precondition, Result, StorageError};
use bytes::Bytes;
use std::io::Write;
use std::path::{Path, PathBuf};

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

    /// Maps an object's file. Objects are never changed in place (a write replaces the
    /// file by a rename, and segment keys name their content), so the mapped bytes stay
    /// what they were when mapped. Empty files are read, not mapped.
    fn map(&self, key: &str) -> Result<Blob> {
        let path = self.path(key)?;
        let file = std::fs::File::open(&path).map_err(|e| self.io(key, e))?;
        let len = file.metadata().map_err(|e| self.io(key, e))?.len();
        if len == 0 {
            return Ok(Blob::owned(Vec::new()));
        }
        // SAFETY: the file is never modified in place while mapped (see above); a
        // concurrent truncation by another program is outside what squash supports.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| self.io(key, e))?;
        Ok(Blob {
            bytes: Bytes::from_owner(map),
            mapped: true,
        })
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

    fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        read_file_range(&path, start, end).map_err(|e| self.io(key, e))
    }

    fn get_many_shared(&self, keys: &[&str]) -> Vec<Result<Blob>> {
        keys.iter().map(|k| self.map(k)).collect()
    }

    fn head(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key)?;
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(key, e)),
        }
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
                    if rel.as_os_str() == LOCK_FILE {
                        continue;
                    }
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

    // Conditional writes hold an exclusive lock on `.squash-lock` under the root (an
    // advisory file lock: every squash process takes it), compare, then write by rename.
    fn put_if(&self, key: &str, bytes: &[u8], when: &Precondition) -> Result<String> {
        let path = self.path(key)?;
        std::fs::create_dir_all(&self.root).map_err(|e| self.io(key, e))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(LOCK_FILE))
            .map_err(|e| self.io(key, e))?;
        lock.lock().map_err(|e| self.io(key, e))?;
        let current = match std::fs::read(&path) {
            Ok(b) => Some(content_tag(&b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.io(key, e)),
        };
        let ok = match (when, &current) {
            (Precondition::Absent, None) => true,
            (Precondition::Matches(tag), Some(now)) => tag == now,
            _ => false,
        };
        if !ok {
            return Err(StorageError::Conflict {
                store: self.describe(),
                key: key.to_string(),
            });
        }
        self.put(key, bytes)?;
        drop(lock);
        Ok(content_tag(bytes))
    }

    fn list_modified(&self, prefix: &str) -> Result<Vec<(String, Option<std::time::SystemTime>)>> {
        self.list(prefix)?
            .into_iter()
            .map(|k| {
                let modified = std::fs::metadata(self.root.join(&k)).and_then(|m| m.modified()).ok();
                Ok((k, modified))
            })
            .collect()
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(key, e)),
        }
    }
}

/// The lock file of a local directory's conditional writes (hidden from listings).
const LOCK_FILE: &str = ".squash-lock";
