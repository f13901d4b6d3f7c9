//! The deployment file (`pipelines/yichang.toml`): hub settings, the Kafka
//! bus, and the pipelines.
//!
//! Every mistake is reported with the file, the line and the dotted field
//! (`pipelines/yichang.toml:31:8: pipelines.urban_case_files.source.layout:
//! unknown variant `csv`, expected one of `jsonl`, `json`, `xml``), and all
//! mistakes of a file are reported at once.

use duijie_connectors::registry::{Drive, SOURCE_KINDS, SourceConfig};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use toml::Spanned;

/// A configuration mistake, located.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the field concerned.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&crate::secrets::redact(&self.message))
    }
}

impl From<ConfigError> for crate::error::Error {
    fn from(e: ConfigError) -> Self {
        Self::new(
            crate::error::Domain::Config,
            crate::error::ErrorClass::Permanent,
            e,
        )
    }
}

/// Hub-wide settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// Name of this deployment, used in client ids and consumer groups.
    pub name: String,
    /// Folder of mapping files, relative to this file.
    #[serde(default = "default_mappings")]
    pub mappings: PathBuf,
    /// Folder of Avro schemas, relative to this file.
    #[serde(default = "default_schemas")]
    pub schemas: PathBuf,
    /// Folder of the official holiday calendar (`cn-<year>.toml`).
    #[serde(default = "default_calendar")]
    pub calendar: PathBuf,
    /// Topic of delivery receipts.
    #[serde(default = "default_receipts")]
    pub receipts_topic: String,
    /// Topic of the operator audit (`audit::Operation`): who ran a remap,
    /// replay or backfill, when, and what came of it, sealed into a chain
    /// like the desk's audit. Kept whole.
    #[serde(default = "default_ops_audit")]
    pub ops_audit_topic: String,
    /// Topic of alerts (deadlines at risk or late, failed deliveries).
    #[serde(default = "default_alerts")]
    pub alerts_topic: String,
    /// Topic of quality tallies: each batch a pipeline writes carries, in
    /// the same acknowledgement (or transaction), one record counting its
    /// mapped records per day and field (`quality::Tally`). The quality
    /// board reads these, the dead-letter topics and the raw topics, not
    /// every canonical record. Kept whole.
    #[serde(default = "default_quality_topic")]
    pub quality_topic: String,
    /// Several instances run this deployment and share its singleton tasks
    /// (each poll pipeline's source, the clocks, the referral tracker)
    /// through a Kafka consumer group; deliveries split by partition.
    #[serde(default)]
    pub scale_out: bool,
    /// The secret key of natural persons' pseudonyms (`pid:…`, see
    /// `personal`): at least 32 characters, the same on every instance, and
    /// never changed (a new key gives everyone a new identity). Required
    /// with `[credit]`. Give it as `${file:…}` or `${env:…}`.
    #[serde(default)]
    pub pseudonym_key: Option<String>,
    /// The deployment's suite of algorithms (`gm`: SM2/SM3/SM4, or
    /// `intl`: the SHA-256 family): natural persons' pseudonyms are
    /// HMAC-SM3 (`pid-sm3:…`) or HMAC-SHA256 (`pid:…`). Default `intl`, so
    /// that a deployment written before the suites keeps its keys.
    #[serde(default = "default_suite")]
    pub suite: duijie_crypto::Suite,
    /// While changing suite: the suite the pseudonyms already on the
    /// topics were made in. The blacklist keeper carries what it keeps
    /// under them over to the new form, and the entity library honours
    /// officers' link decisions made under them. Remove it once `duijie
    /// run` has said "carried over" (docs/SECURITY.md, "Changing the suite").
    #[serde(default)]
    pub previous_suite: Option<duijie_crypto::Suite>,
    /// Keep each source's data quality (completeness, validity, code
    /// values, rejects per rule, per day) from the bus: `/desk/quality` and
    /// the `duijie_quality_*` gauges. It reads the quality tallies, the
    /// dead-letter and the raw topics from the beginning at start. Default
    /// on.
    #[serde(default = "default_quality")]
    pub quality: bool,
    /// The hub's own SM2 key (`[hub.signing]`): every webhook it sends
    /// carries its SM2 signature over what scheme 2 signs, so a receiver
    /// can prove what the hub sent (non-repudiation, GB/T 39786-2021
    /// level 3, 8.4). Copied into each webhook target that does not say
    /// `sm2 = false`.
    #[serde(default)]
    pub signing: Option<crate::delivery::Signing>,
    /// Sealing at rest (`[hub.encryption]`, see `bus::seal`): SM4 data
    /// keys by id (32 hex digits each, from the secret store), the one new
    /// records use, and the canonical topics to seal besides every raw and
    /// pipeline dead-letter topic, which are always sealed.
    #[serde(default)]
    pub encryption: Option<EncryptionConfig>,
}

/// `[hub.encryption]`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    pub current: String,
    pub keys: BTreeMap<String, String>,
    /// Canonical topics that keep full resident ID numbers.
    #[serde(default)]
    pub topics: Vec<String>,
}

impl fmt::Debug for EncryptionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionConfig")
            .field("current", &self.current)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("topics", &self.topics)
            .finish()
    }
}

fn default_suite() -> duijie_crypto::Suite {
    duijie_crypto::Suite::Intl
}

fn default_quality() -> bool {
    true
}

impl HubConfig {
    /// The keys the hub runs with, by id only (never a key): the sealing
    /// keys and the current one, the SM2 signing key's id, the suite. What
    /// the operator audit records at each start (a rotation when it
    /// changed).
    pub fn key_ids(&self) -> String {
        let sealing = self.encryption.as_ref().map_or_else(
            || "sealing: none".to_owned(),
            |e| {
                format!(
                    "sealing: current {} of [{}]",
                    e.current,
                    e.keys.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            },
        );
        let signing = self
            .signing
            .as_ref()
            .and_then(|s| s.key_id().ok())
            .map_or_else(
                || "signing: none".to_owned(),
                |id| format!("signing: SM2 {id}"),
            );
        format!(
            "{sealing}; {signing}; pseudonyms: {:?}{}",
            self.suite,
            self.previous_suite
                .map(|p| format!(" (carrying over from {p:?})"))
                .unwrap_or_default()
        )
    }

    /// The deployment's pseudonyms, if it has a key.
    pub fn pseudonyms(&self) -> Option<crate::personal::Pseudonyms> {
        self.pseudonym_key
            .as_deref()
            .and_then(|k| crate::personal::Pseudonyms::new(k).ok())
            .map(|p| p.in_suite(self.suite, self.previous_suite))
    }
}

fn default_calendar() -> PathBuf {
    "../calendar".into()
}
fn default_receipts() -> String {
    "duijie.receipts".into()
}
fn default_ops_audit() -> String {
    "duijie.ops.audit".into()
}
fn default_alerts() -> String {
    "duijie.alerts".into()
}
fn default_quality_topic() -> String {
    "duijie.quality".into()
}

fn default_mappings() -> PathBuf {
    "../mappings".into()
}
fn default_schemas() -> PathBuf {
    "../schemas".into()
}

/// The Kafka bus.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers. The environment variable `DUIJIE_KAFKA_BROKERS`
    /// overrides it.
    pub brokers: String,
    /// Compacted topic holding every pipeline's source cursor.
    #[serde(default = "default_cursor_topic")]
    pub cursor_topic: String,
    /// Replication factor of the topics the hub creates.
    #[serde(default = "default_replication")]
    pub replication: i32,
    /// URL of a Confluent-compatible schema registry. Without it, records
    /// use Avro single-object encoding.
    #[serde(default)]
    pub schema_registry: Option<String>,
    /// Under which subject a canonical schema is registered:
    /// `topic_name` (default, `<topic>-value`), `record_name` (the
    /// record's full name, one subject across topics) or
    /// `topic_record_name` (`<topic>-<record full name>`) — the Confluent
    /// serializers' three strategies.
    #[serde(default)]
    pub subject_strategy: crate::schema::registry::SubjectStrategy,
    /// Extra librdkafka properties for every client (`security.protocol`…).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// With `[hub] scale_out`: how long an instance that stopped answering
    /// keeps its tasks before the others take them over.
    #[serde(default = "default_session_timeout", with = "humantime_serde")]
    pub session_timeout: std::time::Duration,
    /// The consumer group protocol of the hub's groups (scale-out, push
    /// pipelines, the desk's tracker): `classic` (default) or `consumer`
    /// (KIP-848: the broker moves a dead instance's partitions without a
    /// group-wide rebalance; Kafka 4.0+).
    #[serde(default)]
    pub group_protocol: crate::bus::GroupProtocol,
}

