//! Push targets (sinks): where a delivery's records go and how an
//! answer is read — accepted, refused by the receiver (not retried), or a
//! transient failure (retried). Each sink is a module here with its own
//! request and answer; they share [`Http`]: the hub's one HTTP client
//! (`duijie_connectors::http::client`), each request's timeout, the
//! delivery's pace, and the house's one status rule ([`classify`]: 5xx,
//! 408 and 429 are retried after the receiver's `Retry-After`, as for
//! sources) and one HMAC signature (`duijie_connectors::signature`). A new
//! sink is its module, a variant of [`TargetConfig`] and one line in
//! [`TargetConfig::sink`]. A pull feed has no sink: the department comes
//! for its records ([`super::pull`]).

mod credit_batch;
mod envelope;
mod soap;
mod webhook;

use super::ReceiptKey;
use super::config::TargetConfig;
use super::transform::Outgoing;
use futures::future::BoxFuture;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// One HTTP request exactly as the receiver gets it (what `send` sends and
/// `duijie deliveries preview` prints).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WireRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl WireRequest {
    fn post(url: String, headers: Vec<(&str, String)>, body: String) -> Self {
        Self {
            method: "POST",
            url,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            body,
        }
    }
}

/// The hub's SM2 signature on what a sink sends (`[hub.signing]`): over
/// `<timestamp>.<idempotency key>.<body>`, the bytes the HMAC of scheme 2
/// covers, in `X-Signature-SM2` with its key id, identifier and layout.
#[derive(Debug)]
pub struct HubSignature {
    key: duijie_crypto::sm2::PrivateKey,
    key_id: String,
    config: crate::delivery::Signing,
}

impl HubSignature {
    /// `None` when the key does not read (it was checked when the
    /// deployment was read).
    pub(super) fn new(signing: &crate::delivery::Signing) -> Option<Self> {
        Some(Self {
            key: signing.private_key().ok()?,
            key_id: signing.key_id().ok()?,
            config: signing.clone(),
        })
    }

    /// The hub's signature over `msg` as receipts keep it: DER, base64.
    pub fn sign_der_base64(&self, msg: &[u8]) -> String {
        duijie_crypto::Text::Base64
            .encode(&self.key.sign(msg, duijie_crypto::sm2::SignatureForm::Der))
    }

    /// The key's id (see [`crate::delivery::Signing::key_id`]).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(super) fn headers(&self, ts: &str, key: &str, body: &[u8]) -> [(&'static str, String); 4] {
        let signed = self.key.sign(
            &duijie_connectors::signature::base_v2(ts, key, body),
            self.config.form,
        );
        [
            ("X-Signature-SM2", self.config.text.encode(&signed)),
            ("X-Signature-SM2-Key", self.key_id.clone()),
            ("X-Signature-SM2-Id", self.config.distid.clone()),
            (
                "X-Signature-SM2-Form",
                format!("{:?}+{:?}", self.config.form, self.config.text).to_lowercase(),
            ),
        ]
    }
}

/// One attempt's answer for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver took it; what it answered goes with the receipt.
    Accepted(Ack),
    /// The receiver refused it; this reason is its own.
    Refused(String),
    /// Worth trying again, after the receiver's `Retry-After` if it gave
    /// one.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
}

/// What a receiver answered when it took a record, kept with the receipt
/// (non-repudiation: GB/T 39786-2021 level 3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ack {
    /// The answer's body as received (the first [`ANSWER_KEPT`] bytes).
    pub answer: Option<String>,
    /// The receiver's SM2 signature over its answer (`X-Signature-SM2`).
    pub signature: Option<String>,
    /// Whether it verified under the receiver's key (`receipt_key`).
    pub verified: bool,
}

/// An answer's body is read up to this size (a larger one is the
/// receiver's error).
const ANSWER_LIMIT: usize = 1024 * 1024;
/// Of an answer, this much is kept with the receipt.
pub const ANSWER_KEPT: usize = 16 * 1024;

