//! The credit platform's penalty publication record (行政处罚, 双公示), in
//! the `CF_*` field layout, built from a canonical PenaltyDecision.
//!
//! - Fines and confiscations go in 万元 (10,000 yuan), computed with
//!   decimal arithmetic: 罚款2000元 is exactly `0.2`, never `0.19999…`.
//! - The party type decides which identity fields are filled; a natural
//!   person's ID number is masked by the destination's policy; an 个体工商户
//!   without a credit code carries the layout's placeholder
//!   (`00000000000000000X`) and its operator as legal representative.
//! - Publicity periods are dated. Decisions made from 2026-04-01 follow
//!   《信用修复管理办法》 (国家发展改革委令2025年第36号, in force 2026-04-01; it
//!   repealed order 58): every decision has a severity class (失信程度,
//!   [`Severity`]), and the class sets the period, counted from the decision
//!   date (自…认定之日起): 轻微 not published (at most 3 months where a sector
//!   authority requires it), 一般 3 months to 1 year, 严重 1 to 3 years.
//!   `CF_GSJZQ` is the class maximum, when publication stops by itself; the
//!   minimum is the earliest a credit repair (信用修复) may end it. Decisions
//!   made before follow NDRC order 58 (2023): 3 months to 3 years, at least
//!   1 year in food, drugs, special equipment, safety production and fire
//!   safety ([`Order58`]); whether they are cut to order 36's shorter maxima
//!   is a setting ([`CreditPolicy::shorten_earlier`], `[check]`).
//! - The class comes from the case system (`credit_severity`), or an
//!   officer, or one of the configured rules that restate what the measure
//!   itself classifies (简易程序, 警告 or 通报批评 alone → 轻微; 吊销许可证件,
//!   责令关闭, 限制从业 → 严重). Nothing else is guessed: whether a fine is
//!   较大 or 巨额 is the sector's standard, so such a decision is held
//!   ([`Publication::Held`]) until its class is given.
//! - A decision revoked, confirmed unlawful (确认违法) or confirmed void
//!   (确认无效) is withdrawn with its reason (行政处罚法 art. 48); a changed one
//!   is republished with a remark.

use crate::ident::MaskPolicy;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::str::FromStr;

/// Yuan (as written in a record: `2000`, `1,234.50`, `３０００元`) to 万元,
/// exactly, without trailing zeros.
pub fn yuan_to_wan(text: &str) -> Result<Decimal, String> {
    let cleaned: String = crate::text::to_halfwidth(text)
        .chars()
        .filter(|c| !matches!(c, ',' | '，' | ' ' | '元' | '\u{3000}'))
        .collect();
    let yuan =
        Decimal::from_str(&cleaned).map_err(|_| format!("`{text}` is not an amount of yuan"))?;
    if yuan.is_sign_negative() {
        return Err(format!("`{text}` is negative"));
    }
    Ok((yuan / Decimal::from(10_000)).normalize())
}

/// How long a decision stays public.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    pub months: u32,
}

impl Period {
    /// As bureau staff read it: `3个月`, `1年`.
    pub fn label(self) -> String {
        if self.months > 0 && self.months % 12 == 0 {
            format!("{}年", self.months / 12)
        } else {
            format!("{}个月", self.months)
        }
    }

    /// The corresponding day `self` after `from` (民法典 art. 202: a period
    /// in months or years ends on the corresponding day; the last day of a
    /// shorter month where there is none).
    pub fn after(self, from: NaiveDate) -> Result<NaiveDate, String> {
        from.checked_add_months(chrono::Months::new(self.months))
            .ok_or_else(|| format!("{} after {from} is out of range", self.label()))
    }
}

impl FromStr for Period {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (n, unit) = s
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("`{s}` is not a period such as `3 months` or `1 year`"))?;
        let n: u32 = n.parse().map_err(|_| format!("`{n}` is not a number"))?;
        let months = match unit.trim() {
            "month" | "months" | "个月" => n,
            "year" | "years" | "年" => n * 12,
            other => return Err(format!("unknown unit `{other}`: use months or years")),
        };
        Ok(Period { months })
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A decision's severity class (失信程度) under 《信用修复管理办法》
/// (国家发展改革委令2025年第36号): it decides whether and how long the decision
/// is public.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    /// 轻微
    Light,
    /// 一般
    General,
    /// 严重
    Serious,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Severity::Light, Severity::General, Severity::Serious];

    /// The canonical code (`LIGHT`, `GENERAL`, `SERIOUS`).
    pub fn code(self) -> &'static str {
        match self {
            Severity::Light => "LIGHT",
            Severity::General => "GENERAL",
            Severity::Serious => "SERIOUS",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Severity::Light => "轻微",
            Severity::General => "一般",
            Severity::Serious => "严重",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// One class's publicity period.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClassPeriod {
    /// Whether decisions of this class are published at all (轻微: not in
    /// principle; a sector authority that requires it sets `true`).
    #[serde(default = "yes")]
    pub publish: bool,
    /// The minimum: the earliest date a repair may end the publication
    /// (none for 轻微: repair once the legal duty is done).
    #[serde(default)]
    pub min: Option<Period>,
    /// The maximum: `CF_GSJZQ`, when publication stops by itself.
    pub max: Period,
    /// The instrument and article it comes from.
    pub basis: String,
}

/// The classes' periods and the day from which they apply (order 36).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Classes {
    /// The first decision date these periods govern (order 36 in force).
    #[serde(default = "order36_in_force")]
    pub from: NaiveDate,
    #[serde(default = "light_period")]
    pub light: ClassPeriod,
    #[serde(default = "general_period")]
    pub general: ClassPeriod,
    #[serde(default = "serious_period")]
    pub serious: ClassPeriod,
}

const ORDER36: &str =
    "《信用修复管理办法》（国家发展改革委令2025年第36号）第二章（失信信息分类与公示期限）";

fn order36_in_force() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 4, 1).expect("a date")
}

fn light_period() -> ClassPeriod {
    ClassPeriod {
        publish: false,
        min: None,
        max: Period { months: 3 },
        basis: format!(
            "{ORDER36}：轻微失信信息原则上不予公示；行业主管部门认为确有必要公示的，公示期最长不超过3个月"
        ),
    }
}

fn general_period() -> ClassPeriod {
    ClassPeriod {
        publish: true,
        min: Some(Period { months: 3 }),
        max: Period { months: 12 },
        basis: format!("{ORDER36}：一般失信信息最短公示期3个月，最长1年"),
    }
}

fn serious_period() -> ClassPeriod {
    ClassPeriod {
        publish: true,
        min: Some(Period { months: 12 }),
        max: Period { months: 36 },
        basis: format!("{ORDER36}：严重失信信息最短公示期1年，最长3年"),
    }
}

impl Default for Classes {
    fn default() -> Self {
        Self {
            from: order36_in_force(),
            light: light_period(),
            general: general_period(),
            serious: serious_period(),
        }
    }
}

impl Classes {
    pub fn of(&self, s: Severity) -> &ClassPeriod {
        match s {
            Severity::Light => &self.light,
            Severity::General => &self.general,
            Severity::Serious => &self.serious,
        }
    }

