//! Loading and attaching. Startup order: sock_create first (so new sockets get an owner), the
//! packet path last (so sockets created meanwhile are not mistaken for old ones).

use std::{
    fs::File,
    os::fd::{AsFd, BorrowedFd},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, RingBuf, SkStorage},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, Program, ProgramError, SockOps,
    },
    util::KernelVersion,
};
use log::{debug, info, warn};
use monitor_common::maps::{self, programs};

use super::{
    Degradation, Error, ProbeConfig, StatsReader,
    btf_layout::{self},
    fdsnap::{FdSnapshots, OpenSocket, Search},
    features,
    getaddrinfo::Outcome,
    object,
    snapshot::Snapshotter,
};

mod optional;

use self::optional::{
    Optional, attach_payload_tracepoints, by_descriptor, fall_back, outcome, peer_snapshotter, set_fallback_bits,
    snapshotter,
};

/// How counter snapshots (over `COUNTERS`), and at shutdown the peer slots (over `PEERS`), are
/// read on this host.
enum Snapshots {
    /// The map's iterator: one pass over every socket.
    Iterator(Snapshotter),
    /// The kernel refused the iterator: socket by socket through the owners' descriptors.
    ByDescriptor(Box<FdSnapshots>),
    /// Neither.
    None,
}

/// Environment variable that, set to `probe`, makes the kernel programs read the current task with
/// `bpf_probe_read_kernel` even where the kernel accepts plain loads through its BTF pointer (a
/// diagnostic switch; the root tests run both ways). `refuse-btf` builds the first load with a
/// task offset past the end of `task_struct`, which the verifier refuses, so that the way a
/// refusing kernel takes (everything loaded again with probe reads) is tested on any kernel.
pub const TASK_READS_ENV: &str = "MONITOR_TASK_READS";

/// How the kernel programs read the current task's fields (`monitor_common::maps::GLOBAL_TASK_BTF`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskReads {
    /// Plain loads through the kernel's BTF pointer to the task (no helper call per field).
    Btf,
    /// `bpf_probe_read_kernel`, one call per field: where the kernel refuses the first.
    Probe,
    /// [`Self::Btf`] with an offset the verifier refuses ([`TASK_READS_ENV`]`=refuse-btf`).
    RefusedBtf,
}

impl TaskReads {
    /// The way [`TASK_READS_ENV`]'s value asks for: `probe` or `btf` (the default, also when
    /// unset); any other value is named in a warning and the default kept.
    fn from_env(value: Option<&std::ffi::OsStr>) -> Self {
        let Some(value) = value else { return Self::Btf };
        match value.to_str() {
            // Set but empty reads as unset.
            Some("btf" | "") => Self::Btf,
            Some("probe") => Self::Probe,
            Some("refuse-btf") => Self::RefusedBtf,
            _ => {
                warn!(
                    "{TASK_READS_ENV}={:?} is none of \"btf\", \"probe\", \"refuse-btf\": ignored, the task is \
                     read through its BTF pointer where the kernel allows it",
                    value.to_string_lossy()
                );
                Self::Btf
            }
        }
    }
}

/// Loaded and attached kernel programs. Dropping it detaches them.
pub struct Probe {
    ebpf: Ebpf,
    cgroup: PathBuf,
    degradations: Vec<Degradation>,
    snapshots: Snapshots,
    peer_snapshots: Snapshots,
    /// With the counter iterator: the storages by descriptor too, for the TCP counters at
    /// shutdown ([`Probe::tcp_snapshot`]).
    tcp_by_descriptor: Option<Box<FdSnapshots>>,
}

/// `Single` is right for bpf_link attachments (5.7+): links always coexist with other programs,
/// and `AllowMultiple` fails with EINVAL there (aya issue #1078). Before 5.7 aya falls back to
/// `BPF_PROG_ATTACH`, where `AllowMultiple` is what lets us coexist.
fn attach_mode() -> Result<CgroupAttachMode, Error> {
    let current = KernelVersion::current().map_err(|e| Error::KernelVersion(Box::new(e)))?;
    Ok(if current >= KernelVersion::new(5, 7, 0) { CgroupAttachMode::Single } else { CgroupAttachMode::AllowMultiple })
}

