//! Flows whose sockets are gone without their end reaching the tracker (`vanish`).

use super::*;
use crate::probe::OpenSocket;

fn sockets(list: &[u64]) -> Vec<OpenSocket> {
    list.iter().map(|&cookie| OpenSocket { cookie, tgid: 42 }).collect()
}

/// A TCP connection closed without its release, and, once the kernel lost events, any flow open
/// then: candidates once idle. Ended, each has an incomplete `close` with its last counters,
/// once; a TCP connection that shows up again continues from that record's totals.
#[test]
fn a_flow_whose_end_never_came_ends_incomplete_and_once() {
    let mut t = tracker();
    let est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    let closed = ev(EventKind::TcpClose, 3 * SEC, counters(1500, 900, 1000, 600));
    let mut other = ev(EventKind::Established, 2 * SEC, counters(0, 0, 50, 0));
    other.cookie = 9;
    other.tuple.local_port = 40001;
    feed(&mut t, &[(EventKind::Established, est), (EventKind::TcpClose, closed), (EventKind::Established, other)]);
    assert_eq!(t.vanish_candidates(3 * SEC), sockets(&[]), "not idle since 3 s");
    assert_eq!(t.vanish_candidates(20 * SEC), sockets(&[7]), "closed, never released; 9 is open and nothing lost");
    t.events_lost(5 * SEC);
    assert_eq!(t.vanish_candidates(20 * SEC), sockets(&[7, 9]), "9 was open when events were lost");

    let mut out = Vec::new();
    assert_eq!(t.vanished(&[7], &mut out), 1);
    let r = &out[0];
    assert_eq!((r.event, r.complete, r.cookie), (RecordKind::Close, false, 7));
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (1000, 600));
    let stats = t.stats();
    assert_eq!((stats.vanished_flows, stats.incomplete_flows, stats.open_flows), (1, 1, 1));
    assert_eq!(t.vanished(&[7], &mut out), 0, "ended already");
    assert_eq!(t.vanish_candidates(20 * SEC), sockets(&[9]));
    // In a message in flight after all, released later: no byte counted twice (an adversarial
    // pass: the release started a second flow with all of them).
    let release = ev(EventKind::Release, 40 * SEC, counters(1500, 900, 1000, 600));
    let again = feed(&mut t, &[(EventKind::Release, release)]);
    let deltas: Vec<_> =
        again.iter().map(|r| (r.delta_payload.tx_bytes, r.delta_payload.rx_bytes, r.resumed)).collect();
    assert_eq!(deltas, [(0, 0, true)], "{again:#?}");

    // Open at the loss and found nowhere, but held by an io_uring after all: its next counters
    // continue the flow, not count it twice.
    let mut out = Vec::new();
    assert_eq!(t.vanished(&[9], &mut out), 1);
    assert_eq!((out[0].payload.tx_bytes, out[0].complete), (50, false));
    let mut late = ev(EventKind::Update, 30 * SEC, counters(0, 0, 80, 10));
    late.cookie = 9;
    let mut out = feed(&mut t, &[(EventKind::Update, late)]);
    t.shutdown(31 * SEC, &mut out);
    let r = out.iter().find(|r| r.cookie == 9).expect("the continued flow's record");
    assert_eq!((r.delta_payload.tx_bytes, r.delta_payload.rx_bytes), (30, 10), "{r:#?}");
    assert!(r.resumed, "{r:#?}");
}

/// Without release events (degradation `no_release_hook`) every idle socket is a candidate: an
/// unconnected UDP socket found nowhere ends its peers' flows and writes no record of its own
/// (its counters hold its peers' bytes). With nothing lost, their records are complete (there
/// every read and write is an event). A released TCP flow is no candidate.
#[test]
fn without_release_events_a_gone_socket_ends_its_peers() {
    let mut t = tracker();
    t.config.release_events = false;
    let socket = shutdown::unconnected_socket(7);
    let a = peer_event(EventKind::PeerUpdate, 1, [10, 0, 0, 9], 300);
    let b = peer_event(EventKind::PeerUpdate, 2, [10, 0, 0, 8], 50);
    let mut tcp = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    tcp.cookie = 11;
    let mut tcp_close = ev(EventKind::TcpClose, 3 * SEC, counters(10, 10, 5, 5));
    tcp_close.cookie = 11;
    feed(&mut t, &[(EventKind::Update, socket), a, b, (EventKind::Established, tcp), (EventKind::TcpClose, tcp_close)]);
    assert_eq!(t.vanish_candidates(20 * SEC), sockets(&[7]), "the TCP flow waits for its grace");
    let mut out = Vec::new();
    assert_eq!(t.vanished(&[7, 11], &mut out), 2, "{out:#?}");
    let mut got: Vec<(String, u64, bool, bool)> = out
        .iter()
        .map(|r| {
            let remote = r.remote.map(|a| a.ip().to_string()).unwrap_or_default();
            (remote, r.payload.tx_bytes, r.complete, r.event == RecordKind::Close)
        })
        .collect();
    got.sort();
    assert_eq!(got, [("10.0.0.8".to_owned(), 50, true, true), ("10.0.0.9".to_owned(), 300, true, true)]);
    assert_eq!(t.stats().open_flows, 1, "only the released TCP flow is left");
    assert_eq!((t.stats().vanished_flows, t.stats().incomplete_flows), (2, 0));
    assert!(t.vanish_candidates(u64::MAX).is_empty());

    // A socket open when the kernel lost events: its records are incomplete.
    let mut t = tracker();
    t.config.release_events = false;
    let socket = shutdown::unconnected_socket(7);
    feed(&mut t, &[(EventKind::Update, socket), peer_event(EventKind::PeerUpdate, 1, [10, 0, 0, 9], 300)]);
    t.events_lost(3 * SEC);
    let mut out = Vec::new();
    assert_eq!(t.vanished(&[7], &mut out), 1);
    assert!(!out[0].complete, "{out:#?}");
    assert_eq!(t.stats().incomplete_flows, 1);
}

/// Flows that ended early are remembered up to a bound, the least recently ended going first.
#[test]
fn flows_ended_early_are_remembered_up_to_a_bound() {
    use super::super::ENDED_EARLY;
    let mut t = tracker();
    let none = (super::super::record::Payload::default(), super::super::record::Wire::default());
    for cookie in 0..=ENDED_EARLY as u64 {
        t.remember_ended_early(cookie, none, Direction::Outbound);
    }
    assert_eq!(t.ended_early.len(), ENDED_EARLY);
    assert!(!t.ended_early.contains(&0), "the first one went");
    assert!(t.ended_early.contains(&(ENDED_EARLY as u64)));
}
