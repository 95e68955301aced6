//! The one error envelope: `{"errorCode": "<CODE>", "error": "<human text>"}` (inbound.md §7).
//!
//! Every error any route returns is an [`ApiError`], built by the small helpers below, so the shape
//! cannot drift between handlers. The text never contains card data: it names fields, never values.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cardplane_app::AppError;
use cardplane_app::error::Refusal;
use cardplane_domain::FieldError;
use cardplane_domain::card::CardRefusal;
use cardplane_domain::field::FieldProblem;
use serde::Serialize;

/// An error answer: a status, a stable machine-readable code, and a human text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "errorCode")]
    error_code: &'a str,
    error: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// 400 `FIELD_INVALID_FORMAT`, naming the field.
    pub fn invalid_field(field: &str, expected: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "FIELD_INVALID_FORMAT", format!("{field} is invalid: {expected}"))
    }

    /// 400 `FIELD_MISSING`, naming the field.
    pub fn missing_field(field: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "FIELD_MISSING", format!("{field} is required"))
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", format!("the body is over {} KiB", limit / 1024))
    }

    /// 500 `INTERNAL_ERROR`. The body says nothing more; the cause goes to the log only.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "an internal error occurred")
    }
}

impl From<FieldError> for ApiError {
    fn from(error: FieldError) -> Self {
        match &error.problem {
            FieldProblem::Missing => ApiError::missing_field(&error.field),
            FieldProblem::Invalid(expected) => ApiError::invalid_field(&error.field, expected),
        }
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::Invalid(field) => field.into(),
            AppError::Refused(refusal) => refusal.into(),
            AppError::IssuerNotFound(id) => {
                ApiError::not_found("ISSUER_NOT_FOUND", format!("issuer {id} is not onboarded"))
            }
            // Only the token endpoint grants tokens, and it answers refusals in the OAuth shape
            // itself; any other route meeting one is answered as an authentication failure.
            AppError::AssertionRefused(refusal) => ApiError::unauthorized(refusal.to_string()),
            AppError::Unexpected(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed");
                ApiError::internal()
            }
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        let text = refusal.to_string();
        let (status, code) = match &refusal {
            Refusal::CardNotFound(_) => (StatusCode::NOT_FOUND, "CARD_NOT_FOUND"),
            Refusal::ConsumerNotFound(_) => (StatusCode::NOT_FOUND, "CONSUMER_NOT_FOUND"),
            Refusal::CardProductNotFound(_) => (StatusCode::NOT_FOUND, "CARD_PRODUCT_NOT_FOUND"),
            Refusal::OperationNotAllowed(_) => (StatusCode::FORBIDDEN, "OPERATION_NOT_ALLOWED"),
            Refusal::ConsumerDeleted(_) => (StatusCode::FORBIDDEN, "CONSUMER_DELETED"),
            Refusal::PanNotAllowed => (StatusCode::FORBIDDEN, "PAN_NOT_ALLOWED"),
            Refusal::CardIdInUse(_) => (StatusCode::CONFLICT, "CARD_ID_IN_USE"),
            Refusal::PanAlreadyRegistered => (StatusCode::CONFLICT, "PAN_ALREADY_REGISTERED"),
            Refusal::IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED"),
            Refusal::Card(CardRefusal::ReasonNotAllowed { .. }) => {
                return ApiError::invalid_field("reasonCode", &text);
            }
            Refusal::Card(_) => (StatusCode::FORBIDDEN, "OPERATION_NOT_ALLOWED"),
        };
        ApiError::new(status, code, text)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error_code: self.code, error: &self.message };
        (self.status, Json(body)).into_response()
    }
}
