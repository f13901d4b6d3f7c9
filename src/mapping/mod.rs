//! The declarative mapping engine.
//!
//! A mapping file (`mappings/*.yaml`) says how one kind of source record
//! becomes one canonical Avro record: for every output field, where its
//! value comes from, how it is cleaned, translated, converted and checked.
//! It is compiled once at load — paths into a single trie, code tables and
//! formats resolved, every rule checked against the target schema — and
//! then applied to each payload without further interpretation.
//!
//! A record either maps completely or becomes a [`Reject`] that names the
//! field, the rule and a reason a person can read. Nothing is dropped.
//!
//! The engine in four parts:
//! - `load`: mapping files and code tables read from a directory, errors
//!   named by file, line and rule;
//! - `compile`: a file compiled against its schema into a plan;
//! - `plan`: what each output field's rule does, and the one order its
//!   steps run in (`plan::Rule`);
//! - `evaluate`: the plan applied to one payload.

mod compile;
mod datetime;
pub mod diff;
mod evaluate;
pub mod golden;
mod json_read;
mod load;
mod paths;
mod pattern;
mod plan;
mod spec;
pub mod stream;
mod xml_read;

use crate::ident::{IdKind, MaskPolicy};
use crate::schema::{CanonicalSchema, LeafType, SchemaSet};
use crate::text;
use crate::value::Val;
use datetime::{DateTimeRule, Format};
use duijie_connectors::PayloadFormat;
use paths::{Trie, parse_path};
use pattern::Pattern;
use serde_saphyr::Spanned;
use spec::*;

use compile::*;
use evaluate::{convert, target_of};
pub use load::*;
use plan::*;
pub use plan::{CodeTable, DatedValue};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl From<LoadError> for crate::error::Error {
    fn from(e: LoadError) -> Self {
        Self::new(
            crate::error::Domain::Config,
            crate::error::ErrorClass::Permanent,
            e,
        )
    }
}

/// A mapping file that cannot be loaded: the file, the line, the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    pub file: PathBuf,
    pub line: Option<u64>,
    /// The output field (rule) or top-level key concerned.
    pub rule: Option<String>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(rule) = &self.rule {
            write!(f, ": field `{rule}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why one record did not map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The output field whose rule failed; none when the payload itself is
    /// unreadable.
    pub field: Option<String>,
    /// The rule that failed: `parse`, `required`, `regex`, `codes`, …
    pub rule: &'static str,
    pub reason: String,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "field `{field}`, rule `{}`: {}", self.rule, self.reason),
            None => write!(f, "{}: {}", self.rule, self.reason),
        }
    }
}

/// A mapped record: values in the schema's leaf order.
#[derive(Debug)]
pub struct Mapped<'a> {
    pub values: Vec<Val<'a>>,
    /// The deterministic record id (the Kafka key).
    pub key: Cow<'a, str>,
    /// The source's own record id.
    pub source_id: Option<Cow<'a, str>>,
}

/// A compiled mapping.
#[derive(Debug)]
pub struct Mapping {
    pub name: String,
    pub version: u32,
    pub system: String,
    pub file: PathBuf,
    pub schema: Arc<CanonicalSchema>,
    pub format: PayloadFormat,
    encoding: &'static encoding_rs::Encoding,
    trie: Trie,
    source_id_slot: usize,
    key_leaf: usize,
    flags_leaf: Option<usize>,
    /// Rules in evaluation order.
    rules: Vec<Rule>,
    /// Leaves no rule fills, written with the schema's default.
    defaults: Vec<(usize, Val<'static>)>,
    /// The leaf holding the record's own time (`effective_at`), for dated
    /// code values.
    effective_leaf: Option<usize>,
    /// The code tables used and their versions (`name@version`, sorted,
    /// comma-separated): the `duijie-code-tables` provenance header.
    pub code_tables: String,
}

impl Mapping {
    /// The output fields that keep a full identity number: checked as a
    /// resident ID number (`check: resident_id`), or the unmasked source
    /// of a field that masks one (`from: X` with `mask`). A topic this
    /// mapping writes holds personal data that must be sealed at rest.
    pub fn full_id_fields(&self) -> Vec<&str> {
        let masked_sources: HashSet<usize> = self
            .rules
            .iter()
            .filter(|r| r.mask.is_some())
            .filter_map(|r| match r.source {
                SourceExpr::Field(leaf) => Some(leaf),
                _ => None,
            })
            .collect();
        self.rules
            .iter()
            .filter(|r| r.mask.is_none())
            .filter(|r| {
                matches!(r.check, Some((IdKind::ResidentId, _))) || masked_sources.contains(&r.leaf)
            })
            .map(|r| r.field.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests;
