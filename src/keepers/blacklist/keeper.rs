//! The blacklist keeper: proposes entities that meet a criterion, folds each
//! case's procedure events, and writes decided listings and removals to the
//! list topic.

use super::{BlacklistConfig, CaseView, Criterion, EventKind, Ground, ProcedureEvent, Proposal};
use crate::bus::follow::Followed;
use crate::calendar::Calendar;
use crate::error::Result;
use crate::keepers::CreditConfig;
use crate::keepers::{Keeper, KeeperContext, ms};
use crate::schema::decode_payload;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
struct Entity {
    name: String,
    credit_code: Option<String>,
    grounds: BTreeMap<String, Ground>,
}

/// The list's keeper: penalty decisions per entity, the procedure's events
/// per entity, and what the list topic says.
struct ListKeeper {
    config: BlacklistConfig,
    calendar: Arc<Calendar>,
    pseudonyms: crate::personal::Pseudonyms,
    entities: BTreeMap<String, Entity>,
    events: BTreeMap<String, Vec<ProcedureEvent>>,
    /// What the list topic last said per entity: listed or not, its
    /// version, and the case.
    written: BTreeMap<String, (bool, i64, String)>,
    /// Decision numbers (文号) revoked, or confirmed unlawful or void, by a
    /// record of their own: they end the original whatever its record id.
    ended_numbers: BTreeSet<String>,
    /// While the deployment changes suite: a person's earlier pseudonym →
    /// their pseudonym now, learnt from the decisions that name them.
    carried: BTreeMap<String, String>,
}

/// What the keeper does on a tick: steps of the procedure that are the
/// hub's, and entries of the list.
#[derive(Debug, Default, PartialEq)]
struct Writes {
    events: Vec<ProcedureEvent>,
    entries: Vec<(String, Value)>,
    /// List entries under an earlier pseudonym, carried over: a tombstone
    /// each on the compacted list topic.
    removed: Vec<String>,
}

impl ListKeeper {
    fn new(
        config: BlacklistConfig,
        calendar: Arc<Calendar>,
        pseudonyms: crate::personal::Pseudonyms,
    ) -> Self {
        Self {
            config,
            calendar,
            pseudonyms,
            entities: BTreeMap::new(),
            events: BTreeMap::new(),
            written: BTreeMap::new(),
            ended_numbers: BTreeSet::new(),
            carried: BTreeMap::new(),
        }
    }

