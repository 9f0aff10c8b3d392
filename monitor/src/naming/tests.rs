//! The names stage against real payloads: a DNS response built with simple-dns, a rustls
//! ClientHello split across two copies, and records of two apps for one address.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
};

use jiff::Timestamp;
use monitor_common::{
    AF_INET,
    copy::{COPY_EGRESS, COPY_KIND, COPY_TCP, CopyHeader},
    event::Tuple,
};
use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
use simple_dns::{CLASS, Name, Packet, PacketFlag, ResourceRecord, rdata::RData};

use super::Naming;
use crate::{
    names::{MalformedKind, NameSource, table::NameTableConfig},
    probe::Copied,
    tracker::{
        FlowRecord,
        record::{Direction, Owner, OwnerSource, Payload, PayloadSource, PayloadSources, Protocol, RecordKind, Wire},
    },
};

const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);

fn copy(cookie: u64, remote: (Ipv4Addr, u16), flags: u32, ts_ns: u64, data: &[u8]) -> Copied {
    let tuple = Tuple {
        remote_addr: [u32::from_ne_bytes(remote.0.octets()), 0, 0, 0],
        remote_port: remote.1,
        family: AF_INET,
        protocol: if flags & COPY_TCP != 0 { 6 } else { 17 },
        ..Tuple::default()
    };
    let len = u32::try_from(data.len()).unwrap();
    let header =
        CopyHeader { kind: COPY_KIND, flags, ts_ns, cookie, tuple, len, wire_len: len, ..CopyHeader::default() };
    Copied { header, data: data.into() }
}

fn dns_answer(name: &str, addr: Ipv4Addr) -> Vec<u8> {
    let mut p = Packet::new_reply(7);
    p.set_flags(PacketFlag::RECURSION_AVAILABLE);
    let qname = Name::new_unchecked(name);
    p.questions.push(simple_dns::Question::new(
        qname.clone(),
        simple_dns::QTYPE::TYPE(simple_dns::TYPE::A),
        simple_dns::QCLASS::CLASS(CLASS::IN),
        false,
    ));
    p.answers.push(ResourceRecord::new(qname, CLASS::IN, 300, RData::A(addr.into())));
    p.build_bytes_vec().unwrap()
}

