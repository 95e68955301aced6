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

impl_tx!(PgConnection, sqlx);
impl_card_tx!(PgConnection, sqlx);
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
