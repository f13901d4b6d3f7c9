//! A legacy SOAP 1.1 receiver: the record as XML elements in the body, the
//! idempotency key in the envelope header (and in `Idempotency-Key`), and
//! with `[hub.signing]` the hub's SM2 signature over
//! `<X-Timestamp>.<key>.<body>` in `X-Signature-SM2`. A SOAP fault from a
//! server error is retried; any other fault is the receiver's refusal.

use super::{Answer, Attempt, Sink, WireRequest, classify, sent, to_xml};
use crate::delivery::transform::Outgoing;
use futures::future::BoxFuture;
use serde_json::json;

#[derive(Debug)]
pub(super) struct Soap {
    url: String,
    action: String,
    sm2: Option<super::HubSignature>,
}

impl Soap {
    pub(super) fn new(url: &str, action: &str, signing: Option<&crate::delivery::Signing>) -> Self {
        Self {
            url: url.to_owned(),
            action: action.to_owned(),
            sm2: signing.and_then(super::HubSignature::new),
        }
    }
}

impl Sink for Soap {
    fn kind(&self) -> &'static str {
        "soap"
    }

    fn request(&self, outs: &[&Outgoing], ts: i64) -> Option<WireRequest> {
        let first = sent(outs).next()?;
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Header><IdempotencyKey>{}</IdempotencyKey></soapenv:Header><soapenv:Body><Receive xmlns=\"urn:duijie:feed\"><Record>{}</Record></Receive></soapenv:Body></soapenv:Envelope>",
            quick_xml::escape::escape(first.key()),
            to_xml(&first.body())
        );
        let ts = ts.to_string();
        let mut headers = vec![
            ("Content-Type", "text/xml; charset=utf-8".into()),
            ("SOAPAction", format!("\"{}\"", self.action)),
            ("X-Timestamp", ts.clone()),
            ("Idempotency-Key", first.key().to_owned()),
        ];
        if let Some(sm2) = &self.sm2 {
            headers.extend(sm2.headers(&ts, first.key(), body.as_bytes()));
        }
        Some(WireRequest::post(self.url.clone(), headers, body))
    }

    fn answer(&self, answer: Answer) -> BoxFuture<'_, Attempt> {
        Box::pin(async move {
            let r = match answer {
                Err(e) => return Attempt::transient(e.to_string()),
                Ok(r) => r,
            };
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
                Attempt::Accepted(super::Ack {
                    answer: Some(text.chars().take(super::ANSWER_KEPT).collect()),
                    signature: headers
                        .get("X-Signature-SM2")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    verified: false,
                })
            } else {
                let reason = duijie_connectors::xml_split::element_text(&text, "Message")
                    .unwrap_or_else(|| format!("HTTP {status}"));
                classify(status, &headers, &json!({ "message": reason }))
            }
        })
    }
}
