//! The market-entity credit library (市场主体信用信息库): one profile per
//! entity across every system the hub docks with.
//!
//! - Every canonical record that names a party is linked to an entity
//!   ([`link_of`]): by its Unified Social Credit Code when both GB 32100
//!   check characters hold, else (a natural person, or an individual
//!   business identified by its operator) by the pseudonym of the personal
//!   data rule (`pid:…`, never the ID number itself: [`crate::personal`]).
//! - A record with a party name and nothing that identifies it is *not*
//!   linked: it is proposed for a link by normalised name and address,
//!   with a confidence ([`confidence`]); an officer confirms or rejects on
//!   the desk, and the decision is an event on the links topic.
//! - Kafka is the source of truth. The index ([`index::EntityIndex`]) is a
//!   cache in redb, rebuilt from the topics; see its module for why.
//! - What an entity's records mean now — open items, restrictions, what the
//!   public window shows — is worked out at the moment of asking from what
//!   each record says ([`Facts`]), because periods end by themselves.

pub mod api;
pub mod index;
pub mod keeper;
pub mod report;

use crate::calendar::{Calendar, LegalLimit};
use crate::credit::{CreditPolicy, Publication};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `[entities]`: the entity library.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EntitiesConfig {
    /// The redb file of the local cache, relative to the deployment file;
    /// without one the index lives in memory and is rebuilt at each start.
    #[serde(default)]
    pub cache: Option<std::path::PathBuf>,
    /// Officers' link decisions (confirm / reject a proposed link): the
    /// index's memory of them, never deleted.
    #[serde(default = "default_links_topic")]
    pub links_topic: String,
    /// A name-only record is proposed for an entity when the confidence is
    /// at least this (0–1).
    #[serde(default = "default_propose_from")]
    pub propose_from: f64,
    /// `GET /api/entities/{code}/restrictions`, for joint restriction.
    #[serde(default)]
    pub restrictions: Option<RestrictionsConfig>,
    /// The public window (一窗发布): `/public/credit`.
    #[serde(default)]
    pub public: Option<PublicConfig>,
}

fn default_links_topic() -> String {
    "entity.links".into()
}
fn default_propose_from() -> f64 {
    0.6
}

/// Who may ask whether an entity is restricted, and what restricts.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RestrictionsConfig {
    /// Caller → bearer token (the approval system, other departments).
    pub tokens: BTreeMap<String, String>,
    /// Penalties that restrict for a period after their decision.
    #[serde(default)]
    pub penalties: Vec<PenaltyRestriction>,
}

/// "A penalty of one of these categories restricts for `within` from its
/// decision date."
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PenaltyRestriction {
    /// What the restriction is, in Chinese, as the caller shows it.
    pub label: String,
    /// 处罚类别 (行政处罚法 art. 9) that restrict.
    pub categories_any: Vec<String>,
    /// Only decisions in these industries (the decision's `industry`);
    /// empty: any. A restriction a law sets for one trade stays in it.
    #[serde(default)]
    pub industries_any: Vec<String>,
    /// How long from the decision date, and the legal basis.
    pub within: LegalLimit,
    /// What it does: `bar` (the law forbids, the default) or `consider`.
    #[serde(default = "bar")]
    pub effect: crate::credit::Effect,
    /// The permit types it concerns (`FOOD_PRODUCTION_OPERATION`); `*`
    /// for every one. A law's bar stays with the permit it names.
    pub permits: Vec<String>,
    /// Whether a credit repair of the decision lifts it (《信用修复管理办法》
    /// art. 3 lifts the related 失信惩戒措施). A bar a law attaches to the
    /// penalty itself (食品安全法 art. 135's five years) is not a credit
    /// measure: set `false` for it. Default `true`.
    #[serde(default = "lifted")]
    pub lifted_by_repair: bool,
}

fn lifted() -> bool {
    true
}

fn bar() -> crate::credit::Effect {
    crate::credit::Effect::Bar
}

/// The public window's limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PublicConfig {
    /// Requests per minute from one address (pages and API together).
    #[serde(default = "default_per_minute")]
    pub per_minute: u32,
    /// How long a browser or proxy may keep an answer (`Cache-Control:
    /// public, max-age`).
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: std::time::Duration,
    /// Items per page (at most 100).
    #[serde(default = "default_page_size")]
    pub page_size: usize,
}

fn default_per_minute() -> u32 {
    60
}
fn default_max_age() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}
fn default_page_size() -> usize {
    20
}

impl EntitiesConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.propose_from) {
            return Err("`propose_from` is a confidence between 0 and 1".into());
        }
        crate::bus::check_topic_name(&self.links_topic)
            .map_err(|why| format!("`links_topic`: {why}"))?;
        if let Some(r) = &self.restrictions {
            if r.tokens.is_empty() {
                return Err("[entities.restrictions] needs at least one caller in `tokens`".into());
            }
            for (who, t) in &r.tokens {
                if t.len() < 16 {
                    return Err(format!(
                        "[entities.restrictions] the token of `{who}` must be at least 16 characters"
                    ));
                }
            }
            for p in &r.penalties {
                if p.categories_any.is_empty() {
                    return Err(format!(
                        "[[entities.restrictions.penalties]] `{}` names no category",
                        p.label
                    ));
                }
                if p.within.basis.trim().is_empty() {
                    return Err(format!(
                        "[[entities.restrictions.penalties]] `{}` needs the legal basis of its period",
                        p.label
                    ));
                }
                if p.permits.is_empty() {
                    return Err(format!(
                        "[[entities.restrictions.penalties]] `{}` needs `permits`: the permit types it concerns, or [\"*\"]",
                        p.label
                    ));
                }
            }
        }
        if let Some(p) = &self.public
            && (p.per_minute == 0 || p.page_size == 0 || p.page_size > 100)
        {
            return Err(
                "[entities.public] `per_minute` must be at least 1 and `page_size` 1–100".into(),
            );
        }
        Ok(())
    }
}

