//! The SQLite checkpointer: copies the write-ahead log into the database file, off the writer.
//!
//! By default SQLite checkpoints on the committing connection whenever the WAL passes 1,000 pages, so
//! our one writer stopped every few batches to read back and copy every page of the last 4 MB, fsync
//! the database file, and only then take the next batch: 9% of its time under registrations, and a
//! stall every caller of the next batch waited through. Here the writer never checkpoints
//! (`wal_autocheckpoint = 0`); a thread of its own does, every [`CHECKPOINT_EVERY`], without
//! blocking anybody (`PASSIVE`). A page written by many batches in that time is copied once.
//!
//! A passive checkpoint never waits, so under constant writes it may never catch up with the writer
//! at the instant the writer begins a transaction, which is when SQLite starts the WAL over; the WAL
//! would then grow for as long as the load lasts. Once it holds more than [`RESTART_ABOVE`] frames the
//! checkpointer asks for a `RESTART` checkpoint instead: it waits (the connections' busy timeout)
//! until the writer is between transactions and no reader still needs the log, copies the little
//! that is left, and lets the next write start the log from its beginning. Durability does not depend
//! on any of this: a commit is on disk once the WAL is synced, which the syncer does after every
//! commit (`syncer`).

use crate::native::NativeConn;
use crate::sqlite::{native_backend, open_native};
use cardplane_app::ports::StoreError;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the checkpointer copies what the WAL holds into the database file.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Bytes a WAL file is cut back to when the log starts over, so that one burst does not keep its
/// size on disk for good.
pub(crate) const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// WAL frames (pages) beyond which the checkpointer makes the log start over: 64 MiB of the pages
/// this store creates (a database from before them, with 4 KiB pages, goes to 128 MiB). Measured:
/// 10 s of life-cycle operations grow the WAL by 250 MB without a restart.
pub(crate) const RESTART_ABOVE: i64 = WAL_SIZE_LIMIT / crate::sqlite::PAGE_SIZE as i64;

/// The running checkpointer; [`Checkpointer::stop`] ends it.
pub(crate) struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` on a thread of its own, with a connection of its own.
    pub(crate) fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = open_native(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(native_backend)?;
        // The writer commits without syncing (the syncer does, after it): a checkpoint must sync the
        // WAL before it copies any of it into the database file, and the database file before the log
        // may start over. `FULL` (SQLite's default, said here so that no build setting changes it)
        // does both.
        conn.0.pragma_update(None, "synchronous", "FULL").map_err(native_backend)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpointer".to_owned())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                    if let Err(error) = checkpoint(&conn, RESTART_ABOVE) {
                        tracing::warn!(%error, "checkpointing the SQLite WAL failed; trying again later");
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

/// Copies what it can of the WAL without waiting; if the WAL holds more than `restart_above` frames,
/// waits for the writer and readers so that the log starts over.
pub(crate) fn checkpoint(conn: &NativeConn, restart_above: i64) -> Result<Checkpointed, rusqlite::Error> {
    let run = |mode: &str| {
        conn.0.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((row.get::<_, i64>(0)? != 0, row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        })
    };
    let (_, frames, copied) = run("PASSIVE")?;
    if frames <= restart_above {
        return Ok(Checkpointed { frames, copied, restarted: false });
    }
    let (busy, frames, copied) = run("RESTART")?;
    Ok(Checkpointed { frames, copied, restarted: !busy })
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
            conn.0
                .execute_batch(
                    "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 300000",
                )
                .expect("WAL mode");
            conn
        };
        let writer = open();
        writer.0.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)").expect("a table");
        let checkpointer = open();
        Database { _dir: dir, path, writer, checkpointer }
    }

    fn wal_len(path: &Path) -> u64 {
        std::fs::metadata(path.with_extension("db-wal")).map(|m| m.len()).unwrap_or(0)
    }

    /// Without checkpoints the WAL of a writer that never checkpoints grows with every commit; with
    /// them it starts over once it passes the limit, and stays bounded however long the writes go on.
    #[test]
    fn the_wal_starts_over_once_it_passes_the_limit() {
        let Database { path, writer, checkpointer, .. } = &database();
        let commit = |n: i64| {
            writer.0.execute("INSERT INTO t (k, v) VALUES (?1, zeroblob(3000))", [n]).expect("an insert commits");
        };
        for n in 0..200 {
            commit(n);
        }
        let unchecked = wal_len(path);
        assert!(unchecked > 200 * 3000, "the WAL holds every commit: {unchecked} bytes");

        let (mut restarts, mut largest) = (0, 0);
        for n in 200..2_000 {
            commit(n);
            let done = checkpoint(checkpointer, 64).expect("a checkpoint runs");
            assert!(done.copied <= done.frames, "{done:?}");
            if restarts > 0 {
                largest = largest.max(done.frames);
            }
            restarts += usize::from(done.restarted);
        }
        assert!(restarts > 0, "the log never started over");
        // Once started over, the log is made to start over again whenever it passes 64 frames.
        assert!(largest <= 64 + 8, "after the first restart the WAL grew to {largest} frames");
        assert!(wal_len(path) < unchecked, "the WAL file was not cut back");
        let rows: i64 = writer.0.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("a count");
        assert_eq!(rows, 2_000, "nothing was lost to a restart");
    }

    /// A checkpoint below the limit copies the WAL into the database file and never waits.
    #[test]
    fn a_passive_checkpoint_copies_the_wal_into_the_database_file() {
        let Database { path, writer, checkpointer, .. } = &database();
        let before = std::fs::metadata(path).expect("the file exists").len();
        writer.0.execute_batch("BEGIN").expect("a transaction");
        for n in 0..100 {
            writer.0.execute("INSERT INTO t (k, v) VALUES (?1, zeroblob(3000))", [n]).expect("an insert");
        }
        writer.0.execute_batch("COMMIT").expect("a commit");
        let done = checkpoint(checkpointer, RESTART_ABOVE).expect("a checkpoint runs");
        assert_eq!(done, Checkpointed { frames: done.frames, copied: done.frames, restarted: false });
        assert!(done.frames >= 100, "{done:?}");
        let after = std::fs::metadata(path).expect("the file exists").len();
        assert!(after >= before + 100 * 3000, "the database file grew from {before} to {after} bytes");
    }
}