    /// The measure's own bounds: a setting outside them is refused.
    fn validate(&self) -> Result<(), String> {
        let m = |n| Period { months: n };
        // (class, field name, lowest minimum, highest maximum)
        for (s, low, high) in [
            (Severity::Light, m(0), m(3)),
            (Severity::General, m(3), m(12)),
            (Severity::Serious, m(12), m(36)),
        ] {
            let c = self.of(s);
            let at = format!("`classes.{}`", s.code().to_lowercase());
            if c.basis.trim().is_empty() {
                return Err(format!(
                    "{at}: `basis` must name the instrument and article"
                ));
            }
            if c.max > high {
                return Err(format!(
                    "{at}: `max` {} is longer than order 36 allows for {} ({})",
                    c.max.label(),
                    s.label(),
                    high.label()
                ));
            }
            let min = c.min.unwrap_or(m(0));
            if min < low && s != Severity::Light {
                return Err(format!(
                    "{at}: `min` {} is shorter than order 36's minimum for {} ({})",
                    min.label(),
                    s.label(),
                    low.label()
                ));
            }
            if min > c.max {
                return Err(format!("{at}: `min` is longer than `max`"));
            }
        }
        Ok(())
    }
}

/// A rule that restates a class the measure itself gives (简易程序, 警告 or
/// 通报批评 alone → 轻微; 吊销许可证件, 责令关闭, 限制从业 → 严重). Every given
/// test must hold. When matching rules disagree, the decision is held.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClassRule {
    /// A key, shown as where a class came from: `simple_procedure`.
    pub name: String,
    pub severity: Severity,
    /// The instrument and article the class comes from.
    pub basis: String,
    /// The decision was made in this procedure (`SIMPLE`, `ORDINARY`).
    #[serde(default)]
    pub procedure: Option<String>,
    /// Every penalty category of the decision is one of these.
    #[serde(default)]
    pub categories_only: Vec<String>,
    /// Some penalty category of the decision is one of these.
    #[serde(default)]
    pub categories_any: Vec<String>,
}

impl ClassRule {
    fn matches(&self, procedure: Option<&str>, categories: &[String]) -> bool {
        self.procedure
            .as_deref()
            .is_none_or(|p| procedure == Some(p))
            && (self.categories_only.is_empty()
                || (!categories.is_empty()
                    && categories.iter().all(|c| self.categories_only.contains(c))))
            && (self.categories_any.is_empty()
                || categories.iter().any(|c| self.categories_any.contains(c)))
    }
}

fn default_class_rules() -> Vec<ClassRule> {
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    vec![
        ClassRule {
            name: "simple_procedure".into(),
            severity: Severity::Light,
            basis: format!("{ORDER36}：以简易程序作出的行政处罚属轻微失信信息"),
            procedure: Some("SIMPLE".into()),
            categories_only: vec![],
            categories_any: vec![],
        },
        ClassRule {
            name: "warning_or_notice_only".into(),
            severity: Severity::Light,
            basis: format!("{ORDER36}：警告、通报批评属轻微失信信息"),
            procedure: None,
            categories_only: owned(&["警告", "通报批评"]),
            categories_any: vec![],
        },
        ClassRule {
            name: "revocation_closure_bar".into(),
            severity: Severity::Serious,
            basis: format!("{ORDER36}：吊销许可证件、责令关闭、限制从业属严重失信信息"),
            procedure: None,
            categories_only: vec![],
            categories_any: owned(&["吊销许可证件", "责令关闭", "限制从业"]),
        },
    ]
}

/// NDRC order 58 (2023, 《失信行为纠正后的信用信息修复管理办法（试行）》):
/// the periods of decisions made before order 36 applied.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Order58 {
    /// The minimum when no rule gives a longer one (3 months).
    #[serde(default = "three_months")]
    pub min: Period,
    /// The maximum, `CF_GSJZQ` (3 years).
    #[serde(default = "three_years")]
    pub max: Period,
    /// Longer minimums; the longest matching one decides (several penalty
    /// types: the longest period).
    #[serde(default = "default_order58_rules")]
    pub longer: Vec<PublicityRule>,
    /// Publish decisions whose only penalty is a warning (警告 / 通报批评).
    #[serde(default)]
    pub publish_warning_only: bool,
    #[serde(default = "order58_basis")]
    pub basis: String,
}

fn three_months() -> Period {
    Period { months: 3 }
}
fn three_years() -> Period {
    Period { months: 36 }
}
fn order58_basis() -> String {
    "《失信行为纠正后的信用信息修复管理办法（试行）》（国家发展改革委令2023年第58号）公示期限条款（条号待法制机构核对）：行政处罚信息最短公示期3个月，最长3年".into()
}

impl Default for Order58 {
    fn default() -> Self {
        Self {
            min: three_months(),
            max: three_years(),
            longer: default_order58_rules(),
            publish_warning_only: false,
            basis: order58_basis(),
        }
    }
}

/// A longer minimum under order 58, by penalty category or industry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PublicityRule {
    /// Matches when the decision has any of these penalty categories.
    #[serde(default)]
    pub categories_any: Vec<String>,
    /// Matches when the decision's industry is one of these.
    #[serde(default)]
    pub industries_any: Vec<String>,
    pub period: Period,
    #[serde(default)]
    pub basis: String,
}

impl PublicityRule {
    fn matches(&self, categories: &[String], industry: &str) -> bool {
        let cat = self.categories_any.is_empty()
            || categories.iter().any(|c| self.categories_any.contains(c));
        let ind =
            self.industries_any.is_empty() || self.industries_any.iter().any(|i| i == industry);
        cat && ind
    }
}

fn default_order58_rules() -> Vec<PublicityRule> {
    vec![PublicityRule {
        categories_any: vec![],
        industries_any: [
            "FOOD_SAFETY",
            "DRUGS",
            "SPECIAL_EQUIPMENT",
            "SAFETY_PRODUCTION",
            "FIRE_SAFETY",
        ]
        .map(String::from)
        .to_vec(),
        period: Period { months: 12 },
        basis: "国家发展改革委令2023年第58号公示期限条款（条号待核）：食品、药品、特种设备、安全生产、消防领域行政处罚信息最短公示期1年".into(),
    }]
}

/// What an 个体工商户 without a credit code is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithoutCode {
    /// `CF_XDR_SHXYM` is the layout's placeholder; the operator (经营者)
    /// is the legal representative (`CF_FRDB`, `CF_FR_ZJLX`, `CF_FR_ZJHM`).
    #[default]
    Placeholder,
    /// The operator's ID number, masked, identifies the party
    /// (`CF_XDR_ZJLX`, `CF_XDR_ZJHM`).
    OperatorId,
}

/// How the platform writes dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum DateFormat {
    #[default]
    #[serde(rename = "yyyy-MM-dd")]
    Dashes,
    #[serde(rename = "yyyy/MM/dd")]
    Slashes,
}

impl DateFormat {
    pub fn write(self, d: NaiveDate) -> String {
        match self {
            DateFormat::Dashes => d.format("%Y-%m-%d").to_string(),
            DateFormat::Slashes => d.format("%Y/%m/%d").to_string(),
        }
    }
}

