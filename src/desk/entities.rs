//! The desk's pages of the market-entity credit library (市场主体信用信息库),
//! in Chinese:
//!
//! - `/desk/entities?q=`: search by name or code; every entity with its
//!   systems, records, open items and whether it is restricted.
//! - `/desk/entities/{key}`: the entity profile (主体画像) — names and codes,
//!   every linked record across systems on one timeline with its source
//!   system and provenance, open items, restrictions with their bases, and
//!   charts (records per system per month; open versus closed).
//! - `/desk/entities/proposals`: name-only records and the entities they
//!   may be, with a confidence; officers confirm or reject, each decision
//!   an event on the links topic.
//! - `/desk/api/entities`, `/desk/api/entities/{key}`: the same as JSON;
//!   `POST /desk/api/entities/links`: a decision.
//!
//! Every view and act is audited first, like the referral desk.

use super::web::{
    PRODUCT, audited, message_page, refuse, render, text_too_long, time, unauthorized, user,
    user_view,
};
use super::{Desk, DeskUser, Role};
use crate::entity::api::Library;
use crate::entity::index::{Change, LinkDecision};
use crate::entity::{IndexedRecord, Kind};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

const PAGE: usize = 50;

fn not_configured(api: bool) -> Response {
    if api {
        return refuse(StatusCode::NOT_FOUND, "未配置主体信用信息库");
    }
    message_page(
        StatusCode::NOT_FOUND,
        "未配置",
        "本部署未配置主体信用信息库（[entities]）。",
        None,
    )
}

/// Who asks, and the library; `Err` is the answer otherwise.
fn who(
    desk: &Desk,
    headers: &HeaderMap,
    api: bool,
) -> Result<(DeskUser, Arc<Library>), Box<Response>> {
    let Some(user) = user(desk, headers) else {
        return Err(Box::new(unauthorized(api)));
    };
    let Some(library) = desk.entities.clone() else {
        return Err(Box::new(not_configured(api)));
    };
    Ok((user, library))
}

/// Runs a read of the index off the async threads.
async fn read<T: Send + 'static>(
    library: &Arc<Library>,
    f: impl FnOnce(&Library) -> crate::error::Result<T> + Send + 'static,
) -> Result<T, Response> {
    let l = library.clone();
    match tokio::task::spawn_blocking(move || f(&l)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "entity index read failed");
            Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "主体信用信息库暂时无法读取",
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "entity index read panicked");
            Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, "读取失败"))
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    page: Option<usize>,
}

fn query_text(q: &ListQuery) -> Option<String> {
    q.q.as_deref()
        .map(|s| s.trim().chars().take(80).collect::<String>())
        .filter(|s| !s.is_empty())
}

async fn listing(
    desk: &Desk,
    headers: &HeaderMap,
    q: &ListQuery,
    api: bool,
) -> Result<(DeskUser, Arc<Library>, usize, Vec<serde_json::Value>), Response> {
    let (user, library) = who(desk, headers, api).map_err(|r| *r)?;
    let text = query_text(q);
    let page = q.page.unwrap_or(1).max(1);
    let t = text.clone();
    let (total, rows) = read(&library, move |l| {
        l.list_json(t.as_deref(), (page - 1) * PAGE, PAGE)
    })
    .await?;
    audited(
        desk,
        &user,
        "list",
        None,
        match &text {
            Some(t) => format!("检索市场主体“{t}”（{total}个）"),
            None => format!("查看市场主体列表（{total}个）"),
        },
    )
    .await?;
    Ok((user, library, total, rows))
}

