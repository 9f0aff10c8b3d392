//! QUIC v1 (RFC 9000/9001) and v2 (RFC 9369) client Initial packets → the ClientHello's SNI.
//!
//! One [`InitialReassembler`] per UDP socket and peer gets the socket's first egress datagrams.
//! Each datagram may hold several coalesced long-header packets; for every client Initial the
//! initial keys are derived from its Destination Connection ID with `rustls::quic::Keys::initial`
//! (version-specific salt and labels, HKDF, AES-128-GCM and AES header protection from `ring`:
//! no cryptography here), header protection is removed, the payload decrypted, and the frames
//! parsed (PADDING, PING, ACK, CRYPTO, CONNECTION_CLOSE: the only frames allowed in Initials).
//! CRYPTO data is placed by offset, so a ClientHello split across Initials, in any order or
//! retransmitted, is reassembled; its contiguous prefix goes to the TLS ClientHello parser.
//!
//! A datagram that is not a long-header packet, or whose header does not parse, is `NotTls`
//! when nothing was read before. Long headers of other versions (drafts, greased versions that
//! provoke version negotiation) are waited past, within the datagram bound.
//!
//! Bounds: [`MAX_DATAGRAMS`] datagrams per reassembler, CRYPTO data up to
//! [`super::tls::MAX_CLIENT_HELLO`], [`MAX_CRYPTO_RANGES`] disjoint pieces.

use rustls::{
    Side,
    quic::{DirectionalKeys, Keys, Version},
};

use super::{MalformedKind, Progress, tls};

/// Datagrams examined per reassembler before giving up.
pub const MAX_DATAGRAMS: usize = 8;
/// Disjoint CRYPTO pieces kept before the stream counts as malformed.
pub const MAX_CRYPTO_RANGES: usize = 64;
/// Longest connection ID (RFC 9000 §17.2).
const MAX_CID: usize = 20;
/// QUIC version 1 (RFC 9000).
const V1: u32 = 1;
/// QUIC version 2 (RFC 9369 §3.1).
const V2: u32 = 0x6b33_43cf;
/// Header protection sample length (RFC 9001 §5.4.2, AES).
const SAMPLE_LEN: usize = 16;

/// Reassembles the client Initials of one UDP socket and peer (see the module header).
#[derive(Default)]
pub struct InitialReassembler {
    /// Keys of the last Initial that decrypted, with its QUIC version.
    keys: Option<(u32, DirectionalKeys)>,
    /// CRYPTO stream of the Initial packet number space.
    crypto: CryptoStream,
    /// Datagrams pushed so far.
    datagrams: usize,
    /// The final outcome, once reached.
    done: Option<Progress>,
}

