//! Tests of the ClientHello reassembler with ClientHellos written by rustls.

use super::*;
use crate::names::testutil::tls_client_hello;

fn done(name: &str, ech: bool) -> Progress {
    Progress::Done(Some(Sni { hostname: Hostname::parse(name).unwrap(), ech }))
}

/// Feeds `parts` in order; every result but the last must be `NeedMore`.
fn feed(parts: &[&[u8]]) -> Progress {
    let mut r = ClientHelloReassembler::new();
    let (last, init) = parts.split_last().unwrap();
    for (i, p) in init.iter().enumerate() {
        assert_eq!(r.push(p), Progress::NeedMore, "part {i} of {}", parts.len());
    }
    r.push(last)
}

/// Inserts a TLS extension at the end of a single-record ClientHello, fixing the three lengths.
fn with_extension(record: &[u8], ext_type: u16, data: &[u8]) -> Vec<u8> {
    let mut ext = ext_type.to_be_bytes().to_vec();
    ext.extend(u16::try_from(data.len()).unwrap().to_be_bytes());
    ext.extend_from_slice(data);
    let mut out = record.to_vec();
    let grow = |bytes: &mut [u8], by: usize| {
        let mut n = 0usize;
        for b in bytes.iter() {
            n = n << 8 | usize::from(*b);
        }
        n += by;
        for (i, b) in bytes.iter_mut().rev().enumerate() {
            *b = u8::try_from((n >> (8 * i)) & 0xff).unwrap();
        }
    };
    grow(&mut out[3..5], ext.len()); // record length
    grow(&mut out[6..9], ext.len()); // handshake length
    // Extensions length: after version, random, session id, cipher suites, compression methods.
    let mut at = 5 + 4 + 2 + 32;
    at += 1 + usize::from(out[at]);
    at += 2 + usize::from(u16::from_be_bytes([out[at], out[at + 1]]));
    at += 1 + usize::from(out[at]);
    grow(&mut out[at..at + 2], ext.len());
    out.extend(ext);
    out
}

#[test]
fn rustls_client_hello_yields_its_sni() {
    let hello = tls_client_hello("api16-normal-useast5.us.tiktokv.com", &["h2", "http/1.1"], None);
    assert_eq!(feed(&[&hello]), done("api16-normal-useast5.us.tiktokv.com", false));
}

#[test]
fn client_hello_split_at_every_offset_is_reassembled() {
    let hello = tls_client_hello("split.example.test", &["h2"], None);
    for at in 1..hello.len() {
        let (a, b) = hello.split_at(at);
        assert_eq!(feed(&[a, b]), done("split.example.test", false), "split at {at}");
    }
    let bytes: Vec<&[u8]> = hello.chunks(1).collect();
    assert_eq!(feed(&bytes), done("split.example.test", false), "one byte per segment");
}

#[test]
fn client_hello_across_many_records_and_segments_is_reassembled() {
    // rustls fragments the handshake into records of at most 64 bytes (header included).
    let hello = tls_client_hello("records.example.test", &["h2"], Some(64));
    let mut records = 0;
    let mut at = 0;
    while at < hello.len() {
        assert_eq!(hello[at], HANDSHAKE);
        at += 5 + usize::from(u16::from_be_bytes([hello[at + 3], hello[at + 4]]));
        records += 1;
    }
    assert!(records >= 4, "{records} records");
    assert_eq!(feed(&[&hello]), done("records.example.test", false));
    for at in (1..hello.len()).step_by(7) {
        let (a, b) = hello.split_at(at);
        assert_eq!(feed(&[a, b]), done("records.example.test", false), "split at {at}");
    }
}

#[test]
fn long_sni_with_many_extensions_is_read() {
    let name = format!("{}.{}.{}.example.test", "a".repeat(63), "b".repeat(63), "c".repeat(63));
    let alpn: Vec<String> = (0..40).map(|i| format!("protocol-{i:02}-{}", "x".repeat(20))).collect();
    let alpn: Vec<&str> = alpn.iter().map(String::as_str).collect();
    let hello = tls_client_hello(&name, &alpn, None);
    assert!(hello.len() > 1500, "{} bytes", hello.len());
    let (a, b) = hello.split_at(1400);
    assert_eq!(feed(&[a, b]), done(&name, false));
}

