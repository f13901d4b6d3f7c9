//! Where records go, and how an answer is read: accepted, refused by the
//! receiver (not retried), or a transient failure (retried).

use super::config::TargetConfig;
use super::transform::Outgoing;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// One attempt's answer for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Accepted,
    /// The receiver refused it; this reason is its own.
    Refused(String),
    /// Worth trying again.
    Transient(String),
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
    client: reqwest::Client,
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
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            kind,
            client,
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
            Kind::CreditBatch { url } => self.credit(url, outs).await,
            Kind::Webhook { url, secret } => {
                let mut answers = Vec::with_capacity(outs.len());
                for out in outs {
                    answers.push(self.webhook(url, secret, out).await);
                }
                answers
            }
            Kind::Soap { url, action } => {
                let mut answers = Vec::with_capacity(outs.len());
                for out in outs {
                    answers.push(self.soap(url, action, out).await);
                }
                answers
            }
            Kind::Pull => outs
                .iter()
                .map(|_| Attempt::Refused("pull feeds are not pushed".into()))
                .collect(),
        }
    }

    async fn credit(&self, base: &str, outs: &[&Outgoing]) -> Vec<Attempt> {
        // A withdrawal goes alone; publications in one batch.
        if let [Outgoing::Withdraw { body, .. }] = outs {
            return vec![
                single(
                    self.client
                        .post(format!("{base}/withdraw"))
                        .json(body)
                        .send()
                        .await,
                )
                .await,
            ];
        }
        let records: Vec<Value> = outs
            .iter()
            .filter_map(|o| match o {
                Outgoing::Publish { body, .. } => Some(body.clone()),
                _ => None,
            })
            .collect();
        let response = self
            .client
            .post(format!("{base}/batch"))
            .json(&json!({ "records": records }))
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                return outs
                    .iter()
                    .map(|_| Attempt::Transient(e.to_string()))
                    .collect();
            }
        };
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let a = classify(status, &body);
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
                        None => {
                            Attempt::Transient("the platform's answer leaves the record out".into())
                        }
                    }
                }
            })
            .collect()
    }

    async fn webhook(&self, url: &str, secret: &str, out: &Outgoing) -> Attempt {
        let url = match out {
            Outgoing::Json {
                route: Some(team), ..
            } => url.replace("{team}", team),
            _ => url.to_owned(),
        };
        let body = out.body().to_string();
        let ts = chrono::Utc::now().timestamp().to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let response = self
            .client
            .post(url)
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-Timestamp", ts)
            .header("X-Signature", signature)
            .header("Idempotency-Key", out.key())
            .body(body)
            .send()
            .await;
        single(response).await
    }

    async fn soap(&self, url: &str, action: &str, out: &Outgoing) -> Attempt {
        let envelope = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Header><IdempotencyKey>{}</IdempotencyKey></soapenv:Header><soapenv:Body><Receive xmlns=\"urn:duijie:feed\"><Record>{}</Record></Receive></soapenv:Body></soapenv:Envelope>",
            quick_xml::escape::escape(out.key()),
            to_xml(&out.body())
        );
        let response = self
            .client
            .post(url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"{action}\""))
            .body(envelope)
            .send()
            .await;
        match response {
            Err(e) => Attempt::Transient(e.to_string()),
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                if text.contains(":Fault>") || text.contains("<Fault>") {
                    let reason = duijie_connectors::xml_split::element_text(&text, "faultstring")
                        .unwrap_or(text.clone());
                    return if status.is_server_error() {
                        Attempt::Transient(reason)
                    } else {
                        Attempt::Refused(reason)
                    };
                }
                if status.is_success() {
                    Attempt::Accepted
                } else {
                    let reason = duijie_connectors::xml_split::element_text(&text, "Message")
                        .unwrap_or_else(|| format!("HTTP {status}"));
                    classify(status, &json!({ "message": reason }))
                }
            }
        }
    }
}

async fn single(response: Result<reqwest::Response, reqwest::Error>) -> Attempt {
    match response {
        Err(e) => Attempt::Transient(e.to_string()),
        Ok(r) => {
            let status = r.status();
            if status.is_success() {
                return Attempt::Accepted;
            }
            let body: Value = r.json().await.unwrap_or(Value::Null);
            classify(status, &body)
        }
    }
}

/// 5xx, 408 and 429 are worth retrying; any other refusal is the
/// receiver's answer.
fn classify(status: reqwest::StatusCode, body: &Value) -> Attempt {
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {status}"));
    if status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
    {
        Attempt::Transient(format!("HTTP {status}: {message}"))
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
