//! The Kafka bus: clients, topics, provenance headers, dead letters and
//! the cursor store.
//!
//! Nothing here is specific to one broker: the hub talks the Kafka protocol
//! through librdkafka (the `rdkafka` crate) and points at whatever cluster
//! the deployment names. Tests run it against Apache Kafka; the
//! zero-install demo against librdkafka's in-process mock cluster.

pub mod acks;
pub mod cursor;
pub mod follow;
pub mod inspect;
mod provenance;
pub mod publish;
pub mod read;
pub mod seal;
mod unreadable;

pub use acks::{Acks, BatchProducer};
pub use cursor::{CursorStore, StoredCursor};
pub use provenance::{
    DeadLetter, HeaderTemplate, PROVENANCE_HEADER, PROVENANCE_LAYOUT, PackedProvenance, Provenance,
    RawRef, headers, traced,
};
pub use unreadable::{unreadable, unreadable_counts};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, Producer};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot create Kafka client: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot create topic `{topic}`: {source}")]
    Topic {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("broker did not answer: {0}")]
    Unreachable(#[source] KafkaError),
    #[error(
        "creating the topics {topics}: the broker did not answer the CreateTopics request ({source}). A broker that cannot create topics through the admin API — librdkafka's mock cluster, which `duijie-sandbox broker` runs — needs them made first: start it with `duijie-sandbox broker --config <this deployment file>`"
    )]
    CreateTopics {
        topics: String,
        #[source]
        source: KafkaError,
    },
    #[error("Kafka transaction failed: {0}")]
    Transaction(#[source] KafkaError),
    #[error("cursor topic `{topic}` holds an unreadable cursor for `{key}`: {message}")]
    BadCursor {
        topic: String,
        key: String,
        message: String,
    },
}

/// Kafka's rule for topic names.
pub fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 || name == "." || name == ".." {
        return Err(format!("`{name}` is not a valid topic name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name `{name}` holds `{c}`; use letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

/// Whether waiting and trying again can help with a Kafka error: a record
/// too large, a topic or cluster the hub may not write, an invalid
/// configuration, this instance fenced by another with the same
/// transactional id are permanent; the rest (a broker away, a full queue,
/// a timeout) are transient.
pub fn kafka_class(e: &KafkaError) -> crate::error::ErrorClass {
    use RDKafkaErrorCode as C;
    // A fatal transactional error (fenced, epoch exhausted) ends the
    // producer, whatever its code.
    if let KafkaError::Transaction(t) = e
        && t.is_fatal()
    {
        return crate::error::ErrorClass::Permanent;
    }
    match e.rdkafka_error_code() {
        Some(
            C::MessageSizeTooLarge
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::InvalidRecord
            | C::InvalidConfig
            | C::ProducerFenced
            | C::Fenced
            | C::InvalidProducerEpoch,
        ) => crate::error::ErrorClass::Permanent,
        _ => crate::error::ErrorClass::Transient,
    }
}

impl From<BusError> for crate::error::Error {
    fn from(e: BusError) -> Self {
        Self::new(crate::error::Domain::Bus, e.class(), e)
    }
}

impl From<KafkaError> for crate::error::Error {
    fn from(e: KafkaError) -> Self {
        Self::new(crate::error::Domain::Bus, kafka_class(&e), e)
    }
}

impl BusError {
    pub fn class(&self) -> crate::error::ErrorClass {
        match self {
            BusError::Client(e)
            | BusError::Topic { source: e, .. }
            | BusError::Unreachable(e)
            | BusError::Transaction(e) => kafka_class(e),
            // The broker cannot create topics: start it another way.
            BusError::CreateTopics { .. } | BusError::BadCursor { .. } => {
                crate::error::ErrorClass::Permanent
            }
        }
    }
}

/// Client context of the hub's short-lived readers: reaching the end of a
/// partition is how they know they are done, not an error worth logging.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReaderContext;

impl rdkafka::ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(error, KafkaError::PartitionEOF(_))
            || matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF));
        if !eof {
            log_client_error(&error, reason);
        }
    }
}

/// How often one kind of client error is logged at most: in an outage
/// every reader says "all brokers down" several times a second.
const CLIENT_ERROR_EVERY: Duration = Duration::from_secs(10);

