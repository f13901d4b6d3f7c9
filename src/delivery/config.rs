//! Deliveries (`[deliveries.NAME]` in the deployment file): which topic,
//! which records, what the receiver gets, where and how it is delivered.

use crate::credit::CreditPolicy;
use crate::retry::RetryConfig;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// One delivery.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Topic to read (a canonical topic, or `credit.blacklist`).
    pub topic: String,
    /// The department or system receiving it (receipts, status, pull URL).
    #[serde(default)]
    pub department: Option<String>,
    /// Which records to deliver; all when absent.
    #[serde(default)]
    pub select: Option<Select>,
    /// What the receiver gets.
    pub transform: TransformConfig,
    /// Where and how it is delivered.
    pub target: TargetConfig,
    /// Retries of a failing delivery: exponential backoff with jitter,
    /// capped at `retry.max`.
    #[serde(default = "default_retry")]
    pub retry: RetryConfig,
    /// How long a receiver that is unreachable or answers 5xx/408/429 is
    /// waited for (a maintenance window), holding its records in order,
    /// before the record at the head goes to the dead letters with an
    /// alert: only when `retry.max_attempts` were made **and** this long
    /// has passed since its first failure. A refusal that will not change
    /// (another 4xx, a per-record rejection) is dead-lettered at once.
    #[serde(default = "default_patience", with = "humantime_serde")]
    pub patience: Duration,
    /// A feed waiting this long raises a `DELIVERY_WAITING` alert (once per
    /// outage); it shows as `waiting` in `/ready` and
    /// `duijie_delivery_waiting` at once.
    #[serde(default = "default_alert_after", with = "humantime_serde")]
    pub alert_after: Duration,
    /// Requests per second to the target, at most.
    #[serde(default)]
    pub rate_per_sec: Option<f64>,
    /// Records per request for batch targets.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Requests in flight at once to a one-record-a-request target
    /// (webhook, SOAP), across keys: each key's versions still go one
    /// after the other, in offset order, and a key waiting for its
    /// receiver holds no slot while it waits. `1` delivers a partition
    /// strictly in offset order, one request at a time. At most
    /// [`MAX_IN_FLIGHT`].
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
    /// Dead letters of this delivery (default `dlq.delivery.<name>`).
    #[serde(default)]
    pub dlq_topic: Option<String>,
    /// What the receiver may get of a natural person's resident ID number:
    /// `masked` (the default: `110105********002X` in bodies, keys and
    /// headers) or `full`, only where the law entitles the receiver to it;
    /// say which law beside it. See `personal`.
    #[serde(default)]
    pub personal_data: crate::personal::PersonalDataPolicy,
    /// The token the department shows to read its delivery's status and
    /// dead letters (`GET /feeds/{department}/status`, see `status`); a
    /// pull feed's own token does for a pull feed. From the secret store.
    #[serde(default)]
    pub status_token: Option<String>,
}

fn default_retry() -> RetryConfig {
    RetryConfig {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(60),
        max_attempts: 10,
    }
}

fn default_patience() -> Duration {
    Duration::from_secs(6 * 3600)
}

fn default_alert_after() -> Duration {
    Duration::from_secs(10 * 60)
}

fn default_batch_size() -> usize {
    50
}

fn default_in_flight() -> usize {
    32
}

/// The most requests a delivery keeps in flight (`in_flight`).
pub const MAX_IN_FLIGHT: usize = 256;

/// A selection: a test on a field (dotted path) of the record, or a
/// combination.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Select {
    /// The canonical field a test reads (a dotted path, `party.type`).
    #[serde(default)]
    pub field: Option<String>,
    /// The field's value is one of these.
    #[serde(default, rename = "in")]
    pub in_set: Option<Vec<Value>>,
    /// The field's value is this one.
    #[serde(default)]
    pub eq: Option<Value>,
    /// The field has a value (`true`) or has none (`false`).
    #[serde(default)]
    pub present: Option<bool>,
    /// The field is a number at least this large.
    #[serde(default)]
    pub at_least: Option<f64>,
    /// Every one of these selections holds.
    #[serde(default)]
    pub all: Option<Vec<Select>>,
    /// At least one of these holds.
    #[serde(default)]
    pub any: Option<Vec<Select>>,
    /// This selection does not hold.
    #[serde(default)]
    pub not: Option<Box<Select>>,
}

