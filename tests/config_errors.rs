//! Broken deployment files: each message names the file, the line and the
//! field, as `duijie check` prints it.

use crate::common::root;
use std::process::Command;

const GOOD: &str = r#"[hub]
name = "t"
mappings = "MAPPINGS"
schemas = "SCHEMAS"

[kafka]
brokers = "127.0.0.1:9092"

[pipelines.urban_files]
system = "digital_urban"
mapping = "urban_case"
topic = "canonical.urban_case"
partitions = 3
schedule = "*/2 * * * * *"

[pipelines.urban_files.source]
kind = "file_drop"
dir = "inbox"
layout = "jsonl"
"#;

/// Runs `duijie check` on `text`; returns (success, stderr+stdout).
fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deploy.toml");
    let text = text
        .replace("MAPPINGS", root().join("mappings").to_str().unwrap())
        .replace("SCHEMAS", root().join("schemas").to_str().unwrap());
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_duijie"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    (
        out.status.success(),
        text.replace(dir.path().to_str().unwrap(), "DIR"),
    )
}

fn assert_broken(text: &str, expected: &str) {
    let (ok, output) = check(text);
    assert!(!ok, "check passed:\n{output}");
    assert!(
        output.contains(expected),
        "expected `{expected}` in:\n{output}"
    );
}

#[test]
fn the_good_file_passes() {
    let (ok, output) = check(GOOD);
    assert!(ok, "{output}");
    assert!(output.contains("ok — 1 pipeline(s)"), "{output}");
}

#[test]
fn misspelt_source_field() {
    assert_broken(
        &GOOD.replace(
            "layout = \"jsonl\"",
            "layout = \"jsonl\"\nmax_record_byte = 10",
        ),
        "DIR/deploy.toml:20:1: pipelines.urban_files.source.max_record_byte: unknown field `max_record_byte`",
    );
}

#[test]
fn unknown_mapping_name() {
    assert_broken(
        &GOOD.replace("mapping = \"urban_case\"", "mapping = \"urban_cases\""),
        "DIR/deploy.toml:11:1: pipelines.urban_files.mapping: no mapping `urban_cases`",
    );
}

#[test]
fn invalid_cron_schedule() {
    assert_broken(
        &GOOD.replace("*/2 * * * * *", "every two seconds"),
        "DIR/deploy.toml:14:12: pipelines.urban_files.schedule: `every two seconds` is not a cron schedule",
    );
}

#[test]
fn wrong_type_for_partitions() {
    assert_broken(
        &GOOD.replace("partitions = 3", "partitions = \"three\""),
        "DIR/deploy.toml:13:14: pipelines.urban_files.partitions: invalid type: string \"three\", expected i32",
    );
}

#[test]
fn unknown_source_kind() {
    assert_broken(
        &GOOD.replace("kind = \"file_drop\"", "kind = \"ftp\""),
        "DIR/deploy.toml:17:8: pipelines.urban_files.source.kind: unknown source kind `ftp`",
    );
}

#[test]
fn missing_kafka_brokers() {
    assert_broken(
        &GOOD.replace("brokers = \"127.0.0.1:9092\"\n", ""),
        "DIR/deploy.toml:6:1: kafka.brokers: missing field `brokers`",
    );
}

#[test]
fn system_that_does_not_match_the_mapping() {
    assert_broken(
        &GOOD.replace("system = \"digital_urban\"", "system = \"grid\""),
        "DIR/deploy.toml:10:1: pipelines.urban_files.system: pipeline says `grid` but mapping `urban_case` reads system `digital_urban`",
    );
}

#[test]
fn xml_layout_without_record_element() {
    assert_broken(
        &GOOD.replace("layout = \"jsonl\"", "layout = \"xml\""),
        "DIR/deploy.toml:16:1: pipelines.urban_files.source: layout `xml` needs `record_element`",
    );
}

// ---------------------------------------------------------------------------
// Secrets: `${env:NAME}` and `${file:PATH}`.

