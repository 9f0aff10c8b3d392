//! Names: which service a flow talked to, from the bytes the kernel copied (a leaf module).
//!
//! Owns the parsers of DNS messages, TLS ClientHellos and QUIC Initials, the registrable-domain
//! lookup and the bounded per-app address→name table. Does not capture anything, touch the
//! tracker, the journal or the reports, nor import any other stage: everything here is pure,
//! synchronous and bounded, so the stage that owns the events can call it inline.
//! Everything parsed here comes from other processes and is hostile: no input panics, every
//! buffer has a cap, and host names are validated ([`Hostname`]).
//!
//! # API
//! - [`dns::parse`]`(payload, Transport::Udp | Transport::Tcp) -> Result<DnsMessage, ParseError>`:
//!   questions, response flag, rcode, and answers flattened per queried name following CNAME
//!   chains ([`dns::DnsAnswer`]: the name the app asked for, the chain, the addresses, the TTL).
//!   A message cut short by the capture bound yields what precedes the cut (`partial: true`);
//!   `bad_names` counts names rejected by validation (count them as [`MalformedKind::Hostname`]).
//! - [`tls::ClientHelloReassembler`] (one per TCP flow): `push(segment) -> Progress`.
//! - [`quic::InitialReassembler`] (one per UDP socket and peer): `push(datagram) -> Progress`.
//! - [`Progress`]: `NeedMore`, `Done(Option<Sni>)`, `NotTls` (not a handshake: stop copying),
//!   `Malformed(MalformedKind)` (count it, stop copying).
//! - [`domain::registrable`]`(host) -> Option<String>` (public suffix list, bundled).
//! - [`table::NameTable`]: per-app address→name map, bounded (LRU) and counted, with
//!   `record_answer`, `record_getaddrinfo` and `lookup(app, addr, at_ns) -> Option<NameMatch>`.
//!   `lookup` takes any borrowed form of the key (`&str` for `String` keys); maps grow as filled.
//! - [`Names`] and [`NameSource`]: what a flow record carries; [`Names::combine`] joins a
//!   ClientHello's name and the table's answer (SNI first, a differing DNS name kept beside it).
//! - [`MalformedKind`], [`MalformedCounts`]: the kinds of malformed input, for the counters.
//!
//! Measured (release, `cargo test --release -p monitor --lib names::bench -- --ignored
//! --nocapture`): a DNS answer ~2.5 µs, a TLS ClientHello ~1.2–1.5 µs, a QUIC Initial (keys
//! derived, decrypted) ~10 µs, a table record + lookup ~1 µs.

pub mod dns;
pub mod domain;
mod host;
pub mod quic;
pub mod table;
pub mod tls;

#[cfg(test)]
mod bench;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

use serde::{Deserialize, Serialize};

pub use self::host::{Hostname, HostnameError, MAX_LABEL_LEN, MAX_NAME_LEN};

/// Where a flow's name came from, best first. Serialised lowercase (`quic_sni`, `dns_host`); the
/// journal stores the same names ([`crate::variant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NameSource {
    /// Server name indication of the flow's own TLS ClientHello.
    Sni,
    /// Server name indication of the ClientHello in the flow's QUIC Initial packets.
    QuicSni,
    /// A DNS answer received by the same app for this address within the freshness window.
    Dns,
    /// A DNS answer for this address seen on the host, by another app.
    DnsHost,
    /// A `getaddrinfo` result of the same app (hosts resolving without DNS packets).
    Getaddrinfo,
    /// No name.
    #[default]
    None,
}

/// The server name a ClientHello carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sni {
    /// The `server_name` extension's host name (validated, lowercase).
    pub hostname: Hostname,
    /// The ClientHello offered `encrypted_client_hello`: `hostname` is the outer (public) name,
    /// not necessarily the service the app talked to.
    pub ech: bool,
}

/// Result of feeding a reassembler one more segment or datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The ClientHello is incomplete: send the next segment or datagram.
    NeedMore,
    /// The ClientHello is complete: its server name, if it had one.
    Done(Option<Sni>),
    /// The bytes are not a TLS handshake (or not a QUIC v1/v2 client Initial): stop copying.
    NotTls,
    /// The bytes started like a handshake but are malformed, or exceed a bound: count, stop.
    Malformed(MalformedKind),
}

impl Progress {
    /// True when more input cannot change the outcome (everything except `NeedMore`).
    #[must_use]
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::NeedMore)
    }
}

