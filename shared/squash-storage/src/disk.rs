//! A second cache tier on local disk (Lambda's `/tmp`): immutable objects (`segments/…`,
//! whose keys embed a content hash) read once from the store are kept as files and read
//! from there until the tier's byte budget evicts them, oldest first. Everything else
//! (the manifest, which a new build replaces) passes straight through.

use crate::{ObjectStore, Result, StorageError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Keys under this prefix are immutable and may be kept on disk.
pub const IMMUTABLE_PREFIX: &str = "segments/";

/// A disk tier in front of another store.
pub struct DiskTier<S> {
    inner: S,
    dir: PathBuf,
    budget: u64,
    /// Files on disk: (name, bytes), oldest first.
    files: Mutex<Vec<(String, u64)>>,
    hits: AtomicU64,
    temp_seq: AtomicU64,
}

fn file_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '~'
            }
        })
        .collect()
}

impl<S: ObjectStore> DiskTier<S> {
    /// A tier of at most `budget` bytes in `dir` (created if needed). Leftover temporary
    /// files of an earlier container are removed; finished files are kept and counted.
    pub fn new(inner: S, dir: impl Into<PathBuf>, budget: u64) -> Result<DiskTier<S>> {
        let dir = dir.into();
        let io = |e: std::io::Error| StorageError::Io {
            store: format!("disk tier {}", dir.display()),
            key: String::new(),
            source: e,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            let meta = entry.metadata().map_err(io)?;
            files.push((meta.modified().ok(), name, meta.len()));
        }
        files.sort();
        let tier = DiskTier {
            inner,
            dir,
            budget,
            files: Mutex::new(files.into_iter().map(|(_, n, l)| (n, l)).collect()),
            hits: AtomicU64::new(0),
            temp_seq: AtomicU64::new(0),
        };
        tier.evict();
        Ok(tier)
    }

