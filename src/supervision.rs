//! What the supervision of the bureau watches, month by month and item by
//! item (行政执法监督: 《行政执法监督条例》, 国务院令第825号, in force
//! 2026-02-01, art. 6; the three systems of 国办发〔2018〕118号), read from
//! the canonical penalty decisions: how many acts each power-list item
//! (权责清单事项) saw, how many were revoked or changed, whether the legal
//! review (法制审核, 行政处罚法 art. 58) passed before the decisions that
//! needed one, whether they were served within the seven days of 行政处罚法
//! art. 61, and two facts the supervisor looks at for 趋利性执法 and 乱罚款:
//! parties fined more than once under one item in the month, and decisions
//! dated in the month's last seven days. Facts, never findings: a count is
//! a count, and what the case system does not say is counted as unknown,
//! not as a failure (nothing is inferred from a missing record).
//!
//! Publication within 7 working days (国办发〔2018〕118号, part 二(三):
//! 行政处罚 decisions published within 7 working days of the decision) is
//! read from the credit push's receipts: when the platform took the
//! decision ([`Beside::published`]). A decision the credit rules do not
//! publish (a receipt `not_sent`) is counted apart, one with no receipt as
//! unknown. The bureau's own website is not seen by the hub.
//!
//! The keeper [`crate::keepers::supervision`] writes these rates to the
//! rates topic as they change, for the supervision feed and the desk's
//! power-list page; `duijie supervision rates` computes them from a file.

use crate::calendar::{Calendar, Limit, Unit, local_date};
use crate::delivery::{Outcome, Receipt};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// 行政处罚法 art. 61: a decision not handed over when announced is served
/// within seven days (calendar days, the last rolled over a rest day,
/// 民法典 arts. 201–203).
pub const SERVICE_LIMIT: Limit = Limit {
    amount: 7,
    unit: Unit::CalendarDays,
};

/// One month and one item.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rates {
    /// `YYYY-MM` of the decision date (Asia/Shanghai).
    pub month: String,
    /// The power-list item, or `(未载明)` when the case system gives none.
    pub item: String,
    pub acts: u32,
    /// Revoked, confirmed unlawful or void, or changed (the latest version).
    pub revoked_or_changed: u32,
    pub review_required: u32,
    /// Of those, a review that passed on or before the decision date.
    pub review_passed_before: u32,
    /// The case system does not say whether review was needed.
    pub review_unknown: u32,
    /// Served within art. 61's seven days.
    pub served_in_time: u32,
    /// Served later.
    pub served_late: u32,
    /// No service recorded.
    pub service_unknown: u32,
    /// Parties with more than one decision under this item this month.
    pub repeat_parties: u32,
    /// Decisions dated in the month's last seven days.
    pub in_last_week: u32,
    /// Published (the credit platform took it) within the limit of
    /// [`Beside::publish_within`], counted from the decision date.
    pub published_in_time: u32,
    /// Published later.
    pub published_late: u32,
    /// The credit rules do not publish it (a receipt `not_sent`).
    pub not_published: u32,
    /// The credit push holds it (a receipt `held`: its class, its legal
    /// review or its service awaited), not published yet.
    pub publication_held: u32,
    /// No receipt says either.
    pub publication_unknown: u32,
    /// Leads (执法线索) raised this month under this item.
    pub leads: u32,
    /// Leads raised this month outside the bureau's powers (counted under
    /// the item `(未载明)`).
    pub leads_outside_powers: u32,
}

/// What the rates read beside the decisions.
#[derive(Debug, Clone)]
pub struct Beside {
    /// Decision `id` → what the credit push's receipts say of it.
    pub published: BTreeMap<String, Published>,
    /// Lead bodies as the lead topic has them, by lead id (a record
    /// written again writes its lead again under the same id).
    pub leads: BTreeMap<String, Value>,
    /// 国办发〔2018〕118号: 7 working days.
    pub publish_within: Limit,
}

impl Default for Beside {
    fn default() -> Self {
        Self {
            published: BTreeMap::new(),
            leads: BTreeMap::new(),
            publish_within: PUBLISH_LIMIT,
        }
    }
}

