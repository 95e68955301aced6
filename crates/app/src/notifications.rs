//! Notifying the issuer of operations (outbound.md §2): one batch at a time, from the outbox, for
//! the worker; and the admin's view of deliveries and redelivery.
//!
//! A batch goes through three steps, each durable before the next: it is *claimed* (leased to this
//! worker, so no other sends it meanwhile), *sent* (outside any transaction), and its outcome is
//! *recorded* (delivered, retry at, or dead-lettered). A worker that dies between the first and the
//! last step leaves a lease that runs out, and the batch is sent again: at least once, never lost.

use crate::ports::{AttemptEnded, IssuerBackend, Lease, StoreError, StoreExt, Tx};
use crate::{AppError, Platform};
use cardplane_domain::delivery::{AfterAttempt, AttemptOutcome, Delivery, DeliveryState, after_attempt};
use cardplane_domain::ids::IssuerId;
use cardplane_domain::issuer::CallbackSettings;
use cardplane_domain::operation::Operation;
use time::{Duration, OffsetDateTime};

/// What one turn of the worker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Nothing can be sent now.
    Idle,
    /// A batch of this many notifications was attempted.
    Attempted(usize),
}

/// The most notifications dead-lettered at once for an issuer without callback settings (to be
/// redelivered by the operator once the issuer has a callback).
const UNDELIVERABLE_BATCH: usize = 100;

/// Why a notification to an issuer without callback settings is dead-lettered.
const NO_CALLBACK: &str = "the issuer has no callback settings";

/// Writes the notification of `operation`, in the unit of work that made the change: into the
/// outbox, or, if the issuer has no callback settings to reach it at, dead-lettered at once, on the
/// record for the operator to redeliver. The worker would dead-letter it at its first look anyway;
/// doing it here spares the queue two writes and the writer a unit of its own.
pub(crate) async fn notify(
    tx: &mut dyn Tx,
    issuer: &IssuerId,
    operation: &Operation,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    tx.notify_operation(issuer, operation, now, NO_CALLBACK).await
}

impl Platform {
    /// Claims the oldest batch that can be sent now, sends it through `backend`, and records the
    /// outcome. `owner` names this worker in its leases; `lease` is how long a claim holds (longer
    /// than any one call can take).
    pub async fn deliver_next_batch(
        &self,
        backend: &dyn IssuerBackend,
        owner: &str,
        lease: Duration,
    ) -> Result<Turn, AppError> {
        let now = self.clock.now();
        // Who has waited longest, and where to reach them: a read, so the writer is not asked.
        let due = self
            .store
            .read(move |tx| {
                Box::pin(async move {
                    let Some(issuer_id) = tx.next_due_issuer(now).await? else { return Ok(None) };
                    let callback = tx.issuer(&issuer_id).await?.and_then(|i| i.onboarding.callback);
                    Ok(Some((issuer_id, callback)))
                })
            })
            .await?;
        let Some((issuer_id, callback)) = due else { return Ok(Turn::Idle) };
        let Some(callback) = callback else { return self.dead_letter_undeliverable(issuer_id, now).await };
        let lease = Lease { owner: owner.to_owned(), until: now + lease };
        let limit = usize::from(callback.max_batch_size);
        let claimed_for = issuer_id.clone();
        let batch = self
            .store
            .write(move |tx| Box::pin(async move { Ok(tx.claim_deliveries(&claimed_for, now, &lease, limit).await?) }))
            .await?;
        if batch.is_empty() {
            // Another worker claimed them between our look and our claim.
            return Ok(Turn::Attempted(0));
        }
        let (operations, attempts_before): (Vec<Operation>, Vec<u32>) =
            batch.into_iter().map(|d| (d.operation, d.attempts)).unzip();
        let outcomes = send(backend, &issuer_id, &callback, &operations).await;
        let finished = self.clock.now();
        if let Some(outcome) = outcomes.iter().find(|o| **o != AttemptOutcome::Delivered).or(outcomes.first()) {
            log_outcome(&issuer_id, &operations, outcome);
        }
        let attempts: Vec<AttemptEnded> = operations
            .iter()
            .zip(attempts_before)
            .zip(outcomes)
            .map(|((operation, before), outcome)| AttemptEnded {
                operation_id: operation.operation_id.clone(),
                card_id: operation.card_id.clone(),
                after: after_attempt(before + 1, outcome, finished),
            })
            .collect();
        log_dead_letters(&issuer_id, &attempts);
        let owner = owner.to_owned();
        let attempted = attempts.len();
        let lost = self
            .store
            .write(move |tx| {
                Box::pin(async move { Ok(tx.record_attempts(&issuer_id, &owner, finished, &attempts).await?) })
            })
            .await?;
        if let Some(first) = lost.first() {
            tracing::warn!(
                count = lost.len(), first_operation_id = %first,
                "the lease on notifications ran out during their delivery; another worker took them"
            );
        }
        Ok(Turn::Attempted(attempted))
    }

