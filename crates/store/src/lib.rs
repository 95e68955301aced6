//! cardplane's storage: the [`Store`] port implemented twice, on SQLite (the embedded default,
//! with group commit, through rusqlite; sqlx runs its migrations) and on PostgreSQL (to run as the
//! platform, scaled out, through sqlx).
//!
//! # Layout
//! - `repo`, `repo_cards`, `repo_outbox`: every query and row mapping, written once for both backends
//!   (`repo_outbox`: the notification outbox and its claims by workers).
//!   The macros take the connection type and the module whose `query`/`query_as` run on it.
//! - `native`: that query surface over `rusqlite`, for SQLite (no thread hop per statement); each
//!   connection keeps its prepared statements (an `unsafe` `Send` for a connection and the
//!   statements that borrow it, moved together).
//! - `wal_vfs`: the VFS the writer's connection opens the database through: SQLite's `unix` VFS,
//!   except that a commit's WAL frames are written in one `pwrite(2)` (FFI, `unsafe`, with the
//!   reasoning why no commit is seen or synced before its frames are in the file).
//! - [`sqlite`]: [`SqliteStore`]: WAL, one group-committing writer thread (committing at
//!   `synchronous=NORMAL`; the syncer makes each batch durable before it is answered; it remembers
//!   which issuers have callback settings, `repo::KnownCallbacks`), at most eight read-only
//!   connections for reads.
//! - `syncer`: the SQLite syncer, which fsyncs the WAL on a thread of its own and only then answers a
//!   committed batch, while the writer runs the next one; reads wait for what they saw to be synced.
//! - `checkpoint`: the SQLite checkpointer, which copies the WAL into the database file on a thread
//!   of its own, and (past 256 MiB of log, after syncing the database file) asks the writer to
//!   catch up between two batches so that the log starts over.
//! - [`postgres`]: [`PgStore`]: a connection pool, one transaction per unit of work; its own
//!   one-statement versions of the ports' provided methods where several would be round trips.
//! - `migrations/{sqlite,postgres}`: each backend's schema, embedded in the binary and run at start.
//!
//! [`open`] picks the backend from the URL scheme.

mod checkpoint;
mod native;
pub mod postgres;
mod repo;
mod repo_cards;
mod repo_outbox;
pub mod sqlite;
mod syncer;
mod wal_vfs;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use cardplane_app::ports::{Store, StoreError, Vaults};
use std::sync::Arc;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unsupported database URL (expected sqlite://... or postgres://...)")]
pub struct UnsupportedUrl;

/// Opens the store at `url`, running its migrations.
pub async fn open(url: &str, vault: Arc<dyn Vaults>) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match Backend::of(url).ok_or_else(|| StoreError::Backend(Box::new(UnsupportedUrl)))? {
        Backend::Sqlite => Arc::new(SqliteStore::open(url, vault).await?),
        Backend::Postgres => Arc::new(PgStore::open(url, vault).await?),
    })
}

/// Runs the migrations of the database at `url`, and nothing else.
pub async fn migrate(url: &str) -> Result<(), StoreError> {
    match Backend::of(url).ok_or_else(|| StoreError::Backend(Box::new(UnsupportedUrl)))? {
        Backend::Sqlite => sqlite::migrate(url).await,
        Backend::Postgres => postgres::migrate(url).await,
    }
}

/// Runs a unit of work, turning a panic inside it into an error, so that a bug in one use case
/// rolls back its own writes and leaves the store (and, on SQLite, the rest of its batch) working.
async fn contain_panic(
    work: futures_util::future::BoxFuture<'_, Result<cardplane_app::ports::Erased, cardplane_app::AppError>>,
) -> Result<cardplane_app::ports::Erased, cardplane_app::AppError> {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(work).catch_unwind().await.unwrap_or_else(|_| {
        Err(cardplane_app::AppError::Unexpected(anyhow::anyhow!(
            "a unit of work panicked; its writes were rolled back"
        )))
    })
}

/// The query that lists applied migrations; the same in both backends.
const APPLIED_MIGRATIONS: &str = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";

/// Ready means: the database answers and every migration this build carries is applied.
fn check_migrations(migrator: &sqlx::migrate::Migrator, applied: &[(i64,)]) -> Result<(), StoreError> {
    let missing: Vec<i64> = migrator.iter().map(|m| m.version).filter(|v| !applied.iter().any(|(a,)| a == v)).collect();
    if missing.is_empty() { Ok(()) } else { Err(StoreError::Corrupt(format!("migrations not applied: {missing:?}"))) }
}
