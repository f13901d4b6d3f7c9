//! `duijie-sandbox demo`: the Yichang deployment end to end on one machine.
//!
//! It brings up a broker when none is given (librdkafka's in-process mock
//! cluster by default, or a supervised Tansu with `--tansu`), the sandbox
//! systems with some of their faults switched on, and the pipelines of
//! `pipelines/yichang.toml`; drops an export file into the exchange
//! directory; lets everything run; then prints what flowed.

use crate::broker::{EmbeddedBroker, TansuBroker};
use crate::{self as sandbox, Faults, SandboxConfig};
use duijie::bus::DeadLetter;
use duijie::bus::inspect::read_topic;
use duijie::config::Deployment;
use duijie::error::{Context, Domain, Error, Result};
use duijie::runtime::Hub;
use duijie::runtime::stats::PipelineStats;
use duijie_connectors::registry::SourceConfig;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub config: PathBuf,
    /// An existing cluster; none means bring one up.
    pub brokers: Option<String>,
    /// A Confluent-compatible schema registry (Apicurio's ccompat API):
    /// canonical records then use the Confluent wire format with its ids.
    pub registry: Option<String>,
    /// Bring up Tansu instead of the embedded mock cluster.
    pub tansu: bool,
    /// How long the pipelines run.
    pub seconds: u64,
    /// The sandbox as its own `duijie-sandbox serve` process (this process then
    /// holds the hub alone).
    pub sandbox_process: bool,
    /// Write what left the hub to this file, one JSON object a line: every
    /// request the sandbox receivers got (method, URI, headers, body), the
    /// answers of the pull feeds, and the receipts, alerts and push dead
    /// letters read back from the bus. For checking the personal-data rule
    /// over a whole run.
    pub capture: Option<PathBuf>,
    /// Where the hub's log goes (none: the terminal).
    pub log: Option<PathBuf>,
    /// After the report, keep the hub and its pages up until Ctrl-C.
    pub stay: bool,
}

/// Where the demo's log goes: `var/duijie-demo.log` beside the exchange
/// folders (the deployment's `../var`).
pub fn log_file(config: &std::path::Path) -> PathBuf {
    let dir = config.parent().unwrap_or(std::path::Path::new(""));
    match dir.parent() {
        Some(above) => above.join("var/duijie-demo.log"),
        None => dir.join("../var/duijie-demo.log"),
    }
}

/// The sandbox systems, in this process or in their own.
enum SandboxRun {
    InProcess {
        plan: sandbox::FaultPlan,
        simulators: sandbox::Simulators,
        wire: sandbox::receiver::WireLog,
    },
    Process(std::process::Child),
}

impl Drop for SandboxRun {
    fn drop(&mut self) {
        if let SandboxRun::Process(child) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `duijie-sandbox serve` with the demo's simulators, at `listen`.
fn spawn_sandbox_process(config: &SandboxConfig, listen: &str) -> Result<std::process::Child> {
    let f = &config.faults;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("serve")
        .args(["--listen", listen])
        .args(["--error-rate", &f.error_rate.to_string()])
        .args(["--slow-rate", &f.slow_rate.to_string()])
        .args(["--slow-ms", &f.slow_ms.to_string()])
        .args(["--duplicate-rate", &f.duplicate_rate.to_string()])
        .args(["--safety-table", &config.safety.table])
        .args(["--seed", &config.seed.to_string()]);
    if let Some(d) = &config.referral.police_dir {
        cmd.arg("--police-dir").arg(d);
    }
    if let Some(d) = &config.approval.dir {
        cmd.arg("--approval-dir").arg(d);
    }
    for url in &config.safety.dbs {
        cmd.args(["--safety-db", url]);
    }
    if let Some(w) = &config.grid.webhook {
        cmd.args(["--grid-webhook", &w.url])
            // The secret goes in the child's environment, not its argv.
            .env("DUIJIE_SANDBOX_GRID_WEBHOOK_SECRET", &w.secret)
            .args([
                "--grid-webhook-every",
                &format!("{}ms", w.every.as_millis()),
            ]);
    }
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting `duijie-sandbox serve`")?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(listen).is_ok() {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(Error::transient(
        Domain::Io,
        format!("`duijie-sandbox serve` did not listen on {listen}"),
    ))
}

