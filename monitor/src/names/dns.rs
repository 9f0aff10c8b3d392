//! DNS messages (UDP, or TCP with its 2-byte length prefix) → questions and flattened answers.
//!
//! Parsing is `simple-dns` (compression, EDNS OPT, A, AAAA, CNAME). On top of it this module
//! flattens each question's answer: the CNAME chain is followed from the name the app asked
//! for (bounded, loop-safe) and the A/AAAA records at its end are collected under that name.
//!
//! The kernel copies a bounded prefix of each message, so a message can end early. Then the
//! header's section counts are lowered in a copy (additional and authority first, then answers
//! by bisection) until the prefix parses: the records before the cut are kept and the message
//! is marked `partial`. Counts that the bytes cannot possibly hold are treated the same way,
//! which also keeps the parser from reserving memory for 65,535 phantom records.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::{Name, Packet, SimpleDnsError, rdata::RData};

use super::{Hostname, ParseError};

/// How the payload was carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One message per datagram.
    Udp,
    /// Messages on a stream, each after a big-endian 2-byte length (RFC 1035 §4.2.2); only the
    /// first is parsed.
    Tcp,
}

/// Longest CNAME chain followed (resolvers give up far earlier; this only stops loops).
pub const MAX_CNAME_CHAIN: usize = 16;

/// Size of the fixed DNS header.
const HEADER_LEN: usize = 12;
/// Smallest question on the wire: root name (1) + type (2) + class (2).
const MIN_QUESTION_LEN: usize = 5;
/// Smallest resource record: root name (1) + type, class, TTL, rdlength (10).
const MIN_RECORD_LEN: usize = 11;

/// One question of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsQuestion {
    /// The name asked for.
    pub name: Hostname,
    /// The query type (1 = A, 28 = AAAA, 65 = HTTPS).
    pub qtype: u16,
}

/// The addresses a response gave for one name the app asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    /// The name the app asked for (the question), not the end of the CNAME chain.
    pub queried: Hostname,
    /// The CNAME targets followed from `queried`, in order.
    pub cname_chain: Vec<Hostname>,
    /// A and AAAA addresses at the end of the chain, in message order, without duplicates.
    pub addrs: Vec<IpAddr>,
    /// Smallest TTL of the records used, in seconds.
    pub ttl: u32,
}

/// What a DNS payload says, as far as naming flows goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsMessage {
    /// Message id.
    pub id: u16,
    /// QR bit: a response.
    pub is_response: bool,
    /// Response code (the header's 4 bits; 0 no error, 3 NXDOMAIN).
    pub rcode: u8,
    /// TC bit: the server truncated the message (the client retries over TCP).
    pub truncated: bool,
    /// The payload ended before the records the header announced: what precedes the cut is kept.
    pub partial: bool,
    /// An EDNS OPT record was present.
    pub edns: bool,
    /// Questions with valid names.
    pub questions: Vec<DnsQuestion>,
    /// Per question, the addresses answered (only questions that got at least one address).
    pub answers: Vec<DnsAnswer>,
    /// Names in the message rejected by [`Hostname`] validation (count as malformed).
    pub bad_names: u32,
}

/// Parses one DNS message.
///
/// # Errors
/// [`ParseError::Truncated`] when not even the header and questions are there,
/// [`ParseError::Dns`] when the bytes are not a DNS message.
pub fn parse(payload: &[u8], transport: Transport) -> Result<DnsMessage, ParseError> {
    let msg = match transport {
        Transport::Udp => payload,
        Transport::Tcp => {
            let Some((len, rest)) = payload.split_first_chunk::<2>() else {
                return Err(ParseError::Truncated { len: payload.len() });
            };
            let len = usize::from(u16::from_be_bytes(*len));
            rest.get(..len).unwrap_or(rest)
        }
    };
    let Some(header) = msg.first_chunk::<HEADER_LEN>() else {
        return Err(ParseError::Truncated { len: msg.len() });
    };
    let counts = Counts::read(header);
    if counts.fits(msg.len()) {
        match Packet::parse(msg) {
            Ok(packet) => return Ok(message(header, &packet, false)),
            Err(SimpleDnsError::InsufficientData) => {}
            Err(e) => return Err(ParseError::Dns(e)),
        }
    }
    let prefix = parse_prefix(msg, counts)?;
    let packet = Packet::parse(&prefix).map_err(ParseError::Dns)?;
    Ok(message(header, &packet, true))
}

/// The message of a parsed packet (`header`: its raw header, for the bits kept verbatim).
fn message(header: &[u8; HEADER_LEN], packet: &Packet<'_>, partial: bool) -> DnsMessage {
    let flags = header[2];
    let mut out = DnsMessage {
        id: u16::from_be_bytes([header[0], header[1]]),
        is_response: flags & 0x80 != 0,
        rcode: header[3] & 0x0f,
        truncated: flags & 0x02 != 0,
        partial,
        edns: packet.opt().is_some(),
        questions: Vec::new(),
        answers: Vec::new(),
        bad_names: 0,
    };
    flatten(packet, &mut out);
    out
}

/// Section counts of a header.
#[derive(Debug, Clone, Copy)]
struct Counts {
    qd: u16,
    an: u16,
    ns: u16,
    ar: u16,
}

impl Counts {
    fn read(h: &[u8; HEADER_LEN]) -> Self {
        let at = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        Self { qd: at(4), an: at(6), ns: at(8), ar: at(10) }
    }

