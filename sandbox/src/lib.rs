//! Simulators of the external government systems (`duijie-sandbox serve`),
//! the demo (`duijie-sandbox demo`) and the embedded brokers
//! (`duijie-sandbox broker`). A crate of its own: the hub (`duijie`) does
//! not depend on it; its tests do.
//!
//! The real systems cannot be reached from a development machine, so the
//! hub ships simulators that speak their protocols with realistic data and
//! realistic trouble: HTTP 500s, slow answers, duplicated rows, records
//! changing while they are read. Faults are switched on from the command
//! line or at run time with `POST /sandbox/faults`. (No schema registry:
//! the tests use Apicurio Registry, `scripts/apicurio.sh`.)

pub mod approval;
pub mod broker;
pub mod credit;
pub mod demo;
pub mod dept;
pub mod enforcement;
pub mod grid;
mod people;
pub mod receiver;
pub mod referral;
pub mod safety;
mod store;
pub mod supervision;
pub mod urban;
pub mod video;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Trouble the simulators make, as probabilities per request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Share of requests answered with HTTP 500.
    pub error_rate: f64,
    /// Share of requests answered slowly.
    pub slow_rate: f64,
    /// How slowly.
    pub slow_ms: u64,
    /// Share of returned rows sent twice in the same page.
    pub duplicate_rate: f64,
    /// The next this many requests fail with HTTP 500, whatever the rates.
    pub fail_next: u32,
    /// The next this many requests are slow, whatever the rates.
    pub slow_next: u32,
}

/// What the simulators did, for tests and the demo.
#[derive(Debug, Default)]
pub struct FaultCounters {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub slow: AtomicU64,
    pub duplicates: AtomicU64,
    /// Changes the grid and the urban systems have made to their records
    /// so far: a test waits for `change_limit` of them before it judges the
    /// latest state.
    pub grid_changes: AtomicU64,
    pub urban_changes: AtomicU64,
    /// Tokens the grid system has issued: a second one means a client was
    /// refused its first and logged in again.
    pub grid_logins: AtomicU64,
}

#[derive(Debug, Serialize)]
struct CountersView {
    requests: u64,
    errors: u64,
    slow: u64,
    duplicates: u64,
    grid_changes: u64,
    urban_changes: u64,
    grid_logins: u64,
}

/// Faults shared by every simulated system.
#[derive(Debug, Default, Clone)]
pub struct FaultPlan {
    pub faults: Arc<RwLock<Faults>>,
    pub counters: Arc<FaultCounters>,
}

impl FaultPlan {
    pub fn new(faults: Faults) -> Self {
        Self {
            faults: Arc::new(RwLock::new(faults)),
            counters: Arc::default(),
        }
    }

    pub fn current(&self) -> Faults {
        self.faults.read().expect("faults lock").clone()
    }

    /// Whether to duplicate the next row.
    pub fn duplicate(&self) -> bool {
        let hit = fastrand::f64() < self.current().duplicate_rate;
        if hit {
            self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }
}

/// Middleware: 500s and slow answers on the system endpoints.
async fn inject(State(plan): State<FaultPlan>, request: Request, next: Next) -> Response {
    let (faults, forced_slow, forced_error) = {
        let mut f = plan.faults.write().expect("faults lock");
        let slow = f.slow_next > 0;
        let error = !slow && f.fail_next > 0;
        if slow {
            f.slow_next -= 1;
        } else if error {
            f.fail_next -= 1;
        }
        (f.clone(), slow, error)
    };
    plan.counters.requests.fetch_add(1, Ordering::Relaxed);
    // Decided and counted before a slow answer's wait: a client that gives
    // up waiting drops this handler, and the fault still happened.
    let error = forced_error || fastrand::f64() < faults.error_rate;
    if error {
        plan.counters.errors.fetch_add(1, Ordering::Relaxed);
    }
    if forced_slow || fastrand::f64() < faults.slow_rate {
        plan.counters.slow.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(faults.slow_ms)).await;
    }
    if error {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "系统繁忙，请稍后再试 (simulated fault)",
        )
            .into_response();
    }
    next.run(request).await
}

