//! Grid social management (城市网格化社会管理) simulator.
//!
//! - `POST /grid/api/login` with `{"username","password"}` returns a bearer
//!   token that expires after `grid_token_ttl`;
//! - `GET /grid/api/events?updatedAfter=&afterId=&pageSize=` lists events by
//!   `(updateTime, eventId)` keyset (or `updatedSince` + `page`), and answers
//!   401 to a missing or expired token. New events arrive and old ones change
//!   while the hub pages through, so page-number paging would skip and
//!   repeat; keyset paging does not.
//! - Urgent events (safety hazards, disputes about to escalate) are also
//!   pushed in real time to a webhook, signed with HMAC-SHA256 over the
//!   timestamp and the body.

use super::people::{self, ROADS, STREETS};
use super::store::KeysetStore;
use super::{FaultPlan, SandboxConfig};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The grid simulator's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Events at start.
    pub events: usize,
    /// New or changed events per second while running.
    pub changes_per_sec: u32,
    /// Lifetime of a login token.
    pub token_ttl: std::time::Duration,
    /// Where urgent events are pushed, if anywhere.
    pub webhook: Option<WebhookTarget>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            events: 500,
            changes_per_sec: 5,
            token_ttl: std::time::Duration::from_secs(300),
            webhook: None,
        }
    }
}

/// The account the hub logs in with.
pub const GRID_USER: &str = "duijie";
pub const GRID_PASSWORD: &str = "Wg#2026-yc";

const TYPES: &[(&str, &str, &str)] = &[
    ("01", "矛盾纠纷", "邻里因{}问题发生纠纷，双方情绪激动。"),
    ("02", "治安隐患", "{}附近有可疑人员聚集，存在治安隐患。"),
    (
        "03",
        "安全生产隐患",
        "{}企业现场发现消防通道堵塞、电线私拉乱接。",
    ),
    ("04", "环境问题", "{}河道漂浮垃圾，有异味。"),
    ("05", "民生服务", "{}居民反映路灯损坏，夜间出行不便。"),
];

/// Where urgent events are pushed.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub url: String,
    pub secret: String,
    /// One urgent event this often.
    pub every: Duration,
}

#[derive(Debug)]
struct GridState {
    events: KeysetStore,
    next_event: u64,
    applied_changes: u64,
    rng: fastrand::Rng,
    tokens: HashMap<String, Instant>,
}

/// What the pusher did.
#[derive(Debug, Default)]
pub struct PushCounters {
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub failed: AtomicU64,
}

/// The simulated system.
#[derive(Debug, Clone)]
pub struct GridSystem {
    state: Arc<Mutex<GridState>>,
    started: Instant,
    changes_per_sec: u32,
    token_ttl: Duration,
    faults: FaultPlan,
    change_limit: u64,
    pub webhook: Option<WebhookTarget>,
    pub pushes: Arc<PushCounters>,
}