/// Attaches the empty programs of `monitor-ebpf/src/probes/calibrate.rs` (only with
/// [`programs::CALIBRATION_ENV`]` = 1`): `cargo xtask bench` measures with them what one run of a
/// program that does nothing costs on each hook (BENCHMARKS.md, "Kernel cost"). Returns how many.
/// Failures only warn: they are a benchmark aid, never needed for monitoring.
fn attach_calibration(ebpf: &mut Ebpf, cg: BorrowedFd<'_>, mode: CgroupAttachMode) -> u32 {
    let results = [
        (
            programs::CALIBRATE_EGRESS,
            calibrate::<CgroupSkb>(ebpf, programs::CALIBRATE_EGRESS, |p| {
                p.load()?;
                p.attach(cg, CgroupSkbAttachType::Egress, mode).map(drop)
            }),
        ),
        (
            programs::CALIBRATE_INGRESS,
            calibrate::<CgroupSkb>(ebpf, programs::CALIBRATE_INGRESS, |p| {
                p.load()?;
                p.attach(cg, CgroupSkbAttachType::Ingress, mode).map(drop)
            }),
        ),
        (
            programs::CALIBRATE_SOCK_OPS,
            calibrate::<SockOps>(ebpf, programs::CALIBRATE_SOCK_OPS, |p| {
                p.load()?;
                p.attach(cg, mode).map(drop)
            }),
        ),
        (
            programs::CALIBRATE_SOCK_CREATE,
            calibrate::<CgroupSock>(ebpf, programs::CALIBRATE_SOCK_CREATE, |p| {
                p.load()?;
                p.attach(cg, mode).map(drop)
            }),
        ),
    ];
    let mut attached = 0;
    for (name, result) in results {
        match result {
            Ok(()) => attached += 1,
            Err(e) => warn!("calibration program {name} not attached: {}", crate::errors::chain(&e)),
        }
    }
    info!("calibration programs attached: {attached} of 4 ({}=1)", programs::CALIBRATION_ENV);
    attached
}

/// Finds calibration program `name` as a `T` and loads and attaches it with `load_attach` (a
/// refused attachment is an [`Error::ProgramLoad`] too: the kernel refused the program there).
fn calibrate<'a, T: 'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
    load_attach: impl FnOnce(&mut T) -> Result<(), ProgramError>,
) -> Result<(), Error>
where
    &'a mut T: TryFrom<&'a mut Program, Error = ProgramError>,
{
    let prog = program::<T>(ebpf, name)?;
    load_attach(prog).map_err(|source| Error::ProgramLoad { name, source })
}

/// How `run` would read idle flows' counters on this kernel ([`snapshot_mode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotMode {
    /// The counter iterator: one pass over every socket.
    Iterator,
    /// Socket by socket through the owners' descriptors ([`Degradation::SnapshotsByDescriptor`]);
    /// why the iterator was refused.
    ByDescriptor(String),
    /// Neither ([`Degradation::NoSnapshots`]): why each was refused.
    None(String, String),
}

/// How `run` would read idle flows' counters on this kernel (`monitor check`): the embedded
/// object is loaded (its maps created, nothing attached), the iterator tried once and, refused,
/// the reads by descriptor set up, as `run` does.
///
/// # Errors
/// When the object cannot be loaded at all (e.g. without the privileges for `bpf()`).
pub fn snapshot_mode() -> Result<SnapshotMode, Error> {
    object::verify_embedded()?;
    let mut ebpf = EbpfLoader::new().load(object::object_bytes()).map_err(Error::Load)?;
    match snapshotter(&mut ebpf) {
        Ok(_) => Ok(SnapshotMode::Iterator),
        Err(Optional::Kernel(reason)) => Ok(match by_descriptor(&ebpf) {
            Ok(_) => SnapshotMode::ByDescriptor(reason),
            Err(e) => SnapshotMode::None(reason, crate::errors::chain(&e)),
        }),
        Err(Optional::Object(e)) => Err(e),
    }
}

