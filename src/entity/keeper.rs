//! Keeps the entity index up to date with the bus: every canonical topic,
//! the blacklist topic and the officers' link decisions, from where the
//! index stopped (or the beginning), in batches of one transaction each.

use super::index::{Change, EntityIndex, LinkDecision};
use super::{Kind, Position, Reader};
use crate::bus::{Bus, ReaderContext};
use crate::calendar::Calendar;
use crate::clocks::{Follow, Followed};
use crate::credit::CreditPolicy;
use crate::personal::Pseudonyms;
use crate::schema::SchemaSet;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The topics the index reads.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Canonical topics (every pipeline's).
    pub canonical: Vec<String>,
    /// The blacklist entries (ADD / REMOVE), when configured.
    pub listing: Option<String>,
    /// The officers' link decisions.
    pub links: String,
}

impl Sources {
    pub fn all(&self) -> Vec<String> {
        let mut all = self.canonical.clone();
        all.extend(self.listing.clone());
        all.push(self.links.clone());
        all.sort();
        all.dedup();
        all
    }
}

/// Counters for metrics and the demo.
#[derive(Debug, Default)]
pub struct IndexStats {
    pub records: AtomicU64,
    pub entities: AtomicU64,
    pub multi_system: AtomicU64,
    /// Records of a schema that names no party.
    pub without_party: AtomicU64,
    /// Records that could not be read; each is logged.
    pub undecodable: AtomicU64,
    /// Whether the index has read the topics' history.
    pub ready: AtomicBool,
}

/// What reading records needs.
#[derive(Debug, Clone)]
pub struct Context {
    pub bus: Bus,
    pub schemas: Arc<SchemaSet>,
    pub pseudonyms: Pseudonyms,
    pub policy: CreditPolicy,
    pub calendar: Arc<Calendar>,
    pub sources: Sources,
    pub stats: Arc<IndexStats>,
}

/// Changes per transaction at most.
const BATCH: usize = 2_000;
/// A transaction waits for the disk at least this often.
const DURABLE_EVERY: Duration = Duration::from_secs(5);

impl Context {
    fn change(&self, f: &Followed) -> Option<Change> {
        let at = Position::from_headers(&f.topic, f.partition, f.offset, &f.headers);
        let reference = format!("{}|{}", f.topic, f.key);
        if f.topic == self.sources.links {
            return match serde_json::from_slice::<LinkDecision>(&f.payload) {
                Ok(d) => Some(Change::Decision(d)),
                Err(e) => {
                    self.undecodable(f, &e.to_string());
                    None
                }
            };
        }
        if f.payload.is_empty() {
            return Some(Change::Removed(reference));
        }
        let reader = Reader {
            pseudonyms: &self.pseudonyms,
            policy: &self.policy,
            calendar: &self.calendar,
        };
        let value = match crate::delivery::decode_payload(&self.schemas, &f.headers, &f.payload) {
            Ok(v) => v,
            Err(e) => {
                self.undecodable(f, &e);
                return None;
            }
        };
        if Some(&f.topic) == self.sources.listing.as_ref() {
            return reader.read_listing(&f.key, &value, at).map(Change::Record);
        }
        let kind = f
            .headers
            .get("duijie-schema")
            .and_then(|s| Kind::of_schema(s));
        match kind.and_then(|k| reader.read(k, &f.key, &value, at)) {
            Some(r) => Some(Change::Record(r)),
            None => {
                // Not about an entity (no party named): nothing to link.
                self.stats.without_party.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn undecodable(&self, f: &Followed, why: &str) {
        self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(topic = %f.topic, partition = f.partition, offset = f.offset, error = why,
            "a record does not decode; the entity index leaves it out");
    }

    /// Offsets the bus no longer has (a topic recreated, another cluster):
    /// the index must start again.
    fn offsets_still_valid(&self, offsets: &BTreeMap<(String, i32), i64>) -> bool {
        let consumer: BaseConsumer<ReaderContext> =
            match self.bus.client_config().create_with_context(ReaderContext) {
                Ok(c) => c,
                Err(_) => return false,
            };
        offsets.iter().all(|((topic, p), next)| {
            match consumer.fetch_watermarks(topic, *p, Duration::from_secs(10)) {
                Ok((_, high)) => *next <= high,
                Err(e) => {
                    tracing::warn!(topic, partition = p, error = %e, "cannot check the entity cache against the bus; rebuilding it");
                    false
                }
            }
        })
    }
}

/// Follows the sources into `index` until shutdown. With `until_caught_up`
/// it returns once the topics' history is read (`duijie entity`).
pub async fn run(
    index: Arc<EntityIndex>,
    ctx: Context,
    until_caught_up: bool,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let offsets = index.offsets().map_err(|e| e.to_string())?;
    if !offsets.is_empty() {
        let (c, o) = (ctx.clone(), offsets.clone());
        let valid = tokio::task::spawn_blocking(move || c.offsets_still_valid(&o))
            .await
            .unwrap_or(false);
        if !valid {
            tracing::warn!("the entity cache is ahead of the bus; rebuilding it from the beginning");
            index.clear().map_err(|e| e.to_string())?;
        }
    }
    let start = index.offsets().map_err(|e| e.to_string())?;
    let round = shutdown.child_token();
    let _stop = round.clone().drop_guard();
    let mut rx = crate::clocks::follow_from(&ctx.bus, ctx.sources.all(), &start, round);
    let mut last_durable = Instant::now();
    refresh(&index, &ctx.stats);
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            f = rx.recv() => f,
        };
        let Some(first) = first else {
            return Ok(());
        };
        let mut changes = Vec::new();
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut caught_up = false;
        let mut item = Some(first);
        while let Some(f) = item.take() {
            match f {
                Follow::CaughtUp => caught_up = true,
                Follow::Record(f) => {
                    next.insert((f.topic.clone(), f.partition), f.offset + 1);
                    changes.extend(ctx.change(&f));
                }
            }
            if changes.len() < BATCH {
                item = rx.try_recv();
            }
        }
        let offsets: Vec<(String, i32, i64)> =
            next.into_iter().map(|((t, p), o)| (t, p, o)).collect();
        let durable = caught_up || last_durable.elapsed() >= DURABLE_EVERY;
        let (i, c) = (index.clone(), changes);
        tokio::task::spawn_blocking(move || i.apply(&c, &offsets, durable))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("writing the entity index: {e}"))?;
        if durable {
            last_durable = Instant::now();
            // Counting scans the entities: as often as the disk is waited for.
            refresh(&index, &ctx.stats);
        }
        if caught_up {
            ctx.stats.ready.store(true, Ordering::Release);
            if until_caught_up {
                return Ok(());
            }
        }
    }
}

fn refresh(index: &EntityIndex, stats: &IndexStats) {
    if let Ok((entities, multi, records)) = index.counts() {
        stats.records.store(records, Ordering::Relaxed);
        stats.entities.store(entities, Ordering::Relaxed);
        stats.multi_system.store(multi, Ordering::Relaxed);
    }
}

/// [`run`] until shutdown, starting again (from where the index stands)
/// after a failure, such as a write the disk refused.
pub async fn keep(index: Arc<EntityIndex>, ctx: Context, shutdown: CancellationToken) {
    loop {
        match run(index.clone(), ctx.clone(), false, shutdown.clone()).await {
            Ok(()) => return,
            Err(e) => tracing::error!(error = %e, "entity index; reading its topics again"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
