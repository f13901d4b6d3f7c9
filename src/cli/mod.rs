//! The `duijie` command line: the arguments (clap), the dispatch
//! ([`run`]), the helpers every command shares, and each command with its
//! room: `mapping` (check, mapping test and diff, map, validate),
//! `delivery` (deliveries preview, feeds, replay, receipts), `operate` (run,
//! quality, remap, backfill, status, audit), `desk` (referrals, entity),
//! `rules` (supervision rates, calendar). The reports themselves are the
//! rooms' (`duijie::…::report`, `table`).

mod delivery;
mod desk;
mod mapping;
mod operate;
mod rules;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use delivery::receipts_verify;
use duijie::config::Deployment;
use duijie::mapping::{MappingSet, golden};
use duijie::schema::SchemaSet;
use mapping::{MapOutputs, check, map, mapping_diff, mapping_test, validate};
use operate::audit_verify;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "duijie",
    version,
    about = "对接 — integration hub of the comprehensive law-enforcement bureau"
)]
pub(crate) struct Cli {
    /// Log output: `text` (default) or `json` lines.
    #[arg(long, global = true, default_value = "text")]
    pub log_format: String,
    #[command(subcommand)]
    command: Command,
}

const DEFAULT_CONFIG: &str = "pipelines/yichang.toml";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipelines of a deployment until SIGTERM or Ctrl-C.
    Run(RunArgs),
    /// Check a deployment: config, pipelines, mappings and schemas.
    Check(CheckArgs),
    /// Mapping tools.
    Mapping {
        #[command(subcommand)]
        command: MappingCommand,
    },
    /// Map an input file without Kafka: canonical records and rejects as
    /// JSON lines.
    Map(MapArgs),
    /// Deliveries (what leaves the hub for the credit platform, the
    /// enforcement teams and the departments): what each receiver got, a
    /// test request, a dry run. `feeds` and `push`, their older names,
    /// still work.
    #[command(visible_alias = "feeds", alias = "push")]
    Deliveries {
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// Deliver again from a time or an offset; receivers absorb what they
    /// already had by its idempotency key.
    Replay(ReplayArgs),
    /// Suspected-crime referrals (两法衔接) and their statutory deadlines,
    /// from the referral events on the bus.
    Referrals(ReferralsArgs),
    /// The market-entity credit library (市场主体信用信息库): one profile per
    /// entity across every system, rebuilt from the bus.
    Entity(EntityArgs),
    /// Data quality per source, per day, from the bus: per field
    /// completeness and validity, code-table values (unknown codes too),
    /// rejects per rule.
    Quality(QualityArgs),
    /// Map a pipeline's raw records of a period again with the current
    /// mapping and code tables, and republish them under the same keys
    /// (needs the pipeline's raw retention); interrupt and run again to
    /// resume.
    Remap(RemapArgs),
    /// Re-read a pipeline's source history (keyset HTTP, SOAP and SQL
    /// sources), with a progress bar; interrupt and run again to resume.
    Backfill(BackfillArgs),
    /// A running hub's pipelines, feeds and clocks (from its `/ready`).
    Status(StatusArgs),
    /// Receipts of the deliveries.
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
    Validate(ValidateArgs),
}

#[derive(Debug, Subcommand)]
enum ReceiptsCommand {
    /// Prove, for a delivery's receipts (one record's, with --record),
    /// what was sent and what was acknowledged: the hub's SM2 signature
    /// over each receipt, the receiver's SM2 signature over its answer
    /// (its `receipt_key`), and with --input (canonical records, as `duijie
    /// map` writes them) that the body sent is the one the delivery makes
    /// of the record. Exit 1 when a check fails.
    Verify(ReceiptsVerifyArgs),
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify an audit topic's chains: each entry's SM3 hash, its link to
    /// the one before, its order, and the hub's SM2 signature. Names the
    /// first entry changed, removed or reordered in each chain, by
    /// partition and offset; exit 1 when there is one.
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Subcommand)]
enum MappingCommand {
    /// Run every mapping's golden fixtures and print a diff on failure.
    Test(MappingTestArgs),
    /// What an edited mapping (or code tables) would change on the raw
    /// records the pipelines using it kept: per field, records that change,
    /// gain or lose a value, with examples; records that newly reject or
    /// pass. Exits 1 when anything changes (a CI gate on an approved diff).
    Diff(MappingDiffArgs),
}

