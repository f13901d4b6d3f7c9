//! What the library answers outside the desk:
//!
//! - `GET /api/entities/{code}/restrictions` (joint restriction, 联合惩戒):
//!   for the approval system and other departments deciding now, e.g. a
//!   licence application. Bearer token per caller (`[entities.restrictions]
//!   tokens`), compared in constant time. `?permit=TYPE` names what the
//!   caller is deciding: the answer is the measures that concern it, each
//!   with its effect (`bar`: the law forbids; `consider`: 重要考量因素), its
//!   scope, its basis and its end (国办发〔2020〕49号（四）); without a permit,
//!   every measure with its scope. `restricted` is true only when a measure
//!   bars. The push of blacklist entries stays; this is the pull side.
//! - `/public/credit` and `/public/api/credit` (一窗发布): a public,
//!   read-only page and JSON API, without login, listing what the rules
//!   allow publishing — penalty decisions within their publicity period as
//!   the credit-publication policy publishes them (masked by it), and
//!   decided listings. Withdrawn (行政处罚法 art. 48), expired and repaired
//!   items are gone. Rate-limited per address, with caching headers.

use super::index::EntityIndex;
use super::keeper::IndexStats;
use super::{EntitiesConfig, IndexedRecord, PublicItem, Restriction, RestrictionsConfig};
use crate::calendar::Calendar;
use crate::credit::CreditPolicy;
use axum::Router;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};

/// The library as the web handlers and the CLI see it.
pub struct Library {
    pub index: Arc<EntityIndex>,
    pub config: EntitiesConfig,
    pub calendar: Arc<Calendar>,
    pub policy: CreditPolicy,
    pub stats: Arc<IndexStats>,
    limiter: governor::DefaultKeyedRateLimiter<IpAddr>,
    /// What the public window shows, computed at most every
    /// [`PUBLIC_REFRESH`] (bounded by `max_age`): a page view costs no scan.
    public_cache: std::sync::Mutex<Option<(std::time::Instant, Arc<Vec<PublicItem>>)>>,
    clock: crate::calendar::Clock,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").finish_non_exhaustive()
    }
}

/// How long the public window's list is reused at most.
const PUBLIC_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// Restrictions checked when `[entities.restrictions]` names no penalty
/// rule: the measures a decided listing carries.
static NO_PENALTY_RULES: LazyLock<RestrictionsConfig> = LazyLock::new(|| RestrictionsConfig {
    tokens: Default::default(),
    penalties: Vec::new(),
});

impl Library {
    pub fn new(
        index: Arc<EntityIndex>,
        config: EntitiesConfig,
        calendar: Arc<Calendar>,
        policy: CreditPolicy,
        stats: Arc<IndexStats>,
    ) -> Self {
        let per_minute = config.public.as_ref().map_or(60, |p| p.per_minute);
        let quota = governor::Quota::per_minute(
            std::num::NonZeroU32::new(per_minute.max(1)).expect("at least 1"),
        );
        Self {
            index,
            config,
            calendar,
            policy,
            stats,
            limiter: governor::RateLimiter::keyed(quota),
            public_cache: std::sync::Mutex::new(None),
            clock: crate::calendar::Clock::system(),
        }
    }

    /// The library of a deployment: its index in the cache file (or in
    /// memory when there is none, or when `in_memory`: `duijie entity`).
    pub fn open(
        setting: &super::keeper::Setting,
        calendar: Arc<Calendar>,
        stats: Arc<IndexStats>,
        in_memory: bool,
    ) -> crate::error::Result<Self> {
        let config = &setting.config;
        let policy = setting.policy.clone();
        let index = match (&config.cache, in_memory) {
            (Some(file), false) => {
                let fp = super::index::fingerprint(
                    &setting.pseudonyms.of("000000000000000000"),
                    &format!("{policy:?}"),
                    &setting.sources.all(),
                );
                let (index, kept) =
                    EntityIndex::open(file, &fp, config.propose_from).map_err(|e| {
                        crate::error::Error::permanent(
                            crate::error::Domain::Entity,
                            format!("the entity cache {}: {e}", file.display()),
                        )
                    })?;
                tracing::info!(file = %file.display(), kept, "entity cache opened");
                index
            }
            _ => EntityIndex::in_memory(config.propose_from)?,
        };
        Ok(Self::new(
            Arc::new(index),
            config.clone(),
            calendar,
            policy,
            stats,
        ))
    }

