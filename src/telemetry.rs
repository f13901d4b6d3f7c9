//! Logging: human-readable by default, JSON lines with `--log-format json`.
//! `RUST_LOG` filters as usual (default `info`). And the one latency
//! histogram the metrics use ([`Latency`]).

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::io::Write;
use tracing_subscriber::EnvFilter;

/// Standard error, with every known secret replaced by `***`.
#[derive(Debug, Clone, Copy)]
struct Redacting;

/// One log line's bytes, redacted when written out.
#[derive(Debug, Default)]
struct RedactingLine(Vec<u8>);

impl Write for RedactingLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactingLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::stderr().write_all(crate::secrets::redact(&text).as_bytes());
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Redacting {
    type Writer = RedactingLine;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingLine::default()
    }
}

pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Redacting)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// A latency histogram in seconds, 1 ms to about 2 minutes in steps of 50%.
#[derive(Debug)]
pub struct Latency(pub Histogram);

impl Default for Latency {
    fn default() -> Self {
        Self(Histogram::new(exponential_buckets(0.001, 1.5, 30)))
    }
}

impl Latency {
    pub fn observe_ms(&self, ms: i64) {
        self.0.observe(ms.max(0) as f64 / 1000.0);
    }
}
