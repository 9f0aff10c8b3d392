//! The running daemon's WAL under everything else that opens the journal: a second daemon (refused),
//! an external `sqlite3` session, `monitor status` and `monitor report`, then `kill -9`. Every
//! row flushed before the kill must survive, and the daemon must never write into a deleted WAL.

use std::{path::Path, process::Command, thread, time::Duration};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use rusqlite::types::Value;

use crate::{
    daemon::Monitor,
    durability::rows,
    env::{Pair, Place, TestCgroup, output_within, spawn},
};

/// `n` TCP connections from the test cgroup to `port` in the other namespace; returns when all
/// have closed on both sides.
fn connections(pair: &Pair, cg: &TestCgroup, port: u16, n: usize) {
    let server = format!("{}:{port}", pair.b_v4[0]);
    let mut srv = spawn(
        "tcp-server",
        &[server.clone(), "300".into(), n.to_string()],
        Place { netns: Some(&pair.b), ..Place::default() },
    );
    srv.line();
    let place = Place { netns: Some(&pair.a), cgroup: Some(cg), uid: None };
    assert_eq!(spawn("tcp-client", &[server, "1000".into(), n.to_string()], place).finish().len(), n);
    assert_eq!(srv.finish().len(), n);
}

fn closes(rows: &[Vec<Value>]) -> usize {
    rows.iter().filter(|r| r[1] == Value::Text("close".into())).count()
}

/// Targets of the daemon's descriptors that point at deleted journal files.
fn deleted_journal_fds(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.contains("journal.db") && t.ends_with("(deleted)"))
        .collect()
}

fn monitor(config: &Path, args: &[&str], journal: &Path) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_monitor"));
    cmd.arg("--config").arg(config).args(args).arg("--journal").arg(journal);
    output_within(&mut cmd, Duration::from_secs(30))
}

/// Kills the daemon when the test fails before it does: a daemon left running would keep the
/// root-test lock (inherited from `flock`) and everything else attached.
struct Reaper(Option<Pid>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

/// Waits past one flush (`flush_interval_secs = 1` in test configs) and the close grace.
fn wait_for_flush() {
    thread::sleep(Duration::from_millis(2500));
}

pub fn wal_survives_second_daemon_sqlite3_and_readers_then_kill9() {
    assert!(
        Command::new("sqlite3").arg("-version").output().is_ok_and(|o| o.status.success()),
        "the sqlite3 CLI is needed (cargo xtask setup installs it)"
    );
    let pair = Pair::private();
    let cg = TestCgroup::new();
    // Weekly exports on (the default formats): the daemon's export check runs at start and every minute.
    let mon = Monitor::start(&cg.path, "");
    let mut reaper = Reaper(Some(mon.pid()));
    let pid = mon.pid().as_raw();
    let dir = mon.dir().to_path_buf();
    let journal = dir.join("journal.db");
    let config = dir.join("monitor.toml");
    connections(&pair, &cg, 5231, 20);
    wait_for_flush();
    let first = closes(&rows(&journal));
    assert!(first >= 20, "the first 20 connections were flushed ({first} close records)");

    // (a) A second daemon on the same journal is refused before it touches the database.
    // A daemon started with config `config` on the same cgroup and journal, run to its end.
    let another = |config: &std::path::Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_monitor"));
        cmd.arg("--config")
            .arg(config)
            .args(["run", "--json", "--cgroup"])
            .arg(&cg.path)
            .arg("--journal")
            .arg(&journal);
        output_within(&mut cmd, Duration::from_secs(30))
    };
    let out = another(&config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "second daemon: {err}");
    assert!(err.contains("another monitor daemon"), "{err}");
    // … also with metrics on a port that is taken (here by the test, as the first daemon's would
    // be): told the journal is taken, not the port (it was exit 2, "cannot listen for metrics").
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let with_metrics = dir.join("metrics.toml");
    let base = std::fs::read_to_string(&config).unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(&with_metrics, format!("{base}\n[metrics]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n"))
        .unwrap();
    let out = another(&with_metrics);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "second daemon with metrics: {err}");
    assert!(err.contains("another monitor daemon"), "{err}");
    drop(taken);

    // (b) An external sqlite3 session opens and closes the journal.
    let out = Command::new("sqlite3").arg(&journal).arg("SELECT COUNT(*) FROM connections;").output().unwrap();
    assert!(out.status.success(), "sqlite3: {}", String::from_utf8_lossy(&out.stderr));
    let seen: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(seen >= first, "sqlite3 sees the flushed rows ({seen})");

    // (c) Readers: status and report.
    for args in [&["status"][..], &["status", "--json"], &["report", "--format", "json"]] {
        let out = monitor(&config, args, &journal);
        assert!(out.status.success(), "monitor {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // The daemon keeps writing into the live WAL.
    for port in 5232..5242 {
        connections(&pair, &cg, port, 20);
    }
    wait_for_flush();
    assert_eq!(deleted_journal_fds(pid), Vec::<String>::new(), "the daemon writes into deleted journal files");
    let before = rows(&journal);
    eprintln!("    {} records ({} close) flushed before SIGKILL", before.len(), closes(&before));
    assert!(closes(&before) >= first + 200, "the 200 later connections are visible to other processes");

    reaper.0 = None;
    let dir = mon.kill9();
    let after = rows(&dir.path().join("journal.db"));
    assert!(after.len() >= before.len(), "rows lost by the kill: {} before, {} after", before.len(), after.len());
    assert_eq!(&after[..before.len()], &before[..], "every flushed row survives kill -9 unchanged");
}
