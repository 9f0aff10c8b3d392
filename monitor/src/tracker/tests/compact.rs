//! Compact flow state: exact sizes, lossless packed addresses, owners kept once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::tracker::compact::{Addresses, End, Endpoints, FlowOwner, Owners, Stamp};

/// Per-flow memory (issue 8: 100,000 open sockets within 48 MiB in total). Each open socket costs
/// one boxed `Flow` (184 bytes: a 192-byte malloc chunk; an IPv6 flow's addresses are ids into
/// the tracker's table, shared) and a 16-byte table entry; a field added here shows as a failure, so that the cost
/// is a decision.
#[test]
fn flow_state_stays_compact() {
    use std::mem::size_of;
    assert_eq!(size_of::<crate::tracker::flow::Flow>(), 184);
    assert_eq!(size_of::<Endpoints>(), 16);
    assert_eq!(size_of::<Stamp>(), 4);
    assert_eq!(size_of::<crate::tracker::flow::Extra>(), 40);
    assert_eq!(size_of::<crate::tracker::compact::FlowOwner>(), 48, "kept once per owner, not per flow");
}

/// Both ends come back as set, whichever family each has and in whichever order they came: the
/// first IPv6 address moves both into the address table, an IPv4 one set later stays IPv4.
#[test]
fn a_flows_two_ends_give_back_the_addresses_stored_in_any_family_and_order() {
    let v4: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let v4b: SocketAddr = "198.51.100.1:443".parse().unwrap();
    let v6: SocketAddr = "[2001:db8::9]:53".parse().unwrap();
    let unspecified: SocketAddr = "[::]:80".parse().unwrap();
    let cases = [(v4, v4b), (v4, v6), (v6, v4), (v6, unspecified), (unspecified, v4b)];
    let mut addrs = Addresses::default();
    for (local, remote) in cases {
        for remote_first in [false, true] {
            let mut ends = Endpoints::default();
            if remote_first {
                ends.set(End::Remote, remote, &mut addrs);
                ends.set(End::Local, local, &mut addrs);
            } else {
                ends.set(End::Local, local, &mut addrs);
                ends.set(End::Remote, remote, &mut addrs);
            }
            let got = (ends.get(End::Local, &addrs), ends.get(End::Remote, &addrs));
            assert_eq!(got, (local, remote), "{local} {remote}");
            assert_eq!(matches!(ends, Endpoints::V4 { .. }), local.is_ipv4() && remote.is_ipv4(), "{ends:?}");
        }
    }
    // Each address once: 0.0.0.0, 192.0.2.7, 2001:db8::9, ::, 198.51.100.1 (IPv4 ones mapped).
    assert_eq!(addrs.len(), 5);
    // An end replaced by one of the other family.
    let mut ends = Endpoints::default();
    ends.set(End::Local, v6, &mut addrs);
    ends.set(End::Local, v4, &mut addrs);
    ends.set(End::Remote, v4b, &mut addrs);
    assert_eq!((ends.get(End::Local, &addrs), ends.get(End::Remote, &addrs)), (v4, v4b));
    assert!(ends.get(End::Local, &addrs).is_ipv4());
}

/// A stamp measures time in 64ths of a second across the 32-bit wrap of its units: whole
/// seconds exactly, any time within a 64th, and a time before it as no time.
#[test]
fn stamps_measure_elapsed_time_across_their_wrap() {
    const UNIT: u64 = SEC / 64;
    let wrap = (1u64 << 32) * UNIT;
    for start in [0, 5 * SEC, 7_000_001, wrap - 300_000_000, wrap, 3 * wrap + 17_000_000] {
        let stamp = Stamp::at(start);
        assert_eq!(stamp.elapsed_ns(start), 0, "{start}");
        for secs in [1, 120, 86_400, 20 * 86_400, 380 * 86_400] {
            assert_eq!(stamp.elapsed_ns(start + secs * SEC), secs * SEC, "{secs} s from {start}");
        }
        for d in [1, UNIT - 1, UNIT, 10 * SEC - 1, 10 * SEC + 1] {
            let e = stamp.elapsed_ns(start + d);
            assert!(e + UNIT > d && e < d + UNIT, "{d} ns from {start}: {e}");
        }
        assert_eq!(stamp.elapsed_ns(start.saturating_sub(5 * UNIT)), 0, "before: {start}");
    }
}

