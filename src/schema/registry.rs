//! Registration of canonical schemas with a Confluent-compatible schema
//! registry, for deployments whose consumers expect the Confluent wire
//! format, under the subject strategy the deployment names
//! ([`SubjectStrategy`]: `<topic>-value` by default).

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

impl RegistryError {
    /// Unreachable, or answering 5xx, 408 or 429 (the house's one status
    /// rule): worth trying again. Any other refusal — 409 (the schema is
    /// incompatible with the subject's versions), 401/403, 422 — is the
    /// registry's answer until the schema or the credentials change.
    pub fn class(&self) -> crate::error::ErrorClass {
        match self {
            RegistryError::Unreachable { .. } => crate::error::ErrorClass::Transient,
            RegistryError::Refused { status, .. }
                if reqwest::StatusCode::from_u16(*status)
                    .is_ok_and(duijie_connectors::http::is_transient_status) =>
            {
                crate::error::ErrorClass::Transient
            }
            RegistryError::Refused { .. } => crate::error::ErrorClass::Permanent,
        }
    }
}

impl From<RegistryError> for crate::error::Error {
    fn from(e: RegistryError) -> Self {
        Self::new(crate::error::Domain::Bus, e.class(), e)
    }
}

/// The most of a registry's answer the hub reads.
const ANSWER_LIMIT: usize = 1 << 20;

/// Which subject a canonical schema is registered under (`[kafka]
/// subject_strategy`), as the Confluent serializers name them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectStrategy {
    /// `<topic>-value` (`TopicNameStrategy`).
    #[default]
    TopicName,
    /// The record's full name (`RecordNameStrategy`): one subject for a
    /// record wherever it is written.
    RecordName,
    /// `<topic>-<record full name>` (`TopicRecordNameStrategy`).
    TopicRecordName,
}

impl SubjectStrategy {
    /// The subject of record `full_name` written to `topic`.
    pub fn subject(self, topic: &str, full_name: &str) -> String {
        match self {
            SubjectStrategy::TopicName => format!("{topic}-value"),
            SubjectStrategy::RecordName => full_name.to_owned(),
            SubjectStrategy::TopicRecordName => format!("{topic}-{full_name}"),
        }
    }
}

/// A client of the registry's REST API.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    base: String,
    client: reqwest::Client,
    strategy: SubjectStrategy,
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

/// A subject's version as the registry holds it.
#[derive(Deserialize)]
struct Version {
    version: u32,
    schema: String,
}

impl RegistryClient {
    pub fn new(base_url: &str, strategy: SubjectStrategy) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a plain HTTP client builds");
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            client,
            strategy,
        }
    }

    /// The subject of record `full_name` written to `topic`.
    pub fn subject(&self, topic: &str, full_name: &str) -> String {
        self.strategy.subject(topic, full_name)
    }

    /// Registers `schema_json` (record `full_name`, written to `topic`)
    /// under its subject (a no-op in the registry when it is already
    /// there) and returns its global id.
    pub async fn register(
        &self,
        topic: &str,
        full_name: &str,
        schema_json: &str,
    ) -> Result<u32, RegistryError> {
        let subject = self.subject(topic, full_name);
        let request = self
            .client
            .post(format!("{}/subjects/{subject}/versions", self.base))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .json(&serde_json::json!({ "schema": schema_json }));
        let (status, answer) = self.exchange(request, &subject).await?;
        answer
            .and_then(|v| serde_json::from_value::<Registered>(v).ok())
            .map(|r| r.id)
            .ok_or_else(|| RegistryError::Refused {
                subject,
                status: status.as_u16(),
                body: "the answer names no schema id".into(),
            })
    }

    /// A GET answered with JSON; `None` for 404 (no such subject or
    /// setting).
    async fn get(&self, path: &str) -> Result<Option<serde_json::Value>, RegistryError> {
        let request = self
            .client
            .get(format!("{}{path}", self.base))
            .header("Accept", "application/vnd.schemaregistry.v1+json");
        Ok(self.exchange(request, path).await?.1)
    }

    /// Sends `request` about `what` (a subject or a path) and reads its
    /// answer (at most [`ANSWER_LIMIT`]): the JSON of a success, `None`
    /// for a 404, the registry's refusal otherwise.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<(reqwest::StatusCode, Option<serde_json::Value>), RegistryError> {
        let response = request
            .send()
            .await
            .map_err(|source| RegistryError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok((status, None));
        }
        let body = duijie_connectors::http::read_limited(response, ANSWER_LIMIT)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(the answer could not be read: {e})"));
        match serde_json::from_str(&body) {
            Ok(v) if status.is_success() => Ok((status, Some(v))),
            _ => Err(RegistryError::Refused {
                subject: what.to_owned(),
                status: status.as_u16(),
                body,
            }),
        }
    }

    /// The compatibility level `subject` is judged under: its own, else
    /// the registry's global level, else `BACKWARD` (what downstream
    /// readers of a canonical topic rely on). `NONE` counts as not set:
    /// it is Apicurio's factory setting, answered for every subject
    /// whether anyone chose it or not, and it enforces nothing.
    pub async fn level(&self, subject: &str) -> Result<super::compat::Level, RegistryError> {
        use super::compat::Level;
        let read = |v: serde_json::Value| {
            ["compatibilityLevel", "compatibility"]
                .iter()
                .find_map(|k| {
                    v.get(*k)
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_owned)
                })
                .and_then(|l| Level::parse(&l))
                .filter(|l| *l != Level::None)
        };
        for path in [format!("/config/{subject}"), "/config".to_owned()] {
            if let Some(level) = self.get(&path).await?.and_then(read) {
                return Ok(level);
            }
        }
        Ok(Level::Backward)
    }

    /// Every version of `subject`, oldest first: (number, schema JSON);
    /// empty for a subject the registry does not hold.
    pub async fn versions(&self, subject: &str) -> Result<Vec<(u32, String)>, RegistryError> {
        let Some(numbers) = self.get(&format!("/subjects/{subject}/versions")).await? else {
            return Ok(Vec::new());
        };
        let mut numbers: Vec<u64> = numbers
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
            .unwrap_or_default();
        numbers.sort_unstable();
        let mut out = Vec::with_capacity(numbers.len());
        for n in numbers {
            if let Some(v) = self
                .get(&format!("/subjects/{subject}/versions/{n}"))
                .await?
                && let Ok(v) = serde_json::from_value::<Version>(v)
            {
                out.push((v.version, v.schema));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three strategies name subjects as the Confluent serializers do.
    #[test]
    fn each_subject_strategy_names_its_subject() {
        let (topic, record) = ("canonical.urban_case", "duijie.canonical.UrbanCase");
        assert_eq!(
            SubjectStrategy::default().subject(topic, record),
            "canonical.urban_case-value"
        );
        assert_eq!(
            SubjectStrategy::RecordName.subject(topic, record),
            "duijie.canonical.UrbanCase"
        );
        assert_eq!(
            SubjectStrategy::TopicRecordName.subject(topic, record),
            "canonical.urban_case-duijie.canonical.UrbanCase"
        );
    }
}
