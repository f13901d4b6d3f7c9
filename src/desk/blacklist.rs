//! The desk's page of the list of seriously dishonest entities
//! (严重失信主体名单), in Chinese, under `/desk/blacklist`.
//!
//! - `/desk/blacklist`: every case — proposals, notices, objections,
//!   decisions, removals — with its state, what comes next, the running
//!   clock and its basis.
//! - `/desk/blacklist/{case}`: the case's grounds, criteria with their
//!   basis, and its timeline; officers record the steps that are theirs
//!   (notice served, objection received and decided, the decision, a
//!   revocation, an approved repair). Each is checked by the procedure's
//!   own fold ([`crate::keepers::blacklist`]) before it is written to the procedure
//!   topic, and refused with the reason when the procedure does not allow
//!   it yet (a decision inside the objection window, for one).
//! - `/desk/api/blacklist`: the same cases as JSON.
//!
//! Every view and act is audited first, like the referral desk.

use super::web::{
    PRODUCT, audited, message_page, officer, refuse, render, text_too_long, time, unauthorized,
    user, user_view,
};
use super::{Desk, DeskUser, Role};
use crate::bus::Bus;
use crate::bus::follow::Follow;
use crate::calendar::Calendar;
use crate::keepers::blacklist::{BlacklistConfig, CaseView, EventKind, ProcedureEvent};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;

/// The procedure's events as the desk knows them, from the procedure
/// topic (and the desk's own acts, at once).
#[derive(Debug)]
pub struct ListBoard {
    pub config: BlacklistConfig,
    calendar: Arc<Calendar>,
    events: RwLock<BTreeMap<String, Vec<ProcedureEvent>>>,
    /// Persons' keys of a form the deployment no longer makes: their steps
    /// are carried over to the new key by the keeper (`[hub]
    /// previous_suite`), and the desk shows them there.
    earlier: Option<crate::personal::Pseudonyms>,
    /// Whether the topic's history has been read: until then the desk shows
    /// what it has and refuses acts, which need the whole case.
    ready: AtomicBool,
}

impl ListBoard {
    pub fn new(config: BlacklistConfig, calendar: Arc<Calendar>) -> Self {
        Self {
            config,
            calendar,
            events: RwLock::default(),
            earlier: None,
            ready: AtomicBool::new(false),
        }
    }

    /// The same board, hiding steps kept under another suite's pseudonyms.
    pub fn with_pseudonyms(mut self, pseudonyms: Option<crate::personal::Pseudonyms>) -> Self {
        self.earlier = pseudonyms;
        self
    }

    fn observe(&self, e: ProcedureEvent) {
        if self
            .earlier
            .as_ref()
            .is_some_and(|p| p.is_earlier_form(&e.entity))
        {
            return;
        }
        let mut events = self.events.write().expect("board lock");
        let list = events.entry(e.entity.clone()).or_default();
        if !list.iter().any(|x| x.id == e.id) {
            list.push(e);
        }
    }

    /// Every case as of `now`: open ones first, then by proposal, newest
    /// first.
    pub fn cases(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<CaseView> {
        let events = self.events.read().expect("board lock");
        let mut out: Vec<CaseView> = events
            .values()
            .flat_map(|list| {
                crate::keepers::blacklist::cases(list, &self.config, &self.calendar, now)
            })
            .collect();
        out.sort_by_key(|c| (!c.state.open(), std::cmp::Reverse(c.proposed_at)));
        out
    }

    pub fn case(&self, case_id: &str, now: chrono::DateTime<chrono::Utc>) -> Option<CaseView> {
        // A case's events are under its entity (the procedure topic's key).
        let entity = crate::keepers::blacklist::entity_of_case(case_id)?;
        let events = self.events.read().expect("board lock");
        let list: Vec<ProcedureEvent> = events
            .get(entity)?
            .iter()
            .filter(|e| e.case_id == case_id)
            .cloned()
            .collect();
        (!list.is_empty()).then(|| {
            crate::keepers::blacklist::fold(case_id, &list, &self.config, &self.calendar, now)
        })
    }

    /// Follows the procedure topic until shutdown.
    pub async fn follow(self: Arc<Self>, bus: Bus, shutdown: CancellationToken) {
        let mut rx =
            crate::bus::follow::follow(&bus, vec![self.config.events_topic.clone()], shutdown);
        while let Some(f) = rx.recv().await {
            match f {
                Follow::CaughtUp => self.ready.store(true, Ordering::Release),
                Follow::Record(f) => match serde_json::from_slice::<ProcedureEvent>(&f.payload) {
                    Ok(e) => self.observe(e),
                    Err(e) => {
                        f.unreadable("desk", &e.to_string());
                    }
                },
            }
        }
    }
}

/// The page to show when the deployment has no `[credit.blacklist]`.
fn not_configured() -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "未配置",
        "本部署未配置严重失信主体名单（[credit.blacklist]）。",
        None,
    )
}