fn default_session_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}

fn default_cursor_topic() -> String {
    "duijie.cursors".into()
}
fn default_replication() -> i32 {
    1
}

pub use crate::retry::RetryConfig;

/// A pipeline as written in the file (the `source` table is read
/// separately, by kind).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    /// The source system (`grid`, `digital_urban`, …): provenance's
    /// `source_system`, and what the mapping must be written for.
    system: String,
    /// The mapping (a file of `[hub] mappings`, without `.yaml`).
    mapping: Spanned<String>,
    /// The canonical topic the records go to.
    topic: Spanned<String>,
    /// Partitions of the canonical topic when the hub creates it (default 3).
    #[serde(default = "default_partitions")]
    partitions: Spanned<i32>,
    /// The dead-letter topic (default `dlq.<pipeline>`).
    #[serde(default)]
    dlq_topic: Option<Spanned<String>>,
    /// When to poll: a cron expression with seconds (`0 */5 * * * *`), in
    /// Asia/Shanghai; none for pushed sources.
    #[serde(default)]
    schedule: Option<Spanned<String>>,
    /// Records a batch at most (one fetch, one cursor commit).
    #[serde(default = "default_batch_size")]
    batch_size: Spanned<usize>,
    /// Batches produced and not yet covered by a committed cursor, at most:
    /// what a crash may read again.
    #[serde(default = "default_in_flight")]
    max_in_flight_batches: usize,
    /// Each batch and its cursor in one Kafka transaction (exactly once
    /// for `read_committed` consumers).
    #[serde(default)]
    exactly_once: bool,
    /// The canonical topic keeps the latest record per key
    /// (`cleanup.policy=compact`).
    #[serde(default)]
    compacted: bool,
    /// How a failing source is retried.
    #[serde(default)]
    retry: RetryConfig,
    /// Raw retention (see [`RawRetention`]).
    #[serde(default)]
    raw: Option<Spanned<RawRetention>>,
    /// Enforcement leads the pipeline's records raise (see
    /// [`crate::lead`]).
    #[serde(default)]
    lead: Option<Spanned<crate::lead::LeadConfig>>,
    /// The `source` table, read separately by its `kind`
    /// (`duijie_connectors::registry`), with its own line numbers.
    #[allow(dead_code)]
    source: Spanned<toml::Table>,
}

/// A pipeline's raw retention: what it fetched, kept on `raw.<pipeline>`
/// with its provenance, so that a record can be mapped again (`duijie
/// remap`) and a mapping change tried on real traffic (`duijie mapping
/// diff`). Raw topics are the hub's own: never pushed, never a feed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// How long raw records are kept (`retention.ms`), e.g. `"30d"`.
    #[serde(with = "humantime_serde")]
    pub retention: std::time::Duration,
    /// At most this many bytes a partition (`retention.bytes`); none: no
    /// size limit beyond the time.
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

/// The raw topic of a pipeline.
pub fn raw_topic(pipeline: &str) -> String {
    format!("raw.{pipeline}")
}

fn default_partitions() -> Spanned<i32> {
    Spanned::new(0..0, 3)
}
fn default_batch_size() -> Spanned<usize> {
    Spanned::new(0..0, 500)
}
fn default_in_flight() -> usize {
    8
}

