//! The runtime: loads a deployment, creates its topics, and runs its
//! pipelines until shutdown. It owns scheduling, retries, acknowledgement,
//! cursors and counters, once, for every connector.

pub mod backfill;
pub mod http;
pub mod observe;
pub mod pipeline;
pub mod reload;
pub mod remap;
mod rooms;
pub mod shared;
pub mod stats;

use crate::bus::{Bus, CursorStore};
use crate::config::Deployment;
use crate::error::{Context, Domain, Error, Result};
use crate::mapping::MappingSet;
use crate::schema::registry::RegistryClient;
use crate::schema::{Encoding, SchemaSet};
use pipeline::PipelineContext;
use stats::Stats;
use tokio_util::sync::CancellationToken;

/// A loaded deployment, ready to run.
#[derive(Debug)]
pub struct Hub {
    pub deployment: Deployment,
    pub schemas: SchemaSet,
    pub mappings: MappingSet,
    pub bus: Bus,
    pub stats: Stats,
    /// Counters of the deliveries, by name.
    pub deliveries: std::sync::Arc<
        std::sync::Mutex<
            std::collections::BTreeMap<String, std::sync::Arc<crate::delivery::DeliveryStats>>,
        >,
    >,
    pub clock_stats: std::sync::Arc<crate::keepers::ClockStats>,
    /// The entity library's counters.
    pub entity_stats: std::sync::Arc<crate::entity::keeper::IndexStats>,
    /// Reloads applied and refused.
    pub reloads: std::sync::Arc<reload::ReloadStats>,
    /// The broker's message size limit per topic, asked once per topic.
    message_limits: tokio::sync::Mutex<std::collections::BTreeMap<String, usize>>,
}

impl Hub {
    /// The largest record every one of `topics` takes ([`Bus::max_message_bytes`]),
    /// asking the broker only about topics not asked about before (in one
    /// request, for all the deployment's topics at once).
    pub async fn message_limit(&self, topics: &[&str]) -> usize {
        let mut known = self.message_limits.lock().await;
        if topics.iter().any(|t| !known.contains_key(*t)) {
            let mut wanted: Vec<String> = self
                .deployment
                .topics()
                .into_iter()
                .map(|t| t.name)
                .collect();
            wanted.extend(topics.iter().map(|t| t.to_string()));
            wanted.retain(|t| !known.contains_key(t));
            wanted.sort();
            wanted.dedup();
            let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
            known.extend(self.bus.max_message_bytes_each(&names).await);
        }
        topics
            .iter()
            .filter_map(|t| known.get(*t).copied())
            .min()
            .unwrap_or_else(|| self.bus.producer_message_limit())
    }

    /// Loads schemas and mappings and checks that every pipeline's mapping
    /// exists.
    pub fn load(deployment: Deployment) -> Result<Self> {
        let schemas = SchemaSet::load_dir(&deployment.hub.schemas)?;
        let mappings =
            MappingSet::load_dir(&deployment.hub.mappings, &schemas).map_err(|errors| {
                Error::permanent(Domain::Config, crate::mapping::errors_text(&errors))
            })?;
        for p in &deployment.pipelines {
            if mappings.get(&p.mapping).is_none() {
                return Err(deployment
                    .locate(&p.name, "mapping", format!("no mapping `{}`", p.mapping))
                    .into());
            }
        }
        if let Some(desk) = &deployment.sections.desk
            && mappings.get(&desk.action_mapping).is_none()
        {
            return Err(Error::permanent(
                Domain::Config,
                format!(
                    "{}: [desk] action_mapping: no mapping `{}`",
                    deployment.file.display(),
                    desk.action_mapping
                ),
            ));
        }
        let bus = deployment.bus();
        Ok(Self {
            deployment,
            schemas,
            mappings,
            bus,
            stats: Stats::default(),
            deliveries: Default::default(),
            clock_stats: Default::default(),
            entity_stats: Default::default(),
            reloads: Default::default(),
            message_limits: Default::default(),
        })
    }

