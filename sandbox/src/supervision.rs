//! The 司法行政部门's enforcement supervision platform (行政执法监督平台,
//! 《行政执法监督条例》, 国务院令第825号): it takes enforcement acts in
//! batches (`POST /supervision/api/acts/batch`, `{"records": […]}`) and
//! answers record by record, as the credit platform does, with a receipt
//! number. It refuses an act without a decision number, without two
//! officers holding certificate numbers (行政处罚法 art. 42), or carrying
//! a full resident ID number. It takes the rates the supervisor watches
//! per month and power-list item the same way
//! (`POST /supervision/api/rates/batch`), refusing a row without its month,
//! item or counts. `GET /supervision/api/received` shows what it holds, and
//! `rates` there the latest counts of each month and item. [check] The real platform's layout is not public here; this
//! is the layout the hub sends (`supervision_act`).

use axum::Router;
use axum::extract::State;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The simulated supervision platform.
#[derive(Debug, Clone, Default)]
pub struct SupervisionPlatform {
    state: Arc<Mutex<crate::receiver::Batches>>,
    rates: Arc<Mutex<crate::receiver::Batches>>,
}

impl SupervisionPlatform {
    pub fn router(&self) -> Router {
        Router::new()
            .route("/supervision/api/acts/batch", axum::routing::post(batch))
            .route(
                "/supervision/api/rates/batch",
                axum::routing::post(rates_batch),
            )
            .route("/supervision/api/received", axum::routing::get(received))
            .with_state(self.clone())
    }

    /// How many acts it holds.
    pub fn acts(&self) -> usize {
        self.state.lock().expect("supervision lock").accepted.len()
    }
}

/// The platform's checks of one act.
fn check(r: &Value) -> Result<(), String> {
    if r.get("decision_no")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("缺少决定书文号".into());
    }
    let officers = r.get("officers").and_then(Value::as_array);
    let certified = officers.map_or(0, |o| {
        o.iter()
            .filter(|x| {
                x.get("certificate_no")
                    .and_then(Value::as_str)
                    .is_some_and(|c| !c.is_empty())
            })
            .count()
    });
    if certified < 2 {
        return Err("执法人员少于两名或缺少执法证号（行政处罚法第四十二条）".into());
    }
    if !duijie::personal::full_ids(&r.to_string()).is_empty() {
        return Err("含有未脱敏的身份证号码".into());
    }
    Ok(())
}

async fn batch(
    State(p): State<SupervisionPlatform>,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    let results = p
        .state
        .lock()
        .expect("supervision lock")
        .take(&body, check, "JD", None);
    axum::Json(json!({"code": 0, "results": results}))
}

/// The platform's checks of one rates row.
fn check_rates(r: &Value) -> Result<(), String> {
    for k in ["month", "item"] {
        if r.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(format!("缺少{k}"));
        }
    }
    if !r.get("counts").is_some_and(Value::is_object) {
        return Err("缺少counts".into());
    }
    Ok(())
}

async fn rates_batch(
    State(p): State<SupervisionPlatform>,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    let results = p
        .rates
        .lock()
        .expect("supervision lock")
        .take(&body, check_rates, "JL", None);
    axum::Json(json!({"code": 0, "results": results}))
}

async fn received(State(p): State<SupervisionPlatform>) -> axum::Json<Value> {
    let state = p.state.lock().expect("supervision lock");
    let rates = p.rates.lock().expect("supervision lock");
    // The latest counts of each month and item, by its update time.
    let mut latest: BTreeMap<String, &Value> = BTreeMap::new();
    for r in rates.accepted.values() {
        let id = r.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
        let at = |v: &Value| v.get("updated_at").and_then(Value::as_i64);
        if latest.get(&id).is_none_or(|old| at(r) >= at(old)) {
            latest.insert(id, r);
        }
    }
    axum::Json(json!({
        "acts": state.accepted,
        "rejected": state.rejected,
        "batches": state.batches,
        "duplicates": state.duplicates,
        "rates": latest,
        "rates_rejected": rates.rejected,
    }))
}
