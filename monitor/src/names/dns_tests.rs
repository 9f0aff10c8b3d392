//! Tests of the DNS parser with messages built by simple-dns' builder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::{
    CLASS, Label, Name, PacketFlag, QCLASS, QTYPE, Question, RCODE, ResourceRecord, TYPE,
    rdata::{A, AAAA, CNAME, OPT, RData},
};

use super::*;

fn name(s: &str) -> Name<'_> {
    Name::new_unchecked(s)
}

fn a(owner: &str, ttl: u32, addr: [u8; 4]) -> ResourceRecord<'_> {
    ResourceRecord::new(name(owner), CLASS::IN, ttl, RData::A(A { address: u32::from_be_bytes(addr) }))
}

fn aaaa(owner: &str, ttl: u32, addr: Ipv6Addr) -> ResourceRecord<'_> {
    ResourceRecord::new(name(owner), CLASS::IN, ttl, RData::AAAA(AAAA { address: u128::from(addr) }))
}

fn cname<'a>(owner: &'a str, ttl: u32, target: &'a str) -> ResourceRecord<'a> {
    ResourceRecord::new(name(owner), CLASS::IN, ttl, RData::CNAME(CNAME(name(target))))
}

fn question(q: &str, qtype: TYPE) -> Question<'_> {
    Question::new(name(q), QTYPE::TYPE(qtype), QCLASS::CLASS(CLASS::IN), false)
}

fn host(s: &str) -> Hostname {
    Hostname::parse(s).unwrap()
}

/// A response for www.example.com: two CNAMEs, two A records, an unrelated record.
fn cdn_response() -> Packet<'static> {
    let mut p = Packet::new_reply(0x1234);
    p.set_flags(PacketFlag::RECURSION_DESIRED | PacketFlag::RECURSION_AVAILABLE);
    p.questions.push(question("www.example.com", TYPE::A));
    p.answers.push(cname("www.example.com", 300, "www.example.com.cdn.example.net"));
    p.answers.push(cname("www.example.com.cdn.example.net", 60, "e1234.a.cdn.example.net"));
    p.answers.push(a("e1234.a.cdn.example.net", 20, [192, 0, 2, 10]));
    p.answers.push(a("e1234.a.cdn.example.net", 20, [192, 0, 2, 11]));
    p.answers.push(a("unrelated.example.org", 5, [198, 51, 100, 1]));
    p
}

#[test]
fn cname_chain_is_followed_from_the_queried_name_with_compression() {
    let packet = cdn_response();
    let compressed = packet.build_bytes_vec_compressed().unwrap();
    let plain = packet.build_bytes_vec().unwrap();
    assert!(compressed.len() < plain.len(), "compression pointers in use");
    for bytes in [&compressed, &plain] {
        let msg = parse(bytes, Transport::Udp).unwrap();
        assert_eq!(msg.id, 0x1234);
        assert!(msg.is_response);
        assert!(!msg.truncated && !msg.partial && !msg.edns);
        assert_eq!(msg.rcode, 0);
        assert_eq!(msg.questions, vec![DnsQuestion { name: host("www.example.com"), qtype: 1 }]);
        assert_eq!(
            msg.answers,
            vec![DnsAnswer {
                queried: host("www.example.com"),
                cname_chain: vec![host("www.example.com.cdn.example.net"), host("e1234.a.cdn.example.net")],
                addrs: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11))],
                ttl: 20,
            }]
        );
    }
}

#[test]
fn aaaa_answers_and_mixed_case_names_are_read() {
    let mut p = Packet::new_reply(7);
    p.questions.push(question("Dual.Example.TEST", TYPE::AAAA));
    p.answers.push(aaaa("dual.example.test", 3600, Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)));
    p.answers.push(aaaa("DUAL.example.test", 1800, Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)));
    let msg = parse(&p.build_bytes_vec_compressed().unwrap(), Transport::Udp).unwrap();
    assert_eq!(msg.questions[0].qtype, 28);
    assert_eq!(msg.answers.len(), 1);
    assert_eq!(msg.answers[0].queried, host("dual.example.test"));
    assert_eq!(msg.answers[0].addrs.len(), 2);
    assert_eq!(msg.answers[0].ttl, 1800);
}

#[test]
fn edns_responses_and_nxdomain_are_read() {
    let mut p = cdn_response();
    *p.opt_mut() = Some(OPT { opt_codes: Vec::new(), udp_packet_size: 1232, version: 0 });
    let msg = parse(&p.build_bytes_vec_compressed().unwrap(), Transport::Udp).unwrap();
    assert!(msg.edns);
    assert_eq!(msg.answers[0].addrs.len(), 2);

    let mut nx = Packet::new_reply(9);
    nx.questions.push(question("missing.example.test", TYPE::A));
    *nx.rcode_mut() = RCODE::NameError;
    let msg = parse(&nx.build_bytes_vec().unwrap(), Transport::Udp).unwrap();
    assert_eq!(msg.rcode, 3);
    assert!(msg.answers.is_empty());
}

