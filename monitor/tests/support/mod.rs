//! Fixtures shared by the integration tests (each test file is a crate of its own: `mod support;`).
#![expect(clippy::expect_used, reason = "test fixtures panic on failure (house style R16)")]

use jiff::Timestamp;
use monitor::tracker::{
    FlowRecord,
    record::{Direction, Owner, OwnerSource, Payload, PayloadSource, Protocol, RecordKind, Wire},
};

/// The process a fixture record belongs to: its tgid (also its pid), uid (also its gid) and
/// `comm`; created in cgroup 1, owner learnt at `sock_create`.
pub struct Proc<'a> {
    pub tgid: u32,
    pub uid: u32,
    pub comm: &'a str,
}

/// A closed outbound TCP flow from 10.0.0.1:40000 to `remote` (`ip:port`) of `proc`, with
/// `payload` and `wire` both as totals and as deltas (its only record), seen, last seen and
/// closed at `at`, complete.
pub fn close_record(
    cookie: u64,
    proc: &Proc<'_>,
    remote: &str,
    (payload, wire): (Payload, Wire),
    at: Timestamp,
) -> FlowRecord {
    FlowRecord {
        event: RecordKind::Close,
        cookie,
        owner: Owner {
            tgid: proc.tgid,
            pid: proc.tgid,
            uid: proc.uid,
            gid: proc.uid,
            comm: proc.comm.into(),
            cgroup_id: 1,
            source: OwnerSource::SockCreate,
            start_cs: 0,
            exec_mark: 0,
        },
        protocol: Protocol::Tcp,
        ip_protocol: 6,
        direction: Direction::Outbound,
        local: Some("10.0.0.1:40000".parse().expect("fixture address")),
        remote: Some(remote.parse().expect("fixture address")),
        payload,
        payload_source: PayloadSource::Syscall,
        payload_sources: Default::default(),
        rtt: None,
        final_of_socket: false,
        release: Default::default(),
        resumed: false,
        wire,
        delta_payload: payload,
        delta_wire: wire,
        first_seen: at,
        last_seen: at,
        closed: Some(at),
        complete: true,
    }
}
