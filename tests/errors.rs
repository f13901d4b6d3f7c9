//! Errors keep their class on their way up: an unreadable cursor, a
//! producer fenced by another instance and a source that refuses the hub's
//! credentials each stop their pipeline in state `failing`, and the hub
//! does not try again on its own — not in a restart loop, not at the next
//! scheduled poll.

use crate::common::*;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn http(addr: &str) -> String {
    format!("[http]\nlisten = \"{addr}\"\nstatus_token = \"{STATUS_TOKEN}\"\n")
}

fn file_pipeline(name: &str, topic: &str, dlq: &str, exactly_once: bool) -> String {
    format!(
        r#"[pipelines.{name}]
system = "digital_urban"
mapping = "urban_case"
topic = "{topic}"
dlq_topic = "{dlq}"
schedule = "* * * * * *"
exactly_once = {exactly_once}
retry = {{ initial = "50ms", max = "200ms", max_attempts = 0 }}

[pipelines.{name}.source]
kind = "file_drop"
dir = "inbox"
layout = "jsonl"
settle = "0s"
"#
    )
}

fn wait_state(addr: &str, pipeline: &str, state: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    wait_until(
        Duration::from_secs(90),
        &format!("pipeline {pipeline} {state}"),
        || {
            last = pipeline_report(addr, pipeline);
            last["state"] == state
        },
    );
    last
}

