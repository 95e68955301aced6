//! Correlation ids and request logging.
//!
//! Every request runs inside a `request` span that carries its correlation id, so every log line
//! written while serving it (by any crate) carries the id too. The id comes from `x-correlation-id`
//! when the caller sent a valid one, else cardplane makes one; either way it is echoed back.

use crate::error::ApiError;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;
use tracing::Instrument;

pub static CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// The correlation id of the request being served (a request extension).
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// Whether `id` is a valid correlation id for `path`. v1 also allows `.` and space [D1].
fn is_valid(path: &str, id: &str) -> bool {
    let v1 = path.starts_with("/banking/v1/");
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (v1 && (b == b'.' || b == b' ')))
}

pub async fn correlate(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = request.uri().path().to_owned();
    let given = request.headers().get(&CORRELATION_ID).map(|v| v.to_str().map(str::to_owned));
    let (id, refused) = match given {
        None => (uuid::Uuid::new_v4().simple().to_string(), false),
        Some(Ok(id)) if is_valid(&path, &id) => (id, false),
        // An invalid id is not echoed (it is not ours to log); a fresh one traces the refusal.
        Some(_) => (uuid::Uuid::new_v4().simple().to_string(), true),
    };
    let span = tracing::info_span!("request", correlation_id = %id, method = %request.method(), path = %path);
    request.extensions_mut().insert(CorrelationId(id.clone()));
    async move {
        let mut response = if refused {
            ApiError::invalid_field("x-correlation-id", "must be 1 to 64 characters of A-Z, a-z, 0-9, _ and -")
                .into_response()
        } else {
            next.run(request).await
        };
        let status = response.status().as_u16();
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        if status >= 500 {
            tracing::error!(status, elapsed_ms, "request served");
        } else {
            tracing::info!(status, elapsed_ms, "request served");
        }
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(CORRELATION_ID.clone(), value);
        }
        response
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    #[test]
    fn v1_allows_dots_and_spaces_only() {
        assert!(is_valid("/banking/v2/x", "abc_DEF-123"));
        assert!(!is_valid("/banking/v2/x", "a.b"));
        assert!(is_valid("/banking/v1/x", "a.b c"));
        assert!(!is_valid("/admin/v1/issuers", &"a".repeat(65)));
        assert!(!is_valid("/admin/v1/issuers", ""));
    }
}
