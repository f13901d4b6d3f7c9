//! Registration of canonical schemas with a Confluent-compatible schema
//! registry, for deployments whose consumers expect the Confluent wire
//! format. Subjects follow the topic-name strategy: `<topic>-value`.

use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry at {url} is unreachable: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("schema registry refused subject `{subject}`: HTTP {status}: {body}")]
    Refused {
        subject: String,
        status: u16,
        body: String,
    },
}

impl From<RegistryError> for crate::error::Error {
    fn from(e: RegistryError) -> Self {
        let class = match e {
            RegistryError::Unreachable { .. } => crate::error::ErrorClass::Transient,
            _ => crate::error::ErrorClass::Permanent,
        };
        Self::new(crate::error::Domain::Bus, class, e)
    }
}

/// A client of the registry's REST API.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    base: String,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

impl RegistryClient {
    pub fn new(base_url: &str) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a plain HTTP client builds");
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            client,
        }
    }

    /// Registers `schema_json` under `<topic>-value` (a no-op in the
    /// registry when it is already there) and returns its global id.
    pub async fn register(&self, topic: &str, schema_json: &str) -> Result<u32, RegistryError> {
        let subject = format!("{topic}-value");
        let url = format!("{}/subjects/{subject}/versions", self.base);
        let response = self
            .client
            .post(&url)
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .json(&serde_json::json!({ "schema": schema_json }))
            .send()
            .await
            .map_err(|source| RegistryError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(RegistryError::Refused {
                subject,
                status: status.as_u16(),
                body,
            });
        }
        serde_json::from_str::<Registered>(&body)
            .map(|r| r.id)
            .map_err(|_| RegistryError::Refused {
                subject,
                status: status.as_u16(),
                body,
            })
    }
}
