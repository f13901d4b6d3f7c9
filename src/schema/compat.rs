//! Schema compatibility as a registry judges it (the Confluent rules,
//! which Apicurio's Confluent-compatible API follows): whether the schema
//! a deployment would register can join a subject's versions under the
//! subject's compatibility level, so that `duijie check --registry` refuses
//! a mapping change that would break downstream readers before it is
//! deployed, naming the field and the rule.
//!
//! - `BACKWARD` (the default): the new schema reads data written with the
//!   latest version (`_TRANSITIVE`: with every version).
//! - `FORWARD`: the latest version (every version) reads data written with
//!   the new schema.
//! - `FULL`: both. `NONE`: anything goes.
//!
//! Reading is Avro schema resolution (`apache_avro::schema_compatibility`),
//! plus two rules it leaves out: a reader that lacks a symbol of the
//! writer's enum, without a default symbol, cannot read a record that
//! carries it; and every branch of a writer's union must be read by the
//! reader (by one of its union's branches), as the specification's
//! resolution of unions requires — `apache_avro` accepts a union once any
//! branch matches, so `["null","string"]` changed to `["null","boolean"]`
//! would pass it.

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use serde_json::Value;
use std::collections::BTreeMap;

/// A subject's compatibility level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Level {
    /// The registry's name of a level (`BACKWARD`, `FULL_TRANSITIVE`, …).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.trim().to_ascii_uppercase().as_str() {
            "NONE" => Level::None,
            "BACKWARD" => Level::Backward,
            "BACKWARD_TRANSITIVE" => Level::BackwardTransitive,
            "FORWARD" => Level::Forward,
            "FORWARD_TRANSITIVE" => Level::ForwardTransitive,
            "FULL" => Level::Full,
            "FULL_TRANSITIVE" => Level::FullTransitive,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::None => "NONE",
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive
        )
    }

    /// Whether the new schema must read the old versions' data.
    fn backward(self) -> bool {
        !matches!(
            self,
            Level::None | Level::Forward | Level::ForwardTransitive
        )
    }

    /// Whether the old versions must read the new schema's data.
    fn forward(self) -> bool {
        !matches!(
            self,
            Level::None | Level::Backward | Level::BackwardTransitive
        )
    }
}

/// One rule the new schema breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The version it breaks against (the registry's number).
    pub version: u32,
    /// Who cannot read what: "the new schema cannot read version 3's data".
    pub direction: &'static str,
    /// The rule, with the field or symbol where the resolution names one.
    pub reason: String,
}

/// What `new` breaks against `versions` (the registry's numbers and
/// schemas, oldest first) under `level`; empty when it may be registered.
/// A version that does not parse is a break of its own (the registry
/// holds something this hub cannot judge).
pub fn check(level: Level, new: &str, versions: &[(u32, String)]) -> Vec<Break> {
    let Some(latest) = versions.last() else {
        return Vec::new();
    };
    let judged: &[(u32, String)] = if level.transitive() {
        versions
    } else {
        std::slice::from_ref(latest)
    };
    let mut breaks = Vec::new();
    for (version, old) in judged {
        if level.backward()
            && let Err(reason) = can_read(old, new)
        {
            breaks.push(Break {
                version: *version,
                direction: "the new schema cannot read data written with",
                reason,
            });
        }
        if level.forward()
            && let Err(reason) = can_read(new, old)
        {
            breaks.push(Break {
                version: *version,
                direction: "readers holding it cannot read data written with the new schema, as",
                reason,
            });
        }
    }
    breaks
}

