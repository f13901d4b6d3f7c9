//! The pipelines' producer: acknowledgements counted per batch.
//!
//! rdkafka's `FutureProducer` gives every record a future (a boxed channel
//! and a waker): on the hub's hot path, 200,000 of them for 200,000 records.
//! A batch needs one answer — were all its records acknowledged? — so
//! [`BatchProducer`] passes each record a reference to the batch's
//! [`Acks`], counted down by librdkafka's delivery callback; the batch waits
//! once. Same client settings as [`super::Bus::producer`] (idempotent,
//! `acks=all`), and a transactional variant for exactly-once pipelines.

use super::{Bus, BusError};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The acknowledgements of a group of records.
#[derive(Debug, Clone, Default)]
pub struct Acks(Arc<Pending>);

#[derive(Debug, Default)]
pub struct Pending {
    /// Records handed to the producer and not yet settled.
    count: AtomicUsize,
    /// The first failure.
    failed: Mutex<Option<KafkaError>>,
    /// Where the last acknowledged record landed (partition, offset).
    place: Mutex<Option<(i32, i64)>>,
    settled: tokio::sync::Notify,
}

impl Acks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits until every record sent with these acknowledgements is
    /// settled: `Err` with the first failure, if any.
    pub async fn wait(&self) -> Result<(), KafkaError> {
        loop {
            // Registered before the check: a settlement in between wakes it.
            let settled = self.0.settled.notified();
            if self.0.count.load(Ordering::Acquire) == 0 {
                break;
            }
            settled.await;
        }
        match self.0.failed.lock().expect("acks lock").clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Where the last acknowledged record landed: for a group of one, its
    /// partition and offset.
    pub fn place(&self) -> Option<(i32, i64)> {
        *self.0.place.lock().expect("acks lock")
    }
}

/// Settles each record's [`Acks`] from librdkafka's delivery callback.
#[derive(Debug, Clone, Copy, Default)]
pub struct AckContext;

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Arc<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Arc<Pending>) {
        match result {
            Ok(m) => *pending.place.lock().expect("acks lock") = Some((m.partition(), m.offset())),
            Err((e, _)) => {
                pending
                    .failed
                    .lock()
                    .expect("acks lock")
                    .get_or_insert_with(|| e.clone());
            }
        }
        if pending.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            pending.settled.notify_waiters();
        }
    }
}

/// A producer whose records are acknowledged per [`Acks`] group.
#[derive(Clone)]
pub struct BatchProducer(Arc<ThreadedProducer<AckContext>>);

impl std::fmt::Debug for BatchProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchProducer").finish_non_exhaustive()
    }
}

impl std::ops::Deref for BatchProducer {
    type Target = ThreadedProducer<AckContext>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl BatchProducer {
    /// An idempotent producer (the settings of [`Bus::producer`]).
    pub fn new(bus: &Bus) -> Result<Self, BusError> {
        bus.producer_config()
            .create_with_context(AckContext)
            .map(|p| Self(Arc::new(p)))
            .map_err(BusError::Client)
    }

    /// A transactional producer with transactions initialised; a producer
    /// with the same `transactional_id` still alive elsewhere is fenced.
    /// Blocks: call it from a blocking context.
    pub fn transactional(bus: &Bus, transactional_id: &str) -> Result<Self, BusError> {
        let producer: ThreadedProducer<AckContext> = bus
            .producer_config()
            .set("transactional.id", transactional_id)
            // librdkafka requires message.timeout.ms <= transaction.timeout.ms.
            .set("transaction.timeout.ms", "60000")
            .set("message.timeout.ms", "60000")
            .create_with_context(AckContext)
            .map_err(BusError::Client)?;
        producer
            .init_transactions(Duration::from_secs(30))
            .map_err(BusError::Transaction)?;
        Ok(Self(Arc::new(producer)))
    }

    /// Hands a record to the producer, counted in `acks`; waits while
    /// librdkafka's queue is full.
    pub async fn send(
        &self,
        acks: &Acks,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<(), KafkaError> {
        // Sealed at rest where the topic can hold a full ID number.
        let (payload, headers) = match headers {
            Some(h) => {
                let (p, h) = super::seal::sealed_record(topic, payload, h);
                (p, Some(h))
            }
            None if super::seal::sealed(topic) => {
                let (p, h) = super::seal::sealed_record(topic, payload, OwnedHeaders::new());
                (p, Some(h))
            }
            None => (std::borrow::Cow::Borrowed(payload), None),
        };
        acks.0.count.fetch_add(1, Ordering::AcqRel);
        let mut record = BaseRecord::with_opaque_to(topic, acks.0.clone())
            .key(key)
            .payload(&payload[..]);
        if let Some(h) = headers {
            record = record.headers(h);
        }
        loop {
            match self.0.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => {
                    // Never enqueued: not waited for.
                    if acks.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
                        acks.0.settled.notify_waiters();
                    }
                    return Err(e);
                }
            }
        }
    }
}