    /// A library in memory, built from the whole bus (`duijie entity`, the
    /// demo's summary): what any instance would rebuild.
    pub async fn from_bus(
        setting: &super::keeper::Setting,
        calendar: Arc<Calendar>,
        schemas: Arc<crate::schema::SchemaSet>,
        within: std::time::Duration,
    ) -> crate::error::Result<Self> {
        let stats = Arc::<IndexStats>::default();
        let library = Self::open(setting, calendar.clone(), stats.clone(), true)?;
        let context = setting.context(schemas, calendar, stats);
        let read = super::keeper::run(
            library.index.clone(),
            context,
            true,
            tokio_util::sync::CancellationToken::new(),
        );
        tokio::time::timeout(within, read).await.map_err(|_| {
            crate::error::Error::transient(
                crate::error::Domain::Bus,
                format!("the topics were not read to their end within {within:?}"),
            )
        })??;
        Ok(library)
    }

    /// The same library with a fixed clock (tests).
    pub fn with_clock(mut self, clock: crate::calendar::Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The measures on an entity's records at `now`.
    pub fn restrictions(&self, records: &[IndexedRecord], now: DateTime<Utc>) -> Vec<Restriction> {
        self.restrictions_for(records, now, None)
    }

    /// The measures on an entity's records at `now` that concern `permit`
    /// (all of them without one).
    pub fn restrictions_for(
        &self,
        records: &[IndexedRecord],
        now: DateTime<Utc>,
        permit: Option<&str>,
    ) -> Vec<Restriction> {
        let config = self
            .config
            .restrictions
            .as_ref()
            .unwrap_or(&NO_PENALTY_RULES);
        super::restrictions(records, config, &self.calendar, now, permit)
    }

    /// An entity key from what a caller writes: a credit code (any case,
    /// full-width or not) or a key as the index gives it (`uscc:…`,
    /// `pid-sm3:…`, `pid:…`).
    pub fn key_of(code: &str) -> String {
        let code = code.trim();
        if crate::personal::is_person_key(code) || code.starts_with("uscc:") {
            return code.to_owned();
        }
        format!("uscc:{}", crate::ident::check_uscc(code).normalized)
    }

    /// The profile of an entity as JSON (API, CLI): `code`, `name`,
    /// `systems`, `records`, `restricted`, open items and restrictions.
    pub fn profile_json(&self, key: &str) -> crate::error::Result<Option<serde_json::Value>> {
        let Some((e, records)) = self.index.profile(key)? else {
            return Ok(None);
        };
        let now = self.now();
        let restrictions = self.restrictions(&records, now);
        let open: Vec<_> = records
            .iter()
            .filter_map(|r| r.open_item(now).map(|i| json!({"record": r.id, "item": i})))
            .collect();
        let rows: Vec<_> = records.iter().map(|r| record_json(r, now)).collect();
        let mut v = json!({
            "key": e.key, "code": e.credit_code, "name": e.name(),
            "names": e.names.keys().collect::<Vec<_>>(),
            "systems": e.systems.keys().collect::<Vec<_>>(),
            "records": rows, "open_items": open,
            "restricted": restrictions.iter().any(|r| r.effect == crate::credit::Effect::Bar),
            "restrictions": restrictions,
        });
        crate::personal::scrub(&mut v, &self.policy.mask);
        Ok(Some(v))
    }

    /// One line per entity (API, CLI).
    pub fn list_json(
        &self,
        query: Option<&str>,
        skip: usize,
        take: usize,
    ) -> crate::error::Result<(usize, Vec<serde_json::Value>)> {
        let (total, entities) = self.index.entities(query, skip, take)?;
        let now = self.now();
        let mut out = Vec::new();
        for e in entities {
            let records = self
                .index
                .profile(&e.key)?
                .map(|(_, r)| r)
                .unwrap_or_default();
            let mut v = json!({
                "key": e.key, "code": e.credit_code, "name": e.name(),
                "systems": e.systems.keys().collect::<Vec<_>>(),
                "records": e.records,
                "open_items": records.iter().filter(|r| r.open_item(now).is_some()).count(),
                "restricted": self
                    .restrictions(&records, now)
                    .iter()
                    .any(|r| r.effect == crate::credit::Effect::Bar),
            });
            crate::personal::scrub(&mut v, &self.policy.mask);
            out.push(v);
        }
        Ok((total, out))
    }

    /// [`Self::public_items`] now, reused for at most [`PUBLIC_REFRESH`]
    /// (and never longer than the window's `max_age`).
    fn public_items_cached(&self) -> crate::error::Result<Arc<Vec<PublicItem>>> {
        let ttl = self
            .config
            .public
            .as_ref()
            .map_or(PUBLIC_REFRESH, |p| p.max_age.min(PUBLIC_REFRESH));
        let mut cache = self.public_cache.lock().expect("public cache lock");
        if let Some((at, items)) = cache.as_ref()
            && at.elapsed() < ttl
        {
            return Ok(items.clone());
        }
        let items = Arc::new(self.public_items(self.now())?);
        *cache = Some((std::time::Instant::now(), items.clone()));
        Ok(items)
    }

    /// What the public window shows at `now`, newest decision first.
    pub fn public_items(&self, now: DateTime<Utc>) -> crate::error::Result<Vec<PublicItem>> {
        let mut items: Vec<PublicItem> = self
            .index
            .public_records()?
            .iter()
            .filter_map(|r| super::public_item(r, now))
            .collect();
        items.sort_by(|a, b| b.decided.cmp(&a.decided).then(a.title.cmp(&b.title)));
        Ok(items)
    }
}

/// A record as the API and CLI show it, provenance included.
pub fn record_json(r: &IndexedRecord, now: DateTime<Utc>) -> serde_json::Value {
    json!({
        "id": r.id, "kind": r.kind, "kind_label": r.kind.label(),
        "source_system": r.source_system, "title": r.title, "status": r.status,
        "at": r.at_ms.and_then(DateTime::from_timestamp_millis).map(crate::calendar::local_rfc3339),
        "open": r.is_open(now),
        "linked_by": match &r.link { super::Link::Code(_) => "credit_code", super::Link::Person(_) => "pseudonym", super::Link::NameOnly => "officer" },
        "provenance": r.position,
    })
}

// ---------------------------------------------------------------------------
// Restrictions API.

pub fn restrictions_router(library: Arc<Library>) -> Router {
    Router::new()
        .route(
            "/api/entities/{code}/restrictions",
            axum::routing::get(restrictions),
        )
        .with_state(library)
}

/// Compared against when no caller is configured, so that the answer takes
/// the same time (it matches nothing: it holds a NUL).
const NO_CALLER: &str = "\0no caller";

#[derive(Debug, Deserialize)]
struct RestrictionsQuery {
    /// The permit type the caller is deciding (`FOOD_PRODUCTION_OPERATION`).
    permit: Option<String>,
}

async fn restrictions(
    State(library): State<Arc<Library>>,
    Path(code): Path<String>,
    Query(q): Query<RestrictionsQuery>,
    headers: HeaderMap,
) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let callers: Vec<(&str, &str)> = match &library.config.restrictions {
        Some(r) => r
            .tokens
            .iter()
            .map(|(who, t)| (t.as_str(), who.as_str()))
            .collect(),
        None => vec![(NO_CALLER, "")],
    };
    let Some(caller) = crate::secrets::find_by_secret(given, callers) else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(json!({"message": "未授权：需要有效的令牌"})),
        )
            .into_response();
    };
    if code.chars().count() > 80 {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"message": "主体标识过长"})),
        )
            .into_response();
    }
    if !library.stats.ready.load(Ordering::Acquire) {
        // Half-read, "not restricted" could be wrong: say so instead.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            axum::Json(json!({"message": "主体信用信息库正在加载，请稍后再试"})),
        )
            .into_response();
    }
    let key = Library::key_of(&code);
    let now = library.now();
    let (index, k) = (library.index.clone(), key.clone());
    let profile = match tokio::task::spawn_blocking(move || index.profile(&k)).await {
        Ok(Ok(p)) => p,
        _ => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"message": "主体信用信息库暂时无法读取"})),
            )
                .into_response();
        }
    };
    let (name, records) = match &profile {
        Some((e, r)) => (Some(e.name()), r.as_slice()),
        None => (None, &[][..]),
    };
    let permit = q.permit.as_deref().map(str::trim).filter(|p| !p.is_empty());
    if permit.is_some_and(|p| p.len() > 64) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"message": "许可事项类型过长"})),
        )
            .into_response();
    }
    let measures = library.restrictions_for(records, now, permit);
    let barred = measures
        .iter()
        .any(|m| m.effect == crate::credit::Effect::Bar);
    let listed = records.iter().any(|r| {
        matches!(&r.facts, super::Facts::Listing { listed: true, until_ms, .. }
            if until_ms.is_none_or(|u| now.timestamp_millis() < u))
    });
    tracing::info!(caller, entity = %key, permit, restricted = barred, measures = measures.len(), "restrictions asked");
    let mut body = json!({
        "entity": key, "name": name, "known": profile.is_some(), "permit": permit,
        "restricted": barred, "listed": listed, "measures": measures,
        "as_of": crate::calendar::local_rfc3339(now),
    });
    crate::personal::scrub(&mut body, &library.policy.mask);
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        axum::Json(body),
    )
        .into_response()
}

