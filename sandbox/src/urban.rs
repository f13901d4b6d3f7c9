//! Digital urban management (数字化城管) simulator.
//!
//! Two faces of one case store, as the vendor offers them:
//! - `GET /dcm/api/cases`: the case export as JSON (the shared workload's
//!   layout), by keyset (`updatedAfter` + `afterTaskNum`) or by page number
//!   (`updatedSince` + `page`);
//! - `POST /dcm/soap/CaseService` (SOAPAction `QueryCaseUpdates`): case
//!   life-cycle updates as SOAP 1.1, answered in GBK, each case with its
//!   stage and stage deadlines.
//!
//! Cases keep arriving and moving through their life cycle while the hub
//! reads; a changed case moves to the end of the update-time order.

use super::people::{self, ROADS};
use super::store::KeysetStore;
use super::{FaultPlan, SandboxConfig};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use duijie_connectors::xml_split::element_text;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The urban management simulator's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Cases at start.
    pub cases: usize,
    /// New or changed cases per second while running.
    pub changes_per_sec: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cases: 2_000,
            changes_per_sec: 20,
        }
    }
}

/// What the case system classes cases by (GB/T 30428.2-2013): the kind
/// (`1` 部件 component, `2` 事件 event), big class, subclass, name. The two
/// trees reuse class numbers (部件 0103 雨水井盖, 事件 0103 私搭乱建).
const SUBTYPES: &[(&str, &str, &str, &str)] = &[
    ("2", "01", "01", "暴露垃圾"),
    ("2", "01", "02", "积存渣土"),
    ("2", "01", "03", "私搭乱建"),
    ("2", "02", "01", "非法小广告"),
    ("2", "02", "02", "违规户外广告"),
    ("2", "03", "01", "施工占道"),
    ("2", "03", "02", "工地扬尘"),
    ("2", "03", "03", "渣土运输撒漏"),
    ("2", "05", "01", "占道经营"),
    ("2", "05", "02", "无照经营游商"),
    ("2", "05", "03", "店外经营"),
    ("1", "01", "01", "上水井盖"),
    ("1", "01", "02", "污水井盖"),
    ("1", "01", "03", "雨水井盖"),
];

#[derive(Debug)]
struct State_ {
    cases: KeysetStore,
    next_case: u64,
    applied_changes: u64,
    rng: fastrand::Rng,
}

/// The simulated system.
#[derive(Debug, Clone)]
pub struct UrbanSystem {
    state: Arc<Mutex<State_>>,
    started: Instant,
    changes_per_sec: u32,
    bad_rate: f64,
    faults: FaultPlan,
    change_limit: u64,
}

