//! What arrives outside a pipeline — an officer's action on the desk, a
//! test's fixture event — taken in exactly as a pipeline takes a record:
//! through its mapping, Avro single-object encoded, keyed by the stable
//! key, with provenance headers, sealed where the topic is, written and
//! acknowledged. It sits beside the ingest path (`runtime::pipeline`),
//! above the bus and the mapping engine, so that the bus knows no mapping
//! and the desk no runtime.

use crate::bus::{Provenance, headers};
use crate::mapping::Mapping;
use crate::schema::{Encoding, RecordEncoder};
use rdkafka::producer::FutureProducer;

/// Where a record written outside a pipeline comes from.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    /// The connector (or `desk`).
    pub connector: &'a str,
    /// The pipeline (or `desk`).
    pub pipeline: &'a str,
    /// A human-readable origin (`desk action by 张伟`, a file name).
    pub origin: &'a str,
    /// When the payload was received, epoch milliseconds.
    pub fetched_at_ms: i64,
    /// The `traceparent` of the record this one is about (a desk action on
    /// a referral: the referral's latest event), whose trace it continues.
    pub about: Option<&'a str>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The record's key.
    pub key: String,
    /// The record's first field (the record id, in the canonical schemas).
    pub id: String,
}

/// Maps `payload` and writes the record to `topic`, waiting for the
/// broker's acknowledgement. A payload the mapping rejects is an error
/// with the mapping's reason; nothing is written.
pub async fn publish_mapped(
    producer: &FutureProducer,
    topic: &str,
    mapping: &Mapping,
    payload: &[u8],
    from: &Origin<'_>,
) -> crate::error::Result<Published> {
    let mapped = mapping.map_at(payload, from.fetched_at_ms).map_err(|r| {
        crate::error::Error::permanent(crate::error::Domain::Mapping, r.to_string())
    })?;
    let mut buf = Vec::new();
    RecordEncoder::new(Encoding::SingleObject).encode(&mapping.schema, &mapped.values, &mut buf)?;
    let provenance = Provenance {
        source_system: mapping.system.clone(),
        source_id: mapped.source_id.as_deref().map(str::to_owned),
        fetched_at_ms: from.fetched_at_ms,
        connector: from.connector.to_owned(),
        pipeline: from.pipeline.to_owned(),
        mapping: mapping.name.clone(),
        mapping_version: mapping.version,
        payload_sha256: Provenance::hash(payload),
        origin: from.origin.to_owned(),
        code_tables: mapping.code_tables.clone(),
    };
    let key = mapped.key.to_string();
    let h = crate::bus::traced(
        headers(
            &provenance,
            &mapping.schema.full_name,
            "avro/binary; single-object",
        ),
        crate::telemetry::trace::acted("publish", from.about, topic, &key).as_deref(),
    );
    // The referral stream keeps full ID numbers: sealed at rest.
    let (buf, h) = crate::bus::seal::sealed_record(topic, &buf, h);
    crate::bus::publish::write(producer, topic, &key, &buf, h).await?;
    let id = mapped
        .values
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    Ok(Published { key, id })
}
