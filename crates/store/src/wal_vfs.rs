//! A SQLite VFS over the `unix` one that writes a commit's WAL frames in one `pwrite(2)`.
//!
//! SQLite writes each WAL frame as two calls, its 24-byte header and then the page: a registration
//! commits four or five pages, so the writer thread made eight or nine system calls per
//! registration, its largest kernel cost (docs/PERFORMANCE.md). Only the writer's connection opens
//! the database through this VFS ([`NAME`]); every other method and file passes straight to `unix`.
//!
//! # Why no commit can be seen, or made durable, before its frames are in the file
//! A WAL file opened here gathers writes that continue one another into one buffer, and writes
//! the buffer out:
//! - within the `xWrite` that brings the page of a *commit frame* (a frame header whose
//!   database-size field is not zero: SQLite sets it on a transaction's last frame only). SQLite
//!   publishes a commit (the wal-index header readers trust) only after that `xWrite` returned, and
//!   nothing makes it durable before (the syncer fsyncs after the commit returns). A failed write
//!   is that `xWrite`'s error, so the transaction fails as it would have without this VFS;
//! - before any other call on the WAL file (`xRead`, `xSync`, `xTruncate`, `xFileSize`, `xClose`,
//!   locks, file controls), and before a write that does not continue the buffer;
//! - when it passes [`MAX_PENDING`].
//!
//! Only a write that starts a frame (a non-commit frame header) or the log (its 32-byte header at
//! offset 0) starts a buffer; anything else is written through at once. So a commit frame written on
//! its own (a one-frame transaction, or SQLite rewriting checksums after overwriting frames in place,
//! where each header rewrite follows an `xRead`) is never held back. What a buffer can hold when
//! its `xWrite` returns is frames of a transaction not committed yet: what a crash would leave
//! unpublished anyway.
//!
//! The VFS-level methods are the `unix` VFS's own: they ignore the VFS they are called with, all
//! but `xOpen`, which is wrapped.

use rusqlite::ffi;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;

/// The name the writer's connection opens the database with.
pub(crate) const NAME: &str = "cardplane-wal";
const NAME_C: &CStr = c"cardplane-wal";

/// A buffer larger than this is written out even before its commit frame (a big transaction).
const MAX_PENDING: usize = 4 * 1024 * 1024;

/// The most this VFS hands `unix` in one write: `unix` keeps only the low 17 bits of a write's
/// length (`seekAndWriteFd`: 128 KiB and more would be cut short), so a buffer goes out in pieces.
const MAX_WRITE: usize = 64 * 1024;

/// A WAL frame header's size (its bytes 4..8: the database's size after the commit, on a commit
/// frame; zero on any other), and the log header's.
const FRAME_HEADER: usize = 24;
const WAL_HEADER: usize = 32;

/// Registers the VFS (once; later calls return the first result). Its files delegate to `unix`.
pub(crate) fn register() -> Result<(), c_int> {
    static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        #[allow(unsafe_code)]
        // SAFETY: `sqlite3_vfs_find` returns SQLite's own static VFS (or null); the copy is leaked,
        // so it lives for as long as SQLite may call it, as `sqlite3_vfs_register` requires.
        unsafe {
            let unix = ffi::sqlite3_vfs_find(c"unix".as_ptr());
            if unix.is_null() {
                return Err(ffi::SQLITE_ERROR);
            }
            let mut vfs = *unix;
            vfs.szOsFile = (INNER_OFFSET + (*unix).szOsFile as usize) as c_int;
            vfs.pNext = std::ptr::null_mut();
            vfs.zName = NAME_C.as_ptr();
            vfs.pAppData = unix.cast();
            vfs.xOpen = Some(open);
            match ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 0) {
                ffi::SQLITE_OK => Ok(()),
                rc => Err(rc),
            }
        }
    })
}

/// What SQLite allocates for a file of this VFS (`szOsFile` bytes): this, then the `unix` file.
#[repr(C)]
struct File {
    /// First, so that SQLite's `sqlite3_file*` is a `File*`.
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    /// Some for a WAL file.
    wal: Option<Pending>,
}

const INNER_OFFSET: usize = std::mem::size_of::<File>().next_multiple_of(16);

/// A WAL file's writes not made yet: `data`, to go at `offset`. The rules of the module docs, with
/// the writes themselves left to a `sink` (the `unix` file's `xWrite`), so that they can be tested
/// without SQLite.
#[derive(Default)]
struct Pending {
    offset: i64,
    data: Vec<u8>,
    /// The last write gathered was a commit frame's header: the next brings its page.
    commit_header_last: bool,
}

