//! The bureau's own case-handling system (执法办案系统) simulator: a source
//! of penalty decisions, and a target of approval pushes.
//!
//! - `GET /enforcement/api/decisions?updatedAfter=&afterId=&pageSize=`:
//!   penalty decisions and, later, their changes (变更) and revocations
//!   (撤销), each a new version of the decision;
//! - `POST /enforcement/api/queues/{team}/licences`: licence notices for
//!   post-approval supervision, one queue per enforcement team; an
//!   `Idempotency-Key` header makes a redelivery a no-op;
//! - `GET /enforcement/api/queues/{team}/licences`: what a queue holds.

use super::people;
use super::receiver::Inbox;
use super::store::KeysetStore;
use super::{FaultPlan, SandboxConfig};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The case system simulator's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Penalty decisions at start.
    pub decisions: usize,
    /// How long ago the natural person's licence was revoked (the decision
    /// that always meets a blacklist criterion).
    pub revocation_age: std::time::Duration,
    /// Changed decisions per second while running.
    pub changes_per_sec: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            decisions: 60,
            revocation_age: std::time::Duration::from_secs(30 * 3600),
            changes_per_sec: 2.0,
        }
    }
}

const AUTHORITY: (&str, &str) = ("宜昌高新区综合行政执法局", "11420500MB15077941");
const CASES: &[(&str, &str, &str, &[&str], &str)] = &[
    (
        "未按规定设置安全警示标志",
        "违反《安全生产法》第三十五条",
        "《安全生产法》第九十九条",
        &["警告", "罚款"],
        "安全生产",
    ),
    (
        "占道经营",
        "违反《城市市容和环境卫生管理条例》第十四条",
        "《城市市容和环境卫生管理条例》第三十六条",
        &["罚款"],
        "城市管理",
    ),
    (
        "未经许可擅自设置户外广告",
        "违反《城市市容和环境卫生管理条例》第十一条",
        "《湖北省城市市容和环境卫生管理条例》",
        &["罚款", "没收违法所得"],
        "城市管理",
    ),
    (
        "特种设备超期未检验继续使用",
        "违反《特种设备安全法》第四十条",
        "《特种设备安全法》第八十四条",
        &["责令停产停业", "罚款"],
        "特种设备",
    ),
    (
        "消防通道堵塞",
        "违反《消防法》第二十八条",
        "《消防法》第六十条",
        &["警告"],
        "消防安全",
    ),
    (
        "无证经营危险化学品",
        "违反《危险化学品安全管理条例》第三十三条",
        "《危险化学品安全管理条例》第七十七条",
        &["罚款", "没收违法所得", "吊销许可证件"],
        "安全生产",
    ),
    (
        "建筑垃圾随意倾倒",
        "违反《城市建筑垃圾管理规定》第十五条",
        "《城市建筑垃圾管理规定》第二十六条",
        &["罚款"],
        "生态环境",
    ),
];
/// Fines that make money conversion interesting.
const FINES: &[&str] = &[
    "2000",
    "0.01",
    "1234567.89",
    "50",
    "100000000",
    "3000.5",
    "19999.99",
    "200",
];

#[derive(Debug)]
pub(crate) struct EnforcementState {
    decisions: KeysetStore,
    /// decision id → its latest version.
    latest: std::collections::BTreeMap<String, Value>,
    next: u64,
    applied: u64,
    rng: fastrand::Rng,
}

/// The simulated case system.
#[derive(Debug, Clone)]
pub struct EnforcementSystem {
    state: Arc<Mutex<EnforcementState>>,
    started: Instant,
    changes_per_sec: f64,
    change_limit: u64,
    faults: FaultPlan,
    pub queues: Inbox,
    /// Referral events (drafted, submitted, approved, refused).
    referrals: Arc<KeysetStore>,
}

