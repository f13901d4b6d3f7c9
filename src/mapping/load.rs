//! Loading mapping files and code tables from a directory, with every error
//! named by file, line and rule.

use super::*;

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

pub(super) fn list_yaml(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn load_code_tables(
    dir: &Path,
    errors: &mut Vec<LoadError>,
) -> HashMap<String, Arc<CodeTable>> {
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
                let mut fail = |message: String| {
                    errors.push(LoadError {
                        file: file.clone(),
                        line: None,
                        rule: None,
                        message,
                    })
                };
                match t.columns {
                    None => {
                        let table = plain_table(name.clone(), version, t.codes, &mut fail);
                        tables.insert(name, Arc::new(table));
                    }
                    Some(columns) => {
                        for table in column_tables(&name, &version, &columns, t.codes, &mut fail) {
                            tables.insert(table.name.clone(), Arc::new(table));
                        }
                    }
                }
            }
            Err(e) => errors.push(yaml_error(&file, &e)),
        }
    }
    tables
}

/// A code table with columns (`codes/<name>.yaml` with `columns`), read
/// row by row as of a time: for a page that lists the table (the desk's
/// power list, 权责清单).
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub name: String,
    pub version: String,
    /// Column name → its table (`<name>.<column>`).
    columns: BTreeMap<String, Arc<CodeTable>>,
}

/// One row of [`Rows`] as of a time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    pub code: String,
    pub values: BTreeMap<String, String>,
}

impl Rows {
    /// The table `name` of `dir/codes/`; an error names what is wrong
    /// (file, line), or says the table has no columns.
    pub fn load(dir: &Path, name: &str) -> Result<Self, String> {
        let mut errors = Vec::new();
        let tables = load_code_tables(&dir.join("codes"), &mut errors);
        if !errors.is_empty() {
            return Err(errors_text(&errors));
        }
        let prefix = format!("{name}.");
        let columns: BTreeMap<String, Arc<CodeTable>> = tables
            .into_iter()
            .filter_map(|(n, t)| Some((n.strip_prefix(&prefix)?.to_owned(), t)))
            .collect();
        let version = columns
            .values()
            .next()
            .map(|t| t.version.clone())
            .ok_or_else(|| {
                format!(
                    "{}: no code table `{name}` with columns",
                    dir.join("codes").display()
                )
            })?;
        Ok(Self {
            name: name.to_owned(),
            version,
            columns,
        })
    }

    pub fn has_column(&self, column: &str) -> bool {
        self.columns.contains_key(column)
    }

    /// The rows valid at `at_ms` (every column has a value then), by code.
    pub fn at(&self, at_ms: i64) -> Vec<Row> {
        let codes: std::collections::BTreeSet<&String> = self
            .columns
            .values()
            .flat_map(|t| t.codes.keys().chain(t.dated.keys()))
            .collect();
        codes
            .into_iter()
            .filter_map(|code| {
                let values = self
                    .columns
                    .iter()
                    .map(|(c, t)| match t.lookup(code, at_ms) {
                        Lookup::Value(v) => Some((c.clone(), v.to_owned())),
                        Lookup::NotValid(_) | Lookup::Unknown => None,
                    })
                    .collect::<Option<BTreeMap<_, _>>>()?;
                Some(Row {
                    code: code.clone(),
                    values,
                })
            })
            .collect()
    }
}

/// A table of one value a code.
fn plain_table(
    name: String,
    version: String,
    codes: BTreeMap<String, spec::CodeEntry>,
    fail: &mut dyn FnMut(String),
) -> CodeTable {
    let mut table = CodeTable {
        name,
        version,
        ..CodeTable::default()
    };
    for (code, entry) in codes {
        match entry {
            spec::CodeEntry::Plain(v) => {
                table.codes.insert(code, v);
            }
            spec::CodeEntry::Dated(values) => match dated_values(&code, values) {
                Ok(v) => {
                    table.dated.insert(code, v);
                }
                Err(message) => fail(message),
            },
            spec::CodeEntry::Row(_) | spec::CodeEntry::DatedRows(_) => fail(format!(
                "code `{code}`: a row of values needs the table's `columns` (or give one value, or `[{{ value, valid_from, valid_to }}]`)"
            )),
        }
    }
    table
}

