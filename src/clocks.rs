//! Keepers of state built from topics: the credit publication clock, the
//! blacklist, and the commitment tracker.
//!
//! Each reads its topics from the beginning (they are its memory: a
//! restarted hub rebuilds the same state), including the alerts it raised
//! before, so an alert is raised once, not once per restart. Each looks at
//! its state on a tick and writes what changed: alerts, blacklist entries,
//! leads for enforcement.

use crate::blacklist::{
    BlacklistConfig, CaseView, Criterion, EventKind, Ground, ProcedureEvent, Proposal,
};
use crate::bus::{Bus, ReaderContext};
use crate::calendar::{Calendar, CalendarError, Limit, local_text};
use crate::delivery::config::{CommitmentConfig, CreditConfig};
use crate::delivery::{Outcome, Receipt};
use crate::schema::SchemaSet;
use crate::schema::decode_payload;
use chrono::{DateTime, TimeZone, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
        match bus.reader("follower", crate::bus::Isolation::Committed) {
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
            let parts: Option<Vec<i32>> = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .ok()
                .map(|md| {
                    md.topics()
                        .iter()
                        .flat_map(|m| m.partitions().iter().map(|p| p.id()))
                        .collect()
                });
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
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
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

/// Counters for metrics and the demo.
#[derive(Debug, Default)]
pub struct ClockStats {
    pub credit_pending: AtomicU64,
    pub credit_at_risk: AtomicU64,
    pub credit_late: AtomicU64,
    pub blacklisted: AtomicU64,
    /// Blacklist cases proposed and not yet decided.
    pub blacklist_open: AtomicU64,
    pub commitments_due_soon: AtomicU64,
    pub commitment_leads: AtomicU64,
}

/// What every keeper needs.
#[derive(Clone)]
pub struct KeeperContext {
    pub bus: Bus,
    pub producer: FutureProducer,
    pub schemas: Arc<SchemaSet>,
    pub calendar: Arc<Calendar>,
    pub alerts_topic: String,
    pub receipts_topic: String,
    pub stats: Arc<ClockStats>,
    pub tick: Duration,
    /// Natural persons' pseudonyms (`[hub] pseudonym_key`).
    pub pseudonyms: Option<crate::personal::Pseudonyms>,
}

impl std::fmt::Debug for KeeperContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeeperContext")
            .field("alerts_topic", &self.alerts_topic)
            .finish_non_exhaustive()
    }
}

impl KeeperContext {
    async fn send(&self, topic: &str, key: &str, body: &Value) -> Result<(), String> {
        self.send_bytes(topic, key, body.to_string().as_bytes())
            .await
    }

    async fn send_bytes(&self, topic: &str, key: &str, payload: &[u8]) -> Result<(), String> {
        self.producer
            .send(
                FutureRecord::to(topic).key(key).payload(payload).headers(
                    rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                        key: "content-type",
                        value: Some("application/json"),
                    }),
                ),
                Duration::from_secs(30),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| format!("writing to {topic}: {e}"))
    }

    async fn alert(
        &self,
        key: &str,
        kind: &str,
        severity: crate::alert::Severity,
        subject: &str,
        message: String,
    ) -> Result<(), String> {
        let alert = crate::alert::Alert::new(kind, severity, subject, message, Utc::now());
        self.send_bytes(&self.alerts_topic.clone(), key, &alert.to_bytes())
            .await
    }
}

fn ms(t: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(t).single()
}

// ---------------------------------------------------------------------------
// The credit publication clock.

/// One decision's publication as the clock follows it (`credit::Publication`
/// is what the credit platform receives).
#[derive(Debug, Clone)]
struct PublicationDue {
    decision_no: String,
    party: String,
    action: String,
    started: DateTime<Utc>,
    due: Result<DateTime<Utc>, CalendarError>,
    /// When the platform took it.
    published: Option<DateTime<Utc>>,
    not_published: bool,
}

