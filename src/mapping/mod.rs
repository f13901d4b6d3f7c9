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

mod datetime;
pub mod diff;
pub mod golden;
mod json_read;
mod paths;
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
use regex::Regex;
use serde_saphyr::Spanned;
use spec::*;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// A code table: source code → canonical value. Government code tables
/// change on a date; an entry may carry values each valid for a period,
/// and a record maps with the value valid at its own time.
#[derive(Debug, Default)]
pub struct CodeTable {
    pub name: String,
    pub codes: HashMap<String, String>,
    /// Code → its values with their validity, in file order.
    pub dated: HashMap<String, Vec<DatedValue>>,
    /// Carried in provenance: the file's `version`, else a content hash.
    pub version: String,
}

/// A value valid in `[from_ms, to_ms)` (epoch ms; `None`: open).
#[derive(Debug, Clone)]
pub struct DatedValue {
    pub value: String,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// As written, for messages.
    pub label: String,
}

/// What a code maps to at a time.
enum Lookup<'t> {
    Value(&'t str),
    /// The code is in the table, but no value is valid then.
    NotValid(String),
    Unknown,
}

impl CodeTable {
    fn inline(name: String, codes: HashMap<String, String>) -> Self {
        Self {
            name,
            codes,
            version: "inline".into(),
            ..Self::default()
        }
    }

    fn lookup(&self, code: &str, at_ms: i64) -> Lookup<'_> {
        if let Some(v) = self.codes.get(code) {
            return Lookup::Value(v);
        }
        let Some(values) = self.dated.get(code) else {
            return Lookup::Unknown;
        };
        match values
            .iter()
            .find(|d| d.from_ms.is_none_or(|f| f <= at_ms) && d.to_ms.is_none_or(|t| at_ms < t))
        {
            Some(d) => Lookup::Value(&d.value),
            None => Lookup::NotValid(
                values
                    .iter()
                    .map(|d| d.label.clone())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }

    /// Every value the table can give.
    fn values(&self) -> impl Iterator<Item = &String> {
        self.codes
            .values()
            .chain(self.dated.values().flatten().map(|d| &d.value))
    }
}

#[derive(Debug, Clone)]
enum SourceExpr {
    Path(usize),
    FirstOf(Vec<usize>),
    Const(Val<'static>),
    Template(Vec<Part>),
    Concat(Vec<Part>, String),
    Field(usize),
    Nothing,
}

#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Input(usize),
    Output(usize),
}

#[derive(Debug, Clone)]
enum StrSet {
    Small(Vec<String>),
    Large(HashSet<String>),
}

impl StrSet {
    fn new(items: Vec<String>) -> Self {
        if items.len() <= 16 {
            StrSet::Small(items)
        } else {
            StrSet::Large(items.into_iter().collect())
        }
    }

    fn contains(&self, s: &str) -> bool {
        match self {
            StrSet::Small(v) => v.iter().any(|x| x == s),
            StrSet::Large(h) => h.contains(s),
        }
    }
}

#[derive(Debug, Clone)]
enum Operand {
    Input(usize),
    Output(usize),
}

#[derive(Debug, Clone)]
enum Cond {
    In(Operand, StrSet),
    Eq(Operand, String),
    Present(Operand, bool),
    Matches(Operand, Regex),
    Past(Operand, bool),
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
}

#[derive(Debug, Clone)]
enum Derived {
    In(StrSet),
    Matches(Regex),
    Valid(IdKind),
}

#[derive(Debug, Clone)]
struct CodeUse {
    table: Arc<CodeTable>,
    unknown: UnknownCode,
    default: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    String,
    Long,
    Double,
    Boolean,
}

#[derive(Debug, Clone)]
enum Convert {
    None,
    To(Target),
    DateTime(DateTimeRule),
    /// Each item of a list (or a lone scalar, as a one-item list).
    Items(Target),
}

#[derive(Debug, Clone)]
struct Rule {
    field: String,
    leaf: usize,
    when: Option<Cond>,
    source: SourceExpr,
    trim: bool,
    remove_spaces: bool,
    halfwidth: bool,
    case: Option<CaseSpec>,
    /// Replacements, longest key first.
    replace: Vec<(String, String)>,
    empty_as_null: bool,
    codes: Option<CodeUse>,
    regex: Option<Regex>,
    length: Option<(usize, usize)>,
    check: Option<(IdKind, OnFail)>,
    derived: Option<Derived>,
    convert: Convert,
    enum_symbols: Option<Vec<String>>,
    default: Option<Val<'static>>,
    required: bool,
    mask: Option<MaskPolicy>,
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
    /// The output fields coded through a code table, with the table.
    pub fn code_fields(&self) -> Vec<(String, String)> {
        self.rules
            .iter()
            .filter_map(|r| {
                r.codes
                    .as_ref()
                    .map(|c| (r.field.clone(), c.table.name.clone()))
            })
            .collect()
    }

    /// The output fields coded through a code table.
    pub fn code_field_names(&self) -> Vec<String> {
        self.code_fields().into_iter().map(|(f, _)| f).collect()
    }

    /// Maps one payload, as of now.
    pub fn map<'a>(&'a self, payload: &'a [u8]) -> Result<Mapped<'a>, Reject> {
        self.map_at(payload, chrono::Utc::now().timestamp_millis())
    }

    /// Maps one payload; `now_ms` (the fetch time) is what `past`
    /// conditions compare with.
    pub fn map_at<'a>(&'a self, payload: &'a [u8], now_ms: i64) -> Result<Mapped<'a>, Reject> {
        let mut inputs: Vec<Val<'a>> = vec![Val::Null; self.trie.paths.len()];
        match self.format {
            PayloadFormat::Json => json_read::read(&self.trie, payload, &mut inputs),
            PayloadFormat::Xml => xml_read::read(&self.trie, payload, self.encoding, &mut inputs),
        }
        .map_err(|reason| Reject {
            field: None,
            rule: "parse",
            reason,
        })?;
        let mut out: Vec<Val<'a>> = vec![Val::Null; self.schema.leaves.len()];
        for (leaf, v) in &self.defaults {
            out[*leaf] = v.clone();
        }
        let mut flags: Vec<Val<'a>> = Vec::new();
        for rule in &self.rules {
            let v = self.eval(rule, &inputs, &out, &mut flags, now_ms)?;
            out[rule.leaf] = v;
        }
        if let Some(leaf) = self.flags_leaf {
            out[leaf] = Val::List(flags);
        }
        let key = match &out[self.key_leaf] {
            Val::Str(Cow::Borrowed(s)) => Cow::Borrowed(*s),
            other => match other.as_text() {
                Some(t) => Cow::Owned(t.into_owned()),
                None => {
                    return Err(Reject {
                        field: Some(self.schema.leaves[self.key_leaf].path.clone()),
                        rule: "key",
                        reason: "the record id (Kafka key) is empty".into(),
                    });
                }
            },
        };
        let source_id = match std::mem::replace(&mut inputs[self.source_id_slot], Val::Null) {
            Val::Str(s) => Some(s),
            Val::Null => None,
            other => other.as_text().map(|t| Cow::Owned(t.into_owned())),
        };
        Ok(Mapped {
            values: out,
            key,
            source_id,
        })
    }

