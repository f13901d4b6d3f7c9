//! Receivers that play the systems the hub pushes to: they check what they
//! are sent, keep it, and say what they got. A redelivery with an
//! `Idempotency-Key` already taken is acknowledged and not kept twice.
//!
//! An inbox can be taken down (503 to everything, an outage), can require
//! HMAC-SHA256 signatures (`X-Timestamp`, `X-Signature` over
//! `<timestamp>.<body>`), and can refuse records whose field has a given
//! value (422 with a reason, as a receiver's validation would).

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Every request the receivers were sent — method, path, headers and body
/// as they came over the wire — so that a run can be checked for what
/// left the hub (`duijie-sandbox demo --capture`). Bounded: the newest 100,000.
#[derive(Debug, Clone, Default)]
pub struct WireLog {
    requests: Arc<Mutex<std::collections::VecDeque<Value>>>,
}

impl WireLog {
    const MAX: usize = 100_000;

    pub fn snapshot(&self) -> Vec<Value> {
        self.requests
            .lock()
            .expect("wire lock")
            .iter()
            .cloned()
            .collect()
    }
}

/// Middleware: records the request in the wire log, then serves it.
pub async fn capture(
    axum::extract::State(wire): axum::extract::State<WireLog>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 4 << 20).await else {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"status": "refused", "message": "请求体过大"}),
        );
    };
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    {
        let mut log = wire.requests.lock().expect("wire lock");
        if log.len() >= WireLog::MAX {
            log.pop_front();
        }
        log.push_back(json!({
            "method": parts.method.as_str(),
            "uri": parts.uri.to_string(),
            "headers": headers,
            "body": String::from_utf8_lossy(&bytes),
        }));
    }
    next.run(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
    .await
}

/// The body inside the envelope `duijie-sm4/1`, as docs/RECEIVING.md
/// tells a department to open it.
fn open_envelope(
    private: &duijie_crypto::sm2::PrivateKey,
    idempotency_key: &str,
    body: &[u8],
) -> Result<Vec<u8>, String> {
    use duijie_crypto::sm2::CipherForm;
    let e: Value = serde_json::from_slice(body).map_err(|_| "不是加密信封".to_owned())?;
    if e["envelope"] != "duijie-sm4/1" {
        return Err("不是加密信封".into());
    }
    let text = match e["text"].as_str() {
        Some("hex") => duijie_crypto::Text::Hex,
        _ => duijie_crypto::Text::Base64,
    };
    let field = |k: &str| {
        e[k].as_str()
            .ok_or_else(|| format!("缺少 {k}"))
            .and_then(|v| text.decode(v).map_err(|x| x.to_string()))
    };
    let form = match e["key_form"].as_str() {
        Some("c1c2c3") => CipherForm::C1C2C3,
        Some("der") => CipherForm::Der,
        _ => CipherForm::C1C3C2,
    };
    let data_key = private
        .decrypt(&field("key")?, form)
        .map_err(|x| x.to_string())?;
    let (iv, data) = (field("iv")?, field("data")?);
    match e["cipher"].as_str() {
        Some("sm4-gcm") => {
            duijie_crypto::sm4::gcm_open(&data_key, &iv, idempotency_key.as_bytes(), &data)
        }
        Some("sm4-cbc") => duijie_crypto::sm4::cbc_decrypt(&data_key, &iv, &data),
        other => return Err(format!("不支持的算法 {other:?}")),
    }
    .map_err(|x| x.to_string())
}

/// A refusal rule: records whose `field` equals `equals` are refused.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RejectRule {
    pub field: String,
    pub equals: Value,
    pub reason: String,
}

#[derive(Debug, Default)]
struct Box_ {
    records: Vec<Value>,
    keys: BTreeMap<String, usize>,
    deliveries: u64,
    duplicates: u64,
    refused: u64,
}

#[derive(Debug, Default)]
struct InboxState {
    boxes: BTreeMap<String, Box_>,
    down: bool,
    /// Deliveries answered 503 while down, per box.
    turned_away: BTreeMap<String, u64>,
    reject: Option<RejectRule>,
}

/// What a box did with one record.
enum Taken {
    Received,
    Duplicate,
    Refused(String),
}

/// Receivers' memory, shared by their routes.
#[derive(Debug, Clone, Default)]
pub struct Inbox {
    inner: Arc<Mutex<InboxState>>,
    /// Signatures are required when set.
    secret: Option<Arc<String>>,
    /// Boxes that take only encrypted bodies (the envelope `duijie-sm4/1`,
    /// docs/RECEIVING.md), with their SM2 private key.
    sealed_for: Arc<BTreeMap<String, duijie_crypto::sm2::PrivateKey>>,
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

impl Inbox {
    pub fn signed(secret: &str) -> Self {
        Self {
            inner: Arc::default(),
            secret: Some(Arc::new(secret.to_owned())),
            sealed_for: Arc::default(),
        }
    }

