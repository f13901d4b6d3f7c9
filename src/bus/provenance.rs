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

    /// The provenance a consumed record's headers carry (as
    /// [`super::header_map`] gives them: the packed header unpacked, or the
    /// one-header-per-field headers of older records). A field the headers
    /// lack is empty; a missing fetch time is 0 (see
    /// [`Provenance::fetched_at_text`]).
    pub fn from_headers(h: &std::collections::BTreeMap<String, String>) -> Self {
        let get = |k: &str| h.get(k).cloned().unwrap_or_default();
        Self {
            source_system: get(names::SOURCE_SYSTEM),
            source_id: h.get(names::SOURCE_ID).cloned(),
            fetched_at_ms: h
                .get(names::FETCHED_AT)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or(0, |t| t.timestamp_millis()),
            connector: get(names::CONNECTOR),
            pipeline: get(names::PIPELINE),
            mapping: get(names::MAPPING),
            mapping_version: h
                .get(names::MAPPING_VERSION)
                .and_then(|v| v.parse().ok())
                .unwrap_or_default(),
            payload_sha256: get(names::PAYLOAD_SHA256),
            origin: get(names::ORIGIN),
            code_tables: get(names::CODE_TABLES),
        }
    }

    /// The fetch time as RFC 3339 with milliseconds (UTC), empty when
    /// unknown.
    pub fn fetched_at_text(&self) -> String {
        if self.fetched_at_ms == 0 {
            String::new()
        } else {
            rfc3339_ms(self.fetched_at_ms)
        }
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

/// The one provenance header every record the hub writes carries:
/// `duijie-provenance`, a packed, versioned layout (docs/OPERATING.md, "The
/// provenance header"; `scripts/provenance.py` decodes it outside the hub).
///
/// Layout version 1: one byte `0x01`, then fields, each a tag byte, its
/// value's length as an unsigned LEB128 varint, and the value. Tags (text
/// is UTF-8):
///
/// | tag | field | value |
/// | --- | --- | --- |
/// | 1 | source system | text |
/// | 2 | source record id | text (absent when unknown) |
/// | 3 | fetched at | i64 big-endian, UTC epoch milliseconds |
/// | 4 | connector | text |
/// | 5 | pipeline | text |
/// | 6 | mapping | text |
/// | 7 | mapping version | u32 big-endian |
/// | 8 | payload SHA-256 | 32 bytes |
/// | 9 | origin | text |
/// | 10 | schema (Avro full name) | text |
/// | 11 | content type | text |
/// | 12 | code tables (`name@version,…`) | text |
/// | 13 | raw record (`TOPIC/PARTITION/OFFSET`) | text |
/// | 14 | payload format of a raw record (`json`, `xml`) | text |
///
/// A reader skips a tag it does not know (later fields are added as new
/// tags) and refuses another layout version. One header instead of one per
/// field: librdkafka allocates, copies and frees every header of every
/// record, and eleven of them cost a sixth of the hub's CPU.
pub const PROVENANCE_HEADER: &str = "duijie-provenance";

/// The layout version [`PackedProvenance`] writes.
pub const PROVENANCE_LAYOUT: u8 = 1;

mod tag {
    pub(super) const SOURCE_SYSTEM: u8 = 1;
    pub(super) const SOURCE_ID: u8 = 2;
    pub(super) const FETCHED_AT: u8 = 3;
    pub(super) const CONNECTOR: u8 = 4;
    pub(super) const PIPELINE: u8 = 5;
    pub(super) const MAPPING: u8 = 6;
    pub(super) const MAPPING_VERSION: u8 = 7;
    pub(super) const PAYLOAD_SHA256: u8 = 8;
    pub(super) const ORIGIN: u8 = 9;
    pub(super) const SCHEMA: u8 = 10;
    pub(super) const CONTENT_TYPE: u8 = 11;
    pub(super) const CODE_TABLES: u8 = 12;
    pub(super) const RAW: u8 = 13;
    pub(super) const PAYLOAD_FORMAT: u8 = 14;
}

/// A provenance header's value being written (layout
/// [`PROVENANCE_LAYOUT`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedProvenance(Vec<u8>);

impl PackedProvenance {
    fn empty(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.push(PROVENANCE_LAYOUT);
        Self(buf)
    }

    fn field(&mut self, tag: u8, value: &[u8]) {
        self.0.push(tag);
        let mut n = value.len();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.0.push(byte);
                break;
            }
            self.0.push(byte | 0x80);
        }
        self.0.extend_from_slice(value);
    }

    fn text(&mut self, tag: u8, value: &str) {
        self.field(tag, value.as_bytes());
    }

    /// The fields every record of a pipeline's batch shares.
    fn shared(p: &Provenance, schema: &str, content_type: &str) -> Self {
        let mut out = Self::empty(160 + p.code_tables.len());
        out.text(tag::SOURCE_SYSTEM, &p.source_system);
        out.field(tag::FETCHED_AT, &p.fetched_at_ms.to_be_bytes());
        out.text(tag::CONNECTOR, &p.connector);
        out.text(tag::PIPELINE, &p.pipeline);
        out.text(tag::MAPPING, &p.mapping);
        out.field(tag::MAPPING_VERSION, &p.mapping_version.to_be_bytes());
        out.text(tag::SCHEMA, schema);
        out.text(tag::CONTENT_TYPE, content_type);
        if !p.code_tables.is_empty() {
            out.text(tag::CODE_TABLES, &p.code_tables);
        }
        out
    }

    /// A record's own fields.
    fn own(&mut self, source_id: Option<&str>, sha256: &[u8], origin: &str) {
        self.field(tag::PAYLOAD_SHA256, sha256);
        self.text(tag::ORIGIN, origin);
        if let Some(id) = source_id {
            self.text(tag::SOURCE_ID, id);
        }
    }

    /// The provenance of a canonical record (or a dead letter, whose schema
    /// is `duijie.DeadLetter`).
    pub fn of(p: &Provenance, schema: &str, content_type: &str) -> Self {
        let mut out = Self::shared(p, schema, content_type);
        let sha = hex::decode(&p.payload_sha256).unwrap_or_default();
        out.own(p.source_id.as_deref(), &sha, &p.origin);
        out
    }

    /// The provenance of a raw record (what was fetched, as fetched): no
    /// mapping, and the payload's format (`json`, `xml`).
    pub fn raw(p: &Provenance, format: &str) -> Self {
        let mut out = Self::empty(160);
        out.text(tag::SOURCE_SYSTEM, &p.source_system);
        out.field(tag::FETCHED_AT, &p.fetched_at_ms.to_be_bytes());
        out.text(tag::CONNECTOR, &p.connector);
        out.text(tag::PIPELINE, &p.pipeline);
        out.text(tag::PAYLOAD_FORMAT, format);
        out.text(tag::CONTENT_TYPE, "application/octet-stream");
        let sha = hex::decode(&p.payload_sha256).unwrap_or_default();
        out.own(None, &sha, &p.origin);
        out
    }

    /// Adds where the record's raw payload is kept.
    pub fn with_raw(mut self, raw: &RawRef) -> Self {
        self.text(tag::RAW, &raw.to_string());
        self
    }

    /// The value's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The record's Kafka headers: this one header.
    pub fn headers(&self) -> OwnedHeaders {
        OwnedHeaders::new_with_capacity(1).insert(Header {
            key: PROVENANCE_HEADER,
            value: Some(self.0.as_slice()),
        })
    }

    /// The fields of a packed value under the names the hub's readers use
    /// (the `duijie-*` names of one header per field, which records written
    /// before the packed header carry): the fetch time as RFC 3339 with
    /// milliseconds, the version in decimal, the hash in hex. An unknown
    /// tag is skipped; a value that is not layout 1 or is cut short is an
    /// error.
    pub fn unpack(bytes: &[u8]) -> Result<Vec<(&'static str, String)>, String> {
        let Some((&version, mut rest)) = bytes.split_first() else {
            return Err("empty provenance header".into());
        };
        if version != PROVENANCE_LAYOUT {
            return Err(format!(
                "provenance header layout {version}, this hub reads layout {PROVENANCE_LAYOUT}"
            ));
        }
        let mut out = Vec::with_capacity(12);
        while let Some((&t, after)) = rest.split_first() {
            let mut len: usize = 0;
            let mut shift = 0;
            let mut at = 0;
            loop {
                let byte = *after.get(at).ok_or("provenance header cut short")?;
                at += 1;
                if shift > 28 {
                    return Err("provenance header: field length too long".into());
                }
                len |= usize::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            let value = after
                .get(at..at + len)
                .ok_or("provenance header cut short")?;
            rest = &after[at + len..];
            let text = || String::from_utf8_lossy(value).into_owned();
            let field = match t {
                tag::SOURCE_SYSTEM => (names::SOURCE_SYSTEM, text()),
                tag::SOURCE_ID => (names::SOURCE_ID, text()),
                tag::FETCHED_AT => {
                    let ms = i64::from_be_bytes(
                        value
                            .try_into()
                            .map_err(|_| "provenance header: fetch time")?,
                    );
                    (names::FETCHED_AT, rfc3339_ms(ms))
                }
                tag::CONNECTOR => (names::CONNECTOR, text()),
                tag::PIPELINE => (names::PIPELINE, text()),
                tag::MAPPING => (names::MAPPING, text()),
                tag::MAPPING_VERSION => {
                    let v = u32::from_be_bytes(
                        value
                            .try_into()
                            .map_err(|_| "provenance header: mapping version")?,
                    );
                    (names::MAPPING_VERSION, v.to_string())
                }
                tag::PAYLOAD_SHA256 => (names::PAYLOAD_SHA256, hex::encode(value)),
                tag::ORIGIN => (names::ORIGIN, text()),
                tag::SCHEMA => (names::SCHEMA, text()),
                tag::CONTENT_TYPE => (names::CONTENT_TYPE, text()),
                tag::CODE_TABLES => (names::CODE_TABLES, text()),
                tag::RAW => (names::RAW, text()),
                tag::PAYLOAD_FORMAT => (names::PAYLOAD_FORMAT, text()),
                _ => continue,
            };
            out.push(field);
        }
        Ok(out)
    }
}