    fn eval<'a>(
        &'a self,
        rule: &'a Rule,
        inputs: &[Val<'a>],
        out: &[Val<'a>],
        flags: &mut Vec<Val<'a>>,
        now_ms: i64,
    ) -> Result<Val<'a>, Reject> {
        let reject = |rule_name: &'static str, reason: String| Reject {
            field: Some(rule.field.clone()),
            rule: rule_name,
            reason,
        };
        let applies = rule
            .when
            .as_ref()
            .is_none_or(|c| eval_cond(c, inputs, out, now_ms));
        let mut v = if applies {
            self.value(rule, inputs, out, flags, now_ms)?
        } else {
            Val::Null
        };
        if v.is_null()
            && let Some(d) = &rule.default
        {
            v = borrow_val(d);
        }
        // `required` holds only where the rule applies (`when`).
        if rule.required && applies && (v.is_null() || matches!(&v, Val::Str(s) if s.is_empty())) {
            return Err(reject("required", format!("no value for `{}`", rule.field)));
        }
        if let (Some(symbols), Val::Str(s)) = (&rule.enum_symbols, &v)
            && !symbols.iter().any(|sym| sym == s)
        {
            return Err(reject(
                "enum",
                format!(
                    "`{s}` is not one of the schema's symbols [{}]",
                    symbols.join(", ")
                ),
            ));
        }
        if let (Some(mask), Some(t)) = (&rule.mask, v.as_text()) {
            v = Val::Str(Cow::Owned(mask.apply(&t)));
        }
        Ok(v)
    }

    /// The value of a rule whose condition holds, before default, required
    /// and mask.
    fn value<'a>(
        &'a self,
        rule: &'a Rule,
        inputs: &[Val<'a>],
        out: &[Val<'a>],
        flags: &mut Vec<Val<'a>>,
        now_ms: i64,
    ) -> Result<Val<'a>, Reject> {
        let reject = |rule_name: &'static str, reason: String| Reject {
            field: Some(rule.field.clone()),
            rule: rule_name,
            reason,
        };
        let mut v = match &rule.source {
            SourceExpr::Path(slot) => inputs[*slot].clone(),
            SourceExpr::FirstOf(slots) => slots
                .iter()
                .map(|s| &inputs[*s])
                .find(|v| !v.is_null() && !matches!(v, Val::Str(s) if s.is_empty()))
                .cloned()
                .unwrap_or(Val::Null),
            SourceExpr::Const(c) => borrow_val(c),
            SourceExpr::Field(leaf) => out[*leaf].clone(),
            SourceExpr::Template(parts) => render(parts, inputs, out, None),
            SourceExpr::Concat(parts, sep) => render(parts, inputs, out, Some(sep)),
            SourceExpr::Nothing => Val::Null,
        };

        // Text clean-up.
        if let Val::Str(s) = &mut v {
            if rule.trim {
                cow_map(s, |x| Cow::Borrowed(text::trim(x)));
            }
            if rule.remove_spaces {
                cow_map(s, text::remove_spaces);
            }
            if rule.halfwidth {
                cow_map(s, text::to_halfwidth);
            }
            match rule.case {
                Some(CaseSpec::Upper) if s.chars().any(char::is_lowercase) => {
                    *s = Cow::Owned(s.to_uppercase())
                }
                Some(CaseSpec::Lower) if s.chars().any(char::is_uppercase) => {
                    *s = Cow::Owned(s.to_lowercase())
                }
                _ => {}
            }
            if !rule.replace.is_empty() && rule.replace.iter().any(|(k, _)| s.contains(k.as_str()))
            {
                let mut t = s.to_string();
                for (k, v) in &rule.replace {
                    t = t.replace(k.as_str(), v);
                }
                *s = Cow::Owned(t);
            }
            if rule.empty_as_null && s.is_empty() {
                v = Val::Null;
            }
        }

        // Code table, at the record's own time (else the fetch time).
        if let Some(codes) = &rule.codes
            && let Some(code) = v.as_text()
        {
            let at_ms = match self.effective_leaf.map(|l| &out[l]) {
                Some(Val::Int(ms)) => *ms,
                _ => now_ms,
            };
            v = match codes.table.lookup(code.as_ref(), at_ms) {
                Lookup::Value(mapped) => Val::Str(Cow::Borrowed(mapped)),
                Lookup::NotValid(periods) if codes.unknown == UnknownCode::Reject => {
                    let day = chrono::DateTime::from_timestamp_millis(at_ms)
                        .map(|t| {
                            t.with_timezone(&chrono_tz::Asia::Shanghai)
                                .format("%Y-%m-%d")
                                .to_string()
                        })
                        .unwrap_or_default();
                    return Err(reject(
                        "codes",
                        format!(
                            "code `{code}` of code table `{}` has no value valid on {day} (valid: {periods})",
                            codes.table.name
                        ),
                    ));
                }
                Lookup::NotValid(_) | Lookup::Unknown => match codes.unknown {
                    UnknownCode::Reject => {
                        return Err(reject(
                            "codes",
                            format!("code `{code}` is not in code table `{}`", codes.table.name),
                        ));
                    }
                    UnknownCode::Default => match &codes.default {
                        Some(d) => Val::Str(Cow::Borrowed(d.as_str())),
                        None => Val::Null,
                    },
                    UnknownCode::Pass => v,
                },
            };
        }

        // Checks on the text.
        if rule.regex.is_some() || rule.length.is_some() || rule.check.is_some() {
            if let Some(t) = v.as_text() {
                if let Some(re) = &rule.regex
                    && !re.is_match(&t)
                {
                    return Err(reject(
                        "regex",
                        format!("`{t}` does not match `{}`", re.as_str()),
                    ));
                }
                if let Some((min, max)) = rule.length {
                    let n = t.chars().count();
                    if n < min || n > max {
                        let want = if min == max {
                            format!("{min}")
                        } else if max == usize::MAX {
                            format!("at least {min}")
                        } else if min == 0 {
                            format!("at most {max}")
                        } else {
                            format!("{min} to {max}")
                        };
                        return Err(reject(
                            "length",
                            format!("`{t}` is {n} characters long, expected {want}"),
                        ));
                    }
                }
                if let Some((kind, on_fail)) = rule.check {
                    let checked = kind.check(&t);
                    if let Some(problem) = checked.invalid {
                        let reason = format!("`{t}` is not a valid {}: {problem}", kind.label());
                        match on_fail {
                            OnFail::Reject => return Err(reject("check", reason)),
                            OnFail::Flag => flags
                                .push(Val::Str(Cow::Owned(format!("{}: {reason}", rule.field)))),
                        }
                    }
                }
            }
        }

