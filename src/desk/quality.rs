//! `/desk/quality`: each source's data quality (数据质量), in Chinese — per
//! day, records mapped and rejected (a chart), and for a day, per field,
//! completeness and validity (bars), code-table values with the unknown
//! codes, and rejects per rule. From the bus ([`crate::quality`]); every
//! view audited.

use super::Desk;
use super::web::{PRODUCT, audited, message_page, render, unauthorized, user, user_view};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
pub struct QualityQuery {
    #[serde(default)]
    pipeline: Option<String>,
    #[serde(default)]
    day: Option<String>,
}

/// Long because the quality page's rows and figures built from the board
/// for the template, field by field.
pub async fn page(
    State(desk): State<Desk>,
    headers: HeaderMap,
    Query(q): Query<QualityQuery>,
) -> Response {
    let Some(user) = user(&desk, &headers) else {
        return unauthorized(false);
    };
    let Some(board) = desk.quality.clone() else {
        return message_page(
            StatusCode::NOT_FOUND,
            "未启用",
            "本部署未启用数据质量统计（[hub] quality）。",
            None,
        );
    };
    let (pipelines, pipeline, days) = {
        let b = board.read().expect("quality board lock");
        let pipelines: Vec<String> = b.days.keys().cloned().collect();
        let pipeline = q
            .pipeline
            .filter(|p| pipelines.contains(p))
            .or_else(|| pipelines.first().cloned());
        let days = pipeline
            .as_deref()
            .map(|p| b.recent(p, 30))
            .unwrap_or_default();
        (pipelines, pipeline, days)
    };
    if let Err(refused) = audited(
        &desk,
        &user,
        "view",
        None,
        format!("查看数据质量（{}）", pipeline.as_deref().unwrap_or("—")),
    )
    .await
    {
        return refused;
    }
    // Records per day, oldest left: bars of mapped (and rejected on top).
    let max = days
        .iter()
        .map(|(_, d)| d.mapped + d.rejected)
        .max()
        .unwrap_or(1)
        .max(1);
    let bars: Vec<_> = days
        .iter()
        .rev()
        .enumerate()
        .map(|(i, (date, d))| {
            let h = |n: u64| (n * 120 / max) as i64;
            let (hm, hr) = (h(d.mapped), h(d.rejected));
            json!({"x": i * 24 + 4, "mapped_y": 130 - hm, "mapped_h": hm, "rejected_y": 130 - hm - hr, "rejected_h": hr,
                   "label": format!("{date}：入库{}条，拒收{}条", d.mapped, d.rejected)})
        })
        .collect();
    let selected = q
        .day
        .and_then(|d| days.iter().find(|(x, _)| *x == d).cloned())
        .or_else(|| days.first().cloned());
    let pct = |x: Option<f64>| {
        x.map(|v| format!("{:.1}%", v * 100.0))
            .unwrap_or_else(|| "—".into())
    };
    let fields: Vec<_> = selected
        .as_ref()
        .map(|(_, d)| {
            d.rates()
                .into_iter()
                .map(|r| {
                    json!({
                        "field": r.field, "completeness": pct(r.completeness), "validity": pct(r.validity),
                        "c_width": (r.completeness.unwrap_or(0.0) * 160.0).round() as i64,
                        "v_width": (r.validity.unwrap_or(0.0) * 160.0).round() as i64,
                        "low": r.validity.is_some_and(|v| v < 0.95) || r.completeness.is_some_and(|c| c < 0.5),
                        "values": r.values.iter().map(|(k, n)| format!("{k}：{n}")).collect::<Vec<_>>(),
                        "unknown": r.unknown_codes.iter().map(|(k, n)| format!("{k}：{n}")).collect::<Vec<_>>(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let rules: Vec<_> = selected
        .as_ref()
        .map(|(_, d)| {
            d.rejects_by_rule
                .iter()
                .map(|(k, n)| json!({"rule": k, "count": n}))
                .collect()
        })
        .unwrap_or_default();
    render(
        "quality.html",
        minijinja::context! {
            title => "数据质量", product => PRODUCT, page => "quality", user => user_view(&user),
            pipelines, pipeline, bars, fields, rules,
            day => selected.as_ref().map(|(d, _)| d.clone()),
            mapped => selected.as_ref().map(|(_, d)| d.mapped),
            rejected => selected.as_ref().map(|(_, d)| d.rejected),
            days => days.iter().map(|(d, x)| json!({"day": d, "mapped": x.mapped, "rejected": x.rejected})).collect::<Vec<_>>(),
        },
    )
    .into_response()
}
