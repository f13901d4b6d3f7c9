//! The rooms the runtime starts beside the pipelines and the push
//! pipelines, listed once ([`ROOMS`]): each is a function that takes the
//! hub's shared parts ([`Parts`]) and gives what it started ([`Started`]):
//! tasks every instance runs, tasks that run once across a scaled-out hub
//! (by name, [`shared::SharedTask`]), and the HTTP routes it serves. The
//! runtime folds over the list: it spawns the tasks, hands the shared ones
//! to scale-out, merges the routes into the one server.
//!
//! A later room may use what an earlier one made (the desk shows the
//! entity library's pages and the quality board), so the list is in
//! starting order, and what a room makes for others goes into [`Parts`].
//!
//! The ingest pipelines and the deliveries are not in the list: each
//! is swapped on its own by a reload ([`super::reload`]), so the runtime
//! starts them itself, before the rooms.
//!
//! A new room is its module (which knows neither `config` nor `runtime`),
//! its section in `config`, one function here and one line in [`ROOMS`]; a
//! new keeper is one line in [`crate::keepers::listed`] instead.

use super::{Hub, shared};
use crate::error::{Context, Domain, Error, Result};
use std::sync::{Arc, RwLock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Starts one room.
pub(super) type Start = fn(&mut Parts<'_>) -> Result<Started>;

/// The rooms, in starting order.
pub(super) const ROOMS: &[(&str, Start)] = &[
    ("entity", entity),
    ("quality", quality),
    ("desk", desk),
    ("keepers", keepers),
];

/// What every room may use, and what earlier rooms made for later ones.
pub(super) struct Parts<'a> {
    pub hub: &'a Hub,
    /// The pipelines this run is limited to (`--pipeline`), or empty.
    pub only: &'a [String],
    pub producer: rdkafka::producer::FutureProducer,
    pub schemas: Arc<crate::schema::SchemaSet>,
    pub shutdown: CancellationToken,
    calendar: Option<Arc<crate::calendar::Calendar>>,
    /// The entity library, once the entity room made it.
    pub library: Option<Arc<crate::entity::api::Library>>,
    /// The quality board, once the quality room made it.
    pub quality: Option<Arc<RwLock<crate::quality::Board>>>,
    /// The desk, once the desk room made it (reloads and `/ready` use it).
    pub desk: Option<crate::desk::Desk>,
}

impl<'a> Parts<'a> {
    pub(super) fn new(
        hub: &'a Hub,
        only: &'a [String],
        producer: rdkafka::producer::FutureProducer,
        schemas: Arc<crate::schema::SchemaSet>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            hub,
            only,
            producer,
            schemas,
            shutdown,
            calendar: None,
            library: None,
            quality: None,
            desk: None,
        }
    }

    /// The holiday calendar, loaded by the first room that needs it.
    pub(super) fn calendar(&mut self) -> Result<Arc<crate::calendar::Calendar>> {
        if let Some(c) = &self.calendar {
            return Ok(c.clone());
        }
        let c = Arc::new(
            crate::calendar::Calendar::load_dir(&self.hub.deployment.hub.calendar)
                .context("loading the holiday calendar")?,
        );
        self.calendar = Some(c.clone());
        Ok(c)
    }
}

/// What a room started.
#[derive(Default)]
pub(super) struct Started {
    /// Run by every instance until shutdown.
    pub tasks: Vec<JoinHandle<()>>,
    /// Run once across the instances of a scaled-out hub.
    pub shared: Vec<shared::SharedTask>,
    /// Served by the hub's HTTP server, when `[http]` is set.
    pub routes: Vec<axum::Router>,
}

/// The market-entity credit library (市场主体信用信息库): every instance
/// keeps its own index; the restrictions API and the public window.
fn entity(parts: &mut Parts<'_>) -> Result<Started> {
    let hub = parts.hub;
    let Some(setting) = hub.deployment.entity_setting()? else {
        return Ok(Started::default());
    };
    let calendar = parts.calendar()?;
    let library = Arc::new(crate::entity::api::Library::open(
        &setting,
        calendar.clone(),
        hub.entity_stats.clone(),
        false,
    )?);
    let context = setting.context(parts.schemas.clone(), calendar, hub.entity_stats.clone());
    let mut started = Started::default();
    started.tasks.push(tokio::spawn(crate::entity::keeper::keep(
        library.index.clone(),
        context,
        parts.shutdown.clone(),
    )));
    if library.config.restrictions.is_some() {
        started
            .routes
            .push(crate::entity::api::restrictions_router(library.clone()));
    }
    if library.config.public.is_some() {
        started
            .routes
            .push(crate::entity::api::public_router(library.clone()));
    }
    parts.library = Some(library);
    Ok(started)
}

/// Data quality per source (数据质量), from the bus.
fn quality(parts: &mut Parts<'_>) -> Result<Started> {
    let hub = parts.hub;
    if !hub.deployment.hub.quality {
        return Ok(Started::default());
    }
    let sources = hub.deployment.quality_sources(&hub.mappings, parts.only);
    let board = Arc::new(RwLock::new(sources.board()));
    let mut started = Started::default();
    started.tasks.push(tokio::spawn(crate::quality::keep(
        board.clone(),
        hub.bus.clone(),
        sources,
        parts.shutdown.clone(),
    )));
    parts.quality = Some(board);
    Ok(started)
}

