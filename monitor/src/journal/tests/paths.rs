//! The journal path as root sees it: symlinks, device nodes, foreign and other users' files are
//! refused before anything is created or changed.

use std::{
    fs,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _, symlink},
    path::Path,
};

use super::{fixtures, run, tempdir};
use crate::{
    journal::{Error, JournalConfig, JournalReader, JournalWriter},
    tracker::record::RecordKind,
};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn open(path: &Path) -> Result<JournalWriter, Error> {
    let config = JournalConfig { path: path.to_path_buf(), ..JournalConfig::default() };
    JournalWriter::open(&config, run(), &super::utc())
}

/// Mode and content of a file (not following a symlink at `path` itself).
fn snapshot(path: &Path) -> (u32, Vec<u8>) {
    (fs::metadata(path).expect("stat").permissions().mode(), fs::read(path).expect("read"))
}

fn a_0644_file(path: &Path, content: &[u8]) {
    fs::write(path, content).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).expect("chmod");
}

fn assert_unsafe(err: &Error, needle: &str) {
    assert!(matches!(err, Error::Unsafe { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(needle), "{needle:?} in {text}");
    assert!(text.contains("nothing was changed"), "{text}");
}

#[test]
fn a_symlinked_journal_is_refused_and_its_target_unchanged() {
    let dir = tempdir();
    let target = dir.path().join("precious.conf");
    a_0644_file(&target, b"root:x:0:0\n");
    let link = dir.path().join("journal.db");
    symlink(&target, &link).expect("symlink");
    let err = open(&link).err().expect("a symlink must be refused");
    assert_unsafe(&err, "symbolic link");
    assert_eq!(snapshot(&target), (0o100_644, b"root:x:0:0\n".to_vec()), "target untouched");
    assert!(!dir.path().join("journal.db.lock").exists(), "nothing created beside a refused path");
    assert!(!dir.path().join("journal.db-wal").exists());
}

/// A journal in a directory reached through a symbolic link (`/var/lib/monitor` → `/data/…`)
/// opens: only the journal file itself must not be a link. SQLite's own check refused every link
/// in the path, leaving an empty journal file behind (found by an adversarial pass).
#[test]
fn a_journal_in_a_symlinked_directory_opens() {
    let dir = tempdir();
    let real = dir.path().join("real");
    fs::create_dir(&real).expect("dir");
    symlink(&real, dir.path().join("link")).expect("symlink");
    let path = dir.path().join("link").join("journal.db");
    let mut w = open(&path).expect("a journal in a linked directory");
    let mut flow = fixtures::Flow::new(1, "192.0.2.1:443", fixtures::at(1_794_787_200));
    w.append(&flow.record(RecordKind::Close, fixtures::at(1_794_787_200), 10, 20), &fixtures::app("a"), None);
    w.flush().expect("flush");
    drop(w);
    assert!(real.join("journal.db").exists());
    assert!(JournalReader::open(&path).is_ok() && JournalReader::open(&real.join("journal.db")).is_ok());
}

#[test]
fn a_dangling_symlink_is_refused_and_its_target_never_created() {
    let dir = tempdir();
    let private = dir.path().join("root-only");
    fs::create_dir(&private).expect("mkdir");
    let link = dir.path().join("journal.db");
    symlink(private.join("created-by-root"), &link).expect("symlink");
    let err = open(&link).err().expect("a dangling symlink must be refused");
    assert_unsafe(&err, "symbolic link");
    assert_eq!(fs::read_dir(&private).expect("ls").count(), 0, "nothing created through the link");
}

#[test]
fn a_symlinked_lock_file_is_refused_and_its_target_unchanged() {
    let dir = tempdir();
    let target = dir.path().join("precious.conf");
    a_0644_file(&target, b"keep me");
    symlink(&target, dir.path().join("journal.db.lock")).expect("symlink");
    let err = open(&dir.path().join("journal.db")).err().expect("a symlinked lock must be refused");
    assert_unsafe(&err, "journal.db.lock");
    assert_eq!(snapshot(&target), (0o100_644, b"keep me".to_vec()));
    assert!(!dir.path().join("journal.db").exists(), "refused before the database is created");
}

#[test]
fn device_nodes_and_fifos_are_refused_without_being_opened_or_chmoded() {
    let dir = tempdir();
    let fifo = dir.path().join("fifo.db");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    // Opening a FIFO for reading would block: returning at all shows it was not opened.
    let err = open(&fifo).err().expect("a FIFO must be refused");
    assert_unsafe(&err, "FIFO");
    assert_eq!(fs::symlink_metadata(&fifo).expect("stat").mode() & 0o7777, 0o644, "mode unchanged");
    assert!(!dir.path().join("fifo.db.lock").exists());

    if !is_root() {
        eprintln!("SKIPPED (not root): the character device case needs mknod");
        return;
    }
    // A copy of /dev/null (1, 3): what `--journal /dev/null` would name, without touching /dev.
    let null = dir.path().join("null");
    nix::sys::stat::mknod(
        &null,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .expect("mknod");
    fs::set_permissions(&null, fs::Permissions::from_mode(0o666)).expect("chmod (mknod applies the umask)");
    let err = open(&null).err().expect("a device node must be refused");
    assert_unsafe(&err, "character device");
    assert_eq!(fs::symlink_metadata(&null).expect("stat").mode() & 0o7777, 0o666, "mode unchanged");
    assert!(!dir.path().join("null.lock").exists(), "no lock file beside a device");
    // And /dev/null itself only gets looked at.
    let before = fs::symlink_metadata("/dev/null").expect("stat").mode();
    assert_unsafe(&open(Path::new("/dev/null")).err().expect("/dev/null refused"), "/dev/null");
    assert_eq!(fs::symlink_metadata("/dev/null").expect("stat").mode(), before);
    assert!(!Path::new("/dev/null.lock").exists());
}

#[test]
fn another_applications_sqlite_database_is_refused_unchanged() {
    let dir = tempdir();
    let path = dir.path().join("app.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).expect("create");
        conn.execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes VALUES (1, 'x');",
        )
        .expect("schema");
    }
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    let before = snapshot(&path);
    let err = open(&path).err().expect("a foreign database must be refused");
    assert!(matches!(err, Error::NotJournal { .. }), "{err:?}");
    assert!(err.to_string().contains("another application"), "{err}");
    assert!(!err.to_string().contains("mv "), "{err}");
    assert_eq!(snapshot(&path), before, "mode and content unchanged (no monitor tables added)");
    assert!(!dir.path().join("app.sqlite-wal").exists(), "not switched to WAL");

    // The same with a user_version set by that application.
    fs::remove_file(&path).expect("rm");
    {
        let conn = rusqlite::Connection::open(&path).expect("create");
        conn.execute_batch("CREATE TABLE t (x); PRAGMA user_version = 2;").expect("schema");
    }
    let before = snapshot(&path);
    assert!(matches!(open(&path), Err(Error::NotJournal { .. })));
    assert_eq!(snapshot(&path), before);
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_without_chmod_or_mv_advice() {
    let dir = tempdir();
    let path = dir.path().join("passwd");
    a_0644_file(&path, b"root:x:0:0:root:/root:/bin/bash\n");
    let before = snapshot(&path);
    let err = open(&path).err().expect("must be refused");
    assert!(matches!(err, Error::NotJournal { .. }), "{err:?}");
    assert!(!err.to_string().contains("mv "), "never advise moving an arbitrary file: {err}");
    assert_eq!(snapshot(&path), before, "mode and content unchanged");
}

#[test]
fn a_hard_linked_journal_is_refused() {
    let dir = tempdir();
    let path = dir.path().join("journal.db");
    let other = dir.path().join("elsewhere");
    a_0644_file(&other, b"");
    fs::hard_link(&other, &path).expect("link");
    assert_unsafe(&open(&path).err().expect("refused"), "hard links");
    assert_eq!(snapshot(&other), (0o100_644, Vec::new()));
}

#[test]
fn a_file_of_another_user_is_refused_unchanged() {
    if !is_root() {
        eprintln!("SKIPPED (not root): the other-user case needs chown");
        return;
    }
    let dir = tempdir();
    let other = nix::unistd::Uid::from_raw(4242);
    let path = dir.path().join("journal.db");
    a_0644_file(&path, b"");
    nix::unistd::chown(&path, Some(other), None).expect("chown");
    let err = open(&path).err().expect("another user's file must be refused");
    assert_unsafe(&err, "uid 4242");
    let meta = fs::metadata(&path).expect("stat");
    assert_eq!((meta.uid(), meta.mode() & 0o7777, meta.len()), (4242, 0o644, 0), "owner, mode, content unchanged");

    // Its lock file planted by that user: refused too.
    fs::remove_file(&path).expect("rm");
    let lock = dir.path().join("journal.db.lock");
    a_0644_file(&lock, b"");
    nix::unistd::chown(&lock, Some(other), None).expect("chown");
    assert_unsafe(&open(&path).err().expect("refused"), "journal.db.lock");
    assert_eq!(fs::metadata(&lock).expect("stat").mode() & 0o7777, 0o644);
    assert!(!path.exists());
}

#[test]
fn an_own_journal_with_loose_mode_gets_0600() {
    let dir = tempdir();
    let path = dir.path().join("journal.db");
    drop(open(&path).expect("create"));
    assert_eq!(fs::metadata(&path).expect("stat").mode() & 0o777, 0o600, "created 0600");
    assert_eq!(fs::metadata(dir.path().join("journal.db.lock")).expect("stat").mode() & 0o777, 0o600);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    drop(open(&path).expect("reopen"));
    assert_eq!(fs::metadata(&path).expect("stat").mode() & 0o777, 0o600, "tightened");
}

#[test]
fn readers_refuse_a_fifo_instead_of_blocking() {
    let dir = tempdir();
    let fifo = dir.path().join("journal.db");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let err = crate::journal::JournalReader::open(&fifo).err().expect("a FIFO is not a journal");
    assert!(matches!(err, Error::NotJournal { .. }), "{err:?}");
}
