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
}

fn default_topic() -> String {
    "leads.enforcement".into()
}

impl LeadConfig {
    /// Where the leads go, kept whole: enforcement works from them.
    pub fn topics(&self) -> Vec<crate::bus::TopicSpec> {
        vec![crate::bus::TopicSpec {
            name: self.topic.clone(),
            partitions: 1,
            cleanup: crate::bus::Cleanup::Keep,
        }]
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
        let team = route_team(&self.routes, self.default_team.as_ref(), area);
        let id = format!("lead:{pipeline}:{key}");
        let lead = json!({
            "id": id,
            "kind": self.kind,
            "team": team,
            "jurisdiction": area,
            "record_key": key,
            "record_topic": source_topic,
            "record": crate::delivery::transform::whitelist(record, &self.fields),
            "at_ms": at_ms,
        });
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
