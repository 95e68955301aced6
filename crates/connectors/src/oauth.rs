//! The issuer's OAuth2 token (outbound.md §1): client credentials over HTTP Basic, cached per
//! issuer until 30 s before it expires.

use cardplane_domain::delivery::AttemptOutcome;
use cardplane_domain::ids::IssuerId;
use cardplane_domain::issuer::{CallbackSettings, OAuthClient};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

/// A token is not used in its last 30 seconds [outbound.md §1].
const REFRESH_MARGIN: Duration = Duration::seconds(30);

/// A token the issuer granted, and when to stop using it (`None`: it gave no expiry; use it once).
#[derive(Clone)]
pub(crate) struct IssuerToken {
    pub access_token: String,
    pub refresh_at: Option<OffsetDateTime>,
}

/// The issuer's answer, read leniently: `expires_in` as a number or a string, or `expires_at`.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    token_type: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

impl TokenAnswer {
    fn into_token(self, now: OffsetDateTime) -> Result<IssuerToken, String> {
        if !self.token_type.eq_ignore_ascii_case("bearer") {
            return Err(format!("the token endpoint gave a token of type {:?}, not Bearer", self.token_type));
        }
        if self.access_token.is_empty() {
            return Err("the token endpoint gave an empty access_token".to_owned());
        }
        let expires_in = match &self.expires_in {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => n.as_i64(),
            Some(serde_json::Value::String(s)) => s.trim().parse::<i64>().ok(),
            Some(_) => None,
        };
        if self.expires_in.as_ref().is_some_and(|v| !v.is_null()) && expires_in.is_none() {
            return Err("the token endpoint gave an expires_in that is not a number of seconds".to_owned());
        }
        let expires = expires_in.map(|s| now + Duration::seconds(s)).or(self.expires_at);
        Ok(IssuerToken { access_token: self.access_token, refresh_at: expires.map(|at| at - REFRESH_MARGIN) })
    }
}

/// Tokens per issuer. One fetch at a time per issuer: callers that miss together wait for one
/// answer instead of each asking the issuer.
#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<IssuerToken>>>>>,
}

impl TokenCache {
    /// The slot of an issuer's token, keyed by everything that decides which token it is (so that
    /// onboarding the issuer again with another client starts afresh).
    fn slot(
        &self,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        client: &OAuthClient,
    ) -> Arc<tokio::sync::Mutex<Option<IssuerToken>>> {
        let key = format!(
            "{issuer}\n{}\n{}\n{}",
            callback.token_url,
            client.client_id,
            callback.scope.as_deref().unwrap_or("")
        );
        self.slots.lock().expect("token cache lock").entry(key).or_default().clone()
    }

    /// A token that is good at `now`: the cached one, or a fresh one from the issuer.
    pub(crate) async fn get(
        &self,
        http: &reqwest::Client,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        client: &OAuthClient,
        now: OffsetDateTime,
    ) -> Result<String, AttemptOutcome> {
        let slot = self.slot(issuer, callback, client);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.refresh_at.is_some_and(|at| now < at)) {
            return Ok(token.access_token.clone());
        }
        let token = fetch(http, issuer, callback, client, now).await?;
        let access_token = token.access_token.clone();
        *cached = token.refresh_at.is_some().then_some(token);
        Ok(access_token)
    }

    /// Forgets the issuer's token if it is still `stale` (the issuer answered 401 to it).
    pub(crate) async fn drop_token(
        &self,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        client: &OAuthClient,
        stale: &str,
    ) {
        let slot = self.slot(issuer, callback, client);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|t| t.access_token == stale) {
            *cached = None;
        }
    }
}

async fn fetch(
    http: &reqwest::Client,
    issuer: &IssuerId,
    callback: &CallbackSettings,
    client: &OAuthClient,
    now: OffsetDateTime,
) -> Result<IssuerToken, AttemptOutcome> {
    let retryable = |error: String| AttemptOutcome::Retryable { error, retry_after: None };
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = &callback.scope {
        form.push(("scope", scope));
    }
    let response = http
        .post(callback.token_url.as_str())
        .basic_auth(&client.client_id, Some(client.client_secret.expose()))
        .form(&form)
        .send()
        .await
        .map_err(|e| retryable(format!("the token endpoint could not be reached: {}", crate::issuer::describe(&e))))?;
    let status = response.status();
    if !status.is_success() {
        // A failing token endpoint is a retryable failure of the call that needed it [outbound.md §1].
        return Err(retryable(format!("the token endpoint answered HTTP {}", status.as_u16())));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| retryable(format!("the token endpoint's answer was cut off: {}", crate::issuer::describe(&e))))?;
    let answer: TokenAnswer = serde_json::from_slice(&body)
        .map_err(|e| retryable(format!("the token endpoint's answer is not a token: {e}")))?;
    let token = answer.into_token(now).map_err(retryable)?;
    tracing::debug!(issuer = %issuer, "fetched the issuer's OAuth2 token");
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-22 12:00 UTC);

    fn read(json: serde_json::Value) -> Result<IssuerToken, String> {
        serde_json::from_value::<TokenAnswer>(json).map_err(|e| e.to_string())?.into_token(NOW)
    }

    #[test]
    fn expiry_comes_as_a_number_a_string_or_a_date() {
        let at = |json| read(json).unwrap().refresh_at;
        let expected = Some(NOW + Duration::seconds(900 - 30));
        assert_eq!(at(serde_json::json!({"access_token": "t", "token_type": "Bearer", "expires_in": 900})), expected);
        assert_eq!(at(serde_json::json!({"access_token": "t", "token_type": "bearer", "expires_in": "900"})), expected);
        assert_eq!(
            at(serde_json::json!({"access_token": "t", "token_type": "Bearer", "expires_at": "2026-11-22T12:15:00Z"})),
            expected
        );
        assert_eq!(at(serde_json::json!({"access_token": "t", "token_type": "Bearer"})), None);
    }

    #[test]
    fn answers_that_are_not_bearer_tokens_are_refused() {
        assert!(read(serde_json::json!({"access_token": "t", "token_type": "MAC", "expires_in": 900})).is_err());
        assert!(read(serde_json::json!({"access_token": "", "token_type": "Bearer"})).is_err());
        assert!(read(serde_json::json!({"token_type": "Bearer"})).is_err());
        assert!(read(serde_json::json!({"access_token": "t", "token_type": "Bearer", "expires_in": "soon"})).is_err());
    }
}
