//! [`Caller`]: who is calling a banking route, and with which idempotency key.

use crate::authz::Authenticated;
use crate::error::ApiError;
use crate::extract::{parse_json, read_body};
use crate::observe::CorrelationId;
use aws_lc_rs::digest;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use cardplane_app::context::{IdempotencyKey, RequestContext};
use serde::de::DeserializeOwned;

/// The caller of a banking route: its issuer (from the bearer guard), its correlation id, and the
/// actor to record (`x-user-id` or the issuer).
pub struct Caller(pub RequestContext);

fn actor(headers: &HeaderMap, issuer: &str) -> Result<String, ApiError> {
    match headers.get("x-user-id") {
        None => Ok(issuer.to_owned()),
        Some(value) => {
            let value = value.to_str().unwrap_or("");
            let ok = (1..=15).contains(&value.len())
                && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if ok {
                Ok(value.to_owned())
            } else {
                Err(ApiError::invalid_field("x-user-id", "must be 1 to 15 characters of A-Z, a-z, 0-9, _ and -"))
            }
        }
    }
}

fn context(parts: &Parts) -> Result<RequestContext, ApiError> {
    let issuer = parts
        .extensions
        .get::<Authenticated>()
        .map(|a| a.0.clone())
        .ok_or_else(|| ApiError::unauthorized("a bearer access token is required"))?;
    let correlation_id = parts.extensions.get::<CorrelationId>().map(|c| c.0.clone()).unwrap_or_default();
    let actor = actor(&parts.headers, issuer.as_str())?;
    Ok(RequestContext { issuer, actor, correlation_id, idempotency: None, completes: None })
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Ok(Caller(context(parts)?))
    }
}

/// A banking write: its caller, its idempotency key (scoped to `route`), and its parsed body.
pub struct Command<T> {
    pub ctx: RequestContext,
    pub body: T,
}

/// Reads `Idempotency-Key` (1–255 printable characters) with the digest of the whole request.
fn idempotency(parts: &Parts, body: &[u8], route: &'static str) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = parts.headers.get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().unwrap_or("");
    if !(1..=255).contains(&key.len()) || !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(ApiError::invalid_field("Idempotency-Key", "must be 1 to 255 printable characters"));
    }
    let mut hash = digest::Context::new(&digest::SHA256);
    hash.update(parts.method.as_str().as_bytes());
    hash.update(b" ");
    hash.update(parts.uri.path().as_bytes());
    hash.update(b"\n");
    hash.update(body);
    Ok(Some(IdempotencyKey { key: key.to_owned(), route, request_hash: hash.finish().as_ref().to_vec() }))
}

impl<T: DeserializeOwned> Command<T> {
    /// Reads the request: an absent or empty body is `{}` when `T` allows it (operation bodies whose
    /// fields are all optional).
    pub async fn read(request: Request, route: &'static str) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let mut ctx = context(&parts)?;
        let bytes = read_body(body).await?;
        if !bytes.is_empty() {
            let is_json = parts
                .headers
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
            if !is_json {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UNSUPPORTED_MEDIA_TYPE",
                    "the body must be application/json",
                ));
            }
        }
        ctx.idempotency = idempotency(&parts, &bytes, route)?;
        let body = parse_json(if bytes.is_empty() { b"{}" } else { &bytes })?;
        Ok(Command { ctx, body })
    }
}

/// Lets handlers take `Command<T>` directly, for routes whose idempotency scope is their path
/// template (given by [`Route`]).
pub struct Routed<T, R>(pub Command<T>, std::marker::PhantomData<R>);

/// A route template, as idempotency keys are scoped to it.
pub trait Route {
    const TEMPLATE: &'static str;
}

impl<S: Send + Sync, T: DeserializeOwned, R: Route> FromRequest<S> for Routed<T, R> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        Ok(Routed(Command::read(request, R::TEMPLATE).await?, std::marker::PhantomData))
    }
}
