//! The embedded SQLite store, with group commit.
//!
//! SQLite allows one writer at a time, and a durable commit waits for an fsync: one commit per
//! request tops out near 2,400 requests/s on the reference machine. So all writes go through **one
//! writer thread** that owns the only read-write connection. It takes every unit of work waiting in
//! its queue (up to [`MAX_BATCH`]), runs them one after the other in one transaction, each under its
//! own savepoint, and commits once. Each request is answered only once that commit is on disk: the
//! syncer (`syncer`) fsyncs the WAL and answers, while the writer goes on with the next batch. Under
//! load, the queue fills while a batch runs and syncs, so batches grow exactly when they help; an
//! idle server commits each request alone, without waiting.
//!
//! Because the writer is the one serial part of the server, its statements run as plain function
//! calls on its own thread (`rusqlite`, see `native`), not as round trips to a connection thread as
//! sqlx does: a registration's dozen statements would otherwise cost two context switches each.
//! For the same reason its connection writes the WAL through `wal_vfs`: a commit's frames in one
//! `pwrite(2)`, where SQLite makes two per frame.
//!
//! Reads run on read-only connections of the same kind, at most eight at once, each unit on the
//! thread that asked for it: a unit of reads is a few B-tree lookups, cheaper than the two thread
//! hops a blocking thread would add (a card read went 36% faster without them). WAL mode lets them
//! proceed while the writer commits, each on a consistent snapshot, and never makes them wait for
//! it, so a read does not hold up the other connections of its HTTP thread. A read is answered only
//! once everything it could have seen is on disk (`syncer`). sqlx is used for the migrations only.
//!
//! The writer does not checkpoint: a thread of its own copies the WAL into the database file
//! (`checkpoint`). It only catches up, between two batches, when the checkpointer asks, so that the
//! log can start over.

use crate::checkpoint::{self, Checkpointer, LogReset, WAL_SIZE_LIMIT};
use crate::native::{self, NativeConn};
use crate::repo::{SqlTx, backend, impl_tx};
use crate::repo_cards::impl_card_tx;
use crate::repo_outbox::{impl_outbox_tx, impl_pending_tx};
use crate::syncer::{Answer, Durability, SyncWal, Syncer};
use crate::wal_vfs;
use async_trait::async_trait;
use cardplane_app::AppError;
use cardplane_app::ports::{BoxedWork, Erased, Store, StoreError, Vaults};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

impl_tx!(NativeConn, native);
impl_card_tx!(NativeConn, native);
// One writer runs every transaction: nothing to lock, and a no-op update of a card already queued
// would only rewrite its row, a page in the write-ahead log.
impl_outbox_tx!(
    NativeConn,
    native,
    take_turns: None,
    skip_locked: "",
    lock_queue_row: None,
    when_queued: "DO NOTHING"
);
impl_pending_tx!(NativeConn, native, skip_locked: "");

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Most units of work committed together. Large enough to amortise an fsync over thousands of
/// requests a second, small enough that one batch's transaction stays short.
pub const MAX_BATCH: usize = 512;

/// Units of work that may wait for the writer before callers are slowed down (back-pressure).
const QUEUE_DEPTH: usize = 8192;

/// The page size of a database this store creates (one it opens keeps its own). Most pages a request
/// changes are a random leaf of a B-tree keyed by something random (a card's id, a PAN fingerprint, a
/// card's place in the outbox), and each such page is written to the WAL whole however little of it
/// changed: with 2 KiB pages the WAL takes 30% fewer bytes per registration or life-cycle operation
/// than with SQLite's default 4 KiB (docs/PERFORMANCE.md): less to fsync and to checkpoint. (Here,
/// where the disk is a page cache, throughput moved within the noise; 1 KiB pages saved more bytes
/// but made every tree deeper.)
pub(crate) const PAGE_SIZE: u32 = 2048;

/// How long a connection waits for a lock before it reports the database busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How much batching the writer achieved: `units / batches` is the mean group size.
#[derive(Debug, Default)]
pub struct GroupCommitStats {
    /// Transactions committed (made durable by the syncer's fsyncs, `syncs`).
    pub batches: AtomicU64,
    /// Units of work committed in them.
    pub units: AtomicU64,
    /// WAL fsyncs, each making every batch committed before it durable.
    pub syncs: AtomicU64,
    /// Checkpoints the writer ran between batches so that the WAL could start over.
    pub catch_ups: AtomicU64,
}

