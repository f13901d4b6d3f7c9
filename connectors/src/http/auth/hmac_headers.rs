//! `scheme = "hmac_headers"`: every request carries, in headers, a key
//! id, a timestamp, a nonce and an HMAC (HMAC-SM3 by default, or
//! HMAC-SHA256) under the shared secret, API-gateway style:
//!
//! ```toml
//! auth = { scheme = "hmac_headers", key_id = "duijie", secret = "${file:secrets/gateway_secret}" }
//! ```
//!
//! The text signed is, each on its own line (`\n`), with no line break at
//! the end: the method (`GET`), the path (`/api/orders`), the sorted query
//! (`name=value` joined by `&`, values as sent, not percent-encoded), the
//! timestamp (ms), the nonce, and the hex digest of the body (SM3 with
//! HMAC-SM3, SHA-256 with HMAC-SHA256; of nothing for a GET). The
//! signature goes as `encoding` (base64, the default, or hex).

use super::{Ask, Authenticate};
use crate::SourceError;
use crate::signature::HmacScheme;
use async_trait::async_trait;
use duijie_crypto::Text;
use serde::Deserialize;

/// The HMAC headers' settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HmacHeadersConfig {
    pub key_id: String,
    pub secret: super::Secret,
    /// `hmac-sm3` (the default) or `hmac-sha256`.
    #[serde(default = "default_hmac")]
    pub hmac: HmacScheme,
    #[serde(default)]
    pub encoding: Text,
    #[serde(default = "default_key_header")]
    pub key_header: String,
    #[serde(default = "default_timestamp_header")]
    pub timestamp_header: String,
    #[serde(default = "default_nonce_header")]
    pub nonce_header: String,
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
}

fn default_hmac() -> HmacScheme {
    HmacScheme::HmacSm3
}
fn default_key_header() -> String {
    "X-Ca-Key".into()
}
fn default_timestamp_header() -> String {
    "X-Ca-Timestamp".into()
}
fn default_nonce_header() -> String {
    "X-Ca-Nonce".into()
}
fn default_signature_header() -> String {
    "X-Ca-Signature".into()
}

impl HmacHeadersConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.key_id.is_empty() {
            return Err("`key_id` is empty".into());
        }
        if self.secret.expose().is_empty() {
            return Err("`secret` is empty".into());
        }
        for (name, header) in [
            ("key_header", &self.key_header),
            ("timestamp_header", &self.timestamp_header),
            ("nonce_header", &self.nonce_header),
            ("signature_header", &self.signature_header),
        ] {
            reqwest::header::HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| format!("`{name}`: `{header}` is not a header name"))?;
        }
        Ok(())
    }

    /// The text an HMAC is taken over (see the module).
    pub fn text(
        &self,
        method: &str,
        url: &reqwest::Url,
        timestamp: &str,
        nonce: &str,
        body: &[u8],
    ) -> String {
        let body_digest = hex::encode(self.hmac.suite().digest(&[body]));
        [
            method,
            url.path(),
            &super::sorted_query(url, ""),
            timestamp,
            nonce,
            &body_digest,
        ]
        .join("\n")
    }

    /// The signature of `text`, encoded.
    pub fn signature(&self, text: &str) -> String {
        self.encoding.encode(
            &self
                .hmac
                .suite()
                .hmac(self.secret.expose().as_bytes(), &[text.as_bytes()]),
        )
    }
}

/// The HMAC headers at work.
#[derive(Debug)]
pub struct Scheme {
    config: HmacHeadersConfig,
}

impl Scheme {
    pub fn new(config: HmacHeadersConfig) -> Self {
        Self { config }
    }
}

#[async_trait]
impl Authenticate for Scheme {
    async fn authorize(
        &self,
        request: &mut reqwest::Request,
        _ask: &Ask<'_>,
    ) -> Result<(), SourceError> {
        let c = &self.config;
        let timestamp = super::timestamp(super::TimeUnit::Ms);
        let nonce = super::nonce();
        let body = request
            .body()
            .map(|b| {
                b.as_bytes().ok_or_else(|| {
                    SourceError::permanent("hmac_headers: a streamed body cannot be signed")
                })
            })
            .transpose()?
            .unwrap_or_default();
        let text = c.text(
            request.method().as_str(),
            request.url(),
            &timestamp,
            &nonce,
            body,
        );
        let signature = c.signature(&text);
        let value = |v: &str| {
            reqwest::header::HeaderValue::from_str(v).map_err(|_| {
                SourceError::permanent(format!("hmac_headers: `{v}` is not a header value"))
            })
        };
        let name = |n: &str| {
            reqwest::header::HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
                SourceError::permanent(format!("hmac_headers: `{n}` is not a header name"))
            })
        };
        let headers = request.headers_mut();
        headers.insert(name(&c.key_header)?, value(&c.key_id)?);
        headers.insert(name(&c.timestamp_header)?, value(&timestamp)?);
        headers.insert(name(&c.nonce_header)?, value(&nonce)?);
        headers.insert(name(&c.signature_header)?, value(&signature)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_headers_carry_an_hmac_over_method_path_query_time_nonce_and_body() {
        let c: HmacHeadersConfig =
            serde_json::from_value(serde_json::json!({"key_id": "hub", "secret": "k3y"})).unwrap();
        assert!(c.validate().is_ok());
        assert!(!format!("{c:?}").contains("k3y"));
        let client = reqwest::Client::new();
        let mut request = client
            .post("http://x/ws/orders?b=2&a=1")
            .body("<Envelope/>")
            .build()
            .unwrap();
        Scheme::new(c.clone())
            .authorize(
                &mut request,
                &Ask {
                    client: &client,
                    timeout: std::time::Duration::from_secs(1),
                },
            )
            .await
            .unwrap();
        let h = |n: &str| request.headers()[n].to_str().unwrap().to_owned();
        assert_eq!(h("x-ca-key"), "hub");
        let (ts, nonce) = (h("x-ca-timestamp"), h("x-ca-nonce"));
        let text = c.text("POST", request.url(), &ts, &nonce, b"<Envelope/>");
        let sm3_of_body = hex::encode(duijie_crypto::Suite::Gm.digest(&[b"<Envelope/>"]));
        assert_eq!(
            text,
            format!("POST\n/ws/orders\na=1&b=2\n{ts}\n{nonce}\n{sm3_of_body}")
        );
        let tag = Text::Base64.decode(&h("x-ca-signature")).unwrap();
        assert!(duijie_crypto::Suite::Gm.verify_hmac(b"k3y", &[text.as_bytes()], &tag));
    }
}