impl GridSystem {
    pub fn new(config: &SandboxConfig, faults: FaultPlan) -> Self {
        let mut state = GridState {
            events: KeysetStore::new("updateTime", "eventId"),
            next_event: 0,
            applied_changes: 0,
            rng: fastrand::Rng::with_seed(config.seed ^ 0x6772_6964),
            tokens: HashMap::new(),
        };
        let start = chrono::Utc::now() - chrono::Duration::hours(12);
        let n = config.grid.events.max(1) as i64;
        for i in 0..config.grid.events {
            let at = start + chrono::Duration::milliseconds(i as i64 * 43_200_000 / n);
            let event = new_event(&mut state, at, config.bad_rate, false);
            state.events.insert(event);
        }
        Self {
            state: Arc::new(Mutex::new(state)),
            started: Instant::now(),
            changes_per_sec: config.grid.changes_per_sec,
            token_ttl: config.grid.token_ttl,
            faults,
            change_limit: config.change_limit.unwrap_or(u64::MAX),
            webhook: config.grid.webhook.clone(),
            pushes: Arc::default(),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/grid/api/login", axum::routing::post(login))
            .route("/grid/api/events", axum::routing::get(list_events))
            .with_state(self.clone())
    }

    fn advance(&self, state: &mut GridState) {
        let due = ((self.started.elapsed().as_secs_f64() * f64::from(self.changes_per_sec)) as u64)
            .min(self.change_limit);
        while state.applied_changes < due {
            state.applied_changes += 1;
            let now = chrono::Utc::now();
            if state.rng.f64() < 0.6 || state.events.len() == 0 {
                let event = new_event(state, now, 0.0, false);
                state.events.insert(event);
            } else {
                let n = state.rng.usize(..state.events.len());
                let Some(id) = state.events.nth_id(n) else {
                    continue;
                };
                state.events.update(&id, people::local(now, true), |e| {
                    let next = match e["status"].as_str() {
                        Some("0") => "1",
                        Some("1") => "2",
                        Some("2") => "3",
                        Some("3") => "4",
                        Some(other) => other,
                        None => "0",
                    }
                    .to_owned();
                    if next == "4" {
                        e["finishTime"] = json!(people::local(now, false));
                    }
                    e["status"] = json!(next);
                });
            }
        }
        self.faults
            .counters
            .grid_changes
            .store(state.applied_changes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Pushes one urgent event every `every` until `shutdown`, on a fixed
    /// schedule (each push on its own task, so a slow answer does not
    /// slow the rate: 1 ms means 1,000 events a second).
    pub async fn push_urgent_events(self, shutdown: tokio_util::sync::CancellationToken) {
        let Some(target) = self.webhook.clone() else {
            return;
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        let mut tick = tokio::time::interval(target.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let event = {
                let mut state = self.state.lock().expect("grid lock");
                let event = new_event(&mut state, chrono::Utc::now(), 0.0, true);
                state.events.insert(event.clone());
                event
            };
            let body = serde_json::to_vec(&event).expect("events serialize");
            let (system, client, target, shutdown) = (
                self.clone(),
                client.clone(),
                target.clone(),
                shutdown.clone(),
            );
            tokio::spawn(async move { system.push(&client, &target, body, &shutdown).await });
        }
    }

    /// One push, delivered at least once: retried until the hub answers.
    async fn push(
        &self,
        client: &reqwest::Client,
        target: &WebhookTarget,
        body: Vec<u8>,
        shutdown: &tokio_util::sync::CancellationToken,
    ) {
        for attempt in 0..20u32 {
            let ts = chrono::Utc::now().timestamp();
            let signature = duijie_connectors::webhook::sign(&target.secret, ts, &body);
            self.pushes.sent.fetch_add(1, Ordering::Relaxed);
            let result = client
                .post(&target.url)
                .header("Content-Type", "application/json; charset=utf-8")
                .header("X-Timestamp", ts.to_string())
                .header("X-Signature", signature)
                .body(body.clone())
                .send()
                .await;
            match result {
                Ok(r) if r.status().is_success() => {
                    self.pushes.accepted.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(r) if r.status().is_client_error() => {
                    self.pushes.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                _ => {
                    self.pushes.failed.fetch_add(1, Ordering::Relaxed);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))) => {}
                    }
                }
            }
        }
    }
}

fn new_event(
    state: &mut GridState,
    at: chrono::DateTime<chrono::Utc>,
    bad_rate: f64,
    urgent: bool,
) -> Value {
    let i = state.next_event;
    state.next_event += 1;
    let rng = &mut state.rng;
    let (street, community) = STREETS[rng.usize(..STREETS.len())];
    let (code, name, text) = if urgent {
        TYPES[1 + rng.usize(..2)]
    } else {
        TYPES[rng.usize(..TYPES.len())]
    };
    let road = ROADS[rng.usize(..ROADS.len())];
    let urgent = urgent || (code == "03" && rng.f64() < 0.3);
    let mut event = json!({
        "eventId": format!("WG{}{:06}", at.format("%Y%m%d"), i),
        "gridCode": format!("42050200{:02}{:02}", 1 + rng.u32(..12), 1 + rng.u32(..30)),
        "streetName": street,
        "communityName": community,
        "reporter": { "name": people::person(rng), "phone": people::phone(rng) },
        "eventType": code,
        "eventTypeName": name,
        "content": text.replace("{}", road),
        "place": format!("{street}{community}{road}{}号", rng.u32(1..300)),
        "lng": format!("{:.6}", 111.28 + rng.f64() * 0.2),
        "lat": format!("{:.6}", 30.65 + rng.f64() * 0.15),
        "reportTime": people::local(at, false),
        "limitTime": people::local(at + chrono::Duration::hours(if urgent { 2 } else { 72 }), false),
        "finishTime": null,
        "updateTime": people::local(at, true),
        "status": "0",
        "urgentFlag": if urgent { "1" } else { "0" },
        "urgentReason": if urgent { "可能引发安全事故或矛盾激化，需立即处置" } else { "" },
    });
    if code == "03" || rng.f64() < 0.2 {
        let (name, code) = people::company(rng);
        event["party"] = json!({
            "name": name,
            "type": "1",
            "creditCode": if rng.f64() < 0.2 { people::fullwidth(&code) } else { code },
            "legalPerson": people::person(rng),
        });
    } else if code == "01" {
        event["party"] =
            json!({ "name": people::person(rng), "type": "3", "idNo": people::resident_id(rng) });
    }
    if rng.f64() < bad_rate {
        match rng.usize(..2) {
            0 => event["status"] = json!("9"),
            _ => event["gridCode"] = json!("4205"),
        }
    }
    event
}

#[derive(Debug, Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn login(
    State(system): State<GridSystem>,
    axum::Json(c): axum::Json<Credentials>,
) -> Response {
    if c.username != GRID_USER || c.password != GRID_PASSWORD {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "code": 401, "msg": "用户名或密码错误" })),
        )
            .into_response();
    }
    let token = format!("{:032x}", fastrand::u128(..));
    let mut state = system.state.lock().expect("grid lock");
    let now = Instant::now();
    state.tokens.retain(|_, exp| *exp > now);
    state.tokens.insert(token.clone(), now + system.token_ttl);
    system
        .faults
        .counters
        .grid_logins
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    axum::Json(json!({ "code": 0, "msg": "成功", "data": { "token": token, "expiresIn": system.token_ttl.as_secs() } })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    updated_after: Option<String>,
    after_id: Option<String>,
    updated_since: Option<String>,
    page: Option<usize>,
    page_size: Option<usize>,
}