struct Job {
    work: BoxedWork,
    reply: oneshot::Sender<Result<Erased, AppError>>,
}

/// The SQLite store. See the module docs for the write path.
pub struct SqliteStore {
    jobs: mpsc::Sender<Job>,
    readers: Arc<Readers>,
    durability: Arc<Durability>,
    vault: Arc<dyn Vaults>,
    shutdown: Arc<Notify>,
    writer: Mutex<Option<JoinHandle<()>>>,
    stats: Arc<GroupCommitStats>,
}

fn options(url: &str) -> Result<SqliteConnectOptions, StoreError> {
    Ok(SqliteConnectOptions::from_str(url)
        .map_err(backend)?
        .journal_mode(SqliteJournalMode::Wal)
        // Durability first: a commit is acknowledged only once it is on disk.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        .page_size(PAGE_SIZE))
}

/// The writer's connection, with the settings [`options`] gives sqlx's.
fn open_writer(path: &Path) -> Result<NativeConn, StoreError> {
    // Through the VFS that writes each commit's WAL frames in one `pwrite(2)` (`wal_vfs`).
    wal_vfs::register().map_err(|rc| StoreError::Backend(format!("SQLite refused the WAL VFS (code {rc})").into()))?;
    let writer = open_native_with(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE, Some(wal_vfs::NAME))
        .map_err(native_backend)?;
    let conn = writer.connection();
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)).map_err(native_backend)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!("SQLite refused WAL mode (journal_mode is {mode})").into()));
    }
    let settings = || -> Result<(), rusqlite::Error> {
        // A commit writes the WAL and returns; the syncer makes it durable before anybody hears of
        // it (`syncer`).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Each unit runs under a savepoint, so SQLite keeps the first version of every page a unit
        // changes in a sub-journal, to roll that unit alone back. Those journals only ever serve the
        // open transaction (the WAL is what makes a commit durable), yet in a file they cost a
        // write(2) per page: 44,553 writes, 101 MB in 4 s of a notification drain, three times the
        // WAL's own. In memory they cost a copy.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        // The checkpointer copies the WAL into the database file; the writer only catches up when
        // asked (`checkpoint`). When the log starts over, a file grown by a burst is cut back.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
    };
    settings().map_err(native_backend)?;
    let mut writer = writer;
    writer.remember_callbacks();
    Ok(writer)
}

/// A connection to the database file at `path`, opened with `access` (read-write or read-only), with
/// the settings every connection shares.
pub(crate) fn open_native(path: &Path, access: rusqlite::OpenFlags) -> Result<NativeConn, rusqlite::Error> {
    open_native_with(path, access, None)
}

/// [`open_native`] through the VFS named `vfs` (SQLite's default when `None`).
fn open_native_with(
    path: &Path,
    access: rusqlite::OpenFlags,
    vfs: Option<&str>,
) -> Result<NativeConn, rusqlite::Error> {
    use rusqlite::OpenFlags;
    let flags = access | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = match vfs {
        Some(vfs) => rusqlite::Connection::open_with_flags_and_vfs(path, flags, vfs)?,
        None => rusqlite::Connection::open_with_flags(path, flags)?,
    };
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(NativeConn::new(conn))
}

/// Read-only connections, opened when needed and kept for the next read.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<NativeConn>>,
    /// One permit per read connection: a burst of reads queues here instead of opening a connection
    /// (and a page cache) each, which on a small machine buys no speed, only memory.
    permits: Arc<Semaphore>,
}

/// Read connections open at most, and so reads running at once.
const READERS: usize = 8;

impl Readers {
    fn new(path: &Path) -> Self {
        Self { path: path.to_owned(), idle: Mutex::new(Vec::new()), permits: Arc::new(Semaphore::new(READERS)) }
    }

