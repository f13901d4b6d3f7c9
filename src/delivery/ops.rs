//! Operating the deliveries: `duijie deliveries status` and
//! `duijie replay`.

use super::{Delivery, DeliveryConfig, Incoming, Outcome, Receipt, SharedTopics, TargetConfig};
use crate::bus::inspect::read_topic;
use crate::bus::read::METADATA_WITHIN;
use crate::bus::{Bus, ReaderContext};
use crate::error::{Domain, Error, Result};
use crate::schema::SchemaSet;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A blocking read that did not come back (it panicked).
fn joined(e: tokio::task::JoinError) -> Error {
    Error::transient(Domain::Bus, format!("reading the bus: {e}"))
}

/// One line of `deliveries status`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FeedStatus {
    pub delivery: String,
    pub department: String,
    pub target: String,
    pub delivered: u64,
    pub rejected: u64,
    pub failed: u64,
    pub not_sent: u64,
    /// Waiting for an officer (a decision without its credit class).
    pub held: u64,
    /// Records on the topic the group has not settled yet (deliveries).
    pub pending: Option<i64>,
}

pub(crate) fn target_kind(c: &DeliveryConfig) -> &'static str {
    match c.target {
        TargetConfig::CreditBatch { .. } => "credit_batch",
        TargetConfig::Webhook { .. } => "webhook",
        TargetConfig::Soap { .. } => "soap",
        TargetConfig::Pull { .. } => "pull",
    }
}

/// What operating the feeds takes from a deployment
/// (`Deployment::feeds`).
#[derive(Debug, Clone)]
pub struct Feeds<'a> {
    pub bus: Bus,
    pub deliveries: &'a [(String, DeliveryConfig)],
    pub topics: SharedTopics,
    /// The Avro schemas directory.
    pub schemas: &'a std::path::Path,
    /// The deployment file, for messages.
    pub file: &'a std::path::Path,
}

/// The feeds' status as a table (`duijie deliveries status`).
pub fn status_table(rows: &[FeedStatus]) -> String {
    let line = |cells: [&str; 9]| {
        format!(
            "{:<26} {:<14} {:<13} {:>9} {:>8} {:>7} {:>9} {:>5} {:>8}\n",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            cells[5],
            cells[6],
            cells[7],
            cells[8]
        )
    };
    let mut out = line([
        "feed",
        "department",
        "target",
        "delivered",
        "refused",
        "failed",
        "not sent",
        "held",
        "pending",
    ]);
    for r in rows {
        let n = [r.delivered, r.rejected, r.failed, r.not_sent, r.held].map(|x| x.to_string());
        let pending = r.pending.map_or("pulled".into(), |p| p.to_string());
        out.push_str(&line([
            &r.delivery,
            &r.department,
            &r.target,
            &n[0],
            &n[1],
            &n[2],
            &n[3],
            &n[4],
            &pending,
        ]));
    }
    out
}

/// Delivered, refused, failed and pending per feed, from the receipts topic
/// (latest outcome per record and version) and the groups' committed
/// offsets.
pub async fn status(d: &Feeds<'_>) -> Result<Vec<FeedStatus>> {
    let bus = &d.bus;
    let receipts = read_topic(bus, &d.topics.receipts, true).await?;
    let mut latest: BTreeMap<(String, String), Outcome> = BTreeMap::new();
    for r in receipts {
        if let Some(receipt) = r
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_slice::<Receipt>(p).ok())
        {
            latest.insert((receipt.delivery, receipt.idempotency_key), receipt.outcome);
        }
    }
    let mut out = Vec::new();
    for (name, config) in d.deliveries {
        let mut s = FeedStatus {
            delivery: name.clone(),
            department: config.department.clone().unwrap_or_else(|| name.clone()),
            target: target_kind(config).into(),
            ..FeedStatus::default()
        };
        for ((delivery, _), outcome) in &latest {
            if delivery != name {
                continue;
            }
            match outcome {
                Outcome::Delivered => s.delivered += 1,
                Outcome::Rejected => s.rejected += 1,
                Outcome::Failed => s.failed += 1,
                Outcome::NotSent => s.not_sent += 1,
                Outcome::Held => s.held += 1,
            }
        }
        if !matches!(config.target, TargetConfig::Pull { .. }) {
            s.pending = Some(lag(bus, &Delivery::group_id(bus, name), &config.topic).await?);
        }
        out.push(s);
    }
    Ok(out)
}