impl Probe {
    /// Loads the programs and attaches them to `config.cgroup`.
    ///
    /// # Errors
    /// Any program or map missing from our object or of the wrong kind (a build bug, checked
    /// before anything is loaded), and any program or map the kernel refuses, except the payload
    /// tracepoints and the counter iterator, which degrade ([`Degradation::PayloadFromTcpCounters`],
    /// [`Degradation::NoSnapshots`]).
    pub fn load(config: &ProbeConfig) -> Result<Self, Error> {
        let reads = TaskReads::from_env(std::env::var_os(TASK_READS_ENV).as_deref());
        if reads == TaskReads::Probe {
            info!("{TASK_READS_ENV}=probe: the current task is read with bpf_probe_read_kernel");
        }
        let loaded = match Self::load_attach(config, reads) {
            // A program that reads the task refused (`sock_create`, the first, or one of the
            // syscall hooks after it): loaded again the other way, from the start.
            Err(Error::ProgramLoad { name, source }) if reads != TaskReads::Probe => {
                warn!(
                    "the kernel refused {name} ({}); loading again with the current task read through \
                     bpf_probe_read_kernel instead of its BTF pointer (reading the current task through BTF)",
                    crate::errors::chain(&source)
                );
                Self::load_attach(config, TaskReads::Probe)
            }
            other => other,
        };
        loaded.map_err(|e| match e {
            Error::Load(_) | Error::ProgramLoad { .. } | Error::Attach { .. } => {
                let missing: Vec<String> = features::check_all()
                    .into_iter()
                    .filter(|c| c.required && c.ok == Some(false))
                    .map(|c| format!("{} ({})", c.name, c.detail))
                    .collect();
                if missing.is_empty() { e } else { Error::KernelLacks { missing, source: Box::new(e) } }
            }
            other => other,
        })
    }

