//! Process identity from /proc, cached per process. A pid is reused by the kernel, so an entry is
//! valid only for sockets created after that process started: the cache keeps the start time
//! and a socket older than the cached process is never charged to it.
//!
//! A process that `execve`s keeps its pid and start time but becomes another program. Owners
//! recorded by the kernel carry a mark of the program the process ran when it made the socket
//! ([`Owner::exec_mark`]: where that program's stack was placed, which every exec draws afresh,
//! and which `/proc/<pid>/stat` shows as `startstack`): an entry answers only sockets of the
//! program it was read from, and a socket whose program has been replaced by an exec is named
//! from the kernel's record, whatever the two programs are called. Where either side has no mark
//! (kernels without the offsets, `/proc` withholding it) the names decide: each entry
//! also keeps the executable it was read with (its device and inode: a binary replaced on disk
//! while it runs is still the same file) and the `comm`s of the sockets it answered (the
//! process's name when the socket was made, its main thread's; without the kernel's task offsets
//! the creating thread's). A socket whose `comm` the entry has not seen (a rename, an exec, or
//! another thread)
//! makes the cache look at `/proc/<pid>/exe` once: the same file adds the `comm` to the entry,
//! another one means an exec, and the process is read again as a new entry. Sockets of the
//! program before the exec keep finding the old entry by their `comm`. An entry that has
//! remembered [`MAX_COMMS`] names looks at the executable at most once a second.
//!
//! A pid is reused once the process holding it exits. Owners recorded by the kernel carry their
//! process's start ([`Owner::start_cs`]): an entry answers only sockets of the process it was read
//! from, and a socket whose process is gone while another holds its pid is named from the
//! kernel's record, not after the stranger. A process that took the pid within the same
//! hundredth of a second has the same start but another program mark, which tells it apart
//! (without marks only its name can). Owners without a start (0: kernels without the task
//! offsets) fall back to the start time check alone, which cannot tell a later process with the
//! same name or executable from the one that created the socket.

use std::{
    collections::{HashMap, VecDeque},
    io::Read as _,
    os::unix::{ffi::OsStrExt as _, fs::MetadataExt as _},
    sync::Arc,
};

use jiff::Timestamp;
use procfs::process::Process;

use self::names::{names_a_thread, names_the_program, process_comm};
use super::{
    android::{AndroidIdentity, Packages, UidKind},
    app::{App, AppSource, UNKNOWN_APP},
    emulator::emulator_app,
    rules::{AppRules, Subject},
};
use crate::{clock::Clock, escape, tracker::record::Owner};

/// Processes kept in the cache; the oldest are dropped beyond this.
pub const MAX_PROCESSES: usize = 65_536;
/// Bytes the cache's entries may take (as [`Cached::cost`] counts them); the oldest are dropped
/// beyond this too: a process's command line may take up to [`MAX_CMDLINE`] (and more quoted),
/// so a count alone let a host of long-lived JVMs take a gigabyte (a review).
pub const MAX_CACHE_BYTES: usize = 32 << 20;
/// What one remembered thread name costs an entry, roughly (a shared string and its set slot).
const COMM_COST: usize = 64;
/// Entries kept per pid (successive processes that reused it, successive programs of one): a
/// long-lived socket of a program that more than this many followed under its pid would lose its
/// entry and read the kernel's record from then on (a check: 4 flipped a chain of execs).
const PER_PID: usize = 16;
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
    /// No process with the pid exists (or it is exiting).
    Gone,
    /// The process runs another program than the socket's: one that replaced it by an exec, or
    /// the program of another process that took the pid within the same hundredth of a second
    /// (their marks differ, [`Owner::exec_mark`]). The socket's program will not run there again.
    Replaced,
    /// A later process holds the pid, it is between two programs (an exec under way), or it could
    /// not be read.
    Other,
}

/// A gone process or program as the kernel recorded it: (pid, uid, comm), all its kernel-data app
/// depends on, its start (0 unknown), which tells it from a later process with the same three,
/// and its program's mark (0 unknown), which tells it from another program of that process.
type GoneKey = (u32, u32, Arc<str>, u32, u32);

/// `/proc/<pid>/stat`'s start time (clock ticks since boot) as an owner carries it
/// ([`Owner::start_cs`]).
#[must_use]
pub fn start_cs_of_ticks(ticks: u64) -> u32 {
    monitor_common::sock::start_units(ticks.saturating_mul(tick_ns()))
}