// ---------------------------------------------------------------------------
// The public window.

static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    // `.html` templates are auto-escaped (minijinja's default callback).
    env.add_template("public.html", include_str!("templates/public.html"))
        .expect("the public window's template");
    env
});

pub fn public_router(library: Arc<Library>) -> Router {
    crate::web::pages(
        Router::new()
            .route("/public/credit", axum::routing::get(public_page))
            .route("/public/api/credit", axum::routing::get(public_api))
            .route(
                "/public/static/public.css",
                axum::routing::get(|| async {
                    (
                        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
                        include_str!("templates/public.css"),
                    )
                }),
            ),
    )
    .with_state(library)
}

#[derive(Debug, Deserialize)]
struct PublicQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    page: Option<usize>,
}

#[derive(Debug, Serialize)]
struct PublicPage {
    total: usize,
    page: usize,
    pages: usize,
    page_size: usize,
    items: Vec<serde_json::Value>,
}

/// The page of items matching the query, masked by the policy.
fn public_page_of(library: &Library, q: &PublicQuery) -> crate::error::Result<PublicPage> {
    let page_size = library.config.public.as_ref().map_or(20, |p| p.page_size);
    let needle =
        q.q.as_deref()
            .map(|s| super::normalise_name(&s.chars().take(80).collect::<String>()))
            .filter(|s| !s.is_empty());
    let all = library.public_items_cached()?;
    let items: Vec<&PublicItem> = all
        .iter()
        .filter(|i| {
            needle.as_ref().is_none_or(|n| {
                super::normalise_name(&i.name).contains(n.as_str())
                    || super::normalise_name(&i.code).contains(n.as_str())
            })
        })
        .collect();
    let total = items.len();
    let pages = total.div_ceil(page_size).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let items = items
        .into_iter()
        .skip((page - 1) * page_size)
        .take(page_size)
        .map(|i| {
            let mut v = serde_json::to_value(i).expect("items serialize");
            crate::personal::scrub(&mut v, &library.policy.mask);
            v
        })
        .collect();
    Ok(PublicPage {
        total,
        page,
        pages,
        page_size,
        items,
    })
}

