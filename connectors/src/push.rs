//! The contract of a pushed source that holds its own connection (an MQTT
//! subscription): the cursor-after-ack contract, for a sender that pushes.
//!
//! The runtime gives the source an [`Intake`]. The source hands it each
//! message and acknowledges the message to its sender (an MQTT PUBACK)
//! only once [`Intake::take`] returned `Ok`: by then the record, or its dead
//! letter, is acknowledged by the bus. A crash before that means the sender
//! delivers again, never a loss; a copy delivered again lands under the
//! same stable key.
//!
//! The webhook receiver, served by the hub's HTTP server, hands its
//! messages to the same intake.

use crate::{RawRecord, RawReject, SourceError};
use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

/// One message: a record, or what the source could not turn into one (it
/// becomes a dead letter, never a silent drop).
#[derive(Debug, Clone)]
pub enum Pushed {
    Record(RawRecord),
    Reject(RawReject),
}

/// What became of a message the bus acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Mapped and written under this key.
    Mapped { key: String },
    /// Written to the dead-letter topic, for this reason.
    DeadLettered { reason: String },
}

/// The runtime's side: writes a message to the bus and returns once the
/// broker acknowledged it. An `Err` means nothing may be acknowledged to
/// the sender; a transient one is worth handing over again.
#[async_trait]
pub trait Intake: Send + Sync {
    async fn take(&self, message: Pushed) -> Result<Taken, SourceError>;
}

/// A source that is pushed to over a connection it holds.
#[async_trait]
pub trait Subscription: Send + std::fmt::Debug {
    /// Receives until `stop` is cancelled (then returns `Ok`), handing each
    /// message to `intake` and acknowledging it to the sender only after
    /// `intake` returned `Ok`. Returns an error the runtime classifies
    /// (retry with backoff, or stop the pipeline as failing).
    async fn run(
        &mut self,
        intake: &dyn Intake,
        stop: CancellationToken,
    ) -> Result<(), SourceError>;
}
