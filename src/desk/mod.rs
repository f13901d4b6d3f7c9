//! The two-law linkage desk (两法衔接工作台): referral tracking against
//! statutory deadlines, and its web page.
//!
//! The tracker consumes referral events (the enforcement system, the
//! police, the two-law platform and the desk's own actions) as a consumer
//! group; after each round it writes every changed referral's state to a
//! compacted topic and only then commits its offsets, so a restarted
//! tracker — or another instance — rebuilds exactly the same state.
//! Deadlines at risk or passed are alerts on their own topic, once each.

pub mod blacklist;
pub mod credit;
pub mod entities;
pub mod powers;
pub mod quality;
pub mod report;
pub mod session;
pub mod web;

use crate::bus::{Bus, ReaderContext, header_map};
use crate::calendar::Calendar;
use crate::error::{Context, Result};
use crate::keepers::referral::{EventSource, ReferralView, StepLimits, TimelineEvent, fold};
use crate::mapping::Mapping;
use crate::schema::SchemaSet;
use crate::schema::decode_payload;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Who may use the desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Desk officers: see everything, record notes, reminders and
    /// acknowledgements.
    Officer,
    /// Supervisors: read only.
    Supervisor,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeskUser {
    pub name: String,
    pub role: Role,
}

/// `[desk]` in the deployment file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeskConfig {
    #[serde(default = "default_events")]
    pub events_topic: String,
    /// Compacted: the state of each referral.
    #[serde(default = "default_state")]
    pub state_topic: String,
    #[serde(default = "default_alerts")]
    pub alerts_topic: String,
    /// Every view of a referral and every export.
    #[serde(default = "default_audit")]
    pub audit_topic: String,
    /// "At risk" when less than this share of a step's time is left.
    #[serde(default = "default_share")]
    pub at_risk_share: f64,
    /// Limits of the statutory steps.
    #[serde(default)]
    pub limits: StepLimits,
    /// The mapping that turns desk actions into referral events.
    #[serde(default = "default_action_mapping")]
    pub action_mapping: String,
    /// Login tokens (at least 16 characters each), each with its user.
    /// A reload that changes or removes a token, or changes a role, takes
    /// effect at once; a removed token's sessions end.
    pub users: BTreeMap<String, DeskUser>,
    /// How long a login session lasts (default 8 h).
    #[serde(default = "default_session_ttl", with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Mark the session cookie `Secure`: set it when the desk is served
    /// over TLS (by the hub's reverse proxy), so the browser never sends the
    /// cookie in clear.
    #[serde(default)]
    pub secure_cookie: bool,
    /// Officers authenticated by a TLCP / SSL-VPN gateway in front of the
    /// desk (SM2 certificates; GB/T 39786-2021 level 3, user identity
    /// authentication 身份鉴别): the desk takes the identity the gateway
    /// asserts, only from the gateway's addresses.
    #[serde(default)]
    pub gateway: Option<Gateway>,
}

/// `[desk.gateway]`: the identity a TLCP gateway asserts.
///
/// The gateway terminates TLCP (GB/T 38636-2020) with the officer's SM2
/// certificate and forwards the request with the certificate's identity
/// (its subject, or its serial number, as the gateway is set up) in
/// `header`. The desk believes that header only on a connection from one
/// of `addresses`; from anywhere else the header is removed before any
/// page sees it. An identity not listed in `users` is refused: the desk
/// never guesses who someone is.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gateway {
    /// The gateway's own addresses, as the hub sees the connection.
    pub addresses: Vec<std::net::IpAddr>,
    /// The header that carries the asserted identity.
    #[serde(default = "default_gateway_header")]
    pub header: String,
    /// Whether the token login stays open beside the gateway (default no:
    /// behind a gateway, officers log in with their certificates only).
    #[serde(default)]
    pub tokens: bool,
    /// The officers, by the identity the gateway asserts.
    pub users: BTreeMap<String, DeskUser>,
}

fn default_gateway_header() -> String {
    "x-client-identity".into()
}

