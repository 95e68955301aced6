//! Renew and replace without card data (inbound.md §4, outbound.md §4): the request is checked and
//! acknowledged at once, with a `PENDING` notification; the worker fetches the new credentials
//! from the issuer's Get Card Credentials (retried on the notification schedule) and completes the
//! operation as the request would have, with a `SUCCESSFUL` notification, or gives up with a
//! `FAILED` one. Both carry `details.pendingOperationId` [ours], the operationId of the `PENDING`
//! notification, so that the issuer can tie them together.

use crate::cards::{CardOperation, apply_operation, check_card_id_free, new_card_details};
use crate::context::RequestContext;
use crate::error::Refusal;
use crate::notifications::Turn;
use crate::ports::{IssuerBackend, Lease, StoreExt, Tx};
use crate::{AppError, Platform};
use cardplane_domain::FieldError;
use cardplane_domain::card::{CardCommand, OperationKind};
use cardplane_domain::delivery::{AfterAttempt, AttemptOutcome, after_attempt};
use cardplane_domain::ids::{CardId, IssuerId};
use cardplane_domain::operation::{Operation, OperationStatus};
use cardplane_domain::renewal::PendingRenewal;
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
    let renewal = PendingRenewal {
        operation_id: uuid::Uuid::new_v4().simple().to_string(),
        card_id: card_id.clone(),
        kind: request.kind,
        reason_code: reason,
        reason: request.reason.clone(),
        new_card_id: request.new_card_id.clone(),
        new_card_state: request.new_card_state,
        actor: ctx.actor.clone(),
        correlation_id: ctx.correlation_id.clone(),
        requested_at: now,
        attempts: 0,
    };
    tx.enqueue_renewal(&ctx.issuer, &renewal).await?;
    let operation = Operation {
        operation_id: renewal.operation_id.clone(),
        card_id: card_id.clone(),
        kind: request.kind,
        status: OperationStatus::Pending,
        start_time: now,
        end_time: None,
        details: renewal.new_card_id.as_ref().map(new_card_details),
    };
    tx.enqueue_operation(&ctx.issuer, &operation).await?;
    tracing::info!(card = %card_id, operation = request.kind.as_str(), "card operation waits for the issuer's credentials");
    Ok(())
}

/// How one attempt at a pending renewal ended.
enum Completion {
    Done,
    Retry(AfterAttempt),
    Failed(String),
}

