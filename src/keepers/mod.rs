//! The keepers of deadlines and lists, each in its own module with its own
//! config:
//! - [`publication`]: the credit publication clock (双公示: a penalty
//!   decision published within its limit, a change within its own);
//! - [`blacklist`]: the list of seriously dishonest entities and its
//!   procedure (严重失信主体名单, 国办发〔2020〕49号);
//! - [`commitments`]: the commitment tracker (告知承诺).
//!
//! Each reads its topics from the beginning ([`crate::bus::follow`]): they
//! are its memory, so a restarted hub rebuilds the same state, including
//! the alerts it raised before, and an alert is raised once, not once per
//! restart. Each looks at its state on a tick and writes what changed:
//! alerts, blacklist entries, leads for enforcement.

pub mod blacklist;
pub mod commitments;
pub mod publication;

pub use blacklist::run_blacklist;
pub use commitments::{CommitmentConfig, run_commitments};
pub use publication::{CreditConfig, run_credit_clock};

use crate::bus::Bus;
use crate::calendar::Calendar;
use crate::schema::SchemaSet;
use chrono::{DateTime, TimeZone, Utc};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Counters for metrics and the demo.
#[derive(Debug, Default)]
pub struct ClockStats {
    pub credit_pending: AtomicU64,
    pub credit_at_risk: AtomicU64,
    pub credit_late: AtomicU64,
    pub blacklisted: AtomicU64,
    /// Blacklist cases proposed and not yet decided.
    pub blacklist_open: AtomicU64,
    pub commitments_due_soon: AtomicU64,
    pub commitment_leads: AtomicU64,
}

/// What every keeper needs.
#[derive(Clone)]
pub struct KeeperContext {
    pub bus: Bus,
    pub producer: FutureProducer,
    pub schemas: Arc<SchemaSet>,
    pub calendar: Arc<Calendar>,
    pub alerts_topic: String,
    pub receipts_topic: String,
    pub stats: Arc<ClockStats>,
    pub tick: Duration,
    /// Natural persons' pseudonyms (`[hub] pseudonym_key`).
    pub pseudonyms: Option<crate::personal::Pseudonyms>,
    /// What time it is: every deadline a keeper judges, and every alert's
    /// time, is on this clock.
    pub clock: crate::calendar::Clock,
}

impl std::fmt::Debug for KeeperContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeeperContext")
            .field("alerts_topic", &self.alerts_topic)
            .finish_non_exhaustive()
    }
}

impl KeeperContext {
    pub(crate) async fn send(&self, topic: &str, key: &str, body: &Value) -> Result<(), String> {
        self.send_bytes(topic, key, body.to_string().as_bytes())
            .await
    }

    pub(crate) async fn send_bytes(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) -> Result<(), String> {
        self.producer
            .send(
                FutureRecord::to(topic).key(key).payload(payload).headers(
                    rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                        key: "content-type",
                        value: Some("application/json"),
                    }),
                ),
                Duration::from_secs(30),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| format!("writing to {topic}: {e}"))
    }

    pub(crate) async fn alert(
        &self,
        key: &str,
        kind: &str,
        severity: crate::alert::Severity,
        subject: &str,
        message: String,
    ) -> Result<(), String> {
        let alert = crate::alert::Alert::new(kind, severity, subject, message, self.clock.now());
        self.send_bytes(&self.alerts_topic.clone(), key, &alert.to_bytes())
            .await
    }
}

pub(crate) fn ms(t: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(t).single()
}
