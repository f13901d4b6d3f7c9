//! Deliveries: a Kafka consumer group each, reading a topic, selecting
//! records, turning each into what its receiver must get, and delivering it.
//!
//! - Per key, in order: records are handled partition by partition, in
//!   offset order, and a key always lives on one partition.
//! - Offsets are committed only once every record before them was
//!   delivered, refused by the receiver, or dead-lettered, and its receipt
//!   written; a crash means redelivery, which the receiver absorbs by the
//!   idempotency key (the record's stable id and version).
//! - A failing delivery is retried with exponential backoff and jitter,
//!   within a per-target rate limit; after the last attempt it goes to the
//!   dead-letter topic and an alert is raised. A receiver's refusal is not
//!   retried: it goes to the dead-letter topic with the receiver's reason.
//! - Every outcome is a receipt on the receipts topic.

pub mod config;
mod gate;
pub mod ops;
pub mod proof;
pub mod pull;
pub mod sink;
pub mod status;
pub mod transform;

pub use config::{
    BodyCipher, BodyEncryption, DeliveryConfig, HmacScheme, Select, Signing, TargetConfig,
    TransformConfig,
};

use crate::bus::{Bus, DeadLetter, Provenance};
use crate::error::{Context, Domain, Error, Result};
use crate::retry::backoff;
use crate::schema::SchemaSet;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sink::{Attempt, Target};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};
use transform::{Outgoing, Transform};

/// A delivery cut short by shutdown: its records are delivered again after
/// the restart, from the committed offsets.
fn shut_down_while_delivering() -> Error {
    Error::transient(Domain::Delivery, "shut down while delivering")
}

/// A push round ends when its topic has been quiet this long…
const ROUND_QUIET: Duration = Duration::from_millis(5);
/// …or this long after its first record, whichever comes first: the most a
/// round adds to a record's source-to-push latency.
const ROUND_WAIT: Duration = Duration::from_millis(50);

/// What became of one record of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The receiver took it.
    Delivered,
    /// The receiver refused it; dead-lettered with its reason.
    Rejected,
    /// Every attempt failed; dead-lettered, alert raised.
    Failed,
    /// Not for this receiver (policy); nothing sent.
    NotSent,
    /// Not sent yet: waits for an officer (a decision without its credit
    /// severity class); the clocks that follow it run on.
    Held,
}

impl Receipt {
    /// The version its idempotency key names (`…:v2`); 1 when it names
    /// none (an update time or a hash).
    pub fn version(&self) -> i64 {
        self.idempotency_key
            .rsplit(":v")
            .next()
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(1)
    }
}

/// How one record ended: its outcome after so many attempts, why, and
/// what the receiver answered when it took it.
#[derive(Debug)]
struct Settled {
    outcome: Outcome,
    attempts: u32,
    reason: Option<String>,
    ack: Option<sink::Ack>,
}

impl Settled {
    fn new(outcome: Outcome, attempts: u32, reason: Option<String>) -> Self {
        Self {
            outcome,
            attempts,
            reason,
            ack: None,
        }
    }
}

/// The receipt of one outcome, on the receipts topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Receipt {
    pub delivery: String,
    pub department: String,
    pub record_id: String,
    pub idempotency_key: String,
    pub outcome: Outcome,
    pub attempts: u32,
    pub reason: Option<String>,
    pub at_ms: i64,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// What proves the delivery, when the receiver answered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
}

/// Non-repudiation of one delivery (GB/T 39786-2021 level 3): what the
/// hub sent, what the receiver answered, both signed. `duijie receipts
/// verify` checks it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Proof {
    /// SM3 (hex) of the record's body as the transform made it for this
    /// receiver (before any envelope): `duijie receipts verify --input`
    /// makes it again from the record.
    pub body_sm3: String,
    /// The receiver's answer as received (its first 16 KiB).
    #[serde(default)]
    pub answer: Option<String>,
    /// The receiver's SM2 signature over its answer (DER, base64), as
    /// received.
    #[serde(default)]
    pub answer_signature: Option<String>,
    /// Whether that signature verified under the receiver's key
    /// (`receipt_key`) when the answer came.
    #[serde(default)]
    pub answer_verified: bool,
    /// The answer carried a full resident ID number and is kept masked
    /// (the personal-data rule): its signature can no longer be checked
    /// against it; `answer_verified` says what the check found when it
    /// came.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub answer_masked: bool,
    /// The hub's SM2 signature (DER, base64) over [`Receipt::statement`],
    /// and its key id.
    #[serde(default)]
    pub hub_signature: Option<String>,
    #[serde(default)]
    pub hub_key: Option<String>,
}

