//! The one list of transports. Each transport is a type implementing
//! [`Transport`] (the crate root's, beside [`crate::Source`]) in its own
//! module, and knows nothing of this list; [`transports!`] below erases them once,
//! into [`SourceConfig`] (what a pipeline's `[source]` table deserializes
//! to) and [`BuiltSource`] (what the runtime drives). Config loading,
//! validation and the runtime go through here, so a new transport is its
//! module plus one line in the list at the bottom of this file.

use crate::SourceError;
use std::path::Path;

pub use crate::{BuiltSource, Drive, Transport};

macro_rules! transports {
    ($($variant:ident => $transport:ty),* $(,)?) => {
        /// Every source kind a pipeline may name in `source.kind`.
        pub const SOURCE_KINDS: &[&str] = &[$(<$transport as Transport>::KIND),*];

        /// A source's configuration, by kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum SourceConfig {
            $($variant(<$transport as Transport>::Config)),*
        }

        impl SourceConfig {
            /// Deserializes the kind-specific table (without its `kind`
            /// key). `Ok(None)` means the kind is unknown.
            pub fn deserialize_kind<'de, D>(kind: &str, table: D) -> Result<Option<Self>, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                $(
                    if kind == <$transport as Transport>::KIND {
                        return serde::Deserialize::deserialize(table).map(|c| Some(Self::$variant(c)));
                    }
                )*
                Ok(None)
            }

            pub fn kind(&self) -> &'static str {
                match self { $(Self::$variant(_) => <$transport as Transport>::KIND),* }
            }

            /// How the runtime drives this source.
            pub fn drive(&self) -> Drive {
                match self { $(Self::$variant(_) => <$transport as Transport>::DRIVE),* }
            }

            /// Checks what the types cannot, without I/O.
            pub fn validate(&self) -> Result<(), String> {
                match self { $(Self::$variant(c) => <$transport as Transport>::validate(c)),* }
            }

            /// Makes relative paths relative to the directory of the config
            /// file.
            pub fn resolve_paths(&mut self, base: &Path) {
                match self { $(Self::$variant(c) => <$transport as Transport>::resolve_paths(c, base)),* }
            }

            /// The source as the runtime drives it.
            pub fn build(&self) -> Result<BuiltSource, SourceError> {
                match self { $(Self::$variant(c) => <$transport as Transport>::build(c)),* }
            }
        }
    };
}

impl SourceConfig {
    /// Whether records are pushed to the hub rather than polled (no
    /// schedule, no cursor of the hub's).
    pub fn is_push(&self) -> bool {
        self.drive() != Drive::Polled
    }
}

transports! {
    FileDrop => crate::file_drop::FileDrop,
    HttpPoll => crate::http_poll::HttpPoll,
    Mqtt => crate::mqtt::Mqtt,
    SoapPoll => crate::soap_poll::SoapPoll,
    SqlPoll => crate::sql_poll::SqlPoll,
    Webhook => crate::webhook::Webhook,
}
