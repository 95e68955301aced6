//! `GET /healthz` (the process is up) and `GET /readyz` (it can serve: database reachable and
//! migrated). Neither needs authentication; neither says more than its status.

use crate::ApiState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz))
}

/// What a probe answers.
#[derive(Serialize, ToSchema)]
pub struct ProbeStatus {
    /// `UP` (liveness) or `READY` (readiness).
    #[schema(pattern = "^(UP|READY)$")]
    status: &'static str,
}

/// Liveness
///
/// The process is up. The no-op route the benchmarks measure against.
#[utoipa::path(get, path = "/healthz", tag = "probes",
    responses((status = 200, description = "Up.", body = ProbeStatus)))]
async fn healthz() -> Json<ProbeStatus> {
    Json(ProbeStatus { status: "UP" })
}

/// Readiness
///
/// The database is reachable and every migration this binary knows is applied.
#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses(
        (status = 200, description = "Ready.", body = ProbeStatus),
        (status = 503, description = "Not ready (`NOT_READY`).", body = crate::openapi::ErrorEnvelope),
    ))]
async fn readyz(State(state): State<ApiState>) -> Result<Json<ProbeStatus>, ApiError> {
    match state.platform.store().check_ready().await {
        Ok(()) => Ok(Json(ProbeStatus { status: "READY" })),
        Err(error) => {
            tracing::warn!(%error, "not ready");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "NOT_READY", "the database is not ready"))
        }
    }
}
