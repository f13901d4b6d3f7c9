//! Records a reader of the bus could not read.
//!
//! A keeper, the desk, a feed replay or the quality board that meets a
//! record it cannot decode leaves it out of what it computes — it cannot
//! guess what the record says — but never silently: each one is counted
//! per reader and topic (`duijie_records_unreadable_total{reader,topic}`)
//! and logged with its place, at most once per 10 s per reader and topic
//! with the number left out of the log since. The record itself stays on
//! its topic: nothing is lost, and a fixed reader reads it again.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one reader's failures on one topic are logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Count {
    total: u64,
    logged_at: Option<Instant>,
    unlogged: u64,
}

static COUNTS: Mutex<BTreeMap<(&'static str, String), Count>> = Mutex::new(BTreeMap::new());

/// Counts and logs a record `reader` could not read, at `topic`
/// `partition`/`offset`, and why.
pub fn unreadable(reader: &'static str, topic: &str, partition: i32, offset: i64, why: &str) {
    let suppressed = {
        let mut counts = COUNTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let c = counts.entry((reader, topic.to_owned())).or_default();
        c.total += 1;
        if c.logged_at.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            c.unlogged += 1;
            return;
        }
        c.logged_at = Some(Instant::now());
        std::mem::take(&mut c.unlogged)
    };
    tracing::warn!(
        reader,
        topic,
        partition,
        offset,
        reason = why,
        suppressed,
        "a record on the bus could not be read; left out (it stays on its topic)"
    );
}

/// Unreadable records so far, per reader and topic.
pub fn unreadable_counts() -> Vec<(&'static str, String, u64)> {
    COUNTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|((reader, topic), c)| (*reader, topic.clone(), c.total))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_unreadable_record_is_counted_though_the_log_is_rate_limited() {
        for offset in 0..5 {
            super::unreadable("test-reader", "t.unreadable", 0, offset, "not JSON");
        }
        super::unreadable("other-reader", "t.unreadable", 0, 9, "not JSON");
        let counts = super::unreadable_counts();
        assert!(counts.contains(&("test-reader", "t.unreadable".to_owned(), 5)));
        assert!(counts.contains(&("other-reader", "t.unreadable".to_owned(), 1)));
    }
}
