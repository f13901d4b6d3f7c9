//! What each receiver gets, made from a record.

use super::Incoming;
use super::config::{TransformConfig, field};
use crate::credit::{CreditPolicy, Publication};
use crate::ident::MaskPolicy;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// One thing to send, with its idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// A JSON body; `route` fills `{team}` in the target URL.
    Json {
        key: String,
        body: Value,
        route: Option<String>,
    },
    /// A credit publication record (sent in batches).
    Publish { key: String, body: Value },
    /// A credit publication withdrawal.
    Withdraw { key: String, body: Value },
    /// Nothing to send, by policy.
    NotSent { key: String, reason: String },
    /// Nothing sent yet: the hub cannot decide and an officer must (a
    /// decision without its credit severity class). Its clock runs on.
    Held { key: String, reason: String },
}

impl Outgoing {
    /// Masks every full resident ID number in the body and the key (the
    /// personal-data rule, [`crate::personal`]).
    pub fn scrub(&mut self, mask: &crate::ident::MaskPolicy) {
        match self {
            Outgoing::Json { key, body, .. }
            | Outgoing::Publish { key, body }
            | Outgoing::Withdraw { key, body } => {
                crate::personal::scrub(body, mask);
                *key = crate::personal::scrub_text(key, mask);
            }
            Outgoing::NotSent { key, reason } | Outgoing::Held { key, reason } => {
                *key = crate::personal::scrub_text(key, mask);
                *reason = crate::personal::scrub_text(reason, mask);
            }
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Outgoing::Json { key, .. }
            | Outgoing::Publish { key, .. }
            | Outgoing::Withdraw { key, .. }
            | Outgoing::NotSent { key, .. }
            | Outgoing::Held { key, .. } => key,
        }
    }

    pub fn body(&self) -> Value {
        match self {
            Outgoing::Json { body, .. }
            | Outgoing::Publish { body, .. }
            | Outgoing::Withdraw { body, .. } => body.clone(),
            Outgoing::NotSent { reason, .. } => json!({ "not_sent": reason }),
            Outgoing::Held { reason, .. } => json!({ "held": reason }),
        }
    }

    /// Whether it can share a request with others.
    pub fn batchable(&self) -> bool {
        matches!(
            self,
            Outgoing::Json { route: None, .. }
                | Outgoing::Publish { .. }
                | Outgoing::NotSent { .. }
                | Outgoing::Held { .. }
        )
    }

    /// Whether nothing goes to the receiver for it.
    pub fn unsent(&self) -> bool {
        matches!(self, Outgoing::NotSent { .. } | Outgoing::Held { .. })
    }
}

/// The record's stable id and version: `id:version`. The version is the
/// record's `version` field, else its update time, else the hash of its
/// payload, so that a changed record is a new delivery and a redelivered
/// one is not. Characters outside visible ASCII (a decision number's
/// 〔〕 and Chinese) are percent-encoded, so the key can travel in an HTTP
/// header.
pub fn idempotency_key(incoming: &Incoming) -> String {
    use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
    const UNSAFE: &AsciiSet = &CONTROLS.add(b' ').add(b'%').add(b'"');
    utf8_percent_encode(&raw_key(incoming), UNSAFE).to_string()
}

fn raw_key(incoming: &Incoming) -> String {
    let id = incoming
        .record
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or(&incoming.key);
    let version = match (
        incoming.record.get("version"),
        incoming.record.get("updated_at"),
    ) {
        (Some(v), _) if !v.is_null() => format!("v{v}"),
        (_, Some(u)) if !u.is_null() => format!("u{u}"),
        _ => format!(
            "h{}",
            &incoming.payload_sha256[..incoming.payload_sha256.len().min(16)]
        ),
    };
    format!("{id}:{version}")
}

/// A transform, compiled.
#[derive(Debug, Clone)]
pub enum Transform {
    Fields(Vec<String>),
    Credit(Box<CreditPolicy>),
    Licence {
        routes: BTreeMap<String, String>,
        default_team: Option<String>,
    },
    Blacklist,
    Supervision,
    SupervisionRates,
}

impl Transform {
    pub fn from_config(c: &TransformConfig) -> Self {
        match c {
            TransformConfig::Fields { fields } => Transform::Fields(fields.clone()),
            TransformConfig::CreditPenalty { policy, .. } => Transform::Credit(policy.clone()),
            TransformConfig::LicenceNotice {
                routes,
                default_team,
            } => Transform::Licence {
                routes: routes.clone(),
                default_team: default_team.clone(),
            },
            TransformConfig::Blacklist => Transform::Blacklist,
            TransformConfig::SupervisionAct => Transform::Supervision,
            TransformConfig::SupervisionRates => Transform::SupervisionRates,
        }
    }

