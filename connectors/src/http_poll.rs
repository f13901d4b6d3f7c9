//! HTTP poll: a JSON list API read page by page from an incremental
//! watermark.
//!
//! Two paging styles are supported:
//! - `keyset` (preferred): the request carries the `(watermark, id)` of the
//!   last record taken and the server returns the records strictly after it,
//!   ordered by `(watermark, id)`. Resumable at any page, immune to records
//!   arriving mid-scan.
//! - `page`: a page number inside a scan that starts at the committed
//!   watermark (`since`, inclusive). The watermark advances to the largest
//!   one seen when a scan completes; records sitting exactly on the new
//!   watermark are remembered so the next scan does not hand them over
//!   again.
//!
//! Each record is handed on with its exact bytes as the server sent them.

use crate::http::{Endpoint, Request};
use crate::record::now_ms;
use crate::{Batch, Cursor, PayloadFormat, RawRecord, RawReject, Source, SourceError};
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::time::Duration;

/// Paging style of the list endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Paging {
    Keyset,
    Page,
}

/// Configuration of an HTTP poll source.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpPollConfig {
    /// URL of the list endpoint, without the paging parameters.
    pub url: String,
    /// JSON pointer to the array of records in a response, e.g. `/data/rows`.
    /// Empty when the response body is the array itself.
    #[serde(default)]
    pub records_pointer: String,
    /// `keyset` or `page`.
    pub paging: Paging,
    /// Records per request.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// Query parameter carrying the page size.
    #[serde(default = "default_page_size_param")]
    pub page_size_param: String,
    /// Page mode: query parameter carrying the page number.
    #[serde(default = "default_page_param")]
    pub page_param: String,
    /// Page mode: number of the first page (0 or 1, by API).
    #[serde(default = "default_first_page")]
    pub first_page: u64,
    /// Field of each record holding its last-update time. Values are compared
    /// as the server writes them, so they must sort as text
    /// (`2026-11-01 08:00:00`, or zero-padded epoch numbers).
    pub watermark_field: String,
    /// Query parameter carrying the watermark.
    pub watermark_param: String,
    /// Watermark to start from when nothing was committed yet.
    #[serde(default)]
    pub initial_watermark: Option<String>,
    /// Field of each record holding its id.
    pub id_field: String,
    /// Keyset mode: query parameter carrying the id after which to continue.
    #[serde(default = "default_after_id_param")]
    pub after_id_param: String,
    /// Request timeout.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How requests are authenticated ([`crate::http::auth`]): a login token,
    /// a signed query, HMAC headers.
    #[serde(default)]
    pub auth: Option<crate::http::auth::AuthConfig>,
    /// The older form of `auth = { scheme = "login", … }`; still read.
    #[serde(default)]
    pub login: Option<crate::http::LoginConfig>,
    /// A record larger than this goes to the dead-letter topic.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// A response larger than this is refused (lower `page_size`).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

