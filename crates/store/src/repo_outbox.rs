//! The notification outbox queries (see [`cardplane_app::ports::OutboxTx`]), written once for both
//! backends. Only the claim differs: PostgreSQL workers take turns per issuer (an advisory lock)
//! and skip rows another worker holds (`FOR UPDATE SKIP LOCKED`); SQLite has one writer already.

use crate::repo::{corrupt, from_micros};
use crate::repo_cards::OperationRow;
use cardplane_app::ports::StoreError;
use cardplane_domain::delivery::{AfterAttempt, Delivery, DeliveryState};

/// The columns of a delivery, in the order [`DeliveryRow`] reads them.
macro_rules! delivery_columns {
    () => {
        "seq, operation_id, card_id, operation, status, start_time, end_time, details, delivery_state, attempts, \
         next_attempt_at, last_attempt_at, last_error, delivered_at, digital_card_id"
    };
}
pub(crate) use delivery_columns;

/// When a notification `o` can be sent at `$2`: pending, due, unleased, and no earlier pending
/// notification of its card is waiting for a retry or leased (per-card order).
macro_rules! sendable_now {
    () => {
        "o.delivery_state = 'PENDING' AND o.next_attempt_at <= $2 AND (o.lease_until IS NULL OR o.lease_until <= $2) \
         AND NOT EXISTS (SELECT 1 FROM operations e WHERE e.issuer_id = o.issuer_id AND e.card_id = o.card_id \
         AND e.delivery_state = 'PENDING' AND e.seq < o.seq \
         AND (e.next_attempt_at > $2 OR (e.lease_until IS NOT NULL AND e.lease_until > $2)))"
    };
}
pub(crate) use sendable_now;

#[derive(sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    seq: i64,
    #[sqlx(flatten)]
    operation: OperationRow,
    delivery_state: String,
    attempts: i64,
    next_attempt_at: Option<i64>,
    last_attempt_at: Option<i64>,
    last_error: Option<String>,
    delivered_at: Option<i64>,
}

impl crate::native::FromRow for DeliveryRow {
    fn from_row(row: &crate::native::NativeRow) -> Result<Self, sqlx::Error> {
        use crate::native::Row as _;
        Ok(Self {
            seq: row.try_get("seq")?,
            operation: <OperationRow as crate::native::FromRow>::from_row(row)?,
            delivery_state: row.try_get("delivery_state")?,
            attempts: row.try_get("attempts")?,
            next_attempt_at: row.try_get("next_attempt_at")?,
            last_attempt_at: row.try_get("last_attempt_at")?,
            last_error: row.try_get("last_error")?,
            delivered_at: row.try_get("delivered_at")?,
        })
    }
}

impl DeliveryRow {
    pub(crate) fn seq(&self) -> i64 {
        self.seq
    }

    pub(crate) fn into_delivery(self) -> Result<Delivery, StoreError> {
        let state = DeliveryState::parse(&self.delivery_state).ok_or_else(|| corrupt("delivery state"))?;
        Ok(Delivery {
            operation: self.operation.into_operation()?,
            state,
            attempts: u32::try_from(self.attempts).map_err(corrupt)?,
            next_attempt_at: self
                .next_attempt_at
                .filter(|_| state == DeliveryState::Pending)
                .map(from_micros)
                .transpose()?,
            last_attempt_at: self.last_attempt_at.map(from_micros).transpose()?,
            last_error: self.last_error,
            delivered_at: self.delivered_at.map(from_micros).transpose()?,
        })
    }
}

/// The columns an attempt sets: state, next try (micros), last error, delivered at (micros).
pub(crate) fn attempt_columns(after: &AfterAttempt) -> (&'static str, Option<i64>, Option<&str>, Option<i64>) {
    use crate::repo::micros;
    match after {
        AfterAttempt::Delivered { at } => (DeliveryState::Delivered.as_str(), None, None, Some(micros(*at))),
        AfterAttempt::RetryAt { at, error } => (DeliveryState::Pending.as_str(), Some(micros(*at)), Some(error), None),
        AfterAttempt::Dead { error } => (DeliveryState::Dead.as_str(), None, Some(error), None),
    }
}

