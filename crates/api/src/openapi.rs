//! The OpenAPI 3.1 document of the whole HTTP surface, generated from the handlers and wire types
//! (utoipa), served at `GET /openapi.json` and rendered at `GET /docs`.
//!
//! Every route is registered through [`utoipa_axum::routes!`] from the handler's own
//! `#[utoipa::path]`, so a route cannot be served without being described; the route-coverage test
//! (`tests/api/openapi.rs`) probes every documented operation against the router the other way
//! round. The patterns and lengths written on the wire types and path parameters are those of
//! `../shared/spec` and of the domain's parsers; the domain stays the authority (a value a pattern
//! admits may still be refused with a 400, e.g. a PAN failing the Luhn check inside a JWE).
//!
//! The documentation page is Swagger UI (`assets/swagger-ui`, from the npm package
//! `swagger-ui-dist`, Apache-2.0), compiled into the binary so it works offline.

use crate::ApiState;
use axum::Json;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use std::sync::OnceLock;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

// ---- enumerations as they travel ----

/// The life-cycle state of a card.
#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum CardState {
    INACTIVE,
    ACTIVE,
    SUSPENDED,
    DELETED,
    REPLACED,
}

/// The state a card is registered or created in (`ACTIVE` when absent).
#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum InitialCardState {
    ACTIVE,
    INACTIVE,
}

/// The state of a consumer.
#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum ConsumerState {
    ACTIVE,
    DELETED,
}

/// Why a life-cycle operation is made; which codes an operation takes is in inbound.md §4.
#[derive(ToSchema)]
#[allow(dead_code, non_camel_case_types, clippy::upper_case_acronyms)]
pub enum ReasonCode {
    CARD_LOST,
    CARD_STOLEN,
    CARD_BROKEN,
    CARD_FOUND,
    FRAUD,
    USER_DECISION,
    ISSUER_DECISION,
    CLOSED_ACCOUNT,
    CLOSED_CARD,
    CARD_EXPIRING,
}

/// A payment scheme.
#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum Scheme {
    VISA,
    MASTERCARD,
    AMEX,
    DISCOVER,
    JCB,
    UNIONPAY,
}

/// A wallet a card can be digitized to (sandbox).
#[derive(ToSchema)]
#[allow(dead_code, non_camel_case_types, clippy::upper_case_acronyms)]
pub enum WalletName {
    APPLE_PAY,
    GOOGLE_PAY,
    SAMSUNG_PAY,
    HUAWEI_PAY,
}

/// The state of a digital card (a token in a wallet).
#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum DigitalCardState {
    PENDING,
    ACTIVE,
    SUSPENDED,
    DELETED,
}

/// An operation as history and notifications name it.
#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum OperationName {
    REGISTER,
    CREATE,
    ACTIVATE,
    SUSPEND,
    RESUME,
    DELETE,
    RENEW,
    REPLACE,
    DIGITIZE,
}

/// The status of a notified operation.
#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum OperationStatus {
    SUCCESSFUL,
    PENDING,
    FAILED,
}

/// Where a notification's delivery stands.
#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)]
pub enum DeliveryStatus {
    PENDING,
    DELIVERED,
    DEAD,
}

// ---- the error envelope ----

/// Every error of every route except the token endpoint (inbound.md §7). The text names fields,
/// never values, and never carries card data.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(examples(json!({"errorCode": "FIELD_INVALID_FORMAT", "error": "cardId is invalid: must be 1-48 character(s) of A-Z, a-z, 0-9 and \"_-\""})))]
pub struct ErrorEnvelope {
    /// A stable, machine-readable code such as `FIELD_MISSING`, `CARD_NOT_FOUND`,
    /// `OPERATION_NOT_ALLOWED`.
    pub error_code: String,
    /// A human text.
    pub error: String,
}

