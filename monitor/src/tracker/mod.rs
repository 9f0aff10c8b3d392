//! Flow tracker: turns kernel events into flows and flows into [`FlowRecord`]s.
//!
//! Owns the flow table (keyed by socket cookie, and by peer for unconnected UDP) and decides when
//! a flow has ended. Does not resolve names, read /proc or write to disk.
//!
//! End of a flow:
//! - UDP socket: `Release`. Peers of an unconnected UDP socket: their socket's `Release` (the
//!   kernel reports every peer before it). A peer is one flow, with one `close` record, however
//!   often the kernel flushed its slot (8 slots per socket; a socket talking to more peers
//!   flushes one per new peer): a flushed slot's final counters are merged into the peer's flow,
//!   which waits, parked, for the socket's release. Memory stays bounded: at most
//!   [`MAX_PEER_FLOWS_PER_SOCKET`] peer flows per socket and [`MAX_PEER_FLOWS`] in total; past
//!   either, a flushed peer's flow is closed at once (its bytes stay exact, the peer may then
//!   have several records) and counted in `split_peer_flows`.
//! - Ping, raw and SCTP sockets are always counted per peer, like unconnected UDP, and end at
//!   their socket's `Release` in the same way.
//! - TCP socket: `Release` *and* `TcpClose` (the FIN exchange usually ends after the process
//!   closed; payload can still be read after `TCP_CLOSE`). When the process released the socket
//!   first, the kernel sends no `Release`: the `TcpClose` carries `FLAG_RELEASED` and ends the
//!   flow alone. A socket that never reached ESTABLISHED ends at `Release`. If `TcpClose` has
//!   not come `tcp_close_grace` after `Release`, the flow ends incomplete.

mod bases;
pub use bases::OlderConnection;
mod compact;
mod lookups;
pub(crate) use compact::comm_str;
mod flow;
pub(crate) use flow::ip_of;
mod protocols;
pub mod record;
mod table;
mod tcp;
mod vanish;

use std::time::Duration;

use compact::{Addresses, FlowOwner, Owners};
pub use flow::FlowKey;
use flow::{Flow, key_of};
use jiff::Timestamp;
use monitor_common::event::{Event, EventKind};
pub use record::FlowRecord;
use record::{Owner, OwnerSource, Payload, RecordKind, Wire};

use crate::clock::Clock;
use crate::stats::TrackerStats;

/// The peer flows of one socket ([`Tracker::peers`]).
type PeerKeys = indexmap::IndexSet<FlowKey, foldhash::fast::RandomState>;

/// Most peer flows one unconnected UDP socket keeps until its release (see the module header).
pub const MAX_PEER_FLOWS_PER_SOCKET: usize = 4096;
/// Most peer flows kept in total (about 400 bytes each with their table entries: 6.5 MiB).
pub const MAX_PEER_FLOWS: usize = 16_384;

/// Longest update interval, TCP close grace and statistics interval: a day (see the tracker's
/// timers, kept in 32 bits).
pub const MAX_TIMER_SECS: u64 = 86_400;

/// Tracker settings.
#[derive(Debug, Clone, Copy)]
pub struct TrackerConfig {
    /// Minimum time between two update records of one open flow: whole seconds, at most
    /// [`MAX_TIMER_SECS`] (a longer one is taken as that).
    pub update_interval: Duration,
    /// How long a released TCP flow waits for `TCP_CLOSE` before it ends incomplete: whole
    /// seconds, at most [`MAX_TIMER_SECS`] (a longer one is taken as that).
    pub tcp_close_grace: Duration,
    /// Whether payload comes from the syscall tracepoints (else from TCP counters).
    pub syscall_payload: bool,
    /// Whether the kernel reports socket releases (else, degradation `no_release_hook`: a TCP
    /// flow ends `tcp_close_grace` after `TCP_CLOSE`, complete, since the kernel then reports
    /// every later read or write; other flows end at shutdown).
    pub release_events: bool,
    /// Whether the kernel counts unconnected UDP, ping, raw and SCTP sockets per peer (the packet
    /// programs attached; else, degradation `no_unconnected_udp_peers`, such sockets are counted
    /// per socket, their socket-level records the only ones).
    pub peer_counting: bool,
    /// Whether open flows are refreshed from the kernel's counters before `shutdown` (the
    /// counter iterator loaded). Without it a `shutdown` record carries the counters of the
    /// flow's last event, which may be behind, and is marked incomplete.
    pub fresh_at_shutdown: bool,
}

/// A socket whose owner must be looked up in /proc.
#[derive(Debug, Clone)]
pub struct OwnerQuery {
    /// Socket cookie.
    pub cookie: u64,
    /// The socket's addresses and protocol, as the kernel saw them.
    pub event: Event,
}