    fn observe_decision(&mut self, d: &Value) {
        let Some(key) = crate::credit::entity_key(d, &self.pseudonyms) else {
            return;
        };
        if let Some(earlier) = crate::credit::earlier_entity_key(d, &self.pseudonyms) {
            self.carried.insert(earlier, key.clone());
        }
        let Some(id) = d.get("id").and_then(Value::as_str) else {
            return;
        };
        let Some(decided) = d.get("decided_at").and_then(Value::as_i64).and_then(ms) else {
            return;
        };
        let decision_no = d
            .get("decision_no")
            .and_then(Value::as_str)
            .unwrap_or(id)
            .to_owned();
        // Only an explicit version ends a ground (行政处罚法 art. 48):
        // revoked, confirmed unlawful or void, matched by record id or by
        // decision number.
        let ended = matches!(
            d.get("action").and_then(Value::as_str),
            Some("REVOKED" | "CONFIRMED_UNLAWFUL" | "CONFIRMED_VOID")
        );
        if ended {
            self.ended_numbers.insert(decision_no.clone());
            for e in self.entities.values_mut() {
                for g in e.grounds.values_mut() {
                    if g.decision_no == decision_no {
                        g.revoked = true;
                    }
                }
            }
        }
        let revoked = ended || self.ended_numbers.contains(&decision_no);
        let entity = self.entities.entry(key).or_insert_with(|| Entity {
            name: d
                .pointer("/party/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            credit_code: d
                .pointer("/party/credit_code")
                .and_then(Value::as_str)
                .map(str::to_owned),
            grounds: BTreeMap::new(),
        });
        entity.grounds.insert(
            id.to_owned(),
            Ground {
                id: id.to_owned(),
                decision_no,
                decided,
                serious: d.get("serious").and_then(Value::as_bool).unwrap_or(false),
                categories: crate::credit::categories_of(d),
                industry: d
                    .get("industry")
                    .and_then(Value::as_str)
                    .unwrap_or("OTHER")
                    .to_owned(),
                revoked,
            },
        );
    }

    fn observe_event(&mut self, e: ProcedureEvent) {
        let list = self.events.entry(e.entity.clone()).or_default();
        if !list.iter().any(|x| x.id == e.id) {
            list.push(e);
        }
    }

    fn observe_entry(&mut self, key: &str, v: &Value) {
        let listed = v.get("action").and_then(Value::as_str) == Some("ADD");
        let version = v.get("version").and_then(Value::as_i64).unwrap_or(0);
        let case = v
            .get("case_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        self.written.insert(key.to_owned(), (listed, version, case));
    }

    /// A tombstone on the list topic: nothing is written under the key.
    fn observe_removal(&mut self, key: &str) {
        self.written.remove(key);
    }

    /// While the deployment changes suite: what is kept under a person's
    /// earlier pseudonym moves to their pseudonym now. The procedure's
    /// steps are written again under the new key (same step ids: a step
    /// carried twice counts once), and the list entry under the earlier
    /// key is removed (the new key's entry follows from the steps).
    fn carry_over(&mut self, out: &mut Writes) {
        for (earlier, now) in &self.carried {
            if let Some(steps) = self.events.remove(earlier) {
                let have: BTreeSet<String> = self
                    .events
                    .get(now)
                    .map(|l| l.iter().map(|e| e.id.clone()).collect())
                    .unwrap_or_default();
                let (from, to) = (format!("blc:{earlier}:"), format!("blc:{now}:"));
                for mut e in steps {
                    if have.contains(&e.id) {
                        continue;
                    }
                    e.entity = now.clone();
                    // The case is the person's under their new key; the
                    // step keeps its id, so carrying it twice counts once.
                    if let Some(rest) = e.case_id.strip_prefix(&from) {
                        e.case_id = format!("{to}{rest}");
                    }
                    out.events.push(e.clone());
                    self.events.entry(now.clone()).or_default().push(e);
                }
            }
            if self.written.remove(earlier).is_some() {
                out.removed.push(earlier.clone());
            }
        }
    }

    /// Persons kept under a pseudonym of a form the deployment no longer
    /// makes and not carried over — a step whose copy is under no current
    /// key, or a list entry not removed: left as they are (nothing is
    /// written for them, nothing is inferred), and said.
    fn left_behind(&self) -> Vec<&str> {
        let carried: BTreeSet<&str> = self
            .events
            .iter()
            .filter(|(k, _)| !self.pseudonyms.is_earlier_form(k))
            .flat_map(|(_, l)| l.iter().map(|e| e.id.as_str()))
            .collect();
        let steps = self.events.iter().filter(|(k, l)| {
            self.pseudonyms.is_earlier_form(k) && l.iter().any(|e| !carried.contains(e.id.as_str()))
        });
        let entries = self
            .written
            .keys()
            .filter(|k| self.pseudonyms.is_earlier_form(k));
        let keys: BTreeSet<&str> = steps
            .map(|(k, _)| k.as_str())
            .chain(entries.map(String::as_str))
            .collect();
        keys.into_iter().collect()
    }

    /// The hub's steps and the list's entries due at `now`; what it
    /// returns is also taken into its own memory.
    fn tick(&mut self, now: DateTime<Utc>) -> Writes {
        let mut out = Writes::default();
        self.carry_over(&mut out);
        let keys: BTreeSet<String> = self
            .entities
            .keys()
            .chain(self.events.keys())
            .filter(|k| !self.pseudonyms.is_earlier_form(k))
            .cloned()
            .collect();
        for key in keys {
            for e in self.steps(&key, now) {
                self.observe_event(e.clone());
                out.events.push(e);
            }
            if let Some(entry) = self.entry(&key, now) {
                self.observe_entry(&key, &entry);
                out.entries.push((key, entry));
            }
        }
        out
    }

    fn cases(&self, key: &str, now: DateTime<Utc>) -> Vec<CaseView> {
        self.events.get(key).map_or_else(Vec::new, |events| {
            super::cases(events, &self.config, &self.calendar, now)
        })
    }

    /// The hub's own steps for one entity: a proposal when a criterion is
    /// met and nothing is open, the end of a case whose grounds are gone,
    /// the end of a listing whose term has lapsed.
    fn steps(&self, key: &str, now: DateTime<Utc>) -> Vec<ProcedureEvent> {
        let cases = self.cases(key, now);
        let Some(entity) = self.entities.get(key) else {
            return Vec::new();
        };
        if let Some(open) = cases.iter().find(|c| c.state.open()) {
            let Some(p) = &open.proposal else {
                return Vec::new();
            };
            let at = open.proposed_at.and_then(ms).unwrap_or(now);
            let grounds: Vec<&Ground> = p
                .grounds
                .iter()
                .filter_map(|id| entity.grounds.get(id))
                .collect();
            // A ground the keeper has not read (deleted by the topic's
            // retention, say) still stands: nothing is inferred from a
            // missing record. Only explicit revocations end a case.
            let all_known = grounds.len() == p.grounds.len();
            let still = p
                .criteria
                .iter()
                .any(|c| c.met(grounds.iter().copied(), at).is_some());
            if all_known && !still {
                return vec![super::hub_event(
                    open,
                    EventKind::GroundsRevoked,
                    now,
                    "所依据的行政处罚决定已被撤销或确认违法、无效（行政处罚法第四十八条），不再符合列入条件".into(),
                )];
            }
            if open.listed()
                && open
                    .listed_until
                    .is_some_and(|until| now.timestamp_millis() >= until)
            {
                return vec![super::hub_event(
                    open,
                    EventKind::TermExpired,
                    now,
                    format!(
                        "列入期限（{}，{}）届满",
                        self.config.listing_term.limit.label(),
                        self.config.listing_term.basis
                    ),
                )];
            }
            return Vec::new();
        }
        let met: Vec<(&Criterion, Vec<&Ground>, String)> = self
            .config
            .criteria
            .iter()
            .filter_map(|c| c.met(entity.grounds.values(), now).map(|(g, r)| (c, g, r)))
            .collect();
        if met.is_empty() {
            return Vec::new();
        }
        let mut grounds: Vec<&Ground> =
            met.iter().flat_map(|(_, g, _)| g.iter().copied()).collect();
        grounds.sort_by(|a, b| (a.decided, &a.id).cmp(&(b.decided, &b.id)));
        grounds.dedup_by(|a, b| a.id == b.id);
        let ids: BTreeSet<&str> = grounds.iter().map(|g| g.id.as_str()).collect();
        // The same grounds are proposed once: a case closed on them (not
        // listed, repaired, expired) is not opened again by the hub.
        if cases.iter().any(|c| {
            c.proposal
                .as_ref()
                .is_some_and(|p| ids.iter().all(|id| p.grounds.iter().any(|g| g == id)))
        }) {
            return Vec::new();
        }
        let case_id = super::case_id(key, now.timestamp_millis());
        vec![ProcedureEvent {
            id: format!("{case_id}:PROPOSED"),
            case_id,
            entity: key.to_owned(),
            event: EventKind::Proposed,
            at_ms: now.timestamp_millis(),
            by: "duijie".into(),
            effective_ms: None,
            text: None,
            proposal: Some(Proposal {
                name: entity.name.clone(),
                credit_code: entity.credit_code.clone(),
                criteria: met.iter().map(|(c, _, _)| (*c).clone()).collect(),
                reasons: met.iter().map(|(_, _, r)| r.clone()).collect(),
                grounds: grounds.iter().map(|g| g.id.clone()).collect(),
                decision_nos: grounds.iter().map(|g| g.decision_no.clone()).collect(),
                latest_decided_ms: grounds
                    .iter()
                    .map(|g| g.decided.timestamp_millis())
                    .max()
                    .unwrap_or_default(),
            }),
        }]
    }

    /// The list entry to write for one entity, if the list topic does not
    /// say it yet: a decided listing, or the removal of one.
    fn entry(&self, key: &str, now: DateTime<Utc>) -> Option<Value> {
        let cases = self.cases(key, now);
        let (was_listed, version, was_case) =
            self.written
                .get(key)
                .cloned()
                .unwrap_or((false, 0, String::new()));
        if let Some(listed) = cases.iter().find(|c| c.listed()) {
            if was_listed && was_case == listed.case_id {
                return None;
            }
            return Some(super::list_entry(
                listed,
                &self.config.measures,
                version + 1,
                now,
            ));
        }
        if !was_listed {
            return None;
        }
        let removed = cases.iter().find(|c| c.case_id == was_case)?;
        Some(super::list_entry(
            removed,
            &self.config.measures,
            version + 1,
            now,
        ))
    }

    fn counts(&self, now: DateTime<Utc>) -> (u64, u64) {
        let (mut listed, mut open) = (0, 0);
        for key in self.events.keys() {
            if self.pseudonyms.is_earlier_form(key) {
                continue;
            }
            for c in self.cases(key, now) {
                if c.listed() {
                    listed += 1;
                } else if c.state.open() {
                    open += 1;
                }
            }
        }
        (listed, open)
    }
}

/// The list's keeper: follows the decisions, the procedure and the list,
/// and once it has read their history, writes on each tick the hub's steps
/// (the procedure's events first) and then the list entries they make due.
/// When a write fails, it forgets everything and reads it back from the
/// topics, so nothing is half-remembered.
pub async fn run_blacklist(ctx: KeeperContext, config: CreditConfig, shutdown: CancellationToken) {
    let Some(list) = config.blacklist.clone() else {
        return;
    };
    let Some(pseudonyms) = ctx.pseudonyms.clone() else {
        // Checked when the deployment loads; said here should it not be.
        tracing::error!("the blacklist keeper needs [hub] pseudonym_key; not started");
        return;
    };
    let make = || ListRoom {
        decisions_topic: &config.decisions_topic,
        list: &list,
        keeper: ListKeeper::new(list.clone(), ctx.calendar.clone(), pseudonyms.clone()),
        left_behind_said: false,
    };
    crate::keepers::keep("blacklist keeper", &ctx, make, &shutdown).await;
}

/// The list's keeper with the topics it follows.
struct ListRoom<'a> {
    decisions_topic: &'a str,
    list: &'a BlacklistConfig,
    keeper: ListKeeper,
    /// Whether persons left under another suite's pseudonyms were said.
    left_behind_said: bool,
}

impl Keeper for ListRoom<'_> {
    fn topics(&self, _: &KeeperContext) -> Vec<String> {
        vec![
            self.decisions_topic.to_owned(),
            self.list.events_topic.clone(),
            self.list.topic.clone(),
        ]
    }

