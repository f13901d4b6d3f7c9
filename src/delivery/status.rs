//! What a department may see of its own feeds:
//! `GET /feeds/{department}/status` with `Authorization: Bearer <token>`
//! (the scheme's case does not matter) — each of its feeds whose token it
//! holds (a pull feed's own token, a delivery's `status_token`): its
//! state (`running`, `waiting` for the receiver since a time, `stopped`
//! with why), what this hub process delivered, refused and dead-lettered
//! since it started, the backlog on the topic, and the latest dead letters
//! (idempotency key, reason, time, origin; never the payload).
//!
//! A wrong token and an unknown department get the same 401, after the
//! same work: the API does not tell who has a feed.

use super::{DeliveryConfig, DeliveryStats, TargetConfig};
use crate::bus::{Bus, ReaderContext};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Dead letters shown per feed, at most (the latest).
pub const LATEST_DEAD_LETTERS: i64 = 20;

/// The counters of the running deliveries and pull feeds, by delivery
/// (the runtime's map: a reload puts a swapped pipeline's new counters in).
pub type Counters = Arc<Mutex<BTreeMap<String, Arc<DeliveryStats>>>>;

#[derive(Debug, Clone)]
struct Feed {
    delivery: String,
    kind: &'static str,
    token: String,
    dlq_topic: String,
}

/// The status endpoint's state.
#[derive(Debug, Clone)]
pub struct DepartmentStatus {
    departments: BTreeMap<String, Vec<Feed>>,
    counters: Counters,
    bus: Bus,
    started: chrono::DateTime<chrono::Utc>,
}

/// One feed's status, as the department reads it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct FeedStatus {
    pub delivery: String,
    pub kind: String,
    /// `running`, `waiting` (the receiver fails and the feed waits for it,
    /// holding its records in order) or `stopped` (a permanent failure;
    /// the bureau corrects it).
    pub state: String,
    pub waiting_since: Option<String>,
    pub stopped_reason: Option<String>,
    /// Counted by this hub process since `counted_since`; the receipts
    /// topic (`duijie deliveries status`) is the record of everything.
    pub delivered: u64,
    pub refused: u64,
    pub failed: u64,
    /// Records on the topic this feed has not settled yet (deliveries).
    pub backlog: Option<i64>,
    pub dead_letters: DeadLetters,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Default)]