impl Select {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(all) = &self.all {
            return all.iter().try_for_each(Select::validate);
        }
        if let Some(any) = &self.any {
            return any.iter().try_for_each(Select::validate);
        }
        if let Some(not) = &self.not {
            return not.validate();
        }
        if self.field.is_none() {
            return Err("a selection needs `field` (or all/any/not)".into());
        }
        let tests = [
            self.in_set.is_some(),
            self.eq.is_some(),
            self.present.is_some(),
            self.at_least.is_some(),
        ];
        if tests.iter().filter(|t| **t).count() != 1 {
            return Err("a selection needs exactly one test: in, eq, present or at_least".into());
        }
        Ok(())
    }

    /// Whether `record` is selected.
    pub fn holds(&self, record: &Value) -> bool {
        if let Some(all) = &self.all {
            return all.iter().all(|s| s.holds(record));
        }
        if let Some(any) = &self.any {
            return any.iter().any(|s| s.holds(record));
        }
        if let Some(not) = &self.not {
            return !not.holds(record);
        }
        let value = self.field.as_deref().and_then(|f| field(record, f));
        if let Some(set) = &self.in_set {
            return value.is_some_and(|v| set.contains(v));
        }
        if let Some(eq) = &self.eq {
            return value == Some(eq);
        }
        if let Some(present) = self.present {
            return value.is_some_and(|v| !v.is_null()) == present;
        }
        if let Some(min) = self.at_least {
            return value.and_then(Value::as_f64).is_some_and(|v| v >= min);
        }
        false
    }
}

/// The team of a jurisdiction code: the route of its longest matching
/// prefix, else the default team.
pub fn route_team(
    routes: &BTreeMap<String, String>,
    default_team: Option<&String>,
    area: &str,
) -> Option<String> {
    routes
        .iter()
        .filter(|(prefix, _)| area.starts_with(prefix.as_str()))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, team)| team.clone())
        .or_else(|| default_team.cloned())
}

/// A dotted path into a JSON object.
pub fn field<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(record, |v, k| v.get(k))
}

/// What the receiver gets.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformConfig {
    /// The record, limited to the fields the department is entitled to
    /// (dotted paths; nested objects are kept whole when named whole).
    Fields { fields: Vec<String> },
    /// The credit platform's penalty publication (`CF_*`), or a withdrawal
    /// for a revoked decision.
    CreditPenalty {
        #[serde(default)]
        policy: Box<CreditPolicy>,
        /// The credit platform's repair results (`CreditRepair`): a decision
        /// whose publication a repair ended is never pushed again
        /// (《信用修复管理办法》 art. 3).
        #[serde(default)]
        repairs_topic: Option<String>,
    },
    /// A licence notice for post-approval supervision (事中事后监管), routed
    /// by jurisdiction (the longest matching prefix of `jurisdiction`) to an
    /// enforcement team's queue.
    LicenceNotice {
        routes: BTreeMap<String, String>,
        #[serde(default)]
        default_team: Option<String>,
    },
    /// Blacklist entries, as the blacklist keeper writes them.
    Blacklist,
    /// An enforcement act for the 司法行政部门's supervision platform
    /// (《行政执法监督条例》, 国务院令第825号, art. 6; the three systems of
    /// 国办发〔2018〕118号): a penalty decision with its power item, officers
    /// and certificates, the procedure's dates, the legal review and the
    /// publication decision, personal data by the hub's rule (ID numbers
    /// masked), sent in batches to the `credit_batch` protocol.
    SupervisionAct,
    /// The rates the supervisor watches, per month and power-list item, as
    /// the supervision keeper writes them (`[supervision] rates_topic`),
    /// sent in batches to the `credit_batch` protocol: facts, never
    /// findings.
    SupervisionRates,
}