    /// Box `name` takes only bodies encrypted to the SM2 key `pem`.
    pub fn sealed_for(mut self, name: &str, pem: &str) -> Self {
        let key = duijie_crypto::sm2::PrivateKey::from_pem(pem, duijie_crypto::sm2::DEFAULT_DISTID)
            .expect("the sandbox's department key reads");
        Arc::make_mut(&mut self.sealed_for).insert(name.to_owned(), key);
        self
    }

    pub fn set_down(&self, down: bool) {
        self.inner.lock().expect("inbox lock").down = down;
    }

    pub fn set_reject(&self, rule: Option<RejectRule>) {
        self.inner.lock().expect("inbox lock").reject = rule;
    }

    pub fn is_down(&self) -> bool {
        self.inner.lock().expect("inbox lock").down
    }

    /// Takes one delivery for box `name`.
    pub fn receive(&self, name: &str, headers: &HeaderMap, body: &[u8]) -> Response {
        let header = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let mut state = self.inner.lock().expect("inbox lock");
        // The hub's scheme 2 signs the key with the body: a request sent
        // again under another key does not verify.
        let signed_key = header("Idempotency-Key").unwrap_or_default();
        if let Some(refusal) = self.admit(&mut state, name, headers, &signed_key, body) {
            return refusal;
        }
        let Some(key) = header("Idempotency-Key") else {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"status": "refused", "message": "缺少 Idempotency-Key"}),
            );
        };
        let opened;
        let body = match self.sealed_for.get(name) {
            None => body,
            Some(private) => match open_envelope(private, &key, body) {
                Ok(plain) => {
                    opened = plain;
                    &opened[..]
                }
                Err(why) => {
                    return answer(
                        StatusCode::BAD_REQUEST,
                        json!({"status": "refused", "message": format!("无法解密：{why}")}),
                    );
                }
            },
        };
        let record: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => Value::String(String::from_utf8_lossy(body).into_owned()),
        };
        match Self::take(&mut state, name, &key, record) {
            Taken::Received => answer(StatusCode::OK, json!({"status": "received", "key": key})),
            Taken::Duplicate => answer(StatusCode::OK, json!({"status": "duplicate", "key": key})),
            Taken::Refused(reason) => answer(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"status": "rejected", "message": reason}),
            ),
        }
    }

    /// The refusal of a request to box `name` before its records are read:
    /// down (counted as turned away), or not signed by scheme 2 over
    /// `<timestamp>.<key>.<body>` (HMAC-SM3 or HMAC-SHA256, as the scheme
    /// header says) when signatures are required.
    fn admit(
        &self,
        state: &mut InboxState,
        name: &str,
        headers: &HeaderMap,
        key: &str,
        body: &[u8],
    ) -> Option<Response> {
        if state.down {
            *state.turned_away.entry(name.to_owned()).or_default() += 1;
            return Some(answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "down", "message": "系统维护中"}),
            ));
        }
        let secret = self.secret.as_ref()?;
        let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
        let (Some(ts), Some(sig)) = (header("X-Timestamp"), header("X-Signature")) else {
            return Some(answer(
                StatusCode::UNAUTHORIZED,
                json!({"status": "refused", "message": "缺少签名"}),
            ));
        };
        let suite =
            header("X-Signature-Scheme").and_then(duijie_connectors::signature::suite_of_scheme_v2);
        if suite.is_some_and(|suite| {
            duijie_connectors::signature::verify_v2_with(suite, secret, ts, key, body, sig)
        }) {
            None
        } else {
            Some(answer(
                StatusCode::UNAUTHORIZED,
                json!({"status": "refused", "message": "签名校验失败"}),
            ))
        }
    }

    /// Box `name` takes `record` under `key`.
    fn take(state: &mut InboxState, name: &str, key: &str, record: Value) -> Taken {
        let reject = state.reject.clone();
        let b = state.boxes.entry(name.to_owned()).or_default();
        b.deliveries += 1;
        if b.keys.contains_key(key) {
            b.duplicates += 1;
            return Taken::Duplicate;
        }
        if let Some(rule) = reject
            && record
                .pointer(&rule.field)
                .is_some_and(|v| *v == rule.equals)
        {
            b.refused += 1;
            return Taken::Refused(rule.reason);
        }
        b.keys.insert(key.to_owned(), b.records.len());
        b.records.push(json!({
            "key": key,
            "record": record,
            "at_ms": chrono::Utc::now().timestamp_millis(),
        }));
        Taken::Received
    }

    /// Takes a batch (`X-Delivery-Form: batch`) for box `name`:
    /// `{"records": [...]}`, signed as scheme 2 with an empty key, each
    /// record under its `_delivery.idempotency_key`, in order; answered
    /// record by record (`results`: `idempotency_key`, `status`
    /// `ACCEPTED`/`REJECTED`, `reason`).
    pub fn receive_batch(&self, name: &str, headers: &HeaderMap, body: &[u8]) -> Response {
        let mut state = self.inner.lock().expect("inbox lock");
        if let Some(refusal) = self.admit(&mut state, name, headers, "", body) {
            return refusal;
        }
        let Some(records) = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("records").and_then(Value::as_array).cloned())
        else {
            return answer(
                StatusCode::BAD_REQUEST,
                json!({"status": "refused", "message": "缺少 records"}),
            );
        };
        let results: Vec<Value> = records
            .into_iter()
            .map(|record| {
                let Some(key) = record
                    .pointer("/_delivery/idempotency_key")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                else {
                    return json!({"status": "REJECTED", "reason": "缺少 _delivery.idempotency_key"});
                };
                match Self::take(&mut state, name, &key, record) {
                    Taken::Received | Taken::Duplicate => {
                        json!({"idempotency_key": key, "status": "ACCEPTED"})
                    }
                    Taken::Refused(reason) => {
                        json!({"idempotency_key": key, "status": "REJECTED", "reason": reason})
                    }
                }
            })
            .collect();
        answer(StatusCode::OK, json!({ "results": results }))
    }

    /// What box `name` holds.
    pub fn view(&self, name: &str) -> Value {
        let state = self.inner.lock().expect("inbox lock");
        let turned_away = state.turned_away.get(name).copied().unwrap_or(0);
        match state.boxes.get(name) {
            Some(b) => json!({
                "records": b.records,
                "deliveries": b.deliveries,
                "duplicates": b.duplicates,
                "refused": b.refused,
                "turned_away": turned_away,
            }),
            None => {
                json!({"records": [], "deliveries": 0, "duplicates": 0, "refused": 0, "turned_away": turned_away})
            }
        }
    }
}

