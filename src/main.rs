//! The `duijie` command.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use duijie::config::Deployment;
use duijie::ident::IdKind;
use duijie::mapping::{MappingSet, golden};
use duijie::schema::SchemaSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// mimalloc: the hub allocates and frees across threads (mapping threads,
/// tokio workers, librdkafka's callbacks), where glibc's allocator spends a
/// quarter of the time consolidating.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "duijie",
    version,
    about = "对接 — integration hub of the comprehensive law-enforcement bureau"
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
    /// Run the pipelines of a deployment until SIGTERM or Ctrl-C.
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Run only these pipelines (default: all).
        #[arg(long = "pipeline")]
        pipelines: Vec<String>,
    },
    /// Check a deployment: config, pipelines, mappings and schemas.
    Check {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Mapping tools.
    Mapping {
        #[command(subcommand)]
        command: MappingCommand,
    },
    /// Map an input file without Kafka: canonical records and rejects as
    /// JSON lines.
    Map {
        /// Mapping name (file name without `.yaml`).
        #[arg(long)]
        mapping: String,
        #[arg(long)]
        input: PathBuf,
        /// Canonical records (default: standard output).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Rejects (default: standard error).
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// `json` lines, or an Avro object container file (`avro`).
        #[arg(long, value_enum, default_value = "json")]
        format: duijie::mapping::stream::OutputFormat,
        /// Mapping threads (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long, default_value = "mappings")]
        mappings: PathBuf,
        #[arg(long, default_value = "schemas")]
        schemas: PathBuf,
    },
    /// Push feeds: what each department got.
    Feeds {
        #[command(subcommand)]
        command: FeedsCommand,
    },
    /// Push pipelines without Kafka.
    Push {
        #[command(subcommand)]
        command: PushCommand,
    },
    /// Deliver a push feed again from a time or an offset; receivers absorb
    /// what they already had by its idempotency key.
    Replay {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The delivery's name.
        #[arg(long)]
        feed: String,
        /// RFC 3339, `YYYY-MM-DD HH:MM` (Asia/Shanghai), or `offset:N`.
        #[arg(long)]
        from: String,
    },
    /// Suspected-crime referrals (两法衔接) and their statutory deadlines,
    /// from the referral events on the bus.
    Referrals {
        #[arg(long, default_value = DEFAULT_CONFIG, global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: ReferralsCommand,
    },
    /// The market-entity credit library (市场主体信用信息库): one profile per
    /// entity across every system, rebuilt from the bus.
    Entity {
        #[arg(long, default_value = DEFAULT_CONFIG, global = true)]
        config: PathBuf,
        #[command(subcommand)]
        command: EntityCommand,
    },
    /// Data quality per source, per day, from the bus: per field
    /// completeness and validity, code-table values (unknown codes too),
    /// rejects per rule.
    Quality {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Only these pipelines (default: all).
        #[arg(long = "pipeline")]
        pipelines: Vec<String>,
        /// The last N days with records.
        #[arg(long, default_value_t = 7)]
        days: usize,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Map a pipeline's raw records of a period again with the current
    /// mapping and code tables, and republish them under the same keys
    /// (needs the pipeline's raw retention); interrupt and run again to
    /// resume.
    Remap {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        pipeline: String,
        /// When the records were fetched, from: RFC 3339 or `YYYY-MM-DD
        /// HH:MM` (Asia/Shanghai).
        #[arg(long)]
        from: String,
        /// Up to (default: everything kept).
        #[arg(long)]
        to: Option<String>,
    },
    /// Re-read a pipeline's source history (keyset HTTP, SOAP and SQL
    /// sources), with a progress bar; interrupt and run again to resume.
    Backfill {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        pipeline: String,
        /// `2026-01-01` or `"2026-01-01 08:00"`, source local time.
        #[arg(long)]
        from: String,
        /// Where to stop (default: when caught up with the source).
        #[arg(long)]
        to: Option<String>,
        /// Records per second, at most.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// A running hub's pipelines, feeds and clocks (from its `/ready`).
    Status {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The hub's address (default: the deployment's `[http] listen`).
        #[arg(long)]
        url: Option<String>,
    },
    /// Receipts of the push feeds.
    Receipts {
        #[command(subcommand)]
        command: ReceiptsCommand,
    },
    /// The tamper-evident audit trail (SM3 chain, SM2 signatures).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// What the supervision of the bureau watches (行政执法监督).
    Supervision {
        #[command(subcommand)]
        command: SupervisionCommand,
    },
    /// Statutory deadlines on the official calendar.
    Calendar {
        #[command(subcommand)]
        command: CalendarCommand,
    },
    /// Check identifiers: `uscc` (统一社会信用代码) or `id` (居民身份证号码).
    Validate {
        kind: ValidateKind,
        #[arg(required = true)]
        values: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ReceiptsCommand {
    /// Prove, for a delivery's receipts (one record's, with --record),
    /// what was sent and what was acknowledged: the hub's SM2 signature
    /// over each receipt, the receiver's SM2 signature over its answer
    /// (its `receipt_key`), and with --input (canonical records, as `duijie
    /// map` writes them) that the body sent is the one the delivery makes
    /// of the record. Exit 1 when a check fails.
    Verify {
        #[arg(long)]
        delivery: String,
        #[arg(long)]
        record: Option<String>,
        #[arg(long)]
        input: Option<PathBuf>,
        /// The hub's public key (SPKI PEM) (default: the public half of
        /// `[hub.signing]`).
        #[arg(long)]
        public_key: Option<PathBuf>,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify an audit topic's chains: each entry's SM3 hash, its link to
    /// the one before, its order, and the hub's SM2 signature. Names the
    /// first entry changed, removed or reordered in each chain, by
    /// partition and offset; exit 1 when there is one.
    Verify {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The topic (default: the desk's `audit_topic`).
        #[arg(long)]
        topic: Option<String>,
        /// The hub's public key (SPKI PEM) to check signatures with
        /// (default: the public half of `[hub.signing]`).
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum MappingCommand {
    /// Run every mapping's golden fixtures and print a diff on failure.
    Test {
        #[arg(long, default_value = "mappings")]
        mappings: PathBuf,
        #[arg(long, default_value = "schemas")]
        schemas: PathBuf,
        /// Fixture folder (default: `<mappings>/tests`).
        #[arg(long)]
        fixtures: Option<PathBuf>,
        /// Only this mapping's fixtures.
        #[arg(long)]
        mapping: Option<String>,
        /// Rewrite the expected files from the current output: `--bless
        /// NAME` one mapping's, `--bless` alone every mapping's.
        #[arg(long, num_args = 0..=1, default_missing_value = "")]
        bless: Option<String>,
    },
    /// What an edited mapping (or code tables) would change on the raw
    /// records the pipelines using it kept: per field, records that change,
    /// gain or lose a value, with examples; records that newly reject or
    /// pass. Exits 1 when anything changes (a CI gate on an approved diff).
    Diff {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        mapping: String,
        /// The edited mapping file (default: the current file, to try
        /// edited code tables alone).
        #[arg(long)]
        file: Option<PathBuf>,
        /// An edited copy of `mappings/codes/`.
        #[arg(long)]
        codes: Option<PathBuf>,
        /// The most recent N raw records (default 1000).
        #[arg(long, conflicts_with = "from")]
        sample: Option<usize>,
        /// Every raw record fetched since (RFC 3339 or `YYYY-MM-DD HH:MM`).
        #[arg(long)]
        from: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
}

#[derive(Debug, Subcommand)]
enum FeedsCommand {
    /// Per feed: delivered, refused, failed, not sent (policy), pending.
    Status {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// One signed test delivery to a feed's webhook or SOAP receiver, as
    /// the feed sends it; prints the receiver's answer (exit 1 unless it
    /// accepted).
    Test {
        #[arg(long)]
        feed: String,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PushCommand {
    /// A dry run of a delivery: canonical records (JSON lines, as `duijie
    /// map` writes them) through its selection, transform and personal-data
    /// rule, without Kafka or network; prints, one JSON object a line, the
    /// request the receiver would get (URL, headers, body, idempotency key)
    /// or why a record is not sent.
    Preview {
        #[arg(long)]
        delivery: String,
        #[arg(long)]
        input: PathBuf,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum EntityCommand {
    /// One entity per line: code, name, the systems with records for it,
    /// records, whether it is restricted.
    List {
        /// Only entities whose name or code contains this.
        #[arg(long)]
        query: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// One entity's profile: every record with its source system and
    /// provenance, open items and restrictions. CODE is a credit code or a
    /// key as `list` prints it (`uscc:…`, `pid:…`).
    Show {
        code: String,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
}

#[derive(Debug, Subcommand)]
enum ReferralsCommand {
    /// Every referral: state, who acts next, due time, time left.
    List {
        /// Only referrals in this state (`UNDER_REVIEW`, `NOT_OPENED`…).
        #[arg(long)]
        state: Option<String>,
    },
    /// One referral with its whole timeline and each event's provenance.
    Show { referral_no: String },
    /// Referrals past their statutory deadline, and those at risk.
    Overdue,
    /// Every statutory step: its limit, unit and legal basis.
    Rules {
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// A dry run of the tracker on canonical ReferralEvent records (JSON
    /// lines, as `duijie map` writes them), without Kafka: each referral's
    /// state, who acts next, the running step, its due time and whether it
    /// is late at `--now`.
    Replay {
        #[arg(long)]
        input: PathBuf,
        /// RFC 3339, or `YYYY-MM-DD HH:MM` in Asia/Shanghai; default now.
        #[arg(long)]
        now: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum SupervisionCommand {
    /// A dry run on canonical PenaltyDecision records (JSON lines, as
    /// `duijie map` writes them), without Kafka: per month and power-list
    /// item, the acts, revocations and changes, legal review before the
    /// decision, service within 行政处罚法 art. 61's seven days, repeat
    /// parties and decisions in the month's last week.
    Rates {
        #[arg(long)]
        input: PathBuf,
        /// Receipts (JSON lines, as the receipts topic has them): when the
        /// credit push published each decision (7 working days, 国办发
        /// 〔2018〕118号). Without it publication is counted unknown.
        #[arg(long)]
        receipts: Option<PathBuf>,
        /// The credit push among the receipts.
        #[arg(long, default_value = "credit_penalties")]
        delivery: String,
        /// Leads (JSON lines, as the leads topic has them).
        #[arg(long)]
        leads: Option<PathBuf>,
        /// Folder of the yearly calendar files.
        #[arg(long, default_value = "calendar")]
        calendar: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
}

#[derive(Debug, Subcommand)]
enum CalendarCommand {
    /// When a period ends: `--from "2026-09-30 10:00" --limit "3 working days"`.
    Due {
        /// RFC 3339, or `YYYY-MM-DD HH:MM` in Asia/Shanghai.
        #[arg(long)]
        from: String,
        /// `3 working days`, `24 hours`, `15 days`.
        #[arg(long)]
        limit: String,
        /// Folder of the yearly calendar files.
        #[arg(long, default_value = "calendar")]
        calendar: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ValidateKind {
    Uscc,
    Id,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    duijie::telemetry::init(&cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", duijie::secrets::redact(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Mapping {
            command:
                MappingCommand::Test {
                    mappings,
                    schemas,
                    fixtures,
                    mapping,
                    bless,
                },
        } => mapping_test(&mappings, &schemas, fixtures, mapping, bless),
        Command::Mapping {
            command:
                MappingCommand::Diff {
                    config,
                    mapping,
                    file,
                    codes,
                    sample,
                    from,
                    format,
                },
        } => match mapping_diff(&config, &mapping, file, codes, sample, from, format) {
            // Like diff(1): 0 no change, 1 changes, 2 trouble.
            Ok(code) => Ok(code),
            Err(e) => {
                eprintln!("error: {}", duijie::secrets::redact(&format!("{e:#}")));
                Ok(ExitCode::from(2))
            }
        },
        Command::Quality {
            config,
            pipelines,
            days,
            format,
        } => {
            let deployment = load_deployment(&config)?;
            for p in &pipelines {
                if deployment.pipeline(p).is_none() {
                    bail!("no pipeline `{p}` in {}", config.display());
                }
            }
            let schemas = SchemaSet::load_dir(&deployment.hub.schemas)?;
            let mappings = deployment_mappings(&deployment, &schemas)?;
            let sources = deployment.quality_sources(&mappings, &pipelines);
            let names: Vec<String> = sources.pipelines.iter().map(|p| p.0.clone()).collect();
            tokio_main(async move {
                let board = duijie::quality::from_bus(&deployment.bus(), &sources).await?;
                match format {
                    OutputFormat::Table => {
                        print!("{}", duijie::quality::report(&board, &names, days))
                    }
                    OutputFormat::Json => {
                        for l in duijie::quality::json_lines(&board, &names, days) {
                            println!("{l}");
                        }
                    }
                }
                Ok(())
            })
        }
        Command::Remap {
            config,
            pipeline,
            from,
            to,
        } => {
            let deployment = load_deployment(&config)?;
            let from = duijie::calendar::parse_time(&from).map_err(anyhow::Error::msg)?;
            let to = to
                .as_deref()
                .map(duijie::calendar::parse_time)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let command = format!(
                "remap --pipeline {pipeline} --from {from}{}",
                to.map(|t| format!(" --to {t}")).unwrap_or_default()
            );
            tokio_main(audited(deployment.clone(), command, async move {
                let hub = duijie::runtime::Hub::load(deployment)?;
                let shutdown = tokio_util::sync::CancellationToken::new();
                duijie::runtime::spawn_signal_handler(shutdown.clone());
                let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
                let s = duijie::runtime::remap::run(&hub, &pipeline, from, to, shutdown, progress)
                    .await?;
                Ok(format!(
                    "{}: {} raw record(s) read, {} republished, {} dead-lettered; {}",
                    s.key,
                    s.read,
                    s.republished,
                    s.dead_lettered,
                    if s.finished {
                        "done"
                    } else {
                        "interrupted — run the same command to resume"
                    }
                ))
            }))
        }
        Command::Map {
            mapping,
            input,
            output,
            rejects,
            format,
            threads,
            mappings,
            schemas,
        } => map(
            &mapping,
            &input,
            MapOutputs {
                output,
                rejects,
                format,
                threads,
            },
            &mappings,
            &schemas,
        ),
        Command::Validate { kind, values } => Ok(validate(kind, &values)),
        Command::Push {
            command:
                PushCommand::Preview {
                    delivery,
                    input,
                    config,
                },
        } => {
            let deployment = load_deployment(&config)?;
            let Some((name, d)) = deployment.deliveries.iter().find(|(n, _)| *n == delivery) else {
                bail!(
                    "{}: no delivery `{delivery}` (there are: {})",
                    config.display(),
                    deployment
                        .deliveries
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            let rows = duijie::delivery::preview(
                name,
                d,
                &text,
                &input.display().to_string(),
                chrono::Utc::now(),
            )?;
            for r in rows {
                println!("{r}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Feeds {
            command: FeedsCommand::Status { config },
        } => {
            let deployment = load_deployment(&config)?;
            tokio_main(async move {
                let rows = duijie::delivery::ops::status(&deployment.feeds()).await?;
                println!(
                    "{:<26} {:<14} {:<13} {:>9} {:>8} {:>7} {:>9} {:>5} {:>8}",
                    "feed",
                    "department",
                    "target",
                    "delivered",
                    "refused",
                    "failed",
                    "not sent",
                    "held",
                    "pending"
                );
                for r in rows {
                    println!(
                        "{:<26} {:<14} {:<13} {:>9} {:>8} {:>7} {:>9} {:>5} {:>8}",
                        r.delivery,
                        r.department,
                        r.target,
                        r.delivered,
                        r.rejected,
                        r.failed,
                        r.not_sent,
                        r.held,
                        r.pending.map_or("pulled".into(), |p| p.to_string())
                    );
                }
                Ok(())
            })
        }
        Command::Feeds {
            command: FeedsCommand::Test { feed, config },
        } => {
            let deployment = load_deployment(&config)?;
            tokio_main_value(async move {
                let t = duijie::delivery::ops::test_delivery(&deployment.feeds(), &feed).await?;
                println!(
                    "{feed}: {} → {} (Idempotency-Key {})",
                    t.url, t.answer, t.key
                );
                Ok(if t.accepted {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            })
        }
        Command::Replay { config, feed, from } => {
            let deployment = load_deployment(&config)?;
            let command = format!("replay --feed {feed} --from {from}");
            let from: duijie::delivery::ops::From = from.parse().map_err(anyhow::Error::msg)?;
            tokio_main(audited(deployment.clone(), command, async move {
                let r = duijie::delivery::ops::replay(&deployment.feeds(), &feed, from).await?;
                Ok(format!(
                    "{feed}: read {} record(s); delivered {}, refused {}, failed {}, not sent {}, held {}, not selected {}",
                    r.read,
                    r.delivered,
                    r.rejected,
                    r.failed,
                    r.not_sent,
                    r.held,
                    r.not_selected()
                ))
            }))
        }
        Command::Backfill {
            config,
            pipeline,
            from,
            to,
            rate,
        } => {
            let deployment = load_deployment(&config)?;
            let from = duijie::runtime::backfill::watermark(&from)?;
            let to = to
                .as_deref()
                .map(duijie::runtime::backfill::watermark)
                .transpose()?;
            if rate.is_some_and(|r| r <= 0.0) {
                bail!("--rate must be positive");
            }
            let command = format!(
                "backfill --pipeline {pipeline} --from {from:?}{}{}",
                to.as_ref()
                    .map(|t| format!(" --to {t:?}"))
                    .unwrap_or_default(),
                rate.map(|r| format!(" --rate {r}")).unwrap_or_default()
            );
            tokio_main(audited(deployment.clone(), command, async move {
                let hub = duijie::runtime::Hub::load(deployment)?;
                let shutdown = tokio_util::sync::CancellationToken::new();
                duijie::runtime::spawn_signal_handler(shutdown.clone());
                let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
                let s = duijie::runtime::backfill::run(
                    &hub, &pipeline, from, to, rate, shutdown, progress,
                )
                .await?;
                Ok(format!(
                    "{}: {} fetched, {} delivered, {} dead-lettered, at {}; {}",
                    s.key,
                    s.fetched,
                    s.delivered,
                    s.dead_lettered,
                    s.watermark.as_deref().unwrap_or("the start"),
                    if s.finished {
                        "done"
                    } else {
                        "interrupted — run the same command to resume"
                    }
                ))
            }))
        }
        Command::Receipts {
            command:
                ReceiptsCommand::Verify {
                    delivery,
                    record,
                    input,
                    public_key,
                    config,
                },
        } => receipts_verify(&config, &delivery, record, input, public_key),
        Command::Audit {
            command:
                AuditCommand::Verify {
                    config,
                    topic,
                    public_key,
                },
        } => audit_verify(&config, topic, public_key),
        Command::Status { config, url } => {
            let deployment = load_deployment(&config)?;
            let url = match url {
                Some(u) => u,
                None => match &deployment.http {
                    Some(h) => format!("http://{}", h.listen),
                    None => bail!("{} has no [http] section; pass --url", config.display()),
                },
            };
            tokio_main(async move {
                let token = deployment
                    .http
                    .as_ref()
                    .and_then(|h| h.status_token.clone());
                let Some(token) = token else {
                    bail!(
                        "{}: [http] status_token is not set; /ready shows its detail only with that token",
                        config.display()
                    );
                };
                let resp = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(10))
                    .build()?
                    .get(format!("{}/ready", url.trim_end_matches('/')))
                    .bearer_auth(token)
                    .send()
                    .await
                    .with_context(|| format!("no hub answers at {url}"))?;
                let r: duijie::runtime::observe::Readiness = resp.json().await.context(
                    "the hub's /ready did not give its detail (is [http] status_token the hub's?)",
                )?;
                print!("{}", duijie::runtime::observe::render(&r));
                if !r.ready {
                    std::process::exit(1);
                }
                Ok(())
            })
        }
        Command::Entity { config, command } => {
            let deployment = load_deployment(&config)?;
            if deployment.entities.is_none() {
                bail!("{} has no [entities] section", config.display());
            }
            let calendar = std::sync::Arc::new(duijie::calendar::Calendar::load_dir(
                &deployment.hub.calendar,
            )?);
            let schemas = std::sync::Arc::new(SchemaSet::load_dir(&deployment.hub.schemas)?);
            tokio_main(async move {
                let setting = deployment
                    .entity_setting()
                    .map_err(anyhow::Error::msg)?
                    .context("the deployment has no [entities] section")?;
                let library = duijie::entity::api::Library::from_bus(
                    &setting,
                    calendar,
                    schemas,
                    std::time::Duration::from_secs(600),
                )
                .await?;
                match command {
                    EntityCommand::List { query, format } => {
                        let (_, rows) = library.list_json(query.as_deref(), 0, usize::MAX)?;
                        match format {
                            OutputFormat::Table => {
                                print!("{}", duijie::entity::report::list_table(&rows))
                            }
                            OutputFormat::Json => {
                                for r in rows {
                                    println!("{r}");
                                }
                            }
                        }
                    }
                    EntityCommand::Show { code, format } => {
                        let key = duijie::entity::api::Library::key_of(&code);
                        let Some(p) = library.profile_json(&key)? else {
                            bail!("no entity `{key}` on the bus");
                        };
                        match format {
                            OutputFormat::Table => print!("{}", duijie::entity::report::show(&p)),
                            OutputFormat::Json => println!("{p}"),
                        }
                    }
                }
                Ok(())
            })
        }
        Command::Referrals { config, command } => {
            let deployment = load_deployment(&config)?;
            let Some(desk) = deployment.desk.clone() else {
                bail!("{} has no [desk] section", config.display());
            };
            if let ReferralsCommand::Rules { format } = &command {
                match format {
                    OutputFormat::Table => {
                        print!("{}", duijie::desk::report::rules_table(&desk.limits))
                    }
                    OutputFormat::Json => {
                        for line in duijie::desk::report::rules_json(&desk.limits) {
                            println!("{line}");
                        }
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let calendar = duijie::calendar::Calendar::load_dir(&deployment.hub.calendar)?;
            if let ReferralsCommand::Replay { input, now, format } = &command {
                let now = match now {
                    Some(t) => duijie::calendar::parse_time(t).map_err(anyhow::Error::msg)?,
                    None => chrono::Utc::now(),
                };
                let text = std::fs::read_to_string(input)
                    .with_context(|| format!("reading {}", input.display()))?;
                let views = duijie::desk::report::replay(
                    &text,
                    &input.display().to_string(),
                    &desk.limits,
                    desk.at_risk_share,
                    &calendar,
                    now,
                )?;
                match format {
                    OutputFormat::Table => println!("{}", duijie::desk::report::table(&views)),
                    OutputFormat::Json => {
                        for v in &views {
                            println!("{}", duijie::desk::report::replay_json(v, now));
                        }
                    }
                }
                return Ok(ExitCode::SUCCESS);
            }
            let schemas = SchemaSet::load_dir(&deployment.hub.schemas)?;
            tokio_main(async move {
                let mut views = duijie::desk::views_from_topic(
                    &deployment.bus(),
                    &schemas,
                    &desk,
                    &calendar,
                    chrono::Utc::now(),
                )
                .await?;
                duijie::desk::report::sort_for_desk(&mut views);
                match command {
                    ReferralsCommand::List { state } => {
                        if let Some(state) = state {
                            views.retain(|v| {
                                v.state.is_some_and(|s| s.code() == state.to_uppercase())
                            });
                        }
                        println!("{}", duijie::desk::report::table(&views));
                    }
                    ReferralsCommand::Overdue => {
                        views.retain(|v| v.late || v.at_risk || v.clock_error.is_some());
                        println!("{}", duijie::desk::report::table(&views));
                    }
                    ReferralsCommand::Show { referral_no } => {
                        let Some(v) = views.iter().find(|v| v.referral_no == referral_no) else {
                            bail!("no referral `{referral_no}` on {}", desk.events_topic);
                        };
                        print!("{}", duijie::desk::report::detail(v));
                    }
                    ReferralsCommand::Rules { .. } | ReferralsCommand::Replay { .. } => {
                        unreachable!("answered without Kafka above")
                    }
                }
                Ok(())
            })
        }
        Command::Supervision {
            command:
                SupervisionCommand::Rates {
                    input,
                    receipts,
                    delivery,
                    leads,
                    calendar,
                    format,
                },
        } => {
            let cal = duijie::calendar::Calendar::load_dir(&calendar)?;
            let files = duijie::supervision::Files {
                decisions: &input,
                receipts: receipts.as_deref(),
                delivery: &delivery,
                leads: leads.as_deref(),
            };
            let rates = files.rates(&cal).map_err(anyhow::Error::msg)?;
            match format {
                OutputFormat::Table => print!("{}", duijie::supervision::table(&rates)),
                OutputFormat::Json => {
                    for r in &rates {
                        println!("{}", serde_json::to_string(r)?);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Calendar {
            command:
                CalendarCommand::Due {
                    from,
                    limit,
                    calendar,
                },
        } => {
            let cal = duijie::calendar::Calendar::load_dir(&calendar)?;
            let start = duijie::calendar::parse_time(&from).map_err(anyhow::Error::msg)?;
            let limit: duijie::calendar::Limit = limit.parse().map_err(anyhow::Error::msg)?;
            let due = cal.due(start, limit)?;
            println!(
                "{} + {limit} = {} (Asia/Shanghai), {}",
                duijie::calendar::local_text(start),
                duijie::calendar::local_text(due),
                due.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config, pipelines } => {
            let deployment = load_deployment(&config)?;
            tokio_main(async { Ok(duijie::runtime::run_deployment(deployment, pipelines).await?) })
        }
    }
}

/// Mapping load errors, one a line.
fn load_errors(errors: Vec<duijie::mapping::LoadError>) -> anyhow::Error {
    anyhow::anyhow!("{}", duijie::mapping::errors_text(&errors))
}

/// A deployment's mappings.
fn deployment_mappings(
    deployment: &Deployment,
    schemas: &SchemaSet,
) -> Result<duijie::mapping::MappingSet> {
    duijie::mapping::MappingSet::load_dir(&deployment.hub.mappings, schemas).map_err(load_errors)
}

/// `duijie mapping diff`.
fn mapping_diff(
    config: &Path,
    name: &str,
    file: Option<PathBuf>,
    codes: Option<PathBuf>,
    sample: Option<usize>,
    from: Option<String>,
    format: OutputFormat,
) -> Result<ExitCode> {
    let deployment = load_deployment(config)?;
    let schemas = SchemaSet::load_dir(&deployment.hub.schemas)?;
    let set = deployment_mappings(&deployment, &schemas)?;
    let Some(current) = set.get(name) else {
        bail!(
            "no mapping `{name}` in {}",
            deployment.hub.mappings.display()
        );
    };
    let edited_file = file.unwrap_or_else(|| current.file.clone());
    let edited = set
        .load_edited(&edited_file, codes.as_deref(), &schemas)
        .map_err(load_errors)?;
    let raw_topics: Vec<String> = deployment
        .pipelines
        .iter()
        .filter(|p| p.mapping == name)
        .filter_map(|p| p.raw_topic())
        .collect();
    if raw_topics.is_empty() {
        bail!(
            "no pipeline with mapping `{name}` keeps raw records: add `raw = {{ retention = \"30d\" }}` to it"
        );
    }
    let from_ms = from
        .as_deref()
        .map(duijie::calendar::parse_time)
        .transpose()
        .map_err(anyhow::Error::msg)?
        .map(|t| t.timestamp_millis());
    let sample = sample.unwrap_or(1000);
    let bus = deployment.bus();
    let diff = tokio_main_value(async move {
        let mut records: Vec<(i64, duijie_connectors::RawRecord, String)> = Vec::new();
        for topic in &raw_topics {
            let span = duijie::bus::inspect::Span {
                from_ms,
                last_per_partition: from_ms.is_none().then_some(sample as i64),
                ..Default::default()
            };
            let mut rx = duijie::bus::inspect::stream_span(&bus, topic, span);
            while let Some(item) = rx.recv().await {
                match item? {
                    duijie::bus::inspect::SpanItem::Bounds(_) => {}
                    duijie::bus::inspect::SpanItem::Record(r, ts) => {
                        if let Some(raw) = duijie::runtime::remap::raw_of(&r, ts) {
                            let place = format!("{topic}/{}/{}", r.partition, r.offset);
                            records.push((ts, raw, place));
                        }
                    }
                }
            }
        }
        if from_ms.is_none() {
            // The most recent `sample` across partitions and pipelines.
            records.sort_by_key(|(ts, _, _)| std::cmp::Reverse(*ts));
            records.truncate(sample);
        }
        let records: Vec<_> = records.into_iter().map(|(_, r, p)| (r, p)).collect();
        Ok(duijie::mapping::diff::diff(&current, &edited, &records))
    })?;
    match format {
        OutputFormat::Table => print!("{}", duijie::mapping::diff::report(&diff, name)),
        OutputFormat::Json => println!("{}", serde_json::to_string(&diff)?),
    }
    Ok(if diff.changes_anything() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn tokio_main_value<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    duijie::runtime::block_on(fut)
}

fn tokio_main(fut: impl std::future::Future<Output = Result<()>>) -> Result<ExitCode> {
    duijie::runtime::block_on(fut).map(|()| ExitCode::SUCCESS)
}

/// Runs an operator command under the operator audit (`audit::OpsAudit`):
/// a `started` entry first — a command that cannot be audited does not
/// run — then `done` with its summary, printed, or `failed` with why.
async fn audited(
    deployment: Deployment,
    command: String,
    run: impl std::future::Future<Output = Result<String>>,
) -> Result<()> {
    use duijie::audit::{Operation, OpsAudit};
    let audit = OpsAudit::open(
        &deployment.bus(),
        &deployment.hub.ops_audit_topic,
        &deployment.hub.name,
        deployment.hub.signing.as_ref(),
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!("the operator audit cannot be written, so `{command}` does not run: {e}")
    })?;
    audit
        .record(&Operation::new(&command, "started", ""))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "the operator audit cannot be written, so `{command}` does not run: {e}"
            )
        })?;
    match run.await {
        Ok(summary) => {
            println!("{summary}");
            if let Err(e) = audit
                .record(&Operation::new(&command, "done", &summary))
                .await
            {
                eprintln!("warning: the operator audit did not take the outcome: {e}");
            }
            Ok(())
        }
        Err(e) => {
            let _ = audit
                .record(&Operation::new(&command, "failed", &format!("{e:#}")))
                .await;
            Err(e)
        }
    }
}

fn receipts_verify(
    config: &Path,
    delivery: &str,
    record: Option<String>,
    input: Option<PathBuf>,
    public_key: Option<PathBuf>,
) -> Result<ExitCode> {
    let deployment = load_deployment(config)?;
    let Some((name, d)) = deployment.deliveries.iter().find(|(n, _)| n == delivery) else {
        bail!("{}: no delivery `{delivery}`", config.display());
    };
    let hub = hub_public_key(&deployment, public_key)?;
    let receiver = d
        .target
        .receipt_key()
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let bodies = match &input {
        None => None,
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let rows = duijie::delivery::preview(
                name,
                d,
                &text,
                &file.display().to_string(),
                chrono::Utc::now(),
            )?;
            Some(duijie::delivery::proof::bodies_of_preview(&rows))
        }
    };
    let checked = tokio_main_value(async {
        let keys = duijie::delivery::proof::Keys {
            hub: hub.as_ref(),
            receiver: receiver.as_ref(),
            bodies: bodies.as_ref(),
        };
        Ok(
            duijie::delivery::proof::verify(&deployment.feeds(), name, record.as_deref(), &keys)
                .await?,
        )
    })?;
    let failing = checked.iter().filter(|c| !c.holds()).count();
    for c in &checked {
        println!("{}", c.line());
    }
    println!(
        "{} receipt(s) with a proof, {failing} failing",
        checked.len()
    );
    Ok(if failing == 0 && !checked.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The hub's public key: from a file, else the public half of
/// `[hub.signing]`.
fn hub_public_key(
    deployment: &Deployment,
    file: Option<PathBuf>,
) -> Result<Option<duijie_crypto::sm2::PublicKey>> {
    let signing = deployment.hub.signing.as_ref();
    let distid = signing.map_or(duijie_crypto::sm2::DEFAULT_DISTID, |s| s.distid.as_str());
    Ok(match (file, signing) {
        (Some(file), _) => Some(
            duijie_crypto::sm2::PublicKey::from_pem(
                &std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?,
                distid,
            )
            .with_context(|| file.display().to_string())?,
        ),
        (None, Some(s)) => Some(s.private_key().map_err(anyhow::Error::msg)?.public()),
        (None, None) => None,
    })
}

fn audit_verify(
    config: &Path,
    topic: Option<String>,
    public_key: Option<PathBuf>,
) -> Result<ExitCode> {
    let deployment = load_deployment(config)?;
    let topic = match topic.or_else(|| deployment.desk.as_ref().map(|d| d.audit_topic.clone())) {
        Some(t) => t,
        None => bail!("the deployment has no [desk]: name the audit topic with --topic"),
    };
    let public = hub_public_key(&deployment, public_key)?;
    let signatures = public.is_some();
    let bus = deployment.bus();
    let (text, clean) = tokio_main_value(async move {
        let report = duijie::audit::verify_topic(&bus, &topic, public.as_ref()).await?;
        Ok((report.text(&topic), report.findings.is_empty()))
    })?;
    println!("{text}");
    if !signatures {
        println!("(no SM2 key: the chain's hashes were checked, not its signatures)");
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn load_deployment(config: &Path) -> Result<Deployment> {
    Ok(Deployment::load_reported(config)?)
}

fn load_schemas_and_mappings(mappings: &Path, schemas: &Path) -> Result<(SchemaSet, MappingSet)> {
    let schema_set = SchemaSet::load_dir(schemas)?;
    match MappingSet::load_dir(mappings, &schema_set) {
        Ok(m) => Ok((schema_set, m)),
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            bail!("{} mapping error(s)", errors.len())
        }
    }
}

fn check(config: &Path) -> Result<ExitCode> {
    let report = duijie::check::check_deployment(config);
    for line in &report.warnings {
        eprintln!("{line}");
    }
    for line in &report.problems {
        eprintln!("{line}");
    }
    if report.problems.is_empty() {
        println!("{}", report.summary);
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} problem(s) in {}",
            report.problems.len(),
            config.display()
        );
        Ok(ExitCode::FAILURE)
    }
}

fn mapping_test(
    mappings: &Path,
    schemas: &Path,
    fixtures: Option<PathBuf>,
    only: Option<String>,
    bless: Option<String>,
) -> Result<ExitCode> {
    let (_, set) = load_schemas_and_mappings(mappings, schemas)?;
    for name in only.iter().chain(bless.iter().filter(|b| !b.is_empty())) {
        if !set.mappings.contains_key(name) {
            anyhow::bail!(
                "no mapping `{name}` in {} (mappings: {})",
                mappings.display(),
                set.mappings.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let bless = match bless {
        None => golden::Bless::Nothing,
        Some(b) if b.is_empty() => golden::Bless::All,
        Some(b) => golden::Bless::One(b),
    };
    let fixtures = fixtures.unwrap_or_else(|| mappings.join("tests"));
    let results = golden::run_all(&set, &fixtures, only.as_deref(), &bless);
    let mut failed = 0;
    for r in &results {
        if r.diff.is_empty() {
            println!("ok   {} / {}", r.mapping, r.case);
        } else {
            failed += 1;
            println!("FAIL {} / {}", r.mapping, r.case);
            for line in &r.diff {
                println!("  {line}");
            }
        }
    }
    println!(
        "{} case(s), {} passed, {failed} failed, {} mapping(s)",
        results.len(),
        results.len() - failed,
        set.mappings.len()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Where and how `duijie map` writes.
struct MapOutputs {
    output: Option<PathBuf>,
    rejects: Option<PathBuf>,
    format: duijie::mapping::stream::OutputFormat,
    threads: Option<usize>,
}

/// `duijie map`: streams JSON lines through the mapping (bounded memory,
/// every core, input order kept); an XML mapping maps the whole file as one
/// record.
fn map(
    name: &str,
    input: &Path,
    to: MapOutputs,
    mappings: &Path,
    schemas: &Path,
) -> Result<ExitCode> {
    use duijie::mapping::stream::{OutputFormat, StreamOptions, stream_map};
    use std::io::IsTerminal;
    let (_, set) = load_schemas_and_mappings(mappings, schemas)?;
    let mapping = set
        .get(name)
        .with_context(|| format!("no mapping `{name}` in {}", mappings.display()))?;
    let create = |p: &Path| {
        std::fs::File::create(p)
            .map(std::io::BufWriter::new)
            .with_context(|| format!("creating {}", p.display()))
    };
    let out: Box<dyn Write> = match &to.output {
        Some(p) => Box::new(create(p)?),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let rej: Box<dyn Write> = match &to.rejects {
        Some(p) => Box::new(create(p)?),
        None => Box::new(std::io::BufWriter::new(std::io::stderr().lock())),
    };
    let counts = if mapping.format == duijie_connectors::PayloadFormat::Xml {
        if to.format == OutputFormat::Avro {
            anyhow::bail!("`--format avro` is for JSON-lines inputs; mapping `{name}` reads XML");
        }
        let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
        let run = golden::dry_run(&mapping, &bytes);
        let (mut out, mut rej) = (out, rej);
        for r in &run.records {
            writeln!(out, "{r}")?;
        }
        for r in &run.rejects {
            writeln!(rej, "{r}")?;
        }
        out.flush()?;
        rej.flush()?;
        (run.records.len() as u64, run.rejects.len() as u64)
    } else {
        let file =
            std::fs::File::open(input).with_context(|| format!("reading {}", input.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        // Progress on a terminal, for inputs worth waiting on.
        let bar = if std::io::stderr().is_terminal() && size > 32 << 20 && to.rejects.is_some() {
            indicatif::ProgressBar::new(size).with_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("a progress template"),
            )
        } else {
            indicatif::ProgressBar::hidden()
        };
        let mut options = StreamOptions {
            format: to.format,
            ..StreamOptions::default()
        };
        if to.format == OutputFormat::Avro {
            // An Avro value tree is several times its JSON line: smaller
            // chunks keep the resident set flat and low.
            options.chunk_bytes = 256 << 10;
        }
        if let Some(n) = to.threads {
            options.threads = n.max(1);
        }
        let counts = stream_map(
            &mapping,
            std::io::BufReader::with_capacity(1 << 20, file),
            out,
            rej,
            &options,
            &mut |bytes| bar.set_position(bytes),
        )
        .with_context(|| format!("mapping {}", input.display()))?;
        bar.finish_and_clear();
        (counts.records, counts.rejects)
    };
    eprintln!(
        "{}: {} record(s), {} reject(s)",
        input.display(),
        counts.0,
        counts.1
    );
    Ok(ExitCode::SUCCESS)
}

fn validate(kind: ValidateKind, values: &[String]) -> ExitCode {
    let kind = match kind {
        ValidateKind::Uscc => IdKind::Uscc,
        ValidateKind::Id => IdKind::ResidentId,
    };
    let mut all_valid = true;
    for v in values {
        let checked = kind.check(v);
        match &checked.invalid {
            None if checked.first_generation => println!(
                "{v}\tvalid\t{}\tfirst-generation (15-digit) number, normalised to 18",
                checked.normalized
            ),
            None => println!("{v}\tvalid\t{}", checked.normalized),
            Some(why) => {
                all_valid = false;
                println!("{v}\tinvalid\t{}\t{why}", checked.normalized);
            }
        }
    }
    if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