/// The flow table.
pub struct Tracker {
    config: TrackerConfig,
    clock: Clock,
    flows: table::Flows,
    /// Owners of the flows in `flows`, each kept once.
    owners: Owners,
    /// IPv6 addresses of the flows in `flows`, each kept once (rebuilt at a tick once doubled).
    addrs: Addresses,
    /// Peer flows of each unconnected UDP socket. A set: a socket past
    /// [`MAX_PEER_FLOWS_PER_SOCKET`] ends one peer flow per new peer ([`Self::finish`] takes it
    /// out), which a list scan made cost thousands of comparisons each.
    peers: foldhash::HashMap<u64, PeerKeys>,
    /// Peer flows in `flows`.
    peer_flows: usize,
    stats: TrackerStats,
    owner_queries: Vec<OwnerQuery>,
    /// Owners found in /proc, by cookie, for flows of that socket not seen yet.
    resolved: foldhash::HashMap<u64, Owner>,
    /// UDP sockets whose peer changed (`PeerChanged`, or `FLAG_PEERS` on any of their events),
    /// until their release: counted per peer. Kept only while the socket has a flow (pruned at
    /// each tick, so a lost `Release` leaks nothing): every later event of the socket carries
    /// `FLAG_PEERS` again.
    changed: foldhash::HashSet<u64>,
    /// The socket whose own record [`Self::finish_whole`] is writing.
    finishing_whole: Option<u64>,
    /// When the daemon last saw the kernel count lost events (boot-time ns; [`Self::events_lost`]).
    lost_at: Option<u64>,
    /// Flows that ended before their socket did, by cookie: what their record carried, and their
    /// direction. TCP flows ended at the grace after a close with no `struct socket`
    /// (`FLAG_NO_FILE`: such a connection, reset in the listener's queue, can still be accepted
    /// later), and flows ended as gone while no process held their socket ([`Self::vanished`]:
    /// one held only by an io_uring or in a message in flight shows up again). A later event of
    /// such a socket continues that flow ([`FlowRecord::resumed`] for TCP) from those totals,
    /// instead of counting its bytes twice. Grown as needed, at most [`ENDED_EARLY`] (the least
    /// recently ended go first).
    ended_early: lru::LruCache<u64, ((Payload, Wire), record::Direction)>,
    /// Bases of connections older than the run kept outside their flows ([`bases`]).
    older_bases: bases::OlderBases,
}

/// Flows of [`Tracker::ended_early`] remembered at most (about 100 bytes each: 6.5 MiB, only
/// after that many early ends).
const ENDED_EARLY: usize = 65_536;

impl Tracker {
    /// An empty table.
    #[must_use]
    pub fn new(config: TrackerConfig, clock: Clock) -> Self {
        let max = Duration::from_secs(MAX_TIMER_SECS);
        let config = TrackerConfig {
            update_interval: config.update_interval.min(max),
            tcp_close_grace: config.tcp_close_grace.min(max),
            ..config
        };
        Self {
            config,
            clock,
            flows: table::Flows::default(),
            owners: Owners::default(),
            addrs: Addresses::default(),
            peers: foldhash::HashMap::default(),
            peer_flows: 0,
            stats: TrackerStats::default(),
            owner_queries: Vec::new(),
            resolved: foldhash::HashMap::default(),
            changed: foldhash::HashSet::default(),
            finishing_whole: None,
            lost_at: None,
            ended_early: crate::names::table::lazy_lru(
                std::num::NonZeroUsize::new(ENDED_EARLY).unwrap_or(std::num::NonZeroUsize::MIN),
            ),
            older_bases: bases::OlderBases::default(),
        }
    }

    /// The TCP counters (unread bytes left out) and local addresses of connections older than
    /// the run, read at start: such a connection counts from them (module `bases`). Call before
    /// the first event.
    pub fn read_at_start(&mut self, connections: impl IntoIterator<Item = impl Into<OlderConnection>>) {
        self.older_bases.read_at_start(connections.into_iter().map(Into::into));
    }

    /// The kernel counted events it could not hand over (ring buffer full) by `now_ns` (boot
    /// time). A peer of an unconnected socket then may have lost bytes for good: its slots' ends
    /// (`PeerEvicted`, `PeerFlush`) carry what each generation counted, and no later event
    /// repeats it (a socket's own counters, and a TCP connection's, are cumulative: their next
    /// event makes up for a lost one). So every record of a peer whose socket was open at the
    /// loss (created by `now_ns`) says it is incomplete. Call before handling the events that
    /// came after the loss (the daemon does at each event batch, when the count grew).
    pub fn events_lost(&mut self, now_ns: u64) {
        self.lost_at = Some(now_ns);
    }

