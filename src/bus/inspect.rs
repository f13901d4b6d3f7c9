//! Reading topics back: what the demo prints, what the tests assert on, and
//! what an operator uses to look at a topic.

use super::read::{METADATA_WITHIN, READ_TO_END_WITHIN, Start, partitions, read_to_end};
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
    /// The payload as JSON of `T`: `None` for a tombstone (no payload),
    /// and `None`, counted and logged as unreadable by `reader`
    /// ([`super::unreadable`]), for a payload that is not a `T`.
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        reader: &'static str,
        topic: &str,
    ) -> Option<T> {
        let payload = self.payload.as_deref()?;
        match serde_json::from_slice(payload) {
            Ok(v) => Some(v),
            Err(e) => {
                super::unreadable(reader, topic, self.partition, self.offset, &e.to_string());
                None
            }
        }
    }

    pub fn key_str(&self) -> String {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default()
    }
}

/// A message's payload as written: opened when it is sealed
/// ([`super::seal`]); as stored, logged, when it does not open.
fn opened<M: Message>(m: &M) -> Option<Vec<u8>> {
    m.payload()?;
    Some(match super::seal::open_message(m) {
        Ok(p) => p.into_owned(),
        Err(e) => {
            super::unreadable("inspect", m.topic(), m.partition(), m.offset(), &e);
            m.payload().map(<[u8]>::to_vec).unwrap_or_default()
        }
    })
}

/// Reads every record of `topic` up to its end as of now. With
/// `read_committed`, records of aborted or open transactions are skipped.
pub async fn read_topic(
    bus: &Bus,
    topic: &str,
    read_committed: bool,
) -> Result<Vec<ReadRecord>, BusError> {
    let bus = bus.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer<super::ReaderContext> =
            bus.reader("inspect", super::Isolation::committed_if(read_committed))?;
        let starts: Vec<(i32, Start)> = partitions(&consumer, &topic, METADATA_WITHIN)?
            .into_iter()
            .map(|p| (p, Start::Beginning))
            .collect();
        let mut out = Vec::new();
        read_to_end(&consumer, &topic, &starts, READ_TO_END_WITHIN, |m| {
            out.push(ReadRecord {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: opened(m),
                headers: super::header_map(m),
            });
            Ok(())
        })?;
        Ok(out)
    })
    .await
    .map_err(|_| BusError::Unreachable(rdkafka::error::KafkaError::Canceled))?
}

/// Which part of a topic to read: by the records' time (the broker's
/// timestamp, the time they were produced), the last records of each
/// partition, or from offsets a previous read stopped at.
#[derive(Debug, Clone, Default)]
pub struct Span {
    /// From this time (UTC epoch ms; inclusive).
    pub from_ms: Option<i64>,
    /// Up to this time (exclusive); else to the end as of now.
    pub to_ms: Option<i64>,
    /// Only the last `n` records of each partition.
    pub last_per_partition: Option<i64>,
    /// Partition → the next offset to read, overriding `from_ms`.
    pub resume: BTreeMap<i32, i64>,
}

/// Where a span starts and ends in each partition, once resolved.
#[derive(Debug, Clone, Default)]
pub struct SpanBounds {
    /// Partition → [start, end) offsets.
    pub partitions: BTreeMap<i32, (i64, i64)>,
}

