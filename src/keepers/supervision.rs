//! The supervision rates keeper (行政执法监督): what the supervisor of the
//! bureau watches, per month and power-list item (《行政执法监督条例》,
//! 国务院令第825号, in force 2026-02-01, art. 6; the three systems of
//! 国办发〔2018〕118号), kept on the rates topic as it changes.
//!
//! It follows the canonical penalty decisions, the credit push's receipts
//! (when the platform took each decision: publication within 7 working
//! days, 118号 part 二(三)), the leads topic (leads per item, and those
//! outside the bureau's powers) and the rates topic itself (what it wrote
//! before: its memory). On a tick it computes [`crate::supervision::rates`]
//! and writes each month and item whose counts changed, under the key
//! `rates:<month>:<item>`; a month and item that no longer has anything
//! (a decision's item corrected) is written with zero counts, never left
//! standing. The supervision feed delivers the topic
//! (`transform = { kind = "supervision_rates" }`), the desk's power-list
//! page reads it. Facts, never findings.

use super::{Keeper, KeeperContext};
use crate::bus::follow::Followed;
use crate::calendar::Limit;
use crate::error::Result;
use crate::schema::decode_payload;
use crate::supervision::{Beside, Rates};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tokio_util::sync::CancellationToken;

/// `[supervision]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SupervisionConfig {
    /// The canonical penalty decisions.
    #[serde(default = "default_decisions_topic")]
    pub decisions_topic: String,
    /// Leads for enforcement (`[pipelines.X.lead]` and the commitment
    /// tracker write there).
    #[serde(default = "default_leads_topic")]
    pub leads_topic: String,
    /// The credit push whose receipts say when a decision was published;
    /// without it every decision's publication is unknown.
    #[serde(default)]
    pub publication_delivery: Option<String>,
    /// 国办发〔2018〕118号 part 二(三): 7 working days.
    #[serde(default = "default_publish_within")]
    pub publish_within: Limit,
    /// Where the rates go (compacted: the latest counts of each month and
    /// item).
    #[serde(default = "default_rates_topic")]
    pub rates_topic: String,
    /// The power list's code table (`mappings/codes/<name>.yaml`), for the
    /// desk's page.
    #[serde(default = "default_power_list")]
    pub power_list: String,
}

fn default_decisions_topic() -> String {
    "canonical.penalty_decision".into()
}
fn default_leads_topic() -> String {
    "leads.enforcement".into()
}
fn default_publish_within() -> Limit {
    crate::supervision::PUBLISH_LIMIT
}
fn default_rates_topic() -> String {
    "supervision.rates".into()
}
fn default_power_list() -> String {
    "power_list".into()
}

impl SupervisionConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        for t in [&self.decisions_topic, &self.leads_topic, &self.rates_topic] {
            crate::bus::check_topic_name(t)?;
        }
        if self.publish_within.amount == 0 {
            return Err("`publish_within` is zero".into());
        }
        Ok(())
    }
}

/// The key a month and item's rates are written under.
pub fn rates_key(month: &str, item: &str) -> String {
    format!("rates:{month}:{item}")
}

/// Runs the rates keeper until `shutdown`.
pub async fn run_supervision(
    ctx: KeeperContext,
    config: SupervisionConfig,
    shutdown: CancellationToken,
) {
    let make = || RatesKeeper {
        config: &config,
        decisions: BTreeMap::new(),
        beside: Beside {
            publish_within: config.publish_within,
            ..Beside::default()
        },
        written: BTreeMap::new(),
        changed: true,
    };
    super::keep("supervision rates", &ctx, make, &shutdown).await;
}

struct RatesKeeper<'a> {
    config: &'a SupervisionConfig,
    /// The latest version of each decision, by id.
    decisions: BTreeMap<String, Value>,
    beside: Beside,
    /// Key → the counts last written there.
    written: BTreeMap<String, Value>,
    /// Something was read since the last computation.
    changed: bool,
}

/// The counts of a rates row: what is compared with what was written.
fn counts(r: &Rates) -> Value {
    let mut v = serde_json::to_value(r).expect("rates serialize");
    if let Some(o) = v.as_object_mut() {
        o.remove("month");
        o.remove("item");
    }
    v
}

