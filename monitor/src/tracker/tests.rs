//! Tracker state machine against hand-built kernel events.

use std::{net::SocketAddr, time::Duration};

use monitor_common::{
    AF_INET, IPPROTO_TCP, IPPROTO_UDP,
    event::{
        Event, EventKind, FLAG_NO_OWNER, FLAG_PASSIVE, FLAG_TCP_COUNTERS, TCP_ALL_ACKED, TCP_FIN_RECEIVED, TcpCounters,
        Tuple,
    },
    sock::{ByteCounters, Owner as KOwner, OwnerSource as KSource},
};

use super::{
    Tracker, TrackerConfig,
    record::{Direction, FlowRecord, Owner, OwnerSource, PayloadSource, PayloadSources, RecordKind, Rtt},
};
use crate::clock::Clock;

const SEC: u64 = 1_000_000_000;

fn ip(a: [u8; 4]) -> [u32; 4] {
    [u32::from_ne_bytes(a), 0, 0, 0]
}

/// The tracker settings of the tests (also `protocols`' tests).
pub(super) fn config() -> TrackerConfig {
    TrackerConfig {
        update_interval: Duration::from_secs(10),
        tcp_close_grace: Duration::from_secs(120),
        syscall_payload: true,
        fresh_at_shutdown: true,
        release_events: true,
        peer_counting: true,
    }
}

fn tracker() -> Tracker {
    Tracker::new(config(), Clock::with_offset(0))
}

fn owner(tgid: u32) -> KOwner {
    let mut comm = [0u8; 16];
    comm[..6].copy_from_slice(b"client");
    KOwner {
        tgid,
        pid: tgid,
        uid: 1000,
        gid: 1000,
        cgroup_id: 1,
        created_ns: SEC,
        comm,
        source: KSource::SockCreate as u8,
        start_cs: 0,
        exec_mark: [0; 3],
    }
}

fn tcp_tuple() -> Tuple {
    Tuple {
        local_addr: ip([10, 0, 0, 1]),
        remote_addr: ip([10, 0, 0, 2]),
        local_port: 40000,
        remote_port: 443,
        family: AF_INET,
        protocol: IPPROTO_TCP,
    }
}

fn ev(kind: EventKind, ts: u64, bytes: ByteCounters) -> Event {
    Event {
        kind: kind as u32,
        ts_ns: ts,
        cookie: 7,
        first_ns: SEC,
        owner: owner(42),
        tuple: tcp_tuple(),
        bytes,
        ..Event::default()
    }
}

fn counters(wire_tx: u64, wire_rx: u64, app_tx: u64, app_rx: u64) -> ByteCounters {
    ByteCounters {
        wire_tx_bytes: wire_tx,
        wire_tx_packets: 2,
        wire_rx_bytes: wire_rx,
        wire_rx_packets: 3,
        app_tx_bytes: app_tx,
        app_rx_bytes: app_rx,
    }
}

fn feed(t: &mut Tracker, events: &[(EventKind, Event)]) -> Vec<FlowRecord> {
    let mut out = Vec::new();
    for (kind, e) in events {
        t.handle(*kind, e, &mut out);
    }
    out
}

