//! The credit publication clock (双公示): a penalty decision published on
//! the credit platform within its limit, a change or revocation within its
//! own; alerts when one is at risk or late.
//!
//! The clock runs for the decisions that must be published: one the policy
//! does not publish (a 轻微 decision under order 36, say) stops it. A
//! decision held for its credit severity class (待定级) keeps it running:
//! an alert says the class is needed, and a late one says why it is late.

use super::{Keeper, KeeperContext, ms};
use crate::bus::follow::Followed;
use crate::calendar::{CalendarError, local_text};
use crate::delivery::{Outcome, Receipt};
use crate::error::Result;
use crate::schema::decode_payload;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;

/// Settings of the credit publication clock and the blacklist.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreditConfig {
    /// Topic of canonical penalty decisions.
    #[serde(default = "default_decisions_topic")]
    pub decisions_topic: String,
    /// The delivery whose receipts mark a decision as published.
    pub delivery: String,
    /// A decision must be published within this limit of its date
    /// (default 7 working days, the 双公示 rule).
    #[serde(default = "default_publish_within")]
    pub publish_within: crate::calendar::Limit,
    /// A change, revocation, or confirmation as unlawful or void must reach
    /// the platform within this limit (default 3 working days: 行政处罚法
    /// art. 48, "三日" being working days by its art. 85).
    #[serde(default = "default_update_within")]
    pub update_within: crate::calendar::Limit,
    /// "At risk" when less than this share of the time is left.
    #[serde(default = "default_at_risk")]
    pub at_risk_share: f64,
    /// The list of seriously dishonest entities and its procedure
    /// (严重失信主体名单, 国办发〔2020〕49号); none when not configured.
    #[serde(default)]
    pub blacklist: Option<crate::keepers::blacklist::BlacklistConfig>,
}

fn default_decisions_topic() -> String {
    "canonical.penalty_decision".into()
}
fn default_publish_within() -> crate::calendar::Limit {
    "7 working days".parse().expect("a limit")
}
fn default_update_within() -> crate::calendar::Limit {
    "3 working days".parse().expect("a limit")
}
fn default_at_risk() -> f64 {
    0.3
}

/// One decision's publication as the clock follows it (`credit::Publication`
/// is what the credit platform receives).
#[derive(Debug, Clone)]
struct PublicationDue {
    decision_no: String,
    party: String,
    action: String,
    started: DateTime<Utc>,
    due: Result<DateTime<Utc>, CalendarError>,
    /// When the platform took it.
    published: Option<DateTime<Utc>>,
    not_published: bool,
    /// Held for an officer, with the reason (待定级).
    held: Option<String>,
    /// The decision record's `traceparent`: its alerts continue its trace.
    trace: Option<String>,
}

/// Publication deadlines of penalty decisions: 7 working days from the
/// decision (the 双公示 rule of the credit platform), 3 working days for a
/// change, revocation, or confirmation as unlawful or void (行政处罚法 art. 48
/// "三日内", working days by its art. 85); "at risk" when less than the
/// configured share of the time is left, "late" once it passed.
pub async fn run_credit_clock(
    ctx: KeeperContext,
    config: CreditConfig,
    shutdown: CancellationToken,
) {
    let make = || CreditClock {
        config: &config,
        items: BTreeMap::new(),
        alerted: BTreeSet::new(),
    };
    super::keep("publication clock", &ctx, make, &shutdown).await;
}

/// What the publication clock knows: each decision version's due time and
/// publication, and the alerts it raised.
struct CreditClock<'a> {
    config: &'a CreditConfig,
    items: BTreeMap<(String, i64), PublicationDue>,
    alerted: BTreeSet<String>,
}

