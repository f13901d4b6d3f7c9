//! HTTP authentication: one pluggable option of the HTTP transports
//! (`http_poll`, `soap_poll`), `auth = { scheme = "…", … }` in a source's
//! section.
//!
//! Each scheme is a module here with its configuration (which checks
//! itself) and an [`Authenticate`], and one line in [`schemes!`]:
//! - `login` ([`login`]): log in for a bearer token, renewed before it
//!   runs out and once on a 401;
//! - `signed_query` ([`signed_query`]): an app key, a timestamp, a nonce
//!   and a digest (SM3, SHA-256, MD5, or an HMAC) of the sorted query and
//!   the secret, as query parameters: the usual layout of government open
//!   APIs (12345 hotline work orders, 信用中国 style interfaces);
//! - `hmac_headers` ([`hmac_headers`]): an HMAC (HMAC-SM3 or HMAC-SHA256)
//!   over the method, path, sorted query, timestamp, nonce and the body's
//!   digest, in headers (API-gateway style).
//!
//! A scheme sees the request as it will be sent (its method, URL with
//! every query parameter, headers and body) and adds to it; the endpoint
//! ([`crate::http::Endpoint`]) asks it once per request, and once more
//! after a 401 when the scheme says it renewed something.

pub mod hmac_headers;
pub mod login;
pub mod signed_query;

use crate::SourceError;
use async_trait::async_trait;
use std::time::Duration;

/// An authentication scheme at work.
#[async_trait]
pub trait Authenticate: Send + Sync + std::fmt::Debug {
    /// Adds the scheme's credentials to `request`, which is sent as it is
    /// afterwards. `ask` is for schemes that ask a server first (a login).
    async fn authorize(
        &self,
        request: &mut reqwest::Request,
        ask: &Ask<'_>,
    ) -> Result<(), SourceError>;

    /// The server answered 401. Whether the scheme renewed what it holds
    /// (a login token), so that one more try may pass; a scheme that holds
    /// nothing to renew says no, and the 401 is permanent.
    async fn refused(&self) -> bool {
        false
    }
}

/// What a scheme may use to ask a server: the hub's client, the request
/// timeout, the response size limit.
#[derive(Debug)]
pub struct Ask<'a> {
    pub client: &'a reqwest::Client,
    pub timeout: Duration,
}

/// The schemes, listed once: the module, its configuration type, and the
/// name a deployment file gives in `scheme`.
macro_rules! schemes {
    ($($module:ident :: $config:ident => $name:literal),* $(,)?) => {
        /// `auth` of an HTTP source: the scheme, named by `scheme`, and its
        /// settings.
        #[derive(Debug, Clone, serde::Deserialize, PartialEq)]
        #[serde(tag = "scheme")]
        pub enum AuthConfig {
            $(#[serde(rename = $name)] $config($module::$config),)*
        }

        impl AuthConfig {
            /// The scheme's name, as the deployment file writes it.
            pub fn scheme(&self) -> &'static str {
                match self {
                    $(AuthConfig::$config(_) => $name,)*
                }
            }

            /// Checks the settings (a missing secret, an unknown digest, a
            /// layout without the query).
            pub fn validate(&self) -> Result<(), String> {
                match self {
                    $(AuthConfig::$config(c) => c.validate(),)*
                }
                .map_err(|e| format!("`auth` ({}): {e}", self.scheme()))
            }

            /// The scheme at work.
            pub fn build(&self) -> Box<dyn Authenticate> {
                match self {
                    $(AuthConfig::$config(c) => Box::new($module::Scheme::new(c.clone())),)*
                }
            }
        }
    };
}

schemes! {
    login::LoginConfig => "login",
    signed_query::SignedQueryConfig => "signed_query",
    hmac_headers::HmacHeadersConfig => "hmac_headers",
}

/// The auth of a source that may still write the older `login = {…}`
/// beside `auth`: `auth` wins, both is an error, `login` alone is the
/// `login` scheme (with a warning that names the newer form).
pub fn resolve(
    auth: &Option<AuthConfig>,
    login: &Option<login::LoginConfig>,
) -> Result<Option<AuthConfig>, String> {
    match (auth, login) {
        (Some(_), Some(_)) => Err(
            "both `auth` and `login`: write the login as `auth = { scheme = \"login\", … }` only"
                .into(),
        ),
        (Some(a), None) => Ok(Some(a.clone())),
        (None, Some(l)) => Ok(Some(AuthConfig::LoginConfig(l.clone()))),
        (None, None) => Ok(None),
    }
}

/// [`resolve`] for a source being built: the older `login` alone is
/// logged as such, once per source.
pub fn resolve_for_source(
    auth: &Option<AuthConfig>,
    login: &Option<login::LoginConfig>,
) -> Result<Option<AuthConfig>, String> {
    if auth.is_none()
        && let Some(l) = login
    {
        tracing::warn!(url = %l.url, "`login = {{…}}` is the older form of `auth = {{ scheme = \"login\", … }}`; still read");
    }
    resolve(auth, login)
}

/// The request's query parameters, sorted by name and then value, as
/// `name=value` joined by `&`, values as sent (percent-decoded): what the
/// signing schemes digest.
pub fn sorted_query(url: &reqwest::Url, leave_out: &str) -> String {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != leave_out)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Milliseconds (or seconds) since the epoch, as the schemes send them.
fn timestamp(unit: TimeUnit) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    match unit {
        TimeUnit::Ms => now.as_millis().to_string(),
        TimeUnit::S => now.as_secs().to_string(),
    }
}

/// A fresh nonce: 16 random bytes from the operating system, as hex.
fn nonce() -> String {
    hex::encode(duijie_crypto::random(16))
}

/// The unit of a scheme's timestamp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    #[default]
    Ms,
    S,
}

/// A secret in a scheme's settings (a password, a shared secret): read as
/// a string, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the scheme that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "(empty)" } else { "***" })
    }
}
