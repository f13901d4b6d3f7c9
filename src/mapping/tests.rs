//! Load-time checks of the mapping compiler: each mistake names the file,
//! the line and the rule.

use super::*;

const SCHEMA: &str = r#"{"type":"record","name":"Case","namespace":"t","fields":[
    {"name":"id","type":"string"},
    {"name":"no","type":["null","string"],"default":null},
    {"name":"n","type":["null","long"],"default":null},
    {"name":"at","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null},
    {"name":"ok","type":["null","boolean"],"default":null},
    {"name":"must","type":"string"}
]}"#;

fn compile(yaml: &str) -> Result<Mapping, Vec<LoadError>> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("case.yaml");
    std::fs::write(&file, yaml).unwrap();
    let schemas = SchemaSet::from_sources(vec![("case.avsc".into(), SCHEMA.into())]).unwrap();
    load_mapping_file(&file, &schemas, &HashMap::new()).map_err(|errors| {
        // Paths differ per temp dir; keep only the file name.
        errors
            .into_iter()
            .map(|mut e| {
                e.file = PathBuf::from("case.yaml");
                e
            })
            .collect()
    })
}

const HEAD: &str = "version: 1\nschema: Case\nformat: json\nsystem: s\nsource_id: no\nfields:\n";

fn errors_of(fields: &str) -> Vec<String> {
    compile(&format!("{HEAD}{fields}"))
        .map(|_| Vec::new())
        .unwrap_or_else(|e| e.iter().map(ToString::to_string).collect())
}

const BASE: &str =
    "  - field: id\n    template: \"x:{no}\"\n    required: true\n  - field: must\n    const: m\n";

#[test]
fn a_complete_mapping_compiles_and_maps() {
    let m = compile(&format!("{HEAD}{BASE}  - field: n\n    path: num\n")).unwrap();
    let mapped = m.map(br#"{"no":"7","num":"42"}"#).unwrap();
    assert_eq!(mapped.key, "x:7");
    assert_eq!(mapped.source_id.as_deref(), Some("7"));
    assert_eq!(mapped.values[2], Val::Int(42));
}

#[test]
fn unknown_output_field_names_its_line() {
    let errors = errors_of(&format!("{BASE}  - field: nmbr\n    path: num\n"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("case.yaml:12: field `nmbr`: is not a field of schema t.Case"),
        "{}",
        errors[0]
    );
}

#[test]
fn unknown_rule_key_is_a_yaml_error_with_line() {
    let errors = errors_of(&format!("{BASE}  - field: n\n    pth: num\n"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("case.yaml:13:"), "{}", errors[0]);
    assert!(errors[0].contains("pth"), "{}", errors[0]);
}

#[test]
fn bad_regex_bad_format_and_type_mismatch() {
    let errors = errors_of(&format!(
        "{BASE}  - field: no\n    path: no\n    regex: '([0-9]'\n  - field: at\n    path: t\n    datetime: 'yyyy-MM-dd hh'\n  - field: ok\n    path: x\n    datetime: yyyyMMdd\n"
    ));
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].starts_with("case.yaml:12: field `no`: invalid regex"),
        "{}",
        errors[0]
    );
    assert!(
        errors[1].starts_with("case.yaml:15: field `at`: format `yyyy-MM-dd hh`"),
        "{}",
        errors[1]
    );
    assert!(
        errors[2].starts_with("case.yaml:18: field `ok`: datetime gives epoch milliseconds"),
        "{}",
        errors[2]
    );
}

#[test]
fn required_schema_field_that_nothing_fills() {
    let errors = errors_of("  - field: id\n    template: \"x:{no}\"\n    required: true\n");
    assert_eq!(
        errors,
        vec!["case.yaml: field `must`: is required by schema t.Case but no rule fills it"]
    );
    let errors = errors_of(
        "  - field: id\n    template: \"x:{no}\"\n    required: true\n  - field: must\n    path: m\n",
    );
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("case.yaml:10: field `must`: is not nullable"),
        "{}",
        errors[0]
    );
}

