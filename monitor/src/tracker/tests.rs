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
        source: KSource::SockCreate as u32,
        _pad: 0,
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
    service.source = KSource::FirstIo as u32;
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

/// A connected UDP socket the monitor saw created sends no `Connect`: its `Release` says it was
/// connected, and the flow is outbound, to the socket's remote address, with exact counters.
#[test]
fn connected_udp_without_connect_event_is_outbound_from_its_release_flag() {
    let mut t = tracker();
    let mut release = ev(EventKind::Release, 3 * SEC, counters(1228, 1228, 1200, 1200));
    release.tuple.protocol = IPPROTO_UDP;
    release.flags = monitor_common::event::FLAG_CONNECTED;
    let out = feed(&mut t, &[(EventKind::Release, release)]);
    assert_eq!(out.len(), 1, "{out:#?}");
    let r = &out[0];
    assert_eq!(r.direction, Direction::Outbound);
    assert_eq!(r.remote, Some("10.0.0.2:443".parse::<SocketAddr>().unwrap()));
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (1200, 1200));
    // Without the flag (a socket that only received, or never connected) the direction stays open.
    let mut t = tracker();
    let mut release = ev(EventKind::Release, 3 * SEC, counters(0, 1228, 0, 1200));
    release.tuple.protocol = IPPROTO_UDP;
    let out = feed(&mut t, &[(EventKind::Release, release)]);
    assert_ne!(out[0].direction, Direction::Outbound);
}

/// A TCP connection that never established (refused, or unanswered and closed): its only event
/// is the `Release`, which carries the destination the `connect` hook kept and `FLAG_CONNECTED`.
/// It is an outbound flow to that destination with the SYN and reset counted, not a listener.
/// Without the flag and the remote (a socket that only bound), it stays a listener.
#[test]
fn a_tcp_connection_that_never_established_is_outbound_to_its_destination() {
    let mut t = tracker();
    let mut release = ev(EventKind::Release, 3 * SEC, counters(60, 40, 0, 0));
    release.flags = monitor_common::event::FLAG_CONNECTED;
    let out = feed(&mut t, &[(EventKind::Release, release)]);
    assert_eq!(out.len(), 1, "{out:#?}");
    let r = &out[0];
    assert_eq!((r.protocol, r.direction), (super::record::Protocol::Tcp, Direction::Outbound));
    assert_eq!(r.remote, Some("10.0.0.2:443".parse::<SocketAddr>().unwrap()));
    assert_eq!((r.wire.tx_bytes, r.wire.rx_bytes, r.payload.tx_bytes, r.payload.rx_bytes), (60, 40, 0, 0));

    let mut t = tracker();
    let mut release = ev(EventKind::Release, 3 * SEC, counters(0, 0, 0, 0));
    release.tuple.remote_addr = [0; 4];
    release.tuple.remote_port = 0;
    let out = feed(&mut t, &[(EventKind::Release, release)]);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!((out[0].direction, out[0].remote), (Direction::Listen, None));
}

/// A UDP socket whose peer changed: the connected flow ends at `PeerChanged` with its counters
/// and the remote address it had (the event's is zero after a disconnect), the peers after it are
/// flows of their own, and the socket's release (counters counted from zero again) adds nothing.
#[test]
fn a_udp_peer_change_ends_the_connected_flow_and_peers_follow() {
    let mut t = tracker();
    let connected = |kind, ts, c| {
        let mut e = ev(kind, ts, c);
        e.tuple.protocol = IPPROTO_UDP;
        e.flags = monitor_common::event::FLAG_CONNECTED;
        e
    };
    let update = connected(EventKind::Update, SEC, counters(628, 628, 600, 600));
    let mut changed = connected(EventKind::PeerChanged, 2 * SEC, counters(1256, 1256, 1200, 1200));
    changed.tuple.remote_addr = [0; 4];
    changed.tuple.remote_port = 0;
    let (peer_kind, peer) = peer_event(EventKind::PeerClosed, 1, [10, 0, 0, 9], 300);
    let mut release = connected(EventKind::Release, 3 * SEC, counters(328, 0, 300, 0));
    release.tuple.remote_port = 0;
    let out = feed(
        &mut t,
        &[
            (EventKind::Update, update),
            (EventKind::PeerChanged, changed),
            (peer_kind, peer),
            (EventKind::Release, release),
        ],
    );
    let closed: Vec<&FlowRecord> = out.iter().filter(|r| r.event == RecordKind::Close).collect();
    assert_eq!(closed.len(), 2, "{out:#?}");
    let first = closed[0];
    assert_eq!(first.remote, Some("10.0.0.2:443".parse::<SocketAddr>().unwrap()), "the address the update carried");
    assert_eq!((first.payload.tx_bytes, first.payload.rx_bytes, first.direction), (1200, 1200, Direction::Outbound));
    let second = closed[1];
    assert_eq!((second.remote, second.payload.tx_bytes), (Some("10.0.0.9:53".parse().unwrap()), 300));
    let sent: u64 = out.iter().map(|r| r.delta_payload.tx_bytes).sum();
    assert_eq!(sent, 1500, "each byte once: {out:#?}");
}

