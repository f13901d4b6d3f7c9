//! Source cursors in a compacted topic, keyed by pipeline name.
//!
//! A cursor is written only after the broker acknowledged every record it
//! covers (or, with `exactly_once`, inside the same transaction), so the
//! latest cursor of a pipeline is always a safe place to resume from.

use super::{Bus, BusError};
use duijie_connectors::Cursor;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use serde::{Deserialize, Serialize};
use std::time::Duration;

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
            let mut latest: Option<StoredCursor> = None;
            let within = Duration::from_secs(60);
            super::read::read_to_end(
                &consumer,
                &topic,
                &[(0, super::read::Start::Beginning)],
                within,
                |m| {
                    if m.key() != Some(pipeline.as_bytes()) {
                        return Ok(());
                    }
                    latest = match m.payload() {
                        None => None, // tombstone: reset
                        Some(p) => {
                            Some(serde_json::from_slice(p).map_err(|e| BusError::BadCursor {
                                topic: topic.clone(),
                                key: pipeline.clone(),
                                message: e.to_string(),
                            })?)
                        }
                    };
                    Ok(())
                },
            )?;
            Ok(latest)
        })
        .await
        .map_err(|_| BusError::Unreachable(rdkafka::error::KafkaError::Canceled))?
    }
}
