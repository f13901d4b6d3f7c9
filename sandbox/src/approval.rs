//! Administrative approval (行政审批) simulator.
//!
//! - `GET /approval/api/licences?updatedAfter=&afterId=&pageSize=`: licences
//!   granted, in the current credit-publicity layout (JSON);
//! - [`write_2016_batch`]: the daily XML batch in the older 2016 layout, in
//!   GBK, as the approval system's export job leaves it in the exchange
//!   directory.

use super::people;
use super::store::KeysetStore;
use super::{FaultPlan, SandboxConfig};
use axum::Router;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The approval simulator's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Licences in the API at start.
    pub licences: usize,
    /// Changed licences per second while running.
    pub changes_per_sec: u32,
    /// The exchange directory a batch (2016 layout) is dropped into at
    /// start.
    pub dir: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            licences: 300,
            changes_per_sec: 2,
            dir: None,
        }
    }
}

const LICENCES: &[(&str, &str, &str)] = &[
    ("食品经营许可证", "普通", "JY1420502"),
    ("建筑工程施工许可证", "普通", "SG420502"),
    ("城市建筑垃圾处置核准", "核准", "CZ420502"),
    ("户外广告设施设置许可", "普通", "GG420502"),
    ("危险化学品经营许可证", "特许", "WH420502"),
    ("临时占用城市道路许可", "普通", "ZD420502"),
];
const AUTHORITY: &str = "宜昌高新区行政审批局";
const AUTHORITY_CODE: &str = "11420500MB1523987X";
const AREAS: &[&str] = &["420502001", "420502002", "420502003", "420506100"];

#[derive(Debug)]
struct ApprovalState {
    licences: KeysetStore,
    next: u64,
    applied: u64,
    rng: fastrand::Rng,
}

#[derive(Debug, Clone)]
pub struct ApprovalSystem {
    state: Arc<Mutex<ApprovalState>>,
    started: Instant,
    changes_per_sec: u32,
    change_limit: u64,
    faults: FaultPlan,
}