/// Publication deadlines of penalty decisions: 7 working days from the
/// decision (the 双公示 rule of the credit platform), 3 working days for a
/// change, revocation, or confirmation as unlawful or void (行政处罚法 art. 48
/// "三日内", working days by its art. 85); "at risk" when less than the
/// configured share of the time is left, "late" once it passed.
pub async fn run_credit_clock(
    ctx: KeeperContext,
    config: CreditConfig,
    shutdown: CancellationToken,
) {
    let mut rx = follow(
        &ctx.bus,
        vec![
            config.decisions_topic.clone(),
            ctx.receipts_topic.clone(),
            ctx.alerts_topic.clone(),
        ],
        shutdown.clone(),
    );
    let mut items: BTreeMap<(String, i64), PublicationDue> = BTreeMap::new();
    let mut alerted: BTreeSet<String> = BTreeSet::new();
    let mut tick = tokio::time::interval(ctx.tick);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            f = rx.recv() => {
                let Some(f) = f else { return };
                // On catching up, the loop comes round with ticks enabled.
                let Follow::Record(f) = f else { continue };
                if f.topic == ctx.alerts_topic {
                    alerted.insert(f.key);
                } else if f.topic == ctx.receipts_topic {
                    let r = match serde_json::from_slice::<Receipt>(&f.payload) {
                        Ok(r) => r,
                        Err(e) => {
                            f.unreadable("publication clock", &e.to_string());
                            continue;
                        }
                    };
                    if r.delivery != config.delivery {
                        continue;
                    }
                    let version = r.idempotency_key.rsplit(":v").next().and_then(|v| v.parse::<i64>().ok()).unwrap_or(1);
                    if let Some(item) = items.get_mut(&(r.record_id.clone(), version)) {
                        match r.outcome {
                            Outcome::Delivered => item.published = ms(r.at_ms),
                            Outcome::NotSent => item.not_published = true,
                            _ => {}
                        }
                    }
                } else if f.topic == config.decisions_topic {
                    let d = match decode_payload(&ctx.schemas, &f.headers, &f.payload) {
                        Ok(d) => d,
                        Err(e) => {
                            f.unreadable("publication clock", &e);
                            continue;
                        }
                    };
                    let Some(id) = d.get("id").and_then(Value::as_str) else { continue };
                    let version = d.get("version").and_then(Value::as_i64).unwrap_or(1);
                    let action = d.get("action").and_then(Value::as_str).unwrap_or("ISSUED").to_owned();
                    let (started, limit) = if action == "ISSUED" {
                        (d.get("decided_at").and_then(Value::as_i64).and_then(ms), config.publish_within)
                    } else {
                        (
                            d.get("changed_at").and_then(Value::as_i64).or(d.get("updated_at").and_then(Value::as_i64)).and_then(ms),
                            config.update_within,
                        )
                    };
                    let Some(started) = started else { continue };
                    let entry = items.entry((id.to_owned(), version)).or_insert(PublicationDue {
                        decision_no: d.get("decision_no").and_then(Value::as_str).unwrap_or(id).to_owned(),
                        party: d.pointer("/party/name").and_then(Value::as_str).unwrap_or("").to_owned(),
                        action: action.clone(),
                        started,
                        due: ctx.calendar.due(started, limit),
                        published: None,
                        not_published: false,
                    });
                    entry.started = started;
                }
            }
            _ = tick.tick(), if rx.caught_up() => {
                if let Err(e) = credit_tick(&ctx, &config, &items, &mut alerted).await {
                    tracing::error!(error = %e, "credit clock");
                }
            }
        }
    }
}