/// After a peer change, socket-level events (an update reserved on another CPU before the
/// change, arriving after it; a refresh) say nothing of their own: every byte once.
#[test]
fn socket_events_after_a_peer_change_add_nothing() {
    let mut t = tracker();
    let mut changed = ev(EventKind::PeerChanged, 2 * SEC, counters(1256, 1256, 1200, 1200));
    changed.tuple.protocol = IPPROTO_UDP;
    changed.flags = monitor_common::event::FLAG_CONNECTED;
    let mut late = ev(EventKind::Update, 2 * SEC, counters(1884, 1884, 1800, 1800));
    late.tuple.protocol = IPPROTO_UDP;
    late.flags = monitor_common::event::FLAG_CONNECTED;
    let mut out = feed(&mut t, &[(EventKind::PeerChanged, changed), (EventKind::Update, late)]);
    t.tick(40 * SEC, &mut out);
    t.shutdown(41 * SEC, &mut out);
    let sent: u64 = out.iter().map(|r| r.delta_payload.tx_bytes).sum();
    assert_eq!((out.len(), sent), (1, 1200), "{out:#?}");
}

/// A peer change whose `PeerChanged` event was lost (ring buffer full: the kernel dropped the
/// connected flow's counters since its last report with it, counted as lost, and counts from
/// zero): the kernel marks every later event of the socket `FLAG_PEERS`, so a refresh of its
/// counters (now its peers' bytes) adds nothing, and its release leaves them to its peers'
/// records.
#[test]
fn socket_events_marked_per_peer_add_nothing_when_the_change_was_lost() {
    use monitor_common::event::{FLAG_CONNECTED, FLAG_PEERS, FLAG_SNAPSHOT};
    let mut t = tracker();
    let udp = |kind, ts, c, flags| {
        let mut e = ev(kind, ts, c);
        e.tuple.protocol = IPPROTO_UDP;
        e.flags = flags;
        e
    };
    let update = udp(EventKind::Update, SEC, counters(628, 628, 600, 600), FLAG_CONNECTED);
    let mut out = feed(&mut t, &[(EventKind::Update, update)]);
    t.tick(12 * SEC, &mut out);
    let refresh =
        udp(EventKind::Update, 15 * SEC, counters(928, 0, 900, 0), FLAG_SNAPSHOT | FLAG_CONNECTED | FLAG_PEERS);
    out.extend(feed(&mut t, &[(EventKind::Update, refresh)]));
    t.tick(30 * SEC, &mut out);
    let (peer_kind, peer) = peer_event(EventKind::PeerClosed, 1, [10, 0, 0, 9], 900);
    let release = udp(EventKind::Release, 31 * SEC, counters(928, 0, 900, 0), FLAG_CONNECTED | FLAG_PEERS);
    out.extend(feed(&mut t, &[(peer_kind, peer), (EventKind::Release, release)]));
    let sent: u64 = out.iter().map(|r| r.delta_payload.tx_bytes).sum();
    assert_eq!(sent, 1500, "the update's 600 and the peer's 900, once: {out:#?}");
    assert!(t.changed.is_empty(), "released: {:?}", t.changed);
}