#[derive(Debug, Subcommand)]
enum DeliveriesCommand {
    /// Per delivery: delivered, refused, failed, not sent (policy),
    /// pending.
    Status(DeliveriesStatusArgs),
    /// One signed test request to a delivery's webhook or SOAP receiver,
    /// as the delivery sends it; prints the receiver's answer (exit 1
    /// unless it accepted).
    Test(DeliveriesTestArgs),
    /// A dry run of a delivery: canonical records (JSON lines, as `duijie
    /// map` writes them) through its selection, transform and personal-data
    /// rule, without Kafka or network; prints, one JSON object a line, the
    /// request the receiver would get (URL, headers, body, idempotency key)
    /// or why a record is not sent.
    Preview(DeliveriesPreviewArgs),
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
    Rates(SupervisionRatesArgs),
}

#[derive(Debug, Subcommand)]
enum CalendarCommand {
    /// When a period ends: `--from "2026-09-30 10:00" --limit "3 working days"`.
    Due(CalendarDueArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ValidateKind {
    Uscc,
    Id,
}

#[derive(Debug, clap::Args)]
struct AuditVerifyArgs {
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// The topic (default: the desk's `audit_topic`).
    #[arg(long)]
    topic: Option<String>,
    /// The hub's public key (SPKI PEM) to check signatures with
    /// (default: the public half of `[hub.signing]`).
    #[arg(long)]
    public_key: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct CalendarDueArgs {
    /// RFC 3339, or `YYYY-MM-DD HH:MM` in Asia/Shanghai.
    #[arg(long)]
    from: String,
    /// `3 working days`, `24 hours`, `15 days`.
    #[arg(long)]
    limit: String,
    /// Folder of the yearly calendar files.
    #[arg(long, default_value = "calendar")]
    calendar: PathBuf,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Run only these pipelines (default: all).
    #[arg(long = "pipeline")]
    pipelines: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Also compare each schema the deployment would register with what
    /// this registry (Confluent-compatible API, e.g. Apicurio's
    /// `/apis/ccompat/v7`) holds, under each subject's compatibility level.
    #[arg(long)]
    registry: Option<String>,
}

#[derive(Debug, clap::Args)]
struct MapArgs {
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
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// The delivery's name.
    #[arg(long)]
    feed: String,
    /// RFC 3339, `YYYY-MM-DD HH:MM` (Asia/Shanghai), or `offset:N`.
    #[arg(long)]
    from: String,
}

#[derive(Debug, clap::Args)]
struct ReferralsArgs {
    #[arg(long, default_value = DEFAULT_CONFIG, global = true)]
    config: PathBuf,
    #[command(subcommand)]
    command: ReferralsCommand,
}

#[derive(Debug, clap::Args)]
struct EntityArgs {
    #[arg(long, default_value = DEFAULT_CONFIG, global = true)]
    config: PathBuf,
    #[command(subcommand)]
    command: EntityCommand,
}

#[derive(Debug, clap::Args)]
struct QualityArgs {
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
}

#[derive(Debug, clap::Args)]
struct RemapArgs {
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
}

#[derive(Debug, clap::Args)]
struct BackfillArgs {
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
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// The hub's address (default: the deployment's `[http] listen`).
    #[arg(long)]
    url: Option<String>,
}

#[derive(Debug, clap::Args)]
struct ValidateArgs {
    kind: ValidateKind,
    #[arg(required = true)]
    values: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct DeliveriesStatusArgs {
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
struct DeliveriesTestArgs {
    /// The delivery (its name under `[deliveries]`).
    #[arg(long, alias = "feed")]
    delivery: String,
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
struct MappingTestArgs {
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
}

#[derive(Debug, clap::Args)]
struct MappingDiffArgs {
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
    /// An edited copy of `schemas/`: the edited mapping is read against
    /// it, and the schema change is reported beside the field diff
    /// (fields added, removed, changed; BACKWARD and FORWARD).
    #[arg(long)]
    schemas: Option<PathBuf>,
    /// The most recent N raw records (default 1000).
    #[arg(long, conflicts_with = "from")]
    sample: Option<usize>,
    /// Every raw record fetched since (RFC 3339 or `YYYY-MM-DD HH:MM`).
    #[arg(long)]
    from: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: OutputFormat,
}

#[derive(Debug, clap::Args)]
struct DeliveriesPreviewArgs {
    #[arg(long)]
    delivery: String,
    #[arg(long)]
    input: PathBuf,
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ReceiptsVerifyArgs {
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
}

#[derive(Debug, clap::Args)]
struct SupervisionRatesArgs {
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
}

pub(crate) fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check(CheckArgs { config, registry }) => check(&config, registry.as_deref()),
        Command::Mapping {
            command:
                MappingCommand::Test(MappingTestArgs {
                    mappings,
                    schemas,
                    fixtures,
                    mapping,
                    bless,
                }),
        } => mapping_test(&mappings, &schemas, fixtures, mapping, bless),
        Command::Mapping {
            command: MappingCommand::Diff(args),
        } => match mapping_diff(args) {
            // Like diff(1): 0 no change, 1 changes, 2 trouble.
            Ok(code) => Ok(code),
            Err(e) => {
                eprintln!("error: {}", duijie::secrets::redact(&format!("{e:#}")));
                Ok(ExitCode::from(2))
            }
        },
        Command::Quality(a) => operate::quality(a),
        Command::Remap(a) => operate::remap(a),
        Command::Map(MapArgs {
            mapping,
            input,
            output,
            rejects,
            format,
            threads,
            mappings,
            schemas,
        }) => map(
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
        Command::Validate(ValidateArgs { kind, values }) => Ok(validate(kind, &values)),
        Command::Deliveries { command } => {
            older_name_noted();
            match command {
                DeliveriesCommand::Preview(a) => delivery::preview(a),
                DeliveriesCommand::Status(a) => delivery::status(a),
                DeliveriesCommand::Test(a) => delivery::test(a),
            }
        }
        Command::Replay(a) => delivery::replay(a),
        Command::Backfill(a) => operate::backfill(a),
        Command::Receipts {
            command:
                ReceiptsCommand::Verify(ReceiptsVerifyArgs {
                    delivery,
                    record,
                    input,
                    public_key,
                    config,
                }),
        } => receipts_verify(&config, &delivery, record, input, public_key),
        Command::Audit {
            command:
                AuditCommand::Verify(AuditVerifyArgs {
                    config,
                    topic,
                    public_key,
                }),
        } => audit_verify(&config, topic, public_key),
        Command::Status(a) => operate::status(a),
        Command::Entity(a) => desk::entity(a),
        Command::Referrals(a) => desk::referrals(a),
        Command::Supervision {
            command: SupervisionCommand::Rates(a),
        } => rules::supervision_rates(a),
        Command::Calendar {
            command: CalendarCommand::Due(a),
        } => rules::calendar_due(a),
        Command::Run(a) => operate::run_hub(a),
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

/// `duijie feeds …` and `duijie push …` are the older names of `duijie
/// deliveries …`: they work, and say so once on standard error.
fn older_name_noted() {
    // The subcommand comes before its own arguments: the first of its
    // names on the line is the one used.
    if let Some(older) = std::env::args()
        .skip(1)
        .find(|a| a == "deliveries" || a == "feeds" || a == "push")
        .filter(|a| a != "deliveries")
    {
        eprintln!("note: `duijie {older}` is now `duijie deliveries`; the older name still works");
    }
}
