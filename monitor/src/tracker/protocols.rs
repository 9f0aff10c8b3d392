//! Sockets other than TCP and UDP: ping sockets, raw IP sockets and SCTP.
//!
//! The kernel counts their traffic per peer (remote address from each packet's IP header, port
//! from the SCTP header, 0 otherwise), like unconnected UDP, so they arrive as peer flows. What
//! differs is kept here: the name of the protocol, ports that are not ports, and the payload
//! estimate of kernels without the payload tracepoints.

use std::net::SocketAddr;

use monitor_common::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, sock::ByteCounters};

use super::record::{Payload, Protocol};

/// The protocol of a socket of IP protocol `ip_protocol`.
pub(super) fn protocol_of(ip_protocol: u16) -> Protocol {
    match ip_protocol {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        IPPROTO_ICMP => Protocol::Icmp,
        IPPROTO_ICMPV6 => Protocol::Icmpv6,
        IPPROTO_SCTP => Protocol::Sctp,
        _ => Protocol::Raw,
    }
}

/// The local endpoint as reported: protocols without ports show port 0 (the kernel's local
/// "port" of a ping socket is its echo identifier, of a raw socket its protocol number).
pub(super) fn local(protocol: Protocol, local: Option<SocketAddr>) -> Option<SocketAddr> {
    match protocol {
        Protocol::Icmp | Protocol::Icmpv6 | Protocol::Raw => local.map(|a| SocketAddr::new(a.ip(), 0)),
        Protocol::Tcp | Protocol::Udp | Protocol::Sctp => local,
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
    use super::*;

    #[test]
    fn protocol_numbers_map_to_names() {
        let names: Vec<Protocol> = [6, 17, 1, 58, 132, 253, 255, 0].into_iter().map(protocol_of).collect();
        use Protocol::{Icmp, Icmpv6, Raw, Sctp, Tcp, Udp};
        assert_eq!(names, [Tcp, Udp, Icmp, Icmpv6, Sctp, Raw, Raw, Raw]);
    }

    #[test]
    fn portless_protocols_report_local_port_zero() {
        let a: SocketAddr = "10.0.0.1:253".parse().unwrap();
        assert_eq!(local(Protocol::Raw, Some(a)), Some("10.0.0.1:0".parse().unwrap()));
        assert_eq!(local(Protocol::Icmp, Some(a)), Some("10.0.0.1:0".parse().unwrap()));
        assert_eq!(local(Protocol::Sctp, Some(a)), Some(a));
        assert_eq!(local(Protocol::Raw, None), None);
    }

    #[test]
    fn fallback_payload_removes_one_ip_header_per_packet() {
        let t = ByteCounters { wire_tx_bytes: 3 * 84, wire_tx_packets: 3, wire_rx_bytes: 2 * 104, wire_rx_packets: 2, ..ByteCounters::default() };
        assert_eq!(wire_minus_ip_header(false, &t), Payload { tx_bytes: 3 * 64, rx_bytes: 2 * 84 });
        assert_eq!(wire_minus_ip_header(true, &t), Payload { tx_bytes: 3 * 44, rx_bytes: 2 * 64 });
    }
}