/// Epoch milliseconds as RFC 3339 UTC with milliseconds.
fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The Kafka headers of a canonical record (or a dead letter).
pub fn headers(p: &Provenance, schema: &str, content_type: &str) -> OwnedHeaders {
    PackedProvenance::of(p, schema, content_type).headers()
}

/// `headers` with the record's trace (`traceparent`, W3C Trace Context:
/// `00-<trace id>-<span id>-<flags>`), when there is one: the span that
/// produced it, which a reader continues (`telemetry::trace`).
pub fn traced(headers: OwnedHeaders, traceparent: Option<&str>) -> OwnedHeaders {
    match traceparent {
        Some(value) => headers.insert(Header {
            key: crate::telemetry::trace::HEADER,
            value: Some(value),
        }),
        None => headers,
    }
}

/// Where a canonical record's raw payload is kept (pipelines with raw
/// retention): the `raw` field of its provenance, `TOPIC/PARTITION/OFFSET`
/// (a topic name holds no `/`).
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

/// The fields every record of a batch shares (system, fetch time,
/// connector, pipeline, mapping and version, schema, content type, code
/// tables), packed once; each record adds its own source id, payload hash
/// and origin.
#[derive(Debug, Clone)]
pub struct HeaderTemplate {
    shared: PackedProvenance,
    /// The fetch time the template carries.
    pub fetched_at_ms: i64,
}

