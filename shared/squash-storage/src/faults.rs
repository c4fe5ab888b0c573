//! A fault-injecting [`ObjectStore`] decorator, for tests and failure drills: reads of
//! chosen keys fail transiently (a 5xx), are throttled (S3's 503 SlowDown), time out,
//! answer slowly, or fail for good (a 403), on the attempts a rule picks.

use crate::{Blob, ObjectStore, Precondition, Result, StorageError};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// What one read suffers.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// A transient server error (500); `Retrying` retries it.
    Transient,
    /// Throttling (503 SlowDown); transient.
    Throttled,
    /// No answer within the given time, then a transient timeout error.
    Timeout(Duration),
    /// The right bytes, after the given delay.
    Slow(Duration),
    /// A permanent refusal (403 AccessDenied); not retried.
    Permanent,
}

/// The rule: given the key and the attempt number on that key (1, 2, ...), the fault to
/// inject, if any.
pub type FaultRule = dyn Fn(&str, u32) -> Option<Fault> + Send + Sync;

/// Injects faults into the reads (`get`, `get_range`, `get_many`, `head`, `get_tagged`)
/// and writes (`put`, `put_if`, `delete`) of `inner`, counting attempts per key;
/// listings pass through. A failed write writes nothing.
pub struct Faulty<S> {
    inner: S,
    rule: Box<FaultRule>,
    attempts: Mutex<HashMap<String, u32>>,
}

impl<S: ObjectStore> Faulty<S> {
    /// A store whose reads suffer what `rule` says.
    pub fn new(inner: S, rule: impl Fn(&str, u32) -> Option<Fault> + Send + Sync + 'static) -> Faulty<S> {
        Faulty {
            inner,
            rule: Box::new(rule),
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Reads of `key` so far.
    pub fn attempts(&self, key: &str) -> u32 {
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    fn inject<T>(&self, key: &str, read: impl FnOnce() -> Result<T>) -> Result<T> {
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
            let n = attempts.entry(key.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        let remote = |message: &str, transient: bool| StorageError::Remote {
            store: self.describe(),
            key: key.to_string(),
            message: format!("{message} (injected, attempt {attempt})"),
            transient,
        };
        match (self.rule)(key, attempt) {
            None => read(),
            Some(Fault::Transient) => Err(remote("500 InternalError", true)),
            Some(Fault::Throttled) => Err(remote("503 SlowDown: please reduce your request rate", true)),
            Some(Fault::Timeout(after)) => {
                std::thread::sleep(after);
                Err(remote(&format!("timed out after {} ms", after.as_millis()), true))
            }
            Some(Fault::Slow(delay)) => {
                std::thread::sleep(delay);
                read()
            }
            Some(Fault::Permanent) => Err(remote("403 AccessDenied", false)),
        }
    }
}

impl<S: ObjectStore> ObjectStore for Faulty<S> {
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.inject(key, || self.inner.get(key))
    }
    fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        self.inject(key, || self.inner.get_range(key, start, end))
    }
    fn get_many(&self, keys: &[&str]) -> Vec<Result<Vec<u8>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }
    fn get_many_shared(&self, keys: &[&str]) -> Vec<Result<Blob>> {
        keys.iter()
            .map(|k| {
                self.inject(k, || {
                    self.inner
                        .get_many_shared(&[k])
                        .pop()
                        .unwrap_or_else(|| Err(crate::not_fetched(k)))
                })
            })
            .collect()
    }
    fn head(&self, key: &str) -> Result<Option<u64>> {
        self.inject(key, || self.inner.head(key))
    }
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.inject(key, || self.inner.put(key, bytes))
    }
    fn get_tagged(&self, key: &str) -> Result<(Vec<u8>, String)> {
        self.inject(key, || self.inner.get_tagged(key))
    }
    fn put_if(&self, key: &str, bytes: &[u8], when: &Precondition) -> Result<String> {
        self.inject(key, || self.inner.put_if(key, bytes, when))
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.inject(key, || self.inner.delete(key))
    }
    fn list_modified(&self, prefix: &str) -> Result<Vec<(String, Option<std::time::SystemTime>)>> {
        self.inner.list_modified(prefix)
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix)
    }
    fn describe(&self) -> String {
        format!("faulty({})", self.inner.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Memory, Retrying};

    #[test]
    fn faults_happen_on_the_attempts_the_rule_picks_and_retrying_rides_out_transient_ones() {
        let mem = Memory::new();
        mem.put("a", b"alpha").unwrap();
        mem.put("b", b"beta").unwrap();
        let faulty = Faulty::new(mem, |key, attempt| match (key, attempt) {
            ("a", 1) => Some(Fault::Throttled),
            ("a", 2) => Some(Fault::Timeout(Duration::from_millis(5))),
            ("a", 3) => Some(Fault::Transient),
            ("b", _) => Some(Fault::Permanent),
            _ => None,
        });
        let store = Retrying::with_policy(faulty, 4, Duration::from_millis(1), Duration::from_millis(4));
        assert_eq!(store.get("a").unwrap(), b"alpha");
        let e = store.get("b").unwrap_err();
        assert!(!e.is_transient() && e.to_string().contains("403"), "{e}");
        let faulty = Faulty::new(Memory::new(), |_, _| Some(Fault::Slow(Duration::from_millis(1))));
        faulty.put("c", b"gamma").unwrap();
        assert_eq!(faulty.get("c").unwrap(), b"gamma");
        assert_eq!(faulty.attempts("c"), 2, "the write and the read");
    }
}