impl DeskConfig {
    /// The referrals' state (compacted), the desk's alerts and its audit
    /// trail (kept whole).
    pub fn topics(&self) -> Vec<crate::bus::TopicSpec> {
        use crate::bus::{Cleanup, TopicSpec};
        [
            (&self.state_topic, Cleanup::Compact),
            (&self.alerts_topic, Cleanup::Keep),
            (&self.audit_topic, Cleanup::Keep),
        ]
        .into_iter()
        .map(|(name, cleanup)| TopicSpec {
            name: name.clone(),
            partitions: 1,
            cleanup,
        })
        .collect()
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.at_risk_share > 0.0 && self.at_risk_share < 1.0) {
            return Err(format!(
                "`at_risk_share` must be between 0 and 1 (exclusive), not {}",
                self.at_risk_share
            ));
        }
        if let Some(g) = &self.gateway {
            if g.addresses.is_empty() {
                return Err("`gateway.addresses`: name the gateway's addresses (only they may assert an identity)".into());
            }
            if g.users.is_empty() {
                return Err(
                    "`gateway.users`: list the officers by the identity the gateway asserts".into(),
                );
            }
            if axum::http::HeaderName::from_bytes(g.header.as_bytes()).is_err() {
                return Err(format!(
                    "`gateway.header`: `{}` is not a header name",
                    g.header
                ));
            }
        }
        if self.users.is_empty() && self.gateway.is_none() {
            return Err("the desk needs at least one user: [desk.users.\"<token>\"] name = \"…\", role = \"officer\"".into());
        }
        for token in self.users.keys() {
            if token.len() < 16 {
                return Err(format!(
                    "desk token `{}…` is shorter than 16 characters",
                    token.chars().take(4).collect::<String>()
                ));
            }
        }
        for (name, topic) in [
            ("events_topic", &self.events_topic),
            ("state_topic", &self.state_topic),
            ("alerts_topic", &self.alerts_topic),
            ("audit_topic", &self.audit_topic),
        ] {
            crate::bus::check_topic_name(topic).map_err(|why| format!("`{name}`: {why}"))?;
        }
        Ok(())
    }
}

fn default_events() -> String {
    "canonical.referral_event".into()
}
fn default_state() -> String {
    "referrals.state".into()
}
fn default_alerts() -> String {
    "referrals.alerts".into()
}
fn default_audit() -> String {
    "desk.audit".into()
}
fn default_session_ttl() -> Duration {
    Duration::from_secs(8 * 3600)
}
fn default_share() -> f64 {
    0.3
}
fn default_action_mapping() -> String {
    "referral_desk".into()
}

/// One audit entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub user: String,
    pub role: Role,
    /// `view`, `export`, `action`.
    pub action: String,
    pub referral_no: Option<String>,
    pub detail: String,
}

/// What the desk shares between the tracker and the web page.
#[derive(Clone)]
pub struct Desk {
    pub config: DeskConfig,
    pub bus: Bus,
    pub producer: FutureProducer,
    pub schemas: Arc<SchemaSet>,
    pub calendar: Arc<Calendar>,
    pub action_mapping: Arc<Mapping>,
    /// Events per referral (the tracker's memory).
    events: Arc<RwLock<BTreeMap<String, Vec<TimelineEvent>>>>,
    /// The current views.
    pub views: Arc<RwLock<BTreeMap<String, ReferralView>>>,
    /// Notifies the page's live refresh.
    pub changes: broadcast::Sender<u64>,
    pub audit: Arc<RwLock<VecDeque<AuditEntry>>>,
    /// This process's audit chain (`crate::audit`), started at the first
    /// entry from the latest hash on the audit topic.
    chain: Arc<tokio::sync::OnceCell<crate::audit::Chain>>,
    /// The hub's name and SM2 key, for the chain.
    chain_of: (String, Option<crate::delivery::Signing>),
    /// The events topic's partitions whose referrals this instance tracks.
    pub tracked_partitions: Arc<RwLock<BTreeSet<i32>>>,
    /// Login tokens and their users, as of the latest configuration.
    users: Arc<RwLock<BTreeMap<String, DeskUser>>>,
    /// Open login sessions.
    pub sessions: Arc<session::Sessions>,
    /// The list of seriously dishonest entities, when `[credit.blacklist]`
    /// is configured.
    pub blacklist: Option<Arc<blacklist::ListBoard>>,
    /// Penalty decisions held for their credit class, when `[credit]` is
    /// configured.
    pub credit: Option<Arc<credit::CreditBoard>>,
    /// The market-entity credit library, when `[entities]` is configured.
    pub entities: Option<Arc<crate::entity::api::Library>>,
    /// Data quality per source, when the hub keeps it.
    pub quality: Option<Arc<RwLock<crate::quality::Board>>>,
    /// The power list and the supervision rates, when `[supervision]` is
    /// configured.
    pub powers: Option<Arc<powers::PowersBoard>>,
    /// What time it is (the system clock, or a fixed time in tests).
    clock: crate::calendar::Clock,
    /// Alert rounds the tracker completed (each tick: clocks recomputed,
    /// alerts written and acknowledged). A test waits for one more round
    /// instead of sleeping to see that "nothing happened".
    pub alert_rounds: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Desk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desk")
            .field("events_topic", &self.config.events_topic)
            .finish_non_exhaustive()
    }
}

