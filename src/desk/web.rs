//! The desk's web page, in Chinese, served by the hub under `/desk`.
//!
//! - `/desk/login`: token login; officers (办案人员) may act, supervisors
//!   (监督人员) only read. The token is exchanged for an opaque, expiring
//!   session ([`super::session`]); without a session or a bearer token every
//!   page and API answers 401.
//! - `/desk`: the referrals, with state, who acts next, due time, time left
//!   and the legal basis of the running step; late ones in red, at-risk
//!   ones in amber; filters by state, next actor and due date; refreshed
//!   live when events arrive.
//! - `/desk/referrals/{no}`: the full timeline with each event's source
//!   system and provenance; officers record notes, reminders sent to the
//!   police and acknowledgements, each an event on the bus.
//! - `/desk/export.csv`: the list as CSV (RFC 4180, formulas neutralised).
//!   `/desk/audit`: who viewed and exported what.
//!
//! Every page is rendered by minijinja templates (`templates/`) with HTML
//! auto-escaping; no HTML is assembled from strings here. The only script
//! is the static `desk.js`; the pages' Content-Security-Policy forbids
//! inline script, and record data never sits inside a script. Every view
//! — lists, detail pages, API reads, exports, the audit log — writes an
//! audit entry first, and is refused if that entry cannot be written.

use super::{AuditEntry, Desk, DeskUser, Role};
use crate::calendar::local_text;
use crate::keepers::referral::{RefState, ReferralView, remaining_label};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use futures::stream::Stream;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::convert::Infallible;
use std::sync::LazyLock;

const COOKIE: &str = "duijie_desk";
pub(super) const PRODUCT: &str = "两法衔接工作台";

static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    // `.html` templates are auto-escaped (minijinja's default callback).
    for (name, text) in [
        ("base.html", include_str!("templates/base.html")),
        ("message.html", include_str!("templates/message.html")),
        ("login.html", include_str!("templates/login.html")),
        ("table.html", include_str!("templates/table.html")),
        ("list.html", include_str!("templates/list.html")),
        ("detail.html", include_str!("templates/detail.html")),
        ("audit.html", include_str!("templates/audit.html")),
        ("blacklist.html", include_str!("templates/blacklist.html")),
        (
            "blacklist_case.html",
            include_str!("templates/blacklist_case.html"),
        ),
        ("entities.html", include_str!("templates/entities.html")),
        ("credit.html", include_str!("templates/credit.html")),
        ("entity.html", include_str!("templates/entity.html")),
        ("proposals.html", include_str!("templates/proposals.html")),
        ("quality.html", include_str!("templates/quality.html")),
        ("powers.html", include_str!("templates/powers.html")),
    ] {
        env.add_template(name, text)
            .unwrap_or_else(|e| panic!("desk template {name}: {e}"));
    }
    env
});

pub(super) fn render(name: &str, ctx: minijinja::Value) -> Html<String> {
    match TEMPLATES.get_template(name).and_then(|t| t.render(ctx)) {
        Ok(html) => Html(html),
        Err(e) => {
            tracing::error!(template = name, error = %e, "desk template failed");
            Html("<!doctype html><title>错误</title><p>页面生成失败。</p>".into())
        }
    }
}

pub(super) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/desk.js"),
    )
        .into_response()
}

pub(super) async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/desk.css"),
    )
        .into_response()
}

pub(super) fn time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(local_text)
        .unwrap_or_else(|| "—".into())
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|c| c.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// The gateway's identity header is believed only from the gateway: from
/// any other address it is removed before a page sees the request.
pub(super) async fn gateway_only(
    State(desk): State<Desk>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(gateway) = &desk.config.gateway {
        let peer = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let trusted = peer.is_some_and(|p| gateway.addresses.contains(&p));
        if !trusted
            && request
                .headers_mut()
                .remove(gateway.header.as_str())
                .is_some()
        {
            tracing::warn!(
                peer = ?peer,
                header = %gateway.header,
                "desk: an identity asserted from outside the gateway was ignored"
            );
        }
    }
    next.run(request).await
}

