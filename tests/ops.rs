//! What an operator sees: `/metrics` in the Prometheus text format with
//! the counts that really flowed, `/health`, `/ready` with every pipeline's
//! state, and `duijie status`.

use crate::common::*;
use std::time::Duration;

#[test]
fn metrics_probes_and_status_show_what_flowed() {
    let port = free_port();
    let topic = unique("canonical.urban");
    let d = TestDeployment::new(
        &brokers(),
        &format!(
            r#"[http]
listen = "127.0.0.1:{port}"
status_token = "ops-status-token-0000000001"

[pipelines.urban_files]
system = "digital_urban"
mapping = "urban_case"
topic = "{topic}"
schedule = "* * * * * *"
batch_size = 100

[pipelines.urban_files.source]
kind = "file_drop"
dir = "inbox"
layout = "jsonl"
settle = "0s"
"#
        ),
    );
    let mut text = generated_cases(500, 11);
    text.push_str("{\"taskNum\":\"BROKEN\"}\n");
    std::fs::create_dir_all(d.path("inbox")).unwrap();
    std::fs::write(d.path("inbox/cases.jsonl"), &text).unwrap();
    let hub = d.spawn();
    let addr = format!("127.0.0.1:{port}");
    wait_listening(&addr);
    let base = format!("http://{addr}");

    let health = get_json(&format!("{base}/health"));
    assert_eq!(health["status"], "ok");

    let get = |path: &str| {
        block_on(async {
            let r = reqwest::get(format!("{base}{path}")).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    wait_until(
        Duration::from_secs(60),
        "500 records and 1 dead letter in the metrics",
        || {
            let (_, m) = get("/metrics");
            metric(
                &m,
                "duijie_records_delivered_total",
                "pipeline=\"urban_files\"",
            ) == Some(500.0)
                && metric(
                    &m,
                    "duijie_records_dead_lettered_total",
                    "pipeline=\"urban_files\"",
                ) == Some(1.0)
        },
    );
    let (status, m) = get("/metrics");
    assert_eq!(status, 200);
    assert!(m.contains("system=\"digital_urban\""), "{m}");
    assert_eq!(
        metric(
            &m,
            "duijie_records_fetched_total",
            "pipeline=\"urban_files\""
        ),
        Some(501.0)
    );
    // Five batches of 100 and one of 1, each timed from fetch to commit.
    assert_eq!(
        metric(
            &m,
            "duijie_batch_duration_seconds_count",
            "pipeline=\"urban_files\""
        ),
        Some(6.0)
    );
    let age = metric(&m, "duijie_cursor_age_seconds", "pipeline=\"urban_files\"").unwrap();
    assert!((0.0..60.0).contains(&age), "cursor age {age}");
    assert!(m.trim_end().ends_with("# EOF"), "not the exposition format");

    // Without the status token, /ready says only what runs.
    let (status, body) = get("/ready");
    assert_eq!(status, 200, "{body}");
    let public: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(public["ready"], true);
    assert_eq!(public["pipelines"][0]["state"], "running");
    assert!(
        public["pipelines"][0].get("delivered").is_none() && public.get("broker").is_none(),
        "the public /ready shows detail: {body}"
    );
    let body = block_on(get_text(
        format!("{base}/ready"),
        "Bearer ops-status-token-0000000001",
    ));
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["broker"], "reachable, 1 broker(s)");
    assert_eq!(ready["pipelines"][0]["pipeline"], "urban_files");
    assert_eq!(ready["pipelines"][0]["state"], "running");
    assert_eq!(ready["pipelines"][0]["delivered"], 500);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_duijie"))
        .args(["status", "--config"])
        .arg(&d.file)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{printed}");
    let row = printed
        .lines()
        .find(|l| l.starts_with("urban_files"))
        .unwrap_or_else(|| panic!("{printed}"));
    assert!(
        row.contains("running") && row.contains(" 500 ") && row.contains(" 1 "),
        "{row}"
    );
    terminate(hub);

    // With the hub gone, `status` says so and fails.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_duijie"))
        .args(["status", "--config"])
        .arg(&d.file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no hub answers"));
}

/// The operator audit is a network log kept at least six months
/// (《网络安全法》 art. 21(3)): a topic someone made with thirty days'
/// retention is refused at the start, by name, and the hub does not run.
#[test]
fn an_audit_topic_kept_less_than_six_months_is_refused_at_start() {
    let (audit, log) =
        refused_with_audit_topic(&[("retention.ms", &(30_i64 * 86_400_000).to_string())]);
    for expected in [audit.as_str(), "30 days", "操作审计", "6 months"] {
        assert!(log.contains(expected), "{expected} not in:\n{log}");
    }
}

/// An audit chain's entries share one key: a compacted audit topic would
/// keep only the last. Refused at start, though compaction keeps other
/// history topics whole.
#[test]
fn a_compacted_audit_topic_is_refused_at_start() {
    let (audit, log) = refused_with_audit_topic(&[("cleanup.policy", "compact")]);
    for expected in [audit.as_str(), "compacted", "share one key", "操作审计"] {
        assert!(log.contains(expected), "{expected} not in:\n{log}");
    }
}

/// A hub whose operator audit topic was made beforehand with `config`:
/// the topic's name and the log of the hub, which must refuse to start.
fn refused_with_audit_topic(config: &[(&str, &str)]) -> (String, String) {
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
    let audit = unique("ops.audit");
    let d = TestDeployment::with_hub(
        &brokers(),
        &format!("ops_audit_topic = \"{audit}\""),
        &format!(
            r#"[pipelines.urban_files]
system = "digital_urban"
mapping = "urban_case"
topic = "{topic}"
schedule = "* * * * * *"

[pipelines.urban_files.source]
kind = "file_drop"
dir = "inbox"
layout = "jsonl"
settle = "0s"
"#,
            topic = unique("canonical.urban")
        ),
    );
    std::fs::create_dir_all(d.path("inbox")).unwrap();
    let b = bus(&brokers());
    block_on(async {
        let admin = b.admin().unwrap();
        let mut new = NewTopic::new(&audit, 1, TopicReplication::Fixed(1));
        for (k, v) in config {
            new = new.set(k, v);
        }
        for r in admin
            .create_topics([&new], &AdminOptions::new())
            .await
            .unwrap()
        {
            r.unwrap();
        }
    });
    let mut hub = d.spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = hub.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the hub did not refuse to start"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    (audit, log_so_far(&hub))
}