/// The set of sockets counted per peer holds only sockets the tracker still knows: a socket whose
/// `Release` was lost leaves it at the next tick. A later event of the socket (marked
/// `FLAG_PEERS` by the kernel) marks it again, so its refreshes add nothing; released without
/// peer flows, its own record carries what no peer does, once.
#[test]
fn sockets_counted_per_peer_are_forgotten_with_their_flows() {
    use monitor_common::event::{FLAG_CONNECTED, FLAG_PEERS};
    let mut t = tracker();
    let udp = |kind, ts, c| {
        let mut e = ev(kind, ts, c);
        e.tuple.protocol = IPPROTO_UDP;
        e.flags = FLAG_CONNECTED | FLAG_PEERS;
        e
    };
    let mut out = feed(&mut t, &[(EventKind::PeerChanged, udp(EventKind::PeerChanged, SEC, counters(628, 0, 600, 0)))]);
    assert_eq!(t.changed.len(), 1);
    t.tick(20 * SEC, &mut out);
    assert!(t.changed.is_empty(), "no flow of the socket is left: {:?}", t.changed);
    // The socket's next event says again that it is counted per peer: its counters (its peers'
    // bytes) make no record of its own.
    out.extend(feed(&mut t, &[(EventKind::Update, udp(EventKind::Update, 21 * SEC, counters(928, 0, 900, 0)))]));
    assert_eq!(t.changed.len(), 1);
    t.tick(40 * SEC, &mut out);
    assert_eq!(out.iter().filter(|r| r.event == RecordKind::Update).count(), 0, "{out:#?}");
    // Released without peer flows: its own record carries what no peer does, once.
    out.extend(feed(&mut t, &[(EventKind::Release, udp(EventKind::Release, 41 * SEC, counters(1228, 0, 1200, 0)))]));
    let closed: Vec<u64> = out.iter().filter(|r| r.event == RecordKind::Close).map(|r| r.payload.tx_bytes).collect();
    assert_eq!(closed, [600, 1200], "{out:#?}");
}

/// An unconnected UDP socket released without any peer flow (its packets' peers could not be
/// read) keeps its bytes in a record of its own; without peer counting (degradation
/// `no_unconnected_udp_peers`) the socket's record is the only one, updates included.
#[test]
fn unconnected_udp_bytes_without_peer_flows_keep_the_sockets_record() {
    for peer_counting in [true, false] {
        let mut t = tracker();
        t.config.peer_counting = peer_counting;
        let mut update = ev(EventKind::Update, SEC, counters(628, 0, 600, 0));
        update.tuple.protocol = IPPROTO_UDP;
        update.tuple.remote_addr = [0; 4];
        update.tuple.remote_port = 0;
        let mut release = update;
        release.ts_ns = 3 * SEC;
        release.bytes = counters(1256, 0, 1200, 0);
        let mut out = feed(&mut t, &[(EventKind::Update, update)]);
        t.tick(20 * SEC, &mut out);
        out.extend(feed(&mut t, &[(EventKind::Release, release)]));
        let sent: u64 = out.iter().map(|r| r.delta_payload.tx_bytes).sum();
        assert_eq!(sent, 1200, "peer counting {peer_counting}: {out:#?}");
        assert_eq!(out.iter().filter(|r| r.event == RecordKind::Update).count(), usize::from(!peer_counting));
    }
}

/// An unconnected UDP socket older than the monitor: found on the packet path (`Discovered`, no
/// remote address), its socket counters refreshed from the kernel (they hold its peers' bytes);
/// only its peers have records, also in updates and at shutdown.
#[test]
fn a_discovered_unconnected_udp_socket_is_counted_by_its_peers_only() {
    let mut t = tracker();
    let unconnected = |kind, ts, c| {
        let mut e = ev(kind, ts, c);
        e.tuple.protocol = IPPROTO_UDP;
        e.tuple.remote_addr = [0; 4];
        e.tuple.remote_port = 0;
        e
    };
    let found = unconnected(EventKind::Discovered, SEC, ByteCounters::default());
    let refreshed = unconnected(EventKind::Update, 2 * SEC, counters(328, 0, 300, 0));
    let (kind, peer) = peer_event(EventKind::PeerUpdate, 1, [10, 0, 0, 9], 300);
    let mut out = feed(&mut t, &[(EventKind::Discovered, found), (EventKind::Update, refreshed), (kind, peer)]);
    t.tick(40 * SEC, &mut out);
    t.shutdown(41 * SEC, &mut out);
    assert!(out.iter().all(|r| r.remote == Some("10.0.0.9:53".parse().unwrap())), "{out:#?}");
    let sent: u64 = out.iter().map(|r| r.delta_payload.tx_bytes).sum();
    assert_eq!(sent, 300, "{out:#?}");
}

