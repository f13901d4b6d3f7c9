//! Hot reload: on SIGHUP, or when the deployment file or a mapping file
//! changes, the new configuration is loaded and checked in full (file,
//! schemas, mappings, references) first. A bad one is reported and the
//! running configuration stays. A good one swaps only the poll pipelines
//! whose configuration or mapping changed: the old one stops after its
//! in-flight batches are acknowledged and its cursor committed, the new
//! one resumes from that cursor — no record is lost or read twice.
//! Pipelines added start; pipelines removed stop. Deliveries
//! (`[deliveries]` with a webhook, SOAP or credit target) are swapped the
//! same way: the old consumer settles or abandons its round — a record not
//! receipted is not committed, and the new one, in the same consumer group,
//! delivers it from the committed offset (receivers absorb a repeat by its
//! idempotency key). Changes elsewhere (webhook sources, pull feeds, the
//! desk, `[kafka]`, `[http]`, `[hub]`) are reported as needing a restart.

use super::shared::Starter;
use super::{Hub, RegistryClient, starter};
use crate::config::{Deployment, PipelineConfig};
use crate::delivery::{Delivery, DeliveryConfig, SharedTopics, TargetConfig};
use crate::mapping::MappingSet;
use crate::schema::SchemaSet;
use duijie_connectors::registry::Drive;
use rdkafka::producer::FutureProducer;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A new configuration, checked.
#[derive(Debug)]
pub struct Reload {
    pub deployment: Deployment,
    pub mappings: MappingSet,
}

/// What a running pipeline is, compared by value on reload (never by its
/// `Debug` text, which hides secrets and may leave fields out): a poll
/// pipeline's configuration with a digest of its mapping file and the code
/// tables, or a delivery's configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    Pipeline(Box<PipelineConfig>, String),
    Delivery(Box<DeliveryConfig>),
}

/// A poll pipeline's identity: a change to its configuration, its mapping
/// file or a code table swaps it.
pub fn pipeline_identity(p: &PipelineConfig, mappings_dir: &Path) -> Identity {
    let mut h = Sha256::new();
    for file in [
        mappings_dir.join(format!("{}.yaml", p.mapping)),
        mappings_dir.join(format!("{}.yml", p.mapping)),
    ] {
        if let Ok(bytes) = std::fs::read(&file) {
            h.update(&bytes);
        }
    }
    if let Ok(entries) = std::fs::read_dir(mappings_dir.join("codes")) {
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if let Ok(bytes) = std::fs::read(&f) {
                h.update(&bytes);
            }
        }
    }
    Identity::Pipeline(Box::new(p.clone()), hex::encode(h.finalize()))
}

/// A delivery's identity: its configuration.
pub fn delivery_identity(c: &DeliveryConfig) -> Identity {
    Identity::Delivery(Box::new(c.clone()))
}

/// Starts a delivery under a given token.
pub fn delivery_starter(delivery: Delivery) -> Starter {
    Box::new(move |token| tokio::spawn(delivery.clone().run(token)))
}

fn is_pull(c: &DeliveryConfig) -> bool {
    matches!(c.target, TargetConfig::Pull { .. })
}

/// The poll pipelines (or deliveries) running here.
#[derive(Debug, Default)]
pub struct Running {
    map: BTreeMap<String, (Identity, CancellationToken, JoinHandle<()>)>,
}

impl Running {
    pub fn start(
        &mut self,
        name: &str,
        identity: Identity,
        start: &Starter,
        shutdown: &CancellationToken,
    ) {
        let token = shutdown.child_token();
        let handle = start(token.clone());
        self.map.insert(name.to_owned(), (identity, token, handle));
    }

    /// Stops a pipeline; returns once its in-flight batches are settled.
    pub async fn stop(&mut self, name: &str) {
        if let Some((_, token, handle)) = self.map.remove(name) {
            token.cancel();
            let _ = handle.await;
        }
    }