async fn set_faults(
    State(plan): State<FaultPlan>,
    axum::Json(faults): axum::Json<Faults>,
) -> StatusCode {
    *plan.faults.write().expect("faults lock") = faults;
    StatusCode::NO_CONTENT
}

async fn get_counters(State(plan): State<FaultPlan>) -> axum::Json<CountersView> {
    let c = &plan.counters;
    axum::Json(CountersView {
        requests: c.requests.load(Ordering::Relaxed),
        errors: c.errors.load(Ordering::Relaxed),
        slow: c.slow.load(Ordering::Relaxed),
        duplicates: c.duplicates.load(Ordering::Relaxed),
        grid_changes: c.grid_changes.load(Ordering::Relaxed),
        grid_logins: c.grid_logins.load(Ordering::Relaxed),
        urban_changes: c.urban_changes.load(Ordering::Relaxed),
    })
}

/// The simulators' options.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub faults: Faults,
    /// Share of generated records with a defect the mapping must reject.
    pub bad_rate: f64,
    /// Stop changing records after this many changes per system (tests
    /// compare the hub's topics with a state that has settled).
    pub change_limit: Option<u64>,
    pub seed: u64,
    /// Each simulator's own settings, beside its code.
    pub urban: urban::Settings,
    pub grid: grid::Settings,
    pub approval: approval::Settings,
    pub referral: referral::Settings,
    pub enforcement: enforcement::Settings,
    pub safety: safety::Settings,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            faults: Faults::default(),
            bad_rate: 0.01,
            change_limit: None,
            seed: 20170125,
            urban: Default::default(),
            grid: Default::default(),
            approval: Default::default(),
            referral: Default::default(),
            enforcement: Default::default(),
            safety: Default::default(),
        }
    }
}

impl SandboxConfig {
    /// Points the simulators at what `deployment` reads: the exchange
    /// directories the police messages and the 2016 approval batches go
    /// to, the safety front-end databases, and the hub's webhook for urgent
    /// grid events. The sandbox's one place that knows which simulator
    /// feeds a pipeline it does not answer requests for; returns the
    /// pipelines it pointed a simulator at.
    pub fn point_at(&mut self, deployment: &duijie::config::Deployment) -> Vec<String> {
        use duijie_connectors::registry::SourceConfig;
        let mut pointed = Vec::new();
        for p in &deployment.pipelines {
            let found = match (&p.source, p.mapping.as_str()) {
                (SourceConfig::FileDrop(c), "referral_police") => {
                    self.referral.police_dir = Some(c.dir.clone());
                    true
                }
                (SourceConfig::FileDrop(c), "licence_2016") => {
                    self.approval.dir = Some(c.dir.clone());
                    true
                }
                (SourceConfig::SqlPoll(c), _) => {
                    self.safety.dbs.push(c.url.clone());
                    self.safety.table = c.table.trim_start_matches("v_").to_owned();
                    true
                }
                (SourceConfig::Webhook(w), "grid_event") => match &deployment.http {
                    Some(http) => {
                        self.grid.webhook = Some(grid::WebhookTarget {
                            url: format!("http://{}{}", http.listen, w.path),
                            secret: w.secret.clone(),
                            every: Duration::from_secs(3),
                        });
                        true
                    }
                    None => false,
                },
                _ => false,
            };
            if found {
                pointed.push(p.name.clone());
            }
        }
        pointed
    }
}

/// The router of every simulator, with faults on the system endpoints and
/// the control endpoints under `/sandbox`.
pub fn router(config: &SandboxConfig) -> (Router, FaultPlan) {
    let (router, plan, _) = systems(config);
    (router, plan)
}

/// The receivers the hub pushes to, shared so that an outage can be
/// switched for all of them at once.
#[derive(Debug, Clone)]
pub struct Receivers {
    pub enforcement_queues: receiver::Inbox,
    pub credit: credit::CreditPlatform,
    pub credit_outage: receiver::Inbox,
    /// The 司法行政部门's supervision platform.
    pub supervision: supervision::SupervisionPlatform,
    pub departments: dept::Departments,
    /// Every request the receivers were sent, as it came over the wire.
    pub wire: receiver::WireLog,
}

