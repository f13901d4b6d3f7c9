//! Avro binary encoding of mapped records.
//!
//! The mapping engine produces values in the order of the schema's leaves,
//! already converted to the leaf types; encoding is then a single walk over
//! the compiled record tree, writing zig-zag varints, length-prefixed
//! strings and union branch indexes as the Avro specification lays them
//! out. apache-avro's own writer would first build a `Value::Record` with
//! owned field names for every record and look each field up by name; the
//! tests below check that both produce the same bytes.

use super::{CanonicalSchema, LeafType, Node, record_is_empty};
use crate::value::Val;

/// How a record is framed on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Avro single-object encoding: `C3 01`, the schema's CRC-64-AVRO
    /// fingerprint, then the datum. Needs no registry.
    SingleObject,
    /// Confluent wire format: `00`, the registry's schema id (big-endian
    /// u32), then the datum.
    Confluent { schema_id: u32 },
}

/// Writes records of one schema.
#[derive(Debug, Clone)]
pub struct RecordEncoder {
    encoding: Encoding,
}

/// A value did not fit its field; the mapping engine converts values
/// before encoding, so this signals a mapping the load-time checks missed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("field `{field}`: cannot write {found} as {expected}")]
pub struct EncodeError {
    pub field: String,
    pub expected: String,
    pub found: &'static str,
}

impl From<EncodeError> for crate::error::Error {
    fn from(e: EncodeError) -> Self {
        Self::new(
            crate::error::Domain::Mapping,
            crate::error::ErrorClass::Permanent,
            e,
        )
    }
}

