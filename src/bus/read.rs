//! Reading a topic to its end: the one way the hub does it (the topic
//! inspector and everything built on it, the cursor store, the feed
//! replay, a pull feed's page, the entity cache's position check).
//!
//! The end is the partition-EOF event of each partition read, not the high
//! watermark (some brokers report it per record batch). A broker away for a
//! moment is waited for; past the deadline the read is an error, never a
//! silent partial read.

use super::{BusError, ReaderContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
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
    read_until(consumer, topic, starts, within, |m| {
        visit(m).map(|()| ControlFlow::Continue(()))
    })
    .map(|_| ())
}

/// How a [`read_until`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every partition read to its end.
    AtEnd,
    /// `visit` asked to stop; some partition may have more.
    Stopped,
}

/// How long a partition read from an offset may stay silent (no record,
/// no end) before it is read again from its start: some brokers (Tansu)
/// serve nothing to a fetch that starts inside a record batch.
const SILENT_FROM_AN_OFFSET: Duration = Duration::from_secs(2);

/// [`read_to_end`], which `visit` may stop early (a page full, the record
/// looked for found). A partition started at an offset that stays silent
/// for [`SILENT_FROM_AN_OFFSET`] is read again from its start, skipping
/// what comes before that offset, so such a broker is read all the same.
pub fn read_until(
    consumer: &BaseConsumer<ReaderContext>,
    topic: &str,
    starts: &[(i32, Start)],
    within: Duration,
    mut visit: impl FnMut(&BorrowedMessage<'_>) -> Result<ControlFlow<()>, BusError>,
) -> Result<Ended, BusError> {
    let deadline = Instant::now() + within;
    // Per partition read: the first offset wanted, and the low watermark.
    let mut reading: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for (partition, start) in starts {
        let (low, high) = retry_until(deadline, || {
            consumer.fetch_watermarks(topic, *partition, Duration::from_secs(20))
        })?;
        let first = match start {
            Start::Beginning => low,
            Start::At(o) => (*o).max(low),
        };
        if first < high {
            reading.insert(*partition, (first, low));
        }
    }
    if reading.is_empty() {
        return Ok(Ended::AtEnd);
    }
    // Assigns what is still read: each partition from the next offset
    // wanted, or from its low watermark where `from_low` says so.
    let assign = |reading: &BTreeMap<i32, (i64, i64)>, from_low: &dyn Fn(i32) -> bool| {
        let mut tpl = TopicPartitionList::new();
        for (p, (first, low)) in reading {
            let at = if from_low(*p) { *low } else { *first };
            tpl.add_partition_offset(topic, *p, Offset::Offset(at))
                .map_err(BusError::Client)?;
        }
        consumer.assign(&tpl).map_err(BusError::Client)
    };
    assign(&reading, &|_| false)?;
    let started = Instant::now();
    let mut heard: BTreeSet<i32> = BTreeSet::new();
    let mut rescanned = false;
    while !reading.is_empty() {
        if Instant::now() > deadline {
            return Err(BusError::Unreachable(KafkaError::MessageConsumption(
                RDKafkaErrorCode::OperationTimedOut,
            )));
        }
        if !rescanned
            && started.elapsed() > SILENT_FROM_AN_OFFSET
            && reading.keys().any(|p| !heard.contains(p))
        {
            // Heard partitions go on from where they are; silent ones start
            // again from their low watermark.
            rescanned = true;
            tracing::debug!(%topic, "the broker serves nothing from inside a record batch; reading the silent partitions from their start");
            assign(&reading, &|p| !heard.contains(&p))?;
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                heard.insert(p);
                reading.remove(&p);
            }
            Some(Err(e)) if super::is_passing_poll_error(&e) => {
                tracing::debug!(error = %e, %topic, "a broker is away; reading on");
            }
            Some(Err(e)) => return Err(BusError::Unreachable(e)),
            Some(Ok(m)) => {
                heard.insert(m.partition());
                let Some((first, _)) = reading.get_mut(&m.partition()) else {
                    continue;
                };
                if m.offset() < *first {
                    continue; // before the start asked for (read from the low mark)
                }
                *first = m.offset() + 1;
                if visit(&m)?.is_break() {
                    return Ok(Ended::Stopped);
                }
            }
        }
    }
    Ok(Ended::AtEnd)
}