/// Every address the tracker can store comes back exactly (family included).
#[test]
fn packed_endpoints_give_back_the_address_stored() {
    let addrs = [
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 443),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 80),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::BROADCAST), 0),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 80),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 65535),
        SocketAddr::new("2001:db8::1".parse().unwrap(), 53),
        // IPv4-compatible (not mapped) stays IPv6.
        SocketAddr::new("::10.0.0.1".parse().unwrap(), 1),
    ];
    let mut table = Addresses::default();
    for a in addrs {
        for other in [addrs[0], addrs[5]] {
            let mut ends = Endpoints::default();
            ends.set(End::Local, other, &mut table);
            ends.set(End::Remote, a, &mut table);
            assert_eq!(ends.get(End::Remote, &table), a, "{a}");
            assert_eq!(ends.get(End::Remote, &table).is_ipv6(), a.is_ipv6(), "{a}");
            assert_eq!(ends.get(End::Local, &table), other, "{a}");
        }
    }
}

fn ip6(a: Ipv6Addr) -> [u32; 4] {
    let o = a.octets();
    std::array::from_fn(|i| u32::from_ne_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]))
}

/// IPv6 flows between two hosts share their two addresses; the addresses of closed flows go
/// at the first tick after the table doubled, and the open flows' records still carry their
/// own addresses after the renumbering.
#[test]
fn ipv6_addresses_are_kept_once_and_those_of_closed_flows_go_when_the_table_doubled() {
    let mut t = tracker();
    let mut out = Vec::new();
    let local: Ipv6Addr = "fd00:199::1".parse().unwrap();
    let remote = |i: u32| -> Ipv6Addr { format!("2001:db8::{:x}:{:x}", i >> 16, i & 0xffff).parse().unwrap() };
    let open = |t: &mut Tracker, out: &mut Vec<FlowRecord>, cookie: u64, to: Ipv6Addr| {
        let mut e = ev(EventKind::Established, 2 * SEC, counters(100, 100, 10, 10));
        e.cookie = cookie;
        e.tuple.family = monitor_common::AF_INET6;
        e.tuple.local_addr = ip6(local);
        e.tuple.remote_addr = ip6(to);
        e.tuple.local_port = u16::try_from(1000 + cookie % 60_000).unwrap();
        t.handle(EventKind::Established, &e, out);
    };
    // 500 connections to one server: two addresses in all, and 0.0.0.0 (IPv4-mapped), which an
    // end not set yet reads as when the other one moves the flow to the table.
    for cookie in 1..=500 {
        open(&mut t, &mut out, cookie, remote(0));
    }
    assert_eq!(t.addrs.len(), 3);
    // 3,000 to distinct servers, of which all but the last 100 close.
    for i in 1..=3000u32 {
        open(&mut t, &mut out, 1000 + u64::from(i), remote(i));
    }
    assert_eq!(t.addrs.len(), 3003);
    for i in 1..=2900u32 {
        let cookie = 1000 + u64::from(i);
        for kind in [EventKind::TcpClose, EventKind::Release] {
            let mut e = ev(kind, 3 * SEC, counters(100, 100, 10, 10));
            e.cookie = cookie;
            t.handle(kind, &e, &mut out);
        }
    }
    assert_eq!(out.len(), 2900);
    t.tick(4 * SEC, &mut out);
    assert_eq!(t.addrs.len(), 102, "the local address, the shared server and the 100 still open");
    assert_eq!(out.len(), 2900, "no record due at the tick");
    assert!(!t.addrs.rebuild_due(), "next when it doubled again");
    // Every open flow's record carries its own addresses.
    out.clear();
    t.shutdown(5 * SEC, &mut out);
    assert!(t.addrs.len() == 0, "forgotten with the flows");
    let want = |cookie: u64| {
        let to = if cookie <= 500 { remote(0) } else { remote(u32::try_from(cookie - 1000).unwrap()) };
        (
            Some(SocketAddr::new(local.into(), u16::try_from(1000 + cookie % 60_000).unwrap())),
            Some(SocketAddr::new(to.into(), 443)),
        )
    };
    let mut seen = 0;
    for r in &out {
        assert_eq!((r.local, r.remote), want(r.cookie), "cookie {}", r.cookie);
        seen += 1;
    }
    assert_eq!(seen, 600, "{out:?}");
}

/// Flows of one process share one owner; owners of closed flows go at the next tick.
#[test]
fn owners_are_kept_once_and_dropped_with_their_last_flow() {
    let mut t = tracker();
    let mut out = Vec::new();
    for cookie in 1..=100u64 {
        let mut e = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
        e.cookie = cookie;
        t.handle(EventKind::Established, &e, &mut out);
    }
    let mut other = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    other.cookie = 1000;
    other.owner = owner(43);
    t.handle(EventKind::Established, &other, &mut out);
    assert_eq!(t.owners.len(), 2);
    for cookie in (1..=100u64).chain([1000]) {
        let mut close = ev(EventKind::TcpClose, 3 * SEC, counters(100, 100, 10, 10));
        close.cookie = cookie;
        t.handle(EventKind::TcpClose, &close, &mut out);
        let mut release = ev(EventKind::Release, 3 * SEC, counters(100, 100, 10, 10));
        release.cookie = cookie;
        t.handle(EventKind::Release, &release, &mut out);
    }
    assert_eq!(out.len(), 101);
    assert!(out.iter().filter(|r| r.owner.tgid == 42).all(|r| &*r.owner.comm == "client"));
    assert_eq!(out.iter().filter(|r| r.owner.tgid == 43).count(), 1);
    t.tick(4 * SEC, &mut out);
    assert_eq!(t.owners.len(), 0);
}