/// The deployment file's tables: the hub's own, then the rooms'
/// sections, listed once. Each section is its room's config type (a
/// [`crate::section::Section`]): it says what is wrong with it, which
/// topics it writes and which of its paths are relative to the file, and
/// parsing, checking and [`Deployment::topics`] fold over this list. A new
/// room's section is its type, its `Section`, and one line here.
macro_rules! deployment_file {
    (
        own { $( $(#[$own_meta:meta])* $own:ident: $own_ty:ty, )* }
        sections { $( $(#[$doc:meta])* $section:ident: $ty:ty, )* }
    ) => {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawDeployment {
            $( $(#[$own_meta])* $own: $own_ty, )*
            $( #[serde(default)] $section: Option<Spanned<$ty>>, )*
        }

        /// The rooms' sections of a deployment, checked; each one there
        /// when the file has it.
        #[derive(Debug, Clone, Default)]
        pub struct Sections {
            $( $(#[$doc])* pub $section: Option<$ty>, )*
        }

        /// The rooms' sections as the file writes them, with their places.
        struct RawSections {
            $( $section: Option<Spanned<$ty>>, )*
        }

        impl RawDeployment {
            /// Takes the sections out of the file's tables.
            fn take_sections(&mut self) -> RawSections {
                RawSections {
                    $( $section: self.$section.take(), )*
                }
            }
        }

        impl RawSections {
            /// The sections, each checked against the rest of the
            /// deployment (`around`), its problems pushed to `errors` at
            /// the section's place, its relative paths resolved.
            fn check(
                mut self,
                around: &crate::section::Around<'_>,
                located: &Locator<'_>,
                base: &Path,
                errors: &mut Vec<ConfigError>,
            ) -> Sections {
                use crate::section::Section;
                Sections {
                    $( $section: self.$section.take().map(|s| {
                        for p in s.get_ref().problems(stringify!($section), around) {
                            errors.push(located.at(s.span(), p.field, p.why));
                        }
                        let mut c = s.into_inner();
                        c.resolve(base);
                        c
                    }), )*
                }
            }
        }

        impl Sections {
            /// The sections a reload from `self` to `new` cannot apply
            /// without a restart (added, removed, or changed where the room
            /// does not apply the change at once), by name.
            pub fn needing_restart(&self, new: &Sections) -> Vec<&'static str> {
                use crate::section::Section;
                let mut out = Vec::new();
                $(
                    let changed = match (&self.$section, &new.$section) {
                        (Some(a), Some(b)) => a.needs_restart(b),
                        (None, None) => false,
                        _ => true,
                    };
                    if changed {
                        out.push(stringify!($section));
                    }
                )*
                out
            }

            /// The topics the rooms' sections write.
            pub fn topics(&self) -> Vec<crate::bus::TopicSpec> {
                use crate::section::Section;
                let mut out = Vec::new();
                $( out.extend(self.$section.iter().flat_map(Section::topics)); )*
                out
            }
        }
    };
}

deployment_file! {
    own {
        hub: HubConfig,
        kafka: KafkaConfig,
        #[serde(default)]
        http: Option<Spanned<HttpConfig>>,
        #[serde(default)]
        pipelines: BTreeMap<String, RawPipeline>,
        #[serde(default)]
        deliveries: BTreeMap<String, Spanned<crate::delivery::DeliveryConfig>>,
    }
    sections {
        /// The credit publication clock and blacklist.
        credit: crate::keepers::CreditConfig,
        /// The commitment tracker.
        commitments: crate::keepers::CommitmentConfig,
        /// The supervision rates (行政执法监督).
        supervision: crate::keepers::SupervisionConfig,
        /// The two-law linkage desk (两法衔接工作台).
        desk: crate::desk::DeskConfig,
        /// The market-entity credit library (市场主体信用信息库).
        entities: crate::entity::EntitiesConfig,
        /// Where spans are exported (`[telemetry] otlp`); none: nowhere.
        telemetry: crate::telemetry::trace::TelemetryConfig,
    }
}

/// The hub's own HTTP server (health, metrics, webhooks, desk).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, e.g. `127.0.0.1:8088`.
    pub listen: String,
    /// How long a client may take to send a whole request head, counted
    /// from when the server waits for it: on a new connection, and between
    /// requests on a kept-alive one (so this is also the idle keep-alive
    /// timeout). Default 10 s.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: std::time::Duration,
    /// How long a request may take, its body included, before it is
    /// answered 408. Default 30 s.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: std::time::Duration,
    /// Connections served at once, at most (default 512).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Bearer token for the detail of `/ready` (pipeline errors and
    /// counts); without it, `/ready` shows only each pipeline's state.
    #[serde(default)]
    pub status_token: Option<String>,
}

impl HttpConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.header_read_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err(
                "`header_read_timeout` and `request_timeout` must be greater than 0".into(),
            );
        }
        if self.max_connections == 0 {
            return Err("`max_connections` must be at least 1".into());
        }
        if self.status_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err("`status_token` must be at least 16 characters".into());
        }
        Ok(())
    }
}

fn default_header_read_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(10)
}
fn default_request_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}
fn default_max_connections() -> usize {
    512
}

/// One ingest pipeline, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    pub name: String,
    pub system: String,
    pub mapping: String,
    pub topic: String,
    pub partitions: i32,
    pub dlq_topic: String,
    /// When to poll; `None` for pushed sources (a webhook, a subscription).
    pub schedule: Option<cron::Schedule>,
    pub batch_size: usize,
    /// Batches produced but not yet acknowledged, at most.
    pub max_in_flight_batches: usize,
    /// Records and cursor in one Kafka transaction.
    pub exactly_once: bool,
    /// The topic keeps the latest record per key (`cleanup.policy=compact`):
    /// for records that are states (a case, a hazard), not events.
    pub compacted: bool,
    pub retry: RetryConfig,
    /// Raw retention on [`raw_topic`], when configured.
    pub raw: Option<RawRetention>,
    /// Enforcement leads its records raise, when configured.
    pub lead: Option<crate::lead::LeadConfig>,
    pub source: SourceConfig,
}

impl PipelineConfig {
    /// The raw topic, when the pipeline keeps what it fetched.
    pub fn raw_topic(&self) -> Option<String> {
        self.raw.as_ref().map(|_| raw_topic(&self.name))
    }
}

/// How long the commitment tracker's licence topic keeps its records at
/// least: a commitment may fall due years after its licence (5 years).
const COMMITMENT_HISTORY_MONTHS: u32 = 60;

/// How long audit topics keep their entries at least: six months
/// (《网络安全法》 art. 21(3): network logs kept no less than six months).
const AUDIT_MONTHS: u32 = 6;

/// Who rebuilds from a topic, and the longest period it feeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Who reads it (in Chinese, as an error names them).
    pub readers: std::collections::BTreeSet<String>,
    /// The longest period it feeds, in months.
    pub months: u32,
    /// Its records share a key (an audit chain): compaction would keep only
    /// the last, so it must be kept by time, never compacted.
    pub one_key: bool,
}

/// A whole deployment.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub file: PathBuf,
    pub hub: HubConfig,
    pub kafka: KafkaConfig,
    pub http: Option<HttpConfig>,
    pub pipelines: Vec<PipelineConfig>,
    /// Deliveries, by name.
    pub deliveries: Vec<(String, crate::delivery::DeliveryConfig)>,
    /// The rooms' sections (`[credit]`, `[desk]`…), when configured.
    pub sections: Sections,
}

impl Deployment {
    /// [`Deployment::load`] for a command: every error printed on standard
    /// error (file, line, field), then one naming how many.
    pub fn load_reported(file: &Path) -> crate::error::Result<Self> {
        Self::load(file).map_err(|errors| {
            for e in &errors {
                eprintln!("{e}");
            }
            crate::error::Error::permanent(
                crate::error::Domain::Config,
                format!("{} has {} error(s)", file.display(), errors.len()),
            )
        })
    }