/// The errors any `/banking` route may answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum BankingErrors {
    /// A field, header or body is missing or malformed (`FIELD_MISSING`, `FIELD_INVALID_FORMAT`).
    #[response(status = 400)]
    BadRequest(ErrorEnvelope),
    /// No bearer token, or one that is invalid or expired (`UNAUTHORIZED`).
    #[response(status = 401)]
    Unauthorized(ErrorEnvelope),
    /// The token belongs to another issuer (`ISSUER_MISMATCH`), or the state of the card or consumer
    /// forbids the call (`OPERATION_NOT_ALLOWED`, `CONSUMER_DELETED`, `PAN_NOT_ALLOWED`).
    #[response(status = 403)]
    Forbidden(ErrorEnvelope),
    /// The issuer, consumer, card or card product does not exist.
    #[response(status = 404)]
    NotFound(ErrorEnvelope),
    /// The cardId or the PAN is already held by another live card.
    #[response(status = 409)]
    Conflict(ErrorEnvelope),
    /// The body is over 64 KiB.
    #[response(status = 413)]
    PayloadTooLarge(ErrorEnvelope),
    /// The body is not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorEnvelope),
    /// The `Idempotency-Key` was used before for another request (`IDEMPOTENCY_KEY_REUSED`).
    #[response(status = 422)]
    Unprocessable(ErrorEnvelope),
    /// An unexpected failure; the cause is in the server's log only.
    #[response(status = 500)]
    Internal(ErrorEnvelope),
}

/// The errors any `/admin/v1` route may answer.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum AdminErrors {
    /// A field, parameter or body is missing or malformed.
    #[response(status = 400)]
    BadRequest(ErrorEnvelope),
    /// `CARDPLANE_ADMIN_TOKEN` is set and the request does not carry it.
    #[response(status = 401)]
    Unauthorized(ErrorEnvelope),
    /// No admin token is configured and the caller is not on loopback (`ADMIN_LOOPBACK_ONLY`).
    #[response(status = 403)]
    Forbidden(ErrorEnvelope),
    /// The issuer or the notification does not exist.
    #[response(status = 404)]
    NotFound(ErrorEnvelope),
    /// The body is over 64 KiB.
    #[response(status = 413)]
    PayloadTooLarge(ErrorEnvelope),
    /// The body is not `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorEnvelope),
    /// An unexpected failure; the cause is in the server's log only.
    #[response(status = 500)]
    Internal(ErrorEnvelope),
}

// ---- path parameters ----

/// `{issuerId}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, names("issuerId"))]
#[allow(dead_code)]
pub struct IssuerPath(
    /// The issuer, exactly 10 characters.
    #[param(pattern = "^[A-Za-z0-9_-]{10}$", min_length = 10, max_length = 10, example = "BANK000001")]
    String,
);

/// `{issuerId}/consumers/{consumerId}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, names("issuerId", "consumerId"))]
#[allow(dead_code)]
pub struct ConsumerPath(
    /// The issuer, exactly 10 characters.
    #[param(pattern = "^[A-Za-z0-9_-]{10}$", min_length = 10, max_length = 10, example = "BANK000001")]
    String,
    /// The consumer, chosen by the issuer; never personal data.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$", min_length = 1, max_length = 64, example = "consumer-1")]
    String,
);

/// `{issuerId}/cards/{cardId}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, names("issuerId", "cardId"))]
#[allow(dead_code)]
pub struct CardPath(
    /// The issuer, exactly 10 characters.
    #[param(pattern = "^[A-Za-z0-9_-]{10}$", min_length = 10, max_length = 10, example = "BANK000001")]
    String,
    /// The card, chosen by the issuer; never the PAN nor derived from it.
    #[param(pattern = "^[A-Za-z0-9_-]{1,48}$", min_length = 1, max_length = 48, example = "card-1")]
    String,
);

/// `{operationId}` of a notification.
#[derive(IntoParams)]
#[into_params(parameter_in = Path, names("operationId"))]
#[allow(dead_code)]
pub struct OperationPath(
    /// The operationId the notification carries.
    #[param(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    String,
);

/// The optional headers of a banking write.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct WriteHeaders {
    /// Makes the write safe to retry: the same key with the same request answers as the first
    /// time (with `Idempotent-Replayed: true`); with another request, 422 `IDEMPOTENCY_KEY_REUSED`.
    #[param(rename = "Idempotency-Key", min_length = 1, max_length = 255, pattern = "^[\\x20-\\x7e]{1,255}$")]
    idempotency_key: Option<String>,
    /// The end user or agent acting, recorded in the card's history (the issuer when absent).
    #[param(rename = "x-user-id", min_length = 1, max_length = 15, pattern = "^[A-Za-z0-9_-]{1,15}$")]
    user_id: Option<String>,
    /// Echoed in the answer and recorded in history; one is made when absent.
    #[param(rename = "x-correlation-id", min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    correlation_id: Option<String>,
}

