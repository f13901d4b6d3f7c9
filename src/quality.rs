//! Data quality per source (数据质量): what government data-exchange
//! platforms are judged on, computed from the bus — the canonical topics
//! and the dead-letter topics — never from counters a restart loses.
//!
//! Per pipeline and per day (the local date the hub fetched the record):
//! - per field, **completeness** (the share of mapped records with a value)
//!   and **validity** (the share of the field's values that passed its
//!   checks: a record rejected because of that field, or flagged by a
//!   `check … on_fail: flag` on it, counts against it);
//! - per code-table field, the **distribution** of values, with the unknown
//!   codes that were rejected;
//! - per rule, **reject counts**.
//!
//! `duijie quality` prints it, `/desk/quality` draws it, and the hub keeps
//! today's figures as Prometheus gauges. The same [`Board`] does all three:
//! it is fed records as a follower reads them from the beginning.

use crate::bus::DeadLetter;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One field's counts for a day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FieldCounts {
    /// Mapped records with a value.
    pub present: u64,
    /// Of those, values a check flagged (`on_fail: flag`).
    pub flagged: u64,
    /// Records rejected because of this field.
    pub rejected: u64,
    /// Canonical value → records (code-table fields only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, u64>,
    /// Unknown source code → rejected records (code-table fields only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown_codes: BTreeMap<String, u64>,
}

/// One pipeline's day.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Day {
    /// Records fetched, as its raw topic holds them (pipelines with raw
    /// retention; else `None`): normally mapped + rejected.
    pub fetched: Option<u64>,
    /// Records mapped onto the canonical topic.
    pub mapped: u64,
    /// Records dead-lettered (by the mapping or the connector).
    pub rejected: u64,
    pub fields: BTreeMap<String, FieldCounts>,
    /// `rule` (and `rule:field`) → rejects.
    pub rejects_by_rule: BTreeMap<String, u64>,
}

/// A field's rates on a day, as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldRates {
    pub field: String,
    /// present / mapped.
    pub completeness: Option<f64>,
    /// valid / (valid + invalid), over the values seen.
    pub validity: Option<f64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown_codes: BTreeMap<String, u64>,
}

impl Day {
    pub fn rates(&self) -> Vec<FieldRates> {
        self.fields
            .iter()
            .map(|(field, c)| {
                let valid = c.present.saturating_sub(c.flagged);
                let seen = c.present + c.rejected;
                FieldRates {
                    field: field.clone(),
                    completeness: (self.mapped > 0).then(|| c.present as f64 / self.mapped as f64),
                    validity: (seen > 0).then(|| valid as f64 / seen as f64),
                    values: c.values.clone(),
                    unknown_codes: c.unknown_codes.clone(),
                }
            })
            .collect()
    }
}

/// The figures of every pipeline, by day.
#[derive(Debug, Default)]
pub struct Board {
    /// Pipeline → local date (`YYYY-MM-DD`) → counts.
    pub days: BTreeMap<String, BTreeMap<String, Day>>,
    /// Pipeline → its code-table fields.
    code_fields: BTreeMap<String, Vec<String>>,
    day_cache: DayCache,
}

/// The local day of the last fetch time seen: a batch's records share one.
#[derive(Debug, Default)]
struct DayCache(Option<(String, String)>);

impl DayCache {
    /// The local day of a `duijie-fetched-at` header (RFC 3339).
    fn of(&mut self, fetched: Option<&String>) -> &str {
        let fetched = fetched.map_or("", String::as_str);
        if self.0.as_ref().is_none_or(|(f, _)| f != fetched) {
            let ms = chrono::DateTime::parse_from_rfc3339(fetched).map_or(0, |t| t.timestamp_millis());
            self.0 = Some((fetched.to_owned(), local_day(ms)));
        }
        &self.0.as_ref().expect("just set").1
    }
}

