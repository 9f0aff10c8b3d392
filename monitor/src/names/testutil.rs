//! Test inputs made by real implementations: rustls ClientHellos (TLS records, or the QUIC
//! CRYPTO data of a `rustls::quic` client), quinn-proto client Initial datagrams, and Initial
//! packets sealed with rustls' QUIC initial keys (for QUIC v2 and hand-shaped packet layouts).

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Instant,
};

use rustls::{
    ClientConfig, RootCertStore, Side,
    pki_types::ServerName,
    quic::{self, Keys, Version},
};

/// Destination connection ID used by the sealed test Initials.
pub(crate) const TEST_DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
/// Smallest client Initial datagram (RFC 9000 §14.1).
pub(crate) const MIN_INITIAL_DATAGRAM: usize = 1200;

/// A rustls client configuration on the ring provider (no roots: only the first flight is used).
pub(crate) fn client_config(alpn: &[&str], max_fragment: Option<usize>) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config.max_fragment_size = max_fragment;
    config
}

/// The TLS records of a rustls client's first flight (its ClientHello) for `server_name`.
pub(crate) fn tls_client_hello(server_name: &str, alpn: &[&str], max_fragment: Option<usize>) -> Vec<u8> {
    let config = Arc::new(client_config(alpn, max_fragment));
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// The CRYPTO stream (the bare ClientHello handshake message) of a `rustls::quic` client.
pub(crate) fn quic_client_hello(version: Version, server_name: &str, alpn: &[&str]) -> Vec<u8> {
    let mut config = client_config(alpn, None);
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    // Transport parameters: initial_max_data (0x04) = 0, enough for a ClientHello.
    let params = vec![0x04, 0x01, 0x00];
    let mut conn = quic::ClientConnection::new(Arc::new(config), version, name, params).unwrap();
    let mut out = Vec::new();
    let _ = conn.write_hs(&mut out);
    assert_eq!(out.first(), Some(&1), "a ClientHello");
    out
}

/// Client datagrams of a quinn-proto connection attempt to `server_name` (QUIC v1).
pub(crate) fn quinn_initial_datagrams(server_name: &str, alpn: &[&str]) -> Vec<Vec<u8>> {
    let crypto = quinn_proto::crypto::rustls::QuicClientConfig::try_from(client_config(alpn, None)).unwrap();
    let config = quinn_proto::ClientConfig::new(Arc::new(crypto));
    let mut endpoint = quinn_proto::Endpoint::new(Arc::new(quinn_proto::EndpointConfig::default()), None, false, None);
    let now = Instant::now();
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, 443));
    let (_, mut conn) = endpoint.connect(now, config, server, server_name).unwrap();
    let mut datagrams = Vec::new();
    let mut buf = Vec::new();
    while let Some(t) = conn.poll_transmit(now, 10, &mut buf) {
        let segment = t.segment_size.unwrap_or(t.size);
        datagrams.extend(buf[..t.size].chunks(segment).map(<[u8]>::to_vec));
        buf.clear();
    }
    assert!(!datagrams.is_empty(), "quinn sent nothing");
    datagrams
}

/// A QUIC varint.
pub(crate) fn varint(v: u64) -> Vec<u8> {
    match v {
        0..=0x3f => vec![u8::try_from(v).unwrap()],
        0x40..=0x3fff => (u16::try_from(v).unwrap() | 0x4000).to_be_bytes().to_vec(),
        0x4000..=0x3fff_ffff => (u32::try_from(v).unwrap() | 0x8000_0000).to_be_bytes().to_vec(),
        _ => (v | 0xc000_0000_0000_0000).to_be_bytes().to_vec(),
    }
}

/// A CRYPTO frame.
pub(crate) fn crypto_frame(offset: usize, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x06];
    f.extend(varint(offset as u64));
    f.extend(varint(data.len() as u64));
    f.extend_from_slice(data);
    f
}

/// A client Initial packet of `version` for `dcid` carrying `frames`, padded with PADDING frames
/// to `pad_to` bytes (0: no padding), protected with the client's initial keys.
pub(crate) fn seal_initial(version: Version, dcid: &[u8], pn: u32, frames: &[u8], pad_to: usize) -> Vec<u8> {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13().unwrap();
    let keys = Keys::initial(version, suite, suite.quic.unwrap(), dcid, Side::Client).local;
    let (version_bytes, type_bits) = match version {
        Version::V2 => (0x6b33_43cfu32, 0x10u8),
        _ => (1u32, 0x00u8),
    };
    let mut header = vec![0xc0 | type_bits | 0x03]; // long header, fixed bit, 4-byte packet number
    header.extend(version_bytes.to_be_bytes());
    header.push(u8::try_from(dcid.len()).unwrap());
    header.extend_from_slice(dcid);
    header.extend([4, 0xaa, 0xbb, 0xcc, 0xdd]); // source connection ID
    header.push(0); // token length
    let tag_len = 16;
    let fixed = header.len() + 2 + 4; // + 2-byte length + packet number
    let mut payload = frames.to_vec();
    if pad_to > fixed + payload.len() + tag_len {
        payload.resize(pad_to - fixed - tag_len, 0);
    }
    let length = u16::try_from(4 + payload.len() + tag_len).unwrap();
    header.extend((length | 0x4000).to_be_bytes());
    let pn_offset = header.len();
    header.extend(pn.to_be_bytes());
    let tag = keys.packet.encrypt_in_place(u64::from(pn), &header, &mut payload).unwrap();
    payload.extend_from_slice(tag.as_ref());
    let sample = payload[..16].to_vec();
    let (first, rest) = header.split_first_mut().unwrap();
    keys.header.encrypt_in_place(&sample, first, &mut rest[pn_offset - 1..]).unwrap();
    header.extend(payload);
    header
}

/// Splits `hello` into CRYPTO frames of at most `chunk` bytes, returned with their offsets.
pub(crate) fn crypto_pieces(hello: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    hello.chunks(chunk).enumerate().map(|(i, c)| crypto_frame(i * chunk, c)).collect()
}

/// Parses hex (whitespace ignored).
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap()).collect()
}