impl HeaderTemplate {
    /// From a provenance whose per-record fields are ignored.
    pub fn new(p: &Provenance, schema: &str, content_type: &str) -> Self {
        Self {
            shared: PackedProvenance::shared(p, schema, content_type),
            fetched_at_ms: p.fetched_at_ms,
        }
    }

    /// One record's provenance, `payload` the raw payload it was mapped
    /// from (hashed here).
    pub fn record(
        &self,
        source_id: Option<&str>,
        payload: &[u8],
        origin: &str,
    ) -> PackedProvenance {
        let mut out = PackedProvenance(Vec::with_capacity(
            self.shared.0.len() + 48 + origin.len() + source_id.map_or(0, str::len),
        ));
        out.0.extend_from_slice(&self.shared.0);
        out.own(source_id, &Sha256::digest(payload), origin);
        out
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
    /// A push's dead letter: the idempotency key the receiver would have
    /// had (a replay sends the record again under it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
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
            idempotency_key: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Provenance {
        Provenance {
            source_system: "digital_urban".into(),
            source_id: Some("TASK-2026-000123".into()),
            fetched_at_ms: 1_764_581_234_567,
            connector: "file_drop".into(),
            pipeline: "urban_files".into(),
            mapping: "urban_case".into(),
            mapping_version: 3,
            payload_sha256: Provenance::hash("{\"案件\":1}".as_bytes()),
            origin: "cases-20261120.jsonl:17".into(),
            code_tables: "urban_event_source@2026-11".into(),
        }
    }

    fn unpacked(p: &PackedProvenance) -> BTreeMap<&'static str, String> {
        PackedProvenance::unpack(p.as_bytes())
            .unwrap()
            .into_iter()
            .collect()
    }

