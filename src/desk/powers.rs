//! `/desk/powers`: the power list (权责清单) with, per item and month, the
//! acts, the leads, and the rates the supervisor of the bureau watches
//! (行政执法监督: 《行政执法监督条例》, 国务院令第825号, art. 6; the three
//! systems of 国办发〔2018〕118号) — legal review before the decision
//! (行政处罚法 art. 58), service within seven days (art. 61), publication
//! within 7 working days (118号) — and the facts the supervisor looks at
//! for 趋利性执法 and 乱罚款 (parties fined more than once under an item in
//! the month, decisions in the month's last week). Facts, never findings:
//! the page says so, and counts what the case system does not say as
//! unknown.
//!
//! It reads the rates topic the supervision keeper writes
//! ([`crate::keepers::supervision`]) and the power list's code table as of
//! the month shown.
//!
//! - `/desk/powers?month=YYYY-MM`: the page (this month by default).
//! - `/desk/api/powers?month=YYYY-MM`: the same as JSON.

use super::Desk;
use super::web::{PRODUCT, audited, message_page, refuse, render, unauthorized, user, user_view};
use crate::bus::Bus;
use crate::bus::follow::Follow;
use crate::mapping::Rows;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;

/// The rates as the supervision keeper writes them, and the power list.
#[derive(Debug)]
pub struct PowersBoard {
    rates_topic: String,
    list: Rows,
    /// `(month, item)` → counts, the latest written.
    rates: RwLock<BTreeMap<(String, String), Value>>,
    ready: AtomicBool,
}

impl PowersBoard {
    pub fn new(rates_topic: String, list: Rows) -> Self {
        Self {
            rates_topic,
            list,
            rates: RwLock::default(),
            ready: AtomicBool::new(false),
        }
    }

    fn observe(&self, v: &Value) {
        let (Some(month), Some(item)) = (
            v.get("month").and_then(Value::as_str),
            v.get("item").and_then(Value::as_str),
        ) else {
            return;
        };
        let counts = v.get("counts").cloned().unwrap_or(Value::Null);
        self.rates
            .write()
            .expect("powers lock")
            .insert((month.to_owned(), item.to_owned()), counts);
    }

    /// Follows the rates topic until shutdown.
    pub async fn follow(self: Arc<Self>, bus: Bus, shutdown: CancellationToken) {
        let mut rx = crate::bus::follow::follow(&bus, vec![self.rates_topic.clone()], shutdown);
        while let Some(f) = rx.recv().await {
            match f {
                Follow::CaughtUp => self.ready.store(true, Ordering::Release),
                Follow::Record(f) => match serde_json::from_slice::<Value>(&f.payload) {
                    Ok(v) => self.observe(&v),
                    Err(e) => f.unreadable("desk powers", &e.to_string()),
                },
            }
        }
    }

    /// The month's view: every item of the list valid on the month's last
    /// day, then any other item the month's records name.
    pub fn month(&self, month: &str, last_day_ms: i64) -> Vec<ItemView> {
        let rates = self.rates.read().expect("powers lock");
        let counts = |item: &str| rates.get(&(month.to_owned(), item.to_owned()));
        let mut out: Vec<ItemView> = self
            .list
            .at(last_day_ms)
            .into_iter()
            .map(|row| {
                let v = |c: &str| row.values.get(c).cloned().unwrap_or_default();
                ItemView::new(
                    &row.code,
                    v("name"),
                    v("kind"),
                    v("team"),
                    v("basis"),
                    counts(&row.code),
                    true,
                )
            })
            .collect();
        for ((m, item), c) in rates.iter() {
            if m == month && !out.iter().any(|i| &i.code == item) {
                let listed = item != crate::supervision::NO_ITEM;
                let name = if listed {
                    "（当月不在清单内）".into()
                } else {
                    "（未载明权责事项或清单外）".into()
                };
                out.push(ItemView::new(
                    item,
                    name,
                    String::new(),
                    String::new(),
                    String::new(),
                    Some(c),
                    false,
                ));
            }
        }
        out
    }
}

/// One item's line.
#[derive(Debug, Clone, Serialize)]
pub struct ItemView {
    pub code: String,
    pub name: String,
    pub kind: String,
    pub team: String,
    pub basis: String,
    /// On the list in force for the month.
    pub listed: bool,
    pub acts: u64,
    pub leads: u64,
    pub leads_outside_powers: u64,
    pub revoked_or_changed: u64,
    /// `passed before / required`, and how many do not say.
    pub review: String,
    pub service: String,
    pub publication: String,
    pub repeat_parties: u64,
    pub in_last_week: u64,
    /// A fact the supervisor looks at is non-zero (shown, not judged).
    pub facts: bool,
}

