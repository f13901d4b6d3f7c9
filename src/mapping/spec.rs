//! The YAML form of a mapping file, as written by integration engineers.
//! Every rule keeps its position so load errors can name the line.

use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

/// A mapping file: one source record kind to one canonical schema.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MappingSpec {
    /// Version of this mapping, carried in every record's provenance.
    pub version: Spanned<u32>,
    /// Name of the mapping; defaults to the file name without `.yaml`.
    #[serde(default)]
    pub name: Option<String>,
    /// Avro full name (or unambiguous short name) of the target schema.
    pub schema: Spanned<String>,
    /// Payload format: `json` or `xml`.
    pub format: Spanned<PayloadFormatSpec>,
    /// Source system this mapping reads (`digital_urban`, `grid`, …).
    pub system: String,
    /// Path of the source's own record id (provenance header).
    pub source_id: Spanned<String>,
    /// Output field used as the Kafka key (the deterministic record id).
    #[serde(default = "default_key")]
    pub key: Spanned<String>,
    /// XML: namespace prefixes used in paths.
    #[serde(default)]
    pub namespaces: BTreeMap<String, String>,
    /// XML: encoding when the payload has no BOM and no declaration.
    #[serde(default)]
    pub encoding: Option<Spanned<String>>,
    /// Default source time zone of date-time rules (Asia/Shanghai).
    #[serde(default)]
    pub zone: Option<Spanned<String>>,
    /// Code tables defined inside this file, by name.
    #[serde(default)]
    pub codes: BTreeMap<String, Spanned<BTreeMap<String, String>>>,
    /// The output field (a timestamp) that is the record's own time: a code
    /// table with dated entries maps with the entry valid then. Required
    /// when a table the mapping uses has dated entries.
    #[serde(default)]
    pub effective_at: Option<Spanned<String>>,
    /// The field rules, evaluated in dependency order.
    pub fields: Vec<Spanned<FieldSpec>>,
}

