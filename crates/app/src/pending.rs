//! Operations acknowledged as `PENDING` that wait for the issuer's backend.
//!
//! - Renew and replace without card data (inbound.md §4, outbound.md §4): the request is checked
//!   and acknowledged at once; the worker fetches the new credentials from the issuer's Get Card
//!   Credentials and completes the operation as the request would have.
//! - Digitizing a card whose consumer data cardplane does not hold (the issuer said
//!   `storesConsumerData: false`, or the consumer was registered implicitly): the digital card waits
//!   in state `PENDING` while the worker asks Get Consumer Information (outbound.md §3) for the
//!   cardholder's name the wallet shows; the answer is used, not kept.
//!
//! Calls are retried on the notification schedule. The operation ends with a `SUCCESSFUL`
//! notification, or a `FAILED` one (a digital card it made is then deleted). Both carry
//! `details.pendingOperationId` [ours], the operationId of the `PENDING` notification, so that the
//! issuer can tie them together.

use crate::cards::{
    CardChange, CardOperation, apply_operation, check_card_id_free, digitize_details, new_card_details,
    notify_digital_card, record_change,
};
use crate::context::RequestContext;
use crate::error::Refusal;
use crate::notifications::Turn;
use crate::ports::{IssuerBackend, Lease, StoreExt, Tx};
use crate::{AppError, Platform};
use cardplane_domain::FieldError;
use cardplane_domain::card::{CardCommand, CardState, InitialState, OperationKind, ReasonCode};
use cardplane_domain::delivery::{AfterAttempt, AttemptOutcome, after_attempt};
use cardplane_domain::digital_card::{DigitalCard, DigitalCardState};
use cardplane_domain::ids::{CardId, IssuerId};
use cardplane_domain::issuer::CallbackSettings;
use cardplane_domain::operation::{Operation, OperationStatus};
use cardplane_domain::pending::PendingOperation;
use time::{Duration, OffsetDateTime};

/// Checks a renew or replace that came without card data as far as it can be checked now, and
/// queues it: the pending renewal and its `PENDING` notification, in the caller's transaction.
pub(crate) async fn request_renewal(
    tx: &mut dyn Tx,
    ctx: &RequestContext,
    card_id: &CardId,
    request: &CardOperation,
    now: OffsetDateTime,
) -> Result<(), AppError> {
    let issuer = tx.issuer(&ctx.issuer).await?.ok_or_else(|| AppError::IssuerNotFound(ctx.issuer.clone()))?;
    if issuer.onboarding.callback.is_none() {
        // Nowhere to fetch the credentials from: the request must carry them.
        return Err(FieldError::missing("encryptedData").into());
    }
    let card = tx.card(&ctx.issuer, card_id).await?.ok_or_else(|| Refusal::CardNotFound(card_id.clone()))?.card;
    // The state machine's verdict now, on the card's present credentials; it is asked again, with
    // the new ones, when they arrive.
    let reason = request.reason_code;
    let command = match request.kind {
        OperationKind::Renew => {
            CardCommand::Renew { reason, new_expiry: card.expiry, new_last4: None, new_state: request.new_card_state }
        }
        _ => CardCommand::Replace { reason },
    };
    card.apply(&command, now).map_err(Refusal::Card)?;
    if let Some(new_id) = request.new_card_id.as_ref().filter(|id| *id != card_id) {
        check_card_id_free(tx, ctx, new_id).await?;
    }
    let renewal = PendingOperation {
        operation_id: crate::cards::new_operation_id(),
        card_id: card_id.clone(),
        kind: request.kind,
        reason_code: Some(reason),
        reason: request.reason.clone(),
        new_card_id: request.new_card_id.clone(),
        new_card_state: request.new_card_state,
        digital_card_id: None,
        actor: ctx.actor.clone(),
        correlation_id: ctx.correlation_id.clone(),
        requested_at: now,
        attempts: 0,
    };
    tx.enqueue_pending(&ctx.issuer, &renewal).await?;
    let operation = Operation {
        operation_id: renewal.operation_id.clone(),
        card_id: card_id.clone(),
        kind: request.kind,
        status: OperationStatus::Pending,
        start_time: now,
        end_time: None,
        details: renewal.new_card_id.as_ref().map(new_card_details),
        digital_card_id: None,
    };
    crate::notifications::notify(tx, &ctx.issuer, &operation, now).await?;
    tracing::info!(card = %card_id, operation = request.kind.as_str(), "card operation waits for the issuer's credentials");
    Ok(())
}