    pub async fn stop_all(&mut self) {
        let names: Vec<String> = self.map.keys().cloned().collect();
        for n in names {
            self.stop(&n).await;
        }
    }

    fn identity(&self, name: &str) -> Option<&Identity> {
        self.map.get(name).map(|(i, _, _)| i)
    }
}

/// What came of the configurations the hub was given while running: the
/// metric `duijie_reloads{outcome="applied"|"refused"}`.
#[derive(Debug, Default)]
pub struct ReloadStats {
    pub applied: std::sync::atomic::AtomicU64,
    /// Configurations that did not check out (logged with their errors).
    pub refused: std::sync::atomic::AtomicU64,
    /// The operator audit each reload is written to (`duijie run`).
    pub audit: std::sync::OnceLock<crate::audit::OpsAudit>,
}

impl ReloadStats {
    /// Writes a reload's outcome to the operator audit, when there is one.
    pub async fn audited(&self, outcome: &str, detail: &str) {
        if let Some(audit) = self.audit.get()
            && let Err(e) = audit
                .record(&crate::audit::Operation::new("reload", outcome, detail))
                .await
        {
            tracing::error!(error = %e, "the operator audit did not take the reload");
        }
    }
}

/// Applies reloads to a running hub.
pub(super) struct Swap<'a> {
    pub hub: &'a Hub,
    pub producer: &'a FutureProducer,
    /// The pipelines' producer.
    pub batch_producer: &'a crate::bus::BatchProducer,
    pub shutdown: &'a CancellationToken,
    pub shared: &'a SharedTopics,
    /// The running desk, whose users a reload replaces.
    pub desk: Option<&'a crate::desk::Desk>,
}

impl Swap<'_> {
    /// Long because a reload's comparison section by section, then its
    /// swaps; the sections are compared by value in one list so that none
    /// is forgotten.
    pub(super) async fn apply(&self, reload: Reload, running: &mut Running, feeds: &mut Running) {
        let old = &self.hub.deployment;
        let new = &reload.deployment;
        // What a reload does not swap, compared by value.
        let mut restart = Vec::new();
        let mut section = |name: &str, changed: bool| {
            if changed {
                restart.push(name.to_owned());
            }
        };
        section("[kafka]", old.kafka != new.kafka);
        section("[http]", old.http != new.http);
        section("[hub]", old.hub != new.hub);
        let pull_feeds = |d: &Deployment| -> Vec<(String, DeliveryConfig)> {
            d.deliveries
                .iter()
                .filter(|(_, c)| is_pull(c))
                .cloned()
                .collect()
        };
        section("pull feeds", pull_feeds(old) != pull_feeds(new));
        // The rooms' sections, each as its room says (the desk's users
        // apply at once).
        for name in old.sections.needing_restart(&new.sections) {
            section(&format!("[{name}]"), true);
        }
        let pushed = |d: &Deployment| -> BTreeMap<String, PipelineConfig> {
            d.pipelines
                .iter()
                .filter(|p| p.source.drive() == Drive::Served)
                .map(|p| (p.name.clone(), p.clone()))
                .collect()
        };
        section("webhook pipelines", pushed(old) != pushed(new));
        if let (Some(desk), Some(config)) = (self.desk, new.sections.desk.as_ref())
            && old.sections.desk.as_ref().map(|d| &d.users) != Some(&config.users)
        {
            let ended = desk.set_users(config.users.clone());
            tracing::info!(
                users = config.users.len(),
                sessions_ended = ended,
                "desk users reloaded"
            );
        }

        let dir = &new.hub.mappings;
        let wanted: BTreeMap<&str, &PipelineConfig> = new
            .pipelines
            .iter()
            .filter(|p| p.source.drive() != Drive::Served)
            .map(|p| (p.name.as_str(), p))
            .collect();
        let (mut kept, mut swapped, mut added, mut removed) = (0, 0, 0, 0);
        let current: Vec<String> = running.map.keys().cloned().collect();
        for name in current {
            if !wanted.contains_key(name.as_str()) {
                tracing::info!(pipeline = %name, "removed from the configuration; stopping");
                running.stop(&name).await;
                removed += 1;
            }
        }
        if let Err(e) = self.hub.bus.ensure_topics(&new.topics()).await {
            tracing::error!(error = %e, "reload: creating the new topics failed; the running pipelines stay");
            return;
        }
        let registry = new
            .kafka
            .schema_registry
            .as_deref()
            .map(|url| RegistryClient::new(url, new.kafka.subject_strategy));
        for (name, p) in wanted {
            let identity = pipeline_identity(p, dir);
            if running.identity(name) == Some(&identity) {
                kept += 1;
                continue;
            }
            let Some(mapping) = reload.mappings.get(&p.mapping) else {
                continue; // checked when loading
            };
            let ctx = match self
                .hub
                .pipeline_context(
                    p,
                    mapping,
                    registry.as_ref(),
                    self.batch_producer,
                    self.shutdown,
                )
                .await
            {
                Ok(ctx) => ctx,
                Err(e) => {
                    tracing::error!(pipeline = %name, error = %e, "reload: the pipeline cannot start; the old one stays");
                    continue;
                }
            };
            if running.identity(name).is_some() {
                tracing::info!(pipeline = %name, "changed; swapping after its in-flight batches");
                running.stop(name).await;
                swapped += 1;
            } else {
                tracing::info!(pipeline = %name, "added; starting");
                added += 1;
            }
            running.start(name, identity, &starter(ctx), self.shutdown);
        }
        let (feeds_swapped, feeds_added, feeds_removed) = self.swap_feeds(new, feeds).await;
        tracing::info!(
            kept,
            swapped,
            added,
            removed,
            feeds_swapped,
            feeds_added,
            feeds_removed,
            "configuration reloaded"
        );
        if !restart.is_empty() {
            tracing::warn!(sections = ?restart, "these changes take effect at the next restart");
        }
    }
}