#[test]
fn unconnected_udp_peers_are_separate_flows_and_generations_add_up() {
    let mut t = tracker();
    let out = feed(
        &mut t,
        &[
            peer_event(EventKind::PeerUpdate, 1, [1, 1, 1, 1], 100),
            peer_event(EventKind::PeerUpdate, 2, [8, 8, 8, 8], 20),
            peer_event(EventKind::PeerEvicted, 1, [1, 1, 1, 1], 200),
        ],
    );
    assert!(out.is_empty(), "a flushed slot parks its peer's flow until the socket closes: {out:#?}");
    assert_eq!(t.stats().open_flows, 2);
    let out = feed(
        &mut t,
        &[
            peer_event(EventKind::PeerClosed, 2, [8, 8, 8, 8], 50),
            peer_event(EventKind::PeerClosed, 3, [1, 1, 1, 1], 30),
            udp_release(7),
        ],
    );
    assert_eq!(out.len(), 2, "one record per peer, none for the socket itself: {out:#?}");
    let by_peer = |a: &str| out.iter().find(|r| r.remote == Some(a.parse().unwrap())).unwrap();
    assert_eq!(by_peer("1.1.1.1:53").payload.tx_bytes, 230, "both generations of the returning peer");
    assert_eq!(by_peer("8.8.8.8:53").payload.tx_bytes, 50);
    assert!(out.iter().all(|r| r.direction == Direction::Unconnected && r.payload_source == PayloadSource::IpLayer));
    assert_eq!(t.stats().open_flows, 0);
}

#[test]
fn eviction_does_not_close_a_flow_that_already_has_a_later_generation() {
    let mut t = tracker();
    let peer = |kind, gen_, app_tx| peer_event(kind, gen_, [1, 1, 1, 1], app_tx);
    // Generation 2 of the peer reported before the eviction of generation 1 (events of two CPUs).
    let out = feed(
        &mut t,
        &[peer(EventKind::PeerUpdate, 1, 10), peer(EventKind::PeerUpdate, 2, 5), peer(EventKind::PeerEvicted, 1, 40)],
    );
    assert!(out.is_empty(), "generation 2 is live: {out:#?}");
    assert_eq!(t.stats().open_flows, 1);
    // A late update of the finished generation 1 (emitted before its eviction on another CPU).
    let out = feed(&mut t, &[peer(EventKind::PeerUpdate, 1, 30), peer(EventKind::PeerClosed, 2, 7), udp_release(7)]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload.tx_bytes, 47, "generation 1 counted once (40), generation 2 (7)");
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
    };
    t.set_owner(7, &procfs_owner);
    let mut rel = ev(EventKind::Release, 3 * SEC, counters(10, 10, 5, 5));
    rel.flags = FLAG_NO_OWNER;
    rel.tuple.protocol = IPPROTO_UDP;
    let out = feed(&mut t, &[(EventKind::Release, rel)]);
    assert_eq!(out[0].owner, procfs_owner);
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

mod compact;
mod final_record;
mod payload;
mod peers;
mod timers;

