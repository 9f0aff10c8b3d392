//! Unconnected UDP peers: one flow per (socket, peer) across slot flushes, and the caps.

use super::*;

/// The case: one socket, 9 destinations round robin through 8 slots, 20 datagrams of
/// 1,200 bytes each; every datagram flushes a slot. One record per peer, exact totals.
#[test]
fn round_robin_over_more_peers_than_slots_gives_one_record_per_peer() {
    const SLOTS: usize = monitor_common::sock::PEER_SLOTS;
    let mut t = tracker();
    let peers = 9usize;
    let mut out = Vec::new();
    // Simulate the kernel's slot table: round-robin victim, one generation per claim.
    let mut slots: Vec<Option<(usize, u64, u64)>> = vec![None; SLOTS]; // (peer, generation, bytes)
    let (mut victim, mut generation) = (0usize, 0u64);
    let addr = |p: usize| [10, 0, 1, u8::try_from(p).unwrap()];
    for _round in 0..20 {
        for p in 0..peers {
            let index = match slots.iter().position(|s| s.is_some_and(|(q, _, _)| q == p)) {
                Some(i) => i,
                None => {
                    let i = slots.iter().position(Option::is_none).unwrap_or_else(|| {
                        let i = victim % SLOTS;
                        victim += 1;
                        i
                    });
                    if let Some((q, g, bytes)) = slots[i] {
                        let (k, e) = peer_event(EventKind::PeerEvicted, g, addr(q), bytes);
                        t.handle(k, &e, &mut out);
                    }
                    generation += 1;
                    slots[i] = Some((p, generation, 0));
                    i
                }
            };
            let slot = slots[index].as_mut().unwrap();
            slot.2 += 1200;
            let (k, e) = peer_event(EventKind::PeerUpdate, slot.1, addr(p), slot.2);
            t.handle(k, &e, &mut out);
        }
    }
    assert!(out.is_empty(), "nothing closes before the socket: {out:#?}");
    for (q, g, bytes) in slots.iter().flatten() {
        let (k, e) = peer_event(EventKind::PeerClosed, *g, addr(*q), *bytes);
        t.handle(k, &e, &mut out);
    }
    let (k, e) = udp_release(7);
    t.handle(k, &e, &mut out);
    assert_eq!(out.len(), peers, "{out:#?}");
    for r in &out {
        assert_eq!((r.event, r.payload.tx_bytes, r.wire.tx_packets), (RecordKind::Close, 24_000, 40), "{r:#?}");
        assert!(!r.final_of_socket, "one peer's record: the socket's other peers share its cookie");
    }
    assert!(generation > 150, "the simulation must flush slots ({generation} claims)");
    assert_eq!((t.stats().open_flows, t.stats().closed_flows, t.stats().split_peer_flows), (0, 9, 0));
}

/// A peer whose slot was flushed (evicted at 2 s), parked until its socket's release (3 s): its
/// `close` record says it ended with the socket, while `last_seen` stays its last datagram (an
/// adversarial pass: `closed` read the flush time, seconds before the socket closed). A peer
/// still in its slot at the release ends then too.
#[test]
fn a_flushed_peer_closes_with_its_socket() {
    let mut t = tracker();
    let mut out = Vec::new();
    let (k, e) = peer_event(EventKind::PeerEvicted, 1, [10, 0, 1, 1], 700);
    t.handle(k, &e, &mut out);
    let (k, mut e) = peer_event(EventKind::PeerClosed, 2, [10, 0, 1, 2], 300);
    e.ts_ns = 3 * SEC;
    t.handle(k, &e, &mut out);
    assert!(out.is_empty(), "{out:#?}");
    let (k, e) = udp_release(7);
    t.handle(k, &e, &mut out);
    assert_eq!(out.len(), 2, "{out:#?}");
    let release = out[1].closed.expect("closed");
    for r in &out {
        assert_eq!(r.closed, Some(release), "{r:#?}");
    }
    // Closes at the release, the last marked: the sink then knows every peer this run closed.
    let marks: Vec<_> = out.iter().map(|r| r.release).collect();
    assert_eq!(marks, [crate::tracker::record::Release::Peer, crate::tracker::record::Release::LastPeer]);
    let flushed = out.iter().find(|r| r.payload.tx_bytes == 700).expect("the flushed peer");
    assert_eq!(
        release.duration_since(flushed.last_seen).as_secs(),
        1,
        "last_seen stays its last datagram: {flushed:#?}"
    );
}

