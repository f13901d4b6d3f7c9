//! Following topics: every record of a set of topics from the beginning,
//! then each new one as it comes, for the hub's readers that build their
//! state from the bus (the keepers, the entity library). A record that
//! cannot be read is counted and logged (`bus::unreadable`), never dropped
//! silently.

use super::{Bus, ReaderContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A record from a followed topic.
#[derive(Debug)]
pub struct Followed {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

impl Followed {
    /// Counts and logs this record as one `reader` could not read.
    pub fn unreadable(&self, reader: &'static str, why: &str) {
        crate::bus::unreadable(reader, &self.topic, self.partition, self.offset, why);
    }
}

/// What a follower hands on: records, and once, the moment it has read
/// everything the topics held when it started. A keeper acts only after
/// that: before it, its memory is incomplete and it would write again what
/// it wrote before a restart.
#[derive(Debug)]
pub enum Follow {
    Record(Followed),
    CaughtUp,
}

#[derive(Debug)]
enum Inner {
    Record(Followed),
    /// One topic's history is read (every partition reached its end once).
    TopicDone,
}

/// Topics followed from their beginning: see [`follow`].
#[derive(Debug)]
pub struct Follower {
    rx: mpsc::Receiver<Inner>,
    /// Topics whose history is still being read.
    pending: usize,
}

impl Follower {
    /// The next record, or [`Follow::CaughtUp`] once; `None` when the
    /// follower has stopped.
    pub async fn recv(&mut self) -> Option<Follow> {
        loop {
            match self.rx.recv().await? {
                Inner::Record(f) => return Some(Follow::Record(f)),
                Inner::TopicDone => {
                    self.pending -= 1;
                    if self.pending == 0 {
                        return Some(Follow::CaughtUp);
                    }
                }
            }
        }
    }

    /// Whether the topics' history has been read (a keeper acts only then).
    pub fn caught_up(&self) -> bool {
        self.pending == 0
    }

    /// The next record or catch-up already waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Follow> {
        loop {
            match self.rx.try_recv().ok()? {
                Inner::Record(f) => return Some(Follow::Record(f)),
                Inner::TopicDone => {
                    self.pending -= 1;
                    if self.pending == 0 {
                        return Some(Follow::CaughtUp);
                    }
                }
            }
        }
    }
}

/// Reads `topics` from the beginning and keeps following them, each on a
/// blocking thread of its own (a partition's end is known per topic), into
/// one channel.
pub fn follow(bus: &Bus, topics: Vec<String>, shutdown: CancellationToken) -> Follower {
    follow_from(bus, topics, &BTreeMap::new(), shutdown)
}

/// [`follow`], starting each partition found in `start` at its offset (the
/// next one a cache has not read) instead of the beginning.
pub fn follow_from(
    bus: &Bus,
    topics: Vec<String>,
    start: &BTreeMap<(String, i32), i64>,
    shutdown: CancellationToken,
) -> Follower {
    let (tx, rx) = mpsc::channel(4096);
    let pending = topics.len();
    for topic in topics {
        let bus = bus.clone();
        let (tx, shutdown) = (tx.clone(), shutdown.clone());
        let start: BTreeMap<i32, i64> = start
            .iter()
            .filter(|((t, _), _)| *t == topic)
            .map(|((_, p), o)| (*p, *o))
            .collect();
        std::thread::spawn(move || follow_topic(&bus, &topic, &start, &tx, &shutdown));
    }
    Follower { rx, pending }
}

fn follow_topic(
    bus: &Bus,
    topic: &str,
    start: &BTreeMap<i32, i64>,
    tx: &mpsc::Sender<Inner>,
    shutdown: &CancellationToken,
) {
    let consumer: BaseConsumer<ReaderContext> =
        // At the end it waits for what comes: librdkafka's fetch wait.
        match bus.reader_with("follower", crate::bus::Isolation::Committed, |c| {
            c.set("fetch.wait.max.ms", "500");
        }) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, topic, "cannot follow the topic");
                return;
            }
        };
    // Partitions whose end has not been reached yet; `None` until the
    // topic is assigned. A topic absent at the start has no history.
    let mut unread: Option<BTreeSet<i32>> = None;
    let mut done = false;
    while !shutdown.is_cancelled() {
        if unread.is_none() {
            // (Re)try: the topic may be created after the keeper starts.
            let parts = super::read::partitions(&consumer, topic, Duration::from_secs(5)).ok();
            match parts {
                Some(parts) if !parts.is_empty() => {
                    let mut tpl = TopicPartitionList::new();
                    for p in &parts {
                        let from = start
                            .get(p)
                            .map_or(Offset::Beginning, |o| Offset::Offset(*o));
                        let _ = tpl.add_partition_offset(topic, *p, from);
                    }
                    if consumer.assign(&tpl).is_err() {
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                    unread = Some(parts.into_iter().collect());
                }
                Some(_) if !done => {
                    // Absent now: nothing to catch up on.
                    done = true;
                    if tx.blocking_send(Inner::TopicDone).is_err() {
                        return;
                    }
                }
                _ => {
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let f = Followed {
                    topic: m.topic().to_owned(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default(),
                    headers: crate::bus::header_map(&m),
                    payload: crate::bus::seal::open_message(&m)
                        .map(std::borrow::Cow::into_owned)
                        .unwrap_or_else(|e| {
                            crate::bus::unreadable(
                                "follow",
                                m.topic(),
                                m.partition(),
                                m.offset(),
                                &e,
                            );
                            m.payload().map(<[u8]>::to_vec).unwrap_or_default()
                        }),
                };
                if tx.blocking_send(Inner::Record(f)).is_err() {
                    return;
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                if let Some(unread) = unread.as_mut() {
                    unread.remove(&p);
                    if unread.is_empty() && !done {
                        done = true;
                        if tx.blocking_send(Inner::TopicDone).is_err() {
                            return;
                        }
                    }
                }
            }
            // A failed fetch: librdkafka retries it; said, rate-limited.
            Some(Err(e)) => crate::bus::log_client_error(&e, "following a topic"),
            None => {}
        }
    }
}
