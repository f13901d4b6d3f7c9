//! Penalty decisions held for their credit severity class (待定级), under
//! `/desk/credit`.
//!
//! 《信用修复管理办法》 (国家发展改革委令2025年第36号) publishes a decision by
//! its class (轻微, 一般, 严重); whether a fine is 较大 or 巨额 is the sector's
//! standard, not the hub's. A decision whose class neither the case system
//! nor a rule of the credit policy gives is held by the credit push
//! ([`crate::credit::Publication::Held`]): its receipt says `held`, the
//! publication clock keeps running and alerts. This page lists them, with
//! the reason and the publication deadline; an officer sets the class with
//! a reason. The act is audited first, then the decision is written again
//! to its topic, the same version with `credit_severity`,
//! `credit_severity_by` and `credit_severity_reason`, under the desk's
//! provenance: the credit push publishes it (same idempotency key: the
//! platform never had it), the clock sees the receipt, the public window
//! shows it.
//!
//! - `/desk/credit`: the held decisions.
//! - `/desk/api/credit`: the same as JSON.
//! - `POST /desk/api/credit/{id}/class` `{"severity": "GENERAL", "reason": "…"}`.

use super::web::{
    PRODUCT, audited, message_page, officer, refuse, render, text_too_long, time, unauthorized,
    user, user_view,
};
use super::{Desk, Role};
use crate::bus::Bus;
use crate::bus::follow::Follow;
use crate::calendar::{Calendar, Limit};
use crate::credit::Severity;
use crate::delivery::{Outcome, Receipt};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;

/// What the board needs of the deployment.
#[derive(Debug, Clone)]
pub struct CreditDesk {
    /// The canonical penalty decisions.
    pub decisions_topic: String,
    /// The receipts topic, and the credit push whose receipts say `held`.
    pub receipts_topic: String,
    pub delivery: String,
    /// The publication limit (双公示: 7 working days), shown beside each.
    pub publish_within: Limit,
}

/// One decision version the credit push holds.
#[derive(Debug, Clone, Serialize)]
pub struct Held {
    pub id: String,
    pub version: i64,
    pub decision_no: String,
    pub party: String,
    pub categories: Vec<String>,
    pub fine_yuan: Option<String>,
    pub decided_at: Option<i64>,
    pub reason: String,
    /// The publication deadline, when the calendar has its year.
    pub due_at: Option<i64>,
}

/// The decisions not yet settled at the credit platform, and the held ones.
#[derive(Debug)]
pub struct CreditBoard {
    pub config: CreditDesk,
    calendar: Arc<Calendar>,
    /// Latest version of each decision whose push has not settled it:
    /// dropped once a receipt says delivered or not sent, so the board
    /// holds what is pending, not the whole history.
    pending: RwLock<BTreeMap<String, Value>>,
    held: RwLock<BTreeMap<String, (i64, String)>>,
    /// The `traceparent` of each pending decision's record: an officer's
    /// class continues its trace.
    traces: RwLock<BTreeMap<String, String>>,
    ready: AtomicBool,
}

fn version_of(d: &Value) -> i64 {
    d.get("version").and_then(Value::as_i64).unwrap_or(1)
}

impl CreditBoard {
    pub fn new(config: CreditDesk, calendar: Arc<Calendar>) -> Self {
        Self {
            config,
            calendar,
            pending: RwLock::default(),
            held: RwLock::default(),
            traces: RwLock::default(),
            ready: AtomicBool::new(false),
        }
    }

    fn observe_decision(&self, d: Value, trace: Option<String>) {
        let Some(id) = d.get("id").and_then(Value::as_str).map(str::to_owned) else {
            return;
        };
        if let Some(t) = trace {
            self.traces
                .write()
                .expect("board lock")
                .insert(id.clone(), t);
        }
        let mut pending = self.pending.write().expect("board lock");
        let newer = pending.get(&id).is_none_or(|old| {
            version_of(&d) > version_of(old)
                // The same version again: a class given since counts.
                || (version_of(&d) == version_of(old) && d.get("credit_severity") != Some(&Value::Null))
        });
        if newer {
            // A new version supersedes what was held of an older one.
            let mut held = self.held.write().expect("board lock");
            if held.get(&id).is_some_and(|(v, _)| *v < version_of(&d)) {
                held.remove(&id);
            }
            pending.insert(id, d);
        }
    }