    /// Reads and checks a deployment file. Paths inside become relative to
    /// the file's folder.
    pub fn load(file: &Path) -> Result<Self, Vec<ConfigError>> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            vec![ConfigError {
                file: file.to_path_buf(),
                line: 0,
                column: 0,
                field: String::new(),
                message: format!("cannot read: {e}"),
            }]
        })?;
        let base = file.parent().unwrap_or(Path::new("."));
        let (expanded, secrets) = crate::secrets::expand(&text, base).map_err(|unresolved| {
            let located = Locator {
                file,
                text: &text,
                secrets: &[],
            };
            unresolved
                .into_iter()
                .map(|u| located.at(u.offset..u.offset + 2, "", u.message))
                .collect::<Vec<_>>()
        })?;
        Self::parse_expanded(file, &expanded, &secrets)
    }

    /// Parses a deployment's text (without secret references).
    pub fn parse(file: &Path, text: &str) -> Result<Self, Vec<ConfigError>> {
        Self::parse_expanded(file, text, &[])
    }

    /// Long because the deployment file's sections checked in order, with
    /// the rules across sections (a delivery's topic written by some
    /// pipeline, the shared task names); each section's own checks are in
    /// its own function.
    fn parse_expanded(
        file: &Path,
        text: &str,
        secrets: &[std::ops::Range<usize>],
    ) -> Result<Self, Vec<ConfigError>> {
        let located = Locator {
            file,
            text,
            secrets,
        };
        let mut raw: RawDeployment =
            toml::from_str(text).map_err(|e| vec![located.toml_error(&e)])?;
        let raw_sections = raw.take_sections();
        let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut errors = Vec::new();

        let pipelines = parse_pipelines(
            raw.pipelines,
            raw.http.is_some(),
            text,
            &base,
            &located,
            &mut errors,
        )?;
        if let Err(why) = crate::bus::check_topic_name(&raw.kafka.cursor_topic) {
            errors.push(located.at_key("kafka", "cursor_topic", why));
        }
        if let Some(signing) = &raw.hub.signing
            && let Err(why) = signing.check()
        {
            errors.push(located.at_key("hub", "signing", why));
        }
        let deliveries = parse_deliveries(
            raw.deliveries,
            &pipelines,
            &raw.hub.signing,
            raw.http.is_some(),
            &located,
            &mut errors,
        );
        let names: Vec<String> = deliveries.iter().map(|(n, _)| n.clone()).collect();
        let pseudonym_key = raw.hub.pseudonym_key.clone();
        let around = crate::section::Around {
            http: raw.http.is_some(),
            deliveries: &names,
            pseudonym_key: pseudonym_key.as_deref(),
        };
        let sections = raw_sections.check(&around, &located, &base, &mut errors);
        if let Some(h) = &raw.http
            && let Err(why) = h.get_ref().validate()
        {
            errors.push(located.at(h.span(), "http", why));
        }
        // Sealing at rest: every raw and pipeline dead-letter topic, and the
        // canonical topics named; the process's keyring (`bus::seal`).
        let keyring = raw.hub.encryption.as_ref().and_then(|e| {
            let mut topics: BTreeSet<String> = e.topics.iter().cloned().collect();
            for p in &pipelines {
                topics.insert(p.dlq_topic.clone());
                topics.extend(p.raw_topic());
            }
            match crate::bus::seal::Keyring::new(&e.current, &e.keys, topics) {
                Ok(k) => Some(k),
                Err(why) => {
                    errors.push(located.at_key("hub", "encryption", why));
                    None
                }
            }
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        if let Some(k) = keyring {
            crate::bus::seal::install(k);
        }
        let mut kafka = raw.kafka;
        if let Ok(brokers) = std::env::var("DUIJIE_KAFKA_BROKERS")
            && !brokers.trim().is_empty()
        {
            kafka.brokers = brokers;
        }
        let mut hub = raw.hub;
        hub.mappings = base.join(&hub.mappings);
        hub.schemas = base.join(&hub.schemas);
        hub.calendar = base.join(&hub.calendar);
        Ok(Self {
            file: file.to_path_buf(),
            hub,
            kafka,
            http: raw.http.map(Spanned::into_inner),
            pipelines,
            deliveries,
            sections,
        })
    }

    /// The credit-publication policy: the credit delivery's, else the
    /// default one.
    pub fn credit_policy(&self) -> crate::credit::CreditPolicy {
        let delivery = self.sections.credit.as_ref().map(|c| c.delivery.as_str());
        self.deliveries
            .iter()
            .filter(|(n, _)| delivery.is_none_or(|d| d == n))
            .find_map(|(_, d)| match &d.transform {
                crate::delivery::config::TransformConfig::CreditPenalty { policy, .. } => {
                    Some(policy.as_ref().clone())
                }
                _ => None,
            })
            .unwrap_or_default()
    }

    /// The topics whose history a keeper, the public window or the entity
    /// library rebuilds from, and the audit trails (kept six months at
    /// least), each with who reads it and the longest
    /// period it feeds in months: they must keep their records at least
    /// that long (ARCHITECTURE: history is kept as long as what is rebuilt
    /// from it; nothing is inferred from a record's absence). The hub
    /// creates them whole, and the start refuses one that keeps less.
    pub fn history_topics(&self) -> BTreeMap<String, History> {
        let mut out: BTreeMap<String, History> = BTreeMap::new();
        let mut add = |topic: &str, reader: &str, months: u32| {
            let h = out.entry(topic.to_owned()).or_default();
            h.readers.insert(reader.to_owned());
            h.months = h.months.max(months);
        };
        let publicity = {
            let p = self.credit_policy();
            p.classes.serious.max.months.max(p.order58.max.months)
        };
        if let Some(c) = &self.sections.credit {
            add(&c.decisions_topic, "公示时钟", publicity);
            if let Some(b) = &c.blacklist {
                let window = b
                    .criteria
                    .iter()
                    .map(|c| c.window_months)
                    .max()
                    .unwrap_or(0);
                let term = match b.listing_term.limit.unit {
                    crate::calendar::Unit::Months => b.listing_term.limit.amount,
                    _ => b.listing_term.limit.amount.div_ceil(28),
                };
                add(&c.decisions_topic, "严重失信主体名单", term + window);
            }
        }
        if let Some(e) = &self.sections.entities {
            let restriction = e
                .restrictions
                .iter()
                .flat_map(|r| &r.penalties)
                .map(|p| match p.within.limit.unit {
                    crate::calendar::Unit::Months => p.within.limit.amount,
                    _ => p.within.limit.amount.div_ceil(28),
                })
                .max()
                .unwrap_or(0);
            // The public window and the restrictions read the penalty
            // decisions for their periods; the other sources feed profiles
            // of what is current, and keep their own retention.
            for p in &self.pipelines {
                if p.mapping == "penalty_decision" {
                    add(
                        &p.topic,
                        "信用信息公示窗口与联合惩戒",
                        publicity.max(restriction),
                    );
                }
            }
        }
        if let Some(c) = &self.sections.commitments {
            // A commitment (告知承诺) may fall due years after its licence.
            add(&c.licence_topic, "告知承诺跟踪", COMMITMENT_HISTORY_MONTHS);
        }
        // Audit trails: network logs kept at least six months (《网络安全法》
        // art. 21(3); 等保 2.0 security audit). 6 × 31 days ≥ 180. Their
        // entries share one key (the chain's order): never compacted.
        add(
            &self.hub.ops_audit_topic,
            "操作审计（日志留存不少于六个月）",
            AUDIT_MONTHS,
        );
        let mut audits = vec![self.hub.ops_audit_topic.clone()];
        if let Some(d) = &self.sections.desk {
            add(
                &d.audit_topic,
                "工作台审计（日志留存不少于六个月）",
                AUDIT_MONTHS,
            );
            audits.push(d.audit_topic.clone());
        }
        for a in audits {
            if let Some(h) = out.get_mut(&a) {
                h.one_key = true;
            }
        }
        out
    }

    /// What the entity library reads: every pipeline's topic, the
    /// blacklist topic and the officers' link decisions.
    pub fn entity_sources(&self) -> Option<crate::entity::keeper::Sources> {
        let e = self.sections.entities.as_ref()?;
        let mut canonical: Vec<String> = self.pipelines.iter().map(|p| p.topic.clone()).collect();
        canonical.sort();
        canonical.dedup();
        Some(crate::entity::keeper::Sources {
            canonical,
            listing: self
                .sections
                .credit
                .as_ref()
                .and_then(|c| c.blacklist.as_ref())
                .map(|b| b.topic.clone()),
            links: e.links_topic.clone(),
        })
    }

    /// The topics every delivery writes.
    pub fn shared_topics(&self) -> crate::delivery::SharedTopics {
        crate::delivery::SharedTopics {
            receipts: self.hub.receipts_topic.clone(),
            alerts: self.hub.alerts_topic.clone(),
        }
    }

    /// What operating the feeds (`deliveries status`, `replay`) takes from this
    /// deployment.
    pub fn feeds(&self) -> crate::delivery::ops::Feeds<'_> {
        crate::delivery::ops::Feeds {
            bus: self.bus(),
            deliveries: &self.deliveries,
            topics: self.shared_topics(),
            schemas: &self.hub.schemas,
            file: &self.file,
        }
    }

    /// What the quality board of `pipelines` reads (all when empty).
    pub fn quality_sources(
        &self,
        mappings: &crate::mapping::MappingSet,
        only: &[String],
    ) -> crate::quality::Sources {
        let chosen = || {
            self.pipelines
                .iter()
                .filter(|p| only.is_empty() || only.contains(&p.name))
        };
        crate::quality::Sources {
            pipelines: chosen()
                .map(|p| {
                    let codes = mappings
                        .get(&p.mapping)
                        .map(|m| m.code_field_names())
                        .unwrap_or_default();
                    (p.name.clone(), p.dlq_topic.clone(), codes)
                })
                .collect(),
            raw: chosen().filter_map(PipelineConfig::raw_topic).collect(),
            tallies: self.hub.quality_topic.clone(),
        }
    }

    /// What the entity library takes from this deployment, when it has
    /// an `[entities]` section.
    pub fn entity_setting(&self) -> crate::error::Result<Option<crate::entity::keeper::Setting>> {
        let (Some(config), Some(sources)) = (&self.sections.entities, self.entity_sources()) else {
            return Ok(None);
        };
        Ok(Some(crate::entity::keeper::Setting {
            config: config.clone(),
            bus: self.bus(),
            policy: self.credit_policy(),
            pseudonyms: self.hub.pseudonyms().ok_or_else(|| {
                crate::error::Error::permanent(
                    crate::error::Domain::Config,
                    format!(
                        "{}: [entities] needs [hub] pseudonym_key",
                        self.file.display()
                    ),
                )
            })?,
            sources,
        }))
    }

    /// Every topic the deployment writes: the cursor topic (compacted, one
    /// partition), and each pipeline's topic and dead-letter topic.
    ///
    /// Long because every topic the deployment writes, room by room, each
    /// with the retention it needs.
    pub fn topics(&self) -> Vec<crate::bus::TopicSpec> {
        use crate::bus::{Cleanup, TopicSpec};
        let mut topics = vec![TopicSpec::single(
            self.kafka.cursor_topic.clone(),
            Cleanup::Compact,
        )];
        let history = self.history_topics();
        for p in &self.pipelines {
            // A topic something rebuilds from is kept whole (or compacted,
            // where the pipeline says so: the latest version per key).
            let cleanup = if p.compacted {
                Cleanup::Compact
            } else if history.contains_key(&p.topic) {
                Cleanup::Keep
            } else {
                Cleanup::Delete
            };
            for t in [
                TopicSpec {
                    name: p.topic.clone(),
                    partitions: p.partitions,
                    cleanup,
                },
                // Dead letters wait for a person: never deleted by age.
                TopicSpec::single(p.dlq_topic.clone(), Cleanup::Keep),
            ]
            .into_iter()
            .chain(p.lead.iter().flat_map(crate::lead::LeadConfig::topics))
            .chain(p.raw.as_ref().map(|r| {
                TopicSpec {
                    name: raw_topic(&p.name),
                    partitions: p.partitions,
                    cleanup: Cleanup::Retain {
                        ms: i64::try_from(r.retention.as_millis()).unwrap_or(i64::MAX),
                        bytes: r
                            .max_bytes
                            .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
                    },
                }
            })) {
                if !topics.iter().any(|x| x.name == t.name) {
                    topics.push(t);
                }
            }
        }
        // Receipts (the proof of what each receiver got, and the credit
        // clock's memory of what was published) and alerts (the keepers'
        // memory of what they raised) are kept whole: deleted by age, a
        // restarted keeper would raise again what it raised, or call late
        // what was published.
        let mut extra = vec![
            TopicSpec {
                name: self.hub.receipts_topic.clone(),
                partitions: 3,
                cleanup: Cleanup::Keep,
            },
            // The operator audit: one partition, so that every chain stays
            // in order; never deleted (at least the six months the law asks).
            TopicSpec::single(self.hub.ops_audit_topic.clone(), Cleanup::Keep),
            TopicSpec::single(self.hub.alerts_topic.clone(), Cleanup::Keep),
            // A day's figures are the sum of its tallies: none may go.
            TopicSpec::single(self.hub.quality_topic.clone(), Cleanup::Keep),
        ];
        // Each room names its own.
        for (name, d) in &self.deliveries {
            extra.extend(d.topics(name));
        }
        extra.extend(self.sections.topics());
        if self.hub.scale_out {
            extra.push(TopicSpec {
                name: self.control_topic(),
                partitions: self.shared_task_names().len().max(1) as i32,
                cleanup: Cleanup::Delete,
            });
        }
        for t in extra {
            if !topics.iter().any(|x| x.name == t.name) {
                topics.push(t);
            }
        }
        topics
    }

    /// The tasks that run once across the instances of this hub, in the
    /// order of their control-topic partitions.
    pub fn shared_task_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .pipelines
            .iter()
            .filter(|p| p.source.drive() != Drive::Served)
            .map(|p| format!("pipeline:{}", p.name))
            .collect();
        names.extend(
            crate::keepers::listed(self.keeper_configs())
                .iter()
                .map(|k| k.task.to_owned()),
        );
        names.sort();
        names
    }

    /// The keepers' sections, for [`crate::keepers::listed`].
    pub fn keeper_configs(&self) -> crate::keepers::Configs<'_> {
        crate::keepers::Configs {
            credit: self.sections.credit.as_ref(),
            commitments: self.sections.commitments.as_ref(),
            supervision: self.sections.supervision.as_ref(),
        }
    }

    /// The control topic of scale-out: one partition per shared task. Its
    /// name carries the task count, so that instances of a changed
    /// deployment do not share a group with the old one's partitions.
    pub fn control_topic(&self) -> String {
        format!(
            "duijie.control.{}.{}",
            self.hub.name,
            self.shared_task_names().len()
        )
    }

    /// A client of the deployment's brokers, as its hub names itself.
    pub fn bus(&self) -> crate::bus::Bus {
        let mut bus = crate::bus::Bus::new(
            self.kafka.brokers.clone(),
            format!("duijie-{}", self.hub.name),
        );
        bus.replication = self.kafka.replication;
        bus.properties = self.kafka.properties.clone();
        bus.group_protocol = self.kafka.group_protocol;
        bus.session_timeout = self.kafka.session_timeout;
        bus
    }

    pub fn pipeline(&self, name: &str) -> Option<&PipelineConfig> {
        self.pipelines.iter().find(|p| p.name == name)
    }

    /// Where in the file a pipeline's key is written, for errors found
    /// after loading (an unknown mapping name, say).
    pub fn locate(&self, pipeline: &str, key: &str, message: impl Into<String>) -> ConfigError {
        self.locate_in(&format!("pipelines.{pipeline}"), key, message)
    }

    /// A problem with `key` of the table `table` (`deliveries.NAME`),
    /// located by file and line.
    pub fn locate_in(&self, table: &str, key: &str, message: impl Into<String>) -> ConfigError {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        Locator {
            file: &self.file,
            text: &text,
            secrets: &[],
        }
        .at_key(table, key, message)
    }
}