    fn observe(&mut self, ctx: &KeeperContext, f: Followed) {
        if f.topic == self.list.topic {
            if f.payload.is_empty() {
                self.keeper.observe_removal(&f.key);
                return;
            }
            match serde_json::from_slice::<Value>(&f.payload) {
                Ok(v) => self.keeper.observe_entry(&f.key, &v),
                Err(e) => f.unreadable("blacklist keeper", &e.to_string()),
            }
        } else if f.topic == self.list.events_topic {
            match serde_json::from_slice::<ProcedureEvent>(&f.payload) {
                Ok(e) => self.keeper.observe_event(e),
                Err(e) => f.unreadable("blacklist keeper", &e.to_string()),
            }
        } else {
            match decode_payload(&ctx.schemas, &f.headers, &f.payload) {
                Ok(d) => self.keeper.observe_decision(&d),
                Err(e) => f.unreadable("blacklist keeper", &e),
            }
        }
    }

    async fn tick(&mut self, ctx: &KeeperContext) -> Result<()> {
        let now = ctx.clock.now();
        let writes = self.keeper.tick(now);
        write_list(ctx, self.list, &writes).await?;
        if !writes.removed.is_empty() {
            tracing::info!(
                persons = writes.removed.len(),
                "blacklist: carried over from the previous suite's pseudonyms"
            );
        }
        let behind = self.keeper.left_behind();
        if !behind.is_empty() && !self.left_behind_said {
            self.left_behind_said = true;
            tracing::error!(
                persons = behind.len(),
                first = behind[0],
                carrying_over = self.keeper.pseudonyms.carrying_over(),
                "blacklist: steps or entries kept under pseudonyms of another suite are not carried over \
                 (no decision read names the person, or [hub] previous_suite is not set); \
                 they are left as they are and nothing is written for them"
            );
        }
        let (listed, open) = self.keeper.counts(now);
        ctx.stats.blacklisted.store(listed, Ordering::Relaxed);
        ctx.stats.blacklist_open.store(open, Ordering::Relaxed);
        Ok(())
    }
}

