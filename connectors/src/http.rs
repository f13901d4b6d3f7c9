//! HTTP plumbing shared by the HTTP transports: timeouts, a response size
//! limit, classification of failures for the runtime's retry policy, and
//! login with expiring bearer tokens (re-login is transparent: on expiry or
//! on a 401 the token is renewed once and the request repeated).

use crate::SourceError;
use bytes::Bytes;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Login that returns a bearer token: `POST url` with
/// `{"username": …, "password": …}`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// Login endpoint.
    pub url: String,
    pub username: String,
    pub password: String,
    /// JSON pointer of the token in the login response.
    #[serde(default = "default_token_pointer")]
    pub token_pointer: String,
    /// JSON pointer of the token's lifetime in seconds, when the API gives
    /// it. The token is renewed a little before it runs out.
    #[serde(default)]
    pub expires_in_pointer: Option<String>,
}

fn default_token_pointer() -> String {
    "/data/token".into()
}

#[derive(Debug)]
struct Token {
    value: String,
    renew_at: Option<Instant>,
}

/// What to send.
#[derive(Debug, Clone)]
pub enum Request<'a> {
    Get {
        query: &'a [(String, String)],
    },
    Post {
        body: String,
        content_type: &'a str,
        /// Extra headers (`SOAPAction`).
        headers: Vec<(&'a str, String)>,
    },
}

/// The hub's one HTTP client: every source and every delivery target
/// shares its connection pool and TLS setup (rustls, the platform's roots);
/// each request carries its own timeout. A clone shares the pool.
pub fn client() -> Result<reqwest::Client, String> {
    static CLIENT: std::sync::LazyLock<Result<reqwest::Client, String>> =
        std::sync::LazyLock::new(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                .map_err(|e| format!("cannot build the HTTP client: {e}"))
        });
    CLIENT.clone()
}

/// An HTTP endpoint with its client, auth and limits.
#[derive(Debug)]
pub struct Endpoint {
    client: reqwest::Client,
    /// Each request's timeout.
    timeout: Duration,
    login: Option<LoginConfig>,
    token: Mutex<Option<Token>>,
    headers: BTreeMap<String, String>,
    max_response_bytes: usize,
}

impl Endpoint {
    pub fn new(
        timeout: Duration,
        login: Option<LoginConfig>,
        headers: BTreeMap<String, String>,
        max_response_bytes: usize,
    ) -> Result<Self, SourceError> {
        let client = client().map_err(SourceError::permanent)?;
        Ok(Self {
            client,
            timeout,
            login,
            token: Mutex::new(None),
            headers,
            max_response_bytes,
        })
    }

    /// Sends the request and returns the body, logging in first when
    /// needed and once more when the server says the token is no good.
    pub async fn fetch(&self, url: &str, request: &Request<'_>) -> Result<Bytes, SourceError> {
        self.fetch_inner(url, request, false).await.map(|(_, b)| b)
    }

    /// Like [`Endpoint::fetch`], but an HTTP 500 with a body is returned
    /// with its status rather than as an error: SOAP 1.1 answers faults so.
    pub async fn fetch_soap(
        &self,
        url: &str,
        request: &Request<'_>,
    ) -> Result<(u16, Bytes), SourceError> {
        self.fetch_inner(url, request, true).await
    }

    async fn fetch_inner(
        &self,
        url: &str,
        request: &Request<'_>,
        soap: bool,
    ) -> Result<(u16, Bytes), SourceError> {
        let token = self.bearer(false).await?;
        match self.send(url, request, token.as_deref(), soap).await {
            Err(Unauthorized) if self.login.is_some() => {
                tracing::info!(url, "token refused; logging in again");
                let token = self.bearer(true).await?;
                match self.send(url, request, token.as_deref(), soap).await {
                    Err(Unauthorized) => Err(SourceError::permanent(format!(
                        "{url} refused the fresh token (HTTP 401): check the credentials"
                    ))),
                    Ok(r) => r,
                }
            }
            Err(Unauthorized) => Err(SourceError::permanent(format!("{url} answered HTTP 401"))),
            Ok(r) => r,
        }
    }