/// The user a request is from: the identity a TLCP gateway asserts
/// (`[desk.gateway]`), a live session (cookie), or a bearer token for API
/// clients.
pub(super) fn user(desk: &Desk, headers: &HeaderMap) -> Option<DeskUser> {
    if let Some(gateway) = &desk.config.gateway
        && let Some(identity) = headers.get(gateway.header.as_str())
    {
        // Only the gateway's requests still carry the header here.
        let identity = identity.to_str().ok()?;
        let user = gateway.users.get(identity).cloned();
        if user.is_none() {
            tracing::warn!(
                identity,
                "desk: the gateway asserted an identity not in [desk.gateway.users]"
            );
        }
        return user;
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        return desk.user_by_token(token);
    }
    let session = cookie_value(headers, COOKIE)?;
    let token = desk.sessions.token(session)?;
    desk.user_by_token(&token)
}

#[derive(Debug, Serialize)]
pub(super) struct UserView {
    name: String,
    role_label: &'static str,
}

pub(super) fn user_view(user: &DeskUser) -> UserView {
    UserView {
        name: user.name.clone(),
        role_label: role_label(user.role),
    }
}

pub(super) fn message_page(
    status: StatusCode,
    title: &str,
    message: &str,
    link: Option<(&str, &str)>,
) -> Response {
    let link = link.map(|(href, text)| json!({"href": href, "text": text}));
    (
        status,
        render(
            "message.html",
            minijinja::context! { title, product => PRODUCT, page => "message", message, link, error => status.is_client_error() },
        ),
    )
        .into_response()
}

/// An API refusal: the status and a message in Chinese.
pub(super) fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"message": message.into()}))).into_response()
}

/// The officer acting through the API: 401 without a session or token,
/// 403 for a supervisor (read only).
pub(super) fn officer(desk: &Desk, headers: &HeaderMap) -> Result<DeskUser, Box<Response>> {
    let user = user(desk, headers).ok_or_else(|| Box::new(unauthorized(true)))?;
    if user.role != Role::Officer {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "监督人员为只读权限，不能办理",
        )));
    }
    Ok(user)
}

pub(super) fn unauthorized(api: bool) -> Response {
    if api {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "未登录：需要有效的令牌"})),
        )
            .into_response()
    } else {
        message_page(
            StatusCode::UNAUTHORIZED,
            "未登录",
            "请先登录。",
            Some(("/desk/login", "登录")),
        )
    }
}

/// The systems as the desk calls them.
fn system_label(system: &str) -> &'static str {
    match system {
        "enforcement" => "执法办案系统",
        "public_security" => "公安机关",
        "two_law" => "两法衔接平台",
        "desk" => "工作台",
        _ => "",
    }
}

fn role_label(r: Role) -> &'static str {
    match r {
        Role::Officer => "办案人员",
        Role::Supervisor => "监督人员（只读）",
    }
}

pub(super) async fn login_page() -> Response {
    render(
        "login.html",
        minijinja::context! { title => "登录", product => PRODUCT, page => "login", failed => false },
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    token: String,
}

pub(super) async fn login(State(desk): State<Desk>, Form(f): Form<LoginForm>) -> Response {
    if desk.user_by_token(&f.token).is_none() {
        tracing::warn!("desk login refused: unknown token");
        return (
            StatusCode::UNAUTHORIZED,
            render(
                "login.html",
                minijinja::context! { title => "登录失败", product => PRODUCT, page => "login", failed => true },
            ),
        )
            .into_response();
    }
    let id = match desk.sessions.open(&f.token) {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "desk session not opened");
            return message_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "登录失败",
                "暂时无法登录，请稍后再试。",
                None,
            );
        }
    };
    let secure = if desk.config.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    (
        [(
            header::SET_COOKIE,
            format!(
                "{COOKIE}={id}; Path=/desk; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
                desk.sessions.ttl().as_secs()
            ),
        )],
        Redirect::to("/desk"),
    )
        .into_response()
}

