//! `POST /authz/v1/oauth2/token` (inbound.md §1): the JWT-bearer grant of RFC 7523, and the bearer
//! guard every `/banking/**` route sits behind.

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::read_body;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cardplane_app::AppError;
use cardplane_domain::auth::AssertionRefusal;
use cardplane_domain::ids::IssuerId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(token))
}

/// The token request. Parameters it does not know are ignored, as RFC 6749 §3.2 requires of a
/// token endpoint.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer`.
    #[schema(example = "urn:ietf:params:oauth:grant-type:jwt-bearer")]
    pub grant_type: Option<String>,
    /// A compact JWS signed ES256 with one of the issuer's onboarded keys (`kid` in its header):
    /// `iss` = `sub` = the issuerId, `exp` at most 15 minutes ahead, optional `aud`, `iat`, `jti`.
    #[schema(pattern = "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$")]
    pub assertion: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    #[schema(pattern = "^Bearer$")]
    pub token_type: &'static str,
    /// Seconds: 900.
    #[schema(example = 900)]
    pub expires_in: i64,
    pub scope: String,
}

/// An OAuth 2.0 error answer (RFC 6749 §5.2): always 400 here.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthError {
    #[schema(pattern = "^(invalid_request|unsupported_grant_type|invalid_grant)$")]
    pub error: &'static str,
    pub error_description: String,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self { error, error_description: description.into() }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::BAD_REQUEST, Json(self)).into_response();
        no_store(&mut response);
        response
    }
}

/// RFC 6749 §5.1: token answers must not be cached.
fn no_store(response: &mut Response) {
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(PRAGMA, HeaderValue::from_static("no-cache"));
}

/// Get an access token
///
/// The JWT-bearer grant (RFC 7523): an ES256 assertion of the issuer for a bearer access token,
/// valid 900 seconds, for the `/banking` routes of that issuer. The body is form-encoded or JSON.
#[utoipa::path(post, path = "/authz/v1/oauth2/token", tag = "token",
    request_body(content(
        (TokenRequest = "application/x-www-form-urlencoded"),
        (TokenRequest = "application/json"),
    )),
    responses(
        (status = 200, description = "Granted. Not to be cached (`Cache-Control: no-store`).", body = TokenResponse),
        (status = 400, description = "Refused: `invalid_request`, `unsupported_grant_type` or `invalid_grant`.", body = OAuthError),
        (status = 413, description = "The body is over 64 KiB.", body = crate::openapi::ErrorEnvelope),
        (status = 500, description = "An unexpected failure.", body = crate::openapi::ErrorEnvelope),
    ))]
async fn token(State(state): State<ApiState>, request: Request) -> Response {
    match grant(&state, request).await {
        Ok(granted) => {
            let mut response = Json(granted).into_response();
            no_store(&mut response);
            response
        }
        Err(Ok(refusal)) => refusal.into_response(),
        Err(Err(error)) => error.into_response(),
    }
}

async fn grant(state: &ApiState, request: Request) -> Result<TokenResponse, Result<OAuthError, ApiError>> {
    let media = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let body = read_body(request.into_body()).await.map_err(Err)?;
    let parsed: Result<TokenRequest, ()> = match media.as_str() {
        "application/x-www-form-urlencoded" => serde_urlencoded::from_bytes(&body).map_err(|_| ()),
        "application/json" => serde_json::from_slice(&body).map_err(|_| ()),
        _ => {
            return Err(Ok(OAuthError::new(
                "invalid_request",
                "the body must be application/x-www-form-urlencoded or application/json",
            )));
        }
    };
    let parsed = parsed.map_err(|()| Ok(OAuthError::new("invalid_request", "the body could not be parsed")))?;
    match parsed.grant_type.as_deref() {
        None => return Err(Ok(OAuthError::new("invalid_request", "grant_type is required"))),
        Some(JWT_BEARER) => {}
        Some(_) => {
            return Err(Ok(OAuthError::new("unsupported_grant_type", format!("grant_type must be {JWT_BEARER}"))));
        }
    }
    let assertion = parsed.assertion.ok_or_else(|| Ok(OAuthError::new("invalid_request", "assertion is required")))?;
    match state.platform.grant_access_token(&assertion).await {
        Ok(granted) => Ok(TokenResponse {
            access_token: granted.token,
            token_type: "Bearer",
            expires_in: granted.expires_in_seconds,
            scope: granted.scope,
        }),
        Err(AppError::AssertionRefused(refusal)) => {
            tracing::info!(reason = %refusal, "assertion refused");
            let error = match refusal {
                AssertionRefusal::Malformed(_) => "invalid_request",
                _ => "invalid_grant",
            };
            Err(Ok(OAuthError::new(error, refusal.to_string())))
        }
        Err(other) => Err(Err(other.into())),
    }
}

/// The issuer a request was authenticated as (a request extension set by [`require_bearer`]).
#[derive(Debug, Clone)]
pub struct Authenticated(pub IssuerId);

fn unauthorized(description: &str) -> Response {
    let mut response = ApiError::unauthorized(description).into_response();
    response.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer error="invalid_token""#));
    response
}

/// The issuerId a `/banking/v{n}/issuers/{issuerId}/...` path names.
fn path_issuer(path: &str) -> Option<&str> {
    let mut segments = path.split('/').skip(1);
    match (segments.next(), segments.next(), segments.next(), segments.next()) {
        (Some("banking"), Some(_version), Some("issuers"), Some(issuer)) => Some(issuer),
        _ => None,
    }
}

/// Lets a request through only with a genuine, unexpired access token (401 otherwise) of the
/// issuer its path names (403 `ISSUER_MISMATCH` otherwise, whether or not that issuer exists, so a
/// token cannot probe for other issuers).
pub async fn require_bearer(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let Some(token) = token else {
        return unauthorized("a bearer access token is required");
    };
    let Some(issuer) = state.platform.authenticate(token) else {
        return unauthorized("the access token is invalid or expired");
    };
    if path_issuer(request.uri().path()) != Some(issuer.as_str()) {
        return ApiError::forbidden("ISSUER_MISMATCH", "the access token belongs to another issuer").into_response();
    }
    request.extensions_mut().insert(Authenticated(issuer));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::path_issuer;

    #[test]
    fn finds_the_issuer_of_a_banking_path() {
        assert_eq!(path_issuer("/banking/v2/issuers/BANK000001/cards/c1"), Some("BANK000001"));
        assert_eq!(path_issuer("/banking/v1/issuers/BANK000001"), Some("BANK000001"));
        assert_eq!(path_issuer("/banking/v2/cards"), None);
        assert_eq!(path_issuer("/admin/v1/issuers/BANK000001"), None);
    }
}