/// Implements [`OutboxTx`](cardplane_app::ports::OutboxTx) for `SqlTx<'_, $conn>`. `$take_turns` runs
/// before a claim (with the issuerId as `$1`), `$skip_locked` ends the claim's row selection.
macro_rules! impl_outbox_tx {
    ($conn:ty, $sql:ident, take_turns: $take_turns:expr, skip_locked: $skip_locked:literal) => {
        #[async_trait::async_trait]
        impl cardplane_app::ports::OutboxTx for $crate::repo::SqlTx<'_, $conn> {
            async fn next_due_issuer(
                &mut self,
                now: time::OffsetDateTime,
            ) -> Result<Option<cardplane_domain::ids::IssuerId>, cardplane_app::ports::StoreError> {
                use $crate::repo::{backend, corrupt, micros};
                // `$1` is unused so that the predicate's `$2` means now, as in the claim.
                let issuer: Option<(String,)> = $sql::query_as(concat!(
                    "SELECT o.issuer_id FROM operations o WHERE ($1 IS NULL OR o.issuer_id = $1) AND ",
                    $crate::repo_outbox::sendable_now!(),
                    " ORDER BY o.seq LIMIT 1"
                ))
                .bind(None::<String>)
                .bind(micros(now))
                .fetch_optional(&mut *self.conn)
                .await
                .map_err(backend)?;
                issuer.map(|(id,)| cardplane_domain::ids::IssuerId::parse(id).map_err(corrupt)).transpose()
            }

            async fn claim_deliveries(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                now: time::OffsetDateTime,
                lease: &cardplane_app::ports::Lease,
                limit: usize,
            ) -> Result<Vec<cardplane_domain::delivery::Delivery>, cardplane_app::ports::StoreError> {
                use $crate::repo::{backend, micros};
                use $crate::repo_outbox::DeliveryRow;
                let take_turns: Option<&str> = $take_turns;
                if let Some(sql) = take_turns {
                    $sql::query(sql).bind(issuer.as_str()).execute(&mut *self.conn).await.map_err(backend)?;
                }
                let mut rows: Vec<DeliveryRow> = $sql::query_as(concat!(
                    "UPDATE operations SET lease_owner = $3, lease_until = $4 WHERE seq IN (SELECT o.seq FROM \
                     operations o WHERE o.issuer_id = $1 AND ",
                    $crate::repo_outbox::sendable_now!(),
                    " ORDER BY o.seq LIMIT $5",
                    $skip_locked,
                    ") RETURNING ",
                    $crate::repo_outbox::delivery_columns!()
                ))
                .bind(issuer.as_str())
                .bind(micros(now))
                .bind(lease.owner.as_str())
                .bind(micros(lease.until))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&mut *self.conn)
                .await
                .map_err(backend)?;
                // RETURNING promises no order; the issuer must get them in the order they happened.
                rows.sort_by_key(DeliveryRow::seq);
                rows.into_iter().map(DeliveryRow::into_delivery).collect()
            }

            async fn record_attempt(
                &mut self,
                operation_id: &str,
                owner: &str,
                attempted_at: time::OffsetDateTime,
                after: &cardplane_domain::delivery::AfterAttempt,
            ) -> Result<bool, cardplane_app::ports::StoreError> {
                use $crate::repo::{backend, micros};
                let (state, next_attempt_at, error, delivered_at) = $crate::repo_outbox::attempt_columns(after);
                let done = $sql::query(
                    "UPDATE operations SET attempts = attempts + 1, last_attempt_at = $1, delivery_state = $2, \
                     next_attempt_at = $3, last_error = COALESCE($4, last_error), delivered_at = $5, \
                     lease_owner = NULL, lease_until = NULL WHERE operation_id = $6 AND lease_owner = $7",
                )
                .bind(micros(attempted_at))
                .bind(state)
                .bind(next_attempt_at)
                .bind(error)
                .bind(delivered_at)
                .bind(operation_id)
                .bind(owner)
                .execute(&mut *self.conn)
                .await
                .map_err(backend)?;
                Ok(done.rows_affected() == 1)
            }

            async fn deliveries(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                state: Option<cardplane_domain::delivery::DeliveryState>,
            ) -> Result<Vec<cardplane_domain::delivery::Delivery>, cardplane_app::ports::StoreError> {
                use $crate::repo::backend;
                use $crate::repo_outbox::DeliveryRow;
                let rows: Vec<DeliveryRow> = $sql::query_as(concat!(
                    "SELECT ",
                    $crate::repo_outbox::delivery_columns!(),
                    " FROM operations WHERE issuer_id = $1 AND ($2 IS NULL OR delivery_state = $2) ORDER BY seq"
                ))
                .bind(issuer.as_str())
                .bind(state.map(|s| s.as_str()))
                .fetch_all(&mut *self.conn)
                .await
                .map_err(backend)?;
                rows.into_iter().map(DeliveryRow::into_delivery).collect()
            }

            async fn redeliver(
                &mut self,
                operation_id: &str,
                now: time::OffsetDateTime,
            ) -> Result<Option<cardplane_domain::ids::IssuerId>, cardplane_app::ports::StoreError> {
                use $crate::repo::{backend, corrupt, micros};
                let issuer: Option<(String,)> = $sql::query_as(
                    "UPDATE operations SET delivery_state = 'PENDING', attempts = 0, next_attempt_at = $1, \
                     delivered_at = NULL, lease_owner = NULL, lease_until = NULL WHERE operation_id = $2 \
                     RETURNING issuer_id",
                )
                .bind(micros(now))
                .bind(operation_id)
                .fetch_optional(&mut *self.conn)
                .await
                .map_err(backend)?;
                issuer.map(|(id,)| cardplane_domain::ids::IssuerId::parse(id).map_err(corrupt)).transpose()
            }
        }
    };
}
pub(crate) use impl_outbox_tx;

