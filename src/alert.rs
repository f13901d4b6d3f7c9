//! Alerts: what the hub raises for people to act on (a deadline at risk
//! or passed, a delivery refused or failed, a calendar missing), written
//! as JSON to an alerts topic — one shape for every room that raises one.
//!
//! `kind` is a stable code (`CREDIT_PUBLICATION_LATE`, `DELIVERY_FAILED`,
//! `REFERRAL_AT_RISK`, …), `severity` `warning` or `critical`, `subject`
//! what it is about (a decision, a record, a referral number), `message`
//! the Chinese text staff read, `at_ms` when it was raised (UTC epoch
//! milliseconds); a room may add fields of its own (`delivery`,
//! `department`, `due_at`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Act soon: a deadline near, a record refused.
    Warning,
    /// Act now: a deadline passed, a delivery given up, a clock that cannot
    /// count.
    Critical,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub kind: String,
    pub severity: Severity,
    pub subject: String,
    pub message: String,
    pub at_ms: i64,
    /// The raising room's own fields.
    #[serde(flatten)]
    pub detail: BTreeMap<String, Value>,
}

impl Alert {
    pub fn new(
        kind: &str,
        severity: Severity,
        subject: &str,
        message: String,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        Self {
            kind: kind.to_owned(),
            severity,
            subject: subject.to_owned(),
            message,
            at_ms: at.timestamp_millis(),
            detail: BTreeMap::new(),
        }
    }

    /// Adds one of the raising room's fields.
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.detail.insert(field.to_owned(), value.into());
        self
    }

    /// The alert as its topic holds it; logged as it is raised.
    pub fn to_bytes(&self) -> Vec<u8> {
        tracing::warn!(kind = %self.kind, subject = %self.subject, message = %self.message, "alert");
        serde_json::to_vec(self).expect("alerts serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_is_flat_json_with_its_room_fields() {
        let at = chrono::DateTime::from_timestamp_millis(1_764_581_234_567).unwrap();
        let a = Alert::new(
            "DELIVERY_FAILED",
            Severity::Critical,
            "pen:1",
            "推送多次失败".into(),
            at,
        )
        .with("delivery", "credit_penalties")
        .with("due_at", Value::Null);
        let v: Value = serde_json::from_slice(&a.to_bytes()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "kind": "DELIVERY_FAILED", "severity": "critical", "subject": "pen:1",
                "message": "推送多次失败", "at_ms": 1_764_581_234_567_i64,
                "delivery": "credit_penalties", "due_at": null
            })
        );
        let back: Alert = serde_json::from_value(v).unwrap();
        assert_eq!(back, a);
    }
}