/// Where [`Pending`] writes: `(offset, bytes)`, answering an SQLite result code.
type Sink<'a> = dyn FnMut(i64, &[u8]) -> c_int + 'a;

fn is_commit_header(data: &[u8]) -> bool {
    data.len() == FRAME_HEADER && data[4..8] != [0; 4]
}

impl Pending {
    /// Takes SQLite's write of `data` at `offset`: gathers it, or writes out what was gathered and
    /// then this write. The result is the write's: an error from writing out earlier writes too.
    fn write(&mut self, offset: i64, data: &[u8], sink: &mut Sink<'_>) -> c_int {
        if !self.data.is_empty() && offset == self.offset + self.data.len() as i64 {
            self.data.extend_from_slice(data);
            let completes_commit = self.commit_header_last;
            self.commit_header_last = is_commit_header(data);
            if completes_commit || self.data.len() > MAX_PENDING {
                return self.flush(sink);
            }
            return ffi::SQLITE_OK;
        }
        let rc = self.flush(sink);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let starts_frame = data.len() == FRAME_HEADER && !is_commit_header(data);
        let starts_log = offset == 0 && data.len() == WAL_HEADER;
        if starts_frame || starts_log {
            self.offset = offset;
            self.data.extend_from_slice(data);
            return ffi::SQLITE_OK;
        }
        sink(offset, data)
    }

    /// Writes out what is gathered, if anything, in pieces of at most [`MAX_WRITE`]. Forgets it
    /// either way: a failed write fails the transaction it belongs to.
    fn flush(&mut self, sink: &mut Sink<'_>) -> c_int {
        let mut rc = ffi::SQLITE_OK;
        let mut offset = self.offset;
        for piece in self.data.chunks(MAX_WRITE) {
            rc = sink(offset, piece);
            if rc != ffi::SQLITE_OK {
                break;
            }
            offset += piece.len() as i64;
        }
        self.data.clear();
        self.commit_header_last = false;
        rc
    }
}

#[allow(unsafe_code)]
mod methods {
    use super::*;

    /// SAFETY (for every function here): SQLite calls them with a `sqlite3_file` that [`open`]
    /// made a [`File`] and whose `inner` it opened, from one thread at a time (the connection is
    /// not shared), and never again after `close`.
    unsafe fn file<'a>(f: *mut ffi::sqlite3_file) -> &'a mut File {
        unsafe { &mut *f.cast::<File>() }
    }

    unsafe fn inner(f: &File) -> &ffi::sqlite3_io_methods {
        unsafe { &*(*f.inner).pMethods }
    }

    /// The `unix` file's `xWrite`, as a [`Sink`].
    unsafe fn sink(inner: *mut ffi::sqlite3_file) -> impl FnMut(i64, &[u8]) -> c_int {
        let write = unsafe { (*(*inner).pMethods).xWrite.expect("unix files write") };
        move |offset, data| {
            #[cfg(test)]
            tests::WRITES.with(|writes| writes.set(writes.get() + 1));
            unsafe { write(inner, data.as_ptr().cast(), data.len() as c_int, offset) }
        }
    }

    /// Writes out what `f` holds back, if anything.
    unsafe fn flush(f: &mut File) -> c_int {
        match f.wal.as_mut() {
            Some(pending) => pending.flush(&mut unsafe { sink(f.inner) }),
            None => ffi::SQLITE_OK,
        }
    }

