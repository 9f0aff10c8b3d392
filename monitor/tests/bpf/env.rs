//! Test environment: network namespaces joined by a veth pair (no route out of the machine), a
//! child cgroup for the processes under test, and helper processes placed in both.

use std::{
    fs::{self, File, OpenOptions},
    io::{BufRead as _, BufReader, Write as _},
    os::{fd::AsRawFd as _, unix::process::CommandExt as _},
    path::PathBuf,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use nix::sched::{CloneFlags, setns};
use serde_json::Value;

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique(tag: &str) -> String {
    format!("mt{}{}{}", std::process::id() % 10000, COUNTER.fetch_add(1, Ordering::Relaxed), tag)
}

/// Runs `ip` with the given arguments; panics with the output on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip(8) must be installed (iproute2)");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// One network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = unique(tag);
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Self { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// (rx bytes, rx packets, tx bytes, tx packets) of a device in this namespace.
    pub fn counters(&self, dev: &str) -> Counters {
        let out = Command::new("ip").args(["-n", &self.name, "-s", "-j", "link", "show", "dev", dev]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let s = &v[0]["stats64"];
        let n = |p: &str, k: &str| s[p][k].as_u64().unwrap();
        Counters {
            rx_bytes: n("rx", "bytes"),
            rx_packets: n("rx", "packets"),
            tx_bytes: n("tx", "bytes"),
            tx_packets: n("tx", "packets"),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Interface counters (link layer included).
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

impl Counters {
    /// Change since `before`, with the 14-byte Ethernet header of each frame removed (IP layer).
    pub fn ip_layer_since(self, before: Self) -> Self {
        let rx_packets = self.rx_packets - before.rx_packets;
        let tx_packets = self.tx_packets - before.tx_packets;
        Self {
            rx_bytes: self.rx_bytes - before.rx_bytes - 14 * rx_packets,
            rx_packets,
            tx_bytes: self.tx_bytes - before.tx_bytes - 14 * tx_packets,
            tx_packets,
        }
    }
}

/// Two namespaces, `a` (device `va`) and `b` (device `vb`), joined by a veth pair, with static
/// neighbour entries so no ARP/ND traffic disturbs the interface counters.
pub struct Pair {
    pub a: Netns,
    pub b: Netns,
    pub b_v4: Vec<String>,
    pub b_v6: Vec<String>,
}

/// The kernel's unsolicited MLD reports (one per multicast group an interface joins, repeated
/// after a random delay of up to a second by default) are the only packets a new pair sends on
/// its own: sent 1 ms apart, they are over before `settle` returns, not inside a test's counters.
const MLD_AT_ONCE: [(&str, &str); 2] =
    [("mldv1_unsolicited_report_interval", "1"), ("mldv2_unsolicited_report_interval", "1")];

/// Waits until both ends are up (addresses configured, multicast groups joined) and neither
/// interface's counters moved for 100 ms, for at most 5 s.
fn settle(a: &Netns, b: &Netns) {
    let up = |ns: &Netns, dev: &str| {
        Command::new("ip")
            .args(["-n", &ns.name, "-o", "link", "show", "dev", dev])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("state UP"))
    };
    let counts = || {
        let (x, y) = (a.counters("va"), b.counters("vb"));
        [x.rx_packets, x.tx_packets, y.rx_packets, y.tx_packets]
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut last = None;
    while std::time::Instant::now() < deadline {
        let now = (up(a, "va") && up(b, "vb")).then(counts);
        if now.is_some() && now == last {
            return;
        }
        last = now;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

const MAC_A: &str = "02:00:00:00:00:0a";
pub(crate) const MAC_B: &str = "02:00:00:00:00:0b";

impl Pair {
    /// `a` holds `a_v4`/`a_v6`; `b` holds every address of `b_v4`/`b_v6`.
    pub fn new(a_v4: &str, b_v4: &[&str], a_v6: &str, b_v6: &[&str]) -> Self {
        let a = Netns::new("a");
        let b = Netns::new("b");
        ip(&[
            "-n", &a.name, "link", "add", "va", "address", MAC_A, "type", "veth", "peer", "name", "vb", "address",
            MAC_B, "netns", &b.name,
        ]);
        for (ns, dev) in [(&a, "va"), (&b, "vb")] {
            for (key, value) in
                [("accept_dad", "0"), ("dad_transmits", "0"), ("router_solicitations", "0"), ("accept_ra", "0")]
                    .into_iter()
                    .chain(MLD_AT_ONCE)
            {
                let _ = Command::new("ip")
                    .args(["netns", "exec", &ns.name, "sysctl", "-qw", &format!("net.ipv6.conf.{dev}.{key}={value}")])
                    .status();
                let _ = Command::new("ip")
                    .args(["netns", "exec", &ns.name, "sysctl", "-qw", &format!("net.ipv6.conf.default.{key}={value}")])
                    .status();
            }
        }
        ip(&["-n", &a.name, "addr", "add", &format!("{a_v4}/32"), "dev", "va"]);
        ip(&["-n", &a.name, "addr", "add", &format!("{a_v6}/128"), "dev", "va", "nodad"]);
        for addr in b_v4 {
            ip(&["-n", &b.name, "addr", "add", &format!("{addr}/32"), "dev", "vb"]);
        }
        for addr in b_v6 {
            ip(&["-n", &b.name, "addr", "add", &format!("{addr}/128"), "dev", "vb", "nodad"]);
        }
        ip(&["-n", &a.name, "link", "set", "va", "up"]);
        ip(&["-n", &b.name, "link", "set", "vb", "up"]);
        // Host routes only: nothing outside the pair is reachable.
        for addr in b_v4 {
            ip(&["-n", &a.name, "route", "add", &format!("{addr}/32"), "dev", "va"]);
            ip(&["-n", &a.name, "neigh", "replace", addr, "lladdr", MAC_B, "dev", "va", "nud", "permanent"]);
        }
        for addr in b_v6 {
            ip(&["-n", &a.name, "-6", "route", "add", &format!("{addr}/128"), "dev", "va"]);
            ip(&["-n", &a.name, "neigh", "replace", addr, "lladdr", MAC_B, "dev", "va", "nud", "permanent"]);
        }
        ip(&["-n", &b.name, "route", "add", &format!("{a_v4}/32"), "dev", "vb"]);
        ip(&["-n", &b.name, "neigh", "replace", a_v4, "lladdr", MAC_A, "dev", "vb", "nud", "permanent"]);
        ip(&["-n", &b.name, "-6", "route", "add", &format!("{a_v6}/128"), "dev", "vb"]);
        ip(&["-n", &b.name, "neigh", "replace", a_v6, "lladdr", MAC_A, "dev", "vb", "nud", "permanent"]);
        settle(&a, &b);
        Self {
            a,
            b,
            b_v4: b_v4.iter().map(|s| (*s).into()).collect(),
            b_v6: b_v6.iter().map(|s| (*s).into()).collect(),
        }
    }

    /// Default test addresses (private ranges).
    pub fn private() -> Self {
        Self::new("10.77.0.1", &["10.77.0.2", "10.77.0.3", "10.77.0.4"], "fd77::1", &["fd77::2", "fd77::3", "fd77::4"])
    }
}

/// A child of the cgroup v2 root, removed on drop.
pub struct TestCgroup {
    pub path: PathBuf,
}

impl TestCgroup {
    pub fn new() -> Self {
        let root = monitor::probe::cgroup2_mount().expect("cgroup2 mount");
        let path = root.join(unique("cg"));
        fs::create_dir(&path).unwrap();
        Self { path }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // Processes must have left: move any stragglers to the root, then remove.
        if let Ok(procs) = fs::read_to_string(self.path.join("cgroup.procs")) {
            let root = self.path.parent().unwrap().join("cgroup.procs");
            for pid in procs.lines() {
                let _ = fs::write(&root, pid);
            }
        }
        let _ = fs::remove_dir(&self.path);
    }
}

/// Where a helper runs.
#[derive(Default, Clone, Copy)]
pub struct Place<'a> {
    pub netns: Option<&'a Netns>,
    pub cgroup: Option<&'a TestCgroup>,
    pub uid: Option<u32>,
}

/// A running helper process.
pub struct Helper {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: BufReader<ChildStdout>,
}

impl Helper {
    /// Next JSON line of the helper.
    pub fn line(&mut self) -> Value {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "helper exited early (status {:?})", self.child.try_wait());
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("helper said {line:?}: {e}"))
    }

    pub fn send(&mut self, word: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{word}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for exit and returns every remaining JSON line.
    pub fn finish(mut self) -> Vec<Value> {
        drop(self.stdin.take());
        let mut lines = Vec::new();
        for line in (&mut self.stdout).lines() {
            let line = line.unwrap();
            lines.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("helper said {line:?}: {e}")));
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "helper failed: {status}");
        lines
    }
}

/// A helper still running when its test ends (a failed assertion) is killed, so it holds no
/// port, namespace or cgroup for the next case.
impl Drop for Helper {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `role` with `args` in `place`: the child joins the cgroup and the namespace before exec,
/// and drops to `uid` right after exec (the checkout may not be readable by that uid), before it
/// creates any socket.
pub fn spawn(role: &str, args: &[String], place: Place<'_>) -> Helper {
    spawn_program(&std::env::current_exe().unwrap(), role, args, place)
}

/// Like [`spawn`], running the test binary through `program` (a link or copy of it under another
/// name, e.g. a fake emulator's).
pub fn spawn_program(program: &std::path::Path, role: &str, args: &[String], place: Place<'_>) -> Helper {
    let mut cmd = Command::new(program);
    cmd.env("MONITOR_TEST_HELPER", role)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(uid) = place.uid {
        cmd.env("MONITOR_TEST_HELPER_UID", uid.to_string());
    }
    enter(&mut cmd, place);
    let mut child = cmd.spawn().unwrap();
    let stdin = child.stdin.take();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    Helper { child, stdin, stdout }
}

/// Makes `cmd`'s child join `place`'s cgroup and network namespace before exec (its uid is the
/// caller's business: helpers drop to it themselves, after exec).
pub fn enter(cmd: &mut Command, place: Place<'_>) {
    let ns: Option<File> = place.netns.map(|n| File::open(n.path()).unwrap());
    let procs: Option<File> =
        place.cgroup.map(|c| OpenOptions::new().write(true).open(c.path.join("cgroup.procs")).unwrap());
    // SAFETY: only async-signal-safe syscalls between fork and exec (write, setns).
    unsafe {
        cmd.pre_exec(move || {
            if let Some(f) = &procs
                && nix::libc::write(f.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1
            {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(f) = &ns {
                setns(f, CloneFlags::CLONE_NEWNET)?;
            }
            Ok(())
        });
    }
}

/// Runs `cmd` to completion, killing it (and failing) after `limit`: a command expected to fail
/// must not hang the suite if it unexpectedly starts.
pub fn output_within(cmd: &mut Command, limit: std::time::Duration) -> std::process::Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{cmd:?} still running after {limit:?}; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}