impl Swap<'_> {
    /// Swaps the deliveries whose configuration changed, starts the
    /// added ones and stops the removed ones. Returns how many of each.
    async fn swap_feeds(&self, new: &Deployment, feeds: &mut Running) -> (usize, usize, usize) {
        let (mut swapped, mut added, mut removed) = (0, 0, 0);
        let wanted: BTreeMap<&str, &DeliveryConfig> = new
            .deliveries
            .iter()
            .filter(|(_, c)| !is_pull(c))
            .map(|(n, c)| (n.as_str(), c))
            .collect();
        let current: Vec<String> = feeds.map.keys().cloned().collect();
        for name in current {
            if !wanted.contains_key(name.as_str()) {
                tracing::info!(delivery = %name, "delivery removed from the configuration; stopping");
                feeds.stop(&name).await;
                removed += 1;
            }
        }
        let schemas = match SchemaSet::load_dir(&new.hub.schemas) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                tracing::error!(error = %e, "reload: the schemas cannot be read; the deliveries stay");
                return (swapped, added, removed);
            }
        };
        for (name, config) in wanted {
            let identity = delivery_identity(config);
            if feeds.identity(name) == Some(&identity) {
                continue;
            }
            let mut delivery = match Delivery::new(
                name,
                config.clone(),
                self.hub.bus.clone(),
                self.producer.clone(),
                schemas.clone(),
                self.shared.clone(),
            ) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(delivery = %name, error = %e, "reload: the delivery cannot start; the old one stays");
                    continue;
                }
            };
            {
                // Its counters go on where the old one's stopped.
                let mut stats = self.hub.deliveries.lock().expect("deliveries lock");
                match stats.get(name) {
                    Some(existing) => delivery.stats = existing.clone(),
                    None => {
                        stats.insert(name.to_owned(), delivery.stats.clone());
                    }
                }
            }
            if feeds.identity(name).is_some() {
                tracing::info!(delivery = %name, "delivery changed; swapping");
                feeds.stop(name).await;
                swapped += 1;
            } else {
                tracing::info!(delivery = %name, "delivery added; starting");
                added += 1;
            }
            feeds.start(name, identity, &delivery_starter(delivery), self.shutdown);
        }
        (swapped, added, removed)
    }
}

