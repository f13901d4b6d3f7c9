//! Pushed sources: webhook endpoints on the hub's HTTP server.
//!
//! A delivery is checked by its connector (signature, age, replay; it is
//! reserved at once, so that concurrent copies get 409); a refused one is
//! answered 401/409/413/503 and never reaches the bus. A body larger than
//! the broker takes is refused with 413 (the limit is lowered at start to
//! the topic's `max.message.bytes`). An
//! accepted one is mapped and produced like a polled record, and the sender
//! gets its answer only once the broker acknowledged it: 200 with the record
//! id, or 202 when it went to the dead-letter topic. If the broker does not
//! acknowledge, the answer is 503 and the sender retries.

use super::pipeline::{Outcome, PipelineContext, produce_record};
use super::stats::PipelineStats;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use duijie_connectors::webhook::Webhook;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// One webhook pipeline's endpoint.
#[derive(Debug)]
pub struct PushEndpoint {
    pub ctx: PipelineContext,
    pub webhook: Arc<Webhook>,
}

/// Routes for the pushed pipelines.
pub fn router(endpoints: Vec<Arc<PushEndpoint>>) -> Router {
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

async fn receive(State(ep): State<Arc<PushEndpoint>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = chrono::Utc::now().timestamp_millis();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let delivery = match ep.webhook.check(header, &body, now) {
        Ok(d) => d,
        Err(refusal) => {
            ep.ctx.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(pipeline = %ep.ctx.config.name, reason = %refusal, "webhook delivery refused");
            let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::UNAUTHORIZED);
            return (
                status,
                axum::Json(json!({ "status": "refused", "reason": refusal.to_string() })),
            )
                .into_response();
        }
    };
    PipelineStats::add(&ep.ctx.stats.fetched, 1);
    let produced = match produce_record(&ep.ctx, &delivery.record).await {
        Ok(p) => p,
        Err(e) => {
            ep.webhook.release(&delivery);
            return unavailable(&ep, e.to_string());
        }
    };
    let (acks, outcome) = produced;
    if let Err(e) = acks.wait().await {
        ep.webhook.release(&delivery);
        return unavailable(&ep, e.to_string());
    }
    ep.webhook.taken(&delivery, now);
    match outcome {
        Outcome::Mapped(key) => {
            PipelineStats::add(&ep.ctx.stats.delivered, 1);
            tracing::info!(pipeline = %ep.ctx.config.name, record_id = %key, "webhook delivery accepted");
            (
                StatusCode::OK,
                axum::Json(json!({ "status": "accepted", "id": key })),
            )
                .into_response()
        }
        Outcome::DeadLettered(reason) => {
            PipelineStats::add(&ep.ctx.stats.dead_lettered, 1);
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({ "status": "dead_lettered", "reason": reason })),
            )
                .into_response()
        }
    }
}

fn unavailable(ep: &PushEndpoint, reason: String) -> Response {
    tracing::error!(pipeline = %ep.ctx.config.name, %reason, "webhook delivery not acknowledged by the broker");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({ "status": "retry", "reason": reason })),
    )
        .into_response()
}