        // Derived booleans.
        if let Some(derived) = &rule.derived {
            let test = |t: &str| match derived {
                Derived::In(set) => set.contains(t),
                Derived::Matches(re) => re.is_match(t),
                Derived::Valid(kind) => kind.check(t).is_valid(),
            };
            // A list holds when any of its items does.
            v = match &v {
                Val::Null => Val::Null,
                Val::List(items) => {
                    Val::Bool(items.iter().any(|i| i.as_text().is_some_and(|t| test(&t))))
                }
                other => Val::Bool(other.as_text().is_some_and(|t| test(&t))),
            };
        }

        // Conversion.
        v = match &rule.convert {
            Convert::None => v,
            Convert::To(target) => convert(v, *target).map_err(|r| reject("type", r))?,
            Convert::Items(target) => match v {
                Val::Null => Val::Null,
                Val::List(items) => Val::List(
                    items
                        .into_iter()
                        .map(|i| convert(i, *target))
                        .collect::<Result<_, _>>()
                        .map_err(|r| reject("type", r))?,
                ),
                scalar => Val::List(vec![
                    convert(scalar, *target).map_err(|r| reject("type", r))?,
                ]),
            },
            Convert::DateTime(dt) => match &v {
                Val::Null => Val::Null,
                Val::Str(s) => Val::Int(dt.parse_text(s).map_err(|r| reject("datetime", r))?),
                Val::Int(i) => Val::Int(dt.parse_int(*i).map_err(|r| reject("datetime", r))?),
                other => {
                    return Err(reject(
                        "datetime",
                        format!("a {} is not a date-time", other.kind()),
                    ));
                }
            },
        };

        Ok(v)
    }

    /// A record as JSON lines output shows it: every schema field present,
    /// null where empty.
    pub fn to_json(&self, mapped: &Mapped<'_>) -> serde_json::Value {
        self.schema.to_json(&mapped.values)
    }

    /// Paths this mapping reads, for documentation and tests.
    pub fn input_paths(&self) -> Vec<String> {
        self.trie.paths.iter().map(|p| p.text.clone()).collect()
    }
}

fn borrow_val<'a>(v: &'a Val<'static>) -> Val<'a> {
    match v {
        Val::Str(s) => Val::Str(Cow::Borrowed(s.as_ref())),
        other => other.clone(),
    }
}

fn cow_map<'a>(s: &mut Cow<'a, str>, f: impl for<'x> Fn(&'x str) -> Cow<'x, str>) {
    let new = match s {
        Cow::Borrowed(b) => f(b),
        Cow::Owned(o) => match f(o) {
            Cow::Borrowed(x) if x.len() == o.len() => return,
            Cow::Borrowed(x) => Cow::Owned(x.to_owned()),
            Cow::Owned(x) => Cow::Owned(x),
        },
    };
    *s = new;
}

fn render<'a>(parts: &[Part], inputs: &[Val<'a>], out: &[Val<'a>], sep: Option<&str>) -> Val<'a> {
    let mut s = String::with_capacity(32);
    let mut first = true;
    for part in parts {
        let value = match part {
            Part::Lit(l) => Some(Cow::Borrowed(l.as_str())),
            Part::Input(i) => inputs[*i].as_text(),
            Part::Output(i) => out[*i].as_text(),
        };
        match (value, sep) {
            // A template with a missing placeholder has no value.
            (None, None) => return Val::Null,
            (None, Some(_)) => {}
            (Some(t), Some(_)) if t.is_empty() => {}
            (Some(t), sep) => {
                if let Some(sep) = sep
                    && !first
                {
                    s.push_str(sep);
                }
                s.push_str(&t);
                first = false;
            }
        }
    }
    if sep.is_some() && first {
        return Val::Null;
    }
    Val::Str(Cow::Owned(s))
}

fn operand<'v, 'a>(op: &Operand, inputs: &'v [Val<'a>], out: &'v [Val<'a>]) -> &'v Val<'a> {
    match op {
        Operand::Input(i) => &inputs[*i],
        Operand::Output(i) => &out[*i],
    }
}

fn eval_cond(cond: &Cond, inputs: &[Val<'_>], out: &[Val<'_>], now_ms: i64) -> bool {
    match cond {
        Cond::In(op, set) => operand(op, inputs, out)
            .as_text()
            .is_some_and(|t| set.contains(&t)),
        Cond::Eq(op, want) => operand(op, inputs, out)
            .as_text()
            .is_some_and(|t| t == want.as_str()),
        Cond::Present(op, want) => {
            let v = operand(op, inputs, out);
            let present = !v.is_null() && !matches!(v, Val::Str(s) if s.trim().is_empty());
            present == *want
        }
        Cond::Matches(op, re) => operand(op, inputs, out)
            .as_text()
            .is_some_and(|t| re.is_match(&t)),
        Cond::Past(op, want) => match operand(op, inputs, out) {
            Val::Int(ms) => (*ms < now_ms) == *want,
            _ => false,
        },
        Cond::All(cs) => cs.iter().all(|c| eval_cond(c, inputs, out, now_ms)),
        Cond::Any(cs) => cs.iter().any(|c| eval_cond(c, inputs, out, now_ms)),
        Cond::Not(c) => !eval_cond(c, inputs, out, now_ms),
    }
}

fn convert<'a>(v: Val<'a>, target: Target) -> Result<Val<'a>, String> {
    Ok(match (target, v) {
        (_, Val::Null) => Val::Null,
        // Empty text is no value for a number or a yes/no.
        (Target::Long | Target::Double | Target::Boolean, Val::Str(s))
            if text::trim(&s).is_empty() =>
        {
            Val::Null
        }
        (Target::String, Val::Str(s)) => Val::Str(s),
        (Target::String, other @ (Val::Int(_) | Val::Double(_) | Val::Bool(_))) => {
            Val::Str(Cow::Owned(other.as_text().unwrap_or_default().into_owned()))
        }
        (Target::Long, Val::Int(i)) => Val::Int(i),
        (Target::Long, Val::Str(s)) => Val::Int(
            s.parse::<i64>()
                .map_err(|_| format!("`{s}` is not an integer"))?,
        ),
        (Target::Long, Val::Double(d)) if d.fract() == 0.0 && d.abs() < 9.0e15 => {
            Val::Int(d as i64)
        }
        (Target::Double, Val::Double(d)) => Val::Double(d),
        (Target::Double, Val::Int(i)) => Val::Double(i as f64),
        (Target::Double, Val::Str(s)) => {
            let d = s
                .parse::<f64>()
                .map_err(|_| format!("`{s}` is not a number"))?;
            if !d.is_finite() {
                return Err(format!("`{s}` is not a finite number"));
            }
            Val::Double(d)
        }
        (Target::Boolean, Val::Bool(b)) => Val::Bool(b),
        (Target::Boolean, Val::Int(i @ (0 | 1))) => Val::Bool(i == 1),
        (Target::Boolean, Val::Str(s)) => Val::Bool(match s.trim() {
            "true" | "TRUE" | "True" | "1" | "Y" | "y" | "yes" | "是" => true,
            "false" | "FALSE" | "False" | "0" | "N" | "n" | "no" | "否" => false,
            _ => return Err(format!("`{s}` is not a yes/no value")),
        }),
        (target, other) => {
            return Err(format!(
                "a {} cannot become a {}",
                other.kind(),
                match target {
                    Target::String => "string",
                    Target::Long => "integer",
                    Target::Double => "number",
                    Target::Boolean => "boolean",
                }
            ));
        }
    })
}

