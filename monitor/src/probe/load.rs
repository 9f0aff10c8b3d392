//! Loading and attaching. Startup order: sock_create first (so new sockets get an owner), the
//! packet path last (so sockets created meanwhile are not mistaken for old ones).

use std::{
    fs::File,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Map, MapData, RingBuf},
    programs::{
        BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock,
        CgroupSockAddr, Iter, Program, SockOps,
    },
    util::KernelVersion,
};
use log::{debug, info, warn};
use monitor_common::maps::{self, programs};

use super::{Degradation, Error, ProbeConfig, StatsReader, features, snapshot::Snapshotter};

/// The kernel object, built by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor-ebpf"));

/// Loaded and attached kernel programs. Dropping it detaches them.
pub struct Probe {
    ebpf: Ebpf,
    cgroup: PathBuf,
    degradations: Vec<Degradation>,
    snapshotter: Option<Snapshotter>,
}

/// `Single` is right for bpf_link attachments (5.7+): links always coexist with other programs,
/// and `AllowMultiple` fails with EINVAL there (aya issue #1078). Before 5.7 aya falls back to
/// `BPF_PROG_ATTACH`, where `AllowMultiple` is what lets us coexist.
fn attach_mode() -> Result<CgroupAttachMode, Error> {
    let current = KernelVersion::current().map_err(|e| Error::KernelVersion(e.to_string()))?;
    Ok(if current >= KernelVersion::new(5, 7, 0) {
        CgroupAttachMode::Single
    } else {
        CgroupAttachMode::AllowMultiple
    })
}

