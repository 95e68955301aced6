//! `/admin/v1`: onboarding issuers and their keys (platform.md §Onboarding).
//!
//! Protected by the bearer token `CARDPLANE_ADMIN_TOKEN`; with no token configured, the admin API
//! answers only to loopback peers, so a sandbox on a laptop needs no setup and a server reachable
//! from elsewhere is not open by accident.

pub mod wire;

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::StrictJson;
use crate::openapi::{AdminErrors, IssuerPath, OperationPath};
use axum::Json;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cardplane_domain::delivery::DeliveryState;
use cardplane_domain::ids::IssuerId;
use std::net::SocketAddr;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wire::{IssuerList, IssuerView, JwkSet, OnboardingRequest, PublicJwk};

/// Every admin route, each registered from its handler's `#[utoipa::path]`, but one:
/// `{operationId}:redeliver` puts a parameter and a literal in one path segment, which the router
/// cannot match, so it is served by [`redeliver_route`] and described by [`redeliver`]'s attribute
/// (listed in the document's `paths`).
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_issuers))
        .routes(routes!(onboard_issuer, get_issuer))
        .routes(routes!(encryption_keys))
        .routes(routes!(rotate_encryption_key))
        .routes(routes!(rotate_encryption_key_slash))
        .routes(routes!(notifications))
        .routes(routes!(redeliver_slash))
        .route(redeliver_route::PATH, post(redeliver))
}

/// The route that serves `POST /admin/v1/notifications/{operationId}:redeliver`.
pub mod redeliver_route {
    /// Matches any last segment; the handler refuses those without the `:redeliver` suffix.
    pub const PATH: &str = "/admin/v1/notifications/{operation_action}";
}

/// The query of [`notifications`].
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct NotificationQuery {
    /// Only the notifications in this delivery state.
    #[param(value_type = Option<crate::openapi::DeliveryStatus>)]
    status: Option<String>,
}

/// List an issuer's notifications
///
/// The issuer's notifications in the order they happened, each as it is sent and with its delivery
/// record (platform.md §Onboarding).
#[utoipa::path(get, path = "/admin/v1/issuers/{issuerId}/notifications", tag = "admin",
    params(IssuerPath, NotificationQuery), security(("adminToken" = []), ()),
    responses((status = 200, description = "The notifications.", body = wire::Notifications), AdminErrors))]
async fn notifications(
    State(state): State<ApiState>,
    Path(raw_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<wire::Notifications>, ApiError> {
    let mut status = None;
    for (name, value) in query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
    {
        match name {
            "status" => {
                status = Some(
                    DeliveryState::parse(value)
                        .ok_or_else(|| ApiError::invalid_field("status", "must be PENDING, DELIVERED or DEAD"))?,
                );
            }
            _ => return Err(ApiError::invalid_field(name, "is not a query parameter of this call (only status)")),
        }
    }
    let deliveries = state.platform.deliveries(issuer_id(raw_id)?, status).await?;
    Ok(Json(wire::Notifications { notifications: deliveries.iter().map(Into::into).collect() }))
}

/// Redeliver a notification
///
/// Queues the notification again, whatever its state, with a fresh retry schedule. 202: it is
/// queued, not yet delivered.
#[utoipa::path(post, path = "/admin/v1/notifications/{operationId}:redeliver", tag = "admin",
    params(OperationPath), security(("adminToken" = []), ()),
    responses((status = 202, description = "Queued for delivery."), AdminErrors))]
pub(crate) async fn redeliver(
    State(state): State<ApiState>,
    Path(action): Path<String>,
) -> Result<StatusCode, ApiError> {
    let Some(operation_id) = action.strip_suffix(":redeliver") else {
        return Err(ApiError::not_found("NOT_FOUND", "no such route"));
    };
    redeliver_operation(&state, operation_id.to_owned()).await
}

/// Redeliver a notification (`/redeliver`)
///
/// The same call as `{operationId}:redeliver`, for clients that cannot send a colon in a path.
#[utoipa::path(post, path = "/admin/v1/notifications/{operationId}/redeliver", tag = "admin",
    params(OperationPath), security(("adminToken" = []), ()),
    responses((status = 202, description = "Queued for delivery."), AdminErrors))]
async fn redeliver_slash(
    State(state): State<ApiState>,
    Path(operation_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    redeliver_operation(&state, operation_id).await
}

async fn redeliver_operation(state: &ApiState, operation_id: String) -> Result<StatusCode, ApiError> {
    if operation_id.is_empty() || operation_id.len() > 64 {
        return Err(ApiError::not_found("OPERATION_NOT_FOUND", "no notification has this operationId"));
    }
    if state.platform.redeliver(operation_id).await? {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::not_found("OPERATION_NOT_FOUND", "no notification has this operationId"))
    }
}

/// Who may call the admin API.
#[derive(Clone)]
pub struct AdminAccess {
    token: Option<std::sync::Arc<str>>,
}

impl AdminAccess {
    /// `token`: the bearer token callers must present; `None` to allow loopback callers only.
    pub fn new(token: Option<String>) -> Self {
        Self { token: token.filter(|t| !t.is_empty()).map(Into::into) }
    }
}

/// Compares in time independent of where the inputs differ, so the token cannot be guessed byte
/// by byte from response times.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