impl Beside {
    /// What a receipt of the credit push `delivery` says: the first time
    /// the platform took the decision; `not_sent` or `held` (the latest
    /// such) only while no version was taken. Other deliveries' receipts,
    /// and failed ones, say nothing of publication.
    pub fn observe_receipt(&mut self, r: &Receipt, delivery: &str) {
        if r.delivery != delivery {
            return;
        }
        let entry = self.published.get(&r.record_id).copied();
        match r.outcome {
            Outcome::Delivered => {
                let first = match entry {
                    Some(Published::At(t)) => t.min(r.at_ms),
                    _ => r.at_ms,
                };
                self.published
                    .insert(r.record_id.clone(), Published::At(first));
            }
            Outcome::NotSent | Outcome::Held if !matches!(entry, Some(Published::At(_))) => {
                let p = if r.outcome == Outcome::Held {
                    Published::Held
                } else {
                    Published::NotByRule
                };
                self.published.insert(r.record_id.clone(), p);
            }
            _ => {}
        }
    }

    /// A lead as the lead topic has it; one without an id is not counted.
    pub fn observe_lead(&mut self, lead: Value) {
        if let Some(id) = lead.get("id").and_then(Value::as_str) {
            self.leads.insert(id.to_owned(), lead);
        }
    }
}

/// What the credit push's receipts say of one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// The platform took it at this time (epoch ms): the first such receipt.
    At(i64),
    /// The credit rules do not publish it.
    NotByRule,
    /// The credit push holds it (class, legal review or service awaited).
    Held,
}

/// 国办发〔2018〕118号, part 二(三) (规范事后公开): the decision information
/// of 行政许可 and 行政处罚 is published within 7 working days of the
/// decision.
pub const PUBLISH_LIMIT: Limit = Limit {
    amount: 7,
    unit: Unit::WorkingDays,
};

/// The item rates and leads are counted under when a record names none.
pub const NO_ITEM: &str = "(未载明)";

/// The rates of `decisions` (canonical penalty decisions, any versions, in
/// any order: each decision counts once, as its latest version says), with
/// publication and leads from `beside`.
///
/// Long because the supervision rates per month and item, each counter
/// beside its legal basis (legal review, service within seven days,
/// publication, repeat parties, the month's last week).
pub fn rates<'a>(
    decisions: impl IntoIterator<Item = &'a Value>,
    beside: &Beside,
    calendar: &Calendar,
) -> Result<Vec<Rates>, String> {
    let mut latest: BTreeMap<String, &Value> = BTreeMap::new();
    for d in decisions {
        let id = d
            .get("decision_id")
            .or_else(|| d.get("id"))
            .and_then(Value::as_str)
            .ok_or("a decision without an id")?;
        let newer = latest.get(id).is_none_or(|old| order(d) >= order(old));
        if newer {
            latest.insert(id.to_owned(), d);
        }
    }
    let mut out: BTreeMap<(String, String), Rates> = BTreeMap::new();
    let mut parties: BTreeMap<(String, String), BTreeMap<String, u32>> = BTreeMap::new();
    for (id, d) in latest {
        let decided = ms(d, "decided_at").ok_or_else(|| format!("{id}: no decision date"))?;
        let day = local_date(decided.timestamp_millis())
            .ok_or_else(|| format!("{id}: a decision date out of range"))?;
        let month = format!("{:04}-{:02}", day.year(), day.month());
        let item = text(d, "power_item").unwrap_or(NO_ITEM).to_owned();
        let key = (month.clone(), item.clone());
        let r = out.entry(key.clone()).or_insert_with(|| Rates {
            month,
            item,
            ..Rates::default()
        });
        r.acts += 1;
        if matches!(
            text(d, "action"),
            Some("CHANGED" | "REVOKED" | "CONFIRMED_UNLAWFUL" | "CONFIRMED_VOID")
        ) {
            r.revoked_or_changed += 1;
        }
        match d.get("legal_review_required").and_then(Value::as_bool) {
            Some(true) => {
                r.review_required += 1;
                let passed = text(d, "legal_review_outcome") == Some("PASSED");
                let before = d
                    .get("legal_review_at")
                    .and_then(Value::as_i64)
                    .and_then(local_date)
                    .is_some_and(|t| t <= day);
                if passed && before {
                    r.review_passed_before += 1;
                }
            }
            Some(false) => {}
            None => r.review_unknown += 1,
        }
        match ms(d, "served_at") {
            Some(served) => {
                let due = calendar
                    .due(decided, SERVICE_LIMIT)
                    .map_err(|e| format!("{id}: {e}"))?;
                if served < due {
                    r.served_in_time += 1;
                } else {
                    r.served_late += 1;
                }
            }
            None => r.service_unknown += 1,
        }
        let published = d
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| beside.published.get(id));
        match published {
            Some(Published::At(at)) => {
                let due = calendar
                    .due(decided, beside.publish_within)
                    .map_err(|e| format!("{id}: {e}"))?;
                if *at < due.timestamp_millis() {
                    r.published_in_time += 1;
                } else {
                    r.published_late += 1;
                }
            }
            Some(Published::NotByRule) => r.not_published += 1,
            Some(Published::Held) => r.publication_held += 1,
            None => r.publication_unknown += 1,
        }
        let last = last_day_of_month(day);
        if (last - day).num_days() < 7 {
            r.in_last_week += 1;
        }
        let party = d
            .pointer("/party/credit_code")
            .or_else(|| d.pointer("/party/name"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if !party.is_empty() {
            *parties.entry(key).or_default().entry(party).or_default() += 1;
        }
    }
    for (key, seen) in parties {
        if let Some(r) = out.get_mut(&key) {
            r.repeat_parties = seen.values().filter(|n| **n > 1).count() as u32;
        }
    }
    for lead in beside.leads.values() {
        let Some(day) = lead
            .get("at_ms")
            .and_then(Value::as_i64)
            .and_then(local_date)
        else {
            continue;
        };
        let month = format!("{:04}-{:02}", day.year(), day.month());
        let item = text(lead, "power_item").unwrap_or(NO_ITEM).to_owned();
        let r = out
            .entry((month.clone(), item.clone()))
            .or_insert_with(|| Rates {
                month,
                item,
                ..Rates::default()
            });
        r.leads += 1;
        if lead.get("outside_powers").and_then(Value::as_bool) == Some(true) {
            r.leads_outside_powers += 1;
        }
    }
    Ok(out.into_values().collect())
}

/// The files of a dry run (`duijie supervision rates`), as the topics
/// have them: decisions, and optionally receipts and leads.
#[derive(Debug, Clone, Copy)]
pub struct Files<'a> {
    pub decisions: &'a std::path::Path,
    pub receipts: Option<&'a std::path::Path>,
    /// The credit push among the receipts.
    pub delivery: &'a str,
    pub leads: Option<&'a std::path::Path>,
}