/// A success answer, read: its body, and the receiver's signature checked
/// when its receipts must be signed. An answer that should be signed and
/// is not, or does not verify, is not an acknowledgement: the record is
/// sent again (within the delivery's patience), never taken as delivered.
async fn acknowledged(
    response: reqwest::Response,
    key: Option<&ReceiptKey>,
) -> Result<(bytes::Bytes, Ack), Attempt> {
    let signature = response
        .headers()
        .get("X-Signature-SM2")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = duijie_connectors::http::read_limited(response, ANSWER_LIMIT)
        .await
        .map_err(|e| Attempt::transient(e.to_string()))?;
    let verified = match (key, signature.as_deref()) {
        (None, _) => false,
        (Some(key), Some(sig)) if key.verifies(&body, sig) => true,
        (Some(_), Some(_)) => {
            return Err(Attempt::transient(
                "回执签名校验失败: the receiver's SM2 signature over its answer does not verify",
            ));
        }
        (Some(_), None) => {
            return Err(Attempt::transient(
                "回执未签名: the answer has no X-Signature-SM2, and this receiver's receipts are signed",
            ));
        }
    };
    let kept = &body[..body.len().min(ANSWER_KEPT)];
    let ack = Ack {
        answer: Some(String::from_utf8_lossy(kept).into_owned()),
        signature,
        verified,
    };
    Ok((body, ack))
}

impl Attempt {
    fn transient(reason: impl Into<String>) -> Self {
        Attempt::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// A receiver's answer to one request.
type Answer = Result<reqwest::Response, reqwest::Error>;

/// A push target.
pub trait Sink: Send + Sync + std::fmt::Debug {
    fn kind(&self) -> &'static str;

    /// Whether several records go in one request.
    fn batches(&self) -> bool {
        false
    }

    /// The request that carries `outs` (one record, or a batch) at Unix
    /// time `ts` (signatures); `None` when nothing is to be sent.
    fn request(&self, outs: &[&Outgoing], ts: i64) -> Option<WireRequest>;

    /// What an answer to a one-record request says.
    fn answer(&self, answer: Answer) -> BoxFuture<'_, Attempt> {
        Box::pin(single(answer, None))
    }

    /// One attempt for `outs`, one answer per record: by default one
    /// request per record, in order.
    fn send<'a>(&'a self, http: &'a Http, outs: &'a [&'a Outgoing]) -> BoxFuture<'a, Vec<Attempt>> {
        one_by_one(self, http, outs)
    }
}

/// One request per record, in order (what [`Sink::send`] does unless a
/// sink batches).
fn one_by_one<'a, S: Sink + ?Sized>(
    sink: &'a S,
    http: &'a Http,
    outs: &'a [&'a Outgoing],
) -> BoxFuture<'a, Vec<Attempt>> {
    Box::pin(async move {
        let mut answers = Vec::with_capacity(outs.len());
        for out in outs {
            answers.push(match sink.request(&[out], chrono::Utc::now().timestamp()) {
                Some(req) => sink.answer(http.execute(req).await).await,
                None => Attempt::Accepted(Ack::default()),
            });
        }
        answers
    })
}

impl TargetConfig {
    /// `[hub.signing]` as copied into this target.
    pub fn signing(&self) -> Option<&crate::delivery::Signing> {
        match self {
            TargetConfig::Webhook { signing, .. }
            | TargetConfig::Soap { signing, .. }
            | TargetConfig::CreditBatch { signing, .. } => signing.as_ref(),
            TargetConfig::Pull { .. } => None,
        }
    }

    /// The receiver's key for its signed answers, when it signs them.
    pub fn receipt_key(&self) -> Option<Result<ReceiptKey, String>> {
        match self {
            TargetConfig::Webhook { receipt_key, .. }
            | TargetConfig::CreditBatch { receipt_key, .. } => {
                receipt_key.as_deref().map(ReceiptKey::new)
            }
            _ => None,
        }
    }

    /// The sink of this target and its requests' timeout; `None` for a
    /// pull feed.
    pub fn sink(&self) -> Option<(Box<dyn Sink>, Duration)> {
        Some(match self {
            TargetConfig::CreditBatch {
                url,
                timeout,
                receipt_key,
                signing,
            } => (
                Box::new(credit_batch::CreditBatch::new(
                    url,
                    signing.as_ref(),
                    receipt_key.as_deref().and_then(|k| ReceiptKey::new(k).ok()),
                )),
                *timeout,
            ),
            TargetConfig::Webhook {
                url,
                secret,
                timeout,
                signature,
                signing,
                encryption,
                receipt_key,
                batch,
                ..
            } => (
                Box::new(webhook::Webhook::new(
                    url,
                    secret,
                    *signature,
                    signing.as_ref(),
                    encryption.as_ref(),
                    receipt_key.as_deref().and_then(|k| ReceiptKey::new(k).ok()),
                    *batch,
                )),
                *timeout,
            ),
            TargetConfig::Soap {
                url,
                soap_action,
                timeout,
                signing,
                ..
            } => (
                Box::new(soap::Soap::new(url, soap_action, signing.as_ref())),
                *timeout,
            ),
            TargetConfig::Pull { .. } => return None,
        })
    }
}