impl SpanBounds {
    /// Records in the span.
    pub fn len(&self) -> u64 {
        self.partitions
            .values()
            .map(|(s, e)| (e - s).max(0) as u64)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Streams the records of `span` of `topic` (read committed) into a bounded
/// channel, partition by partition; the first message is the resolved
/// bounds. A failure is the last message; the channel closing after the
/// bounds' count of records is the end.
///
/// Long because the bounded streaming read (resolve the span's bounds,
/// assign, read to the end), with each failure sent as the channel's last
/// message from where it happens.
pub fn stream_span(
    bus: &Bus,
    topic: &str,
    span: Span,
) -> tokio::sync::mpsc::Receiver<Result<SpanItem, BusError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let bus = bus.clone();
    let topic = topic.to_owned();
    std::thread::spawn(move || {
        let run = || -> Result<(), BusError> {
            let consumer: BaseConsumer<super::ReaderContext> =
                bus.reader("span", super::Isolation::Committed)?;
            let partitions = partitions(&consumer, &topic, METADATA_WITHIN)?;
            let at_time = |ms: i64| -> Result<BTreeMap<i32, i64>, BusError> {
                let mut tpl = TopicPartitionList::new();
                for p in &partitions {
                    tpl.add_partition_offset(&topic, *p, Offset::Offset(ms))
                        .map_err(BusError::Client)?;
                }
                let found = consumer
                    .offsets_for_times(tpl, Duration::from_secs(20))
                    .map_err(BusError::Unreachable)?;
                Ok(found
                    .elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some((e.partition(), o)),
                        _ => None,
                    })
                    .collect())
            };
            let from = span.from_ms.map(at_time).transpose()?;
            let to = span.to_ms.map(at_time).transpose()?;
            let mut bounds = SpanBounds::default();
            for p in &partitions {
                let (low, high) =
                    super::read::retry_until(Instant::now() + METADATA_WITHIN, || {
                        consumer.fetch_watermarks(&topic, *p, Duration::from_secs(20))
                    })?;
                let mut start = match (&from, span.last_per_partition) {
                    // No record at or after the time: nothing to read here.
                    (Some(f), _) => f.get(p).copied().unwrap_or(high),
                    (None, Some(n)) => high - n,
                    (None, None) => low,
                };
                if let Some(r) = span.resume.get(p) {
                    start = *r;
                }
                let end = to
                    .as_ref()
                    .map_or(high, |t| t.get(p).copied().unwrap_or(high))
                    .min(high);
                bounds.partitions.insert(*p, (start.max(low), end));
            }
            if tx
                .blocking_send(Ok(SpanItem::Bounds(bounds.clone())))
                .is_err()
            {
                return Ok(());
            }
            for (p, (start, end)) in bounds.partitions {
                if start >= end {
                    continue;
                }
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&topic, p, Offset::Offset(start))
                    .map_err(BusError::Client)?;
                consumer.assign(&tpl).map_err(BusError::Client)?;
                let mut idle_since = Instant::now();
                loop {
                    match consumer.poll(Duration::from_millis(500)) {
                        None => {
                            if idle_since.elapsed() > Duration::from_secs(60) {
                                return Err(BusError::Unreachable(
                                    rdkafka::error::KafkaError::MessageConsumption(
                                        rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
                                    ),
                                ));
                            }
                        }
                        // Transaction markers and aborted records leave
                        // gaps: the end is the end offset or the EOF.
                        Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                        Some(Err(e)) if super::is_passing_poll_error(&e) => {}
                        Some(Err(e)) => return Err(BusError::Unreachable(e)),
                        Some(Ok(m)) => {
                            idle_since = Instant::now();
                            if m.offset() >= end {
                                break;
                            }
                            let record = ReadRecord {
                                partition: m.partition(),
                                offset: m.offset(),
                                key: m.key().map(<[u8]>::to_vec),
                                payload: opened(&m),
                                headers: super::header_map(&m),
                            };
                            let timestamp = m.timestamp().to_millis().unwrap_or_default();
                            if tx
                                .blocking_send(Ok(SpanItem::Record(record, timestamp)))
                                .is_err()
                            {
                                return Ok(());
                            }
                            if m.offset() + 1 >= end {
                                break;
                            }
                        }
                    }
                }
            }
            Ok(())
        };
        if let Err(e) = run() {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

/// What [`stream_span`] sends.
#[derive(Debug)]
pub enum SpanItem {
    Bounds(SpanBounds),
    /// A record and its broker timestamp (UTC epoch ms).
    Record(ReadRecord, i64),
}