/// The publication policy of the credit platform.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreditPolicy {
    /// Order 36's classes and periods.
    #[serde(default)]
    pub classes: Classes,
    /// Rules that restate what order 36 itself classifies; a decision no
    /// rule classifies and whose source gives no class is held.
    #[serde(default = "default_class_rules")]
    pub classify: Vec<ClassRule>,
    /// Order 58, for decisions made before `classes.from`.
    #[serde(default)]
    pub order58: Order58,
    /// Whether decisions made before `classes.from` are cut to order 36's
    /// (shorter) maxima once classified. `[check]`: the texts found do not
    /// say; the default is the reading that favours the party, as 从旧兼从轻
    /// does for penalties (行政处罚法 art. 37).
    #[serde(default = "yes")]
    pub shorten_earlier: bool,
    /// How a natural person's ID number is masked.
    #[serde(default = "MaskPolicy::birth_date")]
    pub mask: MaskPolicy,
    /// The platform's code of each ID type (`CF_XDR_ZJLX`, `CF_FR_ZJLX`),
    /// by the canonical type (`mappings/codes/id_type.yaml`). The default
    /// follows the 信用中国 双公示 layout (001 身份证 … 005 外国人永久居留
    /// 身份证); a platform that codes them otherwise sets its own.
    #[serde(default = "default_id_type_codes")]
    pub id_type_codes: BTreeMap<String, String>,
    /// An 个体工商户 without a credit code (default: the placeholder).
    #[serde(default)]
    pub without_code: WithoutCode,
    /// The placeholder credit code (`00000000000000000X`: 17 zeros and X).
    #[serde(default = "default_placeholder")]
    pub placeholder_code: String,
    /// `CF_YXQ` when the case system gives no validity of its own (a
    /// platform's long-term value such as `2099-12-31`); empty otherwise.
    #[serde(default)]
    pub long_term_validity: Option<NaiveDate>,
    /// How dates are written (`yyyy-MM-dd` or `yyyy/MM/dd`).
    #[serde(default)]
    pub date_format: DateFormat,
    /// Fields the platform requires: a record with one of them empty is
    /// refused before sending, with the field named.
    #[serde(default = "default_required")]
    pub required: Vec<String>,
    /// Whether a decision is published only once the case system records
    /// it served (送达, 行政处罚法 art. 61): one without `served_at` is held.
    /// For case systems that send their procedure's dates; off by default,
    /// since a source that sends none would have every decision held.
    #[serde(default)]
    pub hold_until_served: bool,
}

fn default_placeholder() -> String {
    "00000000000000000X".into()
}

fn default_required() -> Vec<String> {
    [
        "CF_WSH",
        "CF_XDR_MC",
        "CF_XDR_LB",
        "CF_CFLB",
        "CF_JDRQ",
        "CF_GSJZQ",
        "CF_CFJG",
        "CF_CFJGDM",
    ]
    .map(String::from)
    .to_vec()
}

fn default_id_type_codes() -> BTreeMap<String, String> {
    [
        ("RESIDENT_ID", "001"),
        ("PASSPORT", "002"),
        ("HK_MACAO_PERMIT", "003"),
        ("TAIWAN_PERMIT", "004"),
        ("FOREIGN_PERMANENT_RESIDENT", "005"),
        // As records mapped before the id_type code table carry them.
        ("身份证", "001"),
        ("居民身份证", "001"),
        ("护照", "002"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into()
}

fn yes() -> bool {
    true
}

impl Default for CreditPolicy {
    fn default() -> Self {
        Self {
            classes: Classes::default(),
            classify: default_class_rules(),
            order58: Order58::default(),
            shorten_earlier: true,
            mask: MaskPolicy::birth_date(),
            id_type_codes: default_id_type_codes(),
            without_code: WithoutCode::default(),
            placeholder_code: default_placeholder(),
            long_term_validity: None,
            date_format: DateFormat::default(),
            required: default_required(),
            hold_until_served: false,
        }
    }
}

/// A decision's class and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classified {
    pub severity: Severity,
    /// 案件系统 / 规则 NAME / 执法人员 NAME, with the reason or basis.
    pub from: String,
}

/// What the policy says of a decision: its class (if known), the rule for
/// its period, and the period's ends. `deliveries preview` prints it per record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    pub decided: NaiveDate,
    pub class: Option<Classified>,
    /// The instrument and article that give the period.
    pub period_basis: String,
    /// `CF_GSJZQ`: when publication stops by itself.
    pub public_until: Option<NaiveDate>,
    /// The earliest date a repair may end the publication.
    pub repair_from: Option<NaiveDate>,
}

/// What the platform is to receive for one decision version.
#[derive(Debug, Clone, PartialEq)]
pub enum Publication {
    /// Publish (or republish, for a change) this `CF_*` record.
    Publish {
        record: Value,
        assessment: Assessment,
    },
    /// Withdraw the publication of this decision number.
    Withdraw { decision_no: String, reason: String },
    /// Not published, by law or policy.
    NotPublished {
        reason: String,
        assessment: Assessment,
    },
    /// Not sent yet: the hub cannot tell the class; an officer must give it
    /// (or the case system send it). The publication clock keeps running.
    Held {
        reason: String,
        assessment: Assessment,
    },
}

impl Publication {
    pub fn assessment(&self) -> Option<&Assessment> {
        match self {
            Publication::Publish { assessment, .. }
            | Publication::NotPublished { assessment, .. }
            | Publication::Held { assessment, .. } => Some(assessment),
            Publication::Withdraw { .. } => None,
        }
    }
}

