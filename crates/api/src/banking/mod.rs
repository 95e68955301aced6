//! `/banking/v2`: consumers and cards (inbound.md §3–§4), behind the bearer guard.
//!
//! Life-cycle paths are accepted as `.../operations:suspend` and `.../operations/suspend` alike;
//! both spellings are routes of their own, each described in the OpenAPI document.

pub mod caller;
pub mod wire;

use crate::ApiState;
use crate::error::ApiError;
use crate::openapi::{BankingErrors, CardPath, ConsumerPath, IssuerPath, WriteHeaders};
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use caller::{Caller, Command};
use cardplane_app::context::Done;
use cardplane_domain::card::OperationKind;
use cardplane_domain::ids::{CardId, ConsumerId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wire::{
    CardList, CardView, ConsumerBody, ConsumerView, CreateCardBody, CreatedCard, CreatedDigitalCard,
    DeleteConsumerBody, DigitalCardList, DigitalCardView, DigitizeBody, History, HistoryEntryView, OperationBody,
    RegisterCardBody,
};

/// Every banking route, each registered from its handler's `#[utoipa::path]`.
pub fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(register_consumer, get_consumer))
        .routes(routes!(consumer_cards))
        .routes(routes!(update_consumer))
        .routes(routes!(update_consumer_slash))
        .routes(routes!(delete_consumer))
        .routes(routes!(delete_consumer_slash))
        .routes(routes!(create_card))
        .routes(routes!(register_card, get_card))
        .routes(routes!(card_history))
        .routes(routes!(digital_cards, digitize))
        .routes(routes!(activate_card))
        .routes(routes!(activate_card_slash))
        .routes(routes!(suspend_card))
        .routes(routes!(suspend_card_slash))
        .routes(routes!(resume_card))
        .routes(routes!(resume_card_slash))
        .routes(routes!(delete_card))
        .routes(routes!(delete_card_slash))
        .routes(routes!(renew_card))
        .routes(routes!(renew_card_slash))
        .routes(routes!(replace_card))
        .routes(routes!(replace_card_slash))
}

/// 204, saying so when it is the replay of an earlier identical request.
fn no_content<T>(done: Done<T>) -> Response {
    replayed(StatusCode::NO_CONTENT.into_response(), done.replayed)
}

fn replayed(mut response: Response, replayed: bool) -> Response {
    if replayed {
        response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

// ---- consumers ----

/// Register a consumer
///
/// Registers the consumer, or updates the personal information of one registered before (the same
/// request again is a no-op). A deleted consumer cannot be registered again.
#[utoipa::path(put, path = "/banking/v2/issuers/{issuerId}/consumers/{consumerId}", tag = "consumers",
    params(ConsumerPath, WriteHeaders), request_body = ConsumerBody, security(("issuerToken" = [])),
    responses((status = 204, description = "Registered.", headers(("Idempotent-Replayed" = String, description = "`true` on the replay of an earlier identical request"))), BankingErrors))]
async fn register_consumer(
    State(state): State<ApiState>,
    Path((_, consumer_id)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let command =
        Command::<ConsumerBody>::read(request, "PUT /banking/v2/issuers/{issuerId}/consumers/{consumerId}").await?;
    let id = ConsumerId::parse(consumer_id)?;
    let info = command.body.into_domain()?;
    Ok(no_content(state.platform.register_consumer(command.ctx, id, info).await?))
}

/// Update a consumer
///
/// Merges the personal information given into what is stored, field by field.
#[utoipa::path(post, path = "/banking/v2/issuers/{issuerId}/consumers/{consumerId}/operations:update", tag = "consumers",
    params(ConsumerPath, WriteHeaders), request_body = ConsumerBody, security(("issuerToken" = [])),
    responses((status = 204, description = "Updated."), BankingErrors))]
async fn update_consumer(
    State(state): State<ApiState>,
    Path((_, consumer_id)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let route = "POST /banking/v2/issuers/{issuerId}/consumers/{consumerId}/operations:update";
    let command = Command::<ConsumerBody>::read(request, route).await?;
    let id = ConsumerId::parse(consumer_id)?;
    let info = command.body.into_domain()?.unwrap_or_default();
    Ok(no_content(state.platform.update_consumer(command.ctx, id, info).await?))
}

/// Update a consumer (`/operations/update`)
///
/// The same call as `operations:update`, for clients that cannot send a colon in a path.
#[utoipa::path(post, path = "/banking/v2/issuers/{issuerId}/consumers/{consumerId}/operations/update", tag = "consumers",
    params(ConsumerPath, WriteHeaders), request_body = ConsumerBody, security(("issuerToken" = [])),
    responses((status = 204, description = "Updated."), BankingErrors))]
