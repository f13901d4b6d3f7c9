//! The credit platform's penalty publication record (行政处罚, 双公示), in
//! the `CF_*` field layout, built from a canonical PenaltyDecision.
//!
//! - Fines and confiscations go in 万元 (10,000 yuan), computed with
//!   decimal arithmetic: 罚款2000元 is exactly `0.2`, never `0.19999…`.
//! - The party type decides which identity fields are filled; a natural
//!   person's ID number is masked by the destination's policy.
//! - Publicity periods follow NDRC order 58 (2023, 《失信行为纠正后的信用信息
//!   修复管理办法（试行）》): penalty information is public for at least 3
//!   months and at most 3 years from the decision date, at least 1 year for
//!   special equipment, safety production and fire safety. The publicity end
//!   date (`CF_GSJZQ`) is therefore the *maximum*, when publication stops by
//!   itself; the minimum (the longest of the rules that match, with several
//!   penalty types) is the earliest date a credit repair (信用修复) may end it
//!   ([`CreditPolicy::repair_earliest`]). Other regimes are rules in config,
//!   citing their source. A warning-only decision is not published when the
//!   policy says so.
//! - A decision revoked, confirmed unlawful (确认违法) or confirmed void
//!   (确认无效) is withdrawn with its reason (行政处罚法 art. 48); a changed one
//!   is republished with a remark.

use crate::ident::MaskPolicy;
use chrono::{NaiveDate, TimeZone};
use rust_decimal::Decimal;
use serde::Deserialize;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub months: u32,
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

/// One publicity rule: the *minimum* period of the decisions it matches.
/// Every matching rule counts, and the longest minimum decides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicityRule {
    /// Matches when the decision has any of these penalty categories.
    #[serde(default)]
    pub categories_any: Vec<String>,
    /// Matches when the decision's industry is one of these.
    #[serde(default)]
    pub industries_any: Vec<String>,
    pub period: Period,
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

/// The publication policy of the credit platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditPolicy {
    /// Publish decisions whose only penalty is a warning (警告 / 通报批评).
    #[serde(default)]
    pub publish_warning_only: bool,
    /// Publish decisions made in the simplified procedure (简易程序,
    /// 行政处罚法 art. 51). Default true; a regime that excludes them sets
    /// false and says which rule in the deployment file.
    #[serde(default = "yes")]
    pub publish_simple_procedure: bool,
    /// Minimum-period rules; the longest matching one decides.
    #[serde(default = "default_rules")]
    pub rules: Vec<PublicityRule>,
    /// The minimum period when no rule matches (order 58: 3 months).
    #[serde(default = "default_period")]
    pub default_period: Period,
    /// The maximum period: `CF_GSJZQ`, when publication stops by itself
    /// (order 58: 3 years).
    #[serde(default = "default_max_period")]
    pub max_period: Period,
    /// How a natural person's ID number is masked.
    #[serde(default = "MaskPolicy::birth_date")]
    pub mask: MaskPolicy,
    /// The platform's code of each ID type (`CF_XDR_ZJLX`, `CF_FR_ZJLX`),
    /// by the canonical type (`mappings/codes/id_type.yaml`). The default
    /// follows the 信用中国 双公示 layout (001 身份证 … 005 外国人永久居留
    /// 身份证); a platform that codes them otherwise sets its own.
    #[serde(default = "default_id_type_codes")]
    pub id_type_codes: BTreeMap<String, String>,
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

fn default_rules() -> Vec<PublicityRule> {
    vec![
        // Order 58: at least one year for special equipment, safety
        // production and fire safety.
        PublicityRule {
            categories_any: vec![],
            industries_any: ["SAFETY_PRODUCTION", "SPECIAL_EQUIPMENT", "FIRE_SAFETY"]
                .map(String::from)
                .to_vec(),
            period: Period { months: 12 },
        },
    ]
}

fn default_period() -> Period {
    Period { months: 3 }
}

fn yes() -> bool {
    true
}

fn default_max_period() -> Period {
    Period { months: 36 }
}

impl Default for CreditPolicy {
    fn default() -> Self {
        Self {
            publish_warning_only: false,
            publish_simple_procedure: true,
            rules: default_rules(),
            default_period: default_period(),
            max_period: default_max_period(),
            mask: MaskPolicy::birth_date(),
            id_type_codes: default_id_type_codes(),
        }
    }
}

/// What the platform is to receive for one decision version.
#[derive(Debug, Clone, PartialEq)]
pub enum Publication {
    /// Publish (or republish, for a change) this `CF_*` record.
    Publish(Value),
    /// Withdraw the publication of this decision number.
    Withdraw { decision_no: String, reason: String },
    /// Not published, by policy.
    NotPublished(String),
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
fn local_date(ms: i64) -> Option<NaiveDate> {
    chrono_tz::Asia::Shanghai
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.date_naive())
}

