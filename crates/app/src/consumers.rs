//! Consumers v2 (inbound.md §3): register, update, delete (cascading to every card), get, list cards.

use crate::cards::{CardChange, record_change};
use crate::context::{Done, Outcome, RequestContext, claim, complete};
use crate::error::Refusal;
use crate::ports::{StoreExt, Tx};
use crate::{AppError, Platform};
use cardplane_domain::card::{Card, CardCommand, OperationKind, ReasonCode};
use cardplane_domain::consumer::{Consumer, ConsumerState, PersonalInformation};
use cardplane_domain::ids::ConsumerId;
use time::OffsetDateTime;

/// Loads a consumer that exists and is not deleted.
pub(crate) async fn active_consumer(
    tx: &mut dyn Tx,
    ctx: &RequestContext,
    id: &ConsumerId,
) -> Result<Consumer, AppError> {
    let consumer = tx.consumer(&ctx.issuer, id).await?.ok_or_else(|| Refusal::ConsumerNotFound(id.clone()))?;
    if consumer.state == ConsumerState::Deleted {
        return Err(Refusal::ConsumerDeleted(id.clone()).into());
    }
    Ok(consumer)
}

/// Registers `id` without personal data if it is unknown (implicit registration [D1]); refuses a
/// deleted one. `found` is the consumer as this unit read it.
pub(crate) async fn ensure_consumer(
    tx: &mut dyn Tx,
    ctx: &RequestContext,
    id: &ConsumerId,
    found: Option<Consumer>,
    now: OffsetDateTime,
) -> Result<(), AppError> {
    match found {
        Some(consumer) if consumer.state == ConsumerState::Deleted => Err(Refusal::ConsumerDeleted(id.clone()).into()),
        Some(_) => Ok(()),
        None => {
            let consumer = Consumer {
                id: id.clone(),
                state: ConsumerState::Active,
                personal_information: None,
                created_at: now,
                updated_at: now,
            };
            Ok(tx.put_consumer(&ctx.issuer, &consumer).await?)
        }
    }
}

impl Platform {
    /// Registers a consumer, or updates the information of one registered before (idempotent).
    pub async fn register_consumer(
        &self,
        ctx: RequestContext,
        id: ConsumerId,
        info: Option<PersonalInformation>,
    ) -> Result<Done<Outcome>, AppError> {
        let now = self.clock.now();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    if let Some(replay) = claim(tx, &ctx, now).await? {
                        return Ok(replay);
                    }
                    let consumer = match tx.consumer(&ctx.issuer, &id).await? {
                        Some(existing) if existing.state == ConsumerState::Deleted => {
                            return Err(Refusal::ConsumerDeleted(id).into());
                        }
                        Some(existing) => Consumer {
                            personal_information: info.or(existing.personal_information),
                            updated_at: now,
                            ..existing
                        },
                        None => Consumer {
                            id,
                            state: ConsumerState::Active,
                            personal_information: info,
                            created_at: now,
                            updated_at: now,
                        },
                    };
                    tx.put_consumer(&ctx.issuer, &consumer).await?;
                    complete(tx, &ctx, &None).await?;
                    Ok(Done { value: None, replayed: false })
                })
            })
            .await
    }

    /// Merges `update` into the consumer's stored information, field by field.
    pub async fn update_consumer(
        &self,
        ctx: RequestContext,
        id: ConsumerId,
        update: PersonalInformation,
    ) -> Result<Done<Outcome>, AppError> {
        let now = self.clock.now();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    if let Some(replay) = claim(tx, &ctx, now).await? {
                        return Ok(replay);
                    }
                    let consumer = active_consumer(tx, &ctx, &id).await?;
                    let merged = consumer.personal_information.clone().unwrap_or_default().merge(&update);
                    let consumer = Consumer { personal_information: Some(merged), updated_at: now, ..consumer };
                    tx.put_consumer(&ctx.issuer, &consumer).await?;
                    complete(tx, &ctx, &None).await?;
                    Ok(Done { value: None, replayed: false })
                })
            })
            .await
    }

    /// Deletes a consumer for good, and with it every live card (reason `CLOSED_ACCOUNT`), each
    /// with its own history line and notification.
    pub async fn delete_consumer(
        &self,
        ctx: RequestContext,
        id: ConsumerId,
        reason: Option<String>,
    ) -> Result<Done<Outcome>, AppError> {
        let now = self.clock.now();
        let deleted_id = id.clone();
        let done = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    if let Some(replay) = claim(tx, &ctx, now).await? {
                        return Ok(replay);
                    }
                    let consumer = active_consumer(tx, &ctx, &id).await?;
                    let command = CardCommand::Delete { reason: ReasonCode::ClosedAccount };
                    for card in tx.cards_of_consumer(&ctx.issuer, &id).await? {
                        if card.state.is_final() {
                            continue;
                        }
                        let deleted = card.apply(&command, now).map_err(Refusal::Card)?;
                        let stored = tx
                            .card(&ctx.issuer, &card.id)
                            .await?
                            .ok_or_else(|| Refusal::CardNotFound(card.id.clone()))?;
                        tx.update_card(&ctx.issuer, &deleted).await?;
                        tx.bar_pan(&ctx.issuer, &stored.pan_fingerprint, now).await?;
                        crate::cards::notify_digital_cards(tx, &ctx.issuer, &card.id, OperationKind::Delete, now)
                            .await?;
                        tx.delete_digital_cards(&ctx.issuer, &card.id, now).await?;
                        let change = CardChange::of(&card, &deleted, &command, reason.clone());
                        record_change(tx, &ctx, now, change).await?;
                    }
                    let deleted = Consumer { state: ConsumerState::Deleted, updated_at: now, ..consumer };
                    tx.put_consumer(&ctx.issuer, &deleted).await?;
                    complete(tx, &ctx, &None).await?;
                    Ok(Done { value: None, replayed: false })
                })
            })
            .await?;
        // Logged once committed, off the writer (see `operate_card`).
        if !done.replayed {
            tracing::info!(consumer = %deleted_id, "consumer deleted");
        }
        Ok(done)
    }

    /// A consumer of the caller's issuer (deleted ones too: their state says so).
    pub async fn consumer(&self, ctx: RequestContext, id: ConsumerId) -> Result<Consumer, AppError> {
        self.store
            .read(move |tx| {
                Box::pin(async move { Ok(tx.consumer(&ctx.issuer, &id).await?.ok_or(Refusal::ConsumerNotFound(id))?) })
            })
            .await
    }

    /// The cards of a consumer, oldest first.
    pub async fn consumer_cards(&self, ctx: RequestContext, id: ConsumerId) -> Result<Vec<Card>, AppError> {
        self.store
            .read(move |tx| {
                Box::pin(async move {
                    if tx.consumer(&ctx.issuer, &id).await?.is_none() {
                        return Err(Refusal::ConsumerNotFound(id).into());
                    }
                    Ok(tx.cards_of_consumer(&ctx.issuer, &id).await?)
                })
            })
            .await
    }
}
