//! Enforcement leads (执法线索) raised by an ingest pipeline.
//!
//! `[pipelines.X.lead]` names which mapped records are leads for the
//! enforcement teams (`select`, on the canonical record), the field that
//! holds their jurisdiction, and the route table from jurisdiction to team
//! (the longest matching prefix, as for licence notices). Each selected
//! record also writes one lead to `topic` (default `leads.enforcement`),
//! in the same acknowledgement (or transaction) as the record itself, so a
//! crash loses neither and a record written again writes its lead again
//! under the same key (`lead:<pipeline>:<record key>`).
//!
//! A lead holds the kind, the team, the jurisdiction, the record's key and
//! topic, and the canonical fields named in `fields` (personal data there is
//! already masked by the mapping, as on the canonical topic).

use crate::delivery::config::{Select, field, route_team};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `[pipelines.X.lead]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeadConfig {
    /// Where leads go.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// The lead's kind, for the teams' queue (e.g. `VIDEO_ALARM`).
    pub kind: String,
    /// Which canonical records are leads.
    pub select: Select,
    /// The canonical field (dotted path) holding the jurisdiction code.
    pub jurisdiction: String,
    /// Jurisdiction code prefix → enforcement team; the longest matching
    /// prefix wins.
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    /// The team of a jurisdiction no route matches.
    #[serde(default)]
    pub default_team: Option<String>,
    /// The canonical fields (dotted paths) the lead carries.
    #[serde(default)]
    pub fields: Vec<String>,
    /// The power list (权责清单): where the record says which item it falls
    /// under and which team exercises it. With it a lead goes to the team
    /// that holds the power (`team`; the jurisdiction's route stays beside
    /// it as `area_team`), and a selected record under no item is written
    /// as outside the bureau's powers (`outside_powers`, no team): shown,
    /// never dispatched (《行政执法监督条例》 art. 6 supervises enforcement
    /// outside one's powers).
    #[serde(default)]
    pub power: Option<PowerFields>,
}

/// `[pipelines.X.lead] power`: the canonical fields (dotted paths) holding
/// the power-list item, its name and its team.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerFields {
    pub item: String,
    #[serde(default)]
    pub name: Option<String>,
    pub team: String,
}

fn default_topic() -> String {
    "leads.enforcement".into()
}

impl LeadConfig {
    /// Where the leads go, kept whole: enforcement works from them.
    pub fn topics(&self) -> Vec<crate::bus::TopicSpec> {
        vec![crate::bus::TopicSpec::single(
            self.topic.clone(),
            crate::bus::Cleanup::Keep,
        )]
    }

    pub fn validate(&self) -> Result<(), String> {
        self.select.validate()?;
        crate::bus::check_topic_name(&self.topic)?;
        if self.kind.trim().is_empty() {
            return Err("`kind` is empty".into());
        }
        if self.routes.is_empty() && self.default_team.is_none() {
            return Err("`routes` is empty and there is no `default_team`".into());
        }
        Ok(())
    }

    /// The lead `record` (canonical JSON, written under `key` on
    /// `source_topic` by `pipeline`) raises, if it is one: its key and body.
    pub fn lead_of(
        &self,
        pipeline: &str,
        source_topic: &str,
        key: &str,
        record: &Value,
        at_ms: i64,
    ) -> Option<(String, Vec<u8>)> {
        if !self.select.holds(record) {
            return None;
        }
        let area = field(record, &self.jurisdiction)
            .and_then(Value::as_str)
            .unwrap_or("");
        let area_team = route_team(&self.routes, self.default_team.as_ref(), area);
        let id = format!("lead:{pipeline}:{key}");
        let mut lead = json!({
            "id": id,
            "kind": self.kind,
            "team": area_team,
            "jurisdiction": area,
            "record_key": key,
            "record_topic": source_topic,
            "record": crate::delivery::transform::whitelist(record, &self.fields),
            "at_ms": at_ms,
        });
        if let Some(power) = &self.power {
            let text = |path: &str| {
                field(record, path)
                    .and_then(Value::as_str)
                    .filter(|t| !t.trim().is_empty())
            };
            let item = text(&power.item);
            let team = item.and(text(&power.team));
            lead["power_item"] = json!(item);
            lead["power_item_name"] = json!(power.name.as_deref().and_then(text));
            lead["area_team"] = json!(area_team);
            lead["team"] = json!(team);
            lead["outside_powers"] = json!(item.is_none());
            if item.is_none() {
                lead["reason"] = json!("不在本局权责清单内，不派发");
            } else if team.is_none() {
                lead["reason"] = json!("权责清单事项未写明实施机构，待指定");
            }
        }
        Some((id, serde_json::to_vec(&lead).expect("leads serialize")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LeadConfig {
        toml::from_str(
            r#"
            kind = "VIDEO_ALARM"
            jurisdiction = "location.grid"
            routes = { "420502" = "高新区执法大队", "420502001" = "东山中队" }
            fields = ["event_type", "confidence"]
            select = { all = [{ field = "enforcement", eq = true }, { field = "confidence", at_least = 0.8 }] }
            "#,
        )
        .unwrap()
    }

    #[test]
    fn a_selected_record_raises_a_lead_for_the_team_of_its_longest_prefix() {
        let c = config();
        c.validate().unwrap();
        let record = json!({"id": "a1", "enforcement": true, "confidence": 0.91,
            "event_type": "STREET_VENDING", "location": {"grid": "420502001003"}, "snapshot": "x"});
        let (key, body) = c
            .lead_of("video", "canonical.video_alarm", "a1", &record, 7)
            .unwrap();
        assert_eq!(key, "lead:video:a1");
        let lead: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(lead["team"], "东山中队");
        assert_eq!(lead["kind"], "VIDEO_ALARM");
        assert_eq!(
            lead["record"],
            json!({"id": "a1", "event_type": "STREET_VENDING", "confidence": 0.91})
        );
        let elsewhere =
            json!({"enforcement": true, "confidence": 0.9, "location": {"grid": "420502777001"}});
        let (_, body) = c.lead_of("video", "t", "a2", &elsewhere, 7).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap()["team"],
            "高新区执法大队"
        );
    }

    /// With the power list, the team that holds the power gets the lead
    /// (the grid's squad beside it); a record under no item is written as
    /// outside the bureau's powers, with no team, and says so.
    #[test]
    fn a_lead_goes_to_the_team_of_its_power_item_and_one_under_none_is_not_dispatched() {
        let mut c = config();
        c.select = toml::from_str::<LeadConfig>(
            r#"
            kind = "VIDEO_ALARM"
            jurisdiction = "location.grid"
            select = { field = "confidence", at_least = 0.8 }
            default_team = "x"
            "#,
        )
        .unwrap()
        .select;
        c.power = Some(PowerFields {
            item: "power_item".into(),
            name: Some("power_item_name".into()),
            team: "power_team".into(),
        });
        let within = json!({"confidence": 0.9, "location": {"grid": "420502001003"},
            "power_item": "XZCF-SR-0001", "power_item_name": "占道", "power_team": "市容环境执法大队"});
        let (_, body) = c.lead_of("video", "t", "a", &within, 0).unwrap();
        let lead: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(lead["team"], "市容环境执法大队");
        assert_eq!(lead["area_team"], "东山中队");
        assert_eq!(lead["power_item"], "XZCF-SR-0001");
        assert_eq!(lead["power_item_name"], "占道");
        assert_eq!(lead["outside_powers"], false);
        assert!(lead.get("reason").is_none());

        let outside = json!({"confidence": 0.95, "location": {"grid": "420502001003"},
            "power_item": null, "power_team": null});
        let (_, body) = c.lead_of("video", "t", "b", &outside, 0).unwrap();
        let lead: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(lead["team"], Value::Null);
        assert_eq!(lead["outside_powers"], true);
        assert_eq!(lead["area_team"], "东山中队");
        assert_eq!(lead["reason"], "不在本局权责清单内，不派发");

        // A team is never taken from a record that names none for its item.
        let no_team = json!({"confidence": 0.95, "location": {"grid": "1"}, "power_item": "X"});
        let (_, body) = c.lead_of("video", "t", "c", &no_team, 0).unwrap();
        let lead: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(lead["team"], Value::Null);
        assert_eq!(lead["outside_powers"], false);
        assert_eq!(lead["reason"], "权责清单事项未写明实施机构，待指定");
    }

    #[test]
    fn a_record_below_the_confidence_or_of_another_type_raises_none() {
        let c = config();
        let low =
            json!({"enforcement": true, "confidence": 0.79, "location": {"grid": "420502001003"}});
        assert!(c.lead_of("video", "t", "k", &low, 0).is_none());
        let crowd =
            json!({"enforcement": false, "confidence": 0.99, "location": {"grid": "420502001003"}});
        assert!(c.lead_of("video", "t", "k", &crowd, 0).is_none());
        let unrouted =
            json!({"enforcement": true, "confidence": 0.99, "location": {"grid": "110101001001"}});
        let (_, body) = c.lead_of("video", "t", "k", &unrouted, 0).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap()["team"],
            Value::Null
        );
    }
}