/// Queues a digitization that waits for the consumer's information: the pending operation and the
/// `PENDING` notification, in the caller's transaction. The digital card is already stored, in state
/// `PENDING`.
pub(crate) async fn request_digitization(
    tx: &mut dyn Tx,
    ctx: &RequestContext,
    digital_card: &DigitalCard,
    now: OffsetDateTime,
) -> Result<(), AppError> {
    let pending = PendingOperation {
        operation_id: crate::cards::new_operation_id(),
        card_id: digital_card.card_id.clone(),
        kind: OperationKind::Digitize,
        reason_code: None,
        reason: None,
        new_card_id: None,
        new_card_state: InitialState::Active,
        digital_card_id: Some(digital_card.id.clone()),
        actor: ctx.actor.clone(),
        correlation_id: ctx.correlation_id.clone(),
        requested_at: now,
        attempts: 0,
    };
    tx.enqueue_pending(&ctx.issuer, &pending).await?;
    let operation = Operation {
        operation_id: pending.operation_id.clone(),
        card_id: digital_card.card_id.clone(),
        kind: OperationKind::Digitize,
        status: OperationStatus::Pending,
        start_time: now,
        end_time: None,
        details: Some(digitize_details(digital_card)),
        digital_card_id: None,
    };
    crate::notifications::notify(tx, &ctx.issuer, &operation, now).await?;
    Ok(())
}

/// How one attempt at a pending operation ended.
enum Completion {
    Done,
    Retry(AfterAttempt),
    Failed(String),
}

impl Completion {
    /// A failed call to the issuer: retried on the schedule, or given up.
    fn after_failed_call(attempts: u32, outcome: AttemptOutcome, now: OffsetDateTime) -> Completion {
        match after_attempt(attempts + 1, outcome, now) {
            AfterAttempt::Dead { error } => Completion::Failed(error),
            retry => Completion::Retry(retry),
        }
    }

    /// The change could not be made once the issuer answered: the rules refused it.
    fn refused(result: Result<(), AppError>) -> Result<Completion, AppError> {
        match result {
            Ok(()) => Ok(Completion::Done),
            Err(AppError::Refused(refusal)) => Ok(Completion::Failed(format!("refused: {refusal}"))),
            Err(AppError::Invalid(invalid)) => Ok(Completion::Failed(format!("refused: {invalid}"))),
            Err(other) => Err(other),
        }
    }
}

impl Platform {
    /// Takes the oldest due pending operation, asks the issuer for what it waits for, and completes
    /// (or retries, or fails) it.
    pub async fn complete_next_pending(
        &self,
        backend: &dyn IssuerBackend,
        owner: &str,
        lease: Duration,
    ) -> Result<Turn, AppError> {
        let now = self.clock.now();
        if !self.store.read(move |tx| Box::pin(async move { Ok(tx.any_pending_due(now).await?) })).await? {
            return Ok(Turn::Idle);
        }
        let lease = Lease { owner: owner.to_owned(), until: now + lease };
        let claimed =
            self.store.write(move |tx| Box::pin(async move { Ok(tx.claim_pending(now, &lease).await?) })).await?;
        let Some((issuer_id, pending)) = claimed else {
            return Ok(Turn::Idle);
        };
        let id = issuer_id.clone();
        let issuer = self.store.read(move |tx| Box::pin(async move { Ok(tx.issuer(&id).await?) })).await?;
        let completion = match issuer.and_then(|i| i.onboarding.callback) {
            None => Completion::Failed("the issuer has no callback settings".to_owned()),
            Some(callback) if pending.kind == OperationKind::Digitize => {
                self.attempt_digitization(backend, &issuer_id, &callback, &pending, owner).await?
            }
            Some(callback) => self.attempt_renewal(backend, &issuer_id, &callback, &pending, owner).await?,
        };
        let card = &pending.card_id;
        match completion {
            Completion::Done => {
                tracing::info!(%card, operation = pending.kind.as_str(), "pending card operation completed");
            }
            Completion::Retry(after) => {
                let (operation_id, owner) = (pending.operation_id.clone(), owner.to_owned());
                self.store
                    .write(move |tx| {
                        Box::pin(async move { Ok(tx.finish_pending_attempt(&operation_id, &owner, &after).await?) })
                    })
                    .await?;
            }
            Completion::Failed(error) => {
                tracing::warn!(%card, operation = pending.kind.as_str(), %error, "pending card operation failed");
                let finished = self.clock.now();
                self.fail_pending(issuer_id, pending, owner, error, finished).await?;
            }
        }
        Ok(Turn::Attempted(1))
    }

