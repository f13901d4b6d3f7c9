//! Counters every pipeline keeps, read by the demo summary, `status` and
//! the logs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

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
    /// Pushed deliveries refused (unsigned, wrongly signed, replayed).
    pub refused: AtomicU64,
    pub last_commit_ms: AtomicI64,
}

impl PipelineStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
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