/// How a record's party is identified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", content = "key", rename_all = "snake_case")]
pub enum Link {
    /// `uscc:` + the normalised code, valid by GB 32100.
    Code(String),
    /// `pid:` + the pseudonym of a resident ID number.
    Person(String),
    /// Only a name (and perhaps an address): proposed, not linked.
    NameOnly,
}

/// The kind of record, from its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Penalty,
    Licence,
    Hazard,
    UrbanCase,
    GridEvent,
    Referral,
    Listing,
    /// A credit repair result (信用修复): ends a decision's publication.
    Repair,
    /// A record of a schema the library has no reading of its own for,
    /// which names a party (a new system's): linked to its entity, shown
    /// on the profile, and nothing inferred from it.
    Other,
}

impl Kind {
    /// The kind of a canonical schema (`duijie.canonical.PenaltyDecision`):
    /// the schemas whose records the library reads for more than their
    /// party (open items, restrictions, the public window); any other
    /// schema that names a party is [`Kind::Other`]. Whether a schema
    /// names a party at all is its own ([`PartyAt::of`]), not this list's.
    pub fn of_schema(name: &str) -> Kind {
        match name.rsplit('.').next().unwrap_or_default() {
            "PenaltyDecision" => Kind::Penalty,
            "Licence" => Kind::Licence,
            "SafetyHazard" => Kind::Hazard,
            "UrbanCase" => Kind::UrbanCase,
            "GridEvent" => Kind::GridEvent,
            "ReferralEvent" => Kind::Referral,
            "CreditRepair" => Kind::Repair,
            _ => Kind::Other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Penalty => "行政处罚",
            Kind::Licence => "行政许可",
            Kind::Hazard => "安全隐患",
            Kind::UrbanCase => "城管案件",
            Kind::GridEvent => "网格事件",
            Kind::Referral => "涉嫌犯罪案件移送",
            Kind::Listing => "严重失信主体名单",
            Kind::Repair => "信用修复",
            Kind::Other => "其他记录",
        }
    }
}

/// The shared party record every canonical schema names its party with.
pub const PARTY_RECORD: &str = "duijie.canonical.Party";

/// Where a canonical record names its party, learnt from its schema: a
/// new system whose schema uses the shared `Party` record is linked to
/// its entities with no change to the library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartyAt {
    /// The JSON pointer of the field whose type is `Party` (`/party`,
    /// `/enterprise`, `/suspect`), nullable or not, at any depth; the first
    /// in the schema's order when there are several.
    Record(String),
    /// The party in flat fields at the top: `party_name` beside
    /// `party_credit_code` (the urban case, GB/T 30428.2's layout).
    Flat,
}

impl PartyAt {
    /// Where `schema` names its party; `None` when it names none.
    pub fn of(schema: &crate::schema::CanonicalSchema) -> Option<PartyAt> {
        fn find(nodes: &[(String, crate::schema::Node)], at: &str) -> Option<String> {
            nodes.iter().find_map(|(field, node)| match node {
                crate::schema::Node::Record { name, children, .. } => {
                    let here = format!("{at}/{field}");
                    if name == PARTY_RECORD {
                        Some(here)
                    } else {
                        find(children, &here)
                    }
                }
                crate::schema::Node::Leaf(_) => None,
            })
        }
        find(&schema.tree, "").map(PartyAt::Record).or_else(|| {
            (schema.leaf("party_name").is_some() && schema.leaf("party_credit_code").is_some())
                .then_some(PartyAt::Flat)
        })
    }

    /// The party a record names, as a `Party` record (`Null` when absent).
    fn party(&self, v: &Value) -> Value {
        match self {
            PartyAt::Record(pointer) => v.pointer(pointer).cloned().unwrap_or(Value::Null),
            PartyAt::Flat => {
                serde_json::json!({"name": v.get("party_name"), "credit_code": v.get("party_credit_code")})
            }
        }
    }
}

/// A canonical schema whose records name a party: how the library reads
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub kind: Kind,
    pub party: PartyAt,
}

/// Every schema of the set that names a party, by full name, with how the
/// library reads its records.
pub fn readings(schemas: &crate::schema::SchemaSet) -> BTreeMap<String, Reading> {
    schemas
        .iter()
        .filter_map(|s| {
            let party = PartyAt::of(s)?;
            Some((
                s.full_name.clone(),
                Reading {
                    kind: Kind::of_schema(&s.full_name),
                    party,
                },
            ))
        })
        .collect()
}

/// Where a record is on the bus and how it got there (its provenance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub pipeline: String,
    pub connector: String,
    pub origin: String,
    pub mapping: String,
    pub mapping_version: String,
    pub fetched_at: String,
}