pub async fn run(options: DemoOptions) -> Result<()> {
    let mut deployment = load(&options)?;
    // 1. The broker.
    let broker = start_broker(&options, &mut deployment)?;
    println!("duijie demo — 宜昌高新区综合执法 数据对接");
    println!("  broker:   {}", broker.label);
    if let Some(log) = &options.log {
        println!(
            "  log:      {} (the hub's log; --verbose puts it on the terminal)",
            log.display()
        );
    }

    // 2. The sandbox systems, with faults on.
    let shutdown = CancellationToken::new();
    let faults = Faults {
        error_rate: 0.2,
        slow_rate: 0.05,
        slow_ms: 800,
        duplicate_rate: 0.03,
        ..Faults::default()
    };
    let (sandbox_config, listen, mut sandbox_run) =
        start_sandbox(&options, &deployment, &faults, &shutdown).await?;
    print_systems(&deployment);

    // 3. An export file in the digital urban management exchange directory.
    drop_export(&deployment)?;

    // 4. The hub, then what the simulators do on their own (files, pushes,
    // database changes).
    let ran = run_hub(
        &options,
        &deployment,
        &sandbox_config,
        &sandbox_run,
        &faults,
        &shutdown,
    )
    .await?;

    // 5. What flowed.
    let bus = duijie::bus::Bus::new(deployment.kafka.brokers.clone(), "duijie-demo-report");
    let topics = read_back(&bus, &deployment).await?;
    report_pipelines(&deployment, &ran, &topics);
    report_sandbox(&mut sandbox_run, &listen, &ran).await?;
    report_deliveries(&deployment, &ran, &topics);
    report_entities(&deployment).await?;
    report_alerts(&bus, &deployment).await?;
    report_desk(&bus, &deployment).await?;
    let sample = report_topics(&topics);
    report_rejects(&deployment, &topics);
    report_sample(&deployment, sample)?;
    if let Some(path) = &options.capture {
        let wire = match &sandbox_run {
            SandboxRun::InProcess { wire, .. } => wire.snapshot(),
            SandboxRun::Process(_) => Vec::new(),
        };
        let n = write_capture(path, &deployment, &topics, wire).await?;
        println!("\nCaptured {n} outbound messages to {}", path.display());
    }
    let duijie = duijie_command();
    report_next_steps(&duijie);
    if options.stay {
        stay(&deployment, &sandbox_config, &listen, &duijie).await?;
    }
    drop(broker);
    Ok(())
}

/// The deployment the demo runs, with `--registry` applied.
fn load(options: &DemoOptions) -> Result<Deployment> {
    let mut deployment = match Deployment::load(&options.config) {
        Ok(d) => d,
        Err(errors) => {
            return Err(Error::permanent(
                Domain::Config,
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            ));
        }
    };

    if let Some(url) = &options.registry {
        deployment.kafka.schema_registry = Some(url.clone());
    }

    Ok(deployment)
}

/// The broker the demo runs on, kept up while this lives.
struct Broker {
    label: String,
    _embedded: Option<EmbeddedBroker>,
    _tansu: Option<TansuBroker>,
}

/// Brings up the demo's broker (or takes `--brokers`) and points the
/// deployment at it.
fn start_broker(options: &DemoOptions, deployment: &mut Deployment) -> Result<Broker> {
    let mut _embedded = None;
    let mut _tansu = None;
    let explicit = options
        .brokers
        .clone()
        .or_else(|| std::env::var("DUIJIE_KAFKA_BROKERS").ok());
    let label = if let Some(b) = explicit {
        deployment.kafka.brokers = b.clone();
        format!("the cluster at {b}")
    } else if options.tansu {
        let t = TansuBroker::start(free_port()?)?;
        deployment.kafka.brokers = t.bootstrap.clone();
        let label = format!(
            "a supervised Tansu broker at {} (memory storage)",
            t.bootstrap
        );
        _tansu = Some(t);
        label
    } else {
        let e = EmbeddedBroker::start(1)?;
        deployment.kafka.brokers = e.bootstrap_servers();
        e.create_topics(&deployment.topics())?;
        let label = format!(
            "the embedded broker (librdkafka mock cluster) at {}",
            e.bootstrap_servers()
        );
        _embedded = Some(e);
        label
    };
    Ok(Broker {
        label,
        _embedded,
        _tansu,
    })
}

