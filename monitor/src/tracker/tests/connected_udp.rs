//! UDP sockets: connected flows, peer changes, and sockets counted per peer (their socket events
//! add nothing; peers are the flows).

use super::*;

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
    assert_eq!((r.protocol, r.direction), (crate::tracker::record::Protocol::Tcp, Direction::Outbound));
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
