//! Canonical Avro schemas (`schemas/*.avsc`) and the compiled shape the
//! mapping engine writes into.
//!
//! Every `.avsc` file holds one named record. A schema may refer to a record
//! of another file by name (`"type": ["null", "duijie.canonical.Party"]`);
//! at load each top-level schema is made self-contained by inlining what it
//! refers to, so its fingerprint, its registry entry and its readers all see
//! the whole schema.

pub mod compat;
mod encode;
pub mod registry;

pub use encode::{EncodeError, Encoding, RecordEncoder};
pub use registry::RegistryError;

use crate::value::Val;
use apache_avro::Schema;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl From<SchemaError> for crate::error::Error {
    fn from(e: SchemaError) -> Self {
        Self::new(
            crate::error::Domain::Config,
            crate::error::ErrorClass::Permanent,
            e,
        )
    }
}

/// Why the schema folder could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not JSON: {source}")]
    Json {
        file: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file}: not a valid Avro schema: {message}")]
    Avro { file: PathBuf, message: String },
    #[error("{file}: {message}")]
    Unsupported { file: PathBuf, message: String },
    #[error("{file}: record `{name}` is also defined in {other}")]
    Duplicate {
        file: PathBuf,
        name: String,
        other: PathBuf,
    },
}

/// The type of a leaf field, as far as the mapping engine is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafType {
    Boolean,
    Int,
    Long,
    /// `long` with logical type `timestamp-millis`: UTC epoch milliseconds.
    TimestampMillis,
    Float,
    Double,
    String,
    /// An `enum`; values are written by symbol.
    Enum(Vec<String>),
    /// An array of a primitive type.
    Array(Box<LeafType>),
}

impl LeafType {
    pub fn describe(&self) -> String {
        match self {
            LeafType::Boolean => "boolean".into(),
            LeafType::Int => "int".into(),
            LeafType::Long => "long".into(),
            LeafType::TimestampMillis => "timestamp-millis".into(),
            LeafType::Float => "float".into(),
            LeafType::Double => "double".into(),
            LeafType::String => "string".into(),
            LeafType::Enum(_) => "enum".into(),
            LeafType::Array(t) => format!("array<{}>", t.describe()),
        }
    }
}

/// A field that holds a value (not a nested record).
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Dotted path from the top record: `party.credit_code`.
    pub path: String,
    pub ty: LeafType,
    /// Part of a union with `null`.
    pub nullable: bool,
    /// Union branch index of `null` and of the value, when nullable.
    pub null_branch: usize,
    pub value_branch: usize,
    /// The schema's default, used when a mapping leaves the field unset.
    pub default: Option<serde_json::Value>,
}

/// The record tree, pointing at leaves by index.
#[derive(Debug, Clone)]
pub enum Node {
    Leaf(usize),
    Record {
        name: String,
        nullable: bool,
        null_branch: usize,
        value_branch: usize,
        children: Vec<(String, Node)>,
    },
}

/// One canonical record schema, compiled.
#[derive(Debug)]
pub struct CanonicalSchema {
    pub full_name: String,
    pub file: PathBuf,
    pub avro: Schema,
    /// The self-contained schema JSON: every other record it names
    /// inlined where first used (what the encoder, `check` and `mapping
    /// diff` judge).
    pub json: String,
    /// The schema as its file writes it, other top-level records (`Party`)
    /// named by full name, not inlined: what a schema registry receives,
    /// with [`CanonicalSchema::references`].
    pub written: String,
    /// The top-level records it names, in order of first use: each one's
    /// full name and self-contained JSON (registered under its own
    /// subject, the full name, and referenced).
    pub references: Vec<(String, String)>,
    /// Single-object encoding header: `C3 01` + CRC-64-AVRO fingerprint.
    pub single_object_header: [u8; 10],
    pub leaves: Vec<Leaf>,
    pub tree: Vec<(String, Node)>,
}

impl CanonicalSchema {
    /// Index of the leaf at a dotted path.
    pub fn leaf(&self, path: &str) -> Option<usize> {
        self.leaves.iter().position(|l| l.path == path)
    }

