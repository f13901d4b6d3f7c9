//! `duijie remap`: maps a pipeline's raw records of a period again, with the
//! current mapping and code tables, and republishes the canonical records
//! under the same keys (compacted topics then hold the new state), with the
//! new mapping version in their provenance and a pointer to their raw
//! record. What now fails goes to the dead-letter topic. Its progress is a
//! cursor (`PIPELINE#remap:FROM..TO`, the next raw offset per partition),
//! written after the broker acknowledged everything before it: interrupted,
//! the same command resumes.

use super::Hub;
use super::pipeline::{self, PipelineContext, Preparer};
use crate::bus::RawRef;
use crate::bus::inspect::{ReadRecord, Span, SpanItem, stream_span};
use crate::error::{Domain, Error, Result};
use chrono::{DateTime, Utc};
use duijie_connectors::{Cursor, PayloadFormat, RawRecord};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use tokio_util::sync::CancellationToken;

/// Records between two progress cursors.
const CHUNK: usize = 500;

/// A raw record as the pipeline fetched it, from its raw topic.
pub fn raw_of(r: &ReadRecord, timestamp_ms: i64) -> Option<RawRecord> {
    let payload = r.payload.clone()?;
    let format = match r.headers.get("duijie-payload-format").map(String::as_str) {
        Some("xml") => PayloadFormat::Xml,
        _ => PayloadFormat::Json,
    };
    let p = crate::bus::Provenance::from_headers(&r.headers);
    Some(RawRecord {
        payload: payload.into(),
        format,
        fetched_at_ms: if p.fetched_at_ms == 0 {
            timestamp_ms
        } else {
            p.fetched_at_ms
        },
        origin: p.origin,
    })
}

/// What a remap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub key: String,
    pub read: u64,
    pub republished: u64,
    pub dead_lettered: u64,
    pub finished: bool,
}