/// Where and how.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TargetConfig {
    /// The credit platform's HTTPS batch API: `<url>/batch` answers per
    /// record; `<url>/withdraw` withdraws.
    CreditBatch {
        url: String,
        #[serde(default = "default_timeout", with = "humantime_serde")]
        timeout: Duration,
        /// The platform's SM2 public key (PEM): its answers must carry its
        /// signature (`X-Signature-SM2`, DER, base64, over the answer's
        /// body), which the receipt keeps (non-repudiation).
        #[serde(default)]
        receipt_key: Option<String>,
        /// `[hub.signing]`, copied here when the deployment is read.
        #[serde(skip)]
        signing: Option<Signing>,
    },
    /// An HTTPS webhook: JSON body, `X-Timestamp` and `X-Signature`
    /// (HMAC-SHA256 over `<timestamp>.<body>`), `Idempotency-Key`. `{team}`
    /// in the URL is replaced by the route of a licence notice.
    Webhook {
        url: String,
        secret: String,
        #[serde(default = "default_timeout", with = "humantime_serde")]
        timeout: Duration,
        /// The HMAC of signature scheme 2: `hmac-sm3` (the `gm` suite) or
        /// `hmac-sha256` (default, for receivers that have no SM3).
        #[serde(default)]
        signature: HmacScheme,
        /// Whether the hub's SM2 signature goes along (when `[hub.signing]`
        /// is set).
        #[serde(default = "yes")]
        sm2: bool,
        /// `[hub.signing]`, copied here when the deployment is read.
        #[serde(skip)]
        signing: Option<Signing>,
        /// The body encrypted to the receiver (`[….target.encryption]`):
        /// SM4 under a fresh data key, the key wrapped with the receiver's
        /// SM2 public key (GB/T 39786-2021 level 3, confidentiality of
        /// important data in transit). See [`BodyEncryption`].
        #[serde(default)]
        encryption: Option<BodyEncryption>,
        /// The receiver's SM2 public key (PEM), when its answers are signed
        /// (see `CreditBatch`).
        #[serde(default)]
        receipt_key: Option<String>,
        /// The batch form, for a receiver that takes one: up to
        /// `batch_size` records of a partition, in offset order, in one
        /// request (`{"records": […]}`, `X-Delivery-Form: batch`), answered
        /// record by record (`{"results": [{"idempotency_key", "status":
        /// "ACCEPTED" | "REJECTED", "reason"}]}`). Not with `encryption`
        /// (an envelope seals one record) nor a `{team}` URL.
        #[serde(default)]
        batch: bool,
    },
    /// A legacy SOAP/XML receiver; the key travels in the envelope header.
    Soap {
        url: String,
        soap_action: String,
        #[serde(default = "default_timeout", with = "humantime_serde")]
        timeout: Duration,
        /// Whether the hub's SM2 signature goes along (when `[hub.signing]`
        /// is set).
        #[serde(default = "yes")]
        sm2: bool,
        /// `[hub.signing]`, copied here when the deployment is read.
        #[serde(skip)]
        signing: Option<Signing>,
    },
    /// Not pushed: the department pulls `GET /feeds/{department}?after=CURSOR`
    /// with this bearer token.
    Pull { token: String },
}

fn default_timeout() -> Duration {
    Duration::from_secs(15)
}

fn yes() -> bool {
    true
}

pub use duijie_connectors::signature::HmacScheme;

