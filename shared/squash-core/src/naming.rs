//! The naming scheme: how every object key of an index and every checksum the manifest
//! records are formed, in one place. Keys embed a content hash (so an object under a
//! key never changes and caches never serve stale bytes); checksums are XXH3-64 in 16
//! lower-case hex digits. `docs/FORMAT.md` lists the keys.

use crate::error::{CoreError, Result};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

/// The key of the current manifest (the commit point of every write).
pub const MANIFEST_KEY: &str = "manifest.sqm";

/// Prefix of the copies of committed manifests (one per version, for garbage collection).
pub const VERSIONS_PREFIX: &str = "versions/";

/// Prefix of every data object (segments, deletion sets, value indexes).
pub const SEGMENTS_PREFIX: &str = "segments/";

/// What an object under a key of the scheme is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A partition's base or delta segment (`segments/pNNNNN-<hash>.sqs`).
    Segment,
    /// A segment's deletion set (`segments/pNNNNN-<hash>.sqd`).
    Deletes,
    /// An attribute's value index (`segments/values-aNNN-<hash>.sqv`).
    Values,
    /// The current manifest (`manifest.sqm`).
    Manifest,
    /// A committed version's copy (`versions/<20-digit version>.sqm`).
    VersionCopy,
}

/// The naming scheme (associated functions only).
pub struct Naming;

impl Naming {
    /// The checksum the manifest records for `bytes`.
    pub fn checksum(bytes: &[u8]) -> String {
        format!("{:016x}", xxh3_64(bytes))
    }

    /// The key of a segment of partition `partition` holding `bytes`.
    pub fn segment_key(partition: u32, bytes: &[u8]) -> String {
        format!("{SEGMENTS_PREFIX}p{partition:05}-{:032x}.sqs", xxh3_128(bytes))
    }

    /// The key of a deletion set of a segment of partition `partition` holding `bytes`.
    pub fn deletes_key(partition: u32, bytes: &[u8]) -> String {
        format!("{SEGMENTS_PREFIX}p{partition:05}-{:032x}.sqd", xxh3_128(bytes))
    }

    /// The key of attribute `attr`'s value index holding `bytes`.
    pub fn values_key(attr: usize, bytes: &[u8]) -> String {
        format!("{SEGMENTS_PREFIX}values-a{attr:03}-{:032x}.sqv", xxh3_128(bytes))
    }

    /// The key of version `version`'s manifest copy.
    pub fn version_copy_key(version: u64) -> String {
        format!("{VERSIONS_PREFIX}{version:020}.sqm")
    }

    /// The version a manifest copy's key names (`None` for any other key).
    pub fn version_of_copy(key: &str) -> Option<u64> {
        key.strip_prefix(VERSIONS_PREFIX)?.strip_suffix(".sqm")?.parse().ok()
    }

    /// The partition a segment's or deletion set's key names.
    pub fn partition_of(key: &str) -> Option<u32> {
        let rest = key.strip_prefix(SEGMENTS_PREFIX)?.strip_prefix('p')?;
        rest.get(..5)?.parse().ok()
    }

    /// What the object under `key` is (`None` for a key outside the scheme).
    pub fn kind_of(key: &str) -> Option<ObjectKind> {
        if key == MANIFEST_KEY {
            return Some(ObjectKind::Manifest);
        }
        if Naming::version_of_copy(key).is_some() {
            return Some(ObjectKind::VersionCopy);
        }
        let name = key.strip_prefix(SEGMENTS_PREFIX)?;
        if name.starts_with("values-") && name.ends_with(".sqv") {
            return Some(ObjectKind::Values);
        }
        if !name.starts_with('p') {
            return None;
        }
        if name.ends_with(".sqs") {
            Some(ObjectKind::Segment)
        } else if name.ends_with(".sqd") {
            Some(ObjectKind::Deletes)
        } else {
            None
        }
    }

    /// Checks that `bytes`, read under `key`, are the `len` bytes with checksum
    /// `checksum` the manifest records; the error names the object and both sides.
    pub fn verify(key: &str, bytes: &[u8], len: u64, checksum: &str) -> Result<()> {
        let sum = Naming::checksum(bytes);
        if bytes.len() as u64 != len || sum != checksum {
            return Err(CoreError::corrupt(
                key,
                format!(
                    "{} bytes with checksum {sum}, the manifest says {len} bytes, {checksum}",
                    bytes.len()
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_their_kind_and_numbers() {
        let s = Naming::segment_key(7, b"abc");
        assert!(s.starts_with("segments/p00007-") && s.ends_with(".sqs"), "{s}");
        assert_eq!(Naming::kind_of(&s), Some(ObjectKind::Segment));
        assert_eq!(Naming::partition_of(&s), Some(7));
        let d = Naming::deletes_key(12, b"abc");
        assert_eq!(Naming::kind_of(&d), Some(ObjectKind::Deletes));
        assert_eq!(Naming::partition_of(&d), Some(12));
        assert_ne!(Naming::segment_key(7, b"abc"), Naming::segment_key(7, b"abd"));
        let v = Naming::values_key(3, b"x");
        assert!(v.starts_with("segments/values-a003-"), "{v}");
        assert_eq!(Naming::kind_of(&v), Some(ObjectKind::Values));
        assert_eq!(Naming::partition_of(&v), None);
        let c = Naming::version_copy_key(42);
        assert_eq!(c, "versions/00000000000000000042.sqm");
        assert_eq!(Naming::version_of_copy(&c), Some(42));
        assert_eq!(Naming::kind_of(&c), Some(ObjectKind::VersionCopy));
        assert_eq!(Naming::kind_of(MANIFEST_KEY), Some(ObjectKind::Manifest));
        assert_eq!(Naming::kind_of("segments/other.bin"), None);
        assert_eq!(Naming::kind_of("versions/x.sqm"), None);
    }

    #[test]
    fn verify_names_the_object_and_catches_size_and_content() {
        let bytes = b"hello";
        let sum = Naming::checksum(bytes);
        assert_eq!(sum.len(), 16);
        Naming::verify("k", bytes, 5, &sum).unwrap();
        let e = Naming::verify("segments/p1.sqs", bytes, 6, &sum)
            .unwrap_err()
            .to_string();
        assert!(e.contains("segments/p1.sqs") && e.contains("6 bytes"), "{e}");
        assert!(Naming::verify("k", b"hellp", 5, &sum).is_err());
    }
}