async fn update_consumer_slash(
    state: State<ApiState>,
    path: Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    update_consumer(state, path, request).await
}

/// Delete a consumer
///
/// Logical and final: the consumer becomes `DELETED` and every card of it is deleted (reason
/// `CLOSED_ACCOUNT`), each with its own notification.
#[utoipa::path(post, path = "/banking/v2/issuers/{issuerId}/consumers/{consumerId}/operations:delete", tag = "consumers",
    params(ConsumerPath, WriteHeaders), request_body(content = Option<DeleteConsumerBody>), security(("issuerToken" = [])),
    responses((status = 204, description = "Deleted."), BankingErrors))]
async fn delete_consumer(
    State(state): State<ApiState>,
    Path((_, consumer_id)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let route = "POST /banking/v2/issuers/{issuerId}/consumers/{consumerId}/operations:delete";
    let command = Command::<DeleteConsumerBody>::read(request, route).await?;
    let id = ConsumerId::parse(consumer_id)?;
    let reason = command.body.into_domain()?;
    Ok(no_content(state.platform.delete_consumer(command.ctx, id, reason).await?))
}

/// Delete a consumer (`/operations/delete`)
///
/// The same call as `operations:delete`, for clients that cannot send a colon in a path.
#[utoipa::path(post, path = "/banking/v2/issuers/{issuerId}/consumers/{consumerId}/operations/delete", tag = "consumers",
    params(ConsumerPath, WriteHeaders), request_body(content = Option<DeleteConsumerBody>), security(("issuerToken" = [])),
    responses((status = 204, description = "Deleted."), BankingErrors))]
async fn delete_consumer_slash(
    state: State<ApiState>,
    path: Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    delete_consumer(state, path, request).await
}

/// Get a consumer
#[utoipa::path(get, path = "/banking/v2/issuers/{issuerId}/consumers/{consumerId}", tag = "consumers",
    params(ConsumerPath), security(("issuerToken" = [])),
    responses((status = 200, description = "The consumer.", body = ConsumerView), BankingErrors))]
async fn get_consumer(
    State(state): State<ApiState>,
    Caller(ctx): Caller,
    Path((_, consumer_id)): Path<(String, String)>,
) -> Result<Json<ConsumerView>, ApiError> {
    let consumer = state.platform.consumer(ctx, ConsumerId::parse(consumer_id)?).await?;
    Ok(Json(ConsumerView::from(&consumer)))
}

/// Get a consumer's cards
#[utoipa::path(get, path = "/banking/v2/issuers/{issuerId}/consumers/{consumerId}/cards", tag = "consumers",
    params(ConsumerPath), security(("issuerToken" = [])),
    responses((status = 200, description = "The consumer's cards.", body = CardList), BankingErrors))]
async fn consumer_cards(
    State(state): State<ApiState>,
    Caller(ctx): Caller,
    Path((_, consumer_id)): Path<(String, String)>,
) -> Result<Json<CardList>, ApiError> {
    let cards = state.platform.consumer_cards(ctx, ConsumerId::parse(consumer_id)?).await?;
    Ok(Json(CardList { cards: cards.iter().map(CardView::from).collect() }))
}

// ---- cards ----

/// Register a card
///
/// Registers a card the issuer made, its credentials in `encryptedData`. The same request again
/// is a no-op. Only for card products in authorisation mode NONE or LIGHT.
#[utoipa::path(put, path = "/banking/v2/issuers/{issuerId}/cards/{cardId}", tag = "cards",
    params(CardPath, WriteHeaders), request_body = RegisterCardBody, security(("issuerToken" = [])),
    responses((status = 204, description = "Registered.", headers(("Idempotent-Replayed" = String, description = "`true` on the replay of an earlier identical request"))), BankingErrors))]
async fn register_card(
    State(state): State<ApiState>,
    Path((_, card_id)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let command =
        Command::<RegisterCardBody>::read(request, "PUT /banking/v2/issuers/{issuerId}/cards/{cardId}").await?;
    let card_id = CardId::parse(card_id)?;
    let body = command.body.into_domain()?;
    Ok(no_content(state.platform.register_card(command.ctx, card_id, body).await?))
}

/// Create a card
///
/// cardplane issues the PAN (in the product's BIN range), the expiry and the CVV.
#[utoipa::path(post, path = "/banking/v2/issuers/{issuerId}/cards", tag = "cards",
    params(IssuerPath, WriteHeaders), request_body = CreateCardBody, security(("issuerToken" = [])),
    responses((status = 201, description = "Created.", body = CreatedCard), BankingErrors))]