    /// Whether a record of peer flow `key` (whose own first event came at `peer_first_ns`) may
    /// lack bytes of lost events ([`Self::events_lost`]).
    fn peer_lost_bytes(&self, key: FlowKey, peer_first_ns: u64) -> bool {
        let Some(lost_at) = self.lost_at else { return false };
        if key.peer.is_none() {
            return false;
        }
        let socket = self.flows.get(&FlowKey { cookie: key.cookie, peer: None });
        socket.map_or(peer_first_ns, |f| f.first_ns.min(peer_first_ns)) <= lost_at
    }

    /// Applies one kernel event; ended flows are appended to `out`.
    pub fn handle(&mut self, kind: EventKind, ev: &Event, out: &mut Vec<FlowRecord>) {
        let key = key_of(kind, ev);
        if self.ignored(kind, ev, key) {
            return;
        }
        let rebased = self.older_bases.rebase(kind, ev, key, || self.flows.get(&key));
        let ev = match &rebased {
            bases::Rebased::No => ev,
            bases::Rebased::Less(ev) | bases::Rebased::First(ev, _) | bases::Rebased::Without(ev) => ev,
        };
        match self.flows.get_mut(&key) {
            Some(flow) => flow.absorb(kind, ev, &mut self.owners, &mut self.addrs),
            None => self.start(kind, ev, key),
        }
        if let bases::Rebased::First(_, sent_from) = rebased
            && let Some(flow) = self.flows.get_mut(&key)
        {
            flow.count_from_zero(sent_from == bases::SentFrom::Written);
        }
        self.follow(kind, ev, key, out);
    }

    /// Whether event `ev` of flow `key` is one to drop: it would start a flow that has ended or
    /// that nothing else announced.
    fn ignored(&self, kind: EventKind, ev: &Event, key: FlowKey) -> bool {
        // A socket's snapshot refreshes known flows: it carries no owner or remote address
        // (except one of a socket no event announced, read at shutdown: `FLAG_UNANNOUNCED`). A
        // peer slot's (read at shutdown) carries both, and may be a peer not reported yet, of a
        // socket still open (a released socket's slots outlive its `Release` in the kernel: its
        // peers have their `close` records already).
        if ev.flags & monitor_common::event::FLAG_SNAPSHOT != 0
            && ev.flags & monitor_common::event::FLAG_UNANNOUNCED == 0
            && !self.flows.contains_key(&key)
            && (key.peer.is_none() || !self.socket_open(key.cookie))
        {
            return true;
        }
        // A TCP socket its process released whose flow has ended (one older than the monitor
        // ends at its release: no `TcpClose` comes for it): the packets sent after the release
        // (the FIN and ACKs, and data still queued at the close) would start a second flow
        // holding the socket's whole counters again. Their wire bytes are left out of its record
        // (its payload was counted at the writes).
        if ev.flags & monitor_common::event::FLAG_RELEASED != 0
            && matches!(kind, EventKind::Update | EventKind::Discovered)
            && !self.flows.contains_key(&key)
        {
            return true;
        }
        // The earlier connection of a socket that connects again, ended already (see
        // `FLAG_CLOSE_SENT`): its record is written.
        if kind == EventKind::Reconnect
            && ev.flags & monitor_common::event::FLAG_CLOSE_SENT != 0
            && !self.flows.contains_key(&key)
        {
            return true;
        }
        false
    }

    /// Starts flow `key` at its first event `ev`, with the best owner known for its socket.
    fn start(&mut self, kind: EventKind, ev: &Event, key: FlowKey) {
        let mut flow = Flow::new(kind, ev, &mut self.owners, &mut self.addrs);
        if let Some(owner) = self.resolved.get(&key.cookie)
            && owner.source > flow.owner.source
        {
            flow.owner = self.owners.intern(FlowOwner::of(owner));
        }
        // A peer read without its owner (a slot read by descriptor) takes its socket's
        // (at equal sources too: the socket's may know the uid).
        if key.peer.is_some()
            && let Some(socket) = self.flows.get(&FlowKey { cookie: key.cookie, peer: None })
            && socket.owner.source >= flow.owner.source
        {
            flow.owner = socket.owner.clone();
        }
        // A connection ended at the grace with no socket file, accepted after all, or a socket
        // ended as gone that shows up again. (Almost always empty: no lookup per new flow then.)
        if key.peer.is_none()
            && !self.ended_early.is_empty()
            && let Some((reported, direction)) = self.ended_early.pop(&key.cookie)
        {
            flow.continue_from(reported, direction);
        }
        if flow.owner.source == OwnerSource::Unknown && !self.resolved.contains_key(&key.cookie) {
            self.owner_queries.push(OwnerQuery { cookie: ev.cookie, event: *ev });
        }
        self.flows.insert(key, flow);
        if key.peer.is_some() {
            self.peers.entry(key.cookie).or_default().insert(key);
            self.peer_flows += 1;
        }
    }

