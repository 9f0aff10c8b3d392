//! Property tests over the three parsers with arbitrary and mutated real input: no panic,
//! bounded buffers, and malformed input reported as such (never as a name it did not carry).

use proptest::prelude::*;
use rustls::quic::Version;

use super::{
    Progress,
    dns::{self, Transport},
    quic::InitialReassembler,
    testutil::{MIN_INITIAL_DATAGRAM, TEST_DCID, crypto_frame, quic_client_hello, seal_initial, tls_client_hello},
    tls::{ClientHelloReassembler, MAX_CLIENT_HELLO},
};

/// A byte flip, a cut, or an insertion somewhere in `input`.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Cut { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        any::<usize>().prop_map(|at| Mutation::Cut { at }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
    ]
}

fn mutate(input: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = input.to_vec();
    for m in mutations {
        let len = out.len().max(1);
        match m {
            Mutation::Flip { at, xor } => {
                if let Some(b) = out.get_mut(at % len) {
                    *b ^= xor;
                }
            }
            Mutation::Cut { at } => out.truncate(at % len),
            Mutation::Insert { at, bytes } => {
                let at = (at % len).min(out.len());
                out.splice(at..at, bytes.iter().copied());
            }
        }
    }
    out
}

/// Segments of `input` cut at `cuts` (taken modulo the length).
fn segments(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % input.len().max(1)).collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for c in at.into_iter().chain([input.len()]) {
        out.push(input[start..c.max(start)].to_vec());
        start = c.max(start);
    }
    out
}

fn real_dns() -> Vec<u8> {
    use simple_dns::{CLASS, Name, Packet, QCLASS, QTYPE, Question, ResourceRecord, TYPE, rdata};
    let mut p = Packet::new_reply(1);
    p.questions.push(Question::new(
        Name::new_unchecked("www.example.com"),
        QTYPE::TYPE(TYPE::A),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    let cname = rdata::CNAME(Name::new_unchecked("edge.example.net"));
    p.answers.push(ResourceRecord::new(
        Name::new_unchecked("www.example.com"),
        CLASS::IN,
        60,
        rdata::RData::CNAME(cname),
    ));
    p.answers.push(ResourceRecord::new(
        Name::new_unchecked("edge.example.net"),
        CLASS::IN,
        60,
        rdata::RData::A(rdata::A { address: 0xc000_0201 }),
    ));
    p.build_bytes_vec_compressed().unwrap()
}

/// Feeds segments to a TLS reassembler, checking the bound after each push.
fn run_tls(parts: &[Vec<u8>]) -> Progress {
    let mut r = ClientHelloReassembler::new();
    let mut last = Progress::NeedMore;
    for p in parts {
        last = r.push(p);
        assert_bounded(r.buffered_bytes());
    }
    last
}

fn assert_bounded(bytes: usize) {
    assert!(bytes <= 4 * MAX_CLIENT_HELLO, "{bytes} bytes buffered");
}

fn run_quic(datagrams: &[Vec<u8>]) -> Progress {
    let mut r = InitialReassembler::new();
    let mut last = Progress::NeedMore;
    for d in datagrams {
        last = r.push(d);
        assert_bounded(r.buffered_bytes());
    }
    last
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn dns_parser_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = dns::parse(&bytes, Transport::Udp);
        let _ = dns::parse(&bytes, Transport::Tcp);
    }

    #[test]
    fn dns_parser_survives_mutated_real_messages(m in prop::collection::vec(mutation(), 1..6)) {
        let bytes = mutate(&real_dns(), &m);
        if let Ok(msg) = dns::parse(&bytes, Transport::Udp) {
            for a in &msg.answers {
                prop_assert!(a.cname_chain.len() <= dns::MAX_CNAME_CHAIN);
            }
        }
    }

    #[test]
    fn tls_reassembler_survives_arbitrary_segments(parts in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 1..8)) {
        let _ = run_tls(&parts);
        // The same bytes behind a handshake record header, to get past the first-byte check.
        let mut framed = vec![22, 3, 1, 0x10, 0x00, 1, 0, 0x0f, 0xfc];
        framed.extend(parts.concat());
        let _ = run_tls(&[framed]);
    }

    #[test]
    fn tls_reassembler_survives_mutated_real_hellos(
        m in prop::collection::vec(mutation(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let hello = tls_client_hello("fuzz.example.test", &["h2"], None);
        let bytes = mutate(&hello, &m);
        if let Progress::Done(Some(sni)) = run_tls(&segments(&bytes, &cuts)) {
            prop_assert!(sni.hostname.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        }
    }

    #[test]
    fn quic_reassembler_survives_arbitrary_datagrams(datagrams in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..1500), 1..4)) {
        let _ = run_quic(&datagrams);
        // The same bytes behind a v1 Initial header, to get to decryption.
        let mut framed = hex_header();
        framed.extend(datagrams.concat());
        let _ = run_quic(&[framed]);
    }

    #[test]
    fn quic_reassembler_survives_mutated_plaintext_frames(
        m in prop::collection::vec(mutation(), 1..6),
        version in prop_oneof![Just(Version::V1), Just(Version::V2)],
    ) {
        // Mutations of the decrypted frames, sealed with the real keys: frame parsing and the
        // CRYPTO reassembly see the hostile bytes.
        let hello = quic_client_hello(version, "fuzz.example.test", &[]);
        let frames = mutate(&crypto_frame(0, &hello), &m);
        let packet = seal_initial(version, &TEST_DCID, 0, &frames, MIN_INITIAL_DATAGRAM);
        let _ = run_quic(&[packet]);
    }

    #[test]
    fn quic_reassembler_survives_mutated_sealed_packets(m in prop::collection::vec(mutation(), 1..4)) {
        let hello = quic_client_hello(Version::V1, "fuzz.example.test", &[]);
        let packet = seal_initial(Version::V1, &TEST_DCID, 0, &crypto_frame(0, &hello), MIN_INITIAL_DATAGRAM);
        let _ = run_quic(&[mutate(&packet, &m)]);
    }
}

/// The start of a v1 client Initial long header (DCID 8 bytes, no SCID, no token), whose length
/// field takes the rest of the datagram.
fn hex_header() -> Vec<u8> {
    let mut h = vec![0xc3, 0, 0, 0, 1, 8];
    h.extend(TEST_DCID);
    h.extend([0, 0, 0x44, 0x9e]);
    h
}