    fn observe_receipt(&self, r: Receipt) {
        if r.delivery != self.config.delivery {
            return;
        }
        let version = r.version();
        let mut held = self.held.write().expect("board lock");
        match r.outcome {
            Outcome::Held => {
                held.insert(
                    r.record_id,
                    (version, r.reason.unwrap_or_else(|| "待定级".into())),
                );
            }
            Outcome::Delivered | Outcome::NotSent | Outcome::Rejected | Outcome::Failed => {
                if held.get(&r.record_id).is_some_and(|(v, _)| *v <= version) {
                    held.remove(&r.record_id);
                }
                let mut pending = self.pending.write().expect("board lock");
                if pending
                    .get(&r.record_id)
                    .is_some_and(|d| version_of(d) <= version)
                {
                    pending.remove(&r.record_id);
                }
            }
        }
    }

    /// The held decisions, oldest decision first.
    pub fn held(&self) -> Vec<Held> {
        let held = self.held.read().expect("board lock");
        let pending = self.pending.read().expect("board lock");
        let mut out: Vec<Held> = held
            .iter()
            .filter_map(|(id, (version, reason))| {
                let d = pending.get(id).filter(|d| version_of(d) == *version)?;
                let s = |p: &str| d.pointer(p).and_then(Value::as_str).map(str::to_owned);
                let decided_at = d.get("decided_at").and_then(Value::as_i64);
                let due_at = decided_at
                    .and_then(chrono::DateTime::from_timestamp_millis)
                    .and_then(|t| self.calendar.due(t, self.config.publish_within).ok())
                    .map(|t| t.timestamp_millis());
                Some(Held {
                    id: id.clone(),
                    version: *version,
                    decision_no: s("/decision_no").unwrap_or_else(|| id.clone()),
                    party: s("/party/name").unwrap_or_default(),
                    categories: crate::credit::categories_of(d),
                    fine_yuan: s("/fine_yuan"),
                    decided_at,
                    reason: reason.clone(),
                    due_at,
                })
            })
            .collect();
        out.sort_by_key(|h| (h.decided_at, h.id.clone()));
        out
    }

    /// The held decision `id` as the topic has it.
    fn decision(&self, id: &str) -> Option<Value> {
        let held = self.held.read().expect("board lock");
        let (version, _) = held.get(id)?;
        let pending = self.pending.read().expect("board lock");
        pending
            .get(id)
            .filter(|d| version_of(d) == *version)
            .cloned()
    }

    /// Follows the decisions and the receipts until shutdown.
    pub async fn follow(
        self: Arc<Self>,
        bus: Bus,
        schemas: Arc<crate::schema::SchemaSet>,
        shutdown: CancellationToken,
    ) {
        let topics = vec![
            self.config.decisions_topic.clone(),
            self.config.receipts_topic.clone(),
        ];
        let mut rx = crate::bus::follow::follow(&bus, topics, shutdown);
        while let Some(f) = rx.recv().await {
            match f {
                Follow::CaughtUp => self.ready.store(true, Ordering::Release),
                Follow::Record(f) if f.topic == self.config.receipts_topic => {
                    match serde_json::from_slice::<Receipt>(&f.payload) {
                        Ok(r) => self.observe_receipt(r),
                        Err(e) => f.unreadable("desk credit", &e.to_string()),
                    }
                }
                Follow::Record(f) => {
                    match crate::schema::decode_payload(&schemas, &f.headers, &f.payload) {
                        Ok(d) => self.observe_decision(
                            d,
                            f.headers.get(crate::telemetry::trace::HEADER).cloned(),
                        ),
                        Err(e) => f.unreadable("desk credit", &e),
                    }
                }
            }
        }
    }
}

fn not_configured() -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "未配置",
        "本部署未配置信用信息公示（[credit]）。",
        None,
    )
}

#[derive(Debug, Serialize)]
struct Row {
    id: String,
    version: i64,
    decision_no: String,
    party: String,
    categories: String,
    fine: String,
    decided: String,
    due: String,
    reason: String,
}

/// A read of the held decisions (page or API): who asks, the board, the
/// decisions, and the audit entry written first. `Err` is the answer when
/// nobody is logged in, `[credit]` is not configured, or the audit cannot
/// be written.
async fn audited_held(
    desk: &Desk,
    headers: &HeaderMap,
    api: bool,
    what: &str,
) -> Result<(super::DeskUser, Arc<CreditBoard>, Vec<Held>), Response> {
    let Some(user) = user(desk, headers) else {
        return Err(unauthorized(api));
    };
    let Some(board) = desk.credit.clone() else {
        return Err(if api {
            refuse(StatusCode::NOT_FOUND, "未配置信用信息公示")
        } else {
            not_configured()
        });
    };
    let held = board.held();
    audited(
        desk,
        &user,
        "list",
        None,
        format!("{what}（{}件）", held.len()),
    )
    .await?;
    Ok((user, board, held))
}

