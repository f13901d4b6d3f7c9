//! Where records go, and how an answer is read: accepted, refused by the
//! receiver (not retried), or a transient failure (retried).

use super::config::TargetConfig;
use super::transform::Outgoing;
use serde_json::{Value, json};
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

#[derive(Debug)]
enum Kind {
    CreditBatch { url: String },
    Webhook { url: String, secret: String },
    Soap { url: String, action: String },
    Pull,
}

/// A target with its HTTP client and rate limit.
#[derive(Debug)]
pub struct Target {
    kind: Kind,
    /// The hub's one HTTP client (`duijie_connectors::http::client`).
    client: reqwest::Client,
    /// Each request's timeout.
    timeout: Duration,
    /// Earliest time of the next request.
    next_slot: Option<(Duration, Mutex<Instant>)>,
}

impl Target {
    pub fn from_config(c: &TargetConfig, rate_per_sec: Option<f64>) -> Result<Self, String> {
        let (kind, timeout) = match c {
            TargetConfig::CreditBatch { url, timeout } => (
                Kind::CreditBatch {
                    url: url.trim_end_matches('/').to_owned(),
                },
                *timeout,
            ),
            TargetConfig::Webhook {
                url,
                secret,
                timeout,
            } => (
                Kind::Webhook {
                    url: url.clone(),
                    secret: secret.clone(),
                },
                *timeout,
            ),
            TargetConfig::Soap {
                url,
                soap_action,
                timeout,
            } => (
                Kind::Soap {
                    url: url.clone(),
                    action: soap_action.clone(),
                },
                *timeout,
            ),
            TargetConfig::Pull { .. } => (Kind::Pull, Duration::from_secs(10)),
        };
        let client = duijie_connectors::http::client()?;
        Ok(Self {
            kind,
            client,
            timeout,
            next_slot: rate_per_sec
                .map(|r| (Duration::from_secs_f64(1.0 / r), Mutex::new(Instant::now()))),
        })
    }