    /// What event `ev` of flow `key` (applied already) means beyond its counters: ends of flows,
    /// peer-counting changes.
    fn follow(&mut self, kind: EventKind, ev: &Event, key: FlowKey, out: &mut Vec<FlowRecord>) {
        if ev.flags & monitor_common::event::FLAG_PEERS != 0 && key.peer.is_none() && self.config.peer_counting {
            self.changed.insert(key.cookie);
        }
        match kind {
            EventKind::Release => {
                // Held by a process after all (accepted from the queue after a reset).
                if let Some(flow) = self.flows.get_mut(&key) {
                    flow.set_without_file(false);
                }
                self.released(key, ev.ts_ns, out);
            }
            // A UDP socket's peer changed: its connected flow ends here (the kernel counts the
            // socket per peer from now on, from zero); the owner resolved for it stays known.
            // Its socket-level counters say nothing from then on (see `counted_per_peer`); peers
            // already reported (from another CPU) do not silence this last record.
            EventKind::PeerChanged => {
                let resolved = self.resolved.remove(&key.cookie);
                let peers = self.peers.remove(&key.cookie);
                self.finish_whole(key, out);
                if let Some(peers) = peers {
                    self.peers.insert(key.cookie, peers);
                }
                if let Some(owner) = resolved {
                    self.resolved.insert(key.cookie, owner);
                }
                if self.config.peer_counting {
                    self.changed.insert(key.cookie);
                }
            }
            // A TCP socket connects again: its earlier connection (or attempt) ends here, with the
            // counters the kernel took; the next one is a new flow of the same socket, from its
            // `Established` (or its release, if it never establishes). The owner resolved for the
            // socket stays known.
            EventKind::Reconnect => {
                let resolved = self.resolved.remove(&key.cookie);
                self.finish(key, RecordKind::Close, true, out);
                if let Some(owner) = resolved {
                    self.resolved.insert(key.cookie, owner);
                }
            }
            // Released before `TCP_CLOSE`: the kernel sent no `Release`; this event ends the flow.
            EventKind::TcpClose if ev.flags & monitor_common::event::FLAG_RELEASED != 0 => {
                if let Some(flow) = self.flows.get_mut(&key) {
                    flow.set_released(ev.ts_ns);
                }
                self.finish_gone(key, out);
            }
            EventKind::TcpClose if self.flows.get(&key).is_some_and(Flow::released) => self.finish_gone(key, out),
            // Closed while no process holds it (never accepted: reset in the listener's queue,
            // or forgotten when the listener closed): no release will come unless it is still
            // accepted from the queue, so it ends after the grace, complete (its counters are
            // the kernel's final ones), with no payload: no process read or wrote it.
            // (Only with release events: without them a socket its process closed has no
            // `struct socket` at its close either, and never had its release marked.)
            EventKind::TcpClose
                if ev.flags & monitor_common::event::FLAG_NO_FILE != 0 && self.config.release_events =>
            {
                if let Some(flow) = self.flows.get_mut(&key) {
                    flow.set_released(ev.ts_ns);
                    flow.set_without_file(true);
                }
            }
            EventKind::TcpClose if !self.config.release_events => {
                // No release will come: the flow ends after the grace (reads after TCP_CLOSE
                // arrive as updates meanwhile).
                if let Some(flow) = self.flows.get_mut(&key) {
                    flow.set_released(ev.ts_ns);
                }
            }
            // The peer's slot was flushed: its flow waits, parked, for the socket's release,
            // unless a cap is reached.
            EventKind::PeerEvicted if self.flows.get(&key).is_some_and(|f| f.parked()) => {
                let per_socket = self.peers.get(&key.cookie).map_or(0, PeerKeys::len);
                if per_socket > MAX_PEER_FLOWS_PER_SOCKET || self.peer_flows > MAX_PEER_FLOWS {
                    if self.stats.split_peer_flows == 0 {
                        log::warn!(
                            "more than {MAX_PEER_FLOWS_PER_SOCKET} peers on one UDP socket or {MAX_PEER_FLOWS} in \
                             total: flushed peers get a record each (counted in split_peer_flows)"
                        );
                    }
                    self.stats.split_peer_flows += 1;
                    let before = out.len();
                    self.finish(key, RecordKind::Close, true, out);
                    if out.len() > before
                        && let Some(r) = out.last_mut()
                    {
                        r.release = record::Release::Split;
                    }
                }
            }
            _ => {}
        }
    }

