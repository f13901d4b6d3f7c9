//! The hub's HTTP surface against a hostile sender: replayed webhook
//! deliveries sent at the same time, a client that sends half its request
//! head, a signed body larger than the broker takes, and pull feeds probed
//! for department names.

use crate::common::*;
use duijie_connectors::webhook::sign;
use serde_json::json;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn webhook_hub(http_extra: &str, source_extra: &str) -> (TestDeployment, String, String) {
    let port = free_port();
    let topic = unique("canonical.grid");
    let dlq = unique("dlq.urgent");
    let d = TestDeployment::new(
        &brokers(),
        &format!(
            r#"[http]
listen = "127.0.0.1:{port}"
{http_extra}

[pipelines.grid_urgent]
system = "grid"
mapping = "grid_event"
topic = "{topic}"
dlq_topic = "{dlq}"

[pipelines.grid_urgent.source]
kind = "webhook"
path = "/hooks/grid/urgent"
secret = "grid-urgent-secret-for-tests"
{source_extra}
"#
        ),
    );
    (d, format!("127.0.0.1:{port}"), topic)
}

fn urgent_event(id: &str, content: &str) -> String {
    json!({
        "eventId": id, "gridCode": "420502000101", "eventType": "03", "eventTypeName": "安全生产隐患",
        "content": content, "reportTime": "2026-11-28 09:15:00", "updateTime": "2026-11-28 09:15:00.000",
        "status": "0", "urgentFlag": "1", "urgentReason": "可能引发爆炸", "reporter": {"name": "李娜", "phone": "13871234567"}
    })
    .to_string()
}

fn signed_post(
    client: &reqwest::Client,
    url: &str,
    body: String,
) -> impl std::future::Future<Output = u16> + use<> {
    let ts = chrono::Utc::now().timestamp();
    let request = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Timestamp", ts.to_string())
        .header(
            "X-Signature",
            sign("grid-urgent-secret-for-tests", ts, body.as_bytes()),
        )
        .body(body);
    async move { request.send().await.unwrap().status().as_u16() }
}

#[test]
fn five_identical_signed_deliveries_at_once_put_one_record_on_the_bus() {
    let (d, addr, topic) = webhook_hub("", "");
    let hub = d.spawn();
    wait_listening(&addr);
    let url = format!("http://{addr}/hooks/grid/urgent");
    let body = urgent_event("WG20261201REPLAY1", "储罐区可燃气体泄漏");
    let mut statuses = block_on(async {
        let client = reqwest::Client::new();
        // One signature, one timestamp: five copies of the same delivery.
        let ts = chrono::Utc::now().timestamp();
        let signature = sign("grid-urgent-secret-for-tests", ts, body.as_bytes());
        let sends = (0..5).map(|_| {
            client
                .post(&url)
                .header("Content-Type", "application/json")
                .header("X-Timestamp", ts.to_string())
                .header("X-Signature", signature.clone())
                .body(body.clone())
                .send()
        });
        futures::future::join_all(sends)
            .await
            .into_iter()
            .map(|r| r.unwrap().status().as_u16())
            .collect::<Vec<_>>()
    });
    statuses.sort();
    assert_eq!(statuses, vec![200, 409, 409, 409, 409]);
    terminate(hub);
    let records = read(&d.brokers, &topic, false);
    assert_eq!(records.len(), 1, "copies of one delivery on the bus");
}

#[test]
fn a_client_that_sends_half_its_request_head_is_cut_off_at_the_header_timeout() {
    let (d, addr, _) = webhook_hub("header_read_timeout = \"1s\"", "");
    let hub = d.spawn();
    wait_listening(&addr);
    let wait_for_close = |mut s: std::net::TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return started.elapsed(),
                Ok(_) => continue, // the 408 or a response, then the close
                Err(e) => panic!("the connection was still open after 10 s: {e}"),
            }
        }
    };
    // Half a head (slowloris), then silence.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"POST /hooks/grid/urgent HTTP/1.1\r\nHost: x\r\nX-Tim")
        .unwrap();
    let closed = wait_for_close(s);
    assert!(
        closed >= Duration::from_millis(800) && closed < Duration::from_secs(4),
        "closed after {closed:?}, not at the 1 s header timeout"
    );
    // An idle kept-alive connection is closed by the same timer.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let closed = wait_for_close(s);
    assert!(
        closed < Duration::from_secs(4),
        "an idle connection stayed open {closed:?}"
    );
    terminate(hub);
}

#[test]
fn a_signed_delivery_larger_than_the_broker_takes_is_refused_413_and_the_pipeline_goes_on() {
    // Configured larger than the broker's message size: lowered at start.
    let (d, addr, topic) = webhook_hub("", "max_body_bytes = 4194304");
    let hub = d.spawn();
    wait_listening(&addr);
    let url = format!("http://{addr}/hooks/grid/urgent");
    let client = reqwest::Client::new();
    let huge = urgent_event("WG20261201HUGE", &"泄".repeat(400_000)); // 1.2 MB of UTF-8
    assert!(huge.len() > 1_000_000);
    assert_eq!(block_on(signed_post(&client, &url, huge)), 413);
    // Just under the limit, mappable: accepted (or dead-lettered), never 503.
    let big = urgent_event("WG20261201BIG", &"泄".repeat(250_000)); // 750 kB
    let status = block_on(signed_post(&client, &url, big));
    assert!(
        matches!(status, 200 | 202),
        "a body the broker takes got {status}"
    );
    let small = urgent_event("WG20261201SMALL", "储罐区可燃气体泄漏");
    assert_eq!(block_on(signed_post(&client, &url, small)), 200);
    terminate(hub);
    let ids: Vec<String> = decoded(&d.brokers, &topic)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(ids.contains(&"grid:WG20261201SMALL".to_owned()), "{ids:?}");
    assert!(!ids.contains(&"grid:WG20261201HUGE".to_owned()));
}
