//! The PostgreSQL store, for running cardplane as the platform: any number of stateless
//! `cardplane serve` instances over one database.
//!
//! Each unit of work runs in its own transaction on a pooled connection; PostgreSQL's own WAL
//! already groups concurrent commits into shared fsyncs.

use crate::repo::{SqlTx, backend, impl_tx};
use crate::repo_cards::impl_card_tx;
use crate::repo_outbox::{impl_outbox_tx, impl_pending_tx};
use async_trait::async_trait;
use cardplane_app::AppError;
use cardplane_app::ports::{BoxedWork, Erased, Store, StoreError, Vaults};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use std::time::Duration;

// A round trip to PostgreSQL is most of what a statement costs here (about 80 µs of the machine,
// the server's side and the backend's; docs/PERFORMANCE.md): the hot paths' reads and the
// notification's look at the issuer are one statement each on this backend.
impl_tx!(PgConnection, sqlx, overrides: {
    async fn notify_operation(
        &mut self,
        issuer: &cardplane_domain::ids::IssuerId,
        operation: &cardplane_domain::operation::Operation,
        at: time::OffsetDateTime,
        undeliverable: &str,
    ) -> Result<(), StoreError> {
        self.notify_in_one_statement(issuer, operation, at, undeliverable).await
    }
});
impl_card_tx!(PgConnection, sqlx, overrides: {
    async fn registration_view(
        &mut self,
        issuer: &cardplane_domain::ids::IssuerId,
        card: &cardplane_domain::ids::CardId,
        pan_fingerprint: &[u8],
        consumer: &cardplane_domain::ids::ConsumerId,
    ) -> Result<cardplane_app::ports::RegistrationView, StoreError> {
        self.registration_view_in_one_statement(issuer, card, pan_fingerprint, consumer).await
    }
});
impl_outbox_tx!(
    PgConnection,
    sqlx,
    take_turns: Some("SELECT pg_advisory_xact_lock(hashtextextended('cardplane-outbox:' || $1, 0))"),
    skip_locked: " FOR UPDATE SKIP LOCKED",
    lock_queue_row: Some("SELECT 1 FROM delivery_queues WHERE issuer_id = $1 AND card_id = $2 FOR UPDATE"),
    // The no-op update locks the row of a card already queued (see `queue_card`).
    when_queued: "DO UPDATE SET head_seq = delivery_queues.head_seq"
);
impl_pending_tx!(PgConnection, sqlx, skip_locked: " FOR UPDATE SKIP LOCKED");

