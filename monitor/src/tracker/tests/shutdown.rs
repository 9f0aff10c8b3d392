//! The end of a run: flows without release events, peer slots and sockets read at shutdown,
//! and what ends incomplete.

use super::*;

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
pub(super) fn unconnected_socket(cookie: u64) -> Event {
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

/// A socket counted per peer is listed for a periodic read of its slots an update interval after
/// its own last event (its peers' events do not count: a peer claimed and never reported is
/// unknown here); the bytes the read finds leave in the next due `update` (they waited in the
/// kernel's slot, and a killed daemon lost them). A connected socket is never listed.
#[test]
fn idle_peers_are_listed_for_a_periodic_read_and_its_bytes_reported() {
    use monitor_common::event::FLAG_SNAPSHOT;
    let mut t = tracker();
    // Announced at 1 s; its peer reported at 2 s with 300 bytes, its slot counts on to 500.
    let (kind, reported) = peer_event(EventKind::PeerUpdate, 1, [10, 0, 0, 9], 300);
    feed(&mut t, &[(EventKind::Update, unconnected_socket(7)), (kind, reported)]);
    let mut connected = ev(EventKind::Connect, SEC, counters(0, 0, 100, 100));
    connected.cookie = 8;
    connected.tuple.protocol = IPPROTO_UDP;
    feed(&mut t, &[(EventKind::Connect, connected)]);
    let mut out = Vec::new();
    t.tick(2 * SEC, &mut out);
    assert!(t.idle_peer_sockets(SEC).is_empty(), "not idle yet");
    assert_eq!(t.idle_peer_sockets(3 * SEC), [crate::probe::OpenSocket { cookie: 7, tgid: 42 }]);
    let (kind, mut read) = peer_event(EventKind::PeerUpdate, 1, [10, 0, 0, 9], 500);
    read.flags |= FLAG_SNAPSHOT;
    read.ts_ns = 13 * SEC;
    feed(&mut t, &[(kind, read)]);
    let mut out = Vec::new();
    t.tick(13 * SEC, &mut out);
    let updates: Vec<(RecordKind, u64)> = out.iter().map(|r| (r.event, r.payload.tx_bytes)).collect();
    assert!(updates.contains(&(RecordKind::Update, 500)), "the slot's last bytes are reported: {out:#?}");
}
