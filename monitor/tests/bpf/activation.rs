//! Socket activation: `systemd-socket-activate --accept --inetd`, the `Accept=yes` path of a
//! systemd socket unit. The activator creates the listening socket, accepts every connection and
//! starts the service on it (a new process, its stdin and stdout the connection); only the service
//! reads and writes. Every byte must be charged to the service process that moved it (owner
//! source `first_io`), not to the activator the connection inherited its owner from.

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use monitor::tracker::{
    FlowRecord,
    record::{Direction, OwnerSource},
};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::{Value, json};

use crate::{
    cases::{SERVER_UID, addr, assert_wire_matches, s, server_addr},
    daemon::Monitor,
    env::{Netns, Pair, Place, TestCgroup, enter, spawn},
};

/// Bytes each service process writes back.
const REPLY: u64 = 700_001;
/// Bytes the client sends on its first connection (the second sends 7 more).
const SEND: u64 = 300_000;

/// The activator (`systemd-socket-activate`, package systemd) in `netns` and `cg`, listening on
/// `addr`, starting this test binary as role `inetd-serve` per connection (as `SERVER_UID`),
/// which leaves `{pid, rx}` in `dir`. Killed on drop.
struct Activator(Child);

impl Activator {
    /// `uring`: the service's first read goes through an io_uring worker thread (see [`serve`]).
    fn start(addr: std::net::SocketAddr, netns: &Netns, cg: &TestCgroup, dir: &Path, uring: bool) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = Command::new("systemd-socket-activate");
        cmd.args(["--listen", &addr.to_string(), "--accept", "--inetd"])
            .args(["-E", "MONITOR_TEST_HELPER=inetd-serve", "-E", &format!("MONITOR_TEST_HELPER_UID={SERVER_UID}")])
            .arg(&exe)
            .args([s(REPLY), dir.display().to_string()])
            .args(uring.then_some("uring"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        enter(&mut cmd, Place { netns: Some(netns), cgroup: Some(cg), uid: None });
        let mut child =
            cmd.spawn().expect("systemd-socket-activate must be installed (`cargo xtask setup` installs systemd)");
        // It says "Listening on ADDR as 3." once the socket listens.
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("Listening on") {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "activator exited: {:?}", child.try_wait());
        }
        // Keep draining its log so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in err.lines() {});
        Self(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Activator {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(i32::try_from(self.0.id()).unwrap()), Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

/// Two concurrent connections to an activated service: each is one inbound flow, charged to the
/// service process that served it (its pid, uid and name), with exact payload both ways; none
/// to the activator; wire bytes match the interface.
pub fn socket_activated_service_is_charged(v6: bool) {
    charged(v6, false);
}

/// As [`socket_activated_service_is_charged`], the service's first read made through io_uring by
/// one of the kernel's worker threads (`IOSQE_ASYNC`): the owner recorded then is the service
/// process with its name, not the worker thread's (`iou-wrk-<pid>`), which made every such
/// process an app of its own when it exited before the monitor read it (found by an adversarial
/// pass).
pub fn socket_activated_service_reading_through_io_uring() {
    charged(false, true);
}

fn charged(v6: bool, uring: bool) {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = server_addr(&pair, v6, 0, if v6 { 5216 } else { 5215 });
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mon = Monitor::start(&cg.path, "");
    let before = pair.b.counters("vb");
    let activator = Activator::start(server, &pair.b, &cg, dir.path(), uring);
    let client = spawn("tcp-client", &[s(server), s(SEND), s(2)], Place { netns: Some(&pair.a), ..Place::default() });
    let client_lines = client.finish();
    let served = wait_for_services(dir.path(), 2);
    let out = mon.stop();
    let activator_pid = activator.pid();
    drop(activator);
    let iface = pair.b.counters("vb").ip_layer_since(before);
    let exe = fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    let inbound: Vec<&FlowRecord> = out.closed().into_iter().filter(|r| r.direction == Direction::Inbound).collect();
    assert_eq!(inbound.len(), 2, "one flow per connection: {:#?}", out.records);
    for line in &client_lines {
        let (local, tx) = (addr(&line["local"]), line["tx"].as_u64().unwrap());
        assert_eq!(line["rx"], REPLY, "the service replied in full: {line}");
        let r = *inbound.iter().find(|r| r.remote == Some(local)).unwrap_or_else(|| panic!("{local}: {inbound:#?}"));
        let service = served.iter().find(|v| v["rx"] == tx).unwrap_or_else(|| panic!("{tx}: {served:?}"));
        let pid = u32::try_from(service["pid"].as_u64().unwrap()).unwrap();
        assert_ne!(pid, activator_pid);
        assert_eq!(
            (r.owner.tgid, &*r.owner.comm, r.owner.uid, r.owner.source),
            (pid, "mon-inetd-serve", SERVER_UID, OwnerSource::FirstIo),
            "charged to the service process, not the activator ({activator_pid}): {r:#?}"
        );
        assert_eq!((r.payload.rx_bytes, r.payload.tx_bytes), (tx, REPLY), "{r:#?}");
        assert_eq!(r.local, Some(server));
        assert!(r.complete, "{r:#?}");
        let flow = out
            .flows
            .iter()
            .find(|f| f["event"] == "close" && f["remote"] == local.to_string())
            .unwrap_or_else(|| panic!("{local}: {:#?}", out.flows));
        assert_eq!(flow["app"]["pid"], pid, "the app is the service: {flow:#}");
        // Read from /proc while the service lived (the kernel reported the new owner at its
        // first read, not only at the close, after which the process is gone).
        assert_eq!(flow["app"]["source"], "proc", "{flow:#}");
        assert_eq!(flow["app"]["exe"], exe.display().to_string(), "{flow:#}");
        assert_eq!(flow["owner"]["source"], "first_io", "{flow:#}");
    }
    assert!(
        !out.records.iter().any(|r| r.owner.tgid == activator_pid && r.payload.tx_bytes + r.payload.rx_bytes > 0),
        "no payload charged to the activator: {:#?}",
        out.records
    );
    assert_wire_matches(&out, iface);
    out.assert_nothing_lost();
}

/// The `{pid, rx}` notes of `n` service processes, as they exit.
fn wait_for_services(dir: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let notes: Vec<Value> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| fs::read_to_string(p).ok())
            .filter_map(|t| serde_json::from_str(&t).ok())
            .collect();
        if notes.len() >= n {
            return notes;
        }
        assert!(Instant::now() < deadline, "{} of {n} service processes finished", notes.len());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Role `inetd-serve REPLY DIR [uring]`: stdin and stdout are an accepted connection. Reads it to
/// EOF (with `uring`, the first read through io_uring, forced onto one of its worker threads),
/// writes REPLY bytes, leaves `{pid, rx}` in `DIR/<pid>.json`, and exits (closing it) after
/// [`SERVICE_LINGER`].
pub fn serve(args: &[String]) {
    crate::helper::name("mon-inetd-serve");
    let reply: usize = args[0].parse().unwrap();
    let mut rx = 0u64;
    let mut buf = vec![0u8; 65_536];
    if args.get(2).is_some_and(|a| a == "uring") {
        rx += first_read_by_an_io_uring_worker(&mut buf);
    }
    let mut input = std::io::stdin().lock();
    loop {
        let n = input.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        rx += n as u64;
    }
    let mut output = std::io::stdout().lock();
    output.write_all(&vec![b'r'; reply]).unwrap();
    output.flush().unwrap();
    let pid = std::process::id();
    let note = Path::new(&args[1]).join(format!("{pid}.json"));
    let tmp = note.with_extension("tmp");
    fs::write(&tmp, json!({"pid": pid, "rx": rx}).to_string()).unwrap();
    fs::rename(tmp, note).unwrap();
    std::thread::sleep(SERVICE_LINGER);
}

/// One read of stdin through io_uring with `IOSQE_ASYNC`: the kernel runs it in an io-wq worker
/// thread of this process (named `iou-wrk-<pid>`), not in the process's own thread.
fn first_read_by_an_io_uring_worker(buf: &mut [u8]) -> u64 {
    use io_uring::{IoUring, opcode, squeue, types::Fd};
    let mut ring = IoUring::new(4).expect("io_uring");
    let read = opcode::Read::new(Fd(0), buf.as_mut_ptr(), u32::try_from(buf.len()).unwrap())
        .build()
        .flags(squeue::Flags::ASYNC);
    // SAFETY: `buf` outlives the operation: this function waits for its completion.
    unsafe { ring.submission().push(&read).expect("submission queue full") };
    ring.submit_and_wait(1).expect("io_uring_enter");
    let result = ring.completion().next().expect("a completion").result();
    u64::try_from(result).unwrap_or_else(|_| panic!("io_uring read: {}", std::io::Error::from_raw_os_error(-result)))
}

/// How long a service process lives on after its reply. The daemon reads a process's /proc
/// entries when the kernel reports it as a socket's new owner (its first read); a service that
/// exits within the ~10 ms of its transfer raced that read on a loaded 2-core CI machine (read
/// while exiting: name and uid, no `exe`). What the test checks still holds: a read only at the
/// close, when the process is exiting, would miss its `exe`.
const SERVICE_LINGER: Duration = Duration::from_millis(300);