impl Desk {
    pub fn new(
        config: DeskConfig,
        bus: Bus,
        producer: FutureProducer,
        schemas: Arc<SchemaSet>,
        calendar: Arc<Calendar>,
        action_mapping: Arc<Mapping>,
    ) -> Self {
        Self {
            bus,
            producer,
            schemas,
            calendar,
            action_mapping,
            events: Arc::default(),
            views: Arc::default(),
            changes: broadcast::channel(64).0,
            tracked_partitions: Arc::default(),
            audit: Arc::default(),
            chain: Arc::default(),
            chain_of: ("duijie".to_owned(), None),
            clock: crate::calendar::Clock::system(),
            alert_rounds: Arc::default(),
            blacklist: None,
            credit: None,
            entities: None,
            quality: None,
            powers: None,
            users: Arc::new(RwLock::new(config.users.clone())),
            sessions: Arc::new(session::Sessions::new(config.session_ttl)),
            config,
        }
    }

    /// The user a token belongs to, as of the latest configuration
    /// (compared in constant time against every token).
    pub fn user_by_token(&self, token: &str) -> Option<DeskUser> {
        if self.config.gateway.as_ref().is_some_and(|g| !g.tokens) {
            return None;
        }
        let users = self.users.read().expect("users lock");
        crate::secrets::find_by_secret(token, users.iter().map(|(t, u)| (t.as_str(), u))).cloned()
    }

    /// Applies a reloaded `[desk.users]`: changed roles apply at the next
    /// request, and the sessions of removed tokens end now. Returns how
    /// many sessions ended.
    pub fn set_users(&self, users: BTreeMap<String, DeskUser>) -> usize {
        *self.users.write().expect("users lock") = users.clone();
        self.sessions
            .retain_tokens(|t| users.keys().any(|k| crate::secrets::same_secret(t, k)))
    }

    /// The same desk on another clock: deadlines are judged, and actions
    /// stamped, at `clock()` instead of the system time.
    pub fn with_clock(
        mut self,
        clock: impl Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync + 'static,
    ) -> Self {
        self.clock = crate::calendar::Clock::from_fn(clock);
        self
    }

    /// The same desk with the blacklist's page, on `board`.
    pub fn with_credit(mut self, board: Arc<credit::CreditBoard>) -> Self {
        self.credit = Some(board);
        self
    }

    pub fn with_blacklist(mut self, board: Arc<blacklist::ListBoard>) -> Self {
        self.blacklist = Some(board);
        self
    }

    pub fn with_powers(mut self, board: Arc<powers::PowersBoard>) -> Self {
        self.powers = Some(board);
        self
    }

    pub fn with_quality(mut self, board: Arc<RwLock<crate::quality::Board>>) -> Self {
        self.quality = Some(board);
        self
    }

    pub fn with_entities(mut self, library: Arc<crate::entity::api::Library>) -> Self {
        self.entities = Some(library);
        self
    }