    /// Runs the named pipelines (all when `only` is empty) until `shutdown`
    /// is cancelled, then lets each finish its in-flight batches.
    pub async fn run(&self, only: &[String], shutdown: CancellationToken) -> Result<()> {
        self.run_reloadable(only, shutdown, None).await
    }

    /// [`Hub::run`], taking new configurations from `reloads` while it
    /// runs (see [`reload`]).
    ///
    /// Long because the composition root: it folds over the rooms and
    /// starts the pipelines, deliveries, shared tasks, HTTP server and
    /// reload loop, in the order a shutdown reverses.
    pub async fn run_reloadable(
        &self,
        only: &[String],
        shutdown: CancellationToken,
        reloads: Option<tokio::sync::mpsc::Receiver<reload::Reload>>,
    ) -> Result<()> {
        if self.deployment.hub.scale_out && !only.is_empty() {
            return Err(Error::permanent(
                Domain::Config,
                "with [hub] scale_out the instances share every pipeline; --pipeline cannot pick some",
            ));
        }
        for name in only {
            if self.deployment.pipeline(name).is_none() {
                return Err(Error::permanent(
                    Domain::Config,
                    format!("no pipeline `{name}` in {}", self.deployment.file.display()),
                ));
            }
        }
        self.bus
            .ensure_topics(&self.deployment.topics())
            .await
            .context("creating topics")?;
        self.check_history().await?;
        // Spans and `traceparent` ids for the process; exported only to
        // `[telemetry] otlp`.
        let traces = crate::telemetry::trace::Traces::install(
            self.deployment.sections.telemetry.as_ref(),
            &self.deployment.hub.name,
        )
        .map_err(|why| Error::permanent(Domain::Config, why))?;
        let producer = self.bus.producer()?;
        // The pipelines' own, acknowledged per batch.
        let batch_producer = crate::bus::BatchProducer::new(&self.bus)?;
        let registry = self
            .deployment
            .kafka
            .schema_registry
            .as_deref()
            .map(|url| RegistryClient::new(url, self.deployment.kafka.subject_strategy));
        let mut tasks = Vec::new();
        // Tasks that must run once across the instances of this hub (the
        // polled and subscribed pipelines, the keepers), and the webhook
        // endpoints of the served ones.
        let (intake_endpoints, mut singletons) = self
            .start_ingest(only, registry.as_ref(), &batch_producer, &shutdown)
            .await?;
        // Deliveries, pull feeds, and the keepers of deadlines and lists.
        let schemas = std::sync::Arc::new(crate::schema::SchemaSet::load_dir(
            &self.deployment.hub.schemas,
        )?);
        let shared = self.deployment.shared_topics();
        let (pull, mut feeds) = self.start_deliveries(&producer, &schemas, &shared, &shutdown)?;
        // The other rooms, listed once (`rooms::ROOMS`), in starting order.
        let mut parts = rooms::Parts::new(
            self,
            only,
            producer.clone(),
            schemas.clone(),
            shutdown.clone(),
        );
        let mut routes = Vec::new();
        for (name, start) in rooms::ROOMS {
            let started = start(&mut parts).with_context(|| format!("starting the {name} room"))?;
            tasks.extend(started.tasks);
            singletons.extend(started.shared);
            routes.extend(started.routes);
        }
        let (quality, desk_handle) = (parts.quality.clone(), parts.desk.clone());
        let mut pipelines = self.start_shared(singletons, &mut tasks, &shutdown);
        let observed = self.observed(quality, desk_handle.clone());
        let pushed_feeds: Vec<(String, String)> = self
            .deployment
            .deliveries
            .iter()
            .filter(|(_, c)| !matches!(c.target, crate::delivery::TargetConfig::Pull { .. }))
            .map(|(n, c)| (n.clone(), c.topic.clone()))
            .collect();
        if !pushed_feeds.is_empty() {
            tasks.push(tokio::spawn(observed.clone().watch_backlogs(
                pushed_feeds,
                std::time::Duration::from_secs(15),
                shutdown.clone(),
            )));
        }
        if let Some(http) = &self.deployment.http {
            let status = crate::delivery::status::DepartmentStatus::new(
                &self.deployment.deliveries,
                self.deliveries.clone(),
                self.bus.clone(),
                chrono::Utc::now(),
            );
            let app = routes.into_iter().fold(
                pipeline::intake::router(intake_endpoints)
                    .merge(pull.router())
                    .merge(status.router())
                    .merge(observed.router()),
                axum::Router::merge,
            );
            tasks.push(http::start(http, app, shutdown.clone()).await?);
        }
        // Run until shutdown, taking reloads meanwhile.
        let swap = reload::Swap {
            hub: self,
            producer: &producer,
            batch_producer: &batch_producer,
            shutdown: &shutdown,
            shared: &shared,
            desk: desk_handle.as_ref(),
        };
        self.take_reloads(reloads, &swap, &mut pipelines, &mut feeds)
            .await;
        pipelines.stop_all().await;
        feeds.stop_all().await;
        for t in tasks {
            let _ = t.await;
        }
        use rdkafka::producer::Producer;
        let _ = tokio::task::spawn_blocking(move || {
            let _ = batch_producer.flush(std::time::Duration::from_secs(30));
            producer.flush(std::time::Duration::from_secs(30))
        })
        .await;
        traces.shutdown().await;
        Ok(())
    }

