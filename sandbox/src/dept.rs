//! Department receivers (部门), as the feeds deliver to them:
//! - `POST /dept/{name}/webhook`: JSON, signed with HMAC-SHA256, with an
//!   `Idempotency-Key`; or a batch (`X-Delivery-Form: batch`), answered
//!   record by record;
//! - `POST /dept/{name}/soap`: a legacy SOAP/XML receiver; the key is the
//!   envelope's `IdempotencyKey` element;
//! - `GET /dept/{name}/received`: what a department got.
//!
//! Also the approval system's joint-restriction list (`POST
//! /approval/api/blacklist`), which receives blacklist entries.

use super::receiver::Inbox;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use duijie_connectors::xml_split::element_text;
use serde_json::json;

/// The shared secret the sandbox departments expect feeds to sign with.
pub const DEPT_SECRET: &str = "dept-feed-signing-secret";

#[derive(Debug, Clone)]
pub struct Departments {
    /// How long the webhook takes to answer (a receiver's own work), in
    /// milliseconds; `POST /sandbox/receivers {"answer_ms": 5}`.
    pub answer_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub webhook: Inbox,
    pub soap: Inbox,
    pub approval_blacklist: Inbox,
}

impl Default for Departments {
    fn default() -> Self {
        Self {
            answer_ms: std::sync::Arc::default(),
            // The emergency bureau takes its feed encrypted to its SM2 key
            // (the public half is pipelines/secrets/dept_emergency_sm2_public.pem).
            webhook: Inbox::signed(DEPT_SECRET)
                .sealed_for("emergency", include_str!("keys/dept_emergency_sm2_key.pem")),
            soap: Inbox::default(),
            approval_blacklist: Inbox::default(),
        }
    }
}

impl Departments {
    pub fn router(&self) -> Router {
        Router::new()
            .route("/dept/{name}/webhook", axum::routing::post(webhook))
            .route("/dept/{name}/soap", axum::routing::post(soap))
            .route("/dept/{name}/received", axum::routing::get(received))
            .route(
                "/approval/api/blacklist",
                axum::routing::post(approval_blacklist).get(approval_blacklist_view),
            )
            .with_state(self.clone())
    }
}

async fn webhook(
    State(d): State<Departments>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let ms = d.answer_ms.load(std::sync::atomic::Ordering::Relaxed);
    if ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if headers.get("X-Delivery-Form").is_some_and(|v| v == "batch") {
        return d.webhook.receive_batch(&name, &headers, &body);
    }
    d.webhook.receive(&name, &headers, &body)
}

async fn soap(
    State(d): State<Departments>,
    Path(name): Path<String>,
    mut headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(key) = element_text(&body, "IdempotencyKey")
        && let Ok(v) = HeaderValue::from_str(&key)
    {
        headers.insert("Idempotency-Key", v);
    }
    let response = d.soap.receive(&name, &headers, body.as_bytes());
    let status = response.status();
    let (code, text) = if status.is_success() {
        ("0", "接收成功")
    } else if status == StatusCode::SERVICE_UNAVAILABLE {
        ("503", "系统维护中")
    } else {
        ("400", "报文无效")
    };
    let envelope = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><ReceiveResponse><Code>{code}</Code><Message>{text}</Message></ReceiveResponse></soap:Body></soap:Envelope>"
    );
    (
        status,
        [("Content-Type", "text/xml; charset=utf-8")],
        envelope,
    )
        .into_response()
}

async fn received(
    State(d): State<Departments>,
    Path(name): Path<String>,
) -> axum::Json<serde_json::Value> {
    let mut webhook = d.webhook.view(&name);
    let soap = d.soap.view(&name);
    webhook["soap"] = soap;
    axum::Json(webhook)
}

async fn approval_blacklist(
    State(d): State<Departments>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    d.approval_blacklist.receive("blacklist", &headers, &body)
}

async fn approval_blacklist_view(State(d): State<Departments>) -> axum::Json<serde_json::Value> {
    axum::Json(json!(d.approval_blacklist.view("blacklist")))
}