    pub fn kind(&self) -> &'static str {
        match self.kind {
            Kind::CreditBatch { .. } => "credit_batch",
            Kind::Webhook { .. } => "webhook",
            Kind::Soap { .. } => "soap",
            Kind::Pull => "pull",
        }
    }

    /// Whether several records go in one request.
    pub fn batches(&self) -> bool {
        matches!(self.kind, Kind::CreditBatch { .. })
    }

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

    /// The request that carries `outs` (one record, or a credit batch), at
    /// Unix time `ts` (signatures); `None` for a pull feed, or when nothing
    /// is to be sent.
    pub fn request(&self, outs: &[&Outgoing], ts: i64) -> Option<WireRequest> {
        let sent: Vec<&&Outgoing> = outs
            .iter()
            .filter(|o| !matches!(o, Outgoing::NotSent { .. }))
            .collect();
        let first = sent.first()?;
        Some(match &self.kind {
            Kind::CreditBatch { url } => match first {
                Outgoing::Withdraw { body, .. } => WireRequest::post(
                    format!("{url}/withdraw"),
                    vec![("Content-Type", "application/json".into())],
                    body.to_string(),
                ),
                _ => {
                    let records: Vec<Value> = outs
                        .iter()
                        .filter_map(|o| match o {
                            Outgoing::Publish { body, .. } => Some(body.clone()),
                            _ => None,
                        })
                        .collect();
                    WireRequest::post(
                        format!("{url}/batch"),
                        vec![("Content-Type", "application/json".into())],
                        json!({ "records": records }).to_string(),
                    )
                }
            },
            Kind::Webhook { url, secret } => {
                let url = match first {
                    Outgoing::Json {
                        route: Some(team), ..
                    } => url.replace("{team}", team),
                    _ => url.to_owned(),
                };
                let body = first.body().to_string();
                let ts = ts.to_string();
                let signature = duijie_connectors::signature::sign(secret, &ts, body.as_bytes());
                WireRequest::post(
                    url,
                    vec![
                        ("Content-Type", "application/json; charset=utf-8".into()),
                        ("X-Timestamp", ts),
                        ("X-Signature", signature),
                        ("Idempotency-Key", first.key().to_owned()),
                    ],
                    body,
                )
            }
            Kind::Soap { url, action } => WireRequest::post(
                url.clone(),
                vec![
                    ("Content-Type", "text/xml; charset=utf-8".into()),
                    ("SOAPAction", format!("\"{action}\"")),
                ],
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Header><IdempotencyKey>{}</IdempotencyKey></soapenv:Header><soapenv:Body><Receive xmlns=\"urn:duijie:feed\"><Record>{}</Record></Receive></soapenv:Body></soapenv:Envelope>",
                    quick_xml::escape::escape(first.key()),
                    to_xml(&first.body())
                ),
            ),
            Kind::Pull => return None,
        })
    }

    async fn execute(&self, req: WireRequest) -> Result<reqwest::Response, reqwest::Error> {
        let mut builder = self.client.post(&req.url).timeout(self.timeout);
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        builder.body(req.body).send().await
    }

    /// One attempt for `outs`; one answer per record.
    pub async fn send(&self, outs: &[&Outgoing]) -> Vec<Attempt> {
        let pending: Vec<&&Outgoing> = outs
            .iter()
            .filter(|o| !matches!(o, Outgoing::NotSent { .. }))
            .collect();
        if pending.is_empty() {
            return outs.iter().map(|_| Attempt::Accepted).collect();
        }
        self.pace().await;
        match &self.kind {
            Kind::CreditBatch { .. } => self.credit(outs).await,
            Kind::Webhook { .. } => {
                let mut answers = Vec::with_capacity(outs.len());
                for out in outs {
                    answers.push(self.webhook(out).await);
                }
                answers
            }
            Kind::Soap { .. } => {
                let mut answers = Vec::with_capacity(outs.len());
                for out in outs {
                    answers.push(self.soap(out).await);
                }
                answers
            }
            Kind::Pull => outs
                .iter()
                .map(|_| Attempt::Refused("pull feeds are not pushed".into()))
                .collect(),
        }
    }

    async fn credit(&self, outs: &[&Outgoing]) -> Vec<Attempt> {
        let ts = chrono::Utc::now().timestamp();
        // A withdrawal goes alone; publications in one batch.
        if let [Outgoing::Withdraw { .. }] = outs {
            let req = self.request(outs, ts).expect("a withdrawal is sent");
            return vec![single(self.execute(req).await).await];
        }
        let Some(req) = self.request(outs, ts) else {
            return outs.iter().map(|_| Attempt::Accepted).collect();
        };
        let response = self.execute(req).await;
        let response = match response {
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
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let a = classify(status, &headers, &body);
            return outs.iter().map(|_| a.clone()).collect();
        }
        let results = body
            .get("results")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        outs.iter()
            .map(|o| match o {
                Outgoing::NotSent { .. } => Attempt::Accepted,
                other => {
                    let answer = results.iter().find(|r| {
                        r.get("idempotency_key").and_then(Value::as_str) == Some(other.key())
                    });
                    match answer {
                        Some(r) if r.get("status").and_then(Value::as_str) == Some("ACCEPTED") => {
                            Attempt::Accepted
                        }
                        Some(r) => Attempt::Refused(
                            r.get("reason")
                                .and_then(Value::as_str)
                                .unwrap_or("rejected without a reason")
                                .to_owned(),
                        ),
                        None => Attempt::transient("the platform's answer leaves the record out"),
                    }
                }
            })
            .collect()
    }

    async fn webhook(&self, out: &Outgoing) -> Attempt {
        match self.request(&[out], chrono::Utc::now().timestamp()) {
            Some(req) => single(self.execute(req).await).await,
            None => Attempt::Accepted,
        }
    }

    async fn soap(&self, out: &Outgoing) -> Attempt {
        let Some(req) = self.request(&[out], chrono::Utc::now().timestamp()) else {
            return Attempt::Accepted;
        };
        let response = self.execute(req).await;
        match response {
            Err(e) => Attempt::transient(e.to_string()),
            Ok(r) => {
                let status = r.status();
                let headers = r.headers().clone();
                let text = r.text().await.unwrap_or_default();
                if text.contains(":Fault>") || text.contains("<Fault>") {
                    let reason = duijie_connectors::xml_split::element_text(&text, "faultstring")
                        .unwrap_or(text.clone());
                    return if status.is_server_error() {
                        Attempt::transient(reason)
                    } else {
                        Attempt::Refused(reason)
                    };
                }
                if status.is_success() {
                    Attempt::Accepted
                } else {
                    let reason = duijie_connectors::xml_split::element_text(&text, "Message")
                        .unwrap_or_else(|| format!("HTTP {status}"));
                    classify(status, &headers, &json!({ "message": reason }))
                }
            }
        }
    }
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
