//! Traces across the bus: W3C Trace Context (`traceparent`) on every
//! record, and OpenTelemetry spans exported over OTLP when the deployment
//! says where (`[telemetry] otlp`).
//!
//! A fetch starts a trace (one per poll's batch, one per pushed
//! delivery); the batch is mapped and produced under it, and each record
//! carries the produce span's context in its `traceparent` Kafka header. A
//! delivery continues the record's trace in its deliver span and sends
//! the receiver that span's `traceparent`; the keepers and the desk continue
//! it on what they write about a record. Without an OTLP endpoint nothing
//! is recorded or exported, but the ids are still made and carried (flag
//! `00`, not sampled), so a later hub with an endpoint, or the receiver,
//! can still tie its spans to the record.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue, global};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

/// The Kafka header and the HTTP header that carry a record's trace.
pub const HEADER: &str = "traceparent";

/// `[telemetry]`: where spans go.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// An OTLP/HTTP (protobuf) endpoint, `http://collector:4318` (spans
    /// are posted to `/v1/traces` under it) or the full traces URL. None:
    /// nothing is exported.
    #[serde(default)]
    pub otlp: Option<String>,
}

impl TelemetryConfig {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.otlp {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| format!("`otlp` is not a URL ({e}): {url}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("`otlp` must be an http:// or https:// URL: {url}"));
            }
        }
        Ok(())
    }

    /// The URL spans are posted to.
    pub fn traces_url(&self) -> Option<String> {
        let url = self.otlp.as_deref()?.trim_end_matches('/');
        Some(if url.ends_with("/v1/traces") {
            url.to_owned()
        } else {
            format!("{url}/v1/traces")
        })
    }
}

/// The hub's tracer provider, installed for the process; spans still
/// queued are exported when it is shut down.
#[derive(Debug)]
pub struct Traces(SdkTracerProvider);

impl Traces {
    /// Installs the provider: exporting to `config`'s endpoint, or making
    /// ids only.
    pub fn install(config: Option<&TelemetryConfig>, hub: &str) -> Result<Self, String> {
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("duijie")
            .with_attribute(KeyValue::new("service.instance.id", hub.to_owned()))
            .build();
        let builder = SdkTracerProvider::builder().with_resource(resource);
        let builder = match config.and_then(TelemetryConfig::traces_url) {
            Some(url) => {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_endpoint(url)
                    .with_timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| format!("the OTLP exporter: {e}"))?;
                // A bounded queue: spans beyond it are dropped (and
                // counted by the SDK), never waited for.
                let batch = BatchConfigBuilder::default()
                    .with_max_queue_size(65_536)
                    .with_max_export_batch_size(2_048)
                    .with_scheduled_delay(Duration::from_secs(1))
                    .build();
                builder
                    .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
                    .with_span_processor(
                        BatchSpanProcessor::builder(exporter)
                            .with_batch_config(batch)
                            .build(),
                    )
            }
            None => builder.with_sampler(Sampler::AlwaysOff),
        };
        let provider = builder.build();
        global::set_tracer_provider(provider.clone());
        Ok(Self(provider))
    }

    /// Exports what is queued (bounded by the exporter's timeout) and stops.
    pub async fn shutdown(self) {
        let provider = self.0;
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

/// A span begun at `start` under `parent` (a new trace when `parent` has
/// none), as a context to end it by and to begin its children under.
pub fn begin(
    name: &'static str,
    kind: SpanKind,
    parent: &Context,
    start: SystemTime,
    attributes: Vec<KeyValue>,
) -> Context {
    let tracer = global::tracer("duijie");
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_start_time(start)
        .with_attributes(attributes)
        .start_with_context(&tracer, parent);
    parent.with_span(span)
}

/// Ends the span of `cx`, with `error` as its status when there is one.
pub fn end(cx: &Context, attributes: Vec<KeyValue>, error: Option<String>) {
    let span = cx.span();
    span.set_attributes(attributes);
    if let Some(e) = error {
        span.set_status(Status::error(e));
    }
    span.end();
}

/// The `traceparent` value of `cx`'s span; none when it has no valid one
/// (no provider installed: a dry run).
pub fn traceparent(cx: &Context) -> Option<String> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    carrier.remove(HEADER)
}

/// The context a record's headers carry (its `traceparent`), to continue
/// its trace; an empty context (a new trace) when it carries none or one
/// that does not parse.
pub fn continued(headers: &BTreeMap<String, String>) -> Context {
    match headers.get(HEADER) {
        Some(value) => continued_from(value),
        None => Context::new(),
    }
}

/// The context a `traceparent` value names.
fn continued_from(traceparent: &str) -> Context {
    let carrier = HashMap::from([(HEADER.to_owned(), traceparent.to_owned())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// What a room (a keeper, the desk) wrote about a record: a span `name`
/// continuing the record's trace (`about`, the `traceparent` it carried),
/// ended now, and the `traceparent` to write on what it wrote. None when
/// the record carried no trace (or the room acts on several records at
/// once): then nothing is continued.
pub fn acted(name: &'static str, about: Option<&str>, topic: &str, record: &str) -> Option<String> {
    let parent = continued_from(about?);
    let cx = begin(
        name,
        SpanKind::Producer,
        &parent,
        SystemTime::now(),
        vec![
            KeyValue::new("messaging.destination.name", topic.to_owned()),
            key(record),
        ],
    );
    end(&cx, vec![], None);
    traceparent(&cx)
}

/// The record's key, under the attribute name the messaging conventions
/// give it.
pub fn key(key: &str) -> KeyValue {
    KeyValue::new("messaging.kafka.message.key", key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_read_back_continues_the_same_trace() {
        let _ = Traces::install(None, "test").expect("installs");
        let root = begin(
            "fetch",
            SpanKind::Client,
            &Context::new(),
            SystemTime::now(),
            vec![],
        );
        let header = traceparent(&root).expect("a provider makes valid ids");
        let parts: Vec<&str> = header.split('-').collect();
        assert_eq!(parts.len(), 4, "{header}");
        assert_eq!((parts[0], parts[1].len(), parts[2].len()), ("00", 32, 16));
        assert_eq!(parts[3], "00", "nothing is sampled without an endpoint");
        let headers = BTreeMap::from([(HEADER.to_owned(), header.clone())]);
        let child = begin(
            "deliver",
            SpanKind::Client,
            &continued(&headers),
            SystemTime::now(),
            vec![],
        );
        let child_header = traceparent(&child).expect("valid");
        assert_eq!(child_header.split('-').nth(1), Some(parts[1]), "same trace");
        assert_ne!(
            child_header.split('-').nth(2),
            Some(parts[2]),
            "a span of its own"
        );
        let garbage = BTreeMap::from([(HEADER.to_owned(), "00-zz-yy-01".to_owned())]);
        assert!(traceparent(&continued(&garbage)).is_none());
    }

    #[test]
    fn the_endpoint_gets_the_traces_path_once() {
        let c = |u: &str| TelemetryConfig {
            otlp: Some(u.into()),
        };
        assert_eq!(
            c("http://127.0.0.1:4318").traces_url().as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!(
            c("http://c:4318/v1/traces/").traces_url().as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert!(c("ftp://c").validate().is_err());
        assert!(c("not a url").validate().is_err());
        assert!(TelemetryConfig::default().validate().is_ok());
    }
}
