//! Failures: unwritable directory, corrupt files, full disk, buffer overflow.

use std::fs;

use super::{
    fixtures::{self, Flow, at},
    int, raw, run, tempdir, writer_in,
};
use crate::{
    journal::{Error, JournalConfig, JournalReader, JournalWriter, TimeRange, files},
    tracker::record::RecordKind::Close,
};

const T0: i64 = 1_794_787_200;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn unwritable_directory_is_a_clear_error_naming_the_path() {
    let dir = tempdir();
    let blocker = dir.path().join("not-a-dir");
    fs::write(&blocker, b"x").expect("write");
    let config = JournalConfig { path: blocker.join("journal.db"), ..JournalConfig::default() };
    let err = JournalWriter::open(&config, run(), &super::utc()).err().expect("must fail");
    assert!(matches!(&err, Error::CreateDir { path, .. } if *path == blocker), "{err:?}");
    assert!(err.to_string().contains(&*blocker.to_string_lossy()), "{err}");

    if is_root() {
        // Root ignores directory permissions; the case above covers it.
        return;
    }
    let ro = dir.path().join("ro");
    fs::create_dir(&ro).expect("mkdir");
    fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o500)).expect("chmod");
    let config = JournalConfig { path: ro.join("journal.db"), ..JournalConfig::default() };
    let err = JournalWriter::open(&config, run(), &super::utc()).err().expect("must fail");
    assert!(matches!(&err, Error::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("journal.db"), "{err}");
}

/// A copy of a journal made without its `-wal` file, where a running daemon keeps its latest
/// writes (its tables too, until a checkpoint): said so, not "holds nothing yet: a daemon that
/// stopped before it created its tables" (an adversarial pass).
#[test]
fn a_copy_without_its_write_ahead_log_is_said_to_lack_it() {
    let dir = tempdir();
    let path = dir.path().join("copy.db");
    let conn = rusqlite::Connection::open(&path).expect("open");
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).expect("wal");
    assert_eq!(mode, "wal");
    // A header on disk (a journal's first page: its tables are in the log not copied along).
    conn.execute_batch("CREATE TABLE t (x); DROP TABLE t;").expect("write");
    drop(conn);
    let err = JournalReader::open(&path).err().expect("nothing to read");
    assert!(matches!(&err, Error::WalMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("copy.db-wal"), "{err}");
}

/// An empty file at the journal's path (a daemon that stopped on a full disk before it created
/// its tables) is said to be one, not "not a monitor journal: give another path" (the next `run`
/// takes it: found by an adversarial pass).
#[test]
fn an_empty_journal_file_is_said_to_hold_nothing_yet_and_becomes_a_journal() {
    let dir = tempdir();
    let path = dir.path().join("journal.db");
    fs::write(&path, b"").expect("write");
    let err = JournalReader::open(&path).err().expect("nothing to read");
    assert!(matches!(&err, Error::Empty { .. }), "{err:?}");
    assert!(err.to_string().contains("holds nothing yet") && !err.to_string().contains("another path"), "{err}");
    let config = JournalConfig { path: path.clone(), ..JournalConfig::default() };
    drop(JournalWriter::open(&config, run(), &super::utc()).expect("a writer makes it a journal"));
    assert!(JournalReader::open(&path).is_ok());
}