impl Position {
    pub fn from_headers(
        topic: &str,
        partition: i32,
        offset: i64,
        h: &BTreeMap<String, String>,
    ) -> Self {
        let p = crate::bus::Provenance::from_headers(h);
        Self {
            topic: topic.to_owned(),
            partition,
            offset,
            fetched_at: p.fetched_at_text(),
            mapping_version: if p.mapping.is_empty() {
                String::new()
            } else {
                p.mapping_version.to_string()
            },
            pipeline: p.pipeline,
            connector: p.connector,
            origin: p.origin,
            mapping: p.mapping,
        }
    }
}

/// What a record says that matters for open items, restrictions and the
/// public window; evaluated against the time of asking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Facts {
    Penalty {
        decision_no: String,
        categories: Vec<String>,
        #[serde(default)]
        industry: String,
        decided_ms: Option<i64>,
        /// Revoked, confirmed unlawful or void (行政处罚法 art. 48).
        withdrawn: Option<String>,
        /// The record the credit-publication policy publishes (its `CF_*`
        /// fields, masked by the policy), and until when (CF_GSJZQ);
        /// `None` when the policy does not publish it.
        published: Option<Value>,
        public_until_ms: Option<i64>,
        /// The instrument and article of its publicity period.
        #[serde(default)]
        period_basis: String,
        /// Ended by a credit repair (终止公示), with why: marked when read
        /// with the entity's repairs ([`mark_repairs`]).
        #[serde(default)]
        repaired: Option<String>,
    },
    /// A credit repair result: the decision whose publication it ends.
    Repair {
        decision_no: String,
        /// PUBLICATION_ENDED or LISTING_REMOVED.
        what: String,
    },
    Licence {
        /// A commitment (告知承诺) not yet recorded as met, and its date.
        commitment_due_ms: Option<i64>,
    },
    Hazard {
        grade: String,
        open: bool,
        deadline_ms: Option<i64>,
    },
    Referral {
        open: bool,
    },
    Case {
        open: bool,
    },
    /// A record of a schema without a reading of its own ([`Kind::Other`]).
    Record,
    Listing {
        listed: bool,
        until_ms: Option<i64>,
        reasons: Vec<String>,
        bases: Vec<String>,
        removal: Option<String>,
        /// The measures the listing carries, each with its basis.
        #[serde(default)]
        measures: Vec<crate::credit::Measure>,
    },
}

/// One record in the index: its latest state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedRecord {
    /// `topic|key`: unique across the bus.
    pub reference: String,
    /// The canonical id (the Kafka key).
    pub id: String,
    pub kind: Kind,
    pub source_system: String,
    pub title: String,
    pub status: String,
    /// The record's own time: decision, report, inspection, event.
    pub at_ms: Option<i64>,
    pub party_name: Option<String>,
    pub party_type: Option<String>,
    /// The party's credit code as written (valid or not), for display.
    pub credit_code: Option<String>,
    /// A person's ID number as the record keeps it, masked (never in full).
    #[serde(default)]
    pub id_masked: Option<String>,
    pub address: Option<String>,
    pub link: Link,
    pub facts: Facts,
    pub position: Position,
}

impl IndexedRecord {
    /// The record as the library's local store keeps it: a full resident
    /// ID number anywhere in its free text (a title, an address, a name
    /// someone typed a number into) masked. The store keeps only what may
    /// rest in plain text — masked numbers and pseudonyms — so it needs no
    /// sealing (GB/T 39786-2021 level 3, data at rest; the bus's sealed
    /// topics are where full numbers rest).
    pub fn kept(mut self) -> Self {
        let mask = crate::ident::MaskPolicy::birth_date();
        for text in [
            Some(&mut self.title),
            Some(&mut self.status),
            Some(&mut self.id),
            self.party_name.as_mut(),
            self.address.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if !crate::personal::full_ids(text).is_empty() {
                *text = crate::personal::scrub_text(text, &mask);
            }
        }
        if let Facts::Penalty {
            published: Some(p), ..
        } = &mut self.facts
        {
            crate::personal::scrub(p, &mask);
        }
        self
    }

    /// The entity key this record identifies by itself, if any.
    pub fn own_key(&self) -> Option<&str> {
        match &self.link {
            Link::Code(k) | Link::Person(k) => Some(k),
            Link::NameOnly => None,
        }
    }

    /// An open item at `now`: what it is, until when, and its basis.
    pub fn open_item(&self, now: DateTime<Utc>) -> Option<OpenItem> {
        let now = now.timestamp_millis();
        let item = |label: &str, due: Option<i64>, basis: &str| OpenItem {
            label: label.to_owned(),
            due_ms: due,
            overdue: due.is_some_and(|d| d < now),
            basis: basis.to_owned(),
        };
        match &self.facts {
            Facts::Penalty {
                withdrawn: None,
                repaired: None,
                published: Some(_),
                public_until_ms,
                period_basis,
                ..
            } if public_until_ms.is_none_or(|u| now < u) => {
                Some(item("公示期内的行政处罚", *public_until_ms, period_basis))
            }
            Facts::Licence {
                commitment_due_ms: Some(due),
            } => Some(item(
                "告知承诺待核查",
                Some(*due),
                "《优化营商环境条例》第四十条：以告知承诺方式审批后，在规定期限内对承诺内容进行核查",
            )),
            Facts::Hazard {
                open: true,
                deadline_ms,
                grade,
            } => Some(item(
                if grade == "MAJOR" {
                    "未销号的重大事故隐患"
                } else {
                    "未销号的安全隐患"
                },
                *deadline_ms,
                "《安全生产法》第四十一条：事故隐患应当及时消除",
            )),
            Facts::Referral { open: true } => Some(item(
                "涉嫌犯罪案件移送办理中",
                None,
                "《行政执法机关移送涉嫌犯罪案件的规定》（国务院令第310号）",
            )),
            Facts::Listing {
                listed: true,
                until_ms,
                bases,
                ..
            } if until_ms.is_none_or(|u| now < u) => {
                Some(item("列入严重失信主体名单", *until_ms, &bases.join("；")))
            }
            _ => None,
        }
    }

