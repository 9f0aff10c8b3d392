//! Journal crash test: a child process writes through the journal API and is SIGKILLed at a
//! random moment; everything it reported as flushed must be there, intact, and writing goes on.
//!
//! The child is this test binary again (`crash_child`, a no-op unless `CHILD_ENV` is set).
#![expect(clippy::print_stderr, reason = "test helpers say why they skip")]

mod support;

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use jiff::Timestamp;
use monitor::{
    enrich::{DbRef, Destination, Scope},
    identity::{App, AppSource},
    journal::{JournalConfig, JournalReader, JournalWriter, RunInfo},
    tracker::{
        FlowRecord,
        record::{Payload, Wire},
    },
};

/// Set in the child: the directory holding the journal and the side file.
const CHILD_ENV: &str = "MONITOR_JOURNAL_CRASH_CHILD";
/// Set in the child: first cookie to use (continues where the previous child stopped).
const FIRST_COOKIE_ENV: &str = "MONITOR_JOURNAL_CRASH_FIRST_COOKIE";
/// Records appended between two flushes (one flush every ~50 ms: ~20 ms of work, 30 ms of sleep).
const BATCH: u64 = 200;
/// Kill rounds.
const ROUNDS: u64 = 5;

fn journal(dir: &Path) -> PathBuf {
    dir.join("journal.db")
}

fn side_file(dir: &Path) -> PathBuf {
    dir.join("committed")
}

fn app() -> Arc<App> {
    Arc::new(App {
        name: "crash-writer".into(),
        exe: Some("/usr/bin/crash-writer".into()),
        cmdline: None,
        pid: 7,
        start_time: 1,
        uid: 0,
        user: None,
        unit: None,
        cgroup: None,
        container: None,
        source: AppSource::Kernel,
        android: None,
    })
}

fn dest() -> Destination {
    Destination {
        scope: Scope::Public,
        country: Some("US".into()),
        asn: Some(64_496),
        as_org: Some("Example".into()),
        country_db: Some(DbRef { database_type: "country ipvAll".into(), build_epoch: 1_780_272_000 }),
        asn_db: None,
        answers: Default::default(),
        consensus: None,
    }
}

/// The record of flow `cookie`: it sent `cookie` bytes and received `2 * cookie`.
fn record(cookie: u64, at: Timestamp) -> FlowRecord {
    let payload = Payload { tx_bytes: cookie, rx_bytes: 2 * cookie };
    let wire = Wire { tx_bytes: cookie + 40, tx_packets: 1, rx_bytes: 2 * cookie + 40, rx_packets: 1 };
    support::close_record(
        cookie,
        &support::Proc { tgid: 7, uid: 0, comm: "crash" },
        "192.0.2.1:443",
        (payload, wire),
        at,
    )
}

/// Child mode: write batches forever, appending the highest committed cookie to the side file
/// after each successful flush.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        return;
    };
    let first: u64 = std::env::var(FIRST_COOKIE_ENV).ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let config = JournalConfig { path: journal(&dir), ..JournalConfig::default() };
    let mut writer = JournalWriter::open(&config, RunInfo::current(None), &monitor::zone::Zone::get("UTC").unwrap())
        .expect("child: open");
    let mut side = fs::OpenOptions::new().create(true).append(true).open(side_file(&dir)).expect("child: side file");
    let (app, dest) = (app(), dest());
    let mut next = first;
    loop {
        for _ in 0..BATCH {
            writer.append(&record(next, Timestamp::now()), &app, Some(&dest));
            next += 1;
        }
        writer.flush().expect("child: flush");
        // One write(2) per line: a kill leaves whole lines (at worst the last one is missing).
        side.write_all(format!("{}\n", next - 1).as_bytes()).expect("child: side write");
        thread::sleep(Duration::from_millis(30));
    }
}

fn random_millis(min: u64, max: u64) -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::from(d.subsec_nanos()));
    min + nanos % (max - min)
}

