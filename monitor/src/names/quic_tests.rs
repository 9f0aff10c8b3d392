//! Tests of the QUIC Initial reassembler: the RFC 9001 test vector, quinn-proto's real client
//! Initials, and rustls QUIC ClientHellos sealed into v1 and v2 Initials.

use rustls::quic::Version;

use super::*;
use crate::names::{
    Hostname, Sni,
    testutil::{
        MIN_INITIAL_DATAGRAM, TEST_DCID, crypto_frame, crypto_pieces, hex, quic_client_hello, quinn_initial_datagrams,
        seal_initial,
    },
};

fn done(name: &str) -> Progress {
    Progress::Done(Some(Sni { hostname: Hostname::parse(name).unwrap(), ech: false }))
}

fn feed(datagrams: &[Vec<u8>]) -> Progress {
    let mut r = InitialReassembler::new();
    let (last, init) = datagrams.split_last().unwrap();
    for (i, d) in init.iter().enumerate() {
        assert_eq!(r.push(d), Progress::NeedMore, "datagram {i} of {}", datagrams.len());
    }
    r.push(last)
}

fn long_name() -> String {
    format!("{}.{}.{}.quic.test", "a".repeat(63), "b".repeat(63), "c".repeat(63))
}

fn many_alpn() -> Vec<String> {
    (0..60).map(|i| format!("protocol-{i:02}-{}", "x".repeat(20))).collect()
}

#[test]
fn rfc9001_appendix_a_client_initial_decrypts() {
    let packet = hex(include_str!("testdata/rfc9001_a2_client_initial.hex"));
    assert_eq!(packet.len(), 1200);
    assert_eq!(feed(&[packet]), done("example.com"));
}

#[test]
fn quinn_client_initial_yields_its_sni() {
    let datagrams = quinn_initial_datagrams("quinn.example.test", &["h3"]);
    assert_eq!(datagrams.len(), 1, "one Initial datagram");
    assert!(datagrams[0].len() >= MIN_INITIAL_DATAGRAM);
    assert_eq!(feed(&datagrams), done("quinn.example.test"));
}

#[test]
fn quinn_client_hello_across_two_initials_is_reassembled_in_any_order() {
    let alpn = many_alpn();
    let alpn: Vec<&str> = alpn.iter().map(String::as_str).collect();
    let name = long_name();
    let datagrams = quinn_initial_datagrams(&name, &alpn);
    assert!(datagrams.len() >= 2, "the ClientHello spans {} datagrams", datagrams.len());
    assert_eq!(feed(&datagrams), done(&name));
    let mut reversed = datagrams.clone();
    reversed.reverse();
    assert_eq!(feed(&reversed), done(&name));
}

#[test]
fn v1_and_v2_initials_sealed_with_rustls_keys_are_read() {
    for version in [Version::V1, Version::V2] {
        let hello = quic_client_hello(version, "v.example.test", &["h3"]);
        let packet = seal_initial(version, &TEST_DCID, 0, &crypto_frame(0, &hello), MIN_INITIAL_DATAGRAM);
        assert_eq!(packet.len(), MIN_INITIAL_DATAGRAM);
        assert_eq!(feed(&[packet]), done("v.example.test"), "{version:?}");
    }
}

#[test]
fn v2_client_hello_across_two_initials_with_out_of_order_frames_is_reassembled() {
    let alpn = many_alpn();
    let alpn: Vec<&str> = alpn.iter().map(String::as_str).collect();
    let name = long_name();
    let hello = quic_client_hello(Version::V2, &name, &alpn);
    assert!(hello.len() > 1500, "{} bytes", hello.len());
    // Pieces of 500 bytes: packet 1 holds pieces 3 and 1 (in that order), packet 2 pieces 2, 0.
    let pieces = crypto_pieces(&hello, 500);
    assert!(pieces.len() >= 4);
    let mut first = pieces[3..].concat();
    first.extend(&pieces[1]);
    let second = [pieces[2].clone(), pieces[0].clone()].concat();
    let p1 = seal_initial(Version::V2, &TEST_DCID, 0, &first, MIN_INITIAL_DATAGRAM);
    let p2 = seal_initial(Version::V2, &TEST_DCID, 1, &second, MIN_INITIAL_DATAGRAM);
    assert_eq!(feed(&[p1.clone(), p2.clone()]), done(&name));
    assert_eq!(feed(&[p2, p1]), done(&name));
}

#[test]
fn coalesced_initials_and_retransmissions_in_one_datagram_are_read() {
    let hello = quic_client_hello(Version::V1, "coalesced.example.test", &[]);
    let (a, b) = hello.split_at(hello.len() / 2);
    // Packet 0 carries the first half twice (a retransmission overlaps), packet 1 the rest.
    let frames0 = [crypto_frame(0, a), vec![0x01], crypto_frame(0, a)].concat();
    let p0 = seal_initial(Version::V1, &TEST_DCID, 0, &frames0, 0);
    let p1 = seal_initial(Version::V1, &TEST_DCID, 1, &crypto_frame(a.len(), b), 0);
    let mut datagram = [p0, p1].concat();
    datagram.resize(MIN_INITIAL_DATAGRAM, 0); // trailing zeros: padding outside any packet
    assert_eq!(feed(&[datagram]), done("coalesced.example.test"));
}