pub(super) async fn logout(State(desk): State<Desk>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_value(&headers, COOKIE) {
        desk.sessions.close(id);
    }
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/desk; Max-Age=0; HttpOnly; SameSite=Strict"),
        )],
        Redirect::to("/desk/login"),
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Filter {
    /// A state (`UNDER_REVIEW`…).
    state: Option<String>,
    /// Who acts next (`公安机关`…).
    actor: Option<String>,
    /// An agency named on any of the referral's events (part of its name:
    /// `高新分局`).
    org: Option<String>,
    /// Due on or before this local date (`2026-11-30`).
    due_before: Option<String>,
    /// `1`: late ones only.
    late: Option<String>,
}

impl Filter {
    fn holds(&self, v: &ReferralView) -> bool {
        let state_ok = self
            .state
            .as_deref()
            .filter(|s| !s.is_empty())
            .is_none_or(|s| v.state.is_some_and(|st| st.code() == s));
        let org_ok = self
            .org
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .is_none_or(|o| {
                v.events
                    .iter()
                    .any(|e| e.actor_org.as_deref().is_some_and(|a| a.contains(o)))
            });
        let actor_ok = self
            .actor
            .as_deref()
            .filter(|s| !s.is_empty())
            .is_none_or(|a| v.next_actor == a);
        let due_ok = match self.due_before.as_deref().filter(|s| !s.is_empty()) {
            None => true,
            Some(d) => match (chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d"), v.due_at) {
                (Ok(date), Some(due)) => {
                    due <= crate::calendar::end_of_day(date).timestamp_millis()
                }
                _ => false,
            },
        };
        let late_ok = self.late.as_deref() != Some("1") || v.late;
        state_ok && org_ok && actor_ok && due_ok && late_ok
    }
}

fn rows(desk: &Desk, f: &Filter) -> Vec<ReferralView> {
    let views = desk.tracker.views.read().expect("views lock");
    let mut out: Vec<ReferralView> = views.values().filter(|v| f.holds(v)).cloned().collect();
    // Late first, then by due time.
    out.sort_by_key(|v| {
        (
            !v.late,
            !v.at_risk,
            v.due_at.unwrap_or(i64::MAX),
            v.referral_no.clone(),
        )
    });
    out
}

fn row_class(v: &ReferralView) -> &'static str {
    if v.late {
        "late"
    } else if v.at_risk {
        "at_risk"
    } else if v.state.is_some_and(RefState::closed) {
        "closed"
    } else {
        ""
    }
}

/// One row of the list, as the template shows it.
#[derive(Debug, Serialize)]
struct RowView {
    class: &'static str,
    referral_no: String,
    case_no: String,
    suspect: String,
    offence: String,
    state: String,
    actor: String,
    action: String,
    limit: String,
    basis: String,
    due: String,
    remaining: String,
    late: bool,
    at_risk: bool,
    flags: Vec<String>,
    late_steps: Vec<String>,
    clock_error: Option<String>,
    counted_from: String,
    extension: Option<String>,
    remedy: Option<String>,
}

