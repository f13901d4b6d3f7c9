//! An HTTPS webhook: a JSON body, `X-Timestamp`, `Idempotency-Key`,
//! `X-Signature` (HMAC-SM3 or HMAC-SHA256 over `<timestamp>.<key>.<body>`,
//! the house's signature scheme 2, named in `X-Signature-Scheme`), and with
//! `[hub.signing]` the hub's SM2 signature over the same bytes
//! (`X-Signature-SM2`, its key in `X-Signature-SM2-Key`, its identifier in
//! `X-Signature-SM2-Id`, its layout in `X-Signature-SM2-Form`). `{team}` in
//! the URL is replaced by the route of a licence notice. With
//! `encryption`, the body is the receiver's SM4 envelope ([`super::envelope`])
//! and the signatures cover the envelope as sent.

use super::{Sink, WireRequest, sent};
use crate::delivery::transform::Outgoing;

#[derive(Debug)]
pub(super) struct Webhook {
    url: String,
    secret: String,
    suite: duijie_connectors::signature::Suite,
    sm2: Option<super::HubSignature>,
    envelope: Option<super::envelope::Envelope>,
    receipt: Option<super::ReceiptKey>,
}

impl Webhook {
    pub(super) fn new(
        url: &str,
        secret: &str,
        scheme: crate::delivery::HmacScheme,
        signing: Option<&crate::delivery::Signing>,
        encryption: Option<&crate::delivery::BodyEncryption>,
        receipt: Option<super::ReceiptKey>,
    ) -> Self {
        Self {
            url: url.to_owned(),
            secret: secret.to_owned(),
            suite: scheme.suite(),
            sm2: signing.and_then(super::HubSignature::new),
            envelope: encryption.and_then(super::envelope::Envelope::new),
            receipt,
        }
    }
}

impl Sink for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn answer(&self, answer: super::Answer) -> futures::future::BoxFuture<'_, super::Attempt> {
        Box::pin(super::single(answer, self.receipt.as_ref()))
    }

    fn request(&self, outs: &[&Outgoing], ts: i64) -> Option<WireRequest> {
        let first = sent(outs).next()?;
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
        headers.push(("Idempotency-Key", key));
        Some(WireRequest::post(url, headers, body))
    }
}