    /// Renew or replace: fetches the new credentials and applies the operation with them.
    async fn attempt_renewal(
        &self,
        backend: &dyn IssuerBackend,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        renewal: &PendingOperation,
        owner: &str,
    ) -> Result<Completion, AppError> {
        // The credentials belong to the card that will carry them: the new cardId when the card
        // moves to one, else the card itself.
        let holder = renewal.new_card_id.as_ref().unwrap_or(&renewal.card_id);
        let fetched = backend.card_credentials(issuer, callback, holder).await;
        let finished = self.clock.now();
        let jwe = match fetched {
            Ok(jwe) => jwe,
            Err(outcome) => return Ok(Completion::after_failed_call(renewal.attempts, outcome, finished)),
        };
        let id = issuer.clone();
        let keys = self.store.read(move |tx| Box::pin(async move { Ok(tx.encryption_keys(&id).await?) })).await?;
        let credentials = match self.card_data.decrypt_card_data(issuer, &keys, &jwe, "encryptedData") {
            Ok(credentials) => credentials,
            Err(refused) => return Ok(Completion::Failed(format!("the issuer's credentials were refused: {refused}"))),
        };
        let vaulted = self.card_data.vault_credentials(&credentials);
        let ctx = completing(issuer, renewal);
        let request = CardOperation {
            kind: renewal.kind,
            reason_code: renewal.reason_code.unwrap_or(ReasonCode::IssuerDecision),
            reason: renewal.reason.clone(),
            new_card_id: renewal.new_card_id.clone(),
            new_card_state: renewal.new_card_state,
            encrypted_data: None,
        };
        let (renewal, owner, credentials) = (renewal.clone(), owner.to_owned(), Some((credentials, vaulted)));
        let applied = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    apply_operation(tx, &ctx, &renewal.card_id, &request, &credentials, finished).await?;
                    let done = AfterAttempt::Delivered { at: finished };
                    tx.finish_pending_attempt(&renewal.operation_id, &owner, &done).await?;
                    Ok(())
                })
            })
            .await;
        Completion::refused(applied)
    }

    /// Digitization: fetches the consumer's information, which the wallet needs (the
    /// cardholder's name) and cardplane does not keep, then makes the digital card active.
    async fn attempt_digitization(
        &self,
        backend: &dyn IssuerBackend,
        issuer: &IssuerId,
        callback: &CallbackSettings,
        digitization: &PendingOperation,
        owner: &str,
    ) -> Result<Completion, AppError> {
        let (id, card_id) = (issuer.clone(), digitization.card_id.clone());
        let card = self.store.read(move |tx| Box::pin(async move { Ok(tx.card(&id, &card_id).await?) })).await?;
        let Some(card) = card.map(|stored| stored.card) else {
            return Ok(Completion::Failed("the card no longer exists".to_owned()));
        };
        let fetched = backend.consumer_information(issuer, callback, &card.consumer_id, Some(&card.id)).await;
        let finished = self.clock.now();
        let information = match fetched {
            Ok(information) => information,
            Err(outcome) => return Ok(Completion::after_failed_call(digitization.attempts, outcome, finished)),
        };
        if information.last_name.is_none() {
            return Ok(Completion::Failed(
                "the issuer's consumer information has no lastName, which the wallet shows".to_owned(),
            ));
        }
        let Some(digital_card_id) = digitization.digital_card_id.clone() else {
            return Ok(Completion::Failed("the digitization lost its digital card".to_owned()));
        };
        let ctx = completing(issuer, digitization);
        let (digitization, owner) = (digitization.clone(), owner.to_owned());
        let applied = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let card = tx
                        .card(&ctx.issuer, &card.id)
                        .await?
                        .ok_or_else(|| Refusal::CardNotFound(card.id.clone()))?
                        .card;
                    if card.state != CardState::Active {
                        let why = format!("DIGITIZE is not allowed on a card in state {}", card.state);
                        return Err(Refusal::OperationNotAllowed(why).into());
                    }
                    let digital_card = tx
                        .digital_cards(&ctx.issuer, &card.id)
                        .await?
                        .into_iter()
                        .find(|d| d.id == digital_card_id && d.state == DigitalCardState::Pending)
                        .ok_or_else(|| Refusal::OperationNotAllowed("the digital card was deleted meanwhile".into()))?;
                    tx.set_digital_card_state(
                        &ctx.issuer,
                        &digital_card.id,
                        DigitalCardState::Pending,
                        DigitalCardState::Active,
                        finished,
                    )
                    .await?;
                    let change = CardChange {
                        before: Some(&card),
                        after: &card,
                        kind: OperationKind::Digitize,
                        reason_code: None,
                        reason: None,
                        details: Some(digitize_details(&digital_card)),
                    };
                    record_change(tx, &ctx, finished, change).await?;
                    let active = DigitalCard { state: DigitalCardState::Active, ..digital_card };
                    notify_digital_card(tx, &ctx.issuer, &active, OperationKind::Create, finished).await?;
                    let done = AfterAttempt::Delivered { at: finished };
                    tx.finish_pending_attempt(&digitization.operation_id, &owner, &done).await?;
                    Ok(())
                })
            })
            .await;
        Completion::refused(applied)
    }

    /// Gives up on a pending operation: it is marked failed, a digital card it made is deleted, and
    /// the issuer gets a `FAILED` notification.
    async fn fail_pending(
        &self,
        issuer: IssuerId,
        pending: PendingOperation,
        owner: &str,
        error: String,
        now: OffsetDateTime,
    ) -> Result<(), AppError> {
        let owner = owner.to_owned();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let failed = AfterAttempt::Dead { error };
                    if !tx.finish_pending_attempt(&pending.operation_id, &owner, &failed).await? {
                        return Ok(()); // another worker took it over; it will tell the issuer
                    }
                    if let Some(digital_card) = &pending.digital_card_id {
                        let (from, to) = (DigitalCardState::Pending, DigitalCardState::Deleted);
                        tx.set_digital_card_state(&issuer, digital_card, from, to, now).await?;
                    }
                    let operation = Operation {
                        operation_id: crate::cards::new_operation_id(),
                        card_id: pending.card_id.clone(),
                        kind: pending.kind,
                        status: OperationStatus::Failed,
                        start_time: pending.requested_at,
                        end_time: Some(now),
                        details: Some(pending_details(&pending.operation_id, None)),
                        digital_card_id: None,
                    };
                    crate::notifications::notify(tx, &issuer, &operation, now).await?;
                    Ok(())
                })
            })
            .await
    }
}

