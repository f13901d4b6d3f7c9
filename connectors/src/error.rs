use std::time::Duration;

/// What the runtime should do about a source error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Worth retrying with backoff: a 5xx, a timeout, a reset connection.
    Transient,
    /// Retrying will not help until someone changes something: a 4xx, a
    /// missing directory, bad credentials that re-login did not fix.
    Permanent,
}

/// An error from a source, with the class the runtime needs to decide
/// whether to retry.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SourceError {
    pub class: ErrorClass,
    message: String,
    /// A server's own hint (`Retry-After`).
    pub retry_after: Option<Duration>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SourceError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Transient,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Permanent,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn is_transient(&self) -> bool {
        self.class == ErrorClass::Transient
    }

    /// Classifies an I/O error: interruptions and resource limits are worth
    /// retrying, a missing path or a permission is not.
    pub fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        let class = match err.kind() {
            NotFound | PermissionDenied | InvalidInput | InvalidData | Unsupported => {
                ErrorClass::Permanent
            }
            _ => ErrorClass::Transient,
        };
        Self {
            class,
            message: format!("{}: {err}", context.into()),
            retry_after: None,
            source: Some(Box::new(err)),
        }
    }
}