    pub(super) unsafe extern "C" fn write(
        f: *mut ffi::sqlite3_file,
        buf: *const c_void,
        amt: c_int,
        offset: i64,
    ) -> c_int {
        let f = unsafe { file(f) };
        let data = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), amt as usize) };
        let mut sink = unsafe { sink(f.inner) };
        match f.wal.as_mut() {
            Some(pending) => pending.write(offset, data, &mut sink),
            None => sink(offset, data),
        }
    }

    pub(super) unsafe extern "C" fn close(f: *mut ffi::sqlite3_file) -> c_int {
        let f = unsafe { file(f) };
        let flushed = unsafe { flush(f) };
        let closed = unsafe { (inner(f).xClose.expect("unix files close"))(f.inner) };
        // SQLite frees the memory without dropping anything in it.
        drop(f.wal.take());
        if flushed != ffi::SQLITE_OK { flushed } else { closed }
    }

    /// A method that writes out what the file holds back, then passes the call to `unix`.
    macro_rules! flushing {
        ($name:ident, $field:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty, $missing:expr) => {
            pub(super) unsafe extern "C" fn $name(f: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
                let f = unsafe { file(f) };
                let rc = unsafe { flush(f) };
                if rc != ffi::SQLITE_OK {
                    return rc as $ret;
                }
                match unsafe { inner(f).$field } {
                    Some(method) => unsafe { method(f.inner $(, $arg)*) },
                    None => $missing,
                }
            }
        };
    }

    flushing!(read, xRead(buf: *mut c_void, amt: c_int, offset: i64) -> c_int, ffi::SQLITE_IOERR_READ);
    flushing!(truncate, xTruncate(size: i64) -> c_int, ffi::SQLITE_IOERR_TRUNCATE);
    flushing!(sync, xSync(flags: c_int) -> c_int, ffi::SQLITE_IOERR_FSYNC);
    flushing!(file_size, xFileSize(size: *mut i64) -> c_int, ffi::SQLITE_IOERR_FSTAT);
    flushing!(lock, xLock(level: c_int) -> c_int, ffi::SQLITE_IOERR_LOCK);
    flushing!(unlock, xUnlock(level: c_int) -> c_int, ffi::SQLITE_IOERR_UNLOCK);
    flushing!(check_reserved_lock, xCheckReservedLock(out: *mut c_int) -> c_int, ffi::SQLITE_IOERR_CHECKRESERVEDLOCK);
    flushing!(file_control, xFileControl(op: c_int, arg: *mut c_void) -> c_int, ffi::SQLITE_NOTFOUND);
    flushing!(shm_map, xShmMap(region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int, ffi::SQLITE_IOERR_SHMMAP);
    flushing!(shm_lock, xShmLock(offset: c_int, n: c_int, flags: c_int) -> c_int, ffi::SQLITE_IOERR_SHMLOCK);
    flushing!(shm_unmap, xShmUnmap(delete: c_int) -> c_int, ffi::SQLITE_OK);
    flushing!(fetch, xFetch(offset: i64, amt: c_int, out: *mut *mut c_void) -> c_int, {
        unsafe { *out = std::ptr::null_mut() };
        ffi::SQLITE_OK
    });
    flushing!(unfetch, xUnfetch(offset: i64, page: *mut c_void) -> c_int, ffi::SQLITE_OK);

    pub(super) unsafe extern "C" fn sector_size(f: *mut ffi::sqlite3_file) -> c_int {
        let f = unsafe { file(f) };
        unsafe { inner(f).xSectorSize.map_or(4096, |method| method(f.inner)) }
    }

    pub(super) unsafe extern "C" fn device_characteristics(f: *mut ffi::sqlite3_file) -> c_int {
        let f = unsafe { file(f) };
        unsafe { inner(f).xDeviceCharacteristics.map_or(0, |method| method(f.inner)) }
    }

    pub(super) unsafe extern "C" fn shm_barrier(f: *mut ffi::sqlite3_file) {
        let f = unsafe { file(f) };
        if let Some(method) = unsafe { inner(f).xShmBarrier } {
            unsafe { method(f.inner) }
        }
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(methods::close),
    xRead: Some(methods::read),
    xWrite: Some(methods::write),
    xTruncate: Some(methods::truncate),
    xSync: Some(methods::sync),
    xFileSize: Some(methods::file_size),
    xLock: Some(methods::lock),
    xUnlock: Some(methods::unlock),
    xCheckReservedLock: Some(methods::check_reserved_lock),
    xFileControl: Some(methods::file_control),
    xSectorSize: Some(methods::sector_size),
    xDeviceCharacteristics: Some(methods::device_characteristics),
    xShmMap: Some(methods::shm_map),
    xShmLock: Some(methods::shm_lock),
    xShmBarrier: Some(methods::shm_barrier),
    xShmUnmap: Some(methods::shm_unmap),
    xFetch: Some(methods::fetch),
    xUnfetch: Some(methods::unfetch),
};

/// Opens `name` with the `unix` VFS into the memory after a [`File`], and makes it a [`File`].
#[allow(unsafe_code)]
unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    out: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: `vfs` is the VFS `register` made, whose `pAppData` is `unix`; `out` points at
    // `szOsFile` bytes (a `File` and then `unix`'s file), aligned for any type as SQLite's
    // allocations are. Until `pMethods` is set SQLite will not call into the file.
    unsafe {
        let unix = (*vfs).pAppData.cast::<ffi::sqlite3_vfs>();
        let inner = out.cast::<u8>().add(INNER_OFFSET).cast::<ffi::sqlite3_file>();
        out.cast::<File>().write(File { base: ffi::sqlite3_file { pMethods: std::ptr::null() }, inner, wal: None });
        let rc = ((*unix).xOpen.expect("unix opens files"))(unix, name, inner, flags, out_flags);
        if (*inner).pMethods.is_null() {
            return rc;
        }
        let file = &mut *out.cast::<File>();
        if flags & ffi::SQLITE_OPEN_WAL != 0 {
            file.wal = Some(Pending::default());
        }
        file.base.pMethods = &METHODS;
        rc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::Cell;

    thread_local! {
        /// Writes this thread's files of this VFS made (`xWrite` calls on `unix` files).
        pub(super) static WRITES: Cell<usize> = const { Cell::new(0) };
    }

    const PAGE: usize = 64;

    fn header(commit: bool, n: u8) -> Vec<u8> {
        let mut header = vec![n; FRAME_HEADER];
        header[4..8].copy_from_slice(if commit { &[0, 0, 0, 9] } else { &[0; 4] });
        header
    }

    fn frame_offset(n: usize) -> i64 {
        (WAL_HEADER + n * (FRAME_HEADER + PAGE)) as i64
    }

    /// A file image that writes land in, and the writes that reached it.
    #[derive(Default)]
    struct Image {
        bytes: Vec<u8>,
        writes: Vec<(i64, usize)>,
    }

    impl Image {
        fn apply(&mut self, offset: i64, data: &[u8]) -> c_int {
            let end = offset as usize + data.len();
            if self.bytes.len() < end {
                self.bytes.resize(end, 0);
            }
            self.bytes[offset as usize..end].copy_from_slice(data);
            self.writes.push((offset, data.len()));
            ffi::SQLITE_OK
        }
    }

    fn gathered(image: &mut Image, pending: &mut Pending, offset: i64, data: &[u8]) -> c_int {
        pending.write(offset, data, &mut |offset, data| image.apply(offset, data))
    }

    #[test]
    fn a_commit_goes_out_in_one_write_with_its_last_page() {
        let (mut image, mut pending) = (Image::default(), Pending::default());
        assert_eq!(gathered(&mut image, &mut pending, 0, &[1; WAL_HEADER]), ffi::SQLITE_OK);
        for n in 0..3 {
            let commit = n == 2;
            gathered(&mut image, &mut pending, frame_offset(n), &header(commit, n as u8));
            assert!(image.writes.is_empty() || commit, "nothing is written before the commit frame's page");
            gathered(&mut image, &mut pending, frame_offset(n) + FRAME_HEADER as i64, &[n as u8; PAGE]);
        }
        assert_eq!(
            image.writes,
            vec![(0, frame_offset(3) as usize)],
            "the log's header and three frames, in one write"
        );
        assert!(pending.data.is_empty());
    }

    #[test]
    fn a_commit_header_written_on_its_own_is_never_held() {
        // SQLite rewriting checksums after a commit: an xRead (a flush), then a header alone.
        let (mut image, mut pending) = (Image::default(), Pending::default());
        gathered(&mut image, &mut pending, frame_offset(5), &header(true, 5));
        assert_eq!(image.writes, vec![(frame_offset(5), FRAME_HEADER)]);
        gathered(&mut image, &mut pending, frame_offset(5) + FRAME_HEADER as i64, &[5; PAGE]);
        assert_eq!(image.writes.len(), 2, "a page that starts nothing is written through");
        assert!(pending.data.is_empty());
    }

    #[test]
    fn a_write_elsewhere_writes_out_what_was_held_first() {
        let (mut image, mut pending) = (Image::default(), Pending::default());
        gathered(&mut image, &mut pending, frame_offset(4), &header(false, 4));
        gathered(&mut image, &mut pending, frame_offset(4) + FRAME_HEADER as i64, &[4; PAGE]);
        // A page overwritten in place, earlier in the log.
        gathered(&mut image, &mut pending, frame_offset(1) + FRAME_HEADER as i64, &[7; PAGE]);
        let held = (frame_offset(4), FRAME_HEADER + PAGE);
        assert_eq!(image.writes, vec![held, (frame_offset(1) + FRAME_HEADER as i64, PAGE)]);
    }

    #[test]
    fn a_failed_write_fails_the_commit_and_nothing_is_kept() {
        let mut pending = Pending::default();
        let mut full = |_: i64, _: &[u8]| ffi::SQLITE_FULL;
        assert_eq!(pending.write(frame_offset(0), &header(false, 0), &mut full), ffi::SQLITE_OK);
        assert_eq!(pending.write(frame_offset(0) + 24, &[0; PAGE], &mut full), ffi::SQLITE_OK);
        assert_eq!(pending.write(frame_offset(1), &header(true, 1), &mut full), ffi::SQLITE_OK);
        assert_eq!(pending.write(frame_offset(1) + 24, &[1; PAGE], &mut full), ffi::SQLITE_FULL);
        assert!(pending.data.is_empty() && !pending.commit_header_last);
    }

    #[test]
    fn what_is_held_goes_out_in_pieces_the_unix_vfs_writes_whole() {
        let (mut image, mut pending) = (Image::default(), Pending::default());
        let page = vec![3; 4096];
        for n in 0..40 {
            let offset = (WAL_HEADER + n * (FRAME_HEADER + page.len())) as i64;
            gathered(&mut image, &mut pending, offset, &header(n == 39, 3));
            gathered(&mut image, &mut pending, offset + FRAME_HEADER as i64, &page);
        }
        assert!(image.writes.len() > 1);
        assert!(image.writes.iter().all(|&(_, len)| len <= MAX_WRITE && len & 0x1ffff == len));
        let mut expected = WAL_HEADER as i64;
        for &(offset, len) in &image.writes {
            assert_eq!(offset, expected, "the pieces follow each other");
            expected += len as i64;
        }
    }

    /// What SQLite does to a WAL file, in the shapes `walFrames` writes it.
    #[derive(Debug, Clone)]
    enum Op {
        /// The next frame (header, then page), the transaction's last if `commit`.
        Frame { commit: bool },
        /// A page already in the log overwritten in place.
        Overwrite { frame: usize },
        /// A header rewritten (new checksums), after an `xRead`.
        Rewrite { frame: usize, commit: bool },
        /// A call other than `xWrite` (`xRead`, `xSync`, ...).
        Other,
        /// The log starts over: its header, and frames from the first again.
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => any::<bool>().prop_map(|commit| Op::Frame { commit }),
            1 => (0..8usize).prop_map(|frame| Op::Overwrite { frame }),
            1 => (0..8usize, any::<bool>()).prop_map(|(frame, commit)| Op::Rewrite { frame, commit }),
            1 => Just(Op::Other),
            1 => Just(Op::Restart),
        ]
    }

    proptest! {
        /// Whatever SQLite writes, the file through this VFS is the file without it whenever nothing
        /// is held, and nothing is held after a commit frame, a lone commit header or any other call.
        #[test]
        fn the_file_is_the_same_whenever_nothing_is_held(ops in proptest::collection::vec(op(), 1..60)) {
            let (mut direct, mut shim, mut pending) = (Image::default(), Image::default(), Pending::default());
            let mut next = 0usize;
            let write = |offset: i64, data: &[u8], direct: &mut Image, shim: &mut Image, pending: &mut Pending| {
                direct.apply(offset, data);
                prop_assert_eq!(gathered(shim, pending, offset, data), ffi::SQLITE_OK);
                Ok(())
            };
            for op in ops {
                let must_be_out = match op {
                    Op::Frame { commit } => {
                        write(frame_offset(next), &header(commit, next as u8), &mut direct, &mut shim, &mut pending)?;
                        write(frame_offset(next) + 24, &[next as u8; PAGE], &mut direct, &mut shim, &mut pending)?;
                        next += 1;
                        commit
                    }
                    Op::Overwrite { frame } => {
                        write(frame_offset(frame) + 24, &[0xEE; PAGE], &mut direct, &mut shim, &mut pending)?;
                        false
                    }
                    Op::Rewrite { frame, commit } => {
                        pending.flush(&mut |offset, data| shim.apply(offset, data));
                        write(frame_offset(frame), &header(commit, 0xCC), &mut direct, &mut shim, &mut pending)?;
                        commit
                    }
                    Op::Other => {
                        pending.flush(&mut |offset, data| shim.apply(offset, data));
                        true
                    }
                    Op::Restart => {
                        write(0, &[next as u8; WAL_HEADER], &mut direct, &mut shim, &mut pending)?;
                        next = 0;
                        false
                    }
                };
                if must_be_out {
                    prop_assert!(pending.data.is_empty());
                }
                if pending.data.is_empty() {
                    let len = direct.bytes.len().max(shim.bytes.len());
                    direct.bytes.resize(len, 0);
                    shim.bytes.resize(len, 0);
                    prop_assert_eq!(&direct.bytes, &shim.bytes);
                }
            }
        }
    }

    /// A database at `path` opened through this VFS, in the writer's settings, with a small page
    /// cache so that big transactions spill frames before they commit (and overwrite them).
    fn writer(path: &std::path::Path) -> rusqlite::Connection {
        register().expect("the VFS registers");
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_CREATE;
        let conn = rusqlite::Connection::open_with_flags_and_vfs(path, flags, NAME).expect("the database opens");
        conn.execute_batch(
            "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = 8;
             CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);",
        )
        .expect("the schema");
        conn
    }

    /// The rows of the database at `path`, opened without this VFS, and SQLite's check of it.
    fn rows_and_check(path: &std::path::Path) -> (i64, String) {
        let conn = rusqlite::Connection::open(path).expect("the database opens without the VFS");
        let rows = conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0)).expect("a count");
        let check = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).expect("a check");
        (rows, check)
    }

    /// What a crash now would leave: the database and WAL files copied aside, opened (and so
    /// recovered from the WAL, whose frames SQLite checks one by one) without this VFS.
    fn after_a_crash(path: &std::path::Path) -> (i64, String) {
        let aside = tempfile::tempdir().expect("a directory");
        let copy = aside.path().join("copy.db");
        std::fs::copy(path, &copy).expect("the database file copies");
        std::fs::copy(path.with_extension("db-wal"), copy.with_extension("db-wal")).expect("the WAL copies");
        rows_and_check(&copy)
    }

    #[test]
    fn every_commit_is_in_the_wal_file_when_it_returns_in_one_write() {
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("wal.db");
        let mut conn = writer(&path);
        let insert = |conn: &rusqlite::Connection, k: i64| {
            conn.execute("INSERT INTO t (k, v) VALUES (?1, randomblob(300))", [k]).expect("an insert");
        };

        // A commit of several pages: one write.
        let wal = path.with_extension("db-wal");
        let (before, writes) = (std::fs::metadata(&wal).map_or(0, |m| m.len()), WRITES.with(Cell::get));
        let tx = conn.transaction().expect("a transaction");
        (0..20).for_each(|k| insert(&tx, k));
        tx.commit().expect("the commit");
        let frames = (std::fs::metadata(&wal).expect("a WAL").len() - before) / (2048 + 24) as u64;
        assert!(frames >= 4, "{frames} frames");
        assert_eq!(WRITES.with(Cell::get) - writes, 1, "{frames} frames in one write");
        assert_eq!(after_a_crash(&path), (20, "ok".to_owned()));

        // Small commits, one after another.
        (20..120).for_each(|k| insert(&conn, k));
        assert_eq!(after_a_crash(&path), (120, "ok".to_owned()));

        // A transaction far larger than the page cache: SQLite spills frames before the commit,
        // then overwrites some of them in place and rewrites their checksums.
        let tx = conn.transaction().expect("a transaction");
        (120..2120).for_each(|k| insert(&tx, k));
        tx.execute("UPDATE t SET v = randomblob(310) WHERE k BETWEEN 120 AND 140", []).expect("an update");
        tx.commit().expect("the commit");
        assert_eq!(after_a_crash(&path), (2120, "ok".to_owned()));

        // A spilled transaction rolled back, then a commit.
        let tx = conn.transaction().expect("a transaction");
        (3000..4000).for_each(|k| insert(&tx, k));
        tx.rollback().expect("the rollback");
        insert(&conn, 5000);
        assert_eq!(after_a_crash(&path), (2121, "ok".to_owned()));

        // The log starting over.
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())).expect("a checkpoint");
        (6000..6010).for_each(|k| insert(&conn, k));
        assert_eq!(after_a_crash(&path), (2131, "ok".to_owned()));
        drop(conn);
        assert_eq!(rows_and_check(&path), (2131, "ok".to_owned()));
    }
}