    /// Socket `key` was released at `at_ns`.
    fn released(&mut self, key: FlowKey, at_ns: u64, out: &mut Vec<FlowRecord>) {
        let changed = self.changed.remove(&key.cookie);
        if !self.peers.contains_key(&key.cookie) {
            // Counted per peer but no peer flow (the kernel reports every peer before `Release`):
            // what the socket's counters hold belongs to no peer (e.g. packets whose peer could
            // not be read), so its own record carries it, once.
            if changed || self.flows.get(&key).is_some_and(|f| self.per_peer_socket(f)) {
                self.finish_whole(key, out);
                return;
            }
        }
        if let Some(peers) = self.peers.remove(&key.cookie) {
            let end = self.clock.wall(at_ns);
            let first = out.len();
            for peer in peers {
                let before = out.len();
                self.finish(peer, RecordKind::Close, true, out);
                if out.len() > before
                    && let Some(r) = out.last_mut()
                {
                    r.release = record::Release::Peer;
                    // A peer whose slot was flushed earlier (its last datagram long before) ended
                    // with its socket: `closed` is the release, `last_seen` its last datagram (an
                    // adversarial pass: such peers read closed seconds before their socket closed).
                    if r.closed.is_some_and(|c| c < end) {
                        r.closed = Some(end);
                    }
                }
            }
            if out.len() > first
                && let Some(r) = out.last_mut()
            {
                r.release = record::Release::LastPeer;
            }
            // The socket itself only contains its peers: its own record would count them twice.
            self.flows.remove(&key);
            self.resolved.remove(&key.cookie);
            return;
        }
        let Some(flow) = self.flows.get(&key) else { return };
        let gone = match flow.protocol {
            // Closed before its release.
            record::Protocol::Tcp => flow.tcp_closed(),
            // Connected and counted whole (a socket counted per peer returned above): it has no
            // peer slot whose report could follow its release.
            record::Protocol::Udp => self.config.peer_counting && flow.remote(&self.addrs).is_some(),
            _ => false,
        };
        if gone {
            self.finish_gone(key, out);
        } else if flow.protocol != record::Protocol::Tcp || !flow.established() {
            self.finish(key, RecordKind::Close, true, out);
        }
    }

    /// Ends the flow of a socket that is gone, its record marked [`FlowRecord::final_of_socket`]:
    /// a TCP socket the kernel has released *and* closed (`Release` and `TcpClose` both seen, in
    /// either order), or a connected UDP socket counted whole at its `Release`. No event of it
    /// can follow (a late snapshot of an unknown socket is dropped in [`Self::handle`]). Other
    /// ends are not final: peers of a socket counted per peer may still be reported (slots read
    /// at shutdown, a flushed peer's split record), a TCP socket ended at the grace may still
    /// close, and without release events a TCP socket's reads go on after its close.
    /// Only TCP and UDP records are marked: a Multipath TCP connection is left as it was.
    fn finish_gone(&mut self, key: FlowKey, out: &mut Vec<FlowRecord>) {
        use record::Protocol::{Tcp, Udp};
        let before = out.len();
        self.finish(key, RecordKind::Close, true, out);
        if key.peer.is_none()
            && out.len() > before
            && let Some(record) = out.last_mut()
            && matches!(record.protocol, Tcp | Udp)
        {
            record.final_of_socket = true;
        }
    }

    /// Periodic work: update records for open flows, and ends TCP flows whose close never came.
    pub fn tick(&mut self, now_ns: u64, out: &mut Vec<FlowRecord>) {
        let grace = u64::try_from(self.config.tcp_close_grace.as_nanos()).unwrap_or(u64::MAX);
        let interval = u64::try_from(self.config.update_interval.as_nanos()).unwrap_or(u64::MAX);
        let mut expired = Vec::new();
        let mut due = Vec::new();
        for (key, flow) in self.flows.iter() {
            if flow.released() && flow.since_release_ns(now_ns) >= grace {
                expired.push(key);
            } else if flow.since_record_ns(now_ns) >= interval {
                due.push(key);
            }
        }
        self.owners.prune();
        if self.addrs.rebuild_due() {
            self.addrs.rebuild(self.flows.iter_mut().map(Flow::ends_mut));
        }
        let (flows, peers) = (&self.flows, &self.peers);
        self.changed.retain(|cookie| {
            peers.contains_key(cookie) || flows.contains_key(&FlowKey { cookie: *cookie, peer: None })
        });
        for key in expired {
            let flow = self.flows.get(&key);
            let without_file = flow.is_some_and(Flow::without_file);
            let complete = flow.is_some_and(|f| f.tcp_closed() && (!self.config.release_events || without_file));
            let direction = flow.map(|f| f.direction);
            self.finish(key, RecordKind::Close, complete, out);
            if let (true, Some(direction), Some(r)) = (without_file, direction, out.last())
                && r.cookie == key.cookie
            {
                self.remember_ended_early(key.cookie, (r.payload, r.wire), direction);
            }
        }
        for key in due {
            if let Some(record) = self.record(key, RecordKind::Update, true, now_ns) {
                out.push(record);
            }
        }
    }