#[test]
fn peer_flows_over_the_per_socket_cap_close_at_eviction_and_are_counted() {
    let mut t = tracker();
    let cap = crate::tracker::MAX_PEER_FLOWS_PER_SOCKET;
    let mut out = Vec::new();
    let addr = |i: usize| [10, 1 + u8::try_from(i >> 16).unwrap(), (i >> 8) as u8, i as u8];
    // cap + 10 peers, each claimed and flushed once (generation = index + 1).
    for i in 0..cap + 10 {
        let g = u64::try_from(i).unwrap() + 1;
        let (k, e) = peer_event(EventKind::PeerUpdate, g, addr(i), 100);
        t.handle(k, &e, &mut out);
        let (k, e) = peer_event(EventKind::PeerEvicted, g, addr(i), 100);
        t.handle(k, &e, &mut out);
    }
    assert_eq!(out.len(), 10, "peers past the cap are closed at their flush");
    assert!(out.iter().all(|r| r.release == crate::tracker::record::Release::Split), "not at a release");
    assert_eq!(t.stats().split_peer_flows, 10);
    assert_eq!(t.stats().open_flows, u64::try_from(cap).unwrap());
    let (k, e) = udp_release(7);
    t.handle(k, &e, &mut out);
    assert_eq!(out.len(), cap + 10);
    assert!(out.iter().all(|r| r.payload.tx_bytes == 100 && r.event == RecordKind::Close));
    assert_eq!(t.stats().open_flows, 0);
}

#[test]
fn peer_flows_over_the_total_cap_close_at_eviction_and_are_counted() {
    let mut t = tracker();
    let mut out = Vec::new();
    let (sockets, per_socket) = (5u64, 4000usize);
    for cookie in 1..=sockets {
        for i in 0..per_socket {
            let g = u64::try_from(i).unwrap() + 1;
            for kind in [EventKind::PeerUpdate, EventKind::PeerEvicted] {
                let (k, mut e) = peer_event(kind, g, [10, 2, (i >> 8) as u8, i as u8], 100);
                e.cookie = cookie;
                t.handle(k, &e, &mut out);
            }
        }
    }
    let total = usize::try_from(sockets).unwrap() * per_socket;
    assert_eq!(
        t.stats().open_flows,
        u64::try_from(crate::tracker::MAX_PEER_FLOWS).unwrap(),
        "the table stops at the cap"
    );
    assert_eq!(out.len(), total - crate::tracker::MAX_PEER_FLOWS);
    assert_eq!(t.stats().split_peer_flows, u64::try_from(out.len()).unwrap());
    for cookie in 1..=sockets {
        let (k, e) = udp_release(cookie);
        t.handle(k, &e, &mut out);
    }
    assert_eq!(out.len(), total, "every peer's bytes reported once");
    assert!(out.iter().all(|r| r.payload.tx_bytes == 100));
    assert_eq!(t.stats().open_flows, 0);
}

/// A socket bound to the wildcard address talks to a peer unconnected, then connects to
/// another: the first peer's slot is still open at the release, whose event carries the address
/// `connect()` gave the socket. The peer flow keeps the local address it was seen with.
#[test]
fn a_peer_flow_keeps_the_local_address_it_was_first_seen_with() {
    let mut t = tracker();
    let mut out = Vec::new();
    let (k, mut e) = peer_event(EventKind::PeerUpdate, 1, [10, 0, 1, 1], 700);
    e.tuple.local_addr = [0; 4];
    e.tuple.local_port = 5000;
    t.handle(k, &e, &mut out);
    let (k, mut e) = peer_event(EventKind::PeerClosed, 1, [10, 0, 1, 1], 1400);
    e.tuple.local_addr = ip([10, 0, 0, 9]);
    e.tuple.local_port = 5000;
    t.handle(k, &e, &mut out);
    let (k, e) = udp_release(7);
    t.handle(k, &e, &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].local, Some("0.0.0.0:5000".parse().expect("address")), "{:#?}", out[0]);
    assert_eq!(out[0].payload.tx_bytes, 1400);
}

