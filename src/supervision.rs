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
//! Publication within 7 working days is the credit publication clock's
//! (`keepers::publication`), judged on the receipts; it is not repeated
//! here.

use crate::calendar::{Calendar, Limit, Unit, local_date};
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
}

/// The rates of `decisions` (canonical penalty decisions, any versions, in
/// any order: each decision counts once, as its latest version says).
pub fn rates(decisions: &[Value], calendar: &Calendar) -> Result<Vec<Rates>, String> {
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
        let item = text(d, "power_item").unwrap_or("(未载明)").to_owned();
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
    Ok(out.into_values().collect())
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

/// The rates as a table for the bureau's staff (column heads in Chinese).
pub fn table(rates: &[Rates]) -> String {
    let mut out = format!(
        "{:<8} {:<16} {:>5} {:>9} {:>9} {:>11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
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
        "月末一周"
    );
    for r in rates {
        out.push_str(&format!(
            "{:<10} {:<20} {:>7} {:>13} {:>12} {:>15} {:>13} {:>13} {:>13} {:>13} {:>15} {:>13}\n",
            r.month,
            r.item,
            r.acts,
            r.revoked_or_changed,
            r.review_required,
            r.review_passed_before,
            r.review_unknown,
            r.served_in_time,
            r.served_late,
            r.service_unknown,
            r.repeat_parties,
            r.in_last_week
        ));
    }
    out.push_str("(事实计数，不作结论；办案系统未载明的计为“未载”。依据：《行政执法监督条例》第六条；国办发〔2018〕118号；行政处罚法第五十八条、第六十一条)\n");
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
        let r = rates(&[b2, a, b, c, other], &calendar()).unwrap();
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
}