fn row_view(v: &ReferralView) -> RowView {
    RowView {
        class: row_class(v),
        referral_no: v.referral_no.clone(),
        case_no: v.case_no.clone().unwrap_or_default(),
        suspect: v.suspect.clone().unwrap_or_default(),
        offence: v.offence.clone().unwrap_or_default(),
        state: v.state_label.clone(),
        actor: v.next_actor.clone(),
        action: v.next_action.clone(),
        limit: v.limit.clone().unwrap_or_else(|| "—".into()),
        basis: v.legal_basis.clone(),
        due: time(v.due_at),
        remaining: v
            .remaining_ms
            .map(remaining_label)
            .unwrap_or_else(|| "—".into()),
        late: v.late,
        at_risk: v.at_risk,
        flags: v.flags.clone(),
        late_steps: v.late_steps.clone(),
        clock_error: v.clock_error.clone(),
        counted_from: v.counted_from.clone().unwrap_or_default(),
        extension: v.police_extension.as_ref().map(|x| {
            format!(
                "公安机关于{}发出延长审查期限通知（{}{}）。{}",
                time(Some(x.notice_at)),
                x.approved_by.as_deref().unwrap_or("批准层级未载明"),
                x.named_until
                    .map(|t| format!("，通知所载期限至{}", time(Some(t))))
                    .unwrap_or_default(),
                x.note
            )
        }),
        remedy: v.late_review_remedy.clone(),
    }
}

const STATES: [(&str, &str); 11] = [
    ("AWAITING_APPROVAL", "待负责人审批"),
    ("APPROVED", "已批准待移送"),
    ("REFERRED", "已移送待公安受理"),
    ("UNDER_REVIEW", "公安审查中"),
    ("SUPPLEMENTING", "补充材料中"),
    ("CASE_OPENED", "公安已立案"),
    ("NOT_OPENED", "公安不予立案"),
    ("RECONSIDERATION", "复议中"),
    ("SUPERVISION", "检察院立案监督中"),
    ("REASONS_REQUESTED", "检察院要求说明理由"),
    ("OPENING_ORDERED", "检察院通知立案"),
];

const ACTORS: [&str; 4] = ["执法局", "执法局负责人", "公安机关", "检察院"];

/// Writes an audit entry before anything is shown or done; `Err` is the
/// answer to give when it cannot be written.
pub(super) async fn audited(
    desk: &Desk,
    user: &DeskUser,
    action: &str,
    referral_no: Option<&str>,
    detail: String,
) -> Result<(), Response> {
    let entry = AuditEntry {
        at_ms: desk.now().timestamp_millis(),
        user: user.name.clone(),
        role: user.role,
        action: action.into(),
        referral_no: referral_no.map(str::to_owned),
        detail,
    };
    desk.audit(entry).await.map_err(|e| audit_failed(&e))
}

pub(super) fn audit_failed(e: &crate::error::Error) -> Response {
    tracing::error!(error = %e, "audit entry not written; request refused");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"message": "审计日志暂时无法写入，请稍后再试"})),
    )
        .into_response()
}

/// What a list view's audit entry says: the filter and how many rows.
fn list_detail(what: &str, f: &Filter, n: usize) -> String {
    let mut parts = Vec::new();
    for (k, v) in [
        ("状态", &f.state),
        ("下一步", &f.actor),
        ("单位", &f.org),
        ("期限截至", &f.due_before),
        ("仅逾期", &f.late),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            parts.push(format!("{k}={v}"));
        }
    }
    if parts.is_empty() {
        format!("{what}（{n}件）")
    } else {
        format!("{what}（{n}件，筛选：{}）", parts.join("，"))
    }
}

/// A list read (page, API or export): who asks, the rows their filter
/// selects, and the audit entry written first. `Err` is the answer when
/// nobody is logged in or the audit cannot be written.
async fn audited_rows(
    desk: &Desk,
    headers: &HeaderMap,
    f: &Filter,
    api: bool,
    action: &str,
    what: &str,
) -> Result<(DeskUser, Vec<ReferralView>), Response> {
    let Some(user) = user(desk, headers) else {
        return Err(unauthorized(api));
    };
    let views = rows(desk, f);
    audited(desk, &user, action, None, list_detail(what, f, views.len())).await?;
    Ok((user, views))
}