/// A pipeline's counts for a day, made when missing.
fn day_entry<'a>(
    days: &'a mut BTreeMap<String, BTreeMap<String, Day>>,
    pipeline: &str,
    day: &str,
) -> &'a mut Day {
    if !days.contains_key(pipeline) {
        days.insert(pipeline.to_owned(), BTreeMap::new());
    }
    let by_day = days.get_mut(pipeline).expect("just made");
    if !by_day.contains_key(day) {
        by_day.insert(day.to_owned(), Day::default());
    }
    by_day.get_mut(day).expect("just made")
}

/// The local (Asia/Shanghai) date of epoch milliseconds.
fn local_day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono_tz::Asia::Shanghai)
                .format("%Y-%m-%d")
                .to_string()
        })
        .unwrap_or_else(|| "—".into())
}

impl Board {
    /// The day of a record of `pipeline` fetched at the `duijie-fetched-at`
    /// header's time; `None` for a pipeline not declared.
    fn day_of(&mut self, headers: &BTreeMap<String, String>) -> Option<&mut Day> {
        let pipeline = headers.get("duijie-pipeline")?;
        if !self.code_fields.contains_key(pipeline) {
            return None;
        }
        let day = self.day_cache.of(headers.get("duijie-fetched-at"));
        Some(day_entry(&mut self.days, pipeline, day))
    }

    /// Declares a pipeline and its code-table fields (from its mapping).
    pub fn pipeline(&mut self, name: &str, code_fields: Vec<String>) {
        self.code_fields.insert(name.to_owned(), code_fields);
        self.days.entry(name.to_owned()).or_default();
    }

    /// A canonical record (decoded), with its provenance headers.
    pub fn mapped(&mut self, headers: &BTreeMap<String, String>, record: &Value) {
        let Some(pipeline) = headers.get("duijie-pipeline") else {
            return;
        };
        let Some(codes) = self.code_fields.get(pipeline) else {
            return;
        };
        let day = self.day_cache.of(headers.get("duijie-fetched-at"));
        let day = day_entry(&mut self.days, pipeline, day);
        day.mapped += 1;
        let flagged: Vec<&str> = record
            .get("flags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str()?.split_once(':').map(|(field, _)| field.trim()))
                    .collect()
            })
            .unwrap_or_default();
        // Walks the record's fields as dotted paths (the names
        // `value::flatten_json` gives), without copying a value.
        fn walk(
            path: &mut String,
            v: &Value,
            day: &mut Day,
            codes: &[String],
            flagged: &[&str],
        ) {
            if let Value::Object(o) = v {
                for (k, x) in o {
                    let len = path.len();
                    if len > 0 {
                        path.push('.');
                    }
                    path.push_str(k);
                    if path != "flags" {
                        walk(path, x, day, codes, flagged);
                    }
                    path.truncate(len);
                }
                return;
            }
            let present = match v {
                Value::Null => false,
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if !day.fields.contains_key(path.as_str()) {
                day.fields.insert(path.clone(), FieldCounts::default());
            }
            let f = day.fields.get_mut(path.as_str()).expect("just made");
            if !present {
                return;
            }
            f.present += 1;
            if flagged.contains(&path.as_str()) {
                f.flagged += 1;
            }
            if codes.iter().any(|c| c == path) {
                let text = match v {
                    Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
                    other => std::borrow::Cow::Owned(other.to_string()),
                };
                match f.values.get_mut(text.as_ref()) {
                    Some(n) => *n += 1,
                    None => {
                        f.values.insert(text.into_owned(), 1);
                    }
                }
            }
        }
        walk(&mut String::new(), record, day, codes, &flagged);
    }

    /// A raw record of a pipeline with raw retention.
    pub fn fetched(&mut self, headers: &BTreeMap<String, String>) {
        if let Some(day) = self.day_of(headers) {
            *day.fetched.get_or_insert(0) += 1;
        }
    }