/// Records of `topic` beyond the group's committed offsets.
pub(crate) async fn lag(bus: &Bus, group: &str, topic: &str) -> Result<i64> {
    let (bus, group) = (bus.clone(), group.to_owned());
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        // The group's committed offsets; it neither subscribes nor commits.
        let consumer: BaseConsumer<ReaderContext> = bus.group_member(&group)?;
        let mut tpl = TopicPartitionList::new();
        for p in crate::bus::read::partitions(&consumer, &topic, METADATA_WITHIN)? {
            tpl.add_partition(&topic, p);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
        let mut total = 0;
        for e in committed.elements() {
            let (low, high) =
                crate::bus::read::retry_until(std::time::Instant::now() + METADATA_WITHIN, || {
                    consumer.fetch_watermarks(&topic, e.partition(), Duration::from_secs(10))
                })?;
            let at = match e.offset() {
                Offset::Offset(o) => o,
                _ => low,
            };
            total += (high - at).max(0);
        }
        Ok(total)
    })
    .await
    .map_err(joined)?
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    /// UTC epoch milliseconds.
    Time(i64),
    /// The same offset in every partition (`offset:N`).
    Offset(i64),
    /// One partition, from one offset (`P:O`, as a dead letter's origin
    /// `topic@P:O` gives it).
    At { partition: i32, offset: i64 },
}

impl std::str::FromStr for From {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(o) = s.strip_prefix("offset:") {
            return o
                .parse()
                .map(From::Offset)
                .map_err(|_| format!("`{o}` is not an offset"));
        }
        // `P:O`, or a dead letter's origin: `topic[P]@O` or `topic@P:O`.
        if let Some((head, o)) = s.rsplit_once("]@")
            && let Some((_, p)) = head.rsplit_once('[')
            && let (Ok(partition), Ok(offset)) = (p.parse::<i32>(), o.parse::<i64>())
        {
            return Ok(From::At { partition, offset });
        }
        let at = s.rsplit_once('@').map_or(s, |(_, at)| at);
        if let Some((p, o)) = at.split_once(':')
            && let (Ok(partition), Ok(offset)) = (p.parse::<i32>(), o.parse::<i64>())
        {
            return Ok(From::At { partition, offset });
        }
        if let Ok(o) = s.parse::<i64>() {
            return Ok(From::Offset(o));
        }
        crate::calendar::parse_time(s).map(|t| From::Time(t.timestamp_millis()))
    }
}

impl Feeds<'_> {
    /// The delivery called `feed`; `Err` names the deployment file.
    fn delivery(&self, feed: &str) -> Result<&(String, DeliveryConfig)> {
        self.deliveries
            .iter()
            .find(|(n, _)| n == feed)
            .ok_or_else(|| {
                Error::permanent(
                    Domain::Config,
                    format!("no delivery `{feed}` in {}", self.file.display()),
                )
            })
    }
}

/// What `duijie deliveries test` got back.
#[derive(Debug)]
pub struct TestDelivery {
    pub url: String,
    pub key: String,
    /// The receiver's answer: accepted, refused (with its reason) or a
    /// transient failure.
    pub answer: String,
    pub accepted: bool,
}

