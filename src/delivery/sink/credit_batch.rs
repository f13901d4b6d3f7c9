//! The credit platform's HTTPS batch API (信用平台批量接口): publications
//! go together to `<url>/batch`, which answers per record by idempotency
//! key; a withdrawal goes alone to `<url>/withdraw`. With `[hub.signing]`
//! each request carries the hub's SM2 signature over `<timestamp>..<body>`
//! (scheme 2's bytes with an empty key: a batch has no one key); with
//! `receipt_key` the platform's answer must carry its SM2 signature, and is
//! kept with each record's receipt.

use super::{Ack, Attempt, Http, ReceiptKey, Sink, WireRequest, per_record, sent, single};
use crate::delivery::transform::Outgoing;
use futures::future::BoxFuture;
use serde_json::{Value, json};

#[derive(Debug)]
pub(super) struct CreditBatch {
    url: String,
    sm2: Option<super::HubSignature>,
    receipt: Option<ReceiptKey>,
}

impl CreditBatch {
    pub(super) fn new(
        url: &str,
        signing: Option<&crate::delivery::Signing>,
        receipt: Option<ReceiptKey>,
    ) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            sm2: signing.and_then(super::HubSignature::new),
            receipt,
        }
    }

    fn post(&self, url: String, body: String, ts: i64) -> WireRequest {
        let ts = ts.to_string();
        let mut headers = vec![
            ("Content-Type", "application/json".into()),
            ("X-Timestamp", ts.clone()),
        ];
        if let Some(sm2) = &self.sm2 {
            headers.extend(sm2.headers(&ts, "", body.as_bytes()));
        }
        WireRequest::post(url, headers, body)
    }
}

impl Sink for CreditBatch {
    fn kind(&self) -> &'static str {
        "credit_batch"
    }

    fn batches(&self) -> bool {
        true
    }

    fn request(&self, outs: &[&Outgoing], ts: i64) -> Option<WireRequest> {
        let url = &self.url;
        Some(match sent(outs).next()? {
            Outgoing::Withdraw { body, .. } => {
                self.post(format!("{url}/withdraw"), body.to_string(), ts)
            }
            _ => {
                let records: Vec<Value> = outs
                    .iter()
                    .filter_map(|o| match o {
                        Outgoing::Publish { body, .. } => Some(body.clone()),
                        _ => None,
                    })
                    .collect();
                self.post(
                    format!("{url}/batch"),
                    json!({ "records": records }).to_string(),
                    ts,
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
                return vec![single(http.execute(req).await, self.receipt.as_ref()).await];
            }
            let Some(req) = self.request(outs, ts) else {
                return outs
                    .iter()
                    .map(|_| Attempt::Accepted(Ack::default()))
                    .collect();
            };
            per_record(outs, http.execute(req).await, self.receipt.as_ref()).await
        })
    }
}
