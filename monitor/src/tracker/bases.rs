//! Bases of TCP connections older than the run, kept outside their flows.
//!
//! A connection older than the run counts from its first TCP counters in the run (a flow keeps
//! that base in 32 bits: a handshake's counters are a few KiB). Two bases do not fit there:
//! counters past 4 GiB (a long-lived proxy's, across a daemon restart), and the counters the
//! daemon read at start, through a duplicate of each older socket (`TCP_INFO` and `SIOCINQ`),
//! which come before the socket's first packet under the new programs: a splice reader's bytes
//! in between (data queued before the restart, read after it) count from them. Such a
//! connection's counters are handed to its flow less its base here, and its flow counts from 0.
//! A connection that sent no packet under the programs ends with a `Release` carrying its
//! counters (its first event): counted from those read at start, else without them.
//! Almost always empty: one flag test per event, one map test per TCP counter event while not.

use std::net::SocketAddr;

use monitor_common::event::{Event, EventKind, FLAG_TCP_COUNTERS, TcpCounters, addr_words};

use super::{
    flow::{Flow, FlowKey},
    tcp::stream_position,
};

/// A TCP connection older than the run, as the daemon read it at start through a duplicate of
/// its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OlderConnection {
    /// Socket cookie.
    pub cookie: u64,
    /// Its TCP counters then (unread bytes left out, `TCP_CONSUMED`).
    pub tcp: TcpCounters,
    /// Its local address, where known: the kernel's release hook cannot read it, so a connection
    /// whose release is its only event under the run takes it from here.
    pub local: Option<SocketAddr>,
    /// Its write position then ([`monitor_common::event::write_position`]: `bytes_acked` with
    /// what waited in its send queue, `SIOCOUTQ`), where known: what it had written before the
    /// run, which its release's write position (`TCP_WRITE_POSITION`) counts too.
    pub written: Option<u64>,
}

impl From<(u64, TcpCounters)> for OlderConnection {
    fn from((cookie, tcp): (u64, TcpCounters)) -> Self {
        Self { cookie, tcp, local: None, written: None }
    }
}

/// What the daemon read at start of a connection older than the run.
#[derive(Debug, Clone, Copy)]
struct AtStart {
    /// Its stream position ([`stream_position`]).
    position: [u64; 2],
    /// Its write position less `position[0]` (what waited in its send queue), where known
    /// (`u32::MAX`: not known; 4 bytes: with 100,000 older connections at start the table is
    /// 2 MiB larger per 16 bytes here): the base of what it sends from a first counters read
    /// after it.
    queued: u32,
    /// Its local address and port as events carry them (port 0: unknown).
    local: ([u32; 4], u16),
}

/// See the module header.
#[derive(Debug, Default)]
pub(super) struct OlderBases {
    /// Bases of flows that took one here, by socket cookie: their counters are handed on less it.
    taken: foldhash::HashMap<u64, [u64; 2]>,
    /// What was read at start of older sockets then held by a process of the watched cgroup, by
    /// socket cookie, until the socket's flow takes its first counters or ends.
    read_at_start: foldhash::HashMap<u64, AtStart>,
}

/// Where a connection older than the run takes its sent bytes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SentFrom {
    /// Its processes' calls: the kernel's acknowledged bytes may be ones written before the run.
    Calls,
    /// Also a write position (`TCP_WRITE_POSITION`, its release's) over the one read at start:
    /// what was written in the run, sent or still queued (the calls miss writes made before its
    /// first packet under the programs: it had no counters then).
    Written,
}

/// What [`OlderBases::rebase`] did to an event.
pub(super) enum Rebased {
    /// Nothing: the event as it came.
    No,
    /// Its counters less the flow's base taken here before.
    Less(Event),
    /// Its counters less a base this event gave the flow, the flow's first counters: the flow
    /// counts from 0 ([`Flow::count_from_zero`]), its sent bytes as [`SentFrom`] says.
    First(Event, SentFrom),
    /// Without its TCP counters: the release of a connection older than the run that is the
    /// flow's first event, with no counters read at start: they count the connection's whole
    /// life, not this run's.
    Without(Event),
}

impl OlderBases {
    /// Remembers what was read at start of each older socket.
    pub(super) fn read_at_start(&mut self, connections: impl IntoIterator<Item = OlderConnection>) {
        self.read_at_start.extend(connections.into_iter().map(|c| {
            let local = c.local.map_or(([0; 4], 0), |a| (addr_words(a.ip()), a.port()));
            let position = stream_position(&c.tcp);
            let queued = c.written.and_then(|w| u32::try_from(w.saturating_sub(position[0])).ok());
            (c.cookie, AtStart { position, queued: queued.unwrap_or(u32::MAX), local })
        }));
    }

