//! One ingest pipeline: source → mapping → Avro → topic, with its cursor.
//!
//! At-least-once mode pipelines the work: while the broker acknowledges
//! batch N, batch N+1 is fetched and mapped. Acknowledgements are awaited in
//! order; only when every record (and dead letter) of a batch is
//! acknowledged is the batch's cursor written, and only when the cursor is
//! acknowledged is the source told the batch is durable. A crash therefore
//! re-reads at most the batches in flight (`max_in_flight_batches`), and
//! never loses one.
//!
//! [`intake`] is the same pipeline's intake for a subscribed or served
//! source (webhook, MQTT): what arrives is handed over one delivery at a
//! time and acknowledged to its sender once the bus took it.
//!
//! Exactly-once mode writes each batch's records, dead letters and cursor in
//! one Kafka transaction (the KIP-618 idea): a `read_committed` consumer sees
//! a batch completely or not at all, and the cursor always agrees with it.

pub mod intake;

use super::stats::PipelineStats;
use crate::bus::{
    Acks, BatchProducer, Bus, CursorStore, DeadLetter, HeaderTemplate, PackedProvenance,
    Provenance, StoredCursor, headers, traced,
};
use crate::config::PipelineConfig;
use crate::mapping::Mapping;
use crate::retry::backoff;
use crate::schema::{Encoding, RecordEncoder};
use crate::telemetry::trace;
use duijie_connectors::registry::{BuiltSource, Drive};
use duijie_connectors::{Batch, Cursor, ErrorClass, RawRecord, RawReject, Source, SourceError};
use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

