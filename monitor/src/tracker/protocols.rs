//! Sockets other than TCP and UDP: ping sockets, raw IP sockets, SCTP and UDP-Lite.
//!
//! The kernel counts their traffic per peer (remote address from each packet's IP header, port
//! from the SCTP header, 0 otherwise), like unconnected UDP, so they arrive as peer flows. What
//! differs is kept here: the name of the protocol, ports that are not ports, and the payload
//! estimate of kernels without the payload tracepoints.

use std::net::SocketAddr;

use monitor_common::{
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_MPTCP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE,
    sock::ByteCounters,
};

use super::record::{Payload, Protocol};

/// The protocol of a socket of IP protocol `ip_protocol`; `raw` for a `SOCK_RAW` socket, which
/// is `raw` whatever its protocol (it writes its own TCP, UDP or SCTP header), except for ICMP:
/// a raw ICMP socket pings as a ping socket does.
pub(super) fn protocol_of(ip_protocol: u16, raw: bool) -> Protocol {
    match ip_protocol {
        IPPROTO_ICMP => Protocol::Icmp,
        IPPROTO_ICMPV6 => Protocol::Icmpv6,
        _ if raw => Protocol::Raw,
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        IPPROTO_SCTP => Protocol::Sctp,
        IPPROTO_UDPLITE => Protocol::UdpLite,
        IPPROTO_MPTCP => Protocol::Mptcp,
        _ => Protocol::Raw,
    }
}

/// The local endpoint as reported: protocols without ports show port 0 (the kernel's local
/// "port" of a ping socket is its echo identifier, of a raw socket its protocol number).
pub(super) fn local(protocol: Protocol, local: Option<SocketAddr>) -> Option<SocketAddr> {
    match protocol {
        Protocol::Icmp | Protocol::Icmpv6 | Protocol::Raw => local.map(|a| SocketAddr::new(a.ip(), 0)),
        Protocol::Tcp | Protocol::Udp | Protocol::Sctp | Protocol::UdpLite | Protocol::Mptcp => local,
    }
}

/// Payload of a socket flow of a protocol other than TCP and UDP on kernels without the payload
/// tracepoints: IP length less the IP header of each packet (IPv6 extension headers included).
/// Peer flows, the usual case, carry their payload from the IP layer instead.
pub(super) fn wire_minus_ip_header(v6: bool, t: &ByteCounters) -> Payload {
    let header: u64 = if v6 { 40 } else { 20 };
    Payload {
        tx_bytes: t.wire_tx_bytes.saturating_sub(t.wire_tx_packets * header),
        rx_bytes: t.wire_rx_bytes.saturating_sub(t.wire_rx_packets * header),
    }
}

#[cfg(test)]
mod tests {
    use monitor_common::{
        AF_INET,
        event::{Event, EventKind, Tuple},
    };

    use super::*;
    use crate::{
        clock::Clock,
        tracker::{
            Tracker,
            record::{Direction, PayloadSource, RecordKind},
        },
    };

    const SEC: u64 = 1_000_000_000;

    fn v4(a: [u8; 4]) -> [u32; 4] {
        [u32::from_ne_bytes(a), 0, 0, 0]
    }

    /// An event of ping socket 9 (local port 77 = its echo identifier).
    fn ping_event(kind: EventKind, remote: [u8; 4], generation: u64, bytes: ByteCounters) -> Event {
        let tuple = Tuple {
            local_addr: v4([10, 0, 0, 1]),
            remote_addr: v4(remote),
            local_port: 77,
            remote_port: 0,
            family: AF_INET,
            protocol: IPPROTO_ICMP,
        };
        Event {
            kind: kind as u32,
            ts_ns: 2 * SEC,
            cookie: 9,
            generation,
            first_ns: SEC,
            tuple,
            bytes,
            ..Event::default()
        }
    }

    fn tracker() -> Tracker {
        Tracker::new(crate::tracker::tests::config(), Clock::with_offset(0))
    }