    /// A dead letter of a pipeline's dead-letter topic.
    pub fn rejected(&mut self, letter: &DeadLetter) {
        let pipeline = &letter.provenance.pipeline;
        if !self.code_fields.contains_key(pipeline) {
            return;
        }
        let day = self
            .days
            .entry(pipeline.clone())
            .or_default()
            .entry(local_day(letter.provenance.fetched_at_ms))
            .or_default();
        day.rejected += 1;
        *day.rejects_by_rule.entry(letter.rule.clone()).or_default() += 1;
        if let Some(field) = &letter.field {
            *day.rejects_by_rule
                .entry(format!("{}:{field}", letter.rule))
                .or_default() += 1;
            let f = day.fields.entry(field.clone()).or_default();
            f.rejected += 1;
            // "… code `X` is not in code table …": the unknown code.
            if letter.rule == "codes"
                && let Some(code) = letter
                    .reason
                    .split("code `")
                    .nth(1)
                    .and_then(|r| r.split('`').next())
            {
                *f.unknown_codes.entry(code.to_owned()).or_default() += 1;
            }
        }
    }

    /// The last `days` days of a pipeline, newest first.
    pub fn recent(&self, pipeline: &str, days: usize) -> Vec<(String, Day)> {
        self.days
            .get(pipeline)
            .map(|d| {
                d.iter()
                    .rev()
                    .take(days)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The report for a terminal: per pipeline, per day, per field.
pub fn report(board: &Board, pipelines: &[String], days: usize) -> String {
    use std::fmt::Write as _;
    let pct = |x: Option<f64>| x.map_or("—".to_owned(), |v| format!("{:.1}%", v * 100.0));
    let mut out = String::new();
    for p in pipelines {
        for (date, day) in board.recent(p, days) {
            let _ = writeln!(
                out,
                "{p} {date}: {} mapped, {} rejected{}",
                day.mapped,
                day.rejected,
                day.fetched
                    .map(|n| format!(", {n} fetched (raw)"))
                    .unwrap_or_default()
            );
            let _ = writeln!(
                out,
                "  {:<36} {:>12} {:>10}  values",
                "field", "completeness", "validity"
            );
            for r in day.rates() {
                let mut values: Vec<String> =
                    r.values.iter().map(|(k, n)| format!("{k}={n}")).collect();
                values.extend(
                    r.unknown_codes
                        .iter()
                        .map(|(k, n)| format!("unknown `{k}`={n}")),
                );
                let _ = writeln!(
                    out,
                    "  {:<36} {:>12} {:>10}  {}",
                    r.field,
                    pct(r.completeness),
                    pct(r.validity),
                    values.join(" ")
                );
            }
            if !day.rejects_by_rule.is_empty() {
                let rules: Vec<String> = day
                    .rejects_by_rule
                    .iter()
                    .map(|(k, n)| format!("{k}={n}"))
                    .collect();
                let _ = writeln!(out, "  rejects by rule: {}", rules.join(" "));
            }
        }
    }
    out
}

/// One JSON object per pipeline and day.
pub fn json_lines(board: &Board, pipelines: &[String], days: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for p in pipelines {
        for (date, day) in board.recent(p, days) {
            out.push(serde_json::json!({
                "pipeline": p, "day": date, "fetched": day.fetched, "mapped": day.mapped, "rejected": day.rejected,
                "fields": day.rates(), "rejects_by_rule": day.rejects_by_rule,
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pipeline: &str, fetched: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("duijie-pipeline".to_owned(), pipeline.to_owned()),
            ("duijie-fetched-at".to_owned(), fetched.to_owned()),
        ])
    }

    fn letter(rule: &str, field: Option<&str>, reason: &str, fetched_ms: i64) -> DeadLetter {
        let mut provenance = crate::bus::Provenance {
            source_system: "s".into(),
            source_id: None,
            fetched_at_ms: fetched_ms,
            connector: "file_drop".into(),
            pipeline: "p".into(),
            mapping: "m".into(),
            mapping_version: 1,
            payload_sha256: String::new(),
            origin: String::new(),
            code_tables: String::new(),
        };
        provenance.pipeline = "p".into();
        DeadLetter {
            reason: reason.into(),
            field: field.map(str::to_owned),
            rule: rule.into(),
            raw: "{}".into(),
            raw_encoding: "utf-8".into(),
            raw_truncated: false,
            raw_length: None,
            provenance,
            at_ms: fetched_ms,
        }
    }

    #[test]
    fn rates_are_exact_on_a_known_mix_per_day() {
        let mut b = Board::default();
        b.pipeline("p", vec!["status".into()]);
        // 2026-11-30 (Asia/Shanghai): four mapped, one rejected.
        let day1 = "2026-11-30T02:00:00Z";
        for (status, code, flags) in [
            ("OPEN", json!("91420502MA4ABCDE1X"), json!([])),
            ("OPEN", json!(null), json!([])),
            (
                "CLOSED",
                json!("BAD"),
                json!(["party.credit_code: not a credit code"]),
            ),
            ("CLOSED", json!(""), json!([])),
        ] {
            b.mapped(&headers("p", day1), &json!({"id": "x", "status": status, "party": {"credit_code": code}, "flags": flags}));
        }
        let fetched = chrono::DateTime::parse_from_rfc3339(day1)
            .unwrap()
            .timestamp_millis();
        b.rejected(&letter(
            "codes",
            Some("status"),
            "code `9` is not in code table `urban_case_state`",
            fetched,
        ));
        // The next local day: one record; 16:30 UTC is 00:30 in Shanghai.
        b.mapped(
            &headers("p", "2026-11-30T16:30:00Z"),
            &json!({"id": "y", "status": "OPEN", "party": {"credit_code": null}, "flags": []}),
        );
        // Another pipeline's records are not this one's.
        b.mapped(&headers("q", day1), &json!({"id": "z"}));

        let days = b.recent("p", 7);
        assert_eq!(
            days.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>(),
            ["2026-12-01", "2026-11-30"]
        );
        let (_, d) = &days[1];
        assert_eq!((d.mapped, d.rejected), (4, 1));
        let rates: BTreeMap<String, FieldRates> = d
            .rates()
            .into_iter()
            .map(|r| (r.field.clone(), r))
            .collect();
        let code = &rates["party.credit_code"];
        // Present in 2 of 4 (null and "" are empty); 1 of the 2 flagged.
        assert_eq!(code.completeness, Some(0.5));
        assert_eq!(code.validity, Some(0.5));
        let status = &rates["status"];
        assert_eq!(status.completeness, Some(1.0));
        // 4 valid values, 1 rejected for its code.
        assert_eq!(status.validity, Some(0.8));
        assert_eq!(
            status.values,
            BTreeMap::from([("CLOSED".into(), 2), ("OPEN".into(), 2)])
        );
        assert_eq!(status.unknown_codes, BTreeMap::from([("9".into(), 1)]));
        assert_eq!(
            d.rejects_by_rule,
            BTreeMap::from([("codes".into(), 1), ("codes:status".into(), 1)])
        );
        let text = report(&b, &["p".into()], 7);
        assert!(
            text.contains("p 2026-11-30: 4 mapped, 1 rejected"),
            "{text}"
        );
        assert!(text.contains("unknown `9`=1"), "{text}");
    }
}

/// What a board reads: per pipeline, its canonical topic, dead-letter
/// topic and code-table fields; and the raw topics kept.
#[derive(Debug, Clone)]
pub struct Sources {
    pub pipelines: Vec<(String, String, String, Vec<String>)>,
    pub raw: Vec<String>,
}

impl Sources {
    /// The sources of `pipelines` of a deployment (all when empty).
    pub fn of(
        deployment: &crate::config::Deployment,
        mappings: &crate::mapping::MappingSet,
        only: &[String],
    ) -> Self {
        Self {
            pipelines: deployment
                .pipelines
                .iter()
                .filter(|p| only.is_empty() || only.contains(&p.name))
                .map(|p| {
                    let codes = mappings
                        .get(&p.mapping)
                        .map(|m| m.code_fields().into_iter().map(|(f, _)| f).collect())
                        .unwrap_or_default();
                    (p.name.clone(), p.topic.clone(), p.dlq_topic.clone(), codes)
                })
                .collect(),
            raw: deployment
                .pipelines
                .iter()
                .filter(|p| only.is_empty() || only.contains(&p.name))
                .filter_map(crate::config::PipelineConfig::raw_topic)
                .collect(),
        }
    }

    pub fn board(&self) -> Board {
        let mut b = Board::default();
        for (name, _, _, codes) in &self.pipelines {
            b.pipeline(name, codes.clone());
        }
        b
    }

    fn topics(&self) -> (Vec<String>, Vec<String>) {
        let mut canonical: Vec<String> = self.pipelines.iter().map(|p| p.1.clone()).collect();
        let mut dlqs: Vec<String> = self.pipelines.iter().map(|p| p.2.clone()).collect();
        canonical.sort();
        canonical.dedup();
        dlqs.sort();
        dlqs.dedup();
        (canonical, dlqs)
    }
}

/// Feeds one record of a followed topic.
fn feed(
    board: &mut Board,
    schemas: &crate::schema::SchemaSet,
    (dlqs, raw): (&[String], &[String]),
    topic: &str,
    headers: &BTreeMap<String, String>,
    payload: &[u8],
) {
    if raw.iter().any(|r| r == topic) {
        board.fetched(headers);
    } else if dlqs.iter().any(|d| d == topic) {
        match serde_json::from_slice::<DeadLetter>(payload) {
            Ok(l) => board.rejected(&l),
            Err(e) => {
                tracing::warn!(topic, error = %e, "a dead letter does not decode; quality leaves it out")
            }
        }
    } else if !payload.is_empty() {
        match crate::delivery::decode_payload(schemas, headers, payload) {
            Ok(v) => board.mapped(headers, &v),
            Err(e) => {
                tracing::warn!(topic, error = %e, "a record does not decode; quality leaves it out")
            }
        }
    }
}

/// A board from the whole bus as of now (`duijie quality`).
pub async fn from_bus(
    bus: &crate::bus::Bus,
    schemas: &crate::schema::SchemaSet,
    sources: &Sources,
) -> Result<Board, crate::bus::BusError> {
    let mut board = sources.board();
    let (canonical, dlqs) = sources.topics();
    for topic in canonical.iter().chain(&dlqs).chain(&sources.raw) {
        for r in crate::bus::inspect::read_topic(bus, topic, true).await? {
            feed(
                &mut board,
                schemas,
                (&dlqs, &sources.raw),
                topic,
                &r.headers,
                r.payload.as_deref().unwrap_or_default(),
            );
        }
    }
    Ok(board)
}

/// Keeps `board` up to date with the bus until shutdown (the hub: the desk
/// page and today's gauges).
pub async fn keep(
    board: std::sync::Arc<std::sync::RwLock<Board>>,
    bus: crate::bus::Bus,
    schemas: std::sync::Arc<crate::schema::SchemaSet>,
    sources: Sources,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let (canonical, dlqs) = sources.topics();
    let topics: Vec<String> = canonical
        .into_iter()
        .chain(dlqs.iter().cloned())
        .chain(sources.raw.iter().cloned())
        .collect();
    let mut rx = crate::clocks::follow(&bus, topics, shutdown);
    while let Some(f) = rx.recv().await {
        if let crate::clocks::Follow::Record(f) = f {
            let mut b = board.write().expect("quality board lock");
            feed(
                &mut b,
                &schemas,
                (&dlqs, &sources.raw),
                &f.topic,
                &f.headers,
                &f.payload,
            );
        }
    }
}