/// Whether a reader of schema `reader` reads data written with `writer`
/// (both schema JSON); the rule broken when not.
pub fn can_read(writer: &str, reader: &str) -> Result<(), String> {
    let parse = |text: &str, which: &str| {
        Schema::parse_str(text).map_err(|e| format!("the {which} schema does not parse: {e}"))
    };
    let (w, r) = (parse(writer, "writer's")?, parse(reader, "reader's")?);
    SchemaCompatibility::can_read(&w, &r).map_err(|e| {
        // The error names the field; its source, the type underneath.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    })?;
    enum_symbols(writer, reader)?;
    let names = |s: &Schema| {
        let mut out = std::collections::HashMap::new();
        super::collect_named(s, &mut out);
        out
    };
    let (w_names, r_names) = (names(&w), names(&r));
    UnionBranches {
        writer: &w_names,
        reader: &r_names,
        seen: Vec::new(),
    }
    .check(&w, &r, "")
}

/// The named types of one side, by full name.
type Named = std::collections::HashMap<String, Schema>;

/// Walks a writer and a reader schema together, checking that every
/// branch of each writer union is read by the reader.
struct UnionBranches<'a> {
    writer: &'a Named,
    reader: &'a Named,
    /// Record pairs being walked (a recursive record stops here).
    seen: Vec<(String, String)>,
}

impl UnionBranches<'_> {
    fn check(&mut self, w: &Schema, r: &Schema, path: &str) -> Result<(), String> {
        let w = resolved(w, self.writer);
        let r = resolved(r, self.reader);
        match (w, r) {
            (Schema::Union(wu), _) => {
                for wb in wu.variants() {
                    let wb = resolved(wb, self.writer);
                    let readers: Vec<&Schema> = match r {
                        Schema::Union(ru) => ru
                            .variants()
                            .iter()
                            .map(|b| resolved(b, self.reader))
                            .collect(),
                        other => vec![other],
                    };
                    let Some(rb) = readers.into_iter().find(|rb| reads(wb, rb)) else {
                        return Err(format!(
                            "field `{}`: the writer's union has a branch ({}) that no branch of the reader's reads",
                            if path.is_empty() { "(top level)" } else { path },
                            kind(wb)
                        ));
                    };
                    self.check(wb, rb, path)?;
                }
                Ok(())
            }
            (_, Schema::Union(ru)) => match ru
                .variants()
                .iter()
                .map(|b| resolved(b, self.reader))
                .find(|rb| reads(w, rb))
            {
                Some(rb) => self.check(w, rb, path),
                None => Ok(()), // the resolution's own error says why
            },
            (Schema::Record(wr), Schema::Record(rr)) => {
                let pair = (wr.name.fullname(None), rr.name.fullname(None));
                if self.seen.contains(&pair) {
                    return Ok(());
                }
                self.seen.push(pair);
                for rf in &rr.fields {
                    if let Some(wf) = wr.fields.iter().find(|f| f.name == rf.name) {
                        let path = if path.is_empty() {
                            rf.name.clone()
                        } else {
                            format!("{path}.{}", rf.name)
                        };
                        self.check(&wf.schema, &rf.schema, &path)?;
                    }
                }
                self.seen.pop();
                Ok(())
            }
            (Schema::Array(wa), Schema::Array(ra)) => self.check(&wa.items, &ra.items, path),
            (Schema::Map(wm), Schema::Map(rm)) => self.check(&wm.types, &rm.types, path),
            _ => Ok(()),
        }
    }
}

/// A named type's definition for a reference to it.
fn resolved<'a>(s: &'a Schema, named: &'a Named) -> &'a Schema {
    match s {
        Schema::Ref { name } => named.get(&name.fullname(None)).unwrap_or(s),
        other => other,
    }
}

/// Whether a reader branch reads a writer branch, at this level: records
/// by name (their fields are walked after), anything else by Avro's
/// resolution (promotions, enums, fixed).
fn reads(w: &Schema, r: &Schema) -> bool {
    match (w, r) {
        (Schema::Record(wr), Schema::Record(rr)) => wr.name.name() == rr.name.name(),
        (Schema::Union(_), _) | (_, Schema::Union(_)) => false,
        _ => SchemaCompatibility::can_read(w, r).is_ok(),
    }
}

/// A branch's type, as an error names it.
fn kind(s: &Schema) -> String {
    match s {
        Schema::Record(r) => format!("record {}", r.name.fullname(None)),
        Schema::Enum(e) => format!("enum {}", e.name.fullname(None)),
        Schema::Fixed(f) => format!("fixed {}", f.name.fullname(None)),
        other => format!("{:?}", apache_avro::schema::SchemaKind::from(other)).to_lowercase(),
    }
}

/// A symbol of the writer's enum that the reader's enum of the same name
/// lacks, where the reader has no default symbol.
fn enum_symbols(writer: &str, reader: &str) -> Result<(), String> {
    let enums = |text: &str| {
        let mut out = BTreeMap::new();
        if let Ok(v) = serde_json::from_str::<Value>(text) {
            collect_enums(&v, "", &mut out);
        }
        out
    };
    let (w, r) = (enums(writer), enums(reader));
    for (name, (w_symbols, _)) in &w {
        let Some((r_symbols, r_default)) = r.get(name) else {
            continue;
        };
        if r_default.is_some() {
            continue;
        }
        let missing: Vec<&String> = w_symbols
            .iter()
            .filter(|s| !r_symbols.contains(s))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "enum `{name}`: the reader lacks the writer's symbol(s) {missing:?} and has no default symbol"
            ));
        }
    }
    Ok(())
}