#[test]
fn corrupt_or_truncated_file_is_a_clear_error_and_left_in_place() {
    let dir = tempdir();
    let path = dir.path().join("journal.db");
    let config = JournalConfig { path: path.clone(), ..JournalConfig::default() };

    let garbage: Vec<u8> = (0..8192u32).map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[2]).collect();
    fs::write(&path, &garbage).expect("write");
    let err = JournalWriter::open(&config, run(), &super::utc()).err().expect("random bytes must fail");
    // Not SQLite at all: could be any file (`--journal /etc/passwd`): never advise moving it.
    assert!(matches!(err, Error::NotJournal { .. }), "{err:?}");
    assert!(!err.to_string().contains("mv "), "{err}");
    assert_eq!(fs::read(&path).expect("read"), garbage, "the file is never replaced");
    assert!(matches!(JournalReader::open(&path), Err(Error::NotJournal { .. })));

    // A real journal cut inside its header.
    fs::remove_file(&path).expect("rm");
    drop(JournalWriter::open(&config, run(), &super::utc()).expect("create"));
    let header = fs::read(&path).expect("read")[..50].to_vec();
    fs::write(&path, &header).expect("truncate");
    let err = JournalWriter::open(&config, run(), &super::utc()).err().expect("truncated header must fail");
    assert!(matches!(&err, Error::Corrupt { reason, .. } if reason.contains("truncated")), "{err:?}");
    assert!(err.to_string().contains("move it away"), "a damaged journal gets the advice: {err}");

    // A real journal with pages missing at the end.
    fs::remove_file(&path).expect("rm");
    {
        let mut w = JournalWriter::open(&config, run(), &super::utc()).expect("create");
        let app = fixtures::app("browser");
        let dest = fixtures::public(Some("US"), Some(1), Some("org"));
        for cookie in 0..2000 {
            let mut f = Flow::new(cookie, "192.0.2.1:443", at(T0));
            w.append(&f.record(Close, at(T0 + i64::try_from(cookie).expect("small")), 10, 10), &app, Some(&dest));
        }
        w.flush().expect("flush");
    }
    let len = fs::metadata(&path).expect("stat").len();
    assert!(len > 16 * 4096, "fixture must span many pages, has {len} bytes");
    fs::OpenOptions::new().write(true).open(&path).expect("open").set_len(len / 2).expect("truncate");
    let err = JournalWriter::open(&config, run(), &super::utc()).err().expect("truncated file must fail");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
}

/// Damage SQLite's page checks do not notice (bytes overwritten inside a page): a text that is
/// not UTF-8 where the journal writes names. A read that meets it says the journal is corrupt
/// (with the advice), not that a conversion failed (an adversarial pass: "Conversion error from
/// type Text at index: 7, invalid utf-8 sequence").
#[test]
fn a_damaged_value_read_back_is_a_corrupt_journal() {
    let dir = tempdir();
    let path = dir.path().join("journal.db");
    let config = JournalConfig { path: path.clone(), ..JournalConfig::default() };
    {
        let mut w = JournalWriter::open(&config, run(), &super::utc()).expect("create");
        let mut f = Flow::new(1, "192.0.2.1:443", at(T0));
        let dest = fixtures::public(Some("US"), Some(1), Some("org"));
        w.append(&f.record(Close, at(T0 + 1), 10, 10), &fixtures::app("browser"), Some(&dest));
        w.flush().expect("flush");
    }
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute("UPDATE apps SET name = CAST(x'61ff62' AS TEXT)", []).expect("damage a name");
    drop(conn);
    let reader = JournalReader::open(&path).expect("reader");
    let err = reader.records(TimeRange { since: at(T0), until: at(T0 + 60) }, None).expect_err("damaged");
    assert!(matches!(&err, Error::Corrupt { reason, .. } if reason.contains("utf-8")), "{err:?}");
    assert!(err.to_string().contains("is corrupt") && err.to_string().contains("move it away"), "{err}");
    // A stored name this build does not know, in a journal of its own schema, is damage too (a
    // re-check: a bare conversion error); a NULL where a value was expected is not.
    let unknown = "galactic".parse::<crate::journal::names::StoredScope>().expect_err("unknown");
    let conversion = rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(unknown));
    assert!(matches!(Error::read(&path, conversion), Error::Corrupt { .. }));
    let null = rusqlite::Error::InvalidColumnType(0, "x".into(), rusqlite::types::Type::Null);
    assert!(matches!(Error::read(&path, null), Error::Read { .. }));
}