/// Nanoseconds per clock tick of `/proc/<pid>/stat` (`USER_HZ`).
fn tick_ns() -> u64 {
    1_000_000_000 / procfs::ticks_per_second().max(1)
}

/// Whether a process that started at `start_ns` (boot time, from /proc) is the one an owner
/// recorded with `start_cs` (0: unknown, any is). Where `/proc`'s tick is the unit (`USER_HZ` =
/// 100, as on every mainstream architecture) both round the same start down alike: equal, or it
/// is another process (one that took the pid in the same hundredth of a second cannot be told
/// apart); with another tick, one unit of slack.
fn same_process(start_ns: u64, start_cs: u32) -> bool {
    let diff = monitor_common::sock::start_units(start_ns).wrapping_sub(start_cs);
    start_cs == 0 || diff == 0 || (tick_ns() != monitor_common::sock::START_UNIT_NS && matches!(diff, 1 | u32::MAX))
}

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
    /// The mark of the program read ([`Owner::exec_mark`] of `/proc/<pid>/stat`'s `startstack`; 0
    /// withheld). Another mark is always another program; the same one is the same program only
    /// where its stack was placed at random (`randomized`): with a fixed layout two programs'
    /// stacks may fall at the same place, and the names decide as without marks.
    exec_mark: u32,
    /// Whether its stack was placed at random ([`Identities::stacks_randomized`]).
    randomized: bool,
}

impl Cached {
    /// Bytes the entry takes, roughly: its structs, the app's strings and its thread names.
    fn cost(&self) -> usize {
        let app = &self.app;
        let text = |t: &Option<String>| t.as_ref().map_or(0, String::len);
        size_of::<Self>()
            + size_of::<App>()
            + app.name.len()
            + text(&app.exe)
            + text(&app.cmdline)
            + text(&app.user)
            + text(&app.unit)
            + text(&app.cgroup)
            + text(&app.container)
            + self.comms.len() * COMM_COST
    }
}

