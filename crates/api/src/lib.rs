//! cardplane's HTTP surface: axum routers, wire types, and the one error envelope.
//!
//! Handlers parse the request into domain types (a refused value is a 400 naming its field), call
//! one use case on [`Platform`], and map its answer to D1's status and body. No handler touches
//! storage or keys directly.
//!
//! # Layout
//! - [`error`]: [`ApiError`], the `{"errorCode", "error"}` envelope every error uses.
//! - [`extract`]: [`StrictJson`](extract::StrictJson): bounded, strict JSON bodies.
//! - [`observe`]: correlation ids and one log line per request, inside a span carrying the id.
//! - [`authz`]: `/authz/v1/oauth2/token`, and the bearer guard of every `/banking/**` route.
//! - [`banking`]: `/banking/v2` consumers and cards; the caller extractor; wire types.
//! - [`admin`]: `/admin/v1`, onboarding and keys; its wire types in [`admin::wire`].
//! - [`health`]: `/healthz` and `/readyz`.
//! - [`openapi`]: the OpenAPI 3.1 document generated from the handlers (`/openapi.json`), its
//!   page (`/docs`), the error responses and path parameters every route shares.
//!
//! [`router`] assembles them, with 404/405 answered in the envelope too. Routes are registered
//! only through `utoipa_axum::routes!`, so none is served without being described.

pub mod admin;
pub mod authz;
pub mod banking;
pub mod error;
pub mod extract;
pub mod health;
pub mod observe;
pub mod openapi;

pub use error::ApiError;

use axum::Router;
use axum::http::{Method, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use cardplane_app::Platform;
use tower_http::catch_panic::CatchPanicLayer;

/// What every handler can reach, behind one `Arc`: axum clones the state for every request (the
/// route's service, each `from_fn_with_state` layer, each `State` extractor: four times for a card
/// registration), and cloning a struct of `Arc`s is an atomic increment, and later a decrement,
/// per `Arc`, on counters every core's requests touch.
#[derive(Clone)]
pub struct ApiState(std::sync::Arc<Reachable>);

/// The contents of [`ApiState`].
pub struct Reachable {
    pub platform: Platform,
    pub admin: admin::AdminAccess,
    /// Whether the sandbox calls (such as digitizing a card) are open.
    pub sandbox: bool,
}

impl ApiState {
    pub fn new(platform: Platform, admin: admin::AdminAccess, sandbox: bool) -> Self {
        Self(std::sync::Arc::new(Reachable { platform, admin, sandbox }))
    }
}

impl std::ops::Deref for ApiState {
    type Target = Reachable;

    fn deref(&self) -> &Reachable {
        &self.0
    }
}

/// The whole HTTP surface.
pub fn router(state: ApiState) -> Router {
    let surface = openapi::surface();
    let admin = surface.admin.route_layer(middleware::from_fn_with_state(state.clone(), admin::guard));
    let banking = surface.banking.route_layer(middleware::from_fn_with_state(state.clone(), authz::require_bearer));
    Router::new()
        .merge(surface.open)
        .merge(admin)
        .merge(banking)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(CatchPanicLayer::custom(|_panic| {
            // The panic message itself is printed by the panic hook; it is not sent to the caller.
            tracing::error!("a handler panicked");
            ApiError::internal().into_response()
        }))
        .layer(middleware::from_fn(observe::correlate))
}

async fn not_found(method: Method, uri: Uri) -> Response {
    ApiError::not_found("NOT_FOUND", format!("no route for {method} {}", uri.path())).into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{method} is not allowed on {}", uri.path()),
    )
    .into_response()
}