    fn load_attach(config: &ProbeConfig, reads: TaskReads) -> Result<Self, Error> {
        object::verify_embedded()?;
        let interval_ns = u64::try_from(config.update_interval.as_nanos()).unwrap_or(u64::MAX);
        let (cgroup_id, cgroup_level) = super::cgroup::cgroup_id_and_level(&config.cgroup)?;
        // Only the fallback hook set reads these; a kernel without usable BTF fails there.
        let layout = btf_layout::kernel_sock_layout();
        let offsets = layout.as_ref().map_or((0, 0, 0), |l| (l.v6_daddr, l.v6_rcv_saddr, l.protocol));
        // `sock_ops` reads it at `TCP_CLOSE` (see `FLAG_NO_FILE`); 0 leaves that check out, and the
        // verifier drops its kernel read: a kernel locked down for confidentiality refuses
        // `bpf_probe_read_kernel`, and `sock_ops` would not load at all.
        let lockdown = confidentiality_lockdown();
        let sk_socket = if lockdown {
            info!("kernel lockdown (confidentiality): connections no process accepted end at the monitor's stop");
            0
        } else {
            layout.as_ref().map_or(0, |l| l.sk_socket)
        };
        // The payload tracepoints read the process's name there (kernel reads: none under lockdown).
        let (task_leader, task_comm) =
            if lockdown { (0, 0) } else { layout.as_ref().map_or((0, 0), |l| l.task_leader_comm) };
        // Owners carry their process's start from the same reads (none under lockdown).
        let task_start = if lockdown { 0 } else { layout.as_ref().map_or(0, |l| l.task_start_boottime) };
        // And the mark of the program they ran (`Owner::exec_mark`).
        let (task_mm, mm_stack) =
            if lockdown { (0, 0) } else { layout.as_ref().map_or((0, 0), |l| l.task_mm_start_stack) };
        // A released socket's close leaves out what its process never read (`TCP_CONSUMED`; a
        // load through the kernel's BTF pointer to the socket: none under lockdown).
        let copied_seq = if lockdown { 0 } else { layout.as_ref().map_or(0, |l| l.tcp_copied_seq) };
        // The release of a TCP socket older than the monitor reads the kernel's counters (probe
        // reads: none under lockdown).
        let [received, acked, rcv_nxt, sk_flags] =
            if lockdown { [0; 4] } else { layout.as_ref().map_or([0; 4], |l| l.tcp_release) };
        // With what waits in its send queue (sent after the release).
        let [write_seq, snd_una] = if lockdown { [0; 2] } else { layout.as_ref().map_or([0; 2], |l| l.tcp_send_queue) };
        // Those reads through the kernel's BTF pointer to the task where its types are known.
        let task_btf = u32::from(reads != TaskReads::Probe && !lockdown && layout.is_ok());
        // And, that way only, the ids that two helpers give otherwise.
        let (task_pid, (task_cred, cred_uid)) = match (&layout, task_btf) {
            // Past any `task_struct` (a few KiB): the verifier refuses the load through BTF.
            (Ok(l), 1) if reads == TaskReads::RefusedBtf => (1 << 20, l.task_cred_uid),
            (Ok(l), 1) => (l.task_pid, l.task_cred_uid),
            _ => (0, (0, 0)),
        };
        match (reads, task_btf) {
            (TaskReads::RefusedBtf, 1) => {
                info!("{TASK_READS_ENV}=refuse-btf: this load reads the task at an offset the kernel refuses");
            }
            (TaskReads::RefusedBtf, _) => warn!(
                "{TASK_READS_ENV}=refuse-btf has no effect here: the task is read with bpf_probe_read_kernel \
                 already (no kernel BTF, or a lockdown)"
            ),
            _ => {}
        }
        if task_btf == 1 {
            info!(
                "task fields (owner name, process start, program mark) read through the kernel's BTF pointer to the task"
            );
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(maps::EVENTS, config.ring_buffer_bytes)
            .override_global(maps::GLOBAL_UPDATE_INTERVAL_NS, &interval_ns, true)
            .override_global(maps::GLOBAL_LOADED_BOOT_NS, &crate::clock::Clock::boot_ns(), true)
            .override_global(maps::GLOBAL_COPY_PAYLOADS, &u32::from(config.copy_payloads), true)
            .override_global(maps::GLOBAL_WATCHED_CGROUP_ID, &cgroup_id, true)
            .override_global(maps::GLOBAL_WATCHED_CGROUP_LEVEL, &cgroup_level, true)
            .override_global(maps::GLOBAL_SK_V6_DADDR_OFFSET, &offsets.0, true)
            .override_global(maps::GLOBAL_SK_V6_RCV_SADDR_OFFSET, &offsets.1, true)
            .override_global(maps::GLOBAL_SK_PROTOCOL_OFFSET, &offsets.2, true)
            .override_global(maps::GLOBAL_SK_SOCKET_OFFSET, &sk_socket, true)
            .override_global(maps::GLOBAL_TASK_GROUP_LEADER_OFFSET, &task_leader, true)
            .override_global(maps::GLOBAL_TASK_COMM_OFFSET, &task_comm, true)
            .override_global(maps::GLOBAL_TASK_START_BOOTTIME_OFFSET, &task_start, true)
            .override_global(maps::GLOBAL_TASK_MM_OFFSET, &task_mm, true)
            .override_global(maps::GLOBAL_MM_START_STACK_OFFSET, &mm_stack, true)
            .override_global(maps::GLOBAL_TASK_BTF, &task_btf, true)
            .override_global(maps::GLOBAL_TASK_PID_OFFSET, &task_pid, true)
            .override_global(maps::GLOBAL_TASK_CRED_OFFSET, &task_cred, true)
            .override_global(maps::GLOBAL_CRED_UID_OFFSET, &cred_uid, true)
            .override_global(maps::GLOBAL_TCP_COPIED_SEQ_OFFSET, &copied_seq, true)
            .override_global(maps::GLOBAL_TCP_BYTES_RECEIVED_OFFSET, &received, true)
            .override_global(maps::GLOBAL_TCP_BYTES_ACKED_OFFSET, &acked, true)
            .override_global(maps::GLOBAL_TCP_RCV_NXT_OFFSET, &rcv_nxt, true)
            .override_global(maps::GLOBAL_SK_FLAGS_OFFSET, &sk_flags, true)
            .override_global(maps::GLOBAL_TCP_WRITE_SEQ_OFFSET, &write_seq, true)
            .override_global(maps::GLOBAL_TCP_SND_UNA_OFFSET, &snd_una, true)
            .override_global(maps::GLOBAL_MPTCP_SUBFLOWS, &mptcp_subflows(layout.as_ref().ok()), true)
            .load(object::object_bytes())
            .map_err(Error::Load)?;
        match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => spawn_kernel_logger(logger),
            Err(e) => debug!("kernel logger not started: {e}"),
        }
        let cgroup_file =
            File::open(&config.cgroup).map_err(|source| Error::OpenCgroup { path: config.cgroup.clone(), source })?;
        let cg = cgroup_file.as_fd();
        let target = config.cgroup.as_path();
        let mode = attach_mode()?;
        let mut degradations = Vec::new();

        // How snapshots are read is decided first: by descriptor, the packet programs must know it
        // from their first packet (`FALLBACK_ANNOUNCE`).
        let snapshots = match snapshotter(&mut ebpf) {
            Ok(s) => Snapshots::Iterator(s),
            Err(Optional::Kernel(reason)) => match by_descriptor(&ebpf) {
                Ok(s) => {
                    warn!("counter iterator unavailable ({reason}); snapshots read socket by socket instead");
                    // They find the sockets the daemon knows: every UDP socket is announced (set
                    // before the packet programs attach, so that none is missed in between).
                    set_fallback_bits(&mut ebpf, maps::FALLBACK_ANNOUNCE)?;
                    degradations.push(Degradation::SnapshotsByDescriptor);
                    Snapshots::ByDescriptor(Box::new(s))
                }
                Err(e) => {
                    warn!(
                        "counter snapshots unavailable ({reason}; by descriptor: {}); idle flows are updated at \
                         their next packet or close",
                        crate::errors::chain(&e)
                    );
                    degradations.push(Degradation::NoSnapshots);
                    Snapshots::None
                }
            },
            Err(Optional::Object(e)) => return Err(e),
        };
        // A hook the kernel refuses with EPERM sits below an exclusive program (Android's netd):
        // it is left out and the fallback hook set stands in (see `fallback` in monitor-ebpf).
        let mut refused: Vec<&'static str> = Vec::new();
        let mut attached = 0_u32;
        for name in [programs::SOCK_CREATE, programs::SOCK_RELEASE] {
            let prog: &mut CgroupSock = program(&mut ebpf, name)?;
            prog.load().map_err(|source| Error::ProgramLoad { name, source })?;
            attached += outcome(name, target, prog.attach(cg, mode).map(drop), &mut refused)?;
        }
        for name in [
            programs::CONNECT4,
            programs::CONNECT6,
            programs::SENDMSG4,
            programs::SENDMSG6,
            programs::RECVMSG4,
            programs::RECVMSG6,
        ] {
            let prog: &mut CgroupSockAddr = program(&mut ebpf, name)?;
            prog.load().map_err(|source| Error::ProgramLoad { name, source })?;
            attached += outcome(name, target, prog.attach(cg, mode).map(drop), &mut refused)?;
        }
        let sock_ops: &mut SockOps = program(&mut ebpf, programs::SOCK_OPS)?;
        sock_ops.load().map_err(|source| Error::ProgramLoad { name: programs::SOCK_OPS, source })?;
        attached += outcome(programs::SOCK_OPS, target, sock_ops.attach(cg, mode).map(drop), &mut refused)?;

        let mut payload_tracepoints = true;
        match attach_payload_tracepoints(&mut ebpf) {
            Ok(()) => attached += 2,
            Err(Optional::Kernel(reason)) => {
                warn!("payload tracepoints unavailable ({reason}); TCP payload falls back to kernel TCP counters");
                degradations.push(Degradation::PayloadFromTcpCounters);
                payload_tracepoints = false;
            }
            Err(Optional::Object(e)) => return Err(e),
        }

        for (name, kind) in
            [(programs::SKB_EGRESS, CgroupSkbAttachType::Egress), (programs::SKB_INGRESS, CgroupSkbAttachType::Ingress)]
        {
            let prog: &mut CgroupSkb = program(&mut ebpf, name)?;
            prog.load().map_err(|source| Error::ProgramLoad { name, source })?;
            attached += outcome(name, target, prog.attach(cg, kind, mode).map(drop), &mut refused)?;
        }
        if !refused.is_empty() {
            attached += fall_back(&mut ebpf, &refused, payload_tracepoints, layout.as_ref(), &mut degradations)?;
        }
        let peer_snapshots = peer_snapshotter(&mut ebpf, matches!(snapshots, Snapshots::Iterator(_)))?;
        let tcp_by_descriptor = match snapshots {
            Snapshots::Iterator(_) => by_descriptor(&ebpf)
                .inspect_err(|e| {
                    info!(
                        "TCP counters cannot be read by descriptor at shutdown ({}): open TCP flows end with their last",
                        crate::errors::chain(e)
                    );
                })
                .ok()
                .map(Box::new),
            Snapshots::ByDescriptor(_) | Snapshots::None => None,
        };
        degradations.extend(features::host_degradations());
        let gai = if config.getaddrinfo {
            super::getaddrinfo::attach(&mut ebpf, config.getaddrinfo_libc.as_deref())?
        } else {
            Outcome::Unavailable("disabled by names.getaddrinfo = false".to_owned())
        };
        match gai {
            Outcome::Attached(libc) => {
                attached += 2;
                info!("getaddrinfo probe attached libc={}", libc.display());
            }
            Outcome::Unavailable(reason) => {
                warn!("getaddrinfo probe not attached: {reason}");
                degradations.push(Degradation::NoGetaddrinfoNames);
            }
        }
        if std::env::var_os(programs::CALIBRATION_ENV).is_some_and(|v| v == "1") {
            attached += attach_calibration(&mut ebpf, cg, mode);
        }
        info!("attached programs={attached} cgroup={}", config.cgroup.display());
        Ok(Self { ebpf, cgroup: config.cgroup.clone(), degradations, snapshots, peer_snapshots, tcp_by_descriptor })
    }