/// Refused when one address asks more often than `[entities.public]
/// per_minute`.
fn limited(library: &Library, peer: Option<SocketAddr>) -> Option<Response> {
    let ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip());
    if library.limiter.len() > 100_000 {
        // Bounded memory: forget addresses whose quota is full again.
        library.limiter.retain_recent();
    }
    match library.limiter.check_key(&ip) {
        Ok(()) => None,
        Err(not_until) => {
            let wait = not_until
                .wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ))
                .as_secs()
                .max(1);
            Some(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, wait.to_string())],
                    axum::Json(json!({"message": "访问过于频繁，请稍后再试"})),
                )
                    .into_response(),
            )
        }
    }
}

/// The answer with caching headers: public for `max_age`, with an ETag;
/// a matching `If-None-Match` gets 304.
fn cached(
    library: &Library,
    headers: &HeaderMap,
    content_type: &'static str,
    body: String,
) -> Response {
    use sha2::Digest;
    let etag = format!(
        "\"{}\"",
        &hex::encode(sha2::Sha256::digest(body.as_bytes()))[..32]
    );
    let max_age = library
        .config
        .public
        .as_ref()
        .map_or(60, |p| p.max_age.as_secs());
    let cache = format!("public, max-age={max_age}");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

async fn public_answer(
    library: Arc<Library>,
    peer: Option<SocketAddr>,
    headers: HeaderMap,
    q: PublicQuery,
    html: bool,
) -> Response {
    if let Some(refused) = limited(&library, peer) {
        return refused;
    }
    let l = library.clone();
    let page =
        match tokio::task::spawn_blocking(move || public_page_of(&l, &q).map(|p| (p, q))).await {
            Ok(Ok(p)) => p,
            _ => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(json!({"message": "暂时无法读取公示信息，请稍后再试"})),
                )
                    .into_response();
            }
        };
    let (page, q) = page;
    if !html {
        let body = serde_json::to_string(&page).expect("pages serialize");
        return cached(&library, &headers, "application/json", body);
    }
    let ready = library.stats.ready.load(Ordering::Acquire);
    let ctx = minijinja::context! {
        page, q => q.q.unwrap_or_default(), ready,
        prev => (page.page > 1).then(|| page.page - 1),
        next => (page.page < page.pages).then(|| page.page + 1),
    };
    match TEMPLATES
        .get_template("public.html")
        .and_then(|t| t.render(ctx))
    {
        Ok(body) => cached(&library, &headers, "text/html; charset=utf-8", body),
        Err(e) => {
            tracing::error!(error = %e, "public window template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>错误</title><p>页面生成失败。</p>"),
            )
                .into_response()
        }
    }
}

async fn public_page(
    State(library): State<Arc<Library>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Query(q): Query<PublicQuery>,
) -> Response {
    public_answer(library, peer.map(|c| c.0.0), headers, q, true).await
}

async fn public_api(
    State(library): State<Arc<Library>>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Query(q): Query<PublicQuery>,
) -> Response {
    public_answer(library, peer.map(|c| c.0.0), headers, q, false).await
}
