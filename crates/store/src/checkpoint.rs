//! The SQLite checkpointer: copies the write-ahead log into the database file, off the writer.
//!
//! By default SQLite checkpoints on the committing connection whenever the WAL passes 1,000 pages, so
//! our one writer stopped every few batches to read back and copy every page of the last 4 MB, fsync
//! the database file, and only then take the next batch: 9% of its time under registrations, and a
//! stall every caller of the next batch waited through. Here the writer never checkpoints on its own
//! (`wal_autocheckpoint = 0`); a thread of its own does, every [`CHECKPOINT_EVERY`], without
//! blocking anybody (`PASSIVE`). A page written by many batches in that time is copied once.
//!
//! SQLite starts the log over only when the writer begins a transaction while every frame of the
//! WAL is in the database file. Under constant writes a passive checkpoint never sees that instant
//! (the writer appends while it copies), so the WAL would grow for as long as the load lasts. Once
//! it holds more than [`RESET_ABOVE`] frames the checkpointer asks the writer to catch up
//! ([`LogReset`]): between two batches, the writer checkpoints on its own connection what was
//! appended since the checkpointer's last pass, so that its next transaction finds the log copied
//! and starts it over. The checkpointer first copies again what was appended during its own long
//! pass ([`CLOSING_PASSES`]), so that what is left to the writer is about one batch.
//!
//! The checkpointer used to make the log start over itself with a `RESTART` checkpoint, which holds
//! the write lock while it waits for readers and fsyncs the database file: measured under
//! registrations, 30–140 ms in which the writer could not begin a batch, and then slept in SQLite's
//! busy handler, which was every request's worst latency. The catch-up holds the writer for the
//! length of one small checkpoint instead (5–15 ms measured). SQLite syncs the database file only
//! in a checkpoint that copies the whole log, which under load is the catch-up: so that the writer
//! does not wait for everything the passes wrote since the log last started over to reach the
//! disk, the checkpointer syncs the file itself first. `RESTART` is kept for a log that readers keep pinned
//! past [`RESTART_ABOVE`] frames (a reader that began before the catch-up and holds its snapshot
//! stops the log from starting over).
//!
//! A pass copies into the database file's page cache: tens of megabytes every half second under
//! registrations, which the kernel would write out in bursts of its own choosing (or all at once
//! when the file is synced before a catch-up). Every fsync of the WAL then waited behind a burst
//! for the virtual disk to flush it: 15–270 ms, with all callers waiting (docs/PERFORMANCE.md). So
//! after each pass that copied anything the checkpointer writes the file back itself, a
//! [`WRITE_BACK_STEP`] at a time, each step waited for before the next (`sync_file_range(2)`, Linux
//! only): the WAL's fsyncs, between two steps, find little else to flush. This starts no fsync
//! and promises nothing; the syncs below still do.
//!
//! Durability does not depend on any of this: a commit is on disk once the WAL is synced, which
//! the syncer does after every commit (`syncer`), and every checkpoint syncs the WAL before it
//! copies any of it, and the database file before the log may start over.

use crate::native::NativeConn;
use crate::sqlite::{native_backend, open_native};
use cardplane_app::ports::StoreError;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the checkpointer copies what the WAL holds into the database file.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Bytes a WAL file is cut back to when the log starts over, so that one burst does not keep its
/// size on disk for good. Well above what the log reaches under steady load (it starts over
/// past [`RESET_ABOVE`] frames, plus what half a second of writes adds): a WAL that is reused
/// rather than cut back and regrown is overwritten in place, so its fsyncs carry no metadata, and
/// the first commit after a restart pays no `ftruncate` (4–6 ms measured, on the writer).
pub(crate) const WAL_SIZE_LIMIT: i64 = 512 * 1024 * 1024;