fn target_of(ty: &LeafType) -> Option<Target> {
    match ty {
        LeafType::Boolean => Some(Target::Boolean),
        LeafType::Int | LeafType::Long | LeafType::TimestampMillis => Some(Target::Long),
        LeafType::Float | LeafType::Double => Some(Target::Double),
        LeafType::String | LeafType::Enum(_) => Some(Target::String),
        LeafType::Array(_) => None,
    }
}

/// Load errors as text, one a line (for a command's error).
pub fn errors_text<E: std::fmt::Display>(errors: &[E]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// All mappings of a deployment, with the code tables they use.
#[derive(Debug, Default)]
pub struct MappingSet {
    pub mappings: BTreeMap<String, Arc<Mapping>>,
    pub dir: PathBuf,
}

impl MappingSet {
    /// Loads `dir/codes/*.yaml` and every `dir/*.yaml`, checking each
    /// mapping against its schema. All errors are returned, not just the
    /// first.
    pub fn load_dir(dir: &Path, schemas: &SchemaSet) -> Result<Self, Vec<LoadError>> {
        let mut errors = Vec::new();
        let tables = load_code_tables(&dir.join("codes"), &mut errors);
        let mut files = list_yaml(dir);
        files.sort();
        let mut mappings = BTreeMap::new();
        for file in files {
            match load_mapping_file(&file, schemas, &tables) {
                Ok(m) => {
                    if let Some(prev) = mappings.get(&m.name) {
                        let prev: &Arc<Mapping> = prev;
                        errors.push(LoadError {
                            file: file.clone(),
                            line: None,
                            rule: None,
                            message: format!(
                                "mapping name `{}` is also used by {}",
                                m.name,
                                prev.file.display()
                            ),
                        });
                        continue;
                    }
                    mappings.insert(m.name.clone(), Arc::new(m));
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(Self {
                mappings,
                dir: dir.to_path_buf(),
            })
        } else {
            Err(errors)
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Mapping>> {
        self.mappings.get(name).cloned()
    }

    /// Every mapping, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Mapping>> {
        self.mappings.values()
    }

    /// A mapping compiled from `file` (an edited copy), with the code
    /// tables of `codes` (an edited copy of `codes/`) or of this set.
    pub fn load_edited(
        &self,
        file: &Path,
        codes: Option<&Path>,
        schemas: &SchemaSet,
    ) -> Result<Mapping, Vec<LoadError>> {
        let mut errors = Vec::new();
        let dir = codes.map_or_else(|| self.dir.join("codes"), Path::to_path_buf);
        let tables = load_code_tables(&dir, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        load_mapping_file(file, schemas, &tables)
    }
}

fn list_yaml(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect()
        })
        .unwrap_or_default()
}

fn load_code_tables(dir: &Path, errors: &mut Vec<LoadError>) -> HashMap<String, Arc<CodeTable>> {
    let mut tables = HashMap::new();
    for file in list_yaml(dir) {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(LoadError {
                    file,
                    line: None,
                    rule: None,
                    message: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        match serde_saphyr::from_str::<CodeTableFile>(&text) {
            Ok(t) => {
                let _ = t.description;
                let version = t.version.clone().unwrap_or_else(|| {
                    use sha2::Digest;
                    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..4])
                });
                let mut table = CodeTable {
                    name: name.clone(),
                    version,
                    ..CodeTable::default()
                };
                for (code, entry) in t.codes {
                    match entry {
                        spec::CodeEntry::Plain(v) => {
                            table.codes.insert(code, v);
                        }
                        spec::CodeEntry::Dated(values) => match dated_values(&code, values) {
                            Ok(v) => {
                                table.dated.insert(code, v);
                            }
                            Err(message) => errors.push(LoadError {
                                file: file.clone(),
                                line: None,
                                rule: None,
                                message,
                            }),
                        },
                    }
                }
                tables.insert(name, Arc::new(table));
            }
            Err(e) => errors.push(yaml_error(&file, &e)),
        }
    }
    tables
}

/// A code's dated values: days parsed (Asia/Shanghai), `valid_to`
/// inclusive, periods not overlapping.
fn dated_values(code: &str, values: Vec<spec::DatedEntry>) -> Result<Vec<DatedValue>, String> {
    let day = |text: &Option<String>, end: bool| -> Result<Option<i64>, String> {
        let Some(t) = text else { return Ok(None) };
        let d = chrono::NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d")
            .map_err(|_| format!("code `{code}`: `{t}` is not a date (YYYY-MM-DD)"))?;
        let d = if end {
            d.succ_opt().ok_or("date out of range")?
        } else {
            d
        };
        Ok(d.and_time(chrono::NaiveTime::MIN)
            .and_local_timezone(chrono_tz::Asia::Shanghai)
            .earliest()
            .map(|t| t.timestamp_millis()))
    };
    let mut out: Vec<DatedValue> = Vec::new();
    for v in values {
        let (from_ms, to_ms) = (day(&v.valid_from, false)?, day(&v.valid_to, true)?);
        if let (Some(f), Some(t)) = (from_ms, to_ms)
            && t <= f
        {
            return Err(format!(
                "code `{code}`: `{}` ends before it starts",
                v.value
            ));
        }
        for o in &out {
            let overlaps = o.from_ms.is_none_or(|f| to_ms.is_none_or(|t| f < t))
                && from_ms.is_none_or(|f| o.to_ms.is_none_or(|t| f < t));
            if overlaps {
                return Err(format!(
                    "code `{code}`: the periods of `{}` and `{}` overlap; a code has one value at a time",
                    o.value, v.value
                ));
            }
        }
        let label = format!(
            "{} {}–{}",
            v.value,
            v.valid_from.as_deref().unwrap_or(""),
            v.valid_to.as_deref().unwrap_or("")
        );
        out.push(DatedValue {
            value: v.value,
            from_ms,
            to_ms,
            label,
        });
    }
    Ok(out)
}

fn yaml_error(file: &Path, e: &serde_saphyr::Error) -> LoadError {
    let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
    // The rendered error carries a source snippet; keep its first line.
    let rendered = e.to_string();
    let message = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid YAML")
        .trim()
        .to_owned();
    LoadError {
        file: file.to_path_buf(),
        line,
        rule: None,
        message,
    }
}

/// Loads and compiles one mapping file.
pub fn load_mapping_file(
    file: &Path,
    schemas: &SchemaSet,
    tables: &HashMap<String, Arc<CodeTable>>,
) -> Result<Mapping, Vec<LoadError>> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        vec![LoadError {
            file: file.to_path_buf(),
            line: None,
            rule: None,
            message: format!("cannot read: {e}"),
        }]
    })?;
    let spec: MappingSpec =
        serde_saphyr::from_str(&text).map_err(|e| vec![yaml_error(file, &e)])?;
    Compiler::new(file, schemas, tables).compile(spec)
}