fn client_hello(server_name: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

fn record(cookie: u64, event: RecordKind) -> FlowRecord {
    FlowRecord {
        event,
        cookie,
        owner: Owner {
            tgid: 1,
            pid: 1,
            uid: 0,
            gid: 0,
            comm: "x".into(),
            cgroup_id: 1,
            source: OwnerSource::SockCreate,
            start_cs: 0,
            exec_mark: 0,
        },
        protocol: Protocol::Tcp,
        ip_protocol: 6,
        direction: Direction::Outbound,
        local: None,
        remote: Some(SocketAddr::from((SERVER, 443))),
        payload: Payload::default(),
        payload_source: PayloadSource::Syscall,
        payload_sources: PayloadSources::default(),
        rtt: None,
        final_of_socket: false,
        release: Default::default(),
        resumed: false,
        wire: Wire::default(),
        delta_payload: Payload::default(),
        delta_wire: Wire::default(),
        first_seen: Timestamp::UNIX_EPOCH,
        last_seen: Timestamp::UNIX_EPOCH,
        closed: None,
        complete: true,
    }
}

#[test]
fn dns_answers_name_the_app_that_asked_and_sni_wins_per_flow() {
    let mut n = Naming::new(NameTableConfig::default()).unwrap();
    let resolver = (Ipv4Addr::new(127, 0, 0, 53), 53);
    n.copy("alpha", &copy(1, resolver, 0, 1_000, &dns_answer("a.svc.test", SERVER)));
    n.copy("beta", &copy(2, resolver, 0, 1_000, &dns_answer("b.svc.test", SERVER)));

    // alpha's TCP flow: ClientHello in two segments, SNI differs from the DNS name.
    let hello = client_hello("sni.svc.test");
    let (head, tail) = hello.split_at(hello.len() / 2);
    n.copy("alpha", &copy(10, (SERVER, 443), COPY_EGRESS | COPY_TCP, 2_000, head));
    n.copy("alpha", &copy(10, (SERVER, 443), COPY_EGRESS | COPY_TCP, 2_001, tail));
    let names = n.name("alpha", &record(10, RecordKind::Close), 2_000);
    assert_eq!(names.hostname.as_ref().map(|h| h.as_str()), Some("sni.svc.test"));
    assert_eq!(names.source, NameSource::Sni);
    assert_eq!(names.dns_name.as_ref().map(|h| h.as_str()), Some("a.svc.test"));

    // beta's flow to the same address, no ClientHello: its own DNS name.
    let names = n.name("beta", &record(11, RecordKind::Close), 2_000);
    assert_eq!(names.hostname.as_ref().map(|h| h.as_str()), Some("b.svc.test"));
    assert_eq!(names.source, NameSource::Dns);
    assert_eq!(names.registrable_domain.as_deref(), Some("svc.test"));

    // A third app never asked: the host-wide answer, marked as such.
    let names = n.name("gamma", &record(12, RecordKind::Close), 2_000);
    assert_eq!(names.source, NameSource::DnsHost);

    let stats = n.stats();
    assert_eq!((stats.copies, stats.dns_responses, stats.sni), (4, 2, 1));
    assert_eq!((stats.named_records, stats.unnamed_records), (3, 0));
}

#[test]
fn garbage_payloads_are_counted_not_fatal() {
    let mut n = Naming::new(NameTableConfig::default()).unwrap();
    n.copy("a", &copy(1, (SERVER, 53), 0, 1, &[0xff; 5]));
    n.copy("a", &copy(2, (SERVER, 443), COPY_EGRESS | COPY_TCP, 1, &[0x16, 3, 1, 0, 4, 9, 9, 9, 9]));
    n.copy("a", &copy(3, (SERVER, 443), COPY_EGRESS, 1, &[0xc0; 40]));
    let names = n.name("a", &record(2, RecordKind::Close), 1);
    assert_eq!(names.source, NameSource::None);
    assert!(n.stats().malformed_total >= 1, "{:?}", n.stats());
}

#[test]
fn dns_names_that_fail_validation_are_counted_and_name_nothing() {
    let mut n = Naming::new(NameTableConfig::default()).unwrap();
    let resolver = (Ipv4Addr::new(127, 0, 0, 53), 53);
    // The question and the answer's owner carry a control byte: two rejected names.
    n.copy("a", &copy(1, resolver, 0, 1_000, &dns_answer("bad\u{1}name.test", SERVER)));
    let stats = n.stats();
    assert_eq!(stats.malformed.get(MalformedKind::Hostname), 2, "{stats:?}");
    assert_eq!((stats.dns_responses, stats.malformed_total), (1, 2), "{stats:?}");
    let names = n.name("a", &record(2, RecordKind::Close), 2_000);
    assert_eq!(names.source, NameSource::None);

    // A valid answer afterwards still names the flow.
    n.copy("a", &copy(3, resolver, 0, 3_000, &dns_answer("good.test", SERVER)));
    let names = n.name("a", &record(4, RecordKind::Close), 4_000);
    assert_eq!(names.hostname.as_ref().map(|h| h.as_str()), Some("good.test"));
    assert_eq!(n.stats().malformed_total, 2);
}

/// A `getaddrinfo` record as the kernel sends it (`monitor_common::gai`).
fn gai(name: &[u8], addrs: &[Ipv4Addr], ts_ns: u64) -> Copied {
    use monitor_common::gai::{GAI_ADDRS_MAX, GAI_KIND, GAI_NAME_MAX, GaiData};
    let mut d = GaiData {
        name_len: u32::try_from(name.len()).unwrap(),
        count: u32::try_from(addrs.len()).unwrap(),
        families: [0; GAI_ADDRS_MAX],
        addrs: [[0; 16]; GAI_ADDRS_MAX],
        name: [0; GAI_NAME_MAX],
    };
    d.name[..name.len()].copy_from_slice(name);
    for (i, a) in addrs.iter().enumerate() {
        d.families[i] = AF_INET;
        d.addrs[i][..4].copy_from_slice(&a.octets());
    }
    // SAFETY: GaiData is repr(C) plain data.
    let data =
        unsafe { std::slice::from_raw_parts(std::ptr::from_ref(&d).cast::<u8>(), std::mem::size_of::<GaiData>()) };
    let len = u32::try_from(data.len()).unwrap();
    let header = CopyHeader { kind: GAI_KIND, ts_ns, len, wire_len: len, ..CopyHeader::default() };
    Copied { header, data: data.into() }
}

#[test]
fn getaddrinfo_results_name_the_calling_app_and_hostile_names_are_counted() {
    let mut n = Naming::new(NameTableConfig::default()).unwrap();
    n.copy("alpha", &gai(b"API.Gai-Test.example.", &[SERVER], 1_000));
    // Numeric hosts name nothing; a name with a control byte is malformed.
    n.copy("beta", &gai(b"203.0.113.7", &[SERVER], 1_000));
    n.copy("beta", &gai(b"evil\x1b[31m.test", &[SERVER], 1_000));
    let names = n.name("alpha", &record(1, RecordKind::Close), 2_000);
    assert_eq!(names.hostname.as_ref().map(|h| h.as_str()), Some("api.gai-test.example"));
    assert_eq!(names.source, NameSource::Getaddrinfo);
    // beta resolved nothing usable: alpha's answer, host-wide.
    let names = n.name("beta", &record(2, RecordKind::Close), 2_000);
    assert_eq!(names.source, NameSource::DnsHost);
    let stats = n.stats();
    assert_eq!((stats.getaddrinfo, stats.copies, stats.malformed_total), (1, 0, 1), "{stats:?}");
    assert_eq!(stats.table.hits_getaddrinfo, 1);
}

/// A long-lived flow keeps its server name on every record, however many handshakes other
/// flows made since (a review: in the reassembly LRU, which records did not touch, 65,536 later
/// handshakes took it and the flow's later records lost the name); its closing record lets go.
#[test]
fn a_long_lived_flow_keeps_its_server_name_past_many_later_handshakes() {
    let mut n = Naming::new(NameTableConfig::default()).unwrap();
    let hello = client_hello("long.svc.test");
    n.copy("app", &copy(1, (SERVER, 443), COPY_EGRESS | COPY_TCP, 1_000, &hello));
    // Later flows whose handshakes never end (half a ClientHello each), past the LRU's size.
    let half = &hello[..hello.len() / 2];
    for cookie in 2..(super::MAX_NAMED_FLOWS as u64 + 100) {
        n.copy("app", &copy(cookie, (SERVER, 443), COPY_EGRESS | COPY_TCP, 2_000, half));
    }
    let host = |n: &mut Naming, event| n.name("app", &record(1, event), 1_000).hostname.map(|h| h.as_str().to_owned());
    assert_eq!(host(&mut n, RecordKind::Update).as_deref(), Some("long.svc.test"));
    assert_eq!(host(&mut n, RecordKind::Close).as_deref(), Some("long.svc.test"));
    assert_eq!(host(&mut n, RecordKind::Update), None, "the close let go of it");
}
