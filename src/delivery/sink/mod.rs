//! Push targets (sinks): where a push pipeline's records go and how an
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

use super::config::TargetConfig;
use super::transform::Outgoing;
use futures::future::BoxFuture;
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// One HTTP request exactly as the receiver gets it (what `send` sends and
/// `duijie push preview` prints).
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
pub(super) struct HubSignature {
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
    Accepted,
    /// The receiver refused it; this reason is its own.
    Refused(String),
    /// Worth trying again, after the receiver's `Retry-After` if it gave
    /// one.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
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
        Box::pin(single(answer))
    }

    /// One attempt for `outs`, one answer per record: by default one
    /// request per record, in order.
    fn send<'a>(&'a self, http: &'a Http, outs: &'a [&'a Outgoing]) -> BoxFuture<'a, Vec<Attempt>> {
        Box::pin(async move {
            let mut answers = Vec::with_capacity(outs.len());
            for out in outs {
                answers.push(match self.request(&[out], chrono::Utc::now().timestamp()) {
                    Some(req) => self.answer(http.execute(req).await).await,
                    None => Attempt::Accepted,
                });
            }
            answers
        })
    }
}

impl TargetConfig {
    /// The sink of this target and its requests' timeout; `None` for a
    /// pull feed.
    pub fn sink(&self) -> Option<(Box<dyn Sink>, Duration)> {
        Some(match self {
            TargetConfig::CreditBatch { url, timeout } => {
                (Box::new(credit_batch::CreditBatch::new(url)), *timeout)
            }
            TargetConfig::Webhook {
                url,
                secret,
                timeout,
                signature,
                signing,
                encryption,
                ..
            } => (
                Box::new(webhook::Webhook::new(
                    url,
                    secret,
                    *signature,
                    signing.as_ref(),
                    encryption.as_ref(),
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

    async fn execute(&self, req: WireRequest) -> Answer {
        let mut builder = self.client.post(&req.url).timeout(self.timeout);
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        builder.body(req.body).send().await
    }
}

/// A target: its sink (none for a pull feed) and what sinks share.
#[derive(Debug)]
pub struct Target {
    sink: Option<Box<dyn Sink>>,
    http: Http,
}

impl Target {
    pub fn from_config(c: &TargetConfig, rate_per_sec: Option<f64>) -> Result<Self, String> {
        let (sink, timeout) = match c.sink() {
            Some((sink, timeout)) => (Some(sink), timeout),
            None => (None, Duration::from_secs(10)),
        };
        Ok(Self {
            sink,
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
            return outs.iter().map(|_| Attempt::Accepted).collect();
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

async fn single(response: Result<reqwest::Response, reqwest::Error>) -> Attempt {
    match response {
        Err(e) => Attempt::transient(e.to_string()),
        Ok(r) => {
            let status = r.status();
            if status.is_success() {
                return Attempt::Accepted;
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