/// A receiver's body-encryption profile: the envelope `duijie-sm4/1`
/// (docs/RECEIVING.md, "Encrypted bodies").
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyEncryption {
    /// `sm4-gcm` (the key as associated data) or `sm4-cbc` (PKCS#7).
    pub cipher: BodyCipher,
    /// The receiver's SM2 public key, PEM (`openssl pkey -pubout`).
    pub public_key: String,
    /// How the wrapped data key is laid out: `c1c3c2` (GB/T 32918.4,
    /// default), `c1c2c3` (the 2010 draft, as older libraries write it) or
    /// `der` (GM/T 0009, as OpenSSL writes it).
    #[serde(default)]
    pub key_form: duijie_crypto::sm2::CipherForm,
    /// `base64` (default) or `hex`, for the key, the IV and the data.
    #[serde(default)]
    pub text: duijie_crypto::Text,
}

impl std::fmt::Debug for BodyEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyEncryption")
            .field("cipher", &self.cipher)
            .field("key_form", &self.key_form)
            .field("text", &self.text)
            .finish_non_exhaustive()
    }
}

impl BodyEncryption {
    /// The receiver's key, read.
    pub fn receiver_key(&self) -> Result<duijie_crypto::sm2::PublicKey, String> {
        duijie_crypto::sm2::PublicKey::from_pem(
            &self.public_key,
            duijie_crypto::sm2::DEFAULT_DISTID,
        )
        .map_err(|e| format!("`target.encryption.public_key`: {e}"))
    }
}

/// The body's cipher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum BodyCipher {
    #[serde(rename = "sm4-gcm")]
    Sm4Gcm,
    #[serde(rename = "sm4-cbc")]
    Sm4Cbc,
}

impl BodyCipher {
    pub fn name(self) -> &'static str {
        match self {
            BodyCipher::Sm4Gcm => "sm4-gcm",
            BodyCipher::Sm4Cbc => "sm4-cbc",
        }
    }
}

/// `[hub.signing]`: the hub's SM2 private key and how its signatures
/// travel.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signing {
    /// PKCS#8 PEM (`openssl genpkey -algorithm SM2`), from the secret
    /// store: `${file:secrets/hub_sm2_key.pem}`.
    pub key: String,
    /// The distinguishing identifier (用户身份标识) agreed with receivers.
    #[serde(default = "default_distid")]
    pub distid: String,
    /// `der` (default) or `raw` (`r‖s`).
    #[serde(default)]
    pub form: duijie_crypto::sm2::SignatureForm,
    /// `base64` (default) or `hex`.
    #[serde(default)]
    pub text: duijie_crypto::Text,
}

fn default_distid() -> String {
    duijie_crypto::sm2::DEFAULT_DISTID.to_owned()
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("key", &"***")
            .field("distid", &self.distid)
            .field("form", &self.form)
            .field("text", &self.text)
            .finish()
    }
}

impl Signing {
    /// The key, read.
    pub fn private_key(&self) -> Result<duijie_crypto::sm2::PrivateKey, String> {
        duijie_crypto::sm2::PrivateKey::from_pem(&self.key, &self.distid).map_err(|e| e.to_string())
    }

    /// Whether the key reads.
    pub fn check(&self) -> Result<(), String> {
        self.private_key()
            .map(|_| ())
            .map_err(|e| format!("`key`: {e}"))
    }

    /// The key's id, sent with each signature so a receiver with several
    /// of the hub's keys (a rotation) picks the right one: the first 16
    /// hex digits of SM3 over the public point.
    pub fn key_id(&self) -> Result<String, String> {
        let public = self.private_key()?.public().to_sec1();
        Ok(hex::encode(
            &duijie_crypto::Suite::Gm.digest(&[&public])[..8],
        ))
    }
}

impl DeliveryConfig {
    /// The dead-letter topic of the delivery called `name`: records the
    /// receiver refused for good (default `dlq.delivery.<name>`).
    pub fn dlq_topic(&self, name: &str) -> String {
        self.dlq_topic
            .clone()
            .unwrap_or_else(|| format!("dlq.delivery.{name}"))
    }

    /// The topics the delivery called `name` writes: its dead letters,
    /// which wait for a person and are never deleted by age.
    pub fn topics(&self, name: &str) -> Vec<crate::bus::TopicSpec> {
        vec![crate::bus::TopicSpec::single(
            self.dlq_topic(name),
            crate::bus::Cleanup::Keep,
        )]
    }

