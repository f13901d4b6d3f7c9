//! A Confluent-compatible schema registry, in memory: enough of the REST
//! API for the hub to register its schemas and for consumers to fetch them
//! by id.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct Registry {
    /// Global ids by schema text (the same schema has one id everywhere).
    ids: BTreeMap<String, u32>,
    /// Subject → schema ids, in version order.
    subjects: BTreeMap<String, Vec<u32>>,
}

#[derive(Debug, Clone, Default)]
pub struct SchemaRegistry {
    inner: Arc<Mutex<Registry>>,
}

#[derive(Debug, Deserialize)]
struct RegisterBody {
    schema: String,
}

impl SchemaRegistry {
    pub fn router(&self) -> Router {
        Router::new()
            .route("/subjects", axum::routing::get(subjects))
            .route(
                "/subjects/{subject}/versions",
                axum::routing::post(register),
            )
            .route("/schemas/ids/{id}", axum::routing::get(by_id))
            .with_state(self.clone())
    }
}

async fn register(
    State(reg): State<SchemaRegistry>,
    Path(subject): Path<String>,
    axum::Json(body): axum::Json<RegisterBody>,
) -> impl IntoResponse {
    if apache_avro::Schema::parse_str(&body.schema).is_err() {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"error_code": 42201, "message": "Invalid schema"})),
        );
    }
    let mut r = reg.inner.lock().expect("registry lock");
    let next = r.ids.len() as u32 + 1;
    let id = *r.ids.entry(body.schema).or_insert(next);
    let versions = r.subjects.entry(subject).or_default();
    if !versions.contains(&id) {
        versions.push(id);
    }
    (StatusCode::OK, axum::Json(json!({ "id": id })))
}

async fn by_id(State(reg): State<SchemaRegistry>, Path(id): Path<u32>) -> impl IntoResponse {
    let r = reg.inner.lock().expect("registry lock");
    match r.ids.iter().find(|(_, v)| **v == id) {
        Some((schema, _)) => (StatusCode::OK, axum::Json(json!({ "schema": schema }))),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error_code": 40403, "message": "Schema not found"})),
        ),
    }
}

async fn subjects(State(reg): State<SchemaRegistry>) -> axum::Json<Vec<String>> {
    axum::Json(
        reg.inner
            .lock()
            .expect("registry lock")
            .subjects
            .keys()
            .cloned()
            .collect(),
    )
}
