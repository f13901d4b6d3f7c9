//! The commitment tracker (告知承诺): a licence granted on a commitment is
//! watched until the commitment is met; enforcement is warned before it falls
//! due and gets a lead once it passed unmet.

use super::{Keeper, KeeperContext, ms};
use crate::bus::follow::Followed;
use crate::calendar::{Calendar, Limit, local_text};
use crate::error::Result;
use crate::schema::decode_payload;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;

/// Settings of the commitment (告知承诺) tracker.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommitmentConfig {
    #[serde(default = "default_licence_topic")]
    pub licence_topic: String,
    /// Warn enforcement this long before a commitment falls due.
    #[serde(default = "default_warn_before")]
    pub warn_before: crate::calendar::Limit,
    /// Leads for enforcement (a commitment past due, unmet).
    #[serde(default = "default_leads_topic")]
    pub leads_topic: String,
}

fn default_licence_topic() -> String {
    "canonical.licence".into()
}
fn default_warn_before() -> crate::calendar::Limit {
    "7 days".parse().expect("a limit")
}
fn default_leads_topic() -> String {
    "leads.enforcement".into()
}

#[derive(Debug)]
struct Commitment {
    licence_no: String,
    party: String,
    conditions: String,
    jurisdiction: String,
    due: DateTime<Utc>,
    met: bool,
    /// The licence record's `traceparent`: its lead and alerts continue
    /// its trace.
    trace: Option<String>,
}

/// Licences granted on a commitment: warn enforcement before the date,
/// raise a lead when it passes unmet.
pub async fn run_commitments(
    ctx: KeeperContext,
    config: CommitmentConfig,
    shutdown: CancellationToken,
) {
    let make = || CommitmentTracker {
        config: &config,
        items: BTreeMap::new(),
        done: BTreeSet::new(),
    };
    super::keep("commitment tracker", &ctx, make, &shutdown).await;
}

/// What the commitment tracker knows: the licences granted on a
/// commitment, and the alerts and leads it raised.
struct CommitmentTracker<'a> {
    config: &'a CommitmentConfig,
    items: BTreeMap<String, Commitment>,
    done: BTreeSet<String>,
}

impl Keeper for CommitmentTracker<'_> {
    fn topics(&self, ctx: &KeeperContext) -> Vec<String> {
        vec![
            self.config.licence_topic.clone(),
            ctx.alerts_topic.clone(),
            self.config.leads_topic.clone(),
        ]
    }

    fn observe(&mut self, ctx: &KeeperContext, f: Followed) {
        if f.topic == ctx.alerts_topic || f.topic == self.config.leads_topic {
            self.done.insert(f.key);
            return;
        }
        let l = match decode_payload(&ctx.schemas, &f.headers, &f.payload) {
            Ok(l) => l,
            Err(e) => {
                f.unreadable("commitment tracker", &e);
                return;
            }
        };
        let Some(id) = l.get("id").and_then(Value::as_str) else {
            return;
        };
        if l.get("commitment").and_then(Value::as_bool) != Some(true) {
            self.items.remove(id);
            return;
        }
        let Some(due) = l
            .get("commitment_due_at")
            .and_then(Value::as_i64)
            .and_then(ms)
        else {
            return;
        };
        let s = |k: &str| l.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        self.items.insert(
            id.to_owned(),
            Commitment {
                licence_no: l
                    .get("licence_no")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| s("decision_no")),
                party: l
                    .pointer("/party/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                conditions: s("commitment_conditions"),
                jurisdiction: s("jurisdiction"),
                due,
                met: l.get("commitment_met").and_then(Value::as_bool) == Some(true),
                trace: f.headers.get(crate::telemetry::trace::HEADER).cloned(),
            },
        );
    }

    async fn tick(&mut self, ctx: &KeeperContext) -> Result<()> {
        commitment_tick(ctx, self.config, &self.items, &mut self.done).await
    }
}

async fn commitment_tick(
    ctx: &KeeperContext,
    config: &CommitmentConfig,
    items: &BTreeMap<String, Commitment>,
    done: &mut BTreeSet<String>,
) -> Result<()> {
    let now = ctx.clock.now();
    let (mut soon, mut leads) = (0, 0);
    for (id, c) in items.iter().filter(|(_, c)| !c.met) {
        if now > c.due {
            leads += 1;
            let key = format!("lead:commitment:{id}");
            if done.insert(key.clone()) {
                let lead = json!({
                    "id": key, "kind": "COMMITMENT_UNMET", "licence_id": id, "licence_no": c.licence_no,
                    "party": c.party, "conditions": c.conditions, "jurisdiction": c.jurisdiction,
                    "due_at": c.due.timestamp_millis(),
                    "message": format!("{}承诺事项（{}）已于{}到期未履行，请组织核查。", c.party, c.conditions, local_text(c.due)),
                    "at_ms": now.timestamp_millis(),
                });
                ctx.send(&config.leads_topic, &key, &lead, c.trace.as_deref())
                    .await?;
                ctx.alert(
                    &format!("commitment:{id}:unmet"),
                    "COMMITMENT_UNMET",
                    crate::alert::Severity::Critical,
                    id,
                    lead["message"].as_str().unwrap_or("").to_owned(),
                    c.trace.as_deref(),
                )
                .await?;
            }
        } else if warn_window(c.due, config.warn_before, &ctx.calendar)
            .is_some_and(|start| now >= start)
        {
            soon += 1;
            let key = format!("commitment:{id}:due_soon");
            if done.insert(key.clone()) {
                ctx.alert(
                    &key,
                    "COMMITMENT_DUE_SOON",
                    crate::alert::Severity::Warning,
                    id,
                    format!(
                        "{}的告知承诺事项（{}）将于{}到期，请提前核查。",
                        c.party,
                        c.conditions,
                        local_text(c.due)
                    ),
                    c.trace.as_deref(),
                )
                .await?;
            }
        }
    }
    ctx.stats
        .commitments_due_soon
        .store(soon, Ordering::Relaxed);
    ctx.stats.commitment_leads.store(leads, Ordering::Relaxed);
    Ok(())
}

/// When the warning period before `due` starts.
fn warn_window(due: DateTime<Utc>, before: Limit, _calendar: &Calendar) -> Option<DateTime<Utc>> {
    let span = match before.unit {
        crate::calendar::Unit::Hours => chrono::Duration::hours(i64::from(before.amount)),
        _ => chrono::Duration::days(i64::from(before.amount)),
    };
    due.checked_sub_signed(span)
}

/// `[commitments]`: nothing to check beyond its types.
impl crate::section::Section for CommitmentConfig {
    fn problems(
        &self,
        _name: &str,
        _around: &crate::section::Around<'_>,
    ) -> Vec<crate::section::Problem> {
        Vec::new()
    }

    /// The leads it raises, kept whole: they are the keeper's memory of
    /// what it raised.
    fn topics(&self) -> Vec<crate::bus::TopicSpec> {
        vec![crate::bus::TopicSpec::single(
            self.leads_topic.clone(),
            crate::bus::Cleanup::Keep,
        )]
    }
}
