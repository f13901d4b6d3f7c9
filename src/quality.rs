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
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// One field's counts for a day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FieldCounts {
    /// Mapped records with a value.
    pub present: u64,
    /// Of those, values a check flagged (`on_fail: flag`).
    pub flagged: u64,
    /// Records rejected because of this field.
    pub rejected: u64,
    /// Canonical value → records (code-table fields only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, u64>,
    /// Unknown source code → rejected records (code-table fields only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unknown_codes: BTreeMap<String, u64>,
}

/// One pipeline's day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Day {
    /// Records fetched, as its raw topic holds them (pipelines with raw
    /// retention; else `None`): normally mapped + rejected.
    pub fetched: Option<u64>,
    /// Records mapped onto the canonical topic.
    pub mapped: u64,
    /// Records dead-lettered (by the mapping or the connector).
    pub rejected: u64,
    #[serde(default)]
    pub fields: BTreeMap<String, FieldCounts>,
    /// `rule` (and `rule:field`) → rejects.
    #[serde(default)]
    pub rejects_by_rule: BTreeMap<String, u64>,
}

/// What a batch of one pipeline mapped, per local day and field: written
/// by the pipeline to the quality topic with the batch (in the same
/// acknowledgement, or transaction), summed by the board. A tally counts
/// mapped records only; rejects come from the dead-letter topics.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    pub pipeline: String,
    /// Local date → the day's counts (`mapped` and `fields` only).
    pub days: BTreeMap<String, Day>,
}

impl Tally {
    pub fn new(pipeline: &str) -> Self {
        Self {
            pipeline: pipeline.to_owned(),
            ..Self::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// One mapped record (as its canonical JSON), fetched at
    /// `fetched_at_ms`; `codes` are the pipeline's code-table fields. The
    /// reference the hub's [`Tallier`] is tested against.
    #[cfg(test)]
    pub fn mapped(&mut self, fetched_at_ms: i64, codes: &[String], record: &Value) {
        let date = &local_day(fetched_at_ms);
        if !self.days.contains_key(date) {
            self.days.insert(date.clone(), Day::default());
        }
        count_mapped(self.days.get_mut(date).expect("just made"), codes, record);
    }

    /// Adds another tally of the same pipeline.
    pub fn merge(&mut self, other: Tally) {
        for (date, day) in other.days {
            match self.days.get_mut(&date) {
                Some(d) => d.add(&day),
                None => {
                    self.days.insert(date, day);
                }
            }
        }
    }
}

/// Counts a pipeline's mapped records into a [`Tally`] straight from the
/// mapped values, by the schema's fields, with the figures [`Tally::mapped`]
/// gives for the record's canonical JSON (a nullable nested record with no
/// value counts as its own field, empty; the `flags` field is not a field):
/// the pipeline's hot path, where building the JSON of every record and
/// finding each field by name had cost a tenth of the hub's CPU.
#[derive(Debug)]
pub struct Tallier {
    shape: Vec<Shape>,
    /// Dotted path of each slot (a leaf, or a nullable record).
    paths: Vec<String>,
    /// The slots coded through a code table.
    coded: Vec<bool>,
    flags_leaf: Option<usize>,
    /// Local day of a fetch time, as last computed.
    day_cache: Option<(i64, usize)>,
    days: Vec<(String, DayCounters)>,
}

#[derive(Debug)]
enum Shape {
    Leaf {
        leaf: usize,
        slot: usize,
    },
    Record {
        nullable: bool,
        slot: usize,
        children: Vec<Shape>,
    },
}

#[derive(Debug, Default)]
struct DayCounters {
    mapped: u64,
    /// Per slot: walked, present, flagged.
    walked: Vec<u64>,
    present: Vec<u64>,
    flagged: Vec<u64>,
    values: Vec<BTreeMap<String, u64>>,
}

impl Tallier {
    pub fn new(schema: &crate::schema::CanonicalSchema, codes: &[String]) -> Self {
        fn build(
            prefix: &str,
            nodes: &[(String, crate::schema::Node)],
            paths: &mut Vec<String>,
        ) -> Vec<Shape> {
            let mut out = Vec::new();
            for (name, node) in nodes {
                let path = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}.{name}")
                };
                if path == "flags" {
                    continue;
                }
                let slot = paths.len();
                paths.push(path.clone());
                out.push(match node {
                    crate::schema::Node::Leaf(i) => Shape::Leaf { leaf: *i, slot },
                    crate::schema::Node::Record {
                        nullable, children, ..
                    } => Shape::Record {
                        nullable: *nullable,
                        slot,
                        children: build(&path, children, paths),
                    },
                });
            }
            out
        }
        let mut paths = Vec::new();
        let shape = build("", &schema.tree, &mut paths);
        let coded = paths.iter().map(|p| codes.contains(p)).collect();
        Self {
            shape,
            paths,
            coded,
            flags_leaf: schema.leaf("flags"),
            day_cache: None,
            days: Vec::new(),
        }
    }