#[test]
fn full_disk_keeps_buffered_rows_and_retry_writes_them() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let app = fixtures::app("browser");
    let dest = fixtures::public(Some("US"), Some(396_986), Some("ByteDance Inc."));
    let mut first = Flow::new(1, "192.0.2.1:443", at(T0));
    w.append(&first.record(Close, at(T0 + 1), 1000, 100), &app, Some(&dest));
    w.flush().expect("first flush");

    // Simulate SQLITE_FULL: the file may not grow past its current size.
    let pages = int(&w.conn, "PRAGMA page_count");
    w.conn.pragma_update(None, "max_page_count", pages).expect("limit");
    // A destination and an owner new to the journal: the failed flush stored them (schema 14),
    // and its rollback took them away again.
    let (other_app, other) = (fixtures::app("player"), fixtures::public(Some("DE"), Some(3320), Some("DTAG")));
    for cookie in 2..600u64 {
        let mut f = Flow::new(cookie, "192.0.2.2:443", at(T0 + 60));
        w.append(&f.record(Close, at(T0 + 61), 7, 3), &other_app, Some(&other));
    }
    let err = w.flush().expect_err("flush must fail");
    assert!(matches!(&err, Error::Full { path } if path == w.path()), "{err:?}");
    assert!(err.to_string().contains("full"), "{err}");
    assert_eq!(w.buffered_records(), 598, "buffered rows are kept");
    let conn = raw(w.path());
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connections"), 1, "earlier rows intact, nothing partial");
    assert_eq!(int(&conn, "SELECT SUM(payload_tx) FROM residency"), 1000);
    assert_eq!(w.integrity_check().expect("check"), "ok", "a failed flush leaves a sound file");

    // Space freed: the retry writes everything, nothing lost, nothing doubled.
    w.conn.pragma_update(None, "max_page_count", 1_000_000).expect("raise limit");
    let report = w.flush().expect("retry");
    assert_eq!((report.connections, report.residency_rows), (598, 1));
    assert_eq!(w.buffered_records(), 0);
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connections"), 599);
    assert_eq!(int(&conn, "SELECT SUM(payload_tx) FROM residency"), 1000 + 598 * 7);
    assert_eq!(int(&conn, "SELECT connections FROM residency WHERE interval_start = 1794787260"), 598);
    assert_eq!(
        int(&conn, "SELECT COUNT(*) FROM connections WHERE country = 'DE' AND asn = 3320 AND owner_comm IS NOT NULL"),
        598,
        "the retry stores the shared parts again"
    );
    assert_eq!(w.integrity_check().expect("check"), "ok");
}

#[test]
fn buffer_overflow_drops_the_oldest_and_records_the_loss() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let app = fixtures::app("browser");
    let dest = fixtures::public(Some("US"), Some(13335), Some("Cloudflare, Inc."));
    // Ten flows in ten consecutive minutes: ten records, ten buckets.
    for i in 0..10i64 {
        let mut f = Flow::new(u64::try_from(i).expect("small"), "192.0.2.1:443", at(T0 + 60 * i));
        w.append(&f.record(Close, at(T0 + 60 * i), 100, 1), &app, Some(&dest));
    }
    w.buffer.enforce_limits(4, 3);
    let report = w.flush().expect("flush");
    assert_eq!((report.loss.records, report.loss.buckets, report.loss.payload_bytes), (6, 7, 7 * 101));
    assert_eq!((report.connections, report.residency_rows), (4, 3));
    let reader = JournalReader::open(w.path()).expect("reader");
    let loss = reader.losses(TimeRange { since: at(T0), until: at(T0 + 3600) }).expect("losses");
    assert_eq!((loss.records, loss.buckets, loss.payload_bytes), (6, 7, 707));
    let conn = raw(w.path());
    assert_eq!(int(&conn, "SELECT MIN(interval_start) FROM residency"), T0 + 7 * 60, "the newest buckets are kept");
    assert_eq!(int(&conn, "SELECT MIN(cookie) FROM connections"), 6, "the newest records are kept");
}

#[test]
fn reader_sees_new_rows_while_the_writer_writes() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let app = fixtures::app("browser");
    let dest = fixtures::public(Some("NL"), Some(1136), Some("KPN B.V."));
    let mut f = Flow::new(1, "192.0.2.1:443", at(T0));
    w.append(&f.record(Close, at(T0 + 1), 10, 0), &app, Some(&dest));
    w.flush().expect("flush");
    let reader = JournalReader::open(w.path()).expect("reader");
    let range = TimeRange { since: at(T0), until: at(T0 + 3600) };
    assert_eq!(reader.residency(range, None).expect("rows")[0].payload_tx, 10);
    let mut g = Flow::new(2, "192.0.2.1:443", at(T0));
    w.append(&g.record(Close, at(T0 + 2), 5, 0), &app, Some(&dest));
    w.flush().expect("flush while a reader is open");
    assert_eq!(reader.residency(range, None).expect("rows")[0].payload_tx, 15);
}

