//! The desk at a terminal: `duijie referrals list|show|overdue`.

use crate::calendar::local_text;
use crate::keepers::referral::{ReferralView, remaining_label};
use crate::text::pad;
use std::fmt::Write as _;

fn time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(local_text)
        .unwrap_or_else(|| "—".into())
}

/// Late first, then at risk, then by due time: the order the desk works in.
pub fn sort_for_desk(views: &mut [ReferralView]) {
    views.sort_by_key(|v| {
        (
            !v.late,
            !v.at_risk,
            v.due_at.unwrap_or(i64::MAX),
            v.referral_no.clone(),
        )
    });
}

/// One line per referral.
pub fn table(views: &[ReferralView]) -> String {
    let mut out = String::new();
    let header = [
        "移送编号",
        "标记",
        "当前状态",
        "下一步",
        "办理事项",
        "期限",
        "期限至",
        "剩余",
        "当事人",
    ];
    let widths = [16, 6, 18, 12, 24, 10, 17, 16, 0];
    let line = |cells: [&str; 9]| -> String {
        let mut l: String = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| pad(c, w) + " ")
            .collect();
        l.truncate(l.trim_end().len());
        l
    };
    let _ = writeln!(out, "{}", line(header));
    for v in views {
        let mark = if v.late {
            "逾期"
        } else if v.at_risk {
            "临期"
        } else if v.clock_error.is_some() {
            "无日历"
        } else {
            ""
        };
        let due = time(v.due_at);
        let remaining = v.remaining_ms.map(remaining_label).unwrap_or_default();
        let _ = writeln!(
            out,
            "{}",
            line([
                &v.referral_no,
                mark,
                &v.state_label,
                &v.next_actor,
                &v.next_action,
                v.limit.as_deref().unwrap_or("—"),
                &due,
                &remaining,
                v.suspect.as_deref().unwrap_or(""),
            ])
        );
    }
    let _ = write!(
        out,
        "{} referral(s), {} late, {} at risk",
        views.len(),
        views.iter().filter(|v| v.late).count(),
        views.iter().filter(|v| v.at_risk).count()
    );
    out
}

/// A referral and its timeline, with where each event came from.
pub fn detail(v: &ReferralView) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "移送编号  {}", v.referral_no);
    let _ = writeln!(out, "案件      {}", v.case_no.as_deref().unwrap_or("—"));
    let _ = writeln!(
        out,
        "当事人    {}（{}）",
        v.suspect.as_deref().unwrap_or("—"),
        v.offence.as_deref().unwrap_or("罪名未录入")
    );
    let _ = writeln!(
        out,
        "当前状态  {}（自 {}）",
        v.state_label,
        time(v.state_since)
    );
    let _ = writeln!(
        out,
        "下一步    {}{}　{}",
        v.next_actor, v.next_action, v.legal_basis
    );
    if let Some(limit) = &v.limit {
        let _ = writeln!(
            out,
            "期限      {limit}，至 {}　{}{}",
            time(v.due_at),
            v.remaining_ms.map(remaining_label).unwrap_or_default(),
            if v.late {
                "　【已逾期】"
            } else if v.at_risk {
                "　【临期】"
            } else {
                ""
            }
        );
    }
    if let Some(e) = &v.clock_error {
        let _ = writeln!(out, "期限无法计算：{e}");
    }
    for s in &v.late_steps {
        let _ = writeln!(out, "逾期办理  {s}");
    }
    for f in &v.flags {
        let _ = writeln!(out, "异常事件  {f}");
    }
    let _ = writeln!(out, "\n时间线：");
    for e in &v.events {
        let _ = writeln!(
            out,
            "  {}  {:<12} {}{}",
            time(Some(e.occurred_at)),
            e.label,
            e.actor_org.as_deref().unwrap_or(""),
            e.flagged
                .as_deref()
                .map(|f| format!("　⚠ {f}"))
                .unwrap_or_default()
        );
        for text in [&e.document_no, &e.reason, &e.notes].into_iter().flatten() {
            let _ = writeln!(out, "      {text}");
        }
        let _ = writeln!(
            out,
            "      来源 {} · {} · {}[{}]@{} · sha256 {}",
            e.source_system,
            if e.source.origin.is_empty() {
                "—"
            } else {
                &e.source.origin
            },
            e.source.topic,
            e.source.partition,
            e.source.offset,
            e.source.payload_sha256.get(..12).unwrap_or("—")
        );
    }
    out
}