    /// The ingest pipelines: a served one (a webhook) becomes an endpoint
    /// of the hub's HTTP server; a polled or subscribed one a shared task
    /// (`pipeline:<name>`), run once across a scaled-out hub.
    async fn start_ingest(
        &self,
        only: &[String],
        registry: Option<&RegistryClient>,
        batch_producer: &crate::bus::BatchProducer,
        shutdown: &CancellationToken,
    ) -> Result<(
        Vec<std::sync::Arc<pipeline::intake::IntakeEndpoint>>,
        Vec<shared::SharedTask>,
    )> {
        let mut singletons: Vec<shared::SharedTask> = Vec::new();
        let mut intake_endpoints = Vec::new();
        for p in &self.deployment.pipelines {
            if !only.is_empty() && !only.contains(&p.name) {
                continue;
            }
            let mapping = self.mappings.get(&p.mapping).expect("checked at load");
            let ctx = self
                .pipeline_context(p, mapping, registry, batch_producer, shutdown)
                .await?;
            tracing::info!(pipeline = %p.name, topic = %p.topic, source = p.source.kind(), exactly_once = p.exactly_once, "pipeline starting");
            match p.source.build()? {
                duijie_connectors::registry::BuiltSource::Serve(mut webhook) => {
                    // Served: its schema registered now (a refusal stops
                    // this pipeline as `failing`, not the hub).
                    let ctx = match ctx.registered().await {
                        Ok(c) => c.into_owned(),
                        Err(e) => {
                            let e = crate::error::Error::from(e);
                            tracing::error!(pipeline = %p.name, error = %e, "the pipeline cannot start: its schema is not registered");
                            ctx.stats.set_failing(&e.to_string());
                            continue;
                        }
                    };
                    // A body the broker could not take even as a dead letter
                    // is refused with 413 up front, never retried forever.
                    let broker_limit = ctx
                        .max_message_bytes
                        .saturating_sub(crate::bus::RECORD_HEADROOM);
                    if webhook.max_body_bytes() > broker_limit {
                        tracing::info!(
                            pipeline = %p.name,
                            configured = webhook.max_body_bytes(),
                            broker_limit,
                            "webhook max_body_bytes lowered to what the broker takes"
                        );
                        let mut config = webhook.config.clone();
                        config.max_body_bytes = broker_limit;
                        webhook =
                            std::sync::Arc::new(duijie_connectors::webhook::Webhook::new(config));
                    }
                    ctx.stats.set_state(stats::PipelineState::Running);
                    intake_endpoints.push(std::sync::Arc::new(pipeline::intake::IntakeEndpoint {
                        intake: pipeline::intake::PipelineIntake::new(ctx),
                        webhook,
                    }));
                }
                duijie_connectors::registry::BuiltSource::Poll(_)
                | duijie_connectors::registry::BuiltSource::Subscribe(_) => {
                    let stats = ctx.stats.clone();
                    singletons.push(shared::SharedTask {
                        name: format!("pipeline:{}", p.name),
                        start: starter(ctx),
                        on_change: Some(Box::new(move |here| {
                            if !here {
                                stats.set_state(stats::PipelineState::Standby);
                            }
                        })),
                    });
                }
            }
        }
        Ok((intake_endpoints, singletons))
    }

