//! The notification outbox queries (see [`cardplane_app::ports::OutboxTx`]), written once for both
//! backends.
//!
//! Work is found through the *delivery queue* (`delivery_queues`, migration 0009): one row per card
//! with notifications pending, saying when its oldest one can go. Every write that changes a card's
//! oldest pending notification (enqueue, claim, attempt, redelivery) keeps that row right in the same
//! transaction, so a look for work is an index range over ready cards, and a card that is out with a
//! worker or waits for a retry costs nothing however long its backlog. (The queue replaced a walk of
//! the outbox that checked every pending row's card: 225 ms per look on 64 busy cards.)
//!
//! Only locking differs between backends: PostgreSQL workers take turns per issuer (an advisory
//! lock), skip queue rows another transaction holds (`FOR UPDATE SKIP LOCKED`), and lock a card's
//! queue row before reading its oldest notification; SQLite has one writer already.

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
    fn from_row(row: &crate::native::RowRef<'_>) -> Result<Self, sqlx::Error> {
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

/// The most notifications of one card in one claim when `ready` cards share a batch of `limit`:
/// an even share, so that a few cards with long backlogs fill a batch and many cards each get a turn.
pub(crate) fn share_per_card(limit: usize, ready: usize) -> usize {
    limit.div_ceil(ready.max(1))
}

/// A count of rows as a `LIMIT` (saturating: no batch comes near `i64::MAX`).
pub(crate) fn as_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// When a card whose oldest pending notification is `head` can send again.
pub(crate) fn ready_at(head_next_attempt: Option<i64>, head_lease: Option<i64>) -> i64 {
    head_next_attempt.unwrap_or(i64::MIN).max(head_lease.unwrap_or(i64::MIN))
}

/// An `UPDATE` of what card `$2` of issuer `$1` can send at `$4`: its oldest pending notifications
/// (`$3` at most), up to the first that is not due or is leased (per-card order). `$set` is the
/// `SET` list (its own parameters from `$5` on), `$returning` the `RETURNING` list. A claim leases
/// the run; a dead-lettering ends it.
macro_rules! update_sendable_run {
    ($set:literal, $returning:expr) => {
        concat!(
            "WITH run AS (SELECT seq, next_attempt_at, lease_until FROM operations \
             WHERE issuer_id = $1 AND card_id = $2 AND delivery_state = 'PENDING' ORDER BY seq LIMIT $3) \
             UPDATE operations SET ",
            $set,
            " WHERE seq IN (SELECT seq FROM run WHERE seq < COALESCE((SELECT MIN(seq) FROM run \
             WHERE next_attempt_at > $4 OR lease_until > $4), 9223372036854775807)) RETURNING ",
            $returning
        )
    };
}
pub(crate) use update_sendable_run;

/// Implements [`OutboxTx`](cardplane_app::ports::OutboxTx) for `SqlTx<'_, $conn>`, and the upkeep of
/// the delivery queue (migration 0009) that the outbox writes share. `$take_turns` runs before a
/// claim or a dead-lettering (with the issuerId as `$1`), `$skip_locked` ends their selection of cards,
/// `$lock_queue_row` (with issuerId and cardId) locks a card's queue row before its notifications
/// change, and `$when_queued` is what enqueueing does to the row of a card already queued.
macro_rules! impl_outbox_tx {
    (
        $conn:ty,
        $sql:ident,
        take_turns: $take_turns:expr,
        skip_locked: $skip_locked:literal,
        lock_queue_row: $lock_queue_row:expr,
        when_queued: $when_queued:literal
    ) => {
        impl $crate::repo::SqlTx<'_, $conn> {
            /// Puts `card` in the delivery queue once notification `seq`, due at `due`, was added to
            /// the outbox: it is the card's head if the card had nothing pending. A card already in
            /// the queue keeps its place, but on PostgreSQL its row is locked (the no-op update): a
            /// worker that refreshes the card at the same time then waits for this transaction and
            /// sees the new notification, rather than dropping the card from the queue.
            pub(crate) async fn queue_card(
                &mut self,
                issuer: &str,
                card: &str,
                seq: i64,
                due: i64,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                $sql::query(concat!(
                    "INSERT INTO delivery_queues (issuer_id, card_id, ready_at, head_seq) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (issuer_id, card_id) ",
                    $when_queued
                ))
                .bind(issuer)
                .bind(card)
                .bind(due)
                .bind(seq)
                .execute(&mut *self.conn)
                .await
                .map_err($crate::repo::backend)?;
                Ok(())
            }

            /// Waits for the issuer's turn (PostgreSQL: claims and dead-letterings of one issuer run one
            /// after the other; SQLite has one writer already).
            pub(crate) async fn take_turns(&mut self, issuer: &str) -> Result<(), cardplane_app::ports::StoreError> {
                let take_turns: Option<&str> = $take_turns;
                if let Some(sql) = take_turns {
                    $sql::query(sql).bind(issuer).execute(&mut *self.conn).await.map_err($crate::repo::backend)?;
                }
                Ok(())
            }

            /// Locks the card's queue row (PostgreSQL) before its notifications are changed: a claim
            /// locks queue rows, then notifications, and taking them in the other order could
            /// deadlock with it (an attempt recorded after its lease ran out, or a redelivery, racing
            /// a claim of the same card).
            pub(crate) async fn lock_queue_row(
                &mut self,
                issuer: &str,
                card: &str,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                let lock_queue_row: Option<&str> = $lock_queue_row;
                if let Some(sql) = lock_queue_row {
                    $sql::query(sql)
                        .bind(issuer)
                        .bind(card)
                        .execute(&mut *self.conn)
                        .await
                        .map_err($crate::repo::backend)?;
                }
                Ok(())
            }

            /// [`Self::lock_queue_row`] for the card of notification `operation_id`.
            pub(crate) async fn lock_queue_of(
                &mut self,
                operation_id: &str,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                let lock_queue_row: Option<&str> = $lock_queue_row;
                if lock_queue_row.is_none() {
                    return Ok(());
                }
                let card: Option<(String, String)> =
                    $sql::query_as("SELECT issuer_id, card_id FROM operations WHERE operation_id = $1")
                        .bind(operation_id)
                        .fetch_optional(&mut *self.conn)
                        .await
                        .map_err($crate::repo::backend)?;
                match card {
                    Some((issuer, card)) => self.lock_queue_row(&issuer, &card).await,
                    None => Ok(()),
                }
            }

            /// Sets the card's place in the delivery queue from its oldest pending notification, or
            /// takes it out when nothing is pending: after any change to a head (delivered, retried,
            /// dead-lettered, redelivered). The caller already holds the queue row's lock on
            /// PostgreSQL (a claim's mark, or [`Self::lock_queue_row`]), so the head is read after any
            /// enqueue that held the row has committed (see [`Self::queue_card`]).
            pub(crate) async fn requeue_card(
                &mut self,
                issuer: &str,
                card: &str,
            ) -> Result<(), cardplane_app::ports::StoreError> {
                use $crate::repo::backend;
                let head: Option<(i64, Option<i64>, Option<i64>)> = $sql::query_as(
                    "SELECT seq, next_attempt_at, lease_until FROM operations WHERE issuer_id = $1 AND card_id = $2 \
                     AND delivery_state = 'PENDING' ORDER BY seq LIMIT 1",
                )
                .bind(issuer)
                .bind(card)
                .fetch_optional(&mut *self.conn)
                .await
                .map_err(backend)?;
                let query = match head {
                    Some((seq, next, lease)) => $sql::query(
                        "INSERT INTO delivery_queues (issuer_id, card_id, ready_at, head_seq) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (issuer_id, card_id) DO UPDATE SET ready_at = excluded.ready_at, \
                         head_seq = excluded.head_seq",
                    )
                    .bind(issuer)
                    .bind(card)
                    .bind($crate::repo_outbox::ready_at(next, lease))
                    .bind(seq),
                    None => $sql::query("DELETE FROM delivery_queues WHERE issuer_id = $1 AND card_id = $2")
                        .bind(issuer)
                        .bind(card),
                };
                query.execute(&mut *self.conn).await.map_err(backend)?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl cardplane_app::ports::OutboxTx for $crate::repo::SqlTx<'_, $conn> {
            async fn next_due_issuer(
                &mut self,
                now: time::OffsetDateTime,
            ) -> Result<Option<cardplane_domain::ids::IssuerId>, cardplane_app::ports::StoreError> {
                use $crate::repo::{backend, corrupt, micros};
                let issuer: Option<(String,)> = $sql::query_as(
                    "SELECT issuer_id FROM delivery_queues WHERE ready_at <= $1 ORDER BY ready_at, head_seq LIMIT 1",
                )
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
                self.take_turns(issuer.as_str()).await?;
                let (now, until) = (micros(now), micros(lease.until));
                // The cards ready the longest are marked held (until the lease ends) in one statement;
                // each then has its ready notifications leased in one more.
                let mut cards: Vec<(String, i64)> = $sql::query_as(concat!(
                    "UPDATE delivery_queues SET ready_at = $4 WHERE issuer_id = $1 AND card_id IN \
                     (SELECT card_id FROM delivery_queues WHERE issuer_id = $1 AND ready_at <= $2 \
                     ORDER BY ready_at, head_seq LIMIT $3",
                    $skip_locked,
                    ") RETURNING card_id, head_seq"
                ))
                .bind(issuer.as_str())
                .bind(now)
                .bind($crate::repo_outbox::as_limit(limit))
                .bind(until)
                .fetch_all(&mut *self.conn)
                .await
                .map_err(backend)?;
                cards.sort_by_key(|(_, head)| *head);
                let share = $crate::repo_outbox::share_per_card(limit, cards.len());
                let mut rows: Vec<DeliveryRow> = Vec::with_capacity(limit);
                for (card, _) in &cards {
                    let room = share.min(limit - rows.len());
                    let claimed: Vec<DeliveryRow> = if room == 0 {
                        Vec::new()
                    } else {
                        $sql::query_as($crate::repo_outbox::update_sendable_run!(
                            "lease_owner = $5, lease_until = $6",
                            $crate::repo_outbox::delivery_columns!()
                        ))
                        .bind(issuer.as_str())
                        .bind(card.as_str())
                        .bind($crate::repo_outbox::as_limit(room))
                        .bind(now)
                        .bind(lease.owner.as_str())
                        .bind(until)
                        .fetch_all(&mut *self.conn)
                        .await
                        .map_err(backend)?
                    };
                    if claimed.is_empty() {
                        // No room left in the batch (or the queue was behind): the card is not held.
                        self.requeue_card(issuer.as_str(), card).await?;
                    }
                    rows.extend(claimed);
                }
                // The issuer gets them in the order they happened (RETURNING promises no order).
                rows.sort_by_key(DeliveryRow::seq);
                rows.into_iter().map(DeliveryRow::into_delivery).collect()
            }

            async fn record_attempts(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                owner: &str,
                attempted_at: time::OffsetDateTime,
                attempts: &[cardplane_app::ports::AttemptEnded],
            ) -> Result<Vec<String>, cardplane_app::ports::StoreError> {
                use $crate::repo::{backend, micros};
                let mut cards: Vec<&str> = attempts.iter().map(|a| a.card_id.as_str()).collect();
                cards.sort_unstable();
                cards.dedup();
                // In one order whoever records, so that two recorders cannot deadlock either.
                for card in &cards {
                    self.lock_queue_row(issuer.as_str(), card).await?;
                }
                let (mut lost, mut recorded) = (Vec::new(), Vec::with_capacity(cards.len()));
                for attempt in attempts {
                    let (state, next_attempt_at, error, delivered_at) =
                        $crate::repo_outbox::attempt_columns(&attempt.after);
                    let done = $sql::query(
                        "UPDATE operations SET attempts = attempts + 1, last_attempt_at = $1, delivery_state = $2, \
                         next_attempt_at = $3, last_error = COALESCE($4, last_error), delivered_at = $5, \
                         lease_owner = NULL, lease_until = NULL \
                         WHERE operation_id = $6 AND lease_owner = $7 AND issuer_id = $8",
                    )
                    .bind(micros(attempted_at))
                    .bind(state)
                    .bind(next_attempt_at)
                    .bind(error)
                    .bind(delivered_at)
                    .bind(attempt.operation_id.as_str())
                    .bind(owner)
                    .bind(issuer.as_str())
                    .execute(&mut *self.conn)
                    .await
                    .map_err(backend)?;
                    if done.rows_affected() == 0 {
                        lost.push(attempt.operation_id.clone());
                    } else {
                        recorded.push(attempt.card_id.as_str());
                    }
                }
                // A card all of whose leases were lost is another worker's now: left as it is.
                recorded.sort_unstable();
                recorded.dedup();
                for card in recorded {
                    self.requeue_card(issuer.as_str(), card).await?;
                }
                Ok(lost)
            }

            async fn dead_letter_sendable(
                &mut self,
                issuer: &cardplane_domain::ids::IssuerId,
                now: time::OffsetDateTime,
                limit: usize,
                error: &str,
            ) -> Result<Vec<String>, cardplane_app::ports::StoreError> {
                use $crate::repo::{backend, micros};
                self.take_turns(issuer.as_str()).await?;
                let now = micros(now);
                // The cards a claim would take, in the order it gives them room (oldest head first).
                let mut cards: Vec<(String, i64)> = $sql::query_as(concat!(
                    "SELECT card_id, head_seq FROM delivery_queues WHERE issuer_id = $1 AND ready_at <= $2 \
                     ORDER BY ready_at, head_seq LIMIT $3",
                    $skip_locked
                ))
                .bind(issuer.as_str())
                .bind(now)
                .bind($crate::repo_outbox::as_limit(limit))
                .fetch_all(&mut *self.conn)
                .await
                .map_err(backend)?;
                cards.sort_by_key(|(_, head)| *head);
                let share = $crate::repo_outbox::share_per_card(limit, cards.len());
                let mut ended: Vec<(String, i64)> = Vec::with_capacity(limit);
                for (card, _) in &cards {
                    let room = share.min(limit - ended.len());
                    if room == 0 {
                        break;
                    }
                    let run: Vec<(String, i64)> = $sql::query_as($crate::repo_outbox::update_sendable_run!(
                        "attempts = attempts + 1, last_attempt_at = $4, delivery_state = 'DEAD', \
                         next_attempt_at = NULL, last_error = $5, lease_owner = NULL, lease_until = NULL",
                        "operation_id, seq"
                    ))
                    .bind(issuer.as_str())
                    .bind(card.as_str())
                    .bind($crate::repo_outbox::as_limit(room))
                    .bind(now)
                    .bind(error)
                    .fetch_all(&mut *self.conn)
                    .await
                    .map_err(backend)?;
                    // Its head moved on (or, if nothing could go, the queue was behind).
                    self.requeue_card(issuer.as_str(), card).await?;
                    ended.extend(run);
                }
                ended.sort_by_key(|(_, seq)| *seq);
                Ok(ended.into_iter().map(|(id, _)| id).collect())
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
                self.lock_queue_of(operation_id).await?;
                let card: Option<(String, String)> = $sql::query_as(
                    "UPDATE operations SET delivery_state = 'PENDING', attempts = 0, next_attempt_at = $1, \
                     delivered_at = NULL, lease_owner = NULL, lease_until = NULL WHERE operation_id = $2 \
                     RETURNING issuer_id, card_id",
                )
                .bind(micros(now))
                .bind(operation_id)
                .fetch_optional(&mut *self.conn)
                .await
                .map_err(backend)?;
                let Some((issuer, card)) = card else { return Ok(None) };
                self.requeue_card(&issuer, &card).await?;
                cardplane_domain::ids::IssuerId::parse(issuer).map(Some).map_err(corrupt)
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