/// What the sinks share: the hub's one HTTP client, the timeout, the pace.
#[derive(Debug)]
pub struct Http {
    client: reqwest::Client,
    /// Each request's timeout.
    timeout: Duration,
    /// Earliest time of the next request.
    next_slot: Option<(Duration, Mutex<Instant>)>,
}

impl Http {
    async fn pace(&self) {
        if let Some((interval, next)) = &self.next_slot {
            let mut next = next.lock().await;
            let now = Instant::now();
            if *next > now {
                tokio::time::sleep(*next - now).await;
            }
            *next = Instant::now().max(*next) + *interval;
        }
    }

    /// Sends `req`, with the `traceparent` of the span it is sent under
    /// (the delivery's `deliver` span), when there is one.
    async fn execute(&self, req: WireRequest) -> Answer {
        let mut builder = self.client.post(&req.url).timeout(self.timeout);
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        if let Some(traceparent) =
            crate::telemetry::trace::traceparent(&opentelemetry::Context::current())
        {
            builder = builder.header(crate::telemetry::trace::HEADER, traceparent);
        }
        builder.body(req.body).send().await
    }
}

/// A target: its sink (none for a pull feed) and what sinks share.
#[derive(Debug)]
pub struct Target {
    sink: Option<Box<dyn Sink>>,
    http: Http,
    /// The hub's SM2 key, to sign each receipt's proof.
    hub: Option<HubSignature>,
}

impl Target {
    pub fn from_config(c: &TargetConfig, rate_per_sec: Option<f64>) -> Result<Self, String> {
        let (sink, timeout) = match c.sink() {
            Some((sink, timeout)) => (Some(sink), timeout),
            None => (None, Duration::from_secs(10)),
        };
        Ok(Self {
            sink,
            hub: c.signing().and_then(HubSignature::new),
            http: Http {
                client: duijie_connectors::http::client()?,
                timeout,
                next_slot: rate_per_sec
                    .map(|r| (Duration::from_secs_f64(1.0 / r), Mutex::new(Instant::now()))),
            },
        })
    }

    pub fn kind(&self) -> &'static str {
        self.sink.as_ref().map_or("pull", |s| s.kind())
    }

    /// The hub's signature, when `[hub.signing]` is set.
    pub fn hub(&self) -> Option<&HubSignature> {
        self.hub.as_ref()
    }

    /// Whether several records go in one request.
    pub fn batches(&self) -> bool {
        self.sink.as_ref().is_some_and(|s| s.batches())
    }

    /// The request that carries `outs` at Unix time `ts`; `None` for a
    /// pull feed, or when nothing is to be sent.
    pub fn request(&self, outs: &[&Outgoing], ts: i64) -> Option<WireRequest> {
        self.sink.as_ref()?.request(outs, ts)
    }

    /// One attempt for `outs`; one answer per record.
    pub async fn send(&self, outs: &[&Outgoing]) -> Vec<Attempt> {
        if outs.iter().all(|o| o.unsent()) {
            return outs
                .iter()
                .map(|_| Attempt::Accepted(Ack::default()))
                .collect();
        }
        let Some(sink) = &self.sink else {
            return outs
                .iter()
                .map(|_| Attempt::Refused("pull feeds are not pushed".into()))
                .collect();
        };
        self.http.pace().await;
        sink.send(&self.http, outs).await
    }
}