    /// The deliveries, each started on its own and swappable on a
    /// reload, and the pull feeds, served by the hub's HTTP server.
    fn start_deliveries(
        &self,
        producer: &rdkafka::producer::FutureProducer,
        schemas: &std::sync::Arc<SchemaSet>,
        shared: &crate::delivery::SharedTopics,
        shutdown: &CancellationToken,
    ) -> Result<(crate::delivery::pull::PullFeeds, reload::Running)> {
        let mut pull = crate::delivery::pull::PullFeeds::default();
        // Deliveries, each swappable on a reload.
        let mut feeds = reload::Running::default();
        for (name, config) in &self.deployment.deliveries {
            let delivery = crate::delivery::Delivery::new(
                name,
                config.clone(),
                self.bus.clone(),
                producer.clone(),
                schemas.clone(),
                shared.clone(),
            )
            .with_context(|| format!("delivery `{name}`"))?;
            self.deliveries
                .lock()
                .expect("deliveries lock")
                .insert(name.clone(), delivery.stats.clone());
            match &config.target {
                crate::delivery::TargetConfig::Pull { token } => pull.add(delivery, token.clone()),
                _ => {
                    tracing::info!(delivery = %name, topic = %config.topic, "delivery starting");
                    feeds.start(
                        name,
                        reload::delivery_identity(config),
                        &reload::delivery_starter(delivery),
                        shutdown,
                    );
                }
            }
        }
        Ok((pull, feeds))
    }

    /// What `/metrics` and `/ready` read.
    fn observed(
        &self,
        quality: Option<std::sync::Arc<std::sync::RwLock<crate::quality::Board>>>,
        desk: Option<crate::desk::Desk>,
    ) -> observe::Observed {
        observe::Observed {
            hub: self.deployment.hub.name.clone(),
            bus: self.bus.clone(),
            systems: self
                .deployment
                .pipelines
                .iter()
                .map(|p| (p.name.clone(), p.system.clone()))
                .collect(),
            stats: self.stats.clone(),
            deliveries: self.deliveries.clone(),
            departments: self
                .deployment
                .deliveries
                .iter()
                .map(|(n, c)| (n.clone(), c.department.clone().unwrap_or_else(|| n.clone())))
                .collect(),
            clocks: self.clock_stats.clone(),
            reloads: self.reloads.clone(),
            entities: self
                .deployment
                .sections
                .entities
                .is_some()
                .then(|| self.entity_stats.clone()),
            quality,
            desk,
            status_token: self
                .deployment
                .http
                .as_ref()
                .and_then(|h| h.status_token.clone()),
            started_ms: chrono::Utc::now().timestamp_millis(),
        }
    }

    /// Until shutdown, applies each reload (`duijie run` watches the
    /// deployment file) to the running pipelines, deliveries and desk;
    /// with scale-out, says reloads are ignored (each instance restarts).
    async fn take_reloads(
        &self,
        reloads: Option<tokio::sync::mpsc::Receiver<reload::Reload>>,
        swap: &reload::Swap<'_>,
        pipelines: &mut reload::Running,
        feeds: &mut reload::Running,
    ) {
        let Some(mut reloads) = reloads else {
            swap.shutdown.cancelled().await;
            return;
        };
        if self.deployment.hub.scale_out {
            tracing::warn!(
                "with [hub] scale_out a changed configuration needs a restart of each instance; reloads are ignored"
            );
        }
        loop {
            tokio::select! {
                _ = swap.shutdown.cancelled() => break,
                r = reloads.recv() => match r {
                    Some(r) if !self.deployment.hub.scale_out => {
                        let file = r.deployment.file.display().to_string();
                        swap.apply(r, pipelines, feeds).await;
                        self.reloads
                            .applied
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        self.reloads.audited("applied", &file).await;
                    }
                    Some(_) => {}
                    None => break,
                },
            }
        }
    }

