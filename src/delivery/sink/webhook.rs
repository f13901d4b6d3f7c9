//! An HTTPS webhook: a JSON body, `X-Timestamp`, `Idempotency-Key`,
//! `X-Signature` (HMAC-SHA256 over `<timestamp>.<key>.<body>`, the house's
//! signature scheme 2, named in `X-Signature-Scheme`). `{team}` in the URL
//! is replaced by the route of a licence notice.

use super::{Sink, WireRequest, sent};
use crate::delivery::transform::Outgoing;

#[derive(Debug)]
pub(super) struct Webhook {
    url: String,
    secret: String,
}

impl Webhook {
    pub(super) fn new(url: &str, secret: &str) -> Self {
        Self {
            url: url.to_owned(),
            secret: secret.to_owned(),
        }
    }
}

impl Sink for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn request(&self, outs: &[&Outgoing], ts: i64) -> Option<WireRequest> {
        let first = sent(outs).next()?;
        let url = match first {
            Outgoing::Json {
                route: Some(team), ..
            } => self.url.replace("{team}", team),
            _ => self.url.clone(),
        };
        let body = first.body().to_string();
        let ts = ts.to_string();
        let key = first.key().to_owned();
        let signature =
            duijie_connectors::signature::sign_v2(&self.secret, &ts, &key, body.as_bytes());
        Some(WireRequest::post(
            url,
            vec![
                ("Content-Type", "application/json; charset=utf-8".into()),
                ("X-Timestamp", ts),
                (
                    "X-Signature-Scheme",
                    duijie_connectors::signature::SCHEME_V2.into(),
                ),
                ("X-Signature", signature),
                ("Idempotency-Key", key),
            ],
            body,
        ))
    }
}
