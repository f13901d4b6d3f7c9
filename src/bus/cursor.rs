//! Source cursors in a compacted topic, keyed by pipeline name.
//!
//! A cursor is written only after the broker acknowledged every record it
//! covers (or, with `exactly_once`, inside the same transaction), so the
//! latest cursor of a pipeline is always a safe place to resume from.

use super::{Bus, BusError};
use duijie_connectors::Cursor;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// What the cursor topic holds for one pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredCursor {
    pub cursor: Cursor,
    /// Records the pipeline has made durable in total, as of this cursor.
    pub records: u64,
    /// When it was committed, UTC epoch milliseconds.
    pub committed_at_ms: i64,
}

/// Reads and encodes cursors.
#[derive(Debug, Clone)]
pub struct CursorStore {
    pub topic: String,
}

impl CursorStore {
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
        }
    }

    pub fn encode(&self, stored: &StoredCursor) -> Vec<u8> {
        serde_json::to_vec(stored).expect("cursors serialize")
    }

    /// The latest cursor of `pipeline`. With `read_committed`, cursors of
    /// aborted transactions are not seen.
    pub async fn load(
        &self,
        bus: &Bus,
        pipeline: &str,
        read_committed: bool,
    ) -> Result<Option<StoredCursor>, BusError> {
        let bus = bus.clone();
        let topic = self.topic.clone();
        let pipeline = pipeline.to_owned();
        tokio::task::spawn_blocking(move || -> Result<Option<StoredCursor>, BusError> {
            let consumer: BaseConsumer<super::ReaderContext> = bus.reader(
                "cursor-reader",
                super::Isolation::committed_if(read_committed),
            )?;
            // The end is known by the partition-EOF event, not by the high
            // watermark (some brokers report it per record batch).
            let (low, high) = consumer
                .fetch_watermarks(&topic, 0, Duration::from_secs(20))
                .map_err(BusError::Unreachable)?;
            if high <= low {
                return Ok(None);
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, 0, Offset::Beginning)
                .map_err(BusError::Client)?;
            consumer.assign(&tpl).map_err(BusError::Client)?;
            let mut latest: Option<StoredCursor> = None;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if Instant::now() > deadline {
                    return Err(BusError::Unreachable(
                        rdkafka::error::KafkaError::MessageConsumption(
                            rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                        ),
                    ));
                }
                match consumer.poll(Duration::from_millis(500)) {
                    None => {}
                    Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                    Some(Err(e)) if super::is_passing_poll_error(&e) => {
                        tracing::debug!(error = %e, %topic, "a broker is away; reading on");
                    }
                    Some(Err(e)) => return Err(BusError::Unreachable(e)),
                    Some(Ok(m)) if m.key() == Some(pipeline.as_bytes()) => match m.payload() {
                        None => latest = None, // tombstone: reset
                        Some(p) => {
                            latest = Some(serde_json::from_slice(p).map_err(|e| {
                                BusError::BadCursor {
                                    topic: topic.clone(),
                                    key: pipeline.clone(),
                                    message: e.to_string(),
                                }
                            })?)
                        }
                    },
                    Some(Ok(_)) => {}
                }
            }
            Ok(latest)
        })
        .await
        .map_err(|_| BusError::Unreachable(rdkafka::error::KafkaError::Canceled))?
    }
}