    /// What the transform decided about a record and why, beside the
    /// request (`deliveries preview`): for the credit platform, the class, where
    /// it came from, the period and its basis.
    pub fn explain(&self, record: &Value) -> Option<Value> {
        match self {
            Transform::Credit(policy) => policy
                .publication(record)
                .ok()
                .and_then(|p| p.assessment().cloned())
                .and_then(|a| serde_json::to_value(a).ok()),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Transform::Fields(_) => "fields",
            Transform::Credit(_) => "credit_penalty",
            Transform::Licence { .. } => "licence_notice",
            Transform::Blacklist => "blacklist",
            Transform::Supervision => "supervision_act",
            Transform::SupervisionRates => "supervision_rates",
        }
    }

    /// What to send for a record. `Err` is a refusal on the hub's side
    /// (dead-lettered with the reason); `Ok(None)` means nothing at all.
    /// A JSON body carries `_delivery`: its idempotency key, and the
    /// record's version or update time, so that a receiver orders versions
    /// without parsing the key (the signature covers the key too).
    pub fn apply(&self, incoming: &Incoming) -> Result<Option<Outgoing>, String> {
        let mut out = self.apply_bare(incoming)?;
        if let Some(Outgoing::Json { key, body, .. }) = out.as_mut()
            && let Some(o) = body.as_object_mut()
        {
            let r = &incoming.record;
            o.insert(
                "_delivery".into(),
                json!({
                    "idempotency_key": key,
                    "version": r.get("version").filter(|v| !v.is_null()),
                    "updated_at": r.get("updated_at").filter(|v| !v.is_null()),
                }),
            );
        }
        Ok(out)
    }

    fn apply_bare(&self, incoming: &Incoming) -> Result<Option<Outgoing>, String> {
        let key = idempotency_key(incoming);
        let r = &incoming.record;
        Ok(Some(match self {
            Transform::Fields(fields) => Outgoing::Json {
                body: whitelist(r, fields),
                key,
                route: None,
            },
            Transform::Credit(policy) => match policy.publication(r)? {
                Publication::Publish {
                    record: mut body, ..
                } => {
                    body["idempotency_key"] = Value::String(key.clone());
                    Outgoing::Publish { key, body }
                }
                Publication::Withdraw {
                    decision_no,
                    reason,
                } => Outgoing::Withdraw {
                    body: json!({ "CF_WSH": decision_no, "reason": reason, "idempotency_key": key }),
                    key,
                },
                Publication::NotPublished { reason, .. } => Outgoing::NotSent { key, reason },
                Publication::Held { reason, .. } => Outgoing::Held { key, reason },
            },
            Transform::Licence {
                routes,
                default_team,
            } => {
                let area = r.get("jurisdiction").and_then(Value::as_str).unwrap_or("");
                let team = super::config::route_team(routes, default_team.as_ref(), area)
                    .ok_or_else(|| format!("no enforcement team for jurisdiction `{area}`"))?;
                Outgoing::Json {
                    body: licence_notice(r, &team),
                    key,
                    route: Some(team),
                }
            }
            Transform::Blacklist => Outgoing::Json {
                body: r.clone(),
                key,
                route: None,
            },
            Transform::Supervision => {
                let mut body = supervision_act(r)?;
                body["idempotency_key"] = Value::String(key.clone());
                Outgoing::Publish { key, body }
            }
            Transform::SupervisionRates => {
                if r.get("month").and_then(Value::as_str).is_none() || !r["counts"].is_object() {
                    return Err("not a rates record (month, item, counts)".into());
                }
                let mut body = r.clone();
                body["idempotency_key"] = Value::String(key.clone());
                Outgoing::Publish { key, body }
            }
        }))
    }
}

/// The fields a department is entitled to (and `id`, which identifies the
/// record).
pub fn whitelist(record: &Value, fields: &[String]) -> Value {
    let mut out = Map::new();
    if let Some(id) = record.get("id") {
        out.insert("id".into(), id.clone());
    }
    for path in fields {
        let Some(value) = field(record, path) else {
            continue;
        };
        let mut parts: Vec<&str> = path.split('.').collect();
        let last = parts.pop().expect("a path has a last part");
        let mut node = &mut out;
        for p in parts {
            node = node
                .entry(p.to_owned())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("objects all the way");
        }
        node.insert(last.to_owned(), value.clone());
    }
    Value::Object(out)
}