pub struct DeadLetters {
    /// On the feed's dead-letter topic, all time.
    pub total: i64,
    /// The latest, newest last.
    pub latest: Vec<DeadLetterSummary>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct DeadLetterSummary {
    pub idempotency_key: String,
    pub reason: String,
    /// When it was dead-lettered (RFC 3339, Beijing time).
    pub at: Option<String>,
    /// The record it came from: `topic[partition]@offset`, what `duijie
    /// replay --from` takes.
    pub origin: String,
}

impl DepartmentStatus {
    /// The feeds of a deployment that have a token: pull feeds their own,
    /// deliveries their `status_token`.
    pub fn new(
        deliveries: &[(String, DeliveryConfig)],
        counters: Counters,
        bus: Bus,
        started: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        let mut departments: BTreeMap<String, Vec<Feed>> = BTreeMap::new();
        for (name, c) in deliveries {
            let token = match (&c.target, &c.status_token) {
                (TargetConfig::Pull { token }, _) => token.clone(),
                (_, Some(token)) => token.clone(),
                (_, None) => continue,
            };
            departments
                .entry(c.department.clone().unwrap_or_else(|| name.clone()))
                .or_default()
                .push(Feed {
                    delivery: name.clone(),
                    kind: super::ops::target_kind(c),
                    token,
                    dlq_topic: c.dlq_topic(name),
                });
        }
        Self {
            departments,
            counters,
            bus,
            started,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.departments.is_empty()
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/feeds/{department}/status", axum::routing::get(status))
            .with_state(Arc::new(self))
    }

    fn report(&self, feed: &Feed) -> Result<FeedStatus, crate::bus::BusError> {
        let stats = self
            .counters
            .lock()
            .expect("counters lock")
            .get(&feed.delivery)
            .cloned()
            .unwrap_or_default();
        use std::sync::atomic::Ordering::Relaxed;
        let waiting = stats.waiting_since_ms.load(Relaxed);
        let stopped = stats.stopped.lock().expect("stopped lock").clone();
        let state = match (&stopped, waiting) {
            (Some(_), _) => "stopped",
            (None, 0) => "running",
            (None, _) => "waiting",
        };
        let backlog = stats.backlog.load(Relaxed);
        Ok(FeedStatus {
            delivery: feed.delivery.clone(),
            kind: feed.kind.to_owned(),
            state: state.to_owned(),
            waiting_since: (waiting > 0)
                .then(|| chrono::DateTime::from_timestamp_millis(waiting))
                .flatten()
                .map(crate::calendar::local_rfc3339),
            stopped_reason: stopped.map(|s| crate::secrets::redact(&s)),
            delivered: stats.delivered.load(Relaxed),
            refused: stats.rejected.load(Relaxed),
            failed: stats.failed.load(Relaxed),
            backlog: (backlog >= 0).then_some(backlog),
            dead_letters: self.dead_letters(&feed.dlq_topic)?,
        })
    }

    /// The latest dead letters of a topic, and how many it holds.
    fn dead_letters(&self, topic: &str) -> Result<DeadLetters, crate::bus::BusError> {
        use crate::bus::read::{Start, partitions, read_to_end};
        let consumer: BaseConsumer<ReaderContext> = self
            .bus
            .reader("feed-status", crate::bus::Isolation::Committed)?;
        let within = Duration::from_secs(10);
        let parts = match partitions(&consumer, topic, within) {
            Ok(p) => p,
            // No dead letter yet: the topic may not exist.
            Err(_) => return Ok(DeadLetters::default()),
        };
        let mut out = DeadLetters::default();
        let mut starts = Vec::new();
        for p in parts {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, within)
                .map_err(crate::bus::BusError::Unreachable)?;
            out.total += high - low;
            starts.push((p, Start::At((high - LATEST_DEAD_LETTERS).max(low))));
        }
        let mut found: Vec<(i64, DeadLetterSummary)> = Vec::new();
        read_to_end(&consumer, topic, &starts, within, |m| {
            let letter: serde_json::Value = m
                .payload()
                .and_then(|p| serde_json::from_slice(p).ok())
                .unwrap_or_default();
            let text = |k: &str| letter[k].as_str().unwrap_or_default().to_owned();
            let ms = m.timestamp().to_millis().unwrap_or(0);
            found.push((
                ms,
                DeadLetterSummary {
                    idempotency_key: text("idempotency_key"),
                    reason: crate::personal::scrub_text(
                        &text("reason"),
                        &crate::ident::MaskPolicy::birth_date(),
                    ),
                    at: chrono::DateTime::from_timestamp_millis(ms)
                        .map(crate::calendar::local_rfc3339),
                    origin: letter["provenance"]["origin"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                },
            ));
            Ok(())
        })?;
        found.sort_by_key(|(ms, _)| *ms);
        let skip = found.len().saturating_sub(LATEST_DEAD_LETTERS as usize);
        out.latest = found.into_iter().skip(skip).map(|(_, d)| d).collect();
        Ok(out)
    }
}

/// The bearer token of an `Authorization` header, the scheme's case aside.
pub fn bearer(headers: &HeaderMap) -> &str {
    headers
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .unwrap_or_default()
}

/// Compared against when the department has no feed, so that an unknown
/// department costs the same as a wrong token.
const NO_FEED: &str = "\0no such feed";

async fn status(
    State(state): State<Arc<DepartmentStatus>>,
    Path(department): Path<String>,
    headers: HeaderMap,
) -> Response {
    let given = bearer(&headers);
    let feeds: Vec<Feed> = match state.departments.get(&department) {
        Some(feeds) => feeds
            .iter()
            .filter(|f| crate::secrets::same_secret(given, &f.token))
            .cloned()
            .collect(),
        None => {
            let _ = crate::secrets::same_secret(given, NO_FEED);
            Vec::new()
        }
    };
    if feeds.is_empty() {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "需要有效的令牌 (Bearer token)"})),
        )
            .into_response();
    }
    let started = state.started;
    let answer = tokio::task::spawn_blocking(move || {
        feeds
            .iter()
            .map(|f| state.report(f))
            .collect::<Result<Vec<_>, _>>()
    })
    .await;
    match answer {
        Ok(Ok(feeds)) => axum::Json(json!({
            "department": department,
            "counted_since": crate::calendar::local_rfc3339(started),
            "feeds": feeds,
        }))
        .into_response(),
        Ok(Err(e)) => {
            tracing::warn!(%department, error = %e, "feed status: the bus could not be read");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::RETRY_AFTER, "5")],
                axum::Json(json!({"message": "暂时无法读取，请稍后重试"})),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(%department, error = %e, "feed status failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"message": "读取失败，请稍后重试"})),
            )
                .into_response()
        }
    }
}