async fn create_card(State(state): State<ApiState>, request: Request) -> Result<Response, ApiError> {
    let command = Command::<CreateCardBody>::read(request, "POST /banking/v2/issuers/{issuerId}/cards").await?;
    let body = command.body.into_domain()?;
    let done = state.platform.create_card(command.ctx, body).await?;
    let card_id = done.value.clone().unwrap_or_default();
    Ok(replayed((StatusCode::CREATED, Json(CreatedCard { card_id })).into_response(), done.replayed))
}

/// Get a card
#[utoipa::path(get, path = "/banking/v2/issuers/{issuerId}/cards/{cardId}", tag = "cards",
    params(CardPath), security(("issuerToken" = [])),
    responses((status = 200, description = "The card; of its credentials only `last4` and `expiry`.", body = CardView), BankingErrors))]
async fn get_card(
    State(state): State<ApiState>,
    Caller(ctx): Caller,
    Path((_, card_id)): Path<(String, String)>,
) -> Result<Json<CardView>, ApiError> {
    let card = state.platform.card(ctx, CardId::parse(card_id)?).await?;
    Ok(Json(CardView::from(&card)))
}

/// Get a card's history
#[utoipa::path(get, path = "/banking/v2/issuers/{issuerId}/cards/{cardId}/history", tag = "cards",
    params(CardPath), security(("issuerToken" = [])),
    responses((status = 200, description = "The card's operations, newest first.", body = History), BankingErrors))]
async fn card_history(
    State(state): State<ApiState>,
    Caller(ctx): Caller,
    Path((_, card_id)): Path<(String, String)>,
) -> Result<Json<History>, ApiError> {
    let entries = state.platform.card_history(ctx, CardId::parse(card_id)?).await?;
    Ok(Json(History { entries: entries.iter().map(HistoryEntryView::from).collect() }))
}

/// Get a card's digital cards
#[utoipa::path(get, path = "/banking/v2/issuers/{issuerId}/cards/{cardId}/digitalCards", tag = "cards",
    params(CardPath), security(("issuerToken" = [])),
    responses((status = 200, description = "The card's digital cards (tokens in wallets).", body = DigitalCardList), BankingErrors))]
async fn digital_cards(
    State(state): State<ApiState>,
    Caller(ctx): Caller,
    Path((_, card_id)): Path<(String, String)>,
) -> Result<Json<DigitalCardList>, ApiError> {
    let digital_cards = state.platform.digital_cards(ctx, CardId::parse(card_id)?).await?;
    Ok(Json(DigitalCardList { digital_cards: digital_cards.iter().map(DigitalCardView::from).collect() }))
}

/// Digitize a card (sandbox)
///
/// Push provisioning, simulated: only in the sandbox (`--sandbox`), where no real wallet or token
/// service exists; 403 `SANDBOX_ONLY` otherwise.
#[utoipa::path(post, path = "/banking/v2/issuers/{issuerId}/cards/{cardId}/digitalCards", tag = "cards",
    params(CardPath, WriteHeaders), request_body = DigitizeBody, security(("issuerToken" = [])),
    responses((status = 201, description = "Digitized.", body = CreatedDigitalCard), BankingErrors))]
async fn digitize(
    State(state): State<ApiState>,
    Path((_, card_id)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    if !state.sandbox {
        return Err(ApiError::forbidden(
            "SANDBOX_ONLY",
            "digitizing a card is a sandbox call: start cardplane with --sandbox",
        ));
    }
    let command =
        Command::<DigitizeBody>::read(request, "POST /banking/v2/issuers/{issuerId}/cards/{cardId}/digitalCards")
            .await?;
    let card_id = CardId::parse(card_id)?;
    let (wallet, device) = command.body.into_domain()?;
    let done = state.platform.digitize_card(command.ctx, card_id, wallet, device).await?;
    let digital_card_id = done.value.clone().unwrap_or_default();
    Ok(replayed((StatusCode::CREATED, Json(CreatedDigitalCard { digital_card_id })).into_response(), done.replayed))
}

/// The route template each operation's idempotency keys are scoped to (both spellings share it).
fn operation_route(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Activate => "POST /banking/v2/issuers/{issuerId}/cards/{cardId}/operations:activate",
        OperationKind::Suspend => "POST /banking/v2/issuers/{issuerId}/cards/{cardId}/operations:suspend",
        OperationKind::Resume => "POST /banking/v2/issuers/{issuerId}/cards/{cardId}/operations:resume",
        OperationKind::Delete => "POST /banking/v2/issuers/{issuerId}/cards/{cardId}/operations:delete",
        OperationKind::Renew => "POST /banking/v2/issuers/{issuerId}/cards/{cardId}/operations:renew",
        OperationKind::Replace => "POST /banking/v2/issuers/{issuerId}/cards/{cardId}/operations:replace",
        OperationKind::Register | OperationKind::Create | OperationKind::Digitize => {
            unreachable!("not a path operation")
        }
    }
}