impl CreditPolicy {
    /// The minimum period a decision stays public: the longest of the
    /// matching rules' and the default's.
    pub fn period(&self, categories: &[String], industry: &str) -> Period {
        self.rules
            .iter()
            .filter(|r| r.matches(categories, industry))
            .map(|r| r.period)
            .chain([self.default_period])
            .max_by_key(|p| p.months)
            .expect("the default is always there")
    }

    /// The earliest date a credit repair may end a decision's publication
    /// (its minimum period from the decision date).
    pub fn repair_earliest(&self, d: &Value) -> Option<NaiveDate> {
        let decided = d
            .pointer("/decided_at")
            .and_then(Value::as_i64)
            .and_then(local_date)?;
        let categories = categories_of(d);
        let period = self.period(&categories, str_of(d, "/industry").unwrap_or("OTHER"));
        decided.checked_add_months(chrono::Months::new(period.months))
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
        if str_of(d, "/procedure") == Some("SIMPLE") && !self.publish_simple_procedure {
            return Ok(Publication::NotPublished(
                "简易程序作出的处罚决定，按公示政策不予公示".into(),
            ));
        }
        let warning_only = categories.iter().all(|c| c == "警告" || c == "通报批评");
        if warning_only && !self.publish_warning_only {
            return Ok(Publication::NotPublished(
                "仅警告类处罚，按公示政策不予公示".into(),
            ));
        }
        let decided = d
            .pointer("/decided_at")
            .and_then(Value::as_i64)
            .and_then(local_date)
            .ok_or("the decision has no decision date")?;
        let industry = str_of(d, "/industry").unwrap_or("OTHER");
        // CF_GSJZQ: the maximum period, when publication stops by itself.
        let _ = industry;
        let until = decided
            .checked_add_months(chrono::Months::new(self.max_period.months))
            .ok_or("publicity end date out of range")?;
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
            _ => {
                // An organisation or an individual business: its codes; its
                // legal representative (operator) with their ID, masked.
                // An individual business without a credit code still needs
                // an identifier: its operator's ID, masked, as the party's.
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
        put("CF_JDRQ", Some(decided.format("%Y-%m-%d").to_string()));
        // CF_YXQ is the penalty's own validity (a suspension period, say),
        // not the publicity end; the canonical decision carries none.
        put("CF_YXQ", None);
        put("CF_GSJZQ", Some(until.format("%Y-%m-%d").to_string()));
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
        Ok(Publication::Publish(Value::Object(r)))
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

/// The decision as JSON for tests and tools.
pub fn sample_decision() -> Value {
    json!({
        "id": "pen:CF202600001", "decision_no": "宜高综执罚决字〔2026〕第0100号", "action": "ISSUED", "version": 1,
        "party": {"name": "宜昌华强建材有限公司", "type": "LEGAL_PERSON", "credit_code": "91350100M000100Y43", "legal_rep": "张伟"},
        "violation": "占道经营", "facts": "经查…", "legal_basis": "《城市市容和环境卫生管理条例》", "categories": ["罚款"],
        "content": "罚款人民币2000元", "fine_yuan": "2000", "decided_at": 1_795_104_000_000_i64,
        "authority": "宜昌高新区综合行政执法局", "authority_code": "11420500MB15077941", "industry": "URBAN"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let Publication::Publish(r) = CreditPolicy::default()
            .publication(&sample_decision())
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(r["CF_NR_FK"], "0.2");
        assert_eq!(r["CF_XDR_LB"], "法人及非法人组织");
        assert_eq!(r["CF_XDR_SHXYM"], "91350100M000100Y43");
        assert_eq!(r["CF_FRDB"], "张伟");
        assert_eq!(r["CF_XDR_ZJHM"], "");
        // Decided 2026-11-20 (local): public until the maximum, 3 years
        // (order 58); a plain fine in urban management may be repaired
        // after its 3-month minimum.
        assert_eq!(r["CF_JDRQ"], "2026-11-20");
        assert_eq!(r["CF_GSJZQ"], "2029-11-20");
        assert_eq!(
            CreditPolicy::default()
                .repair_earliest(&sample_decision())
                .unwrap()
                .to_string(),
            "2027-02-20"
        );
    }

    #[test]
    fn a_person_is_masked_and_carries_no_credit_code() {
        let mut d = sample_decision();
        d["party"] = json!({"name": "李娜", "type": "NATURAL_PERSON", "id_type": "RESIDENT_ID", "id_number": "11010519491231002X"});
        let Publication::Publish(r) = CreditPolicy::default().publication(&d).unwrap() else {
            panic!()
        };
        assert_eq!(r["CF_XDR_LB"], "自然人");
        assert_eq!(r["CF_XDR_ZJHM"], "110105********002X");
        assert_eq!(r["CF_XDR_ZJLX"], "001");
        assert_eq!(r["CF_XDR_SHXYM"], "");
        assert_eq!(r["CF_FRDB"], "");
    }

    fn published(d: &Value) -> Value {
        match CreditPolicy::default().publication(d) {
            Ok(Publication::Publish(r)) => r,
            other => panic!("not published: {other:?}"),
        }
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
    fn an_individual_business_without_a_credit_code_carries_its_operators_id_masked() {
        let mut d = sample_decision();
        d["party"] = json!({"name": "宜昌高新区李娜经营部", "type": "INDIVIDUAL_BUSINESS", "legal_rep": "李娜",
            "legal_rep_id_type": "RESIDENT_ID", "legal_rep_id_number": "11010519491231002X"});
        let r = published(&d);
        assert_eq!(r["CF_XDR_LB"], "个体工商户");
        assert_eq!(r["CF_XDR_SHXYM"], "");
        assert_eq!(r["CF_XDR_ZJLX"], "001");
        assert_eq!(r["CF_XDR_ZJHM"], "110105********002X");
        assert_eq!(r["CF_FRDB"], "李娜");
        assert_eq!(r["CF_FR_ZJHM"], "110105********002X");
        // With a credit code, that is its identifier.
        d["party"]["credit_code"] = json!("92420500MA4F0XYZ1B");
        let r = published(&d);
        assert_eq!(r["CF_XDR_SHXYM"], "92420500MA4F0XYZ1B");
        assert_eq!(r["CF_XDR_ZJHM"], "");
        // Neither: refused, with the reason.
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
    fn periods_follow_the_rules() {
        let p = CreditPolicy::default();
        let mut d = sample_decision();
        d["categories"] = json!(["罚款", "吊销许可证件"]);
        let Publication::Publish(r) = p.publication(&d).unwrap() else {
            panic!()
        };
        // CF_GSJZQ is the maximum, 3 years from the decision (order 58).
        assert_eq!(r["CF_GSJZQ"], "2029-11-20");
        assert_eq!(r["CF_YXQ"], "", "CF_YXQ is not the publicity end");
        // The minimum: 3 months, 1 year in safety production.
        assert_eq!(p.repair_earliest(&d).unwrap().to_string(), "2027-02-20");
        d["categories"] = json!(["罚款"]);
        d["industry"] = json!("SAFETY_PRODUCTION");
        let Publication::Publish(r) = p.publication(&d).unwrap() else {
            panic!()
        };
        assert_eq!(r["CF_GSJZQ"], "2029-11-20");
        assert_eq!(p.repair_earliest(&d).unwrap().to_string(), "2027-11-20");
        // A rule of another regime, with a longer minimum, wins over the
        // industry rule (several rules: the longest decides).
        let mut samr = CreditPolicy::default();
        samr.rules.push(PublicityRule {
            categories_any: vec!["罚款".into()],
            industries_any: vec![],
            period: Period { months: 24 },
        });
        assert_eq!(samr.repair_earliest(&d).unwrap().to_string(), "2028-11-20");
        // Confirmed unlawful or void: withdrawn with the reason (art. 48).
        for (action, why) in [
            ("CONFIRMED_UNLAWFUL", "确认违法"),
            ("CONFIRMED_VOID", "确认无效"),
        ] {
            let mut x = d.clone();
            x["action"] = json!(action);
            match p.publication(&x).unwrap() {
                Publication::Withdraw { reason, .. } => assert!(reason.contains(why), "{reason}"),
                other => panic!("{action}: {other:?}"),
            }
        }
        // A policy that excludes the simplified procedure.
        let mut simple = d.clone();
        simple["procedure"] = json!("SIMPLE");
        assert!(matches!(
            p.publication(&simple).unwrap(),
            Publication::Publish(_)
        ));
        let strict = CreditPolicy {
            publish_simple_procedure: false,
            ..CreditPolicy::default()
        };
        assert!(matches!(
            strict.publication(&simple).unwrap(),
            Publication::NotPublished(r) if r.contains("简易程序")
        ));
        simple["procedure"] = json!("ORDINARY");
        assert!(matches!(
            strict.publication(&simple).unwrap(),
            Publication::Publish(_)
        ));
        // The deciding authority's code must be a credit code.
        let mut bad = d.clone();
        bad["authority_code"] = json!("11420500MB150779XX");
        assert!(p.publication(&bad).unwrap_err().contains("CF_CFJGDM"));
        d["categories"] = json!(["警告"]);
        assert!(matches!(
            p.publication(&d).unwrap(),
            Publication::NotPublished(_)
        ));
        let permissive = CreditPolicy {
            publish_warning_only: true,
            ..CreditPolicy::default()
        };
        assert!(matches!(
            permissive.publication(&d).unwrap(),
            Publication::Publish(_)
        ));
        d["action"] = json!("REVOKED");
        assert!(matches!(
            p.publication(&d).unwrap(),
            Publication::Withdraw { .. }
        ));
    }
}