pub async fn list_page(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let (user, library, total, rows) = match listing(&desk, &headers, &q, false).await {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let page = q.page.unwrap_or(1).max(1);
    let pages = total.div_ceil(PAGE).max(1);
    render(
        "entities.html",
        minijinja::context! {
            title => "市场主体信用信息库", product => PRODUCT, page => "entities",
            user => user_view(&user), rows, total, q => query_text(&q).unwrap_or_default(),
            current => page, pages,
            prev => (page > 1).then(|| page - 1), next => (page < pages).then(|| page + 1),
            ready => library.stats.ready.load(Ordering::Acquire),
            multi => library.stats.multi_system.load(Ordering::Relaxed),
        },
    )
    .into_response()
}

pub async fn list_api(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    match listing(&desk, &headers, &q, true).await {
        Ok((_, library, total, rows)) => axum::Json(json!({
            "total": total, "entities": rows, "page_size": PAGE,
            // Until the topics' history is read, the list is partial.
            "ready": library.stats.ready.load(Ordering::Acquire),
        }))
        .into_response(),
        Err(refused) => refused,
    }
}

#[derive(Debug, Serialize)]
struct Row {
    at: String,
    system: String,
    kind: &'static str,
    title: String,
    status: String,
    open: bool,
    name: String,
    provenance: String,
    linked_by: &'static str,
}

#[derive(Debug, Serialize)]
struct Bar {
    x: i64,
    width: i64,
    y: i64,
    height: i64,
    class: String,
    label: String,
}

/// Records per system per month over the last twelve months, as SVG bars
/// (computed here; the template only places them).
fn monthly_bars(
    records: &[IndexedRecord],
    systems: &[String],
    now: DateTime<Utc>,
) -> (Vec<Bar>, Vec<String>) {
    let local = now.with_timezone(&chrono_tz::Asia::Shanghai);
    let months: Vec<(i32, u32)> = (0..12)
        .rev()
        .map(|back| {
            let m = local.year() * 12 + local.month0() as i32 - back;
            (m.div_euclid(12), m.rem_euclid(12) as u32 + 1)
        })
        .collect();
    let mut counts: BTreeMap<((i32, u32), usize), i64> = BTreeMap::new();
    for r in records {
        let Some(t) = r.at_ms.and_then(DateTime::from_timestamp_millis) else {
            continue;
        };
        let t = t.with_timezone(&chrono_tz::Asia::Shanghai);
        let s = systems
            .iter()
            .position(|x| *x == r.source_system)
            .unwrap_or(0);
        *counts.entry(((t.year(), t.month()), s)).or_default() += 1;
    }
    let max = counts.values().copied().max().unwrap_or(1).max(1);
    let (width, height) = (40i64, 120i64);
    let bar_w = (width - 4) / systems.len().max(1) as i64;
    let mut bars = Vec::new();
    for (i, m) in months.iter().enumerate() {
        for (s, system) in systems.iter().enumerate() {
            let n = counts.get(&(*m, s)).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let h = (n * height / max).max(2);
            bars.push(Bar {
                x: i as i64 * width + s as i64 * bar_w + 2,
                width: bar_w.max(1),
                y: height - h,
                height: h,
                class: format!("s{}", s % 8),
                label: format!("{}-{:02} {system}：{n}条", m.0, m.1),
            });
        }
    }
    let labels = months
        .iter()
        .map(|(y, m)| format!("{}/{m}", y % 100))
        .collect();
    (bars, labels)
}

pub async fn entity_page(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let (user, library) = match who(&desk, &headers, false) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    let k = Library::key_of(&key);
    let profile = match read(&library, move |l| Ok(l.index.profile(&k)?)).await {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let Some((e, records)) = profile else {
        return message_page(
            StatusCode::NOT_FOUND,
            "未找到",
            "信用信息库中无此主体。",
            Some(("/desk/entities", "返回主体列表")),
        );
    };
    if let Err(refused) = audited(
        &desk,
        &user,
        "view",
        None,
        format!("查看市场主体画像{}（{}）", e.key, e.name()),
    )
    .await
    {
        return refused;
    }
    let now = library.now();
    let restrictions = library.restrictions(&records, now);
    let systems: Vec<String> = e.systems.keys().cloned().collect();
    let (bars, months) = monthly_bars(&records, &systems, now);
    let open_items: Vec<_> = records
        .iter()
        .filter_map(|r| {
            r.open_item(now).map(|i| {
                json!({"label": i.label, "due": i.due_ms.map(|t| time(Some(t))), "overdue": i.overdue,
                       "basis": i.basis, "record": r.title, "system": r.source_system})
            })
        })
        .collect();
    let open = records.iter().filter(|r| r.is_open(now)).count();
    let closed = records.len() - open;
    let rows: Vec<Row> = records
        .iter()
        .map(|r| Row {
            at: time(r.at_ms),
            system: r.source_system.clone(),
            kind: r.kind.label(),
            title: r.title.clone(),
            status: r.status.clone(),
            open: r.is_open(now),
            name: r.party_name.clone().unwrap_or_default(),
            provenance: format!(
                "{}[{}]@{} · {} · {} v{} · {}",
                r.position.topic,
                r.position.partition,
                r.position.offset,
                r.position.pipeline,
                r.position.mapping,
                r.position.mapping_version,
                r.position.origin
            ),
            linked_by: match r.link {
                crate::entity::Link::Code(_) => "统一社会信用代码",
                crate::entity::Link::Person(_) => "身份证件（假名化）",
                crate::entity::Link::NameOnly => "人工确认",
            },
        })
        .collect();
    let total = records.len().max(1);
    let ctx = minijinja::context! {
        title => e.name(), product => PRODUCT, page => "entity",
        user => user_view(&user), key => e.key.clone(), name => e.name(),
        names => e.names.keys().cloned().collect::<Vec<_>>(),
        code => e.credit_code.clone(),
        party_type => e.party_type.clone(),
        addresses => e.addresses.keys().cloned().collect::<Vec<_>>(),
        systems => e.systems.iter().enumerate().map(|(i, (s, n))| json!({"name": s, "records": n, "class": format!("s{}", i % 8)})).collect::<Vec<_>>(),
        restricted => !restrictions.is_empty(),
        restrictions => restrictions.iter().map(|r| json!({"reason": r.reason, "basis": r.basis, "until": r.until.clone().or(r.until_note.clone())})).collect::<Vec<_>>(),
        open_items, rows, bars, months,
        open, closed, open_width => open * 400 / total, closed_width => closed * 400 / total,
        listed => records.iter().any(|r| r.kind == Kind::Listing && r.open_item(now).is_some()),
    };
    // The entity's own data is shown to officers; a full ID number that a
    // source put in a free-text field is masked all the same.
    let mut v = serde_json::to_value(&ctx).unwrap_or_default();
    crate::personal::scrub(&mut v, &library.policy.mask);
    render("entity.html", minijinja::Value::from_serialize(&v)).into_response()
}

pub async fn entity_api(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let (user, library) = match who(&desk, &headers, true) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    let k = Library::key_of(&key);
    let profile = match read(&library, move |l| l.profile_json(&k)).await {
        Ok(p) => p,
        Err(refused) => return refused,
    };
    let Some(profile) = profile else {
        return refuse(StatusCode::NOT_FOUND, "无此主体");
    };
    if let Err(refused) = audited(
        &desk,
        &user,
        "view",
        None,
        format!("接口读取市场主体画像{}", Library::key_of(&key)),
    )
    .await
    {
        return refused;
    }
    axum::Json(profile).into_response()
}

/// Who asks, the library and the proposals, audited first; `Err` is the
/// answer otherwise.
async fn audited_proposals(
    desk: &Desk,
    headers: &HeaderMap,
    api: bool,
) -> Result<
    (
        DeskUser,
        Arc<Library>,
        usize,
        Vec<crate::entity::index::Proposal>,
    ),
    Response,
> {
    let (user, library) = who(desk, headers, api).map_err(|r| *r)?;
    let (total, proposals) = read(&library, |l| Ok(l.index.proposals(200)?)).await?;
    let what = if api { "接口读取" } else { "查看" };
    audited(
        desk,
        &user,
        "list",
        None,
        format!("{what}待确认的主体关联（{total}条）"),
    )
    .await?;
    Ok((user, library, total, proposals))
}

pub async fn proposals_page(State(desk): State<Desk>, headers: HeaderMap) -> Response {
    let (user, library, total, proposals) = match audited_proposals(&desk, &headers, false).await {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let rows: Vec<_> = proposals
        .iter()
        .map(|p| {
            json!({
                "reference": p.record.reference, "name": p.record.party_name, "address": p.record.address,
                "system": p.record.source_system, "kind": p.record.kind.label(), "title": p.record.title,
                "at": time(p.record.at_ms), "candidates": p.candidates, "rejected": p.rejected.len(),
            })
        })
        .collect();
    render(
        "proposals.html",
        minijinja::context! {
            title => "待确认的主体关联", product => PRODUCT, page => "entity-proposals",
            user => user_view(&user), rows, total,
            officer => user.role == Role::Officer,
            threshold => library.config.propose_from,
        },
    )
    .into_response()
}

pub async fn proposals_api(State(desk): State<Desk>, headers: HeaderMap) -> Response {
    let (_, library, total, proposals) = match audited_proposals(&desk, &headers, true).await {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let mut v = json!({"total": total, "proposals": proposals});
    crate::personal::scrub(&mut v, &library.policy.mask);
    axum::Json(v).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    /// The name-only record (`topic|key`).
    reference: String,
    entity: String,
    /// `confirm` or `reject`.
    action: String,
    #[serde(default)]
    note: Option<String>,
}

/// Long because an officer's link decision (session, role, form check,
/// audit first, then the event), each step refusing with its own answer.
pub async fn decide(
    State(desk): State<Desk>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<LinkBody>,
) -> Response {
    let (user, library) = match who(&desk, &headers, true) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    if user.role != Role::Officer {
        return refuse(StatusCode::FORBIDDEN, "监督人员为只读权限，不能办理");
    }
    if !library.stats.ready.load(Ordering::Acquire) {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "主体信用信息库正在加载，请稍后再试",
        );
    }
    let confirmed = match body.action.as_str() {
        "confirm" => true,
        "reject" => false,
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "办理事项应为确认（confirm）或否定（reject）",
            );
        }
    };
    if let Some(refused) = text_too_long(body.note.as_deref()) {
        return refused;
    }
    let (reference, entity) = (body.reference.clone(), body.entity.clone());
    let found = match read(&library, move |l| {
        let record = l.index.record(&reference)?;
        let e = l.index.entity(&entity)?;
        Ok((record, e))
    })
    .await
    {
        Ok(f) => f,
        Err(refused) => return refused,
    };
    let (Some((record, linked)), Some(e)) = found else {
        return refuse(StatusCode::NOT_FOUND, "无此记录或主体");
    };
    if record.own_key().is_some() {
        return refuse(
            StatusCode::CONFLICT,
            "该记录已按统一社会信用代码或身份证件关联，无需人工确认",
        );
    }
    if confirmed && linked.as_deref() == Some(e.key.as_str()) {
        return refuse(StatusCode::CONFLICT, "该记录已关联到此主体");
    }
    let confidence = crate::entity::confidence_with(&record, &e);
    let now = desk.now().timestamp_millis();
    let decision = LinkDecision {
        id: format!("{}|{}|{now}", body.reference, e.key),
        reference: body.reference.clone(),
        entity: e.key.clone(),
        confirmed,
        confidence: (confidence * 100.0).round() / 100.0,
        by: user.name.clone(),
        at_ms: now,
        note: body.note.filter(|n| !n.trim().is_empty()),
    };
    if let Err(refused) = audited(
        &desk,
        &user,
        "action",
        None,
        format!(
            "{}记录{}与主体{}（{}）的关联",
            if confirmed { "确认" } else { "否定" },
            body.reference,
            e.key,
            e.name()
        ),
    )
    .await
    {
        return refused;
    }
    let payload = serde_json::to_vec(&decision).expect("decisions serialize");
    // An officer's link decision: no record's trace.
    if let Err(err) = desk
        .send(
            &library.config.links_topic,
            &decision.reference,
            &payload,
            None,
        )
        .await
    {
        tracing::error!(error = %err, "link decision not written");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "办理事项未能写入，请稍后再试",
        );
    }
    // Shown at once; the keeper reads the same event from the topic.
    let l = library.clone();
    let d = decision.clone();
    let _ = tokio::task::spawn_blocking(move || l.index.apply(&[Change::Decision(d)], &[], false))
        .await;
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({"status": "accepted", "id": decision.id})),
    )
        .into_response()
}
