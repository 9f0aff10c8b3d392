//! The shipped unit (`config/monitor.service`, not one directive changed) started by a real
//! systemd: PID 1 of a container made for the test (PID, mount and cgroup namespaces), so every
//! sandboxing directive is applied by systemd itself: `Type=notify`, the capability bounding set,
//! `NoNewPrivileges`, `SystemCallFilter`, `MemoryDenyWriteExecute`, `ProtectSystem=strict`,
//! `RestrictAddressFamilies`, `IPAddressDeny` and the rest. The monitor must become active, attach,
//! record a client's bytes exactly into its journal under `StateDirectory=`, and stop cleanly.
//!
//! The container changes nothing on the host: `/etc`, `/usr/local` and `/var` are overlays whose
//! upper layers live in the test's directory (the unit, its config and the binary are written
//! there), `/run` and `/tmp` are fresh tmpfs (no unit can clean the host's `/tmp`), `/proc/sys`
//! is read-only, and the cgroup2 hierarchy seen inside is the test's own cgroup, mounted on
//! `/sys/fs/cgroup` over whatever the host has there (on a hybrid host the hidden
//! `/sys/fs/cgroup/unified` stays in the mount table: the monitor must pick the visible mount). One drop-in is
//! added, and it does not weaken the sandbox: `DefaultDependencies=no` (so systemd starts this unit
//! and nothing of the host's `sysinit.target`) and the service's output into a file (there is no
//! journald in the container).

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use monitor::privileges::NEEDED;
use serde_json::Value;

use crate::{
    daemon::monitor_bin,
    env::{Pair, Place, TestCgroup, spawn},
    missing,
};

const CLIENT_UID: u32 = 4246;
const SENT: u64 = 765_432;
const REPLY: u64 = 23_456;

/// The logging/ordering drop-in (see the module doc).
const DROP_IN: &str = "[Unit]\nDefaultDependencies=no\n\n[Service]\nEnvironment=RUST_LOG=info\n\
    StandardOutput=append:/var/log/monitor-test.log\nStandardError=append:/var/log/monitor-test.log\n";

fn systemd_binary() -> Option<PathBuf> {
    ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"].into_iter().map(PathBuf::from).find(|p| p.exists())
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo").join(name)
}

/// The container: its PID 1 (host pid) and the `unshare` process that holds it.
struct Container {
    unshare: Child,
    pid1: u32,
    dir: PathBuf,
}