    /// `update` records, now, of the socket flows of `cookies` whose counters a periodic refresh
    /// just read and that moved since their last record (not at their next due tick: a burst's
    /// last write is counted after its own packet's `Update`, and reaches the daemon only with the
    /// refresh of the idle flow; waiting another interval for the record would leave it to die
    /// with a killed daemon for longer than README says).
    pub fn record_refreshed(&mut self, cookies: &[u64], now_ns: u64, out: &mut Vec<FlowRecord>) {
        let syscall = self.config.syscall_payload;
        for &cookie in cookies {
            let key = FlowKey { cookie, peer: None };
            // Only what moved: an unchanged flow keeps its due time.
            let moved = self.flows.get(&key).is_some_and(|flow| {
                let (last_payload, last_wire) = flow.reported;
                flow.payload(false, syscall).0 != last_payload || flow.wire() != last_wire
            });
            if moved && let Some(record) = self.record(key, RecordKind::Update, true, now_ns) {
                out.push(record);
            }
        }
    }

    /// Whether socket `cookie`'s own flow had no event since `since_ns` (a periodic refresh reads
    /// such flows' counters: [`Self::open_sockets`]).
    #[must_use]
    pub fn idle_since(&self, cookie: u64, since_ns: u64) -> bool {
        self.flows.get(&FlowKey { cookie, peer: None }).is_some_and(|f| f.last_ns < since_ns)
    }

    /// Ends every open flow with a `shutdown` record.
    pub fn shutdown(&mut self, now_ns: u64, out: &mut Vec<FlowRecord>) {
        self.shutdown_with_stale(now_ns, &std::collections::HashSet::new(), out);
    }

    /// How often open flows are reported.
    #[must_use]
    pub fn update_interval(&self) -> Duration {
        self.config.update_interval
    }

    /// Open sockets (not peer flows, not released) to refresh from the kernel's counters, with
    /// their owners: those without an event since `idle_since_ns`, or all with `None`.
    #[must_use]
    pub fn open_sockets(&self, idle_since_ns: Option<u64>) -> Vec<crate::probe::OpenSocket> {
        self.open_where(|_, flow| idle_since_ns.is_none_or(|t| flow.last_ns < t))
    }

    /// Sockets not released whose flow passes `keep`, with their owners.
    /// Sorted by owner and cookie, the order the snapshot by descriptor reads them in.
    fn open_where(&self, keep: impl Fn(u64, &Flow) -> bool) -> Vec<crate::probe::OpenSocket> {
        let mut open: Vec<_> = self
            .flows
            .sockets()
            .filter(|&(cookie, flow)| !flow.released() && keep(cookie, flow))
            .map(|(cookie, flow)| crate::probe::OpenSocket { cookie, tgid: flow.owner.tgid() })
            .collect();
        open.sort_unstable_by_key(|s| (s.tgid, s.cookie));
        open
    }

    /// Open, established TCP sockets (not MPTCP, not yet closed) with their owners: whose kernel
    /// TCP counters the shutdown reads by descriptor where the counter iterator (which does not
    /// read them) took the snapshot.
    #[must_use]
    pub fn open_tcp_sockets(&self) -> Vec<crate::probe::OpenSocket> {
        self.open_where(|_, flow| flow.protocol == record::Protocol::Tcp && flow.established() && !flow.tcp_closed())
    }

    /// Whether socket `cookie` is known and not released: its own flow is open, or it has peer
    /// flows.
    fn socket_open(&self, cookie: u64) -> bool {
        self.peers.contains_key(&cookie)
            || self.flows.get(&FlowKey { cookie, peer: None }).is_some_and(|f| !f.released())
    }

