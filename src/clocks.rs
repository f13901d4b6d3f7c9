//! Keepers of state built from topics: the credit publication clock, the
//! blacklist, and the commitment tracker.
//!
//! Each reads its topics from the beginning (they are its memory: a
//! restarted hub rebuilds the same state), including the alerts it raised
//! before, so an alert is raised once, not once per restart. Each looks at
//! its state on a tick and writes what changed: alerts, blacklist entries,
//! leads for enforcement.

use crate::bus::{Bus, ReaderContext};
use crate::calendar::{Calendar, CalendarError, Limit, local_text};
use crate::delivery::config::{BlacklistCriteria, CommitmentConfig, CreditConfig};
use crate::delivery::{Outcome, Receipt, decode_payload};
use crate::schema::SchemaSet;
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
    pub key: String,
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

/// Reads `topics` from the beginning and keeps following them, on a
/// blocking thread, into a channel.
pub fn follow(
    bus: &Bus,
    topics: Vec<String>,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Followed> {
    let (tx, rx) = mpsc::channel(4096);
    let mut config = bus.client_config();
    config
        .set("group.id", format!("{}-follower", bus.client_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    std::thread::spawn(move || {
        let consumer: BaseConsumer<ReaderContext> = match config.create_with_context(ReaderContext)
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot follow topics");
                return;
            }
        };
        let mut assigned = BTreeSet::new();
        let mut tpl = TopicPartitionList::new();
        while !shutdown.is_cancelled() {
            // (Re)assign: topics may be created after the keeper starts.
            if assigned.len() < topics.len() {
                for t in &topics {
                    if assigned.contains(t) {
                        continue;
                    }
                    if let Ok(md) = consumer.fetch_metadata(Some(t), Duration::from_secs(5)) {
                        let parts: Vec<i32> = md
                            .topics()
                            .iter()
                            .flat_map(|m| m.partitions().iter().map(|p| p.id()))
                            .collect();
                        if parts.is_empty() {
                            continue;
                        }
                        for p in parts {
                            let _ = tpl.add_partition_offset(t, p, Offset::Beginning);
                        }
                        assigned.insert(t.clone());
                    }
                }
                if consumer.assign(&tpl).is_err() {
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
                let f = Followed {
                    topic: m.topic().to_owned(),
                    key: m
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default(),
                    headers: crate::bus::header_map(&m),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                };
                if tx.blocking_send(f).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Counters for metrics and the demo.
#[derive(Debug, Default)]
pub struct ClockStats {
    pub credit_pending: AtomicU64,
    pub credit_at_risk: AtomicU64,
    pub credit_late: AtomicU64,
    pub blacklisted: AtomicU64,
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
        let payload = body.to_string();
        self.producer
            .send(
                FutureRecord::to(topic).key(key).payload(&payload).headers(
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
        severity: &str,
        subject: &str,
        message: String,
    ) -> Result<(), String> {
        let alert = json!({
            "kind": kind, "severity": severity, "subject": subject, "message": message,
            "at_ms": Utc::now().timestamp_millis(),
        });
        tracing::warn!(kind, subject, message = %alert["message"], "alert");
        self.send(&self.alerts_topic.clone(), key, &alert).await
    }
}

fn ms(t: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(t).single()
}

// ---------------------------------------------------------------------------
// The credit publication clock.

#[derive(Debug, Clone)]
struct Publication {
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
    let mut items: BTreeMap<(String, i64), Publication> = BTreeMap::new();
    let mut alerted: BTreeSet<String> = BTreeSet::new();
    let mut tick = tokio::time::interval(ctx.tick);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            f = rx.recv() => {
                let Some(f) = f else { return };
                if f.topic == ctx.alerts_topic {
                    alerted.insert(f.key);
                } else if f.topic == ctx.receipts_topic {
                    let Ok(r) = serde_json::from_slice::<Receipt>(&f.payload) else { continue };
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
                    let Ok(d) = decode_payload(&ctx.schemas, &f.headers, &f.payload) else { continue };
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
                    let entry = items.entry((id.to_owned(), version)).or_insert(Publication {
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
            _ = tick.tick() => {
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
    items: &BTreeMap<(String, i64), Publication>,
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
                        "critical",
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
                        "critical",
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
                    "critical",
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
                    "warning",
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
// The blacklist (黑名单).

#[derive(Debug, Clone)]
struct Penalty {
    decided: DateTime<Utc>,
    serious: bool,
    listing_category: bool,
    revoked: bool,
    decision_no: String,
}

#[derive(Debug)]
struct Entity {
    name: String,
    credit_code: Option<String>,
    penalties: BTreeMap<String, Penalty>,
}

/// Entities meeting the serious-violation criteria, and whether the
/// blacklist topic says they are listed.
struct Blacklist {
    criteria: BlacklistCriteria,
    entities: BTreeMap<String, Entity>,
    /// What was last written per entity: listed or not, and its version.
    written: BTreeMap<String, (bool, i64)>,
    pseudonyms: crate::personal::Pseudonyms,
}

impl Blacklist {
    fn new(criteria: BlacklistCriteria, pseudonyms: crate::personal::Pseudonyms) -> Self {
        Self {
            criteria,
            pseudonyms,
            entities: BTreeMap::new(),
            written: BTreeMap::new(),
        }
    }

    fn observe(&mut self, d: &Value) {
        let Some(key) = crate::credit::entity_key(d, &self.pseudonyms) else {
            return;
        };
        let Some(id) = d.get("id").and_then(Value::as_str) else {
            return;
        };
        let Some(decided) = d.get("decided_at").and_then(Value::as_i64).and_then(ms) else {
            return;
        };
        let categories: Vec<&str> = d
            .get("categories")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
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
            penalties: BTreeMap::new(),
        });
        entity.penalties.insert(
            id.to_owned(),
            Penalty {
                decided,
                serious: d.get("serious").and_then(Value::as_bool).unwrap_or(false),
                listing_category: categories
                    .iter()
                    .any(|c| self.criteria.categories_any.iter().any(|l| l == c)),
                // Revoked, confirmed unlawful or void (行政处罚法 art. 48): it
                // no longer counts toward a listing.
                revoked: matches!(
                    d.get("action").and_then(Value::as_str),
                    Some("REVOKED" | "CONFIRMED_UNLAWFUL" | "CONFIRMED_VOID")
                ),
                decision_no: d
                    .get("decision_no")
                    .and_then(Value::as_str)
                    .unwrap_or(id)
                    .to_owned(),
            },
        );
    }

    /// Whether the entity is listed now, with the reasons.
    fn listed(&self, entity: &Entity, now: DateTime<Utc>) -> (bool, Vec<String>) {
        let since = now
            .checked_sub_months(chrono::Months::new(self.criteria.window_months))
            .unwrap_or(now);
        let live: Vec<&Penalty> = entity
            .penalties
            .values()
            .filter(|p| !p.revoked && p.decided >= since)
            .collect();
        let serious: Vec<&&Penalty> = live.iter().filter(|p| p.serious).collect();
        let mut reasons = Vec::new();
        if serious.len() >= self.criteria.serious_count {
            reasons.push(format!(
                "{}个月内严重违法{}次（{}）",
                self.criteria.window_months,
                serious.len(),
                serious
                    .iter()
                    .map(|p| p.decision_no.as_str())
                    .collect::<Vec<_>>()
                    .join("、")
            ));
        }
        for p in live.iter().filter(|p| p.listing_category) {
            reasons.push(format!(
                "{}：{}",
                p.decision_no,
                self.criteria.categories_any.join("/")
            ));
        }
        (!reasons.is_empty(), reasons)
    }

    async fn tick(&mut self, ctx: &KeeperContext) -> Result<(), String> {
        let now = Utc::now();
        let mut count = 0;
        let keys: Vec<String> = self.entities.keys().cloned().collect();
        for key in keys {
            let entity = &self.entities[&key];
            let (listed, reasons) = self.listed(entity, now);
            if listed {
                count += 1;
            }
            let (was, version) = self.written.get(&key).copied().unwrap_or((false, 0));
            if listed == was {
                continue;
            }
            let version = version + 1;
            let entry = json!({
                "id": format!("blk:{key}"),
                "entity": key,
                "name": entity.name,
                "credit_code": entity.credit_code,
                "action": if listed { "ADD" } else { "REMOVE" },
                "reasons": reasons,
                "version": version,
                "updated_at": now.timestamp_millis(),
                "message": if listed {
                    format!("{}列入严重违法失信名单（黑名单），实施联合惩戒", entity.name)
                } else {
                    format!("{}列入黑名单的条件已不再满足，移出名单", entity.name)
                },
            });
            ctx.send(&self.criteria.topic, &key, &entry).await?;
            self.written.insert(key, (listed, version));
        }
        ctx.stats.blacklisted.store(count, Ordering::Relaxed);
        Ok(())
    }
}

/// Restores what the blacklist topic already says, so a restarted keeper
/// writes only changes. Called with records of the blacklist topic.
fn restore_blacklist(blacklist: &mut Blacklist, f: &Followed) {
    if let Ok(v) = serde_json::from_slice::<Value>(&f.payload) {
        let listed = v.get("action").and_then(Value::as_str) == Some("ADD");
        let version = v.get("version").and_then(Value::as_i64).unwrap_or(0);
        blacklist.written.insert(f.key.clone(), (listed, version));
    }
}

/// The blacklist keeper: follows the decisions and its own topic, and
/// writes an entry when an entity comes onto the list or leaves it.
pub async fn run_blacklist(ctx: KeeperContext, config: CreditConfig, shutdown: CancellationToken) {
    let mut rx = follow(
        &ctx.bus,
        vec![
            config.decisions_topic.clone(),
            config.blacklist.topic.clone(),
        ],
        shutdown.clone(),
    );
    let Some(pseudonyms) = ctx.pseudonyms.clone() else {
        // Checked when the deployment loads; said here should it not be.
        tracing::error!("the blacklist keeper needs [hub] pseudonym_key; not started");
        return;
    };
    let mut blacklist = Blacklist::new(config.blacklist.clone(), pseudonyms);
    let mut tick = tokio::time::interval(ctx.tick);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            f = rx.recv() => {
                let Some(f) = f else { return };
                if f.topic == config.blacklist.topic {
                    restore_blacklist(&mut blacklist, &f);
                } else if let Ok(d) = decode_payload(&ctx.schemas, &f.headers, &f.payload) {
                    blacklist.observe(&d);
                }
            }
            _ = tick.tick() => {
                if let Err(e) = blacklist.tick(&ctx).await {
                    tracing::error!(error = %e, "blacklist");
                }
            }
        }
    }
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
                if f.topic == ctx.alerts_topic || f.topic == config.leads_topic {
                    done.insert(f.key);
                    continue;
                }
                let Ok(l) = decode_payload(&ctx.schemas, &f.headers, &f.payload) else { continue };
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
            _ = tick.tick() => {
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
                    "critical",
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
                    "warning",
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

    #[test]
    fn blacklist_criteria_count_serious_violations_in_the_window_and_listing_categories() {
        let mut b = Blacklist::new(
            BlacklistCriteria::default(),
            crate::personal::Pseudonyms::new("a-test-pseudonym-key-of-32-characters").unwrap(),
        );
        let now = Utc::now();
        let decision = |id: &str, days_ago: i64, serious: bool, cats: &[&str], action: &str| {
            json!({"id": id, "decision_no": id, "action": action, "serious": serious, "categories": cats,
                "decided_at": (now - chrono::Duration::days(days_ago)).timestamp_millis(),
                "party": {"name": "宜昌东山化工有限责任公司", "credit_code": "91350100M000100Y43"}})
        };
        b.observe(&decision("pen:1", 30, true, &["罚款"], "ISSUED"));
        let e = |b: &Blacklist| b.listed(&b.entities["uscc:91350100M000100Y43"], now);
        assert!(!e(&b).0, "one serious violation is not enough");
        b.observe(&decision("pen:2", 400, true, &["罚款"], "ISSUED"));
        assert!(!e(&b).0, "the second is outside the 12-month window");
        b.observe(&decision("pen:3", 10, true, &["罚款"], "ISSUED"));
        assert!(e(&b).0);
        b.observe(&decision("pen:3", 10, true, &["罚款"], "REVOKED"));
        assert!(!e(&b).0, "a revoked decision does not count");
        b.observe(&decision(
            "pen:4",
            5,
            false,
            &["罚款", "吊销许可证件"],
            "ISSUED",
        ));
        let (listed, reasons) = e(&b);
        assert!(listed);
        assert!(reasons[0].contains("pen:4"), "{reasons:?}");
    }

    #[test]
    fn a_natural_person_is_listed_under_a_pseudonym_never_the_id_number() {
        let keys =
            crate::personal::Pseudonyms::new("a-test-pseudonym-key-of-32-characters").unwrap();
        let mut b = Blacklist::new(BlacklistCriteria::default(), keys.clone());
        let id = "11010519491231002X";
        b.observe(&json!({"id": "pen:9", "decision_no": "宜高综执罚决字〔2026〕第0900号", "action": "ISSUED",
            "serious": false, "categories": ["吊销许可证件"], "decided_at": Utc::now().timestamp_millis(),
            "party": {"name": "李娜", "type": "NATURAL_PERSON", "id_number": id}}));
        let keys_seen: Vec<&String> = b.entities.keys().collect();
        assert_eq!(keys_seen, vec![&keys.of(id)]);
        assert!(keys_seen[0].starts_with("pid:"));
        assert!(
            crate::personal::full_ids(&format!("{:?}", b.entities)).is_empty(),
            "the keeper holds the ID number: {:?}",
            b.entities
        );
    }
}
