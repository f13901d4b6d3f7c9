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
    #[serde(default)]
    references: Vec<Reference>,
}

/// A schema reference (Confluent's, which Apicurio's ccompat API keeps):
/// the record `name` a schema uses, defined by `subject`'s `version`.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
struct Reference {
    name: String,
    subject: String,
    version: u32,
}

/// How deep references may nest before the registry's answer is refused.
const MAX_REFERENCE_DEPTH: usize = 8;

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

    /// Registers `schema` (written to `topic`) under its subject and
    /// returns its global id: first each record it names (`Party`) under
    /// its own subject, the record's full name, then the schema as written
    /// with references to them, so that the shared record is one subject
    /// with one history rather than a copy inside every schema. A no-op in
    /// the registry for what it already holds.
    pub async fn register(
        &self,
        topic: &str,
        schema: &super::CanonicalSchema,
    ) -> Result<u32, RegistryError> {
        let mut references = Vec::with_capacity(schema.references.len());
        for (name, json) in &schema.references {
            self.post_version(name, json, &[]).await?;
            references.push(Reference {
                name: name.clone(),
                subject: name.clone(),
                version: self.version_of(name, json).await?,
            });
        }
        let subject = self.subject(topic, &schema.full_name);
        self.post_version(&subject, &schema.written, &references)
            .await
    }

    /// Registers `schema` with `references` under `subject`; its id.
    async fn post_version(
        &self,
        subject: &str,
        schema: &str,
        references: &[Reference],
    ) -> Result<u32, RegistryError> {
        let mut body = serde_json::json!({ "schema": schema });
        if !references.is_empty() {
            body["references"] = serde_json::json!(references);
        }
        let request = self
            .client
            .post(format!("{}/subjects/{subject}/versions", self.base))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .json(&body);
        let (status, answer) = self.exchange(request, subject).await?;
        answer
            .and_then(|v| serde_json::from_value::<Registered>(v).ok())
            .map(|r| r.id)
            .ok_or_else(|| RegistryError::Refused {
                subject: subject.to_owned(),
                status: status.as_u16(),
                body: "the answer names no schema id".into(),
            })
    }

    /// The version number under which `subject` holds `schema` (the
    /// registry's lookup).
    async fn version_of(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let request = self
            .client
            .post(format!("{}/subjects/{subject}", self.base))
            .header("Content-Type", "application/vnd.schemaregistry.v1+json")
            .json(&serde_json::json!({ "schema": schema }));
        let (status, answer) = self.exchange(request, subject).await?;
        answer
            .and_then(|v| v.get("version").and_then(serde_json::Value::as_u64))
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| RegistryError::Refused {
                subject: subject.to_owned(),
                status: status.as_u16(),
                body: "the registry does not hold the schema just registered".into(),
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
            if let Some(v) = self.version(subject, n).await? {
                let number = v.version;
                out.push((number, self.resolved(subject, v, 0).await?));
            }
        }
        Ok(out)
    }

    /// Version `n` of `subject`, as held.
    async fn version(&self, subject: &str, n: u64) -> Result<Option<Version>, RegistryError> {
        Ok(self
            .get(&format!("/subjects/{subject}/versions/{n}"))
            .await?
            .and_then(|v| serde_json::from_value::<Version>(v).ok()))
    }

    /// A version's schema made self-contained: the schemas its references
    /// name (themselves resolved) inlined.
    fn resolved<'a>(
        &'a self,
        subject: &'a str,
        v: Version,
        depth: usize,
    ) -> futures::future::BoxFuture<'a, Result<String, RegistryError>> {
        Box::pin(async move {
            if v.references.is_empty() {
                return Ok(v.schema);
            }
            let refused = |body: String| RegistryError::Refused {
                subject: subject.to_owned(),
                status: 200,
                body,
            };
            if depth >= MAX_REFERENCE_DEPTH {
                return Err(refused(format!(
                    "schema references nest deeper than {MAX_REFERENCE_DEPTH}"
                )));
            }
            let mut texts = Vec::with_capacity(v.references.len());
            for r in &v.references {
                let held = self
                    .version(&r.subject, u64::from(r.version))
                    .await?
                    .ok_or_else(|| {
                        refused(format!(
                            "reference `{}` names {} version {}, which the registry does not hold",
                            r.name, r.subject, r.version
                        ))
                    })?;
                texts.push(self.resolved(&r.subject, held, depth + 1).await?);
            }
            super::resolve(&v.schema, &texts).map_err(refused)
        })
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