    #[test]
    fn ping_socket_peers_close_with_the_socket_one_record_per_host() {
        let mut t = tracker();
        let bytes = |n: u64| ByteCounters {
            wire_tx_bytes: n + 20,
            wire_tx_packets: 1,
            wire_rx_bytes: n + 20,
            wire_rx_packets: 1,
            app_tx_bytes: n,
            app_rx_bytes: n,
        };
        let mut out = Vec::new();
        for (kind, host, generation, n) in [
            (EventKind::PeerUpdate, [10, 0, 0, 2], 1, 64),
            (EventKind::PeerClosed, [10, 0, 0, 2], 1, 128),
            (EventKind::PeerClosed, [10, 0, 0, 3], 2, 64),
        ] {
            t.handle(kind, &ping_event(kind, host, generation, bytes(n)), &mut out);
        }
        assert!(out.is_empty(), "peers stay open until the socket is released: {out:#?}");
        t.handle(EventKind::Release, &ping_event(EventKind::Release, [0; 4], 0, bytes(999)), &mut out);
        assert_eq!(out.len(), 2, "one record per host, none for the socket: {out:#?}");
        for (host, n) in [("10.0.0.2:0", 128), ("10.0.0.3:0", 64)] {
            let r = out.iter().find(|r| r.remote == Some(host.parse().unwrap())).unwrap();
            assert_eq!((r.protocol, r.ip_protocol, r.direction), (Protocol::Icmp, 1, Direction::Unconnected));
            assert_eq!((r.payload.tx_bytes, r.payload_source), (n, PayloadSource::IpLayer));
            assert_eq!(r.local, Some("10.0.0.1:0".parse().unwrap()), "the echo identifier is no port");
        }
        assert_eq!(t.stats().open_flows, 0);
    }

    #[test]
    fn raw_socket_without_peers_closes_at_release() {
        let mut t = tracker();
        let mut ev = ping_event(
            EventKind::Release,
            [0; 4],
            0,
            ByteCounters { app_tx_bytes: 5, wire_tx_bytes: 25, wire_tx_packets: 1, ..ByteCounters::default() },
        );
        ev.tuple.protocol = 253;
        let mut out = Vec::new();
        t.handle(EventKind::Release, &ev, &mut out);
        assert_eq!(out.len(), 1, "no TCP close to wait for");
        assert_eq!((out[0].protocol, out[0].ip_protocol, out[0].remote), (Protocol::Raw, 253, None));
    }

    /// The kernel's counters of a raw socket mark its events `FLAG_RAW`, with its other flags.
    #[test]
    fn raw_sockets_counters_give_their_events_the_raw_flag() {
        use monitor_common::{
            event::{FLAG_CONNECTED, FLAG_RAW},
            sock::{COUNTER_CONNECTED, COUNTER_RAW, Counters},
        };
        let mut c = Counters::default();
        assert_eq!((c.raw_flag(), c.event_flags()), (0, 0));
        c.flags = COUNTER_RAW | COUNTER_CONNECTED;
        assert_eq!((c.raw_flag(), c.event_flags()), (FLAG_RAW, FLAG_RAW | FLAG_CONNECTED));
    }

    /// A raw socket of protocol 6 (a SYN scanner's): its peers are hosts, its flows `raw` with
    /// `ip_protocol` 6, never TCP flows waiting for a TCP close.
    #[test]
    fn a_raw_tcp_socket_is_raw_per_host() {
        let mut t = tracker();
        let bytes = ByteCounters { app_tx_bytes: 40, wire_tx_bytes: 60, wire_tx_packets: 1, ..ByteCounters::default() };
        let mut out = Vec::new();
        for (kind, host, generation) in [
            (EventKind::PeerUpdate, [10, 0, 0, 2], 1),
            (EventKind::PeerClosed, [10, 0, 0, 2], 1),
            (EventKind::Release, [0; 4], 0),
        ] {
            let mut ev = ping_event(kind, host, generation, bytes);
            ev.tuple.protocol = monitor_common::IPPROTO_TCP;
            ev.flags |= monitor_common::event::FLAG_RAW;
            t.handle(kind, &ev, &mut out);
        }
        assert_eq!(out.len(), 1, "{out:#?}");
        let r = &out[0];
        assert_eq!((r.protocol, r.ip_protocol, r.direction), (Protocol::Raw, 6, Direction::Unconnected), "{r:#?}");
        assert_eq!((r.remote, r.local), (Some("10.0.0.2:0".parse().unwrap()), Some("10.0.0.1:0".parse().unwrap())));
        assert_eq!((r.event, r.payload.tx_bytes), (RecordKind::Close, 40));
        assert_eq!(t.stats().open_flows, 0);
    }

