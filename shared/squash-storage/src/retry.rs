//! The retrying decorator: transient errors retried with capped exponential backoff.

use crate::{not_fetched, Blob, ObjectStore, Precondition, Result};
use std::time::Duration;

/// Retries transient errors with capped exponential backoff.
pub struct Retrying<S> {
    inner: S,
    attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
}

impl<S: ObjectStore> Retrying<S> {
    /// Four attempts, 50 ms doubling up to 2 s.
    pub fn new(inner: S) -> Retrying<S> {
        Retrying::with_policy(inner, 4, Duration::from_millis(50), Duration::from_secs(2))
    }

    /// A custom policy (`attempts` ≥ 1).
    pub fn with_policy(inner: S, attempts: u32, base_delay: Duration, max_delay: Duration) -> Retrying<S> {
        Retrying {
            inner,
            attempts: attempts.max(1),
            base_delay,
            max_delay,
        }
    }

    fn retry<T>(&self, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        let mut delay = self.base_delay;
        let mut attempt = 1;
        loop {
            match op() {
                Err(e) if e.is_transient() && attempt < self.attempts => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(self.max_delay);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

impl<S: ObjectStore> ObjectStore for Retrying<S> {
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.retry(|| self.inner.get(key))
    }
    fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        self.retry(|| self.inner.get_range(key, start, end))
    }
    fn get_many(&self, keys: &[&str]) -> Vec<Result<Vec<u8>>> {
        let mut out = self.inner.get_many(keys);
        for (r, k) in out.iter_mut().zip(keys) {
            if matches!(r, Err(e) if e.is_transient()) {
                *r = self.get(k);
            }
        }
        out
    }
    fn get_many_shared(&self, keys: &[&str]) -> Vec<Result<Blob>> {
        let mut out = self.inner.get_many_shared(keys);
        for (r, k) in out.iter_mut().zip(keys) {
            if matches!(r, Err(e) if e.is_transient()) {
                *r = self.retry(|| {
                    self.inner
                        .get_many_shared(&[k])
                        .pop()
                        .unwrap_or_else(|| Err(not_fetched(k)))
                });
            }
        }
        out
    }
    fn get_ranges(&self, ranges: &[(&str, u64, u64)]) -> Vec<Result<Vec<u8>>> {
        let mut out = self.inner.get_ranges(ranges);
        for (r, &(k, s, e)) in out.iter_mut().zip(ranges) {
            if matches!(r, Err(e) if e.is_transient()) {
                *r = self.get_range(k, s, e);
            }
        }
        out
    }
    fn head(&self, key: &str) -> Result<Option<u64>> {
        self.retry(|| self.inner.head(key))
    }
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.retry(|| self.inner.put(key, bytes))
    }
    fn get_tagged(&self, key: &str) -> Result<(Vec<u8>, String)> {
        self.retry(|| self.inner.get_tagged(key))
    }
    // A conditional write that timed out may have landed: its retry then sees a
    // conflict, and the writer re-reads (its own write) and tries again. Writers are
    // built so that applying one twice changes nothing the reader sees.
    fn put_if(&self, key: &str, bytes: &[u8], when: &Precondition) -> Result<String> {
        self.retry(|| self.inner.put_if(key, bytes, when))
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.retry(|| self.inner.delete(key))
    }
    fn list_modified(&self, prefix: &str) -> Result<Vec<(String, Option<std::time::SystemTime>)>> {
        self.retry(|| self.inner.list_modified(prefix))
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.retry(|| self.inner.list(prefix))
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}