/// An accepted connection served by another process than the listener's: its first events
/// carry the listener's owner (inherited), the kernel's `Update` at the service's first read the
/// service's (`first_io`), which the flow keeps; a later event with the inherited owner (a
/// snapshot read from the listener's side) does not take it back.
#[test]
fn an_accepted_connection_is_charged_to_the_process_that_served_it() {
    let mut t = tracker();
    let passive = |kind, ts, bytes, owner: KOwner| Event { flags: FLAG_PASSIVE, owner, ..ev(kind, ts, bytes) };
    let mut service = owner(77);
    service.source = KSource::FirstIo as u8;
    service.comm = *b"service\0\0\0\0\0\0\0\0\0";
    let events = [
        (EventKind::Established, passive(EventKind::Established, 2 * SEC, ByteCounters::default(), owner(1))),
        (EventKind::Update, passive(EventKind::Update, 2 * SEC + 1, counters(0, 600, 0, 500), service)),
        (EventKind::Update, passive(EventKind::Update, 3 * SEC, counters(900, 600, 800, 500), owner(1))),
        (EventKind::Release, passive(EventKind::Release, 4 * SEC, counters(1000, 700, 800, 500), service)),
        (EventKind::TcpClose, passive(EventKind::TcpClose, 4 * SEC, counters(1100, 700, 800, 500), service)),
    ];
    let out = feed(&mut t, &events);
    assert_eq!(out.len(), 1, "{out:#?}");
    let r = &out[0];
    assert_eq!((r.direction, r.owner.tgid, &*r.owner.comm), (Direction::Inbound, 77, "service"));
    assert_eq!(r.owner.source, OwnerSource::FirstIo);
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (800, 500));
}

#[test]
fn tcp_flow_closes_after_release_and_tcp_close() {
    let mut t = tracker();
    let est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    let rel = ev(EventKind::Release, 3 * SEC, counters(1000, 500, 900, 400));
    let out = feed(&mut t, &[(EventKind::Established, est), (EventKind::Release, rel)]);
    assert!(out.is_empty(), "TCP must wait for TCP_CLOSE after release");
    let close = ev(EventKind::TcpClose, 4 * SEC, counters(1100, 600, 900, 400));
    let out = feed(&mut t, &[(EventKind::TcpClose, close)]);
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(r.event, RecordKind::Close);
    assert_eq!(r.direction, Direction::Outbound);
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (900, 400));
    assert_eq!((r.wire.tx_bytes, r.wire.rx_bytes), (1100, 600));
    assert_eq!(r.payload_source, PayloadSource::Syscall);
    assert_eq!(r.owner.tgid, 42);
    assert_eq!(&*r.owner.comm, "client");
    assert_eq!(r.remote, Some("10.0.0.2:443".parse::<SocketAddr>().unwrap()));
    assert!(r.complete);
    assert!(r.final_of_socket, "released and closed: the socket is gone");
    assert_eq!(t.stats().open_flows, 0);
}

/// One TCP socket, two connections (`connect(AF_UNSPEC)`, then `connect()` to another server):
/// the `Reconnect` ends the first flow with the counters the kernel took and the first
/// connection's addresses; the second flow counts from zero with its own.
#[test]
fn a_reconnect_ends_the_first_connection_and_the_second_is_a_new_flow() {
    let mut t = tracker();
    let est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    let close = ev(EventKind::TcpClose, 3 * SEC, counters(1100, 600, 900, 400));
    assert!(feed(&mut t, &[(EventKind::Established, est), (EventKind::TcpClose, close)]).is_empty());
    // The kernel forgot the destination (port 0): the flow keeps the one it knew.
    let mut again = ev(EventKind::Reconnect, 4 * SEC, counters(1150, 640, 900, 400));
    again.tuple.remote_addr = [0; 4];
    again.tuple.remote_port = 0;
    let out = feed(&mut t, &[(EventKind::Reconnect, again)]);
    assert_eq!(out.len(), 1, "{out:#?}");
    let first = &out[0];
    assert_eq!(first.event, RecordKind::Close);
    assert_eq!((first.payload.tx_bytes, first.payload.rx_bytes), (900, 400));
    assert_eq!((first.wire.tx_bytes, first.wire.rx_bytes), (1150, 640));
    assert_eq!(first.remote, Some("10.0.0.2:443".parse::<SocketAddr>().unwrap()));
    assert!(first.complete && !first.final_of_socket, "{first:#?}");
    // It closed at its `TcpClose` (the disconnect), not at the next connect.
    let at = |ns: u64| Clock::with_offset(0).wall(ns);
    assert_eq!((first.closed, first.last_seen), (Some(at(3 * SEC)), at(3 * SEC)));
    let mut second = Tuple { remote_addr: ip([10, 0, 0, 3]), local_port: 40001, ..tcp_tuple() };
    second.remote_port = 8443;
    let est = Event { tuple: second, ..ev(EventKind::Established, 5 * SEC, ByteCounters::default()) };
    let rel = Event { tuple: second, ..ev(EventKind::Release, 6 * SEC, counters(300, 200, 70, 30)) };
    let close = Event { tuple: second, ..ev(EventKind::TcpClose, 6 * SEC, counters(350, 240, 70, 30)) };
    let out = feed(&mut t, &[(EventKind::Established, est), (EventKind::Release, rel), (EventKind::TcpClose, close)]);
    assert_eq!(out.len(), 1, "{out:#?}");
    let r = &out[0];
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (70, 30));
    assert_eq!((r.wire.tx_bytes, r.wire.rx_bytes), (350, 240));
    assert_eq!(r.remote, Some("10.0.0.3:8443".parse::<SocketAddr>().unwrap()));
    assert_eq!(r.local, Some("10.0.0.1:40001".parse::<SocketAddr>().unwrap()));
    assert_eq!((r.cookie, r.direction), (first.cookie, Direction::Outbound));
    assert!(r.final_of_socket);
    assert_eq!(t.stats().open_flows, 0);
}