    /// An MPTCP connection: announced at its first read or write (`Established`, passive when
    /// accepted), reported while open (update records, like a TCP flow, not silenced like a
    /// per-peer socket), ended by the `Release` its last subflow's close sends, which carries no
    /// addresses (the announced ones stay); at shutdown an open one has its `shutdown` record.
    #[test]
    fn an_mptcp_connection_is_one_flow_reported_while_open_and_ended_by_its_release() {
        let counters = |n: u64| ByteCounters {
            app_tx_bytes: n,
            app_rx_bytes: n / 2,
            wire_tx_bytes: n + 100,
            wire_tx_packets: 4,
            wire_rx_bytes: n / 2 + 100,
            wire_rx_packets: 4,
        };
        for passive in [false, true] {
            let mut t = tracker();
            let mut ev = ping_event(EventKind::Established, [10, 0, 0, 2], 0, counters(1000));
            ev.tuple.protocol = monitor_common::IPPROTO_MPTCP;
            ev.tuple.remote_port = 443;
            ev.flags = if passive { monitor_common::event::FLAG_PASSIVE } else { 0 };
            let mut out = Vec::new();
            t.handle(EventKind::Established, &ev, &mut out);
            t.tick(20 * SEC, &mut out);
            assert_eq!(out.len(), 1, "an update while open: {out:#?}");
            assert_eq!((out[0].event, out[0].payload.tx_bytes), (RecordKind::Update, 1000));
            let mut release = ev;
            release.kind = EventKind::Release as u32;
            release.flags = 0;
            release.bytes = counters(3000);
            release.tuple = Tuple { protocol: monitor_common::IPPROTO_MPTCP, ..Tuple::default() };
            t.handle(EventKind::Release, &release, &mut out);
            assert_eq!(out.len(), 2, "{out:#?}");
            let r = &out[1];
            let direction = if passive { Direction::Inbound } else { Direction::Outbound };
            assert_eq!(
                (r.event, r.protocol, r.ip_protocol, r.direction),
                (RecordKind::Close, Protocol::Mptcp, 6, direction)
            );
            assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes, r.wire.tx_bytes), (3000, 1500, 3100));
            assert_eq!(r.delta_payload.tx_bytes, 2000);
            assert_eq!(r.remote, Some("10.0.0.2:443".parse().unwrap()), "the announced address stays");
            assert!(r.complete);
        }
        let mut t = tracker();
        let mut ev = ping_event(EventKind::Established, [10, 0, 0, 2], 0, counters(1000));
        ev.tuple.protocol = monitor_common::IPPROTO_MPTCP;
        let mut out = Vec::new();
        t.handle(EventKind::Established, &ev, &mut out);
        t.shutdown(5 * SEC, &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!((out[0].event, out[0].payload.tx_bytes), (RecordKind::Shutdown, 1000));
    }

    #[test]
    fn protocol_numbers_map_to_names() {
        let numbers = [6, 17, 1, 58, 132, 136, 262, 253, 255, 0];
        let names: Vec<Protocol> = numbers.into_iter().map(|n| protocol_of(n, false)).collect();
        use Protocol::{Icmp, Icmpv6, Mptcp, Raw, Sctp, Tcp, Udp, UdpLite};
        assert_eq!(names, [Tcp, Udp, Icmp, Icmpv6, Sctp, UdpLite, Mptcp, Raw, Raw, Raw]);
        // Raw sockets: `raw` whatever the protocol, but raw ICMP sockets ping.
        let raw: Vec<Protocol> = numbers.into_iter().map(|n| protocol_of(n, true)).collect();
        assert_eq!(raw, [Raw, Raw, Icmp, Icmpv6, Raw, Raw, Raw, Raw, Raw, Raw]);
    }

    #[test]
    fn portless_protocols_report_local_port_zero() {
        let a: SocketAddr = "10.0.0.1:253".parse().unwrap();
        assert_eq!(local(Protocol::Raw, Some(a)), Some("10.0.0.1:0".parse().unwrap()));
        assert_eq!(local(Protocol::Icmp, Some(a)), Some("10.0.0.1:0".parse().unwrap()));
        assert_eq!(local(Protocol::Sctp, Some(a)), Some(a));
        assert_eq!(local(Protocol::UdpLite, Some(a)), Some(a), "UDP-Lite has ports");
        assert_eq!(local(Protocol::Raw, None), None);
    }

    #[test]
    fn fallback_payload_removes_one_ip_header_per_packet() {
        let t = ByteCounters {
            wire_tx_bytes: 3 * 84,
            wire_tx_packets: 3,
            wire_rx_bytes: 2 * 104,
            wire_rx_packets: 2,
            ..ByteCounters::default()
        };
        assert_eq!(wire_minus_ip_header(false, &t), Payload { tx_bytes: 3 * 64, rx_bytes: 2 * 84 });
        assert_eq!(wire_minus_ip_header(true, &t), Payload { tx_bytes: 3 * 44, rx_bytes: 2 * 64 });
    }
}