fn default_page_size() -> usize {
    500
}
fn default_page_size_param() -> String {
    "pageSize".into()
}
fn default_page_param() -> String {
    "page".into()
}
fn default_first_page() -> u64 {
    1
}
fn default_after_id_param() -> String {
    "afterId".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_record_bytes() -> usize {
    1 << 20
}
fn default_max_response_bytes() -> usize {
    64 << 20
}

impl HttpPollConfig {
    pub fn validate(&self) -> Result<(), String> {
        reqwest::Url::parse(&self.url).map_err(|e| format!("`url` is not a URL: {e}"))?;
        if let Some(auth) = crate::http::auth::resolve(&self.auth, &self.login)? {
            auth.validate()?;
        }
        if self.page_size == 0 {
            return Err("`page_size` must be greater than 0".into());
        }
        if !self.records_pointer.is_empty() && !self.records_pointer.starts_with('/') {
            return Err("`records_pointer` must be a JSON pointer starting with `/`".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct HttpCursor {
    /// Keyset: `(watermark, id)` of the last record taken. Page mode: the
    /// watermark the current or next scan starts from.
    #[serde(default)]
    watermark: Option<String>,
    #[serde(default)]
    after_id: Option<String>,
    /// Page mode, inside a scan: the next page to read.
    #[serde(default)]
    page: Option<u64>,
    /// Page mode, inside a scan: the largest watermark seen so far.
    #[serde(default)]
    scan_max: Option<String>,
    /// Page mode, inside a scan: ids seen with watermark `scan_max`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    scan_ids_at_max: Vec<String>,
    /// Page mode: ids already taken whose watermark equals `watermark`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    taken_at_watermark: Vec<String>,
}

/// A JSON list API polled from a watermark.
#[derive(Debug)]
pub struct HttpPoll {
    config: HttpPollConfig,
    endpoint: Endpoint,
    position: HttpCursor,
    /// The last request came back short: report "nothing more" once.
    caught_up: bool,
}

impl HttpPoll {
    pub fn new(config: HttpPollConfig) -> Result<Self, SourceError> {
        config.validate().map_err(SourceError::permanent)?;
        let auth = crate::http::auth::resolve_for_source(&config.auth, &config.login)
            .map_err(SourceError::permanent)?;
        let endpoint = Endpoint::new(config.timeout)?
            .auth(auth.as_ref())
            .headers(config.headers.clone())
            .max_response_bytes(config.max_response_bytes);
        Ok(Self {
            config,
            endpoint,
            position: HttpCursor::default(),
            caught_up: false,
        })
    }

    fn query(&self) -> Vec<(String, String)> {
        let c = &self.config;
        let mut q = vec![(c.page_size_param.clone(), c.page_size.to_string())];
        if let Some(w) = &self.position.watermark {
            q.push((c.watermark_param.clone(), w.clone()));
        }
        match c.paging {
            Paging::Keyset => {
                if let Some(id) = &self.position.after_id {
                    q.push((c.after_id_param.clone(), id.clone()));
                }
            }
            Paging::Page => {
                let page = self.position.page.unwrap_or(c.first_page);
                q.push((c.page_param.clone(), page.to_string()));
            }
        }
        q
    }
}

/// The records array at `pointer` inside `body`, each element as its raw
/// bytes.
pub fn records_at<'a>(body: &'a str, pointer: &str) -> Result<Vec<&'a RawValue>, String> {
    let mut current: &'a RawValue =
        serde_json::from_str(body).map_err(|e| format!("response is not JSON: {e}"))?;
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        let object: BTreeMap<&'a str, &'a RawValue> = serde_json::from_str(current.get())
            .map_err(|_| format!("response has no object where `{pointer}` expects one"))?;
        current = object
            .get(segment.as_str())
            .copied()
            .ok_or_else(|| format!("response has no `{segment}` (records_pointer `{pointer}`)"))?;
    }
    if current.get() == "null" {
        return Ok(Vec::new());
    }
    serde_json::from_str(current.get()).map_err(|_| format!("`{pointer}` is not an array"))
}

/// A scalar field of a JSON object as text (numbers keep their JSON form).
pub fn field_text(record: &RawValue, field: &str) -> Option<String> {
    let object: BTreeMap<&str, serde_json::Value> = serde_json::from_str(record.get()).ok()?;
    match object.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[async_trait]
impl Source for HttpPoll {
    fn cursor_at(&self, watermark: &str) -> Option<Cursor> {
        Some(Cursor::new(
            serde_json::to_value(HttpCursor {
                watermark: Some(watermark.to_owned()),
                ..HttpCursor::default()
            })
            .ok()?,
        ))
    }

    async fn open(&mut self, committed: Option<Cursor>) -> Result<(), SourceError> {
        self.caught_up = false;
        self.position = match committed {
            Some(c) => c.decode().map_err(|e| {
                SourceError::permanent(format!("stored HTTP cursor is unreadable: {e}"))
            })?,
            None => HttpCursor {
                watermark: self.config.initial_watermark.clone(),
                ..HttpCursor::default()
            },
        };
        Ok(())
    }

    /// Long because keyset and page paging in one request cycle (request,
    /// parse, records on the watermark, the cursor), which share the
    /// reading of the response.
    async fn next_batch(&mut self, _max_records: usize) -> Result<Option<Batch>, SourceError> {
        if self.caught_up {
            self.caught_up = false;
            return Ok(None);
        }
        let query = self.query();
        let body = self
            .endpoint
            .fetch(&self.config.url, &Request::Get { query: &query })
            .await?;
        let fetched_at_ms = now_ms();
        let text = std::str::from_utf8(&body)
            .map_err(|e| SourceError::permanent(format!("response is not UTF-8: {e}")))?;
        let items =
            records_at(text, &self.config.records_pointer).map_err(SourceError::transient)?;
        let page_label = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let origin_base = format!("GET {}?{page_label}", self.config.url);

        let mut records = Vec::with_capacity(items.len());
        let mut rejects = Vec::new();
        let mut next = self.position.clone();
        let short_page = items.len() < self.config.page_size;
        for (i, item) in items.iter().enumerate() {
            let origin = format!("{origin_base}#{}", i + 1);
            let watermark = field_text(item, &self.config.watermark_field);
            let id = field_text(item, &self.config.id_field);
            let raw = item.get().as_bytes();
            // Advance the keyset even for a record that is rejected, so a
            // bad record cannot stall the source; it goes to the DLQ.
            if let (Some(w), Some(id)) = (&watermark, &id) {
                match self.config.paging {
                    Paging::Keyset => {
                        next.watermark = Some(w.clone());
                        next.after_id = Some(id.clone());
                    }
                    Paging::Page => {
                        if self.position.watermark.as_deref() == Some(w.as_str())
                            && self.position.taken_at_watermark.contains(id)
                        {
                            continue; // handed over in the previous scan
                        }
                        match next.scan_max.as_deref() {
                            Some(m) if w.as_str() < m => {}
                            Some(m) if w.as_str() == m => {
                                if !next.scan_ids_at_max.contains(id) {
                                    next.scan_ids_at_max.push(id.clone());
                                }
                            }
                            _ => {
                                next.scan_max = Some(w.clone());
                                next.scan_ids_at_max = vec![id.clone()];
                            }
                        }
                    }
                }
            }
            if raw.len() > self.config.max_record_bytes {
                rejects.push(RawReject {
                    payload: Bytes::copy_from_slice(&raw[..self.config.max_record_bytes]),
                    truncated: true,
                    length: Some(raw.len() as u64),
                    fetched_at_ms,
                    origin,
                    reason: format!(
                        "record is larger than max_record_bytes ({} bytes)",
                        self.config.max_record_bytes
                    ),
                });
            } else if watermark.is_none() || id.is_none() {
                rejects.push(RawReject {
                    payload: Bytes::copy_from_slice(raw),
                    truncated: false,
                    length: None,
                    fetched_at_ms,
                    origin,
                    reason: format!(
                        "record has no `{}` or `{}`, so it cannot be placed in the watermark order",
                        self.config.watermark_field, self.config.id_field
                    ),
                });
            } else {
                records.push(RawRecord {
                    payload: Bytes::copy_from_slice(raw),
                    format: PayloadFormat::Json,
                    fetched_at_ms,
                    origin,
                });
            }
        }
        if self.config.paging == Paging::Page {
            if short_page {
                // Scan complete: the next scan starts at the largest watermark.
                let new_mark = next.scan_max.clone().or(self.position.watermark.clone());
                let mut taken: Vec<String> = if new_mark == self.position.watermark {
                    self.position.taken_at_watermark.clone()
                } else {
                    Vec::new()
                };
                for id in std::mem::take(&mut next.scan_ids_at_max) {
                    if !taken.contains(&id) {
                        taken.push(id);
                    }
                }
                next = HttpCursor {
                    watermark: new_mark,
                    after_id: None,
                    page: None,
                    scan_max: None,
                    scan_ids_at_max: Vec::new(),
                    taken_at_watermark: taken,
                };
            } else {
                next.page = Some(self.position.page.unwrap_or(self.config.first_page) + 1);
            }
        }
        self.caught_up = short_page;
        self.position = next;
        Ok(Some(Batch {
            records,
            rejects,
            cursor: Cursor::encode(&self.position),
        }))
    }
}

impl crate::Transport for HttpPoll {
    const KIND: &'static str = "http_poll";
    const DRIVE: crate::Drive = crate::Drive::Polled;
    type Config = HttpPollConfig;

    fn validate(config: &Self::Config) -> Result<(), String> {
        config.validate()
    }

    fn build(config: &Self::Config) -> Result<crate::BuiltSource, crate::SourceError> {
        use crate::BuiltSource;
        Ok(BuiltSource::Poll(Box::new(HttpPoll::new(config.clone())?)))
    }
}