#[derive(sqlx::FromRow)]
pub(crate) struct PendingRow {
    operation_id: String,
    issuer_id: String,
    card_id: String,
    operation: String,
    reason_code: Option<String>,
    reason: Option<String>,
    new_card_id: Option<String>,
    new_card_state: String,
    digital_card_id: Option<String>,
    actor: String,
    correlation_id: String,
    requested_at: i64,
    attempts: i64,
}

crate::native::struct_from_row!(PendingRow {
    operation_id,
    issuer_id,
    card_id,
    operation,
    reason_code,
    reason,
    new_card_id,
    new_card_state,
    digital_card_id,
    actor,
    correlation_id,
    requested_at,
    attempts
});

impl PendingRow {
    pub(crate) fn into_pending(
        self,
    ) -> Result<(cardplane_domain::ids::IssuerId, cardplane_domain::pending::PendingOperation), StoreError> {
        use cardplane_domain::card::{InitialState, OperationKind, ReasonCode};
        use cardplane_domain::digital_card::DigitalCardId;
        use cardplane_domain::ids::{CardId, IssuerId};
        Ok((
            IssuerId::parse(self.issuer_id).map_err(corrupt)?,
            cardplane_domain::pending::PendingOperation {
                operation_id: self.operation_id,
                card_id: CardId::parse(self.card_id).map_err(corrupt)?,
                kind: OperationKind::parse(&self.operation).ok_or_else(|| corrupt("pending operation"))?,
                reason_code: self
                    .reason_code
                    .map(|r| ReasonCode::parse(&r).ok_or_else(|| corrupt("pending operation reason")))
                    .transpose()?,
                reason: self.reason,
                new_card_id: self.new_card_id.map(CardId::parse).transpose().map_err(corrupt)?,
                new_card_state: InitialState::parse(&self.new_card_state)
                    .ok_or_else(|| corrupt("pending operation state"))?,
                digital_card_id: self.digital_card_id.map(DigitalCardId::parse).transpose().map_err(corrupt)?,
                actor: self.actor,
                correlation_id: self.correlation_id,
                requested_at: from_micros(self.requested_at)?,
                attempts: u32::try_from(self.attempts).map_err(corrupt)?,
            },
        ))
    }
}

