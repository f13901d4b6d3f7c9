//! Provenance travels with every record as Kafka headers, and with every
//! dead letter inside its JSON body: anyone can answer "where did this
//! come from".

use rdkafka::message::{Header, OwnedHeaders};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a record came from and what turned it into its canonical form.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Provenance {
    pub source_system: String,
    /// The source's own record id, when the record could be read.
    pub source_id: Option<String>,
    /// When the hub fetched it, UTC epoch milliseconds.
    pub fetched_at_ms: i64,
    /// The transport that fetched it (`file_drop`, `http_poll`, …).
    pub connector: String,
    pub pipeline: String,
    pub mapping: String,
    pub mapping_version: u32,
    /// SHA-256 of the raw payload, hex.
    pub payload_sha256: String,
    /// Where inside the source: file and line, request and position.
    pub origin: String,
    /// The code tables the mapping used and their versions
    /// (`name@version,…`); empty when it uses none.
    #[serde(default)]
    pub code_tables: String,
}

impl Provenance {
    pub fn hash(payload: &[u8]) -> String {
        hex::encode(Sha256::digest(payload))
    }
}

/// Header names, stable: consumers read them.
pub(super) mod names {
    pub(crate) const SOURCE_SYSTEM: &str = "duijie-source-system";
    pub(crate) const SOURCE_ID: &str = "duijie-source-id";
    pub(crate) const FETCHED_AT: &str = "duijie-fetched-at";
    pub(crate) const CONNECTOR: &str = "duijie-connector";
    pub(crate) const PIPELINE: &str = "duijie-pipeline";
    pub(crate) const MAPPING: &str = "duijie-mapping";
    pub(crate) const MAPPING_VERSION: &str = "duijie-mapping-version";
    pub(crate) const PAYLOAD_SHA256: &str = "duijie-payload-sha256";
    pub(crate) const ORIGIN: &str = "duijie-origin";
    pub(crate) const SCHEMA: &str = "duijie-schema";
    pub(crate) const CONTENT_TYPE: &str = "content-type";
    pub(crate) const RAW: &str = "duijie-raw";
    pub(crate) const PAYLOAD_FORMAT: &str = "duijie-payload-format";
    pub(crate) const CODE_TABLES: &str = "duijie-code-tables";
}

/// The Kafka headers of a canonical record.
pub fn headers(p: &Provenance, schema: &str, content_type: &str) -> OwnedHeaders {
    let fetched = chrono::DateTime::from_timestamp_millis(p.fetched_at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    let version = p.mapping_version.to_string();
    let mut h = OwnedHeaders::new_with_capacity(11)
        .insert(header(names::SOURCE_SYSTEM, &p.source_system))
        .insert(header(names::FETCHED_AT, &fetched))
        .insert(header(names::CONNECTOR, &p.connector))
        .insert(header(names::PIPELINE, &p.pipeline))
        .insert(header(names::MAPPING, &p.mapping))
        .insert(header(names::MAPPING_VERSION, &version))
        .insert(header(names::PAYLOAD_SHA256, &p.payload_sha256))
        .insert(header(names::ORIGIN, &p.origin))
        .insert(header(names::SCHEMA, schema))
        .insert(header(names::CONTENT_TYPE, content_type));
    if let Some(id) = &p.source_id {
        h = h.insert(header(names::SOURCE_ID, id));
    }
    if !p.code_tables.is_empty() {
        h = h.insert(header(names::CODE_TABLES, &p.code_tables));
    }
    h
}

/// Where a canonical record's raw payload is kept (pipelines with raw
/// retention): the `duijie-raw` header, `TOPIC/PARTITION/OFFSET` (a topic
/// name holds no `/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawRef {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for RawRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

impl std::str::FromStr for RawRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.rsplitn(3, '/');
        let (Some(offset), Some(partition), Some(topic)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("`{s}` is not TOPIC/PARTITION/OFFSET"));
        };
        Ok(Self {
            topic: topic.to_owned(),
            partition: partition.parse().map_err(|_| format!("`{s}`: partition"))?,
            offset: offset.parse().map_err(|_| format!("`{s}`: offset"))?,
        })
    }
}

impl RawRef {
    /// The pointer a record's headers carry, if any.
    pub fn from_headers(h: &std::collections::BTreeMap<String, String>) -> Option<Self> {
        h.get(names::RAW)?.parse().ok()
    }
}

/// The pointer header of a canonical record to its raw record.
pub fn with_raw(h: OwnedHeaders, raw: &RawRef) -> OwnedHeaders {
    let text = raw.to_string();
    h.insert(header(names::RAW, &text))
}