    use std::collections::BTreeMap;

    #[test]
    fn a_packed_provenance_reads_back_under_the_field_names() {
        let p = sample();
        let raw = RawRef {
            topic: "raw.urban_files".into(),
            partition: 2,
            offset: 41,
        };
        let packed = PackedProvenance::of(&p, "duijie.UrbanCase", "avro/binary; single-object")
            .with_raw(&raw);
        let h = unpacked(&packed);
        assert_eq!(h[names::SOURCE_SYSTEM], "digital_urban");
        assert_eq!(h[names::SOURCE_ID], "TASK-2026-000123");
        assert_eq!(h[names::FETCHED_AT], "2025-12-01T09:27:14.567Z");
        assert_eq!(h[names::CONNECTOR], "file_drop");
        assert_eq!(h[names::PIPELINE], "urban_files");
        assert_eq!(h[names::MAPPING], "urban_case");
        assert_eq!(h[names::MAPPING_VERSION], "3");
        assert_eq!(h[names::PAYLOAD_SHA256], p.payload_sha256);
        assert_eq!(h[names::ORIGIN], "cases-20261120.jsonl:17");
        assert_eq!(h[names::SCHEMA], "duijie.UrbanCase");
        assert_eq!(h[names::CONTENT_TYPE], "avro/binary; single-object");
        assert_eq!(h[names::CODE_TABLES], "urban_event_source@2026-11");
        assert_eq!(h[names::RAW], "raw.urban_files/2/41");
        // A batch's template gives the same fields.
        let template = HeaderTemplate::new(&p, "duijie.UrbanCase", "avro/binary; single-object");
        let from_template =
            template.record(p.source_id.as_deref(), "{\"案件\":1}".as_bytes(), &p.origin);
        let mut without_raw = h.clone();
        without_raw.remove(names::RAW);
        assert_eq!(unpacked(&from_template), without_raw);
        // A field longer than 127 bytes takes a two-byte length.
        let mut long = p.clone();
        long.origin = "甲".repeat(300);
        let h = unpacked(&PackedProvenance::of(&long, "s", "c"));
        assert_eq!(h[names::ORIGIN], long.origin);
    }

    #[test]
    fn an_unknown_tag_is_skipped_and_another_layout_or_a_cut_value_refused() {
        let mut packed = PackedProvenance::raw(&sample(), "json");
        packed.field(99, b"a field of a later hub");
        packed.text(tag::ORIGIN, "after it");
        let fields = PackedProvenance::unpack(packed.as_bytes()).unwrap();
        assert!(fields.contains(&(names::ORIGIN, "after it".to_owned())));
        assert!(fields.contains(&(names::PAYLOAD_FORMAT, "json".to_owned())));
        assert!(!fields.iter().any(|(k, _)| *k == names::MAPPING));
        let mut other = packed.as_bytes().to_vec();
        other[0] = 2;
        assert!(
            PackedProvenance::unpack(&other)
                .unwrap_err()
                .contains("layout 2")
        );
        let cut = &packed.as_bytes()[..packed.as_bytes().len() - 3];
        assert!(
            PackedProvenance::unpack(cut)
                .unwrap_err()
                .contains("cut short")
        );
        assert!(PackedProvenance::unpack(&[]).is_err());
    }

    /// The reference decoder for consumers (`scripts/provenance.py`) reads
    /// what the hub writes.
    #[test]
    fn the_documented_decoder_reads_the_header() {
        let p = sample();
        let packed = PackedProvenance::of(&p, "duijie.UrbanCase", "avro/binary; single-object");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/provenance.py");
        let out = std::process::Command::new("python3")
            .arg(script)
            .arg(hex::encode(packed.as_bytes()))
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["source_system"], "digital_urban");
        assert_eq!(v["source_id"], "TASK-2026-000123");
        assert_eq!(v["fetched_at_ms"], p.fetched_at_ms);
        assert_eq!(v["fetched_at"], "2025-12-01T09:27:14.567Z");
        assert_eq!(v["mapping_version"], 3);
        assert_eq!(v["payload_sha256"], p.payload_sha256.as_str());
        assert_eq!(v["origin"], p.origin.as_str());
        assert_eq!(v["code_tables"], "urban_event_source@2026-11");
        assert_eq!(v["schema"], "duijie.UrbanCase");
    }
}