/// App identities of processes, read from /proc when first seen.
pub struct Identities {
    rules: AppRules,
    clock: Clock,
    tick_ns: u64,
    cache: HashMap<u32, Vec<Cached>>,
    order: VecDeque<u32>,
    /// What the cache's entries take ([`Cached::cost`]), at most about [`MAX_CACHE_BYTES`].
    bytes: usize,
    users: HashMap<u32, Option<String>>,
    /// Processes found gone from /proc, by (pid, uid, comm): when they were found gone
    /// (boot-time ns) and their app from kernel data. A socket that pid created before then was
    /// made by a process that is gone too (any process holding the pid later started after the
    /// check), and the kernel-data app depends on (pid, uid, comm) only: its records take this
    /// app without asking /proc again, so short-lived processes (a `curl` per request) cost one
    /// failed lookup, not one per record. (A fresh lookup allows a process one clock tick of
    /// start-time slack; the memo does not, which only keeps such a later process's pid
    /// reuse from taking an earlier socket.) With the process's start in the key (owners that
    /// carry it), the entry is that process's, whenever its sockets were made.
    gone: HashMap<GoneKey, (u64, Arc<App>)>,
    /// Android packages by app ID (a packages.list was found): an app UID's default name is its
    /// package.
    android: Option<Packages>,
    /// Whether `/proc` shows the processes by the pids the kernel records (the daemon runs in the
    /// host's PID namespace: the daemon's pipeline sets [`Identities::without_proc`] otherwise);
    /// without it every app comes from the kernel's data.
    proc: bool,
    /// Whether address space layout randomization is on (`kernel.randomize_va_space`), once read
    /// ([`Identities::stacks_randomized`]).
    aslr: Option<bool>,
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

/// Container id (64 hex digits) named by a cgroup path: docker, podman, containerd, CRI-O; the
/// innermost one of nested containers (the process's own).
#[must_use]
pub fn container_of(cgroup: &str) -> Option<String> {
    cgroup
        .rsplit(['/', '-', '.', ':'])
        .find(|part| part.len() == 64 && part.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
}

impl Identities {
    /// An empty cache.
    #[must_use]
    pub fn new(rules: AppRules, clock: Clock) -> Self {
        let tick_ns = tick_ns();
        Self {
            rules,
            clock,
            tick_ns,
            cache: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            users: HashMap::new(),
            gone: HashMap::new(),
            android: None,
            proc: true,
            aslr: None,
            stats: IdentityStats::default(),
        }
    }

    /// The same, reading nothing from `/proc` (as in a PID namespace other than the host's).
    #[must_use]
    pub fn without_proc(mut self) -> Self {
        self.proc = false;
        self
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
    /// `comm` is the creating thread's, as the kernel recorded it; `start_cs` the process's start
    /// ([`Owner::start_cs`], 0 unknown), `exec_mark` its program's ([`Owner::exec_mark`], 0
    /// unknown).
    pub fn observe(&mut self, tgid: u32, created_ns: u64, comm: &str, start_cs: u32, exec_mark: u32) {
        if self.proc && self.cached(tgid, created_ns, comm, start_cs, exec_mark).is_none() {
            let _ = self.read(tgid, created_ns, comm, start_cs, exec_mark);
        }
    }

    /// The app of a flow's owner. `first_seen` is when the flow's socket was created (or found).
    pub fn app_for(&mut self, owner: &Owner, first_seen: Timestamp) -> Arc<App> {
        let created_ns = self.clock.boot_ns_of(first_seen);
        if !self.proc {
            return self.kernel_app(owner);
        }
        if let Some(app) = self.cached(owner.tgid, created_ns, &owner.comm, owner.start_cs, owner.exec_mark) {
            self.stats.from_proc += 1;
            return app;
        }
        let key = (owner.tgid, owner.uid, Arc::clone(&owner.comm), owner.start_cs, owner.exec_mark);
        // A process known by its start, or a program by its mark, is that one whenever its socket
        // was made.
        if let Some((gone_ns, app)) = self.gone.get(&key)
            && (created_ns <= *gone_ns || owner.start_cs != 0 || owner.exec_mark != 0)
        {
            self.stats.from_kernel += 1;
            return Arc::clone(app);
        }
        // Boot time, as `created_ns`: a wall-clock step after start must not stretch the memo.
        let checked_ns = self.clock.boot_now();
        let miss = match self.read(owner.tgid, created_ns, &owner.comm, owner.start_cs, owner.exec_mark) {
            Ok(app) => {
                self.stats.from_proc += 1;
                return app;
            }
            Err(miss) => miss,
        };
        self.stats.from_kernel += 1;
        let app = Arc::new(self.kernel_only(owner));
        // Remembered when for good: not while another process's or a program's read may follow.
        if matches!(miss, Miss::Gone | Miss::Replaced) {
            if self.gone.len() >= MAX_GONE {
                self.gone.clear();
            }
            self.gone.insert(key, (checked_ns, Arc::clone(&app)));
        }
        app
    }

    /// The kernel-data app of `owner`, made once per (pid, uid, comm, start) while they fit in
    /// the memo of gone processes.
    fn kernel_app(&mut self, owner: &Owner) -> Arc<App> {
        self.stats.from_kernel += 1;
        let key = (owner.tgid, owner.uid, Arc::clone(&owner.comm), owner.start_cs, owner.exec_mark);
        if let Some((_, app)) = self.gone.get(&key) {
            return Arc::clone(app);
        }
        let app = Arc::new(self.kernel_only(owner));
        if self.gone.len() >= MAX_GONE {
            self.gone.clear();
        }
        self.gone.insert(key, (u64::MAX, Arc::clone(&app)));
        app
    }

    /// The cached app of a socket of `tgid` created at `created_ns` by a thread named `comm` of
    /// the process that started at `start_cs` (0 unknown) while it ran the program `exec_mark`
    /// (0 unknown); `None` when no entry of that process (or, start unknown, of one started before
    /// the socket) and program exists, or when the process has exec'd since its newest entry was
    /// read (see the module's documentation).
    fn cached(&mut self, tgid: u32, created_ns: u64, comm: &str, start_cs: u32, exec_mark: u32) -> Option<Arc<App>> {
        let slack = created_ns.saturating_add(self.tick_ns);
        let entries = self.cache.get_mut(&tgid)?;
        let at = entries.iter().rposition(|c| c.start_ns <= slack && same_process(c.start_ns, start_cs))?;
        let (older, rest) = entries.split_at_mut(at);
        let newest = rest.first_mut()?;
        // Entries of the same process (successive programs after execs), newest first.
        let start = newest.start_ns;
        let answered = |c: &Cached| c.comms.contains(comm);
        let marked = exec_mark != 0 && newest.exec_mark != 0;
        if answered(newest) && (!marked || newest.exec_mark == exec_mark) {
            return Some(Arc::clone(&newest.app));
        }
        let mut earlier = older.iter().rev().take_while(|c| c.start_ns == start);
        if marked {
            // Another program than the newest entry's: an earlier one of the process with the
            // socket's mark (whatever its thread names where its stack was placed at random, else
            // one that answered the name too), or one not read yet (a check: under `setarch -R`
            // the new program's socket went to the wrapper's entry by name).
            if newest.exec_mark != exec_mark {
                let same = |c: &&Cached| c.exec_mark == exec_mark && (c.randomized || answered(c));
                return earlier.find(same).map(|c| Arc::clone(&c.app));
            }
            // The newest entry's mark: its program, unless another one's stack fell at the same
            // place (a fixed layout), which its executable tells below.
        } else if let Some(c) = earlier.find(|c| answered(c)) {
            return Some(Arc::clone(&c.app));
        }
        let full = newest.comms.len() >= MAX_COMMS;
        let now_ns = if full { self.clock.boot_now() } else { 0 };
        if full && now_ns.saturating_sub(newest.exe_checked_ns) < EXE_RECHECK_NS {
            return Some(Arc::clone(&newest.app));
        }
        newest.exe_checked_ns = now_ns;
        match exe_lookup(tgid) {
            // Unreadable now (permissions): nothing tells of an exec.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {}
            // Gone (or exiting): a name it never answered may be another program it exec'd before
            // it exited, whose executable can no longer be read: what the kernel recorded says
            // more than the cached program (the caller finds the process gone).
            Err(_) => return None,
            Ok(now) if newest.exe == Some(now) => {}
            Ok(_) => return None,
        }
        if !full && newest.comms.insert(comm.into()) {
            self.bytes += COMM_COST;
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
    /// beyond `i32`) or another one than the owner's (`start_cs`, when known) holds the pid,
    /// [`Miss::Other`] when it started after the socket was created, runs another program than
    /// the socket's (`exec_mark`, when known) or cannot be read.
    fn read(
        &mut self,
        tgid: u32,
        created_ns: u64,
        comm: &str,
        start_cs: u32,
        exec_mark: u32,
    ) -> Result<Arc<App>, Miss> {
        let gone =
            |e: procfs::ProcError| if matches!(e, procfs::ProcError::NotFound(_)) { Miss::Gone } else { Miss::Other };
        let p = Process::new(i32::try_from(tgid).map_err(|_| Miss::Gone)?).map_err(gone)?;
        let stat = p.stat().map_err(gone)?;
        // A zombie has no executable and no command line left: what the kernel recorded says
        // more than its /proc entry. Unless only its main thread exited (`pthread_exit`) while
        // others run: the process lives, and is read through one of them (its start stays the
        // main thread's, as the kernel records it).
        let zombie = stat.state == 'Z';
        let p = if zombie { live_thread(&p, tgid).ok_or(Miss::Gone)? } else { p };
        let start_ns = stat.starttime.saturating_mul(self.tick_ns);
        // Another process holds the pid: the owner's has exited.
        if !same_process(start_ns, start_cs) {
            return Err(Miss::Gone);
        }
        // The program running now (a zombie leader has no memory left: its live thread's).
        let live = if zombie { p.stat().ok() } else { None };
        let now = live.as_ref().unwrap_or(&stat);
        let now_mark = monitor_common::sock::exec_mark_number(now.startstack);
        // No mark although the kernel recorded one: the process is exiting, or between two
        // programs (an exec has replaced its memory and not yet placed the new stack), unless
        // `/proc` withholds its memory's layout (its code's start then reads 1) or it is a kernel
        // thread. Nothing running now can be the socket's program.
        if exec_mark != 0 && now_mark == 0 && now.startcode != 1 && now.flags & PF_KTHREAD == 0 {
            return Err(if now.flags & PF_EXITING != 0 { Miss::Gone } else { Miss::Other });
        }
        let marked = exec_mark != 0 && now_mark != 0;
        // Another program than the socket's: the process exec'd since it made the socket (or
        // another process took the pid within the same hundredth of a second).
        if marked && now_mark != exec_mark {
            return Err(Miss::Replaced);
        }
        let reread = self.cache.get(&tgid).is_some_and(|e| e.iter().any(|c| c.start_ns == start_ns));
        let proc_comm = process_comm(tgid, &stat);
        // The names must agree, unless the marks tell the socket's program where the kernel places
        // stacks at random (with a fixed layout two programs' stacks may fall at the same place):
        // then it is that program, whatever it calls itself now.
        let names_agree = || {
            if reread {
                // Read again after an exec (an entry of this process exists): the program now
                // running must have the socket's name; one more exec since would otherwise take
                // the socket (what the kernel recorded is the truth then).
                return proc_comm == comm;
            }
            // A first read: the socket's name must be the process's or one of its threads', or a
            // name the program running now was started under (`names::names_the_program`: the
            // program renamed itself since, as `setproctitle` does). Else it is not the one that
            // made the socket: it exec'd since (a shell's `exec` right after its last write), or
            // another process took the pid within the same hundredth of a second.
            comm.is_empty() || names_a_thread(tgid, &stat, &proc_comm, comm) || names_the_program(&p, comm)
        };
        // Equal marks prove the program only where stacks are placed at random.
        let randomized = now_mark != 0 && self.stacks_randomized(&p);
        if !(names_agree() || (marked && randomized)) {
            return Err(Miss::Other);
        }
        self.read_process(&p, &stat, tgid, created_ns, (comm, &proc_comm), (now_mark, randomized))
    }

    /// The app of process `p` (`tgid`, whose `stat` was read), for a socket of thread name `comm`
    /// (the process's own is `proc_comm`, [`process_comm`]); [`Miss::Other`] if it started after
    /// the socket was created, [`Miss::Gone`] if it exited while it was read. `mark` is the
    /// program's as `/proc` shows it and whether its stack was placed at random
    /// ([`Cached::exec_mark`]).
    fn read_process(
        &mut self,
        p: &Process,
        stat: &procfs::process::Stat,
        tgid: u32,
        created_ns: u64,
        (comm, proc_comm): (&str, &str),
        (exec_mark, randomized): (u32, bool),
    ) -> Result<Arc<App>, Miss> {
        let start_ns = stat.starttime.saturating_mul(self.tick_ns);
        if created_ns != 0 && start_ns > created_ns.saturating_add(self.tick_ns) {
            return Err(Miss::Other); // a newer process reusing the pid
        }
        let exe_file = exe_id(tgid);
        let exe_read = p.exe();
        // It may have exited since its `stat` was read: its executable and command line are gone,
        // and what the kernel recorded says more (as for one found a zombie above).
        if exited_while_read(&exe_read, stat.flags, || p.is_alive()) {
            return Err(Miss::Gone);
        }
        let from_memory = exe_read.as_deref().is_ok_and(run_from_memory);
        // Run from memory: `memfd:<name>`, no path, so that no rule's exe pattern for paths (a
        // `*/sbin/sshd`) takes a memory file its program named `usr/sbin/sshd` (a review).
        let exe = exe_read.ok().map(|e| {
            let shown = escape::utf8_or_hex(without_deleted(&e).as_bytes()).into_owned();
            match shown.strip_prefix('/').filter(|_| from_memory) {
                Some(memory) => memory.to_owned(),
                None => shown,
            }
        });
        let (cmdline, emulator) = cmdline(p);
        let uid = real_uid(p).ok_or(Miss::Other)?;
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
            comm: proc_comm,
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
            .or_else(|| exe.as_deref().map(|e| name_of_executable(e, from_memory)))
            .unwrap_or_else(|| proc_comm.to_owned());
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
            exec_mark,
            randomized,
        };
        self.insert(tgid, entry);
        Ok(app)
    }

    /// Whether the kernel placed process `p`'s stack at random: address space layout
    /// randomization on (`kernel.randomize_va_space`, read once) and not turned off for the
    /// process (`ADDR_NO_RANDOMIZE` in its personality, as `setarch -R` and debuggers set). Only
    /// then do equal program marks prove the same program. Unreadable: no.
    fn stacks_randomized(&mut self, p: &Process) -> bool {
        let system = *self.aslr.get_or_insert_with(|| {
            std::fs::read_to_string("/proc/sys/kernel/randomize_va_space").is_ok_and(|v| v.trim() != "0")
        });
        let mut text = String::new();
        let read = p.open_relative("personality").and_then(|f| Ok(f.take(64).read_to_string(&mut text)?));
        system
            && read.is_ok()
            && i32::from_str_radix(text.trim(), 16).is_ok_and(|persona| persona & nix::libc::ADDR_NO_RANDOMIZE == 0)
    }

    fn insert(&mut self, tgid: u32, entry: Cached) {
        self.bytes += entry.cost();
        let entries = self.cache.entry(tgid).or_default();
        entries.push(entry);
        if entries.len() > PER_PID {
            let dropped = entries.remove(0);
            self.bytes = self.bytes.saturating_sub(dropped.cost());
        }
        self.order.push_back(tgid);
        while self.order.len() > MAX_PROCESSES || self.bytes > MAX_CACHE_BYTES {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(list) = self.cache.get_mut(&old) {
                if !list.is_empty() {
                    let dropped = list.remove(0);
                    self.bytes = self.bytes.saturating_sub(dropped.cost());
                }
                if list.is_empty() {
                    self.cache.remove(&old);
                }
            }
        }
    }

    /// `/proc`'s start time (clock ticks since boot) of a process the kernel recorded as started at
    /// `start_cs`; 0 when unknown, or when the machine has been up for longer than the 32-bit
    /// value spans (497 days: it may have wrapped).
    fn kernel_start_ticks(&self, start_cs: u32) -> u64 {
        let units = monitor_common::sock::START_UNIT_NS;
        if start_cs == 0 || self.clock.boot_now() / units > u64::from(u32::MAX) {
            return 0;
        }
        u64::from(start_cs).saturating_mul(units) / self.tick_ns.max(1)
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
            start_time: self.kernel_start_ticks(owner.start_cs),
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

/// A running thread of process `p` (`tgid`) whose main thread has exited (a zombie leader), as a
/// process rooted at that thread's task directory: its executable, command line, status and
/// cgroup are the process's. `None` when no other thread runs (the process has exited).
fn live_thread(p: &Process, tgid: u32) -> Option<Process> {
    let running = |t: &procfs::process::Task| t.stat().is_ok_and(|s| !matches!(s.state, 'Z' | 'X' | 'x'));
    let thread = p.tasks().ok()?.flatten().find(|t| u32::try_from(t.tid).ok() != Some(tgid) && running(t))?;
    Process::new_with_root(std::path::PathBuf::from(format!("/proc/{tgid}/task/{}", thread.tid))).ok()
}

/// The app name an executable gives: its path's file name; for a program run from memory
/// ([`run_from_memory`]: the kernel shows `/memfd:<the name the program chose>`, kept as
/// `memfd:<name>`) the whole `memfd:<name>`, so that one naming its memory file `usr/sbin/sshd`
/// is not taken for `sshd` (an adversarial pass: it was reported, and grouped, as `sshd`).
fn name_of_executable(exe: &str, from_memory: bool) -> String {
    if from_memory { exe.to_owned() } else { exe.rsplit('/').next().unwrap_or(exe).to_owned() }
}

/// Whether `/proc/<pid>/exe` reads as a memory file (`memfd_create`, then `fexecve`):
/// `/memfd:<name> (deleted)`, no such file on disk. A real file under a directory named
/// `/memfd:` (only root can make one) has no ` (deleted)` while it exists (a re-check: such a
/// program took the name a memfd of the same name gets).
fn run_from_memory(exe: &std::path::Path) -> bool {
    let bytes = exe.as_os_str().as_bytes();
    bytes.starts_with(b"/memfd:") && bytes.ends_with(b" (deleted)") && !exe.exists()
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
    exe_lookup(tgid).ok()
}

/// As [`exe_id`], with the reason it could not be read (`NotFound`: the process is gone, a
/// zombie or exiting).
fn exe_lookup(tgid: u32) -> std::io::Result<(u64, u64)> {
    let meta = std::fs::metadata(format!("/proc/{tgid}/exe"))?;
    Ok((meta.dev(), meta.ino()))
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

/// `PF_KTHREAD` in `/proc/<pid>/stat`'s flags: a kernel thread, which has no executable.
const PF_KTHREAD: u32 = 0x0020_0000;
/// `PF_EXITING` in `/proc/<pid>/stat`'s flags: the process is exiting.
const PF_EXITING: u32 = 0x0000_0004;

/// Whether a process whose `stat` was read had exited by the time its executable was: a zombie,
/// or one still exiting whose memory (and with it its executable) is gone before it becomes a
/// zombie: `/proc/<pid>/exe` is then "not found", which for a process that is not a kernel thread
/// means exactly that (a permission error says nothing of the kind).
fn exited_while_read(exe: &procfs::ProcResult<std::path::PathBuf>, flags: u32, alive: impl FnOnce() -> bool) -> bool {
    match exe {
        Ok(_) => false,
        Err(procfs::ProcError::NotFound(_)) if flags & PF_KTHREAD == 0 => true,
        Err(_) => !alive(),
    }
}

mod names;
#[cfg(test)]
mod tests;