impl EnforcementSystem {
    pub fn new(config: &SandboxConfig, faults: FaultPlan, queues: Inbox) -> Self {
        let mut state = EnforcementState {
            decisions: KeysetStore::new("updateTime", "recordId"),
            latest: Default::default(),
            next: 0,
            applied: 0,
            rng: fastrand::Rng::with_seed(config.seed ^ 0x7a66),
        };
        let now = chrono::Utc::now();
        for i in 0..config.enforcement.decisions {
            // Decided over the last three weeks, entered within hours.
            // Most decided over the last five days; a few older ones were
            // entered late and are already past their publication deadline.
            let hours = ((config.enforcement.decisions - i) as i64) * 120
                / config.enforcement.decisions.max(1) as i64;
            let hours = if i % 20 == 0 { hours + 300 } else { hours };
            let decided = now - chrono::Duration::hours(hours);
            let d = new_decision(&mut state, decided, decided);
            state.insert(d);
        }
        // A natural person whose licence was revoked (吊销许可证件, a
        // listing category): the blacklist keeper lists them, so every run
        // pushes a natural person's blacklist entry (under a pseudonym).
        if config.enforcement.decisions > 0 {
            let decided = now
                - chrono::Duration::from_std(config.enforcement.revocation_age).unwrap_or_default();
            let mut d = new_decision(&mut state, decided, decided);
            d["dsr"] = json!({"mc": people::person(&mut state.rng), "lb": "3", "zjlx": "身份证", "zjhm": people::resident_id(&mut state.rng)});
            d["cflb"] = json!(["罚款", "吊销许可证件"]);
            d["zkdx"] = json!("吊销《食品经营许可证》");
            d["hyly"] = json!("食品安全");
            d["wfxw"] = json!("经营超过保质期的食品");
            d["cfnr"] = json!("罚款人民币2000元，吊销《食品经营许可证》");
            d["fkje"] = json!("2000");
            d["qjyz"] = json!("1");
            d["cfcx"] = json!("普通");
            d["sxcd"] = json!("严重");
            state.insert(d);
        }
        let mut referrals = KeysetStore::new("updateTime", "eventId");
        for e in super::referral::script(config.referral.referrals, config.seed)
            .iter()
            .filter(|e| e.teller == super::referral::Teller::Enforcement)
        {
            referrals.insert(super::referral::enforcement_event(e));
        }
        Self {
            referrals: Arc::new(referrals),
            state: Arc::new(Mutex::new(state)),
            started: Instant::now(),
            changes_per_sec: config.enforcement.changes_per_sec,
            change_limit: config.change_limit.unwrap_or(u64::MAX),
            faults,
            queues,
        }
    }

    /// The case system as a source (subject to the source faults).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/enforcement/api/decisions", axum::routing::get(list))
            .route(
                "/enforcement/api/referral-events",
                axum::routing::get(referral_events),
            )
            .with_state(self.clone())
    }

    /// Control: an officer changes (lowers the fine of) or revokes a
    /// decision now.
    pub fn control_router(&self) -> Router {
        Router::new()
            .route(
                "/enforcement/api/decisions/{id}/{action}",
                axum::routing::post(act),
            )
            .with_state(self.clone())
    }

    /// The case system as a receiver of licence notices.
    pub fn queue_router(&self) -> Router {
        Router::new()
            .route(
                "/enforcement/api/queues/{team}/licences",
                axum::routing::post(receive_licence).get(queue),
            )
            .with_state(self.clone())
    }

    fn advance(&self, state: &mut EnforcementState) {
        let due = ((self.started.elapsed().as_secs_f64() * self.changes_per_sec) as u64)
            .min(self.change_limit);
        while state.applied < due {
            state.applied += 1;
            let now = chrono::Utc::now();
            if state.rng.f64() < 0.7 || state.latest.is_empty() {
                let d = new_decision(state, now, now);
                state.insert(d);
            } else {
                let n = state.rng.usize(..state.latest.len());
                let Some(current) = state.latest.values().nth(n).cloned() else {
                    continue;
                };
                if current["action"] == "撤销" {
                    continue;
                }
                let revoke = state.rng.f64() < 0.3;
                let d = changed(&current, revoke, now);
                state.insert(d);
            }
        }
    }
}

