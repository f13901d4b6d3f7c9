//! HTTP poll through the sandbox's digital urban management API, with its
//! faults on: HTTP 500s, answers slower than the client's timeout, rows
//! sent twice. Every case ends up in the topic; nothing in the DLQ.

use crate::common::*;
use duijie::sandbox::{Faults, SandboxConfig};
use std::collections::BTreeSet;
use std::time::Duration;

/// Runs the sandbox on a free port in a background thread.
fn start_sandbox(config: SandboxConfig) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            duijie::sandbox::serve(listener, config, tokio_util::sync::CancellationToken::new())
                .await
                .unwrap();
        });
    });
    addr
}

#[test]
fn every_case_arrives_despite_500s_timeouts_and_duplicate_rows() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        faults: Faults {
            error_rate: 0.3,
            slow_rate: 0.1,
            slow_ms: 1500,
            duplicate_rate: 0.1,
        },
        urban_cases: 1500,
        urban_changes_per_sec: 0,
        bad_rate: 0.0,
        seed: 3,
    });
    let topic = unique("canonical.urban");
    let dlq = unique("dlq.urban");
    let d = TestDeployment::new(
        &brokers,
        &format!(
            r#"[pipelines.urban_api]
system = "digital_urban"
mapping = "urban_case"
topic = "{topic}"
dlq_topic = "{dlq}"
schedule = "* * * * * *"
retry = {{ initial = "50ms", max = "400ms", max_attempts = 0 }}

[pipelines.urban_api.source]
kind = "http_poll"
url = "http://{sandbox}/dcm/api/cases"
records_pointer = "/data/rows"
paging = "keyset"
page_size = 100
watermark_field = "updateTime"
watermark_param = "updatedAfter"
id_field = "taskNum"
after_id_param = "afterTaskNum"
timeout = "1s"
"#
        ),
    );
    let hub = d.spawn();
    let expected: BTreeSet<String> = (0..1500)
        .map(|i| format!("dcm:YC{:08}", 50_000_000 + i))
        .collect();
    wait_until(Duration::from_secs(120), "every case in the topic", || {
        let keys: BTreeSet<String> = read(&brokers, &topic, false)
            .iter()
            .map(|r| r.key_str())
            .collect();
        keys == expected
    });
    let log = terminate(hub);
    assert!(
        log.contains("transient source error; retrying"),
        "no retry was logged:\n{log}"
    );
    let counters: serde_json::Value =
        reqwest::blocking_get(&format!("http://{sandbox}/sandbox/counters"));
    assert!(counters["errors"].as_u64().unwrap() > 0, "{counters}");
    assert!(counters["slow"].as_u64().unwrap() > 0, "{counters}");
    assert!(counters["duplicates"].as_u64().unwrap() > 0, "{counters}");
    assert!(read(&brokers, &dlq, true).is_empty());
}

mod reqwest {
    /// A GET from a synchronous test.
    pub fn blocking_get(url: &str) -> serde_json::Value {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { ::reqwest::get(url).await.unwrap().json().await.unwrap() })
    }
}