/// `duijie referrals rules`: every statutory step with its limit, unit and
/// legal basis, as the deployment configures them.
pub fn rules_table(limits: &crate::keepers::referral::StepLimits) -> String {
    use crate::keepers::referral::Step;
    let mut out = String::new();
    let _ = writeln!(out, "{:<32} {:>6}  {:<13} basis", "step", "limit", "unit");
    for step in Step::ALL {
        let rule = limits.rule(*step);
        let unit = rule.limit.unit.name();
        let _ = writeln!(
            out,
            "{:<32} {:>6}  {:<13} {}",
            step.key(),
            rule.limit.amount,
            unit,
            rule.basis
        );
    }
    out
}

/// The same as JSON objects, one a line.
pub fn rules_json(limits: &crate::keepers::referral::StepLimits) -> Vec<serde_json::Value> {
    use crate::keepers::referral::Step;
    Step::ALL
        .iter()
        .map(|step| {
            let rule = limits.rule(*step);
            serde_json::json!({
                "step": step.key(),
                "amount": rule.limit.amount,
                "unit": rule.limit.unit.key(),
                "basis": rule.basis,
            })
        })
        .collect()
}

/// `duijie referrals replay`: canonical ReferralEvent records as JSON lines
/// (as `duijie map` writes them) through the tracker's own fold, without
/// Kafka, judged at `now`. A line that is not a ReferralEvent is an error
/// naming its line.
pub fn replay(
    input: &str,
    file: &str,
    limits: &crate::keepers::referral::StepLimits,
    at_risk_share: f64,
    calendar: &crate::calendar::Calendar,
    now: chrono::DateTime<chrono::Utc>,
) -> crate::error::Result<Vec<ReferralView>> {
    use crate::error::{Domain, Error};
    use crate::keepers::referral::{EventSource, TimelineEvent, fold};
    let at = |i: usize, why: String| {
        Error::permanent(Domain::Mapping, format!("{file}:{}: {why}", i + 1))
    };
    let mut by_referral: std::collections::BTreeMap<String, Vec<TimelineEvent>> =
        Default::default();
    for (i, line) in input.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| at(i, format!("not JSON: {e}")))?;
        // `duijie map` writes the canonical record itself, or wrapped as
        // {"record": …}.
        let record = value.get("record").unwrap_or(&value);
        let no = record
            .get("referral_no")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| at(i, "no `referral_no`: not a ReferralEvent".into()))?
            .to_owned();
        let source = EventSource {
            topic: file.to_owned(),
            offset: i as i64 + 1,
            origin: format!("{file}:{}", i + 1),
            connector: "replay".into(),
            pipeline: "replay".into(),
            ..EventSource::default()
        };
        let event = TimelineEvent::from_record(record, source).ok_or_else(|| {
            at(
                i,
                "not a ReferralEvent (needs id, event_type, occurred_at)".into(),
            )
        })?;
        by_referral.entry(no).or_default().push(event);
    }
    let mut views: Vec<ReferralView> = by_referral
        .into_iter()
        .map(|(no, events)| fold(&no, events, limits, at_risk_share, calendar, now))
        .collect();
    sort_for_desk(&mut views);
    Ok(views)
}

/// One replayed referral as the CLI prints it (JSON form).
pub fn replay_json(v: &ReferralView, now: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    let due = v
        .due_at
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|d| {
            d.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("+08:00"))
                .to_rfc3339()
        });
    serde_json::json!({
        "referral_no": v.referral_no,
        "state": v.state.map(|s| s.code()),
        "next_actor": v.next_actor,
        "step": v.step,
        "limit": v.limit,
        "basis": v.legal_basis,
        "due_at": due,
        "counted_from": v.counted_from,
        "late": v.due_at.is_some_and(|d| d < now.timestamp_millis()),
        "police_extension": v.police_extension,
        "late_review_remedy": v.late_review_remedy,
        "flagged": v.flags,
        "late_steps": v.late_steps,
    })
}
