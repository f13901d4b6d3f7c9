//! The plan of a compiled mapping: what each output field's rule does, in
//! the order its steps run (see [`Rule`]), and the code tables it uses.

use super::*;

/// A code table: source code → canonical value. Government code tables
/// change on a date; an entry may carry values each valid for a period,
/// and a record maps with the value valid at its own time.
/// A map looked up on every record: foldhash, seeded at random per
/// process (a sender cannot choose codes that collide), a third of
/// SipHash's instructions on short codes.
pub(super) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
pub struct CodeTable {
    pub name: String,
    pub codes: FastMap<String, String>,
    /// Code → its values with their validity, in file order.
    pub dated: FastMap<String, Vec<DatedValue>>,
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
pub(super) enum Lookup<'t> {
    Value(&'t str),
    /// The code is in the table, but no value is valid then.
    NotValid(String),
    Unknown,
}

impl CodeTable {
    pub(super) fn inline(name: String, codes: HashMap<String, String>) -> Self {
        Self {
            name,
            codes: codes.into_iter().collect(),
            version: "inline".into(),
            ..Self::default()
        }
    }

    pub(super) fn lookup(&self, code: &str, at_ms: i64) -> Lookup<'_> {
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
    pub(super) fn values(&self) -> impl Iterator<Item = &String> {
        self.codes
            .values()
            .chain(self.dated.values().flatten().map(|d| &d.value))
    }
}

#[derive(Debug, Clone)]
pub(super) enum SourceExpr {
    Path(usize),
    FirstOf(Vec<usize>),
    Const(Val<'static>),
    Template(Vec<Part>),
    Concat(Vec<Part>, String),
    Field(usize),
    Nothing,
}

#[derive(Debug, Clone)]
pub(super) enum Part {
    Lit(String),
    Input(usize),
    Output(usize),
}

#[derive(Debug, Clone)]
pub(super) enum StrSet {
    Small(Vec<String>),
    Large(HashSet<String, foldhash::fast::RandomState>),
}

impl StrSet {
    pub(super) fn new(items: Vec<String>) -> Self {
        if items.len() <= 16 {
            StrSet::Small(items)
        } else {
            StrSet::Large(items.into_iter().collect())
        }
    }

    pub(super) fn contains(&self, s: &str) -> bool {
        match self {
            StrSet::Small(v) => v.iter().any(|x| x == s),
            StrSet::Large(h) => h.contains(s),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) enum Operand {
    Input(usize),
    Output(usize),
}

#[derive(Debug, Clone)]
pub(super) enum Cond {
    In(Operand, StrSet),
    Eq(Operand, String),
    Present(Operand, bool),
    Matches(Operand, Pattern),
    Past(Operand, bool),
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
}

#[derive(Debug, Clone)]
pub(super) enum Derived {
    In(StrSet),
    Matches(Pattern),
    Valid(IdKind),
}

#[derive(Debug, Clone)]
pub(super) struct CodeUse {
    pub(super) table: Arc<CodeTable>,
    pub(super) unknown: UnknownCode,
    pub(super) default: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    String,
    Long,
    Double,
    Boolean,
}

#[derive(Debug, Clone)]
pub(super) enum Convert {
    None,
    To(Target),
    DateTime(DateTimeRule),
    /// Each item of a list (or a lone scalar, as a one-item list).
    Items(Target),
}

/// One output field's rule. Its steps run in this order, and only this
/// one (`evaluate.rs`, `Mapping::apply` and `Mapping::value`):
/// 1. `when`: a rule whose condition does not hold gives null (and its
///    `required` does not apply);
/// 2. the source (`path`, `first_of`, `const`, `template`, `concat`,
///    `from` another output field);
/// 3. text clean-up: `trim`, `remove_spaces`, `halfwidth`, `case`,
///    `replace`, then `empty_as_null`;
/// 4. `codes` (a table, with its unknown-code policy);
/// 5. checks on the text: `regex`, `length`, `check` (`on_fail: reject` or
///    `flag`), `carries`;
/// 6. a derived boolean (`in`, `matches`, `valid`);
/// 7. conversion to the schema's type (`type`, `datetime`, list items);
/// 8. `default` for a null value;
/// 9. `required`;
/// 10. the schema's enum symbols;
/// 11. `mask`.
///
/// Rules themselves run in dependency order (a `from` or a condition on an
/// output field after that field's rule), computed once at compile time.
#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub(super) field: String,
    pub(super) leaf: usize,
    pub(super) when: Option<Cond>,
    pub(super) source: SourceExpr,
    pub(super) trim: bool,
    pub(super) remove_spaces: bool,
    pub(super) halfwidth: bool,
    pub(super) case: Option<CaseSpec>,
    /// Replacements, longest key first.
    pub(super) replace: Vec<(String, String)>,
    /// Any of the clean-ups above (a rule without one skips them).
    pub(super) cleans: bool,
    pub(super) empty_as_null: bool,
    pub(super) codes: Option<CodeUse>,
    pub(super) regex: Option<Pattern>,
    pub(super) length: Option<(usize, usize)>,
    pub(super) check: Option<(IdKind, OnFail)>,
    /// Another output field's value this text holds at a character offset.
    pub(super) carries: Option<(usize, usize)>,
    pub(super) derived: Option<Derived>,
    pub(super) convert: Convert,
    pub(super) enum_symbols: Option<Vec<String>>,
    pub(super) default: Option<Val<'static>>,
    pub(super) required: bool,
    pub(super) mask: Option<MaskPolicy>,
}