/// The records of `outs` that are sent (policy withholds the others).
fn sent<'a>(outs: &'a [&'a Outgoing]) -> impl Iterator<Item = &'a Outgoing> {
    outs.iter().copied().filter(|o| !o.unsent())
}

async fn single(
    response: Result<reqwest::Response, reqwest::Error>,
    key: Option<&ReceiptKey>,
) -> Attempt {
    match response {
        Err(e) => Attempt::transient(e.to_string()),
        Ok(r) => {
            let status = r.status();
            if status.is_success() {
                return match acknowledged(r, key).await {
                    Ok((_, ack)) => Attempt::Accepted(ack),
                    Err(a) => a,
                };
            }
            let headers = r.headers().clone();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            classify(status, &headers, &body)
        }
    }
}

/// A refusal by the house's one rule
/// (`duijie_connectors::http::is_transient_status`: 5xx, 408 and 429 are
/// worth retrying, after the receiver's `Retry-After`); any other refusal
/// is the receiver's answer.
fn classify(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
) -> Attempt {
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {status}"));
    if duijie_connectors::http::is_transient_status(status) {
        Attempt::Transient {
            reason: format!("HTTP {status}: {message}"),
            retry_after: duijie_connectors::http::retry_after(
                headers,
                std::time::SystemTime::now(),
            ),
        }
    } else {
        Attempt::Refused(format!("HTTP {status}: {message}"))
    }
}

/// A receiver's answer to a batch, record by record: `results`, each
/// with its `idempotency_key`, `status` (`ACCEPTED` or another) and
/// `reason` (the credit platform's layout, which batch webhooks share).
pub(super) async fn per_record(
    outs: &[&Outgoing],
    answer: Answer,
    key: Option<&ReceiptKey>,
) -> Vec<Attempt> {
    let response = match answer {
        Ok(r) => r,
        Err(e) => {
            return outs
                .iter()
                .map(|_| Attempt::transient(e.to_string()))
                .collect();
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    if !status.is_success() {
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let a = classify(status, &headers, &body);
        return outs.iter().map(|_| a.clone()).collect();
    }
    // The whole answer is what the platform signed: each record's receipt
    // keeps it.
    let (bytes, ack) = match acknowledged(response, key).await {
        Ok(a) => a,
        Err(a) => return outs.iter().map(|_| a.clone()).collect(),
    };
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let results = body
        .get("results")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    outs.iter()
        .map(|o| match o {
            Outgoing::NotSent { .. } | Outgoing::Held { .. } => Attempt::Accepted(Ack::default()),
            other => {
                let answer = results.iter().find(|r| {
                    r.get("idempotency_key").and_then(Value::as_str) == Some(other.key())
                });
                match answer {
                    Some(r) if r.get("status").and_then(Value::as_str) == Some("ACCEPTED") => {
                        Attempt::Accepted(ack.clone())
                    }
                    Some(r) => Attempt::Refused(
                        r.get("reason")
                            .and_then(Value::as_str)
                            .unwrap_or("rejected without a reason")
                            .to_owned(),
                    ),
                    None => Attempt::transient("the receiver's answer leaves the record out"),
                }
            }
        })
        .collect()
}

/// A JSON value as XML elements (arrays as repeated `<item>`).
fn to_xml(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("<{k}>{}</{k}>", to_xml(v)))
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|i| format!("<item>{}</item>", to_xml(i)))
            .collect(),
        Value::Null => String::new(),
        Value::String(s) => quick_xml::escape::escape(s.as_str()).into_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
    use serde_json::json;

    /// Push targets follow the same status rule as sources: a 408 is tried
    /// again, after the receiver's `Retry-After`; a 400 is its answer.
    #[test]
    fn a_refusal_is_classified_by_the_house_rule_with_retry_after() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let body = json!({"message": "稍后重试"});
        match classify(reqwest::StatusCode::REQUEST_TIMEOUT, &h, &body) {
            Attempt::Transient {
                reason,
                retry_after,
            } => {
                assert!(
                    reason.contains("408") && reason.contains("稍后重试"),
                    "{reason}"
                );
                assert_eq!(retry_after, Some(Duration::from_secs(7)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(
                reqwest::StatusCode::TOO_MANY_REQUESTS,
                &HeaderMap::new(),
                &body
            ),
            Attempt::Transient {
                retry_after: None,
                ..
            }
        ));
        assert!(matches!(
            classify(reqwest::StatusCode::BAD_REQUEST, &h, &body),
            Attempt::Refused(r) if r.contains("稍后重试")
        ));
    }
}