/// A lock file removed by hand while a daemon holds it (a "stale lock"): a second writer is
/// still refused, naming the daemon, and leaves no lock file; the first writer takes its lock
/// file back at its next flush. Two daemons wrote one journal, every flow counted twice (found by
/// an adversarial pass).
/// Another process holding `lock` as a daemon does (`flock`, its child `cat` without the lock:
/// `-o`), once it holds it; killed on drop (`cat` ends at the end of its stdin).
struct OtherDaemon(std::process::Child);

impl OtherDaemon {
    fn hold(journal: &std::path::Path) -> Self {
        use std::process::{Command, Stdio};
        let lock = files::lock_path(journal);
        let child = Command::new("flock").args(["-x", "-o"]).arg(&lock).arg("cat").stdin(Stdio::piped()).spawn();
        let other = Self(child.expect("flock"));
        let started = std::time::Instant::now();
        // Held, and its child is `cat` already (it closed its copy of the descriptor before exec).
        let pid = other.0.id();
        let cat_runs = || {
            let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            children
                .split_whitespace()
                .any(|c| fs::read_to_string(format!("/proc/{c}/comm")).is_ok_and(|n| n == "cat\n"))
        };
        while files::writer_pid(journal).is_none() || !cat_runs() {
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "flock did not take {}", lock.display());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        other
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.0.id()).expect("pid")
    }
}

impl Drop for OtherDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_removed_lock_file_does_not_let_a_second_writer_in() {
    let dir = tempdir();
    let config = JournalConfig { path: dir.path().join("journal.db"), ..JournalConfig::default() };
    drop(JournalWriter::open(&config, run(), &super::utc()).expect("journal"));
    let lock = files::lock_path(&config.path);
    // Another process holds the lock (this process cannot stand for the other daemon).
    let daemon = OtherDaemon::hold(&config.path);
    assert_eq!(files::writer_pid(&config.path), Some(daemon.pid()));
    // Named through a symbolic link (`status --journal link.db`: it said "not running").
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&config.path, &link).expect("symlink");
    assert_eq!(files::writer_pid(&link), Some(daemon.pid()), "through a link to the journal");
    fs::remove_file(&lock).expect("rm lock");
    let err = JournalWriter::open(&config, run(), &super::utc()).err().expect("a second writer must be refused");
    assert!(matches!(&err, Error::LockRemoved { pid, .. } if *pid == daemon.pid()), "{err:?}");
    drop(daemon);
    assert!(err.to_string().contains("was removed while it ran"), "{err}");
    assert!(!lock.exists(), "the refused writer leaves no lock file");
    // Replaced rather than removed (another file moved over it, or `rm` then `touch`): the same.
    fs::write(dir.path().join("other"), b"").expect("other");
    let daemon = OtherDaemon::hold(&config.path);
    fs::rename(dir.path().join("other"), &lock).expect("mv over the lock");
    let err = JournalWriter::open(&config, run(), &super::utc()).err().expect("refused while the lock is replaced");
    assert!(matches!(&err, Error::LockRemoved { pid, .. } if *pid == daemon.pid()), "{err:?}");
    assert!(lock.exists(), "a file the writer did not create is left in place");
    drop(daemon);
    fs::remove_file(&lock).expect("rm");

    // Renamed away (its holder's descriptor does not read "(deleted)"), or reached through
    // another path: the daemon the journal recorded, still running and holding a lock, refuses
    // the start all the same.
    let daemon = OtherDaemon::hold(&config.path);
    fs::rename(&lock, dir.path().join("renamed.lock")).expect("mv lock away");
    let conn = rusqlite::Connection::open(&config.path).expect("raw");
    let now = jiff::Timestamp::now().as_millisecond();
    conn.execute("UPDATE daemon_state SET pid = ?1, started_ms = ?2", rusqlite::params![daemon.pid(), now])
        .expect("daemon_state");
    drop(conn);
    let err = JournalWriter::open(&config, run(), &super::utc()).err().expect("refused: the recorded daemon runs");
    assert!(matches!(&err, Error::LockRemoved { pid, .. } if *pid == daemon.pid()), "{err:?}");
    drop(daemon);
    fs::remove_file(dir.path().join("renamed.lock")).expect("rm");
    let _ = fs::remove_file(&lock);

    // A writer whose lock file is removed takes it back at its next flush.
    let mut w = JournalWriter::open(&config, run(), &super::utc()).expect("writer");
    fs::remove_file(&lock).expect("rm lock");
    assert_eq!(files::writer_pid(&config.path), None);
    let mut flow = Flow::new(1, "192.0.2.1:443", at(T0));
    w.append(&flow.record(Close, at(T0), 10, 20), &fixtures::app("a"), None);
    w.flush().expect("flush");
    assert_eq!(files::writer_pid(&config.path), i32::try_from(std::process::id()).ok());
    let err = JournalWriter::open(&config, run(), &super::utc()).err().expect("refused again");
    assert!(matches!(&err, Error::Locked { .. }), "{err:?}");

    // Its lock file renamed away and another process holding the one at the path (a daemon that
    // started meanwhile): it writes nothing and keeps its records until it holds the lock again.
    fs::rename(&lock, dir.path().join("renamed.lock")).expect("mv lock away");
    let other = OtherDaemon::hold(&config.path);
    let mut g = Flow::new(2, "192.0.2.1:443", at(T0));
    w.append(&g.record(Close, at(T0 + 1), 5, 6), &fixtures::app("a"), None);
    let err = w.flush().expect_err("no write while another process holds the lock");
    assert!(matches!(&err, Error::LockLost { .. }), "{err:?}");
    assert_eq!(int(&raw(&config.path), "SELECT COUNT(*) FROM connections"), 1, "nothing written");
    drop(other);
    // `flock`'s child holds a copy of the locked descriptor until it closes it (under load it may
    // not have run yet): the flush takes the lock once it has.
    let started = std::time::Instant::now();
    loop {
        match w.flush() {
            Ok(_) => break,
            Err(Error::LockLost { .. }) if started.elapsed() < std::time::Duration::from_secs(10) => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("the lock taken again: {e:?}"),
        }
    }
    assert_eq!(int(&raw(&config.path), "SELECT COUNT(*) FROM connections"), 2, "the kept record written");
}