/// Starts the simulated systems (in this process or their own), pointed
/// at what the deployment reads; prints where.
async fn start_sandbox(
    options: &DemoOptions,
    deployment: &Deployment,
    faults: &Faults,
    shutdown: &CancellationToken,
) -> Result<(SandboxConfig, String, SandboxRun)> {
    let mut sandbox_config = SandboxConfig {
        faults: faults.clone(),
        ..SandboxConfig::default()
    };
    // Point the simulators at what the deployment reads.
    sandbox_config.point_at(deployment);
    let listen = sandbox_address(deployment);
    let sandbox_run = if options.sandbox_process {
        SandboxRun::Process(spawn_sandbox_process(&sandbox_config, &listen)?)
    } else {
        let (app, plan, simulators, receivers) = sandbox::systems_with_receivers(&sandbox_config);
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| {
                format!("the sandbox needs {listen}, which the deployment's HTTP source polls")
            })?;
        let sandbox_stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { sandbox_stop.cancelled().await })
                .await;
        });
        SandboxRun::InProcess {
            plan,
            simulators,
            wire: receivers.wire,
        }
    };
    if options.capture.is_some() && options.sandbox_process {
        return Err(Error::permanent(
            Domain::Config,
            "--capture reads the sandbox receivers in this process: leave out --sandbox-process",
        ));
    }
    println!(
        "  sandbox:  the simulated systems on http://{listen}{} (faults: {:.0}% HTTP 500, {:.0}% slow, {:.0}% duplicated rows)",
        if options.sandbox_process {
            ", in their own process"
        } else {
            ""
        },
        faults.error_rate * 100.0,
        faults.slow_rate * 100.0,
        faults.duplicate_rate * 100.0
    );
    Ok((sandbox_config, listen, sandbox_run))
}

/// The systems as the deployment docks with them.
fn print_systems(deployment: &Deployment) {
    let mut systems: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in &deployment.pipelines {
        systems.entry(p.system.as_str()).or_default().push(format!(
            "{} ({})",
            p.name,
            p.source.kind()
        ));
    }
    println!("  systems:  {} docked by the deployment:", systems.len());
    for (system, pipelines) in &systems {
        println!("            {system}: {}", pipelines.join(", "));
    }
}

/// An export file in the digital urban management exchange directory.
fn drop_export(deployment: &Deployment) -> Result<()> {
    for p in &deployment.pipelines {
        if let (SourceConfig::FileDrop(c), "urban_case") = (&p.source, p.mapping.as_str()) {
            std::fs::create_dir_all(&c.dir)?;
            let name = format!("demo-{}.jsonl", chrono::Utc::now().format("%Y%m%d%H%M%S"));
            let path = c.dir.join(&name);
            std::fs::write(&path, demo_export(1_000))?;
            println!(
                "  dropped:  {} (1,000 cases, 3 of them broken)",
                path.display()
            );
        }
    }

    Ok(())
}

/// What the hub's run left to report.
struct Ran {
    stats: duijie::runtime::stats::Stats,
    delivery_stats: std::sync::Arc<
        std::sync::Mutex<BTreeMap<String, std::sync::Arc<duijie::delivery::DeliveryStats>>>,
    >,
    clock_stats: std::sync::Arc<duijie::keepers::ClockStats>,
    feedings: Vec<Box<dyn sandbox::Feeding>>,
}