impl Receipt {
    /// What the hub signs of a receipt: its delivery, record, key,
    /// outcome and time, the body's SM3 and the answer's SM3, one per line
    /// after `duijie-receipt/1`.
    pub fn statement(&self) -> Option<Vec<u8>> {
        let p = self.proof.as_ref()?;
        let answer_sm3 = hex::encode(
            duijie_crypto::Suite::Gm.digest(&[p.answer.as_deref().unwrap_or("").as_bytes()]),
        );
        Some(
            format!(
                "duijie-receipt/1\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
                self.delivery,
                self.record_id,
                self.idempotency_key,
                serde_json::to_value(self.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                self.at_ms,
                p.body_sm3,
                answer_sm3
            )
            .into_bytes(),
        )
    }
}

/// SM3 (hex) of a record's body as the transform made it.
pub fn body_sm3(out: &Outgoing) -> String {
    hex::encode(duijie_crypto::Suite::Gm.digest(&[out.body().to_string().as_bytes()]))
}

/// Counters of one delivery.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    pub delivered: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    pub not_sent: AtomicU64,
    pub held: AtomicU64,
    pub retries: AtomicU64,
    /// From the source record's fetch (its `duijie-fetched-at` header) to
    /// its receipt: the source-to-push latency.
    pub latency: crate::telemetry::Latency,
    /// Records on the topic not yet settled (consumer group lag), as last
    /// measured; -1 before the first measurement.
    pub backlog: std::sync::atomic::AtomicI64,
    /// Since when (epoch ms) the receiver has been failing transiently and
    /// the feed waits for it; 0 when it is not waiting.
    pub waiting_since_ms: AtomicI64,
    /// Whether this outage's `DELIVERY_WAITING` alert was raised (one per
    /// outage across the feed's partitions).
    pub waiting_alerted: std::sync::atomic::AtomicBool,
    /// Why the delivery stopped for good, when it did (a permanent
    /// failure: it waits for a corrected configuration).
    pub stopped: std::sync::Mutex<Option<String>>,
}

/// Topics every delivery writes.
#[derive(Debug, Clone)]
pub struct SharedTopics {
    pub receipts: String,
    pub alerts: String,
}

/// A delivery, ready to run.
#[derive(Clone)]
pub struct Delivery {
    pub name: String,
    pub config: DeliveryConfig,
    pub department: String,
    pub dlq_topic: String,
    pub bus: Bus,
    pub producer: FutureProducer,
    pub schemas: Arc<SchemaSet>,
    pub topics: SharedTopics,
    pub transform: Arc<Transform>,
    pub target: Arc<Target>,
    pub stats: Arc<DeliveryStats>,
    /// Dead letters are cut to fit below this (the producer's message size
    /// limit, less room for key and headers).
    pub max_dead_letter_bytes: usize,
    /// Decision numbers whose publication a credit repair ended (from the
    /// credit transform's `repairs_topic`): never pushed again.
    pub repaired: Arc<std::sync::RwLock<BTreeSet<String>>>,
    /// The way to the receiver: `in_flight` slots shared by the
    /// pipeline's partitions and keys, one probe while it fails.
    gate: Arc<gate::Gate>,
}

impl Delivery {
    /// What to send for a record: the transform's answer, then the
    /// personal-data rule of this destination (full ID numbers masked
    /// unless `personal_data = "full"`). Every push and pull path takes
    /// its bodies and keys from here.
    pub fn outgoing(&self, incoming: &Incoming) -> Result<Option<Outgoing>, String> {
        let out = outgoing_of(&self.transform, &self.config, incoming)?;
        // A repaired decision (终止公示) is never published again.
        if let Some(Outgoing::Publish { key, .. }) = &out
            && let Some(no) = incoming.record.get("decision_no").and_then(Value::as_str)
            && self.repaired.read().expect("repaired lock").contains(no)
        {
            return Ok(Some(Outgoing::NotSent {
                key: key.clone(),
                reason: format!(
                    "{no}已完成信用修复、终止公示，不再推送（《信用修复管理办法》第三条）"
                ),
            }));
        }
        Ok(out)
    }

    /// Follows the credit transform's repair results, if it has a
    /// `repairs_topic`, into [`Delivery::repaired`] until `shutdown`;
    /// returns once their history is read, so that nothing repaired is
    /// pushed after a restart.
    pub async fn follow_repairs(&self, shutdown: &CancellationToken) {
        let transform::Transform::Credit(_) = self.transform.as_ref() else {
            return;
        };
        let TransformConfig::CreditPenalty {
            repairs_topic: Some(topic),
            ..
        } = &self.config.transform
        else {
            return;
        };
        let mut rx = crate::bus::follow::follow(&self.bus, vec![topic.clone()], shutdown.clone());
        let (caught_up, done) = tokio::sync::oneshot::channel();
        let (repaired, schemas) = (self.repaired.clone(), self.schemas.clone());
        tokio::spawn(async move {
            let mut caught_up = Some(caught_up);
            while let Some(f) = rx.recv().await {
                match f {
                    crate::bus::follow::Follow::CaughtUp => {
                        if let Some(tx) = caught_up.take() {
                            let _ = tx.send(());
                        }
                    }
                    crate::bus::follow::Follow::Record(f) => {
                        match crate::schema::decode_payload(&schemas, &f.headers, &f.payload) {
                            Ok(r)
                                if r.get("kind").and_then(Value::as_str)
                                    == Some("PUBLICATION_ENDED") =>
                            {
                                if let Some(no) = r.get("decision_no").and_then(Value::as_str) {
                                    repaired
                                        .write()
                                        .expect("repaired lock")
                                        .insert(no.to_owned());
                                }
                            }
                            Ok(_) => {}
                            Err(e) => f.unreadable("credit push", &e),
                        }
                    }
                }
            }
        });
        tokio::select! {
            _ = done => {}
            _ = shutdown.cancelled() => {}
        }
    }
}