    /// Whether the record is still open, for the open/closed chart.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        match &self.facts {
            Facts::Case { open } => *open,
            _ => self.open_item(now).is_some(),
        }
    }
}

/// An open item on an entity's profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenItem {
    pub label: String,
    pub due_ms: Option<i64>,
    pub overdue: bool,
    pub basis: String,
}

/// What the index keeps per entity, updated with each record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntitySummary {
    pub key: String,
    /// Names as written, with how many records use each.
    pub names: BTreeMap<String, u32>,
    pub credit_code: Option<String>,
    pub party_type: Option<String>,
    /// Source system → records.
    pub systems: BTreeMap<String, u32>,
    pub addresses: BTreeMap<String, u32>,
    /// Masked ID numbers its records carry (a person's), for proposals.
    #[serde(default)]
    pub ids_masked: BTreeMap<String, u32>,
    pub records: u32,
}

impl EntitySummary {
    /// The name most records use (ties: the first in order).
    pub fn name(&self) -> String {
        self.names
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(n, _)| n.clone())
            .unwrap_or_default()
    }

    pub(crate) fn add(&mut self, r: &IndexedRecord, sign: i64) {
        fn bump(m: &mut BTreeMap<String, u32>, k: &str, sign: i64) {
            let v = m.entry(k.to_owned()).or_default();
            *v = (i64::from(*v) + sign).max(0) as u32;
            if *v == 0 {
                m.remove(k);
            }
        }
        if let Some(n) = &r.party_name {
            bump(&mut self.names, n, sign);
        }
        if let Some(a) = &r.address {
            bump(&mut self.addresses, a, sign);
        }
        if let Some(i) = &r.id_masked {
            bump(&mut self.ids_masked, i, sign);
        }
        bump(&mut self.systems, &r.source_system, sign);
        self.records = (i64::from(self.records) + sign).max(0) as u32;
        if sign > 0 {
            if let Link::Code(k) = &r.link {
                self.credit_code = k.strip_prefix("uscc:").map(str::to_owned);
            }
            if r.party_type.is_some() {
                self.party_type.clone_from(&r.party_type);
            }
        }
    }
}

/// Full-width to half-width, brackets unified, spaces dropped, Latin upper
/// case: "宜昌华强建材有限公司（东山分公司）" and "宜昌华强建材有限公司(东山分公司)"
/// are one name.
pub fn normalise_name(name: &str) -> String {
    name.chars()
        .filter_map(|c| {
            let c = match c {
                '\u{3000}' => ' ',
                '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).expect("ASCII range"),
                c => c,
            };
            let c = match c {
                '【' | '〔' | '[' => '(',
                '】' | '〕' | ']' => ')',
                c => c,
            };
            (!c.is_whitespace()).then(|| c.to_ascii_uppercase())
        })
        .collect()
}

/// A name's core, for finding candidates: the normalised name without its
/// place prefix and its legal-form suffix ("宜昌华强建材有限公司" → "华强建材").
pub fn name_core(name: &str) -> String {
    let mut n = normalise_name(name);
    for prefix in [
        "湖北省宜昌市",
        "湖北省",
        "湖北",
        "宜昌市",
        "宜昌高新区",
        "宜昌",
    ] {
        if let Some(rest) = n.strip_prefix(prefix)
            && rest.chars().count() >= 4
        {
            n = rest.to_owned();
            break;
        }
    }
    for suffix in [
        "股份有限公司",
        "有限责任公司",
        "有限公司",
        "分公司",
        "公司",
        "个体经营部",
        "经营部",
        "厂",
        "店",
    ] {
        if let Some(rest) = n.strip_suffix(suffix)
            && rest.chars().count() >= 2
        {
            n = rest.to_owned();
            break;
        }
    }
    n
}

/// What a name-only record and a candidate entity have to compare.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clues<'a> {
    pub names: &'a [&'a str],
    pub addresses: &'a [&'a str],
    pub ids_masked: &'a [&'a str],
}

/// How likely a name-only record is about an entity: 0–1. The names count
/// for 80%, the best address match for 20%; without an address on either
/// side the name alone counts, at 90% of its similarity. For a person, a
/// masked ID number on both sides decides as much as the name: equal, half
/// the score is certain; different, it is most likely someone else of the
/// same name.
pub fn confidence(
    name: &str,
    address: Option<&str>,
    id_masked: Option<&str>,
    entity: Clues<'_>,
) -> f64 {
    let by_name = name_and_address(name, address, entity.names, entity.addresses);
    match id_masked {
        Some(id) if !entity.ids_masked.is_empty() => {
            if entity.ids_masked.contains(&id) {
                0.5 + 0.5 * by_name
            } else {
                0.3 * by_name
            }
        }
        _ => by_name,
    }
}

