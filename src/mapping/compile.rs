//! Compiling a mapping file: paths into one trie, code tables and formats
//! resolved, every rule checked against the target schema, rules ordered by
//! their dependencies.

use super::*;

pub(super) struct Compiler<'c> {
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
    pub(super) fn new(
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

    pub(super) fn error(
        &mut self,
        line: Option<u64>,
        rule: Option<&str>,
        message: impl Into<String>,
    ) {
        self.errors.push(LoadError {
            file: self.file.to_path_buf(),
            line,
            rule: rule.map(str::to_owned),
            message: message.into(),
        });
    }

    pub(super) fn path(&mut self, line: Option<u64>, rule: &str, text: &str) -> Option<usize> {
        match parse_path(text, &self.namespaces).and_then(|p| self.trie.add(p)) {
            Ok(slot) => Some(slot),
            Err(e) => {
                self.error(line, Some(rule), e);
                None
            }
        }
    }

    pub(super) fn regex(
        &mut self,
        line: Option<u64>,
        rule: &str,
        pattern: &str,
    ) -> Option<Pattern> {
        match Pattern::new(pattern) {
            Ok(r) => Some(r),
            Err(e) => {
                self.error(line, Some(rule), format!("invalid regex `{pattern}`: {e}"));
                None
            }
        }
    }

    /// Long because a mapping file's parts checked in order (schema, key,
    /// source id, fields, conditions, leads), every error collected with
    /// its line, so that one pass reports every problem of the file.
    pub(super) fn compile(mut self, spec: MappingSpec) -> Result<Mapping, Vec<LoadError>> {
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

    /// Long because one arm per rule kind of the mapping language, each
    /// checking its own settings against the schema's field; the arms read
    /// best side by side, and apart they would each take the same dozen
    /// arguments.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn compile_rule(
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
                            TemplatePart::Field(f) => Part::Output(output_ref(self, &f, deps)?),
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

        let carries = r
            .carries
            .as_ref()
            .and_then(|c| output_ref(self, &c.field, deps).map(|l| (l, c.at)));

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
        // A code table may give a yes/no field its value (a column such as
        // `urban_category.enforcement`) when every value it can give is one.
        if let (Some(c), LeafType::Boolean, None) = (&codes, &leaf_ty, &derived) {
            for v in c.table.values().chain(c.default.iter()) {
                if super::evaluate::convert(Val::Str(v.as_str().into()), Target::Boolean).is_err() {
                    self.error(
                        line,
                        Some(field),
                        format!(
                            "code value `{v}` of `{}` is not a yes/no value for a boolean field",
                            c.table.name
                        ),
                    );
                }
            }
        }
        if (codes.is_some() || r.mask.is_some() || r.template.is_some())
            && !matches!(leaf_ty, LeafType::String | LeafType::Enum(_))
            && !(codes.is_some()
                && matches!(leaf_ty, LeafType::Boolean)
                && r.mask.is_none()
                && r.template.is_none())
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
            cleans: r.trim
                || r.remove_spaces
                || r.halfwidth
                || r.case.is_some()
                || r.replace.as_ref().is_some_and(|m| !m.is_empty()),
            empty_as_null: r.empty_as_null,
            codes,
            regex,
            length,
            check,
            carries,
            derived,
            convert,
            enum_symbols,
            default,
            required: r.required,
            mask,
        })
    }

    pub(super) fn condition(
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
pub(super) fn topo_order(leaves: &[usize], deps: &[Vec<usize>]) -> Result<Vec<usize>, usize> {
    let index_of: HashMap<usize, usize> = leaves.iter().enumerate().map(|(i, l)| (*l, i)).collect();
    let mut state = vec![0u8; leaves.len()]; // 0 new, 1 visiting, 2 done
    let mut order = Vec::with_capacity(leaves.len());
    pub(super) fn visit(
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

pub(super) enum TemplatePart {
    Lit(String),
    /// `{path}`: an input path.
    Path(String),
    /// `{=field}`: an output field, as its own rules made it (cleaned,
    /// coded), so a key reads the value the record carries.
    Field(String),
}

pub(super) fn parse_template(t: &str) -> Result<Vec<TemplatePart>, String> {
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
                let path = path.trim();
                parts.push(match path.strip_prefix('=') {
                    Some(field) => TemplatePart::Field(field.trim().to_owned()),
                    None => TemplatePart::Path(path.to_owned()),
                });
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

pub(super) fn json_to_val(v: &serde_json::Value) -> Result<Val<'static>, String> {
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

pub(super) fn convert_const(v: Val<'static>, ty: &LeafType) -> Result<Val<'static>, String> {
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
