//! The values a mapping reads from payloads and writes into canonical
//! records. Strings borrow from the payload (or the compiled mapping)
//! wherever they can, so a record is mapped without copying its text.

use std::borrow::Cow;
use std::fmt;

/// One value in flight through a mapping.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    Str(Cow<'a, str>),
    /// Integers of JSON and of `int`/`long` conversions.
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Repeated values (`items[*]`, repeated XML elements).
    List(Vec<Val<'a>>),
}

impl<'a> Val<'a> {
    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    /// Writes `value` into `slot`. Over a null (a record's fields and the
    /// members it reads are mostly written once) the old value is not
    /// dropped: the compiler cannot see it is a null and would call the
    /// drop, a call a field on the mapping's hot path.
    #[inline]
    pub(crate) fn put(slot: &mut Self, value: Self) {
        if slot.is_null() {
            std::mem::forget(std::mem::replace(slot, value));
        } else {
            *slot = value;
        }
    }

    /// The value as text, when it is a scalar. Numbers and booleans are
    /// written the way JSON writes them.
    pub fn as_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Val::Null | Val::List(_) => None,
            Val::Str(s) => Some(Cow::Borrowed(s.as_ref())),
            Val::Int(i) => Some(Cow::Owned(i.to_string())),
            Val::Double(d) => Some(Cow::Owned(format_double(*d))),
            Val::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        }
    }

    /// A short name of the value's kind, for reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Str(_) => "string",
            Val::Int(_) => "integer",
            Val::Double(_) => "number",
            Val::Bool(_) => "boolean",
            Val::List(_) => "list",
        }
    }

    pub fn into_owned(self) -> Val<'static> {
        match self {
            Val::Null => Val::Null,
            Val::Str(s) => Val::Str(Cow::Owned(s.into_owned())),
            Val::Int(i) => Val::Int(i),
            Val::Double(d) => Val::Double(d),
            Val::Bool(b) => Val::Bool(b),
            Val::List(items) => Val::List(items.into_iter().map(Val::into_owned).collect()),
        }
    }

    /// The value as JSON, for canonical JSON output and golden files.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Val::Null => serde_json::Value::Null,
            Val::Str(s) => serde_json::Value::String(s.to_string()),
            Val::Int(i) => serde_json::Value::from(*i),
            Val::Double(d) => serde_json::Number::from_f64(*d)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Val::Bool(b) => serde_json::Value::Bool(*b),
            Val::List(items) => serde_json::Value::Array(items.iter().map(Val::to_json).collect()),
        }
    }
}

impl fmt::Display for Val<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Val::Null => f.write_str("null"),
            other => f.write_str(&other.as_text().unwrap_or_default()),
        }
    }
}

fn format_double(d: f64) -> String {
    if d.fract() == 0.0 && d.abs() < 1e15 {
        format!("{d:.1}")
    } else {
        d.to_string()
    }
}

/// Nested objects flattened into dotted paths (`party.credit_code`), in
/// key order; arrays and scalars are leaves.
pub fn flatten_json(v: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, x, out);
                }
            }
            _ => out.push((prefix.to_owned(), v.clone())),
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out
}