#[test]
fn encrypted_client_hello_marks_the_name_as_outer() {
    let hello = tls_client_hello("public.example.test", &[], None);
    let ech = with_extension(&hello, ECH_EXTENSION, &[0, 0, 1, 0, 1, 7, 0, 0, 0, 0]);
    assert_eq!(feed(&[&ech]), done("public.example.test", true));
    // The rewritten hello without ECH: the same bytes still parse, so the flag is the extension's.
    let other = with_extension(&hello, 0x7777, &[1, 2, 3]);
    assert_eq!(feed(&[&other]), done("public.example.test", false));
}

#[test]
fn change_cipher_spec_after_the_hello_is_ignored() {
    let mut hello = tls_client_hello("ccs.example.test", &[], None);
    hello.extend([20, 3, 3, 0, 1, 1]);
    assert_eq!(feed(&[&hello]), done("ccs.example.test", false));
}

#[test]
fn other_protocols_are_not_tls_at_the_first_byte() {
    assert_eq!(feed(&[b"G"]), Progress::NotTls);
    assert_eq!(feed(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]), Progress::NotTls);
    assert_eq!(feed(&[b"SSH-2.0-OpenSSH_9.6\r\n"]), Progress::NotTls);
    // A handshake record that is not a ClientHello (a server's ServerHello).
    assert_eq!(feed(&[&[22, 3, 3, 0, 4, 2, 0, 0, 0]]), Progress::NotTls);
    // Once final, the reassembler keeps its answer.
    let mut r = ClientHelloReassembler::new();
    assert_eq!(r.push(b"\x16\x03\x01\x00\x04\x02"), Progress::NeedMore);
    assert_eq!(r.push(b"\x00\x00\x00"), Progress::NotTls);
    assert_eq!(r.push(&tls_client_hello("x.test", &[], None)), Progress::NotTls);
}

#[test]
fn malformed_and_oversized_hellos_are_counted_by_kind() {
    // A complete ClientHello whose body is garbage.
    assert_eq!(feed(&[&[22, 3, 1, 0, 8, 1, 0, 0, 4, 9, 9, 9, 9]]), Progress::Malformed(MalformedKind::Tls));
    // A ClientHello announcing 16 MiB.
    assert_eq!(feed(&[&[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]]), Progress::Malformed(MalformedKind::TooLarge));
    // A record longer than TLS allows.
    assert_eq!(feed(&[&[22, 3, 1, 0x48, 0x01]]), Progress::Malformed(MalformedKind::Tls));
    // A 15 KiB ClientHello of filler fed 1 KiB at a time: buffers stay within the bound, the
    // result is malformed, and the buffers are released.
    let mut r = ClientHelloReassembler::new();
    assert_eq!(r.push(&[22, 3, 1, 0x40, 0x00, 1, 0, 0x3c, 0x00]), Progress::NeedMore);
    let mut last = Progress::NeedMore;
    for i in 0..40u8 {
        last = r.push(&[i; 1024]);
        assert!(r.buffered_bytes() <= 2 * MAX_CLIENT_HELLO);
        if last.is_final() {
            break;
        }
    }
    assert_eq!(last, Progress::Malformed(MalformedKind::Tls));
    assert_eq!(r.buffered_bytes(), 0);
}

#[test]
fn hostile_server_names_are_rejected_as_malformed_hostnames() {
    let hello = tls_client_hello("evil-name.example.test", &[], None);
    let at = hello.windows(9).position(|w| w == b"evil-name").unwrap();
    let mut bad = hello.clone();
    bad[at + 4] = 0x1b; // "evil\x1bname"
    assert_eq!(feed(&[&bad]), Progress::Malformed(MalformedKind::Hostname));
}

#[test]
fn a_retransmitted_segment_is_skipped() {
    let alpn: Vec<String> = (0..40).map(|i| format!("protocol-{i:02}-{}", "x".repeat(20))).collect();
    let alpn: Vec<&str> = alpn.iter().map(String::as_str).collect();
    let hello = tls_client_hello("retransmit.example.test", &alpn, None);
    for at in [536, 1000, hello.len() - 512] {
        let (a, b) = hello.split_at(at);
        assert_eq!(feed(&[a, a, b]), done("retransmit.example.test", false), "split at {at}");
    }
}

#[test]
fn address_literals_in_sni_are_no_name() {
    let hello = tls_client_hello("abcdefghi", &[], None);
    let at = hello.windows(9).position(|w| w == b"abcdefghi").unwrap();
    let mut literal = hello.clone();
    literal[at..at + 9].copy_from_slice(b"192.0.2.1");
    assert_eq!(feed(&[&hello]), done("abcdefghi", false));
    assert_eq!(feed(&[&literal]), Progress::Done(None));
}
