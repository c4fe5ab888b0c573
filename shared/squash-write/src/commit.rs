//! The commit protocol, one for every change of an index (writes, folds, compaction):
//! read the manifest and its tag → stage the change on it → put the new objects →
//! conditional put of the new manifest (`If-Match` on the tag read) → a copy of the
//! committed version under `versions/`. On a conflict (another writer committed
//! first) the change is staged again on the newer version after a short jittered
//! backoff, so no update is ever lost and two writers do not collide in lockstep.

use crate::error::{Result, WriteError};
use squash_core::manifest::{Manifest, MANIFEST_KEY};
use squash_core::naming::{Naming, ObjectKind};
use squash_storage::{ObjectStore, Precondition, StorageError};
use std::time::Duration;
use xxhash_rust::xxh3::xxh3_64;

/// Most conditional commits a change attempts before giving up (each conflict means
/// another writer committed first; the change is staged again on the new version).
pub const MAX_COMMIT_ATTEMPTS: u32 = 64;

/// A change staged on one manifest version: the manifest as it will be and the new
/// objects it names, plus what the stager wants back once it is committed.
pub struct Staged<R> {
    /// The next manifest (its version, commit time and live count are set at commit).
    pub manifest: Manifest,
    /// New objects (segments, deletion sets; value indexes are added at commit). None:
    /// nothing changed, no version is committed.
    pub objects: Vec<(String, Vec<u8>)>,
    /// The stager's own result.
    pub outcome: R,
}

/// What a commit did.
pub struct Committed<R> {
    /// The manifest committed (the one read when nothing changed).
    pub manifest: Manifest,
    /// Whether a new version was committed.
    pub changed: bool,
    /// Commits refused because another writer committed first.
    pub retries: u32,
    /// Objects written, the manifest included.
    pub objects_written: u64,
    /// Bytes written, the manifest included.
    pub bytes_written: u64,
    /// The stager's result for the version committed.
    pub outcome: R,
}

/// A fault drill's hook: called with each step's name before it runs (`"segments"`,
/// `"deletes"`, `"commit"`, `"history"`); an error stops the change there.
pub type Hook = dyn Fn(&str) -> Result<()> + Send + Sync;

/// Decodes the manifest `bytes` and attaches the value indexes it names.
pub fn read_manifest(store: &dyn ObjectStore, bytes: &[u8]) -> Result<Manifest> {
    let mut manifest = Manifest::decode(MANIFEST_KEY, bytes)?;
    for key in manifest.pending_values() {
        let bytes = store.get(&key)?;
        manifest.attach_values(&key, &bytes)?;
    }
    Ok(manifest)
}

/// Commits the change `stage` makes to the current manifest of `store` (see the
/// module documentation); `what` names the change in the error given when other
/// writers kept committing first.
pub fn commit<R>(
    store: &dyn ObjectStore,
    what: &str,
    hook: &Hook,
    mut stage: impl FnMut(&Manifest) -> Result<Staged<R>>,
) -> Result<Committed<R>> {
    let mut retries = 0;
    loop {
        let (bytes, tag) = store.get_tagged(MANIFEST_KEY)?;
        let manifest = read_manifest(store, &bytes)?;
        let Staged {
            manifest: mut next,
            mut objects,
            outcome,
        } = stage(&manifest)?;
        if objects.is_empty() {
            return Ok(Committed {
                manifest,
                changed: false,
                retries,
                objects_written: 0,
                bytes_written: 0,
                outcome,
            });
        }
        // Value indexes whose dictionary or postings changed go with the segments.
        objects.extend(next.value_objects(Some(&manifest)));
        let (deletes, data): (Vec<_>, Vec<_>) = objects
            .iter()
            .partition(|(k, _)| Naming::kind_of(k) == Some(ObjectKind::Deletes));
        hook("segments")?;
        put_all(store, &data)?;
        hook("deletes")?;
        put_all(store, &deletes)?;
        let version = manifest.meta.version + 1;
        next.meta.version = version;
        next.meta.count = next.meta.partitions.iter().map(|p| p.live()).sum();
        next.meta.committed_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let encoded = next.encode();
        hook("commit")?;
        match store.put_if(MANIFEST_KEY, &encoded, &Precondition::Matches(tag)) {
            Ok(_) => {
                // A copy for garbage collection to know what this version named; the
                // commit above is what counts, so a failure here only keeps more
                // objects alive at the next collection.
                if hook("history").is_ok() {
                    let _ = store.put(&Naming::version_copy_key(version), &encoded);
                }
                let bytes_written = objects.iter().map(|(_, b)| b.len() as u64).sum::<u64>() + encoded.len() as u64;
                return Ok(Committed {
                    manifest: next,
                    changed: true,
                    retries,
                    objects_written: objects.len() as u64 + 1,
                    bytes_written,
                    outcome,
                });
            }
            Err(StorageError::Conflict { .. }) if retries + 1 < MAX_COMMIT_ATTEMPTS => {
                retries += 1;
                std::thread::sleep(backoff(retries));
            }
            Err(StorageError::Conflict { .. }) => {
                return Err(WriteError::bad(
                    "manifest",
                    format!(
                        "gave up {what} after {MAX_COMMIT_ATTEMPTS} conflicting commits: other writers kept committing first"
                    ),
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// How long to wait before attempt `retries + 1`: a little more each time (2 ms
/// doubling to 128 ms), with up to 8 ms of jitter so that two writers do not collide in
/// lockstep (the clock's nanoseconds differ between two racing processes).
fn backoff(retries: u32) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let jitter = xxh3_64(&[nanos.to_le_bytes(), retries.to_le_bytes()].concat());
    Duration::from_millis((2u64 << retries.min(6)) + jitter % 8)
}

fn put_all(store: &dyn ObjectStore, objects: &[&(String, Vec<u8>)]) -> Result<()> {
    use rayon::prelude::*;
    objects
        .par_iter()
        .try_for_each(|(k, b)| store.put(k, b).map_err(WriteError::from))
}