/// The headers of a raw record (what was fetched, as fetched): its
/// provenance without mapping, and the payload's format (`json`, `xml`).
pub fn raw_headers(p: &Provenance, format: &str) -> OwnedHeaders {
    let fetched = chrono::DateTime::from_timestamp_millis(p.fetched_at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    OwnedHeaders::new_with_capacity(8)
        .insert(header(names::SOURCE_SYSTEM, &p.source_system))
        .insert(header(names::FETCHED_AT, &fetched))
        .insert(header(names::CONNECTOR, &p.connector))
        .insert(header(names::PIPELINE, &p.pipeline))
        .insert(header(names::PAYLOAD_SHA256, &p.payload_sha256))
        .insert(header(names::ORIGIN, &p.origin))
        .insert(header(names::PAYLOAD_FORMAT, format))
        .insert(header(names::CONTENT_TYPE, "application/octet-stream"))
}

/// The headers every record of a batch shares (system, fetch time,
/// connector, pipeline, mapping and version, schema, content type), built
/// once; each record adds its own source id, payload hash and origin. On
/// the wire the same headers as [`headers`] writes.
#[derive(Debug, Clone)]
pub struct HeaderTemplate {
    base: OwnedHeaders,
    /// The fetch time the template carries.
    pub fetched_at_ms: i64,
}

impl HeaderTemplate {
    /// From a provenance whose per-record fields are ignored.
    pub fn new(p: &Provenance, schema: &str, content_type: &str) -> Self {
        let fetched = chrono::DateTime::from_timestamp_millis(p.fetched_at_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default();
        let version = p.mapping_version.to_string();
        let mut base = OwnedHeaders::new_with_capacity(12)
            .insert(header(names::SOURCE_SYSTEM, &p.source_system))
            .insert(header(names::FETCHED_AT, &fetched))
            .insert(header(names::CONNECTOR, &p.connector))
            .insert(header(names::PIPELINE, &p.pipeline))
            .insert(header(names::MAPPING, &p.mapping))
            .insert(header(names::MAPPING_VERSION, &version))
            .insert(header(names::SCHEMA, schema))
            .insert(header(names::CONTENT_TYPE, content_type));
        if !p.code_tables.is_empty() {
            base = base.insert(header(names::CODE_TABLES, &p.code_tables));
        }
        Self {
            base,
            fetched_at_ms: p.fetched_at_ms,
        }
    }

    /// One record's headers.
    pub fn record(
        &self,
        source_id: Option<&str>,
        payload_sha256: &str,
        origin: &str,
    ) -> OwnedHeaders {
        let mut h = self
            .base
            .clone()
            .insert(header(names::PAYLOAD_SHA256, payload_sha256))
            .insert(header(names::ORIGIN, origin));
        if let Some(id) = source_id {
            h = h.insert(header(names::SOURCE_ID, id));
        }
        h
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

/// A record that did not become canonical, with everything needed to
/// understand and replay it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeadLetter {
    /// A reason a person can read.
    pub reason: String,
    /// The output field whose rule failed, if any.
    pub field: Option<String>,
    /// The rule that failed: `parse`, `regex`, `codes`, `connector`, …
    pub rule: String,
    /// The raw payload: text when it is UTF-8, else base64 (see
    /// `raw_encoding`).
    pub raw: String,
    /// `utf-8` or `base64`.
    pub raw_encoding: String,
    /// The payload was cut: at the source's record size limit, or to fit
    /// the dead-letter topic's message size.
    pub raw_truncated: bool,
    /// The whole payload's length in bytes (its SHA-256 is the
    /// provenance's `payload_sha256`).
    #[serde(default)]
    pub raw_length: Option<u64>,
    pub provenance: Provenance,
    /// When the hub dead-lettered it, UTC epoch milliseconds.
    pub at_ms: i64,
}

impl DeadLetter {
    /// A dead letter whose JSON form is at most `max_bytes`: the payload is
    /// kept whole when it fits, else its head (cut on a character boundary
    /// when it is text), with `raw_truncated` set and `raw_length` the
    /// whole length.
    pub fn bounded(
        payload: &[u8],
        truncated: bool,
        field: Option<String>,
        rule: &str,
        reason: String,
        provenance: Provenance,
        max_bytes: usize,
    ) -> Self {
        let mut letter = DeadLetter {
            reason,
            field,
            rule: rule.to_owned(),
            raw: String::new(),
            raw_encoding: String::new(),
            raw_truncated: truncated,
            raw_length: Some(payload.len() as u64),
            provenance,
            at_ms: chrono::Utc::now().timestamp_millis(),
        };
        let text = std::str::from_utf8(payload).is_ok();
        let mut keep = payload.len();
        for _ in 0..12 {
            let mut head = &payload[..keep];
            if text {
                // A cut inside a character would turn the text into base64.
                let valid = std::str::from_utf8(head).map_or_else(|e| e.valid_up_to(), str::len);
                head = &head[..valid];
            }
            (letter.raw, letter.raw_encoding) = Self::raw_text(head);
            letter.raw_truncated = truncated || head.len() < payload.len();
            let size = serde_json::to_vec(&letter).map_or(usize::MAX, |v| v.len());
            if size <= max_bytes {
                return letter;
            }
            // Shrink by the share that is over, and a margin.
            keep = (head.len() as f64 * (max_bytes as f64 / size as f64) * 0.95) as usize;
        }
        letter.raw.clear();
        letter.raw_truncated = true;
        letter
    }

    pub fn raw_text(payload: &[u8]) -> (String, String) {
        match std::str::from_utf8(payload) {
            Ok(s) => (s.to_owned(), "utf-8".into()),
            Err(_) => {
                use base64::Engine;
                (
                    base64::engine::general_purpose::STANDARD.encode(payload),
                    "base64".into(),
                )
            }
        }
    }

    /// The raw payload bytes back.
    pub fn raw_bytes(&self) -> Vec<u8> {
        if self.raw_encoding == "base64" {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(&self.raw)
                .unwrap_or_default()
        } else {
            self.raw.as_bytes().to_vec()
        }
    }
}