/// Logs a client error once per [`CLIENT_ERROR_EVERY`] and kind, across all
/// of the hub's readers, with how many were left out since (the metrics
/// and `/ready` say the state; the log says it once).
pub(crate) fn log_client_error(error: &KafkaError, reason: &str) {
    use std::sync::Mutex;
    use std::time::Instant;
    static SEEN: Mutex<BTreeMap<String, (Option<Instant>, u64)>> = Mutex::new(BTreeMap::new());
    let kind = match error {
        KafkaError::Global(code) => format!("{code:?}"),
        other => other.to_string(),
    };
    let suppressed = {
        let mut seen = SEEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = seen.entry(kind).or_insert((None, 0));
        if entry.0.is_some_and(|t| t.elapsed() < CLIENT_ERROR_EVERY) {
            entry.1 += 1;
            return;
        }
        entry.0 = Some(Instant::now());
        std::mem::take(&mut entry.1)
    };
    tracing::error!(%error, reason, suppressed, "librdkafka error");
}

impl rdkafka::consumer::ConsumerContext for ReaderContext {}

/// The headers of a consumed record, as text, the packed provenance
/// header unpacked under the `duijie-*` names of its fields (records
/// written before it carry those headers themselves). A provenance header
/// that does not unpack is kept under its name, as text, with the reason
/// under `duijie-provenance-error`.
pub fn header_map<M: rdkafka::message::Message>(m: &M) -> BTreeMap<String, String> {
    use rdkafka::message::Headers;
    let mut out = BTreeMap::new();
    if let Some(h) = m.headers() {
        for header in h.iter() {
            if header.key == PROVENANCE_HEADER {
                match PackedProvenance::unpack(header.value.unwrap_or_default()) {
                    Ok(fields) => {
                        out.extend(fields.into_iter().map(|(k, v)| (k.to_owned(), v)));
                        continue;
                    }
                    Err(e) => {
                        out.insert(format!("{PROVENANCE_HEADER}-error"), e);
                    }
                }
            }
            out.insert(
                header.key.to_owned(),
                header
                    .value
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default(),
            );
        }
    }
    out
}

/// Which records a reader sees of a transactional writer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Only committed transactions (`read_committed`): what consumers see.
    Committed,
    /// Everything written (`read_uncommitted`): inspection tools.
    Uncommitted,
}

impl Isolation {
    pub fn committed_if(committed: bool) -> Self {
        if committed {
            Isolation::Committed
        } else {
            Isolation::Uncommitted
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Isolation::Committed => "read_committed",
            Isolation::Uncommitted => "read_uncommitted",
        }
    }
}

/// A topic the hub writes to, as it must exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub cleanup: Cleanup,
}

impl TopicSpec {
    /// A topic of one partition (a keeper's memory, an audit chain, a
    /// state table: one order, one reader).
    pub fn single(name: impl Into<String>, cleanup: Cleanup) -> Self {
        Self {
            name: name.into(),
            partitions: 1,
            cleanup,
        }
    }
}

/// What the cluster may delete from a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// The cluster's retention applies (`cleanup.policy=delete`).
    Delete,
    /// The latest record per key is kept (`cleanup.policy=compact`).
    Compact,
    /// Nothing is deleted (`retention.ms=-1`, `retention.bytes=-1`): a log
    /// that is the only record of what happened (an audit trail, a legal
    /// procedure).
    Keep,
    /// Deleted after `ms`, or beyond `bytes` a partition (`-1`: no size
    /// limit): what is kept for a while only (raw payloads).
    Retain { ms: i64, bytes: i64 },
}

impl Cleanup {
    pub fn compact_if(compacted: bool) -> Self {
        if compacted {
            Cleanup::Compact
        } else {
            Cleanup::Delete
        }
    }

    fn settings(self) -> Vec<(&'static str, String)> {
        match self {
            Cleanup::Delete => Vec::new(),
            Cleanup::Compact => vec![("cleanup.policy", "compact".into())],
            Cleanup::Keep => vec![
                ("retention.ms", "-1".into()),
                ("retention.bytes", "-1".into()),
            ],
            Cleanup::Retain { ms, bytes } => vec![
                ("cleanup.policy", "delete".into()),
                ("retention.ms", ms.to_string()),
                ("retention.bytes", bytes.to_string()),
            ],
        }
    }
}