impl Default for Receivers {
    fn default() -> Self {
        let credit_outage = receiver::Inbox::default();
        Self {
            enforcement_queues: receiver::Inbox::default(),
            credit: credit::CreditPlatform::new(credit_outage.clone()),
            credit_outage,
            supervision: supervision::SupervisionPlatform::default(),
            departments: dept::Departments::default(),
            wire: receiver::WireLog::default(),
        }
    }
}

impl Receivers {
    /// Takes every receiver down (503), or brings them back.
    pub fn set_down(&self, down: bool) {
        self.enforcement_queues.set_down(down);
        self.credit_outage.set_down(down);
        self.departments.webhook.set_down(down);
        self.departments.soap.set_down(down);
        self.departments.approval_blacklist.set_down(down);
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiverControl {
    #[serde(default)]
    down: Option<bool>,
    /// Department webhooks refuse records matching this rule; null clears.
    #[serde(default)]
    reject: Option<Option<receiver::RejectRule>>,
    /// Department webhooks answer after this many milliseconds (at most
    /// 10,000).
    #[serde(default)]
    answer_ms: Option<u64>,
}

async fn control_receivers(
    State(r): State<Receivers>,
    axum::Json(c): axum::Json<ReceiverControl>,
) -> StatusCode {
    if let Some(down) = c.down {
        r.set_down(down);
    }
    if let Some(rule) = c.reject {
        r.departments.webhook.set_reject(rule.clone());
        r.departments.soap.set_reject(rule);
    }
    if let Some(ms) = c.answer_ms {
        if ms > 10_000 {
            return StatusCode::UNPROCESSABLE_ENTITY;
        }
        r.departments
            .answer_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }
    StatusCode::NO_CONTENT
}

/// A simulated source system: the routes it answers (behind the fault
/// plan), and what it does on its own. A new system's simulator is its own
/// module plus one line in [`simulators`] (or in [`feeders`], when it
/// feeds its pipeline through a broker rather than answering requests).
pub trait Simulator: Send + Sync {
    /// The routes it answers as a source, behind the source fault plan.
    fn routes(&self) -> Router;
    /// The routes it answers as a receiver, or to be driven by a test (an
    /// officer's action), which the source faults leave alone.
    fn receiving(&self) -> Router {
        Router::new()
    }
    /// What it does by itself until `shutdown`: files dropped into
    /// exchange directories, databases kept changing, events pushed.
    fn background(&self, _config: &SandboxConfig, _shutdown: tokio_util::sync::CancellationToken) {}
    /// What it did by itself, one line for the demo's report, if anything.
    fn report(&self) -> Option<String> {
        None
    }
}

/// The simulated source systems of a sandbox.
pub type Simulators = Vec<Arc<dyn Simulator>>;

/// Every source system simulator, one line each.
pub fn simulators(config: &SandboxConfig, plan: &FaultPlan, receivers: &Receivers) -> Simulators {
    vec![
        Arc::new(urban::UrbanSystem::new(config, plan.clone())),
        Arc::new(grid::GridSystem::new(config, plan.clone())),
        Arc::new(approval::ApprovalSystem::new(config, plan.clone())),
        Arc::new(referral::TwoLawSystem::new(config, plan.clone())),
        Arc::new(enforcement::EnforcementSystem::new(
            config,
            plan.clone(),
            receivers.enforcement_queues.clone(),
        )),
        Arc::new(safety::FrontEnds),
    ]
}

/// The router, the fault plan, and the simulators (whose background work
/// [`spawn_background`] starts).
pub fn systems(config: &SandboxConfig) -> (Router, FaultPlan, Simulators) {
    let (router, plan, simulators, _) = systems_with_receivers(config);
    (router, plan, simulators)
}

/// Everything, with the receivers' handle.
pub fn systems_with_receivers(
    config: &SandboxConfig,
) -> (Router, FaultPlan, Simulators, Receivers) {
    let plan = FaultPlan::new(config.faults.clone());
    let receivers = Receivers::default();
    let simulators = simulators(config, &plan, &receivers);
    let systems = simulators
        .iter()
        .fold(Router::new(), |router, s| router.merge(s.routes()))
        .layer(axum::middleware::from_fn_with_state(plan.clone(), inject));
    // Receivers are switched on and off by their own control, not the
    // source faults.
    let receiving = simulators
        .iter()
        .fold(Router::new(), |router, s| router.merge(s.receiving()))
        .merge(receivers.credit.router())
        .merge(receivers.supervision.router())
        .merge(receivers.departments.router())
        .merge(
            Router::new()
                .route("/sandbox/receivers", axum::routing::post(control_receivers))
                .with_state(receivers.clone()),
        )
        .layer(axum::middleware::from_fn_with_state(
            receivers.wire.clone(),
            receiver::capture,
        ));
    let control = Router::new()
        .route("/sandbox/faults", axum::routing::post(set_faults))
        .route("/sandbox/counters", axum::routing::get(get_counters))
        .with_state(plan.clone());
    (
        systems.merge(control).merge(receiving),
        plan,
        simulators,
        receivers,
    )
}

/// Starts what the simulators do on their own.
pub fn spawn_background(
    config: &SandboxConfig,
    simulators: &Simulators,
    shutdown: tokio_util::sync::CancellationToken,
) {
    for s in simulators {
        s.background(config, shutdown.clone());
    }
}

/// A simulator that feeds one of a deployment's pipelines by itself (it
/// publishes to the broker the pipeline subscribes to, for instance),
/// recognised by what the pipeline's configuration says. The demo offers
/// every pipeline of its deployment to every feeder, so a new system's
/// simulator is its own module plus one line in [`feeders`], and nothing
/// in the demo.
pub trait Feeder: Send + Sync + std::fmt::Debug {
    /// Starts feeding `pipeline`, if this simulator serves it, with the
    /// demo's faults, until `shutdown`.
    fn feed(
        &self,
        pipeline: &duijie::config::PipelineConfig,
        faults: &Faults,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Option<Box<dyn Feeding>>;
}

/// A feeder at work.
pub trait Feeding: Send + Sync {
    /// What it did so far, one line for the demo's report.
    fn report(&self) -> String;
}

/// Every feeder, one line each.
pub fn feeders() -> Vec<Box<dyn Feeder>> {
    vec![Box::new(video::VideoPlatform)]
}

/// Serves the simulators on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: SandboxConfig,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let (app, _, simulators) = systems(&config);
    spawn_background(&config, &simulators, shutdown.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped deployment's file drops, databases and webhook each get
    /// their simulator.
    #[test]
    fn the_sandbox_points_at_what_the_shipped_deployment_reads() {
        let file =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/yichang.toml");
        let deployment =
            duijie::config::Deployment::load(&file).expect("the shipped deployment loads");
        let mut config = SandboxConfig::default();
        let pointed = config.point_at(&deployment);
        for pipeline in [
            "referral_police",
            "licence_batch_2016",
            "safety_hazard_pg",
            "safety_hazard_maria",
            "grid_urgent",
        ] {
            assert!(
                pointed.iter().any(|p| p == pipeline),
                "{pipeline} not pointed at: {pointed:?}"
            );
        }
        assert!(
            config
                .referral
                .police_dir
                .is_some_and(|d| d.ends_with("var/exchange/police"))
        );
        assert!(
            config
                .approval
                .dir
                .is_some_and(|d| d.ends_with("var/exchange/approval"))
        );
        assert_eq!(config.safety.dbs.len(), 2);
        let webhook = config.grid.webhook.expect("the grid pushes to the hub");
        assert!(
            webhook.url.starts_with("http://") && webhook.url.ends_with("/hooks/grid/urgent"),
            "{}",
            webhook.url
        );
    }
}
