//! The two-law linkage desk (两法衔接工作台) and the pages beside it: what
//! the referral tracker ([`crate::keepers::referral::tracker`]) keeps
//! against the statutory deadlines, officers' actions as referral events,
//! the desk's audit trail, and the boards of the other rooms (the credit
//! class, the blacklist, the entity library, data quality, the power
//! list).

pub mod blacklist;
pub mod credit;
pub mod entities;
pub mod powers;
pub mod quality;
pub mod report;
pub mod session;
pub mod web;

use crate::bus::Bus;
use crate::calendar::Calendar;
use crate::error::Result;
use crate::keepers::referral::StepLimits;
use crate::keepers::referral::tracker::{Tracker, TrackerConfig};
use crate::mapping::Mapping;
use crate::schema::SchemaSet;
use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use crate::keepers::referral::tracker::views_from_topic;

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
    /// What the referral tracker takes from `[desk]`.
    pub fn tracker(&self) -> TrackerConfig {
        TrackerConfig {
            events_topic: self.events_topic.clone(),
            state_topic: self.state_topic.clone(),
            alerts_topic: self.alerts_topic.clone(),
            at_risk_share: self.at_risk_share,
            limits: self.limits.clone(),
        }
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
    /// The referral tracker whose states the referral pages show.
    pub tracker: Tracker,
    pub audit: Arc<RwLock<VecDeque<AuditEntry>>>,
    /// This process's audit chain (`crate::audit`), started at the first
    /// entry from the latest hash on the audit topic.
    chain: Arc<tokio::sync::OnceCell<crate::audit::Chain>>,
    /// The hub's name and SM2 key, for the chain.
    chain_of: (String, Option<crate::delivery::Signing>),
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
            tracker: Tracker::new(
                config.tracker(),
                bus.clone(),
                producer.clone(),
                schemas.clone(),
                calendar.clone(),
            ),
            bus,
            producer,
            schemas,
            calendar,
            action_mapping,
            audit: Arc::default(),
            chain: Arc::default(),
            chain_of: ("duijie".to_owned(), None),
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
        self.tracker = self
            .tracker
            .with_clock(crate::calendar::Clock::from_fn(clock));
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
        self.tracker.now()
    }

    /// The `traceparent` of a referral's latest event that carries one.
    fn latest_trace(&self, referral_no: &str) -> Option<String> {
        self.tracker.latest_trace(referral_no)
    }

    /// Writes `body` under `key` (see [`Tracker::send`]).
    async fn send(&self, topic: &str, key: &str, body: &[u8], about: Option<&str>) -> Result<()> {
        self.tracker.send(topic, key, body, about).await
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
        crate::bus::publish::write(&self.producer, topic, &key, &body, headers).await
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
        let published = crate::intake::publish_mapped(
            &self.producer,
            &self.config.events_topic,
            &self.action_mapping,
            payload.as_bytes(),
            &crate::intake::Origin {
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

    /// Brings this instance's pages in step with the bus: the desk's audit
    /// trail as the audit topic has it; with `states` (a scaled-out hub)
    /// then, until shutdown, the referrals' states as the tracker on
    /// whichever instance runs them writes them, so that every instance
    /// serves the desk.
    pub async fn follow(self, shutdown: CancellationToken, states: bool) {
        if let Err(e) = self.restore_audit().await {
            tracing::error!(error = %e, "desk: the audit trail could not be read; the page shows only what this instance records");
        }
        if states {
            self.tracker.clone().follow(shutdown).await;
        }
    }

    /// Loads the latest audit entries from the audit topic.
    async fn restore_audit(&self) -> Result<()> {
        let audit =
            crate::bus::inspect::read_topic(&self.bus, &self.config.audit_topic, false).await?;
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
        Ok(())
    }
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

/// `[desk]`: a web page the hub serves, so `[http]` is needed; its own
/// checks.
impl crate::section::Section for DeskConfig {
    fn problems(
        &self,
        name: &str,
        around: &crate::section::Around<'_>,
    ) -> Vec<crate::section::Problem> {
        let mut out = Vec::new();
        if !around.http {
            out.push(crate::section::Problem::at(
                name,
                "the desk is a web page served by the hub: add [http] listen",
            ));
        }
        out.extend(crate::section::own(name, self.validate()));
        out
    }

    /// The referrals' state (compacted), the desk's alerts and its audit
    /// trail (kept whole).
    fn topics(&self) -> Vec<crate::bus::TopicSpec> {
        use crate::bus::{Cleanup, TopicSpec};
        [
            (&self.state_topic, Cleanup::Compact),
            (&self.alerts_topic, Cleanup::Keep),
            (&self.audit_topic, Cleanup::Keep),
        ]
        .into_iter()
        .map(|(name, cleanup)| TopicSpec::single(name.clone(), cleanup))
        .collect()
    }

    /// The users (tokens and roles) apply at once; the rest at the next
    /// restart.
    fn needs_restart(&self, new: &Self) -> bool {
        let without_users = |c: &DeskConfig| DeskConfig {
            users: BTreeMap::new(),
            ..c.clone()
        };
        without_users(self) != without_users(new)
    }
}