/// The transform's answer for a record, then the destination's
/// personal-data rule: what [`Delivery::outgoing`] and `deliveries preview` send.
pub fn outgoing_of(
    transform: &Transform,
    config: &DeliveryConfig,
    incoming: &Incoming,
) -> Result<Option<Outgoing>, String> {
    let mut out = transform.apply(incoming)?;
    if config.personal_data != crate::personal::PersonalDataPolicy::Full
        && let Some(o) = out.as_mut()
    {
        o.scrub(&crate::ident::MaskPolicy::birth_date());
    }
    Ok(out)
}

/// `duijie deliveries preview`: canonical records (JSON lines, as `duijie map`
/// writes them) through a delivery's selection, transform and personal-data
/// rule, without Kafka or network: per record, exactly the request the
/// receiver would get (URL, headers, body, idempotency key), or why it is
/// not sent. A line that is not a JSON object is an error naming its line.
pub fn preview(
    name: &str,
    config: &DeliveryConfig,
    input: &str,
    file: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> crate::error::Result<Vec<Value>> {
    use crate::error::{Domain, Error};
    let transform = Transform::from_config(&config.transform);
    let target = Target::from_config(&config.target, None)
        .map_err(|e| Error::permanent(Domain::Config, format!("delivery `{name}`: {e}")))?;
    let mut out = Vec::new();
    for (i, line) in input.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{file}:{}", i + 1);
        let value: Value = serde_json::from_str(line)
            .map_err(|e| Error::permanent(Domain::Delivery, format!("{at}: not JSON: {e}")))?;
        let record = value.get("record").cloned().unwrap_or(value);
        if !record.is_object() {
            return Err(Error::permanent(
                Domain::Delivery,
                format!("{at}: not a canonical record (a JSON object)"),
            ));
        }
        let key = record
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let incoming = Incoming {
            partition: 0,
            offset: i as i64,
            key: key.clone(),
            headers: BTreeMap::new(),
            payload_sha256: Provenance::hash(line.as_bytes()),
            fetched_at_ms: None,
            record,
        };
        let mask = crate::ident::MaskPolicy::birth_date();
        let record_id = crate::personal::scrub_text(&key, &mask);
        let entry = if let Some(select) = &config.select
            && !select.holds(&incoming.record)
        {
            json!({"line": at, "record_id": record_id, "sent": false,
                   "reason": "not selected by the delivery's `select`"})
        } else {
            match outgoing_of(&transform, config, &incoming) {
                Err(reason) => json!({"line": at, "record_id": record_id, "sent": false,
                    "reason": format!("refused by the hub (dead-lettered): {reason}")}),
                Ok(None) => json!({"line": at, "record_id": record_id, "sent": false,
                    "reason": "the transform sends nothing for it"}),
                Ok(Some(Outgoing::NotSent { key, reason })) => json!({"line": at,
                    "record_id": record_id, "idempotency_key": key, "sent": false,
                    "reason": reason}),
                Ok(Some(Outgoing::Held { key, reason })) => json!({"line": at,
                    "record_id": record_id, "idempotency_key": key, "sent": false,
                    "held": true, "reason": reason}),
                Ok(Some(o)) => {
                    let request = target.request(&[&o], now.timestamp());
                    json!({"line": at, "record_id": record_id, "delivery": name,
                        "idempotency_key": o.key(), "sent": request.is_some(),
                        "request": request,
                        "record": o.body()})
                }
            }
        };
        let mut entry = entry;
        if let Some(why) = transform.explain(&incoming.record) {
            entry["credit"] = why;
        }
        out.push(entry);
    }
    Ok(out)
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A record read from the topic, decoded.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub record: Value,
    pub headers: BTreeMap<String, String>,
    /// SHA-256 of the payload, for the idempotency key of records without a
    /// version.
    pub payload_sha256: String,
    /// When the source record was fetched (epoch ms), from provenance.
    pub fetched_at_ms: Option<i64>,
}

