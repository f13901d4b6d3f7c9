//! The keepers of deadlines and lists, each in its own module with its own
//! config:
//! - [`publication`]: the credit publication clock (双公示: a penalty
//!   decision published within its limit, a change within its own);
//! - [`blacklist`]: the list of seriously dishonest entities and its
//!   procedure (严重失信主体名单, 国办发〔2020〕49号);
//! - [`commitments`]: the commitment tracker (告知承诺);
//! - [`supervision`]: the rates the supervisor of the bureau watches, per
//!   month and power-list item (行政执法监督, 国务院令第825号);
//! - [`referral`]: the criminal referral procedure (两法衔接, 移送案件) and
//!   the statutory clock of each of its states, which the desk's tracker
//!   folds ([`crate::desk`]).
//!
//! Each is a [`Keeper`], run by the one loop [`keep`]: it reads its topics
//! from the beginning ([`crate::bus::follow`]): they are its memory, so a
//! restarted hub rebuilds the same state, including the alerts it raised
//! before, and an alert is raised once, not once per restart. Once it has
//! read their history it looks at its state on a tick and writes what
//! changed: alerts, blacklist entries, leads for enforcement. When a write
//! fails it forgets everything and reads its topics again, so nothing is
//! half-remembered: an alert whose write failed is raised on the next
//! round, not taken for raised.

pub mod blacklist;
pub mod commitments;
pub mod publication;
pub mod referral;
pub mod supervision;

pub use blacklist::run_blacklist;
pub use commitments::{CommitmentConfig, run_commitments};
pub use publication::{CreditConfig, run_credit_clock};
pub use supervision::{SupervisionConfig, run_supervision};

use crate::bus::Bus;
use crate::bus::follow::{Follow, Followed, follow};
use crate::calendar::Calendar;
use crate::error::{Context, Domain, Error, Result};
use crate::schema::SchemaSet;
use chrono::{DateTime, TimeZone, Utc};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The keepers the deployment configures, listed once: the name of each
/// one's shared task (across a scaled-out hub one instance runs it; the
/// control topic has a partition per name) and how it runs. The runtime
/// starts what this returns and the deployment names its shared tasks
/// from it, so a new keeper is its module and one entry here.
pub fn listed(configs: Configs<'_>) -> Vec<Listed> {
    let Configs {
        credit,
        commitments,
        supervision,
    } = configs;
    let mut out = Vec::new();
    if let Some(c) = credit {
        out.push(Listed::new("clock:credit_publication", c, run_credit_clock));
        out.push(Listed::new("clock:blacklist", c, run_blacklist));
    }
    if let Some(c) = commitments {
        out.push(Listed::new("clock:commitments", c, run_commitments));
    }
    if let Some(c) = supervision {
        out.push(Listed::new("clock:supervision", c, run_supervision));
    }
    out
}

/// The keepers' sections of the deployment, each when configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Configs<'a> {
    pub credit: Option<&'a CreditConfig>,
    pub commitments: Option<&'a CommitmentConfig>,
    pub supervision: Option<&'a SupervisionConfig>,
}

/// One keeper as [`listed`] gives it.
pub struct Listed {
    /// Its shared task's name (`clock:…`).
    pub task: &'static str,
    run: Box<
        dyn Fn(KeeperContext, CancellationToken) -> futures::future::BoxFuture<'static, ()>
            + Send
            + Sync,
    >,
}

impl Listed {
    fn new<C, F>(
        task: &'static str,
        config: &C,
        run: fn(KeeperContext, C, CancellationToken) -> F,
    ) -> Self
    where
        C: Clone + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let config = config.clone();
        Self {
            task,
            run: Box::new(move |ctx, shutdown| Box::pin(run(ctx, config.clone(), shutdown))),
        }
    }

    /// Runs the keeper until `shutdown`.
    pub fn run(
        &self,
        ctx: KeeperContext,
        shutdown: CancellationToken,
    ) -> futures::future::BoxFuture<'static, ()> {
        (self.run)(ctx, shutdown)
    }
}

