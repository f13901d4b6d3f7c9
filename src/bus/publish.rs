//! Writing one record the hub makes itself and waiting for the broker.
//! (A record that arrives outside a pipeline — a desk action — is mapped
//! and written by [`crate::intake`], beside the ingest path, so the bus
//! knows no mapping.)

use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

/// Writes one record the hub makes itself (a keeper's alert or lead, a
/// referral's state, an audit entry) with `headers`, and returns once the
/// broker acknowledged it: the one way those writes go out.
pub async fn write(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    headers: rdkafka::message::OwnedHeaders,
) -> crate::error::Result<()> {
    use crate::error::Context;
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
        .with_context(|| format!("writing to {topic}"))
}