/// Without release events, a disconnected connection ends at the close grace; a `Reconnect`
/// long after (its `TcpClose` was sent, `FLAG_CLOSE_SENT`) must not write it a second time
/// (review finding). A refused attempt's `Reconnect` (no `TcpClose` sent) still is its record.
#[test]
fn a_reconnect_after_the_flow_ended_at_the_grace_writes_nothing_twice() {
    let mut t = Tracker::new(TrackerConfig { release_events: false, ..config() }, Clock::with_offset(0));
    let est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    let close = ev(EventKind::TcpClose, 3 * SEC, counters(1100, 600, 900, 400));
    assert!(feed(&mut t, &[(EventKind::Established, est), (EventKind::TcpClose, close)]).is_empty());
    let mut ended = Vec::new();
    t.tick(200 * SEC, &mut ended);
    assert_eq!(ended.len(), 1, "ended at the grace: {ended:#?}");
    let again = Event {
        flags: monitor_common::event::FLAG_CLOSE_SENT,
        ..ev(EventKind::Reconnect, 300 * SEC, counters(1150, 640, 900, 400))
    };
    assert!(feed(&mut t, &[(EventKind::Reconnect, again)]).is_empty(), "written once");
    let attempt = Event { cookie: 8, ..ev(EventKind::Reconnect, 301 * SEC, counters(60, 40, 0, 0)) };
    let out = feed(&mut t, &[(EventKind::Reconnect, attempt)]);
    assert_eq!(out.len(), 1, "a refused attempt's record: {out:#?}");
    assert_eq!((out[0].wire.tx_bytes, out[0].payload.tx_bytes), (60, 0));
}

/// The kernel sends no `Release` for a TCP socket released before `TCP_CLOSE`: its `TcpClose`
/// says so and ends the flow, with the final payload and wire counters, complete.
#[test]
fn tcp_close_after_release_without_release_event_ends_the_flow() {
    let mut t = tracker();
    let est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    let mut close = ev(EventKind::TcpClose, 4 * SEC, counters(1100, 600, 900, 400));
    close.flags = monitor_common::event::FLAG_RELEASED;
    assert!(feed(&mut t, &[(EventKind::Established, est)]).is_empty());
    let out = feed(&mut t, &[(EventKind::TcpClose, close)]);
    assert_eq!(out.len(), 1, "the flagged TcpClose ends the flow");
    let r = &out[0];
    assert_eq!(r.event, RecordKind::Close);
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (900, 400));
    assert_eq!((r.wire.tx_bytes, r.wire.rx_bytes), (1100, 600));
    assert!(r.complete);
    assert!(r.final_of_socket);
    assert_eq!(t.stats().open_flows, 0);
    // Nothing is left to end later: no second record at the grace or at shutdown.
    let mut later = Vec::new();
    t.tick(60 * SEC, &mut later);
    t.shutdown(61 * SEC, &mut later);
    assert!(later.is_empty(), "{later:?}");
}

