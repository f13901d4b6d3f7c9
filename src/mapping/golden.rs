//! Dry runs of a mapping over a file, and golden fixtures.
//!
//! Fixtures live in `<mappings>/tests/<mapping>/`: for each case,
//! `<case>.input.jsonl` (one record a line) or `<case>.input.xml` (one
//! record), beside `<case>.expected.jsonl` (the canonical records) and
//! `<case>.rejects.jsonl` (the rejects, with line, field, rule and reason).

use super::{Mapping, MappingSet};
use duijie_connectors::PayloadFormat;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The outcome of mapping every record of an input.
#[derive(Debug, Default)]
pub struct DryRun {
    pub records: Vec<Value>,
    pub rejects: Vec<Value>,
}

/// Maps an input as `duijie map` does. JSON lines: one record a line, blank
/// lines skipped, numbered from 1. XML: the whole input is one record.
pub fn dry_run(mapping: &Mapping, input: &[u8]) -> DryRun {
    let mut run = DryRun::default();
    let mut handle = |line: usize, payload: &[u8]| match mapping.map(payload) {
        Ok(mapped) => run.records.push(mapping.to_json(&mapped)),
        Err(reject) => run.rejects.push(json!({
            "line": line,
            "field": reject.field,
            "rule": reject.rule,
            "reason": reject.reason,
            "raw": String::from_utf8_lossy(payload),
        })),
    };
    match mapping.format {
        PayloadFormat::Xml => handle(1, input),
        PayloadFormat::Json => {
            let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
            for (i, line) in input.split(|&b| b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                handle(i + 1, line);
            }
        }
    }
    run
}

/// One fixture's result.
#[derive(Debug)]
pub struct CaseResult {
    pub mapping: String,
    pub case: String,
    /// Human-readable differences; empty when the case passes.
    pub diff: Vec<String>,
}

/// Which expected files a run rewrites from the current output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Bless {
    #[default]
    Nothing,
    /// Every mapping's.
    All,
    /// One mapping's, by name; the others are only compared.
    One(String),
}

impl Bless {
    fn covers(&self, mapping: &str) -> bool {
        match self {
            Bless::Nothing => false,
            Bless::All => true,
            Bless::One(name) => name == mapping,
        }
    }
}

/// Runs every fixture of every mapping (or of `only`). A mapping without
/// fixtures is a failure: every mapping must be covered.
pub fn run_all(
    set: &MappingSet,
    tests_dir: &Path,
    only: Option<&str>,
    bless: &Bless,
) -> Vec<CaseResult> {
    let mut results = Vec::new();
    for (name, mapping) in &set.mappings {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let bless = bless.covers(name);
        let dir = tests_dir.join(name);
        let inputs = list_inputs(&dir);
        if inputs.is_empty() {
            results.push(CaseResult {
                mapping: name.clone(),
                case: "(none)".into(),
                diff: vec![format!("no fixtures in {}", dir.display())],
            });
            continue;
        }
        for input in inputs {
            results.push(run_case(mapping, &input, bless));
        }
    }
    results
}

fn list_inputs(dir: &Path) -> Vec<PathBuf> {
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.contains(".input."))
                })
                .collect()
        })
        .unwrap_or_default();
    inputs.sort();
    inputs
}

fn run_case(mapping: &Mapping, input: &Path, bless: bool) -> CaseResult {
    let file_name = input.file_name().unwrap().to_string_lossy().into_owned();
    let case = file_name
        .split(".input.")
        .next()
        .unwrap_or_default()
        .to_owned();
    let dir = input.parent().unwrap();
    let expected_path = dir.join(format!("{case}.expected.jsonl"));
    let rejects_path = dir.join(format!("{case}.rejects.jsonl"));
    let mut diff = Vec::new();
    let bytes = match std::fs::read(input) {
        Ok(b) => b,
        Err(e) => {
            diff.push(format!("cannot read {}: {e}", input.display()));
            return CaseResult {
                mapping: mapping.name.clone(),
                case,
                diff,
            };
        }
    };
    let run = dry_run(mapping, &bytes);
    if bless {
        let _ = std::fs::write(&expected_path, to_lines(&run.records));
        let _ = std::fs::write(&rejects_path, to_lines(&run.rejects));
    }
    compare(&expected_path, &run.records, "record", &mut diff);
    compare(&rejects_path, &run.rejects, "reject", &mut diff);
    CaseResult {
        mapping: mapping.name.clone(),
        case,
        diff,
    }
}

fn to_lines(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

fn compare(path: &Path, actual: &[Value], what: &str, diff: &mut Vec<String>) {
    let expected: Vec<Value> = match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut values = Vec::new();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                match serde_json::from_str(line) {
                    Ok(v) => values.push(v),
                    Err(e) => {
                        diff.push(format!("{}:{}: not JSON: {e}", path.display(), i + 1));
                        return;
                    }
                }
            }
            values
        }
        Err(_) if actual.is_empty() => Vec::new(),
        Err(_) => {
            diff.push(format!("{} is missing", path.display()));
            Vec::new()
        }
    };
    let n = expected.len().max(actual.len());
    for i in 0..n {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) if e == a => {}
            (Some(e), Some(a)) => {
                diff.push(format!("{what} {}:", i + 1));
                diff.extend(field_diff(e, a));
            }
            (Some(e), None) => {
                diff.push(format!("{what} {}: expected but missing\n  - {e}", i + 1))
            }
            (None, Some(a)) => diff.push(format!("{what} {}: not expected\n  + {a}", i + 1)),
            (None, None) => {}
        }
    }
}

/// Differences of two JSON objects, field by field.
fn field_diff(expected: &Value, actual: &Value) -> Vec<String> {
    match (expected.as_object(), actual.as_object()) {
        (Some(e), Some(a)) => {
            let mut keys: Vec<&String> = e.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| e.get(*k) != a.get(*k))
                .map(|k| {
                    format!(
                        "  {k}:\n    - {}\n    + {}",
                        e.get(k).map_or("(absent)".into(), Value::to_string),
                        a.get(k).map_or("(absent)".into(), Value::to_string)
                    )
                })
                .collect()
        }
        _ => vec![format!("  - {expected}\n  + {actual}")],
    }
}