// ---- the document ----

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "cardplane",
        description = "A self-hostable, wire-compatible implementation of the Thales D1 card platform: the \
                       issuer APIs (token, banking v2), the admin API that onboards issuers, and the \
                       process probes. Card data travels only inside `encryptedData` (a compact JWE, \
                       ECDH-ES + A256GCM, to the issuer's key from `GET /admin/v1/issuers/{issuerId}/encryption-keys`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(crate::admin::redeliver),
    modifiers(&SecuritySchemes),
    tags(
        (name = "token", description = "OAuth 2.0 JWT-bearer grant (RFC 7523): an ES256 assertion for an access token."),
        (name = "consumers", description = "Banking v2: consumers (inbound.md §3)."),
        (name = "cards", description = "Banking v2: cards and their life cycle (inbound.md §4)."),
        (name = "admin", description = "Onboarding issuers, their keys and their notifications (platform.md §Onboarding)."),
        (name = "probes", description = "Liveness, readiness and this document."),
    ),
)]
struct Document;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut issuer = Http::new(HttpAuthScheme::Bearer);
        issuer.bearer_format = Some("JWT".into());
        issuer.description = Some(
            "An access token from `POST /authz/v1/oauth2/token` (the JWT-bearer grant: an ES256 assertion \
             signed with one of the issuer's onboarded keys), valid 900 s, for the issuer the path names."
                .into(),
        );
        components.add_security_scheme("issuerToken", SecurityScheme::Http(issuer));
        let mut admin = Http::new(HttpAuthScheme::Bearer);
        admin.description = Some(
            "`CARDPLANE_ADMIN_TOKEN`. Without one configured, the admin API answers only to loopback callers \
             and needs no token."
                .into(),
        );
        components.add_security_scheme("adminToken", SecurityScheme::Http(admin));
    }
}

/// The routes of the whole surface, by guard, and the document describing them.
pub(crate) struct Surface {
    /// Open to anyone: probes, the token endpoint, this document and its page.
    pub open: axum::Router<ApiState>,
    /// Behind the admin guard.
    pub admin: axum::Router<ApiState>,
    /// Behind the bearer guard.
    pub banking: axum::Router<ApiState>,
    pub document: OpenApi,
}

pub(crate) fn surface() -> Surface {
    let (open, mut document) = OpenApiRouter::with_openapi(<Document as utoipa::OpenApi>::openapi())
        .merge(crate::health::routes())
        .merge(crate::authz::routes())
        .routes(routes!(openapi_json))
        .routes(routes!(docs_page))
        .routes(routes!(docs_asset))
        .split_for_parts();
    let (admin, admin_document) = crate::admin::routes().split_for_parts();
    let (banking, banking_document) = crate::banking::routes().split_for_parts();
    document.merge(admin_document);
    document.merge(banking_document);
    Surface { open, admin, banking, document }
}

/// The OpenAPI document of this server (also `cardplane openapi`).
pub fn document() -> &'static OpenApi {
    static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| surface().document)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "probes",
    responses((status = 200, description = "The OpenAPI 3.1 document of this server.", content_type = "application/json", body = Object)))]
async fn openapi_json() -> Json<&'static OpenApi> {
    Json(document())
}

const DOCS_HTML: &str = include_str!("../assets/docs.html");

/// The documentation page: Swagger UI over `/openapi.json`, served from the binary.
#[utoipa::path(get, path = "/docs", tag = "probes",
    responses((status = 200, description = "An HTML page.", content_type = "text/html", body = String)))]
async fn docs_page() -> Html<&'static str> {
    Html(DOCS_HTML)
}

/// The page's script and style sheet.
#[utoipa::path(get, path = "/docs/{asset}", tag = "probes",
    params(("asset" = String, Path, description = "`swagger-ui-bundle.js` or `swagger-ui.css`")),
    responses(
        (status = 200, description = "The asset.", content_type = "application/javascript", body = String),
        (status = 404, description = "No such asset.", body = ErrorEnvelope),
    ))]
async fn docs_asset(axum::extract::Path(asset): axum::extract::Path<String>) -> Response {
    let (content_type, body): (&str, &'static [u8]) = match asset.as_str() {
        "swagger-ui-bundle.js" => {
            ("application/javascript", include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js").as_slice())
        }
        "swagger-ui.css" => ("text/css", include_bytes!("../assets/swagger-ui/swagger-ui.css").as_slice()),
        _ => return crate::ApiError::not_found("NOT_FOUND", format!("no asset {asset}")).into_response(),
    };
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "public, max-age=86400")], body).into_response()
}