    /// One mapped record, fetched at `fetched_at_ms`.
    ///
    /// Long because one record's completeness and validity counters, field
    /// by field.
    pub fn mapped(&mut self, fetched_at_ms: i64, values: &[crate::value::Val<'_>]) {
        use crate::value::Val;
        let at = match self.day_cache {
            Some((ms, at)) if ms == fetched_at_ms => at,
            _ => {
                let day = local_day(fetched_at_ms);
                let at = match self.days.iter().position(|(d, _)| *d == day) {
                    Some(at) => at,
                    None => {
                        let n = self.paths.len();
                        self.days.push((
                            day,
                            DayCounters {
                                walked: vec![0; n],
                                present: vec![0; n],
                                flagged: vec![0; n],
                                values: vec![BTreeMap::new(); n],
                                ..DayCounters::default()
                            },
                        ));
                        self.days.len() - 1
                    }
                };
                self.day_cache = Some((fetched_at_ms, at));
                at
            }
        };
        let counters = &mut self.days[at].1;
        counters.mapped += 1;
        fn empty(shape: &[Shape], values: &[Val<'_>]) -> bool {
            shape.iter().all(|s| match s {
                Shape::Leaf { leaf, .. } => values[*leaf].is_null(),
                Shape::Record { children, .. } => empty(children, values),
            })
        }
        // The fields a check flagged (`on_fail: flag`): "field: reason".
        let flagged: Vec<String> = match self.flags_leaf.map(|i| &values[i]) {
            Some(Val::List(flags)) => flags
                .iter()
                .filter_map(|f| {
                    let t = f.as_text()?;
                    t.split_once(':').map(|(field, _)| field.trim().to_owned())
                })
                .collect(),
            _ => Vec::new(),
        };
        struct Walk<'w> {
            coded: &'w [bool],
            paths: &'w [String],
            flagged: &'w [String],
        }
        fn walk(w: &Walk<'_>, shape: &[Shape], values: &[Val<'_>], c: &mut DayCounters) {
            for s in shape {
                match s {
                    Shape::Record {
                        nullable,
                        slot,
                        children,
                    } => {
                        if *nullable && empty(children, values) {
                            c.walked[*slot] += 1;
                        } else {
                            walk(w, children, values, c);
                        }
                    }
                    Shape::Leaf { leaf, slot } => {
                        c.walked[*slot] += 1;
                        let v = &values[*leaf];
                        let present = match v {
                            Val::Null => false,
                            Val::Str(s) => !s.is_empty(),
                            _ => true,
                        };
                        if !present {
                            continue;
                        }
                        c.present[*slot] += 1;
                        if !w.flagged.is_empty() && w.flagged.contains(&w.paths[*slot]) {
                            c.flagged[*slot] += 1;
                        }
                        if w.coded[*slot] {
                            let text = match v {
                                Val::List(_) => std::borrow::Cow::Owned(v.to_json().to_string()),
                                other => other.as_text().unwrap_or_default(),
                            };
                            match c.values[*slot].get_mut(text.as_ref()) {
                                Some(n) => *n += 1,
                                None => {
                                    c.values[*slot].insert(text.into_owned(), 1);
                                }
                            }
                        }
                    }
                }
            }
        }
        let w = Walk {
            coded: &self.coded,
            paths: &self.paths,
            flagged: &flagged,
        };
        walk(&w, &self.shape, values, counters);
    }

    /// What was counted, as a tally of `pipeline`; the counters start over.
    pub fn take(&mut self, pipeline: &str) -> Tally {
        let mut tally = Tally::new(pipeline);
        for (date, c) in std::mem::take(&mut self.days) {
            let mut day = Day {
                mapped: c.mapped,
                ..Day::default()
            };
            for (slot, path) in self.paths.iter().enumerate() {
                if c.walked[slot] == 0 {
                    continue;
                }
                day.fields.insert(
                    path.clone(),
                    FieldCounts {
                        present: c.present[slot],
                        flagged: c.flagged[slot],
                        values: c.values[slot].clone(),
                        ..FieldCounts::default()
                    },
                );
            }
            tally.days.insert(date, day);
        }
        self.day_cache = None;
        tally
    }
}