fn line_of<T>(s: &Spanned<T>) -> Option<u64> {
    let l = s.referenced.line();
    if l > 0 { Some(l) } else { None }
}

struct Compiler<'c> {
    file: &'c Path,
    schemas: &'c SchemaSet,
    tables: &'c HashMap<String, Arc<CodeTable>>,
    errors: Vec<LoadError>,
    /// `effective_at`'s leaf, once resolved.
    effective_leaf: Option<usize>,
    /// Code tables the rules use → their versions.
    used_tables: BTreeMap<String, String>,
    trie: Trie,
    namespaces: BTreeMap<String, String>,
}

impl<'c> Compiler<'c> {
    fn new(
        file: &'c Path,
        schemas: &'c SchemaSet,
        tables: &'c HashMap<String, Arc<CodeTable>>,
    ) -> Self {
        Self {
            file,
            schemas,
            tables,
            errors: Vec::new(),
            effective_leaf: None,
            used_tables: BTreeMap::new(),
            trie: Trie::default(),
            namespaces: BTreeMap::new(),
        }
    }

    fn error(&mut self, line: Option<u64>, rule: Option<&str>, message: impl Into<String>) {
        self.errors.push(LoadError {
            file: self.file.to_path_buf(),
            line,
            rule: rule.map(str::to_owned),
            message: message.into(),
        });
    }

    fn path(&mut self, line: Option<u64>, rule: &str, text: &str) -> Option<usize> {
        match parse_path(text, &self.namespaces).and_then(|p| self.trie.add(p)) {
            Ok(slot) => Some(slot),
            Err(e) => {
                self.error(line, Some(rule), e);
                None
            }
        }
    }

    fn regex(&mut self, line: Option<u64>, rule: &str, pattern: &str) -> Option<Regex> {
        match Regex::new(pattern) {
            Ok(r) => Some(r),
            Err(e) => {
                self.error(line, Some(rule), format!("invalid regex `{pattern}`: {e}"));
                None
            }
        }
    }