/// The desk (两法衔接工作台 and its pages): the referral tracker, and a
/// board for each page whose section is configured.
fn desk(parts: &mut Parts<'_>) -> Result<Started> {
    let hub = parts.hub;
    let Some(config) = &hub.deployment.sections.desk else {
        return Ok(Started::default());
    };
    let mapping = hub.mappings.get(&config.action_mapping).ok_or_else(|| {
        Error::permanent(
            Domain::Config,
            format!(
                "[desk] action_mapping: no mapping `{}`",
                config.action_mapping
            ),
        )
    })?;
    let calendar = parts.calendar()?;
    let (bus, shutdown) = (hub.bus.clone(), parts.shutdown.clone());
    let mut started = Started::default();
    let mut desk = crate::desk::Desk::new(
        config.clone(),
        bus.clone(),
        parts.producer.clone(),
        parts.schemas.clone(),
        calendar.clone(),
        mapping,
    )
    .with_audit_chain(&hub.deployment.hub.name, hub.deployment.hub.signing.clone());
    if let Some(list) = hub
        .deployment
        .sections
        .credit
        .as_ref()
        .and_then(|c| c.blacklist.clone())
    {
        let board = Arc::new(
            crate::desk::blacklist::ListBoard::new(list, calendar.clone())
                .with_pseudonyms(hub.deployment.hub.pseudonyms()),
        );
        started.tasks.push(tokio::spawn(
            board.clone().follow(bus.clone(), shutdown.clone()),
        ));
        desk = desk.with_blacklist(board);
    }
    if let Some(c) = &hub.deployment.sections.credit {
        let board = Arc::new(crate::desk::credit::CreditBoard::new(
            crate::desk::credit::CreditDesk {
                decisions_topic: c.decisions_topic.clone(),
                receipts_topic: hub.deployment.hub.receipts_topic.clone(),
                delivery: c.delivery.clone(),
                publish_within: c.publish_within,
            },
            calendar.clone(),
        ));
        started.tasks.push(tokio::spawn(board.clone().follow(
            bus.clone(),
            parts.schemas.clone(),
            shutdown.clone(),
        )));
        desk = desk.with_credit(board);
    }
    if let Some(c) = &hub.deployment.sections.supervision {
        let list = crate::mapping::Rows::load(&hub.deployment.hub.mappings, &c.power_list)
            .map_err(|why| {
                Error::permanent(Domain::Config, format!("[supervision] power_list: {why}"))
            })?;
        let board = Arc::new(crate::desk::powers::PowersBoard::new(
            c.rates_topic.clone(),
            list,
        ));
        started.tasks.push(tokio::spawn(
            board.clone().follow(bus.clone(), shutdown.clone()),
        ));
        desk = desk.with_powers(board);
    }
    if let Some(library) = &parts.library {
        desk = desk.with_entities(library.clone());
    }
    if let Some(board) = &parts.quality {
        desk = desk.with_quality(board.clone());
    }
    // The tracker is a consumer group on the events topic: with several
    // instances, each tracks the referrals of its partitions.
    started
        .tasks
        .push(tokio::spawn(desk.tracker.clone().run(shutdown.clone())));
    // The audit trail, and with scale-out the referrals tracked elsewhere,
    // as their trackers wrote them.
    started.tasks.push(tokio::spawn(
        desk.clone()
            .follow(shutdown.clone(), hub.deployment.hub.scale_out),
    ));
    started.routes.push(crate::desk::router(desk.clone()));
    parts.desk = Some(desk);
    Ok(started)
}

/// The keepers of deadlines and lists ([`crate::keepers::listed`]), each a
/// shared task.
fn keepers(parts: &mut Parts<'_>) -> Result<Started> {
    let hub = parts.hub;
    let listed = crate::keepers::listed(hub.deployment.keeper_configs());
    if listed.is_empty() {
        return Ok(Started::default());
    }
    let ctx = crate::keepers::KeeperContext {
        bus: hub.bus.clone(),
        producer: parts.producer.clone(),
        schemas: parts.schemas.clone(),
        calendar: parts.calendar()?,
        alerts_topic: hub.deployment.hub.alerts_topic.clone(),
        receipts_topic: hub.deployment.hub.receipts_topic.clone(),
        stats: hub.clock_stats.clone(),
        tick: std::time::Duration::from_secs(2),
        pseudonyms: hub.deployment.hub.pseudonyms(),
        clock: crate::calendar::Clock::system(),
    };
    let shared = listed
        .into_iter()
        .map(|keeper| {
            let ctx = ctx.clone();
            shared::SharedTask {
                name: keeper.task.into(),
                start: Box::new(move |token| tokio::spawn(keeper.run(ctx.clone(), token))),
                on_change: None,
            }
        })
        .collect();
    Ok(Started {
        shared,
        ..Started::default()
    })
}