#[test]
fn payload_read_after_tcp_close_is_kept_until_release() {
    let mut t = tracker();
    let mut est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    est.flags = FLAG_PASSIVE;
    let close = ev(EventKind::TcpClose, 3 * SEC, counters(100, 5000, 0, 1000));
    let rel = ev(EventKind::Release, 4 * SEC, counters(100, 5000, 0, 4900));
    let out = feed(&mut t, &[(EventKind::Established, est), (EventKind::TcpClose, close)]);
    assert!(out.is_empty(), "the process still holds the socket");
    let out = feed(&mut t, &[(EventKind::Release, rel)]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload.rx_bytes, 4900);
    assert_eq!(out[0].direction, Direction::Inbound);
    assert!(out[0].final_of_socket, "closed, then released");
}

#[test]
fn missing_tcp_close_ends_flow_incomplete_after_grace() {
    let mut t = tracker();
    let est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    let rel = ev(EventKind::Release, 3 * SEC, counters(10, 10, 5, 5));
    assert!(feed(&mut t, &[(EventKind::Established, est), (EventKind::Release, rel)]).is_empty());
    let mut out = Vec::new();
    t.tick(100 * SEC, &mut out);
    assert!(out.iter().all(|r| r.event == RecordKind::Update), "still within the grace period");
    out.clear();
    t.tick(124 * SEC, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].event, RecordKind::Close);
    assert!(!out[0].complete);
    assert_eq!(t.stats().incomplete_flows, 1);
}

#[test]
fn updates_carry_deltas_and_only_when_something_changed() {
    let mut t = tracker();
    let est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    let up = ev(EventKind::Update, 5 * SEC, counters(1000, 100, 800, 50));
    feed(&mut t, &[(EventKind::Established, est), (EventKind::Update, up)]);
    let mut out = Vec::new();
    t.tick(13 * SEC, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].event, RecordKind::Update);
    assert_eq!(out[0].delta_payload.tx_bytes, 800);
    out.clear();
    t.tick(30 * SEC, &mut out);
    assert!(out.is_empty(), "nothing changed");
    let up2 = ev(EventKind::Update, 31 * SEC, counters(3000, 100, 2500, 50));
    feed(&mut t, &[(EventKind::Update, up2)]);
    t.tick(45 * SEC, &mut out);
    assert_eq!(out[0].delta_payload.tx_bytes, 1700);
    assert_eq!(out[0].payload.tx_bytes, 2500);
}

#[test]
fn silent_sockets_produce_no_record() {
    let mut t = tracker();
    let mut rel = ev(EventKind::Release, 3 * SEC, ByteCounters::default());
    rel.tuple.protocol = IPPROTO_UDP;
    assert!(feed(&mut t, &[(EventKind::Release, rel)]).is_empty());
    assert_eq!(t.stats().silent_sockets, 1);
}

#[test]
fn owner_from_proc_fills_sockets_the_kernel_could_not_attribute() {
    let mut t = tracker();
    let mut disc = ev(EventKind::Discovered, 2 * SEC, ByteCounters::default());
    disc.flags = FLAG_NO_OWNER;
    disc.owner = KOwner { uid: 1000, ..KOwner::default() };
    feed(&mut t, &[(EventKind::Discovered, disc)]);
    let queries = t.take_owner_queries();
    assert_eq!(queries.len(), 1);
    let procfs_owner = Owner {
        tgid: 77,
        pid: 77,
        uid: 1000,
        gid: 1000,
        comm: "old".into(),
        cgroup_id: 0,
        source: OwnerSource::Procfs,
        start_cs: 0,
        exec_mark: 0,
    };
    t.set_owner(7, &procfs_owner);
    let mut rel = ev(EventKind::Release, 3 * SEC, counters(10, 10, 5, 5));
    rel.flags = FLAG_NO_OWNER;
    rel.tuple.protocol = IPPROTO_UDP;
    let out = feed(&mut t, &[(EventKind::Release, rel)]);
    assert_eq!(out[0].owner, procfs_owner);
    assert!(t.resolved.is_empty(), "the socket's last flow took its owner along");
    // An answer that comes after the socket's flows ended is not kept (a review: it stayed for
    // the run).
    t.set_owner(7, &procfs_owner);
    assert!(t.resolved.is_empty());
}