    /// Open sockets that are counted per peer, or may be (unconnected UDP, ping, raw and SCTP
    /// sockets, and those with peer flows), with their owners: whose peer slots the shutdown
    /// reads.
    #[must_use]
    pub fn peer_sockets(&self) -> Vec<crate::probe::OpenSocket> {
        self.open_where(|cookie, flow| {
            self.per_peer_socket(flow) || self.peers.contains_key(&cookie) || self.changed.contains(&cookie)
        })
    }

    /// The sockets of [`Tracker::peer_sockets`] without an event of their own since
    /// `idle_since_ns`, with their owners: whose peer slots a periodic refresh reads. A slot is
    /// reported at a packet once its interval is due, so the last bytes of a peer that went quiet
    /// (or of one claimed and never reported) wait there until the socket's release otherwise.
    /// The packet path reports peers, not their socket: a socket counted per peer is listed from
    /// an interval after its last own event on.
    #[must_use]
    pub fn idle_peer_sockets(&self, idle_since_ns: u64) -> Vec<crate::probe::OpenSocket> {
        self.open_where(|cookie, flow| {
            flow.last_ns < idle_since_ns
                && (self.per_peer_socket(flow) || self.peers.contains_key(&cookie) || self.changed.contains(&cookie))
        })
    }

    /// [`Tracker::shutdown`], with the records of sockets in `stale` (whose counters the last
    /// snapshot could not read) marked incomplete.
    pub fn shutdown_with_stale(
        &mut self,
        now_ns: u64,
        stale: &std::collections::HashSet<u64>,
        out: &mut Vec<FlowRecord>,
    ) {
        for key in self.flows.keys() {
            if !self.config.release_events && self.flows.get(&key).is_some_and(|f| f.released() && f.tcp_closed()) {
                self.finish(key, RecordKind::Close, true, out);
                continue;
            }
            // A peer's counters live in the kernel's peer slots: they are known when its slot
            // was flushed (parked: nothing of it is left in the kernel) or read by the shutdown's
            // read of the slots; otherwise its bytes since its last report are missing, and its
            // record says it is incomplete.
            let peer_known = key.peer.is_none() || self.flows.get(&key).is_some_and(|f| f.parked() || f.peer_read());
            let fresh = self.config.fresh_at_shutdown && peer_known && !stale.contains(&key.cookie);
            if let Some(record) = self.record(key, RecordKind::Shutdown, fresh, now_ns) {
                if !record.complete {
                    self.stats.incomplete_flows += 1;
                }
                out.push(record);
            }
        }
        self.flows.clear();
        self.older_bases.clear();
        self.peers.clear();
        self.changed.clear();
        self.peer_flows = 0;
        self.owners.prune();
        self.addrs.clear();
    }

    /// Current counts.
    #[must_use]
    pub fn stats(&self) -> TrackerStats {
        TrackerStats { open_flows: self.flows.len() as u64, ..self.stats }
    }

    /// Remembers that socket `cookie`'s flow ended early with totals `reported` (see
    /// [`Self::ended_early`]).
    fn remember_ended_early(&mut self, cookie: u64, reported: (Payload, Wire), direction: record::Direction) {
        self.ended_early.put(cookie, (reported, direction));
    }

    fn finish(&mut self, key: FlowKey, kind: RecordKind, complete: bool, out: &mut Vec<FlowRecord>) {
        let Some(flow) = self.flows.get(&key) else { return };
        let now = flow.last_ns;
        let record = self.record(key, kind, complete, now);
        self.flows.remove(&key);
        if key.peer.is_none() {
            self.resolved.remove(&key.cookie);
            self.older_bases.forget(key.cookie);
        } else {
            self.peer_flows = self.peer_flows.saturating_sub(1);
            if let Some(list) = self.peers.get_mut(&key.cookie) {
                list.swap_remove(&key);
            }
        }
        match record {
            Some(r) => {
                self.stats.closed_flows += 1;
                if !r.complete {
                    self.stats.incomplete_flows += 1;
                }
                out.push(r);
            }
            None => self.stats.silent_sockets += 1,
        }
    }

    /// True for the socket-level flow of a UDP socket counted per peer: its counters hold its
    /// peers' bytes (which their own flows report), so it never has a record of its own. Such a
    /// socket has peer flows, or changed its peer (`PeerChanged`), or is unconnected (no remote
    /// address and never connected: e.g. one discovered at start, whose counters the snapshots
    /// refresh).
    fn counted_per_peer(&self, key: FlowKey) -> bool {
        if self.finishing_whole == Some(key.cookie) {
            return false;
        }
        if self.peers.contains_key(&key.cookie) || self.changed.contains(&key.cookie) {
            return true;
        }
        self.flows.get(&key).is_some_and(|f| self.per_peer_socket(f))
    }