fn default_key() -> Spanned<String> {
    Spanned::new(
        "id".to_owned(),
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PayloadFormatSpec {
    Json,
    Xml,
}

/// One output field and how it is filled.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FieldSpec {
    /// Output field (dotted for a nested record: `party.name`).
    pub field: String,

    // --- where the value comes from (exactly one) ---
    /// A path into the payload.
    #[serde(default)]
    pub path: Option<String>,
    /// The first of these paths that has a value.
    #[serde(default)]
    pub first_of: Option<Vec<String>>,
    /// A constant.
    #[serde(default, rename = "const")]
    pub constant: Option<serde_json::Value>,
    /// Text with `{path}` placeholders; `{{` and `}}` for braces.
    #[serde(default)]
    pub template: Option<String>,
    /// Parts joined by `separator`; empty parts are skipped.
    #[serde(default)]
    pub concat: Option<Vec<ConcatPart>>,
    #[serde(default)]
    pub separator: Option<String>,
    /// Another output field, after its own rule ran.
    #[serde(default)]
    pub from: Option<String>,

    /// Only fill the field when this holds; otherwise it is null.
    #[serde(default)]
    pub when: Option<ConditionSpec>,

    // --- text clean-up, in this order ---
    /// Trim white space at both ends, including the ideographic space.
    #[serde(default)]
    pub trim: bool,
    /// Remove white space anywhere.
    #[serde(default)]
    pub remove_spaces: bool,
    /// Full-width ASCII to half-width.
    #[serde(default)]
    pub halfwidth: bool,
    /// `upper` or `lower`.
    #[serde(default)]
    pub case: Option<CaseSpec>,
    /// Replace text: each key by its value (`{ "【": "〔", "】": "〕" }`),
    /// longest key first.
    #[serde(default)]
    pub replace: Option<BTreeMap<String, String>>,
    /// An empty string counts as no value.
    #[serde(default)]
    pub empty_as_null: bool,

    /// Translate through a code table.
    #[serde(default)]
    pub codes: Option<CodesSpec>,

    // --- checks on the text (a failure rejects the record) ---
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub length: Option<LengthSpec>,
    /// `uscc`, `resident_id` or `component_id`, or `{ validator, on_fail:
    /// reject | flag }`.
    #[serde(default)]
    pub check: Option<CheckSpec>,
    /// The text holds another output field's value at a character offset
    /// (`{ field: category_code, at: 6 }`: a component id carries its class
    /// and subclass); when both have a value and it does not, the record is
    /// rejected.
    #[serde(default)]
    pub carries: Option<CarriesSpec>,

    // --- derived booleans (null stays null) ---
    #[serde(default, rename = "in")]
    pub in_set: Option<Vec<String>>,
    #[serde(default)]
    pub matches: Option<String>,
    /// Whether the value is a valid `uscc` / `resident_id`.
    #[serde(default)]
    pub valid: Option<crate::ident::IdKind>,

    // --- conversion ---
    /// `string`, `int`, `long`, `double` or `boolean`; by default the
    /// schema's type.
    #[serde(default, rename = "type")]
    pub convert: Option<TypeSpec>,
    /// Parse as a date-time to UTC epoch milliseconds.
    #[serde(default)]
    pub datetime: Option<DateTimeSpec>,

    /// Used when the value is still null.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// Reject the record when the value is null.
    #[serde(default)]
    pub required: bool,
    /// Mask for publication: `birth_date` or `{ keep_start, keep_end, with }`.
    #[serde(default)]
    pub mask: Option<MaskSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConcatPart {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default, rename = "const")]
    pub constant: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum CaseSpec {
    Upper,
    Lower,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TypeSpec {
    String,
    Int,
    Long,
    Double,
    Boolean,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodesSpec {
    /// A table in `mappings/codes/<table>.yaml` or in this file's `codes`.
    #[serde(default)]
    pub table: Option<String>,
    /// An inline table.
    #[serde(default)]
    pub map: Option<BTreeMap<String, String>>,
    /// What an unknown code does: `reject` (default), `default`, `pass`,
    /// `null` (the field has no value; its `required` still applies).
    #[serde(default)]
    pub unknown: UnknownCode,
    /// The value for unknown codes when `unknown: default`.
    #[serde(default)]
    pub default: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum UnknownCode {
    #[default]
    Reject,
    Default,
    Pass,
    Null,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum LengthSpec {
    Exact(usize),
    Range {
        #[serde(default)]
        min: Option<usize>,
        #[serde(default)]
        max: Option<usize>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CarriesSpec {
    pub field: String,
    /// Offset in characters, from 0.
    pub at: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum CheckSpec {
    Short(crate::ident::IdKind),
    Full {
        validator: crate::ident::IdKind,
        #[serde(default)]
        on_fail: OnFail,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OnFail {
    #[default]
    Reject,
    /// Keep the record and note the failure in the record's `flags`.
    Flag,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum DateTimeSpec {
    One(String),
    Many(Vec<String>),
    Full {
        formats: Vec<String>,
        #[serde(default)]
        zone: Option<String>,
        /// A date without a time means the end of that day (24:00, the next
        /// day's 00:00 local), as deadlines do.
        #[serde(default)]
        end_of_day: bool,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum MaskSpec {
    Named(String),
    Policy(crate::ident::MaskPolicy),
}

/// A condition: a test on a path or field, or a combination.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConditionSpec {
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default, rename = "in")]
    pub in_set: Option<Vec<String>>,
    #[serde(default)]
    pub eq: Option<String>,
    #[serde(default)]
    pub present: Option<bool>,
    #[serde(default)]
    pub matches: Option<String>,
    /// The value (epoch milliseconds) is before the time the record was
    /// fetched (`true`), or not (`false`).
    #[serde(default)]
    pub past: Option<bool>,
    #[serde(default)]
    pub all: Option<Vec<ConditionSpec>>,
    #[serde(default)]
    pub any: Option<Vec<ConditionSpec>>,
    #[serde(default)]
    pub not: Option<Box<ConditionSpec>>,
}

/// A code table file under `mappings/codes/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CodeTableFile {
    /// What the codes are (`案件来源`).
    #[serde(default)]
    pub description: Option<String>,
    /// The table's version, carried in provenance (default: a hash of the
    /// file's content, so any edit shows).
    #[serde(default)]
    pub version: Option<String>,
    /// A table of rows: each code gives one value per column, and each
    /// column is a table of its own, `<file>.<column>` (`urban_category.name`,
    /// `urban_category.enforcement`), all with the file's version.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Source code → canonical value, or dated values; with `columns`, a
    /// row or dated rows.
    pub codes: BTreeMap<String, CodeEntry>,
}

/// One code: a value always valid, or values each valid for a period; in a
/// table with columns, a row (`{ name: 占道经营, enforcement: true }`) or
/// rows each valid for a period (`valid_from`, `valid_to` beside the
/// columns).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum CodeEntry {
    Plain(String),
    Dated(Vec<DatedEntry>),
    Row(BTreeMap<String, Scalar>),
    DatedRows(Vec<BTreeMap<String, Scalar>>),
}

/// A cell of a code table row: text, a number or a boolean, kept as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Scalar {
    Text(String),
    Bool(bool),
    Int(i64),
}

impl Scalar {
    pub(crate) fn into_text(self) -> String {
        match self {
            Scalar::Text(t) => t,
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
        }
    }
}

/// A value valid from a day to a day (inclusive, local dates `YYYY-MM-DD`;
/// either end may be open).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DatedEntry {
    pub value: String,
    #[serde(default)]
    pub valid_from: Option<String>,
    #[serde(default)]
    pub valid_to: Option<String>,
}
