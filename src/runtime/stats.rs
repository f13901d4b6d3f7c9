//! Counters every pipeline keeps, read by the demo summary, `status` and
//! the logs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};

pub use crate::telemetry::Latency;

/// Where a pipeline is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PipelineState {
    /// Loading its cursor, opening its source.
    Starting = 0,
    /// Polling (or receiving pushes).
    Running = 1,
    /// Failed; retrying from the last committed cursor.
    Failing = 2,
    /// Shut down.
    Stopped = 3,
    /// Another instance of the group runs this source task.
    Standby = 4,
}

impl PipelineState {
    pub fn name(self) -> &'static str {
        match self {
            PipelineState::Starting => "starting",
            PipelineState::Running => "running",
            PipelineState::Failing => "failing",
            PipelineState::Stopped => "stopped",
            PipelineState::Standby => "standby",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => PipelineState::Running,
            2 => PipelineState::Failing,
            3 => PipelineState::Stopped,
            4 => PipelineState::Standby,
            _ => PipelineState::Starting,
        }
    }
}

/// Counters of one pipeline. Records count once they are durable.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Raw records and raw rejects fetched from the source.
    pub fetched: AtomicU64,
    /// Canonical records acknowledged by the broker.
    pub delivered: AtomicU64,
    /// Dead letters acknowledged by the broker.
    pub dead_lettered: AtomicU64,
    pub batches: AtomicU64,
    pub retries: AtomicU64,
    /// Polls that ended in an error after retrying.
    pub failed_polls: AtomicU64,
    /// Restarts from the last committed cursor.
    pub restarts: AtomicU64,
    /// Pushed messages refused (unsigned, wrongly signed, replayed).
    pub refused: AtomicU64,
    pub last_commit_ms: AtomicI64,
    /// When the source was last read to its end (caught up).
    pub caught_up_ms: AtomicI64,
    /// From a batch fetched to its cursor committed.
    pub batch_latency: Latency,
    state: AtomicU8,
    last_error: std::sync::Mutex<Option<String>>,
    /// The source watermark of the last committed cursor, if it has one.
    watermark: std::sync::Mutex<Option<String>>,
    /// When these counters started (epoch ms; 0 until first asked).
    started_ms: AtomicI64,
}

impl PipelineStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> PipelineState {
        PipelineState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, state: PipelineState) {
        self.state.store(state as u8, Ordering::Relaxed);
        if state == PipelineState::Running {
            *self.last_error.lock().expect("error lock") = None;
        }
    }

    /// Failing, with why.
    pub fn set_failing(&self, error: &str) {
        self.state
            .store(PipelineState::Failing as u8, Ordering::Relaxed);
        *self.last_error.lock().expect("error lock") = Some(error.to_owned());
    }

    pub fn set_watermark(&self, w: &str) {
        *self.watermark.lock().expect("watermark lock") = Some(w.to_owned());
    }

    pub fn watermark(&self) -> Option<String> {
        self.watermark.lock().expect("watermark lock").clone()
    }

    /// When counting started: the first call fixes it.
    pub fn started_ms(&self) -> i64 {
        let now = chrono::Utc::now().timestamp_millis();
        match self
            .started_ms
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => now,
            Err(t) => t,
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("error lock").clone()
    }
}

/// Counters of every pipeline in the process.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pipelines: Arc<std::sync::Mutex<BTreeMap<String, Arc<PipelineStats>>>>,
}

impl Stats {
    pub fn pipeline(&self, name: &str) -> Arc<PipelineStats> {
        self.pipelines
            .lock()
            .expect("stats lock")
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    pub fn snapshot(&self) -> Vec<(String, Arc<PipelineStats>)> {
        self.pipelines
            .lock()
            .expect("stats lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