#[test]
fn initial_after_a_new_destination_connection_id_derives_new_keys() {
    let hello = quic_client_hello(Version::V1, "retry.example.test", &[]);
    let (a, b) = hello.split_at(hello.len() / 2);
    let p0 = seal_initial(Version::V1, &TEST_DCID, 0, &crypto_frame(0, a), MIN_INITIAL_DATAGRAM);
    let p1 = seal_initial(Version::V1, &[7; 16], 1, &crypto_frame(a.len(), b), MIN_INITIAL_DATAGRAM);
    assert_eq!(feed(&[p0, p1]), done("retry.example.test"));
}

#[test]
fn non_quic_datagrams_are_not_tls() {
    // A DNS query, a short-header packet, a version negotiation packet.
    assert_eq!(feed(&[vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]]), Progress::NotTls);
    assert_eq!(feed(&[[0x40].repeat(100)]), Progress::NotTls);
}

#[test]
fn unknown_versions_wait_for_a_known_one_within_the_datagram_bound() {
    let real = hex(include_str!("testdata/rfc9001_a2_client_initial.hex"));
    let mut greased = real.clone();
    greased[1..5].copy_from_slice(&[0x1a, 0x2a, 0x3a, 0x4a]);
    assert_eq!(feed(&[greased.clone(), real]), done("example.com"));
    let mut r = InitialReassembler::new();
    for i in 1..MAX_DATAGRAMS {
        assert_eq!(r.push(&greased), Progress::NeedMore, "datagram {i}");
    }
    assert_eq!(r.push(&greased), Progress::NotTls);
}

#[test]
fn corrupted_and_malformed_initials_are_counted_by_kind() {
    let mut bad_tag = hex(include_str!("testdata/rfc9001_a2_client_initial.hex"));
    let last = bad_tag.len() - 1;
    bad_tag[last] ^= 1;
    assert_eq!(feed(&[bad_tag]), Progress::Malformed(MalformedKind::QuicDecrypt));
    // A STREAM frame (0x08) is not allowed in an Initial.
    let stream = seal_initial(Version::V1, &TEST_DCID, 0, &[0x08, 0, 1, 0xff], MIN_INITIAL_DATAGRAM);
    assert_eq!(feed(&[stream]), Progress::Malformed(MalformedKind::Quic));
    // CRYPTO data beyond the bound.
    let far = seal_initial(Version::V1, &TEST_DCID, 0, &crypto_frame(16_384, &[1]), MIN_INITIAL_DATAGRAM);
    assert_eq!(feed(&[far]), Progress::Malformed(MalformedKind::TooLarge));
    // A length field past the end of the datagram.
    let mut cut = hex(include_str!("testdata/rfc9001_a2_client_initial.hex"));
    cut.truncate(600);
    assert_eq!(feed(&[cut]), Progress::Malformed(MalformedKind::Quic));
}

#[test]
fn a_socket_that_never_completes_a_hello_gives_up_after_the_datagram_bound() {
    let hello = quic_client_hello(Version::V1, "slow.example.test", &[]);
    let head = seal_initial(Version::V1, &TEST_DCID, 0, &crypto_frame(0, &hello[..100]), MIN_INITIAL_DATAGRAM);
    let mut r = InitialReassembler::new();
    for i in 1..MAX_DATAGRAMS {
        assert_eq!(r.push(&head), Progress::NeedMore, "datagram {i}");
    }
    assert_eq!(r.push(&head), Progress::Malformed(MalformedKind::Quic));
    assert_eq!(r.buffered_bytes(), 0);
}

#[test]
fn many_small_shuffled_crypto_frames_between_pings_and_padding_are_reassembled() {
    // Chromium's "chaos protection" cuts the ClientHello into small CRYPTO frames, shuffles them
    // and interleaves PING and PADDING frames.
    let hello = quic_client_hello(Version::V1, "chaos.example.test", &["h3"]);
    let mut pieces = crypto_pieces(&hello, 37);
    let n = pieces.len();
    assert!(n > 5);
    // A fixed permutation: stride 7 through the pieces (7 is coprime with n unless n % 7 == 0).
    let stride = if n.is_multiple_of(7) { 5 } else { 7 };
    let order: Vec<usize> = (0..n).map(|i| (i * stride) % n).collect();
    let mut frames = Vec::new();
    for (k, i) in order.iter().enumerate() {
        frames.extend(std::mem::take(&mut pieces[*i]));
        frames.extend(if k % 2 == 0 { vec![0x01] } else { vec![0x00; 3] });
    }
    let packet = seal_initial(Version::V1, &TEST_DCID, 0, &frames, MIN_INITIAL_DATAGRAM);
    assert_eq!(feed(&[packet]), done("chaos.example.test"));
}
