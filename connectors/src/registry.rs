//! The one list of source kinds. Config loading, validation and the runtime
//! all go through here, so adding a transport touches this file and its own
//! module, nothing else.

use crate::file_drop::{FileDrop, FileDropConfig};
use crate::http_poll::{HttpPoll, HttpPollConfig};
use crate::soap_poll::{SoapPoll, SoapPollConfig};
use crate::{Source, SourceError};
use serde::Deserialize;
use std::path::Path;

/// Every source kind a pipeline may name in `source.kind`.
pub const SOURCE_KINDS: &[&str] = &["file_drop", "http_poll", "soap_poll"];

/// A source's configuration, by kind.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    FileDrop(FileDropConfig),
    HttpPoll(HttpPollConfig),
    SoapPoll(SoapPollConfig),
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
            _ => return Ok(None),
        }))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::FileDrop(_) => "file_drop",
            Self::HttpPoll(_) => "http_poll",
            Self::SoapPoll(_) => "soap_poll",
        }
    }

    /// Checks what the types cannot, without I/O.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Self::FileDrop(c) => c.validate(),
            Self::HttpPoll(c) => c.validate(),
            Self::SoapPoll(c) => c.validate(),
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

    /// The source as the runtime drives it.
    pub fn build(&self) -> Result<Box<dyn Source>, SourceError> {
        Ok(match self {
            Self::FileDrop(c) => Box::new(FileDrop::new(c.clone())?),
            Self::HttpPoll(c) => Box::new(HttpPoll::new(c.clone())?),
            Self::SoapPoll(c) => Box::new(SoapPoll::new(c.clone())?),
        })
    }
}