/// [`confidence`] of a record and an entity as the index keeps them.
pub fn confidence_with(r: &IndexedRecord, e: &EntitySummary) -> f64 {
    let names: Vec<&str> = e.names.keys().map(String::as_str).collect();
    let addresses: Vec<&str> = e.addresses.keys().map(String::as_str).collect();
    let ids: Vec<&str> = e.ids_masked.keys().map(String::as_str).collect();
    confidence(
        r.party_name.as_deref().unwrap_or_default(),
        r.address.as_deref(),
        r.id_masked.as_deref(),
        Clues {
            names: &names,
            addresses: &addresses,
            ids_masked: &ids,
        },
    )
}

fn name_and_address(
    name: &str,
    address: Option<&str>,
    entity_names: &[&str],
    entity_addresses: &[&str],
) -> f64 {
    let n = normalise_name(name);
    let name_sim = entity_names
        .iter()
        .map(|e| strsim::normalized_levenshtein(&n, &normalise_name(e)))
        .fold(0.0, f64::max);
    match address {
        Some(a) if !entity_addresses.is_empty() => {
            let a = normalise_name(a);
            let addr_sim = entity_addresses
                .iter()
                .map(|e| strsim::normalized_levenshtein(&a, &normalise_name(e)))
                .fold(0.0, f64::max);
            0.8 * name_sim + 0.2 * addr_sim
        }
        _ => 0.9 * name_sim,
    }
}

fn s<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    v.pointer(path)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|x| !x.is_empty())
}

fn i(v: &Value, path: &str) -> Option<i64> {
    v.pointer(path).and_then(Value::as_i64)
}

/// The link of a party (a canonical `Party` at `party`).
pub fn link_of(
    party: &Value,
    pseudonyms: &crate::personal::Pseudonyms,
) -> (Option<Link>, Option<String>) {
    let code = s(party, "/credit_code");
    if let Some(c) = code {
        let checked = crate::ident::check_uscc(c);
        if checked.invalid.is_none() {
            return (
                Some(Link::Code(format!("uscc:{}", checked.normalized))),
                Some(c.to_owned()),
            );
        }
    }
    // A person, or an individual business without a code identified by its
    // operator (as the credit platform identifies it).
    let person_id = s(party, "/id_number").or_else(|| {
        (s(party, "/type") == Some("INDIVIDUAL_BUSINESS"))
            .then(|| s(party, "/legal_rep_id_number"))
            .flatten()
    });
    if let Some(id) = person_id
        && crate::ident::check_resident_id(id).invalid.is_none()
    {
        return (
            Some(Link::Person(pseudonyms.of(id))),
            code.map(str::to_owned),
        );
    }
    let link = s(party, "/name").map(|_| Link::NameOnly);
    (link, code.map(str::to_owned))
}

/// Everything needed to read a record into the index.
#[derive(Debug)]
pub struct Reader<'a> {
    pub pseudonyms: &'a crate::personal::Pseudonyms,
    pub policy: &'a CreditPolicy,
    pub calendar: &'a Calendar,
}