impl UrbanSystem {
    pub fn new(config: &SandboxConfig, faults: FaultPlan) -> Self {
        let mut state = State_ {
            cases: KeysetStore::new("updateTime", "taskNum"),
            next_case: 0,
            applied_changes: 0,
            rng: fastrand::Rng::with_seed(config.seed),
        };
        let start = chrono::Utc::now() - chrono::Duration::hours(24);
        let n = config.urban.cases.max(1) as i64;
        for i in 0..config.urban.cases {
            let at = start + chrono::Duration::milliseconds(i as i64 * 86_400_000 / n);
            let case = new_case(&mut state, config.bad_rate, at);
            state.cases.insert(case);
        }
        Self {
            state: Arc::new(Mutex::new(state)),
            started: Instant::now(),
            changes_per_sec: config.urban.changes_per_sec,
            bad_rate: config.bad_rate,
            faults,
            change_limit: config.change_limit.unwrap_or(u64::MAX),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/dcm/api/cases", axum::routing::get(list_cases))
            .route("/dcm/soap/CaseService", axum::routing::post(soap))
            .with_state(self.clone())
    }

    /// Applies the arrivals and life-cycle changes due by now.
    fn advance(&self, state: &mut State_) {
        let due = ((self.started.elapsed().as_secs_f64() * f64::from(self.changes_per_sec)) as u64)
            .min(self.change_limit);
        while state.applied_changes < due {
            state.applied_changes += 1;
            let now = chrono::Utc::now();
            if state.rng.f64() < 0.7 || state.cases.len() == 0 {
                let case = new_case(state, self.bad_rate, now);
                state.cases.insert(case);
            } else {
                let n = state.rng.usize(..state.cases.len());
                let Some(task) = state.cases.nth_id(n) else {
                    continue;
                };
                state.cases.update(&task, people::local(now, true), |case| {
                    let next = match case["eventStateId"].as_str() {
                        Some("1") => "3",
                        Some("3") => "4",
                        Some("4") => "5",
                        Some("5") => "6",
                        Some(other) => other,
                        None => "1",
                    }
                    .to_owned();
                    case["eventStateId"] = json!(next);
                    if next == "6" {
                        case["closeTime"] = json!(people::local(now, false));
                    }
                });
            }
        }
        self.faults
            .counters
            .urban_changes
            .store(state.applied_changes, std::sync::atomic::Ordering::Relaxed);
    }
}

fn new_case(state: &mut State_, bad_rate: f64, at: chrono::DateTime<chrono::Utc>) -> Value {
    let i = state.next_case;
    state.next_case += 1;
    let rng = &mut state.rng;
    let (kind, main, sub, name) = SUBTYPES[rng.usize(..SUBTYPES.len())];
    let source = ["1", "2", "3", "4"][rng.usize(..4)];
    let case_state = ["1", "3", "4", "5", "6"][rng.usize(..5)];
    let mut case = json!({
        "taskNum": format!("YC{:08}", 50_000_000 + i),
        "eventSrcId": source,
        "eventTypeId": kind,
        "mainTypeId": main,
        "subTypeId": sub,
        "subTypeName": name,
        "cellId": format!("42050200{:04}{:02}", rng.u32(1..300), rng.u32(1..20)),
        "address": format!("宜昌市高新区{}{}号附近", ROADS[rng.usize(..ROADS.len())], rng.u32(1..999)),
        "coordX": format!("{:.6}", 111.28 + rng.f64() * 0.2),
        "coordY": format!("{:.6}", 30.65 + rng.f64() * 0.15),
        "eventDesc": format!("巡查发现{name}，影响市容秩序，请及时处置。"),
        "createTime": people::local(at, false),
        "updateTime": people::local(at, true),
        "eventStateId": case_state,
        "reporter": people::person(rng),
    });
    if kind == "1" {
        // 部件标识码: county (西陵区 420502) + class +
        // subclass + serial.
        case["componentId"] = json!(format!("420502{main}{sub}{:06}", rng.u32(1..999_999)));
    }
    if case_state == "6" {
        case["closeTime"] = json!(people::local(at + chrono::Duration::hours(20), false));
    }
    if rng.f64() < 0.6 {
        let (name, code) = people::company(rng);
        case["partyName"] = json!(name);
        // Inspectors sometimes write only a shop sign's name: the entity
        // library proposes a link for those instead of making one.
        if rng.f64() < 0.85 {
            case["partyCreditCode"] = json!(code);
        } else {
            case["partyName"] = json!(name.trim_start_matches("宜昌").replace("有限公司", "公司"));
        }
    }
    if rng.f64() < bad_rate {
        // The defects real exports carry.
        match rng.usize(..3) {
            0 => case["eventStateId"] = json!("2"),
            1 => case["cellId"] = json!("4205020001"),
            _ => case["createTime"] = json!("2026-02-30 25:61:00"),
        }
    }
    case
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    updated_after: Option<String>,
    after_task_num: Option<String>,
    updated_since: Option<String>,
    page: Option<usize>,
    page_size: Option<usize>,
}

async fn list_cases(
    State(system): State<UrbanSystem>,
    Query(q): Query<ListQuery>,
) -> axum::Json<Value> {
    let size = q.page_size.unwrap_or(100).clamp(1, 1000);
    let rows = {
        let mut state = system.state.lock().expect("urban lock");
        system.advance(&mut state);
        match q.page {
            Some(page) => state
                .cases
                .page(q.updated_since.as_deref().unwrap_or(""), page, size),
            None => state.cases.after(
                q.updated_after.as_deref(),
                q.after_task_num.as_deref(),
                size,
            ),
        }
    };
    let mut out = Vec::with_capacity(rows.len() + 4);
    for row in rows {
        if system.faults.duplicate() {
            out.push(row.clone());
        }
        out.push(row);
    }
    axum::Json(json!({ "code": 0, "msg": "成功", "data": { "rows": out, "pageSize": size } }))
}

/// Stage and stage deadlines of a case in its current state.
fn stage_of(case: &Value) -> (&'static str, Vec<(&'static str, chrono::Duration)>) {
    let h = chrono::Duration::hours;
    match case["eventStateId"].as_str() {
        Some("1") => ("20", vec![("registerLimit", h(1))]),
        Some("3") => ("30", vec![("registerLimit", h(1)), ("dispatchLimit", h(2))]),
        Some("4") => (
            "40",
            vec![
                ("registerLimit", h(1)),
                ("dispatchLimit", h(2)),
                ("handleLimit", h(24)),
            ],
        ),
        Some("5") => (
            "60",
            vec![
                ("registerLimit", h(1)),
                ("dispatchLimit", h(2)),
                ("handleLimit", h(24)),
                ("verifyLimit", h(48)),
            ],
        ),
        _ => ("70", vec![]),
    }
}

fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

fn case_xml(case: &Value) -> String {
    let s = |k: &str| case[k].as_str().unwrap_or_default().to_owned();
    let created = chrono::NaiveDateTime::parse_from_str(&s("createTime"), "%Y-%m-%d %H:%M:%S").ok();
    let (stage, limits) = stage_of(case);
    let mut limits_xml = String::new();
    if let Some(created) = created {
        for (name, after) in limits {
            limits_xml.push_str(&format!(
                "<{name}>{}</{name}>",
                (created + after).format("%Y-%m-%d %H:%M:%S")
            ));
        }
    }
    let party = match (case.get("partyName"), case.get("partyCreditCode")) {
        (Some(n), Some(c)) => format!(
            "<party name=\"{}\" creditCode=\"{}\"/>",
            esc(n.as_str().unwrap_or_default()),
            esc(c.as_str().unwrap_or_default())
        ),
        _ => String::new(),
    };
    let component = case
        .get("componentId")
        .and_then(|c| c.as_str())
        .map(|c| format!("<componentId>{}</componentId>", esc(c)))
        .unwrap_or_default();
    let close = case
        .get("closeTime")
        .and_then(|c| c.as_str())
        .map(|c| format!("<closeTime>{c}</closeTime>"))
        .unwrap_or_default();
    format!(
        "<case><taskNum>{}</taskNum><eventSrcId>{}</eventSrcId><eventTypeId>{}</eventTypeId><mainTypeId>{}</mainTypeId><subTypeId>{}</subTypeId><subTypeName>{}</subTypeName><cellId>{}</cellId><address>{}</address><coordX>{}</coordX><coordY>{}</coordY><eventDesc>{}</eventDesc><createTime>{}</createTime><updateTime>{}</updateTime><eventStateId>{}</eventStateId><reporter>{}</reporter>{component}{party}<stage code=\"{stage}\"/><limits>{limits_xml}</limits>{close}</case>",
        esc(&s("taskNum")),
        esc(&s("eventSrcId")),
        esc(&s("eventTypeId")),
        esc(&s("mainTypeId")),
        esc(&s("subTypeId")),
        esc(&s("subTypeName")),
        esc(&s("cellId")),
        esc(&s("address")),
        esc(&s("coordX")),
        esc(&s("coordY")),
        esc(&s("eventDesc")),
        esc(&s("createTime")),
        esc(&s("updateTime")),
        esc(&s("eventStateId")),
        esc(&s("reporter")),
    )
}

/// The SOAP service; answers in GBK.
async fn soap(State(system): State<UrbanSystem>, headers: HeaderMap, body: String) -> Response {
    let action = headers
        .get("SOAPAction")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    if !action.ends_with("QueryCaseUpdates") {
        return soap_fault(
            "soap:Client",
            &format!("未知操作 unknown operation `{action}`"),
        );
    }
    let after = element_text(&body, "updatedAfter").filter(|s| !s.is_empty());
    let after_id = element_text(&body, "afterTaskNum").filter(|s| !s.is_empty());
    let size = element_text(&body, "pageSize")
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let rows = {
        let mut state = system.state.lock().expect("urban lock");
        system.advance(&mut state);
        state
            .cases
            .after(after.as_deref(), after_id.as_deref(), size)
    };
    let mut cases = String::new();
    for row in &rows {
        let xml = case_xml(row);
        if system.faults.duplicate() {
            cases.push_str(&xml);
        }
        cases.push_str(&xml);
    }
    let envelope = format!(
        "<?xml version=\"1.0\" encoding=\"GBK\"?>\n<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><QueryCaseUpdatesResponse xmlns=\"urn:dcm:case\"><count>{}</count><cases>{cases}</cases></QueryCaseUpdatesResponse></soap:Body></soap:Envelope>",
        rows.len()
    );
    gbk_xml(StatusCode::OK, &envelope)
}

fn soap_fault(code: &str, reason: &str) -> Response {
    let envelope = format!(
        "<?xml version=\"1.0\" encoding=\"GBK\"?>\n<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><soap:Fault><faultcode>{code}</faultcode><faultstring>{}</faultstring></soap:Fault></soap:Body></soap:Envelope>",
        esc(reason)
    );
    gbk_xml(StatusCode::INTERNAL_SERVER_ERROR, &envelope)
}

fn gbk_xml(status: StatusCode, text: &str) -> Response {
    let (bytes, _, _) = encoding_rs::GBK.encode(text);
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=GBK")],
        bytes.into_owned(),
    )
        .into_response()
}

impl crate::Simulator for UrbanSystem {
    fn routes(&self) -> Router {
        self.router()
    }
}