async fn list_events(
    State(system): State<GridSystem>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let token = headers
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let size = q.page_size.unwrap_or(50).clamp(1, 500);
    let rows = {
        let mut state = system.state.lock().expect("grid lock");
        match state.tokens.get(&token) {
            Some(exp) if *exp > Instant::now() => {}
            _ => {
                return (
                    StatusCode::UNAUTHORIZED,
                    axum::Json(json!({ "code": 401, "msg": "令牌无效或已过期" })),
                )
                    .into_response();
            }
        }
        system.advance(&mut state);
        match q.page {
            Some(page) => state
                .events
                .page(q.updated_since.as_deref().unwrap_or(""), page, size),
            None => state
                .events
                .after(q.updated_after.as_deref(), q.after_id.as_deref(), size),
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if system.faults.duplicate() {
            out.push(row.clone());
        }
        out.push(row);
    }
    axum::Json(json!({ "code": 0, "msg": "成功", "data": { "list": out } })).into_response()
}

impl crate::Simulator for GridSystem {
    fn routes(&self) -> Router {
        self.router()
    }

    /// Urgent events pushed to the hub's webhook, when one is configured.
    fn background(&self, _: &SandboxConfig, shutdown: tokio_util::sync::CancellationToken) {
        if self.webhook.is_some() {
            tokio::spawn(self.clone().push_urgent_events(shutdown));
        }
    }

    fn report(&self) -> Option<String> {
        use std::sync::atomic::Ordering::Relaxed;
        self.webhook.as_ref()?;
        Some(format!(
            "grid pushed {} urgent event(s) to the webhook: {} accepted after the broker acknowledged them",
            self.pushes.sent.load(Relaxed),
            self.pushes.accepted.load(Relaxed),
        ))
    }
}
