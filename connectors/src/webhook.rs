//! Webhook: records pushed to the hub in real time (urgent grid events),
//! each message signed with HMAC-SHA256 over the timestamp and the body.
//!
//! The sender puts the Unix time in seconds in the timestamp header and
//! `sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>` in the
//! signature header. A message is refused — and never written to the bus —
//! when it is unsigned, wrongly signed, older (or further in the future)
//! than `max_age`, or a replay of a message already taken.
//!
//! A checked message is *reserved* at once, atomically with the replay
//! check, so that concurrent copies of it are refused (409) while the first
//! is being produced. If producing fails, the runtime releases the
//! reservation ([`Webhook::release`]) and the sender's retry is taken; once
//! the broker acknowledged it, the message is taken ([`Webhook::taken`])
//! and remembered for twice `max_age` (older copies are refused as stale
//! anyway). The memory is bounded: at most `max_remembered` messages;
//! beyond that, new messages are refused with 503 until old ones expire.
//!
//! This module checks and turns a message into a [`RawRecord`]; serving
//! HTTP, producing and acknowledging belong to the runtime.

use crate::{PayloadFormat, RawRecord};
use bytes::Bytes;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Configuration of a webhook source.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Path the hub serves, e.g. `/hooks/grid/urgent`.
    pub path: String,
    /// Shared secret of the HMAC signature.
    pub secret: String,
    /// The HMAC the sender signs with: `hmac-sha256` (default) or
    /// `hmac-sm3` (the `gm` suite, GB/T 32905).
    #[serde(default)]
    pub signature: crate::signature::HmacScheme,
    /// Header carrying `sha256=<hex>` (`sm3=<hex>` with HMAC-SM3).
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    /// Header carrying the Unix time of sending, in seconds.
    #[serde(default = "default_timestamp_header")]
    pub timestamp_header: String,
    /// Messages further than this from now are refused as replays.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    /// Larger bodies are refused with 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Payload format: `json` (default) or `xml`.
    #[serde(default = "default_format")]
    pub format: PayloadFormat,
    /// Messages remembered for replay detection, at most (default 100,000).
    #[serde(default = "default_max_remembered")]
    pub max_remembered: usize,
}

fn default_max_remembered() -> usize {
    100_000
}

fn default_signature_header() -> String {
    "X-Signature".into()
}
fn default_timestamp_header() -> String {
    "X-Timestamp".into()
}
fn default_max_age() -> Duration {
    Duration::from_secs(300)
}
fn default_max_body_bytes() -> usize {
    1 << 20
}
fn default_format() -> PayloadFormat {
    PayloadFormat::Json
}

impl WebhookConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.path.starts_with('/') {
            return Err("`path` must start with `/`".into());
        }
        if self.secret.len() < 16 {
            return Err("`secret` must be at least 16 characters".into());
        }
        Ok(())
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("message is not signed (no {0} header)")]
    Unsigned(String),
    #[error("message has no usable timestamp ({0})")]
    BadTimestamp(String),
    #[error("signature does not match the body and timestamp")]
    BadSignature,
    #[error("message is {age_secs} s away from now, more than the {max_secs} s allowed (replay?)")]
    Stale { age_secs: i64, max_secs: u64 },
    #[error("message was already taken (replay)")]
    Replayed,
    #[error("body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("too many messages in the last {0} s to remember; retry later")]
    Busy(u64),
}

impl Refusal {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::TooLarge(_) => 413,
            Refusal::Replayed => 409,
            Refusal::Busy(_) => 503,
            _ => 401,
        }
    }
}

/// A webhook endpoint's checks and memory of what it took.
#[derive(Debug)]
pub struct Webhook {
    pub config: WebhookConfig,
    /// Signatures reserved or taken, with when they may be forgotten (Unix
    /// seconds).
    taken: Mutex<HashMap<String, i64>>,
}

/// A checked message.
#[derive(Debug, Clone)]
pub struct Message {
    pub record: RawRecord,
    /// Identifies the message for replay detection.
    pub signature: String,
}

impl Webhook {
    pub fn new(config: WebhookConfig) -> Self {
        Self {
            config,
            taken: Mutex::new(HashMap::new()),
        }
    }