#[test]
fn a_second_writer_on_the_same_journal_is_refused_and_readers_are_not() {
    let dir = tempdir();
    let config = JournalConfig { path: dir.path().join("journal.db"), ..JournalConfig::default() };
    let mut first = JournalWriter::open(&config, run(), &super::utc()).expect("first writer");
    let err = JournalWriter::open(&config, run(), &super::utc()).err().expect("a second writer must be refused");
    assert!(matches!(&err, Error::Locked { path, .. } if *path == config.path), "{err:?}");
    assert!(err.to_string().contains("another monitor daemon"), "{err}");
    // The first writer keeps working, and readers need no lock.
    let mut flow = Flow::new(1, "192.0.2.1:443", at(T0));
    first.append(&flow.record(Close, at(T0), 10, 20), &fixtures::app("a"), None);
    first.flush().expect("first writer flushes");
    let reader = JournalReader::open(&config.path).expect("reader while a writer runs");
    drop(reader);
    assert_eq!(int(&raw(&config.path), "SELECT COUNT(*) FROM connections"), 1);
    // Released with the writer (and by the kernel when a daemon dies). A child another test
    // forks between its fork and its exec holds a duplicate of every descriptor, the lock's too
    // (closed at its exec): a moment's wait covers that.
    drop(first);
    let again = (0..100).find_map(|_| match JournalWriter::open(&config, run(), &super::utc()) {
        Err(Error::Locked { .. }) => {
            std::thread::sleep(std::time::Duration::from_millis(20));
            None
        }
        other => Some(other),
    });
    drop(again.expect("the lock is free within 2 s").expect("writer after the first is gone"));
}

/// A start that binds a port before it opens the journal (metrics) asks first whether another
/// daemon writes it (a second daemon was refused on the first one's port, exit 2, instead of
/// being told the journal is taken): no for a journal never written, creating nothing; yes
/// while a writer lives; no again once it is gone.
#[test]
fn a_journal_another_writer_holds_is_told_before_it_is_opened() {
    let dir = tempdir();
    let path = dir.path().join("journal.db");
    JournalWriter::ensure_not_locked(&path).expect("no journal yet");
    assert!(!dir.path().join("journal.db.lock").exists(), "nothing created");
    let config = JournalConfig { path: path.clone(), ..JournalConfig::default() };
    let w = JournalWriter::open(&config, run(), &super::utc()).expect("writer");
    let err = JournalWriter::ensure_not_locked(&path).expect_err("held");
    assert!(matches!(&err, Error::Locked { .. }), "{err:?}");
    drop(w);
    JournalWriter::ensure_not_locked(&path).expect("released");
}
