//! Source and sink contracts of the duijie hub, and the transports that
//! implement them.
//!
//! A connector fetches raw records from an external system and knows nothing
//! of Kafka, mappings or schemas. The runtime (in the `duijie` crate) owns the
//! schedule, retries, acknowledgement and cursor commits, once, for every
//! connector.
//!
//! The whole contract is small:
//! - [`Source::open`] is given the last committed [`Cursor`];
//! - [`Source::next_batch`] yields [`Batch`]es of [`RawRecord`]s, each with
//!   the cursor that covers it;
//! - [`Source::committed`] is called once the runtime has made a batch
//!   durable (broker acknowledged, cursor stored), so that a source can do
//!   its own housekeeping (a file drop moves a finished file to `done/`).
//!
//! A source that is pushed to over a connection it holds (MQTT) implements
//! [`Subscription`] instead: it hands each delivery to the runtime's
//! [`Intake`] and acknowledges it to its sender once that returned.
//! [`registry`] holds the one list of transports.

#![forbid(unsafe_code)]

mod error;
pub mod file_drop;
pub mod http;
/// The HTTP sources' authentication schemes ([`http::auth`]).
pub use http::auth;
pub mod http_poll;
pub mod mqtt;
pub mod push;
mod record;
pub mod registry;
pub mod signature;
pub mod soap_poll;
pub mod sql_poll;
pub mod text;
pub mod webhook;
pub mod xml_split;

pub use error::{ErrorClass, SourceError};
pub use push::{Intake, Pushed, Subscription, Taken};
pub use record::{Batch, Cursor, PayloadFormat, RawRecord, RawReject};

use async_trait::async_trait;

/// A polling or streaming source of raw records.
#[async_trait]
pub trait Source: Send + std::fmt::Debug {
    /// Positions the source just after `committed` (or at the beginning when
    /// nothing was committed yet). Called at start and again after the
    /// runtime abandons in-flight batches, so a source must be able to rewind
    /// to any cursor it emitted.
    async fn open(&mut self, committed: Option<Cursor>) -> Result<(), SourceError>;

    /// The next batch after the last one emitted, or `None` when the source
    /// has nothing more right now (the runtime then waits for the next
    /// scheduled poll).
    async fn next_batch(&mut self, max_records: usize) -> Result<Option<Batch>, SourceError>;

    /// A cursor that starts reading at `watermark` (the source's own time
    /// format, e.g. `2026-01-01 00:00:00`), for a backfill; `None` when the
    /// source cannot start from a time.
    fn cursor_at(&self, watermark: &str) -> Option<Cursor> {
        let _ = watermark;
        None
    }

    /// The watermark a cursor of this source stands at, if it has one.
    fn watermark_of(&self, cursor: &Cursor) -> Option<String> {
        cursor
            .0
            .get("watermark")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    }

    /// The batch that ended at `cursor` is durable: every record in it was
    /// acknowledged by the bus and the cursor itself is stored.
    async fn committed(&mut self, cursor: &Cursor) -> Result<(), SourceError> {
        let _ = cursor;
        Ok(())
    }
}

// The transport kit: what a transport implements and what it builds
// (the list of transports, `registry`, erases them).

/// How the runtime drives a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drive {
    /// Polled on the pipeline's schedule, resuming from a stored cursor.
    Polled,
    /// Served by the hub's own HTTP server (a webhook); no schedule.
    Served,
    /// Holds its own connection and is pushed to (an MQTT subscription); no
    /// schedule. Its acknowledgement to the sender is its cursor.
    Subscribed,
}

/// One transport: the `kind` a pipeline names, its typed configuration and
/// how to build it.
pub trait Transport {
    /// The `source.kind` a pipeline names.
    const KIND: &'static str;
    /// How the runtime drives it.
    const DRIVE: Drive;
    /// The rest of the `[pipelines.X.source]` table.
    type Config: serde::de::DeserializeOwned + Clone + std::fmt::Debug + PartialEq + Send + Sync;
    /// Checks what the types cannot, without I/O.
    fn validate(config: &Self::Config) -> Result<(), String>;
    /// Makes relative paths relative to the directory of the config file.
    fn resolve_paths(config: &mut Self::Config, base: &std::path::Path) {
        let _ = (config, base);
    }
    /// The source, ready to run.
    fn build(config: &Self::Config) -> Result<BuiltSource, SourceError>;
}

/// A source ready to run, as its [`Drive`] says.
#[derive(Debug)]
pub enum BuiltSource {
    Poll(Box<dyn Source>),
    Serve(std::sync::Arc<crate::webhook::Webhook>),
    Subscribe(Box<dyn Subscription>),
}