    /// Checks a message. `header` looks a header up by name
    /// (case-insensitively); `now_ms` is the current time.
    pub fn check(
        &self,
        header: impl Fn(&str) -> Option<String>,
        body: &[u8],
        now_ms: i64,
    ) -> Result<Message, Refusal> {
        let c = &self.config;
        if body.len() > c.max_body_bytes {
            return Err(Refusal::TooLarge(c.max_body_bytes));
        }
        let signature = header(&c.signature_header)
            .ok_or_else(|| Refusal::Unsigned(c.signature_header.clone()))?;
        let timestamp = header(&c.timestamp_header)
            .ok_or_else(|| Refusal::BadTimestamp(format!("no {} header", c.timestamp_header)))?;
        let ts: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| Refusal::BadTimestamp(format!("`{timestamp}` is not Unix seconds")))?;
        let suite = c.signature.suite();
        if !crate::signature::verify_with(suite, &c.secret, timestamp.trim(), body, &signature) {
            return Err(Refusal::BadSignature);
        }
        let hex_sig = crate::signature::bare(suite, &signature);
        let age = now_ms / 1000 - ts;
        if age.unsigned_abs() > c.max_age.as_secs() {
            return Err(Refusal::Stale {
                age_secs: age,
                max_secs: c.max_age.as_secs(),
            });
        }
        let key = hex_sig.to_ascii_lowercase();
        {
            // Check and reserve in one step: a concurrent copy sees the
            // reservation.
            let mut taken = self.taken.lock().expect("webhook lock");
            let now_s = now_ms / 1000;
            if taken.contains_key(&key) {
                return Err(Refusal::Replayed);
            }
            if taken.len() >= c.max_remembered {
                taken.retain(|_, forget_at| *forget_at > now_s);
                if taken.len() >= c.max_remembered {
                    return Err(Refusal::Busy(2 * c.max_age.as_secs()));
                }
            }
            taken.insert(key.clone(), now_s + 2 * c.max_age.as_secs() as i64);
        }
        Ok(Message {
            record: RawRecord {
                payload: Bytes::copy_from_slice(body),
                format: c.format,
                fetched_at_ms: now_ms,
                origin: format!("POST {} at {ts}", c.path),
            },
            signature: key,
        })
    }

    /// The message is durable: a later copy of it is a replay until it
    /// would be refused as stale anyway.
    pub fn taken(&self, message: &Message, now_ms: i64) {
        let forget_at = now_ms / 1000 + 2 * self.config.max_age.as_secs() as i64;
        self.taken
            .lock()
            .expect("webhook lock")
            .insert(message.signature.clone(), forget_at);
    }

    /// The message could not be made durable: its reservation is dropped,
    /// so that the sender's retry is taken.
    pub fn release(&self, message: &Message) {
        self.taken
            .lock()
            .expect("webhook lock")
            .remove(&message.signature);
    }

    /// The body limit in force (see [`Webhook::limit_body`]).
    pub fn max_body_bytes(&self) -> usize {
        self.config.max_body_bytes
    }
}

/// Signs a body the way senders must (for simulators and tests).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    crate::signature::sign(secret, &timestamp.to_string(), body)
}

impl crate::Transport for Webhook {
    const KIND: &'static str = "webhook";
    const DRIVE: crate::Drive = crate::Drive::Served;
    type Config = WebhookConfig;

    fn validate(config: &Self::Config) -> Result<(), String> {
        config.validate()
    }