    /// The shared tasks: with scale-out, handed to the membership that runs
    /// each once across the instances; without it the poll pipelines run
    /// here, each swappable on a reload (returned), and the others simply
    /// run.
    fn start_shared(
        &self,
        mut singletons: Vec<shared::SharedTask>,
        tasks: &mut Vec<tokio::task::JoinHandle<()>>,
        shutdown: &CancellationToken,
    ) -> reload::Running {
        if self.deployment.hub.scale_out {
            for t in &singletons {
                if let Some(f) = &t.on_change {
                    f(false);
                }
            }
            let membership = shared::Membership {
                bus: self.bus.clone(),
                control_topic: self.deployment.control_topic(),
                group: format!("duijie-{}-tasks", self.deployment.hub.name),
            };
            tasks.push(tokio::spawn(shared::run(
                membership,
                self.deployment.shared_task_names(),
                singletons,
                shutdown.clone(),
            )));
            singletons = Vec::new();
        }
        // Without scale-out the poll pipelines run here, each swappable on
        // a reload; the other singletons simply run.
        let mut pipelines = reload::Running::default();
        {
            for t in singletons {
                match t.name.strip_prefix("pipeline:") {
                    Some(name) => {
                        let identity = reload::pipeline_identity(
                            self.deployment
                                .pipeline(name)
                                .expect("a configured pipeline"),
                            &self.deployment.hub.mappings,
                        );
                        pipelines.start(name, identity, &t.start, shutdown);
                    }
                    None => tasks.push((t.start)(shutdown.clone())),
                }
            }
        }
        pipelines
    }
}

/// Starts a poll pipeline under a given token.
pub(crate) fn starter(ctx: PipelineContext) -> shared::Starter {
    Box::new(move |token| {
        let mut ctx = ctx.clone();
        ctx.shutdown = token;
        ctx.stats.set_state(stats::PipelineState::Starting);
        tokio::spawn(pipeline::run(ctx))
    })
}