/// Long because the remap loop (audit first, read the period's raw records,
/// map, republish under the same keys, keep the progress to resume), whose
/// steps share one transactional producer.
pub async fn run(
    hub: &Hub,
    pipeline: &str,
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
    shutdown: CancellationToken,
    show_progress: bool,
) -> Result<Summary> {
    let Some(config) = hub.deployment.pipeline(pipeline) else {
        return Err(Error::permanent(
            Domain::Config,
            format!(
                "no pipeline `{pipeline}` in {}",
                hub.deployment.file.display()
            ),
        ));
    };
    let Some(raw_topic) = config.raw_topic() else {
        return Err(Error::permanent(
            Domain::Config,
            format!(
                "`{pipeline}` keeps no raw records: add `raw = {{ retention = \"30d\" }}` to [pipelines.{pipeline}]; only what is fetched after that can be remapped"
            ),
        ));
    };
    if let Some(to) = to
        && to <= from
    {
        return Err(Error::permanent(Domain::Config, "--to is not after --from"));
    }
    let text = |t: DateTime<Utc>| crate::calendar::local_rfc3339(t);
    let key = format!(
        "{pipeline}#remap:{}..{}",
        text(from),
        to.map(text).unwrap_or_default()
    );
    let mut config = config.clone();
    // The records go where the pipeline's go; no second raw copy.
    config.raw = None;
    // Topics first: the cursor topic may not exist yet.
    let mut ctx: PipelineContext = hub.one_off_context(&config, &shutdown).await?;
    ctx.stats = hub.stats.pipeline(&key);
    let cursors = ctx.cursors.clone();
    let resume: BTreeMap<i32, i64> = match cursors.load(&hub.bus, &key, true).await? {
        Some(stored) => stored.cursor.decode().unwrap_or_default(),
        None => BTreeMap::new(),
    };
    let mut rx = stream_span(
        &hub.bus,
        &raw_topic,
        Span {
            from_ms: Some(from.timestamp_millis()),
            to_ms: to.map(|t| t.timestamp_millis()),
            resume: resume.clone(),
            ..Span::default()
        },
    );
    let total = match rx.recv().await {
        Some(Ok(SpanItem::Bounds(b))) => b.len(),
        Some(Err(e)) => return Err(e.into()),
        _ => {
            return Err(Error::permanent(
                Domain::Bus,
                format!("the raw topic `{raw_topic}` could not be read"),
            ));
        }
    };
    let bar = if show_progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix} [{bar:30}] {pos}/{len} raw records · {msg} · ETA {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(pipeline.to_owned());
    let mut summary = Summary {
        key: key.clone(),
        read: 0,
        republished: 0,
        dead_lettered: 0,
        finished: false,
    };
    let mut next = resume;
    let mut preparer = Preparer::new(&ctx);
    // The chunk's acknowledgements and what it holds.
    let mut acks = crate::bus::Acks::new();
    let (mut in_chunk, mut republished, mut dead_lettered) = (0usize, 0u64, 0u64);
    let mut done = false;
    while !done {
        // One chunk: produced, acknowledged, then its cursor.
        while in_chunk < CHUNK {
            let item = tokio::select! {
                _ = shutdown.cancelled() => None,
                i = rx.recv() => i,
            };
            match item {
                None => {
                    done = true;
                    break;
                }
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(SpanItem::Bounds(_))) => {}
                Some(Ok(SpanItem::Record(r, ts))) => {
                    summary.read += 1;
                    next.insert(r.partition, r.offset + 1);
                    let Some(raw) = raw_of(&r, ts) else {
                        tracing::warn!(
                            partition = r.partition,
                            offset = r.offset,
                            "a raw record without payload; left out"
                        );
                        continue;
                    };
                    let place = RawRef {
                        topic: raw_topic.clone(),
                        partition: r.partition,
                        offset: r.offset,
                    };
                    let prepared = pipeline::prepare(&ctx, &raw, &mut preparer);
                    // The republished record continues the raw record's
                    // trace: the fetch it came from.
                    let (kind, _) = pipeline::produce_prepared(
                        &ctx,
                        &ctx.producer,
                        &acks,
                        &raw,
                        prepared,
                        Some(&place),
                        r.headers
                            .get(crate::telemetry::trace::HEADER)
                            .map(String::as_str),
                    )
                    .await?;
                    in_chunk += 1;
                    match kind {
                        pipeline::Kind::Record => republished += 1,
                        pipeline::Kind::DeadLetter => dead_lettered += 1,
                    }
                }
            }
        }
        // What the chunk mapped counts in the quality figures, as it
        // counted when first mapped.
        let tally = preparer.tally(&ctx);
        pipeline::send_tally(&ctx, &ctx.producer, &acks, &tally).await?;
        std::mem::take(&mut acks).wait().await?;
        summary.republished += std::mem::take(&mut republished);
        summary.dead_lettered += std::mem::take(&mut dead_lettered);
        in_chunk = 0;
        // Then the cursor, once what it covers is acknowledged.
        let cursor_acks = crate::bus::Acks::new();
        pipeline::send_cursor(
            &ctx,
            &ctx.producer,
            &cursor_acks,
            &key,
            &Cursor::new(serde_json::to_value(&next).expect("offsets serialize")),
            summary.read,
        )
        .await?;
        cursor_acks
            .wait()
            .await
            .map_err(|e| Error::transient(Domain::Bus, format!("writing the remap cursor: {e}")))?;
        bar.set_position(summary.read);
        bar.set_message(format!(
            "{} republished, {} dead-lettered",
            summary.republished, summary.dead_lettered
        ));
        if shutdown.is_cancelled() {
            break;
        }
    }
    summary.finished = !shutdown.is_cancelled();
    if summary.finished {
        bar.finish_with_message(format!(
            "{} republished, {} dead-lettered",
            summary.republished, summary.dead_lettered
        ));
    } else {
        bar.abandon_with_message("interrupted; the same command resumes it");
    }
    Ok(summary)
}