/// Who completes a pending operation: the worker, on behalf of the request that started it.
fn completing(issuer: &IssuerId, pending: &PendingOperation) -> RequestContext {
    RequestContext {
        issuer: issuer.clone(),
        actor: pending.actor.clone(),
        correlation_id: pending.correlation_id.clone(),
        idempotency: None,
        completes: Some(pending.operation_id.clone()),
    }
}

/// `details` with `pendingOperationId` added to `details` (a JSON object, or none).
pub(crate) fn pending_details(pending_operation_id: &str, details: Option<&str>) -> String {
    // Operation ids are [0-9a-f] (uuid, simple form): nothing to escape.
    let link = format!(r#""pendingOperationId":"{pending_operation_id}""#);
    match details.and_then(|d| d.strip_prefix('{')) {
        Some("}") | None => format!("{{{link}}}"),
        Some(rest) => format!("{{{link},{rest}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pending_details_join_other_details() {
        assert_eq!(super::pending_details("abc", None), r#"{"pendingOperationId":"abc"}"#);
        assert_eq!(super::pending_details("abc", Some("{}")), r#"{"pendingOperationId":"abc"}"#);
        assert_eq!(
            super::pending_details("abc", Some(r#"{"newCardId":"c2"}"#)),
            r#"{"pendingOperationId":"abc","newCardId":"c2"}"#
        );
    }
}
