//! `scheme = "login"`: log in for a bearer token — `POST url` with
//! `{"username": …, "password": …}` — and send it as
//! `Authorization: Bearer …`. The token is renewed a little before it runs
//! out (when the answer gives its lifetime) and once when a server answers
//! 401; a fresh token refused again is a permanent failure.

use super::{Ask, Authenticate};
use crate::SourceError;
use async_trait::async_trait;
use serde::Deserialize;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The login's settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// Login endpoint.
    pub url: String,
    pub username: String,
    pub password: super::Secret,
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

impl LoginConfig {
    pub fn validate(&self) -> Result<(), String> {
        reqwest::Url::parse(&self.url).map_err(|e| format!("`url` is not a URL: {e}"))?;
        for (name, pointer) in [
            ("token_pointer", Some(&self.token_pointer)),
            ("expires_in_pointer", self.expires_in_pointer.as_ref()),
        ] {
            if let Some(p) = pointer
                && !p.starts_with('/')
            {
                return Err(format!("`{name}` must be a JSON pointer starting with `/`"));
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Token {
    value: String,
    renew_at: Option<Instant>,
}

/// The login at work: the token it holds.
#[derive(Debug)]
pub struct Scheme {
    config: LoginConfig,
    token: Mutex<Option<Token>>,
    /// Set by a 401: the next request logs in again.
    stale: std::sync::atomic::AtomicBool,
}

impl Scheme {
    pub fn new(config: LoginConfig) -> Self {
        Self {
            config,
            token: Mutex::new(None),
            stale: std::sync::atomic::AtomicBool::new(false),
        }
    }

    async fn log_in(&self, ask: &Ask<'_>) -> Result<Token, SourceError> {
        let login = &self.config;
        let body =
            serde_json::json!({ "username": login.username, "password": login.password.expose() });
        let response = ask
            .client
            .post(&login.url)
            .timeout(ask.timeout)
            .json(&body)
            .send()
            .await
            .map_err(crate::http::classify_reqwest)?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED
            || response.status() == reqwest::StatusCode::FORBIDDEN
        {
            return Err(SourceError::permanent(format!(
                "login at {} refused the credentials (HTTP {})",
                login.url,
                response.status()
            )));
        }
        crate::http::check_status(&response)?;
        let bytes = crate::http::read_limited(response, 1 << 20).await?;
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

#[async_trait]
impl Authenticate for Scheme {
    async fn authorize(
        &self,
        request: &mut reqwest::Request,
        ask: &Ask<'_>,
    ) -> Result<(), SourceError> {
        let renew = self.stale.swap(false, std::sync::atomic::Ordering::AcqRel);
        let mut guard = self.token.lock().await;
        let fresh = guard
            .as_ref()
            .is_some_and(|t| !renew && t.renew_at.is_none_or(|at| Instant::now() < at));
        if !fresh {
            *guard = Some(self.log_in(ask).await?);
        }
        let token = &guard.as_ref().expect("a token was just set").value;
        let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| SourceError::permanent("the login's token is not a header value"))?;
        request
            .headers_mut()
            .insert(reqwest::header::AUTHORIZATION, value);
        Ok(())
    }

    async fn refused(&self) -> bool {
        tracing::info!(url = %self.config.url, "token refused; logging in again");
        self.stale.store(true, std::sync::atomic::Ordering::Release);
        true
    }
}
