//! The way to one receiver of a one-record-a-request delivery: at
//! most `in_flight` requests at once across its keys, and, while the
//! receiver fails, one key probes it and the others wait (a receiver in
//! its maintenance window sees one request per backoff, not one per key).

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Semaphore, watch};

#[derive(Debug)]
pub(super) struct Gate {
    slots: Semaphore,
    /// The ticket probing a failing receiver; `None` while it answers.
    probe: watch::Sender<Option<u64>>,
    next: AtomicU64,
}

impl Gate {
    pub(super) fn new(in_flight: usize) -> Self {
        Self {
            slots: Semaphore::new(in_flight.max(1)),
            probe: watch::Sender::new(None),
            next: AtomicU64::new(1),
        }
    }

    /// A ticket for one chunk's attempts.
    pub(super) fn ticket(&self) -> Ticket<'_> {
        Ticket {
            gate: self,
            id: self.next.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// One chunk's passage: it sends when the receiver answers (or when it is
/// the probe), within a slot; dropped, it hands the probe on.
#[derive(Debug)]
pub(super) struct Ticket<'a> {
    gate: &'a Gate,
    id: u64,
}

impl Ticket<'_> {
    /// Runs `send` in a slot once the receiver is not failing, or once
    /// this ticket probes it.
    pub(super) async fn send<T>(&self, send: impl Future<Output = T>) -> T {
        let mut probe = self.gate.probe.subscribe();
        // The sender lives as long as the gate, so this never fails.
        let _ = probe.wait_for(|p| p.is_none_or(|p| p == self.id)).await;
        drop(probe);
        let _slot = self
            .gate
            .slots
            .acquire()
            .await
            .expect("the slots are never closed");
        send.await
    }

    /// The receiver failed this ticket's request: unless another probes
    /// it already, this one does.
    pub(super) fn failed(&self) {
        self.gate.probe.send_if_modified(|p| {
            if p.is_none() {
                *p = Some(self.id);
                true
            } else {
                false
            }
        });
    }

    /// The receiver answered: the others go on.
    pub(super) fn answered(&self) {
        self.release();
    }

    fn release(&self) {
        self.gate.probe.send_if_modified(|p| {
            if *p == Some(self.id) {
                *p = None;
                true
            } else {
                false
            }
        });
    }
}

impl Drop for Ticket<'_> {
    /// A chunk settled another way (dead-lettered after its patience, or
    /// shut down) hands the probe to the next.
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// No more than `in_flight` requests at once.
    #[tokio::test]
    async fn at_most_in_flight_requests_at_once() {
        let gate = Arc::new(Gate::new(3));
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (gate, now, most) = (gate.clone(), now.clone(), most.clone());
                tokio::spawn(async move {
                    gate.ticket()
                        .send(async {
                            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(n, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            now.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    /// While the receiver fails, only the probe sends; the others wait
    /// until it answers, or until the probe is given up.
    #[tokio::test]
    async fn a_failing_receiver_is_probed_by_one_key_and_the_others_wait() {
        let gate = Gate::new(8);
        let probe = gate.ticket();
        probe.send(async {}).await;
        probe.failed();
        let other = gate.ticket();
        let waited = tokio::time::timeout(Duration::from_millis(50), other.send(async {})).await;
        assert!(waited.is_err(), "another key waits while the probe fails");
        // A second failure of another ticket does not take the probe.
        other.failed();
        probe.send(async {}).await;
        probe.answered();
        tokio::time::timeout(Duration::from_secs(5), other.send(async {}))
            .await
            .expect("the others go on once the receiver answers");
        // A probe given up (dropped) hands on too.
        let third = gate.ticket();
        third.failed();
        let fourth = gate.ticket();
        drop(third);
        tokio::time::timeout(Duration::from_secs(5), fourth.send(async {}))
            .await
            .expect("a dropped probe lets the others go");
    }
}