    /// Long because a delivery's settings checked one by one (target by
    /// kind, transform, selection, limits, personal-data policy), each with
    /// its own message.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(s) = &self.select {
            s.validate()?;
        }
        if self.batch_size == 0 {
            return Err("`batch_size` must be at least 1".into());
        }
        if !(1..=MAX_IN_FLIGHT).contains(&self.in_flight) {
            return Err(format!(
                "`in_flight` must be between 1 and {MAX_IN_FLIGHT}, not {}",
                self.in_flight
            ));
        }
        if let Some(r) = self.rate_per_sec
            && r <= 0.0
        {
            return Err("`rate_per_sec` must be positive".into());
        }
        if let TransformConfig::CreditPenalty {
            policy,
            repairs_topic,
        } = &self.transform
        {
            policy
                .validate()
                .map_err(|why| format!("`transform.policy`: {why}"))?;
            if let Some(t) = repairs_topic {
                crate::bus::check_topic_name(t)
                    .map_err(|why| format!("`transform.repairs_topic`: {why}"))?;
            }
        }
        match (&self.transform, &self.target) {
            (
                TransformConfig::CreditPenalty { .. }
                | TransformConfig::SupervisionAct
                | TransformConfig::SupervisionRates,
                TargetConfig::CreditBatch { .. },
            ) => {}
            (
                TransformConfig::CreditPenalty { .. }
                | TransformConfig::SupervisionAct
                | TransformConfig::SupervisionRates,
                _,
            )
            | (_, TargetConfig::CreditBatch { .. }) => {
                return Err(
                    "`credit_penalty`, `supervision_act` and `supervision_rates` go with the batch target (`credit_batch`), and only they".into(),
                );
            }
            (
                TransformConfig::LicenceNotice {
                    routes,
                    default_team,
                },
                TargetConfig::Webhook { url, .. },
            ) => {
                if !url.contains("{team}") {
                    return Err("a licence notice webhook URL needs `{team}`".into());
                }
                if routes.is_empty() && default_team.is_none() {
                    return Err("`routes` is empty and there is no `default_team`".into());
                }
            }
            _ => {}
        }
        match &self.target {
            TargetConfig::Webhook {
                url,
                secret,
                encryption,
                batch,
                ..
            } => {
                reqwest::Url::parse(&url.replace("{team}", "t"))
                    .map_err(|e| format!("`target.url`: {e}"))?;
                if *batch && (encryption.is_some() || url.contains("{team}")) {
                    return Err("`target.batch` cannot go with `encryption` (an envelope seals one record) or a `{team}` URL (a batch has one address)".into());
                }
                if secret.len() < 16 {
                    return Err("`target.secret` must be at least 16 characters".into());
                }
                if let Some(e) = encryption {
                    e.receiver_key()?;
                }
            }
            TargetConfig::CreditBatch { url, .. } | TargetConfig::Soap { url, .. } => {
                reqwest::Url::parse(url).map_err(|e| format!("`target.url`: {e}"))?;
            }
            TargetConfig::Pull { token } => {
                if token.len() < 16 {
                    return Err("`target.token` must be at least 16 characters".into());
                }
                if self.status_token.is_some() {
                    return Err("a pull feed's status is read with its own `target.token`: leave out `status_token`".into());
                }
            }
        }
        if let TargetConfig::Webhook {
            receipt_key: Some(k),
            ..
        }
        | TargetConfig::CreditBatch {
            receipt_key: Some(k),
            ..
        } = &self.target
        {
            super::ReceiptKey::new(k)?;
        }
        if self.status_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err("`status_token` must be at least 16 characters".into());
        }
        if self.status_token.is_some() && self.department.is_none() {
            return Err("`status_token` needs the `department` whose URL it opens".into());
        }
        Ok(())
    }
}