    /// Now, on the desk's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    fn recompute(&self, referrals: impl IntoIterator<Item = String>) -> Vec<ReferralView> {
        let now = self.now();
        let events = self.events.read().expect("events lock");
        let mut out = Vec::new();
        for no in referrals {
            if let Some(list) = events.get(&no) {
                out.push(fold(
                    &no,
                    list.clone(),
                    &self.config.limits,
                    self.config.at_risk_share,
                    &self.calendar,
                    now,
                ));
            }
        }
        out
    }

    /// The referrals this tracker keeps: those whose events are on the
    /// partitions of the events topic assigned to it (events are keyed by
    /// referral number, so one referral lives on one partition).
    fn owned(&self, assigned: &BTreeSet<i32>) -> Vec<String> {
        self.events
            .read()
            .expect("events lock")
            .iter()
            .filter(|(_, list)| {
                list.iter().any(|e| {
                    e.source.topic == self.config.events_topic
                        && assigned.contains(&e.source.partition)
                })
            })
            .map(|(no, _)| no.clone())
            .collect()
    }

    /// The `traceparent` of a referral's latest event that carries one.
    fn latest_trace(&self, referral_no: &str) -> Option<String> {
        self.events
            .read()
            .expect("events lock")
            .get(referral_no)?
            .iter()
            .rev()
            .find_map(|e| e.source.traceparent.clone())
    }

    /// Writes `body` under `key`; `about`: the `traceparent` of the record
    /// it is about, whose trace it continues (a `desk` span).
    async fn send(&self, topic: &str, key: &str, body: &[u8], about: Option<&str>) -> Result<()> {
        let traceparent = crate::telemetry::trace::acted("desk", about, topic, key);
        let headers = crate::bus::traced(
            rdkafka::message::OwnedHeaders::new(),
            traceparent.as_deref(),
        );
        self.producer
            .send(
                FutureRecord::to(topic)
                    .key(key)
                    .payload(body)
                    .headers(headers),
                Duration::from_secs(30),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
            .with_context(|| format!("writing to {topic}"))
    }

    /// A canonical record the desk changed (an officer's credit class on a
    /// held penalty decision), written again to its topic under its key,
    /// with the desk's provenance: who, and that it is the desk's.
    pub async fn republish(
        &self,
        topic: &str,
        record: &Value,
        officer: &str,
        now_ms: i64,
        about: Option<&str>,
    ) -> Result<()> {
        let schema = self
            .schemas
            .get("duijie.canonical.PenaltyDecision")
            .ok_or_else(|| {
                crate::error::Error::permanent(
                    crate::error::Domain::Config,
                    "the PenaltyDecision schema is not loaded",
                )
            })?;
        let key = record
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let values = schema.values_of(record);
        let mut body = Vec::new();
        crate::schema::RecordEncoder::new(crate::schema::Encoding::SingleObject)
            .encode(&schema, &values, &mut body)?;
        let provenance = crate::bus::Provenance {
            source_system: record
                .get("source_system")
                .and_then(Value::as_str)
                .unwrap_or("desk")
                .to_owned(),
            source_id: record
                .get("decision_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            fetched_at_ms: now_ms,
            connector: "desk".into(),
            pipeline: "desk".into(),
            mapping: "desk".into(),
            mapping_version: 0,
            payload_sha256: crate::bus::Provenance::hash(
                &serde_json::to_vec(record).unwrap_or_default(),
            ),
            origin: format!("desk: credit class set by {officer}"),
            code_tables: String::new(),
        };
        let headers = crate::bus::traced(
            crate::bus::headers(&provenance, &schema.full_name, "avro/binary; single-object"),
            crate::telemetry::trace::acted("desk", about, topic, &key).as_deref(),
        );
        let (body, headers) = crate::bus::seal::sealed_record(topic, &body, headers);
        self.producer
            .send(
                FutureRecord::to(topic)
                    .key(&key)
                    .payload(&body[..])
                    .headers(headers),
                Duration::from_secs(30),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
            .with_context(|| format!("writing to {topic}"))
    }

    /// The hub's name for the audit chain's writer, and its SM2 key to
    /// sign the chain with.
    pub fn with_audit_chain(
        mut self,
        hub: &str,
        signing: Option<crate::delivery::Signing>,
    ) -> Self {
        self.chain_of = (hub.to_owned(), signing);
        self
    }

    /// Records an audit entry, sealed into this process's chain (on the
    /// topic, and in memory).
    pub async fn audit(&self, entry: AuditEntry) -> Result<()> {
        let chain = self
            .chain
            .get_or_try_init(|| async {
                let records =
                    crate::bus::inspect::read_topic(&self.bus, &self.config.audit_topic, false)
                        .await?;
                let anchor =
                    crate::audit::latest_hash(records.iter().filter_map(|r| r.payload.as_deref()));
                let signer = self
                    .chain_of
                    .1
                    .as_ref()
                    .map(crate::audit::Signer::new)
                    .transpose()
                    .map_err(|e| {
                        crate::error::Error::permanent(
                            crate::error::Domain::Config,
                            format!("[hub.signing]: {e}"),
                        )
                    })?;
                Ok::<_, crate::error::Error>(crate::audit::Chain::new(
                    &self.chain_of.0,
                    anchor,
                    signer,
                ))
            })
            .await?;
        let topic = &self.config.audit_topic;
        chain
            .append(&entry, |key, body| async move {
                // An audit entry records an officer's act: no record's
                // trace.
                self.send(topic, &key, &body, None).await
            })
            .await?;
        let mut log = self.audit.write().expect("audit lock");
        log.push_front(entry);
        log.truncate(1000);
        Ok(())
    }

    /// A desk action as a referral event on the bus, through the desk's
    /// mapping, with provenance like any other record.
    pub async fn act(
        &self,
        referral_no: &str,
        action: &str,
        text: Option<&str>,
        officer: &str,
    ) -> Result<String> {
        let now = self.now().timestamp_millis();
        let payload = json!({
            "actionId": format!("{}-{now}-{:04x}", referral_no, fastrand::u16(..)),
            "referralNo": referral_no,
            "action": action,
            "at": now,
            "officer": officer,
            "text": text,
        })
        .to_string();
        let origin = format!("desk action by {officer}");
        let published = crate::bus::publish::publish_mapped(
            &self.producer,
            &self.config.events_topic,
            &self.action_mapping,
            payload.as_bytes(),
            &crate::bus::publish::Origin {
                connector: "desk",
                pipeline: "desk",
                origin: &origin,
                fetched_at_ms: now,
                about: self.latest_trace(referral_no).as_deref(),
            },
        )
        .await?;
        Ok(published.id)
    }

    /// Runs the tracker until shutdown.
    /// A failure rebuilds it from the state topic after the one restart
    /// loop's backoff ([`crate::retry::supervise`]); a permanent one (a
    /// group or topic the hub may not use) stops it with its reason.
    pub async fn run(self, shutdown: CancellationToken) {
        let attempt = || async {
            let rounds = self.alert_rounds.load(std::sync::atomic::Ordering::Acquire);
            let e = self.track(&shutdown).await.err()?;
            let progressed = self.alert_rounds.load(std::sync::atomic::Ordering::Acquire) > rounds;
            let failure = crate::retry::Failure::of(e.context("referral tracker"), progressed);
            if failure.permanent {
                tracing::error!(error = %failure.error, "referral tracker failed permanently; it stays stopped until its configuration is corrected");
            }
            Some(failure)
        };
        crate::retry::supervise(
            &crate::retry::RetryConfig::default(),
            &shutdown,
            "referral tracker failed; rebuilding from the state topic",
            attempt,
        )
        .await;
    }

    /// Keeps this instance's views in step with the state topic, which the
    /// tracker (on whichever instance runs it) writes after every round:
    /// with scale-out, every instance serves the desk.
    pub async fn follow(self, shutdown: CancellationToken) {
        use crate::bus::follow::Follow;
        let mut follower = crate::bus::follow::follow(
            &self.bus,
            vec![self.config.state_topic.clone()],
            shutdown.clone(),
        );
        // The topic's latest state of each referral, refolded as time
        // passes (a step falls late without a new record).
        let mut latest: BTreeMap<String, ReferralView> = BTreeMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(3));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                item = follower.recv() => match item {
                    None => return,
                    Some(Follow::Record(r)) => {
                        // A tombstone removes nothing the desk shows.
                        if r.payload.is_empty() {
                            continue;
                        }
                        match serde_json::from_slice::<ReferralView>(&r.payload) {
                            Ok(v) => {
                                let no = v.referral_no.clone();
                                if latest.get(&no).is_none_or(|c| c.events.len() <= v.events.len()) {
                                    latest.insert(no.clone(), v);
                                }
                                if follower.caught_up() {
                                    self.absorb(latest.get(&no).into_iter());
                                }
                            }
                            Err(e) => r.unreadable("desk", &e.to_string()),
                        }
                    }
                    Some(Follow::CaughtUp) => self.absorb(latest.values()),
                },
                _ = tick.tick(), if follower.caught_up() => self.absorb(latest.values()),
            }
        }
    }

    /// Shows the referral states read from the state topic, folded as of
    /// now, where they differ from what this instance shows and are not
    /// older than it.
    fn absorb<'v>(&self, views: impl Iterator<Item = &'v ReferralView>) {
        let now = self.now();
        let mut changed = Vec::new();
        {
            let current = self.views.read().expect("views lock");
            for v in views {
                // Never older than what this instance shows.
                if current
                    .get(&v.referral_no)
                    .is_some_and(|c| c.events.len() > v.events.len())
                {
                    continue;
                }
                let fresh = fold(
                    &v.referral_no,
                    v.events.clone(),
                    &self.config.limits,
                    self.config.at_risk_share,
                    &self.calendar,
                    now,
                );
                // What a reader notices (not the seconds left).
                let differs = current.get(&fresh.referral_no).is_none_or(|c| {
                    c.events != fresh.events
                        || (c.late, c.at_risk, &c.clock_error)
                            != (fresh.late, fresh.at_risk, &fresh.clock_error)
                });
                if differs {
                    changed.push(fresh);
                }
            }
        }
        self.publish_views(changed);
    }

    /// Loads every referral's state from the state topic.
    async fn restore(&self) -> Result<BTreeSet<String>> {
        let states =
            crate::bus::inspect::read_topic(&self.bus, &self.config.state_topic, false).await?;
        {
            let mut events = self.events.write().expect("events lock");
            for r in states {
                if let Some(view) = r.json::<ReferralView>("desk", &self.config.state_topic) {
                    events.insert(view.referral_no.clone(), view.events);
                }
            }
        }
        let audit =
            crate::bus::inspect::read_topic(&self.bus, &self.config.audit_topic, false).await?;
        {
            let mut log = self.audit.write().expect("audit lock");
            log.clear();
            for r in audit.iter().rev().take(1000) {
                // Sealed entries (`crate::audit`), and plain ones written
                // before the trail was sealed.
                let sealed = r
                    .payload
                    .as_deref()
                    .and_then(|p| serde_json::from_slice::<crate::audit::Sealed>(p).ok());
                let entry = match sealed {
                    Some(sealed) => serde_json::from_value::<AuditEntry>(sealed.entry).ok(),
                    None => r.json::<AuditEntry>("desk", &self.config.audit_topic),
                };
                if let Some(e) = entry {
                    log.push_back(e);
                }
            }
        }
        let alerted = crate::bus::inspect::read_topic(&self.bus, &self.config.alerts_topic, false)
            .await?
            .into_iter()
            .map(|r| r.key_str())
            .collect();
        Ok(alerted)
    }

    async fn track(&self, shutdown: &CancellationToken) -> Result<()> {
        let mut alerted = self.restore().await?;
        let all: Vec<String> = self
            .events
            .read()
            .expect("events lock")
            .keys()
            .cloned()
            .collect();
        self.publish_views(self.recompute(all));
        let consumer: StreamConsumer<ReaderContext> = self
            .bus
            .group_member(&format!("{}-desk-tracker", self.bus.client_id))?;
        consumer.subscribe(&[&self.config.events_topic])?;
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        // The events topic's partitions this instance holds in the group:
        // with several instances, each tracks and alerts its share.
        let mut assigned: BTreeSet<i32> = BTreeSet::new();
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    self.follow_assignment(&consumer, &mut assigned, &mut alerted).await?;
                    self.raise_alerts(&mut alerted, &assigned).await?;
                    self.alert_rounds.fetch_add(1, std::sync::atomic::Ordering::Release);
                    continue;
                }
                m = consumer.recv() => match m {
                    Ok(m) => m,
                    // One broker of several away: read on.
                    Err(e) if crate::bus::is_passing_poll_error(&e) => {
                        tracing::debug!(error = %e, "a broker is away; reading on");
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            self.follow_assignment(&consumer, &mut assigned, &mut alerted)
                .await?;
            let mut dirty = BTreeSet::new();
            let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
            let mut take = |m: &rdkafka::message::BorrowedMessage<'_>| {
                ends.insert(m.partition(), m.offset());
                let headers = header_map(m);
                let record = match crate::bus::seal::open_message(m)
                    .and_then(|p| decode_payload(&self.schemas, &headers, &p))
                {
                    Ok(r) => r,
                    Err(e) => {
                        crate::bus::unreadable(
                            "referral tracker",
                            m.topic(),
                            m.partition(),
                            m.offset(),
                            &e,
                        );
                        return;
                    }
                };
                let source = EventSource::of(m.topic(), m.partition(), m.offset(), &headers);
                let Some(no) = record
                    .get("referral_no")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                else {
                    return;
                };
                if let Some(event) = TimelineEvent::from_record(&record, source) {
                    let mut events = self.events.write().expect("events lock");
                    let list = events.entry(no.clone()).or_default();
                    if !list.iter().any(|e| e.id == event.id) {
                        list.push(event);
                        dirty.insert(no);
                    }
                }
            };
            take(&first);
            while let Ok(Ok(m)) =
                tokio::time::timeout(Duration::from_millis(20), consumer.recv()).await
            {
                take(&m);
            }
            // State first, offsets after: a crash re-reads, never loses.
            let views = self.recompute(dirty);
            for v in &views {
                let body = serde_json::to_vec(v).expect("views serialize");
                let about = self.latest_trace(&v.referral_no);
                self.send(
                    &self.config.state_topic,
                    &v.referral_no,
                    &body,
                    about.as_deref(),
                )
                .await?;
            }
            let mut tpl = TopicPartitionList::new();
            for (p, last) in &ends {
                tpl.add_partition_offset(&self.config.events_topic, *p, Offset::Offset(last + 1))?;
            }
            consumer.commit(&tpl, CommitMode::Sync)?;
            self.publish_views(views);
            self.raise_alerts(&mut alerted, &assigned).await?;
        }
    }

    /// When the group hands this instance other partitions, takes over
    /// their referrals as their previous tracker left them: their states
    /// from the state topic, and the alerts already raised.
    async fn follow_assignment(
        &self,
        consumer: &StreamConsumer<ReaderContext>,
        assigned: &mut BTreeSet<i32>,
        alerted: &mut BTreeSet<String>,
    ) -> Result<()> {
        use rdkafka::consumer::Consumer;
        let now: BTreeSet<i32> = consumer
            .assignment()?
            .elements()
            .iter()
            .filter(|e| e.topic() == self.config.events_topic)
            .map(|e| e.partition())
            .collect();
        if now == *assigned {
            return Ok(());
        }
        let gained = now.difference(assigned).count();
        tracing::info!(partitions = ?now, gained, "referral tracker assignment");
        if gained > 0 {
            *alerted = self.restore().await?;
            let owned = self.owned(&now);
            self.publish_views(self.recompute(owned));
        }
        *self
            .tracked_partitions
            .write()
            .expect("tracked partitions lock") = now.clone();
        *assigned = now;
        Ok(())
    }

    fn publish_views(&self, views: Vec<ReferralView>) {
        if views.is_empty() {
            return;
        }
        let mut map = self.views.write().expect("views lock");
        for v in views {
            map.insert(v.referral_no.clone(), v);
        }
        let _ = self
            .changes
            .send(chrono::Utc::now().timestamp_millis() as u64);
    }

    /// Recomputes every open referral's clock as of now; raises an alert the
    /// first time a step is at risk or late.
    async fn raise_alerts(
        &self,
        alerted: &mut BTreeSet<String>,
        assigned: &BTreeSet<i32>,
    ) -> Result<()> {
        let views = self.recompute(self.owned(assigned));
        let mut changed = Vec::new();
        for v in views {
            let before = self
                .views
                .read()
                .expect("views lock")
                .get(&v.referral_no)
                .map(|o| (o.late, o.at_risk, o.clock_error.clone()));
            let state = v.state.map(|s| s.code()).unwrap_or_default();
            let since = v.state_since.unwrap_or_default();
            let mut raise = Vec::new();
            if v.late {
                raise.push((
                    "late",
                    "REFERRAL_LATE",
                    crate::alert::Severity::Critical,
                    format!(
                        "移送案件{}（{}）「{}」已超过法定期限（{}，{}），应由{}{}。",
                        v.referral_no,
                        v.suspect.clone().unwrap_or_default(),
                        v.state_label,
                        v.limit.clone().unwrap_or_default(),
                        v.legal_basis,
                        v.next_actor,
                        v.next_action
                    ),
                ));
            } else if v.at_risk {
                raise.push((
                    "at_risk",
                    "REFERRAL_AT_RISK",
                    crate::alert::Severity::Warning,
                    format!(
                        "移送案件{}（{}）「{}」临近法定期限：应由{}于{}前{}。",
                        v.referral_no,
                        v.suspect.clone().unwrap_or_default(),
                        v.state_label,
                        v.next_actor,
                        v.due_at
                            .map(|d| crate::calendar::local_text(
                                chrono::DateTime::from_timestamp_millis(d).unwrap_or_default()
                            ))
                            .unwrap_or_default(),
                        v.next_action
                    ),
                ));
            }
            if let Some(e) = &v.clock_error {
                raise.push((
                    "clock",
                    "CALENDAR_MISSING",
                    crate::alert::Severity::Critical,
                    format!("移送案件{}的期限无法计算：{e}", v.referral_no),
                ));
            }
            for (kind, alert_kind, severity, message) in raise {
                let key = format!("referral:{}:{state}:{since}:{kind}", v.referral_no);
                if alerted.insert(key.clone()) {
                    let alert = crate::alert::Alert::new(
                        alert_kind,
                        severity,
                        &v.referral_no,
                        message,
                        self.now(),
                    )
                    .with("due_at", v.due_at);
                    let about = self.latest_trace(&v.referral_no);
                    self.send(
                        &self.config.alerts_topic,
                        &key,
                        &alert.to_bytes(),
                        about.as_deref(),
                    )
                    .await?;
                }
            }
            if before != Some((v.late, v.at_risk, v.clock_error.clone())) {
                changed.push(v);
            }
        }
        self.publish_views(changed);
        Ok(())
    }
}

