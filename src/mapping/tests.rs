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
