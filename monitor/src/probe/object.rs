//! The embedded kernel object and its contract with the loader: every name in
//! `monitor_common::maps` resolves in it, with the program section and map type the loader expects.
//!
//! `verify` runs before anything is loaded, so a program or map missing from our object (a build
//! bug) fails start-up with a clear error instead of degrading like a feature the kernel lacks.
//! Parsing needs no privileges, so the unit tests below check the real object without root.

use aya_obj::{
    Object, ProgramSection,
    generated::bpf_map_type,
    programs::{CgroupSkbAttachType, CgroupSockAddrAttachType, CgroupSockAttachType},
};
use monitor_common::maps::{self, programs};

use super::Error;

/// The kernel object, built by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor-ebpf"));

/// The kernel object embedded in this binary (an ELF file for `bpfel-unknown-none`).
#[must_use]
pub fn object_bytes() -> &'static [u8] {
    OBJECT
}

/// Whether a program's section is the one the loader attaches it as.
type IsExpected = fn(&ProgramSection) -> bool;

/// Every program the loader takes from the object, with the section it must have been built for.
/// Kernel tracepoint names (`*_TP`) are attach targets, not programs, and are not listed.
const PROGRAMS: [(&str, IsExpected); 22] = [
    (programs::SOCK_CREATE, |s| {
        matches!(s, ProgramSection::CgroupSock { attach_type: CgroupSockAttachType::SockCreate })
    }),
    (programs::SOCK_RELEASE, |s| {
        matches!(s, ProgramSection::CgroupSock { attach_type: CgroupSockAttachType::SockRelease })
    }),
    (programs::CONNECT4, |s| {
        matches!(s, ProgramSection::CgroupSockAddr { attach_type: CgroupSockAddrAttachType::Connect4 })
    }),
    (programs::CONNECT6, |s| {
        matches!(s, ProgramSection::CgroupSockAddr { attach_type: CgroupSockAddrAttachType::Connect6 })
    }),
    (programs::SENDMSG4, |s| {
        matches!(s, ProgramSection::CgroupSockAddr { attach_type: CgroupSockAddrAttachType::UDPSendMsg4 })
    }),
    (programs::SENDMSG6, |s| {
        matches!(s, ProgramSection::CgroupSockAddr { attach_type: CgroupSockAddrAttachType::UDPSendMsg6 })
    }),
    (programs::RECVMSG4, |s| {
        matches!(s, ProgramSection::CgroupSockAddr { attach_type: CgroupSockAddrAttachType::UDPRecvMsg4 })
    }),
    (programs::RECVMSG6, |s| {
        matches!(s, ProgramSection::CgroupSockAddr { attach_type: CgroupSockAddrAttachType::UDPRecvMsg6 })
    }),
    (programs::SOCK_OPS, |s| matches!(s, ProgramSection::SockOps)),
    (programs::SKB_EGRESS, |s| {
        matches!(s, ProgramSection::CgroupSkb { attach_type: Some(CgroupSkbAttachType::Egress) })
    }),
    (programs::SKB_INGRESS, |s| {
        matches!(s, ProgramSection::CgroupSkb { attach_type: Some(CgroupSkbAttachType::Ingress) })
    }),
    (programs::SEND_LENGTH, |s| matches!(s, ProgramSection::BtfTracePoint)),
    (programs::RECV_LENGTH, |s| matches!(s, ProgramSection::BtfTracePoint)),
    (programs::ITER_COUNTERS, |s| matches!(s, ProgramSection::Iter { sleepable: false })),
    (programs::ITER_PEERS, |s| matches!(s, ProgramSection::Iter { sleepable: false })),
    (programs::FENTRY_RELEASE, |s| matches!(s, ProgramSection::FEntry { sleepable: false })),
    (programs::GAI_ENTRY, |s| matches!(s, ProgramSection::UProbe { sleepable: false })),
    (programs::GAI_RETURN, |s| matches!(s, ProgramSection::URetProbe { sleepable: false })),
    (programs::CALIBRATE_EGRESS, |s| {
        matches!(s, ProgramSection::CgroupSkb { attach_type: Some(CgroupSkbAttachType::Egress) })
    }),
    (programs::CALIBRATE_INGRESS, |s| {
        matches!(s, ProgramSection::CgroupSkb { attach_type: Some(CgroupSkbAttachType::Ingress) })
    }),
    (programs::CALIBRATE_SOCK_OPS, |s| matches!(s, ProgramSection::SockOps)),
    (programs::CALIBRATE_SOCK_CREATE, |s| {
        matches!(s, ProgramSection::CgroupSock { attach_type: CgroupSockAttachType::SockCreate })
    }),
];