impl ApprovalSystem {
    pub fn new(config: &SandboxConfig, faults: FaultPlan) -> Self {
        let mut state = ApprovalState {
            licences: KeysetStore::new("updateTime", "licenceId"),
            next: 0,
            applied: 0,
            rng: fastrand::Rng::with_seed(config.seed ^ 0x6170_7072),
        };
        let start = chrono::Utc::now() - chrono::Duration::days(30);
        let n = config.approval.licences.max(1) as i64;
        for i in 0..config.approval.licences {
            let at = start + chrono::Duration::milliseconds(i as i64 * 30 * 86_400_000 / n);
            let licence = new_licence(&mut state, at, config.bad_rate);
            state.licences.insert(licence);
        }
        Self {
            state: Arc::new(Mutex::new(state)),
            started: Instant::now(),
            changes_per_sec: config.approval.changes_per_sec.max(1),
            change_limit: config.change_limit.unwrap_or(u64::MAX),
            faults,
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/approval/api/licences", axum::routing::get(list))
            .with_state(self.clone())
    }
}

fn decision_no(rng: &mut fastrand::Rng, year: i32, n: u64) -> String {
    // The same number, written the ways clerks write it.
    let (open, close) = [("【", "】"), ("〔", "〕"), ("[", "]")][rng.usize(..3)];
    format!("宜高审批许字{open}{year}{close}第{n:04}号")
}

fn new_licence(
    state: &mut ApprovalState,
    at: chrono::DateTime<chrono::Utc>,
    bad_rate: f64,
) -> Value {
    let i = state.next;
    state.next += 1;
    let rng = &mut state.rng;
    let (name, category, prefix) = LICENCES[rng.usize(..LICENCES.len())];
    let individual = rng.f64() < 0.25;
    let decided = at.with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    let (party_name, party_code) = if individual {
        (
            format!("宜昌高新区{}个体经营部", people::person(rng)),
            people::credit_code(rng, "92"),
        )
    } else {
        let (name, code) = people::company(rng);
        (name.to_owned(), code)
    };
    let mut licence = json!({
        "licenceId": format!("XK{}{:05}", decided.format("%Y%m%d"), i),
        "xdrMc": party_name,
        "xdrLb": if individual { "个体工商户" } else { "法人及非法人组织" },
        "xdrShxym": party_code,
        "fddbr": people::person(rng),
        "fddbrZjlx": "身份证",
        "fddbrZjhm": people::resident_id(rng),
        "xkWsmc": "准予行政许可决定书",
        "xkWsh": decision_no(rng, decided.format("%Y").to_string().parse().unwrap_or(2026), 100 + i),
        "xkLb": category,
        "xkZsmc": name,
        "xkBh": format!("{prefix}{:07}", 1000 + i),
        "xkNr": format!("准予{name}，经营/施工范围以证载内容为准。"),
        "xkJdrq": decided.format("%Y-%m-%d").to_string(),
        "xkYxqz": decided.format("%Y-%m-%d").to_string(),
        "xkYxqzi": (decided + chrono::Duration::days(365 * 5 - 1)).format("%Y-%m-%d").to_string(),
        "xkXzjg": AUTHORITY,
        "xkXzjgdm": AUTHORITY_CODE,
        "xkZt": "1",
        "sjly": AUTHORITY,
        "sjlydm": AUTHORITY_CODE,
        "bz": "",
        "areaCode": AREAS[rng.usize(..AREAS.len())],
        "updateTime": people::local(at, true),
    });
    if rng.f64() < 0.3 {
        licence["commitment"] = json!({
            "flag": "Y",
            "conditions": "承诺在许可后60日内补齐消防验收材料并接受现场核查",
            "dueDate": (decided + chrono::Duration::days([20, 35, 60][i as usize % 3])).format("%Y-%m-%d").to_string(),
            "fulfilled": "N",
        });
    }
    if rng.f64() < bad_rate {
        match rng.usize(..2) {
            0 => licence["xkZt"] = json!("7"),
            _ => licence["xkJdrq"] = json!("2026-13-01"),
        }
    }
    licence
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    updated_after: Option<String>,
    after_id: Option<String>,
    page_size: Option<usize>,
}

async fn list(
    State(system): State<ApprovalSystem>,
    Query(q): Query<ListQuery>,
) -> axum::Json<Value> {
    let size = q.page_size.unwrap_or(100).clamp(1, 1000);
    let rows = {
        let mut state = system.state.lock().expect("approval lock");
        let due = ((system.started.elapsed().as_secs_f64() * f64::from(system.changes_per_sec))
            as u64)
            .min(system.change_limit);
        while state.applied < due {
            state.applied += 1;
            let licence = new_licence(&mut state, chrono::Utc::now(), 0.0);
            state.licences.insert(licence);
        }
        state
            .licences
            .after(q.updated_after.as_deref(), q.after_id.as_deref(), size)
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if system.faults.duplicate() {
            out.push(row.clone());
        }
        out.push(row);
    }
    axum::Json(json!({ "code": 200, "message": "操作成功", "result": { "records": out } }))
}

fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Writes a daily batch in the 2016 layout, GBK-encoded, into `dir` (via a
/// `.part` file renamed when complete). `n` licences, the last three with
/// the defects such exports carry: a credit code failing its check (kept,
/// flagged), an unknown status, an impossible date.
pub fn write_2016_batch(dir: &Path, n: usize, seed: u64) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut rng = fastrand::Rng::with_seed(seed);
    let day = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive();
    let mut body = String::from("<?xml version=\"1.0\" encoding=\"GBK\"?>\n<XZXKSJ pch=\"");
    body.push_str(&format!(
        "{}{:04}\" jls=\"{n}\">\n",
        day.format("%Y%m%d"),
        seed % 10_000
    ));
    for i in 0..n {
        let (name, category, _) = LICENCES[rng.usize(..LICENCES.len())];
        let decided = day - chrono::Duration::days(1 + rng.i64(0..30));
        let (company, mut code) = people::company(&mut rng);
        let mut status = "正常";
        let mut date = decided.format("%Y年%m月%d日").to_string();
        match n.saturating_sub(i) {
            3 => code.replace_range(17..18, if code.ends_with('0') { "1" } else { "0" }),
            2 => status = "待定",
            1 => date = "2016年02月30日".into(),
            _ => {}
        }
        body.push_str(&format!(
            "  <XZXK>\n    <XK_WSH>宜高审批许字[{}]第{:04}号</XK_WSH>\n    <XK_XMMC>{}</XK_XMMC>\n    <XK_SPLB>{}</XK_SPLB>\n    <XK_NR>准予{}。</XK_NR>\n    <XDR_MC>{}</XDR_MC>\n    <XDR_SHXYM>{}</XDR_SHXYM>\n    <XDR_FR>{}</XDR_FR>\n    <XK_JDRQ>{}</XK_JDRQ>\n    <XK_JZQ>{}</XK_JZQ>\n    <XK_XZJG>{}</XK_XZJG>\n    <ZT>{}</ZT>\n    <DFBM>420502</DFBM>\n    <SJC>{}</SJC>\n    <BZ></BZ>\n  </XZXK>\n",
            decided.format("%Y"),
            5000 + seed % 1000 * 100 + i as u64,
            esc(name),
            category,
            esc(name),
            esc(company),
            code,
            people::person(&mut rng),
            date,
            (decided + chrono::Duration::days(365 * 3)).format("%Y年%m月%d日"),
            AUTHORITY,
            status,
            chrono::Utc::now().timestamp(),
        ));
    }
    body.push_str("</XZXKSJ>\n");
    let (bytes, _, _) = encoding_rs::GBK.encode(&body);
    let name = format!("XZXK_{}_{:04}.xml", day.format("%Y%m%d"), seed % 10_000);
    let part = dir.join(format!("{name}.part"));
    std::fs::write(&part, &bytes)?;
    let path = dir.join(&name);
    std::fs::rename(&part, &path)?;
    Ok(path)
}

impl crate::Simulator for ApprovalSystem {
    fn routes(&self) -> Router {
        self.router()
    }

    /// A batch in the 2016 layout dropped into the exchange directory.
    fn background(&self, config: &SandboxConfig, _: tokio_util::sync::CancellationToken) {
        let Some(dir) = &config.approval.dir else {
            return;
        };
        match write_2016_batch(dir, 40, config.seed) {
            Ok(file) => {
                tracing::info!(file = %file.display(), "approval batch (2016 layout) dropped")
            }
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "cannot drop the approval batch")
            }
        }
    }
}
