//! The container every squash object uses: a magic, a format version, the total
//! length, a table of checksummed sections and a header checksum, then the section
//! payloads (8-byte aligned, zero padded). `docs/FORMAT.md` describes every byte.
//!
//! This file is the only place that lays out bytes of the container; swapping the
//! codec means changing this file and the section codecs in `segment/` / `manifest.rs`.

use crate::error::{CoreError, Result};
use std::borrow::Cow;
use xxhash_rust::xxh3::xxh3_64;

/// Current format version written by this build.
pub const FORMAT_VERSION: u32 = 3;
/// Size of the fixed header before the section table.
const FIXED_HEADER: usize = 24;
/// Size of one section-table entry.
const ENTRY: usize = 40;
/// zstd level for compressed sections.
const ZSTD_LEVEL: i32 = 3;

/// How a section's payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Stored as is.
    Raw = 0,
    /// zstd frame.
    Zstd = 1,
}

/// One section to write.
pub struct SectionOut {
    /// Section kind (meaning depends on the object type).
    pub kind: u32,
    /// Storage codec.
    pub codec: Codec,
    /// Uncompressed payload.
    pub bytes: Vec<u8>,
}

impl SectionOut {
    /// A section stored as it is (codes, vectors: scanned at memory speed).
    pub fn raw(kind: u32, bytes: Vec<u8>) -> SectionOut {
        SectionOut {
            kind,
            codec: Codec::Raw,
            bytes,
        }
    }

    /// A section stored zstd-compressed (ids, attributes, metadata).
    pub fn zstd(kind: u32, bytes: Vec<u8>) -> SectionOut {
        SectionOut {
            kind,
            codec: Codec::Zstd,
            bytes,
        }
    }
}

/// Serialises sections into one object with the given magic.
pub fn write_container(magic: &[u8; 8], sections: Vec<SectionOut>) -> Vec<u8> {
    let mut stored: Vec<(u32, Codec, Vec<u8>, u64)> = Vec::with_capacity(sections.len());
    for s in sections {
        let raw_len = s.bytes.len() as u64;
        let data = match s.codec {
            Codec::Raw => s.bytes,
            // Encoding into a Vec cannot fail for in-memory data.
            Codec::Zstd => zstd::bulk::compress(&s.bytes, ZSTD_LEVEL).unwrap_or_else(|_| Vec::new()),
        };
        stored.push((s.kind, s.codec, data, raw_len));
    }
    let header_len = FIXED_HEADER + ENTRY * stored.len() + 8;
    let mut offset = align8(header_len);
    let mut entries = Vec::with_capacity(stored.len());
    for (kind, codec, data, raw_len) in &stored {
        entries.push((*kind, *codec, offset as u64, data.len() as u64, *raw_len, xxh3_64(data)));
        offset = align8(offset + data.len());
    }
    let total = offset;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(magic);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
    out.extend_from_slice(&(total as u64).to_le_bytes());
    for (kind, codec, off, len, raw_len, sum) in &entries {
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&(*codec as u32).to_le_bytes());
        out.extend_from_slice(&off.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&raw_len.to_le_bytes());
        out.extend_from_slice(&sum.to_le_bytes());
    }
    let header_sum = xxh3_64(&out);
    out.extend_from_slice(&header_sum.to_le_bytes());
    for (_, _, data, _) in &stored {
        out.resize(align8(out.len()), 0);
        out.extend_from_slice(data);
    }
    out.resize(total, 0);
    out
}

fn align8(x: usize) -> usize {
    x.div_ceil(8) * 8
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    kind: u32,
    codec: u32,
    offset: u64,
    len: u64,
    raw_len: u64,
    checksum: u64,
}

/// A parsed container whose header has been verified; sections are verified when read.
pub struct Container<'a> {
    object: String,
    bytes: &'a [u8],
    entries: Vec<Entry>,
    /// Whether section checksums are checked when a section is read.
    verify: bool,
    /// Format version found in the object.
    pub version: u32,
}

