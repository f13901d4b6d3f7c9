//! A room's section of the deployment file (`[credit]`, `[commitments]`,
//! `[supervision]`, `[desk]`, `[entities]`, `[telemetry]`): the room's
//! own config type says, through [`Section`], what is wrong with it
//! (against what else the deployment has: [`Around`]), which topics it
//! writes, and which paths in it are relative to the deployment file.
//! `config` lists the sections once (`sections!` in `src/config.rs`) and
//! folds over the list for parsing, checking and topics, so that a new
//! room's section is its type, its `Section`, and one line there.

use crate::bus::TopicSpec;
use std::path::Path;

/// What a section may check itself against: the rest of the deployment.
#[derive(Debug, Clone, Copy)]
pub struct Around<'a> {
    /// Whether the hub serves HTTP (`[http] listen`).
    pub http: bool,
    /// The deliveries' names (`[deliveries.NAME]`).
    pub deliveries: &'a [String],
    /// `[hub] pseudonym_key`, when set.
    pub pseudonym_key: Option<&'a str>,
}

impl Around<'_> {
    /// Whether a delivery of that name exists.
    pub fn has_delivery(&self, name: &str) -> bool {
        self.deliveries.iter().any(|d| d == name)
    }

    /// The problem, if any, of a section that keys natural persons by
    /// pseudonym (`what` says why it needs one): the key is missing or not
    /// a usable secret.
    pub fn pseudonym_problem(&self, what: &str) -> Option<Problem> {
        match self.pseudonym_key {
            None => Some(Problem::at(
                "hub.pseudonym_key",
                format!("{what}: set [hub] pseudonym_key (a secret of at least 32 characters)"),
            )),
            Some(k) => crate::personal::Pseudonyms::new(k)
                .err()
                .map(|why| Problem::at("hub.pseudonym_key", why)),
        }
    }
}

/// One thing wrong with a section: the field (a dotted path from the
/// file's root, `credit.delivery`; the section's own name for the section
/// as a whole) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub why: String,
}

impl Problem {
    pub fn at(field: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            why: why.into(),
        }
    }
}

/// A room's section of the deployment file.
pub trait Section: PartialEq {
    /// Everything wrong with the section, each with its field; `name` is
    /// the section's name in the file (`credit`).
    fn problems(&self, name: &str, around: &Around<'_>) -> Vec<Problem>;

    /// The topics the room writes (created by the hub at start).
    fn topics(&self) -> Vec<TopicSpec> {
        Vec::new()
    }

    /// Resolves the paths in the section that are relative to the
    /// deployment file's folder `base`.
    fn resolve(&mut self, _base: &Path) {}

    /// Whether going from `self` to `new` on a reload needs a restart: by
    /// default any change does; a room that applies part of its section
    /// at once (the desk's users) leaves that part out.
    fn needs_restart(&self, new: &Self) -> bool {
        self != new
    }
}

/// The problem of a section's own `validate`, under the section's name.
pub fn own(name: &str, checked: Result<(), String>) -> Option<Problem> {
    checked.err().map(|why| Problem::at(name, why))
}

/// `[telemetry]`: its own checks; it writes no topic. (Its `Section` is
/// here rather than beside it: telemetry sits below the bus, which carries
/// its trace header, and the bus is below the sections.)
impl Section for crate::telemetry::trace::TelemetryConfig {
    fn problems(&self, name: &str, _around: &Around<'_>) -> Vec<Problem> {
        own(name, self.validate()).into_iter().collect()
    }
}
