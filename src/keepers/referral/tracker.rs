//! The referral tracker (移送案件跟踪): the procedure of [`super`] kept
//! against the bus.
//!
//! The tracker consumes referral events (the enforcement system, the
//! police, the two-law platform and the desk's own actions) as a consumer
//! group; after each round it writes every changed referral's state to a
//! compacted topic and only then commits its offsets, so a restarted
//! tracker — or another instance — rebuilds exactly the same state.
//! Deadlines at risk or passed are alerts on their own topic, once each.
//! The desk (两法衔接工作台, [`crate::desk`]) shows what it keeps.

use super::{EventSource, ReferralView, StepLimits, TimelineEvent, fold};
use crate::bus::{Bus, ReaderContext, header_map};
use crate::calendar::Calendar;
use crate::error::Result;
use crate::schema::SchemaSet;
use crate::schema::decode_payload;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// What the tracker reads and writes, and its clocks' settings (the
/// desk's `[desk]` section gives them: `events_topic`, `state_topic`,
/// `alerts_topic`, `limits`, `at_risk_share`).
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    pub events_topic: String,
    /// Compacted: the state of each referral.
    pub state_topic: String,
    pub alerts_topic: String,
    /// "At risk" when less than this share of a step's time is left.
    pub at_risk_share: f64,
    /// Limits of the statutory steps.
    pub limits: StepLimits,
}

/// The tracker's state, shared with the pages that show it.
#[derive(Clone)]
pub struct Tracker {
    pub config: TrackerConfig,
    pub bus: Bus,
    pub producer: FutureProducer,
    pub schemas: Arc<SchemaSet>,
    pub calendar: Arc<Calendar>,
    /// Events per referral (the tracker's memory).
    events: Arc<RwLock<BTreeMap<String, Vec<TimelineEvent>>>>,
    /// The current views.
    pub views: Arc<RwLock<BTreeMap<String, ReferralView>>>,
    /// Notifies the page's live refresh.
    pub changes: broadcast::Sender<u64>,
    /// The events topic's partitions whose referrals this instance tracks.
    pub tracked_partitions: Arc<RwLock<BTreeSet<i32>>>,
    /// What time it is (the system clock, or a fixed time in tests).
    clock: crate::calendar::Clock,
    /// Alert rounds the tracker completed (each tick: clocks recomputed,
    /// alerts written and acknowledged). A test waits for one more round
    /// instead of sleeping to see that "nothing happened".
    pub alert_rounds: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("events_topic", &self.config.events_topic)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    pub fn new(
        config: TrackerConfig,
        bus: Bus,
        producer: FutureProducer,
        schemas: Arc<SchemaSet>,
        calendar: Arc<Calendar>,
    ) -> Self {
        Self {
            config,
            bus,
            producer,
            schemas,
            calendar,
            events: Arc::default(),
            views: Arc::default(),
            changes: broadcast::channel(64).0,
            tracked_partitions: Arc::default(),
            clock: crate::calendar::Clock::system(),
            alert_rounds: Arc::default(),
        }
    }

    /// The same tracker on another clock: deadlines are judged at
    /// `clock`'s time instead of the system's.
    pub fn with_clock(mut self, clock: crate::calendar::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Now, on the tracker's clock.
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
    pub fn latest_trace(&self, referral_no: &str) -> Option<String> {
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
    pub async fn send(
        &self,
        topic: &str,
        key: &str,
        body: &[u8],
        about: Option<&str>,
    ) -> Result<()> {
        let traceparent = crate::telemetry::trace::acted("desk", about, topic, key);
        let headers = crate::bus::traced(
            rdkafka::message::OwnedHeaders::new(),
            traceparent.as_deref(),
        );
        crate::bus::publish::write(&self.producer, topic, key, body, headers).await
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
                            Err(e) => r.unreadable("referral tracker", &e.to_string()),
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
                if let Some(view) =
                    r.json::<ReferralView>("referral tracker", &self.config.state_topic)
                {
                    events.insert(view.referral_no.clone(), view.events);
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

    /// Long because the tracker's round (read events, fold, write the
    /// states before committing offsets, alert) is one select over the
    /// consumer and the tick.
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
    config: &TrackerConfig,
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
