//! `scheme = "signed_query"`: every request carries, as query parameters,
//! the app key, a timestamp, a nonce, and a signature: the digest of a
//! text laid out from the sorted query and the secret. The usual layout of
//! government open APIs (a 12345 hotline's work orders, 信用中国 style
//! interfaces):
//!
//! ```toml
//! auth = { scheme = "signed_query", app_key = "duijie", secret = "${file:secrets/hotline_secret}", digest = "sm3" }
//! ```
//!
//! 1. The query gets `app_key_param`, `timestamp_param` (ms, or s) and
//!    `nonce_param` (32 hex digits, fresh per request).
//! 2. Every query parameter but the signature, sorted by name then value,
//!    written `name=value` (values as sent, not percent-encoded) and
//!    joined by `&`, is `{query}`.
//! 3. `layout` (default `{query}&secret={secret}`) with `{query}`,
//!    `{secret}`, `{app_key}`, `{timestamp}`, `{nonce}` filled in is the
//!    text signed.
//! 4. `digest` of that text: `sm3` (GB/T 32905, the default), `sha256`,
//!    `md5` (only for a counterpart that knows no other), or `hmac-sm3` /
//!    `hmac-sha256` keyed by the secret; as hex, `case` lower (default)
//!    or upper, in `sign_param`.
//!
//! The body of a POST is not signed by this scheme (`hmac_headers` signs
//! it).

use super::{Ask, Authenticate, TimeUnit};
use crate::SourceError;
use async_trait::async_trait;
use serde::Deserialize;

/// The digest a signed query uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Digest {
    #[default]
    #[serde(rename = "sm3")]
    Sm3,
    #[serde(rename = "sha256")]
    Sha256,
    #[serde(rename = "md5")]
    Md5,
    #[serde(rename = "hmac-sm3")]
    HmacSm3,
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
}

impl Digest {
    /// The digest of `text`; the HMACs keyed by `secret`.
    pub fn of(self, text: &[u8], secret: &[u8]) -> Vec<u8> {
        use duijie_crypto::Suite;
        match self {
            Digest::Sm3 => Suite::Gm.digest(&[text]),
            Digest::Sha256 => Suite::Intl.digest(&[text]),
            Digest::Md5 => duijie_crypto::md5(&[text]),
            Digest::HmacSm3 => Suite::Gm.hmac(secret, &[text]),
            Digest::HmacSha256 => Suite::Intl.hmac(secret, &[text]),
        }
    }
}

/// Lower or upper hex.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Case {
    #[default]
    Lower,
    Upper,
}

/// The signed query's settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SignedQueryConfig {
    pub app_key: String,
    pub secret: super::Secret,
    #[serde(default)]
    pub digest: Digest,
    #[serde(default = "default_layout")]
    pub layout: String,
    #[serde(default)]
    pub case: Case,
    #[serde(default)]
    pub timestamp: TimeUnit,
    #[serde(default = "default_app_key_param")]
    pub app_key_param: String,
    #[serde(default = "default_timestamp_param")]
    pub timestamp_param: String,
    #[serde(default = "default_nonce_param")]
    pub nonce_param: String,
    #[serde(default = "default_sign_param")]
    pub sign_param: String,
}

fn default_layout() -> String {
    "{query}&secret={secret}".into()
}
fn default_app_key_param() -> String {
    "appKey".into()
}
fn default_timestamp_param() -> String {
    "timestamp".into()
}
fn default_nonce_param() -> String {
    "nonce".into()
}
fn default_sign_param() -> String {
    "sign".into()
}

impl SignedQueryConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.app_key.is_empty() {
            return Err("`app_key` is empty".into());
        }
        if self.secret.expose().is_empty() {
            return Err("`secret` is empty".into());
        }
        if !self.layout.contains("{query}") {
            return Err(format!(
                "`layout` `{}` leaves out {{query}}: the request would not be signed",
                self.layout
            ));
        }
        if !matches!(self.digest, Digest::HmacSm3 | Digest::HmacSha256)
            && !self.layout.contains("{secret}")
        {
            return Err(format!(
                "`layout` `{}` leaves out {{secret}}: anyone could sign with digest {}",
                self.layout,
                format!("{:?}", self.digest).to_lowercase()
            ));
        }
        let params = [
            &self.app_key_param,
            &self.timestamp_param,
            &self.nonce_param,
            &self.sign_param,
        ];
        if params.iter().any(|p| p.is_empty()) {
            return Err("a parameter name is empty".into());
        }
        let mut unique = params.to_vec();
        unique.sort();
        unique.dedup();
        if unique.len() != params.len() {
            return Err("the app key, timestamp, nonce and sign parameters need four names".into());
        }
        Ok(())
    }

    /// The signature of a URL whose query already holds the app key,
    /// timestamp and nonce: what `sign_param` carries.
    pub fn signature(&self, url: &reqwest::Url) -> String {
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let text = self
            .layout
            .replace("{query}", &super::sorted_query(url, &self.sign_param))
            .replace("{secret}", self.secret.expose())
            .replace("{app_key}", &self.app_key)
            .replace("{timestamp}", &param(&self.timestamp_param))
            .replace("{nonce}", &param(&self.nonce_param));
        let hex = hex::encode(
            self.digest
                .of(text.as_bytes(), self.secret.expose().as_bytes()),
        );
        match self.case {
            Case::Lower => hex,
            Case::Upper => hex.to_ascii_uppercase(),
        }
    }
}