/// WAL frames (pages) beyond which the checkpointer asks the writer to catch up, so that the log
/// starts over: 256 MiB of the pages this store creates (a database from before them, with 4 KiB
/// pages, goes to 512 MiB). Each catch-up holds the writer, and every request in its next batch,
/// for 5–20 ms, so how often it comes sets the latency tail: registrations append about 60 MB of
/// WAL a second, which at 32 MiB (the limit before) asked for a catch-up at nearly every pass,
/// twice a second; at 256 MiB it comes every four seconds or so. Registration's p99, three runs
/// each in one sitting: 22.2–23.9 ms before, 14.3–15.8 ms with this limit and the database file
/// synced before the catch-up (see `checkpoint`; docs/PERFORMANCE.md). A long WAL costs no
/// lookups (readers search only what the checkpointer has not copied yet), only its disk space
/// and the time a restart after a crash takes to read it back (0.58 s to ready with 247 MB of
/// WAL after a `kill -9`). Under light load the log starts over by itself, whenever a pass has
/// copied all of it, and stays small.
pub(crate) const RESET_ABOVE: i64 = 256 * 1024 * 1024 / crate::sqlite::PAGE_SIZE as i64;

/// WAL frames beyond which readers have kept the log from starting over for several passes: the
/// checkpointer then waits for them, and for the writer, with a `RESTART` checkpoint.
pub(crate) const RESTART_ABOVE: i64 = 2 * RESET_ABOVE;

/// How much of the database file each step of the checkpointer's write-back covers: small enough
/// that a WAL fsync arriving meanwhile waits for little (on the reference disk a 16 KiB fsync takes
/// 0.2–0.4 ms; one behind tens of megabytes took up to 270 ms), large enough that walking a file of
/// a million cards (about 2 GB) stays a few thousand calls, most of them over clean pages.
pub(crate) const WRITE_BACK_STEP: i64 = 1024 * 1024;

/// Before it asks the writer to catch up, the checkpointer copies again what the writer appended
/// during its last pass, at most this many times, until that is no more than [`CATCH_UP_FRAMES`]:
/// the writer's catch-up then copies little more than one batch (a first pass copies half a
/// second of writes and takes 10–30 ms, during which the writer appends hundreds of frames;
/// copied by the writer, they held every request for as long).
const CLOSING_PASSES: usize = 4;

/// See [`CLOSING_PASSES`].
const CATCH_UP_FRAMES: i64 = 128;

/// The checkpointer's request that the writer catch up between two batches (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct LogReset(AtomicBool);

impl LogReset {
    pub(crate) fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a catch-up was asked for since the last call.
    pub(crate) fn take(&self) -> bool {
        self.0.load(Ordering::Relaxed) && self.0.swap(false, Ordering::Relaxed)
    }
}

/// The frame counts at which a pass asks for more than a passive checkpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Ask the writer to catch up.
    pub(crate) reset_above: i64,
    /// Wait for the writer and the readers (`RESTART`).
    pub(crate) restart_above: i64,
}

pub(crate) const LIMITS: Limits = Limits { reset_above: RESET_ABOVE, restart_above: RESTART_ABOVE };

