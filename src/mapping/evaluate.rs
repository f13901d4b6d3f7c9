//! Applying a compiled mapping to one payload: the rules in evaluation
//! order, each rule's steps in the order [`super::plan::Rule`] gives.

use super::*;

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
        let mut inputs: Vec<Val<'a>> = nulls(self.trie.paths.len());
        match self.format {
            PayloadFormat::Json => json_read::read(&self.trie, payload, &mut inputs),
            PayloadFormat::Xml => xml_read::read(&self.trie, payload, self.encoding, &mut inputs),
        }
        .map_err(|reason| Reject {
            field: None,
            rule: "parse",
            reason,
        })?;
        let mut out: Vec<Val<'a>> = nulls(self.schema.leaves.len());
        for (leaf, v) in &self.defaults {
            out[*leaf] = v.clone();
        }
        let mut flags: Vec<Val<'a>> = Vec::new();
        for rule in &self.rules {
            let v = self.eval(rule, &inputs, &out, &mut flags, now_ms)?;
            Val::put(&mut out[rule.leaf], v);
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

    pub(super) fn eval<'a>(
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
        // (`as_text` only when there is a mask: it writes numbers out.)
        if let Some(mask) = &rule.mask
            && let Some(t) = v.as_text()
        {
            v = Val::Str(Cow::Owned(mask.apply(&t)));
        }
        Ok(v)
    }

    /// The value of a rule whose condition holds, before default, required
    /// and mask.
    ///
    /// Long because the evaluator's hot path: one arm per rule kind in a
    /// single match, so that a record's fields are dispatched once each
    /// (issue 31 counts its instructions).
    pub(super) fn value<'a>(
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

        // Text clean-up: of the value, or of each text in a list (the
        // officers of a decision, its categories).
        match &mut v {
            Val::Str(s) => {
                if rule.cleans {
                    clean_text(rule, s);
                }
                if rule.empty_as_null && s.is_empty() {
                    v = Val::Null;
                }
            }
            Val::List(items) => {
                for item in items.iter_mut() {
                    if let Val::Str(s) = item
                        && rule.cleans
                    {
                        clean_text(rule, s);
                    }
                }
                if rule.empty_as_null {
                    items.retain(|i| !matches!(i, Val::Str(s) if s.is_empty()));
                }
            }
            _ => {}
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
                    UnknownCode::Null => Val::Null,
                },
            };
        }

        // Checks on the text.
        if let Some((leaf, at)) = rule.carries
            && let (Some(t), Some(part)) = (v.as_text(), out[leaf].as_text())
        {
            let held: String = t.chars().skip(at).take(part.chars().count()).collect();
            if held != part {
                return Err(reject(
                    "carries",
                    format!(
                        "`{t}` holds `{held}` at {at}, not its `{}` `{part}`",
                        self.schema.leaves[leaf].path
                    ),
                ));
            }
        }
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
            // What `convert` would give back unchanged, without the call (a
            // record's text and yes/no fields).
            Convert::To(Target::String) if matches!(v, Val::Str(_) | Val::Null) => v,
            Convert::To(Target::Boolean) if matches!(v, Val::Bool(_) | Val::Null) => v,
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

pub(super) fn borrow_val<'a>(v: &'a Val<'static>) -> Val<'a> {
    match v {
        Val::Str(s) => Val::Str(Cow::Borrowed(s.as_ref())),
        other => other.clone(),
    }
}

pub(super) fn cow_map<'a>(s: &mut Cow<'a, str>, f: impl for<'x> Fn(&'x str) -> Cow<'x, str>) {
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

pub(super) fn render<'a>(
    parts: &[Part],
    inputs: &[Val<'a>],
    out: &[Val<'a>],
    sep: Option<&str>,
) -> Val<'a> {
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

pub(super) fn operand<'v, 'a>(
    op: &Operand,
    inputs: &'v [Val<'a>],
    out: &'v [Val<'a>],
) -> &'v Val<'a> {
    match op {
        Operand::Input(i) => &inputs[*i],
        Operand::Output(i) => &out[*i],
    }
}

pub(super) fn eval_cond(cond: &Cond, inputs: &[Val<'_>], out: &[Val<'_>], now_ms: i64) -> bool {
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

pub(super) fn convert<'a>(v: Val<'a>, target: Target) -> Result<Val<'a>, String> {
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

pub(super) fn target_of(ty: &LeafType) -> Option<Target> {
    match ty {
        LeafType::Boolean => Some(Target::Boolean),
        LeafType::Int | LeafType::Long | LeafType::TimestampMillis => Some(Target::Long),
        LeafType::Float | LeafType::Double => Some(Target::Double),
        LeafType::String | LeafType::Enum(_) => Some(Target::String),
        LeafType::Array(_) => None,
    }
}

/// A rule's text clean-up (trim, spaces, half-width, case, replacements)
/// on one text.
fn clean_text(rule: &Rule, s: &mut Cow<'_, str>) {
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
    if !rule.replace.is_empty() && rule.replace.iter().any(|(k, _)| s.contains(k.as_str())) {
        let mut t = s.to_string();
        for (k, v) in &rule.replace {
            t = t.replace(k.as_str(), v);
        }
        *s = Cow::Owned(t);
    }
}

/// `n` nulls. (`vec![Val::Null; n]` clones the first into each slot, a
/// call a slot; this writes the tag alone.)
fn nulls<'a>(n: usize) -> Vec<Val<'a>> {
    let mut v = Vec::with_capacity(n);
    v.resize_with(n, || Val::Null);
    v
}
