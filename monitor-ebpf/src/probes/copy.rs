//! Payload copies for the names stage, from `cgroup_skb` (see `monitor_common::copy`).
//!
//! Called by [`super::skb`] for sockets whose `copy_state` is not yet `COPY_STATE_DONE`: ordinary
//! packets of a socket past its first few pay one load and one branch, nothing here. A copy is
//! reserved in `EVENTS` at its full size and filled with `bpf_skb_load_bytes`; one that does not
//! fit is counted in `STAT_COPIES_LOST`.
//!
//! TCP gate (other than port 53): before anything is reserved, the first payload-bearing egress
//! segment of a flow is looked at through one 9-byte load ([`tls_start`]). Only a TLS handshake
//! record that starts a ClientHello is copied; anything else ends the flow's copying at once, so
//! a plain TCP flow costs one header parse in place (direct packet access, no helper call) and
//! that load, never a copy. The next segment is copied without a look (it continues the
//! ClientHello) unless the first copy held all of it. A listener stops being looked at at its
//! first packet (it sees every client's SYN and handshake ACK, and never copies).

use aya_ebpf::{
    bindings::bpf_sock,
    helpers::generated::{bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_skb_load_bytes},
    programs::SkBuffContext,
};
use monitor_common::{
    IPPROTO_TCP, IPPROTO_UDP,
    copy::{
        COPY_DNS, COPY_EGRESS, COPY_KIND, COPY_MAX, COPY_NO_OWNER, COPY_PACKETS, COPY_QUIC_EGRESS, COPY_TCP,
        COPY_TCP_EGRESS, COPY_TRUNCATED, PayloadCopy,
    },
    event::Tuple,
    maps::{STAT_COPIES, STAT_COPIES_LOST},
    sock::{COPY_STATE_DONE, COPY_STATE_EGRESS, COPY_STATE_INGRESS, COPY_STATE_PACKETS, Counters, Owner},
};

use crate::maps::{EVENTS, copy_payloads, owner_of, stat};

/// DNS port.
const DNS: u16 = 53;
/// HTTPS / QUIC port.
const HTTPS: u16 = 443;
/// `TCP_ESTABLISHED` (`bpf_sock::state` uses the kernel's TCP state numbers).
const TCP_ESTABLISHED: u32 = 1;
/// `TCP_LISTEN`: a listening socket carries no payload, and it sees every SYN and handshake ACK.
const TCP_LISTEN: u32 = 10;
/// IP length up to which a TCP segment is not looked at: an IPv6 ACK with timestamps is 72 bytes.
const TCP_SMALL: u32 = 72;
/// TLS record type of a handshake (`ContentType::handshake`, RFC 8446 §5.1).
const TLS_HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello (RFC 8446 §4).
const TLS_CLIENT_HELLO: u8 = 1;
/// IPv6 header length; also the linear bytes [`span`] wants before it reads in place.
const IPV6_HEADER: usize = 40;
/// Offset of the data-offset byte in the TCP header.
const TCP_DATA_OFFSET: usize = 12;
/// Largest TLS record fragment (RFC 8446 §5.1: 2^14 bytes).
const TLS_MAX_RECORD: u32 = 1 << 14;
/// TLS record header: type, version, length.
const TLS_RECORD_HEADER: u32 = 5;
/// Handshake message header: type, 24-bit length.
const TLS_HANDSHAKE_HEADER: u32 = 4;

/// What the first payload of a TCP flow's egress side is, for the names stage.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    /// No TLS ClientHello (or too short to tell): nothing to copy in this flow.
    NotTls,
    /// A ClientHello that continues past what one copy of this segment holds.
    Partial,
    /// A ClientHello whole within one record and within this segment's copy.
    Whole,
}

/// Where the transport payload of a packet is.
struct Span {
    offset: u32,
    len: u32,
}

#[inline(always)]
fn egress_copies(state: u32) -> u32 {
    (state >> 8) & 0xff
}

#[inline(always)]
fn ingress_copies(state: u32) -> u32 {
    (state >> 16) & 0xff
}