impl std::fmt::Debug for Listed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listed")
            .field("task", &self.task)
            .finish_non_exhaustive()
    }
}

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
    /// Writes `body` under `key`; `about`: the `traceparent` of the record
    /// it is about, whose trace it continues (a `keep` span).
    pub(crate) async fn send(
        &self,
        topic: &str,
        key: &str,
        body: &Value,
        about: Option<&str>,
    ) -> Result<()> {
        self.send_bytes(topic, key, body.to_string().as_bytes(), about)
            .await
    }

    /// A tombstone: the compacted topic forgets `key`.
    pub(crate) async fn send_tombstone(&self, topic: &str, key: &str) -> Result<()> {
        self.producer
            .send(
                FutureRecord::<str, [u8]>::to(topic).key(key),
                Duration::from_secs(30),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
            .with_context(|| format!("writing a tombstone to {topic}"))
    }

    pub(crate) async fn send_bytes(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        about: Option<&str>,
    ) -> Result<()> {
        let traceparent = crate::telemetry::trace::acted("keep", about, topic, key);
        let headers = crate::bus::traced(
            rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
                key: "content-type",
                value: Some("application/json"),
            }),
            traceparent.as_deref(),
        );
        crate::bus::publish::write(&self.producer, topic, key, payload, headers).await
    }

    /// An alert about `subject`; `about` as for [`KeeperContext::send`].
    pub(crate) async fn alert(
        &self,
        key: &str,
        kind: &str,
        severity: crate::alert::Severity,
        subject: &str,
        message: String,
        about: Option<&str>,
    ) -> Result<()> {
        let alert = crate::alert::Alert::new(kind, severity, subject, message, self.clock.now());
        self.send_bytes(&self.alerts_topic.clone(), key, &alert.to_bytes(), about)
            .await
    }
}

/// One keeper: the topics it follows from the beginning (its memory), how
/// a record of one of them changes what it knows, and what it writes on a
/// tick once it has read their history.
pub(crate) trait Keeper: Send {
    fn topics(&self, ctx: &KeeperContext) -> Vec<String>;
    /// A record of one of its topics, in order. One it cannot read is
    /// counted and logged ([`Followed::unreadable`]), never dropped silently.
    fn observe(&mut self, ctx: &KeeperContext, record: Followed);
    /// Writes what is due now ([`KeeperContext::clock`]).
    fn tick(&mut self, ctx: &KeeperContext) -> impl Future<Output = Result<()>> + Send;
}

/// Runs the keeper `make` builds until `shutdown`: follows its topics,
/// ticks once caught up. A failure — a write the bus refused, the follower
/// lost — drops the keeper and builds it afresh from its topics, after the
/// one restart loop's backoff ([`crate::retry::supervise`]); a permanent
/// one (a topic the hub may not write) stops it with its reason.
pub(crate) async fn keep<K: Keeper>(
    name: &'static str,
    ctx: &KeeperContext,
    make: impl Fn() -> K,
    shutdown: &CancellationToken,
) {
    let attempt = || async {
        let round = shutdown.child_token();
        let _stop = round.clone().drop_guard();
        let mut ticks = 0u64;
        let e = rounds(ctx, make(), &round, &mut ticks).await.err()?;
        let failure = crate::retry::Failure::of(e.context(name), ticks > 0);
        if failure.permanent {
            tracing::error!(error = %failure.error, "keeper failed permanently; it stays stopped until its configuration is corrected");
        }
        Some(failure)
    };
    crate::retry::supervise(
        &crate::retry::RetryConfig::default(),
        shutdown,
        "keeper failed; reading its topics again",
        attempt,
    )
    .await;
}

async fn rounds<K: Keeper>(
    ctx: &KeeperContext,
    mut keeper: K,
    shutdown: &CancellationToken,
    ticks: &mut u64,
) -> Result<()> {
    let mut rx = follow(&ctx.bus, keeper.topics(ctx), shutdown.clone());
    let mut tick = tokio::time::interval(ctx.tick);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            f = rx.recv() => match f {
                Some(Follow::Record(f)) => keeper.observe(ctx, f),
                // On catching up, the loop comes round with ticks enabled.
                Some(Follow::CaughtUp) => {}
                None if shutdown.is_cancelled() => return Ok(()),
                None => return Err(Error::transient(Domain::Bus, "the follower of the keeper's topics stopped")),
            },
            _ = tick.tick(), if rx.caught_up() => {
                keeper.tick(ctx).await?;
                *ticks += 1;
            }
        }
    }
}

pub(crate) fn ms(t: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(t).single()
}
