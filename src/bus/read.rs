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
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// How long a read to the end may take, at most, by default.
pub const READ_TO_END_WITHIN: Duration = Duration::from_secs(120);

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
    let mut tpl = TopicPartitionList::new();
    let mut open = 0usize;
    for (partition, start) in starts {
        let (low, high) = consumer
            .fetch_watermarks(topic, *partition, Duration::from_secs(20))
            .map_err(BusError::Unreachable)?;
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
    let deadline = Instant::now() + within;
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