/// Without release events (degradation `no_release_hook`), a TCP flow ends `tcp_close_grace`
/// after `TCP_CLOSE`, complete and with the bytes of the reads reported after it; at shutdown
/// such a flow is a `close` record too, while other open flows are `shutdown` records.
#[test]
fn without_release_events_tcp_ends_at_tcp_close_plus_grace_with_later_reads() {
    let mut t = tracker();
    t.config.release_events = false;
    let est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    let close = ev(EventKind::TcpClose, 3 * SEC, counters(0, 0, 900, 400));
    // A read after TCP_CLOSE, reported by the payload tracepoint.
    let late = ev(EventKind::Update, 4 * SEC, counters(0, 0, 900, 650));
    let out = feed(&mut t, &[(EventKind::Established, est), (EventKind::TcpClose, close), (EventKind::Update, late)]);
    assert!(out.is_empty(), "waits for the grace: {out:#?}");
    let mut out = Vec::new();
    t.tick(3 * SEC + 119 * SEC, &mut out);
    assert!(out.iter().all(|r| r.event != RecordKind::Close), "not before the grace: {out:#?}");
    let mut out = Vec::new();
    t.tick(3 * SEC + 121 * SEC, &mut out);
    let closed: Vec<&FlowRecord> = out.iter().filter(|r| r.event == RecordKind::Close).collect();
    assert_eq!(closed.len(), 1, "{out:#?}");
    assert!(closed[0].complete);
    assert_eq!((closed[0].payload.tx_bytes, closed[0].payload.rx_bytes), (900, 650));

    // At shutdown: the closed TCP flow is a complete close; a UDP flow a shutdown record.
    let mut t = tracker();
    t.config.release_events = false;
    let mut udp = ev(EventKind::Connect, 2 * SEC, counters(0, 0, 100, 100));
    udp.cookie = 8;
    udp.tuple.protocol = IPPROTO_UDP;
    let est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    let close = ev(EventKind::TcpClose, 3 * SEC, counters(0, 0, 900, 400));
    feed(&mut t, &[(EventKind::Connect, udp), (EventKind::Established, est), (EventKind::TcpClose, close)]);
    let mut out = Vec::new();
    t.shutdown(5 * SEC, &mut out);
    let tcp = out.iter().find(|r| r.cookie == 7).unwrap();
    assert_eq!((tcp.event, tcp.complete, tcp.payload.rx_bytes), (RecordKind::Close, true, 400));
    let udp = out.iter().find(|r| r.cookie == 8).unwrap();
    assert_eq!((udp.event, udp.payload.tx_bytes), (RecordKind::Shutdown, 100));
}

/// The socket-level `Update` announcing unconnected UDP socket `cookie` at its first peer.
fn unconnected_socket(cookie: u64) -> Event {
    let mut socket = ev(EventKind::Update, SEC, counters(0, 0, 0, 0));
    socket.cookie = cookie;
    socket.tuple = Tuple { protocol: IPPROTO_UDP, remote_port: 0, remote_addr: [0; 4], ..tcp_tuple() };
    socket
}

/// A peer slot read at shutdown (`PeerUpdate` with `FLAG_SNAPSHOT`): a peer never reported
/// gets a flow of its own, and a known peer its last bytes; both records are complete. A peer
/// with a second open generation (its flush was lost) is not known, so it stays incomplete;
/// the socket itself (counted per peer) writes no record.
#[test]
fn peer_slots_read_at_shutdown_give_complete_records() {
    use monitor_common::event::FLAG_SNAPSHOT;
    let mut t = tracker();
    let socket = unconnected_socket(7);
    let known = peer_event(EventKind::PeerUpdate, 1, [10, 0, 0, 9], 300);
    let lost_flush = peer_event(EventKind::PeerUpdate, 2, [10, 0, 0, 8], 50);
    feed(&mut t, &[(EventKind::Update, socket), known, lost_flush]);
    assert_eq!(t.peer_sockets(), [crate::probe::OpenSocket { cookie: 7, tgid: 42 }]);
    let read = |gen_, addr, tx| {
        let (kind, mut e) = peer_event(EventKind::PeerUpdate, gen_, addr, tx);
        e.flags |= FLAG_SNAPSHOT;
        (kind, e)
    };
    // The known peer's slot now holds 500 bytes; a new peer (claimed within the update
    // interval, never reported) holds 40; the peer whose flush was lost has a new generation.
    feed(&mut t, &[read(1, [10, 0, 0, 9], 500), read(3, [10, 0, 0, 7], 40), read(4, [10, 0, 0, 8], 20)]);
    let mut out = Vec::new();
    t.shutdown(5 * SEC, &mut out);
    let mut got: Vec<(String, u64, bool)> = out
        .iter()
        .map(|r| (r.remote.map(|a| a.ip().to_string()).unwrap_or_default(), r.payload.tx_bytes, r.complete))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [("10.0.0.7".into(), 40, true), ("10.0.0.8".into(), 70, false), ("10.0.0.9".into(), 500, true)],
        "{out:#?}"
    );
}

