//! What an operator watches: Prometheus metrics (`/metrics`, text
//! exposition format, via `prometheus-client`), liveness (`/health`) and
//! readiness (`/ready`, JSON with every pipeline's state).
//!
//! The counters live where the work happens (pipeline and delivery stats,
//! the clocks, the desk); a collector reads them at scrape time, so there
//! is one source of truth for the demo summary, `duijie status` and
//! Prometheus alike. Labels are pipeline, system, delivery and department
//! names from the deployment file — never a configuration value, so no
//! secret can reach a label.

use super::stats::{PipelineState, PipelineStats, Stats};
use crate::bus::Bus;
use crate::delivery::DeliveryStats;
use crate::keepers::ClockStats;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Everything the hub exposes, shared with the HTTP handlers.
#[derive(Debug, Clone)]
pub struct Observed {
    pub hub: String,
    pub bus: Bus,
    /// Pipeline name → system.
    pub systems: BTreeMap<String, String>,
    pub stats: Stats,
    /// Delivery name → (department, stats).
    pub deliveries: Arc<Mutex<BTreeMap<String, Arc<DeliveryStats>>>>,
    pub departments: BTreeMap<String, String>,
    pub clocks: Arc<ClockStats>,
    pub reloads: Arc<super::reload::ReloadStats>,
    /// The entity library's counters, when configured.
    pub entities: Option<Arc<crate::entity::keeper::IndexStats>>,
    /// Data quality per source, when kept.
    pub quality: Option<Arc<std::sync::RwLock<crate::quality::Board>>>,
    pub desk: Option<crate::desk::Desk>,
    /// `[http] status_token`: who may see the detail of `/ready`.
    pub status_token: Option<String>,
    pub started_ms: i64,
}

type Labels = Vec<(&'static str, String)>;

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, i64)],
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

impl Observed {
    fn pipelines(&self) -> Vec<(String, String, Arc<PipelineStats>)> {
        self.stats
            .snapshot()
            .into_iter()
            .map(|(name, s)| {
                let system = self.systems.get(&name).cloned().unwrap_or_default();
                (name, system, s)
            })
            .collect()
    }

    fn feeds(&self) -> Vec<(String, String, Arc<DeliveryStats>)> {
        self.deliveries
            .lock()
            .expect("deliveries lock")
            .iter()
            .map(|(name, s)| {
                let dept = self
                    .departments
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| name.clone());
                (name.clone(), dept, s.clone())
            })
            .collect()
    }
}

