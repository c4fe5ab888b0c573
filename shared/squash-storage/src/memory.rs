//! Objects in memory.

use crate::{content_tag, validate_key, ObjectStore, Precondition, Result, StorageError};
use std::collections::BTreeMap;
use std::sync::RwLock;

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

    fn put_if(&self, key: &str, bytes: &[u8], when: &Precondition) -> Result<String> {
        validate_key(key)?;
        let mut map = self.objects.write().unwrap_or_else(|p| p.into_inner());
        let ok = match (when, map.get(key)) {
            (Precondition::Absent, None) => true,
            (Precondition::Matches(tag), Some(b)) => *tag == content_tag(b),
            _ => false,
        };
        if !ok {
            return Err(StorageError::Conflict {
                store: self.describe(),
                key: key.to_string(),
            });
        }
        map.insert(key.to_string(), bytes.to_vec());
        Ok(content_tag(bytes))
    }

    fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let mut map = self.objects.write().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
        Ok(())
    }
}