impl Files<'_> {
    /// The rates of the files; an unreadable file or line is an error
    /// naming it.
    pub fn rates(&self, calendar: &Calendar) -> Result<Vec<Rates>, String> {
        let lines = |path: &std::path::Path| -> Result<Vec<Value>, String> {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            read_lines(&text, &path.display().to_string())
        };
        let decisions = lines(self.decisions)?;
        let mut beside = Beside::default();
        if let Some(path) = self.receipts {
            for (n, v) in lines(path)?.into_iter().enumerate() {
                let r: Receipt = serde_json::from_value(v)
                    .map_err(|e| format!("{}:{}: not a receipt: {e}", path.display(), n + 1))?;
                beside.observe_receipt(&r, self.delivery);
            }
        }
        if let Some(path) = self.leads {
            for lead in lines(path)? {
                beside.observe_lead(lead);
            }
        }
        rates(&decisions, &beside, calendar)
    }
}

/// JSON lines of canonical decisions; a line that is not JSON is an error
/// naming the file and line. Blank lines are skipped.
pub fn read_lines(text: &str, file: &str) -> Result<Vec<Value>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("{file}:{}: {e}", n + 1)))
        .collect()
}

/// The rates as a table for the bureau's staff (column heads in Chinese),
/// one line a month and item, tab-separated.
pub fn table(rates: &[Rates]) -> String {
    const HEADS: [&str; 19] = [
        "月份",
        "权责事项",
        "决定",
        "撤销变更",
        "需法审",
        "法审在先",
        "法审未载",
        "按时送达",
        "逾期送达",
        "送达未载",
        "重复当事人",
        "月末一周",
        "按时公示",
        "逾期公示",
        "不予公示",
        "暂缓公示",
        "公示未载",
        "线索",
        "清单外线索",
    ];
    let mut out = HEADS.join("\t");
    out.push('\n');
    for r in rates {
        let counts = [
            r.acts,
            r.revoked_or_changed,
            r.review_required,
            r.review_passed_before,
            r.review_unknown,
            r.served_in_time,
            r.served_late,
            r.service_unknown,
            r.repeat_parties,
            r.in_last_week,
            r.published_in_time,
            r.published_late,
            r.not_published,
            r.publication_held,
            r.publication_unknown,
            r.leads,
            r.leads_outside_powers,
        ];
        let mut line = vec![r.month.clone(), r.item.clone()];
        line.extend(counts.iter().map(u32::to_string));
        out.push_str(&line.join("\t"));
        out.push('\n');
    }
    out.push_str("(事实计数，不作结论；办案系统未载明的计为“未载”。依据：《行政执法监督条例》第六条；国办发〔2018〕118号（公示：作出决定之日起7个工作日内）；行政处罚法第五十八条、第六十一条)\n");
    out
}