impl Collector for Observed {
    /// Long because one metric family after another, in the order
    /// `/metrics` lists them; each is a few lines and they share nothing
    /// but the encoder.
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = chrono::Utc::now().timestamp_millis();
        let pipelines = self.pipelines();
        let per_pipeline = |f: &dyn Fn(&PipelineStats) -> &AtomicU64| -> Vec<(Labels, u64)> {
            pipelines
                .iter()
                .map(|(n, sys, s)| {
                    (
                        vec![("pipeline", n.clone()), ("system", sys.clone())],
                        PipelineStats::get(f(s)),
                    )
                })
                .collect()
        };
        counter(
            &mut e,
            "duijie_reloads",
            "Configurations given to the running hub (a changed file, SIGHUP): applied, or refused because they did not check out.",
            &[
                (
                    vec![("outcome", "applied".to_owned())],
                    self.reloads.applied.load(Ordering::Relaxed),
                ),
                (
                    vec![("outcome", "refused".to_owned())],
                    self.reloads.refused.load(Ordering::Relaxed),
                ),
            ],
        )?;
        counter(
            &mut e,
            "duijie_records_fetched",
            "Raw records read from the source.",
            &per_pipeline(&|s| &s.fetched),
        )?;
        counter(
            &mut e,
            "duijie_records_delivered",
            "Canonical records acknowledged by the broker.",
            &per_pipeline(&|s| &s.delivered),
        )?;
        counter(
            &mut e,
            "duijie_records_dead_lettered",
            "Records rejected by the mapping or unreadable, written to the dead-letter topic.",
            &per_pipeline(&|s| &s.dead_lettered),
        )?;
        counter(
            &mut e,
            "duijie_intake_refused",
            "Pushed messages refused at the intake (unsigned, wrongly signed, replayed).",
            &per_pipeline(&|s| &s.refused),
        )?;
        counter(
            &mut e,
            "duijie_source_retries",
            "Transient source errors retried.",
            &per_pipeline(&|s| &s.retries),
        )?;
        counter(
            &mut e,
            "duijie_source_failed_polls",
            "Polls given up until the next schedule.",
            &per_pipeline(&|s| &s.failed_polls),
        )?;
        counter(
            &mut e,
            "duijie_pipeline_restarts",
            "Restarts from the last committed cursor.",
            &per_pipeline(&|s| &s.restarts),
        )?;
        counter(
            &mut e,
            "duijie_batches",
            "Batches fetched.",
            &per_pipeline(&|s| &s.batches),
        )?;
        let age = |ms: i64| if ms > 0 { (now - ms) / 1000 } else { -1 };
        gauge(
            &mut e,
            "duijie_cursor_age_seconds",
            "Seconds since the pipeline last committed its cursor (-1: never).",
            &pipelines
                .iter()
                .map(|(n, sys, s)| {
                    (
                        vec![("pipeline", n.clone()), ("system", sys.clone())],
                        age(s.last_commit_ms.load(Ordering::Relaxed)),
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        gauge(
            &mut e,
            "duijie_source_lag_seconds",
            "Seconds since the source was last read to its end (-1: not yet).",
            &pipelines
                .iter()
                .map(|(n, sys, s)| {
                    (
                        vec![("pipeline", n.clone()), ("system", sys.clone())],
                        age(s.caught_up_ms.load(Ordering::Relaxed)),
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        gauge(
            &mut e,
            "duijie_pipeline_up",
            "1 when the pipeline runs here (running), 0 otherwise.",
            &pipelines
                .iter()
                .map(|(n, sys, s)| {
                    (
                        vec![
                            ("pipeline", n.clone()),
                            ("system", sys.clone()),
                            ("state", s.state().name().to_owned()),
                        ],
                        i64::from(s.state() == PipelineState::Running),
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        {
            let mut m = e.encode_descriptor(
                "duijie_batch_duration_seconds",
                "From a batch fetched to its cursor committed (records acknowledged).",
                None,
                MetricType::Histogram,
            )?;
            for (n, sys, s) in &pipelines {
                let labels: Labels = vec![("pipeline", n.clone()), ("system", sys.clone())];
                s.batch_latency.0.encode(m.encode_family(&labels)?)?;
            }
        }

        let feeds = self.feeds();
        let per_feed = |f: &dyn Fn(&DeliveryStats) -> &AtomicU64| -> Vec<(Labels, u64)> {
            feeds
                .iter()
                .map(|(n, d, s)| {
                    (
                        vec![("delivery", n.clone()), ("department", d.clone())],
                        f(s).load(Ordering::Relaxed),
                    )
                })
                .collect()
        };
        counter(
            &mut e,
            "duijie_delivery_delivered",
            "Records the receiver accepted.",
            &per_feed(&|s| &s.delivered),
        )?;
        counter(
            &mut e,
            "duijie_delivery_refused",
            "Records the receiver refused (dead-lettered with its reason).",
            &per_feed(&|s| &s.rejected),
        )?;
        counter(
            &mut e,
            "duijie_delivery_failed",
            "Records that failed every attempt (dead-lettered, alert raised).",
            &per_feed(&|s| &s.failed),
        )?;
        counter(
            &mut e,
            "duijie_delivery_not_sent",
            "Records the policy withholds (a warning-only decision, say).",
            &per_feed(&|s| &s.not_sent),
        )?;
        counter(
            &mut e,
            "duijie_delivery_held",
            "Records held for an officer (a penalty decision without its credit severity class).",
            &per_feed(&|s| &s.held),
        )?;
        counter(
            &mut e,
            "duijie_delivery_retries",
            "Delivery attempts retried.",
            &per_feed(&|s| &s.retries),
        )?;
        gauge(
            &mut e,
            "duijie_delivery_backlog",
            "Records on the delivery's topic not yet settled, per department (-1: not measured yet).",
            &feeds
                .iter()
                .map(|(n, d, s)| {
                    (
                        vec![("delivery", n.clone()), ("department", d.clone())],
                        s.backlog.load(Ordering::Relaxed),
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        gauge(
            &mut e,
            "duijie_delivery_waiting",
            "1 while the delivery waits for a receiver that is unreachable or answers 5xx/408/429 (within its `patience`).",
            &feeds
                .iter()
                .map(|(n, d, s)| {
                    (
                        vec![("delivery", n.clone()), ("department", d.clone())],
                        i64::from(s.waiting_since_ms.load(Ordering::Relaxed) != 0),
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        gauge(
            &mut e,
            "duijie_delivery_stopped",
            "1 when the delivery stopped for good (a permanent failure; see /ready).",
            &feeds
                .iter()
                .map(|(n, d, s)| {
                    (
                        vec![("delivery", n.clone()), ("department", d.clone())],
                        i64::from(s.stopped.lock().expect("stopped lock").is_some()),
                    )
                })
                .collect::<Vec<_>>(),
        )?;
        {
            let mut m = e.encode_descriptor(
                "duijie_delivery_seconds",
                "From the source record fetched to the receiver's acknowledgement.",
                None,
                MetricType::Histogram,
            )?;
            for (n, d, s) in &feeds {
                let labels: Labels = vec![("delivery", n.clone()), ("department", d.clone())];
                s.latency.0.encode(m.encode_family(&labels)?)?;
            }
        }

        let c = &self.clocks;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as i64;
        gauge(
            &mut e,
            "duijie_credit_publications",
            "Penalty decisions awaiting publication (双公示), by clock state.",
            &[
                (
                    vec![("state", "pending".to_owned())],
                    load(&c.credit_pending),
                ),
                (
                    vec![("state", "at_risk".to_owned())],
                    load(&c.credit_at_risk),
                ),
                (vec![("state", "late".to_owned())], load(&c.credit_late)),
            ],
        )?;
        gauge(
            &mut e,
            "duijie_blacklisted",
            "Entities on the list of seriously dishonest entities (严重失信主体名单), by decision.",
            &[(vec![], load(&c.blacklisted))],
        )?;
        gauge(
            &mut e,
            "duijie_blacklist_cases_open",
            "Blacklist cases proposed, noticed or in objection, not yet decided.",
            &[(vec![], load(&c.blacklist_open))],
        )?;
        counter(
            &mut e,
            "duijie_records_unreadable",
            "Records on the bus a reader of the hub could not decode and left out (they stay on their topics; each is logged).",
            &crate::bus::unreadable_counts()
                .into_iter()
                .map(|(reader, topic, n)| {
                    (vec![("reader", reader.to_owned()), ("topic", topic)], n)
                })
                .collect::<Vec<_>>(),
        )?;
        if let Some(q) = &self.quality {
            // Today's figures (Asia/Shanghai): ratios are PromQL divisions,
            // e.g. completeness = present / records{outcome="mapped"}.
            let today = chrono::Utc::now()
                .with_timezone(&chrono_tz::Asia::Shanghai)
                .format("%Y-%m-%d")
                .to_string();
            let board = q.read().expect("quality board lock");
            let mut records = Vec::new();
            let mut fields = Vec::new();
            let mut rules = Vec::new();
            for (pipeline, days) in &board.days {
                let Some(day) = days.get(&today) else {
                    continue;
                };
                for (outcome, n) in [("mapped", day.mapped), ("rejected", day.rejected)] {
                    records.push((
                        vec![
                            ("pipeline", pipeline.clone()),
                            ("outcome", outcome.to_owned()),
                        ],
                        n as i64,
                    ));
                }
                for (field, c) in &day.fields {
                    for (kind, n) in [
                        ("present", c.present),
                        ("flagged", c.flagged),
                        ("rejected", c.rejected),
                    ] {
                        fields.push((
                            vec![
                                ("pipeline", pipeline.clone()),
                                ("field", field.clone()),
                                ("kind", kind.to_owned()),
                            ],
                            n as i64,
                        ));
                    }
                }
                for (rule, n) in &day.rejects_by_rule {
                    rules.push((
                        vec![("pipeline", pipeline.clone()), ("rule", rule.clone())],
                        *n as i64,
                    ));
                }
            }
            drop(board);
            gauge(
                &mut e,
                "duijie_quality_records",
                "Records fetched today (Asia/Shanghai), mapped or rejected, read from the bus.",
                &records,
            )?;
            gauge(
                &mut e,
                "duijie_quality_field_values",
                "Today's values per field: present, flagged by a check, or rejected for it.",
                &fields,
            )?;
            gauge(
                &mut e,
                "duijie_quality_rejects",
                "Today's rejects per rule (and rule:field).",
                &rules,
            )?;
        }
        if let Some(x) = &self.entities {
            gauge(
                &mut e,
                "duijie_entities",
                "Market entities in the credit library (市场主体信用信息库): all, and those seen by more than one system.",
                &[
                    (vec![("seen_by", "any".to_owned())], load(&x.entities)),
                    (
                        vec![("seen_by", "several_systems".to_owned())],
                        load(&x.multi_system),
                    ),
                ],
            )?;
            gauge(
                &mut e,
                "duijie_entity_records",
                "Records linked or proposed in the entity library.",
                &[(vec![], load(&x.records))],
            )?;
            counter(
                &mut e,
                "duijie_entity_records_undecodable",
                "Records the entity library could not read (each logged).",
                &[(vec![], x.undecodable.load(Ordering::Relaxed))],
            )?;
            counter(
                &mut e,
                "duijie_entity_links_earlier_suite",
                "Officers' link decisions naming a person by the previous suite's pseudonym, not applied (each logged; the record is unlinked again).",
                &[(vec![], x.earlier_links.load(Ordering::Relaxed))],
            )?;
        }
        gauge(
            &mut e,
            "duijie_commitments_due_soon",
            "Licence commitments (告知承诺) due soon.",
            &[(vec![], load(&c.commitments_due_soon))],
        )?;
        counter(
            &mut e,
            "duijie_commitment_leads",
            "Commitments past their date, raised as leads.",
            &[(vec![], c.commitment_leads.load(Ordering::Relaxed))],
        )?;

        if let Some(desk) = &self.desk {
            let views = desk.tracker.views.read().expect("views lock");
            let open = views
                .values()
                .filter(|v| v.state.is_some_and(|s| !s.closed()))
                .count() as i64;
            let at_risk = views.values().filter(|v| v.at_risk).count() as i64;
            let late = views.values().filter(|v| v.late).count() as i64;
            gauge(
                &mut e,
                "duijie_referrals",
                "Suspected-crime referrals (两法衔接) on the desk, by clock state.",
                &[
                    (vec![("state", "open".to_owned())], open),
                    (vec![("state", "at_risk".to_owned())], at_risk),
                    (vec![("state", "late".to_owned())], late),
                ],
            )?;
        }
        Ok(())
    }
}

/// One pipeline's state, as `/ready` and `duijie status` show it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PipelineReport {
    pub pipeline: String,
    pub system: String,
    pub state: String,
    pub fetched: u64,
    pub delivered: u64,
    pub dead_lettered: u64,
    pub retries: u64,
    pub cursor_age_s: Option<i64>,
    pub last_error: Option<String>,
}

/// One delivery's counters.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FeedReport {
    pub delivery: String,
    pub department: String,
    pub delivered: u64,
    pub refused: u64,
    pub failed: u64,
    pub not_sent: u64,
    pub backlog: Option<i64>,
    /// Why it stopped for good, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Since when it waits for its receiver (RFC 3339), while it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<String>,
}

/// The body of `/ready`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Readiness {
    pub ready: bool,
    pub hub: String,
    pub broker: String,
    pub uptime_s: i64,
    pub pipelines: Vec<PipelineReport>,
    pub feeds: Vec<FeedReport>,
    /// The deadline keepers: credit publications and referrals, pending,
    /// at risk and late.
    pub clocks: BTreeMap<String, i64>,
}

impl Observed {
    /// Ready: the broker answers, and no pipeline is still starting.
    pub async fn readiness(&self) -> Readiness {
        let (broker, answers) = match self.bus.reachable(Duration::from_secs(3)).await {
            Ok(state) => (state, true),
            Err(e) => (format!("unreachable: {e}"), false),
        };
        let now = chrono::Utc::now().timestamp_millis();
        let pipelines: Vec<PipelineReport> = self
            .pipelines()
            .into_iter()
            .map(|(pipeline, system, s)| {
                let commit = s.last_commit_ms.load(Ordering::Relaxed);
                PipelineReport {
                    pipeline,
                    system,
                    state: s.state().name().to_owned(),
                    fetched: PipelineStats::get(&s.fetched),
                    delivered: PipelineStats::get(&s.delivered),
                    dead_lettered: PipelineStats::get(&s.dead_lettered),
                    retries: PipelineStats::get(&s.retries),
                    cursor_age_s: (commit > 0).then(|| (now - commit) / 1000),
                    last_error: s
                        .last_error()
                        .map(|e| crate::secrets::redact_urls(&crate::secrets::redact(&e))),
                }
            })
            .collect();
        let feeds = self
            .feeds()
            .into_iter()
            .map(|(delivery, department, s)| {
                let backlog = s.backlog.load(Ordering::Relaxed);
                FeedReport {
                    delivery,
                    department,
                    delivered: s.delivered.load(Ordering::Relaxed),
                    refused: s.rejected.load(Ordering::Relaxed),
                    failed: s.failed.load(Ordering::Relaxed),
                    not_sent: s.not_sent.load(Ordering::Relaxed),
                    backlog: (backlog >= 0).then_some(backlog),
                    stopped: s.stopped.lock().expect("stopped lock").clone(),
                    waiting_since: match s.waiting_since_ms.load(Ordering::Relaxed) {
                        0 => None,
                        ms => chrono::DateTime::from_timestamp_millis(ms)
                            .map(crate::calendar::local_rfc3339),
                    },
                }
            })
            .collect();
        let started = pipelines
            .iter()
            .all(|p| p.state != PipelineState::Starting.name());
        let c = &self.clocks;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as i64;
        let mut clocks = BTreeMap::from([
            ("credit_pending".to_owned(), load(&c.credit_pending)),
            ("credit_at_risk".to_owned(), load(&c.credit_at_risk)),
            ("credit_late".to_owned(), load(&c.credit_late)),
            ("blacklisted".to_owned(), load(&c.blacklisted)),
            ("blacklist_cases_open".to_owned(), load(&c.blacklist_open)),
        ]);
        if let Some(x) = &self.entities {
            clocks.insert("entities".into(), load(&x.entities));
            clocks.insert("entities_multi_system".into(), load(&x.multi_system));
        }
        if let Some(desk) = &self.desk {
            let views = desk.tracker.views.read().expect("views lock");
            clocks.insert(
                "referrals_open".into(),
                views
                    .values()
                    .filter(|v| v.state.is_some_and(|s| !s.closed()))
                    .count() as i64,
            );
            clocks.insert(
                "referrals_at_risk".into(),
                views.values().filter(|v| v.at_risk).count() as i64,
            );
            clocks.insert(
                "referrals_late".into(),
                views.values().filter(|v| v.late).count() as i64,
            );
        }
        Readiness {
            clocks,
            // A degraded cluster still takes records (acks=all with
            // min.insync.replicas): ready, and the broker line says so.
            ready: answers && started,
            hub: self.hub.clone(),
            broker,
            uptime_s: (now - self.started_ms) / 1000,
            pipelines,
            feeds,
        }
    }

    /// Measures each delivery's backlog every `every`, until shutdown.
    pub async fn watch_backlogs(
        self,
        feeds: Vec<(String, String)>,
        every: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            for (name, topic) in &feeds {
                let group = crate::delivery::Delivery::group_id(&self.bus, name);
                match crate::delivery::ops::lag(&self.bus, &group, topic).await {
                    Ok(n) => {
                        if let Some(s) = self.deliveries.lock().expect("deliveries lock").get(name)
                        {
                            s.backlog.store(n, Ordering::Relaxed);
                        }
                    }
                    Err(e) => tracing::debug!(delivery = %name, error = %e, "backlog not measured"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// `/metrics`, `/health`, `/ready`.
    pub fn router(self) -> Router {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self.clone()));
        let registry = Arc::new(registry);
        Router::new()
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let registry = registry.clone();
                    async move {
                        let mut body = String::new();
                        match prometheus_client::encoding::text::encode(&mut body, &registry) {
                            Ok(()) => (
                                [(
                                    header::CONTENT_TYPE,
                                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                )],
                                body,
                            )
                                .into_response(),
                            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                        }
                    }
                }),
            )
            .route(
                "/health",
                axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
            )
            .route("/ready", axum::routing::get(ready))
            .with_state(self)
    }
}

/// `/ready`: public, a short status (ready or not, each pipeline's state);
/// with `Authorization: Bearer <[http] status_token>`, the whole report
/// (broker, counts, errors redacted like the logs, feeds, clocks).
async fn ready(State(o): State<Observed>, headers: axum::http::HeaderMap) -> Response {
    let r = o.readiness().await;
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let detailed = match (given, o.status_token.as_deref()) {
        (Some(given), Some(token)) => crate::secrets::same_secret(given, token),
        _ => false,
    };
    if detailed {
        return (status, axum::Json(r)).into_response();
    }
    let pipelines: Vec<_> = r
        .pipelines
        .iter()
        .map(|p| serde_json::json!({"pipeline": p.pipeline, "state": p.state}))
        .collect();
    (
        status,
        axum::Json(serde_json::json!({"ready": r.ready, "hub": r.hub, "pipelines": pipelines})),
    )
        .into_response()
}

/// `duijie status`: the readiness report as a terminal table.
pub fn render(r: &Readiness) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "hub {} — {} (broker {}), up {} s",
        r.hub,
        if r.ready { "ready" } else { "NOT READY" },
        r.broker,
        r.uptime_s
    );
    let _ = writeln!(
        out,
        "\n{:<24} {:<16} {:<9} {:>10} {:>10} {:>8} {:>8} {:>11}",
        "pipeline", "system", "state", "fetched", "delivered", "dlq", "retries", "cursor age"
    );
    for p in &r.pipelines {
        let _ = writeln!(
            out,
            "{:<24} {:<16} {:<9} {:>10} {:>10} {:>8} {:>8} {:>11}",
            p.pipeline,
            p.system,
            p.state,
            p.fetched,
            p.delivered,
            p.dead_lettered,
            p.retries,
            p.cursor_age_s.map_or("—".into(), |s| format!("{s} s"))
        );
        if let Some(e) = &p.last_error {
            let _ = writeln!(out, "    last error: {e}");
        }
    }
    if !r.feeds.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<24} {:<16} {:>10} {:>8} {:>8} {:>9} {:>8}",
            "feed", "department", "delivered", "refused", "failed", "not sent", "backlog"
        );
        for f in &r.feeds {
            let _ = writeln!(
                out,
                "{:<24} {:<16} {:>10} {:>8} {:>8} {:>9} {:>8}",
                f.delivery,
                f.department,
                f.delivered,
                f.refused,
                f.failed,
                f.not_sent,
                f.backlog.map_or("—".into(), |b| b.to_string())
            );
        }
    }
    let _ = writeln!(out);
    for (k, v) in &r.clocks {
        let _ = writeln!(out, "{k:<20} {v}");
    }
    out
}