impl Probe {
    /// Loads the programs and attaches them to `config.cgroup`.
    ///
    /// # Errors
    /// Any program or map the kernel refuses, except the payload tracepoints, which degrade to
    /// TCP counters ([`Degradation::PayloadFromTcpCounters`]).
    pub fn load(config: &ProbeConfig) -> Result<Self, Error> {
        Self::load_attach(config).map_err(|e| match e {
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

    fn load_attach(config: &ProbeConfig) -> Result<Self, Error> {
        let interval_ns = u64::try_from(config.update_interval.as_nanos()).unwrap_or(u64::MAX);
        let (cgroup_id, cgroup_level) = super::cgroup::cgroup_id_and_level(&config.cgroup)?;
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(maps::EVENTS, config.ring_buffer_bytes)
            .override_global(maps::GLOBAL_UPDATE_INTERVAL_NS, &interval_ns, true)
            .override_global(maps::GLOBAL_WATCHED_CGROUP_ID, &cgroup_id, true)
            .override_global(maps::GLOBAL_WATCHED_CGROUP_LEVEL, &cgroup_level, true)
            .load(OBJECT)
            .map_err(Error::Load)?;
        match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => spawn_kernel_logger(logger),
            Err(e) => debug!("kernel logger not started: {e}"),
        }
        let cgroup_file = File::open(&config.cgroup)
            .map_err(|source| Error::OpenCgroup { path: config.cgroup.clone(), source })?;
        let cg = cgroup_file.as_fd();
        let target = config.cgroup.as_path();
        let mode = attach_mode()?;
        let mut degradations = Vec::new();

        for name in [programs::SOCK_CREATE, programs::SOCK_RELEASE] {
            let prog: &mut CgroupSock = program(&mut ebpf, name)?;
            prog.load().map_err(|source| Error::ProgramLoad { name, source })?;
            prog.attach(cg, mode).map_err(|source| attach_error(name, target, source))?;
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
            prog.attach(cg, mode).map_err(|source| attach_error(name, target, source))?;
        }
        let sock_ops: &mut SockOps = program(&mut ebpf, programs::SOCK_OPS)?;
        sock_ops.load().map_err(|source| Error::ProgramLoad { name: programs::SOCK_OPS, source })?;
        sock_ops.attach(cg, mode).map_err(|source| attach_error(programs::SOCK_OPS, target, source))?;

        if let Err(reason) = attach_payload_tracepoints(&mut ebpf) {
            warn!("payload tracepoints unavailable ({reason}); TCP payload falls back to kernel TCP counters");
            degradations.push(Degradation::PayloadFromTcpCounters);
        }

        for (name, kind) in [
            (programs::SKB_EGRESS, CgroupSkbAttachType::Egress),
            (programs::SKB_INGRESS, CgroupSkbAttachType::Ingress),
        ] {
            let prog: &mut CgroupSkb = program(&mut ebpf, name)?;
            prog.load().map_err(|source| Error::ProgramLoad { name, source })?;
            prog.attach(cg, kind, mode).map_err(|source| attach_error(name, target, source))?;
        }
        let snapshotter = match snapshotter(&mut ebpf) {
            Ok(s) => Some(s),
            Err(reason) => {
                warn!("counter snapshots unavailable ({reason}); idle flows are updated at their next packet or close");
                degradations.push(Degradation::NoSnapshots);
                None
            }
        };
        degradations.extend(features::host_degradations());
        info!("attached programs=13 cgroup={}", config.cgroup.display());
        Ok(Self { ebpf, cgroup: config.cgroup.clone(), degradations, snapshotter })
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

    /// The cgroup the programs are attached to.
    #[must_use]
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// Current counters of every socket that changed since the previous call (`None` when the
    /// kernel cannot run the iterator).
    ///
    /// # Errors
    /// When the iterator fails.
    pub fn snapshot(&self) -> Option<std::io::Result<Vec<(monitor_common::event::EventKind, monitor_common::event::Event)>>> {
        self.snapshotter.as_ref().map(Snapshotter::read)
    }

    /// Why the monitor runs below full fidelity on this host.
    #[must_use]
    pub fn degradations(&self) -> &[Degradation] {
        &self.degradations
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, Error>
where
    &'a mut T: TryFrom<&'a mut Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(Error::ProgramNotFound { name })?
        .try_into()
        .map_err(|source| Error::ProgramLoad { name, source })
}

fn attach_error(name: &'static str, target: &Path, source: aya::programs::ProgramError) -> Error {
    Error::Attach { name, target: target.to_path_buf(), source }
}

/// The payload tracepoints need kernel BTF and Linux 6.3+; failure is a degradation, not fatal.
fn attach_payload_tracepoints(ebpf: &mut Ebpf) -> Result<(), String> {
    let btf = Btf::from_sys_fs().map_err(|e| format!("kernel BTF: {e}"))?;
    for (name, tracepoint) in [
        (programs::SEND_LENGTH, programs::SEND_LENGTH_TP),
        (programs::RECV_LENGTH, programs::RECV_LENGTH_TP),
    ] {
        let prog: &mut BtfTracePoint = program(ebpf, name).map_err(|e| e.to_string())?;
        prog.load(tracepoint, &btf).map_err(|e| format!("{name}: {e}"))?;
        prog.attach().map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// The `COUNTERS` iterator (needs kernel BTF and an iterator-capable kernel).
fn snapshotter(ebpf: &mut Ebpf) -> Result<Snapshotter, String> {
    let btf = Btf::from_sys_fs().map_err(|e| format!("kernel BTF: {e}"))?;
    let prog: &mut Iter = program(ebpf, programs::ITER_COUNTERS).map_err(|e| e.to_string())?;
    prog.load("bpf_sk_storage_map", &btf).map_err(|e| format!("{}: {e}", programs::ITER_COUNTERS))?;
    let prog_fd = prog.fd().map_err(|e| e.to_string())?.as_fd().try_clone_to_owned().map_err(|e| e.to_string())?;
    let Some(Map::SkStorage(map)) = ebpf.map(maps::COUNTERS) else {
        return Err(format!("map `{}` missing or of the wrong type", maps::COUNTERS));
    };
    let snap = Snapshotter::new(prog_fd.as_fd(), map.fd().as_fd()).map_err(|e| e.to_string())?;
    // Try once now: a kernel that loads but cannot run the iterator degrades here, not later.
    snap.read().map_err(|e| format!("iterator: {e}"))?;
    Ok(snap)
}

/// Drains aya-log records of the kernel programs into the `log` facade.
fn spawn_kernel_logger<T: log::Log + Send + 'static>(logger: aya_log::EbpfLogger<T>) {
    // SAFETY: the logger owns its ring-buffer fd, which stays open until the AsyncFd drops it.
    let registered =
        unsafe { tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) };
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