/// A packet of a connected TCP or UDP socket whose copying is not over: copies it when the
/// policy of `monitor_common::copy` says so and updates the socket's `copy_state`.
#[inline(always)]
pub(crate) fn connected(ctx: &SkBuffContext, sk: *mut bpf_sock, c: &mut Counters, egress: bool) {
    if !copy_payloads() {
        c.copy_state = COPY_STATE_DONE;
        return;
    }
    // SAFETY: full-socket field reads.
    let (protocol, dst_port, tcp_state) = unsafe { ((*sk).protocol, u16::from_be((*sk).dst_port), (*sk).state) };
    let tcp = protocol == u32::from(IPPROTO_TCP);
    // TCP: only established connections carry a ClientHello (or a DNS message), and a segment of
    // at most `TCP_SMALL` bytes is a bare ACK or a sliver: neither is read nor counted, so the
    // handshake and the ACKs of short flows cost these few loads only.
    if tcp && (tcp_state != TCP_ESTABLISHED || ctx.len() <= TCP_SMALL) {
        if tcp_state == TCP_LISTEN {
            // The SYNs and handshake ACKs of a server's clients reach its listener: it never
            // copies (accepted sockets are done from `sock_ops`), so it stops being looked at.
            c.copy_state = COPY_STATE_DONE;
        }
        return;
    }
    let mut state = c.copy_state.wrapping_add(COPY_STATE_PACKETS);
    let udp = protocol == u32::from(IPPROTO_UDP);
    let dns = dst_port == DNS;
    if !(tcp || (udp && (dns || dst_port == HTTPS))) {
        c.copy_state = COPY_STATE_DONE;
        return;
    }
    let wanted = if tcp {
        if egress { egress_copies(state) < COPY_TCP_EGRESS } else { dns && ingress_copies(state) < 1 }
    } else if dns {
        egress_copies(state) + ingress_copies(state) < COPY_DNS
    } else {
        egress && egress_copies(state) < COPY_QUIC_EGRESS
    };
    // Set when this packet shows there is nothing more to copy in the flow.
    let mut over = false;
    if wanted && let Some(span) = span(ctx, tcp) {
        // The first payload of a TCP client must start a ClientHello to be copied; a second
        // segment is copied only after a copied first one (it continues the ClientHello).
        let start =
            if tcp && egress && !dns && egress_copies(state) == 0 { tls_start(ctx, &span) } else { Start::Partial };
        if start == Start::NotTls {
            over = true;
        } else {
            let tuple = super::tuple_of(sk);
            copy(ctx, sk, &tuple, &span, egress, tcp);
            state = state.wrapping_add(if egress { COPY_STATE_EGRESS } else { COPY_STATE_INGRESS });
            over = start == Start::Whole;
        }
    }
    let finished = if tcp {
        egress_copies(state) >= COPY_TCP_EGRESS && (!dns || ingress_copies(state) >= 1)
    } else if dns {
        egress_copies(state) + ingress_copies(state) >= COPY_DNS
    } else {
        egress_copies(state) >= COPY_QUIC_EGRESS
    };
    // DNS sockets are followed to their limit; the others for their first packets only.
    let looked_enough = !(udp && dns) && state & 0xff >= COPY_PACKETS;
    c.copy_state = if finished || looked_enough || over { state | COPY_STATE_DONE } else { state };
}

/// A datagram of an unconnected UDP socket to or from `port` (the peer's): DNS both ways, the
/// first egress datagrams to port 443.
#[inline(always)]
pub(crate) fn unconnected(
    ctx: &SkBuffContext,
    sk: *mut bpf_sock,
    c: &mut Counters,
    tuple: &Tuple,
    l4_off: u32,
    egress: bool,
) {
    if !copy_payloads() {
        c.copy_state = COPY_STATE_DONE;
        return;
    }
    let port = tuple.remote_port;
    let state = c.copy_state;
    let wanted = if port == DNS {
        egress_copies(state) + ingress_copies(state) < COPY_DNS
    } else {
        port == HTTPS && egress && egress_copies(state) < COPY_QUIC_EGRESS
    };
    if !wanted {
        return;
    }
    let Some(span) = udp_span(ctx, l4_off) else { return };
    copy(ctx, sk, tuple, &span, egress, false);
    let state = state.wrapping_add(if egress { COPY_STATE_EGRESS } else { COPY_STATE_INGRESS });
    c.copy_state =
        if egress_copies(state) + ingress_copies(state) >= COPY_DNS { state | COPY_STATE_DONE } else { state };
}