/// Why ingestion stopped before shutdown.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the broker did not acknowledge a record: {0}")]
    Unacknowledged(#[from] KafkaError),
    #[error("the producer dropped a delivery before the broker answered")]
    Dropped,
    #[error("Kafka transaction failed: {0}")]
    Transaction(#[source] KafkaError),
    #[error("source failed: {0}")]
    Source(#[from] SourceError),
    /// The cursor store, the transactional producer's creation: the bus's
    /// own error, whose class it keeps (an unreadable cursor is permanent).
    #[error("{0}")]
    Bus(#[from] crate::bus::BusError),
    /// A blocking task that panicked or was cancelled.
    #[error("a blocking task ended: {0}")]
    Task(String),
    /// The schema registry: unreachable or busy (transient), or refusing
    /// the canonical schema (permanent: incompatible, unauthorised).
    #[error("{0}")]
    Registry(#[from] crate::schema::RegistryError),
}

impl IngestError {
    /// Whether waiting and trying again can help. A permanent failure of the
    /// whole pipeline — a configuration the source refuses (a missing
    /// directory, a SOAP answer with a DOCTYPE, credentials refused), a
    /// topic the broker will not take records for, an unreadable cursor,
    /// this instance fenced by another with the same transactional id —
    /// stops the pipeline in state `failing` with its reason, instead of
    /// restarting forever; a reload with a corrected configuration starts it
    /// again. Each variant takes its class from the error it holds, never
    /// from its text. (Record-level permanent failures never get here: they
    /// are dead letters.)
    pub fn class(&self) -> ErrorClass {
        match self {
            IngestError::Source(e) => e.class,
            IngestError::Unacknowledged(e) | IngestError::Transaction(e) => {
                crate::bus::kafka_class(e)
            }
            IngestError::Bus(e) => e.class(),
            IngestError::Registry(e) => e.class(),
            IngestError::Dropped | IngestError::Task(_) => ErrorClass::Transient,
        }
    }
}

impl From<IngestError> for crate::error::Error {
    fn from(e: IngestError) -> Self {
        let domain = match e {
            IngestError::Source(_) => crate::error::Domain::Source,
            _ => crate::error::Domain::Bus,
        };
        Self::new(domain, e.class(), e)
    }
}

/// Everything a pipeline needs, handed over by the hub.
#[derive(Clone)]
pub struct PipelineContext {
    pub config: PipelineConfig,
    pub mapping: Arc<Mapping>,
    /// How records are written; with a schema registry, resolved by
    /// [`PipelineContext::registered`] each time the pipeline starts.
    pub encoding: Encoding,
    /// The schema registry the canonical schema is registered with, when
    /// `[kafka] schema_registry` is set.
    pub registry: Option<crate::schema::registry::RegistryClient>,
    pub bus: Bus,
    /// Shared idempotent producer (at-least-once pipelines), acknowledged
    /// per batch.
    pub producer: BatchProducer,
    pub cursors: CursorStore,
    pub stats: Arc<PipelineStats>,
    pub shutdown: CancellationToken,
    /// A backfill: a bounded re-read of the source's history.
    pub backfill: Option<Backfill>,
    /// What time it is: the schedule's next poll is reckoned on it.
    pub clock: crate::calendar::Clock,
    /// The largest record the broker takes on the pipeline's topic and its
    /// dead-letter topic ([`Bus::max_message_bytes`]); dead letters are cut
    /// to fit below it.
    pub max_message_bytes: usize,
    /// Where each batch's quality tally goes (`[hub] quality_topic`).
    pub quality_topic: String,
}

/// A re-read of a source's history, from a time, to a time (or until
/// caught up), at a bounded rate. Its cursor is stored under the
/// pipeline's name in the context (`NAME#backfill…`), so that running the
/// same backfill again resumes it.
#[derive(Debug, Clone)]
pub struct Backfill {
    /// The watermark to start from (source time format).
    pub from: String,
    /// Stop once a committed batch reaches past this watermark.
    pub to: Option<String>,
    /// Records per second, at most.
    pub rate: Option<f64>,
}

impl std::fmt::Debug for PipelineContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineContext")
            .field("pipeline", &self.config.name)
            .field("mapping", &self.mapping.name)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

/// A batch produced, waiting for its acknowledgements.
struct InFlight {
    produced: Produced,
    /// When the batch was fetched.
    fetched: std::time::Instant,
    /// Released once the batch's cursor is durable.
    _permit: tokio::sync::OwnedSemaphorePermit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Record,
    DeadLetter,
}

impl PipelineContext {
    /// This context with its schema registered, when a registry is
    /// configured: records then carry the registry's id (the Confluent
    /// wire format). A registry down or busy is a transient failure of the
    /// pipeline (tried again with its backoff); a refusal (409
    /// incompatible, 401) stops it as `failing` with the registry's answer.
    pub async fn registered(&self) -> Result<std::borrow::Cow<'_, Self>, IngestError> {
        let Some(registry) = &self.registry else {
            return Ok(std::borrow::Cow::Borrowed(self));
        };
        let schema_id = registry
            .register(&self.config.topic, &self.mapping.schema)
            .await?;
        let mut ctx = self.clone();
        ctx.encoding = Encoding::Confluent { schema_id };
        Ok(std::borrow::Cow::Owned(ctx))
    }
}

/// Runs a pipeline until shutdown, restarting from the last committed
/// cursor after a delivery failure.
pub async fn run(ctx: PipelineContext) {
    let span = info_span!("pipeline", pipeline = %ctx.config.name, system = %ctx.config.system);
    async move {
        let settled = || {
            PipelineStats::get(&ctx.stats.delivered) + PipelineStats::get(&ctx.stats.dead_lettered)
        };
        let attempt = || async {
            let before = settled();
            let result = match ctx.registered().await {
                Err(e) => Err(e),
                Ok(ctx) if ctx.config.source.drive() == Drive::Subscribed => {
                    run_subscribed(&ctx).await
                }
                Ok(ctx) if ctx.config.exactly_once => run_transactional(&ctx).await,
                Ok(ctx) => run_at_least_once(&ctx).await,
            };
            let e = match result {
                Ok(()) => {
                    ctx.stats.set_state(super::stats::PipelineState::Stopped);
                    info!("pipeline stopped");
                    return None;
                }
                Err(e) => e,
            };
            ctx.stats.set_failing(&crate::secrets::redact(&e.to_string()));
            let permanent = if ctx.backfill.is_some() {
                error!(error = %e, "backfill failed; the same command resumes from its last committed cursor");
                true
            } else if e.class() == ErrorClass::Permanent {
                error!(error = %e, "pipeline failed permanently; it stays stopped (state failing) until its configuration is corrected and reloaded");
                true
            } else {
                ctx.stats.restarts.fetch_add(1, Ordering::Relaxed);
                false
            };
            Some(crate::retry::Failure {
                error: e.into(),
                permanent,
                progressed: settled() > before,
            })
        };
        crate::retry::supervise(
            &ctx.config.retry,
            &ctx.shutdown,
            "pipeline failed; resuming from the last committed cursor",
            attempt,
        )
        .await;
    }
    .instrument(span)
    .await
}

/// A subscribed source: it holds its connection and hands every delivery
/// to the pipeline's intake, acknowledging it to its sender once the bus
/// did ([`duijie_connectors::push`]). Its cursor is the sender's: nothing is
/// stored in the cursor topic.
async fn run_subscribed(ctx: &PipelineContext) -> Result<(), IngestError> {
    let BuiltSource::Subscribe(mut subscription) = ctx.config.source.build()? else {
        return Err(IngestError::Source(SourceError::permanent(
            "the source is not a subscription",
        )));
    };
    ctx.stats.set_state(super::stats::PipelineState::Running);
    let intake = intake::PipelineIntake::new(ctx.clone());
    subscription.run(&intake, ctx.shutdown.clone()).await?;
    Ok(())
}

async fn open_source(
    ctx: &PipelineContext,
    read_committed: bool,
) -> Result<(Box<dyn Source>, u64), IngestError> {
    let stored = ctx
        .cursors
        .load(&ctx.bus, &ctx.config.name, read_committed)
        .await
        .map_err(IngestError::Bus)?;
    let BuiltSource::Poll(mut source) = ctx.config.source.build()? else {
        return Err(IngestError::Source(SourceError::permanent(
            "a pushed source has no cursor to resume from",
        )));
    };
    let total = stored.as_ref().map_or(0, |s| s.records);
    let start = match (stored, &ctx.backfill) {
        (Some(s), _) => {
            info!(cursor = %s.cursor.0, "resuming from committed cursor");
            Some(s.cursor)
        }
        (None, Some(b)) => {
            let Some(c) = source.cursor_at(&b.from) else {
                return Err(IngestError::Source(SourceError::permanent(format!(
                    "a `{}` source cannot start from a time; it has no history to backfill",
                    ctx.config.source.kind()
                ))));
            };
            info!(from = %b.from, "backfill starting");
            Some(c)
        }
        (None, None) => {
            info!("no committed cursor; starting from the beginning");
            None
        }
    };
    source.open(start).await?;
    ctx.stats.set_state(super::stats::PipelineState::Running);
    Ok((source, total))
}

/// Holds a backfill to `rate` records per second (counting what it
/// fetched since it started here).
async fn pace(ctx: &PipelineContext, rate: f64) {
    let fetched = PipelineStats::get(&ctx.stats.fetched) as f64;
    let started = ctx.stats.started_ms();
    let due_ms = started + (fetched / rate * 1000.0) as i64;
    let wait = due_ms - chrono::Utc::now().timestamp_millis();
    if wait > 0 {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
        }
    }
}

/// Waits for the next scheduled poll; false on shutdown. A schedule is
/// local time (Asia/Shanghai), as the bureau and its systems keep it: `0 0
/// 2 * * *` polls at 02:00 in Yichang.
async fn wait_for_tick(ctx: &PipelineContext) -> bool {
    wait_for_poll(ctx.config.schedule.as_ref(), &ctx.clock, &ctx.shutdown).await
}

/// Waits on `clock` for the next time of `schedule` (a second without
/// one); false on shutdown.
async fn wait_for_poll(
    schedule: Option<&cron::Schedule>,
    clock: &crate::calendar::Clock,
    shutdown: &CancellationToken,
) -> bool {
    let now = clock.now();
    let wait = schedule
        .and_then(|s| next_poll(s, now))
        .and_then(|t| (t - now).to_std().ok())
        .unwrap_or(Duration::from_secs(1));
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

/// The first time of `schedule` (local time, Asia/Shanghai) after `now`.
fn next_poll(
    schedule: &cron::Schedule,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    schedule
        .after(&now.with_timezone(&chrono_tz::Asia::Shanghai))
        .next()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Fetches the next batch, retrying transient errors with backoff.
/// `Ok(None)` means caught up, or transient errors outlasted
/// `retry.max_attempts` (logged and counted, tried again at the next poll).
/// A permanent error (credentials refused, a SOAP answer with a DOCTYPE, a
/// missing directory) is returned: the pipeline stops in state `failing`
/// until its configuration is reloaded, and never calls the source again on
/// its own — a refused login tried at every poll would lock the account.
async fn fetch(
    ctx: &PipelineContext,
    source: &mut dyn Source,
) -> Result<Option<Batch>, IngestError> {
    let mut attempt = 0u32;
    loop {
        let result = tokio::select! {
            _ = ctx.shutdown.cancelled() => return Ok(None),
            r = source.next_batch(ctx.config.batch_size) => r,
        };
        match result {
            Ok(batch) => {
                // A source whose transient errors outlasted the retries and
                // answers again is running again.
                if ctx.stats.state() == super::stats::PipelineState::Failing {
                    ctx.stats.set_state(super::stats::PipelineState::Running);
                }
                if batch.is_none() {
                    ctx.stats
                        .caught_up_ms
                        .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
                }
                return Ok(batch);
            }
            Err(e) if !e.is_transient() => {
                ctx.stats.failed_polls.fetch_add(1, Ordering::Relaxed);
                return Err(IngestError::Source(e));
            }
            Err(e) => {
                attempt += 1;
                let max = ctx.config.retry.max_attempts;
                if max > 0 && attempt >= max {
                    ctx.stats.failed_polls.fetch_add(1, Ordering::Relaxed);
                    // Shown as `failing` with its reason in /ready and
                    // `duijie_pipeline_up{state="failing"}` until a poll
                    // succeeds; tried again only at the next scheduled poll,
                    // never in a tight loop.
                    ctx.stats
                        .set_failing(&crate::secrets::redact(&e.to_string()));
                    error!(error = %e, attempts = attempt, "poll failed after its retries; trying again at the next scheduled poll");
                    return Ok(None);
                }
                ctx.stats.retries.fetch_add(1, Ordering::Relaxed);
                let wait = backoff(&ctx.config.retry, attempt, e.retry_after);
                warn!(error = %e, attempt, wait_ms = wait.as_millis() as u64, "transient source error; retrying");
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// What became of one raw record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Mapped; the record's key.
    Mapped(String),
    /// Dead-lettered, with the reason.
    DeadLettered(String),
}

fn provenance(
    ctx: &PipelineContext,
    fetched_at_ms: i64,
    origin: &str,
    payload: &[u8],
) -> Provenance {
    Provenance {
        source_system: ctx.config.system.clone(),
        source_id: None,
        fetched_at_ms,
        connector: ctx.config.source.kind().to_owned(),
        pipeline: ctx.config.name.clone(),
        mapping: ctx.mapping.name.clone(),
        mapping_version: ctx.mapping.version,
        payload_sha256: Provenance::hash(payload),
        origin: origin.to_owned(),
        code_tables: ctx.mapping.code_tables.clone(),
    }
}

/// What preparing records keeps between them: the shared part of their
/// provenance, rebuilt when the fetch time changes (usually once per
/// batch), and the quality tally of what was mapped.
#[derive(Debug)]
pub(super) struct Preparer {
    template: Option<HeaderTemplate>,
    tallier: crate::quality::Tallier,
}

impl Preparer {
    pub(super) fn new(ctx: &PipelineContext) -> Self {
        Self {
            template: None,
            tallier: crate::quality::Tallier::new(
                &ctx.mapping.schema,
                &ctx.mapping.code_field_names(),
            ),
        }
    }

    /// The tally of what was prepared since the last one.
    pub(super) fn tally(&mut self, ctx: &PipelineContext) -> crate::quality::Tally {
        self.tallier.take(&ctx.config.name)
    }

    fn template(&mut self, ctx: &PipelineContext, fetched_at_ms: i64) -> &HeaderTemplate {
        if self
            .template
            .as_ref()
            .is_none_or(|t| t.fetched_at_ms != fetched_at_ms)
        {
            let content_type = match ctx.encoding {
                Encoding::SingleObject => "avro/binary; single-object",
                Encoding::Confluent { .. } => "application/vnd.confluent.avro",
            };
            let p = provenance(ctx, fetched_at_ms, "", b"");
            self.template = Some(HeaderTemplate::new(
                &p,
                &ctx.mapping.schema.full_name,
                content_type,
            ));
        }
        self.template.as_ref().expect("just built")
    }
}

/// A raw record after its mapping: what the producer sends.
pub(super) enum Prepared {
    Record {
        key: String,
        body: Vec<u8>,
        /// Provenance, the record's own (source id, payload hash, origin)
        /// with the batch's shared fields.
        provenance: PackedProvenance,
        /// The enforcement lead it raises (`[pipelines.X.lead]`): key and
        /// JSON body.
        lead: Option<(String, Vec<u8>)>,
    },
    Rejected(crate::mapping::Reject),
}

/// Parses, maps, Avro-encodes and hashes one raw record, builds its
/// provenance and counts it in the quality tally: the CPU work, with no
/// I/O, so that a batch's records can be prepared on several cores. A
/// record larger than the topic takes is rejected here (a record-level
/// permanent failure, dead-lettered cut to fit, so that the pipeline moves
/// on).
pub(super) fn prepare(ctx: &PipelineContext, raw: &RawRecord, preparer: &mut Preparer) -> Prepared {
    let mapping = &ctx.mapping;
    let encoder = RecordEncoder::new(ctx.encoding);
    let limit = ctx
        .max_message_bytes
        .saturating_sub(crate::bus::RECORD_HEADROOM);
    let mapped = mapping
        .map_at(&raw.payload, raw.fetched_at_ms)
        .and_then(|mapped| {
            let mut body = Vec::with_capacity(raw.payload.len());
            encoder
                .encode(&mapping.schema, &mapped.values, &mut body)
                .map_err(|e| crate::mapping::Reject {
                    field: Some(e.field.clone()),
                    rule: "encode",
                    reason: e.to_string(),
                })?;
            if body.len() > limit {
                return Err(crate::mapping::Reject {
                    field: None,
                    rule: "size",
                    reason: format!(
                        "the canonical record is {} bytes, more than the {} the topic `{}` takes",
                        body.len(),
                        limit,
                        ctx.config.topic
                    ),
                });
            }
            preparer.tallier.mapped(raw.fetched_at_ms, &mapped.values);
            let provenance = preparer.template(ctx, raw.fetched_at_ms).record(
                mapped.source_id.as_deref(),
                &raw.payload,
                &raw.origin,
            );
            let lead = ctx.config.lead.as_ref().and_then(|lead| {
                lead.lead_of(
                    &ctx.config.name,
                    &ctx.config.topic,
                    &mapped.key,
                    &mapping.to_json(&mapped),
                    raw.fetched_at_ms,
                )
            });
            Ok(Prepared::Record {
                key: mapped.key.into_owned(),
                body,
                provenance,
                lead,
            })
        });
    mapped.unwrap_or_else(Prepared::Rejected)
}

/// A fetched batch with its records prepared, in order.
struct PreparedBatch {
    batch: Batch,
    prepared: Vec<Prepared>,
    /// The quality tally of its mapped records.
    tally: crate::quality::Tally,
    /// The fetch span it came from.
    fetch: Context,
}

/// Prepares a batch's records in order, on rayon's pool (one thread a
/// core, kept for the process's life: threads started per batch would each
/// begin with a cold allocator heap, and zeroing its fresh pages had cost a
/// tenth of the hub's CPU). Small batches stay on the calling thread.
async fn prepare_batch(ctx: PipelineContext, batch: Batch, fetch: Context) -> PreparedBatch {
    let began = std::time::SystemTime::now();
    let prepared = prepare_records(&ctx, batch).await;
    map_span(&ctx, &fetch, began, &prepared.0);
    PreparedBatch {
        prepared: prepared.0,
        tally: prepared.1,
        batch: prepared.2,
        fetch,
    }
}

/// [`prepare_batch`]'s work: the prepared records, their tally, and the
/// batch handed back.
async fn prepare_records(
    ctx: &PipelineContext,
    batch: Batch,
) -> (Vec<Prepared>, crate::quality::Tally, Batch) {
    use rayon::prelude::*;
    /// Records a worker takes at a time.
    const PER_TASK_MIN: usize = 256;
    fn part(
        ctx: &PipelineContext,
        records: &[RawRecord],
    ) -> (Vec<Prepared>, crate::quality::Tally) {
        let mut preparer = Preparer::new(ctx);
        let prepared: Vec<Prepared> = records
            .iter()
            .map(|r| prepare(ctx, r, &mut preparer))
            .collect();
        (prepared, preparer.tally(ctx))
    }
    if batch.records.len() < 2 * PER_TASK_MIN {
        let (prepared, tally) = part(ctx, &batch.records);
        return (prepared, tally, batch);
    }
    let ctx = ctx.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let threads = rayon::current_num_threads();
        let chunk = batch.records.len().div_ceil(threads * 4).max(PER_TASK_MIN);
        let parts: Vec<(Vec<Prepared>, crate::quality::Tally)> = batch
            .records
            .par_chunks(chunk)
            .map(|c| part(&ctx, c))
            .collect();
        let mut tally = crate::quality::Tally::new(&ctx.config.name);
        let mut prepared = Vec::with_capacity(batch.records.len());
        for (p, t) in parts {
            prepared.extend(p);
            tally.merge(t);
        }
        let _ = tx.send((prepared, tally, batch));
    });
    rx.await.expect("the preparing task does not panic")
}

/// Keeps what was fetched on the pipeline's raw topic (raw retention) and
/// waits for the broker's acknowledgements, which give each raw record's
/// place: the canonical records point at them (`duijie-raw`). `None` for
/// each record without raw retention. Keyed like its canonical record
/// (else by origin), so a record's raw versions share a partition.
async fn keep_raw(
    ctx: &PipelineContext,
    producer: &BatchProducer,
    records: &[&RawRecord],
    prepared: &[&Prepared],
    traceparent: Option<&str>,
) -> Result<Vec<Option<crate::bus::RawRef>>, IngestError> {
    let Some(topic) = ctx.config.raw_topic() else {
        return Ok(vec![None; records.len()]);
    };
    let limit = ctx
        .max_message_bytes
        .saturating_sub(crate::bus::RECORD_HEADROOM);
    // One group a record: each needs its own place.
    let mut pending = Vec::with_capacity(records.len());
    for (raw, p) in records.iter().zip(prepared) {
        if raw.payload.len() > limit {
            // Too large for the broker: the canonical record (or its dead
            // letter, which keeps the payload's head and hash) goes on
            // without a raw copy; said, never silent.
            tracing::warn!(origin = %raw.origin, bytes = raw.payload.len(), "raw payload larger than the raw topic takes; not kept");
            pending.push(None);
            continue;
        }
        let key = match p {
            Prepared::Record { key, .. } => key.as_str(),
            Prepared::Rejected(_) => raw.origin.as_str(),
        };
        let format = match raw.format {
            duijie_connectors::PayloadFormat::Json => "json",
            duijie_connectors::PayloadFormat::Xml => "xml",
        };
        let headers = traced(
            PackedProvenance::raw(
                &provenance(ctx, raw.fetched_at_ms, &raw.origin, &raw.payload),
                format,
            )
            .headers(),
            traceparent,
        );
        let acks = Acks::new();
        producer
            .send(&acks, &topic, key, raw.payload.as_ref(), Some(headers))
            .await?;
        pending.push(Some(acks));
    }
    let mut places = Vec::with_capacity(pending.len());
    for acks in pending {
        let Some(acks) = acks else {
            places.push(None);
            continue;
        };
        acks.wait().await?;
        let (partition, offset) = acks.place().ok_or(IngestError::Dropped)?;
        places.push(Some(crate::bus::RawRef {
            topic: topic.clone(),
            partition,
            offset,
        }));
    }
    Ok(places)
}

/// Hands one prepared record to the producer, counted in `acks`: to the
/// topic, or to the dead-letter topic with the reason.
pub(super) async fn produce_prepared(
    ctx: &PipelineContext,
    producer: &BatchProducer,
    acks: &Acks,
    raw: &RawRecord,
    prepared: Prepared,
    raw_ref: Option<&crate::bus::RawRef>,
    traceparent: Option<&str>,
) -> Result<(Kind, Outcome), IngestError> {
    match prepared {
        Prepared::Record {
            key,
            body,
            provenance,
            lead,
        } => {
            debug!(record_id = %key, origin = %raw.origin, "record produced");
            let headers = traced(
                match raw_ref {
                    Some(r) => provenance.with_raw(r),
                    None => provenance,
                }
                .headers(),
                traceparent,
            );
            if let (Some((lead_key, lead_body)), Some(config)) = (lead, &ctx.config.lead) {
                // The lead carries the record's provenance and is counted
                // in the same acknowledgements: the cursor moves (or the
                // sender is answered) only once both are written.
                let lead_headers = headers.clone().insert(rdkafka::message::Header {
                    key: "content-type",
                    value: Some("application/json"),
                });
                producer
                    .send(
                        acks,
                        &config.topic,
                        &lead_key,
                        &lead_body,
                        Some(lead_headers),
                    )
                    .await?;
            }
            producer
                .send(acks, &ctx.config.topic, &key, &body, Some(headers))
                .await?;
            Ok((Kind::Record, Outcome::Mapped(key)))
        }
        Prepared::Rejected(reject) => {
            let provenance = provenance(ctx, raw.fetched_at_ms, &raw.origin, &raw.payload);
            let key = provenance.origin.clone();
            let reason = reject.to_string();
            debug!(origin = %raw.origin, %reason, "record dead-lettered");
            let letter = dead_letter(
                ctx,
                &raw.payload,
                false,
                reject.field.clone(),
                reject.rule,
                reason.clone(),
                provenance,
            );
            send_dead_letter(
                producer,
                acks,
                &ctx.config.dlq_topic,
                &key,
                &letter,
                traceparent,
            )
            .await?;
            Ok((Kind::DeadLetter, Outcome::DeadLettered(reason)))
        }
    }
}

/// Maps one raw record and hands it to the producer (a pushed record),
/// with its quality tally. The acknowledgements to wait for, and the
/// outcome.
pub(super) async fn produce_record(
    ctx: &PipelineContext,
    raw: &RawRecord,
    received: std::time::SystemTime,
) -> Result<(Acks, Outcome, Context), IngestError> {
    let producer = &ctx.producer;
    let fetch = fetch_span(ctx, SpanKind::Server, received, 1);
    let mut preparer = Preparer::new(ctx);
    let mapped = std::time::SystemTime::now();
    let prepared = prepare(ctx, raw, &mut preparer);
    map_span(ctx, &fetch, mapped, std::slice::from_ref(&prepared));
    let span = produce_span(ctx, &fetch);
    let traceparent = trace::traceparent(&span);
    let traceparent = traceparent.as_deref();
    let kept = keep_raw(ctx, producer, &[raw], &[&prepared], traceparent).await?;
    let acks = Acks::new();
    let (_, outcome) = produce_prepared(
        ctx,
        producer,
        &acks,
        raw,
        prepared,
        kept[0].as_ref(),
        traceparent,
    )
    .await?;
    send_tally(ctx, producer, &acks, &preparer.tally(ctx)).await?;
    Ok((acks, outcome, span))
}

/// Dead-letters one pushed message its source could not turn into a
/// record; the acknowledgement to wait for before answering the sender.
pub(super) async fn produce_reject(
    ctx: &PipelineContext,
    rej: &RawReject,
    received: std::time::SystemTime,
) -> Result<(Acks, Context), IngestError> {
    let fetch = fetch_span(ctx, SpanKind::Server, received, 1);
    let span = produce_span(ctx, &fetch);
    let acks = Acks::new();
    send_reject(
        ctx,
        &ctx.producer,
        &acks,
        rej,
        trace::traceparent(&span).as_deref(),
    )
    .await?;
    Ok((acks, span))
}

/// The span of one fetch (a poll that brought `records`, or one pushed
/// delivery), begun at `began` and ended now: the root of the trace its
/// records carry.
fn fetch_span(
    ctx: &PipelineContext,
    kind: SpanKind,
    began: std::time::SystemTime,
    records: usize,
) -> Context {
    let cx = trace::begin(
        "fetch",
        kind,
        &Context::new(),
        began,
        vec![
            KeyValue::new("duijie.pipeline", ctx.config.name.clone()),
            KeyValue::new("duijie.system", ctx.config.system.clone()),
            KeyValue::new("duijie.connector", ctx.config.source.kind()),
        ],
    );
    trace::end(
        &cx,
        vec![KeyValue::new("duijie.records", records as i64)],
        None,
    );
    cx
}

/// The span of mapping a fetch's records, begun at `began`, ended now.
fn map_span(
    ctx: &PipelineContext,
    fetch: &Context,
    began: std::time::SystemTime,
    prepared: &[Prepared],
) {
    let rejects = prepared
        .iter()
        .filter(|p| matches!(p, Prepared::Rejected(_)))
        .count();
    let cx = trace::begin(
        "map",
        SpanKind::Internal,
        fetch,
        began,
        vec![
            KeyValue::new("duijie.mapping", ctx.mapping.name.clone()),
            KeyValue::new("duijie.mapping.version", i64::from(ctx.mapping.version)),
        ],
    );
    trace::end(
        &cx,
        vec![
            KeyValue::new("duijie.records", (prepared.len() - rejects) as i64),
            KeyValue::new("duijie.rejects", rejects as i64),
        ],
        None,
    );
}

/// The span of producing a fetch's records to the topic, begun now; the
/// caller ends it once the broker acknowledged them ([`end_produce`]).
/// Its context is what each record's `traceparent` carries.
fn produce_span(ctx: &PipelineContext, fetch: &Context) -> Context {
    trace::begin(
        "produce",
        SpanKind::Producer,
        fetch,
        std::time::SystemTime::now(),
        vec![
            KeyValue::new("messaging.system", "kafka"),
            KeyValue::new("messaging.destination.name", ctx.config.topic.clone()),
        ],
    )
}

/// Ends a produce span with the broker's answer.
pub(super) fn end_produce<T, E: std::fmt::Display>(
    span: &Context,
    records: u64,
    acked: &Result<T, E>,
) {
    trace::end(
        span,
        vec![KeyValue::new(
            "messaging.batch.message_count",
            records as i64,
        )],
        acked.as_ref().err().map(ToString::to_string),
    );
}

/// Writes a connector's reject to the dead-letter topic, counted in `acks`.
async fn send_reject(
    ctx: &PipelineContext,
    producer: &BatchProducer,
    acks: &Acks,
    rej: &RawReject,
    traceparent: Option<&str>,
) -> Result<(), IngestError> {
    let provenance = provenance(ctx, rej.fetched_at_ms, &rej.origin, &rej.payload);
    let mut letter = dead_letter(
        ctx,
        &rej.payload,
        rej.truncated,
        None,
        "connector",
        rej.reason.clone(),
        provenance,
    );
    if let Some(whole) = rej.length {
        letter.raw_length = Some(whole);
    }
    send_dead_letter(
        producer,
        acks,
        &ctx.config.dlq_topic,
        &rej.origin,
        &letter,
        traceparent,
    )
    .await
}

/// Writes a tally to the quality topic, counted in `acks` (nothing when it
/// is empty).
pub(super) async fn send_tally(
    ctx: &PipelineContext,
    producer: &BatchProducer,
    acks: &Acks,
    tally: &crate::quality::Tally,
) -> Result<(), IngestError> {
    if tally.is_empty() {
        return Ok(());
    }
    let body = serde_json::to_vec(tally).expect("tallies serialize");
    let headers =
        rdkafka::message::OwnedHeaders::new_with_capacity(1).insert(rdkafka::message::Header {
            key: "content-type",
            value: Some("application/json"),
        });
    producer
        .send(
            acks,
            &ctx.quality_topic,
            &ctx.config.name,
            &body,
            Some(headers),
        )
        .await?;
    Ok(())
}

/// A batch handed to the producer: its acknowledgements, what it holds and
/// its cursor.
struct Produced {
    acks: Acks,
    records: u64,
    letters: u64,
    cursor: Cursor,
    /// The produce span, ended once the broker acknowledged the batch.
    span: Context,
}

/// Hands every record of a prepared batch to the producer, in order, then
/// its connector rejects and its quality tally, all counted in one group
/// of acknowledgements.
async fn produce_batch(
    ctx: &PipelineContext,
    producer: &BatchProducer,
    PreparedBatch {
        batch,
        prepared,
        tally,
        fetch,
    }: PreparedBatch,
) -> Result<Produced, IngestError> {
    let span = produce_span(ctx, &fetch);
    let traceparent = trace::traceparent(&span);
    let traceparent = traceparent.as_deref();
    let kept = keep_raw(
        ctx,
        producer,
        &batch.records.iter().collect::<Vec<_>>(),
        &prepared.iter().collect::<Vec<_>>(),
        traceparent,
    )
    .await?;
    let acks = Acks::new();
    let (mut records, mut letters) = (0u64, 0u64);
    for (i, ((raw, p), raw_ref)) in batch.records.iter().zip(prepared).zip(kept).enumerate() {
        if i % 256 == 255 {
            tokio::task::yield_now().await;
        }
        match produce_prepared(ctx, producer, &acks, raw, p, raw_ref.as_ref(), traceparent)
            .await?
            .0
        {
            Kind::Record => records += 1,
            Kind::DeadLetter => letters += 1,
        }
    }
    for rej in &batch.rejects {
        send_reject(ctx, producer, &acks, rej, traceparent).await?;
        letters += 1;
    }
    send_tally(ctx, producer, &acks, &tally).await?;
    Ok(Produced {
        acks,
        records,
        letters,
        cursor: batch.cursor,
        span,
    })
}

/// A dead letter for `payload`, cut to fit the dead-letter topic: it keeps
/// the payload's head, its full length and (in the provenance) the SHA-256
/// of the whole payload, so that a record too large for the broker still
/// lands, and the pipeline moves on.
fn dead_letter(
    ctx: &PipelineContext,
    payload: &[u8],
    truncated: bool,
    field: Option<String>,
    rule: &str,
    reason: String,
    provenance: Provenance,
) -> DeadLetter {
    DeadLetter::bounded(
        payload,
        truncated,
        field,
        rule,
        reason,
        provenance,
        ctx.max_message_bytes
            .saturating_sub(crate::bus::RECORD_HEADROOM),
    )
}

async fn send_dead_letter(
    producer: &BatchProducer,
    acks: &Acks,
    topic: &str,
    key: &str,
    letter: &DeadLetter,
    traceparent: Option<&str>,
) -> Result<(), IngestError> {
    let body = serde_json::to_vec(letter).expect("dead letters serialize");
    let h = traced(
        headers(&letter.provenance, "duijie.DeadLetter", "application/json"),
        traceparent,
    );
    producer.send(acks, topic, key, &body, Some(h)).await?;
    Ok(())
}

/// Writes the pipeline's cursor (after what it covers was acknowledged,
/// or in the same transaction), counted in `acks`.
pub(super) async fn send_cursor(
    ctx: &PipelineContext,
    producer: &BatchProducer,
    acks: &Acks,
    key: &str,
    cursor: &Cursor,
    total: u64,
) -> Result<(), IngestError> {
    let stored = StoredCursor {
        cursor: cursor.clone(),
        records: total,
        committed_at_ms: chrono::Utc::now().timestamp_millis(),
    };
    let body = ctx.cursors.encode(&stored);
    producer
        .send(acks, &ctx.cursors.topic, key, &body, None)
        .await?;
    Ok(())
}

/// A fetched batch being prepared, holding its place among the batches in
/// flight.
struct Staged {
    records: usize,
    fetched: std::time::Instant,
    permit: tokio::sync::OwnedSemaphorePermit,
    preparing: tokio::task::JoinHandle<PreparedBatch>,
}

/// Hands a staged batch to the producer and its deliveries to the
/// acknowledger. False when the acknowledger has stopped (on an error it
/// reports itself).
async fn hand_over(
    ctx: &PipelineContext,
    staged: Staged,
    inflight_tx: &mpsc::UnboundedSender<InFlight>,
) -> Result<bool, IngestError> {
    let prepared = staged
        .preparing
        .await
        .expect("the preparing task does not panic");
    let produced = produce_batch(ctx, &ctx.producer, prepared)
        .instrument(info_span!("batch", records = staged.records))
        .await?;
    Ok(inflight_tx
        .send(InFlight {
            fetched: staged.fetched,
            produced,
            _permit: staged.permit,
        })
        .is_ok())
}

/// Long because the at-least-once loop (fetch, map, produce, acknowledge,
/// then commit the cursor) kept whole, so that the order that makes a crash
/// lose and duplicate nothing reads top to bottom.
async fn run_at_least_once(ctx: &PipelineContext) -> Result<(), IngestError> {
    let (mut source, mut total) = open_source(ctx, false).await?;
    // At most `max_in_flight_batches` batches are produced and not yet
    // covered by a committed cursor: that bounds what a crash re-reads.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(
        ctx.config.max_in_flight_batches,
    ));
    let (inflight_tx, mut inflight_rx) = mpsc::unbounded_channel::<InFlight>();
    let (durable_tx, mut durable_rx) = mpsc::unbounded_channel::<Result<Cursor, IngestError>>();

    // Acknowledger: batches in order; cursor after every record is acked.
    let ack_ctx = ctx.clone();
    let acker = tokio::spawn(async move {
        while let Some(batch) = inflight_rx.recv().await {
            let Produced {
                acks,
                records,
                letters,
                cursor,
                span: produce,
            } = batch.produced;
            let span = info_span!("batch_ack", records = records + letters);
            let result = async {
                let acked = acks.wait().await;
                end_produce(&produce, records + letters, &acked);
                acked?;
                total += records + letters;
                let cursor_acks = Acks::new();
                send_cursor(
                    &ack_ctx,
                    &ack_ctx.producer,
                    &cursor_acks,
                    &ack_ctx.config.name,
                    &cursor,
                    total,
                )
                .await?;
                cursor_acks.wait().await?;
                PipelineStats::add(&ack_ctx.stats.delivered, records);
                PipelineStats::add(&ack_ctx.stats.dead_lettered, letters);
                ack_ctx
                    .stats
                    .batch_latency
                    .observe_ms(batch.fetched.elapsed().as_millis() as i64);
                if let Some(w) = cursor.0.get("watermark").and_then(|w| w.as_str()) {
                    ack_ctx.stats.set_watermark(w);
                }
                ack_ctx
                    .stats
                    .last_commit_ms
                    .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
                debug!(
                    records,
                    dead_letters = letters,
                    "batch durable, cursor committed"
                );
                Ok::<_, IngestError>(cursor)
            }
            .instrument(span)
            .await;
            let failed = result.is_err();
            if durable_tx.send(result).is_err() || failed {
                return;
            }
        }
    });

    let outcome: Result<(), IngestError> = async {
        let mut staged: Option<Staged> = None;
        'polls: loop {
            loop {
                // Tell the source what became durable.
                while let Ok(done) = durable_rx.try_recv() {
                    source.committed(&done?).await?;
                }
                if ctx.shutdown.is_cancelled() {
                    break 'polls;
                }
                let polled = std::time::SystemTime::now();
                let Some(batch) = fetch(ctx, source.as_mut()).await? else {
                    // Caught up: what is staged goes out before the wait.
                    if let Some(last) = staged.take()
                        && !hand_over(ctx, last, &inflight_tx).await?
                    {
                        break 'polls; // the acknowledger stopped on an error
                    }
                    if ctx.backfill.is_some() {
                        info!("backfill caught up with the source");
                        break 'polls;
                    }
                    break;
                };
                let fetched = std::time::Instant::now();
                PipelineStats::add(&ctx.stats.fetched, batch.len() as u64);
                PipelineStats::add(&ctx.stats.batches, 1);
                let past_end = ctx
                    .backfill
                    .as_ref()
                    .and_then(|b| b.to.as_deref())
                    .is_some_and(|to| {
                        source
                            .watermark_of(&batch.cursor)
                            .is_some_and(|w| w.as_str() > to)
                    });
                if let Some(rate) = ctx.backfill.as_ref().and_then(|b| b.rate) {
                    pace(ctx, rate).await;
                }
                // Backpressure: waits while too many batches are unacknowledged.
                let permit = match in_flight.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => {
                        // The staged batch holds a permit too: it goes out
                        // first, or nothing would ever be acknowledged.
                        if let Some(previous) = staged.take()
                            && !hand_over(ctx, previous, &inflight_tx).await?
                        {
                            break 'polls;
                        }
                        tokio::select! {
                            p = in_flight.clone().acquire_owned() => p.expect("semaphore is never closed"),
                            done = durable_rx.recv() => {
                                // The acknowledger reported; handle it and wait again.
                                if let Some(done) = done {
                                    source.committed(&done?).await?;
                                }
                                in_flight.clone().acquire_owned().await.expect("semaphore is never closed")
                            }
                        }
                    }
                };
                // This batch is prepared on the mapping threads while the
                // one before it is handed to the producer.
                let span = fetch_span(ctx, SpanKind::Client, polled, batch.len());
                let next = Staged {
                    records: batch.len(),
                    fetched,
                    permit,
                    preparing: tokio::spawn(prepare_batch(ctx.clone(), batch, span)),
                };
                if let Some(previous) = staged.replace(next)
                    && !hand_over(ctx, previous, &inflight_tx).await?
                {
                    break 'polls;
                }
                if past_end {
                    if let Some(last) = staged.take() {
                        hand_over(ctx, last, &inflight_tx).await?;
                    }
                    info!("backfill reached its end");
                    break 'polls;
                }
            }
            // Caught up: wait for the next poll, handling durability meanwhile.
            loop {
                tokio::select! {
                    done = durable_rx.recv() => match done {
                        Some(done) => source.committed(&done?).await?,
                        None => break 'polls,
                    },
                    tick = wait_for_tick(ctx) => {
                        if !tick { break 'polls; }
                        break;
                    }
                }
            }
        }
        // Shutting down: what is prepared goes out too.
        if let Some(last) = staged.take() {
            hand_over(ctx, last, &inflight_tx).await?;
        }
        Ok(())
    }
    .await;

    // Finish what is in flight (on shutdown, or to surface an ack error).
    drop(inflight_tx);
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(done) = durable_rx.recv().await {
            source.committed(&done?).await?;
        }
        Ok::<_, IngestError>(())
    })
    .await;
    let _ = acker.await;
    outcome?;
    match drained {
        Ok(r) => r,
        Err(_) => {
            warn!("in-flight batches were not acknowledged within 60 s; they will be read again");
            Ok(())
        }
    }
}