    fn take(&self) -> Result<NativeConn, rusqlite::Error> {
        if let Some(conn) = self.idle.lock().expect("the reader list lock is never poisoned").pop() {
            return Ok(conn);
        }
        open_native(&self.path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    }

    /// Keeps `conn` for the next read. Never more than [`READERS`] are kept, as never more are taken.
    fn give_back(&self, conn: NativeConn) {
        self.idle.lock().expect("the reader list lock is never poisoned").push(conn);
    }

    /// Runs `f` with a read connection, on this thread: its statements are direct calls and its
    /// futures are ready at once, so it does not yield while it holds the connection. The
    /// connection is kept for the next read only if `f` succeeded.
    async fn with_connection<T>(
        &self,
        f: impl AsyncFnOnce(&mut NativeConn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _permit = self.permits.acquire().await.expect("the readers' semaphore is never closed");
        let mut conn = self.take().map_err(native_backend)?;
        let outcome = f(&mut conn).await?;
        self.give_back(conn);
        Ok(outcome)
    }

    /// Runs `work` on one snapshot.
    async fn read(&self, work: BoxedWork, vault: Arc<dyn Vaults>) -> Result<Erased, AppError> {
        self.with_connection(async move |conn| {
            // One transaction so that every read of the unit sees the same snapshot.
            control(conn, "BEGIN").map_err(backend)?;
            let outcome = {
                let mut tx = SqlTx { conn: &mut *conn, vault: vault.as_ref() };
                crate::contain_panic(work(&mut tx)).await
            };
            control(conn, "COMMIT").map_err(backend)?;
            Ok(outcome)
        })
        .await?
    }
}

pub(crate) fn native_backend(error: rusqlite::Error) -> StoreError {
    backend(native::error(error))
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url`, runs the migrations, and starts the writer.
    pub async fn open(url: &str, vault: Arc<dyn Vaults>) -> Result<Self, StoreError> {
        Self::open_syncing_with(url, vault, Arc::new(File::sync_data)).await
    }

    /// [`SqliteStore::open`], making the WAL durable with `sync` (tests hold it back).
    async fn open_syncing_with(url: &str, vault: Arc<dyn Vaults>, sync: SyncWal) -> Result<Self, StoreError> {
        let options = options(url)?;
        let mut migrations =
            SqliteConnection::connect_with(&options.clone().create_if_missing(true)).await.map_err(backend)?;
        MIGRATOR.run(&mut migrations).await.map_err(|e| StoreError::Backend(Box::new(e)))?;
        migrations.close().await.map_err(backend)?;
        let writer = open_writer(options.get_filename())?;
        let log_reset = Arc::new(LogReset::default());
        let checkpointer = Checkpointer::start(options.get_filename(), Arc::clone(&log_reset))?;
        let readers = Arc::new(Readers::new(options.get_filename()));
        readers.give_back(readers.take().map_err(native_backend)?);
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let shutdown = Arc::new(Notify::new());
        let stats = Arc::new(GroupCommitStats::default());
        let durability = Arc::new(Durability::new());
        let mut wal = options.get_filename().as_os_str().to_owned();
        wal.push("-wal");
        let syncer = Syncer::start(wal.into(), Arc::clone(&durability), Arc::clone(&stats), sync)?;
        let handle = {
            let (vault, shutdown, stats) = (Arc::clone(&vault), Arc::clone(&shutdown), Arc::clone(&stats));
            let durability = Arc::clone(&durability);
            std::thread::Builder::new()
                .name("sqlite-writer".to_owned())
                .spawn(move || {
                    // A runtime of its own: the thread waits for work asynchronously, but every
                    // statement of a unit is a direct call, ready at once.
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a current-thread runtime can be built");
                    let writer =
                        Writer { conn: writer, vault, stats, durability, syncer, log_reset, data_version: None };
                    runtime.block_on(writer.run(queue, shutdown));
                    checkpointer.stop();
                })
                .map_err(|e| StoreError::Backend(Box::new(e)))?
        };
        Ok(Self { jobs, readers, durability, vault, shutdown, writer: Mutex::new(Some(handle)), stats })
    }

    pub fn group_commit_stats(&self) -> &GroupCommitStats {
        &self.stats
    }
}

/// Runs migrations only (`cardplane migrate`).
pub async fn migrate(url: &str) -> Result<(), StoreError> {
    let mut conn = SqliteConnection::connect_with(&options(url)?.create_if_missing(true)).await.map_err(backend)?;
    MIGRATOR.run(&mut conn).await.map_err(|e| StoreError::Backend(Box::new(e)))?;
    conn.close().await.map_err(backend)
}

/// The writer thread's state: the one read-write connection and what a batch reports to.
struct Writer {
    conn: NativeConn,
    vault: Arc<dyn Vaults>,
    stats: Arc<GroupCommitStats>,
    durability: Arc<Durability>,
    syncer: Syncer,
    /// Set by the checkpointer when the WAL should start over (`checkpoint`).
    log_reset: Arc<LogReset>,
    /// SQLite's `data_version` as of the last batch: it changes when another connection (another
    /// process) commits, and then what the writer remembers of issuers may be stale.
    data_version: Option<i64>,
}

impl Writer {
    async fn run(mut self, mut queue: mpsc::Receiver<Job>, shutdown: Arc<Notify>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            tokio::select! {
                biased;
                received = queue.recv_many(&mut batch, MAX_BATCH) => {
                    if received == 0 {
                        break;
                    }
                }
                () = shutdown.notified() => {
                    // Refuse new work, then finish everything already accepted.
                    queue.close();
                    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
                        self.commit_batch(&mut batch).await;
                    }
                    break;
                }
            }
            self.commit_batch(&mut batch).await;
        }
        // Every committed batch is on disk and answered before the connection closes.
        self.syncer.finish();
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        tracing::info!(
            batches = load(&self.stats.batches),
            units = load(&self.stats.units),
            syncs = load(&self.stats.syncs),
            catch_ups = load(&self.stats.catch_ups),
            "the SQLite writer stopped"
        );
        if let Err((_, error)) = self.conn.into_connection().close() {
            tracing::warn!(%error, "closing the SQLite writer failed");
        }
    }

    /// Runs `batch` in one transaction and has every job answered once the commit is durable.
    async fn commit_batch(&mut self, batch: &mut Vec<Job>) {
        if self.log_reset.take() {
            self.catch_up();
        }
        let conn = &mut self.conn;
        let size = batch.len();
        // For the `group commit` trace: how long the batch held the writer, from BEGIN to COMMIT.
        let started = std::time::Instant::now();
        if let Err(error) = control(conn, "BEGIN IMMEDIATE") {
            tracing::error!(%error, "the SQLite writer could not begin a transaction");
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(refused(&error)));
            }
            return;
        }
        // Inside the transaction, so that no other process can commit between this look and the
        // batch's reads.
        let version = data_version(conn);
        if version.is_err() || version.as_ref().ok() != self.data_version.as_ref() {
            conn.forget_callbacks();
        }
        self.data_version = version.ok();
        let mut answers = Vec::with_capacity(size);
        let mut broken: Option<sqlx::Error> = None;
        for job in batch.drain(..) {
            if broken.is_some() {
                answers.push((job.reply, None));
                continue;
            }
            if let Err(error) = control(conn, "SAVEPOINT unit") {
                broken = Some(error);
                answers.push((job.reply, None));
                continue;
            }
            let mut tx = SqlTx { conn: &mut *conn, vault: self.vault.as_ref() };
            let outcome = crate::contain_panic((job.work)(&mut tx)).await;
            let undo = if outcome.is_err() {
                // It may have written an issuer, now rolled back.
                conn.forget_callbacks();
                control(conn, "ROLLBACK TO unit")
            } else {
                Ok(())
            };
            if let Err(error) = undo.and_then(|()| control(conn, "RELEASE unit")) {
                broken = Some(error);
                answers.push((job.reply, None));
                continue;
            }
            answers.push((job.reply, Some(outcome)));
        }
        let committed = match broken {
            Some(error) => Err((None, error)),
            None => {
                let number = self.durability.begin_commit();
                control(conn, "COMMIT").map(|()| number).map_err(|error| (Some(number), error))
            }
        };
        match committed {
            Ok(number) => {
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats.units.fetch_add(size as u64, Ordering::Relaxed);
                tracing::trace!(size, micros = started.elapsed().as_micros() as u64, "group commit");
                let answers: Vec<Answer> = answers
                    .into_iter()
                    .map(|(reply, outcome)| (reply, outcome.expect("every unit ran when the batch committed")))
                    .collect();
                self.syncer.answer_when_durable(number, answers);
            }
            Err((number, error)) => {
                tracing::error!(%error, size, "a group commit failed; every unit in it is refused");
                conn.forget_callbacks();
                if let Err(rollback) = control(conn, "ROLLBACK") {
                    tracing::error!(error = %rollback, "rolling back a failed group commit failed");
                }
                // Refusals reveal nothing of this batch, which is gone; the batches before it may
                // not be on disk yet, but a refusal promises nothing about them either.
                for (reply, _) in answers {
                    let _ = reply.send(Err(refused(&error)));
                }
                if let Some(number) = number {
                    self.syncer.commit_failed(number);
                }
            }
        }
    }

    /// Copies into the database file what the checkpointer has not yet, so that the next batch
    /// starts the WAL over (`checkpoint`). A failure only leaves the log to grow until the
    /// checkpointer asks again.
    fn catch_up(&self) {
        let started = std::time::Instant::now();
        match checkpoint::catch_up(&self.conn) {
            Ok(done) => {
                self.stats.catch_ups.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    frames = done.frames,
                    copied = done.copied,
                    micros = started.elapsed().as_micros() as u64,
                    "the SQLite writer caught up with the checkpointer"
                );
            }
            Err(error) => tracing::warn!(%error, "the SQLite writer could not catch up with the checkpointer"),
        }
    }
}

/// SQLite's `data_version` on `conn`: it changes when another connection commits.
fn data_version(conn: &mut NativeConn) -> Result<i64, sqlx::Error> {
    let (version,): (i64,) = native::query_as("PRAGMA data_version").fetch_optional(conn).into_inner()?.unwrap_or((0,));
    Ok(version)
}

/// Runs one of the store's own statements (transaction control), prepared once.
fn control(conn: &mut NativeConn, sql: &'static str) -> Result<(), sqlx::Error> {
    native::query(sql).execute(conn).into_inner().map(|_| ())
}

/// Every job of a failed batch gets its own copy of the error (`sqlx::Error` is not `Clone`).
fn refused(error: &sqlx::Error) -> AppError {
    backend(sqlx::Error::Protocol(error.to_string())).into()
}

#[async_trait]
impl Store for SqliteStore {
    async fn write_erased(&self, work: BoxedWork) -> Result<Erased, AppError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { work, reply }).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn read_erased(&self, work: BoxedWork) -> Result<Erased, AppError> {
        let outcome = self.readers.read(work, Arc::clone(&self.vault)).await;
        // Only after the read ended: every batch it could have seen had begun its commit by then.
        self.durability.settled().await;
        outcome
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        let applied = self
            .readers
            .with_connection(async |conn| {
                native::query_as(crate::APPLIED_MIGRATIONS).fetch_all(conn).into_inner().map_err(backend)
            })
            .await?;
        crate::check_migrations(&MIGRATOR, &applied)
    }

    async fn close(&self) {
        self.shutdown.notify_one();
        let writer = self.writer.lock().expect("the writer handle lock is never poisoned").take();
        if let Some(writer) = writer {
            let ended = tokio::task::spawn_blocking(move || writer.join()).await;
            if !matches!(ended, Ok(Ok(()))) {
                tracing::error!("the SQLite writer ended abnormally");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    use cardplane_testkit::{Backend, TestDatabase, test_vault};

    /// A database the store creates has pages of [`PAGE_SIZE`]; one it finds keeps the size it has.
    #[tokio::test]
    async fn new_databases_get_the_page_size_and_old_ones_keep_theirs() {
        let page_size = |path: &Path| -> u32 {
            let conn = open_native(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("the database opens");
            conn.connection().query_row("PRAGMA page_size", [], |row| row.get(0)).expect("a page size")
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (new, old) = (dir.path().join("new.db"), dir.path().join("old.db"));
        let created = |path: &Path| format!("sqlite://{}", path.display());
        SqliteStore::open(&created(&new), test_vault()).await.expect("the store opens").close().await;
        assert_eq!(page_size(&new), PAGE_SIZE);
        let conn = rusqlite::Connection::open(&old).expect("a database");
        conn.execute_batch("PRAGMA page_size = 4096; CREATE TABLE earlier (k INTEGER)").expect("an older database");
        drop(conn);
        SqliteStore::open(&created(&old), test_vault()).await.expect("the store opens").close().await;
        assert_eq!(page_size(&old), 4096);
    }

    /// The syncer's fsync, held back until the test opens its gate, counting the calls.
    #[derive(Default)]
    struct HeldSync {
        open: Mutex<bool>,
        opened: std::sync::Condvar,
        calls: AtomicUsize,
    }

    impl HeldSync {
        fn sync(self: &Arc<Self>) -> SyncWal {
            let held = Arc::clone(self);
            Arc::new(move |file: &File| {
                let mut open = held.open.lock().expect("the gate lock is never poisoned");
                while !*open {
                    open = held.opened.wait(open).expect("the gate lock is never poisoned");
                }
                held.calls.fetch_add(1, Ordering::SeqCst);
                file.sync_data()
            })
        }

        fn let_through(&self) {
            *self.open.lock().expect("the gate lock is never poisoned") = true;
            self.opened.notify_all();
        }
    }

    /// Waits (up to 10 s) until the writer has begun the commit of batch `number`.
    async fn committing(store: &SqliteStore, number: u64) {
        for _ in 0..1000 {
            if store.durability.last_begun() >= number {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("batch {number} was never committed");
    }

    /// A committed write is answered, and a read that saw it returns, only once the WAL is synced;
    /// meanwhile the writer commits the next batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_are_answered_and_seen_only_once_the_wal_is_synced() {
        use cardplane_app::ports::StoreExt;
        use cardplane_domain::consumer::{Consumer, ConsumerState};
        use cardplane_domain::ids::{ConsumerId, IssuerId};
        let db = TestDatabase::new(Backend::Sqlite).await;
        let held = Arc::new(HeldSync::default());
        let store = Arc::new(SqliteStore::open_syncing_with(&db.url, test_vault(), held.sync()).await.expect("opens"));
        let issuer = IssuerId::parse("ISSUER0001").expect("an issuer id");
        let put = |id: &str| {
            let (store, issuer) = (Arc::clone(&store), issuer.clone());
            let now = time::OffsetDateTime::now_utc();
            let consumer = Consumer {
                id: ConsumerId::parse(id).expect("a consumer id"),
                state: ConsumerState::Active,
                personal_information: None,
                created_at: now,
                updated_at: now,
            };
            tokio::spawn(async move {
                store.write(move |tx| Box::pin(async move { Ok(tx.put_consumer(&issuer, &consumer).await?) })).await
            })
        };
        let first = put("consumer-1");
        committing(&store, 1).await;
        let second = put("consumer-2");
        // The writer went on to the next batch: the first one's commit has returned.
        committing(&store, 2).await;
        let read = {
            let (store, issuer) = (Arc::clone(&store), issuer.clone());
            tokio::spawn(async move {
                let id = ConsumerId::parse("consumer-1").expect("a consumer id");
                store.read(move |tx| Box::pin(async move { Ok(tx.consumer(&issuer, &id).await?) })).await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!first.is_finished(), "a write was answered before its batch was synced");
        assert!(!second.is_finished(), "a write was answered before its batch was synced");
        assert!(!read.is_finished(), "a read was answered with writes not yet on disk");
        assert_eq!(held.calls.load(Ordering::SeqCst), 0);

        held.let_through();
        first.await.expect("the task ends").expect("the first write succeeds");
        second.await.expect("the task ends").expect("the second write succeeds");
        let seen = read.await.expect("the task ends").expect("the read succeeds");
        assert_eq!(seen.map(|c| c.id.as_str().to_owned()).as_deref(), Some("consumer-1"), "the read saw the write");
        let syncs = store.group_commit_stats().syncs.load(Ordering::SeqCst);
        assert!((1..=2).contains(&syncs), "{syncs} syncs for two batches");
        assert_eq!(held.calls.load(Ordering::SeqCst) as u64, syncs);
        store.close().await;
    }

    /// A burst of 64 reads runs side by side on at most [`READERS`] connections, and keeps no more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_reads_shares_at_most_eight_connections() {
        let db = TestDatabase::new(Backend::Sqlite).await;
        let store = SqliteStore::open(&db.url, test_vault()).await.expect("the store opens");
        let readers = &store.readers;
        let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let reads: Vec<_> = (0..64)
            .map(|_| {
                let (readers, running, most) = (Arc::clone(readers), Arc::clone(&running), Arc::clone(&most));
                tokio::spawn(async move {
                    readers
                        .with_connection(async move |_conn| {
                            most.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                            // Yields while it holds the connection, as no real read does, so that
                            // every read of the burst is in flight at once.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            running.fetch_sub(1, Ordering::SeqCst);
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        for read in reads {
            read.await.expect("the read task ends").expect("the read succeeds");
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most <= READERS, "{most} reads ran at once, more than {READERS}");
        assert!(most > 1, "reads ran one at a time");
        let kept = readers.idle.lock().expect("the reader list lock is never poisoned").len();
        assert!((1..=READERS).contains(&kept), "{kept} read connections kept");
    }
}
