//! The counting decorator: requests and bytes passing through to the inner store.

use crate::{Blob, ObjectStore, Precondition, Result};
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests and bytes seen by a [`Counting`] store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// GET requests (whole, ranged, or one per key of `get_many`).
    pub gets: u64,
    /// Bytes returned by GETs.
    pub bytes_read: u64,
    /// PUT requests.
    pub puts: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// LIST and HEAD requests.
    pub other: u64,
}

/// Counts requests and bytes passing through to the inner store.
pub struct Counting<S> {
    inner: S,
    gets: AtomicU64,
    bytes_read: AtomicU64,
    puts: AtomicU64,
    bytes_written: AtomicU64,
    other: AtomicU64,
}

impl<S: ObjectStore> Counting<S> {
    /// Wraps `inner` with zeroed counters.
    pub fn new(inner: S) -> Counting<S> {
        Counting {
            inner,
            gets: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            puts: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            other: AtomicU64::new(0),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        Counts {
            gets: self.gets.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
        }
    }

    fn read(&self, r: &Result<Vec<u8>>) {
        self.gets.fetch_add(1, Ordering::Relaxed);
        if let Ok(b) = r {
            self.bytes_read.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
    }
}

impl<S: ObjectStore> ObjectStore for Counting<S> {
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let r = self.inner.get(key);
        self.read(&r);
        r
    }
    fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        let r = self.inner.get_range(key, start, end);
        self.read(&r);
        r
    }
    fn get_many(&self, keys: &[&str]) -> Vec<Result<Vec<u8>>> {
        let out = self.inner.get_many(keys);
        out.iter().for_each(|r| self.read(r));
        out
    }
    fn get_many_shared(&self, keys: &[&str]) -> Vec<Result<Blob>> {
        let out = self.inner.get_many_shared(keys);
        for r in &out {
            self.gets.fetch_add(1, Ordering::Relaxed);
            if let Ok(b) = r {
                self.bytes_read.fetch_add(b.bytes.len() as u64, Ordering::Relaxed);
            }
        }
        out
    }
    fn get_ranges(&self, ranges: &[(&str, u64, u64)]) -> Vec<Result<Vec<u8>>> {
        let out = self.inner.get_ranges(ranges);
        out.iter().for_each(|r| self.read(r));
        out
    }
    fn head(&self, key: &str) -> Result<Option<u64>> {
        self.other.fetch_add(1, Ordering::Relaxed);
        self.inner.head(key)
    }
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.bytes_written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.inner.put(key, bytes)
    }
    fn get_tagged(&self, key: &str) -> Result<(Vec<u8>, String)> {
        let r = self.inner.get_tagged(key);
        self.gets.fetch_add(1, Ordering::Relaxed);
        if let Ok((b, _)) = &r {
            self.bytes_read.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
        r
    }
    fn put_if(&self, key: &str, bytes: &[u8], when: &Precondition) -> Result<String> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.bytes_written.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.inner.put_if(key, bytes, when)
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.other.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(key)
    }
    fn list_modified(&self, prefix: &str) -> Result<Vec<(String, Option<std::time::SystemTime>)>> {
        self.other.fetch_add(1, Ordering::Relaxed);
        self.inner.list_modified(prefix)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.other.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}