/// `duijie deliveries test --delivery NAME`: one signed test delivery to a webhook
/// or SOAP receiver, exactly as the feed sends (signature, key, body with
/// `_delivery`), marked `"test": true`; the receiver's answer. Not for the
/// credit platform (a test record would be published) or a pull feed.
pub async fn test_delivery(d: &Feeds<'_>, feed: &str) -> Result<TestDelivery> {
    let (name, config) = d.delivery(feed)?;
    if !matches!(
        config.target,
        TargetConfig::Webhook { .. } | TargetConfig::Soap { .. }
    ) {
        return Err(Error::permanent(
            Domain::Config,
            format!("`{name}`: a test delivery goes to webhook and SOAP receivers only"),
        ));
    }
    let target = super::sink::Target::from_config(&config.target, None)
        .map_err(|why| Error::permanent(Domain::Config, why))?;
    let now = chrono::Utc::now();
    let key = format!("test:{name}:t{}", now.timestamp_millis());
    let out = super::transform::Outgoing::Json {
        body: serde_json::json!({
            "id": format!("test:{name}"),
            "test": true,
            "message": "duijie 推送连通性测试，请按正常记录校验签名后应答；无需入库",
            "_delivery": {"idempotency_key": key, "version": null, "updated_at": now.timestamp_millis()},
        }),
        key: key.clone(),
        route: Some("test".into()),
    };
    let url = target
        .request(&[&out], now.timestamp())
        .map(|r| r.url)
        .unwrap_or_default();
    let answer = target.send(&[&out]).await.into_iter().next();
    let (accepted, answer) = match answer {
        Some(super::sink::Attempt::Accepted(_)) => (true, "accepted".to_owned()),
        Some(super::sink::Attempt::Refused(why)) => (false, format!("refused: {why}")),
        Some(super::sink::Attempt::Transient { reason, .. }) => {
            (false, format!("not reached: {reason}"))
        }
        None => (false, "no answer".to_owned()),
    };
    Ok(TestDelivery {
        url,
        key,
        answer,
        accepted,
    })
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub read: usize,
    pub delivered: u64,
    pub rejected: u64,
    pub failed: u64,
    pub not_sent: u64,
    pub held: u64,
}

impl ReplayReport {
    /// Records read that the delivery's `select` left out: read, less
    /// every outcome.
    pub fn not_selected(&self) -> u64 {
        (self.read as u64).saturating_sub(
            self.delivered + self.rejected + self.failed + self.not_sent + self.held,
        )
    }
}

/// Delivers again what `feed` read from `from` on, up to the end of the
/// topic as of now. Receivers absorb what they already had by its
/// idempotency key; every outcome gets a receipt.
pub async fn replay(d: &Feeds<'_>, feed: &str, from: From) -> Result<ReplayReport> {
    let (name, config) = d.delivery(feed)?;
    if matches!(config.target, TargetConfig::Pull { .. }) {
        return Err(Error::permanent(
            Domain::Config,
            format!("`{feed}` is a pull feed: the department asks again from an earlier cursor"),
        ));
    }
    let bus = d.bus.clone();
    let schemas = Arc::new(SchemaSet::load_dir(d.schemas)?);
    let producer = bus.producer()?;
    let delivery = Delivery::new(
        name,
        config.clone(),
        bus.clone(),
        producer,
        schemas,
        d.topics.clone(),
    )?;
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    delivery.follow_repairs(&shutdown).await;
    let records = read_from(&delivery, from).await?;
    let read = records.values().map(Vec::len).sum();
    for (_, part) in records {
        delivery.deliver_partition(part, &shutdown).await?;
    }
    use std::sync::atomic::Ordering::Relaxed;
    Ok(ReplayReport {
        read,
        delivered: delivery.stats.delivered.load(Relaxed),
        rejected: delivery.stats.rejected.load(Relaxed),
        failed: delivery.stats.failed.load(Relaxed),
        not_sent: delivery.stats.not_sent.load(Relaxed),
        held: delivery.stats.held.load(Relaxed),
    })
}

