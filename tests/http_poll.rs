//! HTTP poll through the sandbox's digital urban management API, with its
//! faults on: HTTP 500s, answers slower than the client's timeout, rows
//! sent twice. Every case ends up in the topic; nothing in the DLQ.

use crate::common::*;
use duijie_sandbox::{Faults, SandboxConfig};
use std::collections::BTreeSet;
use std::time::Duration;

#[test]
fn every_case_arrives_despite_500s_timeouts_and_duplicate_rows() {
    let brokers = brokers();
    let sandbox = start_sandbox(SandboxConfig {
        faults: Faults {
            error_rate: 0.3,
            slow_rate: 0.3,
            slow_ms: 1500,
            duplicate_rate: 0.1,
            // Whatever the dice say, the first requests fail and stall.
            slow_next: 2,
            fail_next: 3,
        },
        urban: duijie_sandbox::urban::Settings {
            cases: 1500,
            changes_per_sec: 0,
        },
        bad_rate: 0.0,
        seed: 3,
        ..SandboxConfig::default()
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
    let counters = get_json(&format!("http://{sandbox}/sandbox/counters"));
    assert!(counters["errors"].as_u64().unwrap() >= 3, "{counters}");
    assert!(counters["slow"].as_u64().unwrap() >= 2, "{counters}");
    assert!(counters["duplicates"].as_u64().unwrap() > 0, "{counters}");
    assert!(read(&brokers, &dlq, true).is_empty());
}
