//! Names stage: turns the kernel's payload copies into host names and names flow records.
//!
//! Sits between identity and enrichment (it runs in the sink thread, fed in ring order: every
//! copy reaches it before the records of events that followed the copy in the ring). Owns the
//! per-flow ClientHello reassemblers (TLS per socket, QUIC per socket and peer) and the per-app
//! address→name table ([`crate::names::table::NameTable`], keyed by app name). Parsing is done by
//! [`crate::names`]; this stage only routes bytes and joins the results to records. It does not
//! read /proc, the databases or the journal.
//!
//! Routing of a copy (see `monitor_common::copy` for what the kernel copies):
//! - remote port 53 (either direction): a DNS message; answers go into the app's table;
//! - TCP egress otherwise: the flow's TLS reassembler;
//! - UDP egress to port 443: the (socket, peer)'s QUIC reassembler;
//! - a `getaddrinfo` result (record kind `GAI_KIND`, no socket): the name and its addresses go
//!   into the calling app's table (source `getaddrinfo`).

mod owner;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use log::debug;
use lru::LruCache;
use monitor_common::{
    copy::{COPY_EGRESS, COPY_TCP, COPY_TRUNCATED},
    gai::GAI_KIND,
};

pub use self::owner::kernel_owner;
use crate::{
    names::{
        Hostname, MalformedKind, Names, Progress, Sni,
        dns::{self, Transport},
        quic::InitialReassembler,
        table::{NameTable, NameTableConfig, lazy_lru},
        tls::ClientHelloReassembler,
    },
    probe::Copied,
    stats::NamingStats,
    tracker::{FlowRecord, ip_of, record::RecordKind},
};

/// Flows whose ClientHello is being reassembled at once (or found to carry no name, until their
/// record closes). Past it the least recently touched is forgotten (counted in `flow_evictions`).
pub const MAX_NAMED_FLOWS: usize = 65_536;
/// Open flows whose server name is kept at once (from their ClientHello to their closing
/// record). Past it the oldest is forgotten (counted in `flow_evictions`): only with this many
/// flows open that a ClientHello named.
pub const MAX_OPEN_NAMED_FLOWS: usize = 262_144;
/// Payload copies queued between the ring-buffer drainer and the tracker loop (batches of one
/// drain pass each). Full ⇒ the drainer drops the pass's copies, counted in `copies_dropped`.
pub const COPY_QUEUE: usize = 256;

/// DNS port.
const DNS_PORT: u16 = 53;
/// QUIC (HTTPS over UDP) port.
const QUIC_PORT: u16 = 443;

/// One flow for the names stage: socket cookie and remote endpoint (peers of one unconnected UDP
/// socket are separate flows).
type FlowId = (u64, SocketAddr);

/// ClientHello state of one flow, until it names the flow.
enum Hello {
    Tls(ClientHelloReassembler),
    Quic(InitialReassembler),
    /// Not a handshake, no name in it, or malformed: nothing more to learn.
    Over,
}

/// The names stage.
pub struct Naming {
    table: NameTable<String>,
    hellos: LruCache<FlowId, Hello>,
    /// Server names of open flows (`true`: from QUIC Initials), from their ClientHello to their
    /// closing record: a long-lived flow keeps its name however many flows were reassembled
    /// since (a review: in the reassembly LRU, which records do not touch, 65,536 later
    /// handshakes took it, and its later records lost the name).
    named: LruCache<FlowId, (Sni, bool)>,
    stats: NamingStats,
}

impl Naming {
    /// An empty stage with the given table sizes.
    ///
    /// # Errors
    /// When a size in `config` is zero.
    pub fn new(config: NameTableConfig) -> Result<Self, crate::names::table::ConfigError> {
        let cap = |n: usize| std::num::NonZeroUsize::new(n).unwrap_or(std::num::NonZeroUsize::MIN);
        // Grown as filled: tables sized for their caps up front took 12 MiB of address space,
        // and every record's lookups missed the cache in them.
        Ok(Self {
            table: NameTable::new(config)?,
            hellos: lazy_lru(cap(MAX_NAMED_FLOWS)),
            named: lazy_lru(cap(MAX_OPEN_NAMED_FLOWS)),
            stats: NamingStats::default(),
        })
    }

    /// Feeds one payload copy, from a socket of app `app` (or a `getaddrinfo` result of `app`).
    pub fn copy(&mut self, app: &str, copy: &Copied) {
        let h = &copy.header;
        if h.kind == GAI_KIND {
            self.getaddrinfo(app, &copy.data, h.ts_ns);
            return;
        }
        self.stats.copies += 1;
        if h.flags & COPY_TRUNCATED != 0 {
            self.stats.truncated_copies += 1;
        }
        let t = &h.tuple;
        let remote = SocketAddr::new(ip_of(t.family, t.remote_addr), t.remote_port);
        let egress = h.flags & COPY_EGRESS != 0;
        let tcp = h.flags & COPY_TCP != 0;
        if t.remote_port == DNS_PORT {
            self.dns(app, &copy.data, tcp, h.ts_ns);
        } else if egress && (tcp || t.remote_port == QUIC_PORT) {
            self.hello((h.cookie, remote), &copy.data, tcp);
        }
    }