async fn write_list(ctx: &KeeperContext, list: &BlacklistConfig, w: &Writes) -> Result<()> {
    // A step or an entry rests on all of an entity's grounds: no one
    // record's trace to continue.
    for e in &w.events {
        let body = serde_json::to_value(e).expect("events serialize");
        ctx.send(&list.events_topic, &e.entity, &body, None).await?;
    }
    for (key, entry) in &w.entries {
        ctx.send(&list.topic, key, entry, None).await?;
    }
    for key in &w.removed {
        ctx.send_tombstone(&list.topic, key).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn keeper() -> ListKeeper {
        let config = crate::keepers::blacklist::test_config();
        let calendar =
            Calendar::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("calendar"))
                .expect("calendar");
        ListKeeper::new(
            config,
            Arc::new(calendar),
            crate::personal::Pseudonyms::new("a-test-pseudonym-key-of-32-characters").unwrap(),
        )
    }

    fn local(m: u32, d: u32, h: u32) -> DateTime<Utc> {
        chrono_tz::Asia::Shanghai
            .with_ymd_and_hms(2026, m, d, h, 0, 0)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn decision(
        id: &str,
        decided: DateTime<Utc>,
        serious: bool,
        cats: &[&str],
        action: &str,
    ) -> Value {
        json!({"id": id, "decision_no": format!("宜高综执罚〔2026〕{id}号"), "action": action, "serious": serious,
            "categories": cats, "decided_at": decided.timestamp_millis(), "industry": "MARKET",
            "party": {"name": "宜昌东山化工有限责任公司", "credit_code": "91420500MA4F0XYZ1B"}})
    }

    const KEY: &str = "uscc:91420500MA4F0XYZ1B";

    fn act(k: &mut ListKeeper, kind: EventKind, at: DateTime<Utc>, date: Option<DateTime<Utc>>) {
        let case = k.cases(KEY, at).into_iter().next().expect("a case");
        let e = crate::keepers::blacklist::officer_act(&case, kind, "张三", date, None, at)
            .expect("allowed");
        k.observe_event(e);
    }

    #[test]
    fn an_entity_meeting_a_criterion_is_proposed_once_and_listed_only_when_decided() {
        let mut k = keeper();
        k.observe_decision(&decision(
            "pen:1",
            local(3, 2, 0),
            true,
            &["罚款"],
            "ISSUED",
        ));
        assert_eq!(
            k.tick(local(3, 2, 12)),
            Writes::default(),
            "one serious violation is not enough"
        );
        k.observe_decision(&decision(
            "pen:2",
            local(3, 3, 0),
            true,
            &["罚款"],
            "ISSUED",
        ));
        let w = k.tick(local(3, 3, 12));
        assert_eq!(w.events.len(), 1);
        assert_eq!(w.events[0].event, EventKind::Proposed);
        assert!(
            w.entries.is_empty(),
            "a proposal is not published: {:?}",
            w.entries
        );
        assert_eq!(k.tick(local(3, 3, 13)), Writes::default(), "proposed once");
        // Notice served; the window runs: nothing is published.
        act(
            &mut k,
            EventKind::NoticeServed,
            local(3, 4, 9),
            Some(local(3, 4, 9)),
        );
        assert!(k.tick(local(3, 10, 9)).entries.is_empty());
        act(
            &mut k,
            EventKind::ListingDecided,
            local(3, 20, 9),
            Some(local(3, 20, 9)),
        );
        let w = k.tick(local(3, 20, 10));
        assert_eq!(w.entries.len(), 1);
        let (key, entry) = &w.entries[0];
        assert_eq!(key, KEY);
        assert_eq!(entry["action"], "ADD");
        assert_eq!(entry["criteria"][0]["basis"], "《测试规章甲》第一条");
        assert_eq!(entry["criteria"][0]["fields"], json!(["MARKET"]));
        // The notice names the measures and what they do; a consideration
        // is not called 联合惩戒.
        let message = entry["message"].as_str().unwrap();
        assert!(!message.contains("联合惩戒"), "{message}");
        assert!(
            message.contains("审批时作为重要考量因素（作为重要考量因素，依据措施依据）"),
            "{message}"
        );
        assert_eq!(entry["measures"][0]["effect"], "consider");
        assert_eq!(
            entry["decided_at"],
            json!(local(3, 20, 9).timestamp_millis())
        );
        assert_eq!(k.tick(local(3, 20, 11)), Writes::default(), "listed once");
        // Repaired after its period: removed, and said so.
        act(&mut k, EventKind::RepairApproved, local(6, 23, 9), None);
        let w = k.tick(local(6, 23, 10));
        assert_eq!(w.entries.len(), 1);
        assert_eq!(w.entries[0].1["action"], "REMOVE");
        assert_eq!(w.entries[0].1["version"], 2);
        assert!(
            w.entries[0].1["removal_reason"]
                .as_str()
                .unwrap()
                .contains("信用修复"),
            "{}",
            w.entries[0].1
        );
        // The same grounds are not proposed again.
        assert_eq!(k.tick(local(6, 24, 10)), Writes::default());
    }

    #[test]
    fn revoked_grounds_end_the_case_and_the_listing_and_a_lapsed_term_removes() {
        let mut k = keeper();
        k.observe_decision(&decision(
            "pen:4",
            local(3, 2, 0),
            false,
            &["罚款", "吊销许可证件"],
            "ISSUED",
        ));
        k.tick(local(3, 2, 12));
        act(
            &mut k,
            EventKind::NoticeServed,
            local(3, 3, 9),
            Some(local(3, 3, 9)),
        );
        act(
            &mut k,
            EventKind::ListingDecided,
            local(3, 20, 9),
            Some(local(3, 20, 9)),
        );
        assert_eq!(k.tick(local(3, 20, 10)).entries[0].1["action"], "ADD");
        // The term (6 months) lapses at 2026-09-20 24:00.
        let mut expiring = keeper();
        expiring.entities = k.entities.clone();
        expiring.events = k.events.clone();
        expiring.written = k.written.clone();
        assert_eq!(expiring.tick(local(9, 20, 23)), Writes::default());
        let w = expiring.tick(local(9, 21, 1));
        assert_eq!(w.events[0].event, EventKind::TermExpired);
        assert_eq!(w.entries[0].1["action"], "REMOVE");
        // The decision is revoked (行政处罚法 art. 48): the hub ends the case.
        k.observe_decision(&decision(
            "pen:4",
            local(3, 2, 0),
            false,
            &["罚款", "吊销许可证件"],
            "REVOKED",
        ));
        let w = k.tick(local(4, 1, 10));
        assert_eq!(w.events[0].event, EventKind::GroundsRevoked);
        assert_eq!(w.entries[0].1["action"], "REMOVE");
    }

    #[test]
    fn only_an_explicit_revocation_ends_a_listing_never_a_missing_record() {
        let mut k = keeper();
        k.observe_decision(&decision(
            "pen:5",
            local(3, 2, 0),
            false,
            &["吊销许可证件"],
            "ISSUED",
        ));
        k.tick(local(3, 2, 12));
        act(
            &mut k,
            EventKind::NoticeServed,
            local(3, 3, 9),
            Some(local(3, 3, 9)),
        );
        act(
            &mut k,
            EventKind::ListingDecided,
            local(3, 20, 9),
            Some(local(3, 20, 9)),
        );
        let listed = k.tick(local(3, 20, 10));
        // Restarted after the decisions topic lost the ground (retention):
        // the procedure and the list are read back, the decision is not.
        let mut after = keeper();
        for e in k.events[KEY].clone() {
            after.observe_event(e);
        }
        for (key, entry) in &listed.entries {
            after.observe_entry(key, entry);
        }
        assert_eq!(
            after.tick(local(4, 1, 10)),
            Writes::default(),
            "nothing is inferred from a missing record"
        );
        // The case system revokes it under a record of its own: the same
        // decision number (文号) ends the original.
        let mut revocation = decision(
            "pen:5-r",
            local(4, 2, 0),
            false,
            &["吊销许可证件"],
            "REVOKED",
        );
        revocation["decision_no"] = json!("宜高综执罚〔2026〕pen:5号");
        k.observe_decision(&revocation);
        let w = k.tick(local(4, 2, 10));
        assert_eq!(w.events[0].event, EventKind::GroundsRevoked);
        assert_eq!(w.entries[0].1["action"], "REMOVE");
    }

    #[test]
    fn a_restarted_keeper_writes_nothing_it_wrote_before() {
        let mut k = keeper();
        k.observe_decision(&decision(
            "pen:4",
            local(3, 2, 0),
            false,
            &["吊销许可证件"],
            "ISSUED",
        ));
        let mut written = k.tick(local(3, 2, 12));
        act(
            &mut k,
            EventKind::NoticeServed,
            local(3, 3, 9),
            Some(local(3, 3, 9)),
        );
        act(
            &mut k,
            EventKind::ListingDecided,
            local(3, 20, 9),
            Some(local(3, 20, 9)),
        );
        let listed = k.tick(local(3, 20, 10));
        written.events.extend(listed.events);
        written.entries.extend(listed.entries);
        // What the topics hold, read back by a new keeper.
        let mut again = keeper();
        again.observe_decision(&decision(
            "pen:4",
            local(3, 2, 0),
            false,
            &["吊销许可证件"],
            "ISSUED",
        ));
        for e in k.events[KEY].clone() {
            again.observe_event(e);
        }
        for (key, entry) in &written.entries {
            again.observe_entry(key, entry);
        }
        assert_eq!(again.tick(local(3, 21, 10)), Writes::default());
    }

    #[test]
    fn a_natural_person_is_proposed_under_a_pseudonym_never_the_id_number() {
        let mut k = keeper();
        let id = "11010519491231002X";
        k.observe_decision(&json!({"id": "pen:9", "decision_no": "宜高综执罚决字〔2026〕第0900号", "action": "ISSUED",
            "serious": false, "categories": ["吊销许可证件"], "decided_at": local(3, 2, 0).timestamp_millis(),
            "industry": "MARKET", "party": {"name": "李娜", "type": "NATURAL_PERSON", "id_number": id}}));
        let w = k.tick(local(3, 2, 12));
        assert_eq!(w.events.len(), 1);
        assert_eq!(w.events[0].entity, k.pseudonyms.of(id));
        assert!(w.events[0].entity.starts_with("pid:"));
        let text = serde_json::to_string(&w.events).unwrap();
        assert!(crate::personal::full_ids(&text).is_empty(), "{text}");
    }

    /// A deployment changing from `intl` to `gm` keeps a listed person
    /// listed: the steps move to the HMAC-SM3 key, the entry under the
    /// HMAC-SHA256 key is removed, and once the change is over the old
    /// steps left on the (never deleted) procedure topic write nothing.
    #[test]
    fn a_change_of_suite_carries_a_listed_person_over_to_the_new_pseudonym() {
        use duijie_crypto::Suite;
        let id = "11010519491231002X";
        let person = json!({"id": "pen:9", "decision_no": "宜高综执罚决字〔2026〕第0900号", "action": "ISSUED",
            "serious": false, "categories": ["吊销许可证件"], "decided_at": local(3, 2, 0).timestamp_millis(),
            "industry": "MARKET", "party": {"name": "李娜", "type": "NATURAL_PERSON", "id_number": id}});
        let in_suite = |suite, previous| {
            let mut k = keeper();
            k.pseudonyms = k.pseudonyms.clone().in_suite(suite, previous);
            k
        };
        // Listed under intl.
        let mut intl = in_suite(Suite::Intl, None);
        intl.observe_decision(&person);
        let mut topics = intl.tick(local(3, 2, 12));
        let old = intl.pseudonyms.of(id);
        for (kind, at) in [
            (EventKind::NoticeServed, local(3, 3, 9)),
            (EventKind::ListingDecided, local(3, 20, 9)),
        ] {
            let case = intl.cases(&old, at).into_iter().next().expect("a case");
            let e = crate::keepers::blacklist::officer_act(&case, kind, "张三", Some(at), None, at)
                .expect("allowed");
            intl.observe_event(e.clone());
            topics.events.push(e);
        }
        topics.entries.extend(intl.tick(local(3, 20, 10)).entries);
        assert_eq!(topics.entries.len(), 1, "listed under intl");

        // The deployment now says suite = "gm", previous_suite = "intl".
        let read_back = |k: &mut ListKeeper, t: &Writes| {
            k.observe_decision(&person);
            for e in &t.events {
                k.observe_event(e.clone());
            }
            for (key, entry) in &t.entries {
                k.observe_entry(key, entry);
            }
            for key in &t.removed {
                k.observe_removal(key);
            }
        };
        let mut gm = in_suite(Suite::Gm, Some(Suite::Intl));
        read_back(&mut gm, &topics);
        let new = gm.pseudonyms.of(id);
        assert!(new.starts_with("pid-sm3:"), "{new}");
        let carried = gm.tick(local(3, 21, 10));
        assert_eq!(
            carried.removed,
            vec![old.clone()],
            "the intl entry is removed"
        );
        assert_eq!(
            carried.events.len(),
            3,
            "proposal, notice and decision carried over"
        );
        assert!(carried.events.iter().all(|e| e.entity == new
            && crate::keepers::blacklist::entity_of_case(&e.case_id) == Some(new.as_str())));
        assert_eq!(carried.entries.len(), 1);
        assert_eq!(carried.entries[0].0, new);
        assert_eq!(
            carried.entries[0].1["action"], "ADD",
            "still listed: {:?}",
            carried.entries[0].1
        );
        assert!(gm.left_behind().is_empty());
        // What the topics hold now (the old steps stay: that topic is
        // never deleted), read by the keeper after the change is over.
        topics.events.extend(carried.events);
        topics.entries.extend(carried.entries);
        topics.removed.extend(carried.removed);
        let mut after = in_suite(Suite::Gm, None);
        read_back(&mut after, &topics);
        assert_eq!(after.tick(local(3, 22, 10)), Writes::default());
        assert!(after.left_behind().is_empty());
        assert_eq!(after.counts(local(3, 22, 10)).0, 1, "one listed");

        // Changed without `previous_suite`: the intl history is not
        // carried, nothing is written for it, and it is said.
        let mut skipped = in_suite(Suite::Gm, None);
        let before: Writes = Writes {
            events: topics
                .events
                .iter()
                .filter(|e| e.entity == old)
                .cloned()
                .collect(),
            entries: vec![],
            removed: vec![],
        };
        read_back(&mut skipped, &before);
        let w = skipped.tick(local(3, 21, 10));
        assert!(w.entries.is_empty() && w.removed.is_empty(), "{w:?}");
        assert_eq!(skipped.left_behind(), vec![old.as_str()]);
    }
}