    /// Takes the event ring buffer (once).
    ///
    /// # Errors
    /// [`Error::MapNotFound`] when it was already taken.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, Error> {
        let map = self.ebpf.take_map(maps::EVENTS).ok_or(Error::MapNotFound { name: maps::EVENTS })?;
        RingBuf::try_from(map).map_err(|source| Error::Map { name: maps::EVENTS, source })
    }

    /// Takes the statistics map (once).
    ///
    /// # Errors
    /// [`Error::MapNotFound`] when it was already taken.
    pub fn take_stats(&mut self) -> Result<StatsReader, Error> {
        let map = self.ebpf.take_map(maps::STATS).ok_or(Error::MapNotFound { name: maps::STATS })?;
        StatsReader::new(map)
    }

    /// The `OWNER` socket storage, to record owners of sockets older than the monitor.
    ///
    /// # Errors
    /// When the map is missing or of the wrong type.
    pub fn owner_storage(&mut self) -> Result<SkStorage<&mut MapData, monitor_common::sock::Owner>, Error> {
        let map = self.ebpf.map_mut(maps::OWNER).ok_or(Error::MapNotFound { name: maps::OWNER })?;
        SkStorage::try_from(map).map_err(|source| Error::Map { name: maps::OWNER, source })
    }

    /// The cgroup the programs are attached to.
    #[must_use]
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// Current counters, passed to `each` as `Update` events (flag `FLAG_SNAPSHOT`): with the
    /// iterator, of every socket that changed since the previous call; by descriptor, of the
    /// `open` sockets asked for (`at_shutdown`: also those their owners do not hold, looked for
    /// in every process, and the sockets with counters no event announced yet). Returns the
    /// cookies of those not found; `None` when the host can take no snapshots.
    ///
    /// # Errors
    /// When the iterator fails.
    pub fn snapshot(
        &self,
        open: &[OpenSocket],
        at_shutdown: bool,
        each: &mut dyn FnMut(monitor_common::event::EventKind, &monitor_common::event::Event),
    ) -> Option<std::io::Result<Vec<u64>>> {
        match &self.snapshots {
            Snapshots::Iterator(s) => Some(s.read().map(|events| {
                for (kind, ev) in &events {
                    each(*kind, ev);
                }
                Vec::new()
            })),
            // At shutdown also every socket no event announced: the iterator reads those too.
            Snapshots::ByDescriptor(s) => {
                let search = if at_shutdown { Search::Discover } else { Search::Owners };
                Some(Ok(s.read(open, search, each)))
            }
            Snapshots::None => None,
        }
    }

    /// The sockets of `sockets` held by no process: looked for among their owners' descriptors,
    /// then in every process's, through the reads by descriptor of either way of taking
    /// snapshots; `None` where the kernel permits neither.
    #[must_use]
    pub fn held_by_none(&self, sockets: &[OpenSocket]) -> Option<Vec<u64>> {
        let by_descriptor = match &self.snapshots {
            Snapshots::ByDescriptor(s) => Some(s.as_ref()),
            Snapshots::Iterator(_) | Snapshots::None => self.tcp_by_descriptor.as_deref(),
        };
        by_descriptor.map(|s| s.held_by_none(sockets))
    }

    /// The kernel's TCP counters of `sockets` (`Update` events with `FLAG_TCP_COUNTERS`, read by
    /// descriptor) where the counter iterator takes the snapshots: it cannot read them; and the
    /// sockets with counters no event announced (`FLAG_UNANNOUNCED`: their flows start). Returns
    /// the cookies of the sockets not found; `None` when snapshots are taken by descriptor (they
    /// carry the counters) or not at all.
    pub fn tcp_snapshot(
        &self,
        sockets: &[OpenSocket],
        each: &mut dyn FnMut(monitor_common::event::EventKind, &monitor_common::event::Event),
    ) -> Option<Vec<u64>> {
        self.tcp_by_descriptor.as_ref().map(|s| s.read(sockets, Search::Discover, each))
    }

    /// Every open peer slot of the sockets counted per peer (by the `PEERS` iterator: all of
    /// them; by descriptor: those of `sockets`, `at_shutdown` also looked for in every process
    /// when their owners do not hold them): `PeerUpdate` events (flag `FLAG_SNAPSHOT`) with what
    /// each slot counted since its claim. `None` when the host cannot read them.
    pub fn peer_snapshot(
        &self,
        sockets: &[OpenSocket],
        at_shutdown: bool,
        each: &mut dyn FnMut(monitor_common::event::EventKind, &monitor_common::event::Event),
    ) -> Option<std::io::Result<()>> {
        match &self.peer_snapshots {
            Snapshots::Iterator(peers) => Some(peers.read().map(|events| {
                for (kind, ev) in &events {
                    each(*kind, ev);
                }
            })),
            Snapshots::ByDescriptor(s) => {
                let search = if at_shutdown { Search::Everywhere } else { Search::Owners };
                let missed = s.read_peers(sockets, search, each);
                if !at_shutdown {
                    // Periodic: a socket not found now (passed on, just released) is read at
                    // shutdown, or its release reports its peers.
                    debug!("idle peer slots: {} of {} sockets not found by descriptor", missed.len(), sockets.len());
                    return Some(Ok(()));
                }
                // Sockets without an owner process (the kernel's own, e.g. IPv6 neighbour
                // discovery) have no descriptor to read them by: expected, not worth a warning.
                let ownerless: std::collections::HashSet<u64> =
                    sockets.iter().filter(|s| s.tgid == 0).map(|s| s.cookie).collect();
                let (without_owner, missed): (Vec<u64>, Vec<u64>) =
                    missed.into_iter().partition(|c| ownerless.contains(c));
                if !missed.is_empty() {
                    warn!(
                        "peer slots of {} sockets not found by descriptor at shutdown (passed to another process, or \
                         gone): their peers keep what their last report carried",
                        missed.len()
                    );
                }
                if !without_owner.is_empty() {
                    info!(
                        "peer slots of {} sockets without an owner process (the kernel's own) cannot be read by \
                         descriptor: their peers keep what their last report carried",
                        without_owner.len()
                    );
                }
                Some(Ok(()))
            }
            Snapshots::None => None,
        }
    }

    /// Why the monitor runs below full fidelity on this host.
    #[must_use]
    pub fn degradations(&self) -> &[Degradation] {
        &self.degradations
    }
}