/// Kinds of malformed input, for the counters (serialised snake case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MalformedKind {
    /// A DNS message the parser rejected.
    Dns,
    /// A DNS message cut short before its first answer (nothing usable).
    DnsTruncated,
    /// A TLS record or ClientHello the parser rejected.
    Tls,
    /// A QUIC Initial whose header or frames do not parse.
    Quic,
    /// A QUIC Initial that does not decrypt with the initial keys of its connection ID.
    QuicDecrypt,
    /// A host name with control characters, empty or over-long labels, or over 253 bytes.
    Hostname,
    /// A ClientHello larger than the reassembly bound.
    TooLarge,
}

impl MalformedKind {
    /// Every kind, in counter order.
    pub const ALL: [Self; 7] =
        [Self::Dns, Self::DnsTruncated, Self::Tls, Self::Quic, Self::QuicDecrypt, Self::Hostname, Self::TooLarge];
}

/// Counters of malformed input per kind (plain numbers; the owner of the parsers keeps one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MalformedCounts {
    /// Per kind, indexed like [`MalformedKind::ALL`].
    pub counts: [u64; 7],
}

impl MalformedCounts {
    /// Counts one malformed input.
    pub fn add(&mut self, kind: MalformedKind) {
        let slot = &mut self.counts[kind as usize];
        *slot = slot.saturating_add(1);
    }

    /// Counts `n` malformed inputs of one kind (e.g. the rejected names of one DNS message).
    pub fn add_n(&mut self, kind: MalformedKind, n: u32) {
        let slot = &mut self.counts[kind as usize];
        *slot = slot.saturating_add(u64::from(n));
    }

    /// The count of one kind.
    #[must_use]
    pub fn get(&self, kind: MalformedKind) -> u64 {
        self.counts[kind as usize]
    }

    /// Counts the outcome of a reassembler push when it is malformed; returns whether it was.
    pub fn observe(&mut self, progress: &Progress) -> bool {
        match progress {
            Progress::Malformed(kind) => {
                self.add(*kind);
                true
            }
            _ => false,
        }
    }

    /// The sum over all kinds.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0, |a, b| a.saturating_add(*b))
    }
}

/// Why a DNS payload yielded nothing.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The DNS parser rejected the message.
    #[error("malformed dns message")]
    Dns(#[source] simple_dns::SimpleDnsError),
    /// The message is cut short before anything usable (e.g. the capture bound).
    #[error("dns message truncated after {len} bytes")]
    Truncated {
        /// Bytes available.
        len: usize,
    },
}

impl ParseError {
    /// The counter this error belongs to.
    #[must_use]
    pub fn kind(&self) -> MalformedKind {
        match self {
            Self::Dns(_) => MalformedKind::Dns,
            Self::Truncated { .. } => MalformedKind::DnsTruncated,
        }
    }
}

/// The names a flow record carries (the record-facing type; serialised as an object).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Names {
    /// The flow's host name: the SNI when there is one, else the DNS (or getaddrinfo) name.
    pub hostname: Option<Hostname>,
    /// Registrable domain of `hostname` ("tiktokv.com"), from the public suffix list.
    pub registrable_domain: Option<String>,
    /// Where `hostname` came from.
    pub source: NameSource,
    /// The app's own DNS (or getaddrinfo) name of the flow's address when it differs from the
    /// SNI (another app's answer is not kept here: nothing would tell whose it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<Hostname>,
    /// `hostname` is the outer SNI of an encrypted ClientHello (ECH): the inner name is unknown.
    #[serde(default)]
    pub ech_outer: bool,
}

impl Names {
    /// Combines a flow's ClientHello name (`tls`, with `quic` telling TLS over TCP from QUIC) and
    /// the table's answer for its address (`dns`). The SNI wins: it is what the app told the
    /// server; the DNS name is kept beside it when it differs and is the app's own answer (one
    /// from the host-wide map, another app's, is left out: `dns_name` has no source of its own).
    #[must_use]
    pub fn combine(tls: Option<&Sni>, quic: bool, dns: Option<&table::NameMatch>) -> Self {
        match (tls, dns) {
            (Some(sni), dns) => {
                let dns_name = dns
                    .filter(|m| m.source != NameSource::DnsHost)
                    .map(|m| &m.name)
                    .filter(|n| **n != sni.hostname)
                    .cloned();
                Self {
                    registrable_domain: domain::registrable(sni.hostname.as_str()),
                    hostname: Some(sni.hostname.clone()),
                    source: if quic { NameSource::QuicSni } else { NameSource::Sni },
                    dns_name,
                    ech_outer: sni.ech,
                }
            }
            (None, Some(m)) => Self {
                registrable_domain: domain::registrable(m.name.as_str()),
                hostname: Some(m.name.clone()),
                source: m.source,
                dns_name: None,
                ech_outer: false,
            },
            (None, None) => Self::default(),
        }
    }
}
