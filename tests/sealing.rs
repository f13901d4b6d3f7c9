//! Sealing at rest on Apache Kafka (GB/T 39786-2021 level 3): with
//! `[hub.encryption]`, the raw topic, the dead letters and the canonical
//! topic of penalty decisions — all of which hold natural persons' full
//! resident ID numbers — carry no ID number a consumer of the topic could
//! read, every record names its key in `duijie-seal`, and the hub itself
//! reads them back: the credit push decodes the sealed decisions, and the
//! tools (`duijie mapping diff` over the raw topic) open them.

use crate::common::*;
use duijie::bus::read::{Start, partitions, read_to_end};
use duijie_sandbox::SandboxConfig;
use rdkafka::message::Message;
use std::time::Duration;

/// Every record of `topic` exactly as stored: payload and headers.
fn stored(
    brokers: &str,
    topic: &str,
) -> Vec<(Vec<u8>, std::collections::BTreeMap<String, String>)> {
    let consumer: rdkafka::consumer::BaseConsumer<duijie::bus::ReaderContext> = bus(brokers)
        .reader("sealing-test", duijie::bus::Isolation::Committed)
        .unwrap();
    let parts = partitions(&consumer, topic, Duration::from_secs(20)).unwrap();
    let starts: Vec<(i32, Start)> = parts.into_iter().map(|p| (p, Start::Beginning)).collect();
    let mut out = Vec::new();
    read_to_end(&consumer, topic, &starts, Duration::from_secs(30), |m| {
        out.push((
            m.payload().unwrap_or_default().to_vec(),
            duijie::bus::header_map(m),
        ));
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn full_id_numbers_rest_sealed_and_the_hub_reads_them_back() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        enforcement: duijie_sandbox::enforcement::Settings {
            decisions: 60,
            ..Default::default()
        },
        change_limit: Some(0),
        bad_rate: 0.1,
        ..SandboxConfig::default()
    });
    // The source does hold full ID numbers: the test could fail.
    let source = get_json(&format!(
        "http://{sandbox}/enforcement/api/decisions?pageSize=1000"
    ))
    .to_string();
    assert!(!duijie::personal::find_ids(&source).is_empty());

    let (topic, dlq) = (unique("canonical.penalty"), unique("dlq.penalty"));
    let key = "8f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let d = TestDeployment::with_hub(
        &brokers,
        &format!(
            "pseudonym_key = \"a-test-pseudonym-key-of-32-characters\"\n\n[hub.encryption]\ncurrent = \"t1\"\nkeys = {{ t1 = \"{key}\" }}\ntopics = [\"{topic}\"]"
        ),
        &format!(
            r#"[pipelines.penalties]
system = "enforcement"
mapping = "penalty_decision"
topic = "{topic}"
dlq_topic = "{dlq}"
schedule = "* * * * * *"
raw = {{ retention = "1d" }}

[pipelines.penalties.source]
kind = "http_poll"
url = "http://{sandbox}/enforcement/api/decisions"
records_pointer = "/data/records"
paging = "keyset"
page_size = 100
watermark_field = "updateTime"
watermark_param = "updatedAfter"
id_field = "recordId"
after_id_param = "afterId"

[pipelines.penalty_files]
system = "enforcement"
mapping = "penalty_decision"
topic = "{topic}"
dlq_topic = "{dlq}"
schedule = "* * * * * *"
raw = {{ retention = "1d" }}

[pipelines.penalty_files.source]
kind = "file_drop"
dir = "inbox"
layout = "jsonl"
settle = "0s"

[deliveries.credit]
topic = "{topic}"
department = "信用平台"
transform = {{ kind = "credit_penalty" }}
target = {{ kind = "credit_batch", url = "http://{sandbox}/credit/api/penalties" }}
"#
        ),
    );
    // A broken export line that names a person by ID number: a dead letter
    // that keeps its raw payload.
    let id = duijie::personal::find_ids(&source)[0].1.clone();
    drop_file(
        &d,
        "broken.jsonl",
        &format!("{{\"recordId\": \"X1\", \"zjhm\": \"{id}\", oops\n"),
    );
    let hub = d.spawn();
    let raw = duijie::config::raw_topic("penalties");
    wait_until(
        Duration::from_secs(90),
        "every decision mapped or dead-lettered",
        || {
            stored(&brokers, &raw).len() >= 60
                && stored(&brokers, &topic).len() + stored(&brokers, &dlq).len() >= 60
        },
    );
    // The credit platform got decisions: the push read the sealed topic.
    wait_until(
        Duration::from_secs(90),
        "decisions at the credit platform",
        || {
            let published =
                &get_json(&format!("http://{sandbox}/credit/api/received"))["published"];
            published.as_object().is_some_and(|r| !r.is_empty())
                || published.as_array().is_some_and(|r| !r.is_empty())
        },
    );
    // The file's broken line is dead-lettered by its own pipeline (the
    // hub still running: the file pipeline may come after the API's).
    wait_until(
        Duration::from_secs(60),
        "the broken line's dead letter",
        || {
            stored(&brokers, &dlq).iter().any(|(_, headers)| {
                headers.get("duijie-pipeline").map(String::as_str) == Some("penalty_files")
            })
        },
    );
    terminate(hub);
    let dead = stored(&brokers, &dlq);
    for t in [
        &raw,
        &duijie::config::raw_topic("penalty_files"),
        &topic,
        &dlq,
    ] {
        for (payload, headers) in stored(&brokers, t) {
            assert_eq!(
                headers.get("duijie-seal").map(String::as_str),
                Some("sm4-gcm/t1"),
                "{t}"
            );
            let text = String::from_utf8_lossy(&payload);
            assert!(duijie::personal::find_ids(&text).is_empty(), "{t}: {text}");
        }
    }
    // A tool of the hub opens the raw topic: an edited mapping that
    // changes one constant changes it on every record it maps — which it
    // can only do on records it could read.
    let edited = d.path("penalty_decision.edited.yaml");
    let mapping = std::fs::read_to_string(root().join("mappings/penalty_decision.yaml")).unwrap();
    std::fs::write(
        &edited,
        mapping.replacen("const: enforcement", "const: enforcement_v2", 1),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_duijie"))
        .args([
            "mapping",
            "diff",
            "--mapping",
            "penalty_decision",
            "--format",
            "json",
            "--file",
        ])
        .arg(&edited)
        .arg("--config")
        .arg(&d.file)
        .env("DUIJIE_KAFKA_BROKERS", &brokers)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert!(report["records"].as_u64().unwrap() >= 60, "{report}");
    let changed = report["fields"]["source_system"]["changed"]
        .as_u64()
        .unwrap_or(0) as usize;
    assert!(changed > 0 && changed + dead.len() >= 60, "{report}");

    // A key rotation: t2 made current beside t1. The hub's start is in the
    // operator audit with the keys it runs with, by id — the first time
    // `in use`, now `rotated` from t1 to t2 — and never a key.
    let text = std::fs::read_to_string(&d.file).unwrap().replacen(
        &format!("current = \"t1\"\nkeys = {{ t1 = \"{key}\" }}"),
        &format!(
            "current = \"t2\"\nkeys = {{ t1 = \"{key}\", t2 = \"0123456789abcdef0123456789abcdef\" }}"
        ),
        1,
    );
    std::fs::write(&d.file, text).unwrap();
    let hub_name = std::fs::read_to_string(&d.file)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("name = \"")
                .map(|n| n.trim_end_matches('"').to_owned())
        })
        .unwrap();
    let keys_entries = || -> Vec<(String, String)> {
        read(&brokers, "duijie.ops.audit", false)
            .iter()
            .filter_map(|r| serde_json::from_slice::<serde_json::Value>(r.payload.as_deref()?).ok())
            .filter(|v| {
                v["writer"]
                    .as_str()
                    .is_some_and(|w| w.starts_with(&format!("{hub_name}/")))
                    && v["entry"]["command"] == "keys"
            })
            .map(|v| {
                (
                    v["entry"]["outcome"].as_str().unwrap().to_owned(),
                    v["entry"]["detail"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let hub = d.spawn();
    wait_until(
        Duration::from_secs(60),
        "the rotation in the operator audit",
        || keys_entries().len() >= 2,
    );
    terminate(hub);
    let entries = keys_entries();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0].0, "in use");
    assert!(entries[0].1.contains("current t1 of [t1]"), "{entries:?}");
    assert!(
        entries[1]
            .0
            .starts_with("rotated (was: sealing: current t1"),
        "{entries:?}"
    );
    assert!(
        entries[1].1.contains("current t2 of [t1, t2]"),
        "{entries:?}"
    );
    assert!(!format!("{entries:?}").contains(key), "a key in the audit");
}
