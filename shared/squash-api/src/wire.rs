//! The worker protocol's wire form: a request travels as JSON (readable, used by the
//! samples in `events/`) or as base64 of its bincode 2 encoding (what invokers send:
//! smaller, faster); an answer as base64 of bincode. Never written to disk.

use crate::worker::{WorkerRequest, WorkerResponse};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use thiserror::Error;

/// A worker invocation's payload: the request as JSON (readable, used by the samples in
/// `events/`) or as base64 of its bincode encoding (what invokers send: smaller, faster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WorkerPayload {
    /// `{"wire": "<base64 of bincode>"}`.
    Wire {
        /// Base64 (standard alphabet, padded) of [`encode_wire`] output.
        wire: String,
    },
    /// A plain JSON [`WorkerRequest`].
    Json(Box<WorkerRequest>),
}

impl WorkerPayload {
    /// Wraps a request for sending.
    pub fn wire<T: Serialize>(value: &T) -> Result<WorkerPayload, WireError> {
        use base64::Engine as _;
        Ok(WorkerPayload::Wire {
            wire: base64::engine::general_purpose::STANDARD.encode(encode_wire(value)?),
        })
    }

    /// The request inside.
    pub fn into_request(self) -> Result<WorkerRequest, WireError> {
        match self {
            WorkerPayload::Json(r) => Ok(*r),
            WorkerPayload::Wire { wire } => decode_base64_wire(&wire),
        }
    }
}

/// A worker's answer as it travels back: `{"wire": "<base64 of bincode WorkerResponse>"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireReply {
    /// Base64 of [`encode_wire`] output.
    pub wire: String,
}

/// Largest reply a worker sends: Lambda refuses a synchronous response over 6 MB (this
/// leaves room for the JSON around the base64 text).
pub const MAX_REPLY_BYTES: usize = 6 * 1024 * 1024 - 1024;

impl WireReply {
    /// Wraps a response.
    pub fn new(resp: &WorkerResponse) -> Result<WireReply, WireError> {
        use base64::Engine as _;
        Ok(WireReply {
            wire: base64::engine::general_purpose::STANDARD.encode(encode_wire(resp)?),
        })
    }

    /// Wraps a response that must fit one Lambda reply: one larger than
    /// [`MAX_REPLY_BYTES`] (a large k asking for attributes with long lists) is an error
    /// that says so and how to ask instead, not a reply Lambda would refuse.
    pub fn within_limit(resp: &WorkerResponse) -> Result<WireReply, WireError> {
        let reply = WireReply::new(resp)?;
        if reply.wire.len() > MAX_REPLY_BYTES {
            let hits = resp.hit_count();
            return Err(WireError(format!(
                "the worker's answer ({hits} hits, {:.1} MB encoded) exceeds Lambda's 6 MB response limit: \
                 ask for fewer hits (k) or leave out \"attributes\" (long list attributes make each hit large)",
                reply.wire.len() as f64 / 1e6
            )));
        }
        Ok(reply)
    }

    /// The response inside.
    pub fn into_response(self) -> Result<WorkerResponse, WireError> {
        decode_base64_wire(&self.wire)
    }
}

fn decode_base64_wire<T: DeserializeOwned>(text: &str) -> Result<T, WireError> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| WireError(format!("bad base64: {e}")))?;
    decode_wire(&bytes)
}

/// Errors of the wire codec.
#[derive(Debug, Error)]
#[error("wire payload error: {0}")]
pub struct WireError(String);

/// Encodes an internal payload with bincode 2 (standard config).
pub fn encode_wire<T: Serialize>(value: &T) -> Result<Vec<u8>, WireError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| WireError(e.to_string()))
}

/// Decodes an internal payload written by [`encode_wire`]; trailing bytes are an error.
pub fn decode_wire<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, bincode::config::standard().with_limit::<{ 64 << 20 }>())
            .map_err(|e| WireError(e.to_string()))?;
    if used != bytes.len() {
        return Err(WireError(format!("{} trailing bytes", bytes.len() - used)));
    }
    Ok(value)
}
