//! Keeps the entity index up to date with the bus: every canonical topic,
//! the blacklist topic and the officers' link decisions, from where the
//! index stopped (or the beginning), in batches of one transaction each.

use super::index::{Change, EntityIndex, LinkDecision, Read, record_digest};
use super::{Position, Reader, Reading};
use crate::bus::follow::{Follow, Followed};
use crate::bus::{Bus, ReaderContext};
use crate::calendar::Calendar;
use crate::credit::CreditPolicy;
use crate::error::{Domain, Error, Result};
use crate::personal::Pseudonyms;
use crate::schema::SchemaSet;
use rdkafka::consumer::BaseConsumer;
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

/// What the entity library takes from its deployment
/// (`Deployment::entity_setting`).
#[derive(Debug, Clone)]
pub struct Setting {
    pub config: super::EntitiesConfig,
    pub bus: Bus,
    /// The credit policy of the deployment's penalty feed.
    pub policy: CreditPolicy,
    pub pseudonyms: Pseudonyms,
    pub sources: Sources,
}

impl Setting {
    /// What the keeper reading the bus for this setting needs.
    pub fn context(
        &self,
        schemas: Arc<SchemaSet>,
        calendar: Arc<Calendar>,
        stats: Arc<IndexStats>,
    ) -> Context {
        Context {
            bus: self.bus.clone(),
            readings: Arc::new(super::readings(&schemas)),
            schemas,
            pseudonyms: self.pseudonyms.clone(),
            policy: self.policy.clone(),
            calendar,
            sources: self.sources.clone(),
            stats,
        }
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
    /// Officers' link decisions naming a person by another suite's
    /// pseudonym (before a change of suite): not applied, each logged; the
    /// record is back among the unlinked on the desk, to decide again.
    pub earlier_links: AtomicU64,
    /// Whether the index has read the topics' history.
    pub ready: AtomicBool,
}

/// What reading records needs.
#[derive(Debug, Clone)]
pub struct Context {
    pub bus: Bus,
    pub schemas: Arc<SchemaSet>,
    /// The schemas whose records name a party, learnt from the schemas.
    pub readings: Arc<BTreeMap<String, Reading>>,
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
                Ok(d) if self.pseudonyms.is_earlier_form(&d.entity) => {
                    self.stats.earlier_links.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        reference = %d.reference,
                        decision = %d.id,
                        "entity library: a link decision names a person by the previous suite's pseudonym; \
                         not applied, the record is unlinked again for an officer to decide"
                    );
                    None
                }
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
        let value = match crate::schema::decode_payload(&self.schemas, &f.headers, &f.payload) {
            Ok(v) => v,
            Err(e) => {
                self.undecodable(f, &e);
                return None;
            }
        };
        if Some(&f.topic) == self.sources.listing.as_ref() {
            return reader
                .read_listing(&f.key, &value, at)
                .map(|r| Change::Record(Box::new(r.kept())));
        }
        let reading = f
            .headers
            .get("duijie-schema")
            .and_then(|s| self.readings.get(s));
        match reading.and_then(|r| reader.read(r, &f.key, &value, at)) {
            Some(r) => Some(Change::Record(Box::new(r.kept()))),
            None => {
                // Not about an entity (no party named): nothing to link.
                self.stats.without_party.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn undecodable(&self, f: &Followed, why: &str) {
        self.stats.undecodable.fetch_add(1, Ordering::Relaxed);
        f.unreadable("entity library", why);
    }

    /// Whether the bus still holds, at every partition's last offset read,
    /// the record the index read there. If not (a topic recreated, another
    /// cluster, the record compacted away), the index must start again:
    /// that costs a rebuild, never a wrong index.
    fn positions_still_valid(&self, positions: &super::index::Positions) -> bool {
        let consumer: BaseConsumer<ReaderContext> = match self
            .bus
            .reader("entity-check", crate::bus::Isolation::Committed)
        {
            Ok(c) => c,
            Err(_) => return false,
        };
        positions.iter().all(|((topic, p), (next, digest))| {
            let wanted = next - 1;
            let mut same = false;
            let read = crate::bus::read::read_until(
                &consumer,
                topic,
                &[(*p, crate::bus::read::Start::At(wanted))],
                Duration::from_secs(10),
                |m| {
                    use rdkafka::Message;
                    same = m.offset() == wanted
                        && record_digest(
                            String::from_utf8_lossy(m.key().unwrap_or_default()).as_bytes(),
                            &crate::bus::seal::open_message(m).unwrap_or_default(),
                        ) == *digest;
                    Ok(std::ops::ControlFlow::Break(()))
                },
            );
            match read {
                Err(e) => {
                    tracing::info!(topic, partition = p, error = %e, "the entity cache's position is not on the bus");
                    false
                }
                Ok(_) if !same => {
                    tracing::info!(topic, partition = p, offset = wanted, "the entity cache read another record there, or none");
                    false
                }
                Ok(_) => true,
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
) -> Result<()> {
    let cache = |e: String| Error::transient(Domain::Entity, format!("the entity index: {e}"));
    let positions = index.positions().map_err(|e| cache(e.to_string()))?;
    if !positions.is_empty() {
        let c = ctx.clone();
        let valid = tokio::task::spawn_blocking(move || c.positions_still_valid(&positions))
            .await
            .unwrap_or(false);
        if !valid {
            tracing::warn!(
                "the entity cache does not match the bus; rebuilding it from the beginning"
            );
            index.clear().map_err(|e| cache(e.to_string()))?;
        }
    }
    let start = index.offsets().map_err(|e| cache(e.to_string()))?;
    let round = shutdown.child_token();
    let _stop = round.clone().drop_guard();
    let mut rx = crate::bus::follow::follow_from(&ctx.bus, ctx.sources.all(), &start, round);
    let mut last_durable = Instant::now();
    refresh(&index, &ctx.stats);
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            f = rx.recv() => f,
        };
        let Some(first) = first else {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            return Err(Error::transient(
                Domain::Bus,
                "the follower of the entity topics stopped",
            ));
        };
        let mut changes = Vec::new();
        let mut next: BTreeMap<(String, i32), (i64, Vec<u8>)> = BTreeMap::new();
        let mut caught_up = false;
        let mut item = Some(first);
        while let Some(f) = item.take() {
            match f {
                Follow::CaughtUp => caught_up = true,
                Follow::Record(f) => {
                    let digest = record_digest(f.key.as_bytes(), &f.payload);
                    next.insert((f.topic.clone(), f.partition), (f.offset + 1, digest));
                    changes.extend(ctx.change(&f));
                }
            }
            if changes.len() < BATCH {
                item = rx.try_recv();
            }
        }
        let offsets: Vec<Read> = next
            .into_iter()
            .map(|((topic, partition), (next, last_digest))| Read {
                topic,
                partition,
                next,
                last_digest,
            })
            .collect();
        let durable = caught_up || last_durable.elapsed() >= DURABLE_EVERY;
        let (i, c) = (index.clone(), changes);
        tokio::task::spawn_blocking(move || i.apply(&c, &offsets, durable))
            .await
            .map_err(|e| cache(e.to_string()))?
            .map_err(|e| cache(format!("writing: {e}")))?;
        if durable {
            last_durable = Instant::now();
        }
        refresh(&index, &ctx.stats);
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
/// after a failure, such as a write the disk refused, with the one restart
/// loop's backoff ([`crate::retry::supervise`]).
pub async fn keep(index: Arc<EntityIndex>, ctx: Context, shutdown: CancellationToken) {
    let attempt = || async {
        let before = ctx.stats.records.load(Ordering::Relaxed);
        let e = run(index.clone(), ctx.clone(), false, shutdown.clone())
            .await
            .err()?;
        let progressed = ctx.stats.records.load(Ordering::Relaxed) != before;
        Some(crate::retry::Failure::of(
            e.context("entity index"),
            progressed,
        ))
    };
    crate::retry::supervise(
        &crate::retry::RetryConfig::default(),
        &shutdown,
        "entity index failed; reading its topics again",
        attempt,
    )
    .await;
}