/// 1 when the kernel has `bpf_skc_to_mptcp_sock` (Linux 5.19) and `struct mptcp_sock` in its BTF
/// (`CONFIG_MPTCP`), so the programs may call it ([`maps::GLOBAL_MPTCP_SUBFLOWS`]); 0 keeps the
/// call in a branch the verifier drops, so the programs load everywhere else (see the README's
/// Multipath TCP limits).
fn mptcp_subflows(layout: Option<&btf_layout::SockLayout>) -> u32 {
    let helper = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(5, 19, 0));
    u32::from(helper && layout.is_some_and(|l| l.mptcp_sock))
}

pub(super) fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, Error>
where
    &'a mut T: TryFrom<&'a mut Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or(Error::ProgramNotFound { name })?;
    let found = format!("{:?}", prog.prog_type());
    prog.try_into().map_err(|_| Error::ProgramKind { name, found })
}

/// Drains aya-log records of the kernel programs into the `log` facade.
fn spawn_kernel_logger<T: log::Log + Send + 'static>(logger: aya_log::EbpfLogger<T>) {
    // SAFETY: the logger owns its ring-buffer fd, which stays open until the AsyncFd drops it.
    let registered = unsafe { tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) };
    let Ok(mut fd) = registered else {
        warn!("kernel log ring buffer cannot be polled; kernel diagnostics are not shown");
        return;
    };
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else { return };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}

/// Whether the kernel is locked down for confidentiality (`/sys/kernel/security/lockdown` reads
/// `none integrity [confidentiality]`): it then refuses programs that read kernel memory.
fn confidentiality_lockdown() -> bool {
    std::fs::read_to_string("/sys/kernel/security/lockdown").is_ok_and(|s| s.contains("[confidentiality]"))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::TaskReads;

    #[test]
    fn the_task_reads_switch_takes_probe_and_btf_and_ignores_anything_else() {
        assert_eq!(TaskReads::from_env(None), TaskReads::Btf);
        assert_eq!(TaskReads::from_env(Some(OsStr::new("probe"))), TaskReads::Probe);
        assert_eq!(TaskReads::from_env(Some(OsStr::new("btf"))), TaskReads::Btf);
        assert_eq!(TaskReads::from_env(Some(OsStr::new("refuse-btf"))), TaskReads::RefusedBtf);
        // A misspelling keeps the default (and is named in a warning), as does a value that is not UTF-8.
        assert_eq!(TaskReads::from_env(Some(OsStr::new("Probe"))), TaskReads::Btf);
        assert_eq!(
            TaskReads::from_env(Some(<OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"\xff"))),
            TaskReads::Btf
        );
    }
}