    fn compile(mut self, spec: MappingSpec) -> Result<Mapping, Vec<LoadError>> {
        let file = self.file;
        let name = spec.name.clone().unwrap_or_else(|| {
            file.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let Some(schema) = self.schemas.get(&spec.schema.value) else {
            let known: Vec<&str> = self.schemas.names().collect();
            self.error(
                line_of(&spec.schema),
                None,
                format!(
                    "schema `{}` is not in schemas/ (known: {})",
                    spec.schema.value,
                    known.join(", ")
                ),
            );
            return Err(self.errors);
        };
        self.namespaces = spec.namespaces.clone();
        let format = match spec.format.value {
            PayloadFormatSpec::Json => PayloadFormat::Json,
            PayloadFormatSpec::Xml => PayloadFormat::Xml,
        };
        if format == PayloadFormat::Json && !spec.namespaces.is_empty() {
            self.error(None, None, "`namespaces` only applies to `format: xml`");
        }
        let encoding = match &spec.encoding {
            None => encoding_rs::UTF_8,
            Some(label) => match duijie_connectors::text::encoding_for_label(&label.value) {
                Ok(e) => e,
                Err(e) => {
                    self.error(line_of(label), None, e.to_string());
                    encoding_rs::UTF_8
                }
            },
        };
        let zone: chrono_tz::Tz = match &spec.zone {
            None => chrono_tz::Asia::Shanghai,
            Some(z) => z.value.parse().unwrap_or_else(|_| {
                self.error(line_of(z), None, format!("unknown time zone `{}`", z.value));
                chrono_tz::Asia::Shanghai
            }),
        };
        let source_id_slot = self
            .path(line_of(&spec.source_id), "source_id", &spec.source_id.value)
            .unwrap_or(0);

        // Inline code tables shadow files of the same name.
        let mut tables: HashMap<String, Arc<CodeTable>> = self.tables.clone();
        for (tname, t) in &spec.codes {
            tables.insert(
                tname.clone(),
                Arc::new(CodeTable::inline(
                    tname.clone(),
                    t.value.clone().into_iter().collect(),
                )),
            );
        }

        // Which leaf each rule fills.
        let mut leaf_of_rule = Vec::new();
        let mut filled: HashMap<usize, u64> = HashMap::new();
        for r in &spec.fields {
            let line = line_of(r);
            match schema.leaf(&r.value.field) {
                Some(leaf) => {
                    if let Some(prev) = filled.insert(leaf, line.unwrap_or(0)) {
                        self.error(
                            line,
                            Some(&r.value.field),
                            format!("is already filled by the rule at line {prev}"),
                        );
                    }
                    leaf_of_rule.push(Some(leaf));
                }
                None => {
                    let known: Vec<&str> = schema.leaves.iter().map(|l| l.path.as_str()).collect();
                    self.error(
                        line,
                        Some(&r.value.field),
                        format!(
                            "is not a field of schema {} (fields: {})",
                            schema.full_name,
                            known.join(", ")
                        ),
                    );
                    leaf_of_rule.push(None);
                }
            }
        }
        let flags_leaf = schema.leaf("flags");
        if let Some(fl) = flags_leaf {
            if schema.leaves[fl].ty != LeafType::Array(Box::new(LeafType::String)) {
                self.error(
                    None,
                    Some("flags"),
                    "the schema's `flags` field must be array<string>",
                );
            }
            if filled.contains_key(&fl) {
                self.error(
                    None,
                    Some("flags"),
                    "is written by the engine (check on_fail: flag), not by a rule",
                );
            }
        }

        if let Some(at) = &spec.effective_at {
            match schema.leaf(&at.value) {
                Some(l) if matches!(schema.leaves[l].ty, LeafType::TimestampMillis) => {
                    self.effective_leaf = Some(l);
                }
                Some(_) => self.error(
                    line_of(at),
                    Some("effective_at"),
                    format!("`{}` is not a timestamp field of the schema", at.value),
                ),
                None => self.error(
                    line_of(at),
                    Some("effective_at"),
                    format!("`{}` is not a field of the schema", at.value),
                ),
            }
        }
        let mut rules = Vec::new();
        let mut deps: Vec<Vec<usize>> = Vec::new();
        for (r, leaf) in spec.fields.iter().zip(&leaf_of_rule) {
            let Some(leaf) = *leaf else { continue };
            let line = line_of(r);
            let mut rule_deps = Vec::new();
            if let Some(rule) = self.compile_rule(
                &r.value,
                line,
                leaf,
                &schema,
                &tables,
                zone,
                flags_leaf,
                &mut rule_deps,
            ) {
                rules.push((rule, line));
                deps.push(rule_deps);
            }
        }

        let key_leaf = match schema.leaf(&spec.key.value) {
            Some(k) => k,
            None => {
                self.error(
                    line_of(&spec.key),
                    None,
                    format!("key field `{}` is not in the schema", spec.key.value),
                );
                0
            }
        };

        // Every non-nullable leaf must be filled, and filled for sure.
        let mut defaults = Vec::new();
        for (i, leaf) in schema.leaves.iter().enumerate() {
            if Some(i) == flags_leaf {
                continue;
            }
            match rules.iter().find(|(r, _)| r.leaf == i) {
                None => {
                    if let Some(d) = &leaf.default
                        && !d.is_null()
                    {
                        match json_to_val(d).and_then(|v| convert_const(v, &leaf.ty)) {
                            Ok(v) => defaults.push((i, v)),
                            Err(e) => {
                                self.error(None, Some(&leaf.path), format!("schema default: {e}"))
                            }
                        }
                    } else if !leaf.nullable {
                        self.error(
                            None,
                            Some(&leaf.path),
                            format!(
                                "is required by schema {} but no rule fills it",
                                schema.full_name
                            ),
                        );
                    }
                }
                Some((r, line)) => {
                    let sure = r.required
                        || r.default.is_some()
                        || (matches!(r.source, SourceExpr::Const(_)) && r.when.is_none());
                    if !leaf.nullable && !sure {
                        self.error(
                            *line,
                            Some(&leaf.path),
                            "is not nullable in the schema but this rule may leave it empty: add `required: true` or a `default`",
                        );
                    }
                }
            }
        }

        // Order rules so that `from`/`field` references run first.
        let order = match topo_order(
            &rules.iter().map(|(r, _)| r.leaf).collect::<Vec<_>>(),
            &deps,
        ) {
            Ok(o) => o,
            Err(cycle_leaf) => {
                let (r, line) = rules.iter().find(|(r, _)| r.leaf == cycle_leaf).unwrap();
                let (field, line) = (r.field.clone(), *line);
                self.error(line, Some(&field), "rules refer to each other in a cycle");
                Vec::new()
            }
        };

        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        let mut rules: Vec<Option<Rule>> = rules.into_iter().map(|(r, _)| Some(r)).collect();
        let rules = order
            .into_iter()
            .map(|i| rules[i].take().unwrap())
            .collect();
        Ok(Mapping {
            name,
            version: spec.version.value,
            system: spec.system,
            file: file.to_path_buf(),
            schema,
            format,
            encoding,
            trie: self.trie,
            source_id_slot,
            key_leaf,
            flags_leaf,
            rules,
            defaults,
            effective_leaf: self.effective_leaf,
            code_tables: self
                .used_tables
                .iter()
                .filter(|(name, _)| !name.ends_with("(inline)"))
                .map(|(n, v)| format!("{n}@{v}"))
                .collect::<Vec<_>>()
                .join(","),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn compile_rule(
        &mut self,
        r: &FieldSpec,
        line: Option<u64>,
        leaf: usize,
        schema: &CanonicalSchema,
        tables: &HashMap<String, Arc<CodeTable>>,
        zone: chrono_tz::Tz,
        flags_leaf: Option<usize>,
        deps: &mut Vec<usize>,
    ) -> Option<Rule> {
        let field = r.field.as_str();
        let before = self.errors.len();
        let leaf_ty = schema.leaves[leaf].ty.clone();
        let output_ref = |this: &mut Self, name: &str, deps: &mut Vec<usize>| -> Option<usize> {
            match schema.leaf(name) {
                Some(l) => {
                    deps.push(l);
                    Some(l)
                }
                None => {
                    this.error(
                        line,
                        Some(field),
                        format!("refers to `{name}`, which is not a field of the schema"),
                    );
                    None
                }
            }
        };

        // Source.
        let sources = [
            r.path.is_some(),
            r.first_of.is_some(),
            r.constant.is_some(),
            r.template.is_some(),
            r.concat.is_some(),
            r.from.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources > 1 {
            self.error(
                line,
                Some(field),
                "give only one of path, first_of, const, template, concat, from",
            );
        }
        let source = if let Some(p) = &r.path {
            self.path(line, field, p).map(SourceExpr::Path)
        } else if let Some(ps) = &r.first_of {
            let slots: Vec<usize> = ps
                .iter()
                .filter_map(|p| self.path(line, field, p))
                .collect();
            Some(SourceExpr::FirstOf(slots))
        } else if let Some(c) = &r.constant {
            match json_to_val(c).and_then(|v| convert_const(v, &leaf_ty)) {
                Ok(v) => Some(SourceExpr::Const(v)),
                Err(e) => {
                    self.error(line, Some(field), format!("const: {e}"));
                    None
                }
            }
        } else if let Some(t) = &r.template {
            match parse_template(t) {
                Ok(parts) => {
                    let mut compiled = Vec::new();
                    for p in parts {
                        compiled.push(match p {
                            TemplatePart::Lit(l) => Part::Lit(l),
                            TemplatePart::Path(p) => Part::Input(self.path(line, field, &p)?),
                        });
                    }
                    Some(SourceExpr::Template(compiled))
                }
                Err(e) => {
                    self.error(line, Some(field), format!("template: {e}"));
                    None
                }
            }
        } else if let Some(parts) = &r.concat {
            let mut compiled = Vec::new();
            for p in parts {
                let n = [p.path.is_some(), p.constant.is_some(), p.field.is_some()]
                    .iter()
                    .filter(|b| **b)
                    .count();
                if n != 1 {
                    self.error(
                        line,
                        Some(field),
                        "each concat part needs exactly one of path, const, field",
                    );
                    continue;
                }
                if let Some(path) = &p.path {
                    compiled.push(Part::Input(self.path(line, field, path)?));
                } else if let Some(c) = &p.constant {
                    compiled.push(Part::Lit(c.clone()));
                } else if let Some(f) = &p.field {
                    compiled.push(Part::Output(output_ref(self, f, deps)?));
                }
            }
            Some(SourceExpr::Concat(
                compiled,
                r.separator.clone().unwrap_or_default(),
            ))
        } else if let Some(f) = &r.from {
            output_ref(self, f, deps).map(SourceExpr::Field)
        } else {
            self.error(
                line,
                Some(field),
                "needs a source: path, first_of, const, template, concat or from",
            );
            None
        };
        if r.separator.is_some() && r.concat.is_none() {
            self.error(line, Some(field), "`separator` only applies to `concat`");
        }

        let when = r
            .when
            .as_ref()
            .and_then(|c| self.condition(c, line, field, schema, deps));

        let codes = r.codes.as_ref().and_then(|c| {
            let table = match (&c.table, &c.map) {
                (Some(t), None) => match tables.get(t) {
                    Some(t) => t.clone(),
                    None => {
                        let mut known: Vec<&String> = tables.keys().collect();
                        known.sort();
                        self.error(
                            line,
                            Some(field),
                            format!("code table `{t}` is neither in mappings/codes/ nor in this file's `codes` (known: {known:?})"),
                        );
                        return None;
                    }
                },
                (None, Some(m)) => Arc::new(CodeTable::inline(
                    format!("{field} (inline)"),
                    m.clone().into_iter().collect(),
                )),
                _ => {
                    self.error(line, Some(field), "codes needs exactly one of `table` or `map`");
                    return None;
                }
            };
            if c.unknown == UnknownCode::Default && c.default.is_none() {
                self.error(line, Some(field), "codes: `unknown: default` needs a `default`");
            }
            if let LeafType::Enum(symbols) = &leaf_ty {
                for v in table.values().chain(c.default.iter()) {
                    if !symbols.contains(v) {
                        self.error(line, Some(field), format!("code value `{v}` is not a symbol of the schema's enum"));
                    }
                }
            }
            if !table.dated.is_empty() {
                match self.effective_leaf {
                    // Mapped after the record's own time is.
                    Some(l) => deps.push(l),
                    None => self.error(
                        line,
                        Some(field),
                        format!(
                            "code table `{}` has dated entries: set `effective_at` to the field holding the record's own time",
                            table.name
                        ),
                    ),
                }
            }
            self.used_tables.insert(table.name.clone(), table.version.clone());
            Some(CodeUse {
                table,
                unknown: c.unknown,
                default: c.default.clone(),
            })
        });

        let regex = r.regex.as_ref().and_then(|p| self.regex(line, field, p));
        let length = r.length.as_ref().map(|l| match l {
            LengthSpec::Exact(n) => (*n, *n),
            LengthSpec::Range { min, max } => (min.unwrap_or(0), max.unwrap_or(usize::MAX)),
        });
        let check = r.check.as_ref().map(|c| match c {
            CheckSpec::Short(k) => (*k, OnFail::Reject),
            CheckSpec::Full { validator, on_fail } => (*validator, *on_fail),
        });
        if let Some((_, OnFail::Flag)) = check
            && flags_leaf.is_none()
        {
            self.error(
                line,
                Some(field),
                format!(
                    "check with `on_fail: flag` needs a `flags: array<string>` field in schema {}",
                    schema.full_name
                ),
            );
        }

        let derived_count = [r.in_set.is_some(), r.matches.is_some(), r.valid.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if derived_count > 1 {
            self.error(line, Some(field), "give only one of in, matches, valid");
        }
        let derived = if let Some(set) = &r.in_set {
            Some(Derived::In(StrSet::new(set.clone())))
        } else if let Some(m) = &r.matches {
            self.regex(line, field, m).map(Derived::Matches)
        } else {
            r.valid.map(Derived::Valid)
        };
        if derived.is_some() && leaf_ty != LeafType::Boolean {
            self.error(
                line,
                Some(field),
                format!(
                    "in/matches/valid give a boolean, but the schema field is {}",
                    leaf_ty.describe()
                ),
            );
        }

        // Conversion: explicit, date-time, or the schema's type.
        let convert = if let Some(dt) = &r.datetime {
            if !matches!(leaf_ty, LeafType::Long | LeafType::TimestampMillis) {
                self.error(
                    line,
                    Some(field),
                    format!(
                        "datetime gives epoch milliseconds (long), but the schema field is {}",
                        leaf_ty.describe()
                    ),
                );
            }
            let (formats, z, end_of_day) = match dt {
                DateTimeSpec::One(f) => (vec![f.clone()], None, false),
                DateTimeSpec::Many(fs) => (fs.clone(), None, false),
                DateTimeSpec::Full {
                    formats,
                    zone,
                    end_of_day,
                } => (formats.clone(), zone.clone(), *end_of_day),
            };
            let zone = match z {
                Some(z) => z.parse().unwrap_or_else(|_| {
                    self.error(line, Some(field), format!("unknown time zone `{z}`"));
                    zone
                }),
                None => zone,
            };
            if formats.is_empty() {
                self.error(line, Some(field), "datetime needs at least one format");
            }
            let mut compiled = Vec::new();
            for f in formats {
                match Format::parse(&f) {
                    Ok(f) => compiled.push(f),
                    Err(e) => self.error(line, Some(field), e),
                }
            }
            Convert::DateTime(DateTimeRule {
                formats: compiled,
                zone,
                end_of_day,
            })
        } else if let LeafType::Array(item) = &leaf_ty {
            match target_of(item) {
                Some(t) => Convert::Items(t),
                None => {
                    self.error(line, Some(field), "arrays of arrays are not supported");
                    Convert::None
                }
            }
        } else {
            let schema_target = target_of(&leaf_ty);
            match r.convert {
                None => schema_target.map(Convert::To).unwrap_or(Convert::None),
                Some(t) => {
                    let want = match t {
                        TypeSpec::String => Target::String,
                        TypeSpec::Int | TypeSpec::Long => Target::Long,
                        TypeSpec::Double => Target::Double,
                        TypeSpec::Boolean => Target::Boolean,
                    };
                    let fits = Some(want) == schema_target
                        || (want == Target::Long && schema_target == Some(Target::Double));
                    if !fits {
                        self.error(
                            line,
                            Some(field),
                            format!(
                                "type {t:?} does not fit the schema field's {}",
                                leaf_ty.describe()
                            ),
                        );
                    }
                    if t == TypeSpec::Long && leaf_ty == LeafType::Int {
                        self.error(
                            line,
                            Some(field),
                            "type long does not fit the schema field's int",
                        );
                    }
                    Convert::To(schema_target.unwrap_or(want))
                }
            }
        };
        if matches!(leaf_ty, LeafType::TimestampMillis)
            && r.datetime.is_none()
            && derived.is_none()
            && !matches!(source, Some(SourceExpr::Const(_)))
        {
            // Allowed: an epoch-milliseconds integer. A string will be
            // rejected at run time with a reason.
        }
        if (codes.is_some() || r.mask.is_some() || r.template.is_some())
            && !matches!(leaf_ty, LeafType::String | LeafType::Enum(_))
            && derived.is_none()
            && r.datetime.is_none()
            && !matches!(leaf_ty, LeafType::Long | LeafType::Int | LeafType::Double)
        {
            self.error(
                line,
                Some(field),
                format!(
                    "codes/mask/template give text, but the schema field is {}",
                    leaf_ty.describe()
                ),
            );
        }

        // The rule's own default, else the schema's.
        let schema_default = schema.leaves[leaf]
            .default
            .as_ref()
            .filter(|d| !d.is_null());
        let default = r.default.as_ref().or(schema_default).and_then(|d| {
            match json_to_val(d).and_then(|v| convert_const(v, &leaf_ty)) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.error(line, Some(field), format!("default: {e}"));
                    None
                }
            }
        });
        let mask = r.mask.as_ref().and_then(|m| match m {
            MaskSpec::Named(n) if n == "birth_date" => Some(MaskPolicy::birth_date()),
            MaskSpec::Named(n) => {
                self.error(
                    line,
                    Some(field),
                    format!("unknown mask `{n}` (use birth_date or {{ keep_start, keep_end }})"),
                );
                None
            }
            MaskSpec::Policy(p) => Some(p.clone()),
        });
        let enum_symbols = match &leaf_ty {
            LeafType::Enum(s) => Some(s.clone()),
            _ => None,
        };

        if self.errors.len() > before {
            return None;
        }
        Some(Rule {
            field: field.to_owned(),
            leaf,
            when,
            source: source.unwrap_or(SourceExpr::Nothing),
            trim: r.trim,
            remove_spaces: r.remove_spaces,
            halfwidth: r.halfwidth,
            case: r.case,
            replace: {
                let mut pairs: Vec<(String, String)> =
                    r.replace.clone().unwrap_or_default().into_iter().collect();
                pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
                pairs
            },
            empty_as_null: r.empty_as_null,
            codes,
            regex,
            length,
            check,
            derived,
            convert,
            enum_symbols,
            default,
            required: r.required,
            mask,
        })
    }

    fn condition(
        &mut self,
        c: &ConditionSpec,
        line: Option<u64>,
        field: &str,
        schema: &CanonicalSchema,
        deps: &mut Vec<usize>,
    ) -> Option<Cond> {
        if let Some(all) = &c.all {
            return Some(Cond::All(
                all.iter()
                    .filter_map(|c| self.condition(c, line, field, schema, deps))
                    .collect(),
            ));
        }
        if let Some(any) = &c.any {
            return Some(Cond::Any(
                any.iter()
                    .filter_map(|c| self.condition(c, line, field, schema, deps))
                    .collect(),
            ));
        }
        if let Some(not) = &c.not {
            return self
                .condition(not, line, field, schema, deps)
                .map(|c| Cond::Not(Box::new(c)));
        }
        let operand = match (&c.path, &c.field) {
            (Some(p), None) => Operand::Input(self.path(line, field, p)?),
            (None, Some(f)) => match schema.leaf(f) {
                Some(l) => {
                    deps.push(l);
                    Operand::Output(l)
                }
                None => {
                    self.error(
                        line,
                        Some(field),
                        format!("condition refers to `{f}`, which is not a field of the schema"),
                    );
                    return None;
                }
            },
            _ => {
                self.error(
                    line,
                    Some(field),
                    "a condition needs exactly one of `path` or `field` (or all/any/not)",
                );
                return None;
            }
        };
        let tests = [
            c.in_set.is_some(),
            c.eq.is_some(),
            c.present.is_some(),
            c.matches.is_some(),
            c.past.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if tests != 1 {
            self.error(
                line,
                Some(field),
                "a condition needs exactly one test: in, eq, present, matches or past",
            );
            return None;
        }
        Some(if let Some(set) = &c.in_set {
            Cond::In(operand, StrSet::new(set.clone()))
        } else if let Some(eq) = &c.eq {
            Cond::Eq(operand, eq.clone())
        } else if let Some(p) = c.present {
            Cond::Present(operand, p)
        } else if let Some(p) = c.past {
            Cond::Past(operand, p)
        } else {
            let pattern = c.matches.as_deref().unwrap_or_default();
            Cond::Matches(operand, self.regex(line, field, pattern)?)
        })
    }
}

/// Evaluation order: every rule after the rules whose output it reads.
/// `Err(leaf)` names a leaf in a cycle.
fn topo_order(leaves: &[usize], deps: &[Vec<usize>]) -> Result<Vec<usize>, usize> {
    let index_of: HashMap<usize, usize> = leaves.iter().enumerate().map(|(i, l)| (*l, i)).collect();
    let mut state = vec![0u8; leaves.len()]; // 0 new, 1 visiting, 2 done
    let mut order = Vec::with_capacity(leaves.len());
    fn visit(
        i: usize,
        leaves: &[usize],
        deps: &[Vec<usize>],
        index_of: &HashMap<usize, usize>,
        state: &mut [u8],
        order: &mut Vec<usize>,
    ) -> Result<(), usize> {
        match state[i] {
            2 => return Ok(()),
            1 => return Err(leaves[i]),
            _ => {}
        }
        state[i] = 1;
        for d in &deps[i] {
            if let Some(&j) = index_of.get(d) {
                visit(j, leaves, deps, index_of, state, order)?;
            }
        }
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..leaves.len() {
        visit(i, leaves, deps, &index_of, &mut state, &mut order)?;
    }
    Ok(order)
}

enum TemplatePart {
    Lit(String),
    Path(String),
}

fn parse_template(t: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut path = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => path.push(c),
                        None => return Err(format!("unclosed `{{` in `{t}`")),
                    }
                }
                if !lit.is_empty() {
                    parts.push(TemplatePart::Lit(std::mem::take(&mut lit)));
                }
                parts.push(TemplatePart::Path(path.trim().to_owned()));
            }
            '}' => {
                return Err(format!(
                    "unmatched `}}` in `{t}` (write `}}}}` for a brace)"
                ));
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        parts.push(TemplatePart::Lit(lit));
    }
    Ok(parts)
}

fn json_to_val(v: &serde_json::Value) -> Result<Val<'static>, String> {
    Ok(match v {
        serde_json::Value::Null => Val::Null,
        serde_json::Value::Bool(b) => Val::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Val::Int(i),
            None => Val::Double(n.as_f64().ok_or("number out of range")?),
        },
        serde_json::Value::String(s) => Val::Str(Cow::Owned(s.clone())),
        serde_json::Value::Array(items) => {
            Val::List(items.iter().map(json_to_val).collect::<Result<_, _>>()?)
        }
        serde_json::Value::Object(_) => return Err("an object is not a value".into()),
    })
}

fn convert_const(v: Val<'static>, ty: &LeafType) -> Result<Val<'static>, String> {
    match ty {
        LeafType::Array(item) => match v {
            Val::List(items) => Ok(Val::List(
                items
                    .into_iter()
                    .map(|i| convert_const(i, item))
                    .collect::<Result<_, _>>()?,
            )),
            _ => Err("expected a list".into()),
        },
        LeafType::Enum(symbols) => match &v {
            Val::Str(s) if symbols.contains(&s.to_string()) => Ok(v),
            _ => Err(format!("`{v}` is not one of [{}]", symbols.join(", "))),
        },
        other => match target_of(other) {
            Some(t) => convert(v, t),
            None => Ok(v),
        },
    }
}

#[cfg(test)]
mod tests;