fn read_source(
    doc: &Spanned<toml::de::DeTable<'_>>,
    name: &str,
    located: &Locator<'_>,
) -> Result<SourceConfig, ConfigError> {
    let field = format!("pipelines.{name}.source");
    let table = doc
        .get_ref()
        .get("pipelines")
        .and_then(|p| p.get_ref().get(name))
        .and_then(|p| p.get_ref().get("source"))
        .cloned()
        .ok_or_else(|| {
            located.at_key(
                &format!("pipelines.{name}"),
                "source",
                "missing `source` table",
            )
        })?;
    let span = table.span();
    let toml::de::DeValue::Table(mut inner) = table.into_inner() else {
        return Err(located.at(span, field, "must be a table"));
    };
    let kind = inner.remove("kind").ok_or_else(|| {
        located.at(
            span.clone(),
            format!("{field}.kind"),
            format!("missing; one of {SOURCE_KINDS:?}"),
        )
    })?;
    let kind_span = kind.span();
    let kind_name = kind
        .get_ref()
        .as_str()
        .ok_or_else(|| {
            located.at(
                kind_span.clone(),
                format!("{field}.kind"),
                "must be a string",
            )
        })?
        .to_owned();
    let value = Spanned::new(span.clone(), toml::de::DeValue::Table(inner));
    let de = toml::de::ValueDeserializer::from(value);
    let config = match SourceConfig::deserialize_kind(&kind_name, de) {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(located.at(
                kind_span,
                format!("{field}.kind"),
                format!("unknown source kind `{kind_name}`; one of {SOURCE_KINDS:?}"),
            ));
        }
        Err(e) => {
            let mut err = located.toml_error(&e);
            if err.field.is_empty() || !err.field.starts_with(&field) {
                err.field = field.clone();
            }
            return Err(err);
        }
    };
    config
        .validate()
        .map_err(|why| located.at(span, field, why))?;
    Ok(config)
}

