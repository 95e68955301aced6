//! Notifying the issuer of operations (outbound.md §2): one batch at a time, from the outbox, for
//! the worker; and the admin's view of deliveries and redelivery.
//!
//! A batch goes through three steps, each durable before the next: it is *claimed* (leased to this
//! worker, so no other sends it meanwhile), *sent* (outside any transaction), and its outcome is
//! *recorded* (delivered, retry at, or dead-lettered). A worker that dies between the first and the
//! last step leaves a lease that runs out, and the batch is sent again: at least once, never lost.

use crate::ports::{IssuerBackend, Lease, StoreExt};
use crate::{AppError, Platform};
use cardplane_domain::delivery::{AfterAttempt, AttemptOutcome, Delivery, DeliveryState, after_attempt};
use cardplane_domain::ids::IssuerId;
use cardplane_domain::issuer::CallbackSettings;
use cardplane_domain::operation::Operation;
use time::Duration;

/// What one turn of the worker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Nothing can be sent now.
    Idle,
    /// A batch of this many notifications was attempted.
    Attempted(usize),
}

/// The most notifications claimed at once for an issuer without callback settings (they are
/// dead-lettered, with the reason, to be redelivered once the issuer is given a callback).
const UNDELIVERABLE_BATCH: usize = 100;

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
        let Some(issuer_id) =
            self.store.read(move |tx| Box::pin(async move { Ok(tx.next_due_issuer(now).await?) })).await?
        else {
            return Ok(Turn::Idle);
        };
        let lease = Lease { owner: owner.to_owned(), until: now + lease };
        let (issuer, batch) = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let issuer = tx.issuer(&issuer_id).await?;
                    let callback = issuer.as_ref().and_then(|i| i.onboarding.callback.clone());
                    let limit = callback.as_ref().map_or(UNDELIVERABLE_BATCH, |c| usize::from(c.max_batch_size));
                    let batch = tx.claim_deliveries(&issuer_id, now, &lease, limit).await?;
                    Ok(((issuer_id, callback), batch))
                })
            })
            .await?;
        if batch.is_empty() {
            // Another worker claimed them between our look and our claim.
            return Ok(Turn::Attempted(0));
        }
        let (issuer_id, callback) = issuer;
        let operations: Vec<Operation> = batch.iter().map(|d| d.operation.clone()).collect();
        let outcomes = match &callback {
            Some(callback) => send(backend, &issuer_id, callback, &operations).await,
            None => {
                let refused = AttemptOutcome::Rejected { error: "the issuer has no callback settings".to_owned() };
                vec![refused; operations.len()]
            }
        };
        let finished = self.clock.now();
        if let Some(outcome) = outcomes.iter().find(|o| **o != AttemptOutcome::Delivered).or(outcomes.first()) {
            log_outcome(&issuer_id, &operations, outcome);
        }
        let owner = owner.to_owned();
        let attempted = batch.len();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    for (delivery, outcome) in batch.iter().zip(outcomes) {
                        let after = after_attempt(delivery.attempts + 1, outcome, finished);
                        if let AfterAttempt::Dead { error } = &after {
                            tracing::warn!(
                                issuer = %issuer_id, operation_id = %delivery.operation.operation_id, %error,
                                "notification dead-lettered"
                            );
                        }
                        if !tx.record_attempt(&delivery.operation.operation_id, &owner, finished, &after).await? {
                            tracing::warn!(
                                operation_id = %delivery.operation.operation_id,
                                "the lease on a notification ran out during its delivery; another worker took it"
                            );
                        }
                    }
                    Ok(())
                })
            })
            .await?;
        Ok(Turn::Attempted(attempted))
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