    /// A record as JSON with every field present, null where empty; nested
    /// records as nested objects.
    pub fn to_json(&self, values: &[Val<'_>]) -> serde_json::Value {
        fn node_json(node: &Node, values: &[Val<'_>]) -> serde_json::Value {
            match node {
                Node::Leaf(i) => values[*i].to_json(),
                Node::Record {
                    nullable, children, ..
                } => {
                    if *nullable && record_is_empty(children, values) {
                        return serde_json::Value::Null;
                    }
                    let map = children
                        .iter()
                        .map(|(name, child)| (name.clone(), node_json(child, values)))
                        .collect::<serde_json::Map<_, _>>();
                    serde_json::Value::Object(map)
                }
            }
        }
        let map = self
            .tree
            .iter()
            .map(|(name, node)| (name.clone(), node_json(node, values)))
            .collect::<serde_json::Map<_, _>>();
        serde_json::Value::Object(map)
    }

    /// The values of a record given as JSON (as [`CanonicalSchema::to_json`]
    /// writes it, or as a decoded payload reads): each leaf from its dotted
    /// path, absent as null. What the encoder then refuses (a string where a
    /// number belongs) is its error.
    pub fn values_of(&self, record: &serde_json::Value) -> Vec<Val<'static>> {
        fn val(v: &serde_json::Value) -> Val<'static> {
            match v {
                serde_json::Value::Null | serde_json::Value::Object(_) => Val::Null,
                serde_json::Value::Bool(b) => Val::Bool(*b),
                serde_json::Value::Number(n) => n
                    .as_i64()
                    .map(Val::Int)
                    .unwrap_or_else(|| Val::Double(n.as_f64().unwrap_or_default())),
                serde_json::Value::String(s) => Val::Str(s.clone().into()),
                serde_json::Value::Array(items) => Val::List(items.iter().map(val).collect()),
            }
        }
        self.leaves
            .iter()
            .map(|leaf| {
                leaf.path
                    .split('.')
                    .try_fold(record, |v, k| v.get(k))
                    .map_or(Val::Null, val)
            })
            .collect()
    }

    /// Decodes a single-object-encoded payload back into Avro values, for
    /// tests and tools.
    pub fn decode_single_object(&self, bytes: &[u8]) -> Result<apache_avro::types::Value, String> {
        if bytes.len() < 10 || bytes[..10] != self.single_object_header {
            return Err(format!(
                "payload does not start with the single-object header of {}",
                self.full_name
            ));
        }
        let mut body = &bytes[10..];
        apache_avro::reader::datum::GenericDatumReader::builder(&self.avro)
            .build()
            .and_then(|r| r.read_value(&mut body))
            .map_err(|e| e.to_string())
    }
}

