//! Traces across the bus: one urban case polled from the sandbox over
//! HTTP, mapped, produced to Apache Kafka and pushed to a department's
//! webhook is one trace at an OTLP receiver, and the `traceparent` the
//! department gets is that trace's.

use crate::common::*;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use prost::Message;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A span as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default)]
struct Collected {
    spans: Arc<Mutex<Vec<Received>>>,
    /// The department webhook's requests: their headers.
    requests: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
}

async fn take_traces(
    axum::extract::State(c): axum::extract::State<Collected>,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut spans = c.spans.lock().unwrap();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            for s in scope.spans {
                let attributes = s
                    .attributes
                    .iter()
                    .map(|kv| {
                        let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(Any::StringValue(t)) => t.clone(),
                            Some(Any::IntValue(i)) => i.to_string(),
                            Some(Any::BoolValue(b)) => b.to_string(),
                            other => format!("{other:?}"),
                        };
                        (kv.key.clone(), value)
                    })
                    .collect();
                spans.push(Received {
                    name: s.name,
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent_span_id: hex::encode(&s.parent_span_id),
                    attributes,
                });
            }
        }
    }
    (
        axum::http::StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

async fn take_hook(
    axum::extract::State(c): axum::extract::State<Collected>,
    headers: axum::http::HeaderMap,
) -> axum::Json<serde_json::Value> {
    c.requests.lock().unwrap().push(
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
    );
    axum::Json(serde_json::json!({ "status": "accepted" }))
}

/// An OTLP/HTTP receiver (`/v1/traces`, protobuf) and a department's
/// webhook (`/hook`) on one loopback port.
fn receivers() -> (String, Collected) {
    let collected = Collected::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(take_traces))
        .route("/hook", axum::routing::post(take_hook))
        .with_state(collected.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        })
    });
    (addr, collected)
}

#[test]
fn one_urban_case_is_one_trace_from_the_poll_to_the_departments_webhook() {
    let brokers = brokers();
    let sandbox = start_sandbox(duijie_sandbox::SandboxConfig {
        urban: duijie_sandbox::urban::Settings {
            cases: 1,
            changes_per_sec: 0,
        },
        bad_rate: 0.0,
        ..duijie_sandbox::SandboxConfig::default()
    });
    let (addr, collected) = receivers();
    let topic = unique("canonical.urban_case");
    let d = TestDeployment::new(
        &brokers,
        &format!(
            r#"[telemetry]
otlp = "http://{addr}"

[pipelines.urban]
system = "digital_urban"
mapping = "urban_case"
topic = "{topic}"
schedule = "* * * * * *"

[pipelines.urban.source]
kind = "http_poll"
url = "http://{sandbox}/dcm/api/cases"
records_pointer = "/data/rows"
paging = "keyset"
page_size = 50
watermark_field = "updateTime"
watermark_param = "updatedAfter"
id_field = "taskNum"
after_id_param = "afterTaskNum"

[deliveries.street]
topic = "{topic}"
department = "street"
transform = {{ kind = "fields", fields = ["category", "status"] }}
target = {{ kind = "webhook", url = "http://{addr}/hook", secret = "{secret}" }}
"#,
            secret = "a-department-secret-of-32-bytes!"
        ),
    );
    let hub = d.spawn();
    wait_until(
        Duration::from_secs(60),
        "the department to get the case",
        || !collected.requests.lock().unwrap().is_empty(),
    );
    let records = read(&brokers, &topic, false);
    assert_eq!(records.len(), 1, "one case, one record");
    let key = String::from_utf8(records[0].key.clone().unwrap()).unwrap();
    let header = records[0]
        .headers
        .get("traceparent")
        .cloned()
        .expect("the record carries its trace");
    let trace_id = header.split('-').nth(1).unwrap().to_owned();
    let produce_id = header.split('-').nth(2).unwrap().to_owned();
    assert!(
        header.starts_with("00-") && header.ends_with("-01"),
        "{header}"
    );
    let sent = collected.requests.lock().unwrap()[0]
        .get("traceparent")
        .cloned()
        .expect("the webhook request carries the trace");
    assert_eq!(
        sent.split('-').nth(1),
        Some(trace_id.as_str()),
        "the department's request continues the record's trace"
    );
    // Spans are exported in batches, about every second.
    let trace = || -> Vec<Received> {
        collected
            .spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    };
    wait_until(
        Duration::from_secs(30),
        "the trace's spans at the OTLP receiver",
        || {
            let names: std::collections::BTreeSet<String> =
                trace().into_iter().map(|s| s.name).collect();
            ["fetch", "map", "produce", "deliver"]
                .iter()
                .all(|n| names.contains(*n))
        },
    );
    terminate(hub);
    let spans = trace();
    let one = |name: &str| {
        let found: Vec<&Received> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name} span: {spans:#?}");
        found[0].clone()
    };
    let (fetch, map, produce, deliver) = (one("fetch"), one("map"), one("produce"), one("deliver"));
    assert_eq!(fetch.parent_span_id, "", "the poll starts the trace");
    assert_eq!(fetch.attributes["duijie.pipeline"], "urban");
    assert_eq!(fetch.attributes["duijie.connector"], "http_poll");
    assert_eq!(map.parent_span_id, fetch.span_id);
    assert_eq!(map.attributes["duijie.mapping"], "urban_case");
    assert_eq!(produce.parent_span_id, fetch.span_id);
    assert_eq!(
        produce.span_id, produce_id,
        "the record's header is the produce span"
    );
    assert_eq!(produce.attributes["messaging.destination.name"], topic);
    assert_eq!(deliver.parent_span_id, produce.span_id);
    assert_eq!(deliver.attributes["messaging.kafka.message.key"], key);
    assert_eq!(deliver.attributes["duijie.delivery"], "street");
    assert_eq!(deliver.attributes["duijie.outcome"], "Delivered");
    assert_eq!(
        sent.split('-').nth(2),
        Some(deliver.span_id.as_str()),
        "the receiver's parent is the deliver span"
    );
}