/// The tables of a file with `columns`: one a column, named
/// `<file>.<column>`, each with the file's version.
fn column_tables(
    name: &str,
    version: &str,
    columns: &[String],
    codes: BTreeMap<String, spec::CodeEntry>,
    fail: &mut dyn FnMut(String),
) -> Vec<CodeTable> {
    const PERIOD: [&str; 2] = ["valid_from", "valid_to"];
    let mut tables: Vec<CodeTable> = columns
        .iter()
        .map(|c| CodeTable {
            name: format!("{name}.{c}"),
            version: version.to_owned(),
            ..CodeTable::default()
        })
        .collect();
    if let Some(c) = columns
        .iter()
        .find(|c| PERIOD.contains(&c.as_str()) || c.is_empty())
    {
        fail(format!("`{c}` cannot be a column's name"));
        return Vec::new();
    }
    // A row's cells in column order, or what is wrong with it.
    let cells =
        |code: &str, mut row: BTreeMap<String, spec::Scalar>| -> Result<Vec<String>, String> {
            let mut out = Vec::with_capacity(columns.len());
            for c in columns {
                match row.remove(c) {
                    Some(v) => out.push(v.into_text()),
                    None => return Err(format!("code `{code}`: no `{c}` (columns: {columns:?})")),
                }
            }
            match row.keys().find(|k| !PERIOD.contains(&k.as_str())) {
                Some(k) => Err(format!(
                    "code `{code}`: `{k}` is not a column (columns: {columns:?})"
                )),
                None => Ok(out),
            }
        };
    for (code, entry) in codes {
        match entry {
            spec::CodeEntry::Row(row) => match cells(&code, row) {
                Ok(values) => {
                    for (table, v) in tables.iter_mut().zip(values) {
                        table.codes.insert(code.clone(), v);
                    }
                }
                Err(m) => fail(m),
            },
            spec::CodeEntry::DatedRows(rows) => {
                let mut per_column: Vec<Vec<spec::DatedEntry>> = vec![Vec::new(); columns.len()];
                for mut row in rows {
                    let text = |v: Option<spec::Scalar>| v.map(spec::Scalar::into_text);
                    let (from, to) = (text(row.remove("valid_from")), text(row.remove("valid_to")));
                    match cells(&code, row) {
                        Ok(values) => {
                            for (entries, value) in per_column.iter_mut().zip(values) {
                                entries.push(spec::DatedEntry {
                                    value,
                                    valid_from: from.clone(),
                                    valid_to: to.clone(),
                                });
                            }
                        }
                        Err(m) => fail(m),
                    }
                }
                for (table, entries) in tables.iter_mut().zip(per_column) {
                    match dated_values(&code, entries) {
                        Ok(v) => {
                            table.dated.insert(code.clone(), v);
                        }
                        Err(m) => {
                            fail(m);
                            break;
                        }
                    }
                }
            }
            spec::CodeEntry::Plain(_) | spec::CodeEntry::Dated(_) => fail(format!(
                "code `{code}`: a table with `columns` gives each code a row ({{ {} }})",
                columns
                    .iter()
                    .map(|c| format!("{c}: …"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    tables
}

/// A code's dated values: days parsed (Asia/Shanghai), `valid_to`
/// inclusive, periods not overlapping.
pub(super) fn dated_values(
    code: &str,
    values: Vec<spec::DatedEntry>,
) -> Result<Vec<DatedValue>, String> {
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

pub(super) fn yaml_error(file: &Path, e: &serde_saphyr::Error) -> LoadError {
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

pub(super) fn line_of<T>(s: &Spanned<T>) -> Option<u64> {
    let l = s.referenced.line();
    if l > 0 { Some(l) } else { None }
}