async fn credit_tick(
    ctx: &KeeperContext,
    config: &CreditConfig,
    items: &BTreeMap<(String, i64), PublicationDue>,
    alerted: &mut BTreeSet<String>,
) -> Result<(), String> {
    let now = Utc::now();
    let (mut pending, mut at_risk, mut late) = (0, 0, 0);
    for ((id, version), item) in items {
        if item.not_published {
            continue;
        }
        let what = match item.action.as_str() {
            "REVOKED" => "撤销后的撤回公示",
            "CONFIRMED_UNLAWFUL" => "确认违法后的撤回公示",
            "CONFIRMED_VOID" => "确认无效后的撤回公示",
            "CHANGED" => "变更后的更新公示",
            _ => "公示",
        };
        let due = match &item.due {
            Ok(d) => *d,
            Err(e) => {
                let key = format!("credit:calendar:{e}");
                if alerted.insert(key.clone()) {
                    ctx.alert(
                        &key,
                        "CALENDAR_MISSING",
                        crate::alert::Severity::Critical,
                        id,
                        format!("无法计算公示期限：{e}"),
                    )
                    .await?;
                }
                continue;
            }
        };
        if let Some(at) = item.published {
            if at > due {
                let key = format!("credit:{id}:v{version}:late");
                if alerted.insert(key.clone()) {
                    ctx.alert(
                        &key,
                        "CREDIT_PUBLICATION_LATE",
                        crate::alert::Severity::Critical,
                        id,
                        format!(
                            "行政处罚决定{}（{}）应于{}前完成{what}，实际于{}完成，已逾期。",
                            item.decision_no,
                            item.party,
                            local_text(due),
                            local_text(at)
                        ),
                    )
                    .await?;
                }
            }
            continue;
        }
        pending += 1;
        let total = (due - item.started).num_seconds().max(1) as f64;
        let left = (due - now).num_seconds() as f64;
        if left < 0.0 {
            late += 1;
            let key = format!("credit:{id}:v{version}:late");
            if alerted.insert(key.clone()) {
                ctx.alert(
                    &key,
                    "CREDIT_PUBLICATION_LATE",
                    crate::alert::Severity::Critical,
                    id,
                    format!(
                        "行政处罚决定{}（{}）应于{}前完成{what}，已逾期。",
                        item.decision_no,
                        item.party,
                        local_text(due)
                    ),
                )
                .await?;
            }
        } else if left < config.at_risk_share * total {
            at_risk += 1;
            let key = format!("credit:{id}:v{version}:at_risk");
            if alerted.insert(key.clone()) {
                ctx.alert(
                    &key,
                    "CREDIT_PUBLICATION_AT_RISK",
                    crate::alert::Severity::Warning,
                    id,
                    format!(
                        "行政处罚决定{}（{}）须于{}前完成{what}，即将到期。",
                        item.decision_no,
                        item.party,
                        local_text(due)
                    ),
                )
                .await?;
            }
        }
    }
    ctx.stats.credit_pending.store(pending, Ordering::Relaxed);
    ctx.stats.credit_at_risk.store(at_risk, Ordering::Relaxed);
    ctx.stats.credit_late.store(late, Ordering::Relaxed);
    Ok(())
}

// ---------------------------------------------------------------------------
// The list of seriously dishonest entities (严重失信主体名单).

#[derive(Debug, Clone)]
struct Entity {
    name: String,
    credit_code: Option<String>,
    grounds: BTreeMap<String, Ground>,
}

/// The list's keeper: penalty decisions per entity, the procedure's events
/// per entity, and what the list topic says.
struct ListKeeper {
    config: BlacklistConfig,
    calendar: Arc<Calendar>,
    pseudonyms: crate::personal::Pseudonyms,
    entities: BTreeMap<String, Entity>,
    events: BTreeMap<String, Vec<ProcedureEvent>>,
    /// What the list topic last said per entity: listed or not, its
    /// version, and the case.
    written: BTreeMap<String, (bool, i64, String)>,
}

/// What the keeper does on a tick: steps of the procedure that are the
/// hub's, and entries of the list.
#[derive(Debug, Default, PartialEq)]
struct Writes {
    events: Vec<ProcedureEvent>,
    entries: Vec<(String, Value)>,
}

impl ListKeeper {
    fn new(
        config: BlacklistConfig,
        calendar: Arc<Calendar>,
        pseudonyms: crate::personal::Pseudonyms,
    ) -> Self {
        Self {
            config,
            calendar,
            pseudonyms,
            entities: BTreeMap::new(),
            events: BTreeMap::new(),
            written: BTreeMap::new(),
        }
    }