impl Delivery {
    pub fn new(
        name: &str,
        config: DeliveryConfig,
        bus: Bus,
        producer: FutureProducer,
        schemas: Arc<SchemaSet>,
        topics: SharedTopics,
    ) -> Result<Self> {
        let transform = Transform::from_config(&config.transform);
        let target = Target::from_config(&config.target, config.rate_per_sec)
            .map_err(|why| Error::permanent(Domain::Config, why))?;
        Ok(Self {
            name: name.to_owned(),
            department: config.department.clone().unwrap_or_else(|| name.to_owned()),
            dlq_topic: config.dlq_topic(name),
            producer,
            schemas,
            topics,
            transform: Arc::new(transform),
            target: Arc::new(target),
            stats: Arc::default(),
            max_dead_letter_bytes: bus
                .producer_message_limit()
                .saturating_sub(crate::bus::RECORD_HEADROOM),
            repaired: Arc::default(),
            gate: Arc::new(gate::Gate::new(config.in_flight)),
            config,
            bus,
        })
    }

    pub fn group_id(bus: &Bus, name: &str) -> String {
        format!("{}-delivery-{name}", bus.client_id)
    }

    /// Decodes a consumed message.
    pub fn decode(&self, m: &BorrowedMessage<'_>) -> Result<Incoming, String> {
        let headers = crate::bus::header_map(m);
        let payload = crate::bus::seal::open_message(m)?;
        let record = crate::schema::decode_payload(&self.schemas, &headers, &payload)?;
        let provenance = Provenance::from_headers(&headers);
        Ok(Incoming {
            partition: m.partition(),
            offset: m.offset(),
            key: m
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default(),
            record,
            payload_sha256: if provenance.payload_sha256.is_empty() {
                Provenance::hash(&payload)
            } else {
                provenance.payload_sha256
            },
            fetched_at_ms: (provenance.fetched_at_ms != 0).then_some(provenance.fetched_at_ms),
            headers,
        })
    }

    /// Runs until `shutdown`; offsets are committed after each round.
    pub async fn run(self, shutdown: CancellationToken) {
        let span = info_span!("delivery", delivery = %self.name, department = %self.department);
        async move {
            self.follow_repairs(&shutdown).await;
            let settled = || {
                use std::sync::atomic::Ordering::Relaxed;
                let s = &self.stats;
                s.delivered.load(Relaxed)
                    + s.rejected.load(Relaxed)
                    + s.failed.load(Relaxed)
                    + s.not_sent.load(Relaxed)
                    + s.held.load(Relaxed)
            };
            let attempt = || async {
                let before = settled();
                let e = self.consume(&shutdown).await.err()?;
                let failure = crate::retry::Failure::of(e, settled() > before);
                if failure.permanent {
                    // A group or topic the hub may not read, say: waiting
                    // will not help. Stopped, visibly (`/ready`, metrics).
                    tracing::error!(error = %failure.error, "delivery failed permanently; it stays stopped until its configuration is corrected and reloaded");
                    *self.stats.stopped.lock().expect("stopped lock") = Some(failure.error.to_string());
                }
                Some(failure)
            };
            crate::retry::supervise(
                &self.config.retry,
                &shutdown,
                "delivery failed; resuming from committed offsets",
                attempt,
            )
            .await;
        }
        .instrument(span)
        .await
    }

