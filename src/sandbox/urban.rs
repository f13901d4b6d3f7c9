//! Digital urban management (数字化城管) simulator: the vendor's case list
//! API, JSON over HTTP, in the export layout of the shared workload.
//!
//! `GET /dcm/api/cases` pages by keyset (`updatedAfter` + `afterTaskNum`,
//! strictly after, ordered by update time then case number) or by page
//! number (`updatedSince` inclusive + `page`, 1-based). Cases keep arriving
//! and changing state while the hub reads: a changed case moves to the end
//! of the update-time order, as the vendor's system does.

use super::{FaultPlan, SandboxConfig};
use crate::ident::with_uscc_checks;
use axum::Router;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const SUBTYPES: &[(&str, &str, &str)] = &[
    ("01", "01", "暴露垃圾"),
    ("01", "02", "积存渣土"),
    ("01", "03", "私搭乱建"),
    ("02", "01", "非法小广告"),
    ("02", "02", "违规户外广告"),
    ("03", "01", "施工占道"),
    ("03", "02", "工地扬尘"),
    ("03", "03", "渣土运输撒漏"),
    ("05", "01", "占道经营"),
    ("05", "02", "无照经营游商"),
    ("05", "03", "店外经营"),
];
const STREETS: &[&str] = &[
    "发展大道",
    "东湖大道",
    "峡州路",
    "港窑路",
    "城东大道",
    "兰台路",
    "沿江大道",
];
const PARTIES: &[&str] = &[
    "宜昌华强建材有限公司",
    "湖北三峡渣土运输有限公司",
    "宜昌市东山餐饮店",
    "宜昌新城广告传媒有限公司",
    "白洋港物流有限公司",
    "宜昌高新区某某便利店",
];
const REPORTERS: &[&str] = &["张伟", "王芳", "李娜", "刘洋", "陈静"];
const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// The vendor system's state: cases by (update time, case number).
#[derive(Debug)]
struct Store {
    by_update: BTreeMap<(String, String), Value>,
    /// Case number → its current update time.
    index: BTreeMap<String, String>,
    next_case: u64,
    applied_changes: u64,
    rng: fastrand::Rng,
}

/// The simulated system.
#[derive(Debug, Clone)]
pub struct UrbanSystem {
    store: Arc<Mutex<Store>>,
    started: Instant,
    changes_per_sec: u32,
    bad_rate: f64,
    faults: FaultPlan,
}

