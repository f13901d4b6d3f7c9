//! Reading a topic to its end: the one way the hub does it (the topic
//! inspector and everything built on it, the cursor store, the feed
//! replay).
//!
//! The end is the partition-EOF event of each partition read, not the high
//! watermark (some brokers report it per record batch). A broker away for a
//! moment is waited for; past the deadline the read is an error, never a
//! silent partial read.

use super::{BusError, ReaderContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// How long a read to the end may take, at most, by default.
pub const READ_TO_END_WITHIN: Duration = Duration::from_secs(120);

/// The partitions of `topic` as the cluster's metadata has them; none when
/// the topic does not exist. A metadata answer that fails for a moment
/// (no leader yet for a topic just created, a controller moving, a broker
/// away: "not leader for partition") is asked again until `within` has
/// passed; only then, or at once for a permanent error, is it an error.
pub fn partitions<X: rdkafka::consumer::ConsumerContext>(
    consumer: &impl Consumer<X>,
    topic: &str,
    within: Duration,
) -> Result<Vec<i32>, BusError> {
    let deadline = Instant::now() + within;
    retry_until(deadline, || {
        let left = deadline.saturating_duration_since(Instant::now());
        let md = consumer.fetch_metadata(Some(topic), left.max(Duration::from_millis(100)))?;
        let listed = md.topics().iter().find(|t| t.name() == topic);
        let parts: Vec<i32> = listed
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        // A partition without a leader for now is still listed: the read
        // itself waits for it.
        match listed.and_then(|t| t.error()).map(RDKafkaErrorCode::from) {
            None | Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Ok(parts),
            Some(_) if !parts.is_empty() => Ok(parts),
            Some(code) => Err(KafkaError::MetadataFetch(code)),
        }
    })
}

/// `ask` again while it fails transiently ("not leader for partition"
/// while a topic just created gets its leaders, a broker away), until
/// `deadline`: every metadata, watermark and offset question the hub asks
/// the bus goes through here.
pub fn retry_until<T>(
    deadline: Instant,
    mut ask: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, BusError> {
    loop {
        match ask() {
            Ok(v) => return Ok(v),
            Err(e)
                if super::kafka_class(&e) == crate::error::ErrorClass::Transient
                    && Instant::now() < deadline =>
            {
                tracing::debug!(error = %e, "the bus answered not yet; asking again");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(BusError::Unreachable(e)),
        }
    }
}

/// How long a topic's metadata may take to answer, at most, by default.
pub const METADATA_WITHIN: Duration = Duration::from_secs(20);

/// Where each partition's read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Beginning,
    /// At this offset (the next one to read).
    At(i64),
}

/// Reads the `starts` partitions of `topic` from their start to their end
/// as of now, handing each record to `visit` in partition order. Blocking:
/// call it from `spawn_blocking` or a thread of its own. A partition empty
/// from its start is not read at all.
pub fn read_to_end(
    consumer: &BaseConsumer<ReaderContext>,
    topic: &str,
    starts: &[(i32, Start)],
    within: Duration,
    mut visit: impl FnMut(&BorrowedMessage<'_>) -> Result<(), BusError>,
) -> Result<(), BusError> {
    let deadline = Instant::now() + within;
    let mut tpl = TopicPartitionList::new();
    let mut open = 0usize;
    for (partition, start) in starts {
        let (low, high) = retry_until(deadline, || {
            consumer.fetch_watermarks(topic, *partition, Duration::from_secs(20))
        })?;
        let (offset, first) = match start {
            Start::Beginning => (Offset::Beginning, low),
            Start::At(o) => (Offset::Offset(*o), (*o).max(low)),
        };
        if first < high {
            tpl.add_partition_offset(topic, *partition, offset)
                .map_err(BusError::Client)?;
            open += 1;
        }
    }
    if open == 0 {
        return Ok(());
    }
    consumer.assign(&tpl).map_err(BusError::Client)?;
    while open > 0 {
        if Instant::now() > deadline {
            return Err(BusError::Unreachable(KafkaError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
            )));
        }
        match consumer.poll(Duration::from_millis(300)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => open -= 1,
            Some(Err(e)) if super::is_passing_poll_error(&e) => {
                tracing::debug!(error = %e, %topic, "a broker is away; reading on");
            }
            Some(Err(e)) => return Err(BusError::Unreachable(e)),
            Some(Ok(m)) => visit(&m)?,
        }
    }
    Ok(())
}
