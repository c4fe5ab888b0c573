//! Any bytes as a search request body: parsing never panics, an error always names a
//! field, and a request that parses serialises back to JSON that parses to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use squash_api::SearchRequest;

fuzz_target!(|data: &[u8]| {
    match SearchRequest::from_json(data) {
        Err(e) => assert!(!e.field.is_empty() && !e.message.is_empty()),
        Ok(req) => {
            let again = serde_json::to_vec(&req).expect("serialises");
            let back = SearchRequest::from_json(&again).expect("its own JSON parses");
            // NaN cannot come out of JSON, so equality holds.
            assert_eq!(back, req);
        }
    }
});
