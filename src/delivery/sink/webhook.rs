//! An HTTPS webhook: a JSON body, `X-Timestamp`, `Idempotency-Key`,
//! `X-Signature` (HMAC-SM3 or HMAC-SHA256 over `<timestamp>.<key>.<body>`,
//! the house's signature scheme 2, named in `X-Signature-Scheme`), and with
//! `[hub.signing]` the hub's SM2 signature over the same bytes
//! (`X-Signature-SM2`, its key in `X-Signature-SM2-Key`, its identifier in
//! `X-Signature-SM2-Id`, its layout in `X-Signature-SM2-Form`). `{team}` in
//! the URL is replaced by the route of a licence notice. With
//! `encryption`, the body is the receiver's SM4 envelope ([`super::envelope`])
//! and the signatures cover the envelope as sent.
//!
//! With `batch`, a partition's records go together, in offset order:
//! `{"records": [body, …]}` with `X-Delivery-Form: batch`, signed as
//! scheme 2 with an empty key (a batch has no one key; each body names its
//! own in `_delivery.idempotency_key`), and answered record by record
//! ([`super::per_record`]).

use super::{Ack, Attempt, Http, Sink, WireRequest, per_record, sent};
use crate::delivery::transform::Outgoing;
use futures::future::BoxFuture;

#[derive(Debug)]
pub(super) struct Webhook {
    url: String,
    secret: String,
    suite: duijie_connectors::signature::Suite,
    sm2: Option<super::HubSignature>,
    envelope: Option<super::envelope::Envelope>,
    receipt: Option<super::ReceiptKey>,
    batch: bool,
}

impl Webhook {
    pub(super) fn new(
        url: &str,
        secret: &str,
        scheme: crate::delivery::HmacScheme,
        signing: Option<&crate::delivery::Signing>,
        encryption: Option<&crate::delivery::BodyEncryption>,
        receipt: Option<super::ReceiptKey>,
        batch: bool,
    ) -> Self {
        Self {
            url: url.to_owned(),
            secret: secret.to_owned(),
            suite: scheme.suite(),
            sm2: signing.and_then(super::HubSignature::new),
            envelope: encryption.and_then(super::envelope::Envelope::new),
            receipt,
            batch,
        }
    }

    /// The signed request carrying `body` under idempotency key `key`
    /// (empty for a batch).
    fn post(&self, url: String, key: String, body: String, ts: i64) -> WireRequest {
        let ts = ts.to_string();
        use duijie_connectors::signature as sig;
        let signature = sig::sign_v2_with(self.suite, &self.secret, &ts, &key, body.as_bytes());
        let mut headers = vec![
            ("Content-Type", "application/json; charset=utf-8".into()),
            ("X-Timestamp", ts.clone()),
            ("X-Signature-Scheme", sig::scheme_v2(self.suite).into()),
            ("X-Signature", signature),
        ];
        if let Some(e) = &self.envelope {
            headers.push(("X-Body-Encryption", e.name().into()));
        }
        if let Some(sm2) = &self.sm2 {
            headers.extend(sm2.headers(&ts, &key, body.as_bytes()));
        }
        if self.batch {
            headers.push(("X-Delivery-Form", "batch".into()));
        } else {
            headers.push(("Idempotency-Key", key));
        }
        WireRequest::post(url, headers, body)
    }
}

impl Sink for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn answer(&self, answer: super::Answer) -> futures::future::BoxFuture<'_, super::Attempt> {
        Box::pin(super::single(answer, self.receipt.as_ref()))
    }

    fn batches(&self) -> bool {
        self.batch
    }

    fn request(&self, outs: &[&Outgoing], ts: i64) -> Option<WireRequest> {
        let first = sent(outs).next()?;
        if self.batch {
            let records: Vec<serde_json::Value> = sent(outs).map(Outgoing::body).collect();
            let body = serde_json::json!({ "records": records }).to_string();
            return Some(self.post(self.url.clone(), String::new(), body, ts));
        }
        let url = match first {
            Outgoing::Json {
                route: Some(team), ..
            } => self.url.replace("{team}", team),
            _ => self.url.clone(),
        };
        let key = first.key().to_owned();
        let body = match &self.envelope {
            Some(e) => e.seal(&key, first.body().to_string().as_bytes()),
            None => first.body().to_string(),
        };
        Some(self.post(url, key, body, ts))
    }

    fn send<'a>(&'a self, http: &'a Http, outs: &'a [&'a Outgoing]) -> BoxFuture<'a, Vec<Attempt>> {
        if !self.batch {
            return super::one_by_one(self, http, outs);
        }
        Box::pin(async move {
            match self.request(outs, chrono::Utc::now().timestamp()) {
                Some(req) => per_record(outs, http.execute(req).await, self.receipt.as_ref()).await,
                None => outs
                    .iter()
                    .map(|_| Attempt::Accepted(Ack::default()))
                    .collect(),
            }
        })
    }
}