#[test]
fn queries_have_questions_and_no_answers() {
    let mut q = Packet::new_query(42);
    q.questions.push(question("ask.example.test", TYPE::A));
    let msg = parse(&q.build_bytes_vec().unwrap(), Transport::Udp).unwrap();
    assert!(!msg.is_response);
    assert_eq!(msg.questions[0].name, host("ask.example.test"));
    assert!(msg.answers.is_empty());
}

#[test]
fn tcp_messages_carry_a_length_prefix() {
    let bytes = cdn_response().build_bytes_vec_compressed().unwrap();
    let mut stream = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    stream.extend(&bytes);
    stream.extend(&bytes[..10]); // the start of a second message on the same connection
    let msg = parse(&stream, Transport::Tcp).unwrap();
    assert_eq!(msg.answers[0].addrs.len(), 2);
    assert!(!msg.partial);
    assert!(matches!(parse(&[0], Transport::Tcp), Err(ParseError::Truncated { len: 1 })));
}

#[test]
fn truncated_flag_is_reported() {
    let mut p = cdn_response();
    p.set_flags(PacketFlag::TRUNCATION);
    assert!(parse(&p.build_bytes_vec().unwrap(), Transport::Udp).unwrap().truncated);
}

#[test]
fn messages_cut_at_every_offset_keep_the_records_before_the_cut() {
    let mut p = Packet::new_reply(1);
    p.questions.push(question("cut.example.test", TYPE::A));
    for i in 0..4 {
        p.answers.push(a("cut.example.test", 60, [203, 0, 113, i]));
    }
    p.additional_records.push(a("ns.example.test", 60, [203, 0, 113, 99]));
    *p.opt_mut() = Some(OPT { opt_codes: Vec::new(), udp_packet_size: 1232, version: 0 });
    let bytes = p.build_bytes_vec_compressed().unwrap();
    // Where each answer record ends: parse with the answer count raised one by one.
    let mut ends = Vec::new();
    for cut in 12..=bytes.len() {
        let msg = match parse(&bytes[..cut], Transport::Udp) {
            Ok(m) => m,
            Err(e) => {
                assert!(matches!(e, ParseError::Truncated { .. }), "cut {cut}: {e:?}");
                assert!(ends.is_empty(), "an error after a success at cut {cut}");
                continue;
            }
        };
        assert_eq!(msg.partial, cut < bytes.len(), "cut {cut}");
        let n = msg.answers.first().map_or(0, |a| a.addrs.len());
        let expected: Vec<IpAddr> = (0..n).map(|i| IpAddr::V4(Ipv4Addr::new(203, 0, 113, i as u8))).collect();
        assert_eq!(msg.answers.first().map(|a| a.addrs.clone()).unwrap_or_default(), expected, "cut {cut}");
        if ends.len() < n {
            ends.push(cut);
        }
    }
    assert_eq!(ends.len(), 4, "every answer became visible once its bytes were there");
    // Each record is 16 bytes (compressed owner name): the first appears 16 bytes after the
    // questions, the rest every 16 bytes.
    assert!(ends.windows(2).all(|w| w[1] - w[0] == 16), "{ends:?}");
}

#[test]
fn header_announcing_more_records_than_bytes_does_not_reserve_them() {
    let mut msg = vec![0, 1, 0x81, 0x80, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    msg.extend([0; 20]);
    let out = parse(&msg, Transport::Udp).unwrap();
    assert!(out.partial && out.answers.is_empty());
    assert!(matches!(parse(&[0; 11], Transport::Udp), Err(ParseError::Truncated { len: 11 })));
}

#[test]
fn hostile_names_are_counted_and_skipped() {
    let bad = Name::new_with_labels(&[Label::new_unchecked(&b"evil\x1b[2J"[..]), Label::new_unchecked(&b"test"[..])]);
    let mut p = Packet::new_reply(3);
    p.questions.push(Question::new(bad.clone(), QTYPE::TYPE(TYPE::A), QCLASS::CLASS(CLASS::IN), false));
    p.answers.push(ResourceRecord::new(bad, CLASS::IN, 60, RData::A(A { address: 1 })));
    let msg = parse(&p.build_bytes_vec().unwrap(), Transport::Udp).unwrap();
    assert!(msg.questions.is_empty() && msg.answers.is_empty());
    assert_eq!(msg.bad_names, 2);
}

#[test]
fn cname_loops_end_without_addresses() {
    let mut p = Packet::new_reply(4);
    p.questions.push(question("loop-a.example.test", TYPE::A));
    p.answers.push(cname("loop-a.example.test", 60, "loop-b.example.test"));
    p.answers.push(cname("loop-b.example.test", 60, "loop-a.example.test"));
    let msg = parse(&p.build_bytes_vec().unwrap(), Transport::Udp).unwrap();
    assert!(msg.answers.is_empty());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(parse(&[], Transport::Udp).is_err());
    assert!(parse(b"GET / HTTP/1.1\r\n\r\n", Transport::Udp).is_err());
    // A compression pointer pointing at itself.
    let mut p = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1];
    assert!(parse(&p, Transport::Udp).is_err());
    p[13] = 200; // pointing past the end
    assert!(parse(&p, Transport::Udp).is_err());
}
