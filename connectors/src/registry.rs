//! The one list of source kinds. Config loading, validation and the runtime
//! all go through here, so adding a transport touches this file and its own
//! module, nothing else.

use crate::file_drop::{FileDrop, FileDropConfig};
use crate::http_poll::{HttpPoll, HttpPollConfig};
use crate::soap_poll::{SoapPoll, SoapPollConfig};
use crate::sql_poll::{SqlPoll, SqlPollConfig};
use crate::webhook::{Webhook, WebhookConfig};
use crate::{Source, SourceError};
use serde::Deserialize;
use std::path::Path;

/// Every source kind a pipeline may name in `source.kind`.
pub const SOURCE_KINDS: &[&str] = &["file_drop", "http_poll", "soap_poll", "sql_poll", "webhook"];

/// A source's configuration, by kind.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    FileDrop(FileDropConfig),
    HttpPoll(HttpPollConfig),
    SoapPoll(SoapPollConfig),
    SqlPoll(SqlPollConfig),
    /// Pushed to the hub's HTTP server, not polled.
    Webhook(WebhookConfig),
}

impl SourceConfig {
    /// Deserializes the kind-specific table (without its `kind` key).
    /// `Ok(None)` means the kind is unknown.
    pub fn deserialize_kind<'de, D>(kind: &str, table: D) -> Result<Option<Self>, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        Ok(Some(match kind {
            "file_drop" => Self::FileDrop(FileDropConfig::deserialize(table)?),
            "http_poll" => Self::HttpPoll(HttpPollConfig::deserialize(table)?),
            "soap_poll" => Self::SoapPoll(SoapPollConfig::deserialize(table)?),
            "sql_poll" => Self::SqlPoll(SqlPollConfig::deserialize(table)?),
            "webhook" => Self::Webhook(WebhookConfig::deserialize(table)?),
            _ => return Ok(None),
        }))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::FileDrop(_) => "file_drop",
            Self::HttpPoll(_) => "http_poll",
            Self::SoapPoll(_) => "soap_poll",
            Self::SqlPoll(_) => "sql_poll",
            Self::Webhook(_) => "webhook",
        }
    }

    /// Checks what the types cannot, without I/O.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::FileDrop(c) => c.validate(),
            Self::HttpPoll(c) => c.validate(),
            Self::SoapPoll(c) => c.validate(),
            Self::SqlPoll(c) => c.validate(),
            Self::Webhook(c) => c.validate(),
        }
    }

    /// Makes relative paths relative to the directory of the config file.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Self::FileDrop(c) = self
            && c.dir.is_relative()
        {
            c.dir = base.join(&c.dir);
        }
    }

    /// Whether records are pushed to the hub rather than polled.
    pub fn is_push(&self) -> bool {
        matches!(self, Self::Webhook(_))
    }

    /// The source as the runtime drives it.
    pub fn build(&self) -> Result<BuiltSource, SourceError> {
        Ok(match self {
            Self::FileDrop(c) => BuiltSource::Poll(Box::new(FileDrop::new(c.clone())?)),
            Self::HttpPoll(c) => BuiltSource::Poll(Box::new(HttpPoll::new(c.clone())?)),
            Self::SoapPoll(c) => BuiltSource::Poll(Box::new(SoapPoll::new(c.clone())?)),
            Self::SqlPoll(c) => BuiltSource::Poll(Box::new(SqlPoll::new(c.clone())?)),
            Self::Webhook(c) => BuiltSource::Push(std::sync::Arc::new(Webhook::new(c.clone()))),
        })
    }
}

/// A source ready to run: polled on a schedule, or served for pushes.
#[derive(Debug)]
pub enum BuiltSource {
    Poll(Box<dyn Source>),
    Push(std::sync::Arc<Webhook>),
}