async fn run_transactional(ctx: &PipelineContext) -> Result<(), IngestError> {
    let txn_id = format!("duijie-{}-{}", ctx.bus.client_id, ctx.config.name);
    // Creating the producer fences any older instance and aborts its open
    // transaction, so the cursor read next is settled.
    let bus = ctx.bus.clone();
    let began = std::time::Instant::now();
    let producer = tokio::task::spawn_blocking(move || BatchProducer::transactional(&bus, &txn_id))
        .await
        .map_err(|e| IngestError::Task(e.to_string()))??;
    let fenced = began.elapsed();
    let (mut source, mut total) = open_source(ctx, true).await?;
    info!(
        producer_ms = fenced.as_millis() as u64,
        cursor_ms = (began.elapsed() - fenced).as_millis() as u64,
        "transactional pipeline ready (earlier owner fenced, cursor read)"
    );
    loop {
        loop {
            if ctx.shutdown.is_cancelled() {
                return Ok(());
            }
            let polled = std::time::SystemTime::now();
            let Some(batch) = fetch(ctx, source.as_mut()).await? else {
                break;
            };
            let span = fetch_span(ctx, SpanKind::Client, polled, batch.len());
            let fetched = std::time::Instant::now();
            PipelineStats::add(&ctx.stats.fetched, batch.len() as u64);
            PipelineStats::add(&ctx.stats.batches, 1);
            producer
                .begin_transaction()
                .map_err(IngestError::Transaction)?;
            let committed = async {
                let prepared = prepare_batch(ctx.clone(), batch, span).await;
                let Produced {
                    acks,
                    records,
                    letters,
                    cursor,
                    span: produce,
                } = produce_batch(ctx, &producer, prepared).await?;
                send_cursor(
                    ctx,
                    &producer,
                    &acks,
                    &ctx.config.name,
                    &cursor,
                    total + records + letters,
                )
                .await?;
                let p = producer.clone();
                let done = tokio::task::spawn_blocking(move || {
                    p.commit_transaction(Duration::from_secs(60))
                })
                .await
                .map_err(|e| IngestError::Task(e.to_string()))?
                .map_err(IngestError::Transaction);
                let acked = match done {
                    Ok(()) => acks.wait().await.map_err(IngestError::from),
                    Err(e) => Err(e),
                };
                end_produce(&produce, records + letters, &acked);
                acked?;
                Ok::<_, IngestError>((records, letters, cursor))
            }
            .await;
            match committed {
                Ok((records, letters, cursor)) => {
                    total += records + letters;
                    PipelineStats::add(&ctx.stats.delivered, records);
                    PipelineStats::add(&ctx.stats.dead_lettered, letters);
                    ctx.stats
                        .batch_latency
                        .observe_ms(fetched.elapsed().as_millis() as i64);
                    ctx.stats
                        .last_commit_ms
                        .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
                    source.committed(&cursor).await?;
                }
                Err(e) => {
                    let p = producer.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        p.abort_transaction(Duration::from_secs(30))
                    })
                    .await;
                    return Err(e);
                }
            }
        }
        if !wait_for_tick(ctx).await {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    /// `0 0 2 * * *` is 02:00 in Yichang (18:00 UTC the day before), as
    /// bureau staff read a schedule.
    #[test]
    fn a_schedule_is_local_time() {
        let schedule = cron::Schedule::from_str("0 0 2 * * *").unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            super::next_poll(&schedule, now).unwrap().to_rfc3339(),
            "2026-12-01T18:00:00+00:00"
        );
    }

    /// A pipeline scheduled at 02:00 waits, on its clock, until 02:00 in
    /// Yichang and then polls; a shutdown ends the wait at once. Time is
    /// tokio's paused clock: the six hours pass in no time.
    #[tokio::test(start_paused = true)]
    async fn a_pipeline_polls_when_its_schedule_says_and_not_before() {
        let started = tokio::time::Instant::now();
        let noon = chrono::DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let clock = crate::calendar::Clock::from_fn(move || {
            noon + chrono::Duration::from_std(started.elapsed()).unwrap()
        });
        let schedule = cron::Schedule::from_str("0 0 2 * * *").unwrap();
        let running = tokio_util::sync::CancellationToken::new();
        assert!(super::wait_for_poll(Some(&schedule), &clock, &running).await);
        assert_eq!(clock.now().to_rfc3339(), "2026-12-01T18:00:00+00:00");

        let stopped = tokio_util::sync::CancellationToken::new();
        stopped.cancel();
        assert!(!super::wait_for_poll(Some(&schedule), &clock, &stopped).await);
        assert_eq!(
            clock.now().to_rfc3339(),
            "2026-12-01T18:00:00+00:00",
            "a shutdown waited for the schedule"
        );
    }
}
