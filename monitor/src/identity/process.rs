//! Process identity from /proc, cached per process. A pid is reused by the kernel, so an entry is
//! valid only for sockets created after that process started: the cache keeps the start time
//! and a socket older than the cached process is never charged to it.
//!
//! A process that `execve`s keeps its pid and start time but becomes another program: each entry
//! also keeps the executable it was read with (its device and inode: a binary replaced on disk
//! while it runs is still the same file) and the `comm`s (thread names) of the sockets it
//! answered. A socket whose `comm` the entry has not seen (another thread, a rename, or an exec)
//! makes the cache look at `/proc/<pid>/exe` once: the same file adds the `comm` to the entry,
//! another one means an exec, and the process is read again as a new entry. Sockets of the
//! program before the exec keep finding the old entry by their `comm`. An entry that has
//! remembered [`MAX_COMMS`] names looks at the executable at most once a second.

use std::{
    collections::{HashMap, VecDeque},
    io::Read as _,
    os::unix::ffi::OsStrExt as _,
    sync::Arc,
};

use jiff::Timestamp;
use procfs::process::Process;

use super::{
    android::{AndroidIdentity, Packages, UidKind},
    app::{App, AppSource, UNKNOWN_APP},
    emulator::emulator_app,
    rules::{AppRules, Subject},
};
use crate::{clock::Clock, escape, tracker::record::Owner};

/// Processes kept in the cache; the oldest are dropped beyond this.
pub const MAX_PROCESSES: usize = 65_536;
/// Entries kept per pid (successive processes that reused it).
const PER_PID: usize = 4;
/// Gone processes remembered with their kernel-data app ([`Identities::gone`]); all are
/// forgotten when there are more (then /proc is asked again, once each).
const MAX_GONE: usize = 4096;
/// Thread names remembered per entry (a set: a program with hundreds of named threads costs
/// one look at its executable per name); beyond them, a socket of another one costs a look at
/// the executable at most once a second ([`EXE_RECHECK_NS`]).
const MAX_COMMS: usize = 4096;
/// How often an entry full of thread names looks at its executable again.
const EXE_RECHECK_NS: u64 = 1_000_000_000;
/// Bytes of `/proc/<pid>/cmdline` read at most; a longer command line is cut and ends in
/// ` # truncated` (a bash comment, so it reads as no argument).
const MAX_CMDLINE: usize = 16 * 1024;

/// Why /proc gave no app ([`Identities::read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Miss {
    /// No process with the pid exists.
    Gone,
    /// A later process holds the pid, or it could not be read.
    Other,
}

/// A gone process as the kernel recorded it: (pid, uid, comm), all its kernel-data app depends on.
type GoneKey = (u32, u32, Arc<str>);

#[derive(Debug, Clone)]
struct Cached {
    /// Start of the process, boot-time nanoseconds.
    start_ns: u64,
    /// Shared with every record of the process (cloning it is a reference count).
    app: Arc<App>,
    /// Device and inode of `/proc/<pid>/exe` when the entry was read (`None`: unreadable):
    /// another file now is an exec.
    exe: Option<(u64, u64)>,
    /// Boot time of the last look at the executable (entries full of thread names).
    exe_checked_ns: u64,
    /// `comm`s of the sockets this entry answered (at most [`MAX_COMMS`]).
    comms: foldhash::HashSet<Arc<str>>,
}

/// App identities of processes, read from /proc when first seen.
pub struct Identities {
    rules: AppRules,
    clock: Clock,
    tick_ns: u64,
    cache: HashMap<u32, Vec<Cached>>,
    order: VecDeque<u32>,
    users: HashMap<u32, Option<String>>,
    /// Processes found gone from /proc, by (pid, uid, comm): when they were found gone
    /// (boot-time ns) and their app from kernel data. A socket that pid created before then was
    /// made by a process that is gone too (any process holding the pid later started after the
    /// check), and the kernel-data app depends on (pid, uid, comm) only: its records take this
    /// app without asking /proc again, so short-lived processes (a `curl` per request) cost one
    /// failed lookup, not one per record. (A fresh lookup allows a process one clock tick of
    /// start-time slack; the memo does not, which only keeps such a later process's pid
    /// reuse from taking an earlier socket.)
    gone: HashMap<GoneKey, (u64, Arc<App>)>,
    /// Android packages by app ID (a packages.list was found): an app UID's default name is its
    /// package.
    android: Option<Packages>,
    /// Lookups answered from /proc (now or earlier) vs. from the kernel's data only.
    pub stats: IdentityStats,
}

