//! The desk's web page, in Chinese, served by the hub under `/desk`.
//!
//! - `/desk/login`: token login; officers (办案人员) may act, supervisors
//!   (监督人员) only read. Without a token every page and API answers 401.
//! - `/desk`: the referrals, with state, who acts next, due time and time
//!   left; late ones in red, at-risk ones in amber; filters by state, next
//!   actor and due date; refreshed live when events arrive.
//! - `/desk/referrals/{no}`: the full timeline with each event's source
//!   system and provenance; officers record notes, reminders sent to the
//!   police and acknowledgements, each an event on the bus.
//! - `/desk/export.csv`: the list as CSV. `/desk/audit`: who viewed and
//!   exported what.

use super::tracker::{RefState, ReferralView, remaining_label};
use super::{AuditEntry, Desk, DeskUser, Role};
use crate::calendar::local_text;
use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use futures::stream::Stream;
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;

const COOKIE: &str = "duijie_desk";

pub fn router(desk: Desk) -> Router {
    Router::new()
        .route("/desk/login", axum::routing::get(login_page).post(login))
        .route("/desk/logout", axum::routing::post(logout))
        .route("/desk", axum::routing::get(list_page))
        .route("/desk/referrals/{no}", axum::routing::get(detail_page))
        .route("/desk/api/referrals", axum::routing::get(list_api))
        .route("/desk/api/referrals/{no}", axum::routing::get(detail_api))
        .route("/desk/api/referrals/{no}/actions", axum::routing::post(act))
        .route("/desk/api/stream", axum::routing::get(stream))
        .route("/desk/export.csv", axum::routing::get(export))
        .route("/desk/audit", axum::routing::get(audit_page))
        .with_state(desk)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(local_text)
        .unwrap_or_else(|| "—".into())
}

/// The user a request is from: cookie or bearer token.
fn user(desk: &Desk, headers: &HeaderMap) -> Option<DeskUser> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| {
            c.split(';')
                .find_map(|kv| kv.trim().strip_prefix(&format!("{COOKIE}=")))
        })
        .map(str::to_owned);
    bearer
        .or(cookie)
        .and_then(|t| desk.config.users.get(&t).cloned())
}

fn unauthorized(api: bool) -> Response {
    if api {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "未登录：需要有效的令牌"})),
        )
            .into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Html(page(
                "未登录",
                "<p class=\"notice\">请先 <a href=\"/desk/login\">登录</a>。</p>",
            )),
        )
            .into_response()
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

fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{title} · 两法衔接工作台</title>
<style>
body{{font-family:"Noto Sans CJK SC","Microsoft YaHei","WenQuanYi Zen Hei",sans-serif;margin:0;background:#f4f5f7;color:#1f2933}}
header{{background:#1c3d6e;color:#fff;padding:10px 20px;display:flex;justify-content:space-between;align-items:center}}
header a{{color:#fff}} main{{padding:16px 20px}}
table{{border-collapse:collapse;width:100%;background:#fff}} th,td{{border:1px solid #d8dde3;padding:6px 8px;font-size:14px;text-align:left}}
th{{background:#e9edf2}} td:first-child{{white-space:nowrap}} tr.late td{{background:#fde2e1}} tr.late td.remaining{{color:#b42318;font-weight:bold}}
tr.at_risk td{{background:#fff4d6}} tr.closed td{{color:#7b8794}}
.badge{{display:inline-block;padding:1px 6px;border-radius:3px;font-size:12px}} .badge.late{{background:#b42318;color:#fff}}
.badge.at_risk{{background:#b7791f;color:#fff}} .badge.flag{{background:#6b46c1;color:#fff}}
form.filters{{margin-bottom:12px;display:flex;gap:10px;align-items:center;flex-wrap:wrap}}
ol.timeline li{{margin:8px 0;padding:8px;background:#fff;border-left:4px solid #1c3d6e}} ol.timeline li.flagged{{border-color:#6b46c1}}
.prov{{font-size:12px;color:#52606d}} .notice{{padding:10px;background:#fff}} .error{{color:#b42318}}
</style></head><body><header><strong>两法衔接工作台 · 宜昌高新区综合行政执法局</strong><span id="who"></span></header><main>{body}</main></body></html>"#
    )
}

fn nav(user: &DeskUser) -> String {
    format!(
        r#"<p>{name}（{role}） · <a href="/desk">移送案件</a> · <a href="/desk/audit">审计日志</a> · <a id="export" href="/desk/export.csv">导出CSV</a>
<form method="post" action="/desk/logout" style="display:inline"><button>退出</button></form></p>"#,
        name = esc(&user.name),
        role = role_label(user.role)
    )
}

async fn login_page() -> Html<String> {
    Html(page(
        "登录",
        r#"<h2>登录</h2><form method="post" action="/desk/login"><label>访问令牌 <input id="token" name="token" type="password" autocomplete="off"></label> <button id="login">登录</button></form>"#,
    ))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(desk): State<Desk>, Form(f): Form<LoginForm>) -> Response {
    if !desk.config.users.contains_key(&f.token) {
        return (
            StatusCode::UNAUTHORIZED,
            Html(page(
                "登录失败",
                "<p class=\"error\">令牌无效。</p><p><a href=\"/desk/login\">重新登录</a></p>",
            )),
        )
            .into_response();
    }
    (
        [(
            header::SET_COOKIE,
            format!(
                "{COOKIE}={}; Path=/desk; HttpOnly; SameSite=Strict",
                f.token
            ),
        )],
        Redirect::to("/desk"),
    )
        .into_response()
}

async fn logout() -> Response {
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
struct Filter {
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
    let views = desk.views.read().expect("views lock");
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

fn table(views: &[ReferralView]) -> String {
    let mut html = String::from(
        "<table id=\"referrals\"><thead><tr><th>移送编号</th><th>案件</th><th>当事人</th><th>涉嫌罪名</th><th>当前状态</th><th>下一步由谁办理</th><th>办理事项</th><th>法定期限</th><th>期限至</th><th>剩余时间</th><th>标记</th></tr></thead><tbody>",
    );
    for v in views {
        let mut marks = String::new();
        if v.late {
            marks.push_str("<span class=\"badge late\">已逾期</span> ");
        } else if v.at_risk {
            marks.push_str("<span class=\"badge at_risk\">临期</span> ");
        }
        if !v.flags.is_empty() {
            marks.push_str(&format!(
                "<span class=\"badge flag\" title=\"{}\">异常事件{}</span>",
                esc(&v.flags.join("；")),
                v.flags.len()
            ));
        }
        if let Some(e) = &v.clock_error {
            marks.push_str(&format!("<span class=\"error\">{}</span>", esc(e)));
        }
        html.push_str(&format!(
            "<tr class=\"{class}\" data-referral=\"{no}\"><td><a href=\"/desk/referrals/{no}\">{no}</a></td><td>{case}</td><td>{suspect}</td><td>{offence}</td><td>{state}</td><td>{actor}</td><td>{action}</td><td>{limit}</td><td>{due}</td><td class=\"remaining\">{remaining}</td><td>{marks}</td></tr>",
            class = row_class(v),
            no = esc(&v.referral_no),
            case = esc(v.case_no.as_deref().unwrap_or("")),
            suspect = esc(v.suspect.as_deref().unwrap_or("")),
            offence = esc(v.offence.as_deref().unwrap_or("")),
            state = esc(&v.state_label),
            actor = esc(&v.next_actor),
            action = esc(&v.next_action),
            limit = esc(v.limit.as_deref().unwrap_or("—")),
            due = time(v.due_at),
            remaining = v.remaining_ms.map(remaining_label).unwrap_or_else(|| "—".into()),
        ));
    }
    html.push_str("</tbody></table>");
    html
}

async fn list_page(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Query(f): Query<Filter>,
) -> Response {
    let Some(user) = user(&desk, &headers) else {
        return unauthorized(false);
    };
    let views = rows(&desk, &f);
    let late = views.iter().filter(|v| v.late).count();
    let states: Vec<(&str, &str)> = [
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
    ]
    .to_vec();
    let options: String = states
        .iter()
        .map(|(k, l)| {
            format!(
                "<option value=\"{k}\"{}>{l}</option>",
                if f.state.as_deref() == Some(k) {
                    " selected"
                } else {
                    ""
                }
            )
        })
        .collect();
    let actors: String = ["执法局", "执法局负责人", "公安机关", "检察院"]
        .iter()
        .map(|a| {
            format!(
                "<option{}>{a}</option>",
                if f.actor.as_deref() == Some(a) {
                    " selected"
                } else {
                    ""
                }
            )
        })
        .collect();
    let body = format!(
        r#"{nav}<h2>移送涉嫌犯罪案件（共{n}件，逾期<span id="late-count">{late}</span>件）</h2>
<form class="filters" method="get" action="/desk">
<label>状态 <select name="state"><option value="">全部</option>{options}</select></label>
<label>下一步办理单位 <select name="actor"><option value="">全部</option>{actors}</select></label>
<label>涉及单位 <input type="text" name="org" value="{org}" placeholder="如：高新分局"></label>
<label>期限截至 <input type="date" name="due_before" value="{due}"></label>
<label><input type="checkbox" name="late" value="1"{late_checked}> 仅看逾期</label>
<button>筛选</button></form>
<div id="table">{table}</div>
<p class="prov">页面在有新事件时自动刷新。期限按国务院办公厅节假日安排（含调休）计算。</p>
<script>
const es = new EventSource('/desk/api/stream');
es.onmessage = () => fetch(location.pathname + location.search, {{credentials: 'same-origin'}})
  .then(r => r.text()).then(t => {{
    const doc = new DOMParser().parseFromString(t, 'text/html');
    document.getElementById('table').innerHTML = doc.getElementById('table').innerHTML;
    document.getElementById('late-count').textContent = doc.getElementById('late-count').textContent;
  }});
</script>"#,
        nav = nav(&user),
        n = views.len(),
        due = esc(f.due_before.as_deref().unwrap_or("")),
        org = esc(f.org.as_deref().unwrap_or("")),
        late_checked = if f.late.as_deref() == Some("1") {
            " checked"
        } else {
            ""
        },
        table = table(&views),
    );
    Html(page("移送案件", &body)).into_response()
}

async fn list_api(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Query(f): Query<Filter>,
) -> Response {
    if user(&desk, &headers).is_none() {
        return unauthorized(true);
    }
    let views: Vec<serde_json::Value> = rows(&desk, &f)
        .into_iter()
        .map(|mut v| {
            v.events.clear();
            serde_json::to_value(v).unwrap_or_default()
        })
        .collect();
    axum::Json(views).into_response()
}

/// Records a view; the page is not shown when the audit log cannot be
/// written.
async fn audit_view(desk: &Desk, user: &DeskUser, no: &str) -> Result<(), Response> {
    let entry = AuditEntry {
        at_ms: chrono::Utc::now().timestamp_millis(),
        user: user.name.clone(),
        role: user.role,
        action: "view".into(),
        referral_no: Some(no.to_owned()),
        detail: "查看移送案件".into(),
    };
    desk.audit(entry).await.map_err(|e| audit_failed(&e))
}

fn audit_failed(e: &str) -> Response {
    tracing::error!(error = %e, "audit entry not written; request refused");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"message": "审计日志暂时无法写入，请稍后再试"})),
    )
        .into_response()
}

async fn detail_api(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(no): Path<String>,
) -> Response {
    let Some(user) = user(&desk, &headers) else {
        return unauthorized(true);
    };
    let view = desk.views.read().expect("views lock").get(&no).cloned();
    match view {
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "无此移送案件"})),
        )
            .into_response(),
        Some(v) => match audit_view(&desk, &user, &no).await {
            Ok(()) => axum::Json(v).into_response(),
            Err(refused) => refused,
        },
    }
}

async fn detail_page(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(no): Path<String>,
) -> Response {
    let Some(user) = user(&desk, &headers) else {
        return unauthorized(false);
    };
    let Some(v) = desk.views.read().expect("views lock").get(&no).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            Html(page("未找到", "<p>无此移送案件。</p>")),
        )
            .into_response();
    };
    if let Err(refused) = audit_view(&desk, &user, &no).await {
        return refused;
    }
    let mut timeline = String::from("<ol id=\"timeline\" class=\"timeline\">");
    for e in &v.events {
        let mut detail = Vec::new();
        for (label, value) in [
            ("单位", &e.actor_org),
            ("文书", &e.document_no),
            ("理由/内容", &e.reason),
            ("备注", &e.notes),
        ] {
            if let Some(value) = value {
                detail.push(format!("{label}：{}", esc(value)));
            }
        }
        timeline.push_str(&format!(
            "<li class=\"{cls}\" data-event=\"{id}\"><strong>{at}</strong> {label} <span class=\"prov\">（来源：{system_label} {system}）</span>{flag}<div>{detail}</div><div class=\"prov\">出处：{topic}[{partition}]@{offset}，{connector}/{pipeline}，{origin}，采集于{fetched}，原文摘要 SHA-256 {sha}</div></li>",
            cls = if e.flagged.is_some() { "flagged" } else { "" },
            id = esc(&e.id),
            at = time(Some(e.occurred_at)),
            label = esc(&e.label),
            system = esc(&e.source_system),
            system_label = system_label(&e.source_system),
            flag = e.flagged.as_deref().map(|f| format!(" <span class=\"badge flag\">{}</span>", esc(f))).unwrap_or_default(),
            detail = detail.join("；"),
            topic = esc(&e.source.topic),
            partition = e.source.partition,
            offset = e.source.offset,
            connector = esc(&e.source.connector),
            pipeline = esc(&e.source.pipeline),
            origin = esc(&e.source.origin),
            fetched = esc(&e.source.fetched_at),
            sha = esc(&e.source.payload_sha256.chars().take(16).collect::<String>()),
        ));
    }
    timeline.push_str("</ol>");
    let actions = if user.role == Role::Officer {
        format!(
            r#"<h3>办理</h3><form id="action-form" onsubmit="return act(event)">
<select id="action"><option value="note">记录备注</option><option value="reminder">已向公安机关催办</option><option value="acknowledge">确认预警</option></select>
<input id="text" size="50" placeholder="说明"> <button id="submit-action">提交</button> <span id="action-result"></span></form>
<script>
function act(ev) {{ ev.preventDefault();
  fetch('/desk/api/referrals/{no}/actions', {{method:'POST', credentials:'same-origin', headers:{{'Content-Type':'application/json'}},
    body: JSON.stringify({{action: document.getElementById('action').value, text: document.getElementById('text').value}})}})
  .then(r => {{ document.getElementById('action-result').textContent = r.ok ? '已提交，正在写入时间线…' : '提交失败'; }});
  return false; }}
const es = new EventSource('/desk/api/stream'); es.onmessage = () => location.reload();
</script>"#,
            no = esc(&no)
        )
    } else {
        "<p class=\"prov\">监督人员为只读权限。</p>".into()
    };
    let body = format!(
        r#"{nav}<h2>移送案件 {no}</h2>
<p>案件：{case}　当事人：{suspect}　涉嫌罪名：{offence}</p>
<p class="{cls}">当前状态：<strong id="state">{state}</strong>　下一步：{actor}{action}　法定期限：{limit}（{basis}）　期限至：<strong id="due">{due}</strong>　{remaining}</p>
{flags}{late_steps}<h3>时间线</h3>{timeline}{actions}"#,
        nav = nav(&user),
        no = esc(&v.referral_no),
        case = esc(v.case_no.as_deref().unwrap_or("")),
        suspect = esc(v.suspect.as_deref().unwrap_or("")),
        offence = esc(v.offence.as_deref().unwrap_or("")),
        cls = row_class(&v),
        state = esc(&v.state_label),
        actor = esc(&v.next_actor),
        action = esc(&v.next_action),
        limit = esc(v.limit.as_deref().unwrap_or("—")),
        basis = esc(&v.legal_basis),
        due = time(v.due_at),
        remaining = v.remaining_ms.map(remaining_label).unwrap_or_default(),
        flags = if v.flags.is_empty() {
            String::new()
        } else {
            format!(
                "<p class=\"error\">异常事件：{}</p>",
                esc(&v.flags.join("；"))
            )
        },
        late_steps = if v.late_steps.is_empty() {
            String::new()
        } else {
            format!(
                "<p id=\"late-steps\" class=\"error\">逾期办理的环节：{}</p>",
                esc(&v.late_steps.join("；"))
            )
        },
    );
    Html(page(&v.referral_no, &body)).into_response()
}

#[derive(Debug, Deserialize)]
struct ActionBody {
    action: String,
    #[serde(default)]
    text: Option<String>,
}

async fn act(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(no): Path<String>,
    axum::Json(body): axum::Json<ActionBody>,
) -> Response {
    let Some(user) = user(&desk, &headers) else {
        return unauthorized(true);
    };
    if user.role != Role::Officer {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"message": "监督人员为只读权限，不能办理"})),
        )
            .into_response();
    }
    if !desk.views.read().expect("views lock").contains_key(&no) {
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
    match desk
        .act(&no, &body.action, body.text.as_deref(), &user.name)
        .await
    {
        Ok(id) => {
            let entry = AuditEntry {
                at_ms: chrono::Utc::now().timestamp_millis(),
                user: user.name.clone(),
                role: user.role,
                action: "action".into(),
                referral_no: Some(no.clone()),
                detail: format!("{}：{}", body.action, body.text.unwrap_or_default()),
            };
            let _ = desk.audit(entry).await;
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({"status": "accepted", "id": id})),
            )
                .into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, axum::Json(json!({"message": e}))).into_response(),
    }
}

async fn stream(State(desk): State<Desk>, headers: HeaderMap) -> Response {
    if user(&desk, &headers).is_none() {
        return unauthorized(true);
    }
    let rx = desk.changes.subscribe();
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

/// One CSV cell; text a spreadsheet would run as a formula is quoted
/// with a leading apostrophe.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains(',') || s.contains('"') || s.contains('\n') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

async fn export(State(desk): State<Desk>, headers: HeaderMap, Query(f): Query<Filter>) -> Response {
    let Some(user) = user(&desk, &headers) else {
        return unauthorized(true);
    };
    let views = rows(&desk, &f);
    // A BOM so that spreadsheet programs read the Chinese as UTF-8.
    let mut out = String::from(
        "\u{FEFF}移送编号,案件编号,当事人,涉嫌罪名,当前状态,下一步办理单位,办理事项,法定期限,期限至,剩余时间,是否逾期,异常事件\r\n",
    );
    for v in &views {
        let cells = [
            v.referral_no.clone(),
            v.case_no.clone().unwrap_or_default(),
            v.suspect.clone().unwrap_or_default(),
            v.offence.clone().unwrap_or_default(),
            v.state_label.clone(),
            v.next_actor.clone(),
            v.next_action.clone(),
            v.limit.clone().unwrap_or_default(),
            time(v.due_at),
            v.remaining_ms.map(remaining_label).unwrap_or_default(),
            if v.late { "是".into() } else { "否".into() },
            v.flags.join("；"),
        ];
        out.push_str(
            &cells
                .iter()
                .map(|c| csv_field(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    let entry = AuditEntry {
        at_ms: chrono::Utc::now().timestamp_millis(),
        user: user.name.clone(),
        role: user.role,
        action: "export".into(),
        referral_no: None,
        detail: format!("导出CSV（{}件）", views.len()),
    };
    if let Err(e) = desk.audit(entry).await {
        return audit_failed(&e);
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"referrals.csv\"",
            ),
        ],
        out,
    )
        .into_response()
}

async fn audit_page(State(desk): State<Desk>, headers: HeaderMap) -> Response {
    let Some(user) = user(&desk, &headers) else {
        return unauthorized(false);
    };
    let mut html = format!(
        "{}<h2>审计日志</h2><table id=\"audit\"><thead><tr><th>时间</th><th>用户</th><th>角色</th><th>操作</th><th>移送编号</th><th>说明</th></tr></thead><tbody>",
        nav(&user)
    );
    for e in desk.audit.read().expect("audit lock").iter() {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time(Some(e.at_ms)),
            esc(&e.user),
            role_label(e.role),
            esc(&e.action),
            esc(e.referral_no.as_deref().unwrap_or("")),
            esc(&e.detail)
        ));
    }
    html.push_str("</tbody></table>");
    Html(page("审计日志", &html)).into_response()
}