/// A released socket's slots outlive its `Release` in the kernel: read at shutdown, they add no
/// flow (its peers have their `close` records), and a read without an owner takes the socket's.
#[test]
fn peer_slots_of_released_sockets_are_ignored_and_read_peers_take_the_socket_owner() {
    use monitor_common::event::{FLAG_NO_OWNER, FLAG_SNAPSHOT};
    let mut t = tracker();
    let socket = unconnected_socket(7);
    let closed = peer_event(EventKind::PeerClosed, 1, [10, 0, 0, 9], 300);
    let mut out = feed(&mut t, &[(EventKind::Update, socket), closed, udp_release(7)]);
    assert_eq!(out.len(), 1, "{out:#?}");
    let (kind, mut late) = peer_event(EventKind::PeerUpdate, 1, [10, 0, 0, 9], 300);
    late.flags |= FLAG_SNAPSHOT;
    out = feed(&mut t, &[(kind, late)]);
    t.shutdown(5 * SEC, &mut out);
    assert!(out.is_empty(), "a released socket's slot counted again: {out:#?}");
    // An open socket's peer read without its owner.
    let socket = unconnected_socket(8);
    let (kind, mut read) = peer_event(EventKind::PeerUpdate, 1, [10, 0, 0, 9], 300);
    read.cookie = 8;
    read.flags = FLAG_SNAPSHOT | FLAG_NO_OWNER;
    read.owner = KOwner::default();
    feed(&mut t, &[(EventKind::Update, socket), (kind, read)]);
    t.shutdown(5 * SEC, &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!((out[0].owner.tgid, out[0].complete), (42, true), "{:#?}", out[0]);
}

/// A socket known only through a peer flow (no event of its own) is open: a second peer's slot
/// read at shutdown gets its record too.
#[test]
fn peer_slot_of_a_socket_known_by_its_peers_gets_a_record() {
    use monitor_common::event::FLAG_SNAPSHOT;
    let mut t = tracker();
    let reported = peer_event(EventKind::PeerUpdate, 1, [10, 0, 0, 9], 300);
    let (kind, mut unreported) = peer_event(EventKind::PeerUpdate, 2, [10, 0, 0, 8], 40);
    unreported.flags |= FLAG_SNAPSHOT;
    feed(&mut t, &[reported, (kind, unreported)]);
    let mut out = Vec::new();
    t.shutdown(5 * SEC, &mut out);
    let mut got: Vec<(String, u64)> =
        out.iter().map(|r| (r.remote.map(|a| a.ip().to_string()).unwrap_or_default(), r.payload.tx_bytes)).collect();
    got.sort();
    assert_eq!(got, [("10.0.0.8".into(), 40), ("10.0.0.9".into(), 300)], "{out:#?}");
}

/// A socket's snapshot (no owner, no remote address) only refreshes a flow already known.
#[test]
fn socket_snapshot_of_an_unknown_socket_is_ignored() {
    let mut t = tracker();
    let mut snap = ev(EventKind::Update, SEC, counters(10, 10, 5, 5));
    snap.flags = monitor_common::event::FLAG_SNAPSHOT;
    feed(&mut t, &[(EventKind::Update, snap)]);
    assert!(t.open_sockets(None).is_empty());
}

/// At shutdown a socket's own record has the counters the last snapshot read (complete), a
/// peer's has only what its last report carried when its slot was not read: it says it is
/// incomplete.
#[test]
fn peer_flows_open_at_shutdown_are_incomplete() {
    let mut t = tracker();
    let mut udp = ev(EventKind::Update, 2 * SEC, counters(128, 128, 100, 100));
    udp.cookie = 8;
    udp.tuple.protocol = IPPROTO_UDP;
    udp.flags = monitor_common::event::FLAG_CONNECTED;
    let (kind, peer) = peer_event(EventKind::PeerUpdate, 1, [10, 0, 0, 9], 300);
    feed(&mut t, &[(EventKind::Update, udp), (kind, peer)]);
    let mut out = Vec::new();
    t.shutdown(5 * SEC, &mut out);
    let complete: Vec<(u64, bool, bool)> =
        out.iter().map(|r| (r.cookie, r.direction == Direction::Unconnected, r.complete)).collect();
    assert_eq!(complete.len(), 2, "{out:#?}");
    assert!(complete.contains(&(8, false, true)), "{out:#?}");
    assert!(complete.contains(&(7, true, false)), "{out:#?}");
}

#[test]
fn open_sockets_lists_idle_sockets_with_owners_and_stale_shutdowns_are_incomplete() {
    let mut t = tracker();
    let est = ev(EventKind::Established, 2 * SEC, counters(10, 10, 5, 5));
    let mut other = ev(EventKind::Established, 6 * SEC, counters(10, 10, 5, 5));
    other.cookie = 8;
    other.owner = owner(43);
    feed(&mut t, &[(EventKind::Established, est), (EventKind::Established, other)]);
    let mut all = t.open_sockets(None);
    all.sort_by_key(|s| s.cookie);
    assert_eq!(
        all,
        [crate::probe::OpenSocket { cookie: 7, tgid: 42 }, crate::probe::OpenSocket { cookie: 8, tgid: 43 }]
    );
    // Idle since 5 s: only cookie 7 (last event at 2 s).
    assert_eq!(t.open_sockets(Some(5 * SEC)), [crate::probe::OpenSocket { cookie: 7, tgid: 42 }]);
    let mut out = Vec::new();
    t.shutdown_with_stale(9 * SEC, &std::collections::HashSet::from([8]), &mut out);
    out.sort_by_key(|r| r.cookie);
    assert_eq!(
        out.iter().map(|r| (r.cookie, r.event, r.complete)).collect::<Vec<_>>(),
        [(7, RecordKind::Shutdown, true), (8, RecordKind::Shutdown, false)]
    );
    assert_eq!(t.stats().incomplete_flows, 1, "an incomplete shutdown record counts");
}

/// An established connection with no byte known yet (idle since the handshake) whose counters
/// the shutdown could not read: its record says so, rather than the flow vanishing; one read
/// and still empty has nothing to say.
#[test]
fn an_unread_connection_without_bytes_still_ends_incomplete() {
    let mut t = tracker();
    let quiet = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    let mut read = quiet;
    read.cookie = 8;
    feed(&mut t, &[(EventKind::Established, quiet), (EventKind::Established, read)]);
    let mut out = Vec::new();
    t.shutdown_with_stale(9 * SEC, &std::collections::HashSet::from([7]), &mut out);
    assert_eq!(
        out.iter().map(|r| (r.cookie, r.event, r.complete)).collect::<Vec<_>>(),
        [(7, RecordKind::Shutdown, false)]
    );
    assert_eq!(out[0].payload, crate::tracker::record::Payload::default());
    assert_eq!((t.stats().incomplete_flows, t.stats().silent_sockets), (1, 0));
}

/// A snapshot of a socket no event announced (a connected UDP socket younger than an update
/// interval, found by descriptor at shutdown: `FLAG_UNANNOUNCED`, with owner and both addresses)
/// starts its flow, which ends with a `shutdown` record; a plain snapshot of an unknown socket
/// (counters only) does not.
#[test]
fn an_unannounced_socket_found_at_shutdown_gets_its_record() {
    use monitor_common::event::{FLAG_CONNECTED, FLAG_SNAPSHOT, FLAG_UNANNOUNCED};
    let mut t = tracker();
    let snapshot = |cookie, flags| {
        let mut e = ev(EventKind::Update, 4 * SEC, counters(34, 0, 6, 0));
        e.cookie = cookie;
        e.tuple.protocol = IPPROTO_UDP;
        e.flags = FLAG_SNAPSHOT | FLAG_CONNECTED | flags;
        e
    };
    let out = feed(&mut t, &[(EventKind::Update, snapshot(7, FLAG_UNANNOUNCED)), (EventKind::Update, snapshot(8, 0))]);
    assert!(out.is_empty(), "{out:#?}");
    let mut out = Vec::new();
    t.shutdown(5 * SEC, &mut out);
    assert_eq!(out.len(), 1, "only the unannounced socket: {out:#?}");
    let r = &out[0];
    assert_eq!(
        (r.cookie, r.event, r.protocol, r.direction),
        (7, RecordKind::Shutdown, crate::tracker::record::Protocol::Udp, Direction::Outbound)
    );
    assert_eq!((r.owner.tgid, r.payload.tx_bytes, r.remote.is_some()), (42, 6, true), "{r:#?}");
}
