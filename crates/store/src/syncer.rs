//! The SQLite syncer: makes the writer's committed batches durable, off the writer, and only then
//! answers them.
//!
//! With `synchronous=FULL` the writer waited inside every `COMMIT` for the WAL's fsync, idle, before
//! it could begin the next batch. Its connection now runs at `synchronous=NORMAL`: a `COMMIT` writes
//! the batch's frames to the WAL and returns (SQLite promises a consistent database after a power
//! loss, possibly without the last commits), and the writer hands the batch's answers to this
//! thread, which fsyncs the WAL and then answers. While one batch is on its way to disk the writer
//! runs the next; one fsync covers every batch committed before it began. An answer still leaves
//! only once its writes are on disk.
//!
//! The WAL can be relied on this way because SQLite appends a commit's frames in order, each with a
//! checksum chained from the one before: after a power loss, recovery keeps the longest run of whole
//! commits, so a batch survives only with every batch before it. A `kill -9` loses nothing at all:
//! what the writer wrote is in the kernel's page cache. The checkpointer, at `synchronous=FULL`, syncs
//! the WAL before it copies any of it into the database file.
//!
//! A committed batch is visible to readers before it is on disk. So that no answer reveals a write
//! that a power loss could still take back, a read is answered only once every batch whose commit
//! began before the read ended is synced ([`Durability::settled`]): under write load, a read waits
//! for at most one fsync.
//!
//! If an fsync fails, the kernel may have dropped the pages it could not write and will not report
//! it again, so a later fsync can succeed over lost data. Batches already visible could then no
//! longer be promised: the process stops, as PostgreSQL does, and a restart recovers from what the
//! disk holds.

use crate::sqlite::GroupCommitStats;
use cardplane_app::AppError;
use cardplane_app::ports::{Erased, StoreError};
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;
use tokio::sync::{oneshot, watch};

/// One unit of work's answer, to be sent once its batch is on disk.
pub(crate) type Answer = (oneshot::Sender<Result<Erased, AppError>>, Result<Erased, AppError>);

/// How the syncer makes the WAL durable: `fdatasync` in production; tests hold it back.
pub(crate) type SyncWal = Arc<dyn Fn(&File) -> io::Result<()> + Send + Sync>;

/// Batches committed but not yet synced that the writer may run ahead by before it waits.
const AHEAD: usize = 8;

/// The writer's batches, numbered from 1: which commits have begun and which are on disk.
pub(crate) struct Durability {
    /// The last batch whose commit began. A reader that saw a batch's writes finished after that
    /// commit began, so it reads this number at least as high.
    committing: AtomicU64,
    /// The last batch known to be on disk, with every batch before it.
    synced: watch::Sender<u64>,
}

impl Durability {
    pub(crate) fn new() -> Self {
        Self { committing: AtomicU64::new(0), synced: watch::Sender::new(0) }
    }

    /// Numbers the batch the writer is about to commit. Called before the `COMMIT`, so that the
    /// number is visible before the batch's writes are (SeqCst here, and SQLite's own barriers
    /// around its shared WAL index, order the two).
    pub(crate) fn begin_commit(&self) -> u64 {
        self.committing.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The last batch whose commit began.
    #[cfg(test)]
    pub(crate) fn last_begun(&self) -> u64 {
        self.committing.load(Ordering::SeqCst)
    }

    /// Waits until every batch whose commit had begun is on disk: what a read that ended before
    /// this call could have seen. At once when nothing is waiting to be synced.
    pub(crate) async fn settled(&self) {
        let seen = self.committing.load(Ordering::SeqCst);
        if *self.synced.borrow() >= seen {
            return;
        }
        // An error means the syncer is gone, which it only is once it has synced every batch.
        let _ = self.synced.subscribe().wait_for(|synced| *synced >= seen).await;
    }
}

/// A batch handed to the syncer.
struct Ticket {
    batch: u64,
    /// False for a batch whose commit failed: nothing of it to sync, and its refusals are sent.
    committed: bool,
    answers: Vec<Answer>,
}

/// The running syncer; [`Syncer::finish`] syncs what is left and ends it.
pub(crate) struct Syncer {
    tickets: SyncSender<Ticket>,
    thread: JoinHandle<()>,
}

impl Syncer {
    /// Starts syncing the WAL at `wal` on a thread of its own.
    pub(crate) fn start(
        wal: PathBuf,
        durability: Arc<Durability>,
        stats: Arc<GroupCommitStats>,
        sync: SyncWal,
    ) -> Result<Self, StoreError> {
        let (tickets, waiting) = mpsc::sync_channel(AHEAD);
        let thread = std::thread::Builder::new()
            .name("sqlite-syncer".to_owned())
            .spawn(move || run(&wal, &waiting, &durability, &stats, sync.as_ref()))
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(Self { tickets, thread })
    }

    /// Sends `answers` once batch `batch`, committed, is on disk. Blocks while [`AHEAD`] batches
    /// already wait: if the disk falls behind, the writer should not run further ahead of it.
    pub(crate) fn answer_when_durable(&self, batch: u64, answers: Vec<Answer>) {
        self.hand_over(Ticket { batch, committed: true, answers });
    }

    /// Marks batch `batch`, whose commit failed, as settled, in its turn.
    pub(crate) fn commit_failed(&self, batch: u64) {
        self.hand_over(Ticket { batch, committed: false, answers: Vec::new() });
    }

    fn hand_over(&self, ticket: Ticket) {
        if self.tickets.send(ticket).is_err() {
            // The thread ends only once this handle is dropped, unless it panicked: nothing would
            // make the batches durable any more.
            tracing::error!("the SQLite syncer is gone: committed writes can no longer be made durable; stopping");
            std::process::abort();
        }
    }

    /// Syncs and answers every batch handed over, then ends the thread.
    pub(crate) fn finish(self) {
        drop(self.tickets);
        if self.thread.join().is_err() {
            tracing::error!("the SQLite syncer ended abnormally");
        }
    }
}

fn run(
    wal: &std::path::Path,
    waiting: &Receiver<Ticket>,
    durability: &Durability,
    stats: &GroupCommitStats,
    sync: &dyn Fn(&File) -> io::Result<()>,
) {
    // Opened at the first commit, when the WAL surely exists. The writer's connection keeps it
    // open (and so the same file) for as long as this thread runs.
    let mut file: Option<File> = None;
    while let Ok(first) = waiting.recv() {
        let mut tickets = vec![first];
        tickets.extend(waiting.try_iter());
        if tickets.iter().any(|ticket| ticket.committed) {
            let started = std::time::Instant::now();
            let synced = match &file {
                Some(file) => sync(file),
                None => File::open(wal).and_then(|opened| sync(file.insert(opened))),
            };
            if let Err(error) = synced {
                tracing::error!(
                    %error,
                    "syncing the SQLite WAL failed: committed writes may not be on disk; stopping, so that a \
                     restart recovers from what the disk holds"
                );
                std::process::abort();
            }
            stats.syncs.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(micros = started.elapsed().as_micros() as u64, batches = tickets.len(), "WAL synced");
        }
        let last = tickets.last().map_or(0, |ticket| ticket.batch);
        durability.synced.send_replace(last);
        for ticket in tickets {
            for (reply, outcome) in ticket.answers {
                // The caller may have gone away; its write stands.
                let _ = reply.send(outcome);
            }
        }
    }
}