    /// Long because a delivery's consumer loop (assignment, requests in
    /// flight across keys, settling in offset order per key, committing) is
    /// one select.
    async fn consume(&self, shutdown: &CancellationToken) -> Result<()> {
        let group = Self::group_id(&self.bus, &self.name);
        // Under KIP-848 the group's session is the broker's to keep.
        self.bus.set_group_timeouts(&group).await;
        let consumer: StreamConsumer<crate::bus::ReaderContext> = self.bus.group_member(&group)?;
        consumer
            .subscribe(&[&self.config.topic])
            .with_context(|| format!("subscribing to `{}`", self.config.topic))?;
        info!(topic = %self.config.topic, "delivery consuming");
        loop {
            // A round: what is there now, up to a bound, grouped by partition.
            let first = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                m = consumer.recv() => match m {
                    Ok(m) => m,
                    // One broker of several away: librdkafka goes on with
                    // the others; a restart would only rejoin the group.
                    Err(e) if crate::bus::is_passing_poll_error(&e) => {
                        tracing::debug!(error = %e, "a broker is away; reading on");
                        continue;
                    }
                    Err(e) => {
                        return Err(Error::from(e).context(format!("reading `{}`", self.config.topic)));
                    }
                },
            };
            let mut round: BTreeMap<i32, Vec<Incoming>> = BTreeMap::new();
            let mut undecodable = Vec::new();
            let mut take = |m: &BorrowedMessage<'_>| match self.decode(m) {
                // A tombstone on a compacted topic (the blacklist keeper's,
                // when it carries a person over to a new key) is the
                // topic forgetting a key, not a record to deliver.
                _ if m.payload().is_none() => tracing::info!(
                    partition = m.partition(),
                    offset = m.offset(),
                    "a tombstone is not delivered"
                ),
                Ok(i) => round.entry(i.partition).or_default().push(i),
                Err(e) => undecodable.push((
                    m.partition(),
                    m.offset(),
                    e,
                    m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                )),
            };
            take(&first);
            // A round takes what is there now: until the topic is quiet
            // for ROUND_QUIET, at most ROUND_WAIT after its first record
            // (so a steady stream does not hold records back), at most
            // `bound` records.
            let bound = (self.config.batch_size * 4).max(10_000);
            let deadline = tokio::time::Instant::now() + ROUND_WAIT;
            let mut n = 1;
            while n < bound {
                let quiet = tokio::time::Instant::now() + ROUND_QUIET;
                match tokio::time::timeout_at(quiet.min(deadline), consumer.recv()).await {
                    Ok(Ok(m)) => {
                        take(&m);
                        n += 1;
                    }
                    _ => break,
                }
            }
            // A payload that does not decode cannot be delivered: dead letter.
            for (partition, offset, reason, payload) in undecodable {
                self.dead_letter(
                    &payload,
                    &format!("cannot decode the record: {reason}"),
                    partition,
                    offset,
                    &BTreeMap::new(),
                    None,
                )
                .await?;
            }
            let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
            let results = futures::future::join_all(round.into_iter().map(
                |(partition, records)| async move {
                    let last = records.last().map(|r| r.offset);
                    self.deliver_partition(records, shutdown)
                        .await
                        .map(|_| (partition, last))
                },
            ))
            .await;
            for r in results {
                let (partition, last) = r?;
                if let Some(last) = last {
                    ends.insert(partition, last);
                }
            }
            if shutdown.is_cancelled() {
                // Records of this round may not all be settled: commit nothing
                // more; they are delivered again after the restart.
                return Ok(());
            }
            let mut tpl = TopicPartitionList::new();
            for (partition, last) in &ends {
                tpl.add_partition_offset(&self.config.topic, *partition, Offset::Offset(last + 1))?;
            }
            if tpl.count() > 0 {
                consumer
                    .commit(&tpl, CommitMode::Sync)
                    .context("committing the delivered offsets")?;
            }
        }
    }

    /// Delivers one partition's records, in order. Returns when each is
    /// settled (delivered, refused, or dead-lettered) with its receipt
    /// written, or with an error when shut down or when the bus fails.
    pub async fn deliver_partition(
        &self,
        records: Vec<Incoming>,
        shutdown: &CancellationToken,
    ) -> Result<()> {
        let mut pending: Vec<(Incoming, Outgoing)> = Vec::new();
        let mut receipts = Vec::new();
        for incoming in records {
            if let Some(select) = &self.config.select
                && !select.holds(&incoming.record)
            {
                continue;
            }
            match self.outgoing(&incoming) {
                Ok(Some(out)) => pending.push((incoming, out)),
                Ok(None) => {}
                Err(reason) => {
                    self.settle(
                        &incoming,
                        None,
                        Settled::new(Outcome::Rejected, 0, Some(reason)),
                        &mut receipts,
                    )
                    .await?;
                }
            }
        }
        if self.target.batches() {
            // Batch targets take runs of records together, in offset order.
            let batch = self.config.batch_size;
            let mut i = 0;
            while i < pending.len() {
                let mut j = i + 1;
                while j < pending.len()
                    && j - i < batch
                    && pending[i].1.batchable()
                    && pending[j].1.batchable()
                {
                    j += 1;
                }
                let chunk = &pending[i..j];
                let results = self.deliver_with_retry(chunk, shutdown).await?;
                for ((incoming, out), settled) in chunk.iter().zip(results) {
                    self.settle(incoming, Some(out), settled, &mut receipts)
                        .await?;
                }
                i = j;
            }
        } else {
            // One request a record: each key's records in offset order
            // (one case's versions), keys side by side within the
            // pipeline's `in_flight` slots.
            let mut lanes: std::collections::HashMap<&str, Vec<&(Incoming, Outgoing)>> =
                std::collections::HashMap::new();
            for p in &pending {
                lanes.entry(p.0.key.as_str()).or_default().push(p);
            }
            let settled =
                futures::future::try_join_all(lanes.into_values().map(|lane| async move {
                    let mut receipts = Vec::new();
                    for p in lane {
                        let chunk = std::slice::from_ref(p);
                        let results = self.deliver_with_retry(chunk, shutdown).await?;
                        for ((incoming, out), settled) in chunk.iter().zip(results) {
                            self.settle(incoming, Some(out), settled, &mut receipts)
                                .await?;
                        }
                    }
                    Ok::<_, Error>(receipts)
                }))
                .await?;
            receipts.extend(settled.into_iter().flatten());
        }
        // Every receipt acknowledged before the caller commits the offsets.
        for f in receipts {
            match f.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(Error::from(e).context("writing a receipt")),
                Err(_) => {
                    return Err(Error::transient(
                        Domain::Bus,
                        "the producer dropped a receipt",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Sends a chunk until every record in it is settled or the attempts
    /// run out, in a `deliver` span that continues the (first) record's
    /// trace; each request carries that span's `traceparent`. Returns
    /// (outcome, attempts, reason) per record.
    async fn deliver_with_retry(
        &self,
        chunk: &[(Incoming, Outgoing)],
        shutdown: &CancellationToken,
    ) -> Result<Vec<Settled>> {
        use crate::telemetry::trace;
        use opentelemetry::KeyValue;
        use opentelemetry::context::FutureExt as _;
        let first = &chunk[0].0;
        let mut attributes = vec![
            KeyValue::new("duijie.delivery", self.name.clone()),
            KeyValue::new("duijie.target", self.target.kind()),
            trace::key(&first.key),
            KeyValue::new("messaging.kafka.offset", first.offset),
        ];
        if chunk.len() > 1 {
            attributes.push(KeyValue::new("duijie.records", chunk.len() as i64));
        }
        let span = trace::begin(
            "deliver",
            opentelemetry::trace::SpanKind::Client,
            &trace::continued(&first.headers),
            std::time::SystemTime::now(),
            attributes,
        );
        let result = self
            .attempts(chunk, shutdown)
            .with_context(span.clone())
            .await;
        match &result {
            Ok(settled) => {
                let last = settled.last().expect("a chunk is never empty");
                let refused = settled
                    .iter()
                    .find(|s| matches!(s.outcome, Outcome::Rejected | Outcome::Failed));
                trace::end(
                    &span,
                    vec![
                        KeyValue::new("duijie.outcome", format!("{:?}", last.outcome)),
                        KeyValue::new("duijie.attempts", i64::from(last.attempts)),
                    ],
                    refused.map(|s| s.reason.clone().unwrap_or_default()),
                );
            }
            Err(e) => trace::end(&span, vec![], Some(e.to_string())),
        }
        result
    }

    /// [`Delivery::deliver_with_retry`]'s attempts.
    ///
    /// Long because a request's retry loop (send, classify the answer,
    /// honour Retry-After, wait within the patience, count each attempt);
    /// the classification needs every branch in view.
    async fn attempts(
        &self,
        chunk: &[(Incoming, Outgoing)],
        shutdown: &CancellationToken,
    ) -> Result<Vec<Settled>> {
        let mut results: Vec<Option<Settled>> = chunk
            .iter()
            .map(|(_, out)| match out {
                Outgoing::NotSent { reason, .. } => {
                    Some(Settled::new(Outcome::NotSent, 0, Some(reason.clone())))
                }
                Outgoing::Held { reason, .. } => {
                    Some(Settled::new(Outcome::Held, 0, Some(reason.clone())))
                }
                _ => None,
            })
            .collect();
        let max = self.config.retry.max_attempts.max(1);
        let mut attempt = 0u32;
        // When the receiver first failed for this chunk: it is waited for
        // `patience` from then (a maintenance window), not `max` attempts.
        let mut first_failure: Option<tokio::time::Instant> = None;
        let mut alerted = false;
        let ticket = self.gate.ticket();
        loop {
            let open: Vec<usize> = (0..chunk.len()).filter(|i| results[*i].is_none()).collect();
            if open.is_empty() {
                break;
            }
            attempt += 1;
            let outs: Vec<&Outgoing> = open.iter().map(|i| &chunk[*i].1).collect();
            // A slot for the request only: a chunk waiting out its backoff
            // holds none.
            let answers = tokio::select! {
                _ = shutdown.cancelled() => return Err(shut_down_while_delivering()),
                a = ticket.send(self.target.send(&outs)) => a,
            };
            let mut transient = None;
            let mut retry_after: Option<Duration> = None;
            for (k, answer) in open.iter().zip(answers) {
                match answer {
                    Attempt::Accepted(ack) => {
                        results[*k] = Some(Settled {
                            ack: Some(ack),
                            ..Settled::new(Outcome::Delivered, attempt, None)
                        })
                    }
                    Attempt::Refused(reason) => {
                        results[*k] = Some(Settled::new(Outcome::Rejected, attempt, Some(reason)))
                    }
                    Attempt::Transient {
                        reason,
                        retry_after: after,
                    } => {
                        transient = Some(reason);
                        retry_after = retry_after.max(after);
                    }
                }
            }
            if transient.is_some() {
                ticket.failed();
            } else {
                ticket.answered();
            }
            if let Some(reason) = transient {
                let since = *first_failure.get_or_insert_with(tokio::time::Instant::now);
                let waited = since.elapsed();
                if waited < self.config.patience {
                    let now = chrono::Utc::now().timestamp_millis();
                    let _ = self.stats.waiting_since_ms.compare_exchange(
                        0,
                        now - i64::try_from(waited.as_millis()).unwrap_or(0),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    if !alerted && waited >= self.config.alert_after {
                        alerted = true;
                        if self
                            .stats
                            .waiting_alerted
                            .compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)
                            .is_ok()
                        {
                            self.alert_waiting(&reason, waited).await?;
                        }
                    }
                }
                if attempt >= max && waited >= self.config.patience {
                    for r in results.iter_mut().filter(|r| r.is_none()) {
                        *r = Some(Settled::new(
                            Outcome::Failed,
                            attempt,
                            Some(format!("{attempt} attempts failed; last: {reason}")),
                        ));
                    }
                    break;
                }
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                let wait = backoff(&self.config.retry, attempt, retry_after);
                warn!(attempt, %reason, wait_ms = wait.as_millis() as u64, "delivery failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(shut_down_while_delivering()),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
        if first_failure.is_some() {
            // The receiver answered again: the outage is over.
            self.stats.waiting_since_ms.store(0, Ordering::Relaxed);
            self.stats.waiting_alerted.store(false, Ordering::Relaxed);
        }
        Ok(results.into_iter().map(|r| r.expect("settled")).collect())
    }

    /// The feed has waited `waited` for its receiver: one alert per outage.
    async fn alert_waiting(&self, reason: &str, waited: Duration) -> Result<()> {
        use crate::alert::{Alert, Severity};
        let message = format!(
            "接收方持续不可用，推送等待中：{}（{}）已等待{}分钟，最长等待{}分钟后转入死信；原因：{reason}",
            self.department,
            self.name,
            waited.as_secs() / 60,
            self.config.patience.as_secs() / 60
        );
        let alert = Alert::new(
            "DELIVERY_WAITING",
            Severity::Warning,
            &self.name,
            message,
            chrono::Utc::now(),
        )
        .with("delivery", self.name.as_str())
        .with("department", self.department.as_str());
        self.send(
            &self.topics.alerts,
            &format!("delivery:{}:waiting", self.name),
            &alert.to_bytes(),
        )
        .await
    }

    /// Writes the receipt (and the dead letter and alert when it failed),
    /// each acknowledged by the broker.
    ///
    /// Long because a record's outcome written in the order that keeps
    /// receipts exact (dead letter, alert, receipt), each acknowledged by
    /// the broker before the next.
    async fn settle(
        &self,
        incoming: &Incoming,
        out: Option<&Outgoing>,
        settled: Settled,
        receipts: &mut Vec<rdkafka::producer::DeliveryFuture>,
    ) -> Result<()> {
        let Settled {
            outcome,
            attempts,
            reason,
            ack,
        } = settled;
        let counter = match outcome {
            Outcome::Delivered => &self.stats.delivered,
            Outcome::Rejected => &self.stats.rejected,
            Outcome::Failed => &self.stats.failed,
            Outcome::NotSent => &self.stats.not_sent,
            Outcome::Held => &self.stats.held,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let (Outcome::Delivered, Some(at)) = (outcome, incoming.fetched_at_ms) {
            self.stats
                .latency
                .observe_ms(chrono::Utc::now().timestamp_millis() - at);
        }
        // Receipts, alerts and dead letters are the hub's own, and follow
        // the personal-data rule all the same: no full ID number in them.
        let mask = crate::ident::MaskPolicy::birth_date();
        let record_id = crate::personal::scrub_text(
            incoming
                .record
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or(&incoming.key),
            &mask,
        );
        tracing::debug!(record_id = %record_id, partition = incoming.partition, offset = incoming.offset, outcome = ?outcome, attempts, "record settled");
        let key = out
            .map(|o| o.key().to_owned())
            .unwrap_or_else(|| transform::idempotency_key(incoming));
        let key = crate::personal::scrub_text(&key, &mask);
        let reason = reason.map(|r| crate::personal::scrub_text(&r, &mask));
        if matches!(outcome, Outcome::Rejected | Outcome::Failed) {
            let mut body = out
                .map(|o| o.body())
                .unwrap_or_else(|| incoming.record.clone());
            crate::personal::scrub(&mut body, &mask);
            let body = body.to_string();
            let why = reason.clone().unwrap_or_default();
            self.dead_letter(
                body.as_bytes(),
                &why,
                incoming.partition,
                incoming.offset,
                &incoming.headers,
                Some(
                    out.map(|o| o.key().to_owned())
                        .unwrap_or_else(|| transform::idempotency_key(incoming)),
                ),
            )
            .await?;
            self.alert(&record_id, outcome, &why).await?;
        }
        let mut receipt = Receipt {
            delivery: self.name.clone(),
            department: self.department.clone(),
            record_id,
            idempotency_key: key,
            outcome,
            attempts,
            reason,
            at_ms: chrono::Utc::now().timestamp_millis(),
            topic: self.config.topic.clone(),
            partition: incoming.partition,
            offset: incoming.offset,
            proof: None,
        };
        if let (Some(ack), Some(out)) = (ack, out) {
            let mut answer = ack.answer;
            let answer_masked = answer
                .as_deref()
                .is_some_and(|a| !crate::personal::full_ids(a).is_empty());
            if answer_masked {
                answer = answer.map(|a| crate::personal::scrub_text(&a, &mask));
            }
            receipt.proof = Some(Proof {
                body_sm3: body_sm3(out),
                answer,
                answer_masked,
                answer_signature: ack.signature,
                answer_verified: ack.verified,
                hub_signature: None,
                hub_key: self.target.hub().map(|h| h.key_id().to_owned()),
            });
            if let (Some(hub), Some(statement)) = (self.target.hub(), receipt.statement()) {
                let signature = hub.sign_der_base64(&statement);
                if let Some(p) = receipt.proof.as_mut() {
                    p.hub_signature = Some(signature);
                }
            }
        }
        let body = serde_json::to_vec(&receipt).expect("receipts serialize");
        let k = format!("{}:{}", self.name, receipt.record_id);
        // Enqueued here, acknowledged before the round's offsets are
        // committed (see `deliver_partition`).
        let mut record = FutureRecord::to(&self.topics.receipts)
            .key(&k)
            .payload(&body);
        loop {
            match self.producer.send_result(record) {
                Ok(f) => {
                    receipts.push(f);
                    return Ok(());
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => {
                    return Err(
                        Error::from(e).context(format!("writing to {}", self.topics.receipts))
                    );
                }
            }
        }
    }

    /// The receipts of records a department pulled, and this process's
    /// count of them.
    pub(crate) async fn receipt_pulled(&self, receipts: &[Receipt]) -> Result<()> {
        let sends = receipts.iter().map(|r| async move {
            let body = serde_json::to_vec(r).expect("receipts serialize");
            let key = format!("{}:{}", self.name, r.record_id);
            self.send(&self.topics.receipts, &key, &body).await
        });
        futures::future::try_join_all(sends).await?;
        self.stats
            .delivered
            .fetch_add(receipts.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    async fn send(&self, topic: &str, key: &str, body: &[u8]) -> Result<()> {
        self.producer
            .send(
                FutureRecord::to(topic).key(key).payload(body),
                Duration::from_secs(30),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| Error::from(e).context(format!("writing to {topic}")))
    }

    async fn dead_letter(
        &self,
        payload: &[u8],
        reason: &str,
        partition: i32,
        offset: i64,
        headers: &BTreeMap<String, String>,
        key: Option<String>,
    ) -> Result<()> {
        let read = Provenance::from_headers(headers);
        let provenance = Provenance {
            source_system: read.source_system,
            source_id: read.source_id,
            fetched_at_ms: chrono::Utc::now().timestamp_millis(),
            connector: self.target.kind().to_owned(),
            pipeline: self.name.clone(),
            mapping: self.transform.kind().to_owned(),
            mapping_version: 1,
            payload_sha256: Provenance::hash(payload),
            origin: format!("{}[{partition}]@{offset}", self.config.topic),
            code_tables: String::new(),
        };
        let mut letter = DeadLetter::bounded(
            payload,
            false,
            None,
            "delivery",
            reason.to_owned(),
            provenance,
            self.max_dead_letter_bytes,
        );
        letter.idempotency_key = key;
        let body = serde_json::to_vec(&letter).expect("dead letters serialize");
        self.send(
            &self.dlq_topic,
            &format!("{}@{partition}:{offset}", self.config.topic),
            &body,
        )
        .await
    }

    async fn alert(&self, record_id: &str, outcome: Outcome, reason: &str) -> Result<()> {
        let message = match outcome {
            Outcome::Rejected => format!(
                "推送被接收方拒收：{} → {}（{}），原因：{reason}",
                record_id, self.department, self.name
            ),
            _ => format!(
                "推送多次失败，已转入死信：{} → {}（{}），原因：{reason}",
                record_id, self.department, self.name
            ),
        };
        use crate::alert::{Alert, Severity};
        let (kind, severity) = if outcome == Outcome::Rejected {
            ("DELIVERY_REJECTED", Severity::Warning)
        } else {
            ("DELIVERY_FAILED", Severity::Critical)
        };
        let alert = Alert::new(kind, severity, record_id, message, chrono::Utc::now())
            .with("delivery", self.name.as_str())
            .with("department", self.department.as_str());
        self.send(
            &self.topics.alerts,
            &format!("delivery:{}:{record_id}", self.name),
            &alert.to_bytes(),
        )
        .await
    }
}

/// A receiver's SM2 public key, for the signatures on its answers.
#[derive(Debug, Clone)]
pub struct ReceiptKey(duijie_crypto::sm2::PublicKey);

impl ReceiptKey {
    pub fn new(pem: &str) -> Result<Self, String> {
        duijie_crypto::sm2::PublicKey::from_pem(pem, duijie_crypto::sm2::DEFAULT_DISTID)
            .map(Self)
            .map_err(|e| format!("`target.receipt_key`: {e}"))
    }

    /// Whether `signature` (DER, base64) is the receiver's over `answer`.
    pub fn verifies(&self, answer: &[u8], signature: &str) -> bool {
        duijie_crypto::Text::Base64
            .decode(signature.trim())
            .ok()
            .is_some_and(|sig| {
                self.0
                    .verify(answer, &sig, duijie_crypto::sm2::SignatureForm::Der)
                    .is_ok()
            })
    }
}
