//! TLS ClientHello reassembly over TCP segments and its server name (SNI).
//!
//! One [`ClientHelloReassembler`] per TCP flow gets the flow's first egress payloads in order.
//! It strips the record layer (a ClientHello may span several records and each record several
//! segments), collects the handshake message and, once complete, parses it with `tls-parser`.
//! The buffers are bounded by [`MAX_CLIENT_HELLO`]; anything longer is `TooLarge`. The copies
//! carry no TCP sequence numbers, so a segment of 512 bytes or more equal to the previous one is
//! skipped as its retransmission.
//!
//! ECH: a ClientHello with the `encrypted_client_hello` extension (0xfe0d, or the older
//! `encrypted_server_name` 0xffce) carries the *outer* (public) name in its SNI; the result says
//! so (`Sni::ech`). ECH "GREASE" (sent by Chromium on every connection without an ECH config)
//! is indistinguishable from real ECH by design, so `ech` means "the name may be the outer one".

use tls_parser::{
    SNIType, TlsExtension, TlsExtensionType, parse_tls_client_hello_extensions, parse_tls_handshake_client_hello,
};

use super::{Hostname, MalformedKind, Progress, Sni};

/// Largest ClientHello accepted (handshake message, header included). Post-quantum key shares
/// make ClientHellos of 1.5–2 KiB; 16 KiB is the largest single TLS record.
pub const MAX_CLIENT_HELLO: usize = 16 * 1024;

/// TLS record header: type (1), version (2), length (2).
const RECORD_HEADER: usize = 5;
/// Content type of handshake records.
const HANDSHAKE: u8 = 22;
/// Handshake message type of the ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Largest record fragment allowed (RFC 8446 §5.1: 2^14).
const MAX_RECORD: usize = 1 << 14;
/// `encrypted_client_hello` (draft-ietf-tls-esni-22 §11.1).
const ECH_EXTENSION: u16 = 0xfe0d;

/// Segments shorter than this are never taken for a retransmission.
const MIN_RETRANSMIT_CHECK: usize = 512;
/// Hasher of the retransmission check (fixed keys: deterministic, not a security boundary: a
/// sender can only make its own flow unnamed).
const SEGMENT_HASH: std::hash::BuildHasherDefault<std::hash::DefaultHasher> = std::hash::BuildHasherDefault::new();

/// Reassembles the ClientHello of one TCP flow (see the module header).
#[derive(Debug, Default)]
pub struct ClientHelloReassembler {
    /// Stream bytes not yet consumed as whole records.
    pending: Vec<u8>,
    /// Handshake bytes from the records consumed so far.
    handshake: Vec<u8>,
    /// Length and hash of the last segment pushed, to skip a retransmission of it.
    last_segment: Option<(usize, u64)>,
    /// The final outcome, once reached (returned again on later pushes).
    done: Option<Progress>,
}

impl ClientHelloReassembler {
    /// A reassembler for a new flow.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next in-order payload of the flow's client→server direction.
    pub fn push(&mut self, segment: &[u8]) -> Progress {
        if let Some(done) = &self.done {
            return done.clone();
        }
        // The copies carry no sequence numbers: a full-sized segment equal to the one before is
        // taken for its retransmission. A ClientHello that spans segments fills the first one
        // (≥ 536 bytes, the smallest MSS), and two equal consecutive runs of that size do not
        // occur in one (32 random bytes, key shares; padding stays under 512 bytes).
        if segment.len() >= MIN_RETRANSMIT_CHECK {
            let fingerprint = (segment.len(), std::hash::BuildHasher::hash_one(&SEGMENT_HASH, segment));
            if self.last_segment == Some(fingerprint) {
                return Progress::NeedMore;
            }
            self.last_segment = Some(fingerprint);
        }
        let progress = self.advance(segment);
        if progress.is_final() {
            self.pending = Vec::new();
            self.handshake = Vec::new();
            self.done = Some(progress.clone());
        }
        progress
    }

    /// Bytes held (for memory accounting; 0 once final).
    #[must_use]
    pub fn buffered_bytes(&self) -> usize {
        self.pending.capacity() + self.handshake.capacity()
    }

