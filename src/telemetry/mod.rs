//! Logging: human-readable by default, JSON lines with `--log-format json`.
//! `RUST_LOG` filters as usual (default `info`). And the one latency
//! histogram the metrics use ([`Latency`]).

pub mod trace;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::io::Write;
use tracing_subscriber::EnvFilter;

/// Standard error, or a file, with every known secret replaced by `***`.
#[derive(Debug, Clone, Default)]
struct Redacting(Option<std::sync::Arc<std::sync::Mutex<std::fs::File>>>);

/// One log line's bytes, redacted when written out.
#[derive(Debug, Default)]
struct RedactingLine(
    Vec<u8>,
    Option<std::sync::Arc<std::sync::Mutex<std::fs::File>>>,
);

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
        let line = crate::secrets::redact(&text);
        match &self.1 {
            Some(file) => {
                if let Ok(mut f) = file.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Redacting {
    type Writer = RedactingLine;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingLine(Vec::new(), self.0.clone())
    }
}

pub fn init(format: &str) {
    install(
        format,
        Redacting(None),
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
}

/// [`init`], the log going to `path` (appended; its folder made) instead of
/// standard error: for the demo, whose report is on the terminal.
pub fn init_to_file(format: &str, path: &std::path::Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    install(
        format,
        Redacting(Some(std::sync::Arc::new(std::sync::Mutex::new(file)))),
        false,
    );
    Ok(())
}

fn install(format: &str, writer: Redacting, ansi: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
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
