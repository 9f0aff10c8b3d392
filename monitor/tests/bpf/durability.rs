//! The journal under the real daemon: SIGKILL during heavy writing, a full disk, bad inputs.

use std::{
    net::SocketAddr,
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use nix::sys::signal::{Signal, kill};
use rusqlite::{Connection, OpenFlags, types::Value};

use crate::{
    daemon::Monitor,
    env::{Helper, Pair, Place, TestCgroup, spawn},
};

fn s(v: impl ToString) -> String {
    v.to_string()
}

/// Every `connections` row (read from another process than the daemon) after an integrity check.
pub(crate) fn rows(journal: &Path) -> Vec<Vec<Value>> {
    let db = Connection::open_with_flags(journal, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok", "journal integrity");
    let mut stmt = db.prepare("SELECT * FROM connections ORDER BY id").unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect::<Result<Vec<_>, _>>())
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Runs batches of 20 connections from the cgroup until `stop` is set.
fn churn(pair: &Pair, cg: &TestCgroup, stop: &AtomicBool) -> usize {
    let server = format!("{}:5207", pair.b_v4[0]);
    let mut done = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut srv =
            spawn("tcp-server", &[server.clone(), s(512), s(20)], Place { netns: Some(&pair.b), ..Place::default() });
        srv.line();
        let place = Place { netns: Some(&pair.a), cgroup: Some(cg), uid: None };
        let clients: Vec<_> = (0..2).map(|_| spawn("tcp-client", &[server.clone(), s(2048), s(10)], place)).collect();
        for c in clients {
            done += c.finish().len();
        }
        srv.finish();
    }
    done
}

pub fn kill9_during_heavy_writing_loses_nothing_flushed() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let mon = Monitor::start(&cg.path, "");
    let stop = Arc::new(AtomicBool::new(false));
    let made = thread::scope(|scope| {
        let worker = scope.spawn(|| churn(&pair, &cg, &stop));
        thread::sleep(Duration::from_millis(3500));
        let dir = mon.kill9();
        stop.store(true, Ordering::Relaxed);
        (worker.join().unwrap(), dir)
    });
    let (connections, dir) = made;
    let journal = dir.path().join("journal.db");
    let before = rows(&journal);
    eprintln!("    {connections} connections made, {} records flushed before SIGKILL", before.len());
    assert!(before.len() >= 20, "at least the first flushes reached the journal");

    // The daemon starts again on the same journal; nothing flushed earlier changes.
    let mon = Monitor::start_in(&cg.path, dir, "");
    let mut srv = spawn(
        "tcp-server",
        &[format!("{}:5208", pair.b_v4[0]), s(100), s(5)],
        Place { netns: Some(&pair.b), ..Place::default() },
    );
    srv.line();
    let c = spawn(
        "tcp-client",
        &[format!("{}:5208", pair.b_v4[0]), s(100), s(5)],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: None },
    );
    c.finish();
    srv.finish();
    let out = mon.stop();
    let after = rows(&out.dir.path().join("journal.db"));
    assert_eq!(&after[..before.len()], &before[..], "rows flushed before the kill are intact");
    assert!(after.len() >= before.len() + 5, "the restarted daemon keeps writing");
}

/// Peers of an unconnected UDP socket that went quiet: their last bytes wait in the kernel's
/// peer slots (a slot is reported at a packet once its interval is due). The daemon reads the
/// slots of peers idle for an update interval, so a SIGKILL a few intervals later loses none of
/// their bytes; before, nothing of such a peer reached the journal until its socket was
/// released or the daemon stopped cleanly.
pub fn quiet_udp_peers_are_journaled_before_a_kill() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let (dests, echo) = udp_echoes(&pair, 3, 5311, 20);
    let mon = Monitor::start(&cg.path, "[probe]\nupdate_interval_secs = 1\n");
    let mut args = vec![s(1000), s(20)];
    args.extend(dests.iter().map(s));
    let client = spawn("udp-unconnected-hold", &args, Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: None });
    let Killed { line, _dir, db, said } = quiet_then_killed(mon, client, echo);
    let port = line["local_port"].as_u64().unwrap();
    for d in &dests {
        let (tx, rx) = journaled_payload(&db, port, *d);
        let truth = &line["peers"][d.to_string()];
        assert_eq!(
            (tx, rx),
            (truth["tx"].as_i64().unwrap(), truth["rx"].as_i64().unwrap()),
            "journaled bytes of the quiet peer {d} before the kill; {said}"
        );
    }
}