#[test]
fn an_unreadable_cursor_stops_the_pipeline_as_failing_without_restarts() {
    let brokers = brokers();
    let addr = format!("127.0.0.1:{}", free_port());
    let (topic, dlq) = (unique("canonical.urban"), unique("dlq.urban"));
    let d = TestDeployment::new(
        &brokers,
        &format!(
            "{}\n{}",
            http(&addr),
            file_pipeline("urban_files", &topic, &dlq, false)
        ),
    );
    // A first run makes the cursor topic as the hub wants it.
    let hub = d.spawn();
    wait_listening(&addr);
    wait_state(&addr, "urban_files", "running");
    terminate(hub);
    // Someone writes garbage under the pipeline's key.
    block_on(async {
        use rdkafka::producer::FutureRecord;
        bus(&brokers)
            .producer()
            .unwrap()
            .send(
                FutureRecord::to(&d.cursor_topic)
                    .key("urban_files")
                    .payload("this is not a cursor"),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    });
    let hub = d.spawn();
    wait_listening(&addr);
    let report = wait_state(&addr, "urban_files", "failing");
    assert!(
        report["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("unreadable cursor")),
        "{report}"
    );
    // It stays failing: the next /metrics shows no restart.
    let restarts = metric_at(
        &addr,
        "duijie_pipeline_restarts_total",
        "pipeline=\"urban_files\"",
    );
    assert_eq!(restarts, Some(0.0));
    let log = terminate(hub);
    assert!(log.contains("pipeline failed permanently"), "{log}");
    assert!(
        !log.contains("resuming from the last committed cursor"),
        "{log}"
    );
}

/// Answers `401` on `/refused` and an empty page on `/empty`, counting
/// each.
fn counting_server() -> (String, Arc<AtomicU64>, Arc<AtomicU64>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (refused, empty) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (r, e) = (refused.clone(), empty.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 16_384 {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let head = String::from_utf8_lossy(&head);
            let answer = if head.starts_with("GET /refused") {
                r.fetch_add(1, Ordering::SeqCst);
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            } else {
                e.fetch_add(1, Ordering::SeqCst);
                let body = r#"{"data":{"rows":[]}}"#;
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (addr, refused, empty)
}

fn poll_pipeline(name: &str, url: &str) -> String {
    let (topic, dlq) = (unique("canonical.urban"), unique("dlq.urban"));
    format!(
        r#"[pipelines.{name}]
system = "digital_urban"
mapping = "urban_case"
topic = "{topic}"
dlq_topic = "{dlq}"
schedule = "* * * * * *"
retry = {{ initial = "50ms", max = "200ms", max_attempts = 0 }}

[pipelines.{name}.source]
kind = "http_poll"
url = "{url}"
records_pointer = "/data/rows"
paging = "keyset"
page_size = 100
watermark_field = "updateTime"
watermark_param = "updatedAfter"
id_field = "taskNum"
after_id_param = "afterTaskNum"
timeout = "2s"
"#
    )
}

#[test]
fn credentials_refused_stop_a_polled_pipeline_until_reload_not_at_every_poll() {
    let brokers = brokers();
    let addr = format!("127.0.0.1:{}", free_port());
    let (server, refused, empty) = counting_server();
    let d = TestDeployment::new(
        &brokers,
        &format!(
            "{}\n{}\n{}",
            http(&addr),
            poll_pipeline("refusing", &format!("http://{server}/refused")),
            poll_pipeline("healthy", &format!("http://{server}/empty")),
        ),
    );
    let hub = d.spawn();
    wait_listening(&addr);
    let report = wait_state(&addr, "refusing", "failing");
    assert!(
        report["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("401")),
        "{report}"
    );
    let refused_then = refused.load(Ordering::SeqCst);
    assert!(refused_then >= 1);
    // Three more scheduled polls of the healthy pipeline, one a second:
    // the refusing one's schedule came round as often.
    let empty_then = empty.load(Ordering::SeqCst);
    wait_until(Duration::from_secs(30), "three more polls", || {
        empty.load(Ordering::SeqCst) >= empty_then + 3
    });
    assert_eq!(
        refused.load(Ordering::SeqCst),
        refused_then,
        "the refused login was tried again"
    );
    assert_eq!(pipeline_report(&addr, "refusing")["state"], "failing");
    assert_eq!(pipeline_report(&addr, "healthy")["state"], "running");
    terminate(hub);
}

#[test]
fn a_producer_fenced_by_another_instance_stops_as_failing_instead_of_fencing_it_back() {
    let brokers = brokers();
    let (a1, a2) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let (topic, dlq) = (unique("canonical.urban"), unique("dlq.urban"));
    let pipeline = file_pipeline("urban_eo", &topic, &dlq, true);
    let d = TestDeployment::new(&brokers, &format!("{}\n{pipeline}", http(&a1)));
    let first = d.spawn();
    wait_listening(&a1);
    wait_state(&a1, "urban_eo", "running");
    // A second instance of the same hub (same name, so the same
    // transactional id) with its own address and inbox.
    let d2 = TestDeployment::new(&brokers, "");
    let text = std::fs::read_to_string(&d.file).unwrap().replace(&a1, &a2);
    std::fs::write(&d2.file, text).unwrap();
    let second = d2.spawn();
    wait_listening(&a2);
    wait_state(&a2, "urban_eo", "running");
    terminate(second);
    // The first instance's next transaction finds itself fenced.
    drop_file(&d, "cases.jsonl", &generated_cases(50, 7));
    let report = wait_state(&a1, "urban_eo", "failing");
    assert!(
        report["last_error"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("fenced") || e.contains("epoch")),
        "{report}"
    );
    let log = terminate(first);
    assert!(log.contains("pipeline failed permanently"), "{log}");
}

/// A schema the registry refuses — incompatible with the subject's earlier
/// version under its BACKWARD rule (Apicurio Registry answers 409) — stops
/// that pipeline as `failing` with the registry's answer, without restarts
/// and without stopping the hub; nothing is written.
#[test]
fn a_schema_the_registry_refuses_stops_the_pipeline_as_failing_with_its_answer() {
    let brokers = brokers();
    let registry = registry();
    let addr = format!("127.0.0.1:{}", free_port());
    let (topic, dlq) = (unique("canonical.urban"), unique("dlq.urban"));
    let subject = format!("{topic}-value");
    // An earlier version downstream readers hold: the case id alone.
    register_schema(
        &registry,
        &subject,
        r#"{"type":"record","name":"UrbanCase","namespace":"cn.gov.yichang.duijie","fields":[{"name":"id","type":"string"}]}"#,
    );
    let status = block_on(async {
        reqwest::Client::new()
            .put(format!("{registry}/config/{subject}"))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .body(r#"{"compatibility":"BACKWARD"}"#)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 200);
    let d = TestDeployment::with_kafka(
        &brokers,
        &format!("schema_registry = \"{registry}\""),
        &format!(
            "{}\n{}",
            http(&addr),
            file_pipeline("urban_files", &topic, &dlq, false)
        ),
    );
    drop_file(&d, "cases.jsonl", &generated_cases(20, 5));
    let hub = d.spawn();
    wait_listening(&addr);
    let report = wait_state(&addr, "urban_files", "failing");
    let error = report["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&subject) && error.contains("409"),
        "the registry's answer: {report}"
    );
    let restarts = metric_at(
        &addr,
        "duijie_pipeline_restarts_total",
        "pipeline=\"urban_files\"",
    );
    assert_eq!(restarts, Some(0.0));
    assert!(read(&brokers, &topic, false).is_empty(), "nothing written");
    let log = terminate(hub);
    assert!(log.contains("pipeline failed permanently"), "{log}");
}
