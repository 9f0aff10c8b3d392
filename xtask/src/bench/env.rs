//! Where the benchmarks run: two network namespaces joined by a veth pair (host routes and
//! static neighbours only: nothing outside the pair is reachable), a child cgroup of the cgroup v2
//! root that holds the load, and processes started inside them. Every resource is a `Drop` guard,
//! so an error or a panic anywhere still removes namespaces and cgroups and kills children.

use std::{
    fs::{self, File, OpenOptions},
    os::unix::process::{CommandExt as _, ExitStatusExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use nix::{
    sched::{CloneFlags, setns},
    sys::signal::{Signal, kill},
    unistd::{Pid, write},
};

/// Address of namespace `a` (clients) on the veth pair.
pub const ADDR_A: &str = "10.199.0.1";
/// Address of namespace `b` (servers) on the veth pair.
pub const ADDR_B: &str = "10.199.0.2";
/// IPv6 address of namespace `a` on the veth pair (unique local: never routed).
const ADDR_A6: &str = "fd00:199::1";
/// IPv6 address of namespace `b` on the veth pair.
pub const ADDR_B6: &str = "fd00:199::2";
/// Device of the pair inside namespace `a`.
pub const DEV_A: &str = "bva";
const DEV_B: &str = "bvb";
const MAC_A: &str = "02:00:00:00:01:0a";
const MAC_B: &str = "02:00:00:00:01:0b";

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("failed to run ip(8) (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// One network namespace, deleted on drop.
pub struct Netns {
    /// Name under /var/run/netns.
    pub name: String,
}

impl Netns {
    fn new(name: String) -> anyhow::Result<Self> {
        // A namespace left by a killed earlier run would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// Sets a per-namespace sysctl (e.g. `net.ipv4.tcp_tw_reuse`).
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let status = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", &format!("echo '{value}' > {path}")])
            .status()
            .context("failed to run ip netns exec")?;
        if !status.success() {
            bail!("cannot set {key}={value} in namespace {}", self.name);
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Namespaces `a` (device [`DEV_A`], [`ADDR_A`] and `ADDR_A6`) and `b` ([`ADDR_B`], [`ADDR_B6`])
/// joined by a veth pair. The IPv6 addresses are there where the kernel has IPv6.
pub struct Pair {
    /// Client side.
    pub a: Netns,
    /// Server side.
    pub b: Netns,
    /// Why the pair has no IPv6 addresses (e.g. IPv6 turned off at boot), or `None`.
    pub no_ipv6: Option<String>,
}

impl Pair {
    /// Creates the pair; names carry this process's id so concurrent runs do not collide.
    pub fn new() -> anyhow::Result<Self> {
        let id = std::process::id();
        let a = Netns::new(format!("mbench{id}a"))?;
        let b = Netns::new(format!("mbench{id}b"))?;
        // 100,000 short connections from one address: use the whole port range and reuse
        // TIME_WAIT ports (client side closes first).
        a.sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
        a.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
        let mut ipv6 = Ok(());
        for ns in [&a, &b] {
            // Before the devices exist: their IPv6 settings come from `default`.
            if ipv6.is_ok() {
                ipv6 = static_ipv6(ns);
            }
            ns.sysctl("net.core.somaxconn", "65535")?;
            ns.sysctl("net.ipv4.tcp_max_syn_backlog", "65535")?;
        }
        ip(&[
            "-n", &a.name, "link", "add", DEV_A, "address", MAC_A, "type", "veth", "peer", "name", DEV_B, "address",
            MAC_B, "netns", &b.name,
        ])?;
        ip(&["-n", &a.name, "addr", "add", &format!("{ADDR_A}/32"), "dev", DEV_A])?;
        ip(&["-n", &b.name, "addr", "add", &format!("{ADDR_B}/32"), "dev", DEV_B])?;
        ip(&["-n", &a.name, "link", "set", DEV_A, "up"])?;
        ip(&["-n", &b.name, "link", "set", DEV_B, "up"])?;
        // Host routes only: no default route, so nothing outside the pair is reachable.
        ip(&["-n", &a.name, "route", "add", &format!("{ADDR_B}/32"), "dev", DEV_A])?;
        ip(&["-n", &b.name, "route", "add", &format!("{ADDR_A}/32"), "dev", DEV_B])?;
        ip(&["-n", &a.name, "neigh", "replace", ADDR_B, "lladdr", MAC_B, "dev", DEV_A, "nud", "permanent"])?;
        ip(&["-n", &b.name, "neigh", "replace", ADDR_A, "lladdr", MAC_A, "dev", DEV_B, "nud", "permanent"])?;
        if ipv6.is_ok() {
            ipv6 = ipv6_addresses(&a, &b);
        }
        let no_ipv6 = ipv6.err().map(|e| format!("{e:#}"));
        if let Some(why) = &no_ipv6 {
            eprintln!("bench: the veth pair has no IPv6 addresses ({why}): the IPv6 runs are skipped");
        }
        Ok(Self { a, b, no_ipv6 })
    }
}

/// IPv6 with static addresses only, for devices created after this (the sockets benchmark's
/// IPv6 run): no link-local address, so no router solicitations; no router advertisements taken
/// (and no DAD: the addresses are added `nodad`).
fn static_ipv6(ns: &Netns) -> anyhow::Result<()> {
    ns.sysctl("net.ipv6.conf.all.disable_ipv6", "0")?;
    ns.sysctl("net.ipv6.conf.default.disable_ipv6", "0")?;
    ns.sysctl("net.ipv6.conf.default.addr_gen_mode", "1")?;
    ns.sysctl("net.ipv6.conf.default.accept_ra", "0")
}

/// The pair's IPv6 addresses, host routes and neighbours, as for IPv4.
fn ipv6_addresses(a: &Netns, b: &Netns) -> anyhow::Result<()> {
    let (a6, b6) = (format!("{ADDR_A6}/128"), format!("{ADDR_B6}/128"));
    ip(&["-n", &a.name, "addr", "add", &a6, "dev", DEV_A, "nodad"])?;
    ip(&["-n", &b.name, "addr", "add", &b6, "dev", DEV_B, "nodad"])?;
    ip(&["-n", &a.name, "-6", "route", "add", &b6, "dev", DEV_A])?;
    ip(&["-n", &b.name, "-6", "route", "add", &a6, "dev", DEV_B])?;
    ip(&["-n", &a.name, "neigh", "replace", ADDR_B6, "lladdr", MAC_B, "dev", DEV_A, "nud", "permanent"])?;
    ip(&["-n", &b.name, "neigh", "replace", ADDR_A6, "lladdr", MAC_A, "dev", DEV_B, "nud", "permanent"])
}

/// A child of the cgroup v2 root holding the load, removed on drop.
pub struct Cgroup {
    /// Absolute path (the monitor is given this path with `--cgroup`).
    pub path: PathBuf,
}

impl Cgroup {
    /// Creates `<cgroup2 mount>/<name>`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let path = cgroup2_mount()?.join(name);
        if path.exists() {
            evacuate(&path);
            let _ = fs::remove_dir(&path);
        }
        fs::create_dir(&path).with_context(|| format!("cannot create cgroup {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        evacuate(&self.path);
        // rmdir fails while exiting processes are still being reaped; retry briefly.
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::remove_dir(&self.path).is_err() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Moves every process of `cgroup` back to the root cgroup.
fn evacuate(cgroup: &Path) {
    let (Ok(procs), Some(parent)) = (fs::read_to_string(cgroup.join("cgroup.procs")), cgroup.parent()) else { return };
    for pid in procs.lines() {
        let _ = fs::write(parent.join("cgroup.procs"), pid);
    }
}

/// The cgroup v2 mount point from /proc/mounts (`/sys/fs/cgroup/unified` on hybrid hosts).
pub fn cgroup2_mount() -> anyhow::Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts")?;
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&"cgroup2"))
        .and_then(|f| f.get(1).map(PathBuf::from))
        .context("no cgroup2 mount in /proc/mounts")
}

/// Where a process runs.
#[derive(Clone, Copy, Default)]
pub struct Place<'a> {
    /// Network namespace to join (none: the harness's).
    pub netns: Option<&'a Netns>,
    /// cgroup to join (none: the harness's).
    pub cgroup: Option<&'a Cgroup>,
}

impl Place<'_> {
    /// Makes `cmd` join this place between fork and exec.
    pub fn apply(self, cmd: &mut Command) -> anyhow::Result<()> {
        let ns: Option<File> =
            self.netns.map(|n| File::open(n.path())).transpose().context("cannot open the namespace")?;
        let procs: Option<File> = self
            .cgroup
            .map(|c| OpenOptions::new().write(true).open(c.path.join("cgroup.procs")))
            .transpose()
            .context("cannot open cgroup.procs")?;
        // SAFETY: only async-signal-safe syscalls (write, setns) run between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if let Some(f) = &procs
                    && write(f, b"0") != Ok(1)
                {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(f) = &ns
                    && let Err(e) = setns(f, CloneFlags::CLONE_NEWNET)
                {
                    return Err(e.into());
                }
                Ok(())
            });
        }
        Ok(())
    }
}

/// A child process, killed (SIGKILL) and reaped on drop unless it was waited for.
pub struct Proc {
    /// The child.
    pub child: Child,
    /// What it is, for error messages.
    pub what: String,
}

impl Proc {
    /// Starts `cmd` in `place`.
    pub fn spawn(what: &str, cmd: &mut Command, place: Place<'_>) -> anyhow::Result<Self> {
        place.apply(cmd)?;
        let child = cmd.spawn().with_context(|| format!("failed to start {what} ({cmd:?})"))?;
        Ok(Self { child, what: what.to_owned() })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `SIGINT`). Best effort: the child may have exited already.
    pub fn signal(&self, signal: Signal) {
        // Our own child, not reaped yet: the pid is still ours.
        if let Ok(pid) = i32::try_from(self.pid()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// Waits up to `timeout` for exit; kills it after that. Returns whether it exited by itself,
    /// successfully or by the SIGINT it was sent.
    pub fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success() || status.signal() == Some(Signal::SIGINT as i32));
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Ok(false);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until `path` contains `needle` (e.g. a "listening" line), failing after `timeout`.
pub fn wait_for_text(path: &Path, needle: &str, timeout: Duration, proc: &mut Proc) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if fs::read_to_string(path).is_ok_and(|s| s.contains(needle)) {
            return Ok(());
        }
        if let Some(status) = proc.child.try_wait()? {
            bail!("{} exited ({status}) before it was ready; output in {}", proc.what, path.display());
        }
        if Instant::now() >= deadline {
            bail!("{} not ready within {timeout:?}; output in {}", proc.what, path.display());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Removes namespaces and cgroups left by earlier runs that were killed (their pid is gone).
pub fn remove_stale() {
    let alive = |pid: &str| pid.parse::<u32>().is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
    if let Ok(entries) = fs::read_dir("/var/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("mbench").and_then(|r| r.strip_suffix(['a', 'b']))
                && !alive(pid)
            {
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
            }
        }
    }
    if let Ok(root) = cgroup2_mount()
        && let Ok(entries) = fs::read_dir(&root)
    {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.strip_prefix("monitor-bench-").is_some_and(|pid| !alive(pid)) {
                evacuate(&e.path());
                let _ = fs::remove_dir(e.path());
            }
        }
    }
}
