//! Pushed sources: the one intake every pushed message goes through
//! ([`PipelineIntake`], for webhooks and subscriptions alike), and webhook
//! endpoints on the hub's HTTP server.
//!
//! A message is checked by its connector (signature, age, replay; it is
//! reserved at once, so that concurrent copies get 409); a refused one is
//! answered 401/409/413/503 and never reaches the bus. A body larger than
//! the broker takes is refused with 413 (the limit is lowered at start to
//! the topic's `max.message.bytes`). An
//! accepted one is mapped and produced like a polled record, and the sender
//! gets its answer only once the broker acknowledged it: 200 with the record
//! id, or 202 when it went to the dead-letter topic. If the broker does not
//! acknowledge, the answer is 503 and the sender retries.

use super::{IngestError, Outcome, PipelineContext, end_produce, produce_record, produce_reject};
use crate::runtime::stats::PipelineStats;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use duijie_connectors::webhook::Webhook;
use duijie_connectors::{Intake, Pushed, SourceError, Taken};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A pipeline's intake of pushed messages: maps and writes one, and
/// returns once the broker acknowledged it (or its dead letter).
#[derive(Debug, Clone)]
pub struct PipelineIntake {
    pub ctx: PipelineContext,
}

impl PipelineIntake {
    pub fn new(ctx: PipelineContext) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl Intake for PipelineIntake {
    async fn take(&self, message: Pushed) -> Result<Taken, SourceError> {
        let ctx = &self.ctx;
        let unacknowledged = |e: IngestError| {
            tracing::error!(pipeline = %ctx.config.name, error = %e, "pushed message not acknowledged by the broker");
            let error = match e.class() {
                duijie_connectors::ErrorClass::Permanent => SourceError::permanent(e.to_string()),
                duijie_connectors::ErrorClass::Transient => SourceError::transient(e.to_string()),
            };
            error.with_source(e)
        };
        PipelineStats::add(&ctx.stats.fetched, 1);
        let received = std::time::SystemTime::now();
        let (acks, taken, span) = match &message {
            Pushed::Record(raw) => {
                let (acks, outcome, span) = produce_record(ctx, raw, received)
                    .await
                    .map_err(unacknowledged)?;
                let taken = match outcome {
                    Outcome::Mapped(key) => Taken::Mapped { key },
                    Outcome::DeadLettered(reason) => Taken::DeadLettered { reason },
                };
                (acks, taken, span)
            }
            Pushed::Reject(rej) => {
                let (acks, span) = produce_reject(ctx, rej, received)
                    .await
                    .map_err(unacknowledged)?;
                let reason = rej.reason.clone();
                (acks, Taken::DeadLettered { reason }, span)
            }
        };
        let acked = acks.wait().await;
        end_produce(&span, 1, &acked);
        acked.map_err(|e| unacknowledged(IngestError::Unacknowledged(e)))?;
        match &taken {
            Taken::Mapped { .. } => PipelineStats::add(&ctx.stats.delivered, 1),
            Taken::DeadLettered { .. } => PipelineStats::add(&ctx.stats.dead_lettered, 1),
        }
        Ok(taken)
    }
}

/// One webhook pipeline's endpoint.
#[derive(Debug)]
pub struct IntakeEndpoint {
    pub intake: PipelineIntake,
    pub webhook: Arc<Webhook>,
}

/// Routes for the pushed pipelines.
pub fn router(endpoints: Vec<Arc<IntakeEndpoint>>) -> Router {
    let mut router = Router::new();
    for ep in endpoints {
        let path = ep.webhook.config.path.clone();
        // One byte over the limit still reaches the handler, which refuses it
        // with its reason; larger bodies are cut off by the extractor (413).
        let limit = ep.webhook.max_body_bytes() + 1;
        router = router.route(
            &path,
            axum::routing::post(receive)
                .with_state(ep)
                .layer(axum::extract::DefaultBodyLimit::max(limit)),
        );
    }
    router
}

async fn receive(
    State(ep): State<Arc<IntakeEndpoint>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = chrono::Utc::now().timestamp_millis();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let message = match ep.webhook.check(header, &body, now) {
        Ok(d) => d,
        Err(refusal) => {
            ep.intake.ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(pipeline = %ep.intake.ctx.config.name, reason = %refusal, "webhook message refused");
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            return (
                status,
                axum::Json(json!({ "status": "refused", "reason": refusal.to_string() })),
            )
                .into_response();
        }
    };
    let taken = match ep.intake.take(Pushed::Record(message.record.clone())).await {
        Ok(taken) => taken,
        Err(e) => {
            ep.webhook.release(&message);
            return unavailable(e.to_string());
        }
    };
    ep.webhook.taken(&message, now);
    match taken {
        Taken::Mapped { key } => {
            tracing::info!(pipeline = %ep.intake.ctx.config.name, record_id = %key, "webhook message accepted");
            (
                StatusCode::OK,
                axum::Json(json!({ "status": "accepted", "id": key })),
            )
                .into_response()
        }
        Taken::DeadLettered { reason } => (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "status": "dead_lettered", "reason": reason })),
        )
            .into_response(),
    }
}

fn unavailable(reason: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({ "status": "retry", "reason": reason })),
    )
        .into_response()
}
