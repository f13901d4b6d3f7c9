use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// How a raw payload is written, so the mapping engine knows how to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// One JSON value (an object, for a record).
    Json,
    /// One XML document or fragment. Text is UTF-8 once it leaves a
    /// connector: the transport decodes GBK/GB18030 and strips a BOM.
    Xml,
}

/// One record as the external system sent it, before any mapping.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// The payload exactly as received (after transport decoding to UTF-8).
    pub payload: Bytes,
    pub format: PayloadFormat,
    /// When the hub fetched it, UTC epoch milliseconds.
    pub fetched_at_ms: i64,
    /// Where in the source it came from, for a person reading the DLQ:
    /// `inbox/cases-1101.jsonl:17`, `GET /api/cases?page=3`.
    pub origin: String,
}

/// Something the source fetched but could not turn into records: a file in
/// an unknown encoding, a truncated XML document, a payload over the size
/// limit. The runtime sends it to the dead-letter topic; it is never dropped.
#[derive(Debug, Clone)]
pub struct RawReject {
    /// As much of the raw input as the size limit allows.
    pub payload: Bytes,
    /// True when `payload` is shorter than what the source held.
    pub truncated: bool,
    /// The whole record's length in bytes, when `payload` was cut.
    pub length: Option<u64>,
    pub fetched_at_ms: i64,
    pub origin: String,
    /// A reason a person can read.
    pub reason: String,
}

/// A source position: a watermark, a file and offset, a keyset. Opaque to
/// the runtime, which stores it in the compacted cursor topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(pub serde_json::Value);

impl Cursor {
    pub fn new(value: serde_json::Value) -> Self {
        Self(value)
    }

    /// Reads the cursor back into a source's own cursor type.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(self.0.clone())
    }

    pub fn encode<T: Serialize>(value: &T) -> Self {
        // Cursor types are plain structs of strings and numbers; a failure
        // here is a programming error in a connector.
        Self(serde_json::to_value(value).expect("cursor types serialize to JSON"))
    }
}

/// A batch of raw records with the cursor that covers it: once every record
/// (and reject) in it is durable, the source may resume after `cursor`.
#[derive(Debug, Clone)]
pub struct Batch {
    pub records: Vec<RawRecord>,
    pub rejects: Vec<RawReject>,
    pub cursor: Cursor,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.records.len() + self.rejects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