impl Keeper for CreditClock<'_> {
    fn topics(&self, ctx: &KeeperContext) -> Vec<String> {
        vec![
            self.config.decisions_topic.clone(),
            ctx.receipts_topic.clone(),
            ctx.alerts_topic.clone(),
        ]
    }

    fn observe(&mut self, ctx: &KeeperContext, f: Followed) {
        let config = self.config;
        if f.topic == ctx.alerts_topic {
            self.alerted.insert(f.key);
        } else if f.topic == ctx.receipts_topic {
            let r = match serde_json::from_slice::<Receipt>(&f.payload) {
                Ok(r) => r,
                Err(e) => {
                    f.unreadable("publication clock", &e.to_string());
                    return;
                }
            };
            if r.delivery != config.delivery {
                return;
            }
            let version = r.version();
            if let Some(item) = self.items.get_mut(&(r.record_id.clone(), version)) {
                match r.outcome {
                    Outcome::Delivered => {
                        item.published = ms(r.at_ms);
                        item.held = None;
                    }
                    Outcome::NotSent => item.not_published = true,
                    Outcome::Held => item.held = r.reason.or(Some("待定级".into())),
                    _ => {}
                }
            }
        } else if f.topic == config.decisions_topic {
            let d = match decode_payload(&ctx.schemas, &f.headers, &f.payload) {
                Ok(d) => d,
                Err(e) => {
                    f.unreadable("publication clock", &e);
                    return;
                }
            };
            let Some(id) = d.get("id").and_then(Value::as_str) else {
                return;
            };
            let version = d.get("version").and_then(Value::as_i64).unwrap_or(1);
            let action = d
                .get("action")
                .and_then(Value::as_str)
                .unwrap_or("ISSUED")
                .to_owned();
            let at = |k: &str| d.get(k).and_then(Value::as_i64);
            let (started, limit) = if action == "ISSUED" {
                (at("decided_at").and_then(ms), config.publish_within)
            } else {
                (
                    at("changed_at").or(at("updated_at")).and_then(ms),
                    config.update_within,
                )
            };
            let Some(started) = started else {
                return;
            };
            let entry = self
                .items
                .entry((id.to_owned(), version))
                .or_insert(PublicationDue {
                    decision_no: d
                        .get("decision_no")
                        .and_then(Value::as_str)
                        .unwrap_or(id)
                        .to_owned(),
                    party: d
                        .pointer("/party/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    action: action.clone(),
                    started,
                    due: ctx.calendar.due(started, limit),
                    published: None,
                    not_published: false,
                    held: None,
                    trace: None,
                });
            entry.started = started;
            entry.trace = f.headers.get(crate::telemetry::trace::HEADER).cloned();
        }
    }

    async fn tick(&mut self, ctx: &KeeperContext) -> Result<()> {
        credit_tick(ctx, self.config, &self.items, &mut self.alerted).await
    }
}