    /// A `getaddrinfo` result of `app`: the name it asked for resolved to these addresses.
    fn getaddrinfo(&mut self, app: &str, data: &[u8], at_ns: u64) {
        let Some(resolution) = crate::probe::decode_gai(data) else {
            debug!("short getaddrinfo record len={}", data.len());
            return;
        };
        if resolution.addrs.is_empty() {
            return;
        }
        // A numeric host ("10.0.0.1") names nothing; any other name is validated (hostile).
        if std::str::from_utf8(&resolution.name).is_ok_and(|n| n.parse::<std::net::IpAddr>().is_ok()) {
            return;
        }
        match Hostname::from_bytes(&resolution.name) {
            Ok(name) => {
                self.stats.getaddrinfo += 1;
                self.table.record_getaddrinfo(&app.to_owned(), &name, &resolution.addrs, at_ns);
            }
            Err(e) => {
                debug!("getaddrinfo name rejected: {e}");
                self.stats.malformed.add(MalformedKind::Hostname);
            }
        }
    }

    fn dns(&mut self, app: &str, data: &[u8], tcp: bool, at_ns: u64) {
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        let parsed = dns::parse(data, transport);
        if let Ok(msg) = &parsed
            && msg.bad_names > 0
        {
            // Names that fail validation (control bytes, bad labels) name nothing: counted.
            debug!("dns message with {} rejected names", msg.bad_names);
            self.stats.malformed.add_n(MalformedKind::Hostname, msg.bad_names);
        }
        match parsed {
            Ok(msg) if msg.is_response => {
                self.stats.dns_responses += 1;
                let app = app.to_owned();
                for answer in &msg.answers {
                    self.table.record_answer(&app, &answer.queried, &answer.addrs, answer.ttl, at_ns);
                }
            }
            Ok(_) => {}
            Err(e) => {
                debug!("malformed dns payload: {e}");
                self.stats.malformed.add(e.kind());
            }
        }
    }

    fn hello(&mut self, id: FlowId, data: &[u8], tcp: bool) {
        if self.named.contains(&id) {
            return;
        }
        if !self.hellos.contains(&id) {
            let fresh =
                if tcp { Hello::Tls(ClientHelloReassembler::new()) } else { Hello::Quic(InitialReassembler::new()) };
            if self.hellos.push(id, fresh).is_some_and(|(old, _)| old != id) {
                self.stats.flow_evictions += 1;
            }
        }
        let Some(state) = self.hellos.get_mut(&id) else { return };
        let (progress, quic) = match state {
            Hello::Tls(r) => (r.push(data), false),
            Hello::Quic(r) => (r.push(data), true),
            Hello::Over => return,
        };
        *state = match progress {
            Progress::NeedMore => return,
            Progress::Done(Some(sni)) => {
                if quic {
                    self.stats.quic_sni += 1;
                } else {
                    self.stats.sni += 1;
                }
                self.stats.ech += u64::from(sni.ech);
                self.hellos.pop(&id);
                if self.named.push(id, (sni, quic)).is_some_and(|(old, _)| old != id) {
                    self.stats.flow_evictions += 1;
                }
                return;
            }
            Progress::Done(None) | Progress::NotTls => Hello::Over,
            Progress::Malformed(kind) => {
                self.stats.malformed.add(kind);
                Hello::Over
            }
        };
    }

    /// The names of `record`, charged to app `app`: its ClientHello's server name, and the name
    /// the app (else the host) knew the remote address by when the flow started. A closing
    /// record lets go of the flow's state.
    pub fn name(&mut self, app: &str, record: &FlowRecord, first_seen_ns: u64) -> Names {
        let Some(remote) = record.remote else {
            self.stats.unnamed_records += 1;
            return Names::default();
        };
        let id = (record.cookie, remote);
        // Empty tables (no TLS or QUIC flow named or being named) are not looked in.
        let hello = if self.named.is_empty() && self.hellos.is_empty() {
            None
        } else if record.event == RecordKind::Update {
            self.named.peek(&id).cloned()
        } else {
            self.hellos.pop(&id);
            self.named.pop(&id)
        };
        let dns = self.table.lookup(app, remote.ip(), first_seen_ns);
        let names =
            Names::combine(hello.as_ref().map(|(s, _)| s), hello.as_ref().is_some_and(|(_, q)| *q), dns.as_ref());
        if names.hostname.is_some() {
            self.stats.named_records += 1;
        } else {
            self.stats.unnamed_records += 1;
        }
        names
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> NamingStats {
        NamingStats { malformed_total: self.stats.malformed.total(), table: self.table.stats(), ..self.stats }
    }
}

/// Apps by name, as the table keys them: kept here so that a change of key (e.g. to include the
/// uid) is one place.
#[must_use]
pub fn app_key(app: &crate::identity::App) -> &str {
    &app.name
}