impl Reader<'_> {
    /// A canonical record (as JSON) into the index's form; `None` when it
    /// names no party.
    ///
    /// Long because one arm per record kind, each reading its facts; the
    /// arms share the party, status and position read above them.
    pub fn read(
        &self,
        reading: &Reading,
        key: &str,
        v: &Value,
        at: Position,
    ) -> Option<IndexedRecord> {
        let kind = reading.kind;
        let party = reading.party.party(v);
        let (link, credit_code) = link_of(&party, self.pseudonyms);
        let link = match link {
            Some(l) => l,
            // A referral's later events may not name the suspect again: they
            // still move its state (the index keeps the suspect).
            None if kind == Kind::Referral => Link::NameOnly,
            None => return None,
        };
        let status = s(v, "/status")
            .or_else(|| s(v, "/state"))
            .or_else(|| s(v, "/action"))
            .or_else(|| s(v, "/event_type"))
            .unwrap_or_default()
            .to_owned();
        let (title, at_ms, facts, address) = match kind {
            Kind::Penalty => {
                let decision_no = s(v, "/decision_no").unwrap_or_default().to_owned();
                let publication = self.policy.publication(v);
                let (withdrawn, published, public_until, period_basis) = match publication {
                    Ok(Publication::Withdraw { reason, .. }) => {
                        (Some(reason), None, None, String::new())
                    }
                    Ok(Publication::Publish { record, assessment }) => (
                        None,
                        Some(record),
                        assessment.public_until,
                        assessment.period_basis,
                    ),
                    _ => (None, None, None, String::new()),
                };
                // CF_GSJZQ, as a date whatever the platform's date format.
                let public_until_ms = public_until
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .as_deref()
                    .and_then(crate::calendar::end_of_local_day_ms);
                (
                    format!("{decision_no} {}", s(v, "/violation").unwrap_or_default()),
                    i(v, "/decided_at"),
                    Facts::Penalty {
                        decision_no,
                        categories: crate::credit::categories_of(v),
                        industry: s(v, "/industry").unwrap_or("OTHER").to_owned(),
                        decided_ms: i(v, "/decided_at"),
                        withdrawn,
                        published,
                        public_until_ms,
                        period_basis,
                        repaired: None,
                    },
                    None,
                )
            }
            Kind::Repair => {
                let decision_no = s(v, "/decision_no").unwrap_or_default().to_owned();
                (
                    format!("{} {}", s(v, "/repair_no").unwrap_or_default(), decision_no),
                    i(v, "/repaired_at"),
                    Facts::Repair {
                        what: s(v, "/kind").unwrap_or_default().to_owned(),
                        decision_no,
                    },
                    None,
                )
            }
            Kind::Licence => {
                let due = (v.get("commitment") == Some(&Value::Bool(true))
                    && v.get("commitment_met") != Some(&Value::Bool(true))
                    && s(v, "/status") == Some("VALID"))
                .then(|| i(v, "/commitment_due_at"))
                .flatten();
                (
                    format!(
                        "{} {}",
                        s(v, "/licence_name").unwrap_or_default(),
                        s(v, "/decision_no").unwrap_or_default()
                    ),
                    i(v, "/decided_at"),
                    Facts::Licence {
                        commitment_due_ms: due,
                    },
                    None,
                )
            }
            Kind::Hazard => (
                format!(
                    "{} {}",
                    s(v, "/hazard_no").unwrap_or_default(),
                    s(v, "/description").unwrap_or_default()
                ),
                i(v, "/inspected_at").or_else(|| i(v, "/updated_at")),
                Facts::Hazard {
                    grade: s(v, "/grade").unwrap_or_default().to_owned(),
                    open: s(v, "/state") != Some("ACCEPTED"),
                    deadline_ms: i(v, "/rectify_deadline"),
                },
                s(v, "/location").map(str::to_owned),
            ),
            Kind::UrbanCase => (
                format!(
                    "{} {}",
                    s(v, "/case_no").unwrap_or_default(),
                    s(v, "/category_name").unwrap_or_default()
                ),
                i(v, "/reported_at"),
                Facts::Case {
                    open: !matches!(s(v, "/status"), Some("CLOSED" | "VOIDED")),
                },
                s(v, "/address").map(str::to_owned),
            ),
            Kind::GridEvent => (
                format!(
                    "{} {}",
                    s(v, "/event_no").unwrap_or_default(),
                    s(v, "/category_name").unwrap_or_default()
                ),
                i(v, "/reported_at"),
                Facts::Case {
                    open: s(v, "/status") != Some("CLOSED"),
                },
                s(v, "/location").map(str::to_owned),
            ),
            Kind::Referral => (
                format!(
                    "{} {}",
                    s(v, "/referral_no").unwrap_or_default(),
                    s(v, "/offence").unwrap_or_default()
                ),
                i(v, "/occurred_at"),
                Facts::Referral {
                    open: !crate::keepers::referral::closes(&status),
                },
                None,
            ),
            // Nothing is read into a record the library has no reading
            // for: it is on the profile, under its key.
            Kind::Other => (key.to_owned(), None, Facts::Record, None),
            Kind::Listing => return None,
        };
        let key = match kind {
            // A referral's events share its number: one record per referral.
            Kind::Referral => s(v, "/referral_no").unwrap_or(key),
            _ => key,
        };
        Some(IndexedRecord {
            reference: format!("{}|{key}", at.topic),
            id: key.to_owned(),
            kind,
            source_system: s(v, "/source_system").unwrap_or_default().to_owned(),
            title: title.trim().to_owned(),
            status,
            at_ms,
            party_name: s(&party, "/name").map(str::to_owned),
            party_type: s(&party, "/type").map(str::to_owned),
            credit_code,
            id_masked: s(&party, "/id_number_masked")
                .or_else(|| {
                    s(&party, "/legal_rep_id_number_masked")
                        .filter(|_| s(&party, "/type") == Some("INDIVIDUAL_BUSINESS"))
                })
                .map(str::to_owned),
            address,
            link,
            facts,
            position: at,
        })
    }

    /// A blacklist entry (ADD / REMOVE, JSON, keyed by entity).
    pub fn read_listing(&self, key: &str, v: &Value, at: Position) -> Option<IndexedRecord> {
        let entity = s(v, "/entity").unwrap_or(key).to_owned();
        let listed = s(v, "/action") == Some("ADD");
        let strings = |p: &str, f: &str| -> Vec<String> {
            v.pointer(p)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| {
                            if f.is_empty() {
                                x.as_str()
                            } else {
                                x.get(f).and_then(Value::as_str)
                            }
                        })
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let time_ms = |p: &str| {
            v.pointer(p).and_then(|t| {
                t.as_i64().or_else(|| {
                    t.as_str()
                        .and_then(|x| DateTime::parse_from_rfc3339(x).ok())
                        .map(|x| x.timestamp_millis())
                })
            })
        };
        let link = if crate::personal::is_person_key(&entity) {
            Link::Person(entity.clone())
        } else {
            Link::Code(entity.clone())
        };
        Some(IndexedRecord {
            reference: format!("{}|{key}", at.topic),
            id: s(v, "/id").unwrap_or(key).to_owned(),
            kind: Kind::Listing,
            source_system: "credit".into(),
            title: s(v, "/message").unwrap_or_default().to_owned(),
            status: s(v, "/action").unwrap_or_default().to_owned(),
            at_ms: time_ms("/decided_at").or_else(|| time_ms("/updated_at")),
            party_name: s(v, "/name").map(str::to_owned),
            party_type: None,
            credit_code: s(v, "/credit_code").map(str::to_owned),
            id_masked: None,
            address: None,
            link,
            facts: Facts::Listing {
                listed,
                until_ms: time_ms("/listed_until"),
                reasons: strings("/reasons", ""),
                bases: strings("/criteria", "basis"),
                removal: s(v, "/removal_reason").map(str::to_owned),
                measures: v
                    .get("measures")
                    .cloned()
                    .and_then(|m| serde_json::from_value(m).ok())
                    .unwrap_or_default(),
            },
            position: at,
        })
    }
}