pub async fn guard(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    match &state.admin.token {
        Some(expected) => {
            let given = request
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            if !given.is_some_and(|given| same_secret(given.as_bytes(), expected.as_bytes())) {
                let mut response = ApiError::unauthorized("a valid admin bearer token is required").into_response();
                response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
        }
        None => {
            let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
            if !peer.is_some_and(|ip| ip.is_loopback()) {
                return ApiError::forbidden(
                    "ADMIN_LOOPBACK_ONLY",
                    "the admin API answers only on loopback unless CARDPLANE_ADMIN_TOKEN is set",
                )
                .into_response();
            }
        }
    }
    next.run(request).await
}

fn issuer_id(raw: String) -> Result<IssuerId, ApiError> {
    Ok(IssuerId::parse(raw)?)
}

/// Onboard an issuer
///
/// Creates the issuer, or replaces its settings; its first encryption key is made on creation.
/// The same body is accepted by `[[issuers]]` in the TOML configuration and `cardplane issuer add`.
#[utoipa::path(put, path = "/admin/v1/issuers/{issuerId}", tag = "admin",
    params(IssuerPath), request_body = OnboardingRequest, security(("adminToken" = []), ()),
    responses((status = 200, description = "The issuer as stored.", body = IssuerView), AdminErrors))]
async fn onboard_issuer(
    State(state): State<ApiState>,
    Path(raw_id): Path<String>,
    StrictJson(request): StrictJson<OnboardingRequest>,
) -> Result<Json<IssuerView>, ApiError> {
    let id = issuer_id(raw_id)?;
    if request.issuer_id.as_deref().is_some_and(|body_id| body_id != id.as_str()) {
        return Err(ApiError::invalid_field("issuerId", "must equal the issuerId of the path"));
    }
    let onboarding = request.into_domain()?;
    let onboarded = state.platform.onboard_issuer(id, onboarding).await?;
    tracing::info!(issuer = %onboarded.issuer.id, "issuer onboarded");
    Ok(Json(IssuerView::from(&onboarded)))
}

/// Get an issuer
#[utoipa::path(get, path = "/admin/v1/issuers/{issuerId}", tag = "admin",
    params(IssuerPath), security(("adminToken" = []), ()),
    responses((status = 200, description = "The issuer; its client secret is never shown.", body = IssuerView), AdminErrors))]
async fn get_issuer(State(state): State<ApiState>, Path(raw_id): Path<String>) -> Result<Json<IssuerView>, ApiError> {
    let onboarded = state.platform.issuer(issuer_id(raw_id)?).await?;
    Ok(Json(IssuerView::from(&onboarded)))
}

/// List the issuers
#[utoipa::path(get, path = "/admin/v1/issuers", tag = "admin", security(("adminToken" = []), ()),
    responses((status = 200, description = "Every onboarded issuer.", body = IssuerList), AdminErrors))]
async fn list_issuers(State(state): State<ApiState>) -> Result<Json<IssuerList>, ApiError> {
    let issuers = state.platform.issuers().await?;
    Ok(Json(IssuerList { issuers: issuers.iter().map(IssuerView::from).collect() }))
}

/// Get an issuer's encryption keys
///
/// The public keys an issuer encrypts `encryptedData` to, the active one first.
#[utoipa::path(get, path = "/admin/v1/issuers/{issuerId}/encryption-keys", tag = "admin",
    params(IssuerPath), security(("adminToken" = []), ()),
    responses((status = 200, description = "A JWK set.", body = JwkSet), AdminErrors))]
async fn encryption_keys(State(state): State<ApiState>, Path(raw_id): Path<String>) -> Result<Json<JwkSet>, ApiError> {
    let keys = state.platform.encryption_keys(issuer_id(raw_id)?).await?;
    Ok(Json(JwkSet::encryption(&keys)))
}

/// Rotate an issuer's encryption key
///
/// Makes a new active key; the old ones keep decrypting what was encrypted to them.
#[utoipa::path(post, path = "/admin/v1/issuers/{issuerId}/encryption-keys:rotate", tag = "admin",
    params(IssuerPath), security(("adminToken" = []), ()),
    responses((status = 200, description = "The new active key.", body = PublicJwk), AdminErrors))]
async fn rotate_encryption_key(
    State(state): State<ApiState>,
    Path(raw_id): Path<String>,
) -> Result<(StatusCode, Json<PublicJwk>), ApiError> {
    let key = state.platform.rotate_encryption_key(issuer_id(raw_id)?).await?;
    Ok((StatusCode::OK, Json(PublicJwk::encryption(&key))))
}

/// Rotate an issuer's encryption key (`/rotate`)
///
/// The same call as `encryption-keys:rotate`, for clients that cannot send a colon in a path.
#[utoipa::path(post, path = "/admin/v1/issuers/{issuerId}/encryption-keys/rotate", tag = "admin",
    params(IssuerPath), security(("adminToken" = []), ()),
    responses((status = 200, description = "The new active key.", body = PublicJwk), AdminErrors))]
async fn rotate_encryption_key_slash(
    state: State<ApiState>,
    path: Path<String>,
) -> Result<(StatusCode, Json<PublicJwk>), ApiError> {
    rotate_encryption_key(state, path).await
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"token", b"token"));
        assert!(!same_secret(b"token", b"tokem"));
        assert!(!same_secret(b"tok", b"token"));
        assert!(!same_secret(b"", b"token"));
    }
}