/// An IPv6 socket that reaches an IPv4 peer at its IPv4-mapped address: the kernel gives the
/// peer flow the peer's family and the socket's own (IPv6) local words. The record's local side
/// is the mapped IPv4 address (it read `0.0.0.0`: only word 0 was taken), and the remote side
/// stays the peer's.
#[test]
fn an_ipv6_socket_s_ipv4_peer_flow_keeps_its_mapped_local_address() {
    let mut t = tracker();
    let mut out = Vec::new();
    let mapped = std::net::Ipv4Addr::new(10, 0, 0, 9).to_ipv6_mapped().octets();
    let (k, mut e) = peer_event(EventKind::PeerClosed, 1, [10, 0, 1, 1], 700);
    e.tuple.local_addr = words(mapped);
    e.tuple.local_port = 5000;
    t.handle(k, &e, &mut out);
    let (k, e) = udp_release(7);
    t.handle(k, &e, &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].local, Some("10.0.0.9:5000".parse().expect("address")), "{:#?}", out[0]);
    assert_eq!(out[0].remote, Some("10.0.1.1:53".parse().expect("address")), "{:#?}", out[0]);
    // A wildcard-bound IPv6 socket's words are all zero: the unspecified IPv4 address.
    assert_eq!(crate::tracker::ip_of(libc_af_inet(), [0; 4]), std::net::IpAddr::from([0, 0, 0, 0]));
}

/// An IPv6 socket sent to a native IPv6 peer, then connected to an IPv4-mapped address
/// and disconnected. The peer's slot events carry the socket's local words of their moment, the
/// mapped IPv4 address, which never carried this peer's datagrams: the record shows `[::]:P`
/// (address unknown, port kept), not `10.0.0.9:P` (an IPv4 local beside an IPv6 remote).
#[test]
fn a_native_ipv6_peer_never_shows_an_ipv4_local_side() {
    let mut t = tracker();
    let mut out = Vec::new();
    let (k, mut e) = peer_event(EventKind::PeerClosed, 1, [10, 0, 1, 1], 700);
    e.tuple.family = u16::try_from(nix::libc::AF_INET6).expect("small");
    e.tuple.remote_addr = words("2001:db8::1".parse::<std::net::Ipv6Addr>().expect("address").octets());
    e.tuple.local_addr = words(std::net::Ipv4Addr::new(10, 0, 0, 9).to_ipv6_mapped().octets());
    e.tuple.local_port = 5000;
    t.handle(k, &e, &mut out);
    let (k, e) = udp_release(7);
    t.handle(k, &e, &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].local, Some("[::]:5000".parse().expect("address")), "{:#?}", out[0]);
    assert_eq!(out[0].remote, Some("[2001:db8::1]:53".parse().expect("address")), "{:#?}", out[0]);
    assert_eq!(out[0].payload.tx_bytes, 700);
}

/// An IPv6 address as the kernel's four address words.
fn words(octets: [u8; 16]) -> [u32; 4] {
    let mut words = [0u32; 4];
    for (w, c) in words.iter_mut().zip(octets.chunks_exact(4)) {
        *w = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
    }
    words
}

fn libc_af_inet() -> u16 {
    u16::try_from(nix::libc::AF_INET).expect("small")
}

/// Events lost while a socket counted per peer is open: a slot's end (eviction, flush) carries
/// bytes that no later event repeats, so every record of that socket's peers says it is
/// incomplete (an adversarial pass: 20 peers with 19–52 % of their bytes missing, all marked
/// complete). The peers of a socket opened after the loss are not touched.
#[test]
fn peers_of_a_socket_open_at_a_loss_are_incomplete() {
    let mut t = tracker();
    let mut out = Vec::new();
    let (k, e) = peer_event(EventKind::PeerUpdate, 1, [10, 0, 1, 1], 100);
    t.handle(k, &e, &mut out);
    t.events_lost(2 * SEC + 1);
    // A peer first seen after the loss: its earlier generations may be what was lost.
    let (k, e) = peer_event(EventKind::PeerUpdate, 2, [10, 0, 1, 2], 200);
    t.handle(k, &e, &mut out);
    let (k, e) = udp_release(7);
    t.handle(k, &e, &mut out);
    assert_eq!(out.len(), 2, "{out:#?}");
    assert!(out.iter().all(|r| !r.complete), "{out:#?}");
    assert_eq!(t.stats().incomplete_flows, 2);
    // Another socket, opened after the loss.
    out.clear();
    let (k, mut e) = peer_event(EventKind::PeerUpdate, 1, [10, 0, 1, 3], 300);
    (e.cookie, e.ts_ns, e.first_ns) = (8, 5 * SEC, 5 * SEC);
    t.handle(k, &e, &mut out);
    let (k, mut e) = udp_release(8);
    (e.ts_ns, e.first_ns) = (6 * SEC, 5 * SEC);
    t.handle(k, &e, &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert!(out[0].complete && out[0].payload.tx_bytes == 300, "{out:#?}");
    assert_eq!(t.stats().incomplete_flows, 2);
}