impl<'a> Container<'a> {
    /// Checks magic, version, length, header checksum, section bounds and padding.
    /// `object` names the object in errors.
    pub fn parse(object: &str, magic: &[u8; 8], bytes: &'a [u8]) -> Result<Container<'a>> {
        let bad = |reason: String| CoreError::corrupt(object, reason);
        if bytes.len() < FIXED_HEADER + 8 {
            return Err(bad(format!("{} bytes is too short for a squash object", bytes.len())));
        }
        if &bytes[..8] != magic {
            return Err(bad(format!(
                "wrong magic {:?} (expected {:?})",
                String::from_utf8_lossy(&bytes[..8]),
                String::from_utf8_lossy(magic)
            )));
        }
        let version = u32_at(bytes, 8);
        let count = u32_at(bytes, 12) as usize;
        let total = u64_at(bytes, 16);
        let header_len = FIXED_HEADER
            .checked_add(
                count
                    .checked_mul(ENTRY)
                    .ok_or_else(|| bad("section count overflows".into()))?,
            )
            .ok_or_else(|| bad("section count overflows".into()))?;
        if header_len + 8 > bytes.len() {
            return Err(bad(format!(
                "header claims {count} sections but the object has {} bytes",
                bytes.len()
            )));
        }
        let stored_sum = u64_at(bytes, header_len);
        if xxh3_64(&bytes[..header_len]) != stored_sum {
            return Err(bad("header checksum mismatch".into()));
        }
        if version < FORMAT_VERSION {
            return Err(CoreError::OutdatedVersion {
                object: object.to_string(),
                found: version,
            });
        }
        if version > FORMAT_VERSION {
            return Err(CoreError::UnsupportedVersion {
                object: object.to_string(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if total != bytes.len() as u64 {
            return Err(bad(format!(
                "object is {} bytes but its header says {total} (truncated or padded)",
                bytes.len()
            )));
        }
        let mut entries = Vec::with_capacity(count);
        let mut covered = align8(header_len + 8);
        for i in 0..count {
            let at = FIXED_HEADER + i * ENTRY;
            let e = Entry {
                kind: u32_at(bytes, at),
                codec: u32_at(bytes, at + 4),
                offset: u64_at(bytes, at + 8),
                len: u64_at(bytes, at + 16),
                raw_len: u64_at(bytes, at + 24),
                checksum: u64_at(bytes, at + 32),
            };
            let end = e
                .offset
                .checked_add(e.len)
                .ok_or_else(|| bad(format!("section {} overflows", e.kind)))?;
            if end > total || (e.offset as usize) < covered {
                return Err(bad(format!("section {} lies outside the object or overlaps", e.kind)));
            }
            if bytes[covered..e.offset as usize].iter().any(|&b| b != 0) {
                return Err(bad("non-zero padding".into()));
            }
            covered = end as usize;
            entries.push(e);
        }
        if bytes[covered..].iter().any(|&b| b != 0) {
            return Err(bad("non-zero padding at the end".into()));
        }
        Ok(Container {
            object: object.to_string(),
            bytes,
            entries,
            verify: true,
            version,
        })
    }

    /// Stops checking section checksums on read: for callers that have verified the
    /// whole object's checksum already (against the manifest), so no byte is hashed twice.
    pub fn trust_section_checksums(&mut self) {
        self.verify = false;
    }

    fn entry(&self, kind: u32) -> Result<(Entry, &'a [u8])> {
        let bad = |reason: String| CoreError::corrupt(&self.object, reason);
        let e = *self
            .entries
            .iter()
            .find(|e| e.kind == kind)
            .ok_or_else(|| bad(format!("section {kind} is missing")))?;
        let data = &self.bytes[e.offset as usize..(e.offset + e.len) as usize];
        if self.verify && xxh3_64(data) != e.checksum {
            return Err(bad(format!("section {kind} checksum mismatch")));
        }
        Ok((e, data))
    }

    /// Where the payload of raw section `kind` lies in the object, after verifying it:
    /// for reading it in place.
    pub fn raw_range(&self, kind: u32) -> Result<std::ops::Range<usize>> {
        self.entry(kind)?;
        self.raw_range_unverified(kind)
    }

    /// As [`Container::raw_range`], without hashing the payload: for a buffer that does
    /// not hold it yet (a segment read by ranges verifies its parts as they arrive).
    pub fn raw_range_unverified(&self, kind: u32) -> Result<std::ops::Range<usize>> {
        let e = *self
            .entries
            .iter()
            .find(|e| e.kind == kind)
            .ok_or_else(|| CoreError::corrupt(&self.object, format!("section {kind} is missing")))?;
        if e.codec != Codec::Raw as u32 || e.raw_len != e.len {
            return Err(CoreError::corrupt(
                &self.object,
                format!("section {kind} is not stored raw"),
            ));
        }
        Ok(e.offset as usize..(e.offset + e.len) as usize)
    }

    /// True when the object has a section of kind `kind`.
    pub fn has_section(&self, kind: u32) -> bool {
        self.entries.iter().any(|e| e.kind == kind)
    }

    /// Returns the verified, decompressed payload of section `kind`.
    pub fn section(&self, kind: u32) -> Result<Cow<'a, [u8]>> {
        let bad = |reason: String| CoreError::corrupt(&self.object, reason);
        let (e, data) = self.entry(kind)?;
        match e.codec {
            0 => {
                if e.raw_len != e.len {
                    return Err(bad(format!("section {kind} raw length mismatch")));
                }
                Ok(Cow::Borrowed(data))
            }
            1 => {
                let raw_len = usize::try_from(e.raw_len).map_err(|_| bad("section too large".into()))?;
                // The stored length is trusted for the first allocation only as far as
                // the frame could plausibly expand: a damaged (or forged) length must
                // come back as an error, never as an allocation that aborts the process.
                // One byte past it is read, so a frame longer than declared is caught.
                let mut out = Vec::with_capacity(raw_len.min(data.len().saturating_mul(1024)));
                let decoder = zstd::stream::read::Decoder::with_buffer(data)
                    .map_err(|err| bad(format!("section {kind} does not decompress: {err}")))?;
                std::io::Read::read_to_end(&mut std::io::Read::take(decoder, e.raw_len.saturating_add(1)), &mut out)
                    .map_err(|err| bad(format!("section {kind} does not decompress: {err}")))?;
                if out.len() != raw_len {
                    return Err(bad(format!("section {kind} decompressed to the wrong length")));
                }
                Ok(Cow::Owned(out))
            }
            other => Err(bad(format!("section {kind} has unknown codec {other}"))),
        }
    }

    /// The object name used in errors.
    pub fn object(&self) -> &str {
        &self.object
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Little-endian encoders and checked decoders for section payloads.
pub mod le {
    use crate::error::{CoreError, Result};

    /// Appends f32 values.
    pub fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
        out.reserve(v.len() * 4);
        for x in v {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    /// Appends f64 values.
    pub fn put_f64s(out: &mut Vec<u8>, v: &[f64]) {
        out.reserve(v.len() * 8);
        for x in v {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    /// Appends u64 values.
    pub fn put_u64s(out: &mut Vec<u8>, v: &[u64]) {
        out.reserve(v.len() * 8);
        for x in v {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    /// Appends u32 values.
    pub fn put_u32s(out: &mut Vec<u8>, v: &[u32]) {
        out.reserve(v.len() * 4);
        for x in v {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }

    /// A bounds-checked reader over a section payload.
    pub struct Reader<'a> {
        bytes: &'a [u8],
        at: usize,
        object: &'a str,
        section: &'static str,
    }

    impl<'a> Reader<'a> {
        /// Starts reading `bytes` (section `section` of `object`, for errors).
        pub fn new(bytes: &'a [u8], object: &'a str, section: &'static str) -> Self {
            Reader {
                bytes,
                at: 0,
                object,
                section,
            }
        }
        /// Takes the next `n` bytes.
        pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
            let end = self
                .at
                .checked_add(n)
                .filter(|&e| e <= self.bytes.len())
                .ok_or_else(|| {
                    CoreError::corrupt(
                        self.object,
                        format!("{} section is shorter than its contents claim", self.section),
                    )
                })?;
            let s = &self.bytes[self.at..end];
            self.at = end;
            Ok(s)
        }
        /// Reads `n` f32 values.
        pub fn f32s(&mut self, n: usize) -> Result<Vec<f32>> {
            let b = self.take(n.saturating_mul(4))?;
            Ok(b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        }
        /// Reads `n` f64 values.
        pub fn f64s(&mut self, n: usize) -> Result<Vec<f64>> {
            let b = self.take(n.saturating_mul(8))?;
            Ok(b.chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect())
        }
        /// Reads `n` u64 values.
        pub fn u64s(&mut self, n: usize) -> Result<Vec<u64>> {
            let b = self.take(n.saturating_mul(8))?;
            Ok(b.chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect())
        }
        /// Reads `n` u32 values.
        pub fn u32s(&mut self, n: usize) -> Result<Vec<u32>> {
            let b = self.take(n.saturating_mul(4))?;
            Ok(b.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        }
        /// Reads one u32.
        pub fn u32(&mut self) -> Result<u32> {
            let b = self.take(4)?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        /// Fails unless every byte was consumed.
        pub fn finish(self) -> Result<()> {
            if self.at != self.bytes.len() {
                return Err(CoreError::corrupt(
                    self.object,
                    format!(
                        "{} section has {} unexpected trailing bytes",
                        self.section,
                        self.bytes.len() - self.at
                    ),
                ));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flip_detected() {
        let bytes = write_container(
            b"SQUASHT1",
            vec![
                SectionOut {
                    kind: 1,
                    codec: Codec::Zstd,
                    bytes: b"hello hello hello".to_vec(),
                },
                SectionOut {
                    kind: 2,
                    codec: Codec::Raw,
                    bytes: vec![1, 2, 3],
                },
            ],
        );
        let c = Container::parse("t", b"SQUASHT1", &bytes).unwrap();
        assert_eq!(&*c.section(1).unwrap(), b"hello hello hello");
        assert_eq!(&*c.section(2).unwrap(), &[1, 2, 3]);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            let ok = Container::parse("t", b"SQUASHT1", &bad)
                .and_then(|c| Ok((c.section(1)?.to_vec(), c.section(2)?.to_vec())));
            assert!(ok.is_err(), "flip at byte {i} went unnoticed");
        }
        assert!(Container::parse("t", b"SQUASHT1", &bytes[..bytes.len() - 1]).is_err());
    }

    /// A compressed section whose stored length is absurd (with both checksums made to
    /// match, as a fuzzer does) is an error naming the object, not an aborting allocation.
    #[test]
    fn absurd_decompressed_length_is_an_error() {
        let bytes = write_container(b"SQUASHT1", vec![SectionOut::zstd(1, b"hello hello hello".to_vec())]);
        for raw_len in [1u64 << 40, (1 << 62) + 3, u64::MAX, 16, 18] {
            let mut bad = bytes.clone();
            bad[FIXED_HEADER + 24..FIXED_HEADER + 32].copy_from_slice(&raw_len.to_le_bytes());
            let header_len = FIXED_HEADER + ENTRY;
            let sum = xxh3_64(&bad[..header_len]);
            bad[header_len..header_len + 8].copy_from_slice(&sum.to_le_bytes());
            let c = Container::parse("t.sqs", b"SQUASHT1", &bad).unwrap();
            let err = c.section(1).unwrap_err().to_string();
            assert!(err.contains("t.sqs"), "{err}");
        }
    }
}