/// Like [`check`], with a secret file `pw` beside the deployment.
fn check_with_secret(text: &str, secret: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), format!("{secret}\n")).unwrap();
    let file = dir.path().join("deploy.toml");
    let text = text
        .replace("MAPPINGS", root().join("mappings").to_str().unwrap())
        .replace("SCHEMAS", root().join("schemas").to_str().unwrap());
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_duijie"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    (
        out.status.success(),
        text.replace(dir.path().to_str().unwrap(), "DIR"),
    )
}

const GRID: &str = r#"
[pipelines.grid]
system = "grid"
mapping = "grid_event"
topic = "canonical.grid_event"
schedule = "*/5 * * * * *"

[pipelines.grid.source]
kind = "http_poll"
url = "http://127.0.0.1:1/grid/api/events"
records_pointer = "/data/list"
paging = "keyset"
watermark_field = "updateTime"
watermark_param = "updatedAfter"
id_field = "eventId"
after_id_param = "afterId"
auth = { scheme = "login", url = "http://127.0.0.1:1/grid/api/login", username = "duijie", password = "PASSWORD", token_pointer = "/data/token" }
"#;

#[test]
fn a_missing_secret_names_the_line_and_the_variable_not_a_value() {
    let text = format!(
        "{GOOD}{}",
        GRID.replace("PASSWORD", "${env:DUIJIE_TEST_UNSET_GRID_PW}")
    );
    let line = text
        .lines()
        .position(|l| l.contains("DUIJIE_TEST_UNSET_GRID_PW"))
        .unwrap()
        + 1;
    assert_broken(&text, &format!("DIR/deploy.toml:{line}:"));
    assert_broken(
        &text,
        "the environment variable DUIJIE_TEST_UNSET_GRID_PW is not set",
    );
    let text = format!("{GOOD}{}", GRID.replace("PASSWORD", "${file:no-such-file}"));
    assert_broken(&text, "`${file:no-such-file}`: cannot read");
}

#[test]
fn a_secret_from_a_file_never_shows_and_clear_credentials_are_warned_about() {
    // Good: the password comes from a file; no warning.
    let text = format!("{GOOD}{}", GRID.replace("PASSWORD", "${file:pw}"));
    let (ok, output) = check_with_secret(&text, "Zq\"9-secret-pw");
    assert!(ok, "{output}");
    assert!(!output.contains("warning"), "{output}");

    // A secret where it makes the file wrong: the error says where, not what.
    let broken = text.replace("schedule = \"*/5 * * * * *\"", "schedule = \"${file:pw}\"");
    let (ok, output) = check_with_secret(&broken, "Zq\"9-secret-pw");
    assert!(!ok, "{output}");
    assert!(output.contains("pipelines.grid.schedule"), "{output}");
    assert!(!output.contains("Zq"), "the secret leaked:\n{output}");

    // In clear: it works, with a warning naming the line.
    let clear = format!("{GOOD}{}", GRID.replace("PASSWORD", "Wg#2026-yc"));
    let line = clear
        .lines()
        .position(|l| l.contains("Wg#2026-yc"))
        .unwrap()
        + 1;
    let (ok, output) = check(&clear);
    assert!(ok, "{output}");
    assert!(
        output.contains(&format!(
            "DIR/deploy.toml:{line}: warning: `password` holds a plaintext credential"
        )),
        "{output}"
    );
    assert!(
        !output.contains("Wg#2026-yc"),
        "the warning repeats the credential:\n{output}"
    );
}

#[test]
fn a_missing_section_is_named_as_the_top_level_field() {
    let text = GOOD.replace(
        "[hub]\nname = \"t\"\nmappings = \"MAPPINGS\"\nschemas = \"SCHEMAS\"\n",
        "",
    );
    assert_broken(&text, "DIR/deploy.toml:1:1: hub: missing field `hub`");
}