pub(super) async fn list_page(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Query(f): Query<Filter>,
) -> Response {
    let (user, views) =
        match audited_rows(&desk, &headers, &f, false, "list", "查看移送案件列表").await {
            Ok(r) => r,
            Err(refused) => return refused,
        };
    let late = views.iter().filter(|v| v.late).count();
    let states: Vec<_> = STATES
        .iter()
        .map(|(code, label)| json!({"code": code, "label": label, "selected": f.state.as_deref() == Some(code)}))
        .collect();
    let actors: Vec<_> = ACTORS
        .iter()
        .map(|a| json!({"label": a, "selected": f.actor.as_deref() == Some(a)}))
        .collect();
    let rows: Vec<RowView> = views.iter().map(row_view).collect();
    render(
        "list.html",
        minijinja::context! {
            title => "移送案件", product => PRODUCT, page => "list",
            user => user_view(&user), rows, late, states, actors,
            filter => json!({
                "org": f.org.as_deref().unwrap_or(""),
                "due_before": f.due_before.as_deref().unwrap_or(""),
                "late": f.late.as_deref() == Some("1"),
            }),
        },
    )
    .into_response()
}

pub(super) async fn list_api(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Query(f): Query<Filter>,
) -> Response {
    let views = match audited_rows(&desk, &headers, &f, true, "list", "接口读取移送案件列表").await
    {
        Ok((_, views)) => views,
        Err(refused) => return refused,
    };
    let views: Vec<serde_json::Value> = views
        .into_iter()
        .map(|mut v| {
            v.events.clear();
            serde_json::to_value(v).unwrap_or_default()
        })
        .collect();
    axum::Json(views).into_response()
}

pub(super) async fn detail_api(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(no): Path<String>,
) -> Response {
    let Some(user) = user(&desk, &headers) else {
        return unauthorized(true);
    };
    let view = desk
        .tracker
        .views
        .read()
        .expect("views lock")
        .get(&no)
        .cloned();
    match view {
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "无此移送案件"})),
        )
            .into_response(),
        Some(v) => match audited(&desk, &user, "view", Some(&no), "查看移送案件".into()).await
        {
            Ok(()) => axum::Json(v).into_response(),
            Err(refused) => refused,
        },
    }
}

/// One timeline event, as the template shows it.
#[derive(Debug, Serialize)]
struct EventView {
    id: String,
    at: String,
    label: String,
    system: String,
    system_label: &'static str,
    flagged: Option<String>,
    detail: Vec<String>,
    topic: String,
    partition: i32,
    offset: i64,
    connector: String,
    pipeline: String,
    origin: String,
    fetched: String,
    sha: String,
}

pub(super) async fn detail_page(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(no): Path<String>,
) -> Response {
    let Some(user) = user(&desk, &headers) else {
        return unauthorized(false);
    };
    let Some(v) = desk
        .tracker
        .views
        .read()
        .expect("views lock")
        .get(&no)
        .cloned()
    else {
        return message_page(StatusCode::NOT_FOUND, "未找到", "无此移送案件。", None);
    };
    if let Err(refused) = audited(&desk, &user, "view", Some(&no), "查看移送案件".into()).await
    {
        return refused;
    }
    let events: Vec<EventView> = v
        .events
        .iter()
        .map(|e| EventView {
            id: e.id.clone(),
            at: time(Some(e.occurred_at)),
            label: e.label.clone(),
            system: e.source_system.clone(),
            system_label: system_label(&e.source_system),
            flagged: e.flagged.clone(),
            detail: [
                ("单位", &e.actor_org),
                ("文书", &e.document_no),
                ("理由/内容", &e.reason),
                ("备注", &e.notes),
            ]
            .into_iter()
            .filter_map(|(label, value)| value.as_ref().map(|v| format!("{label}：{v}")))
            .collect(),
            topic: e.source.topic.clone(),
            partition: e.source.partition,
            offset: e.source.offset,
            connector: e.source.connector.clone(),
            pipeline: e.source.pipeline.clone(),
            origin: e.source.origin.clone(),
            fetched: e.source.fetched_at.clone(),
            sha: e.source.payload_sha256.chars().take(16).collect(),
        })
        .collect();
    render(
        "detail.html",
        minijinja::context! {
            title => v.referral_no.clone(), product => PRODUCT, page => "detail",
            user => user_view(&user), v => row_view(&v), events,
            officer => user.role == Role::Officer,
        },
    )
    .into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct ActionBody {
    action: String,
    #[serde(default)]
    text: Option<String>,
}

/// The longest note an officer may record.
pub(super) const MAX_ACTION_TEXT: usize = 2000;

/// The 400 answer for an officer's text longer than [`MAX_ACTION_TEXT`],
/// if it is.
pub(super) fn text_too_long(text: Option<&str>) -> Option<Response> {
    text.is_some_and(|t| t.chars().count() > MAX_ACTION_TEXT)
        .then(|| {
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"message": format!("说明不能超过{MAX_ACTION_TEXT}字")})),
            )
                .into_response()
        })
}