/// A measure that applies to an entity: what it is, what it does, to which
/// permits, why, on what basis, until when.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restriction {
    /// `blacklist` or `penalty`: what it follows from.
    pub kind: &'static str,
    pub label: String,
    pub effect: crate::credit::Effect,
    /// The permit types it concerns (`*`: every one).
    pub scope: Vec<String>,
    pub reason: String,
    pub basis: String,
    /// The last moment (RFC 3339, Asia/Shanghai) the restriction holds;
    /// `null` when the calendar cannot tell yet (said in `until_note`).
    pub until: Option<String>,
    pub until_note: Option<String>,
    pub source: String,
}

/// The measures that apply to an entity at `now`, from its records: those
/// a decided listing carries, and those the law attaches to a penalty;
/// with `permit`, only those that concern it.
pub fn restrictions(
    records: &[IndexedRecord],
    config: &RestrictionsConfig,
    calendar: &Calendar,
    now: DateTime<Utc>,
    permit: Option<&str>,
) -> Vec<Restriction> {
    let mut out = Vec::new();
    let now_ms = now.timestamp_millis();
    for r in records {
        match &r.facts {
            Facts::Listing {
                listed: true,
                until_ms,
                reasons,
                bases,
                measures,
                ..
            } if until_ms.is_none_or(|u| now_ms < u) => {
                for m in measures.iter().filter(|m| m.concerns(permit)) {
                    out.push(Restriction {
                        kind: "blacklist",
                        label: m.label.clone(),
                        effect: m.effect,
                        scope: m.permits.clone(),
                        reason: format!("列入严重失信主体名单：{}", reasons.join("；")),
                        basis: format!("{}（名单认定依据：{}）", m.basis, bases.join("；")),
                        until: until_ms
                            .and_then(DateTime::from_timestamp_millis)
                            .map(crate::calendar::local_rfc3339),
                        until_note: None,
                        source: r.id.clone(),
                    });
                }
            }
            Facts::Penalty {
                decision_no,
                categories,
                industry,
                decided_ms: Some(decided),
                withdrawn: None,
                repaired,
                ..
            } => {
                for rule in &config.penalties {
                    if repaired.is_some() && rule.lifted_by_repair {
                        continue;
                    }
                    if permit.is_some_and(|p| !rule.permits.iter().any(|x| x == "*" || x == p)) {
                        continue;
                    }
                    if !categories.iter().any(|c| rule.categories_any.contains(c))
                        || !(rule.industries_any.is_empty()
                            || rule.industries_any.contains(industry))
                    {
                        continue;
                    }
                    let Some(start) = DateTime::from_timestamp_millis(*decided) else {
                        continue;
                    };
                    let (until, note, holds) = match calendar.due(start, rule.within.limit) {
                        Ok(end) => (Some(crate::calendar::local_rfc3339(end)), None, now < end),
                        // Without the calendar of the end's year the end is
                        // unknown; the restriction is not lifted by guess.
                        Err(e) => (None, Some(format!("期限无法计算：{e}")), true),
                    };
                    if holds {
                        out.push(Restriction {
                            kind: "penalty",
                            label: rule.label.clone(),
                            effect: rule.effect,
                            scope: rule.permits.clone(),
                            reason: format!(
                                "{}：{decision_no}（{}）",
                                rule.label,
                                categories.join("、")
                            ),
                            basis: rule.within.basis.clone(),
                            until,
                            until_note: note,
                            source: r.id.clone(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Whether a record can ever be on the public window: a penalty the policy
/// publishes and nobody withdrew, a listing.
pub fn may_be_public(r: &IndexedRecord) -> bool {
    matches!(
        &r.facts,
        Facts::Penalty {
            withdrawn: None,
            published: Some(_),
            ..
        } | Facts::Listing { listed: true, .. }
            // Repairs and withdrawals are read with the public records:
            // they take the decisions they end off the window, whatever
            // record id carries them (mark_repairs).
            | Facts::Repair { .. }
            | Facts::Penalty {
                withdrawn: Some(_),
                ..
            }
    )
}

/// Marks the penalties of `records` whose publication a repair among them
/// ended (by decision number): they leave the public window, the open
/// items, and the restrictions a repair lifts (《信用修复管理办法》
/// art. 3). A decision revoked, or confirmed unlawful or void, by a record
/// of its own (another record id, the same decision number) is withdrawn
/// too (行政处罚法 art. 48). Nothing is inferred from a missing record:
/// only a repair result or a withdrawal marks.
pub fn mark_repairs(records: &mut [IndexedRecord]) {
    let withdrawn: BTreeMap<String, String> = records
        .iter()
        .filter_map(|r| match &r.facts {
            Facts::Penalty {
                decision_no,
                withdrawn: Some(why),
                ..
            } => Some((decision_no.clone(), why.clone())),
            _ => None,
        })
        .collect();
    for r in records.iter_mut() {
        if let Facts::Penalty {
            decision_no,
            withdrawn: w @ None,
            ..
        } = &mut r.facts
            && let Some(why) = withdrawn.get(decision_no.as_str())
        {
            *w = Some(why.clone());
        }
    }
    let repaired: BTreeMap<String, String> = records
        .iter()
        .filter_map(|r| match &r.facts {
            Facts::Repair { decision_no, what } if what == "PUBLICATION_ENDED" => Some((
                decision_no.clone(),
                format!("已完成信用修复，终止公示（{}）", r.title),
            )),
            _ => None,
        })
        .collect();
    if repaired.is_empty() {
        return;
    }
    for r in records {
        if let Facts::Penalty {
            decision_no,
            repaired: mark,
            ..
        } = &mut r.facts
            && let Some(why) = repaired.get(decision_no.as_str())
        {
            *mark = Some(why.clone());
        }
    }
}

/// One item of the public window: what the rules allow publishing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicItem {
    pub kind: &'static str,
    pub kind_label: &'static str,
    pub name: String,
    /// The credit code, or the masked ID number for a person (as the
    /// credit-publication policy masks it); never a full ID number.
    pub code: String,
    pub title: String,
    pub content: String,
    pub authority: String,
    pub decided: String,
    pub until: String,
    pub basis: String,
}

/// What the public window shows of a record at `now`: a penalty decision
/// the policy publishes, within its publicity period and not withdrawn; a
/// decided listing not yet removed.
pub fn public_item(r: &IndexedRecord, now: DateTime<Utc>) -> Option<PublicItem> {
    let now_ms = now.timestamp_millis();
    let day = |ms: Option<i64>| {
        ms.and_then(DateTime::from_timestamp_millis)
            .map(|t| {
                t.with_timezone(&chrono_tz::Asia::Shanghai)
                    .format("%Y-%m-%d")
                    .to_string()
            })
            .unwrap_or_default()
    };
    match &r.facts {
        Facts::Penalty {
            withdrawn: None,
            repaired: None,
            published: Some(p),
            public_until_ms,
            decision_no,
            ..
        } if public_until_ms.is_none_or(|u| now_ms < u) => {
            let f = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
            let code = [f("CF_XDR_SHXYM"), f("CF_XDR_ZJHM")]
                .into_iter()
                .find(|c| !c.is_empty())
                .unwrap_or_default();
            Some(PublicItem {
                kind: "penalty",
                kind_label: "行政处罚",
                name: f("CF_XDR_MC").to_owned(),
                code: code.to_owned(),
                title: decision_no.clone(),
                content: format!("{}；{}", f("CF_SY"), f("CF_NR")),
                authority: f("CF_CFJG").to_owned(),
                decided: f("CF_JDRQ").to_owned(),
                until: f("CF_GSJZQ").to_owned(),
                basis: f("CF_YJ").to_owned(),
            })
        }
        Facts::Listing {
            listed: true,
            until_ms,
            reasons,
            bases,
            ..
        } if until_ms.is_none_or(|u| now_ms < u) => Some(PublicItem {
            kind: "blacklist",
            kind_label: "严重失信主体名单",
            name: r.party_name.clone().unwrap_or_default(),
            code: r.credit_code.clone().unwrap_or_default(),
            title: "列入严重失信主体名单".into(),
            content: reasons.join("；"),
            authority: String::new(),
            decided: day(r.at_ms),
            until: day(*until_ms),
            basis: bases.join("；"),
        }),
        _ => None,
    }
}

/// `[entities]`: its own checks, a pseudonym key (natural persons are
/// linked by it), `[http]` for the restrictions API and the public window;
/// the cache's path is relative to the deployment file.
impl crate::section::Section for EntitiesConfig {
    fn problems(
        &self,
        name: &str,
        around: &crate::section::Around<'_>,
    ) -> Vec<crate::section::Problem> {
        let mut out: Vec<_> = crate::section::own(name, self.validate())
            .into_iter()
            .collect();
        if around.pseudonym_key.is_none() {
            out.extend(around.pseudonym_problem("[entities] links natural persons by pseudonym"));
        }
        if (self.restrictions.is_some() || self.public.is_some()) && !around.http {
            out.push(crate::section::Problem::at(
                name,
                "the restrictions API and the public window are served by the hub: add [http] listen",
            ));
        }
        out
    }

    /// The officers' link decisions: the index's memory of them, kept
    /// whole.
    fn topics(&self) -> Vec<crate::bus::TopicSpec> {
        vec![crate::bus::TopicSpec::single(
            self.links_topic.clone(),
            crate::bus::Cleanup::Keep,
        )]
    }

    fn resolve(&mut self, base: &std::path::Path) {
        self.cache = self.cache.take().map(|c| base.join(c));
    }
}

#[cfg(test)]
mod tests;