/// The running checkpointer; [`Checkpointer::stop`] ends it.
pub(crate) struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` on a thread of its own, with a connection of its own.
    pub(crate) fn start(path: &Path, reset: Arc<LogReset>) -> Result<Self, StoreError> {
        let conn = open_native(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(native_backend)?;
        // The writer commits without syncing (the syncer does, after it): a checkpoint must sync the
        // WAL before it copies any of it into the database file, and the database file before the log
        // may start over. `FULL` (SQLite's default, said here so that no build setting changes it)
        // does both.
        conn.connection().pragma_update(None, "synchronous", "FULL").map_err(native_backend)?;
        let database = std::fs::File::open(path).map_err(|e| StoreError::Backend(Box::new(e)))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpointer".to_owned())
            .spawn(move || {
                // What the last pass found: a pass that finds the same has copied nothing new.
                let mut last: Option<Checkpointed> = None;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                    let started = std::time::Instant::now();
                    match checkpoint(&conn, &database, LIMITS, &reset) {
                        Ok(done) => {
                            let copied = started.elapsed();
                            if last != Some(done)
                                && let Err(error) = write_back(&database)
                            {
                                tracing::warn!(%error, "writing the SQLite database file back failed");
                            }
                            last = Some(done);
                            tracing::debug!(
                                frames = done.frames,
                                copied = done.copied,
                                restarted = done.restarted,
                                micros = copied.as_micros() as u64,
                                written_back_micros = (started.elapsed() - copied).as_micros() as u64,
                                "checkpointed the SQLite WAL"
                            );
                        }
                        Err(error) => tracing::warn!(%error, "checkpointing the SQLite WAL failed; trying again later"),
                    }
                }
            })
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(Self { stop, thread })
    }

    /// Stops the checkpointer and waits for a checkpoint under way to end.
    pub(crate) fn stop(self) {
        drop(self.stop);
        if self.thread.join().is_err() {
            tracing::error!("the SQLite checkpointer ended abnormally");
        }
    }
}

/// What one checkpoint found and did, as `PRAGMA wal_checkpoint` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpointed {
    /// Frames in the WAL.
    pub(crate) frames: i64,
    /// Of those, frames now copied into the database file.
    pub(crate) copied: i64,
    /// Whether the log was made to start over.
    pub(crate) restarted: bool,
}

/// One pass of the checkpointer: copies what it can of the WAL without waiting. If the WAL then
/// holds more than `limits.reset_above` frames it copies again what was appended meanwhile (see
/// [`CLOSING_PASSES`]) and asks the writer to catch up; past
/// `limits.restart_above` it waits for the writer and the readers so that the log starts over.
pub(crate) fn checkpoint(
    conn: &NativeConn,
    database: &std::fs::File,
    limits: Limits,
    reset: &LogReset,
) -> Result<Checkpointed, rusqlite::Error> {
    let mut done = run(conn, "PASSIVE")?;
    if done.frames > limits.restart_above {
        return run(conn, "RESTART");
    }
    if done.frames > limits.reset_above {
        // SQLite syncs the database file only in a checkpoint that copies the whole log, which
        // under load is the writer's catch-up: every page the passes wrote since the last log was
        // still to be written out then, with the writer waiting (115 ms measured after 256 MiB
        // of registrations). It is synced here instead, while the writer goes on, before the
        // closing passes, which copy what the writer appended meanwhile.
        if let Err(error) = database.sync_data() {
            tracing::warn!(%error, "syncing the SQLite database file before a catch-up failed");
        }
        for _ in 0..CLOSING_PASSES {
            let again = run(conn, "PASSIVE")?;
            let appended = again.frames - done.frames;
            done = again;
            if appended <= CATCH_UP_FRAMES {
                break;
            }
        }
        reset.request();
    }
    Ok(done)
}

/// Writes the database file's dirty pages out, [`WRITE_BACK_STEP`] by step, waiting for each (see
/// the module docs). Makes nothing durable: that is left to the fsyncs.
#[cfg(target_os = "linux")]
pub(crate) fn write_back(database: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let length = i64::try_from(database.metadata()?.len()).unwrap_or(i64::MAX);
    let each = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    let mut offset = 0;
    while offset < length {
        // SAFETY: the call reads no memory of ours; it is given a descriptor that `database`
        // keeps open for as long as the call lasts, and plain integers.
        #[allow(unsafe_code)]
        let done = unsafe { libc::sync_file_range(database.as_raw_fd(), offset, WRITE_BACK_STEP, each) };
        if done != 0 {
            return Err(std::io::Error::last_os_error());
        }
        offset += WRITE_BACK_STEP;
    }
    Ok(())
}

/// Elsewhere the kernel writes the file back as it will.
#[cfg(not(target_os = "linux"))]
pub(crate) fn write_back(_database: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

/// The writer's catch-up: between two batches, copies what the checkpointer has not yet, so that
/// the writer's next transaction finds the whole log in the database file and starts it over.
/// Never waits: if the checkpointer is copying at this instant, nothing is done (and the
/// checkpointer asks again after its pass). The writer's connection runs at `synchronous=NORMAL`,
/// at which SQLite still syncs in a checkpoint: the WAL before copying, the database file before
/// the log may start over, and the log's new header.
pub(crate) fn catch_up(writer: &NativeConn) -> Result<Checkpointed, rusqlite::Error> {
    run(writer, "PASSIVE")
}

fn run(conn: &NativeConn, mode: &str) -> Result<Checkpointed, rusqlite::Error> {
    conn.connection().query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        let (busy, frames, copied) = (row.get::<_, i64>(0)? != 0, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?);
        Ok(Checkpointed { frames, copied, restarted: mode == "RESTART" && !busy })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database in a directory of its own, with a table `t`, and two connections to it: the writer
    /// (which never checkpoints) and the checkpointer's.
    struct Database {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        writer: NativeConn,
        checkpointer: NativeConn,
    }

    fn database() -> Database {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("c.db");
        let open = || {
            let conn = open_native(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_CREATE,
            )
            .expect("the database opens");
            conn.connection()
                .execute_batch(
                    "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 300000",
                )
                .expect("WAL mode");
            conn
        };
        let writer = open();
        writer.connection().execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)").expect("a table");
        let checkpointer = open();
        Database { _dir: dir, path, writer, checkpointer }
    }

    impl Database {
        /// The database file, for the checkpointer's own syncs.
        fn file(&self) -> std::fs::File {
            std::fs::File::open(&self.path).expect("the database file opens")
        }
    }

    fn wal_len(path: &Path) -> u64 {
        std::fs::metadata(path.with_extension("db-wal")).map(|m| m.len()).unwrap_or(0)
    }

    /// Commits `n` as the writer does under constant load: the checkpointer's pass runs while the
    /// writer's transaction is open, so the pass never sees the whole log copied at the instant the
    /// next transaction begins. Between transactions the writer catches up if asked to (`catch_up`).
    fn commit_under_load(
        db: &Database,
        n: i64,
        limits: Limits,
        reset: &LogReset,
        catch_up_asked: bool,
    ) -> Checkpointed {
        if catch_up_asked && reset.take() {
            let done = catch_up(&db.writer).expect("a catch-up runs");
            assert_eq!(done.copied, done.frames, "the writer's catch-up copies the whole log");
        }
        db.writer.connection().execute_batch("BEGIN IMMEDIATE").expect("a transaction");
        db.writer.connection().execute("INSERT INTO t (k, v) VALUES (?1, zeroblob(3000))", [n]).expect("an insert");
        let done = checkpoint(&db.checkpointer, &db.file(), limits, reset).expect("a checkpoint runs");
        db.writer.connection().execute_batch("COMMIT").expect("a commit");
        assert!(done.copied <= done.frames, "{done:?}");
        done
    }

    fn rows(db: &Database) -> i64 {
        db.writer.connection().query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("a count")
    }

    /// Under constant writes the log grows for good if nobody makes it start over; with the writer
    /// catching up when the checkpointer asks, it starts over once it passes the limit, and stays
    /// bounded however long the writes go on, without a `RESTART`.
    #[test]
    fn the_wal_starts_over_once_the_writer_catches_up() {
        let db = &database();
        let limits = Limits { reset_above: 64, restart_above: i64::MAX };
        let reset = LogReset::default();
        let mut largest = 0;
        for n in 0..300 {
            largest = largest.max(commit_under_load(db, n, limits, &reset, false).frames);
        }
        assert!(largest >= 290, "without catch-ups the log grows with every commit: {largest} frames");
        let unchecked = wal_len(&db.path);

        let (mut restarts, mut last) = (0, largest);
        let mut largest = 0;
        for n in 300..2_000 {
            let done = commit_under_load(db, n, limits, &reset, true);
            assert!(!done.restarted, "no RESTART checkpoint is needed");
            if done.frames < last {
                restarts += 1;
            }
            if restarts > 0 {
                largest = largest.max(done.frames);
            }
            last = done.frames;
        }
        assert!(restarts > 10, "the log started over {restarts} times");
        // Once started over, the log starts over again soon after it passes 64 frames.
        assert!(largest <= 64 + 8, "after the first restart the WAL grew to {largest} frames");
        assert!(wal_len(&db.path) < unchecked, "the WAL file was not cut back");
        assert_eq!(rows(db), 2_000, "nothing was lost to a restart");
    }

    /// A log nobody made start over (here: the writer never catches up) is restarted by the
    /// checkpointer once it passes the last limit, waiting for the writer to be between transactions.
    #[test]
    fn a_log_past_the_last_limit_is_restarted_by_the_checkpointer() {
        let db = &database();
        let growing = Limits { reset_above: 64, restart_above: i64::MAX };
        let reset = LogReset::default();
        let mut grown = Checkpointed { frames: 0, copied: 0, restarted: false };
        for n in 0..200 {
            grown = commit_under_load(db, n, growing, &reset, false);
            assert!(!grown.restarted, "{grown:?} below the last limit");
        }
        assert!(reset.take(), "the checkpointer asked the writer to catch up");
        // The writer is between transactions, has not caught up, and the log passes the last limit.
        db.writer.connection().execute("INSERT INTO t (k, v) VALUES (200, zeroblob(3000))", []).expect("an insert");
        let limits = Limits { reset_above: 64, restart_above: grown.frames };
        let restarted = checkpoint(&db.checkpointer, &db.file(), limits, &reset).expect("a checkpoint runs");
        assert!(restarted.frames > grown.frames, "{restarted:?} after {grown:?}");
        assert!(restarted.restarted && restarted.copied == restarted.frames, "{restarted:?}");
        db.writer.connection().execute("INSERT INTO t (k, v) VALUES (201, zeroblob(3000))", []).expect("an insert");
        let after = checkpoint(&db.checkpointer, &db.file(), growing, &reset).expect("a checkpoint runs");
        assert!(after.frames < 8, "the next commit started the log over: {after:?}");
        assert_eq!(rows(db), 202, "nothing was lost to a restart");
    }

    /// The file's pages in the kernel's page cache that are dirty, by `cachestat(2)` (Linux 6.5 and
    /// later; `None` before).
    #[cfg(target_os = "linux")]
    fn dirty_pages(file: &std::fs::File) -> Option<u64> {
        use std::os::fd::AsRawFd;
        // The kernel's `struct cachestat_range` and `struct cachestat`; the call is 451 on every
        // architecture (libc does not name it for all of them yet).
        #[repr(C)]
        struct Range {
            offset: u64,
            length: u64,
        }
        #[repr(C)]
        #[derive(Default)]
        struct Stat {
            cache: u64,
            dirty: u64,
            writeback: u64,
            evicted: u64,
            recently_evicted: u64,
        }
        let whole = Range { offset: 0, length: 0 };
        let mut stat = Stat::default();
        // SAFETY: both structs are laid out as the kernel's, live across the call, and only
        // `stat` is written to.
        #[allow(unsafe_code)]
        let done =
            unsafe { libc::syscall(451, file.as_raw_fd(), &whole as *const Range, &mut stat as *mut Stat, 0_u32) };
        (done == 0).then_some(stat.dirty + stat.writeback)
    }

    /// The checkpointer's write-back leaves none of the file's pages dirty, through the read-only
    /// descriptor it holds, however many steps the file takes (on a file system that writes pages
    /// back at all).
    #[cfg(target_os = "linux")]
    #[test]
    fn the_write_back_leaves_no_page_of_the_file_dirty() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("c.db");
        let mut file = std::fs::File::create(&path).expect("a file");
        let step = usize::try_from(WRITE_BACK_STEP).expect("a step fits in memory");
        file.write_all(&vec![7_u8; 3 * step + 4096]).expect("written, not synced");
        let database = std::fs::File::open(&path).expect("the file opens read-only");
        let before = dirty_pages(&database);
        write_back(&database).expect("the write-back runs");
        match before {
            // No cachestat(2) (before Linux 6.5), or a file system that keeps no page dirty for
            // write-back to clean (tmpfs): the write-back can only be seen not to fail.
            None | Some(0) => {}
            Some(_) => assert_eq!(dirty_pages(&database), Some(0), "every step was written back and waited for"),
        }
    }

    /// A checkpoint below the limit copies the WAL into the database file and never waits.
    #[test]
    fn a_passive_checkpoint_copies_the_wal_into_the_database_file() {
        let db = &database();
        let Database { path, writer, checkpointer, .. } = db;
        let before = std::fs::metadata(path).expect("the file exists").len();
        writer.connection().execute_batch("BEGIN").expect("a transaction");
        for n in 0..100 {
            writer.connection().execute("INSERT INTO t (k, v) VALUES (?1, zeroblob(3000))", [n]).expect("an insert");
        }
        writer.connection().execute_batch("COMMIT").expect("a commit");
        let done = checkpoint(checkpointer, &db.file(), LIMITS, &LogReset::default()).expect("a checkpoint runs");
        assert_eq!(done, Checkpointed { frames: done.frames, copied: done.frames, restarted: false });
        assert!(done.frames >= 100, "{done:?}");
        let after = std::fs::metadata(path).expect("the file exists").len();
        assert!(after >= before + 100 * 3000, "the database file grew from {before} to {after} bytes");
    }
}