/// An enforcement act as the supervision platform receives it: the facts
/// of the act (never a finding), its power item, who acted with which
/// certificate, the procedure's dates (local time), the legal review and
/// the publication decision. The party by name, type and credit code; a
/// natural person's ID number only masked, as the hub's personal-data rule
/// lets it leave. `days_to_service` counts calendar days from the decision
/// date to service (the starting day not counted, 民法典 art. 201); whether
/// service was within 行政处罚法 art. 61's seven days, with a rest-day last
/// day rolled over, is the supervisor's reading.
fn supervision_act(r: &Value) -> Result<Value, String> {
    let g = |k: &str| r.get(k).cloned().unwrap_or(Value::Null);
    let decision_no = r
        .get("decision_no")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("the decision has no decision number")?;
    let local = |k: &str| {
        r.get(k)
            .and_then(Value::as_i64)
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| {
                t.with_timezone(&chrono_tz::Asia::Shanghai)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
    };
    let day = |k: &str| {
        r.get(k)
            .and_then(Value::as_i64)
            .and_then(crate::calendar::local_date)
    };
    let strings = |k: &str| -> Vec<String> {
        r.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (names, certificates) = (strings("officers"), strings("officer_certificates"));
    let officers: Vec<Value> = (0..names.len().max(certificates.len()))
        .map(|i| json!({"name": names.get(i), "certificate_no": certificates.get(i)}))
        .collect();
    let mut act = json!({
        "act_kind": "行政处罚",
        "action": g("action"),
        "decision_no": decision_no,
        "version": g("version"),
        "power_item": g("power_item"),
        "authority": g("authority"),
        "authority_code": g("authority_code"),
        "officers": officers,
        "party": {
            "name": r.pointer("/party/name"),
            "type": r.pointer("/party/type"),
            "credit_code": r.pointer("/party/credit_code"),
            "id_number": r.pointer("/party/id_number_masked").or(r.pointer("/party/id_number")),
        },
        "violation": g("violation"),
        "legal_basis": g("legal_basis"),
        "categories": g("categories"),
        "fine_yuan": g("fine_yuan"),
        "procedure": g("procedure"),
        "filed_at": local("filed_at"),
        "notified_at": local("notified_at"),
        "hearing_at": local("hearing_at"),
        "decided_at": local("decided_at"),
        "served_at": local("served_at"),
        "days_to_service": day("decided_at").zip(day("served_at")).map(|(d, s)| (s - d).num_days()),
        "legal_review": {
            "required": g("legal_review_required"),
            "outcome": g("legal_review_outcome"),
            "at": local("legal_review_at"),
        },
        "publish_decision": g("publish_decision"),
    });
    // Any full ID number, wherever it is written (free text too), leaves
    // masked.
    crate::personal::scrub(&mut act, &MaskPolicy::birth_date());
    Ok(act)
}

/// A licence notice for post-approval supervision (审管联动).
fn licence_notice(r: &Value, team: &str) -> Value {
    let g = |k: &str| r.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "notice": "行政许可信息推送（事中事后监管）",
        "team": team,
        "licence_id": g("id"),
        "decision_no": g("decision_no"),
        "licence_name": g("licence_name"),
        "licence_no": g("licence_no"),
        "category": g("category"),
        "status": g("status"),
        "party": {
            "name": r.pointer("/party/name").cloned().unwrap_or(Value::Null),
            "type": r.pointer("/party/type").cloned().unwrap_or(Value::Null),
            "credit_code": r.pointer("/party/credit_code").cloned().unwrap_or(Value::Null),
            "legal_rep": r.pointer("/party/legal_rep").cloned().unwrap_or(Value::Null),
        },
        "content": g("content"),
        "valid_from": g("valid_from"),
        "valid_to": g("valid_to"),
        "jurisdiction": g("jurisdiction"),
        "authority": g("authority"),
        "commitment": g("commitment"),
        "commitment_conditions": g("commitment_conditions"),
        "commitment_due_at": g("commitment_due_at"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(record: Value) -> Incoming {
        Incoming {
            partition: 0,
            offset: 0,
            key: "k".into(),
            record,
            headers: Default::default(),
            payload_sha256: "ab".repeat(32),
            fetched_at_ms: None,
        }
    }

    /// What the supervision platform gets for a decision: the facts, the
    /// officers paired with their certificates, dates in local time, days
    /// to service, and no full ID number anywhere.
    #[test]
    fn a_supervision_act_carries_the_process_and_no_full_id_number() {
        // 2026-11-11 00:00 and 2026-11-13 15:00, Asia/Shanghai.
        let r = json!({"id": "pen:1", "version": 2, "action": "NEW", "decision_no": "宜高综执罚决字〔2026〕第1号",
            "power_item": "XZCF-0001", "officers": ["李明", "王芳"], "officer_certificates": ["42050200123", "42050200456"],
            "decided_at": 1_794_326_400_000_i64, "served_at": 1_794_553_200_000_i64,
            "legal_review_required": true, "legal_review_outcome": "PASSED", "legal_review_at": 1_794_240_000_000_i64,
            "party": {"name": "李娜", "type": "NATURAL_PERSON", "id_number": "11010519491231002X"},
            "violation": "当事人（身份证号11010519491231002X）占道经营"});
        let Some(Outgoing::Publish { key, body }) =
            Transform::Supervision.apply(&incoming(r)).unwrap()
        else {
            panic!("not a publication");
        };
        assert_eq!(key, "pen:1:v2");
        assert_eq!(body["idempotency_key"], "pen:1:v2");
        assert_eq!(body["power_item"], "XZCF-0001");
        assert_eq!(
            body["officers"],
            json!([{"name": "李明", "certificate_no": "42050200123"}, {"name": "王芳", "certificate_no": "42050200456"}])
        );
        assert_eq!(body["decided_at"], "2026-11-11 00:00:00");
        assert_eq!(body["served_at"], "2026-11-13 15:00:00");
        assert_eq!(body["days_to_service"], 2);
        assert_eq!(body["legal_review"]["outcome"], "PASSED");
        assert_eq!(body["legal_review"]["at"], "2026-11-10 00:00:00");
        let text = body.to_string();
        assert!(!text.contains("11010519491231002X"), "{text}");
        assert_eq!(body["party"]["id_number"], "110105********002X");
        // No decision number: refused, said.
        let err = Transform::Supervision
            .apply(&incoming(json!({"id": "pen:2", "version": 1})))
            .unwrap_err();
        assert!(err.contains("decision number"));
    }

    #[test]
    fn a_whitelist_keeps_only_what_was_named() {
        let r = json!({"id": "grid:1", "category": "DISPUTE", "reporter_phone": "138****0000",
            "party": {"name": "李娜", "id_number_masked": "110105********002X", "type": "NATURAL_PERSON"}});
        let out = whitelist(&r, &["category".into(), "party.name".into()]);
        assert_eq!(
            out,
            json!({"id": "grid:1", "category": "DISPUTE", "party": {"name": "李娜"}})
        );
    }

    #[test]
    fn keys_carry_the_version() {
        assert_eq!(
            idempotency_key(&incoming(json!({"id": "pen:1", "version": 2}))),
            "pen:1:v2"
        );
        assert_eq!(
            idempotency_key(&incoming(json!({"id": "dcm:1", "updated_at": 17}))),
            "dcm:1:u17"
        );
        assert!(idempotency_key(&incoming(json!({"id": "x"}))).starts_with("x:habab"));
        assert_eq!(
            idempotency_key(&incoming(
                json!({"id": "lic:许字〔2026〕1号", "version": 1})
            )),
            "lic:%E8%AE%B8%E5%AD%97%E3%80%942026%E3%80%951%E5%8F%B7:v1"
        );
    }

    #[test]
    fn licences_route_by_the_longest_prefix() {
        let t = Transform::Licence {
            routes: [
                ("420502".to_owned(), "一中队".to_owned()),
                ("420502002".to_owned(), "二中队".to_owned()),
            ]
            .into(),
            default_team: None,
        };
        let route =
            |area: &str| match t.apply(&incoming(json!({"id": "lic:1", "jurisdiction": area}))) {
                Ok(Some(Outgoing::Json { route, .. })) => route,
                other => panic!("{other:?}"),
            };
        assert_eq!(route("420502001").as_deref(), Some("一中队"));
        assert_eq!(route("420502002").as_deref(), Some("二中队"));
        assert!(
            t.apply(&incoming(
                json!({"id": "lic:2", "jurisdiction": "420506100"})
            ))
            .is_err()
        );
    }
}