pub(super) async fn act(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(no): Path<String>,
    axum::Json(body): axum::Json<ActionBody>,
) -> Response {
    let user = match officer(&desk, &headers) {
        Ok(u) => u,
        Err(refused) => return *refused,
    };
    if !desk
        .tracker
        .views
        .read()
        .expect("views lock")
        .contains_key(&no)
    {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "无此移送案件"})),
        )
            .into_response();
    }
    if !["note", "reminder", "acknowledge"].contains(&body.action.as_str()) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"message": "未知的办理事项"})),
        )
            .into_response();
    }
    if let Some(refused) = text_too_long(body.text.as_deref()) {
        return refused;
    }
    // The audit entry first: an action that cannot be audited is not done.
    if let Err(refused) = audited(
        &desk,
        &user,
        "action",
        Some(&no),
        format!(
            "{}：{}",
            body.action,
            body.text.as_deref().unwrap_or_default()
        ),
    )
    .await
    {
        return refused;
    }
    match desk
        .act(&no, &body.action, body.text.as_deref(), &user.name)
        .await
    {
        Ok(id) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({"status": "accepted", "id": id})),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(referral_no = %no, error = %e, "desk action not written");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"message": "办理事项未能写入，请稍后再试"})),
            )
                .into_response()
        }
    }
}

