//! The library at a terminal: `duijie entity list|show`.

use crate::text::pad;
use serde_json::Value;
use std::fmt::Write as _;

fn text(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("、"),
        Some(Value::Null) | None => "—".into(),
        Some(x) => x.to_string(),
    }
}

/// One line per entity (the rows of [`super::api::Library::list_json`]).
pub fn list_table(rows: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}{}{}{}{}系统",
        pad("主体名称", 34),
        pad("统一社会信用代码/标识", 38),
        pad("记录", 6),
        pad("未结", 6),
        pad("受限", 6)
    );
    for r in rows {
        let code = match r.get("code") {
            Some(Value::String(c)) => c.clone(),
            _ => text(r, "key"),
        };
        let restricted = if r.get("restricted") == Some(&Value::Bool(true)) {
            "是"
        } else {
            "否"
        };
        let _ = writeln!(
            out,
            "{}{}{}{}{}{}",
            pad(&text(r, "name"), 34),
            pad(&code, 38),
            pad(&text(r, "records"), 6),
            pad(&text(r, "open_items"), 6),
            pad(restricted, 6),
            text(r, "systems")
        );
    }
    out
}

/// An entity's profile (from [`super::api::Library::profile_json`]).
pub fn show(p: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "主体：{}", text(p, "name"));
    let _ = writeln!(out, "标识：{}（代码 {}）", text(p, "key"), text(p, "code"));
    let _ = writeln!(out, "名称：{}", text(p, "names"));
    let _ = writeln!(out, "来源系统：{}", text(p, "systems"));
    let restricted = p.get("restricted") == Some(&Value::Bool(true));
    let _ = writeln!(out, "联合惩戒：{}", if restricted { "受限" } else { "无" });
    for r in p
        .get("restrictions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let _ = writeln!(
            out,
            "  - {}，至 {}；依据：{}",
            text(r, "reason"),
            text(r, "until"),
            text(r, "basis")
        );
    }
    let _ = writeln!(out, "未结事项：");
    for i in p
        .get("open_items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let item = i.get("item").cloned().unwrap_or_default();
        let _ = writeln!(out, "  - {}：{}", text(&item, "label"), text(i, "record"));
    }
    let _ = writeln!(out, "记录：");
    for r in p
        .get("records")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let prov = r.get("provenance").cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} {} {} {} [{}] ← {}[{}]@{} {}",
            pad(&text(r, "at"), 26),
            pad(&text(r, "source_system"), 16),
            pad(&text(r, "kind_label"), 18),
            text(r, "title"),
            text(r, "status"),
            text(&prov, "topic"),
            text(&prov, "partition"),
            text(&prov, "offset"),
            text(&prov, "origin"),
        );
    }
    out
}
