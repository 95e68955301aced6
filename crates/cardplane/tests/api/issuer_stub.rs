//! A real HTTP issuer backend on loopback (wiremock): its OAuth2 token endpoint and its
//! notifications endpoint, recording what cardplane sent.

use serde_json::{Value, json};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use wiremock::matchers::{body_string_contains, header, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const CLIENT_ID: &str = "d1-client";
pub const CLIENT_SECRET: &str = "the-client-secret";
pub const TOKEN_PATH: &str = "/authz/d1/v1/oauth2/token";

pub struct IssuerStub {
    pub server: MockServer,
}

/// Grants `token-1`, `token-2`, ... one per call, valid for `expires_in` (sent as a string, as some
/// issuers do).
struct Tokens {
    granted: AtomicUsize,
    expires_in: &'static str,
}

impl Respond for Tokens {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.granted.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json(
            json!({"access_token": format!("token-{n}"), "token_type": "Bearer", "expires_in": self.expires_in}),
        )
    }
}

impl IssuerStub {
    /// A stub whose token endpoint grants tokens for 900 s to `d1-client` (HTTP Basic), and whose
    /// notification endpoint answers 204 to any bearer token.
    pub async fn start() -> Self {
        let stub = Self { server: MockServer::start().await };
        stub.grant_tokens("900").await;
        stub.answer_notifications(204).await;
        Mock::given(method("POST"))
            .and(path_regex("^/notifications/d1/v1/issuers/[^/]+/digitalCards/[^/]+/notifications$"))
            .respond_with(ResponseTemplate::new(204))
            .with_priority(10)
            .mount(&stub.server)
            .await;
        stub
    }

    /// Every digital-card notification received: the digitalCardId of its path, and its body.
    pub async fn digital_card_notifications(&self) -> Vec<(String, Value)> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path().contains("/digitalCards/"))
            .map(|r| {
                let id = r.url.path().rsplit('/').nth(1).unwrap().to_owned();
                (id, serde_json::from_slice(&r.body).expect("a JSON notification"))
            })
            .collect()
    }

    /// The `callback` onboarding settings pointing at this stub.
    pub fn callback(&self, max_batch_size: u8) -> Value {
        json!({
            "baseUrl": format!("{}/", self.server.uri()),
            "clientId": CLIENT_ID,
            "clientSecret": CLIENT_SECRET,
            "scope": "d1:notify",
            "maxBatchSize": max_batch_size,
        })
    }

    pub async fn grant_tokens(&self, expires_in: &'static str) {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
        Mock::given(method("POST"))
            .and(path(TOKEN_PATH))
            .and(header("authorization", format!("Basic {basic}").as_str()))
            .and(body_string_contains("grant_type=client_credentials"))
            .and(body_string_contains("scope=d1%3Anotify"))
            .respond_with(Tokens { granted: AtomicUsize::new(0), expires_in })
            .with_priority(5)
            .mount(&self.server)
            .await;
    }

    /// Notifications get `status` (lowest priority: the default answer).
    pub async fn answer_notifications(&self, status: u16) {
        Mock::given(method("POST"))
            .and(path_regex("^/notifications/d1/v2/issuers/[^/]+/cards$"))
            .respond_with(ResponseTemplate::new(status))
            .with_priority(10)
            .mount(&self.server)
            .await;
    }

    /// The next `times` notifications get `response` instead of the default answer.
    pub async fn then_answer(&self, response: ResponseTemplate, times: u64) {
        Mock::given(method("POST"))
            .and(path_regex("^/notifications/d1/v2/issuers/[^/]+/cards$"))
            .respond_with(response)
            .up_to_n_times(times)
            .with_priority(1)
            .mount(&self.server)
            .await;
    }

    /// Every notification call received: its `Authorization` header and its `operations`.
    pub async fn notifications(&self) -> Vec<(String, Vec<Value>)> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path().starts_with("/notifications/d1/v2/"))
            .map(|r| {
                let auth = r.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let body: Value = serde_json::from_slice(&r.body).expect("a JSON notification");
                (auth, body["operations"].as_array().expect("operations").clone())
            })
            .collect()
    }

    /// Every operation received, in order of arrival, flattened.
    pub async fn operations(&self) -> Vec<Value> {
        self.notifications().await.into_iter().flat_map(|(_, ops)| ops).collect()
    }

    pub async fn token_requests(&self) -> usize {
        self.server.received_requests().await.unwrap_or_default().iter().filter(|r| r.url.path() == TOKEN_PATH).count()
    }
}

/// Polls `check` every 20 ms until it gives `Some`, for at most 10 s (the worker's pace, never a
/// retry backoff: tests move the clock for those).
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(Duration::from_secs(10), what, check).await
}

/// [`eventually`], waiting at most `limit`.
pub async fn eventually_within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl IssuerStub {
    /// Get Card Credentials for `card_id` answers `response`.
    pub async fn credentials(&self, issuer_id: &str, card_id: &str, response: ResponseTemplate) {
        Mock::given(method("GET"))
            .and(path(format!("/cms/api/v1/issuers/{issuer_id}/cards/{card_id}/credentials")))
            .respond_with(response)
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&self.server)
            .await;
    }

    /// The credential look-ups received: the card id and the `Authorization` header of each.
    pub async fn credential_requests(&self) -> Vec<(String, String)> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path().ends_with("/credentials"))
            .map(|r| {
                let card = r.url.path().rsplit('/').nth(1).unwrap().to_owned();
                let auth = r.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                (card, auth)
            })
            .collect()
    }
}

impl IssuerStub {
    /// Get Consumer Information for `consumer_id` answers `response`.
    pub async fn consumer(&self, issuer_id: &str, consumer_id: &str, response: ResponseTemplate) {
        Mock::given(method("GET"))
            .and(path(format!("/banking/d1/v1/issuers/{issuer_id}/consumers/{consumer_id}")))
            .respond_with(response)
            .with_priority(1)
            .mount(&self.server)
            .await;
    }

    /// The consumer look-ups received: path and query of each, with its `Authorization` header.
    pub async fn consumer_requests(&self) -> Vec<(String, String)> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path().contains("/consumers/"))
            .map(|r| {
                let auth = r.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                (format!("{}?{}", r.url.path(), r.url.query().unwrap_or("")), auth)
            })
            .collect()
    }
}