/// Runs the hub for `--seconds`, with the simulators' own work and the
/// feeders beside it, printing progress; returns once it stopped.
async fn run_hub(
    options: &DemoOptions,
    deployment: &Deployment,
    sandbox_config: &SandboxConfig,
    sandbox_run: &SandboxRun,
    faults: &Faults,
    shutdown: &CancellationToken,
) -> Result<Ran> {
    let background_stop = shutdown.clone();
    let hub = Hub::load(deployment.clone())?;
    let stats = hub.stats.clone();
    let delivery_stats = hub.deliveries.clone();
    let clock_stats = hub.clock_stats.clone();
    let hub_stop = shutdown.clone();
    let hub_task = tokio::spawn(async move { hub.run(&[], hub_stop).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let SandboxRun::InProcess { simulators, .. } = sandbox_run {
        sandbox::spawn_background(sandbox_config, simulators, background_stop.clone());
    }
    // Simulators that feed a pipeline by themselves, whichever serves it.
    let feeders = sandbox::feeders();
    let feedings: Vec<Box<dyn sandbox::Feeding>> = deployment
        .pipelines
        .iter()
        .flat_map(|p| {
            feeders
                .iter()
                .filter_map(|f| f.feed(p, faults, background_stop.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    println!(
        "  running:  {} pipeline(s) for {} s …",
        deployment.pipelines.len(),
        options.seconds
    );
    if let (Some(desk), Some(http)) = (&deployment.sections.desk, &deployment.http) {
        let token = |role: duijie::desk::Role| {
            desk.users
                .iter()
                .find(|(_, u)| u.role == role)
                .map(|(t, u)| format!("{t} ({})", u.name))
                .unwrap_or_default()
        };
        println!(
            "  desk:     http://{}/desk (两法衔接工作台) while the demo runs; officer token {}, read-only supervisor token {}",
            http.listen,
            token(duijie::desk::Role::Officer),
            token(duijie::desk::Role::Supervisor)
        );
    }
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(options.seconds) {
        tokio::time::sleep(Duration::from_secs(5).min(Duration::from_secs(options.seconds))).await;
        let line: Vec<String> = stats
            .snapshot()
            .iter()
            .map(|(name, s)| {
                format!(
                    "{name}: {} delivered, {} dead-lettered",
                    PipelineStats::get(&s.delivered),
                    PipelineStats::get(&s.dead_lettered)
                )
            })
            .collect();
        print!("\r  … {}   ", line.join("; "));
        let _ = std::io::stdout().flush();
        if hub_task.is_finished() {
            break;
        }
    }
    println!();
    shutdown.cancel();
    hub_task
        .await
        .map_err(|e| Error::transient(Domain::Io, format!("the hub's task: {e}")))??;

    Ok(Ran {
        stats,
        delivery_stats,
        clock_stats,
        feedings,
    })
}

/// What is on the bus, read back: every topic once.
async fn read_back(
    bus: &duijie::bus::Bus,
    deployment: &Deployment,
) -> Result<BTreeMap<String, Vec<duijie::bus::inspect::ReadRecord>>> {
    let mut topics: BTreeMap<String, Vec<duijie::bus::inspect::ReadRecord>> = BTreeMap::new();
    for t in deployment.topics() {
        let records = read_topic(bus, &t.name, false).await?;
        topics.insert(t.name, records);
    }
    Ok(topics)
}

type Topics = BTreeMap<String, Vec<duijie::bus::inspect::ReadRecord>>;

/// Per pipeline: fetched, acknowledged, and records counted on its topics
/// by the pipeline their provenance names.
fn report_pipelines(deployment: &Deployment, ran: &Ran, topics: &Topics) {
    let stats = &ran.stats;
    let written_by = |topic: &str, pipeline: &str| {
        topics.get(topic).map_or(0, |records| {
            records
                .iter()
                .filter(|r| r.headers.get("duijie-pipeline").map(String::as_str) == Some(pipeline))
                .count()
        })
    };
    println!(
        "\nPipelines (fetched from the source; acknowledged by the broker; read back from the topics):"
    );
    for (name, s) in stats.snapshot() {
        let (on_topic, in_dlq) = deployment
            .pipelines
            .iter()
            .find(|p| p.name == name)
            .map_or((0, 0), |p| {
                (written_by(&p.topic, &name), written_by(&p.dlq_topic, &name))
            });
        println!(
            "  {name:<22} fetched {:>6}  delivered {:>6}  dead-lettered {:>4}  on topic {:>6}  in DLQ {:>4}  retries {:>3}  failed polls {:>2}",
            PipelineStats::get(&s.fetched),
            PipelineStats::get(&s.delivered),
            PipelineStats::get(&s.dead_lettered),
            on_topic,
            in_dlq,
            PipelineStats::get(&s.retries),
            PipelineStats::get(&s.failed_polls),
        );
    }
}

/// What the simulators and the feeders did.
async fn report_sandbox(sandbox_run: &mut SandboxRun, listen: &str, ran: &Ran) -> Result<()> {
    let (requests, errors, slow, duplicates) = match sandbox_run {
        SandboxRun::InProcess {
            plan, simulators, ..
        } => {
            use std::sync::atomic::Ordering::Relaxed;
            for line in simulators.iter().filter_map(|s| s.report()) {
                println!("  {line}");
            }
            let c = &plan.counters;
            (
                c.requests.load(Relaxed),
                c.errors.load(Relaxed),
                c.slow.load(Relaxed),
                c.duplicates.load(Relaxed),
            )
        }
        SandboxRun::Process(child) => {
            let counters: serde_json::Value = async {
                reqwest::get(format!("http://{listen}/sandbox/counters"))
                    .await?
                    .json()
                    .await
            }
            .await
            .map_err(|e: reqwest::Error| {
                Error::transient(Domain::Io, format!("the sandbox's counters: {e}"))
            })?;
            let _ = child.kill();
            let n = |k: &str| counters[k].as_u64().unwrap_or_default();
            (n("requests"), n("errors"), n("slow"), n("duplicates"))
        }
    };
    println!(
        "  sandbox answered {requests} requests: {errors} HTTP 500s, {slow} slow, {duplicates} duplicated rows — retried, nothing lost",
    );
    for feeding in &ran.feedings {
        println!("  {}", feeding.report());
    }

    Ok(())
}

/// Per delivery: settled records, receipts and dead letters read back;
/// the keepers' clocks.
fn report_deliveries(deployment: &Deployment, ran: &Ran, topics: &Topics) {
    let (delivery_stats, clock_stats) = (&ran.delivery_stats, &ran.clock_stats);
    // Receipts read back: one per settled record and delivery, told
    // apart by the record's place on its topic.
    // Per delivery: receipts, and the distinct records they settle.
    type Place = (String, i32, i64);
    let mut receipted: BTreeMap<String, (usize, std::collections::BTreeSet<Place>)> =
        BTreeMap::new();
    for r in topics
        .get(&deployment.hub.receipts_topic)
        .into_iter()
        .flatten()
    {
        if let Some(receipt) = r
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_slice::<duijie::delivery::Receipt>(p).ok())
        {
            let e = receipted.entry(receipt.delivery).or_default();
            e.0 += 1;
            e.1.insert((receipt.topic, receipt.partition, receipt.offset));
        }
    }
    println!(
        "\nDeliveries (settled = receipt written and offset committed; receipts and dead letters read back):"
    );
    for (name, s) in delivery_stats.lock().expect("deliveries lock").iter() {
        use std::sync::atomic::Ordering::Relaxed;
        let (receipts, distinct) = receipted
            .get(name)
            .map_or((0, 0), |(n, places)| (*n, places.len()));
        let letters = deployment
            .deliveries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.dlq_topic(name))
            .and_then(|t| topics.get(&t))
            .map_or(0, Vec::len);
        println!(
            "  {name:<24} delivered {:>5}  refused {:>3}  failed {:>3}  not sent {:>3}  held {:>3}  receipts {:>5}  twice {:>2}  dead letters {:>3}  retries {:>3}",
            s.delivered.load(Relaxed),
            s.rejected.load(Relaxed),
            s.failed.load(Relaxed),
            s.not_sent.load(Relaxed),
            s.held.load(Relaxed),
            receipts,
            receipts - distinct,
            letters,
            s.retries.load(Relaxed)
        );
    }
    {
        use std::sync::atomic::Ordering::Relaxed;
        println!(
            "  credit publication clock: {} pending, {} at risk, {} late; blacklist: {} case(s) in procedure (notice, objections, decision: /desk/blacklist), {} listed; commitments: {} due soon, {} leads",
            clock_stats.credit_pending.load(Relaxed),
            clock_stats.credit_at_risk.load(Relaxed),
            clock_stats.credit_late.load(Relaxed),
            clock_stats.blacklist_open.load(Relaxed),
            clock_stats.blacklisted.load(Relaxed),
            clock_stats.commitments_due_soon.load(Relaxed),
            clock_stats.commitment_leads.load(Relaxed)
        );
    }
}

/// The entity library as any instance rebuilds it from the bus.
async fn report_entities(deployment: &Deployment) -> Result<()> {
    if let Some(setting) = deployment.entity_setting()? {
        // The library as any instance rebuilds it from the bus.
        let library = duijie::entity::api::Library::from_bus(
            &setting,
            std::sync::Arc::new(duijie::calendar::Calendar::load_dir(
                &deployment.hub.calendar,
            )?),
            std::sync::Arc::new(duijie::schema::SchemaSet::load_dir(
                &deployment.hub.schemas,
            )?),
            Duration::from_secs(120),
        )
        .await?;
        let index = |e: String| Error::permanent(Domain::Entity, format!("the entity index: {e}"));
        let (entities, several, records) =
            library.index.counts().map_err(|e| index(e.to_string()))?;
        let (proposals, _) = library
            .index
            .proposals(0)
            .map_err(|e| index(e.to_string()))?;
        println!(
            "  entity library: {entities} entities indexed from {records} records, {several} seen by several systems; {proposals} name-only record(s) proposed for a link (/desk/entities)"
        );
    }
    Ok(())
}

/// The alerts, by kind.
async fn report_alerts(bus: &duijie::bus::Bus, deployment: &Deployment) -> Result<()> {
    let alerts = read_topic(bus, &deployment.hub.alerts_topic, false).await?;
    let mut by_kind: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for a in &alerts {
        if let Some(v) = a
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
        {
            let kind = v["kind"].as_str().unwrap_or("?").to_owned();
            let e = by_kind
                .entry(kind)
                .or_insert((0, v["message"].as_str().unwrap_or("").to_owned()));
            e.0 += 1;
        }
    }
    println!("\nAlerts ({}):", deployment.hub.alerts_topic);
    if by_kind.is_empty() {
        println!("  none");
    }
    for (kind, (n, example)) in &by_kind {
        println!("  {kind:<28} {n:>4} × e.g. {example}");
    }

    Ok(())
}

/// The two-law desk's referrals, folded from the bus.
async fn report_desk(bus: &duijie::bus::Bus, deployment: &Deployment) -> Result<()> {
    if let Some(desk) = &deployment.sections.desk {
        let calendar = duijie::calendar::Calendar::load_dir(&deployment.hub.calendar)?;
        let schemas = duijie::schema::SchemaSet::load_dir(&deployment.hub.schemas)?;
        let views = duijie::desk::views_from_topic(
            bus,
            &schemas,
            &desk.tracker(),
            &calendar,
            chrono::Utc::now(),
        )
        .await?;
        let count = |f: fn(&duijie::keepers::referral::ReferralView) -> bool| {
            views.iter().filter(|v| f(v)).count()
        };
        println!(
            "\nTwo-law desk ({}): {} referral(s), {} late, {} at risk, {} closed, {} with out-of-order events, {} with steps done late",
            desk.events_topic,
            views.len(),
            count(|v| v.late),
            count(|v| v.at_risk),
            count(|v| v
                .state
                .is_some_and(duijie::keepers::referral::RefState::closed)),
            count(|v| !v.flags.is_empty()),
            count(|v| !v.late_steps.is_empty()),
        );
        if let Some(v) = views.iter().find(|v| v.late) {
            println!(
                "  e.g. {} 「{}」: {}{}, due {} ({})",
                v.referral_no,
                v.state_label,
                v.next_actor,
                v.next_action,
                v.due_at
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .map(duijie::calendar::local_text)
                    .unwrap_or_default(),
                v.limit.clone().unwrap_or_default()
            );
        }
        let referral_alerts = read_topic(bus, &desk.alerts_topic, false).await?;
        println!(
            "  {} referral alert(s) on {}; `duijie referrals overdue` lists the late ones",
            referral_alerts.len(),
            desk.alerts_topic
        );
    }

    Ok(())
}

/// Records and keys per topic; returns a canonical record to show.
fn report_topics(topics: &Topics) -> Option<(String, duijie::bus::inspect::ReadRecord)> {
    println!("\nTopics:");
    let mut sample = None;
    for (name, records) in topics {
        let keys: std::collections::BTreeSet<_> = records.iter().map(|r| r.key.clone()).collect();
        println!(
            "  {:<28} {:>6} records, {:>6} distinct keys",
            name,
            records.len(),
            keys.len()
        );
        if sample.is_none() && name.starts_with("canonical.") {
            sample = records.last().cloned().map(|r| (name.clone(), r));
        }
    }

    sample
}

/// The dead letters of every pipeline, by rule.
fn report_rejects(deployment: &Deployment, topics: &Topics) {
    println!("\nRejects (dead-letter topics), by rule:");
    let mut reasons: BTreeMap<(String, String, String), (usize, String)> = BTreeMap::new();
    for p in &deployment.pipelines {
        for r in topics.get(&p.dlq_topic).into_iter().flatten() {
            if let Some(letter) = r
                .payload
                .as_deref()
                .and_then(|b| serde_json::from_slice::<DeadLetter>(b).ok())
            {
                let entry = reasons
                    .entry((
                        p.dlq_topic.clone(),
                        letter.field.clone().unwrap_or_default(),
                        letter.rule.clone(),
                    ))
                    .or_insert((0, letter.reason.clone()));
                entry.0 += 1;
            }
        }
    }
    if reasons.is_empty() {
        println!("  none");
    }
    for ((topic, field, rule), (n, example)) in &reasons {
        let field = if field.is_empty() {
            "-".to_owned()
        } else {
            field.clone()
        };
        println!("  {topic:<22} {n:>4} × {field} / {rule}: e.g. {example}");
    }
}

/// One canonical record, decoded, with its provenance headers.
fn report_sample(
    deployment: &Deployment,
    sample: Option<(String, duijie::bus::inspect::ReadRecord)>,
) -> Result<()> {
    if let Some((topic, record)) = sample {
        let schemas = duijie::schema::SchemaSet::load_dir(&deployment.hub.schemas)?;
        if let (Some(name), Some(payload)) = (
            record.headers.get("duijie-schema"),
            record.payload.as_deref(),
        ) && let Some(schema) = schemas.get(name)
            && let Ok(value) = schema.decode_single_object(payload)
        {
            let json: serde_json::Value = value.try_into().unwrap_or_default();
            println!("\nA canonical record from {topic} (Avro single-object, decoded):");
            println!("  key {}", record.key_str());
            println!("  {}", json);
            println!("  provenance headers:");
            for (k, v) in record
                .headers
                .iter()
                .filter(|(k, _)| k.starts_with("duijie-"))
            {
                println!("    {k}: {v}");
            }
        }
    }

    Ok(())
}

/// Where to look next.
fn report_next_steps(duijie: &str) {
    let fixture = std::fs::read_dir("mappings/tests/urban_case")
        .ok()
        .and_then(|d| {
            let mut inputs: Vec<String> = d
                .flatten()
                .map(|e| e.path().display().to_string())
                .filter(|p| p.contains(".input."))
                .collect();
            inputs.sort();
            inputs.into_iter().next()
        })
        .unwrap_or_else(|| "FILE".into());
    println!("\nWhere to look next (from the repository's root):");
    for (command, what) in [
        (
            format!("{duijie} check"),
            "validate pipelines, mappings and schemas",
        ),
        (
            format!("{duijie} mapping test"),
            "golden fixtures of every mapping",
        ),
        (
            format!("{duijie} map --mapping urban_case --input {fixture}"),
            "dry-run a mapping on an export, no Kafka",
        ),
        (
            format!("{duijie} validate uscc 91350100M000100Y43"),
            "check a credit code as the mappings do",
        ),
        (
            format!("{duijie} referrals rules"),
            "the statutory clocks of a referral, with their bases",
        ),
    ] {
        println!("  {command}");
        println!("      {what}");
    }
    println!(
        "  var/exchange/*/done and */rejected: files taken, and files refused with a .reason.txt"
    );
    println!("  pipelines/yichang.toml, mappings/*.yaml, schemas/*.avsc");
}

/// Writes the capture of `--capture`; returns how many lines.
async fn write_capture(
    path: &std::path::Path,
    deployment: &Deployment,
    topics: &BTreeMap<String, Vec<duijie::bus::inspect::ReadRecord>>,
    wire: Vec<serde_json::Value>,
) -> Result<usize> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut n = 0;
    for request in wire {
        writeln!(
            out,
            "{}",
            serde_json::json!({"kind": "request", "request": request})
        )?;
        n += 1;
    }
    // The pull feeds, as a department reads them.
    if let Some(http) = &deployment.http {
        for (name, d) in &deployment.deliveries {
            if let duijie::delivery::TargetConfig::Pull { token } = &d.target {
                let department = d.department.clone().unwrap_or_else(|| name.clone());
                let url = format!("http://{}/feeds/{department}?limit=1000", http.listen);
                let body = reqwest::Client::new()
                    .get(&url)
                    .bearer_auth(token)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .and_then(|r| r.error_for_status());
                let body = match body {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(e) => format!("not read: {e}"),
                };
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"kind": "pull", "delivery": name, "body": body})
                )?;
                n += 1;
            }
        }
    }
    let mut bus_topics = vec![
        ("receipt", deployment.hub.receipts_topic.clone()),
        ("alert", deployment.hub.alerts_topic.clone()),
    ];
    for (name, d) in &deployment.deliveries {
        bus_topics.push(("dead_letter", d.dlq_topic(name)));
    }
    for (kind, topic) in bus_topics {
        for r in topics.get(&topic).into_iter().flatten() {
            writeln!(
                out,
                "{}",
                serde_json::json!({
                    "kind": kind, "topic": topic, "key": r.key_str(), "headers": r.headers,
                    "payload": r.payload.as_deref().map(String::from_utf8_lossy),
                })
            )?;
            n += 1;
        }
    }
    out.flush()?;
    Ok(n)
}

