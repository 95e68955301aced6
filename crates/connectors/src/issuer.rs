//! The issuer's backend over HTTP (outbound.md §1–§2).

use crate::OutboundSettings;
use crate::oauth::TokenCache;
use crate::wire::{ConsumerAnswer, DigitalCardNotification, NotifyOperations, OperationItem};
use async_trait::async_trait;
use cardplane_app::ports::{Clock, IssuerBackend};
use cardplane_domain::consumer::PersonalInformation;
use cardplane_domain::delivery::AttemptOutcome;
use cardplane_domain::ids::{CardId, ConsumerId, IssuerId};
use cardplane_domain::issuer::CallbackSettings;
use cardplane_domain::operation::Operation;
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use std::sync::Arc;
use time::Duration;

/// Calls issuers' backends. One per process: it holds the connection pool and the token cache.
pub struct HttpIssuerBackend {
    http: reqwest::Client,
    tokens: TokenCache,
    clock: Arc<dyn Clock>,
}

impl HttpIssuerBackend {
    pub fn new(settings: &OutboundSettings, clock: Arc<dyn Clock>) -> Self {
        crate::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(settings.call_timeout)
            .connect_timeout(settings.call_timeout)
            .user_agent(concat!("cardplane/", env!("CARGO_PKG_VERSION")))
            // A notification is not re-sent to wherever a redirect points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client's settings are valid");
        Self { http, tokens: TokenCache::default(), clock }
    }

    /// Sends `request` with the issuer's token (when it has an OAuth client); on a 401, drops the
    /// token and sends once more with a fresh one [outbound.md §1].
    async fn send_authorized(
        &self,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, AttemptOutcome> {
        let Some(client) = &callback.client else {
            return request().send().await.map_err(unreachable_issuer);
        };
        for attempt in 0..2 {
            let token = self.tokens.get(&self.http, issuer, callback, client, self.clock.now()).await?;
            let response = request().bearer_auth(&token).send().await.map_err(unreachable_issuer)?;
            if response.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(response);
            }
            tracing::info!(issuer = %issuer, "the issuer refused its token (401); fetching a fresh one");
            self.tokens.drop_token(issuer, callback, client, &token).await;
        }
        unreachable!("the loop returns on its second turn")
    }

    /// How a notification call ended.
    fn outcome(&self, sent: Result<reqwest::Response, AttemptOutcome>) -> AttemptOutcome {
        match sent {
            Ok(response) => AttemptOutcome::from_status(response.status().as_u16(), self.retry_after(&response)),
            Err(failure) => failure,
        }
    }

    /// The body of a 2xx answer; any other answer as the failure it is.
    async fn successful_body(&self, response: reqwest::Response) -> Result<Vec<u8>, AttemptOutcome> {
        match AttemptOutcome::from_status(response.status().as_u16(), self.retry_after(&response)) {
            AttemptOutcome::Delivered => {}
            failure => return Err(failure),
        }
        let body = response.bytes().await.map_err(|e| AttemptOutcome::Retryable {
            error: format!("the issuer's answer was cut off: {}", describe(&e)),
            retry_after: None,
        })?;
        Ok(body.to_vec())
    }

    fn retry_after(&self, response: &reqwest::Response) -> Option<Duration> {
        let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?.trim();
        if let Ok(seconds) = value.parse::<i64>() {
            return Some(Duration::seconds(seconds));
        }
        let date = httpdate::parse_http_date(value).ok()?;
        let date = time::OffsetDateTime::from(date);
        Some(date - self.clock.now())
    }
}

#[async_trait]
impl IssuerBackend for HttpIssuerBackend {
    async fn notify_operations(
        &self,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        operations: &[Operation],
    ) -> AttemptOutcome {
        let url = callback.base_url.join(&format!("/notifications/d1/v2/issuers/{issuer}/cards"));
        let body = NotifyOperations { operations: operations.iter().map(OperationItem::from).collect() };
        let body = serde_json::to_vec(&body).expect("notifications serialise");
        let sent = self
            .send_authorized(issuer, callback, || {
                self.http.post(&url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone())
            })
            .await;
        self.outcome(sent)
    }

    async fn notify_digital_card(
        &self,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        operation: &Operation,
    ) -> AttemptOutcome {
        let Some(digital_card) = &operation.digital_card_id else {
            return AttemptOutcome::Rejected { error: "the notification names no digital card".to_owned() };
        };
        let url = callback.base_url.join(&format!(
            "/notifications/d1/v1/issuers/{issuer}/digitalCards/{}/notifications",
            digital_card.as_str()
        ));
        let body = serde_json::to_vec(&DigitalCardNotification::from(operation)).expect("notifications serialise");
        let sent = self
            .send_authorized(issuer, callback, || {
                self.http.post(&url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone())
            })
            .await;
        self.outcome(sent)
    }

    async fn consumer_information(
        &self,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        consumer: &ConsumerId,
        card: Option<&CardId>,
    ) -> Result<PersonalInformation, AttemptOutcome> {
        let mut url = callback.base_url.join(&format!("/banking/d1/v1/issuers/{issuer}/consumers/{consumer}"));
        if let Some(card) = card {
            // A cardId is [A-Za-z0-9_-]: safe in a query as it is.
            url.push_str(&format!("?cardId={card}"));
        }
        let response = self.send_authorized(issuer, callback, || self.http.get(&url)).await?;
        let body = self.successful_body(response).await?;
        // Never echo the body: it is personal data.
        let answer: ConsumerAnswer = serde_json::from_slice(&body).map_err(|_| AttemptOutcome::Rejected {
            error: "the issuer's consumer information is not a personalInformation object".to_owned(),
        })?;
        answer.into_domain().validated().map_err(|refused| AttemptOutcome::Rejected {
            error: format!("the issuer's consumer information was refused: {refused}"),
        })
    }

    async fn card_credentials(
        &self,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        card: &CardId,
    ) -> Result<String, AttemptOutcome> {
        let url = callback.base_url.join(&format!("/cms/api/v1/issuers/{issuer}/cards/{card}/credentials"));
        let response = self.send_authorized(issuer, callback, || self.http.get(&url)).await?;
        let body = self.successful_body(response).await?;
        // Never echo the body: it carries card data (encrypted, but still).
        let answer: CredentialsAnswer = serde_json::from_slice(&body).map_err(|_| AttemptOutcome::Rejected {
            error: "the issuer's credentials answer is not {\"encryptedData\": \"<JWE>\"}".to_owned(),
        })?;
        if answer.encrypted_data.is_empty() || answer.encrypted_data.len() > 8192 {
            return Err(AttemptOutcome::Rejected {
                error: "the issuer's encryptedData must be 1 to 8192 characters".to_owned(),
            });
        }
        Ok(answer.encrypted_data)
    }
}

/// Get Card Credentials' answer [outbound.md §4].
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialsAnswer {
    encrypted_data: String,
}

/// A call that got no HTTP answer: a timeout or a connection failure, both worth retrying.
fn unreachable_issuer(error: reqwest::Error) -> AttemptOutcome {
    AttemptOutcome::Retryable {
        error: format!("the issuer could not be reached: {}", describe(&error)),
        retry_after: None,
    }
}

/// A transport error in a few words, with its cause (reqwest's own text is often just "error
/// sending request").
pub(crate) fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