#[derive(Debug, Serialize)]
struct CaseRow {
    case_id: String,
    name: String,
    code: String,
    criteria: Vec<String>,
    bases: Vec<String>,
    state: &'static str,
    state_code: String,
    next: String,
    due: String,
    due_label: String,
    due_basis: String,
    closed_because: String,
    class: &'static str,
    clock_error: Option<String>,
}

fn row(c: &CaseView) -> CaseRow {
    let p = c.proposal.as_ref();
    CaseRow {
        case_id: c.case_id.clone(),
        name: p.map(|p| p.name.clone()).unwrap_or_default(),
        // A natural person has no credit code: the pseudonymous key shows.
        code: p
            .and_then(|p| p.credit_code.clone())
            .unwrap_or_else(|| c.entity.clone()),
        criteria: p
            .map(|p| p.criteria.iter().map(|k| k.label.clone()).collect())
            .unwrap_or_default(),
        bases: p
            .map(|p| p.criteria.iter().map(|k| k.basis_text()).collect())
            .unwrap_or_default(),
        state: c.state_label,
        state_code: serde_json::to_value(c.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        next: c.next_step.clone(),
        due: c.due_at.map(|t| time(Some(t))).unwrap_or_default(),
        due_label: c.due_label.clone().unwrap_or_default(),
        due_basis: c.due_basis.clone().unwrap_or_default(),
        closed_because: c.closed_because.clone().unwrap_or_default(),
        class: match c.state {
            crate::keepers::blacklist::CaseState::Listed => "listed",
            crate::keepers::blacklist::CaseState::AwaitingDecision
            | crate::keepers::blacklist::CaseState::Proposed => "at_risk",
            s if !s.open() => "closed",
            _ => "",
        },
        clock_error: c.clock_error.clone(),
    }
}

/// A read of every case (page or API): who asks, the cases, and the audit
/// entry written first. `Err` is the answer when nobody is logged in, the
/// list is not configured, or the audit cannot be written.
async fn audited_cases(
    desk: &Desk,
    headers: &HeaderMap,
    api: bool,
    what: &str,
) -> Result<(DeskUser, Arc<ListBoard>, Vec<CaseView>), Response> {
    let Some(user) = user(desk, headers) else {
        return Err(unauthorized(api));
    };
    let Some(board) = desk.blacklist.clone() else {
        return Err(if api {
            refuse(StatusCode::NOT_FOUND, "未配置严重失信主体名单")
        } else {
            not_configured()
        });
    };
    let cases = board.cases(desk.now());
    audited(
        desk,
        &user,
        "list",
        None,
        format!("{what}（{}件）", cases.len()),
    )
    .await?;
    Ok((user, board, cases))
}

pub async fn list_page(State(desk): State<Desk>, headers: HeaderMap) -> Response {
    let (user, board, cases) =
        match audited_cases(&desk, &headers, false, "查看严重失信主体名单案件").await {
            Ok(r) => r,
            Err(refused) => return refused,
        };
    let listed = cases.iter().filter(|c| c.listed()).count();
    let open = cases
        .iter()
        .filter(|c| c.state.open() && !c.listed())
        .count();
    let rows: Vec<CaseRow> = cases.iter().map(row).collect();
    let c = &board.config;
    render(
        "blacklist.html",
        minijinja::context! {
            title => "严重失信主体名单", product => PRODUCT, page => "blacklist",
            user => user_view(&user), rows, listed, open,
            ready => board.ready.load(Ordering::Acquire),
            window => json!({"limit": c.objection_window.limit.label(), "basis": c.objection_window.basis}),
            term => json!({"limit": c.listing_term.limit.label(), "basis": c.listing_term.basis}),
            repair => json!({"limit": c.repair_after.limit.label(), "basis": c.repair_after.basis}),
        },
    )
    .into_response()
}

pub async fn list_api(State(desk): State<Desk>, headers: HeaderMap) -> Response {
    match audited_cases(&desk, &headers, true, "接口读取严重失信主体名单案件").await {
        Ok((_, _, cases)) => axum::Json(cases).into_response(),
        Err(refused) => refused,
    }
}

#[derive(Debug, Serialize)]
struct StepView {
    at: String,
    effective: Option<String>,
    label: &'static str,
    code: &'static str,
    by: String,
    text: String,
    refused: Option<String>,
}

pub async fn case_page(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
) -> Response {
    let Some(user) = user(&desk, &headers) else {
        return unauthorized(false);
    };
    let Some(board) = desk.blacklist.as_ref() else {
        return not_configured();
    };
    let Some(case) = board.case(&case_id, desk.now()) else {
        return message_page(StatusCode::NOT_FOUND, "未找到", "无此案件。", None);
    };
    if let Err(refused) = audited(
        &desk,
        &user,
        "view",
        None,
        format!("查看严重失信主体名单案件{case_id}"),
    )
    .await
    {
        return refused;
    }
    let steps: Vec<StepView> = case
        .events
        .iter()
        .map(|e| StepView {
            at: time(Some(e.at_ms)),
            effective: e.effective_ms.map(|t| time(Some(t))),
            label: e.event.label(),
            code: e.event.code(),
            by: if e.by == "duijie" {
                "系统".into()
            } else {
                e.by.clone()
            },
            text: e.text.clone().unwrap_or_default(),
            refused: case.refused.get(&e.id).cloned(),
        })
        .collect();
    let p = case.proposal.clone();
    let acts: Vec<_> = EventKind::OFFICER_ACTS
        .iter()
        .map(|k| json!({"code": k.code(), "label": k.label(), "dated": k.takes_date()}))
        .collect();
    render(
        "blacklist_case.html",
        minijinja::context! {
            title => case_id.clone(), product => PRODUCT, page => "blacklist-case",
            user => user_view(&user), c => row(&case), steps, acts,
            reasons => p.as_ref().map(|p| p.reasons.clone()).unwrap_or_default(),
            decisions => p.as_ref().map(|p| p.decision_nos.clone()).unwrap_or_default(),
            served => case.served_at.map(|t| time(Some(t))),
            window_ends => case.objection_window_ends.map(|t| time(Some(t))),
            decided => case.decided_at.map(|t| time(Some(t))),
            listed_until => case.listed_until.map(|t| time(Some(t))),
            repair_from => case.repair_from.map(|t| time(Some(t))),
            officer => user.role == Role::Officer && case.state.open(),
        },
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActBody {
    /// `NOTICE_SERVED`, `OBJECTION_FILED`, …
    action: String,
    /// For a notice or an objection: when it was served or received
    /// (RFC 3339, or `YYYY-MM-DD HH:MM` in Asia/Shanghai).
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

pub async fn act(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
    axum::Json(body): axum::Json<ActBody>,
) -> Response {
    let user = match officer(&desk, &headers) {
        Ok(u) => u,
        Err(refused) => return *refused,
    };
    let Some(board) = desk.blacklist.clone() else {
        return refuse(StatusCode::NOT_FOUND, "未配置严重失信主体名单");
    };
    if !board.ready.load(Ordering::Acquire) {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "正在读取名单程序记录，请稍后再试",
        );
    }
    let Some(kind) = EventKind::from_code(&body.action) else {
        return refuse(StatusCode::BAD_REQUEST, "未知的办理事项");
    };
    if let Some(refused) = text_too_long(body.text.as_deref()) {
        return refused;
    }
    let date = match body.date.as_deref().filter(|d| !d.trim().is_empty()) {
        None => None,
        Some(d) => match crate::calendar::parse_time(d) {
            Ok(t) => Some(t),
            Err(_) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "日期格式应为“YYYY-MM-DD HH:MM”（北京时间）",
                );
            }
        },
    };
    let now = desk.now();
    let Some(case) = board.case(&case_id, now) else {
        return refuse(StatusCode::NOT_FOUND, "无此案件");
    };
    let text = body.text.filter(|t| !t.trim().is_empty());
    let event = match crate::keepers::blacklist::officer_act(
        &case,
        kind,
        &user.name,
        date,
        text.clone(),
        now,
    ) {
        Ok(e) => e,
        Err(why) => return refuse(StatusCode::CONFLICT, why),
    };
    // The audit entry first: an act that cannot be audited is not done.
    if let Err(refused) = audited(
        &desk,
        &user,
        "action",
        None,
        format!(
            "严重失信主体名单案件{case_id}：{}{}",
            kind.label(),
            text.map(|t| format!("（{t}）")).unwrap_or_default()
        ),
    )
    .await
    {
        return refused;
    }
    let payload = serde_json::to_vec(&event).expect("events serialize");
    // An officer's step on an entity's listing: no one record's trace.
    match desk
        .send(&board.config.events_topic, &event.entity, &payload, None)
        .await
    {
        Ok(()) => {
            let id = event.id.clone();
            board.observe(event);
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({"status": "accepted", "id": id})),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(case = %case_id, error = %e, "blacklist act not written");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "办理事项未能写入，请稍后再试",
            )
        }
    }
}