impl Keeper for RatesKeeper<'_> {
    fn topics(&self, ctx: &KeeperContext) -> Vec<String> {
        let mut t = vec![
            self.config.decisions_topic.clone(),
            self.config.leads_topic.clone(),
            self.config.rates_topic.clone(),
        ];
        if self.config.publication_delivery.is_some() {
            t.push(ctx.receipts_topic.clone());
        }
        t
    }

    fn observe(&mut self, ctx: &KeeperContext, f: Followed) {
        self.changed = true;
        if f.topic == self.config.rates_topic {
            match serde_json::from_slice::<Value>(&f.payload) {
                Ok(v) => {
                    self.written.insert(
                        f.key.clone(),
                        v.get("counts").cloned().unwrap_or(Value::Null),
                    );
                }
                Err(e) => f.unreadable("supervision rates", &e.to_string()),
            }
        } else if f.topic == self.config.leads_topic {
            match serde_json::from_slice::<Value>(&f.payload) {
                Ok(lead) => self.beside.observe_lead(lead),
                Err(e) => f.unreadable("supervision rates", &e.to_string()),
            }
        } else if f.topic == ctx.receipts_topic {
            match serde_json::from_slice::<crate::delivery::Receipt>(&f.payload) {
                Ok(r) => {
                    if let Some(d) = &self.config.publication_delivery {
                        self.beside.observe_receipt(&r, d);
                    }
                }
                Err(e) => f.unreadable("supervision rates", &e.to_string()),
            }
        } else {
            match decode_payload(&ctx.schemas, &f.headers, &f.payload) {
                Ok(d) => {
                    let Some(id) = d.get("id").and_then(Value::as_str).map(str::to_owned) else {
                        f.unreadable("supervision rates", "a decision without an id");
                        return;
                    };
                    let version = |d: &Value| d.get("version").and_then(Value::as_i64);
                    if self
                        .decisions
                        .get(&id)
                        .is_none_or(|old| version(&d) >= version(old))
                    {
                        self.decisions.insert(id, d);
                    }
                }
                Err(e) => f.unreadable("supervision rates", &e),
            }
        }
    }

    async fn tick(&mut self, ctx: &KeeperContext) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        let rates =
            match crate::supervision::rates(self.decisions.values(), &self.beside, &ctx.calendar) {
                Ok(r) => r,
                Err(why) => {
                    // A decision the rates cannot read (no date, a year the
                    // calendar does not have) is the case system's to correct:
                    // said once a round, and the rest waits for it.
                    tracing::error!(error = %why, "supervision rates not computed");
                    self.changed = false;
                    return Ok(());
                }
            };
        // Every month and item whose counts changed, and with zeros every
        // one written before that has nothing now (a decision's item
        // corrected): never left standing.
        let mut rows: BTreeMap<String, Rates> = rates
            .into_iter()
            .map(|r| (rates_key(&r.month, &r.item), r))
            .collect();
        for key in self.written.keys() {
            if !rows.contains_key(key) {
                let mut parts = key.trim_start_matches("rates:").splitn(2, ':');
                let (month, item) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                rows.insert(
                    key.clone(),
                    Rates {
                        month: month.into(),
                        item: item.into(),
                        ..Rates::default()
                    },
                );
            }
        }
        let now = ctx.clock.now().timestamp_millis();
        for (key, r) in rows {
            let c = counts(&r);
            if self.written.get(&key) == Some(&c) {
                continue;
            }
            let body = json!({
                "id": key.trim_start_matches("rates:"),
                "month": r.month, "item": r.item, "counts": c, "updated_at": now,
                "basis": "《行政执法监督条例》（国务院令第825号）第六条；国办发〔2018〕118号；《行政处罚法》第五十八条、第六十一条",
            });
            // A month's rates are about many decisions: no one trace.
            ctx.send(&self.config.rates_topic, &key, &body, None)
                .await?;
            self.written.insert(key, c);
        }
        self.changed = false;
        Ok(())
    }
}

/// `[supervision]`: its own checks, and the delivery whose receipts say
/// when a decision was published must exist.
impl crate::section::Section for SupervisionConfig {
    fn problems(
        &self,
        name: &str,
        around: &crate::section::Around<'_>,
    ) -> Vec<crate::section::Problem> {
        let mut out: Vec<_> = crate::section::own(name, self.validate())
            .into_iter()
            .collect();
        if let Some(d) = &self.publication_delivery
            && !around.has_delivery(d)
        {
            out.push(crate::section::Problem::at(
                format!("{name}.publication_delivery"),
                format!("no delivery `{d}` (the credit push whose receipts say when a decision was published)"),
            ));
        }
        out
    }

    /// The rates topic: compacted, the latest counts a key.
    fn topics(&self) -> Vec<crate::bus::TopicSpec> {
        vec![crate::bus::TopicSpec::single(
            self.rates_topic.clone(),
            crate::bus::Cleanup::Compact,
        )]
    }
}
