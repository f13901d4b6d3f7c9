//! `duijie mapping diff`: what an edited mapping (or code table) would
//! change on real traffic — the raw records a pipeline kept — before it
//! ships. Per field: how many records change, gain or lose a value, with
//! examples side by side; which records newly reject or newly pass, and
//! why; and whether a record's key (its identity on the bus) changes.

use super::Mapping;
use duijie_connectors::RawRecord;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Examples kept per field and per kind of change.
const EXAMPLES: usize = 3;

/// One record's place, for a person to find it again.
#[derive(Debug, Clone, Serialize)]
pub struct Where {
    /// The canonical key (the current mapping's, else the edited one's).
    pub key: Option<String>,
    pub origin: String,
    /// The raw record: `TOPIC/PARTITION/OFFSET`.
    pub raw: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldExample {
    #[serde(flatten)]
    pub at: Where,
    pub before: Value,
    pub after: Value,
}

/// How one output field changes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FieldChange {
    /// Both have a value, and it differs.
    pub changed: u64,
    /// Null before, a value after.
    pub gained: u64,
    /// A value before, null after.
    pub lost: u64,
    pub examples: Vec<FieldExample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectChange {
    #[serde(flatten)]
    pub at: Where,
    /// The reject's reason (for a newly passing record: the old one).
    pub reason: String,
}

/// What the edit changes, over `records` raw records.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Diff {
    pub records: u64,
    /// Records whose canonical form changes at all.
    pub records_changed: u64,
    /// Dotted field path → its changes.
    pub fields: BTreeMap<String, FieldChange>,
    pub newly_rejected: Vec<RejectChange>,
    pub newly_passing: Vec<RejectChange>,
    pub newly_rejected_count: u64,
    pub newly_passing_count: u64,
    /// Records that reject either way, with the same reason or not.
    pub still_rejected: u64,
    /// Records whose key changes: republished, they would be new records.
    pub keys_changed: u64,
    /// The mapping versions compared.
    pub before_version: u32,
    pub after_version: u32,
}

impl Diff {
    /// Whether anything changes (CI gates a mapping change on this).
    pub fn changes_anything(&self) -> bool {
        self.records_changed > 0 || self.newly_rejected_count > 0 || self.newly_passing_count > 0
    }
}

/// Maps every raw record with both mappings and compares.
pub fn diff(before: &Mapping, after: &Mapping, records: &[(RawRecord, String)]) -> Diff {
    let mut d = Diff {
        before_version: before.version,
        after_version: after.version,
        ..Diff::default()
    };
    for (raw, raw_ref) in records {
        d.records += 1;
        let a = before.map_at(&raw.payload, raw.fetched_at_ms);
        let b = after.map_at(&raw.payload, raw.fetched_at_ms);
        let at = |key: Option<String>| Where {
            key,
            origin: raw.origin.clone(),
            raw: raw_ref.clone(),
        };
        match (a, b) {
            (Ok(a), Ok(b)) => {
                if a.key != b.key {
                    d.keys_changed += 1;
                }
                let fa: BTreeMap<String, Value> = crate::value::flatten_json(&before.to_json(&a))
                    .into_iter()
                    .collect();
                let fb: BTreeMap<String, Value> = crate::value::flatten_json(&after.to_json(&b))
                    .into_iter()
                    .collect();
                let mut changed = false;
                let paths: std::collections::BTreeSet<&String> =
                    fa.keys().chain(fb.keys()).collect();
                for path in paths {
                    let x = fa.get(path).unwrap_or(&Value::Null);
                    let y = fb.get(path).unwrap_or(&Value::Null);
                    if x == y {
                        continue;
                    }
                    changed = true;
                    let f = d.fields.entry(path.clone()).or_default();
                    match (x.is_null(), y.is_null()) {
                        (true, false) => f.gained += 1,
                        (false, true) => f.lost += 1,
                        _ => f.changed += 1,
                    }
                    if f.examples.len() < EXAMPLES {
                        f.examples.push(FieldExample {
                            at: at(Some(a.key.to_string())),
                            before: x.clone(),
                            after: y.clone(),
                        });
                    }
                }
                if changed {
                    d.records_changed += 1;
                }
            }
            (Ok(a), Err(r)) => {
                d.newly_rejected_count += 1;
                if d.newly_rejected.len() < 20 {
                    d.newly_rejected.push(RejectChange {
                        at: at(Some(a.key.to_string())),
                        reason: r.to_string(),
                    });
                }
            }
            (Err(r), Ok(b)) => {
                d.newly_passing_count += 1;
                if d.newly_passing.len() < 20 {
                    d.newly_passing.push(RejectChange {
                        at: at(Some(b.key.to_string())),
                        reason: r.to_string(),
                    });
                }
            }
            (Err(_), Err(_)) => d.still_rejected += 1,
        }
    }
    d
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// The report for a terminal.
pub fn report(d: &Diff, mapping: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "mapping `{mapping}` v{} → edited v{}, over {} raw record(s): {} change, {} newly rejected, {} newly pass, {} still rejected, {} change key",
        d.before_version,
        d.after_version,
        d.records,
        d.records_changed,
        d.newly_rejected_count,
        d.newly_passing_count,
        d.still_rejected,
        d.keys_changed
    );
    if !d.fields.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<32} {:>8} {:>8} {:>8}",
            "field", "changed", "gained", "lost"
        );
        for (path, f) in &d.fields {
            let _ = writeln!(
                out,
                "{path:<32} {:>8} {:>8} {:>8}",
                f.changed, f.gained, f.lost
            );
        }
        for (path, f) in &d.fields {
            let _ = writeln!(out, "\n{path}:");
            for e in &f.examples {
                let _ = writeln!(
                    out,
                    "  {:<28} {} → {}   ({}, raw {})",
                    e.at.key.as_deref().unwrap_or("—"),
                    short(&e.before),
                    short(&e.after),
                    e.at.origin,
                    e.at.raw
                );
            }
        }
    }
    for (title, list) in [
        ("newly rejected", &d.newly_rejected),
        ("newly passing (was rejected)", &d.newly_passing),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}:");
        for r in list {
            let _ = writeln!(
                out,
                "  {:<28} {}   ({}, raw {})",
                r.at.key.as_deref().unwrap_or("—"),
                r.reason,
                r.at.origin,
                r.at.raw
            );
        }
    }
    if !d.changes_anything() {
        let _ = writeln!(out, "no change");
    }
    out
}