/// A connected UDP socket busy only within its first update interval, then idle: none of its
/// packets comes once an update is due, and where snapshots are read by descriptor (the kernel
/// refuses the counter iterator, as on the CI kernel) they find only the sockets the daemon
/// knows. The packet path announces such a socket at its first packets, so a SIGKILL a few
/// intervals later loses none of its bytes (an adversarial pass: nothing of it reached the
/// journal before its close, and a daemon killed before that lost it all).
pub fn quiet_connected_udp_is_journaled_before_a_kill() {
    let (pair, cg, dest, echo, mon) = echo_and_monitor(5315, 20);
    let place = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: None };
    let client = spawn("udp-connected-hold", &[s(dest), s(1000), s(20)], place);
    let Killed { line, _dir, db, said } = quiet_then_killed(mon, client, echo);
    let local: SocketAddr = line["local"].as_str().unwrap().parse().unwrap();
    let (tx, rx) = journaled_payload(&db, u64::from(local.port()), dest);
    assert_eq!((tx, rx), (20_000, 20_000), "journaled bytes of the quiet connected socket before the kill; {said}");
}

/// A connected UDP socket its creator handed on to a child (fork) before exiting, busy in the
/// child within an update interval, then idle. Where snapshots are read by descriptor (the CI
/// kernel), the periodic refresh looks for it among its creator's descriptors first, then once in
/// every process's, and reads it where it found it, so a SIGKILL a few intervals later loses none
/// of its bytes (an adversarial pass: nothing the child sent reached the journal, which a
/// `kill -9` lost without a mark).
pub fn handed_on_idle_udp_is_journaled_before_a_kill() {
    let (pair, cg, dest, echo, mon) = echo_and_monitor(5322, 15);
    let place = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: None };
    let mut client = spawn("udp-handed-on", &[s(dest), s(700), s(5), s(10)], place);
    let handed = client.line();
    // The creator has exited: only the child holds the socket now.
    client.send("go");
    let Killed { line: done, _dir, db, said } = quiet_then_killed(mon, client, echo);
    assert_eq!(done["tx_after_go"], 7_000, "{done}");
    let local: SocketAddr = handed["local"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        journaled_payload(&db, u64::from(local.port()), dest),
        (10_500, 10_500),
        "journaled bytes of the handed-on socket before the kill; {said}"
    );
}

/// A connected UDP socket busy within its first update interval, then idle, that only a thread's
/// own descriptor table holds: one that took a table of its own (`unshare(CLONE_FILES)`), or the
/// last thread of a process whose main thread exited (`pthread_exit`). Where snapshots are read
/// by descriptor, the refresh reads those tables too, so a SIGKILL a few intervals later loses
/// none of its bytes (an adversarial pass: both journaled 0 bytes, a clean stop too).
pub fn idle_udp_in_a_thread_s_own_table_is_journaled_before_a_kill() {
    for (mode, port) in [("unshare", 5323), ("leader-exit", 5324)] {
        let (pair, cg, dest, echo, mon) = echo_and_monitor(port, 10);
        let place = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: None };
        let client = spawn("udp-thread-table", &[s(mode), s(dest), s(700), s(10)], place);
        let Killed { line, _dir, db, said } = quiet_then_killed(mon, client, echo);
        assert_eq!(line["tx"], 7_000, "{line}");
        let local: SocketAddr = line["local"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            journaled_payload(&db, u64::from(local.port()), dest),
            (7_000, 7_000),
            "{mode}: journaled bytes of the thread's socket before the kill; {said}"
        );
        drop(pair);
    }
}