    fn observe_decision(&mut self, d: &Value) {
        let Some(key) = crate::credit::entity_key(d, &self.pseudonyms) else {
            return;
        };
        let Some(id) = d.get("id").and_then(Value::as_str) else {
            return;
        };
        let Some(decided) = d.get("decided_at").and_then(Value::as_i64).and_then(ms) else {
            return;
        };
        let entity = self.entities.entry(key).or_insert_with(|| Entity {
            name: d
                .pointer("/party/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            credit_code: d
                .pointer("/party/credit_code")
                .and_then(Value::as_str)
                .map(str::to_owned),
            grounds: BTreeMap::new(),
        });
        entity.grounds.insert(
            id.to_owned(),
            Ground {
                id: id.to_owned(),
                decision_no: d
                    .get("decision_no")
                    .and_then(Value::as_str)
                    .unwrap_or(id)
                    .to_owned(),
                decided,
                serious: d.get("serious").and_then(Value::as_bool).unwrap_or(false),
                categories: crate::credit::categories_of(d),
                // Revoked, confirmed unlawful or void (行政处罚法 art. 48).
                revoked: matches!(
                    d.get("action").and_then(Value::as_str),
                    Some("REVOKED" | "CONFIRMED_UNLAWFUL" | "CONFIRMED_VOID")
                ),
            },
        );
    }

    fn observe_event(&mut self, e: ProcedureEvent) {
        let list = self.events.entry(e.entity.clone()).or_default();
        if !list.iter().any(|x| x.id == e.id) {
            list.push(e);
        }
    }

    fn observe_entry(&mut self, key: &str, v: &Value) {
        let listed = v.get("action").and_then(Value::as_str) == Some("ADD");
        let version = v.get("version").and_then(Value::as_i64).unwrap_or(0);
        let case = v
            .get("case_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.written.insert(key.to_owned(), (listed, version, case));
    }

    /// The hub's steps and the list's entries due at `now`; what it
    /// returns is also taken into its own memory.
    fn tick(&mut self, now: DateTime<Utc>) -> Writes {
        let mut out = Writes::default();
        let keys: BTreeSet<String> = self
            .entities
            .keys()
            .chain(self.events.keys())
            .cloned()
            .collect();
        for key in keys {
            for e in self.steps(&key, now) {
                self.observe_event(e.clone());
                out.events.push(e);
            }
            if let Some(entry) = self.entry(&key, now) {
                self.observe_entry(&key, &entry);
                out.entries.push((key, entry));
            }
        }
        out
    }

    fn cases(&self, key: &str, now: DateTime<Utc>) -> Vec<CaseView> {
        self.events.get(key).map_or_else(Vec::new, |events| {
            crate::blacklist::cases(events, &self.config, &self.calendar, now)
        })
    }

    /// The hub's own steps for one entity: a proposal when a criterion is
    /// met and nothing is open, the end of a case whose grounds are gone,
    /// the end of a listing whose term has lapsed.
    fn steps(&self, key: &str, now: DateTime<Utc>) -> Vec<ProcedureEvent> {
        let cases = self.cases(key, now);
        let Some(entity) = self.entities.get(key) else {
            return Vec::new();
        };
        if let Some(open) = cases.iter().find(|c| c.state.open()) {
            let Some(p) = &open.proposal else {
                return Vec::new();
            };
            let at = open.proposed_at.and_then(ms).unwrap_or(now);
            let grounds: Vec<&Ground> = p
                .grounds
                .iter()
                .filter_map(|id| entity.grounds.get(id))
                .collect();
            let still = p
                .criteria
                .iter()
                .any(|c| c.met(grounds.iter().copied(), at).is_some());
            if !still {
                return vec![crate::blacklist::hub_event(
                    open,
                    EventKind::GroundsRevoked,
                    now,
                    "所依据的行政处罚决定已被撤销或确认违法、无效（行政处罚法第四十八条），不再符合列入条件".into(),
                )];
            }
            if open.listed()
                && open
                    .listed_until
                    .is_some_and(|until| now.timestamp_millis() >= until)
            {
                return vec![crate::blacklist::hub_event(
                    open,
                    EventKind::TermExpired,
                    now,
                    format!(
                        "列入期限（{}，{}）届满",
                        self.config.listing_term.limit.label(),
                        self.config.listing_term.basis
                    ),
                )];
            }
            return Vec::new();
        }
        let met: Vec<(&Criterion, Vec<&Ground>, String)> = self
            .config
            .criteria
            .iter()
            .filter_map(|c| c.met(entity.grounds.values(), now).map(|(g, r)| (c, g, r)))
            .collect();
        if met.is_empty() {
            return Vec::new();
        }
        let mut grounds: Vec<&Ground> =
            met.iter().flat_map(|(_, g, _)| g.iter().copied()).collect();
        grounds.sort_by(|a, b| (a.decided, &a.id).cmp(&(b.decided, &b.id)));
        grounds.dedup_by(|a, b| a.id == b.id);
        let ids: BTreeSet<&str> = grounds.iter().map(|g| g.id.as_str()).collect();
        // The same grounds are proposed once: a case closed on them (not
        // listed, repaired, expired) is not opened again by the hub.
        if cases.iter().any(|c| {
            c.proposal
                .as_ref()
                .is_some_and(|p| ids.iter().all(|id| p.grounds.iter().any(|g| g == id)))
        }) {
            return Vec::new();
        }
        let case_id = crate::blacklist::case_id(key, now.timestamp_millis());
        vec![ProcedureEvent {
            id: format!("{case_id}:PROPOSED"),
            case_id,
            entity: key.to_owned(),
            event: EventKind::Proposed,
            at_ms: now.timestamp_millis(),
            by: "duijie".into(),
            effective_ms: None,
            text: None,
            proposal: Some(Proposal {
                name: entity.name.clone(),
                credit_code: entity.credit_code.clone(),
                criteria: met.iter().map(|(c, _, _)| (*c).clone()).collect(),
                reasons: met.iter().map(|(_, _, r)| r.clone()).collect(),
                grounds: grounds.iter().map(|g| g.id.clone()).collect(),
                decision_nos: grounds.iter().map(|g| g.decision_no.clone()).collect(),
                latest_decided_ms: grounds
                    .iter()
                    .map(|g| g.decided.timestamp_millis())
                    .max()
                    .unwrap_or_default(),
            }),
        }]
    }

    /// The list entry to write for one entity, if the list topic does not
    /// say it yet: a decided listing, or the removal of one.
    fn entry(&self, key: &str, now: DateTime<Utc>) -> Option<Value> {
        let cases = self.cases(key, now);
        let (was_listed, version, was_case) =
            self.written
                .get(key)
                .cloned()
                .unwrap_or((false, 0, String::new()));
        if let Some(listed) = cases.iter().find(|c| c.listed()) {
            if was_listed && was_case == listed.case_id {
                return None;
            }
            return Some(crate::blacklist::list_entry(listed, version + 1, now));
        }
        if !was_listed {
            return None;
        }
        let removed = cases.iter().find(|c| c.case_id == was_case)?;
        Some(crate::blacklist::list_entry(removed, version + 1, now))
    }

    fn counts(&self, now: DateTime<Utc>) -> (u64, u64) {
        let (mut listed, mut open) = (0, 0);
        for key in self.events.keys() {
            for c in self.cases(key, now) {
                if c.listed() {
                    listed += 1;
                } else if c.state.open() {
                    open += 1;
                }
            }
        }
        (listed, open)
    }
}

/// The list's keeper: follows the decisions, the procedure and the list,
/// and once it has read their history, writes on each tick the hub's steps
/// (the procedure's events first) and then the list entries they make due.
/// When a write fails, it forgets everything and reads it back from the
/// topics, so nothing is half-remembered.
pub async fn run_blacklist(ctx: KeeperContext, config: CreditConfig, shutdown: CancellationToken) {
    let Some(list) = config.blacklist.clone() else {
        return;
    };
    let Some(pseudonyms) = ctx.pseudonyms.clone() else {
        // Checked when the deployment loads; said here should it not be.
        tracing::error!("the blacklist keeper needs [hub] pseudonym_key; not started");
        return;
    };
    loop {
        let round = shutdown.child_token();
        let _stop = round.clone().drop_guard();
        let result = keep_list(&ctx, &config, &list, pseudonyms.clone(), round).await;
        match result {
            Ok(()) => return,
            Err(e) => tracing::error!(error = %e, "blacklist keeper; reading its topics again"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

async fn keep_list(
    ctx: &KeeperContext,
    config: &CreditConfig,
    list: &BlacklistConfig,
    pseudonyms: crate::personal::Pseudonyms,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let mut rx = follow(
        &ctx.bus,
        vec![
            config.decisions_topic.clone(),
            list.events_topic.clone(),
            list.topic.clone(),
        ],
        shutdown.clone(),
    );
    let mut keeper = ListKeeper::new(list.clone(), ctx.calendar.clone(), pseudonyms);
    let mut tick = tokio::time::interval(ctx.tick);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            f = rx.recv() => {
                let Some(f) = f else { return Ok(()) };
                let Follow::Record(f) = f else { continue };
                if f.topic == list.topic {
                    match serde_json::from_slice::<Value>(&f.payload) {
                        Ok(v) => keeper.observe_entry(&f.key, &v),
                        Err(e) => f.unreadable("blacklist keeper", &e.to_string()),
                    }
                } else if f.topic == list.events_topic {
                    match serde_json::from_slice::<ProcedureEvent>(&f.payload) {
                        Ok(e) => keeper.observe_event(e),
                        Err(e) => f.unreadable("blacklist keeper", &e.to_string()),
                    }
                } else {
                    match decode_payload(&ctx.schemas, &f.headers, &f.payload) {
                        Ok(d) => keeper.observe_decision(&d),
                        Err(e) => f.unreadable("blacklist keeper", &e),
                    }
                }
            }
            _ = tick.tick(), if rx.caught_up() => {
                let now = Utc::now();
                let writes = keeper.tick(now);
                write_list(ctx, list, &writes).await?;
                let (listed, open) = keeper.counts(now);
                ctx.stats.blacklisted.store(listed, Ordering::Relaxed);
                ctx.stats.blacklist_open.store(open, Ordering::Relaxed);
            }
        }
    }
}

async fn write_list(ctx: &KeeperContext, list: &BlacklistConfig, w: &Writes) -> Result<(), String> {
    for e in &w.events {
        let body = serde_json::to_value(e).expect("events serialize");
        ctx.send(&list.events_topic, &e.entity, &body).await?;
    }
    for (key, entry) in &w.entries {
        ctx.send(&list.topic, key, entry).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Commitments (告知承诺).

#[derive(Debug)]
struct Commitment {
    licence_no: String,
    party: String,
    conditions: String,
    jurisdiction: String,
    due: DateTime<Utc>,
    met: bool,
}

/// Licences granted on a commitment: warn enforcement before the date,
/// raise a lead when it passes unmet.
pub async fn run_commitments(
    ctx: KeeperContext,
    config: CommitmentConfig,
    shutdown: CancellationToken,
) {
    let mut rx = follow(
        &ctx.bus,
        vec![
            config.licence_topic.clone(),
            ctx.alerts_topic.clone(),
            config.leads_topic.clone(),
        ],
        shutdown.clone(),
    );
    let mut items: BTreeMap<String, Commitment> = BTreeMap::new();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut tick = tokio::time::interval(ctx.tick);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            f = rx.recv() => {
                let Some(f) = f else { return };
                // On catching up, the loop comes round with ticks enabled.
                let Follow::Record(f) = f else { continue };
                if f.topic == ctx.alerts_topic || f.topic == config.leads_topic {
                    done.insert(f.key);
                    continue;
                }
                let l = match decode_payload(&ctx.schemas, &f.headers, &f.payload) {
                    Ok(l) => l,
                    Err(e) => {
                        f.unreadable("commitment tracker", &e);
                        continue;
                    }
                };
                let Some(id) = l.get("id").and_then(Value::as_str) else { continue };
                if l.get("commitment").and_then(Value::as_bool) != Some(true) {
                    items.remove(id);
                    continue;
                }
                let Some(due) = l.get("commitment_due_at").and_then(Value::as_i64).and_then(ms) else { continue };
                let s = |k: &str| l.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                items.insert(id.to_owned(), Commitment {
                    licence_no: l.get("licence_no").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| s("decision_no")),
                    party: l.pointer("/party/name").and_then(Value::as_str).unwrap_or("").to_owned(),
                    conditions: s("commitment_conditions"),
                    jurisdiction: s("jurisdiction"),
                    due,
                    met: l.get("commitment_met").and_then(Value::as_bool) == Some(true),
                });
            }
            _ = tick.tick(), if rx.caught_up() => {
                if let Err(e) = commitment_tick(&ctx, &config, &items, &mut done).await {
                    tracing::error!(error = %e, "commitments");
                }
            }
        }
    }
}

async fn commitment_tick(
    ctx: &KeeperContext,
    config: &CommitmentConfig,
    items: &BTreeMap<String, Commitment>,
    done: &mut BTreeSet<String>,
) -> Result<(), String> {
    let now = Utc::now();
    let (mut soon, mut leads) = (0, 0);
    for (id, c) in items.iter().filter(|(_, c)| !c.met) {
        if now > c.due {
            leads += 1;
            let key = format!("lead:commitment:{id}");
            if done.insert(key.clone()) {
                let lead = json!({
                    "id": key, "kind": "COMMITMENT_UNMET", "licence_id": id, "licence_no": c.licence_no,
                    "party": c.party, "conditions": c.conditions, "jurisdiction": c.jurisdiction,
                    "due_at": c.due.timestamp_millis(),
                    "message": format!("{}承诺事项（{}）已于{}到期未履行，请组织核查。", c.party, c.conditions, local_text(c.due)),
                    "at_ms": now.timestamp_millis(),
                });
                ctx.send(&config.leads_topic, &key, &lead).await?;
                ctx.alert(
                    &format!("commitment:{id}:unmet"),
                    "COMMITMENT_UNMET",
                    crate::alert::Severity::Critical,
                    id,
                    lead["message"].as_str().unwrap_or("").to_owned(),
                )
                .await?;
            }
        } else if warn_window(c.due, config.warn_before, &ctx.calendar)
            .is_some_and(|start| now >= start)
        {
            soon += 1;
            let key = format!("commitment:{id}:due_soon");
            if done.insert(key.clone()) {
                ctx.alert(
                    &key,
                    "COMMITMENT_DUE_SOON",
                    crate::alert::Severity::Warning,
                    id,
                    format!(
                        "{}的告知承诺事项（{}）将于{}到期，请提前核查。",
                        c.party,
                        c.conditions,
                        local_text(c.due)
                    ),
                )
                .await?;
            }
        }
    }
    ctx.stats
        .commitments_due_soon
        .store(soon, Ordering::Relaxed);
    ctx.stats.commitment_leads.store(leads, Ordering::Relaxed);
    Ok(())
}

/// When the warning period before `due` starts.
fn warn_window(due: DateTime<Utc>, before: Limit, _calendar: &Calendar) -> Option<DateTime<Utc>> {
    let span = match before.unit {
        crate::calendar::Unit::Hours => chrono::Duration::hours(i64::from(before.amount)),
        _ => chrono::Duration::days(i64::from(before.amount)),
    };
    due.checked_sub_signed(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keeper() -> ListKeeper {
        let config = crate::blacklist::test_config();
        let calendar =
            Calendar::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("calendar"))
                .expect("calendar");
        ListKeeper::new(
            config,
            Arc::new(calendar),
            crate::personal::Pseudonyms::new("a-test-pseudonym-key-of-32-characters").unwrap(),
        )
    }

    fn local(m: u32, d: u32, h: u32) -> DateTime<Utc> {
        chrono_tz::Asia::Shanghai
            .with_ymd_and_hms(2026, m, d, h, 0, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn decision(
        id: &str,
        decided: DateTime<Utc>,
        serious: bool,
        cats: &[&str],
        action: &str,
    ) -> Value {
        json!({"id": id, "decision_no": format!("宜高综执罚〔2026〕{id}号"), "action": action, "serious": serious,
            "categories": cats, "decided_at": decided.timestamp_millis(),
            "party": {"name": "宜昌东山化工有限责任公司", "credit_code": "91420500MA4F0XYZ1B"}})
    }

    const KEY: &str = "uscc:91420500MA4F0XYZ1B";

    fn act(k: &mut ListKeeper, kind: EventKind, at: DateTime<Utc>, date: Option<DateTime<Utc>>) {
        let case = k.cases(KEY, at).into_iter().next().expect("a case");
        let e =
            crate::blacklist::officer_act(&case, kind, "张三", date, None, at).expect("allowed");
        k.observe_event(e);
    }

    #[test]
    fn an_entity_meeting_a_criterion_is_proposed_once_and_listed_only_when_decided() {
        let mut k = keeper();
        k.observe_decision(&decision(
            "pen:1",
            local(3, 2, 0),
            true,
            &["罚款"],
            "ISSUED",
        ));
        assert_eq!(
            k.tick(local(3, 2, 12)),
            Writes::default(),
            "one serious violation is not enough"
        );
        k.observe_decision(&decision(
            "pen:2",
            local(3, 3, 0),
            true,
            &["罚款"],
            "ISSUED",
        ));
        let w = k.tick(local(3, 3, 12));
        assert_eq!(w.events.len(), 1);
        assert_eq!(w.events[0].event, EventKind::Proposed);
        assert!(
            w.entries.is_empty(),
            "a proposal is not published: {:?}",
            w.entries
        );
        assert_eq!(k.tick(local(3, 3, 13)), Writes::default(), "proposed once");
        // Notice served; the window runs: nothing is published.
        act(
            &mut k,
            EventKind::NoticeServed,
            local(3, 4, 9),
            Some(local(3, 4, 9)),
        );
        assert!(k.tick(local(3, 10, 9)).entries.is_empty());
        act(&mut k, EventKind::ListingDecided, local(3, 20, 9), None);
        let w = k.tick(local(3, 20, 10));
        assert_eq!(w.entries.len(), 1);
        let (key, entry) = &w.entries[0];
        assert_eq!(key, KEY);
        assert_eq!(entry["action"], "ADD");
        assert_eq!(entry["criteria"][0]["basis"], "测试依据甲");
        assert_eq!(
            entry["decided_at"],
            json!(local(3, 20, 9).timestamp_millis())
        );
        assert_eq!(k.tick(local(3, 20, 11)), Writes::default(), "listed once");
        // Repaired after its period: removed, and said so.
        act(&mut k, EventKind::RepairApproved, local(6, 23, 9), None);
        let w = k.tick(local(6, 23, 10));
        assert_eq!(w.entries.len(), 1);
        assert_eq!(w.entries[0].1["action"], "REMOVE");
        assert_eq!(w.entries[0].1["version"], 2);
        assert!(
            w.entries[0].1["removal_reason"]
                .as_str()
                .unwrap()
                .contains("信用修复"),
            "{}",
            w.entries[0].1
        );
        // The same grounds are not proposed again.
        assert_eq!(k.tick(local(6, 24, 10)), Writes::default());
    }

    #[test]
    fn revoked_grounds_end_the_case_and_the_listing_and_a_lapsed_term_removes() {
        let mut k = keeper();
        k.observe_decision(&decision(
            "pen:4",
            local(3, 2, 0),
            false,
            &["罚款", "吊销许可证件"],
            "ISSUED",
        ));
        k.tick(local(3, 2, 12));
        act(
            &mut k,
            EventKind::NoticeServed,
            local(3, 3, 9),
            Some(local(3, 3, 9)),
        );
        act(&mut k, EventKind::ListingDecided, local(3, 20, 9), None);
        assert_eq!(k.tick(local(3, 20, 10)).entries[0].1["action"], "ADD");
        // The term (6 months) lapses at 2026-09-20 24:00.
        let mut expiring = keeper();
        expiring.entities = k.entities.clone();
        expiring.events = k.events.clone();
        expiring.written = k.written.clone();
        assert_eq!(expiring.tick(local(9, 20, 23)), Writes::default());
        let w = expiring.tick(local(9, 21, 1));
        assert_eq!(w.events[0].event, EventKind::TermExpired);
        assert_eq!(w.entries[0].1["action"], "REMOVE");
        // The decision is revoked (行政处罚法 art. 48): the hub ends the case.
        k.observe_decision(&decision(
            "pen:4",
            local(3, 2, 0),
            false,
            &["罚款", "吊销许可证件"],
            "REVOKED",
        ));
        let w = k.tick(local(4, 1, 10));
        assert_eq!(w.events[0].event, EventKind::GroundsRevoked);
        assert_eq!(w.entries[0].1["action"], "REMOVE");
    }

    #[test]
    fn a_restarted_keeper_writes_nothing_it_wrote_before() {
        let mut k = keeper();
        k.observe_decision(&decision(
            "pen:4",
            local(3, 2, 0),
            false,
            &["吊销许可证件"],
            "ISSUED",
        ));
        let mut written = k.tick(local(3, 2, 12));
        act(
            &mut k,
            EventKind::NoticeServed,
            local(3, 3, 9),
            Some(local(3, 3, 9)),
        );
        act(&mut k, EventKind::ListingDecided, local(3, 20, 9), None);
        let listed = k.tick(local(3, 20, 10));
        written.events.extend(listed.events);
        written.entries.extend(listed.entries);
        // What the topics hold, read back by a new keeper.
        let mut again = keeper();
        again.observe_decision(&decision(
            "pen:4",
            local(3, 2, 0),
            false,
            &["吊销许可证件"],
            "ISSUED",
        ));
        for e in k.events[KEY].clone() {
            again.observe_event(e);
        }
        for (key, entry) in &written.entries {
            again.observe_entry(key, entry);
        }
        assert_eq!(again.tick(local(3, 21, 10)), Writes::default());
    }

    #[test]
    fn a_natural_person_is_proposed_under_a_pseudonym_never_the_id_number() {
        let mut k = keeper();
        let id = "11010519491231002X";
        k.observe_decision(&json!({"id": "pen:9", "decision_no": "宜高综执罚决字〔2026〕第0900号", "action": "ISSUED",
            "serious": false, "categories": ["吊销许可证件"], "decided_at": local(3, 2, 0).timestamp_millis(),
            "party": {"name": "李娜", "type": "NATURAL_PERSON", "id_number": id}}));
        let w = k.tick(local(3, 2, 12));
        assert_eq!(w.events.len(), 1);
        assert_eq!(w.events[0].entity, k.pseudonyms.of(id));
        assert!(w.events[0].entity.starts_with("pid:"));
        let text = serde_json::to_string(&w.events).unwrap();
        assert!(crate::personal::full_ids(&text).is_empty(), "{text}");
    }
}