fn str_of<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    v.pointer(path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The decision's penalty categories (处罚类别).
pub fn categories_of(d: &Value) -> Vec<String> {
    d.pointer("/categories")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The local (Asia/Shanghai) date of an epoch-milliseconds field.
use crate::calendar::local_date;

/// The decision date (local) of a canonical decision.
pub fn decided_on(d: &Value) -> Option<NaiveDate> {
    d.pointer("/decided_at")
        .and_then(Value::as_i64)
        .and_then(local_date)
}

impl CreditPolicy {
    /// Refuses a policy outside order 36's bounds or with a rule that has
    /// no basis or no test, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        self.classes.validate()?;
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.classify.iter().enumerate() {
            let at = format!("`classify[{i}]` (`{}`)", r.name);
            if !names.insert(r.name.as_str()) {
                return Err(format!("{at}: the name is used twice"));
            }
            if r.basis.trim().is_empty() {
                return Err(format!(
                    "{at}: `basis` must name the instrument and article"
                ));
            }
            if r.procedure.is_none() && r.categories_only.is_empty() && r.categories_any.is_empty()
            {
                return Err(format!(
                    "{at}: give at least one test: `procedure`, `categories_only` or `categories_any`"
                ));
            }
        }
        if self.order58.min > self.order58.max {
            return Err("`order58.min` is longer than `order58.max`".into());
        }
        if self.placeholder_code.chars().count() != 18 {
            return Err("`placeholder_code` must have 18 characters".into());
        }
        Ok(())
    }

    /// The decision's class: the one the case system or an officer gave
    /// (`credit_severity`, with `credit_severity_by` naming the officer),
    /// else the one the rules agree on. `Err` says why the hub cannot tell.
    pub fn classify(&self, d: &Value) -> Result<Classified, String> {
        if let Some(code) = str_of(d, "/credit_severity") {
            let severity = Severity::from_code(code)
                .ok_or_else(|| format!("unknown credit_severity `{code}`"))?;
            let from = match str_of(d, "/credit_severity_by") {
                Some(officer) => format!(
                    "执法人员{officer}定级：{}",
                    str_of(d, "/credit_severity_reason").unwrap_or("（未写理由）")
                ),
                None => "案件系统报送的失信程度".to_owned(),
            };
            return Ok(Classified { severity, from });
        }
        let categories = categories_of(d);
        let procedure = str_of(d, "/procedure");
        let matched: Vec<&ClassRule> = self
            .classify
            .iter()
            .filter(|r| r.matches(procedure, &categories))
            .collect();
        match matched.as_slice() {
            [] => Err(format!(
                "待定级：处罚类别为{}，其失信程度（一般或严重）由行业主管部门的认定标准确定，案件系统未报送失信程度；须由执法人员在工作台定级",
                if categories.is_empty() {
                    "（空）".to_owned()
                } else {
                    categories.join("、")
                }
            )),
            [first, rest @ ..] if rest.iter().all(|r| r.severity == first.severity) => {
                Ok(Classified {
                    severity: first.severity,
                    from: format!("规则{}：{}", first.name, first.basis),
                })
            }
            all => Err(format!(
                "待定级：定级规则互相冲突（{}）；须由执法人员在工作台定级",
                all.iter()
                    .map(|r| format!("{}→{}", r.name, r.severity.label()))
                    .collect::<Vec<_>>()
                    .join("，")
            )),
        }
    }

    /// Order 58's minimum for a decision: the longest of the matching
    /// rules' and the default.
    fn order58_min(&self, categories: &[String], industry: &str) -> Period {
        self.order58
            .longer
            .iter()
            .filter(|r| r.matches(categories, industry))
            .map(|r| r.period)
            .chain([self.order58.min])
            .max()
            .expect("the default is always there")
    }

    /// Whether and how long a decision is public. `Ok(Err(reason))` is a
    /// decision not published (by law or policy); `Err` is a held one.
    fn period(&self, d: &Value, decided: NaiveDate) -> Result<Publication, String> {
        let categories = categories_of(d);
        let class = self.classify(d);
        let assess = |class: Option<Classified>, basis: String, min: Option<Period>, max| {
            Ok::<_, String>(Assessment {
                decided,
                class,
                period_basis: basis,
                public_until: Some(Period::after(max, decided)?),
                repair_from: min.map(|m: Period| m.after(decided)).transpose()?,
            })
        };
        let nothing = |class: Option<Classified>, basis: String| Assessment {
            decided,
            class,
            period_basis: basis,
            public_until: None,
            repair_from: None,
        };
        let held = |reason: String, basis: String| Publication::Held {
            assessment: nothing(None, basis),
            reason,
        };
        if decided >= self.classes.from {
            let c = match class {
                Ok(c) => c,
                Err(why) => return Ok(held(why, ORDER36.to_owned())),
            };
            let p = self.classes.of(c.severity);
            if !p.publish {
                return Ok(Publication::NotPublished {
                    reason: format!("{}失信信息不予公示（{}）", c.severity.label(), p.basis),
                    assessment: nothing(Some(c), p.basis.clone()),
                });
            }
            return Ok(Publication::Publish {
                record: Value::Null,
                assessment: assess(Some(c), p.basis.clone(), p.min, p.max)?,
            });
        }
        // Order 58, for decisions made before order 36 applied.
        let o = &self.order58;
        let warning_only =
            !categories.is_empty() && categories.iter().all(|c| c == "警告" || c == "通报批评");
        if warning_only && !o.publish_warning_only {
            return Ok(Publication::NotPublished {
                reason: "仅警告、通报批评类处罚，按公示政策不予公示".into(),
                assessment: nothing(class.ok(), o.basis.clone()),
            });
        }
        let min = self.order58_min(&categories, str_of(d, "/industry").unwrap_or("OTHER"));
        if !self.shorten_earlier {
            return Ok(Publication::Publish {
                record: Value::Null,
                assessment: assess(class.ok(), o.basis.clone(), Some(min), o.max)?,
            });
        }
        // [check] Cut to order 36's maxima: the period depends on the class.
        let c = match class {
            Ok(c) => c,
            Err(why) => {
                return Ok(held(
                    format!(
                        "{why}（{}前作出的决定，按shorten_earlier缩短至新规最长公示期，须先定级）",
                        self.classes.from
                    ),
                    o.basis.clone(),
                ));
            }
        };
        let p = self.classes.of(c.severity);
        if !p.publish {
            return Ok(Publication::NotPublished {
                reason: format!(
                    "{}失信信息不予公示（{}；{}前作出，按从轻适用新规）",
                    c.severity.label(),
                    p.basis,
                    self.classes.from
                ),
                assessment: nothing(Some(c), p.basis.clone()),
            });
        }
        let basis = format!("{}；{}（从轻：取较短者）", o.basis, p.basis);
        let max = o.max.min(p.max);
        let min = min.min(p.min.unwrap_or(min)).min(max);
        Ok(Publication::Publish {
            record: Value::Null,
            assessment: assess(Some(c), basis, Some(min), max)?,
        })
    }

    /// An ID type as the platform codes it; `Err` names a type it has no
    /// code for.
    fn id_type_code(&self, canonical: Option<&str>) -> Result<String, String> {
        // A resident ID is what a source means when it says nothing.
        let t = canonical.unwrap_or("RESIDENT_ID");
        self.id_type_codes.get(t).cloned().ok_or_else(|| {
            format!("no platform code for the ID type `{t}`: add it to the credit policy's `id_type_codes`")
        })
    }

    /// An ID number as it may leave for the platform: masked by the
    /// policy (a number already masked stays as it is).
    fn masked(&self, d: &Value, full: &str, masked: &str) -> Option<String> {
        str_of(d, full)
            .map(|i| {
                if i.contains('*') {
                    i.to_owned()
                } else {
                    self.mask.apply(i)
                }
            })
            .or_else(|| str_of(d, masked).map(str::to_owned))
    }

    /// The publication of a canonical PenaltyDecision (as JSON).
    pub fn publication(&self, d: &Value) -> Result<Publication, String> {
        let decision_no = str_of(d, "/decision_no")
            .ok_or("the decision has no decision number")?
            .to_owned();
        // 行政处罚法 art. 48: withdrawn, with the reason made public.
        let withdrawn = match str_of(d, "/action") {
            Some("REVOKED") => Some("处罚决定已撤销"),
            Some("CONFIRMED_UNLAWFUL") => Some("处罚决定被确认违法"),
            Some("CONFIRMED_VOID") => Some("处罚决定被确认无效"),
            _ => None,
        };
        if let Some(default_reason) = withdrawn {
            let reason = match str_of(d, "/remarks") {
                Some(r) => format!("{default_reason}：{r}"),
                None => default_reason.to_owned(),
            };
            return Ok(Publication::Withdraw {
                decision_no,
                reason,
            });
        }
        let authority_code = str_of(d, "/authority_code").unwrap_or_default();
        let checked = crate::ident::check_uscc(authority_code);
        if let Some(why) = checked.invalid {
            return Err(format!(
                "the deciding authority's code (CF_CFJGDM) `{authority_code}` is not a valid credit code: {why}"
            ));
        }
        let categories = categories_of(d);
        if categories.is_empty() {
            return Err("the decision has no penalty category".into());
        }
        let decided = decided_on(d).ok_or("the decision has no decision date")?;
        if let Some(code) = str_of(d, "/credit_severity")
            && Severity::from_code(code).is_none()
        {
            return Err(format!(
                "unknown credit_severity `{code}` (LIGHT, GENERAL or SERIOUS)"
            ));
        }
        if let Some(reason) = self.not_yet_publishable(d, decided) {
            return Ok(Publication::Held {
                reason,
                assessment: Assessment {
                    decided,
                    class: None,
                    period_basis: "国办发〔2018〕118号；行政处罚法第五十八条、第六十一条".into(),
                    public_until: None,
                    repair_from: None,
                },
            });
        }
        let assessment = match self.period(d, decided)? {
            Publication::Publish { assessment, .. } => assessment,
            other => return Ok(other),
        };
        let record = self.record(d, decision_no, &categories, &assessment)?;
        Ok(Publication::Publish { record, assessment })
    }

    /// Why a decision may not be published yet, whatever its class: one
    /// that needed legal review (法制审核, 行政处罚法 art. 58; 国办发〔2018〕
    /// 118号) without a review that passed on or before the decision date,
    /// or, with `hold_until_served`, one not yet served (送达, art. 61).
    /// Only what the case system says counts: a decision that does not say
    /// whether it needed review is not held for it (nothing is inferred
    /// from a missing record); the supervision feed counts it as unknown.
    /// The publication clock keeps running on a held decision.
    fn not_yet_publishable(&self, d: &Value, decided: NaiveDate) -> Option<String> {
        if d.pointer("/legal_review_required").and_then(Value::as_bool) == Some(true) {
            let outcome = str_of(d, "/legal_review_outcome");
            let reviewed = d
                .pointer("/legal_review_at")
                .and_then(Value::as_i64)
                .and_then(local_date);
            let why = match (outcome, reviewed) {
                (Some("PASSED"), Some(day)) if day <= decided => None,
                (Some("PASSED"), Some(day)) => {
                    Some(format!("法制审核于{day}通过，晚于决定日期{decided}"))
                }
                (Some("PASSED"), None) => Some("法制审核通过但未记载审核日期".to_owned()),
                (Some(other), _) => Some(format!("法制审核结论为{other}")),
                (None, _) => Some("未见法制审核结论".to_owned()),
            };
            if let Some(why) = why {
                return Some(format!(
                    "暂不公示：该决定须经法制审核（行政处罚法第五十八条），{why}；须核实后再公示"
                ));
            }
        }
        if self.hold_until_served && d.pointer("/served_at").and_then(Value::as_i64).is_none() {
            return Some(
                "暂不公示：办案系统未记载处罚决定书送达（行政处罚法第六十一条）；送达后公示".into(),
            );
        }
        None
    }

    /// The `CF_*` record of a decision to publish.
    ///
    /// Long because the 双公示 layout's `CF_*` fields written one after
    /// another in the platform's order, each with its source and rule.
    fn record(
        &self,
        d: &Value,
        decision_no: String,
        categories: &[String],
        assessment: &Assessment,
    ) -> Result<Value, String> {
        let mut r = Map::new();
        let mut put = |k: &str, v: Option<String>| {
            r.insert(
                k.to_owned(),
                v.map(Value::String).unwrap_or(Value::String(String::new())),
            );
        };
        put("CF_WSH", Some(decision_no));
        put("CF_XDR_MC", str_of(d, "/party/name").map(str::to_owned));
        let party_type = str_of(d, "/party/type").unwrap_or("LEGAL_PERSON");
        let label = match party_type {
            "NATURAL_PERSON" => "自然人",
            "INDIVIDUAL_BUSINESS" => "个体工商户",
            _ => "法人及非法人组织",
        };
        put("CF_XDR_LB", Some(label.to_owned()));
        let credit_code = str_of(d, "/party/credit_code").map(str::to_owned);
        // The older registration codes (CF_XDR_GSZC … CF_XDR_SHZZ).
        let older = [
            ("CF_XDR_GSZC", "/party/reg_no"),
            ("CF_XDR_ZZJG", "/party/org_code"),
            ("CF_XDR_SWDJ", "/party/tax_reg_no"),
            ("CF_XDR_SYDW", "/party/institution_cert_no"),
            ("CF_XDR_SHZZ", "/party/social_org_cert_no"),
        ];
        let has_older = older.iter().any(|(_, path)| str_of(d, path).is_some());
        let person_id = self.masked(d, "/party/id_number", "/party/id_number_masked");
        let rep_id = self.masked(
            d,
            "/party/legal_rep_id_number",
            "/party/legal_rep_id_number_masked",
        );
        match party_type {
            "NATURAL_PERSON" => {
                // A person: identity by ID number, masked; no credit code,
                // no legal representative.
                let id =
                    person_id.ok_or("a natural person without an ID number cannot be published")?;
                put(
                    "CF_XDR_ZJLX",
                    Some(self.id_type_code(str_of(d, "/party/id_type"))?),
                );
                put("CF_XDR_ZJHM", Some(id));
                put("CF_XDR_SHXYM", None);
                put("CF_FRDB", None);
                put("CF_FR_ZJLX", None);
                put("CF_FR_ZJHM", None);
                for (field, _) in older {
                    put(field, None);
                }
            }
            "INDIVIDUAL_BUSINESS"
                if credit_code.is_none()
                    && !has_older
                    && self.without_code == WithoutCode::Placeholder =>
            {
                // The 双公示 layout: the placeholder code, and the operator
                // (经营者) as the legal representative, ID masked.
                let operator = str_of(d, "/party/legal_rep").ok_or(
                    "an individual business (个体工商户) without a credit code needs its operator (经营者, the legal representative)",
                )?;
                let (id_type, id) = match rep_id {
                    Some(id) => (str_of(d, "/party/legal_rep_id_type"), Some(id)),
                    None => (str_of(d, "/party/id_type"), person_id),
                };
                let id = id.ok_or(
                    "an individual business (个体工商户) without a credit code needs its operator's ID number",
                )?;
                put("CF_XDR_SHXYM", Some(self.placeholder_code.clone()));
                for (field, _) in older {
                    put(field, None);
                }
                put("CF_FRDB", Some(operator.to_owned()));
                put("CF_FR_ZJLX", Some(self.id_type_code(id_type)?));
                put("CF_FR_ZJHM", Some(id));
                put("CF_XDR_ZJLX", None);
                put("CF_XDR_ZJHM", None);
            }
            _ => {
                // An organisation or an individual business: its codes; its
                // legal representative (operator) with their ID, masked.
                // An individual business without a credit code, where the
                // platform wants it so, is identified by its operator's ID.
                let operator_id = if party_type == "INDIVIDUAL_BUSINESS"
                    && credit_code.is_none()
                    && !has_older
                {
                    let (id_type, id) = match person_id {
                        Some(id) => (str_of(d, "/party/id_type"), Some(id)),
                        None => (str_of(d, "/party/legal_rep_id_type"), rep_id.clone()),
                    };
                    let id = id.ok_or(
                        "an individual business (个体工商户) without a credit code needs its operator's ID number",
                    )?;
                    Some((self.id_type_code(id_type)?, id))
                } else {
                    None
                };
                if credit_code.is_none() && !has_older && operator_id.is_none() {
                    return Err(format!(
                        "a {label} needs its unified social credit code (CF_XDR_SHXYM) or one of the older registration codes"
                    ));
                }
                put("CF_XDR_SHXYM", credit_code);
                for (field, path) in older {
                    put(field, str_of(d, path).map(str::to_owned));
                }
                put("CF_FRDB", str_of(d, "/party/legal_rep").map(str::to_owned));
                let rep_type = rep_id
                    .as_ref()
                    .map(|_| self.id_type_code(str_of(d, "/party/legal_rep_id_type")))
                    .transpose()?;
                put("CF_FR_ZJLX", rep_type);
                put("CF_FR_ZJHM", rep_id);
                let (t, n) = operator_id.unzip();
                put("CF_XDR_ZJLX", t);
                put("CF_XDR_ZJHM", n);
            }
        }
        put("CF_WFXW", str_of(d, "/violation").map(str::to_owned));
        put("CF_SY", str_of(d, "/facts").map(str::to_owned));
        put("CF_YJ", str_of(d, "/legal_basis").map(str::to_owned));
        put("CF_CFLB", Some(categories.join(";")));
        put("CF_NR", str_of(d, "/content").map(str::to_owned));
        let wan = |path: &str| -> Result<Option<String>, String> {
            str_of(d, path)
                .map(|y| yuan_to_wan(y).map(|w| w.to_string()))
                .transpose()
        };
        put("CF_NR_FK", wan("/fine_yuan")?);
        put("CF_NR_WFFF", wan("/confiscation_yuan")?);
        put(
            "CF_NR_ZKDX",
            str_of(d, "/licence_action").map(str::to_owned),
        );
        let date = |day: NaiveDate| Some(self.date_format.write(day));
        put("CF_JDRQ", date(assessment.decided));
        // CF_YXQ is the penalty's own validity (the end of a suspension,
        // say), not the publicity end: the case system's, else the
        // platform's long-term value.
        let valid_until = d
            .pointer("/valid_until")
            .and_then(Value::as_i64)
            .and_then(local_date)
            .or(self.long_term_validity);
        put("CF_YXQ", valid_until.and_then(date));
        put("CF_GSJZQ", assessment.public_until.and_then(date));
        put("CF_CFJG", str_of(d, "/authority").map(str::to_owned));
        put("CF_CFJGDM", str_of(d, "/authority_code").map(str::to_owned));
        put("CF_SJLY", str_of(d, "/data_source_unit").map(str::to_owned));
        put(
            "CF_SJLYDM",
            str_of(d, "/data_source_code").map(str::to_owned),
        );
        let remark = match str_of(d, "/action") {
            Some("CHANGED") => Some(format!(
                "变更{}",
                str_of(d, "/remarks")
                    .map(|r| format!("：{r}"))
                    .unwrap_or_default()
            )),
            _ => str_of(d, "/remarks").map(str::to_owned),
        };
        put("BZ", remark);
        let empty: Vec<&str> = self
            .required
            .iter()
            .filter(|f| {
                r.get(f.as_str())
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
            })
            .map(String::as_str)
            .collect();
        if !empty.is_empty() {
            return Err(format!(
                "the platform requires {} and the decision leaves {} empty",
                self.required.join(", "),
                empty.join(", ")
            ));
        }
        Ok(Value::Object(r))
    }
}

/// What a 失信惩戒措施 does to a decision someone takes about the party
/// (国办发〔2020〕49号（四）: each measure cites its own legal basis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The law forbids it (不得): the permit cannot be granted.
    Bar,
    /// An important consideration (重要考量因素): the decider weighs it.
    Consider,
}

