//! The journal's files as the daemon (often root) opens them: `<journal>.lock` and the database.
//!
//! Nothing here follows a symbolic link or changes a file before it is known to be ours: each file
//! is opened with `O_NOFOLLOW` and checked with `fstat` on the opened descriptor (a regular file,
//! owned by the effective uid, one link) before its mode is touched. A device node, a FIFO, a
//! (dangling) symlink or a file planted by another user is refused with [`Error::Unsafe`].
//!
//! The database file is opened outside SQLite only here, before SQLite opens it, and that
//! descriptor is closed before: closing any descriptor of a database file drops the POSIX locks
//! the process holds on it (SQLite's documented pitfall), which would let another process delete
//! the live WAL. The single-writer lock lives on the separate `.lock` file (`flock`, unaffected).

use std::{
    fs::{self, File, Metadata, OpenOptions, TryLockError},
    io::{self, Read as _},
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use log::warn;
use nix::{errno::Errno, fcntl::OFlag};

use super::Error;

/// Mode of the journal file, of the `-wal`/`-shm` files (SQLite copies it) and of the lock file.
pub(super) const FILE_MODE: u32 = 0o600;

/// What [`check_database`] found.
#[derive(Debug, Clone, Copy)]
pub(super) struct Checked {
    dev: u64,
    ino: u64,
    mode: u32,
    /// The file existed with content (an empty file is a new database to SQLite, and to us).
    pub existed: bool,
}

/// `<journal>.lock`.
pub(super) fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the single-writer lock: `flock` on `<journal>.lock` (created with mode 0600), held while
/// the returned file is open and released by the kernel when the process dies.
///
/// The lock file at the path may not be the one a running daemon holds: removed while it held it
/// (a "stale lock" deleted by hand, then created again by this call or by hand) or replaced by
/// another file: a process holding `<lock> (deleted)` open is that daemon, and the journal stays
/// its ([`Error::LockRemoved`]; it takes the lock file at the path at its next flush,
/// [`lock_at_path`]). Read from /proc at each start.
pub(super) fn lock(journal: &Path) -> Result<File, Error> {
    let path = lock_path(journal);
    let existed = fs::symlink_metadata(&path).is_ok();
    let (file, meta) = open_checked(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(Error::Locked { path: journal.to_path_buf(), lock: path }),
        Err(TryLockError::Error(source)) => return Err(Error::Open { path, source }),
    }
    // Also when a file was there: the daemon's own may have been replaced (moved over, or
    // removed and created again by hand).
    if let Some(pid) = holder_of_removed(&path) {
        // Ours, just created: the path is left free for that daemon to take back. Unlinked while
        // still locked, and only if it is still the file at the path (that daemon cannot have
        // taken it meanwhile).
        if !existed
            && lock_at_path(&path, &file)
            && let Err(e) = fs::remove_file(&path)
        {
            warn!("cannot remove the lock file {} this start created: {e}", path.display());
        }
        drop(file);
        return Err(Error::LockRemoved { path: journal.to_path_buf(), lock: path, pid });
    }
    if meta.mode() & 0o777 != FILE_MODE {
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE)).map_err(|source| Error::Open { path, source })?;
    }
    Ok(file)
}

/// The descriptors `/proc/<pid>/fd/N` of process `pid` (`self` for this one); none when they
/// cannot be read (the process gone, or no permission).
fn descriptors(pid: &str) -> impl Iterator<Item = PathBuf> {
    fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten().map(|fd| fd.path())
}

/// Another process holding the removed file that was at `lock` open (its descriptor's link reads
/// `<lock> (deleted)`), if any.
fn holder_of_removed(lock: &Path) -> Option<i32> {
    let dir = lock.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let real = match fs::canonicalize(dir) {
        Ok(real) => real,
        Err(e) => {
            warn!("cannot tell whether a daemon holds a removed lock file of {}: {e}", lock.display());
            return None;
        }
    };
    let mut removed = real.join(lock.file_name()?).into_os_string();
    removed.push(" (deleted)");
    let me = std::process::id();
    let all = match procfs::process::all_processes() {
        Ok(all) => all,
        Err(e) => {
            warn!("cannot tell whether a daemon holds a removed lock file of {}: {e}", lock.display());
            return None;
        }
    };
    all.flatten().filter(|p| u32::try_from(p.pid).is_ok_and(|pid| pid != me)).find_map(|p| {
        descriptors(&p.pid.to_string())
            .any(|fd| fs::read_link(fd).is_ok_and(|l| l.as_os_str() == removed))
            .then_some(p.pid)
    })
}