    fn advance(&mut self, segment: &[u8]) -> Progress {
        if self.pending.len() + segment.len() > MAX_CLIENT_HELLO + RECORD_HEADER * 4 {
            return Progress::Malformed(MalformedKind::TooLarge);
        }
        self.pending.extend_from_slice(segment);
        let first_record = self.handshake.is_empty();
        loop {
            let Some(header) = self.pending.first_chunk::<RECORD_HEADER>() else {
                // Reject a non-handshake stream as early as its first bytes show it.
                if first_record && !looks_like_record(&self.pending) {
                    return Progress::NotTls;
                }
                break;
            };
            if !looks_like_record(header) {
                return if self.handshake.is_empty() { Progress::NotTls } else { Malformed(MalformedKind::Tls) };
            }
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if len == 0 || len > MAX_RECORD {
                return Malformed(MalformedKind::Tls);
            }
            let Some(fragment) = self.pending.get(RECORD_HEADER..RECORD_HEADER + len) else { break };
            if self.handshake.len() + fragment.len() > MAX_CLIENT_HELLO {
                return Malformed(MalformedKind::TooLarge);
            }
            self.handshake.extend_from_slice(fragment);
            self.pending.drain(..RECORD_HEADER + len);
            // Stop at the end of the ClientHello: what follows (a TLS 1.3 middlebox-compatibility
            // ChangeCipherSpec, early data) is not ours to judge.
            let progress = client_hello(&self.handshake);
            if progress.is_final() {
                return progress;
            }
        }
        Progress::NeedMore
    }
}

use Progress::Malformed;

/// Whether `bytes` (1–5 of them) can start a TLS handshake record (type 22, version 3.x).
fn looks_like_record(bytes: &[u8]) -> bool {
    match bytes {
        [] => true,
        [t] => *t == HANDSHAKE,
        [t, major, rest @ ..] => *t == HANDSHAKE && *major == 3 && rest.first().is_none_or(|minor| *minor <= 4),
    }
}

/// Parses a handshake byte stream that starts with a ClientHello (the TLS record payloads, or a
/// QUIC CRYPTO stream): `NeedMore` until the message is complete.
pub(super) fn client_hello(handshake: &[u8]) -> Progress {
    let Some((&kind, rest)) = handshake.split_first() else { return Progress::NeedMore };
    if kind != CLIENT_HELLO {
        return Progress::NotTls;
    }
    let Some(len) = rest.first_chunk::<3>() else { return Progress::NeedMore };
    let len = usize::from(len[0]) << 16 | usize::from(len[1]) << 8 | usize::from(len[2]);
    if len + 4 > MAX_CLIENT_HELLO {
        return Malformed(MalformedKind::TooLarge);
    }
    let Some(body) = handshake.get(4..4 + len) else { return Progress::NeedMore };
    let Ok((trailing, hello)) = parse_tls_handshake_client_hello(body) else {
        return Malformed(MalformedKind::Tls);
    };
    if !trailing.is_empty() {
        return Malformed(MalformedKind::Tls);
    }
    let Some(ext) = hello.ext else { return Progress::Done(None) };
    let Ok((unparsed, extensions)) = parse_tls_client_hello_extensions(ext) else {
        return Malformed(MalformedKind::Tls);
    };
    if !unparsed.is_empty() {
        return Malformed(MalformedKind::Tls);
    }
    let ech = extensions.iter().any(|e| match e {
        TlsExtension::EncryptedServerName { .. } => true,
        TlsExtension::Unknown(TlsExtensionType(t), _) => *t == ECH_EXTENSION,
        _ => false,
    });
    let mut name = None;
    for e in &extensions {
        if let TlsExtension::SNI(list) = e {
            name = list.iter().find(|(t, _)| *t == SNIType::HostName).map(|(_, n)| *n);
        }
    }
    // RFC 6066 §3 forbids address literals in SNI; some clients send them anyway. They name
    // nothing (the flow's address says as much), so the DNS name, if any, stands.
    let name = name.filter(|n| std::str::from_utf8(n).map_or(true, |s| s.parse::<std::net::IpAddr>().is_err()));
    match name.map(Hostname::from_bytes) {
        None => Progress::Done(None),
        Some(Ok(hostname)) => Progress::Done(Some(Sni { hostname, ech })),
        Some(Err(_)) => Malformed(MalformedKind::Hostname),
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