/// A nullable nested record is written as null when none of its leaves has
/// a value.
pub(crate) fn record_is_empty(children: &[(String, Node)], values: &[Val<'_>]) -> bool {
    children.iter().all(|(_, child)| match child {
        Node::Leaf(i) => values[*i].is_null(),
        Node::Record { children, .. } => record_is_empty(children, values),
    })
}

/// All canonical schemas of a deployment.
#[derive(Debug, Default)]
pub struct SchemaSet {
    by_name: BTreeMap<String, Arc<CanonicalSchema>>,
}

impl SchemaSet {
    /// Loads every `.avsc` file of `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, SchemaError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| SchemaError::Read {
                file: dir.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "avsc"))
            .collect();
        files.sort();
        let mut sources = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|source| SchemaError::Read {
                file: file.clone(),
                source,
            })?;
            sources.push((file, text));
        }
        Self::from_sources(sources)
    }

    /// Builds the set from `(file, schema JSON)` pairs.
    pub fn from_sources(sources: Vec<(PathBuf, String)>) -> Result<Self, SchemaError> {
        // Named top-level definitions, by full name.
        let mut defs: HashMap<String, (PathBuf, serde_json::Value)> = HashMap::new();
        let mut order = Vec::new();
        for (file, text) in sources {
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| SchemaError::Json {
                    file: file.clone(),
                    source,
                })?;
            let name = full_name_of(&json, None).ok_or_else(|| SchemaError::Unsupported {
                file: file.clone(),
                message: "the file must hold one named record schema".into(),
            })?;
            if let Some((other, _)) = defs.get(&name) {
                return Err(SchemaError::Duplicate {
                    file,
                    name,
                    other: other.clone(),
                });
            }
            order.push(name.clone());
            defs.insert(name, (file, json));
        }
        // Each definition standing for itself by full name: inlining with
        // these gives a schema as written, its references by full name.
        let named: HashMap<String, (PathBuf, serde_json::Value)> = defs
            .iter()
            .map(|(name, (file, _))| {
                (
                    name.clone(),
                    (file.clone(), serde_json::Value::String(name.clone())),
                )
            })
            .collect();
        let mut compiled = Vec::new();
        for name in order {
            let (file, json) = &defs[&name];
            let mut defined = Vec::new();
            let inlined = inline_refs(json, None, &defs, &mut defined);
            let text = inlined.to_string();
            let avro = Schema::parse_str(&text).map_err(|e| SchemaError::Avro {
                file: file.clone(),
                message: e.to_string(),
            })?;
            let mut schema = compile(file, &name, avro, text)?;
            let mut named_here = Vec::new();
            schema.written = inline_refs(json, None, &named, &mut named_here).to_string();
            named_here.retain(|n| *n != name && named.contains_key(n));
            compiled.push((schema, named_here));
        }
        // Each reference with the referenced record's self-contained JSON.
        let json_of: HashMap<String, String> = compiled
            .iter()
            .map(|(s, _)| (s.full_name.clone(), s.json.clone()))
            .collect();
        let mut by_name = BTreeMap::new();
        for (mut schema, references) in compiled {
            schema.references = references
                .into_iter()
                .map(|n| {
                    let json = json_of[&n].clone();
                    (n, json)
                })
                .collect();
            by_name.insert(schema.full_name.clone(), Arc::new(schema));
        }
        Ok(Self { by_name })
    }

    /// A schema by full name (`duijie.canonical.UrbanCase`) or, when that
    /// is unambiguous, by its short name (`UrbanCase`).
    pub fn get(&self, name: &str) -> Option<Arc<CanonicalSchema>> {
        if let Some(s) = self.by_name.get(name) {
            return Some(s.clone());
        }
        let mut matches = self
            .by_name
            .iter()
            .filter(|(full, _)| full.rsplit('.').next() == Some(name));
        match (matches.next(), matches.next()) {
            (Some((_, s)), None) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<CanonicalSchema>> {
        self.by_name.values()
    }
}

fn full_name_of(json: &serde_json::Value, enclosing_ns: Option<&str>) -> Option<String> {
    let obj = json.as_object()?;
    if obj.get("type")?.as_str()? != "record" {
        return None;
    }
    let name = obj.get("name")?.as_str()?;
    if name.contains('.') {
        return Some(name.to_owned());
    }
    let ns = obj
        .get("namespace")
        .and_then(|n| n.as_str())
        .or(enclosing_ns);
    Some(match ns {
        Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_owned(),
    })
}

/// A schema a registry holds, made self-contained: `written` with the
/// records its references define (their schema JSON, each self-contained)
/// inlined where first named, as [`SchemaSet`] inlines its own.
pub fn resolve(written: &str, references: &[String]) -> Result<String, String> {
    let mut defs = HashMap::new();
    for text in references {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("a referenced schema: {e}"))?;
        let name = full_name_of(&json, None).ok_or("a referenced schema is not a named record")?;
        defs.insert(name, (PathBuf::new(), json));
    }
    let json: serde_json::Value =
        serde_json::from_str(written).map_err(|e| format!("the schema: {e}"))?;
    Ok(inline_refs(&json, None, &defs, &mut Vec::new()).to_string())
}

