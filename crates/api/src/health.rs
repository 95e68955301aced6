//! `GET /healthz` (the process is up) and `GET /readyz` (it can serve: database reachable and
//! migrated). Neither needs authentication; neither says more than its status.

use crate::ApiState;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub fn routes() -> Router<ApiState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "UP" }))
}

async fn readyz(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    match state.platform.store().check_ready().await {
        Ok(()) => Ok(Json(json!({ "status": "READY" }))),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "NOT_READY", "the database is not ready"))
        }
    }
}
