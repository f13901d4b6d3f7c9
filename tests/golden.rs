//! Golden fixtures: every shipped mapping, and the engine fixture set that
//! exercises every rule kind (GBK XML, namespaces, full-width input, bad
//! dates, daylight-saving gaps, unknown codes, checks, masks, flags).

use crate::common::root;
use duijie::mapping::{MappingSet, golden};
use duijie::schema::SchemaSet;

fn run(mappings: &str, schemas: &str) {
    let schemas = SchemaSet::load_dir(&root().join(schemas)).unwrap();
    let set =
        MappingSet::load_dir(&root().join(mappings), &schemas).unwrap_or_else(|e| panic!("{e:#?}"));
    let results = golden::run_all(
        &set,
        &root().join(mappings).join("tests"),
        None,
        &golden::Bless::Nothing,
    );
    let failures: Vec<String> = results
        .iter()
        .filter(|r| !r.diff.is_empty())
        .map(|r| format!("{} / {}:\n{}", r.mapping, r.case, r.diff.join("\n")))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(!results.is_empty());
}

#[test]
fn shipped_mappings_match_their_fixtures() {
    run("mappings", "schemas");
}

/// The benchmark's pinned copy of the workload mapping still does what
/// `benches/workload/WORKLOAD.md` specifies, so the benchmark and the peer
/// tools measure the same work.
#[test]
fn the_benchmark_workload_mapping_matches_its_fixtures() {
    run("benches/workload/mappings", "benches/workload/schemas");
}

#[test]
fn engine_fixtures_cover_every_rule_kind() {
    run(
        "tests/fixtures/engine/mappings",
        "tests/fixtures/engine/schemas",
    );
}

#[test]
fn a_changed_expectation_is_reported_as_a_field_diff() {
    let dir = tempfile::tempdir().unwrap();
    let src = root().join("mappings");
    // Copy the urban mapping with one expected value altered.
    std::fs::create_dir_all(dir.path().join("codes")).unwrap();
    std::fs::create_dir_all(dir.path().join("tests/urban_case")).unwrap();
    for f in [
        "urban_case.yaml",
        "codes/urban_event_source.yaml",
        "codes/urban_case_state.yaml",
        "codes/urban_category_kind.yaml",
        "codes/urban_category.yaml",
        "codes/power_urban_category.yaml",
        "codes/power_list.yaml",
    ] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let case = src.join("tests/urban_case/02_edge_cases");
    std::fs::copy(
        case.with_extension("input.jsonl"),
        dir.path().join("tests/urban_case/x.input.jsonl"),
    )
    .unwrap();
    let rejects = std::fs::read_to_string(case.with_extension("rejects.jsonl")).unwrap();
    std::fs::write(dir.path().join("tests/urban_case/x.rejects.jsonl"), rejects).unwrap();
    let expected = std::fs::read_to_string(case.with_extension("expected.jsonl"))
        .unwrap()
        .replacen("\"HOTLINE\"", "\"VIDEO\"", 1);
    std::fs::write(
        dir.path().join("tests/urban_case/x.expected.jsonl"),
        expected,
    )
    .unwrap();
    let schemas = SchemaSet::load_dir(&root().join("schemas")).unwrap();
    let set = MappingSet::load_dir(dir.path(), &schemas).unwrap();
    let results = golden::run_all(
        &set,
        &dir.path().join("tests"),
        None,
        &golden::Bless::Nothing,
    );
    let diff = results[0].diff.join("\n");
    assert!(diff.contains("record 1:"), "{diff}");
    assert!(
        diff.contains("channel:\n    - \"VIDEO\"\n    + \"HOTLINE\""),
        "{diff}"
    );
}

/// The power list is effective-dated (权责清单, "成熟一个，纳入一个"): the
/// muck-truck item was taken on on 2026-07-01, so a muck-truck alarm of
/// the day before is outside the bureau's powers (no item, no team, not
/// enforcement) and one of that day falls under the item and its team.
/// An alarm of a type no item covers (a crowd) is outside them whatever
/// its date.
#[test]
fn an_item_taken_on_on_a_date_maps_earlier_and_later_alarms_differently() {
    let schemas = SchemaSet::load_dir(&root().join("schemas")).unwrap();
    let set = MappingSet::load_dir(&root().join("mappings"), &schemas).unwrap();
    let mapping = set.get("video_alarm").unwrap();
    let alarm = |event: &str, at: &str| {
        let payload = serde_json::json!({
            "alarmId": format!("PA{}", at.replace([' ', ':', '-'], "")),
            "deviceId": "42050200001320000017",
            "location": {"gridCode": "42050200100301"},
            "eventType": event,
            "confidence": 0.9,
            "alarmTime": at,
        });
        let bytes = serde_json::to_vec(&payload).unwrap();
        let mapped = mapping.map(&bytes).unwrap();
        mapping.to_json(&mapped)
    };
    let before = alarm("1004", "2026-06-30 23:59:59");
    assert_eq!(before["power_item"], serde_json::Value::Null, "{before}");
    assert_eq!(before["power_team"], serde_json::Value::Null);
    assert_eq!(before["enforcement"], false);
    let on = alarm("1004", "2026-07-01 00:00:00");
    assert_eq!(on["power_item"], "XZCF-ZT-0001", "{on}");
    assert_eq!(on["power_team"], "渣土运输执法中队");
    assert_eq!(on["enforcement"], true);
    let vending = alarm("1001", "2026-06-30 12:00:00");
    assert_eq!(vending["power_item"], "XZCF-SR-0001");
    assert_eq!(vending["power_team"], "市容环境执法大队");
    let crowd = alarm("2001", "2026-12-01 12:00:00");
    assert_eq!(crowd["power_item"], serde_json::Value::Null);
    assert_eq!(crowd["enforcement"], false);
}
