//! Scale-out: the singleton tasks of a hub — each poll pipeline's source,
//! the deadline keepers — shared by every instance
//! running the same deployment, through Kafka's own group protocol.
//!
//! The hub's control topic has one partition per task (tasks sorted by
//! name, partition *i* is task *i*). Every instance joins one consumer
//! group on it (cooperative-sticky assignment); an instance runs exactly
//! the tasks whose partitions it is assigned. No coordinator of our own:
//! the broker's group coordinator decides.
//!
//! Handover is orderly: when a partition is revoked, the rebalance waits
//! until its task has stopped — in-flight batches acknowledged, the
//! cursor committed — before the partition goes to another instance,
//! which resumes from that cursor. When an instance dies, the group's
//! session timeout ends its membership and the survivors take its tasks,
//! resuming from the last committed cursors (at-least-once: at most the
//! batches that were in flight are read again).

use crate::bus::{Bus, ReaderContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Starts one task; it runs until the token is cancelled.
pub type Starter = Box<dyn Fn(CancellationToken) -> JoinHandle<()> + Send + Sync>;

/// A task that must run on exactly one instance at a time.
pub struct SharedTask {
    pub name: String,
    pub start: Starter,
    /// Told when the task starts and stops here (for `/ready`).
    pub on_change: Option<Box<dyn Fn(bool) + Send + Sync>>,
}

impl std::fmt::Debug for SharedTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTask")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How the instances of a hub find each other.
#[derive(Debug, Clone)]
pub struct Membership {
    pub bus: Bus,
    /// One partition per task.
    pub control_topic: String,
    pub group: String,
}

enum Change {
    Assign(Vec<i32>),
    /// Stop these, then say so on the channel.
    Revoke(Vec<i32>, std::sync::mpsc::Sender<()>),
}

struct GroupContext {
    changes: mpsc::UnboundedSender<Change>,
    /// How long a revoke waits for its tasks to stop.
    stop_timeout: Duration,
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        ReaderContext.log(level, fac, log_message);
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let (tx, rx) = std::sync::mpsc::channel();
            if self
                .changes
                .send(Change::Revoke(partitions(tpl), tx))
                .is_ok()
                && rx.recv_timeout(self.stop_timeout).is_err()
            {
                tracing::warn!(
                    "tasks did not stop within {:?} of their revocation",
                    self.stop_timeout
                );
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let _ = self.changes.send(Change::Assign(partitions(tpl)));
        }
    }
}

/// Runs `tasks` as the group assigns them, until `shutdown`; then leaves
/// the group, which hands the tasks to the other instances. Partition *i*
/// of the control topic is `names[i]`.
///
/// Long because the shared tasks' group loop (assignments, revocations,
/// each task started and stopped, leaving the group) is one select over the
/// group's events.
pub async fn run(
    membership: Membership,
    names: Vec<String>,
    tasks: Vec<SharedTask>,
    shutdown: CancellationToken,
) {
    let mut by_name: BTreeMap<String, SharedTask> =
        tasks.into_iter().map(|t| (t.name.clone(), t)).collect();
    let tasks: Vec<Option<SharedTask>> = names.iter().map(|n| by_name.remove(n)).collect();
    for (name, _) in by_name {
        tracing::error!(task = %name, "a task without a control partition never runs");
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let context = GroupContext {
        changes: tx,
        stop_timeout: Duration::from_secs(120),
    };
    // How long a silent instance keeps its tasks (`[kafka] session_timeout`).
    let session = membership.bus.session_timeout.as_millis();
    membership.bus.set_group_timeouts(&membership.group).await;
    let joined = membership
        .bus
        .group_member_with(&membership.group, context, |c| {
            // A new member does not read the control topic's past; the
            // group's cooperative rebalancing moves a task only after its
            // old owner stopped it (KIP-429), and the others keep running.
            c.set("auto.offset.reset", "latest");
            // Under KIP-848 the session is the group's, set on the broker
            // (`Bus::set_group_timeouts`, below).
            if membership.bus.group_protocol == crate::bus::GroupProtocol::Classic {
                c.set("session.timeout.ms", session.to_string())
                    .set("heartbeat.interval.ms", (session / 5).max(100).to_string());
            }
        });
    let consumer: BaseConsumer<GroupContext> = match joined {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot join the hub's group; no shared task runs here");
            return;
        }
    };
    if let Err(e) = consumer.subscribe(&[&membership.control_topic]) {
        tracing::error!(error = %e, "cannot subscribe to the control topic");
        return;
    }
    tracing::info!(group = %membership.group, topic = %membership.control_topic, tasks = tasks.len(), "joining the hub's group");
    // The group's heartbeats and rebalances happen while polling: on a
    // thread of its own, because a revoke blocks until its tasks stopped.
    let leave = CancellationToken::new();
    let poller = {
        let leave = leave.clone();
        tokio::task::spawn_blocking(move || {
            while !leave.is_cancelled() {
                if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                    tracing::debug!(error = %e, "control topic poll");
                }
            }
            // Leaving revokes everything (and waits for the tasks to stop).
            consumer.unsubscribe();
            for _ in 0..20 {
                let _ = consumer.poll(Duration::from_millis(50));
            }
        })
    };

    let running: Mutex<BTreeMap<i32, (CancellationToken, JoinHandle<()>)>> = Mutex::default();
    let stop = |parts: &[i32]| {
        let mut stopping = Vec::new();
        let mut map = running.lock().expect("running lock");
        for p in parts {
            if let Some((token, handle)) = map.remove(p) {
                token.cancel();
                stopping.push((*p, handle));
            }
        }
        stopping
    };
    loop {
        let change = tokio::select! {
            _ = shutdown.cancelled() => break,
            c = rx.recv() => match c { Some(c) => c, None => break },
        };
        match change {
            Change::Assign(parts) => {
                let mut map = running.lock().expect("running lock");
                for p in parts {
                    let Some(task) = usize::try_from(p)
                        .ok()
                        .and_then(|i| tasks.get(i))
                        .and_then(Option::as_ref)
                    else {
                        tracing::error!(
                            partition = p,
                            "assigned a task this instance cannot run (a different deployment?)"
                        );
                        continue;
                    };
                    if map.contains_key(&p) {
                        continue;
                    }
                    tracing::info!(task = %task.name, "task assigned here; starting");
                    let token = shutdown.child_token();
                    let handle = (task.start)(token.clone());
                    if let Some(f) = &task.on_change {
                        f(true);
                    }
                    map.insert(p, (token, handle));
                }
            }
            Change::Revoke(parts, done) => {
                for (p, handle) in stop(&parts) {
                    let _ = handle.await;
                    if let Some(Some(task)) = tasks.get(p as usize) {
                        tracing::info!(task = %task.name, "task revoked; stopped here");
                        if let Some(f) = &task.on_change {
                            f(false);
                        }
                    }
                }
                let _ = done.send(());
            }
        }
    }
    // Shutdown: stop what runs here (the tokens are children of
    // `shutdown`), then leave the group.
    let all: Vec<i32> = running
        .lock()
        .expect("running lock")
        .keys()
        .copied()
        .collect();
    for (_, handle) in stop(&all) {
        let _ = handle.await;
    }
    leave.cancel();
    // The revoke on leaving finds nothing running; answer it.
    let answer = tokio::spawn(async move {
        while let Some(c) = rx.recv().await {
            if let Change::Revoke(_, done) = c {
                let _ = done.send(());
            }
        }
    });
    let _ = poller.await;
    answer.abort();
}