/// The signed query at work.
#[derive(Debug)]
pub struct Scheme {
    config: SignedQueryConfig,
}

impl Scheme {
    pub fn new(config: SignedQueryConfig) -> Self {
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
        let url = request.url_mut();
        // What the source set under these names is replaced, never doubled.
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| {
                ![
                    &c.app_key_param,
                    &c.timestamp_param,
                    &c.nonce_param,
                    &c.sign_param,
                ]
                .iter()
                .any(|p| k == p.as_str())
            })
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair(&c.app_key_param, &c.app_key)
            .append_pair(&c.timestamp_param, &super::timestamp(c.timestamp))
            .append_pair(&c.nonce_param, &super::nonce());
        let sign = c.signature(url);
        url.query_pairs_mut().append_pair(&c.sign_param, &sign);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(digest: &str, layout: Option<&str>) -> SignedQueryConfig {
        let mut v = serde_json::json!({"app_key": "hub", "secret": "s3cret", "digest": digest});
        if let Some(l) = layout {
            v["layout"] = l.into();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_text_signed_is_the_sorted_query_and_the_secret() {
        let c = config("md5", None);
        let url = reqwest::Url::parse(
            "http://x/api/orders?pageSize=2&since=2026-12-01%2008:00:00&appKey=hub&timestamp=1765000000000&nonce=ab&sign=old",
        )
        .unwrap();
        assert_eq!(
            super::super::sorted_query(&url, "sign"),
            "appKey=hub&nonce=ab&pageSize=2&since=2026-12-01 08:00:00&timestamp=1765000000000"
        );
        let text = "appKey=hub&nonce=ab&pageSize=2&since=2026-12-01 08:00:00&timestamp=1765000000000&secret=s3cret";
        assert_eq!(
            c.signature(&url),
            hex::encode(duijie_crypto::md5(&[text.as_bytes()]))
        );
        let sm3 = config("sm3", Some("{secret}{query}{secret}"));
        assert_eq!(
            sm3.signature(&url),
            hex::encode(duijie_crypto::Suite::Gm.digest(&[
                format!("s3cret{}s3cret", super::super::sorted_query(&url, "sign")).as_bytes()
            ]))
        );
    }

    #[test]
    fn a_layout_without_the_query_or_the_secret_is_refused() {
        let mut c = config("sm3", None);
        assert!(c.validate().is_ok());
        c.layout = "{secret}".into();
        assert!(c.validate().unwrap_err().contains("{query}"));
        c.layout = "{query}".into();
        assert!(c.validate().unwrap_err().contains("{secret}"));
        c.digest = Digest::HmacSm3;
        assert!(c.validate().is_ok(), "an HMAC is keyed by the secret");
        c.sign_param = "nonce".into();
        assert!(c.validate().unwrap_err().contains("four names"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn a_request_gets_fresh_parameters_and_the_signature_over_them() {
        let c = config("sm3", None);
        let scheme = Scheme::new(c.clone());
        let client = reqwest::Client::new();
        let ask = Ask {
            client: &client,
            timeout: std::time::Duration::from_secs(1),
        };
        let mut request = client
            .get("http://x/api/orders?since=2026&sign=forged&appKey=other")
            .build()
            .unwrap();
        scheme.authorize(&mut request, &ask).await.unwrap();
        let pairs: Vec<(String, String)> = request
            .url()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["since", "appKey", "timestamp", "nonce", "sign"]);
        assert_eq!(pairs[1].1, "hub");
        assert_eq!(pairs[3].1.len(), 32);
        assert_eq!(pairs[4].1, c.signature(request.url()));
    }
}