impl SqlTx<'_, PgConnection> {
    /// `Tx::notify_operation`: the operation's row, pending or dead-lettered as the issuer's row
    /// says when the statement runs (what `has_callback` would have read), then, if pending, its
    /// card's place in the delivery queue. The rows are those `enqueue_operation` and
    /// `dead_letter_operation` write.
    async fn notify_in_one_statement(
        &mut self,
        issuer: &cardplane_domain::ids::IssuerId,
        operation: &cardplane_domain::operation::Operation,
        at: time::OffsetDateTime,
        undeliverable: &str,
    ) -> Result<(), StoreError> {
        use crate::repo::micros;
        use sqlx::Row;
        const INSERT: &str = "WITH callback AS (\
                SELECT EXISTS (SELECT 1 FROM issuers WHERE issuer_id = $1 \
                AND callback_base_url IS NOT NULL AND callback_token_url IS NOT NULL) AS known) \
            INSERT INTO operations (issuer_id, operation_id, card_id, operation, status, start_time, end_time, \
                details, created_at, digital_card_id, delivery_state, attempts, next_attempt_at, last_attempt_at, \
                last_error) \
            SELECT $1, $2, $3, $4, $5, $6, $7, $8, $6, $9, \
                CASE WHEN known THEN 'PENDING' ELSE 'DEAD' END, CASE WHEN known THEN 0 ELSE 1 END, \
                CASE WHEN known THEN $6 END, CASE WHEN known THEN NULL ELSE $10::BIGINT END, \
                CASE WHEN known THEN NULL ELSE $11::TEXT END \
            FROM callback RETURNING seq, delivery_state = 'PENDING' AS queued";
        let start = micros(operation.start_time);
        let row = crate::repo_cards::bind_operation!(sqlx::query(INSERT), issuer.as_str(), operation)
            .bind(micros(at))
            .bind(undeliverable)
            .fetch_one(&mut *self.conn)
            .await
            .map_err(backend)?;
        let queued: bool = row.try_get("queued").map_err(backend)?;
        if queued {
            let seq: i64 = row.try_get("seq").map_err(backend)?;
            self.queue_card(issuer.as_str(), operation.card_id.as_str(), seq, start).await?;
        }
        Ok(())
    }

    /// `CardTx::registration_view`: one row, whatever exists, with the card's columns (null when
    /// there is no card), whether the PAN is barred, and the consumer's columns (null when there is
    /// no consumer).
    async fn registration_view_in_one_statement(
        &mut self,
        issuer: &cardplane_domain::ids::IssuerId,
        card: &cardplane_domain::ids::CardId,
        pan_fingerprint: &[u8],
        consumer: &cardplane_domain::ids::ConsumerId,
    ) -> Result<cardplane_app::ports::RegistrationView, StoreError> {
        use crate::repo_cards::{CardRow, card_columns, card_from_row, consumer_from_row};
        use sqlx::{FromRow, Row};
        const VIEW: &str = concat!(
            "SELECT card.*, \
                EXISTS (SELECT 1 FROM barred_pans WHERE issuer_id = $1 AND pan_fingerprint = $3) AS pan_barred, \
                consumer.consumer_id AS consumer_key, consumer.state AS consumer_state, \
                consumer.personal_information AS consumer_information, consumer.created_at AS consumer_created_at, \
                consumer.updated_at AS consumer_updated_at \
             FROM (SELECT 1) AS one \
             LEFT JOIN (SELECT ",
            card_columns!(),
            " FROM cards WHERE issuer_id = $1 AND card_id = $2) AS card ON TRUE \
             LEFT JOIN consumers AS consumer ON consumer.issuer_id = $1 AND consumer.consumer_id = $4"
        );
        let row = sqlx::query(VIEW)
            .bind(issuer.as_str())
            .bind(card.as_str())
            .bind(pan_fingerprint)
            .bind(consumer.as_str())
            .fetch_one(&mut *self.conn)
            .await
            .map_err(backend)?;
        let card = match row.try_get::<Option<String>, _>("card_id").map_err(backend)? {
            Some(_) => Some(card_from_row(CardRow::from_row(&row).map_err(backend)?, self.vault)?),
            None => None,
        };
        let consumer = match row.try_get::<Option<String>, _>("consumer_key").map_err(backend)? {
            Some(id) => Some(consumer_from_row(
                id,
                row.try_get("consumer_state").map_err(backend)?,
                row.try_get("consumer_information").map_err(backend)?,
                row.try_get("consumer_created_at").map_err(backend)?,
                row.try_get("consumer_updated_at").map_err(backend)?,
            )?),
            None => None,
        };
        Ok(cardplane_app::ports::RegistrationView {
            card,
            pan_barred: row.try_get("pan_barred").map_err(backend)?,
            consumer,
        })
    }
}

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PgStore {
    pool: PgPool,
    vault: Arc<dyn Vaults>,
}

async fn connect(url: &str, max_connections: u32) -> Result<PgPool, StoreError> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(backend)
}

impl PgStore {
    /// Connects to `url` and runs the migrations (under PostgreSQL's advisory lock, so several
    /// instances may start at once).
    pub async fn open(url: &str, vault: Arc<dyn Vaults>) -> Result<Self, StoreError> {
        let pool = connect(url, 32).await?;
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(Self { pool, vault })
    }
}

/// Runs migrations only (`cardplane migrate`).
pub async fn migrate(url: &str) -> Result<(), StoreError> {
    let pool = connect(url, 1).await?;
    MIGRATOR.run(&pool).await.map_err(|e| StoreError::Backend(Box::new(e)))?;
    pool.close().await;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn write_erased(&self, work: BoxedWork) -> Result<Erased, AppError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let outcome = crate::contain_panic(work(&mut SqlTx { conn: &mut *tx, vault: self.vault.as_ref() })).await;
        match outcome {
            Ok(value) => {
                tx.commit().await.map_err(backend)?;
                Ok(value)
            }
            Err(error) => {
                tx.rollback().await.map_err(backend)?;
                Err(error)
            }
        }
    }

    async fn read_erased(&self, work: BoxedWork) -> Result<Erased, AppError> {
        // One statement, not `BEGIN` and then `SET TRANSACTION`: each is a round trip (a read of one
        // row made five, with the pool's ping and the `ROLLBACK`; docs/PERFORMANCE.md).
        let mut tx = self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await.map_err(backend)?;
        let outcome = work(&mut SqlTx { conn: &mut *tx, vault: self.vault.as_ref() }).await;
        tx.rollback().await.map_err(backend)?;
        outcome
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        let applied = sqlx::query_as(crate::APPLIED_MIGRATIONS).fetch_all(&self.pool).await.map_err(backend)?;
        crate::check_migrations(&MIGRATOR, &applied)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