impl Effect {
    pub fn label(self) -> &'static str {
        match self {
            Effect::Bar => "依法不得",
            Effect::Consider => "作为重要考量因素",
        }
    }
}

/// One 失信惩戒措施 with its basis and scope: what a listing (or a
/// penalty) means for the permits others decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    /// What it is, in Chinese, as the caller shows it.
    pub label: String,
    pub effect: Effect,
    /// The permit types (许可事项) it concerns; `*` for every one.
    pub permits: Vec<String>,
    /// The instrument and article it rests on.
    pub basis: String,
}

impl Measure {
    /// Refuses a measure without its basis or scope, naming it.
    pub fn validate(&self) -> Result<(), String> {
        if self.basis.trim().is_empty() {
            return Err(format!(
                "the measure `{}` needs its legal basis (国办发〔2020〕49号（四）: every measure cites its own)",
                self.label
            ));
        }
        if self.permits.is_empty() {
            return Err(format!(
                "the measure `{}` needs `permits`: the permit types it concerns, or [\"*\"]",
                self.label
            ));
        }
        Ok(())
    }

    /// Whether it concerns `permit` (every measure, without one).
    pub fn concerns(&self, permit: Option<&str>) -> bool {
        permit.is_none_or(|p| self.permits.iter().any(|x| x == "*" || x == p))
    }
}

