//! The `duijie-sandbox` command: the simulated external systems, the demo
//! and the embedded brokers, for development, the demo and the tests. The
//! hub itself is the `duijie` command.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use duijie::config::Deployment;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "duijie-sandbox",
    version,
    about = "对接 sandbox — simulated systems, the demo and the embedded brokers of the duijie hub"
)]
struct Cli {
    /// Log output: `text` (default) or `json` lines.
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

const DEFAULT_CONFIG: &str = "pipelines/yichang.toml";

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulators of the external systems, with switchable faults.
    Serve {
        #[arg(long, default_value = "127.0.0.1:18080")]
        listen: String,
        /// Digital urban management cases at start.
        #[arg(long, default_value_t = 2000)]
        cases: usize,
        /// New or changed cases per second.
        #[arg(long, default_value_t = 20)]
        changes_per_sec: u32,
        /// Share of generated records with a defect.
        #[arg(long, default_value_t = 0.01)]
        bad_rate: f64,
        /// Share of requests answered with HTTP 500.
        #[arg(long, default_value_t = 0.0)]
        error_rate: f64,
        /// Share of requests answered slowly.
        #[arg(long, default_value_t = 0.0)]
        slow_rate: f64,
        #[arg(long, default_value_t = 2000)]
        slow_ms: u64,
        /// Share of rows sent twice.
        #[arg(long, default_value_t = 0.0)]
        duplicate_rate: f64,
        /// Lifetime of a grid login token, e.g. `60s`.
        #[arg(long, default_value = "300s")]
        grid_token_ttl: humantime::Duration,
        /// Push urgent grid events to this webhook URL.
        #[arg(long)]
        grid_webhook: Option<String>,
        /// HMAC secret of the grid webhook, from the environment (never on
        /// the command line, where every process could read it).
        /// Set `DUIJIE_SANDBOX_GRID_WEBHOOK_SECRET`; the default is the demo's.
        #[arg(skip = std::env::var("DUIJIE_SANDBOX_GRID_WEBHOOK_SECRET").unwrap_or_else(|_| "grid-urgent-webhook-secret".into()))]
        grid_webhook_secret: String,
        /// One urgent grid event this often.
        #[arg(long, default_value = "10s")]
        grid_webhook_every: humantime::Duration,
        /// Drop police exchange messages into this directory at start.
        #[arg(long)]
        police_dir: Option<PathBuf>,
        /// Drop an approval batch (2016 layout) into this directory at start.
        #[arg(long)]
        approval_dir: Option<PathBuf>,
        /// Fill and keep changing this front-end database (repeatable).
        #[arg(long = "safety-db")]
        safety_dbs: Vec<String>,
        /// The hazard table in those databases (the view reads `v_<table>`).
        #[arg(long, default_value = "hidden_danger")]
        safety_table: String,
        #[arg(long, default_value_t = 20170125)]
        seed: u64,
    },
    /// Bring up a broker, the sandbox and the Yichang pipelines, and show
    /// what flowed.
    Demo {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Use this cluster instead of bringing one up.
        #[arg(long)]
        brokers: Option<String>,
        /// Register the canonical schemas with this Confluent-compatible
        /// schema registry (Apicurio: `http://HOST:PORT/apis/ccompat/v7`)
        /// and write the Confluent wire format.
        #[arg(long)]
        registry: Option<String>,
        /// Bring up a supervised Tansu broker instead of the embedded one.
        #[arg(long)]
        tansu: bool,
        /// How long to run the pipelines.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Run the sandbox systems as a separate `duijie-sandbox serve` process,
        /// so that this process holds the hub alone (the soak measures it).
        #[arg(long)]
        sandbox_process: bool,
        /// Write what left the hub (requests the receivers got, pull feed
        /// answers, receipts, alerts, push dead letters) to this file, one
        /// JSON object a line.
        #[arg(long)]
        capture: Option<PathBuf>,
        /// The hub's log on the terminal (default: in `var/duijie-demo.log`
        /// beside the exchange folders, whose path the demo prints).
        #[arg(long)]
        verbose: bool,
        /// After the report, keep the hub, the desk, the public window and
        /// the broker up until Ctrl-C.
        #[arg(long)]
        stay: bool,
    },
    /// Run the embedded broker (librdkafka's mock cluster) in the
    /// foreground and print its bootstrap address.
    Broker {
        /// Number of mock brokers.
        #[arg(long, default_value_t = 1)]
        brokers: i32,
        /// Create the topics of this deployment on it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        // The demo's report is the terminal's; its log goes to a file.
        Command::Demo {
            config,
            verbose: false,
            ..
        } => {
            let log = duijie_sandbox::demo::log_file(config);
            if let Err(e) = duijie::telemetry::init_to_file(&cli.log_format, &log) {
                eprintln!("error: the demo's log {}: {e}", log.display());
                return ExitCode::FAILURE;
            }
        }
        _ => duijie::telemetry::init(&cli.log_format),
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", duijie::secrets::redact(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Long because the sandbox binary's commands, each a few lines of argument
/// plumbing.
fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve {
            listen,
            cases,
            changes_per_sec,
            bad_rate,
            error_rate,
            slow_rate,
            slow_ms,
            duplicate_rate,
            grid_token_ttl,
            grid_webhook,
            grid_webhook_secret,
            grid_webhook_every,
            police_dir,
            approval_dir,
            safety_dbs,
            safety_table,
            seed,
        } => {
            let config = duijie_sandbox::SandboxConfig {
                grid: duijie_sandbox::grid::Settings {
                    token_ttl: grid_token_ttl.into(),
                    webhook: grid_webhook.map(|url| duijie_sandbox::grid::WebhookTarget {
                        url,
                        secret: grid_webhook_secret,
                        every: grid_webhook_every.into(),
                    }),
                    ..Default::default()
                },
                referral: duijie_sandbox::referral::Settings {
                    police_dir,
                    ..Default::default()
                },
                approval: duijie_sandbox::approval::Settings {
                    dir: approval_dir,
                    ..Default::default()
                },
                safety: duijie_sandbox::safety::Settings {
                    dbs: safety_dbs,
                    table: safety_table,
                },
                urban: duijie_sandbox::urban::Settings {
                    cases,
                    changes_per_sec,
                },
                seed,
                faults: duijie_sandbox::Faults {
                    error_rate,
                    slow_rate,
                    slow_ms,
                    duplicate_rate,
                    ..Default::default()
                },
                bad_rate,
                ..Default::default()
            };
            tokio_main(async move {
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("binding {listen}"))?;
                eprintln!("sandbox listening on http://{listen}");
                eprintln!(
                    "  GET  /dcm/api/cases      digital urban management case list (keyset or page)"
                );
                eprintln!(
                    "  POST /sandbox/faults     switch faults: {{\"error_rate\":0.1,\"slow_rate\":0.05,\"slow_ms\":3000,\"duplicate_rate\":0.05}}"
                );
                eprintln!("  GET  /sandbox/counters   faults injected so far");
                let shutdown = tokio_util::sync::CancellationToken::new();
                duijie::runtime::spawn_signal_handler(shutdown.clone());
                duijie_sandbox::serve(listener, config, shutdown).await?;
                Ok(())
            })
        }
        Command::Demo {
            config,
            brokers,
            registry,
            tansu,
            seconds,
            sandbox_process,
            capture,
            verbose,
            stay,
        } => tokio_main(async move {
            let log = (!verbose).then(|| duijie_sandbox::demo::log_file(&config));
            let options = duijie_sandbox::demo::DemoOptions {
                config,
                brokers,
                registry,
                tansu,
                seconds,
                sandbox_process,
                capture,
                log,
                stay,
            };
            Ok(duijie_sandbox::demo::run(options).await?)
        }),
        Command::Broker { brokers, config } => {
            let broker = duijie_sandbox::broker::EmbeddedBroker::start(brokers)?;
            eprintln!(
                "duijie-sandbox broker: librdkafka's in-process mock cluster, for trying things out only. It keeps everything in memory and only a bounded tail (about 7,000 records) of each partition, does not isolate uncommitted transactions, and cannot create topics through the admin API{}. Production and the tests use Apache Kafka.",
                if config.is_some() {
                    " (this deployment's topics are created on it now)"
                } else {
                    ": pass --config FILE to create a deployment's topics on it"
                }
            );
            if let Some(config) = config {
                broker.create_topics(&load_deployment(&config)?.topics())?;
            }
            println!("{}", broker.bootstrap_servers());
            std::io::stdout().flush()?;
            tokio_main(async {
                tokio::signal::ctrl_c().await?;
                Ok(())
            })?;
            drop(broker);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn tokio_main(fut: impl std::future::Future<Output = Result<()>>) -> Result<ExitCode> {
    duijie::runtime::block_on(fut).map(|()| ExitCode::SUCCESS)
}

fn load_deployment(config: &Path) -> Result<Deployment> {
    Ok(Deployment::load_reported(config)?)
}
