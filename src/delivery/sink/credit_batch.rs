//! The credit platform's HTTPS batch API (信用平台批量接口): publications
//! go together to `<url>/batch`, which answers per record by idempotency
//! key; a withdrawal goes alone to `<url>/withdraw`.

use super::{Answer, Attempt, Http, Sink, WireRequest, classify, sent, single};
use crate::delivery::transform::Outgoing;
use futures::future::BoxFuture;
use serde_json::{Value, json};

#[derive(Debug)]
pub(super) struct CreditBatch {
    url: String,
}

impl CreditBatch {
    pub(super) fn new(url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
        }
    }
}

impl Sink for CreditBatch {
    fn kind(&self) -> &'static str {
        "credit_batch"
    }

    fn batches(&self) -> bool {
        true
    }

    fn request(&self, outs: &[&Outgoing], _ts: i64) -> Option<WireRequest> {
        let url = &self.url;
        Some(match sent(outs).next()? {
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
        })
    }

    fn send<'a>(&'a self, http: &'a Http, outs: &'a [&'a Outgoing]) -> BoxFuture<'a, Vec<Attempt>> {
        Box::pin(async move {
            let ts = chrono::Utc::now().timestamp();
            // A withdrawal goes alone; publications in one batch.
            if let [Outgoing::Withdraw { .. }] = outs {
                let req = self.request(outs, ts).expect("a withdrawal is sent");
                return vec![single(http.execute(req).await).await];
            }
            let Some(req) = self.request(outs, ts) else {
                return outs.iter().map(|_| Attempt::Accepted).collect();
            };
            per_record(outs, http.execute(req).await).await
        })
    }
}

/// The platform's answer to a batch, record by record.
async fn per_record(outs: &[&Outgoing], answer: Answer) -> Vec<Attempt> {
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
            Outgoing::NotSent { .. } | Outgoing::Held { .. } => Attempt::Accepted,
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