    /// A socket the kernel counts per peer by its kind: ping, raw and SCTP sockets, and UDP
    /// sockets without a remote address that never connected. Never without peer counting
    /// (degradation `no_unconnected_udp_peers`: the socket-level record is the only one).
    fn per_peer_socket(&self, f: &Flow) -> bool {
        use record::Protocol;
        self.config.peer_counting
            && match f.protocol {
                Protocol::Tcp | Protocol::Mptcp => false,
                Protocol::Udp => f.remote(&self.addrs).is_none() && f.direction() != record::Direction::Outbound,
                _ => true,
            }
    }

    /// Ends a socket-level flow with its own record even where the socket is counted per peer:
    /// the connected flow a `PeerChanged` ends, or a socket released without peer flows.
    fn finish_whole(&mut self, key: FlowKey, out: &mut Vec<FlowRecord>) {
        self.finishing_whole = Some(key.cookie);
        self.finish(key, RecordKind::Close, true, out);
        self.finishing_whole = None;
    }

    /// Builds a record; `None` for a flow with nothing to say (no bytes at all, no change since
    /// the last update, or a socket whose records are its peers'): such a flow stays due, see
    /// [`Flow::keep_due`].
    fn record(&mut self, key: FlowKey, kind: RecordKind, complete: bool, now_ns: u64) -> Option<FlowRecord> {
        let syscall = self.config.syscall_payload;
        let clock = self.clock;
        let interval = u64::try_from(self.config.update_interval.as_nanos()).unwrap_or(u64::MAX);
        let silent = key.peer.is_none() && self.counted_per_peer(key);
        let lost = self.flows.get(&key).is_some_and(|f| self.peer_lost_bytes(key, f.first_ns));
        let complete = complete && !lost;
        let flow = self.flows.get_mut(&key)?;
        if silent {
            flow.keep_due(now_ns, interval);
            return None;
        }
        let wire = flow.wire();
        let (payload, payload_sources) = flow.payload(key.peer.is_some(), syscall);
        let (last_payload, last_wire) = flow.reported;
        // A total never goes back below what a record of the flow reported (two readings of the
        // kernel's counters a moment apart, a close whose counters say less than an update's: a
        // review), so the records' deltas add up to the last total.
        let payload = Payload {
            tx_bytes: payload.tx_bytes.max(last_payload.tx_bytes),
            rx_bytes: payload.rx_bytes.max(last_payload.rx_bytes),
        };
        let changed = payload != last_payload || wire != last_wire;
        let empty = payload == Payload::default() && wire == Wire::default();
        // An established connection whose counters the shutdown could not read still gets its
        // (incomplete) record: it existed, and what it moved is unknown, not nothing.
        let unread_connection = kind == RecordKind::Shutdown && !complete && flow.established();
        if (empty && !unread_connection) || (kind == RecordKind::Update && !changed) {
            flow.keep_due(now_ns, interval);
            return None;
        }
        flow.recorded(now_ns, (payload, wire));
        let ts = |ns: u64| -> Timestamp { clock.wall(ns) };
        let remote = key.peer.or(flow.remote(&self.addrs));
        let local = protocols::local(flow.protocol, flow.local(&self.addrs))
            .map(|local| remote.map_or(local, |remote| record::local_beside(local, remote)));
        Some(FlowRecord {
            event: kind,
            cookie: key.cookie,
            owner: self.owners.owner_of(&flow.owner),
            protocol: flow.protocol,
            ip_protocol: flow.ip_protocol,
            direction: flow.direction(),
            local,
            remote,
            payload,
            payload_source: payload_sources.overall(payload),
            payload_sources,
            wire,
            delta_payload: Payload {
                tx_bytes: payload.tx_bytes.saturating_sub(last_payload.tx_bytes),
                rx_bytes: payload.rx_bytes.saturating_sub(last_payload.rx_bytes),
            },
            delta_wire: Wire {
                tx_bytes: wire.tx_bytes.saturating_sub(last_wire.tx_bytes),
                tx_packets: wire.tx_packets.saturating_sub(last_wire.tx_packets),
                rx_bytes: wire.rx_bytes.saturating_sub(last_wire.rx_bytes),
                rx_packets: wire.rx_packets.saturating_sub(last_wire.rx_packets),
            },
            first_seen: ts(flow.first_ns),
            last_seen: ts(flow.last_ns),
            closed: (kind == RecordKind::Close).then(|| ts(flow.last_ns)),
            complete,
            rtt: flow.rtt(),
            final_of_socket: false,
            release: Default::default(),
            resumed: flow.continued(),
        })
    }
}

#[cfg(test)]
mod tests;