impl Day {
    /// Adds another day's mapped counts (a tally's).
    fn add(&mut self, other: &Day) {
        self.mapped += other.mapped;
        for (path, c) in &other.fields {
            if !self.fields.contains_key(path) {
                self.fields.insert(path.clone(), FieldCounts::default());
            }
            let f = self.fields.get_mut(path).expect("just made");
            f.present += c.present;
            f.flagged += c.flagged;
            for (v, n) in &c.values {
                *f.values.entry(v.clone()).or_default() += n;
            }
        }
    }
}

/// Counts one mapped record into its day: per field (dotted paths, the
/// names `value::flatten_json` gives), presence, flags, code values.
#[cfg(test)]
fn count_mapped(day: &mut Day, codes: &[String], record: &Value) {
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
    fn walk(path: &mut String, v: &Value, day: &mut Day, codes: &[String], flagged: &[&str]) {
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
            let ms =
                chrono::DateTime::parse_from_rfc3339(fetched).map_or(0, |t| t.timestamp_millis());
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

    /// A pipeline's tally (from the quality topic).
    pub fn tallied(&mut self, tally: &Tally) {
        if !self.code_fields.contains_key(&tally.pipeline) {
            return;
        }
        for (date, day) in &tally.days {
            day_entry(&mut self.days, &tally.pipeline, date).add(day);
        }
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

    /// The hub's tallier gives, from the mapped values, what the reference
    /// gives from the records' canonical JSON: on every shipped mapping's
    /// test inputs and the engine fixtures (nested nullable records, code
    /// tables, flags).
    #[test]
    fn the_tallier_counts_what_the_canonical_json_shows() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let (mut checked, mut flagged, mut coded, mut collapsed) = (0, false, false, false);
        for base in [root.to_path_buf(), root.join("tests/fixtures/engine")] {
            let schemas = crate::schema::SchemaSet::load_dir(&base.join("schemas")).unwrap();
            let mappings =
                crate::mapping::MappingSet::load_dir(&base.join("mappings"), &schemas).unwrap();
            for mapping in mappings.iter() {
                let dir = base.join("mappings/tests").join(&mapping.name);
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                let codes = mapping.code_field_names();
                let mut tallier = Tallier::new(&mapping.schema, &codes);
                let mut reference = Tally::new("p");
                for e in entries {
                    let path = e.unwrap().path();
                    if !path.to_string_lossy().ends_with(".input.jsonl") {
                        continue;
                    }
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (n, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
                        // Two local days.
                        let at = 1_764_500_000_000 + (n as i64 % 2) * 86_400_000;
                        if let Ok(m) = mapping.map_at(line.as_bytes(), at) {
                            tallier.mapped(at, &m.values);
                            reference.mapped(at, &codes, &mapping.schema.to_json(&m.values));
                            checked += 1;
                        }
                    }
                }
                let days = tallier.take("p").days;
                assert_eq!(days, reference.days, "mapping {}", mapping.name);
                let fields = || days.values().flat_map(|d| d.fields.iter());
                flagged |= fields().any(|(_, f)| f.flagged > 0);
                coded |= fields().any(|(_, f)| !f.values.is_empty());
                // A nested record written as null counts as its own field.
                collapsed |=
                    fields().any(|(p, _)| fields().any(|(q, _)| q.starts_with(&format!("{p}."))));
            }
        }
        assert!(checked > 50, "only {checked} records mapped");
        assert!(
            flagged && coded && collapsed,
            "{flagged} {coded} {collapsed}"
        );
    }

    fn ms(fetched: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(fetched)
            .unwrap()
            .timestamp_millis()
    }

    /// A pipeline's batch as the board reads it: tallied, written to the
    /// quality topic as JSON and read back.
    fn batch(b: &mut Board, pipeline: &str, records: &[(&str, Value)]) {
        let codes = vec!["status".to_owned()];
        let mut tally = Tally::new(pipeline);
        for (fetched, record) in records {
            tally.mapped(ms(fetched), &codes, record);
        }
        let wire = serde_json::to_vec(&tally).unwrap();
        b.tallied(&serde_json::from_slice(&wire).unwrap());
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
            idempotency_key: None,
        }
    }

    #[test]
    fn rates_are_exact_on_a_known_mix_per_day() {
        let mut b = Board::default();
        b.pipeline("p", vec!["status".into()]);
        // 2026-11-30 (Asia/Shanghai): four mapped, one rejected.
        let day1 = "2026-11-30T02:00:00Z";
        let records: Vec<(&str, Value)> = [
            ("OPEN", json!("91420502MA4ABCDE1X"), json!([])),
            ("OPEN", json!(null), json!([])),
            (
                "CLOSED",
                json!("BAD"),
                json!(["party.credit_code: not a credit code"]),
            ),
            ("CLOSED", json!(""), json!([])),
        ]
        .into_iter()
        .map(|(status, code, flags)| {
            (day1, json!({"id": "x", "status": status, "party": {"credit_code": code}, "flags": flags}))
        })
        .collect();
        // Two batches of that day: their tallies add up.
        batch(&mut b, "p", &records[..1]);
        batch(&mut b, "p", &records[1..]);
        let fetched = ms(day1);
        b.rejected(&letter(
            "codes",
            Some("status"),
            "code `9` is not in code table `urban_case_state`",
            fetched,
        ));
        // The next local day: one record; 16:30 UTC is 00:30 in Shanghai.
        batch(
            &mut b,
            "p",
            &[(
                "2026-11-30T16:30:00Z",
                json!({"id": "y", "status": "OPEN", "party": {"credit_code": null}, "flags": []}),
            )],
        );
        // Another pipeline's records are not this one's.
        batch(&mut b, "q", &[(day1, json!({"id": "z"}))]);

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

/// What a board reads: the quality tallies, per pipeline its dead-letter
/// topic and code-table fields, and the raw topics kept.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Name, dead-letter topic, code-table fields.
    pub pipelines: Vec<(String, String, Vec<String>)>,
    pub raw: Vec<String>,
    /// The quality topic (`[hub] quality_topic`).
    pub tallies: String,
}

impl Sources {
    pub fn board(&self) -> Board {
        let mut b = Board::default();
        for (name, _, codes) in &self.pipelines {
            b.pipeline(name, codes.clone());
        }
        b
    }

    /// Every topic read: the tallies, the dead-letter and the raw topics.
    fn topics(&self) -> Vec<String> {
        let mut dlqs: Vec<String> = self.pipelines.iter().map(|p| p.1.clone()).collect();
        dlqs.sort();
        dlqs.dedup();
        std::iter::once(self.tallies.clone())
            .chain(dlqs)
            .chain(self.raw.iter().cloned())
            .collect()
    }
}

/// Feeds one record of a followed topic.
fn feed(
    board: &mut Board,
    sources: &Sources,
    (topic, partition, offset): (&str, i32, i64),
    headers: &BTreeMap<String, String>,
    payload: &[u8],
) {
    if topic == sources.tallies {
        match serde_json::from_slice::<Tally>(payload) {
            Ok(t) => board.tallied(&t),
            Err(e) => {
                crate::bus::unreadable("quality board", topic, partition, offset, &e.to_string())
            }
        }
    } else if sources.raw.iter().any(|r| r == topic) {
        board.fetched(headers);
    } else {
        match serde_json::from_slice::<DeadLetter>(payload) {
            Ok(l) => board.rejected(&l),
            Err(e) => {
                crate::bus::unreadable("quality board", topic, partition, offset, &e.to_string())
            }
        }
    }
}

/// A board from the whole bus as of now (`duijie quality`).
pub async fn from_bus(
    bus: &crate::bus::Bus,
    sources: &Sources,
) -> Result<Board, crate::bus::BusError> {
    let mut board = sources.board();
    for topic in sources.topics() {
        for r in crate::bus::inspect::read_topic(bus, &topic, true).await? {
            feed(
                &mut board,
                sources,
                (&topic, r.partition, r.offset),
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
    sources: Sources,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut rx = crate::bus::follow::follow(&bus, sources.topics(), shutdown);
    while let Some(f) = rx.recv().await {
        if let crate::bus::follow::Follow::Record(f) = f {
            let mut b = board.write().expect("quality board lock");
            feed(
                &mut b,
                &sources,
                (&f.topic, f.partition, f.offset),
                &f.headers,
                &f.payload,
            );
        }
    }
}