/// The months the rates cover, for a report's heading.
pub fn months(rates: &[Rates]) -> BTreeSet<&str> {
    rates.iter().map(|r| r.month.as_str()).collect()
}

fn order(d: &Value) -> (i64, i64) {
    (
        d.get("version").and_then(Value::as_i64).unwrap_or(0),
        d.get("updated_at").and_then(Value::as_i64).unwrap_or(0),
    )
}

fn text<'a>(d: &'a Value, k: &str) -> Option<&'a str> {
    d.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn ms(d: &Value, k: &str) -> Option<DateTime<Utc>> {
    d.get(k)
        .and_then(Value::as_i64)
        .and_then(DateTime::from_timestamp_millis)
}

fn last_day_of_month(day: NaiveDate) -> NaiveDate {
    let first_next = if day.month() == 12 {
        NaiveDate::from_ymd_opt(day.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(day.year(), day.month() + 1, 1)
    }
    .expect("a valid month");
    first_next.pred_opt().expect("a day before")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn calendar() -> Calendar {
        Calendar::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("calendar"))
            .unwrap()
    }

    /// Local midnight of a day, in epoch milliseconds.
    fn day(d: &str) -> i64 {
        crate::calendar::end_of_day(
            NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .unwrap()
                .pred_opt()
                .unwrap(),
        )
        .timestamp_millis()
    }

    fn decision(id: &str, decided: &str) -> Value {
        json!({"decision_id": id, "version": 1, "action": "ISSUED", "power_item": "XZCF-0001",
            "decided_at": day(decided), "party": {"name": "甲公司", "credit_code": "91420500MA0000000X"}})
    }

    /// Counts per month and item: service judged against art. 61's seven
    /// days with the National Day holiday rolled over; review passed before
    /// the decision, after it, or not said; the latest version decides a
    /// revocation; repeat parties and the month's last week as facts.
    #[test]
    fn the_rates_count_what_the_case_system_says_and_nothing_it_does_not() {
        // Decided 2026-09-25: seven days end 2026-10-02, a holiday, rolled
        // over to the first working day after the National Day holiday.
        let mut a = decision("a", "2026-09-25");
        a["served_at"] = json!(day("2026-10-08") + 3_600_000);
        a["legal_review_required"] = json!(true);
        a["legal_review_outcome"] = json!("PASSED");
        a["legal_review_at"] = json!(day("2026-09-24"));
        let mut b = decision("b", "2026-09-10");
        b["served_at"] = json!(day("2026-09-18") + 3_600_000);
        b["legal_review_required"] = json!(true);
        b["legal_review_outcome"] = json!("PASSED");
        b["legal_review_at"] = json!(day("2026-09-11"));
        let mut b2 = b.clone();
        b2["version"] = json!(2);
        b2["action"] = json!("REVOKED");
        let mut c = decision("c", "2026-09-26");
        c["party"] = json!({"name": "乙"});
        c["legal_review_required"] = json!(false);
        let mut other = decision("d", "2026-10-12");
        other["power_item"] = Value::Null;
        let r = rates(&[b2, a, b, c, other], &Beside::default(), &calendar()).unwrap();
        assert_eq!(r.len(), 2);
        let sep = &r[0];
        assert_eq!(
            (sep.month.as_str(), sep.item.as_str()),
            ("2026-09", "XZCF-0001")
        );
        assert_eq!(sep.acts, 3);
        assert_eq!(sep.revoked_or_changed, 1);
        assert_eq!(
            (
                sep.review_required,
                sep.review_passed_before,
                sep.review_unknown
            ),
            (2, 1, 0)
        );
        // a: in time by the roll-over; b: the 18th is past the 17th; c:
        // not recorded.
        assert_eq!(
            (sep.served_in_time, sep.served_late, sep.service_unknown),
            (1, 1, 1)
        );
        assert_eq!(sep.repeat_parties, 1);
        // The 25th and the 26th of September are in its last seven days.
        assert_eq!(sep.in_last_week, 2);
        let oct = &r[1];
        assert_eq!(
            (oct.month.as_str(), oct.item.as_str()),
            ("2026-10", "(未载明)")
        );
        assert_eq!(
            (oct.acts, oct.review_unknown, oct.service_unknown),
            (1, 1, 1)
        );
        assert_eq!(months(&r).len(), 2);
    }

    fn receipt(id: &str, delivery: &str, outcome: &str, at_ms: i64) -> Receipt {
        serde_json::from_value(json!({
            "delivery": delivery, "department": "信用平台", "record_id": id,
            "idempotency_key": format!("{id}:v1"), "outcome": outcome, "attempts": 1,
            "reason": null, "at_ms": at_ms, "topic": "t", "partition": 0, "offset": 0,
        }))
        .unwrap()
    }

    /// Publication within 7 working days (国办发〔2018〕118号) from the
    /// credit push's first delivered receipt, with the National Day
    /// holiday not counted; `not_sent` and `held` receipts counted apart
    /// (and never over a delivery); no receipt counted unknown; another delivery's
    /// receipts ignored. Leads per item, once per lead id, those outside
    /// the powers under `(未载明)`.
    #[test]
    fn publication_is_read_from_the_receipts_and_leads_counted_once() {
        let mut a = decision("a", "2026-09-28");
        a["id"] = json!("a");
        let mut b = decision("b", "2026-09-28");
        b["id"] = json!("b");
        let mut c = decision("c", "2026-09-28");
        c["id"] = json!("c");
        let mut e = decision("e", "2026-09-28");
        e["id"] = json!("e");
        let f = decision("f", "2026-09-28");
        let mut g = decision("g", "2026-09-28");
        g["id"] = json!("g");
        let mut beside = Beside::default();
        // 7 working days from Monday 28 September: 29 and 30 September,
        // the holiday 1–7 October not counted, then 8, 9, 10 (a make-up
        // Saturday), 12 and 13 October.
        let due = calendar()
            .due(
                DateTime::from_timestamp_millis(day("2026-09-28")).unwrap(),
                PUBLISH_LIMIT,
            )
            .unwrap()
            .timestamp_millis();
        assert_eq!(local_date(due - 1), NaiveDate::from_ymd_opt(2026, 10, 13));
        beside.observe_receipt(&receipt("a", "credit", "delivered", due - 1), "credit");
        // A later delivery (a withdrawal) keeps the first time.
        beside.observe_receipt(&receipt("a", "credit", "delivered", due + 1), "credit");
        beside.observe_receipt(&receipt("b", "credit", "delivered", due), "credit");
        beside.observe_receipt(&receipt("c", "credit", "not_sent", 0), "credit");
        // Another delivery says nothing of publication.
        beside.observe_receipt(&receipt("e", "feed", "delivered", 0), "credit");
        // A not_sent after a delivery does not undo it.
        beside.observe_receipt(&receipt("b", "credit", "not_sent", 0), "credit");
        // Held (its class awaited): not published yet, counted apart.
        beside.observe_receipt(&receipt("g", "credit", "held", 0), "credit");
        let in_oct = day("2026-10-09");
        for (id, item, outside) in [
            ("l1", Some("XZCF-0001"), false),
            ("l1", Some("XZCF-0001"), false),
            ("l2", None, true),
        ] {
            beside.observe_lead(
                json!({"id": id, "power_item": item, "outside_powers": outside, "at_ms": in_oct}),
            );
        }
        let r = rates(&[a, b, c, e, f, g], &beside, &calendar()).unwrap();
        let sep = r.iter().find(|r| r.month == "2026-09").unwrap();
        assert_eq!(
            (
                sep.published_in_time,
                sep.published_late,
                sep.not_published,
                sep.publication_held,
                sep.publication_unknown
            ),
            (1, 1, 1, 1, 2)
        );
        let oct: Vec<_> = r.iter().filter(|r| r.month == "2026-10").collect();
        assert_eq!(oct.len(), 2);
        let within = oct.iter().find(|r| r.item == "XZCF-0001").unwrap();
        assert_eq!(
            (within.leads, within.leads_outside_powers, within.acts),
            (1, 0, 0)
        );
        let outside = oct.iter().find(|r| r.item == NO_ITEM).unwrap();
        assert_eq!((outside.leads, outside.leads_outside_powers), (1, 1));
    }
}