/// The interner prunes on its own once it doubled, so owners of closed flows cannot pile up
/// between ticks; owners still held survive.
#[test]
fn interned_owners_are_pruned_when_the_table_doubles() {
    let mut owners = Owners::default();
    let kept = owners.intern(FlowOwner::of_kernel(&owner(1)));
    for tgid in 2..5000 {
        drop(owners.intern(FlowOwner::of_kernel(&owner(tgid))));
    }
    assert!(owners.len() <= 1024, "{} owners kept", owners.len());
    owners.prune();
    assert_eq!(owners.len(), 1);
    assert_eq!(kept.to_owner().tgid, 1);
}

/// `comm` from the kernel: cut at its NUL, at most 15 bytes, bytes that are not UTF-8 as `\xNN`
/// and a backslash doubled, so that two names never give one text (an adversarial pass: a name
/// with the byte 0xFF and one with a real U+FFFD were one app).
#[test]
fn kernel_comm_is_kept_as_the_kernel_has_it() {
    let mut o = owner(1);
    o.comm = *b"sixteen-bytes-xy";
    assert_eq!(FlowOwner::of_kernel(&o).to_owner().comm.as_ref(), "sixteen-bytes-x");
    let text = |bytes: &[u8]| {
        let mut o = owner(1);
        o.comm = [0; 16];
        o.comm[..bytes.len()].copy_from_slice(bytes);
        FlowOwner::of_kernel(&o).to_owner().comm.to_string()
    };
    assert_eq!(text(&[b'a', 0xff, b'b']), "a\\xffb");
    assert_eq!(text("a\u{fffd}b".as_bytes()), "a\u{fffd}b");
    assert_eq!(text(br"a\xffb"), r"a\\xffb");
    assert_eq!(text(b"ev\n"), "ev\n", "a newline stays");
}

/// Records of one name share its text (no allocation per record); other names get their own,
/// and every record still carries its own owner's fields.
#[test]
fn records_share_the_text_of_their_owners_comm() {
    let mut owners = Owners::default();
    let (a, b) = (FlowOwner::of_kernel(&owner(1)), FlowOwner::of_kernel(&owner(2)));
    let (first, second) = (owners.owner_of(&a), owners.owner_of(&b));
    assert!(std::sync::Arc::ptr_eq(&first.comm, &second.comm), "same comm, one text");
    assert_eq!((first.tgid, second.tgid, &*second.comm), (1, 2, "client"));
    let mut k = owner(3);
    k.comm = *b"other\0\0\0\0\0\0\0\0\0\0\0";
    let other = owners.owner_of(&FlowOwner::of_kernel(&k));
    assert_eq!((&*other.comm, other.tgid), ("other", 3));
    // 5,000 more names: past the bound the texts are forgotten and made again, still right.
    for i in 0..5000u32 {
        let mut k = owner(i);
        k.comm = [0; 16];
        k.comm[..5].copy_from_slice(format!("{i:05}").as_bytes());
        let o = owners.owner_of(&FlowOwner::of_kernel(&k));
        assert_eq!(&*o.comm, format!("{i:05}"));
        assert!(owners.comm_texts() <= crate::tracker::compact::COMM_TEXTS, "bounded");
    }
    assert!(owners.comm_texts() < 5000, "the cache was emptied on the way");
    assert_eq!(&*owners.owner_of(&a).comm, "client");
}

/// An owner found in /proc reaches the socket's peer flows too.
#[test]
fn owner_from_proc_reaches_peer_flows() {
    let mut t = tracker();
    let mut out = Vec::new();
    for (i, addr) in [[10, 0, 1, 1], [10, 0, 1, 2]].into_iter().enumerate() {
        let (k, mut e) = peer_event(EventKind::PeerUpdate, i as u64 + 1, addr, 100);
        e.flags |= FLAG_NO_OWNER;
        t.handle(k, &e, &mut out);
    }
    let found = Owner {
        tgid: 77,
        pid: 78,
        uid: 0,
        gid: 0,
        comm: "resolver".into(),
        cgroup_id: 1,
        source: OwnerSource::Procfs,
        start_cs: 0,
        exec_mark: 0,
    };
    t.set_owner(7, &found);
    let (k, e) = udp_release(7);
    t.handle(k, &e, &mut out);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|r| r.owner == found), "{out:?}");
}