/// `Err` when a partition answered "nothing at or after `t`" although its
/// last record was written at or after `t`: the broker did not resolve the
/// time.
fn unresolved_time(
    consumer: &BaseConsumer<ReaderContext>,
    topic: &str,
    answered: &TopicPartitionList,
    t: i64,
) -> Result<()> {
    for e in answered.elements() {
        if !matches!(e.offset(), Offset::End | Offset::Invalid) && e.offset().to_raw() != Some(-1) {
            continue;
        }
        let (low, high) =
            consumer.fetch_watermarks(topic, e.partition(), Duration::from_secs(10))?;
        if high <= low {
            continue;
        }
        let mut last = TopicPartitionList::new();
        last.add_partition_offset(topic, e.partition(), Offset::Offset(high - 1))?;
        consumer.assign(&last)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
                if m.timestamp().to_millis().is_some_and(|ts| ts >= t) {
                    return Err(Error::permanent(
                        Domain::Bus,
                        format!(
                            "the broker did not resolve the time {} on `{topic}` (partition {} holds later records): replay from an offset instead, `--from offset:N` or `--from P:O`",
                            crate::calendar::local_text(
                                chrono::DateTime::from_timestamp_millis(t).unwrap_or_default()
                            ),
                            e.partition()
                        ),
                    ));
                }
                break;
            }
        }
    }
    Ok(())
}

async fn read_from(delivery: &Delivery, from: From) -> Result<BTreeMap<i32, Vec<Incoming>>> {
    let delivery = delivery.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer<ReaderContext> = delivery
            .bus
            .reader("replay", crate::bus::Isolation::Committed)?;
        let topic = delivery.config.topic.clone();
        let mut tpl = TopicPartitionList::new();
        let partitions = crate::bus::read::partitions(&consumer, &topic, METADATA_WITHIN)?;
        if let From::At { partition, .. } = from
            && !partitions.contains(&partition)
        {
            return Err(Error::permanent(
                Domain::Config,
                format!("`{topic}` has no partition {partition} (it has {partitions:?})"),
            ));
        }
        for p in partitions {
            let offset = match from {
                From::Time(t) => Offset::Offset(t),
                From::Offset(o) => Offset::Offset(o),
                From::At { partition, offset } if partition == p => Offset::Offset(offset),
                From::At { .. } => continue,
            };
            tpl.add_partition_offset(&topic, p, offset)?;
        }
        if let From::Time(t) = from {
            tpl = consumer.offsets_for_times(tpl, Duration::from_secs(10))?;
            // "Nothing at or after the time" is the end of a partition; a
            // broker that cannot look times up (the embedded mock) answers
            // the same for every time. Told apart by the partitions' last
            // records: one written at or after the time must be found.
            unresolved_time(&consumer, &topic, &tpl, t)?;
        }
        // A partition with nothing at or after the time is not read.
        let starts: Vec<(i32, crate::bus::read::Start)> = tpl
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), crate::bus::read::Start::At(o))),
                _ => None,
            })
            .collect();
        let mut out: BTreeMap<i32, Vec<Incoming>> = BTreeMap::new();
        crate::bus::read::read_to_end(
            &consumer,
            &topic,
            &starts,
            crate::bus::read::READ_TO_END_WITHIN,
            |m| {
                match delivery.decode(m) {
                    Ok(i) => out.entry(i.partition).or_default().push(i),
                    Err(e) => crate::bus::unreadable(
                        "feed replay",
                        m.topic(),
                        m.partition(),
                        m.offset(),
                        &e,
                    ),
                }
                Ok(())
            },
        )?;
        Ok(out)
    })
    .await
    .map_err(joined)?
}

#[cfg(test)]
mod tests {
    use super::From;

    #[test]
    fn a_replay_starts_from_a_time_an_offset_or_a_dead_letters_origin() {
        let at = |s: &str| s.parse::<From>().unwrap();
        assert!(matches!(at("offset:0"), From::Offset(0)));
        assert!(matches!(at("12"), From::Offset(12)));
        assert!(matches!(
            at("2:41"),
            From::At {
                partition: 2,
                offset: 41
            }
        ));
        // Both forms a dead letter's origin takes.
        assert!(matches!(
            at("canonical.grid_event[1]@7"),
            From::At {
                partition: 1,
                offset: 7
            }
        ));
        assert!(matches!(
            at("canonical.grid_event@1:7"),
            From::At {
                partition: 1,
                offset: 7
            }
        ));
        assert!(matches!(at("2026-11-28 09:00"), From::Time(_)));
        assert!("yesterday".parse::<From>().is_err());
    }
}