/// A TCP listener whose handshakes all came within its first update interval, idle since: its
/// packets send an event only once an update is due, so nothing announced it, and where
/// snapshots are read by descriptor they find only the sockets the daemon knows. `listen(2)`
/// announces it, so a SIGKILL a few intervals later loses none of its handshake bytes: the
/// server's journaled wire bytes (the listener's and its connections') equal its interface's.
/// An adversarial pass: the listener's record came only at its close or a clean stop.
pub fn idle_tcp_listener_is_journaled_before_a_kill() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = crate::cases::server_addr(&pair, false, 0, 5316);
    let mon = Monitor::start(&cg.path, "[probe]\nupdate_interval_secs = 1\n");
    let before = pair.b.counters("vb");
    let mut srv = spawn(
        "tcp-server",
        &[s(server), s(100), s(3), s("hold")],
        Place { netns: Some(&pair.b), cgroup: Some(&cg), uid: None },
    );
    srv.line();
    let pid = srv.pid();
    spawn("tcp-client", &[s(server), s(1500), s(3)], Place { netns: Some(&pair.a), ..Place::default() }).finish();
    for _ in 0..3 {
        srv.line();
    }
    thread::sleep(Duration::from_secs(5));
    let iface = pair.b.counters("vb").ip_layer_since(before);
    let dir = mon.kill9();
    srv.send("exit");
    srv.finish();
    let db = Connection::open_with_flags(dir.path().join("journal.db"), OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let sum = |what: &str| -> i64 {
        db.query_row(&format!("SELECT COALESCE(SUM({what}), 0) FROM connections WHERE owner_tgid = ?1"), [pid], |r| {
            r.get(0)
        })
        .unwrap()
    };
    let listener: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM connections WHERE owner_tgid = ?1 AND direction = 'listen' AND delta_wire_rx > 0",
            [pid],
            |r| r.get(0),
        )
        .unwrap();
    assert!(listener > 0, "the idle listener's handshakes are journaled before the kill");
    let want = (i64::try_from(iface.tx_bytes).unwrap(), i64::try_from(iface.rx_bytes).unwrap());
    assert_eq!((sum("delta_wire_tx"), sum("delta_wire_rx")), want, "the server's journaled wire bytes");
    assert_eq!(sum("delta_payload_rx"), 3 * 1500 + 7 + 14, "the server's journaled payload received");
}

/// An unconnected UDP socket whose first packets come while the ring buffer is full (the daemon
/// stopped, other sockets' events filling its 4 KiB): its announce is lost. Its next packet, to a
/// new peer (a new peer sends no event of its own), announces it again, so the daemon reads its
/// peer slots and a SIGKILL loses none of its bytes. An adversarial pass: the socket stayed
/// unknown until a clean stop, and a kill lost all of it. (Where the counter iterator takes the
/// snapshots it finds every socket, so this holds there without the announce.)
pub fn udp_socket_whose_announce_was_lost_is_announced_again() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let (dests, echo) = udp_echoes(&pair, 2, 5318, 10);
    let mon = Monitor::start(&cg.path, "[probe]\nring_buffer_kib = 4\nupdate_interval_secs = 1\n");
    kill(mon.pid(), Signal::SIGSTOP).unwrap();
    // One datagram each from 40 short-lived sockets (to a port nobody serves): far more events
    // than 4 KiB hold.
    let place = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: None };
    let nobody = crate::cases::server_addr(&pair, false, 0, 5319);
    for _ in 0..40 {
        spawn("udp-exit", &[s(nobody), s(100)], place).finish();
    }
    let mut args = vec![s(1000), s(10)];
    args.extend(dests.iter().map(s));
    let mut client = spawn("udp-unconnected-later", &args, place);
    let port = client.line()["local_port"].as_u64().unwrap();
    kill(mon.pid(), Signal::SIGCONT).unwrap();
    thread::sleep(Duration::from_millis(1500));
    client.send("again");
    let Killed { line, _dir, db, said } = quiet_then_killed(mon, client, echo);
    let lost: i64 = db
        .query_row("SELECT COALESCE(SUM(events_lost), 0) FROM stats", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("the journal's loss count: {e}"));
    assert!(lost > 0, "the ring buffer must overflow while the daemon is stopped; {said}");
    for d in &dests {
        let truth = &line["peers"][d.to_string()];
        assert_eq!(
            journaled_payload(&db, port, *d),
            (truth["tx"].as_i64().unwrap(), truth["rx"].as_i64().unwrap()),
            "journaled bytes of peer {d} of the socket whose announce was lost, before the kill; {said}"
        );
    }
}

