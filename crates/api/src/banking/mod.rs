//! `/banking/v2`: consumers and cards (inbound.md §3–§4), behind the bearer guard.
//!
//! Life-cycle paths are accepted as `.../operations:suspend` and `.../operations/suspend` alike.

pub mod caller;
pub mod wire;

use crate::ApiState;
use crate::error::ApiError;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use caller::{Caller, Command};
use cardplane_app::context::Done;
use cardplane_domain::card::OperationKind;
use cardplane_domain::ids::{CardId, ConsumerId};
use wire::{
    CardList, CardView, ConsumerBody, ConsumerView, CreateCardBody, CreatedCard, CreatedDigitalCard,
    DeleteConsumerBody, DigitalCardList, DigitalCardView, DigitizeBody, History, HistoryEntryView, OperationBody,
    RegisterCardBody,
};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/banking/v2/issuers/{issuer_id}/consumers/{consumer_id}", put(register_consumer).get(get_consumer))
        .route("/banking/v2/issuers/{issuer_id}/consumers/{consumer_id}/cards", get(consumer_cards))
        .route("/banking/v2/issuers/{issuer_id}/consumers/{consumer_id}/{action}", post(consumer_action))
        .route("/banking/v2/issuers/{issuer_id}/consumers/{consumer_id}/operations/{op}", post(consumer_operation))
        .route("/banking/v2/issuers/{issuer_id}/cards", post(create_card))
        .route("/banking/v2/issuers/{issuer_id}/cards/{card_id}", put(register_card).get(get_card))
        .route("/banking/v2/issuers/{issuer_id}/cards/{card_id}/history", get(card_history))
        .route("/banking/v2/issuers/{issuer_id}/cards/{card_id}/digitalCards", get(digital_cards).post(digitize))
        .route("/banking/v2/issuers/{issuer_id}/cards/{card_id}/{action}", post(card_action))
        .route("/banking/v2/issuers/{issuer_id}/cards/{card_id}/operations/{op}", post(card_operation))
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

fn unknown_route(path: &str) -> ApiError {
    ApiError::not_found("NOT_FOUND", format!("no route for POST {path}"))
}

/// `operations:update` → `update`.
fn colon_operation(action: &str) -> Option<&str> {
    action.strip_prefix("operations:")
}

// ---- consumers ----

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

async fn consumer_action(
    state: State<ApiState>,
    Path((issuer_id, consumer_id, action)): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let op = colon_operation(&action).ok_or_else(|| unknown_route(request.uri().path()))?.to_owned();
    consumer_operation(state, Path((issuer_id, consumer_id, op)), request).await
}

async fn consumer_operation(
    State(state): State<ApiState>,
    Path((_, consumer_id, op)): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    match op.as_str() {
        "update" => {
            let route = "POST /banking/v2/issuers/{issuerId}/consumers/{consumerId}/operations:update";
            let command = Command::<ConsumerBody>::read(request, route).await?;
            let id = ConsumerId::parse(consumer_id)?;
            let info = command.body.into_domain()?.unwrap_or_default();
            Ok(no_content(state.platform.update_consumer(command.ctx, id, info).await?))
        }
        "delete" => {
            let route = "POST /banking/v2/issuers/{issuerId}/consumers/{consumerId}/operations:delete";
            let command = Command::<DeleteConsumerBody>::read(request, route).await?;
            let id = ConsumerId::parse(consumer_id)?;
            let reason = command.body.into_domain()?;
            Ok(no_content(state.platform.delete_consumer(command.ctx, id, reason).await?))
        }
        _ => Err(unknown_route(request.uri().path())),
    }
}

async fn get_consumer(
    State(state): State<ApiState>,
    Caller(ctx): Caller,
    Path((_, consumer_id)): Path<(String, String)>,
) -> Result<Json<ConsumerView>, ApiError> {
    let consumer = state.platform.consumer(ctx, ConsumerId::parse(consumer_id)?).await?;
    Ok(Json(ConsumerView::from(&consumer)))
}

async fn consumer_cards(
    State(state): State<ApiState>,
    Caller(ctx): Caller,
    Path((_, consumer_id)): Path<(String, String)>,
) -> Result<Json<CardList>, ApiError> {
    let cards = state.platform.consumer_cards(ctx, ConsumerId::parse(consumer_id)?).await?;
    Ok(Json(CardList { cards: cards.iter().map(CardView::from).collect() }))
}

// ---- cards ----

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

async fn create_card(State(state): State<ApiState>, request: Request) -> Result<Response, ApiError> {
    let command = Command::<CreateCardBody>::read(request, "POST /banking/v2/issuers/{issuerId}/cards").await?;
    let body = command.body.into_domain()?;
    let done = state.platform.create_card(command.ctx, body).await?;
    let card_id = done.value.clone().unwrap_or_default();
    Ok(replayed((StatusCode::CREATED, Json(CreatedCard { card_id })).into_response(), done.replayed))
}

async fn get_card(
    State(state): State<ApiState>,
    Caller(ctx): Caller,
    Path((_, card_id)): Path<(String, String)>,
) -> Result<Json<CardView>, ApiError> {
    let card = state.platform.card(ctx, CardId::parse(card_id)?).await?;
    Ok(Json(CardView::from(&card)))
}

async fn card_history(
    State(state): State<ApiState>,
    Caller(ctx): Caller,
    Path((_, card_id)): Path<(String, String)>,
) -> Result<Json<History>, ApiError> {
    let entries = state.platform.card_history(ctx, CardId::parse(card_id)?).await?;
    Ok(Json(History { entries: entries.iter().map(HistoryEntryView::from).collect() }))
}

async fn digital_cards(
    State(state): State<ApiState>,
    Caller(ctx): Caller,
    Path((_, card_id)): Path<(String, String)>,
) -> Result<Json<DigitalCardList>, ApiError> {
    let digital_cards = state.platform.digital_cards(ctx, CardId::parse(card_id)?).await?;
    Ok(Json(DigitalCardList { digital_cards: digital_cards.iter().map(DigitalCardView::from).collect() }))
}

/// Push provisioning, simulated: only in the sandbox, where no real wallet or token service exists.
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

async fn card_action(
    state: State<ApiState>,
    Path((issuer_id, card_id, action)): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let op = colon_operation(&action).ok_or_else(|| unknown_route(request.uri().path()))?.to_owned();
    card_operation(state, Path((issuer_id, card_id, op)), request).await
}

/// The route template each operation's idempotency keys are scoped to.
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
    State(state): State<ApiState>,
    Path((_, card_id, op)): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    // Path segments are lower case on the wire: `operations:suspend`.
    let kind = OperationKind::from_path(&op)
        .filter(|_| op.bytes().all(|b| b.is_ascii_lowercase()))
        .ok_or_else(|| unknown_route(request.uri().path()))?;
    let command = Command::<OperationBody>::read(request, operation_route(kind)).await?;
    let card_id = CardId::parse(card_id)?;
    let body = command.body.into_domain(kind)?;
    Ok(no_content(state.platform.operate_card(command.ctx, card_id, body).await?))
}
