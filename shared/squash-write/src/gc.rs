//! Garbage collection: removes the objects no manifest version younger than a grace
//! period names, and the copies of versions older than it.

use crate::error::{Result, WriteError};
use crate::fold::CompactReport;
use squash_core::manifest::Manifest;
use squash_core::naming::{Naming, MANIFEST_KEY, SEGMENTS_PREFIX, VERSIONS_PREFIX};
use squash_storage::ObjectStore;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

/// Every object key a manifest names.
fn named(m: &Manifest) -> impl Iterator<Item = String> + '_ {
    let values = m
        .meta
        .schema
        .attrs
        .iter()
        .filter_map(|s| s.values.as_ref().map(|r| r.key.clone()));
    values.chain(m.meta.partitions.iter().flat_map(|p| {
        std::iter::once(p.key.clone())
            .chain(p.deletes.iter().map(|d| d.key.clone()))
            .chain(
                p.deltas
                    .iter()
                    .flat_map(|d| std::iter::once(d.key.clone()).chain(d.deletes.iter().map(|x| x.key.clone()))),
            )
    }))
}

/// Removes segment, deletion-set and value-index objects named by no version younger than `grace`
/// (a version's age counts from when the next one was committed) and not written
/// within it, and the copies of versions older than it.
pub fn collect_garbage(store: &dyn ObjectStore, grace: Duration, report: &mut CompactReport) -> Result<()> {
    let now = SystemTime::now();
    let unix = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
    let current = Manifest::decode(MANIFEST_KEY, &store.get(MANIFEST_KEY)?)?;
    let mut keep: HashSet<String> = named(&current).collect();
    // Version copies, oldest first; version v stays live until v + 1 was committed.
    let copies = store.list_modified(VERSIONS_PREFIX)?;
    let mut versions: Vec<(u64, String, Manifest)> = Vec::new();
    for (key, _) in &copies {
        let Some(v) = Naming::version_of_copy(key) else {
            continue;
        };
        if v >= current.meta.version {
            continue;
        }
        // An unreadable copy keeps nothing alive: the objects it named are protected by
        // their own age instead.
        if let Ok(m) = store
            .get(key)
            .map_err(WriteError::from)
            .and_then(|b| Ok(Manifest::decode(key, &b)?))
        {
            versions.push((v, key.clone(), m));
        }
    }
    versions.sort_by_key(|v| v.0);
    let superseded_at = |v: u64| -> SystemTime {
        versions
            .iter()
            .find(|(w, ..)| *w > v)
            .map(|(_, _, m)| unix(m.meta.committed_at))
            .unwrap_or_else(|| unix(current.meta.committed_at))
    };
    let mut old_copies = Vec::new();
    for (v, key, m) in &versions {
        let age = now.duration_since(superseded_at(*v)).unwrap_or_default();
        if age < grace {
            keep.extend(named(m));
        } else {
            old_copies.push(key.clone());
        }
    }
    for (key, modified) in store.list_modified(SEGMENTS_PREFIX)? {
        if keep.contains(&key) {
            continue;
        }
        let young = modified.is_none_or(|t| now.duration_since(t).unwrap_or_default() < grace);
        if young {
            report.kept_young += 1;
            continue;
        }
        report.removed_bytes += store.head(&key)?.unwrap_or(0);
        store.delete(&key)?;
        report.removed += 1;
    }
    for key in old_copies {
        store.delete(&key)?;
    }
    Ok(())
}
