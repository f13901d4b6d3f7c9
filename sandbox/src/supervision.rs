//! The 司法行政部门's enforcement supervision platform (行政执法监督平台,
//! 《行政执法监督条例》, 国务院令第825号): it takes enforcement acts in
//! batches (`POST /supervision/api/acts/batch`, `{"records": […]}`) and
//! answers record by record, as the credit platform does, with a receipt
//! number. It refuses an act without a decision number, without two
//! officers holding certificate numbers (行政处罚法 art. 42), or carrying
//! a full resident ID number. `GET /supervision/api/received` shows what
//! it holds. [check] The real platform's layout is not public here; this
//! is the layout the hub sends (`supervision_act`).

use axum::Router;
use axum::extract::State;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct State_ {
    acts: BTreeMap<String, Value>,
    rejected: Vec<Value>,
    batches: u64,
    duplicates: u64,
}

/// The simulated supervision platform.
#[derive(Debug, Clone, Default)]
pub struct SupervisionPlatform {
    state: Arc<Mutex<State_>>,
}

impl SupervisionPlatform {
    pub fn router(&self) -> Router {
        Router::new()
            .route("/supervision/api/acts/batch", axum::routing::post(batch))
            .route("/supervision/api/received", axum::routing::get(received))
            .with_state(self.clone())
    }

    /// How many acts it holds.
    pub fn acts(&self) -> usize {
        self.state.lock().expect("supervision lock").acts.len()
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
    let records = body
        .get("records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut state = p.state.lock().expect("supervision lock");
    state.batches += 1;
    let mut results = Vec::with_capacity(records.len());
    for r in records {
        let key = r
            .get("idempotency_key")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if key.is_empty() {
            results.push(json!({"status": "REJECTED", "reason": "缺少 idempotency_key"}));
            continue;
        }
        if state.acts.contains_key(&key) {
            state.duplicates += 1;
            results.push(json!({"idempotency_key": key, "status": "ACCEPTED", "duplicate": true}));
            continue;
        }
        match check(&r) {
            Ok(()) => {
                state.acts.insert(key.clone(), r);
                let receipt_no = format!("JD{:08}", state.acts.len());
                results.push(
                    json!({"idempotency_key": key, "status": "ACCEPTED", "receipt_no": receipt_no}),
                );
            }
            Err(reason) => {
                state.rejected.push(json!({"key": key, "reason": reason}));
                results
                    .push(json!({"idempotency_key": key, "status": "REJECTED", "reason": reason}));
            }
        }
    }
    axum::Json(json!({"code": 0, "results": results}))
}

async fn received(State(p): State<SupervisionPlatform>) -> axum::Json<Value> {
    let state = p.state.lock().expect("supervision lock");
    axum::Json(json!({
        "acts": state.acts,
        "rejected": state.rejected,
        "batches": state.batches,
        "duplicates": state.duplicates,
    }))
}