    /// Reads served from disk so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(file_name(key))
    }

    fn evict(&self) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let mut used: u64 = files.iter().map(|f| f.1).sum();
        while used > self.budget && !files.is_empty() {
            let (name, len) = files.remove(0);
            let _ = std::fs::remove_file(self.dir.join(&name));
            used -= len;
        }
    }

    /// Keeps `bytes` under `key`: written to a temporary name, then renamed, so a reader
    /// never sees half a file. A failure only means the next read goes to the store.
    fn keep(&self, key: &str, bytes: &[u8]) {
        if bytes.len() as u64 > self.budget {
            return;
        }
        let name = file_name(key);
        let seq = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        let temp = self.dir.join(format!("{name}.{}.{seq}.tmp", std::process::id()));
        let written = std::fs::write(&temp, bytes).and_then(|_| std::fs::rename(&temp, self.dir.join(&name)));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
            return;
        }
        {
            let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
            files.retain(|f| f.0 != name);
            files.push((name, bytes.len() as u64));
        }
        self.evict();
    }

    fn read_kept(&self, key: &str) -> Option<Vec<u8>> {
        if !key.starts_with(IMMUTABLE_PREFIX) {
            return None;
        }
        let bytes = std::fs::read(self.path(key)).ok()?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(bytes)
    }

    fn read_kept_range(&self, key: &str, start: u64, end: u64) -> Option<Vec<u8>> {
        if !key.starts_with(IMMUTABLE_PREFIX) {
            return None;
        }
        let bytes = crate::read_file_range(&self.path(key), start, end).ok()?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(bytes)
    }

    /// The directory of the tier.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl<S: ObjectStore> ObjectStore for DiskTier<S> {
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        if let Some(bytes) = self.read_kept(key) {
            return Ok(bytes);
        }
        let bytes = self.inner.get(key)?;
        if key.starts_with(IMMUTABLE_PREFIX) {
            self.keep(key, &bytes);
        }
        Ok(bytes)
    }
    fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        self.get_ranges(&[(key, start, end)])
            .pop()
            .unwrap_or_else(|| Err(crate::not_fetched(key)))
    }
    fn get_ranges(&self, ranges: &[(&str, u64, u64)]) -> Vec<Result<Vec<u8>>> {
        // A kept object answers from its file; the rest go to the inner store together
        // (and are not kept: the tier keeps whole objects only).
        let mut out: Vec<Option<Result<Vec<u8>>>> = ranges
            .iter()
            .map(|&(k, s, e)| self.read_kept_range(k, s, e).map(Ok))
            .collect();
        let missing: Vec<usize> = (0..ranges.len()).filter(|&i| out[i].is_none()).collect();
        let asked: Vec<(&str, u64, u64)> = missing.iter().map(|&i| ranges[i]).collect();
        for (&i, r) in missing.iter().zip(self.inner.get_ranges(&asked)) {
            out[i] = Some(r);
        }
        out.into_iter()
            .zip(ranges)
            .map(|(o, r)| o.unwrap_or_else(|| Err(crate::not_fetched(r.0))))
            .collect()
    }
    fn get_many(&self, keys: &[&str]) -> Vec<Result<Vec<u8>>> {
        let mut out: Vec<Option<Result<Vec<u8>>>> = keys.iter().map(|k| self.read_kept(k).map(Ok)).collect();
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| out[i].is_none()).collect();
        let fetched = self
            .inner
            .get_many(&missing.iter().map(|&i| keys[i]).collect::<Vec<_>>());
        for (&i, r) in missing.iter().zip(fetched) {
            if let Ok(bytes) = &r {
                if keys[i].starts_with(IMMUTABLE_PREFIX) {
                    self.keep(keys[i], bytes);
                }
            }
            out[i] = Some(r);
        }
        out.into_iter()
            .zip(keys)
            .map(|(r, k)| {
                r.unwrap_or_else(|| {
                    Err(StorageError::InvalidKey {
                        key: k.to_string(),
                        reason: "not fetched".into(),
                    })
                })
            })
            .collect()
    }
    fn head(&self, key: &str) -> Result<Option<u64>> {
        self.inner.head(key)
    }
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.inner.put(key, bytes)
    }
    fn get_tagged(&self, key: &str) -> Result<(Vec<u8>, String)> {
        self.inner.get_tagged(key)
    }
    fn put_if(&self, key: &str, bytes: &[u8], when: &crate::Precondition) -> Result<String> {
        self.inner.put_if(key, bytes, when)
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key)
    }
    fn list_modified(&self, prefix: &str) -> Result<Vec<(String, Option<std::time::SystemTime>)>> {
        self.inner.list_modified(prefix)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Counting, Memory};
    use std::sync::Arc;

    #[test]
    fn keeps_segments_within_budget_and_passes_the_rest_through() {
        let dir = std::env::temp_dir().join(format!("squash-disk-tier-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mem = Arc::new(Counting::new(Memory::new()));
        for i in 0..4 {
            mem.put(&format!("segments/p{i}.sqs"), &[i as u8; 100]).unwrap();
        }
        mem.put("manifest.sqm", b"m1").unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("stale.1.2.tmp"), b"half").unwrap();
        let tier = DiskTier::new(mem.clone(), &dir, 250).unwrap();
        assert!(!dir.join("stale.1.2.tmp").exists(), "stale temp files are wiped");
        assert_eq!(tier.get("segments/p0.sqs").unwrap(), vec![0; 100]);
        assert_eq!(tier.get("segments/p0.sqs").unwrap(), vec![0; 100]);
        assert_eq!((mem.counts().gets, tier.hits()), (1, 1));
        // The manifest is mutable: always read from the store.
        tier.get("manifest.sqm").unwrap();
        mem.put("manifest.sqm", b"m2").unwrap();
        assert_eq!(tier.get("manifest.sqm").unwrap(), b"m2");
        // Three 100-byte segments do not fit 250 bytes: the oldest goes.
        let got = tier.get_many(&["segments/p1.sqs", "segments/p2.sqs", "segments/nope"]);
        assert!(got[0].is_ok() && got[1].is_ok() && got[2].is_err());
        let on_disk = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(on_disk, 2);
        let gets = mem.counts().gets;
        tier.get("segments/p0.sqs").unwrap();
        assert_eq!(mem.counts().gets, gets + 1, "evicted, read again");
        // A new container over the same directory finds the kept files.
        let again = DiskTier::new(mem.clone(), &dir, 250).unwrap();
        assert_eq!(again.get("segments/p0.sqs").unwrap(), vec![0; 100]);
        assert_eq!(again.hits(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