impl Hub {
    /// Refuses to start when a topic a keeper, the public window or the
    /// entity library rebuilds from keeps its records for less than the
    /// longest period it feeds (a topic made before the hub made it whole,
    /// or changed since): a listing or a publication would otherwise end
    /// when its decision is deleted. A broker that cannot describe topic
    /// configurations (the embedded demo mock) is said in the log.
    async fn check_history(&self) -> Result<()> {
        let history = self.deployment.history_topics();
        let names: Vec<&str> = history.keys().map(String::as_str).collect();
        let kept = match self.bus.retention_each(&names).await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "the retention of the topics keepers rebuild from cannot be read; not checked");
                return Ok(());
            }
        };
        let day_ms = 86_400_000_i64;
        let short: Vec<String> = history
            .iter()
            .filter_map(|(topic, h)| {
                let ms = match kept.get(topic)? {
                    crate::bus::Kept::Whole => return None,
                    crate::bus::Kept::Compacted if !h.one_key => return None,
                    crate::bus::Kept::Compacted => {
                        return Some(format!(
                            "topic `{topic}` is compacted (cleanup.policy=compact), but its entries share one key: compaction would keep only the last of {}; set cleanup.policy=delete with retention.ms=-1 or at least {} months",
                            h.readers.iter().cloned().collect::<Vec<_>>().join("、"),
                            h.months
                        ));
                    }
                    crate::bus::Kept::For(ms) => *ms,
                };
                // A month as 31 days: the check errs on the long side.
                let needed = i64::from(h.months) * 31 * day_ms;
                (ms < needed).then(|| {
                    format!(
                        "topic `{topic}` keeps its records {} days (retention.ms={ms}); {} need it kept at least {} months: set retention.ms=-1 or cleanup.policy=compact on it",
                        ms / day_ms,
                        h.readers.iter().cloned().collect::<Vec<_>>().join("、"),
                        h.months
                    )
                })
            })
            .collect();
        if short.is_empty() {
            Ok(())
        } else {
            Err(Error::permanent(Domain::Config, short.join("; ")))
        }
    }

    /// What a pipeline needs to run: its mapping, encoding (registering its
    /// schema when a registry is configured), producer, cursors, counters.
    /// The context of a one-off run of a pipeline outside the running hub
    /// (`duijie backfill`, `duijie remap`): its topics made, its mapping,
    /// a producer of its own, no schema registry.
    pub(crate) async fn one_off_context(
        &self,
        p: &crate::config::PipelineConfig,
        shutdown: &CancellationToken,
    ) -> Result<PipelineContext> {
        self.bus
            .ensure_topics(&self.deployment.topics())
            .await
            .context("creating topics")?;
        let mapping = self.mappings.get(&p.mapping).ok_or_else(|| {
            Error::permanent(Domain::Config, format!("no mapping `{}`", p.mapping))
        })?;
        let producer = crate::bus::BatchProducer::new(&self.bus)?;
        self.pipeline_context(p, mapping, None, &producer, shutdown)
            .await
    }

    pub(crate) async fn pipeline_context(
        &self,
        p: &crate::config::PipelineConfig,
        mapping: std::sync::Arc<crate::mapping::Mapping>,
        registry: Option<&RegistryClient>,
        producer: &crate::bus::BatchProducer,
        shutdown: &CancellationToken,
    ) -> Result<PipelineContext> {
        Ok(PipelineContext {
            clock: crate::calendar::Clock::system(),
            config: p.clone(),
            mapping,
            // Resolved by `PipelineContext::registered` when the pipeline
            // starts, with a registry.
            encoding: Encoding::SingleObject,
            registry: registry.cloned(),
            bus: self.bus.clone(),
            producer: producer.clone(),
            cursors: CursorStore::new(self.deployment.kafka.cursor_topic.clone()),
            stats: self.stats.pipeline(&p.name),
            shutdown: shutdown.clone(),
            backfill: None,
            quality_topic: self.deployment.hub.quality_topic.clone(),
            max_message_bytes: self
                .message_limit(&[p.topic.as_str(), p.dlq_topic.as_str()])
                .await,
        })
    }
}

/// `duijie run`: the deployment until SIGTERM or Ctrl-C.
pub async fn run_deployment(deployment: Deployment, only: Vec<String>) -> Result<()> {
    let file = deployment.file.clone();
    let hub = Hub::load(deployment)?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    // Reloads go to the operator audit (a hub that cannot open it runs,
    // and says so).
    match crate::audit::OpsAudit::open(
        &hub.bus,
        &hub.deployment.hub.ops_audit_topic,
        &hub.deployment.hub.name,
        hub.deployment.hub.signing.as_ref(),
    )
    .await
    {
        Ok(mut audit) => {
            if let Err(e) = audit.record_keys(&hub.deployment.hub.key_ids()).await {
                tracing::error!(error = %e, "the keys in use are not in the operator audit");
            }
            let _ = hub.reloads.audit.set(audit);
        }
        Err(e) => {
            tracing::error!(error = %e, "the operator audit cannot be opened; reloads are not audited")
        }
    }
    let reloads = reload::watch(
        file,
        hub.deployment.hub.mappings.clone(),
        hub.reloads.clone(),
        shutdown.clone(),
    );
    hub.run_reloadable(&only, shutdown, Some(reloads)).await
}

/// Runs `fut` to its end on a multi-threaded runtime: the body of a
/// command.
pub fn block_on<T, E: From<Error>>(
    fut: impl std::future::Future<Output = std::result::Result<T, E>>,
) -> std::result::Result<T, E> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?
        .block_on(fut)
}

/// Cancels `token` on SIGTERM or SIGINT.
pub fn spawn_signal_handler(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: finishing in-flight batches"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: finishing in-flight batches"),
        }
        token.cancel();
    });
}