/// How a topic keeps its records ([`Bus::retention_each`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Every record, for ever (`retention.ms` -1).
    Whole,
    /// The latest record of each key, for ever (`cleanup.policy` compact):
    /// whole for a topic whose keys are its records' ids, not for one whose
    /// records share a key (an audit chain).
    Compacted,
    /// For this many milliseconds.
    For(i64),
}

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct Bus {
    pub brokers: String,
    pub client_id: String,
    pub replication: i32,
    /// Extra librdkafka properties for every client.
    pub properties: BTreeMap<String, String>,
    /// The consumer group protocol of the hub's groups.
    pub group_protocol: GroupProtocol,
    /// How long a silent member keeps its partitions (`[kafka]
    /// session_timeout`): sent by the client under the classic protocol
    /// where the hub sets it (scale-out), set on the group under KIP-848.
    pub session_timeout: Duration,
}

/// The consumer group protocol (`[kafka] group_protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupProtocol {
    /// The classic protocol: the client's `session.timeout.ms`, cooperative
    /// sticky assignment (KIP-429), a rebalance that waits for every member.
    #[default]
    Classic,
    /// The broker-driven protocol (KIP-848, Kafka 4.0+, librdkafka 2.12
    /// `group.protocol=consumer`): the broker assigns partitions member by
    /// member without a group-wide barrier, and its session timeout is the
    /// group's (`consumer.session.timeout.ms`), which the hub sets at start
    /// ([`Bus::set_group_timeouts`]) within the cluster's bounds.
    Consumer,
}

/// Whether a consumer's poll error is one broker of several being away
/// (a transport failure, a broker down): librdkafka goes on with the
/// others and reconnects, so a reader keeps polling to its deadline.
pub fn is_passing_poll_error(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageConsumption(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::NetworkException
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
        ) | KafkaError::Global(
            RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown
        )
    )
}

/// Room left in a record for its key, headers and batch framing, below
/// the broker's message size limit.
pub const RECORD_HEADROOM: usize = 16 * 1024;