impl EnforcementState {
    fn insert(&mut self, decision: Value) {
        let id = decision["decisionId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.latest.insert(id, decision.clone());
        self.decisions.insert(decision);
    }
}

/// A new version of `current`: a lower fine, or a revocation.
pub(crate) fn changed(current: &Value, revoke: bool, now: chrono::DateTime<chrono::Utc>) -> Value {
    let mut d = current.clone();
    let version = d["version"].as_i64().unwrap_or(1) + 1;
    d["version"] = json!(version);
    d["recordId"] = json!(format!(
        "{}-v{version}",
        d["decisionId"].as_str().unwrap_or_default()
    ));
    d["bgsj"] = json!(people::local(now, false));
    d["updateTime"] = json!(people::local(now, true));
    if revoke {
        d["action"] = json!("撤销");
        d["bz"] = json!("经复议，原处罚决定予以撤销");
    } else {
        d["action"] = json!("变更");
        d["fkje"] = json!("1000");
        d["cfnr"] = json!("变更为罚款人民币1000元");
        d["bz"] = json!("经听证，减轻处罚");
    }
    d
}

/// Long because one generated penalty decision with every field a case
/// system sends, in its layout's order.
pub(crate) fn new_decision(
    state: &mut EnforcementState,
    decided: chrono::DateTime<chrono::Utc>,
    entered: chrono::DateTime<chrono::Utc>,
) -> Value {
    let i = state.next;
    state.next += 1;
    let rng = &mut state.rng;
    let (violation, facts, basis, categories, industry) = CASES[rng.usize(..CASES.len())];
    let kind = rng.usize(..10);
    let year = decided
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y")
        .to_string();
    let (open, close) = [("〔", "〕"), ("【", "】"), ("[", "]")][rng.usize(..3)];
    let fine = FINES[i as usize % FINES.len()];
    // Companies name their legal representative and (mostly) the
    // representative's ID; an individual business sometimes has no credit
    // code, and then its operator's ID identifies it.
    let dsr = if kind < 6 {
        let (name, code) = people::company(rng);
        let mut c = json!({"mc": name, "lb": "1", "tyshxydm": code, "fddbr": people::person(rng)});
        if kind < 4 {
            c["fddbrzjlx"] = json!("身份证");
            c["fddbrzjhm"] = json!(people::resident_id(rng));
        }
        c
    } else if kind < 7 {
        json!({"mc": format!("宜昌高新区{}经营部", people::person(rng)), "lb": "2", "tyshxydm": people::credit_code(rng, "92"), "fddbr": people::person(rng)})
    } else if kind < 8 {
        let operator = people::person(rng);
        json!({"mc": format!("宜昌高新区{operator}经营部"), "lb": "2", "fddbr": operator, "fddbrzjlx": "身份证", "fddbrzjhm": people::resident_id(rng)})
    } else {
        json!({"mc": people::person(rng), "lb": "3", "zjlx": "身份证", "zjhm": people::resident_id(rng)})
    };
    let fines = categories.contains(&"罚款");
    // On the spot (简易程序, 行政处罚法 art. 51): a warning alone, or a fine
    // of at most 200 yuan.
    let simple = categories.len() == 1
        && (!fines || Decimal::from_str(fine).is_ok_and(|f| f <= Decimal::from(200)));
    // The case system's class (失信程度, 国家发展改革委令2025年第36号), by
    // its own sector standard (here: 10万元 and more is 巨额); one decision
    // in five comes without it, for the hub to class or hold.
    let class = if i % 5 == 3 {
        Value::Null
    } else if categories.contains(&"吊销许可证件") {
        json!(["严重", "3"][i as usize % 2])
    } else if simple || !fines {
        json!(["轻微", "1"][i as usize % 2])
    } else if Decimal::from_str(fine).is_ok_and(|f| f >= Decimal::from(100_000)) {
        json!(["严重", "3"][i as usize % 2])
    } else {
        json!(["一般", "2"][i as usize % 2])
    };
    // The case's process as the case system records it (全过程记录,
    // 国办发〔2018〕118号): two officers with certificates (行政处罚法 art.
    // 42), opened, told (art. 44), a hearing where a licence is revoked
    // (art. 63), served on the day (art. 61). Legal review (art. 58) for a
    // revocation or a fine of 10万元 or more, passed the day before — except
    // now and then one whose review has no conclusion yet, which the hub
    // holds from publication.
    let revokes = categories.contains(&"吊销许可证件");
    let major =
        revokes || (fines && Decimal::from_str(fine).is_ok_and(|f| f >= Decimal::from(100_000)));
    let review = if !major {
        json!({"sfxy": "否"})
    } else if i % 17 == 5 && !revokes {
        json!({"sfxy": "是", "jg": ""})
    } else {
        json!({"sfxy": "是", "jg": "通过", "sj": people::local(decided - chrono::Duration::days(1), false)})
    };
    let officer = |rng: &mut fastrand::Rng| {
        (
            people::person(rng),
            format!("4205{:07}", rng.u32(..10_000_000)),
        )
    };
    let (a, b) = (officer(rng), officer(rng));
    let day = |d: i64| people::local(decided - chrono::Duration::days(d), false);
    let process = json!({
        "qlsxbm": format!("XZCF-{:04}", CASES.iter().position(|c| c.0 == violation).unwrap_or(0) + 1),
        "zfry": [a.0, b.0],
        "zfzh": [a.1, b.1],
        "lasj": if simple { people::local(decided, false) } else { day(20) },
        "gzsj": if simple { Value::Null } else { json!(day(7)) },
        "tzsj": if revokes { json!(day(3)) } else { Value::Null },
        "sdsj": people::local(decided, false),
        "fzsh": review,
        "gsjd": "公开",
    });
    let mut d = json!({
        "recordId": format!("CF{}{:05}-v1", &year, i),
        "decisionId": format!("CF{}{:05}", &year, i),
        "version": 1,
        "action": "新增",
        "wsh": format!("宜高综执罚决字{open}{year}{close}第{:04}号", 100 + i),
        "dsr": dsr,
        "wfxw": violation,
        "wfss": format!("经查，当事人{violation}，{facts}。"),
        "cfyj": basis,
        "cflb": categories,
        "cfnr": if fines { format!("罚款人民币{fine}元") } else { "警告".to_owned() },
        "fkje": if fines { json!(fine) } else { Value::Null },
        "mswfsd": if categories.contains(&"没收违法所得") { json!("5600.00") } else { Value::Null },
        "zkdx": if categories.contains(&"吊销许可证件") { json!("吊销《危险化学品经营许可证》") } else { Value::Null },
        "jdrq": decided.with_timezone(&chrono_tz::Asia::Shanghai).format("%Y-%m-%d").to_string(),
        "cfjg": AUTHORITY.0,
        "cfjgdm": AUTHORITY.1,
        "sjly": AUTHORITY.0,
        "sjlydm": AUTHORITY.1,
        "hyly": industry,
        "qjyz": if categories.contains(&"吊销许可证件") || rng.f64() < 0.15 { "1" } else { "0" },
        "cfcx": if simple { "简易" } else { "普通" },
        "sxcd": class,
        "bz": "",
        "updateTime": people::local(entered, true),
    });
    for (k, v) in process.as_object().expect("an object") {
        d[k] = v.clone();
    }
    d
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    updated_after: Option<String>,
    after_id: Option<String>,
    page_size: Option<usize>,
}

async fn list(
    State(system): State<EnforcementSystem>,
    Query(q): Query<ListQuery>,
) -> axum::Json<Value> {
    let size = q.page_size.unwrap_or(100).clamp(1, 1000);
    let rows = {
        let mut state = system.state.lock().expect("enforcement lock");
        system.advance(&mut state);
        state
            .decisions
            .after(q.updated_after.as_deref(), q.after_id.as_deref(), size)
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if system.faults.duplicate() {
            out.push(row.clone());
        }
        out.push(row);
    }
    axum::Json(json!({ "code": 0, "data": { "records": out } }))
}

async fn referral_events(
    State(system): State<EnforcementSystem>,
    Query(q): Query<ListQuery>,
) -> axum::Json<Value> {
    let size = q.page_size.unwrap_or(100).clamp(1, 1000);
    let rows = system
        .referrals
        .after(q.updated_after.as_deref(), q.after_id.as_deref(), size);
    axum::Json(json!({ "code": 0, "data": { "records": rows } }))
}

async fn act(
    State(system): State<EnforcementSystem>,
    Path((id, action)): Path<(String, String)>,
) -> axum::http::StatusCode {
    let mut state = system.state.lock().expect("enforcement lock");
    let Some(current) = state.latest.get(&id).cloned() else {
        return axum::http::StatusCode::NOT_FOUND;
    };
    let d = changed(&current, action == "revoke", chrono::Utc::now());
    state.insert(d);
    axum::http::StatusCode::NO_CONTENT
}

async fn receive_licence(
    State(system): State<EnforcementSystem>,
    Path(team): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    system.queues.receive(&team, &headers, &body)
}

async fn queue(
    State(system): State<EnforcementSystem>,
    Path(team): Path<String>,
) -> axum::Json<Value> {
    axum::Json(system.queues.view(&team))
}

impl crate::Simulator for EnforcementSystem {
    fn routes(&self) -> Router {
        self.router()
    }

    fn receiving(&self) -> Router {
        self.queue_router().merge(self.control_router())
    }
}
