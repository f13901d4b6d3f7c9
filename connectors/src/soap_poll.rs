//! SOAP poll: an XML web service (SOAP 1.1 over HTTP) asked for the
//! records after a keyset position, page by page.
//!
//! The request envelope is a template with `{watermark}`, `{after_id}` and
//! `{page_size}` placeholders (values are XML-escaped). The response is
//! decoded by its BOM or XML declaration (vendors answer in GBK), a SOAP
//! Fault is turned into an error (a `Server` fault is worth retrying, a
//! `Client` fault is not), and every `record_element` is cut out as one
//! record. Each record's own `watermark_element` and `id_element` advance
//! the keyset, so the cursor always points just after the last record
//! handed over.

use crate::http::{Endpoint, Request};
use crate::record::now_ms;
use crate::{
    Batch, Cursor, PayloadFormat, RawRecord, RawReject, Source, SourceError, text, xml_split,
};
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Configuration of a SOAP poll source.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SoapPollConfig {
    /// Service endpoint.
    pub url: String,
    /// The `SOAPAction` header of the operation.
    pub soap_action: String,
    /// Request envelope, with `{watermark}`, `{after_id}` and `{page_size}`.
    pub request_template: String,
    /// Local name of the element holding one record in the response.
    pub record_element: String,
    /// Local name, inside a record, of its last-update time (sorts as text).
    pub watermark_element: String,
    /// Local name, inside a record, of its id.
    pub id_element: String,
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// Watermark to start from when nothing was committed yet.
    #[serde(default)]
    pub initial_watermark: Option<String>,
    /// Encoding of responses that declare none: `utf-8` (default), `gbk`.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How requests are authenticated ([`crate::http::auth`]): a login token,
    /// a signed query, HMAC headers.
    #[serde(default)]
    pub auth: Option<crate::http::auth::AuthConfig>,
    /// The older form of `auth = { scheme = "login", … }`; still read.
    #[serde(default)]
    pub login: Option<crate::http::LoginConfig>,
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

fn default_page_size() -> usize {
    200
}
fn default_encoding() -> String {
    "utf-8".into()
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

impl SoapPollConfig {
    pub fn validate(&self) -> Result<(), String> {
        reqwest::Url::parse(&self.url).map_err(|e| format!("`url` is not a URL: {e}"))?;
        if let Some(auth) = crate::http::auth::resolve(&self.auth, &self.login)? {
            auth.validate()?;
        }
        text::encoding_for_label(&self.encoding).map_err(|e| e.to_string())?;
        for p in ["{watermark}", "{after_id}", "{page_size}"] {
            if !self.request_template.contains(p) {
                return Err(format!("`request_template` lacks the `{p}` placeholder"));
            }
        }
        if self.page_size == 0 {
            return Err("`page_size` must be greater than 0".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct KeysetCursor {
    #[serde(default)]
    watermark: Option<String>,
    #[serde(default)]
    after_id: Option<String>,
}

/// A SOAP service polled by keyset.
#[derive(Debug)]
pub struct SoapPoll {
    config: SoapPollConfig,
    endpoint: Endpoint,
    encoding: &'static encoding_rs::Encoding,
    position: KeysetCursor,
    caught_up: bool,
}

impl SoapPoll {
    pub fn new(config: SoapPollConfig) -> Result<Self, SourceError> {
        config.validate().map_err(SourceError::permanent)?;
        let auth = crate::http::auth::resolve_for_source(&config.auth, &config.login)
            .map_err(SourceError::permanent)?;
        let endpoint = Endpoint::new(config.timeout)?
            .auth(auth.as_ref())
            .headers(config.headers.clone())
            .max_response_bytes(config.max_response_bytes);
        let encoding = text::encoding_for_label(&config.encoding)
            .map_err(|e| SourceError::permanent(e.to_string()))?;
        Ok(Self {
            config,
            endpoint,
            encoding,
            position: KeysetCursor::default(),
            caught_up: false,
        })
    }

    fn envelope(&self) -> String {
        let esc = |s: &str| quick_xml::escape::escape(s).into_owned();
        self.config
            .request_template
            .replace(
                "{watermark}",
                &esc(self.position.watermark.as_deref().unwrap_or("")),
            )
            .replace(
                "{after_id}",
                &esc(self.position.after_id.as_deref().unwrap_or("")),
            )
            .replace("{page_size}", &self.config.page_size.to_string())
    }
}

/// A SOAP Fault in a response, classified.
fn fault(doc: &str) -> Option<SourceError> {
    let parts = xml_split::split(doc, "Fault").ok()?;
    let f = parts.first()?;
    let code = xml_split::element_text(&f.xml, "faultcode").unwrap_or_default();
    let reason = xml_split::element_text(&f.xml, "faultstring").unwrap_or_default();
    let message = format!("SOAP fault {code}: {reason}");
    Some(if code.ends_with("Client") || code.ends_with("Sender") {
        SourceError::permanent(message)
    } else {
        SourceError::transient(message)
    })
}

#[async_trait]
impl Source for SoapPoll {
    fn cursor_at(&self, watermark: &str) -> Option<Cursor> {
        Some(Cursor::new(
            serde_json::to_value(KeysetCursor {
                watermark: Some(watermark.to_owned()),
                after_id: None,
            })
            .ok()?,
        ))
    }

    async fn open(&mut self, committed: Option<Cursor>) -> Result<(), SourceError> {
        self.caught_up = false;
        self.position = match committed {
            Some(c) => c.decode().map_err(|e| {
                SourceError::permanent(format!("stored SOAP cursor is unreadable: {e}"))
            })?,
            None => KeysetCursor {
                watermark: self.config.initial_watermark.clone(),
                after_id: None,
            },
        };
        Ok(())
    }

    async fn next_batch(&mut self, _max_records: usize) -> Result<Option<Batch>, SourceError> {
        if self.caught_up {
            self.caught_up = false;
            return Ok(None);
        }
        let request = Request::Post {
            body: self.envelope(),
            content_type: "text/xml; charset=utf-8",
            headers: vec![("SOAPAction", format!("\"{}\"", self.config.soap_action))],
        };
        let (status, body) = self.endpoint.fetch_soap(&self.config.url, &request).await?;
        let fetched_at_ms = now_ms();
        let doc = text::decode_xml(&body, self.encoding)
            .map_err(|e| SourceError::transient(format!("SOAP response cannot be decoded: {e}")))?;
        if let Some(err) = fault(&doc) {
            return Err(err);
        }
        if status == 500 {
            return Err(SourceError::transient(format!(
                "{} answered HTTP 500 without a SOAP fault",
                self.config.url
            )));
        }
        let parts = xml_split::split(&doc, &self.config.record_element).map_err(|e| {
            SourceError::transient(format!("SOAP response is not well-formed: {e}"))
        })?;
        let origin_base = format!(
            "POST {} after ({}, {})",
            self.config.url,
            self.position.watermark.as_deref().unwrap_or("-"),
            self.position.after_id.as_deref().unwrap_or("-")
        );
        let mut records = Vec::with_capacity(parts.len());
        let mut rejects = Vec::new();
        let short_page = parts.len() < self.config.page_size;
        for (i, part) in parts.into_iter().enumerate() {
            let origin = format!("{origin_base} #{}", i + 1);
            let watermark = xml_split::element_text(&part.xml, &self.config.watermark_element);
            let id = xml_split::element_text(&part.xml, &self.config.id_element);
            if let (Some(w), Some(id)) = (&watermark, &id) {
                self.position = KeysetCursor {
                    watermark: Some(w.clone()),
                    after_id: Some(id.clone()),
                };
            }
            let limit = self.config.max_record_bytes;
            if part.xml.len() > limit {
                let mut cut = limit;
                while !part.xml.is_char_boundary(cut) {
                    cut -= 1;
                }
                rejects.push(RawReject {
                    payload: Bytes::copy_from_slice(&part.xml.as_bytes()[..cut]),
                    truncated: true,
                    length: None,
                    fetched_at_ms,
                    origin,
                    reason: format!("record is larger than max_record_bytes ({limit} bytes)"),
                });
            } else if watermark.is_none() || id.is_none() {
                rejects.push(RawReject {
                    payload: Bytes::from(part.xml),
                    truncated: false,
                    length: None,
                    fetched_at_ms,
                    origin,
                    reason: format!(
                        "record has no <{}> or <{}>, so it cannot be placed in the keyset order",
                        self.config.watermark_element, self.config.id_element
                    ),
                });
            } else {
                records.push(RawRecord {
                    payload: Bytes::from(part.xml),
                    format: PayloadFormat::Xml,
                    fetched_at_ms,
                    origin,
                });
            }
        }
        self.caught_up = short_page;
        Ok(Some(Batch {
            records,
            rejects,
            cursor: Cursor::encode(&self.position),
        }))
    }
}

impl crate::Transport for SoapPoll {
    const KIND: &'static str = "soap_poll";
    const DRIVE: crate::Drive = crate::Drive::Polled;
    type Config = SoapPollConfig;

    fn validate(config: &Self::Config) -> Result<(), String> {
        config.validate()
    }

    fn build(config: &Self::Config) -> Result<crate::BuiltSource, crate::SourceError> {
        use crate::BuiltSource;
        Ok(BuiltSource::Poll(Box::new(SoapPoll::new(config.clone())?)))
    }
}