/// Enums by full name: their symbols and default.
fn collect_enums(
    v: &Value,
    namespace: &str,
    out: &mut BTreeMap<String, (Vec<String>, Option<String>)>,
) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect_enums(i, namespace, out)),
        Value::Object(o) => {
            let ns = o
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(namespace);
            let full = |name: &str| {
                if name.contains('.') || ns.is_empty() {
                    name.to_owned()
                } else {
                    format!("{ns}.{name}")
                }
            };
            if o.get("type").and_then(Value::as_str) == Some("enum")
                && let Some(name) = o.get("name").and_then(Value::as_str)
            {
                let symbols = o
                    .get("symbols")
                    .and_then(Value::as_array)
                    .map(|s| {
                        s.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                let default = o.get("default").and_then(Value::as_str).map(str::to_owned);
                out.insert(full(name), (symbols, default));
            }
            let inner = if o.get("type").and_then(Value::as_str) == Some("record") {
                o.get("name")
                    .and_then(Value::as_str)
                    .map_or(ns.to_owned(), |n| {
                        full(n)
                            .rsplit_once('.')
                            .map_or(String::new(), |(p, _)| p.to_owned())
                    })
            } else {
                ns.to_owned()
            };
            for (k, child) in o {
                if matches!(k.as_str(), "type" | "fields" | "items" | "values") {
                    collect_enums(child, &inner, out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> String {
        format!(
            r#"{{"type":"record","name":"Case","namespace":"duijie.canonical","fields":[{fields}]}}"#
        )
    }

    const ID: &str = r#"{"name":"id","type":"string"}"#;
    const STATUS: &str =
        r#"{"name":"status","type":{"type":"enum","name":"Status","symbols":["OPEN","CLOSED"]}}"#;

    /// A new optional field (with its default) is BACKWARD compatible; a
    /// new field without a default is not, and the break names it.
    #[test]
    fn a_field_added_without_a_default_breaks_backward_and_is_named() {
        let v1 = record(ID);
        let optional = record(&format!(
            r#"{ID},{{"name":"note","type":["null","string"],"default":null}}"#
        ));
        assert!(check(Level::Backward, &optional, &[(1, v1.clone())]).is_empty());
        let required = record(&format!(r#"{ID},{{"name":"grid","type":"string"}}"#));
        let breaks = check(Level::Backward, &required, &[(1, v1.clone())]);
        assert_eq!(breaks.len(), 1, "{breaks:?}");
        assert_eq!(breaks[0].version, 1);
        assert!(breaks[0].reason.contains("grid"), "{breaks:?}");
        // FORWARD: old readers ignore the new field.
        assert!(check(Level::Forward, &required, &[(1, v1)]).is_empty());
    }

    /// A field removed without a default breaks FORWARD (old readers need
    /// it); a type narrowed (long to int) breaks BACKWARD.
    #[test]
    fn a_removed_field_breaks_forward_and_a_narrowed_type_breaks_backward() {
        let v1 = record(&format!(r#"{ID},{{"name":"grid","type":"string"}}"#));
        let removed = record(ID);
        assert!(check(Level::Backward, &removed, &[(1, v1.clone())]).is_empty());
        let breaks = check(Level::Forward, &removed, &[(1, v1)]);
        assert!(
            breaks.iter().any(|b| b.reason.contains("grid")),
            "{breaks:?}"
        );
        let long = record(&format!(r#"{ID},{{"name":"fine","type":"long"}}"#));
        let int = record(&format!(r#"{ID},{{"name":"fine","type":"int"}}"#));
        let breaks = check(Level::Backward, &int, &[(1, long.clone())]);
        assert!(
            breaks.iter().any(|b| b.reason.contains("fine")),
            "{breaks:?}"
        );
        // Widening is allowed.
        assert!(check(Level::Backward, &long, &[(1, int)]).is_empty());
    }

    /// An enum symbol removed breaks BACKWARD (old data carries it) unless
    /// the new enum has a default symbol; added symbols break FORWARD.
    #[test]
    fn an_enum_symbol_removed_breaks_backward_unless_a_default_takes_it() {
        let v1 = record(&format!("{ID},{STATUS}"));
        let fewer = record(&format!(
            r#"{ID},{{"name":"status","type":{{"type":"enum","name":"Status","symbols":["OPEN"]}}}}"#
        ));
        let breaks = check(Level::Backward, &fewer, &[(1, v1.clone())]);
        assert!(
            breaks
                .iter()
                .any(|b| b.reason.contains("CLOSED") && b.reason.contains("Status")),
            "{breaks:?}"
        );
        let with_default = record(&format!(
            r#"{ID},{{"name":"status","type":{{"type":"enum","name":"Status","symbols":["OPEN","UNKNOWN"],"default":"UNKNOWN"}}}}"#
        ));
        assert!(check(Level::Backward, &with_default, &[(1, v1.clone())]).is_empty());
        assert!(!check(Level::Forward, &with_default, &[(1, v1)]).is_empty());
    }

    /// Transitive levels judge every version; the plain ones the latest.
    #[test]
    fn transitive_levels_judge_every_version() {
        let v1 = record(&format!(r#"{ID},{{"name":"grid","type":"string"}}"#));
        let v2 = record(&format!(
            r#"{ID},{{"name":"grid","type":"string","default":""}}"#
        ));
        let new = record(&format!(
            r#"{ID},{{"name":"grid","type":"string","default":""}},{{"name":"x","type":"int","default":0}}"#
        ));
        let versions = [(1, v1), (2, v2)];
        assert!(check(Level::Forward, &record(ID), &versions).is_empty());
        let breaks = check(Level::ForwardTransitive, &record(ID), &versions);
        assert_eq!(
            breaks.iter().map(|b| b.version).collect::<Vec<_>>(),
            [1],
            "{breaks:?}"
        );
        assert!(check(Level::FullTransitive, &new, &versions[1..]).is_empty());
        assert!(check(Level::None, "not even a schema", &versions).is_empty());
    }

    /// A nullable field whose type changes is a break (Avro resolution
    /// reads each writer branch with the reader's union), at any depth,
    /// including inside a nested record met again by reference; adding a
    /// branch the writer never wrote is not.
    #[test]
    fn a_union_branch_the_reader_cannot_read_is_a_break_at_any_depth() {
        let flag = |t: &str| {
            record(&format!(
                r#"{ID},{{"name":"flag","type":["null","{t}"],"default":null}}"#
            ))
        };
        let breaks = check(Level::Backward, &flag("boolean"), &[(1, flag("string"))]);
        assert_eq!(breaks.len(), 1, "{breaks:?}");
        assert!(
            breaks[0].reason.contains("`flag`") && breaks[0].reason.contains("string"),
            "{breaks:?}"
        );
        // int is promoted to long: readable.
        assert!(check(Level::Backward, &flag("long"), &[(1, flag("int"))]).is_empty());
        // A branch added: the old data still reads.
        let wider = record(&format!(
            r#"{ID},{{"name":"flag","type":["null","boolean","string"],"default":null}}"#
        ));
        assert!(check(Level::Backward, &wider, &[(1, flag("boolean"))]).is_empty());
        // Inside a nested record, used twice (the second use a reference).
        let party = |t: &str| {
            record(&format!(
                r#"{ID},{{"name":"party","type":["null",{{"type":"record","name":"Party","fields":[{{"name":"valid","type":["null","{t}"],"default":null}}]}}],"default":null}},{{"name":"agent","type":["null","Party"],"default":null}}"#
            ))
        };
        let breaks = check(Level::Full, &party("boolean"), &[(1, party("string"))]);
        assert_eq!(breaks.len(), 2, "both directions: {breaks:?}");
        assert!(breaks[0].reason.contains("party.valid"), "{breaks:?}");
        assert!(check(Level::Full, &party("boolean"), &[(1, party("boolean"))]).is_empty());
    }
}

/// What a schema change does, field by field, and who can still read
/// whom (`duijie mapping diff --schemas`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// The record's full name before and after.
    pub old_name: String,
    pub new_name: String,
    /// Top-level fields the new schema adds, with their type (and whether
    /// they have a default).
    pub added: Vec<String>,
    /// Top-level fields the new schema drops.
    pub removed: Vec<String>,
    /// Top-level fields whose type or default changed: `name: old → new`.
    pub changed: Vec<String>,
    /// The new schema reads data the old one wrote (BACKWARD), or the
    /// rule it breaks.
    pub backward: Result<(), String>,
    /// The old schema reads data the new one writes (FORWARD), or the rule.
    pub forward: Result<(), String>,
}

impl Change {
    /// Whether anything changed at all.
    pub fn is_change(&self) -> bool {
        self.old_name != self.new_name
            || !self.added.is_empty()
            || !self.removed.is_empty()
            || !self.changed.is_empty()
    }

    /// The change as the diff's table prints it.
    pub fn report(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        if !self.is_change() {
            let _ = writeln!(out, "schema {}: unchanged", self.new_name);
            return out;
        }
        let _ = writeln!(out, "schema {} → {}:", self.old_name, self.new_name);
        for f in &self.added {
            let _ = writeln!(out, "  + {f}");
        }
        for f in &self.removed {
            let _ = writeln!(out, "  - {f}");
        }
        for f in &self.changed {
            let _ = writeln!(out, "  ~ {f}");
        }
        let verdict = |r: &Result<(), String>| match r {
            Ok(()) => "yes".to_owned(),
            Err(why) => format!("NO: {why}"),
        };
        let _ = writeln!(
            out,
            "  BACKWARD (the new schema reads old data): {}",
            verdict(&self.backward)
        );
        let _ = writeln!(
            out,
            "  FORWARD (readers of the old schema read new data): {}",
            verdict(&self.forward)
        );
        out
    }
}

/// The change from schema `old` to schema `new` (both JSON).
pub fn change(old: &str, new: &str) -> Change {
    let parse = |t: &str| serde_json::from_str::<Value>(t).unwrap_or(Value::Null);
    let (o, n) = (parse(old), parse(new));
    let name = |v: &Value| {
        let ns = v.get("namespace").and_then(Value::as_str).unwrap_or("");
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        if ns.is_empty() || name.contains('.') {
            name.to_owned()
        } else {
            format!("{ns}.{name}")
        }
    };
    let fields = |v: &Value| -> BTreeMap<String, (Value, Option<Value>)> {
        v.get("fields")
            .and_then(Value::as_array)
            .map(|fs| {
                fs.iter()
                    .filter_map(|f| {
                        Some((
                            f.get("name")?.as_str()?.to_owned(),
                            (f.get("type")?.clone(), f.get("default").cloned()),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let (of, nf) = (fields(&o), fields(&n));
    let show = |t: &Value, d: &Option<Value>| match d {
        Some(d) => format!("{t} = {d}"),
        None => t.to_string(),
    };
    Change {
        old_name: name(&o),
        new_name: name(&n),
        added: nf
            .iter()
            .filter(|(k, _)| !of.contains_key(*k))
            .map(|(k, (t, d))| format!("{k}: {}", show(t, d)))
            .collect(),
        removed: of
            .iter()
            .filter(|(k, _)| !nf.contains_key(*k))
            .map(|(k, (t, d))| format!("{k}: {}", show(t, d)))
            .collect(),
        changed: of
            .iter()
            .filter_map(|(k, (ot, od))| {
                let (nt, nd) = nf.get(k)?;
                (ot != nt || od != nd).then(|| format!("{k}: {} → {}", show(ot, od), show(nt, nd)))
            })
            .collect(),
        backward: can_read(old, new),
        forward: can_read(new, old),
    }
}

#[cfg(test)]
mod change_tests {
    use super::*;

    /// A new optional field: added, both ways readable; a required one:
    /// BACKWARD broken, naming it; a narrowed type: changed.
    #[test]
    fn a_change_lists_its_fields_and_who_reads_whom() {
        let old = r#"{"type":"record","name":"Case","namespace":"d","fields":[{"name":"id","type":"string"},{"name":"fine","type":"long"}]}"#;
        let optional = r#"{"type":"record","name":"Case","namespace":"d","fields":[{"name":"id","type":"string"},{"name":"fine","type":"long"},{"name":"note","type":["null","string"],"default":null}]}"#;
        let c = change(old, optional);
        assert!(c.is_change());
        assert_eq!(c.added, [r#"note: ["null","string"] = null"#]);
        assert!(c.backward.is_ok() && c.forward.is_ok(), "{c:?}");
        let required = r#"{"type":"record","name":"Case","namespace":"d","fields":[{"name":"id","type":"string"},{"name":"fine","type":"int"},{"name":"grid","type":"string"}]}"#;
        let c = change(old, required);
        assert_eq!(c.changed, [r#"fine: "long" → "int""#]);
        assert!(
            c.backward
                .as_ref()
                .is_err_and(|e| e.contains("grid") || e.contains("fine")),
            "{c:?}"
        );
        assert!(
            c.report()
                .contains("BACKWARD (the new schema reads old data): NO"),
            "{}",
            c.report()
        );
        assert!(!change(old, old).is_change());
    }
}
