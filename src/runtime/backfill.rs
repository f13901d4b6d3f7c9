//! `duijie backfill`: re-reads a pipeline's source history, from a time
//! to a time, at a bounded rate, through the pipeline's own mapping, topic
//! and dead-letter topic. Its cursor is stored under its own name
//! (`PIPELINE#backfill:FROM..TO`), so an interrupted backfill resumes
//! where it stopped when the same command runs again. Records keep their
//! stable keys: compacted topics keep one record per key, and push
//! receivers absorb a record they already have by its idempotency key.

use super::Hub;
use super::pipeline::{self, Backfill, PipelineContext};
use super::stats::PipelineStats;
use crate::error::{Domain, Error, Result};
use chrono::NaiveDateTime;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `2026-01-01`, `2026-01-01 08:00` or `2026-01-01 08:00:00` → the
/// watermark text the sources compare (`2026-01-01 08:00:00`).
pub fn watermark(text: &str) -> Result<NaiveDateTime> {
    let t = text.trim();
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
            return Ok(d);
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).expect("midnight exists"));
    }
    Err(Error::permanent(
        Domain::Config,
        format!(
            "`{text}` is not a date: write 2026-01-01 or \"2026-01-01 08:00\" (source local time)"
        ),
    ))
}

/// What a backfill did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub key: String,
    pub fetched: u64,
    pub delivered: u64,
    pub dead_lettered: u64,
    pub finished: bool,
    pub watermark: Option<String>,
}

/// Runs a backfill of `pipeline` until it reaches `to` (or catches up with
/// the source), or until `shutdown`; shows a progress bar on a terminal.
///
/// Long because the backfill loop with its audit, its progress bar and its
/// resumable cursor, which share the source.
pub async fn run(
    hub: &Hub,
    pipeline: &str,
    from: NaiveDateTime,
    to: Option<NaiveDateTime>,
    rate: Option<f64>,
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
    if config.source.is_push() {
        return Err(Error::permanent(
            Domain::Config,
            format!(
                "`{pipeline}` is pushed to (a `{}` source); it has no history to re-read",
                config.source.kind()
            ),
        ));
    }
    if let (Some(to), true) = (to, to.is_some_and(|t| t <= from)) {
        return Err(Error::permanent(
            Domain::Config,
            format!("--to {to} is not after --from {from}"),
        ));
    }
    let text = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
    let key = format!(
        "{pipeline}#backfill:{}..{}",
        text(from),
        to.map(text).unwrap_or_default()
    );
    let mut config = config.clone();
    config.name = key.clone();
    // A backfill is at-least-once whatever the pipeline: keys are stable.
    config.exactly_once = false;
    // Stats and cursor under the backfill's own name (`config.name`).
    let mut ctx: PipelineContext = hub.one_off_context(&config, &shutdown).await?;
    ctx.backfill = Some(Backfill {
        from: text(from),
        to: to.map(text),
        rate,
    });
    let stats = ctx.stats.clone();
    let task = tokio::spawn(pipeline::run(ctx));

    let end = to.unwrap_or_else(|| {
        chrono::Utc::now()
            .with_timezone(&chrono_tz::Asia::Shanghai)
            .naive_local()
    });
    let span = (end - from).num_seconds().max(1) as u64;
    let bar = if show_progress {
        ProgressBar::new(span)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix} [{bar:30}] {percent:>3}% of the time range · {msg} · ETA {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(pipeline.to_owned());
    let started = std::time::Instant::now();
    while !task.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let done = PipelineStats::get(&stats.delivered) + PipelineStats::get(&stats.dead_lettered);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        if let Some(w) = stats.watermark().and_then(|w| watermark(&w).ok()) {
            bar.set_position(((w - from).num_seconds().max(0) as u64).min(span));
        }
        bar.set_message(format!(
            "{done} records ({:.0}/s), at {}",
            done as f64 / secs,
            stats.watermark().unwrap_or_else(|| "the start".into())
        ));
    }
    let _ = task.await;
    if let Some(e) = stats.last_error() {
        bar.abandon_with_message("failed");
        return Err(Error::permanent(
            Domain::Source,
            format!("backfill of `{pipeline}` failed: {e}"),
        ));
    }
    let summary = Summary {
        key,
        fetched: PipelineStats::get(&stats.fetched),
        delivered: PipelineStats::get(&stats.delivered),
        dead_lettered: PipelineStats::get(&stats.dead_lettered),
        finished: !shutdown.is_cancelled(),
        watermark: stats.watermark(),
    };
    if summary.finished {
        bar.finish_with_message(format!(
            "{} records",
            summary.delivered + summary.dead_lettered
        ));
    } else {
        bar.abandon_with_message("interrupted; the same command resumes it");
    }
    Ok(summary)
}