#[test]
fn shutdown_reports_open_flows() {
    let mut t = tracker();
    let est = ev(EventKind::Established, 2 * SEC, counters(10, 10, 5, 5));
    feed(&mut t, &[(EventKind::Established, est)]);
    let mut out = Vec::new();
    t.shutdown(9 * SEC, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].event, RecordKind::Shutdown);
    assert_eq!(t.stats().open_flows, 0);
}

#[test]
fn tcp_counter_fallback_removes_syn_and_fins() {
    let config = TrackerConfig { tcp_close_grace: Duration::from_secs(1), syscall_payload: false, ..config() };
    let mut t = Tracker::new(config, Clock::with_offset(0));
    let est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    let rel = ev(EventKind::Release, 3 * SEC, counters(10, 10, 0, 0));
    let mut close = ev(EventKind::TcpClose, 4 * SEC, counters(10, 10, 0, 0));
    // Passive close: peer's FIN received, our FIN acked (LAST_ACK -> CLOSE).
    close.tcp = TcpCounters {
        bytes_acked: 5002,
        bytes_received: 100_001,
        old_state: 9,
        flags: TCP_FIN_RECEIVED | TCP_ALL_ACKED,
        ..TcpCounters::default()
    };
    let out = feed(&mut t, &[(EventKind::Established, est), (EventKind::Release, rel), (EventKind::TcpClose, close)]);
    assert_eq!((out[0].payload.tx_bytes, out[0].payload.rx_bytes), (5000, 100_000));
    assert_eq!(out[0].payload_source, PayloadSource::TcpCounters);
}

fn peer_event(kind: EventKind, gen_: u64, addr: [u8; 4], app_tx: u64) -> (EventKind, Event) {
    let mut e = ev(kind, 2 * SEC, counters(app_tx + 28, 0, app_tx, 0));
    e.tuple = Tuple { remote_addr: ip(addr), remote_port: 53, protocol: IPPROTO_UDP, ..tcp_tuple() };
    e.generation = gen_;
    (kind, e)
}

fn udp_release(cookie: u64) -> (EventKind, Event) {
    let mut release = ev(EventKind::Release, 3 * SEC, counters(9999, 0, 9999, 0));
    release.cookie = cookie;
    release.tuple.protocol = IPPROTO_UDP;
    release.tuple.remote_port = 0;
    (EventKind::Release, release)
}

mod compact;
mod connected_udp;
mod final_record;
mod payload;
mod peers;
mod shutdown;
mod timers;
mod vanish;