/// The process holding the single-writer lock of `journal` (the daemon writing it), from
/// /proc/locks: `None` when none holds it (or it cannot be told). Whatever the daemon's binary is
/// named, and never a process that merely reuses a dead daemon's pid.
///
/// Locks are matched by inode, then confirmed by a descriptor of the holder open on the lock file
/// (same device and inode): `/proc/locks` names the file system's own device, which is not the
/// `st_dev` of files on a btrfs subvolume.
pub fn writer_pid(journal: &Path) -> Option<i32> {
    // A reader may name the journal through a symbolic link: the lock lies beside the real file.
    let real = fs::canonicalize(journal).ok();
    let meta = fs::metadata(lock_path(real.as_deref().unwrap_or(journal))).ok()?;
    let holds = |pid: i32| {
        descriptors(&pid.to_string())
            .any(|fd| fs::metadata(fd).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino()))
    };
    procfs::locks()
        .ok()?
        .into_iter()
        .filter(|l| l.lock_type == procfs::LockType::FLock && l.inode == meta.ino())
        .filter_map(|l| l.pid)
        .find(|pid| holds(*pid))
}

/// Whether the daemon a journal recorded (`pid`, started at `started_ms`) still runs and holds a
/// `flock` lock: another process than this one, started within a minute of that time (not a
/// process that reuses its pid), holding an `flock` (the monitor takes no other; SQLite's are
/// POSIX locks).
pub(super) fn recorded_writer_runs(pid: i32, started_ms: i64) -> bool {
    if u32::try_from(pid).is_ok_and(|p| p == std::process::id()) || pid <= 0 {
        return false;
    }
    let Ok(stat) = procfs::process::Process::new(pid).and_then(|p| p.stat()) else { return false };
    // Its start in boot-time ticks, as a wall time (the clock the identity stage uses too).
    let tick_ns = 1_000_000_000 / procfs::ticks_per_second().max(1);
    let start_ms = crate::clock::Clock::now().wall(stat.starttime.saturating_mul(tick_ns)).as_millisecond();
    if (start_ms - started_ms).abs() > RECORDED_START_SLACK_MS {
        return false;
    }
    procfs::locks()
        .is_ok_and(|locks| locks.iter().any(|l| l.lock_type == procfs::LockType::FLock && l.pid == Some(pid)))
}

/// How far a process's start may be from the start a journal recorded for its daemon (the
/// daemon records it once its config is read and its databases opened).
const RECORDED_START_SLACK_MS: i64 = 60_000;

/// Whether `file`, a lock this process holds, is still the file at `lock` (one `lstat`); `true`
/// when that cannot be told.
pub(super) fn lock_at_path(lock: &Path, file: &File) -> bool {
    let Ok(held) = file.metadata() else { return true };
    match fs::symlink_metadata(lock) {
        Ok(meta) => meta.dev() == held.dev() && meta.ino() == held.ino(),
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// Refuses an existing `path` that is not a regular file of ours, without opening it (so that
/// nothing, not even the lock file, is created beside a wrong path such as `/dev/null`).
pub(super) fn precheck(path: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(path) {
        Ok(meta) => check_meta(path, &meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Open { path: path.to_path_buf(), source }),
    }
}

/// Opens (creating when missing, mode 0600) and checks the database file, reads its header, and
/// closes it again. Changes nothing on a file it refuses.
pub(super) fn check_database(path: &Path) -> Result<Checked, Error> {
    let (file, meta) = open_checked(path)?;
    let mut header = Vec::with_capacity(100);
    file.take(100).read_to_end(&mut header).map_err(|source| Error::Open { path: path.to_path_buf(), source })?;
    let checked = Checked { dev: meta.dev(), ino: meta.ino(), mode: meta.mode(), existed: !header.is_empty() };
    check_header(path, &header)?;
    for suffix in ["-wal", "-shm"] {
        check_sidecar(&sidecar(path, suffix))?;
    }
    Ok(checked)
}

impl Checked {
    /// The file's device and inode.
    pub(super) fn id(&self) -> FileId {
        FileId { dev: self.dev, ino: self.ino }
    }
}

/// Device and inode of the journal file a writer opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

/// What is at a writer's journal path now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AtPath {
    /// The file the writer opened (or nothing could be told: the write will say).
    Same,
    /// Nothing: the journal was removed (or renamed away).
    Removed,
    /// Another file.
    Replaced,
}

/// What is at `path` now, against the file `id` a writer opened (one `lstat`).
pub(super) fn at_path(path: &Path, id: FileId) -> AtPath {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.dev() == id.dev && meta.ino() == id.ino => AtPath::Same,
        Ok(_) => AtPath::Replaced,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => AtPath::Removed,
        Err(_) => AtPath::Same,
    }
}