impl Bus {
    pub fn new(brokers: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            client_id: client_id.into(),
            replication: 1,
            properties: BTreeMap::new(),
            group_protocol: GroupProtocol::Classic,
            session_timeout: Duration::from_secs(10),
        }
    }

    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// The one way the hub makes a reader of the bus: it assigns its
    /// partitions itself, commits nothing (its group id, `CLIENT-PURPOSE`,
    /// only names it), is told when it reaches a partition's end, and reads
    /// committed records only unless `isolation` says otherwise. Its client
    /// errors are logged rate-limited ([`ReaderContext`]). A `BaseConsumer`
    /// or a `StreamConsumer`.
    pub fn reader<C>(&self, purpose: &str, isolation: Isolation) -> Result<C, BusError>
    where
        C: rdkafka::config::FromClientConfigAndContext<ReaderContext>,
    {
        self.reader_with(purpose, isolation, |_| {})
    }

    /// A [`Self::reader`] with settings of its own (`tune`). A reader reads
    /// to an end and stops: the broker answers an empty fetch after 25 ms
    /// rather than librdkafka's 500 (`fetch.wait.max.ms`), so reaching the
    /// end does not wait — a pipeline taking over reads its cursor in tens
    /// of milliseconds, not a second. A follower that stays at the end sets
    /// it back.
    pub fn reader_with<C>(
        &self,
        purpose: &str,
        isolation: Isolation,
        tune: impl FnOnce(&mut ClientConfig),
    ) -> Result<C, BusError>
    where
        C: rdkafka::config::FromClientConfigAndContext<ReaderContext>,
    {
        let mut c = self.client_config();
        c.set("group.id", format!("{}-{purpose}", self.client_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "25")
            .set("isolation.level", isolation.as_str());
        tune(&mut c);
        c.create_with_context(ReaderContext)
            .map_err(BusError::Client)
    }

    /// The one way the hub makes a member of a consumer group (a push
    /// pipeline, the referral tracker): it subscribes and shares the
    /// topic's partitions with the group's other members (cooperative
    /// sticky), commits its offsets itself after the work they cover, starts
    /// from the earliest record the first time, and reads committed records
    /// only.
    pub fn group_member<C>(&self, group: &str) -> Result<C, BusError>
    where
        C: rdkafka::config::FromClientConfigAndContext<ReaderContext>,
    {
        self.group_member_with(group, ReaderContext, |_| {})
    }

    /// A [`Self::group_member`] with a context of its own (the scale-out
    /// group's, which hands its rebalances to the runtime) and settings
    /// tuned after the group's (`tune`: a session timeout, where to start).
    pub fn group_member_with<C, X>(
        &self,
        group: &str,
        context: X,
        tune: impl FnOnce(&mut ClientConfig),
    ) -> Result<C, BusError>
    where
        X: rdkafka::consumer::ConsumerContext,
        C: rdkafka::config::FromClientConfigAndContext<X>,
    {
        let mut c = self.client_config();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed");
        match self.group_protocol {
            GroupProtocol::Classic => {
                c.set("partition.assignment.strategy", "cooperative-sticky");
            }
            // Assignment and session are the broker's under KIP-848.
            GroupProtocol::Consumer => {
                c.set("group.protocol", "consumer");
            }
        }
        tune(&mut c);
        c.create_with_context(context).map_err(BusError::Client)
    }

    pub(crate) fn producer_config(&self) -> ClientConfig {
        let mut c = self.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            // Same key, same partition as Java clients (Kafka Streams,
            // Connect) would choose.
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("queue.buffering.max.messages", "200000")
            .set("message.timeout.ms", "120000");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// An idempotent producer: retries never write a record twice.
    pub fn producer(&self) -> Result<FutureProducer, BusError> {
        self.producer_config().create().map_err(BusError::Client)
    }

    /// A transactional producer with transactions initialised; a producer
    /// with the same `transactional_id` still alive elsewhere is fenced.
    /// Blocks: call it from a blocking context.
    pub fn transactional_producer(
        &self,
        transactional_id: &str,
    ) -> Result<FutureProducer, BusError> {
        let producer: FutureProducer = self
            .producer_config()
            .set("transactional.id", transactional_id)
            // librdkafka requires message.timeout.ms <= transaction.timeout.ms.
            .set("transaction.timeout.ms", "60000")
            .set("message.timeout.ms", "60000")
            // Taking a pipeline over, the first InitProducerId meets the
            // dead owner's transaction being aborted (CONCURRENT_TRANSACTIONS)
            // and is tried again: every 20 ms up to 200, not up to 1 s.
            .set("retry.backoff.ms", "20")
            .set("retry.backoff.max.ms", "200")
            .create()
            .map_err(BusError::Client)?;
        producer
            .init_transactions(Duration::from_secs(30))
            .map_err(BusError::Transaction)?;
        Ok(producer)
    }

    pub fn admin(&self) -> Result<AdminClient<DefaultClientContext>, BusError> {
        self.client_config().create().map_err(BusError::Client)
    }

    /// Under [`GroupProtocol::Consumer`], sets `group`'s session timeout
    /// (`consumer.session.timeout.ms` = [`Bus::session_timeout`]) and
    /// heartbeat interval (a fifth of it, at least 100 ms) on the broker,
    /// where KIP-848 keeps them. The cluster bounds both
    /// (`group.consumer.min.session.timeout.ms`, default 45 s;
    /// `group.consumer.min.heartbeat.interval.ms`, 5 s): a refusal is logged
    /// naming the bounds to lower, and the group still forms under the
    /// cluster's default (a takeover is then slower than configured). Under
    /// the classic protocol it does nothing (the client sends its own).
    pub async fn set_group_timeouts(&self, group: &str) {
        if self.group_protocol != GroupProtocol::Consumer {
            return;
        }
        if let Err(e) = self.try_set_group_timeouts(group).await {
            tracing::error!(group, error = %e, "the group's session timeout is not set; takeover waits for the cluster's default");
        }
    }

    async fn try_set_group_timeouts(&self, group: &str) -> crate::error::Result<()> {
        use crate::error::{Context, Domain, Error};
        use rdkafka::admin::{AlterConfig, ResourceSpecifier};
        let session_ms = self.session_timeout.as_millis().to_string();
        let heartbeat_ms = (self.session_timeout.as_millis() / 5).max(100).to_string();
        let config = AlterConfig::new(ResourceSpecifier::Group(group))
            .set("consumer.session.timeout.ms", &session_ms)
            .set("consumer.heartbeat.interval.ms", &heartbeat_ms);
        let results = self
            .admin()?
            .alter_configs(
                [&config],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .with_context(|| format!("setting the session timeout of group {group}"))?;
        for r in results {
            if let Err((_, code)) = r {
                return Err(Error::permanent(
                    Domain::Bus,
                    format!(
                        "the cluster refused group {group}'s session timeout {session_ms} ms / heartbeat {heartbeat_ms} ms ({code}): under group_protocol = \"consumer\" they must lie within the brokers' group.consumer.min/max.session.timeout.ms and group.consumer.min/max.heartbeat.interval.ms"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether a broker answers a metadata request within `timeout`, and
    /// how the cluster looks: `Ok("reachable, 3 brokers")`, or
    /// `Ok("degraded: 3 brokers, 12 partitions under-replicated (…)")` when
    /// some partition has fewer in-sync replicas than replicas (a broker is
    /// down or behind).
    pub async fn reachable(&self, timeout: Duration) -> crate::error::Result<String> {
        let bus = self.clone();
        tokio::task::spawn_blocking(move || {
            let consumer: rdkafka::consumer::BaseConsumer<ReaderContext> =
                bus.reader("probe", Isolation::Committed)?;
            use rdkafka::consumer::Consumer;
            let metadata = consumer
                .fetch_metadata(None, timeout)
                .map_err(BusError::Unreachable)?;
            let brokers = metadata.brokers().len();
            let mut under: Vec<String> = Vec::new();
            let mut count = 0usize;
            for t in metadata.topics() {
                for p in t.partitions() {
                    if p.isr().len() < p.replicas().len() {
                        count += 1;
                        if under.len() < 3 {
                            under.push(format!("{}[{}]", t.name(), p.id()));
                        }
                    }
                }
            }
            Ok::<_, BusError>(if count == 0 {
                format!("reachable, {brokers} broker(s)")
            } else {
                format!(
                    "degraded: {brokers} broker(s) up, {count} partition(s) under-replicated (e.g. {})",
                    under.join(", ")
                )
            })
        })
        .await
        .map_err(|e| {
            crate::error::Error::transient(crate::error::Domain::Bus, format!("the probe: {e}"))
        })?
        .map_err(Into::into)
    }

    /// Creates the topics that do not exist yet. Existing topics are left
    /// as they are (their partition count is the cluster's business).
    pub async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        let existing = self.topic_names().await?;
        let topics: Vec<&TopicSpec> = topics
            .iter()
            .filter(|t| !existing.contains(&t.name))
            .collect();
        if topics.is_empty() {
            return Ok(());
        }
        let admin = self.admin()?;
        let settings: Vec<Vec<(&str, String)>> =
            topics.iter().map(|t| t.cleanup.settings()).collect();
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .zip(&settings)
            .map(|(t, settings)| {
                let topic = NewTopic::new(
                    &t.name,
                    t.partitions,
                    TopicReplication::Fixed(self.replication),
                );
                settings.iter().fold(topic, |nt, (k, v)| nt.set(k, v))
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(new.iter(), &options)
            .await
            .map_err(|source| BusError::CreateTopics {
                topics: topics
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                source,
            })?;
        for result in results {
            match result {
                Ok(name) => tracing::info!(topic = %name, "topic created"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(BusError::Topic {
                        topic: name,
                        source: KafkaError::AdminOp(code),
                    });
                }
            }
        }
        Ok(())
    }

    /// The largest record the hub may produce to each of `topics`, in one
    /// DescribeConfigs request: the smaller of the producer's
    /// `message.max.bytes` ([`Bus::producer_message_limit`]) and the topic's
    /// `max.message.bytes` as the broker describes it. A broker that does
    /// not answer within 3 s (the embedded mock has no DescribeConfigs)
    /// leaves the producer's limit, said once in the log.
    pub async fn max_message_bytes_each(&self, topics: &[&str]) -> BTreeMap<String, usize> {
        let producer_limit = self.producer_message_limit();
        let mut limits: BTreeMap<String, usize> = topics
            .iter()
            .map(|t| (t.to_string(), producer_limit))
            .collect();
        if topics.is_empty() {
            return limits;
        }
        let Ok(admin) = self.admin() else {
            return limits;
        };
        let resources: Vec<rdkafka::admin::ResourceSpecifier<'_>> = topics
            .iter()
            .map(|t| rdkafka::admin::ResourceSpecifier::Topic(t))
            .collect();
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(3)));
        match admin.describe_configs(resources.iter(), &options).await {
            Ok(results) => {
                for r in results.into_iter().flatten() {
                    let rdkafka::admin::OwnedResourceSpecifier::Topic(topic) = &r.specifier else {
                        continue;
                    };
                    if let Some(v) = r
                        .get("max.message.bytes")
                        .and_then(|e| e.value.as_deref())
                        .and_then(|v| v.parse::<usize>().ok())
                        && let Some(l) = limits.get_mut(topic)
                    {
                        *l = (*l).min(v);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "topic configs not described; using the producer's message size limit")
            }
        }
        limits
    }

    /// How long each of `topics` keeps its records, as the broker describes
    /// them. `Err` when the broker does not answer DescribeConfigs within
    /// 10 s (the embedded mock has none).
    pub async fn retention_each(
        &self,
        topics: &[&str],
    ) -> Result<BTreeMap<String, Kept>, BusError> {
        let mut out = BTreeMap::new();
        if topics.is_empty() {
            return Ok(out);
        }
        let admin = self.admin()?;
        let resources: Vec<rdkafka::admin::ResourceSpecifier<'_>> = topics
            .iter()
            .map(|t| rdkafka::admin::ResourceSpecifier::Topic(t))
            .collect();
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .describe_configs(resources.iter(), &options)
            .await
            .map_err(|source| BusError::Topic {
                topic: topics.join(", "),
                source,
            })?;
        for r in results {
            let r = r.map_err(|code| BusError::Topic {
                topic: topics.join(", "),
                source: KafkaError::AdminOp(code),
            })?;
            let rdkafka::admin::OwnedResourceSpecifier::Topic(topic) = &r.specifier else {
                continue;
            };
            let value = |k: &str| r.get(k).and_then(|e| e.value.clone()).unwrap_or_default();
            let compacted = value("cleanup.policy").contains("compact");
            let ms = value("retention.ms").parse::<i64>().unwrap_or(-1);
            let kept = if compacted {
                Kept::Compacted
            } else if ms < 0 {
                Kept::Whole
            } else {
                Kept::For(ms)
            };
            out.insert(topic.clone(), kept);
        }
        Ok(out)
    }

    /// The producer's `message.max.bytes`: librdkafka's default 1,000,000
    /// unless `[kafka.properties]` sets it.
    pub fn producer_message_limit(&self) -> usize {
        self.properties
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    }

    /// Names of the topics the cluster has.
    pub async fn topic_names(&self) -> Result<std::collections::BTreeSet<String>, BusError> {
        let config = self.client_config();
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::Consumer;
            let consumer: rdkafka::consumer::BaseConsumer =
                config.create().map_err(BusError::Client)?;
            let metadata = consumer
                .fetch_metadata(None, Duration::from_secs(20))
                .map_err(BusError::Unreachable)?;
            Ok(metadata
                .topics()
                .iter()
                .map(|t| t.name().to_owned())
                .collect())
        })
        .await
        .map_err(|_| BusError::Unreachable(KafkaError::Canceled))?
    }

    /// Whether the cluster answers a metadata request in time.
    pub async fn ping(&self, timeout: Duration) -> Result<(), BusError> {
        let config = self.client_config();
        tokio::task::spawn_blocking(move || {
            let consumer: rdkafka::consumer::BaseConsumer =
                config.create().map_err(BusError::Client)?;
            use rdkafka::consumer::Consumer;
            consumer
                .fetch_metadata(None, timeout)
                .map(|_| ())
                .map_err(BusError::Unreachable)
        })
        .await
        .map_err(|_| BusError::Unreachable(KafkaError::Canceled))?
    }
}