/// A connection closed while no process held it (`FLAG_NO_FILE`: never accepted) ends at the
/// grace, complete, with no payload although the kernel received bytes (nobody read them); one
/// accepted after all (a `Release` within the grace) ends at that release, once, with the
/// kernel's counters for what the process read without recvmsg.
#[test]
fn a_connection_closed_without_a_file_ends_at_the_grace_with_no_payload() {
    use monitor_common::event::FLAG_NO_FILE;
    let config = TrackerConfig { tcp_close_grace: Duration::from_secs(2), ..config() };
    let passive = |kind, ts, bytes| Event { flags: FLAG_PASSIVE | FLAG_TCP_COUNTERS, ..ev(kind, ts, bytes) };
    let base = TcpCounters { bytes_acked: 1, bytes_received: 1, ..TcpCounters::default() };
    let reset = TcpCounters { bytes_acked: 1, bytes_received: 30_001, old_state: 1, ..TcpCounters::default() };
    let est = Event { tcp: base, ..passive(EventKind::Established, 2 * SEC, ByteCounters::default()) };
    let close = Event {
        flags: FLAG_PASSIVE | FLAG_TCP_COUNTERS | FLAG_NO_FILE,
        tcp: reset,
        ..passive(EventKind::TcpClose, 3 * SEC, counters(0, 31_000, 0, 0))
    };

    let mut t = Tracker::new(config, Clock::with_offset(0));
    assert!(feed(&mut t, &[(EventKind::Established, est), (EventKind::TcpClose, close)]).is_empty());
    let mut out = Vec::new();
    t.tick(4 * SEC, &mut out);
    assert!(out.iter().all(|r| r.event == RecordKind::Update), "not before the grace: {out:?}");
    out.clear();
    t.tick(5 * SEC + 1, &mut out);
    let ends: Vec<_> = out.iter().filter(|r| r.event == RecordKind::Close).collect();
    assert_eq!(ends.len(), 1, "{out:?}");
    let r = ends[0];
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes, r.payload_source), (0, 0, PayloadSource::Syscall));
    assert_eq!(r.wire.rx_bytes, 31_000);
    assert!(r.complete, "{r:?}");
    assert_eq!(t.stats().open_flows, 0);
    // Accepted after the grace after all (it was still in the queue), read by recv, released:
    // the flow goes on from its record (not a new flow, its wire bytes not counted again; it
    // ended twice with the same wire bytes: found by an adversarial pass).
    let read = Event { flags: FLAG_PASSIVE, ..ev(EventKind::Release, 9 * SEC, counters(0, 31_000, 0, 30_000)) };
    let out = feed(&mut t, &[(EventKind::Release, read)]);
    assert_eq!(out.len(), 1, "{out:?}");
    let later = &out[0];
    assert!(later.resumed && !later.is_first(), "{later:?}");
    assert_eq!(later.direction, Direction::Inbound, "{later:?}");
    assert_eq!((later.delta_payload.rx_bytes, later.delta_wire.rx_bytes), (30_000, 0), "{later:?}");

    // Accepted after the reset (it was still in the queue), read by splice, then released.
    let mut t = Tracker::new(config, Clock::with_offset(0));
    // Its release reads the kernel's counters: everything read, nothing unread.
    let taken = TcpCounters {
        bytes_acked: 1,
        bytes_received: 30_001,
        old_state: 7,
        flags: monitor_common::event::TCP_CONSUMED,
        ..TcpCounters::default()
    };
    let release = Event { tcp: taken, ..passive(EventKind::Release, 4 * SEC, counters(0, 31_000, 0, 0)) };
    let out =
        feed(&mut t, &[(EventKind::Established, est), (EventKind::TcpClose, close), (EventKind::Release, release)]);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].event, out[0].payload.rx_bytes), (RecordKind::Close, 30_000), "{out:?}");
    let mut later = Vec::new();
    t.tick(10 * SEC, &mut later);
    assert!(later.is_empty(), "ended once: {later:?}");

    // Without release events every closed socket has no file at its close: the mark means
    // nothing then, and the payload keeps the kernel's counters (found by a review).
    let config = TrackerConfig { release_events: false, ..config };
    let mut t = Tracker::new(config, Clock::with_offset(0));
    assert!(feed(&mut t, &[(EventKind::Established, est), (EventKind::TcpClose, close)]).is_empty());
    let mut out = Vec::new();
    t.tick(5 * SEC + 1, &mut out);
    let r = out.iter().find(|r| r.event == RecordKind::Close).expect("ends at the grace");
    assert_eq!(r.payload.rx_bytes, 30_000, "{r:?}");
}