impl Platform {
    /// Takes the oldest due pending renewal, asks the issuer for the card's new credentials, and
    /// completes (or retries, or fails) it.
    pub async fn complete_next_renewal(
        &self,
        backend: &dyn IssuerBackend,
        owner: &str,
        lease: Duration,
    ) -> Result<Turn, AppError> {
        let now = self.clock.now();
        let lease = Lease { owner: owner.to_owned(), until: now + lease };
        let claimed =
            self.store.write(move |tx| Box::pin(async move { Ok(tx.claim_renewal(now, &lease).await?) })).await?;
        let Some((issuer_id, renewal)) = claimed else {
            return Ok(Turn::Idle);
        };
        let id = issuer_id.clone();
        let (issuer, keys) = self
            .store
            .read(move |tx| Box::pin(async move { Ok((tx.issuer(&id).await?, tx.encryption_keys(&id).await?)) }))
            .await?;
        let callback = issuer.and_then(|i| i.onboarding.callback);
        let fetched = match &callback {
            // The credentials belong to the card that will carry them: the new cardId when the
            // card moves to one, else the card itself.
            Some(callback) => {
                let holder = renewal.new_card_id.as_ref().unwrap_or(&renewal.card_id);
                backend.card_credentials(&issuer_id, callback, holder).await
            }
            None => Err(AttemptOutcome::Rejected { error: "the issuer has no callback settings".to_owned() }),
        };
        let finished = self.clock.now();
        let completion = match fetched {
            Ok(jwe) => match self.card_data.decrypt_card_data(&issuer_id, &keys, &jwe, "encryptedData") {
                Ok(credentials) => {
                    let vaulted = self.card_data.vault_credentials(&credentials);
                    match self.apply_renewal(&issuer_id, &renewal, owner, (credentials, vaulted), finished).await {
                        Ok(()) => Completion::Done,
                        Err(AppError::Refused(refusal)) => Completion::Failed(format!("refused: {refusal}")),
                        Err(AppError::Invalid(invalid)) => Completion::Failed(format!("refused: {invalid}")),
                        Err(other) => return Err(other),
                    }
                }
                Err(refused) => Completion::Failed(format!("the issuer's credentials were refused: {refused}")),
            },
            Err(outcome) => match after_attempt(renewal.attempts + 1, outcome, finished) {
                AfterAttempt::Dead { error } => Completion::Failed(error),
                retry => Completion::Retry(retry),
            },
        };
        match completion {
            Completion::Done => {
                tracing::info!(card = %renewal.card_id, operation = renewal.kind.as_str(), "card operation completed with the issuer's credentials");
            }
            Completion::Retry(after) => {
                let (operation_id, owner) = (renewal.operation_id.clone(), owner.to_owned());
                self.store
                    .write(move |tx| {
                        Box::pin(async move { Ok(tx.finish_renewal_attempt(&operation_id, &owner, &after).await?) })
                    })
                    .await?;
            }
            Completion::Failed(error) => {
                tracing::warn!(card = %renewal.card_id, operation = renewal.kind.as_str(), %error, "card operation failed");
                self.fail_renewal(issuer_id, renewal, owner, error, finished).await?;
            }
        }
        Ok(Turn::Attempted(1))
    }

    /// Completes the renewal with the credentials, in one transaction with its bookkeeping.
    async fn apply_renewal(
        &self,
        issuer: &IssuerId,
        renewal: &PendingRenewal,
        owner: &str,
        credentials: (cardplane_domain::credentials::CardCredentials, crate::ports::VaultedCredentials),
        now: OffsetDateTime,
    ) -> Result<(), AppError> {
        let ctx = RequestContext {
            issuer: issuer.clone(),
            actor: renewal.actor.clone(),
            correlation_id: renewal.correlation_id.clone(),
            idempotency: None,
            completes: Some(renewal.operation_id.clone()),
        };
        let request = CardOperation {
            kind: renewal.kind,
            reason_code: renewal.reason_code,
            reason: renewal.reason.clone(),
            new_card_id: renewal.new_card_id.clone(),
            new_card_state: renewal.new_card_state,
            encrypted_data: None,
        };
        let (renewal, owner, credentials) = (renewal.clone(), owner.to_owned(), Some(credentials));
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    apply_operation(tx, &ctx, &renewal.card_id, &request, &credentials, now).await?;
                    let done = AfterAttempt::Delivered { at: now };
                    tx.finish_renewal_attempt(&renewal.operation_id, &owner, &done).await?;
                    Ok(())
                })
            })
            .await
    }

    /// Gives up on a renewal: it is marked failed and the issuer gets a `FAILED` notification.
    async fn fail_renewal(
        &self,
        issuer: IssuerId,
        renewal: PendingRenewal,
        owner: &str,
        error: String,
        now: OffsetDateTime,
    ) -> Result<(), AppError> {
        let owner = owner.to_owned();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let failed = AfterAttempt::Dead { error };
                    if !tx.finish_renewal_attempt(&renewal.operation_id, &owner, &failed).await? {
                        return Ok(()); // another worker took it over; it will tell the issuer
                    }
                    let operation = Operation {
                        operation_id: uuid::Uuid::new_v4().simple().to_string(),
                        card_id: renewal.card_id.clone(),
                        kind: renewal.kind,
                        status: OperationStatus::Failed,
                        start_time: renewal.requested_at,
                        end_time: Some(now),
                        details: Some(pending_details(&renewal.operation_id, None)),
                    };
                    tx.enqueue_operation(&issuer, &operation).await?;
                    Ok(())
                })
            })
            .await
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