/// How identities were resolved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IdentityStats {
    /// Flows whose app came from /proc.
    pub from_proc: u64,
    /// Flows whose process was gone (or reused its pid): kernel data only.
    pub from_kernel: u64,
}

/// systemd unit in a cgroup path: the innermost `.service` or `.scope` component.
#[must_use]
pub fn unit_of(cgroup: &str) -> Option<String> {
    cgroup.rsplit('/').find(|c| c.ends_with(".service") || c.ends_with(".scope")).map(str::to_owned)
}

/// Container id (64 hex digits) named by a cgroup path: docker, podman, containerd, CRI-O.
#[must_use]
pub fn container_of(cgroup: &str) -> Option<String> {
    cgroup
        .split(['/', '-', '.', ':'])
        .find(|part| part.len() == 64 && part.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
}

impl Identities {
    /// An empty cache.
    #[must_use]
    pub fn new(rules: AppRules, clock: Clock) -> Self {
        let tick_ns = 1_000_000_000 / procfs::ticks_per_second().max(1);
        Self {
            rules,
            clock,
            tick_ns,
            cache: HashMap::new(),
            order: VecDeque::new(),
            users: HashMap::new(),
            gone: HashMap::new(),
            android: None,
            stats: IdentityStats::default(),
        }
    }

    /// Names app UIDs (10000 and above within each Android user) by their package from `packages`,
    /// unless an `[[apps]]` rule names them.
    #[must_use]
    pub fn with_android(mut self, packages: Packages) -> Self {
        self.android = Some(packages);
        self
    }

    /// The Android identity of an app, SDK sandbox or isolated UID, if a packages.list was read
    /// (system UIDs have none: they are named by process as elsewhere).
    fn android_of(&self, uid: u32) -> Option<AndroidIdentity> {
        let id = self.android.as_ref()?.identify(uid);
        (id.kind != UidKind::System).then_some(id)
    }

    /// Reads a process from /proc into the cache if it is not there yet (call as soon as a
    /// process is seen, so short-lived ones are caught). `created_ns` is the boot-time creation of
    /// the socket that revealed it.
    /// `comm` is the creating thread's, as the kernel recorded it.
    pub fn observe(&mut self, tgid: u32, created_ns: u64, comm: &str) {
        if self.cached(tgid, created_ns, comm).is_none() {
            let _ = self.read(tgid, created_ns, comm);
        }
    }

    /// The app of a flow's owner. `first_seen` is when the flow's socket was created (or found).
    pub fn app_for(&mut self, owner: &Owner, first_seen: Timestamp) -> Arc<App> {
        let created_ns = self.clock.boot_ns_of(first_seen);
        if let Some(app) = self.cached(owner.tgid, created_ns, &owner.comm) {
            self.stats.from_proc += 1;
            return app;
        }
        let key = (owner.tgid, owner.uid, Arc::clone(&owner.comm));
        if let Some((gone_ns, app)) = self.gone.get(&key)
            && created_ns <= *gone_ns
        {
            self.stats.from_kernel += 1;
            return Arc::clone(app);
        }
        // Boot time, as `created_ns`: a wall-clock step after start must not stretch the memo.
        let checked_ns = self.clock.boot_now();
        let miss = match self.read(owner.tgid, created_ns, &owner.comm) {
            Ok(app) => {
                self.stats.from_proc += 1;
                return app;
            }
            Err(miss) => miss,
        };
        self.stats.from_kernel += 1;
        let app = Arc::new(self.kernel_only(owner));
        if miss == Miss::Gone {
            if self.gone.len() >= MAX_GONE {
                self.gone.clear();
            }
            self.gone.insert(key, (checked_ns, Arc::clone(&app)));
        }
        app
    }

    /// The cached app of a socket of `tgid` created at `created_ns` by a thread named `comm`; `None`
    /// when no entry of a process started before it exists, or when the process has exec'd
    /// since its newest entry was read (see the module's documentation).
    fn cached(&mut self, tgid: u32, created_ns: u64, comm: &str) -> Option<Arc<App>> {
        let slack = created_ns.saturating_add(self.tick_ns);
        let entries = self.cache.get_mut(&tgid)?;
        let at = entries.iter().rposition(|c| c.start_ns <= slack)?;
        let (older, rest) = entries.split_at_mut(at);
        let newest = rest.first_mut()?;
        // Entries of the same process (successive programs after execs), newest first.
        let start = newest.start_ns;
        let answered = |c: &Cached| c.comms.contains(comm);
        if answered(newest) {
            return Some(Arc::clone(&newest.app));
        }
        if let Some(c) = older.iter().rev().take_while(|c| c.start_ns == start).find(|c| answered(c)) {
            return Some(Arc::clone(&c.app));
        }
        let full = newest.comms.len() >= MAX_COMMS;
        let now_ns = if full { self.clock.boot_now() } else { 0 };
        if full && now_ns.saturating_sub(newest.exe_checked_ns) < EXE_RECHECK_NS {
            return Some(Arc::clone(&newest.app));
        }
        newest.exe_checked_ns = now_ns;
        match exe_id(tgid) {
            // Gone, or unreadable now: nothing tells of an exec.
            None => {}
            Some(now) if newest.exe == Some(now) => {}
            Some(_) => return None,
        }
        if !full {
            newest.comms.insert(comm.into());
        }
        Some(Arc::clone(&newest.app))
    }

    fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|u| u.name))
            .clone()
    }

    /// Reads /proc/<tgid>: [`Miss::Gone`] when no such process exists now (none can have a pid
    /// beyond `i32`), [`Miss::Other`] when it started after the socket was created or cannot be
    /// read.
    fn read(&mut self, tgid: u32, created_ns: u64, comm: &str) -> Result<Arc<App>, Miss> {
        let gone =
            |e: procfs::ProcError| if matches!(e, procfs::ProcError::NotFound(_)) { Miss::Gone } else { Miss::Other };
        let p = Process::new(i32::try_from(tgid).map_err(|_| Miss::Gone)?).map_err(gone)?;
        let stat = p.stat().map_err(gone)?;
        // A zombie has no executable and no command line left: what the kernel recorded says
        // more than its /proc entry.
        if stat.state == 'Z' {
            return Err(Miss::Gone);
        }
        // Read again after an exec (an entry of this process exists): the program now running
        // must be the socket's, i.e. have its name; one more exec since would otherwise take the
        // socket (what the kernel recorded is the truth then).
        let start_ns = stat.starttime.saturating_mul(self.tick_ns);
        let reread = self.cache.get(&tgid).is_some_and(|e| e.iter().any(|c| c.start_ns == start_ns));
        if reread && stat.comm != comm {
            return Err(Miss::Other);
        }
        self.read_process(&p, &stat, tgid, created_ns, comm).ok_or(Miss::Other)
    }

    /// The app of process `p` (`tgid`, whose `stat` was read); `None` if it started after the
    /// socket was created.
    fn read_process(
        &mut self,
        p: &Process,
        stat: &procfs::process::Stat,
        tgid: u32,
        created_ns: u64,
        comm: &str,
    ) -> Option<Arc<App>> {
        let start_ns = stat.starttime.saturating_mul(self.tick_ns);
        if created_ns != 0 && start_ns > created_ns.saturating_add(self.tick_ns) {
            return None; // a newer process reusing the pid
        }
        let exe_file = exe_id(tgid);
        let exe = p.exe().ok().map(|e| escape::utf8_or_hex(without_deleted(&e).as_bytes()).into_owned());
        let (cmdline, emulator) = cmdline(p);
        let uid = real_uid(p)?;
        let cgroups = p.cgroups().ok();
        let cgroup = cgroups.as_ref().and_then(|list| {
            let all = &list.0;
            all.iter()
                .find(|g| g.hierarchy == 0)
                .or_else(|| all.iter().find(|g| g.controllers.iter().any(|c| c == "name=systemd")))
                .map(|g| g.pathname.clone())
        });
        let unit = cgroup.as_deref().and_then(unit_of);
        let container = cgroup.as_deref().and_then(container_of);
        let android = self.android_of(uid);
        let subject = Subject {
            exe: exe.as_deref(),
            comm: &stat.comm,
            unit: unit.as_deref(),
            uid,
            cgroup: cgroup.as_deref(),
            packages: android.as_ref().map_or(&[], |a| a.packages.as_slice()),
        };
        let name = self
            .rules
            .name_for(&subject)
            .map(str::to_owned)
            .or_else(|| android.as_ref().and_then(|a| a.package.clone()))
            .or(emulator)
            .or_else(|| exe.as_deref().and_then(|e| e.rsplit('/').next()).map(str::to_owned))
            .unwrap_or_else(|| stat.comm.clone());
        let name = if name.is_empty() { UNKNOWN_APP.to_owned() } else { name };
        let app = Arc::new(App {
            name,
            exe,
            cmdline,
            pid: tgid,
            start_time: stat.starttime,
            uid,
            user: self.user(uid),
            unit,
            cgroup,
            container,
            source: AppSource::Proc,
            android,
        });
        let entry = Cached {
            start_ns,
            app: Arc::clone(&app),
            exe: exe_file,
            exe_checked_ns: 0,
            comms: [comm.into()].into_iter().collect(),
        };
        self.insert(tgid, entry);
        Some(app)
    }

    fn insert(&mut self, tgid: u32, entry: Cached) {
        let entries = self.cache.entry(tgid).or_default();
        entries.push(entry);
        if entries.len() > PER_PID {
            entries.remove(0);
        }
        self.order.push_back(tgid);
        while self.order.len() > MAX_PROCESSES {
            if let Some(old) = self.order.pop_front()
                && let Some(list) = self.cache.get_mut(&old)
            {
                if !list.is_empty() {
                    list.remove(0);
                }
                if list.is_empty() {
                    self.cache.remove(&old);
                }
            }
        }
    }

    /// Identity from what the kernel recorded, for a process that is gone.
    fn kernel_only(&mut self, owner: &Owner) -> App {
        let android = self.android_of(owner.uid);
        let packages = android.as_ref().map_or(&[][..], |a| a.packages.as_slice());
        let subject = Subject { exe: None, comm: &owner.comm, unit: None, uid: owner.uid, cgroup: None, packages };
        let name = self
            .rules
            .name_for(&subject)
            .map(str::to_owned)
            .or_else(|| android.as_ref().and_then(|a| a.package.clone()))
            .unwrap_or_else(|| owner.comm.to_string());
        // No process at all (owner never found): a clear name, not an empty one.
        let name = if name.is_empty() { UNKNOWN_APP.to_owned() } else { name };
        App {
            name,
            exe: None,
            cmdline: None,
            pid: owner.tgid,
            start_time: 0,
            uid: owner.uid,
            user: self.user(owner.uid),
            unit: None,
            cgroup: None,
            container: None,
            source: AppSource::Kernel,
            android,
        }
    }
}