/// Implements [`PendingTx`](cardplane_app::ports::PendingTx) for `SqlTx<'_, $conn>`.
macro_rules! impl_pending_tx {
    ($conn:ty, $sql:ident, skip_locked: $skip_locked:literal) => {
        #[async_trait::async_trait]
        impl cardplane_app::ports::PendingTx for $crate::repo::SqlTx<'_, $conn> {
            async fn enqueue_pending(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                pending: &cardplane_domain::pending::PendingOperation,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                use $crate::repo::{backend, micros};
                $sql::query(
                    "INSERT INTO pending_operations (operation_id, issuer_id, card_id, operation, reason_code, reason, \
                     new_card_id, new_card_state, digital_card_id, actor, correlation_id, requested_at, \
                     next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
                )
                .bind(pending.operation_id.as_str())
                .bind(issuer.as_str())
                .bind(pending.card_id.as_str())
                .bind(pending.kind.as_str())
                .bind(pending.reason_code.map(|r| r.as_str()))
                .bind(pending.reason.as_deref())
                .bind(pending.new_card_id.as_ref().map(|c| c.as_str()))
                .bind(pending.new_card_state.as_str())
                .bind(pending.digital_card_id.as_ref().map(|d| d.as_str()))
                .bind(pending.actor.as_str())
                .bind(pending.correlation_id.as_str())
                .bind(micros(pending.requested_at))
                .execute(&mut *self.conn)
                .await
                .map_err(backend)?;
                Ok(())
            }

            async fn any_pending_due(&mut self, now: time::OffsetDateTime) -> Result<bool, cardplane_app::ports::StoreError> {
                let due: Option<(String,)> = $sql::query_as(
                    "SELECT operation_id FROM pending_operations WHERE state = 'PENDING' AND next_attempt_at <= $1 \
                     AND (lease_until IS NULL OR lease_until <= $1) LIMIT 1",
                )
                .bind($crate::repo::micros(now))
                .fetch_optional(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                Ok(due.is_some())
            }

            async fn claim_pending(
                &mut self,
                now: time::OffsetDateTime,
                lease: &cardplane_app::ports::Lease,
            ) -> Result<
                Option<(cardplane_domain::ids::IssuerId, cardplane_domain::pending::PendingOperation)>,
                cardplane_app::ports::StoreError,
            > {
                use $crate::repo::{backend, micros};
                use $crate::repo_outbox::PendingRow;
                let row: Option<PendingRow> = $sql::query_as(concat!(
                    "UPDATE pending_operations SET lease_owner = $2, lease_until = $3 WHERE operation_id IN \
                     (SELECT operation_id FROM pending_operations WHERE state = 'PENDING' AND next_attempt_at <= $1 \
                     AND (lease_until IS NULL OR lease_until <= $1) ORDER BY next_attempt_at LIMIT 1",
                    $skip_locked,
                    ") RETURNING operation_id, issuer_id, card_id, operation, reason_code, reason, new_card_id, \
                     new_card_state, digital_card_id, actor, correlation_id, requested_at, attempts"
                ))
                .bind(micros(now))
                .bind(lease.owner.as_str())
                .bind(micros(lease.until))
                .fetch_optional(&mut *self.conn)
                .await
                .map_err(backend)?;
                row.map(PendingRow::into_pending).transpose()
            }

            async fn finish_pending_attempt(
                &mut self,
                operation_id: &str,
                owner: &str,
                after: &cardplane_domain::delivery::AfterAttempt,
            ) -> Result<bool, cardplane_app::ports::StoreError> {
                use cardplane_domain::delivery::AfterAttempt;
                use $crate::repo::{backend, micros};
                let (state, next, error) = match after {
                    AfterAttempt::Delivered { .. } => ("DONE", None, None),
                    AfterAttempt::RetryAt { at, error } => ("PENDING", Some(micros(*at)), Some(error.as_str())),
                    AfterAttempt::Dead { error } => ("FAILED", None, Some(error.as_str())),
                };
                let done = $sql::query(
                    "UPDATE pending_operations SET attempts = attempts + 1, state = $1, next_attempt_at = $2, \
                     last_error = COALESCE($3, last_error), lease_owner = NULL, lease_until = NULL \
                     WHERE operation_id = $4 AND lease_owner = $5",
                )
                .bind(state)
                .bind(next)
                .bind(error)
                .bind(operation_id)
                .bind(owner)
                .execute(&mut *self.conn)
                .await
                .map_err(backend)?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}
pub(crate) use impl_pending_tx;