/// Highest cookie the child reported as committed (0 if none).
fn committed(dir: &Path) -> u64 {
    fs::read_to_string(side_file(dir))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn journal_survives_sigkill_during_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut first_cookie = 1;
    for round in 0..ROUNDS {
        let before = committed(dir.path());
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env(FIRST_COOKIE_ENV, first_cookie.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn child");
        let started = Instant::now();
        while committed(dir.path()) == before {
            assert!(started.elapsed() < Duration::from_mins(1), "child never committed");
            if let Some(status) = child.try_wait().expect("wait") {
                panic!("child exited early: {status}");
            }
            thread::sleep(Duration::from_millis(5));
        }
        thread::sleep(Duration::from_millis(random_millis(10, 400)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");

        let reported = committed(dir.path());
        let reader = JournalReader::open(&journal(dir.path())).expect("reopen after kill");
        assert_eq!(reader.integrity_check().expect("check"), "ok", "round {round}");
        let conn = rusqlite::Connection::open(journal(dir.path())).expect("raw open");
        let (rows, max, sum_tx, sum_rx): (i64, i64, i64, i64) = conn
            .query_row("SELECT COUNT(*), MAX(cookie), SUM(payload_tx), SUM(payload_rx) FROM connections", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .expect("counts");
        let (rows, max) = (u64::try_from(rows).expect("count"), u64::try_from(max).expect("max"));
        // Whole batches only: every committed record, each once, with its own numbers.
        assert!(max >= reported, "round {round}: reported {reported} committed, journal ends at {max}");
        assert_eq!(rows, max, "round {round}: cookies 1..={max} each exactly once");
        assert_eq!(max % BATCH, 0, "round {round}: a flush is all or nothing");
        let expected_tx = i64::try_from(max * (max + 1) / 2).expect("sum");
        assert_eq!((sum_tx, sum_rx), (expected_tx, 2 * expected_tx), "round {round}: records intact");
        let intact: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM connections WHERE payload_rx != 2 * payload_tx OR payload_tx != cookie",
                [],
                |r| r.get(0),
            )
            .expect("intact");
        assert_eq!(intact, 0);
        // Residency rows were written in the same transactions: they add up to the records.
        let (res_tx, res_rx): (i64, i64) = conn
            .query_row("SELECT SUM(payload_tx), SUM(payload_rx) FROM residency", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("residency");
        assert_eq!((res_tx, res_rx), (sum_tx, sum_rx), "round {round}: residency matches connections");
        first_cookie = max + 1;
    }

    // Writing continues in this process too.
    let config = JournalConfig { path: journal(dir.path()), ..JournalConfig::default() };
    let mut writer = JournalWriter::open(&config, RunInfo::current(None), &monitor::zone::Zone::get("UTC").unwrap())
        .expect("open after crashes");
    writer.append(&record(first_cookie, Timestamp::now()), &app(), Some(&dest()));
    writer.flush().expect("flush after crashes");
    let reader = JournalReader::open(&journal(dir.path())).expect("reader");
    assert_eq!(reader.counts().expect("counts").connections, first_cookie);
    assert_eq!(reader.integrity_check().expect("check"), "ok");
}

/// Why a root-only test cannot run here, if it cannot.
fn root_gate() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some(
            "needs root to mount a tmpfs (run as root: `sudo -E cargo test -p monitor --test journal`)".into(),
        );
    }
    // Only this test's thread moves to the new mount namespace; the tmpfs dies with it.
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS) {
        return Some(format!("cannot create a mount namespace: {e}"));
    }
    let private = nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE;
    if let Err(e) = nix::mount::mount(None::<&str>, "/", None::<&str>, private, None::<&str>) {
        return Some(format!("cannot make mounts private: {e}"));
    }
    None
}

fn skip(test: &str, reason: &str) {
    assert!(
        std::env::var("MONITOR_REQUIRE_ROOT_TESTS").as_deref() != Ok("1"),
        "{test} must not be skipped (MONITOR_REQUIRE_ROOT_TESTS=1): {reason}"
    );
    eprintln!("skipping {test}: {reason}");
}

#[test]
fn full_tmpfs_keeps_buffered_rows_until_space_is_freed() {
    if let Some(reason) = root_gate() {
        skip("full_tmpfs_keeps_buffered_rows_until_space_is_freed", &reason);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("small");
    fs::create_dir(&mnt).expect("mkdir");
    // Room for the schema (its tables, indexes and rollup tables) and a first small flush.
    nix::mount::mount(Some("tmpfs"), &mnt, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=384k"))
        .expect("mount a 384 KiB tmpfs");
    let config = JournalConfig { path: mnt.join("journal.db"), ..JournalConfig::default() };
    let mut writer =
        JournalWriter::open(&config, RunInfo::current(None), &monitor::zone::Zone::get("UTC").unwrap()).expect("open");
    let (app, dest) = (app(), dest());
    let now = Timestamp::now();
    for cookie in 1..=10 {
        writer.append(&record(cookie, now), &app, Some(&dest));
    }
    writer.flush().expect("first flush fits");

    // ~1,000 records need far more than what is left of 384 KiB.
    for cookie in 11..=1000 {
        writer.append(&record(cookie, now), &app, Some(&dest));
    }
    let err = writer.flush().expect_err("flush must fail on a full file system");
    assert!(matches!(&err, monitor::journal::Error::Full { path } if *path == config.path), "{err:?}");
    assert_eq!(writer.buffered_records(), 990, "buffered rows are kept");
    let reader = JournalReader::open(&config.path).expect("reader on the full file system");
    assert_eq!(reader.counts().expect("counts").connections, 10, "earlier rows intact");
    assert_eq!(reader.integrity_check().expect("check"), "ok");

    nix::mount::mount(None::<&str>, &mnt, None::<&str>, nix::mount::MsFlags::MS_REMOUNT, Some("size=64m"))
        .expect("grow the tmpfs");
    let report = writer.flush().expect("retry after space was freed");
    assert_eq!(report.connections, 990);
    assert_eq!(reader.counts().expect("counts").connections, 1000, "nothing lost, nothing doubled");
    let conn = rusqlite::Connection::open(&config.path).expect("raw open");
    let sum: i64 = conn.query_row("SELECT SUM(payload_tx) FROM residency", [], |r| r.get(0)).expect("sum");
    assert_eq!(sum, 1000 * 1001 / 2);
    drop((reader, conn, writer));
    nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH).expect("unmount");
}

/// `report` and `status` on a file that is not a journal: exit 5, saying so, without advising to
/// move the file (it may be anything, e.g. /etc/passwd), and without changing it.
#[test]
fn readers_on_a_file_that_is_not_a_journal_say_so_and_leave_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("passwd");
    fs::write(&text, b"root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let foreign = dir.path().join("app.sqlite");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE notes (x); INSERT INTO notes VALUES (1);")
        .unwrap();
    for path in [&text, &foreign] {
        let before = fs::read(path).unwrap();
        for cmd in ["report", "status"] {
            let out = Command::new(env!("CARGO_BIN_EXE_monitor")).args([cmd, "--journal"]).arg(path).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(5), "{cmd} {}: {err}", path.display());
            assert!(err.contains("not a monitor journal"), "{err}");
            assert!(!err.contains("mv "), "no advice to move an arbitrary file: {err}");
        }
        assert_eq!(fs::read(path).unwrap(), before, "{} unchanged", path.display());
    }
}