/// An unconnected UDP socket open across a restart: two peers before it (A), one after it (B),
/// the socket closed under the new run. The A peers did not talk again, so the new run knew
/// nothing of them, but it saw the socket's release: each gets its `close` with it (no bytes:
/// what they moved is in the first run's records), so every peer of the socket has exactly one
/// `close` record in the journal and its exact bytes. An adversarial pass: the A peers' flows
/// ended on the first run's `shutdown` and never closed.
pub fn earlier_peers_of_a_socket_released_after_a_restart_close_with_it() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let (dests, echo) = udp_echoes(&pair, 3, 5320, 5);
    let config = "[probe]\nupdate_interval_secs = 1\n";
    let first = Monitor::start(&cg.path, config);
    let mut args = vec![s(700), s(5)];
    args.extend(dests.iter().map(s));
    let place = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: None };
    let mut client = spawn("udp-unconnected-later", &args, place);
    let port = client.line()["local_port"].as_u64().unwrap();
    thread::sleep(Duration::from_millis(1500));
    let before = first.stop();
    let second = Monitor::start_in(&cg.path, before.dir, config);
    client.send("again");
    let line = client.line();
    client.send("exit");
    client.finish();
    echo.finish();
    thread::sleep(Duration::from_millis(300));
    let out = second.stop();
    let db = Connection::open_with_flags(out.dir.path().join("journal.db"), OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    for d in &dests {
        let closes: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM connections WHERE local_port = ?1 AND remote_ip = ?2 AND remote_port = ?3
                     AND event = 'close'",
                rusqlite::params![port, d.ip().to_string(), d.port()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(closes, 1, "one close record of peer {d}");
        let truth = &line["peers"][d.to_string()];
        assert_eq!(
            journaled_payload(&db, port, *d),
            (truth["tx"].as_i64().unwrap(), truth["rx"].as_i64().unwrap()),
            "journaled bytes of peer {d}"
        );
    }
    let resumed: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM connections WHERE local_port = ?1 AND event = 'close' AND remote_ip IN (?2, ?3)
                 AND delta_payload_tx = 0 AND first_seen_ms < time_ms",
            rusqlite::params![port, dests[0].ip().to_string(), dests[1].ip().to_string()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(resumed, 2, "the earlier peers close with the socket, continuing their flows");
}

/// `n` UDP echo addresses on `port` in the pair's second namespace (echoing `count` datagrams
/// each), served by one ready helper.
fn udp_echoes(pair: &Pair, n: usize, port: u16, count: usize) -> (Vec<SocketAddr>, Helper) {
    let dests: Vec<SocketAddr> = (0..n).map(|i| crate::cases::server_addr(pair, false, i, port)).collect();
    let mut args: Vec<String> = dests.iter().map(s).collect();
    args.push(s(count));
    let mut echo = spawn("udp-echo", &args, Place { netns: Some(&pair.b), ..Place::default() });
    echo.line();
    (dests, echo)
}

/// A UDP echo server in the private pair's second namespace at `port` (answering `count`
/// datagrams) and a monitor of a new cgroup with updates every second.
fn echo_and_monitor(port: u16, count: usize) -> (Pair, TestCgroup, SocketAddr, Helper, Monitor) {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let dest = crate::cases::server_addr(&pair, false, 0, port);
    let mut echo = spawn("udp-echo", &[s(dest), s(count)], Place { netns: Some(&pair.b), ..Place::default() });
    echo.line();
    let mon = Monitor::start(&cg.path, "[probe]\nupdate_interval_secs = 1\n");
    (pair, cg, dest, echo, mon)
}

/// The client's first line; then quiet for a few update intervals (a refresh or a read of idle
/// peers, the next tick, a flush: 1 s each), the daemon killed with SIGKILL, the helpers ended;
/// the journal the daemon left (open), and its directory.
fn quiet_then_killed(mon: Monitor, mut client: Helper, echo: Helper) -> Killed {
    let line = client.line();
    thread::sleep(Duration::from_secs(5));
    let (dir, log, printed) = mon.kill9_with_output();
    client.send("exit");
    client.finish();
    echo.finish();
    let db = Connection::open_with_flags(dir.path().join("journal.db"), OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let printed: Vec<String> = printed.iter().map(ToString::to_string).collect();
    let said = format!("the daemon's log:\n{log}\nwhat it printed:\n{}", printed.join("\n"));
    Killed { line, _dir: dir, db, said }
}

/// What [`quiet_then_killed`] leaves: the client's first line, the journal (open) in its
/// directory, and what the daemon logged and printed, for a failure's message (a rare failure
/// in CI found nothing journaled and left no trace of why).
struct Killed {
    line: serde_json::Value,
    _dir: tempfile::TempDir,
    db: Connection,
    said: String,
}

/// Payload sent and received that the journal holds for local port `port` and remote `to`.
fn journaled_payload(db: &Connection, port: u64, to: SocketAddr) -> (i64, i64) {
    db.query_row(
        "SELECT COALESCE(SUM(delta_payload_tx), 0), COALESCE(SUM(delta_payload_rx), 0) FROM connections
         WHERE local_port = ?1 AND remote_ip = ?2 AND remote_port = ?3",
        rusqlite::params![port, to.ip().to_string(), to.port()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

/// A 320 KiB tmpfs mounted in a new directory, unmounted when dropped, and the config of a
/// journal on it flushed every second.
struct SmallDisk {
    _dir: tempfile::TempDir,
    mnt: std::path::PathBuf,
}

impl SmallDisk {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("small");
        std::fs::create_dir(&mnt).unwrap();
        let st = Command::new("mount").args(["-t", "tmpfs", "-o", "size=320k", "tmpfs"]).arg(&mnt).status().unwrap();
        assert!(st.success(), "mount tmpfs");
        Self { _dir: dir, mnt }
    }

    fn config(&self) -> String {
        format!("[journal]\npath = \"{}\"\nflush_interval_secs = 1\n", self.mnt.join("journal.db").display())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

/// A journal on a 320 KiB tmpfs fills up while traffic goes on: the daemon reports the failure,
/// keeps the rows in memory, keeps running, and writes them all once space is freed.
pub fn full_disk_keeps_records_until_space_returns() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let disk = SmallDisk::new();
    let mnt = &disk.mnt;
    let mon = Monitor::start_raw(&cg.path, tempfile::tempdir().unwrap(), &disk.config());
    let stop = AtomicBool::new(false);
    let made = thread::scope(|scope| {
        let worker = scope.spawn(|| churn(&pair, &cg, &stop));
        thread::sleep(Duration::from_secs(4));
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap()
    });
    thread::sleep(Duration::from_secs(2));
    // Free space: grow the file system.
    mount_remount(mnt, "size=64m");
    thread::sleep(Duration::from_secs(3));
    let out = mon.stop();
    assert!(out.log.contains("journal write failed"), "the full disk was reported:\n{}", out.log);
    // The end of the episode too (the next one is then logged at once, not a minute later).
    assert!(out.log.contains("journal writes succeed again"), "the recovery was reported:\n{}", out.log);
    let closed = out.closed().len();
    let journaled = rows(&mnt.join("journal.db")).iter().filter(|r| r[1] == Value::Text("close".into())).count();
    eprintln!("    {made} connections, {closed} close records printed, {journaled} journaled after space returned");
    assert_eq!(journaled, closed, "every record reached the journal once space returned");
}

/// The journal's file system is frozen (`fsfreeze`, as snapshot tools do) when SIGTERM comes:
/// the daemon cannot write its last records, says every 10 s that it is still stopping (it
/// looked hung), waits for the thaw, then writes every record and exits cleanly.
pub fn a_frozen_journal_delays_the_stop_and_loses_nothing() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let dir = tempfile::tempdir().unwrap();
    let (image, mnt) = (dir.path().join("fs.img"), dir.path().join("fs"));
    std::fs::create_dir(&mnt).unwrap();
    std::fs::File::create(&image).unwrap().set_len(64 << 20).unwrap();
    let run = |cmd: &str, args: &[&std::ffi::OsStr]| {
        let st = Command::new(cmd).args(args).status().unwrap_or_else(|e| panic!("{cmd}: {e}"));
        assert!(st.success(), "{cmd} {args:?}: {st}");
    };
    run("mkfs.ext4", &["-q".as_ref(), "-F".as_ref(), image.as_os_str()]);
    run("mount", &["-o".as_ref(), "loop".as_ref(), image.as_os_str(), mnt.as_os_str()]);
    struct Thaw<'a>(&'a Path);
    impl Drop for Thaw<'_> {
        fn drop(&mut self) {
            // Thawed already unless the test failed before: "unfreeze failed" is expected then.
            let _ = Command::new("fsfreeze").arg("-u").arg(self.0).stderr(std::process::Stdio::null()).status();
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let guard = Thaw(&mnt);
    let config = format!("[journal]\npath = \"{}\"\nflush_interval_secs = 1\n", mnt.join("journal.db").display());
    let mut mon = Monitor::start_raw(&cg.path, tempfile::tempdir().unwrap(), &config);
    let server = format!("{}:5209", pair.b_v4[0]);
    let exchange = |n: usize| drop(exchanges(&pair, &cg, &server, n));
    exchange(5);
    thread::sleep(Duration::from_secs(2));
    run("fsfreeze", &["-f".as_ref(), mnt.as_os_str()]);
    // Records of these wait in memory: the journal cannot take them.
    exchange(5);
    thread::sleep(Duration::from_millis(500));
    kill(mon.pid(), Signal::SIGTERM).unwrap();
    thread::sleep(Duration::from_secs(12));
    assert!(mon.running(), "the daemon waits for its frozen journal");
    run("fsfreeze", &["-u".as_ref(), mnt.as_os_str()]);
    let out = mon.stopped();
    assert!(out.log.contains("still stopping after 10 s"), "the wait was said:\n{}", out.log);
    let closed = out.closed().len();
    assert_eq!(closed, 10, "the client side of each of 10 connections was printed");
    let journaled = rows(&mnt.join("journal.db")).iter().filter(|r| r[1] == Value::Text("close".into())).count();
    assert_eq!(journaled, closed, "every record reached the journal after the thaw");
    drop(guard);
}

/// Stopped while its journal's disk is still full: the records it could not write are lost, and
/// the run says so and fails (exit 5, a journal error); it exited 0 with only a log line.
pub fn a_stop_with_unwritten_records_fails() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let disk = SmallDisk::new();
    let mon = Monitor::start_raw(&cg.path, tempfile::tempdir().unwrap(), &disk.config());
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        let worker = scope.spawn(|| churn(&pair, &cg, &stop));
        thread::sleep(Duration::from_secs(4));
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap()
    });
    thread::sleep(Duration::from_secs(2));
    kill(mon.pid(), Signal::SIGINT).unwrap();
    let (status, out) = mon.exited();
    assert!(out.log.contains("journal write failed"), "the full disk was reported:\n{}", out.log);
    assert_eq!(status.code(), Some(5), "a stop that lost records is a journal error:\n{}", out.log);
    assert!(
        out.log.contains("could not be written to the journal before exit and are lost"),
        "the loss is the run's error:\n{}",
        out.log
    );
}

/// The journal removed while the daemon runs (`rm journal.db*`): the next flush creates a new
/// one there and says so; every record after the removal is in it. Before, the daemon wrote on
/// into the deleted file, silently, and everything after the removal was lost.
pub fn a_removed_journal_is_created_again() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let mon = Monitor::start(&cg.path, "");
    let journal = mon.dir().join("journal.db");
    let server = format!("{}:5213", pair.b_v4[0]);
    let exchange = |n: usize| exchanges(&pair, &cg, &server, n);
    exchange(3);
    thread::sleep(Duration::from_secs(2));
    for suffix in ["", "-wal", "-shm"] {
        std::fs::remove_file(format!("{}{suffix}", journal.display())).unwrap();
    }
    let after = exchange(4);
    let out = mon.stop();
    assert!(out.log.contains("was removed while the daemon ran: a new journal was created"), "{}", out.log);
    let ports: Vec<i64> =
        after.iter().map(|c| i64::from(c["local"].as_str().unwrap().parse::<SocketAddr>().unwrap().port())).collect();
    let db = Connection::open_with_flags(out.dir.path().join("journal.db"), OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    for port in ports {
        let (n, tx): (i64, i64) = db
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(delta_payload_tx), 0) FROM connections WHERE local_port = ?1 AND event = 'close'",
                [port],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(n, 1, "the connection from port {port} is in the new journal");
        assert!(tx >= 2048, "with its bytes: {tx}");
    }
}

/// `n` TCP connections from the cgroup to a server at `server` in `pair.b`, 2,048 bytes up and
/// 512 down each: the client's lines.
fn exchanges(pair: &Pair, cg: &TestCgroup, server: &str, n: usize) -> Vec<serde_json::Value> {
    let mut srv =
        spawn("tcp-server", &[server.to_owned(), s(512), s(n)], Place { netns: Some(&pair.b), ..Place::default() });
    srv.line();
    let place = Place { netns: Some(&pair.a), cgroup: Some(cg), uid: None };
    let out = spawn("tcp-client", &[server.to_owned(), s(2048), s(n)], place).finish();
    srv.finish();
    out
}

fn mount_remount(mnt: &Path, opts: &str) {
    let st = Command::new("mount").args(["-o", &format!("remount,{opts}")]).arg(mnt).status().unwrap();
    assert!(st.success(), "remount {opts}");
}

/// `monitor run` with unusable inputs: one clear message, a documented exit code, nothing written.
pub fn bad_inputs_to_run_are_clear_errors() {
    let cg = TestCgroup::new();
    let dir = tempfile::tempdir().unwrap();
    let run_on = |cgroup: &Path, config: &str| {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_monitor"));
        cmd.arg("--config").arg(&path).args(["run", "--cgroup"]).arg(cgroup);
        crate::env::output_within(&mut cmd, Duration::from_secs(20))
    };
    let run = |config: &str| run_on(&cg.path, config);
    let check = |out: std::process::Output, code: i32, needle: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(err.contains(needle), "{needle:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    let journal = dir.path().join("j.db");
    // A corrupt database file named explicitly.
    let garbage = dir.path().join("garbage.mmdb");
    std::fs::write(&garbage, b"this is not a maxmind database").unwrap();
    check(
        run(&format!("[geo]\ncountry_db = \"{}\"\n[journal]\npath = \"{}\"\n", garbage.display(), journal.display())),
        2,
        "garbage.mmdb",
    );
    // A missing database file named explicitly.
    check(
        run(&format!("[geo]\nasn_db = \"/nonexistent/asn.mmdb\"\n[journal]\npath = \"{}\"\n", journal.display())),
        2,
        "/nonexistent/asn.mmdb",
    );
    assert!(!journal.exists(), "nothing written on a configuration error");
    // A journal directory that cannot be created (its parent is a file).
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    check(run(&format!("[journal]\npath = \"{}/j.db\"\n", file.display())), 5, "cannot create journal directory");
    // A corrupt journal is left in place, with advice.
    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, vec![0x42u8; 8192]).unwrap();
    check(run(&format!("[journal]\npath = \"{}\"\n", corrupt.display())), 5, "corrupt.db");
    assert_eq!(std::fs::read(&corrupt).unwrap(), vec![0x42u8; 8192], "a corrupt journal is never overwritten");
    // Root does not write through a journal path it does not own: a symlink to a 0644 file, a
    // device node, another application's database. Refused before anything changes.
    let precious = dir.path().join("precious");
    std::fs::write(&precious, b"keep").unwrap();
    std::fs::set_permissions(&precious, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&precious, &link).unwrap();
    check(run(&format!("[journal]\npath = \"{}\"\n", link.display())), 5, "symbolic link");
    let meta = std::fs::metadata(&precious).unwrap();
    assert_eq!(
        (std::fs::read(&precious).unwrap(), std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777),
        (b"keep".to_vec(), 0o644)
    );
    let null_mode = std::fs::metadata("/dev/null").unwrap().permissions();
    check(run("[journal]\npath = \"/dev/null\"\n"), 5, "character device");
    assert_eq!(std::fs::metadata("/dev/null").unwrap().permissions(), null_mode, "/dev/null untouched");
    let foreign = dir.path().join("app.sqlite");
    Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE notes (x); INSERT INTO notes VALUES (1);").unwrap();
    let before = std::fs::read(&foreign).unwrap();
    check(run(&format!("[journal]\npath = \"{}\"\n", foreign.display())), 5, "not a monitor journal");
    assert_eq!(std::fs::read(&foreign).unwrap(), before, "no monitor tables added to another application's database");
    // A cgroup that does not exist.
    check(
        run_on(Path::new("no-such-cgroup-here"), &format!("[journal]\npath = \"{}\"\n", journal.display())),
        2,
        "no-such-cgroup-here",
    );
}