    /// Event `ev` of flow `key` (`flow()`: the flow, when it is known already) with its TCP
    /// counters less its socket's base kept here, or less a base it takes now: its first
    /// counters in the run, when they do not fit 32 bits or counters were read at start (the
    /// earlier of the two, each way).
    pub(super) fn rebase<'a>(
        &mut self,
        kind: EventKind,
        ev: &Event,
        key: FlowKey,
        flow: impl FnOnce() -> Option<&'a Flow>,
    ) -> Rebased {
        if ev.flags & FLAG_TCP_COUNTERS == 0 || key.peer.is_some() {
            return Rebased::No;
        }
        if !self.taken.is_empty()
            && let Some(base) = self.taken.get(&key.cookie)
        {
            return Rebased::Less(less(ev, *base));
        }
        let wide = u32::try_from(ev.tcp.bytes_acked).is_err() || u32::try_from(ev.tcp.bytes_received).is_err();
        let read = !self.read_at_start.is_empty() && self.read_at_start.contains_key(&key.cookie);
        // The flow's first counters in the run: its discovery or an update (a connection older than
        // the run), or the release of one that sent no packet under the programs (its first event).
        // The flow is looked up only where a base could be taken (not per update of every flow).
        let first = match kind {
            EventKind::Update | EventKind::Discovered if wide || read => {
                flow().is_none_or(Flow::takes_first_counters_as_base)
            }
            EventKind::Release => flow().is_none(),
            _ => false,
        };
        if !first {
            return Rebased::No;
        }
        let now = stream_position(&ev.tcp);
        let mut sent_from = SentFrom::Calls;
        let at_start = self.read_at_start.remove(&key.cookie);
        self.release_if_drained();
        let (base, local) = match at_start {
            // The earlier of the two each way (a first event may have been read before the start's
            // pass); sent bytes from the write position then: what the process had written before
            // the run is not this run's, also where it was sent or acknowledged later.
            Some(AtStart { position, queued, local }) => {
                let sent = if queued != u32::MAX && now[0] >= position[0] {
                    sent_from = SentFrom::Written;
                    position[0] + u64::from(queued)
                } else {
                    position[0].min(now[0])
                };
                ([sent, position[1].min(now[1])], local)
            }
            None if kind == EventKind::Release => {
                let mut without = *ev;
                without.flags &= !FLAG_TCP_COUNTERS;
                return Rebased::Without(without);
            }
            None if wide => (now, ([0; 4], 0)),
            None => return Rebased::No,
        };
        self.taken.insert(key.cookie, base);
        let mut first = less(ev, base);
        // A release carries no local address (its hook cannot read it): the one read at start.
        if first.tuple.local_port == 0 && local.1 != 0 {
            (first.tuple.local_addr, first.tuple.local_port) = local;
        }
        Rebased::First(first, sent_from)
    }

    /// Socket `cookie`'s flow ended.
    pub(super) fn forget(&mut self, cookie: u64) {
        if !self.taken.is_empty() {
            self.taken.remove(&cookie);
        }
        if !self.read_at_start.is_empty() {
            self.read_at_start.remove(&cookie);
            self.release_if_drained();
        }
    }

    /// Frees the table of what was read at start once every entry is gone (a daemon started
    /// beside 100,000 older connections kept its 8 MiB of capacity after they closed).
    fn release_if_drained(&mut self) {
        if self.read_at_start.is_empty() && self.read_at_start.capacity() > 0 {
            self.read_at_start = foldhash::HashMap::default();
        }
    }

    pub(super) fn clear(&mut self) {
        self.taken.clear();
        self.read_at_start.clear();
    }
}

/// `ev` with its TCP counters less `base`.
fn less(ev: &Event, base: [u64; 2]) -> Event {
    let mut rebased = *ev;
    rebased.tcp.bytes_acked = ev.tcp.bytes_acked.saturating_sub(base[0]);
    rebased.tcp.bytes_received = ev.tcp.bytes_received.saturating_sub(base[1]);
    rebased
}

#[cfg(test)]
mod tests {
    use monitor_common::event::{Event, EventKind, FLAG_TCP_COUNTERS, TcpCounters};

    use super::{AtStart, OlderBases, OlderConnection};
    use crate::tracker::flow::FlowKey;

    /// What is kept per older connection stays at 40 bytes, and the table is freed once every
    /// connection read at start has taken its base or ended (a daemon started beside 100,000
    /// older connections held 8 MiB after they closed: the sockets benchmark's second run).
    #[test]
    fn the_table_read_at_start_is_small_and_freed_once_drained() {
        assert_eq!(size_of::<AtStart>(), 40);
        let mut bases = OlderBases::default();
        let tcp = TcpCounters { bytes_acked: 1, bytes_received: 1, old_state: 1, ..TcpCounters::default() };
        bases.read_at_start((1..=1000).map(|cookie| OlderConnection {
            cookie,
            tcp,
            local: None,
            written: Some(1 + cookie),
        }));
        for cookie in 1..=999 {
            bases.forget(cookie);
        }
        assert!(bases.read_at_start.capacity() > 0);
        let ev = Event { cookie: 1000, flags: FLAG_TCP_COUNTERS, tcp, ..Event::default() };
        let first = bases.rebase(EventKind::Release, &ev, FlowKey { cookie: 1000, peer: None }, || None);
        assert!(matches!(first, super::Rebased::First(_, super::SentFrom::Written)));
        assert_eq!(bases.read_at_start.capacity(), 0, "freed");
    }
}
