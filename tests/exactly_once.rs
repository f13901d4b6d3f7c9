//! The `exactly_once` path: each batch's records, dead letters and cursor
//! in one Kafka transaction.
//!
//! Tansu does not implement transactions (no EndTxn), so these tests run
//! against librdkafka's mock cluster, hosted by the test process; the
//! `duijie` binary connects to it over loopback like to any cluster.
//!
//! What the mock cannot show: it accepts transactions, but it does not
//! isolate uncommitted or aborted records from `read_committed` readers (its
//! Fetch answers LastStableOffset = end offset and no aborted transactions,
//! `rdkafka_mock_handlers.c`), and a new instance's InitProducerId gets a new
//! producer id instead of fencing the old one. The tests below therefore
//! check what the hub does — one transaction per batch holding its cursor,
//! no loss across SIGKILL — and not the broker's filtering of aborted
//! records, which needs a real Kafka cluster.

use crate::common::*;
use duijie::bus::StoredCursor;
use duijie::config::Deployment;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use std::collections::BTreeSet;
use std::time::Duration;

fn pipeline(topic: &str, dlq: &str) -> String {
    format!(
        r#"[pipelines.urban_eo]
system = "digital_urban"
mapping = "urban_case"
topic = "{topic}"
dlq_topic = "{dlq}"
partitions = 3
schedule = "* * * * * *"
batch_size = 200
exactly_once = true

[pipelines.urban_eo.source]
kind = "file_drop"
dir = "inbox"
layout = "jsonl"
settle = "0s"
"#
    )
}

/// A mock cluster with the deployment's topics (it has no CreateTopics).
fn mock_with_topics() -> (
    MockCluster<'static, DefaultProducerContext>,
    TestDeployment,
    String,
    String,
) {
    let cluster = MockCluster::new(3).unwrap();
    let brokers = cluster.bootstrap_servers();
    let topic = unique("canonical.urban");
    let dlq = unique("dlq.urban");
    let d = TestDeployment::new(&brokers, &pipeline(&topic, &dlq));
    for t in Deployment::load(&d.file).unwrap().topics() {
        cluster.create_topic(&t.name, t.partitions, 1).unwrap();
    }
    (cluster, d, topic, dlq)
}

fn cursors(brokers: &str, topic: &str) -> Vec<StoredCursor> {
    read(brokers, topic, true)
        .iter()
        .filter(|r| r.key_str() == "urban_eo")
        .map(|r| serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap())
        .collect()
}

#[test]
fn every_batch_commits_with_its_cursor() {
    let (_cluster, d, topic, dlq) = mock_with_topics();
    let brokers = d.brokers.clone();
    let mut text = generated_cases(2_000, 5);
    text.push_str("{\"taskNum\":\"BAD\"}\n");
    std::fs::create_dir_all(d.path("inbox")).unwrap();
    std::fs::write(d.path("inbox/cases.jsonl"), &text).unwrap();
    let hub = d.spawn();
    wait_until(Duration::from_secs(120), "the file to be finished", || {
        d.path("inbox/done/cases.jsonl").exists()
    });
    terminate(hub);

    let keys: Vec<String> = read(&brokers, &topic, true)
        .iter()
        .map(|r| r.key_str())
        .collect();
    let distinct: BTreeSet<String> = keys.iter().cloned().collect();
    assert_eq!(keys.len(), 2_000);
    assert_eq!(distinct.len(), 2_000);
    assert_eq!(read(&brokers, &dlq, true).len(), 1);
    // One cursor per batch of 200 (the last batch holds the bad line), each
    // counting exactly what was written before it.
    let cursors = cursors(&brokers, &d.cursor_topic);
    assert_eq!(cursors.len(), 11, "{cursors:#?}");
    let counts: Vec<u64> = cursors.iter().map(|c| c.records).collect();
    assert_eq!(
        counts,
        vec![200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800, 2000, 2001]
    );
}

#[test]
fn sigkill_mid_transaction_loses_nothing() {
    let (_cluster, d, topic, _dlq) = mock_with_topics();
    let brokers = d.brokers.clone();
    let text = generated_cases(20_000, 13);
    std::fs::create_dir_all(d.path("inbox")).unwrap();
    std::fs::write(d.path("inbox/cases.jsonl"), &text).unwrap();
    let mut kills = 0;
    for pause_ms in [1500, 900, 1200] {
        let hub = d.spawn();
        std::thread::sleep(Duration::from_millis(pause_ms));
        let finished = d.path("inbox/done/cases.jsonl").exists();
        kill(hub);
        if finished {
            break;
        }
        kills += 1;
    }
    let hub = d.spawn();
    wait_until(Duration::from_secs(180), "the file to be finished", || {
        d.path("inbox/done/cases.jsonl").exists()
    });
    terminate(hub);
    assert!(kills >= 1, "the hub finished before it could be killed");
    let distinct: BTreeSet<String> = read(&brokers, &topic, true)
        .iter()
        .map(|r| r.key_str())
        .collect();
    let expected: BTreeSet<String> = urban_keys(&text).into_iter().collect();
    assert_eq!(
        distinct, expected,
        "every record present after {kills} SIGKILL(s)"
    );
    assert_eq!(
        cursors(&brokers, &d.cursor_topic).pop().unwrap().records,
        20_000
    );
}