    /// Whether `len` bytes can hold this many questions and records at their smallest.
    fn fits(self, len: usize) -> bool {
        let records = usize::from(self.an) + usize::from(self.ns) + usize::from(self.ar);
        HEADER_LEN + usize::from(self.qd) * MIN_QUESTION_LEN + records * MIN_RECORD_LEN <= len
    }

    fn write(self, msg: &mut [u8]) {
        for (i, v) in [(4, self.qd), (6, self.an), (8, self.ns), (10, self.ar)] {
            msg[i..i + 2].copy_from_slice(&v.to_be_bytes());
        }
    }
}

/// A copy of `msg` whose section counts are lowered until it parses (see the module header).
fn parse_prefix(msg: &[u8], counts: Counts) -> Result<Vec<u8>, ParseError> {
    let mut copy = msg.to_vec();
    let mut parses = |c: Counts| -> bool {
        c.fits(copy.len()) && {
            c.write(&mut copy);
            Packet::parse(&copy).is_ok()
        }
    };
    let no_extra = Counts { ns: 0, ar: 0, ..counts };
    let found = if counts.ar != 0 && parses(Counts { ar: 0, ..counts }) {
        Counts { ar: 0, ..counts }
    } else if parses(no_extra) {
        no_extra
    } else if !parses(Counts { an: 0, ..no_extra }) {
        return Err(ParseError::Truncated { len: msg.len() });
    } else {
        // Largest answer count that parses: parsing is monotone in it (a prefix of records that
        // parses still parses with one record fewer), so bisect; `lo` parses, `hi` does not.
        let (mut lo, mut hi) = (0u16, no_extra.an);
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            if parses(Counts { an: mid, ..no_extra }) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Counts { an: lo, ..no_extra }
    };
    found.write(&mut copy);
    Ok(copy)
}

/// A wire name as a validated host name (`None` when invalid).
fn hostname(name: &Name<'_>) -> Option<Hostname> {
    let joined: Vec<u8> = name.as_bytes().collect::<Vec<_>>().join(&b'.');
    Hostname::from_bytes(&joined).ok()
}

/// An address record.
fn address(rdata: &RData<'_>) -> Option<IpAddr> {
    match rdata {
        RData::A(a) => Some(IpAddr::V4(Ipv4Addr::from(a.address))),
        RData::AAAA(a) => Some(IpAddr::V6(Ipv6Addr::from(a.address))),
        _ => None,
    }
}

/// Fills questions and answers of `out` from a parsed packet.
fn flatten(packet: &Packet<'_>, out: &mut DnsMessage) {
    // Owner names of the answer records, validated once.
    let owners: Vec<Option<Hostname>> = packet.answers.iter().map(|rr| hostname(&rr.name)).collect();
    out.bad_names = saturating_u32(owners.iter().filter(|o| o.is_none()).count());
    for q in &packet.questions {
        let Some(name) = hostname(&q.qname) else {
            out.bad_names = out.bad_names.saturating_add(1);
            continue;
        };
        out.questions.push(DnsQuestion { name, qtype: q.qtype.into() });
    }
    let queried: Vec<Hostname> = if out.questions.is_empty() {
        // No question (unusual): each owner name of an address record stands for itself.
        let mut names: Vec<Hostname> = Vec::new();
        for (rr, owner) in packet.answers.iter().zip(&owners) {
            if let (Some(_), Some(owner)) = (address(&rr.rdata), owner)
                && !names.contains(owner)
            {
                names.push(owner.clone());
            }
        }
        names
    } else {
        let mut names: Vec<Hostname> = Vec::new();
        for q in &out.questions {
            if !names.contains(&q.name) {
                names.push(q.name.clone());
            }
        }
        names
    };
    for name in queried {
        if let Some(answer) = follow(packet, &owners, name, &mut out.bad_names) {
            out.answers.push(answer);
        }
    }
}

/// Follows the CNAME chain from `queried` and collects the addresses at its end.
fn follow(packet: &Packet<'_>, owners: &[Option<Hostname>], queried: Hostname, bad: &mut u32) -> Option<DnsAnswer> {
    let mut chain: Vec<Hostname> = Vec::new();
    let mut current = queried.clone();
    let mut ttl = u32::MAX;
    'hop: for _ in 0..=MAX_CNAME_CHAIN {
        for (rr, owner) in packet.answers.iter().zip(owners) {
            if owner.as_ref() != Some(&current) {
                continue;
            }
            if let RData::CNAME(target) = &rr.rdata {
                let Some(target) = hostname(&target.0) else {
                    *bad = bad.saturating_add(1);
                    break 'hop;
                };
                if target == queried || chain.contains(&target) || chain.len() >= MAX_CNAME_CHAIN {
                    break 'hop;
                }
                ttl = ttl.min(rr.ttl);
                chain.push(target.clone());
                current = target;
                continue 'hop;
            }
        }
        break;
    }
    let mut addrs: Vec<IpAddr> = Vec::new();
    for (rr, owner) in packet.answers.iter().zip(owners) {
        if owner.as_ref() == Some(&current)
            && let Some(addr) = address(&rr.rdata)
        {
            ttl = ttl.min(rr.ttl);
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    (!addrs.is_empty()).then_some(DnsAnswer { queried, cname_chain: chain, addrs, ttl })
}

fn saturating_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