    async fn send(
        &self,
        url: &str,
        request: &Request<'_>,
        token: Option<&str>,
        soap: bool,
    ) -> Result<Result<(u16, Bytes), SourceError>, Unauthorized> {
        let mut builder = match request {
            Request::Get { query } => self.client.get(url).timeout(self.timeout).query(query),
            Request::Post {
                body,
                content_type,
                headers,
            } => {
                let mut b = self
                    .client
                    .post(url)
                    .timeout(self.timeout)
                    .header(reqwest::header::CONTENT_TYPE, *content_type)
                    .body(body.clone());
                for (k, v) in headers {
                    b = b.header(*k, v);
                }
                b
            }
        };
        for (k, v) in &self.headers {
            builder = builder.header(k, v);
        }
        if let Some(t) = token {
            builder = builder.bearer_auth(t);
        }
        let response = match builder.send().await {
            Ok(r) => r,
            Err(e) => return Ok(Err(classify_reqwest(e))),
        };
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(Unauthorized);
        }
        if soap && status == reqwest::StatusCode::INTERNAL_SERVER_ERROR {
            return Ok(read_limited(response, self.max_response_bytes)
                .await
                .map(|b| (500, b)));
        }
        Ok(read_body(response, self.max_response_bytes)
            .await
            .map(|b| (status.as_u16(), b)))
    }

    /// The current token, logging in when there is none, it is due for
    /// renewal, or `renew` is asked.
    async fn bearer(&self, renew: bool) -> Result<Option<String>, SourceError> {
        let Some(login) = &self.login else {
            return Ok(None);
        };
        let mut guard = self.token.lock().await;
        let fresh = guard
            .as_ref()
            .is_some_and(|t| !renew && t.renew_at.is_none_or(|at| Instant::now() < at));
        if !fresh {
            *guard = Some(self.log_in(login).await?);
        }
        Ok(guard.as_ref().map(|t| t.value.clone()))
    }

    async fn log_in(&self, login: &LoginConfig) -> Result<Token, SourceError> {
        let body = serde_json::json!({ "username": login.username, "password": login.password });
        let response = self
            .client
            .post(&login.url)
            .timeout(self.timeout)
            .json(&body)
            .send()
            .await
            .map_err(classify_reqwest)?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED
            || response.status() == reqwest::StatusCode::FORBIDDEN
        {
            return Err(SourceError::permanent(format!(
                "login at {} refused the credentials (HTTP {})",
                login.url,
                response.status()
            )));
        }
        let bytes = read_body(response, 1 << 20).await?;
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| SourceError::transient(format!("login answer is not JSON: {e}")))?;
        let value = json
            .pointer(&login.token_pointer)
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                SourceError::permanent(format!(
                    "login answer has no token at `{}`",
                    login.token_pointer
                ))
            })?
            .to_owned();
        let renew_at = login
            .expires_in_pointer
            .as_deref()
            .and_then(|p| json.pointer(p))
            .and_then(|v| v.as_u64())
            .map(|secs| Instant::now() + Duration::from_secs(secs).mul_f64(0.8));
        tracing::debug!(url = %login.url, "logged in");
        Ok(Token { value, renew_at })
    }
}

/// The server refused the token.
#[derive(Debug)]
struct Unauthorized;

async fn read_body(response: reqwest::Response, limit: usize) -> Result<Bytes, SourceError> {
    check_status(&response)?;
    read_limited(response, limit).await
}

/// A response's body, refused past `limit` bytes.
pub async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, SourceError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(classify_reqwest)? {
        if body.len() + chunk.len() > limit {
            return Err(SourceError::permanent(format!(
                "response from {} exceeds max_response_bytes ({limit}); lower page_size",
                response.url()
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// The house's one rule for an HTTP refusal, for sources and push targets
/// alike: 5xx, 408 Request Timeout and 429 Too Many Requests are worth
/// trying again; any other status is the server's answer.
pub fn is_transient_status(status: reqwest::StatusCode) -> bool {
    status.is_server_error()
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

/// The longest `Retry-After` honoured: a server asking for more gets this
/// (a hostile or broken one cannot park a pipeline for days).
pub const RETRY_AFTER_CEILING: Duration = Duration::from_secs(3600);

/// A server's `Retry-After` (RFC 9110 §10.2.3: delay-seconds, or an
/// HTTP-date, counted from `now`), at most [`RETRY_AFTER_CEILING`]; `None`
/// when absent or unreadable.
pub fn retry_after(
    headers: &reqwest::header::HeaderMap,
    now: std::time::SystemTime,
) -> Option<Duration> {
    let text = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(text)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(RETRY_AFTER_CEILING))
}

/// Turns a non-success status into a classified error by
/// [`is_transient_status`], with the server's `Retry-After`.
pub fn check_status(response: &reqwest::Response) -> Result<(), SourceError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let message = format!("{} answered HTTP {status}", response.url().path());
    let mut err = if is_transient_status(status) {
        SourceError::transient(message)
    } else {
        SourceError::permanent(message)
    };
    if let Some(after) = retry_after(response.headers(), std::time::SystemTime::now()) {
        err = err.with_retry_after(after);
    }
    Err(err)
}

/// Timeouts, refused and reset connections are transient; anything else
/// about building the request is permanent.
pub fn classify_reqwest(err: reqwest::Error) -> SourceError {
    let message = format!("HTTP request failed: {err}");
    if err.is_timeout() || err.is_connect() || err.is_request() || err.is_body() || err.is_decode()
    {
        SourceError::transient(message).with_source(err)
    } else {
        SourceError::permanent(message).with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    #[test]
    fn refusals_worth_retrying_are_5xx_408_and_429() {
        for s in [500, 502, 503, 504, 408, 429] {
            assert!(is_transient_status(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 413, 422] {
            assert!(
                !is_transient_status(StatusCode::from_u16(s).unwrap()),
                "{s}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_is_bounded() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_764_581_234);
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(retry_after(&h("120"), now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(retry_after(&h(&later), now), Some(Duration::from_secs(90)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(retry_after(&h(&past), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&h("99999999"), now), Some(RETRY_AFTER_CEILING));
        assert_eq!(retry_after(&h("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