pub(super) async fn stream(State(desk): State<Desk>, headers: HeaderMap) -> Response {
    if user(&desk, &headers).is_none() {
        return unauthorized(true);
    }
    let rx = desk.tracker.changes.subscribe();
    let events: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(v) => return Some((Ok(Event::default().data(v.to_string())), rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return None,
                }
            }
        }));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A cell a spreadsheet would run as a formula (or whose leading control
/// character could hide one) gets a leading apostrophe (OWASP's advice on
/// CSV injection); quoting is the csv crate's (RFC 4180).
fn neutralised(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}

/// The referrals as CSV: a BOM (so that spreadsheet programs read the
/// Chinese as UTF-8), a header row, one row each, CRLF line ends, fields
/// quoted whenever they hold `,`, `"`, CR or LF.
pub fn referrals_csv(views: &[ReferralView]) -> Result<Vec<u8>, csv::Error> {
    let mut out = "\u{FEFF}".as_bytes().to_vec();
    {
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .quote_style(csv::QuoteStyle::Necessary)
            .from_writer(&mut out);
        w.write_record([
            "移送编号",
            "案件编号",
            "当事人",
            "涉嫌罪名",
            "当前状态",
            "下一步办理单位",
            "办理事项",
            "法定期限",
            "法律依据",
            "期限至",
            "剩余时间",
            "是否逾期",
            "异常事件",
        ])?;
        for v in views {
            let r = row_view(v);
            let late = if v.late { "是" } else { "否" };
            let flags = v.flags.join("；");
            let cells = [
                &r.referral_no,
                &r.case_no,
                &r.suspect,
                &r.offence,
                &r.state,
                &r.actor,
                &r.action,
                &r.limit,
                &r.basis,
                &r.due,
                &r.remaining,
                late,
                &flags,
            ];
            w.write_record(cells.iter().map(|c| neutralised(c).into_owned()))?;
        }
        w.flush()?;
    }
    Ok(out)
}

pub(super) async fn export(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Query(f): Query<Filter>,
) -> Response {
    let views = match audited_rows(&desk, &headers, &f, true, "export", "导出CSV").await {
        Ok((_, views)) => views,
        Err(refused) => return refused,
    };
    match referrals_csv(&views) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"referrals.csv\"",
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "CSV export failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

pub(super) async fn audit_page(State(desk): State<Desk>, headers: HeaderMap) -> Response {
    let Some(user) = user(&desk, &headers) else {
        return unauthorized(false);
    };
    if let Err(refused) = audited(&desk, &user, "list", None, "查看审计日志".into()).await {
        return refused;
    }
    let entries: Vec<_> = desk
        .audit
        .read()
        .expect("audit lock")
        .iter()
        .map(|e| {
            json!({
                "at": time(Some(e.at_ms)),
                "user": e.user,
                "role": role_label(e.role),
                "action": e.action,
                "referral_no": e.referral_no.as_deref().unwrap_or(""),
                "detail": e.detail,
            })
        })
        .collect();
    render(
        "audit.html",
        minijinja::context! { title => "审计日志", product => PRODUCT, page => "audit", user => user_view(&user), entries },
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_in_a_template_is_escaped_everywhere_it_lands() {
        let hostile = "YS-X</title><script>alert(1)</script>\"'<img src=x onerror=alert(2)>";
        let html = render(
            "message.html",
            minijinja::context! { title => hostile, product => PRODUCT, page => "message", message => hostile, link => None::<()>, error => true },
        )
        .0;
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("\"'<"), "{html}");
        assert!(html.contains("&lt;&#x2f;title&gt;"), "{html}");
        assert!(html.contains("&#x27;"), "{html}");
    }

    #[test]
    fn csv_quotes_cr_lf_comma_and_quote_and_neutralises_formulas() {
        let mut v: ReferralView = serde_json::from_value(json!({
            "referral_no": "YS-1\r=HYPERLINK(\"http://x\")",
            "case_no": "=1+1", "suspect": "a,b", "offence": "+cmd", "state": null,
            "state_label": "-2", "state_since": null, "next_actor": "@SUM(A1)",
            "next_action": "\tx", "legal_basis": "line\nbreak", "limit": null, "due_at": null,
            "remaining_ms": null, "late": false, "at_risk": false, "clock_error": null,
            "flags": [], "events": []
        }))
        .unwrap();
        v.late = true;
        let csv_bytes = referrals_csv(&[v]).unwrap();
        let text = String::from_utf8(csv_bytes.clone()).unwrap();
        // Read back by an RFC 4180 reader: one header, one row, same cells.
        let mut r = csv::ReaderBuilder::new().from_reader(&text.as_bytes()[3..]);
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1, "{text:?}");
        let row = &rows[0];
        assert_eq!(&row[0], "YS-1\r=HYPERLINK(\"http://x\")");
        assert_eq!(&row[1], "'=1+1");
        assert_eq!(&row[2], "a,b");
        assert_eq!(&row[3], "'+cmd");
        assert_eq!(&row[4], "'-2");
        assert_eq!(&row[5], "'@SUM(A1)");
        assert_eq!(&row[6], "'\tx");
        assert_eq!(&row[8], "line\nbreak");
        assert_eq!(&row[11], "是");
        // The CR inside the first cell is quoted, not a row break.
        assert!(text.contains("\"YS-1\r=HYPERLINK"), "{text:?}");
    }
}