impl std::fmt::Debug for InitialReassembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitialReassembler")
            .field("version", &self.keys.as_ref().map(|k| k.0))
            .field("crypto_prefix", &self.crypto.prefix().len())
            .field("datagrams", &self.datagrams)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl InitialReassembler {
    /// A reassembler for a new socket and peer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next egress datagram (UDP payload) of the socket to the peer.
    pub fn push(&mut self, datagram: &[u8]) -> Progress {
        if let Some(done) = &self.done {
            return done.clone();
        }
        self.datagrams += 1;
        let mut progress = self.advance(datagram);
        if progress == Progress::NeedMore && self.datagrams >= MAX_DATAGRAMS {
            progress = if self.keys.is_some() { Progress::Malformed(MalformedKind::Quic) } else { Progress::NotTls };
        }
        if progress.is_final() {
            self.keys = None;
            self.crypto = CryptoStream::default();
            self.done = Some(progress.clone());
        }
        progress
    }

    /// Bytes held (for memory accounting; 0 once final).
    #[must_use]
    pub fn buffered_bytes(&self) -> usize {
        self.crypto.buf.capacity() + self.crypto.ranges.capacity() * std::mem::size_of::<(usize, usize)>()
    }

    fn advance(&mut self, datagram: &[u8]) -> Progress {
        let mut rest = datagram;
        let mut initials = 0usize;
        while let Some(&first) = rest.first() {
            if first & 0x80 == 0 {
                // Short header: runs to the end of the datagram, never an Initial.
                break;
            }
            let Some(packet) = LongHeader::parse(rest) else {
                // A v1/v2 header that does not parse is broken QUIC; anything else is not QUIC.
                let known = rest.get(1..5).is_some_and(|v| matches!(v, [0, 0, 0, 1] | [0x6b, 0x33, 0x43, 0xcf]));
                return if known {
                    Progress::Malformed(MalformedKind::Quic)
                } else {
                    self.verdict(initials, MalformedKind::Quic)
                };
            };
            let Some(version) = packet.version else {
                // Another version (a draft, a greased version to provoke version negotiation):
                // the client may follow up with v1 or v2, so wait (within MAX_DATAGRAMS).
                return if initials == 0 && self.keys.is_none() { Progress::NeedMore } else { self.progress() };
            };
            let Some(len) = packet.len else { break }; // Retry: no length, ends the datagram.
            if packet.is_initial {
                let Some(bytes) = rest.get(..len) else { return self.verdict(initials, MalformedKind::Quic) };
                match self.open(version, &packet, bytes) {
                    Ok(payload) => {
                        if let Err(kind) = self.frames(&payload) {
                            return Progress::Malformed(kind);
                        }
                        initials += 1;
                    }
                    Err(kind) => return Progress::Malformed(kind),
                }
            }
            rest = rest.get(len..).unwrap_or_default();
        }
        if initials == 0 && self.keys.is_none() {
            return Progress::NotTls;
        }
        self.progress()
    }

    /// What the CRYPTO data so far amounts to.
    fn progress(&self) -> Progress {
        tls::client_hello(self.crypto.prefix())
    }

    /// The outcome of a datagram that does not parse: not QUIC if nothing parsed so far.
    fn verdict(&self, initials: usize, kind: MalformedKind) -> Progress {
        if initials == 0 && self.keys.is_none() { Progress::NotTls } else { Progress::Malformed(kind) }
    }

    /// Removes header protection and decrypts one Initial (`bytes`: the whole packet).
    fn open(&mut self, version: u32, header: &LongHeader<'_>, bytes: &[u8]) -> Result<Vec<u8>, MalformedKind> {
        if let Some((v, keys)) = &self.keys
            && *v == version
            && let Some(payload) = unprotect(keys, header.pn_offset, bytes)
        {
            return Ok(payload);
        }
        // First Initial, or one after a Retry (a new DCID): derive the keys from its DCID.
        let rustls_version = if version == V2 { Version::V2 } else { Version::V1 };
        let keys = client_initial_keys(rustls_version, header.dcid).ok_or(MalformedKind::QuicDecrypt)?;
        let payload = unprotect(&keys, header.pn_offset, bytes).ok_or(MalformedKind::QuicDecrypt)?;
        self.keys = Some((version, keys));
        Ok(payload)
    }

    /// Walks the frames of a decrypted Initial payload, keeping CRYPTO data.
    fn frames(&mut self, payload: &[u8]) -> Result<(), MalformedKind> {
        let mut c = Cursor { buf: payload, pos: 0 };
        let bad = MalformedKind::Quic;
        while !c.is_empty() {
            match c.varint().ok_or(bad)? {
                0x00 | 0x01 => {} // PADDING, PING
                kind @ (0x02 | 0x03) => {
                    // ACK: largest, delay, range count, first range, ranges, ECN counts (0x03).
                    let _ = (c.varint().ok_or(bad)?, c.varint().ok_or(bad)?);
                    let ranges = c.varint().ok_or(bad)?;
                    let _first = c.varint().ok_or(bad)?;
                    for _ in 0..ranges.min(payload.len() as u64) {
                        let _ = (c.varint().ok_or(bad)?, c.varint().ok_or(bad)?);
                    }
                    if kind == 0x03 {
                        let _ = (c.varint().ok_or(bad)?, c.varint().ok_or(bad)?, c.varint().ok_or(bad)?);
                    }
                }
                0x06 => {
                    let offset = c.varint().ok_or(bad)?;
                    let len = c.varint().ok_or(bad)?;
                    let data = c.take(usize::try_from(len).map_err(|_| bad)?).ok_or(bad)?;
                    self.crypto.insert(offset, data)?;
                }
                0x1c => {
                    // CONNECTION_CLOSE: error code, frame type, reason; the handshake is over.
                    let _ = (c.varint().ok_or(bad)?, c.varint().ok_or(bad)?);
                    let reason = c.varint().ok_or(bad)?;
                    c.take(usize::try_from(reason).map_err(|_| bad)?).ok_or(bad)?;
                }
                _ => return Err(bad), // no other frame is allowed in an Initial (RFC 9000 §12.4)
            }
        }
        Ok(())
    }
}

/// The client's Initial keys for `dcid` (the keys a server uses to read client Initials).
fn client_initial_keys(version: Version, dcid: &[u8]) -> Option<DirectionalKeys> {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13()?;
    let quic = suite.quic?;
    Some(Keys::initial(version, suite, quic, dcid, Side::Server).remote)
}

