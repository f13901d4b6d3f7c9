//! Governed mappings through Apache Kafka: raw retention, `duijie mapping
//! diff` on the raw records kept, and `duijie remap`.

use crate::common::{self, *};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn duijie(args: &[&str], config: &Path, brokers: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_duijie"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("DUIJIE_KAFKA_BROKERS", brokers)
        .env("RUST_LOG", "warn,librdkafka=off,rdkafka=off")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fullwidth_digits(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                char::from_u32(c as u32 + 0xFEE0).unwrap()
            } else {
                c
            }
        })
        .collect()
}

#[test]
fn a_mapping_fix_is_previewed_on_the_raw_records_kept_then_remapped_under_the_same_keys() {
    let brokers = brokers();
    let tag = unique("gov");
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    copy_dir(&root().join("mappings"), &mappings);
    // The vendor's case-source code `3` changed meaning on 2026-11-11 (a
    // test's table): cases keep the meaning of their own day.
    std::fs::write(
        mappings.join("codes/urban_event_source_dated.yaml"),
        "description: \"案件来源 (test: code 3 changed on 2026-11-11)\"\nversion: \"2026-11\"\ncodes:\n  \"1\": INSPECTOR\n  \"2\": HOTLINE\n  \"3\":\n    - { value: HOTLINE, valid_to: \"2026-11-10\" }\n    - { value: VIDEO, valid_from: \"2026-11-11\" }\n  \"4\": GRID_WORKER\n",
    )
    .unwrap();
    let urban = std::fs::read_to_string(mappings.join("urban_case.yaml")).unwrap();
    // The shipped mapping reads its dated tables (the power list) as of
    // `reported_at` already.
    assert!(urban.contains("\neffective_at: reported_at\n"));
    let dated = urban.replacen(
        "table: urban_event_source,",
        "table: urban_event_source_dated,",
        1,
    );
    assert_ne!(dated, urban);
    std::fs::write(mappings.join("urban_case.yaml"), dated).unwrap();
    let topic = format!("canonical.urban.{tag}");
    // Pipeline names become topic names (`raw.<pipeline>`): unique per run.
    let pipeline = format!("urban_{}", tag.replace('-', "_"));
    let config = dir.path().join("deploy.toml");
    std::fs::write(
        &config,
        format!(
            r#"[hub]
name = "{hub}"
mappings = "mappings"
schemas = "{schemas}"

[kafka]
brokers = "{brokers}"
cursor_topic = "cursors.{tag}"

[pipelines.{pipeline}]
system = "digital_urban"
mapping = "urban_case"
topic = "{topic}"
compacted = true
schedule = "* * * * * *"
raw = {{ retention = "7d" }}

[pipelines.{pipeline}.source]
kind = "file_drop"
dir = "inbox"
layout = "jsonl"
settle = "0s"
"#,
            hub = unique("hub"),
            pipeline = pipeline,
            schemas = root().join("schemas").display(),
        ),
    )
    .unwrap();
    // Twenty cases of the shared workload; three write the house number in
    // full-width digits, as some street offices' terminals do.
    let mut lines: Vec<Value> = generated_cases(20, 7)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut widened = BTreeSet::new();
    for i in [3, 9, 14] {
        let a = lines[i]["address"].as_str().unwrap().to_owned();
        lines[i]["address"] = Value::String(fullwidth_digits(&a));
        widened.insert(format!("dcm:{}", lines[i]["taskNum"].as_str().unwrap()));
    }
    std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
    let started = chrono::Utc::now() - chrono::Duration::minutes(5);
    let hub = Command::new(env!("CARGO_BIN_EXE_duijie"))
        .args(["run", "--config"])
        .arg(&config)
        .env("DUIJIE_KAFKA_BROKERS", &brokers)
        .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("inbox/cases.jsonl.part"), &text).unwrap();
    std::fs::rename(
        dir.path().join("inbox/cases.jsonl.part"),
        dir.path().join("inbox/cases.jsonl"),
    )
    .unwrap();
    wait_until(Duration::from_secs(60), "the cases on their topic", || {
        // The hub creates the topic as it starts: until then, not there.
        block_on(duijie::bus::inspect::read_topic(
            &common::bus(&brokers),
            &topic,
            true,
        ))
        .is_ok_and(|r| r.len() == 20)
    });
    terminate(hub);

    // The dated code: the same code `3`, two meanings, by each case's day.
    let mapped = common::latest(&brokers, &topic);
    let mut seen = BTreeSet::new();
    for l in &lines {
        if l["eventSrcId"] != "3" {
            continue;
        }
        let day = &l["createTime"].as_str().unwrap()[..10];
        let want = if day <= "2026-11-10" {
            "HOTLINE"
        } else {
            "VIDEO"
        };
        let key = format!("dcm:{}", l["taskNum"].as_str().unwrap());
        assert_eq!(mapped[&key]["channel"], want, "{key} of {day}");
        seen.insert(want);
    }
    assert_eq!(
        seen.len(),
        2,
        "the sample has code 3 on both sides of the change"
    );
    for r in common::read(&brokers, &topic, true) {
        assert!(
            r.headers["duijie-code-tables"].contains("urban_event_source_dated@2026-11"),
            "{:?}",
            r.headers
        );
    }

    // The quality report counts what was fetched from the raw topic too.
    let (code, out, err) = duijie(
        &["quality", "--pipeline", &pipeline, "--format", "json"],
        &config,
        &brokers,
    );
    assert_eq!(code, 0, "{out}{err}");
    let fetched: u64 = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|d| d["fetched"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(fetched, 20, "{out}");

    // Every canonical record points at its raw record: the same payload.
    let raw_topic = format!("raw.{pipeline}");
    let raws = common::read(&brokers, &raw_topic, true);
    assert_eq!(raws.len(), 20, "one raw record per fetched line");
    for r in common::read(&brokers, &topic, true) {
        let place: duijie::bus::RawRef = r.headers["duijie-raw"].parse().unwrap();
        assert_eq!(place.topic, raw_topic);
        let raw = raws
            .iter()
            .find(|x| x.partition == place.partition && x.offset == place.offset)
            .expect("the raw record pointed at");
        assert_eq!(
            raw.headers["duijie-payload-sha256"],
            r.headers["duijie-payload-sha256"]
        );
        assert_eq!(raw.headers["duijie-origin"], r.headers["duijie-origin"]);
    }
    // Raw topics keep for their retention, not for ever.
    let retention = block_on(async {
        use rdkafka::admin::{AdminOptions, ResourceSpecifier};
        let admin = common::bus(&brokers).admin().unwrap();
        let described = admin
            .describe_configs(
                [ResourceSpecifier::Topic(&raw_topic)].iter(),
                &AdminOptions::new(),
            )
            .await
            .unwrap();
        let r = described[0].as_ref().unwrap();
        r.get("retention.ms").and_then(|e| e.value.clone())
    });
    assert_eq!(retention.as_deref(), Some("604800000"));

    // The fix: house numbers to half-width, version 2.
    let current = std::fs::read_to_string(mappings.join("urban_case.yaml")).unwrap();
    let fixed = current.replacen("version: 1", "version: 2", 1).replacen(
        "  - field: address\n    path: address\n    trim: true\n",
        "  - field: address\n    path: address\n    trim: true\n    halfwidth: true\n",
        1,
    );
    assert_ne!(fixed, current);
    let edited = dir.path().join("urban_case.edited.yaml");
    std::fs::write(&edited, &fixed).unwrap();
    // `duijie mapping diff --mapping urban_case` with more arguments.
    let diff = |more: &[&str]| {
        let mut args = vec!["mapping", "diff", "--mapping", "urban_case"];
        args.extend_from_slice(more);
        duijie(&args, &config, &brokers)
    };
    // Unchanged: exit 0.
    let (code, out, err) = diff(&[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no change"), "{out}");
    // Edited: exactly the three records, exit 1 (a CI gate).
    let (code, out, err) = diff(&["--file", edited.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code, 1, "{out}{err}");
    let d: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["records"], 20);
    assert_eq!(d["records_changed"], 3);
    assert_eq!(d["newly_rejected_count"], 0);
    assert_eq!(d["keys_changed"], 0);
    let fields: Vec<&String> = d["fields"].as_object().unwrap().keys().collect();
    assert_eq!(fields, ["address"], "{d}");
    assert_eq!(d["fields"]["address"]["changed"], 3);
    let shown: BTreeSet<String> = d["fields"]["address"]["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(shown, widened);
    let (_, table, _) = diff(&["--file", edited.to_str().unwrap()]);
    assert!(
        table.contains("address") && table.contains("3 change"),
        "{table}"
    );

    // With an edited schema folder too (a new optional field): the schema
    // change is reported beside the field diff, readable both ways.
    let edited_schemas = dir.path().join("schemas.edited");
    copy_dir(&root().join("schemas"), &edited_schemas);
    let avsc = edited_schemas.join("urban_case.avsc");
    let text = std::fs::read_to_string(&avsc).unwrap().replacen(
        "\"fields\": [",
        "\"fields\": [\n    {\"name\": \"note\", \"type\": [\"null\", \"string\"], \"default\": null},",
        1,
    );
    std::fs::write(&avsc, text).unwrap();
    let (code, out, err) = diff(&[
        "--file",
        edited.to_str().unwrap(),
        "--schemas",
        edited_schemas.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    let d: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["records_changed"], 3, "the field diff as before");
    assert_eq!(
        d["schema"]["added"],
        serde_json::json!([r#"note: ["null","string"] = null"#]),
        "{d}"
    );
    assert_eq!(d["schema"]["backward"], serde_json::json!({"Ok": null}));
    assert_eq!(d["schema"]["forward"], serde_json::json!({"Ok": null}));
    let (_, table, _) = diff(&["--schemas", edited_schemas.to_str().unwrap()]);
    assert!(
        table.contains("+ note") && table.contains("BACKWARD (the new schema reads old data): yes"),
        "{table}"
    );

    // Shipped, then remapped: the same keys, the fixed values, version 2.
    std::fs::write(mappings.join("urban_case.yaml"), &fixed).unwrap();
    let from = duijie::calendar::local_rfc3339(started);
    let (code, out, err) = duijie(
        &["remap", "--pipeline", &pipeline, "--from", &from],
        &config,
        &brokers,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("20 raw record(s) read, 20 republished, 0 dead-lettered; done"),
        "{out}"
    );
    let latest = common::read(&brokers, &topic, true);
    let keys: BTreeSet<String> = latest.iter().map(|r| r.key_str()).collect();
    assert_eq!(keys.len(), 20, "no new keys");
    let decoded = common::latest(&brokers, &topic);
    for key in &widened {
        let address = decoded[key]["address"].as_str().unwrap();
        assert!(
            address.chars().all(|c| !('０'..='９').contains(&c)),
            "{key}: {address}"
        );
    }
    let newest = latest
        .iter()
        .rev()
        .find(|r| widened.contains(&r.key_str()))
        .unwrap();
    assert_eq!(newest.headers["duijie-mapping-version"], "2");
    assert!(newest.headers["duijie-raw"].starts_with(&format!("{raw_topic}/")));
    // Run again: the remap's cursor says it is done; nothing republished.
    let (_, out, _) = duijie(
        &["remap", "--pipeline", &pipeline, "--from", &from],
        &config,
        &brokers,
    );
    assert!(out.contains("0 raw record(s) read"), "{out}");
}

#[test]
fn the_quality_report_gives_exact_rates_on_a_known_mix_of_good_and_bad_records() {
    let brokers = brokers();
    let tag = unique("quality");
    let pipeline = format!("urban_{}", tag.replace('-', "_"));
    let addr = format!("127.0.0.1:{}", free_port());
    let d = TestDeployment::with_hub(
        &brokers,
        &format!("calendar = \"{}\"", root().join("calendar").display()),
        &format!(
            r#"[pipelines.{pipeline}]
system = "digital_urban"
mapping = "urban_case"
topic = "canonical.urban.{tag}"
dlq_topic = "dlq.{tag}"
schedule = "* * * * * *"

[pipelines.{pipeline}.source]
kind = "file_drop"
dir = "inbox"
layout = "jsonl"
settle = "0s"

[http]
listen = "{addr}"

[desk]
events_topic = "referrals.{tag}"
state_topic = "state.{tag}"
alerts_topic = "desk-alerts.{tag}"
audit_topic = "audit.{tag}"
[desk.users."quality-officer-token-0001"]
name = "张伟"
role = "officer"
"#
        ),
    );
    // Ten cases: three without a party name, two with a state code the
    // table does not know (rejected), the rest complete.
    let mut lines: Vec<Value> = generated_cases(10, 11)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for l in &mut lines {
        l["partyName"] = Value::String("宜昌华强建材有限公司".into());
    }
    for i in [1, 4, 6] {
        l_remove(&mut lines[i], "partyName");
    }
    for i in [2, 8] {
        lines[i]["eventStateId"] = Value::String("99".into());
    }
    std::fs::create_dir_all(d.path("inbox")).unwrap();
    let hub = d.spawn();
    wait_listening(&addr);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(d.path("inbox/cases.part"), &text).unwrap();
    std::fs::rename(d.path("inbox/cases.part"), d.path("inbox/cases.jsonl")).unwrap();
    wait_until(Duration::from_secs(60), "the cases read", || {
        let bus = common::bus(&brokers);
        let on = |t: String| {
            block_on(duijie::bus::inspect::read_topic(&bus, &t, true)).map_or(0, |r| r.len())
        };
        on(format!("canonical.urban.{tag}")) == 8 && on(format!("dlq.{tag}")) == 2
    });
    let (code, out, err) = duijie(
        &["quality", "--pipeline", &pipeline, "--format", "json"],
        &d.file,
        &brokers,
    );
    assert_eq!(code, 0, "{out}{err}");
    let days: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(days.len(), 1, "{out}");
    let day = &days[0];
    assert_eq!(
        (day["mapped"].clone(), day["rejected"].clone()),
        (serde_json::json!(8), serde_json::json!(2))
    );
    let field = |name: &str| {
        day["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["field"] == name)
            .unwrap_or_else(|| panic!("{name}: {day}"))
            .clone()
    };
    // Party name: 8 mapped, 3 without (completeness 5/8); all 5 valid.
    assert_eq!(field("party_name")["completeness"], 0.625);
    assert_eq!(field("party_name")["validity"], 1.0);
    // State: every mapped record has one; 2 of the 10 values were unknown.
    let status = field("status");
    assert_eq!(status["completeness"], 1.0);
    assert_eq!(status["validity"], 0.8);
    assert_eq!(status["unknown_codes"], serde_json::json!({"99": 2}));
    let mapped_states: u64 = status["values"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(mapped_states, 8);
    assert_eq!(day["rejects_by_rule"]["codes:status"], 2);

    // The hub keeps the same figures: the desk page and today's gauges.
    wait_until(Duration::from_secs(30), "the desk's quality page", || {
        let page = block_on(get_text(
            format!("http://{addr}/desk/quality?pipeline={pipeline}"),
            "Bearer quality-officer-token-0001",
        ));
        page.contains("data-field=\"status\"") && page.contains("80.0%") && page.contains("62.5%")
    });
    let metrics = block_on(get_text(format!("http://{addr}/metrics"), ""));
    assert!(
        metrics.contains(&format!(
            "duijie_quality_records{{pipeline=\"{pipeline}\",outcome=\"mapped\"}} 8"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "duijie_quality_rejects{{pipeline=\"{pipeline}\",rule=\"codes:status\"}} 2"
        )),
        "{metrics}"
    );
    terminate(hub);
}

fn l_remove(v: &mut Value, key: &str) {
    v.as_object_mut().unwrap().remove(key);
}