/// A stable identity for blacklists: the credit code, else the person's
/// pseudonym (never the ID number itself: see [`crate::personal`]), else
/// the name.
pub fn entity_key(d: &Value, pseudonyms: &crate::personal::Pseudonyms) -> Option<String> {
    str_of(d, "/party/credit_code")
        .map(|c| format!("uscc:{c}"))
        .or_else(|| str_of(d, "/party/id_number").map(|i| pseudonyms.of(i)))
        .or_else(|| str_of(d, "/party/name").map(|n| format!("name:{n}")))
}

/// The person's key under the previous suite's pseudonyms, while the
/// deployment carries keys over; `None` for an entity with a credit code.
pub fn earlier_entity_key(d: &Value, pseudonyms: &crate::personal::Pseudonyms) -> Option<String> {
    if str_of(d, "/party/credit_code").is_some() {
        return None;
    }
    str_of(d, "/party/id_number").and_then(|i| pseudonyms.earlier(i))
}

/// The decision as JSON for tests and tools.
pub fn sample_decision() -> Value {
    json!({
        "id": "pen:CF202600001", "decision_no": "宜高综执罚决字〔2026〕第0100号", "action": "ISSUED", "version": 1,
        "party": {"name": "宜昌华强建材有限公司", "type": "LEGAL_PERSON", "credit_code": "91350100M000100Y43", "legal_rep": "张伟"},
        "violation": "占道经营", "facts": "经查…", "legal_basis": "《城市市容和环境卫生管理条例》", "categories": ["罚款"],
        "content": "罚款人民币2000元", "fine_yuan": "2000", "decided_at": 1_795_104_000_000_i64,
        "authority": "宜昌高新区综合行政执法局", "authority_code": "11420500MB15077941", "industry": "URBAN", "credit_severity": "GENERAL"
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn money_in_wan_is_exact() {
        let w = |s: &str| yuan_to_wan(s).unwrap().to_string();
        assert_eq!(w("2000"), "0.2");
        assert_eq!(w("0.01"), "0.000001");
        assert_eq!(w("1234567.89"), "123.456789");
        assert_eq!(w("100000000"), "10000");
        assert_eq!(w("3000.5"), "0.30005");
        assert_eq!(w("19999.99"), "1.999999");
        assert_eq!(w("1,500.50元"), "0.15005");
        assert_eq!(w("３０００"), "0.3");
        assert_eq!(w("0"), "0");
        assert!(yuan_to_wan("-5").is_err());
        assert!(yuan_to_wan("两千").is_err());
        // 0.1 + 0.2 style drift cannot happen: the sum of parts is exact.
        assert_eq!(
            yuan_to_wan("1000").unwrap() + yuan_to_wan("2000").unwrap(),
            yuan_to_wan("3000").unwrap()
        );
    }

    #[test]
    fn a_company_gets_its_credit_code_and_legal_representative() {
        let r = published(&sample_decision());
        assert_eq!(r["CF_NR_FK"], "0.2");
        assert_eq!(r["CF_XDR_LB"], "法人及非法人组织");
        assert_eq!(r["CF_XDR_SHXYM"], "91350100M000100Y43");
        assert_eq!(r["CF_FRDB"], "张伟");
        assert_eq!(r["CF_XDR_ZJHM"], "");
        // Decided 2026-11-20 (local), classed 一般 by the case system:
        // public until the class maximum, 1 year (order 36); repair after
        // the 3-month minimum.
        assert_eq!(r["CF_JDRQ"], "2026-11-20");
        assert_eq!(r["CF_GSJZQ"], "2027-11-20");
        let a = assess(&CreditPolicy::default(), &sample_decision());
        assert_eq!(a.repair_from.unwrap().to_string(), "2027-02-20");
        assert_eq!(a.class.unwrap().from, "案件系统报送的失信程度");
    }

    #[test]
    fn a_person_is_masked_and_carries_no_credit_code() {
        let mut d = sample_decision();
        d["party"] = json!({"name": "李娜", "type": "NATURAL_PERSON", "id_type": "RESIDENT_ID", "id_number": "11010519491231002X"});
        let r = published(&d);
        assert_eq!(r["CF_XDR_LB"], "自然人");
        assert_eq!(r["CF_XDR_ZJHM"], "110105********002X");
        assert_eq!(r["CF_XDR_ZJLX"], "001");
        assert_eq!(r["CF_XDR_SHXYM"], "");
        assert_eq!(r["CF_FRDB"], "");
    }

    /// 法制审核 (行政处罚法 art. 58): a decision that needed review is
    /// published only with a review that passed on or before its date; one
    /// that does not say is not held for it. With `hold_until_served`, an
    /// unserved decision (行政处罚法 art. 61) is held too. Held, never
    /// refused: the clock runs and the desk shows the reason.
    #[test]
    fn a_decision_needing_legal_review_is_held_until_one_passed_before_it() {
        let p = CreditPolicy::default();
        let decided_ms = sample_decision()["decided_at"].as_i64().unwrap();
        let held = |d: &Value, p: &CreditPolicy| match p.publication(d).unwrap() {
            Publication::Held { reason, .. } => reason,
            other => panic!("not held: {other:?}"),
        };
        let mut d = sample_decision();
        d["legal_review_required"] = json!(true);
        assert!(
            held(&d, &p).contains("未见法制审核结论"),
            "{}",
            held(&d, &p)
        );
        d["legal_review_outcome"] = json!("RETURNED");
        d["legal_review_at"] = json!(decided_ms - 86_400_000);
        assert!(held(&d, &p).contains("RETURNED"));
        d["legal_review_outcome"] = json!("PASSED");
        d["legal_review_at"] = json!(decided_ms + 2 * 86_400_000);
        assert!(held(&d, &p).contains("晚于决定日期"), "{}", held(&d, &p));
        // Passed the day before, or the same day: published.
        d["legal_review_at"] = json!(decided_ms + 3_600_000);
        published_by(&p, &d);
        d["legal_review_at"] = json!(decided_ms - 86_400_000);
        published_by(&p, &d);
        // Not required, or not said: not held for it.
        let mut d = sample_decision();
        d["legal_review_required"] = json!(false);
        published_by(&p, &d);
        published_by(&p, &sample_decision());
        // Served, with the policy that waits for it.
        let served = CreditPolicy {
            hold_until_served: true,
            ..CreditPolicy::default()
        };
        assert!(held(&sample_decision(), &served).contains("送达"));
        let mut d = sample_decision();
        d["served_at"] = json!(decided_ms + 3_600_000);
        published_by(&served, &d);
    }

    fn published_by(p: &CreditPolicy, d: &Value) -> Value {
        match p.publication(d) {
            Ok(Publication::Publish { record, .. }) => record,
            other => panic!("not published: {other:?}"),
        }
    }

    fn published(d: &Value) -> Value {
        published_by(&CreditPolicy::default(), d)
    }

    fn assess(p: &CreditPolicy, d: &Value) -> Assessment {
        p.publication(d)
            .unwrap()
            .assessment()
            .cloned()
            .expect("an assessment")
    }

    /// A decision made on `day` (local midnight) with these categories.
    fn decided(day: &str, categories: &[&str]) -> Value {
        let mut d = sample_decision();
        let date = NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
        d["decided_at"] = json!(
            chrono_tz::Asia::Shanghai
                .from_local_datetime(&date.and_time(chrono::NaiveTime::MIN))
                .unwrap()
                .timestamp_millis()
        );
        d["categories"] = json!(categories);
        d.as_object_mut().unwrap().remove("credit_severity");
        d
    }

    #[test]
    fn a_company_carries_its_older_codes_and_its_representatives_id_masked() {
        let mut d = sample_decision();
        d["party"]["reg_no"] = json!("420500000012345");
        d["party"]["org_code"] = json!("MA4F0XYZ1");
        d["party"]["legal_rep_id_type"] = json!("RESIDENT_ID");
        d["party"]["legal_rep_id_number"] = json!("11010519491231002X");
        let r = published(&d);
        assert_eq!(r["CF_XDR_GSZC"], "420500000012345");
        assert_eq!(r["CF_XDR_ZZJG"], "MA4F0XYZ1");
        assert_eq!(r["CF_XDR_SWDJ"], "");
        assert_eq!(r["CF_FR_ZJLX"], "001");
        assert_eq!(r["CF_FR_ZJHM"], "110105********002X");
        assert!(crate::personal::full_ids(&r.to_string()).is_empty(), "{r}");
        // A company with no code at all cannot be published.
        let mut none = sample_decision();
        none["party"]["credit_code"] = Value::Null;
        let why = CreditPolicy::default().publication(&none).unwrap_err();
        assert!(why.contains("CF_XDR_SHXYM"), "{why}");
        // Only the older code: published with it.
        none["party"]["tax_reg_no"] = json!("420500123456789");
        let r = published(&none);
        assert_eq!(
            (r["CF_XDR_SHXYM"].as_str(), r["CF_XDR_SWDJ"].as_str()),
            (Some(""), Some("420500123456789"))
        );
    }

    #[test]
    fn an_individual_business_without_a_credit_code_carries_the_placeholder_and_its_operator() {
        let mut d = sample_decision();
        d["party"] = json!({"name": "宜昌高新区李娜经营部", "type": "INDIVIDUAL_BUSINESS", "legal_rep": "李娜",
            "legal_rep_id_type": "RESIDENT_ID", "legal_rep_id_number": "11010519491231002X"});
        let r = published(&d);
        assert_eq!(r["CF_XDR_LB"], "个体工商户");
        assert_eq!(r["CF_XDR_SHXYM"], "00000000000000000X");
        assert_eq!(r["CF_FRDB"], "李娜");
        assert_eq!(r["CF_FR_ZJLX"], "001");
        assert_eq!(r["CF_FR_ZJHM"], "110105********002X");
        assert_eq!(r["CF_XDR_ZJHM"], "");
        // A platform that identifies it by its operator's ID instead.
        let by_id = CreditPolicy {
            without_code: WithoutCode::OperatorId,
            ..CreditPolicy::default()
        };
        let r = published_by(&by_id, &d);
        assert_eq!(r["CF_XDR_SHXYM"], "");
        assert_eq!(r["CF_XDR_ZJLX"], "001");
        assert_eq!(r["CF_XDR_ZJHM"], "110105********002X");
        // With a credit code, that is its identifier.
        d["party"]["credit_code"] = json!("92420500MA4F0XYZ1B");
        let r = published(&d);
        assert_eq!(r["CF_XDR_SHXYM"], "92420500MA4F0XYZ1B");
        assert_eq!(r["CF_XDR_ZJHM"], "");
        // No operator: refused, with the reason.
        d["party"] = json!({"name": "某经营部", "type": "INDIVIDUAL_BUSINESS"});
        let why = CreditPolicy::default().publication(&d).unwrap_err();
        assert!(why.contains("operator"), "{why}");
    }

    #[test]
    fn id_types_are_coded_as_the_platform_codes_them() {
        let mut d = sample_decision();
        d["party"] = json!({"name": "JOHN SMITH", "type": "NATURAL_PERSON", "id_type": "PASSPORT", "id_number": "E12345678"});
        let r = published(&d);
        assert_eq!(r["CF_XDR_ZJLX"], "002");
        d["party"]["id_type"] = json!("MILITARY_ID");
        let why = CreditPolicy::default().publication(&d).unwrap_err();
        assert!(
            why.contains("MILITARY_ID") && why.contains("id_type_codes"),
            "{why}"
        );
    }

    #[test]
    fn from_2026_04_01_the_class_sets_the_period() {
        let p = CreditPolicy::default();
        // 一般, from the case system: 1 year, repair after 3 months.
        let mut d = decided("2026-04-01", &["罚款"]);
        d["credit_severity"] = json!("GENERAL");
        let a = assess(&p, &d);
        assert_eq!(published(&d)["CF_GSJZQ"], "2027-04-01");
        assert_eq!(a.repair_from.unwrap().to_string(), "2026-07-01");
        assert!(a.period_basis.contains("第36号"), "{}", a.period_basis);
        // 严重 by the rule of order 36 (吊销许可证件): 3 years, repair after 1.
        let d = decided("2026-04-01", &["罚款", "吊销许可证件"]);
        let a = assess(&p, &d);
        assert_eq!(published(&d)["CF_GSJZQ"], "2029-04-01");
        assert_eq!(a.repair_from.unwrap().to_string(), "2027-04-01");
        assert!(a.class.unwrap().from.contains("revocation_closure_bar"));
        // 轻微: the simplified procedure, or a warning alone: not published.
        let mut simple = decided("2026-04-01", &["罚款"]);
        simple["procedure"] = json!("SIMPLE");
        simple["fine_yuan"] = json!("50");
        for d in [
            simple,
            decided("2026-04-01", &["警告"]),
            decided("2026-12-07", &["通报批评"]),
        ] {
            match p.publication(&d).unwrap() {
                Publication::NotPublished { reason, assessment } => {
                    assert!(reason.contains("轻微"), "{reason}");
                    assert_eq!(assessment.class.unwrap().severity, Severity::Light);
                }
                other => panic!("{other:?}"),
            }
        }
        // A fine the source did not class: 较大 or 巨额 is the sector's
        // standard, so it is held, with the reason.
        match p.publication(&decided("2026-04-01", &["罚款"])).unwrap() {
            Publication::Held { reason, .. } => {
                assert!(
                    reason.contains("待定级") && reason.contains("罚款"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Rules that disagree: held too.
        let mut odd = decided("2026-05-01", &["吊销许可证件"]);
        odd["procedure"] = json!("SIMPLE");
        assert!(
            matches!(p.publication(&odd).unwrap(), Publication::Held { reason, .. } if reason.contains("冲突"))
        );
        // An officer's class says who gave it and why.
        let mut officer = decided("2026-06-30", &["罚款"]);
        officer["credit_severity"] = json!("SERIOUS");
        officer["credit_severity_by"] = json!("张伟");
        officer["credit_severity_reason"] = json!("罚款数额达到行业巨额标准");
        let a = assess(&p, &officer);
        assert_eq!(a.public_until.unwrap().to_string(), "2029-06-30");
        assert!(a.class.unwrap().from.contains("张伟"));
        // A source class the hub does not know is an error, not a guess.
        officer["credit_severity"] = json!("VERY");
        assert!(p.publication(&officer).is_err());
    }

    #[test]
    fn before_2026_04_01_order_58_applies_cut_to_the_new_maxima_by_default() {
        let p = CreditPolicy::default();
        // 2026-03-31, classed 一般: order 58 says 3 years; cut to order 36's
        // 1 year (shorten_earlier, the reading that favours the party).
        let mut d = decided("2026-03-31", &["罚款"]);
        d["credit_severity"] = json!("GENERAL");
        assert_eq!(published(&d)["CF_GSJZQ"], "2027-03-31");
        // Without the cut: order 58's 3 years, 3 months' minimum, 1 year
        // in food safety (order 58: 食品, 药品, 特种设备, 安全生产, 消防).
        let keep = CreditPolicy {
            shorten_earlier: false,
            ..CreditPolicy::default()
        };
        assert_eq!(published_by(&keep, &d)["CF_GSJZQ"], "2029-03-31");
        assert_eq!(
            assess(&keep, &d).repair_from.unwrap().to_string(),
            "2026-06-30"
        );
        for industry in ["FOOD_SAFETY", "DRUGS", "SAFETY_PRODUCTION"] {
            d["industry"] = json!(industry);
            assert_eq!(
                assess(&keep, &d).repair_from.unwrap().to_string(),
                "2027-03-31"
            );
        }
        // Unclassed: under order 58 alone it is published for 3 years; with
        // the cut, its maximum depends on a class: held.
        let u = decided("2026-03-31", &["罚款"]);
        assert_eq!(published_by(&keep, &u)["CF_GSJZQ"], "2029-03-31");
        assert!(matches!(
            p.publication(&u).unwrap(),
            Publication::Held { .. }
        ));
        // A simplified-procedure fine before the change was published under
        // order 58; with the cut, 轻微 is no longer published.
        let mut s = decided("2026-03-31", &["罚款"]);
        s["procedure"] = json!("SIMPLE");
        assert!(matches!(
            published_by(&keep, &s)["CF_GSJZQ"].as_str(),
            Some("2029-03-31")
        ));
        assert!(matches!(
            p.publication(&s).unwrap(),
            Publication::NotPublished { .. }
        ));
        // A warning alone was not published under order 58 either.
        assert!(matches!(
            keep.publication(&decided("2026-03-31", &["警告"])).unwrap(),
            Publication::NotPublished { .. }
        ));
    }

    #[test]
    fn a_policy_outside_order_36_is_refused() {
        let mut p = CreditPolicy::default();
        p.classes.general.max = Period { months: 24 };
        assert!(p.validate().unwrap_err().contains("classes.general"));
        let mut p = CreditPolicy::default();
        p.classes.serious.min = Some(Period { months: 6 });
        assert!(p.validate().unwrap_err().contains("classes.serious"));
        let mut p = CreditPolicy::default();
        p.classify[0].basis = " ".into();
        assert!(p.validate().unwrap_err().contains("basis"));
        // A sector that publishes 轻微 for at most 3 months may say so.
        let mut p = CreditPolicy::default();
        p.classes.light.publish = true;
        p.validate().unwrap();
        let r = published_by(&p, &decided("2026-05-01", &["警告"]));
        assert_eq!(r["CF_GSJZQ"], "2026-08-01");
    }

    #[test]
    fn the_layout_is_the_platforms() {
        let mut p = CreditPolicy {
            date_format: DateFormat::Slashes,
            long_term_validity: NaiveDate::from_ymd_opt(2099, 12, 31),
            ..CreditPolicy::default()
        };
        let r = published_by(&p, &sample_decision());
        assert_eq!(r["CF_JDRQ"], "2026/11/20");
        assert_eq!(r["CF_GSJZQ"], "2027/11/20");
        assert_eq!(r["CF_YXQ"], "2099/12/31");
        // The case system's own validity (the end of a suspension) wins.
        let mut d = sample_decision();
        d["valid_until"] = json!(1_798_732_800_000_i64); // 2027-01-01 local
        assert_eq!(published_by(&p, &d)["CF_YXQ"], "2027/01/01");
        // A required field left empty: refused before sending, named.
        p.long_term_validity = None;
        p.required.push("CF_YXQ".into());
        let why = p.publication(&sample_decision()).unwrap_err();
        assert!(why.contains("CF_YXQ"), "{why}");
    }

    #[test]
    fn withdrawals_carry_their_reason() {
        let p = CreditPolicy::default();
        let mut d = sample_decision();
        // Confirmed unlawful or void: withdrawn with the reason (art. 48).
        for (action, why) in [
            ("CONFIRMED_UNLAWFUL", "确认违法"),
            ("CONFIRMED_VOID", "确认无效"),
            ("REVOKED", "撤销"),
        ] {
            let mut x = d.clone();
            x["action"] = json!(action);
            match p.publication(&x).unwrap() {
                Publication::Withdraw { reason, .. } => assert!(reason.contains(why), "{reason}"),
                other => panic!("{action}: {other:?}"),
            }
        }
        // The deciding authority's code must be a credit code.
        d["authority_code"] = json!("11420500MB150779XX");
        assert!(p.publication(&d).unwrap_err().contains("CF_CFJGDM"));
    }
}