impl Container {
    /// Boots systemd with `monitor.service` as its only unit, in cgroup `cgroup`.
    fn boot(systemd: &Path, dir: &Path, cgroup: &Path) -> Self {
        let d = dir.display();
        let script = format!(
            "set -e\n\
             mount -t overlay overlay -o lowerdir=/etc,upperdir={d}/etc-up,workdir={d}/etc-work /etc\n\
             mount -t overlay overlay -o lowerdir=/usr/local,upperdir={d}/usr-up,workdir={d}/usr-work /usr/local\n\
             mount -t overlay overlay -o lowerdir=/var,upperdir={d}/var-up,workdir={d}/var-work /var\n\
             mount -t tmpfs tmpfs /run\n\
             mount -t tmpfs tmpfs /tmp\n\
             mount --bind /proc/sys /proc/sys\n\
             mount -o remount,bind,ro /proc/sys\n\
             mount -t cgroup2 none /sys/fs/cgroup\n\
             exec env container=monitor-test {systemd} --system --unit=monitor.service\n",
            systemd = systemd.display()
        );
        // The shell moves itself into the test's cgroup, then becomes `unshare`, whose child is
        // PID 1 of the new namespaces (killed with it: --kill-child).
        let outer = format!(
            "echo $$ > '{}/cgroup.procs' && exec unshare --pid --fork --kill-child --mount --cgroup \
             --propagation private --mount-proc sh -c \"$0\"",
            cgroup.display()
        );
        let unshare = Command::new("sh")
            .args(["-c", &outer, &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let children = format!("/proc/{0}/task/{0}/children", unshare.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid1 = loop {
            let text = fs::read_to_string(&children).unwrap_or_default();
            if let Some(pid) = text.split_whitespace().next().and_then(|p| p.parse().ok()) {
                break pid;
            }
            assert!(Instant::now() < deadline, "the container's PID 1 did not start");
            std::thread::sleep(Duration::from_millis(50));
        };
        Self { unshare, pid1, dir: dir.to_path_buf() }
    }

    /// `command` inside the container (its mounts and PID namespace); stdout.
    fn run(&self, command: &[&str]) -> String {
        let out = Command::new("nsenter")
            .args(["-t", &self.pid1.to_string(), "-m", "-p", "--"])
            .args(command)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn show(&self, property: &str) -> String {
        self.run(&["systemctl", "show", "--value", "-p", property, "monitor.service"])
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("var-up/log/monitor-test.log")).unwrap_or_default()
    }

    /// Waits until the unit is `state` (30 s at most).
    fn wait_for(&self, state: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.show("ActiveState");
            if now == state {
                return;
            }
            assert!(
                Instant::now() < deadline && now != "failed",
                "monitor.service is {now:?}, not {state}; result {}; log:\n{}",
                self.show("Result"),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// Removes the test's cgroup and everything systemd made below it when dropped (after the
/// container: declared before it), also when the test fails.
struct CgroupTree(PathBuf);

impl Drop for CgroupTree {
    fn drop(&mut self) {
        remove_cgroup_tree(&self.0);
    }
}

/// Removes a cgroup and everything below it (tasks may take a moment to leave).
fn remove_cgroup_tree(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut dirs: Vec<PathBuf> = walk(path);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        let all_gone = dirs.iter().all(|d| fs::remove_dir(d).is_ok() || !d.exists());
        if all_gone || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn walk(path: &Path) -> Vec<PathBuf> {
    let mut out = vec![path.to_path_buf()];
    for entry in fs::read_dir(path).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&entry.path()));
        }
    }
    out
}

/// The capability mask of the unit's `CapabilityBoundingSet=` (each name looked up in
/// [`NEEDED`], so a capability the monitor does not know of fails the test).
fn unit_capability_mask() -> u64 {
    let unit = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/monitor.service")).unwrap();
    let line = unit.lines().find_map(|l| l.strip_prefix("CapabilityBoundingSet=")).unwrap();
    line.split_whitespace()
        .map(|name| {
            let known = NEEDED.iter().find(|(_, n)| *n == name);
            known.unwrap_or_else(|| panic!("capability {name} of the unit is not one the monitor needs")).0.bitmask()
        })
        .fold(0, |mask, bit| mask | bit)
}

pub fn the_unit_runs_under_real_systemd_and_records_exactly() {
    let Some(systemd) = systemd_binary() else {
        missing("systemd is not installed (`cargo xtask setup` installs the Debian package)".into());
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["etc-up/monitor", "etc-up/systemd/system/monitor.service.d", "etc-work", "usr-up/bin", "usr-work"] {
        fs::create_dir_all(d.join(sub)).unwrap();
    }
    for sub in ["var-up/log", "var-work"] {
        fs::create_dir_all(d.join(sub)).unwrap();
    }
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/monitor.service");
    fs::copy(&unit, d.join("etc-up/systemd/system/monitor.service")).unwrap();
    fs::write(d.join("etc-up/systemd/system/monitor.service.d/test.conf"), DROP_IN).unwrap();
    fs::copy(monitor_bin(), d.join("usr-up/bin/monitor")).unwrap();
    for db in ["GeoIP2-Country-Test.mmdb", "GeoLite2-ASN-Test.mmdb"] {
        fs::copy(fixture(db), d.join("etc-up/monitor").join(db)).unwrap();
    }
    // The journal in a directory of its own below StateDirectory (a host's /var/lib/monitor may
    // hold a real journal: the overlay must not show it to this run).
    let config = format!(
        "cgroup = \"/traffic\"\n\n[geo]\ncountry_db = \"/etc/monitor/GeoIP2-Country-Test.mmdb\"\n\
         asn_db = \"/etc/monitor/GeoLite2-ASN-Test.mmdb\"\n\n[journal]\npath = \"/var/lib/monitor/test-{}/journal.db\"\n\
         flush_interval_secs = 1\n\n[tracker]\nstats_interval_secs = 1\n\n[[apps]]\nname = \"sd-client\"\nuid = [{CLIENT_UID}]\n",
        std::process::id()
    );
    fs::write(d.join("etc-up/monitor/monitor.toml"), config).unwrap();

    let pair = Pair::private();
    let cg = TestCgroup::new();
    let _tree = CgroupTree(cg.path.clone());
    let traffic = TestCgroup { path: cg.path.join("traffic") };
    fs::create_dir(&traffic.path).unwrap();
    let server = format!("{}:5230", pair.b_v4[0]);
    let mut srv = spawn(
        "tcp-server",
        &[server.clone(), REPLY.to_string(), "1".into()],
        Place { netns: Some(&pair.b), ..Place::default() },
    );
    srv.line();

    let since = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - 60).unwrap();
    let container = Container::boot(&systemd, d, &cg.path);
    container.wait_for("active");
    // Type=notify: active means READY=1 came, after the attach and the journal open.
    assert_eq!(container.show("Type"), "notify");
    let main = container.show("MainPID");
    let status = container.run(&["cat", &format!("/proc/{main}/status")]);
    let field =
        |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or_default().to_owned();
    assert_eq!(field("Seccomp:"), "2", "SystemCallFilter= applied: {status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    let bounding = u64::from_str_radix(&field("CapBnd:"), 16).unwrap();
    assert_eq!(bounding, unit_capability_mask(), "CapabilityBoundingSet= applied: {status}");

    let client = spawn(
        "tcp-client",
        &[server.clone(), SENT.to_string(), "1".into()],
        Place { netns: Some(&pair.a), cgroup: Some(&traffic), uid: Some(CLIENT_UID) },
    );
    let sent = client.finish();
    srv.finish();
    assert_eq!(sent[0]["tx"], SENT);
    // A STATUS= line per statistics interval (1 s), with the closed flow.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !container.show("StatusText").contains("closed=1") {
        assert!(Instant::now() < deadline, "status: {:?}; log:\n{}", container.show("StatusText"), container.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    container.run(&["systemctl", "stop", "monitor.service"]);
    container.wait_for("inactive");
    assert_eq!(container.show("Result"), "success", "log:\n{}", container.log());
    assert_eq!(container.show("ExecMainStatus"), "0");
    assert_eq!(container.show("NRestarts"), "0", "the watchdog never fired");

    let until = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + 60).unwrap();
    let journal = format!("/var/lib/monitor/test-{}/journal.db", std::process::id());
    let report = container.run(&[
        "/usr/local/bin/monitor",
        "report",
        "--journal",
        &journal,
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--format",
        "json",
    ]);
    let doc: Value =
        serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report}; log:\n{}", container.log()));
    let app = doc["apps"].as_array().unwrap().iter().find(|a| a["app"] == "sd-client").cloned();
    let app = app.unwrap_or_else(|| panic!("no sd-client in {doc:#}"));
    assert_eq!(
        (app["traffic"]["payload_tx"].as_u64(), app["traffic"]["payload_rx"].as_u64()),
        (Some(SENT), Some(REPLY)),
        "{app:#}"
    );
    assert!(container.log().contains("attached programs="), "{}", container.log());
    // The container's PID namespace is not the host's: the daemon says so, and names apps from the
    // kernel's records only (a /proc lookup by the kernel's pid would find another process).
    assert!(container.log().contains("PID namespace of its own"), "{}", container.log());
}