/// A batch receiver's memory — the credit platform's publications, the
/// supervision platform's acts: what it accepted by idempotency key, what
/// it refused, and how many batches and duplicates it saw. It answers a
/// batch (`{"records": […]}`) record by record.
#[derive(Debug, Default)]
pub struct Batches {
    pub accepted: BTreeMap<String, Value>,
    pub rejected: Vec<Value>,
    pub batches: u64,
    pub duplicates: u64,
}

impl Batches {
    /// One result per record: `ACCEPTED` with a receipt number
    /// (`<prefix><n>`), `ACCEPTED` again for a key already held (a
    /// duplicate), or `REJECTED` with `check`'s reason. Each result repeats
    /// the record's `echo` field when one is named (the credit platform's
    /// `CF_WSH`).
    pub fn take(
        &mut self,
        body: &Value,
        check: impl Fn(&Value) -> Result<(), String>,
        prefix: &str,
        echo: Option<&str>,
    ) -> Vec<Value> {
        self.batches += 1;
        let records = body
            .get("records")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut results = Vec::with_capacity(records.len());
        for r in records {
            let mut result = serde_json::Map::new();
            if let Some(f) = echo {
                result.insert(f.into(), r.get(f).cloned().unwrap_or(Value::Null));
            }
            let key = r
                .get("idempotency_key")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let mut answer = |fields: Value| {
                result.extend(fields.as_object().cloned().unwrap_or_default());
                results.push(Value::Object(std::mem::take(&mut result)));
            };
            if key.is_empty() {
                answer(json!({"status": "REJECTED", "reason": "缺少 idempotency_key"}));
                continue;
            }
            if self.accepted.contains_key(&key) {
                self.duplicates += 1;
                answer(json!({"idempotency_key": key, "status": "ACCEPTED", "duplicate": true}));
                continue;
            }
            match check(&r) {
                Ok(()) => {
                    self.accepted.insert(key.clone(), r);
                    let receipt_no = format!("{prefix}{:08}", self.accepted.len());
                    answer(json!({"idempotency_key": key, "status": "ACCEPTED",
                        "receipt_no": receipt_no, "received_at": chrono::Utc::now().timestamp_millis()}));
                }
                Err(reason) => {
                    self.rejected.push(json!({"key": key, "reason": reason}));
                    answer(json!({"idempotency_key": key, "status": "REJECTED", "reason": reason}));
                }
            }
        }
        results
    }
}