/// Folds every referral event of a topic as of `now`, as the CLI shows
/// them (no tracker needed).
pub async fn views_from_topic(
    bus: &Bus,
    schemas: &SchemaSet,
    config: &DeskConfig,
    calendar: &Calendar,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<ReferralView>> {
    let records = crate::bus::inspect::read_topic(bus, &config.events_topic, true).await?;
    let mut by_referral: BTreeMap<String, Vec<TimelineEvent>> = BTreeMap::new();
    for r in records {
        let record = match decode_payload(
            schemas,
            &r.headers,
            r.payload.as_deref().unwrap_or_default(),
        ) {
            Ok(r) => r,
            Err(e) => {
                crate::bus::unreadable(
                    "referral replay",
                    &config.events_topic,
                    r.partition,
                    r.offset,
                    &e,
                );
                continue;
            }
        };
        let source = EventSource::of(&config.events_topic, r.partition, r.offset, &r.headers);
        if let (Some(no), Some(e)) = (
            record.get("referral_no").and_then(Value::as_str),
            TimelineEvent::from_record(&record, source),
        ) {
            by_referral.entry(no.to_owned()).or_default().push(e);
        }
    }
    Ok(by_referral
        .into_iter()
        .map(|(no, events)| {
            fold(
                &no,
                events,
                &config.limits,
                config.at_risk_share,
                calendar,
                now,
            )
        })
        .collect())
}

/// The desk's routes: the referral pages of [`web`] and each page's
/// module. Kept here, in the desk's root, so that the pages use `web`'s
/// helpers and `web` knows none of them.
pub fn router(desk: Desk) -> axum::Router {
    let routes = axum::Router::new()
        .route(
            "/desk/login",
            axum::routing::get(web::login_page).post(web::login),
        )
        .route("/desk/logout", axum::routing::post(web::logout))
        .route("/desk", axum::routing::get(web::list_page))
        .route("/desk/referrals/{no}", axum::routing::get(web::detail_page))
        .route("/desk/api/referrals", axum::routing::get(web::list_api))
        .route(
            "/desk/api/referrals/{no}",
            axum::routing::get(web::detail_api),
        )
        .route(
            "/desk/api/referrals/{no}/actions",
            axum::routing::post(web::act),
        )
        .route("/desk/api/stream", axum::routing::get(web::stream))
        .route("/desk/export.csv", axum::routing::get(web::export))
        .route("/desk/audit", axum::routing::get(web::audit_page))
        .route("/desk/blacklist", axum::routing::get(blacklist::list_page))
        .route(
            "/desk/blacklist/{case}",
            axum::routing::get(blacklist::case_page),
        )
        .route(
            "/desk/api/blacklist",
            axum::routing::get(blacklist::list_api),
        )
        .route(
            "/desk/api/blacklist/{case}/actions",
            axum::routing::post(blacklist::act),
        )
        .route("/desk/credit", axum::routing::get(credit::list_page))
        .route("/desk/api/credit", axum::routing::get(credit::list_api))
        .route(
            "/desk/api/credit/{id}/class",
            axum::routing::post(credit::set_class),
        )
        .route("/desk/entities", axum::routing::get(entities::list_page))
        .route(
            "/desk/entities/proposals",
            axum::routing::get(entities::proposals_page),
        )
        .route(
            "/desk/entities/{key}",
            axum::routing::get(entities::entity_page),
        )
        .route("/desk/api/entities", axum::routing::get(entities::list_api))
        .route(
            "/desk/api/entities/proposals",
            axum::routing::get(entities::proposals_api),
        )
        .route(
            "/desk/api/entities/links",
            axum::routing::post(entities::decide),
        )
        .route(
            "/desk/api/entities/{key}",
            axum::routing::get(entities::entity_api),
        )
        .route("/desk/quality", axum::routing::get(quality::page))
        .route("/desk/powers", axum::routing::get(powers::page))
        .route("/desk/api/powers", axum::routing::get(powers::api))
        .route("/desk/static/desk.js", axum::routing::get(web::script))
        .route("/desk/static/desk.css", axum::routing::get(web::style))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            desk.clone(),
            web::gateway_only,
        ));
    crate::web::not_stored(crate::web::pages(routes)).with_state(desk)
}