fn now_text() -> String {
    chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

impl UrbanSystem {
    pub fn new(config: &SandboxConfig, faults: FaultPlan) -> Self {
        let mut store = Store {
            by_update: BTreeMap::new(),
            index: BTreeMap::new(),
            next_case: 0,
            applied_changes: 0,
            rng: fastrand::Rng::with_seed(config.seed),
        };
        let start = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai)
            - chrono::Duration::hours(24);
        for i in 0..config.urban_cases {
            let at = start
                + chrono::Duration::milliseconds(
                    (i as i64) * 86_400_000 / config.urban_cases.max(1) as i64,
                );
            let update = at.format("%Y-%m-%d %H:%M:%S%.3f").to_string();
            let case = new_case(
                &mut store,
                config.bad_rate,
                &at.format("%Y-%m-%d %H:%M:%S").to_string(),
                &update,
            );
            insert(&mut store, case);
        }
        Self {
            store: Arc::new(Mutex::new(store)),
            started: Instant::now(),
            changes_per_sec: config.urban_changes_per_sec,
            bad_rate: config.bad_rate,
            faults,
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/dcm/api/cases", axum::routing::get(list_cases))
            .with_state(self.clone())
    }

    /// Applies the arrivals and state changes due by now.
    fn advance(&self, store: &mut Store) {
        let due = (self.started.elapsed().as_secs_f64() * f64::from(self.changes_per_sec)) as u64;
        while store.applied_changes < due {
            store.applied_changes += 1;
            let update = now_text();
            if store.rng.f64() < 0.7 || store.index.is_empty() {
                let created = update[..19].to_owned();
                let case = new_case(store, self.bad_rate, &created, &update);
                insert(store, case);
            } else {
                // A case moves on in its life cycle.
                let n = store.rng.usize(..store.index.len());
                let task = store.index.keys().nth(n).cloned().expect("an index entry");
                let old_update = store.index[&task].clone();
                let mut case = store
                    .by_update
                    .remove(&(old_update, task.clone()))
                    .expect("indexed case");
                let next = match case["eventStateId"].as_str() {
                    Some("1") => "3",
                    Some("3") => "4",
                    Some("4") => "5",
                    Some("5") => "6",
                    Some(other) => other,
                    None => "1",
                }
                .to_owned();
                case["eventStateId"] = Value::String(next);
                case["updateTime"] = Value::String(update);
                insert(store, case);
            }
        }
    }
}

fn insert(store: &mut Store, case: Value) {
    let task = case["taskNum"].as_str().unwrap_or_default().to_owned();
    let update = case["updateTime"].as_str().unwrap_or_default().to_owned();
    store.index.insert(task.clone(), update.clone());
    store.by_update.insert((update, task), case);
}

fn new_case(store: &mut Store, bad_rate: f64, created: &str, update: &str) -> Value {
    let i = store.next_case;
    store.next_case += 1;
    let rng = &mut store.rng;
    let (main, sub, name) = SUBTYPES[rng.usize(..SUBTYPES.len())];
    let source = ["1", "2", "3", "4"][rng.usize(..4)];
    let state = ["1", "3", "4", "5", "6"][rng.usize(..5)];
    let mut case = json!({
        "taskNum": format!("YC{:08}", 50_000_000 + i),
        "eventSrcId": source,
        "eventTypeId": "2",
        "mainTypeId": main,
        "subTypeId": sub,
        "subTypeName": name,
        "cellId": format!("42050200{:04}{:02}", rng.u32(1..300), rng.u32(1..20)),
        "address": format!("宜昌市高新区{}{}号附近", STREETS[rng.usize(..STREETS.len())], rng.u32(1..999)),
        "coordX": format!("{:.6}", 111.28 + rng.f64() * 0.2),
        "coordY": format!("{:.6}", 30.65 + rng.f64() * 0.15),
        "eventDesc": format!("巡查发现{name}，影响市容秩序，请及时处置。"),
        "createTime": created,
        "updateTime": update,
        "eventStateId": state,
        "reporter": REPORTERS[rng.usize(..REPORTERS.len())],
    });
    if rng.f64() < 0.6 {
        let body: String = (0..8)
            .map(|_| ALPHABET[rng.usize(..ALPHABET.len())] as char)
            .collect();
        let prefix = ["420500", "420502", "420503", "420506"][rng.usize(..4)];
        case["partyName"] = json!(PARTIES[rng.usize(..PARTIES.len())]);
        case["partyCreditCode"] =
            json!(with_uscc_checks(&format!("91{prefix}{body}")).unwrap_or_default());
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
    let mut store = system.store.lock().expect("store lock");
    system.advance(&mut store);
    let rows: Vec<Value> = match q.page {
        // Page mode: a fixed `updatedSince`, offset paging.
        Some(page) => {
            let since = q.updated_since.unwrap_or_default();
            store
                .by_update
                .range((since, String::new())..)
                .skip(page.saturating_sub(1) * size)
                .take(size)
                .map(|(_, v)| v.clone())
                .collect()
        }
        // Keyset mode: strictly after (updatedAfter, afterTaskNum).
        None => match (q.updated_after, q.after_task_num) {
            (Some(t), Some(id)) => store
                .by_update
                .range((
                    std::ops::Bound::Excluded((t, id)),
                    std::ops::Bound::Unbounded,
                ))
                .take(size)
                .map(|(_, v)| v.clone())
                .collect(),
            (Some(t), None) => store
                .by_update
                .range((t, String::from("\u{10FFFF}"))..)
                .take(size)
                .map(|(_, v)| v.clone())
                .collect(),
            _ => store.by_update.values().take(size).cloned().collect(),
        },
    };
    drop(store);
    let mut out = Vec::with_capacity(rows.len() + 4);
    for row in rows {
        if system.faults.duplicate() {
            out.push(row.clone());
        }
        out.push(row);
    }
    axum::Json(json!({ "code": 0, "msg": "成功", "data": { "rows": out, "pageSize": size } }))
}
