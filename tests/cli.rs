//! The command line as an integration engineer uses it.

use crate::common::root;
use std::process::Command;

fn duijie(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_duijie"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn map_writes_every_field_and_numbered_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let (out, rej) = (dir.path().join("out.jsonl"), dir.path().join("rej.jsonl"));
    let (code, _, stderr) = duijie(&[
        "map",
        "--mapping",
        "urban_case",
        "--input",
        "mappings/tests/urban_case/02_edge_cases.input.jsonl",
        "--output",
        out.to_str().unwrap(),
        "--rejects",
        rej.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("3 record(s), 7 reject(s)"), "{stderr}");
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    // Every schema field is present, null where empty.
    let fields = crate::common::schemas()
        .get("UrbanCase")
        .unwrap()
        .tree
        .len();
    assert_eq!(records[1].as_object().unwrap().len(), fields);
    assert_eq!(records[1]["party_name"], serde_json::Value::Null);
    let rejects: Vec<serde_json::Value> = std::fs::read_to_string(&rej)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rejects[0]["line"], 2);
    assert_eq!(rejects[0]["rule"], "codes");
    assert!(
        rejects[0]["raw"]
            .as_str()
            .unwrap()
            .contains(r#""eventSrcId": "9""#)
    );
    assert_eq!(rejects[6]["line"], 10);
    assert_eq!(rejects[6]["raw"], "not json at all");
}

#[test]
fn validate_reports_each_value_and_exits_nonzero_on_any_invalid() {
    let (code, stdout, _) = duijie(&[
        "validate",
        "uscc",
        "９１３５０１００ｍ０００１００ｙ４３",
        "91350100M000100Y44",
    ]);
    assert_eq!(code, 1);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        "９１３５０１００ｍ０００１００ｙ４３\tvalid\t91350100M000100Y43"
    );
    assert_eq!(
        lines[1],
        "91350100M000100Y44\tinvalid\t91350100M000100Y44\tcheck character 18 is `4`, expected `3`"
    );
    let (code, stdout, _) = duijie(&["validate", "id", "11010519491231002x"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, "11010519491231002x\tvalid\t11010519491231002X\n");
    let (code, stdout, _) = duijie(&["validate", "id", "1101051949123100"]);
    assert_eq!(code, 1);
    assert!(stdout.contains("length is 16, expected 18"), "{stdout}");
}

#[test]
fn mapping_test_passes_on_the_shipped_mappings() {
    let (code, stdout, stderr) = duijie(&["mapping", "test"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("0 failed"), "{stdout}");
}

#[test]
fn check_passes_on_the_shipped_deployment() {
    let (code, stdout, stderr) = duijie(&["check"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("pipelines/yichang.toml: ok"), "{stdout}");
}

/// The README's main job: `duijie demo` on the embedded broker. Every
/// system delivers, every record fetched is on its topic or dead-lettered,
/// and the desk tracks the twenty sandbox referrals. And what left the hub
/// — every request the receivers got (headers and body), the pull feed,
/// receipts, alerts and push dead letters — holds no natural person's full
/// resident ID number: no destination of the demo is allowed one.
#[test]
fn the_demo_runs_every_system_and_accounts_for_every_record() {
    let capture = tempfile::NamedTempFile::new().unwrap();
    let capture_path = capture.path().display().to_string();
    let (code, stdout, stderr) = duijie(&["demo", "--seconds", "18", "--capture", &capture_path]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let captured = std::fs::read_to_string(capture.path()).unwrap();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    let mut people_masked = 0;
    for line in captured.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        *kinds
            .entry(v["kind"].as_str().unwrap().to_owned())
            .or_default() += 1;
        people_masked += line.matches("********").count();
        // Any 18-character run that is a valid resident ID number.
        let b = line.as_bytes();
        for i in 0..b.len().saturating_sub(17) {
            let run = &b[i..i + 18];
            if (i == 0 || !b[i - 1].is_ascii_digit())
                && run[..17].iter().all(u8::is_ascii_digit)
                && (run[17].is_ascii_digit() || run[17] == b'X')
                && b.get(i + 18).is_none_or(|c| !c.is_ascii_digit())
            {
                let id = std::str::from_utf8(run).unwrap();
                assert!(
                    !duijie::ident::check_resident_id(id).is_valid(),
                    "a full resident ID number left the hub: {id} in {line}"
                );
            }
        }
    }
    assert!(kinds.get("request").is_some_and(|n| *n > 100), "{kinds:?}");
    assert!(
        kinds.contains_key("receipt") && kinds.contains_key("pull"),
        "{kinds:?}"
    );
    assert!(
        people_masked > 0,
        "no masked natural person in the capture: the scan proves nothing"
    );
    let mut pipelines = 0;
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() >= 13
            && words[1] == "fetched"
            && words[3] == "delivered"
            && words[5] == "dead-lettered"
        {
            pipelines += 1;
            let n = |i: usize| words[i].parse::<u64>().unwrap();
            assert_eq!(
                n(2),
                n(4) + n(6),
                "{line}: a fetched record is neither on its topic nor dead-lettered"
            );
            // Read back from the bus, not only counted by the hub.
            assert_eq!(words[7..9], ["on", "topic"], "{line}");
            assert_eq!(words[10..12], ["in", "DLQ"], "{line}");
            assert_eq!(
                (n(9), n(12)),
                (n(4), n(6)),
                "{line}: the topics hold other counts than the broker acknowledged"
            );
            if words[0] != "grid_urgent" {
                assert!(n(2) > 0, "{line}: nothing flowed");
            }
        }
    }
    assert_eq!(pipelines, 13, "{stdout}");
    // Every push settled has one receipt on the bus; every refusal or
    // failure a dead letter.
    let mut pushes = 0;
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() >= 17 && words[1] == "delivered" && words[10] == "receipts" {
            pushes += 1;
            let n = |i: usize| words[i].parse::<u64>().unwrap();
            assert_eq!(n(11), n(2) + n(4) + n(6) + n(9), "{line}: receipts");
            assert_eq!(n(13), 0, "{line}: a record receipted twice");
            assert_eq!(n(16), n(4) + n(6), "{line}: dead letters");
        }
    }
    assert!(pushes >= 7, "{stdout}");
    assert!(
        stdout.contains("Two-law desk (canonical.referral_event): 20 referral(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("feed_emergency") && stdout.contains("credit_penalties"),
        "{stdout}"
    );
}
