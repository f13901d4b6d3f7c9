//! The hub's one error type. Every failure says which part of the hub it
//! comes from ([`Domain`]) and whether waiting and trying again can help
//! ([`ErrorClass`]), so that the one restart loop
//! ([`crate::retry::supervise`]) decides the same way for every task: a
//! transient failure is retried with backoff, a permanent one stops the
//! task with its reason instead of looping.
//!
//! The errors of the parts (a located `ConfigError`, a `BusError`, a
//! `SourceError` …) keep their own types and messages: each part converts
//! its own into an `Error` (`impl From<…> for Error` beside the type), with
//! its domain and class, and the part's error stays reachable
//! ([`Error::downcast_ref`]). This module knows no part, so that every
//! part may use it.
//!
//! A `String` in an `Err` is not an error of the hub but a *reason* that
//! another part places, and stays one:
//! - why a record is dead-lettered or refused (a mapping rule, a
//!   delivery's transform, the credit fields, the blacklist procedure's
//!   refusals, an unreadable provenance header): it travels with the record
//!   to the dead-letter topic, the desk or the receiver;
//! - why a config field is wrong (each section's `validate`): the loader
//!   locates it by file, line and field as a `ConfigError`;
//! - why a command-line value does not parse (`FromStr`, for clap).
//!
//! Whatever fails an operation (a file, the bus, a source, the entity
//! index, a dry run's input line) is an [`Error`].

pub use duijie_connectors::ErrorClass;
use duijie_connectors::SourceError;
use std::fmt;

/// Which part of the hub failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// The deployment file, a mapping file, a schema, the calendar, a
    /// secret: someone has to correct a file.
    Config,
    /// A source system: a connector's fetch or subscription.
    Source,
    /// Mapping records at run time, and the dry runs.
    Mapping,
    /// The Kafka bus and the schema registry.
    Bus,
    /// Pushing to a receiver (the credit platform, departments, pull feeds).
    Delivery,
    /// The market-entity library and its cache.
    Entity,
    /// Local files a command reads or writes.
    Io,
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Domain::Config => "config",
            Domain::Source => "source",
            Domain::Mapping => "mapping",
            Domain::Bus => "bus",
            Domain::Delivery => "delivery",
            Domain::Entity => "entity",
            Domain::Io => "io",
        })
    }
}

/// A failure of the hub: its domain, its class, what the hub was doing,
/// and the cause.
#[derive(Debug)]
pub struct Error {
    domain: Domain,
    class: ErrorClass,
    /// What the hub was doing, outermost first.
    context: Vec<String>,
    cause: Box<dyn std::error::Error + Send + Sync>,
}

/// The hub's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A part's error with its domain and class.
    pub fn new(
        domain: Domain,
        class: ErrorClass,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            domain,
            class,
            context: Vec::new(),
            cause: cause.into(),
        }
    }

    /// Waiting will not help: someone has to change something.
    pub fn permanent(domain: Domain, message: impl Into<String>) -> Self {
        Self::new(domain, ErrorClass::Permanent, message.into())
    }

    /// Worth trying again after a while.
    pub fn transient(domain: Domain, message: impl Into<String>) -> Self {
        Self::new(domain, ErrorClass::Transient, message.into())
    }

    /// A local file could not be read or written: interruptions and
    /// resource limits are worth retrying, a missing path or a permission
    /// is not.
    pub fn io(what: impl fmt::Display, source: std::io::Error) -> Self {
        Self::from(source).context(what)
    }

    /// The same error, saying what the hub was doing.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.context.insert(0, context.to_string());
        self
    }

    pub fn domain(&self) -> Domain {
        self.domain
    }

    pub fn class(&self) -> ErrorClass {
        self.class
    }

    pub fn is_permanent(&self) -> bool {
        self.class == ErrorClass::Permanent
    }

    /// The part's own error, when it is a `T`.
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.cause.downcast_ref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.context {
            write!(f, "{c}: ")?;
        }
        write!(f, "{}", self.cause)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.cause)
    }
}

/// A local file or socket: interruptions and resource limits are worth
/// retrying, a missing path or a permission is not ([`Error::io`] says
/// which file).
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        let class = match e.kind() {
            NotFound | PermissionDenied | InvalidInput | InvalidData | Unsupported
            | AlreadyExists => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        };
        Self::new(Domain::Io, class, e)
    }
}

impl From<SourceError> for Error {
    fn from(e: SourceError) -> Self {
        Self::new(Domain::Source, e.class, e)
    }
}

/// What the hub was doing, on any result whose error is one of the hub's.
pub trait Context<T> {
    fn context(self, context: impl fmt::Display) -> Result<T>;
    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }

    fn with_context<C: fmt::Display>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.into().context(context()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_keeps_its_domain_and_class_through_its_context() {
        let source = Error::from(SourceError::transient("HTTP 503"))
            .context("fetching")
            .context("pipeline `urban_cases`");
        assert_eq!(source.domain(), Domain::Source);
        assert_eq!(source.class(), ErrorClass::Transient);
        assert_eq!(
            source.to_string(),
            "pipeline `urban_cases`: fetching: HTTP 503"
        );
        assert!(source.downcast_ref::<SourceError>().is_some());

        let missing = Error::io(
            "reading cases.ndjson",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        assert_eq!(
            (missing.domain(), missing.class()),
            (Domain::Io, ErrorClass::Permanent)
        );
        let busy = Error::io(
            "writing out.ndjson",
            std::io::Error::from(std::io::ErrorKind::Interrupted),
        );
        assert_eq!(busy.class(), ErrorClass::Transient);
    }
}