    /// Dead-letters a batch of what the issuer, which has no callback settings, could be sent now:
    /// in one unit of work, as nothing is sent (no lease to take and release).
    async fn dead_letter_undeliverable(&self, issuer_id: IssuerId, now: OffsetDateTime) -> Result<Turn, AppError> {
        let issuer = issuer_id.clone();
        let dead = self
            .store
            .write(move |tx| {
                Box::pin(
                    async move { Ok(tx.dead_letter_sendable(&issuer, now, UNDELIVERABLE_BATCH, NO_CALLBACK).await?) },
                )
            })
            .await?;
        if let (Some(first), Some(last)) = (dead.first(), dead.last()) {
            tracing::warn!(
                issuer = %issuer_id, count = dead.len(), first_operation_id = %first, last_operation_id = %last,
                error = NO_CALLBACK, "notifications dead-lettered"
            );
        }
        Ok(Turn::Attempted(dead.len()))
    }

    /// The issuer's notifications with their delivery records, optionally only those in `state`.
    pub async fn deliveries(&self, issuer: IssuerId, state: Option<DeliveryState>) -> Result<Vec<Delivery>, AppError> {
        self.store
            .read(move |tx| {
                Box::pin(async move {
                    if tx.issuer(&issuer).await?.is_none() {
                        return Err(AppError::IssuerNotFound(issuer));
                    }
                    Ok(tx.deliveries(&issuer, state).await?)
                })
            })
            .await
    }

    /// Queues a notification again (whatever its state), due now, with a fresh retry schedule.
    /// `false` for an unknown operationId.
    pub async fn redeliver(&self, operation_id: String) -> Result<bool, AppError> {
        let now = self.clock.now();
        let issuer =
            self.store.write(move |tx| Box::pin(async move { Ok(tx.redeliver(&operation_id, now).await?) })).await?;
        Ok(issuer.is_some())
    }
}

/// Sends a batch in order: runs of card notifications in one call each, digital-card ones alone
/// (outbound.md §4b). From the first call that fails on, the rest are not sent and share its
/// outcome, so that nothing overtakes an earlier notification of the batch. One outcome per
/// operation.
async fn send(
    backend: &dyn IssuerBackend,
    issuer: &IssuerId,
    callback: &CallbackSettings,
    operations: &[Operation],
) -> Vec<AttemptOutcome> {
    let mut outcomes = Vec::with_capacity(operations.len());
    let mut rest = operations;
    while let Some(first) = rest.first() {
        if let Some(failed) = outcomes.last().filter(|o| **o != AttemptOutcome::Delivered).cloned() {
            outcomes.resize(operations.len(), failed);
            break;
        }
        let (outcome, sent) = if first.digital_card_id.is_some() {
            (backend.notify_digital_card(issuer, callback, first).await, 1)
        } else {
            let run = rest.iter().take_while(|o| o.digital_card_id.is_none()).count();
            (backend.notify_operations(issuer, callback, &rest[..run]).await, run)
        };
        outcomes.extend(std::iter::repeat_n(outcome, sent));
        rest = &rest[sent..];
    }
    outcomes
}

/// One line for the notifications of a batch that were dead-lettered (the admin API lists each
/// with its error).
fn log_dead_letters(issuer: &IssuerId, attempts: &[AttemptEnded]) {
    let mut dead = attempts.iter().filter_map(|a| match &a.after {
        AfterAttempt::Dead { error } => Some((a.operation_id.as_str(), error.as_str())),
        _ => None,
    });
    if let Some((first, error)) = dead.next() {
        let count = 1 + dead.count();
        tracing::warn!(issuer = %issuer, count, first_operation_id = first, %error, "notifications dead-lettered");
    }
}