/// `[pipelines.*]`: each pipeline checked (its source by kind, schedule,
/// partitions, topics agreeing between pipelines, webhook paths), every
/// problem pushed to `errors` with its place; the pipelines that can run.
///
/// Long because each pipeline's checks in the order of its table (source by
/// kind, schedule, partitions, topics agreeing between pipelines, webhook
/// paths), every problem collected with its place.
fn parse_pipelines(
    raw: BTreeMap<String, RawPipeline>,
    http: bool,
    text: &str,
    base: &Path,
    located: &Locator<'_>,
    errors: &mut Vec<ConfigError>,
) -> Result<Vec<PipelineConfig>, Vec<ConfigError>> {
    // The document again, keeping spans, to read each source by kind.
    let doc = toml::de::DeTable::parse(text).map_err(|e| vec![located.toml_error(&e)])?;
    let mut pipelines = Vec::new();
    let mut topics: BTreeMap<String, (String, i32, bool)> = BTreeMap::new();
    for (name, p) in raw {
        let field = |f: &str| format!("pipelines.{name}.{f}");
        let source = match read_source(&doc, &name, located) {
            Ok(mut s) => {
                s.resolve_paths(base);
                Some(s)
            }
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let push = source.as_ref().is_some_and(SourceConfig::is_push);
        if push && p.exactly_once {
            errors.push(located.at_key(
                &format!("pipelines.{name}"),
                "exactly_once",
                "a pushed source is acknowledged to its sender delivery by delivery; `exactly_once` (Kafka transactions over polled batches) does not apply",
            ));
        }
        let schedule = match &p.schedule {
            Some(text) if push => {
                errors.push(located.at(
                    text.span(),
                    field("schedule"),
                    format!(
                        "a `{}` source is pushed to; it has no schedule",
                        source.as_ref().map_or("pushed", SourceConfig::kind)
                    ),
                ));
                None
            }
            Some(text) => match cron::Schedule::from_str(text.get_ref()) {
                Ok(s) => Some(Some(s)),
                Err(e) => {
                    errors.push(located.at(
                        text.span(),
                        field("schedule"),
                        format!(
                            "`{}` is not a cron schedule (sec min hour day month weekday): {e}",
                            text.get_ref()
                        ),
                    ));
                    None
                }
            },
            None if push || source.is_none() => Some(None),
            None => {
                errors.push(located.at_key(
                    &format!("pipelines.{name}"),
                    "schedule",
                    "missing: a polled source needs a cron schedule (sec min hour day month weekday)",
                ));
                None
            }
        };
        if *p.partitions.get_ref() < 1 {
            errors.push(located.at(
                p.partitions.span(),
                field("partitions"),
                "must be at least 1",
            ));
        }
        if let Some(raw) = &p.raw
            && raw.get_ref().retention.is_zero()
        {
            errors.push(located.at(
                raw.span(),
                field("raw.retention"),
                "must be longer than zero (e.g. \"30d\")",
            ));
        }
        if let Some(lead) = &p.lead
            && let Err(why) = lead.get_ref().validate()
        {
            errors.push(located.at(lead.span(), field("lead"), why));
        }
        if *p.batch_size.get_ref() == 0 {
            errors.push(located.at(
                p.batch_size.span(),
                field("batch_size"),
                "must be at least 1",
            ));
        }
        for (f, t) in [
            ("topic", Some(&p.topic)),
            ("dlq_topic", p.dlq_topic.as_ref()),
        ] {
            if let Some(t) = t
                && let Err(why) = crate::bus::check_topic_name(t.get_ref())
            {
                errors.push(located.at(t.span(), field(f), why));
            }
        }
        if let Some((other, _, compacted)) = topics.get(p.topic.get_ref())
            && *compacted != p.compacted
        {
            errors.push(located.at_key(
                &format!("pipelines.{name}"),
                "compacted",
                format!(
                    "topic `{}` is {} in pipeline `{other}`; pipelines sharing a topic must agree",
                    p.topic.get_ref(),
                    if *compacted {
                        "compacted"
                    } else {
                        "not compacted"
                    }
                ),
            ));
        }
        if let Some((other, parts, _)) = topics.get(p.topic.get_ref())
            && parts != p.partitions.get_ref()
        {
            errors.push(located.at(
                p.partitions.span(),
                field("partitions"),
                format!(
                    "topic `{}` has {parts} partitions in pipeline `{other}`; a topic has one partition count",
                    p.topic.get_ref()
                ),
            ));
        }
        topics.insert(
            p.topic.get_ref().clone(),
            (name.clone(), *p.partitions.get_ref(), p.compacted),
        );
        let (Some(source), Some(schedule)) = (source, schedule) else {
            continue;
        };
        pipelines.push(PipelineConfig {
            dlq_topic: p
                .dlq_topic
                .map(|t| t.into_inner())
                .unwrap_or_else(|| format!("dlq.{name}")),
            name,
            system: p.system,
            mapping: p.mapping.into_inner(),
            topic: p.topic.into_inner(),
            partitions: p.partitions.into_inner(),
            schedule,
            batch_size: p.batch_size.into_inner(),
            max_in_flight_batches: p.max_in_flight_batches.max(1),
            exactly_once: p.exactly_once,
            compacted: p.compacted,
            retry: p.retry,
            raw: p.raw.map(Spanned::into_inner),
            lead: p.lead.map(Spanned::into_inner),
            source,
        });
    }
    let mut paths: BTreeMap<String, String> = BTreeMap::new();
    for p in &pipelines {
        if let SourceConfig::Webhook(w) = &p.source {
            if !http {
                errors.push(located.at_key(
                    &format!("pipelines.{}.source", p.name),
                    "path",
                    "a webhook source needs the hub's HTTP server: add [http] listen = \"host:port\"",
                ));
            }
            if let Some(other) = paths.insert(w.path.clone(), p.name.clone()) {
                errors.push(located.at_key(
                    &format!("pipelines.{}.source", p.name),
                    "path",
                    format!("path `{}` is also served for pipeline `{other}`", w.path),
                ));
            }
        }
    }
    Ok(pipelines)
}

/// `[deliveries.*]`: each delivery checked against the pipelines (no
/// raw topic pushed, a credit push's repair results written by one) and
/// signed with the hub's key where it asks for SM2.
fn parse_deliveries(
    raw: BTreeMap<String, Spanned<crate::delivery::DeliveryConfig>>,
    pipelines: &[PipelineConfig],
    hub_signing: &Option<crate::delivery::Signing>,
    http: bool,
    located: &Locator<'_>,
    errors: &mut Vec<ConfigError>,
) -> Vec<(String, crate::delivery::DeliveryConfig)> {
    let mut deliveries = Vec::new();
    for (name, mut d) in raw {
        if let crate::delivery::TargetConfig::Webhook {
            sm2: true, signing, ..
        }
        | crate::delivery::TargetConfig::Soap {
            sm2: true, signing, ..
        }
        | crate::delivery::TargetConfig::CreditBatch { signing, .. } = &mut d.get_mut().target
        {
            signing.clone_from(hub_signing);
        }
        if let Err(why) = d.get_ref().validate() {
            errors.push(located.at(d.span(), format!("deliveries.{name}"), why));
        }
        if pipelines
            .iter()
            .any(|p| p.raw.is_some() && raw_topic(&p.name) == d.get_ref().topic)
        {
            errors.push(located.at(
                d.span(),
                format!("deliveries.{name}.topic"),
                format!(
                    "`{}` is a raw topic: raw payloads are the hub's own and never pushed (personal-data rule); deliver the canonical topic",
                    d.get_ref().topic
                ),
            ));
        }
        // The repair results a credit push follows must be a topic of
        // this deployment: the push waits to have read them whole.
        if let crate::delivery::TransformConfig::CreditPenalty {
            repairs_topic: Some(t),
            ..
        } = &d.get_ref().transform
            && !pipelines.iter().any(|p| &p.topic == t)
        {
            errors.push(located.at(
                d.span(),
                format!("deliveries.{name}.transform.repairs_topic"),
                format!(
                    "no pipeline writes `{t}`: add the pipeline of the credit platform's repair results (mapping `credit_repair`)"
                ),
            ));
        }
        if matches!(
            d.get_ref().target,
            crate::delivery::TargetConfig::Pull { .. }
        ) && !http
        {
            errors.push(located.at(
                d.span(),
                format!("deliveries.{name}.target"),
                "a pull feed is served by the hub: add [http] listen",
            ));
        }
        deliveries.push((name, d.into_inner()));
    }
    deliveries
}

/// Turns byte offsets into lines, columns and dotted field paths.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
    /// Where expanded secrets sit in `text`: errors there withhold details.
    secrets: &'a [std::ops::Range<usize>],
}