/// Every map named in `monitor_common::maps`, with its kernel map type.
const MAPS: [(&str, bpf_map_type); 7] = [
    (maps::EVENTS, bpf_map_type::BPF_MAP_TYPE_RINGBUF),
    (maps::STATS, bpf_map_type::BPF_MAP_TYPE_PERCPU_ARRAY),
    (maps::OWNER, bpf_map_type::BPF_MAP_TYPE_SK_STORAGE),
    (maps::COUNTERS, bpf_map_type::BPF_MAP_TYPE_SK_STORAGE),
    (maps::PEERS, bpf_map_type::BPF_MAP_TYPE_SK_STORAGE),
    (maps::FALLBACK, bpf_map_type::BPF_MAP_TYPE_ARRAY),
    (maps::GAI_CALLS, bpf_map_type::BPF_MAP_TYPE_LRU_HASH),
];

/// Every load-time global the loader writes (`override_global` in `load.rs`), with the size of
/// the value it writes: `u64` nanoseconds, boot time and cgroup id, `u32` flags, level and offsets.
const GLOBALS: [(&str, usize); 26] = [
    (maps::GLOBAL_UPDATE_INTERVAL_NS, size_of::<u64>()),
    (maps::GLOBAL_LOADED_BOOT_NS, size_of::<u64>()),
    (maps::GLOBAL_COPY_PAYLOADS, size_of::<u32>()),
    (maps::GLOBAL_MPTCP_SUBFLOWS, size_of::<u32>()),
    (maps::GLOBAL_WATCHED_CGROUP_ID, size_of::<u64>()),
    (maps::GLOBAL_WATCHED_CGROUP_LEVEL, size_of::<u32>()),
    (maps::GLOBAL_SK_V6_DADDR_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_SK_V6_RCV_SADDR_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_SK_PROTOCOL_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_SK_SOCKET_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_TASK_GROUP_LEADER_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_TASK_COMM_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_TASK_START_BOOTTIME_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_TASK_MM_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_MM_START_STACK_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_TASK_BTF, size_of::<u32>()),
    (maps::GLOBAL_TCP_COPIED_SEQ_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_TCP_BYTES_RECEIVED_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_TCP_BYTES_ACKED_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_TCP_RCV_NXT_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_SK_FLAGS_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_TCP_WRITE_SEQ_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_TCP_SND_UNA_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_TASK_PID_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_TASK_CRED_OFFSET, size_of::<u32>()),
    (maps::GLOBAL_CRED_UID_OFFSET, size_of::<u32>()),
];

/// Parses the embedded object and checks it against [`PROGRAMS`], [`MAPS`] and [`GLOBALS`].
///
/// # Errors
/// [`Error::Parse`], or the first program or map that is missing or of the wrong kind.
pub fn verify_embedded() -> Result<(), Error> {
    verify(&Object::parse(OBJECT).map_err(Error::Parse)?)
}