/// The `-wal` and `-shm` files of `path` that this process holds open (a writer's own, before it
/// closes its connection).
pub(super) fn own_sidecars(path: &Path) -> Vec<PathBuf> {
    let held: Vec<(u64, u64)> =
        descriptors("self").filter_map(|fd| fs::metadata(fd).ok()).map(|m| (m.dev(), m.ino())).collect();
    ["-wal", "-shm"]
        .into_iter()
        .map(|suffix| sidecar(path, suffix))
        .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| held.contains(&(m.dev(), m.ino()))))
        .collect()
}

/// The `-wal` file of `path`, if one exists (a `-shm` left behind is rebuilt by SQLite; a
/// write-ahead log would be replayed into a new database there).
pub(super) fn wal_left(path: &Path) -> Option<PathBuf> {
    Some(sidecar(path, "-wal")).filter(|p| fs::symlink_metadata(p).is_ok())
}

/// After SQLite opened `path`: it is still the file [`check_database`] checked (no symlink, not
/// replaced in between).
pub(super) fn verify_same(path: &Path, checked: &Checked) -> Result<(), Error> {
    let meta = fs::symlink_metadata(path).map_err(|source| Error::Open { path: path.to_path_buf(), source })?;
    if meta.dev() != checked.dev || meta.ino() != checked.ino {
        return Err(unsafe_file(path, "it was replaced while being opened"));
    }
    Ok(())
}

/// Gives the checked journal and its existing `-wal`/`-shm` files mode 0600 (only called once the
/// file is known to be a journal of ours).
pub(super) fn fix_modes(path: &Path, checked: &Checked) -> Result<(), Error> {
    if checked.mode & 0o777 != FILE_MODE {
        warn!("journal file mode was {:o}, setting {FILE_MODE:o} path={}", checked.mode & 0o777, path.display());
        verify_same(path, checked)?;
        fs::set_permissions(path, fs::Permissions::from_mode(FILE_MODE))
            .map_err(|source| Error::Open { path: path.to_path_buf(), source })?;
    }
    for suffix in ["-wal", "-shm"] {
        let side = sidecar(path, suffix);
        if let Ok(meta) = fs::symlink_metadata(&side)
            && meta.file_type().is_file()
            && meta.mode() & 0o777 != FILE_MODE
        {
            fs::set_permissions(&side, fs::Permissions::from_mode(FILE_MODE))
                .map_err(|source| Error::Open { path: side, source })?;
        }
    }
    Ok(())
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// An existing `-wal` or `-shm` file must be a regular file of ours: SQLite opens it following
/// symlinks.
fn check_sidecar(path: &Path) -> Result<(), Error> {
    precheck(path)
}

/// Opens `path` read-write, creating it with mode 0600, without following a symlink or opening
/// a device node, FIFO or socket, and checks the opened file.
fn open_checked(path: &Path) -> Result<(File, Metadata), Error> {
    // Look first, so a device node or FIFO is never even opened (opening some has side effects).
    precheck(path)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(e) if e == Errno::ELOOP as i32 => unsafe_file(path, "it is a symbolic link"),
            _ => Error::Open { path: path.to_path_buf(), source },
        })?;
    // The descriptor decides: the path may have changed since it was looked at.
    let meta = file.metadata().map_err(|source| Error::Open { path: path.to_path_buf(), source })?;
    check_meta(path, &meta)?;
    Ok((file, meta))
}

fn check_meta(path: &Path, meta: &Metadata) -> Result<(), Error> {
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = crate::files::describe(kind);
        return Err(unsafe_file(path, &format!("it is {what}, not a regular file")));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(unsafe_file(
            path,
            &format!("it is owned by uid {}, not by uid {euid} running the monitor", meta.uid()),
        ));
    }
    if meta.nlink() > 1 {
        return Err(unsafe_file(path, &format!("it has {} hard links", meta.nlink())));
    }
    Ok(())
}

fn unsafe_file(path: &Path, reason: &str) -> Error {
    Error::Unsafe { path: path.to_path_buf(), reason: reason.to_string() }
}

/// Checks the 100-byte SQLite header of a non-empty file: a file that is not SQLite at all is not
/// a journal (never suggest moving it: it may be any file); a cut header is a damaged journal.
fn check_header(path: &Path, header: &[u8]) -> Result<(), Error> {
    const MAGIC: &[u8; 16] = b"SQLite format 3\0";
    if header.is_empty() {
        return Ok(());
    }
    if !header.starts_with(MAGIC) && !MAGIC.starts_with(header) {
        return Err(Error::NotJournal { path: path.to_path_buf(), reason: "no SQLite header".into() });
    }
    if header.len() < 100 {
        let reason = format!("truncated: {} bytes, shorter than the 100-byte header", header.len());
        return Err(Error::Corrupt { path: path.to_path_buf(), reason });
    }
    Ok(())
}
