//! The pull API for departments that cannot receive pushes:
//! `GET /feeds/{department}?after=CURSOR&limit=N` with
//! `Authorization: Bearer <token>`.
//!
//! The answer holds the department's records after the cursor — selected
//! and limited to its fields as a push would be — each with its idempotency
//! key, and the cursor to ask with next. A cursor is the next offset of
//! each partition; without one, the feed starts at the beginning.

use super::{Delivery, Incoming};
use crate::bus::ReaderContext;
use crate::bus::read::{Ended, Start};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

/// Pull feeds by department.
#[derive(Debug, Clone, Default)]
pub struct PullFeeds {
    feeds: BTreeMap<String, (Arc<Delivery>, String)>,
}

impl PullFeeds {
    pub fn add(&mut self, delivery: Delivery, token: String) {
        self.feeds
            .insert(delivery.department.clone(), (Arc::new(delivery), token));
    }

    pub fn is_empty(&self) -> bool {
        self.feeds.is_empty()
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/feeds/{department}", axum::routing::get(pull))
            .with_state(Arc::new(self))
    }
}

/// Compared against when the department has no feed, so that an unknown
/// department costs the same time as a wrong token (it matches nothing:
/// tokens are never empty and this one holds a NUL).
const UNKNOWN_FEED: &str = "\0no such feed";

#[derive(Debug, Deserialize)]
struct PullQuery {
    after: Option<String>,
    limit: Option<usize>,
}

fn encode_cursor(next: &BTreeMap<i32, i64>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(next).expect("cursor serializes"))
}

fn decode_cursor(s: &str) -> Result<BTreeMap<i32, i64>, String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| "cursor is not one this feed gave out".to_owned())?;
    serde_json::from_slice(&bytes).map_err(|_| "cursor is not one this feed gave out".to_owned())
}

async fn pull(
    State(feeds): State<Arc<PullFeeds>>,
    Path(department): Path<String>,
    headers: HeaderMap,
    Query(q): Query<PullQuery>,
) -> Response {
    // The token is checked before anything else, and a wrong token and an
    // unknown department get the same answer: the API does not tell who
    // has a feed.
    let given = super::status::bearer(&headers);
    let feed = feeds.feeds.get(&department);
    let expected = feed.map(|(_, t)| t.as_str()).unwrap_or(UNKNOWN_FEED);
    let token_ok = crate::secrets::same_secret(given, expected);
    let Some((delivery, _)) = feed.filter(|_| token_ok).cloned() else {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "需要有效的令牌 (Bearer token)"})),
        )
            .into_response();
    };
    let after = match q.after.as_deref().map(decode_cursor).transpose() {
        Ok(a) => a.unwrap_or_default(),
        Err(m) => {
            return (StatusCode::BAD_REQUEST, axum::Json(json!({"message": m}))).into_response();
        }
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let reader = delivery.clone();
    match tokio::task::spawn_blocking(move || read_after(&reader, &after, limit)).await {
        Ok(Ok((answer, receipts))) => {
            // What was handed over is receipted like a push (outcome
            // delivered, reason `pulled`): `duijie deliveries status` counts
            // pulled records by key, whichever process served them.
            if let Err(e) = delivery.receipt_pulled(&receipts).await {
                tracing::warn!(feed = %department, error = %e, "pull feed: the receipts could not be written");
            }
            axum::Json(answer).into_response()
        }
        // What went wrong is logged here; a department is told to come
        // back, not the hub's internals.
        Ok(Err(e)) => {
            tracing::warn!(feed = %department, error = %e, "pull feed: the bus could not be read");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::RETRY_AFTER, "5")],
                axum::Json(json!({"message": "暂时无法读取，请稍后重试"})),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(feed = %department, error = %e, "pull feed: the read failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"message": "读取失败，请稍后重试"})),
            )
                .into_response()
        }
    }
}

/// A page of a pull feed, and the receipts of what it hands over.
type Page = (Value, Vec<super::Receipt>);

/// The department's records after the cursor `after`, at most `limit` of
/// them, read through the bus's one reader ([`crate::bus::read`]).
fn read_after(
    delivery: &Delivery,
    after: &BTreeMap<i32, i64>,
    limit: usize,
) -> crate::error::Result<Page> {
    let consumer: BaseConsumer<ReaderContext> = delivery
        .bus
        .reader("pull", crate::bus::Isolation::Committed)?;
    let topic = &delivery.config.topic;
    let within = Duration::from_secs(10);
    let partitions = crate::bus::read::partitions(&consumer, topic, within)?;
    let starts: Vec<(i32, Start)> = partitions
        .iter()
        .map(|p| (*p, after.get(p).map_or(Start::Beginning, |o| Start::At(*o))))
        .collect();
    // The cursor goes on from where the department was (or the start);
    // each record read moves its partition on.
    let mut next: BTreeMap<i32, i64> = after
        .iter()
        .filter(|(p, _)| partitions.contains(p))
        .map(|(p, o)| (*p, *o))
        .collect();
    let mut records = Vec::new();
    let mut receipts = Vec::new();
    let ended = crate::bus::read::read_until(&consumer, topic, &starts, within, |m| {
        next.insert(m.partition(), m.offset() + 1);
        let unreadable = |why: &str| {
            crate::bus::unreadable("pull feed", m.topic(), m.partition(), m.offset(), why)
        };
        if m.payload().is_none() {
            // A tombstone: the topic forgetting a key.
            return Ok(ControlFlow::Continue(()));
        }
        let incoming: Incoming = match delivery.decode(m) {
            Ok(i) => i,
            Err(e) => {
                unreadable(&e.to_string());
                return Ok(ControlFlow::Continue(()));
            }
        };
        if let Some(select) = &delivery.config.select
            && !select.holds(&incoming.record)
        {
            return Ok(ControlFlow::Continue(()));
        }
        match delivery.outgoing(&incoming) {
            Ok(Some(out)) => {
                let body = out.body();
                receipts.push(super::Receipt {
                    delivery: delivery.name.clone(),
                    department: delivery.department.clone(),
                    record_id: body["id"].as_str().unwrap_or(&incoming.key).to_owned(),
                    idempotency_key: out.key().to_owned(),
                    outcome: super::Outcome::Delivered,
                    attempts: 0,
                    proof: None,
                    reason: Some("pulled".to_owned()),
                    at_ms: chrono::Utc::now().timestamp_millis(),
                    topic: topic.clone(),
                    partition: m.partition(),
                    offset: m.offset(),
                });
                records.push(json!({ "idempotency_key": out.key(), "record": body }));
            }
            Ok(None) => {}
            Err(e) => unreadable(&e.to_string()),
        }
        Ok(if records.len() < limit {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        })
    })?;
    let open = ended == Ended::Stopped;
    Ok((
        json!({ "department": delivery.department, "records": records, "next": encode_cursor(&next), "more": open }),
        receipts,
    ))
}
