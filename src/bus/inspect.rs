//! Reading topics back: what the demo prints, what the tests assert on, and
//! what an operator uses to look at a topic.

use super::{Bus, BusError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One record as read back.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
}

impl ReadRecord {
    pub fn key_str(&self) -> String {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default()
    }
}

/// Reads every record of `topic` up to its end as of now. With
/// `read_committed`, records of aborted or open transactions are skipped.
pub async fn read_topic(
    bus: &Bus,
    topic: &str,
    read_committed: bool,
) -> Result<Vec<ReadRecord>, BusError> {
    let mut config = bus.client_config();
    config
        .set("group.id", format!("{}-inspect", bus.client_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set(
            "isolation.level",
            if read_committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        );
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer<super::ReaderContext> = config
            .create_with_context(super::ReaderContext)
            .map_err(BusError::Client)?;
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(20))
            .map_err(BusError::Unreachable)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut tpl = TopicPartitionList::new();
        let mut pending = 0usize;
        for p in &partitions {
            let (low, high) = consumer
                .fetch_watermarks(&topic, *p, Duration::from_secs(20))
                .map_err(BusError::Unreachable)?;
            if high > low {
                tpl.add_partition_offset(&topic, *p, Offset::Beginning)
                    .map_err(BusError::Client)?;
                pending += 1;
            }
        }
        let mut out = Vec::new();
        if pending == 0 {
            return Ok(out);
        }
        consumer.assign(&tpl).map_err(BusError::Client)?;
        let deadline = Instant::now() + Duration::from_secs(120);
        while pending > 0 {
            if Instant::now() > deadline {
                // Never a silent partial read.
                return Err(BusError::Unreachable(
                    rdkafka::error::KafkaError::MessageConsumption(
                        rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                    ),
                ));
            }
            match consumer.poll(Duration::from_millis(500)) {
                None => {}
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => pending -= 1,
                Some(Err(e)) if super::is_passing_poll_error(&e) => {
                    tracing::debug!(error = %e, %topic, "a broker is away; reading on");
                }
                Some(Err(e)) => return Err(BusError::Unreachable(e)),
                Some(Ok(m)) => {
                    let headers = super::header_map(&m);
                    out.push(ReadRecord {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec),
                        headers,
                    });
                }
            }
        }
        Ok(out)
    })
    .await
    .map_err(|_| BusError::Unreachable(rdkafka::error::KafkaError::Canceled))?
}