/// What an error about a secret's value says instead of the details,
/// which could quote it.
const SECRET_VALUE: &str = "the value here comes from a secret reference and is not valid; details are withheld so that the secret does not show";

impl Locator<'_> {
    fn touches_secret(&self, span: &std::ops::Range<usize>) -> bool {
        self.secrets
            .iter()
            .any(|s| span.start < s.end && s.start < span.end.max(span.start + 1))
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
        (line, column)
    }

    fn at(
        &self,
        span: std::ops::Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = if span.is_empty() && span.start == 0 {
            (0, 0)
        } else {
            self.line_col(span.start)
        };
        let message = if self.touches_secret(&span) {
            SECRET_VALUE.to_owned()
        } else {
            message.into()
        };
        ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            field: field.into(),
            message,
        }
    }

    /// The line of `key` inside table `[table]`, or of the table header.
    fn at_key(&self, table: &str, key: &str, message: impl Into<String>) -> ConfigError {
        let mut current = String::new();
        let mut header_line = 0;
        for (i, line) in self.text.lines().enumerate() {
            let t = line.trim();
            if let Some(h) = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                current = h.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
                if current == table {
                    header_line = i + 1;
                }
                continue;
            }
            if current == table
                && let Some((k, _)) = t.split_once('=')
                && k.trim().trim_matches('"') == key
            {
                let column = line.len() - line.trim_start().len() + 1;
                return ConfigError {
                    file: self.file.to_path_buf(),
                    line: i + 1,
                    column,
                    field: format!("{table}.{key}"),
                    message: message.into(),
                };
            }
        }
        ConfigError {
            file: self.file.to_path_buf(),
            line: header_line,
            column: 1,
            field: format!("{table}.{key}"),
            message: message.into(),
        }
    }

    /// The dotted path of the key written at `offset`: the enclosing
    /// `[table]` header plus the key on that line.
    fn field_at(&self, offset: usize) -> String {
        let (line_no, _) = self.line_col(offset);
        let lines: Vec<&str> = self.text.lines().collect();
        let mut table = String::new();
        for l in lines.iter().take(line_no.saturating_sub(1)) {
            let t = l.trim();
            if let Some(h) = t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                table = h.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
            }
        }
        let line = lines
            .get(line_no.saturating_sub(1))
            .copied()
            .unwrap_or_default()
            .trim();
        if let Some(h) = line.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            return h.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
        }
        let key = line
            .split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_owned())
            .unwrap_or_default();
        match (table.is_empty(), key.is_empty()) {
            (_, true) => table,
            (true, false) => key,
            (false, false) => format!("{table}.{key}"),
        }
    }

    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let mut message = e.message().trim().to_owned();
        match e.span() {
            Some(span) => {
                if self.touches_secret(&span) {
                    message = SECRET_VALUE.to_owned();
                }
                let (line, column) = self.line_col(span.start);
                // A span over the whole file is the top level's.
                let whole_file = span.start == 0 && span.end >= self.text.trim_end().len();
                let mut field = if whole_file {
                    String::new()
                } else {
                    self.field_at(span.start)
                };
                // A missing field is reported at its table: name it.
                if let Some(missing) = message
                    .strip_prefix("missing field `")
                    .and_then(|m| m.split('`').next())
                {
                    field = if field.is_empty() {
                        missing.to_owned()
                    } else {
                        format!("{field}.{missing}")
                    };
                }
                ConfigError {
                    file: self.file.to_path_buf(),
                    line,
                    column,
                    field,
                    message,
                }
            }
            None => ConfigError {
                file: self.file.to_path_buf(),
                line: 0,
                column: 0,
                field: String::new(),
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[hub]
name = "test"

[kafka]
brokers = "127.0.0.1:9092"

[pipelines.urban]
system = "digital_urban"
mapping = "urban_case"
topic = "canonical.urban_case"
schedule = "*/5 * * * * *"

[pipelines.urban.source]
kind = "file_drop"
dir = "inbox"
layout = "jsonl"
"#;

    fn load(text: &str) -> Result<Deployment, Vec<ConfigError>> {
        Deployment::parse(Path::new("conf/test.toml"), text)
    }

    /// The rooms' sections, listed once: each checked at its line with its
    /// field, its paths made relative to the file, its topics created, and
    /// a reload told which of them need a restart (the desk's users do not).
    #[test]
    fn the_rooms_sections_are_checked_placed_and_compared_from_one_list() {
        let http = "[http]\nlisten = \"127.0.0.1:8080\"\n";
        let entities = "\n[entities]\ncache = \"cache/entities.redb\"\n";
        let desk = |user: &str| {
            format!("\n[desk]\n[desk.users.\"{user}\"]\nname = \"张伟\"\nrole = \"officer\"\n")
        };
        // Without a pseudonym key and [http]: each problem at its section's
        // line, under its field.
        let errors = load(&format!(
            "{GOOD}{entities}{}",
            desk("officer-token-0000000001")
        ))
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let line_of = |needle: &str| {
            format!("{GOOD}{entities}{}", desk("officer-token-0000000001"))
                .lines()
                .position(|l| l == needle)
                .unwrap()
                + 1
        };
        assert!(
            text.iter()
                .any(|e| e.contains(&format!(":{}:", line_of("[entities]")))
                    && e.contains("hub.pseudonym_key")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains(&format!(":{}:", line_of("[desk]")))
                    && e.contains("desk:")
                    && e.contains("[http] listen")),
            "{text:?}"
        );
        let with = |extra: &str| {
            let keyed = GOOD.replace(
                "name = \"test\"\n",
                "name = \"test\"\npseudonym_key = \"a-test-pseudonym-key-of-32-characters\"\n",
            );
            load(&format!("{keyed}{http}{extra}")).unwrap()
        };
        let a = with(&format!("{entities}{}", desk("officer-token-0000000001")));
        assert_eq!(
            a.sections.entities.as_ref().unwrap().cache.as_deref(),
            Some(Path::new("conf/cache/entities.redb"))
        );
        let topics: Vec<String> = a.topics().into_iter().map(|t| t.name).collect();
        for t in ["entity.links", "referrals.state", "desk.audit"] {
            assert!(topics.iter().any(|x| x == t), "{t} in {topics:?}");
        }
        // Another officer's token: applied at once. Another cache, or a
        // section added: a restart.
        let users_only = with(&format!("{entities}{}", desk("officer-token-0000000002")));
        assert!(a.sections.needing_restart(&users_only.sections).is_empty());
        let other_cache = with(&format!(
            "{}{}",
            entities.replace("entities.redb", "other.redb"),
            desk("officer-token-0000000001")
        ));
        assert_eq!(
            a.sections.needing_restart(&other_cache.sections),
            ["entities"]
        );
        let traced = with(&format!(
            "{entities}{}\n[telemetry]\notlp = \"http://127.0.0.1:4318\"\n",
            desk("officer-token-0000000001")
        ));
        assert_eq!(a.sections.needing_restart(&traced.sections), ["telemetry"]);
    }

    #[test]
    fn a_good_file_loads_with_paths_relative_to_it() {
        let d = load(GOOD).unwrap();
        let p = d.pipeline("urban").unwrap();
        assert_eq!(p.dlq_topic, "dlq.urban");
        assert_eq!(p.partitions, 3);
        match &p.source {
            SourceConfig::FileDrop(c) => assert_eq!(c.dir, Path::new("conf/inbox")),
            other => panic!("{other:?}"),
        }
        assert_eq!(d.hub.mappings, Path::new("conf/../mappings"));
    }

    fn one_error(text: &str) -> ConfigError {
        let errors = load(text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.into_iter().next().unwrap()
    }

    /// `[hub.signing]`: a key that is not an SM2 PKCS#8 PEM is refused at
    /// load, by field; a good one reaches every webhook target that does
    /// not say `sm2 = false`.
    #[test]
    fn the_hubs_sm2_key_is_checked_and_copied_into_webhook_targets() {
        let e = one_error(&format!("{GOOD}\n[hub.signing]\nkey = \"not a key\"\n"));
        assert_eq!(e.field, "hub.signing", "{e}");
        assert!(
            e.message.contains("not an SM2 PKCS#8 PEM private key"),
            "{e}"
        );

        let key = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/secrets/hub_sm2_key.pem"),
        )
        .unwrap();
        let hooks = r#"
[deliveries.a]
topic = "canonical.urban_case"
department = "a"
transform = { kind = "fields", fields = ["case_no"] }
target = { kind = "webhook", url = "http://127.0.0.1:1/a", secret = "0123456789abcdef", signature = "hmac-sm3" }

[deliveries.b]
topic = "canonical.urban_case"
department = "b"
transform = { kind = "fields", fields = ["case_no"] }
target = { kind = "webhook", url = "http://127.0.0.1:1/b", secret = "0123456789abcdef", sm2 = false }
"#;
        let text = format!(
            "{GOOD}{hooks}\n[hub.signing]\nkey = \"{}\"\n",
            key.trim_end().replace('\n', "\\n")
        );
        let d = load(&text).unwrap_or_else(|e| panic!("{e:?}"));
        let signing = |name: &str| match &d
            .deliveries
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .target
        {
            crate::delivery::TargetConfig::Webhook { signing, .. } => signing.is_some(),
            _ => unreachable!(),
        };
        assert!(signing("a"));
        assert!(!signing("b"));
    }

    #[test]
    fn unknown_source_field_names_file_line_and_field() {
        let e =
            one_error(&GOOD.replace("layout = \"jsonl\"", "layout = \"jsonl\"\nsettel = \"1s\""));
        assert_eq!(e.line, 18);
        assert_eq!(e.field, "pipelines.urban.source.settel");
        assert!(e.message.contains("unknown field `settel`"), "{e}");
        assert!(e.to_string().starts_with("conf/test.toml:18:"), "{e}");
    }

    #[test]
    fn bad_variant_and_bad_duration_are_located() {
        let e = one_error(&GOOD.replace("layout = \"jsonl\"", "layout = \"csv\""));
        assert_eq!(
            (e.line, e.field.as_str()),
            (17, "pipelines.urban.source.layout")
        );
        let e = one_error(&GOOD.replace(
            "layout = \"jsonl\"",
            "layout = \"jsonl\"\nsettle = \"soon\"",
        ));
        assert_eq!(
            (e.line, e.field.as_str()),
            (18, "pipelines.urban.source.settle")
        );
    }

    #[test]
    fn missing_field_is_named() {
        let e = one_error(&GOOD.replace("topic = \"canonical.urban_case\"\n", ""));
        assert_eq!(e.field, "pipelines.urban.topic");
        assert!(e.message.contains("missing field `topic`"), "{e}");
    }

    #[test]
    fn bad_schedule_and_unknown_kind() {
        let errors = load(
            &GOOD
                .replace("*/5 * * * * *", "every 5 seconds")
                .replace("\"file_drop\"", "\"ftp\""),
        )
        .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.field == "pipelines.urban.schedule" && e.line == 12)
        );
        assert!(
            errors
                .iter()
                .any(|e| e.field == "pipelines.urban.source.kind"
                    && e.message.contains("unknown source kind `ftp`"))
        );
    }
}