pub async fn list_page(State(desk): State<Desk>, headers: HeaderMap) -> Response {
    let (user, board, held) =
        match audited_held(&desk, &headers, false, "查看暂缓公示的处罚决定").await {
            Ok(r) => r,
            Err(refused) => return refused,
        };
    let rows: Vec<Row> = held
        .iter()
        .map(|h| Row {
            id: h.id.clone(),
            version: h.version,
            decision_no: h.decision_no.clone(),
            party: h.party.clone(),
            categories: h.categories.join("、"),
            fine: h
                .fine_yuan
                .clone()
                .map(|f| format!("{f}元"))
                .unwrap_or_default(),
            decided: time(h.decided_at),
            due: h
                .due_at
                .map(|t| time(Some(t)))
                .unwrap_or_else(|| "无法计算".into()),
            reason: h.reason.clone(),
        })
        .collect();
    let classes: Vec<Value> = Severity::ALL
        .iter()
        .map(|s| json!({"code": s.code(), "label": s.label()}))
        .collect();
    render(
        "credit.html",
        minijinja::context! {
            title => "暂缓公示的处罚决定", product => PRODUCT, page => "credit",
            user => user_view(&user), rows, classes,
            ready => board.ready.load(Ordering::Acquire),
            within => board.config.publish_within.label(),
            officer => user.role == Role::Officer,
        },
    )
    .into_response()
}

pub async fn list_api(State(desk): State<Desk>, headers: HeaderMap) -> Response {
    match audited_held(&desk, &headers, true, "接口读取暂缓公示的处罚决定").await {
        Ok((_, _, held)) => axum::Json(held).into_response(),
        Err(refused) => refused,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassBody {
    /// `LIGHT`, `GENERAL` or `SERIOUS`.
    severity: String,
    /// Why: the sector standard applied (required).
    reason: String,
}

pub async fn set_class(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::Json(body): axum::Json<ClassBody>,
) -> Response {
    let user = match officer(&desk, &headers) {
        Ok(u) => u,
        Err(refused) => return *refused,
    };
    let Some(board) = desk.credit.clone() else {
        return refuse(StatusCode::NOT_FOUND, "未配置信用信息公示");
    };
    let Some(severity) = Severity::from_code(body.severity.trim()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "失信程度应为 LIGHT（轻微）、GENERAL（一般）或 SERIOUS（严重）",
        );
    };
    let reason = body.reason.trim().to_owned();
    if reason.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "请写明定级理由（所依据的行业认定标准）",
        );
    }
    if let Some(refused) = text_too_long(Some(&reason)) {
        return refused;
    }
    if !board.ready.load(Ordering::Acquire) {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "正在读取处罚决定与推送回执，请稍后再试",
        );
    }
    let Some(mut decision) = board.decision(&id) else {
        return refuse(StatusCode::NOT_FOUND, "该处罚决定不在待定级之列");
    };
    let decision_no = decision
        .get("decision_no")
        .and_then(Value::as_str)
        .unwrap_or(&id)
        .to_owned();
    // The audit entry first: an act that cannot be audited is not done.
    if let Err(refused) = audited(
        &desk,
        &user,
        "action",
        None,
        format!(
            "处罚决定{decision_no}定级为{}（{reason}）",
            severity.label()
        ),
    )
    .await
    {
        return refused;
    }
    decision["credit_severity"] = json!(severity.code());
    decision["credit_severity_by"] = json!(user.name);
    decision["credit_severity_reason"] = json!(reason);
    let now = desk.now().timestamp_millis();
    let about = board.traces.read().expect("board lock").get(&id).cloned();
    match desk
        .republish(
            &board.config.decisions_topic,
            &decision,
            &user.name,
            now,
            about.as_deref(),
        )
        .await
    {
        Ok(()) => {
            board.observe_decision(decision, None);
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({"status": "accepted", "id": id, "severity": severity.code()})),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(decision = %id, error = %e, "credit class not written");
            refuse(StatusCode::SERVICE_UNAVAILABLE, "定级未能写入，请稍后再试")
        }
    }
}