/// Replaces the first reference to each other top-level record with its
/// definition, so the schema stands alone.
fn inline_refs(
    json: &serde_json::Value,
    ns: Option<&str>,
    defs: &HashMap<String, (PathBuf, serde_json::Value)>,
    defined: &mut Vec<String>,
) -> serde_json::Value {
    use serde_json::Value;
    match json {
        Value::String(s) => {
            let full = if s.contains('.') {
                s.clone()
            } else {
                ns.map(|n| format!("{n}.{s}")).unwrap_or_else(|| s.clone())
            };
            match defs.get(&full).or_else(|| defs.get(s)) {
                Some((_, def)) if !defined.contains(&full) => {
                    defined.push(full.clone());
                    let def_ns = full.rsplit_once('.').map(|(n, _)| n.to_owned());
                    inline_refs(def, def_ns.as_deref(), defs, defined)
                }
                _ => json.clone(),
            }
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| inline_refs(i, ns, defs, defined))
                .collect(),
        ),
        Value::Object(obj) => {
            let mut own_ns = ns.map(str::to_owned);
            if let Some(full) = full_name_of(json, ns) {
                if !defined.contains(&full) {
                    defined.push(full.clone());
                }
                own_ns = full.rsplit_once('.').map(|(n, _)| n.to_owned());
            }
            let mut out = serde_json::Map::new();
            for (k, v) in obj {
                let v = match k.as_str() {
                    "type" | "items" | "values" => inline_refs(v, own_ns.as_deref(), defs, defined),
                    "fields" => match v {
                        Value::Array(fields) => Value::Array(
                            fields
                                .iter()
                                .map(|f| inline_refs(f, own_ns.as_deref(), defs, defined))
                                .collect(),
                        ),
                        other => other.clone(),
                    },
                    _ => v.clone(),
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn compile(
    file: &Path,
    full_name: &str,
    avro: Schema,
    json: String,
) -> Result<CanonicalSchema, SchemaError> {
    let header_vec = {
        use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
        RabinFingerprintHeader::from_schema(&avro).build_header()
    };
    let mut header = [0u8; 10];
    header.copy_from_slice(&header_vec);
    let Schema::Record(record) = &avro else {
        return Err(SchemaError::Unsupported {
            file: file.to_path_buf(),
            message: "top-level schema must be a record".into(),
        });
    };
    let mut leaves = Vec::new();
    let mut names = HashMap::new();
    collect_named(&avro, &mut names);
    let tree = record_nodes(file, record, "", &names, &mut leaves)?;
    Ok(CanonicalSchema {
        full_name: full_name.to_owned(),
        file: file.to_path_buf(),
        single_object_header: header,
        avro: avro.clone(),
        json,
        written: String::new(),
        references: Vec::new(),
        leaves,
        tree,
    })
}

/// The named types (records, enums) `schema` defines, by full name: what
/// a `Schema::Ref` to one of them resolves to.
pub(crate) fn collect_named(schema: &Schema, names: &mut HashMap<String, Schema>) {
    match schema {
        Schema::Record(r) => {
            names.insert(r.name.fullname(None), schema.clone());
            for f in &r.fields {
                collect_named(&f.schema, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(e.name.fullname(None), schema.clone());
        }
        Schema::Union(u) => u.variants().iter().for_each(|v| collect_named(v, names)),
        Schema::Array(a) => collect_named(&a.items, names),
        Schema::Map(m) => collect_named(&m.types, names),
        _ => {}
    }
}

fn record_nodes(
    file: &Path,
    record: &apache_avro::schema::RecordSchema,
    prefix: &str,
    names: &HashMap<String, Schema>,
    leaves: &mut Vec<Leaf>,
) -> Result<Vec<(String, Node)>, SchemaError> {
    let mut out = Vec::new();
    for field in &record.fields {
        let path = if prefix.is_empty() {
            field.name.clone()
        } else {
            format!("{prefix}.{}", field.name)
        };
        let unsupported = |what: &str| SchemaError::Unsupported {
            file: file.to_path_buf(),
            message: format!("field `{path}`: {what} is not supported in canonical records"),
        };
        let resolve = |s: &Schema| -> Schema {
            match s {
                Schema::Ref { name } => names
                    .get(&name.fullname(None))
                    .cloned()
                    .unwrap_or(s.clone()),
                other => other.clone(),
            }
        };
        let (inner, nullable, null_branch, value_branch) = match &field.schema {
            Schema::Union(u) => {
                let variants = u.variants();
                let null_at = variants.iter().position(|v| matches!(v, Schema::Null));
                let others: Vec<usize> = (0..variants.len())
                    .filter(|i| Some(*i) != null_at)
                    .collect();
                match (null_at, others.as_slice()) {
                    (Some(n), [v]) => (resolve(&variants[*v]), true, n, *v),
                    _ => return Err(unsupported("a union other than [null, T]")),
                }
            }
            other => (resolve(other), false, 0, 0),
        };
        let node = match &inner {
            Schema::Record(nested) => Node::Record {
                name: nested.name.fullname(None),
                nullable,
                null_branch,
                value_branch,
                children: record_nodes(file, nested, &path, names, leaves)?,
            },
            other => {
                let ty =
                    leaf_type(other, &resolve).ok_or_else(|| unsupported(&format!("{other:?}")))?;
                leaves.push(Leaf {
                    path: path.clone(),
                    ty,
                    nullable,
                    null_branch,
                    value_branch,
                    default: field.default.clone(),
                });
                Node::Leaf(leaves.len() - 1)
            }
        };
        out.push((field.name.clone(), node));
    }
    Ok(out)
}

fn leaf_type(schema: &Schema, resolve: &dyn Fn(&Schema) -> Schema) -> Option<LeafType> {
    Some(match schema {
        Schema::Boolean => LeafType::Boolean,
        Schema::Int => LeafType::Int,
        Schema::Long => LeafType::Long,
        Schema::TimestampMillis => LeafType::TimestampMillis,
        Schema::Float => LeafType::Float,
        Schema::Double => LeafType::Double,
        Schema::String => LeafType::String,
        Schema::Enum(e) => LeafType::Enum(e.symbols.clone()),
        Schema::Array(a) => {
            let item = leaf_type(&resolve(&a.items), resolve)?;
            if matches!(item, LeafType::Array(_)) {
                return None;
            }
            LeafType::Array(Box::new(item))
        }
        Schema::Ref { .. } => return leaf_type(&resolve(schema), &|s| s.clone()),
        _ => return None,
    })
}

/// A record's payload as JSON: Avro single-object or Confluent framing by
/// its schema header, or JSON as it is (blacklist entries).
pub fn decode_payload(
    schemas: &SchemaSet,
    headers: &std::collections::BTreeMap<String, String>,
    payload: &[u8],
) -> Result<serde_json::Value, String> {
    match headers.get("duijie-schema") {
        Some(name)
            if headers
                .get("content-type")
                .is_none_or(|c| !c.starts_with("application/json")) =>
        {
            let schema = schemas
                .get(name)
                .ok_or_else(|| format!("unknown schema `{name}`"))?;
            let value = if payload.first() == Some(&0) && payload.len() > 5 {
                let mut body = &payload[5..];
                apache_avro::reader::datum::GenericDatumReader::builder(&schema.avro)
                    .build()
                    .and_then(|r| r.read_value(&mut body))
                    .map_err(|e| e.to_string())?
            } else {
                schema.decode_single_object(payload)?
            };
            serde_json::Value::try_from(value).map_err(|e| e.to_string())
        }
        _ => serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> SchemaSet {
        SchemaSet::from_sources(vec![
            (
                "party.avsc".into(),
                r#"{"type":"record","name":"Party","namespace":"t","fields":[
                    {"name":"name","type":"string"},
                    {"name":"credit_code","type":["null","string"],"default":null}]}"#
                    .into(),
            ),
            (
                "case.avsc".into(),
                r#"{"type":"record","name":"Case","namespace":"t","fields":[
                    {"name":"id","type":"string"},
                    {"name":"party","type":["null","Party"],"default":null},
                    {"name":"other","type":["null","t.Party"],"default":null}]}"#
                    .into(),
            ),
        ])
        .unwrap()
    }

    #[test]
    fn references_across_files_are_inlined_and_flattened() {
        let s = set().get("Case").unwrap();
        let paths: Vec<_> = s.leaves.iter().map(|l| l.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "id",
                "party.name",
                "party.credit_code",
                "other.name",
                "other.credit_code"
            ]
        );
        assert!(s.json.contains("\"fields\""));
        assert_eq!(&s.single_object_header[..2], &[0xC3, 0x01]);
    }

    #[test]
    fn empty_nullable_record_renders_as_null() {
        let s = set().get("t.Case").unwrap();
        let values = vec![
            Val::Str("x".into()),
            Val::Str("甲公司".into()),
            Val::Null,
            Val::Null,
            Val::Null,
        ];
        assert_eq!(
            s.to_json(&values),
            serde_json::json!({"id":"x","party":{"name":"甲公司","credit_code":null},"other":null})
        );
    }
}