/// GB/T 2260: a route by a division code that does not exist is refused,
/// naming the file and line; 420504 (点军区) and a street under 420502
/// (西陵区) pass.
#[test]
fn a_route_by_a_division_code_that_does_not_exist_is_refused() {
    let deliveries = |routes: &str| {
        format!(
            r#"{GOOD}
[deliveries.licences]
topic = "canonical.licence"
transform = {{ kind = "licence_notice", routes = {{ {routes} }} }}
target = {{ kind = "webhook", url = "http://127.0.0.1:9/q/{{team}}", secret = "a-secret-of-16-chars-or-more" }}
"#
        )
    };
    let (ok, output) = check(&deliveries(
        r#""420504" = "点军中队", "420502001" = "东山中队""#,
    ));
    assert!(ok, "{output}");
    assert_broken(
        &deliveries(r#""420599" = "某中队""#),
        "DIR/deploy.toml:23:1: deliveries.licences.transform: division code `420599` (in `420599`) does not exist in GB/T 2260",
    );
    // Under a prefecture whose county codes the table does not hold, the
    // prefecture is checked.
    let (ok, output) = check(&deliveries(r#""420102" = "武汉某队""#));
    assert!(ok, "{output}");
    assert_broken(&deliveries(r#""429999" = "某队""#), "`429999`");
}

/// A credit push that follows repair results no pipeline writes would wait
/// for them forever: refused, naming the field.
#[test]
fn a_repairs_topic_no_pipeline_writes_is_refused() {
    assert_broken(
        &format!(
            r#"{GOOD}
[deliveries.credit]
topic = "canonical.penalty_decision"
transform = {{ kind = "credit_penalty", repairs_topic = "canonical.nothing" }}
target = {{ kind = "credit_batch", url = "http://127.0.0.1:9/credit" }}
"#
        ),
        "deliveries.credit.transform.repairs_topic: no pipeline writes `canonical.nothing`",
    );
}

/// With `[hub.encryption]`, a canonical topic whose mapping keeps full
/// resident ID numbers must be sealed: `check` names it, its fields and the
/// mapping; a key that is not 16 bytes of hex is refused at load.
#[test]
fn an_unsealed_topic_with_full_id_numbers_and_a_bad_data_key_are_refused() {
    let deployment = |topics: &str, key: &str| {
        GOOD.replacen(
            "\n\n[kafka]",
            &format!(
                "\n\n[hub.encryption]\ncurrent = \"k1\"\nkeys = {{ k1 = \"{key}\" }}\ntopics = [{topics}]\n\n[kafka]"
            ),
            1,
        ) + r#"
[pipelines.penalties]
system = "enforcement"
mapping = "penalty_decision"
topic = "canonical.penalty_decision"
schedule = "*/2 * * * * *"

[pipelines.penalties.source]
kind = "file_drop"
dir = "penalties"
layout = "jsonl"
"#
    };
    let key = "00112233445566778899aabbccddeeff";
    let (ok, output) = check(&deployment(r#""canonical.penalty_decision""#, key));
    assert!(ok, "{output}");
    assert_broken(
        &deployment("", key),
        "hub.encryption.topics: `canonical.penalty_decision` keeps full resident ID numbers (party.id_number, party.legal_rep_id_number, mapping `penalty_decision`) and is not sealed: add it",
    );
    assert_broken(
        &deployment(r#""canonical.penalty_decision""#, "0011"),
        "hub.encryption: key `k1` is not 32 hex digits (a 16-byte SM4 key)",
    );
}

/// A lead reads its power-list item and team from the canonical record: a
/// name the schema does not have (every lead would look outside the
/// bureau's powers) is refused by `check`, naming the field.
#[test]
fn a_lead_whose_power_fields_are_not_in_the_schema_is_refused() {
    let deployment = |team: &str| {
        format!(
            r#"{GOOD}
[pipelines.video]
system = "pingan_video"
mapping = "video_alarm"
topic = "canonical.video_alarm"
schedule = "*/2 * * * * *"

[pipelines.video.source]
kind = "file_drop"
dir = "video"
layout = "jsonl"

[pipelines.video.lead]
kind = "VIDEO_ALARM"
select = {{ field = "confidence", at_least = 0.8 }}
power = {{ item = "power_item", team = "{team}" }}
jurisdiction = "grid_code"
default_team = "高新区执法大队"
"#
        )
    };
    let (ok, output) = check(&deployment("power_team"));
    assert!(ok, "{output}");
    assert_broken(
        &deployment("power_teem"),
        "pipelines.video.lead.power: `power_teem` is not a field of `duijie.canonical.VideoAlarm` (mapping `video_alarm`)",
    );
}