#[test]
fn cycles_and_unknown_code_tables() {
    let errors = errors_of(&format!(
        "{BASE}  - field: no\n    from: n\n  - field: n\n    from: no\n  - field: ok\n    path: y\n    codes: {{ table: nowhere }}\n"
    ));
    assert!(errors.iter().any(|e| e.contains("cycle")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("code table `nowhere`")),
        "{errors:?}"
    );
}

#[test]
fn when_false_still_takes_the_default() {
    let m = compile(&format!(
        "{HEAD}  - field: id\n    template: \"x:{{no}}\"\n    required: true\n  - field: must\n    const: HIGH\n    when: {{ path: urgent, eq: \"1\" }}\n    default: NORMAL\n"
    ))
    .unwrap();
    let urgent = m.map(br#"{"no":"1","urgent":"1"}"#).unwrap();
    let calm = m.map(br#"{"no":"2","urgent":"0"}"#).unwrap();
    assert_eq!(urgent.values[5], Val::Str("HIGH".into()));
    assert_eq!(calm.values[5], Val::Str("NORMAL".into()));
}

#[test]
fn mapped_strings_borrow_from_the_payload() {
    let m = compile(&format!("{HEAD}{BASE}")).unwrap();
    let payload = br#"{"no":"YC1"}"#;
    let mapped = m.map(payload).unwrap();
    assert!(matches!(mapped.source_id, Some(Cow::Borrowed(_))));
}

/// `duijie mapping diff`'s comparison: per field, changed / gained / lost;
/// records that newly reject or newly pass, with the reason.
#[test]
fn a_diff_counts_changed_gained_and_lost_values_and_new_rejects_and_passes() {
    let before = compile(&format!(
        "{HEAD}{BASE}  - field: n\n    path: num\n  - field: ok\n    path: flag\n"
    ))
    .unwrap();
    // The edit: `num` must be at most 100 (rejects), `flag` no longer read
    // (lost), `no` now filled (gained), a stray space trimmed (changed).
    let after = compile(&format!(
        "version: 2\nschema: Case\nformat: json\nsystem: s\nsource_id: no\nfields:\n{BASE}  - field: n\n    path: num\n    regex: '^[0-9]{{1,2}}$'\n  - field: no\n    path: no\n    trim: true\n"
    ))
    .unwrap();
    let raw = |payload: &str, i: usize| {
        (
            duijie_connectors::RawRecord {
                payload: payload.as_bytes().to_vec().into(),
                format: duijie_connectors::PayloadFormat::Json,
                fetched_at_ms: 0,
                origin: format!("f.jsonl:{i}"),
            },
            format!("raw.p/0/{i}"),
        )
    };
    let records = [
        raw(r#"{"no":"1","num":"5","flag":true}"#, 1),
        raw(r#"{"no":"2","num":"500"}"#, 2),
        raw(r#"{"no":" 3","num":"7"}"#, 3),
        raw(r#"{"no":"4","num":"x"}"#, 4),
    ];
    let d = diff::diff(&before, &after, &records);
    assert_eq!(d.records, 4);
    assert_eq!((d.before_version, d.after_version), (1, 2));
    // Record 2 now rejects (regex); record 4 rejected before (num is not a
    // long) and still does.
    assert_eq!(d.newly_rejected_count, 1);
    assert_eq!(d.newly_rejected[0].at.raw, "raw.p/0/2");
    assert!(
        d.newly_rejected[0].reason.contains("regex")
            || d.newly_rejected[0].reason.contains("does not match"),
        "{:?}",
        d.newly_rejected
    );
    assert_eq!(d.still_rejected, 1);
    assert_eq!(d.records_changed, 2);
    let ok = &d.fields["ok"];
    assert_eq!((ok.changed, ok.gained, ok.lost), (0, 0, 1));
    let no = &d.fields["no"];
    assert_eq!((no.changed, no.gained, no.lost), (0, 2, 0));
    assert_eq!(no.examples[1].after, serde_json::json!("3"), "trimmed");
    assert!(d.changes_anything());
    assert!(!diff::diff(&before, &before, &records).changes_anything());
    let text = diff::report(&d, "case");
    assert!(
        text.contains("newly rejected") && text.contains("raw.p/0/2"),
        "{text}"
    );
    // And the other way round, the record newly passes.
    let back = diff::diff(&after, &before, &records);
    assert_eq!(back.newly_passing_count, 1);
}

/// Government code tables change on a date: a record maps with the value
/// valid at its own time (`effective_at`), and the table's version goes
/// into provenance.
#[test]
fn a_dated_code_maps_old_and_new_records_differently_at_their_own_time() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("codes")).unwrap();
    std::fs::write(
        dir.path().join("codes/kind.yaml"),
        "version: \"2026-07\"\ncodes:\n  \"01\": ALWAYS\n  \"05\":\n    - { value: OLD, valid_to: \"2026-06-30\" }\n    - { value: NEW, valid_from: \"2026-07-01\" }\n  \"09\":\n    - { value: GONE, valid_to: \"2025-12-31\" }\n",
    )
    .unwrap();
    let mut errors = Vec::new();
    let tables = load_code_tables(&dir.path().join("codes"), &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let schemas = SchemaSet::from_sources(vec![("case.avsc".into(), SCHEMA.into())]).unwrap();
    let compile_with = |extra: &str| {
        let file = dir.path().join("case.yaml");
        std::fs::write(
            &file,
            format!(
                "{HEAD}{BASE}  - field: at\n    path: t\n    datetime: {{ formats: [\"yyyy-MM-dd HH:mm\"], zone: Asia/Shanghai }}\n  - field: no\n    path: k\n    codes: {{ table: kind, unknown: reject }}\n"
            )
            .replacen("fields:\n", &format!("{extra}fields:\n"), 1),
        )
        .unwrap();
        load_mapping_file(&file, &schemas, &tables)
    };
    // Without `effective_at` a dated table is refused, naming the field.
    let refused = compile_with("").unwrap_err();
    assert!(
        refused[0].to_string().contains("set `effective_at`"),
        "{refused:?}"
    );
    let m = compile_with("effective_at: at\n").unwrap();
    assert_eq!(m.code_tables, "kind@2026-07");
    let map = |k: &str, t: &str| {
        let payload = format!(r#"{{"no":"1","k":"{k}","t":"{t}"}}"#);
        m.map_at(payload.as_bytes(), 0)
            .map(|r| m.to_json(&r)["no"].clone())
            .map_err(|e| e.reason)
    };
    // The last day of the old meaning, all of it, then the new one.
    assert_eq!(map("05", "2026-06-30 23:59").unwrap(), "OLD");
    assert_eq!(map("05", "2026-07-01 00:00").unwrap(), "NEW");
    assert_eq!(map("01", "2020-01-01 08:00").unwrap(), "ALWAYS");
    // A code whose only meaning expired: rejected with its periods.
    let why = map("09", "2026-03-01 08:00").unwrap_err();
    assert!(
        why.contains("no value valid on 2026-03-01") && why.contains("GONE"),
        "{why}"
    );
    assert_eq!(map("09", "2025-12-31 22:00").unwrap(), "GONE");
    // Overlapping periods are a load error.
    std::fs::write(
        dir.path().join("codes/kind.yaml"),
        "codes:\n  \"05\":\n    - { value: OLD, valid_to: \"2026-07-01\" }\n    - { value: NEW, valid_from: \"2026-07-01\" }\n",
    )
    .unwrap();
    let mut errors = Vec::new();
    load_code_tables(&dir.path().join("codes"), &mut errors);
    assert!(errors[0].message.contains("overlap"), "{errors:?}");
}

/// Code tables with columns (`urban_category.yaml`): each column is a
/// table of its own; a row that misses a column, names one the table does
/// not have or gives a bare value is refused with the code named.
#[test]
fn a_code_table_with_columns_gives_one_table_a_column_and_refuses_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cat.yaml"),
        "version: v1\ncolumns: [name, enforcement]\ncodes:\n  \"EVENT:0501\": { name: 占道经营, enforcement: true }\n  \"COMPONENT:0501\":\n    - { name: 旧名, enforcement: false, valid_to: 2026-03-31 }\n    - { name: 新名, enforcement: false, valid_from: 2026-04-01 }\n",
    )
    .unwrap();
    let mut errors = Vec::new();
    let tables = load_code_tables(dir.path(), &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    let (names, enforcement) = (&tables["cat.name"], &tables["cat.enforcement"]);
    assert_eq!(names.version, "v1");
    assert!(matches!(
        names.lookup("EVENT:0501", 0),
        Lookup::Value("占道经营")
    ));
    assert!(matches!(
        enforcement.lookup("EVENT:0501", 0),
        Lookup::Value("true")
    ));
    let day = |d: &str| {
        chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    };
    assert!(matches!(
        names.lookup("COMPONENT:0501", day("2026-03-01")),
        Lookup::Value("旧名")
    ));
    assert!(matches!(
        names.lookup("COMPONENT:0501", day("2026-05-01")),
        Lookup::Value("新名")
    ));
    assert!(!tables.contains_key("cat"));

    for (row, want) in [
        ("{ name: 占道经营 }", "code `EVENT:0501`: no `enforcement`"),
        (
            "{ name: 占道经营, enforcement: true, owner: x }",
            "code `EVENT:0501`: `owner` is not a column",
        ),
        (
            "占道经营",
            "code `EVENT:0501`: a table with `columns` gives each code a row",
        ),
    ] {
        std::fs::write(
            dir.path().join("cat.yaml"),
            format!("columns: [name, enforcement]\ncodes:\n  \"EVENT:0501\": {row}\n"),
        )
        .unwrap();
        let mut errors = Vec::new();
        load_code_tables(dir.path(), &mut errors);
        assert_eq!(errors.len(), 1, "{row}: {errors:?}");
        assert!(
            errors[0].message.starts_with(want),
            "{row}: {}",
            errors[0].message
        );
    }
}

/// The power list read row by row as of a day: an item taken on from
/// 2026-07-01 is absent on 30 June and present on 1 July (Asia/Shanghai),
/// with every column; a table without columns is an error naming it.
#[test]
fn the_power_list_rows_are_those_in_force_on_the_day() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    let rows = Rows::load(&dir, "power_list").unwrap();
    assert!(rows.has_column("team") && rows.has_column("basis"));
    let at = |d: &str| {
        chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_local_timezone(chrono_tz::Asia::Shanghai)
            .unwrap()
            .timestamp_millis()
    };
    let codes = |t: i64| -> Vec<String> { rows.at(t).into_iter().map(|r| r.code).collect() };
    let (june, july) = (codes(at("2026-07-01") - 1), codes(at("2026-07-01")));
    assert!(!june.contains(&"XZCF-ZT-0001".to_owned()), "{june:?}");
    assert!(july.contains(&"XZCF-ZT-0001".to_owned()), "{july:?}");
    assert_eq!(july.len(), june.len() + 1);
    let row = rows
        .at(at("2026-07-01"))
        .into_iter()
        .find(|r| r.code == "XZCF-ZT-0001")
        .unwrap();
    assert_eq!(row.values["team"], "渣土运输执法中队");
    assert_eq!(row.values["kind"], "行政处罚");
    let err = Rows::load(&dir, "no_such_table").unwrap_err();
    assert!(err.contains("no code table `no_such_table`"), "{err}");
}

/// `{=field}` in a template reads the output field as its rules made it
/// (trimmed, half-width, upper-cased), so a key built from it is the key
/// of the cleaned value whatever spacing or width the source sent; a field
/// the schema does not have is an error naming the line.
#[test]
fn a_template_reads_an_output_field_as_cleaned() {
    let m = compile(&format!(
        "{HEAD}  - field: no\n    path: no\n    trim: true\n    remove_spaces: true\n    halfwidth: true\n    case: upper\n  - field: id\n    template: \"x:{{=no}}\"\n    required: true\n  - field: must\n    const: m\n"
    ))
    .unwrap();
    for raw in [
        r#"{"no":"ab 12"}"#,
        r#"{"no":" ＡＢ１２ "}"#,
        r#"{"no":"AB12"}"#,
    ] {
        let mapped = m.map(raw.as_bytes()).unwrap();
        assert_eq!(mapped.key, "x:AB12", "{raw}");
    }
    let errors =
        errors_of("  - field: id\n    template: \"x:{=nope}\"\n  - field: must\n    const: m\n");
    assert!(errors.iter().any(|e| e.contains("nope")), "{errors:?}");
}