impl RecordEncoder {
    pub fn new(encoding: Encoding) -> Self {
        Self { encoding }
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Appends the framed record to `out`.
    pub fn encode(
        &self,
        schema: &CanonicalSchema,
        values: &[Val<'_>],
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        match self.encoding {
            Encoding::SingleObject => out.extend_from_slice(&schema.single_object_header),
            Encoding::Confluent { schema_id } => {
                out.push(0);
                out.extend_from_slice(&schema_id.to_be_bytes());
            }
        }
        encode_datum(schema, values, out)
    }
}

/// Appends the bare Avro datum (no framing).
pub(super) fn encode_datum(
    schema: &CanonicalSchema,
    values: &[Val<'_>],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    write_fields(schema, &schema.tree, values, out)
}

/// A record's fields in order. A leaf is written in the loop (a call a
/// leaf had been a third of the encoding's instructions); only a nested
/// record calls again.
fn write_fields(
    schema: &CanonicalSchema,
    fields: &[(String, Node)],
    values: &[Val<'_>],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    for (_, node) in fields {
        match node {
            Node::Leaf(i) => {
                let leaf = &schema.leaves[*i];
                let value = &values[*i];
                if leaf.nullable {
                    if value.is_null() {
                        write_long(leaf.null_branch as i64, out);
                        continue;
                    }
                    write_long(leaf.value_branch as i64, out);
                }
                let written = match (&leaf.ty, value) {
                    (LeafType::Array(item), Val::List(items)) => write_array(item, items, out),
                    (ty, value) => write_scalar(ty, value, out),
                };
                written.map_err(|found| EncodeError {
                    field: leaf.path.clone(),
                    expected: leaf.ty.describe(),
                    found,
                })?;
            }
            Node::Record {
                nullable,
                null_branch,
                value_branch,
                children,
                ..
            } => {
                if *nullable {
                    if record_is_empty(children, values) {
                        write_long(*null_branch as i64, out);
                        continue;
                    }
                    write_long(*value_branch as i64, out);
                }
                write_fields(schema, children, values, out)?;
            }
        }
    }
    Ok(())
}

/// An array: its items in one block, then the end of blocks.
fn write_array(item: &LeafType, items: &[Val<'_>], out: &mut Vec<u8>) -> Result<(), &'static str> {
    if !items.is_empty() {
        write_long(items.len() as i64, out);
        for v in items {
            match (item, v) {
                (LeafType::Array(inner), Val::List(inner_items)) => {
                    write_array(inner, inner_items, out)?
                }
                (ty, v) => write_scalar(ty, v, out)?,
            }
        }
    }
    out.push(0);
    Ok(())
}

/// A value that is not an array, as its type writes it.
#[inline(always)]
fn write_scalar(ty: &LeafType, value: &Val<'_>, out: &mut Vec<u8>) -> Result<(), &'static str> {
    match (ty, value) {
        (LeafType::Boolean, Val::Bool(b)) => out.push(u8::from(*b)),
        (LeafType::Int | LeafType::Long | LeafType::TimestampMillis, Val::Int(i)) => {
            write_long(*i, out)
        }
        (LeafType::Float, Val::Double(d)) => out.extend_from_slice(&(*d as f32).to_le_bytes()),
        (LeafType::Double, Val::Double(d)) => out.extend_from_slice(&d.to_le_bytes()),
        (LeafType::Float, Val::Int(i)) => out.extend_from_slice(&(*i as f32).to_le_bytes()),
        (LeafType::Double, Val::Int(i)) => out.extend_from_slice(&(*i as f64).to_le_bytes()),
        (LeafType::String, Val::Str(s)) => {
            write_long(s.len() as i64, out);
            out.extend_from_slice(s.as_bytes());
        }
        (LeafType::Enum(symbols), Val::Str(s)) => {
            let index = symbols
                .iter()
                .position(|sym| sym == s.as_ref())
                .ok_or("a value outside the enum's symbols")?;
            write_long(index as i64, out);
        }
        (_, v) => return Err(v.kind()),
    }
    Ok(())
}

/// Zig-zag varint, as Avro writes `int` and `long`.
#[inline]
fn write_long(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::SchemaSet;
    use apache_avro::types::Value as AvroValue;

    const SCHEMA: &str = r#"{"type":"record","name":"All","namespace":"t","fields":[
        {"name":"s","type":"string"},
        {"name":"ns","type":["null","string"]},
        {"name":"sn","type":["string","null"]},
        {"name":"l","type":"long"},
        {"name":"i","type":"int"},
        {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
        {"name":"d","type":["null","double"]},
        {"name":"b","type":"boolean"},
        {"name":"e","type":{"type":"enum","name":"Color","symbols":["RED","GREEN"]}},
        {"name":"a","type":{"type":"array","items":"string"}},
        {"name":"p","type":["null",{"type":"record","name":"P","fields":[{"name":"x","type":["null","string"]}]}]}
    ]}"#;

    fn schema() -> std::sync::Arc<CanonicalSchema> {
        SchemaSet::from_sources(vec![("all.avsc".into(), SCHEMA.into())])
            .unwrap()
            .get("All")
            .unwrap()
    }

    #[test]
    fn bytes_match_apache_avro_writer() {
        let schema = schema();
        let values = vec![
            Val::Str("宜昌".into()),
            Val::Null,
            Val::Str("x".into()),
            Val::Int(-1_234_567_890_123),
            Val::Int(42),
            Val::Int(1_764_000_000_000),
            Val::Double(111.28),
            Val::Bool(true),
            Val::Str("GREEN".into()),
            Val::List(vec![Val::Str("a".into()), Val::Str("b".into())]),
            Val::Null,
        ];
        let mut ours = Vec::new();
        encode_datum(&schema, &values, &mut ours).unwrap();
        let reference = AvroValue::Record(vec![
            ("s".into(), AvroValue::String("宜昌".into())),
            ("ns".into(), AvroValue::Union(0, Box::new(AvroValue::Null))),
            (
                "sn".into(),
                AvroValue::Union(0, Box::new(AvroValue::String("x".into()))),
            ),
            ("l".into(), AvroValue::Long(-1_234_567_890_123)),
            ("i".into(), AvroValue::Int(42)),
            ("ts".into(), AvroValue::TimestampMillis(1_764_000_000_000)),
            (
                "d".into(),
                AvroValue::Union(1, Box::new(AvroValue::Double(111.28))),
            ),
            ("b".into(), AvroValue::Boolean(true)),
            ("e".into(), AvroValue::Enum(1, "GREEN".into())),
            (
                "a".into(),
                AvroValue::Array(vec![
                    AvroValue::String("a".into()),
                    AvroValue::String("b".into()),
                ]),
            ),
            ("p".into(), AvroValue::Union(0, Box::new(AvroValue::Null))),
        ]);
        let expected = apache_avro::writer::datum::GenericDatumWriter::builder(&schema.avro)
            .build()
            .unwrap()
            .write_value_to_vec(reference)
            .unwrap();
        assert_eq!(ours, expected);
    }

    #[test]
    fn single_object_round_trips_through_apache_avro() {
        let schema = schema();
        let values = vec![
            Val::Str("s".into()),
            Val::Str("n".into()),
            Val::Null,
            Val::Int(0),
            Val::Int(-1),
            Val::Int(0),
            Val::Null,
            Val::Bool(false),
            Val::Str("RED".into()),
            Val::List(vec![]),
            Val::Str("px".into()),
        ];
        let mut out = Vec::new();
        RecordEncoder::new(Encoding::SingleObject)
            .encode(&schema, &values, &mut out)
            .unwrap();
        let decoded = schema.decode_single_object(&out).unwrap();
        let AvroValue::Record(fields) = decoded else {
            panic!("a record")
        };
        assert_eq!(
            fields[1].1,
            AvroValue::Union(1, Box::new(AvroValue::String("n".into())))
        );
        assert_eq!(fields[4].1, AvroValue::Int(-1));
        assert_eq!(
            fields[10].1,
            AvroValue::Union(
                1,
                Box::new(AvroValue::Record(vec![(
                    "x".into(),
                    AvroValue::Union(1, Box::new(AvroValue::String("px".into())))
                )]))
            )
        );
    }

    #[test]
    fn a_value_of_the_wrong_kind_names_the_field() {
        let schema = schema();
        let mut values = vec![Val::Null; schema.leaves.len()];
        values[0] = Val::Int(3);
        let err = encode_datum(&schema, &values, &mut Vec::new()).unwrap_err();
        assert_eq!(err.field, "s");
    }
}