impl ItemView {
    fn new(
        code: &str,
        name: String,
        kind: String,
        team: String,
        basis: String,
        counts: Option<&Value>,
        listed: bool,
    ) -> Self {
        let n = |k: &str| {
            counts
                .and_then(|c| c.get(k))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        let unknown = |k: &str| match n(k) {
            0 => String::new(),
            x => format!("，未载{x}"),
        };
        let (repeat_parties, in_last_week) = (n("repeat_parties"), n("in_last_week"));
        Self {
            code: code.to_owned(),
            name,
            kind,
            team,
            basis,
            listed,
            acts: n("acts"),
            leads: n("leads"),
            leads_outside_powers: n("leads_outside_powers"),
            revoked_or_changed: n("revoked_or_changed"),
            review: format!(
                "{}/{}{}",
                n("review_passed_before"),
                n("review_required"),
                unknown("review_unknown")
            ),
            service: format!(
                "按时{}，逾期{}{}",
                n("served_in_time"),
                n("served_late"),
                unknown("service_unknown")
            ),
            publication: format!(
                "按时{}，逾期{}，不予公示{}，暂缓{}{}",
                n("published_in_time"),
                n("published_late"),
                n("not_published"),
                n("publication_held"),
                unknown("publication_unknown")
            ),
            repeat_parties,
            in_last_week,
            facts: repeat_parties > 0 || in_last_week > 0,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct PowersQuery {
    #[serde(default)]
    month: Option<String>,
}

/// The month asked for (`YYYY-MM`), or this month; and its last day's
/// end. `Err` says, in Chinese, what is wrong with the month.
fn month_of(desk: &Desk, q: &PowersQuery) -> Result<(String, i64), &'static str> {
    let first = match q.month.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => NaiveDate::parse_from_str(&format!("{m}-01"), "%Y-%m-%d")
            .map_err(|_| "月份应为 YYYY-MM，例如 2026-12")?,
        None => crate::calendar::local_date(desk.now().timestamp_millis())
            .ok_or("时间超出范围")?
            .with_day(1)
            .expect("a first day"),
    };
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .ok_or("月份超出范围")?;
    let last_day = next.pred_opt().expect("a last day");
    let end = crate::calendar::end_of_day(last_day).timestamp_millis() - 1;
    Ok((format!("{:04}-{:02}", first.year(), first.month()), end))
}

/// Who asks, the board, the month and its lines, audited first.
async fn audited_view(
    desk: &Desk,
    headers: &HeaderMap,
    q: &PowersQuery,
    api: bool,
) -> Result<(super::DeskUser, Arc<PowersBoard>, String, Vec<ItemView>), Response> {
    let Some(user) = user(desk, headers) else {
        return Err(unauthorized(api));
    };
    let Some(board) = desk.powers.clone() else {
        return Err(if api {
            refuse(StatusCode::NOT_FOUND, "未配置行政执法监督统计")
        } else {
            message_page(
                StatusCode::NOT_FOUND,
                "未配置",
                "本部署未配置行政执法监督统计（[supervision]）。",
                None,
            )
        });
    };
    let (month, end) = month_of(desk, q).map_err(|why| refuse(StatusCode::BAD_REQUEST, why))?;
    let items = board.month(&month, end);
    audited(
        desk,
        &user,
        "view",
        None,
        format!("查看权责清单与执法监督统计（{month}）"),
    )
    .await?;
    Ok((user, board, month, items))
}

pub async fn page(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Query(q): Query<PowersQuery>,
) -> Response {
    match audited_view(&desk, &headers, &q, false).await {
        Ok((user, board, month, items)) => render(
            "powers.html",
            minijinja::context! {
                title => "权责清单与执法监督", product => PRODUCT, page => "powers",
                user => user_view(&user), month, items,
                version => board.list.version.clone(),
                ready => board.ready.load(Ordering::Acquire),
            },
        )
        .into_response(),
        Err(refused) => refused,
    }
}

pub async fn api(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Query(q): Query<PowersQuery>,
) -> Response {
    match audited_view(&desk, &headers, &q, true).await {
        Ok((_, _, month, items)) => {
            axum::Json(serde_json::json!({"month": month, "items": items})).into_response()
        }
        Err(refused) => refused,
    }
}