/// The path of a running executable without the ` (deleted)` the kernel appends once the file
/// was removed or replaced on disk (a package upgrade while the program runs): the program's
/// name stays its file's.
fn without_deleted(exe: &std::path::Path) -> &std::ffi::OsStr {
    let bytes = exe.as_os_str().as_bytes();
    match bytes.strip_suffix(b" (deleted)") {
        Some(path) if !exe.exists() => std::ffi::OsStr::from_bytes(path),
        _ => exe.as_os_str(),
    }
}

/// Device and inode of the executable of process `tgid` (the file itself, also when it was
/// deleted or replaced on disk since it started); `None` when it cannot be read.
fn exe_id(tgid: u32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(format!("/proc/{tgid}/exe")).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// The real uid of `p`, from the `Uid:` line of `/proc/<pid>/status` read as bytes: procfs'
/// `status()` fails on a process name that is not UTF-8 (the kernel writes such bytes raw; it
/// escapes newlines, so the name cannot forge a line).
fn real_uid(p: &Process) -> Option<u32> {
    let mut raw = Vec::new();
    p.open_relative("status").ok()?.take(64 * 1024).read_to_end(&mut raw).ok()?;
    let fields = raw.split(|b| *b == b'\n').find_map(|line| line.strip_prefix(b"Uid:"))?;
    let ruid = fields.split(u8::is_ascii_whitespace).find(|f| !f.is_empty())?;
    std::str::from_utf8(ruid).ok()?.parse().ok()
}

/// The command line of `p`, its arguments quoted for bash ([`escape::shell_words`]: lossless,
/// also for arguments that are not UTF-8); `None` when unreadable or empty (kernel threads,
/// zombies). Trailing empty arguments are dropped: a process that rewrote its title
/// (setproctitle) pads the rest of its argument area with NULs.
/// The command line, quoted for bash, and the emulator app name it gives (if any).
fn cmdline(p: &Process) -> (Option<String>, Option<String>) {
    let mut raw = Vec::new();
    let limit = u64::try_from(MAX_CMDLINE + 1).unwrap_or(u64::MAX);
    let Some(mut file) = p.open_relative("cmdline").ok() else { return (None, None) };
    if (&mut file).take(limit).read_to_end(&mut raw).is_err() {
        return (None, None);
    }
    let truncated = raw.len() > MAX_CMDLINE;
    raw.truncate(MAX_CMDLINE);
    let Some(end) = raw.iter().rposition(|b| *b != 0).map(|e| e + 1) else { return (None, None) };
    let emulator = emulator_app(raw[..end].split(|b| *b == 0));
    let mut line = escape::shell_words(raw[..end].split(|b| *b == 0));
    if truncated {
        line.push_str(" # truncated");
    }
    (Some(line), emulator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{identity::rules::AppRule, tracker::record::OwnerSource};

    fn owner(tgid: u32) -> Owner {
        Owner {
            tgid,
            pid: tgid,
            uid: 4242,
            gid: 0,
            comm: "gone-proc".into(),
            cgroup_id: 0,
            source: OwnerSource::SockCreate,
        }
    }

    #[test]
    fn units_and_containers_from_cgroup_paths() {
        assert_eq!(unit_of("/system.slice/nginx.service").as_deref(), Some("nginx.service"));
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-12.scope").as_deref(),
            Some("app-firefox-12.scope")
        );
        assert_eq!(unit_of("/"), None);
        let id = "a".repeat(64);
        assert_eq!(container_of(&format!("/system.slice/docker-{id}.scope")), Some(id.clone()));
        assert_eq!(container_of(&format!("/kubepods/besteffort/pod1/cri-containerd-{id}.scope")), Some(id.clone()));
        assert_eq!(container_of(&format!("/docker/{id}")), Some(id));
        assert_eq!(container_of("/user.slice"), None);
    }

    #[test]
    fn live_process_is_read_from_proc_with_its_start_time() {
        let clock = Clock::now();
        let mut ids = Identities::new(AppRules::default(), clock);
        let me = owner(std::process::id());
        let app = ids.app_for(&me, clock.wall(Clock::boot_ns()));
        assert_eq!(app.source, AppSource::Proc);
        assert_eq!(app.pid, std::process::id());
        let exe = std::env::current_exe().unwrap();
        assert_eq!(app.exe.as_deref(), exe.to_str());
        assert_eq!(app.name, exe.file_name().unwrap().to_str().unwrap());
        assert!(app.start_time > 0);
        assert!(app.cmdline.is_some());
    }

    /// A process that `execve`s another program keeps its pid and start time: sockets of the new
    /// program (another thread name) are charged to it, those of the old one stay charged to the
    /// old program, and another thread of the new program costs no second read (the audit's
    /// case: the new program's sockets were charged to the old one).
    #[test]
    fn a_new_program_after_execve_is_a_new_app_and_the_old_ones_sockets_keep_theirs() {
        use std::process::{Command, Stdio};
        let clock = Clock::now();
        let mut ids = Identities::new(AppRules::default(), clock);
        let mut child =
            Command::new("sh").args(["-c", "read go; exec sleep 30"]).stdin(Stdio::piped()).spawn().unwrap();
        let pid = child.id();
        let proc_exe = || std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        // Until the spawn's own exec is done (before it, the child is a copy of this test).
        let sh_exe = {
            let me = std::env::current_exe().ok();
            let mut exe = proc_exe();
            for _ in 0..200 {
                if exe.is_some() && exe != me {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
                exe = proc_exe();
            }
            exe.unwrap()
        };
        let socket_of = |comm: &str| Owner { comm: comm.into(), ..owner(pid) };
        let now = || clock.wall(Clock::boot_ns());
        let before = ids.app_for(&socket_of("sh"), now());
        assert_eq!(before.exe.as_deref(), sh_exe.to_str());
        // Many thread names before the exec (the audit's case: past 32 names the exec went unseen).
        for i in 0..40 {
            assert!(Arc::ptr_eq(&ids.app_for(&socket_of(&format!("t{i}")), now()), &before));
        }
        // The exec.
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"go\n").unwrap();
        let mut exe = proc_exe();
        for _ in 0..200 {
            if exe.as_ref().is_some_and(|e| e.ends_with("sleep")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            exe = proc_exe();
        }
        let sleep_exe = exe.unwrap();
        assert!(sleep_exe.ends_with("sleep"), "{sleep_exe:?}");
        // A socket of a program between the two (its name is neither's: it exec'd again before its
        // socket was read): what the kernel recorded, not the program running now.
        let between = ids.app_for(&socket_of("bash"), now());
        let after = ids.app_for(&socket_of("sleep"), now());
        let old_socket = ids.app_for(&socket_of("sh"), now());
        let other_thread = ids.app_for(&socket_of("worker"), now());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!((after.exe.as_deref(), after.name.as_str()), (sleep_exe.to_str(), "sleep"));
        assert!(after.cmdline.as_deref().is_some_and(|c| c.starts_with("sleep 30")), "{:?}", after.cmdline);
        assert_eq!(after.pid, before.pid);
        assert_eq!(old_socket.exe, before.exe, "a socket of the program before the exec keeps its app");
        assert!(Arc::ptr_eq(&other_thread, &after), "another thread of the new program: the same entry");
        assert_eq!((between.name.as_str(), between.source, between.exe.as_deref()), ("bash", AppSource::Kernel, None));
        assert_eq!((ids.stats.from_proc, ids.stats.from_kernel), (44, 1));
    }

    /// A binary replaced on disk while it runs (a package upgrade renames the new file over it:
    /// `/proc/<pid>/exe` then reads `... (deleted)`) is no exec: a socket of another thread keeps
    /// the app read first (review finding: it was read again and named `mysleep (deleted)`).
    /// More thread names than an entry remembers keep it too.
    #[test]
    fn a_binary_replaced_on_disk_while_it_runs_is_not_an_exec() {
        use std::process::Command;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("mysleep");
        let sleep =
            String::from_utf8(Command::new("sh").args(["-c", "command -v sleep"]).output().unwrap().stdout).unwrap();
        std::fs::copy(sleep.trim(), &bin).unwrap();
        let mut child = Command::new(&bin).arg("30").spawn().unwrap();
        let pid = child.id();
        for _ in 0..200 {
            if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == bin) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let clock = Clock::now();
        let mut ids = Identities::new(AppRules::default(), clock);
        let socket_of = |comm: &str| Owner { comm: comm.into(), ..owner(pid) };
        let now = || clock.wall(Clock::boot_ns());
        let first = ids.app_for(&socket_of("mysleep"), now());
        assert_eq!(first.name, "mysleep");
        // The upgrade: a new file renamed over the old one.
        let new = dir.path().join("mysleep.new");
        std::fs::copy(sleep.trim(), &new).unwrap();
        std::fs::rename(&new, &bin).unwrap();
        let link = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        let other_thread = ids.app_for(&socket_of("worker"), now());
        let many: Vec<Arc<App>> =
            (0..2 * MAX_COMMS).map(|i| ids.app_for(&socket_of(&format!("w{i}")), now())).collect();
        let _ = child.kill();
        let _ = child.wait();
        // A second process of the old file, first read after the replacement: named after the
        // file, not `mysleep (deleted)` (audit).
        let mut later = Command::new(&bin).arg("30").spawn().unwrap();
        let later_exe = format!("/proc/{}/exe", later.id());
        for _ in 0..200 {
            if std::fs::read_link(&later_exe).is_ok_and(|e| e == bin) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::fs::copy(sleep.trim(), &new).unwrap();
        std::fs::rename(&new, &bin).unwrap();
        let late_link = std::fs::read_link(&later_exe).unwrap();
        let read_late = ids.app_for(&Owner { comm: "mysleep".into(), ..owner(later.id()) }, now());
        let _ = later.kill();
        let _ = later.wait();
        assert!(late_link.to_string_lossy().ends_with("mysleep (deleted)"), "{late_link:?}");
        assert_eq!(read_late.name, "mysleep", "{read_late:?}");
        assert_eq!(read_late.exe.as_deref(), bin.to_str(), "{read_late:?}");
        assert!(link.to_string_lossy().ends_with("(deleted)"), "{link:?}");
        assert!(Arc::ptr_eq(&other_thread, &first), "{other_thread:?}");
        assert!(many.iter().all(|a| Arc::ptr_eq(a, &first)), "every thread name: the same app");
    }

    /// A process that exited and was not waited for (a zombie) has no executable or command
    /// line left: its app is what the kernel recorded (`source: kernel`), not a /proc read with
    /// nothing in it (audit: `source: proc` without exe and cmdline).
    #[test]
    fn a_zombie_is_a_gone_process() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let stat = || Process::new(i32::try_from(pid).unwrap()).and_then(|p| p.stat()).map(|s| s.state);
        for _ in 0..200 {
            if matches!(stat(), Ok('Z')) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(matches!(stat(), Ok('Z')), "{:?}", stat());
        let clock = Clock::now();
        let mut ids = Identities::new(AppRules::default(), clock);
        let app = ids.app_for(&Owner { comm: "true".into(), ..owner(pid) }, clock.wall(Clock::boot_ns()));
        let _ = child.wait();
        assert_eq!((app.source, app.name.as_str()), (AppSource::Kernel, "true"));
    }

    #[test]
    fn non_utf8_arguments_keep_the_command_line_and_its_argument_boundaries() {
        use std::{ffi::OsStr, os::unix::ffi::OsStrExt as _, process::Command};
        let args: [&[u8]; 6] = [b"-c", b"sleep 30; :", b"x\xff\x1b]0;t\x07", b"a b", b"", b"end"];
        let mut child = Command::new("sh").args(args.map(OsStr::from_bytes)).spawn().unwrap();
        let p = Process::new(i32::try_from(child.id()).unwrap()).unwrap();
        // The spawn returns when exec is past its point of no return, before the kernel has set up
        // the new arguments: until then the command line reads empty.
        let mut line = None;
        for _ in 0..200 {
            line = cmdline(&p).0;
            if line.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let line = line.expect("a command line, although one argument is not UTF-8");
        assert_eq!(line, r"sh -c $'sleep 30; :' $'x\xFF\e]0;t\a' $'a b' '' end");
        // bash reads it back as the same arguments.
        let out = Command::new("bash").arg("-c").arg(format!("printf '%s\\0' {line}")).output().unwrap();
        let expected: Vec<u8> =
            [b"sh".as_slice()].iter().chain(&args).flat_map(|a| a.iter().copied().chain([0])).collect();
        assert_eq!(out.stdout, expected);
    }

    #[test]
    fn process_with_a_non_utf8_name_keeps_its_uid_exe_and_command_line() {
        use std::{
            ffi::OsStr,
            fs,
            os::unix::{ffi::OsStrExt as _, fs::PermissionsExt as _, process::CommandExt as _},
            process::Command,
        };
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.path().join(OsStr::from_bytes(b"sl\xffp"));
        fs::copy("/bin/sleep", &exe).unwrap();
        let mut command = Command::new(&exe);
        command.arg("30");
        // As root (CI), run it as another user, so a fallback to uid 0 cannot pass.
        let uid = if nix::unistd::geteuid().is_root() { 4242 } else { nix::unistd::getuid().as_raw() };
        if nix::unistd::geteuid().is_root() {
            command.uid(uid);
        }
        let mut child = command.spawn().unwrap();
        let pid = child.id();
        assert!(Process::new(i32::try_from(pid).unwrap()).unwrap().status().is_err(), "procfs cannot read its status");
        let clock = Clock::now();
        let mut ids = Identities::new(AppRules::default(), clock);
        let mut app = ids.app_for(&owner(pid), clock.wall(Clock::boot_ns()));
        for _ in 0..200 {
            if app.cmdline.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10)); // exec still setting up
            ids = Identities::new(AppRules::default(), clock);
            app = ids.app_for(&owner(pid), clock.wall(Clock::boot_ns()));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(app.source, AppSource::Proc);
        assert_eq!(app.uid, uid);
        assert_eq!(app.name, "sl\\xffp");
        let dir = dir.path().to_str().unwrap();
        assert_eq!(app.exe.as_deref(), Some(format!("{dir}/sl\\xffp").as_str()));
        assert_eq!(app.cmdline.as_deref(), Some(format!("$'{dir}/sl\\xFFp' 30").as_str()));
    }

    /// A gone process costs one /proc lookup: its later records share the kernel-data app, for
    /// sockets created before it was found gone (a later socket of that pid is another process).
    #[test]
    fn records_of_a_gone_process_share_one_kernel_data_app() {
        let clock = Clock::now();
        let mut ids = Identities::new(AppRules::default(), clock);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        let (pid, before) = (child.id(), clock.wall(Clock::boot_ns()));
        let first = ids.app_for(&owner(pid), before);
        assert_eq!((first.source, first.name.as_str(), first.pid), (AppSource::Kernel, "gone-proc", pid));
        let again = ids.app_for(&owner(pid), before);
        assert!(Arc::ptr_eq(&first, &again), "the second record takes the remembered app");
        let mut renamed = owner(pid);
        renamed.comm = "other".into();
        let other = ids.app_for(&renamed, before);
        assert_eq!((other.name.as_str(), Arc::ptr_eq(&first, &other)), ("other", false));
        let later = ids.app_for(&owner(pid), clock.wall(Clock::boot_ns() + 10_000_000_000));
        assert!(!Arc::ptr_eq(&first, &later), "a socket created after the check is looked up again");
        assert_eq!((ids.stats.from_kernel, ids.stats.from_proc), (4, 0));
    }

    #[test]
    fn socket_older_than_the_process_holding_its_pid_falls_back_to_kernel_data() {
        let clock = Clock::now();
        let rules =
            AppRules::compile(&[AppRule { name: "grouped".into(), uid: vec![4242], ..AppRule::default() }]).unwrap();
        let mut ids = Identities::new(rules, clock);
        // A socket "created" at boot time 1 s: this test process started later, so a pid match
        // must not charge the socket to it.
        let app = ids.app_for(&owner(std::process::id()), clock.wall(1_000_000_000));
        assert_eq!(app.source, AppSource::Kernel);
        assert_eq!(app.name, "grouped", "rules apply to kernel-only identities too");
        assert_eq!(ids.stats.from_kernel, 1);
        let gone = ids.app_for(&owner(u32::MAX - 1), clock.wall(Clock::boot_ns()));
        assert_eq!((gone.source, gone.name.as_str()), (AppSource::Kernel, "grouped"));
    }

    #[test]
    fn android_app_uids_are_named_by_their_package_unless_a_rule_names_them() {
        let clock = Clock::now();
        let packages = Packages::parse(
            "com.zhiliaoapp.musically 10123 0 /data/user/0/com.zhiliaoapp.musically default 3003\n\
             com.android.shell 2000 0 /data/user_de/0/com.android.shell platform none\n",
        );
        let mut ids = Identities::new(AppRules::default(), clock).with_android(packages.clone());
        let gone = |uid: u32| Owner {
            tgid: u32::MAX - 1,
            pid: u32::MAX - 1,
            uid,
            gid: uid,
            comm: "Binder:123_4".into(),
            cgroup_id: 0,
            source: OwnerSource::SockCreate,
        };
        let now = clock.wall(Clock::boot_ns());
        let tiktok = ids.app_for(&gone(10_123), now);
        assert_eq!(tiktok.name, "com.zhiliaoapp.musically");
        let android = tiktok.android.as_ref().expect("android identity");
        assert_eq!(
            (android.package.as_deref(), android.user_id, android.app_id),
            (Some(tiktok.name.as_str()), 0, 10_123)
        );
        let work = ids.app_for(&gone(1_010_123), now);
        assert_eq!(work.name, "com.zhiliaoapp.musically", "second user");
        assert_eq!(work.android.as_ref().map(|a| (a.user_id, a.app_id)), Some((10, 10_123)));
        let sandbox = ids.app_for(&gone(20_123), now);
        assert_eq!(sandbox.android.as_ref().map(|a| a.kind), Some(UidKind::SdkSandbox));
        assert_eq!(sandbox.name, "com.zhiliaoapp.musically", "an SDK sandbox is charged to its app's package");
        let system = ids.app_for(&gone(2000), now);
        assert_eq!(system.name, "Binder:123_4", "system uids keep their process name");
        assert_eq!(system.android, None);
        assert_eq!(ids.app_for(&gone(10_124), now).name, "Binder:123_4", "unknown app id");
        let rules =
            AppRules::compile(&[AppRule { name: "tiktok".into(), uid: vec![10_123], ..AppRule::default() }]).unwrap();
        let mut ids = Identities::new(rules, clock).with_android(packages.clone());
        assert_eq!(ids.app_for(&gone(10_123), now).name, "tiktok");
        let rules = AppRules::compile(&[AppRule {
            name: "tiktok".into(),
            package: vec!["com.zhiliaoapp.*".into()],
            ..AppRule::default()
        }])
        .unwrap();
        let mut ids = Identities::new(rules, clock).with_android(packages);
        let app = ids.app_for(&gone(1_010_123), now);
        assert_eq!(app.name, "tiktok", "package rule");
        assert_eq!(app.android.as_ref().and_then(|a| a.package.as_deref()), Some("com.zhiliaoapp.musically"));
    }

    #[test]
    fn flow_without_any_owner_gets_a_clear_app_name_not_an_empty_one() {
        let clock = Clock::now();
        let mut ids = Identities::new(AppRules::default(), clock);
        let nobody =
            Owner { tgid: 0, pid: 0, uid: 0, gid: 0, comm: "".into(), cgroup_id: 0, source: OwnerSource::Unknown };
        let app = ids.app_for(&nobody, clock.wall(Clock::boot_ns()));
        assert_eq!((app.name.as_str(), app.source), (UNKNOWN_APP, AppSource::Kernel));
    }
}