/// The host:port the deployment's HTTP poll source reads, where the
/// sandbox must listen.
fn sandbox_address(deployment: &Deployment) -> String {
    deployment
        .pipelines
        .iter()
        .find_map(|p| match &p.source {
            SourceConfig::HttpPoll(c) => reqwest::Url::parse(&c.url)
                .ok()
                .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?))),
            _ => None,
        })
        .unwrap_or_else(|| "127.0.0.1:18080".into())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A vendor export: generated cases plus the defects real exports carry.
fn demo_export(n: usize) -> String {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut out = String::new();
    let stamp = chrono::Utc::now().format("%m%d%H%M%S");
    for i in 0..n {
        let state = ["1", "3", "4", "5", "6"][rng.usize(..5)];
        let (main, sub, name) = [
            ("05", "01", "占道经营"),
            ("03", "02", "工地扬尘"),
            ("01", "01", "暴露垃圾"),
        ][rng.usize(..3)];
        let line = match i {
            100 => format!(
                r#"{{"taskNum":"FD{stamp}{i:05}","eventSrcId":"8","eventTypeId":"2","mainTypeId":"{main}","subTypeId":"{sub}","cellId":"42050200012301","createTime":"2026-11-20 09:15:00","eventStateId":"{state}"}}"#
            ),
            500 => format!(
                r#"{{"taskNum":"FD{stamp}{i:05}","eventSrcId":"1","eventTypeId":"2","mainTypeId":"{main}","subTypeId":"{sub}","cellId":"42050200012301","createTime":"2026年11月20日","eventStateId":"{state}"}}"#
            ),
            900 => format!(r#"{{"taskNum":"FD{stamp}{i:05}","eventSrcId":"1", "#),
            _ => format!(
                r#"{{"taskNum":"FD{stamp}{i:05}","eventSrcId":"{}","eventTypeId":"2","mainTypeId":"{main}","subTypeId":"{sub}","subTypeName":"{name}","cellId":"42050200{:04}{:02}","address":"宜昌市高新区发展大道{}号附近","coordX":"{:.6}","coordY":"{:.6}","eventDesc":"巡查发现{name}。","createTime":"2026-11-{:02} {:02}:{:02}:00","eventStateId":"{state}","reporter":"王芳"}}"#,
                1 + rng.u32(0..4),
                rng.u32(1..300),
                rng.u32(1..20),
                rng.u32(1..999),
                111.28 + rng.f64() * 0.2,
                30.65 + rng.f64() * 0.15,
                1 + rng.u32(0..27),
                rng.u32(7..20),
                rng.u32(0..60)
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The `duijie` binary beside this one, as a command that runs from the
/// current directory (relative where it can be), else `cargo run --bin
/// duijie --`.
fn duijie_command() -> String {
    let Some(bin) = std::env::current_exe()
        .ok()
        .map(|e| e.with_file_name("duijie"))
        .filter(|b| b.exists())
    else {
        return "cargo run --release --bin duijie --".into();
    };
    let here = std::env::current_dir().ok();
    match here.as_deref().and_then(|h| bin.strip_prefix(h).ok()) {
        Some(rel) => format!("./{}", rel.display()),
        None => bin.display().to_string(),
    }
}

/// `--stay`: after the report, the sandbox systems and the hub again (no
/// new input is made; the pipelines resume from their cursors), with the
/// pages' addresses and the demo's tokens, until Ctrl-C.
async fn stay(
    deployment: &Deployment,
    sandbox_config: &SandboxConfig,
    listen: &str,
    duijie: &str,
) -> Result<()> {
    let stop = CancellationToken::new();
    let (app, _, _, _) = sandbox::systems_with_receivers(sandbox_config);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("the sandbox needs {listen} again"))?;
    let sandbox_stop = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { sandbox_stop.cancelled().await })
            .await;
    });
    let hub = Hub::load(deployment.clone())?;
    let hub_stop = stop.clone();
    let hub_task = tokio::spawn(async move { hub.run(&[], hub_stop).await });
    println!("\nStaying up until Ctrl-C:");
    if let Some(http) = &deployment.http {
        let base = format!("http://{}", http.listen);
        if let Some(desk) = &deployment.sections.desk {
            for (token, user) in &desk.users {
                println!("  desk token {token} — {} ({:?})", user.name, user.role);
            }
            println!("  {base}/desk            两法衔接工作台 (log in with a token above)");
            println!("  {base}/desk/powers     权责清单与执法监督");
            println!("  {base}/desk/quality    数据质量");
        }
        if deployment
            .sections
            .entities
            .as_ref()
            .is_some_and(|e| e.public.is_some())
        {
            println!("  {base}/public/credit   信用信息公示窗口 (no login)");
        }
        println!("  {base}/ready           the hub's state");
    }
    println!(
        "  DUIJIE_KAFKA_BROKERS={} {duijie} referrals overdue",
        deployment.kafka.brokers
    );
    println!("      late referrals, read from the demo's broker");
    let _ = tokio::signal::ctrl_c().await;
    stop.cancel();
    hub_task
        .await
        .map_err(|e| Error::transient(Domain::Io, format!("the hub's task: {e}")))??;
    Ok(())
}
