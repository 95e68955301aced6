//! Request extractors that answer in the error envelope.
//!
//! [`StrictJson`] reads a JSON body of at most [`BODY_LIMIT`] bytes into a wire type whose serde
//! definition denies unknown fields, and turns serde's complaint into a D1 error that names the
//! field by its JSON path (`callback.maxBatchSize`, `cardProducts[1].scheme`).

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

/// The largest request body accepted (inbound.md §7: 413 above 64 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// A JSON body, parsed strictly.
#[derive(Debug)]
pub struct StrictJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "the body must be application/json",
            ));
        }
        let bytes = read_body(request.into_body()).await?;
        parse_json(&bytes).map(StrictJson)
    }
}

/// Reads a whole body, refusing one over [`BODY_LIMIT`] with 413.
pub async fn read_body(body: Body) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|error| {
        let too_large =
            std::error::Error::source(&error).is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::payload_too_large(BODY_LIMIT)
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "FIELD_INVALID_FORMAT", "the body could not be read")
        }
    })
}

/// Parses JSON into `T`, naming the offending field on failure.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|error| describe(error.path().to_string(), error.inner()))?;
    // Trailing bytes after the JSON value are malformed too.
    deserializer.end().map_err(|error| describe(String::new(), &error))?;
    Ok(value)
}

/// Turns a serde error at `path` into `FIELD_MISSING` or `FIELD_INVALID_FORMAT`.
fn describe(path: String, error: &serde_json::Error) -> ApiError {
    let text = error.to_string();
    let at = |field: &str| {
        if path == "." || path.is_empty() { field.to_owned() } else { format!("{path}.{field}") }
    };
    if let Some(field) = quoted_after(&text, "missing field ") {
        return ApiError::missing_field(&at(field));
    }
    if let Some(field) = quoted_after(&text, "unknown field ") {
        // Here the path already ends with the unknown key.
        let named = if path.ends_with(field) { path.clone() } else { at(field) };
        return ApiError::invalid_field(&named, "is not a known field");
    }
    if error.is_syntax() || error.is_eof() {
        return ApiError::invalid_field("body", "is not well-formed JSON");
    }
    let field = if path == "." || path.is_empty() { "body".to_owned() } else { path };
    ApiError::invalid_field(&field, &expectation(&text))
}

/// What serde says was expected, e.g. "must be a string" or "must be one of ACTIVE, INACTIVE".
///
/// Only the part after "expected" is kept: it comes from our type definitions, while the part
/// before it may quote the offending input (an unknown variant, a string), which may be card data.
fn expectation(message: &str) -> String {
    let message = message.split(" at line ").next().unwrap_or(message);
    match message.rfind("expected ") {
        Some(at) => format!("must be {}", message[at + "expected ".len()..].replace('`', "")),
        None => "has the wrong type or value".to_owned(),
    }
}

fn quoted_after<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let rest = rest.strip_prefix('`')?;
    Some(&rest[..rest.find('`')?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Option<Inner>,
        items: Option<Vec<Inner>>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Inner {
        max_batch_size: u8,
        state: Option<State>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    enum State {
        #[serde(rename = "ACTIVE")]
        Active,
    }

    fn error(json: &str) -> (String, String) {
        let e = parse_json::<Outer>(json.as_bytes()).unwrap_err();
        (e.code.to_owned(), e.message)
    }

    #[test]
    fn names_the_field_of_each_problem() {
        assert_eq!(error(r#"{}"#), ("FIELD_MISSING".into(), "name is required".into()));
        assert_eq!(error(r#"{"name":"n","inner":{}}"#).1, "inner.maxBatchSize is required");
        let (code, message) = error(r#"{"name":"n","extra":1}"#);
        assert_eq!(code, "FIELD_INVALID_FORMAT");
        assert_eq!(message, "extra is invalid: is not a known field");
        assert_eq!(
            error(r#"{"name":"n","inner":{"maxBatchSize":1,"x":1}}"#).1,
            "inner.x is invalid: is not a known field"
        );
        assert_eq!(error(r#"{"name":1}"#).1, "name is invalid: must be a string");
        let (_, message) = error(r#"{"name":"n","inner":{"maxBatchSize":"5105105105105100"}}"#);
        assert_eq!(message, "inner.maxBatchSize is invalid: must be u8");
        assert!(
            error(r#"{"name":"n","items":[{"maxBatchSize":1},{"maxBatchSize":"x"}]}"#)
                .1
                .starts_with("items[1].maxBatchSize is invalid")
        );
        assert!(error(r#"{"name":"n","inner":{"maxBatchSize":1000}}"#).1.starts_with("inner.maxBatchSize is invalid"));
        assert!(error(r#"{"name":"#).1.starts_with("body is invalid"));
        assert!(error(r#"{"name":"n"} trailing"#).1.starts_with("body is invalid"));
    }

    #[test]
    fn never_echoes_a_value() {
        let (_, message) = error(r#"{"name":"n","inner":{"maxBatchSize":1,"state":"4111111111111111"}}"#);
        assert_eq!(message, "inner.state is invalid: must be ACTIVE");
        assert!(!message.contains("4111111111111111"), "{message}");
    }
}
