//! HTTP plumbing shared by the HTTP transports: timeouts, a response size
//! limit, classification of failures for the runtime's retry policy, and
//! the source's authentication scheme ([`crate::http::auth`]: a login token is
//! renewed on expiry and once on a 401, and the request repeated).

pub mod auth;

use crate::SourceError;
use auth::{AuthConfig, Authenticate};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::time::Duration;

pub use auth::login::LoginConfig;

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
    auth: Option<Box<dyn Authenticate>>,
    headers: BTreeMap<String, String>,
    max_response_bytes: usize,
}

impl Endpoint {
    /// An endpoint with each request's `timeout`, no authentication, no
    /// extra headers, and responses up to 64 MiB.
    pub fn new(timeout: Duration) -> Result<Self, SourceError> {
        let client = client().map_err(SourceError::permanent)?;
        Ok(Self {
            client,
            timeout,
            auth: None,
            headers: BTreeMap::new(),
            max_response_bytes: 64 << 20,
        })
    }

    /// The source's authentication scheme.
    pub fn auth(mut self, auth: Option<&AuthConfig>) -> Self {
        self.auth = auth.map(AuthConfig::build);
        self
    }

    /// Headers every request carries.
    pub fn headers(mut self, headers: BTreeMap<String, String>) -> Self {
        self.headers = headers;
        self
    }

    /// A response larger than this is refused.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Sends the request and returns the body, authenticated by the
    /// source's scheme, and once more when the server refuses what the
    /// scheme could renew (a login token).
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
        match self.send(url, request, soap).await? {
            Err(Unauthorized) => {
                let renewed = match &self.auth {
                    Some(a) => a.refused().await,
                    None => false,
                };
                if !renewed {
                    return Err(SourceError::permanent(format!(
                        "{url} answered HTTP 401: check the source's `auth`"
                    )));
                }
                match self.send(url, request, soap).await? {
                    Err(Unauthorized) => Err(SourceError::permanent(format!(
                        "{url} refused the renewed credentials (HTTP 401): check the source's `auth`"
                    ))),
                    Ok(r) => r,
                }
            }
            Ok(r) => r,
        }
    }

    /// One request: `Err(Unauthorized)` on a 401, else the outcome.
    async fn send(
        &self,
        url: &str,
        request: &Request<'_>,
        soap: bool,
    ) -> Result<Result<Result<(u16, Bytes), SourceError>, Unauthorized>, SourceError> {
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
        let mut built = builder
            .build()
            .map_err(|e| SourceError::permanent(format!("cannot build a request to {url}: {e}")))?;
        if let Some(auth) = &self.auth {
            let ask = auth::Ask {
                client: &self.client,
                timeout: self.timeout,
            };
            auth.authorize(&mut built, &ask).await?;
        }
        let response = match self.client.execute(built).await {
            Ok(r) => r,
            Err(e) => return Ok(Ok(Err(classify_reqwest(e)))),
        };
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Ok(Err(Unauthorized));
        }
        if soap && status == reqwest::StatusCode::INTERNAL_SERVER_ERROR {
            return Ok(Ok(read_limited(response, self.max_response_bytes)
                .await
                .map(|b| (500, b))));
        }
        Ok(Ok(read_body(response, self.max_response_bytes)
            .await
            .map(|b| (status.as_u16(), b))))
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