/// Whether the first egress payload of a TCP flow (at `span`) starts a TLS ClientHello: a
/// handshake record (type 22, version 3.0–3.4, length 1..=2^14) whose first message is a
/// ClientHello. One 9-byte load; a payload shorter than that counts as no ClientHello.
/// `Whole` when the ClientHello fits its record and the record fits this segment's copy: the
/// names stage then needs no further segment.
#[inline(always)]
fn tls_start(ctx: &SkBuffContext, span: &Span) -> Start {
    let Ok(h) = ctx.load::<[u8; 9]>(span.offset as usize) else { return Start::NotTls };
    let record = u32::from(u16::from_be_bytes([h[3], h[4]]));
    if h[0] != TLS_HANDSHAKE
        || h[1] != 3
        || h[2] > 4
        || record == 0
        || record > TLS_MAX_RECORD
        || h[5] != TLS_CLIENT_HELLO
    {
        return Start::NotTls;
    }
    let message = u32::from_be_bytes([0, h[6], h[7], h[8]]);
    let copied = if span.len > COPY_MAX as u32 { COPY_MAX as u32 } else { span.len };
    if message + TLS_HANDSHAKE_HEADER <= record && TLS_RECORD_HEADER + record <= copied {
        Start::Whole
    } else {
        Start::Partial
    }
}

/// Payload span of a TCP segment or UDP datagram; `None` without payload or unparsable.
///
/// TCP headers are read in place (direct packet access: the IP and TCP headers of an egress
/// segment sit in the skb's linear part), no helper call; a packet whose headers are not all
/// linear, and every UDP datagram, goes through [`span_loaded`].
#[inline(always)]
fn span(ctx: &SkBuffContext, tcp: bool) -> Option<Span> {
    if !tcp {
        return span_loaded(ctx, false);
    }
    let skb = ctx.skb.skb;
    // SAFETY: ctx field reads; the verifier turns them into packet pointers.
    let (data, end) = unsafe { ((*skb).data as usize, (*skb).data_end as usize) };
    if data + IPV6_HEADER > end {
        return span_loaded(ctx, true);
    }
    // SAFETY: `data..data + 40` is within the packet (checked above).
    let (first, v4_total, v6_payload, v6_next) = unsafe {
        let p = data as *const u8;
        (*p, [*p.add(2), *p.add(3)], [*p.add(4), *p.add(5)], *p.add(6))
    };
    let (l4_off, ip_end) = match first >> 4 {
        4 => (u32::from(first & 0x0f) * 4, u32::from(u16::from_be_bytes(v4_total))),
        6 if u16::from(v6_next) == IPPROTO_TCP => (40, 40 + u32::from(u16::from_be_bytes(v6_payload))),
        _ => return None, // another version, or IPv6 extension headers: not parsed
    };
    if l4_off < 20 {
        return None;
    }
    // `l4_off` is at most 60: the verifier sees the bound of the 4-bit field.
    let off_at = data + l4_off as usize + TCP_DATA_OFFSET;
    if off_at + 1 > end {
        return span_loaded(ctx, true);
    }
    // SAFETY: `off_at` is within the packet (checked above).
    let off_byte = unsafe { *(off_at as *const u8) };
    tcp_payload(ctx, l4_off, ip_end, off_byte)
}