/// Removes header protection from a copy of `bytes` and decrypts it; `None` if it does not open.
fn unprotect(keys: &DirectionalKeys, pn_offset: usize, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut packet = bytes.to_vec();
    let sample = packet.get(pn_offset + 4..pn_offset + 4 + SAMPLE_LEN)?.to_vec();
    let (first, rest) = packet.split_first_mut()?;
    let pn_field = rest.get_mut(pn_offset - 1..pn_offset + 3)?;
    keys.header.decrypt_in_place(&sample, first, pn_field).ok()?;
    let pn_len = usize::from(*first & 0x03) + 1;
    let pn = packet[pn_offset..pn_offset + pn_len].iter().fold(0u64, |n, b| n << 8 | u64::from(*b));
    let (header, payload) = packet.split_at_mut(pn_offset + pn_len);
    // Initial packet numbers start at 0 and stay small: the truncated number is the number.
    let plain = keys.packet.decrypt_in_place(pn, header, payload).ok()?;
    Some(plain.to_vec())
}

/// The fields of a long-header packet needed here.
#[derive(Debug)]
struct LongHeader<'a> {
    /// QUIC v1 or v2; `None` for version negotiation and unknown versions.
    version: Option<u32>,
    /// A client Initial (type bits 0 in v1, 1 in v2).
    is_initial: bool,
    /// Destination Connection ID.
    dcid: &'a [u8],
    /// Offset of the packet number.
    pn_offset: usize,
    /// Whole packet length (header + payload); `None` for Retry (no length field).
    len: Option<usize>,
}

impl<'a> LongHeader<'a> {
    /// Parses the long header at the start of `buf`; `None` if it is cut short or invalid.
    fn parse(buf: &'a [u8]) -> Option<Self> {
        let mut c = Cursor { buf, pos: 0 };
        let first = c.u8()?;
        let version = u32::from_be_bytes(c.take(4)?.try_into().ok()?);
        let dcid_len = usize::from(c.u8()?);
        if dcid_len > MAX_CID {
            return None;
        }
        let dcid = c.take(dcid_len)?;
        let scid_len = usize::from(c.u8()?);
        if scid_len > MAX_CID {
            return None;
        }
        c.take(scid_len)?;
        let kind = (first >> 4) & 0x03;
        let (version, is_initial, is_retry) = match version {
            V1 => (Some(V1), kind == 0, kind == 3),
            V2 => (Some(V2), kind == 1, kind == 0),
            _ => return Some(Self { version: None, is_initial: false, dcid, pn_offset: 0, len: None }),
        };
        if is_retry {
            return Some(Self { version, is_initial: false, dcid, pn_offset: 0, len: None });
        }
        if is_initial {
            let token = c.varint()?;
            c.take(usize::try_from(token).ok()?)?;
        }
        let len = usize::try_from(c.varint()?).ok()?;
        let pn_offset = c.pos;
        let total = pn_offset.checked_add(len)?;
        // A packet must hold a packet number and a header protection sample.
        if total > buf.len() || len < 4 + SAMPLE_LEN {
            return None;
        }
        Some(Self { version, is_initial, dcid, pn_offset, len: Some(total) })
    }
}

/// A read position in a byte slice.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }

    /// A QUIC variable-length integer (RFC 9000 §16).
    fn varint(&mut self) -> Option<u64> {
        let first = self.u8()?;
        let extra = (1usize << (first >> 6)) - 1;
        let rest = self.take(extra)?;
        Some(rest.iter().fold(u64::from(first & 0x3f), |n, b| n << 8 | u64::from(*b)))
    }
}

/// CRYPTO frame data placed by offset.
#[derive(Debug, Default)]
struct CryptoStream {
    /// Bytes by offset (holes are zero until filled).
    buf: Vec<u8>,
    /// Filled ranges `[start, end)`, sorted and disjoint, not touching.
    ranges: Vec<(usize, usize)>,
}

impl CryptoStream {
    fn insert(&mut self, offset: u64, data: &[u8]) -> Result<(), MalformedKind> {
        let start = usize::try_from(offset).map_err(|_| MalformedKind::TooLarge)?;
        let end = start.checked_add(data.len()).ok_or(MalformedKind::TooLarge)?;
        if end > tls::MAX_CLIENT_HELLO {
            return Err(MalformedKind::TooLarge);
        }
        if data.is_empty() {
            return Ok(());
        }
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        self.buf[start..end].copy_from_slice(data);
        let (mut s, mut e) = (start, end);
        self.ranges.retain(|&(rs, re)| {
            let overlaps = rs <= e && s <= re;
            if overlaps {
                s = s.min(rs);
                e = e.max(re);
            }
            !overlaps
        });
        let at = self.ranges.partition_point(|&(rs, _)| rs < s);
        self.ranges.insert(at, (s, e));
        if self.ranges.len() > MAX_CRYPTO_RANGES {
            return Err(MalformedKind::Quic);
        }
        Ok(())
    }

    /// The contiguous bytes from offset 0.
    fn prefix(&self) -> &[u8] {
        match self.ranges.first() {
            Some(&(0, end)) => &self.buf[..end],
            _ => &[],
        }
    }
}

#[cfg(test)]
#[path = "quic_tests.rs"]
mod tests;