/// Checks that every program and map the loader uses is in `object` with the expected kind, and
/// every load-time global with the size the loader writes (on a copy: patching is the only way
/// aya-obj offers to look a global up).
fn verify(object: &Object) -> Result<(), Error> {
    let mut copy = object.clone();
    for (name, size) in GLOBALS {
        let zeroes = vec![0_u8; size];
        copy.patch_map_data(std::collections::HashMap::from([(name, (&zeroes[..], true))]))
            .map_err(|source| Error::GlobalNotFound { name, size, source })?;
    }
    for (name, expected) in PROGRAMS {
        let program = object.programs.get(name).ok_or(Error::ProgramNotFound { name })?;
        if !expected(&program.section) {
            return Err(Error::ProgramKind { name, found: format!("{:?}", program.section) });
        }
    }
    for (name, expected) in MAPS {
        let map = object.maps.get(name).ok_or(Error::MapNotFound { name })?;
        if map.map_type() != expected as u32 {
            return Err(Error::MapKind { name, found: format!("of map type {}", map.map_type()) });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parsed() -> Object {
        Object::parse(object_bytes()).unwrap()
    }

    #[test]
    fn every_program_and_map_name_resolves_with_the_expected_kind() {
        verify(&parsed()).unwrap();
        verify_embedded().unwrap();
    }

    #[test]
    fn object_has_no_program_the_loader_does_not_know() {
        let object = parsed();
        let mut found: Vec<&str> = object.programs.keys().map(String::as_str).collect();
        found.sort_unstable();
        let mut known: Vec<&str> = PROGRAMS.iter().map(|(name, _)| *name).collect();
        known.sort_unstable();
        assert_eq!(found, known);
    }

    #[test]
    fn every_load_time_global_exists_with_its_size() {
        let object = parsed();
        for (name, size) in GLOBALS {
            let mut copy = object.clone();
            let value = vec![0_u8; size];
            copy.patch_map_data(HashMap::from([(name, (&value[..], true))])).unwrap_or_else(|e| panic!("{name}: {e}"));
            // The check can fail: the wrong size is refused.
            let wrong = vec![0_u8; size * 2];
            assert!(copy.patch_map_data(HashMap::from([(name, (&wrong[..], true))])).is_err(), "{name}");
        }
        // ... and so is a name that is not in the object.
        let mut copy = object.clone();
        let value = 0_u64.to_ne_bytes();
        assert!(copy.patch_map_data(HashMap::from([("NO_SUCH_GLOBAL", (&value[..], true))])).is_err());
    }

    /// The names (string values) of `monitor_common::maps`' top-level `&str` constants whose
    /// identifiers `keep` accepts, each item read from `pub const` to its `;` (whatever lines
    /// rustfmt wraps it onto), sorted.
    fn common_names(keep: impl Fn(&str) -> bool) -> Vec<&'static str> {
        let source = include_str!("../../../monitor-common/src/maps.rs");
        let top = source.split("pub mod programs").next().unwrap_or_default();
        let mut named: Vec<&str> = top
            .split("\npub const ")
            .skip(1)
            .filter_map(|item| item.split(';').next())
            .filter(|item| item.contains(": &str") && keep(item))
            .filter_map(|item| item.split('"').nth(1))
            .collect();
        named.sort_unstable();
        named
    }

    fn sorted<T>(list: &[(&'static str, T)]) -> Vec<&'static str> {
        let mut names: Vec<&str> = list.iter().map(|(name, _)| *name).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn every_global_and_map_the_common_crate_names_is_checked() {
        // A new `GLOBAL_*` constant must be added to `GLOBALS`, a new map name (any other
        // top-level `&str` constant) to `MAPS`, and so be checked at start-up.
        assert_eq!(common_names(|item| item.starts_with("GLOBAL_")), sorted(&GLOBALS));
        assert_eq!(common_names(|item| !item.starts_with("GLOBAL_")), sorted(&MAPS));
    }

    #[test]
    fn a_missing_program_is_a_hard_error_naming_it() {
        for (name, _) in PROGRAMS {
            let mut object = parsed();
            object.programs.remove(name);
            let err = verify(&object).unwrap_err();
            assert!(matches!(err, Error::ProgramNotFound { name: n } if n == name), "{name}: {err:?}");
            assert_eq!(err.to_string(), format!("program `{name}` not found in the kernel object (build mismatch)"));
        }
    }

    #[test]
    fn a_program_of_another_kind_or_a_missing_map_is_refused() {
        let mut object = parsed();
        let send = object.programs.get(programs::SEND_LENGTH).unwrap().clone();
        object.programs.insert(programs::SOCK_OPS.to_owned(), send);
        assert!(matches!(verify(&object), Err(Error::ProgramKind { name: programs::SOCK_OPS, .. })));

        for (name, _) in MAPS {
            let mut object = parsed();
            object.maps.remove(name);
            assert!(matches!(verify(&object), Err(Error::MapNotFound { name: n }) if n == name));
        }
    }
}