/// [`span`] through `bpf_skb_load_bytes` (up to four small loads), for headers outside the
/// linear part and for UDP.
#[inline(always)]
fn span_loaded(ctx: &SkBuffContext, tcp: bool) -> Option<Span> {
    let first: u8 = ctx.load(0).ok()?;
    let (l4_off, ip_end) = match first >> 4 {
        4 => {
            let ihl = u32::from(first & 0x0f) * 4;
            let total: [u8; 2] = ctx.load(2).ok()?;
            (ihl, u32::from(u16::from_be_bytes(total)))
        }
        6 => {
            let next: u8 = ctx.load(6).ok()?;
            let want = if tcp { IPPROTO_TCP } else { IPPROTO_UDP };
            if u16::from(next) != want {
                return None; // extension headers: not parsed
            }
            let payload: [u8; 2] = ctx.load(4).ok()?;
            (40, 40 + u32::from(u16::from_be_bytes(payload)))
        }
        _ => return None,
    };
    if l4_off < 20 {
        return None;
    }
    if !tcp {
        return udp_span(ctx, l4_off);
    }
    let off_byte: u8 = ctx.load(l4_off as usize + TCP_DATA_OFFSET).ok()?;
    tcp_payload(ctx, l4_off, ip_end, off_byte)
}

/// The payload span of a TCP segment from its header offsets.
#[inline(always)]
fn tcp_payload(ctx: &SkBuffContext, l4_off: u32, ip_end: u32, off_byte: u8) -> Option<Span> {
    let offset = l4_off + u32::from(off_byte >> 4) * 4;
    // A GSO super-packet's IP length field may be 0 or stale: bound by the skb length instead.
    let skb_len = ctx.len();
    let end = if ip_end > offset && ip_end <= skb_len { ip_end } else { skb_len };
    let len = end.checked_sub(offset)?;
    if len == 0 { None } else { Some(Span { offset, len }) }
}

#[inline(always)]
fn udp_span(ctx: &SkBuffContext, l4_off: u32) -> Option<Span> {
    let head: [u8; 8] = ctx.load(l4_off as usize).ok()?;
    let len = u32::from(u16::from_be_bytes([head[4], head[5]])).checked_sub(8)?;
    if len == 0 { None } else { Some(Span { offset: l4_off + 8, len }) }
}

/// Reserves, fills and submits one copy (a failure is counted in `STAT_COPIES_LOST`).
#[inline(always)]
fn copy(ctx: &SkBuffContext, sk: *mut bpf_sock, tuple: &Tuple, span: &Span, egress: bool, tcp: bool) {
    stat(STAT_COPIES, 1);
    let Some(mut entry) = EVENTS.reserve::<PayloadCopy>(0) else {
        stat(STAT_COPIES_LOST, 1);
        return;
    };
    let ev = entry.as_mut_ptr();
    let mut len = span.len;
    let mut flags = if egress { COPY_EGRESS } else { 0 } | if tcp { COPY_TCP } else { 0 };
    if len > COPY_MAX as u32 {
        len = COPY_MAX as u32;
        flags |= COPY_TRUNCATED;
    }
    let owner = owner_of(sk.cast());
    // SAFETY: `ev` points at a reservation of size_of::<PayloadCopy>(); the header is written
    // whole; `len` is in 1..=COPY_MAX, the size of `data`.
    let loaded = unsafe {
        (*ev).header.kind = COPY_KIND;
        (*ev).header.ts_ns = bpf_ktime_get_boot_ns();
        (*ev).header.cookie = bpf_get_socket_cookie(ctx.skb.skb.cast());
        if owner.is_null() {
            (*ev).header.owner = Owner::default();
            flags |= COPY_NO_OWNER;
        } else {
            (*ev).header.owner = *owner;
        }
        (*ev).header.flags = flags;
        (*ev).header.tuple = *tuple;
        (*ev).header.wire_len = span.len;
        (*ev).header.len = len;
        // The verifier must see 1 <= n <= COPY_MAX at the call (a zero-sized read is refused,
        // aya issue #1207): a mask it tracks, not a comparison LLVM may fold away. `len` is in
        // 1..=COPY_MAX (a power of two), so this is `len` itself.
        let n = (len.wrapping_sub(1) & (COPY_MAX as u32 - 1)) + 1;
        bpf_skb_load_bytes(ctx.skb.skb.cast(), span.offset, (&raw mut (*ev).data).cast(), n)
    };
    if loaded == 0 {
        entry.submit(0);
    } else {
        entry.discard(0);
        stat(STAT_COPIES_LOST, 1);
    }
}