fn log_outcome(issuer: &IssuerId, operations: &[Operation], outcome: &AttemptOutcome) {
    let count = operations.len();
    let first = operations.first().map(|o| o.operation_id.as_str()).unwrap_or_default();
    match outcome {
        AttemptOutcome::Delivered => {
            tracing::info!(issuer = %issuer, count, first_operation_id = first, "notifications delivered");
        }
        AttemptOutcome::Retryable { error, .. } => {
            tracing::warn!(issuer = %issuer, count, first_operation_id = first, %error, "notification attempt failed; will retry");
        }
        AttemptOutcome::Rejected { error } => {
            tracing::warn!(issuer = %issuer, count, first_operation_id = first, %error, "notifications refused by the issuer");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardplane_domain::card::OperationKind;
    use cardplane_domain::consumer::PersonalInformation;
    use cardplane_domain::digital_card::DigitalCardId;
    use cardplane_domain::ids::{CardId, ConsumerId};
    use cardplane_domain::issuer::HttpUrl;
    use cardplane_domain::operation::OperationStatus;
    use std::sync::Mutex;

    /// Records each call (the operationIds it carried) and answers from a script.
    struct Scripted {
        calls: Mutex<Vec<Vec<String>>>,
        answers: Mutex<Vec<AttemptOutcome>>,
    }

    impl Scripted {
        fn answer(&self, operations: &[&Operation]) -> AttemptOutcome {
            self.calls.lock().unwrap().push(operations.iter().map(|o| o.operation_id.clone()).collect());
            self.answers.lock().unwrap().remove(0)
        }
    }

    #[async_trait::async_trait]
    impl IssuerBackend for Scripted {
        async fn notify_operations(&self, _: &IssuerId, _: &CallbackSettings, ops: &[Operation]) -> AttemptOutcome {
            self.answer(&ops.iter().collect::<Vec<_>>())
        }
        async fn notify_digital_card(&self, _: &IssuerId, _: &CallbackSettings, op: &Operation) -> AttemptOutcome {
            self.answer(&[op])
        }
        async fn consumer_information(
            &self,
            _: &IssuerId,
            _: &CallbackSettings,
            _: &ConsumerId,
            _: Option<&CardId>,
        ) -> Result<PersonalInformation, AttemptOutcome> {
            unreachable!()
        }
        async fn card_credentials(
            &self,
            _: &IssuerId,
            _: &CallbackSettings,
            _: &CardId,
        ) -> Result<String, AttemptOutcome> {
            unreachable!()
        }
    }

    fn operation(id: &str, digital: bool) -> Operation {
        Operation {
            operation_id: id.to_owned(),
            card_id: CardId::parse("card-1").unwrap(),
            kind: OperationKind::Delete,
            status: OperationStatus::Successful,
            start_time: time::OffsetDateTime::UNIX_EPOCH,
            end_time: None,
            details: None,
            digital_card_id: digital.then(|| DigitalCardId::parse("dc-1").unwrap()),
        }
    }

    #[tokio::test]
    async fn batches_go_out_in_runs_and_stop_at_the_first_failure() {
        let base = HttpUrl::parse("baseUrl", "http://127.0.0.1:9").unwrap();
        let callback = CallbackSettings {
            token_url: base.clone(),
            base_url: base,
            client: None,
            scope: None,
            max_batch_size: 10,
            stores_consumer_data: true,
        };
        let failed = AttemptOutcome::Retryable { error: "HTTP 503".into(), retry_after: None };
        let backend = Scripted {
            calls: Mutex::default(),
            answers: Mutex::new(vec![AttemptOutcome::Delivered, AttemptOutcome::Delivered, failed.clone()]),
        };
        let batch = [
            operation("a", false),
            operation("b", false),
            operation("c", true),
            operation("d", false),
            operation("e", false),
            operation("f", true),
        ];
        let issuer = IssuerId::parse("ISSUER0001").unwrap();
        let outcomes = send(&backend, &issuer, &callback, &batch).await;
        assert_eq!(*backend.calls.lock().unwrap(), [vec!["a", "b"], vec!["c"], vec!["d", "e"]]);
        let delivered = AttemptOutcome::Delivered;
        assert_eq!(outcomes, [delivered.clone(), delivered.clone(), delivered, failed.clone(), failed.clone(), failed]);
    }
}
