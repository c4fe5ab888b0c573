//! Any bytes as a stored object: the segment, manifest and value-index decoders never
//! panic; they decode or return an error naming the object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use squash_core::manifest::Manifest;
use squash_core::segment::Segment;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = Segment::decode("fuzz.sqs", data.to_vec()) {
        assert!(e.to_string().contains("fuzz.sqs"), "{e}");
    }
    if let Err(e) = Manifest::decode("fuzz.sqm", data) {
        assert!(e.to_string().contains("fuzz.sqm"), "{e}");
    }
    if let Err(e) = squash_core::values::decode_values("fuzz.sqv", data) {
        assert!(e.to_string().contains("fuzz.sqv"), "{e}");
    }
});