/// Long because the publication clock's states per item (pending, at risk,
/// late, calendar missing), each alert raised once with its basis.
async fn credit_tick(
    ctx: &KeeperContext,
    config: &CreditConfig,
    items: &BTreeMap<(String, i64), PublicationDue>,
    alerted: &mut BTreeSet<String>,
) -> Result<()> {
    let now = ctx.clock.now();
    let (mut pending, mut at_risk, mut late) = (0, 0, 0);
    for ((id, version), item) in items {
        if item.not_published {
            continue;
        }
        let what = match item.action.as_str() {
            "REVOKED" => "撤销后的撤回公示",
            "CONFIRMED_UNLAWFUL" => "确认违法后的撤回公示",
            "CONFIRMED_VOID" => "确认无效后的撤回公示",
            "CHANGED" => "变更后的更新公示",
            _ => "公示",
        };
        let due = match &item.due {
            Ok(d) => *d,
            Err(e) => {
                let key = format!("credit:calendar:{e}");
                if alerted.insert(key.clone()) {
                    ctx.alert(
                        &key,
                        "CALENDAR_MISSING",
                        crate::alert::Severity::Critical,
                        id,
                        format!("无法计算公示期限：{e}"),
                        item.trace.as_deref(),
                    )
                    .await?;
                }
                continue;
            }
        };
        if let Some(at) = item.published {
            if at > due {
                let key = format!("credit:{id}:v{version}:late");
                if alerted.insert(key.clone()) {
                    ctx.alert(
                        &key,
                        "CREDIT_PUBLICATION_LATE",
                        crate::alert::Severity::Critical,
                        id,
                        format!(
                            "行政处罚决定{}（{}）应于{}前完成{what}，实际于{}完成，已逾期。",
                            item.decision_no,
                            item.party,
                            local_text(due),
                            local_text(at)
                        ),
                        item.trace.as_deref(),
                    )
                    .await?;
                }
            }
            continue;
        }
        pending += 1;
        let held = item
            .held
            .as_ref()
            .map(|why| format!("该决定暂未推送：{why}。"))
            .unwrap_or_default();
        if item.held.is_some() {
            let key = format!("credit:{id}:v{version}:held");
            if alerted.insert(key.clone()) {
                ctx.alert(
                    &key,
                    "CREDIT_CLASS_NEEDED",
                    crate::alert::Severity::Warning,
                    id,
                    format!(
                        "行政处罚决定{}（{}）须于{}前完成{what}。{held}",
                        item.decision_no,
                        item.party,
                        local_text(due)
                    ),
                    item.trace.as_deref(),
                )
                .await?;
            }
        }
        let total = (due - item.started).num_seconds().max(1) as f64;
        let left = (due - now).num_seconds() as f64;
        if left < 0.0 {
            late += 1;
            let key = format!("credit:{id}:v{version}:late");
            if alerted.insert(key.clone()) {
                ctx.alert(
                    &key,
                    "CREDIT_PUBLICATION_LATE",
                    crate::alert::Severity::Critical,
                    id,
                    format!(
                        "行政处罚决定{}（{}）应于{}前完成{what}，已逾期。{held}",
                        item.decision_no,
                        item.party,
                        local_text(due)
                    ),
                    item.trace.as_deref(),
                )
                .await?;
            }
        } else if left < config.at_risk_share * total {
            at_risk += 1;
            let key = format!("credit:{id}:v{version}:at_risk");
            if alerted.insert(key.clone()) {
                ctx.alert(
                    &key,
                    "CREDIT_PUBLICATION_AT_RISK",
                    crate::alert::Severity::Warning,
                    id,
                    format!(
                        "行政处罚决定{}（{}）须于{}前完成{what}，即将到期。{held}",
                        item.decision_no,
                        item.party,
                        local_text(due)
                    ),
                    item.trace.as_deref(),
                )
                .await?;
            }
        }
    }
    ctx.stats.credit_pending.store(pending, Ordering::Relaxed);
    ctx.stats.credit_at_risk.store(at_risk, Ordering::Relaxed);
    ctx.stats.credit_late.store(late, Ordering::Relaxed);
    Ok(())
}

/// `[credit]`: its delivery must exist, its blacklist check out, and the
/// hub must hold a pseudonym key (natural persons are keyed by it).
impl crate::section::Section for CreditConfig {
    fn problems(
        &self,
        name: &str,
        around: &crate::section::Around<'_>,
    ) -> Vec<crate::section::Problem> {
        use crate::section::Problem;
        let mut out = Vec::new();
        if !around.has_delivery(&self.delivery) {
            out.push(Problem::at(
                format!("{name}.delivery"),
                format!(
                    "no delivery `{}` (the one whose receipts mark decisions published)",
                    self.delivery
                ),
            ));
        }
        if let Some(Err(why)) = self.blacklist.as_ref().map(|b| b.validate()) {
            out.push(Problem::at(format!("{name}.blacklist"), why));
        }
        out.extend(around.pseudonym_problem("[credit] keys natural persons by pseudonym"));
        out
    }

    fn topics(&self) -> Vec<crate::bus::TopicSpec> {
        self.blacklist.iter().flat_map(|b| b.topics()).collect()
    }
}