    fn build(config: &Self::Config) -> Result<crate::BuiltSource, crate::SourceError> {
        use crate::BuiltSource;
        Ok(BuiltSource::Serve(std::sync::Arc::new(Webhook::new(
            config.clone(),
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "grid-urgent-secret-2026";

    fn hook() -> Webhook {
        Webhook::new(WebhookConfig {
            path: "/hooks/grid".into(),
            secret: SECRET.into(),
            signature: Default::default(),
            signature_header: default_signature_header(),
            timestamp_header: default_timestamp_header(),
            max_age: Duration::from_secs(300),
            max_body_bytes: 1024,
            format: PayloadFormat::Json,
            max_remembered: 3,
        })
    }

    fn headers(sig: Option<String>, ts: Option<i64>) -> impl Fn(&str) -> Option<String> {
        move |name: &str| match name {
            "X-Signature" => sig.clone(),
            "X-Timestamp" => ts.map(|t| t.to_string()),
            _ => None,
        }
    }

    /// A sender on the `gm` suite: HMAC-SM3 is taken, the same message
    /// signed with HMAC-SHA256 is refused.
    #[test]
    fn a_webhook_on_hmac_sm3_takes_sm3_and_refuses_sha256() {
        let mut config = hook().config;
        config.signature = crate::signature::HmacScheme::HmacSm3;
        let h = Webhook::new(config);
        let body = br#"{"eventNo":"WG2"}"#;
        let now = 1_790_000_000_000;
        let ts = (now / 1000).to_string();
        let sha = sign(SECRET, now / 1000, body);
        assert_eq!(
            h.check(headers(Some(sha), Some(now / 1000)), body, now)
                .unwrap_err(),
            Refusal::BadSignature
        );
        let sm3 = crate::signature::sign_with(crate::signature::Suite::Gm, SECRET, &ts, body);
        assert!(sm3.starts_with("sm3="));
        h.check(headers(Some(sm3), Some(now / 1000)), body, now)
            .unwrap();
    }

    #[test]
    fn a_signed_fresh_delivery_is_taken_once() {
        let h = hook();
        let body = br#"{"eventNo":"WG1"}"#;
        let now = 1_790_000_000_000;
        let sig = sign(SECRET, now / 1000, body);
        let d = h
            .check(headers(Some(sig.clone()), Some(now / 1000)), body, now)
            .unwrap();
        assert_eq!(&d.record.payload[..], body);
        // Reserved: a concurrent copy is refused while the first is produced.
        assert_eq!(
            h.check(
                headers(Some(sig.clone()), Some(now / 1000)),
                body,
                now + 1000
            )
            .unwrap_err(),
            Refusal::Replayed
        );
        // Producing failed: the sender's retry is taken.
        h.release(&d);
        let d = h
            .check(
                headers(Some(sig.clone()), Some(now / 1000)),
                body,
                now + 1000,
            )
            .unwrap();
        h.taken(&d, now);
        assert_eq!(
            h.check(headers(Some(sig), Some(now / 1000)), body, now + 2000)
                .unwrap_err(),
            Refusal::Replayed
        );
    }

    #[test]
    fn the_replay_memory_is_bounded() {
        let h = hook();
        let now = 1_790_000_000_000;
        let ts = now / 1000;
        for i in 0..3 {
            let body = format!(r#"{{"eventNo":"WG{i}"}}"#);
            let sig = sign(SECRET, ts, body.as_bytes());
            h.check(headers(Some(sig), Some(ts)), body.as_bytes(), now)
                .unwrap();
        }
        let body = br#"{"eventNo":"WG9"}"#;
        let sig = sign(SECRET, ts, body);
        assert_eq!(
            h.check(headers(Some(sig.clone()), Some(ts)), body, now)
                .unwrap_err(),
            Refusal::Busy(600)
        );
        // Once the remembered ones expire, there is room again.
        let later = now + 601_000;
        let sig = sign(SECRET, later / 1000, body);
        assert!(
            h.check(headers(Some(sig), Some(later / 1000)), body, later)
                .is_ok()
        );
    }

    #[test]
    fn unsigned_wrongly_signed_stale_and_oversized_are_refused() {
        let h = hook();
        let body = br#"{"eventNo":"WG2"}"#;
        let now = 1_790_000_000_000;
        let ts = now / 1000;
        assert!(matches!(
            h.check(headers(None, Some(ts)), body, now),
            Err(Refusal::Unsigned(_))
        ));
        let wrong = sign("another-secret-entirely", ts, body);
        assert_eq!(
            h.check(headers(Some(wrong), Some(ts)), body, now)
                .unwrap_err(),
            Refusal::BadSignature
        );
        let tampered = sign(SECRET, ts, br#"{"eventNo":"WG3"}"#);
        assert_eq!(
            h.check(headers(Some(tampered), Some(ts)), body, now)
                .unwrap_err(),
            Refusal::BadSignature
        );
        let old = ts - 301;
        let stale = sign(SECRET, old, body);
        assert!(matches!(
            h.check(headers(Some(stale), Some(old)), body, now),
            Err(Refusal::Stale { .. })
        ));
        let big = vec![b'x'; 2000];
        let sig = sign(SECRET, ts, &big);
        assert_eq!(
            h.check(headers(Some(sig), Some(ts)), &big, now)
                .unwrap_err(),
            Refusal::TooLarge(1024)
        );
    }
}