/// Files whose change triggers a reload, with their modification times.
fn stamps(file: &Path, mappings: &Path) -> Vec<(PathBuf, Option<SystemTime>)> {
    let mut files = vec![file.to_path_buf()];
    for dir in [mappings.to_path_buf(), mappings.join("codes")] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let t = std::fs::metadata(&f).and_then(|m| m.modified()).ok();
            (f, t)
        })
        .collect()
}

/// Watches for SIGHUP and for changes to the deployment file and the
/// mapping files; sends each new configuration that checks out. A bad one
/// is logged with its errors and not sent.
pub fn watch(
    file: PathBuf,
    mappings: PathBuf,
    stats: std::sync::Arc<ReloadStats>,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Reload> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler; reloads on file changes only");
                return;
            }
        };
        let mut seen = stamps(&file, &mappings);
        loop {
            let why = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = hup.recv() => "SIGHUP",
                _ = tokio::time::sleep(Duration::from_secs(2)) => {
                    let now = stamps(&file, &mappings);
                    if now == seen { continue; }
                    seen = now;
                    "a configuration file changed"
                }
            };
            tracing::info!(why, file = %file.display(), "reloading the configuration");
            match check(&file) {
                Ok(reload) => {
                    if tx.send(reload).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    stats
                        .refused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(error = %e, "the new configuration is refused; the running one stays");
                    stats.audited("refused", &format!("{why}: {e:#}")).await;
                }
            }
        }
    });
    rx
}

/// Loads and checks a deployment the way `duijie run` would.
fn check(file: &Path) -> crate::error::Result<Reload> {
    let deployment = Deployment::load(file).map_err(|errors| {
        crate::error::Error::permanent(
            crate::error::Domain::Config,
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let hub = Hub::load(deployment)?;
    Ok(Reload {
        deployment: hub.deployment,
        mappings: hub.mappings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[hub]
name = "test"

[kafka]
brokers = "127.0.0.1:9092"

[pipelines.video]
system = "pingan_video"
mapping = "video_alarm"
topic = "canonical.video_alarm"

[pipelines.video.source]
kind = "mqtt"
broker = "127.0.0.1:1883"
client_id = "duijie-video"
topics = ["pingan/+/alarm"]
username = "duijie"
password = "first-password"
"#;

    fn identity(extra: &str) -> Identity {
        let d = Deployment::parse(Path::new("conf/test.toml"), &format!("{BASE}{extra}"))
            .unwrap_or_else(|e| panic!("{extra}: {e:?}"));
        pipeline_identity(d.pipeline("video").unwrap(), Path::new("/nonexistent"))
    }

    /// Each MQTT setting alone is a change a reload swaps the pipeline for,
    /// the password too (which the configuration's `Debug` text hides).
    #[test]
    fn a_reload_sees_each_mqtt_setting_changed_alone() {
        let base = identity("");
        assert_eq!(identity(""), base, "the same file is no change");
        for extra in [
            "keep_alive = \"45s\"\n",
            "connect_timeout = \"3s\"\n",
            "max_payload_bytes = 1000\n",
            "max_packet_bytes = 2000000\n",
            "max_in_flight = 7\n",
            "format = \"xml\"\n",
            "tls = { ca = \"ca.pem\" }\n",
        ] {
            assert_ne!(identity(extra), base, "{extra}");
        }
        let other_password = Deployment::parse(
            Path::new("conf/test.toml"),
            &BASE.replace("first-password", "second-password"),
        )
        .unwrap();
        assert_ne!(
            pipeline_identity(
                other_password.pipeline("video").unwrap(),
                Path::new("/nonexistent")
            ),
            base
        );
    }
}