async fn card_operation(
    state: ApiState,
    card_id: String,
    kind: OperationKind,
    request: Request,
) -> Result<Response, ApiError> {
    let command = Command::<OperationBody>::read(request, operation_route(kind)).await?;
    let card_id = CardId::parse(card_id)?;
    let body = command.body.into_domain(kind)?;
    Ok(no_content(state.platform.operate_card(command.ctx, card_id, body).await?))
}

/// Declares a life-cycle operation's two routes, `operations:{op}` (D1's) and `operations/{op}`
/// (for clients that cannot send a colon in a path), with one description.
macro_rules! card_operation {
    ($kind:expr, $colon:ident = $colon_path:tt, $slash:ident = $slash_path:tt, $summary:tt, $details:tt) => {
        #[doc = $summary]
        #[doc = ""]
        #[doc = $details]
        #[utoipa::path(post, path = $colon_path, tag = "cards",
            params(CardPath, WriteHeaders), request_body = OperationBody, security(("issuerToken" = [])),
            responses((status = 204, description = "Done (or, for renew and replace without `encryptedData`, accepted: the outcome is notified).",
                headers(("Idempotent-Replayed" = String, description = "`true` on the replay of an earlier identical request"))), BankingErrors))]
        async fn $colon(
            State(state): State<ApiState>,
            Path((_, card_id)): Path<(String, String)>,
            request: Request,
        ) -> Result<Response, ApiError> {
            card_operation(state, card_id, $kind, request).await
        }

        #[doc = $summary]
        #[doc = ""]
        #[doc = "The same call, for clients that cannot send a colon in a path."]
        #[utoipa::path(post, path = $slash_path, tag = "cards",
            params(CardPath, WriteHeaders), request_body = OperationBody, security(("issuerToken" = [])),
            responses((status = 204, description = "Done, as the colon form."), BankingErrors))]
        async fn $slash(
            State(state): State<ApiState>,
            Path((_, card_id)): Path<(String, String)>,
            request: Request,
        ) -> Result<Response, ApiError> {
            card_operation(state, card_id, $kind, request).await
        }
    };
}

card_operation!(
    OperationKind::Activate,
    activate_card = "/banking/v2/issuers/{issuerId}/cards/{cardId}/operations:activate",
    activate_card_slash = "/banking/v2/issuers/{issuerId}/cards/{cardId}/operations/activate",
    "Activate a card",
    "`INACTIVE` → `ACTIVE` (reason `ISSUER_DECISION` or `USER_DECISION`); clears `ongoingOperation`."
);
card_operation!(
    OperationKind::Suspend,
    suspend_card = "/banking/v2/issuers/{issuerId}/cards/{cardId}/operations:suspend",
    suspend_card_slash = "/banking/v2/issuers/{issuerId}/cards/{cardId}/operations/suspend",
    "Suspend a card",
    "`ACTIVE` → `SUSPENDED`; digital cards are left as they are."
);
card_operation!(
    OperationKind::Resume,
    resume_card = "/banking/v2/issuers/{issuerId}/cards/{cardId}/operations:resume",
    resume_card_slash = "/banking/v2/issuers/{issuerId}/cards/{cardId}/operations/resume",
    "Resume a card",
    "`SUSPENDED` → `ACTIVE`, with a reason the suspension allows (inbound.md §4)."
);
card_operation!(
    OperationKind::Delete,
    delete_card = "/banking/v2/issuers/{issuerId}/cards/{cardId}/operations:delete",
    delete_card_slash = "/banking/v2/issuers/{issuerId}/cards/{cardId}/operations/delete",
    "Delete a card",
    "Any live state → `DELETED`, for ever; its digital cards are deleted and its PAN barred."
);
card_operation!(
    OperationKind::Renew,
    renew_card = "/banking/v2/issuers/{issuerId}/cards/{cardId}/operations:renew",
    renew_card_slash = "/banking/v2/issuers/{issuerId}/cards/{cardId}/operations/renew",
    "Renew a card",
    "New credentials (in `encryptedData`, or fetched from the issuer's Get Card Credentials when absent) on the same card, or on `newCardId`."
);
card_operation!(
    OperationKind::Replace,
    replace_card = "/banking/v2/issuers/{issuerId}/cards/{cardId}/operations:replace",
    replace_card_slash = "/banking/v2/issuers/{issuerId}/cards/{cardId}/operations/replace",
    "Replace a card",
    "The card becomes `REPLACED`; a new card `newCardId` takes the new credentials and the digital cards."
);
